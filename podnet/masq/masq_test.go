package masq

import (
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
)

func cidr(s string) *net.IPNet {
	_, n, _ := net.ParseCIDR(s)
	return n
}

func TestSyncEndStateAndIdempotence(t *testing.T) {
	ipt := iptablestest.NewFake()
	// Another tool's rule in POSTROUTING must stay. In FORWARD, the service proxy's jump (which
	// REJECTs or DROPs traffic to services without endpoints) was inserted first and must stay ahead
	// of the pod network's blanket ACCEPT of pod traffic, whichever of the two starts first.
	if err := ipt.Restore([]byte("*nat\n:KUBE-POSTROUTING-ISH - [0:0]\n-A POSTROUTING -j KUBE-POSTROUTING-ISH\nCOMMIT\n" +
		"*filter\n:SY-SERVICES-ISH - [0:0]\n-A FORWARD -j SY-SERVICES-ISH\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := Sync(ipt, cidr("10.244.0.0/16"), true); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string][]string{
		"nat/POSTROUTING": {"-j KUBE-POSTROUTING-ISH", `-m comment --comment "switchyard pod network" -j SY-POD-MASQ`},
		"nat/SY-POD-MASQ": {
			`-s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "pod to pod keeps its source" -j RETURN`,
			`-s 10.244.0.0/16 -d 224.0.0.0/4 -m comment --comment "multicast is not routed out" -j RETURN`,
			`-s 10.244.0.0/16 -m comment --comment "pod egress leaving the cluster" -j MASQUERADE --random-fully`,
		},
		"filter/FORWARD": {"-j SY-SERVICES-ISH", `-m comment --comment "switchyard pod network" -j SY-POD-FORWARD`},
		"filter/SY-POD-FORWARD": {
			`-s 10.244.0.0/16 -m comment --comment "from pods" -j ACCEPT`,
			`-d 10.244.0.0/16 -m comment --comment "to pods" -j ACCEPT`,
		},
	}
	for key, rules := range want {
		table, chain, _ := strings.Cut(key, "/")
		if got := ipt.Rules(table, chain); !reflect.DeepEqual(got, rules) {
			t.Errorf("%s:\n got %q\nwant %q", key, got, rules)
		}
	}

	// Turning masquerade off empties our chain and nothing else.
	if err := Sync(ipt, cidr("10.244.0.0/16"), false); err != nil {
		t.Fatal(err)
	}
	if got := ipt.Rules("nat", "SY-POD-MASQ"); len(got) != 0 {
		t.Fatalf("masquerade chain with --ip-masq=false: %q", got)
	}
	if got := ipt.Rules("nat", "POSTROUTING"); len(got) != 2 {
		t.Fatalf("POSTROUTING changed: %q", got)
	}
}

func TestRenderRejectsBadCIDR(t *testing.T) {
	if _, err := Render(nil, true); err == nil {
		t.Fatal("nil cluster CIDR accepted")
	}
	if _, err := Render(cidr("fd00::/48"), true); err == nil {
		t.Fatal("IPv6 cluster CIDR accepted by the IPv4 renderer")
	}
	// A host address given as the CIDR is normalised to its network.
	data, _ := Render(&net.IPNet{IP: net.ParseIP("10.244.3.7"), Mask: net.CIDRMask(16, 32)}, true)
	if !strings.Contains(string(data), "-s 10.244.0.0/16 -d 10.244.0.0/16") {
		t.Fatalf("rendered:\n%s", data)
	}
}
