package conformance

import (
	"maps"
	"math"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/history"
	"github.com/layercake/cascade/internal/lineage"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/tree"
	"github.com/layercake/cascade/producers"
)

// historyRaws is the bundled history as JSON documents.
func historyRaws(t *testing.T) []string {
	t.Helper()
	evs, err := history.Signals()
	if err != nil {
		t.Fatal(err)
	}
	raws := make([]string, len(evs))
	for i, ev := range evs {
		b, err := ev.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		raws[i] = string(b)
	}
	return raws
}

// replayHistory replays the bundled history into s and waits until every derived event is stored.
func replayHistory(t *testing.T, b broker.Broker, s string, coef *coefficients.Loaded) []stored {
	t.Helper()
	evs, err := history.Signals()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := (&producers.Replay{Broker: b, Into: s}).Run(t.Context(), &producers.SliceSource{Events: evs})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Published != len(evs) {
		t.Fatalf("replayed %d of %d", rep.Published, len(evs))
	}
	return waitDemand(t, b, s, len(expected(t, coef, s, historyRaws(t))))
}

func testHistoryReplay(t *testing.T, h Harness) {
	coef := coefficients.Default()
	var events [2][]string
	var sums [2]*query.Totals
	for i := range events {
		b := h.Fresh(t)(t)
		startPipeline(t, b, "base", coef, h.Stages)
		events[i] = canonical(replayHistory(t, b, "base", coef))
		var err error
		if sums[i], err = query.SumTotals(t.Context(), b, query.TotalsOptions{Scenario: "base", ByRegion: true}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// Replaying the same range again adds nothing, past any de-dup window.
			rep, err := (&producers.Replay{Broker: b, Into: "base"}).Run(t.Context(), &producers.SliceSource{Events: mustHistory(t)})
			if err != nil || rep.Published != 0 || rep.Skipped != len(mustHistory(t)) {
				t.Fatalf("second replay published %d, skipped %d (%v)", rep.Published, rep.Skipped, err)
			}
			var signals int
			if err := producers.Signals(t.Context(), b, "base", func(*event.Event) error { signals++; return nil }); err != nil || signals != len(mustHistory(t)) {
				t.Fatalf("%d signals stored after two replays, want %d (%v)", signals, len(mustHistory(t)), err)
			}
		}
	}
	if strings.Join(events[0], "\n") != strings.Join(events[1], "\n") {
		t.Fatal("the history replayed into two fresh stores gave different derived events")
	}
	if mustJSON(sums[0]) != mustJSON(sums[1]) {
		t.Fatalf("totals differ:\n%s\n%s", mustJSON(sums[0]), mustJSON(sums[1]))
	}
}

func mustHistory(t *testing.T) []*event.Event {
	evs, err := history.Signals()
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func testWhatIf(t *testing.T, h Harness) {
	b, base := basePipeline(t, h)
	// Halve every inference utilization: the workload's and each accelerator's own.
	half := *base.Set
	half.Version = "half-inference-utilization"
	half.Infrastructure.Utilization.Inference /= 2
	half.Chips.Accelerators = maps.Clone(half.Chips.Accelerators)
	for name, acc := range half.Chips.Accelerators {
		if u, ok := acc.Utilization[event.Inference]; ok {
			acc.Utilization = maps.Clone(acc.Utilization)
			acc.Utilization[event.Inference] = u / 2
			half.Chips.Accelerators[name] = acc
		}
	}
	doc, err := yamlOf(&half)
	if err != nil {
		t.Fatal(err)
	}
	what, err := coefficients.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := routerBind(t, b, "half-util", what, broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	baseEvents := replayHistory(t, b, "base", base)
	whatEvents := replayHistory(t, b, "half-util", what)
	inference := func(evs []stored) (units, mw float64) {
		for _, m := range evs {
			switch p := m.p.(type) {
			case *event.DemandChips:
				if p.Workload == event.Inference {
					units += p.Units
				}
			case *event.DemandGrid:
				if p.Workload == event.Inference {
					mw += p.AvgMW
				}
			}
		}
		return units, mw
	}
	bu, bmw := inference(baseEvents)
	wu, wmw := inference(whatEvents)
	if bu == 0 || math.Abs(wu/bu-2) > 1e-9 || math.Abs(wmw/bmw-2) > 1e-9 {
		t.Fatalf("half inference utilization: units %g vs %g (×%g), avg MW %g vs %g (×%g); want ×2", wu, bu, wu/bu, wmw, bmw, wmw/bmw)
	}
	// The what-if never touched base: base's events all carry base's coefficients.
	for _, m := range readAll(t, b, broker.Selector{Scenario: "base"}) {
		if m.ev != nil && m.ev.CoefVersion != "" && m.ev.CoefVersion != base.CoefVersion {
			t.Fatalf("base holds %s with coefficients %s", m.ev.ID, m.ev.CoefVersion)
		}
	}
	cmp := query.Compare(mustTotals(t, b, "half-util"), mustTotals(t, b, "base"))
	if cmp.Vs != "base" || len(cmp.Rows) == 0 {
		t.Fatalf("comparison %+v", cmp)
	}
}

func mustTotals(t *testing.T, b broker.Broker, s string) *query.Totals {
	t.Helper()
	tot, err := query.SumTotals(t.Context(), b, query.TotalsOptions{Scenario: s})
	if err != nil {
		t.Fatal(err)
	}
	return tot
}

func testTraceAndRange(t *testing.T, h Harness) {
	b, coef := basePipeline(t, h)
	all := replayHistory(t, b, "base", coef)

	a, err := lineage.ScanTrace(t.Context(), b, "base", "hist-2025-01-20-deepseek-r1")
	if err != nil {
		t.Fatal(err)
	}
	root := a.Root
	layers := map[event.Type]bool{}
	var retraction bool
	var walk func(n *tree.Node)
	walk = func(n *tree.Node) {
		layers[n.Event.Type] = true
		if d, ok := n.Payload.(*event.DemandInfrastructure); ok && d.Workload == event.Finetune && d.FlopPerS < 0 {
			retraction = n.Event.Time.After(root.Event.Time) && len(n.Children) > 0
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(root)
	for _, typ := range []event.Type{event.TypeRelease, event.TypeDemandInfrastructure, event.TypeDemandChips, event.TypeDemandEnergy, event.TypeDemandGrid} {
		if !layers[typ] {
			t.Errorf("trace of DeepSeek-R1 lacks %s", typ)
		}
	}
	if !retraction {
		t.Error("trace of DeepSeek-R1 shows no fine-tuning retraction with its own subtree")
	}
	// Tracing from a grid event leads to the same root.
	var gridID string
	for _, m := range all {
		if m.ev.CorrelationID == "hist-2025-01-20-deepseek-r1" && m.ev.Type == event.TypeDemandGrid {
			gridID = m.ev.ID
		}
	}
	if up, err := lineage.ScanTrace(t.Context(), b, "base", gridID); err != nil || up.Root.Event.ID != root.Event.ID {
		t.Fatalf("trace of %s: %v", gridID, err)
	}

	// --since/--until select exactly the events in [since, until) by event time.
	since, until := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 4, 20, 0, 0, 0, 0, time.UTC)
	got, err := query.SumTotals(t.Context(), b, query.TotalsOptions{Scenario: "base", Since: since, Until: until})
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, m := range all {
		if event.InRange(m.ev.Time, since, until) {
			want++
		}
	}
	for _, m := range readAll(t, b, broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindSignal}}) {
		if m.ev != nil && event.InRange(m.ev.Time, since, until) && m.ev.Type != event.TypeRelease {
			want++ // adoption users and injected demand count in rows of their own
		}
	}
	if got.Events != want || want == 0 {
		t.Fatalf("totals in [%s, %s) counted %d events, want %d", since.Format(time.DateOnly), until.Format(time.DateOnly), got.Events, want)
	}
}

func yamlOf(s *coefficients.Set) ([]byte, error) { return yaml.Marshal(s) }
