package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/bench"
	"github.com/layercake/cascade/internal/broker/natsjs"
	"github.com/layercake/cascade/internal/tree"
)

func (a *app) benchCmd() *cobra.Command {
	var c bench.Config
	var asJSON bool
	var stages string
	var profile string
	var withView bool
	var mem serveFlags // its memory limit only
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the pipeline against the raw broker in one run: throughput, latency, CPU and memory",
		Long: `Measures, in one run on a temporary embedded NATS JetStream store (or the broker named by
--nats-url or --kafka-brokers):
  - the raw ceiling: acknowledged publishes with ids of messages the mean size of the
    pipeline's, then a durable consumer fetching and committing them;
  - the pipeline at its maximum rate, run as run runs it (its view fed by the stages and
    asked about every input; --view=false for the stages alone): --signals generated signals
    published at once, timed until every layer has acknowledged everything and the view has
    applied it (signals/s, stored messages/s, and their ratio to the raw publish rate);
  - then the latency from a signal's publish to the last grid event of its tree, at --rate
    signals/s for --paced signals, matched by correlationid on the grid feed;
  - this process's CPU seconds per 1,000 signals in the max-rate pass (the embedded broker's
    included) and its peak resident memory.
On an outside broker it uses the scenarios bench-raw and pipe and removes them when it ends
(pipe not with --keep); it refuses to run where a scenario pipe is bound already.`,
		Example: `  cascade bench --signals 20000
  cascade bench --signals 50000 --rate 1000 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case c.Signals <= 0:
				return usageError("--signals %d: must be positive", c.Signals)
			case c.Batch <= 0:
				return usageError("--batch %d: must be positive", c.Batch)
			case c.Rate < 0:
				return usageError("--rate %v: must be positive, or 0 for no latency phase", c.Rate)
			case c.Paced < 0:
				return usageError("--paced %d: must not be negative", c.Paced)
			}
			mode, err := consumers.ParseStages(stages)
			if err != nil {
				return usageError("%v", err)
			}
			c.Stages = mode
			if err := mem.applyMemoryLimit(cmd, a.Getenv); err != nil {
				return err
			}
			ctx := cmd.Context()
			dir, err := os.MkdirTemp("", "cascade-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			if c.Storage, err = a.scenarioConfig(); err != nil {
				return err
			}
			b, err := a.brokerFor(ctx, cmd, natsjs.ServerOptions{DataDir: dir, Listen: "127.0.0.1:-1"})
			if err != nil {
				return err
			}
			defer b.Close()
			c.Log = a.log
			if withView {
				c.ViewDir = filepath.Join(dir, "view")
			}
			if profile != "" {
				f, err := os.Create(profile)
				if err != nil {
					return fmt.Errorf("--cpu-profile: %w", err)
				}
				c.CPUProfile = f
			}
			rep, err := bench.Run(ctx, b, c)
			if f, ok := c.CPUProfile.(*os.File); ok {
				if cerr := f.Close(); cerr != nil && err == nil {
					err = fmt.Errorf("--cpu-profile: %w", cerr)
				}
			}
			if err != nil && (!errors.Is(err, bench.ErrCleanup) || rep.Pipeline.Seconds == 0) {
				return err
			}
			// Only the clean-up failed: the measurement is whole, so it is shown before the error.
			if asJSON {
				enc := json.NewEncoder(a.Stdout)
				enc.SetIndent("", "  ")
				return errors.Join(enc.Encode(rep), err)
			}
			a.printBench(rep)
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&c.Signals, "signals", 20000, "generated signals pushed through the pipeline at its maximum rate")
	f.IntVar(&c.Batch, "batch", 256, "consumer batch size")
	f.Float64Var(&c.Rate, "rate", 1000, "signals/s offered in the latency phase after the max-rate pass (0: no latency phase)")
	f.IntVar(&c.Paced, "paced", 0, "signals of the latency phase (default: five seconds' worth at --rate)")
	f.StringVar(&stages, "stages", string(consumers.Chained), "how the layers are grouped into consumers, as run's --stages: chained (one stage of all five layers) or per-layer")
	f.BoolVar(&withView, "view", true, "run the stages with their materialized view, as run does (--view=false: the stages alone)")
	f.BoolVar(&asJSON, "json", false, "the report as one JSON object")
	f.StringVar(&mem.memLimit, "memory-limit", DefaultMemoryLimit, "soft memory limit of this process, as run's (0 or off: none)")
	f.StringVar(&profile, "cpu-profile", "", "write a CPU profile of the max-rate pass to this file (go tool pprof -top FILE)")
	f.BoolVar(&c.Keep, "keep", false, "leave the pipeline's scenario ("+bench.PipelineScenario+") on the broker to look at (totals, trace); a later bench there refuses to run until it is removed")
	return cmd
}

// printBench writes the report for people, quantities in SI units.
func (a *app) printBench(rep bench.Report) {
	q, w := tree.Quantity, a.Stdout
	r, p := rep.Raw, rep.Pipeline
	fmt.Fprintf(w, "raw broker:  %s acknowledged publish with ids, %s durable consume+ack (%s of %s)\n", q(r.PublishPerSecond, "msg/s"), q(r.ConsumePerSecond, "msg/s"), q(float64(r.Messages), "messages"), q(float64(r.MessageBytes), "B"))
	with := fmt.Sprintf("with their view (%s from the stages, %s read from the log)", q(float64(p.ViewFromStages), "msgs"), q(float64(p.ViewFromLog), "msgs"))
	if !p.View {
		with = "without a view"
	}
	fmt.Fprintf(w, "pipeline:    %s, %s stored through 5 layers, %s stages %s (%s, %s derived events)\n", q(p.SignalsPerSecond, "signals/s"), q(p.StoredPerSecond, "msg/s"), p.Stages, with, q(float64(p.Signals), "signals"), q(float64(p.Derived), ""))
	fmt.Fprintf(w, "ratio:       pipeline stored msg/s = %.2f x raw publish, %.2f x raw consume+ack\n", p.RatioToRawPublish, p.StoredPerSecond/r.ConsumePerSecond)
	if l := rep.Latency; l != nil {
		fmt.Fprintf(w, "latency:     signal to last grid event at %s (%s offered, %s timed): p50 %s, p90 %s, p99 %s, max %s\n", q(l.AchievedRate, "signals/s"), q(l.Rate, "signals/s"), q(float64(l.Signals), "signals"), ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max))
	}
	fmt.Fprintf(w, "cost:        %s CPU per 1 k signals, peak RSS %s\n", q(rep.CPUSecondsPer1000Signals, "s"), q(float64(rep.PeakRSSBytes)/(1<<20), "MiB"))
}

// ms writes a latency in milliseconds with two decimals.
func ms(m bench.Millis) string { return fmt.Sprintf("%.2f ms", float64(m)/1e6) }
