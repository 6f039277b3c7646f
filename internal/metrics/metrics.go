// Package metrics holds cascade's Prometheus instruments: events in and out per scenario and
// layer, dead letters, processing time, consumer lag, the demand each scenario places on each
// layer and region, and the build.
package metrics

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/layercake/cascade/internal/totals"
)

// Metrics are the pipeline's instruments. A nil *Metrics records nothing.
type Metrics struct {
	In         *prometheus.CounterVec
	Out        *prometheus.CounterVec
	DLQ        *prometheus.CounterVec
	Processing *prometheus.HistogramVec
	Pending    *prometheus.GaugeVec
	// Demand is each scenario's totals by region (what `cascade totals --by region` shows):
	// one series per layer, region, key (model, workload, accelerator or category) and
	// quantity, kept by SetDemand.
	Demand *prometheus.GaugeVec
	// Duplicates counts what a stage left unpublished because the view already holds it:
	// inputs whose own id it holds at another position (what="input": a producer's retry
	// stored again) and outputs of redeliveries that are stored already (what="output").
	Duplicates *prometheus.CounterVec
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
		Demand: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cascade_demand",
			Help: "Demand summed over all events of the scenario, as cascade totals --by region shows it (grid avg_mw in MW, chips units by accelerator, model tokens_per_day, ...).",
		}, []string{"scenario", "layer", "region", "key", "quantity", "unit"}),
		Duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cascade_duplicates_total", Help: "Inputs (what=input) and redelivered outputs (what=output) a stage did not publish again because the view holds their ids.",
		}, append(labels, "what")),
	}
	reg.MustRegister(m.In, m.Out, m.DLQ, m.Processing, m.Pending, m.Demand, m.Duplicates)
	return m
}

// RegisterBuildInfo registers cascade_build_info, always 1, labelled with cascade's version
// and the Go version it was built with.
func RegisterBuildInfo(reg prometheus.Registerer, version string) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "cascade_build_info",
		Help:        "Always 1; the labels say which build of cascade runs.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	g.Set(1)
	reg.MustRegister(g)
}

// Start creates a layer's series at zero when it starts serving a scenario, dead letters of
// each of kinds included, so that rates and alerts work before the first event.
func (m *Metrics) Start(scenario, layer string, kinds ...string) {
	if m == nil {
		return
	}
	m.In.WithLabelValues(scenario, layer)
	m.Out.WithLabelValues(scenario, layer)
	m.Processing.WithLabelValues(scenario, layer)
	m.Pending.WithLabelValues(scenario, layer)
	m.Duplicates.WithLabelValues(scenario, layer, "input")
	m.Duplicates.WithLabelValues(scenario, layer, "output")
	for _, k := range kinds {
		m.DLQ.WithLabelValues(scenario, layer, k)
	}
}

// SetDemand sets scenario's demand gauges to its totals by region (rows; run takes them from
// its view after each commit, so the gauges cost no read of the stream of their own).
func (m *Metrics) SetDemand(scenario string, rows []totals.Row) {
	if m == nil {
		return
	}
	for _, r := range rows {
		for _, q := range r.Quantities {
			m.Demand.WithLabelValues(scenario, string(r.Layer), r.Region, r.Key, q.Name, q.Unit).Set(q.Value)
		}
	}
}

// ForgetDemand removes scenario's demand gauges (it is no longer served).
func (m *Metrics) ForgetDemand(scenario string) {
	if m == nil {
		return
	}
	m.Demand.DeletePartialMatch(prometheus.Labels{"scenario": scenario})
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

// Duplicate records n duplicates of what ("input" or "output") left unpublished.
func (m *Metrics) Duplicate(scenario, layer, what string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.Duplicates.WithLabelValues(scenario, layer, what).Add(float64(n))
}

// SetPending records a consumer's lag.
func (m *Metrics) SetPending(scenario, layer string, n uint64) {
	if m == nil {
		return
	}
	m.Pending.WithLabelValues(scenario, layer).Set(float64(n))
}
