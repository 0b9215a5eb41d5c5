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

// Histogram reads the current state of a histogram: a prometheus.Histogram, or one of a
// HistogramVec's (what its WithLabelValues returns).
func Histogram(t testing.TB, h prometheus.Observer) *dto.Histogram {
	t.Helper()
	hm, ok := h.(prometheus.Metric)
	if !ok {
		t.Fatalf("%T is not a histogram that can be read", h)
	}
	var m dto.Metric
	if err := hm.Write(&m); err != nil {
		t.Fatalf("read %s: %v", hm.Desc(), err)
	}
	return m.GetHistogram()
}
