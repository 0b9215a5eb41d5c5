// Command switchyard is a Kubernetes service proxy that replaces the kube-proxy DaemonSet: it watches
// Services, EndpointSlices and Nodes and programs them into iptables chains or IPVS tables, and can
// also run a flannel-style VXLAN pod network. It takes kube-proxy's flags.
package main

import (
	"context"
	"errors"
	goflag "flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/switchyard/switchyard/internal/syncloop"
	"github.com/switchyard/switchyard/podnet"
	"github.com/switchyard/switchyard/proxier/healthcheck"
	"github.com/switchyard/switchyard/proxier/model"
	"github.com/switchyard/switchyard/watcher"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		klog.Flush()
		// Plain text, not a structured log line: these are mostly configuration errors for a person.
		fmt.Fprintln(os.Stderr, "switchyard:", err)
		os.Exit(1)
	}
	klog.Flush()
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "bench" {
		return runBench(args[1:], os.Stdout, os.Stderr)
	}
	if len(args) > 0 && args[0] == "explain" {
		return runExplain(args[1:], os.Stdout, os.Stderr)
	}
	opts, pcfg, err := parseFlags(args)
	if errors.Is(err, pflag.ErrHelp) {
		return nil // pflag printed the usage
	}
	if err != nil {
		return err
	}
	if opts.Version == "true" || opts.Version == "raw" {
		printVersion(os.Stdout, opts.Version == "raw")
		return nil
	}
	if opts.Logging.FlushFrequency > 0 {
		klog.StartFlushDaemon(opts.Logging.FlushFrequency)
	}
	if opts.WriteConfigTo != "" {
		return writeConfig(opts, opts.WriteConfigTo)
	}
	if opts.Cleanup {
		if err := cleanupAll(opts); err != nil {
			return fmt.Errorf("cleanup: %w", err)
		}
		klog.InfoS("Cleanup done")
		return nil
	}
	if ignored := opts.IgnoredSettings(); len(ignored) > 0 {
		klog.InfoS("WARNING: Switchyard accepts these kube-proxy settings but does not act on them", "settings", ignored)
	}
	if opts.InitOnly {
		return initOnly(opts, pcfg)
	}
	// A failure only leaves the kernel's choice of victim as it was: not worth stopping the proxy,
	// nor an error line. Lowering the score needs CAP_SYS_RESOURCE, which the unprivileged DaemonSet
	// does not have (the kubelet already gives its system-node-critical pod a low score), and
	// kubeadm's ConfigMap asks for -999: kube-proxy v1.37 logs this failure at V(2) too.
	if err := applyOOMScoreAdj("/proc/self/oom_score_adj", opts.OOMScoreAdj); err != nil {
		klog.V(2).InfoS("Could not set the OOM score adjustment; the kubelet's stays", "err", err)
	}
	nodeName, err := opts.NodeName()
	if err != nil {
		return err
	}
	klog.InfoS("Starting switchyard", "node", nodeName, "proxyMode", opts.ProxyMode, "podNetwork", pcfg.Mode)

	// SIGTERM and SIGINT stop the process and nothing else: the rules in the kernel stay exactly as
	// they are, so traffic flows on until the next switchyard (or kube-proxy) takes over.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	client, err := newClient(opts)
	if err != nil {
		return err
	}
	resolveNodePortPrimary(ctx, opts, client, nodeName, nodeIPsPoll, nodeIPsTimeout)
	resolveIPVSNodeCIDR(ctx, opts, client, nodeName, nodeIPsPoll, podCIDRsTimeout)
	backend, variant, err := newBackend(opts)
	if err != nil {
		return err
	}
	pcfg.IptablesVariant = variant

	syncPeriod, minSyncPeriod := opts.SyncPeriod, opts.MinSyncPeriod
	if opts.ProxyMode == "ipvs" {
		syncPeriod, minSyncPeriod = opts.IPVS.SyncPeriod, opts.IPVS.MinSyncPeriod
	}
	health := healthcheck.NewProxyHealth(clock.RealClock{}, 2*syncPeriod, model.IPv4)
	serviceHealth := newServiceHealth(opts, health)
	defer serviceHealth.Close()
	defer serveHealthz(opts.HealthzBindAddress, health)()

	// The pod network needs every Node (its peers); the proxy alone reads only its own.
	nodeFactory := watcher.NewNodeInformerFactory(client, opts.ConfigSyncPeriod, nodeName, pcfg.Enabled())
	w, err := watcher.New(client, nodeFactory, watcher.Options{NodeName: nodeName, ResyncPeriod: opts.ConfigSyncPeriod,
		IgnoreExternalIPs: opts.gateOff(gateExternalIPs)})
	if err != nil {
		return err
	}
	watchNodeEligibility(nodeFactory, nodeName, health)

	var pod *podnet.Controller
	if pcfg.Enabled() {
		if pod, err = podnet.NewController(client, nodeFactory, nodeName, *pcfg); err != nil {
			return err
		}
		if err := installCNI(pcfg); err != nil {
			return err
		}
	}

	loop, err := syncloop.New(syncloop.Config{Name: opts.ProxyMode, MinSyncPeriod: minSyncPeriod, SyncPeriod: syncPeriod,
		Source: w, Backends: []model.Backend{backend}, Health: health, ServiceHealth: serviceHealth})
	if err != nil {
		return err
	}
	serveMetrics(ctx, opts.MetricsBindAddress, opts.ProxyMode, opts.EnableProfiling, loop, backend)

	w.Start(ctx)
	nodeFactory.Start(ctx.Done())
	if pod != nil {
		go watchPodNetworkHealth(ctx, pod, health)
		go func() {
			if err := pod.Run(ctx); err != nil && ctx.Err() == nil {
				klog.ErrorS(err, "Pod network controller stopped")
			}
		}()
	}
	loop.Run(ctx)
	return nil
}

// initOnly is --init-only: as kube-proxy's, it does the start-up work that needs full root
// privileges and exits, so that the proxy itself can then run with CAP_NET_ADMIN only. Here that is
// building the backend, which removes the other proxy mode's leftovers and, in IPVS mode, checks the
// kernel modules and sets IPVS's sysctls and timeouts; and installing the CNI plugin and conflist
// when the pod network is on. It needs no API server.
func initOnly(opts *Options, pcfg *podnet.Config) error {
	if _, _, err := newBackend(opts); err != nil {
		return err
	}
	if pcfg.Enabled() {
		if err := installCNI(pcfg); err != nil {
			return err
		}
	}
	klog.InfoS("Initialization done", "proxyMode", opts.ProxyMode)
	return nil
}

// parseFlags reads the command line over kube-proxy's defaults. With --config, the file is applied
// over the defaults first and the command line is then parsed again on top, so that flags given
// explicitly win over the file (kube-proxy instead ignores most flags when given --config; a
// command line that works there works here). --version and --help stop before the file is read.
func parseFlags(args []string) (*Options, *podnet.Config, error) {
	opts, pcfg, err := parseOnto(args, DefaultOptions(), os.Stderr)
	if err != nil {
		return nil, nil, err
	}
	if opts.Version == "true" || opts.Version == "raw" {
		return opts, pcfg, nil
	}
	if opts.ConfigFile != "" {
		fromFile := DefaultOptions()
		if fromFile.fileFieldsIgnored, err = loadConfigFile(opts.ConfigFile, fromFile); err != nil {
			return nil, nil, err
		}
		// The same command line again: its deprecation notices have been printed already.
		if opts, pcfg, err = parseOnto(args, fromFile, io.Discard); err != nil {
			return nil, nil, err
		}
	}
	opts.foldDeprecatedPorts()
	if err := opts.Validate(); err != nil {
		return nil, nil, err
	}
	// The pod network reads kube-proxy's --cluster-cidr rather than a flag of its own.
	pcfg.ClusterCIDR = opts.ClusterCIDR
	if err := pcfg.Validate(); err != nil {
		return nil, nil, err
	}
	return opts, pcfg, nil
}

func parseOnto(args []string, opts *Options, notices io.Writer) (*Options, *podnet.Config, error) {
	pcfg := podnet.DefaultConfig()
	fs := pflag.NewFlagSet("switchyard", pflag.ContinueOnError)
	fs.SetOutput(notices)
	fs.SetNormalizeFunc(wordSepNormalize)
	opts.AddFlags(fs)
	pcfg.AddFlags(fs)
	klogFlags := goflag.NewFlagSet("klog", goflag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	// The usage goes to stdout on --help only; after a mistake, one line saying what was wrong
	// reads better than the mistake followed by a hundred lines of flags.
	fs.Usage = func() {}
	if err := fs.Parse(args); errors.Is(err, pflag.ErrHelp) {
		fmt.Fprintf(os.Stdout, "Usage of switchyard:\n%s", fs.FlagUsages())
		return nil, nil, err
	} else if err != nil {
		return nil, nil, fmt.Errorf("%w (Switchyard takes kube-proxy's flags and its own; --help lists them)", err)
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return opts, &pcfg, nil
}

// installCNI puts the switchyard-cni plugin (shipped next to this binary) and the conflist into
// --cni-bin-dir and --cni-conf-dir, as flannel's DaemonSet does. Empty directories skip each part.
func installCNI(pcfg *podnet.Config) error {
	if pcfg.CNIBinDir == "" && pcfg.CNIConfDir == "" {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locate the switchyard-cni plugin: %w", err)
	}
	plugin := filepath.Join(filepath.Dir(exe), "switchyard-cni")
	if err := podnet.InstallCNI(*pcfg, plugin); err != nil {
		return fmt.Errorf("install the CNI plugin (set --cni-bin-dir= and --cni-conf-dir= to leave it to someone else): %w", err)
	}
	return nil
}

// watchNodeEligibility fails /healthz (but not /livez) until this node's Node is seen, while it is
// being deleted or carries the cluster autoscaler's ToBeDeleted taint, and once it is gone, as
// kube-proxy v1.37 does (which exits when its Node is deleted and then has none), so load balancers
// drain the node first.
func watchNodeEligibility(f informers.SharedInformerFactory, nodeName string, health *healthcheck.ProxyHealth) {
	update := func(obj any) { health.SetNodeEligible(healthcheck.NodeEligible(obj.(*v1.Node))) }
	_, _ = f.Core().V1().Nodes().Informer().AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: func(obj any) bool {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				return tomb.Key == nodeName
			}
			node, ok := obj.(*v1.Node)
			return ok && node.Name == nodeName
		},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    update,
			UpdateFunc: func(_, cur any) { update(cur) },
			DeleteFunc: func(any) { health.SetNodeEligible(false) },
		},
	})
}

// watchPodNetworkHealth mirrors the pod network controller's state (e.g. "waiting for this node's
// podCIDR") into /healthz.
func watchPodNetworkHealth(ctx context.Context, pod *podnet.Controller, health *healthcheck.ProxyHealth) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		ok, msg := pod.Healthy()
		if ok {
			msg = ""
		}
		health.SetCondition("pod-network", msg)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
