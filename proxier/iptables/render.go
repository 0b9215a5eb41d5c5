package iptables

import (
	"bytes"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/switchyard/switchyard/proxier/metrics"
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
	// Staged, when the render was asked to stage, are restore inputs that load new per-service
	// chains (and on a cold start the dispatch shards) ahead of Restore, to be applied in order;
	// all must succeed before Restore is applied.
	Staged []StagedRestore
	// ServiceChains is every nat chain that comes and goes with services (per-service chains and
	// dispatch shards) that exists once Restore is applied.
	ServiceChains ChainSet
	// fixed is the text of every shared chain and canary, by table, once Restore is applied: what
	// kernelState.applied remembers for the next render.
	fixed map[string]KernelTable
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

// StagedRestore is one batch of new, still unreferenced per-service chains (or dispatch shards).
type StagedRestore struct {
	Restore []byte
	Chains  []string
}

// Renderer turns snapshots into iptables-restore input for one IP family. It remembers the rules it
// rendered for each service port, and the shared chains assembled from them, so that an incremental
// render costs in proportion to what changed rather than to the size of the cluster. What the
// kernel holds is not its business: each render is told (kernelState) and returns what the kernel
// will hold once its output is applied. It performs no I/O: Proxier applies what it returns.
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
	lastLocal    localMatch
	lastPodCIDRs []netip.Prefix
	rendered     bool
}

// sharedChains holds the shared chains' rules, concatenated over services in name order.
type sharedChains struct {
	filterSvc, filterExt, filterFW, filterNP, natSvc, natNP, hairpin, forward, postrouting, localnetGuard ruleBuf
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
}

// rememberNode records the node facts every service's rules depend on, so that the next render
// can tell whether they changed.
func (r *Renderer) rememberNode(snap *model.Snapshot, local localMatch) {
	r.rendered, r.lastNode, r.lastZone, r.lastLocal = true, snap.Node.Name, snap.Node.Zone(), local
	r.lastPodCIDRs = slices.Clone(snap.Node.PodCIDRs)
}

// RenderFull renders snap from scratch for a kernel that holds none of our rules: a convenience
// for tests and tools that want the complete ruleset as iptables-restore text.
func RenderFull(snap *model.Snapshot, opts Options) (*Rendered, error) {
	r, err := NewRenderer(opts)
	if err != nil {
		return nil, err
	}
	return r.render(snap, true, newKernelState(), 0), nil
}

// render returns the restore input that takes the kernel from what k says it holds to snap. It
// only reads k; whoever applies the result records it with k.applied. Every kind of sync goes
// through here and differs only in what it selects:
//
//   - full (asked for, the first render, or node facts changed): every service. Against a k read
//     back from the kernel (kernelFromSave) only chains whose text differs are written; against a
//     remembered k, whose rules a full sync must not trust, everything is.
//   - incremental: the services in snap.Changed, plus the shared chains whose text differs from
//     what k remembers.
//
// Chains of ours that k says the kernel may hold and the new state does not use are deleted;
// declaring them first means a chain already gone cannot fail the transaction. When batch > 0 and
// the render writes at least batch chains that k says the kernel lacks, those services' chains
// come back separately in Rendered.Staged, in restores of about batch chains each, and
// Rendered.Restore leaves them out. That needs k.exact, or a chain that the kernel holds and
// something references would be rewritten ahead of the final transaction. See doc.go for why
// staging pays off on the nft variant.
func (r *Renderer) render(snap *model.Snapshot, full bool, k *kernelState, batch int) *Rendered {
	local := r.localMatch(snap)
	// The pod CIDRs decide which endpoints without a node get hairpin rules.
	if !r.rendered || snap.Node.Name != r.lastNode || snap.Node.Zone() != r.lastZone || local != r.lastLocal ||
		!slices.Equal(snap.Node.PodCIDRs, r.lastPodCIDRs) {
		full = true
	}
	r.rememberNode(snap, local)
	ctx := r.newContext(snap, local)

	sel := selection{full: full}
	if full {
		r.reset()
		for name, svc := range snap.Services {
			r.add(name, ctx.renderService(svc, snap.Endpoints[name]))
		}
		r.sortOrder()
		sel.services = r.order
	} else {
		orderChanged := false
		for key := range snap.Changed {
			old := map[model.ServicePortName]*serviceRules{}
			for _, name := range slices.Clone(r.byKey[key]) { // remove edits byKey
				old[name] = r.services[name]
				sel.stale = append(sel.stale, r.services[name].chains...)
				r.remove(name)
			}
			for _, name := range snap.PortsOf(key) {
				s := ctx.renderService(snap.Services[name], snap.Endpoints[name])
				r.add(name, s)
				sel.services = append(sel.services, name)
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
		model.SortServicePortNames(sel.services)
	}
	if r.shared == nil {
		r.shared = r.buildShared()
	}
	return r.emit(sel, k.trusted(full), batch)
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
	r.writeLocalnetGuard(&sc.localnetGuard)
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

// writeFixedFilter writes kube-proxy's forwarding rules: drop packets conntrack considers invalid
// (they would otherwise escape DNAT reversal and reset the connection), unless be_liberal keeps
// conntrack from calling in-flight packets invalid; and accept forwarded service traffic even
// when the FORWARD policy is DROP.
func (r *Renderer) writeFixedFilter(l *ruleBuf) {
	if !r.opts.ConntrackTCPLiberal {
		args := []string{"-m", "conntrack", "--ctstate", "INVALID"}
		if r.opts.counts(metrics.NFAcctInvalidDropped) {
			args = append(args, countInto(metrics.NFAcctInvalidDropped)...)
		}
		l.rule(chainForward, append(args, "-j", "DROP")...)
	}
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

// writeLocalnetGuard fills SY-LOCALNET-GUARD when localhost node ports are on. route_localnet=1
// makes the kernel route packets to 127.0.0.0/8 that arrive from the network instead of dropping
// them as martians, which would expose every service listening on loopback to the node's
// neighbours; kubelet writes the same rule. Connections that a node port DNATed, and replies, pass.
func (r *Renderer) writeLocalnetGuard(l *ruleBuf) {
	if !r.opts.LocalhostNodePortsEffective() {
		return
	}
	lo := loopbackNet(model.IPv4).String()
	l.rule(chainLocalnetGuard, "!", "-s", lo, "-d", lo, "-m", "comment", "--comment", `"switchyard drop remote traffic to loopback addresses"`,
		"-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP")
}

// writeNodePortsJump writes the last rule of nat SY-SERVICES, which sends traffic for local
// addresses (optionally within --nodeport-addresses) to SY-NODEPORTS. Loopback addresses are left
// out unless localhost node ports are on: without route_localnet a DNATed packet to 127.0.0.1
// would be dropped as a martian (IPv6 has no such switch), so better not to DNAT it at all.
func (r *Renderer) writeNodePortsJump(l *ruleBuf) {
	comment := `"switchyard service nodeports; NOTE: this must be the last rule in this chain"`
	lo := loopbackNet(r.opts.Family)
	var notLoopback []string
	if !r.opts.LocalhostNodePortsEffective() {
		notLoopback = []string{"!", "-d", lo.String()}
	}
	prefixes := model.PrefixesFor(r.opts.Family, r.opts.NodePortAddresses)
	if len(prefixes) == 0 || slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Bits() == 0 }) {
		l.rule(chainServices, append(notLoopback, "-m", "comment", "--comment", comment,
			"-m", "addrtype", "--dst-type", "LOCAL", "-j", chainNodePorts)...)
		return
	}
	var jumps []netip.Prefix
	wide := false // a prefix holds loopback addresses and others
	for _, p := range prefixes {
		p = p.Masked()
		if notLoopback != nil && p.Overlaps(lo) {
			if lo.Bits() <= p.Bits() {
				continue // only loopback addresses, none of which may be a node port's
			}
			wide = true
		}
		jumps = append(jumps, p)
	}
	if wide {
		// A rule takes one -d, so loopback leaves the chain ahead of the jumps instead.
		l.rule(chainServices, "-d", lo.String(), "-m", "comment", "--comment", `"switchyard no node ports on loopback addresses"`, "-j", "RETURN")
	}
	for _, p := range jumps {
		l.rule(chainServices, "-d", p.String(), "-m", "comment", "--comment", comment,
			"-m", "addrtype", "--dst-type", "LOCAL", "-j", chainNodePorts)
	}
}

// LoopbackNodePortAddressesIgnored lists the --nodeport-addresses prefixes of the family that hold
// only loopback addresses while localhost node ports are not on: those node ports are not opened,
// as in kube-proxy, which the caller may want to say.
func (o *Options) LoopbackNodePortAddressesIgnored() []netip.Prefix {
	if o.LocalhostNodePortsEffective() {
		return nil
	}
	lo := loopbackNet(o.Family)
	var out []netip.Prefix
	for _, p := range model.PrefixesFor(o.Family, o.NodePortAddresses) {
		if p.Bits() > 0 && lo.Bits() <= p.Bits() && lo.Contains(p.Addr()) {
			out = append(out, p)
		}
	}
	return out
}

// countInto is the match that counts a packet into the nfacct counter name.
func countInto(name string) []string {
	return []string{"-m", "nfacct", "--nfacct-name", name}
}

// hostPrefix spells a single address as iptables-save prints it: 10.0.0.1/32, fd00::1/128.
func hostPrefix(a netip.Addr) string {
	return netip.PrefixFrom(a, a.BitLen()).String()
}

// quote wraps a sanitized comment in double quotes.
func quote(s string) string { return fmt.Sprintf("%q", sanitizeComment(s)) }

// selection is what a render asks the emitter to bring in line with the kernel: the services whose
// chains may need writing, and chains that may have to go besides those the kernel view lists.
type selection struct {
	full     bool
	services []model.ServicePortName // sorted
	stale    []string                // chains the selected services owned before this render
}

// tableChains is one table's shared chains in the order their rules are written, after its canary.
type tableChains struct {
	name   string
	chains []fixedChain
}

// fixedChain is one shared chain's rendered rules.
type fixedChain struct {
	name  string
	rules *ruleBuf
}

// tables lists the shared chains of each table. iptables-restore commits table by table, so
// the order matters when one fails. nat goes first: it is the table whose rules reference
// per-service chains and so the one that can be refused; when it is, nothing at all has changed.
// filter only touches chains that always exist. mangle holds only a canary.
func (sc *sharedChains) tables() []tableChains {
	nat := []fixedChain{{chainServices, &sc.natSvc}}
	for _, p := range sc.shardOrder {
		nat = append(nat, fixedChain{shardChain(p), sc.shards[p]})
	}
	nat = append(nat, fixedChain{chainNodePorts, &sc.natNP}, fixedChain{chainPostrouting, &sc.postrouting}, fixedChain{chainHairpin, &sc.hairpin})
	return []tableChains{
		{TableNAT, nat},
		{TableFilter, []fixedChain{
			{chainServices, &sc.filterSvc}, {chainExternalServices, &sc.filterExt}, {chainFirewall, &sc.filterFW},
			{chainNodePorts, &sc.filterNP}, {chainForward, &sc.forward}, {chainLocalnetGuard, &sc.localnetGuard},
		}},
		{TableMangle, nil},
	}
}

// serviceWrite is what the emitter does with one selected service's chains.
type serviceWrite uint8

const (
	writeChains serviceWrite = iota // (re)write them in the main transaction
	keepChains                      // the kernel holds them as rendered
	newChains                       // the kernel holds none of them: they may be staged
)

// emit writes the restore input that brings the kernel, as k describes it, to the rendered state
// for what sel selects. It is the only place that writes restore text from a render. A chain is
// written unless k shows the kernel holding exactly its rendered text (a canary: holding it at
// all); a table with nothing to write is left out.
func (r *Renderer) emit(sel selection, k *kernelState, batch int) *Rendered {
	sc := r.shared
	out := &Rendered{
		Full:            sel.full,
		ServiceChains:   maps.Clone(r.chains),
		RulesWritten:    map[string]int{},
		RulesTotal:      map[string]int{},
		ChainsTotal:     map[string]int{},
		NoLocalInternal: r.noLocalInt,
		NoLocalExternal: r.noLocalExt,
		fixed:           map[string]KernelTable{},
	}
	for _, p := range sc.shardOrder {
		out.ServiceChains[shardChain(p)] = struct{}{}
	}

	// The selected services' chains: staged when enough of them are new, else written into nat.
	what := make([]serviceWrite, len(sel.services))
	fresh, bodyLen, declLen := 0, 0, 0
	allNew := sel.full // every service goes to the staged restores, if staged
	for i, name := range sel.services {
		s := r.services[name]
		switch {
		case k.holdsService(s):
			what[i] = keepChains
		case k.lacksAll(s.chains):
			what[i] = newChains
			fresh += len(s.chains)
		}
		allNew = allNew && (what[i] == newChains || len(s.chains) == 0)
		bodyLen += s.chainBody.b.Len()
		declLen += len(s.chains) * 64
	}
	stg := stager{batch: batch}
	stage := batch > 0 && fresh >= batch
	// When the kernel holds no dispatch shard and every service is staged (a cold start), the new
	// shards are staged too: the first batch declares them and each batch appends its services'
	// dispatch rules, in name order as buildShared writes them. Only SY-SERVICES, written last,
	// references them. On nft, 10k jumps to distinct chains cost about twice as much in the final
	// transaction as in the batches of about 1000 chains that bring those chains.
	stageShards := stage && allNew
	for _, p := range sc.shardOrder {
		stageShards = stageShards && !k.holds(shardChain(p))
	}
	if stageShards {
		for _, p := range sc.shardOrder {
			stg.head = append(stg.head, shardChain(p))
		}
	}
	var decls, bodies strings.Builder
	decls.Grow(declLen)
	bodies.Grow(bodyLen)
	for i, name := range sel.services {
		s := r.services[name]
		switch {
		case stageShards:
			stg.add(s.chains, &s.chainBody, s.natDispatch)
		case what[i] == keepChains:
			continue
		case stage && what[i] == newChains:
			stg.add(s.chains, &s.chainBody, nil)
		default:
			writeDecls(&decls, s.chains)
			bodies.WriteString(s.chainBody.String())
		}
		out.RulesWritten[TableNAT] += s.chainBody.rules
	}
	out.Staged = stg.done()

	var b bytes.Buffer
	b.Grow(decls.Len() + bodies.Len() + sc.natSvc.b.Len() + sc.natNP.b.Len() + sc.filterSvc.b.Len() + sc.filterExt.b.Len() + 8192)
	out.Empty = true
	for _, t := range sc.tables() {
		held := k.rules[t.name]
		fixed := KernelTable{CanaryChain: ""}
		out.fixed[t.name] = fixed
		_, canary := held[CanaryChain]
		var changed []fixedChain
		for _, c := range t.chains {
			text := c.rules.String()
			fixed[c.name] = text
			out.RulesTotal[t.name] += c.rules.rules
			if have, ok := held[c.name]; ok && have == text {
				continue
			}
			out.RulesWritten[t.name] += c.rules.rules
			if stageShards && t.name == TableNAT && isShardChain(c.name) {
				continue
			}
			changed = append(changed, c)
		}
		// Every table also holds the canary chain.
		out.ChainsTotal[t.name] = len(t.chains) + 1
		var svcDecls, svcBodies string
		if t.name == TableNAT {
			svcDecls, svcBodies = decls.String(), bodies.String()
			out.RulesTotal[t.name] += r.chainRules
			out.ChainsTotal[t.name] += len(r.chains)
		}
		stale := k.stale(t.name, sel, out.ServiceChains)
		if canary && len(changed) == 0 && svcDecls == "" && len(stale) == 0 {
			continue
		}
		out.Empty = false
		b.WriteString("*" + t.name + "\n")
		if !canary {
			writeDecls(&b, []string{CanaryChain})
		}
		b.WriteString(svcDecls)
		writeDecls(&b, stale)
		for _, c := range changed {
			writeDecls(&b, []string{c.name})
		}
		for _, c := range changed {
			b.WriteString(c.rules.String())
		}
		b.WriteString(svcBodies)
		for _, c := range stale {
			b.WriteString("-X " + c + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	out.Restore = b.Bytes()
	return out
}

// writeDecls declares chains, which creates them or flushes them.
func writeDecls(b interface{ WriteString(string) (int, error) }, chains []string) {
	for _, c := range chains {
		b.WriteString(":" + c + " - [0:0]\n")
	}
}

// stager cuts staged chains into restores of about batch chains each.
type stager struct {
	batch  int
	head   []string // chains the first restore declares before any other
	text   bytes.Buffer
	chains []string
	out    []StagedRestore
}

// add stages a service's chains and body, and its dispatch rules when the shards are staged.
func (st *stager) add(chains []string, body *ruleBuf, dispatch []*shardRules) {
	if st.text.Len() == 0 {
		st.text.WriteString("*nat\n")
		if len(st.out) == 0 {
			writeDecls(&st.text, st.head)
			st.chains = append(st.chains, st.head...)
		}
	}
	writeDecls(&st.text, chains)
	st.text.WriteString(body.String())
	for _, d := range dispatch {
		st.text.WriteString(d.rules.String())
	}
	st.chains = append(st.chains, chains...)
	if len(st.chains) >= st.batch {
		st.flush()
	}
}

func (st *stager) flush() {
	if st.text.Len() == 0 {
		return
	}
	st.text.WriteString("COMMIT\n")
	st.out = append(st.out, StagedRestore{Restore: bytes.Clone(st.text.Bytes()), Chains: st.chains})
	st.text.Reset()
	st.chains = nil
}

// done returns the staged restores, in the order they must be applied.
func (st *stager) done() []StagedRestore {
	st.flush()
	return st.out
}
