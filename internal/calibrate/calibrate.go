// Package calibrate runs the demand model on published reference cases (per-prompt energy,
// DeepSeek's serving fleet, training runs, the installed base and data-centre electricity)
// and sets each result beside the published figure, with the band a per-FLOP chain is expected
// to land in. Everything here is a pure function of the coefficients and the bundled history:
// the cases go through the same transforms as the pipeline (tree.Expand), without a broker.
package calibrate

import (
	"context"
	"fmt"
	"time"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/history"
	"github.com/layercake/cascade/internal/tree"
)

// Reference is one published figure and how the model computes the same quantity.
type Reference struct {
	Name      string  `json:"name"`
	What      string  `json:"what"`
	Unit      string  `json:"unit"`
	Published float64 `json:"published"`
	// Low and High bound model / published for the case to pass.
	Low    float64 `json:"band_low"`
	High   float64 `json:"band_high"`
	Source string  `json:"source"`
	// Tests says which part of the chain the reference exercises.
	Tests string `json:"tests"`
	model func(ctx context.Context, c *coefficients.Loaded, h *replay) (float64, error)
}

// Result is a reference with the model's figure.
type Result struct {
	Reference
	Model  float64 `json:"model"`
	Ratio  float64 `json:"ratio"`
	InBand bool    `json:"in_band"`
}

// Run computes every reference with c, in the order of References.
func Run(ctx context.Context, c *coefficients.Loaded) ([]Result, error) {
	h, err := replayHistory(ctx, c)
	if err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(References))
	for _, r := range References {
		v, err := r.model(ctx, c, h)
		if err != nil {
			return nil, fmt.Errorf("calibrate %s: %w", r.Name, err)
		}
		ratio := v / r.Published
		out = append(out, Result{Reference: r, Model: v, Ratio: ratio, InBand: ratio >= r.Low && ratio <= r.High})
	}
	return out, nil
}

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

const (
	secondsPerYear = 365 * 86400
	// trainingSeconds is the span a training case is spread over; the results do not depend on it.
	trainingSeconds = 100 * 86400
)

// References are the reference cases. Their figures are in docs/calibration.md with what each
// tests and which coefficients move it.
var References = []Reference{
	{Name: "google-gemini-prompt", What: "median Gemini Apps text prompt, full stack (May 2025)", Unit: "Wh", Published: 0.24, Low: 0.4, High: 1.0,
		Source: "https://arxiv.org/abs/2508.15734", Tests: "per-request energy of the default chat category on the fleet in force (region us, 2025-05)",
		model: func(ctx context.Context, c *coefficients.Loaded, _ *replay) (float64, error) {
			return chatRequestWh(ctx, c, day(2025, 5, 1))
		}},
	{Name: "epoch-gpt4o-query", What: "typical GPT-4o query: 100B active, 500 tokens on H100 (Feb 2025)", Unit: "Wh", Published: 0.30, Low: 0.6, High: 1.0,
		Source: "https://epoch.ai/gradient-updates/how-much-energy-does-chatgpt-use", Tests: "the FLOP-to-Wh chain (utilization, idle capacity, system power, PUE, load factor) on Epoch's workload and hardware; Epoch assumes 10% utilization, the chain its own",
		model: func(ctx context.Context, c *coefficients.Loaded, _ *replay) (float64, error) {
			active, no := 1e11, false
			n, err := pinned(c, day(2025, 2, 1), "h100").expand(ctx, &event.DemandModel{Region: "us", Model: c.Set.Models.DefaultModel, TokensPerDay: 500, ParamsActive: &active, Reasoning: &no})
			if err != nil {
				return 0, err
			}
			return n.avgMW() * 24 * 1e6, nil
		}},
	{Name: "altman-chatgpt-query", What: "average ChatGPT query (Jun 2025)", Unit: "Wh", Published: 0.34, Low: 0.3, High: 1.0,
		Source: "https://blog.samaltman.com/the-gentle-singularity", Tests: "per-request energy of the default chat category (region us, 2025-06); no method published, hence the wide band",
		model: func(ctx context.Context, c *coefficients.Loaded, _ *replay) (float64, error) {
			return chatRequestWh(ctx, c, day(2025, 6, 10))
		}},
	{Name: "chatgpt-at-scale", What: "ChatGPT, 2.5B prompts/day x 0.34 Wh (Jul 2025)", Unit: "GWh/day", Published: 0.85, Low: 0.3, High: 1.0,
		Source: "https://www.axios.com/2025/07/21/chatgpt-users-prompts-2-5-billion", Tests: "the replayed history's ChatGPT adoption (weekly users x requests x tokens) priced with the fleets of each record's time, up to 2025-08-31",
		model: func(_ context.Context, _ *coefficients.Loaded, h *replay) (float64, error) {
			return h.avgMW(day(2025, 8, 31), "chatgpt") * 24 / 1000, nil
		}},
	{Name: "deepseek-serving-fleet", What: "DeepSeek V3+R1 service, 776B tokens/day on H800 (27-28 Feb 2025)", Unit: "H800", Published: 1814, Low: 1.0, High: 2.5,
		Source: "https://github.com/deepseek-ai/open-infra-index/blob/main/202502OpenSourceWeek/day_6_one_more_thing_deepseekV3R1_inference_system_overview.md",
		Tests:  "inference utilization of an H800 (all 776B tokens at 2 x 37B FLOP each); the published figure is the average of nodes serving, so idle capacity is left out; DeepSeek's FP8 expert-parallel serving runs above a fleet average",
		model: func(ctx context.Context, c *coefficients.Loaded, _ *replay) (float64, error) {
			at := day(2025, 2, 27)
			active, no := 3.7e10, false
			n, err := pinned(c, at, "h800").expand(ctx, &event.DemandModel{Region: "cn", Model: c.Set.Models.DefaultModel, TokensPerDay: 7.76e11, ParamsActive: &active, Reasoning: &no})
			if err != nil {
				return 0, err
			}
			return n.units() / (1 + c.At(at).Infrastructure.IdleCapacity[event.Inference]), nil
		}},
	{Name: "llama-3.1-405b-hours", What: "Llama 3.1 405B pre-training, 3.79e25 FLOP (6 x 405B x 15.6T)", Unit: "M H100-hours", Published: 30.84, Low: 0.8, High: 1.0,
		Source: "https://github.com/meta-llama/llama-models/blob/main/models/llama3_1/MODEL_CARD.md",
		Tests:  "training utilization on H100 (published hours include restarts and long-context stages, so the model lands a little low)",
		model: func(ctx context.Context, c *coefficients.Loaded, _ *replay) (float64, error) {
			n, err := training(ctx, c, day(2024, 3, 1), "h100", 405e9, 15.6e12)
			if err != nil {
				return 0, err
			}
			return n.units() * trainingSeconds / 3600 / 1e6, nil
		}},
	{Name: "llama-3.1-405b-co2", What: "Llama 3.1 405B training emissions, location-based", Unit: "tCO2e", Published: 8930, Low: 1.0, High: 1.6,
		Source: "https://github.com/meta-llama/llama-models/blob/main/models/llama3_1/MODEL_CARD.md",
		Tests:  "training energy and US grid intensity; Meta counts 700 W TDP per GPU, the chain all-in system power, PUE and the training load factor, so it lands above",
		model: func(ctx context.Context, c *coefficients.Loaded, _ *replay) (float64, error) {
			n, err := training(ctx, c, day(2024, 3, 1), "h100", 405e9, 15.6e12)
			if err != nil {
				return 0, err
			}
			return n.co2PerYear() * trainingSeconds / secondsPerYear, nil
		}},
	{Name: "deepseek-v3-hours", What: "DeepSeek-V3 training, 3.29e24 FLOP (6 x 37B x 14.8T)", Unit: "M H800-hours", Published: 2.788, Low: 0.8, High: 1.0,
		Source: "https://github.com/deepseek-ai/DeepSeek-V3", Tests: "training utilization on H800 (6ND omits attention and MTP FLOPs, so the model lands low)",
		model: func(ctx context.Context, c *coefficients.Loaded, _ *replay) (float64, error) {
			n, err := training(ctx, c, day(2024, 10, 1), "h800", 37e9, 14.8e12)
			if err != nil {
				return 0, err
			}
			return n.units() * trainingSeconds / 3600 / 1e6, nil
		}},
	{Name: "epoch-installed-base", What: "installed AI compute, 15M H100-equivalents, > 10 GW at chip level (Jan 2026)", Unit: "GW", Published: 10, Low: 1.5, High: 2.0,
		Source: "https://epoch.ai/blog/introducing-the-ai-chip-sales-data-explorer",
		Tests:  "fleet mix and all-in system power: 15M H100s' worth of peak FLOP/s spread over the fleet in force mid-2025 (the middle of the sales that make up the base), at system rather than chip power",
		model: func(_ context.Context, c *coefficients.Loaded, _ *replay) (float64, error) {
			set := c.At(day(2025, 7, 1))
			h100, ok := set.Chips.Accelerators["h100"]
			if !ok {
				return 0, fmt.Errorf("no h100 in chips.accelerators")
			}
			peak := 15e6 * h100.PeakFlopPerS
			gw := 0.0
			for name, share := range set.Infrastructure.Fleet.Default {
				a := set.Chips.Accelerators[name]
				gw += peak * share / a.PeakFlopPerS * a.SystemKW / 1e6
			}
			return gw, nil
		}},
	{Name: "iea-datacentres-2024", What: "world data-centre electricity, 2024, against the replayed history's demand at the end of 2024", Unit: "TWh/yr", Published: 415, Low: 0.0004, High: 0.1,
		Source: "https://www.iea.org/reports/energy-and-ai",
		Tests:  "a coverage check, not a calibration (hence a band of 250x): the history is a sample (a few dozen apps, releases and programmes) of AI, itself a part of all data-centre use. Below 0.04% it holds less than ChatGPT alone (0.85 GWh/day = 0.31 TWh/yr); above 10% a sample rivals the census, a units error",
		model: func(_ context.Context, _ *coefficients.Loaded, h *replay) (float64, error) {
			return h.avgMW(day(2024, 12, 31), "") * 8760 / 1e6, nil
		}},
}

// chatRequestWh is the energy of one request of the default category, in region us at t.
func chatRequestWh(ctx context.Context, c *coefficients.Loaded, t time.Time) (float64, error) {
	set := c.At(t)
	cat := set.Applications.Categories[set.Applications.DefaultCategory]
	return requestWh(ctx, c, t, &event.DemandModel{Region: "us", Model: cat.Model, TokensPerDay: cat.TokensPerRequest})
}

// requestWh is the energy of a demand of one request a day: the grid's average MW × 24 h.
func requestWh(ctx context.Context, c *coefficients.Loaded, t time.Time, d *event.DemandModel) (float64, error) {
	n, err := loaded{c, t}.expand(ctx, d)
	if err != nil {
		return 0, err
	}
	return n.avgMW() * 24 * 1e6, nil
}

// training expands a training run of 6 × params × tokens FLOP spread over trainingSeconds,
// on a fleet of accelerator acc alone.
func training(ctx context.Context, c *coefficients.Loaded, t time.Time, acc string, params, tokens float64) (node, error) {
	set := c.At(t)
	flop := set.Models.Release.FinetuneFlopPerParamToken * params * tokens
	return pinned(c, t, acc).expand(ctx, &event.DemandInfrastructure{Region: "us", Workload: event.Training, FlopPerS: flop / trainingSeconds})
}

// loaded is a coefficient set and the time a case is priced at.
type loaded struct {
	c *coefficients.Loaded
	t time.Time
}

// pinned is c at t with its fleet replaced by acc alone: a case whose hardware is published.
func pinned(c *coefficients.Loaded, t time.Time, acc string) loaded {
	set := *c.At(t)
	set.Infrastructure.Fleet = coefficients.Fleet{Default: coefficients.Mix{acc: 1}, Regions: map[string]coefficients.Mix{}}
	return loaded{&coefficients.Loaded{Set: &set, CoefVersion: c.CoefVersion}, t}
}

func (l loaded) expand(ctx context.Context, p event.Payload) (node, error) {
	var layer event.Layer
	for _, s := range event.Pipeline.Layers {
		if s.Emits == event.InputLayer(p.EventType()) {
			layer = s.Layer
		}
	}
	ev, err := event.New(&event.Event{ID: "calibrate"}, layer, "case", l.t, l.c.CoefVersion, p)
	if err != nil {
		return node{}, err
	}
	n, err := tree.Expand(ctx, l.c, ev, p)
	if err != nil {
		return node{}, err
	}
	return node{n}, nil
}

// node sums quantities over a tree.
type node struct{ *tree.Node }

func (n node) walk(f func(*tree.Node)) {
	var walk func(*tree.Node)
	walk = func(t *tree.Node) {
		f(t)
		for _, ch := range t.Children {
			walk(ch)
		}
	}
	walk(n.Node)
}

func (n node) units() (u float64) {
	n.walk(func(t *tree.Node) {
		if c, ok := t.Payload.(*event.DemandChips); ok {
			u += c.Units
		}
	})
	return u
}

func (n node) avgMW() (mw float64) {
	n.walk(func(t *tree.Node) {
		if g, ok := t.Payload.(*event.DemandGrid); ok {
			mw += g.AvgMW
		}
	})
	return mw
}

func (n node) co2PerYear() (t float64) {
	n.walk(func(x *tree.Node) {
		if g, ok := x.Payload.(*event.DemandGrid); ok {
			t += g.CO2TPerYear
		}
	})
	return t
}

// replay is the bundled history expanded with the coefficients: each signal's tree.
type replay struct {
	trees []*tree.Node
	apps  []string // the app of an adoption signal, else ""
}

func replayHistory(ctx context.Context, c *coefficients.Loaded) (*replay, error) {
	evs, err := history.Signals()
	if err != nil {
		return nil, err
	}
	r := &replay{}
	for _, ev := range evs {
		p, err := event.DecodePayload(ev.Type, ev.Data)
		if err != nil {
			return nil, err
		}
		n, err := tree.Expand(ctx, c, ev, p)
		if err != nil {
			return nil, fmt.Errorf("replay %s: %w", ev.ID, err)
		}
		app := ""
		if a, ok := p.(*event.Adoption); ok {
			app = a.App
		}
		r.trees, r.apps = append(r.trees, n), append(r.apps, app)
	}
	return r, nil
}

// avgMW is the grid's average MW of the demand in force at until (events up to and including
// it), of app's signals or, with app "", of all.
func (r *replay) avgMW(until time.Time, app string) (mw float64) {
	for i, t := range r.trees {
		if app != "" && r.apps[i] != app {
			continue
		}
		node{t}.walk(func(x *tree.Node) {
			if g, ok := x.Payload.(*event.DemandGrid); ok && !x.Event.Time.After(until) {
				mw += g.AvgMW
			}
		})
	}
	return mw
}
