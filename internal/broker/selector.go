package broker

import (
	"fmt"
	"slices"

	"github.com/layercake/cascade/internal/event"
)

// Selector picks the subjects of one scenario a feed reads: those of any of Kinds, on any of
// Layers, in any of Regions, an empty list selecting every value. Dead letters have no
// region, so a selection of regions holds no dead letters. Each adapter maps it onto its
// storage: NATS onto filter subjects, Kafka onto topics and a region filter.
type Selector struct {
	Scenario string
	Kinds    []event.Kind  // signal, demand, dlq
	Layers   []event.Layer // layers of Pipeline
	Regions  []string      // region tokens
}

// Validate reports the first field at fault as an event.ValidationError (matching
// event.ErrInvalid): a scenario or region that does not match event.NamePattern, an unknown
// kind or layer, a layer that has none of the selected kinds (no demand is placed on the top
// layer), or regions together with dead letters.
func (s Selector) Validate() error {
	if !event.ValidName(s.Scenario) {
		return &event.ValidationError{Field: "scenario", Rule: fmt.Sprintf("%q must match %s", s.Scenario, event.NamePattern)}
	}
	for _, k := range s.Kinds {
		if k.Layers() == nil {
			return &event.ValidationError{Field: "kinds", Rule: fmt.Sprintf("unknown kind %q (want %s)", k, event.Join(event.Kinds, "or"))}
		}
		if k == event.KindDLQ && len(s.Regions) > 0 {
			return &event.ValidationError{Field: "regions", Rule: "dead letters have no region; select them without regions"}
		}
	}
	for _, l := range s.Layers {
		if _, err := event.ParseLayer(string(l)); err != nil {
			return &event.ValidationError{Field: "layers", Rule: fmt.Sprintf("unknown layer %q (want %s)", l, event.JoinLayers(event.AllLayers, "or"))}
		}
		if !slices.ContainsFunc(s.SelectedKinds(), func(k event.Kind) bool { return slices.Contains(k.Layers(), l) }) {
			return &event.ValidationError{Field: "layers", Rule: fmt.Sprintf("layer %s has no %s subjects", l, event.Join(s.SelectedKinds(), "or"))}
		}
	}
	for _, r := range s.Regions {
		if !event.ValidName(r) {
			return &event.ValidationError{Field: "regions", Rule: fmt.Sprintf("%q must match %s", r, event.NamePattern)}
		}
	}
	return nil
}

// SelectedKinds are the selected kinds: Kinds, or every kind (without dead letters when regions are
// selected).
func (s Selector) SelectedKinds() []event.Kind {
	switch {
	case len(s.Kinds) > 0:
		return s.Kinds
	case len(s.Regions) > 0:
		return []event.Kind{event.KindSignal, event.KindDemand}
	}
	return event.Kinds
}

// Selects reports whether the subject sub (its region ignored when empty: a Kafka topic) is
// selected.
func (s Selector) Selects(sub event.Subject) bool {
	return sub.Scenario == s.Scenario && slices.Contains(s.SelectedKinds(), sub.Kind) &&
		(len(s.Layers) == 0 || slices.Contains(s.Layers, sub.Layer)) &&
		(sub.Region == "" || s.SelectsRegion(sub.Region))
}

// SelectsRegion reports whether region r is selected.
func (s Selector) SelectsRegion(r string) bool {
	return len(s.Regions) == 0 || slices.Contains(s.Regions, r)
}
