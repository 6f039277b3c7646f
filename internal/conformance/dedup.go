package conformance

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/metrics"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/view"
	"github.com/layercake/cascade/producers"
)

// serveOpts is serve with the stages asking the id set ids and counting into m.
func serveOpts(t *testing.T, b broker.Broker, layers []event.Layer, ids consumers.IDSet, m *metrics.Metrics) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	r := consumers.New(b, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), consumers.Options{
		Batch: 64, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, DrainTimeout: 2 * time.Second,
		IDs: ids, EveryInput: true, Metrics: m,
	})
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.Serve(ctx, layers, 200*time.Millisecond) })
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return stop
}

// testCrashAfterWindow: the chips layer dies between publishing outputs and committing its
// inputs, and comes back after three de-dup windows, when the broker no longer recognises
// those outputs; then the producer sends every signal again. With the stages asking the
// view's id set, nothing is stored twice: each derived id is in the stream once, the stages
// published nothing for the signals sent again and counted them as duplicates, and the
// totals are those of the signals sent once.
func testCrashAfterWindow(t *testing.T, h Harness) {
	connect := h.Fresh(t)
	b := connect(t)
	vb, ok := b.(view.Broker)
	if !ok {
		t.Skip("the broker cannot fetch by position: no view")
	}
	coef := coefficients.Default()
	s := "base"
	const window = time.Second
	// A stage waits up to half the ack wait for the view to be current before it publishes a
	// redelivery; under -race on a loaded machine the view may lag a second or more, so the
	// ack wait here is longer than the harness's (what the wait buys is the test's subject).
	ackWait := max(h.AckWait, 6*time.Second)
	if err := routerBind(t, b, s, coef, broker.ScenarioConfig{AckWait: ackWait, DedupWindow: window}); err != nil {
		t.Fatal(err)
	}
	v, _ := startView(t, vb, t.TempDir(), s)
	m := metrics.New(prometheus.NewRegistry())
	g := producers.NewGenerator(7, "dedup-", signalTime, time.Minute)
	var raws []string
	for range 200 {
		raws = append(raws, string(g.Next()))
	}
	want := expected(t, coef, s, raws)
	healthy := []event.Layer{event.Application, event.Model, event.Infrastructure, event.Energy}
	serveOpts(t, b, healthy, v, m)
	victim := connect(t)
	dying := &dyingBroker{Broker: victim, n: 3, kill: func() { h.Kill(victim) }}
	stopVictim := serveOpts(t, dying, []event.Layer{event.Chips}, v, m)
	publish(t, b, s, raws)
	Eventually(t, 20*time.Second, "the chips layer to die", func() error {
		if !dying.dead.Load() {
			return fmt.Errorf("%d more publishes before the chips layer dies", atomic.LoadInt32(&dying.n))
		}
		return nil
	})
	stopVictim()
	died := time.Now()
	Eventually(t, 3*window+5*time.Second, "three de-dup windows to pass", func() error {
		if d := time.Since(died); d < 3*window {
			return fmt.Errorf("%s since the crash", d)
		}
		return nil
	})
	serveOpts(t, connect(t), []event.Layer{event.Chips}, v, m)
	waitDemand(t, b, s, len(want))
	settled := func() error {
		for _, l := range event.ConsumerLayers {
			if err := lagIs(t.Context(), b, s, l, 0)(); err != nil {
				return err
			}
		}
		return nil
	}
	Eventually(t, ackWait*3+10*time.Second, "redeliveries to settle", settled)
	chips := event.LayerStage(event.Chips).String()
	if n := testutil.ToFloat64(m.Duplicates.WithLabelValues(s, chips, "output")); n == 0 {
		t.Errorf("the restarted chips layer left no redelivered output unpublished")
	}
	out := func() (n float64) {
		for _, l := range event.ConsumerLayers {
			n += testutil.ToFloat64(m.Out.WithLabelValues(s, event.LayerStage(l).String()))
		}
		return n
	}
	dups := func() (n float64) {
		for _, l := range event.ConsumerLayers {
			n += testutil.ToFloat64(m.Duplicates.WithLabelValues(s, event.LayerStage(l).String(), "input"))
		}
		return n
	}
	// (On Kafka a publish retried after a lost acknowledgement stores a copy, which the
	// stage reading it counts too.)
	before, dupsBefore := out(), dups()

	// The producer retries every signal, long after the window.
	publish(t, b, s, raws)
	Eventually(t, 20*time.Second, "the signals sent again to be counted as duplicates", func() error {
		if n := dups() - dupsBefore; int(n) != len(raws) {
			return fmt.Errorf("%g of %d duplicate inputs", n, len(raws))
		}
		return settled()
	})
	if after := out(); after != before {
		t.Errorf("the stages published %g outputs for signals sent again, want none", after-before)
	}

	// Every derived id is stored once: on NATS the stream itself (the window long passed),
	// on Kafka what a feed reads.
	seen := map[string]int{}
	for _, m := range readAll(t, b, broker.Selector{Scenario: s, Kinds: []event.Kind{event.KindDemand}}) {
		if m.ev == nil {
			t.Fatalf("undecodable %s", m.data)
		}
		seen[m.ev.ID]++
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s stored %d times", id, n)
		}
		if _, ok := want[id]; !ok {
			t.Errorf("unexpected %s", id)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("%d distinct derived events stored, want %d", len(seen), len(want))
	}
	// The view's totals are the full scan's, which count each id once.
	scan, err := query.SumTotals(t.Context(), b, query.TotalsOptions{Scenario: s})
	if err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, "the view's totals to equal the scan's", func() error {
		got, err := v.Totals(t.Context(), query.TotalsOptions{Scenario: s})
		if err != nil {
			return err
		}
		if got.Events != scan.Events || !reflect.DeepEqual(got.Rows, scan.Rows) {
			return fmt.Errorf("view: %d events, scan: %d", got.Events, scan.Events)
		}
		return nil
	})
}
