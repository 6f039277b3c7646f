package demand_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/demand"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/totals"
	"github.com/layercake/cascade/internal/tree"
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

// net sums exactly, as totals does, over the trees below nodes, every quantity by layer,
// region, row key (model, accelerator or workload) and name.
func net(nodes []*tree.Node) map[string]float64 {
	exact := map[string]*totals.Exact{}
	var walk func(n *tree.Node)
	walk = func(n *tree.Node) {
		for _, q := range event.Quantities(n.Payload) {
			k := fmt.Sprintf("%s/%s/%s/%s", n.Event.Type.Short(), n.Payload.RegionName(), event.TotalsKey(n.Payload), q.Name)
			if exact[k] == nil {
				exact[k] = &totals.Exact{}
			}
			exact[k].Add(q.Value)
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	for _, n := range nodes {
		walk(n)
	}
	sums := make(map[string]float64, len(exact))
	for k, e := range exact {
		sums[k] = e.Value()
	}
	return sums
}

// kindsAt is the accelerators of region's fleet in force at t, sorted.
func kindsAt(c *coefficients.Loaded, region string, t time.Time) []string {
	var names []string
	for a, s := range c.At(t).Infrastructure.Fleet.For(region) {
		if s > 0 {
			names = append(names, a)
		}
	}
	slices.Sort(names)
	return names
}

// A release just before a fleet period begins has its fine-tuning retracted after the period
// began; the retraction is priced with the coefficients of the release's time, so the
// fine-tuning demand and its retraction net to exactly zero at every layer: FLOP/s,
// accelerators and HBM by kind, MW, TWh and CO2.
func TestRetractionAcrossAPeriodBoundaryNetsToZero(t *testing.T) {
	t.Parallel()
	c := coefficients.Default()
	set := c.At(time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC))
	window := time.Duration(set.Models.Release.FinetuneWindowDays * float64(24*time.Hour))
	// The first period boundary that a 90-day window starting a day before it crosses with a
	// change of the US fleet.
	var released time.Time
	for _, p := range c.Set.Periods {
		from, _ := time.Parse(coefficients.DateLayout, p.From)
		before := from.Add(-24 * time.Hour)
		if !slices.Equal(kindsAt(c, "us", before), kindsAt(c, "us", before.Add(window))) {
			released = before
			break
		}
	}
	if released.IsZero() {
		t.Fatal("no period boundary changes the us fleet within a fine-tuning window")
	}
	rel := &event.Release{Model: "m", Region: "us", OpenWeights: b(true), ParamsTotal: 7e10, ParamsActive: 7e10, Reasoning: b(false)}
	root, err := tree.Expand(t.Context(), c, at(t, released, rel), rel)
	if err != nil {
		t.Fatal(err)
	}
	var finetune []*tree.Node
	var end *tree.Node
	for _, n := range root.Children {
		if d := n.Payload.(*event.DemandInfrastructure); d.Workload == event.Finetune {
			finetune = append(finetune, n)
			if d.FlopPerS < 0 {
				end = n
			}
		}
	}
	if len(finetune) != 2 || end == nil || !end.Event.Time.After(released.Add(24*time.Hour)) {
		t.Fatalf("release at %s: %d fine-tuning branches, want the demand and its retraction after the boundary", released, len(finetune))
	}
	if p := end.Payload.(*event.DemandInfrastructure).PricedAt; p == nil || !p.Equal(released) {
		t.Fatalf("retraction priced_at %v, want the release's time %s", p, released)
	}
	layers := map[event.Type]bool{}
	var walk func(n *tree.Node)
	walk = func(n *tree.Node) {
		layers[n.Event.Type] = true
		if pt := n.Payload.(event.Priced).PricingTime(); pt == nil || !pt.Equal(released) {
			t.Errorf("%s %s priced at %v, want %s", n.Event.Type.Short(), n.Event.ID, pt, released)
		}
		for _, ch := range n.Children {
			walk(ch)
		}
	}
	walk(end)
	if len(layers) != 4 {
		t.Errorf("the retraction reached %d layers, want infrastructure, chips, energy and grid", len(layers))
	}
	sums := net(finetune)
	if len(sums) == 0 {
		t.Fatal("nothing summed")
	}
	for k, v := range sums {
		if v != 0 {
			t.Errorf("%s nets to %g, want 0", k, v)
		}
	}
}

// The same holds for a retraction signal that names its own pricing time, as the Epoch
// connector's training-end does: priced at the training's start, it nets the training to zero
// though the fleet changed while it ran.
func TestPricedRetractionSignalNetsToZero(t *testing.T) {
	t.Parallel()
	c := coefficients.Default()
	start := time.Date(2024, 10, 1, 0, 0, 0, 0, time.UTC)
	stop := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	if slices.Equal(kindsAt(c, "us", start), kindsAt(c, "us", stop)) {
		t.Fatalf("the us fleet is the same on %s and %s; pick a span with a change", start, stop)
	}
	on := &event.DemandInfrastructure{Region: "us", Workload: event.Training, FlopPerS: 1e19}
	off := &event.DemandInfrastructure{Region: "us", Workload: event.Training, FlopPerS: -1e19, PricedAt: &start}
	a, err := tree.Expand(t.Context(), c, at(t, start, on), on)
	if err != nil {
		t.Fatal(err)
	}
	offEv := at(t, stop, off)
	offEv.ID = "sig-2"
	z, err := tree.Expand(t.Context(), c, offEv, off)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range net([]*tree.Node{a, z}) {
		if v != 0 {
			t.Errorf("%s nets to %g, want 0", k, v)
		}
	}
	unpriced := *off
	unpriced.PricedAt = nil
	u, err := tree.Expand(t.Context(), c, offEv, &unpriced)
	if err != nil {
		t.Fatal(err)
	}
	residue := 0
	for _, v := range net([]*tree.Node{a, u}) {
		if v != 0 {
			residue++
		}
	}
	if residue == 0 {
		t.Error("without priced_at the retraction nets to zero too: the test does not cross a fleet change")
	}
}
