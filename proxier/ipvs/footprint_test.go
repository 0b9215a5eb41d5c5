package ipvs

import (
	"net/netip"
	"testing"
)

// TestFootprintMatchesSyncedKernel holds RenderFootprint to what a real sync leaves in the fakes: the
// same virtual servers, real servers, ipset members, kube-ipvs0 addresses and iptables rules.
func TestFootprintMatchesSyncedKernel(t *testing.T) {
	k, _, snap := syncedFixture(t)

	// The node's addresses as the fake links report them (kube-ipvs0 excluded).
	node := []netip.Addr{ip("192.168.50.10"), ip("192.168.51.10"), ip("10.244.1.1")}
	f, err := RenderFootprint(snap, testOptions(), node)
	if err != nil {
		t.Fatal(err)
	}
	realServers := 0
	for _, vs := range k.ipvs.Services {
		realServers += len(vs.Dests)
	}
	if f.VirtualServers != len(k.ipvs.Services) || f.RealServers != realServers {
		t.Errorf("footprint has %d virtual servers and %d real servers; the synced fake has %d and %d",
			f.VirtualServers, f.RealServers, len(k.ipvs.Services), realServers)
	}
	if f.VirtualServers == 0 || f.RealServers == 0 {
		t.Fatalf("fixture rendered nothing: %+v", f)
	}
	if got := len(k.links.AddrsOf(DummyDevice)); f.BoundAddresses != got {
		t.Errorf("footprint binds %d addresses, kube-ipvs0 holds %d", f.BoundAddresses, got)
	}
	for name, set := range k.ipset.Sets {
		if f.IpsetEntries[name] != len(set.Entries) {
			t.Errorf("ipset %s: footprint %d entries, synced fake %d", name, f.IpsetEntries[name], len(set.Entries))
		}
	}
	if len(f.IpsetEntries) != len(k.ipset.Sets) {
		t.Errorf("footprint counts %d ipsets, the fake holds %d", len(f.IpsetEntries), len(k.ipset.Sets))
	}
	rules := 0
	for _, n := range f.IptablesRules {
		rules += n
	}
	if got := k.iptables.RuleCount(); rules != got {
		t.Errorf("footprint counts %d iptables rules, the synced fake holds %d", rules, got)
	}
}
