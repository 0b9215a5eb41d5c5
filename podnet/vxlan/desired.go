package vxlan

import (
	"fmt"
	"net"
	"sort"
)

// Peer is what a node needs to know about another node to reach its pods.
type Peer struct {
	Name     string
	PodCIDR  *net.IPNet
	VTEPMAC  net.HardwareAddr
	PublicIP net.IP
}

// Local is this node's side of the overlay, as far as rendering peer entries needs it.
type Local struct {
	// DeviceIndex is the ifindex of this node's VXLAN device.
	DeviceIndex int
	// PodCIDR is this node's own pod CIDR; a peer claiming an overlapping one is skipped.
	PodCIDR *net.IPNet
	// DirectRouting enables plain routes to peers that share UnderlaySubnet.
	DirectRouting  bool
	UnderlayIndex  int
	UnderlaySubnet *net.IPNet
}

// Neighbor is a permanent ARP entry on the VXLAN device: the peer's VTEP IP resolves to its VTEP MAC.
type Neighbor struct {
	IP  net.IP
	MAC net.HardwareAddr
}

// FDBEntry tells the VXLAN device to which underlay address frames for a VTEP MAC are sent.
type FDBEntry struct {
	MAC net.HardwareAddr
	Dst net.IP
}

// Route sends a peer's pod CIDR either through the VXLAN device (onlink via the peer's VTEP IP) or,
// with direct routing, straight to the peer's underlay address.
type Route struct {
	Dst       *net.IPNet
	Gw        net.IP
	LinkIndex int
	OnLink    bool
}

// PeerEntries is everything one peer needs. Neighbor and FDB are nil for a directly routed peer.
type PeerEntries struct {
	Peer     string
	Neighbor *Neighbor
	FDB      *FDBEntry
	Route    Route
}

// Desired is the kernel state the overlay wants, one PeerEntries per usable peer, sorted by peer name
// so that applying it is deterministic.
type Desired struct {
	Peers []PeerEntries
}

// SkippedPeer says why a peer got no entries, so that the caller can log it.
type SkippedPeer struct {
	Peer   string
	Reason string
}

// ComputeDesired turns the peer list into kernel entries. It is pure: no netlink, no clock. Peers
// that are invalid, overlap this node's pod CIDR, or collide with another peer are skipped and
// reported; they never affect the entries of other peers.
func ComputeDesired(local Local, peers []Peer) (Desired, []SkippedPeer) {
	sorted := append([]Peer(nil), peers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })

	var skipped []SkippedPeer
	skip := func(p Peer, format string, args ...any) {
		skipped = append(skipped, SkippedPeer{Peer: p.Name, Reason: fmt.Sprintf(format, args...)})
	}
	// First pass: validate each peer on its own and find CIDR, VTEP MAC and VTEP IP collisions; a
	// collision disqualifies every peer involved, since either could be the stale one.
	valid := make([]Peer, 0, len(sorted))
	cidrOwners := map[string]int{}
	macOwners := map[string]int{}
	for _, p := range sorted {
		switch {
		case p.PodCIDR == nil || p.PodCIDR.IP.To4() == nil:
			skip(p, "no IPv4 pod CIDR")
			continue
		case len(p.VTEPMAC) != 6 || p.VTEPMAC[0]&0x01 != 0:
			skip(p, "VTEP MAC %q is not a unicast Ethernet address", p.VTEPMAC)
			continue
		case p.PublicIP.To4() == nil || p.PublicIP.IsUnspecified() || p.PublicIP.IsLoopback() || p.PublicIP.IsMulticast():
			skip(p, "public IP %q is not a usable IPv4 unicast address", p.PublicIP)
			continue
		case local.PodCIDR != nil && overlaps(local.PodCIDR, p.PodCIDR):
			skip(p, "pod CIDR %s overlaps this node's %s", p.PodCIDR, local.PodCIDR)
			continue
		}
		valid = append(valid, p)
		cidrOwners[canonical(p.PodCIDR).String()]++
		macOwners[p.VTEPMAC.String()]++
	}
	sizes := map[int]bool{}
	for _, p := range valid {
		ones, _ := p.PodCIDR.Mask.Size()
		sizes[ones] = true
	}
	out := Desired{Peers: make([]PeerEntries, 0, len(valid))}
	for i, p := range valid {
		if cidrOwners[canonical(p.PodCIDR).String()] > 1 {
			skip(p, "pod CIDR %s is claimed by more than one node", p.PodCIDR)
			continue
		}
		if macOwners[p.VTEPMAC.String()] > 1 {
			skip(p, "VTEP MAC %s is claimed by more than one node", p.VTEPMAC)
			continue
		}
		if len(sizes) > 1 && overlapsAnyOther(valid, i) {
			skip(p, "pod CIDR %s overlaps another node's", p.PodCIDR)
			continue
		}
		out.Peers = append(out.Peers, entriesFor(local, p))
	}
	return out, skipped
}

func entriesFor(local Local, p Peer) PeerEntries {
	dst := canonical(p.PodCIDR)
	pub := p.PublicIP.To4()
	if local.DirectRouting && local.UnderlaySubnet != nil && local.UnderlaySubnet.Contains(pub) {
		return PeerEntries{Peer: p.Name, Route: Route{Dst: dst, Gw: pub, LinkIndex: local.UnderlayIndex}}
	}
	vtep := VTEPIP(dst)
	return PeerEntries{
		Peer:     p.Name,
		Neighbor: &Neighbor{IP: vtep, MAC: p.VTEPMAC},
		FDB:      &FDBEntry{MAC: p.VTEPMAC, Dst: pub},
		Route:    Route{Dst: dst, Gw: vtep, LinkIndex: local.DeviceIndex, OnLink: true},
	}
}

func canonical(n *net.IPNet) *net.IPNet {
	return &net.IPNet{IP: n.IP.Mask(n.Mask).To4(), Mask: n.Mask}
}

func overlaps(a, b *net.IPNet) bool {
	return a.Contains(b.IP.Mask(b.Mask)) || b.Contains(a.IP.Mask(a.Mask))
}

// overlapsAnyOther finds a peer whose differently sized pod CIDR overlaps peer i's. It is quadratic,
// so ComputeDesired calls it only when the cluster mixes prefix lengths (equal-sized CIDRs overlap
// only when identical, which the owner count already catches).
func overlapsAnyOther(peers []Peer, i int) bool {
	pi := peers[i].PodCIDR
	oi, _ := pi.Mask.Size()
	for j, p := range peers {
		if j == i {
			continue
		}
		oj, _ := p.PodCIDR.Mask.Size()
		if oi == oj {
			continue // same size and not identical cannot overlap
		}
		if overlaps(pi, p.PodCIDR) {
			return true
		}
	}
	return false
}
