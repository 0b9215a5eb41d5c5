package iptables

import (
	"sort"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/internal/netnstest"

	"github.com/switchyard/switchyard/internal/golden"
	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/proxier/model"
)

// TestKernelAcceptsIPv6 restores the IPv6 rendering with ip6tables (both variants) in a throwaway
// namespace and checks that ip6tables-save prints every rule back exactly as rendered.
func TestKernelAcceptsIPv6(t *testing.T) {
	netnstest.Require(t)
	r, err := RenderFull(fixtureSnapshot(), v6Options())
	if err != nil {
		t.Fatal(err)
	}
	// The "-A" lines of restore text or of iptables-save output, sorted; only our chains' when
	// ours is set.
	ruleLines := func(text []byte, ours bool) []string {
		saved, err := utiliptables.ParseSave(text)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, tbl := range saved.Tables {
			for _, c := range tbl.Chains {
				for _, rule := range c.Rules {
					if !ours || strings.HasPrefix(c.Name, "SY-") {
						out = append(out, "-A "+c.Name+" "+rule)
					}
				}
			}
		}
		sort.Strings(out)
		return out
	}
	want := ruleLines(r.Restore, false)
	iptablestest.EachVariant(t, model.IPv6, "ip6", func(t *testing.T, _ utiliptables.Variant, _ *netnstest.NS, ipt *utiliptables.Exec) {
		if err := ipt.Restore(r.Restore); err != nil {
			t.Fatal(err)
		}
		var saved []byte
		for _, table := range []string{TableNAT, TableFilter} {
			out, err := ipt.Save(table)
			if err != nil {
				t.Fatal(err)
			}
			saved = append(saved, out...)
		}
		got := ruleLines(saved, true)
		sort.Strings(got)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("ip6tables-save differs from the rendering:\n%s", golden.LineDiff(strings.Join(want, "\n"), strings.Join(got, "\n")))
		}
	})
}
