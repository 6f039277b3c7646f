package demand_test

import (
	"testing"
	"time"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/demand"
	"github.com/layercake/cascade/internal/event"
)

// benchInputs is one typical input per transform.
var benchInputs = []struct {
	name string
	p    event.Payload
}{
	{"application", &event.Adoption{App: "chatapp", Category: "chat", Region: "eu", UsersDelta: 125000}},
	{"model-demand", &event.DemandModel{Region: "eu", Model: "m1", TokensPerDay: 2.8125e8}},
	{"model-release", &event.Release{Model: "o", Region: "eu", OpenWeights: b(true), ParamsTotal: 2e9, ParamsActive: 1e9, Reasoning: b(false)}},
	{"infrastructure", &event.DemandInfrastructure{Region: "eu", Workload: event.Inference, FlopPerS: 6.5e9}},
	{"chips", &event.DemandChips{Region: "eu", Accelerator: "a", Units: 3.2e-3, HBMGB: f(0.26), Workload: event.Inference}},
	{"energy", &event.DemandEnergy{Region: "eu", ITMW: 3.2e-5, FacilityMW: 3.9e-5, Workload: event.Inference}},
}

// BenchmarkTransform runs each layer's transform alone.
func BenchmarkTransform(bm *testing.B) {
	c := handSet()
	for _, in := range benchInputs {
		bm.Run(in.name, func(bm *testing.B) {
			bm.ReportAllocs()
			for bm.Loop() {
				if _, err := demand.Outputs(c, in.p); err != nil {
					bm.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDerive runs each layer's step: transform, validation and the derived envelopes.
func BenchmarkDerive(bm *testing.B) {
	c := &coefficients.Loaded{Set: handSet(), CoefVersion: "hand+0000abcd"}
	for _, in := range benchInputs {
		ev, err := event.New(&event.Event{ID: "sig-1", Scenario: "base"}, event.Application, "", time.Date(2025, 1, 20, 12, 0, 0, 0, time.UTC), "", in.p)
		if err != nil {
			bm.Fatal(err)
		}
		bm.Run(in.name, func(bm *testing.B) {
			bm.ReportAllocs()
			for bm.Loop() {
				if _, err := demand.Derive(bm.Context(), c, ev, in.p); err != nil {
					bm.Fatal(err)
				}
			}
		})
	}
}
