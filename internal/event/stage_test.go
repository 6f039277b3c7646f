package event_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/layercake/cascade/internal/event"
)

// TestStageNamesAndFilters holds stages to the consumer names and filters the issue asks
// for: today's names and single filter for one layer, one signal filter for the chain, a
// range's own name.
func TestStageNamesAndFilters(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		stage    string
		name     string
		filters  []string
		topics   []string
		contains []event.Layer
	}{
		{"chips", "cascade-s-chips", []string{"cascade.s.*.chips.*"}, []string{"cascade.s.demand.chips", "cascade.s.signal.chips"}, []event.Layer{event.Chips}},
		{"application", "cascade-s-application", []string{"cascade.s.*.application.*"}, []string{"cascade.s.signal.application"}, []event.Layer{event.Application}},
		{"application-energy", "cascade-s-application-energy", []string{"cascade.s.signal.*.*"},
			[]string{"cascade.s.signal.application", "cascade.s.signal.model", "cascade.s.signal.infrastructure", "cascade.s.signal.chips", "cascade.s.signal.energy"}, event.ConsumerLayers},
		{"model-chips", "cascade-s-model-chips",
			[]string{"cascade.s.demand.model.*", "cascade.s.signal.model.*", "cascade.s.signal.infrastructure.*", "cascade.s.signal.chips.*"},
			[]string{"cascade.s.demand.model", "cascade.s.signal.model", "cascade.s.signal.infrastructure", "cascade.s.signal.chips"},
			[]event.Layer{event.Model, event.Infrastructure, event.Chips}},
	} {
		st, err := event.ParseStage(c.stage)
		if err != nil {
			t.Fatalf("ParseStage(%q): %v", c.stage, err)
		}
		if st.String() != c.stage || st.ConsumerName("s") != c.name {
			t.Errorf("%s: String %q, ConsumerName %q, want %q", c.stage, st, st.ConsumerName("s"), c.name)
		}
		if got := st.FilterSubjects("s"); !slices.Equal(got, c.filters) {
			t.Errorf("%s: filters %q, want %q", c.stage, got, c.filters)
		}
		if got := st.Topics("s"); !slices.Equal(got, c.topics) {
			t.Errorf("%s: topics %q, want %q", c.stage, got, c.topics)
		}
		if got := st.Layers(); !slices.Equal(got, c.contains) {
			t.Errorf("%s: layers %v, want %v", c.stage, got, c.contains)
		}
		if back, ok := event.StageOfConsumer("s", c.name); !ok || back != st {
			t.Errorf("StageOfConsumer(%q) = %v, %v", c.name, back, ok)
		}
	}
	if event.Chain.String() != "application-energy" {
		t.Errorf("Chain = %s", event.Chain)
	}
	if got := event.LayerStage(event.Model).ConsumerName("s"); got != event.ConsumerName("s", event.Model) {
		t.Errorf("one-layer stage's consumer %q, want today's %q", got, event.ConsumerName("s", event.Model))
	}
}

// TestStageRefusals names what is wrong with a stage and with stages that overlap.
func TestStageRefusals(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"chips-model", "grid", "model-grid", "nope", ""} {
		if _, err := event.ParseStage(bad); !errors.Is(err, event.ErrInvalid) {
			t.Errorf("ParseStage(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, ok := event.StageOfConsumer("s", "cascade-other-chips"); ok {
		t.Error("a consumer of another scenario read as one of s")
	}
	mc, _ := event.ParseStage("model-chips")
	if !mc.Overlaps(event.LayerStage(event.Chips)) || !mc.Overlaps(event.Chain) || mc.Overlaps(event.LayerStage(event.Energy)) {
		t.Error("Overlaps wrong")
	}
	if err := event.Tiling(event.PerLayer); err != nil {
		t.Errorf("per-layer stages refused: %v", err)
	}
	if err := event.Tiling([]event.Stage{mc, event.LayerStage(event.Chips)}); err == nil {
		t.Error("model-chips beside chips accepted")
	}
}
