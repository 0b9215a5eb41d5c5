//go:build e2e

package cluster

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/switchyard/switchyard/e2e/framework/echo"
)

// Real pods: namespaces wired by switchyard-cni on nodes running switchyard with the VXLAN pod
// network, each running the echo server. This proves the harness's pod path end to end; the
// scenario suites build on it. It needs a working cmd/switchyard (or SWITCHYARD_BIN_DIR).
func TestEchoPodsAnswerAcrossNodes(t *testing.T) {
	c := testCluster
	c.DumpOnFailure(t)
	ctx := context.Background()
	if _, err := Up(ctx, Options{Nodes: len(c.Nodes), Proxy: ProxySwitchyard, State: c.State}); err != nil {
		t.Fatalf("local-up.sh --proxy switchyard: %v", err)
	}
	const ns = "e2e-pods"
	pods := map[string]int{"echo-a": 1, "echo-b": 3}
	ips := map[string]string{}
	t.Cleanup(func() {
		for name, node := range pods {
			if err := c.RemoveEchoPod(ctx, node, ns, name); err != nil {
				t.Errorf("remove pod %s: %v", name, err)
			}
		}
		_ = c.Client.CoreV1().Services(ns).Delete(ctx, "echo", metav1.DeleteOptions{})
		if _, err := Up(ctx, Options{Nodes: len(c.Nodes), Proxy: ProxyNone, State: c.State}); err != nil {
			t.Errorf("local-up.sh --proxy none: %v", err)
		}
		for _, n := range c.Nodes {
			if out, err := c.NodeExec(ctx, n.Index, filepath.Join(c.State, "bin", "switchyard"), "--cleanup"); err != nil {
				// kube-proxy's --cleanup contract: remove every rule it made, exit 0.
				t.Errorf("switchyard --cleanup on %s (after the daemon stopped): %v %s", n.Name, err, out)
			}
		}
	})
	for name, node := range pods {
		ip, err := c.AddEchoPod(ctx, node, ns, name, map[string]string{"app": "echo"})
		if err != nil {
			t.Fatalf("add pod %s on node %d: %v", name, node, err)
		}
		if net.ParseIP(ip) == nil {
			t.Fatalf("pod %s: %q is not an IP", name, ip)
		}
		cidr, err := c.NodePodCIDR(ctx, node)
		if err != nil {
			t.Fatal(err)
		}
		if !cidr.Contains(mustAddr(t, ip)) {
			t.Errorf("pod %s IP %s outside its node's pod CIDR %s", name, ip, cidr)
		}
		ips[name] = ip
	}

	// Pod to pod across nodes over the overlay: no NAT, so the server sees the client pod's IP.
	out, err := c.PodExec(ctx, ns, "echo-a", "curl", "-sS", "--max-time", "5", fmt.Sprintf("http://%s:8080/", ips["echo-b"]))
	if err != nil {
		t.Fatalf("echo-a to echo-b: %v", err)
	}
	pod, client, err := echo.ParseAnswer(out)
	if err != nil {
		t.Fatal(err)
	}
	if pod != ns+"/echo-b" || hostOf(t, client) != ips["echo-a"] {
		t.Errorf("echo-a to echo-b answered by %s seeing client %s; want %s/echo-b seeing %s", pod, client, ns, ips["echo-a"])
	}

	// Through a ClusterIP: the proxy spreads connections over both pods.
	svc, err := c.Client.CoreV1().Services(ns).Create(ctx, &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: v1.ServiceSpec{
			Selector: map[string]string{"app": "echo"},
			Ports:    []v1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: v1.ProtocolTCP}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := 0; i < 60 && len(seen) < 2; i++ {
		out, err := c.PodExec(ctx, ns, "echo-a", "curl", "-sS", "--max-time", "2", "http://"+svc.Spec.ClusterIP+"/")
		if err != nil {
			continue // the rules may not be in place yet
		}
		if pod, _, err := echo.ParseAnswer(out); err == nil {
			seen[pod] = true
		}
	}
	if !seen[ns+"/echo-a"] || !seen[ns+"/echo-b"] {
		t.Errorf("ClusterIP %s answered only by %v in 60 requests; want both pods", svc.Spec.ClusterIP, seen)
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func hostOf(t *testing.T, hostport string) string {
	t.Helper()
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("client address %q: %v", hostport, err)
	}
	return h
}
