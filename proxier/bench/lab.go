package bench

import (
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/internal/nsthread"
)

// lab is a throwaway node: two network namespaces joined by a veth pair. "node" is where a backend
// programs its rules and where the client connects from; "backend" answers for every endpoint
// address at once (the whole EndpointCIDR is a local route there) on TargetPort.
//
// The namespaces are anonymous: nothing names them in /run/netns, so they vanish with this process
// even if it is killed, and nothing is ever added to the caller's own namespace.
type lab struct {
	node, backend netns.NsHandle
	listener      net.Listener
	wg            sync.WaitGroup
}

// Lab addresses: the node end of the veth and the backend end.
var backendIP = netip.MustParseAddr("192.168.0.2")

// newLab builds the namespaces, the link between them, the routes and the listener.
func newLab() (l *lab, err error) {
	l = &lab{node: -1, backend: -1}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	if l.node, err = newNamespace(); err != nil {
		return l, err
	}
	if l.backend, err = newNamespace(); err != nil {
		return l, err
	}
	// Routing only: a kernel without XFRM (the VM's) refuses a handle with the default families.
	nodeNL, err := netlink.NewHandleAt(l.node, unix.NETLINK_ROUTE)
	if err != nil {
		return l, fmt.Errorf("netlink in the node namespace: %w", err)
	}
	defer nodeNL.Close()
	backendNL, err := netlink.NewHandleAt(l.backend, unix.NETLINK_ROUTE)
	if err != nil {
		return l, fmt.Errorf("netlink in the backend namespace: %w", err)
	}
	defer backendNL.Close()

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(l.backend)}
	if err := nodeNL.LinkAdd(veth); err != nil {
		return l, fmt.Errorf("create the veth pair: %w", err)
	}
	for _, end := range []struct {
		h    *netlink.Handle
		addr netip.Addr
	}{{nodeNL, NodeIP}, {backendNL, backendIP}} {
		if err := upWithAddr(end.h, end.addr); err != nil {
			return l, err
		}
	}
	// The node's default route leads to the backend namespace, so it reaches every endpoint
	// there, and ClusterIPs (which no interface holds in iptables mode) are routable at all: a
	// connect picks its route, and its source address, before the NAT rules rewrite the
	// destination...
	if err := nodeNL.RouteAdd(&netlink.Route{Gw: backendIP.AsSlice()}); err != nil {
		return l, fmt.Errorf("default route of the node namespace: %w", err)
	}
	// ...which takes all of them as its own addresses (a local route), and answers anything it is
	// sent back through the node (IPVS keeps the client's address, a ClusterIP when the node
	// itself connects).
	lo, err := backendNL.LinkByName("lo")
	if err != nil {
		return l, fmt.Errorf("find lo in the backend namespace: %w", err)
	}
	if err := backendNL.RouteAdd(&netlink.Route{Dst: ipNet(EndpointCIDR), LinkIndex: lo.Attrs().Index, Type: unix.RTN_LOCAL,
		Table: unix.RT_TABLE_LOCAL, Scope: netlink.SCOPE_HOST}); err != nil {
		return l, fmt.Errorf("make the endpoint range local in the backend namespace: %w", err)
	}
	if err := backendNL.RouteAdd(&netlink.Route{Gw: NodeIP.AsSlice()}); err != nil {
		return l, fmt.Errorf("default route in the backend namespace: %w", err)
	}
	err = l.inBackend(func() error {
		var err error
		l.listener, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", TargetPort))
		return err
	})
	if err != nil {
		return l, fmt.Errorf("listen in the backend namespace: %w", err)
	}
	l.wg.Add(1)
	go l.serve()
	return l, nil
}

// serve accepts connections and closes them at once: a connect only needs the handshake.
func (l *lab) serve() {
	defer l.wg.Done()
	for {
		c, err := l.listener.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func upWithAddr(h *netlink.Handle, a netip.Addr) error {
	for _, name := range []string{"lo", "eth0"} {
		link, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("find %s: %w", name, err)
		}
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("bring %s up: %w", name, err)
		}
		if name == "eth0" {
			if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, 24))}); err != nil {
				return fmt.Errorf("address %s on eth0: %w", a, err)
			}
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// newNamespace creates an anonymous network namespace and returns a handle to it, leaving the
// calling thread where it was.
func newNamespace() (netns.NsHandle, error) {
	var h netns.NsHandle
	err := nsthread.Do(-1, func() error {
		var err error
		h, err = netns.New() // creates the namespace and moves this thread into it
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("create a network namespace: %w", err)
	}
	return h, nil
}

// inNode and inBackend run fn inside one of the lab's namespaces (see nsthread.Do).
func (l *lab) inNode(fn func() error) error    { return nsthread.Do(l.node, fn) }
func (l *lab) inBackend(fn func() error) error { return nsthread.Do(l.backend, fn) }

// Close stops the listener and drops the handles; the kernel then frees both namespaces with
// everything in them (rules, IPVS tables, routes, conntrack entries).
func (l *lab) Close() {
	if l.listener != nil {
		l.listener.Close()
		l.wg.Wait()
	}
	for _, h := range []netns.NsHandle{l.node, l.backend} {
		if h >= 0 {
			h.Close()
		}
	}
}
