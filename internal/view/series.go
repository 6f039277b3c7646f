package view

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/totals"
)

// Steps are the calendar steps of a series (UTC; weeks start on Monday).
var Steps = []string{"day", "week", "month", "quarter", "year"}

// keyKinds names what a layer's row key is, the grouping a series takes besides region.
var keyKinds = map[event.Layer]string{
	event.Application:    "category",
	event.Model:          "model",
	event.Infrastructure: "workload",
	event.Chips:          "accelerator",
	event.Energy:         "workload",
	event.Grid:           "workload",
}

// SeriesOptions select a series: one quantity of one layer, grouped by region or by the
// layer's key, in calendar steps over the event-time range [Since, Until) (zero: from the
// first step holding demand, to the end of the last), and optionally against scenario Vs.
type SeriesOptions struct {
	Scenario, Vs string
	Layer        event.Layer
	Quantity     string
	By           string // region, or the layer's key: accelerator, workload, model, category
	Step         string // one of Steps
	Since, Until time.Time
}

// Check refuses an option out of range, naming its parameter.
func (o SeriesOptions) Check() error {
	kind, ok := keyKinds[o.Layer]
	switch {
	case !ok:
		return fmt.Errorf("%w: layer %q: want %s", event.ErrInvalid, o.Layer, event.JoinLayers(event.AllLayers, "or"))
	case o.Quantity == "":
		return fmt.Errorf("%w: quantity: required", event.ErrInvalid)
	case o.By != "region" && o.By != kind:
		return fmt.Errorf("%w: by %q: layer %s groups by region or %s", event.ErrInvalid, o.By, o.Layer, kind)
	case !slices.Contains(Steps, o.Step):
		return fmt.Errorf("%w: step %q: want day, week, month, quarter or year", event.ErrInvalid, o.Step)
	case !o.Since.IsZero() && !o.Until.IsZero() && !o.Until.After(o.Since):
		return fmt.Errorf("%w: until %s: not after since %s", event.ErrInvalid, o.Until.Format(time.RFC3339), o.Since.Format(time.RFC3339))
	}
	return nil
}

// Series is the answer of a series query (docs/openapi.yaml, Series).
type Series struct {
	Scenario string      `json:"scenario"`
	Vs       string      `json:"vs,omitempty"`
	Layer    event.Layer `json:"layer"`
	Quantity string      `json:"quantity"`
	Unit     string      `json:"unit"`
	By       string      `json:"by"`
	Step     string      `json:"step"`
	Since    time.Time   `json:"since"`
	Until    time.Time   `json:"until"`
	// Position is the feed cursor of Scenario the answer is as of.
	Position string      `json:"position"`
	Series   []KeySeries `json:"series"`
}

// KeySeries is the points of one group (a region, accelerator or workload).
type KeySeries struct {
	Key    string  `json:"key"`
	Points []Point `json:"points"`
}

// Point is one step: the change within it and the level at its end (everything before it
// included); with Vs, the same of the other scenario and the difference of the levels.
type Point struct {
	T         time.Time `json:"t"`
	Change    float64   `json:"change"`
	Level     float64   `json:"level"`
	VsChange  *float64  `json:"vs_change,omitempty"`
	VsLevel   *float64  `json:"vs_level,omitempty"`
	DiffLevel *float64  `json:"diff_level,omitempty"`
}

// stepGrain is the coarsest bucket that lies within one step.
func stepGrain(step string) grain {
	switch step {
	case "month", "quarter":
		return month
	case "year":
		return year
	}
	return dayGrain
}

// stepStart is the start of the step holding t.
func stepStart(t time.Time, step string) time.Time {
	t = t.UTC()
	y, m, d := t.Date()
	switch step {
	case "week":
		return time.Date(y, m, d-(int(t.Weekday())+6)%7, 0, 0, 0, 0, time.UTC)
	case "month":
		return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	case "quarter":
		return time.Date(y, m-(m-1)%3, 1, 0, 0, 0, 0, time.UTC)
	case "year":
		return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func nextStep(t time.Time, step string) time.Time {
	switch step {
	case "week":
		return t.AddDate(0, 0, 7)
	case "month":
		return t.AddDate(0, 1, 0)
	case "quarter":
		return t.AddDate(0, 3, 0)
	case "year":
		return t.AddDate(1, 0, 0)
	}
	return t.AddDate(0, 0, 1)
}

// sums is one scenario's series: per group, the level before the range and the change of
// each step.
type sums struct {
	pos    string
	unit   string
	names  map[string]bool // the layer's quantities seen
	before map[string]*qsum
	steps  map[string]map[int]*qsum
}

type qsum struct {
	sum    totals.Exact
	maxAbs float64
}

func (q *qsum) add(o *qacc) {
	q.sum.Merge(o.sum.Partials())
	q.maxAbs = max(q.maxAbs, o.maxAbs)
}

func (q *qsum) value() float64 {
	if q == nil {
		return 0
	}
	return totals.Settle(q.sum.Value(), q.maxAbs)
}

// Series answers o: per group and step the change and running level, and with o.Vs the
// other scenario's and the difference of levels.
func (v *View) Series(ctx context.Context, o SeriesOptions) (*Series, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	if o.Since.IsZero() || o.Until.IsZero() {
		first, last, ok, err := v.extent(ctx, o.Scenario, o.Vs)
		if err != nil {
			return nil, err
		}
		if !ok {
			first, last = time.Now().UTC(), time.Now().UTC()
		}
		if o.Since.IsZero() {
			o.Since = stepStart(first, o.Step)
		}
		if o.Until.IsZero() {
			o.Until = nextStep(stepStart(last, o.Step), o.Step)
		}
		if !o.Until.After(o.Since) {
			o.Until = nextStep(stepStart(o.Since, o.Step), o.Step)
		}
	}
	var starts []time.Time // each step's start; the first and last may be cut by the range
	for t := stepStart(o.Since, o.Step); t.Before(o.Until); t = nextStep(t, o.Step) {
		starts = append(starts, t)
	}
	this, err := v.sums(ctx, o.Scenario, o, starts)
	if err != nil {
		return nil, err
	}
	out := &Series{Scenario: o.Scenario, Vs: o.Vs, Layer: o.Layer, Quantity: o.Quantity, Unit: this.unit, By: o.By, Step: o.Step, Since: o.Since, Until: o.Until, Position: this.pos}
	var other *sums
	if o.Vs != "" {
		if other, err = v.sums(ctx, o.Vs, o, starts); err != nil {
			return nil, err
		}
		if out.Unit == "" {
			out.Unit = other.unit
		}
	}
	if out.Unit == "" && len(this.names) > 0 {
		names := make([]string, 0, len(this.names))
		for n := range this.names {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("%w: quantity %q: layer %s has %s", event.ErrInvalid, o.Quantity, o.Layer, strings.Join(names, ", "))
	}
	keys := map[string]bool{}
	for _, s := range []*sums{this, other} {
		if s == nil {
			continue
		}
		for k := range s.before {
			keys[k] = true
		}
		for k := range s.steps {
			keys[k] = true
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.Sort(sorted)
	for _, k := range sorted {
		ks := KeySeries{Key: k, Points: make([]Point, len(starts))}
		var level, vsLevel totals.Exact
		var maxA, vsMax float64
		if q := this.before[k]; q != nil {
			level.Merge(q.sum.Partials())
			maxA = q.maxAbs
		}
		if other != nil && other.before[k] != nil {
			vsLevel.Merge(other.before[k].sum.Partials())
			vsMax = other.before[k].maxAbs
		}
		for i, t := range starts {
			p := &ks.Points[i]
			p.T = t
			if q := this.steps[k][i]; q != nil {
				p.Change = q.value()
				level.Merge(q.sum.Partials())
				maxA = max(maxA, q.maxAbs)
			}
			p.Level = totals.Settle(level.Value(), maxA)
			if other != nil {
				q := other.steps[k][i]
				c := q.value()
				if q != nil {
					vsLevel.Merge(q.sum.Partials())
					vsMax = max(vsMax, q.maxAbs)
				}
				l := totals.Settle(vsLevel.Value(), vsMax)
				var diff totals.Exact
				diff.Add(p.Level)
				diff.Add(-l)
				d := diff.Value()
				p.VsChange, p.VsLevel, p.DiffLevel = &c, &l, &d
			}
		}
		out.Series = append(out.Series, ks)
	}
	if out.Series == nil {
		out.Series = []KeySeries{}
	}
	return out, nil
}

// sums reads scenario s's series of o over the steps starting at starts.
func (v *View) sums(ctx context.Context, s string, o SeriesOptions, starts []time.Time) (*sums, error) {
	out := &sums{before: map[string]*qsum{}, steps: map[string]map[int]*qsum{}, names: map[string]bool{}}
	group := func(id rowID) string {
		if o.By == "region" {
			return id.region
		}
		return id.key
	}
	find := func(id rowID, a *acc) *qacc {
		if id.layer != o.Layer {
			return nil
		}
		for i := range a.qs {
			out.names[a.qs[i].name] = true
			if a.qs[i].name == o.Quantity {
				out.unit = a.qs[i].unit
				return &a.qs[i]
			}
		}
		return nil
	}
	err := v.snapshot(ctx, s, func(r pebble.Reader, pos string) error {
		out.pos = pos
		err := each(r, s, time.Time{}, o.Since, year, func(_ time.Time, id rowID, a *acc) error {
			if q := find(id, a); q != nil {
				k := group(id)
				if out.before[k] == nil {
					out.before[k] = &qsum{}
				}
				out.before[k].add(q)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return each(r, s, o.Since, o.Until, stepGrain(o.Step), func(at time.Time, id rowID, a *acc) error {
			q := find(id, a)
			if q == nil {
				return nil
			}
			i, _ := slices.BinarySearchFunc(starts, at, func(st, at time.Time) int {
				if st.After(at) {
					return 1
				}
				return -1
			})
			i-- // the last start not after at
			if i < 0 {
				return nil
			}
			k := group(id)
			if out.steps[k] == nil {
				out.steps[k] = map[int]*qsum{}
			}
			if out.steps[k][i] == nil {
				out.steps[k][i] = &qsum{}
			}
			out.steps[k][i].add(q)
			return nil
		})
	})
	return out, err
}

// extent is the first and last day holding demand in either scenario.
func (v *View) extent(ctx context.Context, scenarios ...string) (first, last time.Time, ok bool, err error) {
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, s := range scenarios {
		if s == "" {
			continue
		}
		err = v.snapshot(ctx, s, func(r pebble.Reader, _ string) error {
			p := bucketPrefix(s, dayGrain)
			it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte(p), UpperBound: []byte(p + "\xff")})
			if err != nil {
				return err
			}
			if it.First() {
				lo = min(lo, unbe(it.Key()[len(p):]))
			}
			if it.Last() {
				hi = max(hi, unbe(it.Key()[len(p):]))
			}
			return it.Close()
		})
		if err != nil {
			return first, last, false, err
		}
	}
	if lo > hi {
		return first, last, false, nil
	}
	return time.Unix(lo, 0).UTC(), time.Unix(hi, 0).UTC(), true, nil
}
