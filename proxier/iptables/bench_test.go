package iptables

import (
	"fmt"
	"testing"

	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/proxier/model"
)

// BenchmarkFullRenderApply renders every service from scratch and applies the result to the fake,
// at kube-proxy's benchmark shape (ClusterIP services x 5 endpoints).
func BenchmarkFullRenderApply(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		snap := scaleSnapshot(n, 5)
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var rules int
			for i := 0; i < b.N; i++ {
				r, err := RenderFull(snap, testOptions())
				if err != nil {
					b.Fatal(err)
				}
				if err := iptablestest.NewFake().Restore(r.Restore); err != nil {
					b.Fatal(err)
				}
				rules = r.RulesTotal[TableNAT] + r.RulesTotal[TableFilter]
			}
			b.ReportMetric(float64(rules), "rules")
		})
	}
}

// BenchmarkFullRender is the render alone.
func BenchmarkFullRender(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		snap := scaleSnapshot(n, 5)
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := RenderFull(snap, testOptions()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIncrementalOneEndpoint replaces one endpoint of one service per iteration and renders
// the incremental restore, the common steady-state sync.
func BenchmarkIncrementalOneEndpoint(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			snap := scaleSnapshot(n, 5)
			seq := newRenderSeq(b, testOptions())
			seq.render(snap, true)
			names := snap.SortedServiceNames()
			b.ReportAllocs()
			b.ResetTimer()
			var written int
			for i := 0; i < b.N; i++ {
				name := names[i%len(names)]
				eps := append([]model.Endpoint(nil), snap.Endpoints[name]...)
				eps[0].Port = int32(9000 + i%1000)
				snap.Endpoints[name] = eps
				snap.Changed = map[model.ServiceKey]struct{}{name.ServiceKey: {}}
				snap.Full = false
				out := seq.render(snap, false)
				written = len(out.Restore)
			}
			b.ReportMetric(float64(written), "restore-bytes")
		})
	}
}
