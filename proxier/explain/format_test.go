package explain_test

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/switchyard/switchyard/internal/golden"
	"github.com/switchyard/switchyard/proxier/explain"
)

// sampleReport uses every field of a report: two delivered outcomes (one masqueraded, one not), a
// rejected and an unexplained one, causes and notes. It is not a walk's result, only what the
// writers must print.
func sampleReport() *explain.Report {
	ap := netip.MustParseAddrPort
	a := netip.MustParseAddr
	svc := &explain.ServiceRef{Namespace: "default", Name: "web", Port: "http"}
	dnat := func(ep string) explain.Step {
		return explain.Step{Hook: "nat/PREROUTING", Chain: "SY-SVC-ABC", Rule: "-A SY-SVC-ABC -p tcp -j DNAT --to-destination " + ep,
			Service: svc, Note: "DNAT to " + ep}
	}
	return &explain.Report{
		Packet: explain.Packet{Src: ap("198.51.100.7:0"), Dst: ap("192.168.50.10:30010"), Proto: "tcp", From: explain.FromExternal, InIface: "eth0"},
		Mode:   "iptables",
		Outcomes: []explain.Outcome{
			{Probability: 0.5, Verdict: explain.Delivered, Endpoint: ap("10.244.2.7:8080"), EndpointNode: "node-b", Masquerade: a("10.244.1.0"),
				Steps: []explain.Step{
					{Hook: "nat/PREROUTING", Chain: "PREROUTING", Rule: "-A PREROUTING -j SY-SERVICES", Note: "jumps to chain SY-SERVICES"},
					dnat("10.244.2.7:8080"),
				},
				Route: &explain.Route{Dst: a("10.244.2.7"), Device: "flannel.1", Src: a("10.244.1.0"), Kind: "vxlan", Node: "node-b"}},
			{Probability: 0.25, Verdict: explain.Delivered, Endpoint: ap("10.244.1.5:8080"), EndpointNode: "node-a",
				Steps: []explain.Step{dnat("10.244.1.5:8080")},
				Route: &explain.Route{Dst: a("10.244.1.5"), Device: "cni0", Kind: "bridge"}},
			{Probability: 0.125, Verdict: explain.Rejected, RejectWith: "icmp-port-unreachable",
				Steps: []explain.Step{{Hook: "filter/INPUT", Chain: "SY-EXTERNAL-SERVICES", Rule: "-A SY-EXTERNAL-SERVICES -j REJECT", Service: svc, Note: "rejects the packet with icmp-port-unreachable"}}},
			{Probability: 0.125, Verdict: explain.Unexplained,
				Steps: []explain.Step{{Hook: "nat/PREROUTING", Chain: "PREROUTING", Rule: "-A PREROUTING -m physdev --physdev-is-in -j CNI-HOOK", Note: "not understood"}}},
		},
		Causes: []explain.Cause{{Kind: explain.CauseNoReadyEndpoints, Summary: "default/web:http has no ready endpoints",
			Evidence: []string{"model: 1 endpoint(s), none ready: 10.244.4.4:8080 (not serving, on node-d)"}}},
		Notes:       []string{explain.NoModelNote},
		Unexplained: "cannot explain past this rule: -A PREROUTING -m physdev --physdev-is-in -j CNI-HOOK",
	}
}

func TestWriteText(t *testing.T) {
	var b bytes.Buffer
	if err := explain.WriteText(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "report.txt", b.Bytes())
}

// TestWriteJSON checks the JSON form, and that it reads back into the same report.
func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	rep := sampleReport()
	if err := explain.WriteJSON(&b, rep); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "report.json", b.Bytes())
	var back explain.Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, rep) {
		t.Fatalf("the JSON does not read back into the same report:\n%+v\n%+v", &back, rep)
	}
}

// DeliveredTo: each endpoint address once, sorted; the other outcomes' verdicts once each.
func TestDeliveredTo(t *testing.T) {
	ep := netip.MustParseAddrPort
	r := &explain.Report{Outcomes: []explain.Outcome{
		{Verdict: explain.Delivered, Endpoint: ep("10.244.2.5:8080")},
		{Verdict: explain.Delivered, Endpoint: ep("10.244.1.5:8080")},
		{Verdict: explain.Delivered, Endpoint: ep("10.244.2.5:9090")},
		{Verdict: explain.Dropped},
		{Verdict: explain.Dropped},
		{Verdict: explain.NotHandled},
	}}
	addrs, others := r.DeliveredTo()
	if !slices.Equal(addrs, []string{"10.244.1.5", "10.244.2.5"}) || !slices.Equal(others, []explain.Verdict{explain.Dropped, explain.NotHandled}) {
		t.Fatalf("DeliveredTo = %v, %v", addrs, others)
	}
}
