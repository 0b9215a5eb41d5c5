package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	v1 "k8s.io/api/core/v1"
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

	// KubeAPIQPS, KubeAPIBurst and KubeAPIContentType configure the API client.
	KubeAPIQPS         float32
	KubeAPIBurst       int32
	KubeAPIContentType string
	// ConfigSyncPeriod is the informers' resync period.
	ConfigSyncPeriod time.Duration
	// HealthzPort and MetricsPort are kube-proxy's deprecated --healthz-port and --metrics-port;
	// parseFlags folds them into the bind addresses as kube-proxy does (see foldDeprecatedPorts).
	HealthzPort int32
	MetricsPort int32
	// OOMScoreAdj is written to /proc/self/oom_score_adj at start-up.
	OOMScoreAdj int32
	// InitOnly does the privileged start-up work and exits (see initOnly in main.go).
	InitOnly bool
	// Version is --version: "false", "true", "raw" or a version to report.
	Version   string
	Logging   LoggingOptions
	Conntrack ConntrackOptions

	// The settings below are accepted so that kube-proxy's command line and file work unchanged,
	// but Switchyard does not act on them yet or at all; ignored.go says which and why.
	BindAddress                 string
	BindAddressHardFail         bool
	FeatureGates                map[string]bool
	ShowHiddenMetricsForVersion string
	LocalhostNodePorts          bool
	PodBridgeInterface          string
	PodInterfaceNamePrefix      string

	// fileFieldsIgnored are the --config file's fields that map onto none of the above.
	fileFieldsIgnored []string
	// primaryNodeIP is what --nodeport-addresses=primary stands for, once resolved.
	primaryNodeIP netip.Addr
	// nodePodCIDR is this node's IPv4 pod CIDR, read at start-up for IPVS mode's NodeCIDR detector.
	nodePodCIDR netip.Prefix
}

// LoggingOptions are kube-proxy's logging flags other than klog's -v and --vmodule.
type LoggingOptions struct {
	Format         string
	FlushFrequency time.Duration
	// The split-stream options are kube-proxy's alpha ones; Switchyard ignores them.
	TextSplitStream    bool
	TextInfoBufferSize string // a resource.Quantity
	JSONSplitStream    bool
	JSONInfoBufferSize string
}

// ConntrackOptions are kube-proxy's --conntrack-* flags: the conntrack sysctls set at start-up
// (see setConntrack).
type ConntrackOptions struct {
	MaxPerCore            int32
	Min                   int32
	TCPEstablishedTimeout time.Duration
	TCPCloseWaitTimeout   time.Duration
	TCPBeLiberal          bool
	UDPTimeout            time.Duration
	UDPStreamTimeout      time.Duration
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

		KubeAPIQPS:         5,
		KubeAPIBurst:       10,
		KubeAPIContentType: protobufContentType,
		ConfigSyncPeriod:   15 * time.Minute,
		HealthzPort:        10256,
		MetricsPort:        10249,
		OOMScoreAdj:        -999,
		Version:            "false",
		Logging:            LoggingOptions{Format: "text", FlushFrequency: 5 * time.Second},
		BindAddress:        "0.0.0.0",
		LocalhostNodePorts: true,
		Conntrack: ConntrackOptions{MaxPerCore: 32 * 1024, Min: 128 * 1024,
			TCPEstablishedTimeout: 24 * time.Hour, TCPCloseWaitTimeout: time.Hour},
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
	fs.StringVar(&o.DetectLocalMode, "detect-local-mode", o.DetectLocalMode, "How to tell pod traffic from other traffic: by source address, 'ClusterCIDR' (--cluster-cidr) or 'NodeCIDR' (the node's pod CIDR), or by the interface it enters from, 'BridgeInterface' (--pod-bridge-interface) or 'InterfaceNamePrefix' (--pod-interface-name-prefix). Pod traffic to a service keeps its source address.")
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

	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "QPS to use while talking with the Kubernetes API server.")
	fs.Int32Var(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "Burst to use while talking with the Kubernetes API server.")
	fs.StringVar(&o.KubeAPIContentType, "kube-api-content-type", o.KubeAPIContentType, "Content type of requests sent to the API server.")
	fs.DurationVar(&o.ConfigSyncPeriod, "config-sync-period", o.ConfigSyncPeriod, "How often the Services, EndpointSlices and Nodes watched are resynced from the informers' caches. Must be greater than 0.")
	fs.Int32Var(&o.HealthzPort, "healthz-port", o.HealthzPort, "The port of the health check server, if --healthz-bind-address names none. 0 disables it.")
	_ = fs.MarkDeprecated("healthz-port", "use --healthz-bind-address instead.")
	fs.Int32Var(&o.MetricsPort, "metrics-port", o.MetricsPort, "The port of the metrics server, if --metrics-bind-address names none. 0 disables it.")
	_ = fs.MarkDeprecated("metrics-port", "use --metrics-bind-address instead.")
	fs.Int32Var(&o.OOMScoreAdj, "oom-score-adj", o.OOMScoreAdj, "The oom_score_adj of this process, in [-1000, 1000].")
	fs.BoolVar(&o.InitOnly, "init-only", o.InitOnly, "Do the start-up steps that need full root privileges (removing the other proxy mode's rules, IPVS mode's kernel settings), then exit.")
	addVersionFlag(fs, &o.Version)
	fs.StringVar(&o.Logging.Format, "logging-format", o.Logging.Format, "Sets the log format. Switchyard supports only \"text\".")
	fs.DurationVar(&o.Logging.FlushFrequency, "log-flush-frequency", o.Logging.FlushFrequency, "Maximum time between log flushes.")
	fs.BoolVar(&o.Logging.TextSplitStream, "log-text-split-stream", o.Logging.TextSplitStream, "kube-proxy's [Alpha] option; accepted and ignored.")
	fs.Var(quantityValue{&o.Logging.TextInfoBufferSize}, "log-text-info-buffer-size", "kube-proxy's [Alpha] option; accepted and ignored.")
	fs.BoolVar(&o.Logging.JSONSplitStream, "log-json-split-stream", o.Logging.JSONSplitStream, "kube-proxy's [Alpha] option for JSON logs; accepted and ignored.")
	fs.Var(quantityValue{&o.Logging.JSONInfoBufferSize}, "log-json-info-buffer-size", "kube-proxy's [Alpha] option for JSON logs; accepted and ignored.")

	fs.Var(ipValue{&o.BindAddress}, "bind-address", "The node's primary IP, which --nodeport-addresses=primary stands for when it is an IPv4 address; otherwise accepted and ignored (Switchyard is IPv4-only and reads the node's addresses from its interfaces).")
	fs.BoolVar(&o.BindAddressHardFail, "bind-address-hard-fail", o.BindAddressHardFail, "kube-proxy exits when it cannot bind a server port; accepted and ignored.")
	fs.Var(&mapStringBool{p: &o.FeatureGates}, "feature-gates", "kube-proxy's feature gates (key=true|false,...). AllowServiceExternalIPs=false leaves spec.externalIPs unprogrammed, and KubeProxyIPVS=false refuses --proxy-mode=ipvs, as in kube-proxy; the others are accepted and ignored.")
	fs.StringVar(&o.ShowHiddenMetricsForVersion, "show-hidden-metrics-for-version", o.ShowHiddenMetricsForVersion, "Accepted and ignored: Switchyard hides no metrics.")
	fs.BoolVar(&o.LocalhostNodePorts, "iptables-localhost-nodeports", o.LocalhostNodePorts, "In iptables mode, also answer NodePorts on 127.0.0.1, setting route_localnet=1 (as kube-proxy: only when --nodeport-addresses includes 127.0.0.1, which empty does). IPVS mode ignores it, as kube-proxy's does.")
	fs.StringVar(&o.PodBridgeInterface, "pod-bridge-interface", o.PodBridgeInterface, "With --detect-local-mode=BridgeInterface: the bridge the pods are attached to; traffic entering the node from it is pod traffic.")
	fs.StringVar(&o.PodInterfaceNamePrefix, "pod-interface-name-prefix", o.PodInterfaceNamePrefix, "With --detect-local-mode=InterfaceNamePrefix: traffic entering the node from any interface whose name starts with this prefix is pod traffic.")
	fs.Int32Var(&o.Conntrack.MaxPerCore, "conntrack-max-per-core", o.Conntrack.MaxPerCore, "Maximum number of NAT connections to track per CPU core (0 to leave the limit as-is and ignore conntrack-min).")
	fs.Int32Var(&o.Conntrack.Min, "conntrack-min", o.Conntrack.Min, "Minimum number of conntrack entries to allocate, regardless of conntrack-max-per-core (set conntrack-max-per-core=0 instead to leave the limit as-is).")
	fs.DurationVar(&o.Conntrack.TCPEstablishedTimeout, "conntrack-tcp-timeout-established", o.Conntrack.TCPEstablishedTimeout, "Idle timeout for established TCP connections (0 to leave as-is).")
	fs.DurationVar(&o.Conntrack.TCPCloseWaitTimeout, "conntrack-tcp-timeout-close-wait", o.Conntrack.TCPCloseWaitTimeout, "NAT timeout for TCP connections in the CLOSE_WAIT state (0 to leave as-is).")
	fs.BoolVar(&o.Conntrack.TCPBeLiberal, "conntrack-tcp-be-liberal", o.Conntrack.TCPBeLiberal, "Set nf_conntrack_tcp_be_liberal to 1, so that out-of-window TCP packets are not marked INVALID.")
	fs.DurationVar(&o.Conntrack.UDPTimeout, "conntrack-udp-timeout", o.Conntrack.UDPTimeout, "Idle timeout for UNREPLIED UDP connections (0 to leave as-is).")
	fs.DurationVar(&o.Conntrack.UDPStreamTimeout, "conntrack-udp-timeout-stream", o.Conntrack.UDPStreamTimeout, "Idle timeout for ASSURED UDP connections (0 to leave as-is).")
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

// NodePortPrefixes parses --nodeport-addresses. The keyword "primary" stands, as in kube-proxy,
// for the node's primary IPv4 address as a /32 (primaryNodeIP, which the daemon resolves at
// start-up: see nodePortPrimaryIP), and for nothing when the node has none, so that with no other
// IPv4 CIDR NodePorts are open on every address, again as in kube-proxy.
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
	if primary && o.primaryNodeIP.IsValid() {
		prefixes = append(prefixes, netip.PrefixFrom(o.primaryNodeIP, 32))
	}
	return prefixes, primary, err
}

// primaryIPv4 is kube-proxy v1.37's primary IPv4 address of a node (detectNodeIPs, then the
// "primary" keyword's expansion), given --bind-address and the addresses of its Node object in
// order: a bind address of the family wins; else the first IPv4 InternalIP, else the first IPv4
// ExternalIP. A loopback or no address is none (the invalid Addr).
func primaryIPv4(bindAddress string, node *v1.Node) netip.Addr {
	if a, err := netip.ParseAddr(bindAddress); err == nil && a.Unmap().Is4() && !a.IsUnspecified() {
		return loopbackIsNone(a.Unmap())
	}
	if node == nil {
		return netip.Addr{}
	}
	for _, typ := range []v1.NodeAddressType{v1.NodeInternalIP, v1.NodeExternalIP} {
		for _, na := range node.Status.Addresses {
			if a, err := netip.ParseAddr(na.Address); na.Type == typ && err == nil && a.Unmap().Is4() {
				return loopbackIsNone(a.Unmap())
			}
		}
	}
	return netip.Addr{}
}

func loopbackIsNone(a netip.Addr) netip.Addr {
	if a.IsLoopback() {
		return netip.Addr{}
	}
	return a
}

// Validate rejects settings kube-proxy would reject, with a message naming the flag.
func (o *Options) Validate() error {
	var errs []string
	switch o.ProxyMode {
	case "iptables":
	case "ipvs":
		if o.gateOff(gateIPVS) {
			errs = append(errs, "--proxy-mode=ipvs: the KubeProxyIPVS feature gate is off (--feature-gates), which disables IPVS mode as in kube-proxy")
		}
	default:
		errs = append(errs, fmt.Sprintf("--proxy-mode=%q: must be 'iptables' or 'ipvs'", o.ProxyMode))
	}
	switch o.DetectLocalMode {
	case "", "ClusterCIDR", "NodeCIDR": // empty is kube-proxy's ClusterCIDR
	case "BridgeInterface":
		if o.PodBridgeInterface == "" {
			errs = append(errs, "--detect-local-mode=BridgeInterface needs the bridge's name in --pod-bridge-interface (detectLocal.bridgeInterface)")
		}
	case "InterfaceNamePrefix":
		if o.PodInterfaceNamePrefix == "" {
			errs = append(errs, "--detect-local-mode=InterfaceNamePrefix needs a prefix in --pod-interface-name-prefix (detectLocal.interfaceNamePrefix)")
		}
	default:
		errs = append(errs, fmt.Sprintf("--detect-local-mode=%q: must be 'ClusterCIDR', 'NodeCIDR', 'BridgeInterface' or 'InterfaceNamePrefix'", o.DetectLocalMode))
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
	if o.ConfigSyncPeriod <= 0 {
		errs = append(errs, "--config-sync-period must be greater than 0")
	}
	if o.KubeAPIBurst < 0 {
		errs = append(errs, "--kube-api-burst must not be negative")
	}
	if o.OOMScoreAdj < -1000 || o.OOMScoreAdj > 1000 {
		errs = append(errs, fmt.Sprintf("--oom-score-adj=%d: must be in [-1000, 1000]", o.OOMScoreAdj))
	}
	if o.Logging.Format != "text" {
		errs = append(errs, fmt.Sprintf("--logging-format=%q: unsupported log format; Switchyard writes only \"text\"", o.Logging.Format))
	}
	if o.Logging.FlushFrequency < 0 {
		errs = append(errs, "--log-flush-frequency must not be negative")
	}
	c := o.Conntrack
	if c.MaxPerCore < 0 || c.Min < 0 || c.TCPEstablishedTimeout < 0 || c.TCPCloseWaitTimeout < 0 || c.UDPTimeout < 0 || c.UDPStreamTimeout < 0 {
		errs = append(errs, "--conntrack-* values must not be negative")
	}
	if _, err := o.ClusterCIDRs(); err != nil {
		errs = append(errs, err.Error())
	}
	if _, _, err := o.NodePortPrefixes(); err != nil {
		errs = append(errs, err.Error())
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

// foldDeprecatedPorts applies --healthz-port and --metrics-port as kube-proxy does: port 0 turns
// the server off; another port is appended to a bind address that names none. An address that
// names a port keeps it, so the port flag then changes nothing, in kube-proxy as here (ignored.go
// lists it).
func (o *Options) foldDeprecatedPorts() {
	o.HealthzBindAddress = addressWithPort(o.HealthzBindAddress, o.HealthzPort)
	o.MetricsBindAddress = addressWithPort(o.MetricsBindAddress, o.MetricsPort)
}

func addressWithPort(addr string, port int32) string {
	if port == 0 {
		return ""
	}
	if _, _, err := net.SplitHostPort(addr); err == nil || net.ParseIP(addr) == nil {
		return addr
	}
	return net.JoinHostPort(addr, strconv.Itoa(int(port)))
}

// portOf is the port an address names, or -1.
func portOf(addr string) int32 {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		return -1
	}
	return int32(n)
}
