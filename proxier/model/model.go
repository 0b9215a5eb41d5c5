// Package model holds Switchyard's desired Service/Endpoint model: plain Go values that the watcher
// builds from API objects and that every backend (proxier/iptables, proxier/ipvs) renders. It imports
// nothing from client-go, so a backend can be tested, benchmarked and fuzzed without a cluster.
//
// Values reachable from a Snapshot are immutable once published: the watcher builds a new ServicePort
// or a new endpoint slice on every change instead of editing one in place, so a backend may keep the
// previous snapshot to diff against without copying it.
package model

import (
	"fmt"
	"net/netip"
)

// Protocol is a service port's L4 protocol, spelled as the Kubernetes API spells it.
type Protocol string

const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
)

// IPFamily selects the addresses a backend instance programs. A dual-stack node runs one backend
// instance per family over the same snapshot.
type IPFamily int

const (
	IPv4 IPFamily = 4
	IPv6 IPFamily = 6
)

// Of reports whether addr belongs to the family.
func (f IPFamily) Of(addr netip.Addr) bool {
	if f == IPv6 {
		return addr.Is6() && !addr.Is4In6()
	}
	return addr.Is4()
}

func (f IPFamily) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// TrafficPolicy is a service's internal or external traffic policy.
type TrafficPolicy string

const (
	PolicyCluster TrafficPolicy = "Cluster"
	PolicyLocal   TrafficPolicy = "Local"
)

// ServiceKey names a Service.
type ServiceKey struct {
	Namespace string
	Name      string
}

func (k ServiceKey) String() string { return k.Namespace + "/" + k.Name }

// ServicePortName names one port of a Service; it is the unit every backend programs.
type ServicePortName struct {
	ServiceKey
	Port string // the port's name; empty for a single unnamed port
}

// String uses kube-proxy's spelling, "ns/name:port", so logs and metrics line up with it.
func (n ServicePortName) String() string {
	if n.Port == "" {
		return n.ServiceKey.String()
	}
	return n.ServiceKey.String() + ":" + n.Port
}

// SessionAffinity is a service's ClientIP affinity. The zero value means no affinity.
type SessionAffinity struct {
	ClientIP       bool
	TimeoutSeconds int32
}

// ServicePort is everything a backend needs to know about one port of one Service. Address lists
// may mix families; a backend picks its own with IPFamily.Of or the *For helpers.
type ServicePort struct {
	Name     ServicePortName
	Protocol Protocol
	Port     int32

	ClusterIPs               []netip.Addr
	NodePort                 int32 // 0 when the service has none
	ExternalIPs              []netip.Addr
	LoadBalancerIPs          []netip.Addr // status.loadBalancer.ingress[].ip
	LoadBalancerSourceRanges []netip.Prefix

	Affinity            SessionAffinity
	ExternalPolicy      TrafficPolicy
	InternalPolicy      TrafficPolicy
	HealthCheckNodePort int32 // set only for eTP=Local load balancers
	// TrafficDistribution is spec.trafficDistribution verbatim, "" when unset. Like kube-proxy v1.37,
	// Categorize does not read it: endpoint hints alone decide topology (see topologyFromHints).
	TrafficDistribution string
}

func (s *ServicePort) String() string {
	return fmt.Sprintf("%s/%s:%d", s.Name, s.Protocol, s.Port)
}

// ClusterIPFor returns the service's ClusterIP of the family, or the zero Addr.
func (s *ServicePort) ClusterIPFor(f IPFamily) netip.Addr {
	for _, ip := range s.ClusterIPs {
		if f.Of(ip) {
			return ip
		}
	}
	return netip.Addr{}
}

// AddrsFor returns the addresses of addrs that belong to the family, in order.
func AddrsFor(f IPFamily, addrs []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if f.Of(a) {
			out = append(out, a)
		}
	}
	return out
}

// PrefixesFor returns the prefixes of ps that belong to the family, in order.
func PrefixesFor(f IPFamily, ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if f.Of(p.Addr()) {
			out = append(out, p)
		}
	}
	return out
}

// SourceRangesFor returns the loadBalancerSourceRanges that restrict the family's traffic to the
// service's load-balancer IPs, or nil when none does. As in kube-proxy, ranges of the other family are
// left out (so a service whose ranges are all of the other family is open to this family, never
// closed to it), and a zero-length prefix of the family (0.0.0.0/0, ::/0) admits every source, so
// it means no filter at all.
func (s *ServicePort) SourceRangesFor(f IPFamily) []netip.Prefix {
	ranges := PrefixesFor(f, s.LoadBalancerSourceRanges)
	for _, p := range ranges {
		if p.Bits() == 0 {
			return nil
		}
	}
	return ranges
}

// ExternallyAccessible reports whether traffic from outside the cluster can reach the service through
// this node: a NodePort, an external IP or a load-balancer IP.
func (s *ServicePort) ExternallyAccessible() bool {
	return s.NodePort != 0 || len(s.ExternalIPs) > 0 || len(s.LoadBalancerIPs) > 0
}

// ExternalPolicyLocal reports whether external traffic must stay on this node (eTP=Local). As in
// kube-proxy, the policy only matters for a service that is externally accessible.
func (s *ServicePort) ExternalPolicyLocal() bool {
	return s.ExternallyAccessible() && s.ExternalPolicy == PolicyLocal
}

// InternalPolicyLocal reports whether cluster-internal traffic must stay on this node (iTP=Local).
func (s *ServicePort) InternalPolicyLocal() bool {
	return s.InternalPolicy == PolicyLocal
}

// UsesClusterEndpoints reports whether any traffic to the service may go to endpoints on any node:
// under iTP=Cluster, or whenever the service is externally accessible. Even under eTP=Local the
// cluster set is needed, because pod-originated traffic to an external address short-circuits to the
// cluster path (as in kube-proxy) instead of being confined to this node.
func (s *ServicePort) UsesClusterEndpoints() bool {
	return !s.InternalPolicyLocal() || s.ExternallyAccessible()
}

// UsesLocalEndpoints reports whether any traffic to the service is restricted to this node's endpoints.
func (s *ServicePort) UsesLocalEndpoints() bool {
	return s.InternalPolicyLocal() || s.ExternalPolicyLocal()
}

// Endpoint is one backend of one service port, merged from all of the service's EndpointSlices.
type Endpoint struct {
	IP   netip.Addr
	Port int32

	// Conditions as kube-proxy reads them: a missing ready or serving condition means true, and a
	// missing terminating condition means not terminating.
	Ready       bool
	Serving     bool
	Terminating bool

	NodeName string
	Zone     string
	// Topology hints the EndpointSlice controller wrote for the service's trafficDistribution (or
	// topology-mode annotation); Categorize narrows the Cluster set by them. Sorted, no duplicates.
	ZoneHints []string // hints.forZones[].name
	NodeHints []string // hints.forNodes[].name
}

// AddrPort is the endpoint's address as DNAT and IPVS real servers spell it.
func (e *Endpoint) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(e.IP, uint16(e.Port))
}

func (e *Endpoint) String() string { return e.AddrPort().String() }

// NodeInfo is what the backends need to know about the node they run on.
type NodeInfo struct {
	Name string
	// Labels of the Node object, read for topology.kubernetes.io/zone.
	Labels   map[string]string
	PodCIDRs []netip.Prefix
}

// ZoneLabel is the well-known node label topology-aware routing reads.
const ZoneLabel = "topology.kubernetes.io/zone"

// Zone is the node's zone label, or "".
func (n NodeInfo) Zone() string { return n.Labels[ZoneLabel] }
