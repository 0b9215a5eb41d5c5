// Package conntrack decides which UDP conntrack entries a service change leaves stale and deletes
// them through netlink. UDP has no connection teardown, so an entry that points at an endpoint that
// is gone (or that was created while a service had no endpoints, and so was never DNATed) keeps
// black-holing the client's packets until it times out; kube-proxy deletes such entries, and so do we.
//
// The decision (StaleUDP) is pure and backend-neutral, so the IPVS backend can reuse it; deleting
// goes through Deleter, which Netlink implements for a kernel and conntracktest.Fake for tests.
//
// It also sets the conntrack table's size and timeouts that kube-proxy's --conntrack-* flags ask
// for (Apply, in sysctl.go), through internal/sysctl: sysctl.Proc for a kernel, sysctltest.Fake for tests.
package conntrack

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/switchyard/switchyard/proxier/model"
)

// Filter selects UDP conntrack entries by their original destination and their reply source. A
// zero field matches anything; OrigDstPort is always set.
//
// The reply source tells DNATed entries from the rest: an entry DNATed to an endpoint has that
// endpoint as reply source, while one that was never DNATed has the original destination there.
type Filter struct {
	OrigDstIP    netip.Addr
	OrigDstPort  uint16
	ReplySrcIP   netip.Addr
	ReplySrcPort uint16
}

func (f Filter) String() string {
	return fmt.Sprintf("udp orig-dst=%v:%d reply-src=%v:%d", f.OrigDstIP, f.OrigDstPort, f.ReplySrcIP, f.ReplySrcPort)
}

// Matches reports whether an entry with this original destination and reply source is selected.
func (f Filter) Matches(origDst, replySrc netip.AddrPort) bool {
	if f.OrigDstPort != origDst.Port() {
		return false
	}
	if f.OrigDstIP.IsValid() && f.OrigDstIP != origDst.Addr().Unmap() {
		return false
	}
	if f.ReplySrcIP.IsValid() && f.ReplySrcIP != replySrc.Addr().Unmap() {
		return false
	}
	if f.ReplySrcPort != 0 && f.ReplySrcPort != replySrc.Port() {
		return false
	}
	return true
}

// Stale is the set of filters one sync must apply.
type Stale struct {
	Filters []Filter
}

// Empty reports whether there is nothing to delete.
func (s Stale) Empty() bool { return len(s.Filters) == 0 }

// StaleUDP compares the UDP services of prev and cur (prev may be nil: the first sync) for one family
// and returns the entries to delete:
//   - for every endpoint that was usable in prev and is not in cur, entries to each of the service's
//     addresses and its node port that were DNATed to that endpoint;
//   - for every service that had no usable endpoint in prev (or did not exist) and has one now,
//     entries to its addresses and node port that were never DNATed: they were created while the
//     traffic was rejected and would otherwise keep bypassing the new DNAT rules.
//
// Only services named in cur.Changed are compared unless cur.Full is set or prev is nil.
func StaleUDP(prev, cur *model.Snapshot, family model.IPFamily) Stale {
	var names []model.ServicePortName
	if prev == nil || cur.Full {
		seen := map[model.ServicePortName]bool{}
		for n := range cur.Services {
			seen[n] = true
		}
		if prev != nil {
			for n := range prev.Services {
				seen[n] = true
			}
		}
		for n := range seen {
			names = append(names, n)
		}
	} else {
		for key := range cur.Changed {
			names = append(names, cur.PortsOf(key)...)
			for _, n := range prev.PortsOf(key) {
				if _, ok := cur.Services[n]; !ok {
					names = append(names, n)
				}
			}
		}
	}
	model.SortServicePortNames(names)

	var out Stale
	for _, name := range names {
		var oldSvc *model.ServicePort
		var oldEps []model.Endpoint
		if prev != nil {
			oldSvc, oldEps = prev.Services[name], prev.Endpoints[name]
		}
		newSvc, newEps := cur.Services[name], cur.Endpoints[name]
		oldUsable := usable(oldSvc, oldEps, family)
		newUsable := usable(newSvc, newEps, family)

		// Endpoints that went away: entries DNATed to them, through any address of the old service.
		if oldSvc != nil && oldSvc.Protocol == model.UDP {
			for _, ep := range oldUsable {
				if slices.Contains(newUsable, ep) && sameFrontends(oldSvc, newSvc, family) {
					continue
				}
				for _, dst := range frontends(oldSvc, family) {
					out.Filters = append(out.Filters, Filter{OrigDstIP: dst.Addr(), OrigDstPort: dst.Port(), ReplySrcIP: ep.Addr(), ReplySrcPort: ep.Port()})
				}
				if oldSvc.NodePort != 0 {
					out.Filters = append(out.Filters, Filter{OrigDstPort: uint16(oldSvc.NodePort), ReplySrcIP: ep.Addr(), ReplySrcPort: ep.Port()})
				}
			}
		}
		// Service that gained its first endpoint: entries that were never DNATed.
		if newSvc != nil && newSvc.Protocol == model.UDP && len(oldUsable) == 0 && len(newUsable) > 0 {
			for _, dst := range frontends(newSvc, family) {
				out.Filters = append(out.Filters, Filter{OrigDstIP: dst.Addr(), OrigDstPort: dst.Port(), ReplySrcIP: dst.Addr(), ReplySrcPort: dst.Port()})
			}
			if newSvc.NodePort != 0 {
				np := uint16(newSvc.NodePort)
				out.Filters = append(out.Filters, Filter{OrigDstPort: np, ReplySrcPort: np})
			}
		}
	}
	return out
}

// usable lists the endpoints of the family that some packet may be sent to: ready ones, or serving
// terminating ones (the fallback). Nil for a missing service.
func usable(svc *model.ServicePort, eps []model.Endpoint, family model.IPFamily) []netip.AddrPort {
	if svc == nil {
		return nil
	}
	var out []netip.AddrPort
	for i := range eps {
		ep := &eps[i]
		if family.Of(ep.IP) && (ep.Ready || (ep.Serving && ep.Terminating)) {
			out = append(out, ep.AddrPort())
		}
	}
	return out
}

// frontends are the service's addresses of the family, each with the service port.
func frontends(svc *model.ServicePort, family model.IPFamily) []netip.AddrPort {
	if svc == nil {
		return nil
	}
	var out []netip.AddrPort
	port := uint16(svc.Port)
	for _, list := range [][]netip.Addr{model.AddrsFor(family, svc.ClusterIPs), model.AddrsFor(family, svc.ExternalIPs), model.AddrsFor(family, svc.LoadBalancerIPs)} {
		for _, a := range list {
			out = append(out, netip.AddrPortFrom(a, port))
		}
	}
	return out
}

// sameFrontends reports whether a service is still reachable the same ways, so entries DNATed to a
// surviving endpoint stay valid.
func sameFrontends(a, b *model.ServicePort, family model.IPFamily) bool {
	if a == nil || b == nil || a.Protocol != b.Protocol || a.NodePort != b.NodePort {
		return false
	}
	return slices.Equal(frontends(a, family), frontends(b, family))
}
