package ipvs

import (
	"strings"
	"testing"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/netnstest"
)

// TestCleanupHostWithoutIPVS runs CleanupHost in a namespace of this machine, whose kernel has no
// IPVS (and no dummy devices): leftovers of IPVS mode in ipsets and iptables must still go, and
// foreign ones stay.
func TestCleanupHostWithoutIPVS(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "clean")
	opts := testOptions()
	// Leftovers: every set, the rules and their jumps, as a sync writes them; plus foreign state.
	for k := setKind(0); k < numSetKinds; k++ {
		s := setFor(opts.Family, k)
		ns.MustRun(t, "ipset", "create", s.Name, string(s.Type))
	}
	ns.MustRun(t, "ipset", "add", "SY-CLUSTER-IP", "10.96.0.10,tcp:80")
	ns.MustRun(t, "ipset", "create", "OTHER-SET", "hash:ip")
	ipt := nsIptables(t, ns)
	if err := ipt.Restore(renderRules(&opts)); err != nil {
		t.Fatal(err)
	}
	for _, j := range jumpRules() {
		if err := ipt.EnsureRule(utiliptables.Prepend, j.table, j.chain, j.args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := ipt.Restore([]byte("*nat\n:OTHER-CHAIN - [0:0]\n-A OTHER-CHAIN -j RETURN\n-A PREROUTING -j OTHER-CHAIN\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}

	if err := ns.Do(func() error { return CleanupHost(opts, ipt) }); err != nil {
		t.Fatalf("CleanupHost: %v", err)
	}
	if sets := strings.Fields(ns.MustRun(t, "ipset", "list", "-n")); len(sets) != 1 || sets[0] != "OTHER-SET" {
		t.Errorf("ipsets after cleanup: %v; want only OTHER-SET", sets)
	}
	for _, table := range []string{"nat", "filter"} {
		out := ns.MustRun(t, "iptables-save", "-t", table)
		if strings.Contains(out, "SY-IPVS") {
			t.Errorf("%s after cleanup:\n%s", table, out)
		}
		if table == "nat" && (!strings.Contains(out, "-A PREROUTING -j OTHER-CHAIN") || !strings.Contains(out, "-A OTHER-CHAIN -j RETURN")) {
			t.Errorf("foreign nat rules removed:\n%s", out)
		}
	}
	// Cleaning a clean namespace is not an error.
	if err := ns.Do(func() error { return CleanupHost(opts, ipt) }); err != nil {
		t.Errorf("second CleanupHost: %v", err)
	}
}
