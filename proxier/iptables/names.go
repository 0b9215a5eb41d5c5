package iptables

import (
	"crypto/sha256"
	"encoding/base32"
	"net/netip"
	"strings"

	"github.com/switchyard/switchyard/proxier/model"
)

// Every chain Switchyard owns starts with "SY-". kube-proxy's chains start with "KUBE-", and during a
// migration `kube-proxy --cleanup` deletes KUBE- chains, so sharing its prefix would let it delete ours.
const chainPrefix = "SY-"

// Fixed chains. The nat and filter tables each have their own SY-SERVICES and SY-NODEPORTS, as in
// kube-proxy; a chain name is only unique within its table.
const (
	chainServices         = "SY-SERVICES"          // nat: dispatch by destination; filter: REJECT/DROP for ClusterIPs
	chainNodePorts        = "SY-NODEPORTS"         // nat: dispatch by node port; filter: health-check ports
	chainPostrouting      = "SY-POSTROUTING"       // nat: masquerade marked packets
	chainHairpin          = "SY-HAIRPIN"           // nat: mark pods that reached themselves through a service
	chainForward          = "SY-FORWARD"           // filter: INVALID drop, accept marked traffic
	chainExternalServices = "SY-EXTERNAL-SERVICES" // filter: REJECT/DROP for external destinations
	chainFirewall         = "SY-FIREWALL"          // filter: drop LB traffic outside loadBalancerSourceRanges
	// chainLocalnetGuard drops traffic to 127.0.0.0/8 from other sources, which route_localnet=1
	// (needed by localhost node ports) would otherwise let in from the network. Empty when
	// localhost node ports are off, and always for IPv6.
	chainLocalnetGuard = "SY-LOCALNET-GUARD" // filter
	// CanaryChain is an empty chain in mangle, nat and filter. If it disappears, someone flushed the
	// tables and the next sync must rewrite everything.
	CanaryChain = "SY-PROXY-CANARY"
)

// Per-service chain kinds. A service port owns at most one chain of each kind.
const (
	kindCluster  = "SY-SVC-" // endpoints for Cluster-policy traffic, DNAT inline
	kindLocal    = "SY-SVL-" // this node's endpoints for Local-policy traffic
	kindExternal = "SY-EXT-" // entry for traffic to a node port, external IP or LB IP
	// kindShard chains hold the dispatch rules for the service addresses of one /24 (IPv6: /120).
	// nat SY-SERVICES jumps to them by destination prefix, so adding a service rewrites one shard
	// of at most 256 addresses' rules instead of a dispatch chain with a rule for every service,
	// and a first packet walks a few hundred rules instead of tens of thousands.
	kindShard = "SY-DST-"
)

// shardOf is the dispatch shard of a service address.
func shardOf(a netip.Addr) netip.Prefix {
	bits := 24
	if a.Is6() {
		bits = 120
	}
	p, _ := a.Prefix(bits)
	return p
}

// shardChain names the dispatch shard chain of a prefix.
func shardChain(p netip.Prefix) string { return kindShard + hashOf(p.String()) }

// Names of the per-service chains of one service port.
type serviceChains struct {
	Cluster, Local, External string
}

// chainsFor derives the chain names of a service port from a hash of its name and protocol, so names
// are stable across restarts, fit iptables' 28-character limit, and never collide for two ports that
// differ only in protocol.
func chainsFor(name model.ServicePortName, proto model.Protocol) serviceChains {
	h := hashOf(name.String() + "/" + strings.ToLower(string(proto)))
	return serviceChains{
		Cluster:  kindCluster + h,
		Local:    kindLocal + h,
		External: kindExternal + h,
	}
}

// affinityListName names the xt_recent list that remembers which clients a ClientIP-affinity service
// sent to one endpoint. The list is per endpoint, as kube-proxy's per-endpoint chains make it.
func affinityListName(name model.ServicePortName, proto model.Protocol, ep netip.AddrPort) string {
	return "SY-AFF-" + hashOf(name.String()+"/"+strings.ToLower(string(proto))+"/"+ep.String())
}

// hashOf returns 16 base32 characters of a SHA-256, as kube-proxy does: 80 bits keep collisions out of
// reach for any real cluster, and the result is a valid chain name suffix.
func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base32.StdEncoding.EncodeToString(sum[:])[:16]
}

// isShardChain reports whether a chain name is a dispatch shard's.
func isShardChain(name string) bool { return strings.HasPrefix(name, kindShard) }

// isServiceChain reports whether a chain name is one of the chains that a sync may create and
// delete (per-service chains and dispatch shards), as opposed to a fixed chain that always exists.
func isServiceChain(name string) bool {
	for _, k := range []string{kindCluster, kindLocal, kindExternal, kindShard} {
		if strings.HasPrefix(name, k) {
			return true
		}
	}
	return false
}

// modeChains are iptables mode's fixed chains.
var modeChains = map[string]bool{
	chainServices: true, chainNodePorts: true, chainPostrouting: true, chainHairpin: true,
	chainForward: true, chainExternalServices: true, chainFirewall: true, chainLocalnetGuard: true, CanaryChain: true,
}

// isModeChain reports whether iptables mode (rather than IPVS mode or the pod network) owns the chain.
func isModeChain(name string) bool { return modeChains[name] || isServiceChain(name) }

// maxCommentLen is the kernel's limit on an xt_comment, less the terminating NUL.
const maxCommentLen = 255

// sanitizeComment makes user-controlled text safe inside a double-quoted iptables-restore argument:
// only letters, digits and " ./:_-" survive, anything else becomes '_', and the result is cut to the
// kernel's comment limit. Kubernetes validation already restricts names, but this must not rely on it,
// because a quote or newline here would break the whole restore transaction for every service.
func sanitizeComment(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case strings.ContainsRune(" ./:_-", r):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= maxCommentLen {
			break
		}
	}
	out := b.String()
	if len(out) > maxCommentLen {
		out = out[:maxCommentLen]
	}
	return out
}
