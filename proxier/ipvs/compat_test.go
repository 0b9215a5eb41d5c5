package ipvs

import "github.com/switchyard/switchyard/proxier/conntrack"

// The daemon hands this backend the shared conntrack deleter; keep it fitting this package's seam.
var _ conntrack.Deleter = (*conntrack.Netlink)(nil)
