package tracer_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/proxier/iptables/tracer"
)

// mustTracer parses a small ruleset written as table blocks, on the test node.
func mustTracer(t *testing.T, text string) *tracer.Tracer {
	t.Helper()
	rs, err := tracer.Parse(text)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return tracer.New(rs, nodeBoth, nil)
}

func TestMarkTargets(t *testing.T) {
	for _, c := range []struct {
		op   string
		from uint32
		want uint32
	}{
		{"--set-xmark 0x4000/0x4000", 0x1, 0x4001},
		{"--set-xmark 0x4000/0x0", 0x4001, 0x0001}, // mask 0: a pure xor
		{"--set-xmark 0x10/0xffffffff", 0xff, 0x10},
		{"--set-mark 0x4000/0x4000", 0x1, 0x4001},
		{"--set-mark 0x10", 0xff, 0x10},
		{"--or-mark 0x4000", 0x1, 0x4001},
		{"--and-mark 0x1", 0x4001, 0x1},
		{"--xor-mark 0x4000", 0x4001, 0x1},
	} {
		tr := mustTracer(t, "*mangle\n-A PREROUTING -j MARK "+c.op+"\nCOMMIT\n")
		p := tcp("8.8.8.8", "192.168.50.10", 80, "eth0")
		p.Mark = c.from
		if o := only(t, trace(t, tr, p)); o.Mark != c.want {
			t.Errorf("MARK %s on %#x: got %#x, want %#x", c.op, c.from, o.Mark, c.want)
		}
	}
}

func TestChainControlFlow(t *testing.T) {
	tr := mustTracer(t, `*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
:G - [0:0]
-A INPUT -p tcp --dport 1 -j RETURN
-A INPUT -p tcp --dport 2 -g G
-A INPUT -p tcp --dport 3 -j A
-A INPUT -p tcp --dport 3 -j ACCEPT
-A INPUT -p tcp --dport 4 -j LOG --log-prefix "four: "
-A INPUT -p tcp --dport 4 -j ACCEPT
-A A -j B
-A A -j REJECT
-A B -j RETURN
-A G -p tcp --dport 2 -j RETURN
-A FORWARD -p tcp ! --dport 5 -j DROP
COMMIT
`)
	for _, c := range []struct {
		port   uint16
		dst    string
		want   tracer.Verdict
		reason string
	}{
		{1, "192.168.50.10", tracer.Drop, "policy DROP of filter/INPUT"}, // RETURN from a built-in chain applies its policy
		{2, "192.168.50.10", tracer.Drop, "policy DROP of filter/INPUT"}, // RETURN in a goto target leaves the built-in chain
		{3, "192.168.50.10", tracer.Reject, ""},                          // B returns into A, whose next rule rejects
		{4, "192.168.50.10", tracer.Accept, ""},                          // LOG does not stop the walk
		{9, "192.168.50.10", tracer.Drop, "policy DROP of filter/INPUT"},
		{5, "1.1.1.1", tracer.Accept, ""},
		{6, "1.1.1.1", tracer.Drop, ""},
	} {
		o := only(t, trace(t, tr, tcp("8.8.8.8", c.dst, c.port, "eth0")))
		if o.Verdict != c.want || o.Reason != c.reason {
			t.Errorf("port %d: %s", c.port, o)
		}
	}
}

func TestNoRoute(t *testing.T) {
	rs, err := tracer.Parse("*filter\nCOMMIT\n")
	if err != nil {
		t.Fatal(err)
	}
	tr := tracer.New(rs, tracer.Node{Interfaces: nodeBoth.Interfaces}, nil) // no default route
	o := only(t, trace(t, tr, tcp("10.244.1.5", "1.1.1.1", 80, "cni0")))
	if o.Verdict != tracer.Drop || !strings.HasPrefix(o.Reason, "no route") {
		t.Fatalf("want a drop for lack of a route: %s", o)
	}
}

func TestMatchSemantics(t *testing.T) {
	tr := mustTracer(t, `*filter
:INPUT ACCEPT [0:0]
-A INPUT -p udp -m multiport --sports 1000:1010,2000 -j REJECT
-A INPUT -p tcp -m multiport --ports 7000 -j REJECT
-A INPUT ! -p tcp -p all -j ACCEPT
-A INPUT -p tcp -m tcp --sport 3000:3999 ! --dport 22 -j REJECT
-A INPUT ! -i eth+ -p tcp -m tcp --dport 23 -j REJECT
-A INPUT -m addrtype --src-type MULTICAST,BROADCAST -j DROP
-A INPUT -p tcp -m state --state INVALID -j DROP
-A INPUT -m conntrack ! --ctstate NEW,ESTABLISHED -j DROP
-A INPUT -s 10.0.0.0/8 ! -d 192.168.50.10/32 -j DROP
COMMIT
`)
	udp := func(sport uint16) tracer.Packet {
		return tracer.Packet{Src: addr("8.8.8.8"), Dst: nodeIP, Proto: "udp", SrcPort: sport, DstPort: 53, InIface: "eth0"}
	}
	withState := func(p tracer.Packet, s string) tracer.Packet { p.CtState = s; return p }
	withSport := func(p tracer.Packet, s uint16) tracer.Packet { p.SrcPort = s; return p }
	for _, c := range []struct {
		name string
		p    tracer.Packet
		want tracer.Verdict
	}{
		{"multiport source range", udp(1005), tracer.Reject},
		{"multiport single source", udp(2000), tracer.Reject},
		{"multiport miss, then ! -p tcp", udp(1500), tracer.Accept},
		{"--ports matches the source", withSport(tcp("8.8.8.8", "192.168.50.10", 80, "eth0"), 7000), tracer.Reject},
		{"--ports matches the destination", tcp("8.8.8.8", "192.168.50.10", 7000, "eth0"), tracer.Reject},
		{"sport range with negated dport", withSport(tcp("8.8.8.8", "192.168.50.10", 80, "eth0"), 3500), tracer.Reject},
		{"negated dport excludes 22", withSport(tcp("8.8.8.8", "192.168.50.10", 22, "eth0"), 3500), tracer.Accept},
		{"negated wildcard interface", tcp("10.244.1.5", "10.244.1.1", 23, "cni0"), tracer.Reject},
		{"wildcard interface", tcp("8.8.8.8", "192.168.50.10", 23, "eth0"), tracer.Accept},
		{"broadcast source", tcp("255.255.255.255", "192.168.50.10", 80, "eth0"), tracer.Drop},
		{"subnet broadcast source", tcp("192.168.50.255", "192.168.50.10", 80, "eth0"), tracer.Drop},
		{"multicast source", tcp("224.0.0.5", "192.168.50.10", 80, "eth0"), tracer.Drop},
		{"-m state INVALID", withState(tcp("8.8.8.8", "192.168.50.10", 80, "eth0"), "INVALID"), tracer.Drop},
		{"! --ctstate NEW,ESTABLISHED", withState(tcp("8.8.8.8", "192.168.50.10", 80, "eth0"), "RELATED"), tracer.Drop},
		{"established", withState(tcp("8.8.8.8", "192.168.50.10", 80, "eth0"), "ESTABLISHED"), tracer.Accept},
		{"! -d", tcp("10.1.2.3", "10.244.1.1", 80, "eth0"), tracer.Drop},
		{"-d matches", tcp("10.1.2.3", "192.168.50.10", 80, "eth0"), tracer.Accept},
	} {
		if o := only(t, trace(t, tr, c.p)); o.Verdict != c.want {
			t.Errorf("%s: %s, want %s", c.name, o, c.want)
		}
	}
}

func TestNegatedStatisticAndDNATState(t *testing.T) {
	tr := mustTracer(t, `*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m statistic --mode random ! --probability 0.25 -j DNAT --to-destination 10.244.2.2:80
-A PREROUTING -p tcp -j DNAT --to-destination 10.244.3.3
-A POSTROUTING -m conntrack --ctstate DNAT -o flannel.1 -j SNAT --to-source 10.244.1.0
COMMIT
`)
	res := trace(t, tr, tcp("8.8.8.8", "10.96.0.1", 8080, "eth0"))
	d := res.Destinations()
	if d[ap("10.244.2.2:80")] != 0.75 || d[ap("10.244.3.3:8080")] != 0.25 {
		t.Fatalf("negated probability: %v\n%s", d, res)
	}
	for _, o := range res.Outcomes {
		if !o.Masqueraded || o.Src.Addr() != addr("10.244.1.0") {
			t.Fatalf("ctstate DNAT should see the DNATed packet: %s", o)
		}
	}
}

func TestRecentUpdateAndRemove(t *testing.T) {
	tr := mustTracer(t, `*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp --dport 1 -m recent --name knock --set -j DROP
-A INPUT -p tcp --dport 2 -m recent --name knock --remove -j DROP
-A INPUT -p tcp --dport 22 -m recent --name knock --update --seconds 10 -j ACCEPT
-A INPUT -p tcp --dport 22 -m recent --name knock --mask 255.255.255.0 --rcheck -j ACCEPT
-A INPUT -p tcp --dport 22 -j REJECT
COMMIT
`)
	step := func(src string, port uint16) tracer.Outcome {
		t.Helper()
		o := only(t, trace(t, tr, tcp(src, "192.168.50.10", port, "eth0")))
		tr.Commit(o)
		return o
	}
	if o := step("8.8.8.8", 22); o.Verdict != tracer.Reject {
		t.Fatalf("before knocking: %s", o)
	}
	step("8.8.8.8", 1)
	tr.Advance(8 * time.Second)
	if o := step("8.8.8.8", 22); o.Verdict != tracer.Accept {
		t.Fatalf("after knocking: %s", o)
	}
	tr.Advance(8 * time.Second) // 16 s after the knock, 8 s after the refresh by --update
	if o := step("8.8.8.8", 22); o.Verdict != tracer.Accept {
		t.Fatalf("--update should have refreshed the entry: %s", o)
	}
	// The /24 mask rule sees the neighbour as the same key, with no time limit.
	if o := step("8.8.8.9", 22); o.Verdict != tracer.Reject {
		t.Fatalf("a neighbour without its own entry, masked lookup of 8.8.8.0: %s", o)
	}
	step("8.8.8.8", 2)
	if got := tr.RecentEntries("knock"); len(got) != 0 {
		t.Fatalf("--remove left %v", got)
	}
	if o := step("8.8.8.8", 22); o.Verdict != tracer.Reject {
		t.Fatalf("after --remove: %s", o)
	}
}

func TestLocalDeliveryPaths(t *testing.T) {
	tr := mustTracer(t, `*nat
:OUTPUT ACCEPT [0:0]
:INPUT ACCEPT [0:0]
-A OUTPUT -d 10.96.0.1/32 -p tcp -j DNAT --to-destination 127.0.0.1:8080
-A INPUT -s 10.244.0.0/16 -j SNAT --to-source 10.244.1.1
COMMIT
*filter
:INPUT ACCEPT [0:0]
-A INPUT -i lo -p tcp --dport 8080 -j ACCEPT
-A INPUT -p tcp --dport 8080 -j DROP
COMMIT
`)
	p := tcp("192.168.50.10", "10.96.0.1", 80, "")
	p.Local = true
	o := only(t, trace(t, tr, p))
	if o.Verdict != tracer.Accept || o.Delivery != "local" || o.Dst != ap("127.0.0.1:8080") || o.OutIface != "lo" {
		t.Fatalf("local process to a DNATed local port goes out and back in on lo: %s", o)
	}
	o = only(t, trace(t, tr, tcp("10.244.2.5", "192.168.50.10", 8080, "flannel.1")))
	if o.Verdict != tracer.Drop {
		t.Fatalf("the same port from outside: %s", o)
	}
	o = only(t, trace(t, tr, tcp("10.244.2.5", "192.168.50.10", 9090, "flannel.1")))
	if o.Verdict != tracer.Accept || !o.Masqueraded || o.Src.Addr() != addr("10.244.1.1") {
		t.Fatalf("nat INPUT SNAT on local delivery: %s", o)
	}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// TestNFAcctOnlyCounts: -m nfacct matches every packet, so it leaves the way a packet goes alone.
func TestNFAcctOnlyCounts(t *testing.T) {
	tr := mustTracer(t, `*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 1 -m nfacct --nfacct-name counted -j DROP
COMMIT
`)
	if o := only(t, trace(t, tr, tcp("8.8.8.8", "192.168.50.10", 1, "eth0"))); o.Verdict != tracer.Drop {
		t.Errorf("counted packet: %s, want DROP", o.Verdict)
	}
	if o := only(t, trace(t, tr, tcp("8.8.8.8", "192.168.50.10", 2, "eth0"))); o.Verdict != tracer.Accept {
		t.Errorf("other packet: %s, want ACCEPT", o.Verdict)
	}
}

// TestInputInterfaceOfLocalPackets: a chain that both PREROUTING and OUTPUT reach may match on the
// input interface, as the local-traffic detectors' rules do. A packet the node sends itself has no
// input interface, so "-i" never matches it and "! -i" always does; "+" ends a prefix.
func TestInputInterfaceOfLocalPackets(t *testing.T) {
	tr := mustTracer(t, `*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:SVC - [0:0]
-A PREROUTING -j SVC
-A OUTPUT -j SVC
-A SVC -d 10.96.0.1/32 -i veth+ -p tcp -j DNAT --to-destination 10.244.1.2:8080
-A SVC -d 10.96.0.1/32 ! -i cni0 -p tcp -j DNAT --to-destination 10.244.2.3:8080
-A SVC -d 10.96.0.1/32 -p tcp -j DNAT --to-destination 10.244.3.4:8080
COMMIT
`)
	fromNode := tracer.Packet{Src: nodeIP, Dst: addr("10.96.0.1"), Proto: "tcp", SrcPort: 40000, DstPort: 80, Local: true}
	for _, c := range []struct {
		name string
		p    tracer.Packet
		want netip.AddrPort
	}{
		{"-i with a prefix", tcp("10.244.1.9", "10.96.0.1", 80, "veth12ab"), ep1},
		{"the prefix alone is a name that starts with it", tcp("10.244.1.9", "10.96.0.1", 80, "veth"), ep1},
		{"! -i, another interface", tcp("10.244.1.9", "10.96.0.1", 80, "eth0"), ep2},
		{"! -i, the named interface", tcp("10.244.1.9", "10.96.0.1", 80, "cni0"), ep3},
		{"from the node itself: no input interface", fromNode, ep2},
	} {
		if o := only(t, trace(t, tr, c.p)); o.Dst != c.want {
			t.Errorf("%s: %s, want DNAT to %s", c.name, o, c.want)
		}
	}
}
