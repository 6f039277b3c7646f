package cli

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/lineage"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/tree"
	"github.com/layercake/cascade/internal/view"
)

func (a *app) totalsCmd() *cobra.Command {
	var by, since, until, vs string
	var asJSON, asCSV bool
	cmd := &cobra.Command{
		Use:   "totals",
		Short: "Sum each layer's demand with its units (chips per accelerator), optionally against another scenario",
		Long: `totals sums each layer's demand over the event-time range [--since, --until). It asks the
view of a cascade run serving over the broker (NATS; instant at any history length), else it
sums the scenario's stored events itself (a read of the whole log).`,
		Example: `  cascade totals
  cascade totals --by region --since 2025-01-01 --until 2026-01-01
  cascade totals --scenario half-util --vs base
  cascade totals --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if by != "" && by != "region" {
				return usageError("--by %q: only region", by)
			}
			if asJSON && asCSV {
				return usageError("--json and --csv: give one")
			}
			o := query.TotalsOptions{Scenario: a.g.scenario, ByRegion: by == "region"}
			var err error
			if o.Since, err = optTime(since); err != nil {
				return usageError("--since: %w", err)
			}
			if o.Until, err = optTime(until); err != nil {
				return usageError("--until: %w", err)
			}
			return a.withBroker(cmd.Context(), func(b broker.Broker) error {
				t, err := view.AskTotals(cmd.Context(), b, o)
				if err != nil {
					return notFoundHint(err)
				}
				var cmp *query.Comparison
				if vs != "" {
					o.Scenario = vs
					other, err := view.AskTotals(cmd.Context(), b, o)
					if err != nil {
						return notFoundHint(err)
					}
					cmp = query.Compare(t, other)
				}
				if asJSON {
					if cmp != nil {
						return writeJSON(a.Stdout, cmp)
					}
					return writeJSON(a.Stdout, t)
				}
				switch {
				case asCSV && cmp != nil:
					return writeComparisonCSV(a.Stdout, cmp)
				case asCSV:
					return writeTotalsCSV(a.Stdout, t)
				case cmp != nil:
					return writeComparison(a.Stdout, cmp)
				}
				return writeTotals(a.Stdout, t)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&by, "by", "", "split rows by region")
	f.StringVar(&since, "since", "", "first event time counted (RFC 3339 or YYYY-MM-DD, inclusive)")
	f.StringVar(&until, "until", "", "end of the event-time range (exclusive)")
	f.StringVar(&vs, "vs", "", "another scenario to show side by side, with the difference")
	f.BoolVar(&asJSON, "json", false, "JSON (schemas/totals.json) instead of a table")
	f.BoolVar(&asCSV, "csv", false, "CSV, one row per quantity")
	return cmd
}

func notFoundHint(err error) error {
	if errors.Is(err, broker.ErrNotFound) {
		return fmt.Errorf("%w (see `cascade scenario ls`)", err)
	}
	return err
}

func writeTotals(w io.Writer, t *query.Totals) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "scenario %s, %d events\n", t.Scenario, t.Events)
	fmt.Fprintln(tw, "LAYER\tREGION\tKEY\tTOTAL\tUNIT\tEVENTS\t")
	for _, r := range t.Rows {
		for i, q := range r.Quantities {
			layer, key, n := string(r.Layer), r.Key, fmt.Sprint(r.Events)
			if i > 0 {
				layer, key, n = "", "", ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", layer, r.Region, key, tree.Number(q.Value), q.Unit, n)
		}
	}
	return tw.Flush()
}

func writeComparison(w io.Writer, c *query.Comparison) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "LAYER\tREGION\tKEY\tUNIT\t%s\t%s\tDIFF\t\n", c.Scenario, c.Vs)
	for _, r := range c.Rows {
		for i, q := range r.Quantities {
			layer, key := string(r.Layer), r.Key
			if i > 0 {
				layer, key = "", ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", layer, r.Region, key, q.Unit, tree.Number(q.Value), tree.Number(q.Vs), tree.Number(q.Diff))
		}
	}
	return tw.Flush()
}

func (a *app) traceCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "trace ID",
		Short: "Show the tree an event belongs to: from its root signal down through the five layers",
		Example: `  cascade trace hist-2025-01-20-deepseek-r1
  cascade trace grid-5f0c… --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withBroker(cmd.Context(), func(b broker.Broker) error {
				ans, err := lineage.Lookup(cmd.Context(), b, a.g.scenario, args[0], func(why lineage.Fallback) {
					fmt.Fprintf(a.Stderr, "cascade: %s; scanning scenario %s instead of asking run's index\n", why, a.g.scenario)
				})
				if err != nil {
					return notFoundHint(err)
				}
				if asJSON {
					return writeJSON(a.Stdout, map[string]any{"focus": args[0], "via": ans.Via, "root": ans.Root})
				}
				return tree.Render(a.Stdout, ans.Root)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `the tree as JSON, with "via": "index" or "scan" (which path answered)`)
	return cmd
}
