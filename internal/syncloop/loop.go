// Package syncloop runs the proxy's syncs. A Loop waits until the watcher's caches are complete, then
// hands one snapshot of the model at a time to every backend, at the frequency a Runner bounds. It
// decides which syncs are full, and after a successful sync it does what follows one: network
// programming latency, the /healthz timestamps and the service health check servers.
//
// cmd/switchyard only wires a Loop; podnet's controller uses the Runner alone.
//
// A sync is full (model.Snapshot.Full: the backend must not trust what it applied before) when it is
// the first, when it follows a failure, and when the last full sync is FullSyncPeriod old, as in
// kube-proxy's iptables mode. Every other sync, periodic or asked for by a change, is partial.
package syncloop

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/switchyard/switchyard/proxier/healthcheck"
	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"
	"github.com/switchyard/switchyard/watcher"
)

// FullSyncPeriod bounds how long partial syncs may go on trusting what was applied before: the
// first sync at least this long after the last full one is full (kube-proxy's iptables mode uses
// one hour too). Drift that a partial sync cannot see, such as a rule someone deleted by hand, is
// repaired by then.
const FullSyncPeriod = time.Hour

// Source is the model the loop syncs from; *watcher.Watcher is the real one.
type Source interface {
	// OnChange registers fn to be called, without blocking, whenever the model changes once the
	// caches have synced (and once when they first have).
	OnChange(fn func())
	// WaitForCacheSync blocks until the model is complete (true) or ctx ends (false).
	WaitForCacheSync(ctx context.Context) bool
	// Snapshot returns the current model with the changes since the previous call, and consumes
	// them; full is copied into the snapshot.
	Snapshot(full bool) (*model.Snapshot, watcher.SyncInfo)
}

var _ Source = (*watcher.Watcher)(nil)

// ServiceHealth serves the health check node ports of eTP=Local load balancers;
// *healthcheck.ServiceHealth is the real one.
type ServiceHealth interface {
	Sync(snap *model.Snapshot) error
}

var _ ServiceHealth = (*healthcheck.ServiceHealth)(nil)

// Config configures a Loop.
type Config struct {
	Name string // for logs: the proxy mode
	// MinSyncPeriod and SyncPeriod are kube-proxy's --iptables-min-sync-period and
	// --iptables-sync-period (or the --ipvs-* pair): syncs start at least MinSyncPeriod apart, and at
	// most SyncPeriod apart.
	MinSyncPeriod time.Duration
	SyncPeriod    time.Duration
	// FullSyncPeriod overrides the package's FullSyncPeriod (tests).
	FullSyncPeriod time.Duration

	Source Source
	// Backends each get every snapshot: one per IP family on a dual-stack node, as kube-proxy's
	// meta-proxier runs them. A failure of any makes the next sync a full one for all.
	Backends []model.Backend
	// Health records queued changes and successful syncs for /healthz; nil means none.
	Health *healthcheck.ProxyHealth
	// ServiceHealth is told the services after every successful sync; nil means none.
	ServiceHealth ServiceHealth
	Clock         clock.Clock // defaults to the real clock
}

// Loop is the proxy's sync loop. Build it with New, before the Source's informers start, and run it
// with Run.
type Loop struct {
	cfg    Config
	runner *Runner
	// lastFull is when the last successful full sync started. Only the runner's goroutine uses it.
	lastFull time.Time
	debug    *debugState
}

// New builds a Loop and registers it for the Source's changes.
func New(cfg Config) (*Loop, error) {
	if cfg.Source == nil {
		return nil, fmt.Errorf("sync loop %q: no source", cfg.Name)
	}
	if len(cfg.Backends) == 0 {
		return nil, fmt.Errorf("sync loop %q: no backend", cfg.Name)
	}
	if cfg.FullSyncPeriod <= 0 {
		cfg.FullSyncPeriod = FullSyncPeriod
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	l := &Loop{cfg: cfg, debug: newDebugState(cfg.Backends)}
	var err error
	l.runner, err = NewRunner(RunnerOptions{Name: cfg.Name, MinInterval: cfg.MinSyncPeriod, MaxInterval: cfg.SyncPeriod, Clock: cfg.Clock}, l.sync)
	if err != nil {
		return nil, err
	}
	// Two handlers rather than one that does both: the runner hears of a change straight from the
	// source, and the bookkeeping of queued changes stays off that path.
	cfg.Source.OnChange(l.queued)
	cfg.Source.OnChange(l.runner.Run)
	return l, nil
}

// Run waits for the Source's caches, then syncs until ctx ends. No sync happens before the caches
// are complete: a partial view would delete the rules of services not yet seen. While the API server
// is unreachable Run keeps waiting and the installed rules keep working; when ctx ends, they stay.
func (l *Loop) Run(ctx context.Context) {
	klog.InfoS("Waiting for the Service, EndpointSlice and Node caches to sync")
	if !l.cfg.Source.WaitForCacheSync(ctx) {
		klog.InfoS("Stopped before the caches synced; the installed rules are untouched")
		return
	}
	klog.InfoS("Caches synced; starting the sync loop")
	l.runner.Loop(ctx.Done())
	klog.InfoS("Stopping; the installed rules stay in place")
}

// queued records that a change waits for a sync (for /healthz and kube-proxy's last-queued metric,
// which each family's backend has).
// It is a Source change handler, so it must not block.
func (l *Loop) queued() {
	if l.cfg.Health != nil {
		l.cfg.Health.QueuedUpdate()
	}
	now := seconds(l.cfg.Clock.Now())
	for _, b := range l.cfg.Backends {
		metrics.SyncProxyRulesLastQueuedTimestamp.WithLabelValues(b.Family().String()).Set(now)
	}
}

// full decides whether a sync for reason, starting at now, is full.
func (l *Loop) full(reason Reason, now time.Time) bool {
	switch reason {
	case ReasonFirst, ReasonRetry:
		// Nothing applied before can be trusted: a previous process's rules, or a half-applied sync.
		return true
	}
	return !now.Before(l.lastFull.Add(l.cfg.FullSyncPeriod))
}

// sync is the Runner's function: one snapshot into every backend, then the side effects of success.
func (l *Loop) sync(reason Reason) error {
	start := l.cfg.Clock.Now()
	full := l.full(reason, start)
	snap, info := l.cfg.Source.Snapshot(full)
	if snap == nil {
		// Run starts the runner only once the caches have synced, so this is a bug; the retry is full.
		return errors.New("no snapshot: the caches have not synced")
	}
	l.debug.handed(snap, start)
	// Every backend gets the snapshot even when an earlier one failed: the families are independent,
	// and the retry that follows is full for all of them anyway.
	var errs []error
	for i, b := range l.cfg.Backends {
		err := b.Sync(snap)
		l.debug.synced(i, l.cfg.Clock.Now(), err)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		klog.ErrorS(err, "Sync failed; the previous rules stay in force and the next sync is full", "reason", reason)
		return err
	}
	if full {
		l.lastFull = start
	}
	programmed := l.cfg.Clock.Now()
	for _, b := range l.cfg.Backends {
		info.ObserveProgrammed(b.Family(), programmed)
	}
	if l.cfg.Health != nil {
		l.cfg.Health.Updated()
	}
	if l.cfg.ServiceHealth != nil {
		if err := l.cfg.ServiceHealth.Sync(snap); err != nil {
			// Not the rules' failure: the servers that could not start are retried on the next sync.
			klog.ErrorS(err, "Some service health check ports could not be served")
		}
	}
	klog.V(2).InfoS("Synced", "reason", reason, "full", snap.Full, "services", len(snap.Services), "changed", len(snap.Changed))
	return nil
}

func seconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
