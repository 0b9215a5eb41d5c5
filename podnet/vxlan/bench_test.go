package vxlan

import (
	"fmt"
	"net"
	"testing"

	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/podnet/vxlan/vxlantest"
)

// benchPeers returns n peers with pod CIDRs 10.(i/256).(i%256).0/24 shifted out of 10.244.1.0/24 and
// underlay addresses in 192.168.0.0/16 (all inside test namespaces).
func benchPeers(n int) []Peer {
	peers := make([]Peer, n)
	for i := range peers {
		j := i + 2
		peers[i] = Peer{
			Name:     fmt.Sprintf("node-%05d", i),
			PodCIDR:  &net.IPNet{IP: net.IPv4(10, byte(100+j/256), byte(j%256), 0).To4(), Mask: net.CIDRMask(24, 32)},
			VTEPMAC:  net.HardwareAddr{0x0a, 0x58, 0, 0, byte(j >> 8), byte(j)},
			PublicIP: net.IPv4(192, 168, byte(j/250), byte(1+j%250)).To4(),
		}
	}
	return peers
}

type benchNode struct {
	nl    Netlink
	spec  DeviceSpec
	local Local
}

func (b *benchNode) device(tb testing.TB) {
	dev, err := EnsureDevice(b.nl, b.spec)
	if err != nil {
		tb.Fatal(err)
	}
	b.local.DeviceIndex = dev.Index
}

func (b *benchNode) reconcile(tb testing.TB, peers []Peer) Result {
	d, skipped := ComputeDesired(b.local, peers)
	if len(skipped) != 0 {
		tb.Fatalf("skipped peers: %v", skipped[0])
	}
	res, err := Reconcile(b.nl, b.local.DeviceIndex, d)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

func fakeBenchNode(tb testing.TB) *benchNode {
	nl := vxlantest.NewFake()
	under := nl.AddUnderlay("eth0", "192.168.250.1/16", 1500)
	b := &benchNode{nl: nl, spec: DeviceSpec{Name: DeviceName(1), VNI: 1, Port: 8472, UnderlayIndex: under,
		MTU: 1450, MAC: DeriveMAC("bench", 1), Address: net.ParseIP("10.244.1.0")},
		local: Local{PodCIDR: &net.IPNet{IP: net.ParseIP("10.244.1.0").To4(), Mask: net.CIDRMask(24, 32)}}}
	b.device(tb)
	return b
}

// kernelBenchNode is a node namespace with a veth as underlay and the real netlink handle.
func kernelBenchNode(tb testing.TB) *benchNode {
	netnstest.Require(tb)
	ns := netnstest.New(tb, "vxb")
	ns.MustRun(tb, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
	ns.MustRun(tb, "ip", "addr", "add", "192.168.250.1/16", "dev", "eth0")
	ns.MustRun(tb, "ip", "link", "set", "eth0", "up")
	ns.MustRun(tb, "ip", "link", "set", "eth0p", "up")
	h := ns.Netlink(tb)
	under, err := h.LinkByName("eth0")
	if err != nil {
		tb.Fatal(err)
	}
	b := &benchNode{nl: h, spec: DeviceSpec{Name: DeviceName(1), VNI: 1, Port: 8472, UnderlayIndex: under.Attrs().Index,
		UnderlayIP: net.ParseIP("192.168.250.1"), MTU: 1450, MAC: DeriveMAC("bench", 1), Address: net.ParseIP("10.244.1.0")},
		local: Local{PodCIDR: &net.IPNet{IP: net.ParseIP("10.244.1.0").To4(), Mask: net.CIDRMask(24, 32)}}}
	b.device(tb)
	return b
}

// benchConverge measures a node going from no peer entries to n peers' entries (3n writes).
func benchConverge(b *testing.B, node *benchNode, n int) {
	peers := benchPeers(n)
	var writes int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		// Deleting the device drops every entry through it; the new one starts empty.
		if l, err := node.nl.LinkByName(node.spec.Name); err == nil {
			if err := node.nl.LinkDel(l); err != nil {
				b.Fatal(err)
			}
		}
		node.device(b)
		b.StartTimer()
		writes = node.reconcile(b, peers).Writes
	}
	b.ReportMetric(float64(writes), "netlink-writes/op")
}

// benchOnePeerChange measures a sync when one of n peers got a new VTEP MAC.
func benchOnePeerChange(b *testing.B, node *benchNode, n int) {
	peers := benchPeers(n)
	node.reconcile(b, peers)
	total := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		peers[n/2].VTEPMAC = net.HardwareAddr{0x0a, 0x59, 0, 0, byte(i >> 8), byte(i)}
		total += node.reconcile(b, peers).Writes
	}
	b.ReportMetric(float64(total)/float64(b.N), "netlink-writes/op")
}

func BenchmarkConvergeFake(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) { benchConverge(b, fakeBenchNode(b), n) })
	}
}

func BenchmarkConvergeKernel(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) { benchConverge(b, kernelBenchNode(b), n) })
	}
}

func BenchmarkOnePeerChangeFake(b *testing.B) {
	benchOnePeerChange(b, fakeBenchNode(b), 1000)
}

func BenchmarkOnePeerChangeKernel(b *testing.B) {
	benchOnePeerChange(b, kernelBenchNode(b), 1000)
}

// TestKernelAgreesWithFake runs the same scenario against the real kernel and the fake and
// compares what each lists afterwards, so the fake cannot drift from the kernel it stands for.
func TestKernelAgreesWithFake(t *testing.T) {
	kernel := kernelBenchNode(t)
	fake := fakeBenchNode(t)
	peers := benchPeers(5)
	for step, mutate := range []func(){
		func() {},
		func() { peers[1].VTEPMAC = net.HardwareAddr{0x0a, 0x59, 0, 0, 0, 1} },
		func() { peers[2].PublicIP = net.IPv4(192, 168, 7, 7).To4() },
		func() { peers = append(peers[:3], peers[4:]...) },
	} {
		mutate()
		rk := kernel.reconcile(t, peers)
		rf := fake.reconcile(t, peers)
		if rk.Writes != rf.Writes {
			t.Errorf("step %d: kernel needed %d writes, fake %d", step, rk.Writes, rf.Writes)
		}
		if again := kernel.reconcile(t, peers); again.Writes != 0 {
			t.Errorf("step %d: second kernel sync wrote %d", step, again.Writes)
		}
		kc, err := listCurrent(kernel.nl, kernel.local.DeviceIndex)
		if err != nil {
			t.Fatal(err)
		}
		fc, _ := listCurrent(fake.nl, fake.local.DeviceIndex)
		if len(kc.neighs) != len(fc.neighs) || len(kc.fdb) != len(fc.fdb) || len(kc.routes) != len(fc.routes) {
			t.Errorf("step %d: kernel lists %d/%d/%d neigh/fdb/route, fake %d/%d/%d", step,
				len(kc.neighs), len(kc.fdb), len(kc.routes), len(fc.neighs), len(fc.fdb), len(fc.routes))
		}
		for mac, entries := range kc.fdb {
			if len(entries) != 1 || len(fc.fdb[mac]) != 1 || !entries[0].IP.Equal(fc.fdb[mac][0].IP) {
				t.Errorf("step %d: fdb %s kernel %v fake %v", step, mac, entries, fc.fdb[mac])
			}
		}
	}
}
