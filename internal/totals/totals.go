// Package totals sums demand feeds: per layer, per key (model, workload or accelerator) and
// optionally per region, each quantity with its unit. Every event id counts once, so
// redelivered or re-written duplicates never inflate a total.
package totals

import (
	"sort"

	"github.com/layercake/cascade/internal/event"
)

// Injected is the key of the row holding signals injected at a layer rather than derived.
const Injected = "injected"

// Row is the sum of one layer's events with the same key (and region, when split by region).
type Row struct {
	Layer      event.Layer      `json:"layer"`
	Region     string           `json:"region,omitempty"`
	Key        string           `json:"key"`
	Quantities []event.Quantity `json:"quantities"`
	Events     int              `json:"events"`
}

type rowKey struct {
	layer       event.Layer
	region, key string
}

// Sum accumulates events. The zero value is not usable; call New.
type Sum struct {
	byRegion bool
	rows     map[rowKey]*Row
	seen     map[string]struct{}
}

// New returns an empty sum, split by region when byRegion is set.
func New(byRegion bool) *Sum {
	return &Sum{byRegion: byRegion, rows: map[rowKey]*Row{}, seen: map[string]struct{}{}}
}

// Key is the row key of a demand payload: the model, the accelerator or the workload.
func Key(p event.Payload) string {
	switch p := p.(type) {
	case *event.DemandModel:
		return p.Model
	case *event.DemandChips:
		return p.Accelerator
	case *event.DemandInfrastructure:
		return p.Workload
	case *event.DemandEnergy:
		return orUnspecified(p.Workload)
	case *event.DemandGrid:
		return orUnspecified(p.Workload)
	}
	return ""
}

func orUnspecified(w string) string {
	if w == "" {
		return "unspecified"
	}
	return w
}

// Add counts ev on the layer its type places demand on; injected says it arrived as a
// signal. It returns false for an id already counted.
func (s *Sum) Add(ev *event.Event, p event.Payload, injected bool) bool {
	if _, dup := s.seen[ev.ID]; dup {
		return false
	}
	s.seen[ev.ID] = struct{}{}
	layer := event.InputLayer(ev.Type)
	if ev.Type == event.TypeDemandGrid {
		layer = event.Grid
	}
	k := rowKey{layer: layer, key: Key(p)}
	if injected {
		k.key = Injected
	}
	if s.byRegion {
		k.region = ev.Subject
	}
	r := s.rows[k]
	qs := event.Quantities(p)
	if r == nil {
		r = &Row{Layer: k.layer, Region: k.region, Key: k.key, Quantities: make([]event.Quantity, len(qs))}
		for i, q := range qs {
			r.Quantities[i] = event.Quantity{Name: q.Name, Unit: q.Unit}
		}
		s.rows[k] = r
	}
	for i, q := range qs {
		if i < len(r.Quantities) {
			r.Quantities[i].Value += q.Value
		}
	}
	r.Events++
	return true
}

// Rows returns the rows in layer order, then region, then key.
func (s *Sum) Rows() []Row {
	order := map[event.Layer]int{}
	for i, l := range []event.Layer{event.Application, event.Model, event.Infrastructure, event.Chips, event.Energy, event.Grid} {
		order[l] = i
	}
	out := make([]Row, 0, len(s.rows))
	for _, r := range s.rows {
		c := *r
		c.Quantities = append([]event.Quantity(nil), r.Quantities...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Layer != b.Layer {
			return order[a.Layer] < order[b.Layer]
		}
		if a.Region != b.Region {
			return a.Region < b.Region
		}
		return a.Key < b.Key
	})
	return out
}

// Events counts the distinct ids added.
func (s *Sum) Events() int { return len(s.seen) }
