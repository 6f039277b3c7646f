package conformance

import (
	"bufio"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/event"
)

// netnsNodeArg makes this test binary one node of a netnsCluster (see TestMain): a
// nats-server on a namespace's address, which cascade's embedded server refuses (it keeps
// clusters on loopback), with JetStream and routes; it prints "ready <url>" once it accepts
// clients and runs until killed. Its arguments: name, address, store, routes.
const netnsNodeArg = "netns-node"

func runNetnsNode(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("%s NAME IP DIR ROUTES", netnsNodeArg)
	}
	var routes []*url.URL
	for r := range strings.SplitSeq(args[3], ",") {
		u, err := url.Parse(r)
		if err != nil {
			return err
		}
		routes = append(routes, u)
	}
	ns, err := server.NewServer(&server.Options{ServerName: args[0], Host: args[1], Port: 4222, JetStream: true, StoreDir: args[2],
		Cluster: server.ClusterOpts{Name: "cascade-netns", Host: args[1], Port: 6222}, Routes: routes})
	if err != nil {
		return err
	}
	go ns.Start()
	if !ns.ReadyForConnections(60 * time.Second) {
		return errors.New("not ready within 60s")
	}
	fmt.Println("ready " + ns.ClientURL())
	ns.WaitForShutdown()
	return nil
}

// netnsCluster is a 3-node cluster whose nodes are processes in network namespaces of
// their own, each joined to a bridge in the test's namespace by a veth pair: setting a
// node's link down cuts it off from the other nodes and from the clients.
type netnsCluster struct {
	t      *testing.T
	prefix string   // of the namespaces' and links' names
	ips    []string // of the nodes
	links  []string // the bridge side of each node's veth pair
}

// ipCmd runs ip with args and returns why it failed.
func ipCmd(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// newNetnsCluster makes the namespaces and starts the nodes in them, or skips t when this
// machine cannot make network namespaces (not root, no ip, no CAP_NET_ADMIN).
func newNetnsCluster(t *testing.T) *netnsCluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipped: no ip command (iproute2) to make network namespaces")
	}
	id := os.Getpid() % 10000
	c := &netnsCluster{t: t, prefix: "cas" + strconv.Itoa(id)}
	net := fmt.Sprintf("10.%d.%d", 100+id/250%100, id%250)
	bridge := c.prefix + "br"
	if err := ipCmd("link", "add", bridge, "type", "bridge"); err != nil {
		t.Skipf("skipped: cannot make a bridge for network namespaces here: %v", err)
	}
	t.Cleanup(func() { _ = ipCmd("link", "del", bridge) })
	for _, args := range [][]string{{"addr", "add", net + ".1/24", "dev", bridge}, {"link", "set", bridge, "up"}} {
		if err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		ns, host, peer := fmt.Sprintf("%sn%d", c.prefix, i+1), fmt.Sprintf("%sh%d", c.prefix, i+1), fmt.Sprintf("%sp%d", c.prefix, i+1)
		ip := fmt.Sprintf("%s.%d", net, 10+i)
		if err := ipCmd("netns", "add", ns); err != nil {
			t.Skipf("skipped: cannot make a network namespace here: %v", err)
		}
		t.Cleanup(func() { _ = ipCmd("netns", "del", ns) })
		for _, args := range [][]string{
			{"link", "add", host, "type", "veth", "peer", "name", peer},
			{"link", "set", host, "master", bridge},
			{"link", "set", host, "up"},
			{"link", "set", peer, "netns", ns},
			{"-n", ns, "addr", "add", ip + "/24", "dev", peer},
			{"-n", ns, "link", "set", peer, "up"},
			{"-n", ns, "link", "set", "lo", "up"},
		} {
			if err := ipCmd(args...); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { _ = ipCmd("link", "del", host) })
		c.ips, c.links = append(c.ips, ip), append(c.links, host)
	}
	routes := make([]string, 3)
	for i, ip := range c.ips {
		routes[i] = "nats://" + ip + ":6222"
	}
	ready := make(chan error, 3)
	for i, ip := range c.ips {
		cmd := exec.Command("ip", "netns", "exec", fmt.Sprintf("%sn%d", c.prefix, i+1), os.Args[0],
			netnsNodeArg, fmt.Sprintf("n%d", i+1), ip, t.TempDir(), strings.Join(routes, ","))
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		logs := &SyncBuffer{}
		cmd.Stderr = logs
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			sc, said := bufio.NewScanner(out), false
			for sc.Scan() {
				if !said && strings.HasPrefix(sc.Text(), "ready ") {
					said = true
					ready <- nil
				}
			}
			if !said {
				ready <- fmt.Errorf("node n%d exited before it was ready: %s", i+1, logs.String())
			}
			_ = cmd.Wait()
			close(done)
		}()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-done
		})
	}
	for range 3 {
		select {
		case err := <-ready:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("the nodes in their namespaces were not ready within 60s")
		}
	}
	return c
}

func (c *netnsCluster) url() string {
	urls := make([]string, len(c.ips))
	for i, ip := range c.ips {
		urls[i] = "nats://" + ip + ":4222"
	}
	return strings.Join(urls, ",")
}

// leader waits for the stream of base to have a leader and returns its node's index.
func (c *netnsCluster) leader(t *testing.T, r *faultRun, not int) int {
	t.Helper()
	i := -1
	Eventually(t, 60*time.Second, "a leader of the scenario's stream", func() error {
		st, err := r.js.Stream(t.Context(), event.StreamName("base"))
		if err != nil {
			return err
		}
		info, err := st.Info(t.Context())
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return fmt.Errorf("no leader")
		}
		if i, err = strconv.Atoi(strings.TrimPrefix(info.Cluster.Leader, "n")); err != nil {
			return err
		}
		if i--; i == not {
			return fmt.Errorf("node n%d still leads", i+1)
		}
		return nil
	})
	return i
}

// The node leading the scenario's stream is cut off from the others and from the clients
// (its link set down) mid-stream; the two left elect a new leader and take the rest of the
// signals; the link comes back up and the node catches up: nothing lost, nothing twice.
func TestFaultNodeCutOff(t *testing.T) {
	t.Parallel()
	c := newNetnsCluster(t)
	r := faultRunOn(t, c.url(), 107)
	// The test's own view of the stream: a connection to the cut-off node notices in ~2s.
	r.js = JetStream(t, c.url(), nats.PingInterval(time.Second), nats.MaxPingsOutstanding(2))
	serve(t, r.b, event.ConsumerLayers, consumers.Chained)
	half := len(r.raws) / 2
	r.publish(t, r.raws[:half])
	i := c.leader(t, r, -1)
	if err := ipCmd("link", "set", c.links[i], "down"); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	r.publish(t, r.raws[half:])
	j := c.leader(t, r, i)
	t.Logf("node n%d cut off; the rest of the signals taken and n%d leading after %s", i+1, j+1, time.Since(cut).Round(time.Millisecond))
	if err := ipCmd("link", "set", c.links[i], "up"); err != nil {
		t.Fatal(err)
	}
	r.settle(t)
	t.Logf("all derived once %s after the cut", time.Since(cut).Round(time.Millisecond))
}
