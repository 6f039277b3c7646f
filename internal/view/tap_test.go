package view_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/tree"
	"github.com/layercake/cascade/internal/view"
	"github.com/layercake/cascade/producers"
)

// On NATS the view of run's stages is fed by them instead of a second read of the log: over
// rounds of signals it reads under a tenth of what it applies from the log, yet its totals are
// the log's, events stored by another process (that no stage of this one handed it)
// included, and so after a stop and a restart with the log grown meanwhile. Once it has
// applied the whole log it answers HeldAt as of now.
func TestTappedFollow(t *testing.T) {
	t.Parallel()
	b, _ := conformance.NATS(t)
	coef := coefficients.Default()
	if err := consumers.BindScenario(t.Context(), b, "base", coef, broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	g := producers.NewGenerator(5, "tap-", time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC), 17*time.Minute)
	var gen sync.Mutex
	publish := func(n int) {
		items := make([]producers.Item, n)
		gen.Lock()
		for i := range items {
			items[i] = producers.Item{Line: i + 1, Raw: g.Next()}
		}
		gen.Unlock()
		if _, err := (&producers.Publisher{Broker: b, Scenario: "base"}).Publish(t.Context(), items); err != nil {
			t.Error(err) // also from the publishing goroutine below
		}
	}
	// start runs the stages and the view as run does, until the returned stop.
	start := func() (*view.View, func()) {
		v := &view.View{B: b, Dir: dir, Log: zerolog.Nop()}
		o := consumers.Options{Batch: 64, Stages: consumers.Chained}
		v.Attach(&o)
		ctx, cancel := context.WithCancel(context.Background())
		r := consumers.New(b, zerolog.Nop(), o)
		var wg sync.WaitGroup
		wg.Go(func() { _ = r.Serve(ctx, event.ConsumerLayers, 100*time.Millisecond) })
		return v, func() { cancel(); wg.Wait(); _ = v.Close() }
	}
	same := func(v *view.View) func() error {
		return func() error {
			if lag, err := b.StageLag(t.Context(), "base", event.Chain); err != nil || lag > 0 {
				return fmt.Errorf("stage lag %d %v", lag, err)
			}
			// The view has applied the log's last message (cheap to ask) before the log is
			// summed (not).
			last, err := b.LastSeq(t.Context(), "base")
			if err != nil {
				return err
			}
			if pos, err := v.Position("base"); err != nil || pos != fmt.Sprint(last) {
				return fmt.Errorf("view at %q of %d (%v)", pos, last, err)
			}
			return conformance.SameTotals(v, b, query.TotalsOptions{Scenario: "base", ByRegion: true})
		}
	}

	v, stop := start()
	const rounds = 8
	var tapped0, read0 int64 // after the first round: the stages may start before the view is there to take
	for i := range rounds {
		publish(40)
		conformance.Eventually(t, 30*time.Second, "the view's totals equal to the log's", same(v))
		if i == 0 {
			tapped0, read0 = v.Sources()
		}
	}
	// Every message of the log was taken in once; once the view was following, nearly all
	// from the stages.
	tapped, read := v.Sources()
	all, err := query.SumTotals(t.Context(), b, query.TotalsOptions{Scenario: "base"})
	if err != nil {
		t.Fatal(err)
	}
	if tapped+read < int64(all.Events) || (read-read0)*10 > tapped-tapped0 {
		t.Errorf("the view took in %d messages from the stages and read %d from the log (of %d events), %d and %d after the first round; want nearly all from the stages", tapped, read, all.Events, tapped-tapped0, read-read0)
	}
	t.Logf("%d messages from the stages, %d read from the log (%d events; %d and %d after the first round)", tapped, read, all.Events, tapped-tapped0, read-read0)

	// Demand another process stored: no stage here read or published it.
	gen.Lock()
	raw := g.Next()
	gen.Unlock()
	ev, err := producers.Prepare(raw, "base", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, err := event.DecodePayload(ev.Type, ev.Data)
	if err != nil {
		t.Fatal(err)
	}
	root, err := tree.Expand(t.Context(), coef, ev, p)
	if err != nil {
		t.Fatal(err)
	}
	foreign := root.Children[0]
	data, err := foreign.Event.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	err = b.Publish(t.Context(), []broker.Message{{
		Subject: event.DemandSubject("base", event.LayerOf(foreign.Event.Type), foreign.Event.Subject), ID: foreign.Event.ID, Data: data,
	}})
	if err != nil {
		t.Fatal(err)
	}
	conformance.Eventually(t, 30*time.Second, "the view to hold what another process stored", same(v))
	pos, err := v.HeldAt(t.Context(), "base", []string{foreign.Event.ID}, time.Now())
	if err != nil || pos[0] == "" {
		t.Errorf("HeldAt as of now, of what another process stored: %q, %v", pos, err)
	}

	// While signals keep coming, a stage's question as of now (a redelivery's) is answered:
	// the view catches up with where the log stood when it asked, not with a log at rest.
	busy, quiet := context.WithCancel(t.Context())
	var pub sync.WaitGroup
	pub.Go(func() {
		for busy.Err() == nil {
			publish(10)
		}
	})
	for range 5 {
		if _, err := v.HeldAt(t.Context(), "base", []string{foreign.Event.ID}, time.Now()); err != nil {
			t.Errorf("HeldAt as of now while signals come in: %v", err)
		}
	}
	quiet()
	pub.Wait()
	conformance.Eventually(t, 30*time.Second, "the view's totals equal to the log's after the stream", same(v))

	stop()
	publish(60) // the log grows while nothing follows it
	v, stop = start()
	defer stop()
	conformance.Eventually(t, 30*time.Second, "the restarted view's totals equal to the log's", same(v))
}

// A message handed over twice (per-layer stages hand a flight's outputs when they publish
// them and again when the next stage fetches them) is applied once, and what nobody hands
// over afterwards is still read from the log.
func TestTapHandedTwice(t *testing.T) {
	t.Parallel()
	b, _ := conformance.NATS(t)
	if err := b.EnsureScenario(t.Context(), "base", broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	msgs := signalMessages(t, 9, "twice-", 4)
	v := &view.View{B: b, Dir: t.TempDir(), Log: zerolog.Nop(), Tapped: true}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait(); _ = v.Close() }()
	wg.Go(func() { _ = v.Follow(ctx, "base") })
	at := func(want string) func() error {
		return func() error {
			if pos, err := v.Position("base"); err != nil || pos != want {
				return fmt.Errorf("at %q, want %s (%v)", pos, want, err)
			}
			return nil
		}
	}
	// Current as of now: it follows, and takes what it is handed.
	if _, err := v.HeldAt(t.Context(), "base", []string{"none"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Stored at 1 to 3, handed over out of order and then all again: applied once each.
	if err := b.Publish(t.Context(), msgs[:3]); err != nil {
		t.Fatal(err)
	}
	v.Tap("base", msgs[2:3], []uint64{3})
	v.Tap("base", msgs[:3], []uint64{1, 2, 3})
	conformance.Eventually(t, 10*time.Second, "the view to apply what it was handed", at("3"))
	// Stored at 4 and never handed over: the view reads it from the log.
	if err := b.Publish(t.Context(), msgs[3:]); err != nil {
		t.Fatal(err)
	}
	conformance.Eventually(t, 10*time.Second, "the view to read what nobody handed over", at("4"))
	if err := conformance.SameTotals(v, b, query.TotalsOptions{Scenario: "base", ByRegion: true}); err != nil {
		t.Error(err)
	}
}

// What is handed over past a gap is applied at once, ids and sums committed, while the
// cursor stays before the gap; a restart then reads the log from the cursor, and what was
// applied past the gap counts once.
func TestTapPastAGap(t *testing.T) {
	t.Parallel()
	b, _ := conformance.NATS(t)
	if err := b.EnsureScenario(t.Context(), "base", broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	msgs := signalMessages(t, 11, "gap-", 4)
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	dir := t.TempDir()
	follow := func(gapWait time.Duration) (*view.View, func()) {
		v := &view.View{B: b, Dir: dir, Log: zerolog.Nop(), Tapped: true, FlushDelay: 5 * time.Millisecond, GapWait: gapWait}
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { _ = v.Follow(ctx, "base") })
		if _, err := v.HeldAt(t.Context(), "base", []string{"none"}, time.Now()); err != nil {
			t.Fatal(err)
		}
		return v, func() { cancel(); wg.Wait(); _ = v.Close() }
	}
	// A view that would wait an hour for the gap.
	v, stop := follow(time.Hour)
	if err := b.Publish(t.Context(), msgs); err != nil { // at 1 to 4
		t.Fatal(err)
	}
	v.Tap("base", msgs[1:], []uint64{2, 3, 4})
	conformance.Eventually(t, 10*time.Second, "what was handed past the gap committed", func() error {
		pos, err := v.HeldAt(t.Context(), "base", ids, time.Time{})
		if err != nil {
			return err
		}
		if pos[0] != "" || pos[1] != "2" || pos[2] != "3" || pos[3] != "4" {
			return fmt.Errorf("held at %q, want the last three only", pos)
		}
		return nil
	})
	if pos, err := v.Position("base"); err != nil || (pos != "" && pos != "0") {
		t.Errorf("cursor %q (%v), want before the gap", pos, err)
	}
	tot, err := v.Totals(t.Context(), query.TotalsOptions{Scenario: "base"})
	if err != nil || tot.Events != 3 {
		t.Errorf("%d events counted (%v), want the 3 handed over", tot.Events, err)
	}
	stop()

	v, stop = follow(0)
	defer stop()
	conformance.Eventually(t, 10*time.Second, "the restarted view to read the gap", func() error {
		if pos, err := v.Position("base"); err != nil || pos != "4" {
			return fmt.Errorf("at %q, want 4 (%v)", pos, err)
		}
		return nil
	})
	if err := conformance.SameTotals(v, b, query.TotalsOptions{Scenario: "base", ByRegion: true}); err != nil {
		t.Error(err)
	}
	if tot, err := v.Totals(t.Context(), query.TotalsOptions{Scenario: "base"}); err != nil || tot.Events != 4 {
		t.Errorf("%d events counted (%v), want 4, each once", tot.Events, err)
	}
}

// signalMessages is n generated signals of scenario base (seed and id prefix as given), as
// messages ready to publish.
func signalMessages(t *testing.T, seed uint64, prefix string, n int) []broker.Message {
	t.Helper()
	g := producers.NewGenerator(seed, prefix, time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC), time.Hour)
	msgs := make([]broker.Message, n)
	for i := range msgs {
		ev, err := producers.Prepare(g.Next(), "base", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if msgs[i], err = producers.Message(ev); err != nil {
			t.Fatal(err)
		}
	}
	return msgs
}

// A subscription taken while the view has applied events past a gap holds every event once:
// its snapshot counts those and what lies in the gap, and its feed starts after them.
func TestSubscribePastAGap(t *testing.T) {
	t.Parallel()
	b, _ := conformance.NATS(t)
	if err := b.EnsureScenario(t.Context(), "base", broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	// Three demand events of one layer: the first children of generated signals.
	coef := coefficients.Default()
	var layer event.Layer
	var msgs []broker.Message
	for _, sig := range signalMessages(t, 13, "sub-", 12) {
		ev, p, err := event.Decode(sig.Data)
		if err != nil {
			t.Fatal(err)
		}
		root, err := tree.Expand(t.Context(), coef, ev, p)
		if err != nil {
			t.Fatal(err)
		}
		c := root.Children[0].Event
		if layer == "" {
			layer = event.LayerOf(c.Type)
		}
		data, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if event.LayerOf(c.Type) == layer && len(msgs) < 3 {
			msgs = append(msgs, broker.Message{Subject: event.DemandSubject("base", layer, c.Subject), ID: c.ID, Data: data})
		}
	}
	if len(msgs) < 3 {
		t.Fatalf("%d demand events of layer %s generated, want 3", len(msgs), layer)
	}
	v := &view.View{B: b, Dir: t.TempDir(), Log: zerolog.Nop(), Tapped: true, FlushDelay: 5 * time.Millisecond, GapWait: time.Hour}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait(); _ = v.Close() }()
	wg.Go(func() { _ = v.Follow(ctx, "base") })
	if _, err := v.HeldAt(t.Context(), "base", []string{"none"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(t.Context(), msgs[:2]); err != nil { // at 1 and 2
		t.Fatal(err)
	}
	v.Tap("base", msgs[1:2], []uint64{2}) // 1 not handed over (yet)
	conformance.Eventually(t, 10*time.Second, "2 committed past the gap", func() error {
		pos, err := v.HeldAt(t.Context(), "base", []string{msgs[1].ID}, time.Time{})
		if err != nil || pos[0] == "" {
			return fmt.Errorf("not held (%v)", err)
		}
		return nil
	})
	snap, f, err := v.Subscribe(t.Context(), "base", layer, "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if snap.Events != 2 || snap.Position != "2" {
		t.Errorf("snapshot of %d events as of %q, want both stored events as of 2", snap.Events, snap.Position)
	}
	if err := b.Publish(t.Context(), msgs[2:]); err != nil { // at 3
		t.Fatal(err)
	}
	d, err := f.Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d.Message().ID != msgs[2].ID {
		t.Errorf("the feed after the snapshot delivered %s first, want the event stored after it (%s)", d.Message().ID, msgs[2].ID)
	}
}
