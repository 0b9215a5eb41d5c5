package model

import (
	"net/netip"
	"time"
)

// DebugModel is what Switchyard believes, as /debug/model serves it (JSON) and `switchyard explain`
// reads it: every service port with its addresses and endpoints, the endpoint sets this node's
// rules choose per traffic policy, and how the last sync of each backend went. It is a view for
// people and tools, built from a Snapshot; nothing reads it back into the proxy.
type DebugModel struct {
	Node     DebugNode          `json:"node"`
	Services []DebugServicePort `json:"services"` // sorted by name
	// Syncs holds one entry per backend (IP family), in family order.
	Syncs []DebugSync `json:"syncs"`
}

// DebugNode is NodeInfo as served.
type DebugNode struct {
	Name     string         `json:"name"`
	Zone     string         `json:"zone,omitempty"`
	PodCIDRs []netip.Prefix `json:"podCIDRs,omitempty"`
}

// DebugServicePort is one service port and the endpoints this node may send its traffic to.
type DebugServicePort struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Port      string `json:"port"` // the port's name, "" for an unnamed port

	Protocol                 Protocol       `json:"protocol"`
	ServicePort              int32          `json:"servicePort"`
	ClusterIPs               []netip.Addr   `json:"clusterIPs,omitempty"`
	NodePort                 int32          `json:"nodePort,omitempty"`
	ExternalIPs              []netip.Addr   `json:"externalIPs,omitempty"`
	LoadBalancerIPs          []netip.Addr   `json:"loadBalancerIPs,omitempty"`
	LoadBalancerSourceRanges []netip.Prefix `json:"loadBalancerSourceRanges,omitempty"`
	HealthCheckNodePort      int32          `json:"healthCheckNodePort,omitempty"`
	SessionAffinity          bool           `json:"sessionAffinity,omitempty"`
	ExternalTrafficPolicy    TrafficPolicy  `json:"externalTrafficPolicy,omitempty"`
	InternalTrafficPolicy    TrafficPolicy  `json:"internalTrafficPolicy,omitempty"`
	TrafficDistribution      string         `json:"trafficDistribution,omitempty"`

	Endpoints []DebugEndpoint `json:"endpoints"`
	// ClusterEndpoints and LocalEndpoints are the sets Categorize chose on this node for traffic
	// under the Cluster and the Local policy (nil when no traffic uses that policy).
	ClusterEndpoints []netip.AddrPort `json:"clusterEndpoints"`
	LocalEndpoints   []netip.AddrPort `json:"localEndpoints"`
	// HasAny reports whether the service has a usable endpoint anywhere: without one its traffic is
	// rejected.
	HasAny bool `json:"hasAnyEndpoint"`
}

// DebugEndpoint is one endpoint with its conditions.
type DebugEndpoint struct {
	Endpoint    netip.AddrPort `json:"endpoint"`
	Ready       bool           `json:"ready"`
	Serving     bool           `json:"serving"`
	Terminating bool           `json:"terminating"`
	Local       bool           `json:"local"` // on this node
	NodeName    string         `json:"nodeName,omitempty"`
	Zone        string         `json:"zone,omitempty"`
}

// DebugSync is how one backend's last sync went.
type DebugSync struct {
	Family IPFamily `json:"-"`
	// IPFamily is Family as kube-proxy's ip_family label spells it ("IPv4", "IPv6").
	IPFamily string `json:"ipFamily"`
	// LastAttempt and LastSuccess are when the last sync, and the last successful one, ended (zero:
	// none yet). LastError is the last sync's error, "" when it succeeded.
	LastAttempt time.Time `json:"lastAttempt,omitzero"`
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	LastError   string    `json:"lastError,omitempty"`
	// ModelChangedAt is when the model this backend last saw changed; rules are older than the
	// model when it is after LastSuccess.
	ModelChangedAt time.Time `json:"modelChangedAt,omitzero"`
}
