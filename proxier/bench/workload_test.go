package bench

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/proxier/model"
)

// mustSynthesize is Synthesize for a workload the test knows to be valid.
func mustSynthesize(t testing.TB, w Workload) *model.Snapshot {
	t.Helper()
	snap, err := Synthesize(w)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func TestSynthesizeSharesAndOrder(t *testing.T) {
	w := Workload{Services: 1000, EndpointsPerService: 3, NodePortShare: 0.2, AffinityShare: 0.1, LocalShare: 0.05}
	snap := mustSynthesize(t, w)
	if len(snap.Services) != 1000 || !snap.Full {
		t.Fatalf("got %d services, full=%v", len(snap.Services), snap.Full)
	}
	var nodePorts, affinity, local, eps int
	seenNodePort := map[int32]bool{}
	localIPs := map[netip.Addr]bool{}
	names := snap.SortedServiceNames()
	for i, name := range names {
		if name != ServiceName(i) {
			t.Fatalf("service %d sorts as %v, want %v: names must sort in index order", i, name, ServiceName(i))
		}
		svc := snap.Services[name]
		if svc.ClusterIPs[0] != ClusterIP(i) || (i > 0 && ClusterIP(i).Compare(ClusterIP(i-1)) <= 0) {
			t.Fatalf("service %d has ClusterIP %v; ClusterIPs must rise with the index", i, svc.ClusterIPs[0])
		}
		if svc.NodePort != 0 {
			nodePorts++
			if seenNodePort[svc.NodePort] {
				t.Fatalf("NodePort %d handed out twice", svc.NodePort)
			}
			seenNodePort[svc.NodePort] = true
		}
		if svc.Affinity.ClientIP {
			affinity++
		}
		if svc.ExternalPolicyLocal() || svc.InternalPolicyLocal() {
			local++
		}
		for _, ep := range snap.Endpoints[name] {
			eps++
			if local := ep.NodeName == NodeName; local != NodePodCIDR.Contains(ep.IP) || !EndpointCIDR.Contains(ep.IP) {
				t.Fatalf("endpoint %v on %s: this node's endpoints, and only they, must be in its pod CIDR", ep.IP, ep.NodeName)
			}
			if ep.NodeName == NodeName {
				localIPs[ep.IP] = true
			}
		}
	}
	// 3000 endpoints over max(20, 3000/100) = 30 nodes: 100 on this one, each with its own address.
	if w.Nodes() != 30 || len(localIPs) != 100 {
		t.Errorf("%d nodes, %d distinct local endpoint addresses; want 30 and 100", w.Nodes(), len(localIPs))
	}
	if nodePorts != 200 || affinity != 100 || local != 50 || eps != 3000 {
		t.Errorf("nodePorts=%d affinity=%d local=%d endpoints=%d; want 200, 100, 50, 3000", nodePorts, affinity, local, eps)
	}
	// Shares are spread, not bunched: the first tenth holds about a tenth of the NodePorts.
	firstTenth := 0
	for _, name := range names[:100] {
		if snap.Services[name].NodePort != 0 {
			firstTenth++
		}
	}
	if firstTenth != 20 {
		t.Errorf("first 100 services hold %d NodePort services, want 20", firstTenth)
	}
}

func TestWorkloadValidate(t *testing.T) {
	for _, tc := range []struct {
		w    Workload
		want string
	}{
		{Workload{Services: 0, EndpointsPerService: 5}, "services must be at least 1"},
		{Workload{Services: 10, EndpointsPerService: 0}, "endpoints per service"},
		{Workload{Services: 10, EndpointsPerService: 5, NodePortShare: 1.5}, "nodeport share"},
		{Workload{Services: 2_000_000, EndpointsPerService: 1}, "do not fit"},
		{Workload{Services: 1_000_000, EndpointsPerService: 5}, "endpoints do not fit"},
		{Workload{Services: 50_000, EndpointsPerService: 1, NodePortShare: 1}, "NodePort services need more ports"},
	} {
		err := tc.w.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one containing %q", tc.w, err, tc.want)
		}
		if _, err := Synthesize(tc.w); err == nil {
			t.Errorf("%+v: Synthesize accepted an invalid workload", tc.w)
		}
	}
}

func TestChangeOneEndpoint(t *testing.T) {
	snap := mustSynthesize(t, Workload{Services: 11, EndpointsPerService: 2})
	next := ChangeOneEndpoint(snap, 1)
	mid := ServiceName(5)
	if next.Full || len(next.Changed) != 1 {
		t.Fatalf("next: full=%v changed=%v; want one changed service, not full", next.Full, next.Changed)
	}
	if _, ok := next.Changed[mid.ServiceKey]; !ok {
		t.Fatalf("changed %v, want %v", next.Changed, mid.ServiceKey)
	}
	moved := 0
	for j, ep := range next.Endpoints[mid] {
		before := snap.Endpoints[mid][j]
		if ep.IP == before.IP {
			continue
		}
		moved++
		if ep.NodeName == NodeName || !EndpointCIDR.Contains(ep.IP) || NodePodCIDR.Contains(ep.IP) {
			t.Errorf("endpoint moved from %v to %v on %s: want an endpoint of another node, at a fresh address outside this node's pod CIDR", before.IP, ep.IP, ep.NodeName)
		}
	}
	if moved != 1 {
		t.Errorf("%d endpoints moved, want 1", moved)
	}
	for name, eps := range snap.Endpoints {
		if name != mid && &eps[0] != &next.Endpoints[name][0] {
			t.Errorf("%v: unchanged endpoints were copied; the backends recognise unchanged services by identity", name)
		}
	}
	var _ *model.Snapshot = next
}
