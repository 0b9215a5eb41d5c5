package ipvs

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/switchyard/switchyard/proxier/model"
)

// Schedulers are the IPVS schedulers the Linux kernel ships (net/netfilter/ipvs/ip_vs_*.c). Any other
// name is refused at start-up rather than on the first virtual server the kernel would reject.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

// Options configures the IPVS backend. The fields mirror kube-proxy's --ipvs-* flags; zero durations
// for the IPVS timeouts mean "leave the kernel's value alone", as in kube-proxy.
type Options struct {
	SyncPeriod    time.Duration // --ipvs-sync-period: the longest gap between full syncs (the runner's)
	MinSyncPeriod time.Duration // --ipvs-min-sync-period: the shortest gap between syncs (the runner's)
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
}

// DefaultOptions returns kube-proxy's defaults.
func DefaultOptions() Options {
	return Options{
		SyncPeriod:    30 * time.Second,
		MinSyncPeriod: 0,
		Scheduler:     "rr",
		Family:        model.IPv4,
		MasqueradeBit: 14,
		GracePeriod:   15 * time.Minute,
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
	if o.MinSyncPeriod < 0 || o.SyncPeriod <= 0 || o.MinSyncPeriod > o.SyncPeriod {
		return fmt.Errorf("--ipvs-min-sync-period (%v) must be between 0 and --ipvs-sync-period (%v), which must be positive", o.MinSyncPeriod, o.SyncPeriod)
	}
	for name, d := range map[string]time.Duration{"--ipvs-tcp-timeout": o.TCPTimeout, "--ipvs-tcpfin-timeout": o.TCPFinTimeout, "--ipvs-udp-timeout": o.UDPTimeout} {
		if d < 0 {
			return fmt.Errorf("%s must not be negative, got %v", name, d)
		}
	}
	if len(model.PrefixesFor(o.Family, o.ClusterCIDRs)) > 1 {
		return fmt.Errorf("ipvs: at most one %s cluster CIDR is supported, got %v", o.Family, o.ClusterCIDRs)
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

// AddFlags registers kube-proxy's IPVS flags on fs, bound to o. The flags shared with iptables mode
// (--nodeport-addresses, --cluster-cidr, --masquerade-all, --iptables-masquerade-bit) are the lead's
// to register, since both backends read them.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&o.SyncPeriod, "ipvs-sync-period", o.SyncPeriod, "The maximum interval of how often IPVS rules are refreshed (e.g. '5s', '1m'). Must be greater than 0.")
	fs.DurationVar(&o.MinSyncPeriod, "ipvs-min-sync-period", o.MinSyncPeriod, "The minimum interval of how often the IPVS rules can be refreshed as endpoints and services change (e.g. '5s', '1m').")
	fs.StringVar(&o.Scheduler, "ipvs-scheduler", o.Scheduler, "The IPVS scheduler type when proxy mode is ipvs: one of "+strings.Join(Schedulers, ", ")+".")
	fs.BoolVar(&o.StrictARP, "ipvs-strict-arp", o.StrictARP, "Enable strict ARP by setting arp_ignore to 1 and arp_announce to 2.")
	fs.DurationVar(&o.TCPTimeout, "ipvs-tcp-timeout", o.TCPTimeout, "The timeout for idle IPVS TCP connections, 0 to leave as is (e.g. '5s', '1m').")
	fs.DurationVar(&o.TCPFinTimeout, "ipvs-tcpfin-timeout", o.TCPFinTimeout, "The timeout for IPVS TCP connections after receiving a FIN packet, 0 to leave as is (e.g. '5s', '1m').")
	fs.DurationVar(&o.UDPTimeout, "ipvs-udp-timeout", o.UDPTimeout, "The timeout for IPVS UDP packets, 0 to leave as is (e.g. '5s', '1m').")
	fs.Var(&prefixList{&o.ExcludeCIDRs}, "ipvs-exclude-cidrs", "A comma-separated list of CIDRs which the IPVS proxier should not touch when cleaning up IPVS rules.")
}

// prefixList is a pflag.Value for a comma-separated CIDR list.
type prefixList struct{ p *[]netip.Prefix }

func (l *prefixList) String() string {
	var s []string
	for _, p := range *l.p {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}

func (l *prefixList) Set(v string) error {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return fmt.Errorf("bad CIDR %q: %w", f, err)
		}
		out = append(out, p.Masked())
	}
	*l.p = out
	return nil
}

func (l *prefixList) Type() string { return "cidrs" }
