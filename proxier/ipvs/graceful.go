package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/switchyard/switchyard/proxier/model"
)

// Graceful termination. A real server that is no longer wanted is not cut off at once when its
// protocol has connections worth keeping (TCP, SCTP): it first gets weight 0, so the scheduler sends it
// no new connections while established ones continue, and is deleted once the kernel counts no
// connections to it (active plus inactive) or after Options.GracePeriod. UDP has no connection end to
// wait for: its real servers are deleted at once, and the conntrack reconciler that runs after the
// sync deletes their entries (even while the endpoint still serves, as a terminating one does), so
// clients' next datagrams are scheduled to a live real server.

// retireDest starts retiring real server d (current weight w) of virtual server k.
func (p *Proxier) retireDest(k vsKey, svc *mobyipvs.Service, d netip.AddrPort, w int) error {
	have := p.applied[k]
	if k.Protocol == model.UDP {
		if err := p.ipvs.DelDestination(svc, mobyDest(d, w)); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete UDP real server %s from %s: %w", d, k, err)
		}
		delete(have.dests, d)
		p.stopTerminating(k, d)
		p.conntrack.DropDestination(netip.AddrPortFrom(k.Addr, k.Port), d)
		klog.V(3).InfoS("Deleted UDP real server", "virtualServer", k, "realServer", d)
		return nil
	}
	if w != 0 {
		if err := p.ipvs.UpdateDestination(svc, mobyDest(d, 0)); err != nil {
			return fmt.Errorf("set weight 0 on real server %s in %s: %w", d, k, err)
		}
		have.dests[d] = 0
	}
	if p.terminating[k] == nil {
		p.terminating[k] = map[netip.AddrPort]terminatingDest{}
	}
	if _, ok := p.terminating[k][d]; !ok {
		p.terminating[k][d] = terminatingDest{since: p.now()}
		klog.V(3).InfoS("Real server terminating gracefully", "virtualServer", k, "realServer", d)
	}
	return nil
}

// terminatingDest is a real server at weight 0 waiting for its connections to end.
type terminatingDest struct {
	since time.Time
}

// processTerminating deletes the terminating real servers that have drained or outlived the grace
// period. It costs one listing per virtual server that has terminating real servers, and nothing when
// none has.
func (p *Proxier) processTerminating() error {
	var errs []error
	now := p.now()
	for k, dests := range p.terminating {
		have := p.applied[k]
		if have == nil {
			delete(p.terminating, k)
			continue
		}
		svc := have.service(k)
		listed, err := p.ipvs.GetDestinations(svc)
		if err != nil {
			errs = append(errs, fmt.Errorf("list real servers of %s: %w", k, err))
			continue
		}
		conns := make(map[netip.AddrPort]int, len(listed))
		for _, ld := range listed {
			if a, ok := netip.AddrFromSlice(ld.Address); ok {
				conns[netip.AddrPortFrom(a.Unmap(), ld.Port)] = ld.ActiveConnections + ld.InactiveConnections
			}
		}
		for d, t := range dests {
			n, present := conns[d]
			if present && n > 0 && now.Sub(t.since) < p.opts.GracePeriod {
				continue
			}
			if present {
				if err := p.ipvs.DelDestination(svc, mobyDest(d, 0)); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("delete drained real server %s from %s: %w", d, k, err))
					continue
				}
				klog.V(3).InfoS("Deleted terminated real server", "virtualServer", k, "realServer", d, "connections", n, "waited", now.Sub(t.since))
			}
			delete(have.dests, d)
			p.stopTerminating(k, d)
		}
	}
	return errors.Join(errs...)
}

// TerminatingRealServers is the number of real servers waiting to drain.
func (p *Proxier) TerminatingRealServers() int {
	n := 0
	for _, m := range p.terminating {
		n += len(m)
	}
	return n
}

func (p *Proxier) stopTerminating(k vsKey, d netip.AddrPort) {
	if m := p.terminating[k]; m != nil {
		delete(m, d)
		if len(m) == 0 {
			delete(p.terminating, k)
		}
	}
}
