package watcher

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchyard/switchyard/proxier/model"
)

// The fuzz targets below feed arbitrary Services and EndpointSlices through conversion and the change
// tracker. Beyond "no panic" they check what the backends rely on: every modelled address is valid
// and unzoned, every port is in range, every spec port is either modelled or reported, and
// conversion is deterministic. Run one with, for example:
//
//	go test ./watcher -run '^$' -fuzz FuzzConvertService -fuzztime 2m

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func FuzzConvertService(f *testing.F) {
	// clusterIPs, families, type, ports "name/proto/port/nodePort;...", externalIPs, ingress IPs,
	// source ranges, source-range annotation, topology annotation, affinity timeout (-1: unset), eTP, iTP, hcnp
	f.Add("10.96.0.10", "IPv4", "ClusterIP", "http/TCP/80/0", "", "", "", "", "", int32(-1), "", "", int32(0))
	f.Add("10.96.0.10,fd00:10:96::a", "IPv4,IPv6", "LoadBalancer", "http/TCP/80/30080;dns/UDP/53/30053",
		"203.0.113.10,2001:db8::10", "203.0.113.20", "198.51.100.0/24", "", "Auto", int32(3600), "Local", "Local", int32(32000))
	f.Add("010.096.000.010", "", "NodePort", "/SCTP/9999/65535", "203.0.113.007", "", "", "10.0.0.0/8, 2001:db8::/32", "", int32(0), "Cluster", "", int32(0))
	f.Add("10.96.0.300", "IPv6", "Magic", "a/ICMP/0/-1;a/TCP/65536/70000", "x", "1.2.3", "1.2.3.4/33", "bad", "Disabled", int32(86401), "Local", "Local", int32(-5))
	f.Add("None", "", "ClusterIP", "http/TCP/80/0", "", "", "", "", "", int32(-1), "", "", int32(0))
	f.Add("fe80::1%eth0", "IPv6", "", ":::", "::ffff:1.2.3.4", "::", "::/0", "", "auto", int32(1), "", "", int32(0))
	f.Fuzz(func(t *testing.T, clusterIPs, families, typ, ports, externalIPs, ingress, ranges, rangeAnn, topo string,
		timeout int32, etp, itp string, hcnp int32) {
		s := &v1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fuzz", Annotations: map[string]string{}},
			Spec: v1.ServiceSpec{
				Type:                     v1.ServiceType(typ),
				ClusterIPs:               splitList(clusterIPs),
				ExternalIPs:              splitList(externalIPs),
				LoadBalancerSourceRanges: splitList(ranges),
				ExternalTrafficPolicy:    v1.ServiceExternalTrafficPolicy(etp),
				HealthCheckNodePort:      hcnp,
			},
		}
		if len(s.Spec.ClusterIPs) > 0 {
			s.Spec.ClusterIP = s.Spec.ClusterIPs[0]
		}
		for _, fam := range splitList(families) {
			s.Spec.IPFamilies = append(s.Spec.IPFamilies, v1.IPFamily(fam))
		}
		for _, ip := range splitList(ingress) {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: ip})
		}
		if rangeAnn != "" {
			s.Annotations[v1.AnnotationLoadBalancerSourceRangesKey] = rangeAnn
		}
		if topo != "" {
			s.Annotations[v1.AnnotationTopologyMode] = topo
		}
		if timeout >= 0 {
			s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: &timeout}}
		}
		if itp != "" {
			p := v1.ServiceInternalTrafficPolicy(itp)
			s.Spec.InternalTrafficPolicy = &p
		}
		for _, p := range strings.Split(ports, ";") {
			fl := strings.Split(p, "/")
			for len(fl) < 4 {
				fl = append(fl, "")
			}
			s.Spec.Ports = append(s.Spec.Ports, v1.ServicePort{
				Name: fl[0], Protocol: v1.Protocol(fl[1]), Port: atoi32(fl[2]), NodePort: atoi32(fl[3]),
			})
		}
		checkServiceConversion(t, s)
	})
}

// FuzzConvertServiceJSON decodes arbitrary JSON as a Service, reaching field combinations the
// structured target cannot build.
func FuzzConvertServiceJSON(f *testing.F) {
	fuzzJSON(f, checkServiceConversion, []*v1.Service{
		svc("ns", "web", "10.96.0.10"),
		svc("ns", "lb", "10.96.0.11", func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeLoadBalancer
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
			s.Spec.HealthCheckNodePort = 32000
			s.Spec.LoadBalancerSourceRanges = []string{"198.51.100.0/24"}
			s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "203.0.113.20", IPMode: ptr(v1.LoadBalancerIPModeProxy)}}
			s.Spec.TrafficDistribution = ptr("PreferClose")
		}),
	}, `{"metadata":{"name":"x"},"spec":{"clusterIP":"10.96.0.1","ports":[{"port":99999}],"sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{}}}}`)
}

func checkServiceConversion(t *testing.T, s *v1.Service) {
	ports, rejects := convertService(s)
	again, rejectsAgain := convertService(s)
	if !equalPorts(ports, again) || !reflect.DeepEqual(rejects, rejectsAgain) {
		t.Fatal("conversion is not deterministic")
	}
	// A bad source range is reported without costing its service any port.
	portRejects := len(rejects)
	for _, r := range rejects {
		if r.Reason == reasonSourceRange {
			portRejects--
		}
	}
	if skipReason(s) == "" && len(s.Spec.Ports) > 0 && len(ports)+portRejects != len(s.Spec.Ports) {
		t.Fatalf("%d spec ports gave %d modelled and %d rejected", len(s.Spec.Ports), len(ports), portRejects)
	}
	for name, p := range ports {
		if name != p.Name || name.Namespace != s.Namespace || name.Name != s.Name {
			t.Fatalf("port keyed %v carries name %v", name, p.Name)
		}
		if p.Port < 1 || p.Port > 65535 || p.NodePort < 0 || p.NodePort > 65535 || p.HealthCheckNodePort < 0 || p.HealthCheckNodePort > 65535 {
			t.Fatalf("port out of range: %+v", p)
		}
		switch p.Protocol {
		case model.TCP, model.UDP, model.SCTP:
		default:
			t.Fatalf("protocol %q modelled", p.Protocol)
		}
		if len(p.ClusterIPs) == 0 {
			t.Fatalf("no cluster IP: %+v", p)
		}
		for _, group := range [][]netip.Addr{p.ClusterIPs, p.ExternalIPs, p.LoadBalancerIPs} {
			for _, a := range group {
				checkAddr(t, a)
			}
		}
		for _, r := range p.LoadBalancerSourceRanges {
			if !r.IsValid() || r != r.Masked() {
				t.Fatalf("source range %v invalid or unmasked", r)
			}
			checkAddr(t, r.Addr())
		}
		if p.Affinity.ClientIP && (p.Affinity.TimeoutSeconds < 1 || p.Affinity.TimeoutSeconds > maxAffinityTimeout) {
			t.Fatalf("affinity timeout %d", p.Affinity.TimeoutSeconds)
		}
		if p.ExternalPolicy != model.PolicyCluster && p.ExternalPolicy != model.PolicyLocal ||
			p.InternalPolicy != model.PolicyCluster && p.InternalPolicy != model.PolicyLocal {
			t.Fatalf("policies %q %q", p.ExternalPolicy, p.InternalPolicy)
		}
	}
	for _, r := range rejects {
		if r.Reason == "" || r.Kind != kindService {
			t.Fatalf("rejection without a reason: %+v", r)
		}
	}
	// The tracker must take whatever conversion produced.
	tr := newTracker("node-a")
	tr.setService(model.ServiceKey{Namespace: s.Namespace, Name: s.Name}, ports)
	snap, _ := tr.snapshot(false)
	if len(snap.Services) != len(ports) {
		t.Fatalf("snapshot holds %d ports, conversion gave %d", len(snap.Services), len(ports))
	}
}

// checkAddr: a modelled address is valid, carries no zone, and belongs to exactly one family.
func checkAddr(t *testing.T, a netip.Addr) {
	t.Helper()
	if !a.IsValid() || a.Zone() != "" || model.IPv4.Of(a) == model.IPv6.Of(a) {
		t.Fatalf("bad modelled address %v", a)
	}
}

func FuzzConvertEndpointSlice(f *testing.F) {
	// addressType, addresses "ip|ip2;ip3", ports "name/proto/port;...", conditions bitmask, node, hints
	f.Add("IPv4", "10.244.1.5;10.244.2.5", "http/TCP/8080", uint8(0), "node-a", "zone-a")
	f.Add("IPv6", "fd00:10:244::5;10.244.1.5", "/UDP/53;/UDP/53", uint8(0x3f), "", "")
	f.Add("IPv4", ";10.244.1.300;010.244.001.005|x", "a/ICMP/0;b/TCP/65536;c//", uint8(0x15), "node-b", "zone-a,zone-a")
	f.Add("FQDN", "example.com", "http/TCP/80", uint8(0), "", "")
	f.Fuzz(func(t *testing.T, addressType, addresses, ports string, cond uint8, node, zoneHints string) {
		es := &discovery.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "fuzz-1", Labels: map[string]string{discovery.LabelServiceName: "fuzz"}},
			AddressType: discovery.AddressType(addressType),
		}
		for i, a := range strings.Split(addresses, ";") {
			e := discovery.Endpoint{NodeName: &node}
			if a != "" {
				e.Addresses = strings.Split(a, "|")
			}
			// Two bits per condition: unset, false, true.
			bits := cond >> (uint(i) % 4)
			e.Conditions.Ready = tristate(bits & 3)
			e.Conditions.Serving = tristate((bits >> 2) & 3)
			e.Conditions.Terminating = tristate((bits >> 4) & 3)
			if zoneHints != "" {
				e.Hints = &discovery.EndpointHints{}
				for _, z := range strings.Split(zoneHints, ",") {
					e.Hints.ForZones = append(e.Hints.ForZones, discovery.ForZone{Name: z})
				}
			}
			es.Endpoints = append(es.Endpoints, e)
		}
		for _, p := range strings.Split(ports, ";") {
			fl := strings.Split(p, "/")
			for len(fl) < 3 {
				fl = append(fl, "")
			}
			ep := discovery.EndpointPort{Name: &fl[0]}
			if fl[1] != "" {
				proto := v1.Protocol(fl[1])
				ep.Protocol = &proto
			}
			if fl[2] != "" {
				n := atoi32(fl[2])
				ep.Port = &n
			}
			es.Ports = append(es.Ports, ep)
		}
		checkSliceConversion(t, es)
	})
}

func FuzzConvertEndpointSliceJSON(f *testing.F) {
	fuzzJSON(f, checkSliceConversion, []*discovery.EndpointSlice{slice("ns", "web-1", "web", []discovery.Endpoint{ep("10.244.1.5", "node-a")})},
		`{"metadata":{"name":"s","labels":{"kubernetes.io/service-name":"x"}},"addressType":"IPv6","endpoints":[{"addresses":[]},{"addresses":["::1"],"hints":{"forZones":[{}]}}],"ports":[{}]}`)
}

// fuzzJSON fuzzes check with every document that decodes as JSON into a T. The corpus starts with
// seeds, marshalled, and the documents in raw.
func fuzzJSON[T any](f *testing.F, check func(*testing.T, *T), seeds []*T, raw ...string) {
	for _, s := range seeds {
		b, err := json.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, r := range raw {
		f.Add([]byte(r))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v T
		if json.Unmarshal(data, &v) != nil {
			return
		}
		check(t, &v)
	})
}

func checkSliceConversion(t *testing.T, es *discovery.EndpointSlice) {
	key, info, rejects, ok := convertEndpointSlice(es)
	_, info2, rejects2, ok2 := convertEndpointSlice(es)
	if ok != ok2 || !reflect.DeepEqual(info, info2) || !reflect.DeepEqual(rejects, rejects2) {
		t.Fatal("conversion is not deterministic")
	}
	if !ok {
		return
	}
	if len(info.Endpoints)+countParts(rejects, "endpoint") != len(es.Endpoints) {
		t.Fatalf("%d endpoints gave %d modelled and %v rejected", len(es.Endpoints), len(info.Endpoints), rejects)
	}
	if len(info.Ports)+countParts(rejects, "port") != len(es.Ports) {
		t.Fatalf("%d ports gave %d modelled and %v rejected", len(es.Ports), len(info.Ports), rejects)
	}
	for _, p := range info.Ports {
		if p.Port < 1 || p.Port > 65535 {
			t.Fatalf("port %d modelled", p.Port)
		}
	}
	for _, e := range info.Endpoints {
		checkAddr(t, e.IP)
		if (es.AddressType == discovery.AddressTypeIPv4) != e.IP.Is4() {
			t.Fatalf("%v in a %s slice", e.IP, es.AddressType)
		}
	}
	// Merge it twice under two slice names: the duplicates must collapse.
	tr := newTracker("node-a")
	tr.setSlice(sliceRef{es.Namespace, "a"}, key, info, noTime)
	tr.setSlice(sliceRef{es.Namespace, "b"}, key, info, noTime)
	for pk, eps := range tr.endpoints[key] {
		seen := map[netip.AddrPort]bool{}
		for _, e := range eps {
			if seen[e.AddrPort()] {
				t.Fatalf("duplicate endpoint %v for %v", e.AddrPort(), pk)
			}
			seen[e.AddrPort()] = true
		}
	}
	tr.setSlice(sliceRef{es.Namespace, "a"}, key, nil, noTime)
	tr.setSlice(sliceRef{es.Namespace, "b"}, key, nil, noTime)
	if len(tr.endpoints) != 0 || len(tr.slices) != 0 || len(tr.sliceSvc) != 0 {
		t.Fatalf("deleting every slice left state behind: %v %v %v", tr.endpoints, tr.slices, tr.sliceSvc)
	}
}

var noTime time.Time

func countParts(rejects []rejection, prefix string) int {
	n := 0
	for _, r := range rejects {
		if strings.HasPrefix(r.Part, prefix) {
			n++
		}
	}
	return n
}

func tristate(v uint8) *bool {
	switch v {
	case 1:
		return ptr(false)
	case 2:
		return ptr(true)
	}
	return nil
}

// atoi32 reads a decimal int32 without failing: fuzz input decides the value, garbage gives 0.
func atoi32(s string) int32 {
	var n int64
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for _, c := range s {
		if c < '0' || c > '9' || n > 1<<32 {
			break
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return int32(n)
}
