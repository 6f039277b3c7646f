package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/tree"
	"github.com/layercake/cascade/producers"
	"github.com/layercake/cascade/schemas"
)

// timeNow is the clock of commands that need one.
var timeNow = time.Now

func (a *app) calcCmd() *cobra.Command {
	var coefPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "calc [FILE|-]",
		Short: "Apply the layer transforms to signals without a broker and print each signal's tree",
		Example: `  cascade calc examples/signals.ndjson
  echo '{"type":"cascade.signal.adoption.v1","source":"/me","data":{"app":"chat","category":"chat","region":"us","users_delta":1}}' | cascade calc
  cascade calc --coefficients what-if.yaml --json examples/signals.ndjson`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			coef, err := loadCoefficients(coefPath)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			body, err := a.readInput(args)
			if err != nil {
				return err
			}
			items, err := producers.Split(body)
			if err != nil {
				return &ExitError{Code: 1, Err: err}
			}
			failed := 0
			for _, it := range items {
				var ev *event.Event
				var n *tree.Node
				err := it.Err
				if err == nil {
					ev, err = producers.Prepare(it.Raw, a.g.scenario, timeNow())
				}
				if err == nil {
					var p event.Payload
					if p, err = event.DecodePayload(ev.Type, ev.Data); err == nil {
						n, err = tree.Expand(cmd.Context(), coef, ev, p)
					}
				}
				if err != nil {
					failed++
					fmt.Fprintf(a.Stderr, "line %d: %v\n", it.Line, err)
					continue
				}
				if asJSON {
					if err := json.NewEncoder(a.Stdout).Encode(n); err != nil {
						return err
					}
				} else if err := tree.Render(a.Stdout, n); err != nil {
					return err
				}
			}
			if failed > 0 {
				return &ExitError{Code: 1, Err: fmt.Errorf("%d of %d events refused", failed, len(items))}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&coefPath, "coefficients", "", "coefficient file (default: the embedded defaults)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON tree per signal")
	return cmd
}

func (a *app) coefficientsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "coefficients", Short: "Validate or show coefficient files"}
	cmd.AddCommand(&cobra.Command{
		Use:     "validate FILE",
		Short:   "Check a coefficient file against the schema and the model's rules",
		Example: "  cascade coefficients validate what-if.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := coefficients.Load(args[0])
			if err != nil {
				return &ExitError{Code: 1, Err: err}
			}
			fmt.Fprintf(a.Stdout, "%s: valid, coefversion %s\n", args[0], c.CoefVersion)
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "show [FILE]",
		Short: "Print the default coefficients with their sources (or a validated FILE) and its coefversion",
		Example: `  cascade coefficients show > my-coefficients.yaml
  cascade coefficients show what-if.yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				fmt.Fprintf(a.Stderr, "coefversion %s\n", coefficients.Default().CoefVersion)
				_, err := a.Stdout.Write(coefficients.DefaultYAML())
				return err
			}
			c, err := coefficients.Load(args[0])
			if err != nil {
				return &ExitError{Code: 1, Err: err}
			}
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Stderr, "coefversion %s\n", c.CoefVersion)
			_, err = a.Stdout.Write(raw)
			return err
		},
	})
	return cmd
}

func (a *app) schemasCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "schemas [DIR]",
		Short:   "Write the JSON Schemas (envelope, payloads, coefficients, totals) into DIR (default .)",
		Example: "  cascade schemas ./schemas-out",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			for _, name := range schemas.Files() {
				b, err := schemas.FS.ReadFile(name)
				if err != nil {
					return err
				}
				path := dir + string(os.PathSeparator) + name
				if err := os.WriteFile(path, b, 0o644); err != nil {
					return err
				}
				fmt.Fprintln(a.Stdout, path)
			}
			return nil
		},
	}
}
