package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/spf13/cobra"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/natsjs"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/totals"
	"github.com/layercake/cascade/internal/tree"
	"github.com/layercake/cascade/producers"
)

func (a *app) demoCmd() *cobra.Command {
	var s serveFlags
	var interval, idle time.Duration
	var signals int
	var seed uint64
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Stream generated signals through all five layers on a temporary embedded broker and print each layer's demand as it changes",
		Example: `  go run ./cmd/cascade demo
  cascade demo --interval 50ms --signals 500`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			dir, err := os.MkdirTemp("", "cascade-demo-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			coef, err := loadCoefficients(s.coefficients)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			// The page's port is settled before anything starts: a default one that is busy
			// gives way to a free one, a busy one the user named is an error at once.
			if s.httpListen != "" {
				if _, port, _ := net.SplitHostPort(s.httpListen); !changed(cmd, "http-listen") || port == "0" {
					s.httpListen = freeOr(s.httpListen)
				}
			}
			if err := s.checkHTTP(cmd); err != nil {
				return err
			}
			cfg, err := a.scenarioConfig()
			if err != nil {
				return err
			}
			so := natsjs.ServerOptions{DataDir: dir, Listen: s.natsListen, ConfigFile: s.natsConfig}
			b, err := a.brokerFor(ctx, cmd, so)
			if err != nil && !changed(cmd, "nats-listen") && !changed(cmd, "nats-url") {
				a.log.Warn().Err(err).Msg("default port busy; the demo broker takes a free one")
				so.Listen = "127.0.0.1:-1"
				b, err = a.brokerFor(ctx, cmd, so)
			}
			if err != nil {
				return err
			}
			defer b.Close()
			if err := consumers.BindScenario(ctx, b, a.g.scenario, coef, cfg); err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "cascade demo: scenario %s, coefficients %s; Ctrl-C stops\n", a.g.scenario, coef.CoefVersion)
			if s.httpListen != "" {
				fmt.Fprintf(a.Stdout, "web page: %s\n", pageURL(s.httpListen))
			}

			run, stop := context.WithCancel(ctx)
			defer stop()
			var wg sync.WaitGroup
			s.indexDir = filepath.Join(dir, "index")
			wg.Go(func() {
				if err := a.serve(run, b, []event.Stage{event.Chain}, s); err != nil {
					a.log.Error().Err(err).Msg("pipeline stopped")
				}
			})
			published := make(chan int, 1)
			wg.Go(func() { a.demoProduce(run, b, seed, interval, signals, published) })
			err = a.demoWatch(run, b, published, signals, idle)
			stop()
			wg.Wait()
			return err
		},
	}
	s.add(cmd, true)
	s.addHTTP(cmd)
	cmd.Flags().StringVar(&s.coefficients, "coefficients", "", "coefficient file (default: the embedded defaults)")
	cmd.Flags().DurationVar(&interval, "interval", 250*time.Millisecond, "time between generated signals")
	cmd.Flags().IntVar(&signals, "signals", 0, "stop after this many signals have flowed through (0: until Ctrl-C)")
	cmd.Flags().Uint64Var(&seed, "seed", uint64(time.Now().UnixNano()), "generator seed")
	cmd.Flags().DurationVar(&idle, "settle", time.Second, "with --signals, how long the feeds must stay quiet before the demo ends")
	_ = cmd.Flags().MarkHidden("data-dir")
	return cmd
}

// demoProduce publishes generated signals with run-unique ids, one per interval.
func (a *app) demoProduce(ctx context.Context, b broker.Broker, seed uint64, interval time.Duration, limit int, published chan<- int) {
	g := producers.NewGenerator(seed, "demo-"+strings.ToLower(ulid.Make().String())+"-", time.Now(), interval)
	p := &producers.Publisher{Broker: b, Scenario: a.g.scenario}
	t := time.NewTicker(interval)
	defer t.Stop()
	for n := 1; limit == 0 || n <= limit; n++ {
		raw := g.Next()
		if _, err := p.Publish(ctx, []producers.Item{{Line: n, Raw: raw}}); err != nil {
			if ctx.Err() == nil {
				a.log.Error().Err(err).Msg("demo publish failed")
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	published <- limit
}

// demoWatch follows every demand feed and prints the per-layer totals when they change.
func (a *app) demoWatch(ctx context.Context, b broker.Broker, published <-chan int, limit int, settle time.Duration) error {
	f, err := b.Feed(ctx, broker.FeedOptions{Selector: broker.Selector{Scenario: a.g.scenario, Kinds: []event.Kind{event.KindDemand}}, FromStart: true})
	if err != nil {
		return err
	}
	defer f.Close()
	sum := totals.New(false)
	events := make(chan broker.Delivery, 1024)
	go func() {
		defer close(events)
		for {
			d, err := f.Next(ctx)
			if err != nil {
				return
			}
			events <- d
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	dirty, done := false, false
	lastEvent := time.Now()
	for {
		select {
		case <-ctx.Done():
			if dirty {
				printLayers(a.Stdout, sum)
			}
			return nil
		case <-published:
			done = true
		case d, ok := <-events:
			if !ok {
				return nil
			}
			ev, p, err := event.Decode(d.Message().Data)
			if err != nil {
				continue
			}
			dirty = sum.Add(ev, p, false) || dirty
			lastEvent = time.Now()
		case <-tick.C:
			if dirty {
				printLayers(a.Stdout, sum)
				dirty = false
			}
			if done && limit > 0 && time.Since(lastEvent) >= settle {
				return nil
			}
		}
	}
}

// printLayers writes one line per layer: its demand summed over keys, chips per accelerator.
func printLayers(w io.Writer, sum *totals.Sum) {
	type acc struct {
		parts []string
		q     []event.Quantity
	}
	layers := map[event.Layer]*acc{}
	for _, r := range sum.Rows() {
		l := layers[r.Layer]
		if l == nil {
			l = &acc{}
			layers[r.Layer] = l
		}
		if r.Layer == event.Chips {
			l.parts = append(l.parts, r.Key+" "+tree.Quantity(r.Quantities[0].Value, r.Quantities[0].Unit))
			continue
		}
		if l.q == nil {
			l.q = append([]event.Quantity(nil), r.Quantities...)
			continue
		}
		for i := range l.q {
			l.q[i].Value += r.Quantities[i].Value
		}
	}
	fmt.Fprintf(w, "\n%s  demand from %d derived events\n", time.Now().Format(time.TimeOnly), sum.Events())
	for _, layer := range event.FeedLayers {
		l := layers[layer]
		line := "-"
		if l != nil && layer == event.Chips {
			line = strings.Join(l.parts, ", ")
		} else if l != nil {
			parts := make([]string, len(l.q))
			for i, q := range l.q {
				parts[i] = tree.Quantity(q.Value, q.Unit)
			}
			line = strings.Join(parts, ", ")
		}
		fmt.Fprintf(w, "  %-15s %s\n", layer, line)
	}
}

// freeOr returns addr with its port made concrete when it can be listened on now, else a free
// port on loopback, so that the page's address is known before it is served.
func freeOr(addr string) string {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return "127.0.0.1:0"
		}
	}
	defer l.Close()
	return l.Addr().String()
}

// pageURL is the web page's address for a browser on this machine.
func pageURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
