package model

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
		useTopology := canUseTopology(svc, eps, node)
		c.Cluster = filter(eps, func(ep *Endpoint) bool {
			return ep.Ready && (!useTopology || hintsInclude(ep, node.Zone()))
		})
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

// canUseTopology follows kube-proxy: zone hints narrow the Cluster set only when the service asks for
// it (trafficDistribution PreferClose, or the topology-mode annotation that the watcher folds into the
// same field), the node has a zone, every ready endpoint carries hints, and some hint names this zone.
// Otherwise every endpoint is used, so a half-hinted slice can never black-hole traffic.
func canUseTopology(svc *ServicePort, eps []Endpoint, node NodeInfo) bool {
	if svc.TrafficDistribution != TrafficDistributionPreferClose {
		return false
	}
	zone := node.Zone()
	if zone == "" {
		return false
	}
	hasZoneHint := false
	for i := range eps {
		ep := &eps[i]
		if !ep.Ready {
			continue
		}
		if len(ep.ZoneHints) == 0 {
			return false
		}
		if hintsInclude(ep, zone) {
			hasZoneHint = true
		}
	}
	return hasZoneHint
}

// TrafficDistributionPreferClose is the spec.trafficDistribution value that enables zone hints.
const TrafficDistributionPreferClose = "PreferClose"

func hintsInclude(ep *Endpoint, zone string) bool {
	for _, z := range ep.ZoneHints {
		if z == zone {
			return true
		}
	}
	return false
}
