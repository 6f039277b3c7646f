package natsjs

import (
	"slices"
	"testing"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
)

// A selection maps onto the fewest filter subjects that match it, one where wildcards allow
// it, and never two that overlap (JetStream refuses those).
func TestFilters(t *testing.T) {
	t.Parallel()
	demand := []event.Kind{event.KindDemand}
	for _, c := range []struct {
		sel  broker.Selector
		want []string
	}{
		{broker.Selector{Scenario: "s"}, []string{"cascade.s.>"}},
		{broker.Selector{Scenario: "s", Kinds: demand}, []string{"cascade.s.demand.*.*"}},
		{broker.Selector{Scenario: "s", Kinds: []event.Kind{event.KindDLQ}}, []string{"cascade.s.dlq.*"}},
		{broker.Selector{Scenario: "s", Kinds: []event.Kind{event.KindDLQ}, Layers: []event.Layer{event.Chips}}, []string{"cascade.s.dlq.chips"}},
		{broker.Selector{Scenario: "s", Kinds: []event.Kind{event.KindSignal, event.KindDemand}}, []string{"cascade.s.demand.*.*", "cascade.s.signal.*.*"}},
		{broker.Selector{Scenario: "s", Kinds: demand, Regions: []string{"us"}}, []string{"cascade.s.demand.*.us"}},
		{broker.Selector{Scenario: "s", Kinds: demand, Layers: []event.Layer{event.Grid, event.Chips, event.Grid}, Regions: []string{"us"}},
			[]string{"cascade.s.demand.chips.us", "cascade.s.demand.grid.us"}},
		{broker.Selector{Scenario: "s", Layers: []event.Layer{event.Application}}, []string{"cascade.s.dlq.application", "cascade.s.signal.application.*"}},
		{broker.Selector{Scenario: "s", Regions: []string{"de"}}, []string{"cascade.s.demand.*.de", "cascade.s.signal.*.de"}},
	} {
		if got := filters(c.sel); !slices.Equal(got, c.want) {
			t.Errorf("%+v: %q, want %q", c.sel, got, c.want)
		}
	}
}
