//go:build e2e

package scenarios

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
)

// Endpoint churn: scaling up adds a backend, scaling down and a readiness flip take one out and
// back, and terminating endpoints are used only when nothing ready is left (kube-proxy's fallback).
func TestEndpointChurn(t *testing.T) {
	s := newScenario(t, "e2e-churn")
	labels := map[string]string{"app": "churn"}
	s.addPod(1, "churn-1", labels)
	s.addPod(3, "client", map[string]string{"role": "client"})
	svc := s.service("churn", labels, nil)
	vip := hostPort(svc.Spec.ClusterIP, 80)
	client := s.podNS("client")
	s.waitAnswers(client, vip, s.qualified("churn-1"))

	t.Run("scale up", func(t *testing.T) {
		s.addPod(2, "churn-2", labels)
		s.waitAnswers(client, vip, s.qualified("churn-1"), s.qualified("churn-2"))
	})
	t.Run("readiness flip", func(t *testing.T) {
		if err := s.c.SetPodReady(s.ctx, s.ns, "churn-2", false); err != nil {
			t.Fatal(err)
		}
		s.waitOnly(3, client, vip, []string{s.pods["churn-2"].ip}, 10, s.qualified("churn-1"))
		if err := s.c.SetPodReady(s.ctx, s.ns, "churn-2", true); err != nil {
			t.Fatal(err)
		}
		s.waitAnswers(client, vip, s.qualified("churn-1"), s.qualified("churn-2"))
	})
	t.Run("scale down", func(t *testing.T) {
		gone := s.pods["churn-2"].ip
		s.removePod("churn-2")
		s.waitOnly(3, client, vip, []string{gone}, 10, s.qualified("churn-1"))
	})
	t.Run("terminating fallback", func(t *testing.T) {
		s.addPod(2, "churn-3", labels)
		s.waitAnswers(client, vip, s.qualified("churn-1"), s.qualified("churn-3"))
		// churn-1 terminating while churn-3 is ready: only the ready one is used.
		s.deleteGracefully("churn-1")
		s.waitOnly(3, client, vip, []string{s.pods["churn-1"].ip}, 10, s.qualified("churn-3"))
		// Both terminating (still serving): nothing ready is left, so both are used rather than
		// none.
		s.deleteGracefully("churn-3")
		s.waitAnswers(client, vip, s.qualified("churn-1"), s.qualified("churn-3"))
	})
}

// A service without endpoints is refused at once (REJECT), not left to time out, both for node 1
// itself (a host-network client, the OUTPUT path) and for a pod on node 1 (the FORWARD path, where
// the pod network's blanket ACCEPT for pod traffic must not come before the proxy's REJECT).
func TestNoEndpointsRejected(t *testing.T) {
	s := newScenario(t, "e2e-noendpoints")
	s.addPod(1, "client", map[string]string{"role": "client"})
	svc := s.service("empty", map[string]string{"app": "nothing"}, nil)
	vip := hostPort(svc.Spec.ClusterIP, 80)
	s.waitRule(1, "filter", "the REJECT for the empty service", func(line string) bool {
		return strings.Contains(line, svc.Spec.ClusterIP+"/32") && strings.Contains(line, "-j REJECT")
	})
	// A generous timeout: a REJECT answers in well under a second, a DROP would use it all.
	_, err := s.get(s.c.Node(1).Name, vip, 10*time.Second)
	if ce, ok := err.(*curlExit); !ok || ce.code != 7 {
		t.Errorf("request from node 1 to the service without endpoints: %v; want connection refused (curl exit 7)", err)
	}
	_, err = s.get(s.podNS("client"), vip, 10*time.Second)
	if ce, ok := err.(*curlExit); !ok || ce.code != 7 {
		t.Errorf("request from a pod on node 1 to the service without endpoints: %v; want connection refused (curl exit 7)", err)
	}
}

// A UDP flow keeps its conntrack entry (and so its DNAT to the old backend) as long as packets keep
// coming. When that backend is replaced, switchyard must delete the stale entry so the same flow
// reaches the new backend; otherwise it would be black-holed until the entry times out.
func TestStaleUDPConntrackCleared(t *testing.T) {
	s := newScenario(t, "e2e-udp")
	labels := map[string]string{"app": "udp"}
	s.addPod(2, "udp-1", labels)
	s.addPod(1, "client", map[string]string{"role": "client"})
	svc := s.service("dns", labels, func(svc *v1.Service) {
		svc.Spec.Ports = []v1.ServicePort{{Name: "dns", Port: 53, TargetPort: intstr.FromInt32(8080), Protocol: v1.ProtocolUDP}}
	})
	vip := hostPort(svc.Spec.ClusterIP, 53)
	const sport = 40053
	client := s.podNS("client")
	waitUDP := func(want string, within time.Duration) {
		t.Helper()
		var last any
		err := cluster.WaitFor(s.ctx, within, fmt.Sprintf("UDP %s from port %d answered by %s", vip, sport, want),
			func(context.Context) (bool, error) {
				a, err := s.udp(client, vip, sport)
				if err != nil {
					last = err
					return false, nil
				}
				last = a
				return a.pod == want, nil
			})
		if err != nil {
			t.Fatalf("%v; last: %v", err, last)
		}
	}
	waitUDP(s.qualified("udp-1"), converge)
	// The new backend comes first, so the service always has an endpoint: only the conntrack
	// cleanup for the removed one can move the flow.
	s.addPod(3, "udp-2", labels)
	s.waitDNAT(1, s.pods["udp-2"].ip)
	s.removePod("udp-1")
	// Polling keeps sending on the same 5-tuple, so a stale entry would never expire (the kernel's
	// UDP timeouts are 30 s and more); the wait ends well before even an idle entry would.
	waitUDP(s.qualified("udp-2"), 20*time.Second)
}

// Deleting a service removes its rules from every node.
func TestServiceDeletionRemovesRules(t *testing.T) {
	s := newScenario(t, "e2e-delete")
	s.addPod(2, "gone-1", map[string]string{"app": "gone"})
	svc := s.service("gone", map[string]string{"app": "gone"}, func(svc *v1.Service) { svc.Spec.Type = v1.ServiceTypeNodePort })
	marker := s.ns + "/gone:http"
	for _, n := range s.c.Nodes {
		s.waitRules(n.Index, "the service's rules", func(nat string) bool {
			return strings.Contains(nat, marker) && strings.Contains(nat, svc.Spec.ClusterIP+"/32")
		})
	}
	if err := s.c.Client.CoreV1().Services(s.ns).Delete(s.ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range s.c.Nodes {
		s.waitRules(n.Index, "no rules of the deleted service", func(nat string) bool {
			return !strings.Contains(nat, marker) && !strings.Contains(nat, svc.Spec.ClusterIP+"/32")
		})
		filter, err := s.c.NodeExec(s.ctx, n.Index, "iptables-save", "-t", "filter")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(filter, marker) || strings.Contains(filter, svc.Spec.ClusterIP+"/32") {
			t.Errorf("node %d filter table still mentions the deleted service:\n%s", n.Index, filter)
		}
	}
}
