// Package conntracktest holds the stateful fake of the conntrack table that proxier/conntrack's
// Deleter seam is tested against.
package conntracktest

import (
	"net/netip"
	"slices"

	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/model"
)

// Flow is a conntrack entry as the fake keeps it.
type Flow struct {
	Protocol model.Protocol
	OrigSrc  netip.AddrPort
	OrigDst  netip.AddrPort
	ReplySrc netip.AddrPort // the DNAT target, or OrigDst when the entry was not DNATed
}

// Fake is a conntrack table in memory.
type Fake struct {
	Flows []Flow
}

var _ conntrack.Deleter = (*Fake)(nil)

func (f *Fake) DeleteUDP(family model.IPFamily, filters []conntrack.Filter) (int, error) {
	before := len(f.Flows)
	f.Flows = slices.DeleteFunc(f.Flows, func(fl Flow) bool {
		if fl.Protocol != model.UDP || !family.Of(fl.OrigDst.Addr()) {
			return false
		}
		return slices.ContainsFunc(filters, func(flt conntrack.Filter) bool { return flt.Matches(fl.OrigDst, fl.ReplySrc) })
	})
	return before - len(f.Flows), nil
}
