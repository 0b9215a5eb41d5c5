package tracer

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
)

// errNotMine tells the rule parser that a module does not own an option, so it can offer the option
// to another module (iptables lets any loaded match claim an option, latest first).
var errNotMine = errors.New("option not handled")

// module is a parsed -m match or target extension that takes options.
type module interface {
	// option consumes opt (negated when neg) and returns how many of args it used, or errNotMine.
	option(opt string, neg bool, args []string) (int, error)
	// finish checks the module's options once the rule is complete.
	finish(r *ruleInfo) error
}

// ruleInfo is what modules may check about the rest of their rule.
type ruleInfo struct {
	table, chain string
	proto        string // "" when the rule has no -p, or when -p is negated
}

// parseRule parses the words after "-A CHAIN". Every word must be understood.
func parseRule(table, chain string, toks []string) (*Rule, error) {
	r := &Rule{Chain: chain, Text: utiliptables.JoinWords(toks)}
	info := &ruleInfo{table: table, chain: chain}
	var mods []module // in the order they were named; options go to the latest that claims them
	var tgt module
	fail := func(format string, a ...any) (*Rule, error) {
		return nil, fmt.Errorf("%s: %s", r.String(), fmt.Sprintf(format, a...))
	}
	neg := false
	for i := 0; i < len(toks); i++ {
		tok := toks[i]
		if tok == "!" {
			if neg {
				return fail("double negation")
			}
			neg = true
			continue
		}
		arg := func() (string, bool) {
			if i+1 >= len(toks) {
				return "", false
			}
			i++
			return toks[i], true
		}
		wasNeg := neg
		neg = false
		switch tok {
		case "-s", "--source", "-d", "--destination":
			v, ok := arg()
			if !ok {
				return fail("%s needs an address", tok)
			}
			p, err := parsePrefix(v)
			if err != nil {
				return fail("%s: %v", tok, err)
			}
			r.generic = append(r.generic, &addrMatch{dst: tok == "-d" || tok == "--destination", prefix: p, neg: wasNeg})
		case "-p", "--protocol":
			v, ok := arg()
			if !ok {
				return fail("-p needs a protocol")
			}
			p, err := parseProto(v)
			if err != nil {
				return fail("%v", err)
			}
			if !wasNeg && p != "all" {
				info.proto = p
			}
			r.generic = append(r.generic, &protoMatch{proto: p, neg: wasNeg})
		case "-i", "--in-interface", "-o", "--out-interface":
			v, ok := arg()
			if !ok || v == "" {
				return fail("%s needs an interface", tok)
			}
			out := tok == "-o" || tok == "--out-interface"
			if out && (chain == "PREROUTING" || chain == "INPUT") {
				return fail("-o cannot be used in %s", chain)
			}
			if !out && (chain == "OUTPUT" || chain == "POSTROUTING") {
				return fail("-i cannot be used in %s", chain)
			}
			r.generic = append(r.generic, &ifaceMatch{out: out, name: v, neg: wasNeg})
		case "-m", "--match":
			if wasNeg {
				return fail("! before -m")
			}
			v, ok := arg()
			if !ok {
				return fail("-m needs a module name")
			}
			m, err := newMatchModule(v)
			if err != nil {
				return fail("%v", err)
			}
			mods = append(mods, m)
			r.matches = append(r.matches, m.(match))
		case "-j", "--jump", "-g", "--goto":
			if wasNeg {
				return fail("! before %s", tok)
			}
			if r.target != nil {
				return fail("more than one target")
			}
			v, ok := arg()
			if !ok {
				return fail("%s needs a target", tok)
			}
			t, m, err := newTarget(v, tok == "-g" || tok == "--goto")
			if err != nil {
				return fail("%v", err)
			}
			r.target, tgt = t, m
		default:
			if !strings.HasPrefix(tok, "-") {
				return fail("unexpected word %q", tok)
			}
			n, err := offerOption(tok, wasNeg, toks[i+1:], tgt, mods)
			if errors.Is(err, errNotMine) && (tok == "--dport" || tok == "--sport" || tok == "--destination-port" || tok == "--source-port") && isPortProto(info.proto) {
				// "-p tcp --dport 80" loads the protocol's match implicitly.
				m, _ := newMatchModule(info.proto)
				mods = append(mods, m)
				r.matches = append(r.matches, m.(match))
				n, err = m.option(tok, wasNeg, toks[i+1:])
			}
			if errors.Is(err, errNotMine) {
				return fail("unknown option %q", tok)
			}
			if err != nil {
				return fail("%s: %v", tok, err)
			}
			i += n
		}
	}
	if neg {
		return fail("dangling !")
	}
	for _, m := range mods {
		if err := m.finish(info); err != nil {
			return fail("%v", err)
		}
		if c, ok := m.(*commentMatch); ok {
			r.Comment = c.text
		}
	}
	if tgt != nil {
		if err := tgt.finish(info); err != nil {
			return fail("%v", err)
		}
	}
	return r, nil
}

func offerOption(opt string, neg bool, args []string, tgt module, mods []module) (int, error) {
	if tgt != nil {
		if n, err := tgt.option(opt, neg, args); !errors.Is(err, errNotMine) {
			return n, err
		}
	}
	for i := len(mods) - 1; i >= 0; i-- {
		if n, err := mods[i].option(opt, neg, args); !errors.Is(err, errNotMine) {
			return n, err
		}
	}
	return 0, errNotMine
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%s has host bits set", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseProto(s string) (string, error) {
	switch strings.ToLower(s) {
	case "tcp", "6":
		return "tcp", nil
	case "udp", "17":
		return "udp", nil
	case "sctp", "132":
		return "sctp", nil
	case "icmp", "1":
		return "icmp", nil
	case "all", "0":
		return "all", nil
	}
	return "", fmt.Errorf("unsupported protocol %q", s)
}

func isPortProto(p string) bool { return p == "tcp" || p == "udp" || p == "sctp" }

// portRange is an inclusive range; a single port has lo == hi.
type portRange struct{ lo, hi uint16 }

func (p portRange) contains(port uint16) bool { return port >= p.lo && port <= p.hi }

func parsePortRange(s string) (portRange, error) {
	lo, hi, isRange := strings.Cut(s, ":")
	a, err := parsePort(lo)
	if err != nil {
		return portRange{}, err
	}
	if !isRange {
		return portRange{a, a}, nil
	}
	b, err := parsePort(hi)
	if err != nil {
		return portRange{}, err
	}
	if b < a {
		return portRange{}, fmt.Errorf("port range %s is backwards", s)
	}
	return portRange{a, b}, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return uint16(n), nil
}

// parseMark reads "value" or "value/mask" (decimal or 0x hex); the mask defaults to all ones.
func parseMark(s string) (value, mask uint32, err error) {
	v, m, hasMask := strings.Cut(s, "/")
	vv, err := strconv.ParseUint(v, 0, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("bad mark %q", s)
	}
	mask = 0xffffffff
	if hasMask {
		mm, err := strconv.ParseUint(m, 0, 32)
		if err != nil {
			return 0, 0, fmt.Errorf("bad mark mask %q", s)
		}
		mask = uint32(mm)
	}
	return uint32(vv), mask, nil
}

// need returns args[0] or an error naming opt.
func need(opt string, args []string) (string, error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "--") {
		return "", fmt.Errorf("%s needs a value", opt)
	}
	return args[0], nil
}
