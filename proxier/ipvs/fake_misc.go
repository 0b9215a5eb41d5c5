package ipvs

import (
	"os"
)

// FakeSysctl is an in-memory /proc/sys. Setting a name that does not exist fails like the file system
// (os.ErrNotExist), and names in ReadOnly fail with os.ErrPermission, as in an unprivileged container.
type FakeSysctl struct {
	Values   map[string]string
	ReadOnly map[string]bool
}

var _ Sysctl = (*FakeSysctl)(nil)

// NewFakeSysctl returns the sysctls of a kernel with IPVS loaded, at the kernel's defaults.
func NewFakeSysctl() *FakeSysctl {
	return &FakeSysctl{Values: map[string]string{
		"net/ipv4/vs/conntrack":                 "0",
		"net/ipv4/vs/expire_nodest_conn":        "0",
		"net/ipv4/vs/expire_quiescent_template": "0",
		"net/ipv4/conf/all/arp_ignore":          "0",
		"net/ipv4/conf/all/arp_announce":        "0",
	}, ReadOnly: map[string]bool{}}
}

func (f *FakeSysctl) Get(name string) (string, error) {
	v, ok := f.Values[name]
	if !ok {
		return "", &os.PathError{Op: "open", Path: "/proc/sys/" + name, Err: os.ErrNotExist}
	}
	return v, nil
}

func (f *FakeSysctl) Set(name, value string) error {
	if _, ok := f.Values[name]; !ok {
		return &os.PathError{Op: "open", Path: "/proc/sys/" + name, Err: os.ErrNotExist}
	}
	if f.ReadOnly[name] {
		return &os.PathError{Op: "open", Path: "/proc/sys/" + name, Err: os.ErrPermission}
	}
	f.Values[name] = value
	return nil
}
