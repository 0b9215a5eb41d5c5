package conntrack

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/proxier/model"
)

// Deleter deletes the UDP conntrack entries of one family that match any of the filters and returns
// how many it deleted.
type Deleter interface {
	DeleteUDP(family model.IPFamily, filters []Filter) (int, error)
}

// Delete applies stale through d, doing nothing when there is nothing to delete.
func Delete(d Deleter, family model.IPFamily, stale Stale) error {
	if stale.Empty() {
		return nil
	}
	if _, err := d.DeleteUDP(family, stale.Filters); err != nil {
		return fmt.Errorf("delete stale UDP conntrack entries (%d filters): %w", len(stale.Filters), err)
	}
	return nil
}

// Netlink deletes entries through a netlink handle: one dump of the table, then a delete per match.
type Netlink struct {
	// Handle is the netlink socket to use; nil means the calling thread's network namespace.
	Handle *netlink.Handle
}

var _ Deleter = (*Netlink)(nil)

// netlinkFilter adapts filters to netlink's callback-style matching.
type netlinkFilter []Filter

func (fs netlinkFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	origDst := netip.AddrPortFrom(addrOf(flow.Forward.DstIP), flow.Forward.DstPort)
	replySrc := netip.AddrPortFrom(addrOf(flow.Reverse.SrcIP), flow.Reverse.SrcPort)
	return slices.ContainsFunc(fs, func(f Filter) bool { return f.Matches(origDst, replySrc) })
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func (n *Netlink) DeleteUDP(family model.IPFamily, filters []Filter) (int, error) {
	fam := netlink.InetFamily(unix.AF_INET)
	if family == model.IPv6 {
		fam = netlink.InetFamily(unix.AF_INET6)
	}
	h := n.Handle
	if h == nil {
		var err error
		if h, err = netlink.NewHandle(unix.NETLINK_NETFILTER); err != nil {
			return 0, fmt.Errorf("open netfilter netlink socket: %w", err)
		}
		defer h.Close()
	}
	count, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, fam, netlinkFilter(filters))
	if err != nil {
		return int(count), fmt.Errorf("conntrack delete via netlink: %w", err)
	}
	return int(count), nil
}
