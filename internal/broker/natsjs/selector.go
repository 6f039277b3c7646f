package natsjs

import (
	"slices"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
)

// filters are the fewest subjects, built with event.Subject, whose wildcards match exactly the
// selected subjects, no two overlapping: "cascade.<s>.>" for the whole scenario, one filter
// per kind when layers and regions are all, else one per kind, layer and region.
func filters(s broker.Selector) []string {
	if len(s.Kinds) == 0 && len(s.Layers) == 0 && len(s.Regions) == 0 {
		return []string{event.Subject{Scenario: s.Scenario}.String()}
	}
	layers := s.Layers
	if len(layers) == 0 {
		layers = []event.Layer{""}
	}
	regions := s.Regions
	if len(regions) == 0 {
		regions = []string{""}
	}
	var out []string
	for _, k := range s.SelectedKinds() {
		for _, l := range layers {
			if l != "" && !slices.Contains(k.Layers(), l) {
				continue
			}
			if k == event.KindDLQ {
				out = append(out, event.Subject{Scenario: s.Scenario, Kind: k, Layer: l}.String())
				continue
			}
			for _, r := range regions {
				out = append(out, event.Subject{Scenario: s.Scenario, Kind: k, Layer: l, Region: r}.String())
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
