package ipvs

import (
	"net/netip"

	"github.com/switchyard/switchyard/proxier/ipvs/ipset"
	"github.com/switchyard/switchyard/proxier/model"
)

// desiredState aggregates the per-service renders into what the kernel should hold, and remembers which
// keys changed since the last apply so an incremental sync touches only those. Shared things (an address
// used by several ports, an ipset entry two services produce) are reference counted.
type desiredState struct {
	services map[model.ServicePortName]*renderedService
	byKey    map[model.ServiceKey]map[model.ServicePortName]struct{} // the ports in services, by service
	// claims lists the services that want each virtual server. Two services asking for the same
	// address, protocol and port is bad input; the one with the smallest name wins, deterministically,
	// and the others are logged.
	claims map[vsKey][]*VirtualServer
	addrs  map[netip.Addr]int
	sets   [numSetKinds]map[ipset.Entry]int
	// noLocalInternal and noLocalExternal count services with a Local policy and no local endpoint.
	noLocalInternal, noLocalExternal int

	dirtyVS    map[vsKey]struct{}
	dirtyAddrs map[netip.Addr]struct{}
	dirtySets  [numSetKinds]map[ipset.Entry]struct{}
}

// renderedService is one service's render plus the inputs it came from, so an unchanged service can
// be recognised by identity (the model never edits published values in place).
type renderedService struct {
	svc    *model.ServicePort
	eps    []model.Endpoint
	render serviceRender
}

func newDesiredState() *desiredState {
	d := &desiredState{
		services:   map[model.ServicePortName]*renderedService{},
		byKey:      map[model.ServiceKey]map[model.ServicePortName]struct{}{},
		claims:     map[vsKey][]*VirtualServer{},
		addrs:      map[netip.Addr]int{},
		dirtyVS:    map[vsKey]struct{}{},
		dirtyAddrs: map[netip.Addr]struct{}{},
	}
	for k := range d.sets {
		d.sets[k] = map[ipset.Entry]int{}
		d.dirtySets[k] = map[ipset.Entry]struct{}{}
	}
	return d
}

// sameInputs reports whether svc and eps are the very values rs was rendered from.
func (rs *renderedService) sameInputs(svc *model.ServicePort, eps []model.Endpoint) bool {
	if rs.svc != svc || len(rs.eps) != len(eps) {
		return false
	}
	return len(eps) == 0 || &rs.eps[0] == &eps[0]
}

// set replaces the render of name (nil rs removes it), updating counts and dirty marks.
func (d *desiredState) set(name model.ServicePortName, rs *renderedService) {
	if old, ok := d.services[name]; ok {
		d.remove(name, old)
	}
	if rs == nil {
		return
	}
	d.services[name] = rs
	if d.byKey[name.ServiceKey] == nil {
		d.byKey[name.ServiceKey] = map[model.ServicePortName]struct{}{}
	}
	d.byKey[name.ServiceKey][name] = struct{}{}
	d.noLocalInternal += b2i(rs.render.NoLocalInternal)
	d.noLocalExternal += b2i(rs.render.NoLocalExternal)
	for i := range rs.render.VirtualServers {
		vs := &rs.render.VirtualServers[i]
		d.claims[vs.vsKey] = append(d.claims[vs.vsKey], vs)
		d.dirtyVS[vs.vsKey] = struct{}{}
	}
	for _, a := range rs.render.Bind {
		if d.addrs[a]++; d.addrs[a] == 1 {
			d.dirtyAddrs[a] = struct{}{}
		}
	}
	for _, e := range rs.render.Entries {
		if d.sets[e.Kind][e.Entry]++; d.sets[e.Kind][e.Entry] == 1 {
			d.dirtySets[e.Kind][e.Entry] = struct{}{}
		}
	}
}

func (d *desiredState) remove(name model.ServicePortName, rs *renderedService) {
	delete(d.services, name)
	if ports := d.byKey[name.ServiceKey]; ports != nil {
		delete(ports, name)
		if len(ports) == 0 {
			delete(d.byKey, name.ServiceKey)
		}
	}
	d.noLocalInternal -= b2i(rs.render.NoLocalInternal)
	d.noLocalExternal -= b2i(rs.render.NoLocalExternal)
	for i := range rs.render.VirtualServers {
		vs := &rs.render.VirtualServers[i]
		list := d.claims[vs.vsKey]
		for j, c := range list {
			if c == vs {
				list = append(list[:j:j], list[j+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(d.claims, vs.vsKey)
		} else {
			d.claims[vs.vsKey] = list
		}
		d.dirtyVS[vs.vsKey] = struct{}{}
	}
	for _, a := range rs.render.Bind {
		if d.addrs[a]--; d.addrs[a] <= 0 {
			delete(d.addrs, a)
			d.dirtyAddrs[a] = struct{}{}
		}
	}
	for _, e := range rs.render.Entries {
		if d.sets[e.Kind][e.Entry]--; d.sets[e.Kind][e.Entry] <= 0 {
			delete(d.sets[e.Kind], e.Entry)
			d.dirtySets[e.Kind][e.Entry] = struct{}{}
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// virtualServer returns the winning claim on k, or nil.
func (d *desiredState) virtualServer(k vsKey) *VirtualServer {
	var best *VirtualServer
	for _, c := range d.claims[k] {
		if best == nil || lessServicePortName(c.Service, best.Service) {
			best = c
		}
	}
	return best
}

func lessServicePortName(a, b model.ServicePortName) bool {
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	return a.Port < b.Port
}

// clearDirty forgets the change marks once they have been applied.
func (d *desiredState) clearDirty() {
	clear(d.dirtyVS)
	clear(d.dirtyAddrs)
	for k := range d.dirtySets {
		clear(d.dirtySets[k])
	}
}
