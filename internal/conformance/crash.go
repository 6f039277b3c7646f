package conformance

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/totals"
	"github.com/layercake/cascade/producers"
)

// dyingBroker is a real connection whose process dies right after its n-th publish was
// acknowledged by the broker and before the consumer could acknowledge its inputs.
type dyingBroker struct {
	broker.Broker
	n    int32
	kill func()
	dead atomic.Bool
}

// errKilled is what a killed process's connection answers: closed, neither transient nor a
// reason to dead-letter anything.
var errKilled = fmt.Errorf("process killed: %w", broker.ErrClosed)

func (d *dyingBroker) Publish(ctx context.Context, msgs []broker.Message) error {
	if d.dead.Load() {
		return errKilled
	}
	err := d.Broker.Publish(ctx, msgs)
	if atomic.AddInt32(&d.n, -1) == 0 {
		d.dead.Store(true)
		d.kill()
		return errKilled
	}
	return err
}

// PublishAsync dies as Publish does, once its n-th publication was acknowledged.
func (d *dyingBroker) PublishAsync(ctx context.Context, msgs []broker.Message) broker.Publication {
	if d.dead.Load() {
		return broker.Settled(errKilled)
	}
	p, out := d.Broker.PublishAsync(ctx, msgs), broker.NewPending()
	go func() {
		err := broker.Wait(ctx, p)
		if atomic.AddInt32(&d.n, -1) == 0 {
			d.dead.Store(true)
			d.kill()
			err = errKilled
		}
		out.Settle(err)
	}()
	return out
}

// coveringWindow is the de-dup window of the tests whose stages run without a view to ask:
// longer than any of them runs, so the broker's window (NATS), not the view's id set, is what
// they hold to account for repeats after a kill. The default window (10 s) is shorter than a
// few kills and their redeliveries take on a loaded machine; CrashAfterWindow tests what
// happens once a window has passed.
const coveringWindow = 2 * time.Minute

// crashSetup binds scenario "base" on a fresh broker of h with the default coefficients,
// h's ack wait and coveringWindow, and generates n signals (injected chips and infrastructure demand among them)
// with seed and id prefix, with the derived events the formulas give for them.
func crashSetup(t *testing.T, h Harness, seed uint64, prefix string, n int) (connect func(*testing.T) broker.Broker, b broker.Broker, raws []string, want map[string]*event.Event) {
	connect = h.Fresh(t)
	b = connect(t)
	coef := coefficients.Default()
	if err := routerBind(t, b, "base", coef, broker.ScenarioConfig{AckWait: h.AckWait, DedupWindow: coveringWindow}); err != nil {
		t.Fatal(err)
	}
	g := producers.NewGenerator(seed, prefix, signalTime, time.Minute)
	for range n {
		raws = append(raws, string(g.Next()))
	}
	return connect, b, raws, expected(t, coef, "base", raws)
}

func testCrash(t *testing.T, h Harness) {
	connect, b, raws, want := crashSetup(t, h, 42, "crash-", 300)
	s := "base"
	// Every layer but chips runs healthy; chips runs on a connection that dies mid-stream.
	serve(t, b, []event.Layer{event.Application, event.Model, event.Infrastructure, event.Energy}, consumers.PerLayer)
	victim := connect(t)
	dying := &dyingBroker{Broker: victim, n: 3, kill: func() { h.Kill(victim) }}
	stopVictim := serve(t, dying, []event.Layer{event.Chips}, consumers.PerLayer)
	publish(t, b, s, raws)
	Eventually(t, 20*time.Second, "the chips layer to die", func() error {
		if !dying.dead.Load() {
			return fmt.Errorf("%d more publishes before the chips layer dies", atomic.LoadInt32(&dying.n))
		}
		return nil
	})
	stopVictim()
	// A fresh chips process takes over; the inputs the dead one never committed come back
	// (after AckWait on NATS, at its partitions' reassignment on Kafka) and it publishes
	// their outputs, already stored, again.
	serve(t, connect(t), []event.Layer{event.Chips}, consumers.PerLayer)
	waitDemand(t, b, s, len(want))
	Eventually(t, h.AckWait*3+5*time.Second, "redeliveries to settle", lagIs(t.Context(), b, s, event.Chips, 0))
	// What each broker guarantees of those second publishes: with a de-dup window the broker
	// stores each id once, so a feed, which reads what is stored, meets each once; without
	// one the copies are stored, and every reader counts an id once: a feed delivers it once
	// and the totals count it once.
	stored := "stored"
	if b.Features().DedupWindow == 0 {
		stored = "delivered by a feed"
		tot, err := query.SumTotals(t.Context(), b, query.TotalsOptions{Scenario: s})
		if err != nil {
			t.Fatal(err)
		}
		// The reference: the same sum over each id once.
		once, seen := totals.New(false), map[string]bool{}
		for _, m := range readAll(t, b, broker.Selector{Scenario: s, Kinds: totals.Kinds}) {
			if m.ev != nil && !seen[m.ev.ID] {
				seen[m.ev.ID] = true
				once.AddStored(m.subject, m.ev, m.p)
			}
		}
		if tot.Events != once.Events() || !reflect.DeepEqual(tot.Rows, once.Rows()) {
			t.Errorf("totals count %d events without de-duplication, want %d, each id once", tot.Events, once.Events())
		}
	}
	checkDerivedOnce(t, b, s, want, stored)
}

// checkDerivedOnce fails t unless scenario s holds every event of want, each exactly once
// (stored once, or with no de-dup window delivered once by a feed: what stored says), and
// nothing else, with the sums of each type's primary quantity equal to want's, which the
// formulas (`cascade calc`) derived from the same signals.
func checkDerivedOnce(t *testing.T, b broker.Broker, s string, want map[string]*event.Event, stored string) {
	t.Helper()
	got := readAll(t, b, broker.Selector{Scenario: s, Kinds: []event.Kind{event.KindDemand}})
	seen := map[string]int{}
	sums := map[event.Type]float64{}
	for _, m := range got {
		if m.ev == nil {
			t.Fatalf("undecodable %s", m.data)
		}
		seen[m.ev.ID]++
		sums[m.ev.Type] += primaryOf(m.p)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s %s %d times", id, stored, n)
		}
		if _, ok := want[id]; !ok {
			t.Errorf("unexpected %s", id)
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("%d distinct derived events stored, want %d", len(seen), len(want))
	}
	wantSums := map[event.Type]float64{}
	for _, ev := range want {
		p, err := event.DecodePayload(ev.Type, ev.Data)
		if err != nil {
			t.Fatal(err)
		}
		wantSums[ev.Type] += primaryOf(p)
	}
	for typ, w := range wantSums {
		if math.Abs(sums[typ]-w) > 1e-9*math.Abs(w) {
			t.Errorf("%s: stored sum %g, formulas %g", typ, sums[typ], w)
		}
	}
}

func primaryOf(p event.Payload) float64 {
	if q := event.Quantities(p); len(q) > 0 {
		return q[0].Value
	}
	return 0
}

// routerBind creates scenario s with cfg and binds coef to it as an owner does, trying a
// transient refusal again (untilSettled); any other error it returns.
func routerBind(t *testing.T, b broker.Broker, s string, coef *coefficients.Loaded, cfg broker.ScenarioConfig) error {
	t.Helper()
	return untilSettled(t, func() error {
		if err := b.EnsureScenario(t.Context(), s, cfg); err != nil {
			return err
		}
		_, err := broker.Bind(t.Context(), b.Registry(), broker.Binding{Scenario: s, CoefVersion: coef.CoefVersion, Document: coef.Canonical, Created: signalTime, Config: cfg})
		return err
	})
}

// untilSettled runs op until it returns nil or an error that is not transient, for up to
// 30 s: a 3-node cluster just formed may not answer its first stream create at once.
func untilSettled(t *testing.T, op func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := op()
		if err == nil || !broker.Transient(err) || time.Now().After(deadline) || t.Context().Err() != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond) // as Eventually polls
	}
}
