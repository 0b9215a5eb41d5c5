package main

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/bench"
	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/model"
)

// envRunMain makes the test binary run as the switchyard command, so a privileged test can run
// the command itself under `ip netns exec`, as an operator runs it on a node.
const envRunMain = "SWITCHYARD_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		main() // exits non-zero on an error
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runInNS runs `switchyard args...` inside ns and returns its standard output and exit code.
func runInNS(t testing.TB, ns *netnstest.NS, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, os.Args[0]}, args...)...)
	cmd.Env = append(os.Environ(), envRunMain+"=1")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitCode()
	}
	t.Fatalf("run %v: %v", args, err)
	return "", "", -1
}

// TestExplainCommandRealKernel runs `switchyard explain` as a process inside a throwaway node
// namespace, for each iptables variant: iptables mode has programmed the namespace's tables, the
// debug endpoints listen on the namespace's loopback as the daemon's do, a pod bridge and an
// uplink give the routes. The command finds the variant and mode itself, explains a pod's packet
// to a ClusterIP (both endpoints, on their nodes), says no drift with --check, then reports a
// hand-deleted Switchyard rule and a hand-added one in a Switchyard chain, and fails; bad input is an error, never a crash.
func TestExplainCommandRealKernel(t *testing.T) {
	netnstest.Require(t)
	iptablestest.EachVariant(t, model.IPv4, "xcmd", func(t *testing.T, v utiliptables.Variant, ns *netnstest.NS, ipt *utiliptables.Exec) {
		peer := netnstest.New(t, "xcmdpeer")
		netnstest.Veth(t, ns, "eth0", "192.168.50.11/24", peer, "eth0", "192.168.50.12/24")
		for _, cmd := range [][]string{
			{"ip", "link", "add", "cni0", "type", "bridge"},
			{"ip", "addr", "add", "10.244.1.1/24", "dev", "cni0"},
			{"ip", "link", "set", "cni0", "up"},
			{"ip", "route", "add", "10.244.2.0/24", "via", "192.168.50.12"},
		} {
			ns.MustRun(t, cmd...)
		}
		p, snap := syncedProxier(t, ipt)
		var ln net.Listener
		if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		addDebugHandlers(mux, staticDebug{snap}, p)
		srv := &http.Server{Handler: mux}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		metrics := "--metrics-address=" + ln.Addr().String()

		out, errOut, code := runInNS(t, ns, "explain", "--src", "10.244.1.7", "--dst", "10.96.0.10:80", "--output", "json", metrics)
		var rep explain.Report
		if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
			t.Fatalf("explain exited %d:\n%s\n%s", code, out, errOut)
		}
		got := map[string]string{}
		for _, o := range rep.Outcomes {
			got[o.Endpoint.String()] = string(o.Verdict) + " " + o.EndpointNode
		}
		if rep.Mode != "iptables" || len(got) != 2 || got["10.244.1.5:8080"] != "delivered node-a" || got["10.244.2.5:8080"] != "delivered node-b" {
			t.Errorf("report: mode %s, outcomes %v; want both endpoints delivered on their nodes\n%s", rep.Mode, got, out)
		}

		out, errOut, code = runInNS(t, ns, "explain", "--src", "10.244.1.7", "--dst", "10.96.0.10:80", metrics)
		if code != 0 || !strings.Contains(out, "default/web:http") {
			t.Errorf("text report (exit %d) does not name the service:\n%s\n%s", code, out, errOut)
		}
		t.Logf("switchyard explain --src 10.244.1.7 --dst 10.96.0.10:80 (%s):\n%s", v, out)

		// Without the daemon the walk still runs on the live rules, and says what it could not read.
		out, errOut, code = runInNS(t, ns, "explain", "--src", "10.244.1.7", "--dst", "10.96.0.10:80", "--metrics-address=127.0.0.1:1")
		if code != 0 || !strings.Contains(out, "10.244.2.5:8080") || !strings.Contains(out, "model could not be read") {
			t.Errorf("without the daemon (exit %d):\n%s\n%s", code, out, errOut)
		}
		if _, errOut, code = runInNS(t, ns, "explain", "--check", "--metrics-address=127.0.0.1:1"); code != 1 || !strings.Contains(errOut, "is it running") {
			t.Errorf("--check without the daemon: exit %d, %s", code, errOut)
		}

		if out, errOut, code = runInNS(t, ns, "explain", "--check", metrics); code != 0 || !strings.Contains(out, "no drift") {
			t.Errorf("--check right after a sync exited %d:\n%s\n%s", code, out, errOut)
		}
		want := handEdit(t, ipt, "10.244.1.5:8080")
		out, errOut, code = runInNS(t, ns, "explain", "--check", metrics)
		if code != 1 || out != want || !strings.Contains(errOut, "1 rules missing and 1 unexpected") {
			t.Errorf("--check after the hand edits exited %d:\n%s\n%s\nwant:\n%s", code, out, errOut, want)
		}
		t.Logf("switchyard explain --check after the hand edits (%s):\n%s%s", v, out, errOut)

		for _, bad := range [][]string{{"--dst", "10.96.0.10"}, {"--dst", "10.96.0.10:80/icmp"}, {"--dst", "nonsense:80"}} {
			_, errOut, code := runInNS(t, ns, append([]string{"explain", metrics}, bad...)...)
			if code != 1 || !strings.HasPrefix(errOut, "switchyard: explain: --dst") || strings.Contains(errOut, "panic") {
				t.Errorf("explain %v: exit %d, %q; want exit 1 and a one-line error", bad, code, errOut)
			}
		}
	})
}

// staticDebug serves one snapshot as the sync loop would after syncing it.
type staticDebug struct{ snap *model.Snapshot }

func (s staticDebug) DebugModel() model.DebugModel { return model.NewDebugModel(s.snap, nil) }
func (s staticDebug) DebugState() (*model.Snapshot, []model.DebugSync) {
	return s.snap, nil
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

// BenchmarkExplainCommand10k times one `switchyard explain` run, as an operator runs it, on a node
// namespace whose nft tables iptables mode programmed with proxier/bench's 10k-service workload (5
// endpoints each, a fifth NodePorts): the process start, variant detection, iptables-save, the
// model over HTTP, conntrack, and the walk, for a pod's packet to the last service; and one
// `explain --check` (the expected rules over HTTP, iptables-save, the diff).
func BenchmarkExplainCommand10k(b *testing.B) {
	netnstest.Require(b)
	ns := netnstest.New(b, "xbench")
	ipt := iptablestest.ExecIn(b, ns, model.IPv4, utiliptables.VariantNFT)
	for _, cmd := range [][]string{
		{"ip", "link", "add", "cni0", "type", "bridge"},
		{"ip", "addr", "add", "10.191.255.1/24", "dev", "cni0"},
		{"ip", "link", "set", "cni0", "up"},
		{"ip", "route", "add", "10.128.0.0/10", "dev", "cni0"}, // where the other nodes' endpoints go; the kind does not matter here
	} {
		ns.MustRun(b, cmd...)
	}
	snap, err := bench.Synthesize(bench.Workload{Services: 10000, EndpointsPerService: 5, NodePortShare: 0.2})
	if err != nil {
		b.Fatal(err)
	}
	p, err := iptables.NewProxier(iptables.Config{Options: bench.IptablesOptions(), IPTables: ipt, StagedChainsPerRestore: iptables.StagingFor(utiliptables.VariantNFT)})
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Sync(snap); err != nil {
		b.Fatal(err)
	}
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	addDebugHandlers(mux, staticDebug{snap}, p)
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	dst := netip.AddrPortFrom(bench.ClusterIP(9999), bench.ServicePort).String()
	metrics := "--metrics-address=" + ln.Addr().String()
	b.Run("explain", func(b *testing.B) {
		for b.Loop() {
			if out, errOut, code := runInNS(b, ns, "explain", "--src", "10.191.255.7", "--dst", dst, metrics); code != 0 || !strings.Contains(out, "delivered") {
				b.Fatalf("explain exited %d:\n%s\n%s", code, out, errOut)
			}
		}
	})
	b.Run("check", func(b *testing.B) {
		for b.Loop() {
			if out, errOut, code := runInNS(b, ns, "explain", "--check", metrics); code != 0 || !strings.Contains(out, "no drift") {
				b.Fatalf("explain --check exited %d:\n%s\n%s", code, out, errOut)
			}
		}
	})
}
