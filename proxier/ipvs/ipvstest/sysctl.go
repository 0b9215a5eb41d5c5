package ipvstest

import "github.com/switchyard/switchyard/internal/sysctltest"

// NewFakeSysctl returns the /proc/sys of a kernel with IPVS loaded: the sysctls the backend sets, at
// the kernel's defaults.
func NewFakeSysctl() *sysctltest.Fake {
	return sysctltest.New(map[string]string{
		"net/ipv4/vs/conntrack":                 "0",
		"net/ipv4/vs/expire_nodest_conn":        "0",
		"net/ipv4/vs/expire_quiescent_template": "0",
		"net/ipv4/conf/all/arp_ignore":          "0",
		"net/ipv4/conf/all/arp_announce":        "0",
	})
}
