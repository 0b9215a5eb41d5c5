package main

import (
	"github.com/switchyard/switchyard/internal/sysctl"

	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/cpuset"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/ipvs"
	"github.com/switchyard/switchyard/proxier/model"
)

// nodeAddresses lists this node's global unicast addresses of the family; kube-proxy uses the node's
// IPs to let the node itself through a load balancer's source ranges when a range covers it.
func nodeAddresses(f model.IPFamily) []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		klog.ErrorS(err, "Cannot list the node's addresses")
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if ip = ip.Unmap(); ok && f.Of(ip) && ip.IsGlobalUnicast() {
			out = append(out, ip)
		}
	}
	return out
}

// setConntrack applies --conntrack-*, as kube-proxy does before it builds its proxier. kube-proxy
// exits when a write fails; but the proxy works with the kernel's values, and in the unprivileged
// DaemonSet /proc/sys is read-only (its kernel-setup init container writes them instead), and from
// a child network namespace nf_conntrack_max and the hash table size cannot be written at all. So
// what could not be set, and why, is said once, and the proxy goes on.
func setConntrack(o *Options, sys sysctl.Interface) {
	unset := conntrack.Apply(sys, o.Conntrack.settings(), numCPU())
	if len(unset) == 0 {
		return
	}
	lines := make([]string, len(unset))
	for i, u := range unset {
		lines[i] = u.String()
	}
	klog.InfoS("WARNING: could not set these conntrack parameters that the --conntrack-* settings ask for; going on with the kernel's values", "unset", lines)
}

// settings are c as the conntrack package takes them.
func (c ConntrackOptions) settings() conntrack.Settings {
	return conntrack.Settings{MaxPerCore: int(c.MaxPerCore), Min: int(c.Min),
		TCPEstablishedTimeout: c.TCPEstablishedTimeout, TCPCloseWaitTimeout: c.TCPCloseWaitTimeout, TCPBeLiberal: c.TCPBeLiberal,
		UDPTimeout: c.UDPTimeout, UDPStreamTimeout: c.UDPStreamTimeout}
}

// numCPU is the node's count of online CPUs, as kube-proxy sizes nf_conntrack_max by: the limit is
// the node's, so a cpuset limiting this process must not shrink it.
func numCPU() int {
	if n, err := cpuset.NumCPU(); err == nil && n > 0 {
		return n
	}
	return runtime.NumCPU()
}

// Upstream's wait for this node's addresses at start-up (NewNodeManager's): poll every second, for
// at most 30 seconds, then go on without them.
const (
	nodeIPsPoll    = time.Second
	nodeIPsTimeout = 30 * time.Second
)

// resolveNodePortPrimary resolves --nodeport-addresses=primary into o, once, before the backend is
// built, as kube-proxy does when it starts: from --bind-address if that is an IPv4 address, else
// from this node's Node object (read once, waiting up to nodeIPsTimeout for it to exist and have an
// address, as kube-proxy does; no API call happens after that). Without an address, "primary"
// stands for nothing and NodePorts stay open on every address (kube-proxy assumes 127.0.0.1, which
// it then skips). kube-proxy restarts when the node's addresses change later; Switchyard keeps the
// ones it started with.
func resolveNodePortPrimary(ctx context.Context, o *Options, client kubernetes.Interface, nodeName string, poll, timeout time.Duration) {
	if _, primary, _ := o.NodePortPrefixes(); !primary {
		return
	}
	if o.primaryNodeIP = primaryIPv4(o.BindAddress, nil); o.primaryNodeIP.IsValid() {
		klog.InfoS("--nodeport-addresses=primary is the bind address", "address", o.primaryNodeIP)
		return
	}
	lastErr := waitForNode(ctx, client, nodeName, poll, timeout, func(node *v1.Node) bool {
		o.primaryNodeIP = primaryIPv4(o.BindAddress, node)
		return o.primaryNodeIP.IsValid()
	})
	if !o.primaryNodeIP.IsValid() {
		klog.InfoS("WARNING: --nodeport-addresses=primary: this node has no IPv4 address in its Node object (InternalIP or ExternalIP) and --bind-address names none; NodePorts are open on every local address",
			"node", nodeName, "waited", timeout, "err", lastErr)
		return
	}
	klog.InfoS("--nodeport-addresses=primary is the node's address", "node", nodeName, "address", o.primaryNodeIP)
}

// waitForNode reads this node's Node object every poll, for at most timeout, until found accepts
// it (it is given nil while the Node cannot be read), and returns the last read's error. Start-up
// facts that kube-proxy also waits for come this way; no API call happens after that.
func waitForNode(ctx context.Context, client kubernetes.Interface, nodeName string, poll, timeout time.Duration, found func(*v1.Node) bool) error {
	var lastErr error
	_ = wait.PollUntilContextTimeout(ctx, poll, timeout, true, func(ctx context.Context) (bool, error) {
		node, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		lastErr = err
		if err != nil {
			node = nil
		}
		return found(node), nil
	})
	return lastErr
}

// hostIptables opens the node's iptables of the variant kubelet uses (or the one --iptables-variant
// names), for the IPv4 family.
func hostIptables(o *Options) (*utiliptables.Exec, utiliptables.Variant, error) {
	override := utiliptables.VariantDefault
	if o.IptablesVariant != "auto" {
		override = utiliptables.Variant(o.IptablesVariant)
	}
	variant, err := utiliptables.DetectVariant(override, utiliptables.HostSave)
	if err != nil {
		return nil, "", err
	}
	ipt, err := utiliptables.NewExec(model.IPv4, variant)
	if err != nil {
		return nil, "", fmt.Errorf("iptables (%s): %w", variant, err)
	}
	klog.InfoS("Using iptables", "variant", variant, "ipFamily", model.IPv4)
	return ipt, variant, nil
}

// iptablesOptions maps the flags onto the iptables backend's options. Validate has already
// checked what is parsed here.
func iptablesOptions(o *Options) iptables.Options {
	clusterCIDRs, _ := o.ClusterCIDRs()
	nodePortCIDRs, _, _ := o.NodePortPrefixes()
	opts := iptables.DefaultOptions(model.IPv4)
	opts.LocalDetector = iptables.LocalDetector{ClusterCIDRs: clusterCIDRs, UseNodeCIDR: o.DetectLocalMode == "NodeCIDR"}
	opts.LocalDetector.BridgeInterface, opts.LocalDetector.InterfaceNamePrefix = o.localInterfaces()
	opts.MasqueradeAll = o.MasqueradeAll
	opts.MasqueradeBit = int(o.MasqueradeBit)
	opts.NodePortAddresses = nodePortCIDRs
	opts.LocalhostNodePorts = o.LocalhostNodePorts
	return opts
}

// ipvsOptions maps the flags onto the IPVS backend's options.
func ipvsOptions(o *Options) ipvs.Options {
	clusterCIDRs, _ := o.ClusterCIDRs()
	nodePortCIDRs, _, _ := o.NodePortPrefixes()
	opts := ipvs.DefaultOptions()
	opts.Scheduler, opts.StrictARP = o.IPVS.Scheduler, o.IPVS.StrictARP
	opts.TCPTimeout, opts.TCPFinTimeout, opts.UDPTimeout = o.IPVS.TCPTimeout, o.IPVS.TCPFinTimeout, o.IPVS.UDPTimeout
	opts.ExcludeCIDRs, _ = parsePrefixes("--ipvs-exclude-cidrs", o.IPVS.ExcludeCIDRs)
	opts.NodeAddressPeriod = o.IPVS.SyncPeriod
	opts.NodePortAddresses = nodePortCIDRs
	opts.ClusterCIDRs = clusterCIDRs
	if o.DetectLocalMode == "NodeCIDR" {
		// The node's pod CIDR, resolved at start-up (resolveIPVSNodeCIDR); none means no detector.
		opts.ClusterCIDRs = nil
		if o.nodePodCIDR.IsValid() {
			opts.ClusterCIDRs = []netip.Prefix{o.nodePodCIDR}
		}
	}
	opts.BridgeInterface, opts.InterfaceNamePrefix = o.localInterfaces()
	opts.MasqueradeAll = o.MasqueradeAll
	opts.MasqueradeBit = int(o.MasqueradeBit)
	return opts
}

// localInterfaces are the bridge and the interface name prefix of the interface-based
// --detect-local-mode, the one it selects set: the flags only count in their mode, as in kube-proxy.
func (o *Options) localInterfaces() (bridge, prefix string) {
	switch o.DetectLocalMode {
	case "BridgeInterface":
		return o.PodBridgeInterface, ""
	case "InterfaceNamePrefix":
		return "", o.PodInterfaceNamePrefix
	}
	return "", ""
}

// newBackend sets the conntrack sysctls and builds the backend --proxy-mode asks for, for IPv4, and
// says which iptables variant it programs (the pod network's rules must go to the same one).
func newBackend(o *Options) (model.Backend, utiliptables.Variant, error) {
	setConntrack(o, sysctl.Proc{})
	ipt, variant, err := hostIptables(o)
	if err != nil {
		return nil, "", err
	}
	if o.ProxyMode == "ipvs" {
		// Fail on a kernel without IPVS before touching anything, iptables mode's rules included.
		if err := ipvs.CheckKernel(netlink.GenlFamilyGet, ipvs.Modprobe); err != nil {
			return nil, "", err
		}
	}
	if err := removeOtherMode(o, ipt); err != nil {
		// Leftovers of the other mode do not stop this one from working; say so and go on.
		klog.ErrorS(err, "Could not remove the other proxy mode's leftovers", "proxyMode", o.ProxyMode)
	}
	switch o.ProxyMode {
	case "iptables":
		opts := iptablesOptions(o)
		opts.RandomFully = ipt.HasRandomFully()
		opts.NodeIPs = nodeAddresses(model.IPv4)
		kernelFacts(&opts, sysctl.Proc{})
		p, err := iptables.NewProxier(iptables.Config{Options: opts, IPTables: ipt, Conntrack: &conntrack.Netlink{},
			NFAcct: openNFAcct("counting rules"), StagedChainsPerRestore: iptables.StagingFor(variant), CheckChainsEvery: o.SyncPeriod})
		return p, variant, err
	case "ipvs":
		opts := ipvsOptions(o)
		opts.RandomFully = ipt.HasRandomFully()
		p, err := ipvs.NewHost(opts, ipt)
		return p, variant, err
	}
	return nil, "", fmt.Errorf("unknown --proxy-mode %q", o.ProxyMode)
}

// cleanupAll is --cleanup: it removes what every part of Switchyard installed (iptables mode, IPVS
// mode and the pod network's rules) in both iptables variants. IPVS mode's state goes first, since
// its cleanup knows which virtual servers and addresses are Switchyard's.
func cleanupAll(o *Options) error {
	var errs []error
	if ipt, _, err := hostIptables(o); err != nil {
		errs = append(errs, err)
	} else if err := ipvs.CleanupHost(ipvsOptions(o), ipt); err != nil {
		errs = append(errs, fmt.Errorf("ipvs: %w", err))
	}
	if err := iptables.CleanupHost(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeOtherMode deletes what the other proxy mode left on this node, so that switching
// --proxy-mode either way leaves no stale rules behind. It runs before the first sync, and leaves
// the current mode's rules, the pod network's and other software's alone.
func removeOtherMode(o *Options, ipt utiliptables.Interface) error {
	if o.ProxyMode == "ipvs" {
		return iptables.Cleanup(ipt)
	}
	return ipvs.CleanupHost(ipvsOptions(o), ipt)
}
