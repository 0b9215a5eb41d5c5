package ipvs

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/proxier/iptables/tracer"
	"github.com/switchyard/switchyard/proxier/model"
)

// sourceRangeServices are eTP=Cluster load balancers, one per way of writing loadBalancerSourceRanges,
// keyed by their load-balancer IP.
func sourceRangeServices() map[string][]netip.Prefix {
	p := netip.MustParsePrefix
	return map[string][]netip.Prefix{
		"203.0.113.1": {p("198.51.100.0/24"), p("2001:db8::/32")}, // both families
		"203.0.113.2": {p("2001:db8::/32")},                       // the other family only
		"203.0.113.3": {p("198.51.100.0/24"), p("0.0.0.0/0")},     // 0.0.0.0/0 beside a range
		"203.0.113.4": {p("198.51.100.0/24"), p("::/0")},          // ::/0: the other family's "any"
		"203.0.113.5": {p("198.51.100.0/24")},                     // no endpoints
	}
}

func sourceRangeSnapshot() *model.Snapshot {
	s := model.NewSnapshot()
	s.Full = true
	s.Node = model.NodeInfo{Name: nodeName, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}}
	i := 0
	for lbIP, ranges := range sourceRangeServices() {
		i++
		name := spn("default", "lb-"+lbIP, "")
		s.Services[name] = &model.ServicePort{Name: name, Protocol: model.TCP, Port: 443,
			ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, 5, byte(i)})}, LoadBalancerIPs: []netip.Addr{ip(lbIP)},
			LoadBalancerSourceRanges: ranges, ExternalPolicy: model.PolicyCluster, InternalPolicy: model.PolicyCluster}
		if lbIP != "203.0.113.5" {
			s.Endpoints[name] = []model.Endpoint{ready("10.244.2.9", 8443, "node-b")}
		}
	}
	return s
}

// TestSourceRangesBehaviour: what the filter table decides, before IPVS, for each way of writing the
// ranges. As in kube-proxy's IPVS mode, a disallowed source is dropped whether or not the service has
// endpoints (the firewall is in filter INPUT, ahead of IPVS at LOCAL_IN); an admitted one reaches IPVS.
func TestSourceRangesBehaviour(t *testing.T) {
	k := newTestKernel()
	mustSync(t, newTestProxier(t, k, testOptions()), sourceRangeSnapshot())
	tr := ruleTracer(t, k)
	from := func(src, dst string) tracer.Packet {
		return tracer.Packet{Src: ip(src), Dst: ip(dst), Proto: "tcp", SrcPort: 40000, DstPort: 443, InIface: "eth0"}
	}
	for _, c := range []struct {
		name    string
		p       tracer.Packet
		verdict tracer.Verdict
	}{
		{"allowed source", from("198.51.100.7", "203.0.113.1"), tracer.Accept},
		{"disallowed source is dropped", from("8.8.8.8", "203.0.113.1"), tracer.Drop},
		{"ranges all of the other family leave this family unfiltered", from("8.8.8.8", "203.0.113.2"), tracer.Accept},
		{"0.0.0.0/0 admits every source", from("8.8.8.8", "203.0.113.3"), tracer.Accept},
		{"::/0 does not lift the IPv4 filter", from("8.8.8.8", "203.0.113.4"), tracer.Drop},
		{"::/0 keeps the IPv4 range working", from("198.51.100.7", "203.0.113.4"), tracer.Accept},
		{"no endpoints: a disallowed source is still dropped", from("8.8.8.8", "203.0.113.5"), tracer.Drop},
		{"no endpoints: an allowed source reaches IPVS", from("198.51.100.7", "203.0.113.5"), tracer.Accept},
	} {
		res, o := traceOnly(t, tr, c.name, c.p)
		if o.Verdict != c.verdict {
			t.Errorf("%s: %s, want %s\n%s", c.name, o.Verdict, c.verdict, res)
		}
	}

	// Unfiltered load balancers have no LOAD-BALANCER-FW entry at all, as in kube-proxy (a
	// hash:ip,port,net set cannot even hold a /0).
	fw := strings.Join(k.ipset.Members(setName(model.IPv4, setLoadBalancerFW)), "\n")
	for lbIP, want := range map[string]bool{"203.0.113.1": true, "203.0.113.2": false, "203.0.113.3": false, "203.0.113.4": true, "203.0.113.5": true} {
		if got := strings.Contains(fw, lbIP+","); got != want {
			t.Errorf("%s in %s: %v, want %v:\n%s", lbIP, setName(model.IPv4, setLoadBalancerFW), got, want, fw)
		}
	}
	for _, m := range k.ipset.Members(setName(model.IPv4, setLoadBalancerSourceCIDR)) {
		if strings.HasSuffix(m, "/0") {
			t.Errorf("source-CIDR entry %q: a zero-length range", m)
		}
	}
}

// TestSourceRangesRenderIPv6 checks the same reading of the ranges in an IPv6 render.
func TestSourceRangesRenderIPv6(t *testing.T) {
	opts := testOptions()
	opts.Family = model.IPv6
	p := netip.MustParsePrefix
	for _, c := range []struct {
		name   string
		ranges []netip.Prefix
		want   []netip.Prefix // source-CIDR entries; nil: no firewall
	}{
		{"both families", []netip.Prefix{p("198.51.100.0/24"), p("2001:db8::/32")}, []netip.Prefix{p("2001:db8::/32")}},
		{"the other family only", []netip.Prefix{p("198.51.100.0/24")}, nil},
		{"::/0", []netip.Prefix{p("2001:db8::/32"), p("::/0")}, nil},
		{"0.0.0.0/0 is the other family's", []netip.Prefix{p("2001:db8::/32"), p("0.0.0.0/0")}, []netip.Prefix{p("2001:db8::/32")}},
	} {
		svc := &model.ServicePort{Name: spn("default", "lb6", ""), Protocol: model.TCP, Port: 443,
			ClusterIPs: []netip.Addr{ip("fd00:96::5")}, LoadBalancerIPs: []netip.Addr{ip("2001:db8:ffff::5")},
			LoadBalancerSourceRanges: c.ranges, ExternalPolicy: model.PolicyCluster, InternalPolicy: model.PolicyCluster}
		r, err := renderService(svc, []model.Endpoint{ready("fd00:244::9", 8443, "node-b")}, model.NodeInfo{Name: nodeName}, nodeAddrs{}, &opts)
		if err != nil {
			t.Fatal(err)
		}
		var fw bool
		var cidrs []netip.Prefix
		for _, e := range r.Entries {
			switch e.Kind {
			case setLoadBalancerFW:
				fw = true
			case setLoadBalancerSourceCIDR:
				cidrs = append(cidrs, e.Entry.Net)
			}
		}
		if fw != (c.want != nil) || !slices.Equal(cidrs, c.want) {
			t.Errorf("%s: firewalled=%v with source CIDRs %v, want %v", c.name, fw, cidrs, c.want)
		}
	}
}
