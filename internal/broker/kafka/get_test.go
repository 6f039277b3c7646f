package kafka_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/kafka/kafkatest"
	"github.com/layercake/cascade/internal/event"
)

// A feed delivery's Position fetches that one record again; a position past the log is not
// found, and one that is malformed or names another scenario's topic is refused.
func TestGetByPosition(t *testing.T) {
	t.Parallel()
	b := connect(t, kafkatest.Cluster(t))
	if err := b.EnsureScenario(t.Context(), "get", broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	msgs := signals("get", event.Application, "us", "pos", 3)
	if err := b.Publish(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
	pos := map[string]string{}
	err := broker.Each(t.Context(), b, broker.FeedOptions{Selector: broker.Selector{Scenario: "get", Kinds: []event.Kind{event.KindSignal}}, FromStart: true}, func(d broker.Delivery) error {
		p, ok := d.(broker.Positioned)
		if !ok {
			t.Fatalf("feed delivery %T has no Position", d)
		}
		pos[d.Message().ID] = p.Position()
		return nil
	})
	if err != nil || len(pos) != 3 {
		t.Fatalf("feed: %v, %d positions", err, len(pos))
	}
	for _, m := range msgs {
		got, err := b.Get(t.Context(), "get", pos[m.ID])
		if err != nil || got.ID != m.ID || string(got.Data) != string(m.Data) || got.Subject != m.Subject {
			t.Fatalf("Get(%s) = %+v, %v; want %s", pos[m.ID], got, err, m.ID)
		}
	}
	p := pos[msgs[0].ID]
	past := p[:strings.LastIndexByte(p, ':')] + ":100000"
	if _, err := b.Get(t.Context(), "get", past); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("Get(%s) past the log: %v, want broker.ErrNotFound", past, err)
	}
	for _, bad := range []string{"12", "cascade.get.signal.application/x:1", "cascade.get.signal.application/0:-1", strings.Replace(p, "cascade.get.", "cascade.other.", 1)} {
		if _, err := b.Get(t.Context(), "get", bad); !errors.Is(err, event.ErrInvalid) {
			t.Errorf("Get(%q): %v, want event.ErrInvalid", bad, err)
		}
	}
}
