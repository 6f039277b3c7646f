package cli

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/httpapi"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/tree"
	"github.com/layercake/cascade/internal/view"
)

// viewBroker is the connection as the view needs it (both adapters fetch by position).
func viewBroker(b broker.Broker) (view.Broker, error) {
	vb, ok := b.(view.Broker)
	if !ok {
		return nil, fmt.Errorf("%T cannot fetch a message by its position, which the view needs", b)
	}
	return vb, nil
}

func (a *app) viewCmd() *cobra.Command {
	var s serveFlags
	cmd := &cobra.Command{
		Use:   "view",
		Short: "Keep the materialized view of every scenario from the log and serve it over HTTP (totals, series, feeds, trace)",
		Long: `view follows every registered scenario's log into its own view in --index-dir (as run
does beside its layers) and serves GET /v1/totals, /v1/series, /v1/feeds (snapshot=1
included), /v1/trace and /v1/scenarios from it, for deployments where the stages run
elsewhere. It publishes nothing; several can run, each with its own --index-dir.`,
		Example: `  cascade view --index-dir /var/lib/cascade-view --http-listen 127.0.0.1:8081
  cascade view rebuild --scenario base --index-dir /var/lib/cascade-view`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if s.httpListen == "" {
				return usageError("--http-listen: view serves HTTP; give an address")
			}
			if err := s.checkHTTP(cmd); err != nil {
				return err
			}
			ctx := cmd.Context()
			return a.withBroker(ctx, func(b broker.Broker) error {
				vb, err := viewBroker(b)
				if err != nil {
					return err
				}
				v := &view.View{B: vb, Dir: s.indexDir, Log: a.log}
				defer v.Close()
				r := consumers.New(b, a.log, consumers.Options{Followers: map[string]consumers.Follower{"view": v.Follow}})
				o := s.httpOptions(nil, nil)
				o.View, o.Trace, o.ReadOnly = v, v.Trace, true
				srv, err := httpapi.New(b, o)
				if err != nil {
					return &ExitError{Code: 2, Err: err}
				}
				ctx, cancel := context.WithCancel(ctx)
				defer cancel()
				var wg sync.WaitGroup
				defer wg.Wait() // before the view is closed
				if resp, ok := b.(broker.Responder); ok {
					// The id set for `consume` processes (and totals, series, snapshots for
					// the CLI), as run answers them.
					wg.Go(func() {
						if err := v.ServeQueries(ctx, resp); err != nil && ctx.Err() == nil {
							a.log.Warn().Err(err).Msg("view responder stopped")
						}
					})
				}
				errc := make(chan error, 1)
				go func() {
					errc <- srv.Serve(ctx, func(addr string) { a.log.Info().Str("url", "http://"+addr).Msg("view serving") })
				}()
				err = r.Serve(ctx, nil, s.poll)
				cancel()
				return errors.Join(err, <-errc)
			})
		},
	}
	s.addHTTP(cmd)
	cmd.Flags().DurationVar(&s.poll, "scenario-poll", 2*time.Second, "how often new scenarios are looked for")
	cmd.PersistentFlags().StringVar(&s.indexDir, "index-dir", "cascade-view", "where the view is kept")
	cmd.AddCommand(a.viewRebuildCmd(&s.indexDir))
	return cmd
}

func (a *app) viewRebuildCmd(dir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "rebuild",
		Short: "Drop the view of --scenario (every registered scenario unless it is given) and read it again from the log",
		Example: `  cascade view rebuild --index-dir cascade-data/index           # run's view, run stopped
  cascade view rebuild --scenario half-util --index-dir cascade-view`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return a.withBroker(ctx, func(b broker.Broker) error {
				vb, err := viewBroker(b)
				if err != nil {
					return err
				}
				scenarios := []string{a.g.scenario}
				if !changed(cmd, "scenario") {
					list, err := b.Registry().List(ctx)
					if err != nil {
						return err
					}
					scenarios = scenarios[:0]
					for _, bd := range list {
						scenarios = append(scenarios, bd.Scenario)
					}
				}
				v := &view.View{B: vb, Dir: *dir, Log: a.log}
				defer v.Close()
				for _, s := range scenarios {
					start := time.Now()
					if err := v.Rebuild(ctx, s); err != nil {
						return notFoundHint(err)
					}
					pos, err := v.Position(s)
					if err != nil {
						return err
					}
					fmt.Fprintf(a.Stdout, "rebuilt %s up to %s in %s\n", s, pos, time.Since(start).Round(time.Millisecond))
				}
				return nil
			})
		},
	}
}

func (a *app) seriesCmd() *cobra.Command {
	var layer, quantity, by, step, since, until, vs string
	var asJSON, asCSV bool
	cmd := &cobra.Command{
		Use:   "series",
		Short: "Show one layer's demand over time in calendar steps: the change in each step and the running level",
		Example: `  cascade series --layer grid --quantity avg_mw --by region --step month
  cascade series --layer chips --quantity units --by accelerator --step quarter --since 2022-11-30
  cascade series --layer grid --quantity avg_mw --scenario half-util --vs base --csv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := view.SeriesOptions{Scenario: a.g.scenario, Vs: vs, Layer: event.Layer(layer), Quantity: quantity, By: by, Step: step}
			var err error
			if o.Since, err = optTime(since); err != nil {
				return usageError("--since: %w", err)
			}
			if o.Until, err = optTime(until); err != nil {
				return usageError("--until: %w", err)
			}
			if vs != "" && !event.ValidName(vs) {
				return usageError("--vs %q must match %s", vs, event.NamePattern)
			}
			if asJSON && asCSV {
				return usageError("--json and --csv: give one")
			}
			if err := o.Check(); err != nil {
				return usageError("--%w", err)
			}
			return a.withBroker(cmd.Context(), func(b broker.Broker) error {
				vb, err := viewBroker(b)
				if err != nil {
					return err
				}
				ser, err := view.AskSeries(cmd.Context(), vb, o, func() {
					fmt.Fprintf(a.Stderr, "cascade: no cascade run answers view requests; reading the log into a temporary view\n")
				})
				if err != nil {
					return notFoundHint(err)
				}
				switch {
				case asJSON:
					return writeJSON(a.Stdout, ser)
				case asCSV:
					return writeSeriesCSV(a.Stdout, ser)
				}
				return writeSeries(a.Stdout, ser)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&layer, "layer", "", "layer: "+event.JoinLayers(event.AllLayers, "or")+" (required)")
	f.StringVar(&quantity, "quantity", "", "a quantity of the layer, e.g. units (chips), avg_mw (grid) (required)")
	f.StringVar(&by, "by", "region", "region, or the layer's key: accelerator (chips), workload (infrastructure, energy, grid), model, category (application)")
	f.StringVar(&step, "step", "month", "day, week, month, quarter or year (UTC; weeks start on Monday)")
	f.StringVar(&since, "since", "", "first event time counted (RFC 3339 or YYYY-MM-DD, inclusive; default the first step with demand)")
	f.StringVar(&until, "until", "", "end of the event-time range (exclusive; default the end of the last step with demand)")
	f.StringVar(&vs, "vs", "", "another scenario: its change and level too, and the difference of levels")
	f.BoolVar(&asJSON, "json", false, "JSON (GET /v1/series's shape) instead of a table")
	f.BoolVar(&asCSV, "csv", false, "CSV, one row per key and step")
	_ = cmd.MarkFlagRequired("layer")
	_ = cmd.MarkFlagRequired("quantity")
	return cmd
}

func writeSeries(w io.Writer, s *view.Series) error {
	fmt.Fprintf(w, "scenario %s, %s %s (%s) by %s per %s, as of %s\n", s.Scenario, s.Layer, s.Quantity, s.Unit, s.By, s.Step, s.Position)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	if s.Vs != "" {
		fmt.Fprintf(tw, "STEP\tKEY\tCHANGE\tLEVEL\t%s CHANGE\t%s LEVEL\tDIFF\t\n", s.Vs, s.Vs)
	} else {
		fmt.Fprintln(tw, "STEP\tKEY\tCHANGE\tLEVEL\t")
	}
	for _, ks := range s.Series {
		for _, p := range ks.Points {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t", p.T.Format(time.DateOnly), ks.Key, tree.Number(p.Change), tree.Number(p.Level))
			if s.Vs != "" {
				fmt.Fprintf(tw, "%s\t%s\t%s\t", tree.Number(*p.VsChange), tree.Number(*p.VsLevel), tree.Number(*p.DiffLevel))
			}
			fmt.Fprintln(tw)
		}
	}
	return tw.Flush()
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func writeSeriesCSV(w io.Writer, s *view.Series) error {
	cw := csv.NewWriter(w)
	head := []string{"scenario", "layer", "quantity", "unit", "by", "key", "step", "t", "change", "level"}
	if s.Vs != "" {
		head = append(head, "vs", "vs_change", "vs_level", "diff_level")
	}
	_ = cw.Write(head)
	for _, ks := range s.Series {
		for _, p := range ks.Points {
			rec := []string{s.Scenario, string(s.Layer), s.Quantity, s.Unit, s.By, ks.Key, s.Step, p.T.Format(time.RFC3339), num(p.Change), num(p.Level)}
			if s.Vs != "" {
				rec = append(rec, s.Vs, num(*p.VsChange), num(*p.VsLevel), num(*p.DiffLevel))
			}
			_ = cw.Write(rec)
		}
	}
	cw.Flush()
	return cw.Error()
}

func writeTotalsCSV(w io.Writer, t *query.Totals) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"scenario", "layer", "region", "key", "quantity", "unit", "value", "events"})
	for _, r := range t.Rows {
		for _, q := range r.Quantities {
			_ = cw.Write([]string{t.Scenario, string(r.Layer), r.Region, r.Key, q.Name, q.Unit, num(q.Value), strconv.Itoa(r.Events)})
		}
	}
	cw.Flush()
	return cw.Error()
}

func writeComparisonCSV(w io.Writer, c *query.Comparison) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"scenario", "vs", "layer", "region", "key", "quantity", "unit", "value", "vs_value", "diff"})
	for _, r := range c.Rows {
		for _, q := range r.Quantities {
			_ = cw.Write([]string{c.Scenario, c.Vs, string(r.Layer), r.Region, r.Key, q.Name, q.Unit, num(q.Value), num(q.Vs), num(q.Diff)})
		}
	}
	cw.Flush()
	return cw.Error()
}
