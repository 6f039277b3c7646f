package consumers_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/tree"
)

// gatedBroker holds back the answer of every PublishAsync until the test opens the gate, and
// records how many published messages were awaiting their answer at most.
type gatedBroker struct {
	broker.Broker
	mu      sync.Mutex
	open    chan struct{}
	waiting int // messages whose publication is held or not yet answered
	most    int
	calls   int
}

func (g *gatedBroker) PublishAsync(ctx context.Context, msgs []broker.Message) broker.Publication {
	g.mu.Lock()
	g.calls++
	g.waiting += len(msgs)
	g.most = max(g.most, g.waiting)
	g.mu.Unlock()
	p, out := g.Broker.PublishAsync(ctx, msgs), broker.NewPending()
	go func() {
		err := broker.Wait(ctx, p)
		<-g.open
		g.mu.Lock()
		g.waiting -= len(msgs)
		g.mu.Unlock()
		out.Settle(err)
	}()
	return out
}

func (g *gatedBroker) stats() (calls, most int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls, g.most
}

// A stage goes on fetching, deriving and publishing while earlier publications await their
// acknowledgements, never more than MaxInflight messages at once (a batch counting at most
// that), and commits no input before its outputs are acknowledged: with every answer held
// back it has published several batches and committed none; once they come, all are
// committed.
func TestPipelinedPublishingCommitsOnlyAcknowledgedInputs(t *testing.T) {
	t.Parallel()
	b, js := start(t)
	coef := coefficients.Default()
	if err := consumers.BindScenario(t.Context(), b, "t", coef, broker.ScenarioConfig{AckWait: 30 * time.Second}); err != nil {
		t.Fatal(err)
	}
	var msgs []broker.Message
	for i := range 40 {
		msgs = append(msgs, signal("s-"+strconv.Itoa(i)))
	}
	if err := b.Publish(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
	g := &gatedBroker{Broker: b, open: make(chan struct{})}
	per := treeSize(t, coef, msgs[0]) // messages one input's tree through the chain publishes
	window := 2 * per
	r := consumers.New(g, zerolog.Nop(), consumers.Options{Batch: 1, MaxInflight: window})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Stage(ctx, "t", event.Chain, coef) }()
	t.Cleanup(func() { cancel(); <-done })
	conformance.Eventually(t, 10*time.Second, "publications to queue up behind the gate", func() error {
		if calls, _ := g.stats(); calls < 2 {
			return fmt.Errorf("%d publications", calls)
		}
		return nil
	})
	chain := func() (ack uint64, pending int, err error) {
		c, err := js.Consumer(t.Context(), event.StreamName("t"), event.Chain.ConsumerName("t"))
		if err != nil {
			return 0, 0, err
		}
		info, err := c.Info(t.Context())
		if err != nil {
			return 0, 0, err
		}
		return info.AckFloor.Stream, info.NumAckPending, nil
	}
	// The gate stays shut: nothing may be committed, and the window caps what is out.
	if ack, _, err := chain(); err != nil || ack != 0 {
		t.Fatalf("inputs committed up to %d before any output was acknowledged (%v)", ack, err)
	}
	calls, most := g.stats()
	if calls > window/per+1 || most > window {
		t.Errorf("%d publications, %d messages awaiting answers at most: over the window of %d", calls, most, window)
	}
	close(g.open)
	conformance.Eventually(t, 10*time.Second, "every input committed", func() error {
		ack, pending, err := chain()
		if err != nil {
			return err
		}
		if ack < uint64(len(msgs)) || pending != 0 {
			return fmt.Errorf("committed up to %d of %d, %d unacknowledged", ack, len(msgs), pending)
		}
		return nil
	})
	if _, most := g.stats(); most > window {
		t.Errorf("%d messages awaiting answers at most, window %d", most, window)
	}
}

// treeSize is the number of events the chain derives from msg with coef.
func treeSize(t *testing.T, coef *coefficients.Loaded, msg broker.Message) int {
	t.Helper()
	ev, p, err := event.Decode(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	root, err := tree.Expand(t.Context(), coef, ev, p)
	if err != nil {
		t.Fatal(err)
	}
	var count func(n *tree.Node) int
	count = func(n *tree.Node) int {
		c := len(n.Children)
		for _, k := range n.Children {
			c += count(k)
		}
		return c
	}
	return count(root)
}
