package iptables

import (
	"fmt"
	"os/exec"
	"strings"
)

// Variant is the iptables backend: the nf_tables-based one or the legacy xtables one. A node must use
// the variant kubelet and its CNI use, or rules land in tables the kernel path does not consult the
// way the others expect.
type Variant string

const (
	VariantNFT    Variant = "nft"
	VariantLegacy Variant = "legacy"
	// VariantDefault is no choice: plain "iptables", whichever variant the node's alternatives
	// select. To DetectVariant it means "detect".
	VariantDefault Variant = ""
)

func (v Variant) check() error {
	if v != VariantNFT && v != VariantLegacy && v != VariantDefault {
		return fmt.Errorf("unknown iptables variant %q (want %q or %q)", v, VariantNFT, VariantLegacy)
	}
	return nil
}

// Chains kubelet creates in the mangle table of the variant it uses. kube-proxy's iptables wrapper
// trusts them first, because they say directly which variant the node's own agents chose.
var variantHints = []string{"KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"}

// SaveFunc returns `iptables-<variant>-save` output (all of it for the rule count; the hint chains
// live in mangle), or an error when that variant is unusable.
type SaveFunc func(v Variant) (string, error)

// DetectVariant picks the variant the node already uses, as kube-proxy's iptables wrapper does: the
// variant whose tables hold kubelet's hint chains (nft checked first), else the one holding more
// rules, else nft, the default of current distributions. A non-empty override wins outright.
func DetectVariant(override Variant, save SaveFunc) (Variant, error) {
	if override != VariantDefault {
		if err := override.check(); err != nil {
			return "", err
		}
		return override, nil
	}
	dumps := map[Variant]*Dump{}
	for _, v := range []Variant{VariantNFT, VariantLegacy} {
		out, err := save(v)
		if err != nil {
			continue // that variant's tools or kernel support are missing
		}
		dumps[v], _ = ParseSave([]byte(out))
	}
	for _, v := range []Variant{VariantNFT, VariantLegacy} {
		if d := dumps[v]; d != nil && d.hasChain(variantHints...) {
			return v, nil
		}
	}
	rules := func(v Variant) int {
		if d := dumps[v]; d != nil {
			return d.Rules()
		}
		return 0
	}
	if rules(VariantLegacy) > rules(VariantNFT) {
		return VariantLegacy, nil
	}
	return VariantNFT, nil
}

// hasChain reports whether any table declares one of the chains.
func (d *Dump) hasChain(names ...string) bool {
	for _, t := range d.Tables {
		for _, n := range names {
			if c := t.Chain(n); c != nil && c.Policy != "" {
				return true
			}
		}
	}
	return false
}

// HostSave runs iptables-<variant>-save and ip6tables-<variant>-save on this host, for DetectVariant.
func HostSave(v Variant) (string, error) {
	var b strings.Builder
	var firstErr error
	ok := false
	for _, base := range []string{"iptables", "ip6tables"} {
		out, err := exec.Command(base + "-" + string(v) + "-save").Output()
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s-%s-save: %w", base, v, err)
			}
			continue
		}
		ok = true
		b.Write(out)
	}
	if !ok {
		return "", firstErr
	}
	return b.String(), nil
}
