//go:build e2e

package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// These tests prove the local cluster itself, with no proxy running: the control plane, the
// node namespaces and their API relays, and the controllers the proxy scenarios depend on.
// Run as root: go test -tags e2e -count=1 -v ./e2e/framework/cluster/

var testCluster *Cluster

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	start := time.Now()
	state := StateDir()
	// A cluster someone brought up before the tests (a developer exploring, the demo) is used and
	// left running, not torn down under them.
	_, err := os.Stat(filepath.Join(state, "state.env"))
	reuse := err == nil
	if reuse {
		fmt.Fprintf(os.Stderr, "using the cluster already up in %s; it stays up afterwards\n", state)
	}
	c := UpForTests(ctx, Options{Nodes: 3, Proxy: ProxyNone, State: state, Reuse: reuse})
	if c == nil {
		return 1
	}
	fmt.Fprintf(os.Stderr, "cluster up in %s\n", time.Since(start).Round(time.Millisecond))
	testCluster = c
	code := m.Run()
	logs := ""
	if code != 0 {
		logs = filepath.Join(os.TempDir(), fmt.Sprintf("switchyard-e2e-logs-%d", time.Now().Unix()))
	}
	if reuse {
		return code
	}
	if err := c.Down(ctx, logs); err != nil {
		fmt.Fprintf(os.Stderr, "cluster down: %v\n", err)
		return 1
	}
	if logs != "" {
		fmt.Fprintf(os.Stderr, "cluster logs kept in %s\n", logs)
	}
	// Teardown is part of the contract: nothing of the cluster may survive it.
	if left := leftovers(c); left != "" {
		fmt.Fprintf(os.Stderr, "local-down.sh left behind: %s\n", left)
		return 1
	}
	return code
}

// leftovers lists the cluster's namespaces and processes still present after Down.
func leftovers(c *Cluster) string {
	var left []string
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(line, " ")
		if strings.HasPrefix(name, "sy-node-") || name == c.Underlay || strings.HasPrefix(name, "sy-pod-") {
			left = append(left, "netns "+name)
		}
	}
	if _, err := os.Stat(c.State); err == nil {
		left = append(left, "state dir "+c.State)
	}
	// Every process local-up.sh starts names the state directory on its command line.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(data), c.State+"/") {
			left = append(left, fmt.Sprintf("process %s: %s", filepath.Base(filepath.Dir(p)),
				strings.ReplaceAll(string(data), "\x00", " ")))
		}
	}
	return strings.Join(left, "; ")
}

func TestNodesAreRegisteredWithPodCIDRs(t *testing.T) {
	c := testCluster
	c.DumpOnFailure(t)
	ctx := context.Background()
	cluster := netip.MustParsePrefix("10.244.0.0/16")
	seen := map[netip.Prefix]string{}
	for _, n := range c.Nodes {
		node, err := c.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("node %s: %v", n.Name, err)
		}
		cidr, err := netip.ParsePrefix(node.Spec.PodCIDR)
		if err != nil || cidr.Bits() != 24 || !cluster.Contains(cidr.Addr()) {
			t.Errorf("node %s pod CIDR %q: want a /24 inside %s", n.Name, node.Spec.PodCIDR, cluster)
		}
		if other, dup := seen[cidr]; dup {
			t.Errorf("nodes %s and %s share pod CIDR %s", other, n.Name, cidr)
		}
		seen[cidr] = n.Name
		var internal string
		for _, a := range node.Status.Addresses {
			if a.Type == v1.NodeInternalIP {
				internal = a.Address
			}
		}
		if internal != n.IP {
			t.Errorf("node %s InternalIP = %q, want %s", n.Name, internal, n.IP)
		}
		ready := false
		for _, cond := range node.Status.Conditions {
			if cond.Type == v1.NodeReady && cond.Status == v1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			t.Errorf("node %s is not Ready: %+v", n.Name, node.Status.Conditions)
		}
		if len(node.Spec.Taints) != 0 {
			t.Errorf("node %s has taints %v; no kubelet runs to ever clear them", n.Name, node.Spec.Taints)
		}
		// The node's own address is on its eth0, and the underlay reaches it.
		if out, err := c.NodeExec(ctx, n.Index, "ip", "-br", "addr", "show", "eth0"); err != nil || !strings.Contains(out, n.IP+"/24") {
			t.Errorf("node %s eth0: %q %v", n.Name, out, err)
		}
		if out, err := c.Exec(ctx, c.Underlay, "ping", "-c1", "-W2", n.IP); err != nil {
			t.Errorf("underlay cannot ping %s: %v %s", n.IP, err, out)
		}
	}
}

// Each node reaches the API server on its own loopback, as its proxy will, with the node's
// identity: allowed what kube-proxy may do, refused the rest.
func TestNodeReachesAPIServerThroughRelay(t *testing.T) {
	c := testCluster
	c.DumpOnFailure(t)
	ctx := context.Background()
	pki := filepath.Join(c.State, "pki")
	for _, n := range c.Nodes {
		get := func(path string) string {
			out, err := c.NodeExec(ctx, n.Index, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
				"--cacert", filepath.Join(pki, "ca.crt"),
				"--cert", filepath.Join(pki, n.Name+".crt"), "--key", filepath.Join(pki, n.Name+".key"),
				"https://127.0.0.1:6443"+path)
			if err != nil {
				t.Errorf("node %s GET %s: %v", n.Name, path, err)
			}
			return out
		}
		for path, want := range map[string]string{
			"/apis/discovery.k8s.io/v1/endpointslices": "200",
			"/api/v1/services":                         "200",
			"/api/v1/nodes/" + n.Name:                  "200",
			"/api/v1/secrets":                          "403",
		} {
			if got := get(path); got != want {
				t.Errorf("node %s GET %s = %s, want %s", n.Name, path, got, want)
			}
		}
	}
	// The kubernetes Service's endpoint is the underlay relay, and that relay answers.
	slice, err := c.Client.DiscoveryV1().EndpointSlices("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("kubernetes EndpointSlice: %v", err)
	}
	if len(slice.Endpoints) != 1 || len(slice.Endpoints[0].Addresses) != 1 || slice.Endpoints[0].Addresses[0] != "192.168.50.1" ||
		len(slice.Ports) != 1 || *slice.Ports[0].Port != 6443 {
		t.Errorf("kubernetes EndpointSlice = %+v %+v, want 192.168.50.1:6443", slice.Endpoints, slice.Ports)
	}
	for _, n := range c.Nodes {
		if out, err := c.NodeExec(ctx, n.Index, "curl", "-sS", "--cacert", filepath.Join(pki, "ca.crt"),
			"https://192.168.50.1:6443/readyz"); err != nil || out != "ok" {
			t.Errorf("node %s to the advertised API address over the underlay: %q %v", n.Name, out, err)
		}
	}
}

// The real EndpointSlice controller publishes a patched pod status: a ready endpoint with the
// pod's IP and node, then not ready after a readiness flip, then gone after the pod is deleted.
func TestEndpointSliceControllerPublishesPodStatus(t *testing.T) {
	c := testCluster
	c.DumpOnFailure(t)
	ctx := context.Background()
	const ns = "e2e-cp"
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.DeletePodObject(ctx, ns, "web-1")
		_ = c.Client.CoreV1().Services(ns).Delete(ctx, "web", metav1.DeleteOptions{})
	})
	svc, err := c.Client.CoreV1().Services(ns).Create(ctx, EchoService(ns, "web", "", map[string]string{"app": "web"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ip := netip.MustParseAddr(svc.Spec.ClusterIP); !netip.MustParsePrefix("10.96.0.0/16").Contains(ip) {
		t.Errorf("ClusterIP %s outside the service CIDR", ip)
	}
	podIP, err := c.PodIPOnNode(ctx, 2, 200)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePodObject(ctx, ns, "web-1", 2, podIP, map[string]string{"app": "web"}, true); err != nil {
		t.Fatal(err)
	}

	endpoint := func(ctx context.Context) (*discoveryv1.Endpoint, *discoveryv1.EndpointSlice, error) {
		slices, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=web"})
		if err != nil {
			return nil, nil, err
		}
		for i := range slices.Items {
			for j := range slices.Items[i].Endpoints {
				if e := &slices.Items[i].Endpoints[j]; len(e.Addresses) > 0 && e.Addresses[0] == podIP {
					return e, &slices.Items[i], nil
				}
			}
		}
		return nil, nil, nil
	}

	var got *discoveryv1.Endpoint
	var slice *discoveryv1.EndpointSlice
	err = WaitFor(ctx, 30*time.Second, "a ready endpoint "+podIP, func(ctx context.Context) (bool, error) {
		e, s, err := endpoint(ctx)
		got, slice = e, s
		return e != nil && e.Conditions.Ready != nil && *e.Conditions.Ready, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.NodeName == nil || *got.NodeName != c.Node(2).Name {
		t.Errorf("endpoint nodeName = %v, want %s", got.NodeName, c.Node(2).Name)
	}
	if got.TargetRef == nil || got.TargetRef.Name != "web-1" {
		t.Errorf("endpoint targetRef = %+v, want pod web-1", got.TargetRef)
	}
	if len(slice.Ports) != 1 || slice.Ports[0].Port == nil || *slice.Ports[0].Port != 8080 {
		t.Errorf("slice ports = %+v, want the target port 8080", slice.Ports)
	}

	if err := c.SetPodReady(ctx, ns, "web-1", false); err != nil {
		t.Fatal(err)
	}
	err = WaitFor(ctx, 30*time.Second, "endpoint "+podIP+" not ready", func(ctx context.Context) (bool, error) {
		e, _, err := endpoint(ctx)
		return e != nil && e.Conditions.Ready != nil && !*e.Conditions.Ready, err
	})
	if err != nil {
		t.Fatal(err)
	}

	if err := c.DeletePodObject(ctx, ns, "web-1"); err != nil {
		t.Fatal(err)
	}
	err = WaitFor(ctx, 30*time.Second, "endpoint "+podIP+" removed", func(ctx context.Context) (bool, error) {
		e, _, err := endpoint(ctx)
		return e == nil, err
	})
	if err != nil {
		t.Fatal(err)
	}

	// Deleting the Service lets the garbage collector remove its slices (owner references).
	if err := c.Client.CoreV1().Services(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = WaitFor(ctx, 60*time.Second, "the service's slices to be collected", func(ctx context.Context) (bool, error) {
		slices, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=web"})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return err == nil && len(slices.Items) == 0, err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Running local-up.sh on a running cluster keeps the running control plane and nodes.
func TestUpIsIdempotent(t *testing.T) {
	c := testCluster
	ctx := context.Background()
	pidBefore, err := os.ReadFile(filepath.Join(c.State, "pids", "kube-apiserver.pid"))
	if err != nil {
		t.Fatal(err)
	}
	uidBefore := nodeUID(t, c, 1)
	again, err := Up(ctx, Options{Nodes: len(c.Nodes), Proxy: ProxyNone, State: c.State})
	if err != nil {
		t.Fatalf("second local-up.sh: %v", err)
	}
	pidAfter, err := os.ReadFile(filepath.Join(c.State, "pids", "kube-apiserver.pid"))
	if err != nil {
		t.Fatal(err)
	}
	if string(pidBefore) != string(pidAfter) {
		t.Errorf("kube-apiserver restarted: pid %s then %s", pidBefore, pidAfter)
	}
	if uid := nodeUID(t, again, 1); uid != uidBefore {
		t.Errorf("node sy-node-1 was recreated: uid %s then %s", uidBefore, uid)
	}
	if out, err := c.NodeExec(ctx, 1, "ip", "-br", "link"); err != nil || strings.Count(out, "eth0") != 1 {
		t.Errorf("node 1 links after a second up: %q %v", out, err)
	}
}

func nodeUID(t *testing.T, c *Cluster, i int) string {
	t.Helper()
	n, err := c.Client.CoreV1().Nodes().Get(context.Background(), c.Node(i).Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return string(n.UID)
}

// Upstream kube-proxy, run by the harness in every node, serves the kubernetes Service: proof
// that node namespaces, node credentials and the relays carry a real proxy (the side-by-side
// bench relies on exactly this), and a reference for what Switchyard must do in the same place.
func TestUpstreamKubeProxyServesKubernetesService(t *testing.T) {
	c := testCluster
	c.DumpOnFailure(t)
	ctx := context.Background()
	if _, err := Up(ctx, Options{Nodes: len(c.Nodes), Proxy: ProxyKubeProxy, State: c.State}); err != nil {
		t.Fatalf("local-up.sh --proxy kube-proxy: %v", err)
	}
	t.Cleanup(func() {
		// Stop kube-proxy again and remove its rules so later tests see bare nodes.
		if _, err := Up(ctx, Options{Nodes: len(c.Nodes), Proxy: ProxyNone, State: c.State}); err != nil {
			t.Errorf("local-up.sh --proxy none: %v", err)
		}
		for _, n := range c.Nodes {
			if out, err := c.NodeExec(ctx, n.Index, filepath.Join(mustEnv(t, c, "SY_K8S_BIN"), "kube-proxy"), "--cleanup"); err != nil {
				t.Errorf("kube-proxy --cleanup on %s: %v %s", n.Name, err, out)
			}
		}
	})
	pki := filepath.Join(c.State, "pki")
	for _, n := range c.Nodes {
		// A node-local client through the ClusterIP: OUTPUT-chain DNAT to 192.168.50.1:6443.
		// kube-proxy reports healthy before its first sync, so wait for the rules; each try is
		// a new connection (a SYN sent before the DNAT rule exists stays un-NATed in conntrack).
		var out string
		var err error
		waitErr := WaitFor(ctx, 30*time.Second, n.Name+" through https://10.96.0.1", func(ctx context.Context) (bool, error) {
			out, err = c.NodeExec(ctx, n.Index, "curl", "-sS", "--max-time", "2", "--cacert",
				filepath.Join(pki, "ca.crt"), "https://10.96.0.1/readyz")
			return err == nil && out == "ok", nil
		})
		if waitErr != nil {
			t.Errorf("node %s to https://10.96.0.1/readyz through kube-proxy: %v (last: %q %v)", n.Name, waitErr, out, err)
		}
	}
}

func mustEnv(t *testing.T, c *Cluster, key string) string {
	t.Helper()
	env, err := readEnv(filepath.Join(c.State, "state.env"))
	if err != nil || env[key] == "" {
		t.Fatalf("state.env %s: %v", key, err)
	}
	return env[key]
}

// The API server's state lives in etcd: stopping it and bringing it back (an outage scenario's
// mechanics) keeps every object, and the nodes reach it again through their relays.
func TestAPIServerStopAndRestart(t *testing.T) {
	c := testCluster
	c.DumpOnFailure(t)
	ctx := context.Background()
	uid := nodeUID(t, c, 2)
	if err := c.StopProcess(ctx, ProcessAPIServer); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PID(ProcessAPIServer); err == nil {
		t.Fatal("kube-apiserver still running after StopProcess")
	}
	if out, err := c.NodeExec(ctx, 2, "curl", "-sk", "--max-time", "2", "https://127.0.0.1:6443/readyz"); err == nil {
		t.Errorf("node 2 still reaches an API server while it is stopped: %q", out)
	}
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got := nodeUID(t, c, 2); got != uid {
		t.Errorf("node sy-node-2 uid %s after restart, want %s (state lost)", got, uid)
	}
	if out, err := c.NodeExec(ctx, 2, "curl", "-sS", "--max-time", "5", "--cacert",
		filepath.Join(c.State, "pki", "ca.crt"), "https://127.0.0.1:6443/readyz"); err != nil || out != "ok" {
		t.Errorf("node 2 to the restarted API server: %q %v", out, err)
	}
}
