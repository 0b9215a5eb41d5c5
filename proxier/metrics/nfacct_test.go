package metrics_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/internal/nfacct/nfaccttest"
	"github.com/switchyard/switchyard/proxier/metrics"
)

// scrape gathers reg and returns each counter's value by metric name.
func scrape(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != 0 {
				t.Errorf("%s has labels %v; kube-proxy's has none", f.GetName(), m.GetLabel())
			}
			out[f.GetName()] = m.GetCounter().GetValue()
		}
	}
	return out
}

func TestNFAcctMetrics(t *testing.T) {
	const invalid, localhost = "kubeproxy_iptables_ct_state_invalid_dropped_packets_total", "kubeproxy_iptables_localhost_nodeports_accepted_packets_total"
	acct := nfaccttest.New()
	reg := prometheus.NewRegistry()
	metrics.RegisterNFAcct(reg, acct)

	// Before the proxier made the counters, the metrics are left out rather than reported as 0.
	if got := scrape(t, reg); len(got) != 0 {
		t.Fatalf("metrics without counters: %v", got)
	}
	for _, name := range metrics.NFAcctCounters {
		if err := acct.Ensure(name); err != nil {
			t.Fatal(err)
		}
	}
	acct.Count(metrics.NFAcctLocalhostNodePorts, 60)
	acct.Count(metrics.NFAcctLocalhostNodePorts, 60)
	acct.Count(metrics.NFAcctInvalidDropped, 40)
	got := scrape(t, reg)
	if got[localhost] != 2 || got[invalid] != 1 || len(got) != 2 {
		t.Fatalf("scraped %v, want %s=2 and %s=1", got, localhost, invalid)
	}
}
