package conformance

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
)

// Select: one selector reads the same messages on every broker (NATS maps it onto filter
// subjects, Kafka onto topics and a region filter), and an invalid one is refused naming its
// field.
func testSelect(t *testing.T, h Harness) {
	b := h.Fresh(t)(t)
	ctx := t.Context()
	if err := b.EnsureScenario(ctx, "base", broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	msg := func(id, subject string) broker.Message {
		return broker.Message{Subject: subject, ID: id, Key: id, Data: []byte(id)}
	}
	msgs := []broker.Message{
		msg("sig-app-us", event.SignalSubject("base", event.Application, "us")),
		msg("sig-model-de", event.SignalSubject("base", event.Model, "de")),
		msg("sig-chips-us", event.SignalSubject("base", event.Chips, "us")),
		msg("dem-chips-us", event.DemandSubject("base", event.Chips, "us")),
		msg("dem-chips-de", event.DemandSubject("base", event.Chips, "de")),
		msg("dem-grid-us", event.DemandSubject("base", event.Grid, "us")),
		msg("dem-energy-cn", event.DemandSubject("base", event.Energy, "cn")),
		msg("dlq-chips", event.DLQSubject("base", event.Chips)),
		msg("dlq-energy", event.DLQSubject("base", event.Energy)),
	}
	if err := b.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	// Another scenario's messages are never read.
	if err := b.EnsureScenario(ctx, "other", broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, []broker.Message{msg("other-dem-chips-us", event.DemandSubject("other", event.Chips, "us"))}); err != nil {
		t.Fatal(err)
	}
	signal, demand, dlq := []event.Kind{event.KindSignal}, []event.Kind{event.KindDemand}, []event.Kind{event.KindDLQ}
	for _, c := range []struct {
		name string
		sel  broker.Selector
		want string // ids, sorted, comma-separated
	}{
		{"everything", broker.Selector{Scenario: "base"},
			"dem-chips-de,dem-chips-us,dem-energy-cn,dem-grid-us,dlq-chips,dlq-energy,sig-app-us,sig-chips-us,sig-model-de"},
		{"signals", broker.Selector{Scenario: "base", Kinds: signal}, "sig-app-us,sig-chips-us,sig-model-de"},
		{"all demand", broker.Selector{Scenario: "base", Kinds: demand}, "dem-chips-de,dem-chips-us,dem-energy-cn,dem-grid-us"},
		{"demand of one layer in one region", broker.Selector{Scenario: "base", Kinds: demand, Layers: []event.Layer{event.Chips}, Regions: []string{"us"}}, "dem-chips-us"},
		{"demand of two layers", broker.Selector{Scenario: "base", Kinds: demand, Layers: []event.Layer{event.Grid, event.Chips}}, "dem-chips-de,dem-chips-us,dem-grid-us"},
		{"demand in two regions", broker.Selector{Scenario: "base", Kinds: demand, Regions: []string{"us", "cn"}}, "dem-chips-us,dem-energy-cn,dem-grid-us"},
		{"dead letters of one layer", broker.Selector{Scenario: "base", Kinds: dlq, Layers: []event.Layer{event.Energy}}, "dlq-energy"},
		{"all dead letters", broker.Selector{Scenario: "base", Kinds: dlq}, "dlq-chips,dlq-energy"},
		{"one layer, every kind", broker.Selector{Scenario: "base", Layers: []event.Layer{event.Chips}}, "dem-chips-de,dem-chips-us,dlq-chips,sig-chips-us"},
		{"one region, every kind but dead letters", broker.Selector{Scenario: "base", Regions: []string{"us"}}, "dem-chips-us,dem-grid-us,sig-app-us,sig-chips-us"},
		{"signals and demand of one region", broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindSignal, event.KindDemand}, Regions: []string{"de"}}, "dem-chips-de,sig-model-de"},
		{"a region nothing was published in", broker.Selector{Scenario: "base", Kinds: demand, Regions: []string{"fr"}}, ""},
	} {
		var got []string
		err := broker.Each(ctx, b, broker.FeedOptions{Selector: c.sel, FromStart: true}, func(d broker.Delivery) error {
			got = append(got, d.Message().ID)
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		slices.Sort(got)
		if s := strings.Join(got, ","); s != c.want {
			t.Errorf("%s (%+v): read %q, want %q", c.name, c.sel, s, c.want)
		}
	}
	for field, sel := range map[string]broker.Selector{
		"scenario": {Scenario: "Base"},
		"kinds":    {Scenario: "base", Kinds: []event.Kind{"signals"}},
		"layers":   {Scenario: "base", Kinds: demand, Layers: []event.Layer{event.Application}},
		"regions":  {Scenario: "base", Regions: []string{"u.s"}},
	} {
		_, err := b.Feed(ctx, broker.FeedOptions{Selector: sel, FromStart: true})
		var ve *event.ValidationError
		if !errors.Is(err, event.ErrInvalid) || !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("feed of %+v: %v, want an event.ErrInvalid naming %s", sel, err, field)
		}
	}
}
