// Package conformance is the one suite every broker adapter must pass: the whole pipeline end
// to end, determinism across fresh stores, bad input to the dead-letter subject, and a layer
// killed mid-stream. Adapter packages call Run from their tests with a real in-process broker.
package conformance

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/layercake/cascade/internal/broker"
)

// Harness starts brokers for the suite.
type Harness struct {
	// Fresh starts a new, empty broker (its own store) and returns a function that opens
	// connections to it; everything is torn down by t.Cleanup.
	Fresh func(t *testing.T) (connect func(t *testing.T) broker.Broker)
	// Kill closes a connection abruptly: nothing in flight is acknowledged or flushed, as when
	// the process holding it is killed.
	Kill func(b broker.Broker)
	// AckWait is the redelivery delay the harness configured; the crash test waits for it.
	AckWait time.Duration
}

// Run runs every conformance test against h.
func Run(t *testing.T, h Harness) {
	t.Run("EndToEnd", func(t *testing.T) { t.Parallel(); testEndToEnd(t, h) })
	t.Run("Determinism", func(t *testing.T) { t.Parallel(); testDeterminism(t, h) })
	t.Run("BadInput", func(t *testing.T) { t.Parallel(); testBadInput(t, h) })
	t.Run("Crash", func(t *testing.T) { t.Parallel(); testCrash(t, h) })
	t.Run("Registry", func(t *testing.T) { t.Parallel(); testRegistry(t, h) })
	t.Run("SharedLayer", func(t *testing.T) { t.Parallel(); testSharedLayer(t, h) })
	t.Run("ReadToEndWhileLive", func(t *testing.T) { t.Parallel(); testReadToEndWhileLive(t, h) })
	t.Run("HistoryReplay", func(t *testing.T) { t.Parallel(); testHistoryReplay(t, h) })
	t.Run("WhatIf", func(t *testing.T) { t.Parallel(); testWhatIf(t, h) })
	t.Run("TraceAndRange", func(t *testing.T) { t.Parallel(); testTraceAndRange(t, h) })
	t.Run("IndexedTrace", func(t *testing.T) { t.Parallel(); testIndexedTrace(t, h) })
}

// Eventually polls cond every 20ms until it holds or total elapses; the one polling helper of
// every broker-backed test.
func Eventually(t *testing.T, total time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(total)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", total, what)
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
