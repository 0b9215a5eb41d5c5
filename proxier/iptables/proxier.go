package iptables

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"k8s.io/klog/v2"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"
)

// jumpRule is a rule in a built-in chain that hands packets to one of ours. These rules cannot be
// part of the restore (that would need rewriting the built-in chains, which other agents own), so
// they are ensured one by one after a full sync.
type jumpRule struct {
	table, chain string
	args         []string
}

func jump(table, chain, comment, target string, newOnly bool) jumpRule {
	var args []string
	if newOnly {
		args = append(args, "-m", "conntrack", "--ctstate", "NEW")
	}
	args = append(args, "-m", "comment", "--comment", comment, "-j", target)
	return jumpRule{table, chain, args}
}

// jumpRules in the order they end up in each built-in chain, all ahead of other agents' rules.
var jumpRules = []jumpRule{
	jump(TableNAT, "PREROUTING", "switchyard service portals", chainServices, false),
	jump(TableNAT, "OUTPUT", "switchyard service portals", chainServices, false),
	jump(TableNAT, "POSTROUTING", "switchyard postrouting rules", chainPostrouting, false),
	jump(TableFilter, "FORWARD", "switchyard load balancer firewall", chainFirewall, true),
	jump(TableFilter, "FORWARD", "switchyard forwarding rules", chainForward, false),
	jump(TableFilter, "FORWARD", "switchyard service portals", chainServices, true),
	jump(TableFilter, "FORWARD", "switchyard externally-visible service portals", chainExternalServices, true),
	jump(TableFilter, "INPUT", "switchyard load balancer firewall", chainFirewall, true),
	jump(TableFilter, "INPUT", "switchyard health check service ports", chainNodePorts, false),
	jump(TableFilter, "INPUT", "switchyard externally-visible service portals", chainExternalServices, true),
	jump(TableFilter, "OUTPUT", "switchyard load balancer firewall", chainFirewall, true),
	jump(TableFilter, "OUTPUT", "switchyard service portals", chainServices, true),
}

// BuiltinJumps counts, by table, the rules a Proxier keeps in the built-in chains to jump into its
// own: a fixed number whatever the services.
func BuiltinJumps() map[string]int {
	out := map[string]int{}
	for _, j := range jumpRules {
		out[j.table]++
	}
	return out
}

// Config builds a Proxier.
type Config struct {
	Options Options
	// IPTables applies the rules: utiliptables.NewExec for a node, iptablestest.NewFake in tests.
	IPTables utiliptables.Interface
	// Conntrack, when set, removes stale UDP flows after each successful sync.
	Conntrack conntrack.Deleter
	// StagedChainsPerRestore, when positive, lets a sync that creates at least this many new chains
	// load them in separate restores of about this many chains before the final transaction. Use
	// StagingFor to pick it for a variant.
	StagedChainsPerRestore int
	// CheckChainsEvery, when positive, makes a sync look for each of the fixed chains (besides the
	// canary, which every sync looks for) at most this often, so that chains someone deleted by
	// hand are noticed and restored by a full sync within about this time. The daemon passes the
	// sync period. Each look is one cheap listing of a short chain.
	CheckChainsEvery time.Duration
	// Now is the clock for CheckChainsEvery; nil means time.Now.
	Now func() time.Time
}

// StagingFor returns the StagedChainsPerRestore that suits a variant. iptables-nft-restore's cost
// grows with the square of the chains in one transaction but hardly with the size of the table, so
// batches of 1000 keep a cold start linear. iptables-legacy-restore rewrites the whole table on
// every commit, so more transactions only cost more: no staging.
func StagingFor(v utiliptables.Variant) int {
	if v == utiliptables.VariantNFT {
		return 1000
	}
	return 0
}

// Proxier is the iptables backend: it implements model.Backend for one IP family. A dual-stack
// node runs two, each with its own Interface (iptables and ip6tables).
type Proxier struct {
	ipt      utiliptables.Interface
	renderer *Renderer
	family   model.IPFamily
	ct       conntrack.Deleter

	// existing is the set of per-service chains the last successful sync left in the kernel.
	existing ChainSet
	// exact says existing lists every per-service chain the kernel holds that anything may
	// reference, so chains outside it may be staged. False until this process has either found
	// the tables empty or completed a sync, and after any failure.
	exact      bool
	stageBatch int
	// needFull forces the next sync to rewrite everything: set at start and after any failure.
	needFull bool
	// jumpsOK records that the jumps from the built-in chains were ensured since the canary was
	// last seen missing. They are not re-checked on every full sync: each check is a full read of
	// the table on the nft variant.
	jumpsOK bool
	prev    *model.Snapshot

	checkEvery     time.Duration
	lastChainCheck time.Time
	now            func() time.Time
}

var _ model.Backend = (*Proxier)(nil)

// NewProxier checks the options and returns a Proxier that has applied nothing yet. It installs
// nothing and removes nothing: the first Sync does, and no call ever flushes working rules.
func NewProxier(cfg Config) (*Proxier, error) {
	if cfg.IPTables == nil {
		return nil, errors.New("iptables proxier: no iptables interface")
	}
	r, err := NewRenderer(cfg.Options)
	if err != nil {
		return nil, err
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Proxier{ipt: cfg.IPTables, renderer: r, family: cfg.Options.Family, ct: cfg.Conntrack, existing: ChainSet{}, needFull: true,
		stageBatch: cfg.StagedChainsPerRestore, checkEvery: cfg.CheckChainsEvery, now: now}, nil
}

// Sync programs snap. An incremental sync writes the changed services' chains and whichever shared
// chains changed, in one iptables-restore. A full sync (snap.Full, after a failure, or when a
// canary chain is missing) reads nat and filter back and writes every chain that differs from
// the desired state, in one transaction per table; on tables without our rules (first start, or
// after a flush) it loads new chains in batches first (Config.StagedChainsPerRestore), which
// change no traffic until the final transaction references them. On error the rules in force are
// the previous ones (plus, at most, unreferenced new chains) and the next sync is full.
func (p *Proxier) Sync(snap *model.Snapshot) (err error) {
	start := time.Now()
	full := snap.Full || p.needFull
	defer func() {
		if err != nil {
			p.needFull, p.exact = true, false
		}
	}()

	present, cerr := p.canaryPresent()
	cold := false
	switch {
	case cerr != nil:
		klog.ErrorS(cerr, "Could not check the canary chain; doing a full sync", "ipFamily", p.family)
		full, p.jumpsOK = true, false
	case !present:
		if p.jumpsOK {
			klog.InfoS("Canary chain is gone, so the tables were flushed; doing a full sync", "ipFamily", p.family, "chain", CanaryChain)
		}
		full, p.jumpsOK = true, false
		// Only the canary may be gone; then our rules still carry traffic and must not be flushed.
		ours, err := p.ipt.ChainExists(TableNAT, chainServices)
		if err != nil || ours {
			break
		}
		// Nothing of ours is in the tables, so hook empty chains in now, while the tables are small:
		// iptables-nft reads a whole table for every rule check, which costs seconds once the nat
		// table holds 10k services. Empty chains change no traffic.
		cold = true
		if err := p.ipt.Restore(bootstrapInput()); err != nil {
			metrics.IptablesRestoreFailuresTotal.Inc()
			return fmt.Errorf("create %s chains: %w", p.family, err)
		}
		if err := p.ensureJumps(); err != nil {
			return err
		}
		// The shared chains are empty now, so no per-service chain is referenced: existing (the
		// chains we know of) is as good as exact.
		p.exact = true
	}

	if present && !full && p.checkEvery > 0 && p.now().Sub(p.lastChainCheck) >= p.checkEvery {
		p.lastChainCheck = p.now()
		// The canary only tells of a flush of everything; a chain deleted by hand (after its jumps)
		// leaves it in place, and an incremental sync would not rewrite what it believes is there.
		if missing, err := p.missingFixedChain(); err != nil || missing != "" {
			klog.InfoS("A chain of ours is gone or cannot be checked; doing a full sync", "ipFamily", p.family, "chain", missing, "err", err)
			full, p.jumpsOK = true, false
		}
	} else if full {
		p.lastChainCheck = p.now() // a full sync reads everything back anyway
	}

	var rendered *Rendered
	if full && cerr == nil && !cold {
		// Our rules are in the kernel: read them back and rewrite only what differs.
		rendered = p.renderVerified(snap)
		if rendered != nil && !present {
			// RenderVerified restores the nat and filter canaries; mangle's is put back here.
			rendered.Restore = append(rendered.Restore, "*mangle\n:"+CanaryChain+" - [0:0]\nCOMMIT\n"...)
			rendered.Empty = false
		}
	}
	if rendered == nil {
		batch := 0
		if p.exact {
			batch = p.stageBatch
		}
		rendered = p.renderer.RenderStaged(snap, full, p.existing, batch)
	}
	for i, st := range rendered.Staged {
		if err := p.ipt.Restore(st.Restore); err != nil {
			metrics.IptablesRestoreFailuresTotal.Inc()
			return fmt.Errorf("iptables-restore of staged chains for %s (batch %d of %d): %w", p.family, i+1, len(rendered.Staged), err)
		}
		for _, c := range st.Chains {
			p.existing[c] = struct{}{} // unreferenced, but present: a later full sync deletes what it does not need
		}
	}
	if !rendered.Empty {
		if err := p.ipt.Restore(rendered.Restore); err != nil {
			metrics.IptablesRestoreFailuresTotal.Inc()
			if !full {
				metrics.IptablesPartialRestoreFailuresTotal.Inc()
			}
			return fmt.Errorf("iptables-restore for %s (full=%v): %w", p.family, full, err)
		}
	}
	if !p.jumpsOK {
		if err := p.ensureJumps(); err != nil {
			return err
		}
	}
	p.existing = rendered.ServiceChains
	p.needFull, p.exact = false, true
	p.clearConntrack(snap)

	for _, t := range []string{TableFilter, TableNAT} {
		metrics.IptablesRulesTotal.WithLabelValues(t).Set(float64(rendered.RulesTotal[t]))
		metrics.IptablesRulesLast.WithLabelValues(t).Set(float64(rendered.RulesWritten[t]))
	}
	metrics.SyncProxyRulesNoLocalEndpointsTotal.WithLabelValues("internal").Set(float64(rendered.NoLocalInternal))
	metrics.SyncProxyRulesNoLocalEndpointsTotal.WithLabelValues("external").Set(float64(rendered.NoLocalExternal))
	elapsed := metrics.SinceInSeconds(start)
	metrics.SyncProxyRulesLatency.Observe(elapsed)
	if full {
		metrics.SyncFullProxyRulesLatency.Observe(elapsed)
	} else {
		metrics.SyncPartialProxyRulesLatency.Observe(elapsed)
	}
	metrics.SyncProxyRulesLastTimestamp.SetToCurrentTime()
	klog.V(2).InfoS("Synced iptables rules", "ipFamily", p.family, "full", full, "elapsed", time.Since(start),
		"natRulesWritten", rendered.RulesWritten[TableNAT], "natRulesTotal", rendered.RulesTotal[TableNAT])
	return nil
}

// ensureJumps makes sure every jump from a built-in chain exists, in jumpRules order.
func (p *Proxier) ensureJumps() error {
	// Reverse order: each rule is inserted at the top, so the first in the list ends up first.
	for _, j := range slices.Backward(jumpRules) {
		if err := p.ipt.EnsureRule(utiliptables.Prepend, j.table, j.chain, j.args...); err != nil {
			return fmt.Errorf("ensure jump to %s from %s/%s: %w", j.args[len(j.args)-1], j.table, j.chain, err)
		}
	}
	p.jumpsOK = true
	return nil
}

// bootstrapInput declares (and so creates, or flushes) the shared chains the jumps point to.
func bootstrapInput() []byte {
	return []byte("*nat\n:" + chainServices + " - [0:0]\n:" + chainNodePorts + " - [0:0]\n:" + chainPostrouting + " - [0:0]\n:" +
		chainHairpin + " - [0:0]\nCOMMIT\n*filter\n:" + chainServices + " - [0:0]\n:" + chainExternalServices + " - [0:0]\n:" +
		chainFirewall + " - [0:0]\n:" + chainNodePorts + " - [0:0]\n:" + chainForward + " - [0:0]\nCOMMIT\n")
}

// fixedChains are the shared chains of each table that the jumps from the built-in chains enter.
var fixedChains = []struct{ table, chain string }{
	{TableNAT, chainServices}, {TableNAT, chainNodePorts}, {TableNAT, chainPostrouting}, {TableNAT, chainHairpin},
	{TableFilter, chainServices}, {TableFilter, chainExternalServices}, {TableFilter, chainFirewall},
	{TableFilter, chainNodePorts}, {TableFilter, chainForward},
}

// missingFixedChain names the first fixed chain the kernel lacks, or "" when all are there.
func (p *Proxier) missingFixedChain() (string, error) {
	for _, c := range fixedChains {
		ok, err := p.ipt.ChainExists(c.table, c.chain)
		if err != nil {
			return c.table + "/" + c.chain, err
		}
		if !ok {
			return c.table + "/" + c.chain, nil
		}
	}
	return "", nil
}

// canaryPresent reports whether the canary exists in every table it was put in.
func (p *Proxier) canaryPresent() (bool, error) {
	for _, t := range []string{TableMangle, TableNAT, TableFilter} {
		ok, err := p.ipt.ChainExists(t, CanaryChain)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// renderVerified reads nat and filter back and renders against them, or returns nil (after
// logging) when they cannot be read, so the caller falls back to rewriting everything. Missing
// jumps from the built-in chains are noticed here too.
func (p *Proxier) renderVerified(snap *model.Snapshot) *Rendered {
	var tables [2]KernelTable
	for i, t := range []string{TableNAT, TableFilter} {
		data, err := p.ipt.Save(t)
		if err != nil {
			klog.ErrorS(err, "Could not read the tables back; rewriting everything", "ipFamily", p.family, "table", t)
			return nil
		}
		tables[i] = utiliptables.ChainRules(data)
	}
	// Checked here for free, so a restart need not ask iptables rule by rule.
	p.jumpsOK = jumpsPresent(tables[0], tables[1])
	// The read-back is exact, so chains it lacks may be staged.
	return p.renderer.RenderVerified(snap, tables[0], tables[1], p.stageBatch)
}

// deleteChainsInput is restore input that flushes and then deletes chains of one table.
func deleteChainsInput(table string, chains []string) []byte {
	var b []byte
	b = append(b, "*"+table+"\n"...)
	for _, c := range chains {
		b = append(b, ":"+c+" - [0:0]\n"...)
	}
	for _, c := range chains {
		b = append(b, "-X "+c+"\n"...)
	}
	return append(b, "COMMIT\n"...)
}

// clearConntrack deletes UDP flows that the new rules would no longer produce, or that were created
// while a service had no endpoints. Failures are logged: the rules are already right, and stale flows
// expire on their own.
func (p *Proxier) clearConntrack(snap *model.Snapshot) {
	prev := p.prev
	p.prev = snap
	if p.ct == nil {
		return
	}
	stale := conntrack.StaleUDP(prev, snap, p.family)
	if stale.Empty() {
		return
	}
	if err := conntrack.Delete(p.ct, p.family, stale); err != nil {
		klog.ErrorS(err, "Failed to delete stale UDP conntrack entries", "ipFamily", p.family)
	}
}
