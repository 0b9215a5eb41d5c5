package podnet

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/internal/polltest"
	"github.com/switchyard/switchyard/internal/sysctltest"
	"github.com/switchyard/switchyard/podnet/masq"
	"github.com/switchyard/switchyard/podnet/subnet"
	"github.com/switchyard/switchyard/podnet/vxlan"
	"github.com/switchyard/switchyard/podnet/vxlan/vxlantest"
)

// The sysctl fake is shared with the IPVS backend; this keeps it fitting this package's seam.
var _ Sysctl = (*sysctltest.Fake)(nil)

func testNode(name, podCIDR, internalIP string, annotations map[string]string) *v1.Node {
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Status:     v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: internalIP}}},
	}
	if podCIDR != "" {
		n.Spec.PodCIDR, n.Spec.PodCIDRs = podCIDR, []string{podCIDR}
	}
	return n
}

// harness is one node's controller over fakes, sharing the fake API server with others.
type harness struct {
	ctrl   *Controller
	nl     *vxlantest.Fake
	ipt    *iptablestest.Fake
	sysctl *sysctltest.Fake
	cfg    Config
}

func newHarness(t *testing.T, client kubernetes.Interface, nodeName, underlayCIDR string, nl *vxlantest.Fake) *harness {
	t.Helper()
	if nl == nil {
		nl = vxlantest.NewFake()
		nl.AddUnderlay("eth0", underlayCIDR, 1500)
	}
	h := &harness{
		nl:     nl,
		ipt:    iptablestest.NewFake(),
		sysctl: sysctltest.New(map[string]string{sysctlForward: "0", sysctlBridgeNF: "0"}),
	}
	h.cfg = DefaultConfig()
	h.cfg.Mode, h.cfg.ClusterCIDR = ModeVXLAN, "10.244.0.0/16"
	h.cfg.SubnetFile = filepath.Join(t.TempDir(), "subnet.env")
	factory := informers.NewSharedInformerFactory(client, 0)
	ctrl, err := newController(client, factory, nodeName, h.cfg, Deps{Netlink: h.nl, Iptables: h.ipt, Sysctl: h.sysctl})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	h.ctrl = ctrl
	return h
}

func (h *harness) sync(t *testing.T) {
	t.Helper()
	if err := h.ctrl.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func overlayLines(nl *vxlantest.Fake) []string {
	var out []string
	for _, l := range nl.State() {
		if strings.HasPrefix(l, "neigh ") || strings.HasPrefix(l, "fdb ") || strings.HasPrefix(l, "route ") {
			out = append(out, l)
		}
	}
	return out
}

func TestWaitsForPodCIDRThenProgramsEverything(t *testing.T) {
	ctx := context.Background()
	client := fake.NewSimpleClientset(testNode("a", "", "192.168.50.11", nil))
	h := newHarness(t, client, "a", "192.168.50.11/24", nil)
	h.sync(t)
	ok, msg := h.ctrl.Healthy()
	if ok || !strings.Contains(msg, "waiting for podCIDR of node a") {
		t.Fatalf("health without podCIDR: %v %q", ok, msg)
	}
	if len(h.nl.State()) != 0 {
		t.Fatalf("created kernel state before having a podCIDR: %v", h.nl.State())
	}
	if _, err := os.Stat(h.cfg.SubnetFile); !os.IsNotExist(err) {
		t.Fatalf("subnet file written without a podCIDR: %v", err)
	}

	// kube-controller-manager assigns the CIDR; a peer that already runs Switchyard exists.
	node, _ := client.CoreV1().Nodes().Get(ctx, "a", metav1.GetOptions{})
	node.Spec.PodCIDR, node.Spec.PodCIDRs = "10.244.1.0/24", []string{"10.244.1.0/24"}
	client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
	client.CoreV1().Nodes().Create(ctx, testNode("b", "10.244.2.0/24", "192.168.50.12", map[string]string{
		AnnotationVTEPMAC: "0a:00:00:00:00:02", AnnotationPublicIP: "192.168.50.12"}), metav1.CreateOptions{})
	polltest.Eventually(t, "node updates in the cache", func() bool {
		n, err := h.ctrl.nodes.Get("b")
		a, _ := h.ctrl.nodes.Get("a")
		return err == nil && n != nil && a.Spec.PodCIDR != ""
	})
	h.sync(t)
	if ok, msg := h.ctrl.Healthy(); !ok {
		t.Fatalf("unhealthy after sync: %s", msg)
	}

	mac := vxlan.DeriveMAC("a", 1).String()
	got, _ := client.CoreV1().Nodes().Get(ctx, "a", metav1.GetOptions{})
	if got.Annotations[AnnotationVTEPMAC] != mac || got.Annotations[AnnotationPublicIP] != "192.168.50.11" {
		t.Fatalf("annotations: %v", got.Annotations)
	}
	info, err := subnet.Read(h.cfg.SubnetFile)
	if err != nil || info.Subnet.String() != "10.244.1.0/24" || info.MTU != 1450 || info.Network.String() != "10.244.0.0/16" || !info.IPMasq {
		t.Fatalf("subnet file: %+v, %v", info, err)
	}
	if h.sysctl.Values[sysctlForward] != "1" || h.sysctl.Values[sysctlBridgeNF] != "1" {
		t.Fatalf("sysctls: %v", h.sysctl.Values)
	}
	if len(h.ipt.Rules("nat", masq.MasqChain)) != 3 || len(h.ipt.Rules("nat", "POSTROUTING")) != 1 {
		t.Fatalf("masquerade rules:\n%s", h.ipt.DumpTable("nat"))
	}
	want := []string{
		"fdb 0a:00:00:00:00:02 dst 192.168.50.12 dev syvx.1",
		"neigh 10.244.2.0 lladdr 0a:00:00:00:00:02 dev syvx.1",
		"route 10.244.2.0/24 via 10.244.2.0 dev syvx.1 onlink",
	}
	if got := overlayLines(h.nl); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("overlay:\n%s", strings.Join(got, "\n"))
	}

	// The peer leaves: its entries go.
	client.CoreV1().Nodes().Delete(ctx, "b", metav1.DeleteOptions{})
	polltest.Eventually(t, "node b gone from the cache", func() bool { _, err := h.ctrl.nodes.Get("b"); return err != nil })
	h.sync(t)
	if got := overlayLines(h.nl); len(got) != 0 {
		t.Fatalf("entries of a departed node remain: %v", got)
	}
}

func TestRestartKeepsMACAndWritesNothing(t *testing.T) {
	client := fake.NewSimpleClientset(
		testNode("a", "10.244.1.0/24", "192.168.50.11", nil),
		testNode("b", "10.244.2.0/24", "192.168.50.12", map[string]string{AnnotationVTEPMAC: "0a:00:00:00:00:02", AnnotationPublicIP: "192.168.50.12"}),
	)
	first := newHarness(t, client, "a", "192.168.50.11/24", nil)
	first.sync(t)
	polltest.Eventually(t, "annotations in the cache", func() bool {
		n, _ := first.ctrl.nodes.Get("a")
		return n.Annotations[AnnotationVTEPMAC] != ""
	})
	patches := countPatches(client)
	before := first.nl.Writes

	// A new daemon process on the same kernel (same fake netlink).
	second := newHarness(t, client, "a", "", first.nl)
	second.sync(t)
	if w := second.nl.Writes - before; w != 0 {
		t.Fatalf("restart wrote %d netlink changes, want 0", w)
	}
	if p := countPatches(client); p != patches {
		t.Fatalf("restart patched the node again (%d patches, had %d)", p, patches)
	}
}

func countPatches(client *fake.Clientset) int {
	n := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "patch" {
			n++
		}
	}
	return n
}

func TestForwardingPermissionErrorIsReported(t *testing.T) {
	client := fake.NewSimpleClientset(testNode("a", "10.244.1.0/24", "192.168.50.11", nil))
	h := newHarness(t, client, "a", "192.168.50.11/24", nil)
	h.sysctl.ReadOnly = map[string]bool{sysctlForward: true}
	if err := h.ctrl.Sync(context.Background()); err == nil {
		t.Fatal("sync succeeded without forwarding")
	}
	ok, msg := h.ctrl.Healthy()
	if ok || !strings.Contains(msg, "net.ipv4.ip_forward") || !strings.Contains(msg, "permission denied") {
		t.Fatalf("health: %v %q", ok, msg)
	}
	// br_netfilter missing is only a warning.
	h.sysctl.ReadOnly = nil
	delete(h.sysctl.Values, sysctlBridgeNF)
	h.sync(t)
	if ok, msg := h.ctrl.Healthy(); !ok {
		t.Fatalf("missing br_netfilter made the node unhealthy: %s", msg)
	}
}

func TestBadPeerAnnotationsSkipOnlyThatPeer(t *testing.T) {
	client := fake.NewSimpleClientset(
		testNode("a", "10.244.1.0/24", "192.168.50.11", nil),
		testNode("b", "10.244.2.0/24", "192.168.50.12", map[string]string{AnnotationVTEPMAC: "not-a-mac", AnnotationPublicIP: "192.168.50.12"}),
		testNode("c", "10.244.3.0/24", "192.168.50.13", map[string]string{AnnotationVTEPMAC: "0a:00:00:00:00:03", AnnotationPublicIP: "192.168.50.13"}),
		testNode("d", "10.244.4.0/24", "192.168.50.14", nil), // not running Switchyard yet
	)
	h := newHarness(t, client, "a", "192.168.50.11/24", nil)
	h.sync(t)
	got := overlayLines(h.nl)
	if len(got) != 3 || !strings.Contains(strings.Join(got, "\n"), "10.244.3.0/24") {
		t.Fatalf("want only c's three entries, got %v", got)
	}
}

// runController runs a controller of node "a" over deps with a resync period of an hour (so only
// events and retries sync). stop ends Run and checks that it returned no error.
func runController(t *testing.T, client kubernetes.Interface, deps Deps) (ctrl *Controller, stop func()) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Mode, cfg.ClusterCIDR, cfg.SubnetFile = ModeVXLAN, "10.244.0.0/16", filepath.Join(t.TempDir(), "subnet.env")
	cfg.ResyncPeriod = time.Hour
	factory := informers.NewSharedInformerFactory(client, 0)
	ctrl, err := newController(client, factory, "a", cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory.Start(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(ctx) }()
	return ctrl, func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run returned %v", err)
		}
	}
}

func TestRunRecreatesDeletedDevice(t *testing.T) {
	client := fake.NewSimpleClientset(
		testNode("a", "10.244.1.0/24", "192.168.50.11", nil),
		testNode("b", "10.244.2.0/24", "192.168.50.12", map[string]string{AnnotationVTEPMAC: "0a:00:00:00:00:02", AnnotationPublicIP: "192.168.50.12"}),
	)
	nl := vxlantest.NewFake()
	nl.AddUnderlay("eth0", "192.168.50.11/24", 1500)
	events := make(chan string, 1)
	// With an hour's resync period, only the link event can bring the device back.
	_, stop := runController(t, client, Deps{Netlink: nl, Iptables: iptablestest.NewFake(), Sysctl: sysctltest.New(map[string]string{sysctlForward: "0"}),
		WatchLinks: func(ctx context.Context, changed func(string)) error {
			for {
				select {
				case <-ctx.Done():
					return nil
				case name := <-events:
					changed(name)
				}
			}
		}})
	polltest.Eventually(t, "first sync", func() bool { return len(overlayLines(nl)) == 3 })

	nl.DeleteLinkBehindBack("syvx.1")
	events <- "syvx.1"
	polltest.Eventually(t, "device and entries recreated", func() bool {
		l, err := nl.LinkByName("syvx.1")
		return err == nil && l.Attrs().HardwareAddr.String() == vxlan.DeriveMAC("a", 1).String() && len(overlayLines(nl)) == 3
	})
	stop()
	// Stopping removed nothing.
	if len(overlayLines(nl)) != 3 {
		t.Fatalf("stopping the controller removed entries: %v", nl.State())
	}
}

// TestRunRetriesAfterBackoff: a failed sync is retried after the runner's first backoff (one second
// on the fake clock), long before the resync period.
func TestRunRetriesAfterBackoff(t *testing.T) {
	client := fake.NewSimpleClientset(testNode("a", "10.244.1.0/24", "192.168.50.11", nil))
	nl := vxlantest.NewFake()
	nl.AddUnderlay("eth0", "192.168.50.11/24", 1500)
	sysctl := sysctltest.New(map[string]string{sysctlForward: "0"})
	sysctl.ReadOnly[sysctlForward] = true
	clock := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	ctrl, stop := runController(t, client, Deps{Netlink: nl, Iptables: iptablestest.NewFake(), Sysctl: sysctl, Clock: clock})

	// The first sync fails; the runner then waits for its retry, and touches nothing until it is due.
	polltest.Eventually(t, "the first sync to fail", func() bool { _, msg := ctrl.Healthy(); return strings.Contains(msg, "permission denied") })
	polltest.Eventually(t, "the runner waiting for its retry", clock.HasWaiters)
	if ok, msg := ctrl.Healthy(); ok || !strings.Contains(msg, "enable forwarding") {
		t.Fatalf("health after the failure: %v %q, want the failed step named", ok, msg)
	}
	sysctl.ReadOnly = nil
	clock.Step(time.Second)
	polltest.Eventually(t, "the retry to succeed", func() bool { ok, _ := ctrl.Healthy(); return ok })
	if sysctl.Values[sysctlForward] != "1" {
		t.Errorf("forwarding after the retry: %q", sysctl.Values[sysctlForward])
	}
	stop()
}

func TestConfigValidate(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"bad mode":     func(c *Config) { c.Mode = "geneve" },
		"vni 0":        func(c *Config) { c.VNI = 0 },
		"vni too big":  func(c *Config) { c.VNI = 1 << 24 },
		"port 0":       func(c *Config) { c.Port = 0 },
		"no cidr":      func(c *Config) { c.ClusterCIDR = "" },
		"ipv6 only":    func(c *Config) { c.ClusterCIDR = "fd00::/48" },
		"garbage cidr": func(c *Config) { c.ClusterCIDR = "10.244.0.0/99" },
	} {
		c := DefaultConfig()
		c.Mode, c.ClusterCIDR = ModeVXLAN, "10.244.0.0/16"
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := DefaultConfig()
	c.Mode, c.ClusterCIDR = ModeVXLAN, "fd00::/48, 10.244.0.0/16"
	if n, err := c.clusterCIDR(); err != nil || n.String() != "10.244.0.0/16" {
		t.Fatalf("dual-stack cluster CIDR: %v %v", n, err)
	}
	off := DefaultConfig()
	if err := off.Validate(); err != nil {
		t.Fatalf("disabled config: %v", err)
	}
	_ = net.IPv4len
}

func TestOverlayRelevantChange(t *testing.T) {
	base := testNode("b", "10.244.2.0/24", "192.168.50.12", map[string]string{AnnotationVTEPMAC: "0a:00:00:00:00:02", AnnotationPublicIP: "192.168.50.12"})
	same := base.DeepCopy()
	same.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}
	same.ResourceVersion = "42"
	if overlayRelevantChange(base, same) {
		t.Fatal("a status-only update counted as an overlay change")
	}
	for name, mutate := range map[string]func(*v1.Node){
		"mac":         func(n *v1.Node) { n.Annotations[AnnotationVTEPMAC] = "0a:00:00:00:00:99" },
		"public ip":   func(n *v1.Node) { n.Annotations[AnnotationPublicIP] = "192.168.50.99" },
		"pod cidr":    func(n *v1.Node) { n.Spec.PodCIDRs = []string{"10.244.9.0/24"} },
		"internal ip": func(n *v1.Node) { n.Status.Addresses[0].Address = "192.168.50.99" },
		"deleting":    func(n *v1.Node) { now := metav1.Now(); n.DeletionTimestamp = &now },
	} {
		changed := base.DeepCopy()
		mutate(changed)
		if !overlayRelevantChange(base, changed) {
			t.Errorf("%s change not noticed", name)
		}
	}
}
