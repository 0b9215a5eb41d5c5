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
// others wait for it. flock belongs to an open file, so the process opens each lock file once and
// counts its users: that table is the one piece of package state, and it is process-wide by nature.
var processLocks = struct {
	sync.Mutex
	held map[string]*heldLock // by lock file path
}{held: map[string]*heldLock{}}

type heldLock struct {
	file  *os.File
	users int
}

// lockPath is next to the state directory, not inside it: local-down.sh removes the state.
func lockPath(state string) string {
	return state + ".lock"
}

// acquireLock blocks until this process holds the machine's cluster lock for state.
func acquireLock(ctx context.Context, state string) error {
	path := lockPath(state)
	processLocks.Lock()
	defer processLocks.Unlock()
	if h := processLocks.held[path]; h != nil {
		h.users++
		return nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
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
			return fmt.Errorf("lock %s: %w", path, err)
		}
		if !said {
			fmt.Fprintf(os.Stderr, "waiting for another process using the local cluster (%s)\n", path)
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return fmt.Errorf("waiting for the local cluster lock: %w", ctx.Err())
		case <-time.After(time.Second):
		}
	}
	processLocks.held[path] = &heldLock{file: f, users: 1}
	return nil
}

// releaseLock drops one use of state's lock; the last one unlocks (closing the file releases the
// flock).
func releaseLock(state string) {
	path := lockPath(state)
	processLocks.Lock()
	defer processLocks.Unlock()
	h := processLocks.held[path]
	if h == nil {
		return
	}
	h.users--
	if h.users == 0 {
		h.file.Close()
		delete(processLocks.held, path)
	}
}
