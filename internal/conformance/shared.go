package conformance

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/producers"
)

// countingBroker counts the messages a process published: which of two workers did the work.
type countingBroker struct {
	broker.Broker
	n atomic.Int64
}

func (c *countingBroker) Publish(ctx context.Context, msgs []broker.Message) error {
	err := c.Broker.Publish(ctx, msgs)
	if err == nil {
		c.n.Add(int64(len(msgs)))
	}
	return err
}

// PublishAsync counts as Publish does, once the broker acknowledged.
func (c *countingBroker) PublishAsync(ctx context.Context, msgs []broker.Message) broker.Publication {
	p, out := c.Broker.PublishAsync(ctx, msgs), broker.NewPending()
	go func() {
		err := broker.Wait(ctx, p)
		if err == nil {
			c.n.Add(int64(len(msgs)))
		}
		out.Settle(err)
	}()
	return out
}

// Two processes running the same layer share its work, and every event is processed once.
func testSharedLayer(t *testing.T, h Harness) {
	connect := h.Fresh(t)
	b := connect(t)
	coef := coefficients.Default()
	if err := routerBind(t, b, "base", coef, broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	serve(t, b, []event.Layer{event.Application, event.Model, event.Chips, event.Energy}, consumers.PerLayer)
	workers := []*countingBroker{{Broker: connect(t)}, {Broker: connect(t)}}
	for _, w := range workers {
		serve(t, w, []event.Layer{event.Infrastructure}, consumers.PerLayer)
	}
	// Signals go in rounds until both have done some of the work (a worker whose first fetch
	// is late, on a busy machine, can find the first round taken): a layer whose work is not
	// shared still fails after the last round.
	g := producers.NewGenerator(7, "shared-", signalTime, time.Minute)
	var raws []string
	var want map[string]*event.Event
	var got []stored
	for round := 0; round < 8 && (round == 0 || workers[0].n.Load() == 0 || workers[1].n.Load() == 0); round++ {
		var more []string
		for range 200 {
			more = append(more, string(g.Next()))
		}
		publish(t, b, "base", more)
		raws = append(raws, more...)
		want = expected(t, coef, "base", raws)
		got = waitDemand(t, b, "base", len(want))
	}
	// Stored once where the broker de-duplicates; elsewhere a copy may be stored (a
	// rebalance hands a partition over mid-batch) and a feed delivers each id once.
	twice := "stored twice"
	if b.Features().DedupWindow == 0 {
		twice = "delivered twice by a feed"
	}
	ids := map[string]bool{}
	for _, m := range got {
		if ids[m.ev.ID] {
			t.Fatalf("%s %s", m.ev.ID, twice)
		}
		ids[m.ev.ID] = true
	}
	if len(ids) != len(want) {
		t.Fatalf("%d distinct events, want %d", len(ids), len(want))
	}
	if workers[0].n.Load() == 0 || workers[1].n.Load() == 0 {
		t.Fatalf("the infrastructure layer's work was not shared: %d and %d outputs", workers[0].n.Load(), workers[1].n.Load())
	}
}

// Reading a scenario to its end (totals, dlq ls) ends even while the pipeline keeps writing.
func testReadToEndWhileLive(t *testing.T, h Harness) {
	b, _ := basePipeline(t, h)
	publish(t, b, "base", Signals())
	waitDemand(t, b, "base", 1)
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g := producers.NewGenerator(9, "live-", signalTime, time.Second)
		for ctx.Err() == nil {
			items := []producers.Item{{Line: 1, Raw: g.Next()}}
			if _, err := (&producers.Publisher{Broker: b, Scenario: "base"}).Publish(ctx, items); err != nil {
				return
			}
		}
	}()
	defer func() { stop(); <-done }()
	read, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	n := 0
	err := broker.Each(read, b, broker.FeedOptions{Selector: broker.Selector{Scenario: "base"}, FromStart: true}, func(broker.Delivery) error {
		n++
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("read to the end of a live scenario: %d messages, %v", n, err)
	}
}
