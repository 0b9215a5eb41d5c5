package tracer_test

// Privileged checks that the tracer's idea of iptables matches the real thing: the hand-written
// dump loads into a real kernel and behaves the same when read back from iptables-save, and
// rulesets the tracer refuses as invalid are refused by iptables-restore too. Each runs in a
// throwaway network namespace.

import (
	"maps"
	"os"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/iptables/tracer"
)

var variants = []string{"nft", "legacy"}

func restoreIn(ns *netnstest.NS, variant, text string) (string, error) {
	cmd := ns.Command("iptables-" + variant + "-restore")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// probes are packets whose fate the hand-written dump decides in every interesting way.
func probes() []tracer.Packet {
	local := tcp("192.168.50.10", "192.168.50.10", 30081, "")
	local.Local = true
	udp := tracer.Packet{Src: addr("8.8.8.8"), Dst: nodeIP, Proto: "udp", SrcPort: 5000, DstPort: 53, InIface: "eth0"}
	udpOK := udp
	udpOK.Src = addr("192.168.50.7")
	established := tcp("8.8.8.8", "10.244.2.3", 8080, "eth0")
	established.CtState = "ESTABLISHED"
	return []tracer.Packet{
		tcp("10.244.1.5", "10.96.0.10", 80, "cni0"),
		tcp("10.244.1.2", "10.96.0.10", 80, "cni0"),
		tcp("8.8.8.8", "192.168.50.10", 30080, "eth0"),
		tcp("8.8.8.8", "192.168.50.10", 30081, "eth0"),
		tcp("8.8.8.8", "192.168.50.10", 30090, "eth0"),
		tcp("10.244.1.5", "10.96.0.20", 80, "cni0"),
		tcp("198.51.100.7", "203.0.113.5", 80, "eth0"),
		tcp("8.8.8.8", "203.0.113.5", 80, "eth0"),
		tcp("8.8.8.8", "10.96.0.30", 80, "eth0"),
		tcp("192.168.50.99", "10.244.1.1", 9999, "eth0"),
		tcp("8.8.8.8", "192.168.50.10", 8443, "eth0"),
		tcp("172.16.0.5", "1.1.1.1", 443, "docker0"),
		local, udp, udpOK, established,
	}
}

func TestHandWrittenDumpMatchesKernel(t *testing.T) {
	netnstest.Require(t)
	rules, err := os.ReadFile("testdata/node.rules")
	if err != nil {
		t.Fatal(err)
	}
	sets, err := os.ReadFile("testdata/node.ipsets")
	if err != nil {
		t.Fatal(err)
	}
	want := loadTracer(t)
	for _, v := range variants {
		t.Run(v, func(t *testing.T) {
			ns := netnstest.New(t, "trc")
			cmd := ns.Command("ipset", "restore")
			cmd.Stdin = strings.NewReader(string(sets))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("ipset restore: %v: %s", err, out)
			}
			if out, err := restoreIn(ns, v, string(rules)); err != nil {
				t.Fatalf("the kernel refuses the hand-written dump: %v: %s", err, out)
			}
			saved := ns.MustRun(t, "iptables-"+v+"-save")
			rs, err := tracer.Parse(saved)
			if err != nil {
				t.Fatalf("the tracer cannot read the kernel's dump: %v\n%s", err, saved)
			}
			st, err := tracer.ParseIPSetSave(ns.MustRun(t, "ipset", "save"))
			if err != nil {
				t.Fatalf("the tracer cannot read ipset save: %v", err)
			}
			got := tracer.New(rs, nodeBoth, st)
			for _, p := range probes() {
				a, err := want.Trace(p)
				if err != nil {
					t.Fatal(err)
				}
				b, err := got.Trace(p)
				if err != nil {
					t.Fatalf("trace on the kernel's dump: %v", err)
				}
				if !maps.Equal(a.Verdicts(), b.Verdicts()) || !maps.Equal(a.Destinations(), b.Destinations()) || !maps.Equal(masq(a), masq(b)) {
					t.Errorf("%s: hand-written and kernel dumps disagree\nhand-written: %s\nkernel: %s", p, a, b)
				}
			}
		})
	}
}

func masq(r *tracer.Result) map[bool]float64 {
	out := map[bool]float64{}
	for _, o := range r.Outcomes {
		out[o.Masqueraded] += o.Probability
	}
	return out
}

// TestKernelRefusesWhatTracerRefuses feeds rulesets the tracer rejects as invalid (as opposed to
// merely unknown to it) to iptables-restore, which must reject them as well.
func TestKernelRefusesWhatTracerRefuses(t *testing.T) {
	netnstest.Require(t)
	filter := "*filter\n:X - [0:0]\n"
	nat := "*nat\n:X - [0:0]\n"
	cases := map[string]string{
		"DNAT in filter":            filter + "-A X -p tcp -j DNAT --to-destination 1.2.3.4:80\nCOMMIT\n",
		"REJECT in nat":             nat + "-A PREROUTING -j REJECT\nCOMMIT\n",
		"REJECT in mangle":          "*mangle\n-A FORWARD -j REJECT\nCOMMIT\n",
		"DROP in nat":               nat + "-A X -j DROP\nCOMMIT\n",
		"MASQUERADE in PREROUTING":  nat + "-A X -j MASQUERADE\n-A PREROUTING -j X\nCOMMIT\n",
		"DNAT from POSTROUTING":     nat + "-A X -p tcp -j DNAT --to-destination 1.2.3.4:80\n-A POSTROUTING -j X\nCOMMIT\n",
		"loop":                      filter + ":Y - [0:0]\n-A X -j Y\n-A Y -j X\n-A INPUT -j X\nCOMMIT\n",
		"missing chain":             filter + "-A INPUT -j NOPE\nCOMMIT\n",
		"tcp match without -p tcp":  filter + "-A INPUT -m tcp --dport 80 -j ACCEPT\nCOMMIT\n",
		"DNAT port without -p":      nat + "-A PREROUTING -j DNAT --to-destination 1.2.3.4:80\nCOMMIT\n",
		"delete a referenced chain": filter + "-A INPUT -j X\n-X X\nCOMMIT\n",
		"delete a non-empty chain":  filter + "-A X -j ACCEPT\n-X X\nCOMMIT\n",
		"-i in OUTPUT":              filter + "-A OUTPUT -i eth0 -j ACCEPT\nCOMMIT\n",
	}
	for _, v := range variants {
		t.Run(v, func(t *testing.T) {
			for name, text := range cases {
				if _, err := tracer.Parse(text); err == nil {
					t.Errorf("%s: the tracer accepts it", name)
				}
				// A fresh namespace per case, so one case's partial state cannot excuse another.
				ns := netnstest.New(t, "trc")
				if out, err := restoreIn(ns, v, text); err == nil {
					t.Errorf("%s: iptables-%s-restore accepts what the tracer refuses:\n%s%s", name, v, text, out)
				}
			}
		})
	}
}
