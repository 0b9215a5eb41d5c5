package main

import (
	"context"
	"net/netip"
	"reflect"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestIPVSNodeCIDRDetector: in IPVS mode, --detect-local-mode=NodeCIDR detects pod traffic by the
// node's IPv4 pod CIDR, read from its Node at start-up, not by --cluster-cidr; with no pod CIDR
// there is no detector, as in kube-proxy. iptables mode reads the CIDR from its snapshots and makes
// no API call here.
func TestIPVSNodeCIDRDetector(t *testing.T) {
	withCIDRs := func(cidrs ...string) *v1.Node {
		n := nodeWith(internal("192.168.50.11"))
		n.Spec.PodCIDRs = cidrs
		return n
	}
	for _, tc := range []struct {
		name  string
		args  []string
		node  *v1.Node
		want  []netip.Prefix
		calls bool
	}{
		{"NodeCIDR: the node's IPv4 pod CIDR", []string{"--proxy-mode=ipvs", "--detect-local-mode=NodeCIDR", "--cluster-cidr=10.244.0.0/16"},
			withCIDRs("fd00:10:244:3::/64", "10.244.3.0/24"), []netip.Prefix{netip.MustParsePrefix("10.244.3.0/24")}, true},
		{"NodeCIDR without a pod CIDR: no detector", []string{"--proxy-mode=ipvs", "--detect-local-mode=NodeCIDR", "--cluster-cidr=10.244.0.0/16"},
			withCIDRs(), nil, true},
		{"ClusterCIDR: --cluster-cidr, no API call", []string{"--proxy-mode=ipvs", "--cluster-cidr=10.244.0.0/16"},
			withCIDRs("10.244.3.0/24"), []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}, false},
		{"iptables mode: no API call", []string{"--proxy-mode=iptables", "--detect-local-mode=NodeCIDR"},
			withCIDRs("10.244.3.0/24"), nil, false},
	} {
		opts, _, err := parseFlags(append(tc.args, "--hostname-override=node-a"))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		client := fake.NewClientset(tc.node)
		resolveIPVSNodeCIDR(context.Background(), opts, client, "node-a", time.Millisecond, 5*time.Millisecond)
		if called := len(client.Actions()) > 0; called != tc.calls {
			t.Errorf("%s: read the Node %v, want %v", tc.name, called, tc.calls)
		}
		if opts.ProxyMode != "ipvs" {
			continue
		}
		if got := ipvsOptions(opts).ClusterCIDRs; !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: ipvs local-traffic CIDRs %v, want %v", tc.name, got, tc.want)
		}
	}
}
