package model

import (
	"net/netip"
	"slices"
	"strings"
)

// NewDebugModel builds the view /debug/model serves from the snapshot the backends were last
// handed (nil: none yet, so no services) and the backends' sync facts. The endpoint sets per
// traffic policy are Categorize's, so the view says exactly what the rules were rendered from.
// Everything is sorted (services by name, endpoints by address), so two views of the same
// snapshot are byte for byte the same JSON.
func NewDebugModel(snap *Snapshot, syncs []DebugSync) DebugModel {
	dm := DebugModel{Services: []DebugServicePort{}, Syncs: slices.Clone(syncs)}
	if dm.Syncs == nil {
		dm.Syncs = []DebugSync{}
	}
	for i := range dm.Syncs {
		dm.Syncs[i].IPFamily = dm.Syncs[i].Family.String()
	}
	slices.SortStableFunc(dm.Syncs, func(a, b DebugSync) int { return int(a.Family) - int(b.Family) })
	if snap == nil {
		return dm
	}
	dm.Node = DebugNode{Name: snap.Node.Name, Zone: snap.Node.Zone(), PodCIDRs: slices.Clone(snap.Node.PodCIDRs)}
	for _, name := range snap.SortedServiceNames() {
		dm.Services = append(dm.Services, debugServicePort(snap.Services[name], snap.Endpoints[name], snap.Node))
	}
	return dm
}

func debugServicePort(svc *ServicePort, eps []Endpoint, node NodeInfo) DebugServicePort {
	d := DebugServicePort{
		Namespace: svc.Name.Namespace, Name: svc.Name.Name, Port: svc.Name.Port,
		Protocol:                 svc.Protocol,
		ServicePort:              svc.Port,
		ClusterIPs:               slices.Clone(svc.ClusterIPs),
		NodePort:                 svc.NodePort,
		ExternalIPs:              slices.Clone(svc.ExternalIPs),
		LoadBalancerIPs:          slices.Clone(svc.LoadBalancerIPs),
		LoadBalancerSourceRanges: slices.Clone(svc.LoadBalancerSourceRanges),
		HealthCheckNodePort:      svc.HealthCheckNodePort,
		SessionAffinity:          svc.Affinity.ClientIP,
		ExternalTrafficPolicy:    svc.ExternalPolicy,
		InternalTrafficPolicy:    svc.InternalPolicy,
		TrafficDistribution:      svc.TrafficDistribution,
		Endpoints:                make([]DebugEndpoint, 0, len(eps)),
	}
	for i := range eps {
		ep := &eps[i]
		d.Endpoints = append(d.Endpoints, DebugEndpoint{Endpoint: ep.AddrPort(), Ready: ep.Ready, Serving: ep.Serving,
			Terminating: ep.Terminating, Local: isLocal(ep, node), NodeName: ep.NodeName, Zone: ep.Zone})
	}
	slices.SortFunc(d.Endpoints, func(a, b DebugEndpoint) int { return compareAddrPort(a.Endpoint, b.Endpoint) })
	c := Categorize(svc, eps, node)
	d.ClusterEndpoints, d.LocalEndpoints, d.HasAny = addrPorts(c.Cluster, svc.UsesClusterEndpoints()), addrPorts(c.Local, svc.UsesLocalEndpoints()), c.HasAny
	return d
}

// addrPorts is a chosen endpoint set as served: sorted; nil when no traffic uses the policy
// (used false), and empty, not nil, when traffic uses it and no endpoint is left (Categorize
// returns nil for both).
func addrPorts(eps []*Endpoint, used bool) []netip.AddrPort {
	if !used {
		return nil
	}
	out := make([]netip.AddrPort, 0, len(eps))
	for _, ep := range eps {
		out = append(out, ep.AddrPort())
	}
	slices.SortFunc(out, compareAddrPort)
	return out
}

func compareAddrPort(a, b netip.AddrPort) int { return a.Compare(b) }

// ServicePortName is the name of the service port d describes.
func (d *DebugServicePort) ServicePortName() ServicePortName {
	return ServicePortName{ServiceKey: ServiceKey{Namespace: d.Namespace, Name: d.Name}, Port: d.Port}
}

// String is d's name as kube-proxy spells it, "ns/name:port".
func (d *DebugServicePort) String() string { return d.ServicePortName().String() }

// Sync returns the sync facts of family's backend, if the model has them.
func (m *DebugModel) Sync(family IPFamily) (DebugSync, bool) {
	for _, s := range m.Syncs {
		if s.Family == family || strings.EqualFold(s.IPFamily, family.String()) {
			return s, true
		}
	}
	return DebugSync{}, false
}
