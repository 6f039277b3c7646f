package demand_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/demand"
	"github.com/layercake/cascade/internal/event"
)

// outputAllocs counts the allocations outputs are made of: the slice, each payload, and each
// payload's optional numbers and flags (pointers).
func outputAllocs(outs []demand.Output) int {
	n := 1
	for _, o := range outs {
		n++
		v := reflect.ValueOf(o.Payload).Elem()
		for i := range v.NumField() {
			if f := v.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
				n++
			}
		}
	}
	return n
}

// Each layer's transform allocates its outputs and nothing else; each layer's step (Derive)
// adds only the derived envelopes: per event the Event, its id and its encoded data, plus the
// two slices that hold them, and for a retraction the pricing time it carries.
func TestTransformsAllocateOnlyTheirOutputs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts under the race detector are not the program's")
	}
	c := &coefficients.Loaded{Set: handSet(), CoefVersion: "hand+0000abcd"}
	for _, in := range benchInputs {
		outs, err := demand.Outputs(c.Set, in.p)
		if err != nil || len(outs) == 0 {
			t.Fatalf("%s: %d outputs, %v", in.name, len(outs), err)
		}
		want := outputAllocs(outs)
		if n := testing.AllocsPerRun(200, func() { _, _ = demand.Outputs(c.Set, in.p) }); n > float64(want) {
			t.Errorf("%s transform: %v allocations, its outputs are %d", in.name, n, want)
		}
		ev, err := event.New(&event.Event{ID: "sig-1", Scenario: "base"}, event.Application, "", time.Date(2025, 1, 20, 12, 0, 0, 0, time.UTC), "", in.p)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := demand.Derive(t.Context(), c, ev, in.p)
		if err != nil {
			t.Fatal(err)
		}
		want += 2 + 3*len(evs)
		for _, o := range outs {
			if o.Delay != 0 { // a retraction: its pricing time, shared by all below it
				want++
				break
			}
		}
		if n := testing.AllocsPerRun(200, func() { _, _ = demand.Derive(t.Context(), c, ev, in.p) }); n > float64(want) {
			t.Errorf("%s derive: %v allocations for %d events, want at most %d", in.name, n, len(evs), want)
		}
	}
}
