package ipvs

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/iptables/tracer"
	"github.com/switchyard/switchyard/proxier/model"
)

// Explain says what IPVS mode's live state does with the first packet of a connection. It is a pure
// function of live and pkt.
//
// The packet meets netfilter and IPVS in the kernel's order:
//   - From a pod or from outside: raw, mangle and nat PREROUTING (where SY-IPVS-SERVICES sets the
//     masquerade mark), routing, then mangle, filter and security INPUT (SY-IPVS-FILTER: the
//     loadBalancerSourceRanges drop and the reject of unknown ports). IPVS hooks LOCAL_IN after
//     them, so only a packet delivered to the node that survives filter INPUT reaches a virtual
//     server.
//   - From the node itself: raw, mangle and nat OUTPUT; IPVS hooks LOCAL_OUT right after nat OUTPUT.
//
// The iptables part is walked by the packet tracer (proxier/iptables/tracer) over live.IptablesSave
// and live.IPSetSave. A packet IPVS takes is scheduled by the matching virtual server, an outcome
// per real server with its share (see schedule), DNATed to it and sent out through filter OUTPUT and
// POSTROUTING, where SY-IPVS-POSTROUTING masquerades it when the mark is set (or when a local endpoint
// reaches itself). A packet no virtual server takes goes on through the rest of the hooks, as the
// tracer walks it.
func Explain(live *explain.Live, pkt explain.Packet) (*explain.Report, error) {
	x, err := newExplainer(live, pkt)
	if err != nil {
		return nil, err
	}
	outcomes, err := x.walk()
	if err != nil {
		return nil, fmt.Errorf("explain %s %s -> %s in IPVS mode: %w", x.pkt.Proto, x.pkt.Src, x.pkt.Dst, err)
	}
	slices.SortStableFunc(outcomes, func(a, b explain.Outcome) int {
		if c := cmp.Compare(b.Probability, a.Probability); c != 0 {
			return c
		}
		return a.Endpoint.Compare(b.Endpoint)
	})
	rep := &explain.Report{Packet: x.pkt, Mode: "ipvs", Outcomes: outcomes, Unexplained: x.unexplained}
	if x.vs != nil && x.vs.Persistent && x.scheduled {
		rep.AddNote(persistenceNote)
	}
	rep.Causes = explain.Causes(live, rep)
	return rep, nil
}

// persistenceNote is the report's note for a packet scheduled by a persistent virtual server.
const persistenceNote = "the virtual server is persistent (ClientIP session affinity): this walk assumes the client has no " +
	"persistence entry in IPVS yet; a client with one goes to the real server it used before while the entry lasts"

// explainer holds what one explanation reads, parsed once.
type explainer struct {
	live  *explain.Live
	pkt   explain.Packet // InIface filled in
	fam   model.IPFamily
	local bool // from the node itself
	vs    *explain.VirtualServer

	// full is the live rules; beforeIPVS leaves out the hooks after IPVS on the packet's way in,
	// afterIPVS those before it on the way out (see newExplainer).
	full, beforeIPVS, afterIPVS *tracer.Ruleset
	node                        tracer.Node
	sets                        *tracer.Sets
	svc                         *model.DebugServicePort // the service port of the packet's destination

	// What the walk found: the first rule it could not follow, and whether IPVS scheduled it.
	unexplained string
	scheduled   bool
}

func newExplainer(live *explain.Live, pkt explain.Packet) (*explainer, error) {
	if live.Mode != "ipvs" {
		return nil, fmt.Errorf("explain in IPVS mode: the live state is of mode %q", live.Mode)
	}
	if live.Route == nil {
		return nil, fmt.Errorf("explain in IPVS mode: the live state has no routing")
	}
	fam := live.Family
	if fam == 0 {
		fam = model.IPv4
	}
	if pkt.Proto == "" {
		pkt.Proto = "tcp"
	}
	switch pkt.Proto {
	case "tcp", "udp", "sctp":
	default:
		return nil, fmt.Errorf("explain in IPVS mode: protocol %q: want tcp, udp or sctp", pkt.Proto)
	}
	if !pkt.Dst.Addr().IsValid() {
		return nil, fmt.Errorf("explain in IPVS mode: the packet needs a destination address and port")
	}
	x := &explainer{live: live, pkt: pkt, fam: fam}
	switch pkt.From {
	case explain.FromNode:
		x.local, x.pkt.InIface = true, ""
		if !pkt.Src.Addr().IsValid() {
			x.pkt.Src = netip.AddrPortFrom(x.nodeSource(pkt.Dst.Addr()), pkt.Src.Port())
		}
	case explain.FromPod, explain.FromExternal, "":
		if !pkt.Src.Addr().IsValid() {
			return nil, fmt.Errorf("explain in IPVS mode: a packet from a pod or from outside needs a source address")
		}
		if pkt.InIface == "" {
			// The interface the source is reached through is the one its packets arrive on.
			r, err := live.Route(pkt.Src.Addr())
			if err != nil || r.Device == "" {
				return nil, fmt.Errorf("explain in IPVS mode: which interface a packet from %s arrives on: no route back to it (%v); give the interface", pkt.Src.Addr(), err)
			}
			x.pkt.InIface = r.Device
		}
	default:
		return nil, fmt.Errorf("explain in IPVS mode: unknown origin %q (pod, node or external)", pkt.From)
	}
	if !x.pkt.Src.Addr().IsValid() {
		return nil, fmt.Errorf("explain in IPVS mode: no source address of this node reaches %s; give one", pkt.Dst.Addr())
	}
	if src, dst := x.pkt.Src.Addr(), x.pkt.Dst.Addr(); !fam.Of(src) || !fam.Of(dst) {
		return nil, fmt.Errorf("explain in IPVS mode: %s -> %s is not %s", src, dst, fam)
	}
	rs, err := tracer.ParseLenient(string(live.IptablesSave))
	if err != nil {
		return nil, fmt.Errorf("explain in IPVS mode: read the iptables rules: %w", err)
	}
	x.sets, err = readSets(live.IPSetSave, fam)
	if err != nil {
		return nil, fmt.Errorf("explain in IPVS mode: read the ipsets: %w", err)
	}
	x.full = rs
	if x.local {
		x.beforeIPVS = withoutHooks(rs, "filter/OUTPUT", "security/OUTPUT", "mangle/POSTROUTING", "nat/POSTROUTING",
			"mangle/INPUT", "filter/INPUT", "security/INPUT", "nat/INPUT")
	} else {
		x.beforeIPVS = withoutHooks(rs, "nat/INPUT")
	}
	// IPVS sends a scheduled packet on through LOCAL_OUT from its own hook: after nat OUTPUT.
	x.afterIPVS = withoutHooks(rs, "raw/OUTPUT", "mangle/OUTPUT", "nat/OUTPUT")

	x.vs = findVirtualServer(live.VirtualServers, x.pkt.Dst, x.pkt.Proto)
	x.svc = serviceFor(live.Model, x.pkt.Dst, x.pkt.Proto, x.isNodeAddr(pkt.Dst.Addr()))
	x.node = x.tracerNode()
	return x, nil
}

// isNodeAddr reports whether a is one of the node's own addresses, not a service address on
// kube-ipvs0.
func (x *explainer) isNodeAddr(a netip.Addr) bool {
	dev, ok := x.live.LocalAddrs[a]
	return ok && dev != DummyDevice
}

// nodeSource is the address a host process's packet to dst leaves with: the route's source, else
// the node's lowest address of dst's family that is not loopback.
func (x *explainer) nodeSource(dst netip.Addr) netip.Addr {
	if r, err := x.live.Route(dst); err == nil && r.Src.IsValid() {
		return r.Src
	}
	var best netip.Addr
	for a := range x.live.LocalAddrs {
		if a.Is4() == dst.Is4() && !a.IsLoopback() && (!best.IsValid() || a.Less(best)) {
			best = a
		}
	}
	return best
}

// tracerNode is the node as the tracer sees it: the local addresses (what addrtype LOCAL matches) on
// their interfaces, and live.Route for every other routing decision, whose source address is what
// MASQUERADE picks.
func (x *explainer) tracerNode() tracer.Node {
	byDev := map[string][]netip.Prefix{}
	for a, dev := range x.live.LocalAddrs {
		byDev[dev] = append(byDev[dev], netip.PrefixFrom(a, a.BitLen()))
	}
	n := tracer.Node{RouteLookup: func(dst netip.Addr) (string, netip.Addr) {
		r, err := x.live.Route(dst)
		if err != nil {
			return "", netip.Addr{}
		}
		return r.Device, r.Src
	}}
	for dev, addrs := range byDev {
		// Sorted, so that the tracer's fallback choice of a device's first address is stable.
		slices.SortFunc(addrs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		n.Interfaces = append(n.Interfaces, tracer.Interface{Name: dev, Addrs: addrs})
	}
	slices.SortFunc(n.Interfaces, func(a, b tracer.Interface) int { return strings.Compare(a.Name, b.Name) })
	return n
}

// withoutHooks returns rs with the named built-in chains ("table/CHAIN") emptied and accepting, so a
// walk passes them untouched. rs itself is not changed.
func withoutHooks(rs *tracer.Ruleset, hooks ...string) *tracer.Ruleset {
	cp := *rs // keeps how rs was parsed (leniently)
	out := &cp
	out.Tables = make(map[string]*tracer.Table, len(rs.Tables))
	for name, t := range rs.Tables {
		out.Tables[name] = t
	}
	for _, h := range hooks {
		table, chain, _ := strings.Cut(h, "/")
		t := out.Tables[table]
		if t == nil || t.Chains[chain] == nil {
			continue
		}
		if t == rs.Tables[table] {
			c := *t
			c.Chains = make(map[string]*tracer.Chain, len(t.Chains))
			for n, ch := range t.Chains {
				c.Chains[n] = ch
			}
			out.Tables[table], t = &c, &c
		}
		// A new chain, not a copy: a leniently parsed chain carries its unparsed rules with it.
		t.Chains[chain] = &tracer.Chain{Name: chain, Builtin: true, Policy: "ACCEPT"}
	}
	return out
}

func (x *explainer) tracerPacket(dst netip.AddrPort, local bool, mark uint32) tracer.Packet {
	p := tracer.Packet{
		Src: x.pkt.Src.Addr(), SrcPort: x.pkt.Src.Port(), Dst: dst.Addr(), DstPort: dst.Port(),
		Proto: x.pkt.Proto, Local: local, Mark: mark,
	}
	if !local {
		p.InIface = x.pkt.InIface
	}
	return p
}

// walk returns every way the packet may go.
func (x *explainer) walk() ([]explain.Outcome, error) {
	first := x.tracerPacket(x.pkt.Dst, x.local, 0)
	if x.vs == nil {
		// No virtual server: the rules alone decide, all the way.
		res, err := tracer.New(x.full, x.node, x.sets).Trace(first)
		if err != nil {
			return nil, err
		}
		out := make([]explain.Outcome, 0, len(res.Outcomes))
		for _, o := range res.Outcomes {
			out = append(out, x.rulesOnly(o))
		}
		return out, nil
	}
	res, err := tracer.New(x.beforeIPVS, x.node, x.sets).Trace(first)
	if err != nil {
		return nil, err
	}
	var out []explain.Outcome
	for _, o := range res.Outcomes {
		// From outside, IPVS sees only what is delivered to the node; from the node, everything
		// that leaves nat OUTPUT.
		reaches := o.Verdict == tracer.Accept && (x.local || o.Delivery == "local")
		if !reaches {
			// Stopped before IPVS, or forwarded past the node (beforeIPVS differs from the live
			// rules only on the way to IPVS, so this walk is the whole of it).
			out = append(out, x.rulesOnly(o))
			continue
		}
		more, err := x.viaIPVS(o)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	return out, nil
}

// rulesOnly turns a walk that no virtual server took part in into an outcome.
func (x *explainer) rulesOnly(o tracer.Outcome) explain.Outcome {
	out := explain.Outcome{Probability: o.Probability, Steps: x.steps(o.Rules, x.svc)}
	switch o.Verdict {
	case tracer.Drop:
		out.Verdict = explain.Dropped
	case tracer.Reject:
		out.Verdict, out.RejectWith = explain.Rejected, o.RejectWith
	case tracer.Unknown:
		// Another agent's rule (or one the tracer does not know) that may match: what it does is
		// not guessed.
		out.Verdict = explain.Unexplained
		r := o.Opaque.Rule
		out.Steps = append(out.Steps, explain.Step{Hook: o.Opaque.Table + "/" + o.Opaque.Hook, Chain: r.Chain, Rule: r.String(),
			Note: r.Action() + "; the walk cannot go past it"})
		if x.unexplained == "" {
			x.unexplained = r.Unexplained()
		}
		return out
	default:
		out.Verdict = explain.NotHandled
		if touchedBySwitchyard(o.Rules) {
			// Accepted by Switchyard's rules, not scheduled: delivered to the node itself.
			out.Verdict = explain.Delivered
		}
		if o.DNATed {
			out.Endpoint = o.Dst
		}
		out.Route = x.route(o.Dst.Addr())
	}
	if o.Reason != "" {
		hook := "routing"
		if len(o.Hooks) > 0 && !strings.HasPrefix(o.Reason, "no route") {
			hook = o.Hooks[len(o.Hooks)-1]
		}
		out.Steps = append(out.Steps, explain.Step{Hook: hook, Note: o.Reason})
	}
	if o.Masqueraded {
		out.Masquerade = o.Src.Addr()
	}
	return out
}

// viaIPVS schedules a packet that reached IPVS: one outcome per real server the scheduler may pick,
// each walked on from IPVS through filter OUTPUT and POSTROUTING with its mark, or the one outcome of
// a virtual server without a usable real server.
func (x *explainer) viaIPVS(before tracer.Outcome) ([]explain.Outcome, error) {
	vs := x.vs
	steps := x.steps(before.Rules, x.svc)
	where := "IPVS (LOCAL_IN, after filter INPUT)"
	if x.local {
		where = "IPVS (LOCAL_OUT, after nat OUTPUT)"
	}
	vsStep := explain.Step{Hook: "ipvs", Rule: vsRule(vs), Service: serviceRef(x.svc)}
	shares, how := schedule(vs)
	if len(shares) == 0 {
		verdict, with, why := noRealServer(vs, x.fam)
		vsStep.Note = where + ": virtual server " + vs.Addr.String() + ": " + why
		return []explain.Outcome{{
			Probability: before.Probability, Verdict: verdict, RejectWith: with,
			Steps: append(steps, vsStep),
		}}, nil
	}
	affinity := ""
	if vs.Persistent {
		affinity = "; the virtual server is persistent (ClientIP affinity): see the note"
	}
	x.scheduled = true
	after := tracer.New(x.afterIPVS, x.node, x.sets)
	var out []explain.Outcome
	for _, sh := range shares {
		step := vsStep
		step.Note = fmt.Sprintf("%s: virtual server %s schedules the connection to real server %s (weight %d) with probability %.4g: %s%s",
			where, vs.Addr, sh.rs.Addr, sh.rs.Weight, sh.p, how, affinity)
		res, err := after.Trace(x.tracerPacket(sh.rs.Addr, true, before.Mark))
		if err != nil {
			return nil, fmt.Errorf("after IPVS, to real server %s: %w", sh.rs.Addr, err)
		}
		for _, o := range res.Outcomes {
			oc := x.rulesOnly(o)
			oc.Probability = before.Probability * sh.p * o.Probability
			oc.Steps = append(append(slices.Clone(steps), step), oc.Steps...)
			if oc.Verdict == explain.Delivered || oc.Verdict == explain.NotHandled {
				oc.Verdict = explain.Delivered
				oc.Endpoint = sh.rs.Addr
				oc.EndpointNode = endpointNode(x.svc, sh.rs.Addr)
			}
			out = append(out, oc)
		}
	}
	return out, nil
}

// steps turns the rules a walk matched into steps. A rule of IPVS mode's own chains names the
// service port of the destination, whose set entry it matched.
func (x *explainer) steps(hits []tracer.Hit, svc *model.DebugServicePort) []explain.Step {
	out := make([]explain.Step, 0, len(hits))
	for _, h := range hits {
		r := h.Rule
		st := explain.Step{Hook: h.Table + "/" + h.Hook, Chain: r.Chain, Rule: r.String(), Note: r.Action()}
		if isOwnChain(r.Chain) {
			st.Service = serviceRef(svc)
		}
		switch {
		case r.Chain == chainMarkMasq:
			st.Note += " (marks the packet to be masqueraded in " + chainPostrouting + ")"
		case r.Chain == chainPostrouting && r.TargetName() == "MARK":
			st.Note += " (takes the masquerade mark off again before masquerading)"
		}
		out = append(out, st)
	}
	return out
}

func isOwnChain(chain string) bool { return strings.HasPrefix(chain, "SY-IPVS-") }

// touchedBySwitchyard reports whether a rule of IPVS mode's own chains did something to the packet:
// the jumps into them match every packet, and a RETURN hands it back untouched, so neither counts.
func touchedBySwitchyard(hits []tracer.Hit) bool {
	for _, h := range hits {
		if isOwnChain(h.Rule.Chain) && h.Rule.TargetName() != "RETURN" {
			return true
		}
	}
	return false
}

// route is the routing decision for a destination, nil when live.Route has none.
func (x *explainer) route(dst netip.Addr) *explain.Route {
	r, err := x.live.Route(dst)
	if err != nil {
		return nil
	}
	return &r
}

// readSets reads `ipset save` text into the tracer's sets. tracer.ParseIPSetSave reads IPv4 sets only
// (it refuses "family inet6"); an IPv6 set holds the same kinds of members (addresses, prefixes,
// protocol:port), which the tracer's sets test alike for both families, so IPv6 mode's sets are
// read here through the tracer's own Create and Add.
func readSets(text string, fam model.IPFamily) (*tracer.Sets, error) {
	if fam != model.IPv6 {
		return tracer.ParseIPSetSave(text)
	}
	sets := tracer.NewSets()
	for i, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		var err error
		switch {
		case len(f) == 0:
		case f[0] == "create" && len(f) >= 3:
			err = sets.Create(f[1], f[2])
		case f[0] == "add" && len(f) == 3:
			err = sets.Add(f[1], f[2])
		default:
			err = fmt.Errorf("not a create or add line")
		}
		if err != nil {
			return nil, fmt.Errorf("ipset save line %d %q: %w", i+1, line, err)
		}
	}
	return sets, nil
}
