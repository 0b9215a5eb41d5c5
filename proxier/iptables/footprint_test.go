package iptables

import (
	"strings"
	"testing"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
)

// TestRenderedTotalsMatchSyncedTables holds Rendered's RulesTotal, ChainsTotal and BuiltinJumps (which
// `switchyard bench` reports) to the rules and chains a sync really leaves in the tables.
func TestRenderedTotalsMatchSyncedTables(t *testing.T) {
	fake, _, snap := syncedFixture(t, nil)
	r, err := RenderFull(snap, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	jumps := BuiltinJumps()
	for _, table := range []string{TableFilter, TableNAT, TableMangle} {
		saved, err := utiliptables.ParseSave([]byte(fake.DumpTable(table)))
		if err != nil {
			t.Fatal(err)
		}
		rules, chains := saved.Rules(), 0
		for _, c := range saved.Table(table).Chains {
			if strings.HasPrefix(c.Name, chainPrefix) {
				chains++
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
