// Package cluster gives end-to-end tests the local cluster of hack/local-up.sh: a real control
// plane on 127.0.0.1 and nodes that are network namespaces on an underlay namespace. It brings the
// cluster up through those scripts (so tests, the demo and a developer's shell run the same
// thing), hands tests a clientset and ways to run commands inside node and pod namespaces, and
// tears everything down through hack/local-down.sh.
//
// The package itself carries no build tag so that `go vet ./...` keeps it compiling; the tests
// that use it are behind the `e2e` tag and need root:
//
//	go test -tags e2e -count=1 -p 1 -v ./e2e/...
//
// There is one local cluster per machine. A test process holds a machine-wide lock while it uses
// it (lock.go), so concurrent runs wait for each other rather than collide; -p 1 keeps `go test`
// from starting packages that would only wait.
package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Proxies the nodes can run.
const (
	ProxySwitchyard = "switchyard"
	ProxyKubeProxy  = "kube-proxy"
	ProxyNone       = "none"
)

// Options choose the cluster to bring up. The zero value means three nodes running Switchyard in
// iptables mode, no echo pods, state in /tmp/switchyard-local.
type Options struct {
	Nodes     int    // default 3
	Proxy     string // ProxySwitchyard (default), ProxyKubeProxy or ProxyNone
	ProxyMode string // default "iptables"
	// PodNetwork is switchyard's --pod-network: "vxlan" (default) or "none".
	PodNetwork string
	EchoPods   int    // echo pods local-up.sh starts per node (label app=echo in "default")
	State      string // state directory; default $SWITCHYARD_STATE or /tmp/switchyard-local
	// Reuse leaves a cluster that is already up when the lock is taken in place (local-up.sh only
	// completes it) and leaves it running after Down, for iterating on tests against a kept cluster.
	Reuse bool
}

// Node is one node namespace.
type Node struct {
	Index int    // 1-based, as in hack/local-pod.sh
	Name  string // Node object name and network namespace name: sy-node-<Index>
	IP    string // underlay (InternalIP) address
}

// Cluster is a running local cluster.
type Cluster struct {
	Repo       string // repository root: where hack/ is
	State      string
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface
	Nodes      []Node
	Underlay   string // the underlay namespace
	Proxy      string
	ProxyMode  string
	PodNetwork string
	reuse      bool
	locked     bool // holds one use of the process's cluster lock (lock.go)
}

// ErrNoCNI is returned by AddEchoPod while cmd/switchyard-cni is not available.
var ErrNoCNI = errors.New("switchyard-cni is not available yet")

// Up brings the cluster up (or completes a running one) with hack/local-up.sh and connects to it.
// The script's progress goes to stderr. On error the returned Cluster (when not nil) can still be
// passed to Down, which removes whatever the failed bring-up made.
func Up(ctx context.Context, opts Options) (*Cluster, error) {
	repo, err := repoRoot()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the local cluster creates network namespaces: run the e2e tests as root")
	}
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Proxy == "" {
		opts.Proxy = ProxySwitchyard
	}
	if opts.ProxyMode == "" {
		opts.ProxyMode = "iptables"
	}
	if opts.PodNetwork == "" {
		opts.PodNetwork = "vxlan"
	}
	if opts.State == "" {
		opts.State = StateDir()
	}
	if err := acquireLock(ctx, opts.State); err != nil {
		return nil, err
	}
	// Whether a cluster is up is decided now, under the lock: a caller that looked before waiting
	// for it may have seen another test's cluster, which that test has since removed. A cluster this
	// call brings up is this caller's to remove, whatever Reuse says.
	_, err = os.Stat(filepath.Join(opts.State, "state.env"))
	c := &Cluster{Repo: repo, State: opts.State, reuse: opts.Reuse && err == nil, locked: true}
	args := []string{"--nodes", strconv.Itoa(opts.Nodes), "--proxy", opts.Proxy,
		"--proxy-mode", opts.ProxyMode, "--pod-network", opts.PodNetwork, "--echo-pods", strconv.Itoa(opts.EchoPods)}
	if _, err := c.script(ctx, "local-up.sh", args...); err != nil {
		return c, fmt.Errorf("hack/local-up.sh %s: %w", strings.Join(args, " "), err)
	}
	if err := c.load(); err != nil {
		return c, err
	}
	return c, nil
}

// StateDir is the local cluster's state directory unless a caller names another: $SWITCHYARD_STATE,
// or /tmp/switchyard-local (hack/lib/common.sh's default).
func StateDir() string {
	if s := os.Getenv("SWITCHYARD_STATE"); s != "" {
		return s
	}
	return "/tmp/switchyard-local"
}

// UpForTests is Up for a TestMain: when the cluster does not come up it says why on stderr, takes
// down what did come up, and returns nil.
func UpForTests(ctx context.Context, opts Options) *Cluster {
	c, err := Up(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cluster up: %v\n", err)
		if c != nil {
			_ = c.Down(ctx, "")
		}
		return nil
	}
	return c
}

// Attach connects to a cluster that hack/local-up.sh already brought up, without changing it.
// Like Up, it waits for any other test process using the cluster to finish.
func Attach(state string) (*Cluster, error) {
	repo, err := repoRoot()
	if err != nil {
		return nil, err
	}
	if err := acquireLock(context.Background(), state); err != nil {
		return nil, err
	}
	c := &Cluster{Repo: repo, State: state, reuse: true, locked: true}
	if err := c.load(); err != nil {
		c.Release()
		return nil, err
	}
	return c, nil
}

// Release lets other processes use the local cluster once this one is done with it; Down calls it.
// A process that exits releases it anyway.
func (c *Cluster) Release() {
	if c.locked {
		c.locked = false
		releaseLock(c.State)
	}
}

// load reads state.env and builds the clients.
func (c *Cluster) load() error {
	env, err := readEnv(filepath.Join(c.State, "state.env"))
	if err != nil {
		return fmt.Errorf("read the cluster's state: %w", err)
	}
	n, err := strconv.Atoi(env["SY_NODES"])
	if err != nil {
		return fmt.Errorf("state.env SY_NODES=%q: %w", env["SY_NODES"], err)
	}
	prefix := env["SY_UNDERLAY_PREFIX"]
	c.Nodes = nil
	for i := 1; i <= n; i++ {
		c.Nodes = append(c.Nodes, Node{Index: i, Name: fmt.Sprintf("sy-node-%d", i), IP: fmt.Sprintf("%s.%d", prefix, 10+i)})
	}
	c.Underlay = env["SY_UNDERLAY_NS"]
	c.Proxy = env["SY_PROXY"]
	c.ProxyMode = env["SY_PROXY_MODE"]
	c.PodNetwork = env["SY_POD_NETWORK"]
	c.Kubeconfig = env["SY_KUBECONFIG"]
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig %s: %w", c.Kubeconfig, err)
	}
	// Tests create objects in bursts; the client's default 5 QPS would make them wait on it.
	cfg.QPS, cfg.Burst = 200, 400
	cfg.Timeout = 30 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("clientset for %s: %w", c.Kubeconfig, err)
	}
	c.Config, c.Client = cfg, client
	return nil
}

// Down removes the cluster with hack/local-down.sh, first copying its logs to keepLogs when that
// is not empty. A cluster brought up with Reuse is left running.
func (c *Cluster) Down(ctx context.Context, keepLogs string) error {
	defer c.Release()
	if c.reuse {
		return nil
	}
	args := []string{}
	if keepLogs != "" {
		args = append(args, "--keep-logs", keepLogs)
	}
	_, err := c.script(ctx, "local-down.sh", args...)
	return err
}

// Node returns node i (1-based).
func (c *Cluster) Node(i int) Node {
	return c.Nodes[i-1]
}

// Exec runs argv inside network namespace netns and returns its standard output. The error
// carries standard error.
func (c *Cluster) Exec(ctx context.Context, netns string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", netns}, argv...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), netns, err,
			strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// NodeExec runs argv in node i's namespace.
func (c *Cluster) NodeExec(ctx context.Context, i int, argv ...string) (string, error) {
	return c.Exec(ctx, c.Node(i).Name, argv...)
}

// PodNetNS is the network namespace of an echo pod started by AddEchoPod.
func PodNetNS(namespace, name string) string {
	return fmt.Sprintf("sy-pod-%s-%s", namespace, name)
}

// PodExec runs argv in the namespace of the echo pod namespace/name.
func (c *Cluster) PodExec(ctx context.Context, namespace, name string, argv ...string) (string, error) {
	return c.Exec(ctx, PodNetNS(namespace, name), argv...)
}

// script runs hack/NAME with the cluster's state directory, streaming its progress to stderr.
func (c *Cluster) script(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.Repo, "hack", name), args...)
	// This process holds the cluster lock already (lock.go); the scripts must not wait for it.
	cmd.Env = append(os.Environ(), "SWITCHYARD_STATE="+c.State, "SWITCHYARD_CLUSTER_LOCKED=1")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	err := cmd.Run()
	return stdout.String(), err
}

// repoRoot finds the repository from the working directory (go test runs in the package's).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "hack", "local-up.sh")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no hack/local-up.sh above %s", dir)
		}
	}
}

// readEnv parses the KEY=value lines local-up.sh writes.
func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			env[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return env, sc.Err()
}
