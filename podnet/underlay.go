package podnet

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/podnet/vxlan"
)

// underlay is the interface VXLAN packets leave the node through.
type underlay struct {
	Index  int
	Name   string
	MTU    int
	IP     net.IP
	Subnet *net.IPNet
}

// findUnderlay resolves --iface (an interface name or one of its addresses) or, when empty, the
// interface holding the node's InternalIP.
func findUnderlay(nl vxlan.Netlink, iface string, internalIP net.IP) (underlay, error) {
	if iface == "" && internalIP == nil {
		return underlay{}, fmt.Errorf("no --iface given and the node has no IPv4 InternalIP")
	}
	want := internalIP
	if iface != "" {
		if ip := net.ParseIP(iface); ip != nil {
			want = ip.To4()
		} else {
			link, err := nl.LinkByName(iface)
			if err != nil {
				return underlay{}, fmt.Errorf("--iface %s: %w", iface, err)
			}
			addrs, err := nl.AddrList(link, unix.AF_INET)
			if err != nil {
				return underlay{}, fmt.Errorf("addresses of %s: %w", iface, err)
			}
			for _, a := range addrs {
				if a.IP.IsGlobalUnicast() {
					return underlayOf(link, a), nil
				}
			}
			return underlay{}, fmt.Errorf("--iface %s has no IPv4 address", iface)
		}
	}
	links, err := nl.LinkList()
	if err != nil {
		return underlay{}, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		addrs, err := nl.AddrList(l, unix.AF_INET)
		if err != nil {
			continue // the link vanished between list and lookup
		}
		for _, a := range addrs {
			if a.IP.Equal(want) {
				return underlayOf(l, a), nil
			}
		}
	}
	return underlay{}, fmt.Errorf("no interface holds %s", want)
}

func underlayOf(l netlink.Link, a netlink.Addr) underlay {
	return underlay{
		Index:  l.Attrs().Index,
		Name:   l.Attrs().Name,
		MTU:    l.Attrs().MTU,
		IP:     a.IP.To4(),
		Subnet: &net.IPNet{IP: a.IP.Mask(a.Mask).To4(), Mask: a.Mask},
	}
}
