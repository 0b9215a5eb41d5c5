package tracer

import (
	"fmt"
	"strings"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
)

// opaqueRule is a rule a lenient parse could not understand. It keeps the generic matches that
// iptables-save prints first (-s, -d, -p, -i, -o, each possibly negated) as far as they parse, and
// nothing after them: those matches are ANDed with whatever the rule also checks, so a packet they
// reject cannot match the rule, while a packet they accept might.
func opaqueRule(chain string, toks []string, why error) *Rule {
	r := &Rule{Chain: chain, Text: utiliptables.JoinWords(toks), Unparsed: why}
	neg := false
	for i := 0; i+1 < len(toks); i++ {
		tok := toks[i]
		if tok == "!" && !neg {
			neg = true
			continue
		}
		v := toks[i+1]
		var m match
		switch tok {
		case "-s", "--source", "-d", "--destination":
			p, err := parsePrefix(v)
			if err != nil {
				return r
			}
			m = &addrMatch{dst: tok == "-d" || tok == "--destination", prefix: p, neg: neg}
		case "-p", "--protocol":
			p, err := parseProto(v)
			if err != nil {
				return r
			}
			m = &protoMatch{proto: p, neg: neg}
		case "-i", "--in-interface", "-o", "--out-interface":
			m = &ifaceMatch{out: tok == "-o" || tok == "--out-interface", name: v, neg: neg}
		default:
			return r
		}
		r.generic = append(r.generic, m)
		neg = false
		i++
	}
	return r
}

// ruleWords splits a parsed rule's text back into words (it was joined from them, so it splits).
func ruleWords(r *Rule) []string {
	w, err := utiliptables.SplitWords(r.Text)
	if err != nil {
		return nil
	}
	return w
}

// Unexplained is the message for a walk that stopped at r.
func (r *Rule) Unexplained() string {
	return "cannot explain past this rule: " + r.String()
}

// TargetName is what the rule jumps to: a verdict (ACCEPT, DROP, RETURN), REJECT, DNAT, SNAT,
// MASQUERADE, MARK, LOG, or a user chain; "" for a rule without a target or an opaque one.
func (r *Rule) TargetName() string {
	if r.target == nil {
		return ""
	}
	return r.target.targetName()
}

// Action says in words what the rule does when it matches, for reports.
func (r *Rule) Action() string {
	switch t := r.target.(type) {
	case nil:
		if r.Unparsed != nil {
			return "not understood: " + strings.TrimPrefix(r.Unparsed.Error(), r.String()+": ")
		}
		return "counts the packet, nothing else"
	case *verdictTarget:
		switch t.verdict {
		case "RETURN":
			return "returns to the calling chain"
		case "ACCEPT":
			return "accepts the packet in this table"
		}
		return "drops the packet"
	case *rejectTarget:
		return "rejects the packet with " + t.with
	case *jumpTarget:
		if t.isGoto {
			return "goes to chain " + t.chain
		}
		return "jumps to chain " + t.chain
	case *natTarget:
		switch t.kind {
		case "DNAT":
			to := t.addr.String()
			if t.port != 0 {
				to = fmt.Sprintf("%s port %d", to, t.port)
			}
			return "DNAT to " + to
		case "SNAT":
			return "SNAT to " + t.addr.String()
		}
		return "masquerades the packet (source becomes the out-interface's address)"
	case *markTarget:
		switch {
		case t.and == t.xor:
			return fmt.Sprintf("sets mark bits %#x", t.xor)
		case t.and == 0:
			return fmt.Sprintf("flips mark bits %#x", t.xor)
		case t.xor == 0:
			return fmt.Sprintf("clears mark bits %#x", t.and)
		}
		return fmt.Sprintf("sets the mark to (mark & %#x) ^ %#x", ^t.and, t.xor)
	case *logTarget:
		return "logs the packet"
	}
	return ""
}

// RecentList returns the -m recent list the rule uses and the command it is used with (--set,
// --rcheck, --update or --remove), or "" and "": ClientIP session affinity in Switchyard's rules.
func (r *Rule) RecentList() (name, cmd string) {
	for _, m := range r.matches {
		if rm, ok := m.(*recentMatch); ok {
			return rm.name, rm.cmd
		}
	}
	return "", ""
}
