package watcher

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"

	"github.com/switchyard/switchyard/proxier/model"
)

// portKey matches an EndpointSlice port to a service port: by name, as kube-proxy does, and by
// protocol, since a port name is unique per service and a mismatched protocol means the slice is stale.
type portKey struct {
	Name     string
	Protocol model.Protocol
}

// slicePort is one validated port of an EndpointSlice.
type slicePort struct {
	portKey
	Port int32
}

// sliceInfo is the validated content of one EndpointSlice. Endpoints carry no port: each pairs with
// every port of the slice.
type sliceInfo struct {
	Ports     []slicePort
	Endpoints []model.Endpoint
}

// convertEndpointSlice validates an EndpointSlice. It returns the service the slice belongs to and its
// usable ports and endpoints; parts it refuses are left out and described in the rejections. ok is
// false when the slice as a whole is of no use to the proxy (no service label, FQDN addresses).
func convertEndpointSlice(es *discovery.EndpointSlice) (svc model.ServiceKey, info *sliceInfo, rejects []rejection, ok bool) {
	object := es.Namespace + "/" + es.Name
	name := es.Labels[discovery.LabelServiceName]
	if name == "" {
		return svc, nil, []rejection{{Kind: kindEndpointSlice, Object: object, Reason: reasonNoServiceName,
			Detail: "label " + discovery.LabelServiceName + " missing"}}, false
	}
	svc = model.ServiceKey{Namespace: es.Namespace, Name: name}
	// The server-side selector already keeps these out; checking again covers clients that ignore
	// selectors on watches (and a label added after the fact shows up here as an update).
	if hasKey(es.Labels, LabelServiceProxyName) || hasKey(es.Labels, v1.IsHeadlessService) {
		return svc, nil, nil, false
	}
	var family v1.IPFamily
	switch es.AddressType {
	case discovery.AddressTypeIPv4:
		family = v1.IPv4Protocol
	case discovery.AddressTypeIPv6:
		family = v1.IPv6Protocol
	default:
		// FQDN slices (and unknown types) are not something a proxy can program; kube-proxy ignores
		// them too. Not an error.
		return svc, nil, nil, false
	}

	info = &sliceInfo{}
	reject := func(part, reason, detail string) {
		rejects = append(rejects, rejection{Kind: kindEndpointSlice, Object: object, Part: part, Reason: reason, Detail: detail})
	}
	for _, p := range es.Ports {
		pname := ""
		if p.Name != nil {
			pname = *p.Name
		}
		proto := v1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		switch {
		case p.Port == nil:
			reject("port "+portLabel(pname), reasonMissingPort, "no port number")
			continue
		case *p.Port < 1 || *p.Port > 65535:
			reject("port "+portLabel(pname), reasonPortRange, fmt.Sprint(*p.Port))
			continue
		case !validProtocol(proto):
			reject("port "+portLabel(pname), reasonProtocol, string(proto))
			continue
		}
		sp := slicePort{portKey: portKey{Name: pname, Protocol: protocolOf(proto)}, Port: *p.Port}
		if slices.ContainsFunc(info.Ports, func(q slicePort) bool { return q.portKey == sp.portKey }) {
			reject("port "+portLabel(pname), reasonDuplicatePort, pname)
			continue
		}
		info.Ports = append(info.Ports, sp)
	}

	for i := range es.Endpoints {
		ep := &es.Endpoints[i]
		if len(ep.Addresses) == 0 {
			reject(fmt.Sprintf("endpoint %d", i), reasonNoAddress, "no addresses")
			continue
		}
		// Like kube-proxy, only the first address is used; the API says they are fungible.
		ip, err := parseIP(ep.Addresses[0])
		if err != nil {
			reject(fmt.Sprintf("endpoint %d", i), reasonInvalidIP, ep.Addresses[0])
			continue
		}
		if !familyMatches(family, ip) {
			reject(fmt.Sprintf("endpoint %d", i), reasonWrongFamily, fmt.Sprintf("%s in an %s slice", ep.Addresses[0], es.AddressType))
			continue
		}
		info.Endpoints = append(info.Endpoints, convertEndpoint(ep, ip))
	}
	return svc, info, rejects, true
}

// convertEndpoint reads an endpoint's conditions with the API's and kube-proxy's defaults: ready or
// serving unset means true, terminating unset means false. So an endpoint that is terminating and
// not ready, with serving unset, is serving-terminating: the fall-back set kube-proxy uses.
func convertEndpoint(ep *discovery.Endpoint, ip netip.Addr) model.Endpoint {
	out := model.Endpoint{
		IP:          ip,
		Ready:       ep.Conditions.Ready == nil || *ep.Conditions.Ready,
		Serving:     ep.Conditions.Serving == nil || *ep.Conditions.Serving,
		Terminating: ep.Conditions.Terminating != nil && *ep.Conditions.Terminating,
	}
	if ep.NodeName != nil {
		out.NodeName = *ep.NodeName
	}
	if ep.Zone != nil {
		out.Zone = *ep.Zone
	}
	if ep.Hints != nil {
		// kube-proxy reads both kinds of hint (the gate for node hints, PreferSameTrafficDistribution,
		// is GA since v1.35); which one applies is model.Categorize's choice.
		out.ZoneHints = hintNames(ep.Hints.ForZones, func(z discovery.ForZone) string { return z.Name })
		out.NodeHints = hintNames(ep.Hints.ForNodes, func(n discovery.ForNode) string { return n.Name })
	}
	return out
}

// hintNames returns the names of hints, sorted and without duplicates: hint order carries no meaning,
// and sorting keeps a reordering from looking like a change. Nil when there are none.
func hintNames[H any](hints []H, name func(H) string) []string {
	var out []string
	for _, h := range hints {
		out = append(out, name(h))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// mergeEndpoints merges a service's slices into endpoints per port key, deduplicated by IP:port. When
// two slices list the same IP:port, the first slice in name order wins, except that an entry on
// nodeName replaces a remote one (kube-proxy prefers the local view for the same reason: locality must
// not flip with slice order). Each list is sorted by IP then port, so equal content compares equal.
func mergeEndpoints(bySlice map[string]*sliceInfo, nodeName string) map[portKey][]model.Endpoint {
	if len(bySlice) == 0 {
		return nil
	}
	names := make([]string, 0, len(bySlice))
	for n := range bySlice {
		names = append(names, n)
	}
	sort.Strings(names)

	type slot struct {
		key portKey
		at  netip.AddrPort
	}
	index := map[slot]int{}
	out := map[portKey][]model.Endpoint{}
	for _, n := range names {
		info := bySlice[n]
		for _, p := range info.Ports {
			for _, ep := range info.Endpoints {
				ep.Port = p.Port // ep is a copy; the hint slices are shared but never mutated
				s := slot{key: p.portKey, at: ep.AddrPort()}
				if i, seen := index[s]; seen {
					if nodeName != "" && ep.NodeName == nodeName && out[p.portKey][i].NodeName != nodeName {
						out[p.portKey][i] = ep
					}
					continue
				}
				index[s] = len(out[p.portKey])
				out[p.portKey] = append(out[p.portKey], ep)
			}
		}
	}
	for k, eps := range out {
		sort.Slice(eps, func(i, j int) bool {
			if c := eps[i].IP.Compare(eps[j].IP); c != 0 {
				return c < 0
			}
			return eps[i].Port < eps[j].Port
		})
		out[k] = eps
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
