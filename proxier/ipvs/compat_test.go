package ipvs

import (
	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/iptables"
)

// The daemon hands this backend the iptables backend's real and fake types and the shared conntrack
// deleter; keep them fitting this package's seams.
var (
	_ Iptables          = (*iptables.Real)(nil)
	_ Iptables          = (*iptables.Fake)(nil)
	_ conntrack.Deleter = (*conntrack.Netlink)(nil)
)
