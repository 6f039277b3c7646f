package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
)

// portSignals are n messages on the application layer's signal subject, all with one key (so
// one Kafka partition, and one order on both brokers).
func portSignals(s, prefix string, n int) []broker.Message {
	out := make([]broker.Message, n)
	for i := range out {
		id := fmt.Sprintf("%s-%d", prefix, i)
		out[i] = broker.Message{Subject: event.SignalSubject(s, event.Application, "us"), ID: id, Key: prefix, Data: []byte(`{"id":"` + id + `"}`)}
	}
	return out
}

// FetchN fetches from c until it has n deliveries or total passes.
func FetchN(t *testing.T, c broker.Consumer, n int, total time.Duration) []broker.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), total)
	defer cancel()
	var got []broker.Delivery
	for len(got) < n {
		batch, err := c.Fetch(ctx, n-len(got))
		if err != nil {
			t.Fatalf("fetch after %d of %d: %v", len(got), n, err)
		}
		got = append(got, batch...)
	}
	return got
}

func ids(ds []broker.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Message().ID
	}
	return out
}

// openConsumer opens the consumer of layer l in scenario s on b as the router does: a
// transient refusal (a cluster node that does not know the stream's leader yet answers "no
// responders") is tried again until it passes; any other error fails the test.
func openConsumer(t *testing.T, b broker.Broker, s string, l event.Layer) broker.Consumer {
	t.Helper()
	var c broker.Consumer
	err := untilSettled(t, func() (err error) {
		c, err = b.Consumer(t.Context(), s, l)
		return err
	})
	if err != nil {
		t.Fatalf("consumer of %s: %v", l, err)
	}
	return c
}

// freshBound starts a fresh broker and binds scenario base on a first connection as an owner
// does: the storage with the harness's ack wait, recorded in the binding, which consumers on
// other connections go by. It returns how to open more connections, and the first.
func freshBound(t *testing.T, h Harness) (connect func(t *testing.T) broker.Broker, b broker.Broker) {
	t.Helper()
	connect = h.Fresh(t)
	b = connect(t)
	if err := routerBind(t, b, "base", coefficients.Default(), broker.ScenarioConfig{AckWait: h.AckWait}); err != nil {
		t.Fatal(err)
	}
	return connect, b
}

// Commit: what a consumer committed is not delivered again, what it did not commit comes
// again to the next consumer of its layer, and Lag counts the uncommitted.
func testCommit(t *testing.T, h Harness) {
	connect, b := freshBound(t, h)
	ctx := t.Context()
	if err := b.Publish(ctx, portSignals("base", "c", 6)); err != nil {
		t.Fatal(err)
	}
	lagIs := func(want uint64) func() error { return lagIs(ctx, b, "base", event.Application, want) }
	c1 := openConsumer(t, connect(t), "base", event.Application)
	got := FetchN(t, c1, 6, 20*time.Second)
	if fmt.Sprint(ids(got)) != "[c-0 c-1 c-2 c-3 c-4 c-5]" {
		t.Fatalf("fetched %v, want c-0 to c-5 in order", ids(got))
	}
	for _, ds := range [][]broker.Delivery{got[:3], got[:3], nil} {
		if err := c1.Commit(ctx, ds); err != nil {
			t.Fatalf("commit of %v: %v", ids(ds), err)
		}
	}
	Eventually(t, 10*time.Second, "lag to count the three uncommitted", lagIs(3))
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	c2 := openConsumer(t, connect(t), "base", event.Application)
	defer c2.Close()
	again := FetchN(t, c2, 3, h.AckWait*3+20*time.Second)
	if fmt.Sprint(ids(again)) != "[c-3 c-4 c-5]" {
		t.Fatalf("delivered again %v, want only the uncommitted c-3 c-4 c-5", ids(again))
	}
	// A broker that counts deliveries says these come for the second time; one that does
	// not says 1.
	want := 1
	if b.Features().CountsDeliveries {
		want = 2
	}
	for _, d := range again {
		if d.Deliveries() != want {
			t.Errorf("%s: Deliveries() = %d, want %d (CountsDeliveries %v)", d.Message().ID, d.Deliveries(), want, b.Features().CountsDeliveries)
		}
	}
	if err := c2.Commit(ctx, again); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, "lag 0 once everything is committed", lagIs(0))
	if _, err := b.Lag(ctx, "nowhere", event.Application); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("lag of an unknown scenario: %v, want ErrNotFound", err)
	}
}

// Errors: a request the broker refuses for what it is is permanent, an operation on a killed
// connection fails with ErrClosed, and one against a broker that stopped is transient.
func testErrors(t *testing.T, h Harness) {
	connect, b := freshBound(t, h)
	ctx := t.Context()
	limit := broker.DefaultMaxPayload
	if l, ok := b.(broker.PayloadLimiter); ok {
		limit = l.MaxPayload()
	}
	big := portSignals("base", "big", 1)
	big[0].Data = bytes.Repeat([]byte("x"), limit+1)
	err := b.Publish(ctx, big)
	if !errors.Is(err, broker.ErrPermanent) || broker.Transient(err) || errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("publishing %d bytes over a %d-byte limit: %v; want ErrPermanent, not transient", limit+1, limit, err)
	}
	if err := b.Publish(ctx, portSignals("base", "ok", 1)); err != nil {
		t.Errorf("a good publish after a refused one: %v", err)
	}

	killed := connect(t)
	c := openConsumer(t, killed, "base", event.Application)
	held := FetchN(t, c, 1, 20*time.Second)
	h.Kill(killed)
	err = killed.Publish(ctx, portSignals("base", "dead", 1))
	if !errors.Is(err, broker.ErrClosed) || broker.Transient(err) {
		t.Errorf("publish on a killed connection: %v; want ErrClosed, not transient", err)
	}
	if err := c.Commit(ctx, held); !errors.Is(err, broker.ErrClosed) || broker.Transient(err) {
		t.Errorf("commit on a killed connection: %v; want ErrClosed, not transient", err)
	}
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = c.Fetch(fctx, 1)
	cancel()
	if !errors.Is(err, broker.ErrClosed) {
		t.Errorf("fetch on a killed connection: %v; want ErrClosed", err)
	}
	if _, err := killed.Consumer(ctx, "base", event.Application); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("consumer on a killed connection: %v; want ErrClosed", err)
	}
	// What the killed consumer held, never committed, comes again to a new one.
	next := openConsumer(t, connect(t), "base", event.Application)
	defer next.Close()
	if again := FetchN(t, next, 1, h.AckWait*3+20*time.Second); again[0].Message().ID != held[0].Message().ID {
		t.Errorf("after the kill a new consumer got %s first, want %s, which the killed one held", again[0].Message().ID, held[0].Message().ID)
	}

	stopped := h.Stopped(t)
	for what, op := range map[string]func(context.Context) error{
		"publish":  func(ctx context.Context) error { return stopped.Publish(ctx, portSignals("base", "late", 1)) },
		"registry": func(ctx context.Context) error { _, err := stopped.Registry().List(ctx); return err },
	} {
		octx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := op(octx)
		cancel()
		if err == nil || !broker.Transient(err) {
			t.Errorf("%s against a stopped broker: %v; want a transient error", what, err)
		}
	}
}

// lagIs is a condition for Eventually: layer l of scenario s has want messages uncommitted.
func lagIs(ctx context.Context, b broker.Broker, s string, l event.Layer, want uint64) func() error {
	return func() error {
		n, err := b.Lag(ctx, s, l)
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("lag of %s is %d, want %d", l, n, want)
		}
		return nil
	}
}
