package podnet

import (
	"fmt"
	"net"

	v1 "k8s.io/api/core/v1"

	"github.com/switchyard/switchyard/podnet/vxlan"
)

// Node annotations Switchyard publishes for its peers. The README explains each.
const (
	// AnnotationVTEPMAC is the MAC address of the node's VXLAN device.
	AnnotationVTEPMAC = "switchyard.io/vtep-mac"
	// AnnotationPublicIP is the underlay address peers send the node's VXLAN packets to.
	AnnotationPublicIP = "switchyard.io/public-ip"
)

// nodePodCIDR returns the node's IPv4 pod CIDR from spec.podCIDRs (or the older spec.podCIDR).
func nodePodCIDR(node *v1.Node) (*net.IPNet, error) {
	cidrs := node.Spec.PodCIDRs
	if len(cidrs) == 0 && node.Spec.PodCIDR != "" {
		cidrs = []string{node.Spec.PodCIDR}
	}
	for _, c := range cidrs {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return nil, fmt.Errorf("node %s: podCIDR %q: %w", node.Name, c, err)
		}
		if n.IP.To4() != nil {
			return n, nil
		}
	}
	return nil, nil
}

// nodeInternalIP returns the node's first IPv4 InternalIP, or nil.
func nodeInternalIP(node *v1.Node) net.IP {
	for _, a := range node.Status.Addresses {
		if a.Type == v1.NodeInternalIP {
			if ip := net.ParseIP(a.Address).To4(); ip != nil {
				return ip
			}
		}
	}
	return nil
}

// PeersFromNodes turns the node list into overlay peers. Nodes without a pod CIDR or without
// Switchyard's annotations (not running Switchyard yet) are left out silently; nodes whose values
// do not parse are left out and reported, so that one bad node never blocks the others.
func PeersFromNodes(nodes []*v1.Node, self string) (peers []vxlan.Peer, problems []string) {
	for _, n := range nodes {
		if n.Name == self || n.DeletionTimestamp != nil {
			continue
		}
		cidr, err := nodePodCIDR(n)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		macText, hasMAC := n.Annotations[AnnotationVTEPMAC]
		ipText, hasIP := n.Annotations[AnnotationPublicIP]
		if cidr == nil || !hasMAC || !hasIP {
			continue
		}
		mac, err := net.ParseMAC(macText)
		if err != nil {
			problems = append(problems, fmt.Sprintf("node %s: annotation %s=%q: %v", n.Name, AnnotationVTEPMAC, macText, err))
			continue
		}
		ip := net.ParseIP(ipText)
		if ip == nil {
			problems = append(problems, fmt.Sprintf("node %s: annotation %s=%q is not an IP address", n.Name, AnnotationPublicIP, ipText))
			continue
		}
		peers = append(peers, vxlan.Peer{Name: n.Name, PodCIDR: cidr, VTEPMAC: mac, PublicIP: ip})
	}
	return peers, problems
}

// overlayRelevantChange reports whether an update of a node can change the overlay, so that the
// frequent status-only updates of large clusters do not each cost a reconcile.
func overlayRelevantChange(old, cur *v1.Node) bool {
	if old.Annotations[AnnotationVTEPMAC] != cur.Annotations[AnnotationVTEPMAC] ||
		old.Annotations[AnnotationPublicIP] != cur.Annotations[AnnotationPublicIP] ||
		old.Spec.PodCIDR != cur.Spec.PodCIDR || len(old.Spec.PodCIDRs) != len(cur.Spec.PodCIDRs) ||
		(old.DeletionTimestamp == nil) != (cur.DeletionTimestamp == nil) {
		return true
	}
	for i := range old.Spec.PodCIDRs {
		if old.Spec.PodCIDRs[i] != cur.Spec.PodCIDRs[i] {
			return true
		}
	}
	return !nodeInternalIP(old).Equal(nodeInternalIP(cur))
}
