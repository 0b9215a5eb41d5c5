package iptables_test

// Explain on rules the real Proxier wrote (through the stateful fake), read back as iptables-save
// text the way the command reads a node's: verdicts, endpoints and probabilities, the Service each
// step belongs to, masquerade, and the likely causes.

import (
	"bytes"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/golden"
	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/model"
)

// liveOf is the node state of traceSnapshot synced by a real Proxier: traceNode's addresses, its
// routes (this node's pods on cni0, other nodes' pods through flannel.1, the rest through eth0) and
// the daemon's model of the snapshot.
func liveOf(t testing.TB, snap *model.Snapshot, save string) *explain.Live {
	t.Helper()
	return &explain.Live{
		Mode:         "iptables",
		Family:       model.IPv4,
		IptablesSave: []byte(save),
		LocalAddrs: map[netip.Addr]string{
			nodeIP: "eth0", bridgeIP: "cni0", a("10.244.1.0"): "flannel.1", a("127.0.0.1"): "lo",
		},
		Route: testRoute,
		Model: debugModelOf(snap),
	}
}

// testRoute answers like `ip route get` on traceNode.
func testRoute(dst netip.Addr) (explain.Route, error) {
	switch {
	case dst == nodeIP || dst == bridgeIP || dst.IsLoopback():
		return explain.Route{Dst: dst, Device: "lo", Src: dst, Kind: "local"}, nil
	case pfx("10.244.1.0/24").Contains(dst):
		return explain.Route{Dst: dst, Device: "cni0", Src: bridgeIP, Kind: "bridge", Node: thisNode}, nil
	case pfx("10.244.0.0/16").Contains(dst):
		node := map[byte]string{2: "node-b", 3: "node-c", 4: "node-d"}[dst.As4()[2]]
		return explain.Route{Dst: dst, Device: "flannel.1", Src: a("10.244.1.0"), Kind: "vxlan", Node: node}, nil
	case pfx("192.168.50.0/24").Contains(dst):
		return explain.Route{Dst: dst, Device: "eth0", Src: nodeIP, Kind: "direct"}, nil
	}
	return explain.Route{Dst: dst, Device: "eth0", Gateway: a("192.168.50.1"), Src: nodeIP, Kind: "default"}, nil
}

// debugModelOf is what /debug/model would serve for snap: its service ports sorted by name, with the
// endpoint sets Categorize picks on this node.
func debugModelOf(snap *model.Snapshot) *model.DebugModel {
	m := &model.DebugModel{Node: model.DebugNode{Name: snap.Node.Name, PodCIDRs: snap.Node.PodCIDRs}}
	for name, svc := range snap.Services {
		eps := snap.Endpoints[name]
		c := model.Categorize(svc, eps, snap.Node)
		sp := model.DebugServicePort{
			Namespace: name.Namespace, Name: name.Name, Port: name.Port, Protocol: svc.Protocol, ServicePort: svc.Port,
			ClusterIPs: svc.ClusterIPs, NodePort: svc.NodePort, ExternalIPs: svc.ExternalIPs, LoadBalancerIPs: svc.LoadBalancerIPs,
			LoadBalancerSourceRanges: svc.LoadBalancerSourceRanges, HealthCheckNodePort: svc.HealthCheckNodePort,
			SessionAffinity: svc.Affinity.ClientIP, ExternalTrafficPolicy: svc.ExternalPolicy, InternalTrafficPolicy: svc.InternalPolicy,
			HasAny: c.HasAny,
		}
		for _, e := range eps {
			sp.Endpoints = append(sp.Endpoints, model.DebugEndpoint{Endpoint: e.AddrPort(), Ready: e.Ready, Serving: e.Serving,
				Terminating: e.Terminating, Local: e.NodeName == snap.Node.Name, NodeName: e.NodeName})
		}
		for _, e := range c.Cluster {
			sp.ClusterEndpoints = append(sp.ClusterEndpoints, e.AddrPort())
		}
		for _, e := range c.Local {
			sp.LocalEndpoints = append(sp.LocalEndpoints, e.AddrPort())
		}
		m.Services = append(m.Services, sp)
	}
	sort.Slice(m.Services, func(i, j int) bool {
		return m.Services[i].Namespace+"/"+m.Services[i].Name+":"+m.Services[i].Port < m.Services[j].Namespace+"/"+m.Services[j].Name+":"+m.Services[j].Port
	})
	success := time.Date(2026, 12, 4, 22, 0, 0, 0, time.UTC)
	m.Syncs = []model.DebugSync{{Family: model.IPv4, IPFamily: "IPv4", LastAttempt: success, LastSuccess: success, ModelChangedAt: success.Add(-time.Second)}}
	return m
}

// liveTrace is the live state of traceSnapshot as the Proxier writes it.
func liveTrace(t testing.TB) *explain.Live {
	t.Helper()
	snap := traceSnapshot()
	return liveOf(t, snap, syncFake(t, snap, traceOptions()).Dump())
}

func explainPacket(t *testing.T, live *explain.Live, p explain.Packet) *explain.Report {
	t.Helper()
	rep, err := iptables.Explain(live, p)
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	var sum float64
	for _, o := range rep.Outcomes {
		sum += o.Probability
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Fatalf("probabilities sum to %v:\n%s", sum, rep.Text())
	}
	return rep
}

func packet(src, dst string, from explain.From) explain.Packet {
	return explain.Packet{Src: ap(src), Dst: ap(dst), Proto: "tcp", From: from}
}

// checkGolden compares the report's text form (and, with withJSON, its JSON form) with
// testdata/<name>.txt (.json).
func checkGolden(t *testing.T, name string, rep *explain.Report, withJSON bool) {
	t.Helper()
	golden.Check(t, name+".txt", []byte(rep.Text()))
	if !withJSON {
		return
	}
	var js bytes.Buffer
	if err := explain.WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, name+".json", js.Bytes())
}

// causeOf returns the report's cause of the kind, failing the test when there is none.
func causeOf(t *testing.T, rep *explain.Report, kind string) explain.Cause {
	t.Helper()
	for _, c := range rep.Causes {
		if c.Kind == kind {
			return c
		}
	}
	t.Fatalf("no %s cause:\n%s", kind, rep.Text())
	return explain.Cause{}
}

// onlyOutcome returns the report's one outcome.
func onlyOutcome(t *testing.T, rep *explain.Report) explain.Outcome {
	t.Helper()
	if len(rep.Outcomes) != 1 {
		t.Fatalf("want one outcome:\n%s", rep.Text())
	}
	return rep.Outcomes[0]
}

func TestExplainClusterIPTwoEndpoints(t *testing.T) {
	rep := explainPacket(t, liveTrace(t), explain.Packet{Src: ap("10.244.1.20:40000"), Dst: ap("10.96.0.53:53"), Proto: "udp", From: explain.FromPod})
	if len(rep.Outcomes) != 2 || rep.Unexplained != "" || len(rep.Causes) != 0 {
		t.Fatalf("want two outcomes and no causes:\n%s", rep.Text())
	}
	got := map[netip.AddrPort]explain.Outcome{}
	for _, o := range rep.Outcomes {
		got[o.Endpoint] = o
	}
	for ep, node := range map[string]string{"10.244.2.2:53": "node-b", "10.244.3.3:53": "node-c"} {
		o, ok := got[ap(ep)]
		if !ok || o.Verdict != explain.Delivered || math.Abs(o.Probability-0.5) > 1e-6 || o.EndpointNode != node {
			t.Fatalf("endpoint %s: want delivered with probability 0.5 on %s:\n%s", ep, node, rep.Text())
		}
		if o.Masquerade.IsValid() {
			t.Fatalf("a pod's packet to a ClusterIP must keep its source:\n%s", rep.Text())
		}
		if o.Route == nil || o.Route.Kind != "vxlan" || o.Route.Node != node {
			t.Fatalf("endpoint %s: want the VXLAN route to %s, got %+v", ep, node, o.Route)
		}
		want := explain.ServiceRef{Namespace: "default", Name: "dns", Port: "p"}
		var dnat *explain.Step
		for i, s := range o.Steps {
			if strings.Contains(s.Rule, "-j DNAT") {
				dnat = &o.Steps[i]
			}
		}
		if dnat == nil || dnat.Service == nil || *dnat.Service != want || dnat.Hook != "nat/PREROUTING" {
			t.Fatalf("endpoint %s: want a nat/PREROUTING DNAT step of %v:\n%s", ep, want, rep.Text())
		}
	}
	checkGolden(t, "explain-clusterip", rep, true)
}

func TestExplainNodePortFromOutside(t *testing.T) {
	rep := explainPacket(t, liveTrace(t), packet("198.51.100.7:40000", "192.168.50.10:30010", explain.FromExternal))
	if rep.Packet.InIface != "eth0" {
		t.Fatalf("the packet from outside should arrive on eth0, got %q", rep.Packet.InIface)
	}
	if len(rep.Outcomes) != 5 {
		t.Fatalf("want web's five endpoints:\n%s", rep.Text())
	}
	for _, o := range rep.Outcomes {
		if o.Verdict != explain.Delivered || math.Abs(o.Probability-0.2) > 1e-6 {
			t.Fatalf("want each endpoint with probability 0.2:\n%s", rep.Text())
		}
		// MASQUERADE picks the source of the route to the endpoint.
		want := nodeIP
		if o.Route.Device == "flannel.1" {
			want = a("10.244.1.0")
		} else if o.Route.Device == "cni0" {
			want = bridgeIP
		}
		if o.Masquerade != want {
			t.Fatalf("endpoint %s: masquerade %v, want %v:\n%s", o.Endpoint, o.Masquerade, want, rep.Text())
		}
	}
	checkGolden(t, "explain-nodeport", rep, false)
}

func TestExplainETPLocalWithoutLocalEndpoints(t *testing.T) {
	rep := explainPacket(t, liveTrace(t), packet("198.51.100.7:40000", "192.168.50.10:30030", explain.FromExternal))
	if o := onlyOutcome(t, rep); o.Verdict != explain.Dropped {
		t.Fatalf("want dropped:\n%s", rep.Text())
	}
	c := causeOf(t, rep, explain.CauseETPLocalNoLocal)
	if !strings.Contains(c.Summary, "default/lb-remote:p") || !strings.Contains(strings.Join(c.Evidence, "\n"), "10.244.2.10:8080 (ready, serving, on node-b)") {
		t.Fatalf("cause without its evidence: %+v", c)
	}
	checkGolden(t, "explain-etp-local", rep, false)
}

func TestExplainNoEndpoints(t *testing.T) {
	rep := explainPacket(t, liveTrace(t), packet("10.244.1.20:40000", "10.96.0.40:80", explain.FromPod))
	if o := onlyOutcome(t, rep); o.Verdict != explain.Rejected || o.RejectWith != "icmp-port-unreachable" {
		t.Fatalf("want rejected with icmp-port-unreachable:\n%s", rep.Text())
	}
	c := causeOf(t, rep, explain.CauseNoReadyEndpoints)
	if !strings.Contains(c.Summary, "default/empty:p") {
		t.Fatalf("cause names the wrong service: %+v", c)
	}
	checkGolden(t, "explain-no-endpoints", rep, true)
}

func TestExplainOutsideSourceRanges(t *testing.T) {
	live := liveTrace(t)
	rep := explainPacket(t, live, packet("198.51.100.7:40000", "198.18.0.20:80", explain.FromExternal))
	if o := onlyOutcome(t, rep); o.Verdict != explain.Dropped {
		t.Fatalf("want dropped:\n%s", rep.Text())
	}
	c := causeOf(t, rep, explain.CauseOutsideSourceRanges)
	if !strings.Contains(strings.Join(c.Evidence, "\n"), "203.0.113.0/24") {
		t.Fatalf("cause without the ranges: %+v", c)
	}
	// From inside the ranges the same packet reaches the local endpoint, and no cause is given.
	rep = explainPacket(t, live, packet("203.0.113.7:40000", "198.18.0.20:80", explain.FromExternal))
	if o := onlyOutcome(t, rep); o.Verdict != explain.Delivered || o.Endpoint != ap("10.244.1.7:8080") || len(rep.Causes) != 0 {
		t.Fatalf("want delivered to the local endpoint without causes:\n%s", rep.Text())
	}
}

// TestExplainForeignRule: another agent's rule ahead of Switchyard's jump in nat PREROUTING stops
// the walk there; the same rule in a chain the packet does not enter changes nothing.
func TestExplainForeignRule(t *testing.T) {
	snap := traceSnapshot()
	save := syncFake(t, snap, traceOptions()).Dump()
	foreign := `-A PREROUTING -m physdev --physdev-is-in -j CNI-HOOK`
	ahead := strings.Replace(save, "-A PREROUTING -m comment --comment \"switchyard service portals\"",
		foreign+"\n-A PREROUTING -m comment --comment \"switchyard service portals\"", 1)
	ahead = strings.Replace(ahead, "*nat\n", "*nat\n:CNI-HOOK - [0:0]\n", 1)
	if ahead == save {
		t.Fatal("the fixture has no nat PREROUTING jump to put a rule ahead of")
	}
	p := packet("10.244.1.20:40000", "10.96.0.10:80", explain.FromPod)
	rep := explainPacket(t, liveOf(t, snap, ahead), p)
	o := onlyOutcome(t, rep)
	if o.Verdict != explain.Unexplained || rep.Unexplained != "cannot explain past this rule: "+foreign {
		t.Fatalf("want the walk to stop at the foreign rule:\n%s", rep.Text())
	}
	checkGolden(t, "explain-foreign-rule", rep, false)

	nat := strings.Index(save, "*nat\n")
	end := nat + strings.Index(save[nat:], "COMMIT\n")
	elsewhere := save[:nat] + "*nat\n:CNI-HOOK - [0:0]\n:CNI-OTHER - [0:0]\n" + save[nat+len("*nat\n"):end] +
		fmt.Sprintf("-A CNI-OTHER %s\n", strings.TrimPrefix(foreign, "-A PREROUTING ")) + save[end:]
	rep = explainPacket(t, liveOf(t, snap, elsewhere), p)
	if rep.Unexplained != "" || len(rep.Outcomes) != 5 {
		t.Fatalf("a foreign rule off the packet's path must not matter:\n%s", rep.Text())
	}
}

// TestExplainConntrackPinned: a live entry of this client to the ClusterIP whose reply comes from an
// endpoint that is gone pins the flow there.
func TestExplainConntrackPinned(t *testing.T) {
	live := liveTrace(t)
	live.Conntrack = []explain.ConntrackEntry{
		{Protocol: "udp", OrigSrc: ap("10.244.1.20:40000"), OrigDst: ap("10.96.0.53:53"), ReplySrc: ap("10.244.9.9:53"), ReplyDst: ap("10.244.1.20:40000")},
		// Another client's entry, and one to a current endpoint, are not evidence.
		{Protocol: "udp", OrigSrc: ap("10.244.1.21:40000"), OrigDst: ap("10.96.0.53:53"), ReplySrc: ap("10.244.9.9:53"), ReplyDst: ap("10.244.1.21:40000")},
		{Protocol: "udp", OrigSrc: ap("10.244.1.20:40001"), OrigDst: ap("10.96.0.53:53"), ReplySrc: ap("10.244.2.2:53"), ReplyDst: ap("10.244.1.20:40001")},
	}
	rep := explainPacket(t, live, explain.Packet{Src: ap("10.244.1.20:40000"), Dst: ap("10.96.0.53:53"), Proto: "udp", From: explain.FromPod})
	c := causeOf(t, rep, explain.CauseConntrackPinned)
	ev := strings.Join(c.Evidence, "\n")
	if !strings.Contains(ev, "10.244.9.9:53") || strings.Contains(ev, "10.244.1.21") || strings.Count(ev, "conntrack:") != 1 {
		t.Fatalf("wrong evidence: %q", ev)
	}

	// Without the packet's source port, a UDP client's entries count (it may keep its port), but a
	// TCP client's do not: a new connection comes from a new port, and an old entry (say, a SYN
	// sent before the rules existed) pins only its own connection.
	rep = explainPacket(t, live, explain.Packet{Src: ap("10.244.1.20:0"), Dst: ap("10.96.0.53:53"), Proto: "udp", From: explain.FromPod})
	causeOf(t, rep, explain.CauseConntrackPinned)
	live.Conntrack = []explain.ConntrackEntry{
		{Protocol: "tcp", OrigSrc: ap("10.244.1.20:40000"), OrigDst: ap("10.96.0.10:80"), ReplySrc: ap("10.96.0.10:80"), ReplyDst: ap("10.244.1.20:40000")},
	}
	rep = explainPacket(t, live, packet("10.244.1.20:0", "10.96.0.10:80", explain.FromPod))
	for _, c := range rep.Causes {
		if c.Kind == explain.CauseConntrackPinned {
			t.Fatalf("a TCP entry of another connection pins nothing: %q", c.Evidence)
		}
	}
	rep = explainPacket(t, live, packet("10.244.1.20:40000", "10.96.0.10:80", explain.FromPod))
	causeOf(t, rep, explain.CauseConntrackPinned)
}

// TestExplainStaleRules: a failed last sync, and a model that changed after the last success, make
// the rules older than the model; with no model at all the report says what it could not check.
func TestExplainStaleRules(t *testing.T) {
	live := liveTrace(t)
	s := &live.Model.Syncs[0]
	s.LastAttempt = s.LastSuccess.Add(time.Minute)
	s.LastError = "iptables-restore: exit status 4"
	s.ModelChangedAt = s.LastSuccess.Add(30 * time.Second)
	rep := explainPacket(t, live, packet("10.244.1.20:40000", "10.96.0.10:80", explain.FromPod))
	c := causeOf(t, rep, explain.CauseRulesOlderThanModel)
	if ev := strings.Join(c.Evidence, "\n"); !strings.Contains(ev, "exit status 4") || !strings.Contains(ev, "changed at") {
		t.Fatalf("wrong evidence: %q", ev)
	}

	live.Model = nil
	rep = explainPacket(t, live, packet("10.244.1.20:40000", "10.96.0.40:80", explain.FromPod))
	if len(rep.Causes) != 0 || len(rep.Notes) != 1 || rep.Notes[0] != explain.NoModelNote {
		t.Fatalf("without a model: want no causes and the note:\n%s", rep.Text())
	}
	// The comments still name the service.
	o := onlyOutcome(t, rep)
	if last := o.Steps[len(o.Steps)-1]; last.Service == nil || last.Service.Name != "empty" {
		t.Fatalf("without a model the comment should still name the service:\n%s", rep.Text())
	}
}

func TestExplainAffinityNote(t *testing.T) {
	rep := explainPacket(t, liveTrace(t), packet("10.244.1.20:40000", "10.96.0.50:80", explain.FromPod))
	if len(rep.Outcomes) != 3 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "no affinity entry") {
		t.Fatalf("want three endpoints and the affinity note:\n%s", rep.Text())
	}
}

func TestExplainNotHandled(t *testing.T) {
	rep := explainPacket(t, liveTrace(t), packet("10.244.1.20:40000", "93.184.216.34:443", explain.FromPod))
	o := onlyOutcome(t, rep)
	if o.Verdict != explain.NotHandled || o.Route == nil || o.Route.Kind != "default" {
		t.Fatalf("want not handled, on the default route:\n%s", rep.Text())
	}
}

// TestExplainFromNode: a host process's packet, with no source given, leaves with the route's
// source address; to a ClusterIP it is masqueraded (it does not come from the cluster CIDR).
func TestExplainFromNode(t *testing.T) {
	rep := explainPacket(t, liveTrace(t), explain.Packet{Dst: ap("10.96.0.53:53"), Proto: "udp", From: explain.FromNode})
	if len(rep.Outcomes) != 2 {
		t.Fatalf("want dns's two endpoints:\n%s", rep.Text())
	}
	for _, o := range rep.Outcomes {
		if o.Verdict != explain.Delivered || o.Masquerade != a("10.244.1.0") || o.Steps[0].Hook != "nat/OUTPUT" {
			t.Fatalf("want delivered from nat/OUTPUT, masqueraded to flannel.1's address:\n%s", rep.Text())
		}
	}
}
