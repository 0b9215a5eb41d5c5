package main

import (
	"context"
	"net/netip"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// podCIDRsTimeout is how long kube-proxy waits at start-up for its Node to have spec.podCIDRs when
// --detect-local-mode=NodeCIDR (its NodeManager's five minutes).
const podCIDRsTimeout = 5 * time.Minute

// resolveIPVSNodeCIDR reads, once, this node's IPv4 pod CIDR for --detect-local-mode=NodeCIDR in
// IPVS mode. IPVS mode's rules are written from its options alone, so the CIDR must be known before
// the backend is built; iptables mode reads the pod CIDR from every snapshot instead and needs
// nothing here. Like kube-proxy, it waits up to timeout for the Node to have a pod CIDR, and
// without one goes on with no local-traffic detector (ClusterIP traffic is then not masqueraded
// unless --masquerade-all). spec.podCIDRs cannot change once set, so one read is enough.
func resolveIPVSNodeCIDR(ctx context.Context, o *Options, client kubernetes.Interface, nodeName string, poll, timeout time.Duration) {
	if o.ProxyMode != "ipvs" || o.DetectLocalMode != "NodeCIDR" {
		return
	}
	lastErr := waitForNode(ctx, client, nodeName, poll, timeout, func(node *v1.Node) bool {
		o.nodePodCIDR = podCIDRv4(node)
		return o.nodePodCIDR.IsValid()
	})
	if !o.nodePodCIDR.IsValid() {
		klog.InfoS("WARNING: --detect-local-mode=NodeCIDR, but this node has no IPv4 pod CIDR in spec.podCIDRs; no traffic is taken for pod traffic",
			"node", nodeName, "waited", timeout, "err", lastErr)
		return
	}
	klog.InfoS("--detect-local-mode=NodeCIDR: pod traffic is traffic from the node's pod CIDR", "node", nodeName, "podCIDR", o.nodePodCIDR)
}

// podCIDRv4 is the node's IPv4 pod CIDR, if it has one (invalid otherwise).
func podCIDRv4(node *v1.Node) netip.Prefix {
	if node == nil {
		return netip.Prefix{}
	}
	for _, s := range node.Spec.PodCIDRs {
		if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
			return p.Masked()
		}
	}
	return netip.Prefix{}
}
