package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
)

// withBroker runs fn with a connection made from the global flags.
func (a *app) withBroker(ctx context.Context, fn func(broker.Broker) error) error {
	b, err := a.connect(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	return fn(b)
}

func (a *app) scenarioCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "scenario", Short: "Create, list, show and remove scenarios and their coefficient bindings"}
	var coefPath string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Register a scenario with a coefficient set, so that signals may be published into it",
		Example: `  cascade scenario create half-util --coefficients half-util.yaml
  cascade publish --scenario half-util signals.ndjson`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if !event.ValidName(name) {
				return usageError("scenario %q must match %s", name, event.NamePattern)
			}
			coef, err := loadCoefficients(coefPath)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			cfg, err := a.scenarioConfig()
			if err != nil {
				return err
			}
			return a.withBroker(cmd.Context(), func(b broker.Broker) error {
				if err := consumers.BindScenario(cmd.Context(), b, name, coef, cfg); err != nil {
					if errors.Is(err, broker.ErrConflict) {
						return fmt.Errorf("%w\na scenario keeps the coefficients it was registered with: create one under a new NAME", err)
					}
					return err
				}
				fmt.Fprintf(a.Stdout, "scenario %s registered with coefficients %s\n", name, coef.CoefVersion)
				return nil
			})
		},
	}
	create.Flags().StringVar(&coefPath, "coefficients", "", "coefficient file (default: the embedded defaults)")
	cmd.AddCommand(create)
	cmd.AddCommand(&cobra.Command{
		Use:     "ls",
		Short:   "List scenarios with their coefficient versions",
		Example: "  cascade scenario ls",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withBroker(cmd.Context(), func(b broker.Broker) error {
				list, err := b.Registry().List(cmd.Context())
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "SCENARIO\tCOEFVERSION\tREGISTERED")
				for _, s := range list {
					fmt.Fprintf(w, "%s\t%s\t%s\n", s.Scenario, s.CoefVersion, s.Created.Format("2006-01-02T15:04:05Z"))
				}
				return w.Flush()
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "show NAME",
		Short:   "Print a scenario's binding, each stage's lag (unacknowledged events, by stage: a layer or first-last) and its coefficients as JSON",
		Example: "  cascade scenario show base",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withBroker(cmd.Context(), func(b broker.Broker) error {
				s, err := b.Registry().Get(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				lag := map[string]any{}
				names, err := b.Consumers(cmd.Context(), s.Scenario)
				if err != nil {
					return err
				}
				for _, n := range names {
					st, _ := event.StageOfConsumer(s.Scenario, n)
					if n, err := b.StageLag(cmd.Context(), s.Scenario, st); err == nil {
						lag[st.String()] = n
					}
				}
				return writeJSON(a.Stdout, map[string]any{
					"scenario": s.Scenario, "coefversion": s.CoefVersion, "registered": s.Created,
					"stream": event.StreamName(s.Scenario), "lag": lag, "config": showConfig(s.Config), "coefficients": json.RawMessage(s.Document),
				})
			})
		},
	})
	var force bool
	rm := &cobra.Command{
		Use:     "rm NAME",
		Short:   "Delete a scenario's stream and binding (base only with --force)",
		Example: "  cascade scenario rm half-util",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if name == event.DefaultScenario && !force {
				return usageError("refusing to remove scenario base without --force")
			}
			return a.withBroker(cmd.Context(), func(b broker.Broker) error {
				if _, err := b.Registry().Get(cmd.Context(), name); err != nil {
					return err
				}
				if err := b.DeleteScenario(cmd.Context(), name); err != nil && !errors.Is(err, broker.ErrNotFound) {
					return err
				}
				if err := b.Registry().Delete(cmd.Context(), name); err != nil {
					return err
				}
				fmt.Fprintf(a.Stdout, "scenario %s removed\n", name)
				return nil
			})
		},
	}
	rm.Flags().BoolVar(&force, "force", false, "allow removing base")
	cmd.AddCommand(rm)
	return cmd
}

// showConfig is a scenario's recorded storage settings as scenario show prints them
// (durations as Go durations; zero fields, the broker's defaults, left out).
func showConfig(c broker.ScenarioConfig) map[string]any {
	out := map[string]any{}
	for name, d := range map[string]time.Duration{"dedup_window": c.DedupWindow, "max_age": c.MaxAge, "ack_wait": c.AckWait} {
		if d != 0 {
			out[name] = d.String()
		}
	}
	for name, n := range map[string]int64{"max_bytes": c.MaxBytes, "replicas": int64(c.Replicas), "partitions": int64(c.Partitions)} {
		if n != 0 {
			out[name] = n
		}
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
