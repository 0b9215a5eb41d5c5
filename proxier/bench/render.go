package bench

import (
	"net/netip"
	"runtime"
	"time"

	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/ipvs"
	"github.com/switchyard/switchyard/proxier/model"
)

// NodeIP is the node's only address, in the lab and in renders: NodePorts listen on it.
var NodeIP = netip.MustParseAddr("192.168.0.1")

// IptablesOptions are the iptables backend's options for the synthetic node: kube-proxy's defaults
// with the cluster CIDR as the local-traffic detector, as a kubeadm cluster runs it.
func IptablesOptions() iptables.Options {
	o := iptables.DefaultOptions(model.IPv4)
	o.LocalDetector.ClusterCIDRs = []netip.Prefix{EndpointCIDR}
	o.NodeIPs = []netip.Addr{NodeIP}
	o.RandomFully = true
	return o
}

// IPVSOptions are the IPVS backend's options for the synthetic node, kube-proxy's defaults likewise.
func IPVSOptions() ipvs.Options {
	o := ipvs.DefaultOptions()
	o.ClusterCIDRs = []netip.Prefix{EndpointCIDR}
	o.RandomFully = true
	return o
}

// measure runs fn once and returns its wall time and what it allocated. Collecting garbage first
// keeps the previous measurement's leftovers out of this one.
func measure(fn func() error) (seconds float64, bytes, allocs uint64, err error) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	err = fn()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	return elapsed.Seconds(), after.TotalAlloc - before.TotalAlloc, after.Mallocs - before.Mallocs, err
}

// RenderIptables renders snap from scratch with the iptables backend's renderer and reports the
// ruleset's size: the rules and chains the restore input leaves behind plus the fixed jumps from
// the built-in chains.
func RenderIptables(snap *model.Snapshot, w Workload) (Result, error) {
	res := Result{Backend: BackendIptables, Services: w.Services, EndpointsPerService: w.EndpointsPerService}
	var out *iptables.Rendered
	var err error
	res.RenderSeconds, res.RenderAllocBytes, res.RenderAllocs, err = measure(func() error {
		out, err = iptables.RenderFull(snap, IptablesOptions())
		return err
	})
	if err != nil {
		return res, err
	}
	res.Rules, res.Chains = map[string]int{}, map[string]int{}
	for t, n := range out.RulesTotal {
		res.Rules[t] += n
	}
	for t, n := range iptables.BuiltinJumps() {
		res.Rules[t] += n
	}
	for t, n := range out.ChainsTotal {
		res.Chains[t] = n
	}
	return res, nil
}

// RenderIPVS renders snap with the IPVS backend's render code for a node whose only address is
// NodeIP and reports the size of what it would program.
func RenderIPVS(snap *model.Snapshot, w Workload) (Result, error) {
	res := Result{Backend: BackendIPVS, Services: w.Services, EndpointsPerService: w.EndpointsPerService}
	var f ipvs.Footprint
	var err error
	res.RenderSeconds, res.RenderAllocBytes, res.RenderAllocs, err = measure(func() error {
		f, err = ipvs.RenderFootprint(snap, IPVSOptions(), []netip.Addr{NodeIP})
		return err
	})
	if err != nil {
		return res, err
	}
	res.Rules, res.Chains = f.IptablesRules, f.IptablesChains
	res.VirtualServers, res.RealServers, res.IpsetEntries = f.VirtualServers, f.RealServers, f.IpsetEntriesTotal()
	return res, nil
}
