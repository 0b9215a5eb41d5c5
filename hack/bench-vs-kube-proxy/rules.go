package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/model"
)

// IptablesCount is what one iptables-save dump holds.
type IptablesCount struct {
	// Rules counts "-A" lines per table.
	Rules map[string]int `json:"rules"`
	// UserChains counts declared chains that are not built in (policy "-"), per table.
	UserChains map[string]int `json:"user_chains"`
	// DNATToEndpoints counts DNAT rules whose target is a bench endpoint (10.244/16 or 10.245/16).
	DNATToEndpoints int `json:"dnat_to_endpoints"`
	// chainNames holds up to maxChainNames distinct user chain names, to name what a cleanup left.
	chainNames map[string]bool
	// dump is the raw iptables-save output, kept for saveDumps.
	dump []byte
	// dnatTargets holds every DNAT destination address.
	dnatTargets map[string]bool
}

const maxChainNames = 12

// Total is the rule count of nat, filter and mangle: the number the issue reports.
func (c IptablesCount) Total() int { return c.Rules["nat"] + c.Rules["filter"] + c.Rules["mangle"] }

// AllRules is every "-A" line in every table.
func (c IptablesCount) AllRules() int {
	n := 0
	for _, v := range c.Rules {
		n += v
	}
	return n
}

func parseIptablesSave(dump []byte) IptablesCount {
	c := IptablesCount{Rules: map[string]int{}, UserChains: map[string]int{}, dump: dump, dnatTargets: map[string]bool{}}
	c.chainNames = map[string]bool{}
	saved, _ := utiliptables.ParseSave(dump) // what iptables-save printed before a bad line still counts
	for table, n := range saved.Count() {
		if n.Rules > 0 {
			c.Rules[table] += n.Rules
		}
		if n.UserChains > 0 {
			c.UserChains[table] += n.UserChains
		}
	}
	for _, t := range saved.Tables {
		for _, ch := range t.Chains {
			if ch.Policy == "-" && len(c.chainNames) < maxChainNames {
				c.chainNames[ch.Name] = true
			}
			for _, r := range ch.Rules {
				w, _ := utiliptables.SplitWords(r)
				if utiliptables.JumpTarget(w) != "DNAT" {
					continue
				}
				if i := slices.Index(w, "--to-destination"); i >= 0 && i+1 < len(w) {
					addr, _, _ := strings.Cut(w[i+1], ":")
					c.dnatTargets[addr] = true
					if strings.HasPrefix(addr, "10.244.") || strings.HasPrefix(addr, "10.245.") {
						c.DNATToEndpoints++
					}
				}
			}
		}
	}
	return c
}

// NftCount is what `nft -j list table` shows for one table.
type NftCount struct {
	Present  bool `json:"present"`
	Chains   int  `json:"chains"`
	Rules    int  `json:"rules"`
	Sets     int  `json:"sets"`     // sets and maps
	Elements int  `json:"elements"` // elements of all sets and maps
	// DNATToEndpoints counts the bench endpoint addresses that dnat statements translate to: one per
	// statement with a fixed address, one per element of a numgen map.
	DNATToEndpoints int `json:"dnat_to_endpoints"`
	dnatTargets     map[string]bool
}

// dnatAddresses lists the addresses a dnat statement's "addr" can translate to. nft spells the two
// forms kube-proxy writes as
//   - "addr": "10.244.0.7" for "dnat to 10.244.0.7:8080", a service with one endpoint (v1.37) or an
//     endpoint chain (earlier releases and affinity services);
//   - "addr": {"map": {"key": {"numgen": ...}, "data": {"set": [[0, {"concat": ["10.244.0.7", 8080]}], ...]}}}
//     for "dnat ip addr . port to numgen random mod N map { 0 : 10.244.0.7 . 8080, ... }", v1.37's
//     services with several endpoints.
func dnatAddresses(raw json.RawMessage) []string {
	var addr string
	if json.Unmarshal(raw, &addr) == nil {
		return []string{addr}
	}
	var lookup struct {
		Map struct {
			Data struct {
				Set [][]json.RawMessage `json:"set"`
			} `json:"data"`
		} `json:"map"`
	}
	if json.Unmarshal(raw, &lookup) != nil {
		return nil
	}
	var out []string
	for _, elem := range lookup.Map.Data.Set {
		if len(elem) != 2 {
			continue
		}
		var target struct {
			Concat []json.RawMessage `json:"concat"`
		}
		if json.Unmarshal(elem[1], &addr) == nil {
			out = append(out, addr)
		} else if json.Unmarshal(elem[1], &target) == nil && len(target.Concat) > 0 && json.Unmarshal(target.Concat[0], &addr) == nil {
			out = append(out, addr)
		}
	}
	return out
}

func parseNftJSON(dump []byte) (NftCount, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(dump, &doc); err != nil {
		return NftCount{}, fmt.Errorf("parse nft -j output: %w", err)
	}
	c := NftCount{Present: true, dnatTargets: map[string]bool{}}
	for _, obj := range doc.Nftables {
		for kind, raw := range obj {
			switch kind {
			case "chain":
				c.Chains++
			case "rule":
				c.Rules++
				var rule struct {
					Expr []map[string]json.RawMessage `json:"expr"`
				}
				if err := json.Unmarshal(raw, &rule); err != nil {
					return NftCount{}, fmt.Errorf("parse nft rule: %w", err)
				}
				for _, stmt := range rule.Expr {
					var dnat struct {
						Addr json.RawMessage `json:"addr"`
					}
					if d, ok := stmt["dnat"]; !ok || json.Unmarshal(d, &dnat) != nil {
						continue
					}
					for _, addr := range dnatAddresses(dnat.Addr) {
						c.dnatTargets[addr] = true
						if strings.HasPrefix(addr, "10.244.") || strings.HasPrefix(addr, "10.245.") {
							c.DNATToEndpoints++
						}
					}
				}
			case "set", "map":
				c.Sets++
				var set struct {
					Elem []json.RawMessage `json:"elem"`
				}
				if err := json.Unmarshal(raw, &set); err != nil {
					return NftCount{}, fmt.Errorf("parse nft %s: %w", kind, err)
				}
				c.Elements += len(set.Elem)
			}
		}
	}
	return c, nil
}

// RuleCount is the node's rules as a proxy left them.
type RuleCount struct {
	IptablesNft    IptablesCount `json:"iptables_nft"`
	IptablesLegacy IptablesCount `json:"iptables_legacy"`
	IP6tablesNft   IptablesCount `json:"ip6tables_nft"`
	NftKubeProxy   NftCount      `json:"nft_ip_kube_proxy"`
	NftKubeProxy6  NftCount      `json:"nft_ip6_kube_proxy"`
}

// inNode runs a command in the node namespace and returns its stdout.
func inNode(ctx context.Context, node string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", node}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), node, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// nftTable lists one table as JSON; a missing table is an empty count, not an error.
func nftTable(ctx context.Context, node, family string) (NftCount, error) {
	tables, err := inNode(ctx, node, "nft", "list", "tables", family)
	if err != nil {
		return NftCount{}, err
	}
	if !strings.Contains(string(tables), "table "+family+" kube-proxy") {
		return NftCount{}, nil
	}
	out, err := inNode(ctx, node, "nft", "-j", "list", "table", family, "kube-proxy")
	if err != nil {
		return NftCount{}, err
	}
	return parseNftJSON(out)
}

// CountRules dumps every place either proxy writes rules to, once. An iptables-save of a
// 10k-service table costs seconds of CPU, so this runs after a sync, never in a polling loop.
func CountRules(ctx context.Context, node string) (RuleCount, error) {
	var rc RuleCount
	for _, d := range []struct {
		dst     *IptablesCount
		family  model.IPFamily
		variant utiliptables.Variant
	}{{&rc.IptablesNft, model.IPv4, utiliptables.VariantNFT}, {&rc.IptablesLegacy, model.IPv4, utiliptables.VariantLegacy}, {&rc.IP6tablesNft, model.IPv6, utiliptables.VariantNFT}} {
		out, err := cluster.SaveIptables(node, d.family, d.variant)
		if err != nil {
			return rc, err
		}
		*d.dst = parseIptablesSave(out)
	}
	var err error
	if rc.NftKubeProxy, err = nftTable(ctx, node, "ip"); err != nil {
		return rc, err
	}
	if rc.NftKubeProxy6, err = nftTable(ctx, node, "ip6"); err != nil {
		return rc, err
	}
	return rc, nil
}

// Leftovers describes what of either proxy is still on the node; empty means clean.
func (rc RuleCount) Leftovers() string {
	var left []string
	for _, d := range []struct {
		name string
		c    IptablesCount
	}{{"iptables-nft", rc.IptablesNft}, {"iptables-legacy", rc.IptablesLegacy}, {"ip6tables-nft", rc.IP6tablesNft}} {
		chains := 0
		for _, n := range d.c.UserChains {
			chains += n
		}
		if n := d.c.AllRules(); n > 0 || chains > 0 {
			names := make([]string, 0, len(d.c.chainNames))
			for name := range d.c.chainNames {
				names = append(names, name)
			}
			sort.Strings(names)
			left = append(left, fmt.Sprintf("%s: %d rules, %d chains (%s)", d.name, n, chains, strings.Join(names, " ")))
		}
	}
	if rc.NftKubeProxy.Present {
		left = append(left, "nft table ip kube-proxy")
	}
	if rc.NftKubeProxy6.Present {
		left = append(left, "nft table ip6 kube-proxy")
	}
	return strings.Join(left, ", ")
}

// saveDumps writes the rule dumps behind a count to dir/<prefix>.*, for reading the figures
// later (which counting gives which number). Only done at small sizes: the files are large.
func saveDumps(ctx context.Context, node, dir, prefix string, rc RuleCount) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string][]byte{
		"iptables-nft-save":  rc.IptablesNft.dump,
		"ip6tables-nft-save": rc.IP6tablesNft.dump,
	}
	if rc.NftKubeProxy.Present {
		out, err := inNode(ctx, node, "nft", "list", "table", "ip", "kube-proxy")
		if err != nil {
			return err
		}
		files["nft-list-table-ip-kube-proxy"] = out
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, prefix+"."+name+".txt"), data, 0o644); err != nil {
			return fmt.Errorf("save %s: %w", name, err)
		}
	}
	return nil
}

// dnatsTo reports whether some rule DNATs to ip, in any of the dumps.
func dnatsTo(rc RuleCount, ip string) bool {
	return rc.IptablesNft.dnatTargets[ip] || rc.IptablesLegacy.dnatTargets[ip] || rc.NftKubeProxy.dnatTargets[ip]
}
