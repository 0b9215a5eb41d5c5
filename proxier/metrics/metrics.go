// Package metrics defines Switchyard's Prometheus metrics. Every metric kube-proxy also exports keeps
// kube-proxy v1.37's exact name, type, help text, labels and buckets, and is exported in the same
// proxy modes, so existing dashboards and alerts keep working after the swap
// (testdata/kube-proxy-metrics.txt pins them). Metrics of Switchyard's own are under the
// "switchyard_" prefix.
//
// The metrics of one backend instance carry its IP family in the ip_family label ("IPv4" or "IPv6",
// model.IPFamily's String, which are the values of kube-proxy's v1.IPFamily); the change trackers'
// and the health servers' metrics are the node's and have no family.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// subsystem puts kube-proxy's metrics under kube-proxy's names (kubeproxy_...).
const subsystem = "kubeproxy"

// ipFamily is the label of the per-family metrics.
const ipFamily = "ip_family"

// syncLatencyBuckets are kube-proxy's buckets for every sync duration: 1 ms to about 16 s.
var syncLatencyBuckets = prometheus.ExponentialBuckets(0.001, 2, 15)

var (
	// SyncProxyRulesLatency is the time of one sync of any kind.
	SyncProxyRulesLatency = histogramVec("sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds", syncLatencyBuckets, ipFamily)
	// SyncFullProxyRulesLatency is the time of a sync that rewrote every service.
	SyncFullProxyRulesLatency = histogramVec("sync_full_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for full resyncs", syncLatencyBuckets, ipFamily)
	// SyncPartialProxyRulesLatency is the time of a sync that rewrote only changed services.
	SyncPartialProxyRulesLatency = histogramVec("sync_partial_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for partial resyncs", syncLatencyBuckets, ipFamily)
	// SyncProxyRulesLastTimestamp is when rules were last synced successfully.
	SyncProxyRulesLastTimestamp = gaugeVec("sync_proxy_rules_last_timestamp_seconds", "The last time proxy rules were successfully synced", ipFamily)
	// SyncProxyRulesLastQueuedTimestamp is when a sync was last asked for.
	SyncProxyRulesLastQueuedTimestamp = gaugeVec("sync_proxy_rules_last_queued_timestamp_seconds", "The last time a sync of proxy rules was queued", ipFamily)
	// NetworkProgrammingLatency runs from the EndpointSlice controller's last-change-trigger-time to
	// the end of the sync that programmed the change.
	NetworkProgrammingLatency = histogramVec("network_programming_duration_seconds", "In Cluster Network Programming Latency in seconds", merge(
		prometheus.LinearBuckets(0.25, 0.25, 2),
		prometheus.LinearBuckets(1, 1, 59),
		prometheus.LinearBuckets(60, 5, 12),
		prometheus.LinearBuckets(120, 30, 7),
	), ipFamily)
	EndpointChangesPending = gauge("sync_proxy_rules_endpoint_changes_pending", "Pending proxy rules Endpoint changes")
	EndpointChangesTotal   = counter("sync_proxy_rules_endpoint_changes_total", "Cumulative proxy rules Endpoint changes")
	ServiceChangesPending  = gauge("sync_proxy_rules_service_changes_pending", "Pending proxy rules Service changes")
	ServiceChangesTotal    = counter("sync_proxy_rules_service_changes_total", "Cumulative proxy rules Service changes")
	// IptablesRulesTotal is the number of rules Switchyard owns, per table, after the last sync.
	IptablesRulesTotal = gaugeVec("sync_proxy_rules_iptables_total", "Total number of iptables rules owned by kube-proxy", "table", ipFamily)
	// IptablesRulesLast is the number of rules written by the last sync, per table.
	IptablesRulesLast                   = gaugeVec("sync_proxy_rules_iptables_last", "Number of iptables rules written by kube-proxy in last sync", "table", ipFamily)
	IptablesRestoreFailuresTotal        = counterVec("sync_proxy_rules_iptables_restore_failures_total", "Cumulative proxy iptables restore failures", ipFamily)
	IptablesPartialRestoreFailuresTotal = counterVec("sync_proxy_rules_iptables_partial_restore_failures_total", "Cumulative proxy iptables partial restore failures", ipFamily)
	// SyncProxyRulesNoLocalEndpointsTotal counts services with a Local policy and no local endpoint,
	// by traffic_policy "internal" or "external".
	SyncProxyRulesNoLocalEndpointsTotal = gaugeVec("sync_proxy_rules_no_local_endpoints_total", "Number of services with a Local traffic policy and no endpoints", "traffic_policy", ipFamily)
	ProxyHealthzTotal                   = counterVec("proxy_healthz_total", "Cumulative proxy healthz HTTP status", "code")
	ProxyLivezTotal                     = counterVec("proxy_livez_total", "Cumulative proxy livez HTTP status", "code")

	// InvalidObjectsTotal counts service ports and endpoints the watcher refused to model, by kind
	// ("service" or "endpointslice") and reason. Switchyard's own: kube-proxy has no such metric.
	InvalidObjectsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchyard_invalid_objects_total",
		Help: "API objects (or parts of them) rejected while building the service model, by kind and reason",
	}, []string{"kind", "reason"})
)

// The constructors of kube-proxy's metrics: each takes the name without the kubeproxy_ prefix and
// kube-proxy's help text. kube-proxy's metrics are all of ALPHA stability, which its metrics library
// prints at the start of every help text; so do these.

func alpha(help string) string { return "[ALPHA] " + help }

func histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Subsystem: subsystem, Name: name, Help: alpha(help), Buckets: buckets}, labels)
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Subsystem: subsystem, Name: name, Help: alpha(help)})
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Subsystem: subsystem, Name: name, Help: alpha(help)})
}

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Subsystem: subsystem, Name: name, Help: alpha(help)}, labels)
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: subsystem, Name: name, Help: alpha(help)}, labels)
}

// collectors lists the metrics exported in a proxy mode ("iptables" or "ipvs"): those of every mode,
// then the mode's own. The choice is kube-proxy's, so that a mode's dashboards find the same series;
// in IPVS mode that leaves out the rule counts and the full and partial sync times.
func collectors(mode string) []prometheus.Collector {
	all := []prometheus.Collector{
		SyncProxyRulesLatency, SyncProxyRulesLastQueuedTimestamp, SyncProxyRulesLastTimestamp,
		EndpointChangesPending, EndpointChangesTotal, ServiceChangesPending, ServiceChangesTotal,
		ProxyHealthzTotal, ProxyLivezTotal, NetworkProgrammingLatency, SyncProxyRulesNoLocalEndpointsTotal,
		InvalidObjectsTotal,
		// The conntrack reconciler runs in both modes (conntrack.go).
		ConntrackReconcileLatency, ConntrackReconcileDeletedTotal,
	}
	switch mode {
	case "iptables":
		all = append(all,
			SyncFullProxyRulesLatency, SyncPartialProxyRulesLatency,
			IptablesRestoreFailuresTotal, IptablesPartialRestoreFailuresTotal,
			IptablesRulesTotal, IptablesRulesLast,
		)
	case "ipvs":
		all = append(all, IptablesRestoreFailuresTotal)
	}
	return all
}

var registerOnce sync.Once

// Register adds the metrics of proxy mode ("iptables" or "ipvs") to reg once; later calls do nothing.
func Register(reg prometheus.Registerer, mode string) {
	registerOnce.Do(func() { register(reg, mode) })
}

// register is Register's work, which the tests repeat.
func register(reg prometheus.Registerer, mode string) {
	reg.MustRegister(collectors(mode)...)
}

// SinceInSeconds is the time since start, in the unit every duration metric here uses.
func SinceInSeconds(start time.Time) float64 { return time.Since(start).Seconds() }

func merge(slices ...[]float64) []float64 {
	out := []float64{0}
	for _, s := range slices {
		out = append(out, s...)
	}
	return out
}
