// Package conntracktest holds the stateful fake of the conntrack table that proxier/conntrack's
// Table seam is tested against.
package conntracktest

import (
	"errors"
	"slices"

	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/model"
)

// ErrInjected is the error of a delete that FailDeletes made fail.
var ErrInjected = errors.New("conntracktest: injected delete failure")

// Fake is a conntrack table in memory. Like the kernel's it holds both families; each call sees
// only the entries of its family (by original destination).
type Fake struct {
	Flows []conntrack.Flow
	// FailDeletes makes that many next calls to Delete fail, deleting nothing, as a netlink error
	// would.
	FailDeletes int
}

var _ conntrack.Table = (*Fake)(nil)

func (f *Fake) List(family model.IPFamily) ([]conntrack.Flow, error) {
	var out []conntrack.Flow
	for _, fl := range f.Flows {
		if family.Of(fl.OrigDst.Addr()) {
			out = append(out, fl)
		}
	}
	return out, nil
}

func (f *Fake) Delete(family model.IPFamily, flows []conntrack.Flow) (int, error) {
	if len(flows) == 0 {
		return 0, nil
	}
	if f.FailDeletes > 0 {
		f.FailDeletes--
		return 0, ErrInjected
	}
	del := make(map[conntrack.Flow]struct{}, len(flows))
	for _, fl := range flows {
		del[fl] = struct{}{}
	}
	before := len(f.Flows)
	f.Flows = slices.DeleteFunc(f.Flows, func(fl conntrack.Flow) bool {
		_, ok := del[fl]
		return ok && family.Of(fl.OrigDst.Addr())
	})
	return before - len(f.Flows), nil
}
