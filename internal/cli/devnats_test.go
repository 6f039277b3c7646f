package cli_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/cli"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
)

// TestMain lets this test binary be cascade itself when `cascade dev nats` or `cascade soak`
// re-executes it as a node or a worker (os.Executable is the test binary here): its first
// argument is then a command, not a -test flag.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := cli.Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Args: os.Args[1:], Getenv: os.Getenv}.Run(ctx)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

var nodeLine = regexp.MustCompile(`(?m)^node (n\d)  (nats://127\.0\.0\.1:\d+)  pid (\d+)$`)

// `cascade dev nats --cluster 3` runs three nodes as processes of their own, prints each
// one's URL and pid, takes a scenario on 3 replicas, survives one node killed (SIGKILL)
// and stops the others at Ctrl-C.
func TestDevNATSCluster(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errb conformance.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Main{Stdout: &out, Stderr: &errb, Args: []string{"dev", "nats", "--cluster", "3", "--port", "0", "--cluster-port", "0", "--data-dir", t.TempDir()}}.Run(ctx)
	}()
	conformance.Eventually(t, 45*time.Second, "the cluster to be ready", func() error {
		select {
		case code := <-done:
			t.Fatalf("dev nats exited %d:\n%s%s", code, out.String(), errb.String())
		default:
		}
		return out.Holds("--nats-url ")()
	})
	if !strings.HasPrefix(out.String(), "a NATS JetStream cluster cascade-dev of 3 nodes (up to 3 replicas) ready") {
		t.Errorf("first line of:\n%s", out.String())
	}
	nodes := nodeLine.FindAllStringSubmatch(out.String(), -1)
	if len(nodes) != 3 {
		t.Fatalf("want 3 node lines in:\n%s", out.String())
	}
	var urls []string
	pids := map[int]bool{}
	for _, n := range nodes {
		urls = append(urls, n[2])
		pid, _ := strconv.Atoi(n[3])
		if pid == os.Getpid() || syscall.Kill(pid, 0) != nil {
			t.Fatalf("node %s: pid %d is not a running child process", n[1], pid)
		}
		pids[pid] = true
	}
	if len(pids) != 3 || !strings.Contains(out.String(), "--nats-url "+strings.Join(urls, ",")+"\n") {
		t.Fatalf("3 distinct pids and the --nats-url list of the nodes' URLs, in:\n%s", out.String())
	}
	env := map[string]string{"CASCADE_NATS_URL": strings.Join(urls, ",")}
	if code, o, e := run(t.Context(), "", env, "scenario", "create", "r3", "--replicas", "3"); code != 0 {
		t.Fatalf("scenario create --replicas 3: exit %d\n%s%s", code, o, e)
	}
	js := conformance.JetStream(t, env["CASCADE_NATS_URL"])
	st, err := js.Stream(t.Context(), event.StreamName("r3"))
	if err != nil {
		t.Fatal(err)
	}
	if info := st.CachedInfo(); info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream of r3: cluster %+v; want a leader and 2 followers", info.Cluster)
	}

	// One node killed for good: reported, and the other two still serve the scenario.
	killed, _ := strconv.Atoi(nodes[0][3])
	if err := syscall.Kill(killed, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	conformance.Eventually(t, 10*time.Second, "the killed node reported", errb.Holds("node n1 (pid "+nodes[0][3]+") exited: signal: killed"))
	// The streams n1 led elect a new leader first (the servers' election timeout, seconds).
	conformance.Eventually(t, 30*time.Second, "scenario show with a node down", func() error {
		if code, o, e := run(t.Context(), "", env, "scenario", "show", "r3"); code != 0 || !strings.Contains(o, "r3") {
			return fmt.Errorf("exit %d\n%s%s", code, o, e)
		}
		return nil
	})

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("dev nats exited %d at Ctrl-C:\n%s", code, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("dev nats did not stop within 20s of Ctrl-C")
	}
	for pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("node pid %d still there after dev nats stopped: %v", pid, err)
		}
	}
}
