package ipvs

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/switchyard/switchyard/proxier/model"
)

// Schedulers are the IPVS schedulers the Linux kernel ships (net/netfilter/ipvs/ip_vs_*.c). Any other
// name is refused at start-up rather than on the first virtual server the kernel would reject.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

// Options configures the IPVS backend. The fields mirror kube-proxy's --ipvs-* flags, which the daemon
// registers (cmd/switchyard); zero durations for the IPVS timeouts mean "leave the kernel's value
// alone", as in kube-proxy. --ipvs-sync-period and --ipvs-min-sync-period time the daemon's sync loop
// (internal/syncloop); the backend only reads the node's addresses again every --ipvs-sync-period
// (NodeAddressPeriod).
type Options struct {
	Scheduler     string        // --ipvs-scheduler
	StrictARP     bool          // --ipvs-strict-arp
	TCPTimeout    time.Duration // --ipvs-tcp-timeout
	TCPFinTimeout time.Duration // --ipvs-tcpfin-timeout
	UDPTimeout    time.Duration // --ipvs-udp-timeout
	// ExcludeCIDRs (--ipvs-exclude-cidrs) are never touched: virtual servers on these addresses are
	// neither deleted by a sync nor by Cleanup, so other software's IPVS entries survive.
	ExcludeCIDRs []netip.Prefix

	// Family is the address family this instance programs; a dual-stack node runs two.
	Family model.IPFamily
	// NodePortAddresses (--nodeport-addresses) selects the node addresses NodePorts listen on. Empty
	// means every address of the family except loopback and link-local ones.
	NodePortAddresses []netip.Prefix
	// ClusterCIDRs detect pod traffic (kube-proxy's --cluster-cidr local detector): traffic to a
	// ClusterIP from outside these is masqueraded. Empty disables that masquerade.
	ClusterCIDRs []netip.Prefix
	// BridgeInterface and InterfaceNamePrefix detect pod traffic by the interface it enters from
	// instead (--detect-local-mode BridgeInterface, InterfaceNamePrefix): the pods' bridge, or any
	// interface whose name starts with the prefix. Either wins over ClusterCIDRs; at most one may be set.
	BridgeInterface     string
	InterfaceNamePrefix string
	// MasqueradeAll masquerades all traffic to ClusterIPs (--masquerade-all).
	MasqueradeAll bool
	// MasqueradeBit is the packet-mark bit that asks for SNAT (--iptables-masquerade-bit, default 14).
	MasqueradeBit int
	// RandomFully adds --random-fully to MASQUERADE when the iptables binary supports it, as
	// kube-proxy does, to avoid SNAT port collisions.
	RandomFully bool
	// GracePeriod bounds how long a removed TCP real server is kept at weight 0 while it still has
	// connections. kube-proxy has no flag for it; its graceful-termination manager also waits.
	GracePeriod time.Duration
	// NodeAddressPeriod is how often the node's addresses, which NodePorts listen on, are read again:
	// the daemon passes --ipvs-sync-period. A sync reads them once half this period has passed since
	// the last read, so the periodic sync always does; 0 means on full syncs only.
	NodeAddressPeriod time.Duration
}

// DefaultOptions returns kube-proxy's defaults.
func DefaultOptions() Options {
	return Options{
		Scheduler:     "rr",
		Family:        model.IPv4,
		MasqueradeBit: 14,
		GracePeriod:   15 * time.Minute,
		// kube-proxy's --ipvs-sync-period default.
		NodeAddressPeriod: 30 * time.Second,
	}
}

// Validate checks the options before anything touches the kernel.
func (o *Options) Validate() error {
	if o.Scheduler == "" {
		o.Scheduler = "rr"
	}
	if !validScheduler(o.Scheduler) {
		return fmt.Errorf("--ipvs-scheduler=%q is not an IPVS scheduler; use one of %s", o.Scheduler, strings.Join(Schedulers, ", "))
	}
	if o.Family != model.IPv4 && o.Family != model.IPv6 {
		return fmt.Errorf("ipvs: unknown IP family %d", o.Family)
	}
	if o.MasqueradeBit < 0 || o.MasqueradeBit > 31 {
		return fmt.Errorf("--iptables-masquerade-bit=%d out of range [0, 31]", o.MasqueradeBit)
	}
	for name, d := range map[string]time.Duration{"--ipvs-tcp-timeout": o.TCPTimeout, "--ipvs-tcpfin-timeout": o.TCPFinTimeout, "--ipvs-udp-timeout": o.UDPTimeout} {
		if d < 0 {
			return fmt.Errorf("%s must not be negative, got %v", name, d)
		}
	}
	if len(model.PrefixesFor(o.Family, o.ClusterCIDRs)) > 1 {
		return fmt.Errorf("ipvs: at most one %s cluster CIDR is supported, got %v", o.Family, o.ClusterCIDRs)
	}
	if err := o.validateLocalInterface(); err != nil {
		return err
	}
	if o.GracePeriod <= 0 {
		o.GracePeriod = DefaultOptions().GracePeriod
	}
	return nil
}

func validScheduler(s string) bool {
	for _, k := range Schedulers {
		if s == k {
			return true
		}
	}
	return false
}

// masqMark is the mark value (and mask) SY-MARK-MASQ sets.
func (o *Options) masqMark() string { return fmt.Sprintf("0x%x", uint32(1)<<uint(o.MasqueradeBit)) }

// excluded reports whether addr falls in --ipvs-exclude-cidrs.
func (o *Options) excluded(addr netip.Addr) bool {
	for _, p := range o.ExcludeCIDRs {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// maxInterfaceName is the longest interface name iptables accepts (IFNAMSIZ less the NUL).
const maxInterfaceName = 15

func (o *Options) validateLocalInterface() error {
	if o.BridgeInterface != "" && o.InterfaceNamePrefix != "" {
		return fmt.Errorf("ipvs: a bridge interface (%q) and an interface name prefix (%q) are two local-traffic detectors; set one", o.BridgeInterface, o.InterfaceNamePrefix)
	}
	// A rule takes the name as one word; the prefix becomes "<prefix>+".
	for _, name := range []string{o.BridgeInterface, o.InterfaceNamePrefix + "+"} {
		if len(name) > maxInterfaceName || strings.ContainsAny(name, " \t\n\"'!") {
			return fmt.Errorf("ipvs: %q cannot be matched as an interface name", strings.TrimSuffix(name, "+"))
		}
	}
	return nil
}

// notLocal is the iptables match of traffic that the local-traffic detector does not take for pod
// traffic, or nil when there is no detector.
func (o *Options) notLocal() []string {
	switch cidrs := model.PrefixesFor(o.Family, o.ClusterCIDRs); {
	case o.BridgeInterface != "":
		return []string{"!", "-i", o.BridgeInterface}
	case o.InterfaceNamePrefix != "":
		return []string{"!", "-i", o.InterfaceNamePrefix + "+"}
	case len(cidrs) == 1:
		return []string{"!", "-s", cidrs[0].String()}
	}
	return nil
}
