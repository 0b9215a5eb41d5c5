package iptables

import (
	"fmt"
	"os/exec"
	"strings"
)

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
	if override != "" {
		if override != VariantNFT && override != VariantLegacy {
			return "", fmt.Errorf("unknown iptables variant %q (want %q or %q)", override, VariantNFT, VariantLegacy)
		}
		return override, nil
	}
	dumps := map[Variant]string{}
	for _, v := range []Variant{VariantNFT, VariantLegacy} {
		out, err := save(v)
		if err != nil {
			continue // that variant's tools or kernel support are missing
		}
		dumps[v] = out
	}
	for _, v := range []Variant{VariantNFT, VariantLegacy} {
		for _, hint := range variantHints {
			if strings.Contains(dumps[v], ":"+hint+" ") {
				return v, nil
			}
		}
	}
	if countSavedRules(dumps[VariantLegacy]) > countSavedRules(dumps[VariantNFT]) {
		return VariantLegacy, nil
	}
	return VariantNFT, nil
}

func countSavedRules(dump string) int {
	n := 0
	for _, l := range strings.Split(dump, "\n") {
		if strings.HasPrefix(l, "-A ") {
			n++
		}
	}
	return n
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
