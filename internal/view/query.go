package view

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/totals"
)

// each calls fn for what scenario s holds in the event-time range [since, until) (a zero
// bound is open), from buckets no coarser than coarsest: whole years, then the months and
// days and hours at the range's edges (fn is told the bucket's start), then the events of the
// hours the range cuts (fn is told the event's time). Its cost grows with the buckets and rows
// the range touches, plus the events of at most two cut hours.
func each(r pebble.Reader, s string, since, until time.Time, coarsest grain, fn func(at time.Time, id rowID, a *acc) error) error {
	w := walker{r: r, s: s, fn: fn}
	return w.span(since, until, coarsest)
}

type walker struct {
	r  pebble.Reader
	s  string
	fn func(at time.Time, id rowID, a *acc) error
}

// span covers [a, b) (zero: open) with buckets of grain g where they fit whole, and the
// edges with finer grains.
func (w *walker) span(a, b time.Time, g grain) error {
	if !a.IsZero() && !b.IsZero() && !a.Before(b) {
		return nil
	}
	if g == events {
		return w.events(a, b)
	}
	lo, hi := a, b // the whole buckets [lo, hi)
	if !a.IsZero() {
		lo = g.ceil(a)
	}
	if !b.IsZero() {
		hi = g.floor(b)
	}
	if !lo.IsZero() && !hi.IsZero() && !lo.Before(hi) {
		return w.span(a, b, g+1)
	}
	if err := w.buckets(g, lo, hi); err != nil {
		return err
	}
	if !a.IsZero() {
		if err := w.span(a, lo, g+1); err != nil {
			return err
		}
	}
	if !b.IsZero() {
		return w.span(hi, b, g+1)
	}
	return nil
}

// bound is key prefix p followed by t's encoding (Unix seconds), or by open (0x00 or 0xff)
// when t is open.
func bound(p string, t time.Time, open byte) []byte {
	if t.IsZero() {
		return append([]byte(p), open)
	}
	return []byte(p + string(be(t.Unix())))
}

func (w *walker) buckets(g grain, lo, hi time.Time) error {
	p := bucketPrefix(w.s, g)
	it, err := w.r.NewIter(&pebble.IterOptions{LowerBound: bound(p, lo, 0), UpperBound: bound(p, hi, 0xff)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()[len(p):]
		if len(k) < 9 {
			err = errCorrupt
			break
		}
		var id rowID
		var a *acc
		if id, err = parseRowID(string(k[9:])); err != nil {
			break
		}
		if a, err = decodeAcc(it.Value()); err != nil {
			break
		}
		if err = w.fn(time.Unix(unbe(k), 0).UTC(), id, a); err != nil {
			break
		}
	}
	return errors.Join(err, it.Error(), it.Close())
}

// events calls fn for the events in [a, b) (zero: open), from the chunks of the hours the
// range touches.
func (w *walker) events(a, b time.Time) error {
	p := chunkPrefix(w.s)
	lo, hi := a, b // the chunks of the hours from a's to the one b cuts (b is exclusive)
	if !lo.IsZero() {
		lo = hour.floor(a)
	}
	if !hi.IsZero() {
		hi = hour.ceil(b)
	}
	it, err := w.r.NewIter(&pebble.IterOptions{LowerBound: bound(p, lo, 0), UpperBound: bound(p, hi, 0xff)})
	if err != nil {
		return err
	}
	in := func(at time.Time, id rowID, c *acc) error {
		if (!a.IsZero() && at.Before(a)) || (!b.IsZero() && !at.Before(b)) {
			return nil
		}
		return w.fn(at, id, c)
	}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()[len(p):]
		if len(k) < 8 {
			err = errCorrupt
			break
		}
		if err = eachInChunk(it.Value(), unbe(k), in); err != nil {
			break
		}
	}
	return errors.Join(err, it.Error(), it.Close())
}

// snapshot runs fn on a consistent snapshot of the view with the position it is as of; a
// scenario the view has never applied anything of is broker.ErrNotFound unless the registry
// knows it.
func (v *View) snapshot(ctx context.Context, s string, fn func(r pebble.Reader, pos string) error) error {
	err := v.with(func(db *pebble.DB) error {
		snap := db.NewSnapshot()
		defer func() { _ = snap.Close() }() // a read-only snapshot: nothing to lose
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

// Totals answers what query.SumTotals does, from the view: the same rows, as of Position
// (a view fed by its stages may count some events past it already; Snapshot is exact).
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
	sums, err := sumAccs(r, o, keep)
	rows, n := settleRows(sums)
	return rows, n, err
}

// sumAccs is sumRows before the rows are settled.
func sumAccs(r pebble.Reader, o query.TotalsOptions, keep func(rowID) bool) (map[rowID]*acc, error) {
	sums := map[rowID]*acc{}
	err := each(r, o.Scenario, o.Since, o.Until, year, func(_ time.Time, id rowID, a *acc) error {
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
	return sums, err
}

// settleRows is the sorted, settled rows of sums, and the events they count.
func settleRows(sums map[rowID]*acc) ([]totals.Row, int) {
	rows, n := make([]totals.Row, 0, len(sums)), 0
	for id, a := range sums {
		rows = append(rows, a.row(id))
		n += a.events
	}
	totals.SortRows(rows)
	return rows, n
}

// Snapshot is the current totals of one layer's demand feed, split by region (only region
// when one is given), with the feed cursor they are as of: a feed of the layer opened after
// Position delivers exactly the events these rows do not hold. Demand injected as signals is
// not on the feed, so not in these rows either.
//
// A view fed by its stages may have applied events past its cursor (followTapped). Then the
// snapshot reads the layer's feed from the cursor up to the highest of those, adds what the
// view has not applied yet, and is as of that sequence.
func (v *View) Snapshot(ctx context.Context, s string, l event.Layer, region string) (*query.Totals, error) {
	o := query.TotalsOptions{Scenario: s, ByRegion: true}
	keep := func(id rowID) bool {
		injected := len(id.key) > len(totals.Injected) && id.key[:len(totals.Injected)+1] == totals.Injected+":"
		return id.layer == l && !injected && (region == "" || id.region == region)
	}
	var t *query.Totals
	err := v.snapshot(ctx, s, func(r pebble.Reader, pos string) error {
		sums, err := sumAccs(r, o, keep)
		if err != nil {
			return err
		}
		if pos, err = v.pastCursor(ctx, r, feedSelector(s, l, region), pos, sums, keep); err != nil {
			return err
		}
		rows, n := settleRows(sums)
		t = o.Answer(n, rows)
		t.Position = pos
		return nil
	})
	return t, err
}

// pastCursor adds to sums what the view in r has not applied of the events sel selects
// between its cursor pos and the highest sequence it applied past that (none, or none past
// pos: nothing to add), read from the log, and returns the position sums are then as of.
func (v *View) pastCursor(ctx context.Context, r pebble.Reader, sel broker.Selector, pos string, sums map[rowID]*acc, keep func(rowID) bool) (string, error) {
	high, err := get(r, aheadKey(sel.Scenario))
	if err != nil || high == "" {
		return pos, err
	}
	h, err1 := strconv.ParseUint(high, 10, 64)
	c, err2 := strconv.ParseUint(pos, 10, 64)
	if err1 != nil || err2 != nil {
		return "", fmt.Errorf("%w: cursor %q, applied past it to %q", errCorrupt, pos, high)
	}
	if h <= c {
		return pos, nil
	}
	o := broker.FeedOptions{Selector: sel, Cursor: pos, UntilEnd: true}
	err = broker.Each(ctx, v.B, o, func(d broker.Delivery) error {
		if d.Seq() > h {
			return errFilled
		}
		m := d.Message()
		id, ev, p := decoded(m)
		if ev == nil || id == "" {
			return nil // the view counts it nowhere either
		}
		if held, err := get(r, idKey(sel.Scenario, id)); err != nil || held != "" {
			return err
		}
		row, ok := counted(m.Subject, ev, p)
		if !ok || !keep(row) {
			return nil
		}
		if sums[row] == nil {
			sums[row] = &acc{}
		}
		sums[row].add(event.Quantities(p))
		return nil
	})
	if err != nil && !errors.Is(err, errFilled) {
		return "", err
	}
	return high, nil
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
	return b.Feed(ctx, broker.FeedOptions{Selector: feedSelector(s, l, region), Cursor: position, FromStart: position == ""})
}

// feedSelector selects layer l's demand feed in scenario s (only region, when one is given).
func feedSelector(s string, l event.Layer, region string) broker.Selector {
	sel := broker.Selector{Scenario: s, Kinds: []event.Kind{event.KindDemand}, Layers: []event.Layer{l}}
	if region != "" {
		sel.Regions = []string{region}
	}
	return sel
}
