// Command demo is the main job a newcomer runs (`make demo`, or hack/demo.sh): it brings up the
// local cluster of hack/local-up.sh (a real control plane, three nodes as network namespaces,
// Switchyard in each with its VXLAN pod network), creates a few services over echo pods spread on
// the nodes, sends requests from a pod and from the underlay, and prints which pod answered each
// one and which client address it saw. It checks every answer against what the service's policy
// allows, and exits non-zero when a request fails or lands somewhere impossible, so it doubles as
// a smoke test. The cluster is torn down on exit (also after a failure or Ctrl-C) unless --keep.
//
// Run it as root:
//
//	hack/demo.sh [--keep] [--requests N]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
)

func main() {
	// The probe runs inside a namespace: see probe.go.
	if len(os.Args) > 1 && os.Args[1] == probeCommand {
		os.Exit(runProbeCommand(os.Args[2:]))
	}
	// The in-process watcher (ipvs.go) logs through klog; the report says what matters.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	os.Exit(run())
}

// options are the demo's flags.
type options struct {
	keep     bool
	requests int
	state    string
}

func parseFlags() options {
	var o options
	fs := flag.NewFlagSet("demo", flag.ExitOnError)
	fs.BoolVar(&o.keep, "keep", false, "keep the cluster (and the demo's services and pods) running for exploring")
	fs.IntVar(&o.requests, "requests", 6, "requests per service and entry point (the eTP=Local drop check sends one)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: hack/demo.sh [--keep] [--requests N]\n\n"+
			"Brings up the 3-node local cluster, creates services, sends requests and reports which pod\n"+
			"answered each one and which client address it saw. Needs root. Exits non-zero when a request\n"+
			"fails or lands where the service's policy does not allow.\n\n")
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "demo: unexpected argument %q (see --help)\n", fs.Arg(0))
		os.Exit(2)
	}
	if o.requests < 1 || o.requests > 100 {
		fmt.Fprintln(os.Stderr, "demo: --requests must be 1..100")
		os.Exit(2)
	}
	o.state = cluster.StateDir()
	return o
}

func run() int {
	opts := parseFlags()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: the local cluster creates network namespaces: run as root")
		return 1
	}
	start := time.Now()
	// The first Ctrl-C or SIGTERM cancels ctx, which stops the step in progress; cleanup then runs
	// with a context of its own. (A terminal's Ctrl-C also reaches the scripts and probes the demo
	// runs, as they share its process group.)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	c, reused, err := connect(ctx, opts)
	ready := time.Now()
	if c == nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}

	var res *results
	if err == nil {
		res, err = runDemo(ctx, c, opts)
	}
	if res != nil {
		printReport(os.Stdout, res, ready.Sub(start), time.Since(ready))
	}
	failed := err != nil || (res != nil && res.failures() > 0)
	if ctx.Err() != nil {
		err = errors.New("interrupted")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo: FAILED: %v\n", err)
	} else if res.failures() > 0 {
		fmt.Fprintf(os.Stderr, "\ndemo: FAILED: %d of %d checks did not hold (marked FAIL above)\n", res.failures(), res.checks())
	}
	// An interrupted run is no failure to diagnose: no debug dump then.
	finish(c, reused, opts, failed && ctx.Err() == nil)
	if failed {
		return 1
	}
	return 0
}

// connect returns the cluster to use. A cluster that is already up (kept by an earlier
// `demo --keep` or by hand) is used as it is and left running; otherwise a fresh one is brought
// up, which finish removes again. While another process (an e2e run) uses the cluster, both wait
// for its lock. A nil Cluster means nothing was made; a Cluster with an error must be finished.
func connect(ctx context.Context, opts options) (*cluster.Cluster, bool, error) {
	stateFile := filepath.Join(opts.state, "state.env")
	if _, err := os.Stat(stateFile); err == nil {
		step("a local cluster is already up (%s): using it and leaving it running", opts.state)
		c, err := attach(ctx, opts.state)
		switch {
		case err == nil:
			if err := checkReusable(c); err != nil {
				c.Release()
				return nil, false, err
			}
			return c, true, nil
		case ctx.Err() != nil:
			return nil, false, errors.New("interrupted while waiting for the cluster")
		case fileExists(stateFile):
			return nil, false, fmt.Errorf("attach to the running cluster: %w (hack/local-down.sh removes a broken one)", err)
		}
		// Whoever held the cluster while Attach waited for it removed it.
		step("that cluster was removed while the demo waited for it")
	}
	step("bringing up the local cluster: control plane, 3 nodes, switchyard (iptables mode) with its VXLAN pod network")
	step("(the first run builds kube-apiserver and kube-controller-manager from the Go module proxy: about 10 minutes)")
	c, err := cluster.Up(ctx, cluster.Options{Nodes: 3, Proxy: cluster.ProxySwitchyard, ProxyMode: "iptables",
		PodNetwork: "vxlan", State: opts.state})
	if err != nil {
		if c == nil {
			return nil, false, err
		}
		return c, false, fmt.Errorf("bring up the local cluster: %w", err)
	}
	return c, false, nil
}

// attach is cluster.Attach, which waits for the cluster lock without a context, made to give up
// when ctx ends. A late Attach then keeps the lock until the process exits, which is at once.
func attach(ctx context.Context, state string) (*cluster.Cluster, error) {
	type result struct {
		c   *cluster.Cluster
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := cluster.Attach(state)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		return r.c, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the local cluster: %w", ctx.Err())
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// checkReusable refuses a running cluster the demo cannot use as it is.
func checkReusable(c *cluster.Cluster) error {
	if _, err := c.Client.Discovery().ServerVersion(); err != nil {
		return fmt.Errorf("the cluster in %s does not answer (%v): remove it with hack/local-down.sh", c.State, err)
	}
	if c.Proxy != cluster.ProxySwitchyard || c.PodNetwork != "vxlan" || len(c.Nodes) < 3 {
		return fmt.Errorf("the running cluster has proxy=%s pod-network=%s nodes=%d; the demo needs switchyard, vxlan and 3 nodes: "+
			"remove it with hack/local-down.sh first", c.Proxy, c.PodNetwork, len(c.Nodes))
	}
	return nil
}

// finish tears down what the demo made, or keeps it and says how to explore. With failed, it
// first saves the nodes' state and (on a cluster it tears down) the logs.
func finish(c *cluster.Cluster, reused bool, opts options, failed bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var logs string
	if failed {
		logs = saveDebug(ctx, c)
	}
	switch {
	case opts.keep:
		c.Release()
		printExplore(os.Stdout, c)
	case reused:
		step("removing the demo's services and pods (the cluster was already up: it stays)")
		if err := removeDemoObjects(ctx, c); err != nil {
			fmt.Fprintf(os.Stderr, "demo: cleanup: %v\n", err)
		}
		c.Release()
	default:
		if logs != "" {
			step("copying the cluster's logs to %s", logs)
		}
		step("tearing down the local cluster (hack/local-down.sh; --keep keeps it)")
		if err := c.Down(ctx, logs); err != nil {
			fmt.Fprintf(os.Stderr, "demo: tear-down failed: %v\nrun hack/local-down.sh to finish it\n", err)
		}
	}
}

// saveDebug writes the nodes' rules and state and the logs' tails to a directory and returns it
// (local-down.sh copies the full logs there too).
func saveDebug(ctx context.Context, c *cluster.Cluster) string {
	dir := fmt.Sprintf("/tmp/switchyard-demo-failure-%s", time.Now().UTC().Format("20060102-150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "demo: cannot save debug output: %v\n", err)
		return ""
	}
	path := filepath.Join(dir, "nodes.txt")
	if err := os.WriteFile(path, []byte(c.Debug(ctx)), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "demo: cannot save debug output: %v\n", err)
		return dir
	}
	fmt.Fprintf(os.Stderr, "demo: the nodes' rules and state, and the logs' last lines, are in %s\n", path)
	return dir
}

// step prints a progress line.
func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[demo %s] %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}
