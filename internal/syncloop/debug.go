package syncloop

import (
	"slices"
	"sync"
	"time"

	"github.com/switchyard/switchyard/proxier/model"
)

// debugState is what /debug/model shows of the loop: the last snapshot handed to the backends and
// how each backend's last sync went. The runner's goroutine writes it, the debug handler reads it
// from another, hence the lock. The snapshot itself needs no copy: the watcher never changes a
// snapshot it has published (it clones the maps for the next one), and backends only read it.
type debugState struct {
	mu    sync.Mutex
	snap  *model.Snapshot
	syncs []model.DebugSync // one per backend, in Config.Backends order
}

func newDebugState(backends []model.Backend) *debugState {
	d := &debugState{syncs: make([]model.DebugSync, len(backends))}
	for i, b := range backends {
		d.syncs[i] = model.DebugSync{Family: b.Family(), IPFamily: b.Family().String()}
	}
	return d
}

// handed records the snapshot about to be handed to every backend at now. The model changed for
// them when the snapshot names changed services, or when it is the first. A change of the node's
// facts needs no check of its own: the watcher then names every service as changed.
func (d *debugState) handed(snap *model.Snapshot, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	changed := d.snap == nil || len(snap.Changed) > 0
	d.snap = snap
	if changed {
		for i := range d.syncs {
			d.syncs[i].ModelChangedAt = now
		}
	}
}

// synced records how backend i's sync, which ended at end, went.
func (d *debugState) synced(i int, end time.Time, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &d.syncs[i]
	s.LastAttempt, s.LastError = end, ""
	if err != nil {
		s.LastError = err.Error()
	} else {
		s.LastSuccess = end
	}
}

// DebugModel is the view /debug/model serves: the model as last handed to the backends (empty
// before the first sync) and each backend's sync facts. It may be called from any goroutine.
func (l *Loop) DebugModel() model.DebugModel {
	snap, syncs := l.DebugState()
	return model.NewDebugModel(snap, syncs)
}

// DebugState returns the snapshot last handed to the backends (nil before the first sync), which
// the caller must only read, and a copy of each backend's sync facts. It may be called from any
// goroutine.
func (l *Loop) DebugState() (*model.Snapshot, []model.DebugSync) {
	l.debug.mu.Lock()
	defer l.debug.mu.Unlock()
	return l.debug.snap, slices.Clone(l.debug.syncs)
}
