//go:build e2e

package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
	"github.com/switchyard/switchyard/proxier/explain"
)

// trafficDistribution PreferSameZone and PreferSameNode, end to end: the real EndpointSlice
// controller turns the field and the nodes' zone labels into hints, and each node's proxy keeps
// traffic in its zone or on itself while that has an endpoint, and falls back to every endpoint
// when its zone has none.
//
// Nodes 1 and 2 are in zone-a and node 3 in zone-b; web-1, web-2 and web-3 run on nodes 1, 2 and 3.
func TestTrafficDistribution(t *testing.T) {
	// The zones must be on the Nodes before the pods' endpoints are published: the EndpointSlice
	// controller copies an endpoint's zone from its node when it writes the slice.
	labelZones(t, map[int]string{1: "zone-a", 2: "zone-a", 3: "zone-b"})
	s := newScenario(t, "e2e-traffic-dist")
	for i := 1; i <= 3; i++ {
		s.addPod(i, fmt.Sprintf("web-%d", i), map[string]string{"app": "web"})
	}
	sameZone := s.service("same-zone", map[string]string{"app": "web"}, func(svc *v1.Service) {
		svc.Spec.TrafficDistribution = ptr.To(v1.ServiceTrafficDistributionPreferSameZone)
	})
	sameNode := s.service("same-node", map[string]string{"app": "web"}, func(svc *v1.Service) {
		svc.Spec.TrafficDistribution = ptr.To(v1.ServiceTrafficDistributionPreferSameNode)
	})
	zoneVIP, nodeVIP := hostPort(sameZone.Spec.ClusterIP, 80), hostPort(sameNode.Spec.ClusterIP, 80)
	// The proxy's part starts once the controller's hints are there.
	s.waitForHints("same-zone", 3, false)
	s.waitForHints("same-node", 3, true)
	web := func(ns ...int) []string {
		var out []string
		for _, n := range ns {
			out = append(out, s.qualified(fmt.Sprintf("web-%d", n)))
		}
		return out
	}

	// Local while there is something local: requests from each node's own namespace.
	for _, c := range []struct {
		node     int
		vip      string
		want     []string
		describe string
	}{
		{1, zoneVIP, web(1, 2), "PreferSameZone from node 1 stays in zone-a"},
		{3, zoneVIP, web(3), "PreferSameZone from node 3 stays in zone-b"},
		{1, nodeVIP, web(1), "PreferSameNode from node 1 stays on node 1"},
		{2, nodeVIP, web(2), "PreferSameNode from node 2 stays on node 2"},
		{3, nodeVIP, web(3), "PreferSameNode from node 3 stays on node 3"},
	} {
		t.Log(c.describe)
		s.waitOnlyAnswers(s.c.Node(c.node).Name, c.vip, c.want...)
	}

	// Zone-b loses its only endpoint: node 3 has nothing in its zone (nor on itself), so both
	// services fall back to every endpoint rather than black-holing, while zone-a keeps its own.
	s.removePod("web-3")
	t.Log("zone-b has no endpoint left: node 3 falls back to all of them")
	s.waitOnlyAnswers(s.c.Node(3).Name, zoneVIP, web(1, 2)...)
	s.waitOnlyAnswers(s.c.Node(3).Name, nodeVIP, web(1, 2)...)
	s.waitOnlyAnswers(s.c.Node(1).Name, nodeVIP, web(1)...)
}

// waitForHints waits until the EndpointSlices of service name hold n ready endpoints, each with the
// zone hint of its own zone (and, with forNodes, the node hint of its own node): what the real
// EndpointSlice controller writes for PreferSameZone and PreferSameNode. The controller takes an
// endpoint's zone from its informer's copy of the Node when it syncs the service, and a Node's new
// label does not make it sync again; so when that copy lagged behind the labels (it can, after the
// API server outage scenario), the wait touches the Service, which makes the controller sync it.
func (s *scenario) waitForHints(name string, n int, forNodes bool) {
	s.t.Helper()
	var last string
	var touched time.Time
	touches := 0
	err := cluster.WaitFor(s.ctx, converge, fmt.Sprintf("hints on the endpoints of %s/%s", s.ns, name), func(ctx context.Context) (bool, error) {
		list, err := s.c.Client.DiscoveryV1().EndpointSlices(s.ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		hinted, ready := 0, 0
		for _, sl := range list.Items {
			for _, ep := range sl.Endpoints {
				if ep.Conditions.Ready == nil || !*ep.Conditions.Ready {
					continue
				}
				ready++
				h := ep.Hints
				if ep.Zone == nil || h == nil || len(h.ForZones) != 1 || h.ForZones[0].Name != *ep.Zone {
					continue
				}
				if forNodes && (ep.NodeName == nil || len(h.ForNodes) != 1 || h.ForNodes[0].Name != *ep.NodeName) {
					continue
				}
				hinted++
			}
		}
		last = fmt.Sprintf("%d ready endpoints, %d with the hints", ready, hinted)
		if ready == n && hinted == n {
			return true, nil
		}
		// Give the controller a few seconds of its own first, and touch at most every 3 seconds.
		if ready == n && time.Since(touched) > 3*time.Second {
			if touched.IsZero() {
				touched = time.Now()
				return false, nil
			}
			touched = time.Now()
			touches++
			patch := fmt.Sprintf(`{"metadata":{"annotations":{"e2e.switchyard.dev/resync":"%d"}}}`, touches)
			_, err := s.c.Client.CoreV1().Services(s.ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			if err != nil {
				last += "; touch: " + err.Error()
			}
		}
		return false, nil
	})
	if err != nil {
		s.t.Fatalf("%v; last: %s", err, last)
	}
	if touches > 0 {
		s.t.Logf("%s/%s: the controller wrote its hints after the Service was touched %d time(s)", s.ns, name, touches)
	}
}

// labelZones sets topology.kubernetes.io/zone on the given nodes, and removes it when the test ends.
func labelZones(t *testing.T, zones map[int]string) {
	t.Helper()
	ctx := context.Background()
	set := func(node int, zone any) error {
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{v1.LabelTopologyZone: zone}}})
		if err != nil {
			return err
		}
		_, err = testCluster.Client.CoreV1().Nodes().Patch(ctx, testCluster.Node(node).Name, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	}
	for node, zone := range zones {
		t.Cleanup(func() {
			if err := set(node, nil); err != nil {
				t.Errorf("remove the zone label of node %d: %v", node, err)
			}
		})
		if err := set(node, zone); err != nil {
			t.Fatalf("label node %d with zone %s: %v", node, zone, err)
		}
	}
}

// A LoadBalancer service whose loadBalancerSourceRanges are all of the other IP family has no
// source filter in this family (kube-proxy filters the ranges per family), so the IPv4 load-balancer
// IP answers everyone instead of being black-holed. A service whose IPv4 ranges leave the client out
// is dropped in the same cluster, which shows the filter is in force.
func TestSourceRangesOfTheOtherFamily(t *testing.T) {
	s := newScenario(t, "e2e-lb-ranges")
	webPods(s)
	const openIP, closedIP = "203.0.113.30", "203.0.113.31"
	lb := func(name, ip string, ranges ...string) {
		svc := s.service(name, map[string]string{"app": "web"}, func(svc *v1.Service) {
			svc.Spec.Type = v1.ServiceTypeLoadBalancer
			svc.Spec.AllocateLoadBalancerNodePorts = new(bool)
			svc.Spec.LoadBalancerSourceRanges = ranges
		})
		svc.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: ip}}
		if _, err := s.c.Client.CoreV1().Services(s.ns).UpdateStatus(s.ctx, svc, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("set the load-balancer IP of %s: %v", name, err)
		}
		s.underlayRoute(ip, 1)
	}
	lb("v6-ranges", openIP, "2001:db8::/64")
	lb("v4-ranges", closedIP, "198.51.100.0/24")

	s.waitAnswers(s.c.Underlay, hostPort(openIP, 80), s.qualified("web-1"), s.qualified("web-2"))

	// The closed service's filter is in node 1's filter table before its drop is checked, so a
	// timeout below means the filter dropped the packet, not that the rules were not there yet.
	s.waitRule(1, "filter", "the source-range DROP for "+closedIP, func(line string) bool {
		return strings.Contains(line, "-d "+closedIP+"/32") && strings.HasSuffix(line, "-j DROP")
	})
	_, err := s.get(s.c.Underlay, hostPort(closedIP, 80), 3*time.Second)
	if ce, ok := err.(*curlExit); !ok || ce.code != 28 {
		t.Errorf("%s from a source outside its IPv4 loadBalancerSourceRanges: got %v; want a timeout (dropped)", closedIP, err)
	}
	s.explainVerdict(s.c.Underlay, hostPort(closedIP, 80), explain.Dropped)
}

// waitOnlyAnswers waits until the rules of the node that handles a request from netns to addr
// deliver it to exactly the pods in want, as switchyard explain reads them (the hints and the
// rules converge after the pods and services are created), then checks that real requests are
// answered only by pods in want, and by each of them. Polling real requests instead could stop on
// a lucky round while the rules still include another pod.
func (s *scenario) waitOnlyAnswers(netns, addr string, want ...string) {
	s.t.Helper()
	wantIPs := s.podIPs(want)
	var last string
	err := cluster.WaitFor(s.ctx, converge, fmt.Sprintf("the rules for %s from %s deliver only to %v", addr, netns, want),
		func(context.Context) (bool, error) {
			r, err := s.explainReport(netns, addr)
			if err != nil {
				last = err.Error()
				return false, nil
			}
			got, others := r.DeliveredTo()
			last = fmt.Sprintf("explain delivers to %v, other verdicts %v", got, others)
			return len(others) == 0 && slices.Equal(got, wantIPs), nil
		})
	if err != nil {
		s.t.Fatalf("%v; last: %s", err, last)
	}
	// 24 requests miss one of two equally likely pods with a chance of 2 in 16 million.
	const requests = 24
	seen := map[string]bool{}
	for i := 0; i < requests; i++ {
		a, err := s.get(netns, addr, 5*time.Second)
		if err != nil {
			s.t.Fatalf("request %d to %s from %s: %v", i, addr, netns, err)
		}
		if !contains(want, a.pod) {
			s.t.Fatalf("request %d to %s from %s answered by %s; the rules deliver only to %v", i, addr, netns, a.pod, want)
		}
		seen[a.pod] = true
	}
	if len(seen) < len(want) {
		s.t.Errorf("%d requests to %s from %s were answered only by %v; want each of %v", requests, addr, netns, keys(seen), want)
	}
}
