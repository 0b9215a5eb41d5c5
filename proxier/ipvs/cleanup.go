package ipvs

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/switchyard/switchyard/proxier/ipvs/ipset"
)

// Cleanup removes everything IPVS mode put in the kernel for this family: its virtual servers, its
// iptables chains and jumps, its ipsets and the addresses on kube-ipvs0. Virtual servers that are not
// Switchyard's (see owns) and any inside --ipvs-exclude-cidrs stay. It is for --cleanup and for
// switching to iptables mode; a normal exit never calls it. It carries on past errors and reports
// them all.
func (p *Proxier) Cleanup() error {
	var errs []error
	link, err := p.links.LinkByName(DummyDevice)
	var nf netlink.LinkNotFoundError
	if err != nil && !errors.As(err, &nf) {
		errs = append(errs, fmt.Errorf("look up %s: %w", DummyDevice, err))
	}
	bound := map[netip.Addr]struct{}{}
	if link != nil {
		if bound, err = p.listBound(link); err != nil {
			errs = append(errs, err)
		}
	}
	var sets [numSetKinds]map[ipset.Entry]struct{}
	for k := setKind(0); k < numSetKinds; k++ {
		sets[k], _, err = ipset.List(p.ipset, setFor(p.opts.Family, k))
		if err != nil {
			errs = append(errs, err)
		}
	}

	// Virtual servers first: their ownership is read from the addresses and sets removed below.
	if p.ipvs == nil {
		// A kernel without IPVS holds no virtual servers.
	} else if listed, err := p.ipvs.GetServices(); err != nil {
		errs = append(errs, fmt.Errorf("list IPVS virtual servers: %w", err))
	} else {
		for _, s := range listed {
			k, ok := keyOf(s)
			if !ok || !p.owns(k, bound, &sets) {
				continue
			}
			if err := p.ipvs.DelService(s); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("delete virtual server %s: %w", k, err))
			}
		}
	}
	p.applied = map[vsKey]*appliedVS{}
	p.terminating = map[vsKey]map[netip.AddrPort]terminatingDest{}

	// Then the rules, which reference the sets, so that the sets can be destroyed.
	for _, j := range jumpRules() {
		if err := p.iptables.DeleteRule(j.table, j.chain, j.args...); err != nil {
			errs = append(errs, err)
		}
	}
	if err := p.iptables.Restore(renderCleanupRules()); err != nil {
		errs = append(errs, fmt.Errorf("delete IPVS-mode iptables chains: %w", err))
	}
	for k := setKind(0); k < numSetKinds; k++ {
		if sets[k] == nil {
			continue // never created
		}
		if err := p.ipset.IpsetDestroy(setName(p.opts.Family, k)); err != nil && !ipset.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("destroy ipset %s: %w", setName(p.opts.Family, k), err))
		}
	}

	if link != nil {
		for a := range bound {
			if err := p.links.AddrDel(link, hostPrefix(a)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				errs = append(errs, fmt.Errorf("unbind %s from %s: %w", a, DummyDevice, err))
			}
		}
	}
	p.appliedAddrs = map[netip.Addr]struct{}{}
	p.desired = newDesiredState()
	p.needFull = true
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ipvs %s cleanup: %w", p.opts.Family, err)
	}
	klog.InfoS("Removed IPVS-mode state", "family", p.opts.Family, "addresses", len(bound))
	return nil
}
