package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/internal/polltest"
	"github.com/switchyard/switchyard/proxier/metrics"
)

// TestServeMetricsByMode: the metrics server exports kube-proxy's metrics of the proxy mode it is
// given, labelled by IP family: in IPVS mode a full-sync time observed by mistake is not exported.
func TestServeMetricsByMode(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serveMetrics(ctx, addr, "ipvs", false, nil, nil)

	metrics.SyncProxyRulesLatency.WithLabelValues("IPv4").Observe(0.01)
	metrics.SyncFullProxyRulesLatency.WithLabelValues("IPv4").Observe(0.01)
	var body string
	polltest.Eventually(t, "the metrics server answers", func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err == nil && resp.StatusCode == http.StatusOK
	})
	for _, want := range []string{
		`kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family="IPv4"} `,
		"# HELP kubeproxy_sync_proxy_rules_endpoint_changes_pending [ALPHA] Pending proxy rules Endpoint changes\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the scrape lacks %q", want)
		}
	}
	if strings.Contains(body, "kubeproxy_sync_full_proxy_rules_duration_seconds") {
		t.Errorf("IPVS mode exports the full-sync time, which kube-proxy exports in iptables mode only")
	}
}
