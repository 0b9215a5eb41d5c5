package iptables

import (
	"bytes"
	"slices"

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

// DriftLine is one difference between the expected and the live rules: a rule ("-A CHAIN ...")
// or, with Rule empty, a whole chain of ours.
type DriftLine struct {
	Table, Chain, Rule string
}

func (d DriftLine) String() string {
	if d.Rule == "" {
		return d.Table + ": chain " + d.Chain
	}
	return d.Table + ": " + d.Rule
}

// Drift is what FindDrift found: rules the model would write that the tables lack, and rules in
// the tables that the model would not write.
type Drift struct {
	Missing, Unexpected []DriftLine
}

// None reports whether the tables hold exactly what the model would write.
func (d Drift) None() bool { return len(d.Missing) == 0 && len(d.Unexpected) == 0 }

// FindDrift compares expected (ExpectedRules) with saved (iptables-save of the family) over what
// iptables mode owns: its chains, whole, and in the built-in chains only the jumps into them.
// Other agents' chains and rules are not drift. Rules are compared as a multiset per chain: a
// rule moved within its chain is not reported.
func FindDrift(expected, saved []byte) (Drift, error) {
	exp, err := utiliptables.ParseSave(expected)
	if err != nil {
		return Drift{}, err
	}
	live, err := utiliptables.ParseSave(savedAsRendered(saved))
	if err != nil {
		return Drift{}, err
	}
	var d Drift
	for _, table := range []string{TableNAT, TableFilter, TableMangle} {
		want, have := ourRules(exp.Table(table)), ourRules(live.Table(table))
		for _, chain := range sortedKeys(want, have) {
			w, h := want[chain], have[chain]
			if !utiliptables.IsBuiltin(table, chain) {
				switch {
				case w == nil:
					d.Unexpected = append(d.Unexpected, DriftLine{Table: table, Chain: chain})
				case h == nil:
					d.Missing = append(d.Missing, DriftLine{Table: table, Chain: chain})
				}
			}
			missing, unexpected := multisetDiff(w.list(), h.list())
			for _, r := range missing {
				d.Missing = append(d.Missing, DriftLine{Table: table, Chain: chain, Rule: "-A " + chain + " " + r})
			}
			for _, r := range unexpected {
				d.Unexpected = append(d.Unexpected, DriftLine{Table: table, Chain: chain, Rule: "-A " + chain + " " + r})
			}
		}
	}
	return d, nil
}

// ownedRules are the rules of one chain that drift is about; a nil *ownedRules is a chain absent.
type ownedRules struct{ rules []string }

func (c *ownedRules) list() []string {
	if c == nil {
		return nil
	}
	return c.rules
}

// ourRules picks from a table what iptables mode owns: its chains (declared or not), and the rules
// of built-in chains that jump into one of them.
func ourRules(t *utiliptables.SavedTable) map[string]*ownedRules {
	out := map[string]*ownedRules{}
	if t == nil {
		return out
	}
	for _, c := range t.Chains {
		if isModeChain(c.Name) {
			out[c.Name] = &ownedRules{rules: c.Rules}
			continue
		}
		if !utiliptables.IsBuiltin(t.Name, c.Name) {
			continue
		}
		for _, r := range c.Rules {
			words, err := utiliptables.SplitWords(r)
			if err == nil && isModeChain(utiliptables.JumpTarget(words)) {
				if out[c.Name] == nil {
					out[c.Name] = &ownedRules{}
				}
				out[c.Name].rules = append(out[c.Name].rules, r)
			}
		}
	}
	return out
}

func sortedKeys(a, b map[string]*ownedRules) []string {
	var out []string
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// multisetDiff returns the rules of want that have no match in have, and those of have with none
// in want, each in its list's order.
func multisetDiff(want, have []string) (missing, unexpected []string) {
	left := map[string]int{}
	for _, r := range have {
		left[r]++
	}
	for _, r := range want {
		if left[r] > 0 {
			left[r]--
			continue
		}
		missing = append(missing, r)
	}
	for _, r := range slices.Backward(have) {
		if left[r] > 0 {
			left[r]--
			unexpected = append(unexpected, r)
		}
	}
	slices.Reverse(unexpected)
	return missing, unexpected
}
