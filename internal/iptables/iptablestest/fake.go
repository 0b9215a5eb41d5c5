// Package iptablestest provides the stateful fake of internal/iptables' Interface, for the tests
// of everything that programs iptables, and real Execs bound to throwaway namespaces for the
// privileged ones.
package iptablestest

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/switchyard/switchyard/internal/iptables"
)

// Fake is an in-memory iptables for one family that behaves like the kernel where Switchyard
// depends on it. Restore input is applied one table at a time, each "*table ... COMMIT" block as
// one transaction, exactly as iptables-restore (nft and legacy alike) commits it: a jump to a chain
// that does not exist, a rule in an undeclared chain, deleting a chain that is still referenced or
// not empty, or (with SetExists) matching an ipset that does not exist fails that block with
// nothing of it applied, stops the input there, and leaves the blocks committed before it in force.
// Dump prints the tables as iptables-save would, so the packet tracer can walk the fake's end state.
type Fake struct {
	tables map[string]*table
	// injected, when set, makes the next Restore fail with it and change nothing, standing in for
	// failures the fake cannot produce itself (a held xtables lock, ENOMEM).
	injected error
	// LastRestore is the input of the last successful Restore, for tests that check how much a
	// sync wrote.
	LastRestore []byte
	// SetExists, when set, is asked about every ipset a rule matches with --match-set; a rule
	// naming a set it denies is refused, as the kernel refuses it.
	SetExists func(name string) bool
}

var _ iptables.Interface = (*Fake)(nil)

type table struct {
	chains map[string]*chain
}

type chain struct {
	builtin bool
	policy  string
	rules   []string // the words after "-A CHAIN", as iptables.JoinWords spells them
}

// fakeTables are the tables a new Fake has. Dump prints raw only once something is in it.
var fakeTables = []string{iptables.TableFilter, iptables.TableMangle, iptables.TableNAT, iptables.TableRaw}

// Targets the fake accepts without a chain of that name. Anything else after -j must be a chain.
var standardTargets = map[string]bool{
	"ACCEPT": true, "DROP": true, "RETURN": true, "REJECT": true, "DNAT": true, "SNAT": true,
	"MASQUERADE": true, "MARK": true, "CONNMARK": true, "LOG": true, "NOTRACK": true, "CT": true,
}

// NewFake returns a fake with empty built-in chains in filter, mangle, nat and raw.
func NewFake() *Fake {
	f := &Fake{tables: map[string]*table{}}
	for _, t := range fakeTables {
		ft := &table{chains: map[string]*chain{}}
		for _, c := range iptables.BuiltinChains(t) {
			ft.chains[c] = &chain{builtin: true, policy: "ACCEPT"}
		}
		f.tables[t] = ft
	}
	return f
}

// InjectRestoreError makes the next Restore fail with err and apply nothing.
func (f *Fake) InjectRestoreError(err error) { f.injected = err }

// Restore applies restore input with --noflush semantics, all or nothing per table block.
func (f *Fake) Restore(data []byte) error {
	if err := f.injected; err != nil {
		f.injected = nil
		return fmt.Errorf("fake iptables-restore: %w", err)
	}
	blocks, parseErr := iptables.ParseRestore(data)
	for _, b := range blocks {
		committed := f.tables[b.Table]
		if committed == nil {
			return fmt.Errorf("fake iptables-restore: line %d: no such table %s", b.Line, b.Table)
		}
		t := committed.clone()
		for _, l := range b.Lines {
			var err error
			if l.Declared {
				err = t.declare(l.Chain, l.Policy)
			} else {
				var words []string
				if words, err = l.Words(); err == nil {
					err = f.command(t, l.Op, l.Chain, words)
				}
			}
			if err != nil {
				return fmt.Errorf("fake iptables-restore: line %d %q: %v", l.N, l.Text, err)
			}
		}
		f.tables[b.Table] = t
	}
	if parseErr != nil {
		return fmt.Errorf("fake iptables-restore: %w", parseErr)
	}
	f.LastRestore = append([]byte(nil), data...)
	return nil
}

func (t *table) declare(name, policy string) error {
	c := t.chains[name]
	if policy != "-" {
		if c == nil || !c.builtin {
			return fmt.Errorf("policy %s for non-builtin chain %s", policy, name)
		}
		c.policy = policy
		return nil
	}
	if c != nil && c.builtin {
		return nil // iptables-restore accepts "-" for a built-in chain and changes nothing
	}
	if c == nil {
		t.chains[name] = &chain{}
		return nil
	}
	c.rules = nil // --noflush: declaring an existing chain flushes it
	return nil
}

// longOps maps the long spellings of the commands the fake knows to the short ones.
var longOps = map[string]string{
	"--append": "-A", "--insert": "-I", "--delete": "-D", "--flush": "-F", "--new-chain": "-N", "--delete-chain": "-X",
}

// command applies one -A/-I/-D/-F/-N/-X line to t.
func (f *Fake) command(t *table, op, name string, rest []string) error {
	if short, ok := longOps[op]; ok {
		op = short
	}
	c := t.chains[name]
	switch op {
	case "-N":
		if c != nil {
			return fmt.Errorf("chain %s already exists", name)
		}
		t.chains[name] = &chain{}
		return nil
	case "-X":
		if c == nil {
			return fmt.Errorf("no chain %s to delete", name)
		}
		if c.builtin {
			return fmt.Errorf("cannot delete built-in chain %s", name)
		}
		if len(c.rules) > 0 {
			return fmt.Errorf("chain %s is not empty", name)
		}
		if from := t.referrer(name); from != "" {
			return fmt.Errorf("chain %s is still referenced from %s", name, from)
		}
		delete(t.chains, name)
		return nil
	}
	if c == nil {
		return fmt.Errorf("no chain %s", name)
	}
	switch op {
	case "-F":
		c.rules = nil
		return nil
	case "-A", "-I", "-D":
	default:
		return fmt.Errorf("unsupported command %s", op)
	}
	pos := 0
	if op == "-I" && len(rest) > 0 {
		if n, err := strconv.Atoi(rest[0]); err == nil {
			rest = rest[1:]
			pos = n - 1
		}
	}
	rule := iptables.JoinWords(rest)
	if op == "-D" {
		i := slices.Index(c.rules, rule)
		if i < 0 {
			return fmt.Errorf("no such rule in %s: %s", name, rule)
		}
		c.rules = slices.Delete(c.rules, i, i+1)
		return nil
	}
	if err := f.check(t, rest); err != nil {
		return err
	}
	if op == "-A" {
		c.rules = append(c.rules, rule)
		return nil
	}
	if pos < 0 || pos > len(c.rules) {
		return fmt.Errorf("index %d out of range for %s", pos+1, name)
	}
	c.rules = slices.Insert(c.rules, pos, rule)
	return nil
}

// check refuses a rule the kernel would not load into t: a jump to a missing or built-in chain, or a
// match on a missing ipset.
func (f *Fake) check(t *table, words []string) error {
	if tgt := iptables.JumpTarget(words); tgt != "" && !standardTargets[tgt] {
		tc := t.chains[tgt]
		if tc == nil {
			return fmt.Errorf("jump to chain %s, which does not exist", tgt)
		}
		if tc.builtin {
			return fmt.Errorf("jump to built-in chain %s", tgt)
		}
	}
	if f.SetExists != nil {
		for i := 0; i+1 < len(words); i++ {
			if words[i] == "--match-set" && !f.SetExists(words[i+1]) {
				return fmt.Errorf("set %s doesn't exist", words[i+1])
			}
		}
	}
	return nil
}

// referrer names a chain with a rule that jumps to name, or "".
func (t *table) referrer(name string) string {
	for _, cn := range slices.Sorted(maps.Keys(t.chains)) {
		for _, r := range t.chains[cn].rules {
			if jumpsTo(r, name) {
				return cn
			}
		}
	}
	return ""
}

func jumpsTo(rule, chain string) bool {
	w, _ := iptables.SplitWords(rule)
	return iptables.JumpTarget(w) == chain
}

func (f *Fake) ChainExists(tbl, chain string) (bool, error) {
	t := f.tables[tbl]
	if t == nil {
		return false, fmt.Errorf("fake: no table %s", tbl)
	}
	return t.chains[chain] != nil, nil
}

func (f *Fake) EnsureRule(pos iptables.Position, tbl, chain string, rule ...string) error {
	t, c, err := f.chain(tbl, chain)
	if err != nil {
		return err
	}
	text := iptables.JoinWords(rule)
	if slices.Contains(c.rules, text) {
		return nil
	}
	if err := f.check(t, rule); err != nil {
		return fmt.Errorf("fake: ensure rule in %s/%s: %w", tbl, chain, err)
	}
	if pos == iptables.Append {
		c.rules = append(c.rules, text)
	} else {
		c.rules = slices.Insert(c.rules, 0, text)
	}
	return nil
}

// DeleteRule removes the rule if it is there. Like iptables -C before -D, a missing chain means
// the rule is not there either.
func (f *Fake) DeleteRule(tbl, chain string, rule ...string) error {
	t := f.tables[tbl]
	if t == nil {
		return fmt.Errorf("fake: no table %s", tbl)
	}
	c := t.chains[chain]
	if c == nil {
		return nil
	}
	if i := slices.Index(c.rules, iptables.JoinWords(rule)); i >= 0 {
		c.rules = slices.Delete(c.rules, i, i+1)
	}
	return nil
}

func (f *Fake) ListChains(tbl string) ([]string, error) {
	if f.tables[tbl] == nil {
		return nil, fmt.Errorf("fake: no table %s", tbl)
	}
	return f.chainOrder(tbl), nil
}

func (f *Fake) Save(tbl string) ([]byte, error) {
	if f.tables[tbl] == nil {
		return nil, fmt.Errorf("fake: no table %s", tbl)
	}
	return []byte(f.DumpTable(tbl)), nil
}

// DeleteChainForTest removes a chain and every rule jumping to it, as an administrator's
// `iptables -F; iptables -X` would; tests use it to simulate an external flush.
func (f *Fake) DeleteChainForTest(tbl, chain string) {
	t := f.tables[tbl]
	if t == nil {
		return
	}
	for _, c := range t.chains {
		c.rules = slices.DeleteFunc(c.rules, func(r string) bool { return jumpsTo(r, chain) })
	}
	delete(t.chains, chain)
}

func (f *Fake) chain(tbl, chain string) (*table, *chain, error) {
	t := f.tables[tbl]
	if t == nil {
		return nil, nil, fmt.Errorf("fake: no table %s", tbl)
	}
	c := t.chains[chain]
	if c == nil {
		return nil, nil, fmt.Errorf("fake: no chain %s in %s", chain, tbl)
	}
	return t, c, nil
}

// chainOrder lists built-in chains in kernel order, then user chains sorted, as iptables-save does.
func (f *Fake) chainOrder(tbl string) []string {
	return append(iptables.BuiltinChains(tbl), f.UserChains(tbl)...)
}

// UserChains lists the chains of tbl that are not built in, sorted.
func (f *Fake) UserChains(tbl string) []string {
	t := f.tables[tbl]
	if t == nil {
		return nil
	}
	var user []string
	for name, c := range t.chains {
		if !c.builtin {
			user = append(user, name)
		}
	}
	slices.Sort(user)
	return user
}

// Dump returns filter, mangle and nat (and raw once something is in it) as iptables-save text.
func (f *Fake) Dump() string {
	var b strings.Builder
	for _, tbl := range fakeTables {
		if tbl == iptables.TableRaw && f.pristine(tbl) {
			continue
		}
		b.WriteString(f.DumpTable(tbl))
	}
	return b.String()
}

// pristine reports whether tbl is as NewFake made it.
func (f *Fake) pristine(tbl string) bool {
	for _, c := range f.tables[tbl].chains {
		if !c.builtin || len(c.rules) > 0 || c.policy != "ACCEPT" {
			return false
		}
	}
	return true
}

// DumpTable returns one table as iptables-save text.
func (f *Fake) DumpTable(tbl string) string {
	t := f.tables[tbl]
	if t == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString("*" + tbl + "\n")
	order := f.chainOrder(tbl)
	for _, name := range order {
		c := t.chains[name]
		if c.builtin {
			b.WriteString(":" + name + " " + c.policy + " [0:0]\n")
		} else {
			b.WriteString(":" + name + " - [0:0]\n")
		}
	}
	for _, name := range order {
		for _, r := range t.chains[name].rules {
			b.WriteString("-A " + name + " " + r + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// Rules returns the rules of tbl/chain (the words after "-A CHAIN"), or nil.
func (f *Fake) Rules(tbl, chain string) []string {
	if t := f.tables[tbl]; t != nil {
		if c := t.chains[chain]; c != nil {
			return slices.Clone(c.rules)
		}
	}
	return nil
}

// RuleCount is the number of rules in all tables, counted as in any iptables-save output.
func (f *Fake) RuleCount() int {
	d, err := iptables.ParseSave([]byte(f.Dump()))
	if err != nil {
		panic(fmt.Sprintf("the fake's own dump does not parse: %v", err))
	}
	return d.Rules()
}

func (t *table) clone() *table {
	out := &table{chains: make(map[string]*chain, len(t.chains))}
	for cn, c := range t.chains {
		nc := *c
		nc.rules = slices.Clone(c.rules)
		out.chains[cn] = &nc
	}
	return out
}
