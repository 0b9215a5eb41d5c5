// Package vxlantest holds the stateful fake kernel that the overlay (podnet/vxlan) and the pod
// network controller (podnet) are tested against. It depends on netlink's types only, never on
// podnet/vxlan, so the overlay's own tests can use it.
package vxlantest

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Fake is an in-memory kernel for the overlay: links, IPv4 addresses, permanent neighbours, VXLAN FDB
// entries and main-table routes. It rejects what the kernel rejects for the calls the overlay makes
// (duplicate names or VNIs, unknown links, onlink routes on a down link, gateways that are not
// reachable, FDB entries on a non-VXLAN device, MTUs above the underlay's) and deletes a link's
// addresses, neighbours, FDB entries and routes with the link, as the kernel does.
type Fake struct {
	mu        sync.Mutex
	nextIndex int
	nextMAC   byte
	links     map[int]netlink.Link
	addrs     map[int][]netlink.Addr
	neighs    map[int]map[string]netlink.Neigh
	fdb       map[int]map[string][]net.IP
	routes    map[string]netlink.Route // key: table/dst

	// Writes counts mutating calls, successful or not.
	Writes int
	// FailOn, when set, is asked before each mutating call with the method name and the object's key
	// (link name, address, neighbour IP, FDB MAC or route destination); a non-nil error is returned
	// as the kernel's answer and nothing changes.
	FailOn func(op, key string) error
}

// NewFake returns an empty fake kernel.
func NewFake() *Fake {
	return &Fake{
		nextIndex: 1,
		links:     map[int]netlink.Link{},
		addrs:     map[int][]netlink.Addr{},
		neighs:    map[int]map[string]netlink.Neigh{},
		fdb:       map[int]map[string][]net.IP{},
		routes:    map[string]netlink.Route{},
	}
}

// AddUnderlay creates an up Ethernet device holding cidr (e.g. "192.168.50.11/24"), as a node's
// uplink, and returns its index.
func (f *Fake) AddUnderlay(name, cidr string, mtu int) int {
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil {
		panic(fmt.Sprintf("fake underlay %s: %v", cidr, err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	idx := f.nextIndex
	f.nextIndex++
	f.links[idx] = &netlink.Device{LinkAttrs: netlink.LinkAttrs{
		Index: idx, Name: name, MTU: mtu, Flags: net.FlagUp, HardwareAddr: f.newMAC(),
	}}
	f.addrs[idx] = []netlink.Addr{{IPNet: &net.IPNet{IP: ip.To4(), Mask: n.Mask}, LinkIndex: idx}}
	return idx
}

func (f *Fake) newMAC() net.HardwareAddr {
	f.nextMAC++
	return net.HardwareAddr{0x02, 0xfa, 0x4e, 0, 0, f.nextMAC}
}

func (f *Fake) write(op, key string) error {
	f.Writes++
	if f.FailOn != nil {
		return f.FailOn(op, key)
	}
	return nil
}

// writeLink counts a mutating call on link (key names the object for FailOn) and returns the fake's
// own link for it. The caller holds f.mu.
func (f *Fake) writeLink(op, key string, link netlink.Link) (netlink.Link, error) {
	if err := f.write(op, key); err != nil {
		return nil, err
	}
	return f.lookup(link)
}

func (f *Fake) byName(name string) netlink.Link {
	for _, l := range f.links {
		if l.Attrs().Name == name {
			return l
		}
	}
	return nil
}

func (f *Fake) lookup(link netlink.Link) (netlink.Link, error) {
	if link == nil {
		return nil, fmt.Errorf("no link: %w", unix.ENODEV)
	}
	if l, ok := f.links[link.Attrs().Index]; ok && link.Attrs().Index != 0 {
		return l, nil
	}
	if l := f.byName(link.Attrs().Name); l != nil {
		return l, nil
	}
	return nil, fmt.Errorf("link %q: %w", link.Attrs().Name, unix.ENODEV)
}

func copyLink(l netlink.Link) netlink.Link {
	switch v := l.(type) {
	case *netlink.Vxlan:
		c := *v
		c.HardwareAddr = append(net.HardwareAddr(nil), v.HardwareAddr...)
		return &c
	case *netlink.Device:
		c := *v
		return &c
	}
	return l
}

func (f *Fake) LinkByName(name string) (netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l := f.byName(name); l != nil {
		return copyLink(l), nil
	}
	return nil, fmt.Errorf("link %q not found: %w", name, unix.ENODEV)
}

func (f *Fake) LinkByIndex(index int) (netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.links[index]; ok {
		return copyLink(l), nil
	}
	return nil, fmt.Errorf("link index %d not found: %w", index, unix.ENODEV)
}

func (f *Fake) LinkList() ([]netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]netlink.Link, 0, len(f.links))
	for _, l := range f.links {
		out = append(out, copyLink(l))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Attrs().Index < out[j].Attrs().Index })
	return out, nil
}

func (f *Fake) LinkAdd(link netlink.Link) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := link.Attrs().Name
	if err := f.write("LinkAdd", name); err != nil {
		return err
	}
	if name == "" || len(name) > 15 {
		return fmt.Errorf("link name %q: %w", name, unix.EINVAL)
	}
	if f.byName(name) != nil {
		return fmt.Errorf("link %q: %w", name, unix.EEXIST)
	}
	vx, ok := link.(*netlink.Vxlan)
	if !ok {
		return fmt.Errorf("fake supports only vxlan links, not %s: %w", link.Type(), unix.EOPNOTSUPP)
	}
	under, ok := f.links[vx.VtepDevIndex]
	if vx.VtepDevIndex != 0 && !ok {
		return fmt.Errorf("vxlan underlay index %d: %w", vx.VtepDevIndex, unix.ENODEV)
	}
	for _, l := range f.links {
		if o, ok := l.(*netlink.Vxlan); ok && o.VxlanId == vx.VxlanId && o.Port == vx.Port {
			return fmt.Errorf("a vxlan device with vni %d and port %d exists: %w", vx.VxlanId, vx.Port, unix.EEXIST)
		}
	}
	c := *vx
	if under != nil && c.MTU > under.Attrs().MTU-50 {
		return fmt.Errorf("vxlan mtu %d above underlay %d - 50: %w", c.MTU, under.Attrs().MTU, unix.EINVAL)
	}
	if c.MTU == 0 {
		c.MTU = 1450
	}
	if len(c.HardwareAddr) == 0 {
		c.HardwareAddr = f.newMAC()
	} else {
		c.HardwareAddr = append(net.HardwareAddr(nil), c.HardwareAddr...)
	}
	c.Index = f.nextIndex
	c.Flags = 0
	f.nextIndex++
	f.links[c.Index] = &c
	return nil
}

func (f *Fake) LinkDel(link netlink.Link) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.writeLink("LinkDel", link.Attrs().Name, link)
	if err != nil {
		return err
	}
	f.removeLinkLocked(l.Attrs().Index)
	return nil
}

// DeleteLinkBehindBack removes a link as an administrator would, without counting a write.
func (f *Fake) DeleteLinkBehindBack(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l := f.byName(name); l != nil {
		f.removeLinkLocked(l.Attrs().Index)
	}
}

func (f *Fake) removeLinkLocked(idx int) {
	delete(f.links, idx)
	delete(f.addrs, idx)
	delete(f.neighs, idx)
	delete(f.fdb, idx)
	for k, r := range f.routes {
		if r.LinkIndex == idx {
			delete(f.routes, k)
		}
	}
}

func (f *Fake) LinkSetUp(link netlink.Link) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.writeLink("LinkSetUp", link.Attrs().Name, link)
	if err != nil {
		return err
	}
	l.Attrs().Flags |= net.FlagUp
	return nil
}

func (f *Fake) LinkSetMTU(link netlink.Link, mtu int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.writeLink("LinkSetMTU", link.Attrs().Name, link)
	if err != nil {
		return err
	}
	if vx, ok := l.(*netlink.Vxlan); ok {
		if under, ok := f.links[vx.VtepDevIndex]; ok && mtu > under.Attrs().MTU-50 {
			return fmt.Errorf("vxlan mtu %d above underlay %d - 50: %w", mtu, under.Attrs().MTU, unix.EINVAL)
		}
	}
	l.Attrs().MTU = mtu
	return nil
}

func (f *Fake) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if family != unix.AF_INET && family != netlink.FAMILY_ALL {
		return nil, nil
	}
	if link == nil {
		var out []netlink.Addr
		for _, as := range f.addrs {
			out = append(out, as...)
		}
		return out, nil
	}
	l, err := f.lookup(link)
	if err != nil {
		return nil, err
	}
	return append([]netlink.Addr(nil), f.addrs[l.Attrs().Index]...), nil
}

func (f *Fake) AddrAdd(link netlink.Link, addr *netlink.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.writeLink("AddrAdd", addr.IPNet.String(), link)
	if err != nil {
		return err
	}
	idx := l.Attrs().Index
	if f.addrIndex(idx, addr) >= 0 {
		return fmt.Errorf("address %s: %w", addr.IPNet, unix.EEXIST)
	}
	f.addrs[idx] = append(f.addrs[idx], netlink.Addr{IPNet: &net.IPNet{IP: addr.IP.To4(), Mask: addr.Mask}, LinkIndex: idx})
	return nil
}

func (f *Fake) AddrDel(link netlink.Link, addr *netlink.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.writeLink("AddrDel", addr.IPNet.String(), link)
	if err != nil {
		return err
	}
	idx := l.Attrs().Index
	i := f.addrIndex(idx, addr)
	if i < 0 {
		return fmt.Errorf("address %s: %w", addr.IPNet, unix.EADDRNOTAVAIL)
	}
	f.addrs[idx] = append(f.addrs[idx][:i:i], f.addrs[idx][i+1:]...)
	return nil
}

// addrIndex is the position of addr's IP among link idx's addresses, or -1.
func (f *Fake) addrIndex(idx int, addr *netlink.Addr) int {
	return slices.IndexFunc(f.addrs[idx], func(a netlink.Addr) bool { return a.IP.Equal(addr.IP) })
}

func (f *Fake) NeighList(linkIndex, family int) ([]netlink.Neigh, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netlink.Neigh
	switch family {
	case unix.AF_INET:
		for _, n := range f.neighs[linkIndex] {
			out = append(out, n)
		}
	case unix.AF_BRIDGE:
		for mac, dsts := range f.fdb[linkIndex] {
			hw, _ := net.ParseMAC(mac)
			for _, d := range dsts {
				out = append(out, netlink.Neigh{
					LinkIndex: linkIndex, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
					Flags: netlink.NTF_SELF, IP: d, HardwareAddr: hw,
				})
			}
		}
	}
	return out, nil
}

func (f *Fake) NeighSet(n *netlink.Neigh) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.write("NeighSet", neighKey(n)); err != nil {
		return err
	}
	l, ok := f.links[n.LinkIndex]
	if !ok {
		return fmt.Errorf("neighbour on index %d: %w", n.LinkIndex, unix.ENODEV)
	}
	switch n.Family {
	case unix.AF_INET:
		if n.IP.To4() == nil || len(n.HardwareAddr) != 6 {
			return fmt.Errorf("neighbour %v/%v: %w", n.IP, n.HardwareAddr, unix.EINVAL)
		}
		if f.neighs[n.LinkIndex] == nil {
			f.neighs[n.LinkIndex] = map[string]netlink.Neigh{}
		}
		c := *n
		c.IP = n.IP.To4()
		f.neighs[n.LinkIndex][c.IP.String()] = c
	case unix.AF_BRIDGE:
		if _, isVxlan := l.(*netlink.Vxlan); !isVxlan || n.Flags&netlink.NTF_SELF == 0 {
			return fmt.Errorf("fdb entry on %s: %w", l.Attrs().Name, unix.EOPNOTSUPP)
		}
		if n.IP.To4() == nil || len(n.HardwareAddr) != 6 {
			return fmt.Errorf("fdb entry %v/%v: %w", n.HardwareAddr, n.IP, unix.EINVAL)
		}
		if f.fdb[n.LinkIndex] == nil {
			f.fdb[n.LinkIndex] = map[string][]net.IP{}
		}
		mac := n.HardwareAddr.String()
		// Like vxlan_fdb_update with NLM_F_REPLACE: the first remote is replaced, others stay.
		if dsts := f.fdb[n.LinkIndex][mac]; len(dsts) > 0 {
			dsts[0] = n.IP.To4()
		} else {
			f.fdb[n.LinkIndex][mac] = []net.IP{n.IP.To4()}
		}
	default:
		return fmt.Errorf("neighbour family %d: %w", n.Family, unix.EAFNOSUPPORT)
	}
	return nil
}

func (f *Fake) NeighDel(n *netlink.Neigh) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.write("NeighDel", neighKey(n)); err != nil {
		return err
	}
	switch n.Family {
	case unix.AF_INET:
		key := n.IP.String()
		if _, ok := f.neighs[n.LinkIndex][key]; !ok {
			return fmt.Errorf("neighbour %s: %w", key, unix.ENOENT)
		}
		delete(f.neighs[n.LinkIndex], key)
	case unix.AF_BRIDGE:
		mac := n.HardwareAddr.String()
		dsts := f.fdb[n.LinkIndex][mac]
		for i, d := range dsts {
			if d.Equal(n.IP) {
				dsts = append(dsts[:i:i], dsts[i+1:]...)
				if len(dsts) == 0 {
					delete(f.fdb[n.LinkIndex], mac)
				} else {
					f.fdb[n.LinkIndex][mac] = dsts
				}
				return nil
			}
		}
		return fmt.Errorf("fdb entry %s -> %s: %w", mac, n.IP, unix.ENOENT)
	default:
		return fmt.Errorf("neighbour family %d: %w", n.Family, unix.EAFNOSUPPORT)
	}
	return nil
}

func neighKey(n *netlink.Neigh) string {
	if n.Family == unix.AF_BRIDGE {
		return n.HardwareAddr.String()
	}
	return n.IP.String()
}

func routeKey(table int, dst *net.IPNet) string {
	if table == 0 {
		table = unix.RT_TABLE_MAIN
	}
	return fmt.Sprintf("%d/%s", table, dst)
}

func (f *Fake) RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netlink.Route
	for _, r := range f.routes {
		switch {
		case mask&netlink.RT_FILTER_TABLE != 0 && filter.Table != r.Table:
		case mask&netlink.RT_FILTER_PROTOCOL != 0 && filter.Protocol != r.Protocol:
		case mask&netlink.RT_FILTER_OIF != 0 && filter.LinkIndex != r.LinkIndex:
		default:
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *Fake) RouteReplace(r *netlink.Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Dst == nil {
		return fmt.Errorf("route without destination: %w", unix.EINVAL)
	}
	if err := f.write("RouteReplace", r.Dst.String()); err != nil {
		return err
	}
	l, ok := f.links[r.LinkIndex]
	if !ok {
		return fmt.Errorf("route %s dev index %d: %w", r.Dst, r.LinkIndex, unix.ENODEV)
	}
	if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
		if l.Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("onlink route %s on down link %s: %w", r.Dst, l.Attrs().Name, unix.ENETDOWN)
		}
	} else if r.Gw != nil {
		reachable := false
		for _, a := range f.addrs[r.LinkIndex] {
			if a.Contains(r.Gw) && l.Attrs().Flags&net.FlagUp != 0 {
				reachable = true
			}
		}
		if !reachable {
			return fmt.Errorf("gateway %s not reachable on %s: %w", r.Gw, l.Attrs().Name, unix.ENETUNREACH)
		}
	}
	c := *r
	if c.Table == 0 {
		c.Table = unix.RT_TABLE_MAIN
	}
	c.Family = unix.AF_INET
	f.routes[routeKey(c.Table, c.Dst)] = c
	return nil
}

func (f *Fake) RouteDel(r *netlink.Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Dst == nil {
		return fmt.Errorf("route without destination: %w", unix.EINVAL)
	}
	if err := f.write("RouteDel", r.Dst.String()); err != nil {
		return err
	}
	key := routeKey(r.Table, r.Dst)
	if _, ok := f.routes[key]; !ok {
		return fmt.Errorf("route %s: %w", r.Dst, unix.ESRCH)
	}
	delete(f.routes, key)
	return nil
}

// State renders the fake kernel's overlay-relevant contents as sorted lines, for end-state assertions.
func (f *Fake) State() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := func(idx int) string {
		if l, ok := f.links[idx]; ok {
			return l.Attrs().Name
		}
		return fmt.Sprintf("if%d", idx)
	}
	var out []string
	for idx, l := range f.links {
		if vx, ok := l.(*netlink.Vxlan); ok {
			out = append(out, fmt.Sprintf("link %s vni=%d port=%d underlay=%s mtu=%d mac=%s up=%t",
				vx.Name, vx.VxlanId, vx.Port, name(vx.VtepDevIndex), vx.MTU, vx.HardwareAddr, vx.Flags&net.FlagUp != 0))
			for _, a := range f.addrs[idx] {
				out = append(out, fmt.Sprintf("addr %s dev %s", a.IPNet, vx.Name))
			}
		}
	}
	for idx, ns := range f.neighs {
		for _, n := range ns {
			out = append(out, fmt.Sprintf("neigh %s lladdr %s dev %s", n.IP, n.HardwareAddr, name(idx)))
		}
	}
	for idx, macs := range f.fdb {
		for mac, dsts := range macs {
			for _, d := range dsts {
				out = append(out, fmt.Sprintf("fdb %s dst %s dev %s", mac, d, name(idx)))
			}
		}
	}
	for _, r := range f.routes {
		onlink := ""
		if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
			onlink = " onlink"
		}
		out = append(out, fmt.Sprintf("route %s via %s dev %s%s", r.Dst, r.Gw, name(r.LinkIndex), onlink))
	}
	sort.Strings(out)
	return out
}
