package cluster

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// There is one local cluster per machine (fixed namespace names, ports 6443 and 2379), and every
// e2e package's TestMain brings it up and tears it down. Two test processes at once, such as two
// packages under `go test ./e2e/...` without -p 1 or two developers' runs, would tear the cluster
// down under each other. So a process holds an exclusive flock while it uses the cluster; the
// others wait for it. flock belongs to an open file, so the process opens the lock file once and
// counts its users: that count is the one piece of package state, and it is process-wide by nature.
var processLock struct {
	sync.Mutex
	file  *os.File
	users int
}

// lockPath is next to the state directory, not inside it: local-down.sh removes the state.
func lockPath(state string) string {
	return state + ".lock"
}

// acquireLock blocks until this process holds the machine's cluster lock for state.
func acquireLock(ctx context.Context, state string) error {
	processLock.Lock()
	defer processLock.Unlock()
	if processLock.users > 0 {
		processLock.users++
		return nil
	}
	f, err := os.OpenFile(lockPath(state), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("open the local cluster lock: %w", err)
	}
	said := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if err != unix.EWOULDBLOCK {
			f.Close()
			return fmt.Errorf("lock %s: %w", lockPath(state), err)
		}
		if !said {
			fmt.Fprintf(os.Stderr, "waiting for another process using the local cluster (%s)\n", lockPath(state))
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return fmt.Errorf("waiting for the local cluster lock: %w", ctx.Err())
		case <-time.After(time.Second):
		}
	}
	processLock.file = f
	processLock.users = 1
	return nil
}

// releaseLock drops one use; the last one unlocks (closing the file releases the flock).
func releaseLock() {
	processLock.Lock()
	defer processLock.Unlock()
	if processLock.users == 0 {
		return
	}
	processLock.users--
	if processLock.users == 0 {
		processLock.file.Close()
		processLock.file = nil
	}
}
