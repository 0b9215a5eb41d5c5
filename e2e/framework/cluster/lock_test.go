package cluster

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
)

// The harness's lock must be the flock the scripts take (hack/lib/common.sh sy_lock), so
// another process, here flock(1), is refused while this one holds it and gets it afterwards.
func TestLockExcludesOtherProcessesUntilLastRelease(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Fatal("flock(1) from util-linux is missing; hack/local-*.sh need it too")
	}
	state := filepath.Join(t.TempDir(), "cluster")
	other := func() error { return exec.Command("flock", "-n", lockPath(state), "true").Run() }
	ctx := context.Background()

	if err := acquireLock(ctx, state); err != nil {
		t.Fatal(err)
	}
	if err := acquireLock(ctx, state); err != nil { // a second user in the same process
		t.Fatal(err)
	}
	if other() == nil {
		t.Fatal("another process took the lock while this one held it")
	}
	releaseLock(state)
	if other() == nil {
		t.Fatal("another process took the lock while one user in this process remained")
	}
	releaseLock(state)
	if err := other(); err != nil {
		t.Fatalf("another process could not take the released lock: %v", err)
	}
}
