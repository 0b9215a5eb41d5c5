package iptables_test

// Behaviour tests: render a snapshot, load the result into the packet tracer, and assert where
// packets go (DNAT targets, REJECT/DROP, masquerade), not what the rules look like.

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/iptables/tracer"
	"github.com/switchyard/switchyard/proxier/model"
)

// Fixture: pods 10.244.0.0/16 (this node's pods in 10.244.1.0/24 behind cni0, other nodes' pods
// through flannel.1), ClusterIPs 10.96.0.0/16, node underlay 192.168.50.0/24 on eth0.
const thisNode = "node-a"

var (
	nodeIP    = netip.MustParseAddr("192.168.50.10")
	bridgeIP  = netip.MustParseAddr("10.244.1.1")
	traceNode = tracer.Node{
		Interfaces: []tracer.Interface{
			{Name: "eth0", Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.50.10/24")}},
			{Name: "cni0", Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.1.1/24")}},
			{Name: "flannel.1", Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/32")}},
		},
		Routes: []tracer.Route{
			{Dst: netip.MustParsePrefix("10.244.0.0/16"), Iface: "flannel.1"},
			{Dst: netip.MustParsePrefix("0.0.0.0/0"), Iface: "eth0"},
		},
	}
)

func a(s string) netip.Addr      { return netip.MustParseAddr(s) }
func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
func pfx(s string) netip.Prefix  { return netip.MustParsePrefix(s) }
func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, a(s))
	}
	return out
}

func name(svc string) model.ServicePortName {
	return model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "default", Name: svc}, Port: "p"}
}

func ready(ip string, port int32, node string) model.Endpoint {
	return model.Endpoint{IP: a(ip), Port: port, Ready: true, Serving: true, NodeName: node}
}

func servingTerminating(ip string, port int32, node string) model.Endpoint {
	return model.Endpoint{IP: a(ip), Port: port, Serving: true, Terminating: true, NodeName: node}
}

func traceOptions() iptables.Options {
	o := iptables.DefaultOptions(model.IPv4)
	o.LocalDetector.ClusterCIDRs = []netip.Prefix{pfx("10.244.0.0/16")}
	o.NodeIPs = []netip.Addr{nodeIP}
	o.RandomFully = true
	return o
}

// add is the fixture's addService: defaults filled in, marked changed.
var add = iptables.AddService

// traceSnapshot has one service per behaviour under test.
func traceSnapshot() *model.Snapshot {
	s := model.NewSnapshot()
	s.Full = true
	s.Node = model.NodeInfo{Name: thisNode, PodCIDRs: []netip.Prefix{pfx("10.244.1.0/24")}}
	// Five ready endpoints (one on this node) and one that is neither ready nor serving.
	add(s, &model.ServicePort{Name: name("web"), Port: 80, ClusterIPs: addrs("10.96.0.10"), NodePort: 30010,
		ExternalIPs: addrs("192.168.50.200")},
		ready("10.244.1.5", 8080, thisNode), ready("10.244.2.7", 8080, "node-b"), ready("10.244.3.9", 8080, "node-c"),
		ready("10.244.2.8", 8080, "node-b"), ready("10.244.3.10", 8080, "node-c"),
		model.Endpoint{IP: a("10.244.4.4"), Port: 8080, NodeName: "node-d"})
	add(s, &model.ServicePort{Name: name("dns"), Protocol: model.UDP, Port: 53, ClusterIPs: addrs("10.96.0.53")},
		ready("10.244.2.2", 53, "node-b"), ready("10.244.3.3", 53, "node-c"))
	// eTP=Local load balancer with a local endpoint, source ranges and a health check port.
	add(s, &model.ServicePort{Name: name("lb-local"), Port: 80, ClusterIPs: addrs("10.96.0.20"), NodePort: 30020,
		LoadBalancerIPs: addrs("198.18.0.20"), LoadBalancerSourceRanges: []netip.Prefix{pfx("203.0.113.0/24")},
		ExternalPolicy: model.PolicyLocal, HealthCheckNodePort: 32020},
		ready("10.244.1.7", 8080, thisNode), ready("10.244.2.9", 8080, "node-b"))
	// eTP=Local with endpoints only elsewhere.
	add(s, &model.ServicePort{Name: name("lb-remote"), Port: 80, ClusterIPs: addrs("10.96.0.30"), NodePort: 30030,
		ExternalPolicy: model.PolicyLocal},
		ready("10.244.2.10", 8080, "node-b"))
	// No endpoints at all.
	add(s, &model.ServicePort{Name: name("empty"), Port: 80, ClusterIPs: addrs("10.96.0.40"), NodePort: 30040,
		ExternalIPs: addrs("192.168.50.201")})
	add(s, &model.ServicePort{Name: name("sticky"), Port: 80, ClusterIPs: addrs("10.96.0.50"),
		Affinity: model.SessionAffinity{ClientIP: true, TimeoutSeconds: 600}},
		ready("10.244.2.11", 8080, "node-b"), ready("10.244.3.11", 8080, "node-c"), ready("10.244.1.11", 8080, thisNode))
	add(s, &model.ServicePort{Name: name("itp-local"), Port: 80, ClusterIPs: addrs("10.96.0.60"), InternalPolicy: model.PolicyLocal},
		ready("10.244.1.12", 8080, thisNode), ready("10.244.2.12", 8080, "node-b"))
	add(s, &model.ServicePort{Name: name("itp-remote"), Port: 80, ClusterIPs: addrs("10.96.0.61"), InternalPolicy: model.PolicyLocal},
		ready("10.244.2.13", 8080, "node-b"))
	// Only terminating endpoints: the serving one is the fallback, the non-serving one is never used.
	add(s, &model.ServicePort{Name: name("draining"), Port: 80, ClusterIPs: addrs("10.96.0.70")},
		servingTerminating("10.244.2.14", 8080, "node-b"),
		model.Endpoint{IP: a("10.244.3.14"), Port: 8080, Terminating: true, NodeName: "node-c"})
	add(s, &model.ServicePort{Name: name("sctp"), Protocol: model.SCTP, Port: 9999, ClusterIPs: addrs("10.96.0.80")},
		ready("10.244.2.16", 9999, "node-b"))
	// A ready endpoint beside a serving-terminating one: only the ready one is used.
	add(s, &model.ServicePort{Name: name("half-drained"), Port: 80, ClusterIPs: addrs("10.96.0.71")},
		servingTerminating("10.244.2.15", 8080, "node-b"), ready("10.244.3.15", 8080, "node-c"))
	return s
}

// load renders snap with opts and returns a tracer over the resulting kernel state.
func load(t *testing.T, snap *model.Snapshot, opts iptables.Options) *tracer.Tracer {
	t.Helper()
	rs := kernelState(t, snap, opts)
	return tracer.New(rs, traceNode, nil)
}

type pkt = tracer.Packet

func from(src, in string) func(dst string, port uint16) pkt {
	return func(dst string, port uint16) pkt {
		return pkt{Src: a(src), Dst: a(dst), Proto: "tcp", SrcPort: 43210, DstPort: port, InIface: in}
	}
}

var (
	fromPod       = from("10.244.1.20", "cni0")      // a pod on this node
	fromSelf      = from("10.244.1.5", "cni0")       // web's local endpoint
	fromNodeLAN   = from("192.168.50.99", "eth0")    // another machine on the underlay, not a pod
	fromInternet  = from("8.8.8.8", "eth0")          // off-cluster client
	fromAllowed   = from("203.0.113.7", "eth0")      // inside lb-local's source ranges
	fromRemotePod = from("10.244.2.50", "flannel.1") // a pod on another node, arriving over VXLAN
)

func fromHost(dst string, port uint16) pkt {
	return pkt{Src: nodeIP, Dst: a(dst), Proto: "tcp", SrcPort: 43210, DstPort: port, Local: true}
}

// want describes where a packet must end up.
type want struct {
	verdict tracer.Verdict
	dsts    []string // accepted destinations, each equally likely
	masq    *bool    // nil: not checked; else every outcome must match
	srcKept bool     // the backend must see the client's own address
}

var (
	yes = func() *bool { b := true; return &b }()
	no  = func() *bool { b := false; return &b }()
)

func check(t *testing.T, tr *tracer.Tracer, p pkt, w want) *tracer.Result {
	t.Helper()
	res, err := tr.Trace(p)
	if err != nil {
		t.Fatalf("trace: %v", err)
	}
	verdicts := res.Verdicts()
	if math.Abs(verdicts[w.verdict]-1) > 1e-9 {
		t.Fatalf("want %s always, got %v\n%s", w.verdict, verdicts, res)
	}
	if w.verdict == tracer.Accept {
		got := res.Destinations()
		if len(got) != len(w.dsts) {
			t.Fatalf("want destinations %v, got %v\n%s", w.dsts, got, res)
		}
		for _, d := range w.dsts {
			p, ok := got[ap(d)]
			if !ok || math.Abs(p-1/float64(len(w.dsts))) > 1e-6 {
				t.Fatalf("destination %s: probability %v, want %v\n%s", d, p, 1/float64(len(w.dsts)), res)
			}
		}
	}
	for _, o := range res.Outcomes {
		if w.masq != nil && o.Masqueraded != *w.masq {
			t.Fatalf("masqueraded=%v, want %v\n%s", o.Masqueraded, *w.masq, res)
		}
		if w.srcKept && o.Src.Addr() != p.Src {
			t.Fatalf("source rewritten to %s, want the client's %s\n%s", o.Src, p.Src, res)
		}
	}
	return res
}

var webEndpoints = []string{"10.244.1.5:8080", "10.244.2.7:8080", "10.244.3.9:8080", "10.244.2.8:8080", "10.244.3.10:8080"}

// behaviourCase is one packet and where it must end up.
type behaviourCase struct {
	name string
	p    pkt
	w    want
}

// behaviourCases are the expectations for traceSnapshot under traceOptions.
func behaviourCases() []behaviourCase {
	accept := tracer.Accept
	return []behaviourCase{
		{"pod to ClusterIP lands on every ready endpoint, not masqueraded",
			fromPod("10.96.0.10", 80), want{verdict: accept, dsts: webEndpoints, masq: no, srcKept: true}},
		{"pod on another node to ClusterIP is not masqueraded",
			fromRemotePod("10.96.0.10", 80), want{verdict: accept, dsts: webEndpoints, masq: no, srcKept: true}},
		{"UDP ClusterIP",
			pkt{Src: a("10.244.1.20"), Dst: a("10.96.0.53"), Proto: "udp", SrcPort: 5353, DstPort: 53, InIface: "cni0"},
			want{verdict: accept, dsts: []string{"10.244.2.2:53", "10.244.3.3:53"}, masq: no}},
		{"SCTP ClusterIP",
			pkt{Src: a("10.244.1.20"), Dst: a("10.96.0.80"), Proto: "sctp", SrcPort: 5000, DstPort: 9999, InIface: "cni0"},
			want{verdict: accept, dsts: []string{"10.244.2.16:9999"}, masq: no}},
		{"TCP to the SCTP service's port is not DNATed",
			fromPod("10.96.0.80", 9999), want{verdict: accept, dsts: []string{"10.96.0.80:9999"}}},
		{"wrong port of a ClusterIP is not DNATed",
			fromPod("10.96.0.10", 81), want{verdict: accept, dsts: []string{"10.96.0.10:81"}, masq: no}},
		{"off-cluster source to ClusterIP is masqueraded",
			fromNodeLAN("10.96.0.10", 80), want{verdict: accept, dsts: webEndpoints, masq: yes}},
		{"node itself to ClusterIP is masqueraded",
			fromHost("10.96.0.10", 80), want{verdict: accept, dsts: webEndpoints, masq: yes}},
		{"external to NodePort (eTP=Cluster) is masqueraded",
			fromInternet("192.168.50.10", 30010), want{verdict: accept, dsts: webEndpoints, masq: yes}},
		{"external to externalIP (eTP=Cluster) is masqueraded",
			fromInternet("192.168.50.200", 80), want{verdict: accept, dsts: webEndpoints, masq: yes}},
		{"NodePort on the bridge address too (default nodeport-addresses: all local)",
			fromPod("10.244.1.1", 30010), want{verdict: accept, dsts: webEndpoints}},
		{"eTP=Local NodePort keeps the client IP and uses only local endpoints",
			fromInternet("192.168.50.10", 30020), want{verdict: accept, dsts: []string{"10.244.1.7:8080"}, masq: no, srcKept: true}},
		{"eTP=Local: a pod takes the cluster path",
			fromPod("192.168.50.10", 30020), want{verdict: accept, dsts: []string{"10.244.1.7:8080", "10.244.2.9:8080"}, masq: no}},
		{"eTP=Local: the node itself takes the cluster path, masqueraded",
			fromHost("192.168.50.10", 30020), want{verdict: accept, dsts: []string{"10.244.1.7:8080", "10.244.2.9:8080"}, masq: yes}},
		{"eTP=Local without local endpoints drops external traffic",
			fromInternet("192.168.50.10", 30030), want{verdict: tracer.Drop}},
		{"eTP=Local without local endpoints: pods still reach the remote endpoint",
			fromPod("192.168.50.10", 30030), want{verdict: accept, dsts: []string{"10.244.2.10:8080"}}},
		{"ClusterIP of an eTP=Local service uses every endpoint",
			fromPod("10.96.0.30", 80), want{verdict: accept, dsts: []string{"10.244.2.10:8080"}, masq: no}},
		{"no endpoints: ClusterIP rejects",
			fromPod("10.96.0.40", 80), want{verdict: tracer.Reject}},
		{"no endpoints: NodePort rejects",
			fromInternet("192.168.50.10", 30040), want{verdict: tracer.Reject}},
		{"no endpoints: externalIP rejects",
			fromInternet("192.168.50.201", 80), want{verdict: tracer.Reject}},
		{"no endpoints: the node itself is rejected",
			fromHost("10.96.0.40", 80), want{verdict: tracer.Reject}},
		{"loadBalancerSourceRanges: allowed source reaches the local endpoint with its IP",
			fromAllowed("198.18.0.20", 80), want{verdict: accept, dsts: []string{"10.244.1.7:8080"}, masq: no, srcKept: true}},
		{"loadBalancerSourceRanges: other sources are dropped",
			fromInternet("198.18.0.20", 80), want{verdict: tracer.Drop}},
		{"loadBalancerSourceRanges do not filter the node port, as in kube-proxy",
			fromInternet("192.168.50.10", 30020), want{verdict: accept, dsts: []string{"10.244.1.7:8080"}, srcKept: true}},
		{"iTP=Local: pods reach only local endpoints",
			fromPod("10.96.0.60", 80), want{verdict: accept, dsts: []string{"10.244.1.12:8080"}, masq: no}},
		{"iTP=Local without local endpoints drops",
			fromPod("10.96.0.61", 80), want{verdict: tracer.Drop}},
		{"terminating fallback: only the serving terminating endpoint",
			fromPod("10.96.0.70", 80), want{verdict: accept, dsts: []string{"10.244.2.14:8080"}}},
		{"terminating endpoints are not used while a ready one exists",
			fromPod("10.96.0.71", 80), want{verdict: accept, dsts: []string{"10.244.3.15:8080"}}},
	}
}

func TestTraceBehaviour(t *testing.T) {
	tr := load(t, traceSnapshot(), traceOptions())
	for _, c := range behaviourCases() {
		t.Run(c.name, func(t *testing.T) { check(t, tr, c.p, c.w) })
	}
}

func TestTraceHairpin(t *testing.T) {
	tr := load(t, traceSnapshot(), traceOptions())
	res := check(t, tr, fromSelf("10.96.0.10", 80), want{verdict: tracer.Accept, dsts: webEndpoints})
	for _, o := range res.Outcomes {
		self := o.Dst == ap("10.244.1.5:8080")
		if o.Masqueraded != self {
			t.Fatalf("hairpin: to %s masqueraded=%v, want %v\n%s", o.Dst, o.Masqueraded, self, res)
		}
		if self && o.Src.Addr() != bridgeIP {
			t.Fatalf("hairpin reply must come back through the bridge address, source is %s", o.Src)
		}
	}
}

func TestTraceSessionAffinity(t *testing.T) {
	tr := load(t, traceSnapshot(), traceOptions())
	sticky := []string{"10.244.2.11:8080", "10.244.3.11:8080", "10.244.1.11:8080"}
	first := check(t, tr, fromPod("10.96.0.50", 80), want{verdict: tracer.Accept, dsts: sticky, masq: no})
	for _, pick := range first.Outcomes {
		if pick.Dst != ap("10.244.3.11:8080") {
			continue
		}
		tr.Commit(pick)
	}
	// Each new connection from the client goes to the same endpoint and, as the kernel's --update
	// does, refreshes the entry; committing each trace records that.
	stuck := func(srcPort uint16) {
		t.Helper()
		p := fromPod("10.96.0.50", 80)
		p.SrcPort = srcPort
		res := check(t, tr, p, want{verdict: tracer.Accept, dsts: []string{"10.244.3.11:8080"}})
		tr.Commit(res.Outcomes[0])
	}
	for i := uint16(1); i <= 3; i++ {
		tr.Advance(500 * time.Second) // each gap is shorter than the 600 s timeout
		stuck(50000 + i)
	}
	// Another client is balanced as before.
	check(t, tr, fromRemotePod("10.96.0.50", 80), want{verdict: tracer.Accept, dsts: sticky})
	// The entry ends once the client has been silent for longer than the timeout.
	tr.Advance(601 * time.Second)
	check(t, tr, fromPod("10.96.0.50", 80), want{verdict: tracer.Accept, dsts: sticky})
}

func TestTraceMasqueradeAll(t *testing.T) {
	opts := traceOptions()
	opts.MasqueradeAll = true
	tr := load(t, traceSnapshot(), opts)
	check(t, tr, fromPod("10.96.0.10", 80), want{verdict: tracer.Accept, dsts: webEndpoints, masq: yes})
	check(t, tr, fromRemotePod("10.96.0.10", 80), want{verdict: tracer.Accept, dsts: webEndpoints, masq: yes})
}

func TestTraceNoLocalDetector(t *testing.T) {
	// Without --cluster-cidr, kube-proxy does not masquerade ClusterIP traffic from anywhere;
	// external entry points still do.
	opts := traceOptions()
	opts.LocalDetector = iptables.LocalDetector{}
	tr := load(t, traceSnapshot(), opts)
	check(t, tr, fromNodeLAN("10.96.0.10", 80), want{verdict: tracer.Accept, dsts: webEndpoints, masq: no})
	check(t, tr, fromInternet("192.168.50.10", 30010), want{verdict: tracer.Accept, dsts: webEndpoints, masq: yes})
}

func TestTraceNodePortAddresses(t *testing.T) {
	opts := traceOptions()
	opts.NodePortAddresses = []netip.Prefix{pfx("192.168.50.0/24")}
	tr := load(t, traceSnapshot(), opts)
	check(t, tr, fromInternet("192.168.50.10", 30010), want{verdict: tracer.Accept, dsts: webEndpoints, masq: yes})
	// The bridge address is outside --nodeport-addresses: no DNAT, the packet is for the node.
	res := check(t, tr, fromPod("10.244.1.1", 30010), want{verdict: tracer.Accept, dsts: []string{"10.244.1.1:30010"}})
	if o := res.Outcomes[0]; o.DNATed || o.Delivery != "local" {
		t.Fatalf("want local delivery without DNAT: %s", res)
	}
}

// TestTraceRulesAreUnderstood traces one packet to every service so that any rule the renderer
// emits but the tracer does not understand fails here with the rule named.
func TestTraceRulesAreUnderstood(t *testing.T) {
	snap := traceSnapshot()
	tr := load(t, snap, traceOptions())
	for _, svc := range snap.Services {
		p := fromPod(svc.ClusterIPs[0].String(), uint16(svc.Port))
		p.Proto = strings.ToLower(string(svc.Protocol))
		if _, err := tr.Trace(p); err != nil {
			t.Errorf("%s: %v", svc.Name, err)
		}
	}
}

// kernelState syncs snap through a Proxier against the stateful fake, as the daemon would, and loads
// the fake's iptables-save dump (built-in jumps included) into the tracer.
func kernelState(t testing.TB, snap *model.Snapshot, opts iptables.Options) *tracer.Ruleset {
	t.Helper()
	rs, err := tracer.Parse(syncFake(t, snap, opts).Dump())
	if err != nil {
		t.Fatalf("the tracer cannot read the synced rules: %v", err)
	}
	return rs
}

// syncFake syncs snap through a Proxier against a new stateful fake and returns the fake.
func syncFake(t testing.TB, snap *model.Snapshot, opts iptables.Options) *iptablestest.Fake {
	t.Helper()
	fake := iptablestest.NewFake()
	p, err := iptables.NewProxier(iptables.Config{Options: opts, IPTables: fake})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Sync(snap); err != nil {
		t.Fatalf("sync: %v", err)
	}
	return fake
}

// TestTraceIncrementalSync checks the rules an incremental sync leaves behind, not only a full one.
func TestTraceIncrementalSync(t *testing.T) {
	fake := iptablestest.NewFake()
	p, err := iptables.NewProxier(iptables.Config{Options: traceOptions(), IPTables: fake})
	if err != nil {
		t.Fatal(err)
	}
	snap := traceSnapshot()
	if err := p.Sync(snap); err != nil {
		t.Fatal(err)
	}
	trace := func() *tracer.Tracer {
		t.Helper()
		rs, err := tracer.Parse(fake.Dump())
		if err != nil {
			t.Fatalf("the tracer cannot read the synced rules: %v", err)
		}
		return tracer.New(rs, traceNode, nil)
	}

	// web loses four endpoints and gains one; empty gains one; sticky is deleted.
	next := traceSnapshot()
	next.Full = false
	next.Changed = map[model.ServiceKey]struct{}{}
	for _, svc := range []string{"web", "empty", "sticky"} {
		next.Changed[name(svc).ServiceKey] = struct{}{}
	}
	next.Endpoints[name("web")] = []model.Endpoint{ready("10.244.1.5", 8080, thisNode), ready("10.244.5.5", 8080, "node-e")}
	next.Endpoints[name("empty")] = []model.Endpoint{ready("10.244.2.40", 80, "node-b")}
	delete(next.Services, name("sticky"))
	delete(next.Endpoints, name("sticky"))
	if err := p.Sync(next); err != nil {
		t.Fatal(err)
	}
	tr := trace()
	check(t, tr, fromPod("10.96.0.10", 80), want{verdict: tracer.Accept, dsts: []string{"10.244.1.5:8080", "10.244.5.5:8080"}, masq: no})
	check(t, tr, fromInternet("192.168.50.10", 30010), want{verdict: tracer.Accept, dsts: []string{"10.244.1.5:8080", "10.244.5.5:8080"}, masq: yes})
	check(t, tr, fromPod("10.96.0.40", 80), want{verdict: tracer.Accept, dsts: []string{"10.244.2.40:80"}, masq: no})
	check(t, tr, fromInternet("192.168.50.10", 30040), want{verdict: tracer.Accept, dsts: []string{"10.244.2.40:80"}, masq: yes})
	// The deleted service's ClusterIP is no longer DNATed anywhere.
	check(t, tr, fromPod("10.96.0.50", 80), want{verdict: tracer.Accept, dsts: []string{"10.96.0.50:80"}})
	// Untouched services behave as before.
	check(t, tr, fromInternet("192.168.50.10", 30030), want{verdict: tracer.Drop})
	check(t, tr, fromPod("10.96.0.60", 80), want{verdict: tracer.Accept, dsts: []string{"10.244.1.12:8080"}})

	// The incremental result must equal a full sync of the same snapshot.
	fresh := iptablestest.NewFake()
	pf, err := iptables.NewProxier(iptables.Config{Options: traceOptions(), IPTables: fresh})
	if err != nil {
		t.Fatal(err)
	}
	full := *next
	full.Full = true
	if err := pf.Sync(&full); err != nil {
		t.Fatal(err)
	}
	if got, want := fake.Dump(), fresh.Dump(); got != want {
		t.Fatalf("incremental sync differs from a full sync of the same state:\nincremental:\n%s\nfull:\n%s", got, want)
	}
}

func TestTraceIPv6(t *testing.T) {
	opts := iptables.DefaultOptions(model.IPv6)
	opts.LocalDetector.ClusterCIDRs = []netip.Prefix{pfx("fd00:10:244::/48")}
	opts.NodeIPs = []netip.Addr{a("fd00:192:168:50::10")}
	opts.RandomFully = true
	s := model.NewSnapshot()
	s.Full = true
	s.Node = model.NodeInfo{Name: thisNode, PodCIDRs: []netip.Prefix{pfx("fd00:10:244:1::/64")}}
	add(s, &model.ServicePort{Name: name("web"), Port: 80, ClusterIPs: addrs("10.96.0.10", "fd00:10:96::10"), NodePort: 30010,
		Affinity: model.SessionAffinity{ClientIP: true, TimeoutSeconds: 60}},
		ready("10.244.1.5", 8080, thisNode), ready("fd00:10:244:1::5", 8080, thisNode), ready("fd00:10:244:2::7", 8080, "node-b"))
	add(s, &model.ServicePort{Name: name("empty"), Port: 80, ClusterIPs: addrs("fd00:10:96::40")})
	node := tracer.Node{
		Interfaces: []tracer.Interface{
			{Name: "eth0", Addrs: []netip.Prefix{pfx("fd00:192:168:50::10/64")}},
			{Name: "cni0", Addrs: []netip.Prefix{pfx("fd00:10:244:1::1/64")}},
			{Name: "flannel.1", Addrs: []netip.Prefix{pfx("fd00:10:244:1::/128")}},
		},
		Routes: []tracer.Route{{Dst: pfx("fd00:10:244::/48"), Iface: "flannel.1"}, {Dst: pfx("::/0"), Iface: "eth0"}},
	}
	tr := tracer.New(kernelState(t, s, opts), node, nil)
	v6 := func(src, in, dst string, port uint16) pkt {
		return pkt{Src: a(src), Dst: a(dst), Proto: "tcp", SrcPort: 43210, DstPort: port, InIface: in}
	}
	eps := []string{"[fd00:10:244:1::5]:8080", "[fd00:10:244:2::7]:8080"}
	check(t, tr, v6("fd00:10:244:1::20", "cni0", "fd00:10:96::10", 80), want{verdict: tracer.Accept, dsts: eps, masq: no, srcKept: true})
	check(t, tr, v6("2001:db8::1", "eth0", "fd00:192:168:50::10", 30010), want{verdict: tracer.Accept, dsts: eps, masq: yes})
	res := check(t, tr, v6("fd00:10:244:1::20", "cni0", "fd00:10:96::40", 80), want{verdict: tracer.Reject})
	if o := res.Outcomes[0]; o.RejectWith != "icmp6-port-unreachable" {
		t.Fatalf("IPv6 REJECT type %q", o.RejectWith)
	}
	// Affinity keys on the full IPv6 source address.
	first := check(t, tr, v6("fd00:10:244:1::20", "cni0", "fd00:10:96::10", 80), want{verdict: tracer.Accept, dsts: eps})
	tr.Commit(first.Outcomes[0])
	check(t, tr, v6("fd00:10:244:1::20", "cni0", "fd00:10:96::10", 80), want{verdict: tracer.Accept, dsts: []string{first.Outcomes[0].Dst.String()}})
	check(t, tr, v6("fd00:10:244:1::21", "cni0", "fd00:10:96::10", 80), want{verdict: tracer.Accept, dsts: eps})
}

// scaleSnapshot is n ClusterIP services with 5 endpoints each on other nodes.
func scaleSnapshot(n int) *model.Snapshot {
	s := model.NewSnapshot()
	s.Full = true
	s.Node = model.NodeInfo{Name: thisNode, PodCIDRs: []netip.Prefix{pfx("10.244.1.0/24")}}
	for i := 0; i < n; i++ {
		var eps []model.Endpoint
		for j := 0; j < 5; j++ {
			k := i*5 + j
			eps = append(eps, model.Endpoint{IP: netip.AddrFrom4([4]byte{10, byte(245 + k>>16), byte(k >> 8), byte(k)}),
				Port: 8080, Ready: true, Serving: true, NodeName: "node-b"})
		}
		add(s, &model.ServicePort{Name: name(fmt.Sprintf("svc%d", i)), Port: 80,
			ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})}}, eps...)
	}
	return s
}

// BenchmarkTracer measures the tracer on a large synced ruleset: parsing the dump, and tracing a
// pod's packet to the service whose dispatch rule comes last.
func BenchmarkTracer(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			fake := iptablestest.NewFake()
			p, err := iptables.NewProxier(iptables.Config{Options: traceOptions(), IPTables: fake})
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Sync(scaleSnapshot(n)); err != nil {
				b.Fatal(err)
			}
			dump := fake.Dump()
			rs, err := tracer.Parse(dump)
			if err != nil {
				b.Fatal(err)
			}
			// Dispatch rules are in service-name order; trace to the service named last.
			snap := scaleSnapshot(n)
			names := snap.SortedServiceNames()
			last := snap.Services[names[len(names)-1]].ClusterIPs[0]
			b.Run("parse", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if _, err := tracer.Parse(dump); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("trace-last-service", func(b *testing.B) {
				tr := tracer.New(rs, traceNode, nil)
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					res, err := tr.Trace(fromPod(last.String(), 80))
					if err != nil || len(res.Destinations()) != 5 {
						b.Fatalf("%v %v", err, res)
					}
				}
			})
		})
	}
}
