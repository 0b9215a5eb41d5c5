package tracer

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// match is one condition of a rule. eval returns the probability that the packet matches: 0 or 1
// for every match except -m statistic, whose branches the walker explores separately.
type match interface {
	eval(c *evalCtx) (float64, error)
}

func b2p(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func newMatchModule(name string) (module, error) {
	switch name {
	case "comment":
		return &commentMatch{}, nil
	case "tcp", "udp", "sctp":
		return &portMatch{proto: name}, nil
	case "multiport":
		return &multiportMatch{}, nil
	case "addrtype":
		return &addrtypeMatch{}, nil
	case "mark":
		return &markMatch{}, nil
	case "conntrack":
		return &ctstateMatch{opt: "--ctstate"}, nil
	case "state":
		return &ctstateMatch{opt: "--state"}, nil
	case "statistic":
		return &statisticMatch{}, nil
	case "recent":
		return &recentMatch{name: "DEFAULT"}, nil
	case "set":
		return &setMatch{}, nil
	case "nfacct":
		return &nfacctMatch{}, nil
	}
	return nil, fmt.Errorf("unsupported match module %q", name)
}

// --- generic matches -------------------------------------------------------------------------

type addrMatch struct {
	dst    bool
	prefix netip.Prefix
	neg    bool
}

func (m *addrMatch) eval(c *evalCtx) (float64, error) {
	a := c.r.pkt.Src
	if m.dst {
		a = c.r.pkt.Dst
	}
	return b2p(m.prefix.Contains(a) != m.neg), nil
}

type protoMatch struct {
	proto string
	neg   bool
}

func (m *protoMatch) eval(c *evalCtx) (float64, error) {
	return b2p((m.proto == "all" || m.proto == c.r.pkt.Proto) != m.neg), nil
}

type ifaceMatch struct {
	out  bool
	name string
	neg  bool
}

func (m *ifaceMatch) eval(c *evalCtx) (float64, error) {
	dev := c.r.inIface()
	if m.out {
		dev = c.r.outIface(c.t)
	}
	var ok bool
	if prefix, wild := strings.CutSuffix(m.name, "+"); wild {
		ok = dev != "" && strings.HasPrefix(dev, prefix)
	} else {
		ok = dev == m.name
	}
	return b2p(ok != m.neg), nil
}

// --- -m comment ------------------------------------------------------------------------------

type commentMatch struct {
	text string
	set  bool
}

func (m *commentMatch) option(opt string, neg bool, args []string) (int, error) {
	if opt != "--comment" {
		return 0, errNotMine
	}
	if neg || len(args) == 0 {
		return 0, fmt.Errorf("--comment needs text and cannot be negated")
	}
	if len(args[0]) > 256 {
		return 0, fmt.Errorf("comment longer than 256 characters")
	}
	m.text, m.set = args[0], true
	return 1, nil
}

func (m *commentMatch) finish(*ruleInfo) error {
	if !m.set {
		return fmt.Errorf("-m comment without --comment")
	}
	return nil
}

func (m *commentMatch) eval(*evalCtx) (float64, error) { return 1, nil }

// --- -m tcp / udp / sctp ---------------------------------------------------------------------

type portMatch struct {
	proto        string
	dport, sport *portRange
	dneg, sneg   bool
}

func (m *portMatch) option(opt string, neg bool, args []string) (int, error) {
	var dst bool
	switch opt {
	case "--dport", "--destination-port":
		dst = true
	case "--sport", "--source-port":
	default:
		return 0, errNotMine
	}
	v, err := need(opt, args)
	if err != nil {
		return 0, err
	}
	pr, err := parsePortRange(v)
	if err != nil {
		return 0, err
	}
	if dst {
		m.dport, m.dneg = &pr, neg
	} else {
		m.sport, m.sneg = &pr, neg
	}
	return 1, nil
}

func (m *portMatch) finish(r *ruleInfo) error {
	if r.proto != m.proto {
		return fmt.Errorf("-m %s needs -p %s", m.proto, m.proto)
	}
	return nil
}

func (m *portMatch) eval(c *evalCtx) (float64, error) {
	p := c.r.pkt
	if p.Proto != m.proto {
		return 0, nil
	}
	if m.dport != nil && m.dport.contains(p.DstPort) == m.dneg {
		return 0, nil
	}
	if m.sport != nil && m.sport.contains(p.SrcPort) == m.sneg {
		return 0, nil
	}
	return 1, nil
}

// --- -m multiport ----------------------------------------------------------------------------

type multiportMatch struct {
	which string // "d", "s" or "both"
	ports []portRange
	neg   bool
}

func (m *multiportMatch) option(opt string, neg bool, args []string) (int, error) {
	switch opt {
	case "--dports", "--destination-ports":
		m.which = "d"
	case "--sports", "--source-ports":
		m.which = "s"
	case "--ports":
		m.which = "both"
	default:
		return 0, errNotMine
	}
	if m.ports != nil {
		return 0, fmt.Errorf("multiport takes one port list")
	}
	v, err := need(opt, args)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range strings.Split(v, ",") {
		pr, err := parsePortRange(s)
		if err != nil {
			return 0, err
		}
		m.ports = append(m.ports, pr)
		n++
		if pr.lo != pr.hi {
			n++ // a range uses two of the 15 slots
		}
	}
	if n > 15 {
		return 0, fmt.Errorf("multiport takes at most 15 ports")
	}
	m.neg = neg
	return 1, nil
}

func (m *multiportMatch) finish(r *ruleInfo) error {
	if m.ports == nil {
		return fmt.Errorf("-m multiport needs --dports, --sports or --ports")
	}
	if !isPortProto(r.proto) {
		return fmt.Errorf("-m multiport needs -p tcp, udp or sctp")
	}
	return nil
}

func (m *multiportMatch) eval(c *evalCtx) (float64, error) {
	p := c.r.pkt
	hit := false
	for _, pr := range m.ports {
		if (m.which != "s" && pr.contains(p.DstPort)) || (m.which != "d" && pr.contains(p.SrcPort)) {
			hit = true
			break
		}
	}
	return b2p(hit != m.neg), nil
}

// --- -m addrtype -----------------------------------------------------------------------------

type addrtypeMatch struct {
	src, dst          []string
	srcNeg, dstNeg    bool
	limitIn, limitOut bool
}

var knownAddrTypes = map[string]bool{"LOCAL": true, "UNICAST": true, "BROADCAST": true, "MULTICAST": true}

func (m *addrtypeMatch) option(opt string, neg bool, args []string) (int, error) {
	switch opt {
	case "--src-type", "--dst-type":
		v, err := need(opt, args)
		if err != nil {
			return 0, err
		}
		types := strings.Split(v, ",")
		for _, t := range types {
			if !knownAddrTypes[t] {
				return 0, fmt.Errorf("unsupported address type %q", t)
			}
		}
		if opt == "--src-type" {
			m.src, m.srcNeg = types, neg
		} else {
			m.dst, m.dstNeg = types, neg
		}
		return 1, nil
	case "--limit-iface-in", "--limit-iface-out":
		if neg {
			return 0, fmt.Errorf("%s cannot be negated", opt)
		}
		if opt == "--limit-iface-in" {
			m.limitIn = true
		} else {
			m.limitOut = true
		}
		return 0, nil
	}
	return 0, errNotMine
}

func (m *addrtypeMatch) finish(r *ruleInfo) error {
	if m.src == nil && m.dst == nil {
		return fmt.Errorf("-m addrtype needs --src-type or --dst-type")
	}
	if m.limitIn && m.limitOut {
		return fmt.Errorf("--limit-iface-in and --limit-iface-out are exclusive")
	}
	return nil
}

func (m *addrtypeMatch) eval(c *evalCtx) (float64, error) {
	dev := ""
	switch {
	case m.limitIn:
		dev = c.r.inIface()
	case m.limitOut:
		dev = c.r.outIface(c.t)
	}
	check := func(a netip.Addr, types []string, neg bool) bool {
		if types == nil {
			return true
		}
		got := c.t.addrType(a, dev)
		hit := false
		for _, t := range types {
			if t == got {
				hit = true
			}
		}
		return hit != neg
	}
	return b2p(check(c.r.pkt.Src, m.src, m.srcNeg) && check(c.r.pkt.Dst, m.dst, m.dstNeg)), nil
}

// --- -m mark ---------------------------------------------------------------------------------

type markMatch struct {
	value, mask uint32
	set, neg    bool
}

func (m *markMatch) option(opt string, neg bool, args []string) (int, error) {
	if opt != "--mark" {
		return 0, errNotMine
	}
	v, err := need(opt, args)
	if err != nil {
		return 0, err
	}
	m.value, m.mask, err = parseMark(v)
	m.set, m.neg = true, neg
	return 1, err
}

func (m *markMatch) finish(*ruleInfo) error {
	if !m.set {
		return fmt.Errorf("-m mark needs --mark")
	}
	return nil
}

func (m *markMatch) eval(c *evalCtx) (float64, error) {
	return b2p((c.r.pkt.Mark&m.mask == m.value) != m.neg), nil
}

// --- -m conntrack --ctstate / -m state --state -----------------------------------------------

var knownCtStates = map[string]bool{"INVALID": true, "NEW": true, "ESTABLISHED": true, "RELATED": true, "UNTRACKED": true, "SNAT": true, "DNAT": true}

type ctstateMatch struct {
	opt    string
	states []string
	neg    bool
}

func (m *ctstateMatch) option(opt string, neg bool, args []string) (int, error) {
	if opt != m.opt {
		return 0, errNotMine
	}
	v, err := need(opt, args)
	if err != nil {
		return 0, err
	}
	for _, s := range strings.Split(v, ",") {
		if !knownCtStates[s] || (m.opt == "--state" && (s == "SNAT" || s == "DNAT")) {
			return 0, fmt.Errorf("unsupported conntrack state %q", s)
		}
		m.states = append(m.states, s)
	}
	m.neg = neg
	return 1, nil
}

func (m *ctstateMatch) finish(*ruleInfo) error {
	if m.states == nil {
		return fmt.Errorf("conntrack match needs %s", m.opt)
	}
	return nil
}

func (m *ctstateMatch) eval(c *evalCtx) (float64, error) {
	hit := false
	for _, s := range m.states {
		switch s {
		case "DNAT":
			hit = hit || c.r.dnatted
		case "SNAT":
			hit = hit || c.r.snatted
		default:
			hit = hit || s == c.r.ctState()
		}
	}
	return b2p(hit != m.neg), nil
}

// --- -m nfacct --nfacct-name ------------------------------------------------------------------

// nfacctMatch counts the packet into an accounting object and always matches; it changes no way a
// packet may go.
type nfacctMatch struct {
	name string
}

func (m *nfacctMatch) option(opt string, neg bool, args []string) (int, error) {
	if opt != "--nfacct-name" {
		return 0, errNotMine
	}
	if neg {
		return 0, fmt.Errorf("--nfacct-name cannot be negated")
	}
	v, err := need(opt, args)
	if err != nil {
		return 0, err
	}
	if len(v) > 31 {
		return 0, fmt.Errorf("nfacct name %q longer than 31 characters", v)
	}
	m.name = v
	return 1, nil
}

func (m *nfacctMatch) finish(*ruleInfo) error {
	if m.name == "" {
		return fmt.Errorf("-m nfacct without --nfacct-name")
	}
	return nil
}

func (m *nfacctMatch) eval(*evalCtx) (float64, error) { return 1, nil }

// --- -m statistic --mode random --------------------------------------------------------------

type statisticMatch struct {
	mode string
	prob float64
	set  bool
	neg  bool
}

func (m *statisticMatch) option(opt string, neg bool, args []string) (int, error) {
	switch opt {
	case "--mode":
		v, err := need(opt, args)
		if err != nil {
			return 0, err
		}
		if v != "random" {
			return 0, fmt.Errorf("unsupported statistic mode %q", v)
		}
		m.mode = v
		return 1, nil
	case "--probability":
		v, err := need(opt, args)
		if err != nil {
			return 0, err
		}
		p, err := strconv.ParseFloat(v, 64)
		if err != nil || p < 0 || p > 1 {
			return 0, fmt.Errorf("bad probability %q", v)
		}
		// The kernel compares a 31-bit random number with round(p * 2^31); use the same quantum.
		q := math.Round(p*0x80000000) / 0x80000000
		m.prob, m.set, m.neg = q, true, neg
		return 1, nil
	}
	return 0, errNotMine
}

func (m *statisticMatch) finish(*ruleInfo) error {
	if m.mode != "random" || !m.set {
		return fmt.Errorf("-m statistic needs --mode random --probability")
	}
	return nil
}

func (m *statisticMatch) eval(*evalCtx) (float64, error) {
	if m.neg {
		return 1 - m.prob, nil
	}
	return m.prob, nil
}

// --- -m recent -------------------------------------------------------------------------------

type recentMatch struct {
	name    string
	cmd     string // "--set", "--rcheck", "--update" or "--remove"
	neg     bool
	seconds int
	reap    bool
	mask    netip.Addr // zero: the whole address
	rdest   bool
}

func (m *recentMatch) option(opt string, neg bool, args []string) (int, error) {
	switch opt {
	case "--set", "--rcheck", "--update", "--remove":
		if m.cmd != "" {
			return 0, fmt.Errorf("only one of --set, --rcheck, --update, --remove")
		}
		m.cmd, m.neg = opt, neg
		return 0, nil
	case "--name":
		v, err := need(opt, args)
		if err != nil {
			return 0, err
		}
		if len(v) > 200 || v == "" {
			return 0, fmt.Errorf("bad recent list name %q", v)
		}
		m.name = v
		return 1, nil
	case "--seconds":
		v, err := need(opt, args)
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("bad --seconds %q", v)
		}
		m.seconds = int(n)
		return 1, nil
	case "--reap":
		m.reap = true
		return 0, nil
	case "--mask":
		v, err := need(opt, args)
		if err != nil {
			return 0, err
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return 0, fmt.Errorf("bad --mask %q", v)
		}
		m.mask = a
		return 1, nil
	case "--rsource":
		m.rdest = false
		return 0, nil
	case "--rdest":
		m.rdest = true
		return 0, nil
	}
	return 0, errNotMine
}

func (m *recentMatch) finish(*ruleInfo) error {
	if m.cmd == "" {
		return fmt.Errorf("-m recent needs one of --set, --rcheck, --update, --remove")
	}
	if m.seconds != 0 && m.cmd != "--rcheck" && m.cmd != "--update" {
		return fmt.Errorf("--seconds only works with --rcheck or --update")
	}
	if m.reap && m.seconds == 0 {
		return fmt.Errorf("--reap needs --seconds")
	}
	return nil
}

func (m *recentMatch) key(c *evalCtx) (netip.Addr, error) {
	a := c.r.pkt.Src
	if m.rdest {
		a = c.r.pkt.Dst
	}
	if !m.mask.IsValid() {
		return a, nil
	}
	if a.BitLen() != m.mask.BitLen() {
		return netip.Addr{}, fmt.Errorf("recent --mask %s does not fit address %s", m.mask, a)
	}
	ab, mb := a.AsSlice(), m.mask.AsSlice()
	for i := range ab {
		ab[i] &= mb[i]
	}
	out, _ := netip.AddrFromSlice(ab)
	return out, nil
}

func (m *recentMatch) eval(c *evalCtx) (float64, error) {
	key, err := m.key(c)
	if err != nil {
		return 0, err
	}
	now := c.t.now
	last, found := c.r.recentLookup(c.t, m.name, key)
	if found && m.seconds > 0 && now.Sub(last) > time.Duration(m.seconds)*time.Second {
		found = false
	}
	hit := false
	switch m.cmd {
	case "--set":
		c.r.recentPut(m.name, key, now)
		hit = true
	case "--rcheck":
		hit = found
	case "--update":
		hit = found
		if found {
			c.r.recentPut(m.name, key, now)
		}
	case "--remove":
		hit = found
		if found {
			c.r.recentDel(m.name, key)
		}
	}
	return b2p(hit != m.neg), nil
}

// --- -m set ----------------------------------------------------------------------------------

type setMatch struct {
	name string
	dst  []bool // one entry per set dimension: true picks the destination side
	neg  bool
}

func (m *setMatch) option(opt string, neg bool, args []string) (int, error) {
	if opt != "--match-set" {
		return 0, errNotMine
	}
	if len(args) < 2 {
		return 0, fmt.Errorf("--match-set needs a set name and flags")
	}
	m.name, m.neg, m.dst = args[0], neg, nil
	for _, f := range strings.Split(args[1], ",") {
		switch f {
		case "src":
			m.dst = append(m.dst, false)
		case "dst":
			m.dst = append(m.dst, true)
		default:
			return 0, fmt.Errorf("bad --match-set flag %q", f)
		}
	}
	if len(m.dst) > 6 {
		return 0, fmt.Errorf("--match-set takes at most 6 flags")
	}
	return 2, nil
}

func (m *setMatch) finish(*ruleInfo) error {
	if m.name == "" {
		return fmt.Errorf("-m set needs --match-set")
	}
	return nil
}

func (m *setMatch) eval(c *evalCtx) (float64, error) {
	if c.t.sets == nil {
		return 0, fmt.Errorf("rule uses ipset %q but the tracer has no set table", m.name)
	}
	p := c.r.pkt
	hit, err := c.t.sets.Test(m.name, m.dst, Flow{Src: p.Src, Dst: p.Dst, Proto: p.Proto, SrcPort: p.SrcPort, DstPort: p.DstPort})
	if err != nil {
		return 0, err
	}
	return b2p(hit != m.neg), nil
}
