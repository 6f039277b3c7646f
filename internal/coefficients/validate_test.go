package coefficients_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
)

// fresh is a private copy of the default set, safe to mutate.
func fresh(t *testing.T) *coefficients.Set {
	t.Helper()
	l, err := coefficients.Parse(coefficients.DefaultYAML())
	if err != nil {
		t.Fatal(err)
	}
	return l.Set
}

// wantInvalid checks that err matches ErrInvalid and that its message holds want ("key: rule");
// an empty want means no error.
func wantInvalid(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("got %v, want nil", err)
		}
		return
	}
	var v *event.ValidationError
	if err == nil || !errors.Is(err, event.ErrInvalid) || !errors.As(err, &v) {
		t.Fatalf("got %v, want a ValidationError holding %q", err, want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("got %q, want it to hold %q", err, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		in      func(s *coefficients.Set)
		wantErr string // "key: rule", a prefix of the rule is enough; "" for valid
	}{
		{"default", func(*coefficients.Set) {}, ""},
		{"utilization of exactly 1", func(s *coefficients.Set) { s.Infrastructure.Utilization.Training = 1 }, ""},
		{"shares off by 1e-12", func(s *coefficients.Set) { s.Infrastructure.Fleet.Default["h100"] += 1e-12 }, ""},
		{"a zero share", func(s *coefficients.Set) { s.Infrastructure.Fleet.Default["gb200"] = 0 }, ""},
		{"zero multipliers and priors", func(s *coefficients.Set) {
			s.Models.ReasoningTokenMultiplier, s.Models.Release.DerivativeFinetunes.Open = 0, 0
		}, ""},
		{"no version", func(s *coefficients.Set) { s.Version = "" }, "version: required"},
		{"default category unknown", func(s *coefficients.Set) { s.Applications.DefaultCategory = "games" },
			`applications.default_category: must name one of applications.categories (got "games")`},
		{"category requests zero", func(s *coefficients.Set) {
			setEntry(s.Applications.Categories, "chat", func(c *coefficients.Category) { c.RequestsPerUserDay = 0 })
		},
			"applications.categories.chat.requests_per_user_day: must be > 0"},
		{"category tokens negative", func(s *coefficients.Set) {
			setEntry(s.Applications.Categories, "coding", func(c *coefficients.Category) { c.TokensPerRequest = -1 })
		},
			"applications.categories.coding.tokens_per_request: must be > 0"},
		{"category tokens NaN", func(s *coefficients.Set) {
			setEntry(s.Applications.Categories, "image", func(c *coefficients.Category) { c.TokensPerRequest = math.NaN() })
		}, "applications.categories.image.tokens_per_request: must be a finite number"},
		{"category model not in catalog", func(s *coefficients.Set) {
			setEntry(s.Applications.Categories, "agents", func(c *coefficients.Category) { c.Model = "gpt-9" })
		},
			`applications.categories.agents.model: must name a model of models.catalog (got "gpt-9")`},
		{"default model not in catalog", func(s *coefficients.Set) { s.Models.DefaultModel = "gpt-9" },
			`models.default_model: must name a model of models.catalog (got "gpt-9")`},
		{"flop_per_param_token negative", func(s *coefficients.Set) { s.Models.FlopPerParamToken = -2 }, "models.flop_per_param_token: must be >= 0"},
		{"reasoning multiplier negative", func(s *coefficients.Set) { s.Models.ReasoningTokenMultiplier = -1 }, "models.reasoning_token_multiplier: must be >= 0"},
		{"reasoning multiplier infinite", func(s *coefficients.Set) { s.Models.ReasoningTokenMultiplier = math.Inf(1) }, "models.reasoning_token_multiplier: must be a finite number"},
		{"params_total zero", func(s *coefficients.Set) {
			setEntry(s.Models.Catalog, "kimi-k2", func(m *coefficients.CatalogModel) { m.ParamsTotal = 0 })
		},
			"models.catalog.kimi-k2.params_total: must be > 0"},
		{"params_active zero", func(s *coefficients.Set) {
			setEntry(s.Models.Catalog, "kimi-k2", func(m *coefficients.CatalogModel) { m.ParamsActive = 0 })
		},
			"models.catalog.kimi-k2.params_active: must be > 0"},
		{"params_active above params_total", func(s *coefficients.Set) {
			setEntry(s.Models.Catalog, "llama-3.1-8b", func(m *coefficients.CatalogModel) { m.ParamsActive = 9e9 })
		}, "models.catalog.llama-3.1-8b.params_active: must be <= params_total"},
		{"expected tokens open negative", func(s *coefficients.Set) { s.Models.Release.ExpectedTokensPerDay.Open = -1 },
			"models.release.expected_tokens_per_day.open: must be >= 0"},
		{"expected tokens closed negative", func(s *coefficients.Set) { s.Models.Release.ExpectedTokensPerDay.Closed = -1 },
			"models.release.expected_tokens_per_day.closed: must be >= 0"},
		{"finetunes open negative", func(s *coefficients.Set) { s.Models.Release.DerivativeFinetunes.Open = -1 },
			"models.release.derivative_finetunes.open: must be >= 0"},
		{"finetunes closed negative", func(s *coefficients.Set) { s.Models.Release.DerivativeFinetunes.Closed = -1 },
			"models.release.derivative_finetunes.closed: must be >= 0"},
		{"finetune tokens zero", func(s *coefficients.Set) { s.Models.Release.FinetuneTokens = 0 }, "models.release.finetune_tokens: must be > 0"},
		{"finetune flop negative", func(s *coefficients.Set) { s.Models.Release.FinetuneFlopPerParamToken = -6 },
			"models.release.finetune_flop_per_param_token: must be >= 0"},
		{"finetune window zero", func(s *coefficients.Set) { s.Models.Release.FinetuneWindowDays = 0 }, "models.release.finetune_window_days: must be > 0"},
		{"inference utilization zero", func(s *coefficients.Set) { s.Infrastructure.Utilization.Inference = 0 },
			"infrastructure.utilization.inference: must be in (0, 1]"},
		{"training utilization above 1", func(s *coefficients.Set) { s.Infrastructure.Utilization.Training = 1.5 },
			"infrastructure.utilization.training: must be in (0, 1]"},
		{"finetune utilization negative", func(s *coefficients.Set) { s.Infrastructure.Utilization.Finetune = -0.3 },
			"infrastructure.utilization.finetune: must be in (0, 1]"},
		{"negative share", func(s *coefficients.Set) {
			s.Infrastructure.Fleet.Default = coefficients.Mix{"h100": -0.5, "b200": 1.5}
		},
			"infrastructure.fleet.default.h100: must be >= 0"},
		{"default shares sum to 0.9", func(s *coefficients.Set) { s.Infrastructure.Fleet.Default["a100"] = 0.9 },
			"infrastructure.fleet.default: shares must sum to 1 (got 0.9)"},
		{"region shares sum to 0.9", func(s *coefficients.Set) { s.Infrastructure.Fleet.Regions["cn"] = coefficients.Mix{"h800": 0.9} },
			"infrastructure.fleet.regions.cn: shares must sum to 1 (got 0.9)"},
		{"empty region mix", func(s *coefficients.Set) { s.Infrastructure.Fleet.Regions["us"] = coefficients.Mix{} },
			"infrastructure.fleet.regions.us: shares must sum to 1 (got 0)"},
		{"fleet accelerator unknown", func(s *coefficients.Set) { s.Infrastructure.Fleet.Regions["cn"] = coefficients.Mix{"ascend-950": 1} },
			"infrastructure.fleet.regions.cn.ascend-950: unknown accelerator: not in chips.accelerators"},
		{"pue default below 1", func(s *coefficients.Set) { s.Infrastructure.PUE.Default = 0.9 }, "infrastructure.pue.default: must be >= 1"},
		{"pue region below 1", func(s *coefficients.Set) { s.Infrastructure.PUE.Regions["us"] = 0.5 }, "infrastructure.pue.regions.us: must be >= 1"},
		{"peak zero", func(s *coefficients.Set) {
			setEntry(s.Chips.Accelerators, "h100", func(a *coefficients.Accelerator) { a.PeakFlopPerS = 0 })
		},
			"chips.accelerators.h100.peak_flop_per_s: must be > 0"},
		{"system_kw negative", func(s *coefficients.Set) {
			setEntry(s.Chips.Accelerators, "b200", func(a *coefficients.Accelerator) { a.SystemKW = -1 })
		},
			"chips.accelerators.b200.system_kw: must be > 0"},
		{"hbm zero", func(s *coefficients.Set) {
			setEntry(s.Chips.Accelerators, "mi300x", func(a *coefficients.Accelerator) { a.HBMGB = 0 })
		},
			"chips.accelerators.mi300x.hbm_gb: must be > 0"},
		{"load factor zero", func(s *coefficients.Set) { s.Energy.LoadFactor = 0 }, "energy.load_factor: must be in (0, 1]"},
		{"load factor above 1", func(s *coefficients.Set) { s.Energy.LoadFactor = 1.2 }, "energy.load_factor: must be in (0, 1]"},
		{"reserve margin negative", func(s *coefficients.Set) { s.Energy.ReserveMargin = -0.15 }, "energy.reserve_margin: must be >= 0"},
		{"grid default negative", func(s *coefficients.Set) { s.Energy.GridIntensityGPerKWh.Default = -1 }, "energy.grid_intensity_g_per_kwh.default: must be >= 0"},
		{"grid region negative", func(s *coefficients.Set) { s.Energy.GridIntensityGPerKWh.Regions["fr"] = -56 },
			"energy.grid_intensity_g_per_kwh.regions.fr: must be >= 0"},
		{"grid region NaN", func(s *coefficients.Set) { s.Energy.GridIntensityGPerKWh.Regions["fr"] = math.NaN() },
			"energy.grid_intensity_g_per_kwh.regions.fr: must be a finite number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := fresh(t)
			tc.in(s)
			err := s.Validate()
			wantInvalid(t, err, tc.wantErr)
		})
	}
}

// TestValidateReportsAll: every broken rule is reported, in the same order each time.
func TestValidateReportsAll(t *testing.T) {
	s := fresh(t)
	s.Energy.LoadFactor = 2
	s.Infrastructure.Fleet.Regions["cn"]["a100"] = 0.5
	s.Infrastructure.Fleet.Regions["zz"] = coefficients.Mix{"h100": 0.5}
	s.Applications.DefaultCategory = "games"
	want := strings.Join([]string{
		`applications.default_category: must name one of applications.categories (got "games")`,
		"infrastructure.fleet.regions.cn: shares must sum to 1 (got 0.5)",
		"infrastructure.fleet.regions.zz: shares must sum to 1 (got 0.5)",
		"energy.load_factor: must be in (0, 1] (got 2)",
	}, "\n")
	for range 20 {
		if err := s.Validate(); err == nil || err.Error() != want {
			t.Fatalf("got\n%v\nwant\n%s", err, want)
		}
	}
}

// setEntry changes the entry name of one of the default set's maps in place.
func setEntry[V any](m map[string]V, name string, f func(*V)) {
	v, ok := m[name]
	if !ok {
		panic("default set has no " + name)
	}
	f(&v)
	m[name] = v
}
