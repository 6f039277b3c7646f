package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/layercake/cascade/internal/broker/natsjs"
)

// devCluster is the cluster name of `cascade dev nats`.
const devCluster = "cascade-dev"

// devNATSCmd is `cascade dev nats`: nats-server nodes as child processes (this binary in the
// hidden node mode), so that a test or a user can kill one for real.
func (a *app) devNATSCmd() *cobra.Command {
	var nodes, port, clusterPort int
	var dataDir string
	cmd := &cobra.Command{
		Use:   "nats",
		Short: "Run NATS JetStream on loopback as child processes: one server, or a cluster with --cluster 3",
		Long: `Starts nats-server nodes with JetStream on 127.0.0.1, each its own process (this binary,
re-executed), until Ctrl-C, and prints each node's client URL and pid and the --nats-url list.
With --cluster N (N >= 3 for a quorum) the nodes form a JetStream cluster (routes between
every pair) and scenarios can be kept on up to N replicas (--replicas). Kill a node by its pid
to try a fault; the others go on. It is for trying cascade and for tests, not for production.`,
		Example: `  cascade dev nats --cluster 3 &
  cascade run --nats-url nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224 --replicas 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodes < 1 {
				return usageError("--cluster %d: want 1 (one server) or more nodes", nodes)
			}
			if port < 0 || clusterPort < 0 {
				return usageError("--port and --cluster-port: want a port, or 0 for free ones")
			}
			return a.devNATS(cmd.Context(), nodes, port, clusterPort, dataDir)
		},
	}
	f := cmd.Flags()
	f.IntVar(&nodes, "cluster", 1, "number of nodes (1: a single server; 3 or more for a cluster that survives losing a node)")
	f.IntVar(&port, "port", 4222, "client port of the first node; the others follow (0: free ports)")
	f.IntVar(&clusterPort, "cluster-port", 6222, "route port of the first node; the others follow (0: free ports)")
	f.StringVar(&dataDir, "data-dir", "", "keep each node's store in <dir>/n<i> across restarts (default: a temporary directory removed at exit)")
	return cmd
}

// devNode is one child process of `cascade dev nats`.
type devNode struct {
	name, url string
	cmd       *exec.Cmd
	exited    chan struct{} // closed once the process has exited
}

func (a *app) devNATS(ctx context.Context, n, port, clusterPort int, dataDir string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary to start the nodes: %w", err)
	}
	if dataDir == "" {
		tmp, err := os.MkdirTemp("", "cascade-dev-nats-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dataDir = tmp
	}
	clients, err := devPorts(port, n)
	if err != nil {
		return fmt.Errorf("--port: %w", err)
	}
	var routes []int
	if n > 1 {
		if routes, err = devPorts(clusterPort, n); err != nil {
			return fmt.Errorf("--cluster-port: %w", err)
		}
	}
	running := make([]*devNode, 0, n)
	defer func() {
		for _, d := range running {
			d.stop()
		}
	}()
	ready, exits := make(chan error, n), make(chan *devNode, n)
	for i := range n {
		name := "n" + strconv.Itoa(i+1)
		args := []string{"dev", "nats-node", "--name", name, "--listen", "127.0.0.1:" + strconv.Itoa(clients[i]),
			"--data-dir", filepath.Join(dataDir, name), "--log-level", a.g.logLevel, "--log-format", "json"}
		if n > 1 {
			args = append(args, "--cluster-name", devCluster, "--cluster-listen", "127.0.0.1:"+strconv.Itoa(routes[i]),
				"--routes", routeList(routes))
		}
		d, err := startDevNode(exe, name, args, a.Stderr, ready, exits)
		if err != nil {
			return err
		}
		running = append(running, d)
	}
	deadline := time.After(30 * time.Second)
	for range n {
		select {
		case err := <-ready:
			if err != nil {
				return err
			}
		case <-deadline:
			return errors.New("the nodes did not start within 30s")
		case <-ctx.Done():
			return nil
		}
	}
	urls := make([]string, n)
	for i, d := range running {
		urls[i] = d.url
	}
	if err := waitJetStream(ctx, strings.Join(urls, ",")); err != nil {
		return err
	}
	what := "a NATS JetStream server"
	if n > 1 {
		what = fmt.Sprintf("a NATS JetStream cluster %s of %d nodes (up to %d replicas)", devCluster, n, n)
	}
	fmt.Fprintf(a.Stdout, "%s ready; Ctrl-C stops it\n", what)
	for _, d := range running {
		fmt.Fprintf(a.Stdout, "node %s  %s  pid %d\n", d.name, d.url, d.cmd.Process.Pid)
	}
	fmt.Fprintf(a.Stdout, "--nats-url %s\n", strings.Join(urls, ","))
	// A node killed from outside is reported; the others go on until Ctrl-C.
	for left := n; ; {
		select {
		case <-ctx.Done():
			return nil
		case d := <-exits:
			a.log.Warn().Str("node", d.name).Int("pid", d.cmd.Process.Pid).
				Msgf("node %s (pid %d) exited: %v", d.name, d.cmd.Process.Pid, d.cmd.ProcessState)
			if left--; left == 0 {
				return errors.New("every node exited")
			}
		}
	}
}

func routeList(ports []int) string {
	urls := make([]string, len(ports))
	for i, p := range ports {
		urls[i] = "nats://127.0.0.1:" + strconv.Itoa(p)
	}
	return strings.Join(urls, ",")
}

// devPorts is first and the n-1 ports after it, or n free ports when first is 0.
func devPorts(first, n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		if first != 0 {
			ports[i] = first + i
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// startDevNode starts one node; it sends nil on ready when the node prints its client URL,
// or why it did not, and the node on exits when it has exited. The node's stderr (its log)
// goes to logs.
func startDevNode(exe, name string, args []string, logs io.Writer, ready chan<- error, exits chan<- *devNode) (*devNode, error) {
	c := exec.Command(exe, args...)
	c.Stderr = logs
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM} // no node outlives this process
	out, err := c.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("start node %s: %w", name, err)
	}
	d := &devNode{name: name, cmd: c, exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		said := false
		for sc.Scan() {
			if url, ok := strings.CutPrefix(sc.Text(), nodeReady); ok && !said {
				d.url, said = url, true
				ready <- nil
			}
		}
		err := c.Wait()
		if !said {
			ready <- fmt.Errorf("node %s exited before it was ready: %v", name, err)
		}
		close(d.exited)
		exits <- d
	}()
	return d, nil
}

// stop asks the node to shut down and waits for it; after 10s it is killed.
func (d *devNode) stop() {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}

// waitJetStream waits until JetStream answers at url: on a cluster, once it has elected
// its meta leader.
func waitJetStream(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect to the nodes: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		switch {
		case err == nil, ctx.Err() != nil:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("JetStream did not become ready within 30s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nodeReady starts the line a node prints on stdout once it accepts clients.
const nodeReady = "ready "

// devNodeCmd is the hidden node mode of `cascade dev nats`: one embedded nats-server until
// SIGTERM or Ctrl-C.
func (a *app) devNodeCmd() *cobra.Command {
	var so natsjs.ServerOptions
	var routes string
	cmd := &cobra.Command{
		Use:    "nats-node",
		Short:  "One node of `cascade dev nats` (started by it)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if routes != "" {
				so.Cluster.Routes = strings.Split(routes, ",")
			}
			if err := os.MkdirAll(so.DataDir, 0o755); err != nil {
				return fmt.Errorf("--data-dir: %w", err)
			}
			ns, err := natsjs.StartServer(so)
			if err != nil {
				return err
			}
			a.log.Info().Str("node", so.Name).Str("url", ns.ClientURL()).Msg("node ready")
			fmt.Fprintln(a.Stdout, nodeReady+ns.ClientURL())
			<-cmd.Context().Done()
			ns.Shutdown()
			ns.WaitForShutdown()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&so.Name, "name", "n1", "server name")
	f.StringVar(&so.Listen, "listen", "127.0.0.1:4222", "client address")
	f.StringVar(&so.DataDir, "data-dir", "", "JetStream store")
	f.StringVar(&so.Cluster.Name, "cluster-name", "", "cluster name (none: a single server)")
	f.StringVar(&so.Cluster.Listen, "cluster-listen", "", "route address")
	f.StringVar(&routes, "routes", "", "comma-separated route URLs of every node")
	return cmd
}
