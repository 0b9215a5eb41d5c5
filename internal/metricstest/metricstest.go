// Package metricstest reads Prometheus metrics back in tests. It stands in for prometheus'
// testutil, which would add its own dependencies to go.mod for two small functions.
package metricstest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Value reads the current value of a counter or a gauge.
func Value(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatalf("read %s: %v", c.Desc(), err)
	}
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// Histogram reads the current state of a histogram.
func Histogram(t testing.TB, h prometheus.Histogram) *dto.Histogram {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatalf("read %s: %v", h.Desc(), err)
	}
	return m.GetHistogram()
}
