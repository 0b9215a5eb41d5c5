package nfacct_test

import (
	"errors"
	"testing"

	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/internal/nfacct"
)

// TestNetlinkCountsRulePackets: in a throwaway namespace, a counter made through Netlink counts
// the packets an iptables rule with -m nfacct matched, and survives a second Ensure.
func TestNetlinkCountsRulePackets(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "nfacct")
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	acct, err := nfacct.NewAt(h)
	if err != nil {
		t.Fatalf("nfacct in %s: %v", ns.Name, err)
	}
	defer acct.Close()

	const name = "sy_test_pkts"
	if _, err := acct.Get(name); !errors.Is(err, nfacct.ErrNotFound) {
		t.Fatalf("Get of a missing counter: %v, want ErrNotFound", err)
	}
	if err := acct.Ensure(name); err != nil {
		t.Fatal(err)
	}
	ns.MustRun(t, "iptables", "-A", "OUTPUT", "-d", "127.0.0.2/32", "-p", "icmp", "-m", "nfacct", "--nfacct-name", name)
	ns.MustRun(t, "ping", "-c", "3", "-i", "0.2", "-W", "1", "127.0.0.2")
	got, err := acct.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != name || got.Packets != 3 || got.Bytes != 3*84 {
		t.Fatalf("counter after 3 pings: %+v, want 3 packets of 84 bytes", got)
	}
	if err := acct.Ensure(name); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	if again, err := acct.Get(name); err != nil || again.Packets != 3 {
		t.Fatalf("after a second Ensure: %+v, %v; want the counts kept", again, err)
	}
	if err := acct.Ensure("a-name-longer-than-thirty-one-bytes"); !errors.Is(err, nfacct.ErrBadName) {
		t.Fatalf("Ensure of a too long name: %v, want ErrBadName", err)
	}
}
