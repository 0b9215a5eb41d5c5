package ipvs

import (
	"net/netip"
	"testing"

	"github.com/switchyard/switchyard/proxier/iptables/tracer"
)

// TestRulesBehaviour walks packets through the iptables rules and ipsets a sync left in the fakes. The
// tracer models netfilter, not IPVS: an accepted packet to a service address is delivered locally,
// where IPVS (at LOCAL_IN, after the filter table) would take it. So these cases check what the
// rules decide before IPVS: masquerade marks, source-range drops and unknown-port rejects.
func TestRulesBehaviour(t *testing.T) {
	k := newTestKernel()
	p := newTestProxier(t, k, testOptions())
	mustSync(t, p, fixture())
	tr := ruleTracer(t, k)
	const masq = 0x4000

	pkt := func(proto, src, dst string, dport uint16, in string) tracer.Packet {
		return tracer.Packet{Src: ip(src), Dst: ip(dst), Proto: proto, SrcPort: 40000, DstPort: dport, InIface: in}
	}
	local := func(p tracer.Packet) tracer.Packet { p.Local = true; p.InIface = ""; return p }
	for _, c := range []struct {
		name    string
		p       tracer.Packet
		verdict tracer.Verdict
		snat    bool
	}{
		{"pod to ClusterIP: no SNAT", pkt("tcp", "10.244.1.5", "10.96.0.10", 80, "cni0"), tracer.Accept, false},
		{"node process to ClusterIP: SNAT (source outside the cluster CIDR)", local(pkt("tcp", "192.168.50.10", "10.96.0.10", 80, "")), tracer.Accept, true},
		{"TCP to a UDP-only ClusterIP port: rejected", pkt("tcp", "192.168.50.99", "10.96.0.53", 53, "eth0"), tracer.Reject, false},
		{"off-cluster UDP to ClusterIP: SNAT", pkt("udp", "192.168.50.99", "10.96.0.53", 53, "eth0"), tracer.Accept, true},
		{"unknown port on a ClusterIP: rejected", pkt("tcp", "10.244.1.5", "10.96.0.10", 8080, "cni0"), tracer.Reject, false},
		{"unknown protocol on a ClusterIP port: rejected", pkt("udp", "10.244.1.5", "10.96.0.10", 80, "cni0"), tracer.Reject, false},
		{"NodePort, eTP=Cluster: SNAT", pkt("tcp", "198.51.100.7", "192.168.50.10", 30080, "eth0"), tracer.Accept, true},
		{"NodePort, eTP=Local: source kept", pkt("tcp", "198.51.100.7", "192.168.50.10", 31443, "eth0"), tracer.Accept, false},
		{"LB, allowed source, eTP=Local: source kept", pkt("tcp", "198.51.100.7", "203.0.113.7", 443, "eth0"), tracer.Accept, false},
		{"LB, source outside loadBalancerSourceRanges: dropped", pkt("tcp", "8.8.8.8", "203.0.113.7", 443, "eth0"), tracer.Drop, false},
		{"external IP, eTP=Local: source kept", pkt("tcp", "8.8.8.8", "192.0.2.50", 80, "eth0"), tracer.Accept, false},
		{"node address on a port no service uses: untouched", pkt("tcp", "8.8.8.8", "192.168.50.10", 22, "eth0"), tracer.Accept, false},
	} {
		res, o := traceOnly(t, tr, c.name, c.p)
		// A packet delivered locally from outside never reaches POSTROUTING in the tracer, so the
		// masquerade mark stands for the SNAT that POSTROUTING applies after IPVS forwards it; a
		// locally generated one walks POSTROUTING and is masqueraded there.
		snat := o.Mark&masq != 0 || o.Masqueraded
		if o.Verdict != c.verdict || snat != c.snat {
			t.Errorf("%s: %s snat=%v; want %s snat=%v\n%s", c.name, o.Verdict, snat, c.verdict, c.snat, res)
		}
	}
	// After IPVS: it forwards a scheduled packet out through LOCAL_OUT and POSTROUTING, with its
	// destination rewritten to the real server and the mark from PREROUTING still on it. The tracer's
	// locally generated packet stands in for that.
	for _, c := range []struct {
		name string
		p    tracer.Packet
		snat bool
	}{
		{"marked packet to a real server: masqueraded, mark cleared",
			tracer.Packet{Local: true, Mark: masq, Src: ip("198.51.100.7"), Dst: ip("10.244.2.5"), Proto: "tcp", SrcPort: 40000, DstPort: 8080}, true},
		{"unmarked packet (eTP=Local) to a real server: source kept",
			tracer.Packet{Local: true, Src: ip("198.51.100.7"), Dst: ip("10.244.1.9"), Proto: "tcp", SrcPort: 40000, DstPort: 8443}, false},
		{"hairpin: a local endpoint scheduled to itself is masqueraded",
			tracer.Packet{Local: true, Src: ip("10.244.1.2"), Dst: ip("10.244.1.2"), Proto: "tcp", SrcPort: 40000, DstPort: 8080}, true},
		{"a local endpoint scheduled to another endpoint keeps its source",
			tracer.Packet{Local: true, Src: ip("10.244.1.2"), Dst: ip("10.244.2.3"), Proto: "tcp", SrcPort: 40000, DstPort: 8080}, false},
	} {
		res, o := traceOnly(t, tr, c.name, c.p)
		if o.Verdict != tracer.Accept || o.Masqueraded != c.snat || o.Mark&masq != 0 {
			t.Errorf("%s: %s masqueraded=%v mark %#x; want ACCEPT masqueraded=%v mark clear\n%s", c.name, o.Verdict, o.Masqueraded, o.Mark, c.snat, res)
		}
	}
	// The rule count is constant: a sync of the fixture and one of a single service write the same.
	rules := k.iptables.RuleCount()
	k2 := newTestKernel()
	snap := fixture()
	for n := range snap.Services {
		if n != spn("default", "web", "http") {
			delete(snap.Services, n)
		}
	}
	mustSync(t, newTestProxier(t, k2, testOptions()), snap)
	if k2.iptables.RuleCount() != rules {
		t.Errorf("iptables rules: %d for one service, %d for the fixture; want equal", k2.iptables.RuleCount(), rules)
	}
	t.Logf("IPVS mode owns %d iptables rules whatever the number of services", rules)
}

// TestRulesInterfaceDetectors: with --detect-local-mode BridgeInterface or InterfaceNamePrefix, what
// decides the ClusterIP masquerade is the interface a packet enters from, not its source address.
func TestRulesInterfaceDetectors(t *testing.T) {
	const masq = 0x4000
	for _, mode := range []struct {
		name    string
		set     func(*Options)
		podFrom string // the interface a pod of this node sends from
	}{
		{"BridgeInterface", func(o *Options) { o.BridgeInterface = "cni0" }, "cni0"},
		{"InterfaceNamePrefix", func(o *Options) { o.InterfaceNamePrefix = "veth" }, "veth1a2b"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			k := newTestKernel()
			o := testOptions()
			mode.set(&o)
			mustSync(t, newTestProxier(t, k, o), fixture())
			tr := ruleTracer(t, k)
			toClusterIP := func(src, in string) tracer.Packet {
				return tracer.Packet{Src: ip(src), Dst: ip("10.96.0.10"), Proto: "tcp", SrcPort: 40000, DstPort: 80, InIface: in, Local: in == ""}
			}
			for _, c := range []struct {
				name string
				p    tracer.Packet
				snat bool
			}{
				{"pod of this node: source kept", toClusterIP("10.244.1.5", mode.podFrom), false},
				{"pod of another node: SNAT", toClusterIP("10.244.2.5", "flannel.1"), true},
				{"pod-CIDR source on the uplink: SNAT", toClusterIP("10.244.1.5", "eth0"), true},
				{"node process: SNAT", toClusterIP("192.168.50.10", ""), true},
			} {
				res, out := traceOnly(t, tr, c.name, c.p)
				if snat := out.Mark&masq != 0 || out.Masqueraded; out.Verdict != tracer.Accept || snat != c.snat {
					t.Errorf("%s: %s snat=%v; want ACCEPT snat=%v\n%s", c.name, out.Verdict, snat, c.snat, res)
				}
			}
		})
	}
}

// traceOnly traces p and returns the trace with its one outcome, failing the test (named by what)
// when the tracer cannot follow the packet or it ends in more than one outcome.
func traceOnly(t *testing.T, tr *tracer.Tracer, what string, p tracer.Packet) (*tracer.Result, tracer.Outcome) {
	t.Helper()
	res, err := tr.Trace(p)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	o, err := res.Only()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return res, o
}

// ruleTracer loads the iptables rules and ipsets a sync left in k's fakes into the packet tracer, on a
// node with the fixture's interfaces and kube-ipvs0's addresses.
func ruleTracer(t *testing.T, k *testKernel) *tracer.Tracer {
	t.Helper()
	rs, err := tracer.Parse(k.iptables.Dump())
	if err != nil {
		t.Fatalf("the tracer refuses the rules: %v\n%s", err, k.iptables.Dump())
	}
	sets := tracer.NewSets()
	for name, s := range k.ipset.Sets {
		if err := sets.Create(name, string(s.Type)); err != nil {
			t.Fatal(err)
		}
		if err := sets.Add(name, k.ipset.Members(name)...); err != nil {
			t.Fatal(err)
		}
	}
	node := tracer.Node{
		Interfaces: []tracer.Interface{
			{Name: "eth0", Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.50.10/24")}},
			{Name: "cni0", Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.1.1/24")}},
			{Name: DummyDevice},
		},
		Routes: []tracer.Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Iface: "eth0"}},
	}
	for _, a := range k.links.AddrsOf(DummyDevice) {
		node.Interfaces[2].Addrs = append(node.Interfaces[2].Addrs, netip.MustParsePrefix(a))
	}
	return tracer.New(rs, node, sets)
}
