package ipvs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/switchyard/switchyard/proxier/model"
)

const (
	flagPersistent = 0x1 // IP_VS_SVC_F_PERSISTENT
	flagHashed     = 0x2 // IP_VS_SVC_F_HASHED: set by the kernel on every listed service
)

// appliedVS is what the backend knows the kernel holds for one virtual server.
type appliedVS struct {
	sched      string
	persistent bool
	timeout    uint32
	dests      map[netip.AddrPort]int // weight
}

func ipvsProto(p model.Protocol) uint16 {
	switch p {
	case model.UDP:
		return unix.IPPROTO_UDP
	case model.SCTP:
		return unix.IPPROTO_SCTP
	}
	return unix.IPPROTO_TCP
}

func fromIPVSProto(p uint16) (model.Protocol, bool) {
	switch p {
	case unix.IPPROTO_TCP:
		return model.TCP, true
	case unix.IPPROTO_UDP:
		return model.UDP, true
	case unix.IPPROTO_SCTP:
		return model.SCTP, true
	}
	return "", false
}

func family(a netip.Addr) uint16 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// mobyService builds the kernel's view of a virtual server. Only the key matters for deletes and real
// server operations; the options matter for creates and updates.
func mobyService(k vsKey, sched string, persistent bool, timeout uint32) *mobyipvs.Service {
	s := &mobyipvs.Service{
		Address:       net.IP(k.Addr.AsSlice()),
		Protocol:      ipvsProto(k.Protocol),
		Port:          k.Port,
		AddressFamily: family(k.Addr),
		SchedName:     sched,
	}
	if persistent {
		s.Flags = flagPersistent
		s.Timeout = timeout
		// The persistence netmask groups clients; a full mask makes affinity per client address, as
		// Kubernetes' ClientIP affinity means.
		s.Netmask = 0xffffffff
		if k.Addr.Is6() {
			s.Netmask = 128
		}
	}
	return s
}

func (a *appliedVS) service(k vsKey) *mobyipvs.Service {
	return mobyService(k, a.sched, a.persistent, a.timeout)
}

func mobyDest(d netip.AddrPort, weight int) *mobyipvs.Destination {
	return &mobyipvs.Destination{
		Address:         net.IP(d.Addr().AsSlice()),
		Port:            d.Port(),
		Weight:          weight,
		ConnectionFlags: mobyipvs.ConnectionFlagMasq,
		AddressFamily:   family(d.Addr()),
	}
}

// keyOf converts a listed kernel service, reporting false for fwmark services and protocols the
// backend never programs.
func keyOf(s *mobyipvs.Service) (vsKey, bool) {
	if s.FWMark != 0 {
		return vsKey{}, false
	}
	proto, ok := fromIPVSProto(s.Protocol)
	if !ok {
		return vsKey{}, false
	}
	a, ok := netip.AddrFromSlice(s.Address)
	if !ok {
		return vsKey{}, false
	}
	if s.AddressFamily == unix.AF_INET {
		a = a.Unmap()
	}
	return vsKey{Addr: a, Protocol: proto, Port: s.Port}, true
}

func appliedFromKernel(s *mobyipvs.Service) *appliedVS {
	a := &appliedVS{sched: s.SchedName, persistent: s.Flags&flagPersistent != 0, dests: map[netip.AddrPort]int{}}
	if a.persistent {
		a.timeout = s.Timeout
	}
	return a
}

// syncVirtualServer makes the kernel's virtual server k match want (nil: delete it), starting from
// what the backend knows is there. The applied cache is updated after every successful call, so a
// failure part way leaves it truthful.
func (p *Proxier) syncVirtualServer(k vsKey, want *VirtualServer) error {
	have := p.applied[k]
	if want == nil {
		if have == nil {
			return nil
		}
		if err := p.ipvs.DelService(have.service(k)); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("delete virtual server %s: %w", k, err)
		}
		delete(p.applied, k)
		delete(p.terminating, k)
		klog.V(3).InfoS("Deleted IPVS virtual server", "virtualServer", k)
		return nil
	}
	if have == nil {
		have = &appliedVS{sched: want.Scheduler, persistent: want.Persistent, timeout: want.Timeout, dests: map[netip.AddrPort]int{}}
		if err := p.ipvs.NewService(have.service(k)); err != nil {
			return fmt.Errorf("add virtual server %s for %s: %w", k, want.Service, err)
		}
		p.applied[k] = have
		klog.V(3).InfoS("Added IPVS virtual server", "virtualServer", k, "service", want.Service)
	} else if have.sched != want.Scheduler || have.persistent != want.Persistent || (want.Persistent && have.timeout != want.Timeout) {
		svc := mobyService(k, want.Scheduler, want.Persistent, want.Timeout)
		if err := p.ipvs.UpdateService(svc); err != nil {
			return fmt.Errorf("update virtual server %s for %s: %w", k, want.Service, err)
		}
		have.sched, have.persistent, have.timeout = want.Scheduler, want.Persistent, want.Timeout
	}
	svc := have.service(k)
	wanted := make(map[netip.AddrPort]struct{}, len(want.Dests))
	for _, d := range want.Dests {
		wanted[d] = struct{}{}
		w, ok := have.dests[d]
		switch {
		case !ok:
			if err := p.ipvs.NewDestination(svc, mobyDest(d, 1)); err != nil {
				return fmt.Errorf("add real server %s to %s: %w", d, k, err)
			}
		case w != 1:
			// Back from termination, or someone changed the weight.
			if err := p.ipvs.UpdateDestination(svc, mobyDest(d, 1)); err != nil {
				return fmt.Errorf("restore weight of real server %s in %s: %w", d, k, err)
			}
		}
		have.dests[d] = 1
		p.stopTerminating(k, d)
	}
	for d, w := range have.dests {
		if _, ok := wanted[d]; ok {
			continue
		}
		if err := p.retireDest(k, svc, d, w); err != nil {
			return err
		}
	}
	return nil
}
