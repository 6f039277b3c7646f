package demand_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/demand"
	"github.com/layercake/cascade/internal/event"
)

func at(t *testing.T, when time.Time, p event.Payload) *event.Event {
	t.Helper()
	ev := signal(t, p)
	ev.Time = when
	return ev
}

// Derive prices an event with the coefficients in force at its time: the same FLOP/s lands on
// 2023's fleet in 2023 and on 2026's in 2026, with the same total accelerator FLOP/s.
func TestDerivePicksTheFleetOfTheEventsTime(t *testing.T) {
	t.Parallel()
	c := coefficients.Default()
	d := &event.DemandInfrastructure{Region: "us", Workload: event.Inference, FlopPerS: 1e18}
	kinds := func(when time.Time) []string {
		outs, err := demand.DeriveTyped(t.Context(), c, at(t, when, d), d)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, o := range outs {
			names = append(names, o.Payload.(*event.DemandChips).Accelerator)
		}
		return names
	}
	if got := kinds(time.Date(2023, 6, 1, 0, 0, 0, 0, time.UTC)); !slices.Equal(got, []string{"a100", "h100"}) {
		t.Errorf("2023: %v, want [a100 h100]", got)
	}
	got := kinds(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
	if slices.Contains(got, "a100") || !slices.Contains(got, "gb300") {
		t.Errorf("2026: %v, want Blackwell and no A100", got)
	}
}

// A file without dates derives exactly as before: the undated values at every time, and
// Outputs on the set in force allocates only its outputs, dated or not.
func TestUndatedDerivesTheSameAtEveryTime(t *testing.T) {
	doc := string(coefficients.DefaultYAML())
	undated, err := coefficients.Parse([]byte(doc[:strings.Index(doc, "\nperiods:\n")] + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := &event.DemandInfrastructure{Region: "us", Workload: event.Inference, FlopPerS: 1e18}
	a, err := demand.Derive(t.Context(), undated, at(t, time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC), d), d)
	if err != nil {
		t.Fatal(err)
	}
	b, err := demand.Derive(t.Context(), undated, at(t, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), d), d)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) || string(a[0].Data) != string(b[0].Data) || a[0].ID != b[0].ID {
		t.Errorf("undated coefficients derive differently by time: %s vs %s", a[0].Data, b[0].Data)
	}
	dated := coefficients.Default().At(time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC))
	n := len(dated.Infrastructure.Fleet.For("us"))
	allocs := testing.AllocsPerRun(50, func() { _, _ = demand.Outputs(dated, d) })
	// Per output: its payload and its HBM figure; plus the slices of names and outputs.
	if limit := float64(2*n + 2); allocs > limit {
		t.Errorf("Infrastructure on a dated set: %v allocations for %d outputs, want at most %v", allocs, n, limit)
	}
}
