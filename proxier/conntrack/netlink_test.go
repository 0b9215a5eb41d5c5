package conntrack_test

import (
	"errors"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/model"
)

// TestNetlinkReconcile creates real conntrack entries inside a throwaway namespace (UDP to a
// ClusterIP DNATed to two loopback ports by source port, one not DNATed at all, one to an address no
// service has) and checks, with the conntrack tool, that the reconciler over netlink deletes exactly
// the entries the model no longer justifies: first with one endpoint, then scaled to zero.
func TestNetlinkReconcile(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "ct")
	ns.MustRun(t, "ip", "route", "add", "10.96.0.0/16", "dev", "lo")
	ns.MustRun(t, "iptables", "-t", "nat", "-A", "OUTPUT", "-d", "10.96.0.53/32", "-p", "udp", "--sport", "40001", "-j", "DNAT", "--to-destination", "127.0.0.1:5001")
	ns.MustRun(t, "iptables", "-t", "nat", "-A", "OUTPUT", "-d", "10.96.0.53/32", "-p", "udp", "--sport", "40002", "-j", "DNAT", "--to-destination", "127.0.0.1:5002")

	send := func(sport int, dst string) {
		t.Helper()
		err := ns.Do(func() error {
			// The addresses are routed via lo, so the client binds a loopback source.
			c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sport}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("x"))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	send(40001, "10.96.0.53:53") // DNATed to :5001, which is no endpoint
	send(40002, "10.96.0.53:53") // DNATed to :5002, the endpoint
	send(40003, "10.96.0.53:53") // never DNATed
	send(40004, "10.96.1.1:53")  // to an address no service has

	// sports lists, by the conntrack tool, the source ports of the UDP entries from 127.0.0.1.
	sportRE := regexp.MustCompile(`^udp .*?src=127\.0\.0\.1 dst=\S+ sport=(\d+)`)
	sports := func() []string {
		t.Helper()
		var out []string
		for _, line := range strings.Split(ns.MustRun(t, "conntrack", "-L", "-p", "udp"), "\n") {
			if m := sportRE.FindStringSubmatch(line); m != nil {
				out = append(out, m[1])
			}
		}
		slices.Sort(out)
		return out
	}
	if got := sports(); !slices.Equal(got, []string{"40001", "40002", "40003", "40004"}) {
		t.Fatalf("entries before reconciling, by source port: %v", got)
	}

	svc := &model.ServicePort{Name: model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "kube-system", Name: "dns"}},
		Protocol: model.UDP, Port: 53, ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.53")}}
	snap := model.NewSnapshot()
	snap.Services[svc.Name] = svc
	snap.Endpoints[svc.Name] = []model.Endpoint{{IP: netip.MustParseAddr("127.0.0.1"), Port: 5002, Ready: true, Serving: true}}

	r := conntrack.NewReconciler(&conntrack.Netlink{Handle: ns.Netlink(t, unix.NETLINK_NETFILTER)}, model.IPv4)
	n, err := r.Reconcile(snap)
	if err != nil {
		t.Fatal(err)
	}
	if got := sports(); n != 2 || !slices.Equal(got, []string{"40002", "40004"}) {
		t.Errorf("deleted %d; entries left by source port %v, want 40002 and 40004", n, got)
	}

	snap.Endpoints[svc.Name] = nil
	snap.Changed[svc.Name.ServiceKey] = struct{}{}
	if n, err = r.Reconcile(snap); err != nil {
		t.Fatal(err)
	}
	if got := sports(); n != 1 || !slices.Equal(got, []string{"40004"}) {
		t.Errorf("scaled to zero: deleted %d; entries left by source port %v, want 40004", n, got)
	}
}

// BenchmarkNetlink50k lists, and reconciles, a real table of 50k UDP entries inside a throwaway
// namespace: bigTable(10000)'s flows, created through netlink, of which 1000 are stale.
func BenchmarkNetlink50k(b *testing.B) {
	netnstest.Require(b)
	ns := netnstest.New(b, "ctbench")
	h := ns.Netlink(b, unix.NETLINK_NETFILTER)
	snap, flows := bigTable(10000)
	stale := conntrack.Stale(snap, model.IPv4, flows)
	create := func(fs []conntrack.Flow) {
		b.Helper()
		for _, f := range fs {
			ip := func(a netip.AddrPort) net.IP { return net.IP(a.Addr().AsSlice()) }
			err := h.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 600,
				Forward: netlink.IPTuple{Protocol: unix.IPPROTO_UDP, SrcIP: ip(f.OrigSrc), SrcPort: f.OrigSrc.Port(), DstIP: ip(f.OrigDst), DstPort: f.OrigDst.Port()},
				Reverse: netlink.IPTuple{Protocol: unix.IPPROTO_UDP, SrcIP: ip(f.ReplySrc), SrcPort: f.ReplySrc.Port(), DstIP: ip(f.ReplyDst), DstPort: f.ReplyDst.Port()}})
			if err != nil && !errors.Is(err, unix.EEXIST) {
				b.Fatalf("create %v: %v", f, err)
			}
		}
	}
	create(flows)
	table := &conntrack.Netlink{Handle: h}
	b.Run("list", func(b *testing.B) {
		for b.Loop() {
			if got, err := table.List(model.IPv4); err != nil || len(got) != len(flows) {
				b.Fatalf("listed %d, %v; want %d", len(got), err, len(flows))
			}
		}
	})
	b.Run("reconcile", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			create(stale)
			r := conntrack.NewReconciler(table, model.IPv4)
			b.StartTimer()
			if n, err := r.Reconcile(snap); err != nil || n != len(stale) {
				b.Fatalf("deleted %d, %v; want %d", n, err, len(stale))
			}
		}
	})
}
