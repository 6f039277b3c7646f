package broker_test

import (
	"errors"
	"testing"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
)

// A selection is valid or refused naming the field at fault, as an event.ErrInvalid.
func TestSelectorValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		sel   broker.Selector
		field string // "" when valid
	}{
		{"the whole scenario", broker.Selector{Scenario: "base"}, ""},
		{"every kind", broker.Selector{Scenario: "half-util", Kinds: event.Kinds}, ""},
		{"demand of feed layers in regions", broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindDemand}, Layers: []event.Layer{event.Chips, event.Grid}, Regions: []string{"us", "eu-west"}}, ""},
		{"dead letters of a layer", broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindDLQ}, Layers: []event.Layer{event.Energy}}, ""},
		{"the top layer without a kind", broker.Selector{Scenario: "base", Layers: []event.Layer{event.Application}}, ""},
		{"the terminal layer without a kind", broker.Selector{Scenario: "base", Layers: []event.Layer{event.Grid}}, ""},
		{"regions without a kind", broker.Selector{Scenario: "base", Regions: []string{"us"}}, ""},
		{"no scenario", broker.Selector{}, "scenario"},
		{"a scenario in capitals", broker.Selector{Scenario: "Base"}, "scenario"},
		{"a scenario with a dot", broker.Selector{Scenario: "a.b"}, "scenario"},
		{"a wildcard scenario", broker.Selector{Scenario: "*"}, "scenario"},
		{"an unknown kind", broker.Selector{Scenario: "base", Kinds: []event.Kind{"signals"}}, "kinds"},
		{"an empty kind", broker.Selector{Scenario: "base", Kinds: []event.Kind{""}}, "kinds"},
		{"an unknown layer", broker.Selector{Scenario: "base", Layers: []event.Layer{"gpu"}}, "layers"},
		{"a wildcard layer", broker.Selector{Scenario: "base", Layers: []event.Layer{"*"}}, "layers"},
		{"demand on the top layer", broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindDemand}, Layers: []event.Layer{event.Application}}, "layers"},
		{"signals into the terminal layer", broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindSignal}, Layers: []event.Layer{event.Grid}}, "layers"},
		{"dead letters of the terminal layer", broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindDLQ}, Layers: []event.Layer{event.Grid}}, "layers"},
		{"a wildcard region", broker.Selector{Scenario: "base", Regions: []string{"*"}}, "regions"},
		{"an empty region", broker.Selector{Scenario: "base", Regions: []string{""}}, "regions"},
		{"a region with a dot", broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindDemand}, Regions: []string{"us.east"}}, "regions"},
		{"dead letters in a region", broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindDLQ}, Regions: []string{"us"}}, "regions"},
	} {
		err := c.sel.Validate()
		if c.field == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		var ve *event.ValidationError
		if !errors.Is(err, event.ErrInvalid) || !errors.As(err, &ve) || ve.Field != c.field {
			t.Errorf("%s: %v, want an event.ErrInvalid naming %s", c.name, err, c.field)
		}
	}
}

// Selects agrees with the selection on subjects and on Kafka topics (subjects without region).
func TestSelectorSelects(t *testing.T) {
	t.Parallel()
	chipsUS := broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindDemand}, Layers: []event.Layer{event.Chips}, Regions: []string{"us"}}
	us := broker.Selector{Scenario: "base", Regions: []string{"us"}}
	for _, c := range []struct {
		sel  broker.Selector
		sub  event.Subject
		want bool
	}{
		{chipsUS, event.Subject{Scenario: "base", Kind: event.KindDemand, Layer: event.Chips, Region: "us"}, true},
		{chipsUS, event.Subject{Scenario: "base", Kind: event.KindDemand, Layer: event.Chips}, true},
		{chipsUS, event.Subject{Scenario: "base", Kind: event.KindDemand, Layer: event.Chips, Region: "de"}, false},
		{chipsUS, event.Subject{Scenario: "base", Kind: event.KindSignal, Layer: event.Chips, Region: "us"}, false},
		{chipsUS, event.Subject{Scenario: "base", Kind: event.KindDemand, Layer: event.Grid, Region: "us"}, false},
		{chipsUS, event.Subject{Scenario: "other", Kind: event.KindDemand, Layer: event.Chips, Region: "us"}, false},
		{us, event.Subject{Scenario: "base", Kind: event.KindSignal, Layer: event.Model, Region: "us"}, true},
		{us, event.Subject{Scenario: "base", Kind: event.KindDLQ, Layer: event.Model}, false},
		{broker.Selector{Scenario: "base"}, event.Subject{Scenario: "base", Kind: event.KindDLQ, Layer: event.Model}, true},
	} {
		if got := c.sel.Selects(c.sub); got != c.want {
			t.Errorf("%+v selects %+v: %v, want %v", c.sel, c.sub, got, c.want)
		}
	}
}
