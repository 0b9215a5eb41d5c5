package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Processes local-up.sh starts, by the names its pid files and logs use.
const (
	ProcessAPIServer         = "kube-apiserver"
	ProcessControllerManager = "kube-controller-manager"
	ProcessEtcd              = "etcd"
)

// ProxyProcess is the name of the proxy process on node i ("switchyard-sy-node-1", ...).
func (c *Cluster) ProxyProcess(i int) string {
	return c.Proxy + "-" + c.Node(i).Name
}

// PID returns the pid of a process local-up.sh started, checking that the pid still belongs to it
// (its command line holds the marker local-up.sh recorded), so a recycled pid is never signalled.
func (c *Cluster) PID(name string) (int, error) {
	dir := filepath.Join(c.State, "pids")
	raw, err := os.ReadFile(filepath.Join(dir, name+".pid"))
	if err != nil {
		return 0, fmt.Errorf("process %s: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return 0, fmt.Errorf("process %s pid file: %w", name, err)
	}
	marker, err := os.ReadFile(filepath.Join(dir, name+".marker"))
	if err != nil {
		return 0, fmt.Errorf("process %s: %w", name, err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(strings.ReplaceAll(string(cmdline), "\x00", " "), string(marker)) {
		return 0, fmt.Errorf("process %s (pid %d) is not running", name, pid)
	}
	return pid, nil
}

// StopProcess stops a process local-up.sh started (SIGTERM to its process group, SIGKILL after
// 5 s), e.g. the API server for an outage scenario or a node's proxy for a restart scenario, and
// returns once it is gone. Restart brings it back. (kube-apiserver with clients still watching
// takes a full minute over a graceful shutdown; the SIGKILL is what ends it then.)
func (c *Cluster) StopProcess(ctx context.Context, name string) error {
	pid, err := c.PID(name)
	if err != nil {
		return err
	}
	// local-up.sh starts everything with setsid, so the pid is also the process group.
	if err := syscall.Kill(-pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s (pid %d): %w", name, pid, err)
	}
	exited := func(context.Context) (bool, error) { return !running(pid), nil }
	if WaitFor(ctx, 5*time.Second, name+" to exit", exited) == nil {
		return nil
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", name, pid, err)
	}
	return WaitFor(ctx, 10*time.Second, name+" to exit after SIGKILL", exited)
}

// Restart runs hack/local-up.sh again with the cluster's current settings, which starts whatever
// was stopped and leaves running processes alone.
func (c *Cluster) Restart(ctx context.Context) error {
	args := []string{"--nodes", strconv.Itoa(len(c.Nodes)), "--proxy", c.Proxy,
		"--proxy-mode", c.ProxyMode, "--pod-network", c.PodNetwork, "--echo-pods", "0"}
	if _, err := c.script(ctx, "local-up.sh", args...); err != nil {
		return fmt.Errorf("hack/local-up.sh %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// running reports whether pid exists and is not a zombie (what local-up.sh started is reparented
// once the script exits, and its new parent may reap it late).
func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}
