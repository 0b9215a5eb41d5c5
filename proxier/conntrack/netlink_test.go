package conntrack

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/model"
)

// TestNetlinkDeletesOnlyMatchingFlows creates real conntrack entries inside a throwaway namespace
// (UDP to a ClusterIP DNATed to two loopback ports, one not DNATed at all) and checks that the
// netlink deleter removes exactly the entries the filters select.
func TestNetlinkDeletesOnlyMatchingFlows(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "ct")
	ns.MustRun(t, "ip", "route", "add", "10.96.0.0/16", "dev", "lo")
	ns.MustRun(t, "iptables", "-t", "nat", "-A", "OUTPUT", "-d", "10.96.0.53/32", "-p", "udp", "--sport", "40001", "-j", "DNAT", "--to-destination", "127.0.0.1:5001")
	ns.MustRun(t, "iptables", "-t", "nat", "-A", "OUTPUT", "-d", "10.96.0.53/32", "-p", "udp", "--sport", "40002", "-j", "DNAT", "--to-destination", "127.0.0.1:5002")

	send := func(sport int, dst string) {
		t.Helper()
		err := ns.Do(func() error {
			// The ClusterIP is routed via lo, so the client binds a loopback source.
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
	send(40001, "10.96.0.53:53") // DNATed to :5001
	send(40002, "10.96.0.53:53") // DNATed to :5002
	send(40003, "10.96.0.53:53") // not DNATed

	nh := ns.Netlink(t, unix.NETLINK_NETFILTER)
	flowsTo := func() map[uint16]bool {
		t.Helper()
		flows, err := nh.ConntrackTableList(netlink.ConntrackTable, netlink.InetFamily(unix.AF_INET))
		if err != nil {
			t.Fatal(err)
		}
		out := map[uint16]bool{}
		for _, f := range flows {
			if f.Forward.Protocol == unix.IPPROTO_UDP && f.Forward.DstIP.Equal(net.IPv4(10, 96, 0, 53)) {
				out[f.Forward.SrcPort] = true
			}
		}
		return out
	}
	if got := flowsTo(); !got[40001] || !got[40002] || !got[40003] {
		t.Fatalf("expected three flows to the ClusterIP, got source ports %v", got)
	}

	d := &Netlink{Handle: nh}
	vipPort := netip.MustParseAddrPort("10.96.0.53:53")
	n, err := d.DeleteUDP(model.IPv4, []Filter{
		{OrigDstIP: vipPort.Addr(), OrigDstPort: 53, ReplySrcIP: netip.MustParseAddr("127.0.0.1"), ReplySrcPort: 5001}, // endpoint gone
		{OrigDstIP: vipPort.Addr(), OrigDstPort: 53, ReplySrcIP: vipPort.Addr(), ReplySrcPort: 53},                     // never DNATed
	})
	if err != nil {
		t.Fatal(err)
	}
	got := flowsTo()
	if n != 2 || got[40001] || got[40003] || !got[40002] {
		t.Errorf("deleted %d; flows left by source port %v, want only 40002", n, got)
	}
}
