// Package bench measures the pipeline's throughput against the raw broker it runs on: the raw
// broker (acknowledged publishes of derived-event-sized messages, then a durable consumer
// fetching and committing them), and the pipeline (generated signals through all five layers
// until every layer has acknowledged everything).
package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/tree"
	"github.com/layercake/cascade/producers"
)

// The scenarios a run uses: the raw measurement's, deleted at its end, and the pipeline's.
const (
	RawScenario      = "bench-raw"
	PipelineScenario = "pipe"
)

// Config says what to measure.
type Config struct {
	Signals int                   // generated signals pushed through the pipeline
	Batch   int                   // consumer batch size (consumers.Options.Batch)
	Storage broker.ScenarioConfig // storage settings of both scenarios
	Log     zerolog.Logger        // the layers' log
}

// Report is what a run measured.
type Report struct {
	RawPublish float64 // acknowledged publishes per second
	RawConsume float64 // durable consume+commit per second
	Pipeline   float64 // events (signals and derived events) consumed per second through the layers
	Signals    int     // signals pushed through the pipeline
	Derived    int     // events the signals derive; also the raw measurement's message count
}

// SignalsPerSecond is the pipeline's rate in signals, each with its whole tree.
func (r Report) SignalsPerSecond() float64 {
	return r.Pipeline * float64(r.Signals) / float64(r.Derived+r.Signals)
}

// Run measures on b, which should be empty: it uses the scenarios RawScenario and
// PipelineScenario.
func Run(ctx context.Context, b broker.Broker, c Config) (Report, error) {
	g := producers.NewGenerator(1, "bench-", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Second)
	raws := make([][]byte, c.Signals)
	for i := range raws {
		raws[i] = g.Next()
	}
	coef := coefficients.Default()
	rep := Report{Signals: c.Signals}
	sample := 0
	for _, raw := range raws {
		ev, err := producers.Prepare(raw, PipelineScenario, time.Now())
		if err != nil {
			return rep, err
		}
		n, err := countTree(ctx, coef, ev)
		if err != nil {
			return rep, err
		}
		rep.Derived += n
	}
	if len(raws) > 0 {
		if ev, err := producers.Prepare(raws[0], PipelineScenario, time.Now()); err == nil {
			data, _ := ev.Marshal()
			sample = len(data)
		}
	}
	var err error
	if rep.RawPublish, rep.RawConsume, err = raw(ctx, b, c.Storage, rep.Derived, max(sample, 600)); err != nil {
		return rep, err
	}
	rep.Pipeline, err = pipeline(ctx, b, coef, c, raws, rep.Derived)
	return rep, err
}

// countTree counts the events a signal derives, down to the grid.
func countTree(ctx context.Context, c *coefficients.Loaded, ev *event.Event) (int, error) {
	p, err := event.DecodePayload(ev.Type, ev.Data)
	if err != nil {
		return 0, err
	}
	n, err := tree.Expand(ctx, c, ev, p)
	if err != nil {
		return 0, err
	}
	var count func(*tree.Node) int
	count = func(n *tree.Node) int {
		k := len(n.Children)
		for _, c := range n.Children {
			k += count(c)
		}
		return k
	}
	return count(n), nil
}

// raw measures acknowledged publishes and durable consume+commit of n messages of size bytes
// on a scenario of its own, which it deletes.
func raw(ctx context.Context, b broker.Broker, cfg broker.ScenarioConfig, n, size int) (pub, cons float64, err error) {
	const s = RawScenario
	if err := b.EnsureScenario(ctx, s, cfg); err != nil {
		return 0, 0, err
	}
	body := make([]byte, size)
	for i := range body {
		body[i] = 'x'
	}
	start := time.Now()
	const chunk = 1000
	msgs := make([]broker.Message, 0, chunk)
	for i := 0; i < n; i++ {
		msgs = append(msgs, broker.Message{Subject: event.SignalSubject(s, event.Chips, "us"), ID: fmt.Sprintf("raw-%d", i), Data: body})
		if len(msgs) == chunk || i == n-1 {
			if err := b.Publish(ctx, msgs); err != nil {
				return 0, 0, err
			}
			msgs = msgs[:0]
		}
	}
	pub = float64(n) / time.Since(start).Seconds()
	c, err := b.Consumer(ctx, s, event.Chips)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	start = time.Now()
	for got := 0; got < n; {
		ds, err := c.Fetch(ctx, 256)
		if err != nil {
			return 0, 0, err
		}
		if err := c.Commit(ctx, ds); err != nil {
			return 0, 0, err
		}
		got += len(ds)
	}
	cons = float64(n) / time.Since(start).Seconds()
	return pub, cons, b.DeleteScenario(ctx, s)
}

// pipeline publishes the signals and returns the events/s (signals plus derived events)
// until every layer has acknowledged everything.
func pipeline(ctx context.Context, b broker.Broker, coef *coefficients.Loaded, c Config, raws [][]byte, expected int) (float64, error) {
	const s = PipelineScenario
	if err := consumers.BindScenario(ctx, b, s, coef, c.Storage); err != nil {
		return 0, err
	}
	run, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	r := consumers.New(b, c.Log, consumers.Options{Batch: c.Batch})
	wg.Go(func() { _ = r.Serve(run, event.ConsumerLayers, 100*time.Millisecond) })
	for r.Ready() != nil {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	p := &producers.Publisher{Broker: b, Scenario: s}
	start := time.Now()
	items := make([]producers.Item, len(raws))
	for i, raw := range raws {
		items[i] = producers.Item{Line: i + 1, Raw: raw}
	}
	for i := 0; i < len(items); i += 1000 {
		if _, err := p.Publish(ctx, items[i:min(i+1000, len(items))]); err != nil {
			return 0, err
		}
	}
	for quiet := 0; quiet < 2; {
		var lag uint64
		for _, l := range event.ConsumerLayers {
			n, err := b.Lag(ctx, s, l)
			if err != nil {
				return 0, err
			}
			lag += n
		}
		if lag == 0 {
			quiet++ // twice in a row: a batch may move between layers while they are read
		} else {
			quiet = 0
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return float64(expected+len(raws)) / time.Since(start).Seconds(), nil
}
