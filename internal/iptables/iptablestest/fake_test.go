package iptablestest

import (
	"errors"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/internal/iptables"
)

// TestFakeRejectsLikeTheKernel: each input is one the real iptables-restore refuses as a whole.
func TestFakeRejectsLikeTheKernel(t *testing.T) {
	setup := "*nat\n:SY-A - [0:0]\n:SY-B - [0:0]\n-A SY-A -j SY-B\n-A SY-B -j RETURN\nCOMMIT\n"
	for name, input := range map[string]string{
		"jump to undeclared chain": "*nat\n:SY-C - [0:0]\n-A SY-C -j SY-NOPE\nCOMMIT\n",
		"rule in undeclared chain": "*nat\n-A SY-NOPE -j RETURN\nCOMMIT\n",
		"delete referenced chain":  "*nat\n:SY-B - [0:0]\n-X SY-B\nCOMMIT\n",
		"delete non-empty chain":   "*nat\n-X SY-A\nCOMMIT\n",
		"delete built-in chain":    "*nat\n-X PREROUTING\nCOMMIT\n",
		"delete missing chain":     "*nat\n-X SY-NOPE\nCOMMIT\n",
		"unknown table":            "*bogus\nCOMMIT\n",
		"missing COMMIT":           "*nat\n:SY-C - [0:0]\n",
		"unterminated quote":       "*nat\n:SY-C - [0:0]\n-A SY-C -m comment --comment \"oops -j RETURN\nCOMMIT\n",
	} {
		t.Run(name, func(t *testing.T) {
			f := NewFake()
			if err := f.Restore([]byte(setup)); err != nil {
				t.Fatal(err)
			}
			before := f.Dump()
			if err := f.Restore([]byte(input)); err == nil {
				t.Fatalf("accepted:\n%s", input)
			}
			if f.Dump() != before {
				t.Errorf("a rejected restore changed the state")
			}
		})
	}
}

// TestFakeCommitsPerTable: like iptables-restore (measured with both variants), each COMMIT is its
// own transaction; a failure in a later table leaves the earlier ones applied and stops there.
func TestFakeCommitsPerTable(t *testing.T) {
	f := NewFake()
	in := "*filter\n:SY-NEW - [0:0]\nCOMMIT\n*nat\n:SY-HALF - [0:0]\n-A SY-NOPE -j RETURN\nCOMMIT\n*mangle\n:SY-LATER - [0:0]\nCOMMIT\n"
	if err := f.Restore([]byte(in)); err == nil {
		t.Fatal("accepted a jump-less rule in an undeclared chain")
	}
	for _, c := range []struct {
		table, chain string
		want         bool
	}{{iptables.TableFilter, "SY-NEW", true}, {iptables.TableNAT, "SY-HALF", false}, {iptables.TableMangle, "SY-LATER", false}} {
		if got, _ := f.ChainExists(c.table, c.chain); got != c.want {
			t.Errorf("%s/%s exists = %v, want %v", c.table, c.chain, got, c.want)
		}
	}
	// A built-in chain declared with "-" is accepted and keeps its rules.
	if err := f.EnsureRule(iptables.Prepend, iptables.TableNAT, "PREROUTING", "-j", "RETURN"); err != nil {
		t.Fatal(err)
	}
	if err := f.Restore([]byte("*nat\n:PREROUTING - [0:0]\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}
	if got := f.Rules(iptables.TableNAT, "PREROUTING"); len(got) != 1 {
		t.Errorf("PREROUTING = %v after declaring it with -", got)
	}
}

func TestFakeNoflushSemantics(t *testing.T) {
	f := NewFake()
	if err := f.EnsureRule(iptables.Prepend, iptables.TableFilter, "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"); err != nil {
		t.Fatal(err)
	}
	in := "*nat\n:SY-A - [0:0]\n:SY-B - [0:0]\n-A SY-A -m comment --comment \"two words\" -j SY-B\n-A SY-B -j RETURN\nCOMMIT\n"
	if err := f.Restore([]byte(in)); err != nil {
		t.Fatal(err)
	}
	// Redeclaring flushes; flushing SY-A drops its reference, so SY-B may then go.
	if err := f.Restore([]byte("*nat\n:SY-A - [0:0]\n:SY-B - [0:0]\n-X SY-B\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}
	if ok, _ := f.ChainExists(iptables.TableNAT, "SY-B"); ok {
		t.Error("SY-B not deleted")
	}
	if got := f.Rules(iptables.TableNAT, "SY-A"); len(got) != 0 {
		t.Errorf("SY-A not flushed: %v", got)
	}
	// Tables the input does not mention are untouched (--noflush).
	if got := f.Rules(iptables.TableFilter, "INPUT"); len(got) != 1 {
		t.Errorf("filter INPUT = %v, want the one rule", got)
	}
	// Quoted words survive the round trip through Dump.
	if err := f.Restore([]byte(in)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(f.Dump(), `-A SY-A -m comment --comment "two words" -j SY-B`) {
		t.Errorf("dump lost the quoting:\n%s", f.Dump())
	}
}

func TestFakeEnsureAndDeleteRule(t *testing.T) {
	f := NewFake()
	rule := []string{"-m", "comment", "--comment", "x y", "-j", "SY-X"}
	if err := f.EnsureRule(iptables.Prepend, iptables.TableNAT, "PREROUTING", rule...); err == nil {
		t.Error("jump to a missing chain accepted")
	}
	if err := f.Restore([]byte("*nat\n:SY-X - [0:0]\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := f.EnsureRule(iptables.Prepend, iptables.TableNAT, "PREROUTING", rule...); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.Rules(iptables.TableNAT, "PREROUTING"); len(got) != 1 {
		t.Errorf("EnsureRule twice gave %v", got)
	}
	if err := f.DeleteRule(iptables.TableNAT, "PREROUTING", rule...); err != nil {
		t.Fatal(err)
	}
	if err := f.DeleteRule(iptables.TableNAT, "PREROUTING", rule...); err != nil {
		t.Errorf("deleting an absent rule: %v", err)
	}
	if got := f.Rules(iptables.TableNAT, "PREROUTING"); len(got) != 0 {
		t.Errorf("rule not deleted: %v", got)
	}
}

func TestFakeInjectedError(t *testing.T) {
	f := NewFake()
	boom := errors.New("boom")
	f.InjectRestoreError(boom)
	if err := f.Restore([]byte("*nat\n:SY-A - [0:0]\nCOMMIT\n")); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	if ok, _ := f.ChainExists(iptables.TableNAT, "SY-A"); ok {
		t.Error("failed restore applied")
	}
	if err := f.Restore([]byte("*nat\n:SY-A - [0:0]\nCOMMIT\n")); err != nil {
		t.Errorf("the injected error outlived one restore: %v", err)
	}
}

// TestFakeRefusesMissingIpset: with SetExists set, a rule matching a set the kernel lacks is
// refused, in a restore and in EnsureRule alike.
func TestFakeRefusesMissingIpset(t *testing.T) {
	f := NewFake()
	f.SetExists = func(name string) bool { return name == "SY-HAVE" }
	if err := f.Restore([]byte("*nat\n:SY-A - [0:0]\n-A SY-A -m set --match-set SY-HAVE dst -j RETURN\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}
	before := f.Dump()
	if err := f.Restore([]byte("*nat\n:SY-A - [0:0]\n-A SY-A -m set --match-set SY-NOPE dst -j RETURN\nCOMMIT\n")); err == nil {
		t.Error("rule matching a missing set accepted")
	}
	if err := f.EnsureRule(iptables.Append, iptables.TableNAT, "PREROUTING", "-m", "set", "--match-set", "SY-NOPE", "dst", "-j", "SY-A"); err == nil {
		t.Error("EnsureRule matching a missing set accepted")
	}
	if f.Dump() != before {
		t.Error("a refused rule changed the state")
	}
}

// TestFakeEnsureRuleAppends: Append adds a missing rule at the end, Prepend at the top, and
// neither adds a rule twice.
func TestFakeEnsureRuleAppends(t *testing.T) {
	f := NewFake()
	for _, r := range []struct {
		pos  iptables.Position
		rule string
	}{{iptables.Append, "ACCEPT"}, {iptables.Prepend, "DROP"}, {iptables.Append, "RETURN"}, {iptables.Append, "ACCEPT"}} {
		if err := f.EnsureRule(r.pos, iptables.TableFilter, "FORWARD", "-j", r.rule); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := strings.Join(f.Rules(iptables.TableFilter, "FORWARD"), ","), "-j DROP,-j ACCEPT,-j RETURN"; got != want {
		t.Errorf("FORWARD = %s, want %s", got, want)
	}
	if f.RuleCount() != 3 {
		t.Errorf("RuleCount = %d, want 3", f.RuleCount())
	}
	if got := f.UserChains(iptables.TableFilter); len(got) != 0 {
		t.Errorf("user chains %v in a fresh filter table", got)
	}
}
