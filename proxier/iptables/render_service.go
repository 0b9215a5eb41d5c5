package iptables

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"
)

// renderContext is what one render pass knows besides the service being rendered.
type renderContext struct {
	*Renderer
	node     model.NodeInfo
	local    localMatch     // the local-traffic detector's match; the zero value when there is none
	podCIDRs []netip.Prefix // this node's pod CIDRs of the renderer's family
	// countLocalhost: node ports answer on loopback addresses and count what they accept there.
	countLocalhost bool
}

// newContext holds the node facts one render needs. Every render path must build it here, so a
// verified full sync and an ordinary one decide the same way.
func (r *Renderer) newContext(snap *model.Snapshot, local localMatch) *renderContext {
	return &renderContext{Renderer: r, node: snap.Node, local: local, podCIDRs: model.PrefixesFor(r.opts.Family, snap.Node.PodCIDRs),
		countLocalhost: r.opts.LocalhostNodePortsEffective() && r.opts.counts(metrics.NFAcctLocalhostNodePorts)}
}

// serviceRules is everything one service port contributes to the ruleset: its lines in the shared
// dispatch chains and its own chains. Kept per service so an incremental render reuses it.
type serviceRules struct {
	filterServices, filterExternal, filterFirewall, filterNodePorts ruleBuf
	natDispatch                                                     []*shardRules // rules for SY-DST shards
	natNodePorts                                                    ruleBuf
	chains                                                          []string // nat chains it owns
	chainBody                                                       ruleBuf  // the rules of those chains
	hairpin                                                         []netip.Addr
	noLocalInternal, noLocalExternal                                bool
}

// shardRules are a service's dispatch rules in one shard.
type shardRules struct {
	shard netip.Prefix
	rules ruleBuf
}

// dispatch appends a dispatch rule for destination addr to the right shard.
func (s *serviceRules) dispatch(addr netip.Addr, args ...string) {
	p := shardOf(addr)
	for _, d := range s.natDispatch {
		if d.shard == p {
			d.rules.rule(shardChain(p), args...)
			return
		}
	}
	d := &shardRules{shard: p}
	d.rules.rule(shardChain(p), args...)
	s.natDispatch = append(s.natDispatch, d)
}

// svcArgs holds the pieces most rules of one service port repeat.
type svcArgs struct {
	name, proto, port string
}

// match returns "-p proto -m comment --comment "<name> <what>" -m proto --dport port".
func (a svcArgs) match(what string, port string) []string {
	return []string{"-p", a.proto, "-m", "comment", "--comment", quote(a.name + " " + what), "-m", a.proto, "--dport", port}
}

// renderService renders one service port. The layout (see doc.go) is kube-proxy's minus the
// per-endpoint chains: DNAT is inline in SY-SVC/SY-SVL, and the hairpin case is caught in
// POSTROUTING instead of by a per-endpoint "-s endpoint -j MARK" rule.
func (c *renderContext) renderService(svc *model.ServicePort, all []model.Endpoint) *serviceRules {
	s := &serviceRules{}
	f := c.opts.Family
	vip := svc.ClusterIPFor(f)
	if !vip.IsValid() {
		// The service has no address of this family; the other family's renderer programs it.
		return s
	}
	eps := make([]model.Endpoint, 0, len(all))
	for _, ep := range all {
		if f.Of(ep.IP) {
			eps = append(eps, ep)
		}
	}
	cat := model.Categorize(svc, eps, c.node)
	names := chainsFor(svc.Name, svc.Protocol)
	a := svcArgs{name: svc.Name.String(), proto: strings.ToLower(string(svc.Protocol)), port: strconv.Itoa(int(svc.Port))}

	clusterChain, localChain := "", ""
	if len(cat.Cluster) > 0 {
		clusterChain = names.Cluster
	}
	if svc.UsesLocalEndpoints() && len(cat.Local) > 0 {
		localChain = names.Local
	}
	internalChain, externalPolicyChain := clusterChain, clusterChain
	if svc.InternalPolicyLocal() {
		internalChain = localChain
	}
	if svc.ExternalPolicyLocal() {
		externalPolicyChain = localChain
	}
	externalChain := ""
	if svc.ExternallyAccessible() && cat.HasAny {
		externalChain = names.External
	}
	// Traffic that finds no chain to go to is refused in the filter table: REJECT when the service
	// has no endpoints at all, DROP when it has some but none this traffic's policy may use.
	noEndpointsTarget := []string{"-j", "REJECT", "--reject-with", c.rejectWith()}
	noEndpointsWhy := "has no endpoints"
	if cat.HasAny {
		noEndpointsTarget = []string{"-j", "DROP"}
		noEndpointsWhy = "has no local endpoints"
	}
	s.noLocalInternal = cat.HasAny && svc.InternalPolicyLocal() && internalChain == ""
	s.noLocalExternal = cat.HasAny && svc.ExternalPolicyLocal() && externalPolicyChain == ""

	// ClusterIP.
	vipS := hostPrefix(vip)
	if internalChain != "" {
		s.dispatch(vip, append([]string{"-d", vipS}, append(a.match("cluster IP", a.port), "-j", internalChain)...)...)
	} else {
		s.filterServices.rule(chainServices, append([]string{"-d", vipS}, append(a.match(noEndpointsWhy, a.port), noEndpointsTarget...)...)...)
	}

	// External IPs.
	for _, ip := range model.AddrsFor(f, svc.ExternalIPs) {
		d := []string{"-d", hostPrefix(ip)}
		if externalChain != "" {
			s.dispatch(ip, append(d, append(a.match("external IP", a.port), "-j", externalChain)...)...)
		}
		if externalPolicyChain == "" {
			s.filterExternal.rule(chainExternalServices, append(d, append(a.match(noEndpointsWhy, a.port), noEndpointsTarget...)...)...)
		}
	}

	// Load-balancer ingress IPs, with loadBalancerSourceRanges as a source filter on the dispatch
	// rules themselves (kube-proxy's KUBE-FW chain, inlined). Traffic from elsewhere is not DNATed, so
	// it still carries the LB IP when SY-FIREWALL in the filter table sees and drops it. As in
	// kube-proxy, the firewall exists only while the service has endpoints: without any, every
	// source, allowed or not, gets the REJECT below, and no DROP comes before it.
	lbIPs := model.AddrsFor(f, svc.LoadBalancerIPs)
	ranges := svc.SourceRangesFor(f)
	firewalled := externalChain != "" && len(ranges) > 0
	for _, ip := range lbIPs {
		d := hostPrefix(ip)
		if externalChain != "" {
			rest := append(a.match("loadbalancer IP", a.port), "-j", externalChain)
			if !firewalled {
				s.dispatch(ip, append([]string{"-d", d}, rest...)...)
			} else {
				for _, p := range ranges {
					s.dispatch(ip, append([]string{"-s", p.Masked().String(), "-d", d}, rest...)...)
				}
				if c.allowFromNode(ranges) {
					for _, src := range lbIPs {
						s.dispatch(ip, append([]string{"-s", hostPrefix(src), "-d", d}, rest...)...)
					}
				}
			}
		}
		if firewalled {
			s.filterFirewall.rule(chainFirewall, append([]string{"-d", d}, append(a.match("traffic not accepted by loadBalancerSourceRanges", a.port), "-j", "DROP")...)...)
		}
		if externalPolicyChain == "" {
			s.filterExternal.rule(chainExternalServices, append([]string{"-d", d}, append(a.match(noEndpointsWhy, a.port), noEndpointsTarget...)...)...)
		}
	}

	// Node port.
	if svc.NodePort != 0 {
		np := strconv.Itoa(int(svc.NodePort))
		if externalChain != "" {
			if c.countLocalhost {
				// The same jump, counted: it sees only packets to a loopback address.
				s.natNodePorts.rule(chainNodePorts, append(append([]string{"-d", loopbackNet(f).String()}, a.match("node port", np)...),
					append(countInto(metrics.NFAcctLocalhostNodePorts), "-j", externalChain)...)...)
			}
			s.natNodePorts.rule(chainNodePorts, append(a.match("node port", np), "-j", externalChain)...)
		}
		if externalPolicyChain == "" {
			s.filterExternal.rule(chainExternalServices, "-p", a.proto, "-m", "comment", "--comment", quote(a.name+" "+noEndpointsWhy),
				"-m", "addrtype", "--dst-type", "LOCAL", "-m", a.proto, "--dport", np, strings.Join(noEndpointsTarget, " "))
		}
	}
	if svc.HealthCheckNodePort != 0 {
		s.filterNodePorts.rule(chainNodePorts, "-p", "tcp", "-m", "comment", "--comment", quote(a.name+" health check node port"),
			"-m", "tcp", "--dport", strconv.Itoa(int(svc.HealthCheckNodePort)), "-j", "ACCEPT")
	}

	if externalChain != "" {
		s.chains = append(s.chains, externalChain)
		c.writeExternalChain(s, svc, a, externalChain, clusterChain, localChain, externalPolicyChain)
	}
	if clusterChain != "" {
		s.chains = append(s.chains, clusterChain)
		c.writeEndpointChain(s, svc, a, vipS, clusterChain, clusterChain == internalChain, cat.Cluster)
	}
	if localChain != "" {
		s.chains = append(s.chains, localChain)
		c.writeEndpointChain(s, svc, a, vipS, localChain, localChain == internalChain, cat.Local)
	}

	// Only an endpoint that may be the source of traffic to its own service needs SY-HAIRPIN's
	// masquerade.
	for _, ep := range cat.AllReachable {
		if c.mayHairpin(ep) {
			s.hairpin = append(s.hairpin, ep.IP)
		}
	}
	return s
}

// mayHairpin reports whether an endpoint can send traffic from this node: one on this node, or
// one with no node (endpoints maintained by hand) at an address this node can own, inside its pod
// CIDR or one of its own addresses. Without a pod CIDR to go by, an endpoint with no node is
// assumed local. kube-proxy gives every endpoint a hairpin rule; here SY-HAIRPIN is one chain
// that POSTROUTING walks for every new DNATed connection, so it must stay at the size of one
// node's pods, not of a cluster's endpoints.
func (c *renderContext) mayHairpin(ep *model.Endpoint) bool {
	if ep.NodeName != "" {
		return ep.NodeName == c.node.Name
	}
	if len(c.podCIDRs) == 0 {
		return true
	}
	for _, p := range c.podCIDRs {
		if p.Contains(ep.IP) {
			return true
		}
	}
	return slices.Contains(c.opts.NodeIPs, ep.IP)
}

// writeExternalChain writes SY-EXT, the entry for node-port, external-IP and LB-IP traffic.
// eTP=Cluster: masquerade everything (the reply must come back through this node), then go to the
// cluster endpoints. eTP=Local: keep the client's source and use only this node's endpoints, except
// that pod traffic and the node's own traffic take the cluster path, as if they had gone out to the
// load balancer and come back; node traffic is masqueraded since its source is a node address.
func (c *renderContext) writeExternalChain(s *serviceRules, svc *model.ServicePort, a svcArgs, ext, clusterChain, localChain, policyChain string) {
	b := &s.chainBody
	if !svc.ExternalPolicyLocal() {
		b.rule(ext, "-m", "comment", "--comment", quote("masquerade traffic for "+a.name+" external destinations"),
			"-j", "MARK", "--set-xmark", c.markMask)
	} else {
		// The short-circuit needs the cluster endpoints. The shared model does not compute them when
		// both policies are Local, so fall back to this node's endpoints then.
		short := clusterChain
		if short == "" {
			short = localChain
		}
		if c.local.ok() && short != "" {
			b.rule(ext, append(c.local.local(), "-m", "comment", "--comment", quote("pod traffic for "+a.name+" external destinations"),
				"-j", short)...)
		}
		b.rule(ext, "-m", "comment", "--comment", quote("masquerade LOCAL traffic for "+a.name+" external destinations"),
			"-m", "addrtype", "--src-type", "LOCAL", "-j", "MARK", "--set-xmark", c.markMask)
		if short != "" {
			b.rule(ext, "-m", "comment", "--comment", quote("route LOCAL traffic for "+a.name+" external destinations"),
				"-m", "addrtype", "--src-type", "LOCAL", "-j", short)
		}
	}
	if policyChain != "" {
		b.rule(ext, "-j", policyChain)
	}
}

// writeEndpointChain writes SY-SVC or SY-SVL: optionally the ClusterIP masquerade rule, then
// ClientIP-affinity lookups, then one DNAT per endpoint chosen at random with kube-proxy's
// probabilities (1/n, 1/(n-1), ..., the last unconditional).
func (c *renderContext) writeEndpointChain(s *serviceRules, svc *model.ServicePort, a svcArgs, vip, chain string, internal bool, eps []*model.Endpoint) {
	b := &s.chainBody
	if internal {
		dst := []string{"-d", vip}
		rest := append(a.match("cluster IP", a.port), "-j", "MARK", "--set-xmark", c.markMask)
		if c.opts.MasqueradeAll {
			b.rule(chain, append(dst, rest...)...)
		} else if c.local.ok() {
			b.rule(chain, c.local.notLocalTo(dst, rest...)...)
		}
	}
	affinity := svc.Affinity.ClientIP
	timeout := strconv.Itoa(int(svc.Affinity.TimeoutSeconds))
	if affinity {
		for _, ep := range eps {
			b.rule(chain, "-p", a.proto, "-m", "recent", "--update", "--seconds", timeout, "--reap",
				"--name", affinityListName(svc.Name, svc.Protocol, ep.AddrPort()), "--mask", c.hostMask(), "--rsource",
				"-j", "DNAT", "--to-destination", ep.AddrPort().String())
		}
	}
	n := len(eps)
	for i, ep := range eps {
		args := []string{"-p", a.proto}
		if i < n-1 {
			args = append(args, "-m", "statistic", "--mode", "random", "--probability", probability(n-i))
		}
		if affinity {
			args = append(args, "-m", "recent", "--set", "--name", affinityListName(svc.Name, svc.Protocol, ep.AddrPort()),
				"--mask", c.hostMask(), "--rsource")
		}
		b.rule(chain, append(args, "-j", "DNAT", "--to-destination", ep.AddrPort().String())...)
	}
}

// probability spells 1/n the way iptables-save prints it back: xt_statistic keeps the probability as
// a 31-bit fraction and prints it with 11 decimals. Writing that exact text makes a save of the kernel
// state byte-identical to what was rendered, so the fake's dump and a real dump agree.
func probability(n int) string {
	frac := math.Round(float64(0x80000000) / float64(n))
	return fmt.Sprintf("%.11f", frac/float64(0x80000000))
}

// allowFromNode reports whether a source range admits one of the node's own addresses; kube-proxy
// then also admits traffic whose source is one of the service's LB IPs (the node talking to a VIP
// bound locally).
func (c *renderContext) allowFromNode(ranges []netip.Prefix) bool {
	for _, p := range ranges {
		for _, ip := range c.opts.NodeIPs {
			if p.Contains(ip) {
				return true
			}
		}
	}
	return false
}

func (c *renderContext) rejectWith() string {
	if c.opts.Family == model.IPv6 {
		return "icmp6-port-unreachable"
	}
	return "icmp-port-unreachable"
}

func (c *renderContext) hostMask() string {
	if c.opts.Family == model.IPv6 {
		return "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
	}
	return "255.255.255.255"
}
