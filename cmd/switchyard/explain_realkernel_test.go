package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/model"
)

// staticDebug serves one snapshot as the sync loop would after syncing it.
type staticDebug struct{ snap *model.Snapshot }

func (s staticDebug) DebugModel() model.DebugModel { return model.NewDebugModel(s.snap, nil) }
func (s staticDebug) DebugState() (*model.Snapshot, []model.DebugSync) {
	return s.snap, nil
}

// TestCheckRealKernel: iptables mode programs a throwaway namespace's real tables (each variant);
// explain --check, reading them back with iptables-save and the expected rules from the debug
// endpoint over HTTP, finds no drift; after a Switchyard rule is deleted by hand and another added
// by hand to a Switchyard chain, it reports exactly those two and fails.
func TestCheckRealKernel(t *testing.T) {
	netnstest.Require(t)
	iptablestest.EachVariant(t, model.IPv4, "xcheck", func(t *testing.T, v utiliptables.Variant, ns *netnstest.NS, ipt *utiliptables.Exec) {
		opts := iptables.DefaultOptions(model.IPv4)
		opts.LocalDetector.ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}
		p, err := iptables.NewProxier(iptables.Config{Options: opts, IPTables: ipt})
		if err != nil {
			t.Fatal(err)
		}
		snap := debugFixture()
		snap.Full = true
		if err := p.Sync(snap); err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		addDebugHandlers(mux, staticDebug{snap}, p)
		srv := httptest.NewServer(mux) // on the test's own loopback; only the tables are in the namespace
		defer srv.Close()
		addr := strings.TrimPrefix(srv.URL, "http://")
		src := liveSources{
			saveIptables:       func(model.IPFamily) ([]byte, error) { return ipt.SaveAll() },
			hasIPVSDevice:      func() bool { return false },
			fetchModel:         func() (*model.DebugModel, error) { return fetchDebugModel(addr) },
			fetchExpectedRules: func() ([]byte, error) { return fetchDebug(addr, debugRulesPath) },
		}
		f := &explainFlags{check: true, mode: "auto"}
		var out bytes.Buffer
		if err := runCheck(src, f, &out); err != nil || !strings.Contains(out.String(), "no drift") {
			t.Fatalf("right after a sync: %v\n%s", err, out.String())
		}

		saved, err := ipt.Save(iptables.TableNAT)
		if err != nil {
			t.Fatal(err)
		}
		var svcChain, dnat string
		for chain, rules := range utiliptables.ChainRules(saved) {
			for _, line := range strings.Split(rules, "\n") {
				if strings.Contains(line, "--to-destination 10.244.2.5:8080") {
					svcChain, dnat = chain, strings.TrimPrefix(line, "-A "+chain+" ")
				}
			}
		}
		words, err := utiliptables.SplitWords(dnat)
		if dnat == "" || err != nil {
			t.Fatalf("no DNAT to 10.244.2.5:8080 (%v) in:\n%s", err, saved)
		}
		if err := ipt.DeleteRule(iptables.TableNAT, svcChain, words...); err != nil {
			t.Fatal(err)
		}
		if err := ipt.EnsureRule(utiliptables.Prepend, iptables.TableNAT, "SY-SERVICES", "-s", "10.244.1.66/32", "-j", "RETURN"); err != nil {
			t.Fatal(err)
		}
		out.Reset()
		err = runCheck(src, f, &out)
		if err == nil || !strings.Contains(err.Error(), "1 rules missing and 1 unexpected") {
			t.Errorf("after the hand edits: %v", err)
		}
		want := "missing:    nat: -A " + svcChain + " " + dnat + "\n" +
			"unexpected: nat: -A SY-SERVICES -s 10.244.1.66/32 -j RETURN\n"
		if out.String() != want {
			t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
		}
	})
}

// TestHostRoutesRealKernel: in a throwaway namespace with a pod bridge, a VXLAN device with a
// route to another node's pod CIDR and a default route, the command's route reader names each
// kind, and the address reader finds the node's addresses.
func TestHostRoutesRealKernel(t *testing.T) {
	netnstest.Require(t)
	ns, peer := netnstest.New(t, "xroute"), netnstest.New(t, "xrouter")
	netnstest.Veth(t, ns, "eth0", "192.168.50.1/24", peer, "eth0", "192.168.50.254/24")
	for _, cmd := range [][]string{
		{"ip", "route", "add", "default", "via", "192.168.50.254"},
		{"ip", "link", "add", "cni0", "type", "bridge"},
		{"ip", "addr", "add", "10.244.1.1/24", "dev", "cni0"},
		{"ip", "link", "set", "cni0", "up"},
		{"ip", "link", "add", "sy-vxlan", "type", "vxlan", "id", "1", "dev", "eth0", "dstport", "8472"},
		{"ip", "link", "set", "sy-vxlan", "up"},
		{"ip", "route", "add", "10.244.2.0/24", "via", "10.244.2.0", "dev", "sy-vxlan", "onlink"},
	} {
		ns.MustRun(t, cmd...)
	}
	dm := model.NewDebugModel(debugFixture(), nil)
	type result struct {
		routes map[string]explain.Route
		addrs  map[netip.Addr]string
	}
	var res result
	err := ns.Do(func() error {
		res.routes = map[string]explain.Route{}
		for _, dst := range []string{"10.244.1.5", "10.244.2.5", "192.168.50.1", "8.8.8.8"} {
			f, err := hostRoute(netip.MustParseAddr(dst))
			if err != nil {
				return err
			}
			res.routes[dst] = classifyRoute(f, &dm)
		}
		var err error
		res.addrs, err = hostLocalAddrs(model.IPv4)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	want := map[string]explain.Route{
		"10.244.1.5":   {Dst: a("10.244.1.5"), Device: "cni0", Src: a("10.244.1.1"), Kind: "bridge", Node: "node-a"},
		"10.244.2.5":   {Dst: a("10.244.2.5"), Device: "sy-vxlan", Gateway: a("10.244.2.0"), Src: a("192.168.50.1"), Kind: "vxlan", Node: "node-b"},
		"192.168.50.1": {Dst: a("192.168.50.1"), Device: "lo", Src: a("192.168.50.1"), Kind: "local", Node: "node-a"},
		"8.8.8.8":      {Dst: a("8.8.8.8"), Device: "eth0", Gateway: a("192.168.50.254"), Src: a("192.168.50.1"), Kind: "default"},
	}
	for dst, w := range want {
		if got := res.routes[dst]; got != w {
			t.Errorf("route to %s = %+v, want %+v", dst, got, w)
		}
	}
	if res.addrs[a("192.168.50.1")] != "eth0" || res.addrs[a("10.244.1.1")] != "cni0" || res.addrs[a("127.0.0.1")] != "lo" {
		t.Errorf("addresses = %v", res.addrs)
	}
}
