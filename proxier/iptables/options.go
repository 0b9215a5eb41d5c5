package iptables

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/switchyard/switchyard/proxier/model"
)

// LocalDetector says which traffic is "local" pod traffic, like kube-proxy's --detect-local-mode:
// by source address (ClusterCIDR, NodeCIDR) or by the interface it enters the node from
// (BridgeInterface, InterfaceNamePrefix). Local traffic to a ClusterIP keeps its source; anything
// else is masqueraded, and pod traffic to an eTP=Local external address is short-circuited to the
// cluster path. With no field set there is no detector: kube-proxy's "no-op" detector, which never
// masquerades ClusterIP traffic unless MasqueradeAll is set.
type LocalDetector struct {
	// ClusterCIDRs is --cluster-cidr (detect-local-mode ClusterCIDR). A renderer uses the one prefix
	// of its own family; a family may have at most one.
	ClusterCIDRs []netip.Prefix
	// The other fields each select a mode, and win over ClusterCIDRs; at most one may be set.

	// UseNodeCIDR selects detect-local-mode NodeCIDR: the node's own pod CIDR of the family, taken
	// from each snapshot's Node.PodCIDRs.
	UseNodeCIDR bool
	// BridgeInterface selects detect-local-mode BridgeInterface (--pod-bridge-interface): traffic
	// that enters the node from this interface, the bridge the pods hang off, is local.
	BridgeInterface string
	// InterfaceNamePrefix selects detect-local-mode InterfaceNamePrefix
	// (--pod-interface-name-prefix): traffic that enters from any interface whose name starts with
	// it, each pod's own host-side interface, is local.
	InterfaceNamePrefix string
}

// Options are the node facts and flags the renderer needs besides the snapshot.
type Options struct {
	// Family is the address family this renderer programs (iptables for IPv4, ip6tables for IPv6).
	Family        model.IPFamily
	LocalDetector LocalDetector
	// MasqueradeAll marks all ClusterIP traffic for SNAT (--masquerade-all).
	MasqueradeAll bool
	// MasqueradeBit is the fwmark bit that asks POSTROUTING to masquerade (--iptables-masquerade-bit,
	// 0..31). DefaultOptions sets kube-proxy's 14, that is 0x4000.
	MasqueradeBit int
	// NodePortAddresses limits node ports to local addresses inside these prefixes
	// (--nodeport-addresses). Empty means every local address. Prefixes of the other family are ignored.
	NodePortAddresses []netip.Prefix
	// NodeIPs are this node's addresses. When a loadBalancerSourceRanges entry contains one of them,
	// the node itself may reach the load balancer IP, as in kube-proxy.
	NodeIPs []netip.Addr
	// RandomFully adds --random-fully to MASQUERADE; set it when the iptables binary supports it.
	RandomFully bool
	// LocalhostNodePorts is --iptables-localhost-nodeports: node ports also answer on 127.0.0.0/8.
	// It takes effect only where LocalhostNodePortsEffective says, and the node must then have
	// net.ipv4.conf.all.route_localnet=1, or the kernel drops such packets as martians.
	LocalhostNodePorts bool
	// ConntrackTCPLiberal says that net.netfilter.nf_conntrack_tcp_be_liberal is on. conntrack then
	// marks only out-of-window RSTs INVALID, and, as in kube-proxy, INVALID packets are not dropped.
	ConntrackTCPLiberal bool
	// NFAcctCounters names the nfacct counters that exist in the kernel (metrics.NFAcct*). Rules
	// count packets into those only: iptables refuses a rule naming a counter that does not exist.
	NFAcctCounters []string
}

// DefaultOptions returns kube-proxy's defaults for family.
func DefaultOptions(family model.IPFamily) Options {
	return Options{Family: family, MasqueradeBit: 14, LocalhostNodePorts: true}
}

// LocalhostNodePortsEffective reports whether node ports answer on 127.0.0.0/8, as kube-proxy
// decides it: only for IPv4, and only when --nodeport-addresses admits an IPv4 loopback address
// (no IPv4 prefix at all means every address).
func (o *Options) LocalhostNodePortsEffective() bool {
	if !o.LocalhostNodePorts || o.Family != model.IPv4 {
		return false
	}
	prefixes := model.PrefixesFor(model.IPv4, o.NodePortAddresses)
	if len(prefixes) == 0 {
		return true
	}
	for _, p := range prefixes {
		if p.Addr().IsLoopback() || p.Contains(loopbackNet(model.IPv4).Addr()) {
			return true
		}
	}
	return false
}

// loopbackNet is the family's loopback range: 127.0.0.0/8, ::1/128.
func loopbackNet(f model.IPFamily) netip.Prefix {
	if f == model.IPv6 {
		return netip.PrefixFrom(netip.IPv6Loopback(), 128)
	}
	return netip.MustParsePrefix("127.0.0.0/8")
}

// counts reports whether the nfacct counter name exists, so rules may count into it.
func (o *Options) counts(name string) bool { return slices.Contains(o.NFAcctCounters, name) }

// validate checks the options and returns the family's cluster CIDR (invalid when none).
func (o *Options) validate() (netip.Prefix, error) {
	if o.Family != model.IPv4 && o.Family != model.IPv6 {
		return netip.Prefix{}, fmt.Errorf("iptables options: unknown IP family %d", o.Family)
	}
	if o.MasqueradeBit < 0 || o.MasqueradeBit > 31 {
		return netip.Prefix{}, fmt.Errorf("iptables options: masquerade bit %d is outside 0..31", o.MasqueradeBit)
	}
	if err := o.LocalDetector.validate(); err != nil {
		return netip.Prefix{}, err
	}
	var cidr netip.Prefix
	for _, p := range o.LocalDetector.ClusterCIDRs {
		if !p.IsValid() {
			return netip.Prefix{}, fmt.Errorf("iptables options: invalid cluster CIDR %v", p)
		}
		if !o.Family.Of(p.Addr()) {
			continue
		}
		if cidr.IsValid() {
			return netip.Prefix{}, fmt.Errorf("iptables options: more than one %s cluster CIDR (%v, %v); the ClusterCIDR detector takes one per family", o.Family, cidr, p)
		}
		cidr = p.Masked()
	}
	for _, p := range o.NodePortAddresses {
		if !p.IsValid() {
			return netip.Prefix{}, fmt.Errorf("iptables options: invalid node port address prefix %v", p)
		}
	}
	return cidr, nil
}

// markHex is the masquerade mark as iptables prints it, e.g. "0x4000".
func (o *Options) markHex() string { return fmt.Sprintf("%#x", uint32(1)<<o.MasqueradeBit) }
