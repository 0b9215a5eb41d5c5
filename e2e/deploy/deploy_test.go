//go:build e2e

package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
	"github.com/switchyard/switchyard/e2e/framework/manifests"
)

// These tests run the deployment against the local cluster (hack/local-up.sh): every overlay is
// server-side applied to the real API server and read back; then the iptables overlay's DaemonSet is
// started as a container runtime would start it, on a node namespace of its own, with a token minted
// for its ServiceAccount and nothing else, the ConfigMap it names and its exact command line.
//
// Run as root: go test -tags e2e -count=1 -v ./e2e/deploy/
// A cluster that is already up (state in $SWITCHYARD_STATE, default /tmp/switchyard-local) is used as
// it is and left running; otherwise one node is brought up with no proxy and removed afterwards. The
// tests only add objects, namespaces and node namespaces of their own (sy-deploy-*), and remove them.
// The machine has room for one local cluster; e2e/framework/cluster's lock makes test processes take turns.

var testCluster *cluster.Cluster

// ownCluster is true when this package brought the cluster up (and will take it down), so tests may
// do what would disturb other users of a shared cluster.
var ownCluster bool

const fieldManager = "switchyard-e2e-deploy"

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctx := context.Background()
	state := cluster.StateDir()
	// A state directory means a cluster is up or on its way up (another package's TestMain, a
	// developer's shell): wait for it rather than racing its local-up.sh with ours.
	if _, err := os.Stat(state); err == nil {
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			// Attach waits for the machine's cluster lock (e2e/framework/cluster/lock.go), so no other test
			// process uses the cluster while this one does.
			if c, err := cluster.Attach(state); err == nil {
				if _, err := c.Client.Discovery().ServerVersion(); err == nil {
					fmt.Fprintf(os.Stderr, "using the local cluster already up in %s\n", state)
					testCluster = c
					defer c.Release()
					return m.Run()
				}
				c.Release()
			}
			time.Sleep(time.Second)
		}
		fmt.Fprintf(os.Stderr, "%s exists but its cluster did not answer within 90s; bringing it up\n", state)
	}
	c := cluster.UpForTests(ctx, cluster.Options{Nodes: 1, Proxy: cluster.ProxyNone, EchoPods: 0, State: state})
	if c == nil {
		return 1
	}
	testCluster, ownCluster = c, true
	code := m.Run()
	if err := c.Down(ctx, ""); err != nil {
		fmt.Fprintf(os.Stderr, "cluster down: %v\n", err)
		return 1
	}
	return code
}

// repoCleanedAfter returns the repository root and has what the test applies deleted when it ends.
func repoCleanedAfter(t *testing.T) string {
	t.Helper()
	repo, err := manifests.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteApplied(context.Background(), testCluster.Client) })
	return repo
}

// deployOverlay renders deploy/overlays/<overlay>, applies it (deleted again when the test ends) and
// returns the repository root and the overlay's DaemonSet.
func deployOverlay(ctx context.Context, t *testing.T, overlay string) (repo string, ds *appsv1.DaemonSet) {
	t.Helper()
	repo = repoCleanedAfter(t)
	m, err := manifests.BuildOverlay(repo, overlay)
	if err != nil {
		t.Fatal(err)
	}
	applyOverlay(ctx, t, m)
	if ds, err = m.DaemonSet(); err != nil {
		t.Fatal(err)
	}
	return repo, ds
}

// applyOverlay server-side applies every object of m with strict field validation, so a field the
// API server does not know fails the apply, and returns what the server stored.
func applyOverlay(ctx context.Context, t *testing.T, m *manifests.Manifest) map[string]*unstructured.Unstructured {
	t.Helper()
	dyn, err := dynamic.NewForConfig(testCluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := restmapper.GetAPIGroupResources(testCluster.Client.Discovery())
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	stored := map[string]*unstructured.Unstructured{}
	for _, obj := range m.Objects {
		gvk := obj.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: %s: %v", m.Overlay, gvk, err)
		}
		var res dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if ns := obj.GetNamespace(); ns != "" {
			res = dyn.Resource(mapping.Resource).Namespace(ns)
		}
		body, err := json.Marshal(obj.Object)
		if err != nil {
			t.Fatal(err)
		}
		key := obj.GetKind() + "/" + obj.GetName()
		if _, err := res.Patch(ctx, obj.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
			FieldManager: fieldManager, Force: ptr.To(true), FieldValidation: "Strict"}); err != nil {
			t.Fatalf("%s: server-side apply %s: %v", m.Overlay, key, err)
		}
		got, err := res.Get(ctx, obj.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: read back %s: %v", m.Overlay, key, err)
		}
		// The server adds defaults and metadata, but everything the manifest says must be stored as said.
		for _, d := range subsetDiff(obj.Object, got.Object, "") {
			t.Errorf("%s: %s read back differs: %s", m.Overlay, key, d)
		}
		stored[key] = got
	}
	return stored
}

// subsetDiff lists where want is not contained in got.
func subsetDiff(want, got any, path string) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %T", path, got)}
		}
		var out []string
		for k, v := range w {
			if _, present := g[k]; !present {
				out = append(out, fmt.Sprintf("%s.%s: missing", path, k))
				continue
			}
			out = append(out, subsetDiff(v, g[k], path+"."+k)...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: got %v, want %v", path, got, want)}
		}
		var out []string
		for i := range w {
			out = append(out, subsetDiff(w[i], g[i], fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	default:
		if fmt.Sprint(want) != fmt.Sprint(got) {
			return []string{fmt.Sprintf("%s: got %v, want %v", path, got, want)}
		}
		return nil
	}
}

// deleteApplied removes what the overlays created (they share names, so one pass suffices).
func deleteApplied(ctx context.Context, c kubernetes.Interface) {
	bg := metav1.DeleteOptions{}
	_ = c.AppsV1().DaemonSets("kube-system").Delete(ctx, "switchyard", bg)
	_ = c.CoreV1().ConfigMaps("kube-system").Delete(ctx, "switchyard-cni-config", bg)
	_ = c.RbacV1().ClusterRoleBindings().Delete(ctx, "switchyard", bg)
	_ = c.RbacV1().ClusterRoles().Delete(ctx, "switchyard", bg)
	_ = c.CoreV1().ServiceAccounts("kube-system").Delete(ctx, "switchyard", bg)
}

func TestDeployAppliesAndRunsWithItsOwnIdentity(t *testing.T) {
	c := testCluster
	ctx := context.Background()
	repo := repoCleanedAfter(t)

	// 1. Every overlay applies and reads back. The iptables overlay goes last: its objects (the
	// least-privilege ClusterRole above all) are what the rest of the test runs with.
	var iptablesManifest *manifests.Manifest
	for _, o := range []string{"ipvs", "pod-network", "iptables"} {
		m, err := manifests.BuildOverlay(repo, o)
		if err != nil {
			t.Fatal(err)
		}
		applyOverlay(ctx, t, m)
		iptablesManifest = m
	}
	if t.Failed() {
		t.FailNow()
	}
	// Server-side apply dropped the pod network's extra grant when the iptables overlay was applied.
	role, err := c.Client.RbacV1().ClusterRoles().Get(ctx, "switchyard", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			if v == "patch" {
				t.Fatalf("ClusterRole after applying the iptables overlay still grants patch: %+v", role.Rules)
			}
		}
	}
	ds, err := iptablesManifest.DaemonSet()
	if err != nil {
		t.Fatal(err)
	}

	// 2. A token for the ServiceAccount, and nothing else: the rights are exactly the ClusterRole's.
	token := mintToken(ctx, t, ds.Spec.Template.Spec.ServiceAccountName)
	checkRBAC(ctx, t, tokenClient(t, token))

	// 3. A node of our own: a network namespace with an API relay on its loopback, and its Node.
	node := newDeployNode(ctx, t)

	// The emulation is strict: the daemon's container cannot write /proc/sys; and the pod network's
	// kernel-setup init container, unprivileged, still sets ip_forward in the node's namespace.
	checkSysctlPrivilege(ctx, t, repo, ds, node)

	// 4. The daemon, started exactly as the DaemonSet says, with kubeadm's ConfigMap.
	stop, logPath := startFromManifest(ctx, t, repo, ds, node, token, nil)

	// It syncs: /healthz answers 200, and a Service created now gets its DNAT rule on the node.
	if err := cluster.WaitFor(ctx, 60*time.Second, "switchyard /healthz 200 in "+node, func(ctx context.Context) (bool, error) {
		out, _ := c.Exec(ctx, node, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", "http://127.0.0.1:10256/healthz")
		return out == "200", nil
	}); err != nil {
		t.Fatalf("%v\nswitchyard log:\n%s", err, readLog(logPath))
	}
	clusterIP := createProbe(ctx, t, "e2e-deploy", "10.244.99.10")
	rule := "DNAT --to-destination 10.244.99.10:8080"
	if err := cluster.WaitFor(ctx, 60*time.Second, "the DNAT rule of Service probe ("+clusterIP+") in "+node, func(ctx context.Context) (bool, error) {
		r := nodeRules(ctx, node)
		return strings.Contains(r, rule) && strings.Contains(r, "-d "+clusterIP+"/32"), nil
	}); err != nil {
		t.Fatalf("%v\nrules:\n%s\nswitchyard log:\n%s", err, nodeRules(ctx, node), readLog(logPath))
	}
	for _, bad := range []string{"forbidden", "Forbidden", "permission denied", "read-only file system"} {
		if strings.Contains(readLog(logPath), bad) {
			t.Errorf("switchyard logged %q while running with the manifest's identity and privileges:\n%s", bad, readLog(logPath))
		}
	}

	// Stopping the daemon (a rolling update, a crash) leaves its rules in force.
	stop()
	if !strings.Contains(nodeRules(ctx, node), rule) {
		t.Errorf("the DNAT rule of %s is gone after switchyard stopped", clusterIP)
	}
}

// createProbe creates namespace ns (removed after the test) with Service "probe" (TCP 80) and an
// EndpointSlice of its own with one ready endpoint at ip:8080 (no pods run here), and returns the
// Service's ClusterIP. A proxy that watches both programs a DNAT to ip:8080.
func createProbe(ctx context.Context, t *testing.T, ns, ip string) string {
	t.Helper()
	c := testCluster
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	svc, err := c.Client.CoreV1().Services(ns).Create(ctx, &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		Spec:       v1.ServiceSpec{Ports: []v1.ServicePort{{Port: 80, Protocol: v1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "probe-1", Labels: map[string]string{discoveryv1.LabelServiceName: "probe"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Port: ptr.To[int32](8080), Protocol: ptr.To(v1.ProtocolTCP)}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc.Spec.ClusterIP
}

// mintToken returns a token for ServiceAccount kube-system/name from the TokenRequest API.
func mintToken(ctx context.Context, t *testing.T, name string) string {
	t.Helper()
	tok, err := testCluster.Client.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, name,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for ServiceAccount %s: %v", name, err)
	}
	return tok.Status.Token
}

// startFromManifest starts the daemon container of ds in node as a container runtime would: the
// ConfigMap it mounts read from the API server (kubeadm's, from cmd/switchyard/testdata, when the
// cluster has none) with the API address of this cluster as a node sees it (its relay on
// 127.0.0.1:6443), and token with the cluster's CA where the kubelet puts a service account's.
func startFromManifest(ctx context.Context, t *testing.T, repo string, ds *appsv1.DaemonSet, node, token string, sources map[string]string) (stop func(), logPath string) {
	t.Helper()
	c := testCluster
	cmName := ""
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.Name == "kube-proxy" && v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
		}
	}
	if cmName != "kube-proxy" {
		t.Fatalf("the DaemonSet does not mount the kube-proxy ConfigMap (volume kube-proxy -> %q)", cmName)
	}
	ensureKubeadmConfigMap(ctx, t, repo)
	cm, err := c.Client.CoreV1().ConfigMaps("kube-system").Get(ctx, cmName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bin := buildSwitchyard(t, repo)
	cmDir := t.TempDir()
	for k, v := range cm.Data {
		if err := os.WriteFile(filepath.Join(cmDir, k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	saDir := t.TempDir()
	ca := c.Config.TLSClientConfig.CAData
	if len(ca) == 0 {
		if ca, err = os.ReadFile(c.Config.TLSClientConfig.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string][]byte{"token": []byte(token), "ca.crt": ca, "namespace": []byte("kube-system")} {
		if err := os.WriteFile(filepath.Join(saDir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	all := map[string]string{"kube-proxy": cmDir}
	for k, v := range sources {
		all[k] = v
	}
	run, err := manifests.PlanContainer(ds, &ds.Spec.Template.Spec.Containers[0], node, bin,
		map[string]string{"spec.nodeName": node}, hostSources(t, all), map[string]string{manifests.ServiceAccountDir: saDir})
	if err != nil {
		t.Fatal(err)
	}
	undo, err := run.PrepareMountpoints()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(undo)
	logPath = filepath.Join(t.TempDir(), "switchyard.log")
	return startContainer(t, run, logPath), logPath
}

// ensureKubeadmConfigMap applies cmd/switchyard/testdata's kubeadm ConfigMap unless kube-system
// already has a kube-proxy ConfigMap (then that one is used as it is, and kept).
func ensureKubeadmConfigMap(ctx context.Context, t *testing.T, repo string) {
	t.Helper()
	c := testCluster.Client
	if _, err := c.CoreV1().ConfigMaps("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{}); err == nil {
		t.Log("using the cluster's existing kube-system/kube-proxy ConfigMap")
		return
	} else if !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	cm, err := manifests.KubeadmConfigMap(repo)
	if err != nil {
		t.Fatal(err)
	}
	// kubeadm writes its control-plane endpoint here; a node of this cluster reaches the API server
	// through its relay on loopback.
	kc := cm.Data["kubeconfig.conf"]
	if !strings.Contains(kc, "server: https://10.0.0.1:6443") {
		t.Fatalf("testdata kubeconfig.conf changed; update this test:\n%s", kc)
	}
	cm.Data["kubeconfig.conf"] = strings.Replace(kc, "server: https://10.0.0.1:6443", "server: https://127.0.0.1:6443", 1)
	if _, err := c.CoreV1().ConfigMaps("kube-system").Create(ctx, cm, metav1.CreateOptions{FieldManager: fieldManager}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.CoreV1().ConfigMaps("kube-system").Delete(context.Background(), "kube-proxy", metav1.DeleteOptions{})
	})
}

// checkSysctlPrivilege runs, in node's namespace, a write to /proc/sys with the daemon container's
// privileges (it must fail, as under a container runtime) and the pod-network overlay's kernel-setup
// init container (it must set net.ipv4.ip_forward there without being privileged).
func checkSysctlPrivilege(ctx context.Context, t *testing.T, repo string, ds *appsv1.DaemonSet, node string) {
	t.Helper()
	daemon, err := manifests.PlanContainer(ds, &ds.Spec.Template.Spec.Containers[0], node, "/bin/sh",
		map[string]string{"spec.nodeName": node}, hostSources(t, map[string]string{"kube-proxy": t.TempDir()}), nil)
	if err != nil {
		t.Fatal(err)
	}
	daemon.Argv = []string{"/bin/sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"}
	out, err := daemon.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Read-only file system") {
		t.Errorf("writing /proc/sys with the daemon container's privileges: err %v, output %q; want a read-only file system", err, out)
	}

	pn, err := manifests.BuildOverlay(repo, "pod-network")
	if err != nil {
		t.Fatal(err)
	}
	pds, err := pn.DaemonSet()
	if err != nil {
		t.Fatal(err)
	}
	init := planInitContainer(t, pds, "kernel-setup", node)
	if init.Privileged {
		t.Fatalf("kernel-setup is privileged")
	}
	// A new network namespace starts with forwarding off, so 1 afterwards is kernel-setup's doing.
	if before, _ := testCluster.Exec(ctx, node, "cat", "/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(before) != "0" {
		t.Fatalf("net.ipv4.ip_forward in the new namespace %s is %q, want 0 before kernel-setup", node, before)
	}
	if out, err = init.CombinedOutput(); err != nil {
		t.Fatalf("pod-network kernel-setup in %s: %v\n%s", node, err, out)
	}
	t.Logf("pod-network kernel-setup: %s", strings.TrimSpace(string(out)))
	if got, err := testCluster.Exec(ctx, node, "cat", "/proc/sys/net/ipv4/ip_forward"); err != nil || strings.TrimSpace(got) != "1" {
		t.Errorf("net.ipv4.ip_forward in %s after kernel-setup = %q (%v), want 1", node, got, err)
	}
}

// hostSources adds to sources an empty directory for /lib/modules when this machine has none: a
// container runtime creates a missing hostPath directory on the node, and the test must not create
// it on this machine. Everything else is mounted from the host as the manifest says.
func hostSources(t *testing.T, sources map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range sources {
		out[k] = v
	}
	if _, err := os.Stat("/lib/modules"); err != nil {
		t.Logf("this machine has no /lib/modules; mounting an empty directory in its place")
		out["lib-modules"] = t.TempDir()
	}
	return out
}

func tokenClient(t *testing.T, token string) kubernetes.Interface {
	t.Helper()
	cfg := rest.AnonymousClientConfig(testCluster.Config)
	cfg.BearerToken = token
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// checkRBAC asserts what the ServiceAccount may and may not do with the iptables overlay's role.
func checkRBAC(ctx context.Context, t *testing.T, sa kubernetes.Interface) {
	t.Helper()
	if _, err := sa.CoreV1().Services("").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		t.Errorf("the ServiceAccount cannot list Services: %v", err)
	}
	if _, err := sa.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		t.Errorf("the ServiceAccount cannot list EndpointSlices: %v", err)
	}
	if _, err := sa.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		t.Errorf("the ServiceAccount cannot list Nodes: %v", err)
	}
	_, err := sa.CoreV1().Services("default").Create(ctx, &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "switchyard-must-not-write"},
		Spec:       v1.ServiceSpec{Ports: []v1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("creating a Service with the ServiceAccount's token: err = %v, want Forbidden", err)
		_ = testCluster.Client.CoreV1().Services("default").Delete(ctx, "switchyard-must-not-write", metav1.DeleteOptions{})
	}
	nodes, err := testCluster.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
	if err == nil && len(nodes.Items) > 0 {
		_, err = sa.CoreV1().Nodes().Patch(ctx, nodes.Items[0].Name, types.MergePatchType,
			[]byte(`{"metadata":{"annotations":{"switchyard.io/e2e":"x"}}}`), metav1.PatchOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("patching a Node with the iptables overlay's role: err = %v, want Forbidden", err)
		}
	}
	if _, err := sa.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{Limit: 1}); !apierrors.IsForbidden(err) {
		t.Errorf("listing Secrets with the ServiceAccount's token: err = %v, want Forbidden", err)
	}
}

// deployNodes numbers the nodes newDeployNode makes, for unique names.
var deployNodes int

// newDeployNode creates a network namespace standing for one more node, relays the API server to its
// loopback (as hack/lib/nodes.sh does for the cluster's nodes) and registers its Node. Everything is
// removed when the test ends.
func newDeployNode(ctx context.Context, t *testing.T) string {
	t.Helper()
	c := testCluster
	deployNodes++
	name := fmt.Sprintf("sy-deploy-%d-%d", os.Getpid(), deployNodes)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	if _, err := c.Exec(ctx, name, "ip", "link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	relay := exec.Command("ip", "netns", "exec", name, "socat",
		"TCP-LISTEN:6443,bind=127.0.0.1,fork,reuseaddr", "UNIX-CONNECT:"+filepath.Join(c.State, "apiserver.sock"))
	relay.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := relay.Start(); err != nil {
		t.Fatalf("start the API relay in %s: %v", name, err)
	}
	t.Cleanup(func() {
		// The relay's process group: socat and the copies it forked per connection.
		_ = syscall.Kill(-relay.Process.Pid, syscall.SIGTERM)
		_ = relay.Wait()
	})
	_, err := c.Client.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels: map[string]string{"kubernetes.io/os": "linux", "kubernetes.io/hostname": name}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	if err := cluster.WaitFor(ctx, 30*time.Second, "the API relay in "+name, func(ctx context.Context) (bool, error) {
		out, _ := c.Exec(ctx, name, "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "https://127.0.0.1:6443/readyz")
		return out != "" && out != "000", nil
	}); err != nil {
		t.Fatal(err)
	}
	return name
}

func buildSwitchyard(t *testing.T, repo string) string {
	t.Helper()
	if dir := os.Getenv("SWITCHYARD_BIN_DIR"); dir != "" {
		return filepath.Join(dir, "switchyard")
	}
	// Both binaries in one directory, as in the image: the daemon installs the switchyard-cni found
	// next to it.
	dir := t.TempDir()
	bin := filepath.Join(dir, "switchyard")
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/switchyard", "./cmd/switchyard-cni")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/switchyard ./cmd/switchyard-cni: %v\n%s", err, out)
	}
	return bin
}

// startContainer starts run with its output in logPath and returns a function that stops it with
// SIGTERM (as the kubelet does) and waits; the test's cleanup calls it too.
func startContainer(t *testing.T, run *manifests.ContainerRun, logPath string) (stop func()) {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := run.Command()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started %s", strings.Join(run.Argv, " "))
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("switchyard log:\n%s", readLog(logPath))
		}
	})
	return stop
}

// nodeRules is every table of the node in both iptables variants (the daemon picks one).
func nodeRules(ctx context.Context, node string) string {
	var b strings.Builder
	for _, save := range []string{"iptables-nft-save", "iptables-legacy-save"} {
		out, err := testCluster.Exec(ctx, node, save)
		if err == nil {
			b.WriteString(out)
		}
	}
	return b.String()
}

func readLog(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	return string(data)
}
