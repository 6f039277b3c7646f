package conformance

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/layercake/cascade/internal/broker/natsjs"
)

// Cluster is a JetStream cluster of in-process nats-server nodes on loopback, each with its
// store in a t.TempDir() and fixed ports, so that a node stopped with Kill comes back with
// Restart as the same peer (same name, store and addresses). Every node is shut down by
// t.Cleanup.
type Cluster struct {
	t     testing.TB
	opts  []natsjs.ServerOptions
	nodes []*server.Server // nil: stopped
}

// NATSCluster starts a JetStream cluster of n nodes (routes between every pair) and waits
// until it has a meta leader that sees every peer.
func NATSCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	client, routes := freePorts(t, n), freePorts(t, n)
	urls := make([]string, n)
	for i := range n {
		urls[i] = "nats://127.0.0.1:" + strconv.Itoa(routes[i])
	}
	c := &Cluster{t: t, nodes: make([]*server.Server, n)}
	for i := range n {
		c.opts = append(c.opts, natsjs.ServerOptions{
			DataDir: t.TempDir(),
			Listen:  "127.0.0.1:" + strconv.Itoa(client[i]),
			Name:    fmt.Sprintf("n%d", i+1),
			Cluster: natsjs.ClusterOptions{Name: "cascade-test", Listen: "127.0.0.1:" + strconv.Itoa(routes[i]), Routes: urls},
			// Three nodes starting together under -race on two busy cores took over 10 s in CI.
			StartTimeout: time.Minute,
		})
	}
	// StartServer waits for each node to accept clients, which a clustered node does only
	// once it sees its routes; start them together.
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- c.start(i) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.Kill(i)
		}
	})
	c.WaitReady(n)
	c.placesStreams(n)
	return c
}

// placesStreams waits until the cluster creates (and deletes) a stream of n replicas: its
// meta layer may have a leader and every peer before it answers a stream create in time (a
// test's first one timed out in CI, under -race on two busy cores).
func (c *Cluster) placesStreams(n int) {
	c.t.Helper()
	nc, err := nats.Connect(c.URL())
	if err != nil {
		c.t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	Eventually(c.t, 2*time.Minute, "the cluster to place a stream", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		const probe = "CASCADE_TEST_PROBE"
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: probe, Subjects: []string{"cascade-test-probe.>"}, Replicas: n, Storage: jetstream.FileStorage})
		if err != nil {
			return err
		}
		return js.DeleteStream(ctx, probe)
	})
}

func (c *Cluster) start(i int) error {
	ns, err := natsjs.StartServer(c.opts[i])
	if err != nil {
		return fmt.Errorf("node %d: %w", i+1, err)
	}
	c.nodes[i] = ns
	return nil
}

// freePorts returns n loopback ports free at the time of the call.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// URL is the client URL of every node, comma-separated, as --nats-url takes it.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.opts))
	for i, o := range c.opts {
		urls[i] = "nats://" + o.Listen
	}
	return strings.Join(urls, ",")
}

// Node is node i's server, nil while it is stopped.
func (c *Cluster) Node(i int) *server.Server { return c.nodes[i] }

// Size is the number of nodes, stopped ones included.
func (c *Cluster) Size() int { return len(c.nodes) }

// Kill shuts node i down (its store stays); a stopped node is left as it is.
func (c *Cluster) Kill(i int) {
	if ns := c.nodes[i]; ns != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		c.nodes[i] = nil
	}
}

// Restart starts stopped node i again with its store, name and ports.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.nodes[i] != nil {
		c.t.Fatalf("node %d is running", i+1)
	}
	if err := c.start(i); err != nil {
		c.t.Fatal(err)
	}
}

// StreamLeader is the index of the running node leading stream (in the default account),
// or -1 while there is none.
func (c *Cluster) StreamLeader(stream string) int {
	for i, ns := range c.nodes {
		if ns != nil && ns.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// WaitReady waits until a running node is the meta leader, it sees peers peers, and every
// running node is current with it.
func (c *Cluster) WaitReady(peers int) {
	c.t.Helper()
	Eventually(c.t, 60*time.Second, "the cluster's meta leader", func() error {
		var leader *server.Server
		for _, ns := range c.nodes {
			if ns != nil && ns.JetStreamIsLeader() {
				leader = ns
			}
		}
		if leader == nil {
			return fmt.Errorf("no meta leader")
		}
		if got := len(leader.JetStreamClusterPeers()); got < peers {
			return fmt.Errorf("the meta leader sees %d of %d peers", got, peers)
		}
		for i, ns := range c.nodes {
			if ns != nil && !ns.JetStreamIsCurrent() {
				return fmt.Errorf("node %d is not current", i+1)
			}
		}
		return nil
	})
}
