// Package metrics holds cascade's Prometheus instruments: events in and out per scenario and
// layer, dead letters, processing time and consumer lag.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the pipeline's instruments. A nil *Metrics records nothing.
type Metrics struct {
	In         *prometheus.CounterVec
	Out        *prometheus.CounterVec
	DLQ        *prometheus.CounterVec
	Processing *prometheus.HistogramVec
	Pending    *prometheus.GaugeVec
}

// New creates the instruments and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	labels := []string{"scenario", "layer"}
	m := &Metrics{
		In: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cascade_events_in_total", Help: "Events a layer consumer received.",
		}, labels),
		Out: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cascade_events_out_total", Help: "Derived events a layer published (broker-acknowledged).",
		}, labels),
		DLQ: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cascade_dlq_total", Help: "Events a layer sent to its dead-letter subject.",
		}, append(labels, "kind")),
		Processing: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cascade_processing_seconds",
			Help:    "Time from fetching a batch to acknowledging it, per event.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, labels),
		Pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cascade_consumer_pending", Help: "Messages waiting for or held by a layer consumer (lag).",
		}, labels),
	}
	reg.MustRegister(m.In, m.Out, m.DLQ, m.Processing, m.Pending)
	return m
}

// Batch records one processed batch.
func (m *Metrics) Batch(scenario, layer string, in, out int, elapsed time.Duration) {
	if m == nil {
		return
	}
	m.In.WithLabelValues(scenario, layer).Add(float64(in))
	m.Out.WithLabelValues(scenario, layer).Add(float64(out))
	per := elapsed.Seconds() / float64(max(in, 1))
	h := m.Processing.WithLabelValues(scenario, layer)
	for range in {
		h.Observe(per)
	}
}

// DeadLetter records one dead letter of the given kind.
func (m *Metrics) DeadLetter(scenario, layer, kind string) {
	if m == nil {
		return
	}
	m.DLQ.WithLabelValues(scenario, layer, kind).Inc()
}

// SetPending records a consumer's lag.
func (m *Metrics) SetPending(scenario, layer string, n uint64) {
	if m == nil {
		return
	}
	m.Pending.WithLabelValues(scenario, layer).Set(float64(n))
}
