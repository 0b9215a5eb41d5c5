package model

import "slices"

// Categorized is the outcome of choosing endpoints for a service port on one node, with kube-proxy's
// semantics. Backends render from it and nothing else, so iptables and IPVS cannot disagree about
// which endpoints a packet may reach.
type Categorized struct {
	// Cluster are the endpoints for traffic under the Cluster policy: ready endpoints (narrowed by
	// topology hints when they apply), or, if there are none anywhere, serving-and-terminating ones.
	// Nil when no traffic to the service uses the Cluster policy.
	Cluster []*Endpoint
	// Local are this node's endpoints for traffic under the Local policy: ready ones, or, if this node
	// has none, its serving-and-terminating ones. Nil when no traffic uses the Local policy.
	Local []*Endpoint
	// AllReachable is the union of Cluster and Local: every endpoint some packet may be sent to.
	AllReachable []*Endpoint
	// HasAny reports whether the service has a usable endpoint anywhere in the cluster. When it is
	// false, traffic is rejected; when it is true but the policy's set is empty, traffic is dropped.
	HasAny bool
}

// Categorize chooses the endpoints of svc that traffic may reach from node.
func Categorize(svc *ServicePort, eps []Endpoint, node NodeInfo) Categorized {
	var c Categorized
	if svc.UsesClusterEndpoints() {
		mode := topologyFromHints(eps, node)
		c.Cluster = filter(eps, func(ep *Endpoint) bool {
			return ep.Ready && mode.admits(ep, node)
		})
		// topologyFromHints only picks a mode that leaves a ready endpoint, so an empty set here
		// means there is no ready endpoint anywhere.
		if len(c.Cluster) == 0 {
			c.Cluster = filter(eps, servingTerminating)
		}
		// A ready endpoint anywhere always lands in Cluster, so this is "any usable endpoint".
		c.HasAny = len(c.Cluster) > 0
	}
	if !svc.UsesLocalEndpoints() {
		c.AllReachable = c.Cluster
		return c
	}

	localReady, localServingTerminating := false, false
	for i := range eps {
		ep := &eps[i]
		local := isLocal(ep, node)
		switch {
		case ep.Ready:
			c.HasAny = true
			localReady = localReady || local
		case servingTerminating(ep):
			c.HasAny = true
			localServingTerminating = localServingTerminating || local
		}
	}
	switch {
	case localReady:
		c.Local = filter(eps, func(ep *Endpoint) bool { return isLocal(ep, node) && ep.Ready })
	case localServingTerminating:
		c.Local = filter(eps, func(ep *Endpoint) bool { return isLocal(ep, node) && servingTerminating(ep) })
	}

	if !svc.UsesClusterEndpoints() {
		c.AllReachable = c.Local
		return c
	}
	// Cluster may hold remote endpoints Local lacks, and Local may hold endpoints Cluster lacks:
	// serving-terminating ones, or ones the hints send to other nodes or zones.
	c.AllReachable = append([]*Endpoint(nil), c.Cluster...)
	for _, l := range c.Local {
		if !containsEndpoint(c.Cluster, l) {
			c.AllReachable = append(c.AllReachable, l)
		}
	}
	return c
}

func servingTerminating(ep *Endpoint) bool { return ep.Serving && ep.Terminating }

// isLocal reports whether ep runs on node. An empty name on either side means "unknown", never a
// match: otherwise a NodeInfo without a name would treat every endpoint that lacks a nodeName as
// local, and Local policies would send traffic off the node.
func isLocal(ep *Endpoint, node NodeInfo) bool {
	return node.Name != "" && ep.NodeName == node.Name
}

func filter(eps []Endpoint, keep func(*Endpoint) bool) []*Endpoint {
	var out []*Endpoint
	for i := range eps {
		if keep(&eps[i]) {
			out = append(out, &eps[i])
		}
	}
	return out
}

func containsEndpoint(list []*Endpoint, ep *Endpoint) bool {
	for _, e := range list {
		if e.IP == ep.IP && e.Port == ep.Port {
			return true
		}
	}
	return false
}

// topologyMode is how endpoint hints narrow the Cluster set on a node.
type topologyMode int

const (
	// topologyNone uses every ready endpoint.
	topologyNone topologyMode = iota
	// topologySameZone uses the ready endpoints whose hints.forZones names this node's zone.
	topologySameZone
	// topologySameNode uses the ready endpoints whose hints.forNodes names this node.
	topologySameNode
)

// topologyFromHints picks the mode as kube-proxy v1.37 does, from the hints alone. It does not
// read the service's trafficDistribution or its topology-mode annotation: the EndpointSlice
// controller already turned those into hints, and kube-proxy trusts whatever hints a slice carries.
//
// Only ready endpoints are looked at. Node hints win when every ready endpoint has some and one names
// this node; otherwise zone hints, when every ready endpoint has some and one names this node's zone;
// otherwise none. Requiring hints on every ready endpoint, and one for this node or zone, means a
// half-hinted slice (say, mid-update) or a node the hints forgot never black-holes traffic.
// (PreferSameTrafficDistribution, which gates node hints, is GA and locked on since v1.35.)
func topologyFromHints(eps []Endpoint, node NodeInfo) topologyMode {
	zone := node.Zone()
	anyReady := false
	allNodeHinted, nodeHinted := true, false
	allZoneHinted, zoneHinted := true, false
	for i := range eps {
		ep := &eps[i]
		if !ep.Ready {
			continue
		}
		anyReady = true
		if len(ep.NodeHints) == 0 {
			allNodeHinted = false
		} else if slices.Contains(ep.NodeHints, node.Name) {
			nodeHinted = true
		}
		if len(ep.ZoneHints) == 0 {
			allZoneHinted = false
		} else if slices.Contains(ep.ZoneHints, zone) {
			zoneHinted = true
		}
	}
	switch {
	case !anyReady:
		return topologyNone
	case allNodeHinted && nodeHinted:
		return topologySameNode
	case allZoneHinted && zoneHinted:
		return topologySameZone
	}
	return topologyNone
}

// admits reports whether ep may take Cluster traffic from node under t. There is no fall-back here:
// topologyFromHints already fell back when choosing t.
func (t topologyMode) admits(ep *Endpoint, node NodeInfo) bool {
	switch t {
	case topologySameNode:
		return slices.Contains(ep.NodeHints, node.Name)
	case topologySameZone:
		return slices.Contains(ep.ZoneHints, node.Zone())
	}
	return true
}

// Values of spec.trafficDistribution. Categorize reads none of them (see topologyFromHints); they name
// the topologies and what the watcher carries into ServicePort.TrafficDistribution.
const (
	// TrafficDistributionPreferClose is the original, now deprecated, name of PreferSameZone.
	TrafficDistributionPreferClose    = "PreferClose"
	TrafficDistributionPreferSameZone = "PreferSameZone"
	TrafficDistributionPreferSameNode = "PreferSameNode"
)
