package vxlan

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Result counts what one reconcile did. Writes is the number of mutating netlink calls; an unchanged
// peer set costs zero, and one changed peer costs only that peer's entries.
type Result struct {
	Writes      int
	PeersFailed []string
	Removed     int
}

// current is the overlay state the kernel reported, indexed like the desired state.
type current struct {
	neighs map[string]netlink.Neigh   // VTEP IP -> permanent neighbour on the device
	fdb    map[string][]netlink.Neigh // VTEP MAC -> FDB entries (one per underlay destination)
	routes map[string]netlink.Route   // pod CIDR -> route tagged with RouteProtocol
}

// Reconcile makes the kernel's peer entries equal desired: it lists the neighbours and FDB entries of
// the device at devIndex and every route tagged with RouteProtocol, writes what is missing or
// different, peer by peer with rollback, and then deletes what no peer wants any more. A peer that
// fails leaves no partial entries behind and does not stop the others; its error is returned
// (joined) so the caller retries.
func Reconcile(nl Netlink, devIndex int, desired Desired) (Result, error) {
	var res Result
	cur, err := listCurrent(nl, devIndex)
	if err != nil {
		return res, err
	}
	wantNeigh := map[string]bool{}
	wantFDB := map[string]net.IP{}
	wantRoute := map[string]bool{}
	keepFDB := map[string]bool{} // FDB entries of failed peers' previous MACs, still in use
	var errs []error
	for _, pe := range desired.Peers {
		if pe.Neighbor != nil {
			wantNeigh[pe.Neighbor.IP.String()] = true
		}
		if pe.FDB != nil {
			wantFDB[pe.FDB.MAC.String()] = pe.FDB.Dst
		}
		wantRoute[pe.Route.Dst.String()] = true
		writes, replacedFDB, err := applyPeer(nl, devIndex, pe, cur)
		res.Writes += writes
		if err != nil {
			res.PeersFailed = append(res.PeersFailed, pe.Peer)
			if pe.Neighbor != nil {
				// The rollback left this peer on its old MAC; the old FDB entry must stay with it.
				if prev, ok := cur.neighs[pe.Neighbor.IP.String()]; ok {
					keepFDB[prev.HardwareAddr.String()] = true
				}
			}
			errs = append(errs, fmt.Errorf("peer %s: %w", pe.Peer, err))
			continue
		}
		if replacedFDB {
			// NeighSet replaced the first listed destination of this MAC; it is gone.
			key := pe.FDB.MAC.String()
			cur.fdb[key] = cur.fdb[key][1:]
		}
	}

	// Remove what nobody wants: routes first, so no packet is routed towards a neighbour or FDB entry
	// that has just disappeared. An entry already gone counts as removed.
	remove := func(what string, del func() error) bool {
		res.Writes++
		if err := del(); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete stale %s: %w", what, err))
			return false
		}
		res.Removed++
		return true
	}
	for key, r := range cur.routes {
		if !wantRoute[key] && remove("route "+key, func() error { return nl.RouteDel(&r) }) {
			klog.V(2).InfoS("Removed stale overlay route", "dst", key)
		}
	}
	for mac, entries := range cur.fdb {
		if keepFDB[mac] {
			continue
		}
		for _, e := range entries {
			if want, ok := wantFDB[mac]; ok && want.Equal(e.IP) {
				continue
			}
			remove(fmt.Sprintf("fdb entry %s -> %s", mac, e.IP), func() error { return nl.NeighDel(&e) })
		}
	}
	for ip, n := range cur.neighs {
		if !wantNeigh[ip] {
			remove("neighbour "+ip, func() error { return nl.NeighDel(&n) })
		}
	}
	return res, errors.Join(errs...)
}

func listCurrent(nl Netlink, devIndex int) (current, error) {
	cur := current{neighs: map[string]netlink.Neigh{}, fdb: map[string][]netlink.Neigh{}, routes: map[string]netlink.Route{}}
	neighs, err := listRetry("neighbours", func() ([]netlink.Neigh, error) { return nl.NeighList(devIndex, unix.AF_INET) })
	if err != nil {
		return cur, err
	}
	for _, n := range neighs {
		// Only permanent entries are ours; the kernel may hold transient ones we must not fight.
		if n.State&netlink.NUD_PERMANENT != 0 && n.IP.To4() != nil {
			cur.neighs[n.IP.String()] = n
		}
	}
	fdb, err := listRetry("fdb entries", func() ([]netlink.Neigh, error) { return nl.NeighList(devIndex, unix.AF_BRIDGE) })
	if err != nil {
		return cur, err
	}
	for _, n := range fdb {
		if n.IP.To4() == nil || len(n.HardwareAddr) != 6 || isZeroMAC(n.HardwareAddr) {
			continue // the all-zero default destination and entries without a remote are not per-peer
		}
		cur.fdb[n.HardwareAddr.String()] = append(cur.fdb[n.HardwareAddr.String()], n)
	}
	filter := &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}
	routes, err := listRetry("routes", func() ([]netlink.Route, error) {
		return nl.RouteListFiltered(unix.AF_INET, filter, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return cur, err
	}
	for _, r := range routes {
		if r.Dst != nil {
			cur.routes[r.Dst.String()] = r
		}
	}
	return cur, nil
}

// applyPeer writes the entries of one peer that differ from cur, in the order neighbour, FDB, route,
// so that the route only appears once the layer-2 path behind it exists. If a step fails, the steps
// already done are undone: a new entry is deleted, a replaced one is put back.
func applyPeer(nl Netlink, devIndex int, pe PeerEntries, cur current) (writes int, replacedFDB bool, err error) {
	var undo []func()
	rollback := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	if n := pe.Neighbor; n != nil {
		prev, had := cur.neighs[n.IP.String()]
		if !had || !macEqual(prev.HardwareAddr, n.MAC) {
			want := neighFor(devIndex, n)
			writes++
			if err := nl.NeighSet(want); err != nil {
				return writes, false, fmt.Errorf("set neighbour %s -> %s: %w", n.IP, n.MAC, err)
			}
			undo = append(undo, func() {
				writes++
				if had {
					logUndo(nl.NeighSet(&prev), "restore neighbour", n.IP)
				} else {
					logUndo(nl.NeighDel(want), "remove neighbour", n.IP)
				}
			})
		}
	}
	if f := pe.FDB; f != nil {
		entries := cur.fdb[f.MAC.String()]
		if !fdbHas(entries, f.Dst) {
			want := fdbFor(devIndex, f)
			writes++
			if err := nl.NeighSet(want); err != nil {
				rollback()
				return writes, false, fmt.Errorf("set fdb %s -> %s: %w", f.MAC, f.Dst, err)
			}
			replacedFDB = len(entries) > 0
			undo = append(undo, func() {
				writes++
				if len(entries) > 0 {
					prev := entries[0]
					logUndo(nl.NeighSet(&prev), "restore fdb entry", f.MAC)
				} else {
					logUndo(nl.NeighDel(want), "remove fdb entry", f.MAC)
				}
			})
		}
	}
	r := pe.Route
	if prev, had := cur.routes[r.Dst.String()]; !had || !routeMatches(prev, r) {
		writes++
		if err := nl.RouteReplace(routeFor(r)); err != nil {
			rollback()
			return writes, false, fmt.Errorf("replace route %s via %s: %w", r.Dst, r.Gw, err)
		}
	}
	return writes, replacedFDB, nil
}

func logUndo(err error, what string, key fmt.Stringer) {
	if err != nil && !isGone(err) {
		klog.ErrorS(err, "Rollback step failed; the next sync retries", "step", what, "key", key.String())
	}
}

func neighFor(devIndex int, n *Neighbor) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    devIndex,
		Family:       unix.AF_INET,
		State:        netlink.NUD_PERMANENT,
		Type:         unix.RTN_UNICAST,
		IP:           n.IP.To4(),
		HardwareAddr: n.MAC,
	}
}

func fdbFor(devIndex int, f *FDBEntry) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    devIndex,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_PERMANENT,
		Flags:        netlink.NTF_SELF,
		IP:           f.Dst.To4(),
		HardwareAddr: f.MAC,
	}
}

func routeFor(r Route) *netlink.Route {
	out := &netlink.Route{
		LinkIndex: r.LinkIndex,
		Dst:       r.Dst,
		Gw:        r.Gw.To4(),
		Protocol:  RouteProtocol,
		Table:     unix.RT_TABLE_MAIN,
		Scope:     netlink.SCOPE_UNIVERSE,
	}
	if r.OnLink {
		out.Flags = int(netlink.FLAG_ONLINK)
	}
	return out
}

func routeMatches(have netlink.Route, want Route) bool {
	onlink := have.Flags&int(netlink.FLAG_ONLINK) != 0
	return have.LinkIndex == want.LinkIndex && have.Gw.Equal(want.Gw) && onlink == want.OnLink && len(have.MultiPath) == 0
}

func fdbHas(entries []netlink.Neigh, dst net.IP) bool {
	for _, e := range entries {
		if e.IP.Equal(dst) {
			return true
		}
	}
	return false
}

func isZeroMAC(mac net.HardwareAddr) bool {
	for _, b := range mac {
		if b != 0 {
			return false
		}
	}
	return true
}
