package bench

import (
	"testing"

	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/proxier/iptables"
)

// TestRenderIptablesMatchesSyncedFake holds the bench's iptables figures to what the backend's own
// Proxier leaves in the stateful fake after syncing the same workload.
func TestRenderIptablesMatchesSyncedFake(t *testing.T) {
	w := Workload{Services: 300, EndpointsPerService: 4, NodePortShare: 0.3, AffinityShare: 0.2, LocalShare: 0.1}
	snap := mustSynthesize(t, w)
	res, err := RenderIptables(snap, w)
	if err != nil {
		t.Fatal(err)
	}
	fake := iptablestest.NewFake()
	p, err := iptables.NewProxier(iptables.Config{Options: IptablesOptions(), IPTables: fake})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Sync(snap); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{iptables.TableNAT, iptables.TableFilter, iptables.TableMangle} {
		rules, chains := countDump(fake.DumpTable(table))
		if res.Rules[table] != rules || res.Chains[table] != chains {
			t.Errorf("%s: bench says %d rules and %d chains, the synced fake holds %d and %d", table, res.Rules[table], res.Chains[table], rules, chains)
		}
	}
	if res.RenderSeconds <= 0 || res.RenderAllocBytes == 0 || res.RenderAllocs == 0 {
		t.Errorf("render measured nothing: %+v", res)
	}
}

func TestRenderIPVSCounts(t *testing.T) {
	w := Workload{Services: 200, EndpointsPerService: 5, NodePortShare: 0.25}
	snap := mustSynthesize(t, w)
	res, err := RenderIPVS(snap, w)
	if err != nil {
		t.Fatal(err)
	}
	// One virtual server per ClusterIP, one more per NodePort service on the node's one address,
	// each with every endpoint as a real server.
	if res.VirtualServers != 250 || res.RealServers != 250*5 {
		t.Errorf("virtual servers %d, real servers %d; want 250 and 1250", res.VirtualServers, res.RealServers)
	}
	// The ClusterIP and NodePort sets hold one member per virtual server, and a few fixed sets
	// (the addresses on kube-ipvs0) one per ClusterIP.
	if res.IpsetEntries < 250 {
		t.Errorf("ipset entries %d, want at least one per virtual server", res.IpsetEntries)
	}
	// IPVS mode's iptables rules do not grow with the services.
	small := mustSynthesize(t, Workload{Services: 1, EndpointsPerService: 1})
	one, err := RenderIPVS(small, Workload{Services: 1, EndpointsPerService: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.RulesTotal() != one.RulesTotal() || res.RulesTotal() == 0 {
		t.Errorf("IPVS mode's iptables rules: %d at 200 services, %d at 1; want the same, non-zero", res.RulesTotal(), one.RulesTotal())
	}
}

func countDump(dump string) (rules, chains int) {
	for _, line := range splitLines(dump) {
		switch {
		case len(line) > 4 && line[:4] == ":SY-":
			chains++
		case len(line) > 3 && line[:3] == "-A ":
			rules++
		}
	}
	return rules, chains
}
