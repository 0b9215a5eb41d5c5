package ipvs

import (
	"fmt"
	"testing"

	"github.com/switchyard/switchyard/proxier/explain"
)

// BenchmarkExplain measures one explanation on a node with n services of 5 endpoints (every tenth
// also a NodePort), from live state already read: parsing the rules and 10k-entry ipsets, the walk,
// the virtual server look-up and the walks after IPVS. The packet goes to the last service, so every
// linear look-up runs to its end. Command: go test ./proxier/ipvs -run XXX -bench Explain
//
// Measured (2 shared cores): 1k services 1.0 ms (1.3 ms CPU), 10k services 9 ms (12 ms CPU, the
// garbage collector's share included) per explanation, about the same for a NodePort; half of it is
// reading the 10k-entry ipsets (tracer.ParseIPSetSave). Reading the fakes (ReadLive) is not the
// kernel's cost and only shows the readers scale linearly.
func BenchmarkExplain(b *testing.B) {
	for _, n := range scales {
		k := newTestKernel()
		snap := scaleSnapshot(n, 5)
		mustSync(b, newTestProxier(b, k, testOptions()), snap)
		live := liveFromKernel(b, k, debugModel(snap))
		last := n - 1
		pkts := map[string]explain.Packet{
			"ClusterIP": tcpFrom(explain.FromPod, "10.244.1.5:40000", fmt.Sprintf("10.96.%d.%d:80", last>>8, last&0xff)),
			"NodePort":  tcpFrom(explain.FromExternal, "198.51.100.7:40000", fmt.Sprintf("192.168.50.10:%d", 30000+(n-10)/10)),
		}
		for _, kind := range []string{"ClusterIP", "NodePort"} {
			b.Run(fmt.Sprintf("%s/%d", kind, n), func(b *testing.B) {
				var cpu cpuTimer
				for i := 0; i < b.N; i++ {
					cpu.Start()
					rep, err := Explain(live, pkts[kind])
					cpu.Stop()
					if err != nil {
						b.Fatal(err)
					}
					if len(rep.Outcomes) != 5 || rep.Outcomes[0].Verdict != explain.Delivered {
						b.Fatalf("%s: %d outcomes, first %s; want 5 delivered", kind, len(rep.Outcomes), rep.Outcomes[0].Verdict)
					}
				}
				b.ReportMetric(float64(cpu.total.Microseconds())/1000/float64(b.N), "cpu-ms/op")
			})
		}
		b.Run(fmt.Sprintf("ReadLive/%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				liveFromKernel(b, k, nil)
			}
		})
	}
}

// BenchmarkCheck measures `explain --check`'s pure part on a node with n services of 5 endpoints:
// the expected state (a full render) and its comparison with the live state already read (every
// virtual server, set member and rule). Command: go test ./proxier/ipvs -run XXX -bench Check
//
// Measured (2 shared cores): 1k services about 10 ms, 10k services about 140 ms per check, on top
// of reading the kernel.
func BenchmarkCheck(b *testing.B) {
	for _, n := range scales {
		k := newTestKernel()
		snap := scaleSnapshot(n, 5)
		p := newTestProxier(b, k, testOptions())
		mustSync(b, p, snap)
		live := liveState(b, k)
		b.Run(fmt.Sprintf("%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				exp, err := p.ExpectedState(snap)
				if err != nil {
					b.Fatal(err)
				}
				d, err := FindDrift(exp, live)
				if err != nil || !d.None() {
					b.Fatalf("drift %+v, %v", d, err)
				}
			}
		})
	}
}
