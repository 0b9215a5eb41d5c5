package iptables_test

// loadBalancerSourceRanges as kube-proxy v1.37 applies them: per IP family, a zero-length prefix
// meaning no filter, a disallowed source DROPped while the service has endpoints, and every source
// REJECTed (no firewall at all) while it has none.

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/iptables/tracer"
	"github.com/switchyard/switchyard/proxier/model"
)

// sourceRangeSnapshot has one eTP=Cluster load balancer per way of writing source ranges, all with
// their only endpoint on another node, plus one without endpoints and one eTP=Local without a local
// endpoint.
func sourceRangeSnapshot() *model.Snapshot {
	s := model.NewSnapshot()
	s.Full = true
	s.Node = model.NodeInfo{Name: thisNode, PodCIDRs: []netip.Prefix{pfx("10.244.1.0/24")}}
	lb := func(svc, vip, lbIP string, ranges []netip.Prefix, policy model.TrafficPolicy, eps ...model.Endpoint) {
		add(s, &model.ServicePort{Name: name(svc), Port: 80, ClusterIPs: addrs(vip),
			LoadBalancerIPs: addrs(lbIP), LoadBalancerSourceRanges: ranges, ExternalPolicy: policy}, eps...)
	}
	remote := ready("10.244.2.30", 8080, "node-b")
	lb("mixed", "10.96.1.1", "198.18.1.1", []netip.Prefix{pfx("203.0.113.0/24"), pfx("2001:db8::/32")}, model.PolicyCluster, remote)
	lb("v6-only", "10.96.1.2", "198.18.1.2", []netip.Prefix{pfx("2001:db8::/32")}, model.PolicyCluster, remote)
	lb("any", "10.96.1.3", "198.18.1.3", []netip.Prefix{pfx("203.0.113.0/24"), pfx("0.0.0.0/0")}, model.PolicyCluster, remote)
	lb("v6-any", "10.96.1.4", "198.18.1.4", []netip.Prefix{pfx("203.0.113.0/24"), pfx("::/0")}, model.PolicyCluster, remote)
	lb("no-endpoints", "10.96.1.5", "198.18.1.5", []netip.Prefix{pfx("203.0.113.0/24")}, model.PolicyCluster)
	lb("no-local", "10.96.1.6", "198.18.1.6", []netip.Prefix{pfx("203.0.113.0/24")}, model.PolicyLocal, remote)
	return s
}

func TestTraceLoadBalancerSourceRanges(t *testing.T) {
	tr := load(t, sourceRangeSnapshot(), traceOptions())
	toRemote := want{verdict: tracer.Accept, dsts: []string{"10.244.2.30:8080"}, masq: yes}
	for _, c := range []behaviourCase{
		{"allowed source is DNATed", fromAllowed("198.18.1.1", 80), toRemote},
		{"disallowed source is dropped, not rejected", fromInternet("198.18.1.1", 80), want{verdict: tracer.Drop}},
		{"ranges all of the other family leave this family unfiltered", fromInternet("198.18.1.2", 80), toRemote},
		{"0.0.0.0/0 beside another range admits every source", fromInternet("198.18.1.3", 80), toRemote},
		{"::/0 does not lift the IPv4 filter", fromInternet("198.18.1.4", 80), want{verdict: tracer.Drop}},
		{"::/0 keeps the IPv4 range working", fromAllowed("198.18.1.4", 80), toRemote},
		{"no endpoints: an allowed source is rejected", fromAllowed("198.18.1.5", 80), want{verdict: tracer.Reject}},
		{"no endpoints: a disallowed source is rejected too, not dropped", fromInternet("198.18.1.5", 80), want{verdict: tracer.Reject}},
		{"eTP=Local without a local endpoint: a disallowed source is dropped", fromInternet("198.18.1.6", 80), want{verdict: tracer.Drop}},
		{"eTP=Local without a local endpoint: an allowed source is dropped", fromAllowed("198.18.1.6", 80), want{verdict: tracer.Drop}},
	} {
		t.Run(c.name, func(t *testing.T) { check(t, tr, c.p, c.w) })
	}
}

// TestSourceRangeFirewallRules pins which load-balancer IPs get a firewall at all, per family: the
// tracer cannot tell "no firewall" from "a firewall that admits everyone", kube-proxy's rules can.
func TestSourceRangeFirewallRules(t *testing.T) {
	firewalled := func(t *testing.T, f model.IPFamily, snap *model.Snapshot) string {
		t.Helper()
		return strings.Join(syncFake(t, snap, iptables.DefaultOptions(f)).Rules("filter", "SY-FIREWALL"), "\n")
	}

	v4 := firewalled(t, model.IPv4, sourceRangeSnapshot())
	for _, lbIP := range []string{"198.18.1.1", "198.18.1.4", "198.18.1.6"} {
		if !strings.Contains(v4, "-d "+lbIP+"/32 ") {
			t.Errorf("IPv4: %s has ranges of its family and endpoints, but no firewall rule:\n%s", lbIP, v4)
		}
	}
	for _, lbIP := range []string{"198.18.1.2", "198.18.1.3", "198.18.1.5"} {
		if strings.Contains(v4, "-d "+lbIP+"/32 ") {
			t.Errorf("IPv4: %s must have no firewall rule:\n%s", lbIP, v4)
		}
	}

	// The same cases in an IPv6 ruleset.
	s := model.NewSnapshot()
	s.Full = true
	s.Node = model.NodeInfo{Name: thisNode}
	remote := model.Endpoint{IP: a("fd00:10:244:2::30"), Port: 8080, Ready: true, Serving: true, NodeName: "node-b"}
	for i, ranges := range [][]netip.Prefix{
		{pfx("2001:db8::/32"), pfx("203.0.113.0/24")}, // fd00:198:18::1: firewalled by its IPv6 range
		{pfx("203.0.113.0/24")},                       // fd00:198:18::2: ranges of the other family only
		{pfx("2001:db8::/32"), pfx("::/0")},           // fd00:198:18::3: ::/0
		{pfx("2001:db8::/32"), pfx("0.0.0.0/0")},      // fd00:198:18::4: 0.0.0.0/0 is the other family's
	} {
		n := string(rune('1' + i))
		add(s, &model.ServicePort{Name: name("v6-" + n), Port: 80, ClusterIPs: addrs("fd00:10:96::" + n),
			LoadBalancerIPs: addrs("fd00:198:18::" + n), LoadBalancerSourceRanges: ranges}, remote)
	}
	v6 := firewalled(t, model.IPv6, s)
	for lbIP, want := range map[string]bool{"fd00:198:18::1": true, "fd00:198:18::2": false, "fd00:198:18::3": false, "fd00:198:18::4": true} {
		if got := strings.Contains(v6, "-d "+lbIP+"/128 "); got != want {
			t.Errorf("IPv6: %s firewalled=%v, want %v:\n%s", lbIP, got, want, v6)
		}
	}
}
