package tracer

import (
	"fmt"
	"sort"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
)

// targetHooks lists the tables and built-in chains from which the kernel lets a target be reached.
// A target missing here may be used anywhere.
var targetHooks = map[string]struct {
	table string
	hooks []string
}{
	"DNAT":       {"nat", []string{"PREROUTING", "OUTPUT"}},
	"SNAT":       {"nat", []string{"POSTROUTING", "INPUT"}},
	"MASQUERADE": {"nat", []string{"POSTROUTING"}},
	"REJECT":     {"filter", []string{"INPUT", "FORWARD", "OUTPUT"}},
}

// validate checks what the kernel checks when a table is loaded: jumps name existing user chains,
// there are no loops, and every target and hook-bound match is only reachable from hooks that
// allow it.
func (rs *Ruleset) validate() error {
	names := make([]string, 0, len(rs.Tables))
	for n := range rs.Tables {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := rs.Tables[n].validate(); err != nil {
			return fmt.Errorf("table %s: %w", n, err)
		}
	}
	return nil
}

func (t *Table) validate() error {
	for _, cn := range t.ChainNames() {
		for _, r := range t.Chains[cn].Rules {
			if err := t.checkRule(r); err != nil {
				return err
			}
		}
	}
	// Depth-first from each built-in chain, recording which hooks reach every chain and rejecting
	// loops (a chain met again while it is still on the path).
	for _, hook := range utiliptables.BuiltinChains(t.Name) {
		onPath := map[string]bool{}
		seen := map[string]bool{}
		var visit func(c *Chain, path []string) error
		visit = func(c *Chain, path []string) error {
			if onPath[c.Name] {
				return fmt.Errorf("loop through chains %v", append(path, c.Name))
			}
			if seen[c.Name] {
				return nil
			}
			seen[c.Name] = true
			onPath[c.Name] = true
			defer delete(onPath, c.Name)
			for _, r := range c.Rules {
				if err := checkHook(t.Name, hook, r); err != nil {
					return err
				}
				if j, ok := r.target.(*jumpTarget); ok {
					if err := visit(t.Chains[j.chain], append(path, c.Name)); err != nil {
						return err
					}
				}
			}
			return nil
		}
		if err := visit(t.Chains[hook], nil); err != nil {
			return err
		}
	}
	return nil
}

// checkRule is what the kernel checks of one rule wherever it is: the target's table, and that a
// jump names an existing user chain.
func (t *Table) checkRule(r *Rule) error {
	if r.target != nil {
		// The table restriction holds in every chain, reachable or not; the hook restriction
		// (checkHook) only where a built-in chain reaches.
		if allowed, ok := targetHooks[r.target.targetName()]; ok && allowed.table != t.Name {
			if _, isJump := r.target.(*jumpTarget); !isJump {
				return fmt.Errorf("%s: %s is not allowed in table %s", r, r.target.targetName(), t.Name)
			}
		}
	}
	if v, ok := r.target.(*verdictTarget); ok && v.verdict == "DROP" && t.Name == "nat" {
		return fmt.Errorf("%s: the nat table does not allow DROP", r)
	}
	return checkJump(t, r)
}

// checkJump checks that a jump names an existing user chain. For a lenient parse it is what tells
// another agent's target the tracer does not know, which reads like a jump, from a real jump.
func checkJump(t *Table, r *Rule) error {
	j, ok := r.target.(*jumpTarget)
	if !ok {
		return nil
	}
	target := t.Chains[j.chain]
	if target == nil {
		return fmt.Errorf("%s: no chain or target named %s", r, j.chain)
	}
	if target.Builtin {
		return fmt.Errorf("%s: cannot jump to built-in chain %s", r, j.chain)
	}
	return nil
}

func checkHook(table, hook string, r *Rule) error {
	if r.target != nil {
		if allowed, ok := targetHooks[r.target.targetName()]; ok {
			if _, isJump := r.target.(*jumpTarget); !isJump && !hookAllowed(table, hook, allowed.table, allowed.hooks) {
				return fmt.Errorf("%s: %s is not allowed in table %s reached from %s", r, r.target.targetName(), table, hook)
			}
		}
	}
	for _, m := range r.matches {
		at, ok := m.(*addrtypeMatch)
		if !ok {
			continue
		}
		if at.limitIn && !(hook == "PREROUTING" || hook == "INPUT" || hook == "FORWARD") {
			return fmt.Errorf("%s: --limit-iface-in is not allowed from %s", r, hook)
		}
		if at.limitOut && !(hook == "POSTROUTING" || hook == "OUTPUT" || hook == "FORWARD") {
			return fmt.Errorf("%s: --limit-iface-out is not allowed from %s", r, hook)
		}
	}
	return nil
}

func hookAllowed(table, hook, wantTable string, hooks []string) bool {
	if table != wantTable {
		return false
	}
	for _, h := range hooks {
		if h == hook {
			return true
		}
	}
	return false
}
