// Package masq owns the pod network's iptables rules in the node's network namespace: masquerading of
// pod egress that leaves the cluster CIDR (never pod-to-pod traffic), and FORWARD acceptance of pod
// traffic for nodes whose FORWARD policy is DROP. The rules live in Switchyard's own chains, which one
// `iptables-restore --noflush` call rewrites atomically; only the jumps into them are added to the
// built-in chains.
package masq

import (
	"bytes"
	"fmt"
	"net"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
)

// Chain names, derived here only.
const (
	MasqChain    = "SY-POD-MASQ"
	ForwardChain = "SY-POD-FORWARD"
)

// Jump is a rule in a built-in chain that enters one of ours.
type Jump struct {
	Table, Chain, Target string
	// Position says whether the jump goes first or last in Chain.
	Position utiliptables.Position
}

// Jumps are the rules Switchyard adds to built-in chains. Both are appended, as flannel does: the
// service proxy's jumps must come first, because its filter chains REJECT or DROP traffic to
// services without (local) endpoints, and the pod network's FORWARD chain ACCEPTs all pod traffic.
// Were it first, a pod's packet to such a service would be forwarded out instead of refused.
var Jumps = []Jump{
	{Table: "nat", Chain: "POSTROUTING", Target: MasqChain, Position: utiliptables.Append},
	{Table: "filter", Chain: "FORWARD", Target: ForwardChain, Position: utiliptables.Append},
}

// JumpRule is the rule spec (after "-A CHAIN") of a jump; the comment makes it recognisable.
func JumpRule(j Jump) []string {
	return []string{"-m", "comment", "--comment", "switchyard pod network", "-j", j.Target}
}

// Render returns iptables-restore input for the pod network's chains. With masquerade off, the
// masquerade chain is declared empty, which also removes rules an earlier run left.
func Render(clusterCIDR *net.IPNet, masquerade bool) ([]byte, error) {
	if clusterCIDR == nil || clusterCIDR.IP.To4() == nil {
		return nil, fmt.Errorf("cluster CIDR %v is not IPv4", clusterCIDR)
	}
	c := (&net.IPNet{IP: clusterCIDR.IP.Mask(clusterCIDR.Mask), Mask: clusterCIDR.Mask}).String()
	var b bytes.Buffer
	fmt.Fprintf(&b, "*nat\n:%s - [0:0]\n", MasqChain)
	if masquerade {
		fmt.Fprintf(&b, "-A %s -s %s -d %s -m comment --comment \"pod to pod keeps its source\" -j RETURN\n", MasqChain, c, c)
		fmt.Fprintf(&b, "-A %s -s %s -d 224.0.0.0/4 -m comment --comment \"multicast is not routed out\" -j RETURN\n", MasqChain, c)
		fmt.Fprintf(&b, "-A %s -s %s -m comment --comment \"pod egress leaving the cluster\" -j MASQUERADE --random-fully\n", MasqChain, c)
	}
	b.WriteString("COMMIT\n")
	fmt.Fprintf(&b, "*filter\n:%s - [0:0]\n", ForwardChain)
	fmt.Fprintf(&b, "-A %s -s %s -m comment --comment \"from pods\" -j ACCEPT\n", ForwardChain, c)
	fmt.Fprintf(&b, "-A %s -d %s -m comment --comment \"to pods\" -j ACCEPT\n", ForwardChain, c)
	b.WriteString("COMMIT\n")
	return b.Bytes(), nil
}

// Sync renders the rules and applies them through ipt, the node's iptables of the variant the proxy
// programs: chains first, then the jumps into them.
func Sync(ipt utiliptables.Interface, clusterCIDR *net.IPNet, masquerade bool) error {
	data, err := Render(clusterCIDR, masquerade)
	if err != nil {
		return err
	}
	if err := ipt.Restore(data); err != nil {
		return fmt.Errorf("restore pod network chains: %w", err)
	}
	for _, j := range Jumps {
		if err := ipt.EnsureRule(j.Position, j.Table, j.Chain, JumpRule(j)...); err != nil {
			return fmt.Errorf("jump from %s/%s to %s: %w", j.Table, j.Chain, j.Target, err)
		}
	}
	return nil
}
