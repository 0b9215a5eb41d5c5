package ipvs

import (
	"fmt"
	"net/netip"

	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/model"
)

// What an IPVS virtual server does with the first packet of a connection, from what the kernel
// lists: which real servers its scheduler may pick, and how likely each is.

// findVirtualServer returns the virtual server for a packet's destination and protocol (lower case),
// or nil: the kernel's look-up in ip_vs_service_find, which Switchyard's services (no fwmarks) key by
// address, port and protocol alone.
func findVirtualServer(vss []explain.VirtualServer, dst netip.AddrPort, proto string) *explain.VirtualServer {
	for i := range vss {
		if vss[i].Addr == dst && vss[i].Protocol == proto {
			return &vss[i]
		}
	}
	return nil
}

// share is one real server's part of the new connections of a virtual server.
type share struct {
	rs explain.RealServer
	p  float64
}

// schedule returns the share of each real server the scheduler can pick, in the virtual server's
// order, and what decides its choice in words. Every scheduler Linux ships skips a real server of
// weight 0 (how a terminating endpoint keeps its connections but gets no new ones), so none is
// returned when no real server has a weight.
func schedule(vs *explain.VirtualServer) ([]share, string) {
	var eligible []explain.RealServer
	total := 0
	for _, rs := range vs.RealServers {
		if rs.Weight > 0 {
			eligible = append(eligible, rs)
			total += rs.Weight
		}
	}
	if len(eligible) == 0 {
		return nil, ""
	}
	byWeight := func() []share {
		out := make([]share, len(eligible))
		for i, rs := range eligible {
			out[i] = share{rs, float64(rs.Weight) / float64(total)}
		}
		return out
	}
	s := vs.Scheduler
	switch s {
	case "rr":
		out := make([]share, len(eligible))
		for i, rs := range eligible {
			out[i] = share{rs, 1 / float64(len(eligible))}
		}
		return out, "rr takes the real servers of weight > 0 in turn: each gets an equal share"
	case "wrr":
		return byWeight(), "wrr takes the real servers in turn, in proportion to their weights"
	case "fo":
		best := 0
		for _, rs := range eligible {
			best = max(best, rs.Weight)
		}
		var top []explain.RealServer
		for _, rs := range eligible {
			if rs.Weight == best {
				top = append(top, rs)
			}
		}
		out := make([]share, len(top))
		for i, rs := range top {
			out[i] = share{rs, 1 / float64(len(top))}
		}
		note := "fo sends every connection to the real server of the highest weight"
		if len(top) > 1 {
			note += fmt.Sprintf("; %d share it, and the kernel's list order picks one: shown evenly split", len(top))
		}
		return out, note
	case "lc", "wlc", "sed", "nq", "ovf", "twos":
		return byWeight(), s + " picks by each real server's live connection count (and weight): the shares shown are the weight shares, which it tends to when the real servers are equally loaded"
	case "lblc", "lblcr":
		return byWeight(), s + " keeps each destination address on the real server it last used, unless that one is overloaded: the shares shown are the weight shares"
	case "sh", "mh":
		return byWeight(), s + " hashes the client's address onto the real servers, so one client always reaches the same one: the shares shown are the weight shares over many clients"
	case "dh":
		return byWeight(), "dh hashes the destination address onto the real servers: the shares shown are the weight shares"
	}
	return byWeight(), fmt.Sprintf("scheduler %q is not known to explain: the shares shown are the weight shares", s)
}

// noRealServer is what IPVS does with a new connection when its scheduler finds no real server
// (ip_vs_core.c): a persistent virtual server drops the packet (ip_vs_sched_persist), any other one
// answers ICMP port unreachable and drops it (ip_vs_leave), for TCP as for UDP.
func noRealServer(vs *explain.VirtualServer, f model.IPFamily) (explain.Verdict, string, string) {
	why := "the virtual server has no real server of weight > 0 (no endpoint ready for this traffic policy, or all terminating)"
	if vs.Persistent {
		return explain.Dropped, "", why + ": IPVS drops the packet of a persistent (ClientIP affinity) virtual server"
	}
	with := "icmp-port-unreachable"
	if f == model.IPv6 {
		with = "icmp6-port-unreachable"
	}
	return explain.Rejected, with, why + ": IPVS answers ICMP port unreachable and drops the packet"
}

// vsRule prints a virtual server and its real servers the way `ipvsadm -Ln` would list them, on one
// line.
func vsRule(vs *explain.VirtualServer) string {
	s := fmt.Sprintf("%s %s %s", vs.Protocol, vs.Addr, vs.Scheduler)
	if vs.Persistent {
		s += " persistent"
	}
	for _, rs := range vs.RealServers {
		s += fmt.Sprintf(" -> %s weight %d", rs.Addr, rs.Weight)
	}
	return s
}
