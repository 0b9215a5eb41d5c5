package ipvs

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/ipvs/ipset"
	"github.com/switchyard/switchyard/proxier/model"
)

// The readers of IPVS mode's live state for explain: the kernel's virtual servers and the backend's
// ipsets, through the same seams the backend programs them through. The command reads the node with
// them, and the tests read the fakes with them, so both explain the same shapes.

// LiveVirtualServers lists every virtual server the kernel holds (of both families, Switchyard's or
// not) with its real servers, sorted by address, port and protocol. Fwmark services are left out:
// Switchyard writes none, and no address:port reaches them.
func LiveVirtualServers(h IPVS) ([]explain.VirtualServer, error) {
	svcs, err := h.GetServices()
	if err != nil {
		return nil, fmt.Errorf("list IPVS virtual servers: %w", err)
	}
	out := make([]explain.VirtualServer, 0, len(svcs))
	for _, s := range svcs {
		if s.FWMark != 0 {
			continue
		}
		a, ok := netip.AddrFromSlice(s.Address)
		proto, known := fromIPVSProto(s.Protocol)
		if !ok || !known {
			continue
		}
		vs := explain.VirtualServer{
			Addr:       netip.AddrPortFrom(a.Unmap(), s.Port),
			Protocol:   ipsetProto(proto),
			Scheduler:  s.SchedName,
			Persistent: s.Flags&flagPersistent != 0,
		}
		dests, err := h.GetDestinations(s)
		if err != nil {
			return nil, fmt.Errorf("list real servers of %s %s: %w", proto, vs.Addr, err)
		}
		for _, d := range dests {
			da, ok := netip.AddrFromSlice(d.Address)
			if !ok {
				continue
			}
			vs.RealServers = append(vs.RealServers, explain.RealServer{Addr: netip.AddrPortFrom(da.Unmap(), d.Port), Weight: d.Weight})
		}
		slices.SortFunc(vs.RealServers, func(x, y explain.RealServer) int { return x.Addr.Compare(y.Addr) })
		out = append(out, vs)
	}
	slices.SortFunc(out, compareVirtualServers)
	return out, nil
}

func compareVirtualServers(x, y explain.VirtualServer) int {
	if c := x.Addr.Compare(y.Addr); c != 0 {
		return c
	}
	return strings.Compare(x.Protocol, y.Protocol)
}

// LiveIPSets returns the backend's ipsets of the family as `ipset save` prints them (create and add
// lines, no options beyond the family), the form explain.Live.IPSetSave holds. Only Switchyard's sets
// are read: IPVS mode's rules match no others. A set that does not exist is left out, as `ipset save`
// would; its rules then fail to trace, which is what the kernel would refuse too.
func LiveIPSets(h ipset.Netlink, f model.IPFamily) (string, error) {
	fam := "inet"
	if f == model.IPv6 {
		fam = "inet6"
	}
	var b strings.Builder
	for k := setKind(0); k < numSetKinds; k++ {
		s := setFor(f, k)
		entries, found, err := ipset.List(h, s)
		if err != nil {
			return "", err
		}
		if !found {
			continue
		}
		fmt.Fprintf(&b, "create %s %s family %s\n", s.Name, s.Type, fam)
		members := make([]string, 0, len(entries))
		for e := range entries {
			members = append(members, e.String())
		}
		slices.Sort(members)
		for _, m := range members {
			fmt.Fprintf(&b, "add %s %s\n", s.Name, m)
		}
	}
	return b.String(), nil
}
