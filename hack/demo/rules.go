package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/model"
)

// nodeRules is what one node's kernel and its switchyard say about the iptables rules.
type nodeRules struct {
	node    string
	saver   string            // the iptables-save variant whose tables hold Switchyard's chains
	chains  int               // SY- chains
	rules   map[string]int    // by table: rules in SY- chains or jumping into one
	metrics map[string]string // kubeproxy_sync_proxy_rules_iptables_total by table
	err     error
}

// countRules reads each node's iptables (inside the node's namespace) and its switchyard's
// kubeproxy_sync_proxy_rules_iptables_total metric on 127.0.0.1:10249 (also inside the node).
func (e *env) countRules(ctx context.Context) []nodeRules {
	var out []nodeRules
	for _, n := range e.c.Nodes {
		r := nodeRules{node: n.Name}
		// Switchyard writes to the variant the node uses (legacy or nft); look in both and keep the
		// one holding its chains.
		for _, v := range []struct {
			saver   string
			variant utiliptables.Variant
		}{{"iptables-save", utiliptables.VariantDefault}, {"iptables-legacy-save", utiliptables.VariantLegacy}, {"iptables-nft-save", utiliptables.VariantNFT}} {
			dump, err := cluster.SaveIptables(n.Name, model.IPv4, v.variant)
			if err != nil {
				continue
			}
			chains, rules := countSYRules(string(dump))
			if chains > r.chains {
				r.saver, r.chains, r.rules = v.saver, chains, rules
			}
		}
		if r.saver == "" {
			r.err = fmt.Errorf("no SY- chains in any iptables variant")
		}
		body, err := e.probe.raw(ctx, n.Name, "get", "http://127.0.0.1:10249/metrics", 3*time.Second)
		if err != nil {
			r.err = fmt.Errorf("metrics: %w", err)
		}
		r.metrics = parseRulesMetric(body)
		out = append(out, r)
	}
	return out
}

// parseRulesMetric picks kubeproxy_sync_proxy_rules_iptables_total's value per table out of a
// Prometheus text exposition.
func parseRulesMetric(body string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(body, "\n") {
		// kubeproxy_sync_proxy_rules_iptables_total{ip_family="IPv4",table="nat"} 41
		rest, ok := strings.CutPrefix(line, `kubeproxy_sync_proxy_rules_iptables_total{`)
		if !ok {
			continue
		}
		labels, value, _ := strings.Cut(rest, "} ")
		for _, l := range strings.Split(labels, ",") {
			if table, ok := strings.CutPrefix(l, `table="`); ok {
				out[strings.TrimSuffix(table, `"`)] = strings.TrimSpace(value)
			}
		}
	}
	return out
}

// countSYRules counts, in an iptables-save dump, Switchyard's chains and, per table, the rules
// that are in one of them or jump to one.
func countSYRules(dump string) (chains int, rules map[string]int) {
	rules = map[string]int{}
	saved, _ := utiliptables.ParseSave([]byte(dump)) // what iptables-save printed before a bad line still counts
	for _, t := range saved.Tables {
		for _, c := range t.Chains {
			ours := strings.HasPrefix(c.Name, "SY-")
			if ours && c.Policy != "" {
				chains++
			}
			for _, r := range c.Rules {
				if w, _ := utiliptables.SplitWords(r); ours || strings.HasPrefix(utiliptables.JumpTarget(w), "SY-") {
					rules[t.Name]++
				}
			}
		}
	}
	return chains, rules
}

// total sums a per-table count.
func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// perTable prints a per-table count as "nat 50, filter 15".
func perTable(m map[string]int) string {
	var parts []string
	for _, t := range []string{"nat", "filter", "mangle", "raw"} {
		if m[t] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", t, m[t]))
		}
	}
	return strings.Join(parts, ", ")
}
