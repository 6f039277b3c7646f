package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/history"
	"github.com/layercake/cascade/producers"
)

func (a *app) replayCmd() *cobra.Command {
	var into, coefPath, since, until string
	var useHistory bool
	var speed float64
	cmd := &cobra.Command{
		Use:   "replay [FILE|-]",
		Short: "Re-drive signals (a file, the bundled history, or a scenario's recorded signals) into a scenario",
		Long: `Re-drives signals through the pipeline: from an NDJSON file, from the bundled history of real
events (--history), or, with neither, from the recorded signals of --scenario between --since and
--until (event time, half-open). --into names the target scenario (default: --scenario); a new
target is registered with --coefficients (default: the coefficients of base, or the embedded
defaults). Signals already in the target are skipped, so a range replayed twice adds nothing.
Every signal passes the checks of publish in the target, its whole tree under the target's
coefficients included: one that fails is answered on stderr (its line and why), the others are
replayed, and replay exits 1.`,
		Example: `  cascade replay --history
  cascade replay --history --into half-util --coefficients half-util.yaml
  cascade replay --scenario base --since 2025-01-01 --until 2025-02-01 --into jan-2025
  cascade replay examples/signals.ndjson --speed 86400`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if into == "" {
				into = a.g.scenario
			}
			if !event.ValidName(into) {
				return usageError("--into %q must match %s", into, event.NamePattern)
			}
			if useHistory && len(args) > 0 {
				return usageError("give a FILE or --history, not both")
			}
			r := producers.Replay{Into: into, Speed: speed, Refuse: func(rf *producers.Refusal) { fmt.Fprintf(a.Stderr, "cascade: %v\n", rf) }}
			var err error
			if r.Since, err = optTime(since); err != nil {
				return usageError("--since: %w", err)
			}
			if r.Until, err = optTime(until); err != nil {
				return usageError("--until: %w", err)
			}
			return a.withBroker(ctx, func(b broker.Broker) error {
				r.Broker = b
				if err := a.bindTarget(ctx, cmd, b, into, coefPath); err != nil {
					return err
				}
				src, total, closeSrc, err := a.replaySource(ctx, b, args, useHistory, into)
				if err != nil {
					return err
				}
				defer closeSrc()
				var bar *progressbar.ProgressBar
				if isTerminal(a.Stderr) {
					bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(a.Stderr), progressbar.OptionSetDescription("replay"),
						progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("signals"),
						progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish())
					r.Progress = func(done int) { _ = bar.Set(done) }
				}
				rep, err := r.Run(ctx, src)
				if bar != nil {
					_ = bar.Finish()
				}
				if err != nil {
					return err
				}
				rate := float64(rep.Published) / max(rep.Elapsed.Seconds(), 1e-9)
				fmt.Fprintf(a.Stdout, "replayed %d signals into %s (%d read, %d in range, %d already there) in %s, %.0f signals/s\n",
					rep.Published, into, rep.Read, rep.InRange, rep.Skipped, rep.Elapsed.Round(time.Millisecond), rate)
				if rep.Refused > 0 {
					return fmt.Errorf("%d of %d signals refused, each said above; the others were replayed", rep.Refused, rep.Read)
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&into, "into", "", "target scenario (default: --scenario)")
	f.StringVar(&coefPath, "coefficients", "", "coefficients to register a new target with")
	f.BoolVar(&useHistory, "history", false, "replay the bundled history of real events (2022-11 to 2025)")
	f.StringVar(&since, "since", "", "first event time replayed (RFC 3339 or YYYY-MM-DD, inclusive)")
	f.StringVar(&until, "until", "", "end of the event-time range (exclusive)")
	f.Float64Var(&speed, "speed", 0, "0: as fast as possible; N: N times the original pacing (86400 = a day per second)")
	return cmd
}

func optTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return event.ParseTime(s)
}

// bindTarget registers the replay's target scenario (producers.BindTarget) with --coefficients
// and the storage flags; storage flags given for an existing target are refused.
func (a *app) bindTarget(ctx context.Context, cmd *cobra.Command, b broker.Broker, into, coefPath string) error {
	cfg, err := a.scenarioConfig()
	if err != nil {
		return err
	}
	var coef *coefficients.Loaded
	if coefPath != "" {
		if coef, err = coefficients.Load(coefPath); err != nil {
			return &ExitError{Code: 2, Err: err}
		}
	}
	coef, err = producers.BindTarget(ctx, b, into, coef, cfg, func(broker.Binding) error {
		for _, name := range []string{"dedup-window", "ack-wait", "retention-max-age", "retention-max-bytes", "kafka-partitions", "kafka-replication"} {
			if changed(cmd, name) {
				return usageError("--%s: scenario %s exists and keeps the storage settings of its owner; leave the flag out", name, into)
			}
		}
		return nil
	})
	if errors.Is(err, broker.ErrConflict) {
		return fmt.Errorf("%w\na scenario keeps the coefficients it was registered with: replay into a new --into name", err)
	}
	if err != nil || coef == nil {
		return err
	}
	a.log.Info().Str("scenario", into).Str("coefversion", coef.CoefVersion).Msg("replay target registered")
	return nil
}

// replaySource opens the signals to replay and says how many there are (-1: unknown).
func (a *app) replaySource(ctx context.Context, b broker.Broker, args []string, useHistory bool, into string) (producers.Source, int, func(), error) {
	none := func() {}
	switch {
	case useHistory:
		evs, err := history.Signals()
		if err != nil {
			return nil, 0, none, err
		}
		return &producers.SliceSource{Events: evs}, len(evs), none, nil
	case len(args) == 1 && args[0] != "-":
		f, err := os.Open(args[0])
		if err != nil {
			return nil, 0, none, usageError("%w", err)
		}
		return &producers.LineSource{R: f, Scenario: into}, -1, func() { f.Close() }, nil
	case len(args) == 1:
		return &producers.LineSource{R: a.Stdin, Scenario: into}, -1, none, nil
	}
	if a.g.scenario == into {
		return nil, 0, none, usageError("replaying scenario %s into itself adds nothing: name another --into, a FILE or --history", into)
	}
	f, err := b.Feed(ctx, broker.FeedOptions{Selector: broker.Selector{Scenario: a.g.scenario, Kinds: []event.Kind{event.KindSignal}}, FromStart: true, UntilEnd: true})
	if err != nil {
		return nil, 0, none, err
	}
	return &producers.ScenarioSource{Feed: f}, -1, func() { f.Close() }, nil
}
