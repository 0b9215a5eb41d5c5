package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/proxier/bench"

	"github.com/switchyard/switchyard/internal/golden"
)

const ipvsMissing = "kernel has no IPVS: modprobe ip_vs: exit status 1"

// fixture is a fixed two-size run of both backends. Its figures are made up but shaped like real
// ones: iptables rules grow with endpoints, IPVS keeps a few rules and many kernel entries.
func fixture(apply bool) *bench.Report {
	rep := &bench.Report{
		Workload: bench.Workload{Services: 1000, EndpointsPerService: 5, NodePortShare: 0.2, AffinityShare: 0.1, LocalShare: 0.1},
		Started:  time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC),
		Host:     bench.Host{Kernel: "6.18.0", CPUs: 2, GoVersion: "go1.26.0", LoadAverage: "0.52"},
	}
	// Literal figures per size, so the golden CSV holds exact decimals.
	for _, f := range []struct {
		n                             int
		iptRender, ipvsRender         float64
		iptAlloc, ipvsAlloc           uint64
		iptAllocs, ipvsAllocs         uint64
		fullSync, lastMedian, lastP90 float64
	}{
		{100, 0.00042, 0.0031, 812_345, 1_540_000, 9_876, 54_321, 0.0312, 39.5e-6, 65e-6},
		{1000, 0.0042, 0.031, 8_123_450, 154_000_000, 98_760, 543_210, 3.12, 80e-6, 110e-6},
	} {
		n := f.n
		ipt := bench.Result{
			Backend: bench.BackendIptables, Services: n, EndpointsPerService: 5,
			RenderSeconds: f.iptRender, RenderAllocBytes: f.iptAlloc, RenderAllocs: f.iptAllocs,
			Rules:  map[string]int{"nat": 7*n + 25, "filter": 12, "mangle": 0},
			Chains: map[string]int{"nat": n + 6, "filter": 4},
		}
		ipvs := bench.Result{
			Backend: bench.BackendIPVS, Services: n, EndpointsPerService: 5,
			RenderSeconds: f.ipvsRender, RenderAllocBytes: f.ipvsAlloc, RenderAllocs: f.ipvsAllocs,
			Rules:          map[string]int{"nat": 21, "filter": 7},
			Chains:         map[string]int{"nat": 8, "filter": 3},
			VirtualServers: n + n/5, RealServers: 5 * (n + n/5), IpsetEntries: n + n/5 + 3,
		}
		if apply {
			ipt.Apply = &bench.Applied{
				Variant: "nft", FullSyncSeconds: f.fullSync, IncrementalSyncSeconds: 0.0187,
				FirstService: bench.Latency{Samples: 1000, MedianSeconds: 31e-6, P90Seconds: 44e-6},
				LastService:  bench.Latency{Samples: 1000, MedianSeconds: f.lastMedian, P90Seconds: f.lastP90},
			}
			ipvs.ApplyUnavailable = ipvsMissing
		}
		rep.Results = append(rep.Results, ipt, ipvs)
	}
	return rep
}

func TestWriteGolden(t *testing.T) {
	for _, format := range []string{"table", "csv", "markdown"} {
		for _, apply := range []bool{false, true} {
			name := format + "-no-apply.golden"
			if apply {
				name = format + "-apply.golden"
			}
			t.Run(name, func(t *testing.T) {
				var buf bytes.Buffer
				if err := Write(&buf, fixture(apply), format); err != nil {
					t.Fatalf("Write: %v", err)
				}
				golden.Check(t, name, buf.Bytes())
			})
		}
	}
}

// TestHumanApplyColumns checks what the golden files show, so a careless -update cannot bless a
// regression: apply columns only with apply figures, "n/a" for IPVS, and its reason noted once.
func TestHumanApplyColumns(t *testing.T) {
	for _, format := range []string{"table", "markdown"} {
		var without, with bytes.Buffer
		if err := Write(&without, fixture(false), format); err != nil {
			t.Fatal(err)
		}
		if err := Write(&with, fixture(true), format); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(without.String(), "incremental sync") || strings.Contains(without.String(), notMeasured) {
			t.Errorf("%s without --apply shows apply columns:\n%s", format, without.String())
		}
		out := with.String()
		if !strings.Contains(out, "incremental sync") {
			t.Errorf("%s with apply figures lacks the apply columns:\n%s", format, out)
		}
		note := "ipvs apply: n/a: " + ipvsMissing
		if c := strings.Count(out, note); c != 1 {
			t.Errorf("%s: note %q appears %d times, want once:\n%s", format, note, c, out)
		}
		for _, want := range []string{"7,037", "1,200", "6,000", "31 µs", "80 µs", "3.12 s", "18.7 ms", "8.12 MB", "154.0 MB"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s lacks %q:\n%s", format, want, out)
			}
		}
	}
}

func TestCSVColumns(t *testing.T) {
	rep := fixture(true)
	var buf bytes.Buffer
	if err := Write(&buf, rep, "csv"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1+4 {
		t.Fatalf("got %d lines, want a header and 4 rows:\n%s", len(lines), buf.String())
	}
	header := strings.Split(lines[0], ",")
	// The last iptables row: its values by column name.
	row := map[string]string{}
	for i, v := range strings.Split(lines[3], ",") {
		row[header[i]] = v
	}
	for col, want := range map[string]string{
		"backend": "iptables", "services": "1000", "rules": "7037", "rules_nat": "7025", "chains": "1010",
		"variant": "nft", "apply_unavailable": "",
		// Floats are written exactly (shortest round-tripping form), so compare with the same form.
		"render_seconds":              ftoa(rep.Results[2].RenderSeconds),
		"full_sync_seconds":           ftoa(rep.Results[2].Apply.FullSyncSeconds),
		"last_connect_median_seconds": ftoa(rep.Results[2].Apply.LastService.MedianSeconds),
		"last_connect_p90_seconds":    ftoa(rep.Results[2].Apply.LastService.P90Seconds),
	} {
		if row[col] != want {
			t.Errorf("column %s = %q, want %q", col, row[col], want)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for _, apply := range []bool{false, true} {
		rep := fixture(apply)
		var buf bytes.Buffer
		if err := Write(&buf, rep, "json"); err != nil {
			t.Fatal(err)
		}
		var back bench.Report
		if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
			t.Fatalf("JSON does not parse: %v\n%s", err, buf.String())
		}
		if !reflect.DeepEqual(*rep, back) {
			t.Errorf("round trip changed the report:\n got %+v\nwant %+v", back, *rep)
		}
	}
}

func TestWriteErrors(t *testing.T) {
	err := Write(&bytes.Buffer{}, fixture(false), "yaml")
	if err == nil || !strings.Contains(err.Error(), `"yaml"`) || !strings.Contains(err.Error(), "table, json, csv, markdown") {
		t.Errorf("unknown format: got %v, want an error naming it and the valid formats", err)
	}
	if err := Write(&bytes.Buffer{}, nil, "table"); err == nil {
		t.Error("nil report: got no error")
	}
	for _, format := range []string{"table", "csv", "markdown"} {
		err := Write(&bytes.Buffer{}, &bench.Report{}, format)
		if !errors.Is(err, errNoResults) {
			t.Errorf("%s of an empty report: got %v, want %v", format, err, errNoResults)
		}
	}
}

func TestUnits(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{thousands(0), "0"}, {thousands(999), "999"}, {thousands(1000), "1,000"},
		{thousands(170028), "170,028"}, {thousands(-1234567), "-1,234,567"},
		{Seconds(0.00042), "0.42 ms"}, {Seconds(0.0187), "18.7 ms"}, {Seconds(0.312), "312 ms"},
		{Seconds(2.34), "2.34 s"}, {Seconds(36.3), "36.3 s"}, {Seconds(835), "835 s"},
		{micros(31e-6), "31 µs"}, {micros(4.5e-6), "4.5 µs"},
		{megabytes(812345), "0.81 MB"}, {megabytes(154_000_000), "154.0 MB"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
