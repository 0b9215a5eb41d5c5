package masq

import (
	"net"
	"strings"
	"testing"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/model"
)

// TestExecProgramsTheChosenVariant: the pod network's rules must land in the iptables variant the
// proxy uses (kubelet's), not in whichever one the node's alternatives happen to select.
func TestExecProgramsTheChosenVariant(t *testing.T) {
	netnstest.Require(t)
	_, cidr, _ := net.ParseCIDR("10.244.0.0/16")
	iptablestest.EachVariant(t, model.IPv4, "masq", func(t *testing.T, variant utiliptables.Variant, ns *netnstest.NS, e *utiliptables.Exec) {
		if err := Sync(e, cidr, true); err != nil {
			t.Fatal(err)
		}
		if err := Sync(e, cidr, true); err != nil {
			t.Fatalf("second sync: %v", err)
		}
		other := map[utiliptables.Variant]string{"nft": "legacy", "legacy": "nft"}[variant]
		mine := ns.MustRun(t, "iptables-"+string(variant)+"-save", "-t", "nat")
		theirs := ns.MustRun(t, "iptables-"+other+"-save", "-t", "nat")
		if strings.Count(mine, "-j "+MasqChain) != 1 || !strings.Contains(mine, "-j MASQUERADE") {
			t.Errorf("%s tables lack the pod network's rules (or hold the jump twice):\n%s", variant, mine)
		}
		if strings.Contains(theirs, MasqChain) {
			t.Errorf("rules leaked into the %s variant:\n%s", other, theirs)
		}
	})
}
