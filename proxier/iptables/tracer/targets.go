package tracer

import (
	"fmt"
	"net/netip"
	"strings"
)

// target is what a rule does when it matches.
type target interface{ targetName() string }

// verdictTarget is ACCEPT, DROP or RETURN.
type verdictTarget struct{ verdict string }

// jumpTarget is -j or -g to a user chain.
type jumpTarget struct {
	chain  string
	isGoto bool
}

type rejectTarget struct{ with string }

// natTarget is DNAT, SNAT or MASQUERADE.
type natTarget struct {
	kind string
	addr netip.Addr // DNAT/SNAT address; zero for MASQUERADE
	port uint16     // 0 keeps the packet's port
	opts []string   // --random, --random-fully, --persistent, as written
}

// markTarget changes the packet mark: new = (old & ^and) ^ xor, which covers every MARK option.
type markTarget struct {
	and, xor uint32
	set      bool
}

type logTarget struct{ set bool }

func (t *verdictTarget) targetName() string { return t.verdict }
func (t *jumpTarget) targetName() string    { return t.chain }
func (t *rejectTarget) targetName() string  { return "REJECT" }
func (t *natTarget) targetName() string     { return t.kind }
func (t *markTarget) targetName() string    { return "MARK" }
func (t *logTarget) targetName() string     { return "LOG" }

func newTarget(name string, isGoto bool) (target, module, error) {
	builtinTarget := true
	var t target
	switch name {
	case "ACCEPT", "DROP", "RETURN":
		t = &verdictTarget{verdict: name}
	case "REJECT":
		t = &rejectTarget{with: "icmp-port-unreachable"}
	case "DNAT", "SNAT", "MASQUERADE":
		t = &natTarget{kind: name}
	case "MARK":
		t = &markTarget{}
	case "LOG":
		t = &logTarget{}
	default:
		builtinTarget = false
		if name == "" || strings.HasPrefix(name, "-") {
			return nil, nil, fmt.Errorf("bad target %q", name)
		}
		t = &jumpTarget{chain: name, isGoto: isGoto}
	}
	if builtinTarget && isGoto {
		return nil, nil, fmt.Errorf("-g needs a user chain, not %s", name)
	}
	if m, ok := t.(module); ok {
		return t, m, nil
	}
	return t, noOptions{name}, nil
}

// noOptions is the option parser of targets that take none.
type noOptions struct{ name string }

func (noOptions) option(string, bool, []string) (int, error) { return 0, errNotMine }
func (noOptions) finish(*ruleInfo) error                     { return nil }

var rejectTypes = map[string]bool{
	"icmp-net-unreachable": true, "icmp-host-unreachable": true, "icmp-port-unreachable": true,
	"icmp-proto-unreachable": true, "icmp-net-prohibited": true, "icmp-host-prohibited": true,
	"icmp-admin-prohibited": true, "tcp-reset": true,
	// ip6tables' spellings.
	"icmp6-no-route": true, "icmp6-adm-prohibited": true, "icmp6-addr-unreachable": true,
	"icmp6-port-unreachable": true,
}

func (t *rejectTarget) option(opt string, neg bool, args []string) (int, error) {
	if opt != "--reject-with" {
		return 0, errNotMine
	}
	v, err := need(opt, args)
	if err != nil || neg {
		return 0, fmt.Errorf("--reject-with needs a type")
	}
	if !rejectTypes[v] {
		return 0, fmt.Errorf("unsupported reject type %q", v)
	}
	t.with = v
	return 1, nil
}

func (t *rejectTarget) finish(r *ruleInfo) error {
	if t.with == "tcp-reset" && r.proto != "tcp" {
		return fmt.Errorf("--reject-with tcp-reset needs -p tcp")
	}
	return nil
}

func (t *natTarget) option(opt string, neg bool, args []string) (int, error) {
	if neg {
		return 0, fmt.Errorf("%s cannot be negated", opt)
	}
	switch {
	case opt == "--to-destination" && t.kind == "DNAT", opt == "--to-source" && t.kind == "SNAT":
		if t.addr.IsValid() {
			return 0, fmt.Errorf("only one %s", opt)
		}
		v, err := need(opt, args)
		if err != nil {
			return 0, err
		}
		if err := t.parseTo(v); err != nil {
			return 0, fmt.Errorf("%s %s: %w", opt, v, err)
		}
		return 1, nil
	case opt == "--random" || opt == "--random-fully" || (opt == "--persistent" && t.kind != "MASQUERADE"):
		t.opts = append(t.opts, opt)
		return 0, nil
	}
	return 0, errNotMine
}

// parseTo reads "IP" or "IP:port"; ranges are not something Switchyard renders, so they are refused.
func (t *natTarget) parseTo(v string) error {
	if strings.ContainsAny(v, "-") {
		return fmt.Errorf("address or port ranges are not supported")
	}
	if ap, err := netip.ParseAddrPort(v); err == nil {
		if ap.Port() == 0 {
			return fmt.Errorf("port 0")
		}
		t.addr, t.port = ap.Addr(), ap.Port()
		return nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
	a, err := netip.ParseAddr(host)
	if err != nil {
		return err
	}
	t.addr = a
	return nil
}

func (t *natTarget) finish(r *ruleInfo) error {
	if t.kind != "MASQUERADE" && !t.addr.IsValid() {
		if t.kind == "DNAT" {
			return fmt.Errorf("DNAT needs --to-destination")
		}
		return fmt.Errorf("SNAT needs --to-source")
	}
	if t.port != 0 && !isPortProto(r.proto) {
		return fmt.Errorf("%s to a port needs -p tcp, udp or sctp", t.kind)
	}
	return nil
}

func (t *markTarget) option(opt string, neg bool, args []string) (int, error) {
	switch opt {
	case "--set-xmark", "--set-mark", "--or-mark", "--and-mark", "--xor-mark":
	default:
		return 0, errNotMine
	}
	if t.set {
		return 0, fmt.Errorf("MARK takes one operation")
	}
	v, err := need(opt, args)
	if err != nil || neg {
		return 0, fmt.Errorf("%s needs a value", opt)
	}
	val, mask, err := parseMark(v)
	if err != nil {
		return 0, err
	}
	if opt != "--set-xmark" && opt != "--set-mark" && strings.Contains(v, "/") {
		return 0, fmt.Errorf("%s takes no mask", opt)
	}
	switch opt {
	case "--set-xmark":
		t.and, t.xor = mask, val
	case "--set-mark":
		t.and, t.xor = mask|val, val
	case "--or-mark":
		t.and, t.xor = val, val
	case "--and-mark":
		t.and, t.xor = ^val, 0
	case "--xor-mark":
		t.and, t.xor = 0, val
	}
	t.set = true
	return 1, nil
}

func (t *markTarget) finish(*ruleInfo) error {
	if !t.set {
		return fmt.Errorf("MARK needs --set-xmark, --set-mark, --or-mark, --and-mark or --xor-mark")
	}
	return nil
}

func (t *markTarget) apply(mark uint32) uint32 { return (mark &^ t.and) ^ t.xor }

func (t *logTarget) option(opt string, neg bool, args []string) (int, error) {
	switch opt {
	case "--log-prefix", "--log-level":
		if _, err := need(opt, args); err != nil || neg {
			return 0, fmt.Errorf("%s needs a value", opt)
		}
		return 1, nil
	}
	return 0, errNotMine
}

func (t *logTarget) finish(*ruleInfo) error { return nil }
