package ipvs

import (
	"net/netip"

	"github.com/switchyard/switchyard/proxier/model"
)

// Footprint is what IPVS mode would hold in the kernel for one snapshot: the size of its tables, not
// their contents. `switchyard bench` reports it to compare backends without a kernel.
type Footprint struct {
	VirtualServers int
	RealServers    int
	// BoundAddresses are the service addresses on kube-ipvs0.
	BoundAddresses int
	// IpsetEntries counts the members of each ipset, by set name.
	IpsetEntries map[string]int
	// IptablesRules and IptablesChains count, by table, the iptables rules IPVS mode keeps (the jumps
	// from built-in chains included) and its own chains. Neither depends on the services.
	IptablesRules, IptablesChains map[string]int
	// Skipped counts service ports the backend cannot program (logged, as in a real sync).
	Skipped int
}

// IpsetEntriesTotal is the sum of IpsetEntries.
func (f Footprint) IpsetEntriesTotal() int {
	n := 0
	for _, c := range f.IpsetEntries {
		n += c
	}
	return n
}

// RenderFootprint renders snap with the same code a sync uses, as if the node had nodeAddresses
// (the NodePort addresses are then chosen from them as --nodeport-addresses says), and measures the
// result. It touches no kernel state.
func RenderFootprint(snap *model.Snapshot, opts Options, nodeAddresses []netip.Addr) (Footprint, error) {
	if err := opts.Validate(); err != nil {
		return Footprint{}, err
	}
	d := newDesiredState()
	skipped := renderInto(d, snap, true, selectNodeAddrs(&opts, nodeAddresses), &opts)
	f := Footprint{BoundAddresses: len(d.addrs), IpsetEntries: map[string]int{}, Skipped: skipped}
	f.IptablesRules, f.IptablesChains = countRestore(renderRules(&opts))
	for k := range d.claims {
		vs := d.virtualServer(k)
		f.VirtualServers++
		f.RealServers += len(vs.Dests)
	}
	for k := range d.sets {
		f.IpsetEntries[setName(opts.Family, setKind(k))] = len(d.sets[k])
	}
	return f, nil
}
