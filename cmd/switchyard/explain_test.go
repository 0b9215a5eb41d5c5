package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"strings"
	"testing"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/conntrack/conntracktest"
	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/model"
)

func TestParseExplainFlags(t *testing.T) {
	ap := netip.MustParseAddrPort
	cases := []struct {
		args []string
		want explain.Packet
		err  string // a substring of the error; "" for none
	}{
		{args: []string{"--dst", "10.96.0.10:80"}, want: explain.Packet{Dst: ap("10.96.0.10:80"), Proto: "tcp", From: explain.FromNode}},
		{args: []string{"--src", "10.244.1.5", "--dst", "10.96.0.53:53/UDP"},
			want: explain.Packet{Src: ap("10.244.1.5:0"), Dst: ap("10.96.0.53:53"), Proto: "udp", From: explain.FromPod}},
		{args: []string{"--src", "203.0.113.7:40000", "--dst", "192.168.50.1:30080/sctp", "--from", "external"},
			want: explain.Packet{Src: ap("203.0.113.7:40000"), Dst: ap("192.168.50.1:30080"), Proto: "sctp", From: explain.FromExternal}},
		{args: []string{"--src", "fd00:10:244:1::5", "--dst", "[fd00:10:96::a]:443"},
			want: explain.Packet{Src: ap("[fd00:10:244:1::5]:0"), Dst: ap("[fd00:10:96::a]:443"), Proto: "tcp", From: explain.FromPod}},
		{args: []string{"--dst", "10.96.0.10"}, err: "has no port"},
		{args: []string{"--dst", "10.96.0.10:80/icmp"}, err: `unknown protocol "icmp"`},
		{args: []string{"--dst", "10.96.0.300:80"}, err: "want ADDR:PORT"},
		{args: []string{"--dst", "10.96.0.10:0"}, err: "port 0"},
		{args: []string{"--src", "nonsense", "--dst", "10.96.0.10:80"}, err: "--src"},
		{args: []string{"--src", "fd00::1", "--dst", "10.96.0.10:80"}, err: "different IP families"},
		{args: []string{"--dst", "10.96.0.10:80", "--from", "external"}, err: "needs --src"},
		{args: []string{"--dst", "10.96.0.10:80", "--from", "space"}, err: "--from"},
		{args: []string{"--src", "10.244.1.5"}, err: "--dst is required"},
		{args: []string{"--dst", "10.96.0.10:80", "--output", "yaml"}, err: "--output"},
		{args: []string{"--dst", "10.96.0.10:80", "--proxy-mode", "nftables"}, err: "--proxy-mode"},
		{args: []string{"--check", "--dst", "10.96.0.10:80"}, err: "takes no"},
		{args: []string{"--dst", "10.96.0.10:80", "extra"}, err: "unexpected arguments"},
	}
	for _, c := range cases {
		f, err := parseExplainFlags(c.args, io.Discard)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want one saying %q", c.args, err, c.err)
			}
		case err != nil:
			t.Errorf("%q: %v", c.args, err)
		case f.pkt != c.want:
			t.Errorf("%q: packet %+v, want %+v", c.args, f.pkt, c.want)
		}
	}
	f, err := parseExplainFlags([]string{"--check"}, io.Discard)
	if err != nil || !f.check || f.metricsAddress != "127.0.0.1:10249" || f.mode != "auto" || f.output != "text" {
		t.Errorf("--check alone: %+v, %v", f, err)
	}
}

// TestExplainHelp: --help prints the usage with every flag and is not an error.
func TestExplainHelp(t *testing.T) {
	var out bytes.Buffer
	if err := runExplain([]string{"--help"}, io.Discard, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Usage: switchyard explain", "--dst", "--src", "--from", "--output", "--metrics-address", "--proxy-mode", "--check", "Exit status"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

// fakeNode is a node's state for liveSources: tables, routes, conntrack and the daemon's model.
type fakeNode struct {
	ipt      *iptablestest.Fake
	ct       *conntracktest.Fake
	model    *model.DebugModel
	expected func() ([]byte, error)
	ipvsDev  bool
}

func (n *fakeNode) sources() liveSources {
	return liveSources{
		saveIptables: func(model.IPFamily) ([]byte, error) { return []byte(n.ipt.Dump()), nil },
		ipvs: func(model.IPFamily) ([]explain.VirtualServer, string, error) {
			return nil, "", errors.New("no IPVS here")
		},
		hasIPVSDevice: func() bool { return n.ipvsDev },
		localAddrs: func(model.IPFamily) (map[netip.Addr]string, error) {
			return map[netip.Addr]string{netip.MustParseAddr("192.168.50.1"): "eth0", netip.MustParseAddr("127.0.0.1"): "lo"}, nil
		},
		route: func(dst netip.Addr) (routeFacts, error) {
			switch {
			case dst == netip.MustParseAddr("192.168.50.1"):
				return routeFacts{Dst: dst, Local: true, Device: "lo"}, nil
			case netip.MustParsePrefix("10.244.1.0/24").Contains(dst):
				return routeFacts{Dst: dst, Device: "cni0", DeviceType: "bridge", Src: netip.MustParseAddr("10.244.1.1"), Prefix: netip.MustParsePrefix("10.244.1.0/24")}, nil
			case netip.MustParsePrefix("10.244.0.0/16").Contains(dst):
				return routeFacts{Dst: dst, Device: "sy-vxlan", DeviceType: "vxlan", Src: netip.MustParseAddr("10.244.1.0"), Prefix: netip.MustParsePrefix("10.244.2.0/24")}, nil
			}
			return routeFacts{Dst: dst, Device: "eth0", DeviceType: "device", Gateway: netip.MustParseAddr("192.168.50.254"),
				Src: netip.MustParseAddr("192.168.50.1"), Prefix: netip.MustParsePrefix("0.0.0.0/0")}, nil
		},
		conntrack: n.ct,
		fetchModel: func() (*model.DebugModel, error) {
			if n.model == nil {
				return nil, errors.New("connection refused")
			}
			return n.model, nil
		},
		fetchExpectedRules: n.expected,
	}
}

// syncedProxier is iptables mode over ipt after a sync of debugFixture, and the snapshot synced.
func syncedProxier(t *testing.T, ipt utiliptables.Interface) (*iptables.Proxier, *model.Snapshot) {
	t.Helper()
	opts := iptables.DefaultOptions(model.IPv4)
	opts.LocalDetector.ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}
	p, err := iptables.NewProxier(iptables.Config{Options: opts, IPTables: ipt})
	if err != nil {
		t.Fatal(err)
	}
	return p, syncDebugFixture(t, p)
}

// syncDebugFixture fully syncs debugFixture into backend b and returns the snapshot synced.
func syncDebugFixture(t *testing.T, b model.Backend) *model.Snapshot {
	t.Helper()
	snap := debugFixture()
	snap.Full = true
	if err := b.Sync(snap); err != nil {
		t.Fatal(err)
	}
	return snap
}

// syncedNode is a fake node whose iptables mode synced debugFixture.
func syncedNode(t *testing.T) (*fakeNode, *model.Snapshot) {
	t.Helper()
	n := &fakeNode{ipt: iptablestest.NewFake(), ct: &conntracktest.Fake{}}
	p, snap := syncedProxier(t, n.ipt)
	dm := model.NewDebugModel(snap, []model.DebugSync{{Family: model.IPv4}})
	n.model = &dm
	n.expected = func() ([]byte, error) { return p.ExpectedRules(snap) }
	return n, snap
}

// dnatTo finds, in ipt's nat table, the rule that DNATs to endpoint, and returns its chain, the
// rule as iptables-save prints it (after "-A CHAIN ") and its words.
func dnatTo(t *testing.T, ipt utiliptables.Interface, endpoint string) (chain, rule string, words []string) {
	t.Helper()
	saved, err := ipt.Save(iptables.TableNAT)
	if err != nil {
		t.Fatal(err)
	}
	for c, rules := range utiliptables.ChainRules(saved) {
		for _, line := range strings.Split(rules, "\n") {
			if strings.HasSuffix(line, "--to-destination "+endpoint) {
				chain, rule = c, strings.TrimPrefix(line, "-A "+c+" ")
			}
		}
	}
	words, err = utiliptables.SplitWords(rule)
	if rule == "" || err != nil {
		t.Fatalf("no DNAT to %s (%v) in:\n%s", endpoint, err, saved)
	}
	return chain, rule, words
}

// handEdit deletes the DNAT to endpoint from its Switchyard chain and adds a rule of its own to
// SY-SERVICES, as an operator's or another agent's edits would, and returns the lines `explain
// --check` must print for them.
func handEdit(t *testing.T, ipt utiliptables.Interface, endpoint string) string {
	t.Helper()
	chain, rule, words := dnatTo(t, ipt, endpoint)
	if err := ipt.DeleteRule(iptables.TableNAT, chain, words...); err != nil {
		t.Fatal(err)
	}
	if err := ipt.EnsureRule(utiliptables.Prepend, iptables.TableNAT, "SY-SERVICES", "-s", "10.244.1.66/32", "-j", "RETURN"); err != nil {
		t.Fatal(err)
	}
	return "missing:    nat: -A " + chain + " " + rule + "\n" +
		"unexpected: nat: -A SY-SERVICES -s 10.244.1.66/32 -j RETURN\n"
}

// TestGatherLive: the live state holds the family's rules, the mode they are of, the node's
// addresses, the client's conntrack entries about the destination (to it, or to one of its
// endpoints) and not others, the model, and routes named by kind and by the model's node.
func TestGatherLive(t *testing.T) {
	n, _ := syncedNode(t)
	ap := netip.MustParseAddrPort
	toService := conntrack.Flow{Protocol: model.TCP, OrigSrc: ap("10.244.1.7:40000"), OrigDst: ap("10.96.0.10:80"), ReplySrc: ap("10.244.2.5:8080"), ReplyDst: ap("10.244.1.7:40000")}
	toEndpoint := conntrack.Flow{Protocol: model.TCP, OrigSrc: ap("10.244.1.7:40002"), OrigDst: ap("10.244.1.5:8080"), ReplySrc: ap("10.244.1.5:8080"), ReplyDst: ap("10.244.1.7:40002")}
	udpSamePort := conntrack.Flow{Protocol: model.UDP, OrigSrc: ap("10.244.1.7:40000"), OrigDst: ap("10.96.0.10:80"), ReplySrc: ap("10.96.0.10:80"), ReplyDst: ap("10.244.1.7:40000")}
	elsewhere := conntrack.Flow{Protocol: model.TCP, OrigSrc: ap("10.244.1.7:40001"), OrigDst: ap("10.96.0.99:80"), ReplySrc: ap("10.96.0.99:80"), ReplyDst: ap("10.244.1.7:40001")}
	otherClient := conntrack.Flow{Protocol: model.TCP, OrigSrc: ap("10.244.1.9:40000"), OrigDst: ap("10.96.0.10:80"), ReplySrc: ap("10.244.2.5:8080"), ReplyDst: ap("10.244.1.9:40000")}
	n.ct.Flows = []conntrack.Flow{elsewhere, toEndpoint, udpSamePort, toService, otherClient}

	pkt := explain.Packet{Src: ap("10.244.1.7:0"), Dst: ap("10.96.0.10:80"), Proto: "tcp", From: explain.FromPod}
	g, err := gatherLive(n.sources(), "auto", pkt)
	if err != nil {
		t.Fatal(err)
	}
	live := g.live
	if live.Mode != "iptables" || live.Family != model.IPv4 || !bytes.Contains(live.IptablesSave, []byte(":SY-SERVICES")) {
		t.Errorf("mode %q family %v, rules with SY-SERVICES: %v", live.Mode, live.Family, bytes.Contains(live.IptablesSave, []byte(":SY-SERVICES")))
	}
	if len(g.notes) != 0 || live.Model == nil || len(live.Model.Services) != 1 {
		t.Errorf("notes %q, model %+v", g.notes, live.Model)
	}
	if live.LocalAddrs[netip.MustParseAddr("192.168.50.1")] != "eth0" {
		t.Errorf("local addresses = %v", live.LocalAddrs)
	}
	if len(live.Conntrack) != 2 || live.Conntrack[0].OrigSrc != toService.OrigSrc || live.Conntrack[1].OrigDst != toEndpoint.OrigDst {
		t.Errorf("conntrack entries = %+v, want the client's flows to the service and to its endpoint, not another client's", live.Conntrack)
	}
	for dst, want := range map[string]explain.Route{
		"10.244.2.5":   {Dst: netip.MustParseAddr("10.244.2.5"), Device: "sy-vxlan", Src: netip.MustParseAddr("10.244.1.0"), Kind: "vxlan", Node: "node-b"},
		"10.244.1.5":   {Dst: netip.MustParseAddr("10.244.1.5"), Device: "cni0", Src: netip.MustParseAddr("10.244.1.1"), Kind: "bridge", Node: "node-a"},
		"192.168.50.1": {Dst: netip.MustParseAddr("192.168.50.1"), Device: "lo", Kind: "local", Node: "node-a"},
		"8.8.8.8":      {Dst: netip.MustParseAddr("8.8.8.8"), Device: "eth0", Gateway: netip.MustParseAddr("192.168.50.254"), Src: netip.MustParseAddr("192.168.50.1"), Kind: "default"},
	} {
		got, err := live.Route(netip.MustParseAddr(dst))
		if err != nil || got != want {
			t.Errorf("route to %s = %+v, %v; want %+v", dst, got, err, want)
		}
	}

	// Without the daemon the walk still has the rules; a note says what is missing.
	n.model = nil
	g, err = gatherLive(n.sources(), "auto", pkt)
	if err != nil || g.live.Model != nil || len(g.notes) != 1 || !strings.Contains(g.notes[0], "connection refused") {
		t.Errorf("without the daemon: %v, model %v, notes %q", err, g.live.Model, g.notes)
	}
	// IPVS mode is asked for: its state cannot be read here, which is an error.
	if _, err := gatherLive(n.sources(), "ipvs", pkt); err == nil || !strings.Contains(err.Error(), "no IPVS here") {
		t.Errorf("IPVS mode without IPVS: %v", err)
	}
	// With IPVS mode's chains in the tables, auto reads its virtual servers and sets.
	if err := n.ipt.Restore([]byte("*nat\n:SY-IPVS-SERVICES - [0:0]\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}
	vs := explain.VirtualServer{Addr: ap("10.96.0.10:80"), Protocol: "tcp", Scheduler: "rr", RealServers: []explain.RealServer{{Addr: ap("10.244.2.5:8080"), Weight: 1}}}
	src := n.sources()
	src.ipvs = func(f model.IPFamily) ([]explain.VirtualServer, string, error) {
		return []explain.VirtualServer{vs}, "create SY-CLUSTER-IP hash:ip,port family inet\n", nil
	}
	g, err = gatherLive(src, "auto", pkt)
	if err != nil || g.live.Mode != "ipvs" || len(g.live.VirtualServers) != 1 || g.live.VirtualServers[0].Addr != vs.Addr || !strings.HasPrefix(g.live.IPSetSave, "create SY-CLUSTER-IP") {
		t.Errorf("IPVS mode: %v, mode %q, virtual servers %+v, sets %q", err, g.live.Mode, g.live.VirtualServers, g.live.IPSetSave)
	}
}

// TestPickMode: auto follows the chains in force, then kube-ipvs0.
func TestPickMode(t *testing.T) {
	for _, c := range []struct {
		save   string
		device bool
		want   string
	}{
		{"*nat\n:SY-SERVICES - [0:0]\nCOMMIT\n", true, "iptables"},
		{"*nat\n:SY-IPVS-SERVICES - [0:0]\nCOMMIT\n", false, "ipvs"},
		{"*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", true, "ipvs"},
		{"*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", false, "iptables"},
	} {
		if got, _ := pickMode("auto", []byte(c.save), func() bool { return c.device }); got != c.want {
			t.Errorf("%q with kube-ipvs0 %v: %s, want %s", c.save, c.device, got, c.want)
		}
	}
}

// TestCheck: right after a sync there is no drift; a rule deleted by hand from a Switchyard chain
// is missing, a rule added by hand to one is unexpected, and the check fails.
func TestCheck(t *testing.T) {
	n, _ := syncedNode(t)
	f := &explainFlags{check: true, mode: "auto"}
	var out bytes.Buffer
	if err := runCheck(n.sources(), f, &out); err != nil || !strings.Contains(out.String(), "no drift") {
		t.Fatalf("right after a sync: %v\n%s", err, out.String())
	}

	want := handEdit(t, n.ipt, "10.244.2.5:8080")
	out.Reset()
	err := runCheck(n.sources(), f, &out)
	if err == nil || !strings.Contains(err.Error(), "1 rules missing and 1 unexpected") {
		t.Errorf("after the hand edits: %v", err)
	}
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}

// TestExplainPacket: the command walks a pod's packet to a ClusterIP through the fake node's
// rules to both endpoints and exits 0; once another agent's rule it cannot follow sits ahead of
// Switchyard's jump, it says so and exits non-zero.
func TestExplainPacket(t *testing.T) {
	n, _ := syncedNode(t)
	f, err := parseExplainFlags([]string{"--src", "10.244.1.7", "--dst", "10.96.0.10:80", "--output", "json"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := explainPacket(n.sources(), f, &out); err != nil {
		t.Fatalf("explain: %v\n%s", err, out.String())
	}
	var rep explain.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	got := map[string]string{}
	for _, o := range rep.Outcomes {
		got[o.Endpoint.String()] = fmt.Sprintf("%s %s %.2f", o.Verdict, o.EndpointNode, o.Probability)
	}
	want := map[string]string{"10.244.1.5:8080": "delivered node-a 0.50", "10.244.2.5:8080": "delivered node-b 0.50"}
	if !maps.Equal(got, want) || rep.Unexplained != "" {
		t.Errorf("outcomes = %v (unexplained %q), want %v", got, rep.Unexplained, want)
	}

	// Text, without the daemon: still explained, and the note says what is missing.
	n.model = nil
	f.output = "text"
	out.Reset()
	if err := explainPacket(n.sources(), f, &out); err != nil || !strings.Contains(out.String(), "model could not be read") {
		t.Errorf("without the daemon: %v\n%s", err, out.String())
	}

	if err := n.ipt.EnsureRule(0, iptables.TableNAT, "PREROUTING", "-m", "length", "--length", "0:1500", "-j", "ACCEPT"); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = explainPacket(n.sources(), f, &out)
	if err == nil || !strings.Contains(err.Error(), "cannot explain past this rule") || !strings.Contains(err.Error(), "--length") {
		t.Errorf("with a foreign rule ahead: %v\n%s", err, out.String())
	}
}

// TestClassifyRoute: a veth is a pod's only with a host route or inside this node's pod CIDR; a
// node in a container has a veth for its uplink.
func TestClassifyRoute(t *testing.T) {
	dm := model.NewDebugModel(debugFixture(), nil)
	a, p := netip.MustParseAddr, netip.MustParsePrefix
	for _, c := range []struct {
		f    routeFacts
		want string
	}{
		{routeFacts{Dst: a("10.244.1.9"), DeviceType: "veth", Prefix: p("10.244.1.9/32")}, "bridge"},
		{routeFacts{Dst: a("10.244.1.9"), DeviceType: "veth", Prefix: p("10.244.1.0/24")}, "bridge"},
		{routeFacts{Dst: a("8.8.8.8"), DeviceType: "veth", Prefix: p("0.0.0.0/0")}, "default"},
		{routeFacts{Dst: a("10.244.3.9"), DeviceType: "veth", Gateway: a("192.168.50.3"), Prefix: p("10.244.3.0/24")}, "direct"},
		{routeFacts{Dst: a("10.244.4.9"), DeviceType: "device", BGP: true, Prefix: p("10.244.4.0/24")}, "bgp"},
	} {
		if got := classifyRoute(c.f, &dm).Kind; got != c.want {
			t.Errorf("%+v: %s, want %s", c.f, got, c.want)
		}
	}
}
