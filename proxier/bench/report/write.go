// Package report turns a bench.Report into what people and tools read: a terminal table, JSON, CSV,
// a Markdown table and a plot. Everything here is pure formatting: a Report in, bytes out. It measures
// nothing and counts nothing; the figures are the ones bench put in the Report.
package report

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/switchyard/switchyard/proxier/bench"
)

// Formats are the values Write accepts, in the order help text should list them.
var Formats = []string{"table", "json", "csv", "markdown"}

// errNoResults is returned for a report that holds nothing to show.
var errNoResults = errors.New("bench report has no results")

// Write writes rep to w in format: "table" (aligned terminal table), "json" (the Report as is,
// indented), "csv" (one flat row per Result) or "markdown" (a GitHub table).
func Write(w io.Writer, rep *bench.Report, format string) error {
	if rep == nil {
		return errors.New("write bench report: report is nil")
	}
	var err error
	switch format {
	case "json":
		err = writeJSON(w, rep)
	case "table", "csv", "markdown":
		if len(rep.Results) == 0 {
			return fmt.Errorf("write bench report as %s: %w", format, errNoResults)
		}
		switch format {
		case "table":
			err = writeTable(w, rep)
		case "csv":
			err = writeCSV(w, rep)
		default:
			err = writeMarkdown(w, rep)
		}
	default:
		return fmt.Errorf("unknown bench output format %q (valid: %s)", format, strings.Join(Formats, ", "))
	}
	if err != nil {
		return fmt.Errorf("write bench report as %s: %w", format, err)
	}
	return nil
}

func writeJSON(w io.Writer, rep *bench.Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// csvHeader names the CSV columns; csvRow must produce them in this order.
var csvHeader = []string{
	"backend", "services", "endpoints_per_service",
	"rules", "chains", "rules_nat", "rules_filter", "rules_mangle",
	"chains_nat", "chains_filter", "chains_mangle",
	"virtual_servers", "real_servers", "ipset_entries",
	"render_seconds", "render_alloc_bytes", "render_allocs",
	"variant", "full_sync_seconds", "incremental_sync_seconds",
	"first_connect_median_seconds", "first_connect_p90_seconds",
	"last_connect_median_seconds", "last_connect_p90_seconds",
	"apply_unavailable",
}

func writeCSV(w io.Writer, rep *bench.Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	for i := range rep.Results {
		if err := cw.Write(csvRow(&rep.Results[i])); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvRow is one Result in raw units (seconds, bytes, counts) so tools need not parse "12 ms". The
// apply columns are empty when there are no apply figures.
func csvRow(r *bench.Result) []string {
	itoa := strconv.Itoa
	row := []string{
		r.Backend, itoa(r.Services), itoa(r.EndpointsPerService),
		itoa(r.RulesTotal()), itoa(r.ChainsTotal()),
		itoa(r.Rules["nat"]), itoa(r.Rules["filter"]), itoa(r.Rules["mangle"]),
		itoa(r.Chains["nat"]), itoa(r.Chains["filter"]), itoa(r.Chains["mangle"]),
		itoa(r.VirtualServers), itoa(r.RealServers), itoa(r.IpsetEntries),
		ftoa(r.RenderSeconds),
		strconv.FormatUint(r.RenderAllocBytes, 10), strconv.FormatUint(r.RenderAllocs, 10),
	}
	if a := r.Apply; a != nil {
		row = append(row, a.Variant, ftoa(a.FullSyncSeconds), ftoa(a.IncrementalSyncSeconds),
			ftoa(a.FirstService.MedianSeconds), ftoa(a.FirstService.P90Seconds),
			ftoa(a.LastService.MedianSeconds), ftoa(a.LastService.P90Seconds))
	} else {
		row = append(row, "", "", "", "", "", "", "")
	}
	return append(row, r.ApplyUnavailable)
}

func ftoa(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func writeTable(w io.Writer, rep *bench.Report) error {
	header, rows, notes := humanRows(rep)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, cells := range append([][]string{header}, rows...) {
		if _, err := fmt.Fprintln(tw, strings.Join(cells, "\t")); err != nil {
			return err
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		if _, err := fmt.Fprintln(w); err != nil {
			return err
		}
	}
	for _, n := range notes {
		if _, err := fmt.Fprintln(w, n); err != nil {
			return err
		}
	}
	return nil
}

func writeMarkdown(w io.Writer, rep *bench.Report) error {
	header, rows, notes := humanRows(rep)
	var b strings.Builder
	b.WriteString(describeRun(rep))
	b.WriteString("\n\n")
	writeMarkdownRow(&b, header)
	align := make([]string, len(header))
	for i, h := range header {
		align[i] = "---:"
		if h == colBackend || h == colVariant {
			align[i] = "---"
		}
	}
	writeMarkdownRow(&b, align)
	for _, r := range rows {
		writeMarkdownRow(&b, r)
	}
	if len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			b.WriteString("- " + markdownCell(n) + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeMarkdownRow(b *strings.Builder, cells []string) {
	b.WriteString("|")
	for _, c := range cells {
		b.WriteString(" " + markdownCell(c) + " |")
	}
	b.WriteString("\n")
}

// markdownCell keeps a reason text (which may hold anything a command printed) from breaking the
// table: pipes are escaped and line breaks become spaces.
func markdownCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.Join(strings.Fields(s), " ")
}

// describeRun is the one line above a Markdown table: the workload's shape, the sizes measured and
// the host, since wall times mean little without it.
func describeRun(rep *bench.Report) string {
	wl := rep.Workload
	var sizes []string
	seen := map[int]bool{}
	for _, r := range rep.Results {
		if !seen[r.Services] {
			seen[r.Services] = true
			sizes = append(sizes, thousands(r.Services))
		}
	}
	h := rep.Host
	started := "unknown start"
	if !rep.Started.IsZero() {
		started = "started " + rep.Started.UTC().Format("2006-01-02 15:04:05 MST")
	}
	return fmt.Sprintf("**Workload:** %s services × %d endpoints per service, %s NodePort, %s session affinity, %s Local traffic policy. "+
		"**Host:** kernel %s, %d CPUs, %s, load average %s, %s.",
		strings.Join(sizes, " / "), wl.EndpointsPerService,
		percent(wl.NodePortShare), percent(wl.AffinityShare), percent(wl.LocalShare),
		orUnknown(h.Kernel), h.CPUs, orUnknown(h.GoVersion), orUnknown(h.LoadAverage), started)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func percent(share float64) string { return strconv.FormatFloat(share*100, 'f', -1, 64) + "%" }
