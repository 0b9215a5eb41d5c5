package podnet

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/internal/sysctltest"
	"github.com/switchyard/switchyard/podnet/vxlan"
	"github.com/switchyard/switchyard/podnet/vxlan/vxlantest"
)

// BenchmarkCNIAdd executes the real plugin for 100 pods of one node (a namespace) per iteration and
// reports the median and p99 latency of ADD. Run it with -benchtime=1x or a few x.
func BenchmarkCNIAdd(b *testing.B) {
	netnstest.Require(b)
	bin := buildPlugin(b)
	node, podNS := cniNode(b, "cb", 100)
	var all []time.Duration
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		for i, p := range podNS {
			start := time.Now()
			if _, err := runPlugin(b, bin, node, "ADD", fmt.Sprintf("bench-%d-%d", it, i), p, node.cniConf()); err != nil {
				b.Fatal(err)
			}
			all = append(all, time.Since(start))
		}
		b.StopTimer()
		for i, p := range podNS {
			if _, err := runPlugin(b, bin, node, "DEL", fmt.Sprintf("bench-%d-%d", it, i), p, node.cniConf()); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "ms-p99")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkControllerConverge measures one controller sync after n peer nodes appeared in the
// informer cache: parsing the nodes, computing the desired state and programming the fake kernel.
func BenchmarkControllerConverge(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			// Annotations already published, as after the first sync, so the benchmark measures the overlay.
			objs := []any{testNode("self", "10.244.1.0/24", "192.168.250.1", map[string]string{
				AnnotationVTEPMAC: vxlan.DeriveMAC("self", 1).String(), AnnotationPublicIP: "192.168.250.1"})}
			peers := 0
			for i := 0; peers < n; i++ {
				j := i + 2
				objs = append(objs, testNode(fmt.Sprintf("node-%05d", i), fmt.Sprintf("10.%d.%d.0/24", 100+j/256, j%256),
					fmt.Sprintf("192.168.%d.%d", j/250, 1+j%250), map[string]string{
						AnnotationVTEPMAC:  fmt.Sprintf("0a:58:00:00:%02x:%02x", j>>8, j&0xff),
						AnnotationPublicIP: fmt.Sprintf("192.168.%d.%d", j/250, 1+j%250),
					}))
				peers++
			}
			client := fake.NewSimpleClientset()
			factory := informers.NewSharedInformerFactory(client, 0)
			store := factory.Core().V1().Nodes().Informer().GetStore()
			for _, o := range objs {
				store.Add(o.(*v1.Node))
			}
			cfg := DefaultConfig()
			cfg.Mode, cfg.ClusterCIDR, cfg.SubnetFile = ModeVXLAN, "10.0.0.0/8", filepath.Join(b.TempDir(), "subnet.env")
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				nl := vxlantest.NewFake()
				nl.AddUnderlay("eth0", "192.168.250.1/16", 1500)
				ctrl, err := newController(client, factory, "self", cfg, Deps{Netlink: nl, Iptables: iptablestest.NewFake(),
					Sysctl: sysctltest.New(map[string]string{sysctlForward: "0"})})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := ctrl.Sync(context.Background()); err != nil {
					b.Fatal(err)
				}
				if w := ctrl.LastResult().Writes; w != 3*n {
					b.Fatalf("%d writes for %d peers", w, n)
				}
			}
		})
	}
}
