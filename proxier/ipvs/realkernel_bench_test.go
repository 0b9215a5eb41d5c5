package ipvs

import (
	"fmt"
	"path/filepath"
	"testing"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/conntrack"
)

// realProxier builds a Proxier over the real kernel inside a fresh namespace; everything it opens is
// closed, and the namespace deleted, when b ends.
func realProxier(b *testing.B) *Proxier {
	b.Helper()
	node := netnstest.New(b, "bench")
	netnstest.Veth(b, node, "eth0", "192.168.50.10/24", netnstest.New(b, "peer"), "eth0", "192.168.50.2/24")
	nl := node.Netlink(b, unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
	h, err := mobyipvs.New(filepath.Join("/run/netns", node.Name))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(h.Close)
	p, err := New(testOptions(), Deps{IPVS: h, Links: nl, Ipset: nl, Iptables: nsIptables(b, node), Sysctl: nsSysctl{node},
		Conntrack: &conntrack.Netlink{Handle: nl}})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkRealKernel measures plan+apply against the kernel's IPVS in hack/vm's guest (software
// emulation: compare figures only between runs in the same VM):
//
//	hack/vm/run.sh --env SWITCHYARD_PRIVILEGED=1 --env SWITCHYARD_IPVS_KERNEL=1 ./ipvs.test \
//	    -test.run XXX -test.bench RealKernel -test.benchtime 1x
func BenchmarkRealKernel(b *testing.B) {
	if testing.Short() {
		b.Skip("short")
	}
	requireIPVSKernelB(b)
	for _, n := range scales {
		b.Run(fmt.Sprintf("full/services=%d", n), func(b *testing.B) { benchFirstSync(b, n, realProxier) })
		b.Run(fmt.Sprintf("one-endpoint/services=%d", n), func(b *testing.B) { benchOneEndpointChange(b, n, realProxier) })
		b.Run(fmt.Sprintf("unchanged-full/services=%d", n), func(b *testing.B) {
			st := benchUnchangedFullResync(b, n, realProxier)
			b.ReportMetric(float64(st.Writes()), "writes/sync")
		})
	}
}
