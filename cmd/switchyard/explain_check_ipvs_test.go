package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/proxier/conntrack/conntracktest"
	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/ipvs"
	"github.com/switchyard/switchyard/proxier/ipvs/ipset/ipsettest"
	"github.com/switchyard/switchyard/proxier/ipvs/ipvstest"
	"github.com/switchyard/switchyard/proxier/model"
)

// syncedSource is the sync loop's debug view after one sync of snap.
type syncedSource struct{ snap *model.Snapshot }

func (s syncedSource) DebugModel() model.DebugModel {
	return model.NewDebugModel(s.snap, []model.DebugSync{{Family: model.IPv4}})
}
func (s syncedSource) DebugState() (*model.Snapshot, []model.DebugSync) {
	return s.snap, []model.DebugSync{{Family: model.IPv4}}
}

// ipvsNode is a fake node on which IPVS mode synced debugFixture, with the daemon's debug
// endpoints served from it.
type ipvsNode struct {
	*fakeNode
	ipvs  *ipvstest.FakeIPVS
	links *ipvstest.FakeLinks
	sets  *ipsettest.Fake
	srv   *httptest.Server
}

func syncedIPVSNode(t *testing.T) *ipvsNode {
	t.Helper()
	n := &ipvsNode{fakeNode: &fakeNode{ipt: iptablestest.NewFake(), ct: &conntracktest.Fake{}},
		ipvs: ipvstest.NewFakeIPVS(), sets: ipsettest.NewFake(),
		links: ipvstest.NewFakeLinks(map[string][]string{"eth0": {"192.168.50.1/24"}, "cni0": {"10.244.1.1/24"}})}
	opts := ipvs.DefaultOptions()
	opts.ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}
	p, err := ipvs.New(opts, ipvs.Deps{IPVS: n.ipvs, Links: n.links, Ipset: n.sets, Iptables: n.ipt, Sysctl: ipvstest.NewFakeSysctl(), Conntrack: n.ct})
	if err != nil {
		t.Fatal(err)
	}
	snap := syncDebugFixture(t, p)
	dm := model.NewDebugModel(snap, []model.DebugSync{{Family: model.IPv4}})
	n.model = &dm
	mux := http.NewServeMux()
	addDebugHandlers(mux, syncedSource{snap}, p)
	n.srv = httptest.NewServer(mux)
	t.Cleanup(n.srv.Close)
	return n
}

// sources reads the fakes as hostSources reads a node, and the expected state from the daemon's
// /debug/rules.
func (n *ipvsNode) sources() liveSources {
	src := n.fakeNode.sources()
	src.ipvs = func(f model.IPFamily) ([]explain.VirtualServer, string, error) {
		vss, err := ipvs.LiveVirtualServers(n.ipvs)
		if err != nil {
			return nil, "", err
		}
		sets, err := ipvs.LiveIPSets(n.sets, f)
		return vss, sets, err
	}
	src.localAddrs = func(model.IPFamily) (map[netip.Addr]string, error) {
		out := map[netip.Addr]string{}
		for name, l := range n.links.Links {
			for _, p := range l.Addrs {
				out[p.Addr()] = name
			}
		}
		return out, nil
	}
	src.fetchExpectedRules = func() ([]byte, error) {
		return fetchDebug(strings.TrimPrefix(n.srv.URL, "http://"), debugRulesPath)
	}
	return src
}

// TestCheckIPVS: in IPVS mode (found by auto from the tables), right after a sync there is no
// drift; a real server deleted by hand is missing, a rule added by hand to IPVS mode's chain is
// unexpected, and the check fails.
func TestCheckIPVS(t *testing.T) {
	n := syncedIPVSNode(t)
	f := &explainFlags{check: true, mode: "auto"}
	var out bytes.Buffer
	if err := runCheck(n.sources(), f, &out); err != nil || !strings.Contains(out.String(), "no drift") {
		t.Fatalf("right after a sync: %v\n%s", err, out.String())
	}

	vs := n.ipvs.Services[ipvstest.FakeVSKey{Family: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Addr: netip.MustParseAddr("10.96.0.10"), Port: 80}]
	if vs == nil {
		t.Fatalf("no virtual server for the ClusterIP:\n%s", n.ipvs.Dump())
	}
	delete(vs.Dests, netip.MustParseAddrPort("10.244.2.5:8080"))
	if err := n.ipt.EnsureRule(utiliptables.Prepend, "nat", "SY-IPVS-SERVICES", "-s", "10.244.1.66/32", "-j", "RETURN"); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err := runCheck(n.sources(), f, &out)
	if err == nil || !strings.Contains(err.Error(), "1 missing and 1 unexpected") {
		t.Errorf("after the hand edits: %v", err)
	}
	want := "missing:    real server 10.244.2.5:8080 weight 1 of tcp 10.96.0.10:80\n" +
		"unexpected: nat: -A SY-IPVS-SERVICES -s 10.244.1.66/32 -j RETURN\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}

// TestCheckIPVSAgainstIptablesDaemon: IPVS mode's tables with a daemon serving iptables mode's
// rules is an error that says so, not a report of drift.
func TestCheckIPVSAgainstIptablesDaemon(t *testing.T) {
	n := syncedIPVSNode(t)
	src := n.sources()
	src.fetchExpectedRules = func() ([]byte, error) { return []byte("*nat\nCOMMIT\n"), nil }
	err := runCheck(src, &explainFlags{check: true, mode: "auto"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "not IPVS mode's") {
		t.Errorf("check: %v", err)
	}
}
