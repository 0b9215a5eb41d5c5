package iptables

import (
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/model"
)

// cpuTime is the user+system time of this process (who: RUSAGE_SELF: rendering, the fake-free
// Go side) or of its finished children (RUSAGE_CHILDREN: the iptables binaries). Unlike wall time
// it hardly moves when other jobs share the machine.
func cpuTime(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkKernelSync measures real syncs through the iptables binaries inside a throwaway
// namespace: the first (full) sync into empty tables (nft with and without staging, and legacy),
// then an incremental sync that replaces one endpoint, one that adds a service (which rewrites one
// dispatch shard), and a periodic full resync with nothing changed. Run it once per size:
// SWITCHYARD_PRIVILEGED=1 go test -run XXX -bench KernelSync -benchtime 1x ./proxier/iptables
func BenchmarkKernelSync(b *testing.B) {
	netnstest.Require(b)
	for _, mode := range []struct {
		name    string
		variant utiliptables.Variant
		staging int
	}{{"nft-staged", utiliptables.VariantNFT, StagingFor(utiliptables.VariantNFT)}, {"nft-oneshot", utiliptables.VariantNFT, 0}, {"legacy", utiliptables.VariantLegacy, StagingFor(utiliptables.VariantLegacy)}} {
		v := mode.variant
		for _, n := range []int{1000, 5000, 10000} {
			b.Run(fmt.Sprintf("%s/services=%d", mode.name, n), func(b *testing.B) {
				var full, fullCPU, selfCPU, endpoint, addService, resync, resyncCPU time.Duration
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					ns := netnstest.New(b, "bench")
					snap := scaleSnapshot(n, 5)
					var p *Proxier
					run := func(fn func() error) time.Duration {
						start := time.Now()
						if err := ns.Do(fn); err != nil {
							b.Fatal(err)
						}
						return time.Since(start)
					}
					run(func() error {
						real, err := utiliptables.NewExec(model.IPv4, v)
						if err != nil {
							return err
						}
						p, err = NewProxier(Config{Options: testOptions(), IPTables: real, StagedChainsPerRestore: mode.staging})
						return err
					})
					b.StartTimer()
					child0, self0 := cpuTime(syscall.RUSAGE_CHILDREN), cpuTime(syscall.RUSAGE_SELF)
					full += run(func() error { return p.Sync(snap) })
					fullCPU += cpuTime(syscall.RUSAGE_CHILDREN) - child0
					selfCPU += cpuTime(syscall.RUSAGE_SELF) - self0
					b.StopTimer()

					next := cloneSnapshot(snap)
					name := next.SortedServiceNames()[n/2]
					eps := append([]model.Endpoint(nil), next.Endpoints[name]...)
					eps[0].Port = 9999
					next.Endpoints[name] = eps
					next.Changed[name.ServiceKey] = struct{}{}
					endpoint += run(func() error { return p.Sync(next) })

					third := cloneSnapshot(next)
					added := spn("bench", "added", "")
					third.Services[added] = &model.ServicePort{Name: added, Protocol: model.TCP, Port: 80,
						ClusterIPs: []netip.Addr{mustAddr("10.97.0.1")}, ExternalPolicy: model.PolicyCluster, InternalPolicy: model.PolicyCluster}
					third.Endpoints[added] = []model.Endpoint{ep("10.244.2.1", 80, "node-b")}
					third.Changed[added.ServiceKey] = struct{}{}
					addService += run(func() error { return p.Sync(third) })

					// The runner's periodic resync: Full, nothing changed, every chain rewritten.
					fourth := cloneSnapshot(third)
					fourth.Full = true
					c0, s0 := cpuTime(syscall.RUSAGE_CHILDREN), cpuTime(syscall.RUSAGE_SELF)
					resync += run(func() error { return p.Sync(fourth) })
					resyncCPU += cpuTime(syscall.RUSAGE_CHILDREN) - c0 + cpuTime(syscall.RUSAGE_SELF) - s0
				}
				b.ReportMetric(full.Seconds()/float64(b.N), "full-sync-s")
				b.ReportMetric(fullCPU.Seconds()/float64(b.N), "full-sync-child-cpu-s")
				b.ReportMetric(selfCPU.Seconds()/float64(b.N), "full-sync-self-cpu-s")
				b.ReportMetric(float64(endpoint.Milliseconds())/float64(b.N), "endpoint-sync-ms")
				b.ReportMetric(float64(addService.Milliseconds())/float64(b.N), "add-service-sync-ms")
				b.ReportMetric(resync.Seconds()/float64(b.N), "full-resync-s")
				b.ReportMetric(resyncCPU.Seconds()/float64(b.N), "full-resync-cpu-s")
			})
		}
	}
}
