package iptables_test

// Real-kernel explain: the real Proxier programs a lab node namespace (newLab), iptables-save reads
// the rules back from that namespace, the node's own addresses and routing table answer the walk's
// questions through netlink, and what Explain says a packet does is compared with where real
// connections went and which source the backends saw.

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/model"
)

// liveFromNamespace gathers explain.Live from a lab node namespace, as the command does on a node.
func liveFromNamespace(t *testing.T, node *netnstest.NS, variant utiliptables.Variant, snap *model.Snapshot) *explain.Live {
	t.Helper()
	nsh, err := node.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	ipt, err := utiliptables.NewExec(model.IPv4, variant, utiliptables.InNamespace(nsh))
	if err != nil {
		t.Fatal(err)
	}
	save, err := ipt.SaveAll()
	if err != nil {
		t.Fatalf("iptables-save in %s: %v", node.Name, err)
	}
	h := node.Netlink(t, unix.NETLINK_ROUTE)
	local := map[netip.Addr]string{}
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		link, err := h.LinkByIndex(a.LinkIndex)
		if err != nil {
			t.Fatal(err)
		}
		if _, seen := local[ip]; !seen {
			local[ip] = link.Attrs().Name
		}
	}
	route := func(dst netip.Addr) (explain.Route, error) {
		rs, err := h.RouteGet(dst.AsSlice())
		if err != nil || len(rs) == 0 {
			return explain.Route{}, fmt.Errorf("route get %s: %v", dst, err)
		}
		r := rs[0]
		link, err := h.LinkByIndex(r.LinkIndex)
		if err != nil {
			return explain.Route{}, err
		}
		out := explain.Route{Dst: dst, Device: link.Attrs().Name, Kind: "direct"}
		out.Src, _ = netip.AddrFromSlice(r.Src.To4())
		if r.Gw != nil {
			out.Gateway, _ = netip.AddrFromSlice(r.Gw.To4())
			out.Kind = "default"
		}
		if r.Type == unix.RTN_LOCAL {
			out.Kind = "local"
		}
		return out, nil
	}
	return &explain.Live{Mode: "iptables", Family: model.IPv4, IptablesSave: save, LocalAddrs: local, Route: route, Model: debugModelOf(snap)}
}

func TestRealKernelExplain(t *testing.T) {
	netnstest.Require(t)
	variant := utiliptables.VariantNFT
	l := newLab(t)
	var p *iptables.Proxier
	snap := labSnapshot("b1", "b2", "b3")
	err := l.node.Do(func() error {
		ipt, err := utiliptables.NewExec(model.IPv4, variant)
		if err != nil {
			return err
		}
		opts := traceOptions()
		opts.RandomFully = ipt.HasRandomFully()
		if p, err = iptables.NewProxier(iptables.Config{Options: opts, IPTables: ipt}); err != nil {
			return err
		}
		return p.Sync(snap)
	})
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	backendOf := map[netip.Addr]string{}
	for _, b := range []string{"b1", "b2", "b3"} {
		backendOf[netip.MustParseAddr(l.podIPs[b])] = b
	}

	// compare explains pkt and checks it against n real connections from ns: the endpoints the
	// report gives (each 1/3 likely) are exactly the backends that answered, and the source each
	// backend saw is the report's masquerade address, or the client's own when not masqueraded.
	compare := func(t *testing.T, live *explain.Live, ns *netnstest.NS, pkt explain.Packet, n int) {
		t.Helper()
		rep := explainPacket(t, live, pkt)
		t.Logf("explain says:\n%s", rep.Text())
		want := map[string]netip.Addr{}
		for _, o := range rep.Outcomes {
			if o.Verdict != explain.Delivered || math.Abs(o.Probability-1.0/3) > 1e-6 {
				t.Fatalf("want three equally likely deliveries:\n%s", rep.Text())
			}
			src := pkt.Src.Addr()
			if o.Masquerade.IsValid() {
				src = o.Masquerade
			}
			want[backendOf[o.Endpoint.Addr()]] = src
		}
		counts, peers := askMany(t, ns, pkt.Proto, pkt.Dst.String(), n)
		names := slices.Sorted(func(yield func(string) bool) {
			for b := range want {
				if !yield(b) {
					return
				}
			}
		})
		expect(t, "explained "+pkt.Dst.String(), counts, peers, names, func(b string) string { return want[b].String() })
	}

	live := liveFromNamespace(t, l.node, variant, snap)
	t.Run("pod to ClusterIP", func(t *testing.T) {
		compare(t, live, l.pods["pc"], explain.Packet{Src: netip.AddrPortFrom(netip.MustParseAddr(l.podIPs["pc"]), 0),
			Dst: netip.MustParseAddrPort("10.96.0.10:80"), Proto: "tcp", From: explain.FromPod}, tries)
	})
	t.Run("outside to NodePort", func(t *testing.T) {
		compare(t, live, l.client, explain.Packet{Src: netip.MustParseAddrPort(labClientIP + ":0"),
			Dst: netip.MustParseAddrPort(labNodeIP + ":30080"), Proto: "tcp", From: explain.FromExternal}, tries)
	})
	t.Run("another agent's rule ahead of the jump", func(t *testing.T) {
		// xt_length is in every kernel the lab runs on; the tracer does not know it.
		l.node.MustRun(t, "iptables-"+string(variant), "-t", "nat", "-I", "PREROUTING", "1", "-m", "length", "--length", "1:65535", "-j", "RETURN")
		live := liveFromNamespace(t, l.node, variant, snap)
		rep := explainPacket(t, live, explain.Packet{Src: netip.MustParseAddrPort(l.podIPs["pc"] + ":0"),
			Dst: netip.MustParseAddrPort("10.96.0.10:80"), Proto: "tcp", From: explain.FromPod})
		if !strings.HasPrefix(rep.Unexplained, "cannot explain past this rule: -A PREROUTING -m length --length 1:65535 -j RETURN") {
			t.Fatalf("want the walk to stop at the length rule:\n%s", rep.Text())
		}
	})
}
