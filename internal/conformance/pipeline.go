package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/tree"
	"github.com/layercake/cascade/producers"
)

// signalTime is the event time of the suite's signals.
var signalTime = time.Date(2025, 1, 20, 0, 0, 0, 0, time.UTC)

// Signals are the suite's input: every kind of signal, injected ones included.
func Signals() []string {
	ts := signalTime.Format(time.RFC3339)
	return []string{
		`{"specversion":"1.0","id":"sig-adopt-us","source":"/test","type":"cascade.signal.adoption.v1","subject":"us","time":"` + ts + `","data":{"app":"chat-app","category":"chat","region":"us","users_delta":1000000}}`,
		`{"specversion":"1.0","id":"sig-adopt-cn","source":"/test","type":"cascade.signal.adoption.v1","subject":"cn","time":"` + ts + `","data":{"app":"code-app","category":"coding","region":"cn","users_delta":-200000,"tokens_per_request":5000}}`,
		`{"specversion":"1.0","id":"sig-release-r1","source":"/test","type":"cascade.signal.release.v1","subject":"world","time":"` + ts + `","data":{"model":"r1-like","region":"world","open_weights":true,"params_total":6.71e11,"params_active":3.7e10,"reasoning":true,"expected_tokens_per_day":8e11}}`,
		`{"specversion":"1.0","id":"sig-sovereign-gb","source":"/test","type":"cascade.demand.infrastructure.v1","subject":"gb","time":"` + ts + `","data":{"region":"gb","workload":"training","flop_per_s":1e18}}`,
		`{"specversion":"1.0","id":"sig-chips-in","source":"/test","type":"cascade.demand.chips.v1","subject":"in","time":"` + ts + `","data":{"region":"in","accelerator":"h100","units":1000,"workload":"training"}}`,
	}
}

// publish sends raw signals through the producer path into scenario s.
func publish(t *testing.T, b broker.Broker, s string, raws []string) {
	t.Helper()
	items := make([]producers.Item, len(raws))
	for i, r := range raws {
		items[i] = producers.Item{Line: i + 1, Raw: []byte(r)}
	}
	res, err := (&producers.Publisher{Broker: b, Scenario: s}).Publish(t.Context(), items)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	for _, r := range res {
		if !r.OK() {
			t.Fatalf("publish line %d: %s", r.Line, r.Error)
		}
	}
}

// basePipeline starts a fresh broker running the whole pipeline on scenario base under the
// default coefficients, its layers grouped as h.Stages says; it returns a connection and
// those coefficients.
func basePipeline(t *testing.T, h Harness) (broker.Broker, *coefficients.Loaded) {
	t.Helper()
	b, coef := h.Fresh(t)(t), coefficients.Default()
	startPipeline(t, b, "base", coef, h.Stages)
	return b, coef
}

// startPipeline binds s to coef and serves all five layers, grouped as mode says, until the
// test ends.
func startPipeline(t *testing.T, b broker.Broker, s string, coef *coefficients.Loaded, mode consumers.Stages) {
	t.Helper()
	err := untilSettled(t, func() error { return consumers.BindScenario(t.Context(), b, s, coef, broker.ScenarioConfig{}) })
	if err != nil {
		t.Fatalf("bind %s: %v", s, err)
	}
	serve(t, b, event.ConsumerLayers, mode)
}

// serve runs layers on b, grouped into stages as mode says, until the returned function or
// the test's end stops them.
func serve(t *testing.T, b broker.Broker, layers []event.Layer, mode consumers.Stages) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	r := consumers.New(b, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), consumers.Options{Batch: 64, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, DrainTimeout: 2 * time.Second, Stages: mode})
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.Serve(ctx, layers, 200*time.Millisecond) })
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return stop
}

// expected expands the signals with the transforms: every derived event the pipeline must emit.
func expected(t *testing.T, coef *coefficients.Loaded, s string, raws []string) map[string]*event.Event {
	t.Helper()
	want := map[string]*event.Event{}
	var walk func(n *tree.Node, root bool)
	walk = func(n *tree.Node, root bool) {
		if !root {
			want[n.Event.ID] = n.Event
		}
		for _, c := range n.Children {
			walk(c, false)
		}
	}
	for _, r := range raws {
		ev, err := producers.Prepare([]byte(r), s, signalTime)
		if err != nil {
			t.Fatalf("prepare: %v", err)
		}
		p, err := event.DecodePayload(ev.Type, ev.Data)
		if err != nil {
			t.Fatal(err)
		}
		n, err := tree.Expand(t.Context(), coef, ev, p)
		if err != nil {
			t.Fatal(err)
		}
		walk(n, true)
	}
	return want
}

// stored is one message read back from a feed.
type stored struct {
	subject string
	header  map[string]string
	data    []byte
	ev      *event.Event
	p       event.Payload
}

// readAll reads every message of the subjects sel selects that the broker holds now, from the
// start again when the broker refuses for a moment (a cluster node just back).
func readAll(t *testing.T, b broker.Broker, sel broker.Selector) []stored {
	t.Helper()
	var out []stored
	err := untilSettled(t, func() error {
		out = out[:0]
		return broker.Each(t.Context(), b, broker.FeedOptions{Selector: sel, FromStart: true}, func(d broker.Delivery) error {
			m := d.Message()
			st := stored{subject: m.Subject, header: m.Header, data: m.Data}
			if ev, p, err := event.Decode(m.Data); err == nil {
				st.ev, st.p = ev, p
			}
			out = append(out, st)
			return nil
		})
	})
	if err != nil {
		t.Fatalf("read %+v: %v", sel, err)
	}
	return out
}

// waitDemand polls until the scenario's demand subjects hold n messages, and returns them.
func waitDemand(t *testing.T, b broker.Broker, s string, n int) []stored {
	t.Helper()
	var got []stored
	Eventually(t, 20*time.Second, fmt.Sprintf("%d demand events", n), func() error {
		got = readAll(t, b, broker.Selector{Scenario: s, Kinds: []event.Kind{event.KindDemand}})
		if len(got) < n {
			return fmt.Errorf("%d of %d demand events", len(got), n)
		}
		return nil
	})
	return got
}

// canonical renders events sorted by id, one JSON document per line, for byte comparison.
func canonical(msgs []stored) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.data)
	}
	sort.Strings(out)
	return out
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
