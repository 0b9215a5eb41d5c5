package syncloop

import (
	"fmt"
	"sync"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// Reason says why the Runner is calling its function.
type Reason int

const (
	// ReasonFirst is the first run of a Loop.
	ReasonFirst Reason = iota
	// ReasonRequested is a run asked for with Run.
	ReasonRequested
	// ReasonPeriodic is the run that MaxInterval guarantees when nothing else asked for one.
	ReasonPeriodic
	// ReasonRetry is any run after a failed one (or one asked for with RetryAfter).
	ReasonRetry
)

func (r Reason) String() string {
	switch r {
	case ReasonFirst:
		return "first"
	case ReasonRequested:
		return "requested"
	case ReasonPeriodic:
		return "periodic"
	case ReasonRetry:
		return "retry"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// RunnerOptions configures a Runner. Intervals follow kube-proxy: for the proxy's sync loop
// MinInterval is --iptables-min-sync-period, MaxInterval is --iptables-sync-period (or the --ipvs-*
// pair); the pod network uses its resync period.
type RunnerOptions struct {
	Name        string        // for logs
	MinInterval time.Duration // runs start at least this far apart; 0 allows back-to-back runs
	MaxInterval time.Duration // a run starts at most this long after the previous one; must be > 0
	// RetryInitial is the first backoff after a failed run; it doubles with every further failure,
	// up to RetryMax. Defaults to 1s (or MaxInterval if that is shorter).
	RetryInitial time.Duration
	// RetryMax caps the backoff. Defaults to MaxInterval, and is never above it: a failed state is
	// retried at least as often as a healthy one is resynced.
	RetryMax time.Duration
	Clock    clock.Clock // defaults to the real clock
}

// Runner calls a function with kube-proxy's BoundedFrequencyRunner semantics: bursts of Run requests
// are coalesced into at most one run per MinInterval, a run happens at least once per MaxInterval, and
// after a failed run another is scheduled after a growing backoff. The function is only ever called
// from Loop's goroutine, so runs never overlap.
type Runner struct {
	opts RunnerOptions
	fn   func(Reason) error
	kick chan struct{} // wakes Loop after Run or RetryAfter; capacity 1, so requests coalesce

	mu        sync.Mutex
	ran       bool      // a run has started
	lastRun   time.Time // when the last run started
	requested bool      // Run was called since the last run started
	retryAt   time.Time // a run is wanted by then; zero when none is scheduled
	failed    bool      // the last run failed
	backoff   time.Duration
}

// NewRunner returns a Runner for fn. Start it with Loop.
func NewRunner(opts RunnerOptions, fn func(Reason) error) (*Runner, error) {
	if opts.MaxInterval <= 0 {
		return nil, fmt.Errorf("runner %q: max interval must be positive, got %v", opts.Name, opts.MaxInterval)
	}
	if opts.MinInterval < 0 || opts.MinInterval > opts.MaxInterval {
		return nil, fmt.Errorf("runner %q: min interval %v must be between 0 and the max interval %v",
			opts.Name, opts.MinInterval, opts.MaxInterval)
	}
	if opts.RetryMax <= 0 || opts.RetryMax > opts.MaxInterval {
		opts.RetryMax = opts.MaxInterval
	}
	if opts.RetryInitial <= 0 {
		opts.RetryInitial = min(time.Second, opts.RetryMax)
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Runner{opts: opts, fn: fn, kick: make(chan struct{}, 1)}, nil
}

// Run asks for a run as soon as MinInterval allows. It never blocks; many calls before the run
// starts give one run.
func (r *Runner) Run() {
	r.mu.Lock()
	r.requested = true
	r.mu.Unlock()
	r.wake()
}

// RetryAfter asks for a run no later than d from now (and no sooner than MinInterval allows) unless
// one happens before. The run is reported as ReasonRetry.
func (r *Runner) RetryAfter(d time.Duration) {
	r.mu.Lock()
	at := r.opts.Clock.Now().Add(d)
	if r.retryAt.IsZero() || at.Before(r.retryAt) {
		r.retryAt = at
	}
	r.failed = true
	r.mu.Unlock()
	r.wake()
}

func (r *Runner) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Loop runs fn as the rules above say until stop is closed. The first run happens right away.
func (r *Runner) Loop(stop <-chan struct{}) {
	klog.V(2).InfoS("Starting runner", "name", r.opts.Name, "minInterval", r.opts.MinInterval, "maxInterval", r.opts.MaxInterval)
	for {
		select {
		case <-stop:
			klog.V(2).InfoS("Stopping runner", "name", r.opts.Name)
			return
		default:
		}
		due := r.step()
		timer := r.opts.Clock.NewTimer(due.Sub(r.opts.Clock.Now()))
		select {
		case <-stop:
			timer.Stop()
			klog.V(2).InfoS("Stopping runner", "name", r.opts.Name)
			return
		case <-r.kick:
			timer.Stop()
		case <-timer.C():
		}
	}
}

// step performs every run that is due now and returns when the next one will be due.
func (r *Runner) step() time.Time {
	for {
		now := r.opts.Clock.Now()
		r.mu.Lock()
		reason, due := r.next()
		if due.After(now) {
			r.mu.Unlock()
			return due
		}
		// Requests made from here on (even by fn itself) are for the next run.
		r.ran, r.lastRun, r.requested, r.retryAt = true, now, false, time.Time{}
		r.mu.Unlock()

		err := r.fn(reason)

		r.mu.Lock()
		if err != nil {
			r.failed = true
			if r.backoff == 0 {
				r.backoff = min(r.opts.RetryInitial, r.opts.RetryMax)
			} else {
				r.backoff = min(2*r.backoff, r.opts.RetryMax)
			}
			at := r.opts.Clock.Now().Add(r.backoff)
			if r.retryAt.IsZero() || at.Before(r.retryAt) {
				r.retryAt = at
			}
			klog.ErrorS(err, "Run failed; will retry", "name", r.opts.Name, "reason", reason, "retryIn", r.backoff)
		} else {
			r.failed, r.backoff = false, 0
		}
		r.mu.Unlock()
	}
}

// next says why and when the next run is due. Callers hold r.mu.
func (r *Runner) next() (Reason, time.Time) {
	if !r.ran {
		return ReasonFirst, time.Time{}
	}
	earliest := r.lastRun.Add(r.opts.MinInterval)
	reason, due := ReasonPeriodic, r.lastRun.Add(r.opts.MaxInterval)
	if !r.retryAt.IsZero() {
		if at := latest(r.retryAt, earliest); at.Before(due) {
			reason, due = ReasonRetry, at
		}
	}
	if r.requested && !earliest.After(due) {
		reason, due = ReasonRequested, earliest
	}
	// After a failure nothing applied before can be trusted, whatever triggers the run.
	if r.failed {
		reason = ReasonRetry
	}
	return reason, due
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
