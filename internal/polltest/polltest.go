// Package polltest waits in tests for something another goroutine does (an informer catching up
// with a fake API server, a sync loop reacting to a change).
package polltest

import (
	"testing"
	"time"
)

// Timeout bounds every wait. It only guards against a hang: no assertion depends on how fast
// anything happens, so it is generous for a loaded CI machine.
const Timeout = 30 * time.Second

// Eventually polls cond until it holds, and fails the test, naming what it waited for, if it does
// not hold within Timeout.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
