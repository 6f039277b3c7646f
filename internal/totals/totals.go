// Package totals sums demand feeds: per layer, per key (model, workload or accelerator) and
// optionally per region, each quantity with its unit. Memory is bounded: rows grow with the
// number of distinct keys, not of events. Duplicates are dropped by id within a window of the
// most recent DedupWindow ids: at-least-once delivery (a consumer killed between writing its
// outputs and committing) re-writes an event shortly after its original, in the same
// partition, so the window catches it; on NATS the stream itself de-duplicates.
package totals

import (
	"math"
	"sort"

	"github.com/layercake/cascade/internal/event"
)

// Injected prefixes the key of rows holding demand injected at a layer as a signal rather
// than derived ("injected:h100").
const Injected = "injected"

// Row is the sum of one layer's events with the same key (and region, when split by region).
type Row struct {
	Layer      event.Layer      `json:"layer"`
	Region     string           `json:"region,omitempty"`
	Key        string           `json:"key"`
	Quantities []event.Quantity `json:"quantities"`
	Events     int              `json:"events"`
}

// acc is a row being summed, with the largest term of each quantity, so that sums which
// cancel (fine-tuning and its retraction) read zero rather than rounding noise.
type acc struct {
	row    Row
	sums   []Exact
	maxAbs []float64
}

type rowKey struct {
	layer       event.Layer
	region, key string
}

// Sum accumulates events. The zero value is not usable; call New.
type Sum struct {
	byRegion bool
	rows     map[rowKey]*acc
	recent   recent
	events   int
}

// DedupWindow is how many of the most recent ids a Sum remembers to drop duplicates.
const DedupWindow = 1 << 17

// New returns an empty sum, split by region when byRegion is set.
func New(byRegion bool) *Sum {
	return &Sum{byRegion: byRegion, rows: map[rowKey]*acc{}, recent: recent{ids: map[string]struct{}{}, ring: make([]string, DedupWindow)}}
}

// recent is a fixed-size set of the last len(ring) ids.
type recent struct {
	ids  map[string]struct{}
	ring []string
	next int
}

// add reports whether id is new, remembering it and forgetting the oldest.
func (r *recent) add(id string) bool {
	if _, dup := r.ids[id]; dup {
		return false
	}
	if old := r.ring[r.next]; old != "" {
		delete(r.ids, old)
	}
	r.ring[r.next] = id
	r.ids[id] = struct{}{}
	r.next = (r.next + 1) % len(r.ring)
	return true
}

// Key is the row key of a demand payload: the model, the accelerator or the workload.
func Key(p event.Payload) string { return event.TotalsKey(p) }

// Add counts ev on the layer its type places demand on (adoption signals on application, as
// weekly users per category); injected says it is demand that arrived as a signal. It
// returns false for an id already counted.
func (s *Sum) Add(ev *event.Event, p event.Payload, injected bool) bool {
	if !s.recent.add(ev.ID) {
		return false
	}
	s.events++
	k := rowKey{layer: event.LayerOf(ev.Type), key: RowKey(p, injected)}
	if s.byRegion {
		k.region = ev.Subject
	}
	a := s.rows[k]
	qs := event.Quantities(p)
	if a == nil {
		a = &acc{row: Row{Layer: k.layer, Region: k.region, Key: k.key, Quantities: make([]event.Quantity, len(qs))}, sums: make([]Exact, len(qs)), maxAbs: make([]float64, len(qs))}
		for i, q := range qs {
			a.row.Quantities[i] = event.Quantity{Name: q.Name, Unit: q.Unit}
		}
		s.rows[k] = a
	}
	for i, q := range qs {
		if i < len(a.row.Quantities) {
			a.sums[i].Add(q.Value)
			a.maxAbs[i] = max(a.maxAbs[i], math.Abs(q.Value))
		}
	}
	a.row.Events++
	return true
}

// RowKey is the key of the row an event with payload p is counted in: its Key, prefixed
// with Injected when it is demand that arrived as a signal.
func RowKey(p event.Payload, injected bool) string {
	if injected {
		return Injected + ":" + Key(p)
	}
	return Key(p)
}

// Kinds are the kinds of subject whose events totals sum: every signal and all demand.
var Kinds = []event.Kind{event.KindSignal, event.KindDemand}

// AddStored counts ev as stored on subject (of one of Kinds): a signal whose demand is all in
// its derived events (a release) is not counted (event.Counted); an adoption counts its users
// on the application layer; demand arriving as a signal is injected at its layer. It returns
// false for an event not counted.
func (s *Sum) AddStored(subject string, ev *event.Event, p event.Payload) bool {
	injected, ok := Stored(subject, ev)
	if !ok {
		return false
	}
	return s.Add(ev, p, injected)
}

// Stored says how AddStored counts ev stored on subject: ok is false for an event that is not
// counted (event.Counted), injected is true for demand that arrived as a signal.
func Stored(subject string, ev *event.Event) (injected, ok bool) {
	if !event.Counted(ev.Type) {
		return false, false
	}
	subj, _ := event.ParseSubject(subject)
	return event.LayerOf(ev.Type).DemandType() == ev.Type && subj.Kind == event.KindSignal, true
}

// Settle is a sum whose largest term was maxAbs, with what is rounding noise of terms that
// cancel (fine-tuning and its retraction) read as zero.
func Settle(sum, maxAbs float64) float64 {
	if math.Abs(sum) > 1e-9*maxAbs {
		return sum
	}
	return 0
}

// Rows returns the rows in layer order, then region, then key.
func (s *Sum) Rows() []Row {
	out := make([]Row, 0, len(s.rows))
	for _, a := range s.rows {
		c := a.row
		c.Quantities = append([]event.Quantity(nil), a.row.Quantities...)
		for i := range c.Quantities {
			c.Quantities[i].Value = Settle(a.sums[i].Value(), a.maxAbs[i])
		}
		out = append(out, c)
	}
	SortRows(out)
	return out
}

// SortRows sorts rows in layer order, then region, then key.
func SortRows(out []Row) {
	order := map[event.Layer]int{}
	for i, l := range event.AllLayers {
		order[l] = i
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
}

// Events counts the events added, duplicates excluded.
func (s *Sum) Events() int { return s.events }
