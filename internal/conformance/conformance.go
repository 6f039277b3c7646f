// Package conformance is the one suite every broker adapter must pass: the port (feeds,
// commits, lag, republishing, error classes, the registry) and the whole pipeline end to end,
// determinism across fresh stores, bad input to the dead-letter subject, and a layer killed
// mid-stream. Adapter packages call Run from their tests with a real in-process broker.
//
// Tests are gated by the broker's Features, as Watermill's pub/sub suite is: a test that needs
// a capability skips, saying so, on a broker that does not declare it, and where a broker
// without a capability must do something else instead (readers counting an id once where
// there is no de-duplication), that is what the test asserts there.
package conformance

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/natsjs"
)

// Harness starts brokers for the suite.
type Harness struct {
	// Fresh starts a new, empty broker (its own store) and returns a function that opens
	// connections to it; everything is torn down by t.Cleanup.
	Fresh func(t *testing.T) (connect func(t *testing.T) broker.Broker)
	// Kill closes a connection abruptly: nothing in flight is acknowledged or flushed, as when
	// the process holding it is killed.
	Kill func(b broker.Broker)
	// Stopped returns a connection made to a broker of its own that then stopped (its server
	// shut down, the connection left open); it is closed by t.Cleanup.
	Stopped func(t *testing.T) broker.Broker
	// Only, if set, names the tests to run (a cluster harness runs a subset to keep CI
	// short); nil runs every test.
	Only []string
	// Serial runs the tests one after another instead of in parallel (a cluster harness:
	// each test starts servers of its own, several each).
	Serial bool
	// AckWait is the redelivery delay: the suite gives it as ScenarioConfig.AckWait to the
	// scenarios it owns (NATS uses it; on Kafka it is the harness's session timeout); the
	// crash and commit tests wait for it.
	AckWait time.Duration
	// Stages is how the suite's pipelines group their layers; Run sets it to run the tests
	// of the whole pipeline once per layer (consumers.PerLayer) and once chained.
	Stages consumers.Stages
}

// Run runs every conformance test against h.
func Run(t *testing.T, h Harness) {
	h.run(t, "EndToEnd", testEndToEnd)
	h.run(t, "Determinism", testDeterminism)
	h.run(t, "BadInput", testBadInput)
	h.run(t, "Crash", testCrash)
	h.run(t, "CrashAfterWindow", testCrashAfterWindow)
	h.run(t, "Registry", testRegistry)
	h.run(t, "Checkpoints", testCheckpoints)
	h.run(t, "Features", testFeatures)
	h.run(t, "Feed", testFeed)
	h.run(t, "Republish", testRepublish)
	h.run(t, "Commit", testCommit)
	h.run(t, "Errors", testErrors)
	h.run(t, "SharedLayer", testSharedLayer)
	h.run(t, "ReadToEndWhileLive", testReadToEndWhileLive)
	h.run(t, "HistoryReplay", testHistoryReplay)
	h.run(t, "WhatIf", testWhatIf)
	h.run(t, "TraceAndRange", testTraceAndRange)
	h.run(t, "Select", testSelect)
	h.run(t, "IndexedTrace", testIndexedTrace)
	h.run(t, "ViewTotals", testViewTotals)
	h.run(t, "ViewSnapshotFeed", testViewSnapshotFeed)
	h.run(t, "Stages", testStages)
	h.run(t, "StageOverlap", testStageOverlap)
	h.run(t, "ChainedCrash", testChainedCrash)
	h.run(t, "TakeOver", testTakeOver)
	h.run(t, "Chained", func(t *testing.T, h Harness) {
		c := h
		c.Stages = consumers.Chained
		c.Only = nil
		c.run(t, "EndToEnd", testEndToEnd)
		c.run(t, "Determinism", testDeterminism)
		c.run(t, "BadInput", testBadInput)
		c.run(t, "HistoryReplay", testHistoryReplay)
		c.run(t, "WhatIf", testWhatIf)
		c.run(t, "IndexedTrace", testIndexedTrace)
	})
}

// run runs test as the subtest name (parallel unless h.Serial), if h runs it.
func (h Harness) run(t *testing.T, name string, test func(*testing.T, Harness)) {
	if h.Only != nil && !slices.Contains(h.Only, name) {
		return
	}
	t.Run(name, func(t *testing.T) {
		if !h.Serial {
			t.Parallel()
		}
		test(t, h)
	})
}

// Eventually polls cond every 20ms until it returns nil or total elapses, and then fails
// the test with cond's last error, saying what was still wrong; the one polling helper of
// every broker-backed test.
func Eventually(t testing.TB, total time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", total, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SyncBuffer collects what a running command writes while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Holds returns a condition for Eventually: nil once what was written contains want, else
// an error quoting the end of what was written.
func (s *SyncBuffer) Holds(want string) func() error {
	return func() error {
		got := s.String()
		if strings.Contains(got, want) {
			return nil
		}
		return fmt.Errorf("%q not written yet; the last of %d bytes: %q", want, len(got), got[max(0, len(got)-300):])
	}
}

// JetStream connects a plain nats.go client to url for a test to look at the broker as any
// other client would (stream and consumer state, raw messages); it is closed by t.Cleanup.
func JetStream(t *testing.T, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// NATSServer runs an embedded nats-server with JetStream on a free local port, its store in
// t.TempDir(); it is shut down by t.Cleanup.
func NATSServer(t testing.TB) *server.Server {
	t.Helper()
	ns, err := natsjs.StartServer(natsjs.ServerOptions{DataDir: t.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// NATS runs NATSServer and connects a broker to it (closed by t.Cleanup, before the server
// shuts down); it returns the broker and the server's client URL.
func NATS(t testing.TB) (*natsjs.Broker, string) {
	t.Helper()
	ns := NATSServer(t)
	b, err := natsjs.Connect(t.Context(), natsjs.Options{URL: ns.ClientURL(), ConnectWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, ns.ClientURL()
}
