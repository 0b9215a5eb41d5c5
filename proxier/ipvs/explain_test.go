package ipvs

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/internal/golden"
	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/ipvs/ipvstest"
	"github.com/switchyard/switchyard/proxier/model"
)

// The explain tests read what the real backend programmed: a Proxier syncs the fixture into the
// stateful fakes, and the fakes' state, read through the same readers the command uses
// (LiveVirtualServers, LiveIPSets) and iptables-save text, is the live state explained.

// The fixture node's overlay: flannel.1 carries 10.244.1.0, and the other nodes' pod subnets are
// reached through it.
var (
	flannelAddr = ip("10.244.1.0")
	nodeOfCIDR  = map[netip.Prefix]string{
		netip.MustParsePrefix("10.244.2.0/24"): "node-b",
		netip.MustParsePrefix("10.244.3.0/24"): "node-c",
	}
)

// liveFromKernel takes the fakes' state as explain's live state, with the model m.
func liveFromKernel(t testing.TB, k *testKernel, m *model.DebugModel) *explain.Live {
	t.Helper()
	ls := liveState(t, k)
	local := map[netip.Addr]string{flannelAddr: "flannel.1"}
	for name, l := range k.links.Links {
		for _, p := range l.Addrs {
			if p.Addr().Is4() {
				local[p.Addr()] = name
			}
		}
	}
	return &explain.Live{
		Mode: "ipvs", Family: model.IPv4,
		IptablesSave: ls.IptablesSave, IPSetSave: ls.IPSetSave, VirtualServers: ls.VirtualServers,
		LocalAddrs: local, Route: fixtureRoutes(local), Model: m,
	}
}

// fixtureRoutes is `ip route get` on the fixture's node: local addresses, this node's pods on cni0,
// other nodes' pods through flannel.1, the underlay on eth0, and a default route.
func fixtureRoutes(local map[netip.Addr]string) func(netip.Addr) (explain.Route, error) {
	return func(dst netip.Addr) (explain.Route, error) {
		if _, ok := local[dst]; ok || dst.IsLoopback() {
			return explain.Route{Dst: dst, Device: "lo", Src: dst, Kind: "local"}, nil
		}
		if netip.MustParsePrefix("10.244.1.0/24").Contains(dst) {
			return explain.Route{Dst: dst, Device: "cni0", Src: ip("10.244.1.1"), Kind: "bridge", Node: nodeName}, nil
		}
		for cidr, node := range nodeOfCIDR {
			if cidr.Contains(dst) {
				return explain.Route{Dst: dst, Device: "flannel.1", Gateway: cidr.Addr(), Src: flannelAddr, Kind: "vxlan", Node: node}, nil
			}
		}
		if netip.MustParsePrefix("192.168.50.0/24").Contains(dst) {
			return explain.Route{Dst: dst, Device: "eth0", Src: nodeIP, Kind: "direct"}, nil
		}
		if dst.Is4() {
			return explain.Route{Dst: dst, Device: "eth0", Gateway: ip("192.168.50.1"), Src: nodeIP, Kind: "default"}, nil
		}
		return explain.Route{}, fmt.Errorf("no route to %s", dst)
	}
}

// debugModel is /debug/model's view of a snapshot.
func debugModel(s *model.Snapshot) *model.DebugModel {
	m := model.NewDebugModel(s, nil)
	return &m
}

func tcpFrom(from explain.From, src, dst string) explain.Packet {
	return explain.Packet{Src: ipp(src), Dst: ipp(dst), Proto: "tcp", From: from}
}

// want is one expected outcome: what the operator is told, not how.
type want struct {
	p          float64
	verdict    explain.Verdict
	endpoint   string // "" when not DNATed
	node       string // EndpointNode
	masquerade string // "" when not masqueraded
	rejectWith string
	device     string // the route's device, "" for no route
}

func summarize(o explain.Outcome) want {
	w := want{p: o.Probability, verdict: o.Verdict, node: o.EndpointNode, rejectWith: o.RejectWith}
	if o.Endpoint.IsValid() {
		w.endpoint = o.Endpoint.String()
	}
	if o.Masquerade.IsValid() {
		w.masquerade = o.Masquerade.String()
	}
	if o.Route != nil {
		w.device = o.Route.Device
	}
	return w
}

func TestExplain(t *testing.T) {
	k, _, snap := syncedFixture(t)
	live := liveFromKernel(t, k, debugModel(snap))
	web := &explain.ServiceRef{Namespace: "default", Name: "web", Port: "http"}
	cart := &explain.ServiceRef{Namespace: "shop", Name: "cart"}
	front := &explain.ServiceRef{Namespace: "shop", Name: "front"}
	legacy := &explain.ServiceRef{Namespace: "shop", Name: "legacy"}
	for _, c := range []struct {
		name    string
		pkt     explain.Packet
		want    []want
		service *explain.ServiceRef // of the step that decided (IPVS's, or the rule's)
		note    string              // in that step's note
		causes  []string            // the kinds of the likely causes
	}{
		{"pod to ClusterIP: two real servers, half each, source kept",
			tcpFrom(explain.FromPod, "10.244.1.5:40000", "10.96.0.10:80"),
			[]want{
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.1.2:8080", node: nodeName, device: "cni0"},
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.2.3:8080", node: "node-b", device: "flannel.1"},
			}, web, "rr takes the real servers of weight > 0 in turn", nil},
		{"hairpin: a local endpoint reaching itself is masqueraded to the bridge's address",
			tcpFrom(explain.FromPod, "10.244.1.2:40000", "10.96.0.10:80"),
			[]want{
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.1.2:8080", node: nodeName, masquerade: "10.244.1.1", device: "cni0"},
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.2.3:8080", node: "node-b", device: "flannel.1"},
			}, web, "LOCAL_IN", nil},
		{"node process to ClusterIP: scheduled at LOCAL_OUT, masqueraded",
			tcpFrom(explain.FromNode, "192.168.50.10:40000", "10.96.0.10:80"),
			[]want{
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.1.2:8080", node: nodeName, masquerade: "10.244.1.1", device: "cni0"},
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.2.3:8080", node: "node-b", masquerade: flannelAddr.String(), device: "flannel.1"},
			}, web, "LOCAL_OUT", nil},
		{"node process, no source given: the route's (the ClusterIP itself), masqueraded",
			explain.Packet{Dst: ipp("10.96.0.10:80"), From: explain.FromNode},
			[]want{
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.1.2:8080", node: nodeName, masquerade: "10.244.1.1", device: "cni0"},
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.2.3:8080", node: "node-b", masquerade: flannelAddr.String(), device: "flannel.1"},
			}, web, "LOCAL_OUT", nil},
		{"NodePort from outside: masqueraded to the overlay's address, affinity noted",
			tcpFrom(explain.FromExternal, "198.51.100.7:40000", "192.168.50.10:30080"),
			[]want{
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.2.5:8080", node: "node-b", masquerade: flannelAddr.String(), device: "flannel.1"},
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.3.5:8080", node: "node-c", masquerade: flannelAddr.String(), device: "flannel.1"},
			}, cart, "ClientIP affinity", nil},
		{"load balancer, eTP=Local, allowed source: the local endpoint only, source kept",
			tcpFrom(explain.FromExternal, "198.51.100.7:40000", "203.0.113.7:443"),
			[]want{{p: 1, verdict: explain.Delivered, endpoint: "10.244.1.9:8443", node: nodeName, device: "cni0"}},
			front, "LOCAL_IN", nil},
		{"external IP, eTP=Local, no local endpoint: IPVS has no real server and rejects",
			tcpFrom(explain.FromExternal, "198.51.100.7:40000", "192.0.2.50:80"),
			[]want{{p: 1, verdict: explain.Rejected, rejectWith: "icmp-port-unreachable"}},
			legacy, "no real server of weight > 0", []string{explain.CauseETPLocalNoLocal}},
		{"load balancer, source outside loadBalancerSourceRanges: dropped in filter INPUT",
			tcpFrom(explain.FromExternal, "8.8.8.8:40000", "203.0.113.7:443"),
			[]want{{p: 1, verdict: explain.Dropped}},
			front, "loadBalancerSourceRanges", []string{explain.CauseOutsideSourceRanges}},
		{"unknown port on a ClusterIP: rejected",
			tcpFrom(explain.FromPod, "10.244.1.5:40000", "10.96.0.10:8080"),
			[]want{{p: 1, verdict: explain.Rejected, rejectWith: "icmp-port-unreachable"}},
			nil, "no service on this port of a service address", nil},
		{"service without endpoints: rejected by IPVS",
			tcpFrom(explain.FromPod, "10.244.1.5:40000", "10.96.0.99:80"),
			[]want{{p: 1, verdict: explain.Rejected, rejectWith: "icmp-port-unreachable"}},
			&explain.ServiceRef{Namespace: "default", Name: "empty"}, "no real server", []string{explain.CauseNoReadyEndpoints}},
		{"node address on a port no service uses: not handled",
			tcpFrom(explain.FromExternal, "198.51.100.7:40000", "192.168.50.10:22"),
			[]want{{p: 1, verdict: explain.NotHandled, device: "lo"}}, nil, "", nil},
		{"pod to pod on another node: not handled, routed over the overlay",
			tcpFrom(explain.FromPod, "10.244.1.5:40000", "10.244.2.3:8080"),
			[]want{{p: 1, verdict: explain.NotHandled, device: "flannel.1"}}, nil, "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep, err := Explain(live, c.pkt)
			if err != nil {
				t.Fatal(err)
			}
			var got []want
			for _, o := range rep.Outcomes {
				got = append(got, summarize(o))
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("outcomes:\n got %+v\nwant %+v\n%s", got, c.want, rep.Text())
			}
			var causes []string
			for _, cause := range rep.Causes {
				causes = append(causes, cause.Kind)
			}
			if !slices.Equal(causes, c.causes) || rep.Unexplained != "" {
				t.Errorf("causes %v, want %v; unexplained %q\n%s", causes, c.causes, rep.Unexplained, rep.Text())
			}
			// Each cause quotes the outcome it explains, whatever the verdict (IPVS rejects where
			// iptables mode drops).
			for _, cause := range rep.Causes {
				if cause.Kind == explain.CauseETPLocalNoLocal && !slices.ContainsFunc(cause.Evidence, func(e string) bool {
					return strings.HasPrefix(e, string(explain.Rejected)+":")
				}) {
					t.Errorf("cause %s quotes no rejected outcome: %q", cause.Kind, cause.Evidence)
				}
			}
			if c.note == "" {
				return
			}
			st, ok := deciding(rep.Outcomes[0], c.note)
			if !ok {
				t.Fatalf("no step notes %q\n%s", c.note, rep.Text())
			}
			if (st.Service == nil) != (c.service == nil) || st.Service != nil && *st.Service != *c.service {
				t.Errorf("step %q: service %v, want %v", st.Rule, st.Service, c.service)
			}
		})
	}
}

// TestExplainTerminatingRealServer: a TCP endpoint that starts terminating keeps its real server at
// weight 0 while its connections drain; explain gives it no share.
func TestExplainTerminatingRealServer(t *testing.T) {
	k, p, snap := syncedFixture(t)
	vs := fakeVS(unix.IPPROTO_TCP, "10.96.0.10:80")
	if err := k.ipvs.SetConnections(vs, ipp("10.244.2.3:8080"), 2, 1); err != nil {
		t.Fatal(err)
	}
	web := spn("default", "web", "http")
	snap.Endpoints[web] = []model.Endpoint{ready("10.244.1.2", 8080, nodeName), terminating("10.244.2.3", 8080, "node-b")}
	mustSync(t, p, incremental(snap, web.ServiceKey))
	if got := destsOf(t, k, vs); got["10.244.2.3:8080"] != 0 || len(got) != 2 {
		t.Fatalf("real servers %v; want node-b's at weight 0", got)
	}
	rep, err := Explain(liveFromKernel(t, k, debugModel(snap)), tcpFrom(explain.FromPod, "10.244.1.5:40000", "10.96.0.10:80"))
	if err != nil {
		t.Fatal(err)
	}
	want := []want{{p: 1, verdict: explain.Delivered, endpoint: "10.244.1.2:8080", node: nodeName, device: "cni0"}}
	if len(rep.Outcomes) != 1 || summarize(rep.Outcomes[0]) != want[0] {
		t.Fatalf("outcomes:\n%s\nwant %+v", rep.Text(), want)
	}
	if st, ok := deciding(rep.Outcomes[0], "weight 1"); !ok || !strings.Contains(st.Rule, "10.244.2.3:8080 weight 0") {
		t.Errorf("the IPVS step should show the weight-0 real server:\n%s", rep.Text())
	}
}

// TestExplainWithoutModel: without the daemon's model the walk is the same, and steps name no
// service.
func TestExplainWithoutModel(t *testing.T) {
	k, _, _ := syncedFixture(t)
	rep, err := Explain(liveFromKernel(t, k, nil), tcpFrom(explain.FromPod, "10.244.1.5:40000", "10.96.0.10:80"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Outcomes) != 2 || rep.Outcomes[0].EndpointNode != "" {
		t.Fatalf("outcomes:\n%s", rep.Text())
	}
	for _, st := range rep.Outcomes[0].Steps {
		if st.Service != nil {
			t.Errorf("step %q names service %v without a model", st.Rule, st.Service)
		}
	}
}

// deciding returns the last step of o whose note or rule holds s.
func deciding(o explain.Outcome, s string) (explain.Step, bool) {
	for i := len(o.Steps) - 1; i >= 0; i-- {
		if strings.Contains(o.Steps[i].Note, s) || strings.Contains(o.Steps[i].Rule, s) {
			return o.Steps[i], true
		}
	}
	return explain.Step{}, false
}

// TestExplainText holds the text form of one explanation (NodePort from outside: masquerade,
// persistence, two real servers) in a golden file; -update rewrites it.
func TestExplainText(t *testing.T) {
	k, _, snap := syncedFixture(t)
	rep, err := Explain(liveFromKernel(t, k, debugModel(snap)), tcpFrom(explain.FromExternal, "198.51.100.7:40000", "192.168.50.10:30080"))
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "explain-nodeport.txt", []byte(rep.Text()))
}

// TestExplainForeignRule: another agent's rule the tracer does not understand, ahead of IPVS mode's
// jump in nat PREROUTING, stops the walk there, before IPVS; off the packet's path it changes
// nothing.
func TestExplainForeignRule(t *testing.T) {
	k, _, snap := syncedFixture(t)
	live := liveFromKernel(t, k, debugModel(snap))
	save := string(live.IptablesSave)
	jump := `-A PREROUTING -m comment --comment "switchyard ipvs service portals"`
	foreign := `-A PREROUTING -m physdev --physdev-is-in -j CNI-HOOK`
	ahead := strings.Replace(save, jump, foreign+"\n"+jump, 1)
	ahead = strings.Replace(ahead, "*nat\n", "*nat\n:CNI-HOOK - [0:0]\n", 1)
	if ahead == save {
		t.Fatalf("no nat PREROUTING jump to put a rule ahead of:\n%s", save)
	}
	pkt := tcpFrom(explain.FromPod, "10.244.1.5:40000", "10.96.0.10:80")
	live.IptablesSave = []byte(ahead)
	rep, err := Explain(live, pkt)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Outcomes) != 1 || rep.Outcomes[0].Verdict != explain.Unexplained || rep.Unexplained != "cannot explain past this rule: "+foreign {
		t.Fatalf("want the walk to stop at the foreign rule:\n%s", rep.Text())
	}

	elsewhere := strings.Replace(save, "*nat\n", "*nat\n:CNI-HOOK - [0:0]\n:CNI-OTHER - [0:0]\n-A CNI-OTHER -m physdev --physdev-is-in -j CNI-HOOK\n", 1)
	live.IptablesSave = []byte(elsewhere)
	if rep, err = Explain(live, pkt); err != nil {
		t.Fatal(err)
	}
	if rep.Unexplained != "" || len(rep.Outcomes) != 2 || rep.Outcomes[0].Verdict != explain.Delivered {
		t.Fatalf("a foreign rule off the packet's path must not matter:\n%s", rep.Text())
	}
}

// TestExplainPersistentWithoutRealServers: a persistent (ClientIP affinity) virtual server whose
// endpoints are all gone drops a new connection silently, where any other one answers ICMP.
func TestExplainPersistentWithoutRealServers(t *testing.T) {
	k, p, snap := syncedFixture(t)
	cart := spn("shop", "cart", "")
	snap.Endpoints[cart] = nil
	mustSync(t, p, incremental(snap, cart.ServiceKey))
	if got := destsOf(t, k, fakeVS(unix.IPPROTO_TCP, "192.168.50.10:30080")); len(got) != 0 {
		t.Fatalf("real servers %v; want none", got)
	}
	rep, err := Explain(liveFromKernel(t, k, debugModel(snap)), tcpFrom(explain.FromExternal, "198.51.100.7:40000", "192.168.50.10:30080"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Outcomes) != 1 || summarize(rep.Outcomes[0]) != (want{p: 1, verdict: explain.Dropped}) {
		t.Fatalf("want one silent drop:\n%s", rep.Text())
	}
	if len(rep.Notes) != 0 {
		t.Errorf("nothing was scheduled, so no persistence note: %q", rep.Notes)
	}
}

// TestSchedule holds each scheduler's shares to what the kernel's does with the same weights.
func TestSchedule(t *testing.T) {
	rs := func(ws ...int) []explain.RealServer {
		out := make([]explain.RealServer, len(ws))
		for i, w := range ws {
			out[i] = explain.RealServer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, 2, byte(i + 1)}), 8080), Weight: w}
		}
		return out
	}
	for _, c := range []struct {
		sched   string
		weights []int
		want    []float64 // per real server of weight > 0 picked, in order
		note    string
	}{
		{"rr", []int{1, 0, 3}, []float64{0.5, 0.5}, "in turn"},
		{"wrr", []int{1, 0, 3}, []float64{0.25, 0.75}, "in proportion to their weights"},
		{"wlc", []int{2, 2}, []float64{0.5, 0.5}, "live connection count"},
		{"sh", []int{1, 1, 1, 1}, []float64{0.25, 0.25, 0.25, 0.25}, "hashes the client's address"},
		{"fo", []int{1, 3, 3}, []float64{0.5, 0.5}, "highest weight"},
		{"rr", []int{0, 0}, nil, ""},
	} {
		vs := explain.VirtualServer{Scheduler: c.sched, RealServers: rs(c.weights...)}
		shares, note := schedule(&vs)
		var got []float64
		for _, sh := range shares {
			if sh.rs.Weight == 0 {
				t.Errorf("%s %v: a real server of weight 0 got a share", c.sched, c.weights)
			}
			got = append(got, sh.p)
		}
		if !slices.Equal(got, c.want) || !strings.Contains(note, c.note) {
			t.Errorf("%s %v: shares %v (%q); want %v (%q)", c.sched, c.weights, got, note, c.want, c.note)
		}
	}
}

// TestExplainIPv6: the IPv6 proxier's state (SY6- sets, ip6tables rules, IPv6 virtual servers) is
// explained like the IPv4 one.
func TestExplainIPv6(t *testing.T) {
	k := newTestKernel()
	k.links = ipvstest.NewFakeLinks(map[string][]string{"eth0": {"fd00:50::10/64"}, "cni0": {"fd00:244::1/64"}})
	o := testOptions()
	o.Family = model.IPv6
	o.NodePortAddresses = nil
	o.ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("fd00:244::/48")}
	snap := fixture()
	mustSync(t, newTestProxier(t, k, o), snap)
	vss, err := LiveVirtualServers(k.ipvs)
	if err != nil {
		t.Fatal(err)
	}
	sets, err := LiveIPSets(k.ipset, model.IPv6)
	if err != nil {
		t.Fatal(err)
	}
	local := map[netip.Addr]string{}
	for name, l := range k.links.Links {
		for _, p := range l.Addrs {
			if p.Addr().Is6() {
				local[p.Addr()] = name
			}
		}
	}
	route := func(dst netip.Addr) (explain.Route, error) {
		switch {
		case local[dst] != "":
			return explain.Route{Dst: dst, Device: "lo", Src: dst, Kind: "local"}, nil
		case netip.MustParsePrefix("fd00:244::/48").Contains(dst):
			return explain.Route{Dst: dst, Device: "cni0", Src: ip("fd00:244::1"), Kind: "bridge", Node: nodeName}, nil
		}
		return explain.Route{Dst: dst, Device: "eth0", Src: ip("fd00:50::10"), Kind: "default"}, nil
	}
	live := &explain.Live{Mode: "ipvs", Family: model.IPv6, IptablesSave: []byte(k.iptables.Dump()), IPSetSave: sets,
		VirtualServers: vss, LocalAddrs: local, Route: route, Model: debugModel(snap)}
	for _, c := range []struct {
		name string
		pkt  explain.Packet
		want want
	}{
		{"pod to the IPv6 ClusterIP", tcpFrom(explain.FromPod, "[fd00:244::5]:40000", "[fd00:96::10]:80"),
			want{p: 1, verdict: explain.Delivered, endpoint: "[fd00:244::2]:8080", node: nodeName, device: "cni0"}},
		{"unknown port on the IPv6 ClusterIP", tcpFrom(explain.FromPod, "[fd00:244::5]:40000", "[fd00:96::10]:8080"),
			want{p: 1, verdict: explain.Rejected, rejectWith: "icmp6-port-unreachable"}},
	} {
		rep, err := Explain(live, c.pkt)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(rep.Outcomes) != 1 || summarize(rep.Outcomes[0]) != c.want {
			t.Errorf("%s: want %+v\n%s", c.name, c.want, rep.Text())
		}
	}
}
