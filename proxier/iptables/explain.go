package iptables

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/iptables/tracer"
	"github.com/switchyard/switchyard/proxier/model"
)

// Explain walks pkt through a node's live iptables rules (live.IptablesSave, every table) and says
// what happens to it: each rule it matches, mapped back to the Service port that produced it, the
// endpoints it may be DNATed to with their probabilities, masquerade, the verdict, the route it
// takes next, and the likely causes (explain.Causes). It reads only live, so it is a pure function
// of live and pkt.
//
// Other agents' rules the tracer does not understand do not stop it unless the packet reaches
// them: then the outcome is explain.Unexplained and Report.Unexplained names the rule. An error
// means the walk could not be made at all (rules that are not iptables-save output, a packet
// without the addresses it needs, no route to learn the in-interface from).
func Explain(live *explain.Live, pkt explain.Packet) (*explain.Report, error) {
	rs, err := tracer.ParseLenient(string(live.IptablesSave))
	if err != nil {
		return nil, fmt.Errorf("read the live rules: %w", err)
	}
	return explainRules(rs, live, pkt)
}

// explainRules is Explain on rules already parsed, so a benchmark can time the walk alone.
func explainRules(rs *tracer.Ruleset, live *explain.Live, pkt explain.Packet) (*explain.Report, error) {
	tp, err := tracerPacket(live, pkt)
	if err != nil {
		return nil, err
	}
	res, err := tracer.New(rs, liveNode(live), nil).Trace(tp)
	if err != nil {
		return nil, fmt.Errorf("walk the live rules: %w", err)
	}
	services := newServiceIndex(live, tp.Dst, tp.DstPort)
	rep := &explain.Report{Packet: pkt, Mode: "iptables"}
	for _, o := range res.Outcomes {
		if usesAffinity(o) {
			rep.AddNote(affinityNote)
		}
		out := outcomeOf(o, live, services)
		if o.Opaque != nil && rep.Unexplained == "" {
			rep.Unexplained = o.Opaque.Rule.Unexplained()
		}
		rep.Outcomes = append(rep.Outcomes, out)
	}
	// Say which source and in-interface the walk took when the operator left them out.
	rep.Packet.InIface = tp.InIface
	if !pkt.Src.Addr().IsValid() {
		rep.Packet.Src = netip.AddrPortFrom(tp.Src, tp.SrcPort)
	}
	rep.Causes = explain.Causes(live, rep)
	return rep, nil
}

// affinityNote is the report's note for a packet that meets ClientIP session affinity rules.
const affinityNote = "the Service has ClientIP session affinity: this walk assumes the client has no affinity entry yet; " +
	"a client with one goes to the endpoint it used before while the entry lasts"

func usesAffinity(o tracer.Outcome) bool {
	for _, h := range o.Rules {
		if _, cmd := h.Rule.RecentList(); cmd != "" {
			return true
		}
	}
	return false
}

// tracerPacket fills in what the tracer needs and the operator may leave out: a host process's
// source address, and the interface a packet from a pod or from outside arrives on (the one the
// node routes the source through).
func tracerPacket(live *explain.Live, pkt explain.Packet) (tracer.Packet, error) {
	if !pkt.Dst.IsValid() {
		return tracer.Packet{}, fmt.Errorf("explain: the packet needs a destination address and port")
	}
	dst := pkt.Dst.Addr()
	if live.Family != 0 && !live.Family.Of(dst) {
		return tracer.Packet{}, fmt.Errorf("explain: the live rules are of IPv%d, the destination %s is not", live.Family, dst)
	}
	p := tracer.Packet{Src: pkt.Src.Addr(), SrcPort: pkt.Src.Port(), Dst: dst, DstPort: pkt.Dst.Port(), Proto: strings.ToLower(pkt.Proto), InIface: pkt.InIface}
	if p.Proto == "" {
		p.Proto = "tcp"
	}
	switch pkt.From {
	case explain.FromNode:
		p.Local, p.InIface = true, ""
		if !p.Src.IsValid() {
			p.Src = nodeSource(live, dst)
		}
		if !p.Src.IsValid() {
			return tracer.Packet{}, fmt.Errorf("explain: no source address of this node reaches %s; give one", dst)
		}
	case explain.FromPod, explain.FromExternal, "":
		if !p.Src.IsValid() {
			return tracer.Packet{}, fmt.Errorf("explain: a packet from a pod or from outside needs a source address")
		}
		if p.InIface == "" {
			r, err := routeTo(live, p.Src)
			if err != nil || r.Device == "" {
				return tracer.Packet{}, fmt.Errorf("explain: which interface a packet from %s arrives on: no route back to it (%v); give the interface", p.Src, err)
			}
			p.InIface = r.Device
		}
	default:
		return tracer.Packet{}, fmt.Errorf("explain: unknown origin %q (pod, node or external)", pkt.From)
	}
	if p.Src.Is4() != p.Dst.Is4() {
		return tracer.Packet{}, fmt.Errorf("explain: source %s and destination %s are of different IP families", p.Src, dst)
	}
	return p, nil
}

// nodeSource is the address a host process's packet to dst leaves with: the route's source, else
// the node's first address of dst's family.
func nodeSource(live *explain.Live, dst netip.Addr) netip.Addr {
	if r, err := routeTo(live, dst); err == nil && r.Src.IsValid() {
		return r.Src
	}
	for _, a := range sortedLocalAddrs(live) {
		if a.Is4() == dst.Is4() && !a.IsLoopback() {
			return a
		}
	}
	return netip.Addr{}
}

func routeTo(live *explain.Live, dst netip.Addr) (explain.Route, error) {
	if live.Route == nil {
		return explain.Route{}, fmt.Errorf("no routing table")
	}
	return live.Route(dst)
}

func sortedLocalAddrs(live *explain.Live) []netip.Addr {
	out := make([]netip.Addr, 0, len(live.LocalAddrs))
	for a := range live.LocalAddrs {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

// liveNode is the tracer's view of the node: its addresses (what addrtype LOCAL matches) on their
// interfaces, and the node's own routing table for everything else.
func liveNode(live *explain.Live) tracer.Node {
	byIface := map[string][]netip.Prefix{}
	var names []string
	for _, a := range sortedLocalAddrs(live) {
		dev := live.LocalAddrs[a]
		if byIface[dev] == nil {
			names = append(names, dev)
		}
		byIface[dev] = append(byIface[dev], netip.PrefixFrom(a, a.BitLen()))
	}
	sort.Strings(names)
	n := tracer.Node{RouteLookup: func(dst netip.Addr) (string, netip.Addr) {
		r, err := routeTo(live, dst)
		if err != nil {
			return "", netip.Addr{}
		}
		return r.Device, r.Src
	}}
	for _, dev := range names {
		n.Interfaces = append(n.Interfaces, tracer.Interface{Name: dev, Addrs: byIface[dev]})
	}
	return n
}

// outcomeOf turns one of the tracer's outcomes into the report's.
func outcomeOf(o tracer.Outcome, live *explain.Live, services *serviceIndex) explain.Outcome {
	out := explain.Outcome{Probability: o.Probability, RejectWith: o.RejectWith, Steps: []explain.Step{}}
	touched := false
	for _, h := range o.Rules {
		out.Steps = append(out.Steps, services.step(h))
		if isOurs(h.Rule) {
			touched = true
		}
	}
	switch o.Verdict {
	case tracer.Accept:
		out.Verdict = explain.NotHandled
		if touched {
			out.Verdict = explain.Delivered
		}
	case tracer.Drop:
		out.Verdict = explain.Dropped
	case tracer.Reject:
		out.Verdict = explain.Rejected
	case tracer.Unknown:
		out.Verdict = explain.Unexplained
		out.Steps = append(out.Steps, explain.Step{Hook: o.Opaque.Table + "/" + o.Opaque.Hook, Chain: o.Opaque.Rule.Chain,
			Rule: o.Opaque.Rule.String(), Note: o.Opaque.Rule.Action() + "; the walk cannot go past it"})
	}
	if o.Reason != "" && o.Verdict != tracer.Unknown {
		hook := "routing"
		if len(o.Hooks) > 0 && !strings.HasPrefix(o.Reason, "no route") {
			hook = o.Hooks[len(o.Hooks)-1]
		}
		out.Steps = append(out.Steps, explain.Step{Hook: hook, Note: o.Reason})
	}
	if o.DNATed {
		out.Endpoint = o.Dst
		out.EndpointNode = services.nodeOf(o.Dst)
	}
	if o.Masqueraded {
		out.Masquerade = o.Src.Addr()
	}
	if o.Verdict == tracer.Accept {
		if r, err := routeTo(live, o.Dst.Addr()); err == nil {
			if !r.Dst.IsValid() {
				r.Dst = o.Dst.Addr()
			}
			out.Route = &r
		}
	}
	return out
}

// isOurs reports whether a rule did something to the packet on Switchyard's behalf: a rule in one of
// its chains that rewrote, marked, accepted, dropped or rejected it (passing through a dispatch
// chain does not count).
func isOurs(r *tracer.Rule) bool {
	if !strings.HasPrefix(r.Chain, chainPrefix) {
		return false
	}
	switch r.TargetName() {
	case "", "RETURN", "LOG":
		return false
	case "DNAT", "SNAT", "MASQUERADE", "MARK", "ACCEPT", "DROP", "REJECT":
		return true
	}
	return false // a jump
}

// serviceIndex maps Switchyard's chain names and rule comments back to the Service ports that
// produced them. Only the service ports whose addresses the packet is sent to can have rules in its
// path, so only theirs are indexed (hashing every port's chain names would cost more than the walk
// on a large node); a rule of any other port is still named by its comment.
type serviceIndex struct {
	byChain   map[string]*model.DebugServicePort
	endpoints map[netip.AddrPort]string // endpoint -> node
}

func newServiceIndex(live *explain.Live, dst netip.Addr, port uint16) *serviceIndex {
	ix := &serviceIndex{byChain: map[string]*model.DebugServicePort{}, endpoints: map[netip.AddrPort]string{}}
	if live.Model == nil {
		return ix
	}
	_, local := live.LocalAddrs[dst]
	local = local || dst.IsLoopback()
	for i := range live.Model.Services {
		sp := &live.Model.Services[i]
		if !addressedTo(sp, dst, int32(port), local) {
			continue
		}
		ch := chainsFor(debugName(sp), sp.Protocol)
		for _, c := range []string{ch.Cluster, ch.Local, ch.External} {
			ix.byChain[c] = sp
		}
		for _, ep := range sp.Endpoints {
			if ep.NodeName != "" {
				ix.endpoints[ep.Endpoint] = ep.NodeName
			}
		}
	}
	return ix
}

// addressedTo reports whether a packet to dst:port is sent to one of the service port's addresses
// (local: dst is the node's, where its node port listens).
func addressedTo(sp *model.DebugServicePort, dst netip.Addr, port int32, local bool) bool {
	if local && sp.NodePort == port {
		return true
	}
	if sp.ServicePort != port {
		return false
	}
	for _, list := range [][]netip.Addr{sp.ClusterIPs, sp.ExternalIPs, sp.LoadBalancerIPs} {
		if slices.Contains(list, dst) {
			return true
		}
	}
	return false
}

func debugName(sp *model.DebugServicePort) model.ServicePortName {
	return model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: sp.Namespace, Name: sp.Name}, Port: sp.Port}
}

func (ix *serviceIndex) nodeOf(ep netip.AddrPort) string { return ix.endpoints[ep] }

// step describes one matched rule.
func (ix *serviceIndex) step(h tracer.Hit) explain.Step {
	r := h.Rule
	st := explain.Step{Hook: h.Table + "/" + h.Hook, Chain: r.Chain, Rule: r.String(), Service: ix.serviceOf(r), Note: r.Action()}
	if r.TargetName() == "MARK" && strings.HasPrefix(r.Chain, chainPrefix) {
		// Switchyard's only mark is the masquerade bit: set on the way in, flipped back off in
		// SY-POSTROUTING just before MASQUERADE.
		if r.Chain == chainPostrouting {
			st.Note += " (takes the masquerade mark off again before masquerading)"
		} else {
			st.Note += " (marks the packet to be masqueraded in SY-POSTROUTING)"
		}
	}
	if list, cmd := r.RecentList(); cmd == "--set" {
		st.Note += "; ClientIP session affinity: records the client in " + list + " so that its next connections go to the same endpoint"
	} else if cmd != "" {
		st.Note += "; ClientIP session affinity: the client is in " + list
	}
	return st
}

// serviceOf names the Service port a rule was written for: by its chain's or its jump target's
// name, else by the service name in its comment.
func (ix *serviceIndex) serviceOf(r *tracer.Rule) *explain.ServiceRef {
	for _, c := range []string{r.Chain, r.TargetName()} {
		if sp := ix.byChain[c]; sp != nil {
			return &explain.ServiceRef{Namespace: sp.Namespace, Name: sp.Name, Port: sp.Port}
		}
	}
	if !strings.HasPrefix(r.Chain, chainPrefix) && !strings.HasPrefix(r.TargetName(), chainPrefix) {
		return nil
	}
	// Comments start with the port's name as "namespace/name" or "namespace/name:port", or say
	// "... for namespace/name[:port] ...": the one word with a slash.
	for _, word := range strings.Fields(r.Comment) {
		ns, rest, ok := strings.Cut(word, "/")
		if !ok || ns == "" || rest == "" {
			continue
		}
		name, port, _ := strings.Cut(rest, ":")
		return &explain.ServiceRef{Namespace: ns, Name: name, Port: port}
	}
	return nil
}
