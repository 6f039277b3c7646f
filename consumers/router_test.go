package consumers_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/natsjs"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/metrics"
)

// start runs an embedded server with JetStream and connects to it.
func start(t *testing.T) (*natsjs.Broker, jetstream.JetStream) {
	t.Helper()
	b, url := conformance.NATS(t)
	return b, conformance.JetStream(t, url)
}

// applicationConsumer is the state of scenario t's application consumer.
func applicationConsumer(t *testing.T, js jetstream.JetStream) (*jetstream.ConsumerInfo, error) {
	c, err := js.Consumer(t.Context(), event.StreamName("t"), event.ConsumerName("t", event.Application))
	if err != nil {
		return nil, err
	}
	return c.Info(t.Context())
}

// publishAmongGood publishes poison, then five good signals good-0 … good-4; it returns how
// many messages it published.
func publishAmongGood(t *testing.T, b broker.Broker, poison broker.Message) int {
	t.Helper()
	msgs := []broker.Message{poison}
	for i := range 5 {
		msgs = append(msgs, signal("good-"+strconv.Itoa(i)))
	}
	if err := b.Publish(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
	return len(msgs)
}

func signal(id string) broker.Message {
	return broker.Message{
		Subject: event.SignalSubject("t", event.Application, "us"), ID: id,
		Data: fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":"/t","type":"cascade.signal.adoption.v1","subject":"us","time":"2025-01-27T00:00:00Z","datacontenttype":"application/json","data":{"app":"a","category":"chat","region":"us","users_delta":1000}}`, id),
	}
}

// serveApplication runs the application layer of scenario t until the test ends and returns
// its log and its metrics.
func serveApplication(t *testing.T, b broker.Broker) (*conformance.SyncBuffer, *metrics.Metrics) {
	t.Helper()
	coef := coefficients.Default()
	if err := consumers.BindScenario(t.Context(), b, "t", coef, broker.ScenarioConfig{AckWait: time.Second}); err != nil {
		t.Fatal(err)
	}
	logs := &conformance.SyncBuffer{}
	m := metrics.New(prometheus.NewRegistry())
	r := consumers.New(b, zerolog.New(logs), consumers.Options{RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, Metrics: m})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Layer(ctx, "t", event.Application, coef) }()
	t.Cleanup(func() { cancel(); <-done })
	return logs, m
}

// dlq is the dead letters counted for the application layer of scenario t.
func dlq(m *metrics.Metrics) float64 {
	var n float64
	for _, k := range []consumers.Kind{consumers.KindDecode, consumers.KindValidate, consumers.KindTransform, consumers.KindPublish} {
		n += testutil.ToFloat64(m.DLQ.WithLabelValues("t", string(event.Application), string(k)))
	}
	return n
}

// A raw signal a little under the broker's 1 MiB limit is dead-lettered with its body cut to
// fit (its dead letter with headers would be over the limit), and the good signals behind it
// are processed, without a storm of retries.
func TestNearLimitSignalIsDeadLetteredTruncated(t *testing.T) {
	t.Parallel()
	b, js := start(t)
	if err := b.EnsureScenario(t.Context(), "t", broker.ScenarioConfig{AckWait: time.Second}); err != nil {
		t.Fatal(err)
	}
	raw := bytes.Repeat([]byte("x"), b.MaxPayload()-64)
	poison := broker.Message{Subject: event.SignalSubject("t", event.Application, "us"), ID: "poison", Data: raw}
	sent := publishAmongGood(t, b, poison)
	logs, m := serveApplication(t, b)

	var dl *jetstream.RawStreamMsg
	conformance.Eventually(t, 10*time.Second, "the dead letter", func() error {
		st, err := js.Stream(t.Context(), event.StreamName("t"))
		if err != nil {
			return err
		}
		dl, err = st.GetLastMsgForSubject(t.Context(), event.DLQSubject("t", event.Application))
		return err
	})
	if got := dl.Header.Get(broker.HeaderTruncated); got != strconv.Itoa(len(raw)) {
		t.Errorf("%s = %q, want the original size %d", broker.HeaderTruncated, got, len(raw))
	}
	if len(dl.Data) == 0 || len(dl.Data) >= len(raw) || !bytes.Equal(dl.Data, raw[:len(dl.Data)]) {
		t.Errorf("dead letter body: %d bytes, want a prefix of the %d-byte input", len(dl.Data), len(raw))
	}
	if dl.Header.Get(broker.HeaderErrorKind) != string(consumers.KindValidate) || dl.Header.Get(broker.HeaderOriginalMsgID) != "poison" {
		t.Errorf("dead letter headers %v", dl.Header)
	}
	conformance.Eventually(t, 10*time.Second, "every good signal's outputs", func() error {
		ci, err := applicationConsumer(t, js)
		if err != nil {
			return err
		}
		if ci.NumPending != 0 || ci.NumAckPending != 0 || ci.AckFloor.Stream < uint64(sent) {
			return fmt.Errorf("%d pending, %d unacknowledged, acknowledged up to %d of %d", ci.NumPending, ci.NumAckPending, ci.AckFloor.Stream, sent)
		}
		return nil
	})
	st, err := js.Stream(t.Context(), event.StreamName("t"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context(), jetstream.WithSubjectFilter("cascade.t.demand.model.>"))
	if err != nil {
		t.Fatal(err)
	}
	var out uint64
	for _, n := range info.State.Subjects {
		out += n
	}
	if out < 5 {
		t.Errorf("%d model events from 5 good signals", out)
	}
	if n := dlq(m); n != 1 {
		t.Errorf("dlq metric %v, want 1", n)
	}
	if n := strings.Count(logs.String(), "retrying"); n > 3 {
		t.Errorf("%d retries of a permanent failure:\n%s", n, logs.String())
	}
}

// When a batch's publish fails for good, its inputs are published one by one: an input whose
// dead letter the stream refuses is left uncommitted, and the good inputs of its batch are
// committed.
func TestPermanentPublishFailureHoldsUpOnlyItsInput(t *testing.T) {
	t.Parallel()
	b, js := start(t)
	if err := b.EnsureScenario(t.Context(), "t", broker.ScenarioConfig{AckWait: time.Second}); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(t.Context(), event.StreamName("t"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxMsgSize = 2048 // takes the poison input, not its dead letter with headers
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	poison := broker.Message{Subject: event.SignalSubject("t", event.Application, "us"), ID: "poison", Data: bytes.Repeat([]byte("x"), 1900)}
	publishAmongGood(t, b, poison)
	logs, m := serveApplication(t, b)
	conformance.Eventually(t, 10*time.Second, "every good signal's outputs", func() error {
		info, err := st.Info(t.Context(), jetstream.WithSubjectFilter("cascade.t.demand.model.>"))
		if err != nil {
			return err
		}
		var out uint64
		for _, n := range info.State.Subjects {
			out += n
		}
		if out < 5 {
			return fmt.Errorf("%d of 5 model demand events", out)
		}
		return nil
	})
	conformance.Eventually(t, 10*time.Second, "the poison input handed back, the good ones acknowledged", func() error {
		ci, err := applicationConsumer(t, js)
		if err != nil {
			return err
		}
		if n := ci.NumPending + uint64(ci.NumAckPending); n > 1 {
			return fmt.Errorf("%d inputs pending or unacknowledged, want at most the poison one", n)
		}
		if !strings.Contains(logs.String(), "dead letter cannot be published") {
			return errors.New("no log line saying the dead letter cannot be published")
		}
		return nil
	})
	if n := dlq(m); n != 0 {
		t.Errorf("dlq metric %v for a dead letter the broker refused, want 0", n)
	}
	// The stream's refusal is classed permanent by the adapter (broker.ErrPermanent), so the
	// router moved on at once instead of retrying it.
	if !strings.Contains(logs.String(), broker.ErrPermanent.Error()) {
		t.Errorf("the refusal is not reported as %q:\n%s", broker.ErrPermanent, logs.String())
	}
	if n := strings.Count(logs.String(), "retrying"); n > 0 {
		t.Errorf("%d retries of a refusal:\n%s", n, logs.String())
	}
}
