package iptables

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Fake is an in-memory iptables for one family that behaves like the kernel where Proxier depends on
// it. Restore input is applied one table at a time, each "*table ... COMMIT" block as one
// transaction, exactly as iptables-restore (nft and legacy alike) commits it: a jump to a chain that
// does not exist, a rule in an undeclared chain, or deleting a chain that is still referenced or not
// empty fails that block with nothing of it applied, stops the input there, and leaves the blocks
// committed before it in force. Dump prints the tables as iptables-save would, so the packet tracer
// can walk the fake's end state.
type Fake struct {
	tables map[string]*fakeTable
	// injected, when set, makes the next Restore fail with it and change nothing, standing in for
	// failures the fake cannot produce itself (a held xtables lock, ENOMEM).
	injected error
	// LastRestore is the input of the last successful Restore, for tests that check how much a
	// sync wrote.
	LastRestore []byte
}

var _ Interface = (*Fake)(nil)

type fakeTable struct {
	chains map[string]*fakeChain
}

type fakeChain struct {
	builtin bool
	policy  string
	rules   []string // the words after "-A CHAIN", as restore input spells them
}

var builtinChains = map[string][]string{
	TableFilter: {"INPUT", "FORWARD", "OUTPUT"},
	TableNAT:    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	TableMangle: {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	"raw":       {"PREROUTING", "OUTPUT"},
}

// Targets the fake accepts without a chain of that name. Anything else after -j must be a chain.
var standardTargets = map[string]bool{
	"ACCEPT": true, "DROP": true, "RETURN": true, "REJECT": true, "DNAT": true, "SNAT": true,
	"MASQUERADE": true, "MARK": true, "CONNMARK": true, "LOG": true, "NOTRACK": true, "CT": true,
}

// NewFake returns a fake with empty built-in chains in filter, nat, mangle and raw.
func NewFake() *Fake {
	f := &Fake{tables: map[string]*fakeTable{}}
	for t, cs := range builtinChains {
		ft := &fakeTable{chains: map[string]*fakeChain{}}
		for _, c := range cs {
			ft.chains[c] = &fakeChain{builtin: true, policy: "ACCEPT"}
		}
		f.tables[t] = ft
	}
	return f
}

// InjectRestoreError makes the next Restore fail with err and apply nothing.
func (f *Fake) InjectRestoreError(err error) { f.injected = err }

// Restore applies restore input with --noflush semantics, all or nothing.
func (f *Fake) Restore(data []byte) error {
	if err := f.injected; err != nil {
		f.injected = nil
		return fmt.Errorf("fake iptables-restore: %w", err)
	}
	var table *fakeTable
	var tableName string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fail := func(format string, a ...any) error {
			return fmt.Errorf("fake iptables-restore: line %d %q: %s", n, line, fmt.Sprintf(format, a...))
		}
		switch {
		case strings.HasPrefix(line, "*"):
			if table != nil {
				return fail("table %s not committed", tableName)
			}
			tableName = line[1:]
			committed := f.tables[tableName]
			if committed == nil {
				return fail("no such table")
			}
			table = committed.clone()
			continue
		case line == "COMMIT":
			if table == nil {
				return fail("COMMIT outside a table")
			}
			f.tables[tableName] = table
			table = nil
			continue
		}
		if table == nil {
			return fail("rule outside a table")
		}
		if strings.HasPrefix(line, ":") {
			fields := strings.Fields(line[1:])
			if len(fields) < 2 {
				return fail("bad chain declaration")
			}
			if err := table.declare(fields[0], fields[1]); err != nil {
				return fail("%v", err)
			}
			continue
		}
		words, err := splitWords(line)
		if err != nil {
			return fail("%v", err)
		}
		if err := table.command(words); err != nil {
			return fail("%v", err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("fake iptables-restore: read input: %w", err)
	}
	if table != nil {
		return fmt.Errorf("fake iptables-restore: table %s not committed", tableName)
	}
	f.LastRestore = append([]byte(nil), data...)
	return nil
}

func (t *fakeTable) declare(name, policy string) error {
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
		t.chains[name] = &fakeChain{}
		return nil
	}
	c.rules = nil // --noflush: declaring an existing chain flushes it
	return nil
}

// command applies one -A/-I/-D/-F/-N/-X line.
func (t *fakeTable) command(w []string) error {
	if len(w) < 2 {
		return errors.New("incomplete command")
	}
	op, name := w[0], w[1]
	c := t.chains[name]
	switch op {
	case "-N":
		if c != nil {
			return fmt.Errorf("chain %s already exists", name)
		}
		t.chains[name] = &fakeChain{}
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
	rest := w[2:]
	pos := 0
	if op == "-I" && len(rest) > 0 {
		if _, err := fmt.Sscanf(rest[0], "%d", &pos); err == nil {
			rest = rest[1:]
			pos--
		}
	}
	rule := joinWords(rest)
	if op == "-D" {
		i := slices.Index(c.rules, rule)
		if i < 0 {
			return fmt.Errorf("no such rule in %s: %s", name, rule)
		}
		c.rules = slices.Delete(c.rules, i, i+1)
		return nil
	}
	if tgt := jumpTarget(rest); tgt != "" && !standardTargets[tgt] {
		tc := t.chains[tgt]
		if tc == nil {
			return fmt.Errorf("jump to chain %s, which does not exist", tgt)
		}
		if tc.builtin {
			return fmt.Errorf("jump to built-in chain %s", tgt)
		}
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

// referrer names a chain with a rule that jumps to name, or "".
func (t *fakeTable) referrer(name string) string {
	for _, cn := range slices.Sorted(maps.Keys(t.chains)) {
		for _, r := range t.chains[cn].rules {
			w, _ := splitWords(r)
			if jumpTarget(w) == name {
				return cn
			}
		}
	}
	return ""
}

// jumpTarget returns the word after -j or -g.
func jumpTarget(w []string) string {
	for i := 0; i+1 < len(w); i++ {
		if w[i] == "-j" || w[i] == "-g" || w[i] == "--jump" || w[i] == "--goto" {
			return w[i+1]
		}
	}
	return ""
}

func (f *Fake) ChainExists(table, chain string) (bool, error) {
	t := f.tables[table]
	if t == nil {
		return false, fmt.Errorf("fake: no table %s", table)
	}
	return t.chains[chain] != nil, nil
}

func (f *Fake) EnsureRule(table, chain string, rule ...string) error {
	t, c, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	text := joinWords(rule)
	if slices.Contains(c.rules, text) {
		return nil
	}
	if tgt := jumpTarget(rule); tgt != "" && !standardTargets[tgt] && t.chains[tgt] == nil {
		return fmt.Errorf("fake: ensure rule in %s/%s: jump to missing chain %s", table, chain, tgt)
	}
	c.rules = slices.Insert(c.rules, 0, text)
	return nil
}

func (f *Fake) DeleteRule(table, chain string, rule ...string) error {
	_, c, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	if i := slices.Index(c.rules, joinWords(rule)); i >= 0 {
		c.rules = slices.Delete(c.rules, i, i+1)
	}
	return nil
}

func (f *Fake) ListChains(table string) ([]string, error) {
	t := f.tables[table]
	if t == nil {
		return nil, fmt.Errorf("fake: no table %s", table)
	}
	return f.chainOrder(table), nil
}

func (f *Fake) Save(table string) ([]byte, error) {
	if f.tables[table] == nil {
		return nil, fmt.Errorf("fake: no table %s", table)
	}
	return []byte(f.DumpTable(table)), nil
}

// DeleteChainForTest removes a chain and every rule jumping to it, as an administrator's
// `iptables -F; iptables -X` would; tests use it to simulate an external flush.
func (f *Fake) DeleteChainForTest(table, chain string) {
	t := f.tables[table]
	if t == nil {
		return
	}
	for _, c := range t.chains {
		c.rules = slices.DeleteFunc(c.rules, func(r string) bool { w, _ := splitWords(r); return jumpTarget(w) == chain })
	}
	delete(t.chains, chain)
}

func (f *Fake) chain(table, chain string) (*fakeTable, *fakeChain, error) {
	t := f.tables[table]
	if t == nil {
		return nil, nil, fmt.Errorf("fake: no table %s", table)
	}
	c := t.chains[chain]
	if c == nil {
		return nil, nil, fmt.Errorf("fake: no chain %s in %s", chain, table)
	}
	return t, c, nil
}

// chainOrder lists built-in chains in kernel order, then user chains sorted, as iptables-save does.
func (f *Fake) chainOrder(table string) []string {
	t := f.tables[table]
	out := slices.Clone(builtinChains[table])
	var user []string
	for name, c := range t.chains {
		if !c.builtin {
			user = append(user, name)
		}
	}
	slices.Sort(user)
	return append(out, user...)
}

// Dump returns filter, nat and mangle (and raw if it has rules) as iptables-save text.
func (f *Fake) Dump() string {
	var b strings.Builder
	for _, table := range []string{TableFilter, TableNAT, TableMangle, "raw"} {
		b.WriteString(f.DumpTable(table))
	}
	return b.String()
}

// DumpTable returns one table as iptables-save text.
func (f *Fake) DumpTable(table string) string {
	t := f.tables[table]
	if t == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString("*" + table + "\n")
	order := f.chainOrder(table)
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

// Rules returns the rules of table/chain (the words after "-A CHAIN"), or nil.
func (f *Fake) Rules(table, chain string) []string {
	if t := f.tables[table]; t != nil {
		if c := t.chains[chain]; c != nil {
			return slices.Clone(c.rules)
		}
	}
	return nil
}

func (t *fakeTable) clone() *fakeTable {
	out := &fakeTable{chains: make(map[string]*fakeChain, len(t.chains))}
	for cn, c := range t.chains {
		nc := *c
		nc.rules = slices.Clone(c.rules)
		out.chains[cn] = &nc
	}
	return out
}

// splitWords splits a line like a shell would for iptables-restore: on blanks, with double-quoted
// words kept whole (quotes removed).
func splitWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case ch == '"':
			quoted = !quoted
			inWord = true
		case (ch == ' ' || ch == '\t') && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if quoted {
		return nil, errors.New("unterminated quote")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// joinWords is splitWords' inverse: words with blanks are double-quoted, as iptables-save prints
// comments.
func joinWords(w []string) string {
	out := make([]string, len(w))
	for i, s := range w {
		if s == "" || strings.ContainsAny(s, " \t") {
			s = `"` + s + `"`
		}
		out[i] = s
	}
	return strings.Join(out, " ")
}
