package ipvs

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/proxier/model"
)

// scaleSnapshot builds n ClusterIP services (every tenth also a NodePort) with eps endpoints each on
// other nodes, all TCP port 80.
func scaleSnapshot(n, eps int) *model.Snapshot {
	s := model.NewSnapshot()
	s.Node = model.NodeInfo{Name: nodeName}
	for i := 0; i < n; i++ {
		name := spn(fmt.Sprintf("ns%d", i%100), fmt.Sprintf("svc%d", i), "")
		svc := &model.ServicePort{Name: name, Protocol: model.TCP, Port: 80,
			ClusterIPs:     []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})},
			ExternalPolicy: model.PolicyCluster, InternalPolicy: model.PolicyCluster}
		if i%10 == 0 {
			svc.NodePort = int32(30000 + i/10)
		}
		s.Services[name] = svc
		list := make([]model.Endpoint, eps)
		for e := range list {
			k := i*eps + e
			list[e] = ready(netip.AddrFrom4([4]byte{10, 244, byte(k >> 8), byte(k)}).String(), 8080, "node-b")
		}
		s.Endpoints[name] = list
	}
	s.Full = true
	return s
}

var scales = []int{1000, 10000}

// cpuTime is the process's user+system CPU time. The machine is shared, so wall time per op is noisy;
// CPU time is what the target (< 50 ms per one-endpoint sync at 10k services) is about.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuTimer accumulates CPU time only while the benchmark timer runs.
type cpuTimer struct {
	total, start time.Duration
}

func (c *cpuTimer) Start() { c.start = cpuTime() }
func (c *cpuTimer) Stop()  { c.total += cpuTime() - c.start }
func (c *cpuTimer) report(b *testing.B) {
	b.ReportMetric(float64(c.total.Microseconds())/1000/float64(b.N), "cpu-ms/sync")
}

// The three syncs measured, each against whatever kernel newProxier builds a Proxier over: this
// file's fakes, or the kernel in realkernel_bench_test.go. Each reports CPU time and netlink round
// trips per sync and returns the last sync's stats.

// benchFirstSync measures a first sync into an empty kernel: render, list, and one write per
// virtual server, real server, address and set entry.
func benchFirstSync(b *testing.B, n int, newProxier func(*testing.B) *Proxier) SyncStats {
	snap := scaleSnapshot(n, 5)
	var st SyncStats
	var cpu cpuTimer
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		p := newProxier(b)
		b.StartTimer()
		cpu.Start()
		st = mustSync(b, p, snap)
		cpu.Stop()
	}
	cpu.report(b)
	b.ReportMetric(float64(st.NetlinkRoundTrips()), "netlink-rt/sync")
	b.ReportMetric(float64(st.IPVSReads+st.IPVSWrites)/float64(n+n/10), "ipvs-rt/virtual-server")
	return st
}

// benchUnchangedFullResync measures the periodic resync of a settled node: list and compare.
func benchUnchangedFullResync(b *testing.B, n int, newProxier func(*testing.B) *Proxier) SyncStats {
	snap := scaleSnapshot(n, 5)
	p := newProxier(b)
	mustSync(b, p, snap)
	var st SyncStats
	var cpu cpuTimer
	b.ResetTimer()
	cpu.Start()
	for i := 0; i < b.N; i++ {
		st = mustSync(b, p, snap)
	}
	cpu.Stop()
	cpu.report(b)
	b.ReportMetric(float64(st.NetlinkRoundTrips()), "netlink-rt/sync")
	return st
}

// benchOneEndpointChange measures the steady state: one endpoint of one service moves per sync.
func benchOneEndpointChange(b *testing.B, n int, newProxier func(*testing.B) *Proxier) SyncStats {
	snap := scaleSnapshot(n, 5)
	p := newProxier(b)
	mustSync(b, p, snap)
	name := spn("ns7", "svc7", "")
	orig := snap.Endpoints[name]
	alt := append([]model.Endpoint(nil), orig...)
	alt[0] = ready("10.245.0.1", 8080, "node-c")
	var st SyncStats
	var cpu cpuTimer
	b.ResetTimer()
	cpu.Start()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			snap.Endpoints[name] = alt
		} else {
			snap.Endpoints[name] = orig
		}
		st = mustSync(b, p, incremental(snap, name.ServiceKey))
	}
	cpu.Stop()
	cpu.report(b)
	b.ReportMetric(float64(st.Writes()), "writes/sync")
	b.ReportMetric(float64(st.NetlinkRoundTrips()), "netlink-rt/sync")
	return st
}

// fakeProxier builds a Proxier over a fresh fake node.
func fakeProxier(b *testing.B) *Proxier { return newTestProxier(b, newTestKernel(), testOptions()) }

// BenchmarkFullSync is a first sync into an empty fake kernel.
func BenchmarkFullSync(b *testing.B) {
	for _, n := range scales {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st := benchFirstSync(b, n, fakeProxier)
			b.ReportMetric(float64(st.IPVSReads+st.IPVSWrites), "ipvs-rt/sync")
		})
	}
}

// BenchmarkUnchangedFullResync is the periodic resync of a settled node, which must write nothing.
func BenchmarkUnchangedFullResync(b *testing.B) {
	for _, n := range scales {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			if st := benchUnchangedFullResync(b, n, fakeProxier); st.IPVSWrites+st.IpsetWrites+st.LinkWrites != 0 {
				b.Fatalf("unchanged resync wrote: %+v", st)
			}
		})
	}
}

// BenchmarkOneEndpointChange is the steady state, which writes at most three times per sync.
func BenchmarkOneEndpointChange(b *testing.B) {
	for _, n := range scales {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			if st := benchOneEndpointChange(b, n, fakeProxier); st.Writes() > 3 {
				b.Fatalf("one-endpoint change wrote %d times: %+v", st.Writes(), st)
			}
		})
	}
}
