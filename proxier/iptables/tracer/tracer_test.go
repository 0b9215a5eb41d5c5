package tracer_test

import (
	"fmt"
	"math"
	"net/netip"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/proxier/iptables/tracer"
)

var (
	nodeIP   = netip.MustParseAddr("192.168.50.10")
	nodeBoth = tracer.Node{
		Interfaces: []tracer.Interface{
			{Name: "eth0", Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.50.10/24")}},
			{Name: "cni0", Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.1.1/24")}},
			{Name: "flannel.1", Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/32")}},
			{Name: "docker0", Addrs: []netip.Prefix{netip.MustParsePrefix("172.16.0.1/16")}},
		},
		Routes: []tracer.Route{
			{Dst: netip.MustParsePrefix("10.244.0.0/16"), Iface: "flannel.1"},
			{Dst: netip.MustParsePrefix("0.0.0.0/0"), Iface: "eth0"},
		},
	}
	ep1 = netip.MustParseAddrPort("10.244.1.2:8080") // the local endpoint
	ep2 = netip.MustParseAddrPort("10.244.2.3:8080")
	ep3 = netip.MustParseAddrPort("10.244.3.4:8080")
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// load reads a file under testdata and parses it, failing the test on either error.
func load[T any](t *testing.T, name string, parse func(string) (T, error)) T {
	t.Helper()
	text, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := parse(string(text))
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return v
}

// loadRules parses the hand-written dump testdata/node.rules.
func loadRules(t *testing.T) *tracer.Ruleset { return load(t, "node.rules", tracer.Parse) }

// loadTracer is a tracer over the hand-written dump and ipsets, on a node like the one they were
// written for.
func loadTracer(t *testing.T) *tracer.Tracer {
	t.Helper()
	return tracer.New(loadRules(t), nodeBoth, load(t, "node.ipsets", tracer.ParseIPSetSave))
}

func trace(t *testing.T, tr *tracer.Tracer, p tracer.Packet) *tracer.Result {
	t.Helper()
	res, err := tr.Trace(p)
	if err != nil {
		t.Fatalf("trace: %v", err)
	}
	var sum float64
	for _, o := range res.Outcomes {
		sum += o.Probability
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Fatalf("outcome probabilities sum to %v, not 1:\n%s", sum, res)
	}
	return res
}

func only(t *testing.T, res *tracer.Result) tracer.Outcome {
	t.Helper()
	o, err := res.Only()
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func tcp(src, dst string, dport uint16, in string) tracer.Packet {
	return tracer.Packet{Src: addr(src), Dst: addr(dst), Proto: "tcp", SrcPort: 40000, DstPort: dport, InIface: in}
}

// assertEach fails the test, saying what was expected, at the first outcome of res that ok rejects.
func assertEach(t *testing.T, res *tracer.Result, what string, ok func(tracer.Outcome) bool) {
	t.Helper()
	for _, o := range res.Outcomes {
		if !ok(o) {
			t.Fatalf("%s: %s", what, o)
		}
	}
}

func masqueraded(o tracer.Outcome) bool { return o.Masqueraded }

// assertEven checks the accepted destinations are exactly want, each equally likely.
func assertEven(t *testing.T, res *tracer.Result, want ...netip.AddrPort) {
	t.Helper()
	got := res.Destinations()
	if len(got) != len(want) {
		t.Fatalf("destinations %v, want %v\n%s", got, want, res)
	}
	for _, w := range want {
		if p, ok := got[w]; !ok || math.Abs(p-1/float64(len(want))) > 1e-6 {
			t.Fatalf("destination %s has probability %v, want %v\n%s", w, p, 1/float64(len(want)), res)
		}
	}
}

func TestParseModel(t *testing.T) {
	rules, _ := os.ReadFile("testdata/node.rules")
	rs, err := tracer.Parse(string(rules))
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for n := range rs.Tables {
		tables = append(tables, n)
	}
	sort.Strings(tables)
	if strings.Join(tables, ",") != "filter,mangle,nat" {
		t.Fatalf("tables %v", tables)
	}
	if c := rs.Chain("filter", "FORWARD"); !c.Builtin || c.Policy != "DROP" || len(c.Rules) != 7 {
		t.Fatalf("filter FORWARD = %+v", c)
	}
	if c := rs.Chain("nat", "KUBE-SVC-A"); c.Builtin || c.Policy != "" || len(c.Rules) != 7 {
		t.Fatalf("nat KUBE-SVC-A = %+v", c)
	}
	if c := rs.Chain("mangle", "KUBE-PROXY-CANARY"); c == nil || len(c.Rules) != 0 {
		t.Fatalf("canary chain = %+v", c)
	}
	if got := rs.Chain("nat", "KUBE-SERVICES").Rules[0].Comment; got != "default/a:http cluster IP" {
		t.Fatalf("comment %q", got)
	}
	// Every -A line of the file became a rule.
	want := strings.Count(string(rules), "\n-A ")
	if rs.RuleCount() != want {
		t.Fatalf("RuleCount %d, want %d", rs.RuleCount(), want)
	}
}

func TestPodToClusterIP(t *testing.T) {
	tr := loadTracer(t)
	res := trace(t, tr, tcp("10.244.1.5", "10.96.0.10", 80, "cni0"))
	assertEven(t, res, ep1, ep2, ep3)
	for _, o := range res.Outcomes {
		if o.Masqueraded || o.Src.Addr() != addr("10.244.1.5") || !o.DNATed || o.Delivery != "forward" {
			t.Fatalf("pod to ClusterIP outcome %s", o)
		}
		wantOut := "flannel.1"
		if o.Dst == ep1 {
			wantOut = "cni0"
		}
		if o.OutIface != wantOut {
			t.Fatalf("to %s leaves through %s, want %s", o.Dst, o.OutIface, wantOut)
		}
	}
}

func TestHairpinMasqueradesOnlyToSelf(t *testing.T) {
	tr := loadTracer(t)
	res := trace(t, tr, tcp("10.244.1.2", "10.96.0.10", 80, "cni0"))
	assertEven(t, res, ep1, ep2, ep3)
	for _, o := range res.Outcomes {
		if o.Masqueraded != (o.Dst == ep1) {
			t.Fatalf("hairpin: masqueraded=%v for %s\n%s", o.Masqueraded, o.Dst, res)
		}
		if o.Dst == ep1 && o.Src.Addr() != addr("10.244.1.1") {
			t.Fatalf("hairpin source %s, want the bridge address", o.Src)
		}
	}
}

func TestOffClusterSourceToClusterIPIsMasqueraded(t *testing.T) {
	tr := loadTracer(t)
	res := trace(t, tr, tcp("192.168.50.99", "10.96.0.10", 80, "eth0"))
	assertEven(t, res, ep1, ep2, ep3)
	assertEach(t, res, "off-cluster to ClusterIP", func(o tracer.Outcome) bool { return o.Masqueraded && o.Mark == 0 })
}

func TestLocalProcessToClusterIP(t *testing.T) {
	tr := loadTracer(t)
	p := tcp("192.168.50.10", "10.96.0.10", 80, "")
	p.Local = true
	res := trace(t, tr, p)
	assertEven(t, res, ep1, ep2, ep3)
	assertEach(t, res, "local to ClusterIP", func(o tracer.Outcome) bool {
		return o.Masqueraded && o.Delivery == "output" && o.Hooks[0] == "mangle/OUTPUT"
	})
}

func TestNodePortCluster(t *testing.T) {
	tr := loadTracer(t)
	res := trace(t, tr, tcp("8.8.8.8", "192.168.50.10", 30080, "eth0"))
	assertEven(t, res, ep1, ep2, ep3)
	assertEach(t, res, "external to NodePort not masqueraded", masqueraded)
}

func TestNodePortLocalPolicy(t *testing.T) {
	tr := loadTracer(t)
	res := trace(t, tr, tcp("8.8.8.8", "192.168.50.10", 30081, "eth0"))
	o := only(t, res)
	if o.Verdict != tracer.Accept || o.Dst != ep1 || o.Masqueraded || o.Src.Addr() != addr("8.8.8.8") {
		t.Fatalf("eTP=Local keeps the client IP and uses the local endpoint: %s", res)
	}

	// A process on the node reaching its own NodePort is masqueraded and may use every endpoint.
	p := tcp("192.168.50.10", "192.168.50.10", 30081, "")
	p.Local = true
	res = trace(t, tr, p)
	assertEven(t, res, ep1, ep2, ep3)
	assertEach(t, res, "local to eTP=Local NodePort", masqueraded)
}

func TestNoLocalEndpointsDrops(t *testing.T) {
	tr := loadTracer(t)
	o := only(t, trace(t, tr, tcp("8.8.8.8", "192.168.50.10", 30090, "eth0")))
	if o.Verdict != tracer.Drop || o.Delivery != "local" || o.Rules[len(o.Rules)-1].Rule.Comment != "default/local-none:http has no local endpoints" {
		t.Fatalf("want DROP by the no-local-endpoints rule: %s", o)
	}
}

func TestNoEndpointsRejects(t *testing.T) {
	tr := loadTracer(t)
	o := only(t, trace(t, tr, tcp("10.244.1.5", "10.96.0.20", 80, "cni0")))
	if o.Verdict != tracer.Reject || o.RejectWith != "icmp-port-unreachable" || o.DNATed {
		t.Fatalf("want REJECT: %s", o)
	}
}

func TestLoadBalancerSourceRanges(t *testing.T) {
	tr := loadTracer(t)
	res := trace(t, tr, tcp("198.51.100.7", "203.0.113.5", 80, "eth0"))
	assertEven(t, res, ep1, ep2, ep3)
	o := only(t, trace(t, tr, tcp("8.8.8.8", "203.0.113.5", 80, "eth0")))
	if o.Verdict != tracer.Drop || o.Mark&0x8000 == 0 || o.DNATed {
		t.Fatalf("source outside loadBalancerSourceRanges must be dropped: %s", o)
	}
}

func TestSessionAffinity(t *testing.T) {
	tr := loadTracer(t)
	client := tcp("10.244.1.5", "10.96.0.10", 80, "cni0")
	first := trace(t, tr, client)
	if len(first.Outcomes) != 3 {
		t.Fatalf("first packet should be balanced: %s", first)
	}
	var chosen tracer.Outcome
	for _, o := range first.Outcomes {
		if o.Dst == ep2 {
			chosen = o
		}
	}
	tr.Commit(chosen)
	if got := tr.RecentEntries("KUBE-SEP-A2"); len(got) != 1 || got[0] != client.Src {
		t.Fatalf("recent list KUBE-SEP-A2 = %v", got)
	}

	client.SrcPort = 40001 // a new connection from the same client
	again := only(t, trace(t, tr, client))
	if again.Dst != ep2 {
		t.Fatalf("second packet went to %s, want %s", again.Dst, ep2)
	}
	// Another client is still balanced.
	assertEven(t, trace(t, tr, tcp("10.244.1.6", "10.96.0.10", 80, "cni0")), ep1, ep2, ep3)

	// Within the timeout (and refreshed by each new connection, since the DNAT rule re-sets it)
	// the entry holds; once it is older than --seconds, the client is balanced again.
	tr.Advance(10800 * time.Second)
	if o := only(t, trace(t, tr, client)); o.Dst != ep2 {
		t.Fatalf("at exactly the timeout the entry should still hold: %s", o)
	}
	tr.Advance(time.Second)
	assertEven(t, trace(t, tr, client), ep1, ep2, ep3)
}

func TestGotoReturnsToCallerOfCaller(t *testing.T) {
	tr := loadTracer(t)
	o := only(t, trace(t, tr, tcp("8.8.8.8", "10.96.0.30", 80, "eth0")))
	if o.Verdict != tracer.Drop || o.Reason != "policy DROP of filter/FORWARD" || o.Mark != 0 {
		t.Fatalf("want FORWARD policy DROP and no mark: %s", o)
	}
	var ret bool
	for _, h := range o.Rules {
		if h.Rule.Chain == "TEST-GOTO-TARGET" {
			ret = true
		}
		if strings.Contains(h.Rule.Comment, "never reached") {
			t.Fatalf("rule after -g was walked: %s", o)
		}
	}
	if !ret {
		t.Fatalf("goto target not walked: %s", o)
	}
}

func TestAddrtypeLimitIfaceIn(t *testing.T) {
	tr := loadTracer(t)
	o := only(t, trace(t, tr, tcp("192.168.50.99", "10.244.1.1", 9999, "eth0")))
	if o.Verdict != tracer.Reject || o.RejectWith != "tcp-reset" || o.Delivery != "local" {
		t.Fatalf("address of another interface: %s", o)
	}
	o = only(t, trace(t, tr, tcp("192.168.50.99", "192.168.50.10", 9999, "eth0")))
	if o.Verdict != tracer.Accept || o.Delivery != "local" {
		t.Fatalf("address of the in-interface: %s", o)
	}
}

func TestMultiportAndHashNetSet(t *testing.T) {
	tr := loadTracer(t)
	udp := func(src string, port uint16) tracer.Packet {
		return tracer.Packet{Src: addr(src), Dst: nodeIP, Proto: "udp", SrcPort: 5000, DstPort: port, InIface: "eth0"}
	}
	for _, c := range []struct {
		src  string
		port uint16
		want tracer.Verdict
	}{
		{"192.168.50.7", 53, tracer.Accept},
		{"192.168.50.7", 5355, tracer.Accept},
		{"8.8.8.8", 53, tracer.Reject},
		{"8.8.8.8", 5360, tracer.Reject},
		{"8.8.8.8", 5361, tracer.Accept}, // outside the multiport list
	} {
		o := only(t, trace(t, tr, udp(c.src, c.port)))
		if o.Verdict != c.want {
			t.Errorf("udp %s -> :%d: %s, want %s", c.src, c.port, o, c.want)
		}
	}
}

func TestHashIPPortSet(t *testing.T) {
	tr := loadTracer(t)
	if o := only(t, trace(t, tr, tcp("8.8.8.8", "192.168.50.10", 8443, "eth0"))); o.Verdict != tracer.Accept {
		t.Fatalf("member of TEST-ADMIN-PORTS: %s", o)
	}
	if o := only(t, trace(t, tr, tcp("8.8.8.8", "10.244.1.1", 8443, "eth0"))); o.Verdict != tracer.Drop {
		t.Fatalf("not a member of TEST-ADMIN-PORTS: %s", o)
	}
}

func TestSNAT(t *testing.T) {
	tr := loadTracer(t)
	o := only(t, trace(t, tr, tcp("172.16.0.5", "1.1.1.1", 443, "docker0")))
	if o.Verdict != tracer.Accept || !o.Masqueraded || o.Src != netip.MustParseAddrPort("192.168.50.10:40000") || o.OutIface != "eth0" {
		t.Fatalf("SNAT: %s", o)
	}
}

func TestConntrackStates(t *testing.T) {
	tr := loadTracer(t)
	p := tcp("8.8.8.8", "10.244.2.3", 8080, "eth0")
	p.CtState = "ESTABLISHED"
	o := only(t, trace(t, tr, p))
	if o.Verdict != tracer.Accept || o.Hooks[1] == "nat/PREROUTING" {
		t.Fatalf("established traffic is accepted and skips nat: %s", o)
	}
	for _, h := range o.Hooks {
		if strings.HasPrefix(h, "nat/") {
			t.Fatalf("non-NEW packet walked %s", h)
		}
	}
	p.CtState = "INVALID"
	if o := only(t, trace(t, tr, p)); o.Verdict != tracer.Drop {
		t.Fatalf("invalid traffic is dropped: %s", o)
	}
	p.CtState = ""
	if o := only(t, trace(t, tr, p)); o.Verdict != tracer.Drop || !strings.HasPrefix(o.Reason, "policy") {
		t.Fatalf("new unsolicited traffic from outside to a remote pod hits the FORWARD policy: %s", o)
	}
}

func TestStatisticProbabilitiesAreKernelQuantised(t *testing.T) {
	tr := loadTracer(t)
	res := trace(t, tr, tcp("10.244.1.5", "10.96.0.10", 80, "cni0"))
	p1 := res.Destinations()[ep1]
	want := math.Round(0.33333333349*0x80000000) / 0x80000000
	if p1 != want {
		t.Fatalf("P(ep1) = %.12f, want %.12f", p1, want)
	}
}

func TestUnknownConstructsAreErrors(t *testing.T) {
	head := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:X - [0:0]\n"
	natHead := "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:X - [0:0]\n"
	for _, c := range []struct{ name, text, want string }{
		{"unknown match", head + "-A INPUT -m frobnicate --level 3 -j ACCEPT\nCOMMIT\n", `-A INPUT -m frobnicate --level 3 -j ACCEPT`},
		{"unknown option of a known match", head + "-A INPUT -p tcp -m tcp --tcp-flags SYN SYN -j ACCEPT\nCOMMIT\n", `unknown option "--tcp-flags"`},
		{"unknown target", head + "-A INPUT -j CT --notrack\nCOMMIT\n", `unknown option "--notrack"`},
		{"unknown chain", head + "-A INPUT -j NOPE\nCOMMIT\n", `no chain or target named NOPE`},
		{"unknown statistic mode", head + "-A INPUT -m statistic --mode nth --every 2 -j ACCEPT\nCOMMIT\n", `unsupported statistic mode`},
		{"tcp without -p tcp", head + "-A INPUT -m tcp --dport 80 -j ACCEPT\nCOMMIT\n", `-m tcp needs -p tcp`},
		{"port without protocol", head + "-A INPUT --dport 80 -j ACCEPT\nCOMMIT\n", `unknown option "--dport"`},
		{"DNAT in filter", head + "-A X -p tcp -j DNAT --to-destination 1.2.3.4:80\n-A INPUT -j X\nCOMMIT\n", `DNAT is not allowed in table filter`},
		{"DNAT in an unreachable filter chain", head + "-A X -p tcp -j DNAT --to-destination 1.2.3.4:80\nCOMMIT\n", `DNAT is not allowed in table filter`},
		{"REJECT in mangle", "*mangle\n-A FORWARD -j REJECT\nCOMMIT\n", `REJECT is not allowed in table mangle`},
		{"REJECT in nat", natHead + "-A PREROUTING -j REJECT\nCOMMIT\n", `REJECT is not allowed in table nat`},
		{"DROP in nat", natHead + "-A X -j DROP\nCOMMIT\n", `does not allow DROP`},
		{"MASQUERADE in PREROUTING", natHead + "-A X -j MASQUERADE\n-A PREROUTING -j X\nCOMMIT\n", `MASQUERADE is not allowed`},
		{"loop", head + ":Y - [0:0]\n-A X -j Y\n-A Y -j X\n-A INPUT -j X\nCOMMIT\n", `loop through chains`},
		{"jump to built-in", head + "-A X -j INPUT\nCOMMIT\n", `cannot jump to built-in chain`},
		{"missing COMMIT", head, `missing COMMIT`},
		{"unknown table", "*bogus\nCOMMIT\n", `unknown table`},
		{"dangling negation", head + "-A INPUT -s 10.0.0.1 ! -j ACCEPT\nCOMMIT\n", `! before -j`},
		{"bad address", head + "-A INPUT -s 10.0.0.300 -j ACCEPT\nCOMMIT\n", `-s`},
		{"host bits", head + "-A INPUT -s 10.0.0.1/8 -j ACCEPT\nCOMMIT\n", `host bits`},
		{"DNAT port without protocol", natHead + "-A PREROUTING -j DNAT --to-destination 1.2.3.4:80\nCOMMIT\n", `needs -p tcp`},
		{"-i in OUTPUT", head + "-A OUTPUT -i eth0 -j ACCEPT\nCOMMIT\n", `-i cannot be used in OUTPUT`},
		{"limit-iface-in from OUTPUT", head + "-A X -m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT\n-A OUTPUT -j X\nCOMMIT\n", `--limit-iface-in is not allowed from OUTPUT`},
		{"recent --seconds with --set", head + "-A INPUT -m recent --set --seconds 5 -j ACCEPT\nCOMMIT\n", `--seconds only works`},
		{"unsupported command", head + "-I INPUT -j ACCEPT\nCOMMIT\n", `unsupported command`},
		{"nfacct without a name", head + "-A INPUT -m nfacct -j ACCEPT\nCOMMIT\n", `-m nfacct without --nfacct-name`},
		{"negated nfacct name", head + "-A INPUT -m nfacct ! --nfacct-name x -j ACCEPT\nCOMMIT\n", `cannot be negated`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := tracer.Parse(c.text)
			if err == nil {
				t.Fatalf("parsed without error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestErrorNamesTheRule(t *testing.T) {
	text := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
		"-A INPUT -m comment --comment \"a b\" -m frobnicate -j ACCEPT\nCOMMIT\n"
	_, err := tracer.Parse(text)
	if err == nil || !strings.Contains(err.Error(), `-A INPUT -m comment --comment "a b" -m frobnicate -j ACCEPT`) || !strings.Contains(err.Error(), "line 5") {
		t.Fatalf("error should quote the rule and its line: %v", err)
	}
}

func TestMissingSetIsATraceError(t *testing.T) {
	rs := loadRules(t)
	tr := tracer.New(rs, nodeBoth, tracer.NewSets())
	_, err := tr.Trace(tracer.Packet{Src: addr("8.8.8.8"), Dst: nodeIP, Proto: "udp", SrcPort: 1, DstPort: 53, InIface: "eth0"})
	if err == nil || !strings.Contains(err.Error(), "TEST-DNS-CLIENTS does not exist") || !strings.Contains(err.Error(), "--match-set TEST-DNS-CLIENTS") {
		t.Fatalf("want an error naming the set and the rule, got %v", err)
	}
}

func TestRestoreNoflush(t *testing.T) {
	rs := loadRules(t)
	// An incremental update as a --noflush restore writes it: the service chain is redeclared
	// (flushed) and refilled with one endpoint, and the two endpoint chains gone are flushed and
	// deleted. Built-in chains not mentioned keep their rules.
	update := `*nat
:KUBE-SVC-A - [0:0]
:KUBE-SEP-A2 - [0:0]
:KUBE-SEP-A3 - [0:0]
-A KUBE-SVC-A -j KUBE-SEP-A1
-X KUBE-SEP-A2
-X KUBE-SEP-A3
COMMIT
`
	if err := rs.Restore(update, true); err != nil {
		t.Fatal(err)
	}
	if rs.Chain("nat", "KUBE-SEP-A2") != nil || len(rs.Chain("nat", "PREROUTING").Rules) != 1 {
		t.Fatalf("noflush restore: SEP-A2=%v PREROUTING rules=%d", rs.Chain("nat", "KUBE-SEP-A2"), len(rs.Chain("nat", "PREROUTING").Rules))
	}
	tr := tracer.New(rs, nodeBoth, nil)
	if o := only(t, trace(t, tr, tcp("10.244.1.5", "10.96.0.10", 80, "cni0"))); o.Dst != ep1 {
		t.Fatalf("after update: %s", o)
	}

	// A restore that fails (deleting a chain still referenced) leaves everything as it was.
	bad := "*nat\n:KUBE-SEP-A1 - [0:0]\n-X KUBE-SEP-A1\n-A KUBE-SVC-A -j ACCEPT\nCOMMIT\n"
	err := rs.Restore(bad, true)
	if err == nil || !strings.Contains(err.Error(), "KUBE-SEP-A1") {
		t.Fatalf("deleting a referenced chain: %v", err)
	}
	if c := rs.Chain("nat", "KUBE-SEP-A1"); c == nil || len(c.Rules) != 2 || len(rs.Chain("nat", "KUBE-SVC-A").Rules) != 1 {
		t.Fatalf("failed restore changed the ruleset")
	}

	// Deleting a chain that still has rules is refused, as the kernel refuses it.
	if err := rs.Restore("*nat\n-X KUBE-SEP-A1\nCOMMIT\n", true); err == nil || !strings.Contains(err.Error(), "still holds") {
		t.Fatalf("deleting a non-empty chain: %v", err)
	}
}

func TestIPSetSave(t *testing.T) {
	s, err := tracer.ParseIPSetSave(`create KUBE-NODE-PORT-TCP bitmap:port range 0-65535
add KUBE-NODE-PORT-TCP 30080
create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536
add KUBE-LOOP-BACK 10.244.1.2,tcp:8080,10.244.1.2
create KUBE-LOAD-BALANCER-SOURCE-CIDR hash:ip,port,net family inet hashsize 1024 maxelem 65536
add KUBE-LOAD-BALANCER-SOURCE-CIDR 203.0.113.5,tcp:80,198.51.100.0/24
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		set  string
		dst  []bool
		f    tracer.Flow
		want bool
	}{
		{"KUBE-NODE-PORT-TCP", []bool{true}, tracer.Flow{Proto: "tcp", DstPort: 30080}, true},
		{"KUBE-NODE-PORT-TCP", []bool{true}, tracer.Flow{Proto: "tcp", DstPort: 30081}, false},
		{"KUBE-LOOP-BACK", []bool{true, true, false}, tracer.Flow{Src: addr("10.244.1.2"), Dst: addr("10.244.1.2"), Proto: "tcp", DstPort: 8080}, true},
		{"KUBE-LOOP-BACK", []bool{true, true, false}, tracer.Flow{Src: addr("10.244.1.3"), Dst: addr("10.244.1.2"), Proto: "tcp", DstPort: 8080}, false},
		{"KUBE-LOOP-BACK", []bool{true, true, false}, tracer.Flow{Src: addr("10.244.1.2"), Dst: addr("10.244.1.2"), Proto: "udp", DstPort: 8080}, false},
		{"KUBE-LOAD-BALANCER-SOURCE-CIDR", []bool{true, true, false}, tracer.Flow{Src: addr("198.51.100.9"), Dst: addr("203.0.113.5"), Proto: "tcp", DstPort: 80}, true},
		{"KUBE-LOAD-BALANCER-SOURCE-CIDR", []bool{true, true, false}, tracer.Flow{Src: addr("8.8.8.8"), Dst: addr("203.0.113.5"), Proto: "tcp", DstPort: 80}, false},
	} {
		got, err := s.Test(c.set, c.dst, c.f)
		if err != nil || got != c.want {
			t.Errorf("%s %+v: got %v, %v; want %v", c.set, c.f, got, err, c.want)
		}
	}
	if _, err := s.Test("KUBE-LOOP-BACK", []bool{true}, tracer.Flow{}); err == nil {
		t.Errorf("too few direction flags should be an error")
	}
	if _, err := tracer.ParseIPSetSave("create X hash:ip,port\nadd X 10.0.0.1\n"); err == nil {
		t.Errorf("member with too few parts should be an error")
	}
	if _, err := tracer.ParseIPSetSave("create X list:set\n"); err == nil {
		t.Errorf("unsupported set type should be an error")
	}
}

func TestStepBudget(t *testing.T) {
	// No loop, but each chain calls the next twice: 2^40 rule evaluations without a budget.
	var b strings.Builder
	b.WriteString("*filter\n")
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&b, ":C%d - [0:0]\n", i)
	}
	for i := 0; i < 39; i++ {
		fmt.Fprintf(&b, "-A C%d -j C%d\n-A C%d -j C%d\n", i, i+1, i, i+1)
	}
	b.WriteString("-A INPUT -j C0\nCOMMIT\n")
	rs, err := tracer.Parse(b.String())
	if err != nil {
		t.Fatal(err)
	}
	tr := tracer.New(rs, nodeBoth, nil)
	tr.MaxSteps = 10000
	_, err = tr.Trace(tcp("8.8.8.8", "192.168.50.10", 80, "eth0"))
	if err == nil || !strings.Contains(err.Error(), "more than 10000 steps") {
		t.Fatalf("want the step budget to stop the trace, got %v", err)
	}
}
