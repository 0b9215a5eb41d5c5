package iptables

import (
	"fmt"
	"math/rand"
	"net/netip"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/proxier/model"

	"github.com/switchyard/switchyard/internal/golden"
	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
)

// cloneSnapshot copies the maps so a test can mutate the next snapshot without touching the one
// already handed to a renderer (the model's values are immutable, maps are not).
func cloneSnapshot(s *model.Snapshot) *model.Snapshot {
	out := model.NewSnapshot()
	out.Node = s.Node
	for k, v := range s.Services {
		out.Services[k] = v
	}
	for k, v := range s.Endpoints {
		out.Endpoints[k] = v
	}
	return out
}

// applyFull renders snap from scratch into a fresh fake and returns the fake's dump.
func applyFull(t *testing.T, snap *model.Snapshot, opts Options) string {
	t.Helper()
	r, err := RenderFull(snap, opts)
	if err != nil {
		t.Fatal(err)
	}
	f := iptablestest.NewFake()
	if err := f.Restore(r.Restore); err != nil {
		t.Fatalf("full render rejected: %v", err)
	}
	return f.Dump()
}

// renderSeq renders snapshots one after another for the kernel the previous renders left, as a
// Proxier whose restores all succeed does.
type renderSeq struct {
	r *Renderer
	k *kernelState
}

func newRenderSeq(tb testing.TB, opts Options) *renderSeq {
	tb.Helper()
	r, err := NewRenderer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	return &renderSeq{r, newKernelState()}
}

// render renders snap and records the result as applied.
func (s *renderSeq) render(snap *model.Snapshot, full bool) *Rendered {
	out := s.r.render(snap, full, s.k, 0)
	s.k.applied(out)
	return out
}

// applyTo renders snap and applies the result to fake.
func (s *renderSeq) applyTo(t *testing.T, fake *iptablestest.Fake, snap *model.Snapshot, full bool) *Rendered {
	t.Helper()
	out := s.render(snap, full)
	if err := fake.Restore(out.Restore); err != nil {
		t.Fatalf("restore rejected: %v\n%s", err, out.Restore)
	}
	return out
}

// mutate changes one random service of s in one of the ways a cluster does, and records it in
// s.Changed.
func mutate(rng *rand.Rand, s *model.Snapshot, step int) {
	names := s.SortedServiceNames()
	pick := func() model.ServicePortName { return names[rng.Intn(len(names))] }
	switch op := rng.Intn(8); {
	case op == 0 || len(names) == 0: // add a service
		name := spn("mut", fmt.Sprintf("svc%d", step), "")
		svc := &model.ServicePort{Name: name, Protocol: model.UDP, Port: 53, ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, 200, byte(step)})},
			NodePort: int32(31000 + step), ExternalPolicy: model.PolicyLocal, InternalPolicy: model.PolicyCluster}
		addService(s, svc, ep(fmt.Sprintf("10.244.1.%d", 100+step%100), 53, testNode))
	case op == 1: // delete a service (all its ports)
		key := pick().ServiceKey
		for _, n := range s.PortsOf(key) {
			delete(s.Services, n)
			delete(s.Endpoints, n)
		}
		s.Changed[key] = struct{}{}
	case op <= 4: // replace one endpoint
		n := pick()
		eps := append([]model.Endpoint(nil), s.Endpoints[n]...)
		node := "node-b"
		if rng.Intn(2) == 0 {
			node = testNode
		}
		nep := ep(fmt.Sprintf("10.244.%d.%d", 1+rng.Intn(3), 2+rng.Intn(250)), 8080, node)
		if len(eps) > 0 {
			eps[rng.Intn(len(eps))] = nep
		} else {
			eps = append(eps, nep)
		}
		s.Endpoints[n] = eps
		s.Changed[n.ServiceKey] = struct{}{}
	case op == 5: // drop all endpoints
		n := pick()
		delete(s.Endpoints, n)
		s.Changed[n.ServiceKey] = struct{}{}
	case op == 6: // flip the internal traffic policy
		n := pick()
		svc := *s.Services[n]
		if svc.InternalPolicy == model.PolicyLocal {
			svc.InternalPolicy = model.PolicyCluster
		} else {
			svc.InternalPolicy = model.PolicyLocal
		}
		s.Services[n] = &svc
		s.Changed[n.ServiceKey] = struct{}{}
	default: // toggle affinity
		n := pick()
		svc := *s.Services[n]
		svc.Affinity = model.SessionAffinity{ClientIP: !svc.Affinity.ClientIP, TimeoutSeconds: 60}
		s.Services[n] = &svc
		s.Changed[n.ServiceKey] = struct{}{}
	}
}

// TestIncrementalEqualsFull applies a long run of incremental renders to one fake and checks after
// every step that it holds exactly what a full render of the same snapshot produces.
func TestIncrementalEqualsFull(t *testing.T) {
	opts := testOptions()
	seq := newRenderSeq(t, opts)
	fake := iptablestest.NewFake()
	snap := fixtureSnapshot()
	seq.applyTo(t, fake, snap, true)
	rng := rand.New(rand.NewSource(1))
	for step := 0; step < 150; step++ {
		next := cloneSnapshot(snap)
		for i := 0; i < 1+rng.Intn(3); i++ {
			mutate(rng, next, step)
		}
		out := seq.render(next, false)
		if out.Full {
			t.Fatalf("step %d: render went full without being asked", step)
		}
		if !out.Empty {
			if err := fake.Restore(out.Restore); err != nil {
				t.Fatalf("step %d: incremental restore rejected: %v\n%s", step, err, out.Restore)
			}
		}
		want := applyFull(t, next, opts)
		if got := fake.Dump(); got != want {
			t.Fatalf("step %d: incremental state differs from a full render:\n%s", step, golden.LineDiff(want, got))
		}
		snap = next
	}
}

// TestEndpointChangeWritesOneChain: the common case, one endpoint replaced, rewrites that service's
// chain and nothing shared.
func TestEndpointChangeWritesOneChain(t *testing.T) {
	seq := newRenderSeq(t, testOptions())
	snap := scaleSnapshot(50, 5)
	seq.render(snap, true)
	next := cloneSnapshot(snap)
	n := next.SortedServiceNames()[7]
	eps := append([]model.Endpoint(nil), next.Endpoints[n]...)
	eps[0] = ep("10.250.0.1", 8080, "node-b")
	next.Endpoints[n] = eps
	next.Changed[n.ServiceKey] = struct{}{}
	out := seq.render(next, false)
	text := string(out.Restore)
	chain := chainsFor(n, model.TCP).Cluster
	if !strings.Contains(text, ":"+chain+" ") {
		t.Fatalf("changed service's chain %s not rewritten:\n%s", chain, text)
	}
	for _, shared := range []string{chainServices, chainNodePorts, chainForward, chainPostrouting, chainHairpin} {
		if strings.Contains(text, ":"+shared+" ") {
			t.Errorf("shared chain %s rewritten although it did not change:\n%s", shared, text)
		}
	}
	if got := out.RulesWritten[TableNAT]; got != 6 {
		t.Errorf("nat rules written = %d, want 6 (the service chain: masquerade + 5 DNAT)", got)
	}
	// Nothing changed at all: nothing to write.
	again := seq.render(cloneSnapshot(next), false)
	if !again.Empty {
		t.Errorf("a sync without changes renders a restore:\n%s", again.Restore)
	}
}

// TestStaleChainsDeleted: a removed service's chains go, and a chain the kernel lost meanwhile does
// not make the deletion fail.
func TestStaleChainsDeleted(t *testing.T) {
	seq := newRenderSeq(t, testOptions())
	snap := fixtureSnapshot()
	fake := iptablestest.NewFake()
	seq.applyTo(t, fake, snap, true)
	next := cloneSnapshot(snap)
	gone := spn("default", "lb-local", "https")
	delete(next.Services, gone)
	delete(next.Endpoints, gone)
	next.Changed[gone.ServiceKey] = struct{}{}
	names := chainsFor(gone, model.TCP)
	fake.DeleteChainForTest(TableNAT, names.Local) // someone removed one already
	out := seq.render(next, false)
	if err := fake.Restore(out.Restore); err != nil {
		t.Fatalf("restore: %v", err)
	}
	for _, c := range []string{names.Cluster, names.Local, names.External} {
		if ok, _ := fake.ChainExists(TableNAT, c); ok {
			t.Errorf("chain %s of the deleted service still exists", c)
		}
		if _, ok := out.ServiceChains[c]; ok {
			t.Errorf("chain %s still listed as existing", c)
		}
	}
}

// TestSharedChainBecomingEmptyIsFlushed: when the last REJECT leaves filter SY-SERVICES, the
// incremental restore must still flush the chain, although it writes no rule into it.
func TestSharedChainBecomingEmptyIsFlushed(t *testing.T) {
	snap := model.NewSnapshot()
	snap.Node = testNodeInfo()
	name := spn("default", "lonely", "")
	addService(snap, &model.ServicePort{Name: name, Port: 80, ClusterIPs: []netip.Addr{mustAddr("10.96.0.99")}})
	seq := newRenderSeq(t, testOptions())
	fake := iptablestest.NewFake()
	seq.applyTo(t, fake, snap, true)
	if len(fake.Rules(TableFilter, chainServices)) != 1 {
		t.Fatalf("expected one REJECT in filter %s, got %v", chainServices, fake.Rules(TableFilter, chainServices))
	}
	next := cloneSnapshot(snap)
	next.Endpoints[name] = []model.Endpoint{ep("10.244.2.1", 80, "node-b")}
	next.Changed[name.ServiceKey] = struct{}{}
	out := seq.render(next, false)
	if out.Empty {
		t.Fatal("render claims nothing changed")
	}
	if err := fake.Restore(out.Restore); err != nil {
		t.Fatal(err)
	}
	if got := fake.Rules(TableFilter, chainServices); len(got) != 0 {
		t.Errorf("filter %s still holds %v", chainServices, got)
	}
}

// TestRenderStaged: new chains go to batches of about the requested size, the final restore leaves
// them out, and applying the batches then the final restore gives exactly a one-shot full render.
func TestRenderStaged(t *testing.T) {
	snap := fixtureSnapshot()
	r, _ := NewRenderer(testOptions())
	out := r.render(snap, true, newKernelState(), 4)
	if len(out.Staged) < 2 {
		t.Fatalf("expected several staged batches, got %d", len(out.Staged))
	}
	fake := iptablestest.NewFake()
	for i, st := range out.Staged {
		if len(st.Chains) < 4 && i != len(out.Staged)-1 {
			t.Errorf("batch %d has only %d chains", i, len(st.Chains))
		}
		for _, c := range st.Chains {
			if strings.Contains(string(out.Restore), ":"+c+" ") {
				t.Errorf("staged chain %s is declared again in the final restore", c)
			}
		}
		if err := fake.Restore(st.Restore); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		// Staged chains are unreferenced: nothing jumps to them yet.
		if got := fake.Rules(TableNAT, chainServices); len(got) != 0 {
			t.Fatalf("dispatch chain filled before the final restore: %v", got)
		}
	}
	if err := fake.Restore(out.Restore); err != nil {
		t.Fatal(err)
	}
	if got, want := fake.Dump(), applyFull(t, snap, testOptions()); got != want {
		t.Errorf("staged result differs from a one-shot render:\n%s", golden.LineDiff(want, got))
	}
	// Chains the kernel already holds are never staged, and below the batch size nothing is.
	r2, _ := NewRenderer(testOptions())
	if out := r2.render(snap, true, &kernelState{serviceChains: r.chains}, 4); len(out.Staged) != 0 {
		t.Errorf("existing chains were staged: %d batches", len(out.Staged))
	}
	r3, _ := NewRenderer(testOptions())
	if out := r3.render(snap, true, newKernelState(), 1000); len(out.Staged) != 0 {
		t.Errorf("staged %d batches although fewer chains than one batch are new", len(out.Staged))
	}
}

// TestDispatchShards: a service in a new /24 gets its own shard chain; adding a service to a busy
// shard rewrites that shard only; removing the last service of a shard deletes the shard.
func TestDispatchShards(t *testing.T) {
	snap := scaleSnapshot(300, 2) // ClusterIPs 10.96.0.0 - 10.96.1.43: two shards
	seq := newRenderSeq(t, testOptions())
	fake := iptablestest.NewFake()
	seq.applyTo(t, fake, snap, true)
	lone := spn("default", "lone", "")
	loneShard := shardChain(mustPrefix("10.97.3.0/24"))
	next := cloneSnapshot(snap)
	addService(next, &model.ServicePort{Name: lone, Port: 80, ClusterIPs: []netip.Addr{mustAddr("10.97.3.3")}}, ep("10.244.2.1", 80, "node-b"))
	added := spn("default", "added", "")
	addService(next, &model.ServicePort{Name: added, Port: 80, ClusterIPs: []netip.Addr{mustAddr("10.96.1.200")}}, ep("10.244.2.2", 80, "node-b"))
	out := seq.render(next, false)
	text := string(out.Restore)
	if strings.Contains(text, ":"+shardChain(mustPrefix("10.96.0.0/24"))+" ") {
		t.Errorf("untouched shard 10.96.0.0/24 rewritten")
	}
	for _, c := range []string{loneShard, shardChain(mustPrefix("10.96.1.0/24")), chainServices} {
		if !strings.Contains(text, ":"+c+" ") {
			t.Errorf("chain %s not written", c)
		}
	}
	if err := fake.Restore(out.Restore); err != nil {
		t.Fatal(err)
	}
	third := cloneSnapshot(next)
	delete(third.Services, lone)
	delete(third.Endpoints, lone)
	third.Changed[lone.ServiceKey] = struct{}{}
	out2 := seq.render(third, false)
	if err := fake.Restore(out2.Restore); err != nil {
		t.Fatal(err)
	}
	if ok, _ := fake.ChainExists(TableNAT, loneShard); ok {
		t.Errorf("empty shard %s not deleted", loneShard)
	}
	if _, ok := out2.ServiceChains[loneShard]; ok {
		t.Errorf("empty shard %s still listed", loneShard)
	}
	if got, want := fake.Dump(), applyFull(t, third, testOptions()); got != want {
		t.Errorf("state differs from a full render:\n%s", golden.LineDiff(want, got))
	}
}
