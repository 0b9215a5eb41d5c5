package watcher

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"

	"github.com/switchyard/switchyard/proxier/model"
)

func mustService(t testing.TB, s *v1.Service) servicePorts {
	t.Helper()
	ports, rejects := convertService(s)
	if len(rejects) != 0 {
		t.Fatalf("fixture rejected: %v", rejects)
	}
	return ports
}

func mustSlice(t testing.TB, es *discovery.EndpointSlice) (model.ServiceKey, *sliceInfo) {
	t.Helper()
	key, info, rejects, ok := convertEndpointSlice(es)
	if !ok || len(rejects) != 0 {
		t.Fatalf("fixture rejected: ok=%v %v", ok, rejects)
	}
	return key, info
}

func TestTrackerEndpointsMatchPortNameAndProtocol(t *testing.T) {
	tr := newTracker("node-a")
	tr.setService(webKey, mustService(t, svc("ns", "web", "10.96.0.10", func(s *v1.Service) {
		s.Spec.Ports = []v1.ServicePort{{Name: "http", Protocol: v1.ProtocolTCP, Port: 80}, {Name: "dns", Protocol: v1.ProtocolUDP, Port: 53}}
	})))
	key, info := mustSlice(t, slice("ns", "web-1", "web", []discovery.Endpoint{ep("10.244.1.5", "node-a")},
		func(es *discovery.EndpointSlice) {
			es.Ports = []discovery.EndpointPort{
				{Name: ptr("http"), Protocol: ptr(v1.ProtocolTCP), Port: ptr(int32(8080))},
				{Name: ptr("dns"), Protocol: ptr(v1.ProtocolTCP), Port: ptr(int32(5353))},     // protocol differs from the service's
				{Name: ptr("metrics"), Protocol: ptr(v1.ProtocolTCP), Port: ptr(int32(9090))}, // no such service port
			}
		}))
	tr.setSlice(sliceRef{"ns", "web-1"}, key, info, time.Time{})
	snap, _ := tr.snapshot(false)
	if got := snap.Endpoints[spn("ns", "web", "http")]; len(got) != 1 || got[0].Port != 8080 {
		t.Errorf("http endpoints = %+v", got)
	}
	if got, ok := snap.Endpoints[spn("ns", "web", "dns")]; ok {
		t.Errorf("dns (UDP) got endpoints of a TCP slice port: %+v", got)
	}
	if len(snap.Endpoints) != 1 {
		t.Errorf("endpoints for ports the service lacks: %v", snap.Endpoints)
	}
}

func TestTrackerSliceRelabelled(t *testing.T) {
	tr := newTracker("node-a")
	otherSvcKey := model.ServiceKey{Namespace: "ns", Name: "other"}
	tr.setService(webKey, mustService(t, svc("ns", "web", "10.96.0.10")))
	tr.setService(otherSvcKey, mustService(t, svc("ns", "other", "10.96.0.11")))
	ref := sliceRef{"ns", "s-1"}
	key, info := mustSlice(t, slice("ns", "s-1", "web", []discovery.Endpoint{ep("10.244.1.5", "node-a")}))
	tr.setSlice(ref, key, info, time.Time{})
	tr.snapshot(false)

	key, info = mustSlice(t, slice("ns", "s-1", "other", []discovery.Endpoint{ep("10.244.1.5", "node-a")}))
	if !tr.setSlice(ref, key, info, time.Time{}) {
		t.Fatal("relabel not seen as a change")
	}
	snap, _ := tr.snapshot(false)
	wantChanged(t, snap, "ns/web", "ns/other")
	if len(snap.Endpoints[spn("ns", "web", "http")]) != 0 || len(snap.Endpoints[spn("ns", "other", "http")]) != 1 {
		t.Errorf("endpoints did not follow the slice: %v", snap.Endpoints)
	}
}

func TestTrackerServiceRecreatedKeepsEndpoints(t *testing.T) {
	tr := newTracker("node-a")
	ports := mustService(t, svc("ns", "web", "10.96.0.10"))
	tr.setService(webKey, ports)
	key, info := mustSlice(t, slice("ns", "web-1", "web", []discovery.Endpoint{ep("10.244.1.5", "node-a")}))
	tr.setSlice(sliceRef{"ns", "web-1"}, key, info, time.Time{})
	tr.snapshot(false)

	tr.setService(webKey, nil)
	snap, _ := tr.snapshot(false)
	wantChanged(t, snap, "ns/web")
	if len(snap.Services) != 0 || len(snap.Endpoints) != 0 {
		t.Errorf("deleted service still modelled: %v %v", snap.Services, snap.Endpoints)
	}
	tr.setService(webKey, mustService(t, svc("ns", "web", "10.96.0.10")))
	snap, _ = tr.snapshot(false)
	if len(snap.Endpoints[spn("ns", "web", "http")]) != 1 {
		t.Error("recreated service lost the endpoints its slice still lists")
	}
}

func TestTrackerServiceChangeReverted(t *testing.T) {
	tr := newTracker("node-a")
	tr.setService(webKey, mustService(t, svc("ns", "web", "10.96.0.10")))
	tr.snapshot(false)
	tr.setService(webKey, mustService(t, svc("ns", "web", "10.96.0.10", func(s *v1.Service) { s.Spec.Ports[0].Port = 81 })))
	tr.setService(webKey, mustService(t, svc("ns", "web", "10.96.0.10")))
	if tr.pending() {
		t.Error("a change and its reversal left something pending")
	}
	// Create-then-delete before any snapshot is nothing, too.
	tr.setService(otherKey, mustService(t, svc("ns", "other", "10.96.0.11")))
	tr.setService(otherKey, nil)
	snap, _ := tr.snapshot(false)
	wantChanged(t, snap)
}

// benchTracker fills a tracker with n services of one port and 5 endpoints each.
func benchTracker(b *testing.B, n int) *tracker {
	tr := newTracker("node-a")
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("svc-%d", i)
		key := model.ServiceKey{Namespace: "ns", Name: name}
		ip := netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})
		tr.setService(key, mustService(b, svc("ns", name, ip.String())))
		var eps []discovery.Endpoint
		for j := 0; j < 5; j++ {
			// Endpoint j of service i is 10.(240+j).(i>>8).(i&255): unique for i < 65536.
			pod := netip.AddrFrom4([4]byte{10, byte(240 + j), byte(i >> 8), byte(i)})
			eps = append(eps, ep(pod.String(), fmt.Sprintf("node-%d", j)))
		}
		k, info := mustSlice(b, slice("ns", name+"-1", name, eps))
		tr.setSlice(sliceRef{"ns", name + "-1"}, k, info, time.Time{})
	}
	tr.snapshot(true)
	return tr
}

// BenchmarkSnapshot measures publishing the full model, which every sync does.
func BenchmarkSnapshot(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			tr := benchTracker(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tr.snapshot(false)
			}
		})
	}
}

// BenchmarkEndpointUpdate measures handling one EndpointSlice change in a 10k-service model.
func BenchmarkEndpointUpdate(b *testing.B) {
	tr := benchTracker(b, 10000)
	ref := sliceRef{"ns", "svc-5000-1"}
	key := model.ServiceKey{Namespace: "ns", Name: "svc-5000"}
	_, a := mustSlice(b, slice("ns", "svc-5000-1", "svc-5000", []discovery.Endpoint{ep("10.244.50.1", "node-a")}))
	_, c := mustSlice(b, slice("ns", "svc-5000-1", "svc-5000", []discovery.Endpoint{ep("10.244.50.2", "node-a")}))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		info := a
		if i%2 == 1 {
			info = c
		}
		tr.setSlice(ref, key, info, time.Time{})
	}
}
