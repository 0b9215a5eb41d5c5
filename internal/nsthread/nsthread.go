// Package nsthread runs code inside another network namespace. A namespace belongs to an OS thread,
// not to a goroutine, so the code runs on a thread locked for the purpose, which goes back to its
// own namespace afterwards and is never handed to other goroutines while it is elsewhere.
package nsthread

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on an OS thread inside ns, or, with ns -1, in the caller's namespace (for an fn that
// moves the thread itself, as netns.New does). Sockets fn opens belong to that namespace for their
// lifetime, and processes it starts (iptables-restore, say) inherit it. If the thread cannot return
// to its namespace, it stays locked and dies with its goroutine instead of running others there.
func Do(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("read this thread's network namespace: %w", err)
			return
		}
		defer orig.Close()
		if ns >= 0 {
			if err := netns.Set(ns); err != nil {
				errc <- fmt.Errorf("enter network namespace: %w", err)
				return
			}
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return to the original network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
