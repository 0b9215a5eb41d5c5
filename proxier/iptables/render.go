package iptables

import (
	"bytes"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/switchyard/switchyard/proxier/model"
)

// Table names as iptables-restore spells them.
const (
	TableFilter = "filter"
	TableNAT    = "nat"
	TableMangle = "mangle"
)

// ChainSet is a set of nat chain names.
type ChainSet map[string]struct{}

// Rendered is the outcome of one render: the restore input and what it leaves behind.
type Rendered struct {
	// Restore is the input for a single `iptables-restore --noflush` call.
	Restore []byte
	// Full reports whether Restore rewrites every service (rather than only the changed ones).
	Full bool
	// Empty reports that Restore changes nothing, so it need not be applied.
	Empty bool
	// Staged, from RenderStaged, are restore inputs that load new per-service chains ahead of
	// Restore. Each is independent; all must succeed before Restore is applied.
	Staged []StagedRestore
	// ServiceChains is every nat chain that comes and goes with services (per-service chains and
	// dispatch shards) that exists once Restore is applied. Pass it as the next render's existing set.
	ServiceChains ChainSet
	// RulesWritten counts the rules Restore writes, by table.
	RulesWritten map[string]int
	// RulesTotal counts all rules Switchyard owns once Restore is applied, by table, except the jumps
	// from built-in chains (see BuiltinJumps), as kube-proxy's sync_proxy_rules_iptables_total does.
	RulesTotal map[string]int
	// ChainsTotal counts the chains Switchyard owns once Restore is applied, by table.
	ChainsTotal map[string]int
	// NoLocalInternal and NoLocalExternal count services whose internal or external traffic policy is
	// Local while this node has no endpoint for them.
	NoLocalInternal, NoLocalExternal int
}

// StagedRestore is one batch of new, still unreferenced per-service chains.
type StagedRestore struct {
	Restore []byte
	Chains  []string
}

// Renderer turns snapshots into iptables-restore input for one IP family. It remembers the rules it
// rendered for each service port, and the shared chains assembled from them, so that an incremental
// render costs in proportion to what changed rather than to the size of the cluster. It performs no
// I/O: Proxier applies what it returns.
type Renderer struct {
	opts        Options
	clusterCIDR netip.Prefix
	mark        string // "0x4000"
	markMask    string // "0x4000/0x4000"

	services map[model.ServicePortName]*serviceRules
	byKey    map[model.ServiceKey][]model.ServicePortName
	order    []model.ServicePortName // sorted keys of services

	// Aggregates over services, kept up to date as services are added and removed.
	chains                 ChainSet // every per-service chain
	chainRules             int      // rules in those chains
	hairpinRefs            map[netip.Addr]int
	noLocalInt, noLocalExt int
	// shared is the text of the shared chains assembled from every service; nil when a change to
	// some service's share of them requires assembling it again.
	shared *sharedChains

	// Inputs outside the per-service data that every service's rules depend on; a change to any of
	// them makes the next render recompute every service.
	lastNode     string
	lastZone     string
	lastLocal    netip.Prefix
	lastPodCIDRs []netip.Prefix
	rendered     bool
	// lastFixed is the text of each shared chain ("table/chain") as last rendered.
	lastFixed map[string]string
	// lastShards are the dispatch shard chains as last rendered.
	lastShards ChainSet
}

// sharedChains holds the shared chains' rules, concatenated over services in name order.
type sharedChains struct {
	filterSvc, filterExt, filterFW, filterNP, natSvc, natNP, hairpin, forward, postrouting ruleBuf
	// shards holds the SY-DST chains' rules; natSvc jumps to them in shardOrder.
	shards     map[netip.Prefix]*ruleBuf
	shardOrder []netip.Prefix
}

// NewRenderer checks opts and returns a renderer with nothing rendered yet.
func NewRenderer(opts Options) (*Renderer, error) {
	cidr, err := opts.validate()
	if err != nil {
		return nil, err
	}
	m := opts.markHex()
	r := &Renderer{opts: opts, clusterCIDR: cidr, mark: m, markMask: m + "/" + m}
	r.reset()
	return r, nil
}

func (r *Renderer) reset() {
	r.services = map[model.ServicePortName]*serviceRules{}
	r.byKey = map[model.ServiceKey][]model.ServicePortName{}
	r.order = nil
	r.chains = ChainSet{}
	r.chainRules, r.noLocalInt, r.noLocalExt = 0, 0, 0
	r.hairpinRefs = map[netip.Addr]int{}
	r.shared = nil
	r.lastFixed = map[string]string{}
	r.lastShards = ChainSet{}
}

// rememberNode records the node facts every service's rules depend on, so that the next render
// can tell whether they changed.
func (r *Renderer) rememberNode(snap *model.Snapshot, local netip.Prefix) {
	r.rendered, r.lastNode, r.lastZone, r.lastLocal = true, snap.Node.Name, snap.Node.Zone(), local
	r.lastPodCIDRs = slices.Clone(snap.Node.PodCIDRs)
}

// RenderFull renders snap from scratch: a convenience for tests and tools that want the complete
// ruleset as iptables-restore text.
func RenderFull(snap *model.Snapshot, opts Options) (*Rendered, error) {
	r, err := NewRenderer(opts)
	if err != nil {
		return nil, err
	}
	return r.Render(snap, true, nil), nil
}

// Render returns the restore input that takes the kernel from the state of the previous render to
// snap. With full set (or on the first render, or when node facts changed) every service's chains
// and every shared chain are written; otherwise only the chains of services in snap.Changed, and
// the shared chains whose text changed. existing matters for full renders: it is the set of
// per-service chains the kernel may hold (the ServiceChains of the last render applied
// successfully), and chains in it that the new state does not use are deleted. An incremental
// render assumes the previous render was applied; after a failure, render full.
// Stale chains are declared before they are deleted, so a chain that is already missing from the
// kernel cannot fail the transaction.
func (r *Renderer) Render(snap *model.Snapshot, full bool, existing ChainSet) *Rendered {
	return r.RenderStaged(snap, full, existing, 0)
}

// RenderStaged is Render, except that when the render writes at least batch chains the kernel does
// not hold yet, it also returns those services' chains as separate restore inputs (Rendered.Staged)
// of about batch chains each; Rendered.Restore then leaves them out. Here existing must be exact:
// every per-service chain the kernel holds, or chains it holds and that are referenced would be
// rewritten ahead of the final transaction. See doc.go for why staging pays off on the nft variant.
func (r *Renderer) RenderStaged(snap *model.Snapshot, full bool, existing ChainSet, batch int) *Rendered {
	local := r.localCIDR(snap)
	// The pod CIDRs decide which endpoints without a node get hairpin rules.
	if !r.rendered || snap.Node.Name != r.lastNode || snap.Node.Zone() != r.lastZone || local != r.lastLocal ||
		!slices.Equal(snap.Node.PodCIDRs, r.lastPodCIDRs) {
		full = true
	}
	r.rememberNode(snap, local)
	ctx := r.newContext(snap, local)

	var written []model.ServicePortName // services whose chains this render writes
	var staleCandidates []string
	if full {
		r.reset()
		for name, svc := range snap.Services {
			r.add(name, ctx.renderService(svc, snap.Endpoints[name]))
			written = append(written, name)
		}
		for c := range existing {
			staleCandidates = append(staleCandidates, c)
		}
		r.sortOrder()
	} else {
		orderChanged := false
		for key := range snap.Changed {
			old := map[model.ServicePortName]*serviceRules{}
			for _, name := range slices.Clone(r.byKey[key]) { // remove edits byKey
				old[name] = r.services[name]
				for _, c := range r.services[name].chains {
					staleCandidates = append(staleCandidates, c)
				}
				r.remove(name)
			}
			for _, name := range snap.PortsOf(key) {
				s := ctx.renderService(snap.Services[name], snap.Endpoints[name])
				r.add(name, s)
				written = append(written, name)
				if o, ok := old[name]; !ok {
					orderChanged = true
				} else if !o.sameShare(s) {
					r.shared = nil
				}
				delete(old, name)
			}
			if len(old) > 0 {
				orderChanged = true
			}
		}
		if orderChanged {
			r.sortOrder()
			r.shared = nil
		}
	}
	model.SortServicePortNames(written)
	return r.assemble(full, written, staleCandidates, existing, batch)
}

// add and remove keep the aggregates in step with r.services.
func (r *Renderer) add(name model.ServicePortName, s *serviceRules) {
	r.services[name] = s
	r.byKey[name.ServiceKey] = append(r.byKey[name.ServiceKey], name)
	for _, c := range s.chains {
		r.chains[c] = struct{}{}
	}
	r.chainRules += s.chainBody.rules
	for _, ip := range s.hairpin {
		if r.hairpinRefs[ip]++; r.hairpinRefs[ip] == 1 {
			r.shared = nil
		}
	}
	r.noLocalInt += b2i(s.noLocalInternal)
	r.noLocalExt += b2i(s.noLocalExternal)
}

func (r *Renderer) remove(name model.ServicePortName) {
	s := r.services[name]
	if s == nil {
		return
	}
	delete(r.services, name)
	r.byKey[name.ServiceKey] = slices.DeleteFunc(r.byKey[name.ServiceKey], func(n model.ServicePortName) bool { return n == name })
	if len(r.byKey[name.ServiceKey]) == 0 {
		delete(r.byKey, name.ServiceKey)
	}
	for _, c := range s.chains {
		delete(r.chains, c)
	}
	r.chainRules -= s.chainBody.rules
	for _, ip := range s.hairpin {
		if r.hairpinRefs[ip]--; r.hairpinRefs[ip] == 0 {
			delete(r.hairpinRefs, ip)
			r.shared = nil
		}
	}
	r.noLocalInt -= b2i(s.noLocalInternal)
	r.noLocalExt -= b2i(s.noLocalExternal)
}

func (r *Renderer) sortOrder() {
	r.order = r.order[:0]
	for name := range r.services {
		r.order = append(r.order, name)
	}
	model.SortServicePortNames(r.order)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// sameShare reports whether two renderings of a service put the same rules in the shared chains.
func (s *serviceRules) sameShare(o *serviceRules) bool {
	return s.filterServices.String() == o.filterServices.String() &&
		s.filterExternal.String() == o.filterExternal.String() &&
		s.filterFirewall.String() == o.filterFirewall.String() &&
		s.filterNodePorts.String() == o.filterNodePorts.String() &&
		s.natNodePorts.String() == o.natNodePorts.String() &&
		slices.EqualFunc(s.natDispatch, o.natDispatch, func(a, b *shardRules) bool {
			return a.shard == b.shard && a.rules.String() == b.rules.String()
		})
}

// localCIDR is the prefix the local-traffic detector matches for this snapshot (invalid: none).
func (r *Renderer) localCIDR(snap *model.Snapshot) netip.Prefix {
	if r.opts.LocalDetector.UseNodeCIDR {
		for _, p := range snap.Node.PodCIDRs {
			if r.opts.Family.Of(p.Addr()) {
				return p.Masked()
			}
		}
		return netip.Prefix{}
	}
	return r.clusterCIDR
}

// ruleBuf accumulates iptables-restore lines and counts the rules among them.
type ruleBuf struct {
	b     strings.Builder
	rules int
}

// rule writes "-A chain args..." as one line.
func (l *ruleBuf) rule(chain string, args ...string) {
	l.b.WriteString("-A ")
	l.b.WriteString(chain)
	for _, a := range args {
		l.b.WriteByte(' ')
		l.b.WriteString(a)
	}
	l.b.WriteByte('\n')
	l.rules++
}

// append adds another buffer's lines.
func (l *ruleBuf) append(o *ruleBuf) {
	l.b.WriteString(o.b.String())
	l.rules += o.rules
}

func (l *ruleBuf) String() string { return l.b.String() }

// buildShared concatenates every service's share of the shared chains, in name order.
func (r *Renderer) buildShared() *sharedChains {
	sc := &sharedChains{shards: map[netip.Prefix]*ruleBuf{}}
	// Size the buffers first: at 10k services, growing them by doubling was most of a full render's
	// allocation.
	var n [6]int
	for _, name := range r.order {
		s := r.services[name]
		n[0] += s.filterServices.b.Len()
		n[1] += s.filterExternal.b.Len()
		n[2] += s.filterFirewall.b.Len()
		n[3] += s.filterNodePorts.b.Len()
		n[5] += s.natNodePorts.b.Len()
	}
	for i, buf := range []*ruleBuf{&sc.filterSvc, &sc.filterExt, &sc.filterFW, &sc.filterNP, &sc.natSvc, &sc.natNP} {
		buf.b.Grow(n[i] + 512)
	}
	for _, name := range r.order {
		s := r.services[name]
		sc.filterSvc.append(&s.filterServices)
		sc.filterExt.append(&s.filterExternal)
		sc.filterFW.append(&s.filterFirewall)
		sc.filterNP.append(&s.filterNodePorts)
		for _, d := range s.natDispatch {
			buf := sc.shards[d.shard]
			if buf == nil {
				buf = &ruleBuf{}
				sc.shards[d.shard] = buf
				sc.shardOrder = append(sc.shardOrder, d.shard)
			}
			buf.append(&d.rules)
		}
		sc.natNP.append(&s.natNodePorts)
	}
	slices.SortFunc(sc.shardOrder, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	for _, p := range sc.shardOrder {
		sc.natSvc.rule(chainServices, "-d", p.String(), "-j", shardChain(p))
	}
	r.writeNodePortsJump(&sc.natSvc)
	r.writeFixedFilter(&sc.forward)
	r.writePostrouting(&sc.postrouting)
	ips := make([]netip.Addr, 0, len(r.hairpinRefs))
	for ip := range r.hairpinRefs {
		ips = append(ips, ip)
	}
	slices.SortFunc(ips, func(a, b netip.Addr) int { return a.Compare(b) })
	for _, ip := range ips {
		a := hostPrefix(ip)
		sc.hairpin.rule(chainHairpin, "-s", a, "-d", a, "-m", "comment", "--comment", `"pod reached itself through a service"`,
			"-j", "MARK", "--set-xmark", r.markMask)
	}
	return sc
}

// assemble writes the restore input.
func (r *Renderer) assemble(full bool, written []model.ServicePortName, staleCandidates []string, existing ChainSet, batch int) *Rendered {
	out := &Rendered{
		Full:            full,
		ServiceChains:   maps.Clone(r.chains),
		RulesWritten:    map[string]int{},
		RulesTotal:      map[string]int{},
		ChainsTotal:     map[string]int{},
		NoLocalInternal: r.noLocalInt,
		NoLocalExternal: r.noLocalExt,
	}
	if r.shared == nil {
		r.shared = r.buildShared()
	}
	sc := r.shared
	shardChains := ChainSet{}
	for _, p := range sc.shardOrder {
		shardChains[shardChain(p)] = struct{}{}
	}
	for c := range shardChains {
		out.ServiceChains[c] = struct{}{}
	}
	// Stale chains: owned before, not produced now. Declaring them first flushes them (dropping
	// their jumps to sibling chains) and creates any that vanished, so the -X lines cannot fail.
	for c := range r.lastShards {
		staleCandidates = append(staleCandidates, c)
	}
	var stale []string
	for _, c := range staleCandidates {
		if _, ok := out.ServiceChains[c]; !ok && isServiceChain(c) {
			stale = append(stale, c)
			delete(r.lastFixed, TableNAT+"/"+c)
		}
	}
	slices.Sort(stale)
	stale = slices.Compact(stale)
	r.lastShards = shardChains
	var chainDecls, chainBodies strings.Builder
	chainRulesWritten := 0
	// A service all of whose chains are new can be staged: its chains are unreferenced until the
	// final transaction rewrites the dispatch chains, so loading them early changes no traffic.
	isNew := func(s *serviceRules) bool {
		for _, c := range s.chains {
			if _, ok := existing[c]; ok {
				return false
			}
		}
		return len(s.chains) > 0
	}
	if batch > 0 {
		newChains := 0
		for _, name := range written {
			if s := r.services[name]; isNew(s) {
				newChains += len(s.chains)
			}
		}
		if newChains < batch {
			batch = 0
		}
	}
	var stage bytes.Buffer
	var stageChains []string
	flushStage := func() {
		if len(stageChains) == 0 {
			return
		}
		stage.WriteString("COMMIT\n")
		out.Staged = append(out.Staged, StagedRestore{Restore: bytes.Clone(stage.Bytes()), Chains: stageChains})
		stage.Reset()
		stageChains = nil
	}
	mainChains, bodyLen := 0, 0
	for _, name := range written {
		bodyLen += r.services[name].chainBody.b.Len()
	}
	chainBodies.Grow(bodyLen)
	chainDecls.Grow(len(written) * 64)
	for _, name := range written {
		s := r.services[name]
		chainRulesWritten += s.chainBody.rules
		if batch > 0 && isNew(s) {
			if len(stageChains) == 0 {
				stage.WriteString("*nat\n")
			}
			for _, c := range s.chains {
				stage.WriteString(":" + c + " - [0:0]\n")
			}
			stage.WriteString(s.chainBody.String())
			stageChains = append(stageChains, s.chains...)
			if len(stageChains) >= batch {
				flushStage()
			}
			continue
		}
		for _, c := range s.chains {
			chainDecls.WriteString(":" + c + " - [0:0]\n")
		}
		chainBodies.WriteString(s.chainBody.String())
		mainChains += len(s.chains)
	}
	flushStage()

	// The shared chains, in the order their rules are written. A shared chain whose text is what
	// the previous (applied) render wrote is left alone in an incremental render: rewriting the
	// dispatch chain of 10k services costs about 1.5 s on the nft variant, while a typical endpoint
	// change does not alter it at all.
	filterFixed := []fixedChain{
		{chainServices, &sc.filterSvc}, {chainExternalServices, &sc.filterExt}, {chainFirewall, &sc.filterFW},
		{chainNodePorts, &sc.filterNP}, {chainForward, &sc.forward},
	}
	natFixed := []fixedChain{{chainServices, &sc.natSvc}}
	for _, p := range sc.shardOrder {
		natFixed = append(natFixed, fixedChain{shardChain(p), sc.shards[p]})
	}
	natFixed = append(natFixed, fixedChain{chainNodePorts, &sc.natNP}, fixedChain{chainPostrouting, &sc.postrouting}, fixedChain{chainHairpin, &sc.hairpin})

	var b bytes.Buffer
	b.Grow(chainDecls.Len() + chainBodies.Len() + sc.natSvc.b.Len() + sc.natNP.b.Len() + sc.filterSvc.b.Len() + sc.filterExt.b.Len() + 8192)
	// iptables-restore commits table by table, so the order matters when one fails. nat goes first:
	// it is the table whose rules reference per-service chains and so the one that can be refused;
	// when it is, nothing at all has changed. filter only touches chains that always exist.
	b.WriteString("*nat\n")
	if full {
		b.WriteString(":" + CanaryChain + " - [0:0]\n")
	}
	b.WriteString(chainDecls.String())
	for _, c := range stale {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	natWritten, natDeclared := r.writeFixed(&b, TableNAT, natFixed)
	b.WriteString(chainBodies.String())
	for _, c := range stale {
		b.WriteString("-X " + c + "\n")
	}
	b.WriteString("COMMIT\n*filter\n")
	if full {
		b.WriteString(":" + CanaryChain + " - [0:0]\n")
	}
	filterWritten, filterDeclared := r.writeFixed(&b, TableFilter, filterFixed)
	b.WriteString("COMMIT\n")
	if full {
		b.WriteString("*mangle\n:" + CanaryChain + " - [0:0]\nCOMMIT\n")
	}
	out.Empty = !full && filterDeclared == 0 && natDeclared == 0 && mainChains == 0 && len(stale) == 0
	out.Restore = b.Bytes()

	out.RulesTotal[TableFilter] = countRules(filterFixed)
	out.RulesTotal[TableNAT] = countRules(natFixed) + r.chainRules
	// Every table also holds the canary chain.
	out.ChainsTotal[TableFilter] = len(filterFixed) + 1
	out.ChainsTotal[TableNAT] = len(natFixed) + len(r.chains) + 1
	out.ChainsTotal[TableMangle] = 1
	out.RulesWritten[TableFilter] = filterWritten
	out.RulesWritten[TableNAT] = natWritten + chainRulesWritten
	return out
}

// fixedChain is one shared chain's rendered rules.
type fixedChain struct {
	name  string
	rules *ruleBuf
}

// writeFixed declares and writes the shared chains of a table whose text changed since the last
// render (all of them after a full render), and returns the number of rules written and of chains
// declared (a chain that became empty is declared, which flushes it, with no rules). Declarations
// come first in the table's section, as iptables-restore reads them, then the rules.
func (r *Renderer) writeFixed(b *bytes.Buffer, table string, chains []fixedChain) (rules, declared int) {
	var changed []fixedChain
	for _, c := range chains {
		key := table + "/" + c.name
		text := c.rules.String()
		if prev, ok := r.lastFixed[key]; ok && prev == text {
			continue
		}
		r.lastFixed[key] = text
		changed = append(changed, c)
		b.WriteString(":" + c.name + " - [0:0]\n")
	}
	for _, c := range changed {
		b.WriteString(c.rules.String())
		rules += c.rules.rules
	}
	return rules, len(changed)
}

func countRules(chains []fixedChain) int {
	n := 0
	for _, c := range chains {
		n += c.rules.rules
	}
	return n
}

// writeFixedFilter writes kube-proxy's forwarding rules: drop packets conntrack considers invalid
// (they would otherwise escape DNAT reversal), and accept forwarded service traffic even when the
// FORWARD policy is DROP.
func (r *Renderer) writeFixedFilter(l *ruleBuf) {
	l.rule(chainForward, "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP")
	l.rule(chainForward, "-m", "comment", "--comment", `"switchyard forwarding rules"`,
		"-m", "mark", "--mark", r.markMask, "-j", "ACCEPT")
	l.rule(chainForward, "-m", "comment", "--comment", `"switchyard forwarding conntrack rule"`,
		"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
}

// writePostrouting masquerades packets that carry the mark, clearing the mark first so that a packet
// re-entering POSTROUTING (VXLAN encapsulation, for one) is not masqueraded twice. DNATed packets
// visit SY-HAIRPIN first, which marks a pod that reached itself.
func (r *Renderer) writePostrouting(l *ruleBuf) {
	l.rule(chainPostrouting, "-m", "conntrack", "--ctstate", "DNAT", "-j", chainHairpin)
	l.rule(chainPostrouting, "-m", "mark", "!", "--mark", r.markMask, "-j", "RETURN")
	l.rule(chainPostrouting, "-j", "MARK", "--set-xmark", r.mark+"/0x0")
	args := []string{"-m", "comment", "--comment", `"switchyard service traffic requiring SNAT"`, "-j", "MASQUERADE"}
	if r.opts.RandomFully {
		args = append(args, "--random-fully")
	}
	l.rule(chainPostrouting, args...)
}

// writeNodePortsJump writes the last rule of nat SY-SERVICES, which sends traffic for local
// addresses (optionally within --nodeport-addresses) to SY-NODEPORTS.
func (r *Renderer) writeNodePortsJump(l *ruleBuf) {
	comment := `"switchyard service nodeports; NOTE: this must be the last rule in this chain"`
	prefixes := model.PrefixesFor(r.opts.Family, r.opts.NodePortAddresses)
	if len(prefixes) == 0 {
		l.rule(chainServices, "-m", "comment", "--comment", comment,
			"-m", "addrtype", "--dst-type", "LOCAL", "-j", chainNodePorts)
		return
	}
	for _, p := range prefixes {
		l.rule(chainServices, "-d", p.Masked().String(), "-m", "comment", "--comment", comment,
			"-m", "addrtype", "--dst-type", "LOCAL", "-j", chainNodePorts)
	}
}

// hostPrefix spells a single address as iptables-save prints it: 10.0.0.1/32, fd00::1/128.
func hostPrefix(a netip.Addr) string {
	return netip.PrefixFrom(a, a.BitLen()).String()
}

// quote wraps a sanitized comment in double quotes.
func quote(s string) string { return fmt.Sprintf("%q", sanitizeComment(s)) }
