package ipvs

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/ipvs/ipset"
	"github.com/switchyard/switchyard/proxier/ipvs/ipvstest"
	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"

	"github.com/switchyard/switchyard/internal/golden"
	"github.com/switchyard/switchyard/internal/metricstest"
)

// kernelState prints every fake's end state: IPVS table, kube-ipvs0, ipsets and iptables.
func kernelState(k *testKernel) string {
	var b strings.Builder
	b.WriteString("# ipvs\n" + k.ipvs.Dump() + "\n")
	b.WriteString("# " + DummyDevice + "\n" + strings.Join(k.links.AddrsOf(DummyDevice), "\n") + "\n")
	var names []string
	for n := range k.ipset.Sets {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&b, "# ipset %s %s\n", n, k.ipset.Sets[n].Type)
		for _, m := range k.ipset.Members(n) {
			b.WriteString(m + "\n")
		}
	}
	b.WriteString("# iptables\n" + k.iptables.Dump())
	return b.String()
}

// incremental returns snap marked as an ordinary (not full) sync with the given services changed.
func incremental(snap *model.Snapshot, changed ...model.ServiceKey) *model.Snapshot {
	snap.Full = false
	snap.Changed = map[model.ServiceKey]struct{}{}
	for _, c := range changed {
		snap.Changed[c] = struct{}{}
	}
	return snap
}

// removePort deletes a service port and its endpoints from snap and returns snap as an incremental
// sync with that service changed.
func removePort(snap *model.Snapshot, name model.ServicePortName) *model.Snapshot {
	delete(snap.Services, name)
	delete(snap.Endpoints, name)
	return incremental(snap, name.ServiceKey)
}

func fakeVS(proto uint16, addrPort string) ipvstest.FakeVSKey {
	ap := ipp(addrPort)
	return ipvstest.FakeVSKey{Family: family(ap.Addr()), Protocol: proto, Addr: ap.Addr(), Port: ap.Port()}
}

func destsOf(t *testing.T, k *testKernel, vs ipvstest.FakeVSKey) map[string]int {
	t.Helper()
	v, ok := k.ipvs.Services[vs]
	if !ok {
		t.Fatalf("virtual server %v missing\n%s", vs, k.ipvs.Dump())
	}
	out := map[string]int{}
	for d, dst := range v.Dests {
		out[d.String()] = dst.Weight
	}
	return out
}

func TestSyncProgramsFixture(t *testing.T) {
	k := newTestKernel()
	p := newTestProxier(t, k, testOptions())
	st := mustSync(t, p, fixture())
	golden.Check(t, "kernel-after-sync.golden", []byte(kernelState(k)))

	// An empty kernel needs one listing, then exactly one write per virtual server and real server.
	vs, rs := 0, 0
	for _, v := range k.ipvs.Services {
		vs++
		rs += len(v.Dests)
	}
	if st.IPVSReads != 1 || st.IPVSWrites != vs+rs {
		t.Errorf("first sync: %d IPVS reads, %d writes; want 1 and %d (%d virtual + %d real servers)", st.IPVSReads, st.IPVSWrites, vs+rs, vs, rs)
	}
	if k.links.Links[DummyDevice] == nil || !k.links.Links[DummyDevice].Up {
		t.Errorf("%s not created and up", DummyDevice)
	}
	if _, ok := k.ipvs.Services[fakeVS(unix.IPPROTO_TCP, "10.96.0.98:80")]; ok {
		t.Errorf("the service with a bad port was programmed")
	}
}

func TestUnchangedSyncWritesNothing(t *testing.T) {
	k, p, snap := syncedFixture(t)
	before := kernelState(k)

	// Same values, ordinary sync: nothing is re-rendered or written; one look-up of kube-ipvs0.
	st := mustSync(t, p, incremental(snap))
	if st.NetlinkRoundTrips() != 1 || st.Writes() != 0 {
		t.Errorf("unchanged incremental sync: %+v; want no writes and one round trip", st)
	}
	// Equal but newly built values, every service named as changed (a watcher that rebuilt
	// everything): all re-rendered, still no writes.
	rebuilt := fixture()
	var all []model.ServiceKey
	for n := range rebuilt.Services {
		all = append(all, n.ServiceKey)
	}
	st = mustSync(t, p, incremental(rebuilt, all...))
	if st.Writes() != 0 {
		t.Errorf("rebuilt-but-equal incremental sync wrote: %+v", st)
	}
	snap = rebuilt
	// A periodic full resync lists the kernel and finds nothing to fix; it rewrites only the constant
	// iptables rules (one restore and five jump checks).
	snap.Full = true
	st = mustSync(t, p, snap)
	if st.IPVSWrites != 0 || st.IpsetWrites != 0 || st.LinkWrites != 0 || st.IptablesCalls != 6 {
		t.Errorf("unchanged full sync: %+v; want no netlink writes and 6 iptables calls", st)
	}
	if after := kernelState(k); after != before {
		t.Errorf("unchanged syncs changed the kernel:\n%s\n---\n%s", before, after)
	}
}

func TestOneEndpointChange(t *testing.T) {
	k, p, snap := syncedFixture(t)

	web := spn("default", "web", "http")
	snap.Endpoints[web] = []model.Endpoint{ready("10.244.1.2", 8080, nodeName), ready("10.244.2.4", 8080, "node-b"), ready("fd00:244::2", 8080, nodeName)}
	st := mustSync(t, p, incremental(snap, web.ServiceKey))
	// Add the new real server, set the old one to weight 0, list to see it has no connections, delete.
	if st.IPVSWrites != 3 || st.IPVSReads != 1 || st.IpsetWrites != 0 || st.LinkWrites != 0 || st.IptablesCalls != 0 {
		t.Errorf("one-endpoint change: %+v; want 3 IPVS writes, 1 IPVS read, nothing else written", st)
	}
	want := map[string]int{"10.244.1.2:8080": 1, "10.244.2.4:8080": 1}
	if got := destsOf(t, k, fakeVS(unix.IPPROTO_TCP, "10.96.0.10:80")); !maps(got, want) {
		t.Errorf("real servers %v, want %v", got, want)
	}
}

func maps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestGracefulTermination(t *testing.T) {
	k, p, snap := syncedFixture(t)
	vs := fakeVS(unix.IPPROTO_TCP, "10.96.0.10:80")
	old := ipp("10.244.2.3:8080")
	if err := k.ipvs.SetConnections(vs, old, 2, 1); err != nil {
		t.Fatal(err)
	}
	web := spn("default", "web", "http")
	// removeBusy brings node-b's endpoint back, gives its real server active connections and removes
	// the endpoint again, which leaves that real server terminating with those connections.
	removeBusy := func(active int) {
		snap.Endpoints[web] = []model.Endpoint{ready("10.244.1.2", 8080, nodeName), ready("10.244.2.3", 8080, "node-b")}
		mustSync(t, p, incremental(snap, web.ServiceKey))
		if err := k.ipvs.SetConnections(vs, old, active, 0); err != nil {
			t.Fatal(err)
		}
		snap.Endpoints[web] = []model.Endpoint{ready("10.244.1.2", 8080, nodeName)}
		mustSync(t, p, incremental(snap, web.ServiceKey))
	}
	// The endpoint starts terminating (still serving): with a ready one left it is no longer chosen.
	snap.Endpoints[web] = []model.Endpoint{ready("10.244.1.2", 8080, nodeName), terminating("10.244.2.3", 8080, "node-b")}
	mustSync(t, p, incremental(snap, web.ServiceKey))
	if got := destsOf(t, k, vs); got[old.String()] != 0 || len(got) != 2 {
		t.Fatalf("terminating real server with connections: %v; want it kept at weight 0", got)
	}
	// Still draining: nothing changes and nothing is written but the listing.
	k.now = k.now.Add(time.Minute)
	st := mustSync(t, p, incremental(snap))
	if st.Writes() != 0 || p.TerminatingRealServers() != 1 {
		t.Errorf("draining sync: %+v, %d terminating", st, p.TerminatingRealServers())
	}
	// Connections end: the next sync deletes it.
	if err := k.ipvs.SetConnections(vs, old, 0, 0); err != nil {
		t.Fatal(err)
	}
	mustSync(t, p, incremental(snap))
	if got := destsOf(t, k, vs); len(got) != 1 || p.TerminatingRealServers() != 0 {
		t.Errorf("drained real server not deleted: %v", got)
	}

	// A real server whose connections never end is deleted after the grace period.
	removeBusy(5)
	k.now = k.now.Add(testOptions().GracePeriod - time.Second)
	mustSync(t, p, incremental(snap))
	if got := destsOf(t, k, vs); got[old.String()] != 0 || len(got) != 2 {
		t.Fatalf("before the grace period: %v", got)
	}
	k.now = k.now.Add(time.Second)
	mustSync(t, p, incremental(snap))
	if got := destsOf(t, k, vs); len(got) != 1 {
		t.Errorf("after the grace period: %v; want the busy real server deleted", got)
	}

	// A terminating real server that comes back before it drained gets weight 1 again.
	removeBusy(1)
	snap.Endpoints[web] = []model.Endpoint{ready("10.244.1.2", 8080, nodeName), ready("10.244.2.3", 8080, "node-b")}
	mustSync(t, p, incremental(snap, web.ServiceKey))
	if got := destsOf(t, k, vs); got[old.String()] != 1 || p.TerminatingRealServers() != 0 {
		t.Errorf("returning real server: %v, %d terminating; want weight 1, none", got, p.TerminatingRealServers())
	}
}

func TestUDPRealServerDeletedAtOnce(t *testing.T) {
	k, p, snap := syncedFixture(t)
	vs := fakeVS(unix.IPPROTO_UDP, "10.96.0.53:53")
	gone, kept := ipp("10.244.3.4:53"), ipp("10.244.1.7:53")
	if err := k.ipvs.SetConnections(vs, gone, 0, 4); err != nil {
		t.Fatal(err)
	}
	vip := ipp("10.96.0.53:53")
	k.conntrack.Flows = []conntrack.Flow{
		{Protocol: model.UDP, OrigSrc: ipp("10.244.1.5:40000"), OrigDst: vip, ReplySrc: gone},
		{Protocol: model.UDP, OrigSrc: ipp("10.244.1.6:40000"), OrigDst: vip, ReplySrc: gone},
		{Protocol: model.UDP, OrigSrc: ipp("10.244.1.7:40000"), OrigDst: vip, ReplySrc: kept},
		{Protocol: model.UDP, OrigSrc: ipp("10.244.1.8:40000"), OrigDst: ipp("10.96.0.54:53"), ReplySrc: gone},
	}
	dns := spn("kube-system", "dns", "dns")
	snap.Endpoints[dns] = []model.Endpoint{ready("10.244.1.7", 53, nodeName)}
	mustSync(t, p, incremental(snap, dns.ServiceKey))
	if got := destsOf(t, k, vs); len(got) != 1 || got[kept.String()] != 1 {
		t.Errorf("UDP real servers %v; want only %s", got, kept)
	}
	// Only the entries through this virtual server to the deleted real server go.
	if len(k.conntrack.Flows) != 2 || k.conntrack.Flows[0].ReplySrc != kept || k.conntrack.Flows[1].OrigDst.Addr() != ip("10.96.0.54") {
		t.Errorf("conntrack after the UDP real server left: %+v", k.conntrack.Flows)
	}
	if p.TerminatingRealServers() != 0 {
		t.Errorf("UDP real server left terminating")
	}
}

// TestUDPRealServerOfServingEndpointDropped: a UDP endpoint that starts terminating while another is
// ready stops being a real server at once; it still serves, but the entries DNATed to it lead
// nowhere in IPVS, so they go too.
func TestUDPRealServerOfServingEndpointDropped(t *testing.T) {
	k, p, snap := syncedFixture(t)
	vs := fakeVS(unix.IPPROTO_UDP, "10.96.0.53:53")
	leaving, kept := ipp("10.244.3.4:53"), ipp("10.244.1.7:53")
	vip := ipp("10.96.0.53:53")
	k.conntrack.Flows = []conntrack.Flow{
		{Protocol: model.UDP, OrigSrc: ipp("10.244.1.5:40000"), OrigDst: vip, ReplySrc: leaving},
		{Protocol: model.UDP, OrigSrc: ipp("10.244.1.7:40000"), OrigDst: vip, ReplySrc: kept},
	}
	dns := spn("kube-system", "dns", "dns")
	snap.Endpoints[dns] = []model.Endpoint{ready("10.244.1.7", 53, nodeName), terminating("10.244.3.4", 53, "node-c")}
	mustSync(t, p, incremental(snap, dns.ServiceKey))
	if got := destsOf(t, k, vs); len(got) != 1 || got[kept.String()] != 1 {
		t.Errorf("UDP real servers %v; want only %s", got, kept)
	}
	if len(k.conntrack.Flows) != 1 || k.conntrack.Flows[0].ReplySrc != kept {
		t.Errorf("conntrack after the UDP real server left: %+v", k.conntrack.Flows)
	}
}

func TestServiceRemovedAndAdded(t *testing.T) {
	k, p, snap := syncedFixture(t)
	legacy := spn("shop", "legacy", "")
	st := mustSync(t, p, removePort(snap, legacy))
	for _, v := range []string{"10.96.1.40:80", "192.0.2.50:80"} {
		if _, ok := k.ipvs.Services[fakeVS(unix.IPPROTO_TCP, v)]; ok {
			t.Errorf("virtual server %s of the deleted service remains", v)
		}
	}
	if addrs := k.links.AddrsOf(DummyDevice); slices.Contains(addrs, "10.96.1.40/32") || slices.Contains(addrs, "192.0.2.50/32") {
		t.Errorf("addresses of the deleted service still bound: %v", addrs)
	}
	if m := k.ipset.Members("SY-CLUSTER-IP"); slices.Contains(m, "10.96.1.40,tcp:80") {
		t.Errorf("SY-CLUSTER-IP still holds the deleted service: %v", m)
	}
	// Two virtual servers (their real servers go with them), two addresses, and four set entries:
	// SY-CLUSTER-IP, SY-EXTERNAL-IP-LOCAL and SY-IPVS-IPS twice.
	if st.IPVSWrites != 2 || st.LinkWrites != 2 || st.IpsetWrites != 4 {
		t.Errorf("removing one service: %+v; want 2 IPVS, 2 link and 4 ipset writes", st)
	}
	// Adding it back restores exactly the state of the first sync.
	fx := fixture()
	snap.Services[legacy], snap.Endpoints[legacy] = fx.Services[legacy], fx.Endpoints[legacy]
	mustSync(t, p, incremental(snap, legacy.ServiceKey))
	k2 := newTestKernel()
	mustSync(t, newTestProxier(t, k2, testOptions()), fixture())
	if got, want := kernelState(k), kernelState(k2); got != want {
		t.Errorf("remove then add differs from a fresh sync:\n%s\n---\n%s", got, want)
	}
}

func TestAffinityChangeUpdatesInPlace(t *testing.T) {
	k, p, snap := syncedFixture(t)
	cart := spn("shop", "cart", "")
	svc := *snap.Services[cart]
	svc.Affinity = model.SessionAffinity{ClientIP: true, TimeoutSeconds: 30}
	snap.Services[cart] = &svc
	st := mustSync(t, p, incremental(snap, cart.ServiceKey))
	if st.IPVSWrites != 2 || st.Writes() != 2 {
		t.Errorf("affinity change: %+v; want one update per virtual server (ClusterIP and NodePort)", st)
	}
	v := k.ipvs.Services[fakeVS(unix.IPPROTO_TCP, "192.168.50.10:30080")]
	if v.Service.Flags&flagPersistent == 0 || v.Service.Timeout != 30 || len(v.Dests) != 2 {
		t.Errorf("NodePort virtual server after update: %+v with %d real servers", v.Service, len(v.Dests))
	}
}

func TestForeignEntriesSurvive(t *testing.T) {
	k := newTestKernel()
	opts := testOptions()
	opts.ExcludeCIDRs = []netip.Prefix{netip.MustParsePrefix("10.96.200.0/24")}
	// Another program's virtual server on an address of its own, one on an excluded address that is
	// bound to kube-ipvs0, and one on a node address at a port Switchyard never used.
	foreign := []ipvstest.FakeVSKey{fakeVS(unix.IPPROTO_TCP, "10.50.0.1:80"), fakeVS(unix.IPPROTO_TCP, "10.96.200.1:80"), fakeVS(unix.IPPROTO_UDP, "192.168.50.10:4789")}
	for _, f := range foreign {
		if err := k.ipvs.NewService(mobyService(vsKey{f.Addr, protoOf(f.Protocol), f.Port}, "wlc", false, 0)); err != nil {
			t.Fatal(err)
		}
		if err := k.ipvs.NewDestination(mobyService(vsKey{f.Addr, protoOf(f.Protocol), f.Port}, "wlc", false, 0), mobyDest(ipp("10.9.9.9:80"), 3)); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.links.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: DummyDevice}}); err != nil {
		t.Fatal(err)
	}
	l, _ := k.links.LinkByName(DummyDevice)
	if err := k.links.AddrAdd(l, hostPrefix(ip("10.96.200.1"))); err != nil {
		t.Fatal(err)
	}
	p := newTestProxier(t, k, opts)
	mustSync(t, p, fixture())
	for _, f := range foreign {
		if v, ok := k.ipvs.Services[f]; !ok || v.Service.SchedName != "wlc" || len(v.Dests) != 1 {
			t.Errorf("foreign virtual server %v changed by a sync", f)
		}
	}
	if err := p.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if len(k.ipvs.Services) != len(foreign) {
		t.Errorf("after cleanup the table holds:\n%s\nwant only the %d foreign virtual servers", k.ipvs.Dump(), len(foreign))
	}
	for _, f := range foreign {
		if _, ok := k.ipvs.Services[f]; !ok {
			t.Errorf("cleanup removed foreign virtual server %v", f)
		}
	}
	if len(k.ipset.Sets) != 0 {
		t.Errorf("ipsets left after cleanup: %v", k.ipset.Sets)
	}
	if chains := append(k.iptables.UserChains("nat"), k.iptables.UserChains("filter")...); len(chains) != 0 || k.iptables.RuleCount() != 0 {
		t.Errorf("iptables left after cleanup: chains %v, %d rules\n%s", chains, k.iptables.RuleCount(), k.iptables.Dump())
	}
	if a := k.links.AddrsOf(DummyDevice); len(a) != 0 {
		t.Errorf("addresses left on %s: %v", DummyDevice, a)
	}
	// A sync after cleanup rebuilds everything (the --cleanup run then a restart in IPVS mode).
	mustSync(t, p, fixture())
	if _, ok := k.ipvs.Services[fakeVS(unix.IPPROTO_TCP, "10.96.0.10:80")]; !ok {
		t.Errorf("sync after cleanup did not reprogram")
	}
}

func protoOf(p uint16) model.Protocol { pr, _ := fromIPVSProto(p); return pr }

func TestDriftRepairedByFullSync(t *testing.T) {
	k, p, snap := syncedFixture(t)
	want := kernelState(k)

	web := fakeVS(unix.IPPROTO_TCP, "10.96.0.10:80")
	svc := mobyService(vsKey{web.Addr, model.TCP, web.Port}, "rr", false, 0)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(k.ipvs.DelDestination(svc, mobyDest(ipp("10.244.2.3:8080"), 1)))
	must(k.ipvs.NewDestination(svc, mobyDest(ipp("10.244.9.9:8080"), 1)))
	must(k.ipvs.UpdateService(mobyService(vsKey{web.Addr, model.TCP, web.Port}, "wrr", false, 0)))
	must(k.ipvs.DelService(mobyService(vsKey{ip("10.96.0.53"), model.UDP, 53}, "rr", false, 0)))
	l, _ := k.links.LinkByName(DummyDevice)
	must(k.links.AddrDel(l, hostPrefix(ip("10.96.1.20"))))
	must(k.links.AddrAdd(l, hostPrefix(ip("10.96.9.9"))))
	stale := vsKey{ip("10.96.9.9"), model.TCP, 80}
	must(k.ipvs.NewService(mobyService(stale, "rr", false, 0)))
	k.ipset.Sets["SY-CLUSTER-IP"].Entries = map[ipset.Entry]struct{}{}
	if err := k.iptables.Restore([]byte("*nat\n-F PREROUTING\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}

	// An ordinary sync trusts its record and does not notice; the periodic full sync repairs it all.
	snap.Full = true
	mustSync(t, p, snap)
	if got := kernelState(k); got != want {
		t.Errorf("full sync did not repair the drift:\n%s\n--- want\n%s", got, want)
	}
}

func TestRestartAdoptsKernelState(t *testing.T) {
	k, _, _ := syncedFixture(t)
	want := kernelState(k)
	// A new process (restart, upgrade) finds everything in place and writes nothing to netlink.
	p := newTestProxier(t, k, testOptions())
	st := mustSync(t, p, fixture())
	if st.IPVSWrites != 0 || st.IpsetWrites != 0 || st.LinkWrites != 0 {
		t.Errorf("restart sync wrote: %+v", st)
	}
	// One listing of services, and one of real servers per virtual server.
	if st.IPVSReads != 1+len(k.ipvs.Services) {
		t.Errorf("restart sync: %d IPVS reads, want %d", st.IPVSReads, 1+len(k.ipvs.Services))
	}
	if got := kernelState(k); got != want {
		t.Errorf("restart changed the kernel")
	}
}

func TestFailedSyncIsRetriedInFull(t *testing.T) {
	k, p, snap := syncedFixture(t)
	want := kernelState(k)
	// Someone deletes a virtual server behind the backend's back; the next change to it fails, as
	// the kernel refuses a real server on a missing virtual server.
	vs := vsKey{ip("10.96.0.10"), model.TCP, 80}
	if err := k.ipvs.DelService(mobyService(vs, "rr", false, 0)); err != nil {
		t.Fatal(err)
	}
	web := spn("default", "web", "http")
	eps := slices.Clone(snap.Endpoints[web])
	snap.Endpoints[web] = append(eps, ready("10.244.2.77", 8080, "node-b"))
	err := p.Sync(incremental(snap, web.ServiceKey))
	if err == nil || !strings.Contains(err.Error(), "10.96.0.10:80") {
		t.Fatalf("sync against a missing virtual server: %v; want an error naming it", err)
	}
	// Other services were still programmed normally, and the retry (not marked full by anyone) lists
	// the kernel and repairs.
	mustSync(t, p, incremental(snap))
	snap.Endpoints[web] = eps
	mustSync(t, p, incremental(snap, web.ServiceKey))
	if got := kernelState(k); got != want {
		t.Errorf("after the retry:\n%s\n--- want\n%s", got, want)
	}
}

func TestConflictingVirtualServers(t *testing.T) {
	k := newTestKernel()
	p := newTestProxier(t, k, testOptions())
	snap := fixture()
	// A second service claims the external IP:port of shop/legacy: the smaller name wins.
	a := &model.ServicePort{Name: spn("aaa", "clash", ""), Protocol: model.TCP, Port: 80,
		ClusterIPs: []netip.Addr{ip("10.96.5.5")}, ExternalIPs: []netip.Addr{ip("192.0.2.50")},
		ExternalPolicy: model.PolicyCluster, InternalPolicy: model.PolicyCluster}
	snap.Services[a.Name] = a
	snap.Endpoints[a.Name] = []model.Endpoint{ready("10.244.3.50", 80, "node-c")}
	mustSync(t, p, snap)
	ext := fakeVS(unix.IPPROTO_TCP, "192.0.2.50:80")
	if got := destsOf(t, k, ext); len(got) != 1 || got["10.244.3.50:80"] != 1 {
		t.Errorf("contested virtual server: %v; want aaa/clash's real server", got)
	}
	mustSync(t, p, removePort(snap, a.Name))
	// shop/legacy (eTP=Local, no local endpoints) takes over: no real servers.
	if got := destsOf(t, k, ext); len(got) != 0 {
		t.Errorf("after the winner left: %v; want shop/legacy's (none)", got)
	}
	if !slices.Contains(k.links.AddrsOf(DummyDevice), "192.0.2.50/32") {
		t.Errorf("shared address unbound while still in use")
	}
}

func TestNodeAddressChange(t *testing.T) {
	k, p, snap := syncedFixture(t)
	eth0 := k.links.Links["eth0"]
	eth0.Addrs = append(eth0.Addrs, netip.MustParsePrefix("192.168.50.11/24"))
	// Ordinary syncs do not read the node's addresses (that costs a dump of every address, the
	// service addresses included); the periodic full sync does.
	mustSync(t, p, incremental(snap))
	if _, ok := k.ipvs.Services[fakeVS(unix.IPPROTO_TCP, "192.168.50.11:30080")]; ok {
		t.Errorf("an incremental sync read the node's addresses")
	}
	snap.Full = true
	mustSync(t, p, snap)
	if _, ok := k.ipvs.Services[fakeVS(unix.IPPROTO_TCP, "192.168.50.11:30080")]; !ok {
		t.Errorf("no NodePort on the new node address")
	}
	if !slices.Contains(k.ipset.Members("SY-NODE-PORT"), "192.168.50.11,tcp:30080") {
		t.Errorf("SY-NODE-PORT lacks the new address: %v", k.ipset.Members("SY-NODE-PORT"))
	}
	eth0.Addrs = eth0.Addrs[:1]
	snap.Full = true
	mustSync(t, p, snap)
	if _, ok := k.ipvs.Services[fakeVS(unix.IPPROTO_TCP, "192.168.50.11:30080")]; ok {
		t.Errorf("NodePort kept on a removed node address")
	}
}

func TestDeletedDummyDeviceIsRecreated(t *testing.T) {
	k, p, snap := syncedFixture(t)
	want := kernelState(k)
	delete(k.links.Links, DummyDevice) // someone ran `ip link del kube-ipvs0`
	// The next ordinary sync notices, recreates the device and rebinds every address.
	if err := p.Sync(incremental(snap)); err != nil {
		t.Fatalf("sync after the device vanished: %v", err)
	}
	if got := kernelState(k); got != want {
		t.Errorf("after recreating %s:\n%s\n--- want\n%s", DummyDevice, got, want)
	}
}

func TestIPv6Family(t *testing.T) {
	k := newTestKernel()
	k.links = ipvstest.NewFakeLinks(map[string][]string{"eth0": {"192.168.50.10/24", "fd00:50::10/64", "fe80::1/64"}})
	o := testOptions()
	o.Family = model.IPv6
	o.NodePortAddresses = nil
	o.ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("fd00:244::/48")}
	p := newTestProxier(t, k, o)
	snap := fixture()
	mustSync(t, p, snap)
	vs := fakeVS(unix.IPPROTO_TCP, "[fd00:96::10]:80")
	if got := destsOf(t, k, vs); len(got) != 1 || got["[fd00:244::2]:8080"] != 1 {
		t.Errorf("IPv6 ClusterIP real servers: %v", got)
	}
	if len(k.ipvs.Services) != 1 {
		t.Errorf("IPv6 proxier programmed IPv4-only services:\n%s", k.ipvs.Dump())
	}
	if m := k.ipset.Members("SY6-CLUSTER-IP"); !slices.Equal(m, []string{"fd00:96::10,tcp:80"}) {
		t.Errorf("SY6-CLUSTER-IP = %v", m)
	}
	if _, ok := k.ipset.Sets["SY-CLUSTER-IP"]; ok {
		t.Errorf("IPv6 proxier created IPv4 sets")
	}
	if a := k.links.AddrsOf(DummyDevice); !slices.Equal(a, []string{"fd00:96::10/128"}) {
		t.Errorf("%s = %v", DummyDevice, a)
	}
	if st := mustSync(t, p, incremental(snap)); st.Writes() != 0 {
		t.Errorf("unchanged IPv6 sync wrote: %+v", st)
	}
}

func TestMetrics(t *testing.T) {
	syncedFixture(t)
	// shop/legacy has eTP=Local and no endpoint on this node; shop/front and monitoring/agent have one.
	if got := metricstest.Value(t, metrics.SyncProxyRulesNoLocalEndpointsTotal.WithLabelValues("external", "IPv4")); got != 1 {
		t.Errorf("no-local-endpoints (external) = %v, want 1", got)
	}
	if got := metricstest.Value(t, metrics.SyncProxyRulesNoLocalEndpointsTotal.WithLabelValues("internal", "IPv4")); got != 0 {
		t.Errorf("no-local-endpoints (internal) = %v, want 0", got)
	}
}

func TestPortRemovedFromService(t *testing.T) {
	k, p, snap := syncedFixture(t)
	https := spn("default", "web", "https")
	st := mustSync(t, p, removePort(snap, https))
	if _, ok := k.ipvs.Services[fakeVS(unix.IPPROTO_TCP, "10.96.0.10:443")]; ok {
		t.Errorf("virtual server of the removed port remains")
	}
	if _, ok := k.ipvs.Services[fakeVS(unix.IPPROTO_TCP, "10.96.0.10:80")]; !ok {
		t.Errorf("the service's other port was removed too")
	}
	if !slices.Contains(k.links.AddrsOf(DummyDevice), "10.96.0.10/32") {
		t.Errorf("ClusterIP unbound while another port still uses it")
	}
	// One virtual server, its SY-CLUSTER-IP entry and its hairpin entry; the address stays.
	if st.IPVSWrites != 1 || st.IpsetWrites != 2 || st.LinkWrites != 0 {
		t.Errorf("removing one port: %+v", st)
	}
}
