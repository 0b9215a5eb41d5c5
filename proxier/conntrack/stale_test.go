package conntrack_test

import (
	"net/netip"
	"testing"

	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/conntrack/conntracktest"
	"github.com/switchyard/switchyard/proxier/model"
)

var (
	vip      = netip.MustParseAddr("10.96.0.53")
	extIP    = netip.MustParseAddr("192.168.50.200")
	epA      = netip.MustParseAddrPort("10.244.1.2:5353")
	epB      = netip.MustParseAddrPort("10.244.2.3:5353")
	client   = netip.MustParseAddrPort("10.244.1.9:40000")
	dnsName  = model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "kube-system", Name: "dns"}, Port: "dns"}
	nodeAddr = netip.MustParseAddrPort("192.168.50.1:30053")
)

func dnsService(proto model.Protocol) *model.ServicePort {
	return &model.ServicePort{Name: dnsName, Protocol: proto, Port: 53, ClusterIPs: []netip.Addr{vip}, ExternalIPs: []netip.Addr{extIP}, NodePort: 30053}
}

func endpoint(ap netip.AddrPort) model.Endpoint {
	return model.Endpoint{IP: ap.Addr(), Port: int32(ap.Port()), Ready: true, Serving: true}
}

func snapshot(svc *model.ServicePort, eps ...netip.AddrPort) *model.Snapshot {
	s := model.NewSnapshot()
	if svc != nil {
		s.Services[svc.Name] = svc
		for _, e := range eps {
			s.Endpoints[svc.Name] = append(s.Endpoints[svc.Name], endpoint(e))
		}
	}
	s.Changed[dnsName.ServiceKey] = struct{}{}
	return s
}

// table is a conntrack table with flows of every kind a DNS service sees.
func table() *conntracktest.Fake {
	vipPort := netip.AddrPortFrom(vip, 53)
	extPort := netip.AddrPortFrom(extIP, 53)
	flow := func(p model.Protocol, dst, replySrc netip.AddrPort) conntracktest.Flow {
		return conntracktest.Flow{Protocol: p, OrigSrc: client, OrigDst: dst, ReplySrc: replySrc}
	}
	return &conntracktest.Fake{Flows: []conntracktest.Flow{
		flow(model.UDP, vipPort, epA),       // 0: ClusterIP -> A
		flow(model.UDP, vipPort, epB),       // 1: ClusterIP -> B
		flow(model.UDP, extPort, epA),       // 2: external IP -> A
		flow(model.UDP, nodeAddr, epA),      // 3: node port -> A
		flow(model.UDP, vipPort, vipPort),   // 4: ClusterIP, never DNATed (no endpoints then)
		flow(model.UDP, nodeAddr, nodeAddr), // 5: node port, never DNATed
		flow(model.TCP, vipPort, epA),       // 6: TCP is never touched
	}}
}

func remaining(t *testing.T, prev, cur *model.Snapshot) []int {
	t.Helper()
	f := table()
	all := append([]conntracktest.Flow(nil), f.Flows...)
	if err := conntrack.Delete(f, model.IPv4, conntrack.StaleUDP(prev, cur, model.IPv4)); err != nil {
		t.Fatal(err)
	}
	var idx []int
	for i, fl := range all {
		for _, kept := range f.Flows {
			if kept == fl {
				idx = append(idx, i)
				break
			}
		}
	}
	return idx
}

func TestStaleUDP(t *testing.T) {
	udp := dnsService(model.UDP)
	for name, tc := range map[string]struct {
		prev, cur *model.Snapshot
		want      []int
	}{
		"endpoint A removed":         {snapshot(udp, epA, epB), snapshot(udp, epB), []int{1, 4, 5, 6}},
		"nothing changed":            {snapshot(udp, epA, epB), snapshot(udp, epA, epB), []int{0, 1, 2, 3, 4, 5, 6}},
		"first endpoint appears":     {snapshot(udp), snapshot(udp, epA), []int{0, 1, 2, 3, 6}},
		"service deleted":            {snapshot(udp, epA, epB), snapshot(nil), []int{4, 5, 6}},
		"TCP service loses endpoint": {snapshot(dnsService(model.TCP), epA, epB), snapshot(dnsService(model.TCP), epB), []int{0, 1, 2, 3, 4, 5, 6}},
		"first sync, has endpoints":  {nil, snapshot(udp, epA), []int{0, 1, 2, 3, 6}},
		"all endpoints go":           {snapshot(udp, epA, epB), snapshot(udp), []int{4, 5, 6}},
	} {
		t.Run(name, func(t *testing.T) {
			got := remaining(t, tc.prev, tc.cur)
			if len(got) != len(tc.want) {
				t.Fatalf("flows left = %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("flows left = %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestStaleUDPOnlyChanged: without Full, services outside Changed are not compared.
func TestStaleUDPOnlyChanged(t *testing.T) {
	udp := dnsService(model.UDP)
	prev, cur := snapshot(udp, epA, epB), snapshot(udp, epB)
	cur.Changed = map[model.ServiceKey]struct{}{}
	if s := conntrack.StaleUDP(prev, cur, model.IPv4); !s.Empty() {
		t.Errorf("unchanged service produced filters %v", s.Filters)
	}
	cur.Full = true
	if s := conntrack.StaleUDP(prev, cur, model.IPv4); s.Empty() {
		t.Error("a full sync ignored the removed endpoint")
	}
}

// TestStaleUDPFamily: an IPv6 pass ignores IPv4 services and endpoints.
func TestStaleUDPFamily(t *testing.T) {
	udp := dnsService(model.UDP)
	if s := conntrack.StaleUDP(snapshot(udp, epA, epB), snapshot(udp, epB), model.IPv6); !s.Empty() {
		t.Errorf("IPv6 pass produced filters %v", s.Filters)
	}
}
