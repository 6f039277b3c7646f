package coefficients

// TEMPORARY bootstrap by the lead so the rest of the tree compiles; delete this file as soon as
// load.go exists (it will clash with it).

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"

	"gopkg.in/yaml.v3"
)

// Loaded is a parsed set with its version.
type Loaded struct {
	Set         *Set
	CoefVersion string
	Canonical   []byte
}

// Parse parses a document.
func Parse(doc []byte) (*Loaded, error) {
	var s Set
	if err := yaml.Unmarshal(doc, &s); err != nil {
		return nil, err
	}
	c, _ := json.Marshal(&s)
	sum := sha256.Sum256(c)
	return &Loaded{Set: &s, CoefVersion: s.Version + "+" + hex.EncodeToString(sum[:])[:8], Canonical: c}, nil
}

// Load reads a file.
func Load(path string) (*Loaded, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

var bootYAML = []byte(`version: default-2026.11
applications:
  default_category: chat
  categories:
    chat: {requests_per_user_day: 3.6, tokens_per_request: 1000, model: frontier-moe}
    coding: {requests_per_user_day: 10, tokens_per_request: 20000, model: frontier-moe}
models:
  default_model: frontier-moe
  flop_per_param_token: 2
  reasoning_token_multiplier: 4
  catalog:
    frontier-moe: {params_active: 3.7e10, params_total: 6.71e11, reasoning: false}
  release:
    expected_tokens_per_day: {open: 1.0e11, closed: 1.0e12}
    derivative_finetunes: {open: 100, closed: 0}
    finetune_tokens: 1.0e9
    finetune_flop_per_param_token: 6
    finetune_window_days: 90
infrastructure:
  utilization: {inference: 0.15, training: 0.40, finetune: 0.30}
  fleet:
    default: {h100: 0.5, b200: 0.5}
    regions: {cn: {h800: 1}}
  pue: {default: 1.2, regions: {}}
chips:
  accelerators:
    h100: {peak_flop_per_s: 9.89e14, system_kw: 1.275, hbm_gb: 80}
    h200: {peak_flop_per_s: 9.89e14, system_kw: 1.275, hbm_gb: 141}
    h800: {peak_flop_per_s: 9.89e14, system_kw: 1.275, hbm_gb: 80}
    b200: {peak_flop_per_s: 2.25e15, system_kw: 1.79, hbm_gb: 180}
    gb200: {peak_flop_per_s: 2.5e15, system_kw: 1.67, hbm_gb: 186}
energy:
  load_factor: 0.7
  reserve_margin: 0.15
  grid_intensity_g_per_kwh: {default: 445, regions: {us: 367}}
sources: {}
`)

// Default is the bootstrap default.
func Default() *Loaded { l, _ := Parse(bootYAML); return l }

// DefaultYAML is the bootstrap default document.
func DefaultYAML() []byte { return bootYAML }
