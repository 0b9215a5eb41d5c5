package explain

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// WriteJSON writes the report as indented JSON, the form tools read (`switchyard explain
// --output json`).
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// Text is the report as WriteText writes it, for a test failure or a log line.
func (r *Report) Text() string {
	var b strings.Builder
	_ = WriteText(&b, r) // a strings.Builder never fails a write
	return b.String()
}

// DeliveredTo lists, sorted and once each, the endpoint addresses the report's outcomes deliver to,
// and the verdicts of its other outcomes: what a test or the demo compares with the pods that really
// answered.
func (r *Report) DeliveredTo() (addrs []string, others []Verdict) {
	for _, o := range r.Outcomes {
		if o.Verdict != Delivered || !o.Endpoint.IsValid() {
			if !slices.Contains(others, o.Verdict) {
				others = append(others, o.Verdict)
			}
			continue
		}
		if a := o.Endpoint.Addr().String(); !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	slices.Sort(addrs)
	return addrs, others
}

// WriteText writes the report for people: the packet, each outcome with its probability, endpoint,
// node, masquerade, the steps that led there (indented) and the route it takes next, then the
// likely causes, the notes, and last the rule the walk could not explain past, if any.
func WriteText(w io.Writer, rep *Report) error {
	tw := &textWriter{w: w}
	p := rep.Packet
	tw.line(0, "packet: %s", describePacket(p))
	tw.line(0, "mode: %s", rep.Mode)
	for i, o := range rep.Outcomes {
		tw.line(0, "")
		tw.line(0, "outcome %d of %d (probability %s): %s", i+1, len(rep.Outcomes), percent(o.Probability), describeVerdict(o))
		if o.Masquerade.IsValid() {
			tw.line(1, "masquerade: the source becomes %s", o.Masquerade)
		} else if o.Verdict == Delivered || o.Verdict == NotHandled {
			tw.line(1, "masquerade: no, the source stays %s", sourceText(p))
		}
		if len(o.Steps) > 0 {
			tw.line(1, "steps:")
		}
		for _, s := range o.Steps {
			head := s.Hook
			if s.Chain != "" && !strings.HasSuffix(s.Hook, "/"+s.Chain) {
				head += " " + s.Chain
			}
			if s.Service != nil {
				head += " [" + s.Service.String() + "]"
			}
			tw.line(2, "%s", head)
			if s.Rule != "" {
				tw.line(3, "%s", s.Rule)
			}
			if s.Note != "" {
				tw.line(3, "-> %s", s.Note)
			}
		}
		if o.Route != nil {
			tw.line(1, "route: %s", describeRoute(o.Route))
		}
	}
	if len(rep.Causes) > 0 {
		tw.line(0, "")
		tw.line(0, "likely causes:")
		for _, c := range rep.Causes {
			tw.line(1, "- %s (%s)", c.Summary, c.Kind)
			for _, e := range c.Evidence {
				tw.line(2, "%s", e)
			}
		}
	}
	if len(rep.Notes) > 0 {
		tw.line(0, "")
		for _, n := range rep.Notes {
			tw.line(0, "note: %s", n)
		}
	}
	if rep.Unexplained != "" {
		tw.line(0, "")
		tw.line(0, "UNEXPLAINED: %s", rep.Unexplained)
	}
	return tw.err
}

// String is "namespace/name:port" (":port" only for a named port), as Switchyard's rule comments
// write it.
func (s ServiceRef) String() string {
	out := s.Namespace + "/" + s.Name
	if s.Port != "" {
		out += ":" + s.Port
	}
	return out
}

type textWriter struct {
	w   io.Writer
	err error
}

func (t *textWriter) line(indent int, format string, a ...any) {
	if t.err != nil {
		return
	}
	s := fmt.Sprintf(format, a...)
	if s != "" {
		s = strings.Repeat("  ", indent) + s
	}
	_, t.err = io.WriteString(t.w, s+"\n")
}

func describePacket(p Packet) string {
	proto := p.Proto
	if proto == "" {
		proto = "tcp"
	}
	s := fmt.Sprintf("%s %s -> %s, from %s", proto, sourceText(p), p.Dst, p.From)
	if p.InIface != "" {
		s += " (arriving on " + p.InIface + ")"
	}
	return s
}

func sourceText(p Packet) string {
	switch {
	case !p.Src.Addr().IsValid():
		return "(the node's address)"
	case p.Src.Port() == 0:
		return p.Src.Addr().String() + ":any"
	}
	return p.Src.String()
}

func percent(p float64) string {
	s := fmt.Sprintf("%.2f", p*100)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + "%"
}

func describeVerdict(o Outcome) string {
	switch o.Verdict {
	case Delivered:
		if !o.Endpoint.IsValid() {
			return "delivered, not DNATed"
		}
		s := "delivered to endpoint " + o.Endpoint.String()
		if o.EndpointNode != "" {
			s += " on node " + o.EndpointNode
		}
		return s
	case Rejected:
		if o.RejectWith != "" {
			return "rejected with " + o.RejectWith
		}
		return "rejected"
	case Dropped:
		return "dropped"
	case NotHandled:
		return "not handled by Switchyard (no rule of its own touched it; it goes on as routed)"
	case Unexplained:
		return "unexplained (the walk stopped at a rule it cannot follow)"
	}
	return string(o.Verdict)
}

func describeRoute(r *Route) string {
	s := r.Dst.String() + " via " + r.Device
	if r.Gateway.IsValid() {
		s += " gateway " + r.Gateway.String()
	}
	if r.Kind != "" {
		s += " (" + r.Kind
		if r.Node != "" {
			s += " to node " + r.Node
		}
		s += ")"
	}
	return s
}
