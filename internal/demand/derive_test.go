package demand_test

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/demand"
	"github.com/layercake/cascade/internal/event"
)

func signal(t *testing.T, p event.Payload) *event.Event {
	t.Helper()
	ev, err := event.New(&event.Event{ID: "sig-1", Scenario: "base"}, event.Application, "", time.Date(2025, 1, 20, 12, 0, 0, 0, time.UTC), "", p)
	if err != nil {
		t.Fatal(err)
	}
	ev.ID, ev.CausationID, ev.CorrelationID, ev.Source = "sig-1", "", "sig-1", "/test"
	return ev
}

func TestDeriveStampsProvenance(t *testing.T) {
	t.Parallel()
	c := &coefficients.Loaded{Set: handSet(), CoefVersion: "hand+0000abcd"}
	rel := &event.Release{Model: "o", Region: "eu", OpenWeights: b(true), ParamsTotal: 2e9, ParamsActive: 1e9, Reasoning: b(false)}
	in := signal(t, rel)
	outs, err := demand.Derive(t.Context(), c, in, rel)
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != 3 {
		t.Fatalf("%d outputs, want 3", len(outs))
	}
	again, _ := demand.Derive(t.Context(), c, in, rel)
	for i, o := range outs {
		if o.CausationID != "sig-1" || o.CorrelationID != "sig-1" || o.CoefVersion != "hand+0000abcd" || o.Scenario != "base" ||
			o.Source != "/cascade/consumers/model" || o.Type != event.TypeDemandInfrastructure || o.Subject != "eu" ||
			o.DataSchema != "https://github.com/layercake/cascade/schemas/demand.infrastructure.v1.json" {
			t.Errorf("output %d envelope: %+v", i, o)
		}
		if o.ID != again[i].ID {
			t.Errorf("output %d id not deterministic: %s vs %s", i, o.ID, again[i].ID)
		}
	}
	if outs[0].ID == outs[1].ID || outs[1].ID == outs[2].ID {
		t.Error("outputs of one event share an id")
	}
	if want := in.Time.Add(50 * 24 * time.Hour); !outs[2].Time.Equal(want) || !outs[0].Time.Equal(in.Time) {
		t.Errorf("times %s %s, want the parent's and the retraction at %s", outs[0].Time, outs[2].Time, want)
	}
}

func TestDeriveDropsZeroPrimary(t *testing.T) {
	t.Parallel()
	c := &coefficients.Loaded{Set: handSet(), CoefVersion: "hand+0"}
	rel := &event.Release{Model: "c", Region: "us", OpenWeights: b(false), ParamsTotal: 2e9, ParamsActive: 1e9, Reasoning: b(true)}
	outs, err := demand.Derive(t.Context(), c, signal(t, rel), rel)
	if err != nil || len(outs) != 1 {
		t.Fatalf("%d outputs (%v), want only inference: a closed model has no fine-tunes", len(outs), err)
	}
	zero := &event.Adoption{App: "x", Category: "chat", Region: "us", UsersDelta: 0}
	if outs, _ := demand.Derive(t.Context(), c, signal(t, zero), zero); len(outs) != 0 {
		t.Fatalf("zero users gave %d outputs", len(outs))
	}
}

func TestDeriveRefusesNonFinite(t *testing.T) {
	t.Parallel()
	c := &coefficients.Loaded{Set: handSet(), CoefVersion: "hand+0"}
	huge := &event.DemandChips{Region: "us", Accelerator: "a", Units: 1e21}
	c.Set.Chips.Accelerators["a"] = coefficients.Accelerator{PeakFlopPerS: 1, SystemKW: math.MaxFloat64, HBMGB: 1}
	_, err := demand.Derive(t.Context(), c, signal(t, huge), huge)
	if !errors.Is(err, demand.ErrTransform) {
		t.Fatalf("err %v, want ErrTransform", err)
	}
}

func ExampleEnergy() {
	outs := demand.Energy(handSet(), &event.DemandEnergy{Region: "us", ITMW: 8, FacilityMW: 10, Workload: "inference"})
	g := outs[0].Payload.(*event.DemandGrid)
	fmt.Printf("%.1f MW avg, %.1f MW generation, %.4f TWh/yr, %.0f tCO2/yr\n", g.AvgMW, g.GenerationMW, g.TWhPerYear, g.CO2TPerYear)
	// Output: 5.0 MW avg, 12.0 MW generation, 0.0438 TWh/yr, 17520 tCO2/yr
}

func ExampleChips() {
	outs, _ := demand.Chips(handSet(), &event.DemandChips{Region: "us", Accelerator: "a", Units: 1000})
	e := outs[0].Payload.(*event.DemandEnergy)
	fmt.Printf("%.1f MW IT, %.1f MW facility\n", e.ITMW, e.FacilityMW)
	// Output: 2.0 MW IT, 3.0 MW facility
}

func ExampleInfrastructure() {
	for _, o := range demand.Infrastructure(handSet(), &event.DemandInfrastructure{Region: "us", Workload: "inference", FlopPerS: 1e15}) {
		c := o.Payload.(*event.DemandChips)
		fmt.Printf("%s: %.3f units, %.1f GB HBM\n", c.Accelerator, c.Units, *c.HBMGB)
	}
	// Output:
	// a: 0.500 units, 50.0 GB HBM
	// b: 0.375 units, 75.0 GB HBM
}

func ExampleModelDemand() {
	outs := demand.ModelDemand(handSet(), &event.DemandModel{Region: "us", Model: "r1", TokensPerDay: 86400})
	fmt.Printf("%.3g FLOP/s\n", outs[0].Payload.(*event.DemandInfrastructure).FlopPerS)
	// Output: 8e+10 FLOP/s
}

func ExampleApplication() {
	outs := demand.Application(handSet(), &event.Adoption{App: "x", Category: "chat", Region: "us", UsersDelta: 1000})
	d := outs[0].Payload.(*event.DemandModel)
	fmt.Printf("%s: %.3g tokens/day\n", d.Model, d.TokensPerDay)
	// Output: m1: 1e+06 tokens/day
}

func ExampleModelRelease() {
	for _, o := range demand.ModelRelease(handSet(), &event.Release{Model: "o", Region: "eu", OpenWeights: b(true), ParamsTotal: 2e9, ParamsActive: 1e9, Reasoning: b(false)}) {
		fmt.Printf("%s after %s: %.3g FLOP/s\n", o.Key, o.Delay, o.Payload.(*event.DemandInfrastructure).FlopPerS)
	}
	// Output:
	// inference after 0s: 2e+14 FLOP/s
	// finetune after 0s: 6e+12 FLOP/s
	// finetune-end after 1200h0m0s: -6e+12 FLOP/s
}
