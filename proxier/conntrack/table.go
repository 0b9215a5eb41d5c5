package conntrack

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/proxier/model"
)

// Flow is one conntrack entry: its protocol and both directions' tuples. For a DNATed entry the reply
// source is the DNAT target (the endpoint); for one that was never DNATed it equals the original
// destination.
type Flow struct {
	Protocol model.Protocol // TCP, UDP or SCTP; empty for any other protocol
	OrigSrc  netip.AddrPort
	OrigDst  netip.AddrPort
	ReplySrc netip.AddrPort
	ReplyDst netip.AddrPort
}

func (f Flow) String() string {
	return fmt.Sprintf("%s orig %v->%v reply %v->%v", f.Protocol, f.OrigSrc, f.OrigDst, f.ReplySrc, f.ReplyDst)
}

// Table is the node's conntrack table, as far as the reconciler needs it. Netlink is the kernel's;
// conntracktest.Fake holds one in memory.
type Table interface {
	// List returns every entry of the family. When the kernel could only give part of the table
	// (the dump was interrupted too often) it returns that part with an error wrapping ErrPartial.
	List(family model.IPFamily) ([]Flow, error)
	// Delete deletes exactly the given entries of the family (those already gone count as deleted)
	// and returns how many it deleted.
	Delete(family model.IPFamily, flows []Flow) (int, error)
}

// ErrPartial says a listing holds only part of the table.
var ErrPartial = errors.New("conntrack table listed only partly")

// dumpAttempts bounds the retries of a dump that the kernel interrupted because the table changed
// meanwhile (kube-proxy makes the same number of attempts).
const dumpAttempts = 5

// Netlink is the kernel's conntrack table, reached through a netfilter netlink socket.
type Netlink struct {
	// Handle is the netlink socket to use; nil means a new one per call, in the calling thread's
	// network namespace.
	Handle *netlink.Handle
}

var _ Table = (*Netlink)(nil)

func (n *Netlink) handle() (*netlink.Handle, func(), error) {
	if n.Handle != nil {
		return n.Handle, func() {}, nil
	}
	h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, nil, fmt.Errorf("open netfilter netlink socket: %w", err)
	}
	return h, h.Close, nil
}

func inetFamily(f model.IPFamily) netlink.InetFamily {
	if f == model.IPv6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

func (n *Netlink) List(family model.IPFamily) ([]Flow, error) {
	h, done, err := n.handle()
	if err != nil {
		return nil, err
	}
	defer done()
	var raw []*netlink.ConntrackFlow
	for range dumpAttempts {
		raw, err = h.ConntrackTableList(netlink.ConntrackTable, inetFamily(family))
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list %s conntrack entries: %w", family, err)
	}
	out := make([]Flow, 0, len(raw))
	for _, f := range raw {
		out = append(out, flowOf(f))
	}
	if err != nil {
		return out, fmt.Errorf("list %s conntrack entries, interrupted %d times: %w", family, dumpAttempts, ErrPartial)
	}
	return out, nil
}

// Delete walks the table once more and deletes the entries whose tuples are among flows: netlink
// deletes by tuple, and an entry that a client re-created since the listing has the same tuples and
// is just as stale.
func (n *Netlink) Delete(family model.IPFamily, flows []Flow) (int, error) {
	if len(flows) == 0 {
		return 0, nil
	}
	h, done, err := n.handle()
	if err != nil {
		return 0, err
	}
	defer done()
	want := make(flowSet, len(flows))
	for _, f := range flows {
		want[f] = struct{}{}
	}
	var total uint
	for range dumpAttempts {
		var count uint
		count, err = h.ConntrackDeleteFilters(netlink.ConntrackTable, inetFamily(family), want)
		total += count
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return int(total), fmt.Errorf("delete %d %s conntrack entries (%d deleted): %w", len(flows), family, total, err)
	}
	return int(total), nil
}

// flowSet matches the netlink entries whose tuples it holds.
type flowSet map[Flow]struct{}

func (s flowSet) MatchConntrackFlow(f *netlink.ConntrackFlow) bool {
	_, ok := s[flowOf(f)]
	return ok
}

func flowOf(f *netlink.ConntrackFlow) Flow {
	return Flow{
		Protocol: protocolOf(f.Forward.Protocol),
		OrigSrc:  netip.AddrPortFrom(addrOf(f.Forward.SrcIP), f.Forward.SrcPort),
		OrigDst:  netip.AddrPortFrom(addrOf(f.Forward.DstIP), f.Forward.DstPort),
		ReplySrc: netip.AddrPortFrom(addrOf(f.Reverse.SrcIP), f.Reverse.SrcPort),
		ReplyDst: netip.AddrPortFrom(addrOf(f.Reverse.DstIP), f.Reverse.DstPort),
	}
}

func protocolOf(p uint8) model.Protocol {
	switch p {
	case unix.IPPROTO_TCP:
		return model.TCP
	case unix.IPPROTO_UDP:
		return model.UDP
	case unix.IPPROTO_SCTP:
		return model.SCTP
	}
	return ""
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}
