package iptables

import (
	"fmt"
	"net/netip"

	"github.com/switchyard/switchyard/proxier/model"
)

// Fixture addresses: pods 10.244.0.0/16 (this node's pod CIDR 10.244.1.0/24), ClusterIPs
// 10.96.0.0/16, nodes 192.168.50.0/24 (this node is 192.168.50.1).
const testNode = "node-a"

var (
	mustAddr   = netip.MustParseAddr
	mustPrefix = netip.MustParsePrefix
)

func testOptions() Options {
	o := DefaultOptions(model.IPv4)
	o.LocalDetector.ClusterCIDRs = []netip.Prefix{mustPrefix("10.244.0.0/16"), mustPrefix("fd00:10:244::/48")}
	o.NodeIPs = []netip.Addr{mustAddr("192.168.50.1")}
	o.RandomFully = true
	return o
}

func testNodeInfo() model.NodeInfo {
	return model.NodeInfo{Name: testNode, PodCIDRs: []netip.Prefix{mustPrefix("10.244.1.0/24")}}
}

func spn(ns, name, port string) model.ServicePortName {
	return model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: ns, Name: name}, Port: port}
}

// ep is a ready endpoint.
func ep(ip string, port int32, node string) model.Endpoint {
	return model.Endpoint{IP: mustAddr(ip), Port: port, Ready: true, Serving: true, NodeName: node}
}

// terminating is a serving, terminating endpoint.
func terminating(ip string, port int32, node string) model.Endpoint {
	return model.Endpoint{IP: mustAddr(ip), Port: port, Serving: true, Terminating: true, NodeName: node}
}

func addService(s *model.Snapshot, svc *model.ServicePort, eps ...model.Endpoint) {
	if svc.ExternalPolicy == "" {
		svc.ExternalPolicy = model.PolicyCluster
	}
	if svc.InternalPolicy == "" {
		svc.InternalPolicy = model.PolicyCluster
	}
	if svc.Protocol == "" {
		svc.Protocol = model.TCP
	}
	s.Services[svc.Name] = svc
	if len(eps) > 0 {
		s.Endpoints[svc.Name] = eps
	}
	s.Changed[svc.Name.ServiceKey] = struct{}{}
}

// fixtureSnapshot covers every behaviour the renderer implements, one service each.
func fixtureSnapshot() *model.Snapshot {
	s := model.NewSnapshot()
	s.Node = testNodeInfo()
	s.Full = true
	addrs := func(a ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range a {
			out = append(out, mustAddr(x))
		}
		return out
	}
	// Plain ClusterIP, endpoints here and elsewhere (hairpin for the local one).
	addService(s, &model.ServicePort{Name: spn("default", "web", "http"), Port: 80, ClusterIPs: addrs("10.96.0.10", "fd00:10:96::10")},
		ep("10.244.1.5", 8080, testNode), ep("10.244.2.7", 8080, "node-b"), ep("10.244.3.9", 8080, "node-c"), ep("fd00:10:244:1::5", 8080, testNode))
	// UDP DNS with two ports of one service.
	addService(s, &model.ServicePort{Name: spn("kube-system", "dns", "dns"), Protocol: model.UDP, Port: 53, ClusterIPs: addrs("10.96.0.53")},
		ep("10.244.2.2", 53, "node-b"), ep("10.244.3.3", 53, "node-c"))
	addService(s, &model.ServicePort{Name: spn("kube-system", "dns", "dns-tcp"), Port: 53, ClusterIPs: addrs("10.96.0.53")},
		ep("10.244.2.2", 53, "node-b"), ep("10.244.3.3", 53, "node-c"))
	// No endpoints: REJECT everywhere.
	addService(s, &model.ServicePort{Name: spn("default", "empty", ""), Port: 80, ClusterIPs: addrs("10.96.0.20", "fd00:10:96::20"),
		NodePort: 30020, ExternalIPs: addrs("192.168.50.200")})
	// NodePort + externalIP, eTP=Cluster.
	addService(s, &model.ServicePort{Name: spn("default", "nodeport", ""), Port: 80, ClusterIPs: addrs("10.96.0.30", "fd00:10:96::30"),
		NodePort: 30030, ExternalIPs: addrs("192.168.50.201", "fd00:192:168:50::201")},
		ep("10.244.1.6", 80, testNode), ep("10.244.2.6", 80, "node-b"), ep("fd00:10:244:1::6", 80, testNode), ep("fd00:10:244:2::6", 80, "node-b"))
	// LoadBalancer, eTP=Local with a local endpoint, source ranges, health check port.
	addService(s, &model.ServicePort{Name: spn("default", "lb-local", "https"), Port: 443, ClusterIPs: addrs("10.96.0.40", "fd00:10:96::40"),
		NodePort: 30040, LoadBalancerIPs: addrs("192.168.50.240", "fd00:192:168:50::240"), HealthCheckNodePort: 32040, ExternalPolicy: model.PolicyLocal,
		LoadBalancerSourceRanges: []netip.Prefix{mustPrefix("203.0.113.0/24"), mustPrefix("192.168.50.0/24"), mustPrefix("fd00:192:168:50::/64")}},
		ep("10.244.1.7", 8443, testNode), ep("10.244.2.8", 8443, "node-b"), ep("fd00:10:244:1::7", 8443, testNode))
	// eTP=Local with no local endpoint: DROP for external traffic, cluster path for pods and the node.
	addService(s, &model.ServicePort{Name: spn("default", "lb-remote", ""), Port: 80, ClusterIPs: addrs("10.96.0.41"),
		NodePort: 30041, LoadBalancerIPs: addrs("192.168.50.241"), HealthCheckNodePort: 32041, ExternalPolicy: model.PolicyLocal},
		ep("10.244.2.9", 80, "node-b"))
	// iTP=Local with and without a local endpoint.
	addService(s, &model.ServicePort{Name: spn("default", "itp-local", ""), Port: 80, ClusterIPs: addrs("10.96.0.50"), InternalPolicy: model.PolicyLocal},
		ep("10.244.1.10", 80, testNode), ep("10.244.2.10", 80, "node-b"))
	addService(s, &model.ServicePort{Name: spn("default", "itp-remote", ""), Port: 80, ClusterIPs: addrs("10.96.0.51"), InternalPolicy: model.PolicyLocal},
		ep("10.244.2.11", 80, "node-b"))
	// ClientIP affinity.
	addService(s, &model.ServicePort{Name: spn("default", "sticky", ""), Port: 80, ClusterIPs: addrs("10.96.0.60", "fd00:10:96::60"),
		Affinity: model.SessionAffinity{ClientIP: true, TimeoutSeconds: 10800}},
		ep("10.244.2.12", 80, "node-b"), ep("10.244.3.12", 80, "node-c"), ep("fd00:10:244:2::12", 80, "node-b"))
	// Only terminating endpoints: the fallback uses them.
	addService(s, &model.ServicePort{Name: spn("default", "draining", ""), Port: 80, ClusterIPs: addrs("10.96.0.70")},
		terminating("10.244.2.13", 80, "node-b"), model.Endpoint{IP: mustAddr("10.244.3.13"), Port: 80, Terminating: true, NodeName: "node-c"})
	// A hostile port name reaches comments only after sanitising.
	addService(s, &model.ServicePort{Name: spn("default", "odd", "a\"b\n-j ACCEPT"), Port: 81, ClusterIPs: addrs("10.96.0.80")},
		ep("10.244.2.14", 81, "node-b"))
	// SCTP.
	addService(s, &model.ServicePort{Name: spn("default", "sctp", ""), Protocol: model.SCTP, Port: 9999, ClusterIPs: addrs("10.96.0.90")},
		ep("10.244.2.15", 9999, "node-b"))
	return s
}

// scaleSnapshot builds n ClusterIP services with eps endpoints each, none on this node: the shape
// kube-proxy's published figures use.
func scaleSnapshot(n, eps int) *model.Snapshot {
	s := model.NewSnapshot()
	s.Node = testNodeInfo()
	s.Full = true
	for i := 0; i < n; i++ {
		name := spn(fmt.Sprintf("ns%d", i%100), fmt.Sprintf("svc%d", i), "http")
		svc := &model.ServicePort{Name: name, Protocol: model.TCP, Port: 80,
			ClusterIPs:     []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})},
			ExternalPolicy: model.PolicyCluster, InternalPolicy: model.PolicyCluster}
		var list []model.Endpoint
		for j := 0; j < eps; j++ {
			k := i*eps + j
			list = append(list, ep(netip.AddrFrom4([4]byte{10, 244, byte(2 + k>>16), byte(k >> 8)}).Next().String(), 8080, "node-b"))
			list[j].IP = netip.AddrFrom4([4]byte{10, byte(245 + k>>16), byte(k >> 8), byte(k)})
		}
		s.Services[name] = svc
		s.Endpoints[name] = list
	}
	return s
}
