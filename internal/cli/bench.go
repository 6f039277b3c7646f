package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/layercake/cascade/internal/bench"
	"github.com/layercake/cascade/internal/broker/natsjs"
	"github.com/layercake/cascade/internal/tree"
)

func (a *app) benchCmd() *cobra.Command {
	var signals, batch int
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the pipeline's throughput against the raw broker, in one run on a temporary embedded broker",
		Long: `Measures, on one temporary embedded NATS JetStream store: the raw broker (acknowledged publishes
of derived-event-sized messages, then a durable pull consumer fetching and committing them), and the
pipeline (generated signals through all five layers until every layer has acknowledged
everything). Reports rates and the pipeline's events/s as a ratio of the raw consume rate, since
each pipeline event is one consume, one transform and at least one acknowledged publish.`,
		Example: "  cascade bench --signals 20000",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			dir, err := os.MkdirTemp("", "cascade-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			cfg, err := a.scenarioConfig()
			if err != nil {
				return err
			}
			b, err := a.brokerFor(ctx, cmd, natsjs.ServerOptions{DataDir: dir, Listen: "127.0.0.1:-1"})
			if err != nil {
				return err
			}
			defer b.Close()
			rep, err := bench.Run(ctx, b, bench.Config{Signals: signals, Batch: batch, Storage: cfg, Log: a.log})
			if err != nil {
				return err
			}
			q := tree.Quantity
			fmt.Fprintf(a.Stdout, "raw broker:  %s acknowledged publish, %s durable consume+ack (%s)\n", q(rep.RawPublish, "msg/s"), q(rep.RawConsume, "msg/s"), q(float64(rep.Derived), "messages"))
			fmt.Fprintf(a.Stdout, "pipeline:    %s consumed through 5 layers (%s, %s), %s\n", q(rep.Pipeline, "events/s"), q(float64(rep.Signals), "signals"), q(float64(rep.Derived), "derived events"), q(rep.SignalsPerSecond(), "signals/s"))
			fmt.Fprintf(a.Stdout, "ratio:       pipeline events/s = %.2f x raw consume+ack, %.2f x raw publish\n", rep.Pipeline/rep.RawConsume, rep.Pipeline/rep.RawPublish)
			return nil
		},
	}
	cmd.Flags().IntVar(&signals, "signals", 20000, "generated signals to push through the pipeline")
	cmd.Flags().IntVar(&batch, "batch", 256, "consumer batch size")
	return cmd
}
