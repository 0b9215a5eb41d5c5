package model

import (
	"net/netip"
	"slices"
	"testing"
)

// Endpoint fixtures: pods in 10.244.0.0/16; 10.244.1.x run on this node ("node-a", zone-a),
// 10.244.2.x on node-b (zone-b), 10.244.3.x on node-c (zone-c).

type epOpt func(*Endpoint)

func mkEP(ip, node string, opts ...epOpt) Endpoint {
	e := Endpoint{IP: netip.MustParseAddr(ip), Port: 8080, NodeName: node, Ready: true, Serving: true}
	for _, o := range opts {
		o(&e)
	}
	return e
}

// notReady: an endpoint that is neither ready nor serving.
func notReady(e *Endpoint) { e.Ready, e.Serving = false, false }

// servingTerm: terminating but still serving (the fallback set).
func servingTerm(e *Endpoint) { e.Ready, e.Serving, e.Terminating = false, true, true }

// deadTerm: terminating and no longer serving.
func deadTerm(e *Endpoint) { e.Ready, e.Serving, e.Terminating = false, false, true }

func hints(zones ...string) epOpt { return func(e *Endpoint) { e.ZoneHints = zones } }

func nodeHints(nodes ...string) epOpt { return func(e *Endpoint) { e.NodeHints = nodes } }

var thisNode = NodeInfo{Name: "node-a", Labels: map[string]string{ZoneLabel: "zone-a"}}

func clusterIPSvc(mutate ...func(*ServicePort)) *ServicePort {
	s := &ServicePort{
		Name:     ServicePortName{ServiceKey: ServiceKey{Namespace: "ns", Name: "web"}, Port: "http"},
		Protocol: TCP, Port: 80,
		ClusterIPs:     []netip.Addr{netip.MustParseAddr("10.96.0.10")},
		ExternalPolicy: PolicyCluster, InternalPolicy: PolicyCluster,
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func nodePort(s *ServicePort)    { s.NodePort = 30080 }
func eTPLocal(s *ServicePort)    { s.ExternalPolicy = PolicyLocal }
func iTPLocal(s *ServicePort)    { s.InternalPolicy = PolicyLocal }
func preferClose(s *ServicePort) { s.TrafficDistribution = TrafficDistributionPreferClose }
func preferSameNode(s *ServicePort) {
	s.TrafficDistribution = TrafficDistributionPreferSameNode
}
func ips(eps []*Endpoint) []string { return sortedIPs(eps) }

func sortedIPs(eps []*Endpoint) []string {
	if eps == nil {
		return nil
	}
	out := []string{}
	for _, e := range eps {
		out = append(out, e.IP.String())
	}
	slices.Sort(out)
	return out
}

func TestCategorize(t *testing.T) {
	cases := []struct {
		name       string
		svc        *ServicePort
		node       NodeInfo
		eps        []Endpoint
		cluster    []string // expected Cluster IPs
		local      []string // expected Local IPs
		reachable  []string
		hasAny     bool
		clusterNil bool // Cluster must be empty
		localNil   bool // Local must be empty
	}{
		{
			name: "cluster policy: every ready endpoint",
			svc:  clusterIPSvc(), node: thisNode,
			eps:       []Endpoint{mkEP("10.244.1.1", "node-a"), mkEP("10.244.2.1", "node-b"), mkEP("10.244.3.1", "node-c", notReady)},
			cluster:   []string{"10.244.1.1", "10.244.2.1"},
			reachable: []string{"10.244.1.1", "10.244.2.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "cluster policy: terminating endpoints are not used while a ready one exists",
			svc:  clusterIPSvc(), node: thisNode,
			eps:       []Endpoint{mkEP("10.244.1.1", "node-a", servingTerm), mkEP("10.244.2.1", "node-b")},
			cluster:   []string{"10.244.2.1"},
			reachable: []string{"10.244.2.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "cluster policy: no ready endpoint anywhere falls back to serving-terminating ones",
			svc:  clusterIPSvc(), node: thisNode,
			eps: []Endpoint{mkEP("10.244.1.1", "node-a", servingTerm), mkEP("10.244.2.1", "node-b", servingTerm),
				mkEP("10.244.3.1", "node-c", deadTerm), mkEP("10.244.3.2", "node-c", notReady)},
			cluster:   []string{"10.244.1.1", "10.244.2.1"},
			reachable: []string{"10.244.1.1", "10.244.2.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "cluster policy: nothing usable means reject",
			svc:  clusterIPSvc(), node: thisNode,
			eps:    []Endpoint{mkEP("10.244.1.1", "node-a", deadTerm), mkEP("10.244.2.1", "node-b", notReady)},
			hasAny: false, localNil: true,
		},
		{
			name: "no endpoints at all",
			svc:  clusterIPSvc(), node: thisNode,
			hasAny: false, localNil: true,
		},
		{
			name: "iTP=Local: only this node's ready endpoints",
			svc:  clusterIPSvc(iTPLocal), node: thisNode,
			eps:       []Endpoint{mkEP("10.244.1.1", "node-a"), mkEP("10.244.1.2", "node-a", servingTerm), mkEP("10.244.2.1", "node-b")},
			local:     []string{"10.244.1.1"},
			reachable: []string{"10.244.1.1"},
			hasAny:    true, clusterNil: true,
		},
		{
			name: "iTP=Local: local fallback to serving-terminating even though remote ready endpoints exist",
			svc:  clusterIPSvc(iTPLocal), node: thisNode,
			eps:       []Endpoint{mkEP("10.244.1.2", "node-a", servingTerm), mkEP("10.244.2.1", "node-b")},
			local:     []string{"10.244.1.2"},
			reachable: []string{"10.244.1.2"},
			hasAny:    true, clusterNil: true,
		},
		{
			name: "iTP=Local: no local endpoint but some elsewhere means drop, not reject",
			svc:  clusterIPSvc(iTPLocal), node: thisNode,
			eps:    []Endpoint{mkEP("10.244.2.1", "node-b"), mkEP("10.244.1.3", "node-a", deadTerm)},
			hasAny: true, clusterNil: true, localNil: true,
		},
		{
			name: "iTP=Local: remote serving-terminating only still counts as having endpoints",
			svc:  clusterIPSvc(iTPLocal), node: thisNode,
			eps:    []Endpoint{mkEP("10.244.2.1", "node-b", servingTerm)},
			hasAny: true, clusterNil: true, localNil: true,
		},
		{
			name: "iTP=Local: nothing usable anywhere means reject",
			svc:  clusterIPSvc(iTPLocal), node: thisNode,
			eps:    []Endpoint{mkEP("10.244.2.1", "node-b", notReady)},
			hasAny: false, clusterNil: true, localNil: true,
		},
		{
			name: "eTP=Local on a ClusterIP-only service is ignored",
			svc:  clusterIPSvc(eTPLocal), node: thisNode,
			eps:       []Endpoint{mkEP("10.244.1.1", "node-a"), mkEP("10.244.2.1", "node-b")},
			cluster:   []string{"10.244.1.1", "10.244.2.1"},
			reachable: []string{"10.244.1.1", "10.244.2.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "eTP=Local NodePort: cluster set for internal traffic, local set for external",
			svc:  clusterIPSvc(nodePort, eTPLocal), node: thisNode,
			eps:       []Endpoint{mkEP("10.244.1.1", "node-a"), mkEP("10.244.2.1", "node-b"), mkEP("10.244.1.2", "node-a", servingTerm)},
			cluster:   []string{"10.244.1.1", "10.244.2.1"},
			local:     []string{"10.244.1.1"},
			reachable: []string{"10.244.1.1", "10.244.2.1"},
			hasAny:    true,
		},
		{
			name: "eTP=Local: fallbacks are decided separately for cluster and local",
			svc:  clusterIPSvc(nodePort, eTPLocal), node: thisNode,
			eps:       []Endpoint{mkEP("10.244.1.2", "node-a", servingTerm), mkEP("10.244.2.1", "node-b")},
			cluster:   []string{"10.244.2.1"},
			local:     []string{"10.244.1.2"},
			reachable: []string{"10.244.1.2", "10.244.2.1"},
			hasAny:    true,
		},
		{
			name: "eTP=Local with no local endpoint: external traffic dropped, internal still served",
			svc:  clusterIPSvc(nodePort, eTPLocal), node: thisNode,
			eps:       []Endpoint{mkEP("10.244.2.1", "node-b")},
			cluster:   []string{"10.244.2.1"},
			reachable: []string{"10.244.2.1"},
			hasAny:    true, localNil: true,
		},
		{
			// As in kube-proxy: an externally accessible service always needs the cluster set, because
			// pod traffic to its external addresses short-circuits to the cluster path.
			name: "eTP=Local and iTP=Local on a NodePort: cluster set kept for the short circuit",
			svc:  clusterIPSvc(nodePort, eTPLocal, iTPLocal), node: thisNode,
			eps:       []Endpoint{mkEP("10.244.1.1", "node-a"), mkEP("10.244.2.1", "node-b")},
			cluster:   []string{"10.244.1.1", "10.244.2.1"},
			local:     []string{"10.244.1.1"},
			reachable: []string{"10.244.1.1", "10.244.2.1"},
			hasAny:    true,
		},
		{
			name: "iTP=Local on a ClusterIP-only service: local set only",
			svc:  clusterIPSvc(iTPLocal), node: thisNode,
			eps:       []Endpoint{mkEP("10.244.1.1", "node-a"), mkEP("10.244.2.1", "node-b")},
			local:     []string{"10.244.1.1"},
			reachable: []string{"10.244.1.1"},
			hasAny:    true, clusterNil: true,
		},
		{
			name: "iTP=Local with eTP=Cluster NodePort: both sets",
			svc:  clusterIPSvc(nodePort, iTPLocal), node: thisNode,
			eps:       []Endpoint{mkEP("10.244.1.1", "node-a"), mkEP("10.244.2.1", "node-b")},
			cluster:   []string{"10.244.1.1", "10.244.2.1"},
			local:     []string{"10.244.1.1"},
			reachable: []string{"10.244.1.1", "10.244.2.1"},
			hasAny:    true,
		},
		{
			name: "a node without a name has no local endpoints, even ones without a node name",
			svc:  clusterIPSvc(iTPLocal), node: NodeInfo{},
			eps:    []Endpoint{mkEP("10.244.9.1", ""), mkEP("10.244.2.1", "node-b")},
			hasAny: true, clusterNil: true, localNil: true,
		},
		{
			name: "topology: PreferClose narrows to this zone's hints",
			svc:  clusterIPSvc(preferClose), node: thisNode,
			eps: []Endpoint{mkEP("10.244.1.1", "node-a", hints("zone-a")), mkEP("10.244.2.1", "node-b", hints("zone-b")),
				mkEP("10.244.3.1", "node-c", hints("zone-a", "zone-c"))},
			cluster:   []string{"10.244.1.1", "10.244.3.1"},
			reachable: []string{"10.244.1.1", "10.244.3.1"},
			hasAny:    true, localNil: true,
		},
		{
			// kube-proxy v1.37 reads hints alone: the EndpointSlice controller writes them only for a
			// service that asks (trafficDistribution or the topology-mode annotation), so a service
			// without either still follows whatever hints its slices carry.
			name: "topology: hints are used whatever trafficDistribution says",
			svc:  clusterIPSvc(), node: thisNode,
			eps:       []Endpoint{mkEP("10.244.1.1", "node-a", hints("zone-a")), mkEP("10.244.2.1", "node-b", hints("zone-b"))},
			cluster:   []string{"10.244.1.1"},
			reachable: []string{"10.244.1.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "topology: one ready endpoint without hints disables them",
			svc:  clusterIPSvc(preferClose), node: thisNode,
			eps:       []Endpoint{mkEP("10.244.1.1", "node-a", hints("zone-a")), mkEP("10.244.2.1", "node-b")},
			cluster:   []string{"10.244.1.1", "10.244.2.1"},
			reachable: []string{"10.244.1.1", "10.244.2.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "topology: an unhinted endpoint that is not ready does not matter",
			svc:  clusterIPSvc(preferClose), node: thisNode,
			eps: []Endpoint{mkEP("10.244.1.1", "node-a", hints("zone-a")), mkEP("10.244.2.1", "node-b", hints("zone-b")),
				mkEP("10.244.3.1", "node-c", notReady)},
			cluster:   []string{"10.244.1.1"},
			reachable: []string{"10.244.1.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "topology: no hint for this zone disables them",
			svc:  clusterIPSvc(preferClose), node: thisNode,
			eps:       []Endpoint{mkEP("10.244.2.1", "node-b", hints("zone-b")), mkEP("10.244.3.1", "node-c", hints("zone-c"))},
			cluster:   []string{"10.244.2.1", "10.244.3.1"},
			reachable: []string{"10.244.2.1", "10.244.3.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "topology: a node without a zone label ignores hints",
			svc:  clusterIPSvc(preferClose), node: NodeInfo{Name: "node-a"},
			eps:       []Endpoint{mkEP("10.244.1.1", "node-a", hints("zone-a")), mkEP("10.244.2.1", "node-b", hints("zone-b"))},
			cluster:   []string{"10.244.1.1", "10.244.2.1"},
			reachable: []string{"10.244.1.1", "10.244.2.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "topology: the terminating fallback ignores hints",
			svc:  clusterIPSvc(preferClose), node: thisNode,
			eps: []Endpoint{mkEP("10.244.1.1", "node-a", servingTerm, hints("zone-a")),
				mkEP("10.244.2.1", "node-b", servingTerm, hints("zone-b"))},
			cluster:   []string{"10.244.1.1", "10.244.2.1"},
			reachable: []string{"10.244.1.1", "10.244.2.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "topology with eTP=Local: a local endpoint hinted elsewhere is local-only reachable",
			svc:  clusterIPSvc(nodePort, eTPLocal, preferClose), node: thisNode,
			eps: []Endpoint{mkEP("10.244.1.1", "node-a", hints("zone-b")), mkEP("10.244.2.1", "node-b", hints("zone-a")),
				mkEP("10.244.3.1", "node-c", hints("zone-c"))},
			cluster:   []string{"10.244.2.1"},
			local:     []string{"10.244.1.1"},
			reachable: []string{"10.244.1.1", "10.244.2.1"},
			hasAny:    true,
		},
		{
			name: "topology: an endpoint hinted for several zones serves each of them",
			svc:  clusterIPSvc(), node: thisNode,
			eps: []Endpoint{mkEP("10.244.2.1", "node-b", hints("zone-b", "zone-a")),
				mkEP("10.244.3.1", "node-c", hints("zone-c"))},
			cluster:   []string{"10.244.2.1"},
			reachable: []string{"10.244.2.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "topology: only unready endpoints hinted for this zone leaves hints unused",
			svc:  clusterIPSvc(preferClose), node: thisNode,
			eps: []Endpoint{mkEP("10.244.1.1", "node-a", notReady, hints("zone-a")),
				mkEP("10.244.2.1", "node-b", hints("zone-b")), mkEP("10.244.3.1", "node-c", hints("zone-c"))},
			cluster:   []string{"10.244.2.1", "10.244.3.1"},
			reachable: []string{"10.244.2.1", "10.244.3.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "topology with iTP=Local: hints do not touch the local set",
			svc:  clusterIPSvc(iTPLocal, preferClose), node: thisNode,
			eps: []Endpoint{mkEP("10.244.1.1", "node-a", hints("zone-b")), mkEP("10.244.2.1", "node-b", hints("zone-a")),
				mkEP("10.244.1.2", "node-a", nodeHints("node-b"), hints("zone-b"))},
			local:     []string{"10.244.1.1", "10.244.1.2"},
			reachable: []string{"10.244.1.1", "10.244.1.2"},
			hasAny:    true, clusterNil: true,
		},
		{
			name: "PreferSameNode: node hints narrow to the endpoints hinted for this node",
			svc:  clusterIPSvc(preferSameNode), node: thisNode,
			eps: []Endpoint{mkEP("10.244.1.1", "node-a", nodeHints("node-a"), hints("zone-a")),
				mkEP("10.244.1.2", "node-d", nodeHints("node-d"), hints("zone-a")),
				mkEP("10.244.2.1", "node-b", nodeHints("node-b"), hints("zone-b"))},
			cluster:   []string{"10.244.1.1"},
			reachable: []string{"10.244.1.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "PreferSameNode: node hints without zone hints",
			svc:  clusterIPSvc(preferSameNode), node: thisNode,
			eps:       []Endpoint{mkEP("10.244.1.1", "node-a", nodeHints("node-a")), mkEP("10.244.2.1", "node-b", nodeHints("node-b"))},
			cluster:   []string{"10.244.1.1"},
			reachable: []string{"10.244.1.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "PreferSameNode: no endpoint for this node falls back to zone hints",
			svc:  clusterIPSvc(preferSameNode), node: thisNode,
			eps: []Endpoint{mkEP("10.244.1.2", "node-d", nodeHints("node-d"), hints("zone-a")),
				mkEP("10.244.2.1", "node-b", nodeHints("node-b"), hints("zone-b"))},
			cluster:   []string{"10.244.1.2"},
			reachable: []string{"10.244.1.2"},
			hasAny:    true, localNil: true,
		},
		{
			name: "PreferSameNode: a ready endpoint without a node hint falls back to zone hints",
			svc:  clusterIPSvc(preferSameNode), node: thisNode,
			eps: []Endpoint{mkEP("10.244.1.1", "node-a", nodeHints("node-a"), hints("zone-a")),
				mkEP("10.244.1.2", "node-d", hints("zone-a")),
				mkEP("10.244.2.1", "node-b", nodeHints("node-b"), hints("zone-b"))},
			cluster:   []string{"10.244.1.1", "10.244.1.2"},
			reachable: []string{"10.244.1.1", "10.244.1.2"},
			hasAny:    true, localNil: true,
		},
		{
			name: "PreferSameNode: no hint for this node or zone falls back to cluster-wide",
			svc:  clusterIPSvc(preferSameNode), node: thisNode,
			eps: []Endpoint{mkEP("10.244.2.1", "node-b", nodeHints("node-b"), hints("zone-b")),
				mkEP("10.244.3.1", "node-c", nodeHints("node-c"), hints("zone-c"))},
			cluster:   []string{"10.244.2.1", "10.244.3.1"},
			reachable: []string{"10.244.2.1", "10.244.3.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "PreferSameNode: missing node and zone hints fall back to cluster-wide",
			svc:  clusterIPSvc(preferSameNode), node: thisNode,
			eps: []Endpoint{mkEP("10.244.1.1", "node-a", nodeHints("node-a"), hints("zone-a")),
				mkEP("10.244.2.1", "node-b")},
			cluster:   []string{"10.244.1.1", "10.244.2.1"},
			reachable: []string{"10.244.1.1", "10.244.2.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "PreferSameNode: an unhinted endpoint that is not ready does not matter",
			svc:  clusterIPSvc(preferSameNode), node: thisNode,
			eps: []Endpoint{mkEP("10.244.1.1", "node-a", nodeHints("node-a")), mkEP("10.244.2.1", "node-b", nodeHints("node-b")),
				mkEP("10.244.3.1", "node-c", notReady), mkEP("10.244.3.2", "node-c", servingTerm)},
			cluster:   []string{"10.244.1.1"},
			reachable: []string{"10.244.1.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "PreferSameNode: a node hint for this node on an unready endpoint does not count",
			svc:  clusterIPSvc(preferSameNode), node: thisNode,
			eps: []Endpoint{mkEP("10.244.1.1", "node-a", notReady, nodeHints("node-a")),
				mkEP("10.244.2.1", "node-b", nodeHints("node-b")), mkEP("10.244.3.1", "node-c", nodeHints("node-c"))},
			cluster:   []string{"10.244.2.1", "10.244.3.1"},
			reachable: []string{"10.244.2.1", "10.244.3.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "PreferSameNode: the terminating fallback ignores node hints",
			svc:  clusterIPSvc(preferSameNode), node: thisNode,
			eps: []Endpoint{mkEP("10.244.1.1", "node-a", servingTerm, nodeHints("node-a")),
				mkEP("10.244.2.1", "node-b", servingTerm, nodeHints("node-b"))},
			cluster:   []string{"10.244.1.1", "10.244.2.1"},
			reachable: []string{"10.244.1.1", "10.244.2.1"},
			hasAny:    true, localNil: true,
		},
		{
			name: "PreferSameNode with eTP=Local: a local endpoint hinted for another node stays local-reachable",
			svc:  clusterIPSvc(nodePort, eTPLocal, preferSameNode), node: thisNode,
			eps: []Endpoint{mkEP("10.244.1.1", "node-a", nodeHints("node-b")), mkEP("10.244.2.1", "node-b", nodeHints("node-a")),
				mkEP("10.244.3.1", "node-c", nodeHints("node-c"))},
			cluster:   []string{"10.244.2.1"},
			local:     []string{"10.244.1.1"},
			reachable: []string{"10.244.1.1", "10.244.2.1"},
			hasAny:    true,
		},
		{
			name: "PreferSameNode with eTP=Local: a local serving-terminating endpoint joins the hinted ready one",
			svc:  clusterIPSvc(nodePort, eTPLocal, preferSameNode), node: thisNode,
			eps: []Endpoint{mkEP("10.244.1.1", "node-a", servingTerm), mkEP("10.244.2.1", "node-b", nodeHints("node-a")),
				mkEP("10.244.3.1", "node-c", nodeHints("node-c"))},
			cluster:   []string{"10.244.2.1"},
			local:     []string{"10.244.1.1"},
			reachable: []string{"10.244.1.1", "10.244.2.1"},
			hasAny:    true,
		},
		{
			name: "PreferSameNode with iTP=Local and eTP=Cluster NodePort: hints narrow only the cluster set",
			svc:  clusterIPSvc(nodePort, iTPLocal, preferSameNode), node: thisNode,
			eps: []Endpoint{mkEP("10.244.1.1", "node-a", nodeHints("node-a")), mkEP("10.244.1.2", "node-a", nodeHints("node-d")),
				mkEP("10.244.2.1", "node-b", nodeHints("node-b"))},
			cluster:   []string{"10.244.1.1"},
			local:     []string{"10.244.1.1", "10.244.1.2"},
			reachable: []string{"10.244.1.1", "10.244.1.2"},
			hasAny:    true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eps := slices.Clone(tc.eps)
			c := Categorize(tc.svc, eps, tc.node)
			check := func(what string, got []*Endpoint, want []string, mustBeNil bool) {
				t.Helper()
				if mustBeNil {
					if len(got) != 0 {
						t.Errorf("%s = %v, want none", what, ips(got))
					}
					return
				}
				if g := ips(got); !slices.Equal(g, want) && !(len(g) == 0 && len(want) == 0) {
					t.Errorf("%s = %v, want %v", what, g, want)
				}
			}
			check("Cluster", c.Cluster, tc.cluster, tc.clusterNil)
			check("Local", c.Local, tc.local, tc.localNil)
			check("AllReachable", c.AllReachable, tc.reachable, false)
			if c.HasAny != tc.hasAny {
				t.Errorf("HasAny = %v, want %v", c.HasAny, tc.hasAny)
			}
			// Categorize points into the caller's slice; it must never write to it.
			if !slices.EqualFunc(eps, tc.eps, func(a, b Endpoint) bool {
				return a.IP == b.IP && a.Port == b.Port && a.Ready == b.Ready && a.NodeName == b.NodeName
			}) {
				t.Error("Categorize modified its input")
			}
		})
	}
}

// TestCategorizePolicyUnusedIsNil: a set for a policy no traffic uses is nil, so a backend can tell
// "policy unused" from "policy used, no endpoints".
func TestCategorizePolicyUnusedIsNil(t *testing.T) {
	eps := []Endpoint{mkEP("10.244.1.1", "node-a")}
	if c := Categorize(clusterIPSvc(), eps, thisNode); c.Local != nil {
		t.Errorf("Local = %v for a Cluster-only service, want nil", ips(c.Local))
	}
	if c := Categorize(clusterIPSvc(iTPLocal), eps, thisNode); c.Cluster != nil {
		t.Errorf("Cluster = %v for an iTP=Local ClusterIP service, want nil", ips(c.Cluster))
	}
}

// TestCategorizeAllReachableNoDuplicates: an endpoint in both sets appears once.
func TestCategorizeAllReachableNoDuplicates(t *testing.T) {
	eps := []Endpoint{mkEP("10.244.1.1", "node-a"), mkEP("10.244.2.1", "node-b")}
	c := Categorize(clusterIPSvc(nodePort, eTPLocal), eps, thisNode)
	if got := ips(c.AllReachable); !slices.Equal(got, []string{"10.244.1.1", "10.244.2.1"}) {
		t.Errorf("AllReachable = %v", got)
	}
}
