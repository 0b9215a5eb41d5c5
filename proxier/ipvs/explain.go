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
		return nil, fmt.Errorf("explain %s %s -> %s in IPVS mode: %w", pkt.Proto, pkt.Src, pkt.Dst, err)
	}
	slices.SortStableFunc(outcomes, func(a, b explain.Outcome) int {
		if c := cmp.Compare(b.Probability, a.Probability); c != 0 {
			return c
		}
		return a.Endpoint.Compare(b.Endpoint)
	})
	return &explain.Report{Packet: x.pkt, Mode: "ipvs", Outcomes: outcomes}, nil
}

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
	services                    *serviceIndex
	svc                         *model.DebugServicePort // the service port of the packet's destination
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
	if fam == model.IPv6 {
		// The tracer's ipset reader knows IPv4 sets only.
		return nil, fmt.Errorf("explain in IPVS mode: IPv6 is not supported yet")
	}
	switch pkt.Proto {
	case "tcp", "udp", "sctp":
	default:
		return nil, fmt.Errorf("explain in IPVS mode: protocol %q: want tcp, udp or sctp", pkt.Proto)
	}
	if !pkt.Src.Addr().IsValid() || !pkt.Dst.Addr().IsValid() {
		return nil, fmt.Errorf("explain in IPVS mode: the packet needs a source and a destination address")
	}
	if !fam.Of(pkt.Src.Addr()) || !fam.Of(pkt.Dst.Addr()) {
		return nil, fmt.Errorf("explain in IPVS mode: %s -> %s is not %s", pkt.Src.Addr(), pkt.Dst.Addr(), fam)
	}
	x := &explainer{live: live, pkt: pkt, fam: fam, local: pkt.From == explain.FromNode}
	switch {
	case x.local:
		x.pkt.InIface = ""
	case pkt.InIface == "":
		// The interface the source is reached through is the one its packets arrive on.
		r, err := live.Route(pkt.Src.Addr())
		if err != nil {
			return nil, fmt.Errorf("explain in IPVS mode: which interface %s arrives on: %w", pkt.Src.Addr(), err)
		}
		x.pkt.InIface = r.Device
	}
	rs, err := tracer.Parse(string(live.IptablesSave))
	if err != nil {
		return nil, fmt.Errorf("explain in IPVS mode: read the iptables rules: %w", err)
	}
	x.sets, err = tracer.ParseIPSetSave(live.IPSetSave)
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

	x.vs = findVirtualServer(live.VirtualServers, pkt.Dst, pkt.Proto)
	x.services = newServiceIndex(live.Model)
	x.svc = x.services.lookup(pkt.Dst, pkt.Proto, x.isNodeAddr(pkt.Dst.Addr()))
	x.node = x.tracerNode()
	return x, nil
}

// isNodeAddr reports whether a is one of the node's own addresses, not a service address on
// kube-ipvs0.
func (x *explainer) isNodeAddr(a netip.Addr) bool {
	dev, ok := x.live.LocalAddrs[a]
	return ok && dev != DummyDevice
}

// tracerNode is the node as the tracer routes: the local addresses on their interfaces, and a host
// route, from live.Route, for each address the walk sends a packet to (the destination, the real
// servers). An address live.Route has no answer for has no route: the tracer drops its packet.
func (x *explainer) tracerNode() tracer.Node {
	byDev := map[string][]netip.Prefix{}
	for a, dev := range x.live.LocalAddrs {
		byDev[dev] = append(byDev[dev], netip.PrefixFrom(a, a.BitLen()))
	}
	var n tracer.Node
	for dev, addrs := range byDev {
		// Sorted, so that MASQUERADE's choice of the device's first address is stable.
		slices.SortFunc(addrs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		n.Interfaces = append(n.Interfaces, tracer.Interface{Name: dev, Addrs: addrs})
	}
	slices.SortFunc(n.Interfaces, func(a, b tracer.Interface) int { return strings.Compare(a.Name, b.Name) })
	dsts := []netip.Addr{x.pkt.Dst.Addr()}
	if x.vs != nil {
		for _, rs := range x.vs.RealServers {
			dsts = append(dsts, rs.Addr.Addr())
		}
	}
	for _, d := range dsts {
		if r, err := x.live.Route(d); err == nil && r.Device != "" {
			n.Routes = append(n.Routes, tracer.Route{Dst: netip.PrefixFrom(d, d.BitLen()), Iface: r.Device})
		}
	}
	return n
}

// withoutHooks returns rs with the named built-in chains ("table/CHAIN") emptied and accepting, so a
// walk passes them untouched. rs itself is not changed.
func withoutHooks(rs *tracer.Ruleset, hooks ...string) *tracer.Ruleset {
	out := &tracer.Ruleset{Tables: map[string]*tracer.Table{}}
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
			c := &tracer.Table{Name: t.Name, Chains: make(map[string]*tracer.Chain, len(t.Chains))}
			for n, ch := range t.Chains {
				c.Chains[n] = ch
			}
			out.Tables[table], t = c, c
		}
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
		out.Steps = append(out.Steps, explain.Step{Hook: "routing", Note: o.Reason})
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
		affinity = "; ClientIP affinity (IPVS persistence): a client that reached a real server within the affinity timeout goes back to it, and these shares are for a client that has not"
	}
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

// steps turns the rules a walk matched into steps, each with the hook it was met at: a rule in a
// built-in chain names its hook, and a rule in a user chain was reached from the last one. A rule of
// IPVS mode's own chains names the service port of the destination, whose set entry it matched.
func (x *explainer) steps(hits []tracer.Hit, svc *model.DebugServicePort) []explain.Step {
	out := make([]explain.Step, 0, len(hits))
	hook := ""
	for _, h := range hits {
		if t := x.full.Tables[h.Table]; t != nil {
			if c := t.Chains[h.Rule.Chain]; c != nil && c.Builtin {
				hook = h.Table + "/" + h.Rule.Chain
			}
		}
		st := explain.Step{Hook: hook, Chain: h.Rule.Chain, Rule: h.Rule.String(), Note: h.Rule.Comment}
		if isOwnChain(h.Rule.Chain) {
			st.Service = serviceRef(svc)
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
		if isOwnChain(h.Rule.Chain) && !strings.HasSuffix(h.Rule.Text, "-j RETURN") {
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
