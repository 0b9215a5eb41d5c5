package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/spf13/pflag"

	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/model"
)

// explainUsage introduces `switchyard explain` in its --help.
const explainUsage = `Usage: switchyard explain [--src ADDR] --dst ADDR:PORT[/tcp|udp|sctp] [flags]
       switchyard explain --check [flags]

Says what happens to a packet on this node, and why: the rules (iptables mode) or the IPVS virtual
server (IPVS mode) it meets, each mapped back to the Service that produced it; the endpoints it may
be DNATed to, with their probabilities; whether it is masqueraded; the verdict; the route it takes
next; and, when something looks wrong, the likely causes with their evidence. It reads the live
state of this node (iptables-save, IPVS and ipsets, routes, conntrack) and what the Switchyard
daemon believes (its /debug/model on --metrics-address). It never invents a path: a rule it does
not understand ends the walk ("cannot explain past this rule").

Run it on the node, as root (or under "ip netns exec" in a test namespace). IPv6 destinations
are written [ADDR]:PORT.

With --check it compares instead the daemon's model with the live rules, and lists the rules the
model would write that are missing and the rules in Switchyard's chains that it would not write.

Exit status: 0 when the packet was explained (whatever its verdict) or nothing drifted; 1 when the
walk stopped at a rule it cannot explain, when rules drifted, or on an error.

Flags:
`

// explainFlags are the settings of one `switchyard explain` run.
type explainFlags struct {
	pkt            explain.Packet
	output         string // "text" or "json"
	metricsAddress string
	mode           string // "auto", "iptables" or "ipvs"
	check          bool
}

func parseExplainFlags(args []string, stderr io.Writer) (*explainFlags, error) {
	f := &explainFlags{}
	fs := pflag.NewFlagSet("switchyard explain", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, explainUsage)
		fs.PrintDefaults()
	}
	src := fs.String("src", "", "Source address of the packet (ADDR or ADDR:PORT). Needed with --from pod or external; with --from node it defaults to the address the node's route gives.")
	dst := fs.String("dst", "", "Destination of the packet: ADDR:PORT, optionally /tcp, /udp or /sctp (default tcp); [ADDR]:PORT for IPv6.")
	from := fs.String("from", "", "Where the packet enters the node: pod (a pod on this node), node (a process on the node) or external (the uplink). Default: pod with --src, node without.")
	fs.StringVar(&f.output, "output", "text", "Output format: text or json.")
	fs.StringVar(&f.metricsAddress, "metrics-address", "127.0.0.1:10249", "The daemon's --metrics-bind-address, whose /debug/model (and, for --check, /debug/rules) is read.")
	fs.StringVar(&f.mode, "proxy-mode", "auto", "Proxy mode whose rules to read: auto (IPVS when Switchyard's IPVS chains or kube-ipvs0 exist, else iptables), iptables or ipvs.")
	fs.BoolVar(&f.check, "check", false, "Compare the daemon's model with the live rules and list the drift, instead of explaining a packet (iptables mode).")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch f.output {
	case "text", "json":
	default:
		return nil, fmt.Errorf("--output %q: want text or json", f.output)
	}
	switch f.mode {
	case "auto", "iptables", "ipvs":
	default:
		return nil, fmt.Errorf("--proxy-mode %q: want auto, iptables or ipvs", f.mode)
	}
	if f.check {
		if *dst != "" || *src != "" || *from != "" {
			return nil, errors.New("--check compares all of the rules: it takes no --src, --dst or --from")
		}
		return f, nil
	}
	pkt, err := parsePacket(*src, *dst, *from)
	if err != nil {
		return nil, err
	}
	f.pkt = pkt
	return f, nil
}

// parsePacket reads --src, --dst and --from into the packet to explain.
func parsePacket(src, dst, from string) (explain.Packet, error) {
	var pkt explain.Packet
	if dst == "" {
		return pkt, errors.New("--dst is required (ADDR:PORT[/tcp|udp|sctp]), or --check")
	}
	pkt.Proto = "tcp"
	if i := strings.LastIndexByte(dst, '/'); i >= 0 {
		given := dst[i+1:]
		pkt.Proto, dst = strings.ToLower(given), dst[:i]
		switch pkt.Proto {
		case "tcp", "udp", "sctp":
		default:
			return pkt, fmt.Errorf("--dst: unknown protocol %q: want tcp, udp or sctp", given)
		}
	}
	d, err := netip.ParseAddrPort(dst)
	if err != nil {
		if _, aerr := netip.ParseAddr(strings.Trim(dst, "[]")); aerr == nil {
			return pkt, fmt.Errorf("--dst %q has no port: want ADDR:PORT ([ADDR]:PORT for IPv6)", dst)
		}
		return pkt, fmt.Errorf("--dst %q: want ADDR:PORT ([ADDR]:PORT for IPv6): %w", dst, err)
	}
	if d.Port() == 0 {
		return pkt, fmt.Errorf("--dst %q: port 0 reaches no service", dst)
	}
	pkt.Dst = netip.AddrPortFrom(d.Addr().Unmap(), d.Port())
	if src != "" {
		s, err := parseSource(src)
		if err != nil {
			return pkt, err
		}
		if s.Addr().Is4() != pkt.Dst.Addr().Is4() {
			return pkt, fmt.Errorf("--src %s and --dst %s are of different IP families", s.Addr(), pkt.Dst.Addr())
		}
		pkt.Src = s
	}
	switch explain.From(from) {
	case "":
		pkt.From = explain.FromNode
		if src != "" {
			pkt.From = explain.FromPod
		}
	case explain.FromPod, explain.FromNode, explain.FromExternal:
		pkt.From = explain.From(from)
	default:
		return pkt, fmt.Errorf("--from %q: want pod, node or external", from)
	}
	if !pkt.Src.Addr().IsValid() && pkt.From != explain.FromNode {
		return pkt, fmt.Errorf("--from %s needs --src: the walk depends on the packet's source", pkt.From)
	}
	return pkt, nil
}

// parseSource reads --src: ADDR, ADDR:PORT or [ADDR]:PORT.
func parseSource(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--src %q: want ADDR or ADDR:PORT", s)
	}
	return netip.AddrPortFrom(a.Unmap(), 0), nil
}

// familyOf is the IP family of an address.
func familyOf(a netip.Addr) model.IPFamily {
	if a.Is4() {
		return model.IPv4
	}
	return model.IPv6
}

// protocolOf is a packet's protocol as the model spells it.
func protocolOf(proto string) model.Protocol {
	return model.Protocol(strings.ToUpper(proto))
}

// runExplain is `switchyard explain`.
func runExplain(args []string, stdout, stderr io.Writer) error {
	f, err := parseExplainFlags(args, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	src := hostSources(f.metricsAddress, f.pkt)
	if f.check {
		return runCheck(src, f, stdout)
	}
	return explainPacket(src, f, stdout)
}

// explainPacket gathers the live state, walks the packet and writes the report. A report that
// stops at a rule it cannot explain is written, then returned as an error (a non-zero exit).
func explainPacket(src liveSources, f *explainFlags, stdout io.Writer) error {
	g, err := gatherLive(src, f.mode, f.pkt)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	// Without --src, the walker takes the source the node's route to the destination gives.
	rep, err := walk(g.live, f.pkt)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	for _, n := range g.notes {
		rep.AddNote(n)
	}
	if err := writeExplainReport(stdout, rep, f.output); err != nil {
		return fmt.Errorf("explain: write the report: %w", err)
	}
	if rep.Unexplained != "" {
		return fmt.Errorf("explain: %s", rep.Unexplained)
	}
	return nil
}
