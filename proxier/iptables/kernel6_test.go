package iptables

import (
	"sort"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/internal/netnstest"

	"github.com/switchyard/switchyard/internal/golden"
	utiliptables "github.com/switchyard/switchyard/internal/iptables"
)

// TestKernelAcceptsIPv6 restores the IPv6 rendering with ip6tables (both variants) in a throwaway
// namespace and checks that ip6tables-save prints every rule back exactly as rendered.
func TestKernelAcceptsIPv6(t *testing.T) {
	netnstest.Require(t)
	r, err := RenderFull(fixtureSnapshot(), v6Options())
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, l := range strings.Split(string(r.Restore), "\n") {
		if strings.HasPrefix(l, "-A ") {
			want = append(want, l)
		}
	}
	sort.Strings(want)
	for _, v := range []utiliptables.Variant{utiliptables.VariantNFT, utiliptables.VariantLegacy} {
		t.Run(string(v), func(t *testing.T) {
			ns := netnstest.New(t, "ip6")
			cmd := ns.Command("ip6tables-"+string(v)+"-restore", "--noflush", "-w", "5")
			cmd.Stdin = strings.NewReader(string(r.Restore))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("ip6tables-%s-restore: %v: %s", v, err, out)
			}
			var got []string
			for _, table := range []string{TableNAT, TableFilter} {
				for _, l := range strings.Split(ns.MustRun(t, "ip6tables-"+string(v)+"-save", "-t", table), "\n") {
					if strings.HasPrefix(l, "-A SY-") {
						got = append(got, l)
					}
				}
			}
			sort.Strings(got)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("ip6tables-save differs from the rendering:\n%s", golden.LineDiff(strings.Join(want, "\n"), strings.Join(got, "\n")))
			}
		})
	}
}
