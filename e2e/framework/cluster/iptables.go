package cluster

import (
	"fmt"

	"github.com/vishvananda/netns"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/model"
)

// SaveIptables returns iptables-save of every table of one family and variant inside the named
// network namespace (a node's, say), read through Switchyard's one iptables seam.
func SaveIptables(netnsName string, family model.IPFamily, variant utiliptables.Variant) ([]byte, error) {
	h, err := netns.GetFromName(netnsName)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", netnsName, err)
	}
	defer h.Close()
	ipt, err := utiliptables.NewExec(family, variant, utiliptables.InNamespace(h))
	if err != nil {
		return nil, err
	}
	out, err := ipt.SaveAll()
	if err != nil {
		return nil, fmt.Errorf("in %s: %w", netnsName, err)
	}
	return out, nil
}
