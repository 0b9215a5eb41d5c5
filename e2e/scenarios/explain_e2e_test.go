//go:build e2e

package scenarios

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"

	"github.com/switchyard/switchyard/proxier/explain"
)

// Every scenario cross-checks `switchyard explain` against the real packets it just sent: when a
// request is answered, explain run on the node that handled it must deliver to exactly the pods
// that answered; when a request was refused or timed out, it must say rejected or dropped. The
// checks sit in the scenarios' shared helpers (waitAnswers and waitOnly end with explainDelivers;
// waitOnlyAnswers waits for explain's answer and then checks real requests against it), so every
// scenario that reaches a service is part of the table without a copy of it; the scenarios that
// expect a refusal or a drop add one explainVerdict line next to their check of the real request.

// explainRequest runs explain for a TCP request from netns to addr on the node that handles it, as
// the nodes' own binary, and returns its report. It fails the test when explain cannot explain.
func (s *scenario) explainRequest(netns, addr string) *explain.Report {
	s.t.Helper()
	r, err := s.explainReport(netns, addr)
	if err != nil {
		s.t.Fatal(err)
	}
	return r
}

// explainReport is explainRequest returning its error, for a caller that polls.
func (s *scenario) explainReport(netns, addr string) (*explain.Report, error) {
	s.t.Helper()
	node, from, src := s.handlingNode(netns, addr)
	args := []string{filepath.Join(s.c.State, "bin", "switchyard"), "explain", "--dst", addr + "/tcp", "--from", from, "--output", "json"}
	if src != "" {
		args = append(args, "--src", src)
	}
	out, err := s.c.Exec(s.ctx, node, args...)
	if err != nil {
		return nil, fmt.Errorf("explain of %s from %s on %s: %w\n%s", addr, netns, node, err, out)
	}
	var r explain.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return nil, fmt.Errorf("explain of %s from %s on %s: %w\n%s", addr, netns, node, err, out)
	}
	return &r, nil
}

// handlingNode says where a request from netns to addr is handled, and how explain must be asked:
// a pod's request on its node, from the pod; a node's own request on that node, from the node; a
// request from the underlay on the node that owns the address (a NodePort) or that the underlay
// routes it to (an external or load-balancer IP).
func (s *scenario) handlingNode(netns, addr string) (node, from, src string) {
	s.t.Helper()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		s.t.Fatal(err)
	}
	for name, p := range s.pods {
		if s.podNS(name) == netns {
			return s.c.Node(p.node).Name, string(explain.FromPod), p.ip
		}
	}
	for _, n := range s.c.Nodes {
		if n.Name == netns {
			if strings.HasPrefix(host, "127.") {
				return n.Name, string(explain.FromNode), "127.0.0.1"
			}
			return n.Name, string(explain.FromNode), n.IP
		}
	}
	if netns == s.c.Underlay {
		for _, n := range s.c.Nodes {
			if n.IP == host {
				return n.Name, string(explain.FromExternal), s.underlayIP()
			}
		}
		if i, ok := s.routes[host]; ok {
			return s.c.Node(i).Name, string(explain.FromExternal), s.underlayIP()
		}
	}
	s.t.Fatalf("cannot tell which node handles %s from %s", addr, netns)
	return "", "", ""
}

// explainDelivers checks that explain delivers a request from netns to addr to exactly the pods
// in want (namespace/name, as the echo server reports them), with no other verdict.
func (s *scenario) explainDelivers(netns, addr string, want []string) {
	s.t.Helper()
	r := s.explainRequest(netns, addr)
	got, others := r.DeliveredTo()
	if wantIPs := s.podIPs(want); len(others) > 0 || !slices.Equal(got, wantIPs) {
		s.t.Errorf("explain of %s from %s delivers to %v (other verdicts %v); the real requests were answered by %v (%v)\n%s",
			addr, netns, got, others, wantIPs, want, r.Text())
	}
}

// podIPs are the sorted IPs of the scenario's pods named in qualified (namespace/name).
func (s *scenario) podIPs(qualified []string) []string {
	s.t.Helper()
	var ips []string
	for _, q := range qualified {
		p, ok := s.pods[strings.TrimPrefix(q, s.ns+"/")]
		if !ok {
			s.t.Fatalf("%s is not a pod of this scenario", q)
		}
		ips = append(ips, p.ip)
	}
	slices.Sort(ips)
	return ips
}

// explainVerdict checks that explain's only verdict for a request from netns to addr is v.
func (s *scenario) explainVerdict(netns, addr string, v explain.Verdict) {
	s.t.Helper()
	r := s.explainRequest(netns, addr)
	for _, o := range r.Outcomes {
		if o.Verdict != v {
			s.t.Errorf("explain of %s from %s: an outcome %s (p=%.2f); the real request was %s\n%s",
				addr, netns, o.Verdict, o.Probability, v, r.Text())
			return
		}
	}
	if len(r.Outcomes) == 0 {
		s.t.Errorf("explain of %s from %s gave no outcome; the real request was %s", addr, netns, v)
	}
}
