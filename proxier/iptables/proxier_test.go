package iptables

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/conntrack/conntracktest"
	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"

	"github.com/switchyard/switchyard/internal/golden"
	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/internal/metricstest"
)

// metricValue reads a counter or gauge (prometheus' testutil would add a module to go.mod).
func newTestProxier(t *testing.T, fake *iptablestest.Fake, ct conntrack.Table) *Proxier {
	t.Helper()
	p, err := NewProxier(Config{Options: testOptions(), IPTables: fake, Conntrack: ct})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// syncedFixture returns a fake kernel and a Proxier (with ct, which may be nil) that has synced
// fixtureSnapshot into it, and that snapshot.
func syncedFixture(t *testing.T, ct conntrack.Table) (*iptablestest.Fake, *Proxier, *model.Snapshot) {
	t.Helper()
	fake := iptablestest.NewFake()
	p := newTestProxier(t, fake, ct)
	snap := fixtureSnapshot()
	mustSync(t, p, snap)
	return fake, p, snap
}

// mustSync syncs snap and stops the test if that fails.
func mustSync(t *testing.T, p *Proxier, snap *model.Snapshot) {
	t.Helper()
	if err := p.Sync(snap); err != nil {
		t.Fatal(err)
	}
}

// wantState is what a fresh kernel holds after one full sync of snap: the rendered chains plus the
// jumps from the built-in chains.
func wantState(t *testing.T, snap *model.Snapshot) string {
	t.Helper()
	fake := iptablestest.NewFake()
	p := newTestProxier(t, fake, nil)
	s := cloneSnapshot(snap)
	s.Full = true
	mustSync(t, p, s)
	return fake.Dump()
}

func TestProxierSyncInstallsJumpsAndCanary(t *testing.T) {
	fake, p, _ := syncedFixture(t, nil)
	for _, tc := range []struct{ table, chain, target string }{
		{TableNAT, "PREROUTING", chainServices}, {TableNAT, "OUTPUT", chainServices}, {TableNAT, "POSTROUTING", chainPostrouting},
		{TableFilter, "FORWARD", chainForward}, {TableFilter, "FORWARD", chainFirewall}, {TableFilter, "INPUT", chainExternalServices},
		{TableFilter, "INPUT", chainNodePorts}, {TableFilter, "OUTPUT", chainServices},
	} {
		found := false
		for _, r := range fake.Rules(tc.table, tc.chain) {
			found = found || strings.HasSuffix(r, "-j "+tc.target)
		}
		if !found {
			t.Errorf("%s/%s has no jump to %s: %v", tc.table, tc.chain, tc.target, fake.Rules(tc.table, tc.chain))
		}
	}
	for _, table := range []string{TableFilter, TableNAT, TableMangle} {
		if ok, _ := fake.ChainExists(table, CanaryChain); !ok {
			t.Errorf("no canary in %s", table)
		}
	}
	// A second full sync leaves exactly the same state (jumps are not duplicated).
	before := fake.Dump()
	s := cloneSnapshot(fixtureSnapshot())
	s.Full = true
	mustSync(t, p, s)
	if after := fake.Dump(); after != before {
		t.Errorf("second full sync changed the state:\n%s", golden.LineDiff(before, after))
	}
}

func TestProxierMutateAndResync(t *testing.T) {
	fake, p, snap := syncedFixture(t, nil)
	next := cloneSnapshot(snap)
	web := spn("default", "web", "http")
	next.Endpoints[web] = []model.Endpoint{ep("10.244.2.99", 8080, "node-b")}
	next.Changed[web.ServiceKey] = struct{}{}
	empty := spn("default", "empty", "")
	next.Endpoints[empty] = []model.Endpoint{ep("10.244.1.20", 80, testNode)}
	next.Changed[empty.ServiceKey] = struct{}{}
	mustSync(t, p, next)
	if got, want := fake.Dump(), wantState(t, next); got != want {
		t.Fatalf("state after incremental sync differs from a fresh full sync:\n%s", golden.LineDiff(want, got))
	}
	// The REJECT for the service that gained an endpoint is gone, its DNAT is in.
	if strings.Contains(fake.DumpTable(TableFilter), "default/empty has no endpoints") {
		t.Errorf("REJECT rules for default/empty remain after it gained an endpoint")
	}
	if !strings.Contains(fake.DumpTable(TableNAT), "--to-destination 10.244.1.20:80") {
		t.Errorf("no DNAT to default/empty's new endpoint")
	}

	// A sync with nothing changed writes nothing.
	fake.LastRestore = nil
	before := fake.Dump()
	mustSync(t, p, cloneSnapshot(next))
	if fake.LastRestore != nil {
		t.Errorf("a sync without changes ran a restore:\n%s", fake.LastRestore)
	}
	if fake.Dump() != before {
		t.Errorf("a sync without changes changed the state")
	}
}

func TestProxierRestoreFailureKeepsStateAndForcesFull(t *testing.T) {
	fake, p, snap := syncedFixture(t, nil)
	before := fake.Dump()
	failures := metricstest.Value(t, metrics.IptablesRestoreFailuresTotal.WithLabelValues("IPv4"))
	partial := metricstest.Value(t, metrics.IptablesPartialRestoreFailuresTotal.WithLabelValues("IPv4"))

	next := cloneSnapshot(snap)
	web := spn("default", "web", "http")
	delete(next.Services, web)
	delete(next.Endpoints, web)
	next.Changed[web.ServiceKey] = struct{}{}
	fake.InjectRestoreError(errors.New("xtables lock held"))
	if err := p.Sync(next); err == nil {
		t.Fatal("sync succeeded although the restore failed")
	}
	if fake.Dump() != before {
		t.Errorf("a failed restore changed the state")
	}
	if got := metricstest.Value(t, metrics.IptablesRestoreFailuresTotal.WithLabelValues("IPv4")); got != failures+1 {
		t.Errorf("restore failures metric = %v, want %v", got, failures+1)
	}
	if got := metricstest.Value(t, metrics.IptablesPartialRestoreFailuresTotal.WithLabelValues("IPv4")); got != partial+1 {
		t.Errorf("partial restore failures metric = %v, want %v", got, partial+1)
	}

	// The retry carries no Changed set and no Full flag: the proxier itself must know to go full.
	retry := cloneSnapshot(next)
	mustSync(t, p, retry)
	// Only a full sync can know that web's chain must go: the retry carries no Changed set.
	if webChain := chainsFor(web, model.TCP).Cluster; !strings.Contains(string(fake.LastRestore), "-X "+webChain+"\n") {
		t.Errorf("the sync after a failure did not delete %s, so it was not full:\n%s", webChain, fake.LastRestore)
	}
	if got, want := fake.Dump(), wantState(t, next); got != want {
		t.Fatalf("state after the retry differs from a fresh full sync:\n%s", golden.LineDiff(want, got))
	}
}

func TestProxierCanaryRepair(t *testing.T) {
	fake, p, snap := syncedFixture(t, nil)
	want := fake.Dump()
	// An administrator (or firewalld) deletes everything: every chain of ours and the jumps to them.
	for _, table := range []string{TableFilter, TableNAT, TableMangle} {
		chains, _ := fake.ListChains(table)
		for _, c := range chains {
			if isOwnedChain(c) {
				fake.DeleteChainForTest(table, c)
			}
		}
	}
	mustSync(t, p, cloneSnapshot(snap))
	if got := fake.Dump(); got != want {
		t.Fatalf("the sync after a flush did not repair the state:\n%s", golden.LineDiff(want, got))
	}
}

func TestProxierSweepsLeftoversOfEarlierRun(t *testing.T) {
	fake := iptablestest.NewFake()
	// An earlier Switchyard left its canary and a chain for a service that no longer exists.
	leftover := "SY-SVC-LEFTOVERLEFTOVER"
	if err := fake.Restore([]byte("*nat\n:" + CanaryChain + " - [0:0]\n:" + leftover + " - [0:0]\n-A " + leftover + " -p tcp -j DNAT --to-destination 10.244.9.9:80\nCOMMIT\n*filter\n:" + CanaryChain + " - [0:0]\nCOMMIT\n*mangle\n:" + CanaryChain + " - [0:0]\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}
	p := newTestProxier(t, fake, nil)
	mustSync(t, p, fixtureSnapshot())
	if ok, _ := fake.ChainExists(TableNAT, leftover); ok {
		t.Errorf("leftover chain %s survived the first sync", leftover)
	}
	if got, want := fake.Dump(), wantState(t, fixtureSnapshot()); got != want {
		t.Errorf("state differs from a fresh full sync:\n%s", golden.LineDiff(want, got))
	}
}

func TestProxierMetrics(t *testing.T) {
	fake, _, _ := syncedFixture(t, nil)
	// The fixture has one iTP=Local and one eTP=Local service without a local endpoint.
	if got := metricstest.Value(t, metrics.SyncProxyRulesNoLocalEndpointsTotal.WithLabelValues("internal", "IPv4")); got != 1 {
		t.Errorf("no-local-endpoints internal = %v, want 1", got)
	}
	if got := metricstest.Value(t, metrics.SyncProxyRulesNoLocalEndpointsTotal.WithLabelValues("external", "IPv4")); got != 1 {
		t.Errorf("no-local-endpoints external = %v, want 1", got)
	}
	// Owned nat rules = every rule in SY- chains of nat (the jumps in built-in chains are not counted).
	owned := 0
	for _, l := range strings.Split(fake.DumpTable(TableNAT), "\n") {
		if strings.HasPrefix(l, "-A SY-") {
			owned++
		}
	}
	if got := metricstest.Value(t, metrics.IptablesRulesTotal.WithLabelValues(TableNAT, "IPv4")); int(got) != owned {
		t.Errorf("nat rules total metric = %v, fake holds %d", got, owned)
	}
}

// dnsFixture is syncedFixture over a conntrack fake, with the DNS service's name and a UDP flow from
// one client to its ClusterIP DNATed to replySrc.
func dnsFixture(t *testing.T) (ct *conntracktest.Fake, p *Proxier, snap *model.Snapshot, dns model.ServicePortName, flow func(replySrc string) conntrack.Flow) {
	t.Helper()
	ct = &conntracktest.Fake{}
	_, p, snap = syncedFixture(t, ct)
	vip := netip.MustParseAddrPort("10.96.0.53:53")
	client := netip.MustParseAddrPort("10.244.1.50:40000")
	flow = func(replySrc string) conntrack.Flow {
		return conntrack.Flow{Protocol: model.UDP, OrigSrc: client, OrigDst: vip, ReplySrc: netip.MustParseAddrPort(replySrc)}
	}
	return ct, p, snap, spn("kube-system", "dns", "dns"), flow
}

func TestProxierClearsStaleUDPFlows(t *testing.T) {
	ct, p, snap, dns, flow := dnsFixture(t)
	ct.Flows = []conntrack.Flow{
		flow("10.244.2.2:53"), // to the endpoint that goes
		flow("10.244.3.3:53"), // to the one that stays
	}
	next := cloneSnapshot(snap)
	next.Endpoints[dns] = []model.Endpoint{ep("10.244.3.3", 53, "node-c")}
	next.Changed[dns.ServiceKey] = struct{}{}
	mustSync(t, p, next)
	if len(ct.Flows) != 1 || ct.Flows[0].ReplySrc.Addr() != mustAddr("10.244.3.3") {
		t.Errorf("flows after the endpoint left = %+v, want only the one to 10.244.3.3", ct.Flows)
	}
}

// TestProxierRetriesConntrackDeletes: a failed conntrack delete does not fail the sync (the rules
// are in force), and the next sync deletes the entries although nothing changed. The service is
// scaled to zero, so the entry to its last endpoint must go.
func TestProxierRetriesConntrackDeletes(t *testing.T) {
	ct, p, snap, dns, flow := dnsFixture(t)
	ct.Flows = []conntrack.Flow{flow("10.244.3.3:53")}
	ct.FailDeletes = 1
	next := cloneSnapshot(snap)
	delete(next.Endpoints, dns)
	next.Changed[dns.ServiceKey] = struct{}{}
	mustSync(t, p, next)
	if len(ct.Flows) != 1 {
		t.Fatalf("flows after the failed delete = %+v, want the entry still there", ct.Flows)
	}
	mustSync(t, p, cloneSnapshot(next))
	if len(ct.Flows) != 0 {
		t.Errorf("flows after the next sync = %+v, want none", ct.Flows)
	}
}

func TestCleanupRemovesEverything(t *testing.T) {
	// Another agent's rule in a built-in chain must survive.
	other := []string{"-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "ACCEPT"}
	want := iptablestest.NewFake()
	if err := want.EnsureRule(utiliptables.Prepend, TableFilter, "INPUT", other...); err != nil {
		t.Fatal(err)
	}
	fake, _, _ := syncedFixture(t, nil)
	if err := fake.EnsureRule(utiliptables.Prepend, TableFilter, "INPUT", other...); err != nil {
		t.Fatal(err)
	}
	checkCleanup(t, fake, Cleanup, want.Dump())
}

// checkCleanup runs clean on fake, which must then hold exactly want, and again on the clean
// kernel, which is not an error.
func checkCleanup(t *testing.T, fake *iptablestest.Fake, clean func(utiliptables.Interface) error, want string) {
	t.Helper()
	if err := clean(fake); err != nil {
		t.Fatal(err)
	}
	if got := fake.Dump(); got != want {
		t.Errorf("cleanup left something behind:\n%s", golden.LineDiff(want, got))
	}
	if err := clean(fake); err != nil {
		t.Errorf("second cleanup: %v", err)
	}
}

// TestProxierStagedColdStart: on empty tables a staged sync ends in the same state as a one-shot
// sync; a failed batch leaves no reference to staged chains, and the retry repairs everything.
func TestProxierStagedColdStart(t *testing.T) {
	snap := fixtureSnapshot()
	want := wantState(t, snap)

	fake := iptablestest.NewFake()
	p, err := NewProxier(Config{Options: testOptions(), IPTables: fake, StagedChainsPerRestore: 3})
	if err != nil {
		t.Fatal(err)
	}
	mustSync(t, p, snap)
	if got := fake.Dump(); got != want {
		t.Fatalf("staged cold start differs from a one-shot sync:\n%s", golden.LineDiff(want, got))
	}

	// A fresh kernel where the second restore (the first staged batch) fails.
	fake = iptablestest.NewFake()
	p, _ = NewProxier(Config{Options: testOptions(), IPTables: fake, StagedChainsPerRestore: 3})
	flaky := &failNth{Fake: fake, n: 2}
	p.ipt = flaky
	if err := p.Sync(snap); err == nil {
		t.Fatal("sync succeeded although a staged batch failed")
	}
	if got := fake.Rules(TableNAT, chainServices); len(got) != 0 {
		t.Errorf("dispatch rules in place after a failed staged sync: %v", got)
	}
	mustSync(t, p, cloneSnapshot(snap))
	if got := fake.Dump(); got != want {
		t.Fatalf("state after the retry differs from a one-shot sync:\n%s", golden.LineDiff(want, got))
	}
}

// failNth is the fake with its n-th Restore failing (counting from 1).
type failNth struct {
	*iptablestest.Fake
	n, calls int
}

func (f *failNth) Restore(data []byte) error {
	f.calls++
	if f.calls == f.n {
		f.Fake.InjectRestoreError(errors.New("injected"))
	}
	return f.Fake.Restore(data)
}

// TestProxierVerifiedFullSync: a full sync on tables that hold our rules reads them back and
// writes only what differs: nothing for an unchanged cluster, the one chain someone edited, and
// the jump someone deleted.
func TestProxierVerifiedFullSync(t *testing.T) {
	fake, p, snap := syncedFixture(t, nil)
	want := fake.Dump()
	resync := func() {
		t.Helper()
		s := cloneSnapshot(snap)
		s.Full = true
		if err := p.Sync(s); err != nil {
			t.Fatal(err)
		}
	}

	fake.LastRestore = nil
	resync()
	if fake.LastRestore != nil {
		t.Errorf("a periodic full sync of an unchanged cluster wrote:\n%s", fake.LastRestore)
	}

	// Someone rewrites one of our chains and deletes a jump.
	web := chainsFor(spn("default", "web", "http"), model.TCP).Cluster
	if err := fake.Restore([]byte("*nat\n:" + web + " - [0:0]\n-A " + web + " -j RETURN\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}
	j := jumpRules[0]
	if err := fake.DeleteRule(j.table, j.chain, j.args...); err != nil {
		t.Fatal(err)
	}
	resync()
	if got := fake.Dump(); got != want {
		t.Fatalf("full sync did not repair the drift:\n%s", golden.LineDiff(want, got))
	}
	if n := strings.Count(string(fake.LastRestore), "\n:"); n != 1 {
		t.Errorf("repair declared %d chains, want only %s:\n%s", n, web, fake.LastRestore)
	}
}

// dispatchWatch is the fake, noting after every transaction how many rules nat SY-SERVICES holds,
// so a test can check that the dispatch chain never went empty on the way to the end state.
type dispatchWatch struct {
	*iptablestest.Fake
	minRules int
}

func (d *dispatchWatch) Restore(data []byte) error {
	err := d.Fake.Restore(data)
	if n := len(d.Fake.Rules(TableNAT, chainServices)); n < d.minRules {
		d.minRules = n
	}
	return err
}

// TestProxierLostCanaryAloneKeepsTraffic: if only a canary disappears, our rules are still in
// place and carrying traffic; the repair must not flush them on the way.
func TestProxierLostCanaryAloneKeepsTraffic(t *testing.T) {
	fake, p, snap := syncedFixture(t, nil)
	want := fake.Dump()
	watch := &dispatchWatch{Fake: fake, minRules: 1 << 30}
	p.ipt = watch
	fake.DeleteChainForTest(TableMangle, CanaryChain)
	mustSync(t, p, cloneSnapshot(snap))
	if got := fake.Dump(); got != want {
		t.Fatalf("state after the repair differs:\n%s", golden.LineDiff(want, got))
	}
	if watch.minRules == 0 {
		t.Errorf("the dispatch chain was emptied during the repair")
	}
}

// TestCleanupLeavesOtherOwnersButCleanupAllDoesNot: IPVS mode removes iptables mode's leftovers with
// Cleanup at start-up, which must not touch the pod network's or IPVS mode's chains; --cleanup uses
// CleanupAll, which must remove them too, jumps included.
func TestCleanupLeavesOtherOwnersButCleanupAllDoesNot(t *testing.T) {
	pristine := iptablestest.NewFake().Dump()
	fake, _, _ := syncedFixture(t, nil)
	others := "*nat\n:SY-POD-MASQ - [0:0]\n:SY-IPVS-SERVICES - [0:0]\n" +
		"-A SY-POD-MASQ -s 10.244.0.0/16 -j MASQUERADE\n" +
		"-A POSTROUTING -m comment --comment \"switchyard pod network\" -j SY-POD-MASQ\n" +
		"-A PREROUTING -j SY-IPVS-SERVICES\nCOMMIT\n"
	if err := fake.Restore([]byte(others)); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(fake); err != nil {
		t.Fatal(err)
	}
	nat, err := fake.Save(TableNAT)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{":SY-POD-MASQ", ":SY-IPVS-SERVICES", "-A POSTROUTING -m comment --comment \"switchyard pod network\" -j SY-POD-MASQ", "-A SY-POD-MASQ -s 10.244.0.0/16 -j MASQUERADE"} {
		if !strings.Contains(string(nat), want) {
			t.Errorf("Cleanup removed another owner's %q:\n%s", want, nat)
		}
	}
	for _, gone := range []string{":SY-SERVICES", ":SY-SVC-", ":SY-POSTROUTING", "-j SY-SERVICES"} {
		if strings.Contains(string(nat), gone) {
			t.Errorf("Cleanup left iptables mode's %q", gone)
		}
	}
	checkCleanup(t, fake, CleanupAll, pristine)
}

// TestChainDeletedByHandIsRestored: someone removes the jumps into SY-SERVICES and deletes the chain,
// leaving the canary. An incremental sync trusts what it applied, so only the periodic look at the
// fixed chains (CheckChainsEvery) can notice; the sync after it must restore exactly the full state.
func TestChainDeletedByHandIsRestored(t *testing.T) {
	fake := iptablestest.NewFake()
	now := time.Unix(1_700_000_000, 0)
	p, err := NewProxier(Config{Options: testOptions(), IPTables: fake, CheckChainsEvery: 30 * time.Second,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	snap := fixtureSnapshot()
	mustSync(t, p, snap)
	want := fake.Dump()

	nat, err := fake.Save(TableNAT)
	if err != nil {
		t.Fatal(err)
	}
	var vandal strings.Builder
	vandal.WriteString("*nat\n")
	for _, line := range strings.Split(string(nat), "\n") {
		if strings.HasPrefix(line, "-A ") && strings.HasSuffix(line, "-j "+chainServices) {
			vandal.WriteString("-D " + line[len("-A "):] + "\n")
		}
	}
	vandal.WriteString("-F " + chainServices + "\n-X " + chainServices + "\nCOMMIT\n")
	if err := fake.Restore([]byte(vandal.String())); err != nil {
		t.Fatal(err)
	}
	if ok, _ := fake.ChainExists(TableNAT, chainServices); ok {
		t.Fatal("test setup: chain still there")
	}

	quiet := cloneSnapshot(snap)
	quiet.Full = false
	quiet.Changed = map[model.ServiceKey]struct{}{}
	now = now.Add(10 * time.Second) // not yet due: an incremental sync changes nothing
	mustSync(t, p, quiet)
	if ok, _ := fake.ChainExists(TableNAT, chainServices); ok {
		t.Fatal("restored before the check was due; the test no longer shows what it means to")
	}
	now = now.Add(30 * time.Second)
	mustSync(t, p, quiet)
	if got := fake.Dump(); got != want {
		t.Errorf("after the due check:\n%s", golden.LineDiff(want, got))
	}
}
