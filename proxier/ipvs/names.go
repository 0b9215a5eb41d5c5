package ipvs

import (
	"github.com/switchyard/switchyard/proxier/ipvs/ipset"
	"github.com/switchyard/switchyard/proxier/model"
)

// DummyDevice is the dummy interface that holds every service address, so the node accepts packets to
// them and IPVS (hooked at LOCAL_IN) sees them. kube-proxy's name is kept so that switching from
// kube-proxy's IPVS mode reuses, rather than duplicates, the device.
const DummyDevice = "kube-ipvs0"

// iptables chains of IPVS mode. They carry "IPVS" in their names so that they never collide with the
// iptables backend's SY- chains: each mode can remove the other's leftovers without touching its own.
const (
	chainServices    = "SY-IPVS-SERVICES"    // nat: PREROUTING and OUTPUT jump here
	chainPostrouting = "SY-IPVS-POSTROUTING" // nat: POSTROUTING jumps here; masquerades
	chainMarkMasq    = "SY-IPVS-MARK-MASQ"   // nat: sets the masquerade mark
	chainFilter      = "SY-IPVS-FILTER"      // filter: INPUT jumps here; source ranges and unknown ports
	chainForward     = "SY-IPVS-FORWARD"     // filter: FORWARD jumps here; accepts marked traffic
)

// setKind names one of the backend's ipsets independently of the family.
type setKind int

const (
	setClusterIP setKind = iota
	setExternalIP
	setExternalIPLocal
	setLoadBalancer
	setLoadBalancerLocal
	setLoadBalancerFW
	setLoadBalancerSourceCIDR
	setNodePort
	setNodePortLocal
	setLoopBack
	setIPVSIPs
	numSetKinds
)

var setDefs = [numSetKinds]struct {
	name    string
	typ     ipset.Type
	comment string
}{
	setClusterIP:              {"CLUSTER-IP", ipset.HashIPPort, "every ClusterIP:port"},
	setExternalIP:             {"EXTERNAL-IP", ipset.HashIPPort, "external IP:port with externalTrafficPolicy Cluster"},
	setExternalIPLocal:        {"EXTERNAL-IP-LOCAL", ipset.HashIPPort, "external IP:port with externalTrafficPolicy Local"},
	setLoadBalancer:           {"LOAD-BALANCER", ipset.HashIPPort, "every load-balancer IP:port"},
	setLoadBalancerLocal:      {"LOAD-BALANCER-LOCAL", ipset.HashIPPort, "load-balancer IP:port with externalTrafficPolicy Local"},
	setLoadBalancerFW:         {"LOAD-BALANCER-FW", ipset.HashIPPort, "load-balancer IP:port with loadBalancerSourceRanges"},
	setLoadBalancerSourceCIDR: {"LB-SOURCE-CIDR", ipset.HashIPPortNet, "load-balancer IP:port and an allowed source range"},
	setNodePort:               {"NODE-PORT", ipset.HashIPPort, "node address:NodePort with externalTrafficPolicy Cluster"},
	setNodePortLocal:          {"NODE-PORT-LOCAL", ipset.HashIPPort, "node address:NodePort with externalTrafficPolicy Local"},
	setLoopBack:               {"LOOP-BACK", ipset.HashIPPortIP, "local endpoint IP,port,IP for hairpin masquerade"},
	setIPVSIPs:                {"IPVS-IPS", ipset.HashIP, "every address bound to kube-ipvs0"},
}

// setName is the kernel name of a set for the family: "SY-CLUSTER-IP" or "SY6-CLUSTER-IP".
func setName(f model.IPFamily, k setKind) string {
	if f == model.IPv6 {
		return "SY6-" + setDefs[k].name
	}
	return "SY-" + setDefs[k].name
}

func setFor(f model.IPFamily, k setKind) ipset.Set {
	return ipset.Set{Name: setName(f, k), Type: setDefs[k].typ, Family: int(f), Comment: setDefs[k].comment}
}

// ipsetProto is the protocol as ipset spells it.
func ipsetProto(p model.Protocol) string {
	switch p {
	case model.UDP:
		return "udp"
	case model.SCTP:
		return "sctp"
	}
	return "tcp"
}
