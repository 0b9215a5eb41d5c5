package main

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Options are the daemon's settings. Names, defaults and meanings follow kube-proxy's flags, so a
// kube-proxy command line works unchanged; settings of Switchyard's own are marked as such.
type Options struct {
	ConfigFile         string
	WriteConfigTo      string
	Kubeconfig         string
	Master             string
	ProxyMode          string
	HostnameOverride   string
	ClusterCIDR        string
	DetectLocalMode    string
	MasqueradeAll      bool
	MasqueradeBit      int32
	NodePortAddresses  []string
	SyncPeriod         time.Duration
	MinSyncPeriod      time.Duration
	IPVS               IPVSOptions
	MetricsBindAddress string
	EnableProfiling    bool
	HealthzBindAddress string
	Cleanup            bool
	// IptablesVariant is Switchyard's own: "auto" picks the variant the node's kubelet uses.
	IptablesVariant string
}

// IPVSOptions are kube-proxy's --ipvs-* flags.
type IPVSOptions struct {
	SyncPeriod    time.Duration
	MinSyncPeriod time.Duration
	Scheduler     string
	StrictARP     bool
	TCPTimeout    time.Duration
	TCPFinTimeout time.Duration
	UDPTimeout    time.Duration
	ExcludeCIDRs  []string
}

// DefaultOptions returns kube-proxy's defaults.
func DefaultOptions() *Options {
	return &Options{
		ProxyMode:          "iptables",
		DetectLocalMode:    "ClusterCIDR",
		MasqueradeBit:      14,
		SyncPeriod:         30 * time.Second,
		MinSyncPeriod:      1 * time.Second,
		IPVS:               IPVSOptions{SyncPeriod: 30 * time.Second, Scheduler: "rr"},
		MetricsBindAddress: "127.0.0.1:10249",
		HealthzBindAddress: "0.0.0.0:10256",
		IptablesVariant:    "auto",
	}
}

// AddFlags binds o to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.ConfigFile, "config", o.ConfigFile, "A kube-proxy configuration file (KubeProxyConfiguration, kubeproxy.config.k8s.io/v1alpha1), e.g. kubeadm's kube-proxy ConfigMap. Flags given on the command line override it.")
	fs.StringVar(&o.WriteConfigTo, "write-config-to", o.WriteConfigTo, "Write the effective configuration, as a KubeProxyConfiguration, to this file and exit.")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Path to a kubeconfig file with authorization information; empty means in-cluster configuration.")
	fs.StringVar(&o.Master, "master", o.Master, "The address of the Kubernetes API server (overrides any value in kubeconfig).")
	fs.StringVar(&o.ProxyMode, "proxy-mode", o.ProxyMode, "Which proxy mode to use: 'iptables' or 'ipvs'.")
	fs.StringVar(&o.HostnameOverride, "hostname-override", o.HostnameOverride, "If non-empty, use this string as the node name instead of the hostname.")
	fs.StringVar(&o.ClusterCIDR, "cluster-cidr", o.ClusterCIDR, "The CIDR range of the pods in the cluster (comma-separated for dual-stack). Traffic to a service from outside it is masqueraded.")
	fs.StringVar(&o.DetectLocalMode, "detect-local-mode", o.DetectLocalMode, "How to tell pod traffic from other traffic: 'ClusterCIDR' or 'NodeCIDR'.")
	fs.BoolVar(&o.MasqueradeAll, "masquerade-all", o.MasqueradeAll, "SNAT all traffic sent through service cluster IPs.")
	fs.Int32Var(&o.MasqueradeBit, "iptables-masquerade-bit", o.MasqueradeBit, "The bit of the fwmark space that marks packets needing SNAT, in [0, 31].")
	fs.StringSliceVar(&o.NodePortAddresses, "nodeport-addresses", o.NodePortAddresses, "CIDRs of the node addresses that accept NodePort traffic, or 'primary'. Empty means all local addresses.")
	fs.DurationVar(&o.SyncPeriod, "iptables-sync-period", o.SyncPeriod, "The longest time between syncs of the rules (e.g. '5s', '1m'). Must be greater than 0.")
	fs.DurationVar(&o.MinSyncPeriod, "iptables-min-sync-period", o.MinSyncPeriod, "The shortest time between syncs of the rules; changes arriving sooner are batched (e.g. '1s'). 0 syncs on every change.")
	fs.DurationVar(&o.IPVS.SyncPeriod, "ipvs-sync-period", o.IPVS.SyncPeriod, "The longest time between syncs of the IPVS rules. Must be greater than 0.")
	fs.DurationVar(&o.IPVS.MinSyncPeriod, "ipvs-min-sync-period", o.IPVS.MinSyncPeriod, "The shortest time between syncs of the IPVS rules.")
	fs.StringVar(&o.IPVS.Scheduler, "ipvs-scheduler", o.IPVS.Scheduler, "The IPVS scheduler: rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos.")
	fs.BoolVar(&o.IPVS.StrictARP, "ipvs-strict-arp", o.IPVS.StrictARP, "Set arp_ignore to 1 and arp_announce to 2.")
	fs.DurationVar(&o.IPVS.TCPTimeout, "ipvs-tcp-timeout", o.IPVS.TCPTimeout, "The timeout for idle IPVS TCP connections; 0 leaves the kernel's value.")
	fs.DurationVar(&o.IPVS.TCPFinTimeout, "ipvs-tcpfin-timeout", o.IPVS.TCPFinTimeout, "The timeout for IPVS TCP connections after a FIN; 0 leaves the kernel's value.")
	fs.DurationVar(&o.IPVS.UDPTimeout, "ipvs-udp-timeout", o.IPVS.UDPTimeout, "The timeout for IPVS UDP packets; 0 leaves the kernel's value.")
	fs.StringSliceVar(&o.IPVS.ExcludeCIDRs, "ipvs-exclude-cidrs", o.IPVS.ExcludeCIDRs, "CIDRs whose IPVS virtual servers Switchyard must leave alone when cleaning up.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, "The address:port of the metrics server; empty disables it.")
	fs.BoolVar(&o.EnableProfiling, "profiling", o.EnableProfiling, "Serve Go's profiling handlers under /debug/pprof/ on the metrics server.")
	fs.StringVar(&o.HealthzBindAddress, "healthz-bind-address", o.HealthzBindAddress, "The address:port of the health check server; empty disables it.")
	fs.BoolVar(&o.Cleanup, "cleanup", o.Cleanup, "Remove everything Switchyard (in any mode) installed, then exit.")
	fs.StringVar(&o.IptablesVariant, "iptables-variant", o.IptablesVariant, "Switchyard only: which iptables to program, 'nft', 'legacy' or 'auto' (the one kubelet uses on this node).")
}

// NodeName is the node this proxy serves: --hostname-override, else the lowercased hostname.
func (o *Options) NodeName() (string, error) {
	if o.HostnameOverride != "" {
		return strings.ToLower(strings.TrimSpace(o.HostnameOverride)), nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("no --hostname-override and the hostname is unknown: %w", err)
	}
	return strings.ToLower(strings.TrimSpace(h)), nil
}

// ClusterCIDRs parses --cluster-cidr.
func (o *Options) ClusterCIDRs() ([]netip.Prefix, error) {
	return parsePrefixes("--cluster-cidr", splitList(o.ClusterCIDR))
}

// NodePortPrefixes parses --nodeport-addresses; "primary" is returned as nil plus primary=true.
func (o *Options) NodePortPrefixes() (prefixes []netip.Prefix, primary bool, err error) {
	var cidrs []string
	for _, a := range o.NodePortAddresses {
		if strings.EqualFold(a, "primary") {
			primary = true
			continue
		}
		cidrs = append(cidrs, a)
	}
	prefixes, err = parsePrefixes("--nodeport-addresses", cidrs)
	return prefixes, primary, err
}

// Validate rejects settings kube-proxy would reject, with a message naming the flag.
func (o *Options) Validate() error {
	var errs []string
	switch o.ProxyMode {
	case "iptables", "ipvs":
	default:
		errs = append(errs, fmt.Sprintf("--proxy-mode=%q: must be 'iptables' or 'ipvs'", o.ProxyMode))
	}
	switch o.DetectLocalMode {
	case "ClusterCIDR", "NodeCIDR":
	default:
		errs = append(errs, fmt.Sprintf("--detect-local-mode=%q: Switchyard supports 'ClusterCIDR' and 'NodeCIDR'", o.DetectLocalMode))
	}
	switch o.IptablesVariant {
	case "auto", "nft", "legacy":
	default:
		errs = append(errs, fmt.Sprintf("--iptables-variant=%q: must be 'auto', 'nft' or 'legacy'", o.IptablesVariant))
	}
	if o.MasqueradeBit < 0 || o.MasqueradeBit > 31 {
		errs = append(errs, fmt.Sprintf("--iptables-masquerade-bit=%d: must be in [0, 31]", o.MasqueradeBit))
	}
	if o.SyncPeriod <= 0 {
		errs = append(errs, "--iptables-sync-period must be greater than 0")
	}
	if o.MinSyncPeriod < 0 || o.MinSyncPeriod > o.SyncPeriod {
		errs = append(errs, "--iptables-min-sync-period must be between 0 and --iptables-sync-period")
	}
	if o.IPVS.SyncPeriod <= 0 {
		errs = append(errs, "--ipvs-sync-period must be greater than 0")
	}
	if o.ProxyMode == "ipvs" && (o.IPVS.MinSyncPeriod < 0 || o.IPVS.MinSyncPeriod > o.IPVS.SyncPeriod) {
		errs = append(errs, fmt.Sprintf("--ipvs-min-sync-period (%v) must be between 0 and --ipvs-sync-period (%v)", o.IPVS.MinSyncPeriod, o.IPVS.SyncPeriod))
	}
	if _, err := o.ClusterCIDRs(); err != nil {
		errs = append(errs, err.Error())
	}
	if _, primary, err := o.NodePortPrefixes(); err != nil {
		errs = append(errs, err.Error())
	} else if primary {
		errs = append(errs, "--nodeport-addresses=primary is not supported yet; give the node addresses' CIDRs instead")
	}
	if _, err := parsePrefixes("--ipvs-exclude-cidrs", o.IPVS.ExcludeCIDRs); err != nil {
		errs = append(errs, err.Error())
	}
	if o.ProxyMode == "ipvs" && len(errs) == 0 {
		ipvsOpts := ipvsOptions(o)
		if err := ipvsOpts.Validate(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid configuration:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parsePrefixes(flag string, cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a CIDR: %v", flag, c, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
