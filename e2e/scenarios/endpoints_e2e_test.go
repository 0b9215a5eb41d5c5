//go:build e2e

package scenarios

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
	"github.com/switchyard/switchyard/proxier/explain"
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
	s.explainVerdict(s.c.Node(1).Name, vip, explain.Rejected)
	_, err = s.get(s.podNS("client"), vip, 10*time.Second)
	if ce, ok := err.(*curlExit); !ok || ce.code != 7 {
		t.Errorf("request from a pod on node 1 to the service without endpoints: %v; want connection refused (curl exit 7)", err)
	}
	s.explainVerdict(s.podNS("client"), vip, explain.Rejected)
}

// A UDP flow keeps its conntrack entry (and so its DNAT to the old backend) as long as packets keep
// coming. When that backend is replaced, switchyard must delete the stale entry so the same flow
// reaches the new backend; otherwise it would be black-holed until the entry times out.
func TestStaleUDPConntrackCleared(t *testing.T) {
	s := newScenario(t, "e2e-udp")
	labels := map[string]string{"app": "udp"}
	s.addPod(2, "udp-1", labels)
	s.addPod(1, "client", map[string]string{"role": "client"})
	vip := hostPort(s.udpService("dns", labels).Spec.ClusterIP, 53)
	const sport = 40053
	client := s.podNS("client")
	s.waitUDP(client, vip, sport, s.qualified("udp-1"), converge)
	// The new backend comes first, so the service always has an endpoint: only the conntrack
	// cleanup for the removed one can move the flow.
	s.addPod(3, "udp-2", labels)
	s.waitDNAT(1, s.pods["udp-2"].ip)
	s.removePod("udp-1")
	// Polling keeps sending on the same 5-tuple, so a stale entry would never expire (the kernel's
	// UDP timeouts are 30 s and more); the wait ends well before even an idle entry would.
	s.waitUDP(client, vip, sport, s.qualified("udp-2"), 20*time.Second)
}

// A UDP client that keeps sending to a service whose last endpoint goes keeps refreshing its
// conntrack entry, DNATed to the pod that is gone, so the service's REJECT never sees its packets:
// the entry must be deleted (kube-proxy's regression kubernetes#139628), and new packets are then
// refused instead of black-holed.
func TestUDPServiceScaledToZeroConntrackCleared(t *testing.T) {
	s := newScenario(t, "e2e-udp-zero")
	labels := map[string]string{"app": "udp"}
	s.addPod(2, "udp-1", labels)
	s.addPod(1, "client", map[string]string{"role": "client"})
	svc := s.udpService("dns", labels)
	vip := hostPort(svc.Spec.ClusterIP, 53)
	const sport = 40054
	client := s.podNS("client")
	s.waitUDP(client, vip, sport, s.qualified("udp-1"), converge)
	gone := s.pods["udp-1"].ip

	// The client sends on the same 5-tuple until the test ends, about every half second.
	stop, done := make(chan struct{}), make(chan struct{})
	var sent atomic.Int64
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = s.udp(client, vip, sport)
			sent.Add(1)
		}
	}()
	t.Cleanup(func() { close(stop); <-done })

	// entryTo reports whether node 1 (the client's) holds a UDP entry of the client's flow whose
	// reply source, the DNAT target, is ip.
	entryTo := func(ip string) (bool, error) {
		out, err := s.c.NodeExec(s.ctx, 1, "conntrack", "-L", "-p", "udp", "--orig-dst", svc.Spec.ClusterIP, "--orig-port-dst", "53")
		if err != nil {
			return false, err
		}
		for _, line := range strings.Split(out, "\n") {
			orig, reply := conntrackTuples(line)
			if orig["sport"] == strconv.Itoa(sport) && reply["src"] == ip {
				return true, nil
			}
		}
		return false, nil
	}
	if err := cluster.WaitFor(s.ctx, 10*time.Second, "the client's entry DNATed to "+gone, func(context.Context) (bool, error) {
		return entryTo(gone)
	}); err != nil {
		t.Fatal(err)
	}

	s.removePod("udp-1")
	s.waitRule(1, "filter", "the REJECT for the service without endpoints", func(line string) bool {
		return strings.Contains(line, svc.Spec.ClusterIP+"/32") && strings.Contains(line, "-j REJECT")
	})
	// The rules and the reconcile are one sync, so the entry goes at once; the client keeps
	// refreshing it meanwhile, so it would never time out on its own.
	sentBefore := sent.Load()
	if err := cluster.WaitFor(s.ctx, 10*time.Second, "no entry of the client's flow DNATed to the removed "+gone, func(context.Context) (bool, error) {
		there, err := entryTo(gone)
		return !there, err
	}); err != nil {
		t.Fatal(err)
	}
	// And it stays gone while the client keeps sending.
	if err := cluster.WaitFor(s.ctx, 10*time.Second, "two more datagrams from the client", func(context.Context) (bool, error) {
		return sent.Load() >= sentBefore+2, nil
	}); err != nil {
		t.Fatal(err)
	}
	if there, err := entryTo(gone); err != nil || there {
		t.Errorf("entry DNATed to the removed %s is back (%v) while the client keeps sending", gone, err)
	}
}

// udpService creates a service of UDP port 53 to the echo server's 8080.
func (s *scenario) udpService(name string, selector map[string]string) *v1.Service {
	return s.service(name, selector, func(svc *v1.Service) {
		svc.Spec.Ports = []v1.ServicePort{{Name: "dns", Port: 53, TargetPort: intstr.FromInt32(8080), Protocol: v1.ProtocolUDP}}
	})
}

// waitUDP polls vip over UDP from netns, always from source port sport (one 5-tuple, one conntrack
// entry), until pod want answers.
func (s *scenario) waitUDP(netns, vip string, sport int, want string, within time.Duration) {
	s.t.Helper()
	var last any
	err := cluster.WaitFor(s.ctx, within, fmt.Sprintf("UDP %s from port %d answered by %s", vip, sport, want),
		func(context.Context) (bool, error) {
			a, err := s.udp(netns, vip, sport)
			if err != nil {
				last = err
				return false, nil
			}
			last = a
			return a.pod == want, nil
		})
	if err != nil {
		s.t.Fatalf("%v; last: %v", err, last)
	}
}

// conntrackTuples splits a line of `conntrack -L` into its original and reply tuples' fields
// (src, dst, sport, dport): each key appears first for the original direction, then for the reply.
func conntrackTuples(line string) (orig, reply map[string]string) {
	orig, reply = map[string]string{}, map[string]string{}
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		if _, seen := orig[k]; seen {
			reply[k] = v
		} else {
			orig[k] = v
		}
	}
	return orig, reply
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
