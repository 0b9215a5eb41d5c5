//go:build ipvsvm

package ipvsvm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
	"github.com/switchyard/switchyard/internal/netnstest"
)

// The VM node as the API server knows it. 10.0.2.15 is the guest's eth0 under qemu's user-mode
// network (hack/vm/README.md).
const (
	vmNodeName = "vm-node"
	vmNodeIP   = "10.0.2.15"
)

// backendIPs are the addresses TestGuest gives its backend namespaces inside the VM, in the order
// of backendNames.
var (
	backendNames = []string{"backend-a", "backend-b"}
	backendIPs   = []string{"10.244.9.2", "10.244.10.2"}
)

// guestScenarios are the subtests TestGuest must report as passed; a skipped or missing one fails
// the host test, so the target never reports a scenario it did not run.
var guestScenarios = []string{
	"ClusterIP_from_the_node",
	"ClusterIP_from_a_pod",
	"NodePort_from_the_node",
	"NodePort_from_outside",
	"explain_ClusterIP_from_a_pod",
	"explain_NodePort_from_outside",
	"explain_check",
}

func TestIPVSVM(t *testing.T) {
	netnstest.Require(t)
	start := time.Now()
	ctx := context.Background()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()

	// Both binaries run in the VM, which has no C library: build them static.
	build := func(args ...string) {
		cmd := exec.Command("go", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	build("build", "-o", filepath.Join(tmp, "switchyard"), "./cmd/switchyard")
	build("test", "-c", "-tags", "ipvsvm", "-o", filepath.Join(tmp, "guest.test"), "./e2e/ipvsvm")
	t.Logf("static binaries built in %s", time.Since(start).Round(time.Second))

	state := os.Getenv("SWITCHYARD_STATE")
	if state == "" {
		state = "/tmp/switchyard-local"
	}
	// A cluster a developer already brought up is used and left running, as in e2e/scenarios.
	_, err = os.Stat(filepath.Join(state, "state.env"))
	reuse := err == nil
	c, err := cluster.Up(ctx, cluster.Options{Nodes: 1, Proxy: cluster.ProxyNone, PodNetwork: "none",
		State: state, Reuse: reuse})
	if c != nil {
		t.Cleanup(func() {
			if err := c.Down(context.Background(), ""); err != nil {
				t.Errorf("tear the control plane down: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("control plane up: %v", err)
	}
	t.Logf("control plane up after %s", time.Since(start).Round(time.Second))

	suffix := make([]byte, 3)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatal(err)
	}
	namespace := "ipvsvm-" + hex.EncodeToString(suffix)
	clusterIP, nodePort := createObjects(ctx, t, c, namespace)
	t.Logf("service %s/web: ClusterIP %s:80, NodePort %s:%d", namespace, clusterIP, vmNodeIP, nodePort)

	kubeconfig := filepath.Join(state, "vm.kubeconfig")
	if _, err := os.Stat(kubeconfig); err != nil {
		t.Fatalf("the VM's kubeconfig (written by hack/local-up.sh): %v", err)
	}
	var out bytes.Buffer
	cmd := exec.Command(filepath.Join(repo, "hack/vm/run.sh"), "-v", "--timeout", "900",
		"--env", "SWITCHYARD_PRIVILEGED=1",
		"--env", envGuest+"=1",
		"--env", envNamespace+"="+namespace,
		"--env", envClusterIP+"="+clusterIP,
		"--env", envNodePort+"="+strconv.Itoa(int(nodePort)),
		"--files", filepath.Join(tmp, "switchyard")+":/root/switchyard",
		"--files", kubeconfig+":/root/vm.kubeconfig",
		filepath.Join(tmp, "guest.test"), "-test.v", "-test.count=1", "-test.run", "^TestGuest$")
	cmd.Dir = repo
	cmd.Stdout = io.MultiWriter(os.Stdout, &out)
	cmd.Stderr = os.Stderr
	vmStart := time.Now()
	runErr := cmd.Run()
	t.Logf("VM run took %s", time.Since(vmStart).Round(time.Second))
	if runErr != nil {
		t.Fatalf("TestGuest in the VM failed (%v); its output is above", runErr)
	}
	for _, name := range guestScenarios {
		if !strings.Contains(out.String(), "--- PASS: TestGuest/"+name+" ") {
			t.Errorf("scenario %s did not pass in the VM (see the output above)", name)
		}
	}
	t.Logf("total %s", time.Since(start).Round(time.Second))
}

// createObjects writes the VM's Node object, a NodePort Service without a selector and a
// hand-written EndpointSlice whose endpoints are the backend namespaces TestGuest makes, and
// returns the ClusterIP and NodePort the API server allocated. Everything is removed on cleanup.
func createObjects(ctx context.Context, t *testing.T, c *cluster.Cluster, namespace string) (string, int32) {
	t.Helper()
	client := c.Client
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: vmNodeName, Labels: map[string]string{"kubernetes.io/hostname": vmNodeName}}}
	_, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) { // a kept cluster may hold one from an interrupted run
		t.Fatalf("create node %s: %v", vmNodeName, err)
	}
	t.Cleanup(func() {
		if err := client.CoreV1().Nodes().Delete(context.Background(), vmNodeName, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete node %s: %v", vmNodeName, err)
		}
	})
	// kube-controller-manager's nodeipam writes spec.podCIDR right after the create, so the status
	// update can meet a newer version: read it again and retry on a conflict.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := client.CoreV1().Nodes().Get(ctx, vmNodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: vmNodeIP}, {Type: v1.NodeHostName, Address: vmNodeName}}
		n.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "IPVSVM",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		_, err = client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("set node %s's addresses: %v", vmNodeName, err)
	}

	if err := c.EnsureNamespace(ctx, namespace); err != nil {
		t.Fatalf("namespace %s: %v", namespace, err)
	}
	t.Cleanup(func() {
		if err := client.CoreV1().Namespaces().Delete(context.Background(), namespace, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete namespace %s: %v", namespace, err)
		}
	})
	svc, err := client.CoreV1().Services(namespace).Create(ctx, cluster.EchoService(namespace, "web", v1.ServiceTypeNodePort, nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service: %v", err)
	}
	var endpoints []cluster.Endpoint
	for _, ip := range backendIPs {
		endpoints = append(endpoints, cluster.Endpoint{IP: ip, Node: vmNodeName})
	}
	slice := cluster.EchoEndpointSlice(namespace, "web-vm", "web", "switchyard-e2e-ipvsvm", endpoints...)
	if _, err := client.DiscoveryV1().EndpointSlices(namespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create endpointslice: %v", err)
	}
	if svc.Spec.ClusterIP == "" || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].NodePort == 0 {
		t.Fatalf("service %s/web got no ClusterIP or NodePort: %+v", namespace, svc.Spec)
	}
	return svc.Spec.ClusterIP, svc.Spec.Ports[0].NodePort
}

// Environment TestIPVSVM hands to TestGuest.
const (
	envGuest     = "SWITCHYARD_IPVSVM_GUEST"
	envNamespace = "IPVSVM_NAMESPACE"
	envClusterIP = "IPVSVM_CLUSTER_IP"
	envNodePort  = "IPVSVM_NODE_PORT"
)
