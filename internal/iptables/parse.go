package iptables

import (
	"errors"
	"fmt"
	"strings"
)

// SplitWords splits one line of iptables-restore input into words the way iptables-restore does:
// on blanks, with double quotes grouping words (the quotes removed) and, inside quotes, a backslash
// escaping a quote or a backslash.
func SplitWords(line string) ([]string, error) {
	if !strings.ContainsRune(line, '"') {
		return strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' }), nil
	}
	var words []string
	var b strings.Builder
	inWord, inQuote := false, false
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case inQuote && ch == '\\' && i+1 < len(line) && (line[i+1] == '"' || line[i+1] == '\\'):
			b.WriteByte(line[i+1])
			i++
		case ch == '"':
			inQuote = !inQuote
			inWord = true
		case !inQuote && (ch == ' ' || ch == '\t'):
			if inWord {
				words = append(words, b.String())
				b.Reset()
				inWord = false
			}
		default:
			b.WriteByte(ch)
			inWord = true
		}
	}
	if inQuote {
		return nil, errors.New("unterminated quote")
	}
	if inWord {
		words = append(words, b.String())
	}
	return words, nil
}

// JoinWords is SplitWords' inverse, quoting as iptables-save prints: a word that is empty or holds
// a blank or a quote is double-quoted, with quotes and backslashes inside escaped.
func JoinWords(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		if w == "" || strings.ContainsAny(w, " \t\"") {
			w = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(w) + `"`
		}
		out[i] = w
	}
	return strings.Join(out, " ")
}

// JumpTarget returns the word after -j, -g, --jump or --goto in a rule's words, or "".
func JumpTarget(words []string) string {
	for i := 0; i+1 < len(words); i++ {
		switch words[i] {
		case "-j", "-g", "--jump", "--goto":
			return words[i+1]
		}
	}
	return ""
}

// Block is one "*table ... COMMIT" section of iptables-restore input, which iptables-restore
// commits as one transaction.
type Block struct {
	Table string
	Line  int // of the "*table" line, counting from 1
	Lines []Line
}

// Line is a chain declaration or a command inside a Block.
type Line struct {
	N    int    // line number, counting from 1
	Text string // the line, trimmed
	// Declared is true for ":CHAIN POLICY [packets:bytes]"; Policy is "-" for a user chain.
	Declared bool
	Policy   string
	// Op is the command of a non-declaration ("-A", "-I", "-D", "-F", "-N", "-X" or their long
	// forms, as written); Chain is the chain either names.
	Op, Chain string
	// Rule is what follows the chain, as written (what iptables-save prints after "-A CHAIN "). A
	// leading "[packets:bytes]" of iptables-save -c is not part of it.
	Rule string
}

// Words returns Rule split into words, quotes removed.
func (l Line) Words() ([]string, error) { return SplitWords(l.Rule) }

// Error is a line of restore input that cannot be read.
type Error struct {
	N    int
	Text string
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("line %d %q: %s", e.N, e.Text, e.Msg) }

// ParseRestore reads iptables-restore (or iptables-save) text into its table blocks. It checks only
// the structure (every line in a block, every block committed); what the lines mean, and whether
// their words split (Line.Words), is for the caller. On error it returns the blocks completed before the bad line, since
// iptables-restore has committed those by the time it reaches it, and an *Error.
func ParseRestore(data []byte) ([]Block, error) {
	var blocks []Block
	var cur *Block
	text := string(data)
	for n := 1; text != ""; n++ {
		var raw string
		raw, text, _ = strings.Cut(text, "\n")
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fail := func(format string, a ...any) ([]Block, error) {
			return blocks, &Error{N: n, Text: line, Msg: fmt.Sprintf(format, a...)}
		}
		switch {
		case strings.HasPrefix(line, "*"):
			if cur != nil {
				return fail("table %s not committed before next table", cur.Table)
			}
			cur = &Block{Table: line[1:], Line: n}
		case line == "COMMIT":
			if cur == nil {
				return fail("COMMIT outside a table")
			}
			blocks = append(blocks, *cur)
			cur = nil
		case cur == nil && strings.HasPrefix(line, ":"):
			return fail("chain declared outside a table")
		case cur == nil:
			return fail("rule outside a table")
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) < 2 {
				return fail("chain declaration needs a name and a policy")
			}
			cur.Lines = append(cur.Lines, Line{N: n, Text: line, Declared: true, Chain: f[0], Policy: f[1]})
		default:
			// The command and the chain are never quoted; the rest is split by whoever needs its
			// words (Line.Words), so that reading a large iptables-save output stays cheap.
			rest := line
			word := func() string {
				rest = strings.TrimLeft(rest, " \t")
				i := strings.IndexAny(rest, " \t")
				if i < 0 {
					i = len(rest)
				}
				w := rest[:i]
				rest = rest[i:]
				return w
			}
			op := word()
			if strings.HasPrefix(op, "[") {
				op = word()
			}
			chain := word()
			if op == "" || chain == "" {
				return fail("incomplete command")
			}
			cur.Lines = append(cur.Lines, Line{N: n, Text: line, Op: op, Chain: chain, Rule: strings.TrimLeft(rest, " \t")})
		}
	}
	if cur != nil {
		return blocks, fmt.Errorf("table %s: missing COMMIT", cur.Table)
	}
	return blocks, nil
}

// Dump is iptables-save output read into tables, chains and rules.
type Dump struct {
	Tables []*SavedTable // in the order of the input
}

// SavedTable is one table of a Dump.
type SavedTable struct {
	Name   string
	Chains []*SavedChain // declared ones in declaration order, then any only appended to
}

// SavedChain is a chain of a SavedTable: its policy ("-" for a user chain) and its rules.
type SavedChain struct {
	Name, Policy string
	// Rules are the "-A CHAIN" lines' rules as written (after "-A CHAIN ").
	Rules []string
}

// ParseSave reads iptables-save output. A table that appears twice (iptables-save of both families
// concatenated) is kept twice. On a structural error it returns what it read before it, with the
// error.
func ParseSave(data []byte) (*Dump, error) {
	blocks, err := ParseRestore(data)
	d := &Dump{}
	for _, b := range blocks {
		t := &SavedTable{Name: b.Table}
		byName := map[string]*SavedChain{}
		chain := func(name string) *SavedChain {
			c := byName[name]
			if c == nil {
				c = &SavedChain{Name: name}
				byName[name] = c
				t.Chains = append(t.Chains, c)
			}
			return c
		}
		for _, l := range b.Lines {
			switch {
			case l.Declared:
				chain(l.Chain).Policy = l.Policy
			case l.Op == "-A" || l.Op == "--append":
				c := chain(l.Chain)
				c.Rules = append(c.Rules, l.Rule)
			}
		}
		d.Tables = append(d.Tables, t)
	}
	return d, err
}

// Table returns the first table of that name, or nil.
func (d *Dump) Table(name string) *SavedTable {
	for _, t := range d.Tables {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// Chain returns the chain of that name, or nil.
func (t *SavedTable) Chain(name string) *SavedChain {
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Counts is how many rules and declared chains some restore text holds.
type Counts struct {
	Rules, Chains int
	// UserChains counts declared chains whose policy is "-".
	UserChains int
}

// Count counts the rules ("-A" lines) and declared chains of restore or save text, per table.
func (d *Dump) Count() map[string]Counts {
	out := map[string]Counts{}
	for _, t := range d.Tables {
		c := out[t.Name]
		for _, ch := range t.Chains {
			c.Rules += len(ch.Rules)
			if ch.Policy != "" {
				c.Chains++
			}
			if ch.Policy == "-" {
				c.UserChains++
			}
		}
		out[t.Name] = c
	}
	return out
}

// Rules is the number of rules in all tables.
func (d *Dump) Rules() int {
	n := 0
	for _, c := range d.Count() {
		n += c.Rules
	}
	return n
}

// RuleLines returns the chain's rules as "-A" lines, each ending in a newline. A restore of them
// recreates the rules exactly.
func (c *SavedChain) RuleLines() string {
	n := 0
	for _, r := range c.Rules {
		n += len(c.Name) + len(r) + 5
	}
	var b strings.Builder
	b.Grow(n)
	for _, r := range c.Rules {
		b.WriteString("-A ")
		b.WriteString(c.Name)
		if r != "" {
			b.WriteByte(' ')
			b.WriteString(r)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// String prints the table as iptables-save does, without comments and counters (which change when
// no rule does): declarations, then rules chain by chain.
func (t *SavedTable) String() string {
	var b strings.Builder
	b.WriteString("*" + t.Name + "\n")
	for _, c := range t.Chains {
		if c.Policy != "" {
			b.WriteString(":" + c.Name + " " + c.Policy + "\n")
		}
	}
	for _, c := range t.Chains {
		b.WriteString(c.RuleLines())
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// ChainRules reads one table of iptables-save output as, for each chain, its RuleLines; a declared
// chain without rules maps to "". Callers compare them with rendered text.
func ChainRules(data []byte) map[string]string {
	out := map[string]string{}
	d, _ := ParseSave(data) // what iptables-save printed before a bad line is still the kernel's
	for _, t := range d.Tables {
		for _, c := range t.Chains {
			out[c.Name] += c.RuleLines()
		}
	}
	return out
}
