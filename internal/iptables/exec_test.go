package iptables_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/model"
)

// TestExecMatchesFake runs the same calls against Exec in a throwaway namespace (both variants) and
// against the Fake, and checks that they answer alike and end in the same tables.
func TestExecMatchesFake(t *testing.T) {
	netnstest.Require(t)
	iptablestest.EachVariant(t, model.IPv4, "ipt", func(t *testing.T, v iptables.Variant, _ *netnstest.NS, real *iptables.Exec) {
		if !real.HasRandomFully() {
			t.Errorf("iptables-%s: no --random-fully", v)
		}
		fake := iptablestest.NewFake()
		for _, ipt := range []iptables.Interface{real, fake} {
			exercise(t, ipt)
		}
		for _, table := range []string{iptables.TableNAT, iptables.TableFilter} {
			want, err := fake.Save(table)
			if err != nil {
				t.Fatal(err)
			}
			got, err := real.Save(table)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := ours(t, got), ours(t, want); g != w {
				t.Errorf("%s: kernel\n%s\nfake\n%s", table, g, w)
			}
		}
	})
}

// exercise makes the calls every user of the seam makes, checking the answers on the way.
func exercise(t *testing.T, ipt iptables.Interface) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%T: %v", ipt, err)
		}
	}
	must(ipt.Restore([]byte("*nat\n:SY-A - [0:0]\n:SY-B - [0:0]\n-A SY-A -m comment --comment \"two words\" -j SY-B\n-A SY-B -j RETURN\nCOMMIT\n" +
		"*filter\n:SY-F - [0:0]\n-A SY-F -j ACCEPT\nCOMMIT\n")))
	for range 2 {
		must(ipt.EnsureRule(iptables.Append, iptables.TableNAT, "POSTROUTING", "-j", "SY-A"))
		must(ipt.EnsureRule(iptables.Prepend, iptables.TableNAT, "POSTROUTING", "-m", "comment", "--comment", "first one", "-j", "SY-B"))
		must(ipt.EnsureRule(iptables.Append, iptables.TableFilter, "FORWARD", "-j", "SY-F"))
	}
	if ok, err := ipt.ChainExists(iptables.TableNAT, "SY-A"); !ok || err != nil {
		t.Errorf("%T: ChainExists(SY-A) = %v, %v", ipt, ok, err)
	}
	if ok, err := ipt.ChainExists(iptables.TableNAT, "SY-NOPE"); ok || err != nil {
		t.Errorf("%T: ChainExists(SY-NOPE) = %v, %v", ipt, ok, err)
	}
	chains, err := ipt.ListChains(iptables.TableNAT)
	must(err)
	if !slices.Equal(chains[:4], iptables.BuiltinChains(iptables.TableNAT)) || !slices.Equal(slices.Sorted(slices.Values(chains[4:])), []string{"SY-A", "SY-B"}) {
		t.Errorf("%T: ListChains(nat) = %v", ipt, chains)
	}
	// Deleting an absent rule, or one naming a missing chain, is no error.
	must(ipt.DeleteRule(iptables.TableFilter, "FORWARD", "-j", "ACCEPT"))
	must(ipt.DeleteRule(iptables.TableFilter, "FORWARD", "-j", "SY-NOPE"))
	must(ipt.DeleteRule(iptables.TableFilter, "FORWARD", "-j", "SY-F"))
	// A restore the kernel refuses changes nothing.
	before, err := ipt.Save(iptables.TableNAT)
	must(err)
	if err := ipt.Restore([]byte("*nat\n:SY-A - [0:0]\n-A SY-A -j SY-NOPE\nCOMMIT\n")); err == nil {
		t.Errorf("%T: a jump to a missing chain was accepted", ipt)
	}
	after, err := ipt.Save(iptables.TableNAT)
	must(err)
	if ours(t, after) != ours(t, before) {
		t.Errorf("%T: a refused restore changed nat", ipt)
	}
}

// ours prints the chains of a saved table that Switchyard touches here: its own and the built-in
// ones it adds jumps to.
func ours(t *testing.T, save []byte) string {
	t.Helper()
	d, err := iptables.ParseSave(save)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, tbl := range d.Tables {
		for _, c := range tbl.Chains {
			if strings.HasPrefix(c.Name, "SY-") || c.Name == "POSTROUTING" || c.Name == "FORWARD" {
				b.WriteString(c.Name + " " + c.Policy + "\n" + c.RuleLines())
			}
		}
	}
	return b.String()
}
