// Package query answers questions over a scenario's stored events: totals of each layer's
// demand over an event-time range, and two scenarios compared (trace is in lineage).
package query

import (
	"context"
	"fmt"
	"time"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/totals"
)

// TotalsOptions select what Totals sums.
type TotalsOptions struct {
	Scenario string
	Since    time.Time // event time, inclusive; zero: from the beginning
	Until    time.Time // event time, exclusive; zero: no end
	ByRegion bool
}

// Totals is the answer of a totals query.
type Totals struct {
	Scenario string       `json:"scenario"`
	Since    *time.Time   `json:"since"`
	Until    *time.Time   `json:"until"`
	By       string       `json:"by,omitempty"`
	Events   int          `json:"events"`
	Rows     []totals.Row `json:"rows"`
	// Position is the broker position the answer is as of, when a view answered it (a feed
	// cursor: a following feed opened after it sees exactly what the answer does not hold).
	Position string `json:"position,omitempty"`
}

// scan calls fn for every decodable event the subjects of sel hold now.
func scan(ctx context.Context, b broker.Broker, sel broker.Selector, fn func(d broker.Delivery, ev *event.Event, p event.Payload) error) error {
	return broker.Each(ctx, b, broker.FeedOptions{Selector: sel, FromStart: true}, func(d broker.Delivery) error {
		ev, p, err := event.Decode(d.Message().Data)
		if err != nil {
			return nil // only dead letters are undecodable, and they are not on these subjects
		}
		return fn(d, ev, p)
	})
}

// SumTotals sums every layer's demand feed, plus the demand injected at a layer as signals in
// rows of their own and the users of adoption signals on the application layer, over the
// event-time range.
func SumTotals(ctx context.Context, b broker.Broker, o TotalsOptions) (*Totals, error) {
	sum := totals.New(o.ByRegion)
	err := scan(ctx, b, broker.Selector{Scenario: o.Scenario, Kinds: totals.Kinds}, func(d broker.Delivery, ev *event.Event, p event.Payload) error {
		if event.InRange(ev.Time, o.Since, o.Until) {
			sum.AddStored(d.Message().Subject, ev, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("totals of %s: %w", o.Scenario, err)
	}
	return o.Answer(sum.Events(), sum.Rows()), nil
}

// Answer is the Totals of o holding rows of events.
func (o TotalsOptions) Answer(events int, rows []totals.Row) *Totals {
	t := &Totals{Scenario: o.Scenario, Events: events, Rows: rows}
	if !o.Since.IsZero() {
		t.Since = &o.Since
	}
	if !o.Until.IsZero() {
		t.Until = &o.Until
	}
	if o.ByRegion {
		t.By = "region"
	}
	return t
}

// CompareQuantity is one quantity of two scenarios and this − other.
type CompareQuantity struct {
	Name  string  `json:"name"`
	Unit  string  `json:"unit"`
	Value float64 `json:"value"`
	Vs    float64 `json:"vs"`
	Diff  float64 `json:"diff"`
}

// CompareRow is a row present in either scenario.
type CompareRow struct {
	Layer      event.Layer       `json:"layer"`
	Region     string            `json:"region,omitempty"`
	Key        string            `json:"key"`
	Quantities []CompareQuantity `json:"quantities"`
}

// Comparison shows two scenarios' totals side by side.
type Comparison struct {
	Scenario string       `json:"scenario"`
	Vs       string       `json:"vs"`
	Since    *time.Time   `json:"since"`
	Until    *time.Time   `json:"until"`
	By       string       `json:"by,omitempty"`
	Rows     []CompareRow `json:"rows"`
}

// Compare joins two totals on layer, region and key; a row missing on one side counts zero.
func Compare(this, other *Totals) *Comparison {
	type key struct {
		l    event.Layer
		r, k string
	}
	c := &Comparison{Scenario: this.Scenario, Vs: other.Scenario, Since: this.Since, Until: this.Until, By: this.By}
	index := map[key]int{}
	add := func(r totals.Row, mine bool) {
		k := key{r.Layer, r.Region, r.Key}
		i, ok := index[k]
		if !ok {
			i = len(c.Rows)
			index[k] = i
			row := CompareRow{Layer: r.Layer, Region: r.Region, Key: r.Key}
			for _, q := range r.Quantities {
				row.Quantities = append(row.Quantities, CompareQuantity{Name: q.Name, Unit: q.Unit})
			}
			c.Rows = append(c.Rows, row)
		}
		for j, q := range r.Quantities {
			cq := &c.Rows[i].Quantities[j]
			if mine {
				cq.Value = q.Value
			} else {
				cq.Vs = q.Value
			}
			cq.Diff = cq.Value - cq.Vs
		}
	}
	for _, r := range this.Rows {
		add(r, true)
	}
	for _, r := range other.Rows {
		add(r, false)
	}
	return c
}
