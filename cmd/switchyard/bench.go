package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/bench"
	"github.com/switchyard/switchyard/proxier/bench/report"
)

// benchUsage introduces `switchyard bench` in its --help.
const benchUsage = `Usage: switchyard bench [flags]

Renders a synthetic workload (services x endpoints, at each size) through both backends' own render
code and reports the size of each ruleset and what rendering cost. With --apply (root), it also
applies every ruleset to a real kernel inside a throwaway network namespace and measures the first
sync, a sync after one endpoint changes, and TCP connect times to the first and the last service.
No cluster is needed, and nothing outside the throwaway namespaces is touched.

Flags:
`

// benchFlags are the settings of one `switchyard bench` run.
type benchFlags struct {
	sizes    []int
	workload bench.Workload
	backends []string
	apply    bool
	variant  string
	connects int
	output   string
	outFile  string
	input    string
	plot     string
}

func parseBenchFlags(args []string, stderr io.Writer) (*benchFlags, error) {
	f := &benchFlags{}
	fs := pflag.NewFlagSet("switchyard bench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	sizes := fs.String("sizes", "100,1000,5000,10000", "Service counts to measure, comma-separated, in order (50000 works for renders; --apply at that size takes minutes).")
	fs.IntVar(&f.workload.EndpointsPerService, "endpoints", 5, "Endpoints per service.")
	fs.Float64Var(&f.workload.NodePortShare, "nodeport-share", 0.2, "Share of the services that are NodePort services (0 to 1); the rest are ClusterIP.")
	fs.Float64Var(&f.workload.AffinityShare, "affinity-share", 0, "Share of the services with sessionAffinity ClientIP (0 to 1).")
	fs.Float64Var(&f.workload.LocalShare, "local-share", 0, "Share of the services with a Local traffic policy (external for NodePort services, internal for ClusterIP ones).")
	fs.StringSliceVar(&f.backends, "backends", []string{bench.BackendIptables, bench.BackendIPVS}, "Backends to measure: iptables, ipvs.")
	fs.BoolVar(&f.apply, "apply", false, "Apply each ruleset in a throwaway network namespace and time it (needs root; IPVS needs a kernel with IPVS).")
	fs.StringVar(&f.variant, "iptables-variant", "auto", "iptables variant for --apply: auto (what this machine's kubelet would use), nft, legacy, or both.")
	fs.IntVar(&f.connects, "connects", 200, "Timed TCP connects to the first and to the last service per apply.")
	fs.StringVar(&f.output, "output", "table", "Output format: table, json, csv or markdown.")
	fs.StringVar(&f.outFile, "output-file", "", "Write the results to this file instead of standard output (progress stays on standard error).")
	fs.StringVar(&f.input, "input", "", "Measure nothing: read a report saved with --output json and print or plot it again.")
	fs.StringVar(&f.plot, "plot", "", "Also draw rule counts, apply time and connect latency against service count into this file (.svg or .png).")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--sizes: %q is not a positive service count", s)
		}
		f.sizes = append(f.sizes, n)
	}
	switch f.output {
	case "table", "json", "csv", "markdown":
	default:
		return nil, fmt.Errorf("--output %q: want table, json, csv or markdown", f.output)
	}
	if f.plot != "" && !strings.HasSuffix(f.plot, ".svg") && !strings.HasSuffix(f.plot, ".png") {
		return nil, fmt.Errorf("--plot %q: the file name must end in .svg or .png", f.plot)
	}
	if f.connects < 0 {
		return nil, fmt.Errorf("--connects must not be negative")
	}
	return f, nil
}

// variants resolves --iptables-variant.
func (f *benchFlags) variants() ([]utiliptables.Variant, error) {
	switch f.variant {
	case "both":
		return []utiliptables.Variant{utiliptables.VariantNFT, utiliptables.VariantLegacy}, nil
	case "auto":
		v, err := utiliptables.DetectVariant("", utiliptables.HostSave)
		return []utiliptables.Variant{v}, err
	default:
		v, err := utiliptables.DetectVariant(utiliptables.Variant(f.variant), nil)
		return []utiliptables.Variant{v}, err
	}
}

// runBench is `switchyard bench`.
func runBench(args []string, stdout, stderr io.Writer) error {
	f, err := parseBenchFlags(args, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	cfg := bench.Config{Sizes: f.sizes, Workload: f.workload, Backends: f.backends, Apply: f.apply, Connects: f.connects}
	if f.apply && f.input == "" {
		if os.Geteuid() != 0 {
			return errors.New("bench: --apply needs root (it creates network namespaces and runs iptables-restore in them)")
		}
		if cfg.Variants, err = f.variants(); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	var rep *bench.Report
	if f.input != "" {
		if rep, err = readReport(f.input); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	} else {
		start := time.Now()
		cfg.Progress = func(step string) {
			fmt.Fprintf(stderr, "[%6.1fs] %s\n", time.Since(start).Seconds(), step)
		}
		if rep, err = bench.Run(cfg); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		cfg.Progress("done")
	}
	if err := writeReport(rep, f.output, f.outFile, stdout); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if f.plot != "" {
		if err := report.Plot(rep, f.plot); err != nil {
			return fmt.Errorf("bench: plot: %w", err)
		}
		fmt.Fprintf(stderr, "plot written to %s\n", f.plot)
	}
	return nil
}

// writeReport writes rep in format to path, or to stdout when path is empty.
func writeReport(rep *bench.Report, format, path string, stdout io.Writer) error {
	if path == "" {
		return report.Write(stdout, rep, format)
	}
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	werr := report.Write(file, rep, format)
	if cerr := file.Close(); werr == nil && cerr != nil {
		werr = fmt.Errorf("write %s: %w", path, cerr)
	}
	return werr
}

// readReport loads a report written by --output json.
func readReport(path string) (*bench.Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s is not a report written by --output json: %w", path, err)
	}
	if len(rep.Results) == 0 {
		return nil, fmt.Errorf("%s holds no results", path)
	}
	return &rep, nil
}
