//go:build e2e

// Package scenarios runs Switchyard's end-to-end scenarios (issue 5) against the local cluster of
// hack/local-up.sh in iptables mode: three node namespaces running the tree's switchyard with the
// VXLAN pod network, real pods wired by switchyard-cni, and the real control plane. Run as root:
//
//	go build -o bin/ ./cmd/... && SWITCHYARD_PRIVILEGED=1 SWITCHYARD_BIN_DIR=$PWD/bin \
//	  go test -tags e2e -count=1 -p 1 -v ./e2e/scenarios/
//
// The cluster comes up once per package run (TestMain). Each scenario works in a namespace of its
// own, so scenarios do not see each other's services. A failing scenario prints every node's rules
// and the tails of the logs (cluster.DumpOnFailure).
package scenarios

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
)

// syncPeriod is the --iptables-sync-period the suite starts switchyard with, so that the scenario
// that deletes chains by hand sees them restored quickly. A cluster that was already up keeps the
// flags it was started with; syncPeriodOf reads them from the running process.
const syncPeriod = 5 * time.Second

var testCluster *cluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	if os.Getenv("SWITCHYARD_PRIVILEGED") != "1" {
		fmt.Fprintln(os.Stderr, "e2e scenarios need root and SWITCHYARD_PRIVILEGED=1; skipping")
		return 0
	}
	if os.Getenv("SWITCHYARD_EXTRA_ARGS") == "" {
		os.Setenv("SWITCHYARD_EXTRA_ARGS", "--iptables-sync-period="+syncPeriod.String())
	}
	state := cluster.StateDir()
	// A cluster someone brought up before the tests (a developer exploring it) is used and left
	// running, as in e2e/framework/cluster.
	_, err := os.Stat(filepath.Join(state, "state.env"))
	reuse := err == nil
	start := time.Now()
	c := cluster.UpForTests(ctx, cluster.Options{Nodes: 3, Proxy: cluster.ProxySwitchyard, ProxyMode: "iptables",
		PodNetwork: "vxlan", State: state, Reuse: reuse})
	if c == nil {
		return 1
	}
	fmt.Fprintf(os.Stderr, "cluster up in %s (reused: %v)\n", time.Since(start).Round(time.Millisecond), reuse)
	testCluster = c
	code := m.Run()
	logs := ""
	if code != 0 && !reuse {
		logs = filepath.Join(os.TempDir(), fmt.Sprintf("switchyard-e2e-scenarios-logs-%d", time.Now().Unix()))
	}
	if err := c.Down(ctx, logs); err != nil {
		fmt.Fprintf(os.Stderr, "cluster down: %v\n", err)
		return 1
	}
	if logs != "" {
		fmt.Fprintf(os.Stderr, "cluster logs kept in %s\n", logs)
	}
	return code
}

// syncPeriodOf reads --iptables-sync-period from node i's running switchyard (30s, the default,
// when it was not given).
func syncPeriodOf(c *cluster.Cluster, i int) (time.Duration, error) {
	pid, err := c.PID(c.ProxyProcess(i))
	if err != nil {
		return 0, err
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, fmt.Errorf("command line of %s: %w", c.ProxyProcess(i), err)
	}
	period := 30 * time.Second
	for _, arg := range strings.Split(string(raw), "\x00") {
		if v, ok := strings.CutPrefix(arg, "--iptables-sync-period="); ok {
			if period, err = time.ParseDuration(v); err != nil {
				return 0, fmt.Errorf("%s: %w", arg, err)
			}
		}
	}
	return period, nil
}
