package tracer_test

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/proxier/iptables/tracer"
)

// FuzzParseAndTrace feeds arbitrary text to the parser and, when it parses, traces a packet through
// it: bad input must give an error, never a panic or a hang.
func FuzzParseAndTrace(f *testing.F) {
	rules, err := os.ReadFile("testdata/node.rules")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(rules), uint16(80), true)
	// Each rule of the hand-written dump on its own, inside a minimal nat and filter table.
	for _, line := range strings.Split(string(rules), "\n") {
		if strings.HasPrefix(line, "-A ") {
			f.Add("*filter\n:X - [0:0]\n"+line+"\nCOMMIT\n", uint16(30080), false)
		}
	}
	sets, err := os.ReadFile("testdata/node.ipsets")
	if err != nil {
		f.Fatal(err)
	}
	st, err := tracer.ParseIPSetSave(string(sets))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string, port uint16, local bool) {
		rs, err := tracer.Parse(text)
		if err != nil {
			return
		}
		tr := tracer.New(rs, nodeBoth, st)
		tr.MaxOutcomes, tr.MaxSteps = 256, 20000
		p := tracer.Packet{Src: netip.MustParseAddr("10.244.1.5"), Dst: netip.MustParseAddr("10.96.0.10"), Proto: "tcp", SrcPort: 40000, DstPort: port, InIface: "cni0"}
		if local {
			p.Local, p.InIface, p.Src = true, "", netip.MustParseAddr("192.168.50.10")
		}
		res, err := tr.Trace(p)
		if err != nil {
			return
		}
		var sum float64
		for _, o := range res.Outcomes {
			sum += o.Probability
		}
		if sum < 0.999999 || sum > 1.000001 {
			t.Fatalf("probabilities sum to %v", sum)
		}
	})
}
