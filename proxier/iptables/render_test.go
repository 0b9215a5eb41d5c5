package iptables

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"

	"github.com/switchyard/switchyard/internal/golden"
	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
)

func v6Options() Options {
	o := testOptions()
	o.Family = model.IPv6
	o.NodeIPs = []netip.Addr{mustAddr("fd00:192:168:50::1")}
	return o
}

func TestRenderGolden(t *testing.T) {
	optsAll := testOptions()
	optsAll.MasqueradeAll = true
	optsAll.RandomFully = false
	optsAll.MasqueradeBit = 5
	optsAll.NodePortAddresses = []netip.Prefix{mustPrefix("192.168.50.0/24"), mustPrefix("fd00::/8")}
	optsNodeCIDR := testOptions()
	optsNodeCIDR.LocalDetector = LocalDetector{UseNodeCIDR: true}
	optsNone := testOptions()
	optsNone.LocalDetector = LocalDetector{}
	optsBridge := testOptions()
	optsBridge.LocalDetector = LocalDetector{BridgeInterface: "cni0"}
	optsPrefix := testOptions()
	optsPrefix.LocalDetector = LocalDetector{InterfaceNamePrefix: "veth"}
	// The nfacct counters exist: the INVALID drop and localhost node ports count packets.
	optsNFAcct := testOptions()
	optsNFAcct.NFAcctCounters = []string{metrics.NFAcctInvalidDropped, metrics.NFAcctLocalhostNodePorts}
	// be_liberal on, localhost node ports off: no INVALID drop, no loopback node ports, no guard.
	optsLiberal := testOptions()
	optsLiberal.ConntrackTCPLiberal = true
	optsLiberal.LocalhostNodePorts = false
	optsLiberal.NFAcctCounters = optsNFAcct.NFAcctCounters

	for _, tc := range []struct {
		golden string
		opts   Options
	}{
		{"fixture-ipv4.golden", testOptions()},
		{"fixture-ipv6.golden", v6Options()},
		{"fixture-masquerade-all.golden", optsAll},
		{"fixture-nodecidr.golden", optsNodeCIDR},
		{"fixture-no-detector.golden", optsNone},
		{"fixture-bridge-interface.golden", optsBridge},
		{"fixture-interface-prefix.golden", optsPrefix},
		{"fixture-nfacct.golden", optsNFAcct},
		{"fixture-liberal-no-localhost.golden", optsLiberal},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			r, err := RenderFull(fixtureSnapshot(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, tc.golden, r.Restore)
			// Whatever is rendered must be acceptable to iptables-restore.
			if err := iptablestest.NewFake().Restore(r.Restore); err != nil {
				t.Fatalf("fake rejects rendered rules: %v", err)
			}
		})
	}
}

func TestOptionsValidation(t *testing.T) {
	bad := []Options{
		{Family: 5, MasqueradeBit: 14},
		{Family: model.IPv4, MasqueradeBit: 32},
		{Family: model.IPv4, MasqueradeBit: 14, LocalDetector: LocalDetector{ClusterCIDRs: []netip.Prefix{mustPrefix("10.0.0.0/8"), mustPrefix("10.244.0.0/16")}}},
		{Family: model.IPv4, MasqueradeBit: 14, NodePortAddresses: []netip.Prefix{{}}},
		{Family: model.IPv4, MasqueradeBit: 14, LocalDetector: LocalDetector{UseNodeCIDR: true, BridgeInterface: "cni0"}},
		{Family: model.IPv4, MasqueradeBit: 14, LocalDetector: LocalDetector{BridgeInterface: "cni0", InterfaceNamePrefix: "veth"}},
		{Family: model.IPv4, MasqueradeBit: 14, LocalDetector: LocalDetector{BridgeInterface: "a-bridge-too-long"}},
		{Family: model.IPv4, MasqueradeBit: 14, LocalDetector: LocalDetector{InterfaceNamePrefix: "fifteen-chars-x"}},
		{Family: model.IPv4, MasqueradeBit: 14, LocalDetector: LocalDetector{InterfaceNamePrefix: "veth -j ACCEPT"}},
	}
	for i, o := range bad {
		if _, err := NewRenderer(o); err == nil {
			t.Errorf("options %d (%+v): want an error", i, o)
		}
	}
	// One cluster CIDR per family is fine, whatever the other family holds.
	if _, err := NewRenderer(testOptions()); err != nil {
		t.Errorf("test options: %v", err)
	}
}

// TestRulesPerService pins the layout's cost: a ClusterIP service with 5 remote endpoints takes 7
// nat rules (dispatch, masquerade, 5 DNAT) and one chain, against kube-proxy's 17 rules and 6 chains.
func TestRulesPerService(t *testing.T) {
	empty, err := RenderFull(scaleSnapshot(0, 5), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	r, err := RenderFull(scaleSnapshot(100, 5), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got := (r.RulesTotal[TableNAT] - empty.RulesTotal[TableNAT]) / 100; got != 7 {
		t.Errorf("nat rules per ClusterIP service with 5 endpoints = %d, want 7", got)
	}
	perService, shards := 0, 0
	for c := range r.ServiceChains {
		if strings.HasPrefix(c, kindShard) {
			shards++
		} else {
			perService++
		}
	}
	// The 100 ClusterIPs share one /24, so one dispatch shard.
	if perService != 100 || shards != 1 {
		t.Errorf("chains for 100 services = %d per-service + %d shards, want 100 + 1", perService, shards)
	}
	if r.RulesTotal[TableFilter] != empty.RulesTotal[TableFilter] {
		t.Errorf("services with endpoints added filter rules: %d -> %d", empty.RulesTotal[TableFilter], r.RulesTotal[TableFilter])
	}
}

func TestSanitizeComment(t *testing.T) {
	for in, want := range map[string]string{
		"default/web:http":       "default/web:http",
		"ns/a\"b\n-j ACCEPT":     "ns/a_b_-j ACCEPT",
		"x`$(rm -rf /)`;\\":      "x___rm -rf /____",
		strings.Repeat("a", 300): strings.Repeat("a", maxCommentLen),
		"ünïcode":                "_n_code",
	} {
		if got := sanitizeComment(in); got != want {
			t.Errorf("sanitizeComment(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestChainNames(t *testing.T) {
	a := chainsFor(spn("ns", "svc", "p"), model.TCP)
	b := chainsFor(spn("ns", "svc", "p"), model.UDP)
	c := chainsFor(spn("ns", "svc", "p"), model.TCP)
	if a == b {
		t.Errorf("TCP and UDP ports share chain names %v", a)
	}
	if a != c {
		t.Errorf("chain names are not stable: %v vs %v", a, c)
	}
	for _, n := range []string{a.Cluster, a.Local, a.External} {
		if len(n) > 28 {
			t.Errorf("chain %s is longer than iptables' 28 characters", n)
		}
		if !strings.HasPrefix(n, "SY-") || strings.HasPrefix(n, "KUBE-") {
			t.Errorf("chain %s lacks Switchyard's prefix", n)
		}
		if !isServiceChain(n) || !isOwnedChain(n) {
			t.Errorf("chain %s not recognised as a per-service chain", n)
		}
	}
	if isServiceChain(chainServices) {
		t.Errorf("%s must not count as a per-service chain", chainServices)
	}
}

func TestProbabilityMatchesIptablesSave(t *testing.T) {
	// Values iptables-save prints back for 1/n (measured with iptables 1.8.9).
	for n, want := range map[int]string{2: "0.50000000000", 3: "0.33333333349", 4: "0.25000000000", 5: "0.20000000019"} {
		if got := probability(n); got != want {
			t.Errorf("probability(%d) = %s, want %s", n, got, want)
		}
	}
}
