package coefficients

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/layercake/cascade/internal/event"
)

// ShareTolerance is how far a fleet's shares may sum from 1.
const ShareTolerance = 1e-9

// Validate checks the rules of demand-model.md ("Validation beyond the schema") and those a
// Set built in Go could break although the schema holds them for files: every number finite;
// utilizations and load_factor in (0, 1]; peak_flop_per_s, system_kw, hbm_gb,
// finetune_window_days, finetune_tokens, a category's requests and tokens and a model's
// parameters > 0; params_active <= params_total; pue >= 1; reserve_margin, grid intensities,
// multipliers and release priors >= 0; fleet shares >= 0 summing to 1 (±ShareTolerance), each
// naming an accelerator of chips.accelerators; every category's model and default_model in
// the catalog; default_category among the categories; an accelerator's available_from a date
// and its per-workload utilization, like energy.load_factor_by_workload, fractions of known
// workloads; infrastructure.idle_capacity >= 0 per known workload. It reports every broken rule, in a
// fixed order (maps by sorted key), joined; each is a *event.ValidationError whose Field is
// the dotted key.
func (s *Set) Validate() error {
	var c checker
	if s.Version == "" {
		c.fail("version", "required")
	}

	apps := s.Applications
	if _, ok := apps.Categories[apps.DefaultCategory]; !ok {
		c.fail("applications.default_category", "must name one of applications.categories (got %q)", apps.DefaultCategory)
	}
	for _, name := range sortedKeys(apps.Categories) {
		cat, at := apps.Categories[name], "applications.categories."+name
		c.positive(at+".requests_per_user_day", cat.RequestsPerUserDay)
		c.positive(at+".tokens_per_request", cat.TokensPerRequest)
		c.inCatalog(s, at+".model", cat.Model)
	}

	m := s.Models
	c.inCatalog(s, "models.default_model", m.DefaultModel)
	c.nonNegative("models.flop_per_param_token", m.FlopPerParamToken)
	c.nonNegative("models.reasoning_token_multiplier", m.ReasoningTokenMultiplier)
	for _, name := range sortedKeys(m.Catalog) {
		cm, at := m.Catalog[name], "models.catalog."+name
		c.positive(at+".params_total", cm.ParamsTotal)
		if c.positive(at+".params_active", cm.ParamsActive) && cm.ParamsActive > cm.ParamsTotal {
			c.fail(at+".params_active", "must be <= params_total (got %g > %g)", cm.ParamsActive, cm.ParamsTotal)
		}
	}
	r := m.Release
	c.nonNegative("models.release.expected_tokens_per_day.open", r.ExpectedTokensPerDay.Open)
	c.nonNegative("models.release.expected_tokens_per_day.closed", r.ExpectedTokensPerDay.Closed)
	c.nonNegative("models.release.derivative_finetunes.open", r.DerivativeFinetunes.Open)
	c.nonNegative("models.release.derivative_finetunes.closed", r.DerivativeFinetunes.Closed)
	c.positive("models.release.finetune_tokens", r.FinetuneTokens)
	c.nonNegative("models.release.finetune_flop_per_param_token", r.FinetuneFlopPerParamToken)
	c.positive("models.release.finetune_window_days", r.FinetuneWindowDays)

	inf := s.Infrastructure
	c.fraction("infrastructure.utilization.inference", inf.Utilization.Inference)
	c.fraction("infrastructure.utilization.training", inf.Utilization.Training)
	c.fraction("infrastructure.utilization.finetune", inf.Utilization.Finetune)
	c.mix(s, "infrastructure.fleet.default", inf.Fleet.Default)
	for _, region := range sortedKeys(inf.Fleet.Regions) {
		c.mix(s, "infrastructure.fleet.regions."+region, inf.Fleet.Regions[region])
	}
	c.regional("infrastructure.pue", inf.PUE, 1)
	for _, w := range sortedKeys(inf.IdleCapacity) {
		if (Utilization{Inference: 1, Training: 1, Finetune: 1}).For(w) == 0 {
			c.fail("infrastructure.idle_capacity."+w, "unknown workload: want inference, training or finetune")
			continue
		}
		c.nonNegative("infrastructure.idle_capacity."+w, inf.IdleCapacity[w])
	}

	for _, name := range sortedKeys(s.Chips.Accelerators) {
		a, at := s.Chips.Accelerators[name], "chips.accelerators."+name
		c.positive(at+".peak_flop_per_s", a.PeakFlopPerS)
		c.positive(at+".system_kw", a.SystemKW)
		c.positive(at+".hbm_gb", a.HBMGB)
		if a.AvailableFrom != "" {
			if _, err := time.Parse(DateLayout, a.AvailableFrom); err != nil {
				c.fail(at+".available_from", "must be a date YYYY-MM-DD (got %q)", a.AvailableFrom)
			}
		}
		c.byWorkload(at+".utilization", a.Utilization)
	}

	e := s.Energy
	c.fraction("energy.load_factor", e.LoadFactor)
	c.byWorkload("energy.load_factor_by_workload", e.LoadFactorByWorkload)
	c.nonNegative("energy.reserve_margin", e.ReserveMargin)
	c.regional("energy.grid_intensity_g_per_kwh", e.GridIntensityGPerKWh, 0)
	return errors.Join(c.errs...)
}

type checker struct{ errs []error }

func (c *checker) fail(key, rule string, args ...any) {
	c.errs = append(c.errs, &event.ValidationError{Field: key, Rule: fmt.Sprintf(rule, args...)})
}

// finite reports whether v is a finite number, failing key if not.
func (c *checker) finite(key string, v float64) bool {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		c.fail(key, "must be a finite number (got %g)", v)
		return false
	}
	return true
}

// positive reports whether v is finite and > 0, failing key if not.
func (c *checker) positive(key string, v float64) bool {
	if !c.finite(key, v) {
		return false
	}
	if v <= 0 {
		c.fail(key, "must be > 0 (got %g)", v)
		return false
	}
	return true
}

func (c *checker) atLeast(key string, v, min float64) {
	if c.finite(key, v) && v < min {
		c.fail(key, "must be >= %g (got %g)", min, v)
	}
}

func (c *checker) nonNegative(key string, v float64) { c.atLeast(key, v, 0) }

func (c *checker) fraction(key string, v float64) {
	if c.finite(key, v) && (v <= 0 || v > 1) {
		c.fail(key, "must be in (0, 1] (got %g)", v)
	}
}

// byWorkload checks a per-workload override: known workloads, fractions.
func (c *checker) byWorkload(key string, m map[string]float64) {
	for _, w := range sortedKeys(m) {
		if (Utilization{Inference: 1, Training: 1, Finetune: 1}).For(w) == 0 {
			c.fail(key+"."+w, "unknown workload: want inference, training or finetune")
			continue
		}
		c.fraction(key+"."+w, m[w])
	}
}

func (c *checker) regional(key string, r Regional, min float64) {
	c.atLeast(key+".default", r.Default, min)
	for _, region := range sortedKeys(r.Regions) {
		c.atLeast(key+".regions."+region, r.Regions[region], min)
	}
}

func (c *checker) inCatalog(s *Set, key, model string) {
	if _, ok := s.Models.Catalog[model]; !ok {
		c.fail(key, "must name a model of models.catalog (got %q)", model)
	}
}

func (c *checker) mix(s *Set, key string, m Mix) {
	sum := 0.0
	for _, name := range sortedKeys(m) {
		share, at := m[name], key+"."+name
		if _, ok := s.Chips.Accelerators[name]; !ok {
			c.fail(at, "unknown accelerator: not in chips.accelerators")
		}
		c.nonNegative(at, share)
		sum += share
	}
	if math.Abs(sum-1) > ShareTolerance || math.IsNaN(sum) {
		c.fail(key, "shares must sum to 1 (got %g)", sum)
	}
}
