package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/layercake/cascade/internal/calibrate"
	"github.com/layercake/cascade/internal/tree"
)

func (a *app) calibrateCmd() *cobra.Command {
	var coefPath string
	var strict, asJSON bool
	cmd := &cobra.Command{
		Use:   "calibrate",
		Short: "Run the model on published reference cases and print model, reference, ratio, band and source",
		Long: `calibrate computes each reference case of docs/calibration.md with the coefficients (per-prompt
energy, DeepSeek's serving fleet, training runs, the installed base, data-centre electricity) and
prints the model's figure beside the published one. A case whose ratio model/published falls
outside its band is marked; with --strict the command then exits 1.`,
		Example: `  cascade calibrate
  cascade calibrate --coefficients what-if.yaml --strict`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			coef, err := loadCoefficients(coefPath)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			res, err := calibrate.Run(cmd.Context(), coef)
			if err != nil {
				return &ExitError{Code: 1, Err: err}
			}
			out := 0
			for _, r := range res {
				if !r.InBand {
					out++
				}
			}
			if asJSON {
				enc := json.NewEncoder(a.Stdout)
				for _, r := range res {
					if err := enc.Encode(r); err != nil {
						return err
					}
				}
			} else {
				w := tabwriter.NewWriter(a.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintf(w, "reference\tmodel\tpublished\tunit\tratio\tband\t\tsource\n")
				for _, r := range res {
					mark := "ok"
					if !r.InBand {
						mark = "OUT"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.3g\t%.3g–%.3g\t%s\t%s\n", r.Name, tree.Number(r.Model), tree.Number(r.Published), r.Unit, r.Ratio, r.Low, r.High, mark, r.Source)
				}
				if err := w.Flush(); err != nil {
					return err
				}
				fmt.Fprintf(a.Stdout, "coefficients %s: %d of %d references inside their band\n", coef.CoefVersion, len(res)-out, len(res))
			}
			if strict && out > 0 {
				return &ExitError{Code: 1, Err: fmt.Errorf("%d of %d references outside their band", out, len(res))}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&coefPath, "coefficients", "", "coefficient file (default: the embedded defaults)")
	cmd.Flags().BoolVar(&strict, "strict", false, "exit 1 when a reference falls outside its band")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per reference")
	return cmd
}
