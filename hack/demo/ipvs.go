package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"time"

	"k8s.io/client-go/informers"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/proxier/conntrack/conntracktest"
	"github.com/switchyard/switchyard/proxier/ipvs"
	"github.com/switchyard/switchyard/proxier/ipvs/ipset/ipsettest"
	"github.com/switchyard/switchyard/proxier/ipvs/ipvstest"
	"github.com/switchyard/switchyard/watcher"
)

// ipvsRender is what IPVS mode would program on node 1 for the same cluster state.
//
// This machine's kernel has no IPVS, so the nodes cannot run --proxy-mode=ipvs here. What the demo
// can show truthfully is the IPVS backend's own answer: it reads the cluster through Switchyard's
// watcher, as node 1's switchyard does, and syncs proxier/ipvs into its stateful fakes (the ones its
// tests hold to the real kernel's behaviour). The counts are what that code would write; they are
// labelled as such in the report, never as kernel state.
type ipvsRender struct {
	node           string
	kernelHasIPVS  bool
	virtualServers int
	realServers    int
	iptablesRules  int
	ipsetEntries   int
	dummyAddrs     int
	err            error
}

// renderIPVS renders for node 1, whose devices and addresses are links (device -> address/prefix).
func renderIPVS(ctx context.Context, c *cluster.Cluster, links map[string][]string) ipvsRender {
	r := ipvsRender{node: c.Node(1).Name}
	_, err := os.Stat("/proc/net/ip_vs")
	r.kernelHasIPVS = err == nil

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nodeFactory := informers.NewSharedInformerFactory(c.Client, 0)
	w, err := watcher.New(c.Client, nodeFactory, watcher.Options{NodeName: r.node})
	if err != nil {
		r.err = err
		return r
	}
	w.Start(ctx)
	if !w.WaitForCacheSync(ctx) {
		r.err = fmt.Errorf("the watcher's caches did not sync: %w", ctx.Err())
		return r
	}
	snap, _ := w.Snapshot(true)
	if snap == nil {
		r.err = fmt.Errorf("no snapshot from the watcher")
		return r
	}

	// The fake node has node 1's devices and addresses: NodePorts get a virtual server on each.
	fakeLinks := ipvstest.NewFakeLinks(links)
	sets := ipsettest.NewFake()
	ipt := iptablestest.NewFake()
	ipt.SetExists = func(name string) bool { _, ok := sets.Sets[name]; return ok }
	fipvs := ipvstest.NewFakeIPVS()
	opts := ipvs.DefaultOptions()
	opts.ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}
	p, err := ipvs.New(opts, ipvs.Deps{IPVS: fipvs, Links: fakeLinks, Ipset: sets, Iptables: ipt,
		Sysctl: ipvstest.NewFakeSysctl(), Conntrack: &conntracktest.Fake{}})
	if err != nil {
		r.err = fmt.Errorf("IPVS backend: %w", err)
		return r
	}
	if err := p.Sync(snap); err != nil {
		r.err = fmt.Errorf("IPVS sync into the fakes: %w", err)
		return r
	}
	r.virtualServers = len(fipvs.Services)
	for _, vs := range fipvs.Services {
		r.realServers += len(vs.Dests)
	}
	r.iptablesRules = ipt.RuleCount()
	for _, s := range sets.Sets {
		r.ipsetEntries += len(s.Entries)
	}
	r.dummyAddrs = len(fakeLinks.AddrsOf("kube-ipvs0"))
	return r
}
