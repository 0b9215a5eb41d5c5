package iptables

import "slices"

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

// Drift is what ChainDrift found: rules the model would write that the tables lack, and rules in
// the tables that the model would not write.
type Drift struct {
	Missing, Unexpected []DriftLine
}

// None reports whether the tables hold exactly what the model would write.
func (d Drift) None() bool { return len(d.Missing) == 0 && len(d.Unexpected) == 0 }

// ChainDrift compares expected with saved (both iptables-save text) in tables, over what a proxy
// mode owns: the chains owned says are its, whole, and in the built-in chains only the jumps into
// them. Other agents' chains and rules are not drift. Rules are compared as a multiset per chain:
// a rule moved within its chain is not reported. Both modes' `explain --check` use it.
func ChainDrift(expected, saved []byte, tables []string, owned func(chain string) bool) (Drift, error) {
	exp, err := ParseSave(expected)
	if err != nil {
		return Drift{}, err
	}
	live, err := ParseSave(saved)
	if err != nil {
		return Drift{}, err
	}
	var d Drift
	for _, table := range tables {
		want, have := ownedRules(exp.Table(table), owned), ownedRules(live.Table(table), owned)
		for _, chain := range sortedKeys(want, have) {
			w, h := want[chain], have[chain]
			if !IsBuiltin(table, chain) {
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

// chainRules are the rules of one chain that drift is about; a nil *chainRules is a chain absent.
type chainRules struct{ rules []string }

func (c *chainRules) list() []string {
	if c == nil {
		return nil
	}
	return c.rules
}

// ownedRules picks from a table what a mode owns: its chains (declared or not), and the rules of
// built-in chains that jump into one of them.
func ownedRules(t *SavedTable, owned func(string) bool) map[string]*chainRules {
	out := map[string]*chainRules{}
	if t == nil {
		return out
	}
	for _, c := range t.Chains {
		if owned(c.Name) {
			out[c.Name] = &chainRules{rules: c.Rules}
			continue
		}
		if !IsBuiltin(t.Name, c.Name) {
			continue
		}
		for _, r := range c.Rules {
			words, err := SplitWords(r)
			if err == nil && owned(JumpTarget(words)) {
				if out[c.Name] == nil {
					out[c.Name] = &chainRules{}
				}
				out[c.Name].rules = append(out[c.Name].rules, r)
			}
		}
	}
	return out
}

func sortedKeys(a, b map[string]*chainRules) []string {
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
