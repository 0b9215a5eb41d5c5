// Package tracer parses iptables-save text into a model and walks packets through it the way the
// kernel's netfilter hooks would, so that tests can assert what rules do (where a packet is DNATed
// to, whether it is dropped, rejected or masqueraded) instead of what they look like.
//
// The parser is strict on purpose: any match, option or target it does not understand is an error
// that names the rule. A renderer that starts emitting something new therefore breaks the tests that
// trace its output until the tracer learns the new construct, and the two cannot drift apart. It
// also refuses what the kernel refuses at load time: jumps to missing or built-in chains, loops,
// DNAT/SNAT/MASQUERADE/REJECT reachable from hooks that do not allow them, DROP in nat, deleting a
// chain that is referenced or not empty.
//
// ParseLenient is the other mode, for a live node's tables (`switchyard explain`), which also hold
// other agents' rules: a rule it does not understand becomes opaque, and a walk that reaches one
// which could match its packet stops there (Verdict Unknown) rather than guess. It parses a chain
// only when a walk first enters it, so rules in chains a packet never enters cost nothing and
// cannot stop it.
//
// The walk models the first packet of a connection: raw, mangle, nat and filter (and security) at
// PREROUTING, the routing decision from the Node's interfaces and routes, INPUT or FORWARD, and
// POSTROUTING; or OUTPUT, routing and POSTROUTING (then INPUT on lo) for a locally generated packet.
// nat chains are walked only for a NEW packet, and a NAT target ends its table for that hook, as
// conntrack does. Every -m statistic branch is explored and reported with its probability, using
// the kernel's 31-bit quantisation. -m recent lists persist across traces on the tracer's own clock.
//
// Not modelled, on purpose: bridged traffic (br_netfilter), IPVS, reverse-path filtering, ip_forward
// being off, established-connection state beyond the CtState the caller gives, and the raw/mangle
// PREROUTING walk of a looped-back packet.
package tracer

import (
	"fmt"
	"sort"
	"strings"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
)

// Ruleset is the state of the iptables tables of one address family: what iptables-save prints.
type Ruleset struct {
	Tables map[string]*Table
	// lenient is set by ParseLenient: a rule that fails to evaluate then stops its walk (Unknown)
	// instead of failing the trace.
	lenient bool
}

// Table is one iptables table (filter, nat, mangle, raw, security).
type Table struct {
	Name   string
	Chains map[string]*Chain
}

// Chain is a built-in or user-defined chain.
type Chain struct {
	Name    string
	Builtin bool
	// Policy is ACCEPT or DROP for a built-in chain and empty for a user chain.
	Policy string
	// Rules are the chain's rules. In a ruleset from ParseLenient they are parsed the first time
	// the chain is used (a walk enters it, Ruleset.Chain returns it), so that reading a live node's
	// tables costs only the chains a packet passes; until then they wait in pending.
	Rules []*Rule

	pending []utiliptables.Line
	table   *Table // for pending's jumps
}

// resolve parses a lenient chain's pending rules. A rule that does not parse, or that the kernel
// would refuse in this table, becomes opaque. It is not safe to walk one leniently parsed ruleset
// from several goroutines.
func (c *Chain) resolve() {
	if c.pending == nil {
		return
	}
	for _, l := range c.pending {
		words, err := l.Words()
		var r *Rule
		if err == nil {
			r, err = parseRule(c.table.Name, c.Name, words)
		}
		if err == nil {
			err = c.table.checkRule(r)
		}
		if err != nil {
			r = opaqueRule(c.Name, words, err)
		}
		// Reports quote the rule exactly as iptables-save printed it.
		r.Text, r.Line = l.Rule, l.N
		c.Rules = append(c.Rules, r)
	}
	c.pending = nil
}

// Rule is one parsed rule. Text is the rule as written (after "-A CHAIN"), kept for messages.
type Rule struct {
	Chain   string
	Text    string
	Line    int
	Comment string
	// Unparsed is set only by ParseLenient, for a rule it could not understand (another agent's
	// match or target, or one the kernel would refuse from where it is reached): why. Such a rule is
	// opaque: it keeps only its leading -s/-d/-p/-i/-o, and a walk whose packet those could match
	// stops at it instead of guessing what it does.
	Unparsed error

	generic []match // -s -d -p -i -o: the kernel checks these before any -m match
	matches []match
	target  target
}

func (r *Rule) String() string { return fmt.Sprintf("-A %s %s", r.Chain, r.Text) }

// NewRuleset returns a ruleset with no tables, like a fresh network namespace before any table is
// loaded.
func NewRuleset() *Ruleset { return &Ruleset{Tables: map[string]*Table{}} }

// Parse reads iptables-save output (optionally with -c counters) into a Ruleset and validates it the
// way the kernel would validate a load: unknown jump targets, loops, and targets used from hooks
// that do not allow them are errors.
func Parse(text string) (*Ruleset, error) {
	rs := NewRuleset()
	if err := rs.Restore(text, false); err != nil {
		return nil, err
	}
	return rs, nil
}

// ParseLenient reads a live node's iptables-save output, which also holds other agents' rules
// (kubelet's, a CNI's, Docker's). Where Parse fails on a rule it does not understand, ParseLenient
// keeps it as an opaque rule (Rule.Unparsed), and tables the tracer does not know are skipped. A
// walk that reaches an opaque rule which could match its packet stops there (Verdict Unknown), so
// a foreign rule only matters in the chains a packet really passes. Input that is not
// iptables-save output at all (bad quoting, a missing COMMIT, a loop) is still an error.
func ParseLenient(text string) (*Ruleset, error) {
	rs := NewRuleset()
	if err := rs.restore(text, false, true); err != nil {
		return nil, err
	}
	return rs, nil
}

// Restore applies iptables-restore input to the ruleset, atomically: on error the ruleset is left as
// it was. With noflush false each table named in the input is replaced; with noflush true, as with
// `iptables-restore --noflush`, declared user chains are flushed (or created), built-in chains keep
// their rules and only take the declared policy, and -X deletes a chain.
func (rs *Ruleset) Restore(text string, noflush bool) error {
	return rs.restore(text, noflush, false)
}

func (rs *Ruleset) restore(text string, noflush, lenient bool) error {
	next := rs.clone()
	blocks, parseErr := utiliptables.ParseRestore([]byte(text))
	for _, b := range blocks {
		if !utiliptables.KnownTable(b.Table) {
			if lenient {
				continue
			}
			return fmt.Errorf("line %d %q: unknown table %q", b.Line, "*"+b.Table, b.Table)
		}
		t := next.Tables[b.Table]
		if t == nil || !noflush {
			t = newTable(b.Table)
			next.Tables[b.Table] = t
		}
		for _, l := range b.Lines {
			if l.Declared {
				if err := declareChain(t, l.Chain, l.Policy, noflush); err != nil {
					return fmt.Errorf("line %d %q: %v", l.N, l.Text, err)
				}
				continue
			}
			if lenient && (l.Op == "-A" || l.Op == "--append") {
				c := t.Chains[l.Chain]
				if c == nil {
					return fmt.Errorf("line %d: chain %s does not exist in table %s", l.N, l.Chain, t.Name)
				}
				c.pending, c.table = append(c.pending, l), t
				continue
			}
			if err := applyCommand(t, l); err != nil {
				return fmt.Errorf("line %d: %w", l.N, err)
			}
		}
	}
	if parseErr != nil {
		return parseErr
	}
	// The kernel validated a live node's tables when they were loaded (no loops, targets only
	// where their hooks allow them), and a lenient parse only reads what a walk reaches.
	if !lenient {
		if err := next.validate(); err != nil {
			return err
		}
	}
	next.lenient = next.lenient || lenient
	*rs = *next
	return nil
}

func newTable(name string) *Table {
	t := &Table{Name: name, Chains: map[string]*Chain{}}
	for _, c := range utiliptables.BuiltinChains(name) {
		t.Chains[c] = &Chain{Name: c, Builtin: true, Policy: "ACCEPT"}
	}
	return t
}

func (rs *Ruleset) clone() *Ruleset {
	out := NewRuleset()
	out.lenient = rs.lenient
	for name, t := range rs.Tables {
		nt := &Table{Name: name, Chains: map[string]*Chain{}}
		for cn, c := range t.Chains {
			c.resolve()
			cc := *c
			cc.Rules = append([]*Rule(nil), c.Rules...) // rules are immutable once parsed
			nt.Chains[cn] = &cc
		}
		out.Tables[name] = nt
	}
	return out
}

func declareChain(t *Table, name, policy string, noflush bool) error {
	if len(name) > 28 {
		return fmt.Errorf("chain name %q longer than 28 characters", name)
	}
	if utiliptables.IsBuiltin(t.Name, name) {
		if policy != "ACCEPT" && policy != "DROP" {
			return fmt.Errorf("built-in chain %s needs policy ACCEPT or DROP, not %q", name, policy)
		}
		c := t.Chains[name]
		c.Policy = policy
		if !noflush {
			c.Rules = nil
		}
		return nil
	}
	if policy != "-" {
		return fmt.Errorf("user chain %s cannot have policy %q", name, policy)
	}
	if strings.HasPrefix(name, "-") || name == "" {
		return fmt.Errorf("bad chain name %q", name)
	}
	// Declaring a chain creates it or, if it exists, flushes it.
	t.Chains[name] = &Chain{Name: name}
	return nil
}

func applyCommand(t *Table, l utiliptables.Line) error {
	cmd, chainName := l.Op, l.Chain
	args, err := l.Words()
	if err != nil {
		return err
	}
	c := t.Chains[chainName]
	if c == nil {
		return fmt.Errorf("chain %s does not exist in table %s", chainName, t.Name)
	}
	switch cmd {
	case "-A", "--append":
		r, err := parseRule(t.Name, chainName, args)
		if err != nil {
			return err
		}
		r.Line = l.N
		c.Rules = append(c.Rules, r)
	case "-F", "--flush":
		if len(args) != 0 {
			return fmt.Errorf("-F takes only a chain name")
		}
		c.Rules, c.pending = nil, nil
	case "-X", "--delete-chain":
		if len(args) != 0 {
			return fmt.Errorf("-X takes only a chain name")
		}
		if c.Builtin {
			return fmt.Errorf("cannot delete built-in chain %s", chainName)
		}
		if n := len(c.Rules) + len(c.pending); n > 0 {
			return fmt.Errorf("cannot delete chain %s: it still holds %d rules", chainName, n)
		}
		// Whether anything still jumps to it is checked by validate, after the whole input.
		delete(t.Chains, chainName)
	default:
		return fmt.Errorf("unsupported command %q", cmd)
	}
	return nil
}

// Chain returns the named chain of the named table, or nil.
func (rs *Ruleset) Chain(table, chain string) *Chain {
	t := rs.Tables[table]
	if t == nil || t.Chains[chain] == nil {
		return nil
	}
	c := t.Chains[chain]
	c.resolve()
	return c
}

// ChainNames returns the table's chain names, sorted, for messages and tests.
func (t *Table) ChainNames() []string {
	names := make([]string, 0, len(t.Chains))
	for n := range t.Chains {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// RuleCount is the number of rules in all tables.
func (rs *Ruleset) RuleCount() int {
	n := 0
	for _, t := range rs.Tables {
		for _, c := range t.Chains {
			n += len(c.Rules) + len(c.pending)
		}
	}
	return n
}
