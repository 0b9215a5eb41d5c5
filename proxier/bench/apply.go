package bench

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"k8s.io/klog/v2"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/ipvs"
	"github.com/switchyard/switchyard/proxier/model"
)

// Unavailable is an apply that cannot run on this machine, for a reason that is not a failure of
// the backend (no IPVS in the kernel, no binary for an iptables variant).
type Unavailable struct{ Reason string }

func (u *Unavailable) Error() string { return u.Reason }

// syncer is the part of a backend an apply drives.
type syncer interface{ Sync(*model.Snapshot) error }

// ApplyIptables builds a fresh lab, syncs snap into it with the iptables backend exactly as the
// daemon would on a cold start (staging included), then one endpoint change, and measures connects
// to the first and the last service. connects is the number of samples per service.
func ApplyIptables(snap *model.Snapshot, variant utiliptables.Variant, connects int) (*Applied, error) {
	return apply(snap, variant, connects, func() (syncer, func(), error) {
		real, err := utiliptables.NewExec(model.IPv4, variant)
		if err != nil {
			return nil, nil, &Unavailable{Reason: fmt.Sprintf("iptables %s variant unusable here: %v", variant, err)}
		}
		opts := IptablesOptions()
		opts.RandomFully = real.HasRandomFully()
		p, err := iptables.NewProxier(iptables.Config{Options: opts, IPTables: real, StagedChainsPerRestore: iptables.StagingFor(variant)})
		return p, func() {}, err
	})
}

// ApplyIPVS is ApplyIptables for the IPVS backend. It needs a kernel with IPVS; without one it
// returns an *Unavailable that says so.
func ApplyIPVS(snap *model.Snapshot, variant utiliptables.Variant, connects int) (*Applied, error) {
	return apply(snap, variant, connects, func() (syncer, func(), error) {
		if err := ipvs.CheckKernel(netlink.GenlFamilyGet, ipvs.Modprobe); err != nil {
			klog.V(2).InfoS("No IPVS for the bench", "err", err)
			return nil, nil, &Unavailable{Reason: "this kernel has no IPVS (no IPVS generic-netlink family, and ip_vs cannot be loaded); " +
				"run `switchyard bench --apply` on a node with IPVS, or in a VM that has it: hack/bench-in-vm.sh"}
		}
		real, err := utiliptables.NewExec(model.IPv4, variant)
		if err != nil {
			return nil, nil, &Unavailable{Reason: fmt.Sprintf("iptables %s variant unusable here (IPVS mode needs a few rules): %v", variant, err)}
		}
		opts := IPVSOptions()
		opts.RandomFully = real.HasRandomFully()
		return ipvs.OpenHost(opts, real)
	})
}

// apply builds a fresh lab, opens a backend in its node namespace with open (which also returns
// what closes the backend), and measures it with applyAndProbe.
func apply(snap *model.Snapshot, variant utiliptables.Variant, connects int, open func() (syncer, func(), error)) (*Applied, error) {
	l, err := newLab()
	if err != nil {
		return nil, err
	}
	defer l.Close()
	var p syncer
	var closeBackend func()
	if err := l.inNode(func() (err error) { p, closeBackend, err = open(); return err }); err != nil {
		return nil, err
	}
	defer closeBackend()
	return applyAndProbe(l, p, snap, string(variant), connects)
}

func applyAndProbe(l *lab, p syncer, snap *model.Snapshot, variant string, connects int) (*Applied, error) {
	a := &Applied{Variant: variant}
	timed := func(s *model.Snapshot) (float64, error) {
		var elapsed time.Duration
		err := l.inNode(func() error {
			start := time.Now()
			err := p.Sync(s)
			elapsed = time.Since(start)
			return err
		})
		return elapsed.Seconds(), err
	}
	var err error
	if a.FullSyncSeconds, err = timed(snap); err != nil {
		return nil, fmt.Errorf("first sync: %w", err)
	}
	if a.IncrementalSyncSeconds, err = timed(ChangeOneEndpoint(snap, 1)); err != nil {
		return nil, fmt.Errorf("sync after one endpoint changed: %w", err)
	}
	if connects > 0 {
		first := netip.AddrPortFrom(ClusterIP(0), ServicePort)
		last := netip.AddrPortFrom(ClusterIP(len(snap.Services)-1), ServicePort)
		lat, err := l.connectLatency([]netip.AddrPort{first, last}, connects)
		if err != nil {
			return nil, err
		}
		a.FirstService, a.LastService = lat[0], lat[1]
	}
	return a, nil
}

// connectWarmup connects are made to each target before sampling: the first resolves the
// backend's neighbour entry, which is not what is being measured.
const connectWarmup = 5

// connectLatency connects from the node to each target in turn, samples times each, and
// summarises the TCP handshake times per target. Interleaving the targets exposes them equally to
// whatever else the machine is doing. Every connect is a new flow (a new source port), so its
// first packet walks the NAT rules; the connection is then reset, leaving no TIME_WAIT behind.
func (l *lab) connectLatency(targets []netip.AddrPort, samples int) ([]Latency, error) {
	times := make([][]time.Duration, len(targets))
	err := l.inNode(func() error {
		d := net.Dialer{Timeout: 3 * time.Second}
		for i := 0; i < connectWarmup+samples; i++ {
			for t, addr := range targets {
				start := time.Now()
				c, err := d.Dial("tcp4", addr.String())
				elapsed := time.Since(start)
				if err != nil {
					return fmt.Errorf("connect to service %s through the rules: %w", addr, err)
				}
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
				c.Close()
				if i >= connectWarmup {
					times[t] = append(times[t], elapsed)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Latency, len(targets))
	for t := range targets {
		out[t] = summarize(times[t])
	}
	return out, nil
}

// summarize returns the median and 90th percentile of d (nearest rank).
func summarize(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.5) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Latency{Samples: len(s), MedianSeconds: rank(0.5).Seconds(), P90Seconds: rank(0.9).Seconds()}
}

// IsUnavailable reports whether err means the apply cannot run here rather than that it failed.
func IsUnavailable(err error) (string, bool) {
	var u *Unavailable
	if errors.As(err, &u) {
		return u.Reason, true
	}
	return "", false
}
