package conformance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/producers"
)

// overflowSignal is an adoption whose tokens per day are in range but whose inference FLOP/s
// at the model layer are beyond event.MaxAbs: its tree fails one layer below where it enters.
func overflowSignal() string {
	return `{"specversion":"1.0","id":"sig-overflow","source":"/test","type":"cascade.signal.adoption.v1","subject":"us","time":"` +
		signalTime.Format(time.RFC3339) + `","data":{"app":"huge","category":"chat","region":"us","users_delta":1e9,"requests_per_user_day":1e5,"tokens_per_request":1e6}}`
}

// The chained stage publishes what the five one-layer stages publish (same subjects, ids
// and bytes) except the tree of an input that fails at any of its layers: of that, nothing
// is published and the input itself is the dead letter, naming the layer and the event that
// failed.
func testStages(t *testing.T, h Harness) {
	coef := coefficients.Default()
	g := producers.NewGenerator(11, "stages-", signalTime, time.Minute)
	raws := Signals()
	for range 100 {
		raws = append(raws, string(g.Next()))
	}
	good := expected(t, coef, "base", raws)
	failedID := event.DerivedID("sig-overflow", event.Application, event.Inference)
	feeds := map[consumers.Stages][]stored{}
	dead := map[consumers.Stages][]stored{}
	for _, mode := range []consumers.Stages{consumers.PerLayer, consumers.Chained} {
		b := h.Fresh(t)(t)
		startPipeline(t, b, "base", coef, mode)
		publish(t, b, "base", raws)
		// Straight to the broker: cascade publish refuses a signal whose tree fails.
		over := broker.Message{Subject: event.SignalSubject("base", event.Application, "us"), ID: "sig-overflow", Key: "sig-overflow", Data: []byte(overflowSignal())}
		if err := b.Publish(t.Context(), []broker.Message{over}); err != nil {
			t.Fatal(err)
		}
		n := len(good)
		if mode == consumers.PerLayer {
			n++ // the overflowing adoption's model demand, which its model layer dead-letters
		}
		feeds[mode] = waitDemand(t, b, "base", n)
		Eventually(t, 20*time.Second, "the dead letter", func() error {
			dead[mode] = readAll(t, b, broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindDLQ}})
			if len(dead[mode]) == 0 {
				return errors.New("no dead letter yet")
			}
			return nil
		})
	}
	per := map[string]stored{}
	for _, m := range feeds[consumers.PerLayer] {
		per[m.ev.ID] = m
	}
	chained := map[string]bool{}
	for _, m := range feeds[consumers.Chained] {
		chained[m.ev.ID] = true
		p, ok := per[m.ev.ID]
		switch {
		case !ok:
			t.Errorf("chained published %s, which the layers one by one did not", m.ev.ID)
		case p.subject != m.subject || string(p.data) != string(m.data):
			t.Errorf("%s differs:\nper layer %s %s\nchained   %s %s", m.ev.ID, p.subject, p.data, m.subject, m.data)
		}
		if m.ev.CorrelationID == "sig-overflow" {
			t.Errorf("chained published %s of the failed tree", m.ev.ID)
		}
	}
	for id, m := range per {
		if !chained[id] && m.ev.CorrelationID != "sig-overflow" {
			t.Errorf("the layers one by one published %s, chained did not", id)
		}
	}
	if len(chained) != len(good) {
		t.Errorf("chained published %d events, want %d", len(chained), len(good))
	}
	dl := dead[consumers.Chained]
	if len(dl) != 1 {
		t.Fatalf("chained: %d dead letters, want 1", len(dl))
	}
	d := dl[0]
	want := map[string]string{
		broker.HeaderLayer: string(event.Model), broker.HeaderFailedID: failedID, broker.HeaderOriginalMsgID: "sig-overflow",
		broker.HeaderErrorKind: string(consumers.KindTransform), broker.HeaderOriginalSubject: event.SignalSubject("base", event.Application, "us"),
	}
	for k, v := range want {
		if d.header[k] != v {
			t.Errorf("dead letter %s = %q, want %q", k, d.header[k], v)
		}
	}
	if d.subject != event.DLQSubject("base", event.Model) || d.ev == nil || d.ev.ID != "sig-overflow" {
		t.Errorf("dead letter on %s carrying %s, want the input on %s", d.subject, d.data, event.DLQSubject("base", event.Model))
	}
}

// A stage refuses to start beside the consumer of a stage sharing a layer with it, naming
// it, whether a process runs it or it was left by an earlier run; stages that tile the
// layers run side by side.
func testStageOverlap(t *testing.T, h Harness) {
	connect := h.Fresh(t)
	b := connect(t)
	coef := coefficients.Default()
	if err := routerBind(t, b, "base", coef, broker.ScenarioConfig{AckWait: h.AckWait}); err != nil {
		t.Fatal(err)
	}
	modelChips, _ := event.ParseStage("model-chips")
	r := consumers.New(b, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), consumers.Options{Batch: 64, DrainTimeout: 2 * time.Second})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- r.ServeStages(ctx, []event.Stage{event.LayerStage(event.Application), modelChips, event.LayerStage(event.Energy)}, 100*time.Millisecond)
	}()
	Eventually(t, 10*time.Second, "the tiling stages to consume", r.Ready)
	var names []string
	Eventually(t, 10*time.Second, "the broker to list the tiling stages' consumers", func() error { // a Kafka group exists once joined
		var err error
		names, err = b.Consumers(t.Context(), "base")
		if want := "cascade-base-application,cascade-base-energy,cascade-base-model-chips"; err != nil || strings.Join(names, ",") != want {
			return fmt.Errorf("listed consumers %v (%v), want %s", names, err, want)
		}
		return nil
	})
	// While they run, and after they stopped (their consumers stay), the chain and the
	// chips layer are refused, naming what they overlap.
	for round := range 2 {
		for _, st := range []event.Stage{event.Chain, event.LayerStage(event.Chips)} {
			other := consumers.New(connect(t), zerolog.Nop(), consumers.Options{})
			err := other.ServeStages(t.Context(), []event.Stage{st}, 100*time.Millisecond)
			if !errors.Is(err, consumers.ErrOverlap) || !strings.Contains(err.Error(), "cascade-base-model-chips") {
				t.Errorf("round %d: stage %s beside model-chips: %v, want ErrOverlap naming cascade-base-model-chips", round, st, err)
			}
		}
		if round == 0 {
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("tiling stages: %v", err)
			}
		}
	}
	// Removed, they no longer stand in the way.
	for _, n := range names {
		if err := b.RemoveConsumer(t.Context(), "base", n); err != nil {
			t.Fatal(err)
		}
	}
	if names, err := b.Consumers(t.Context(), "base"); err != nil || len(names) != 0 {
		t.Fatalf("after RemoveConsumer: %v, %v", names, err)
	}
	serve(t, b, event.ConsumerLayers, consumers.Chained)
	publish(t, b, "base", Signals())
	waitDemand(t, b, "base", len(expected(t, coef, "base", Signals())))
}

// The chained stage killed at random moments mid-stream, again and again, then run to the
// end: every derived id is stored (or, without de-duplication, read) once and the sums
// equal the formulas'.
func testChainedCrash(t *testing.T, h Harness) {
	connect, b, raws, want := crashSetup(t, h, 43, "chaincrash-", 600)
	s := "base"
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill points seeded with %d", seed)
	rng := rand.New(rand.NewPCG(seed, 43))
	for kill := range 3 {
		publish(t, b, s, raws[kill*200:(kill+1)*200]) // work for this process to die in
		victim := connect(t)
		dying := &dyingBroker{Broker: victim, n: int32(1 + rng.IntN(3)), kill: func() { h.Kill(victim) }}
		stop := serve(t, dying, event.ConsumerLayers, consumers.Chained)
		Eventually(t, 20*time.Second, fmt.Sprintf("chained process %d to die", kill+1), func() error {
			if !dying.dead.Load() {
				return fmt.Errorf("%d more publications before it dies", atomic.LoadInt32(&dying.n))
			}
			return nil
		})
		stop()
	}
	serve(t, connect(t), event.ConsumerLayers, consumers.Chained)
	exactlyOnce(t, b, s, want)
}

// exactlyOnce waits until the chain has committed everything and every derived event of
// want is there, then checks that each id is stored (or, without de-duplication, read) once,
// none other, and that the sums of their primary quantities equal the formulas'.
func exactlyOnce(t *testing.T, b broker.Broker, s string, want map[string]*event.Event) {
	t.Helper()
	coefSums := map[event.Type]float64{}
	for _, ev := range want {
		p, err := event.DecodePayload(ev.Type, ev.Data)
		if err != nil {
			t.Fatal(err)
		}
		coefSums[ev.Type] += primaryOf(p)
	}
	waitDemand(t, b, s, len(want))
	Eventually(t, 30*time.Second, "the chain to commit everything", func() error {
		n, err := b.StageLag(t.Context(), s, event.Chain)
		if err != nil || n != 0 {
			return fmt.Errorf("chain lag %d, %v", n, err)
		}
		return nil
	})
	got := readAll(t, b, broker.Selector{Scenario: s, Kinds: []event.Kind{event.KindDemand}})
	seen, sums := map[string]int{}, map[event.Type]float64{}
	for _, m := range got {
		if m.ev == nil {
			t.Fatalf("undecodable %s", m.data)
		}
		seen[m.ev.ID]++
		sums[m.ev.Type] += primaryOf(m.p)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s read %d times", id, n)
		}
		if _, ok := want[id]; !ok {
			t.Errorf("unexpected %s", id)
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("%d distinct derived events, want %d", len(seen), len(want))
	}
	for typ, w := range coefSums {
		if math.Abs(sums[typ]-w) > 1e-9*math.Abs(w) {
			t.Errorf("%s: stored sum %g, formulas %g", typ, sums[typ], w)
		}
	}
}

// Switching a live scenario from per-layer to chained loses and double-counts nothing: the
// chain started with TakeOver while the per-layer stages run and signals keep coming starts
// where the broker stood, waits for them to commit everything up to there and removes their
// consumers; every id is then there once and the sums equal the formulas'.
func testTakeOver(t *testing.T, h Harness) {
	connect, b, raws, want := crashSetup(t, h, 44, "switch-", 400)
	s := "base"
	stopPer := serve(t, connect(t), event.ConsumerLayers, consumers.PerLayer)
	Eventually(t, 20*time.Second, "the per-layer consumers", func() error {
		if names, err := b.Consumers(t.Context(), s); err != nil || len(names) != len(event.PerLayer) {
			return fmt.Errorf("consumers %v, %v", names, err)
		}
		return nil
	})
	publish(t, b, s, raws[:200])
	published := make(chan error, 1)
	go func() { // signals keep coming while the chain takes over
		p := &producers.Publisher{Broker: b, Scenario: s}
		for i := 200; i < len(raws); i += 10 {
			items := make([]producers.Item, 0, 10)
			for j, r := range raws[i : i+10] {
				items = append(items, producers.Item{Line: i + j + 1, Raw: []byte(r)})
			}
			if _, err := p.Publish(context.Background(), items); err != nil {
				published <- err
				return
			}
			time.Sleep(5 * time.Millisecond) // a steady trickle, not a burst
		}
		published <- nil
	}()
	r := consumers.New(connect(t), zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		consumers.Options{Batch: 64, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, DrainTimeout: 2 * time.Second, Stages: consumers.Chained, TakeOver: true})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, event.ConsumerLayers, 100*time.Millisecond) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("chain: %v", err)
		}
	})
	Eventually(t, 30*time.Second, "the chain to consume", r.Ready)
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	// The per-layer processes are stopped once everything is quiet, past any bound of the
	// take-over (on NATS it may have removed their consumers already), as an operator
	// stops them when it says so.
	quiet := 0
	Eventually(t, 30*time.Second, "every stage to commit everything", func() error {
		for _, st := range append([]event.Stage{event.Chain}, event.PerLayer...) {
			if n, err := b.StageLag(t.Context(), s, st); err != nil && !errors.Is(err, broker.ErrNotFound) || n > 0 {
				quiet = 0
				return fmt.Errorf("stage %s: lag %d, %v", st, n, err)
			}
		}
		if quiet++; quiet < 2 {
			return errors.New("quiet once; checking again")
		}
		return nil
	})
	stopPer()
	Eventually(t, 30*time.Second, "the take-over to remove the per-layer consumers", func() error {
		names, err := b.Consumers(t.Context(), s)
		if err != nil {
			return err
		}
		if len(names) != 1 || names[0] != event.Chain.ConsumerName(s) {
			return fmt.Errorf("consumers %v", names)
		}
		return nil
	})
	exactlyOnce(t, b, s, want)
}
