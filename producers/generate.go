package producers

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/layercake/cascade/internal/event"
)

// Generator makes realistic synthetic signals: mostly adoption changes of apps in several
// categories and regions, some model releases, now and then a sovereign compute order. The
// same seed gives the same signals.
type Generator struct {
	rng   *rand.Rand
	IDs   string        // id prefix; ids are IDs + sequence number
	Start time.Time     // time of the first signal
	Step  time.Duration // time between signals
	n     int
}

// NewGenerator returns a generator seeded with seed.
func NewGenerator(seed uint64, idPrefix string, start time.Time, step time.Duration) *Generator {
	return &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), IDs: idPrefix, Start: start.UTC(), Step: step}
}

type genApp struct{ name, category string }

var (
	genApps = []genApp{
		{"chat-assistant", "chat"}, {"search-answers", "search"}, {"code-copilot", "coding"},
		{"agent-runner", "agents"}, {"math-tutor", "reasoning"}, {"image-studio", "image"},
		{"office-helper", "chat"}, {"ide-agent", "coding"},
	}
	genRegions = []string{"us", "us", "us", "eu", "eu", "cn", "in", "jp", "gb", "br", "world"}
	genModels  = []struct {
		name          string
		total, active float64
		open, reason  bool
	}{
		{"open-moe-670b", 6.71e11, 3.7e10, true, true},
		{"open-dense-70b", 7.0e10, 7.0e10, true, false},
		{"open-small-8b", 8.0e9, 8.0e9, true, false},
		{"open-moe-120b", 1.168e11, 5.1e9, true, true},
		{"closed-frontier", 1.8e12, 2.0e11, false, true},
		{"closed-mini", 2.0e11, 2.0e10, false, false},
	}
	genAccelerators = []string{"h100", "h200", "b200", "gb200"}
)

// Next returns the next signal as a CloudEvent JSON document.
func (g *Generator) Next() []byte {
	g.n++
	ev := map[string]any{
		"specversion": event.SpecVersion,
		"id":          fmt.Sprintf("%s%d", g.IDs, g.n),
		"source":      "/cascade/generator",
		"time":        g.Start.Add(time.Duration(g.n-1) * g.Step).Format(time.RFC3339Nano),
	}
	region := genRegions[g.rng.IntN(len(genRegions))]
	var t event.Type
	var data map[string]any
	switch r := g.rng.Float64(); {
	case r < 0.82:
		app := genApps[g.rng.IntN(len(genApps))]
		// Weekly-active changes spread over three orders of magnitude; about one in eight is a loss.
		delta := math.Round(math.Exp(g.rng.NormFloat64()*1.2 + 11.5))
		if g.rng.IntN(8) == 0 {
			delta = -math.Round(delta / 3)
		}
		t, data = event.TypeAdoption, map[string]any{"app": app.name, "category": app.category, "region": region, "users_delta": delta}
	case r < 0.92:
		m := genModels[g.rng.IntN(len(genModels))]
		t, data = event.TypeRelease, map[string]any{"model": m.name, "region": region, "open_weights": m.open,
			"params_total": m.total, "params_active": m.active, "reasoning": m.reason}
	case r < 0.96:
		// A sovereign or enterprise training programme: 1e17–1e19 FLOP/s sustained.
		t, data = event.TypeDemandInfrastructure, map[string]any{"region": region, "workload": event.Training,
			"flop_per_s": math.Round(math.Pow(10, 17+2*g.rng.Float64()))}
	default:
		t, data = event.TypeDemandChips, map[string]any{"region": region, "accelerator": genAccelerators[g.rng.IntN(len(genAccelerators))],
			"units": float64(1000 * (1 + g.rng.IntN(20))), "workload": event.Training}
	}
	ev["type"], ev["subject"], ev["data"] = t, region, data
	b, _ := json.Marshal(ev) // maps of strings, bools and finite floats always encode
	return b
}
