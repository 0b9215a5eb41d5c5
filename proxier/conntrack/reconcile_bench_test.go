package conntrack_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/conntrack/conntracktest"
	"github.com/switchyard/switchyard/proxier/model"
)

// nthAddr is base plus n.
func nthAddr(base string, n int) netip.Addr {
	a := netip.MustParseAddr(base).As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) + uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// bigTable is n UDP services of 5 endpoints each (every tenth with a node port) and one flow per
// endpoint, 5n flows; in the returned snapshot every tenth service has lost its first endpoint, so
// n/10 flows are stale.
func bigTable(n int) (*model.Snapshot, []conntrack.Flow) {
	snap := model.NewSnapshot()
	var flows []conntrack.Flow
	for i := range n {
		name := model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "bench", Name: fmt.Sprintf("svc-%d", i)}, Port: "dns"}
		svc := &model.ServicePort{Name: name, Protocol: model.UDP, Port: 53, ClusterIPs: []netip.Addr{nthAddr("10.96.0.0", i)}}
		if i%10 == 0 {
			svc.NodePort = int32(30000 + i/10)
		}
		snap.Services[name] = svc
		for j := range 5 {
			ep := netip.AddrPortFrom(nthAddr("10.244.0.0", 5*i+j), 8080)
			if i%10 != 0 || j != 0 {
				snap.Endpoints[name] = append(snap.Endpoints[name], serving(ep))
			}
			src := netip.AddrPortFrom(nthAddr("10.250.0.0", i), uint16(40000+j))
			flows = append(flows, flow(model.UDP, src, netip.AddrPortFrom(svc.ClusterIPs[0], 53), ep))
		}
	}
	return snap, flows
}

func BenchmarkStale(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		snap, flows := bigTable(n)
		b.Run(fmt.Sprintf("services=%d/flows=%d", n, len(flows)), func(b *testing.B) {
			for b.Loop() {
				if got := conntrack.Stale(snap, model.IPv4, flows); len(got) != n/10 {
					b.Fatalf("%d stale, want %d", len(got), n/10)
				}
			}
		})
	}
}

// BenchmarkReconcileUnchanged is what a partial sync pays when no UDP service changed: nothing when
// nothing changed, one pass over the services when another service did. The table is not read.
func BenchmarkReconcileUnchanged(b *testing.B) {
	snap, flows := bigTable(10000)
	web := &model.ServicePort{Name: model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "bench", Name: "web"}},
		Protocol: model.TCP, Port: 80, ClusterIPs: []netip.Addr{netip.MustParseAddr("10.97.0.1")}}
	snap.Services[web.Name] = web
	fake := &conntracktest.Fake{Flows: flows}
	r := conntrack.NewReconciler(fake, model.IPv4)
	if _, err := r.Reconcile(snap); err != nil {
		b.Fatal(err)
	}
	for _, changed := range []map[model.ServiceKey]struct{}{{}, {web.Name.ServiceKey: {}}} {
		b.Run(fmt.Sprintf("changed=%d", len(changed)), func(b *testing.B) {
			snap.Changed = changed
			for b.Loop() {
				if n, err := r.Reconcile(snap); err != nil || n != 0 {
					b.Fatalf("deleted %d, %v", n, err)
				}
			}
		})
	}
}

// BenchmarkReconcileFake is one reconcile that deletes, over the fake.
func BenchmarkReconcileFake(b *testing.B) {
	snap, flows := bigTable(10000)
	for b.Loop() {
		b.StopTimer()
		fake := &conntracktest.Fake{Flows: slices.Clone(flows)}
		r := conntrack.NewReconciler(fake, model.IPv4)
		b.StartTimer()
		if n, err := r.Reconcile(snap); err != nil || n != 1000 {
			b.Fatalf("deleted %d, %v", n, err)
		}
	}
}
