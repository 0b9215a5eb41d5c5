package iptables

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/proxier/model"
)

// hairpinSources lists the source addresses SY-HAIRPIN masquerades, from rendered restore text.
func hairpinSources(restore []byte) []string {
	var out []string
	for _, line := range strings.Split(string(restore), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[0] == "-A" && f[1] == chainHairpin && f[2] == "-s" {
			out = append(out, strings.TrimSuffix(f[3], "/32"))
		}
	}
	slices.Sort(out)
	return out
}

// TestHairpinOnlyForEndpointsThisNodeCanOwn: SY-HAIRPIN gets the endpoints on this node, and the
// endpoints with no node at addresses this node could hold (its pod CIDR, its own addresses), so it
// stays the size of one node's pods however many endpoints the cluster has.
func TestHairpinOnlyForEndpointsThisNodeCanOwn(t *testing.T) {
	snapWith := func(node model.NodeInfo) *model.Snapshot {
		s := model.NewSnapshot()
		s.Node = node
		addService(s, &model.ServicePort{Name: spn("ns", "svc", "p"), Port: 80, ClusterIPs: []netip.Addr{mustAddr("10.96.0.10")}},
			ep("10.244.1.5", 80, testNode), // on this node
			ep("10.244.2.5", 80, "node-b"), // on another
			ep("10.244.1.6", 80, ""),       // no node, inside this node's pod CIDR
			ep("10.244.2.6", 80, ""),       // no node, outside it
			ep("192.168.50.1", 80, ""),     // no node, one of this node's own addresses
			ep("203.0.113.7", 80, ""))      // no node, elsewhere (an external database, say)
		return s
	}
	for _, tc := range []struct {
		name string
		node model.NodeInfo
		want []string
	}{
		{"node with a pod CIDR", testNodeInfo(), []string{"10.244.1.5", "10.244.1.6", "192.168.50.1"}},
		// Without a pod CIDR nothing tells where an endpoint with no node lives: all of them may be local.
		{"node without a pod CIDR", model.NodeInfo{Name: testNode},
			[]string{"10.244.1.5", "10.244.1.6", "10.244.2.6", "192.168.50.1", "203.0.113.7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := RenderFull(snapWith(tc.node), testOptions())
			if err != nil {
				t.Fatal(err)
			}
			if got := hairpinSources(r.Restore); !slices.Equal(got, tc.want) {
				t.Errorf("SY-HAIRPIN sources %v, want %v", got, tc.want)
			}
		})
	}

	// The pod CIDR decides which rules exist, so a change of it alone re-renders everything.
	seq := newRenderSeq(t, testOptions())
	seq.render(snapWith(testNodeInfo()), true)
	next := snapWith(model.NodeInfo{Name: testNode, PodCIDRs: []netip.Prefix{mustPrefix("10.244.2.0/24")}})
	next.Changed = map[model.ServiceKey]struct{}{}
	out := seq.render(next, false)
	if !out.Full {
		t.Fatal("a new pod CIDR did not make the render full")
	}
	if got, want := hairpinSources(out.Restore), []string{"10.244.1.5", "10.244.2.6", "192.168.50.1"}; !slices.Equal(got, want) {
		t.Errorf("after the pod CIDR moved: SY-HAIRPIN sources %v, want %v", got, want)
	}
}

// TestIncrementalAfterVerifiedSync: the verified full sync (a restart, or the hourly resync)
// remembers the node facts like any render, so the next endpoint change stays incremental instead of
// rewriting every chain.
func TestIncrementalAfterVerifiedSync(t *testing.T) {
	fake := iptablestest.NewFake()
	p := newTestProxier(t, fake, nil)
	snap := fixtureSnapshot()
	// An endpoint with no node outside this node's pod CIDR: no hairpin rule on either path.
	addService(snap, &model.ServicePort{Name: spn("default", "external-db", "sql"), Port: 5432,
		ClusterIPs: []netip.Addr{mustAddr("10.96.0.99")}}, ep("203.0.113.7", 5432, ""))
	mustSync(t, p, snap)
	// A new process over the same tables: its first sync is the verified one, and it finds
	// nothing to change.
	p = newTestProxier(t, fake, nil)
	fake.LastRestore = nil
	mustSync(t, p, cloneSnapshot(snap))
	if fake.LastRestore != nil {
		t.Errorf("the verified sync after a restart rewrote an unchanged ruleset:\n%s", fake.LastRestore)
	}
	next := cloneSnapshot(snap)
	next.Full = false
	name := spn("default", "web", "http")
	eps := append([]model.Endpoint(nil), next.Endpoints[name]...)
	eps[0].IP = mustAddr("10.244.2.99")
	next.Endpoints[name] = eps
	next.Changed = map[model.ServiceKey]struct{}{name.ServiceKey: {}}
	fake.LastRestore = nil
	mustSync(t, p, next)
	if n := strings.Count(string(fake.LastRestore), "\n:"); n == 0 || n > 3 {
		t.Errorf("one endpoint change after a verified sync declared %d chains, want only the service's:\n%s", n, fake.LastRestore)
	}
}
