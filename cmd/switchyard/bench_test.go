package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/proxier/bench"
)

func TestBenchFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sizes", "100,abc"}, `"abc" is not a positive service count`},
		{[]string{"--sizes", "0"}, "not a positive service count"},
		{[]string{"--output", "yaml"}, "want table, json, csv or markdown"},
		{[]string{"--plot", "out.pdf"}, "must end in .svg or .png"},
		{[]string{"--connects", "-1"}, "must not be negative"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"--backends", "nftables", "--sizes", "10"}, `unknown backend "nftables"`},
		{[]string{"--nodeport-share", "2", "--sizes", "10"}, "nodeport share 2 is not between 0 and 1"},
		{[]string{"--input", "/nonexistent/report.json"}, "no such file"},
	} {
		var out, errOut bytes.Buffer
		err := runBench(tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

// TestBenchRenderOnly runs the real command without --apply: both backends, two sizes, JSON out.
func TestBenchRenderOnly(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := runBench([]string{"--sizes", "10,40", "--output", "json"}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not a JSON report: %v\n%s", err, out.String())
	}
	if len(rep.Results) != 4 {
		t.Fatalf("got %d results, want 2 sizes x 2 backends", len(rep.Results))
	}
	for _, r := range rep.Results {
		if r.Apply != nil || r.ApplyUnavailable != "" {
			t.Errorf("%s/%d: apply figures without --apply", r.Backend, r.Services)
		}
	}
	// iptables grows with the services; IPVS mode's iptables rules do not.
	ipt10, ipvs10, ipt40, ipvs40 := rep.Results[0], rep.Results[1], rep.Results[2], rep.Results[3]
	if ipt40.RulesTotal() <= ipt10.RulesTotal() || ipvs40.RulesTotal() != ipvs10.RulesTotal() || ipvs40.VirtualServers <= ipvs10.VirtualServers {
		t.Errorf("unexpected growth: iptables %d -> %d rules, ipvs %d -> %d rules, %d -> %d virtual servers",
			ipt10.RulesTotal(), ipt40.RulesTotal(), ipvs10.RulesTotal(), ipvs40.RulesTotal(), ipvs10.VirtualServers, ipvs40.VirtualServers)
	}
	if !strings.Contains(errOut.String(), "40 services: rendering with the ipvs backend") {
		t.Errorf("no progress on stderr:\n%s", errOut.String())
	}

	// --input re-renders the saved report without measuring, here as markdown into a file.
	dir := t.TempDir()
	saved := filepath.Join(dir, "bench.json")
	if err := os.WriteFile(saved, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(dir, "bench.md")
	if err := runBench([]string{"--input", saved, "--output", "markdown", "--output-file", md}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "| iptables | 40 |") {
		t.Errorf("markdown from --input lacks the 40-service iptables row:\n%s", b)
	}
}
