// Package vxlan programs the flannel-style VXLAN overlay of one node: its own VXLAN device and, for every
// peer node, a permanent neighbour entry, an FDB entry and an onlink route. Desired state is computed
// purely from plain peer values (desired.go); the reconciler diffs it against what netlink lists and
// applies the difference through the Netlink interface, which *netlink.Handle and vxlantest.Fake both
// implement.
package vxlan

import (
	"errors"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Netlink is the part of *netlink.Handle the overlay uses. Keeping it this small is what lets
// vxlantest.Fake model the kernel's behaviour faithfully.
type Netlink interface {
	LinkByName(name string) (netlink.Link, error)
	LinkByIndex(index int) (netlink.Link, error)
	LinkList() ([]netlink.Link, error)
	LinkAdd(link netlink.Link) error
	LinkDel(link netlink.Link) error
	LinkSetUp(link netlink.Link) error
	LinkSetMTU(link netlink.Link, mtu int) error
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
	NeighList(linkIndex, family int) ([]netlink.Neigh, error)
	NeighSet(neigh *netlink.Neigh) error
	NeighDel(neigh *netlink.Neigh) error
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	RouteReplace(route *netlink.Route) error
	RouteDel(route *netlink.Route) error
}

var _ Netlink = (*netlink.Handle)(nil)

// IsLinkNotFound reports whether err means that a link does not exist, as the real handle (a
// LinkNotFoundError) or the fake (ENODEV) says it.
func IsLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// isGone reports whether a delete failed only because the object was already absent.
func isGone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.EADDRNOTAVAIL) || IsLinkNotFound(err)
}

// listRetry retries a netlink dump that the kernel interrupted because the table changed under it;
// the partial result of an interrupted dump must not be diffed against, or entries would be re-added
// or deleted by mistake.
func listRetry[T any](what string, list func() ([]T, error)) ([]T, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		out, err := list()
		if err == nil {
			return out, nil
		}
		lastErr = err
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 10 * time.Millisecond)
	}
	return nil, fmt.Errorf("list %s: %w", what, lastErr)
}
