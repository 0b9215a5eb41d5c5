package ipvs

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// FakeSysctl is an in-memory /proc/sys. Setting a name that does not exist fails like the file system
// (os.ErrNotExist), and names in ReadOnly fail with os.ErrPermission, as in an unprivileged container.
type FakeSysctl struct {
	Values   map[string]string
	ReadOnly map[string]bool
}

var _ Sysctl = (*FakeSysctl)(nil)

// NewFakeSysctl returns the sysctls of a kernel with IPVS loaded, at the kernel's defaults.
func NewFakeSysctl() *FakeSysctl {
	return &FakeSysctl{Values: map[string]string{
		"net/ipv4/vs/conntrack":                 "0",
		"net/ipv4/vs/expire_nodest_conn":        "0",
		"net/ipv4/vs/expire_quiescent_template": "0",
		"net/ipv4/conf/all/arp_ignore":          "0",
		"net/ipv4/conf/all/arp_announce":        "0",
	}, ReadOnly: map[string]bool{}}
}

func (f *FakeSysctl) Get(name string) (string, error) {
	v, ok := f.Values[name]
	if !ok {
		return "", &os.PathError{Op: "open", Path: "/proc/sys/" + name, Err: os.ErrNotExist}
	}
	return v, nil
}

func (f *FakeSysctl) Set(name, value string) error {
	if _, ok := f.Values[name]; !ok {
		return &os.PathError{Op: "open", Path: "/proc/sys/" + name, Err: os.ErrNotExist}
	}
	if f.ReadOnly[name] {
		return &os.PathError{Op: "open", Path: "/proc/sys/" + name, Err: os.ErrPermission}
	}
	f.Values[name] = value
	return nil
}

// FakeConntrack holds UDP flows as "vip:port -> real server" and deletes the matching ones.
type FakeConntrack struct {
	Flows map[FakeFlow]int // flow -> number of entries (clients)
}

// FakeFlow is a conntrack entry's identity as the IPVS backend clears it.
type FakeFlow struct {
	VIP  netip.AddrPort
	Dest netip.AddrPort
}

var _ Conntrack = (*FakeConntrack)(nil)

func NewFakeConntrack() *FakeConntrack { return &FakeConntrack{Flows: map[FakeFlow]int{}} }

func (f *FakeConntrack) ClearUDPDest(vip netip.Addr, port uint16, dest netip.AddrPort) error {
	delete(f.Flows, FakeFlow{netip.AddrPortFrom(vip, port), dest})
	return nil
}

// FakeIptables is an in-memory iptables with iptables-restore --noflush semantics: declaring a user
// chain creates or flushes it, declaring a built-in one leaves it alone, a table's changes apply only
// at COMMIT and not at all if any line fails. Like the kernel it refuses a rule in or jumping to a
// missing chain, deleting a chain that is still referenced, and (when SetExists is set) a rule that
// matches an ipset that does not exist.
type FakeIptables struct {
	Tables    map[string]map[string][]string // table -> chain -> rules (argument strings)
	SetExists func(name string) bool
	Restores  int
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
	f.Restores++
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
