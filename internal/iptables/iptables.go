// Package iptables is Switchyard's one seam to the kernel's iptables: the Interface every user
// (iptables mode, IPVS mode, the pod network) programs through, the Exec implementation for one
// family and variant (iptables-restore and iptables-save runs for whole tables, the
// github.com/coreos/go-iptables library for single rules and chain checks, optionally inside another
// network namespace), variant detection, and the one reader of iptables-save / iptables-restore text
// (a quote-aware word splitter and a parser into tables, chains and rules) that everything reading
// that text builds on. The stateful fake, and the Exec of a test namespace, live in iptablestest.
package iptables

import "slices"

// Interface is what Switchyard does to the iptables tables of one family: whole chains through one
// iptables-restore --noflush transaction, plus the few rules in built-in chains that a --noflush
// restore cannot own. Exec runs the binaries; iptablestest.Fake keeps the tables in memory and
// refuses what the kernel refuses.
type Interface interface {
	// Restore feeds data to `iptables-restore --noflush -w`: chains it declares are created or
	// flushed, all others are left alone. On error none of the failing table's block is in force.
	Restore(data []byte) error
	// Save returns `iptables-save -t table`. It reads the whole table: keep it off the hot path.
	Save(table string) ([]byte, error)
	// ChainExists reports whether table holds chain.
	ChainExists(table, chain string) (bool, error)
	// EnsureRule adds rule to table/chain at pos unless an identical rule is already there.
	EnsureRule(pos Position, table, chain string, rule ...string) error
	// DeleteRule removes rule from table/chain if it is there; an absent rule is not an error.
	DeleteRule(table, chain string, rule ...string) error
	// ListChains returns every chain of table, built-in ones first. It reads the whole table.
	ListChains(table string) ([]string, error)
}

// Position says where EnsureRule puts a missing rule.
type Position int

const (
	// Prepend inserts the rule at the top of the chain (iptables -I).
	Prepend Position = iota
	// Append adds the rule at the end of the chain (iptables -A).
	Append
)

// Table names.
const (
	TableFilter   = "filter"
	TableNAT      = "nat"
	TableMangle   = "mangle"
	TableRaw      = "raw"
	TableSecurity = "security"
)

// builtinChains lists each table's built-in chains in the order iptables-save prints them.
var builtinChains = map[string][]string{
	TableFilter:   {"INPUT", "FORWARD", "OUTPUT"},
	TableNAT:      {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	TableMangle:   {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	TableRaw:      {"PREROUTING", "OUTPUT"},
	TableSecurity: {"INPUT", "FORWARD", "OUTPUT"},
}

// BuiltinChains returns table's built-in chains in kernel order, or nil for an unknown table.
func BuiltinChains(table string) []string { return slices.Clone(builtinChains[table]) }

// IsBuiltin reports whether chain is one of table's built-in chains.
func IsBuiltin(table, chain string) bool { return slices.Contains(builtinChains[table], chain) }

// KnownTable reports whether the kernel has a table of that name.
func KnownTable(table string) bool { return builtinChains[table] != nil }
