package syncloop

import (
	"errors"
	"testing"

	"github.com/switchyard/switchyard/proxier/model"
)

// TestLoopDebugFacts: the loop records, per backend, when its last sync ended, the last that
// succeeded, the last error, and when the model handed to it last changed; and keeps the last
// snapshot for /debug/model. A quiet resync does not move ModelChangedAt, so after a failure the
// view says the rules are older than the model until a sync succeeds.
func TestLoopDebugFacts(t *testing.T) {
	tl := newTestLoop(t, 2)
	if snap, syncs := tl.DebugState(); snap != nil || len(syncs) != 2 || !syncs[0].LastAttempt.IsZero() {
		t.Fatalf("before any sync: snapshot %v, syncs %+v; want none and two empty entries", snap, syncs)
	}

	tl.src.setPort("web", 80)
	tl.at(0)
	for _, s := range tl.syncFacts(t) {
		if !s.LastAttempt.Equal(t0) || !s.LastSuccess.Equal(t0) || !s.ModelChangedAt.Equal(t0) || s.LastError != "" {
			t.Errorf("after the first sync: %+v, want attempt, success and model change at t0", s)
		}
	}

	tl.backends[1].setFail(errors.New("iptables-restore: boom"))
	tl.src.setPort("db", 5432)
	next := tl.at(minSync)
	t1 := t0.Add(minSync)
	got := tl.syncFacts(t)
	if s := got[0]; !s.LastSuccess.Equal(t1) || !s.ModelChangedAt.Equal(t1) || s.LastError != "" {
		t.Errorf("IPv4 after its second sync: %+v, want success and model change at t0+%v", s, minSync)
	}
	if s := got[1]; !s.LastAttempt.Equal(t1) || !s.LastSuccess.Equal(t0) || !s.ModelChangedAt.Equal(t1) || s.LastError != "iptables-restore: boom" {
		t.Errorf("IPv6 after its failed sync: %+v, want attempt at t0+%v, success still t0, the error", s, minSync)
	}
	dm := tl.DebugModel()
	if len(dm.Services) != 2 || dm.Services[0].Name != "db" || dm.Services[1].Name != "web" {
		t.Errorf("/debug/model services = %+v, want db and web", dm.Services)
	}
	if len(dm.Syncs) != 2 || dm.Syncs[1].IPFamily != "IPv6" || dm.Syncs[1].LastError == "" {
		t.Errorf("/debug/model syncs = %+v", dm.Syncs)
	}

	// The retry takes no new change: the model stays as changed at t1, and the rules catch up.
	tl.backends[1].setFail(nil)
	tl.at(next)
	retried := t0.Add(next)
	if s := tl.syncFacts(t)[1]; !s.LastSuccess.Equal(retried) || !s.ModelChangedAt.Equal(t1) || s.LastError != "" {
		t.Errorf("IPv6 after the retry: %+v, want success at t0+%v, model change still t0+%v, no error", s, next, minSync)
	}
}

func (tl *testLoop) syncFacts(t *testing.T) []model.DebugSync {
	t.Helper()
	_, syncs := tl.DebugState()
	if len(syncs) != len(tl.backends) {
		t.Fatalf("%d sync entries for %d backends", len(syncs), len(tl.backends))
	}
	return syncs
}
