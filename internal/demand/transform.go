// Package demand holds the demand model: the five layer transforms, pure functions of an
// event and a coefficient set that return the demand the event places on the layer below.
// Stages binds them to the layers of event.Pipeline, and the two together are the topology.
// Nothing here touches a broker, a clock, a logger or any state between events.
package demand

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
)

// Output is one derived payload with its id key and, for a retraction, its own time.
type Output struct {
	Key     string        // workload, accelerator or "finetune-end": part of the derived id
	Delay   time.Duration // added to the parent's time (a fine-tuning retraction's window)
	Payload event.Payload
}

// secondsPerDay converts per-day quantities to per-second ones.
const secondsPerDay = 86400

// Application turns a change in weekly active users into tokens per day on a model.
func Application(c *coefficients.Set, a *event.Adoption) []Output {
	cat, ok := c.Applications.Categories[a.Category]
	if !ok {
		cat = c.Applications.Categories[c.Applications.DefaultCategory]
	}
	rpud, tpr, model := cat.RequestsPerUserDay, cat.TokensPerRequest, cat.Model
	if a.RequestsPerUserDay != nil {
		rpud = *a.RequestsPerUserDay
	}
	if a.TokensPerRequest != nil {
		tpr = *a.TokensPerRequest
	}
	if a.Model != "" {
		model = a.Model
	}
	tokens := a.UsersDelta * rpud * tpr
	return []Output{{Key: event.Inference, Payload: &event.DemandModel{Region: a.Region, Model: model, TokensPerDay: tokens}}}
}

// ModelDemand turns tokens per day on a model into inference FLOP/s.
func ModelDemand(c *coefficients.Set, d *event.DemandModel) []Output {
	m, ok := c.Models.Catalog[d.Model]
	if !ok {
		m = c.Models.Catalog[c.Models.DefaultModel]
	}
	active, reasoning := m.ParamsActive, m.Reasoning
	if d.ParamsActive != nil {
		active = *d.ParamsActive
	}
	if d.Reasoning != nil {
		reasoning = *d.Reasoning
	}
	eff := d.TokensPerDay * multiplier(c, reasoning)
	flop := eff * c.Models.FlopPerParamToken * active / secondsPerDay
	return []Output{infra(d.Region, event.Inference, flop)}
}

// ModelRelease turns a model release into inference FLOP/s for serving it and fine-tuning
// FLOP/s for its derivatives, the latter retracted after the fine-tuning window.
func ModelRelease(c *coefficients.Set, r *event.Release) []Output {
	p := c.Models.Release
	open := *r.OpenWeights
	tokens := p.ExpectedTokensPerDay.Pick(open)
	if r.ExpectedTokensPerDay != nil {
		tokens = *r.ExpectedTokensPerDay
	}
	inference := tokens * multiplier(c, *r.Reasoning) * c.Models.FlopPerParamToken * r.ParamsActive / secondsPerDay
	n := p.DerivativeFinetunes.Pick(open)
	if r.DerivativeFinetunes != nil {
		n = *r.DerivativeFinetunes
	}
	finetune := n * p.FinetuneTokens * p.FinetuneFlopPerParamToken * r.ParamsActive / (p.FinetuneWindowDays * secondsPerDay)
	window := time.Duration(p.FinetuneWindowDays * float64(24*time.Hour))
	end := infra(r.Region, event.Finetune, -finetune)
	end.Key, end.Delay = "finetune-end", window
	return []Output{infra(r.Region, event.Inference, inference), infra(r.Region, event.Finetune, finetune), end}
}

// pricingTime is p's priced_at, or nil.
func pricingTime(p event.Payload) *time.Time {
	if pp, ok := p.(event.Priced); ok {
		return pp.PricingTime()
	}
	return nil
}

func multiplier(c *coefficients.Set, reasoning bool) float64 {
	if reasoning {
		return c.Models.ReasoningTokenMultiplier
	}
	return 1
}

func infra(region, workload string, flop float64) Output {
	return Output{Key: workload, Payload: &event.DemandInfrastructure{Region: region, Workload: workload, FlopPerS: flop}}
}

// Infrastructure spreads FLOP/s over the region's fleet, in accelerators sorted by name, at
// each accelerator's utilization of the workload, plus the workload's idle capacity.
func Infrastructure(c *coefficients.Set, d *event.DemandInfrastructure) []Output {
	mix := c.Infrastructure.Fleet.For(d.Region)
	names := make([]string, 0, len(mix))
	for a, s := range mix {
		if s > 0 {
			names = append(names, a)
		}
	}
	sort.Strings(names)
	idle := 1 + c.Infrastructure.IdleCapacity[d.Workload]
	out := make([]Output, 0, len(names))
	for _, a := range names {
		acc := c.Chips.Accelerators[a]
		units := d.FlopPerS * mix[a] / (acc.PeakFlopPerS * acc.UtilizationFor(c.Infrastructure.Utilization, d.Workload)) * idle
		hbm := units * acc.HBMGB
		out = append(out, Output{Key: a, Payload: &event.DemandChips{Region: d.Region, Accelerator: a, Units: units, HBMGB: &hbm, Workload: d.Workload}})
	}
	return out
}

// Chips turns accelerators into IT and facility megawatts. An accelerator the coefficients do
// not know is invalid input.
func Chips(c *coefficients.Set, d *event.DemandChips) ([]Output, error) {
	acc, ok := c.Chips.Accelerators[d.Accelerator]
	if !ok {
		return nil, &event.ValidationError{Field: "data.accelerator", Rule: fmt.Sprintf("unknown accelerator %q", d.Accelerator)}
	}
	it := d.Units * acc.SystemKW / 1000
	facility := it * c.Infrastructure.PUE.For(d.Region)
	return []Output{{Key: d.Workload, Payload: &event.DemandEnergy{Region: d.Region, ITMW: it, FacilityMW: facility, Workload: d.Workload}}}, nil
}

// Energy turns facility megawatts into what the grid must supply and emit.
func Energy(c *coefficients.Set, d *event.DemandEnergy) []Output {
	e := c.Energy
	avg := d.FacilityMW * e.LoadFactorFor(d.Workload)
	gen := d.FacilityMW * (1 + e.ReserveMargin)
	twh := avg * 8760 / 1e6
	co2 := avg * 8760 * e.GridIntensityGPerKWh.For(d.Region) / 1000
	return []Output{{Key: d.Workload, Payload: &event.DemandGrid{Region: d.Region, AvgMW: avg, GenerationMW: gen, TWhPerYear: twh, CO2TPerYear: co2, Workload: d.Workload}}}
}

// Outputs applies the transform for the payload's type and returns its raw outputs.
func Outputs(c *coefficients.Set, p event.Payload) ([]Output, error) {
	if f, ok := formulas[p.EventType()]; ok {
		return f(c, p)
	}
	return nil, &event.ValidationError{Field: "type", Rule: fmt.Sprintf("%s is not accepted as input", p.EventType())}
}

// ErrTransform marks an output the model cannot represent (non-finite or out of range): a
// permanent error, never retried.
var ErrTransform = fmt.Errorf("transform")

// Derive is the layer step: the envelopes of the demand that in places on the layer below,
// stamped with provenance (causation, correlation, coefficient version) and deterministic ids.
// The coefficients are those in force at the payload's pricing time (its priced_at), else at
// in's time (coefficients.Loaded.At). An output whose time is not that pricing time (a
// retraction, delayed) carries it as priced_at, and so does all the demand derived below it:
// a retraction across a period boundary nets to zero at every layer, accelerators by kind
// included.
// Outputs whose primary quantity is exactly zero are dropped.
func Derive(ctx context.Context, c *coefficients.Loaded, in *event.Event, p event.Payload) ([]*event.Event, error) {
	ds, err := DeriveTyped(ctx, c, in, p)
	if err != nil {
		return nil, err
	}
	evs := make([]*event.Event, len(ds))
	for i, d := range ds {
		evs[i] = d.Event
	}
	return evs, nil
}

// Derived is one derived event with its typed payload.
type Derived struct {
	Event   *event.Event
	Payload event.Payload
}

// DeriveTyped is Derive with each output's typed payload, for callers that derive on from the
// outputs (trees) without decoding them again.
func DeriveTyped(ctx context.Context, c *coefficients.Loaded, in *event.Event, p event.Payload) ([]Derived, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	emitter := event.InputLayer(p.EventType())
	priced := pricingTime(p)
	when := in.Time
	if priced != nil {
		when = *priced
	}
	outs, err := Outputs(c.At(when), p)
	if err != nil {
		return nil, err
	}
	ds := make([]Derived, 0, len(outs))
	for _, o := range outs {
		if event.Primary(o.Payload) == 0 {
			continue
		}
		t := in.Time.Add(o.Delay)
		if !t.Equal(when) {
			// Priced at another time than its own (a retraction, or demand below one): it
			// carries that time, so each layer below prices it as the demand it retracts.
			op, ok := o.Payload.(event.Priced)
			if !ok {
				return nil, fmt.Errorf("%w: %s output %s: a %s cannot carry priced_at", ErrTransform, emitter, o.Key, o.Payload.EventType().Short())
			}
			if priced == nil {
				w := when.UTC()
				priced = &w
			}
			op.SetPricingTime(priced)
		}
		if err := o.Payload.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %s output %s: %w", ErrTransform, emitter, o.Key, err)
		}
		ev, err := event.New(in, emitter, o.Key, t, c.CoefVersion, o.Payload)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrTransform, err)
		}
		ds = append(ds, Derived{Event: ev, Payload: o.Payload})
	}
	return ds, nil
}
