//go:build e2e

package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
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

// waitOnlyAnswers polls addr from netns until a round of requests is answered only by pods in want
// and by each of them, and fails the test if that never happens within converge. Earlier rounds may
// see other pods: the hints and the rules converge after the pods and services are created.
func (s *scenario) waitOnlyAnswers(netns, addr string, want ...string) {
	s.t.Helper()
	const round = 12
	var last string
	err := cluster.WaitFor(s.ctx, converge, fmt.Sprintf("%s from %s answered only by %v", addr, netns, want),
		func(context.Context) (bool, error) {
			seen := map[string]bool{}
			for i := 0; i < round; i++ {
				a, err := s.get(netns, addr, 2*time.Second)
				if err != nil {
					last = err.Error()
					return false, nil
				}
				if !contains(want, a.pod) {
					last = "answered by " + a.pod
					return false, nil
				}
				seen[a.pod] = true
			}
			if len(seen) < len(want) {
				last = fmt.Sprintf("a round of %d saw only %v", round, keys(seen))
				return false, nil
			}
			return true, nil
		})
	if err != nil {
		s.t.Fatalf("%v; last: %s", err, last)
	}
	s.explainDelivers(netns, addr, want)
}
