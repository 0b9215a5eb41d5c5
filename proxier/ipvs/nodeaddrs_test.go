package ipvs

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestNodeAddressesReadEverySyncPeriod: an ordinary sync reads the node's addresses once half an
// --ipvs-sync-period has passed since the last read, so the periodic sync (one period after the
// previous sync) gives a new node address its NodePorts, and withdraws them from a removed one.
// Syncs in between trust the last read.
func TestNodeAddressesReadEverySyncPeriod(t *testing.T) {
	k := newTestKernel()
	opts := testOptions()
	p := newTestProxier(t, k, opts)
	snap := fixture()
	mustSync(t, p, snap)
	newNodePort := fakeVS(unix.IPPROTO_TCP, "192.168.50.11:30080")
	eth0 := k.links.Links["eth0"]
	eth0.Addrs = append(eth0.Addrs, netip.MustParsePrefix("192.168.50.11/24"))

	k.now = k.now.Add(opts.NodeAddressPeriod/2 - time.Second)
	if st := mustSync(t, p, incremental(snap)); st.NetlinkRoundTrips() != 1 {
		t.Errorf("an ordinary sync within half a sync period: %+v; want only the look-up of %s", st, DummyDevice)
	}
	if _, ok := k.ipvs.Services[newNodePort]; ok {
		t.Errorf("an ordinary sync within half a sync period read the node's addresses")
	}

	k.now = k.now.Add(opts.NodeAddressPeriod/2 + time.Second) // the periodic sync, one period after the first
	mustSync(t, p, incremental(snap))
	if _, ok := k.ipvs.Services[newNodePort]; !ok {
		t.Errorf("no NodePort on the new node address after the periodic sync")
	}
	if !slices.Contains(k.ipset.Members("SY-NODE-PORT"), "192.168.50.11,tcp:30080") {
		t.Errorf("SY-NODE-PORT lacks the new address: %v", k.ipset.Members("SY-NODE-PORT"))
	}

	eth0.Addrs = eth0.Addrs[:1]
	k.now = k.now.Add(opts.NodeAddressPeriod)
	mustSync(t, p, incremental(snap))
	if _, ok := k.ipvs.Services[newNodePort]; ok {
		t.Errorf("NodePort kept on a removed node address after the periodic sync")
	}
	if slices.Contains(k.ipset.Members("SY-NODE-PORT"), "192.168.50.11,tcp:30080") {
		t.Errorf("SY-NODE-PORT keeps the removed address: %v", k.ipset.Members("SY-NODE-PORT"))
	}
}
