package demand

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
)

// Stage is one consumer layer of event.Pipeline: the formula for each type it accepts and
// how people read it.
type Stage struct {
	Layer    event.Layer
	Formulas []Formula
	Flow     string // what the layer derives from what, for the subjects diagram
	Derives  string // what the layer derives, for the formula table
	Formula  string // the formula, for the formula table
}

// Formula is the transform of one input type.
type Formula struct {
	Input     event.Type
	Transform func(*coefficients.Set, event.Payload) ([]Output, error)
}

// FormulaOf declares the formula of input type P.
func FormulaOf[P event.Payload](f func(*coefficients.Set, P) ([]Output, error)) Formula {
	var zero P
	return Formula{Input: zero.EventType(), Transform: func(c *coefficients.Set, p event.Payload) ([]Output, error) { return f(c, p.(P)) }}
}

// total declares a formula that cannot fail.
func total[P event.Payload](f func(*coefficients.Set, P) []Output) Formula {
	return FormulaOf(func(c *coefficients.Set, p P) ([]Output, error) { return f(c, p), nil })
}

// Stages are the formulas of event.Pipeline's consumer layers, top to bottom.
var Stages = []Stage{
	{Layer: event.Application, Formulas: []Formula{total(Application)},
		Flow: "users → tokens/day", Derives: "tokens/day on a model",
		Formula: "users_delta × requests_per_user_day × tokens_per_request"},
	{Layer: event.Model, Formulas: []Formula{total(ModelRelease), total(ModelDemand)},
		Flow: "tokens/day → FLOP/s", Derives: "inference FLOP/s",
		Formula: "tokens × (reasoning ? reasoning multiplier : 1) × 2 × params_active / 86400; a release also adds fine-tuning FLOP/s, retracted after 90 days"},
	{Layer: event.Infrastructure, Formulas: []Formula{total(Infrastructure)},
		Flow: "FLOP/s → accelerators", Derives: "accelerators per kind",
		Formula: "flop_per_s × fleet share / (peak FLOP/s × utilization of the accelerator and workload) × (1 + idle capacity)"},
	{Layer: event.Chips, Formulas: []Formula{FormulaOf(Chips)},
		Flow: "accelerators → MW", Derives: "MW IT and facility",
		Formula: "units × system_kW / 1000, × PUE"},
	{Layer: event.Energy, Formulas: []Formula{total(Energy)},
		Flow: "MW → generation, TWh, CO2", Derives: "grid supply",
		Formula: "avg = facility × load factor of the workload; generation = facility × (1 + reserve); TWh/yr; tCO2/yr"},
}

// Validate checks t and that stages give each of t's consumer layers, in order, one formula
// per type it accepts and none for a type it does not.
func Validate(t event.Topology, stages []Stage) error {
	if err := t.Validate(); err != nil {
		return err
	}
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{event.ErrTopology}, args...)...))
	}
	var running []event.LayerSpec
	for _, l := range t.Layers {
		if l.Emits != "" {
			running = append(running, l)
		}
	}
	if len(stages) != len(running) {
		fail("%d stages for %d consumer layers", len(stages), len(running))
	}
	for i := range min(len(stages), len(running)) {
		s, l := stages[i], running[i]
		if s.Layer != l.Layer {
			fail("stage %d is %s, want %s", i+1, s.Layer, l.Layer)
			continue
		}
		got := map[event.Type]int{}
		for _, f := range s.Formulas {
			got[f.Input]++
			if f.Transform == nil {
				fail("stage %s: formula for %s has no transform", s.Layer, f.Input)
			}
		}
		for _, typ := range l.Accepts() {
			if got[typ] != 1 {
				fail("stage %s: %d formulas for %s, want 1", s.Layer, got[typ], typ)
			}
			delete(got, typ)
		}
		for typ := range got {
			fail("stage %s: formula for %s, which the layer does not accept", s.Layer, typ)
		}
		if s.Flow == "" || s.Derives == "" || s.Formula == "" {
			fail("stage %s: Flow, Derives and Formula are required", s.Layer)
		}
	}
	return errors.Join(errs...)
}

// formulas indexes Stages by input type; start-up fails if they do not fit event.Pipeline.
var formulas = mustIndex(event.Pipeline, Stages)

func mustIndex(t event.Topology, stages []Stage) map[event.Type]func(*coefficients.Set, event.Payload) ([]Output, error) {
	if err := Validate(t, stages); err != nil {
		panic(err)
	}
	out := map[event.Type]func(*coefficients.Set, event.Payload) ([]Output, error){}
	for _, s := range stages {
		for _, f := range s.Formulas {
			out[f.Input] = f.Transform
		}
	}
	return out
}

// SubjectsDiagram draws the layers of t with stages, their subjects and what each derives, as
// in the README's "The five layers and their subjects".
func SubjectsDiagram(t event.Topology, stages []Stage) string {
	flow := map[event.Layer]string{}
	for _, s := range stages {
		flow[s.Layer] = s.Flow
	}
	signal := func(l event.Layer) string {
		return event.Subject{Scenario: "<s>", Kind: event.KindSignal, Layer: l, Region: "<r>"}.String()
	}
	var running []event.LayerSpec
	nameW, subjW, sigW := 0, 0, 0
	for _, l := range t.Layers {
		if l.Emits == "" {
			continue
		}
		running = append(running, l)
		nameW = max(nameW, len(l.Layer))
		subjW = max(subjW, len(signal(l.Layer))+min(len(l.Signals), 1))
		sigW = max(sigW, len(signalNames(l)))
	}
	sigW += 3
	box := nameW + 5
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	head := " signals in ─┐        subjects (scenario <s>, region <r>)"
	line("%s%s%s", head, strings.Repeat(" ", max(1, box+4+subjW+sigW-utf8.RuneCountInString(head))), "what the layer derives")
	line("             ▼")
	for i, l := range running {
		open, close := "├", "┤"
		if i == 0 {
			open, close = "┌", "┐"
		}
		line(" %s%s%s %-*s%-*s%s", open, strings.Repeat("─", box), close, subjW, signal(l.Layer), sigW, signalNames(l), flow[l.Layer])
		line(" │ %d %-*s│──► %s", i+1, box-3, l.Layer, event.DemandSubject("<s>", l.Emits, "<r>"))
	}
	line(" └%s┘", strings.Repeat("─", box))
	last := t.Layers[len(t.Layers)-1].Layer
	line("   %s (terminal feed)     dead letters: %s", last, event.DLQSubject("<s>", "<layer>"))
	return b.String()
}

// signalNames are the short names of the signals entering l ("adoption").
func signalNames(l event.LayerSpec) string {
	names := make([]string, len(l.Signals))
	for i, t := range l.Signals {
		names[i] = strings.TrimSuffix(strings.TrimPrefix(string(t), "cascade.signal."), ".v1")
	}
	return strings.Join(names, ", ")
}

// FormulaTable is the README's Markdown table of each stage's formula.
func FormulaTable(stages []Stage) string {
	var b strings.Builder
	b.WriteString("| layer | derives | formula |\n|---|---|---|\n")
	for _, s := range stages {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", s.Layer, s.Derives, s.Formula)
	}
	return b.String()
}
