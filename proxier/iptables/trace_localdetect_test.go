package iptables_test

import (
	"net/netip"
	"testing"

	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/iptables/tracer"
)

// The interface-based local-traffic detectors (--detect-local-mode BridgeInterface and
// InterfaceNamePrefix): what counts is the interface a packet enters the node from, not its source
// address, so a pod of another node is masqueraded like any other non-local client.

// routedNode is traceNode without a bridge: each of this node's pods hangs off its own host-side
// interface, as with a routed CNI, whose host side carries only a link-local address.
var routedNode = tracer.Node{
	Interfaces: []tracer.Interface{
		{Name: "eth0", Addrs: []netip.Prefix{pfx("192.168.50.10/24")}},
		{Name: "flannel.1", Addrs: []netip.Prefix{pfx("10.244.1.0/32")}},
		{Name: "veth-web", Addrs: []netip.Prefix{pfx("169.254.1.1/32")}},
		{Name: "veth-pod", Addrs: []netip.Prefix{pfx("169.254.1.1/32")}},
	},
	Routes: []tracer.Route{
		{Dst: pfx("10.244.1.5/32"), Iface: "veth-web"},
		{Dst: pfx("10.244.1.20/32"), Iface: "veth-pod"},
		{Dst: pfx("10.244.0.0/16"), Iface: "flannel.1"},
		{Dst: pfx("0.0.0.0/0"), Iface: "eth0"},
	},
}

func TestTraceBridgeInterfaceDetector(t *testing.T) {
	opts := traceOptions()
	opts.LocalDetector = iptables.LocalDetector{BridgeInterface: "cni0"}
	tr := tracer.New(kernelState(t, traceSnapshot(), opts), traceNode, nil)
	checkInterfaceDetector(t, tr, fromPod, "cni0")
}

func TestTraceInterfaceNamePrefixDetector(t *testing.T) {
	opts := traceOptions()
	opts.LocalDetector = iptables.LocalDetector{InterfaceNamePrefix: "veth"}
	tr := tracer.New(kernelState(t, traceSnapshot(), opts), routedNode, nil)
	checkInterfaceDetector(t, tr, from("10.244.1.20", "veth-pod"), "veth-pod")
	// The prefix is a prefix: an interface that merely contains it is not a pod's.
	check(t, tr, from("10.244.1.20", "myveth0")("10.96.0.10", 80), want{verdict: tracer.Accept, dsts: webEndpoints, masq: yes})
}

// checkInterfaceDetector holds the rules of an interface detector to kube-proxy's behaviour, with
// fromLocalPod a pod of this node arriving on podIface.
func checkInterfaceDetector(t *testing.T, tr *tracer.Tracer, fromLocalPod func(string, uint16) pkt, podIface string) {
	t.Helper()
	accept := tracer.Accept
	for _, c := range []behaviourCase{
		{"pod of this node to ClusterIP keeps its source",
			fromLocalPod("10.96.0.10", 80), want{verdict: accept, dsts: webEndpoints, masq: no, srcKept: true}},
		{"pod of another node to ClusterIP is masqueraded: it did not enter from " + podIface,
			fromRemotePod("10.96.0.10", 80), want{verdict: accept, dsts: webEndpoints, masq: yes}},
		{"a pod-CIDR source entering from the uplink is masqueraded",
			from("10.244.1.20", "eth0")("10.96.0.10", 80), want{verdict: accept, dsts: webEndpoints, masq: yes}},
		{"off-cluster source to ClusterIP is masqueraded",
			fromNodeLAN("10.96.0.10", 80), want{verdict: accept, dsts: webEndpoints, masq: yes}},
		{"node itself to ClusterIP is masqueraded",
			fromHost("10.96.0.10", 80), want{verdict: accept, dsts: webEndpoints, masq: yes}},
		{"eTP=Local: a pod of this node takes the cluster path",
			fromLocalPod("192.168.50.10", 30020), want{verdict: accept, dsts: []string{"10.244.1.7:8080", "10.244.2.9:8080"}, masq: no}},
		{"eTP=Local NodePort keeps the external client's IP and uses only local endpoints",
			fromInternet("192.168.50.10", 30020), want{verdict: accept, dsts: []string{"10.244.1.7:8080"}, masq: no, srcKept: true}},
		{"eTP=Local without local endpoints: a pod of this node still reaches the remote endpoint",
			fromLocalPod("192.168.50.10", 30030), want{verdict: accept, dsts: []string{"10.244.2.10:8080"}}},
		{"eTP=Local without local endpoints drops external traffic",
			fromInternet("192.168.50.10", 30030), want{verdict: tracer.Drop}},
	} {
		t.Run(c.name, func(t *testing.T) { check(t, tr, c.p, c.w) })
	}
}
