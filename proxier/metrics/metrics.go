// Package metrics defines Switchyard's Prometheus metrics. Every metric kube-proxy also exports keeps
// kube-proxy's exact name, type, labels and buckets, so existing dashboards and alerts keep working
// after the swap. Metrics of Switchyard's own are under the "switchyard_" prefix.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const subsystem = "kubeproxy"

var (
	// SyncProxyRulesLatency is the time of one sync of any kind.
	SyncProxyRulesLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Subsystem: subsystem, Name: "sync_proxy_rules_duration_seconds",
		Help:    "SyncProxyRules latency in seconds",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
	})
	// SyncFullProxyRulesLatency is the time of a sync that rewrote every service.
	SyncFullProxyRulesLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Subsystem: subsystem, Name: "sync_full_proxy_rules_duration_seconds",
		Help:    "SyncProxyRules latency in seconds for full resyncs",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
	})
	// SyncPartialProxyRulesLatency is the time of a sync that rewrote only changed services.
	SyncPartialProxyRulesLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Subsystem: subsystem, Name: "sync_partial_proxy_rules_duration_seconds",
		Help:    "SyncProxyRules latency in seconds for partial resyncs",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
	})
	// SyncProxyRulesLastTimestamp is when rules were last synced successfully.
	SyncProxyRulesLastTimestamp = prometheus.NewGauge(prometheus.GaugeOpts{
		Subsystem: subsystem, Name: "sync_proxy_rules_last_timestamp_seconds",
		Help: "The last time proxy rules were successfully synced",
	})
	// SyncProxyRulesLastQueuedTimestamp is when a sync was last asked for.
	SyncProxyRulesLastQueuedTimestamp = prometheus.NewGauge(prometheus.GaugeOpts{
		Subsystem: subsystem, Name: "sync_proxy_rules_last_queued_timestamp_seconds",
		Help: "The last time a sync of proxy rules was queued",
	})
	// NetworkProgrammingLatency runs from the EndpointSlice controller's last-change-trigger-time to
	// the end of the sync that programmed the change.
	NetworkProgrammingLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Subsystem: subsystem, Name: "network_programming_duration_seconds",
		Help: "In Cluster Network Programming Latency in seconds",
		Buckets: merge(
			prometheus.LinearBuckets(0.25, 0.25, 2),
			prometheus.LinearBuckets(1, 1, 59),
			prometheus.LinearBuckets(60, 5, 12),
			prometheus.LinearBuckets(120, 30, 7),
		),
	})
	EndpointChangesPending = prometheus.NewGauge(prometheus.GaugeOpts{
		Subsystem: subsystem, Name: "sync_proxy_rules_endpoint_changes_pending",
		Help: "Pending proxy rules Endpoint changes",
	})
	EndpointChangesTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Subsystem: subsystem, Name: "sync_proxy_rules_endpoint_changes_total",
		Help: "Cumulative proxy rules Endpoint changes",
	})
	ServiceChangesPending = prometheus.NewGauge(prometheus.GaugeOpts{
		Subsystem: subsystem, Name: "sync_proxy_rules_service_changes_pending",
		Help: "Pending proxy rules Service changes",
	})
	ServiceChangesTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Subsystem: subsystem, Name: "sync_proxy_rules_service_changes_total",
		Help: "Cumulative proxy rules Service changes",
	})
	// IptablesRulesTotal is the number of rules Switchyard owns, per table, after the last sync.
	IptablesRulesTotal = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Subsystem: subsystem, Name: "sync_proxy_rules_iptables_total",
		Help: "Total number of iptables rules owned by kube-proxy",
	}, []string{"table"})
	// IptablesRulesLast is the number of rules written by the last sync, per table.
	IptablesRulesLast = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Subsystem: subsystem, Name: "sync_proxy_rules_iptables_last",
		Help: "Number of iptables rules written by kube-proxy in last sync",
	}, []string{"table"})
	IptablesRestoreFailuresTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Subsystem: subsystem, Name: "sync_proxy_rules_iptables_restore_failures_total",
		Help: "Cumulative proxy iptables restore failures",
	})
	IptablesPartialRestoreFailuresTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Subsystem: subsystem, Name: "sync_proxy_rules_iptables_partial_restore_failures_total",
		Help: "Cumulative proxy iptables partial restore failures",
	})
	// SyncProxyRulesNoLocalEndpointsTotal counts services with a Local policy and no local endpoint,
	// by traffic_policy "internal" or "external".
	SyncProxyRulesNoLocalEndpointsTotal = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Subsystem: subsystem, Name: "sync_proxy_rules_no_local_endpoints_total",
		Help: "Number of services with a Local traffic policy and no endpoints",
	}, []string{"traffic_policy"})
	ProxyHealthzTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Subsystem: subsystem, Name: "proxy_healthz_total",
		Help: "Cumulative proxy healthz HTTP status",
	}, []string{"code"})
	ProxyLivezTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Subsystem: subsystem, Name: "proxy_livez_total",
		Help: "Cumulative proxy livez HTTP status",
	}, []string{"code"})

	// InvalidObjectsTotal counts service ports and endpoints the watcher refused to model, by kind
	// ("service" or "endpointslice") and reason. Switchyard's own: kube-proxy has no such metric.
	InvalidObjectsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchyard_invalid_objects_total",
		Help: "API objects (or parts of them) rejected while building the service model, by kind and reason",
	}, []string{"kind", "reason"})
)

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
