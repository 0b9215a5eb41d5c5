package syncloop

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/switchyard/switchyard/internal/metricstest"
	"github.com/switchyard/switchyard/internal/polltest"
	"github.com/switchyard/switchyard/proxier/healthcheck"
	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"
	"github.com/switchyard/switchyard/watcher"
)

// These tests run the loop's syncs with a fake clock. Most drive the runner's state machine (step)
// directly, so every sync happens at a chosen fake instant on the test's goroutine; the assertions are
// about what the fake backends hold afterwards.

// fakeSource is a model that changes when the test says so. Like the watcher, it names the services
// changed since the previous snapshot and forgets them once a snapshot has taken them.
type fakeSource struct {
	mu       sync.Mutex
	ports    map[model.ServicePortName]*model.ServicePort
	changed  map[model.ServiceKey]struct{}
	triggers []time.Time // EndpointSlice trigger times of the changes not yet taken
	handlers []func()
	synced   bool

	waiting chan struct{} // closed when WaitForCacheSync is entered
	ready   chan struct{} // WaitForCacheSync returns true once this is closed
}

var _ Source = (*fakeSource)(nil)

func newFakeSource() *fakeSource {
	return &fakeSource{
		ports:   map[model.ServicePortName]*model.ServicePort{},
		changed: map[model.ServiceKey]struct{}{},
		waiting: make(chan struct{}),
		ready:   make(chan struct{}),
	}
}

func (s *fakeSource) OnChange(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers = append(s.handlers, fn)
}

func (s *fakeSource) WaitForCacheSync(ctx context.Context) bool {
	close(s.waiting)
	select {
	case <-ctx.Done():
		return false
	case <-s.ready:
	}
	s.mu.Lock()
	s.synced = true
	s.mu.Unlock()
	return true
}

func (s *fakeSource) Snapshot(full bool) (*model.Snapshot, watcher.SyncInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := model.NewSnapshot()
	snap.Full = full
	maps.Copy(snap.Services, s.ports)
	snap.Changed, s.changed = s.changed, map[model.ServiceKey]struct{}{}
	info := watcher.SyncInfo{TriggerTimes: s.triggers}
	s.triggers = nil
	return snap, info
}

// setPort makes the service "ns/name" listen on port (0 deletes it) and tells the handlers.
func (s *fakeSource) setPort(name string, port int32) {
	key := model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "ns", Name: name}}
	s.mu.Lock()
	if port == 0 {
		delete(s.ports, key)
	} else {
		s.ports[key] = &model.ServicePort{Name: key, Protocol: model.TCP, Port: port}
	}
	s.changed[key.ServiceKey] = struct{}{}
	s.triggers = append(s.triggers, t0) // the EndpointSlice controller noticed the change at t0
	handlers := s.handlers
	s.mu.Unlock()
	for _, h := range handlers {
		h()
	}
}

// want is what a backend should hold for the source's current model.
func (s *fakeSource) want() map[model.ServicePortName]int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[model.ServicePortName]int32{}
	for n, p := range s.ports {
		out[n] = p.Port
	}
	return out
}

// fakeBackend programs service ports into a map the way an incremental backend does: a full sync
// replaces everything, a partial one rewrites only the services the snapshot names as changed. A
// partial sync after a failure would therefore leave it wrong for good, since the failed sync
// consumed the changes; only a full retry repairs it.
type fakeBackend struct {
	family     model.IPFamily
	mu         sync.Mutex
	programmed map[model.ServicePortName]int32
	full       int   // successful full syncs
	partial    int   // successful partial syncs
	fail       error // returned by every Sync while set; nothing is programmed then
}

var _ model.Backend = (*fakeBackend)(nil)

func newFakeBackend() *fakeBackend { return newFakeBackendOf(model.IPv4) }

func newFakeBackendOf(family model.IPFamily) *fakeBackend {
	return &fakeBackend{family: family, programmed: map[model.ServicePortName]int32{}}
}

func (b *fakeBackend) Family() model.IPFamily { return b.family }

func (b *fakeBackend) Sync(snap *model.Snapshot) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return b.fail
	}
	if snap.Full {
		b.full++
		clear(b.programmed)
		for n, p := range snap.Services {
			b.programmed[n] = p.Port
		}
		return nil
	}
	b.partial++
	for n := range b.programmed {
		if _, ok := snap.Changed[n.ServiceKey]; ok {
			delete(b.programmed, n)
		}
	}
	for n, p := range snap.Services {
		if _, ok := snap.Changed[n.ServiceKey]; ok {
			b.programmed[n] = p.Port
		}
	}
	return nil
}

type backendState struct {
	programmed    map[model.ServicePortName]int32
	full, partial int
}

func (b *fakeBackend) state() backendState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return backendState{programmed: maps.Clone(b.programmed), full: b.full, partial: b.partial}
}

func (b *fakeBackend) setFail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fail = err
}

// fakeServiceHealth keeps the services of the last snapshot it was given.
type fakeServiceHealth struct {
	mu       sync.Mutex
	services int
	synced   bool
}

func (f *fakeServiceHealth) Sync(snap *model.Snapshot) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.services, f.synced = len(snap.Services), true
	return nil
}

const (
	minSync  = 1 * time.Second
	syncEach = 30 * time.Second
	fullEach = 10 * time.Minute
)

type testLoop struct {
	*Loop
	clock    *clocktesting.FakeClock
	src      *fakeSource
	backends []*fakeBackend
	health   *healthcheck.ProxyHealth
	svcHC    *fakeServiceHealth
}

func newTestLoop(t *testing.T, backends int) *testLoop {
	t.Helper()
	tl := &testLoop{clock: clocktesting.NewFakeClock(t0), src: newFakeSource(), svcHC: &fakeServiceHealth{}}
	tl.health = healthcheck.NewProxyHealth(tl.clock, 2*syncEach)
	var bs []model.Backend
	for i := range backends {
		b := newFakeBackendOf([]model.IPFamily{model.IPv4, model.IPv6}[i]) // a dual-stack node's pair
		tl.backends = append(tl.backends, b)
		bs = append(bs, b)
	}
	l, err := New(Config{Name: "test", MinSyncPeriod: minSync, SyncPeriod: syncEach, FullSyncPeriod: fullEach,
		Source: tl.src, Backends: bs, Health: tl.health, ServiceHealth: tl.svcHC, Clock: tl.clock})
	if err != nil {
		t.Fatal(err)
	}
	tl.Loop = l
	return tl
}

// at moves the fake clock to t0+d and performs the syncs due then; it returns when the next is due.
func (tl *testLoop) at(d time.Duration) time.Duration {
	tl.clock.SetTime(t0.Add(d))
	return tl.runner.step().Sub(t0)
}

// checkBackends holds every backend to the source's model and to the counts of full and partial
// syncs it has taken.
func (tl *testLoop) checkBackends(t *testing.T, what string, full, partial int) {
	t.Helper()
	want := tl.src.want()
	for i, b := range tl.backends {
		got := b.state()
		if !maps.Equal(got.programmed, want) {
			t.Errorf("%s: backend %d holds %v, want %v", what, i, got.programmed, want)
		}
		if got.full != full || got.partial != partial {
			t.Errorf("%s: backend %d took %d full and %d partial syncs, want %d and %d", what, i, got.full, got.partial, full, partial)
		}
	}
}

func TestLoopFirstSyncWaitsForCaches(t *testing.T) {
	tl := newTestLoop(t, 1)
	tl.src.setPort("web", 80) // seen while the caches fill: before they are complete, nothing syncs
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tl.Run(ctx); close(done) }()

	<-tl.src.waiting
	// Run is inside WaitForCacheSync and cannot have synced: the runner only starts after it returns.
	tl.checkBackendsEmpty(t, "before the caches synced")

	close(tl.src.ready)
	polltest.Eventually(t, "the first sync", func() bool { return tl.backends[0].state().full == 1 })
	cancel()
	<-done
	tl.checkBackends(t, "after the caches synced", 1, 0)
}

func TestLoopStoppedBeforeCachesSyncNeverSyncs(t *testing.T) {
	tl := newTestLoop(t, 1)
	tl.src.setPort("web", 80)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tl.Run(ctx); close(done) }()
	<-tl.src.waiting
	cancel()
	<-done
	tl.checkBackendsEmpty(t, "after stopping before the caches synced")
	if got := tl.health.Status().LastUpdated; !got.IsZero() {
		t.Errorf("health records a sync at %v, want none", got)
	}
}

func (tl *testLoop) checkBackendsEmpty(t *testing.T, what string) {
	t.Helper()
	for i, b := range tl.backends {
		if got := b.state(); len(got.programmed) != 0 || got.full+got.partial != 0 {
			t.Errorf("%s: backend %d holds %v after %d syncs, want nothing", what, i, got.programmed, got.full+got.partial)
		}
	}
}

// TestLoopHonoursSyncPeriods: changes are coalesced into at most one sync per MinSyncPeriod, and a
// quiet model is still synced once per SyncPeriod; both kinds are partial.
func TestLoopHonoursSyncPeriods(t *testing.T) {
	tl := newTestLoop(t, 1)
	tl.src.setPort("web", 80)
	if next := tl.at(0); next != syncEach {
		t.Fatalf("after the first sync the next is due at %v, want %v", next, syncEach)
	}
	tl.checkBackends(t, "first sync", 1, 0)

	tl.src.setPort("web", 81)
	tl.src.setPort("db", 5432)
	if next := tl.at(minSync / 2); next != minSync {
		t.Errorf("changes right after a sync are due at %v, want %v", next, minSync)
	}
	tl.wantHolds(t, 0, "before MinSyncPeriod has passed", map[model.ServicePortName]int32{portName("web"): 80})
	tl.at(minSync)
	tl.checkBackends(t, "at MinSyncPeriod", 1, 1)

	if next := tl.at(minSync + syncEach - time.Millisecond); next != minSync+syncEach {
		t.Errorf("a quiet model's next sync is due at %v, want %v", next, minSync+syncEach)
	}
	tl.checkBackends(t, "just before SyncPeriod", 1, 1)
	tl.at(minSync + syncEach)
	tl.checkBackends(t, "the periodic sync", 1, 2)
}

func (tl *testLoop) wantHolds(t *testing.T, i int, what string, want map[model.ServicePortName]int32) {
	t.Helper()
	if got := tl.backends[i].state().programmed; !maps.Equal(got, want) {
		t.Errorf("%s: backend %d holds %v, want %v", what, i, got, want)
	}
}

// TestLoopRetryIsFull: the sync after a failure is full, so it programs the change the failed sync
// consumed; a partial retry would have nothing to say about it.
func TestLoopRetryIsFull(t *testing.T) {
	tl := newTestLoop(t, 1)
	tl.src.setPort("web", 80)
	tl.at(0)
	healthyAt := tl.health.Status().LastUpdated

	tl.backends[0].setFail(errors.New("injected failure"))
	tl.src.setPort("web", 81)
	tl.src.setPort("db", 5432)
	next := tl.at(10 * time.Second) // fails; the runner retries after its backoff
	tl.wantHolds(t, 0, "after the failed sync", map[model.ServicePortName]int32{portName("web"): 80})
	if got := tl.health.Status().LastUpdated; !got.Equal(healthyAt) {
		t.Errorf("a failed sync moved the health timestamp to %v", got)
	}

	tl.backends[0].setFail(nil)
	tl.at(next)
	tl.checkBackends(t, "after the retry", 2, 0)
	if got, want := tl.health.Status().LastUpdated, t0.Add(next); !got.Equal(want) {
		t.Errorf("health timestamp %v after the retry, want %v", got, want)
	}
	// Back to normal: the next change is partial again.
	tl.src.setPort("db", 0)
	tl.at(next + minSync)
	tl.checkBackends(t, "after recovery", 2, 1)
}

// TestLoopPeriodicFullResync: the first sync at least FullSyncPeriod after the last full one is full;
// every other periodic or requested sync is partial.
func TestLoopPeriodicFullResync(t *testing.T) {
	tl := newTestLoop(t, 1)
	tl.src.setPort("web", 80)
	tl.at(0)
	periodic := 0
	for at := syncEach; at < fullEach; at += syncEach {
		tl.at(at)
		periodic++
	}
	tl.src.setPort("web", 81) // a requested sync within the period is partial too
	tl.at(fullEach - syncEach + minSync)
	tl.checkBackends(t, "within FullSyncPeriod", 1, periodic+1)

	// The runner's next periodic sync falls at fullEach+minSync-syncEach+syncEach: past the period.
	tl.at(fullEach + minSync)
	tl.checkBackends(t, "at the first sync past FullSyncPeriod", 2, periodic+1)

	// The period restarts from that full sync.
	tl.at(fullEach + minSync + syncEach)
	tl.checkBackends(t, "after the periodic full resync", 2, periodic+2)
	partial := periodic + 2
	for at := fullEach + minSync + 2*syncEach; at < 2*fullEach+minSync; at += syncEach {
		tl.at(at)
		partial++
	}
	tl.checkBackends(t, "just before the second FullSyncPeriod has passed", 2, partial)
	tl.at(2*fullEach + minSync)
	tl.checkBackends(t, "one FullSyncPeriod after the last full sync", 3, partial)
}

// TestLoopFanOut: every backend gets every snapshot; one failing makes the retry full for all, so the
// backend that succeeded alone also takes a full sync.
func TestLoopFanOut(t *testing.T) {
	tl := newTestLoop(t, 2)
	tl.src.setPort("web", 80)
	tl.at(0)
	tl.checkBackends(t, "first sync", 1, 0)
	tl.src.setPort("db", 5432)
	tl.at(minSync)
	tl.checkBackends(t, "a change", 1, 1)

	tl.backends[1].setFail(errors.New("injected failure"))
	tl.src.setPort("web", 81)
	next := tl.at(2 * minSync)
	both := map[model.ServicePortName]int32{portName("web"): 81, portName("db"): 5432}
	tl.wantHolds(t, 0, "the backend that succeeded", both)
	tl.wantHolds(t, 1, "the backend that failed", map[model.ServicePortName]int32{portName("web"): 80, portName("db"): 5432})

	tl.backends[1].setFail(nil)
	tl.at(next)
	// backend 0: first, retry full; partial: the change and the failed-elsewhere sync.
	if got := tl.backends[0].state(); got.full != 2 || got.partial != 2 || !maps.Equal(got.programmed, both) {
		t.Errorf("backend 0 after the retry: %+v, want both services after 2 full and 2 partial syncs", got)
	}
	if got := tl.backends[1].state(); got.full != 2 || got.partial != 1 || !maps.Equal(got.programmed, both) {
		t.Errorf("backend 1 after the retry: %+v, want both services after 2 full and 1 partial syncs", got)
	}
}

// TestLoopSideEffects: a change marks /healthz pending; a successful sync clears it, dates it with
// the loop's clock, observes the changes' programming latency on that clock and hands the snapshot
// to the service health servers.
func TestLoopSideEffects(t *testing.T) {
	tl := newTestLoop(t, 1)
	tl.at(0)
	before := metricstest.Histogram(t, metrics.NetworkProgrammingLatency.WithLabelValues("IPv4"))
	tl.src.setPort("web", 80)
	tl.src.setPort("db", 5432)
	if got := metricstest.Value(t, metrics.SyncProxyRulesLastQueuedTimestamp.WithLabelValues("IPv4")); got != seconds(t0) {
		t.Errorf("last-queued timestamp %v, want the fake clock's %v", got, seconds(t0))
	}
	tl.clock.SetTime(t0.Add(3 * syncEach)) // the change waits longer than the health timeout
	if tl.health.IsHealthy() {
		t.Error("healthy with a change queued for longer than the timeout")
	}
	tl.at(3 * syncEach)
	if !tl.health.IsHealthy() || !tl.health.Status().LastUpdated.Equal(t0.Add(3*syncEach)) {
		t.Errorf("after the sync: %+v, want healthy and updated at %v", tl.health.Status(), t0.Add(3*syncEach))
	}
	after := metricstest.Histogram(t, metrics.NetworkProgrammingLatency.WithLabelValues("IPv4"))
	if n, sum := after.GetSampleCount()-before.GetSampleCount(), after.GetSampleSum()-before.GetSampleSum(); n != 2 || sum != 2*(3*syncEach).Seconds() {
		t.Errorf("programming latency: %d samples summing to %vs, want 2 of %v", n, sum, 3*syncEach)
	}
	if !tl.svcHC.synced || tl.svcHC.services != 2 {
		t.Errorf("service health servers saw %d services (synced %v), want 2", tl.svcHC.services, tl.svcHC.synced)
	}
}

// TestLoopMetricsPerFamily: on a dual-stack node each family's backend has its own last-queued
// timestamp and programming latency, as each of kube-proxy's per-family proxiers does.
func TestLoopMetricsPerFamily(t *testing.T) {
	tl := newTestLoop(t, 2)
	tl.at(0)
	before := map[string]uint64{}
	for _, family := range []string{"IPv4", "IPv6"} {
		before[family] = metricstest.Histogram(t, metrics.NetworkProgrammingLatency.WithLabelValues(family)).GetSampleCount()
	}
	tl.clock.SetTime(t0.Add(syncEach))
	tl.src.setPort("web", 80)
	tl.at(2 * syncEach)
	for _, family := range []string{"IPv4", "IPv6"} {
		if got := metricstest.Value(t, metrics.SyncProxyRulesLastQueuedTimestamp.WithLabelValues(family)); got != seconds(t0.Add(syncEach)) {
			t.Errorf("%s last-queued timestamp %v, want %v", family, got, seconds(t0.Add(syncEach)))
		}
		if n := metricstest.Histogram(t, metrics.NetworkProgrammingLatency.WithLabelValues(family)).GetSampleCount() - before[family]; n != 1 {
			t.Errorf("%s programming latency: %d samples, want 1", family, n)
		}
	}
}

func TestNewValidates(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no source":   {SyncPeriod: time.Second, Backends: []model.Backend{newFakeBackend()}},
		"no backends": {SyncPeriod: time.Second, Source: newFakeSource()},
		"no period":   {Source: newFakeSource(), Backends: []model.Backend{newFakeBackend()}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func portName(name string) model.ServicePortName {
	return model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "ns", Name: name}}
}
