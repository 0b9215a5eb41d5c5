package syncloop

import (
	"errors"
	"slices"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/switchyard/switchyard/internal/polltest"
)

// These tests drive the runner's state machine (step) directly with a fake clock: every assertion is
// about which runs happen at which fake instant, never about real time.

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	minI = 1 * time.Second
	maxI = 30 * time.Second
)

type recorder struct {
	clock   *clocktesting.FakeClock
	runs    []Reason
	at      []time.Duration // fake time of each run, relative to t0
	failFor int             // fail this many runs from now
}

func (r *recorder) fn(reason Reason) error {
	r.runs = append(r.runs, reason)
	r.at = append(r.at, r.clock.Now().Sub(t0))
	if r.failFor > 0 {
		r.failFor--
		return errors.New("injected failure")
	}
	return nil
}

func newTestRunner(t *testing.T, opts RunnerOptions) (*Runner, *recorder) {
	t.Helper()
	rec := &recorder{clock: clocktesting.NewFakeClock(t0)}
	opts.Clock = rec.clock
	if opts.MinInterval == 0 {
		opts.MinInterval = minI
	}
	if opts.MaxInterval == 0 {
		opts.MaxInterval = maxI
	}
	r, err := NewRunner(opts, rec.fn)
	if err != nil {
		t.Fatal(err)
	}
	return r, rec
}

// advance moves the fake clock to t0+d and performs what is due; it returns when the next run is due.
func advance(r *Runner, rec *recorder, d time.Duration) time.Duration {
	rec.clock.SetTime(t0.Add(d))
	return r.step().Sub(t0)
}

func TestRunnerFirstRunAndBurstCoalescing(t *testing.T) {
	r, rec := newTestRunner(t, RunnerOptions{})
	if next := advance(r, rec, 0); next != maxI {
		t.Errorf("after the first run the next is due at %v, want %v", next, maxI)
	}
	for i := 0; i < 5; i++ {
		r.Run()
	}
	if next := advance(r, rec, 100*time.Millisecond); next != minI {
		t.Errorf("a burst right after a run is due at %v, want %v", next, minI)
	}
	if len(rec.runs) != 1 {
		t.Fatalf("runs = %v, want only the first before minInterval", rec.runs)
	}
	advance(r, rec, minI)
	want := []Reason{ReasonFirst, ReasonRequested}
	if !slices.Equal(rec.runs, want) || rec.at[1] != minI {
		t.Errorf("runs = %v at %v, want %v with the second at %v", rec.runs, rec.at, want, minI)
	}
	// A request long after the last run runs at once.
	r.Run()
	advance(r, rec, 10*time.Second)
	if len(rec.runs) != 3 || rec.at[2] != 10*time.Second || rec.runs[2] != ReasonRequested {
		t.Errorf("runs = %v at %v", rec.runs, rec.at)
	}
}

func TestRunnerPeriodic(t *testing.T) {
	r, rec := newTestRunner(t, RunnerOptions{})
	advance(r, rec, 0)
	if next := advance(r, rec, maxI-time.Millisecond); next != maxI || len(rec.runs) != 1 {
		t.Fatalf("ran %v before maxInterval; next due %v", rec.runs, next)
	}
	advance(r, rec, maxI)
	advance(r, rec, 2*maxI)
	want := []Reason{ReasonFirst, ReasonPeriodic, ReasonPeriodic}
	if !slices.Equal(rec.runs, want) {
		t.Errorf("runs = %v, want %v", rec.runs, want)
	}
}

func TestRunnerRetryBackoff(t *testing.T) {
	r, rec := newTestRunner(t, RunnerOptions{RetryInitial: 2 * time.Second})
	rec.failFor = 3
	advance(r, rec, 0) // first run fails
	next := advance(r, rec, time.Second)
	if next != 2*time.Second || len(rec.runs) != 1 {
		t.Fatalf("retry due at %v (runs %v), want 2s", next, rec.runs)
	}
	next = advance(r, rec, 2*time.Second) // second failure: backoff doubles
	if next != 6*time.Second {
		t.Errorf("second retry due at %v, want 6s", next)
	}
	next = advance(r, rec, 6*time.Second) // third failure
	if next != 14*time.Second {
		t.Errorf("third retry due at %v, want 14s", next)
	}
	advance(r, rec, 14*time.Second) // succeeds
	want := []Reason{ReasonFirst, ReasonRetry, ReasonRetry, ReasonRetry}
	if !slices.Equal(rec.runs, want) {
		t.Errorf("runs = %v, want %v", rec.runs, want)
	}
	// After success, requests are plain again and the backoff is reset.
	r.Run()
	advance(r, rec, 20*time.Second)
	if rec.runs[len(rec.runs)-1] != ReasonRequested {
		t.Errorf("run after recovery = %v, want requested", rec.runs[len(rec.runs)-1])
	}
	rec.failFor = 1
	r.Run()
	if next := advance(r, rec, 25*time.Second); next != 27*time.Second {
		t.Errorf("backoff not reset: next retry at %v, want 27s", next)
	}
}

func TestRunnerBackoffCapped(t *testing.T) {
	for name, tc := range map[string]struct {
		opts RunnerOptions
		want []time.Duration
	}{
		"at MaxInterval": {RunnerOptions{RetryInitial: 20 * time.Second}, []time.Duration{20 * time.Second, maxI, maxI, maxI}},
		"at RetryMax": {RunnerOptions{RetryInitial: 4 * time.Second, RetryMax: 10 * time.Second},
			[]time.Duration{4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}},
	} {
		r, rec := newTestRunner(t, tc.opts)
		rec.failFor = 100
		advance(r, rec, 0)
		var now time.Duration
		var gaps []time.Duration
		for i := 0; i < 4; i++ {
			next := r.step().Sub(t0)
			gaps = append(gaps, next-now)
			advance(r, rec, next)
			now = next
		}
		if !slices.Equal(gaps, tc.want) {
			t.Errorf("%s: retry gaps = %v, want %v", name, gaps, tc.want)
		}
	}
}

func TestRunnerRequestDuringFailureIsARetry(t *testing.T) {
	r, rec := newTestRunner(t, RunnerOptions{RetryInitial: 10 * time.Second})
	rec.failFor = 1
	advance(r, rec, 0)
	r.Run() // asks sooner than the retry
	advance(r, rec, minI)
	if len(rec.runs) != 2 || rec.runs[1] != ReasonRetry || rec.at[1] != minI {
		t.Errorf("runs = %v at %v, want a retry at %v: the failed state is not trusted", rec.runs, rec.at, minI)
	}
}

func TestRunnerRetryAfterRespectsMinInterval(t *testing.T) {
	r, rec := newTestRunner(t, RunnerOptions{})
	advance(r, rec, 0)
	r.RetryAfter(0)
	if next := advance(r, rec, 0); next != minI {
		t.Errorf("RetryAfter(0) right after a run due at %v, want %v", next, minI)
	}
	advance(r, rec, minI)
	if len(rec.runs) != 2 || rec.runs[1] != ReasonRetry {
		t.Errorf("runs = %v", rec.runs)
	}
}

// TestRunnerRequestDuringRun: a Run during fn asks for another run, which MinInterval then spaces.
func TestRunnerRequestDuringRun(t *testing.T) {
	var r *Runner
	rec := &recorder{clock: clocktesting.NewFakeClock(t0)}
	calls := 0
	r, err := NewRunner(RunnerOptions{MinInterval: minI, MaxInterval: maxI, Clock: rec.clock}, func(reason Reason) error {
		calls++
		if calls == 1 {
			r.Run()
		}
		return rec.fn(reason)
	})
	if err != nil {
		t.Fatal(err)
	}
	if next := advance(r, rec, 0); next != minI {
		t.Errorf("request made during the run is due at %v, want %v", next, minI)
	}
}

func TestRunnerOptionsValidated(t *testing.T) {
	for _, o := range []RunnerOptions{
		{MaxInterval: 0},
		{MinInterval: -time.Second, MaxInterval: time.Second},
		{MinInterval: time.Minute, MaxInterval: time.Second},
	} {
		if _, err := NewRunner(o, func(Reason) error { return nil }); err == nil {
			t.Errorf("NewRunner(%+v) accepted bad options", o)
		}
	}
}

// TestRunnerLoop checks the goroutine around step: it runs at once, wakes on Run, wakes on the timer,
// and stops. Each wait is for an event that must happen; the fake clock decides when.
func TestRunnerLoop(t *testing.T) {
	clock := clocktesting.NewFakeClock(t0)
	runs := make(chan Reason, 10)
	r, err := NewRunner(RunnerOptions{MinInterval: minI, MaxInterval: maxI, Clock: clock}, func(reason Reason) error {
		runs <- reason
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { r.Loop(stop); close(done) }()

	if got := <-runs; got != ReasonFirst {
		t.Fatalf("first run reason %v", got)
	}
	clock.Step(2 * minI)
	r.Run()
	if got := <-runs; got != ReasonRequested {
		t.Fatalf("run after Run() reason %v", got)
	}
	// Wait until the loop sleeps on its periodic timer, then fire it.
	waitForTimer(t, clock)
	clock.Step(maxI)
	if got := <-runs; got != ReasonPeriodic {
		t.Fatalf("timer run reason %v", got)
	}
	close(stop)
	<-done
}

func waitForTimer(t *testing.T, clock *clocktesting.FakeClock) {
	t.Helper()
	polltest.Eventually(t, "runner waiting on its timer", clock.HasWaiters)
}
