package iptables_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/switchyard/switchyard/proxier/bench"
	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/iptables/tracer"
)

// BenchmarkExplain times `switchyard explain` on the synthetic 10k-service node of proxier/bench
// (5 endpoints each, a fifth of them NodePorts, some with affinity or a Local policy), as the real
// Proxier leaves its rules: reading the whole iptables-save text (parse), the walk of one packet to
// the first and to the last service on the parsed rules, and the two together (explain), which is
// what one run of the command costs besides gathering the state.
func BenchmarkExplain(b *testing.B) {
	w := bench.Workload{Services: 10000, EndpointsPerService: 5, NodePortShare: 0.2, AffinityShare: 0.1, LocalShare: 0.1}
	snap, err := bench.Synthesize(w)
	if err != nil {
		b.Fatal(err)
	}
	save := syncFake(b, snap, bench.IptablesOptions()).Dump()
	podCIDR := bench.NodePodCIDR
	live := &explain.Live{
		Mode: "iptables", IptablesSave: []byte(save),
		LocalAddrs: map[netip.Addr]string{bench.NodeIP: "eth0", podCIDR.Addr().Next(): "cni0"},
		Route: func(dst netip.Addr) (explain.Route, error) {
			if podCIDR.Contains(dst) {
				return explain.Route{Dst: dst, Device: "cni0", Src: podCIDR.Addr().Next(), Kind: "bridge"}, nil
			}
			return explain.Route{Dst: dst, Device: "eth0", Src: bench.NodeIP, Kind: "direct"}, nil
		},
		Model: debugModelOf(snap),
	}
	pod := netip.AddrPortFrom(podCIDR.Addr().Next().Next(), 40000)
	packetTo := func(i int) explain.Packet {
		return explain.Packet{Src: pod, Dst: netip.AddrPortFrom(bench.ClusterIP(i), bench.ServicePort), Proto: "tcp", From: explain.FromPod}
	}
	services := map[string]int{"first": 0, "last": w.Services - 1}
	b.Run(fmt.Sprintf("services=%d/parse", w.Services), func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(save)))
		for i := 0; i < b.N; i++ {
			if _, err := tracer.ParseLenient(save); err != nil {
				b.Fatal(err)
			}
		}
	})
	rs, err := tracer.ParseLenient(save)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(rs.RuleCount()), "rules")
	for _, which := range []string{"first", "last"} {
		pkt := packetTo(services[which])
		b.Run(fmt.Sprintf("services=%d/walk-%s", w.Services, which), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				rep, err := iptables.ExplainRules(rs, live, pkt)
				if err != nil || len(rep.Outcomes) != w.EndpointsPerService || rep.Outcomes[0].Verdict != explain.Delivered {
					b.Fatalf("explain %v: %v %+v", pkt, err, rep)
				}
			}
		})
		b.Run(fmt.Sprintf("services=%d/explain-%s", w.Services, which), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := iptables.Explain(live, pkt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
