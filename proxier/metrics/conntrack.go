package metrics

// The conntrack reconciler's metrics (proxier/conntrack.Reconciler), by ip_family ("IPv4" or
// "IPv6"), under kube-proxy's names, help and buckets.
var (
	// ConntrackReconcileLatency is the time of one pass of the reconciler over the table.
	ConntrackReconcileLatency = histogramVec("conntrack_reconciler_sync_duration_seconds",
		"ReconcileConntrackFlowsLatency latency in seconds", syncLatencyBuckets, "ip_family")
	// ConntrackReconcileDeletedTotal counts the entries the reconciler deleted.
	ConntrackReconcileDeletedTotal = counterVec("conntrack_reconciler_deleted_entries_total",
		"Cumulative conntrack flows deleted by conntrack reconciler", "ip_family")
)
