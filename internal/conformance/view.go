package conformance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/totals"
	"github.com/layercake/cascade/internal/view"
)

// startView follows scenario s into a view in dir; stop (also run by t.Cleanup) ends the
// follower and closes the view.
func startView(t *testing.T, b view.Broker, dir string, scenarios ...string) (*view.View, func()) {
	v := &view.View{B: b, Dir: dir, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range scenarios {
		wg.Go(func() {
			if err := v.Follow(ctx, s); err != nil {
				t.Errorf("view follow %s: %v", s, err)
			}
		})
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			if err := v.Close(); err != nil {
				t.Errorf("view close: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return v, stop
}

// timedSignals are the suite's signals again under new ids at the given event times, so
// that demand falls inside the days a range cuts.
func timedSignals(times ...string) []string {
	var out []string
	for i, at := range times {
		for _, raw := range Signals() {
			raw = strings.Replace(raw, `"id":"sig-`, fmt.Sprintf(`"id":"t%d-sig-`, i), 1)
			out = append(out, strings.Replace(raw, signalTime.Format(time.RFC3339), at, 1))
		}
	}
	return out
}

// SameTotals is nil when the view's answer holds exactly the scan's rows and events (as of a
// position), else says how they differ.
func SameTotals(v *view.View, b broker.Broker, o query.TotalsOptions) error {
	ctx := context.Background()
	want, err := query.SumTotals(ctx, b, o)
	if err != nil {
		return err
	}
	got, err := v.Totals(ctx, o)
	if err != nil {
		return err
	}
	if got.Position == "" {
		return errors.New("the view answers as of no position")
	}
	got.Position = ""
	if g, w := mustJSON(got), mustJSON(want); g != w {
		return fmt.Errorf("range [%s, %s): view %s\nscan %s", o.Since, o.Until, g, w)
	}
	return nil
}

// testViewTotals holds the view to the full scan: whole history and half-open ranges that
// cut through days (inside one day, across days, open on either side), split by region or
// not; a series' last level equals the totals; and stopped and rebuilt, the view answers
// the same.
func testViewTotals(t *testing.T, h Harness) {
	b, coef := basePipeline(t, h)
	lb := b.(view.Broker)
	replayHistory(t, b, "base", coef)
	times := []string{"2025-01-20T06:00:00Z", "2025-01-20T13:30:00Z", "2025-01-21T02:00:00.5Z", "2024-02-29T23:59:59Z"}
	raws := append(historyRaws(t), Signals()...)
	raws = append(raws, timedSignals(times...)...)
	publish(t, b, "base", append(Signals(), timedSignals(times...)...))
	waitDemand(t, b, "base", len(expected(t, coef, "base", raws)))

	dir := t.TempDir()
	v, stop := startView(t, lb, dir, "base")
	at := func(s string) time.Time { tt, _ := time.Parse(time.RFC3339Nano, s); return tt }
	ranges := [][2]time.Time{
		{},
		{at("2025-01-20T05:00:00Z"), at("2025-01-21T01:00:00Z")},
		{at("2025-01-20T07:00:00Z"), at("2025-01-20T14:00:00Z")},
		{at("2025-01-20T13:30:00Z"), at("2025-01-21T02:00:00.5Z")},
		{at("2023-03-14T12:00:00Z"), {}},
		{{}, at("2025-01-21T03:00:00Z")},
		{at("2024-02-10T00:00:00Z"), at("2025-01-20T13:30:00Z")},
		{at("2024-02-29T23:59:59Z"), at("2024-03-01T00:00:00Z")},
	}
	check := func(v *view.View) {
		t.Helper()
		for _, r := range ranges {
			for _, byRegion := range []bool{false, true} {
				o := query.TotalsOptions{Scenario: "base", Since: r[0], Until: r[1], ByRegion: byRegion}
				Eventually(t, 20*time.Second, "the view's totals equal to the scan's", func() error { return SameTotals(v, b, o) })
			}
		}
	}
	check(v)

	// The last level of a monthly series of grid power by region is the totals' grid rows.
	ser, err := v.Series(t.Context(), view.SeriesOptions{Scenario: "base", Layer: event.Grid, Quantity: "avg_mw", By: "region", Step: "month"})
	if err != nil {
		t.Fatal(err)
	}
	tot, err := v.Totals(t.Context(), query.TotalsOptions{Scenario: "base", ByRegion: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*totals.Exact{}
	for _, r := range tot.Rows {
		if r.Layer != event.Grid {
			continue
		}
		for _, q := range r.Quantities {
			if q.Name == "avg_mw" {
				if want[r.Region] == nil {
					want[r.Region] = &totals.Exact{}
				}
				want[r.Region].Add(q.Value)
			}
		}
	}
	if len(ser.Series) != len(want) || len(want) == 0 || ser.Unit != "MW avg" {
		t.Fatalf("series of %d regions in %q, totals of %d", len(ser.Series), ser.Unit, len(want))
	}
	for _, ks := range ser.Series {
		last := ks.Points[len(ks.Points)-1].Level
		if w := want[ks.Key].Value(); math.Abs(last-w) > 1e-9*math.Abs(w) {
			t.Errorf("grid %s: the series ends at %v MW, totals %v", ks.Key, last, w)
		}
	}

	// Stopped, opened again and rebuilt from the log, the view answers the same.
	stop()
	v = &view.View{B: lb, Dir: dir, Log: zerolog.Nop()}
	t.Cleanup(func() { _ = v.Close() })
	if err := v.Rebuild(t.Context(), "base"); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	rebuilt, err := v.Series(t.Context(), view.SeriesOptions{Scenario: "base", Layer: event.Grid, Quantity: "avg_mw", By: "region", Step: "month"})
	if err != nil {
		t.Fatal(err)
	}
	if mustJSON(rebuilt.Series) != mustJSON(ser.Series) {
		t.Errorf("the rebuilt view's series differs")
	}
	check(v)
}

// testViewSnapshotFeed subscribes snapshot-then-live while signals are being published: the
// snapshot plus every delta the feed delivers equals the layer's totals once publishing has
// ended, events counted exactly (no event in both the snapshot and the feed, none missing).
func testViewSnapshotFeed(t *testing.T, h Harness) {
	b, coef := basePipeline(t, h)
	lb := b.(view.Broker)
	v, _ := startView(t, lb, t.TempDir(), "base")
	var times []string
	for i := range 12 {
		times = append(times, time.Date(2025, 3, 1+i, i, 0, 0, 0, time.UTC).Format(time.RFC3339))
	}
	all := timedSignals(times...)
	per := len(Signals())
	publish(t, b, "base", all[:2*per])
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 2; i < len(times); i++ {
			publish(t, b, "base", all[i*per:(i+1)*per])
		}
	}()
	type client struct {
		snap *query.Totals
		mu   sync.Mutex
		sum  *totals.Sum
	}
	var clients []*client
	for range 3 { // clients subscribe while the publisher runs
		snap, f, err := v.Subscribe(t.Context(), "base", event.Chips, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		c := &client{snap: snap, sum: totals.New(true)}
		clients = append(clients, c)
		go func() {
			for {
				d, err := f.Next(context.Background())
				if err != nil {
					return
				}
				if ev, p, err := event.Decode(d.Message().Data); err == nil {
					c.mu.Lock()
					c.sum.AddStored(d.Message().Subject, ev, p)
					c.mu.Unlock()
				}
			}
		}()
	}
	<-done
	waitDemand(t, b, "base", len(expected(t, coef, "base", all)))
	want, err := query.SumTotals(t.Context(), b, query.TotalsOptions{Scenario: "base", ByRegion: true})
	if err != nil {
		t.Fatal(err)
	}
	wantRows := map[string]totals.Row{}
	for _, r := range want.Rows {
		if r.Layer == event.Chips && !strings.HasPrefix(r.Key, totals.Injected+":") {
			wantRows[r.Region+"/"+r.Key] = r
		}
	}
	for i, c := range clients {
		Eventually(t, 20*time.Second, fmt.Sprintf("client %d's snapshot plus deltas equal to the totals", i), func() error {
			c.mu.Lock()
			deltas := c.sum.Rows()
			c.mu.Unlock()
			got := map[string]totals.Row{}
			for _, rs := range [][]totals.Row{c.snap.Rows, deltas} {
				for _, r := range rs {
					k := r.Region + "/" + r.Key
					g, ok := got[k]
					if !ok {
						got[k] = r
						continue
					}
					g.Events += r.Events
					g.Quantities = append([]event.Quantity(nil), g.Quantities...)
					for j := range g.Quantities {
						g.Quantities[j].Value += r.Quantities[j].Value
					}
					got[k] = g
				}
			}
			if len(got) != len(wantRows) {
				return fmt.Errorf("%d rows, want %d", len(got), len(wantRows))
			}
			for k, w := range wantRows {
				g := got[k]
				if g.Events != w.Events {
					return fmt.Errorf("%s: %d events (snapshot %s), want %d", k, g.Events, c.snap.Position, w.Events)
				}
				for j, q := range w.Quantities {
					if math.Abs(g.Quantities[j].Value-q.Value) > 1e-9*math.Abs(q.Value) {
						return fmt.Errorf("%s %s: %v, want %v", k, q.Name, g.Quantities[j].Value, q.Value)
					}
				}
			}
			return nil
		})
	}
}
