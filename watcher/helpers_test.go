package watcher

import (
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchyard/switchyard/internal/metricstest"
	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"
)

// Fixture addresses follow the project's conventions: ClusterIPs in 10.96.0.0/16, pods in
// 10.244.0.0/16, node underlay in 192.168.50.0/24, documentation ranges for external addresses.

func ptr[T any](v T) *T { return &v }

func addr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatalf("bad fixture address %q: %v", s, err)
	}
	return a
}

func addrs(t testing.TB, ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, addr(t, s))
	}
	return out
}

func prefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			t.Fatalf("bad fixture prefix %q: %v", s, err)
		}
		out = append(out, p)
	}
	return out
}

// svc builds a ClusterIP service with one TCP port named "http" on 80; mutators adjust it.
func svc(ns, name, clusterIP string, mutate ...func(*v1.Service)) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.ServiceSpec{
			Type:       v1.ServiceTypeClusterIP,
			ClusterIP:  clusterIP,
			ClusterIPs: []string{clusterIP},
			Ports:      []v1.ServicePort{{Name: "http", Protocol: v1.ProtocolTCP, Port: 80}},
		},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

// slice builds an IPv4 EndpointSlice of service svcName with one TCP port named "http" on 8080.
func slice(ns, name, svcName string, eps []discovery.Endpoint, mutate ...func(*discovery.EndpointSlice)) *discovery.EndpointSlice {
	es := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Labels: map[string]string{discovery.LabelServiceName: svcName}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr("http"), Protocol: ptr(v1.ProtocolTCP), Port: ptr(int32(8080))}},
		Endpoints:   eps,
	}
	for _, m := range mutate {
		m(es)
	}
	return es
}

// ep builds a ready endpoint on a node.
func ep(ip, node string) discovery.Endpoint {
	return discovery.Endpoint{Addresses: []string{ip}, NodeName: ptr(node), Conditions: discovery.EndpointConditions{Ready: ptr(true)}}
}

func invalidCount(t testing.TB, kind, reason string) float64 {
	return metricstest.Value(t, metrics.InvalidObjectsTotal.WithLabelValues(kind, reason))
}

func spn(ns, name, port string) model.ServicePortName {
	return model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: ns, Name: name}, Port: port}
}
