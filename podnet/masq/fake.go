package masq

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// Fake keeps tables and chains in memory and applies restore input the way iptables-restore
// --noflush does: a declared chain is created or flushed, "-A" needs a declared or existing chain,
// a "-j" target must be a chain or a known target, and nothing changes unless the table's COMMIT
// is reached.
type Fake struct {
	Tables map[string]map[string][]string // table -> chain -> rules (as written after "-A CHAIN")
}

var _ Iptables = (*Fake)(nil)

var builtin = map[string][]string{
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
}

var knownTargets = map[string]bool{"ACCEPT": true, "DROP": true, "RETURN": true, "MASQUERADE": true, "REJECT": true}

// NewFake returns tables with empty built-in chains.
func NewFake() *Fake {
	f := &Fake{Tables: map[string]map[string][]string{}}
	for t, chains := range builtin {
		f.Tables[t] = map[string][]string{}
		for _, c := range chains {
			f.Tables[t][c] = nil
		}
	}
	return f
}

func (f *Fake) Restore(data []byte) error {
	var table string
	var work map[string][]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			table = line[1:]
			cur, ok := f.Tables[table]
			if !ok {
				return fmt.Errorf("line %d: unknown table %q", n, table)
			}
			work = map[string][]string{}
			for c, rules := range cur {
				work[c] = append([]string(nil), rules...)
			}
		case line == "COMMIT":
			if work == nil {
				return fmt.Errorf("line %d: COMMIT outside a table", n)
			}
			f.Tables[table], work = work, nil
		case strings.HasPrefix(line, ":"):
			if work == nil {
				return fmt.Errorf("line %d: chain outside a table", n)
			}
			work[strings.Fields(line[1:])[0]] = nil
		case strings.HasPrefix(line, "-A "):
			if work == nil {
				return fmt.Errorf("line %d: rule outside a table", n)
			}
			chain, rule, _ := strings.Cut(line[3:], " ")
			if _, ok := work[chain]; !ok {
				return fmt.Errorf("line %d: chain %s does not exist", n, chain)
			}
			if err := checkTarget(work, rule); err != nil {
				return fmt.Errorf("line %d: %w", n, err)
			}
			work[chain] = append(work[chain], rule)
		default:
			return fmt.Errorf("line %d: cannot parse %q", n, line)
		}
	}
	if work != nil {
		return fmt.Errorf("table %s: no COMMIT", table)
	}
	return nil
}

func checkTarget(chains map[string][]string, rule string) error {
	fields := strings.Fields(rule)
	for i, f := range fields {
		if f == "-j" && i+1 < len(fields) {
			t := fields[i+1]
			if _, ok := chains[t]; !ok && !knownTargets[t] {
				return fmt.Errorf("target %s does not exist", t)
			}
		}
	}
	return nil
}

func (f *Fake) EnsureRule(table, chain string, rule []string, insert bool) error {
	chains, ok := f.Tables[table]
	if !ok {
		return fmt.Errorf("unknown table %q", table)
	}
	if _, ok := chains[chain]; !ok {
		return fmt.Errorf("chain %s/%s does not exist", table, chain)
	}
	spec := strings.Join(quote(rule), " ")
	if err := checkTarget(chains, spec); err != nil {
		return err
	}
	for _, r := range chains[chain] {
		if r == spec {
			return nil
		}
	}
	if insert {
		chains[chain] = append([]string{spec}, chains[chain]...)
	} else {
		chains[chain] = append(chains[chain], spec)
	}
	return nil
}

func quote(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \t") {
			a = `"` + a + `"`
		}
		out[i] = a
	}
	return out
}
