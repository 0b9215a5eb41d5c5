package metrics

import "github.com/prometheus/client_golang/prometheus"

// The conntrack reconciler's metrics (proxier/conntrack.Reconciler), by ip_family ("IPv4" or
// "IPv6"), under kube-proxy's names, help and buckets.
var (
	// ConntrackReconcileLatency is the time of one pass of the reconciler over the table.
	ConntrackReconcileLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Subsystem: subsystem, Name: "conntrack_reconciler_sync_duration_seconds",
		Help: "ReconcileConntrackFlowsLatency latency in seconds", Buckets: syncLatencyBuckets,
	}, []string{"ip_family"})
	// ConntrackReconcileDeletedTotal counts the entries the reconciler deleted.
	ConntrackReconcileDeletedTotal = counterVec("conntrack_reconciler_deleted_entries_total",
		"Cumulative conntrack flows deleted by conntrack reconciler", "ip_family")
)

// registerConntrack adds the reconciler's metrics to reg; Register calls it.
func registerConntrack(reg prometheus.Registerer) {
	reg.MustRegister(ConntrackReconcileLatency, ConntrackReconcileDeletedTotal)
}
