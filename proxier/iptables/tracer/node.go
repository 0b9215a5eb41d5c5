package tracer

import (
	"net/netip"
)

// Interface is one of the node's network interfaces with its addresses; each address's prefix is the
// subnet directly connected through the interface.
type Interface struct {
	Name  string
	Addrs []netip.Prefix
}

// Route sends Dst through Iface. A 0.0.0.0/0 route is the default route.
type Route struct {
	Dst   netip.Prefix
	Iface string
}

// Node is what the routing decision needs to know about the node the rules run on.
type Node struct {
	Interfaces []Interface
	Routes     []Route
	// RouteLookup, when set, makes the routing decision for a destination that is not local
	// instead of Interfaces' subnets and Routes: the device a packet to dst leaves through ("" for
	// no route) and the source address the kernel picks for it (invalid when unknown). Explaining a
	// live node asks the node's own routing table this way.
	RouteLookup func(dst netip.Addr) (dev string, src netip.Addr)
}

// IsLocal reports whether the node owns addr (any interface address, or loopback).
func (n *Node) IsLocal(a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	for _, i := range n.Interfaces {
		for _, p := range i.Addrs {
			if p.Addr() == a {
				return true
			}
		}
	}
	return false
}

// localOn reports whether addr is assigned to the named interface (loopback addresses belong to lo).
func (n *Node) localOn(a netip.Addr, dev string) bool {
	if a.IsLoopback() {
		return dev == "lo"
	}
	for _, i := range n.Interfaces {
		if i.Name != dev {
			continue
		}
		for _, p := range i.Addrs {
			if p.Addr() == a {
				return true
			}
		}
	}
	return false
}

// routeIface returns the interface a packet to dst leaves through, by longest prefix over connected
// subnets and routes; "lo" for local addresses; "" when there is no route.
func (n *Node) routeIface(dst netip.Addr) string {
	if n.IsLocal(dst) {
		return "lo"
	}
	if n.RouteLookup != nil {
		dev, _ := n.RouteLookup(dst)
		return dev
	}
	best, bestBits := "", -1
	consider := func(p netip.Prefix, dev string) {
		if p.Contains(dst) && p.Bits() > bestBits {
			best, bestBits = dev, p.Bits()
		}
	}
	for _, i := range n.Interfaces {
		for _, p := range i.Addrs {
			consider(p.Masked(), i.Name)
		}
	}
	for _, r := range n.Routes {
		consider(r.Dst, r.Iface)
	}
	return best
}

// masqueradeAddr is the source MASQUERADE gives a packet to dst leaving through dev: the route's
// source address when RouteLookup knows it, else dev's first address in dst's family.
func (n *Node) masqueradeAddr(dev string, dst netip.Addr) netip.Addr {
	if n.RouteLookup != nil && !n.IsLocal(dst) {
		if _, src := n.RouteLookup(dst); src.IsValid() && src.Is4() == dst.Is4() {
			return src
		}
	}
	return n.ifaceAddr(dev, dst)
}

// ifaceAddr is the first address of dev in dst's family: the source MASQUERADE picks.
func (n *Node) ifaceAddr(dev string, like netip.Addr) netip.Addr {
	for _, i := range n.Interfaces {
		if i.Name != dev {
			continue
		}
		for _, p := range i.Addrs {
			if p.Addr().Is4() == like.Is4() {
				return p.Addr()
			}
		}
	}
	return netip.Addr{}
}

// addrType classifies a as the kernel's addrtype match does; with dev set, LOCAL only counts for
// addresses on dev (--limit-iface-in/out).
func (t *Tracer) addrType(a netip.Addr, dev string) string {
	switch {
	case a.IsMulticast():
		return "MULTICAST"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "BROADCAST"
	}
	if dev != "" {
		if t.node.localOn(a, dev) {
			return "LOCAL"
		}
	} else if t.node.IsLocal(a) {
		return "LOCAL"
	}
	for _, i := range t.node.Interfaces {
		for _, p := range i.Addrs {
			if a.Is4() && p.Bits() < 31 && p.Masked().Contains(a) && a == lastAddr(p.Masked()) {
				return "BROADCAST"
			}
		}
	}
	return "UNICAST"
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
