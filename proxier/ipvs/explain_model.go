package ipvs

import (
	"net/netip"
	"strings"

	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/model"
)

// serviceIndex maps a destination (address, port, protocol) back to the Service port the model says
// owns it, for explain's steps: IPVS has no comment field, and IPVS mode's rules match sets, so the
// model is the only place that names the service.
type serviceIndex struct {
	byAddr     map[svcDst]*model.DebugServicePort
	byNodePort map[svcDst]*model.DebugServicePort // Addr unset
}

type svcDst struct {
	addr  netip.Addr
	port  uint16
	proto string // lower case, as explain.Packet spells it
}

func newServiceIndex(m *model.DebugModel) *serviceIndex {
	ix := &serviceIndex{byAddr: map[svcDst]*model.DebugServicePort{}, byNodePort: map[svcDst]*model.DebugServicePort{}}
	if m == nil {
		return ix
	}
	for i := range m.Services {
		sp := &m.Services[i]
		proto := strings.ToLower(string(sp.Protocol))
		if sp.ServicePort > 0 && sp.ServicePort <= 65535 {
			for _, list := range [][]netip.Addr{sp.ClusterIPs, sp.ExternalIPs, sp.LoadBalancerIPs} {
				for _, a := range list {
					ix.byAddr[svcDst{a.Unmap(), uint16(sp.ServicePort), proto}] = sp
				}
			}
		}
		if sp.NodePort > 0 && sp.NodePort <= 65535 {
			ix.byNodePort[svcDst{port: uint16(sp.NodePort), proto: proto}] = sp
		}
	}
	return ix
}

// lookup returns the Service port for a destination: one whose ClusterIP, external IP or
// load-balancer IP and port it is, else, when the address is one of the node's own (NodePorts listen
// there, not on kube-ipvs0), one whose NodePort it is; else nil.
func (ix *serviceIndex) lookup(dst netip.AddrPort, proto string, nodeAddr bool) *model.DebugServicePort {
	if sp := ix.byAddr[svcDst{dst.Addr(), dst.Port(), proto}]; sp != nil {
		return sp
	}
	if !nodeAddr {
		return nil
	}
	return ix.byNodePort[svcDst{port: dst.Port(), proto: proto}]
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
