package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"
)

func (a *app) devCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dev", Short: "Development helpers"}
	var brokers, firstPort, partitions int
	var dataDir string
	kafka := &cobra.Command{
		Use:   "kafka",
		Short: "Run an in-process Kafka-protocol cluster (franz-go's kfake) on loopback, to try cascade on Kafka without Kafka",
		Long: `Starts a Kafka-protocol cluster on 127.0.0.1 (franz-go's kfake: the real wire protocol, in this
process) until Ctrl-C, and prints the bootstrap list for --kafka-brokers. It is for trying cascade
and for tests, not for production; any Kafka client (kcat, say) can talk to it.`,
		Example: `  cascade dev kafka &
  cascade run --kafka-brokers 127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094
  kcat -b 127.0.0.1:19092 -C -t cascade.base.demand.grid -o beginning`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := []kfake.Opt{kfake.NumBrokers(brokers), kfake.DefaultNumPartitions(partitions)}
			if firstPort != 0 {
				ports := make([]int, brokers)
				for i := range ports {
					ports[i] = firstPort + i
				}
				opts = append(opts, kfake.Ports(ports...))
			}
			if dataDir != "" {
				if err := os.MkdirAll(dataDir, 0o755); err != nil {
					return err
				}
				opts = append(opts, kfake.DataDir(dataDir))
			}
			c, err := kfake.NewCluster(opts...)
			if err != nil {
				return fmt.Errorf("kfake: %w", err)
			}
			defer c.Close()
			fmt.Fprintf(a.Stdout, "Kafka-protocol cluster of %d brokers ready; Ctrl-C stops it\n--kafka-brokers %s\n", brokers, strings.Join(c.ListenAddrs(), ","))
			<-cmd.Context().Done()
			return nil
		},
	}
	f := kafka.Flags()
	f.IntVar(&brokers, "brokers", 3, "number of brokers")
	f.IntVar(&firstPort, "port", 19092, "port of the first broker; the others follow (0: free ports)")
	f.IntVar(&partitions, "partitions", 6, "partitions of auto-created topics")
	f.StringVar(&dataDir, "data-dir", "", "keep messages and committed offsets here across restarts (default: in memory)")
	cmd.AddCommand(kafka, a.devNATSCmd(), a.devNodeCmd())
	return cmd
}
