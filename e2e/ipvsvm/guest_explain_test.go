//go:build ipvsvm

package ipvsvm

import (
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
