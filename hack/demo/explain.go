package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/switchyard/switchyard/proxier/explain"
)

// explained is one `switchyard explain` of a request the demo just made, run on the node that
// handled the request with the nodes' own binary, and whether its answer matches what the real
// request got.
type explained struct {
	title string
	text  string // explain's report, as its text output prints it
	ok    bool
	note  string // what did not match, when !ok
}

// explainRequests explains two of the requests above: a ClusterIP request that was answered, and
// the eTP=Local request that was dropped.
func (e *env) explainRequests(ctx context.Context) []explained {
	client := podKey(clientPod)
	clientNode := e.c.Node(e.podNode[client]).Name
	var webIPs []string
	for pod := range e.webPods(0) {
		webIPs = append(webIPs, e.podIP[pod])
	}
	sort.Strings(webIPs)

	return []explained{
		e.explainOne(ctx, fmt.Sprintf("the ClusterIP request from pod %s (request group 1), on %s", client, clientNode), clientNode,
			[]string{"--src", e.podIP[client], "--dst", e.clusterTarget(svcClusterIP) + "/tcp", "--from", "pod"},
			func(r *explain.Report) (bool, string) {
				got, others := r.DeliveredTo()
				if len(others) > 0 || !slices.Equal(got, webIPs) {
					return false, fmt.Sprintf("explain delivers to %v (other verdicts %v); the web pods are %v", got, others, webIPs)
				}
				return true, ""
			}),
		e.explainOne(ctx, fmt.Sprintf("the dropped eTP=Local request from the underlay (request group 5), on %s", e.c.Node(1).Name), e.c.Node(1).Name,
			[]string{"--src", e.underlay[0], "--dst", e.nodePortTarget(svcLocal, 1) + "/tcp", "--from", "external"},
			func(r *explain.Report) (bool, string) {
				got, others := r.DeliveredTo()
				if len(got) > 0 || !slices.Equal(others, []explain.Verdict{explain.Dropped}) {
					return false, fmt.Sprintf("explain says delivered to %v, other verdicts %v; the request was dropped", got, others)
				}
				return true, ""
			}),
	}
}

// explainOne runs explain with args in node's namespace and checks its report.
func (e *env) explainOne(ctx context.Context, title, node string, args []string, check func(*explain.Report) (bool, string)) explained {
	x := explained{title: title}
	argv := append([]string{"netns", "exec", node, filepath.Join(e.c.State, "bin", "switchyard"), "explain", "--output", "json"}, args...)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", argv...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var r explain.Report
	if jerr := json.Unmarshal(stdout.Bytes(), &r); jerr != nil {
		x.note = fmt.Sprintf("switchyard %s: %v %v: %s", strings.Join(args, " "), err, jerr, strings.TrimSpace(stderr.String()))
		return x
	}
	x.text = abridged(&r).Text()
	if err != nil {
		x.note = fmt.Sprintf("explain exited with %v: %s", err, strings.TrimSpace(stderr.String()))
		return x
	}
	x.ok, x.note = check(&r)
	return x
}

// printExplained prints the explanations, indented under their titles.
func printExplained(w io.Writer, xs []explained) {
	if len(xs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nWhy, according to `switchyard explain` (run on the node that handled the request):\n")
	for _, x := range xs {
		verdict := "ok  "
		if !x.ok {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "\n   %s %s\n", verdict, x.title)
		if x.note != "" {
			fmt.Fprintf(w, "        %s\n", x.note)
		}
		for _, line := range strings.Split(strings.TrimRight(x.text, "\n"), "\n") {
			if line != "" {
				fmt.Fprintf(w, "        %s\n", line)
			}
		}
	}
}

// abridged is the report as the demo prints it: the steps of the first outcome only, since the
// others differ from it only from the DNAT on, and a note saying so. The checks read the whole report.
func abridged(r *explain.Report) *explain.Report {
	if len(r.Outcomes) < 2 {
		return r
	}
	short := *r
	short.Outcomes = slices.Clone(r.Outcomes)
	for i := 1; i < len(short.Outcomes); i++ {
		short.Outcomes[i].Steps = nil
	}
	short.Notes = append(slices.Clone(r.Notes), "the demo prints the first outcome's steps only; `switchyard explain` prints every outcome's")
	return &short
}
