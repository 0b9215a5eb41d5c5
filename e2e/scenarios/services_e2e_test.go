//go:build e2e

package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
	"github.com/switchyard/switchyard/proxier/explain"
)

// webPods starts backends web-1 on node 1 and web-2 on node 2 (app=web) and clients on nodes 1
// and 3 (role=client; they run the echo server too, but no service selects them).
func webPods(s *scenario) (web1, web2 string) {
	web1 = s.addPod(1, "web-1", map[string]string{"app": "web"})
	web2 = s.addPod(2, "web-2", map[string]string{"app": "web"})
	s.addPod(1, "client-1", map[string]string{"role": "client"})
	s.addPod(3, "client-3", map[string]string{"role": "client"})
	return web1, web2
}

func hostPort(host string, port int32) string {
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// A ClusterIP reaches a backend on the client's own node and one across the overlay, and neither
// sees a masqueraded source: pod-to-service traffic inside the cluster CIDR keeps the client IP.
func TestClusterIP(t *testing.T) {
	s := newScenario(t, "e2e-clusterip")
	webPods(s)
	svc := s.service("web", map[string]string{"app": "web"}, nil)
	vip := hostPort(svc.Spec.ClusterIP, 80)
	for _, client := range []string{"client-1", "client-3"} {
		seen := s.waitAnswers(s.podNS(client), vip, s.qualified("web-1"), s.qualified("web-2"))
		for pod, a := range seen {
			if a.client != s.pods[client].ip {
				t.Errorf("%s to %s: %s saw client %s, want the pod IP %s", client, vip, pod, a.client, s.pods[client].ip)
			}
		}
	}
}

// A NodePort answers from the underlay (outside the cluster) on every node, and from a node to its
// own address.
func TestNodePort(t *testing.T) {
	s := newScenario(t, "e2e-nodeport")
	webPods(s)
	svc := s.service("web", map[string]string{"app": "web"}, func(svc *v1.Service) { svc.Spec.Type = v1.ServiceTypeNodePort })
	np := svc.Spec.Ports[0].NodePort
	for _, n := range s.c.Nodes {
		s.waitAnswers(s.c.Underlay, hostPort(n.IP, np), s.qualified("web-1"), s.qualified("web-2"))
	}
	self := s.c.Node(3)
	s.waitAnswers(self.Name, hostPort(self.IP, np), s.qualified("web-1"), s.qualified("web-2"))
}

// External IPs and a load-balancer ingress IP written through the status subresource both reach
// the backends when the underlay routes them to a node.
func TestExternalAndLoadBalancerIPs(t *testing.T) {
	s := newScenario(t, "e2e-external")
	webPods(s)
	const externalIP, lbIP = "203.0.113.10", "203.0.113.20"
	s.service("ext", map[string]string{"app": "web"}, func(svc *v1.Service) { svc.Spec.ExternalIPs = []string{externalIP} })
	lb := s.service("lb", map[string]string{"app": "web"}, func(svc *v1.Service) {
		svc.Spec.Type = v1.ServiceTypeLoadBalancer
		svc.Spec.AllocateLoadBalancerNodePorts = new(bool)
	})
	lb.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: lbIP}}
	if _, err := s.c.Client.CoreV1().Services(s.ns).UpdateStatus(s.ctx, lb, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("set the load-balancer IP: %v", err)
	}
	s.underlayRoute(externalIP, 1)
	s.underlayRoute(lbIP, 2)
	s.waitAnswers(s.c.Underlay, hostPort(externalIP, 80), s.qualified("web-1"), s.qualified("web-2"))
	s.waitAnswers(s.c.Underlay, hostPort(lbIP, 80), s.qualified("web-1"), s.qualified("web-2"))
}

// sessionAffinity ClientIP sends every connection of one client to the same backend.
func TestSessionAffinityClientIP(t *testing.T) {
	s := newScenario(t, "e2e-affinity")
	web1, web2 := webPods(s)
	svc := s.service("sticky", map[string]string{"app": "web"}, func(svc *v1.Service) {
		svc.Spec.SessionAffinity = v1.ServiceAffinityClientIP
	})
	// Both backends must be in the rules, or sticking would prove nothing.
	s.waitDNAT(3, web1, web2)
	vip := hostPort(svc.Spec.ClusterIP, 80)
	first := ""
	for i := 0; i < 20; i++ {
		a, err := s.get(s.podNS("client-3"), vip, 5*time.Second)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if first == "" {
			first = a.pod
		}
		if a.pod != first {
			t.Fatalf("request %d answered by %s; the first was answered by %s and affinity should stick", i, a.pod, first)
		}
	}
}

// healthCheck is kube-proxy's answer on a healthCheckNodePort.
type healthCheck struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints int `json:"localEndpoints"`
}

// externalTrafficPolicy=Local: the backend sees the real client IP; a node without a local
// endpoint drops the traffic; the healthCheckNodePort reports each node's local endpoints.
func TestExternalTrafficPolicyLocal(t *testing.T) {
	s := newScenario(t, "e2e-etp-local")
	s.addPod(1, "web-1", map[string]string{"app": "web"})
	// The API server allocates a healthCheckNodePort only to LoadBalancer services; no load
	// balancer exists here, so its node ports are what the underlay uses.
	svc := s.service("local", map[string]string{"app": "web"}, func(svc *v1.Service) {
		svc.Spec.Type = v1.ServiceTypeLoadBalancer
		svc.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
	})
	np, hc := svc.Spec.Ports[0].NodePort, svc.Spec.HealthCheckNodePort
	if hc == 0 {
		t.Fatal("the API server gave the eTP=Local NodePort service no healthCheckNodePort")
	}
	seen := s.waitAnswers(s.c.Underlay, hostPort(s.c.Node(1).IP, np), s.qualified("web-1"))
	if got := seen[s.qualified("web-1")].client; got != s.underlayIP() {
		t.Errorf("web-1 saw client %s through node 1's NodePort; eTP=Local must keep the source %s", got, s.underlayIP())
	}

	for _, n := range []struct {
		node     int
		code     int
		localEps int
	}{{1, 200, 1}, {3, 503, 0}} {
		url := fmt.Sprintf("http://%s/healthz", hostPort(s.c.Node(n.node).IP, hc))
		var last string
		err := cluster.WaitFor(s.ctx, converge, fmt.Sprintf("node %d health check %d", n.node, n.code), func(context.Context) (bool, error) {
			out, err := s.c.Exec(s.ctx, s.c.Underlay, "curl", "-sS", "--max-time", "2", "-w", "\n%{http_code}", url)
			if err != nil {
				last = err.Error()
				return false, nil
			}
			// The body is one JSON line; curl's -w adds the status code on a line of its own.
			out = strings.TrimSpace(out)
			cut := strings.LastIndexByte(out, '\n')
			if cut < 0 {
				last = out
				return false, nil
			}
			body, code := strings.TrimSpace(out[:cut]), out[cut+1:]
			last = out
			var h healthCheck
			if json.Unmarshal([]byte(body), &h) != nil {
				return false, nil
			}
			return code == strconv.Itoa(n.code) && h.LocalEndpoints == n.localEps &&
				h.Service.Namespace == s.ns && h.Service.Name == "local", nil
		})
		if err != nil {
			t.Errorf("%v; last answer: %s", err, last)
		}
	}

	// Node 3 has the service's rules (its health check answered above from the same sync) but no
	// local endpoint: the packet is dropped, so the client times out rather than being refused.
	_, err := s.get(s.c.Underlay, hostPort(s.c.Node(3).IP, np), 3*time.Second)
	if ce, ok := err.(*curlExit); !ok || ce.code != 28 {
		t.Errorf("node 3 (no local endpoint) NodePort: got %v; want a timeout (dropped)", err)
	}
	s.explainVerdict(s.c.Underlay, hostPort(s.c.Node(3).IP, np), explain.Dropped)
}

// internalTrafficPolicy=Local: a client reaches only its own node's endpoint; a node without one
// drops the traffic (kube-proxy's behaviour), checked from that node itself (the OUTPUT path) and
// from a pod on it (the FORWARD path).
func TestInternalTrafficPolicyLocal(t *testing.T) {
	s := newScenario(t, "e2e-itp-local")
	webPods(s)
	svc := s.service("local", map[string]string{"app": "web"}, func(svc *v1.Service) {
		local := v1.ServiceInternalTrafficPolicyLocal
		svc.Spec.InternalTrafficPolicy = &local
	})
	vip := hostPort(svc.Spec.ClusterIP, 80)
	s.waitDNAT(1, s.pods["web-1"].ip)
	s.waitAnswers(s.podNS("client-1"), vip, s.qualified("web-1"))
	for i := 0; i < 10; i++ {
		a, err := s.get(s.podNS("client-1"), vip, 5*time.Second)
		if err != nil || a.pod != s.qualified("web-1") {
			t.Fatalf("request %d from node 1: %v %v; want web-1 only", i, a, err)
		}
	}
	// Node 3 has no local endpoint: kube-proxy writes no DNAT there and drops the traffic in the
	// filter table.
	s.waitRule(3, "filter", "the iTP=Local service's DROP", func(line string) bool {
		return strings.Contains(line, svc.Spec.ClusterIP+"/32") && strings.HasSuffix(line, "-j DROP")
	})
	_, err := s.get(s.c.Node(3).Name, vip, 3*time.Second)
	if ce, ok := err.(*curlExit); !ok || ce.code != 28 {
		t.Errorf("node 3 itself (no local endpoint): got %v; want a timeout (dropped)", err)
	}
	s.explainVerdict(s.c.Node(3).Name, vip, explain.Dropped)

	// A pod on node 3 (the FORWARD path) is dropped too, on the node. A timeout alone cannot tell
	// a drop from a leak (the packet forwarded, not translated, to the underlay, where nothing answers),
	// so the node's own state must show the drop: the DROP rule counted the client's packets, and
	// conntrack holds no entry for the flow (a packet the node forwarded would have left a
	// confirmed entry; one dropped in filter never gets confirmed).
	client := s.pods["client-3"].ip
	before := s.dropCount(3, "filter", svc.Spec.ClusterIP)
	_, err = s.get(s.podNS("client-3"), vip, 3*time.Second)
	if ce, ok := err.(*curlExit); !ok || ce.code != 28 {
		t.Errorf("pod client-3 on node 3 (no local endpoint): got %v; want a timeout (dropped)", err)
	}
	s.explainVerdict(s.podNS("client-3"), vip, explain.Dropped)
	after := s.dropCount(3, "filter", svc.Spec.ClusterIP)
	if after <= before {
		t.Errorf("node 3's DROP rules for %s counted %d packets before client-3's request and %d after; want more (the drop must happen on the node)",
			svc.Spec.ClusterIP, before, after)
	}
	t.Logf("node 3 dropped %d packets of client-3's request to %s", after-before, vip)
	flows, err := s.c.NodeExec(s.ctx, 3, "conntrack", "-L", "-p", "tcp", "-s", client, "-d", svc.Spec.ClusterIP)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(flows) != "" {
		t.Errorf("node 3 has conntrack entries for client-3 (%s) to %s, so the flow left the node instead of being dropped:\n%s",
			client, svc.Spec.ClusterIP, flows)
	}
}

// dropCount sums the packet counters of node i's rules in table that match dst/32 and DROP.
func (s *scenario) dropCount(node int, table, dst string) uint64 {
	s.t.Helper()
	rules, err := s.c.NodeExec(s.ctx, node, "iptables-save", "-c", "-t", table)
	if err != nil {
		s.t.Fatal(err)
	}
	var sum uint64
	found := false
	for _, line := range strings.Split(rules, "\n") {
		if !strings.Contains(line, " -d "+dst+"/32 ") || !strings.HasSuffix(line, "-j DROP") || !strings.HasPrefix(line, "[") {
			continue
		}
		// iptables-save -c prefixes each rule with [packets:bytes].
		counters, _, _ := strings.Cut(line[1:], "]")
		packets, _, _ := strings.Cut(counters, ":")
		n, err := strconv.ParseUint(packets, 10, 64)
		if err != nil {
			s.t.Fatalf("node %d %s rule %q: counters: %v", node, table, line, err)
		}
		sum += n
		found = true
	}
	if !found {
		s.t.Fatalf("node %d has no %s DROP rule for %s:\n%s", node, table, dst, rules)
	}
	return sum
}

// A pod reaching itself through its own service is answered (hairpin), with the source
// masqueraded so the reply comes back through the proxy's NAT.
func TestHairpin(t *testing.T) {
	s := newScenario(t, "e2e-hairpin")
	ip := s.addPod(2, "self", map[string]string{"app": "self"})
	svc := s.service("self", map[string]string{"app": "self"}, nil)
	seen := s.waitAnswers(s.podNS("self"), hostPort(svc.Spec.ClusterIP, 80), s.qualified("self"))
	if got := seen[s.qualified("self")].client; got == ip {
		t.Errorf("hairpin answer saw the pod's own IP %s as client; want it masqueraded", got)
	}
}
