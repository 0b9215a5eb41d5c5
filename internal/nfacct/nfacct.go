// Package nfacct reads and creates the kernel's extended accounting objects (nfacct): named packet
// and byte counters that an iptables rule bumps with `-m nfacct --nfacct-name NAME`. kube-proxy
// exports two of them as metrics. Netlink is the real Interface; nfaccttest.Fake is its fake.
// Counters are per network namespace.
package nfacct

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Counter is one accounting object and what it has counted.
type Counter struct {
	Name    string
	Packets uint64
	Bytes   uint64
}

// Interface is the part of nfacct Switchyard uses.
type Interface interface {
	// Ensure creates the counter unless it exists; an existing counter keeps its counts.
	Ensure(name string) error
	// Get reads one counter; ErrNotFound when there is none of that name.
	Get(name string) (Counter, error)
}

// MaxNameLen is the longest counter name the kernel takes (NFACCT_NAME_MAX less its NUL).
const MaxNameLen = 31

var (
	// ErrNotFound: no counter of that name.
	ErrNotFound = errors.New("nfacct counter not found")
	// ErrBadName: a name the kernel would refuse (empty or too long).
	ErrBadName = fmt.Errorf("nfacct counter name must be 1 to %d bytes", MaxNameLen)
)

// The nfnetlink_acct message types and attributes (include/uapi/linux/netfilter/nfnetlink_acct.h).
const (
	msgNew = 0 // NFNL_MSG_ACCT_NEW
	msgGet = 1 // NFNL_MSG_ACCT_GET

	attrName    = 1 // NFACCT_NAME, NUL-terminated string
	attrPackets = 2 // NFACCT_PKTS, big-endian u64
	attrBytes   = 3 // NFACCT_BYTES, big-endian u64

	attrTypeMask = 0x3fff // NLA_TYPE_MASK: strips the nested and byte-order flags
)

// Netlink talks nfnetlink_acct over one NETLINK_NETFILTER socket, which stays in the network
// namespace it was opened in whichever thread later uses it. Safe for concurrent use (a metrics
// scrape may come while a sync runs).
type Netlink struct {
	mu   sync.Mutex
	sock *nl.SocketHandle
}

var _ Interface = (*Netlink)(nil)

// New opens a socket in the calling thread's network namespace and checks that the kernel speaks
// nfacct (a kernel without CONFIG_NETFILTER_NETLINK_ACCT refuses the subsystem).
func New() (*Netlink, error) {
	return NewAt(netns.None())
}

// NewAt is New for the network namespace ns (netns.None(): the calling thread's).
func NewAt(ns netns.NsHandle) (*Netlink, error) {
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("nfacct: open netlink socket: %w", err)
	}
	if err := s.SetReceiveTimeout(&nl.SocketTimeoutTv); err != nil {
		s.Close()
		return nil, fmt.Errorf("nfacct: %w", err)
	}
	n := &Netlink{sock: &nl.SocketHandle{Socket: s}}
	// Any name will do: a kernel with nfacct answers ENOENT (or the counter).
	if _, err := n.Get("switchyard-probe"); err != nil && !errors.Is(err, ErrNotFound) {
		n.Close()
		return nil, fmt.Errorf("nfacct not available: %w", err)
	}
	return n, nil
}

// Close releases the socket.
func (n *Netlink) Close() error {
	n.sock.Close()
	return nil
}

// Ensure creates name unless it exists.
func (n *Netlink) Ensure(name string) error {
	_, err := n.Get(name)
	if err == nil {
		return nil
	}
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	// Without NLM_F_EXCL or NLM_F_REPLACE the kernel answers EBUSY for a counter that exists, so
	// one created between the Get and here is no error.
	_, err = n.execute(msgNew, unix.NLM_F_CREATE|unix.NLM_F_ACK, name)
	if err != nil && !errors.Is(err, syscall.EBUSY) && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("nfacct: create %s: %w", name, err)
	}
	return nil
}

// Get reads name's counts.
func (n *Netlink) Get(name string) (Counter, error) {
	msgs, err := n.execute(msgGet, unix.NLM_F_ACK, name)
	if errors.Is(err, syscall.ENOENT) {
		return Counter{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return Counter{}, fmt.Errorf("nfacct: get %s: %w", name, err)
	}
	for _, m := range msgs {
		c, err := decode(m)
		if err != nil {
			return Counter{}, fmt.Errorf("nfacct: get %s: %w", name, err)
		}
		if c.Name == name {
			return c, nil
		}
	}
	return Counter{}, fmt.Errorf("nfacct: get %s: no counter in the kernel's answer", name)
}

// execute sends one request about the counter name and returns the answers' payloads.
func (n *Netlink) execute(msg int, flags uint16, name string) ([][]byte, error) {
	if name == "" || len(name) > MaxNameLen {
		return nil, fmt.Errorf("%w: %q", ErrBadName, name)
	}
	req := &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   uint32(unix.SizeofNlMsghdr),
			Type:  uint16(unix.NFNL_SUBSYS_ACCT<<8 | msg),
			Flags: unix.NLM_F_REQUEST | flags,
		},
		Sockets: map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: n.sock},
	}
	req.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_UNSPEC, Version: nl.NFNETLINK_V0})
	req.AddData(nl.NewRtAttr(attrName, nl.ZeroTerminated(name)))
	n.mu.Lock()
	defer n.mu.Unlock()
	return req.Execute(unix.NETLINK_NETFILTER, 0)
}

// decode parses one NFNL_MSG_ACCT_NEW answer: a nfgenmsg, then attributes.
func decode(b []byte) (Counter, error) {
	if len(b) < nl.SizeofNfgenmsg {
		return Counter{}, errors.New("short nfacct message")
	}
	attrs, err := nl.ParseRouteAttr(b[nl.SizeofNfgenmsg:])
	if err != nil {
		return Counter{}, fmt.Errorf("nfacct attributes: %w", err)
	}
	var c Counter
	var seen int
	for _, a := range attrs {
		switch a.Attr.Type & attrTypeMask {
		case attrName:
			v := a.Value
			for len(v) > 0 && v[len(v)-1] == 0 {
				v = v[:len(v)-1]
			}
			c.Name = string(v)
			seen |= 1
		case attrPackets, attrBytes:
			if len(a.Value) != 8 {
				return Counter{}, fmt.Errorf("nfacct attribute %d: %d bytes, want 8", a.Attr.Type, len(a.Value))
			}
			v := binary.BigEndian.Uint64(a.Value)
			if a.Attr.Type&attrTypeMask == attrPackets {
				c.Packets, seen = v, seen|2
			} else {
				c.Bytes, seen = v, seen|4
			}
		}
	}
	if seen != 7 {
		return Counter{}, errors.New("nfacct message lacks the name, packets or bytes")
	}
	return c, nil
}
