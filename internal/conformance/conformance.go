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
	t.Run("EndToEnd", func(t *testing.T) { t.Parallel(); testEndToEnd(t, h) })
	t.Run("Determinism", func(t *testing.T) { t.Parallel(); testDeterminism(t, h) })
	t.Run("BadInput", func(t *testing.T) { t.Parallel(); testBadInput(t, h) })
	t.Run("Crash", func(t *testing.T) { t.Parallel(); testCrash(t, h) })
	t.Run("CrashAfterWindow", func(t *testing.T) { t.Parallel(); testCrashAfterWindow(t, h) })
	t.Run("Registry", func(t *testing.T) { t.Parallel(); testRegistry(t, h) })
	t.Run("Checkpoints", func(t *testing.T) { t.Parallel(); testCheckpoints(t, h) })
	t.Run("Features", func(t *testing.T) { t.Parallel(); testFeatures(t, h) })
	t.Run("Feed", func(t *testing.T) { t.Parallel(); testFeed(t, h) })
	t.Run("Republish", func(t *testing.T) { t.Parallel(); testRepublish(t, h) })
	t.Run("Commit", func(t *testing.T) { t.Parallel(); testCommit(t, h) })
	t.Run("Errors", func(t *testing.T) { t.Parallel(); testErrors(t, h) })
	t.Run("SharedLayer", func(t *testing.T) { t.Parallel(); testSharedLayer(t, h) })
	t.Run("ReadToEndWhileLive", func(t *testing.T) { t.Parallel(); testReadToEndWhileLive(t, h) })
	t.Run("HistoryReplay", func(t *testing.T) { t.Parallel(); testHistoryReplay(t, h) })
	t.Run("WhatIf", func(t *testing.T) { t.Parallel(); testWhatIf(t, h) })
	t.Run("TraceAndRange", func(t *testing.T) { t.Parallel(); testTraceAndRange(t, h) })
	t.Run("Select", func(t *testing.T) { t.Parallel(); testSelect(t, h) })
	t.Run("IndexedTrace", func(t *testing.T) { t.Parallel(); testIndexedTrace(t, h) })
	t.Run("ViewTotals", func(t *testing.T) { t.Parallel(); testViewTotals(t, h) })
	t.Run("ViewSnapshotFeed", func(t *testing.T) { t.Parallel(); testViewSnapshotFeed(t, h) })
	t.Run("Stages", func(t *testing.T) { t.Parallel(); testStages(t, h) })
	t.Run("StageOverlap", func(t *testing.T) { t.Parallel(); testStageOverlap(t, h) })
	t.Run("ChainedCrash", func(t *testing.T) { t.Parallel(); testChainedCrash(t, h) })
	t.Run("TakeOver", func(t *testing.T) { t.Parallel(); testTakeOver(t, h) })
	t.Run("Chained", func(t *testing.T) {
		t.Parallel()
		c := h
		c.Stages = consumers.Chained
		t.Run("EndToEnd", func(t *testing.T) { t.Parallel(); testEndToEnd(t, c) })
		t.Run("Determinism", func(t *testing.T) { t.Parallel(); testDeterminism(t, c) })
		t.Run("BadInput", func(t *testing.T) { t.Parallel(); testBadInput(t, c) })
		t.Run("HistoryReplay", func(t *testing.T) { t.Parallel(); testHistoryReplay(t, c) })
		t.Run("WhatIf", func(t *testing.T) { t.Parallel(); testWhatIf(t, c) })
		t.Run("IndexedTrace", func(t *testing.T) { t.Parallel(); testIndexedTrace(t, c) })
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
