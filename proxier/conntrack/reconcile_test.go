package conntrack_test

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/internal/metricstest"
	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/conntrack/conntracktest"
	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"
)

var (
	vip      = netip.MustParseAddr("10.96.0.53")
	vip6     = netip.MustParseAddr("fd00:96::53")
	extIP    = netip.MustParseAddr("192.168.50.200")
	epA      = netip.MustParseAddrPort("10.244.1.2:5353")
	epB      = netip.MustParseAddrPort("10.244.2.3:5353")
	epA6     = netip.MustParseAddrPort("[fd00:244::2]:5353")
	epGone6  = netip.MustParseAddrPort("[fd00:244::9]:5353")
	client   = netip.MustParseAddrPort("10.244.1.9:40000")
	client6  = netip.MustParseAddrPort("[fd00:244::1]:40000")
	dnsName  = model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "kube-system", Name: "dns"}, Port: "dns"}
	nodeAddr = netip.MustParseAddrPort("192.168.50.1:30053")
)

func dnsService(proto model.Protocol) *model.ServicePort {
	return &model.ServicePort{Name: dnsName, Protocol: proto, Port: 53, ClusterIPs: []netip.Addr{vip, vip6},
		ExternalIPs: []netip.Addr{extIP}, NodePort: 30053}
}

func serving(ap netip.AddrPort) model.Endpoint {
	return model.Endpoint{IP: ap.Addr(), Port: int32(ap.Port()), Ready: true, Serving: true}
}

func snapshot(svc *model.ServicePort, eps ...model.Endpoint) *model.Snapshot {
	s := model.NewSnapshot()
	if svc != nil {
		s.Services[svc.Name] = svc
		s.Endpoints[svc.Name] = eps
	}
	s.Changed[dnsName.ServiceKey] = struct{}{}
	return s
}

func flow(p model.Protocol, src, dst, replySrc netip.AddrPort) conntrack.Flow {
	return conntrack.Flow{Protocol: p, OrigSrc: src, OrigDst: dst, ReplySrc: replySrc, ReplyDst: src}
}

// table is a conntrack table with flows of every kind a DNS service sees, and some it must not
// touch.
func table() []conntrack.Flow {
	vipPort, extPort, vip6Port := netip.AddrPortFrom(vip, 53), netip.AddrPortFrom(extIP, 53), netip.AddrPortFrom(vip6, 53)
	pod := netip.MustParseAddrPort("10.244.5.5:53")
	return []conntrack.Flow{
		flow(model.UDP, client, vipPort, epA),        // 0: ClusterIP -> A
		flow(model.UDP, client, vipPort, epB),        // 1: ClusterIP -> B
		flow(model.UDP, client, extPort, epA),        // 2: external IP -> A
		flow(model.UDP, client, nodeAddr, epA),       // 3: node port -> A
		flow(model.UDP, client, vipPort, vipPort),    // 4: ClusterIP, never DNATed (no endpoints then)
		flow(model.UDP, client, nodeAddr, nodeAddr),  // 5: node port, never DNATed
		flow(model.TCP, client, vipPort, epA),        // 6: TCP is never touched
		flow(model.SCTP, client, vipPort, epA),       // 7: nor SCTP
		flow(model.UDP, client, pod, pod),            // 8: straight to a pod: no service's business
		flow(model.UDP, client6, vip6Port, epGone6),  // 9: IPv6 ClusterIP -> an endpoint not in the model
		flow(model.UDP, client6, vip6Port, epA6),     // 10: IPv6 ClusterIP -> A6
		flow(model.UDP, client6, vip6Port, vip6Port), // 11: IPv6 ClusterIP, never DNATed
	}
}

// left reconciles fake against snap for family and returns the indexes (into table()) of the flows
// left in it.
func left(t *testing.T, fake *conntracktest.Fake, r *conntrack.Reconciler, snap *model.Snapshot) []int {
	t.Helper()
	if _, err := r.Reconcile(snap); err != nil {
		t.Fatal(err)
	}
	return indexes(fake)
}

func indexes(fake *conntracktest.Fake) []int {
	var out []int
	for i, fl := range table() {
		if slices.Contains(fake.Flows, fl) {
			out = append(out, i)
		}
	}
	return out
}

func TestReconcile(t *testing.T) {
	udp := dnsService(model.UDP)
	terminating := serving(epA)
	terminating.Ready, terminating.Terminating = false, true
	notServing := serving(epA)
	notServing.Ready, notServing.Serving = false, false
	for name, tc := range map[string]struct {
		snap   *model.Snapshot
		family model.IPFamily
		want   []int
	}{
		"both endpoints serve": {snapshot(udp, serving(epA), serving(epB)), model.IPv4, []int{0, 1, 2, 3, 6, 7, 8, 9, 10, 11}},
		"endpoint A removed":   {snapshot(udp, serving(epB)), model.IPv4, []int{1, 6, 7, 8, 9, 10, 11}},
		// Every entry to the service's addresses goes (kubernetes#139628); node port entries stay,
		// since without endpoints they are not told apart from other traffic to that port.
		"scaled to zero":                  {snapshot(udp), model.IPv4, []int{3, 5, 6, 7, 8, 9, 10, 11}},
		"first endpoint appears":          {snapshot(udp, serving(epA)), model.IPv4, []int{0, 2, 3, 6, 7, 8, 9, 10, 11}},
		"terminating but serving is kept": {snapshot(udp, terminating), model.IPv4, []int{0, 2, 3, 6, 7, 8, 9, 10, 11}},
		"not serving counts as gone":      {snapshot(udp, notServing, serving(epB)), model.IPv4, []int{1, 6, 7, 8, 9, 10, 11}},
		"TCP service":                     {snapshot(dnsService(model.TCP)), model.IPv4, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		"no service ever":                 {snapshot(nil), model.IPv4, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		// The IPv6 pass sees only IPv6 entries and endpoints.
		"IPv6": {snapshot(udp, serving(epA), serving(epA6)), model.IPv6, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 10}},
	} {
		t.Run(name, func(t *testing.T) {
			fake := &conntracktest.Fake{Flows: table()}
			got := left(t, fake, conntrack.NewReconciler(fake, tc.family), tc.snap)
			if !slices.Equal(got, tc.want) {
				t.Errorf("flows left = %v, want %v", got, tc.want)
			}
			// The pure decision agrees with what the reconciler did.
			all, _ := fake.List(tc.family)
			if stale := conntrack.Stale(tc.snap, tc.family, all); len(stale) != 0 {
				t.Errorf("after reconciling, still stale: %v", stale)
			}
		})
	}
}

// TestReconcileServiceDeleted: entries to the addresses of a UDP service that was deleted since the
// previous reconcile go, as kube-proxy does since kubernetes#141371.
func TestReconcileServiceDeleted(t *testing.T) {
	fake := &conntracktest.Fake{Flows: table()}
	r := conntrack.NewReconciler(fake, model.IPv4)
	if got := left(t, fake, r, snapshot(dnsService(model.UDP), serving(epA), serving(epB))); len(got) != 10 {
		t.Fatalf("flows left = %v", got)
	}
	if got, want := left(t, fake, r, snapshot(nil)), []int{3, 6, 7, 8, 9, 10, 11}; !slices.Equal(got, want) {
		t.Errorf("flows left after the service went = %v, want %v", got, want)
	}
}

// TestReconcileNodePortOfAnotherService: an entry to a service address is judged by that service
// alone, even when its port is another service's node port.
func TestReconcileNodePortOfAnotherService(t *testing.T) {
	other := &model.ServicePort{Name: model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "a", Name: "b"}},
		Protocol: model.UDP, Port: 30053, ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.99")}}
	otherEP := netip.MustParseAddrPort("10.244.3.3:30053")
	snap := snapshot(dnsService(model.UDP), serving(epA))
	snap.Services[other.Name] = other
	snap.Endpoints[other.Name] = []model.Endpoint{serving(otherEP)}
	live := flow(model.UDP, client, netip.AddrPortFrom(other.ClusterIPs[0], 30053), otherEP)
	fake := &conntracktest.Fake{Flows: []conntrack.Flow{live}}
	if _, err := conntrack.NewReconciler(fake, model.IPv4).Reconcile(snap); err != nil {
		t.Fatal(err)
	}
	if len(fake.Flows) != 1 {
		t.Errorf("the live entry to %v was deleted", live.OrigDst)
	}
}

// TestReconcileRetriesAfterFailure: a failed delete leaves the table as it was, and the next
// reconcile, with nothing changed, deletes the entries.
func TestReconcileRetriesAfterFailure(t *testing.T) {
	snap := snapshot(dnsService(model.UDP), serving(epB))
	fake := &conntracktest.Fake{Flows: table(), FailDeletes: 1}
	r := conntrack.NewReconciler(fake, model.IPv4)
	if _, err := r.Reconcile(snap); !errors.Is(err, conntracktest.ErrInjected) {
		t.Fatalf("reconcile: %v, want the injected failure", err)
	}
	if got := indexes(fake); len(got) != len(table()) {
		t.Fatalf("a failed delete changed the table: %v", got)
	}
	if got, want := left(t, fake, r, snap), []int{1, 6, 7, 8, 9, 10, 11}; !slices.Equal(got, want) {
		t.Errorf("flows left after the retry = %v, want %v", got, want)
	}
}

// TestReconcileSkipsWhenNothingChanged: once a reconcile succeeded, a partial sync that changed no
// UDP service, or changed one without changing what it justifies, does not list the table; a full
// one does.
func TestReconcileSkipsWhenNothingChanged(t *testing.T) {
	snap := snapshot(dnsService(model.UDP), serving(epB))
	fake := &conntracktest.Fake{}
	r := conntrack.NewReconciler(fake, model.IPv4)
	left(t, fake, r, snap)
	fake.Flows = table()
	if got := left(t, fake, r, snap); len(got) != len(table()) {
		t.Errorf("a partial sync with the same UDP state reconciled: %v left", got)
	}
	other := model.ServiceKey{Namespace: "default", Name: "web"}
	snap.Changed = map[model.ServiceKey]struct{}{other: {}}
	if got := left(t, fake, r, snap); len(got) != len(table()) {
		t.Errorf("a partial sync of another service reconciled: %v left", got)
	}
	snap.Full = true
	if got, want := left(t, fake, r, snap), []int{1, 6, 7, 8, 9, 10, 11}; !slices.Equal(got, want) {
		t.Errorf("flows left after a full sync = %v, want %v", got, want)
	}
}

// TestDropDestination: entries to a destination a backend dropped go, although it still serves.
func TestDropDestination(t *testing.T) {
	snap := snapshot(dnsService(model.UDP), serving(epA), serving(epB))
	fake := &conntracktest.Fake{Flows: table()}
	r := conntrack.NewReconciler(fake, model.IPv4)
	left(t, fake, r, snap)
	r.DropDestination(netip.AddrPortFrom(vip, 53), epA)
	if got, want := left(t, fake, r, snap), []int{1, 2, 3, 6, 7, 8, 9, 10, 11}; !slices.Equal(got, want) {
		t.Errorf("flows left = %v, want %v", got, want)
	}
}

func TestReconcileMetrics(t *testing.T) {
	deleted := metrics.ConntrackReconcileDeletedTotal.WithLabelValues("IPv6")
	latency := metrics.ConntrackReconcileLatency.WithLabelValues("IPv6").(prometheus.Histogram)
	before, passes := metricstest.Value(t, deleted), metricstest.Histogram(t, latency).GetSampleCount()
	fake := &conntracktest.Fake{Flows: table()}
	n, err := conntrack.NewReconciler(fake, model.IPv6).Reconcile(snapshot(dnsService(model.UDP), serving(epA6)))
	if err != nil || n != 2 {
		t.Fatalf("reconcile: %d deleted, %v; want 2", n, err)
	}
	if got := metricstest.Value(t, deleted) - before; got != 2 {
		t.Errorf("deleted entries metric grew by %v, want 2", got)
	}
	if got := metricstest.Histogram(t, latency).GetSampleCount() - passes; got != 1 {
		t.Errorf("sync duration observed %d times, want 1", got)
	}
}

// TestReconcileSharedExternalIP: two UDP services on one external IP and port each justify the
// entries to their own endpoints there.
func TestReconcileSharedExternalIP(t *testing.T) {
	other := &model.ServicePort{Name: model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "a", Name: "b"}},
		Protocol: model.UDP, Port: 53, ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.99")}, ExternalIPs: []netip.Addr{extIP}}
	snap := snapshot(dnsService(model.UDP), serving(epA))
	snap.Services[other.Name] = other
	snap.Endpoints[other.Name] = []model.Endpoint{serving(epB)}
	extPort := netip.AddrPortFrom(extIP, 53)
	fake := &conntracktest.Fake{Flows: []conntrack.Flow{flow(model.UDP, client, extPort, epA), flow(model.UDP, client, extPort, epB)}}
	if _, err := conntrack.NewReconciler(fake, model.IPv4).Reconcile(snap); err != nil {
		t.Fatal(err)
	}
	if len(fake.Flows) != 2 {
		t.Errorf("flows left = %v, want both", fake.Flows)
	}
}
