// Package explain says what happens to one packet on this node, and why: the rules or IPVS virtual
// server it meets, the endpoints it may be DNATed to and how likely each is, whether it is
// masqueraded, the final verdict, the route it takes next, and the likely causes when that is not
// what the operator expected. Each backend walks the packet through its own live state and fills in
// a Report; this package holds the Report, its text and JSON forms, and the causes, which depend
// only on the model (proxier/model.DebugModel) and the live conntrack entries.
//
// A walk never invents a path: a rule it does not understand ends the report with Unexplained set
// (and the command exits non-zero).
package explain

import (
	"net/netip"
)

// From is where a packet enters the node: from a pod on this node, from the node itself (a host
// process), or from outside (the uplink).
type From string

const (
	FromPod      From = "pod"
	FromNode     From = "node"
	FromExternal From = "external"
)

// Packet is the first packet of a connection the operator asks about.
type Packet struct {
	Src   netip.AddrPort `json:"src"` // port 0: any
	Dst   netip.AddrPort `json:"dst"`
	Proto string         `json:"protocol"` // "tcp", "udp" or "sctp"
	From  From           `json:"from"`
	// InIface is the interface the packet arrives on (empty for FromNode): the walk picks it from
	// the routes (the pod's veth or bridge for FromPod, the uplink for FromExternal).
	InIface string `json:"inInterface,omitempty"`
}

// Verdict is what finally happens to the packet on this node.
type Verdict string

const (
	// Delivered: accepted and DNATed to an endpoint (or, not DNATed, delivered to the node itself).
	Delivered Verdict = "delivered"
	Rejected  Verdict = "rejected"
	Dropped   Verdict = "dropped"
	// NotHandled: no Switchyard rule or virtual server touched the packet; it goes on as routed.
	NotHandled Verdict = "not-handled"
	// Unexplained: the walk stopped at a rule it cannot follow (Report.Unexplained says which);
	// the outcome's steps are what was walked up to it.
	Unexplained Verdict = "unexplained"
)

// ServiceRef names the Service port a rule or virtual server was written for.
type ServiceRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Port      string `json:"port"` // the port's name, "" for an unnamed port
}

// Step is one thing the packet met, in order: a rule that matched (iptables), a virtual server
// (IPVS), a set lookup, a routing decision.
type Step struct {
	Hook  string `json:"hook"`            // e.g. "nat/PREROUTING", "ipvs", "routing"
	Chain string `json:"chain,omitempty"` // the chain the rule is in
	Rule  string `json:"rule,omitempty"`  // the rule as iptables-save prints it, or the virtual server
	// Service is the Service port that produced the rule, when the walk can tell (from Switchyard's
	// chain names and rule comments).
	Service *ServiceRef `json:"service,omitempty"`
	Note    string      `json:"note,omitempty"` // what the step means, in words
}

// Outcome is one way the packet may go, with its probability; only load balancing among endpoints
// gives a packet more than one.
type Outcome struct {
	Probability float64        `json:"probability"`
	Verdict     Verdict        `json:"verdict"`
	Endpoint    netip.AddrPort `json:"endpoint,omitzero"` // after DNAT, for Delivered to an endpoint
	// EndpointNode is the node the endpoint runs on, from the model ("" when unknown).
	EndpointNode string `json:"endpointNode,omitempty"`
	// Masquerade is the source address the packet leaves with when it is masqueraded (invalid: not
	// masqueraded).
	Masquerade netip.Addr `json:"masquerade,omitzero"`
	RejectWith string     `json:"rejectWith,omitempty"`
	Steps      []Step     `json:"steps"`
	// Route is where the packet goes after this node's rules: the local bridge, the VXLAN device to
	// node N, a BGP-learned route, or the default route.
	Route *Route `json:"route,omitempty"`
}

// Route is the routing decision for an outcome's (rewritten) destination.
type Route struct {
	Dst     netip.Addr `json:"dst"`
	Device  string     `json:"device"`
	Gateway netip.Addr `json:"gateway,omitzero"`
	// Src is the source address the kernel picks for this route (`ip route get`'s src), which is
	// what MASQUERADE rewrites a packet's source to; invalid when unknown.
	Src netip.Addr `json:"src,omitzero"`
	// Kind is "local" (delivered to this node), "bridge" (a pod on this node), "vxlan" (the overlay
	// to another node), "direct" (direct routing to another node), "bgp" or "default".
	Kind string `json:"kind"`
	// Node is the node the route leads to, when it leads to one.
	Node string `json:"node,omitempty"`
}

// Cause is a likely reason for an unexpected outcome, with the evidence that points at it.
type Cause struct {
	// Kind is one of: "no-ready-endpoints", "etp-local-no-local-endpoints",
	// "source-outside-loadbalancer-source-ranges", "rules-older-than-model", "conntrack-pinned".
	Kind     string   `json:"kind"`
	Summary  string   `json:"summary"`
	Evidence []string `json:"evidence"`
}

// Report is the whole answer for one packet.
type Report struct {
	Packet Packet `json:"packet"`
	// Mode is the proxy mode whose live state was read: "iptables" or "ipvs".
	Mode     string    `json:"mode"`
	Outcomes []Outcome `json:"outcomes"` // most likely first; probabilities sum to 1
	Causes   []Cause   `json:"causes,omitempty"`
	// Notes are what the reader should know about how far to trust the report: assumptions the
	// walk made (no existing affinity entry) and checks it could not make (no model to read).
	Notes []string `json:"notes,omitempty"`
	// Unexplained is set when the walk met a rule it cannot follow (another agent's, or one it
	// does not understand): "cannot explain past this rule: <rule>". Outcomes then hold only what
	// was walked up to that rule, and the command exits non-zero.
	Unexplained string `json:"unexplained,omitempty"`
}
