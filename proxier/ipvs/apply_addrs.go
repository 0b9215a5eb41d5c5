package ipvs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/switchyard/switchyard/proxier/ipvs/ipset"
	"github.com/switchyard/switchyard/proxier/model"
)

func (p *Proxier) nlFamily() int {
	if p.opts.Family == model.IPv6 {
		return netlink.FAMILY_V6
	}
	return netlink.FAMILY_V4
}

// ensureDummy finds or creates kube-ipvs0 and brings it up.
func (p *Proxier) ensureDummy() (netlink.Link, error) {
	link, err := p.links.LinkByName(DummyDevice)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("look up %s: %w", DummyDevice, err)
		}
		if err := p.links.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: DummyDevice}}); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				return nil, fmt.Errorf("create dummy interface %s: %w (the kernel lacks CONFIG_DUMMY / the dummy module; IPVS mode needs it, or use --proxy-mode=iptables)", DummyDevice, err)
			}
			return nil, fmt.Errorf("create dummy interface %s: %w", DummyDevice, err)
		}
		klog.InfoS("Created dummy interface for service addresses", "interface", DummyDevice)
		if link, err = p.links.LinkByName(DummyDevice); err != nil {
			return nil, fmt.Errorf("look up %s after creating it: %w", DummyDevice, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := p.links.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("bring up %s: %w", DummyDevice, err)
		}
	}
	return link, nil
}

// listBound returns the family's addresses on kube-ipvs0.
func (p *Proxier) listBound(link netlink.Link) (map[netip.Addr]struct{}, error) {
	addrs, err := p.links.AddrList(link, p.nlFamily())
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", DummyDevice, err)
	}
	out := make(map[netip.Addr]struct{}, len(addrs))
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out[ip.Unmap()] = struct{}{}
		}
	}
	return out, nil
}

// nodeAddresses returns the family's addresses on every interface but kube-ipvs0: the node's own
// addresses, from which NodePort addresses are chosen.
func (p *Proxier) nodeAddresses(dummyIndex int) ([]netip.Addr, error) {
	addrs, err := p.links.AddrList(nil, p.nlFamily())
	if err != nil {
		return nil, fmt.Errorf("list node addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		if a.LinkIndex == dummyIndex {
			continue
		}
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

func hostPrefix(a netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}}
}

// syncAddr makes kube-ipvs0 hold a exactly when the desired state wants it.
func (p *Proxier) syncAddr(a netip.Addr, adding bool) error {
	_, want := p.desired.addrs[a]
	_, have := p.appliedAddrs[a]
	switch {
	case want && !have && adding:
		if err := p.links.AddrAdd(p.dummy, hostPrefix(a)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("bind %s to %s: %w", a, DummyDevice, err)
		}
		p.appliedAddrs[a] = struct{}{}
	case !want && have && !adding:
		if err := p.links.AddrDel(p.dummy, hostPrefix(a)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("unbind %s from %s: %w", a, DummyDevice, err)
		}
		delete(p.appliedAddrs, a)
	}
	return nil
}

// listSets creates any missing set and returns every set's members: one listing per set, plus a create
// for each set that did not exist.
func (p *Proxier) listSets() ([numSetKinds]map[ipset.Entry]struct{}, error) {
	var out [numSetKinds]map[ipset.Entry]struct{}
	for k := setKind(0); k < numSetKinds; k++ {
		s := setFor(p.opts.Family, k)
		entries, found, err := ipset.List(p.ipset, s)
		if err != nil {
			return out, err
		}
		if !found {
			if err := ipset.Create(p.ipset, s); err != nil {
				return out, err
			}
			entries = map[ipset.Entry]struct{}{}
		}
		out[k] = entries
	}
	return out, nil
}

// syncSetEntry makes set k hold e exactly when the desired state wants it.
func (p *Proxier) syncSetEntry(k setKind, e ipset.Entry, adding bool) error {
	_, want := p.desired.sets[k][e]
	_, have := p.appliedSets[k][e]
	switch {
	case want && !have && adding:
		if err := ipset.Add(p.ipset, setFor(p.opts.Family, k), e); err != nil && !ipset.IsExist(err) {
			return err
		}
		p.appliedSets[k][e] = struct{}{}
	case !want && have && !adding:
		if err := ipset.Del(p.ipset, setFor(p.opts.Family, k), e); err != nil && !ipset.IsExist(err) {
			return err
		}
		delete(p.appliedSets[k], e)
	}
	return nil
}
