package main

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/model"
)

// liveSources are where `switchyard explain` reads a node's state from: the kernel and the daemon
// (hostSources), or fakes in tests. gatherLive turns what they say into an explain.Live.
type liveSources struct {
	// saveIptables is iptables-save of the family, every table, of the variant the node uses.
	saveIptables func(model.IPFamily) ([]byte, error)
	// ipvs lists IPVS mode's live state: the kernel's virtual servers and the backend's ipsets
	// (`ipset save` text). Only called in IPVS mode.
	ipvs func(model.IPFamily) ([]explain.VirtualServer, string, error)
	// hasIPVSDevice reports whether kube-ipvs0 exists, for --proxy-mode auto.
	hasIPVSDevice func() bool
	// localAddrs are the node's addresses of the family, with the interface of each.
	localAddrs func(model.IPFamily) (map[netip.Addr]string, error)
	// route is the kernel's routing decision for a destination.
	route func(netip.Addr) (routeFacts, error)
	// conntrack is the node's conntrack table.
	conntrack conntrack.Table
	// fetchModel reads the daemon's /debug/model.
	fetchModel func() (*model.DebugModel, error)
	// fetchExpectedRules reads the daemon's /debug/rules, for --check.
	fetchExpectedRules func() ([]byte, error)
}

// routeFacts is what the kernel says of the route to a destination; classifyRoute names its kind.
type routeFacts struct {
	Dst        netip.Addr
	Local      bool   // a local route: the node itself
	Device     string // the output device (lo for a local route)
	DeviceType string // netlink's link type: "bridge", "vxlan", "veth", "device", ...
	Gateway    netip.Addr
	Src        netip.Addr // the source address the kernel picks
	// Prefix is the route that matched, when known; 0 bits is the default route.
	Prefix netip.Prefix
	BGP    bool // the matched route was installed by a BGP daemon (proto bgp)
}

// Switchyard's chains that say which mode's rules are in force, for --proxy-mode auto.
const (
	iptablesModeChain = "SY-SERVICES"
	ipvsModeChain     = "SY-IPVS-SERVICES"
)

// gathered is a gathered Live with what the reader should know about how it was gathered.
type gathered struct {
	live  *explain.Live
	notes []string
}

// gatherLive reads everything an explanation of pkt reads, in mode ("auto" picks it). Only a
// failure to read the rules themselves is an error: without the daemon's model, conntrack or the
// local addresses, the walk goes on and the notes say what is missing.
func gatherLive(src liveSources, mode string, pkt explain.Packet) (*gathered, error) {
	family := familyOf(pkt.Dst.Addr())
	g := &gathered{live: &explain.Live{Family: family}}
	live := g.live
	save, err := src.saveIptables(family)
	if err != nil {
		return nil, fmt.Errorf("read the %s iptables rules: %w", family, err)
	}
	live.IptablesSave = save
	if live.Mode, err = pickMode(mode, save, src.hasIPVSDevice); err != nil {
		return nil, err
	}
	if live.Mode == "ipvs" {
		if live.VirtualServers, live.IPSetSave, err = src.ipvs(family); err != nil {
			return nil, fmt.Errorf("read IPVS mode's state: %w", err)
		}
	}

	if live.Model, err = src.fetchModel(); err != nil {
		live.Model = nil
		// The walker says what that leaves unchecked; this says why.
		g.notes = append(g.notes, fmt.Sprintf("the daemon's model could not be read: %v", err))
	}
	if live.LocalAddrs, err = src.localAddrs(family); err != nil {
		g.notes = append(g.notes, fmt.Sprintf("the node's addresses could not be listed (%v)", err))
	}
	if live.Conntrack, err = matchingFlows(src.conntrack, family, pkt, live.Model); err != nil {
		g.notes = append(g.notes, fmt.Sprintf("the conntrack table could not be read fully (%v)", err))
	}
	m := live.Model
	live.Route = func(dst netip.Addr) (explain.Route, error) {
		f, err := src.route(dst)
		if err != nil {
			return explain.Route{}, fmt.Errorf("route to %s: %w", dst, err)
		}
		return classifyRoute(f, m), nil
	}
	return g, nil
}

// pickMode resolves --proxy-mode: auto is IPVS when Switchyard's IPVS chains are in the tables (or,
// without either mode's chains, when kube-ipvs0 exists), else iptables.
func pickMode(mode string, save []byte, hasIPVSDevice func() bool) (string, error) {
	if mode != "auto" {
		return mode, nil
	}
	dump, _ := utiliptables.ParseSave(save)
	nat := dump.Table(utiliptables.TableNAT)
	declared := func(chain string) bool { return nat != nil && nat.Chain(chain) != nil }
	switch {
	case declared(ipvsModeChain):
		return "ipvs", nil
	case declared(iptablesModeChain):
		return "iptables", nil
	case hasIPVSDevice != nil && hasIPVSDevice():
		return "ipvs", nil
	}
	return "iptables", nil
}

// matchingFlows lists the conntrack entries of pkt's protocol that are about its destination
// (those sent to it, and those sent to one of its endpoints, by the model, or answered by it) and,
// when the packet has a source, that come from it: only the client's own entries can pin its flow,
// and on a busy node other clients' entries are noise.
func matchingFlows(t conntrack.Table, family model.IPFamily, pkt explain.Packet, m *model.DebugModel) ([]explain.ConntrackEntry, error) {
	if t == nil {
		return nil, errors.New("no conntrack table")
	}
	flows, err := t.List(family)
	if err != nil && !errors.Is(err, conntrack.ErrPartial) {
		return nil, err
	}
	targets := map[netip.AddrPort]bool{pkt.Dst: true}
	if m != nil {
		for i := range m.Services {
			// A node port on any address: a flow to another port is not matched anyway.
			if m.Services[i].AddressedBy(pkt.Dst, pkt.Proto, true) {
				for _, ep := range m.Services[i].Endpoints {
					targets[ep.Endpoint] = true
				}
			}
		}
	}
	proto := protocolOf(pkt.Proto)
	var out []explain.ConntrackEntry
	for _, f := range flows {
		if f.Protocol != proto || !(targets[f.OrigDst] || targets[f.ReplySrc]) || !fromSource(f, pkt.Src) {
			continue
		}
		out = append(out, explain.ConntrackEntry{Protocol: pkt.Proto, OrigSrc: f.OrigSrc, OrigDst: f.OrigDst, ReplySrc: f.ReplySrc, ReplyDst: f.ReplyDst})
	}
	slices.SortFunc(out, func(a, b explain.ConntrackEntry) int {
		if c := a.OrigSrc.Compare(b.OrigSrc); c != 0 {
			return c
		}
		return a.OrigDst.Compare(b.OrigDst)
	})
	return out, err
}

// fromSource reports whether a flow comes from src: any flow when src has no address, any port of
// the address when src has no port.
func fromSource(f conntrack.Flow, src netip.AddrPort) bool {
	if !src.Addr().IsValid() {
		return true
	}
	return f.OrigSrc.Addr() == src.Addr() && (src.Port() == 0 || f.OrigSrc.Port() == src.Port())
}

// classifyRoute names the route a packet to f.Dst takes: "local" (the node itself), "bridge" (a pod
// on this node, behind a bridge, or a veth with a host route or in this node's pod CIDR), "vxlan"
// (the overlay), "bgp" (a route a BGP daemon installed), "default" (the default route), else
// "direct" (a more specific route, such as one to another node's pod CIDR through its underlay
// address). The node is the model's: the node of
// the endpoint at Dst, or this node for a local route.
func classifyRoute(f routeFacts, m *model.DebugModel) explain.Route {
	r := explain.Route{Dst: f.Dst, Device: f.Device, Gateway: f.Gateway, Src: f.Src}
	switch {
	case f.Local:
		r.Kind = "local"
	case f.DeviceType == "bridge" || f.DeviceType == "veth" && toLocalPod(f, m):
		r.Kind = "bridge"
	case f.DeviceType == "vxlan":
		r.Kind = "vxlan"
	case f.BGP:
		r.Kind = "bgp"
	case f.Prefix.IsValid() && f.Prefix.Bits() == 0:
		r.Kind = "default"
	default:
		r.Kind = "direct"
	}
	if m != nil {
		if r.Kind == "local" {
			r.Node = m.Node.Name
		} else {
			r.Node = endpointNode(m, f.Dst)
		}
	}
	return r
}

// toLocalPod reports whether a route through a veth leads to a pod on this node (a point-to-point
// CNI's host route), rather than out of a node whose uplink is a veth (a node in a container).
func toLocalPod(f routeFacts, m *model.DebugModel) bool {
	if f.Prefix.IsValid() && f.Prefix.IsSingleIP() {
		return true
	}
	if m != nil {
		for _, p := range m.Node.PodCIDRs {
			if p.Contains(f.Dst) {
				return true
			}
		}
	}
	return false
}

// endpointNode is the node the model says runs the endpoint at addr, or "".
func endpointNode(m *model.DebugModel, addr netip.Addr) string {
	for _, svc := range m.Services {
		for _, ep := range svc.Endpoints {
			if ep.Endpoint.Addr() == addr && ep.NodeName != "" {
				return ep.NodeName
			}
		}
	}
	return ""
}
