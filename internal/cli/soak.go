package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/layercake/cascade/internal/soak"
)

// soakCmd is `cascade soak`: the chained pipeline on a dev cluster of child processes, with
// faults injected on a timer, checked for lost and duplicated events at the end.
func (a *app) soakCmd() *cobra.Command {
	var o soak.Options
	var faults, dataDir string
	var seed int64
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "Run the pipeline on a 3-node dev NATS cluster with faults injected on a timer, then check every derived event is stored exactly once",
		Long: `Starts a 3-node JetStream cluster (as cascade dev nats --cluster 3) and --workers processes of
the chained stage (cascade consume --layers application-energy) as child processes of this one,
publishes generated signals at --rate for --duration, and injects the --faults in turn, one every
--fault-every: leader (SIGKILL the node leading the scenario's stream, restart it once another
leads), worker (SIGKILL a stage worker mid-batch; it is started again), node (SIGKILL a random
node, restart it half an interval later). Then it waits for the pipeline to catch up and reads
every derived event back: it prints the faults injected, the signals, the events checked, and
how many were lost or duplicated, and exits 1 if any was, or if a type's total is not the
formulas' (cascade calc).`,
		Example: `  cascade soak --duration 10m --faults leader,worker,node
  cascade soak --duration 20s --faults worker --rate 20`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs, err := soak.ParseFaults(faults)
			if err != nil {
				return usageError("--faults: %v", err)
			}
			switch {
			case o.Duration <= 0:
				return usageError("--duration %s: want more than 0", o.Duration)
			case o.Rate < 1:
				return usageError("--rate %d: want 1 or more signals per second", o.Rate)
			case o.Workers < 1:
				return usageError("--workers %d: want 1 or more", o.Workers)
			case cmd.Flags().Changed("fault-every") && o.FaultEvery < time.Second:
				return usageError("--fault-every %s: want 1s or more", o.FaultEvery)
			}
			o.Faults, o.Seed = fs, uint64(seed)
			if o.Exe, err = os.Executable(); err != nil {
				return fmt.Errorf("find this binary to start the nodes and workers: %w", err)
			}
			if dataDir == "" {
				tmp, err := os.MkdirTemp("", "cascade-soak-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				dataDir = tmp
			}
			o.Dir, o.Logs, o.Progress = dataDir, a.Stderr, a.Stderr
			r, err := soak.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			r.Print(a.Stdout)
			if !r.OK() {
				return &ExitError{Code: 1, Err: fmt.Errorf("soak: %d lost, %d duplicated, %d unexpected of %d derived events", r.Lost, r.Duplicated, r.Unexpected, r.Checked)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.Duration, "duration", 10*time.Minute, "how long signals are published and faults injected")
	f.StringVar(&faults, "faults", "leader,worker,node", "faults injected in turn, comma-separated: leader, worker, node (empty: none)")
	f.DurationVar(&o.FaultEvery, "fault-every", 0, "time between faults (default: a twentieth of --duration, between 5s and 30s)")
	f.IntVar(&o.Rate, "rate", 50, "signals published per second")
	f.IntVar(&o.Workers, "workers", 2, "worker processes of the chained stage")
	f.DurationVar(&o.Settle, "settle", 5*time.Minute, "longest wait for the pipeline to catch up at the end")
	f.Int64Var(&seed, "seed", 1, "seed of the generated signals")
	f.StringVar(&dataDir, "data-dir", "", "keep the nodes' stores in <dir>/n<i> (default: a temporary directory removed at exit)")
	return cmd
}
