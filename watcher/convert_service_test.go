package watcher

import (
	"reflect"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/switchyard/switchyard/proxier/model"
)

// basePort is what svc("ns", "web", "10.96.0.10") converts to.
func basePort(t *testing.T) model.ServicePort {
	return model.ServicePort{
		Name:           spn("ns", "web", "http"),
		Protocol:       model.TCP,
		Port:           80,
		ClusterIPs:     addrs(t, "10.96.0.10"),
		ExternalPolicy: model.PolicyCluster,
		InternalPolicy: model.PolicyCluster,
	}
}

func TestConvertServiceFields(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*v1.Service)
		want   func(*model.ServicePort)
	}{
		{name: "plain ClusterIP", mutate: func(*v1.Service) {}, want: func(*model.ServicePort) {}},
		{
			name:   "empty protocol defaults to TCP and empty type to ClusterIP",
			mutate: func(s *v1.Service) { s.Spec.Type = ""; s.Spec.Ports[0].Protocol = "" },
			want:   func(*model.ServicePort) {},
		},
		{
			name:   "clusterIPs empty falls back to clusterIP",
			mutate: func(s *v1.Service) { s.Spec.ClusterIPs = nil },
			want:   func(*model.ServicePort) {},
		},
		{
			name: "dual-stack cluster IPs",
			mutate: func(s *v1.Service) {
				s.Spec.ClusterIPs = []string{"10.96.0.10", "fd00:10:96::a"}
				s.Spec.IPFamilies = []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}
			},
			want: func(p *model.ServicePort) { p.ClusterIPs = addrs(t, "10.96.0.10", "fd00:10:96::a") },
		},
		{
			name: "IPv4 with leading zeros, as old objects may hold, reads as decimal",
			mutate: func(s *v1.Service) {
				s.Spec.ClusterIPs = []string{"010.096.000.010"}
				s.Spec.ExternalIPs = []string{"203.0.113.007"}
			},
			want: func(p *model.ServicePort) { p.ExternalIPs = addrs(t, "203.0.113.7") },
		},
		{
			name:   "IPv4-mapped IPv6 reads as IPv4",
			mutate: func(s *v1.Service) { s.Spec.ClusterIPs = []string{"::ffff:10.96.0.10"} },
			want:   func(*model.ServicePort) {},
		},
		{
			name: "NodePort with external IPs",
			mutate: func(s *v1.Service) {
				s.Spec.Type = v1.ServiceTypeNodePort
				s.Spec.Ports[0].NodePort = 30080
				s.Spec.ExternalIPs = []string{"203.0.113.10", "2001:db8::10"}
			},
			want: func(p *model.ServicePort) {
				p.NodePort = 30080
				p.ExternalIPs = addrs(t, "203.0.113.10", "2001:db8::10")
			},
		},
		{
			name: "load balancer: hostname-only and Proxy-mode ingress are skipped, spec source ranges trimmed and masked, the annotation not read",
			mutate: func(s *v1.Service) {
				s.Spec.Type = v1.ServiceTypeLoadBalancer
				s.Spec.Ports[0].NodePort = 30080
				s.Spec.LoadBalancerSourceRanges = []string{" 198.51.100.0/24", "192.0.2.7/16"}
				s.Annotations = map[string]string{v1.AnnotationLoadBalancerSourceRangesKey: "10.0.0.0/8"}
				s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{
					{IP: "203.0.113.20"},
					{Hostname: "lb.example.com"},
					{IP: "203.0.113.21", IPMode: ptr(v1.LoadBalancerIPModeProxy)},
					{IP: "203.0.113.22", IPMode: ptr(v1.LoadBalancerIPModeVIP)},
				}
			},
			want: func(p *model.ServicePort) {
				p.NodePort = 30080
				p.LoadBalancerIPs = addrs(t, "203.0.113.20", "203.0.113.22")
				p.LoadBalancerSourceRanges = prefixes(t, "198.51.100.0/24", "192.0.0.0/16")
			},
		},
		{
			// kube-proxy v1.37 reads only spec.loadBalancerSourceRanges; the annotation is for the API
			// server and cloud providers.
			name: "the source-range annotation alone filters nothing",
			mutate: func(s *v1.Service) {
				s.Spec.Type = v1.ServiceTypeLoadBalancer
				s.Annotations = map[string]string{v1.AnnotationLoadBalancerSourceRangesKey: "198.51.100.0/24, 2001:db8::/32"}
			},
			want: func(*model.ServicePort) {},
		},
		{
			// Both families are kept (each backend takes its own), so is 0.0.0.0/0 (which lifts the
			// filter: model.ServicePort.SourceRangesFor); blank entries are skipped, leading zeros read
			// as decimal, as kube-proxy's sloppy parser does.
			name: "source ranges of both families, 0.0.0.0/0, blank entries and leading zeros",
			mutate: func(s *v1.Service) {
				s.Spec.Type = v1.ServiceTypeLoadBalancer
				s.Spec.LoadBalancerSourceRanges = []string{"2001:db8::/32", " ", "", "0.0.0.0/0", "010.001.0.0/16"}
			},
			want: func(p *model.ServicePort) {
				p.LoadBalancerSourceRanges = prefixes(t, "2001:db8::/32", "0.0.0.0/0", "10.1.0.0/16")
			},
		},
		{
			name:   "ClientIP affinity defaults to 10800s",
			mutate: func(s *v1.Service) { s.Spec.SessionAffinity = v1.ServiceAffinityClientIP },
			want: func(p *model.ServicePort) {
				p.Affinity = model.SessionAffinity{ClientIP: true, TimeoutSeconds: 10800}
			},
		},
		{
			name: "ClientIP affinity with a timeout",
			mutate: func(s *v1.Service) {
				s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
				s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr(int32(60))}}
			},
			want: func(p *model.ServicePort) { p.Affinity = model.SessionAffinity{ClientIP: true, TimeoutSeconds: 60} },
		},
		{
			name: "eTP=Local load balancer keeps its health-check node port",
			mutate: func(s *v1.Service) {
				s.Spec.Type = v1.ServiceTypeLoadBalancer
				s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
				s.Spec.HealthCheckNodePort = 32000
				s.Spec.Ports[0].NodePort = 30080
			},
			want: func(p *model.ServicePort) {
				p.ExternalPolicy = model.PolicyLocal
				p.HealthCheckNodePort = 32000
				p.NodePort = 30080
			},
		},
		{
			name: "health-check node port is ignored unless type LoadBalancer",
			mutate: func(s *v1.Service) {
				s.Spec.Type = v1.ServiceTypeNodePort
				s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
				s.Spec.HealthCheckNodePort = 32000
			},
			want: func(p *model.ServicePort) { p.ExternalPolicy = model.PolicyLocal },
		},
		{
			name:   "iTP=Local",
			mutate: func(s *v1.Service) { s.Spec.InternalTrafficPolicy = ptr(v1.ServiceInternalTrafficPolicyLocal) },
			want:   func(p *model.ServicePort) { p.InternalPolicy = model.PolicyLocal },
		},
		{
			name:   "iTP=Cluster explicitly",
			mutate: func(s *v1.Service) { s.Spec.InternalTrafficPolicy = ptr(v1.ServiceInternalTrafficPolicyCluster) },
			want:   func(*model.ServicePort) {},
		},
		{
			name:   "trafficDistribution",
			mutate: func(s *v1.Service) { s.Spec.TrafficDistribution = ptr(v1.ServiceTrafficDistributionPreferClose) },
			want:   func(p *model.ServicePort) { p.TrafficDistribution = model.TrafficDistributionPreferClose },
		},
		{
			name:   "trafficDistribution PreferSameZone",
			mutate: func(s *v1.Service) { s.Spec.TrafficDistribution = ptr(v1.ServiceTrafficDistributionPreferSameZone) },
			want:   func(p *model.ServicePort) { p.TrafficDistribution = model.TrafficDistributionPreferSameZone },
		},
		{
			name:   "trafficDistribution PreferSameNode",
			mutate: func(s *v1.Service) { s.Spec.TrafficDistribution = ptr(v1.ServiceTrafficDistributionPreferSameNode) },
			want:   func(p *model.ServicePort) { p.TrafficDistribution = model.TrafficDistributionPreferSameNode },
		},
		{
			// kube-proxy v1.37 never reads the annotations: the EndpointSlice controller turns them
			// into hints, and the hints are what model.Categorize follows.
			name:   "topology-mode Auto is not folded into trafficDistribution",
			mutate: func(s *v1.Service) { s.Annotations = map[string]string{v1.AnnotationTopologyMode: "Auto"} },
			want:   func(*model.ServicePort) {},
		},
		{
			name: "deprecated topology-aware-hints annotation is not read either",
			mutate: func(s *v1.Service) {
				s.Annotations = map[string]string{v1.DeprecatedAnnotationTopologyAwareHints: "auto"}
			},
			want: func(*model.ServicePort) {},
		},
		{
			name: "trafficDistribution is carried as set, whatever the annotation says",
			mutate: func(s *v1.Service) {
				s.Spec.TrafficDistribution = ptr(v1.ServiceTrafficDistributionPreferClose)
				s.Annotations = map[string]string{v1.AnnotationTopologyMode: "Disabled"}
			},
			want: func(p *model.ServicePort) { p.TrafficDistribution = model.TrafficDistributionPreferClose },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := svc("ns", "web", "10.96.0.10", tc.mutate)
			ports, rejects := convertService(s)
			if len(rejects) != 0 {
				t.Fatalf("unexpected rejections: %v", rejects)
			}
			want := basePort(t)
			tc.want(&want)
			got := ports[want.Name]
			if len(ports) != 1 || got == nil {
				t.Fatalf("got ports %v, want exactly %s", ports, want.Name)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("got  %+v\nwant %+v", *got, want)
			}
		})
	}
}

func TestConvertServiceMultiplePorts(t *testing.T) {
	s := svc("ns", "dns", "10.96.0.53", func(s *v1.Service) {
		s.Spec.Ports = []v1.ServicePort{
			{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53},
			{Name: "dns-tcp", Protocol: v1.ProtocolTCP, Port: 53},
			{Name: "sctp", Protocol: v1.ProtocolSCTP, Port: 9999},
		}
	})
	ports, rejects := convertService(s)
	if len(rejects) != 0 {
		t.Fatalf("unexpected rejections: %v", rejects)
	}
	want := map[model.ServicePortName]model.Protocol{
		spn("ns", "dns", "dns"): model.UDP, spn("ns", "dns", "dns-tcp"): model.TCP, spn("ns", "dns", "sctp"): model.SCTP,
	}
	if len(ports) != len(want) {
		t.Fatalf("got %d ports, want %d", len(ports), len(want))
	}
	for name, proto := range want {
		if p := ports[name]; p == nil || p.Protocol != proto || p.Name != name {
			t.Errorf("port %s: got %+v, want protocol %s", name, p, proto)
		}
	}
	// Each port is its own value, so a backend may keep one without aliasing another.
	if ports[spn("ns", "dns", "dns")] == ports[spn("ns", "dns", "dns-tcp")] {
		t.Error("two ports share one *ServicePort")
	}
}

func TestConvertServiceSkipped(t *testing.T) {
	cases := map[string]*v1.Service{
		"headless":                    svc("ns", "h", v1.ClusterIPNone, func(s *v1.Service) { s.Spec.ClusterIPs = []string{v1.ClusterIPNone} }),
		"headless by clusterIPs only": svc("ns", "h2", "", func(s *v1.Service) { s.Spec.ClusterIPs = []string{v1.ClusterIPNone} }),
		"no cluster IP":               svc("ns", "n", "", func(s *v1.Service) { s.Spec.ClusterIPs = nil }),
		"ExternalName": svc("ns", "e", "", func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeExternalName
			s.Spec.ExternalName = "example.com"
			s.Spec.ClusterIPs = nil
		}),
		"another proxy's": svc("ns", "o", "10.96.0.11", func(s *v1.Service) {
			s.Labels = map[string]string{LabelServiceProxyName: "other"}
		}),
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			ports, rejects := convertService(s)
			if len(ports) != 0 || len(rejects) != 0 {
				t.Errorf("got ports %v and rejections %v, want neither", ports, rejects)
			}
		})
	}
}

// TestConvertServiceRejects covers every kind of bad input: the refused ports, the ports kept, and
// the metric increment per refused port.
func TestConvertServiceRejects(t *testing.T) {
	twoPorts := func(s *v1.Service) {
		s.Spec.Ports = []v1.ServicePort{{Name: "a", Port: 80}, {Name: "b", Port: 81}}
	}
	cases := []struct {
		name    string
		mutate  []func(*v1.Service)
		reason  string
		refused []string // port names refused
		kept    []string // port names kept
	}{
		{"unparseable cluster IP", []func(*v1.Service){twoPorts, func(s *v1.Service) { s.Spec.ClusterIPs = []string{"10.96.0.300"} }},
			reasonInvalidIP, []string{"a", "b"}, nil},
		{"zoned cluster IP", []func(*v1.Service){func(s *v1.Service) { s.Spec.ClusterIPs = []string{"fe80::1%eth0"} }},
			reasonInvalidIP, []string{"http"}, nil},
		{"cluster IP of the wrong family", []func(*v1.Service){func(s *v1.Service) {
			s.Spec.IPFamilies = []v1.IPFamily{v1.IPv6Protocol}
		}}, reasonWrongFamily, []string{"http"}, nil},
		{"two cluster IPs of one family", []func(*v1.Service){func(s *v1.Service) {
			s.Spec.ClusterIPs = []string{"10.96.0.10", "10.96.0.11"}
		}}, reasonWrongFamily, []string{"http"}, nil},
		{"unparseable external IP", []func(*v1.Service){func(s *v1.Service) { s.Spec.ExternalIPs = []string{"not-an-ip"} }},
			reasonInvalidIP, []string{"http"}, nil},
		{"unparseable load-balancer ingress IP", []func(*v1.Service){func(s *v1.Service) {
			s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "203.0.113"}}
		}}, reasonInvalidIP, []string{"http"}, nil},
		{"affinity timeout of zero", []func(*v1.Service){func(s *v1.Service) {
			s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr(int32(0))}}
		}}, reasonAffinityTimeout, []string{"http"}, nil},
		{"affinity timeout over a day", []func(*v1.Service){func(s *v1.Service) {
			s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr(int32(86401))}}
		}}, reasonAffinityTimeout, []string{"http"}, nil},
		{"health-check node port out of range", []func(*v1.Service){func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeLoadBalancer
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
			s.Spec.HealthCheckNodePort = 70000
		}}, reasonPortRange, []string{"http"}, nil},
		{"unknown service type", []func(*v1.Service){func(s *v1.Service) { s.Spec.Type = "Magic" }},
			reasonServiceType, []string{"http"}, nil},
		{"port zero refuses only that port", []func(*v1.Service){twoPorts, func(s *v1.Service) { s.Spec.Ports[0].Port = 0 }},
			reasonPortRange, []string{"a"}, []string{"b"}},
		{"port over 65535", []func(*v1.Service){twoPorts, func(s *v1.Service) { s.Spec.Ports[1].Port = 65536 }},
			reasonPortRange, []string{"b"}, []string{"a"}},
		{"negative node port", []func(*v1.Service){twoPorts, func(s *v1.Service) { s.Spec.Ports[1].NodePort = -1 }},
			reasonPortRange, []string{"b"}, []string{"a"}},
		{"unknown protocol", []func(*v1.Service){twoPorts, func(s *v1.Service) { s.Spec.Ports[0].Protocol = "ICMP" }},
			reasonProtocol, []string{"a"}, []string{"b"}},
		{"duplicate port name keeps the first", []func(*v1.Service){twoPorts, func(s *v1.Service) { s.Spec.Ports[1].Name = "a" }},
			reasonDuplicatePort, []string{"a"}, []string{"a"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := svc("ns", "web", "10.96.0.10", tc.mutate...)
			before := invalidCount(t, kindService, tc.reason)
			ports, rejects := convertService(s)
			report(rejects)

			if len(rejects) != len(tc.refused) {
				t.Fatalf("got rejections %v, want %d for ports %v", rejects, len(tc.refused), tc.refused)
			}
			for i, r := range rejects {
				if r.Reason != tc.reason || r.Part != tc.refused[i] || r.Object != "ns/web" || r.Kind != kindService {
					t.Errorf("rejection %d = %+v, want reason %s for port %s of ns/web", i, r, tc.reason, tc.refused[i])
				}
			}
			if len(ports) != len(tc.kept) {
				t.Errorf("got ports %v, want %v", ports, tc.kept)
			}
			for _, k := range tc.kept {
				if ports[spn("ns", "web", k)] == nil {
					t.Errorf("port %s was dropped", k)
				}
			}
			if got := invalidCount(t, kindService, tc.reason) - before; got != float64(len(tc.refused)) {
				t.Errorf("%s{kind=service,reason=%s} rose by %v, want %d", "switchyard_invalid_objects_total", tc.reason, got, len(tc.refused))
			}
		})
	}
}

// TestConvertServiceBadSourceRanges: as in kube-proxy v1.37, a source range that does not parse is
// left out and the service port is kept with the others; Switchyard also logs and counts each one.
// Left with none, the load balancer is unfiltered, as in kube-proxy (the API server refuses such
// values, so only objects stored before its validation can hold them).
func TestConvertServiceBadSourceRanges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ranges []string
		bad    []string
		want   []string
	}{
		{"one bad beside a good one", []string{"198.51.100.0/24", " 198.51.100.0/33"}, []string{"198.51.100.0/33"}, []string{"198.51.100.0/24"}},
		{"all bad", []string{"198.51.100.0", "not-a-cidr", "fe80::/64%eth0"}, []string{"198.51.100.0", "not-a-cidr", "fe80::/64%eth0"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := svc("ns", "web", "10.96.0.10", func(s *v1.Service) {
				s.Spec.Type = v1.ServiceTypeLoadBalancer
				s.Spec.Ports = []v1.ServicePort{{Name: "a", Port: 80}, {Name: "b", Port: 81}}
				s.Spec.LoadBalancerSourceRanges = tc.ranges
			})
			before := invalidCount(t, kindService, reasonSourceRange)
			ports, rejects := convertService(s)
			report(rejects)

			var bad []string
			for _, r := range rejects {
				if r.Reason != reasonSourceRange || r.Part != "loadBalancerSourceRanges" || r.Object != "ns/web" || r.Kind != kindService {
					t.Errorf("rejection %+v, want a source-range one for ns/web", r)
				}
				bad = append(bad, r.Detail)
			}
			if !reflect.DeepEqual(bad, tc.bad) {
				t.Errorf("rejected ranges %q, want %q", bad, tc.bad)
			}
			if got := invalidCount(t, kindService, reasonSourceRange) - before; got != float64(len(tc.bad)) {
				t.Errorf("switchyard_invalid_objects_total{kind=service,reason=%s} rose by %v, want %d", reasonSourceRange, got, len(tc.bad))
			}
			for _, port := range []string{"a", "b"} {
				p := ports[spn("ns", "web", port)]
				if p == nil {
					t.Fatalf("port %s was dropped: %v", port, ports)
				}
				var got []string
				for _, r := range p.LoadBalancerSourceRanges {
					got = append(got, r.String())
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("port %s source ranges %v, want %v", port, got, tc.want)
				}
			}
		})
	}
}

func TestParseHelpers(t *testing.T) {
	good := map[string]string{
		"10.96.0.1": "10.96.0.1", "010.096.000.001": "10.96.0.1", "::ffff:10.0.0.1": "10.0.0.1", "fd00::1": "fd00::1",
	}
	for in, want := range good {
		got, err := parseIP(in)
		if err != nil || got.String() != want {
			t.Errorf("parseIP(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1.2.3.0400", "fe80::1%eth0", "1.2.3.-1", " 1.2.3.4"} {
		if got, err := parseIP(in); err == nil {
			t.Errorf("parseIP(%q) = %v, want an error", in, got)
		}
	}
	if p, err := parsePrefix("10.1.2.3/8"); err != nil || p.String() != "10.0.0.0/8" {
		t.Errorf("parsePrefix masks host bits: got %v, %v", p, err)
	}
	for _, in := range []string{"10.0.0.0", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/+8", "/8", "fd00::/129"} {
		if p, err := parsePrefix(in); err == nil {
			t.Errorf("parsePrefix(%q) = %v, want an error", in, p)
		}
	}
}
