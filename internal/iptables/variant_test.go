package iptables

import (
	"errors"
	"strings"
	"testing"
)

func TestDetectVariant(t *testing.T) {
	save := func(nft, legacy string, legacyErr error) SaveFunc {
		return func(v Variant) (string, error) {
			if v == VariantNFT {
				return nft, nil
			}
			return legacy, legacyErr
		}
	}
	// Dumps are whole tables, as iptables-save prints them.
	rules := func(n int) string {
		return "*filter\n:INPUT ACCEPT [0:0]\n" + strings.Repeat("-A INPUT -j ACCEPT\n", n) + "COMMIT\n"
	}
	for name, tc := range map[string]struct {
		override Variant
		save     SaveFunc
		want     Variant
	}{
		"hint in legacy wins over rule count": {"", save(rules(50), "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n", nil), VariantLegacy},
		"kubelet canary in nft":               {"", save("*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n", rules(50), nil), VariantNFT},
		"more legacy rules":                   {"", save(rules(1), rules(20), nil), VariantLegacy},
		"more nft rules":                      {"", save(rules(20), rules(1), nil), VariantNFT},
		"empty node defaults to nft":          {"", save("", "", nil), VariantNFT},
		"legacy unusable":                     {"", save("", "", errors.New("no legacy")), VariantNFT},
		"override":                            {VariantLegacy, save(rules(20), "", nil), VariantLegacy},
	} {
		got, err := DetectVariant(tc.override, tc.save)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", name, got, err, tc.want)
		}
	}
	if _, err := DetectVariant("bogus", save("", "", nil)); err == nil {
		t.Error("bogus override accepted")
	}
}
