package demand_test

import (
	"testing"
	"time"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/tree"
)

// whPerRequest is the energy of one request a day: the grid's average MW for that demand,
// times 24 h, in Wh (demand-model.md, "Why these shapes").
func whPerRequest(t *testing.T, c *coefficients.Loaded, d *event.DemandModel) float64 {
	t.Helper()
	ev, err := event.New(&event.Event{ID: "one-request"}, event.Application, "inference", time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC), c.CoefVersion, d)
	if err != nil {
		t.Fatal(err)
	}
	n, err := tree.Expand(t.Context(), c, ev, d)
	if err != nil {
		t.Fatal(err)
	}
	var avgMW float64
	var walk func(*tree.Node)
	walk = func(n *tree.Node) {
		if g, ok := n.Payload.(*event.DemandGrid); ok {
			avgMW += g.AvgMW
		}
		for _, ch := range n.Children {
			walk(ch)
		}
	}
	walk(n)
	return avgMW * 24 * 1e6
}

// The default chain lands a median chat request (1,000 tokens on a 37B-active model) within
// the published per-prompt band's reach (0.24–0.34 Wh full stack; a per-FLOP chain may sit up
// to ~2× low), and a reasoning request a few times higher.
func TestPerRequestEnergyAgainstPublishedFigures(t *testing.T) {
	t.Parallel()
	c := coefficients.Default()
	m, ok := c.Set.Models.Catalog["frontier-moe"]
	if !ok || m.ParamsActive != 3.7e10 {
		t.Fatalf("default catalog lacks the 37B-active frontier-moe: %+v", m)
	}
	no, yes := false, true
	chat := whPerRequest(t, c, &event.DemandModel{Region: "world", Model: "frontier-moe", TokensPerDay: 1000, Reasoning: &no})
	reasoning := whPerRequest(t, c, &event.DemandModel{Region: "world", Model: "frontier-moe", TokensPerDay: 1000, Reasoning: &yes})
	t.Logf("median chat request: %.3f Wh (published: Google 0.24, Epoch 0.30, Microsoft 0.31, Altman 0.34)", chat)
	t.Logf("reasoning request:   %.3f Wh", reasoning)
	if chat < 0.08 || chat > 0.6 {
		t.Errorf("chat request %.3f Wh, want 0.08–0.6", chat)
	}
	if reasoning < 0.3 || reasoning > 5 {
		t.Errorf("reasoning request %.3f Wh, want 0.3–5", reasoning)
	}
}
