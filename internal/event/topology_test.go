package event_test

import (
	"slices"
	"testing"

	"github.com/layercake/cascade/internal/event"
)

// TestSubjectBuilder holds the subject and topic names every package now builds through
// event.Subject to the names on the wire.
func TestSubjectBuilder(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ got, want string }{
		{event.SignalSubject("base", event.Chips, "us"), "cascade.base.signal.chips.us"},
		{event.DemandSubject("base", event.Grid, "eu"), "cascade.base.demand.grid.eu"},
		{event.DLQSubject("base", event.Energy), "cascade.base.dlq.energy"},
		{event.Subject{Scenario: "s"}.String(), "cascade.s.>"},
		{event.Subject{Scenario: "s", Kind: event.KindSignal}.String(), "cascade.s.signal.*.*"},
		{event.Subject{Scenario: "s", Kind: event.KindDemand, Layer: event.Model}.String(), "cascade.s.demand.model.*"},
		{event.Subject{Scenario: "s", Kind: event.KindDemand, Layer: event.Model, Region: "us"}.Topic(), "cascade.s.demand.model"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if got := event.InputSubjects("s", event.Model); !slices.Equal(got, []string{"cascade.s.*.model.*"}) {
		t.Errorf("InputSubjects = %q", got)
	}
	sub, err := event.ParseSubject(event.DemandSubject("s", event.Chips, "us"))
	if err != nil || sub != (event.Subject{Scenario: "s", Kind: event.KindDemand, Layer: event.Chips, Region: "us"}) {
		t.Errorf("ParseSubject of a built subject = %+v, %v", sub, err)
	}
}

// TestViewsOfPipeline holds the lookups everyone calls to what the pipeline declares.
func TestViewsOfPipeline(t *testing.T) {
	t.Parallel()
	if want := []event.Layer{event.Application, event.Model, event.Infrastructure, event.Chips, event.Energy}; !slices.Equal(event.ConsumerLayers, want) {
		t.Errorf("ConsumerLayers = %v, want %v", event.ConsumerLayers, want)
	}
	if want := []event.Layer{event.Model, event.Infrastructure, event.Chips, event.Energy, event.Grid}; !slices.Equal(event.FeedLayers, want) {
		t.Errorf("FeedLayers = %v, want %v", event.FeedLayers, want)
	}
	for typ, want := range map[event.Type]event.Layer{
		event.TypeAdoption: event.Application, event.TypeRelease: event.Model, event.TypeDemandModel: event.Model,
		event.TypeDemandInfrastructure: event.Infrastructure, event.TypeDemandChips: event.Chips,
		event.TypeDemandEnergy: event.Energy, event.TypeDemandGrid: "",
	} {
		if got := event.InputLayer(typ); got != want {
			t.Errorf("InputLayer(%s) = %q, want %q", typ, got, want)
		}
	}
	for l, want := range map[event.Layer]event.Layer{event.Application: event.Model, event.Energy: event.Grid, event.Grid: ""} {
		if got := l.Emits(); got != want {
			t.Errorf("%s.Emits() = %q, want %q", l, got, want)
		}
	}
	if got := event.Chips.DemandType(); got != event.TypeDemandChips {
		t.Errorf("Chips.DemandType() = %s", got)
	}
	if got := event.LayerOf(event.TypeDemandGrid); got != event.Grid {
		t.Errorf("LayerOf(demand.grid) = %q", got)
	}
	if _, err := event.ParseLayer("moon"); err == nil || err.Error() != `invalid: unknown layer "moon" (want application, model, infrastructure, chips, energy or grid)` {
		t.Errorf("ParseLayer(moon) = %v", err)
	}
	// A decoded payload without its required numbers is refused: New starts them at NaN.
	if _, err := event.DecodePayload(event.TypeDemandGrid, []byte(`{"region":"us"}`)); err == nil || err.Error() != "data.avg_mw: required" {
		t.Errorf("DecodePayload without avg_mw = %v", err)
	}
	hbm := 80.0
	chips := &event.DemandChips{Region: "us", Accelerator: "h100", Units: 2, HBMGB: &hbm, Workload: "inference"}
	if q := event.Quantities(chips); len(q) != 2 || q[0].Name != "units" || event.Primary(chips) != 2 || event.Label(chips) != "h100 inference" || event.TotalsKey(chips) != "h100" {
		t.Errorf("views of %+v: %v %v %q %q", chips, q, event.Primary(chips), event.Label(chips), event.TotalsKey(chips))
	}
	if event.TotalsKey(&event.DemandEnergy{}) != "unspecified" || event.Quantities(nil) != nil || !slices.Equal(event.Types, []event.Type{event.TypeAdoption, event.TypeRelease, event.TypeDemandModel, event.TypeDemandInfrastructure, event.TypeDemandChips, event.TypeDemandEnergy, event.TypeDemandGrid}) {
		t.Errorf("energy key %q, nil quantities %v, %d types", event.TotalsKey(&event.DemandEnergy{}), event.Quantities(nil), len(event.Types))
	}
}

// TestParseSubject takes every form of subject apart, refuses what is not a cascade subject,
// and allocates nothing for one that is (not in parallel: AllocsPerRun counts the process's).
func TestParseSubject(t *testing.T) {
	for _, c := range []struct {
		subj string
		want event.Subject
		ok   bool
	}{
		{"cascade.base.signal.chips.us", event.Subject{Scenario: "base", Kind: event.KindSignal, Layer: event.Chips, Region: "us"}, true},
		{"cascade.base.dlq.energy", event.Subject{Scenario: "base", Kind: event.KindDLQ, Layer: event.Energy}, true},
		{"cascade.base.demand.grid.eu.more", event.Subject{Scenario: "base", Kind: event.KindDemand, Layer: event.Grid}, true},
		{"cascade.base.demand.", event.Subject{Scenario: "base", Kind: event.KindDemand}, true},
		{"cascade.base.demand", event.Subject{}, false},
		{"other.base.demand.grid.eu", event.Subject{}, false},
		{"", event.Subject{}, false},
	} {
		got, err := event.ParseSubject(c.subj)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseSubject(%q) = %+v, %v; want %+v, ok %v", c.subj, got, err, c.want, c.ok)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = event.ParseSubject("cascade.base.demand.grid.eu") }); n != 0 {
		t.Errorf("ParseSubject allocates %v times", n)
	}
}
