package cli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/kafka"
	"github.com/layercake/cascade/internal/broker/kafka/kafkatest"
	"github.com/layercake/cascade/internal/cli"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/totals"
	"github.com/layercake/cascade/internal/tree"
	"github.com/layercake/cascade/internal/view"
	"github.com/layercake/cascade/producers"
)

// TestRunChild is `cascade` with the arguments in CASCADE_CLI_CHILD_ARGS (one a line), for
// tests that kill it: the child of TestKill9RunThenResend.
func TestRunChild(t *testing.T) {
	args := os.Getenv("CASCADE_CLI_CHILD_ARGS")
	if args == "" {
		t.Skip("the child of TestKill9RunThenResend")
	}
	code := cli.Main{Stdin: strings.NewReader(""), Stdout: os.Stdout, Stderr: os.Stderr, Args: strings.Split(args, "\n"), Getenv: func(string) string { return "" }}.Run(context.Background())
	t.Fatalf("cascade exited with %d", code)
}

// kill -9 of `run` while a file is being published, a restart after three de-dup windows,
// and the file sent again: every id is in every feed once (on NATS the stream stores each
// once; on Kafka, which stores a signal sent again, every derived id is still stored once),
// the signals sent again publish nothing, and the view's totals are those `calc` gives for
// the signals sent once.
func TestKill9RunThenResend(t *testing.T) {
	t.Parallel()
	t.Run("nats", func(t *testing.T) {
		t.Parallel()
		b, url := conformance.NATS(t)
		kill9ThenResend(t, []string{"--nats-url", url}, []string{"--dedup-window", "2s", "--ack-wait", "10s"}, b, b, 2*time.Second)
	})
	t.Run("kafka", func(t *testing.T) {
		t.Parallel()
		addrs := kafkatest.Cluster(t)
		connect := func(dedup int) broker.Broker {
			b, err := kafka.Connect(t.Context(), kafka.Options{Brokers: addrs, FeedDedup: dedup, JoinDelay: 100 * time.Millisecond, SessionTimeout: 2 * time.Second, HeartbeatInterval: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			return b
		}
		kill9ThenResend(t, []string{"--kafka-brokers", strings.Join(addrs, ",")}, nil, connect(0), connect(-1), 0)
	})
}

// kill9ThenResend is TestKill9RunThenResend on the broker flags given (and the storage flags
// of run); b reads as every reader does, raw reads what is stored (no feed de-duplication).
func kill9ThenResend(t *testing.T, flags, storage []string, b, raw broker.Broker, window time.Duration) {
	dir := t.TempDir()
	file := filepath.Join(dir, "signals.ndjson")
	g := producers.NewGenerator(11, "resend-", time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC), 13*time.Minute)
	var lines []string
	for range 1000 {
		lines = append(lines, string(g.Next()))
	}
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func() (*exec.Cmd, *conformance.SyncBuffer) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRunChild$", "-test.count=1")
		args := append(append(append([]string{"run"}, flags...), storage...), "--data-dir", filepath.Join(dir, "data"), "--http-listen", "", "--log-format", "json")
		cmd.Env = append(os.Environ(), "CASCADE_CLI_CHILD_ARGS="+strings.Join(args, "\n"))
		logs := &conformance.SyncBuffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		conformance.Eventually(t, 20*time.Second, "run to serve", logs.Holds("serving"))
		return cmd, logs
	}
	publish := func() []producers.Result {
		code, out, stderr := run(t.Context(), "", nil, append(append([]string{"publish"}, flags...), file)...)
		if code != 0 {
			t.Errorf("publish: %d %s", code, stderr)
		}
		var rs []producers.Result
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			var r producers.Result
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("answer %q: %v", sc.Text(), err)
			}
			rs = append(rs, r)
		}
		return rs
	}
	errFound := errors.New("found")
	grid := broker.FeedOptions{Selector: broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindDemand}, Layers: []event.Layer{event.Grid}}, FromStart: true}

	child, _ := start()
	published := make(chan []producers.Result, 1)
	go func() { published <- publish() }()
	// Killed once the pipeline has placed demand on the grid, with the file still going in.
	conformance.Eventually(t, 20*time.Second, "grid demand", func() error {
		err := broker.Each(t.Context(), b, grid, func(broker.Delivery) error { return errFound })
		if errors.Is(err, errFound) {
			return nil
		}
		return fmt.Errorf("none yet (%v)", err)
	})
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	died := time.Now()
	<-published
	conformance.Eventually(t, 3*window+5*time.Second, "three de-dup windows to pass", func() error {
		if d := time.Since(died); d < 3*window {
			return fmt.Errorf("%s since the kill", d)
		}
		return nil
	})
	start()

	// What calc derives from the file, each signal once.
	want := totals.New(false)
	ids := map[string]bool{}
	code, out, stderr := run(t.Context(), "", nil, "calc", "--json", file)
	if code != 0 {
		t.Fatalf("calc: %d %s", code, stderr)
	}
	var walk func(n *tree.Node, root bool)
	walk = func(n *tree.Node, root bool) {
		ids[n.Event.ID] = true
		subject := event.DemandSubject("base", event.LayerOf(n.Event.Type), n.Event.Subject)
		if root {
			subject = event.SignalSubject("base", event.InputLayer(n.Event.Type), n.Event.Subject)
		}
		want.AddStored(subject, n.Event, n.Payload)
		for _, c := range n.Children {
			walk(c, false)
		}
	}
	for line := range strings.Lines(out) {
		var n tree.Node
		if err := json.Unmarshal([]byte(line), &n); err != nil {
			t.Fatalf("calc line %q: %v", line, err)
		}
		walk(&n, true)
	}

	// The file sent again: whatever run's view already holds is answered as a duplicate; the
	// rest the stages skip, their ids held at other positions.
	dups := 0
	for _, r := range publish() {
		if r.Duplicate {
			dups++
		}
	}
	if b.Features().RequestReply && dups == 0 {
		t.Errorf("publish answered none of %d signals sent again as a duplicate", len(lines))
	}
	conformance.Eventually(t, 60*time.Second, "the view's totals to equal calc's", func() error {
		code, out, stderr := run(t.Context(), "", nil, append([]string{"totals", "--json"}, flags...)...)
		if code != 0 {
			return fmt.Errorf("totals: %d %s", code, stderr)
		}
		var got query.Totals
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			return err
		}
		if got.Events != want.Events() || !reflect.DeepEqual(got.Rows, want.Rows()) {
			return fmt.Errorf("view %d events, calc %d", got.Events, want.Events())
		}
		return nil
	})
	// run's stage has read everything, the signals sent again included.
	chain := consumers.Group(event.ConsumerLayers, consumers.Chained)[0]
	conformance.Eventually(t, 60*time.Second, "run's stage to catch up", func() error {
		if n, err := b.StageLag(t.Context(), "base", chain); err != nil || n > 0 {
			return fmt.Errorf("lag %d (%v)", n, err)
		}
		return nil
	})
	// Every id once in every feed; on the raw store too, but for signals sent again on a
	// broker without request/reply (Kafka), which publish stores and the stages skip.
	count := func(rb broker.Broker, kinds []event.Kind) map[string]int {
		n := map[string]int{}
		err := broker.Each(t.Context(), rb, broker.FeedOptions{Selector: broker.Selector{Scenario: "base", Kinds: kinds}, FromStart: true}, func(d broker.Delivery) error {
			n[d.Message().ID]++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	signals := raw
	if !b.Features().RequestReply {
		signals = b
	}
	stored := count(raw, []event.Kind{event.KindDemand})
	for id, n := range count(signals, []event.Kind{event.KindSignal}) {
		stored[id] += n
	}
	twice := 0
	for id, n := range stored {
		if n != 1 {
			twice++
			if twice <= 5 {
				t.Errorf("%s stored %d times", id, n)
			}
		}
	}
	if twice > 0 || len(stored) != len(ids) {
		t.Errorf("%d ids stored more than once; %d distinct stored, calc %d", twice, len(stored), len(ids))
	}
	t.Logf("%d signals, %d ids; %d answered as duplicates when sent again", len(lines), len(ids), dups)
}

// `cascade view` answers the id set over request/reply, for `consume` processes whose
// stages ask it before publishing a possible redelivery.
func TestViewProcessAnswersTheIDSet(t *testing.T) {
	t.Parallel()
	b, url := conformance.NATS(t)
	if err := consumers.BindScenario(t.Context(), b, "base", coefficients.Default(), broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	res, err := (&producers.Publisher{Broker: b, Scenario: "base"}).Publish(t.Context(), []producers.Item{{Line: 1, Raw: []byte(adoptionUS)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx, "", nil, "view", "--nats-url", url, "--index-dir", t.TempDir(), "--http-listen", "127.0.0.1:0")
	}()
	t.Cleanup(func() { cancel(); <-done })
	conformance.Eventually(t, 20*time.Second, "cascade view to hold the signal", func() error {
		pos, err := view.Remote{B: b}.HeldAt(t.Context(), "base", []string{res[0].ID, "never-sent"}, time.Time{})
		if err != nil {
			return err
		}
		if pos[0] == "" || pos[1] != "" {
			return fmt.Errorf("positions %q", pos)
		}
		return nil
	})
}
