package demand_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/demand"
	"github.com/layercake/cascade/internal/event"
)

// handSet is a small coefficient set whose numbers make the formulas easy to work by hand.
func handSet() *coefficients.Set {
	return &coefficients.Set{
		Version: "hand",
		Applications: coefficients.Applications{DefaultCategory: "chat", Categories: map[string]coefficients.Category{
			"chat": {RequestsPerUserDay: 2, TokensPerRequest: 500, Model: "m1"},
		}},
		Models: coefficients.Models{
			DefaultModel: "m1", FlopPerParamToken: 2, ReasoningTokenMultiplier: 4,
			Catalog: map[string]coefficients.CatalogModel{
				"m1": {ParamsActive: 1e9, ParamsTotal: 2e9},
				"r1": {ParamsActive: 1e10, ParamsTotal: 1e11, Reasoning: true},
			},
			Release: coefficients.ReleasePriors{
				ExpectedTokensPerDay: coefficients.OpenClosed{Open: 8.64e9, Closed: 8.64e10},
				DerivativeFinetunes:  coefficients.OpenClosed{Open: 10, Closed: 0},
				FinetuneTokens:       4.32e8, FinetuneFlopPerParamToken: 6, FinetuneWindowDays: 50,
			},
		},
		Infrastructure: coefficients.Infrastructure{
			Utilization: coefficients.Utilization{Inference: 0.5, Training: 0.4, Finetune: 0.25},
			Fleet:       coefficients.Fleet{Default: coefficients.Mix{"b": 0.75, "a": 0.25}, Regions: map[string]coefficients.Mix{"x": {"a": 1, "b": 0}}},
			PUE:         coefficients.Regional{Default: 1.5, Regions: map[string]float64{"x": 1.1}},
		},
		Chips: coefficients.Chips{Accelerators: map[string]coefficients.Accelerator{
			"a": {PeakFlopPerS: 1e15, SystemKW: 2, HBMGB: 100},
			"b": {PeakFlopPerS: 4e15, SystemKW: 5, HBMGB: 200},
		}},
		Energy: coefficients.Energy{LoadFactor: 0.5, ReserveMargin: 0.2, GridIntensityGPerKWh: coefficients.Regional{Default: 400, Regions: map[string]float64{"x": 100}}},
	}
}

func f(v float64) *float64 { return &v }
func b(v bool) *bool       { return &v }

// out is an expected output: key, delay, payload.
type out struct {
	key   string
	delay time.Duration
	p     event.Payload
}

func TestTransforms(t *testing.T) {
	t.Parallel()
	c := handSet()
	tests := []struct {
		name string
		in   event.Payload
		want []out
	}{
		// tokens = users × requests/user/day × tokens/request
		{"adoption uses its category", &event.Adoption{App: "x", Category: "chat", Region: "us", UsersDelta: 1000},
			[]out{{"inference", 0, &event.DemandModel{Region: "us", Model: "m1", TokensPerDay: 1000 * 2 * 500}}}},
		{"adoption overrides win", &event.Adoption{App: "x", Category: "chat", Region: "us", UsersDelta: 1000, RequestsPerUserDay: f(3), TokensPerRequest: f(100), Model: "r1"},
			[]out{{"inference", 0, &event.DemandModel{Region: "us", Model: "r1", TokensPerDay: 300000}}}},
		{"unknown category falls back to the default", &event.Adoption{App: "x", Category: "poetry", Region: "us", UsersDelta: -10},
			[]out{{"inference", 0, &event.DemandModel{Region: "us", Model: "m1", TokensPerDay: -10000}}}},
		// flop/s = tokens × multiplier × 2 × active / 86400
		{"model demand, plain model", &event.DemandModel{Region: "us", Model: "m1", TokensPerDay: 86400},
			[]out{{"inference", 0, &event.DemandInfrastructure{Region: "us", Workload: "inference", FlopPerS: 2e9}}}},
		{"model demand, reasoning model ×4", &event.DemandModel{Region: "us", Model: "r1", TokensPerDay: 86400},
			[]out{{"inference", 0, &event.DemandInfrastructure{Region: "us", Workload: "inference", FlopPerS: 8e10}}}},
		{"model demand, unknown model uses default", &event.DemandModel{Region: "us", Model: "zzz", TokensPerDay: 86400},
			[]out{{"inference", 0, &event.DemandInfrastructure{Region: "us", Workload: "inference", FlopPerS: 2e9}}}},
		{"model demand, event parameters win", &event.DemandModel{Region: "us", Model: "r1", TokensPerDay: 86400, ParamsActive: f(5e9), Reasoning: b(false)},
			[]out{{"inference", 0, &event.DemandInfrastructure{Region: "us", Workload: "inference", FlopPerS: 1e10}}}},
		// inference 8.64e9 × 2 × 1e9 / 86400 = 2e14; fine-tuning 10 × 4.32e8 × 6 × 1e9 / (50 × 86400) = 6e12
		{"open release: serving, fine-tuning and its retraction", &event.Release{Model: "o", Region: "eu", OpenWeights: b(true), ParamsTotal: 2e9, ParamsActive: 1e9, Reasoning: b(false)},
			[]out{
				{"inference", 0, &event.DemandInfrastructure{Region: "eu", Workload: "inference", FlopPerS: 2e14}},
				{"finetune", 0, &event.DemandInfrastructure{Region: "eu", Workload: "finetune", FlopPerS: 6e12}},
				{"finetune-end", 50 * 24 * time.Hour, &event.DemandInfrastructure{Region: "eu", Workload: "finetune", FlopPerS: -6e12}},
			}},
		// closed prior 8.64e10 × 4 × 2 × 1e9 / 86400 = 8e15; no derivative fine-tunes
		{"closed reasoning release", &event.Release{Model: "c", Region: "us", OpenWeights: b(false), ParamsTotal: 2e9, ParamsActive: 1e9, Reasoning: b(true)},
			[]out{
				{"inference", 0, &event.DemandInfrastructure{Region: "us", Workload: "inference", FlopPerS: 8e15}},
				{"finetune", 0, &event.DemandInfrastructure{Region: "us", Workload: "finetune", FlopPerS: 0}},
				{"finetune-end", 50 * 24 * time.Hour, &event.DemandInfrastructure{Region: "us", Workload: "finetune", FlopPerS: 0}},
			}},
		{"release figures from the event win", &event.Release{Model: "o", Region: "eu", OpenWeights: b(true), ParamsTotal: 2e9, ParamsActive: 1e9, Reasoning: b(false), ExpectedTokensPerDay: f(86400), DerivativeFinetunes: f(1)},
			[]out{
				{"inference", 0, &event.DemandInfrastructure{Region: "eu", Workload: "inference", FlopPerS: 2e9}},
				{"finetune", 0, &event.DemandInfrastructure{Region: "eu", Workload: "finetune", FlopPerS: 6e11}},
				{"finetune-end", 50 * 24 * time.Hour, &event.DemandInfrastructure{Region: "eu", Workload: "finetune", FlopPerS: -6e11}},
			}},
		// units = flop × share / (peak × utilization), sorted by accelerator
		{"infrastructure over the default fleet", &event.DemandInfrastructure{Region: "us", Workload: "inference", FlopPerS: 1e15},
			[]out{
				{"a", 0, &event.DemandChips{Region: "us", Accelerator: "a", Units: 0.5, HBMGB: f(50), Workload: "inference"}},
				{"b", 0, &event.DemandChips{Region: "us", Accelerator: "b", Units: 0.375, HBMGB: f(75), Workload: "inference"}},
			}},
		{"infrastructure, region fleet skips zero shares", &event.DemandInfrastructure{Region: "x", Workload: "inference", FlopPerS: 1e15},
			[]out{{"a", 0, &event.DemandChips{Region: "x", Accelerator: "a", Units: 2, HBMGB: f(200), Workload: "inference"}}}},
		{"infrastructure, training utilization", &event.DemandInfrastructure{Region: "us", Workload: "training", FlopPerS: 1e15},
			[]out{
				{"a", 0, &event.DemandChips{Region: "us", Accelerator: "a", Units: 0.625, HBMGB: f(62.5), Workload: "training"}},
				{"b", 0, &event.DemandChips{Region: "us", Accelerator: "b", Units: 0.46875, HBMGB: f(93.75), Workload: "training"}},
			}},
		// it = units × kW / 1000; facility = it × PUE
		{"chips to power", &event.DemandChips{Region: "us", Accelerator: "a", Units: 1000, Workload: "inference"},
			[]out{{"inference", 0, &event.DemandEnergy{Region: "us", ITMW: 2, FacilityMW: 3, Workload: "inference"}}}},
		{"chips to power, regional PUE", &event.DemandChips{Region: "x", Accelerator: "b", Units: 400},
			[]out{{"", 0, &event.DemandEnergy{Region: "x", ITMW: 2, FacilityMW: 2.2}}}},
		// avg = facility × load factor; generation = facility × (1 + reserve); TWh = avg × 8760 / 1e6; t = avg × 8760 × g/kWh / 1000
		{"energy to grid", &event.DemandEnergy{Region: "us", ITMW: 8, FacilityMW: 10, Workload: "training"},
			[]out{{"training", 0, &event.DemandGrid{Region: "us", AvgMW: 5, GenerationMW: 12, TWhPerYear: 0.0438, CO2TPerYear: 17520, Workload: "training"}}}},
		{"energy to grid, regional intensity", &event.DemandEnergy{Region: "x", ITMW: 8, FacilityMW: 10},
			[]out{{"", 0, &event.DemandGrid{Region: "x", AvgMW: 5, GenerationMW: 12, TWhPerYear: 0.0438, CO2TPerYear: 4380}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := demand.Outputs(c, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("%d outputs, want %d", len(got), len(tt.want))
			}
			for i, w := range tt.want {
				g := got[i]
				if g.Key != w.key || g.Delay != w.delay {
					t.Errorf("output %d: key %q delay %s, want %q %s", i, g.Key, g.Delay, w.key, w.delay)
				}
				assertPayload(t, g.Payload, w.p)
			}
		})
	}
}

// assertPayload compares payloads field by field, numbers to 1e-12 relative.
func assertPayload(t *testing.T, got, want event.Payload) {
	t.Helper()
	if got.EventType() != want.EventType() || got.RegionName() != want.RegionName() || event.Label(got) != event.Label(want) {
		t.Fatalf("got %s %s %q, want %s %s %q", got.EventType(), got.RegionName(), event.Label(got), want.EventType(), want.RegionName(), event.Label(want))
	}
	gq, wq := event.Quantities(got), event.Quantities(want)
	if len(gq) != len(wq) {
		t.Fatalf("quantities %v, want %v", gq, wq)
	}
	for i := range gq {
		if gq[i].Name != wq[i].Name || math.Abs(gq[i].Value-wq[i].Value) > 1e-12*math.Abs(wq[i].Value) {
			t.Errorf("%s = %v, want %v", gq[i].Name, gq[i].Value, wq[i].Value)
		}
	}
}

func TestUnknownAccelerator(t *testing.T) {
	t.Parallel()
	_, err := demand.Outputs(handSet(), &event.DemandChips{Region: "us", Accelerator: "warp9", Units: 1})
	var ve *event.ValidationError
	if !errors.As(err, &ve) || ve.Field != "data.accelerator" {
		t.Fatalf("err %v, want a validation error on data.accelerator", err)
	}
}

func TestGridIsNotAnInput(t *testing.T) {
	t.Parallel()
	_, err := demand.Outputs(handSet(), &event.DemandGrid{Region: "us"})
	if !errors.Is(err, event.ErrInvalid) {
		t.Fatalf("err %v, want ErrInvalid", err)
	}
}
