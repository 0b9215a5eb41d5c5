package ipvs

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// FakeIptables is this backend's own in-memory iptables (proxier/iptables has a richer Fake, but
// importing that package here would tie this backend's build to the other one's). It is an in-memory iptables with iptables-restore --noflush semantics: declaring a user
// chain creates or flushes it, declaring a built-in one leaves it alone, a table's changes apply only
// at COMMIT and not at all if any line fails. Like the kernel it refuses a rule in or jumping to a
// missing chain, deleting a chain that is still referenced, and (when SetExists is set) a rule that
// matches an ipset that does not exist.
type FakeIptables struct {
	Tables    map[string]map[string][]string // table -> chain -> rules (argument strings)
	SetExists func(name string) bool
	Calls     int // every call, mutating or not
}

var _ Iptables = (*FakeIptables)(nil)

var builtinChains = map[string][]string{
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
	"mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
}

func NewFakeIptables() *FakeIptables {
	f := &FakeIptables{Tables: map[string]map[string][]string{}}
	for t, chains := range builtinChains {
		f.Tables[t] = map[string][]string{}
		for _, c := range chains {
			f.Tables[t][c] = nil
		}
	}
	return f
}

func isBuiltin(table, chain string) bool { return slices.Contains(builtinChains[table], chain) }

// splitArgs splits a rule like a shell would for iptables-restore: on spaces, keeping "quoted words".
func splitArgs(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, have = !inQuote, true
		case r == ' ' && !inQuote:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

func joinArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsRune(a, ' ') {
			a = `"` + a + `"`
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

func (f *FakeIptables) checkRule(table string, chains map[string][]string, args []string) error {
	for i := 0; i < len(args)-1; i++ {
		switch args[i] {
		case "-j", "-g":
			t := args[i+1]
			if strings.ToUpper(t) != t || strings.Contains(t, "-") {
				if _, ok := chains[t]; !ok {
					return fmt.Errorf("jump to missing chain %s", t)
				}
			}
		case "--match-set":
			if f.SetExists != nil && !f.SetExists(args[i+1]) {
				return fmt.Errorf("set %s doesn't exist", args[i+1])
			}
		}
	}
	return nil
}

func (f *FakeIptables) Restore(data []byte) error {
	f.Calls++
	var table string
	var work map[string][]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		fail := func(format string, a ...any) error {
			return fmt.Errorf("iptables-restore: line %d failed (%q): %s", n, line, fmt.Sprintf(format, a...))
		}
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			table = line[1:]
			cur, ok := f.Tables[table]
			if !ok {
				return fail("unknown table")
			}
			work = map[string][]string{}
			for c, r := range cur {
				work[c] = slices.Clone(r)
			}
		case line == "COMMIT":
			if work == nil {
				return fail("COMMIT outside a table")
			}
			f.Tables[table] = work
			work = nil
		case work == nil:
			return fail("rule outside a table")
		case strings.HasPrefix(line, ":"):
			chain := strings.Fields(line[1:])[0]
			if !isBuiltin(table, chain) {
				work[chain] = nil
			}
		default:
			args := splitArgs(line)
			if len(args) < 2 {
				return fail("bad line")
			}
			chain := args[1]
			if _, ok := work[chain]; !ok {
				return fail("no chain %s", chain)
			}
			switch args[0] {
			case "-A":
				if err := f.checkRule(table, work, args[2:]); err != nil {
					return fail("%v", err)
				}
				work[chain] = append(work[chain], joinArgs(args[2:]))
			case "-X":
				if isBuiltin(table, chain) {
					return fail("cannot delete built-in chain")
				}
				if len(work[chain]) > 0 {
					return fail("chain %s not empty", chain)
				}
				for c, rules := range work {
					for _, r := range rules {
						if slices.Contains(splitArgs(r), chain) {
							return fail("chain %s referenced from %s", chain, c)
						}
					}
				}
				delete(work, chain)
			default:
				return fail("unsupported command %s", args[0])
			}
		}
	}
	if work != nil {
		return fmt.Errorf("iptables-restore: table %s without COMMIT", table)
	}
	return nil
}

func (f *FakeIptables) EnsureRule(table, chain string, args ...string) error {
	f.Calls++
	chains, ok := f.Tables[table]
	if !ok {
		return fmt.Errorf("no table %s", table)
	}
	rules, ok := chains[chain]
	if !ok {
		return fmt.Errorf("no chain %s/%s", table, chain)
	}
	r := joinArgs(args)
	if slices.Contains(rules, r) {
		return nil
	}
	if err := f.checkRule(table, chains, args); err != nil {
		return err
	}
	chains[chain] = append([]string{r}, rules...)
	return nil
}

func (f *FakeIptables) DeleteRule(table, chain string, args ...string) error {
	f.Calls++
	chains := f.Tables[table]
	r := joinArgs(args)
	if i := slices.Index(chains[chain], r); i >= 0 {
		chains[chain] = slices.Delete(chains[chain], i, i+1)
	}
	return nil
}

// Chains lists a table's chains that are not built in, sorted.
func (f *FakeIptables) Chains(table string) []string {
	var out []string
	for c := range f.Tables[table] {
		if !isBuiltin(table, c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

// RuleCount is the number of rules in all tables.
func (f *FakeIptables) RuleCount() int {
	n := 0
	for _, chains := range f.Tables {
		for _, r := range chains {
			n += len(r)
		}
	}
	return n
}

// Dump prints the tables as iptables-save does (built-in chains first, then the rest, sorted), so the
// packet tracer can walk the fake's end state.
func (f *FakeIptables) Dump() string {
	var b strings.Builder
	tables := make([]string, 0, len(f.Tables))
	for t := range f.Tables {
		tables = append(tables, t)
	}
	slices.Sort(tables)
	for _, t := range tables {
		chains := append(slices.Clone(builtinChains[t]), f.Chains(t)...)
		fmt.Fprintf(&b, "*%s\n", t)
		for _, c := range chains {
			policy := "-"
			if isBuiltin(t, c) {
				policy = "ACCEPT"
			}
			fmt.Fprintf(&b, ":%s %s [0:0]\n", c, policy)
		}
		for _, c := range chains {
			for _, r := range f.Tables[t][c] {
				fmt.Fprintf(&b, "-A %s %s\n", c, r)
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}
