// Package coefficients holds the demand model's coefficient set: its Go shape, the embedded
// default file with a source for every number, loading, validation and the coefversion.
package coefficients

// Set is one coefficient document (demand-model.md, "Coefficients").
type Set struct {
	Version        string            `yaml:"version" json:"version"`
	Applications   Applications      `yaml:"applications" json:"applications"`
	Models         Models            `yaml:"models" json:"models"`
	Infrastructure Infrastructure    `yaml:"infrastructure" json:"infrastructure"`
	Chips          Chips             `yaml:"chips" json:"chips"`
	Energy         Energy            `yaml:"energy" json:"energy"`
	Sources        map[string]string `yaml:"sources,omitempty" json:"sources,omitempty"`
	// Periods are the values that change at dates (see Period); a set without them is
	// timeless.
	Periods []Period `yaml:"periods,omitempty" json:"periods,omitempty"`
}

// Applications holds per-category usage.
type Applications struct {
	DefaultCategory string              `yaml:"default_category" json:"default_category"`
	Categories      map[string]Category `yaml:"categories" json:"categories"`
}

// Category is the usage of one kind of application.
type Category struct {
	RequestsPerUserDay float64 `yaml:"requests_per_user_day" json:"requests_per_user_day"`
	TokensPerRequest   float64 `yaml:"tokens_per_request" json:"tokens_per_request"`
	Model              string  `yaml:"model" json:"model"`
}

// Models holds the model catalog and release priors.
type Models struct {
	DefaultModel             string                  `yaml:"default_model" json:"default_model"`
	FlopPerParamToken        float64                 `yaml:"flop_per_param_token" json:"flop_per_param_token"`
	ReasoningTokenMultiplier float64                 `yaml:"reasoning_token_multiplier" json:"reasoning_token_multiplier"`
	Catalog                  map[string]CatalogModel `yaml:"catalog" json:"catalog"`
	Release                  ReleasePriors           `yaml:"release" json:"release"`
}

// CatalogModel is one known model.
type CatalogModel struct {
	ParamsActive float64 `yaml:"params_active" json:"params_active"`
	ParamsTotal  float64 `yaml:"params_total" json:"params_total"`
	Reasoning    bool    `yaml:"reasoning" json:"reasoning"`
}

// ReleasePriors are used for a release that does not state its own figures.
type ReleasePriors struct {
	ExpectedTokensPerDay      OpenClosed `yaml:"expected_tokens_per_day" json:"expected_tokens_per_day"`
	DerivativeFinetunes       OpenClosed `yaml:"derivative_finetunes" json:"derivative_finetunes"`
	FinetuneTokens            float64    `yaml:"finetune_tokens" json:"finetune_tokens"`
	FinetuneFlopPerParamToken float64    `yaml:"finetune_flop_per_param_token" json:"finetune_flop_per_param_token"`
	FinetuneWindowDays        float64    `yaml:"finetune_window_days" json:"finetune_window_days"`
}

// OpenClosed is a prior split by whether a model's weights are open.
type OpenClosed struct {
	Open   float64 `yaml:"open" json:"open"`
	Closed float64 `yaml:"closed" json:"closed"`
}

// Pick returns the open or closed value.
func (o OpenClosed) Pick(open bool) float64 {
	if open {
		return o.Open
	}
	return o.Closed
}

// Infrastructure holds utilization, fleet mix and PUE.
type Infrastructure struct {
	Utilization Utilization `yaml:"utilization" json:"utilization"`
	Fleet       Fleet       `yaml:"fleet" json:"fleet"`
	PUE         Regional    `yaml:"pue" json:"pue"`
	// IdleCapacity is, per workload, the accelerators kept idle or as backup on top of those
	// the demand keeps busy, as a fraction of the busy ones (absent: none).
	IdleCapacity map[string]float64 `yaml:"idle_capacity,omitempty" json:"idle_capacity,omitempty"`
}

// Utilization is the realized fraction of peak FLOP/s per workload.
type Utilization struct {
	Inference float64 `yaml:"inference" json:"inference"`
	Training  float64 `yaml:"training" json:"training"`
	Finetune  float64 `yaml:"finetune" json:"finetune"`
}

// For returns the utilization of a workload name, or 0 if unknown.
func (u Utilization) For(workload string) float64 {
	switch workload {
	case "inference":
		return u.Inference
	case "training":
		return u.Training
	case "finetune":
		return u.Finetune
	}
	return 0
}

// Mix maps accelerator name to its share of a fleet.
type Mix map[string]float64

// Fleet is the default accelerator mix and per-region mixes.
type Fleet struct {
	Default Mix            `yaml:"default" json:"default"`
	Regions map[string]Mix `yaml:"regions" json:"regions"`
}

// For returns the region's mix, else the default.
func (f Fleet) For(region string) Mix {
	if m, ok := f.Regions[region]; ok {
		return m
	}
	return f.Default
}

// Regional is a default value with per-region overrides.
type Regional struct {
	Default float64            `yaml:"default" json:"default"`
	Regions map[string]float64 `yaml:"regions" json:"regions"`
}

// For returns the region's value, else the default.
func (r Regional) For(region string) float64 {
	if v, ok := r.Regions[region]; ok {
		return v
	}
	return r.Default
}

// Chips holds the accelerator catalog.
type Chips struct {
	Accelerators map[string]Accelerator `yaml:"accelerators" json:"accelerators"`
}

// Accelerator is one kind of chip as deployed in a system.
type Accelerator struct {
	PeakFlopPerS float64 `yaml:"peak_flop_per_s" json:"peak_flop_per_s"`
	SystemKW     float64 `yaml:"system_kw" json:"system_kw"`
	HBMGB        float64 `yaml:"hbm_gb" json:"hbm_gb"`
	// AvailableFrom is the first day (YYYY-MM-DD) the accelerator shipped in volume; a fleet in
	// force before it may not name it. Empty: always available.
	AvailableFrom string `yaml:"available_from,omitempty" json:"available_from,omitempty"`
	// Utilization overrides infrastructure.utilization per workload for this accelerator
	// (memory-bound inference realizes a different share of peak on each chip).
	Utilization map[string]float64 `yaml:"utilization,omitempty" json:"utilization,omitempty"`
}

// UtilizationFor is the accelerator's own utilization of workload, else u's.
func (a Accelerator) UtilizationFor(u Utilization, workload string) float64 {
	if v, ok := a.Utilization[workload]; ok {
		return v
	}
	return u.For(workload)
}

// Energy holds the grid-side coefficients.
type Energy struct {
	LoadFactor           float64  `yaml:"load_factor" json:"load_factor"`
	ReserveMargin        float64  `yaml:"reserve_margin" json:"reserve_margin"`
	GridIntensityGPerKWh Regional `yaml:"grid_intensity_g_per_kwh" json:"grid_intensity_g_per_kwh"`
	// LoadFactorByWorkload overrides LoadFactor per workload (training runs near TDP).
	LoadFactorByWorkload map[string]float64 `yaml:"load_factor_by_workload,omitempty" json:"load_factor_by_workload,omitempty"`
}

// LoadFactorFor is the workload's load factor, else LoadFactor.
func (e Energy) LoadFactorFor(workload string) float64 {
	if v, ok := e.LoadFactorByWorkload[workload]; ok {
		return v
	}
	return e.LoadFactor
}
