package iptables

import (
	"slices"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/proxier/model"
)

// syncedFake is a fake kernel after a full sync of snap, with the Proxier that synced it.
func syncedFake(t *testing.T, snap *model.Snapshot) (*iptablestest.Fake, *Proxier) {
	t.Helper()
	fake := iptablestest.NewFake()
	p, err := NewProxier(Config{Options: testOptions(), IPTables: fake})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Sync(snap); err != nil {
		t.Fatal(err)
	}
	return fake, p
}

func driftOf(t *testing.T, p *Proxier, snap *model.Snapshot, fake *iptablestest.Fake) Drift {
	t.Helper()
	want, err := p.ExpectedRules(snap)
	if err != nil {
		t.Fatal(err)
	}
	d, err := FindDrift(want, []byte(fake.Dump()))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestNoDriftAfterSyncs: the tables after a full sync, and after an incremental one on top, are
// exactly what ExpectedRules says, though other agents' chains and rules sit next to ours.
func TestNoDriftAfterSyncs(t *testing.T) {
	snap := fixtureSnapshot()
	fake, p := syncedFake(t, snap)
	// Another agent's chain and rule in a built-in chain are not ours to judge.
	if err := fake.Restore([]byte("*filter\n:OTHER-AGENT - [0:0]\n-A OTHER-AGENT -j ACCEPT\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}
	if err := fake.EnsureRule(0, TableFilter, "INPUT", "-j", "OTHER-AGENT"); err != nil {
		t.Fatal(err)
	}
	if d := driftOf(t, p, snap, fake); !d.None() {
		t.Fatalf("drift right after a full sync: %+v", d)
	}

	next := model.NewSnapshot()
	next.Node = snap.Node
	for n, s := range snap.Services {
		next.Services[n] = s
		next.Endpoints[n] = snap.Endpoints[n]
	}
	web := spn("default", "web", "http")
	next.Endpoints[web] = []model.Endpoint{ep("10.244.2.99", 8080, "node-b")}
	next.Changed[web.ServiceKey] = struct{}{}
	if err := p.Sync(next); err != nil {
		t.Fatal(err)
	}
	if d := driftOf(t, p, next, fake); !d.None() {
		t.Fatalf("drift after an incremental sync: %+v", d)
	}
	// And the old model is not what the tables hold any more.
	if d := driftOf(t, p, snap, fake); d.None() {
		t.Fatalf("no drift against the model before the change")
	}
}

// TestDriftFindsHandEdits: a rule deleted by hand from one of our chains is missing, one added by
// hand to one of our chains is unexpected, a jump deleted from a built-in chain is missing, and a
// chain of ours the model does not have is unexpected.
func TestDriftFindsHandEdits(t *testing.T) {
	snap := fixtureSnapshot()
	fake, p := syncedFake(t, snap)

	svc := chainsFor(spn("default", "web", "http"), model.TCP).Cluster
	rules := fake.Rules(TableNAT, svc)
	dnat := rules[len(rules)-1]
	if !strings.Contains(dnat, "DNAT") {
		t.Fatalf("last rule of %s is %q, want a DNAT", svc, dnat)
	}
	words := strings.Fields(dnat) // no quotes in a DNAT rule
	if err := fake.DeleteRule(TableNAT, svc, words...); err != nil {
		t.Fatal(err)
	}
	if err := fake.EnsureRule(0, TableNAT, chainServices, "-s", "10.244.1.66/32", "-j", "ACCEPT"); err != nil {
		t.Fatal(err)
	}
	if err := fake.DeleteRule(TableNAT, "OUTPUT", "-m", "comment", "--comment", jumpComments[chainServices], "-j", chainServices); err != nil {
		t.Fatal(err)
	}
	if err := fake.Restore([]byte("*nat\n:SY-SVC-LEFTOVER - [0:0]\n-A SY-SVC-LEFTOVER -j RETURN\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}

	d := driftOf(t, p, snap, fake)
	strs := func(ls []DriftLine) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.String())
		}
		return out
	}
	wantMissing := []string{
		`nat: -A OUTPUT -m comment --comment "switchyard service portals" -j SY-SERVICES`,
		"nat: -A " + svc + " " + dnat,
	}
	wantUnexpected := []string{
		"nat: -A SY-SERVICES -s 10.244.1.66/32 -j ACCEPT",
		"nat: chain SY-SVC-LEFTOVER",
		"nat: -A SY-SVC-LEFTOVER -j RETURN",
	}
	if got := strs(d.Missing); !slices.Equal(got, wantMissing) {
		t.Errorf("missing:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantMissing, "\n"))
	}
	if got := strs(d.Unexpected); !slices.Equal(got, wantUnexpected) {
		t.Errorf("unexpected:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantUnexpected, "\n"))
	}
}

// BenchmarkCheck10k times what `explain --check` costs at 10k services (5 endpoints each): the
// daemon's ExpectedRules (a full render) and the command's FindDrift against the synced tables.
func BenchmarkCheck10k(b *testing.B) {
	snap := scaleSnapshot(10000, 5)
	fake := iptablestest.NewFake()
	p, err := NewProxier(Config{Options: testOptions(), IPTables: fake})
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Sync(snap); err != nil {
		b.Fatal(err)
	}
	saved := []byte(fake.Dump())
	want, err := p.ExpectedRules(snap)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("ExpectedRules", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.ExpectedRules(snap); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("FindDrift", func(b *testing.B) {
		for b.Loop() {
			if d, err := FindDrift(want, saved); err != nil || !d.None() {
				b.Fatalf("%+v %v", d, err)
			}
		}
	})
}
