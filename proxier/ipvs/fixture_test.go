package ipvs

import (
	"github.com/switchyard/switchyard/internal/sysctl"

	"net/netip"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/internal/sysctltest"
	"github.com/switchyard/switchyard/proxier/conntrack/conntracktest"
	"github.com/switchyard/switchyard/proxier/ipvs/ipset/ipsettest"
	"github.com/switchyard/switchyard/proxier/ipvs/ipvstest"
	"github.com/switchyard/switchyard/proxier/model"
)

// Address conventions (STYLE.md): pods in 10.244.0.0/16 (this node has 10.244.1.0/24), ClusterIPs in
// 10.96.0.0/16, the node's underlay in 192.168.50.0/24, load balancers and external IPs from the
// documentation ranges.

const nodeName = "node-a"

var (
	nodeIP  = netip.MustParseAddr("192.168.50.10")
	node2IP = netip.MustParseAddr("192.168.51.10") // a second uplink, not selected by --nodeport-addresses
	podCIDR = netip.MustParsePrefix("10.244.0.0/16")
)

func ip(s string) netip.Addr      { return netip.MustParseAddr(s) }
func ipp(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
func spn(ns, name, port string) model.ServicePortName {
	return model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: ns, Name: name}, Port: port}
}

func ready(addr string, port int32, node string) model.Endpoint {
	return model.Endpoint{IP: ip(addr), Port: port, Ready: true, Serving: true, NodeName: node}
}

func terminating(addr string, port int32, node string) model.Endpoint {
	return model.Endpoint{IP: ip(addr), Port: port, Serving: true, Terminating: true, NodeName: node}
}

// fixture is a snapshot that exercises every kind of address and policy the backend renders.
func fixture() *model.Snapshot {
	s := model.NewSnapshot()
	s.Node = model.NodeInfo{Name: nodeName, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}}
	add := func(svc *model.ServicePort, eps ...model.Endpoint) {
		if svc.ExternalPolicy == "" {
			svc.ExternalPolicy = model.PolicyCluster
		}
		if svc.InternalPolicy == "" {
			svc.InternalPolicy = model.PolicyCluster
		}
		s.Services[svc.Name] = svc
		s.Endpoints[svc.Name] = eps
	}
	// A plain ClusterIP service with two named ports sharing one ClusterIP, dual-stack.
	add(&model.ServicePort{Name: spn("default", "web", "http"), Protocol: model.TCP, Port: 80,
		ClusterIPs: []netip.Addr{ip("10.96.0.10"), ip("fd00:96::10")}},
		ready("10.244.1.2", 8080, nodeName), ready("10.244.2.3", 8080, "node-b"), ready("fd00:244::2", 8080, nodeName))
	add(&model.ServicePort{Name: spn("default", "web", "https"), Protocol: model.TCP, Port: 443,
		ClusterIPs: []netip.Addr{ip("10.96.0.10")}},
		ready("10.244.1.2", 8443, nodeName), ready("10.244.2.3", 8443, "node-b"))
	// DNS over UDP, with one endpoint terminating (excluded while ready ones exist).
	add(&model.ServicePort{Name: spn("kube-system", "dns", "dns"), Protocol: model.UDP, Port: 53,
		ClusterIPs: []netip.Addr{ip("10.96.0.53")}},
		ready("10.244.1.7", 53, nodeName), ready("10.244.3.4", 53, "node-c"), terminating("10.244.2.9", 53, "node-b"))
	// NodePort with eTP=Cluster and ClientIP affinity.
	add(&model.ServicePort{Name: spn("shop", "cart", ""), Protocol: model.TCP, Port: 8080, NodePort: 30080,
		ClusterIPs: []netip.Addr{ip("10.96.1.20")}, Affinity: model.SessionAffinity{ClientIP: true, TimeoutSeconds: 600}},
		ready("10.244.2.5", 8080, "node-b"), ready("10.244.3.5", 8080, "node-c"))
	// LoadBalancer with eTP=Local, source ranges and a health-check node port: the ClusterIP uses all
	// endpoints, the external addresses only the local one.
	add(&model.ServicePort{Name: spn("shop", "front", ""), Protocol: model.TCP, Port: 443, NodePort: 31443,
		ClusterIPs: []netip.Addr{ip("10.96.1.30")}, LoadBalancerIPs: []netip.Addr{ip("203.0.113.7")},
		LoadBalancerSourceRanges: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/32")},
		ExternalPolicy:           model.PolicyLocal, HealthCheckNodePort: 32000},
		ready("10.244.1.9", 8443, nodeName), ready("10.244.2.9", 8443, "node-b"))
	// External IP with eTP=Local on a node without local endpoints: the external VIP gets no real
	// servers (traffic there is dropped by IPVS), the ClusterIP keeps them all.
	add(&model.ServicePort{Name: spn("shop", "legacy", ""), Protocol: model.TCP, Port: 80,
		ClusterIPs: []netip.Addr{ip("10.96.1.40")}, ExternalIPs: []netip.Addr{ip("192.0.2.50")},
		ExternalPolicy: model.PolicyLocal},
		ready("10.244.2.11", 80, "node-b"))
	// iTP=Local: the ClusterIP only reaches this node's endpoints.
	add(&model.ServicePort{Name: spn("monitoring", "agent", "metrics"), Protocol: model.TCP, Port: 9100,
		ClusterIPs: []netip.Addr{ip("10.96.2.10")}, InternalPolicy: model.PolicyLocal},
		ready("10.244.1.20", 9100, nodeName), ready("10.244.2.20", 9100, "node-b"))
	// SCTP, and a service with no endpoints at all.
	add(&model.ServicePort{Name: spn("telco", "sig", ""), Protocol: model.SCTP, Port: 3868,
		ClusterIPs: []netip.Addr{ip("10.96.3.1")}}, ready("10.244.2.30", 3868, "node-b"))
	add(&model.ServicePort{Name: spn("default", "empty", ""), Protocol: model.TCP, Port: 80,
		ClusterIPs: []netip.Addr{ip("10.96.0.99")}})
	// Bad input: a port out of range must be skipped without harming anyone else.
	add(&model.ServicePort{Name: spn("default", "broken", ""), Protocol: model.TCP, Port: 70000,
		ClusterIPs: []netip.Addr{ip("10.96.0.98")}}, ready("10.244.2.40", 80, "node-b"))
	s.Full = true
	return s
}

func testOptions() Options {
	o := DefaultOptions()
	o.ClusterCIDRs = []netip.Prefix{podCIDR}
	o.NodePortAddresses = []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24")}
	o.GracePeriod = 10 * time.Minute
	return o
}

// The fakes of this package's own seams live in ipvstest and sysctltest, which cannot import this
// package; these lines keep them fitting the seams.
var (
	_ IPVS             = (*ipvstest.FakeIPVS)(nil)
	_ Links            = (*ipvstest.FakeLinks)(nil)
	_ sysctl.Interface = (*sysctltest.Fake)(nil)
)

// testKernel is a fake node: every seam's stateful fake, and a clock tests move by hand.
type testKernel struct {
	ipvs      *ipvstest.FakeIPVS
	links     *ipvstest.FakeLinks
	ipset     *ipsettest.Fake
	iptables  *iptablestest.Fake
	sysctl    *sysctltest.Fake
	conntrack *conntracktest.Fake
	now       time.Time
}

func newTestKernel() *testKernel {
	return &testKernel{
		ipvs:      ipvstest.NewFakeIPVS(),
		links:     ipvstest.NewFakeLinks(map[string][]string{"eth0": {"192.168.50.10/24"}, "eth1": {"192.168.51.10/24"}, "cni0": {"10.244.1.1/24"}}),
		ipset:     ipsettest.NewFake(),
		iptables:  iptablestest.NewFake(),
		sysctl:    ipvstest.NewFakeSysctl(),
		conntrack: &conntracktest.Fake{},
		now:       time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

func (k *testKernel) deps() Deps {
	k.iptables.SetExists = func(name string) bool { _, ok := k.ipset.Sets[name]; return ok }
	return Deps{IPVS: k.ipvs, Links: k.links, Ipset: k.ipset, Iptables: k.iptables, Sysctl: k.sysctl,
		Conntrack: k.conntrack, Now: func() time.Time { return k.now }}
}

func newTestProxier(t testing.TB, k *testKernel, opts Options) *Proxier {
	t.Helper()
	p, err := New(opts, k.deps())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// syncedFixture is the common start of a test: a fake node into which a proxier with testOptions has
// synced fixture().
func syncedFixture(t testing.TB) (*testKernel, *Proxier, *model.Snapshot) {
	t.Helper()
	k := newTestKernel()
	p := newTestProxier(t, k, testOptions())
	snap := fixture()
	mustSync(t, p, snap)
	return k, p, snap
}

func mustSync(t testing.TB, p *Proxier, s *model.Snapshot) SyncStats {
	t.Helper()
	if err := p.Sync(s); err != nil {
		t.Fatalf("sync: %v", err)
	}
	return p.LastSyncStats()
}
