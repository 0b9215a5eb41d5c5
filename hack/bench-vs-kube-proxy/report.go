package main

import (
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/switchyard/switchyard/proxier/bench/report"
)

// WorkloadStep is how long growing the workload to a size took.
type WorkloadStep struct {
	Services int     `json:"services"`
	Seconds  float64 `json:"seconds"`
}

// Report is everything one bench run produced.
type Report struct {
	Command      string         `json:"command"`
	Facts        [][2]string    `json:"machine"`
	LoadAvgStart string         `json:"loadavg_start"`
	LoadAvgEnd   string         `json:"loadavg_end"`
	Workload     []WorkloadStep `json:"workload"`
	Results      []Result       `json:"results"`
}

func megabytes(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/1e6) }

// SizeTable is the markdown table for one size. A figure the run did not reach is a dash, and
// the status column says why (a timeout is never shown as a figure).
func (r Report) SizeTable(size int) string {
	var b strings.Builder
	eps := 0
	for _, res := range r.Results {
		if res.Size == size {
			eps = res.Endpoints
		}
	}
	fmt.Fprintf(&b, "### %d services x %d endpoints\n\n", size, eps)
	b.WriteString("| proxy | full sync (own metric) | wall to rules | one-endpoint programming median / max | partial sync median / max | rules | peak RSS | own cleanup | status |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	var notes []string
	for _, res := range r.Results {
		if res.Size != size {
			continue
		}
		full, wall, prog, part, rules, rss := "—", "—", "—", "—", "—", "—"
		if res.WallToRulesSeconds > 0 {
			full = report.Seconds(res.FullSyncSeconds)
			if res.FullSyncMetric == mAnySync {
				full += " (all-syncs metric)"
			}
			wall = report.Seconds(res.WallToRulesSeconds)
		}
		if res.ProgrammingMax > 0 {
			prog = report.Seconds(res.ProgrammingMedian) + " / " + report.Seconds(res.ProgrammingMax)
		}
		if res.PartialSyncMax > 0 {
			part = report.Seconds(res.PartialSyncMedian) + " / " + report.Seconds(res.PartialSyncMax)
		}
		if res.RuleTotal > 0 {
			rules = strconv.Itoa(res.RuleTotal)
			if res.SetElements > 0 {
				rules += fmt.Sprintf(" (+ %d set/map elements)", res.SetElements)
			}
		}
		if res.PeakRSSBytes > 0 {
			rss = megabytes(res.PeakRSSBytes)
		}
		status := strings.ReplaceAll(strings.SplitN(res.Status, "\n", 2)[0], "|", "/")
		cleanup := "—"
		if res.CleanupStatus != "" {
			cleanup = report.Seconds(res.CleanupSeconds)
			if res.CleanupStatus != "ok" {
				cleanup += " (incomplete, note " + strconv.Itoa(len(notes)+1) + ")"
				notes = append(notes, res.Proxy+": "+res.CleanupStatus)
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", res.Proxy, full, wall, prog, part, rules, rss, cleanup, status)
	}
	for i, n := range notes {
		fmt.Fprintf(&b, "\n%d. %s", i+1, n)
	}
	if len(notes) > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

// Markdown is the whole report.
func (r Report) Markdown() string {
	var b strings.Builder
	b.WriteString("## Machine\n\n")
	for _, f := range r.Facts {
		fmt.Fprintf(&b, "- %s: %s\n", f[0], f[1])
	}
	fmt.Fprintf(&b, "- load average (1, 5, 15 min) at start: %s; at end: %s\n", r.LoadAvgStart, r.LoadAvgEnd)
	fmt.Fprintf(&b, "- driver command: `%s`\n\n", r.Command)
	b.WriteString("Workload creation (Services + EndpointSlices through the API, added to the previous size):")
	for _, w := range r.Workload {
		fmt.Fprintf(&b, " %d in %s;", w.Services, report.Seconds(w.Seconds))
	}
	b.WriteString("\n\n")
	seen := map[int]bool{}
	for _, res := range r.Results {
		if !seen[res.Size] {
			seen[res.Size] = true
			b.WriteString(r.SizeTable(res.Size))
			b.WriteString("\n")
		}
	}
	return b.String()
}

// Write puts results.json, results.csv and results.md into dir.
func (r Report) Write(dir string) error {
	if err := jsonFile(filepath.Join(dir, "results.json"), r); err != nil {
		return fmt.Errorf("write results.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(r.Markdown()), 0o644); err != nil {
		return fmt.Errorf("write results.md: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, "results.csv"))
	if err != nil {
		return fmt.Errorf("write results.csv: %w", err)
	}
	defer f.Close()
	w := csv.NewWriter(f)
	_ = w.Write([]string{"services", "endpoints", "proxy", "status", "full_sync_metric_s", "full_sync_metric", "wall_to_rules_s",
		"programming_median_s", "programming_max_s", "partial_sync_median_s", "partial_sync_max_s",
		"rules", "set_elements", "iptables_nat", "iptables_filter", "iptables_mangle", "ip6tables_rules",
		"nft_rules", "nft_chains", "nft_elements", "peak_rss_bytes", "cleanup_s", "cleanup_status", "loadavg"})
	ff := func(v float64) string { return strconv.FormatFloat(v, 'f', 6, 64) }
	for _, res := range r.Results {
		ipt := res.Rules.IptablesNft
		_ = w.Write([]string{strconv.Itoa(res.Size), strconv.Itoa(res.Endpoints), res.Proxy, strings.SplitN(res.Status, "\n", 2)[0],
			ff(res.FullSyncSeconds), res.FullSyncMetric, ff(res.WallToRulesSeconds),
			ff(res.ProgrammingMedian), ff(res.ProgrammingMax), ff(res.PartialSyncMedian), ff(res.PartialSyncMax),
			strconv.Itoa(res.RuleTotal), strconv.Itoa(res.SetElements),
			strconv.Itoa(ipt.Rules["nat"]), strconv.Itoa(ipt.Rules["filter"]), strconv.Itoa(ipt.Rules["mangle"]),
			strconv.Itoa(res.Rules.IP6tablesNft.AllRules()),
			strconv.Itoa(res.Rules.NftKubeProxy.Rules), strconv.Itoa(res.Rules.NftKubeProxy.Chains), strconv.Itoa(res.Rules.NftKubeProxy.Elements),
			strconv.FormatInt(res.PeakRSSBytes, 10), ff(res.CleanupSeconds), res.CleanupStatus, res.LoadAvg})
	}
	w.Flush()
	return w.Error()
}
