package lineage_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/lineage"
	"github.com/layercake/cascade/internal/view"
	"github.com/layercake/cascade/producers"
)

// BenchmarkTrace measures one trace of a signal's tree through run's index and through a
// scan, in a scenario of CASCADE_TRACE_BENCH_SIGNALS generated signals (default 1,000) run
// through the pipeline on an in-process NATS server:
//
//	go test ./internal/lineage/ -run '^$' -bench Trace -benchtime 50x
func BenchmarkTrace(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("CASCADE_TRACE_BENCH_SIGNALS")); err == nil && v > 0 {
		n = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nb, _ := conformance.NATS(b)
	const s = "bench"
	if err := consumers.BindScenario(ctx, nb, s, coefficients.Default(), broker.ScenarioConfig{}); err != nil {
		b.Fatal(err)
	}
	quiet := zerolog.New(zerolog.NewTestWriter(b)).Level(zerolog.WarnLevel)
	var wg sync.WaitGroup
	defer wg.Wait()
	r := consumers.New(nb, quiet, consumers.Options{Batch: 256})
	wg.Go(func() { _ = r.Serve(ctx, event.ConsumerLayers, 200*time.Millisecond) })

	g := producers.NewGenerator(1, "bench-", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Minute)
	ids := make([]string, 0, n)
	var msgs []broker.Message
	for range n {
		ev, err := producers.Prepare(g.Next(), s, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		m, err := producers.Message(ev)
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, ev.ID)
		msgs = append(msgs, m)
	}
	if err := nb.Publish(ctx, msgs); err != nil {
		b.Fatal(err)
	}
	ix := &view.View{B: nb, Dir: b.TempDir(), Log: quiet}
	defer ix.Close()
	wg.Go(func() { _ = ix.Follow(ctx, s) })
	// Wait for the pipeline and the index: the last signal's tree the same both ways.
	last := ids[len(ids)-1]
	for deadline := time.Now().Add(time.Minute); ; {
		lag := uint64(0)
		for _, l := range event.ConsumerLayers {
			v, err := nb.Lag(ctx, s, l)
			if err != nil {
				b.Fatal(err)
			}
			lag += v
		}
		if lag == 0 {
			a, err1 := ix.Trace(ctx, s, last)
			c, err2 := lineage.ScanTrace(ctx, nb, s, last)
			if err1 == nil && err2 == nil && equal(a, c) && len(a.Root.Children) > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("the pipeline and the index did not catch up (lag %d)", lag)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var events uint64
	_ = broker.Each(ctx, nb, broker.FeedOptions{Selector: broker.Selector{Scenario: s}, FromStart: true}, func(broker.Delivery) error { events++; return nil })
	b.Logf("%d signals, %d stored events", n, events)

	for _, c := range []struct {
		name  string
		trace func(id string) (*lineage.Answer, error)
	}{
		{"index", func(id string) (*lineage.Answer, error) { return ix.Trace(ctx, s, id) }},
		{"scan", func(id string) (*lineage.Answer, error) { return lineage.ScanTrace(ctx, nb, s, id) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if _, err := c.trace(ids[(i*7919)%len(ids)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func equal(a, b *lineage.Answer) bool {
	x, _ := json.Marshal(a.Root)
	y, _ := json.Marshal(b.Root)
	return string(x) == string(y)
}
