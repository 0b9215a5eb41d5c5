package ipvstest

import (
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// FakeLinks is an in-memory set of interfaces and addresses that answers like the kernel: a second
// link of the same name is EEXIST, a missing one is netlink.LinkNotFoundError, a duplicate address is
// EEXIST and deleting an absent one is EADDRNOTAVAIL. NoDummy makes creating a dummy device fail with
// EOPNOTSUPP, as on a kernel without CONFIG_DUMMY.
type FakeLinks struct {
	Links   map[string]*FakeLink
	NoDummy bool
	Writes  int
	next    int
}

// FakeLink is one interface.
type FakeLink struct {
	Index int
	Type  string
	Up    bool
	Addrs []netip.Prefix
}

// NewFakeLinks returns a namespace with loopback (127.0.0.1/8, up) and the given interfaces' addresses.
func NewFakeLinks(ifaces map[string][]string) *FakeLinks {
	f := &FakeLinks{Links: map[string]*FakeLink{}}
	f.add("lo", "device", []string{"127.0.0.1/8", "::1/128"})
	names := make([]string, 0, len(ifaces))
	for n := range ifaces {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		f.add(n, "veth", ifaces[n])
	}
	return f
}

func (f *FakeLinks) add(name, typ string, addrs []string) {
	f.next++
	l := &FakeLink{Index: f.next, Type: typ, Up: true}
	for _, a := range addrs {
		l.Addrs = append(l.Addrs, netip.MustParsePrefix(a))
	}
	f.Links[name] = l
}

// AddrsOf returns an interface's addresses, sorted, or nil when it does not exist.
func (f *FakeLinks) AddrsOf(name string) []string {
	l, ok := f.Links[name]
	if !ok {
		return nil
	}
	out := []string{}
	for _, a := range l.Addrs {
		out = append(out, a.String())
	}
	slices.Sort(out)
	return out
}

func (f *FakeLinks) toLink(name string, l *FakeLink) netlink.Link {
	attrs := netlink.LinkAttrs{Name: name, Index: l.Index}
	if l.Up {
		attrs.Flags = net.FlagUp
	}
	if l.Type == "dummy" {
		return &netlink.Dummy{LinkAttrs: attrs}
	}
	return &netlink.Device{LinkAttrs: attrs}
}

func (f *FakeLinks) byLink(link netlink.Link) (*FakeLink, error) {
	l, ok := f.Links[link.Attrs().Name]
	if !ok || l.Index != link.Attrs().Index {
		return nil, unix.ENODEV
	}
	return l, nil
}

func (f *FakeLinks) LinkByName(name string) (netlink.Link, error) {
	l, ok := f.Links[name]
	if !ok {
		return nil, netlink.LinkNotFoundError{}
	}
	return f.toLink(name, l), nil
}

func (f *FakeLinks) LinkAdd(link netlink.Link) error {
	f.Writes++
	name := link.Attrs().Name
	if _, ok := f.Links[name]; ok {
		return unix.EEXIST
	}
	if link.Type() == "dummy" && f.NoDummy {
		return unix.EOPNOTSUPP
	}
	f.add(name, link.Type(), nil)
	f.Links[name].Up = false
	return nil
}

func (f *FakeLinks) LinkSetUp(link netlink.Link) error {
	f.Writes++
	l, err := f.byLink(link)
	if err != nil {
		return err
	}
	l.Up = true
	return nil
}

func (f *FakeLinks) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	var out []netlink.Addr
	for name, l := range f.Links {
		if link != nil && link.Attrs().Name != name {
			continue
		}
		for _, a := range l.Addrs {
			if (family == netlink.FAMILY_V4 && !a.Addr().Is4()) || (family == netlink.FAMILY_V6 && !a.Addr().Is6()) {
				continue
			}
			out = append(out, netlink.Addr{
				IPNet:     &net.IPNet{IP: net.IP(a.Addr().AsSlice()), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())},
				LinkIndex: l.Index,
			})
		}
	}
	if link != nil {
		if _, err := f.byLink(link); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func prefixOf(a *netlink.Addr) (netip.Prefix, error) {
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.Prefix{}, unix.EINVAL
	}
	ones, _ := a.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones), nil
}

// addrOn finds the interface link and the prefix a, as AddrAdd and AddrDel need them.
func (f *FakeLinks) addrOn(link netlink.Link, a *netlink.Addr) (*FakeLink, netip.Prefix, error) {
	l, err := f.byLink(link)
	if err != nil {
		return nil, netip.Prefix{}, err
	}
	p, err := prefixOf(a)
	if err != nil {
		return nil, p, err
	}
	return l, p, nil
}

// indexOf is the position of p's address among l's, or -1.
func (l *FakeLink) indexOf(p netip.Prefix) int {
	return slices.IndexFunc(l.Addrs, func(have netip.Prefix) bool { return have.Addr() == p.Addr() })
}

func (f *FakeLinks) AddrAdd(link netlink.Link, a *netlink.Addr) error {
	f.Writes++
	l, p, err := f.addrOn(link, a)
	if err != nil {
		return err
	}
	if l.indexOf(p) >= 0 {
		return unix.EEXIST
	}
	l.Addrs = append(l.Addrs, p)
	return nil
}

func (f *FakeLinks) AddrDel(link netlink.Link, a *netlink.Addr) error {
	f.Writes++
	l, p, err := f.addrOn(link, a)
	if err != nil {
		return err
	}
	i := l.indexOf(p)
	if i < 0 {
		return unix.EADDRNOTAVAIL
	}
	l.Addrs = slices.Delete(l.Addrs, i, i+1)
	return nil
}
