// Command bench-vs-kube-proxy measures upstream kube-proxy (iptables and nftables modes) and
// Switchyard (iptables mode) one after the other in the same node namespace of the local cluster,
// against the same workload of selector-less Services and EndpointSlices created through the API.
// hack/bench-vs-kube-proxy.sh brings the cluster up, runs this, and tears the cluster down.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// Config is the command line.
type Config struct {
	Kubeconfig     string // admin, for the workload
	NodeKubeconfig string // the node's identity, for the proxies
	Node           string
	ClusterCIDR    string
	KubeProxy      string
	Switchyard     string
	Sizes          []int
	Endpoints      int
	Proxies        []string
	Changes        int
	Timeout        time.Duration
	IdleGap        time.Duration
	CleanupTimeout time.Duration
	Out            string
	Facts          string // machine facts as key=value lines, gathered by the script
}

func main() {
	if err := run(); err != nil {
		klog.Flush()
		fmt.Fprintln(os.Stderr, "bench-vs-kube-proxy:", err)
		os.Exit(1)
	}
	klog.Flush()
}

func run() error {
	var cfg Config
	var sizes, proxies string
	fs := flag.NewFlagSet("bench-vs-kube-proxy", flag.ContinueOnError)
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "admin kubeconfig (creates the workload)")
	fs.StringVar(&cfg.NodeKubeconfig, "node-kubeconfig", "", "the node's kubeconfig (the proxies use it)")
	fs.StringVar(&cfg.Node, "node", "sy-node-1", "node name, also its network namespace")
	fs.StringVar(&cfg.ClusterCIDR, "cluster-cidr", "10.244.0.0/16", "the pod CIDR both proxies get")
	fs.StringVar(&cfg.KubeProxy, "kube-proxy", "", "upstream kube-proxy binary")
	fs.StringVar(&cfg.Switchyard, "switchyard", "", "switchyard binary")
	fs.StringVar(&sizes, "sizes", "1000,5000,10000", "service counts, ascending; the workload grows between them")
	fs.IntVar(&cfg.Endpoints, "endpoints", 5, "ready endpoints per service")
	fs.StringVar(&proxies, "proxies", "kube-proxy-iptables,kube-proxy-nftables,switchyard-iptables", "proxies to measure, in order")
	fs.IntVar(&cfg.Changes, "changes", 5, "one-endpoint changes measured per proxy and size")
	fs.DurationVar(&cfg.Timeout, "timeout", 1800*time.Second, "per proxy: longest wait for its first sync, and for one change to be programmed")
	fs.DurationVar(&cfg.CleanupTimeout, "cleanup-timeout", 600*time.Second, "longest wait for a proxy's own --cleanup; after it the bench deletes the tables itself and says so")
	fs.DurationVar(&cfg.IdleGap, "idle-gap", 2*time.Second, "a change is made only this long after the proxy's last sync (its min-sync-period is 1 s)")
	fs.StringVar(&cfg.Out, "out", "", "directory for results.json, results.csv, results.md and proxy logs")
	fs.StringVar(&cfg.Facts, "facts", "", "file of machine facts (key: value lines) to put in the report")
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 || (len(cfg.Sizes) > 0 && n <= cfg.Sizes[len(cfg.Sizes)-1]) {
			return fmt.Errorf("--sizes=%q: want positive, ascending service counts", sizes)
		}
		cfg.Sizes = append(cfg.Sizes, n)
	}
	specs := proxySpecs(cfg)
	for _, p := range strings.Split(proxies, ",") {
		p = strings.TrimSpace(p)
		if _, ok := specs[p]; !ok {
			return fmt.Errorf("--proxies: unknown proxy %q (want kube-proxy-iptables, kube-proxy-nftables or switchyard-iptables)", p)
		}
		cfg.Proxies = append(cfg.Proxies, p)
	}
	if cfg.Kubeconfig == "" || cfg.NodeKubeconfig == "" || cfg.Out == "" || cfg.Endpoints <= 0 || cfg.Changes <= 0 {
		return fmt.Errorf("--kubeconfig, --node-kubeconfig and --out are required; --endpoints and --changes must be positive")
	}
	for _, p := range cfg.Proxies {
		if b := specs[p].Binary; b == "" {
			return fmt.Errorf("%s needs its binary (--kube-proxy / --switchyard)", p)
		}
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return fmt.Errorf("create --out: %w", err)
	}

	rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("load %s: %w", cfg.Kubeconfig, err)
	}
	rc.QPS, rc.Burst = 5000, 5000
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	wl := &Workload{Client: client, Namespace: "bench-vs-kube-proxy", Endpoints: cfg.Endpoints, Workers: 48}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	report := Report{Facts: readFacts(cfg.Facts), Command: strings.Join(os.Args, " ")}
	report.LoadAvgStart = loadAvg()
	defer func() {
		report.LoadAvgEnd = loadAvg()
		if err := report.Write(cfg.Out); err != nil {
			klog.ErrorS(err, "Writing the results")
		}
	}()
	for _, size := range cfg.Sizes {
		start := time.Now()
		klog.InfoS("Growing the workload", "services", size, "endpointsPerService", cfg.Endpoints)
		if err := wl.Grow(ctx, size); err != nil {
			return fmt.Errorf("workload at %d services: %w", size, err)
		}
		took := time.Since(start)
		klog.InfoS("Workload ready", "services", size, "took", took)
		report.Workload = append(report.Workload, WorkloadStep{Services: size, Seconds: took.Seconds()})
		for _, p := range cfg.Proxies {
			res, err := runProxy(ctx, cfg, wl, specs[p], size)
			report.Results = append(report.Results, res)
			klog.InfoS("Proxy done", "proxy", p, "services", size, "status", res.Status)
			if err != nil {
				return err
			}
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted")
			}
		}
		fmt.Println(report.SizeTable(size))
	}
	// A timeout is a result (kube-proxy may legitimately take that long); anything else that is
	// not ok means a figure is missing for a reason the reader must look at.
	var failed []string
	for _, res := range report.Results {
		if res.Status != "ok" && !strings.HasPrefix(res.Status, "timeout") {
			failed = append(failed, fmt.Sprintf("%s at %d", res.Proxy, res.Size))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("runs without figures: %s (see %s/results.md)", strings.Join(failed, ", "), cfg.Out)
	}
	return nil
}

func readFacts(path string) [][2]string {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return [][2]string{{"facts", err.Error()}}
	}
	var facts [][2]string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			facts = append(facts, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
		}
	}
	return facts
}

// jsonFile writes v as indented JSON.
func jsonFile(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Clean(path), append(data, '\n'), 0o644)
}
