package iptables

import (
	"strings"
	"testing"

	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
)

// TestRenderedTotalsMatchSyncedTables holds Rendered's RulesTotal, ChainsTotal and BuiltinJumps (which
// `switchyard bench` reports) to the rules and chains a sync really leaves in the tables.
func TestRenderedTotalsMatchSyncedTables(t *testing.T) {
	fake := iptablestest.NewFake()
	p := newTestProxier(t, fake, nil)
	snap := fixtureSnapshot()
	if err := p.Sync(snap); err != nil {
		t.Fatal(err)
	}
	r, err := RenderFull(snap, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	jumps := BuiltinJumps()
	for _, table := range []string{TableFilter, TableNAT, TableMangle} {
		rules, chains := 0, 0
		for _, line := range strings.Split(fake.DumpTable(table), "\n") {
			switch {
			case strings.HasPrefix(line, ":"+chainPrefix):
				chains++
			case strings.HasPrefix(line, "-A "):
				rules++
			}
		}
		if want := r.RulesTotal[table] + jumps[table]; rules != want {
			t.Errorf("%s: the synced table holds %d rules; RulesTotal %d + BuiltinJumps %d = %d", table, rules, r.RulesTotal[table], jumps[table], want)
		}
		if chains != r.ChainsTotal[table] {
			t.Errorf("%s: the synced table holds %d of our chains; ChainsTotal says %d", table, chains, r.ChainsTotal[table])
		}
	}
	if r.ChainsTotal[TableNAT] < len(snap.Services) {
		t.Errorf("ChainsTotal[nat] = %d for %d service ports: not counting service chains?", r.ChainsTotal[TableNAT], len(snap.Services))
	}
}
