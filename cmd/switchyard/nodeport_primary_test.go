package main

import (
	"context"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func nodeWith(addrs ...v1.NodeAddress) *v1.Node {
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Status: v1.NodeStatus{Addresses: addrs}}
}

func internal(ip string) v1.NodeAddress { return v1.NodeAddress{Type: v1.NodeInternalIP, Address: ip} }
func external(ip string) v1.NodeAddress { return v1.NodeAddress{Type: v1.NodeExternalIP, Address: ip} }

// TestPrimaryIPv4 follows kube-proxy v1.37's detectNodeIPs and GetNodeHostIPs for the IPv4 family.
func TestPrimaryIPv4(t *testing.T) {
	for _, tc := range []struct {
		name string
		bind string
		node *v1.Node
		want string // "" for none
	}{
		{"the InternalIP", "0.0.0.0", nodeWith(internal("192.168.50.11")), "192.168.50.11"},
		{"InternalIPs before ExternalIPs, whatever their order", "0.0.0.0", nodeWith(external("203.0.113.7"), internal("192.168.50.11")), "192.168.50.11"},
		{"the first IPv4 InternalIP", "0.0.0.0", nodeWith(internal("192.168.50.11"), internal("192.168.50.12")), "192.168.50.11"},
		{"IPv6-primary node: its IPv4 address", "::", nodeWith(internal("fd00::11"), internal("192.168.50.11")), "192.168.50.11"},
		{"an ExternalIP when no InternalIP", "0.0.0.0", nodeWith(v1.NodeAddress{Type: v1.NodeHostName, Address: "node-a"}, external("203.0.113.7")), "203.0.113.7"},
		{"an IPv4 bind address wins", "192.168.50.99", nodeWith(internal("192.168.50.11")), "192.168.50.99"},
		{"an IPv6 bind address is another family's", "fd00::99", nodeWith(internal("192.168.50.11")), "192.168.50.11"},
		{"a loopback bind address is none", "127.0.0.1", nodeWith(internal("192.168.50.11")), ""},
		{"IPv6 only: none", "0.0.0.0", nodeWith(internal("fd00::11")), ""},
		{"no node: none", "0.0.0.0", nil, ""},
		{"no node but a bind address", "192.168.50.99", nil, "192.168.50.99"},
	} {
		got := primaryIPv4(tc.bind, tc.node)
		if want, _ := netip.ParseAddr(tc.want); got != want {
			t.Errorf("%s: %v, want %v", tc.name, got, want)
		}
	}
}

// TestNodePortPrimaryResolves: "primary" becomes the node's InternalIP as a /32 for both backends,
// next to any CIDRs; with no IPv4 address it stands for nothing, so an IPv4 proxy with no other
// IPv4 CIDR accepts NodePorts on every address, as kube-proxy.
func TestNodePortPrimaryResolves(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		args []string
		node *v1.Node
		want []netip.Prefix
	}{
		{[]string{"--nodeport-addresses=primary"}, nodeWith(internal("192.168.50.11")), []netip.Prefix{netip.MustParsePrefix("192.168.50.11/32")}},
		{[]string{"--nodeport-addresses=10.0.0.0/8,primary"}, nodeWith(internal("192.168.50.11")),
			[]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.50.11/32")}},
		{[]string{"--nodeport-addresses=primary", "--bind-address=192.168.50.99"}, nil, []netip.Prefix{netip.MustParsePrefix("192.168.50.99/32")}},
		{[]string{"--nodeport-addresses=primary"}, nodeWith(internal("fd00::11")), nil},
		{[]string{"--nodeport-addresses=primary"}, nil, nil},
	} {
		opts, _, err := parseFlags(append(tc.args, "--hostname-override=node-a"))
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		client := fake.NewClientset()
		if tc.node != nil {
			client = fake.NewClientset(tc.node)
		}
		resolveNodePortPrimary(ctx, opts, client, "node-a", time.Millisecond, 5*time.Millisecond)
		if got := iptablesOptions(opts).NodePortAddresses; !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v, node %v: iptables NodePortAddresses %v, want %v", tc.args, tc.node, got, tc.want)
		}
		if got := ipvsOptions(opts).NodePortAddresses; !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v, node %v: ipvs NodePortAddresses %v, want %v", tc.args, tc.node, got, tc.want)
		}
		if strings.Contains(strings.Join(opts.IgnoredSettings(), "\n"), "--bind-address=") {
			t.Errorf("%v: --bind-address listed as ignored, but primary uses it", tc.args)
		}
	}
}

// TestNodePortPrimaryWaitsForTheNode: as kube-proxy, the daemon waits for its Node to appear with
// an address before it builds the backend.
func TestNodePortPrimaryWaitsForTheNode(t *testing.T) {
	opts, _, err := parseFlags([]string{"--nodeport-addresses=primary", "--hostname-override=node-a"})
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	go func() {
		time.Sleep(20 * time.Millisecond)
		_, _ = client.CoreV1().Nodes().Create(context.Background(), nodeWith(internal("192.168.50.11")), metav1.CreateOptions{})
	}()
	resolveNodePortPrimary(context.Background(), opts, client, "node-a", time.Millisecond, 10*time.Second)
	if opts.primaryNodeIP != netip.MustParseAddr("192.168.50.11") {
		t.Fatalf("primary %v", opts.primaryNodeIP)
	}
}

// TestNodePortWithoutPrimaryReadsNoNode: no keyword, no API call.
func TestNodePortWithoutPrimaryReadsNoNode(t *testing.T) {
	opts, _, err := parseFlags([]string{"--nodeport-addresses=10.0.0.0/8", "--hostname-override=node-a"})
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(nodeWith(internal("192.168.50.11")))
	resolveNodePortPrimary(context.Background(), opts, client, "node-a", time.Millisecond, time.Second)
	if n := len(client.Actions()); n != 0 || opts.primaryNodeIP.IsValid() {
		t.Fatalf("%d API calls, primary %v", n, opts.primaryNodeIP)
	}
}
