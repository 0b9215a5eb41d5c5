package ipvs

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/ipvs/ipset"
	"github.com/switchyard/switchyard/proxier/model"
)

// LiveState is IPVS mode's state as read from a node, what FindDrift compares with ExpectedState.
type LiveState struct {
	VirtualServers []explain.VirtualServer // LiveVirtualServers: every virtual server, anyone's
	IPSetSave      string                  // LiveIPSets of the family
	Bound          []netip.Addr            // the family's addresses on kube-ipvs0
	IptablesSave   []byte                  // iptables-save of the family
}

// Drift is what FindDrift found, one line per difference: what the model would write that the
// kernel lacks, and what the kernel holds that the model would not write. Draining lists the real
// servers at weight 0 the model no longer wants, of a protocol with graceful termination: a sync
// put them there and deletes them once their connections end, so they are not drift.
type Drift struct {
	Missing, Unexpected, Draining []string
}

// None reports whether the kernel holds exactly what the model would write.
func (d Drift) None() bool { return len(d.Missing) == 0 && len(d.Unexpected) == 0 }

// FindDrift compares exp with live over what IPVS mode owns: the virtual servers ownsVirtualServer
// calls Switchyard's (the live addresses and NodePort sets decide, as they do for a sync, and so do
// the expected virtual servers), their real servers and weights, the addresses on kube-ipvs0, the
// members of its ipsets, and its iptables chains with the jumps into them. Other agents' virtual
// servers, sets and rules are not drift.
func FindDrift(exp *ExpectedState, live LiveState) (Drift, error) {
	var d Drift
	missing := func(format string, args ...any) { d.Missing = append(d.Missing, fmt.Sprintf(format, args...)) }
	unexpected := func(format string, args ...any) { d.Unexpected = append(d.Unexpected, fmt.Sprintf(format, args...)) }
	liveSets := parseIPSetSave(live.IPSetSave)

	// Virtual servers and their real servers.
	want := map[vsID]explain.VirtualServer{}
	for _, vs := range exp.VirtualServers {
		want[idOf(vs)] = vs
	}
	bound := map[netip.Addr]bool{}
	for _, a := range live.Bound {
		bound[a] = true
	}
	opts := Options{Family: exp.Family, ExcludeCIDRs: exp.ExcludeCIDRs}
	have := map[vsID]explain.VirtualServer{}
	for _, vs := range live.VirtualServers {
		id := idOf(vs)
		k, ok := id.key()
		_, known := want[id]
		if ok && ownsVirtualServer(&opts, k, known, func(a netip.Addr) bool { return bound[a] },
			func(kind setKind, e ipset.Entry) bool { return liveSets[setName(exp.Family, kind)][e.String()] }) {
			have[id] = vs
		}
	}
	for _, id := range sortedIDs(want, have) {
		w, wok := want[id]
		h, hok := have[id]
		switch {
		case !hok:
			missing("virtual server %s", describeVS(w))
			continue
		case !wok:
			unexpected("virtual server %s", describeVS(h))
			continue
		case w.Scheduler != h.Scheduler || w.Persistent != h.Persistent:
			missing("virtual server %s", describeVS(w))
			unexpected("virtual server %s", describeVS(h))
		}
		weights := map[netip.AddrPort]int{}
		for _, rs := range h.RealServers {
			weights[rs.Addr] = rs.Weight
		}
		for _, rs := range w.RealServers {
			lw, ok := weights[rs.Addr]
			delete(weights, rs.Addr)
			switch {
			case !ok:
				missing("real server %s weight %d of %s", rs.Addr, rs.Weight, id)
			case lw != rs.Weight:
				missing("real server %s weight %d of %s", rs.Addr, rs.Weight, id)
				unexpected("real server %s weight %d of %s", rs.Addr, lw, id)
			}
		}
		for _, rs := range h.RealServers {
			lw, ok := weights[rs.Addr]
			switch {
			case !ok:
			case lw == 0 && id.proto != "udp":
				d.Draining = append(d.Draining, fmt.Sprintf("real server %s weight 0 of %s", rs.Addr, id))
			default:
				unexpected("real server %s weight %d of %s", rs.Addr, lw, id)
			}
		}
	}

	// Addresses on kube-ipvs0.
	wantBound := map[netip.Addr]bool{}
	for _, a := range exp.Bound {
		wantBound[a] = true
		if !bound[a] {
			missing("address %s on %s", a, DummyDevice)
		}
	}
	for _, a := range live.Bound {
		if !wantBound[a] {
			unexpected("address %s on %s", a, DummyDevice)
		}
	}

	// The members of the sets.
	names := make([]string, 0, len(exp.IPSets))
	for name := range exp.IPSets {
		names = append(names, name)
	}
	for name := range liveSets {
		if _, ok := exp.IPSets[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		members, wok := exp.IPSets[name]
		liveMembers, hok := liveSets[name]
		switch {
		case !hok:
			missing("ipset %s", name)
			continue
		case !wok:
			unexpected("ipset %s", name)
			continue
		}
		wanted := map[string]bool{}
		for _, m := range members {
			wanted[m] = true
			if !liveMembers[m] {
				missing("ipset %s member %s", name, m)
			}
		}
		var extra []string
		for m := range liveMembers {
			if !wanted[m] {
				extra = append(extra, m)
			}
		}
		slices.Sort(extra)
		for _, m := range extra {
			unexpected("ipset %s member %s", name, m)
		}
	}

	// The rules: internal/iptables' comparison over IPVS mode's own chains.
	rules, err := utiliptables.ChainDrift([]byte(exp.Rules), live.IptablesSave, []string{"nat", "filter"}, isIPVSChain)
	if err != nil {
		return Drift{}, err
	}
	for _, l := range rules.Missing {
		d.Missing = append(d.Missing, l.String())
	}
	for _, l := range rules.Unexpected {
		d.Unexpected = append(d.Unexpected, l.String())
	}
	return d, nil
}

// isIPVSChain reports whether IPVS mode owns an iptables chain.
func isIPVSChain(name string) bool {
	switch name {
	case chainServices, chainPostrouting, chainMarkMasq, chainFilter, chainForward:
		return true
	}
	return false
}

// vsID names a virtual server as the drift lines do: "tcp 10.96.0.10:80".
type vsID struct {
	proto string
	addr  netip.AddrPort
}

func (id vsID) String() string { return id.proto + " " + id.addr.String() }

func idOf(vs explain.VirtualServer) vsID { return vsID{proto: vs.Protocol, addr: vs.Addr} }

// supportedProtocols are the protocols IPVS mode programs virtual servers for.
var supportedProtocols = []model.Protocol{model.TCP, model.UDP, model.SCTP}

// key is the id as the backend keys virtual servers; false for a protocol it never programs.
func (id vsID) key() (vsKey, bool) {
	for _, p := range supportedProtocols {
		if ipsetProto(p) == id.proto {
			return vsKey{Addr: id.addr.Addr(), Protocol: p, Port: id.addr.Port()}, true
		}
	}
	return vsKey{}, false
}

func sortedIDs(a, b map[vsID]explain.VirtualServer) []vsID {
	var out []vsID
	for id := range a {
		out = append(out, id)
	}
	for id := range b {
		if _, ok := a[id]; !ok {
			out = append(out, id)
		}
	}
	slices.SortFunc(out, func(x, y vsID) int {
		if c := x.addr.Compare(y.addr); c != 0 {
			return c
		}
		return strings.Compare(x.proto, y.proto)
	})
	return out
}

// describeVS is a virtual server with the attributes the check compares: "tcp 10.96.0.10:80 (rr,
// persistent, 2 real servers)".
func describeVS(vs explain.VirtualServer) string {
	attrs := vs.Scheduler
	if vs.Persistent {
		attrs += ", persistent"
	}
	return fmt.Sprintf("%s (%s, %d real servers)", idOf(vs), attrs, len(vs.RealServers))
}

// parseIPSetSave reads LiveIPSets' text: each set it declares, with its members.
func parseIPSetSave(text string) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "create":
			if out[f[1]] == nil {
				out[f[1]] = map[string]bool{}
			}
		case len(f) >= 3 && f[0] == "add":
			if out[f[1]] == nil {
				out[f[1]] = map[string]bool{}
			}
			out[f[1]][strings.Join(f[2:], " ")] = true
		}
	}
	return out
}
