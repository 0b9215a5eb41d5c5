package ipvs

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/switchyard/switchyard/proxier/ipvs/ipset"
	"github.com/switchyard/switchyard/proxier/model"
)

// vsKey identifies a virtual server the way the kernel does (for non-fwmark services).
type vsKey struct {
	Addr     netip.Addr
	Protocol model.Protocol
	Port     uint16
}

func (k vsKey) String() string {
	return fmt.Sprintf("%s %s", k.Protocol, netip.AddrPortFrom(k.Addr, k.Port))
}

// VirtualServer is one desired IPVS virtual server and its real servers, all at weight 1.
type VirtualServer struct {
	vsKey
	Scheduler  string
	Persistent bool   // sessionAffinity ClientIP
	Timeout    uint32 // persistence timeout in seconds, when Persistent
	Dests      []netip.AddrPort
	Service    model.ServicePortName
	Kind       string // ClusterIP, ExternalIP, LoadBalancer or NodePort: for logs and golden files
}

// setEntry is one member of one of the backend's ipsets.
type setEntry struct {
	Kind  setKind
	Entry ipset.Entry
}

// serviceRender is everything one service port asks of the kernel.
type serviceRender struct {
	VirtualServers []VirtualServer
	Bind           []netip.Addr // addresses for kube-ipvs0
	Entries        []setEntry
	// NoLocalInternal / NoLocalExternal: the policy is Local, the service has endpoints elsewhere, and
	// none here (kube-proxy's sync_proxy_rules_no_local_endpoints_total).
	NoLocalInternal, NoLocalExternal bool
}

// nodeAddrs is the node-address fact a render needs: all of the family's local addresses (not those
// on kube-ipvs0), and the ones --nodeport-addresses selects.
type nodeAddrs struct {
	All      []netip.Addr
	NodePort []netip.Addr
}

// selectNodeAddrs applies --nodeport-addresses to the node's addresses of the family. Without the flag
// every address qualifies except loopback and link-local ones, which IPVS cannot serve NodePorts on.
func selectNodeAddrs(opts *Options, all []netip.Addr) nodeAddrs {
	var out nodeAddrs
	cidrs := model.PrefixesFor(opts.Family, opts.NodePortAddresses)
	for _, a := range all {
		a = a.Unmap()
		if !opts.Family.Of(a) {
			continue
		}
		out.All = append(out.All, a)
		if len(opts.NodePortAddresses) == 0 {
			if !a.IsLoopback() && !a.IsLinkLocalUnicast() {
				out.NodePort = append(out.NodePort, a)
			}
			continue
		}
		for _, p := range cidrs {
			if p.Contains(a) {
				out.NodePort = append(out.NodePort, a)
				break
			}
		}
	}
	slices.SortFunc(out.All, netip.Addr.Compare)
	out.All = slices.Compact(out.All)
	slices.SortFunc(out.NodePort, netip.Addr.Compare)
	out.NodePort = slices.Compact(out.NodePort)
	return out
}

// defaultAffinityTimeout is Kubernetes' default sessionAffinityConfig.clientIP.timeoutSeconds.
const defaultAffinityTimeout = 10800

// renderService computes what one service port needs, purely from the model. Endpoints are chosen by
// model.Categorize: the ClusterIP follows internalTrafficPolicy, and every externally reachable
// address (external IPs, load-balancer IPs, NodePorts) follows externalTrafficPolicy, as in kube-proxy.
func renderService(svc *model.ServicePort, eps []model.Endpoint, node model.NodeInfo, addrs nodeAddrs, opts *Options) (serviceRender, error) {
	var r serviceRender
	if svc.Port <= 0 || svc.Port > 65535 {
		return r, fmt.Errorf("port %d out of range", svc.Port)
	}
	if svc.NodePort < 0 || svc.NodePort > 65535 {
		return r, fmt.Errorf("nodePort %d out of range", svc.NodePort)
	}
	switch svc.Protocol {
	case model.TCP, model.UDP, model.SCTP:
	default:
		return r, fmt.Errorf("protocol %q not supported by IPVS", svc.Protocol)
	}
	fam := opts.Family
	// As in kube-proxy, a family's proxier handles exactly the services with a ClusterIP of that
	// family; a single-stack IPv4 service gets no IPv6 NodePorts.
	cip := svc.ClusterIPFor(fam)
	if !cip.IsValid() {
		return r, nil
	}
	cat := model.Categorize(svc, eps, node)
	r.NoLocalInternal = svc.InternalPolicyLocal() && cat.HasAny && len(cat.Local) == 0
	r.NoLocalExternal = svc.ExternalPolicyLocal() && cat.HasAny && len(cat.Local) == 0
	internal, external := cat.Cluster, cat.Cluster
	if svc.InternalPolicyLocal() {
		internal = cat.Local
	}
	if svc.ExternalPolicyLocal() {
		external = cat.Local
	}
	port := uint16(svc.Port)
	proto := ipsetProto(svc.Protocol)
	newVS := func(addr netip.Addr, p uint16, kind string, chosen []*model.Endpoint) VirtualServer {
		vs := VirtualServer{
			vsKey:     vsKey{Addr: addr, Protocol: svc.Protocol, Port: p},
			Scheduler: opts.Scheduler,
			Service:   svc.Name,
			Kind:      kind,
		}
		if svc.Affinity.ClientIP {
			vs.Persistent = true
			vs.Timeout = defaultAffinityTimeout
			if svc.Affinity.TimeoutSeconds > 0 {
				vs.Timeout = uint32(svc.Affinity.TimeoutSeconds)
			}
		}
		for _, ep := range chosen {
			if fam.Of(ep.IP) && ep.Port > 0 && ep.Port <= 65535 {
				vs.Dests = append(vs.Dests, ep.AddrPort())
			}
		}
		slices.SortFunc(vs.Dests, netip.AddrPort.Compare)
		vs.Dests = slices.Compact(vs.Dests)
		return vs
	}
	ipPort := func(kind setKind, addr netip.Addr, p uint16) {
		r.Entries = append(r.Entries, setEntry{kind, ipset.Entry{IP: addr, Protocol: proto, Port: p}})
	}
	isNodeAddr := func(a netip.Addr) bool { _, ok := slices.BinarySearchFunc(addrs.All, a, netip.Addr.Compare); return ok }

	r.VirtualServers = append(r.VirtualServers, newVS(cip, port, "ClusterIP", internal))
	r.Bind = append(r.Bind, cip)
	ipPort(setClusterIP, cip, port)
	for _, eip := range model.AddrsFor(fam, svc.ExternalIPs) {
		r.VirtualServers = append(r.VirtualServers, newVS(eip, port, "ExternalIP", external))
		// An external IP that is already one of the node's own addresses stays where it is: binding a
		// second copy to kube-ipvs0 and later removing it would be needless churn on a live address.
		if !isNodeAddr(eip) {
			r.Bind = append(r.Bind, eip)
		}
		if svc.ExternalPolicyLocal() {
			ipPort(setExternalIPLocal, eip, port)
		} else {
			ipPort(setExternalIP, eip, port)
		}
	}
	// As in kube-proxy, only this family's ranges filter this family's traffic, and a zero-length one
	// (0.0.0.0/0, ::/0) means no filter at all: no LOAD-BALANCER-FW entry, so no DROP for anyone. The
	// filter does not depend on endpoints: a disallowed source is dropped before IPVS sees it.
	ranges := svc.SourceRangesFor(fam)
	for _, lip := range model.AddrsFor(fam, svc.LoadBalancerIPs) {
		r.VirtualServers = append(r.VirtualServers, newVS(lip, port, "LoadBalancer", external))
		if !isNodeAddr(lip) {
			r.Bind = append(r.Bind, lip)
		}
		ipPort(setLoadBalancer, lip, port)
		if svc.ExternalPolicyLocal() {
			ipPort(setLoadBalancerLocal, lip, port)
		}
		if len(ranges) > 0 {
			ipPort(setLoadBalancerFW, lip, port)
			for _, cidr := range ranges {
				r.Entries = append(r.Entries, setEntry{setLoadBalancerSourceCIDR, ipset.Entry{IP: lip, Protocol: proto, Port: port, Net: cidr.Masked()}})
			}
		}
	}
	if svc.NodePort > 0 {
		np := uint16(svc.NodePort)
		for _, a := range addrs.NodePort {
			r.VirtualServers = append(r.VirtualServers, newVS(a, np, "NodePort", external))
			if svc.ExternalPolicyLocal() {
				ipPort(setNodePortLocal, a, np)
			} else {
				ipPort(setNodePort, a, np)
			}
		}
	}
	// Hairpin: a local endpoint reaching itself through the service needs SNAT, or its reply would
	// bypass IPVS. Only local endpoints can hairpin on this node.
	for _, ep := range cat.AllReachable {
		if ep.NodeName == node.Name && fam.Of(ep.IP) {
			r.Entries = append(r.Entries, setEntry{setLoopBack, ipset.Entry{IP: ep.IP, Protocol: proto, Port: uint16(ep.Port), IP2: ep.IP}})
		}
	}
	for _, a := range r.Bind {
		r.Entries = append(r.Entries, setEntry{setIPVSIPs, ipset.Entry{IP: a}})
	}
	return r, nil
}
