package model

// Backend makes one kernel subsystem (iptables chains, IPVS tables) match a Snapshot. The watcher's
// runner calls Sync from one goroutine at a time.
type Backend interface {
	// Sync programs snap. A nil error means the kernel now forwards exactly as snap says. A non-nil
	// error means the previous rules are still in force (nothing was half-applied); the runner logs it
	// and retries with snap.Full set.
	Sync(snap *Snapshot) error
	// Family is the IP family the backend programs. The sync loop labels its per-family metrics
	// (queued syncs, network programming latency) with it, as kube-proxy's per-family proxiers do.
	Family() IPFamily
}
