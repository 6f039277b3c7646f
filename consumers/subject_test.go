package consumers_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
)

// A raw NATS signal without the optional CloudEvents subject takes data.region and is
// processed; one whose subject differs from data.region is dead-lettered.
func TestRawSignalWithoutSubjectTakesDataRegion(t *testing.T) {
	t.Parallel()
	b, js := start(t)
	if err := b.EnsureScenario(t.Context(), "t", broker.ScenarioConfig{AckWait: time.Second}); err != nil {
		t.Fatal(err)
	}
	raw := func(id, subject string) broker.Message {
		return broker.Message{Subject: event.SignalSubject("t", event.Application, "us"), ID: id, Data: fmt.Appendf(nil,
			`{"specversion":"1.0","id":%q,"source":"/t","type":"cascade.signal.adoption.v1",%s"time":"2025-01-27T00:00:00Z","data":{"app":"a","category":"chat","region":"us","users_delta":1000}}`, id, subject)}
	}
	if err := b.Publish(t.Context(), []broker.Message{raw("no-subject", ""), raw("differs", `"subject":"eu",`)}); err != nil {
		t.Fatal(err)
	}
	_, m := serveApplication(t, b)

	// processed is nil once the signal without subject has its model event and the other
	// its dead letter, counted: the count follows the dead letter's PubAck.
	var model *event.Event
	processed := func() error {
		if dlq(m) == 0 {
			return fmt.Errorf("no dead letter counted")
		}
		st, err := js.Stream(t.Context(), event.StreamName("t"))
		if err != nil {
			return err
		}
		dl, err := st.GetLastMsgForSubject(t.Context(), event.DLQSubject("t", event.Application))
		if err != nil {
			return fmt.Errorf("dead letter: %w", err)
		}
		if id := dl.Header.Get(broker.HeaderOriginalMsgID); id != "differs" {
			return fmt.Errorf("dead letter of %q, want of differs", id)
		}
		mm, err := st.GetLastMsgForSubject(t.Context(), event.DemandSubject("t", event.Model, "us"))
		if err != nil {
			return fmt.Errorf("model event: %w", err)
		}
		if model, _, err = event.Decode(mm.Data); err != nil {
			return err
		}
		return nil
	}
	conformance.Eventually(t, 10*time.Second, "the model event and the dead letter", processed)
	if model.CorrelationID != "no-subject" || model.Subject != "us" {
		t.Errorf("model event %s: correlation %q subject %q, want of no-subject in us", model.ID, model.CorrelationID, model.Subject)
	}
	if n := dlq(m); n != 1 {
		t.Errorf("dlq metric %v, want 1 (only the differing subject)", n)
	}
}
