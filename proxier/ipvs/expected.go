package ipvs

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/ipvs/ipset"
	"github.com/switchyard/switchyard/proxier/model"
)

// ExpectedState is what IPVS mode holds in the kernel once a full sync of a snapshot succeeded: the
// virtual servers with their real servers (all at weight 1), the addresses on kube-ipvs0, the members
// of every one of its ipsets, and its iptables rules. The daemon serves it as JSON on /debug/rules;
// `switchyard explain --check` compares it with the live state (FindDrift).
type ExpectedState struct {
	Family model.IPFamily `json:"family"`
	// VirtualServers are sorted as LiveVirtualServers sorts the live ones.
	VirtualServers []explain.VirtualServer `json:"virtualServers"`
	// Bound are the addresses on kube-ipvs0, sorted.
	Bound []netip.Addr `json:"boundAddresses"`
	// IPSets holds every set of the family, by name, with its members as `ipset save` prints them,
	// sorted; a set the sync creates empty is there with no members.
	IPSets map[string][]string `json:"ipsets"`
	// Rules are IPVS mode's chains and the jumps into them, as iptables-save prints them.
	Rules string `json:"rules"`
	// ExcludeCIDRs (--ipvs-exclude-cidrs) hold virtual servers that are never Switchyard's.
	ExcludeCIDRs []netip.Prefix `json:"excludeCIDRs,omitempty"`
}

// expectedState is ExpectedState's pure part: what a full sync of snap leaves on a node with addrs.
// It renders with renderInto, as a sync does, so it cannot disagree with what a sync writes.
func expectedState(snap *model.Snapshot, addrs nodeAddrs, opts *Options) *ExpectedState {
	d := newDesiredState()
	renderInto(d, snap, true, addrs, opts)
	e := &ExpectedState{Family: opts.Family, IPSets: map[string][]string{}, Rules: string(expectedRules(opts)),
		ExcludeCIDRs: slices.Clone(opts.ExcludeCIDRs)}
	for k := range d.claims {
		vs := d.virtualServer(k)
		out := explain.VirtualServer{Addr: netip.AddrPortFrom(k.Addr, k.Port), Protocol: ipsetProto(k.Protocol),
			Scheduler: vs.Scheduler, Persistent: vs.Persistent, RealServers: []explain.RealServer{}}
		for _, dst := range vs.Dests {
			out.RealServers = append(out.RealServers, explain.RealServer{Addr: dst, Weight: 1})
		}
		e.VirtualServers = append(e.VirtualServers, out)
	}
	slices.SortFunc(e.VirtualServers, compareVirtualServers)
	for a := range d.addrs {
		e.Bound = append(e.Bound, a)
	}
	slices.SortFunc(e.Bound, netip.Addr.Compare)
	for k := setKind(0); k < numSetKinds; k++ {
		members := make([]string, 0, len(d.sets[k]))
		for m := range d.sets[k] {
			members = append(members, m.String())
		}
		slices.Sort(members)
		e.IPSets[setName(opts.Family, k)] = members
	}
	return e
}

// expectedRules is IPVS mode's rules as iptables-save prints them: the restore text of its chains
// (which declares and fills every chain, so it is their save text) with the jumps into them added
// to their tables.
func expectedRules(opts *Options) []byte {
	var b bytes.Buffer
	for _, blk := range bytes.SplitAfter(renderRules(opts), []byte("COMMIT\n")) {
		if len(blk) == 0 {
			continue
		}
		table := string(bytes.TrimPrefix(blk[:bytes.IndexByte(blk, '\n')], []byte("*")))
		b.Write(blk[:len(blk)-len("COMMIT\n")])
		for _, j := range jumpRules() {
			if j.table == table {
				b.WriteString("-A " + j.chain + " " + utiliptables.JoinWords(j.args) + "\n")
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.Bytes()
}

// ExpectedState is what a full sync of snap leaves in the kernel, with the node addresses the last
// sync read. It may be called from any goroutine; before the first sync it is an error.
func (p *Proxier) ExpectedState(snap *model.Snapshot) (*ExpectedState, error) {
	addrs := p.syncedNodeAddrs.Load()
	if addrs == nil {
		return nil, errors.New("no sync yet: the node's addresses are not known")
	}
	return expectedState(snap, *addrs, &p.opts), nil
}

// ownsVirtualServer is the rule for which virtual servers are Switchyard's to change (Cleanup and a
// full sync) and to check (FindDrift): of the family, not in --ipvs-exclude-cidrs, and either known
// to be Switchyard's (this process created it, or the model writes it), on an address bound to
// kube-ipvs0, or a NodePort the NodePort sets record.
func ownsVirtualServer(o *Options, k vsKey, known bool, bound func(netip.Addr) bool, inNodePortSet func(setKind, ipset.Entry) bool) bool {
	if o.excluded(k.Addr) || !o.Family.Of(k.Addr) {
		return false
	}
	if known || bound(k.Addr) {
		return true
	}
	np := ipset.Entry{IP: k.Addr, Protocol: ipsetProto(k.Protocol), Port: k.Port}
	return inNodePortSet(setNodePort, np) || inNodePortSet(setNodePortLocal, np)
}
