package ipvs

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/proxier/explain"
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
	vss, err := LiveVirtualServers(k.ipvs)
	if err != nil {
		t.Fatal(err)
	}
	sets, err := LiveIPSets(k.ipset, model.IPv4)
	if err != nil {
		t.Fatal(err)
	}
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
		IptablesSave: []byte(k.iptables.Dump()), IPSetSave: sets, VirtualServers: vss,
		LocalAddrs: local, Route: fixtureRoutes(local), Model: m,
	}
}

// fixtureRoutes is `ip route get` on the fixture's node: local addresses, this node's pods on cni0,
// other nodes' pods through flannel.1, the underlay on eth0, and a default route.
func fixtureRoutes(local map[netip.Addr]string) func(netip.Addr) (explain.Route, error) {
	return func(dst netip.Addr) (explain.Route, error) {
		if _, ok := local[dst]; ok || dst.IsLoopback() {
			return explain.Route{Dst: dst, Device: "lo", Kind: "local"}, nil
		}
		if netip.MustParsePrefix("10.244.1.0/24").Contains(dst) {
			return explain.Route{Dst: dst, Device: "cni0", Kind: "bridge", Node: nodeName}, nil
		}
		for cidr, node := range nodeOfCIDR {
			if cidr.Contains(dst) {
				return explain.Route{Dst: dst, Device: "flannel.1", Gateway: cidr.Addr(), Kind: "vxlan", Node: node}, nil
			}
		}
		if netip.MustParsePrefix("192.168.50.0/24").Contains(dst) {
			return explain.Route{Dst: dst, Device: "eth0", Kind: "direct"}, nil
		}
		if dst.Is4() {
			return explain.Route{Dst: dst, Device: "eth0", Gateway: ip("192.168.50.1"), Kind: "default"}, nil
		}
		return explain.Route{}, fmt.Errorf("no route to %s", dst)
	}
}

// debugModel is the model part of /debug/model for a snapshot: the service ports with their
// addresses and endpoints, which is what explain reads of it.
func debugModel(s *model.Snapshot) *model.DebugModel {
	m := &model.DebugModel{Node: model.DebugNode{Name: s.Node.Name, PodCIDRs: s.Node.PodCIDRs}}
	for name, sp := range s.Services {
		d := model.DebugServicePort{
			Namespace: name.Namespace, Name: name.Name, Port: name.Port,
			Protocol: sp.Protocol, ServicePort: sp.Port, ClusterIPs: sp.ClusterIPs, NodePort: sp.NodePort,
			ExternalIPs: sp.ExternalIPs, LoadBalancerIPs: sp.LoadBalancerIPs, LoadBalancerSourceRanges: sp.LoadBalancerSourceRanges,
			SessionAffinity: sp.Affinity.ClientIP, ExternalTrafficPolicy: sp.ExternalPolicy, InternalTrafficPolicy: sp.InternalPolicy,
		}
		for _, ep := range s.Endpoints[name] {
			d.Endpoints = append(d.Endpoints, model.DebugEndpoint{Endpoint: ep.AddrPort(), Ready: ep.Ready, Serving: ep.Serving,
				Terminating: ep.Terminating, Local: ep.NodeName == s.Node.Name, NodeName: ep.NodeName})
		}
		m.Services = append(m.Services, d)
	}
	slices.SortFunc(m.Services, func(a, b model.DebugServicePort) int {
		return strings.Compare(a.Namespace+"/"+a.Name+":"+a.Port, b.Namespace+"/"+b.Name+":"+b.Port)
	})
	return m
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
	}{
		{"pod to ClusterIP: two real servers, half each, source kept",
			tcpFrom(explain.FromPod, "10.244.1.5:40000", "10.96.0.10:80"),
			[]want{
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.1.2:8080", node: nodeName, device: "cni0"},
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.2.3:8080", node: "node-b", device: "flannel.1"},
			}, web, "rr takes the real servers of weight > 0 in turn"},
		{"hairpin: a local endpoint reaching itself is masqueraded to the bridge's address",
			tcpFrom(explain.FromPod, "10.244.1.2:40000", "10.96.0.10:80"),
			[]want{
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.1.2:8080", node: nodeName, masquerade: "10.244.1.1", device: "cni0"},
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.2.3:8080", node: "node-b", device: "flannel.1"},
			}, web, "LOCAL_IN"},
		{"node process to ClusterIP: scheduled at LOCAL_OUT, masqueraded",
			tcpFrom(explain.FromNode, "192.168.50.10:40000", "10.96.0.10:80"),
			[]want{
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.1.2:8080", node: nodeName, masquerade: "10.244.1.1", device: "cni0"},
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.2.3:8080", node: "node-b", masquerade: flannelAddr.String(), device: "flannel.1"},
			}, web, "LOCAL_OUT"},
		{"NodePort from outside: masqueraded to the overlay's address, affinity noted",
			tcpFrom(explain.FromExternal, "198.51.100.7:40000", "192.168.50.10:30080"),
			[]want{
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.2.5:8080", node: "node-b", masquerade: flannelAddr.String(), device: "flannel.1"},
				{p: 0.5, verdict: explain.Delivered, endpoint: "10.244.3.5:8080", node: "node-c", masquerade: flannelAddr.String(), device: "flannel.1"},
			}, cart, "ClientIP affinity"},
		{"load balancer, eTP=Local, allowed source: the local endpoint only, source kept",
			tcpFrom(explain.FromExternal, "198.51.100.7:40000", "203.0.113.7:443"),
			[]want{{p: 1, verdict: explain.Delivered, endpoint: "10.244.1.9:8443", node: nodeName, device: "cni0"}},
			front, "LOCAL_IN"},
		{"external IP, eTP=Local, no local endpoint: IPVS has no real server and rejects",
			tcpFrom(explain.FromExternal, "198.51.100.7:40000", "192.0.2.50:80"),
			[]want{{p: 1, verdict: explain.Rejected, rejectWith: "icmp-port-unreachable"}},
			legacy, "no real server of weight > 0"},
		{"load balancer, source outside loadBalancerSourceRanges: dropped in filter INPUT",
			tcpFrom(explain.FromExternal, "8.8.8.8:40000", "203.0.113.7:443"),
			[]want{{p: 1, verdict: explain.Dropped}},
			front, "loadBalancerSourceRanges"},
		{"unknown port on a ClusterIP: rejected",
			tcpFrom(explain.FromPod, "10.244.1.5:40000", "10.96.0.10:8080"),
			[]want{{p: 1, verdict: explain.Rejected, rejectWith: "icmp-port-unreachable"}},
			nil, "no service on this port of a service address"},
		{"service without endpoints: rejected by IPVS",
			tcpFrom(explain.FromPod, "10.244.1.5:40000", "10.96.0.99:80"),
			[]want{{p: 1, verdict: explain.Rejected, rejectWith: "icmp-port-unreachable"}},
			&explain.ServiceRef{Namespace: "default", Name: "empty"}, "no real server"},
		{"node address on a port no service uses: not handled",
			tcpFrom(explain.FromExternal, "198.51.100.7:40000", "192.168.50.10:22"),
			[]want{{p: 1, verdict: explain.NotHandled, device: "lo"}}, nil, ""},
		{"pod to pod on another node: not handled, routed over the overlay",
			tcpFrom(explain.FromPod, "10.244.1.5:40000", "10.244.2.3:8080"),
			[]want{{p: 1, verdict: explain.NotHandled, device: "flannel.1"}}, nil, ""},
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
				t.Fatalf("outcomes:\n got %+v\nwant %+v\n%s", got, c.want, dumpReport(rep))
			}
			if c.note == "" {
				return
			}
			st, ok := deciding(rep.Outcomes[0], c.note)
			if !ok {
				t.Fatalf("no step notes %q\n%s", c.note, dumpReport(rep))
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
		t.Fatalf("outcomes:\n%s\nwant %+v", dumpReport(rep), want)
	}
	if st, ok := deciding(rep.Outcomes[0], "weight 1"); !ok || !strings.Contains(st.Rule, "10.244.2.3:8080 weight 0") {
		t.Errorf("the IPVS step should show the weight-0 real server:\n%s", dumpReport(rep))
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
		t.Fatalf("outcomes:\n%s", dumpReport(rep))
	}
	for _, st := range rep.Outcomes[0].Steps {
		if st.Service != nil {
			t.Errorf("step %q names service %v without a model", st.Rule, st.Service)
		}
	}
}

// deciding returns the last step of o whose note holds s.
func deciding(o explain.Outcome, s string) (explain.Step, bool) {
	for i := len(o.Steps) - 1; i >= 0; i-- {
		if strings.Contains(o.Steps[i].Note, s) {
			return o.Steps[i], true
		}
	}
	return explain.Step{}, false
}

func dumpReport(r *explain.Report) string {
	var b strings.Builder
	for _, o := range r.Outcomes {
		fmt.Fprintf(&b, "p=%.4g %s endpoint=%s node=%s masq=%s reject=%s route=%+v\n", o.Probability, o.Verdict, o.Endpoint, o.EndpointNode, o.Masquerade, o.RejectWith, o.Route)
		for _, s := range o.Steps {
			fmt.Fprintf(&b, "  [%s] %s %s svc=%v: %s\n", s.Hook, s.Chain, s.Rule, s.Service, s.Note)
		}
	}
	return b.String()
}
