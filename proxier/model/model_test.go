package model

import (
	"net/netip"
	"slices"
	"testing"
)

func TestIPFamilyOf(t *testing.T) {
	cases := []struct {
		addr     string
		v4, v6   bool
		asString string
	}{
		{"10.96.0.1", true, false, "IPv4"},
		{"fd00::1", false, true, "IPv6"},
		// An IPv4-mapped IPv6 address belongs to neither: the watcher unmaps them, and a backend must
		// not program one into an IPv6 table as if it were native IPv6.
		{"::ffff:10.96.0.1", false, false, ""},
	}
	for _, tc := range cases {
		a := netip.MustParseAddr(tc.addr)
		if IPv4.Of(a) != tc.v4 || IPv6.Of(a) != tc.v6 {
			t.Errorf("%s: IPv4.Of=%v IPv6.Of=%v, want %v %v", tc.addr, IPv4.Of(a), IPv6.Of(a), tc.v4, tc.v6)
		}
	}
	if IPv4.String() != "IPv4" || IPv6.String() != "IPv6" {
		t.Errorf("family names: %s %s", IPv4, IPv6)
	}
}

func TestFamilyFilters(t *testing.T) {
	s := &ServicePort{ClusterIPs: []netip.Addr{netip.MustParseAddr("fd00:10:96::a"), netip.MustParseAddr("10.96.0.10")}}
	if got := s.ClusterIPFor(IPv4); got != netip.MustParseAddr("10.96.0.10") {
		t.Errorf("ClusterIPFor(IPv4) = %v", got)
	}
	if got := s.ClusterIPFor(IPv6); got != netip.MustParseAddr("fd00:10:96::a") {
		t.Errorf("ClusterIPFor(IPv6) = %v", got)
	}
	if got := (&ServicePort{}).ClusterIPFor(IPv4); got.IsValid() {
		t.Errorf("ClusterIPFor on no IPs = %v, want the zero Addr", got)
	}
	mixed := []netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("203.0.113.2")}
	if got := AddrsFor(IPv4, mixed); !slices.Equal(got, []netip.Addr{mixed[0], mixed[2]}) {
		t.Errorf("AddrsFor(IPv4) = %v", got)
	}
	if got := AddrsFor(IPv6, mixed); !slices.Equal(got, []netip.Addr{mixed[1]}) {
		t.Errorf("AddrsFor(IPv6) = %v", got)
	}
	ps := []netip.Prefix{netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("198.51.100.0/24")}
	if got := PrefixesFor(IPv4, ps); !slices.Equal(got, ps[1:]) {
		t.Errorf("PrefixesFor(IPv4) = %v", got)
	}
	if got := PrefixesFor(IPv6, ps); !slices.Equal(got, ps[:1]) {
		t.Errorf("PrefixesFor(IPv6) = %v", got)
	}
}

// TestSourceRangesFor pins kube-proxy's reading of loadBalancerSourceRanges: per family, and a
// zero-length prefix of the family lifts that family's filter.
func TestSourceRangesFor(t *testing.T) {
	p := netip.MustParsePrefix
	cases := []struct {
		name   string
		ranges []netip.Prefix
		v4, v6 []netip.Prefix
	}{
		{"none", nil, nil, nil},
		{"one per family", []netip.Prefix{p("203.0.113.0/24"), p("2001:db8::/32")}, []netip.Prefix{p("203.0.113.0/24")}, []netip.Prefix{p("2001:db8::/32")}},
		{"other family only: this family is not filtered", []netip.Prefix{p("2001:db8::/32")}, nil, []netip.Prefix{p("2001:db8::/32")}},
		{"0.0.0.0/0 lifts the IPv4 filter only", []netip.Prefix{p("203.0.113.0/24"), p("0.0.0.0/0"), p("2001:db8::/32")}, nil, []netip.Prefix{p("2001:db8::/32")}},
		{"::/0 lifts the IPv6 filter only", []netip.Prefix{p("::/0"), p("203.0.113.0/24"), p("2001:db8::/32")}, []netip.Prefix{p("203.0.113.0/24")}, nil},
	}
	for _, tc := range cases {
		s := &ServicePort{LoadBalancerSourceRanges: tc.ranges}
		if got := s.SourceRangesFor(IPv4); !slices.Equal(got, tc.v4) {
			t.Errorf("%s: SourceRangesFor(IPv4) = %v, want %v", tc.name, got, tc.v4)
		}
		if got := s.SourceRangesFor(IPv6); !slices.Equal(got, tc.v6) {
			t.Errorf("%s: SourceRangesFor(IPv6) = %v, want %v", tc.name, got, tc.v6)
		}
	}
}

// TestPolicyPredicates pins kube-proxy's rules for which endpoint sets a service uses.
func TestPolicyPredicates(t *testing.T) {
	ext := []netip.Addr{netip.MustParseAddr("203.0.113.1")}
	cases := []struct {
		name                               string
		svc                                ServicePort
		accessible, eLocal, iLocal, uc, ul bool
	}{
		{"ClusterIP", ServicePort{ExternalPolicy: PolicyCluster, InternalPolicy: PolicyCluster}, false, false, false, true, false},
		{"ClusterIP with eTP=Local (ignored)", ServicePort{ExternalPolicy: PolicyLocal, InternalPolicy: PolicyCluster}, false, false, false, true, false},
		{"ClusterIP with iTP=Local", ServicePort{InternalPolicy: PolicyLocal}, false, false, true, false, true},
		{"NodePort", ServicePort{NodePort: 30080, ExternalPolicy: PolicyCluster}, true, false, false, true, false},
		{"NodePort eTP=Local", ServicePort{NodePort: 30080, ExternalPolicy: PolicyLocal}, true, true, false, true, true},
		{"external IP eTP=Local iTP=Local", ServicePort{ExternalIPs: ext, ExternalPolicy: PolicyLocal, InternalPolicy: PolicyLocal}, true, true, true, true, true},
		{"ClusterIP iTP=Local", ServicePort{InternalPolicy: PolicyLocal}, false, false, true, false, true},
		{"load balancer iTP=Local eTP=Cluster", ServicePort{LoadBalancerIPs: ext, InternalPolicy: PolicyLocal}, true, false, true, true, true},
	}
	for _, tc := range cases {
		s := tc.svc
		got := []bool{s.ExternallyAccessible(), s.ExternalPolicyLocal(), s.InternalPolicyLocal(), s.UsesClusterEndpoints(), s.UsesLocalEndpoints()}
		want := []bool{tc.accessible, tc.eLocal, tc.iLocal, tc.uc, tc.ul}
		if !slices.Equal(got, want) {
			t.Errorf("%s: accessible, eLocal, iLocal, usesCluster, usesLocal = %v, want %v", tc.name, got, want)
		}
	}
}

func TestNames(t *testing.T) {
	named := ServicePortName{ServiceKey: ServiceKey{Namespace: "ns", Name: "web"}, Port: "http"}
	unnamed := ServicePortName{ServiceKey: ServiceKey{Namespace: "ns", Name: "web"}}
	if named.String() != "ns/web:http" || unnamed.String() != "ns/web" {
		t.Errorf("names: %q %q", named, unnamed)
	}
	sp := &ServicePort{Name: named, Protocol: UDP, Port: 53}
	if sp.String() != "ns/web:http/UDP:53" {
		t.Errorf("ServicePort.String() = %q", sp.String())
	}
	e := &Endpoint{IP: netip.MustParseAddr("fd00:10:244::5"), Port: 8080}
	if e.String() != "[fd00:10:244::5]:8080" || e.AddrPort() != netip.MustParseAddrPort("[fd00:10:244::5]:8080") {
		t.Errorf("Endpoint.String() = %q", e.String())
	}
	if (NodeInfo{}).Zone() != "" || (NodeInfo{Labels: map[string]string{ZoneLabel: "z"}}).Zone() != "z" {
		t.Error("NodeInfo.Zone")
	}
}

func TestSnapshotOrdering(t *testing.T) {
	snap := NewSnapshot()
	names := []ServicePortName{
		{ServiceKey: ServiceKey{Namespace: "b", Name: "a"}, Port: ""},
		{ServiceKey: ServiceKey{Namespace: "a", Name: "z"}, Port: "x"},
		{ServiceKey: ServiceKey{Namespace: "a", Name: "b"}, Port: "y"},
		{ServiceKey: ServiceKey{Namespace: "a", Name: "b"}, Port: "x"},
	}
	for _, n := range names {
		snap.Services[n] = &ServicePort{Name: n}
	}
	got := snap.SortedServiceNames()
	want := []ServicePortName{names[3], names[2], names[1], names[0]}
	if !slices.Equal(got, want) {
		t.Errorf("SortedServiceNames = %v, want %v", got, want)
	}
	if got := snap.PortsOf(ServiceKey{Namespace: "a", Name: "b"}); !slices.Equal(got, []ServicePortName{names[3], names[2]}) {
		t.Errorf("PortsOf = %v", got)
	}
	if got := snap.PortsOf(ServiceKey{Namespace: "none", Name: "x"}); len(got) != 0 {
		t.Errorf("PortsOf a missing service = %v", got)
	}
}
