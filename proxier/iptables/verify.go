package iptables

import (
	"bytes"
	"slices"
	"strings"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
)

// kernelState is what the backend believes the kernel holds of its rules: the one memory of it.
// A render reads it (Renderer.render) and never changes it; applied, staged and lost record the
// outcome of restores, and kernelFromSave builds one from what the kernel really holds.
type kernelState struct {
	// rules is, by table, the text of each chain of ours whose rules are known ("" for an empty
	// chain): after a sync, the shared chains and canaries as written; after a read-back, every
	// chain of the table. A chain whose text matches the render is not written again.
	rules map[string]KernelTable
	// readBack says rules came from iptables-save, so a full sync may rely on them. Remembered
	// rules only serve incremental syncs: a full sync must not trust what was applied before.
	readBack bool
	// serviceChains are chains that come and go with services (per-service chains and dispatch
	// shards) that the kernel may hold: a full sync deletes those the new state does not use, and
	// a service none of whose chains are here may be staged.
	serviceChains ChainSet
	// exact says serviceChains lists every per-service chain the kernel holds that anything may
	// reference, so chains outside it may be staged. False until this process has either found
	// the tables empty or completed a sync, and after any failure.
	exact bool
	// needFull forces the next sync to be full: nothing is known at start and after any failure.
	needFull bool
	// jumpsOK records that the jumps from the built-in chains were ensured since the canary was
	// last seen missing. They are not re-checked on every full sync: each check is a full read of
	// the table on the nft variant.
	jumpsOK bool
}

// newKernelState knows nothing of the kernel yet.
func newKernelState() *kernelState {
	return &kernelState{serviceChains: ChainSet{}, needFull: true}
}

// applied records that r's restores all succeeded: the kernel now holds what r rendered.
func (k *kernelState) applied(r *Rendered) {
	k.rules, k.readBack, k.serviceChains = r.fixed, false, r.ServiceChains
	k.exact, k.needFull = true, false
}

// staged records that one staged batch is in the kernel: unreferenced, but present, so a later
// full sync deletes what it does not need.
func (k *kernelState) staged(st StagedRestore) {
	for _, c := range st.Chains {
		k.serviceChains[c] = struct{}{}
	}
}

// bootstrapped records the restore that declared the shared chains, empty, on tables without our
// rules: nothing references a per-service chain now, so the chains known are as good as exact.
func (k *kernelState) bootstrapped() { k.exact = true }

// jumpsInPlace records whether the jumps from the built-in chains are known to be in place: after
// ensuring or reading them back, or not when the canary or a fixed chain went missing.
func (k *kernelState) jumpsInPlace(ok bool) { k.jumpsOK = ok }

// lost records a failed sync: what the kernel holds is unknown until the next full sync.
func (k *kernelState) lost() { k.needFull, k.exact = true, false }

// trusted is what a render may assume of k: a full render that was not read back assumes the
// rules it remembers are gone (and declares every canary), keeping only the chains to delete.
func (k *kernelState) trusted(full bool) *kernelState {
	if !full || k.readBack {
		return k
	}
	return &kernelState{serviceChains: k.serviceChains, exact: k.exact}
}

// holds reports whether the kernel may hold nat chain c.
func (k *kernelState) holds(c string) bool {
	if _, ok := k.serviceChains[c]; ok {
		return true
	}
	_, ok := k.rules[TableNAT][c]
	return ok
}

// lacksAll reports whether chains is not empty and the kernel holds none of them.
func (k *kernelState) lacksAll(chains []string) bool {
	for _, c := range chains {
		if k.holds(c) {
			return false
		}
	}
	return len(chains) > 0
}

// holdsService reports whether the kernel is known to hold s's chains exactly as rendered. The
// rendered text is what iptables-save prints back, and s's body holds its chains' rules in the
// order of s.chains, so the kernel's texts must be consecutive pieces of it.
func (k *kernelState) holdsService(s *serviceRules) bool {
	body, nat := s.chainBody.String(), k.rules[TableNAT]
	for _, c := range s.chains {
		have, ok := nat[c]
		if !ok || !strings.HasPrefix(body, have) {
			return false
		}
		body = body[len(have):]
	}
	return body == ""
}

// stale lists, sorted, the chains of table that the kernel may hold, that come and go with
// services, and that the new state (serviceChains, in nat) does not use.
func (k *kernelState) stale(table string, sel selection, serviceChains ChainSet) []string {
	var out []string
	keep := func(c string) {
		if _, ok := serviceChains[c]; (!ok || table != TableNAT) && isServiceChain(c) {
			out = append(out, c)
		}
	}
	if table == TableNAT {
		for _, c := range sel.stale {
			keep(c)
		}
		if sel.full {
			for c := range k.serviceChains {
				keep(c)
			}
		}
	}
	for c := range k.rules[table] {
		keep(c)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// nfacctSaved is how iptables-save 1.8 prints the nfacct match's option: with two spaces before
// the counter's name (xtables_save_string adds one of its own).
var nfacctSaved = []byte("--nfacct-name  ")

// savedAsRendered rewrites iptables-save output where it spells a rule differently from how the
// renderer writes it, so that a full sync finds unchanged chains unchanged. Only the nfacct
// match needs it; the renderer writes every other rule as iptables-save prints it.
func savedAsRendered(save []byte) []byte {
	if !bytes.Contains(save, nfacctSaved) {
		return save
	}
	return bytes.ReplaceAll(save, nfacctSaved, []byte("--nfacct-name "))
}

// kernelFromSave is what the kernel holds as read back: nat and filter as iptables-save printed
// them (utiliptables.ChainRules), and mangle's canary when canaryInMangle.
func kernelFromSave(nat, filter KernelTable, canaryInMangle bool) *kernelState {
	mangle := KernelTable{}
	if canaryInMangle {
		mangle[CanaryChain] = ""
	}
	return &kernelState{rules: map[string]KernelTable{TableNAT: nat, TableFilter: filter, TableMangle: mangle},
		readBack: true, exact: true}
}

// jumpsPresent reports whether every jump from a built-in chain is in the tables as read back.
func jumpsPresent(nat, filter KernelTable) bool {
	for _, j := range jumpRules {
		t := filter
		if j.table == TableNAT {
			t = nat
		}
		if !strings.Contains(t[j.chain], "-A "+j.chain+" "+utiliptables.JoinWords(j.args)+"\n") {
			return false
		}
	}
	return true
}

// KernelTable is one table as iptables-save printed it: for each chain, its rules ("-A ..." lines,
// each ending in a newline), in order. A declared chain without rules maps to "". The read-back
// builds it with utiliptables.ChainRules.
type KernelTable map[string]string
