package iptables

import (
	"strings"
	"testing"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/model"
)

// chainRules maps "table/chain" to its rules, in order, from iptables-save text; only chains that
// are ours or hold a jump to ours are kept, so other agents' rules do not matter.
func chainRules(t testing.TB, save string) map[string][]string {
	t.Helper()
	saved, err := utiliptables.ParseSave([]byte(save))
	if err != nil {
		t.Fatalf("read iptables-save output: %v", err)
	}
	out := map[string][]string{}
	for _, tbl := range saved.Tables {
		for _, c := range tbl.Chains {
			key := tbl.Name + "/" + c.Name
			ours := strings.HasPrefix(c.Name, "SY-")
			if _, ok := out[key]; ours && c.Policy != "" && !ok {
				out[key] = []string{}
			}
			for _, r := range c.Rules {
				if ours || strings.Contains(r, "-j SY-") {
					out[key] = append(out[key], r)
				}
			}
		}
	}
	return out
}

func compareChains(t *testing.T, what string, want, got map[string][]string) {
	t.Helper()
	if len(want) < 10 || len(want["nat/SY-SERVICES"]) == 0 {
		t.Fatalf("%s: the fake holds too little to compare: %v", what, want)
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: kernel lacks chain %s", what, k)
			continue
		}
		if strings.Join(w, "\n") != strings.Join(g, "\n") {
			t.Errorf("%s: chain %s differs\nfake:\n%s\nkernel:\n%s", what, k, strings.Join(w, "\n"), strings.Join(g, "\n"))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: kernel has chain %s that the fake does not", what, k)
		}
	}
}

// TestKernelMatchesFake drives a Proxier over the real iptables binaries of each variant inside a
// throwaway namespace (staging new chains in small batches) and checks, after a full and an
// incremental sync, that the kernel holds
// exactly what the fake holds after the same syncs (iptables-save prints our rules back byte for
// byte). Then Cleanup must leave nothing of ours.
func TestKernelMatchesFake(t *testing.T) {
	netnstest.Require(t)
	for _, v := range []utiliptables.Variant{utiliptables.VariantNFT, utiliptables.VariantLegacy} {
		t.Run(string(v), func(t *testing.T) {
			ns := netnstest.New(t, "ipt")
			save := func() string {
				t.Helper()
				var b strings.Builder
				for _, table := range []string{TableFilter, TableNAT, TableMangle} {
					b.WriteString(ns.MustRun(t, "iptables-"+string(v)+"-save", "-t", table))
				}
				return b.String()
			}
			fake := iptablestest.NewFake()
			fp, err := NewProxier(Config{Options: testOptions(), IPTables: fake})
			if err != nil {
				t.Fatal(err)
			}
			var kp *Proxier
			var real *utiliptables.Exec
			inNS := func(fn func() error) {
				t.Helper()
				if err := ns.Do(fn); err != nil {
					t.Fatal(err)
				}
			}
			inNS(func() error {
				var err error
				if real, err = utiliptables.NewExec(model.IPv4, v); err != nil {
					return err
				}
				opts := testOptions()
				opts.RandomFully = real.HasRandomFully()
				// Small batches, so that the cold start loads its chains through staged restores.
				kp, err = NewProxier(Config{Options: opts, IPTables: real, StagedChainsPerRestore: 4})
				return err
			})

			snap := fixtureSnapshot()
			if err := fp.Sync(snap); err != nil {
				t.Fatal(err)
			}
			inNS(func() error { return kp.Sync(snap) })
			compareChains(t, "full sync", chainRules(t, fake.Dump()), chainRules(t, save()))

			next := cloneSnapshot(snap)
			web := spn("default", "web", "http")
			next.Endpoints[web] = []model.Endpoint{ep("10.244.2.99", 8080, "node-b"), ep("10.244.1.98", 8080, testNode)}
			next.Changed[web.ServiceKey] = struct{}{}
			gone := spn("default", "lb-local", "https")
			delete(next.Services, gone)
			delete(next.Endpoints, gone)
			next.Changed[gone.ServiceKey] = struct{}{}
			if err := fp.Sync(next); err != nil {
				t.Fatal(err)
			}
			inNS(func() error { return kp.Sync(next) })
			compareChains(t, "incremental sync", chainRules(t, fake.Dump()), chainRules(t, save()))

			// A periodic full sync reads the kernel back (iptables-save) and must find nothing to
			// change; a leftover chain of an earlier run must go.
			before := save()
			ns.MustRun(t, "iptables-"+string(v), "-t", "nat", "-N", "SY-SVC-LEFTOVERLEFTOVER")
			resync := cloneSnapshot(next)
			resync.Full = true
			inNS(func() error { return kp.Sync(resync) })
			compareChains(t, "full resync", chainRules(t, before), chainRules(t, save()))

			// Another owner's chain (the pod network's) and its jump survive Cleanup, and go with
			// CleanupAll, as --cleanup requires.
			ns.MustRun(t, "iptables-"+string(v), "-t", "nat", "-N", "SY-POD-MASQ")
			ns.MustRun(t, "iptables-"+string(v), "-t", "nat", "-A", "POSTROUTING", "-j", "SY-POD-MASQ")
			inNS(func() error { return Cleanup(real) })
			if left := save(); strings.Contains(left, "SY-SVC-") || strings.Contains(left, ":SY-SERVICES") ||
				!strings.Contains(left, "-A POSTROUTING -j SY-POD-MASQ") {
				t.Errorf("cleanup of iptables mode removed the wrong things:\n%s", left)
			}
			// Cleaning tables that hold nothing of ours is not an error.
			inNS(func() error { return Cleanup(real) })
			inNS(func() error { return CleanupAll(real) })
			if left := save(); strings.Contains(left, "SY-") {
				t.Errorf("CleanupAll left rules behind:\n%s", left)
			}
			inNS(func() error { return CleanupAll(real) })
		})
	}
}
