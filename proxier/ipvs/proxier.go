package ipvs

import (
	"github.com/switchyard/switchyard/internal/sysctl"

	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"time"

	mobyipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/ipvs/ipset"
	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"
)

// Deps are the kernel seams. NewHost fills them with the real implementations.
type Deps struct {
	IPVS      IPVS
	Links     Links
	Ipset     ipset.Netlink
	Iptables  utiliptables.Interface
	Sysctl    sysctl.Interface
	Conntrack conntrack.Table  // reconciled with the model after each sync; nil means netlink in this namespace
	Now       func() time.Time // nil means time.Now
}

// Proxier is the IPVS backend for one IP family.
type Proxier struct {
	opts      Options
	ipvs      IPVS
	links     Links
	ipset     ipset.Netlink
	iptables  utiliptables.Interface
	conntrack *conntrack.Reconciler
	now       func() time.Time
	stats     SyncStats // of the sync in progress; the wrappers count into it

	desired      *desiredState
	applied      map[vsKey]*appliedVS
	appliedAddrs map[netip.Addr]struct{}
	appliedSets  [numSetKinds]map[ipset.Entry]struct{}
	terminating  map[vsKey]map[netip.AddrPort]terminatingDest
	dummy        netlink.Link
	nodeAddrs    nodeAddrs
	nodeAddrsAt  time.Time // when nodeAddrs were read
	// syncedNodeAddrs is nodeAddrs for ExpectedState, which the debug server calls concurrently.
	syncedNodeAddrs atomic.Pointer[nodeAddrs]
	needFull        bool
	lastStats       SyncStats
}

var _ model.Backend = (*Proxier)(nil)

// New builds a Proxier over deps after validating opts and setting the sysctls and IPVS timeouts IPVS
// mode needs. It does not touch IPVS tables, addresses, ipsets or iptables: the first Sync does.
func New(opts Options, deps Deps) (*Proxier, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	p := newProxier(opts, deps)
	if err := setSysctls(deps.Sysctl, &opts); err != nil {
		return nil, err
	}
	if opts.TCPTimeout > 0 || opts.TCPFinTimeout > 0 || opts.UDPTimeout > 0 {
		cfg := &mobyipvs.Config{TimeoutTCP: opts.TCPTimeout, TimeoutTCPFin: opts.TCPFinTimeout, TimeoutUDP: opts.UDPTimeout}
		if err := p.ipvs.SetConfig(cfg); err != nil {
			return nil, fmt.Errorf("set IPVS timeouts (tcp %v, tcpfin %v, udp %v): %w", opts.TCPTimeout, opts.TCPFinTimeout, opts.UDPTimeout, err)
		}
	}
	return p, nil
}

// NewCleaner builds a Proxier only for Cleanup, without touching sysctls or timeouts. deps.IPVS may
// be nil on a kernel without IPVS: there can be no virtual servers to remove, but ipsets, iptables
// chains and kube-ipvs0 addresses can still be left over.
func NewCleaner(opts Options, deps Deps) *Proxier {
	return newProxier(opts, deps)
}

// CleanupHost removes IPVS mode's state from the caller's network namespace (--cleanup, or starting
// in iptables mode). It needs no IPVS in the kernel and loads no module.
func CleanupHost(opts Options, ipt utiliptables.Interface) error {
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("open netlink handle: %w", err)
	}
	defer nl.Close()
	deps := Deps{Links: nl, Ipset: nl, Iptables: ipt}
	if CheckKernel(netlink.GenlFamilyGet, nil) == nil {
		h, err := mobyipvs.New("")
		if err != nil {
			return fmt.Errorf("open IPVS netlink socket: %w", err)
		}
		defer h.Close()
		deps.IPVS = h
	}
	return NewCleaner(opts, deps).Cleanup()
}

func newProxier(opts Options, deps Deps) *Proxier {
	p := &Proxier{
		opts:        opts,
		now:         deps.Now,
		desired:     newDesiredState(),
		applied:     map[vsKey]*appliedVS{},
		terminating: map[vsKey]map[netip.AddrPort]terminatingDest{},
		needFull:    true,
	}
	if deps.IPVS != nil {
		p.ipvs = countingIPVS{deps.IPVS, &p.stats}
	}
	p.links = countingLinks{deps.Links, &p.stats}
	p.ipset = countingIpset{deps.Ipset, &p.stats}
	p.iptables = countingIptables{deps.Iptables, &p.stats}
	if p.now == nil {
		p.now = time.Now
	}
	table := deps.Conntrack
	if table == nil {
		table = &conntrack.Netlink{}
	}
	p.conntrack = conntrack.NewReconciler(table, opts.Family)
	return p
}

// NewHost checks the kernel and builds a Proxier over the host's real kernel interfaces, in the
// caller's network namespace. ipt is the node's iptables of the family and variant kubelet uses
// (internal/iptables.NewExec).
func NewHost(opts Options, ipt utiliptables.Interface) (*Proxier, error) {
	p, _, err := OpenHost(opts, ipt)
	return p, err
}

// OpenHost is NewHost that also returns a function closing the Proxier's netlink sockets, for a
// caller that is done with a namespace before it exits (each socket keeps its namespace alive).
func OpenHost(opts Options, ipt utiliptables.Interface) (*Proxier, func(), error) {
	if err := opts.Validate(); err != nil {
		return nil, nil, err
	}
	if err := CheckKernel(netlink.GenlFamilyGet, Modprobe); err != nil {
		return nil, nil, err
	}
	if err := CheckScheduler(opts.Scheduler, Modprobe); err != nil {
		return nil, nil, err
	}
	h, err := mobyipvs.New("")
	if err != nil {
		return nil, nil, fmt.Errorf("open IPVS netlink socket: %w", err)
	}
	// Only the families used: a kernel without XFRM (the default set includes it) must not fail here.
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
	if err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("open netlink handle: %w", err)
	}
	closeAll := func() { h.Close(); nl.Close() }
	p, err := New(opts, Deps{IPVS: h, Links: nl, Ipset: nl, Iptables: ipt, Sysctl: sysctl.Proc{}, Conntrack: &conntrack.Netlink{Handle: nl}})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return p, closeAll, nil
}

// sysctlSettings are the kernel parameters IPVS mode relies on.
func sysctlSettings(o *Options) [][2]string {
	s := [][2]string{
		// Let netfilter track IPVS connections, so masquerade and the filter rules see them.
		{"net/ipv4/vs/conntrack", "1"},
		// Drop packets of connections whose real server is gone, so clients reconnect elsewhere.
		{"net/ipv4/vs/expire_nodest_conn", "1"},
		// Expire persistence templates of weight-0 real servers, so affinity moves off a draining one.
		{"net/ipv4/vs/expire_quiescent_template", "1"},
	}
	if o.StrictARP {
		// Service addresses on kube-ipvs0 must not be announced or answered for on other interfaces.
		s = append(s, [2]string{"net/ipv4/conf/all/arp_ignore", "1"}, [2]string{"net/ipv4/conf/all/arp_announce", "2"})
	}
	return s
}

func setSysctls(s sysctl.Interface, o *Options) error {
	for _, kv := range sysctlSettings(o) {
		if cur, err := s.Get(kv[0]); err == nil && cur == kv[1] {
			continue
		}
		if err := s.Set(kv[0], kv[1]); err != nil {
			hint := ""
			if errors.Is(err, os.ErrPermission) {
				hint = " (needs root with CAP_NET_ADMIN and a writable /proc/sys)"
			} else if errors.Is(err, os.ErrNotExist) {
				hint = " (the ip_vs module is not loaded)"
			}
			return fmt.Errorf("set sysctl %s=%s%s: %w", kv[0], kv[1], hint, err)
		}
		klog.V(2).InfoS("Set sysctl", "name", kv[0], "value", kv[1])
	}
	return nil
}

// LastSyncStats reports the kernel round trips of the last Sync.
func (p *Proxier) LastSyncStats() SyncStats { return p.lastStats }

// Family is the IP family this backend programs.
func (p *Proxier) Family() model.IPFamily { return p.opts.Family }

// Sync makes the kernel match snap. IPVS offers no transactions, so an error can leave part of the
// change applied; the backend then distrusts its record and the next sync is a full one that lists
// the kernel and repairs whatever is off. Nothing is ever flushed wholesale.
func (p *Proxier) Sync(snap *model.Snapshot) error {
	if p.ipvs == nil {
		return errors.New("ipvs: this Proxier was built by NewCleaner and can only clean up")
	}
	start := time.Now()
	p.stats = SyncStats{}
	full := snap.Full || p.needFull
	err := p.sync(snap, full)
	p.lastStats = p.stats
	family := p.opts.Family.String()
	metrics.SyncProxyRulesLatency.WithLabelValues(family).Observe(metrics.SinceInSeconds(start))
	if err != nil {
		p.needFull = true
		return fmt.Errorf("ipvs %s sync: %w", p.opts.Family, err)
	}
	p.needFull = false
	// Failures are logged and retried by the next sync: the IPVS tables are right already.
	_, _ = p.conntrack.Reconcile(snap)
	metrics.SyncProxyRulesLastTimestamp.WithLabelValues(family).SetToCurrentTime()
	metrics.SyncProxyRulesNoLocalEndpointsTotal.WithLabelValues("internal", family).Set(float64(p.desired.noLocalInternal))
	metrics.SyncProxyRulesNoLocalEndpointsTotal.WithLabelValues("external", family).Set(float64(p.desired.noLocalExternal))
	klog.V(2).InfoS("IPVS sync done", "family", p.opts.Family, "full", full, "services", len(snap.Services),
		"netlinkRoundTrips", p.stats.NetlinkRoundTrips(), "writes", p.stats.Writes(), "elapsed", time.Since(start))
	return nil
}

func (p *Proxier) sync(snap *model.Snapshot, full bool) error {
	// One cheap look-up per sync: if someone deleted or recreated kube-ipvs0, every service address
	// went with it, and only a full sync (which relists and rebinds) puts them back.
	link, err := p.ensureDummy()
	if err != nil {
		return err
	}
	if p.dummy == nil || link.Attrs().Index != p.dummy.Attrs().Index {
		if p.dummy != nil {
			klog.InfoS("Dummy interface was replaced; resyncing everything", "interface", DummyDevice)
		}
		full = true
	}
	p.dummy = link
	// The node's addresses are read on full syncs and on any sync half an --ipvs-sync-period
	// (NodeAddressPeriod) after the last read, so the periodic sync always reads them, whatever the
	// jitter between the runner's clock and ours: a new node address gets its NodePorts within one
	// --ipvs-sync-period on a quiet node (one and a half at most under churn), as an operator expects
	// from kube-proxy, which reads them on every sync. Not on every sync here: the kernel can only
	// dump every address at once, kube-ipvs0's thousands included, which would make each incremental
	// sync cost O(services). Changed addresses make the sync full: every NodePort depends on them,
	// and so does every external IP that is a node address.
	now := p.now()
	if full || (p.opts.NodeAddressPeriod > 0 && now.Sub(p.nodeAddrsAt) >= p.opts.NodeAddressPeriod/2) {
		all, err := p.nodeAddresses(p.dummy.Attrs().Index)
		if err != nil {
			return err
		}
		addrs := selectNodeAddrs(&p.opts, all)
		if !slices.Equal(addrs.All, p.nodeAddrs.All) || !slices.Equal(addrs.NodePort, p.nodeAddrs.NodePort) {
			klog.V(2).InfoS("Node addresses changed", "family", p.opts.Family, "all", addrs.All, "nodePort", addrs.NodePort)
			full = true
		}
		p.nodeAddrs, p.nodeAddrsAt = addrs, now
		p.syncedNodeAddrs.Store(&addrs)
	}
	p.render(snap, full)
	if full {
		if err := p.loadKernelState(); err != nil {
			return err
		}
	}
	if err := p.apply(full); err != nil {
		return err
	}
	if full {
		if err := p.syncRules(); err != nil {
			return err
		}
	}
	return p.processTerminating()
}

// render brings the desired state up to date: everything on a full sync, otherwise the services that
// snap.Changed names. An ordinary sync trusts Changed, as the Snapshot contract allows: with nothing
// changed it costs nothing, otherwise one pass that looks up each port's service in Changed. A
// changed service whose values are the very ones rendered last time is not rendered again. A change
// of snap.Node alone (zone labels) is not seen until a service changes or the next full sync.
func (p *Proxier) render(snap *model.Snapshot, full bool) {
	if full {
		p.desired = newDesiredState()
	}
	renderInto(p.desired, snap, full, p.nodeAddrs, &p.opts)
}

// renderInto is render's pure part: it updates d from snap for a node with addrs, and returns how
// many service ports it had to skip.
func renderInto(d *desiredState, snap *model.Snapshot, full bool, addrs nodeAddrs, opts *Options) (skipped int) {
	if !full && len(snap.Changed) == 0 {
		return 0
	}
	for name, svc := range snap.Services {
		if !full {
			if _, changed := snap.Changed[name.ServiceKey]; !changed {
				continue
			}
		}
		eps := snap.Endpoints[name]
		if old := d.services[name]; old != nil && old.sameInputs(svc, eps) {
			continue
		}
		r, err := renderService(svc, eps, snap.Node, addrs, opts)
		if err != nil {
			klog.ErrorS(err, "Skipping service port the IPVS backend cannot program", "servicePort", name)
			d.set(name, nil)
			skipped++
			continue
		}
		d.set(name, &renderedService{svc: svc, eps: eps, render: r})
	}
	// Ports that disappeared: a deleted service, or a port removed from a changed one.
	for key := range snap.Changed {
		for name := range d.byKey[key] {
			if _, ok := snap.Services[name]; !ok {
				d.set(name, nil)
			}
		}
	}
	return skipped
}

// owns reports whether a listed virtual server is Switchyard's to change: its address is not in
// --ipvs-exclude-cidrs, it is of this family, and either its address is bound to kube-ipvs0, the
// NodePort sets record it, or this process created it. Anything else belongs to someone else.
func (p *Proxier) owns(k vsKey, bound map[netip.Addr]struct{}, sets *[numSetKinds]map[ipset.Entry]struct{}) bool {
	_, applied := p.applied[k]
	return ownsVirtualServer(&p.opts, k, applied,
		func(a netip.Addr) bool { _, ok := bound[a]; return ok },
		func(kind setKind, e ipset.Entry) bool { _, ok := sets[kind][e]; return ok })
}

// loadKernelState replaces the backend's record of the kernel with a fresh listing: the ipsets (created
// when missing), kube-ipvs0's addresses, the virtual servers Switchyard owns, and the real servers of
// those it still wants.
func (p *Proxier) loadKernelState() error {
	sets, err := p.listSets()
	if err != nil {
		return err
	}
	bound, err := p.listBound(p.dummy)
	if err != nil {
		return err
	}
	listed, err := p.ipvs.GetServices()
	if err != nil {
		return fmt.Errorf("list IPVS virtual servers: %w", err)
	}
	applied := make(map[vsKey]*appliedVS, len(listed))
	for _, s := range listed {
		k, ok := keyOf(s)
		if !ok || !p.owns(k, bound, &sets) {
			continue
		}
		a := appliedFromKernel(s)
		applied[k] = a
		if p.desired.virtualServer(k) == nil {
			continue // to be deleted; its real servers go with it
		}
		dests, err := p.ipvs.GetDestinations(s)
		if err != nil {
			return fmt.Errorf("list real servers of %s: %w", k, err)
		}
		for _, d := range dests {
			if ip, ok := netip.AddrFromSlice(d.Address); ok {
				a.dests[netip.AddrPortFrom(ip.Unmap(), d.Port)] = d.Weight
			}
		}
	}
	// Real servers found at weight 0 and unwanted are drained, whether this process or an earlier one
	// started their termination.
	for k, ds := range p.terminating {
		if applied[k] == nil {
			delete(p.terminating, k)
			continue
		}
		for d := range ds {
			if _, ok := applied[k].dests[d]; !ok {
				delete(ds, d)
			}
		}
	}
	p.applied, p.appliedAddrs, p.appliedSets = applied, bound, sets
	return nil
}

// apply issues the changes: on a full sync for every key either side knows, otherwise for the keys the
// render marked. Additions (addresses, set entries, virtual servers) come before removals, so a
// service that moves never has a gap in which its packets match nothing.
func (p *Proxier) apply(full bool) error {
	d := p.desired
	vsKeys := d.dirtyVS
	addrKeys := d.dirtyAddrs
	setKeys := d.dirtySets
	if full {
		vsKeys = map[vsKey]struct{}{}
		for k := range d.claims {
			vsKeys[k] = struct{}{}
		}
		for k := range p.applied {
			vsKeys[k] = struct{}{}
		}
		addrKeys = map[netip.Addr]struct{}{}
		for a := range d.addrs {
			addrKeys[a] = struct{}{}
		}
		for a := range p.appliedAddrs {
			addrKeys[a] = struct{}{}
		}
		for k := range setKeys {
			m := map[ipset.Entry]struct{}{}
			for e := range d.sets[k] {
				m[e] = struct{}{}
			}
			for e := range p.appliedSets[k] {
				m[e] = struct{}{}
			}
			setKeys[k] = m
		}
	}
	var errs []error
	// Addresses and set entries in two passes around the virtual servers: the first only adds, the
	// second only removes.
	syncAddrsAndSets := func(adding bool) {
		for a := range addrKeys {
			if err := p.syncAddr(a, adding); err != nil {
				errs = append(errs, err)
			}
		}
		for k := range setKeys {
			for e := range setKeys[k] {
				if err := p.syncSetEntry(setKind(k), e, adding); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	syncAddrsAndSets(true)
	for k := range vsKeys {
		want := d.virtualServer(k)
		if want != nil && len(d.claims[k]) > 1 {
			klog.ErrorS(nil, "Several services want the same IPVS virtual server; the first by name gets it", "virtualServer", k, "winner", want.Service, "claims", len(d.claims[k]))
		}
		if want == nil && p.applied[k] == nil {
			continue
		}
		if err := p.syncVirtualServer(k, want); err != nil {
			errs = append(errs, err)
		}
	}
	syncAddrsAndSets(false)
	d.clearDirty()
	return errors.Join(errs...)
}

// syncRules (re)writes the constant iptables rules and their jumps. Only full syncs do, since the rules
// never depend on services.
func (p *Proxier) syncRules() error {
	rules := renderRules(&p.opts)
	if err := p.iptables.Restore(rules); err != nil {
		metrics.IptablesRestoreFailuresTotal.WithLabelValues(p.opts.Family.String()).Inc()
		return fmt.Errorf("restore IPVS-mode iptables rules: %w", err)
	}
	for _, j := range jumpRules() {
		if err := p.iptables.EnsureRule(utiliptables.Prepend, j.table, j.chain, j.args...); err != nil {
			return fmt.Errorf("ensure jump from %s/%s: %w", j.table, j.chain, err)
		}
	}
	return nil
}
