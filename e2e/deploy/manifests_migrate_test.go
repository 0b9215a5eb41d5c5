//go:build e2e

package deploy

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
)

// The migration of docs/migrate-from-kube-proxy.md on one node, with the real upstream kube-proxy
// the local cluster is built with: kube-proxy programs the node; its DaemonSet is deleted (the
// process stops, its rules stay); Switchyard starts from the manifest; `kube-proxy --cleanup` removes
// kube-proxy's leftovers and nothing of Switchyard's, which goes on serving changes.
func TestMigrationFromKubeProxyOnANode(t *testing.T) {
	c := testCluster
	ctx := context.Background()
	kubeProxy := filepath.Join(stateEnv(t, "SY_K8S_BIN"), "kube-proxy")
	repo, ds := deployOverlay(ctx, t, "iptables")
	node := newDeployNode(ctx, t)
	first := createProbe(ctx, t, "e2e-migrate-a", "10.244.98.10")

	// kube-proxy as hack/lib/proxy.sh runs it in a node namespace (conntrack sysctls left alone).
	kpLog := filepath.Join(t.TempDir(), "kube-proxy.log")
	logFile, err := os.Create(kpLog)
	if err != nil {
		t.Fatal(err)
	}
	kp := exec.Command("ip", "netns", "exec", node, kubeProxy, "--kubeconfig="+c.Kubeconfig,
		"--hostname-override="+node, "--proxy-mode=iptables", "--cluster-cidr=10.244.0.0/16",
		"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
		"--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256")
	kp.Stdout, kp.Stderr = logFile, logFile
	if err := kp.Start(); err != nil {
		t.Fatal(err)
	}
	kpDone := make(chan struct{})
	go func() { _ = kp.Wait(); logFile.Close(); close(kpDone) }()
	stopKubeProxy := func() {
		_ = kp.Process.Signal(syscall.SIGTERM)
		select {
		case <-kpDone:
		case <-time.After(30 * time.Second):
			_ = kp.Process.Kill()
			<-kpDone
		}
	}
	t.Cleanup(stopKubeProxy)
	kubeRule := "-j KUBE-SVC-"
	if err := cluster.WaitFor(ctx, 90*time.Second, "kube-proxy's rules for "+first, func(ctx context.Context) (bool, error) {
		r := nodeRules(ctx, node)
		return strings.Contains(r, "-d "+first+"/32") && strings.Contains(r, kubeRule) && strings.Contains(r, "10.244.98.10:8080"), nil
	}); err != nil {
		t.Fatalf("%v\nrules:\n%s\nkube-proxy log:\n%s", err, nodeRules(ctx, node), readLog(kpLog))
	}

	// Step 1: the DaemonSet is deleted; kube-proxy exits and its rules stay.
	stopKubeProxy()
	if !strings.Contains(nodeRules(ctx, node), kubeRule) {
		t.Fatalf("kube-proxy's rules are gone after it stopped:\n%s", nodeRules(ctx, node))
	}

	// Steps 2 and 3: Switchyard from the manifest, kubeadm's ConfigMap, its own token.
	stop, logPath := startFromManifest(ctx, t, repo, ds, node, mintToken(ctx, t, ds.Spec.Template.Spec.ServiceAccountName), nil)
	defer stop()
	syRule := "-j SY-SVC-"
	if err := cluster.WaitFor(ctx, 60*time.Second, "switchyard's rules for "+first, func(ctx context.Context) (bool, error) {
		r := nodeRules(ctx, node)
		return strings.Contains(r, syRule) && strings.Contains(r, "-d "+first+"/32") && strings.Contains(r, kubeRule), nil
	}); err != nil {
		t.Fatalf("%v\nrules:\n%s\nswitchyard log:\n%s", err, nodeRules(ctx, node), readLog(logPath))
	}
	// Switchyard's jumps come before kube-proxy's in every built-in nat chain both use.
	for _, chain := range []string{"PREROUTING", "OUTPUT"} {
		if order := jumpOrder(nodeRules(ctx, node), chain); len(order) < 2 || order[0] != "SY-SERVICES" {
			t.Errorf("nat %s jumps in order %v, want SY-SERVICES first", chain, order)
		}
	}

	// Step 5: kube-proxy --cleanup takes kube-proxy's chains and leaves Switchyard's.
	if out, err := c.Exec(ctx, node, kubeProxy, "--cleanup"); err != nil {
		t.Fatalf("kube-proxy --cleanup: %v\n%s", err, out)
	}
	r := nodeRules(ctx, node)
	for _, line := range strings.Split(r, "\n") {
		if strings.Contains(line, "KUBE-SERVICES") || strings.Contains(line, "KUBE-SVC-") || strings.Contains(line, "KUBE-SEP-") {
			t.Errorf("kube-proxy --cleanup left %q", line)
		}
	}
	if !strings.Contains(r, syRule) || !strings.Contains(r, "10.244.98.10:8080") {
		t.Fatalf("kube-proxy --cleanup removed Switchyard's rules:\n%s", r)
	}
	// Switchyard still serves changes after the cleanup.
	second := createProbe(ctx, t, "e2e-migrate-b", "10.244.98.20")
	if err := cluster.WaitFor(ctx, 60*time.Second, "switchyard's rules for "+second+" after the cleanup", func(ctx context.Context) (bool, error) {
		r := nodeRules(ctx, node)
		return strings.Contains(r, "-d "+second+"/32") && strings.Contains(r, "10.244.98.20:8080"), nil
	}); err != nil {
		t.Fatalf("%v\nrules:\n%s\nswitchyard log:\n%s", err, nodeRules(ctx, node), readLog(logPath))
	}
}

// jumpOrder lists the targets of the jumps of chain in the nat table of an iptables-save dump, in order.
func jumpOrder(dump, chain string) []string {
	var out []string
	inNat := false
	sc := bufio.NewScanner(strings.NewReader(dump))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "*"):
			inNat = line == "*nat"
		case inNat && strings.HasPrefix(line, "-A "+chain+" "):
			if i := strings.Index(line, " -j "); i >= 0 {
				out = append(out, strings.Fields(line[i+4:])[0])
			}
		}
	}
	return out
}

// stateEnv reads key from the local cluster's state.env.
func stateEnv(t *testing.T, key string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testCluster.State, "state.env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("state.env has no %s", key)
	return ""
}
