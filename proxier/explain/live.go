package explain

import (
	"net/netip"

	"github.com/switchyard/switchyard/proxier/model"
)

// Live is the node state one explanation reads. The command (cmd/switchyard explain) gathers it
// from the kernel and the daemon; tests build it by hand or from a throwaway namespace. Walkers
// only read it, so an explanation is a pure function of Live and the Packet.
type Live struct {
	// Mode is the proxy mode whose rules are in force: "iptables" or "ipvs".
	Mode string
	// Family is the IP family of the packet and of everything below.
	Family model.IPFamily
	// IptablesSave is iptables-save's output for the family (every table), as the node's variant
	// prints it.
	IptablesSave []byte
	// IPSetSave is `ipset save` output (IPVS mode's sets); empty in iptables mode.
	IPSetSave string
	// VirtualServers are IPVS mode's virtual servers with their real servers; nil in iptables mode.
	VirtualServers []VirtualServer
	// LocalAddrs are the node's own addresses (what addrtype LOCAL matches), with the interface
	// each is on.
	LocalAddrs map[netip.Addr]string
	// Route answers the routing decision for a destination, as `ip route get` would on the node.
	Route func(dst netip.Addr) (Route, error)
	// Conntrack holds the live conntrack entries whose original tuple matches the packet's
	// destination (or DNATed destination), for the "pinned by conntrack" cause.
	Conntrack []ConntrackEntry
	// Model is what the daemon believes (/debug/model); nil when the daemon could not be asked, in
	// which case causes that need it are not looked for, and the report says so.
	Model *model.DebugModel
}

// VirtualServer is one IPVS virtual server as the kernel holds it.
type VirtualServer struct {
	Addr      netip.AddrPort `json:"addr"` // zero Addr with a port for a fwmark service is not used
	Protocol  string         `json:"protocol"`
	Scheduler string         `json:"scheduler"`
	// Persistent is set with ClientIP session affinity (IPVS persistence).
	Persistent  bool         `json:"persistent,omitempty"`
	RealServers []RealServer `json:"realServers"`
}

// RealServer is one destination of a virtual server.
type RealServer struct {
	Addr   netip.AddrPort `json:"addr"`
	Weight int            `json:"weight"`
}

// ConntrackEntry is one conntrack flow, as the kernel holds it.
type ConntrackEntry struct {
	Protocol string         `json:"protocol"`
	OrigSrc  netip.AddrPort `json:"origSrc"`
	OrigDst  netip.AddrPort `json:"origDst"`
	ReplySrc netip.AddrPort `json:"replySrc"` // the endpoint a DNATed flow is pinned to
	ReplyDst netip.AddrPort `json:"replyDst"`
}
