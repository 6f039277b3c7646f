package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/producers"
	"github.com/layercake/cascade/producers/connect"
)

// connectFlags are the flags every connector takes.
type connectFlags struct {
	once, dryRun bool
	every        time.Duration
	ackTimeout   time.Duration
}

func (a *app) connectCmd() *cobra.Command {
	var cf connectFlags
	cmd := &cobra.Command{
		Use:   "connect SOURCE",
		Short: "Pull signals from a public source or an analyst's file; one answer line per signal",
		Long: `connect reads a source, turns what is new since its checkpoint (kept on the broker) into
signals with ids built from the source's own ids, publishes them as publish does and prints one
answer line per signal. Run it once (--once) or polling (--every 1h).`,
		Example: `  cascade connect huggingface --once --min-params 7e9
  cascade connect epoch --every 24h
  cascade connect file examples/connect/app-users.csv --map examples/connect/app-users.map.yaml --once`,
	}
	f := cmd.PersistentFlags()
	f.BoolVar(&cf.once, "once", false, "poll once and exit (1 if a signal was not taken)")
	f.DurationVar(&cf.every, "every", 0, "poll now and then at this interval until interrupted (e.g. 1h)")
	f.BoolVar(&cf.dryRun, "dry-run", false, "validate against the embedded default coefficients; publish nothing, read and keep no checkpoint")
	f.DurationVar(&cf.ackTimeout, "ack-timeout", producers.DefaultAckTimeout, "how long to wait for the broker to acknowledge each batch of 1,000 signals")

	var minParams float64
	var derivatives bool
	var since, hfBase, epochBase string
	hf := &cobra.Command{
		Use:   "huggingface",
		Short: "New open-weight text-generation models on the Hugging Face Hub -> signal.release",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start, err := event.ParseSince(since, timeNow())
			if err != nil {
				return usageError("--since: %w", err)
			}
			return a.runConnector(cmd, cf, &connect.HuggingFace{BaseURL: hfBase, MinParams: minParams, Since: start, Derivatives: derivatives, Client: a.httpClient()})
		},
	}
	hf.Flags().StringVar(&hfBase, "base-url", connect.HuggingFaceURL, "the Hub's address")
	hf.Flags().Float64Var(&minParams, "min-params", 1e9, "pass over models with fewer parameters (safetensors total)")
	hf.Flags().BoolVar(&derivatives, "derivatives", false, "also read fine-tunes, quantizations, merges and adapters of another model (tagged base_model:…), which their base's release already counts")
	hf.Flags().StringVar(&since, "since", "24h", "on the first poll (no checkpoint yet), read models created after this: RFC 3339, YYYY-MM-DD or a duration ago")

	epoch := &cobra.Command{
		Use:   "epoch",
		Short: "Epoch AI's notable-models dataset -> signal.release and training demand.infrastructure",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runConnector(cmd, cf, &connect.Epoch{BaseURL: epochBase, Client: a.httpClient()})
		},
	}
	epoch.Flags().StringVar(&epochBase, "base-url", connect.EpochURL, "where the dataset is published (the CSV is "+connect.EpochPath+" under it)")

	var mapPath, checkpoint string
	file := &cobra.Command{
		Use:   "file DATA",
		Short: "An analyst's CSV or JSON rows -> signals, by a declarative column mapping (--map)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if mapPath == "" {
				return usageError("--map is required: the YAML mapping of columns to signal fields")
			}
			m, err := connect.LoadMap(mapPath)
			if err != nil {
				return usageError("--map: %w", err)
			}
			return a.runConnector(cmd, cf, &connect.File{Path: args[0], Map: m, Checkpoint: checkpoint})
		},
	}
	file.Flags().StringVar(&mapPath, "map", "", "the column mapping (YAML; see examples/connect)")
	file.Flags().StringVar(&checkpoint, "checkpoint", "", "the checkpoint's name on the broker (default connect/file/<DATA's file name>)")
	cmd.AddCommand(hf, epoch, file)
	return cmd
}

// httpClient is the connectors' HTTP client; it logs each retry.
func (a *app) httpClient() *connect.Client {
	return &connect.Client{OnRetry: func(err error, wait time.Duration) {
		a.log.Warn().Err(err).Dur("wait", wait).Msgf("source answered with an error; trying again in %s", wait)
	}}
}

// runConnector polls src as cf says, printing each signal's answer line.
func (a *app) runConnector(cmd *cobra.Command, cf connectFlags, src connect.Source) error {
	if cf.once == (cf.every > 0) {
		return usageError("give --once or --every INTERVAL (one of them)")
	}
	if cf.every < 0 {
		return usageError("--every %s is negative", cf.every)
	}
	ctx := cmd.Context()
	out := bufio.NewWriter(a.Stdout)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	r := &connect.Runner{
		Source:    src,
		Publisher: &producers.Publisher{Scenario: a.g.scenario, DryRun: cf.dryRun, AckTimeout: cf.ackTimeout},
		Answer: func(ans connect.Answer) error {
			if err := enc.Encode(ans); err != nil {
				return err
			}
			return out.Flush()
		},
		Log: a.log,
	}
	if !cf.dryRun {
		b, err := a.connect(ctx)
		if err != nil {
			return err
		}
		defer b.Close()
		r.Publisher.Broker, r.Checkpoints = b, b.Checkpoints()
	}
	if cf.every > 0 {
		return r.Every(ctx, cf.every)
	}
	sum, err := r.Once(ctx)
	if err != nil {
		if errors.Is(err, connect.ErrNotTaken) {
			return &ExitError{Code: 1, Err: err}
		}
		return err
	}
	a.log.Info().Str("source", src.Name()).Int("read", sum.Read).Msgf("%s: %d signals taken", src.Name(), sum.Read)
	return nil
}
