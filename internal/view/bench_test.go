package view

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/tree"
	"github.com/layercake/cascade/producers"
)

// stored is a message as the broker hands it out, for applying synthetic history without a
// broker in between.
type stored struct {
	m   broker.Message
	seq uint64
}

func (d *stored) Message() *broker.Message { return &d.m }
func (d *stored) Seq() uint64              { return d.seq }
func (d *stored) Cursor() string           { return strconv.FormatUint(d.seq, 10) }
func (d *stored) Time() time.Time          { return time.Time{} }
func (d *stored) Deliveries() int          { return 1 }

// synthetic applies n generated signals, spread evenly over 2022-11-30 to 2025-12-31 like the
// bundled history, and every event the pipeline derives from them (tree.Expand), to the view
// in dir through the view's own apply and commit; it returns the events applied.
func synthetic(tb testing.TB, dir string, n int) int {
	tb.Helper()
	v := &View{Dir: dir, Log: zerolog.Nop()}
	defer func() { _ = v.Close() }()
	start, end := time.Date(2022, 11, 30, 0, 0, 0, 0, time.UTC), time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC)
	g := producers.NewGenerator(11, "syn-", start, end.Sub(start)/time.Duration(n))
	var seq uint64
	err := v.with(func(db *pebble.DB) error {
		a, _, err := newApplier(db, "base")
		if err != nil {
			return err
		}
		defer a.close()
		for _, msgs := range expand(tb, g, start, n) {
			for _, m := range msgs {
				seq++
				if err := a.apply(&stored{m: read(m), seq: seq}); err != nil {
					return err
				}
			}
			if a.events >= flushBatch {
				if err := a.commit(); err != nil {
					return err
				}
			}
		}
		return a.commit()
	})
	if err != nil {
		tb.Fatal(err)
	}
	return int(seq)
}

// expand generates n signals from g and what the pipeline derives from each (tree.Expand):
// each tree's messages in the order a chained stage publishes them (a parent before its
// children), decoded and marked as the stages of the process hand them to the view.
func expand(tb testing.TB, g *producers.Generator, now time.Time, n int) [][]broker.Message {
	tb.Helper()
	coef := coefficients.Default()
	out := make([][]broker.Message, 0, n)
	for range n {
		ev, err := producers.Prepare(g.Next(), "base", now)
		if err != nil {
			tb.Fatal(err)
		}
		p, err := event.DecodePayload(ev.Type, ev.Data)
		if err != nil {
			tb.Fatal(err)
		}
		root, err := tree.Expand(context.Background(), coef, ev, p)
		if err != nil {
			tb.Fatal(err)
		}
		var msgs []broker.Message
		var walk func(nd *tree.Node, subject string)
		walk = func(nd *tree.Node, subject string) {
			data, err := nd.Event.Marshal()
			if err != nil {
				tb.Fatal(err)
			}
			msgs = append(msgs, broker.Message{Subject: subject, ID: nd.Event.ID, Data: data, Event: nd.Event, Payload: nd.Payload, Derived: nd != root})
			for _, c := range nd.Children {
				walk(c, event.DemandSubject("base", event.LayerOf(c.Event.Type), c.Event.Subject))
			}
		}
		walk(root, event.SignalSubject("base", event.InputLayer(ev.Type), ev.Subject))
		out = append(out, msgs)
	}
	return out
}

// read is m as a view reads it from the log: no decoded event, nothing marked.
func read(m broker.Message) broker.Message {
	return broker.Message{Subject: m.Subject, ID: m.ID, Data: m.Data}
}

// BenchmarkTotals answers totals from views holding 10k and 1M signals' history (9 events
// each): the whole history and a range that cuts an hour at both ends. CASCADE_BENCH_VIEW_DIR
// keeps the built views between runs (building 1M signals takes minutes).
func BenchmarkTotals(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("signals=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			if keep := os.Getenv("CASCADE_BENCH_VIEW_DIR"); keep != "" {
				dir = fmt.Sprintf("%s/%d", keep, n)
			}
			if _, err := os.Stat(dir + "/view"); err != nil {
				t0 := time.Now()
				events := 0
				if n <= 10_000 {
					events = synthetic(b, dir, n)
				} else {
					events = replicated(b, dir, 10_000, n/10_000, cutHours)
				}
				b.Logf("%d signals: %d events applied in %s", n, events, time.Since(t0).Round(time.Millisecond))
			}
			v := &View{Dir: dir, Log: zerolog.Nop()}
			defer func() { _ = v.Close() }()
			cut := query.TotalsOptions{Scenario: "base", ByRegion: true, Since: cutSince, Until: cutUntil}
			for _, q := range []struct {
				name string
				o    query.TotalsOptions
			}{{"whole", query.TotalsOptions{Scenario: "base", ByRegion: true}}, {"cut", cut}} {
				b.Run(q.name, func(b *testing.B) {
					for b.Loop() {
						var t *query.Totals
						err := v.with(func(db *pebble.DB) error {
							snap := db.NewSnapshot()
							defer snap.Close()
							rows, events, err := sumRows(snap, q.o, nil)
							t = q.o.Answer(events, rows)
							return err
						})
						if err != nil || len(t.Rows) == 0 {
							b.Fatalf("%v, %d rows", err, len(t.Rows))
						}
					}
				})
			}
		})
	}
}

// The range BenchmarkTotals cuts: through a day at each end.
var (
	cutSince = time.Date(2023, 3, 14, 12, 0, 0, 0, time.UTC)
	cutUntil = time.Date(2025, 8, 17, 6, 30, 0, 0, time.UTC)
	cutHours = []time.Time{time.Date(2023, 3, 14, 12, 0, 0, 0, time.UTC), time.Date(2025, 8, 17, 6, 0, 0, 0, time.UTC)}
)

// replicated writes the buckets a view holds after applying copies × n signals: synthetic's
// n signals and their derived events, each copy shifted in time so that all of them spread
// evenly over the same span, summed into year, month and day rows as apply sums them, with
// the events' own records written for the hours in keep only (a range query reads no
// others). It is synthetic's view at copies times the history without applying every event
// through Pebble; TestReplicatedIsApplied holds the two to the same answers.
func replicated(tb testing.TB, dir string, n, copies int, keep []time.Time) int {
	tb.Helper()
	one := tb.(interface{ TempDir() string }).TempDir()
	synthetic(tb, one, n)
	src := &View{Dir: one, Log: zerolog.Nop()}
	defer func() { _ = src.Close() }()
	type contrib struct {
		at time.Time
		id rowID
		a  *acc
	}
	var all []contrib
	err := src.with(func(db *pebble.DB) error {
		return each(db, "base", time.Time{}, time.Time{}, events, func(at time.Time, id rowID, a *acc) error {
			all = append(all, contrib{at, id, a})
			return nil
		})
	})
	if err != nil {
		tb.Fatal(err)
	}
	start, end := time.Date(2022, 11, 30, 0, 0, 0, 0, time.UTC), time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC)
	shift := end.Sub(start) / time.Duration(n*copies)
	buckets := map[string]*acc{}
	dst := &View{Dir: dir, Log: zerolog.Nop()}
	defer func() { _ = dst.Close() }()
	applied := 0
	err = dst.with(func(db *pebble.DB) error {
		b := db.NewBatch()
		defer func() { _ = b.Close() }()
		for k := range copies {
			for i, c := range all {
				at := c.at.Add(time.Duration(k) * shift)
				for g := range events {
					bk := bucketKey("base", g, g.floor(at).Unix(), c.id)
					if buckets[bk] == nil {
						buckets[bk] = &acc{}
					}
					buckets[bk].merge(c.a)
				}
				for _, d := range keep {
					if hour.floor(at).Equal(d) {
						ch := newChunk(d, fmt.Sprintf("r%d-%d", k, i))
						qs := make([]event.Quantity, len(c.a.qs))
						for j, q := range c.a.qs {
							qs[j] = event.Quantity{Name: q.name, Unit: q.unit, Value: q.sum.Value()}
						}
						ch.add(at, c.id, qs)
						if err := b.Set(chunkKey("base", d.Unix(), ch.first), ch.encode(), nil); err != nil {
							return err
						}
					}
				}
				applied++
			}
		}
		for k, a := range buckets {
			if err := b.Set([]byte(k), a.encode(), nil); err != nil {
				return err
			}
		}
		if err := b.Set(posKey("base"), []byte(strconv.Itoa(applied)), nil); err != nil {
			return err
		}
		return b.Commit(pebble.Sync)
	})
	if err != nil {
		tb.Fatal(err)
	}
	return applied
}

// replicated with one copy is the applied view: the same totals, whole and cut.
func TestReplicatedIsApplied(t *testing.T) {
	t.Parallel()
	applied, copied := t.TempDir(), t.TempDir()
	synthetic(t, applied, 300)
	replicated(t, copied, 300, 1, cutHours)
	for _, o := range []query.TotalsOptions{{Scenario: "base", ByRegion: true}, {Scenario: "base", Since: cutSince, Until: cutUntil}} {
		var answers []string
		for _, dir := range []string{applied, copied} {
			v := &View{Dir: dir, Log: zerolog.Nop()}
			err := v.with(func(db *pebble.DB) error {
				rows, n, err := sumRows(db, o, nil)
				answers = append(answers, fmt.Sprint(n, rows))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			_ = v.Close()
		}
		if answers[0] != answers[1] || len(answers[0]) < 100 {
			t.Fatalf("applied %s\nreplicated %s", answers[0], answers[1])
		}
	}
}

// BenchmarkApply is the view's CPU per stored event: the id lookup, the event's record, its
// row's hour and the roll-up and commit (one per flushBatch events), over a generated history
// and its derived events (ns/op is per event), as read from the log (decoded here) and as the
// stages of the process hand it over (decoded already; what they derived, so marked).
func BenchmarkApply(b *testing.B) {
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var fromLog, handed []*stored
	for _, msgs := range expand(b, producers.NewGenerator(3, "apply-", start, time.Minute), start, 10_000) {
		for _, m := range msgs {
			seq := uint64(len(handed) + 1)
			fromLog = append(fromLog, &stored{m: read(m), seq: seq})
			handed = append(handed, &stored{m: m, seq: seq})
		}
	}
	for name, ds := range map[string][]*stored{"read": fromLog, "handed": handed} {
		b.Run(name, func(b *testing.B) {
			v := &View{Dir: b.TempDir(), Log: zerolog.Nop()}
			defer func() { _ = v.Close() }()
			err := v.with(func(db *pebble.DB) error {
				a, _, err := newApplier(db, "base")
				if err != nil {
					return err
				}
				defer a.close()
				i := 0
				for b.Loop() {
					if err := a.apply(ds[i%len(ds)]); err != nil {
						return err
					}
					if i++; a.events >= flushBatch {
						if err := a.commit(); err != nil {
							return err
						}
					}
				}
				return a.commit()
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}
