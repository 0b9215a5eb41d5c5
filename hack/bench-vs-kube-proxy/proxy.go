package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProxySpec says how to run one proxy in the node and how to make it remove its rules.
type ProxySpec struct {
	Name    string // kube-proxy-iptables, kube-proxy-nftables, switchyard-iptables
	Binary  string
	Args    []string
	Cleanup []string // arguments for the binary's own cleanup run
}

// proxySpecs builds the specs the --proxies flag can name. kube-proxy gets the flags
// hack/lib/proxy.sh starts it with (conntrack sysctls untouched, since a node namespace may not
// write them); both kinds use the default sync periods (min 1 s, max 30 s).
func proxySpecs(cfg Config) map[string]ProxySpec {
	kubeProxy := func(mode string) ProxySpec {
		common := []string{
			"--kubeconfig=" + cfg.NodeKubeconfig, "--hostname-override=" + cfg.Node,
			"--proxy-mode=" + mode, "--cluster-cidr=" + cfg.ClusterCIDR,
		}
		return ProxySpec{
			Name:   "kube-proxy-" + mode,
			Binary: cfg.KubeProxy,
			Args: append(append([]string{}, common...),
				"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0",
				"--conntrack-tcp-timeout-close-wait=0",
				"--metrics-bind-address="+metricsAddr, "--healthz-bind-address=0.0.0.0:10256", "--v=1"),
			Cleanup: append(append([]string{}, common...), "--cleanup", "--v=1"),
		}
	}
	common := []string{
		"--kubeconfig=" + cfg.NodeKubeconfig, "--hostname-override=" + cfg.Node,
		"--proxy-mode=iptables", "--cluster-cidr=" + cfg.ClusterCIDR,
	}
	return map[string]ProxySpec{
		"kube-proxy-iptables": kubeProxy("iptables"),
		"kube-proxy-nftables": kubeProxy("nftables"),
		"switchyard-iptables": {
			Name:   "switchyard-iptables",
			Binary: cfg.Switchyard,
			Args: append(append([]string{}, common...),
				"--metrics-bind-address="+metricsAddr, "--healthz-bind-address=0.0.0.0:10256", "--v=1"),
			Cleanup: append(append([]string{}, common...), "--cleanup"),
		},
	}
}

// running is a proxy process started in the node namespace. `ip netns exec` enters the namespace
// and execs the proxy in place, so the pid is the proxy's own (checked through /proc/PID/exe).
type running struct {
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{}
	waitErr error
	log     string
}

func startProxy(spec ProxySpec, node, logPath string) (*running, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open proxy log: %w", err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "=== %s: ip netns exec %s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), node, spec.Binary, strings.Join(spec.Args, " "))
	cmd := exec.Command("ip", append([]string{"netns", "exec", node, spec.Binary}, spec.Args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group: a Ctrl-C on the bench reaches the driver, which then stops the
	// proxy itself and cleans up, instead of the proxy dying half way through a restore.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r := &running{cmd: cmd, exited: make(chan struct{}), log: logPath}
	r.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	go func() {
		r.waitErr = cmd.Wait()
		close(r.exited)
	}()
	// Wait for the exec from ip to the proxy so the pid's status is the proxy's.
	want, _ := filepath.EvalSymlinks(spec.Binary)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid))
		if err == nil && exe == want {
			return r, nil
		}
		if r.hasExited() {
			break
		}
	}
	r.stop()
	return nil, fmt.Errorf("%s: pid %d did not become %s (ip netns exec failed?); see %s", spec.Name, cmd.Process.Pid, want, logPath)
}

func (r *running) hasExited() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
}

// peakRSS is VmHWM of the proxy process, in bytes.
func (r *running) peakRSS() (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("read proxy status: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("parse VmHWM %q: %w", line, err)
				}
				return kb * 1024, nil
			}
		}
	}
	return 0, errors.New("no VmHWM in /proc/PID/status")
}

// stop sends SIGTERM to the proxy's process group and SIGKILL after 10 s. Neither proxy removes
// its rules on exit; that is the cleanup run's job.
func (r *running) stop() {
	if r.hasExited() {
		return
	}
	pgid := r.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-r.exited
	}
}

// logTail is the last lines of the proxy's log, for error messages.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// runCleanup runs the proxy's own cleanup in the node and returns how long it took.
func runCleanup(ctx context.Context, spec ProxySpec, node, logPath string, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open cleanup log: %w", err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "=== %s cleanup: ip netns exec %s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), node, spec.Binary, strings.Join(spec.Cleanup, " "))
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", node, spec.Binary}, spec.Cleanup...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	if ctx.Err() != nil {
		return took, fmt.Errorf("%s --cleanup did not finish within %s", spec.Name, timeout)
	}
	if err != nil {
		return took, fmt.Errorf("%s --cleanup: %w", spec.Name, err)
	}
	return took, nil
}

// forceClean removes both proxies' rules from the node by hand. It is only used after a proxy's
// own cleanup failed or left rules, and only in the bench's node namespace, which held no rules
// before the bench (checked first), so deleting its tables returns it to that state. The
// iptables-nft tables are deleted whole through nft, which is instant even with 60k chains.
func forceClean(ctx context.Context, node string) error {
	var errs []error
	for _, family := range []string{"ip", "ip6"} {
		out, err := inNode(ctx, node, "nft", "list", "tables", family)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, table := range []string{"kube-proxy", "nat", "filter", "mangle"} {
			if !strings.Contains(string(out)+"\n", "table "+family+" "+table+"\n") {
				continue
			}
			if _, err := inNode(ctx, node, "nft", "delete", "table", family, table); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, table := range []string{"nat", "filter", "mangle"} {
		for _, op := range []string{"-F", "-X"} {
			if _, err := inNode(ctx, node, "iptables-legacy", "-w", "-t", table, op); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
