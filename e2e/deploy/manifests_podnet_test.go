//go:build e2e

package deploy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
	"github.com/switchyard/switchyard/e2e/framework/manifests"
	"github.com/switchyard/switchyard/podnet"
)

// The pod-network overlay on one node: its kernel-setup init container, then the daemon with the
// overlay's role (nodes patch included), mounts and privileges. It must publish the node's VTEP
// annotations, create the VXLAN device, write the subnet file and install the CNI plugin and conflist
// into the host directories the overlay mounts.
//
// The node publishes VTEP annotations, which the pod networks of the cluster's other nodes would
// then program as a peer; so this runs only on a cluster this package brought up itself.
func TestPodNetworkOverlayRunsUnprivileged(t *testing.T) {
	if !ownCluster {
		t.Skip("NOT RUN: the local cluster belongs to someone else, whose nodes would take this node as a VXLAN peer; run with no cluster up")
	}
	c := testCluster
	ctx := context.Background()
	repo, ds := deployOverlay(ctx, t, "pod-network")
	node := newDeployNode(ctx, t)

	// An underlay of the node's own: a veth pair whose ends both stay in its namespace, and the Node's
	// InternalIP on it (192.168.77.0/24 exists only inside this namespace).
	const underlayIP = "192.168.77.2"
	for _, argv := range [][]string{
		{"ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer"},
		{"ip", "addr", "add", underlayIP + "/24", "dev", "eth0"},
		{"ip", "link", "set", "eth0", "up"},
		{"ip", "link", "set", "eth0-peer", "up"},
	} {
		if _, err := c.Exec(ctx, node, argv...); err != nil {
			t.Fatal(err)
		}
	}
	n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: underlayIP}}
	if _, err := c.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitFor(ctx, 30*time.Second, "a pod CIDR for "+node, func(ctx context.Context) (bool, error) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		return err == nil && n.Spec.PodCIDR != "", err
	}); err != nil {
		t.Fatal(err)
	}

	runInitContainer(t, ds, "kernel-setup", node)

	hostDirs := map[string]string{"cni-bin": t.TempDir(), "cni-conf": t.TempDir(), "run-switchyard": t.TempDir()}
	stop, logPath := startFromManifest(ctx, t, repo, ds, node, mintToken(ctx, t, ds.Spec.Template.Spec.ServiceAccountName), hostDirs)
	defer stop()

	err = cluster.WaitFor(ctx, 90*time.Second, "the pod network on "+node, func(ctx context.Context) (bool, error) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil || n.Annotations[podnet.AnnotationPublicIP] != underlayIP || n.Annotations[podnet.AnnotationVTEPMAC] == "" {
			return false, nil
		}
		code, _ := c.Exec(ctx, node, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", "http://127.0.0.1:10256/healthz")
		return code == "200", nil
	})
	if err != nil {
		t.Fatalf("%v\nswitchyard log:\n%s", err, readLog(logPath))
	}
	if out, err := c.Exec(ctx, node, "ip", "-d", "link", "show", "syvx.1"); err != nil || !strings.Contains(out, "vxlan id 1") {
		t.Errorf("VXLAN device syvx.1 in %s: %q %v", node, out, err)
	}
	for _, f := range []string{
		filepath.Join(hostDirs["cni-bin"], "switchyard-cni"),
		filepath.Join(hostDirs["cni-conf"], podnet.ConflistName),
		filepath.Join(hostDirs["run-switchyard"], "subnet.env"),
	} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("the daemon did not write %s into the host directory mounted for it: %v", f, err)
		}
	}
	for _, bad := range []string{"forbidden", "Forbidden", "permission denied", "read-only file system"} {
		if strings.Contains(readLog(logPath), bad) {
			t.Errorf("switchyard logged %q:\n%s", bad, readLog(logPath))
		}
	}
}

// planInitContainer plans init container name of ds in node, with the host's own paths for its
// hostPath volumes. Its image's command is this machine's: the init containers run /bin/sh.
func planInitContainer(t *testing.T, ds *appsv1.DaemonSet, name, node string) *manifests.ContainerRun {
	t.Helper()
	ic, err := manifests.Container(ds, name)
	if err != nil {
		t.Fatal(err)
	}
	run, err := manifests.PlanContainer(ds, ic, node, ic.Command[0], map[string]string{}, hostSources(t, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// runInitContainer runs init container name of ds to completion in node, as a runtime would.
func runInitContainer(t *testing.T, ds *appsv1.DaemonSet, name, node string) {
	t.Helper()
	out, err := planInitContainer(t, ds, name, node).CombinedOutput()
	if err != nil {
		t.Fatalf("init container %s in %s: %v\n%s", name, node, err, out)
	}
	t.Logf("init container %s: %s", name, strings.TrimSpace(string(out)))
}
