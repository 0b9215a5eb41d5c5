package ipvs

import (
	"encoding/json"
	"net/netip"
	"slices"
	"testing"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/ipvs/ipset"
	"github.com/switchyard/switchyard/proxier/model"
)

// The drift tests read what the real backend programmed into the stateful fakes, through the
// readers the command uses, and compare it with the Proxier's own ExpectedState.

// liveState reads the fakes as `switchyard explain` reads a node.
func liveState(t testing.TB, k *testKernel) LiveState {
	t.Helper()
	vss, err := LiveVirtualServers(k.ipvs)
	if err != nil {
		t.Fatal(err)
	}
	sets, err := LiveIPSets(k.ipset, model.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	var bound []netip.Addr
	for _, p := range k.links.Links[DummyDevice].Addrs {
		if p.Addr().Is4() {
			bound = append(bound, p.Addr())
		}
	}
	return LiveState{VirtualServers: vss, IPSetSave: sets, Bound: bound, IptablesSave: []byte(k.iptables.Dump())}
}

// driftOf is the check's answer for the fakes against what p expects of snap, after a round trip
// through JSON, as /debug/rules serves it.
func driftOf(t *testing.T, k *testKernel, p *Proxier, snap *model.Snapshot) Drift {
	t.Helper()
	exp, err := p.ExpectedState(snap)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(exp)
	if err != nil {
		t.Fatal(err)
	}
	var served ExpectedState
	if err := json.Unmarshal(body, &served); err != nil {
		t.Fatal(err)
	}
	d, err := FindDrift(&served, liveState(t, k))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestNoDriftAfterSync(t *testing.T) {
	k, p, snap := syncedFixture(t)
	if d := driftOf(t, k, p, snap); !d.None() || len(d.Draining) != 0 {
		t.Fatalf("right after a full sync: %+v", d)
	}
	exp, _ := p.ExpectedState(snap)
	if len(exp.VirtualServers) == 0 || len(exp.Bound) == 0 || len(exp.IPSets) != int(numSetKinds) || exp.Rules == "" {
		t.Errorf("expected state is thin: %+v", exp)
	}
	// And after an incremental sync of a change.
	web := spn("default", "web", "http")
	snap.Endpoints[web] = append(slices.Clone(snap.Endpoints[web]), ready("10.244.3.3", 8080, "node-c"))
	mustSync(t, p, incremental(snap, web.ServiceKey))
	if d := driftOf(t, k, p, snap); !d.None() {
		t.Fatalf("after an incremental sync: %+v", d)
	}
}

func TestExpectedStateBeforeSync(t *testing.T) {
	p := newTestProxier(t, newTestKernel(), testOptions())
	if _, err := p.ExpectedState(fixture()); err == nil {
		t.Error("ExpectedState before any sync: no error")
	}
}

// TestDriftFound: each kind of hand edit is reported, as what it is, and nothing else is; another
// agent's virtual server and rule are not drift.
func TestDriftFound(t *testing.T) {
	k, p, snap := syncedFixture(t)
	vs := mobyService(vsKey{Addr: ip("10.96.0.10"), Protocol: model.TCP, Port: 80}, "rr", false, 0)
	if err := k.ipvs.DelDestination(vs, mobyDest(ipp("10.244.2.3:8080"), 1)); err != nil {
		t.Fatal(err)
	}
	// A virtual server on a ClusterIP (bound to kube-ipvs0) is Switchyard's; one elsewhere is not.
	if err := k.ipvs.NewService(mobyService(vsKey{Addr: ip("10.96.0.10"), Protocol: model.TCP, Port: 8081}, "rr", false, 0)); err != nil {
		t.Fatal(err)
	}
	if err := k.ipvs.NewService(mobyService(vsKey{Addr: ip("192.0.2.200"), Protocol: model.TCP, Port: 80}, "rr", false, 0)); err != nil {
		t.Fatal(err)
	}
	if err := ipset.Del(k.ipset, setFor(model.IPv4, setClusterIP), ipset.Entry{IP: ip("10.96.0.53"), Protocol: "udp", Port: 53}); err != nil {
		t.Fatal(err)
	}
	if err := k.iptables.DeleteRule("nat", chainMarkMasq, "-j", "MARK", "--set-xmark", "0x4000/0x4000"); err != nil {
		t.Fatal(err)
	}
	if err := k.iptables.Restore([]byte("*filter\n:OTHER-AGENT - [0:0]\n-A OTHER-AGENT -j ACCEPT\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}
	d := driftOf(t, k, p, snap)
	wantMissing := []string{
		"real server 10.244.2.3:8080 weight 1 of tcp 10.96.0.10:80",
		"ipset SY-CLUSTER-IP member 10.96.0.53,udp:53",
		"nat: -A SY-IPVS-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
	}
	wantUnexpected := []string{"virtual server tcp 10.96.0.10:8081 (rr, 0 real servers)"}
	if !slices.Equal(d.Missing, wantMissing) || !slices.Equal(d.Unexpected, wantUnexpected) || len(d.Draining) != 0 {
		t.Errorf("drift:\n missing    %q\n unexpected %q\n draining   %q\nwant\n missing    %q\n unexpected %q", d.Missing, d.Unexpected, d.Draining, wantMissing, wantUnexpected)
	}

	// A full sync repairs all of it, and leaves the other agent's virtual server alone.
	snap.Full = true
	mustSync(t, p, snap)
	if d := driftOf(t, k, p, snap); !d.None() {
		t.Errorf("after the repairing sync: %+v", d)
	}
}

// TestDriftWeightsAndAddresses: a real server's weight changed by hand, an address removed from
// kube-ipvs0, a virtual server with another scheduler and a hand-added rule are each reported.
func TestDriftWeightsAndAddresses(t *testing.T) {
	k, p, snap := syncedFixture(t)
	web := mobyService(vsKey{Addr: ip("10.96.0.10"), Protocol: model.TCP, Port: 80}, "rr", false, 0)
	if err := k.ipvs.UpdateDestination(web, mobyDest(ipp("10.244.1.2:8080"), 5)); err != nil {
		t.Fatal(err)
	}
	if err := k.ipvs.UpdateService(mobyService(vsKey{Addr: ip("10.96.0.99"), Protocol: model.TCP, Port: 80}, "wrr", false, 0)); err != nil {
		t.Fatal(err)
	}
	link, _ := k.links.LinkByName(DummyDevice)
	if err := k.links.AddrDel(link, hostPrefix(ip("10.96.2.10"))); err != nil {
		t.Fatal(err)
	}
	if err := k.iptables.EnsureRule(utiliptables.Prepend, "nat", chainServices, "-s", "10.244.1.66/32", "-j", "RETURN"); err != nil {
		t.Fatal(err)
	}
	d := driftOf(t, k, p, snap)
	wantMissing := []string{
		"real server 10.244.1.2:8080 weight 1 of tcp 10.96.0.10:80",
		"virtual server tcp 10.96.0.99:80 (rr, 0 real servers)",
		"address 10.96.2.10 on kube-ipvs0",
	}
	wantUnexpected := []string{
		"real server 10.244.1.2:8080 weight 5 of tcp 10.96.0.10:80",
		"virtual server tcp 10.96.0.99:80 (wrr, 0 real servers)",
		"nat: -A SY-IPVS-SERVICES -s 10.244.1.66/32 -j RETURN",
	}
	if !slices.Equal(d.Missing, wantMissing) || !slices.Equal(d.Unexpected, wantUnexpected) {
		t.Errorf("drift:\n missing    %q\n unexpected %q", d.Missing, d.Unexpected)
	}
}

// TestDrainingIsNotDrift: a real server a sync left at weight 0 to drain is listed as draining,
// not as drift.
func TestDrainingIsNotDrift(t *testing.T) {
	k, p, snap := syncedFixture(t)
	old := ipp("10.244.2.3:8080")
	if err := k.ipvs.SetConnections(fakeVS(6, "10.96.0.10:80"), old, 1, 0); err != nil {
		t.Fatal(err)
	}
	web := spn("default", "web", "http")
	snap.Endpoints[web] = []model.Endpoint{ready("10.244.1.2", 8080, nodeName)}
	mustSync(t, p, incremental(snap, web.ServiceKey))
	d := driftOf(t, k, p, snap)
	if !d.None() || !slices.Equal(d.Draining, []string{"real server 10.244.2.3:8080 weight 0 of tcp 10.96.0.10:80"}) {
		t.Errorf("after removing an endpoint with connections: %+v", d)
	}
}
