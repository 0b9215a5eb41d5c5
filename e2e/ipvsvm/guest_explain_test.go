//go:build ipvsvm

package ipvsvm

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	mobyipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/ipvs"
	"github.com/switchyard/switchyard/proxier/model"
)

// checkExplain sends real requests from ns (src inside it) to addr, then explains the same connection
// from the node's live IPVS state, and asserts that the two agree: explain delivers the packet to
// exactly the backends that answered, with probabilities summing to 1, and masquerades it to exactly
// the client addresses the backends saw (not at all when they saw src itself).
func checkExplain(t *testing.T, ns *netnstest.NS, from explain.From, src, addr string, want map[string]bool) {
	t.Helper()
	clients := checkAnswers(t, ns, addr, want, "")
	if t.Failed() {
		return
	}
	reached := map[netip.AddrPort]bool{}
	for i, name := range backendNames {
		for pod := range want {
			if strings.HasSuffix(pod, "/"+name) {
				reached[netip.AddrPortFrom(netip.MustParseAddr(backendIPs[i]), 8080)] = true
			}
		}
	}
	pkt := explain.Packet{Src: netip.AddrPortFrom(netip.MustParseAddr(src), 0), Dst: netip.MustParseAddrPort(addr), Proto: "tcp", From: from}
	rep, err := ipvs.Explain(nodeLive(t), pkt)
	if err != nil {
		t.Fatalf("explain %s -> %s: %v", src, addr, err)
	}
	endpoints, masq := map[netip.AddrPort]bool{}, map[string]bool{}
	total := 0.0
	for _, o := range rep.Outcomes {
		total += o.Probability
		if o.Verdict != explain.Delivered || !o.Endpoint.IsValid() {
			t.Errorf("explain %s -> %s: outcome %s (p=%.3g), want delivered to an endpoint", src, addr, o.Verdict, o.Probability)
			continue
		}
		endpoints[o.Endpoint] = true
		client := src
		if o.Masquerade.IsValid() {
			client = o.Masquerade.String()
		}
		masq[client] = true
	}
	if total < 0.999 || total > 1.001 {
		t.Errorf("explain %s -> %s: probabilities sum to %.4f", src, addr, total)
	}
	if !mapsEqual(endpoints, reached) {
		t.Errorf("explain %s -> %s: endpoints %v, but real requests reached %v", src, addr, endpoints, reached)
	}
	if !mapsEqual(masq, clients) {
		t.Errorf("explain %s -> %s: the backends would see clients %v, but they saw %v", src, addr, masq, clients)
	}
	t.Logf("explain %s -> %s: %d outcome(s), endpoints %v, clients %v", src, addr, len(rep.Outcomes), endpoints, masq)
}

func mapsEqual[K comparable](a, b map[K]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// nodeLive reads the VM node's live IPVS-mode state the way `switchyard explain` does: iptables-save,
// the backend's ipsets and the virtual servers through netlink, the node's addresses and its routes.
// The model is left out (explain then names no services), as the check compares paths, not names.
func nodeLive(t *testing.T) *explain.Live {
	t.Helper()
	save, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nl.Close)
	sets, err := ipvs.LiveIPSets(nl, model.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	ih, err := mobyipvs.New("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ih.Close)
	vss, err := ipvs.LiveVirtualServers(ih)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := nl.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	dev := func(index int) string {
		l, err := nl.LinkByIndex(index)
		if err != nil {
			return ""
		}
		return l.Attrs().Name
	}
	local := map[netip.Addr]string{}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			local[ip.Unmap()] = dev(a.LinkIndex)
		}
	}
	route := func(dst netip.Addr) (explain.Route, error) {
		rs, err := nl.RouteGet(net.IP(dst.AsSlice()))
		if err != nil || len(rs) == 0 {
			return explain.Route{}, fmt.Errorf("route to %s: %v", dst, err)
		}
		r := explain.Route{Dst: dst, Device: dev(rs[0].LinkIndex), Kind: "direct"}
		if gw, ok := netip.AddrFromSlice(rs[0].Gw); ok {
			r.Gateway, r.Kind = gw.Unmap(), "default"
		}
		if rs[0].Type == unix.RTN_LOCAL {
			r.Kind = "local"
		}
		return r, nil
	}
	return &explain.Live{Mode: "ipvs", Family: model.IPv4, IptablesSave: save, IPSetSave: sets, VirtualServers: vss,
		LocalAddrs: local, Route: route}
}

// checkDrift runs the real `switchyard explain --check` against the running daemon: right after a
// sync it finds no drift; once a real server of the virtual server at vip is deleted by hand, it
// reports exactly that real server as missing and exits non-zero. The daemon's periodic full sync
// may put the real server back before the check reads the kernel; then the edit is made again.
func checkDrift(t *testing.T, vip string) {
	t.Helper()
	if out, err := runCheckCommand(); err != nil || !strings.Contains(out, "no drift") {
		t.Fatalf("explain --check right after a sync: %v\n%s", err, out)
	}
	ih, err := mobyipvs.New("")
	if err != nil {
		t.Fatal(err)
	}
	defer ih.Close()
	ap := netip.MustParseAddrPort(vip)
	svc := &mobyipvs.Service{Address: net.IP(ap.Addr().AsSlice()), Protocol: unix.IPPROTO_TCP, Port: ap.Port(), AddressFamily: unix.AF_INET}
	rs := netip.AddrPortFrom(netip.MustParseAddr(backendIPs[0]), 8080)
	want := fmt.Sprintf("missing:    real server %s weight 1 of tcp %s\n", rs, vip)
	for attempt := 1; ; attempt++ {
		d := &mobyipvs.Destination{Address: net.IP(rs.Addr().AsSlice()), Port: rs.Port(), AddressFamily: unix.AF_INET}
		if err := ih.DelDestination(svc, d); err != nil {
			t.Fatalf("delete real server %s of %s by hand: %v", rs, vip, err)
		}
		out, err := runCheckCommand()
		var exit *exec.ExitError
		if strings.Contains(out, "no drift") && attempt < 3 {
			t.Logf("a sync repaired the hand edit before the check read the kernel; again:\n%s", out)
			waitForVirtualServer(t, vip, len(backendIPs))
			continue
		}
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.HasPrefix(out, want) || strings.Count(out, "missing:") != 1 || strings.Contains(out, "unexpected:") {
			t.Errorf("explain --check after deleting real server %s: %v\n%s\nwant it to start with %q, with no other drift, and exit 1", rs, err, out, want)
		}
		t.Logf("explain --check after the hand edit:\n%s", out)
		return
	}
}

// runCheckCommand runs `switchyard explain --check` and returns its standard output.
func runCheckCommand() (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(switchyardBinary, "explain", "--check", "--metrics-address="+metricsAddr)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}
