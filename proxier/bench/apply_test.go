package bench

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/ipvs"
)

func splitLines(s string) []string { return strings.Split(s, "\n") }

// TestLabNeedsTheRules shows a connect to a ClusterIP in the lab only succeeds through a backend's
// rules: without them the packet goes to the backend namespace, which does not hold the address.
func TestLabNeedsTheRules(t *testing.T) {
	netnstest.Require(t)
	l, err := newLab()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// An endpoint address answers directly...
	if _, err := l.connectLatency([]netip.AddrPort{netip.AddrPortFrom(endpointIP(7), TargetPort)}, 1); err != nil {
		t.Fatalf("endpoint not reachable in the lab: %v", err)
	}
	// ...a ClusterIP does not.
	err = l.inNode(func() error {
		c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(ClusterIP(0), ServicePort).String(), 500*time.Millisecond)
		if err == nil {
			c.Close()
			return errors.New("connected to a ClusterIP with no rules in place")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestApplyIptables(t *testing.T) {
	netnstest.Require(t)
	snap := mustSynthesize(t, Workload{Services: 300, EndpointsPerService: 3, NodePortShare: 0.2})
	for _, v := range []utiliptables.Variant{utiliptables.VariantNFT, utiliptables.VariantLegacy} {
		t.Run(string(v), func(t *testing.T) {
			a, err := ApplyIptables(snap, v, 20)
			if err != nil {
				t.Fatal(err)
			}
			if a.Variant != string(v) || a.FullSyncSeconds <= 0 || a.IncrementalSyncSeconds <= 0 {
				t.Errorf("apply figures missing: %+v", a)
			}
			for _, l := range []Latency{a.FirstService, a.LastService} {
				if l.Samples != 20 || l.MedianSeconds <= 0 || l.P90Seconds < l.MedianSeconds {
					t.Errorf("connect latency %+v: want 20 samples, 0 < median <= p90", l)
				}
			}
		})
	}
}

// TestApplyIPVS applies where the kernel has IPVS (the VM harness) and otherwise expects the
// reason to be reported, not a failure.
func TestApplyIPVS(t *testing.T) {
	netnstest.Require(t)
	snap := mustSynthesize(t, Workload{Services: 50, EndpointsPerService: 3, NodePortShare: 0.2})
	a, err := ApplyIPVS(snap, utiliptables.VariantNFT, 10)
	kernelErr := ipvs.CheckKernel(netlink.GenlFamilyGet, ipvs.Modprobe)
	if kernelErr != nil && os.Getenv("SWITCHYARD_IPVS_KERNEL") == "1" {
		// make test-ipvs runs this in the VM: there, a missing IPVS is a broken harness, not a pass.
		t.Fatalf("SWITCHYARD_IPVS_KERNEL=1 but the kernel has no IPVS: %v", kernelErr)
	}
	if kernelErr != nil {
		reason, ok := IsUnavailable(err)
		if !ok || !strings.Contains(reason, "no IPVS") {
			t.Fatalf("kernel without IPVS (%v): got %v, want an Unavailable that says so", kernelErr, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if a.FullSyncSeconds <= 0 || a.FirstService.Samples != 10 || a.LastService.Samples != 10 {
		t.Errorf("apply figures missing: %+v", a)
	}
}
