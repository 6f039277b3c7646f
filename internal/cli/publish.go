package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/layercake/cascade/internal/view"
	"github.com/layercake/cascade/producers"
)

// readInput reads FILE, or standard input for "-" or no argument.
func (a *app) readInput(args []string) ([]byte, error) {
	if len(args) == 0 || args[0] == "-" {
		return io.ReadAll(a.Stdin)
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return nil, usageError("%w", err)
	}
	return b, nil
}

func (a *app) publishCmd() *cobra.Command {
	var generate int
	var seed uint64
	var dryRun, printOnly bool
	var ackTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "publish [FILE|-]",
		Short: "Validate signals (JSON, NDJSON or a JSON array) and publish them; one answer line per event",
		Example: `  cascade publish signals.ndjson
  echo '{"type":"cascade.signal.adoption.v1","source":"/me","data":{"app":"chat","category":"chat","region":"us","users_delta":1000000}}' | cascade publish
  cascade publish --generate 10000 --seed 7
  cascade publish --generate 100000 --print > signals.ndjson
  cascade publish --dry-run signals.ndjson`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var items []producers.Item
			if generate > 0 {
				if len(args) > 0 {
					return usageError("--generate takes no FILE")
				}
				g := producers.NewGenerator(seed, fmt.Sprintf("gen-%d-", seed), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Minute)
				for i := range generate {
					items = append(items, producers.Item{Line: i + 1, Raw: g.Next()})
				}
			} else {
				body, err := a.readInput(args)
				if err != nil {
					return err
				}
				items, err = producers.Split(body)
				if err != nil {
					return &ExitError{Code: 1, Err: err}
				}
			}
			if printOnly {
				out := bufio.NewWriter(a.Stdout)
				for _, it := range items {
					out.Write(it.Raw)
					out.WriteByte('\n')
				}
				return out.Flush()
			}
			p := &producers.Publisher{Scenario: a.g.scenario, DryRun: dryRun, AckTimeout: ackTimeout}
			if !dryRun {
				b, err := a.connect(cmd.Context())
				if err != nil {
					return err
				}
				defer b.Close()
				p.Broker = b
				if b.Features().RequestReply {
					p.IDs = view.Remote{B: b} // ids a run's view holds are answered as duplicates
				}
			}
			out := bufio.NewWriter(a.Stdout)
			enc := json.NewEncoder(out)
			enc.SetEscapeHTML(false)
			failed, stopped := p.PublishAll(cmd.Context(), items, func(_ int, r producers.Result) error { return enc.Encode(r) })
			if err := out.Flush(); err != nil {
				return fmt.Errorf("writing the answers: %w", err)
			}
			if stopped != nil {
				return &ExitError{Code: 1, Err: fmt.Errorf("%d of %d events not taken: %w", failed, len(items), stopped)}
			}
			if failed > 0 {
				return &ExitError{Code: 1, Err: fmt.Errorf("%d of %d events refused", failed, len(items))}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&generate, "generate", 0, "publish N generated synthetic signals instead of reading input")
	cmd.Flags().Uint64Var(&seed, "seed", 1, "seed for --generate (same seed, same signals and ids)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate only, against the embedded default coefficients; publish nothing")
	cmd.Flags().DurationVar(&ackTimeout, "ack-timeout", producers.DefaultAckTimeout, "how long to wait for the broker to acknowledge each batch of 1,000 lines")
	cmd.Flags().BoolVar(&printOnly, "print", false, "with --generate, print the signals as NDJSON instead of publishing them")
	return cmd
}
