package view

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/totals"
)

const day = 24 * 60 * 60

// each calls fn for what scenario s holds in the event-time range [since, until) (a zero
// bound is open): whole days from their day rows (at the day's start), the days the range
// cuts from the events' own records (at the event's time). Its cost grows with the days and
// rows the range touches, plus the events of at most two cut days.
func each(r pebble.Reader, s string, since, until time.Time, fn func(at time.Time, id rowID, a *acc) error) error {
	const minDay, maxDay = -1 << 62, 1 << 62
	first, last := int64(minDay), int64(maxDay) // whole days [first, last)
	if !since.IsZero() {
		if first = dayOf(since); time.Unix(first, 0).Before(since) {
			first += day
		}
	}
	if !until.IsZero() {
		last = dayOf(until)
	}
	events := func(from, to time.Time) error {
		it, err := r.NewIter(&pebble.IterOptions{
			LowerBound: []byte(eventPrefix(s) + string(be(from.UnixNano()))),
			UpperBound: []byte(eventPrefix(s) + string(be(to.UnixNano()))),
		})
		if err != nil {
			return err
		}
		defer it.Close()
		for it.First(); it.Valid(); it.Next() {
			k := it.Key()[len(eventPrefix(s)):]
			id, a, err := decodeEvent(it.Value())
			if err != nil {
				return err
			}
			if err := fn(time.Unix(0, unbe(k)).UTC(), id, a); err != nil {
				return err
			}
		}
		return it.Error()
	}
	if !since.IsZero() && time.Unix(first, 0).After(since) {
		end := time.Unix(first, 0)
		if !until.IsZero() && until.Before(end) {
			end = until
		}
		if err := events(since, end); err != nil {
			return err
		}
	}
	if first < last {
		it, err := r.NewIter(&pebble.IterOptions{
			LowerBound: []byte(bucketPrefix(s) + string(be(first))),
			UpperBound: []byte(bucketPrefix(s) + string(be(last))),
		})
		if err != nil {
			return err
		}
		for it.First(); it.Valid(); it.Next() {
			k := it.Key()[len(bucketPrefix(s)):]
			id, err := parseRowID(string(k[9:]))
			if err != nil {
				_ = it.Close()
				return err
			}
			a, err := decodeAcc(it.Value())
			if err == nil {
				err = fn(time.Unix(unbe(k), 0).UTC(), id, a)
			}
			if err != nil {
				_ = it.Close()
				return err
			}
		}
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return err
		}
	}
	if !until.IsZero() && last >= first && time.Unix(last, 0).Before(until) {
		return events(time.Unix(last, 0), until)
	}
	return nil
}

// snapshot runs fn on a consistent snapshot of the view with the position it is as of; a
// scenario the view has never applied anything of is broker.ErrNotFound unless the registry
// knows it.
func (v *View) snapshot(ctx context.Context, s string, fn func(r pebble.Reader, pos string) error) error {
	err := v.with(func(db *pebble.DB) error {
		snap := db.NewSnapshot()
		defer snap.Close()
		pos, err := get(snap, posKey(s))
		if err != nil {
			return err
		}
		if pos == "" {
			if _, err := v.B.Registry().Get(ctx, s); err != nil {
				return err
			}
		}
		return fn(snap, pos)
	})
	if err != nil {
		return fmt.Errorf("view of %s: %w", s, err)
	}
	return nil
}

// Totals answers what query.SumTotals does, from the view: the same rows, as of Position.
func (v *View) Totals(ctx context.Context, o query.TotalsOptions) (*query.Totals, error) {
	var t *query.Totals
	err := v.snapshot(ctx, o.Scenario, func(r pebble.Reader, pos string) error {
		rows, n, err := sumRows(r, o, nil)
		t = o.Answer(n, rows)
		t.Position = pos
		return err
	})
	return t, err
}

// sumRows sums the rows of o's range (split by region when o.ByRegion), keeping those keep
// accepts (nil: all).
func sumRows(r pebble.Reader, o query.TotalsOptions, keep func(rowID) bool) ([]totals.Row, int, error) {
	sums := map[rowID]*acc{}
	err := each(r, o.Scenario, o.Since, o.Until, func(_ time.Time, id rowID, a *acc) error {
		if keep != nil && !keep(id) {
			return nil
		}
		if !o.ByRegion {
			id.region = ""
		}
		if sums[id] == nil {
			sums[id] = &acc{}
		}
		sums[id].merge(a)
		return nil
	})
	rows, n := make([]totals.Row, 0, len(sums)), 0
	for id, a := range sums {
		rows = append(rows, a.row(id))
		n += a.events
	}
	totals.SortRows(rows)
	return rows, n, err
}

// Snapshot is the current totals of one layer's demand feed, split by region (only region
// when one is given), with the feed cursor they are as of: a feed of the layer opened after
// Position delivers exactly the events these rows do not hold. Demand injected as signals is
// not on the feed, so not in these rows either.
func (v *View) Snapshot(ctx context.Context, s string, l event.Layer, region string) (*query.Totals, error) {
	o := query.TotalsOptions{Scenario: s, ByRegion: true}
	var t *query.Totals
	err := v.snapshot(ctx, s, func(r pebble.Reader, pos string) error {
		rows, n, err := sumRows(r, o, func(id rowID) bool {
			injected := len(id.key) > len(totals.Injected) && id.key[:len(totals.Injected)+1] == totals.Injected+":"
			return id.layer == l && !injected && (region == "" || id.region == region)
		})
		t = o.Answer(n, rows)
		t.Position = pos
		return err
	})
	return t, err
}

// Subscribe is a snapshot-then-live read of layer l's demand feed in scenario s (only region,
// when one is given): the layer's current totals (Snapshot) and a following feed that starts
// right after the position they are as of (FeedAfter), so that the snapshot plus every event
// the feed delivers is the layer's totals at any later moment: no event in both, none in
// neither.
func (v *View) Subscribe(ctx context.Context, s string, l event.Layer, region string) (*query.Totals, broker.Feed, error) {
	snap, err := v.Snapshot(ctx, s, l, region)
	if err != nil {
		return nil, nil, err
	}
	f, err := FeedAfter(ctx, v.B, s, l, region, snap.Position)
	if err != nil {
		return nil, nil, err
	}
	return snap, f, nil
}

// FeedAfter opens the following feed of layer l's demand in scenario s (only region, when
// one is given) right after position, a view's position ("": from the start).
func FeedAfter(ctx context.Context, b broker.Broker, s string, l event.Layer, region, position string) (broker.Feed, error) {
	sel := broker.Selector{Scenario: s, Kinds: []event.Kind{event.KindDemand}, Layers: []event.Layer{l}}
	if region != "" {
		sel.Regions = []string{region}
	}
	return b.Feed(ctx, broker.FeedOptions{Selector: sel, Cursor: position, FromStart: position == ""})
}
