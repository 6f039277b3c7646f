package consumers

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/natsjs"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
)

// A batch derived after the stage's work context has ended (the drain timeout at shutdown)
// is left for redelivery: no input of it becomes a dead letter, nothing of it is to be
// published, and the log says no "dead letter". The same batch with a live context derives
// every input's tree.
func TestDeriveAfterShutdownSkipsTheBatch(t *testing.T) {
	t.Parallel()
	ns, err := natsjs.StartServer(natsjs.ServerOptions{DataDir: t.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	b, err := natsjs.Connect(t.Context(), natsjs.Options{URL: ns.ClientURL(), ConnectWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.EnsureScenario(t.Context(), "t", broker.ScenarioConfig{AckWait: time.Second}); err != nil {
		t.Fatal(err)
	}
	var msgs []broker.Message
	for i := range 3 {
		id := fmt.Sprintf("s-%d", i)
		msgs = append(msgs, broker.Message{Subject: event.SignalSubject("t", event.Application, "us"), ID: id, Data: fmt.Appendf(nil,
			`{"specversion":"1.0","id":%q,"source":"/t","type":"cascade.signal.adoption.v1","subject":"us","time":"2025-01-27T00:00:00Z","data":{"app":"a","category":"chat","region":"us","users_delta":1000}}`, id)})
	}
	if err := b.Publish(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
	st := event.Stage{First: event.Application, Last: event.Energy}
	cons, err := b.StageConsumer(t.Context(), "t", st)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	var batch []broker.Delivery
	for len(batch) < len(msgs) {
		got, err := cons.Fetch(t.Context(), len(msgs)-len(batch))
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, got...)
	}
	coef := coefficients.Default()
	logs := &bytes.Buffer{}
	r := New(b, zerolog.New(logs), Options{})

	ended, cancel := context.WithCancel(t.Context())
	cancel()
	f := r.derive(ended, r.log, "t", st, coef, batch)
	for i, u := range f.units {
		if !u.skip || u.kind != "" || len(u.msgs) != 0 {
			t.Errorf("input %d after shutdown: skip %v, dead-letter kind %q, %d outputs; want skipped, nothing to publish", i, u.skip, u.kind, len(u.msgs))
		}
	}
	if len(f.out) != 0 || strings.Contains(logs.String(), "dead letter") {
		t.Errorf("after shutdown: %d messages to publish, log %q; want none and no dead letter", len(f.out), logs.String())
	}

	f = r.derive(t.Context(), r.log, "t", st, coef, batch)
	for i, u := range f.units {
		if u.skip || u.kind != "" || len(u.msgs) == 0 {
			t.Errorf("input %d: skip %v, dead-letter kind %q, %d outputs; want its tree", i, u.skip, u.kind, len(u.msgs))
		}
	}
}
