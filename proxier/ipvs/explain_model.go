package ipvs

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/model"
)

// serviceFor returns the Service port the model says owns a destination (address, port and protocol
// in lower case), for explain's steps: IPVS has no comment field, and IPVS mode's rules match sets,
// so the model is the only place that names the service. A ClusterIP, external IP or load-balancer
// IP with its port wins; else, when the address is one of the node's own (NodePorts listen there,
// not on kube-ipvs0), the port whose NodePort it is. nil when none (or no model). One pass over the
// model: an explanation looks up one destination.
func serviceFor(m *model.DebugModel, dst netip.AddrPort, proto string, nodeAddr bool) *model.DebugServicePort {
	if m == nil {
		return nil
	}
	var byNodePort *model.DebugServicePort
	for i := range m.Services {
		sp := &m.Services[i]
		if !strings.EqualFold(string(sp.Protocol), proto) {
			continue
		}
		if sp.ServicePort == int32(dst.Port()) {
			for _, list := range [][]netip.Addr{sp.ClusterIPs, sp.ExternalIPs, sp.LoadBalancerIPs} {
				if slices.Contains(list, dst.Addr()) {
					return sp
				}
			}
		}
		if nodeAddr && byNodePort == nil && sp.NodePort == int32(dst.Port()) {
			byNodePort = sp
		}
	}
	return byNodePort
}

func serviceRef(sp *model.DebugServicePort) *explain.ServiceRef {
	if sp == nil {
		return nil
	}
	return &explain.ServiceRef{Namespace: sp.Namespace, Name: sp.Name, Port: sp.Port}
}

// endpointNode is the node the model places an endpoint of the service port on ("" when unknown).
func endpointNode(sp *model.DebugServicePort, ep netip.AddrPort) string {
	if sp == nil {
		return ""
	}
	for _, e := range sp.Endpoints {
		if e.Endpoint == ep {
			return e.NodeName
		}
	}
	return ""
}
