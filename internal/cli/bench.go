package cli

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/natsjs"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/tree"
	"github.com/layercake/cascade/producers"
)

func (a *app) benchCmd() *cobra.Command {
	var signals, batch int
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the pipeline's throughput against the raw broker, in one run on a temporary embedded broker",
		Long: `Measures, on one temporary embedded NATS JetStream store: the raw broker (acknowledged publishes
of derived-event-sized messages, then a durable pull consumer fetching and committing them), and the
pipeline (generated signals through all five layers until every layer has acknowledged
everything). Reports rates and the pipeline's events/s as a ratio of the raw consume rate, since
each pipeline event is one consume, one transform and at least one acknowledged publish.`,
		Example: "  cascade bench --signals 20000",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			dir, err := os.MkdirTemp("", "cascade-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			cfg, err := a.scenarioConfig()
			if err != nil {
				return err
			}
			b, err := a.brokerFor(ctx, cmd, natsjs.ServerOptions{DataDir: dir, Listen: "127.0.0.1:-1"})
			if err != nil {
				return err
			}
			defer b.Close()
			g := producers.NewGenerator(1, "bench-", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Second)
			raws := make([][]byte, signals)
			for i := range raws {
				raws[i] = g.Next()
			}
			coef := coefficients.Default()
			expected, sample := 0, 0
			for _, raw := range raws {
				ev, err := producers.Prepare(raw, "pipe", time.Now())
				if err != nil {
					return err
				}
				n, err := countTree(ctx, coef, ev)
				if err != nil {
					return err
				}
				expected += n
			}
			if ev, err := producers.Prepare(raws[0], "pipe", time.Now()); err == nil {
				data, _ := ev.Marshal()
				sample = len(data)
			}
			rawPub, rawCons, err := benchRaw(ctx, b, cfg, expected, max(sample, 600))
			if err != nil {
				return err
			}
			pipe, err := a.benchPipeline(ctx, b, coef, cfg, raws, expected, batch)
			if err != nil {
				return err
			}
			q := tree.Quantity
			fmt.Fprintf(a.Stdout, "raw broker:  %s acknowledged publish, %s durable consume+ack (%s)\n", q(rawPub, "msg/s"), q(rawCons, "msg/s"), q(float64(expected), "messages"))
			fmt.Fprintf(a.Stdout, "pipeline:    %s consumed through 5 layers (%s, %s), %s\n", q(pipe, "events/s"), q(float64(signals), "signals"), q(float64(expected), "derived events"), q(pipe*float64(signals)/float64(expected+signals), "signals/s"))
			fmt.Fprintf(a.Stdout, "ratio:       pipeline events/s = %.2f x raw consume+ack, %.2f x raw publish\n", pipe/rawCons, pipe/rawPub)
			return nil
		},
	}
	cmd.Flags().IntVar(&signals, "signals", 20000, "generated signals to push through the pipeline")
	cmd.Flags().IntVar(&batch, "batch", 256, "consumer batch size")
	return cmd
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

// benchRaw measures acknowledged publishes and durable consume+commit of n messages of size bytes
// on a stream of its own.
func benchRaw(ctx context.Context, b broker.Broker, cfg broker.ScenarioConfig, n, size int) (pub, cons float64, err error) {
	const s = "bench-raw"
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

// benchPipeline publishes the signals and returns the events/s (signals plus derived events)
// until every layer has acknowledged everything.
func (a *app) benchPipeline(ctx context.Context, b broker.Broker, coef *coefficients.Loaded, cfg broker.ScenarioConfig, raws [][]byte, expected, batch int) (float64, error) {
	const s = "pipe"
	if err := consumers.BindScenario(ctx, b, s, coef, cfg); err != nil {
		return 0, err
	}
	run, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	r := consumers.New(b, a.log, consumers.Options{Batch: batch})
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
