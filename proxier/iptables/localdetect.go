package iptables

import (
	"fmt"
	"strings"

	"github.com/switchyard/switchyard/proxier/model"
)

// maxInterfaceName is the longest interface name iptables accepts (IFNAMSIZ less the NUL).
const maxInterfaceName = 15

// validate checks that at most one mode is selected and that an interface name can be written
// into a rule: iptables takes it as one word, and a trailing "+" as a wildcard.
func (d LocalDetector) validate() error {
	modes := 0
	for _, set := range []bool{d.UseNodeCIDR, d.BridgeInterface != "", d.InterfaceNamePrefix != ""} {
		if set {
			modes++
		}
	}
	if modes > 1 {
		return fmt.Errorf("iptables options: more than one local-traffic detector (%+v)", d)
	}
	if err := checkInterfaceName("bridge interface", d.BridgeInterface, maxInterfaceName); err != nil {
		return err
	}
	// The prefix becomes "<prefix>+".
	return checkInterfaceName("interface name prefix", d.InterfaceNamePrefix, maxInterfaceName-1)
}

func checkInterfaceName(what, name string, maxLen int) error {
	if len(name) > maxLen {
		return fmt.Errorf("iptables options: %s %q is longer than %d characters", what, name, maxLen)
	}
	if strings.ContainsAny(name, " \t\n\"'!") {
		return fmt.Errorf("iptables options: %s %q is not an interface name", what, name)
	}
	return nil
}

// localMatch is how one render's rules tell local traffic: by source address ("-s <CIDR>") or by
// input interface ("-i <name>", where "<prefix>+" matches every name that starts with the prefix).
// The zero value is no detector.
type localMatch struct{ flag, value string }

// localMatch is the detector's match for snap: in NodeCIDR mode, the node's pod CIDR of the family,
// which the snapshot carries (none until the node has one).
func (r *Renderer) localMatch(snap *model.Snapshot) localMatch {
	d := r.opts.LocalDetector
	switch {
	case d.BridgeInterface != "":
		return localMatch{"-i", d.BridgeInterface}
	case d.InterfaceNamePrefix != "":
		return localMatch{"-i", d.InterfaceNamePrefix + "+"}
	case d.UseNodeCIDR:
		for _, p := range snap.Node.PodCIDRs {
			if r.opts.Family.Of(p.Addr()) {
				return localMatch{"-s", p.Masked().String()}
			}
		}
		return localMatch{}
	case r.clusterCIDR.IsValid():
		return localMatch{"-s", r.clusterCIDR.String()}
	}
	return localMatch{}
}

func (m localMatch) ok() bool { return m.flag != "" }

// local matches local traffic.
func (m localMatch) local() []string { return []string{m.flag, m.value} }

// notLocalTo matches traffic that is not local, to the destination dst ("-d", address) and then
// rest. The match goes where iptables-save prints it, a source before the destination and an
// input interface after it, so that the rule reads back exactly as written.
func (m localMatch) notLocalTo(dst []string, rest ...string) []string {
	out := make([]string, 0, 3+len(dst)+len(rest))
	if m.flag == "-s" {
		out = append(append(out, "!", m.flag, m.value), dst...)
	} else {
		out = append(append(out, dst...), "!", m.flag, m.value)
	}
	return append(out, rest...)
}
