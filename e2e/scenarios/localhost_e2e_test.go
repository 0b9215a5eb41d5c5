//go:build e2e

package scenarios

import (
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
)

// localhostAccepted is the metric that counts packets node ports accepted on 127.0.0.0/8.
const localhostAccepted = "kubeproxy_iptables_localhost_nodeports_accepted_packets_total"

// A process on a node reaches a NodePort at 127.0.0.1, as kube-proxy's default
// --iptables-localhost-nodeports allows, and the node's metrics count what it accepted there.
func TestLocalhostNodePort(t *testing.T) {
	s := newScenario(t, "e2e-localhost")
	webPods(s)
	svc := s.service("web", map[string]string{"app": "web"}, func(svc *v1.Service) { svc.Spec.Type = v1.ServiceTypeNodePort })
	np := svc.Spec.Ports[0].NodePort
	const node = 3
	self := s.c.Node(node)
	before := s.metric(node, localhostAccepted)
	s.waitAnswers(self.Name, hostPort("127.0.0.1", np), s.qualified("web-1"), s.qualified("web-2"))
	if after := s.metric(node, localhostAccepted); after < before+2 {
		t.Errorf("%s on %s went from %v to %v; two backends answered on 127.0.0.1, so it should have grown by 2 or more", localhostAccepted, self.Name, before, after)
	}
	// The route_localnet it needs is the node's own, set by switchyard.
	if out, err := s.c.NodeExec(s.ctx, node, "cat", "/proc/sys/net/ipv4/conf/all/route_localnet"); err != nil || strings.TrimSpace(out) != "1" {
		t.Errorf("route_localnet on %s: %q, %v; want 1", self.Name, out, err)
	}
}

// metric reads a metric without labels from node i's switchyard (its --metrics-bind-address is
// 127.0.0.1:10249 in the node's namespace).
func (s *scenario) metric(node int, name string) float64 {
	s.t.Helper()
	var out string
	var err error
	for try := 0; try < 10; try++ {
		if out, err = s.c.NodeExec(s.ctx, node, "curl", "-sS", "--max-time", "5", "http://127.0.0.1:10249/metrics"); err == nil {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		s.t.Fatalf("metrics of node %d: %v", node, err)
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				s.t.Fatalf("metric line %q: %v", line, err)
			}
			return f
		}
	}
	s.t.Fatalf("node %d exports no %s", node, name)
	return 0
}
