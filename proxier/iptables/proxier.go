package iptables

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"k8s.io/klog/v2"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/nfacct"
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

// jumpComments says, in each jump, what the chain it enters is for.
var jumpComments = map[string]string{
	chainServices:         "switchyard service portals",
	chainExternalServices: "switchyard externally-visible service portals",
	chainFirewall:         "switchyard load balancer firewall",
	chainForward:          "switchyard forwarding rules",
	chainNodePorts:        "switchyard health check service ports",
	chainPostrouting:      "switchyard postrouting rules",
	chainLocalnetGuard:    "switchyard localnet guard",
}

// jumpRules in the order they end up in each built-in chain, all ahead of other agents' rules.
// As kube-proxy's, filter's jumps see only new connections, except those into SY-FORWARD (which
// also accepts established service traffic), SY-NODEPORTS (health checks) and SY-LOCALNET-GUARD
// (which also drops INVALID packets to loopback addresses, as kubelet's copy of its rule does).
var jumpRules = jumpsFrom([]builtinHook{
	{TableNAT, "PREROUTING", []string{chainServices}},
	{TableNAT, "OUTPUT", []string{chainServices}},
	{TableNAT, "POSTROUTING", []string{chainPostrouting}},
	{TableFilter, "FORWARD", []string{chainFirewall, chainForward, chainServices, chainExternalServices}},
	{TableFilter, "INPUT", []string{chainLocalnetGuard, chainFirewall, chainNodePorts, chainExternalServices}},
	{TableFilter, "OUTPUT", []string{chainLocalnetGuard, chainFirewall, chainServices}},
})

// builtinHook lists, in order, the chains of ours that one built-in chain jumps to.
type builtinHook struct {
	table, chain string
	targets      []string
}

func jumpsFrom(hooks []builtinHook) []jumpRule {
	var out []jumpRule
	for _, h := range hooks {
		for _, target := range h.targets {
			var args []string
			if h.table == TableFilter && target != chainForward && target != chainNodePorts && target != chainLocalnetGuard {
				args = append(args, "-m", "conntrack", "--ctstate", "NEW")
			}
			args = append(args, "-m", "comment", "--comment", jumpComments[target], "-j", target)
			out = append(out, jumpRule{h.table, h.chain, args})
		}
	}
	return out
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
	// Conntrack, when set, is the conntrack table whose UDP entries are reconciled with the model
	// after each successful sync (conntrack.Reconciler).
	Conntrack conntrack.Table
	// NFAcct, when set, is where NewProxier creates the nfacct counters (metrics.NFAcctCounters)
	// that the rules count packets into for kube-proxy's nfacct metrics. Options.NFAcctCounters
	// then says which exist; a counter that cannot be created is logged and not counted into.
	NFAcct nfacct.Interface
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
	ipt        utiliptables.Interface
	renderer   *Renderer
	family     model.IPFamily
	ct         *conntrack.Reconciler // nil without Config.Conntrack
	stageBatch int

	// kernel is what this Proxier believes the kernel holds; only a successful restore (or a
	// read-back) changes it.
	kernel *kernelState

	checkEvery     time.Duration
	lastChainCheck time.Time
	now            func() time.Time
}

var _ model.Backend = (*Proxier)(nil)

// NewProxier checks the options and returns a Proxier that has applied no rule yet: the first
// Sync does, and no call ever flushes working rules. It only creates the nfacct counters
// (Config.NFAcct), which count nothing until a rule names them.
func NewProxier(cfg Config) (*Proxier, error) {
	if cfg.IPTables == nil {
		return nil, errors.New("iptables proxier: no iptables interface")
	}
	if cfg.NFAcct != nil {
		cfg.Options.NFAcctCounters = ensureCounters(cfg.NFAcct, cfg.Options.Family)
	}
	r, err := NewRenderer(cfg.Options)
	if err != nil {
		return nil, err
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	p := &Proxier{ipt: cfg.IPTables, renderer: r, family: cfg.Options.Family, kernel: newKernelState(),
		stageBatch: cfg.StagedChainsPerRestore, checkEvery: cfg.CheckChainsEvery, now: now}
	if cfg.Conntrack != nil {
		p.ct = conntrack.NewReconciler(cfg.Conntrack, cfg.Options.Family)
	}
	return p, nil
}

// Family is the IP family this backend programs.
func (p *Proxier) Family() model.IPFamily { return p.family }

// Sync programs snap. An incremental sync writes the changed services' chains and whichever shared
// chains changed, in one iptables-restore. A full sync (snap.Full, after a failure, or when a
// canary chain is missing) reads nat and filter back and writes every chain that differs from
// the desired state, in one transaction per table; on tables without our rules (first start, or
// after a flush) it loads new chains in batches first (Config.StagedChainsPerRestore), which
// change no traffic until the final transaction references them. On error the rules in force are
// the previous ones (plus, at most, unreferenced new chains) and the next sync is full.
func (p *Proxier) Sync(snap *model.Snapshot) (err error) {
	start := time.Now()
	k := p.kernel
	full := snap.Full || k.needFull
	defer func() {
		if err != nil {
			k.lost()
		}
	}()

	present, cerr := p.canaryPresent()
	cold := false
	switch {
	case cerr != nil:
		klog.ErrorS(cerr, "Could not check the canary chain; doing a full sync", "ipFamily", p.family)
		full = true
		k.jumpsInPlace(false)
	case !present:
		if k.jumpsOK {
			klog.InfoS("Canary chain is gone, so the tables were flushed; doing a full sync", "ipFamily", p.family, "chain", CanaryChain)
		}
		full = true
		k.jumpsInPlace(false)
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
			metrics.IptablesRestoreFailuresTotal.WithLabelValues(p.family.String()).Inc()
			return fmt.Errorf("create %s chains: %w", p.family, err)
		}
		if err := p.ensureJumps(); err != nil {
			return err
		}
		k.bootstrapped()
	}

	if present && !full && p.checkEvery > 0 && p.now().Sub(p.lastChainCheck) >= p.checkEvery {
		p.lastChainCheck = p.now()
		// The canary only tells of a flush of everything; a chain deleted by hand (after its jumps)
		// leaves it in place, and an incremental sync would not rewrite what it believes is there.
		if missing, err := p.missingFixedChain(); err != nil || missing != "" {
			klog.InfoS("A chain of ours is gone or cannot be checked; doing a full sync", "ipFamily", p.family, "chain", missing, "err", err)
			full = true
			k.jumpsInPlace(false)
		}
	} else if full {
		p.lastChainCheck = p.now() // a full sync reads everything back anyway
	}

	// What the render may assume the kernel holds: what we remember, or for a full sync over
	// tables that hold our rules, what they really hold, so only what differs is rewritten.
	view := k
	if full && cerr == nil && !cold {
		if v := p.readBack(present); v != nil {
			view = v
		}
	}
	batch := 0
	if view.exact {
		batch = p.stageBatch
	}
	rendered := p.renderer.render(snap, full, view, batch)
	for i, st := range rendered.Staged {
		if err := p.ipt.Restore(st.Restore); err != nil {
			metrics.IptablesRestoreFailuresTotal.WithLabelValues(p.family.String()).Inc()
			return fmt.Errorf("iptables-restore of staged chains for %s (batch %d of %d): %w", p.family, i+1, len(rendered.Staged), err)
		}
		k.staged(st)
	}
	if !rendered.Empty {
		if err := p.ipt.Restore(rendered.Restore); err != nil {
			metrics.IptablesRestoreFailuresTotal.WithLabelValues(p.family.String()).Inc()
			if !full {
				metrics.IptablesPartialRestoreFailuresTotal.WithLabelValues(p.family.String()).Inc()
			}
			return fmt.Errorf("iptables-restore for %s (full=%v): %w", p.family, full, err)
		}
	}
	if !k.jumpsOK {
		if err := p.ensureJumps(); err != nil {
			return err
		}
	}
	k.applied(rendered)
	if p.ct != nil {
		// Failures are logged and retried by the next sync: the rules are right already.
		_, _ = p.ct.Reconcile(snap)
	}

	family := p.family.String()
	for _, t := range []string{TableFilter, TableNAT} {
		metrics.IptablesRulesTotal.WithLabelValues(t, family).Set(float64(rendered.RulesTotal[t]))
		metrics.IptablesRulesLast.WithLabelValues(t, family).Set(float64(rendered.RulesWritten[t]))
	}
	metrics.SyncProxyRulesNoLocalEndpointsTotal.WithLabelValues("internal", family).Set(float64(rendered.NoLocalInternal))
	metrics.SyncProxyRulesNoLocalEndpointsTotal.WithLabelValues("external", family).Set(float64(rendered.NoLocalExternal))
	elapsed := metrics.SinceInSeconds(start)
	metrics.SyncProxyRulesLatency.WithLabelValues(family).Observe(elapsed)
	if full {
		metrics.SyncFullProxyRulesLatency.WithLabelValues(family).Observe(elapsed)
	} else {
		metrics.SyncPartialProxyRulesLatency.WithLabelValues(family).Observe(elapsed)
	}
	metrics.SyncProxyRulesLastTimestamp.WithLabelValues(family).SetToCurrentTime()
	klog.V(2).InfoS("Synced iptables rules", "ipFamily", p.family, "full", full, "elapsed", time.Since(start),
		"natRulesWritten", rendered.RulesWritten[TableNAT], "natRulesTotal", rendered.RulesTotal[TableNAT])
	return nil
}

// ensureCounters creates kube-proxy's nfacct counters where missing and returns those that exist.
// Counters are per network namespace, not per family, so both families' Proxiers share them.
func ensureCounters(acct nfacct.Interface, family model.IPFamily) []string {
	var have []string
	for _, name := range metrics.NFAcctCounters {
		if err := acct.Ensure(name); err != nil {
			klog.ErrorS(err, "Cannot create an nfacct counter; its metric will not be reported", "ipFamily", family, "counter", name)
			continue
		}
		have = append(have, name)
	}
	return have
}

// ensureJumps makes sure every jump from a built-in chain exists, in jumpRules order.
func (p *Proxier) ensureJumps() error {
	// Reverse order: each rule is inserted at the top, so the first in the list ends up first.
	for _, j := range slices.Backward(jumpRules) {
		if err := p.ipt.EnsureRule(utiliptables.Prepend, j.table, j.chain, j.args...); err != nil {
			return fmt.Errorf("ensure jump to %s from %s/%s: %w", j.args[len(j.args)-1], j.table, j.chain, err)
		}
	}
	p.kernel.jumpsInPlace(true)
	return nil
}

// bootstrapInput declares (and so creates, or flushes) the shared chains the jumps point to.
func bootstrapInput() []byte {
	var b bytes.Buffer
	for _, t := range []string{TableNAT, TableFilter} {
		b.WriteString("*" + t + "\n")
		for _, c := range fixedChains {
			if c.table == t {
				writeDecls(&b, []string{c.chain})
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.Bytes()
}

// fixedChains are the shared chains of each table that the jumps from the built-in chains enter.
var fixedChains = []struct{ table, chain string }{
	{TableNAT, chainServices}, {TableNAT, chainNodePorts}, {TableNAT, chainPostrouting}, {TableNAT, chainHairpin},
	{TableFilter, chainServices}, {TableFilter, chainExternalServices}, {TableFilter, chainFirewall},
	{TableFilter, chainNodePorts}, {TableFilter, chainForward}, {TableFilter, chainLocalnetGuard},
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

// readBack reads nat and filter back (mangle holds only the canary, whose presence the caller
// knows), or returns nil (after logging) when they cannot be read, so the caller falls back to
// rewriting everything. Missing jumps from the built-in chains are noticed here too.
func (p *Proxier) readBack(canaryPresent bool) *kernelState {
	var tables [2]KernelTable
	for i, t := range []string{TableNAT, TableFilter} {
		data, err := p.ipt.Save(t)
		if err != nil {
			klog.ErrorS(err, "Could not read the tables back; rewriting everything", "ipFamily", p.family, "table", t)
			return nil
		}
		tables[i] = utiliptables.ChainRules(savedAsRendered(data))
	}
	// Checked here for free, so a restart need not ask iptables rule by rule.
	p.kernel.jumpsInPlace(jumpsPresent(tables[0], tables[1]))
	return kernelFromSave(tables[0], tables[1], canaryPresent)
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
