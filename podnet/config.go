// Package podnet is Switchyard's built-in flannel-style pod network: it learns the node's pod CIDR
// from the API server, publishes the node's VTEP as annotations, programs the VXLAN overlay towards
// every peer node (podnet/vxlan), masquerades pod egress (podnet/masq), shares the node's subnet with
// the CNI plugin (podnet/subnet, podnet/cni) and can install that plugin.
package podnet

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/podnet/cni"
	"github.com/switchyard/switchyard/podnet/subnet"
)

// Modes of --pod-network.
const (
	ModeNone  = ""
	ModeVXLAN = "vxlan"
)

// Config holds the pod network flags. ClusterCIDR is not registered here: the daemon already has
// kube-proxy's --cluster-cidr and fills the field from it.
type Config struct {
	Mode          string
	VNI           int
	Port          int
	Iface         string
	DirectRouting bool
	IPMasq        bool
	CNIBinDir     string
	CNIConfDir    string
	CNIDataDir    string
	Bridge        string
	SubnetFile    string
	ResyncPeriod  time.Duration

	ClusterCIDR string
	// IptablesVariant is the variant the proxy detected, so that the pod network's rules land in the
	// same tables as the proxy's; the daemon fills it. VariantDefault means the node's default
	// "iptables".
	IptablesVariant utiliptables.Variant
}

// DefaultConfig is the configuration before flags are parsed.
func DefaultConfig() Config {
	return Config{
		VNI:          1,
		Port:         8472,
		IPMasq:       true,
		CNIBinDir:    "/opt/cni/bin",
		CNIConfDir:   "/etc/cni/net.d",
		CNIDataDir:   cni.DefaultDataDir,
		Bridge:       cni.DefaultBridge,
		SubnetFile:   subnet.DefaultPath,
		ResyncPeriod: 30 * time.Second,
	}
}

// AddFlags registers the pod network flags, with c's current values as defaults.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Mode, "pod-network", c.Mode, `Built-in pod network: "" (none, another CNI provides it) or "vxlan".`)
	fs.IntVar(&c.VNI, "vxlan-vni", c.VNI, "VXLAN network identifier of the pod overlay.")
	fs.IntVar(&c.Port, "vxlan-port", c.Port, "UDP port of the pod overlay (8472 is the Linux and flannel default).")
	fs.StringVar(&c.Iface, "iface", c.Iface, "Underlay interface (name or address) for the overlay; default: the one holding the node's InternalIP.")
	fs.BoolVar(&c.DirectRouting, "vxlan-direct-routing", c.DirectRouting, "Route to peers on the same L2 subnet directly instead of encapsulating.")
	fs.BoolVar(&c.IPMasq, "ip-masq", c.IPMasq, "Masquerade pod traffic that leaves the cluster CIDR (never pod-to-pod traffic).")
	fs.StringVar(&c.CNIBinDir, "cni-bin-dir", c.CNIBinDir, "Directory to install the switchyard-cni plugin binary into; empty to skip.")
	fs.StringVar(&c.CNIConfDir, "cni-conf-dir", c.CNIConfDir, "Directory to write the CNI conflist into; empty to skip.")
	fs.StringVar(&c.CNIDataDir, "cni-data-dir", c.CNIDataDir, "Directory where the CNI plugin keeps pod address allocations.")
	fs.StringVar(&c.Bridge, "cni-bridge", c.Bridge, "Node bridge the CNI plugin attaches pods to.")
	fs.StringVar(&c.SubnetFile, "subnet-file", c.SubnetFile, "File through which the daemon tells the CNI plugin the node's pod subnet.")
	fs.DurationVar(&c.ResyncPeriod, "pod-network-resync", c.ResyncPeriod, "Longest time between two full reconciles of the overlay.")
}

// Enabled reports whether the built-in pod network runs.
func (c *Config) Enabled() bool { return c.Mode == ModeVXLAN }

// Validate checks the flags; it is called by NewController and can be called early by the daemon.
func (c *Config) Validate() error {
	switch c.Mode {
	case ModeNone:
		return nil
	case ModeVXLAN:
	default:
		return fmt.Errorf("--pod-network=%q: want \"\" or %q", c.Mode, ModeVXLAN)
	}
	if c.VNI < 1 || c.VNI > 1<<24-1 {
		return fmt.Errorf("--vxlan-vni=%d: want 1 to %d", c.VNI, 1<<24-1)
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("--vxlan-port=%d: want 1 to 65535", c.Port)
	}
	if _, err := c.clusterCIDR(); err != nil {
		return err
	}
	if c.SubnetFile == "" {
		return fmt.Errorf("--subnet-file must not be empty with --pod-network=vxlan")
	}
	if c.ResyncPeriod <= 0 {
		return fmt.Errorf("--pod-network-resync must be positive")
	}
	return nil
}

func (c *Config) clusterCIDR() (*net.IPNet, error) {
	if c.ClusterCIDR == "" {
		return nil, fmt.Errorf("--pod-network=vxlan needs --cluster-cidr")
	}
	// kube-proxy accepts a comma-separated dual-stack list; the overlay is IPv4, so take that one.
	for _, s := range strings.Split(c.ClusterCIDR, ",") {
		s = strings.TrimSpace(s)
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("--cluster-cidr %q: %w", s, err)
		}
		if n.IP.To4() != nil {
			return n, nil
		}
	}
	return nil, fmt.Errorf("--cluster-cidr %q has no IPv4 CIDR; the VXLAN pod network is IPv4 only", c.ClusterCIDR)
}
