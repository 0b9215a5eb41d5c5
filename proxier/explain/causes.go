package explain

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/switchyard/switchyard/proxier/model"
)

// The kinds of Cause.
const (
	CauseNoReadyEndpoints    = "no-ready-endpoints"
	CauseETPLocalNoLocal     = "etp-local-no-local-endpoints"
	CauseOutsideSourceRanges = "source-outside-loadbalancer-source-ranges"
	CauseRulesOlderThanModel = "rules-older-than-model"
	CauseConntrackPinned     = "conntrack-pinned"
)

// NoModelNote is the report's note when the daemon's model could not be read.
const NoModelNote = "the daemon's model (/debug/model) was not available: causes that need it " +
	"(no ready endpoints, eTP=Local without local endpoints, source outside loadBalancerSourceRanges, " +
	"rules older than the model) were not checked"

// Causes looks for the likely reasons behind rep's outcomes in the daemon's model and the live
// conntrack entries, each with its evidence. A walker calls it once its outcomes are in place; it
// adds NoModelNote to rep.Notes when live.Model is nil. Like the walks, it reads only live and rep.
func Causes(live *Live, rep *Report) []Cause {
	var out []Cause
	if live.Model == nil {
		rep.AddNote(NoModelNote)
	} else {
		for _, sp := range addressedPorts(live, rep.Packet) {
			out = append(out, serviceCauses(live, rep, sp)...)
		}
		out = append(out, staleRules(live.Model, live.Family)...)
	}
	if c, ok := conntrackPinned(live, rep); ok {
		out = append(out, c)
	}
	return out
}

// AddNote adds a note to the report unless it is there already.
func (r *Report) AddNote(note string) { r.Notes = appendOnce(r.Notes, note) }

func appendOnce(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// addressed is a service port a packet is sent to, and through which of its addresses.
type addressed struct {
	sp *model.DebugServicePort
	// via is "cluster IP", "external IP", "load balancer IP" or "node port".
	via string
}

func (a addressed) external() bool { return a.via != "cluster IP" }

// addressedPorts finds the service ports whose addresses the packet's destination is, from the
// model (a node port on any of the node's own addresses).
func addressedPorts(live *Live, pkt Packet) []addressed {
	var out []addressed
	dst, port := pkt.Dst.Addr(), int32(pkt.Dst.Port())
	proto := pkt.Proto
	if proto == "" {
		proto = "tcp"
	}
	for i := range live.Model.Services {
		sp := &live.Model.Services[i]
		if !strings.EqualFold(string(sp.Protocol), proto) {
			continue
		}
		switch {
		case sp.ServicePort == port && contains(sp.ClusterIPs, dst):
			out = append(out, addressed{sp, "cluster IP"})
		case sp.ServicePort == port && contains(sp.ExternalIPs, dst):
			out = append(out, addressed{sp, "external IP"})
		case sp.ServicePort == port && contains(sp.LoadBalancerIPs, dst):
			out = append(out, addressed{sp, "load balancer IP"})
		case sp.NodePort != 0 && sp.NodePort == port && isLocal(live, dst):
			out = append(out, addressed{sp, "node port"})
		}
	}
	return out
}

func contains(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

func isLocal(live *Live, a netip.Addr) bool {
	_, ok := live.LocalAddrs[a]
	return ok || a.IsLoopback()
}

func serviceName(sp *model.DebugServicePort) string {
	s := sp.Namespace + "/" + sp.Name
	if sp.Port != "" {
		s += ":" + sp.Port
	}
	return s
}

// serviceCauses are the causes one addressed service port may explain.
func serviceCauses(live *Live, rep *Report, a addressed) []Cause {
	sp := a.sp
	name := serviceName(sp)
	var out []Cause
	if c, ok := noReadyEndpoints(rep, sp, name); ok {
		out = append(out, c)
	}
	// eTP=Local only binds traffic from outside the node (pods and host processes take the
	// cluster-wide endpoints), and only for the service's external addresses.
	if a.external() && sp.ExternalTrafficPolicy == model.PolicyLocal && len(sp.LocalEndpoints) == 0 && sp.HasAny &&
		(rep.Packet.From == FromExternal || anyVerdict(rep, Dropped) || anyVerdict(rep, Rejected)) {
		out = append(out, Cause{
			Kind: CauseETPLocalNoLocal,
			// iptables mode drops such traffic; IPVS mode's virtual server has no real server, so the
			// kernel answers with ICMP port unreachable. Either way it is not delivered here.
			Summary: fmt.Sprintf("%s has externalTrafficPolicy: Local and no endpoint on this node, so traffic from outside to its %s is not delivered here", name, a.via),
			Evidence: append([]string{
				"model: externalTrafficPolicy: Local",
				fmt.Sprintf("model: endpoints on this node (%s): none", live.Model.Node.Name),
				"model: endpoints elsewhere: " + endpointList(sp.Endpoints, func(e model.DebugEndpoint) bool { return !e.Local }),
			}, append(verdictEvidence(rep, Dropped), verdictEvidence(rep, Rejected)...)...),
		})
	}
	if a.via == "load balancer IP" && len(sp.LoadBalancerSourceRanges) > 0 && rep.Packet.Src.Addr().IsValid() {
		src := rep.Packet.Src.Addr()
		inside := false
		for _, p := range sp.LoadBalancerSourceRanges {
			if p.Contains(src) {
				inside = true
			}
		}
		if !inside {
			out = append(out, Cause{
				Kind:    CauseOutsideSourceRanges,
				Summary: fmt.Sprintf("the source %s is outside %s's loadBalancerSourceRanges", src, name),
				Evidence: append([]string{
					"packet: source " + src.String(),
					"model: loadBalancerSourceRanges: " + joinPrefixes(sp.LoadBalancerSourceRanges),
				}, verdictEvidence(rep, Dropped)...),
			})
		}
	}
	return out
}

func noReadyEndpoints(rep *Report, sp *model.DebugServicePort, name string) (Cause, bool) {
	for _, e := range sp.Endpoints {
		if e.Ready {
			return Cause{}, false
		}
	}
	ev := []string{fmt.Sprintf("model: %d endpoint(s), none ready", len(sp.Endpoints))}
	if len(sp.Endpoints) > 0 {
		ev[0] += ": " + endpointList(sp.Endpoints, func(model.DebugEndpoint) bool { return true })
	}
	if sp.HasAny {
		ev = append(ev, "model: serving terminating endpoints take the traffic as a fallback")
	} else {
		ev = append(ev, "model: no usable endpoint anywhere, so traffic to it is rejected")
	}
	ev = append(ev, verdictEvidence(rep, Rejected)...)
	return Cause{Kind: CauseNoReadyEndpoints, Summary: name + " has no ready endpoints", Evidence: ev}, true
}

// endpointList lists the endpoints keep selects with their conditions, or "none".
func endpointList(eps []model.DebugEndpoint, keep func(model.DebugEndpoint) bool) string {
	var parts []string
	for _, e := range eps {
		if !keep(e) {
			continue
		}
		var cond []string
		for _, c := range []struct {
			on   bool
			name string
		}{{e.Ready, "ready"}, {e.Serving, "serving"}, {e.Terminating, "terminating"}} {
			if c.on {
				cond = append(cond, c.name)
			}
		}
		if len(cond) == 0 {
			cond = append(cond, "not serving")
		}
		s := e.Endpoint.String() + " (" + strings.Join(cond, ", ")
		if e.NodeName != "" {
			s += ", on " + e.NodeName
		}
		parts = append(parts, s+")")
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

func anyVerdict(rep *Report, v Verdict) bool {
	for _, o := range rep.Outcomes {
		if o.Verdict == v {
			return true
		}
	}
	return false
}

// verdictEvidence quotes the last step of each outcome with verdict v: the rule that decided it.
func verdictEvidence(rep *Report, v Verdict) []string {
	var out []string
	for _, o := range rep.Outcomes {
		if o.Verdict != v || len(o.Steps) == 0 {
			continue
		}
		last := o.Steps[len(o.Steps)-1]
		what := last.Rule
		if what == "" {
			what = last.Note
		}
		out = appendOnce(out, fmt.Sprintf("%s: %s (%s)", v, what, last.Hook))
	}
	return out
}

// staleRules reports a sync of this family that failed, or one that has not yet caught up with a
// change of the model: the rules in the kernel are then older than what the daemon believes.
func staleRules(m *model.DebugModel, family model.IPFamily) []Cause {
	var out []Cause
	for _, s := range m.Syncs {
		if family != 0 && s.Family != family && s.IPFamily != fmt.Sprintf("IPv%d", family) {
			continue
		}
		var ev []string
		if s.LastError != "" {
			ev = append(ev, fmt.Sprintf("%s: the last sync (%s) failed: %s", s.IPFamily, stamp(s.LastAttempt), s.LastError))
		}
		if !s.ModelChangedAt.IsZero() && s.ModelChangedAt.After(s.LastSuccess) {
			ev = append(ev, fmt.Sprintf("%s: the model changed at %s, after the last successful sync (%s)", s.IPFamily, stamp(s.ModelChangedAt), stamp(s.LastSuccess)))
		}
		if len(ev) == 0 {
			continue
		}
		if s.LastError != "" {
			ev = append(ev, fmt.Sprintf("%s: last successful sync: %s", s.IPFamily, stamp(s.LastSuccess)))
		}
		out = append(out, Cause{Kind: CauseRulesOlderThanModel, Summary: "the rules in the kernel are older than the daemon's model", Evidence: ev})
	}
	return out
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// conntrackPinned finds a live conntrack entry of this client to this destination whose reply comes
// from an address that is not one of the service's current endpoints: packets of that flow keep
// going where the entry points, whatever the rules say now.
func conntrackPinned(live *Live, rep *Report) (Cause, bool) {
	pkt := rep.Packet
	if !pkt.Src.Addr().IsValid() {
		return Cause{}, false
	}
	current := map[netip.Addr]bool{}
	for _, o := range rep.Outcomes {
		if o.Endpoint.IsValid() {
			current[o.Endpoint.Addr()] = true
		}
	}
	if live.Model != nil {
		for _, a := range addressedPorts(live, pkt) {
			for _, e := range append(append([]netip.AddrPort(nil), a.sp.ClusterEndpoints...), a.sp.LocalEndpoints...) {
				current[e.Addr()] = true
			}
		}
	}
	proto := pkt.Proto
	if proto == "" {
		proto = "tcp"
	}
	var ev []string
	for _, e := range live.Conntrack {
		if !strings.EqualFold(e.Protocol, proto) || e.OrigDst != pkt.Dst || e.OrigSrc.Addr() != pkt.Src.Addr() {
			continue
		}
		// A TCP entry pins only its own connection: a new one comes from a new source port, so
		// without the packet's port there is nothing to pin. A UDP (or SCTP) client often keeps its
		// port, so any of its entries to this destination is evidence then.
		if pkt.Src.Port() != 0 && e.OrigSrc.Port() != pkt.Src.Port() ||
			pkt.Src.Port() == 0 && strings.EqualFold(proto, "tcp") {
			continue
		}
		if current[e.ReplySrc.Addr()] {
			continue
		}
		where := "to " + e.ReplySrc.String() + ", which is not a current endpoint"
		if e.ReplySrc == e.OrigDst {
			where = "to the service address itself, not DNATed (the entry predates the rules)"
		}
		ev = append(ev, fmt.Sprintf("conntrack: %s %s -> %s is pinned %s", strings.ToLower(e.Protocol), e.OrigSrc, e.OrigDst, where))
	}
	if len(ev) == 0 {
		return Cause{}, false
	}
	ev = append(ev, "current endpoints: "+addrList(current))
	return Cause{Kind: CauseConntrackPinned, Summary: "an existing conntrack entry pins this flow to an old endpoint", Evidence: ev}, true
}

func addrList(set map[netip.Addr]bool) string {
	var list []netip.Addr
	for a := range set {
		list = append(list, a)
	}
	if len(list) == 0 {
		return "none"
	}
	slices.SortFunc(list, netip.Addr.Compare)
	s := make([]string, len(list))
	for i, a := range list {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
