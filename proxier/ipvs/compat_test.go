package ipvs

import "github.com/switchyard/switchyard/proxier/conntrack"

// The daemon hands this backend the shared conntrack table; keep it fitting this package's seam.
var _ conntrack.Table = (*conntrack.Netlink)(nil)
