package podnet

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/syncloop"
	"github.com/switchyard/switchyard/podnet/masq"
	"github.com/switchyard/switchyard/podnet/subnet"
	"github.com/switchyard/switchyard/podnet/vxlan"
	"github.com/switchyard/switchyard/proxier/model"
)

// Deps are the controller's side effects on the node. NewController fills them for the current
// network namespace; tests give ones bound to a test namespace, or fakes.
type Deps struct {
	Netlink  vxlan.Netlink
	Iptables utiliptables.Interface
	Sysctl   Sysctl
	// WatchLinks, if set, calls changed whenever a link of the node is added, changed or removed, until
	// ctx ends. It lets a deleted VXLAN device be recreated without waiting for the resync period.
	WatchLinks func(ctx context.Context, changed func(name string)) error
	// Clock times resyncs and retries; nil means the real clock.
	Clock clock.Clock
}

// Retry backoff after a failed sync: it starts at retryInitial and doubles up to retryMax (or the
// resync period, if that is shorter).
const (
	retryInitial = time.Second
	retryMax     = 30 * time.Second
)

// Controller runs the pod network of one node.
type Controller struct {
	client      kubernetes.Interface
	nodes       corelisters.NodeLister
	nodesSynced cache.InformerSynced
	nodeName    string
	cfg         Config
	clusterCIDR *net.IPNet
	deps        Deps
	deviceName  string

	// runner calls resync: on node and link changes, after a failure with backoff, and at least every
	// ResyncPeriod. It is the proxy's bounded-frequency runner, without a minimum interval: an overlay
	// sync costs a few netlink calls.
	runner *syncloop.Runner
	// runCtx is Run's context, for the API calls of syncs the runner makes. Set before the runner
	// starts and only read from its goroutine.
	runCtx context.Context

	mu          sync.Mutex
	healthy     bool
	healthMsg   string
	lastProblem string
	lastResult  vxlan.Result
}

// NewController builds the pod network controller for nodeName. It registers a handler on the node
// informer of nodeFactory (which the daemon starts) and opens netlink in the current network namespace.
func NewController(client kubernetes.Interface, nodeFactory informers.SharedInformerFactory, nodeName string, cfg Config) (*Controller, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	ipt, err := utiliptables.NewExec(model.IPv4, cfg.IptablesVariant)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("pod network iptables: %w", err)
	}
	deps := Deps{
		Netlink:    h,
		Iptables:   ipt,
		Sysctl:     &ProcSysctl{},
		WatchLinks: watchLinks(nil),
	}
	return newController(client, nodeFactory, nodeName, cfg, deps)
}

func newController(client kubernetes.Interface, nodeFactory informers.SharedInformerFactory, nodeName string, cfg Config, deps Deps) (*Controller, error) {
	if !cfg.Enabled() {
		return nil, fmt.Errorf("pod network controller needs --pod-network=%s", ModeVXLAN)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("pod network controller: %w", err)
	}
	if nodeName == "" {
		return nil, fmt.Errorf("pod network controller needs the node name")
	}
	clusterCIDR, _ := cfg.clusterCIDR()
	informer := nodeFactory.Core().V1().Nodes()
	c := &Controller{
		client:      client,
		nodes:       informer.Lister(),
		nodesSynced: informer.Informer().HasSynced,
		nodeName:    nodeName,
		cfg:         cfg,
		clusterCIDR: clusterCIDR,
		deps:        deps,
		deviceName:  vxlan.DeviceName(cfg.VNI),
		healthMsg:   "pod network has not synced yet",
	}
	var err error
	c.runner, err = syncloop.NewRunner(syncloop.RunnerOptions{Name: "pod-network", MaxInterval: cfg.ResyncPeriod,
		RetryInitial: retryInitial, RetryMax: retryMax, Clock: deps.Clock}, c.resync)
	if err != nil {
		return nil, fmt.Errorf("pod network controller: %w", err)
	}
	_, err = informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.kick() },
		UpdateFunc: func(oldObj, newObj any) {
			old, ok1 := oldObj.(*v1.Node)
			cur, ok2 := newObj.(*v1.Node)
			// Status-only updates (heartbeats, conditions) are the bulk of node traffic and change
			// nothing here, also for this node: its pod CIDR, annotations and InternalIP are covered.
			if !ok1 || !ok2 || overlayRelevantChange(old, cur) {
				c.kick()
			}
		},
		DeleteFunc: func(any) { c.kick() },
	})
	if err != nil {
		return nil, fmt.Errorf("watch nodes: %w", err)
	}
	return c, nil
}

// kick asks for a sync; many kicks before it starts give one sync.
func (c *Controller) kick() { c.runner.Run() }

// Healthy reports whether the node's overlay is programmed; the message says what is missing.
func (c *Controller) Healthy() (bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.healthy, c.healthMsg
}

func (c *Controller) setHealth(ok bool, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.healthy, c.healthMsg = ok, msg
}

// Run reconciles until ctx ends: on node changes, on changes of the node's links, after a failure
// (with backoff) and at least every ResyncPeriod. It never removes kernel state when it stops, so pod
// traffic keeps flowing across restarts of the daemon and outages of the API server.
func (c *Controller) Run(ctx context.Context) error {
	if c.deps.WatchLinks != nil {
		go func() {
			err := c.deps.WatchLinks(ctx, func(name string) {
				if name == c.deviceName {
					c.kick()
				}
			})
			if err != nil && ctx.Err() == nil {
				klog.ErrorS(err, "Watching links failed; a deleted VXLAN device is recreated at the next resync")
			}
		}()
	}
	if !cache.WaitForCacheSync(ctx.Done(), c.nodesSynced) {
		return nil // only a cancelled ctx stops the wait, and stopping is not an error
	}
	c.runCtx = ctx
	c.runner.Loop(ctx.Done())
	return nil
}

// resync is the runner's function; the runner logs a failure and schedules the retry.
func (c *Controller) resync(syncloop.Reason) error {
	if err := c.Sync(c.runCtx); err != nil {
		return fmt.Errorf("pod network sync of node %s: %w", c.nodeName, err)
	}
	return nil
}

// Sync reconciles once: forwarding sysctls, the VXLAN device, the node's annotations, the subnet file,
// the masquerade rules, then every peer's entries.
func (c *Controller) Sync(ctx context.Context) error {
	node, err := c.nodes.Get(c.nodeName)
	if apierrors.IsNotFound(err) {
		c.setHealth(false, fmt.Sprintf("node %s not found", c.nodeName))
		return nil // the node's creation triggers the next sync
	}
	if err != nil {
		return c.fail("get node %s: %w", c.nodeName, err)
	}
	podCIDR, err := nodePodCIDR(node)
	if err != nil {
		return c.fail("read this node's pod CIDR: %w", err)
	}
	if podCIDR == nil {
		msg := fmt.Sprintf("waiting for podCIDR of node %s (kube-controller-manager --allocate-node-cidrs assigns it)", c.nodeName)
		c.noteProblem(msg)
		c.setHealth(false, msg)
		return nil
	}
	if !c.clusterCIDR.Contains(podCIDR.IP) {
		msg := fmt.Sprintf("podCIDR %s of node %s is outside --cluster-cidr %s", podCIDR, c.nodeName, c.clusterCIDR)
		c.noteProblem(msg)
		c.setHealth(false, msg)
		return nil
	}
	warning, err := setForwarding(c.deps.Sysctl)
	if err != nil {
		return c.fail("enable forwarding: %w", err)
	}
	if warning != "" {
		c.noteProblem(warning)
	}
	under, err := findUnderlay(c.deps.Netlink, c.cfg.Iface, nodeInternalIP(node))
	if err != nil {
		return c.fail("underlay interface: %w", err)
	}
	dev, err := vxlan.EnsureDevice(c.deps.Netlink, vxlan.DeviceSpec{
		Name:          c.deviceName,
		VNI:           c.cfg.VNI,
		Port:          c.cfg.Port,
		UnderlayIndex: under.Index,
		UnderlayIP:    under.IP,
		MTU:           under.MTU - 50,
		MAC:           vxlan.DeriveMAC(c.nodeName, c.cfg.VNI),
		Address:       vxlan.VTEPIP(podCIDR),
	})
	if err != nil {
		return c.fail("set up the overlay device: %w", err)
	}
	if err := c.publish(ctx, node, dev.HardwareAddr, under.IP); err != nil {
		return c.fail("publish this node's VTEP: %w", err)
	}
	changed, err := subnet.Write(c.cfg.SubnetFile, subnet.Info{Network: c.clusterCIDR, Subnet: podCIDR, MTU: dev.MTU, IPMasq: c.cfg.IPMasq})
	if err != nil {
		return c.fail("share the pod subnet with the CNI plugin: %w", err)
	}
	if changed {
		klog.InfoS("Wrote pod subnet file", "path", c.cfg.SubnetFile, "podCIDR", podCIDR, "mtu", dev.MTU)
	}
	if err := masq.Sync(c.deps.Iptables, c.clusterCIDR, c.cfg.IPMasq); err != nil {
		return c.fail("masquerade pod traffic: %w", err)
	}
	c.setHealth(true, "")

	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	peers, problems := PeersFromNodes(nodes, c.nodeName)
	desired, skipped := vxlan.ComputeDesired(vxlan.Local{
		DeviceIndex:    dev.Index,
		PodCIDR:        podCIDR,
		DirectRouting:  c.cfg.DirectRouting,
		UnderlayIndex:  under.Index,
		UnderlaySubnet: under.Subnet,
	}, peers)
	for _, s := range skipped {
		problems = append(problems, fmt.Sprintf("node %s: %s", s.Peer, s.Reason))
	}
	if len(problems) > 0 {
		c.noteProblem("skipped peers: " + strings.Join(problems, "; "))
	}
	res, err := vxlan.Reconcile(c.deps.Netlink, dev.Index, desired)
	c.mu.Lock()
	c.lastResult = res
	c.mu.Unlock()
	klog.V(2).InfoS("Pod network synced", "node", c.nodeName, "peers", len(desired.Peers), "writes", res.Writes, "removed", res.Removed)
	if err != nil {
		return fmt.Errorf("program peers (%d failed): %w", len(res.PeersFailed), err)
	}
	return nil
}

// fail marks the node unhealthy with the error and returns it.
func (c *Controller) fail(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	c.setHealth(false, err.Error())
	return err
}

// noteProblem logs a condition once per change instead of once per sync.
func (c *Controller) noteProblem(msg string) {
	c.mu.Lock()
	repeat := c.lastProblem == msg
	c.lastProblem = msg
	c.mu.Unlock()
	if !repeat {
		klog.InfoS("Pod network: "+msg, "node", c.nodeName)
	}
}

// publish patches the node's VTEP annotations when they differ. It is the only write Switchyard makes
// to the API server, and a merge patch of two annotations needs only the "patch nodes" permission.
func (c *Controller) publish(ctx context.Context, node *v1.Node, mac net.HardwareAddr, publicIP net.IP) error {
	want := map[string]string{AnnotationVTEPMAC: mac.String(), AnnotationPublicIP: publicIP.String()}
	if node.Annotations[AnnotationVTEPMAC] == want[AnnotationVTEPMAC] && node.Annotations[AnnotationPublicIP] == want[AnnotationPublicIP] {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": want}})
	if err != nil {
		return fmt.Errorf("encode the annotations patch: %w", err)
	}
	if _, err := c.client.CoreV1().Nodes().Patch(ctx, c.nodeName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patch the VTEP annotations of node %s: %w", c.nodeName, err)
	}
	klog.InfoS("Published VTEP annotations", "node", c.nodeName, "vtepMAC", want[AnnotationVTEPMAC], "publicIP", want[AnnotationPublicIP])
	return nil
}

// LastResult is what the last peer reconcile did (for tests and benchmarks).
func (c *Controller) LastResult() vxlan.Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastResult
}
