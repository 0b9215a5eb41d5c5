package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"k8s.io/klog/v2"
)

// Change is one endpoint replacement and what the proxy's metrics say about it.
type Change struct {
	Service string `json:"service"`
	NewIP   string `json:"new_ip"`
	Status  string `json:"status"` // ok, timeout, error: ...
	// ProgrammingSeconds is the delta of network_programming_duration_seconds_sum over the delta
	// of its _count (normally exactly 1) across the change.
	ProgrammingSeconds float64 `json:"programming_seconds"`
	ProgrammingCount   float64 `json:"programming_count_delta"`
	// SyncSeconds is the summed duration of the syncs that ran for the change, by kind.
	PartialSyncSeconds float64 `json:"partial_sync_seconds"`
	PartialSyncCount   float64 `json:"partial_sync_count_delta"`
	FullSyncSeconds    float64 `json:"full_sync_seconds"`
	FullSyncCount      float64 `json:"full_sync_count_delta"`
}

// Result is one proxy at one size.
type Result struct {
	Size      int    `json:"services"`
	Endpoints int    `json:"endpoints_per_service"`
	Proxy     string `json:"proxy"`
	Status    string `json:"status"` // ok, timeout, failed: ...
	Started   string `json:"started"`
	LoadAvg   string `json:"loadavg_at_start"`

	// FullSyncSeconds is the first full sync's duration from the proxy's own histogram
	// (sum over count at the first scrape that shows a finished sync; count is normally 1).
	FullSyncSeconds float64 `json:"full_sync_metric_seconds"`
	FullSyncCount   float64 `json:"full_sync_metric_count"`
	FullSyncMetric  string  `json:"full_sync_metric"`
	// WallToRulesSeconds is sync_proxy_rules_last_timestamp_seconds at the first finished sync
	// minus the moment the process was started; WallToRulesPolled is when the bench saw it.
	WallToRulesSeconds float64 `json:"wall_to_rules_seconds"`
	WallToRulesPolled  float64 `json:"wall_to_rules_polled_seconds"`

	Rules        RuleCount `json:"rules_after_first_sync"`
	RuleTotal    int       `json:"rule_total"`    // iptables: -A lines in nat+filter+mangle; nftables: rules in table ip kube-proxy
	SetElements  int       `json:"set_elements"`  // nftables: elements of the table's sets and maps
	ExpectedDNAT int       `json:"expected_dnat"` // services x endpoints
	DNAT         int       `json:"dnat_after_first_sync"`
	DNATAfter    int       `json:"dnat_after_changes"`

	Changes            []Change `json:"changes"`
	ProgrammingMedian  float64  `json:"programming_median_seconds"`
	ProgrammingMax     float64  `json:"programming_max_seconds"`
	PartialSyncMedian  float64  `json:"partial_sync_median_seconds"`
	PartialSyncMax     float64  `json:"partial_sync_max_seconds"`
	PeakRSSBytes       int64    `json:"peak_rss_bytes"`
	CleanupSeconds     float64  `json:"cleanup_seconds"`
	CleanupStatus      string   `json:"cleanup_status"`
	WallSecondsOverall float64  `json:"wall_seconds_overall"`
	Log                string   `json:"log"`
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// runProxy measures one proxy against the workload as it stands, then stops it and removes its
// rules. A returned error means the node may not be clean and the bench must stop; problems
// with the proxy itself are recorded in Result.Status instead.
func runProxy(ctx context.Context, cfg Config, wl *Workload, spec ProxySpec, size int) (res Result, fatal error) {
	res = Result{Size: size, Endpoints: cfg.Endpoints, Proxy: spec.Name, Status: "ok", LoadAvg: loadAvg(), ExpectedDNAT: size * cfg.Endpoints}
	res.Log = filepath.Join(cfg.Out, "logs", fmt.Sprintf("%d-%s.log", size, spec.Name))
	if err := os.MkdirAll(filepath.Dir(res.Log), 0o755); err != nil {
		return res, err
	}
	before, err := CountRules(ctx, cfg.Node)
	if err != nil {
		return res, fmt.Errorf("rules before %s: %w", spec.Name, err)
	}
	if left := before.Leftovers(); left != "" {
		return res, fmt.Errorf("node %s is not clean before %s: %s", cfg.Node, spec.Name, left)
	}
	scraper, err := newScraper(cfg.Node)
	if err != nil {
		return res, err
	}
	defer scraper.Close()

	proc, err := startProxy(spec, cfg.Node, res.Log)
	if err != nil {
		res.Status = "failed: " + err.Error()
		return res, nil
	}
	res.Started = proc.started.UTC().Format(time.RFC3339)
	klog.InfoS("Proxy started", "proxy", spec.Name, "services", size, "pid", proc.cmd.Process.Pid)
	measure(ctx, cfg, wl, spec, size, proc, scraper, &res)
	if rss, err := proc.peakRSS(); err == nil {
		res.PeakRSSBytes = rss
	} else if res.Status == "ok" {
		res.Status = "failed: " + err.Error()
	}
	proc.stop()
	res.WallSecondsOverall = time.Since(proc.started).Seconds()

	// Cleanup runs even after a Ctrl-C (with a context of its own), so the next run starts clean.
	cctx, cancel := context.WithTimeout(context.Background(), cfg.CleanupTimeout+5*time.Minute)
	defer cancel()
	took, cerr := runCleanup(cctx, spec, cfg.Node, res.Log, cfg.CleanupTimeout)
	res.CleanupSeconds = took.Seconds()
	after, err := CountRules(cctx, cfg.Node)
	if err != nil {
		return res, fmt.Errorf("rules after %s cleanup: %w", spec.Name, err)
	}
	left := after.Leftovers()
	switch {
	case cerr == nil && left == "":
		res.CleanupStatus = "ok"
		return res, nil
	case cerr != nil:
		res.CleanupStatus = cerr.Error()
	default:
		res.CleanupStatus = "its cleanup left " + left
	}
	klog.InfoS("Proxy cleanup incomplete; flushing the node's tables by hand", "proxy", spec.Name, "status", res.CleanupStatus)
	if err := forceClean(cctx, cfg.Node); err != nil {
		return res, fmt.Errorf("force clean after %s: %w", spec.Name, err)
	}
	if after, err = CountRules(cctx, cfg.Node); err != nil {
		return res, err
	}
	if left := after.Leftovers(); left != "" {
		return res, fmt.Errorf("node %s still holds %s after %s", cfg.Node, left, spec.Name)
	}
	res.CleanupStatus += "; removed by hand"
	return res, nil
}

// measure fills in the sync, rule and change figures, setting res.Status on the first problem.
func measure(ctx context.Context, cfg Config, wl *Workload, spec ProxySpec, size int, proc *running, s *nsScraper, res *Result) {
	deadline := proc.started.Add(cfg.Timeout)
	var first Metrics
	for first == nil {
		if proc.hasExited() {
			res.Status = fmt.Sprintf("failed: exited before its first sync (%v); log tail:\n%s", proc.waitErr, logTail(proc.log, 10))
			return
		}
		if time.Now().After(deadline) {
			res.Status = fmt.Sprintf("timeout: no finished sync within %s", cfg.Timeout)
			return
		}
		if ctx.Err() != nil {
			res.Status = "interrupted"
			return
		}
		if m, err := s.Scrape(ctx); err == nil && m[mLastSync] > 0 {
			first = m
			res.WallToRulesPolled = time.Since(proc.started).Seconds()
			break
		}
		time.Sleep(metricsPollIv)
	}
	startUnix := float64(proc.started.UnixNano()) / 1e9
	res.WallToRulesSeconds = first[mLastSync] - startUnix
	res.FullSyncMetric = mFullSync
	res.FullSyncSeconds, res.FullSyncCount = first[mFullSync+"_sum"], first[mFullSync+"_count"]
	if res.FullSyncCount == 0 {
		// A proxy without the full/partial split: its all-syncs histogram (said in the report).
		res.FullSyncMetric = mAnySync
		res.FullSyncSeconds, res.FullSyncCount = first[mAnySync+"_sum"], first[mAnySync+"_count"]
	}
	if res.FullSyncCount > 1 {
		res.FullSyncSeconds /= res.FullSyncCount
	}
	klog.InfoS("First sync", "proxy", spec.Name, "services", size, "fullSyncMetric", res.FullSyncSeconds, "wallToRules", res.WallToRulesSeconds)

	rules, err := CountRules(ctx, cfg.Node)
	if err != nil {
		res.Status = "failed: " + err.Error()
		return
	}
	res.Rules = rules
	if size <= 1000 {
		if err := saveDumps(ctx, cfg.Node, filepath.Join(cfg.Out, "dumps"), fmt.Sprintf("%d-%s", size, spec.Name), rules); err != nil {
			klog.ErrorS(err, "Saving the rule dumps")
		}
	}
	res.RuleTotal, res.SetElements, res.DNAT = ruleFigures(spec, rules)
	if res.DNAT != res.ExpectedDNAT {
		res.Status = fmt.Sprintf("failed: %d DNAT rules to endpoints after the first sync, want %d", res.DNAT, res.ExpectedDNAT)
		return
	}

	for c := range cfg.Changes {
		// Services spread over the table, never the same one twice.
		svc := (c*size/cfg.Changes + size/(2*cfg.Changes)) % size
		ch := oneChange(ctx, cfg, wl, s, proc, svc)
		res.Changes = append(res.Changes, ch)
		klog.InfoS("Endpoint change", "proxy", spec.Name, "services", size, "service", ch.Service, "status", ch.Status, "programming", ch.ProgrammingSeconds, "partialSync", ch.PartialSyncSeconds)
		if ch.Status != "ok" {
			res.Status = "change " + ch.Service + ": " + ch.Status
			return
		}
	}
	var prog, part []float64
	for _, ch := range res.Changes {
		prog = append(prog, ch.ProgrammingSeconds)
		if ch.PartialSyncCount > 0 {
			part = append(part, ch.PartialSyncSeconds/ch.PartialSyncCount)
		}
	}
	res.ProgrammingMedian, res.ProgrammingMax = medianMax(prog)
	res.PartialSyncMedian, res.PartialSyncMax = medianMax(part)
	// Every replacement address must now be a DNAT target. The total may exceed the workload's:
	// kube-proxy's partial syncs leave the chains of removed endpoints (unreferenced) until its
	// next full sync, so DNATAfter is reported, not checked.
	rules, err = CountRules(ctx, cfg.Node)
	if err != nil {
		res.Status = "failed: " + err.Error()
		return
	}
	_, _, res.DNATAfter = ruleFigures(spec, rules)
	for _, ch := range res.Changes {
		if !dnatsTo(rules, ch.NewIP) {
			res.Status = fmt.Sprintf("failed: no DNAT to %s (the new endpoint of %s) after the changes", ch.NewIP, ch.Service)
			return
		}
	}
}

// ruleFigures picks the counts that matter for the proxy's mode.
func ruleFigures(spec ProxySpec, rc RuleCount) (total, elements, dnat int) {
	if strings.HasSuffix(spec.Name, "-nftables") {
		return rc.NftKubeProxy.Rules, rc.NftKubeProxy.Elements, rc.NftKubeProxy.DNATToEndpoints
	}
	return rc.IptablesNft.Total() + rc.IptablesLegacy.Total(), 0, rc.IptablesNft.DNATToEndpoints + rc.IptablesLegacy.DNATToEndpoints
}

// oneChange waits for the proxy to be idle, replaces one endpoint and reads the metric deltas
// once the proxy has observed the change's programming latency and finished that sync.
func oneChange(ctx context.Context, cfg Config, wl *Workload, s *nsScraper, proc *running, svc int) Change {
	ch := Change{Service: serviceName(svc)}
	deadline := time.Now().Add(cfg.Timeout)
	var before Metrics
	for before == nil {
		if st := waitProblem(ctx, proc, deadline); st != "" {
			ch.Status = st + " while waiting for the proxy to be idle"
			return ch
		}
		m, err := s.Scrape(ctx)
		if err == nil {
			last := time.Unix(0, int64(m[mLastSync]*1e9))
			// Idle: past the min-sync-period (1 s) with a margin, and nothing queued since.
			if time.Since(last) > cfg.IdleGap && m[mLastQueued] <= m[mLastSync] {
				before = m
				break
			}
		}
		time.Sleep(metricsPollIv)
	}
	ip, err := wl.ReplaceOne(ctx, svc)
	if err != nil {
		ch.Status = "error: " + err.Error()
		return ch
	}
	ch.NewIP = ip
	// Every sync, full or partial, counts into the all-syncs histogram, which both proxies have.
	syncs := func(m Metrics) float64 { return m[mAnySync+"_count"] }
	for {
		if st := waitProblem(ctx, proc, deadline); st != "" {
			ch.Status = st + fmt.Sprintf(" before the change was programmed (limit %s)", cfg.Timeout)
			return ch
		}
		m, err := s.Scrape(ctx)
		if err == nil && m[mProgramming+"_count"] > before[mProgramming+"_count"] && syncs(m) > syncs(before) {
			d := func(name string) float64 { return m[name] - before[name] }
			ch.ProgrammingCount = d(mProgramming + "_count")
			ch.ProgrammingSeconds = d(mProgramming+"_sum") / ch.ProgrammingCount
			ch.PartialSyncCount, ch.PartialSyncSeconds = d(mPartialSync+"_count"), d(mPartialSync+"_sum")
			ch.FullSyncCount, ch.FullSyncSeconds = d(mFullSync+"_count"), d(mFullSync+"_sum")
			ch.Status = "ok"
			return ch
		}
		time.Sleep(metricsPollIv)
	}
}

// waitProblem says why a wait must end: the proxy exited, the bench was interrupted, or the
// deadline passed; "" means keep waiting.
func waitProblem(ctx context.Context, proc *running, deadline time.Time) string {
	switch {
	case proc.hasExited():
		return fmt.Sprintf("proxy exited (%v)", proc.waitErr)
	case ctx.Err() != nil:
		return "interrupted"
	case time.Now().After(deadline):
		return "timeout"
	}
	return ""
}

func medianMax(v []float64) (median, max float64) {
	if len(v) == 0 {
		return 0, 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if n := len(s); n%2 == 1 {
		median = s[n/2]
	} else {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	return median, s[len(s)-1]
}
