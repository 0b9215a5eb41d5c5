package tracer_test

import (
	"strings"
	"testing"

	"github.com/switchyard/switchyard/proxier/iptables/tracer"
)

// liveRules is a live node's nat table in small: Switchyard's dispatch for one ClusterIP, with room
// for another agent's rule (%s) in PREROUTING or in a chain of its own that only Docker's traffic
// enters. The -m physdev rule and the CT target are things the tracer does not know.
const liveRules = `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp -m udp --dport 4789 -j CT --notrack
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:SY-SERVICES - [0:0]
:SY-SVC-WEB - [0:0]
%s
-A PREROUTING -m comment --comment "switchyard service portals" -j SY-SERVICES
-A PREROUTING -d 172.16.0.0/16 -j DOCKER
-A SY-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "default/web cluster IP" -m tcp --dport 80 -j SY-SVC-WEB
-A SY-SVC-WEB -p tcp -j DNAT --to-destination 10.244.2.3:8080
COMMIT
`

const foreignRule = `-m physdev --physdev-is-bridged -j RETURN`

func leniently(t *testing.T, where string) *tracer.Result {
	t.Helper()
	text := strings.Replace(liveRules, "%s", where, 1)
	if _, err := tracer.Parse(text); err == nil {
		t.Fatalf("the strict parser accepted rules it does not understand")
	}
	rs, err := tracer.ParseLenient(text)
	if err != nil {
		t.Fatalf("lenient parse: %v", err)
	}
	return trace(t, tracer.New(rs, nodeBoth, nil), tracer.Packet{Src: addr("10.244.1.20"), Dst: addr("10.96.0.10"), Proto: "tcp", SrcPort: 40000, DstPort: 80, InIface: "cni0"})
}

// TestLenientStopsAtForeignRuleOnPath: another agent's rule ahead of Switchyard's jump in
// PREROUTING may change the packet, so the walk ends there and names the rule.
func TestLenientStopsAtForeignRuleOnPath(t *testing.T) {
	res := leniently(t, "-A PREROUTING "+foreignRule)
	o := only(t, res)
	if o.Verdict != tracer.Unknown || o.Opaque == nil {
		t.Fatalf("want the walk to stop at the foreign rule, got\n%s", res)
	}
	want := "cannot explain past this rule: -A PREROUTING " + foreignRule
	if got := o.Opaque.Rule.Unexplained(); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if o.Opaque.Table != "nat" || o.Opaque.Hook != "PREROUTING" || o.DNATed {
		t.Fatalf("stopped at %+v, DNATed %v; want nat/PREROUTING before any DNAT", o.Opaque, o.DNATed)
	}
}

// TestLenientIgnoresForeignRuleOffPath: the same rule in a chain this packet never enters, and a
// foreign rule whose own -p and -d exclude the packet, do not matter.
func TestLenientIgnoresForeignRuleOffPath(t *testing.T) {
	for _, where := range []string{
		"-A DOCKER " + foreignRule,
		"-A PREROUTING -d 172.16.0.0/16 -p tcp " + foreignRule,
		"-A PREROUTING -p udp " + foreignRule,
	} {
		t.Run(where, func(t *testing.T) {
			res := leniently(t, where)
			o := only(t, res)
			if o.Verdict != tracer.Accept || o.Dst.String() != "10.244.2.3:8080" || o.Opaque != nil {
				t.Fatalf("want DNAT to 10.244.2.3:8080, got\n%s", res)
			}
		})
	}
}

// TestLenientUnknownTarget: a target the tracer does not know reads like a jump to a chain that does
// not exist; a lenient parse makes the rule opaque, a strict one fails.
func TestLenientUnknownTarget(t *testing.T) {
	res := leniently(t, "-A PREROUTING -p tcp -j CONNMARK --set-mark 1")
	o := only(t, res)
	if o.Verdict != tracer.Unknown || !strings.Contains(o.Opaque.Rule.Unparsed.Error(), "CONNMARK") {
		t.Fatalf("want a stop at the CONNMARK rule, got\n%s", res)
	}
}
