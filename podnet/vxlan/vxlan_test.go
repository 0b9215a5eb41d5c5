package vxlan

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/podnet/vxlan/vxlantest"
)

// The fake lives in vxlantest, which cannot import this package; this keeps it fitting the seam.
var _ Netlink = (*vxlantest.Fake)(nil)

func cidr(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func peer(name, podCIDR, vtepMAC, public string) Peer {
	return Peer{Name: name, PodCIDR: cidr(podCIDR), VTEPMAC: mac(vtepMAC), PublicIP: net.ParseIP(public)}
}

// node is one fake node: an underlay and its VXLAN device.
type node struct {
	nl    *vxlantest.Fake
	dev   int
	local Local
}

func newNode(t *testing.T, name, podCIDR string) *node {
	t.Helper()
	nl := vxlantest.NewFake()
	under := nl.AddUnderlay("eth0", "192.168.50.11/24", 1500)
	spec := DeviceSpec{Name: DeviceName(1), VNI: 1, Port: 8472, UnderlayIndex: under, UnderlayIP: net.ParseIP("192.168.50.11"),
		MTU: 1450, MAC: DeriveMAC(name, 1), Address: VTEPIP(cidr(podCIDR))}
	dev, err := EnsureDevice(nl, spec)
	if err != nil {
		t.Fatal(err)
	}
	return &node{nl: nl, dev: dev.Index, local: Local{DeviceIndex: dev.Index, PodCIDR: cidr(podCIDR),
		UnderlayIndex: under, UnderlaySubnet: cidr("192.168.50.0/24")}}
}

func (n *node) sync(t *testing.T, peers ...Peer) (Result, error) {
	t.Helper()
	d, _ := ComputeDesired(n.local, peers)
	return Reconcile(n.nl, n.dev, d)
}

// overlayState is the fake's state without the device lines, which every test shares.
func (n *node) overlayState() []string {
	var out []string
	for _, l := range n.nl.State() {
		if !strings.HasPrefix(l, "link ") && !strings.HasPrefix(l, "addr ") {
			out = append(out, l)
		}
	}
	return out
}

func assertState(t *testing.T, got []string, want ...string) {
	t.Helper()
	if len(want) == 0 {
		want = nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("kernel state:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

var (
	peerB = peer("b", "10.244.2.0/24", "0a:00:00:00:00:02", "192.168.50.12")
	peerC = peer("c", "10.244.3.0/24", "0a:00:00:00:00:03", "192.168.60.13")
)

// stateBC is the overlay state of peers b and c, both reached through the VXLAN device.
func stateBC() []string {
	return []string{
		"fdb 0a:00:00:00:00:02 dst 192.168.50.12 dev syvx.1",
		"fdb 0a:00:00:00:00:03 dst 192.168.60.13 dev syvx.1",
		"neigh 10.244.2.0 lladdr 0a:00:00:00:00:02 dev syvx.1",
		"neigh 10.244.3.0 lladdr 0a:00:00:00:00:03 dev syvx.1",
		"route 10.244.2.0/24 via 10.244.2.0 dev syvx.1 onlink",
		"route 10.244.3.0/24 via 10.244.3.0 dev syvx.1 onlink",
	}
}

func stateB() []string {
	return []string{
		"fdb 0a:00:00:00:00:02 dst 192.168.50.12 dev syvx.1",
		"neigh 10.244.2.0 lladdr 0a:00:00:00:00:02 dev syvx.1",
		"route 10.244.2.0/24 via 10.244.2.0 dev syvx.1 onlink",
	}
}

func TestComputeDesiredSkipsBadPeersWithoutHarmingOthers(t *testing.T) {
	local := Local{DeviceIndex: 7, PodCIDR: cidr("10.244.1.0/24")}
	peers := []Peer{
		peerB,
		{Name: "no-cidr", VTEPMAC: mac("0a:00:00:00:00:09"), PublicIP: net.ParseIP("192.168.50.20")},
		peer("multicast-mac", "10.244.4.0/24", "01:00:5e:00:00:01", "192.168.50.21"),
		peer("loopback-ip", "10.244.5.0/24", "0a:00:00:00:00:05", "127.0.0.1"),
		peer("overlaps-me", "10.244.1.0/25", "0a:00:00:00:00:06", "192.168.50.22"),
		peer("dup1", "10.244.8.0/24", "0a:00:00:00:00:07", "192.168.50.23"),
		peer("dup2", "10.244.8.0/24", "0a:00:00:00:00:08", "192.168.50.24"),
		peer("wide", "10.244.2.0/23", "0a:00:00:00:00:0a", "192.168.50.25"),
	}
	d, skipped := ComputeDesired(local, peers)
	// "wide" overlaps b, so both go: either may be the stale claim.
	if len(d.Peers) != 0 {
		t.Fatalf("want no usable peer, got %+v", d.Peers)
	}
	if len(skipped) != 8 {
		t.Fatalf("want 8 skipped peers, got %d: %+v", len(skipped), skipped)
	}

	d, skipped = ComputeDesired(local, append(peers[:len(peers)-1], peerC))
	var names []string
	for _, p := range d.Peers {
		names = append(names, p.Peer)
	}
	if !reflect.DeepEqual(names, []string{"b", "c"}) || len(skipped) != 6 {
		t.Fatalf("usable peers %v (skipped %+v), want [b c] and 6 skipped", names, skipped)
	}
	b := d.Peers[0]
	if !b.Neighbor.IP.Equal(net.ParseIP("10.244.2.0")) || b.FDB.Dst.String() != "192.168.50.12" ||
		!b.Route.OnLink || b.Route.LinkIndex != 7 || !b.Route.Gw.Equal(net.ParseIP("10.244.2.0")) {
		t.Fatalf("entries for b: %+v %+v %+v", b.Neighbor, b.FDB, b.Route)
	}
}

func TestComputeDesiredDirectRoutingOnlyOnSharedSubnet(t *testing.T) {
	local := Local{DeviceIndex: 7, PodCIDR: cidr("10.244.1.0/24"), DirectRouting: true, UnderlayIndex: 2, UnderlaySubnet: cidr("192.168.50.0/24")}
	d, _ := ComputeDesired(local, []Peer{peerB, peerC})
	b, c := d.Peers[0], d.Peers[1]
	if b.Neighbor != nil || b.FDB != nil || b.Route.OnLink || b.Route.LinkIndex != 2 || b.Route.Gw.String() != "192.168.50.12" {
		t.Fatalf("b shares the underlay subnet and must be routed directly: %+v", b)
	}
	if c.Neighbor == nil || c.FDB == nil || !c.Route.OnLink || c.Route.LinkIndex != 7 {
		t.Fatalf("c is on another subnet and must be encapsulated: %+v", c)
	}
}

func TestReconcileProgramsPeersAndSecondSyncWritesNothing(t *testing.T) {
	n := newNode(t, "a", "10.244.1.0/24")
	if _, err := n.sync(t, peerB, peerC); err != nil {
		t.Fatal(err)
	}
	assertState(t, n.overlayState(), stateBC()...)
	before := n.nl.Writes
	res, err := n.sync(t, peerB, peerC)
	if err != nil || res.Writes != 0 || n.nl.Writes != before {
		t.Fatalf("second sync: err=%v writes=%d (fake counted %d)", err, res.Writes, n.nl.Writes-before)
	}
}

func TestReconcileRemovesDepartedNode(t *testing.T) {
	n := newNode(t, "a", "10.244.1.0/24")
	if _, err := n.sync(t, peerB, peerC); err != nil {
		t.Fatal(err)
	}
	res, err := n.sync(t, peerB)
	if err != nil {
		t.Fatal(err)
	}
	if res.Writes != 3 || res.Removed != 3 {
		t.Fatalf("removing one peer: %d writes, %d removed; want 3 and 3", res.Writes, res.Removed)
	}
	assertState(t, n.overlayState(), stateB()...)
	if _, err := n.sync(t); err != nil {
		t.Fatal(err)
	}
	assertState(t, n.overlayState())
}

func TestReconcileOnePeerChangeTouchesOnlyItsEntries(t *testing.T) {
	n := newNode(t, "a", "10.244.1.0/24")
	if _, err := n.sync(t, peerB, peerC); err != nil {
		t.Fatal(err)
	}
	// b restarted on a machine that lost its device and derived a new MAC.
	b2 := peer("b", "10.244.2.0/24", "0a:00:00:00:00:22", "192.168.50.12")
	res, err := n.sync(t, b2, peerC)
	if err != nil {
		t.Fatal(err)
	}
	// neighbour replaced, new FDB entry, old FDB entry removed; the route is unchanged.
	if res.Writes != 3 {
		t.Fatalf("MAC change cost %d writes, want 3", res.Writes)
	}
	// b moved to another underlay address: only its FDB entry changes.
	b3 := peer("b", "10.244.2.0/24", "0a:00:00:00:00:22", "192.168.50.99")
	if res, err = n.sync(t, b3, peerC); err != nil || res.Writes != 1 {
		t.Fatalf("public IP change: err=%v writes=%d, want 1", err, res.Writes)
	}
	assertState(t, n.overlayState(),
		"fdb 0a:00:00:00:00:03 dst 192.168.60.13 dev syvx.1",
		"fdb 0a:00:00:00:00:22 dst 192.168.50.99 dev syvx.1",
		"neigh 10.244.2.0 lladdr 0a:00:00:00:00:22 dev syvx.1",
		"neigh 10.244.3.0 lladdr 0a:00:00:00:00:03 dev syvx.1",
		"route 10.244.2.0/24 via 10.244.2.0 dev syvx.1 onlink",
		"route 10.244.3.0/24 via 10.244.3.0 dev syvx.1 onlink",
	)
}

func TestReconcileRollsBackPeerWhoseRouteFails(t *testing.T) {
	n := newNode(t, "a", "10.244.1.0/24")
	n.nl.FailOn = func(op, key string) error {
		if op == "RouteReplace" && key == "10.244.3.0/24" {
			return fmt.Errorf("injected: %w", unix.ENOMEM)
		}
		return nil
	}
	res, err := n.sync(t, peerB, peerC)
	if err == nil || !errors.Is(err, unix.ENOMEM) || !reflect.DeepEqual(res.PeersFailed, []string{"c"}) {
		t.Fatalf("want c to fail with ENOMEM, got err=%v failed=%v", err, res.PeersFailed)
	}
	// c's neighbour and FDB entry were rolled back; b is complete.
	assertState(t, n.overlayState(), stateB()...)

	n.nl.FailOn = nil
	if _, err := n.sync(t, peerB, peerC); err != nil {
		t.Fatal(err)
	}
	if got := len(n.overlayState()); got != 6 {
		t.Fatalf("after the failure clears: %d entries, want 6", got)
	}
}

func TestReconcileRollbackRestoresReplacedEntries(t *testing.T) {
	n := newNode(t, "a", "10.244.1.0/24")
	if _, err := n.sync(t, peerB); err != nil {
		t.Fatal(err)
	}
	// b's new MAC cannot be written to the FDB: the neighbour must go back to the old MAC, or b's
	// traffic would resolve to a MAC no FDB entry sends anywhere.
	n.nl.FailOn = func(op, key string) error {
		if op == "NeighSet" && key == "0a:00:00:00:00:22" {
			return fmt.Errorf("injected: %w", unix.ENOSPC)
		}
		return nil
	}
	b2 := peer("b", "10.244.2.0/24", "0a:00:00:00:00:22", "192.168.50.12")
	if _, err := n.sync(t, b2); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("want ENOSPC, got %v", err)
	}
	assertState(t, n.overlayState(), stateB()...)
}

func TestReconcileDoesNotTouchForeignRoutesOrTransientNeighbours(t *testing.T) {
	n := newNode(t, "a", "10.244.1.0/24")
	// A route someone else owns (default protocol) through the underlay must survive our syncs.
	foreign := routeFor(Route{Dst: cidr("172.16.0.0/16"), Gw: net.ParseIP("192.168.50.1"), LinkIndex: n.local.UnderlayIndex})
	foreign.Protocol = 4 // static
	if err := n.nl.RouteReplace(foreign); err != nil {
		t.Fatal(err)
	}
	if _, err := n.sync(t, peerB); err != nil {
		t.Fatal(err)
	}
	if _, err := n.sync(t); err != nil {
		t.Fatal(err)
	}
	assertState(t, n.overlayState(), "route 172.16.0.0/16 via 192.168.50.1 dev eth0")
}

func TestEnsureDeviceKeepsMACAndRecreates(t *testing.T) {
	nl := vxlantest.NewFake()
	under := nl.AddUnderlay("eth0", "192.168.50.11/24", 9000)
	spec := DeviceSpec{Name: DeviceName(1), VNI: 1, Port: 8472, UnderlayIndex: under, UnderlayIP: net.ParseIP("192.168.50.11"),
		MTU: 8950, MAC: DeriveMAC("node-a", 1), Address: net.ParseIP("10.244.1.0")}
	dev, err := EnsureDevice(nl, spec)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"addr 10.244.1.0/32 dev syvx.1",
		fmt.Sprintf("link syvx.1 vni=1 port=8472 underlay=eth0 mtu=8950 mac=%s up=true", DeriveMAC("node-a", 1)),
	}
	assertState(t, nl.State(), want...)
	if !macEqual(dev.HardwareAddr, DeriveMAC("node-a", 1)) || !macEqual(DeriveMAC("node-a", 1), DeriveMAC("node-a", 1)) {
		t.Fatalf("device MAC %s is not the derived one", dev.HardwareAddr)
	}

	// Unchanged: no writes.
	before := nl.Writes
	if _, err := EnsureDevice(nl, spec); err != nil || nl.Writes != before {
		t.Fatalf("ensure on a correct device: err=%v, %d writes", err, nl.Writes-before)
	}

	// A restart that derives a different MAC (say the node was renamed) still keeps the device's MAC.
	spec2 := spec
	spec2.MAC = mac("0a:bb:bb:bb:bb:bb")
	if _, err := EnsureDevice(nl, spec2); err != nil {
		t.Fatal(err)
	}
	assertState(t, nl.State(), want...)

	// Wrong port: recreated, MAC kept. New pod CIDR: address replaced.
	spec3 := spec2
	spec3.Port = 4789
	spec3.Address = net.ParseIP("10.244.9.0")
	if _, err := EnsureDevice(nl, spec3); err != nil {
		t.Fatal(err)
	}
	assertState(t, nl.State(),
		"addr 10.244.9.0/32 dev syvx.1",
		fmt.Sprintf("link syvx.1 vni=1 port=4789 underlay=eth0 mtu=8950 mac=%s up=true", DeriveMAC("node-a", 1)))

	// Deleted behind our back (or lost in a reboot): recreated with the derived MAC.
	nl.DeleteLinkBehindBack(DeviceName(1))
	if _, err := EnsureDevice(nl, spec); err != nil {
		t.Fatal(err)
	}
	assertState(t, nl.State(), want...)

	// An MTU the underlay cannot carry is refused, as the kernel refuses it.
	bad := spec
	bad.MTU = 9000
	nl.DeleteLinkBehindBack(DeviceName(1))
	if _, err := EnsureDevice(nl, bad); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("want EINVAL for an MTU above underlay-50, got %v", err)
	}
}

func TestDeletedDeviceIsReprogrammed(t *testing.T) {
	n := newNode(t, "a", "10.244.1.0/24")
	if _, err := n.sync(t, peerB); err != nil {
		t.Fatal(err)
	}
	n.nl.DeleteLinkBehindBack(DeviceName(1))
	assertState(t, n.overlayState())
	under, _ := n.nl.LinkByName("eth0")
	dev, err := EnsureDevice(n.nl, DeviceSpec{Name: DeviceName(1), VNI: 1, Port: 8472, UnderlayIndex: under.Attrs().Index,
		UnderlayIP: net.ParseIP("192.168.50.11"), MTU: 1450, MAC: DeriveMAC("a", 1), Address: net.ParseIP("10.244.1.0")})
	if err != nil {
		t.Fatal(err)
	}
	n.dev, n.local.DeviceIndex = dev.Index, dev.Index
	if _, err := n.sync(t, peerB); err != nil {
		t.Fatal(err)
	}
	assertState(t, n.overlayState(), stateB()...)
}

func TestDeriveMACIsStableLocalUnicast(t *testing.T) {
	a, b := DeriveMAC("node-a", 1), DeriveMAC("node-a", 1)
	if !macEqual(a, b) || macEqual(a, DeriveMAC("node-b", 1)) || macEqual(a, DeriveMAC("node-a", 2)) {
		t.Fatalf("derived MACs: %s %s %s", a, DeriveMAC("node-b", 1), DeriveMAC("node-a", 2))
	}
	if a[0]&0x01 != 0 || a[0]&0x02 == 0 {
		t.Fatalf("%s must be locally administered unicast", a)
	}
	if len(DeviceName(16777215)) > 15 {
		t.Fatalf("device name %q too long", DeviceName(16777215))
	}
}

func TestReconcileDirectRoutingUsesUnderlay(t *testing.T) {
	n := newNode(t, "a", "10.244.1.0/24")
	n.local.DirectRouting = true
	if _, err := n.sync(t, peerB, peerC); err != nil {
		t.Fatal(err)
	}
	assertState(t, n.overlayState(),
		"fdb 0a:00:00:00:00:03 dst 192.168.60.13 dev syvx.1",
		"neigh 10.244.3.0 lladdr 0a:00:00:00:00:03 dev syvx.1",
		"route 10.244.2.0/24 via 192.168.50.12 dev eth0",
		"route 10.244.3.0/24 via 10.244.3.0 dev syvx.1 onlink",
	)
	// Switching direct routing off moves b back onto the overlay and leaves nothing stale.
	n.local.DirectRouting = false
	if _, err := n.sync(t, peerB, peerC); err != nil {
		t.Fatal(err)
	}
	assertState(t, n.overlayState(), stateBC()...)
}
