// Package metrics defines Switchyard's Prometheus metrics. Every metric kube-proxy also exports keeps
// kube-proxy's exact name, type, labels and buckets, so existing dashboards and alerts keep working
// after the swap. Metrics of Switchyard's own are under the "switchyard_" prefix.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// subsystem puts kube-proxy's metrics under kube-proxy's names (kubeproxy_...).
const subsystem = "kubeproxy"

// syncLatencyBuckets are kube-proxy's buckets for every sync duration: 1 ms to about 16 s.
var syncLatencyBuckets = prometheus.ExponentialBuckets(0.001, 2, 15)

var (
	// SyncProxyRulesLatency is the time of one sync of any kind.
	SyncProxyRulesLatency = histogram("sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds", syncLatencyBuckets)
	// SyncFullProxyRulesLatency is the time of a sync that rewrote every service.
	SyncFullProxyRulesLatency = histogram("sync_full_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for full resyncs", syncLatencyBuckets)
	// SyncPartialProxyRulesLatency is the time of a sync that rewrote only changed services.
	SyncPartialProxyRulesLatency = histogram("sync_partial_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for partial resyncs", syncLatencyBuckets)
	// SyncProxyRulesLastTimestamp is when rules were last synced successfully.
	SyncProxyRulesLastTimestamp = gauge("sync_proxy_rules_last_timestamp_seconds", "The last time proxy rules were successfully synced")
	// SyncProxyRulesLastQueuedTimestamp is when a sync was last asked for.
	SyncProxyRulesLastQueuedTimestamp = gauge("sync_proxy_rules_last_queued_timestamp_seconds", "The last time a sync of proxy rules was queued")
	// NetworkProgrammingLatency runs from the EndpointSlice controller's last-change-trigger-time to
	// the end of the sync that programmed the change.
	NetworkProgrammingLatency = histogram("network_programming_duration_seconds", "In Cluster Network Programming Latency in seconds", merge(
		prometheus.LinearBuckets(0.25, 0.25, 2),
		prometheus.LinearBuckets(1, 1, 59),
		prometheus.LinearBuckets(60, 5, 12),
		prometheus.LinearBuckets(120, 30, 7),
	))
	EndpointChangesPending = gauge("sync_proxy_rules_endpoint_changes_pending", "Pending proxy rules Endpoint changes")
	EndpointChangesTotal   = counter("sync_proxy_rules_endpoint_changes_total", "Cumulative proxy rules Endpoint changes")
	ServiceChangesPending  = gauge("sync_proxy_rules_service_changes_pending", "Pending proxy rules Service changes")
	ServiceChangesTotal    = counter("sync_proxy_rules_service_changes_total", "Cumulative proxy rules Service changes")
	// IptablesRulesTotal is the number of rules Switchyard owns, per table, after the last sync.
	IptablesRulesTotal = gaugeVec("sync_proxy_rules_iptables_total", "Total number of iptables rules owned by kube-proxy", "table")
	// IptablesRulesLast is the number of rules written by the last sync, per table.
	IptablesRulesLast                   = gaugeVec("sync_proxy_rules_iptables_last", "Number of iptables rules written by kube-proxy in last sync", "table")
	IptablesRestoreFailuresTotal        = counter("sync_proxy_rules_iptables_restore_failures_total", "Cumulative proxy iptables restore failures")
	IptablesPartialRestoreFailuresTotal = counter("sync_proxy_rules_iptables_partial_restore_failures_total", "Cumulative proxy iptables partial restore failures")
	// SyncProxyRulesNoLocalEndpointsTotal counts services with a Local policy and no local endpoint,
	// by traffic_policy "internal" or "external".
	SyncProxyRulesNoLocalEndpointsTotal = gaugeVec("sync_proxy_rules_no_local_endpoints_total", "Number of services with a Local traffic policy and no endpoints", "traffic_policy")
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
// kube-proxy's help text.

func histogram(name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Subsystem: subsystem, Name: name, Help: help, Buckets: buckets})
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Subsystem: subsystem, Name: name, Help: help})
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Subsystem: subsystem, Name: name, Help: help})
}

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Subsystem: subsystem, Name: name, Help: help}, labels)
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: subsystem, Name: name, Help: help}, labels)
}

var registerOnce sync.Once

// Register adds every metric to reg once; later calls do nothing.
func Register(reg prometheus.Registerer) {
	registerOnce.Do(func() {
		reg.MustRegister(
			SyncProxyRulesLatency, SyncFullProxyRulesLatency, SyncPartialProxyRulesLatency,
			SyncProxyRulesLastTimestamp, SyncProxyRulesLastQueuedTimestamp, NetworkProgrammingLatency,
			EndpointChangesPending, EndpointChangesTotal, ServiceChangesPending, ServiceChangesTotal,
			IptablesRulesTotal, IptablesRulesLast, IptablesRestoreFailuresTotal,
			IptablesPartialRestoreFailuresTotal, SyncProxyRulesNoLocalEndpointsTotal,
			ProxyHealthzTotal, ProxyLivezTotal, InvalidObjectsTotal,
		)
		registerConntrack(reg)
	})
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
