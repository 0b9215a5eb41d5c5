package iptables

import (
	"bytes"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/model"
)

// ExpectedRules is what iptables mode holds in the tables once a sync of snap succeeded, as
// iptables-save prints it: every chain of ours with its rules (a full render, which a sync of any
// kind converges to), and the jumps into them from the built-in chains. `switchyard explain
// --check` compares it with the live tables (FindDrift); the daemon serves it.
func ExpectedRules(snap *model.Snapshot, opts Options) ([]byte, error) {
	r, err := RenderFull(snap, opts)
	if err != nil {
		return nil, err
	}
	// A render against an empty kernel declares and writes every chain, so the restore text is the
	// save text of our chains; the jumps are the only rules it cannot hold.
	var b bytes.Buffer
	for _, blk := range bytes.SplitAfter(r.Restore, []byte("COMMIT\n")) {
		if len(blk) == 0 {
			continue
		}
		table := string(bytes.TrimPrefix(blk[:bytes.IndexByte(blk, '\n')], []byte("*")))
		b.Write(blk[:len(blk)-len("COMMIT\n")])
		for _, j := range jumpRules {
			if j.table == table {
				b.WriteString("-A " + j.chain + " " + utiliptables.JoinWords(j.args) + "\n")
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.Bytes(), nil
}

// ExpectedRules is ExpectedRules with this Proxier's options. It keeps no state and may be called
// from any goroutine.
func (p *Proxier) ExpectedRules(snap *model.Snapshot) ([]byte, error) {
	return ExpectedRules(snap, p.renderer.opts)
}

// DriftLine and Drift are internal/iptables' ChainDrift results, which IPVS mode's check shares.
type (
	DriftLine = utiliptables.DriftLine
	Drift     = utiliptables.Drift
)

// FindDrift compares expected (ExpectedRules) with saved (iptables-save of the family) over what
// iptables mode owns: its chains, whole, and in the built-in chains only the jumps into them.
// Other agents' chains and rules are not drift. Rules are compared as a multiset per chain: a
// rule moved within its chain is not reported.
func FindDrift(expected, saved []byte) (Drift, error) {
	return utiliptables.ChainDrift(expected, savedAsRendered(saved), []string{TableNAT, TableFilter, TableMangle}, isModeChain)
}
