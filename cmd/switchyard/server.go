package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/switchyard/switchyard/proxier/healthcheck"
	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"
)

const protobufContentType = "application/vnd.kubernetes.protobuf"

// newClient builds an API client the way kube-proxy does: --master and --kubeconfig, else the
// in-cluster configuration; --kube-api-qps, --kube-api-burst and --kube-api-content-type, whose
// default is protobuf on the wire, since the proxy's watches carry every Service and EndpointSlice
// in the cluster.
func newClient(o *Options) (kubernetes.Interface, error) {
	cfg, err := restConfig(o)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

func restConfig(o *Options) (*rest.Config, error) {
	if o.Kubeconfig == "" && o.Master == "" {
		klog.InfoS("Neither --kubeconfig nor --master was given; using the in-cluster configuration")
	}
	cfg, err := clientcmd.BuildConfigFromFlags(o.Master, o.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("API client configuration: %w", err)
	}
	cfg.ContentType, cfg.AcceptContentTypes = o.KubeAPIContentType, o.KubeAPIContentType
	if o.KubeAPIContentType == protobufContentType {
		cfg.AcceptContentTypes = protobufContentType + ",application/json"
	}
	cfg.QPS, cfg.Burst = o.KubeAPIQPS, int(o.KubeAPIBurst)
	cfg.UserAgent = "switchyard"
	return cfg, nil
}

// serveMetrics serves /metrics, kube-proxy's /proxyMode, a plain /healthz and, when debug is set,
// /debug/model and /debug/rules (addDebugHandlers) on addr until ctx ends.
func serveMetrics(ctx context.Context, addr, mode string, profiling bool, debug debugSource, backend model.Backend) {
	if addr == "" {
		return
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics.Register(reg, mode)
	if mode == "iptables" {
		// As kube-proxy: the nfacct metrics exist in iptables mode, read at each scrape.
		if acct := openNFAcct("metrics"); acct != nil {
			metrics.RegisterNFAcct(reg, acct)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/proxyMode", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, mode)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })
	if debug != nil {
		// Like pprof, on the metrics address, which is loopback by default: the model names every
		// service and endpoint of the cluster.
		addDebugHandlers(mux, debug, backend)
	}
	if profiling {
		// As kube-proxy's --profiling: the metrics address is loopback by default.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	// A busy port must not stop the proxy: rules matter more than metrics. Keep retrying, as the
	// health servers do.
	klog.InfoS("Serving metrics", "address", addr)
	srv, _ := healthcheck.StartServer(clock.RealClock{}, healthcheck.NetListener{}, addr, mux, "server", "metrics")
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
}

// serveHealthz serves /healthz and /livez on addr (none when empty) and returns the function that
// stops it. A busy port is retried every 5s, as kube-proxy does: during a migration kube-proxy may
// still hold it.
func serveHealthz(addr string, health *healthcheck.ProxyHealth) (stop func()) {
	if addr == "" {
		return func() {}
	}
	klog.InfoS("Serving health checks", "address", addr)
	srv, _ := healthcheck.StartServer(clock.RealClock{}, healthcheck.NetListener{}, addr, health.Handler(), "server", "healthz")
	return srv.Close
}

// newServiceHealth serves the healthCheckNodePorts on the node addresses inside --nodeport-addresses
// (all addresses when it is unset), as kube-proxy does.
func newServiceHealth(o *Options, health *healthcheck.ProxyHealth) *healthcheck.ServiceHealth {
	prefixes, _, _ := o.NodePortPrefixes() // Validate has rejected bad ones
	var hosts []string                     // nil: all addresses
	if len(prefixes) > 0 {
		if addrs, err := interfaceAddrs(); err != nil {
			klog.ErrorS(err, "Cannot list the node's addresses; health check node ports listen on all of them")
		} else {
			hosts = healthcheck.ListenHosts(prefixes, addrs)
			klog.InfoS("Health check node ports listen on the node addresses in --nodeport-addresses", "addresses", hosts)
		}
	}
	return healthcheck.NewServiceHealth(clock.RealClock{}, healthcheck.NetListener{}, health, hosts)
}

// interfaceAddrs lists every address of this node's interfaces, loopback included, as kube-proxy
// matches --nodeport-addresses against them.
func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}
