package event

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Layer names one band of the stack. The five consumer layers are followed by the terminal
// sink Grid, which only receives demand.
type Layer string

// The layers, top to bottom.
const (
	Application    Layer = "application"
	Model          Layer = "model"
	Infrastructure Layer = "infrastructure"
	Chips          Layer = "chips"
	Energy         Layer = "energy"
	Grid           Layer = "grid"
)

// Type is a CloudEvents type attribute.
type Type string

// The event types cascade knows, top to bottom.
const (
	TypeAdoption             Type = "cascade.signal.adoption.v1"
	TypeRelease              Type = "cascade.signal.release.v1"
	TypeDemandModel          Type = "cascade.demand.model.v1"
	TypeDemandInfrastructure Type = "cascade.demand.infrastructure.v1"
	TypeDemandChips          Type = "cascade.demand.chips.v1"
	TypeDemandEnergy         Type = "cascade.demand.energy.v1"
	TypeDemandGrid           Type = "cascade.demand.grid.v1"
)

// Types lists every event type in cascade order.
var Types = Pipeline.types()

// LayerSpec is one layer of the topology: which types enter it and where its consumer places
// demand.
type LayerSpec struct {
	Layer Layer
	// Signals are the signal types that enter the pipeline at this layer.
	Signals []Type
	// Demand is the type of the demand placed on this layer by the layer above; "" for the top.
	Demand Type
	// Emits is the layer this layer's consumer places demand on; "" for the terminal layer,
	// which runs no consumer.
	Emits Layer
}

// Accepts are the types this layer's consumer reads: its signals, then its demand. The
// terminal layer runs no consumer and accepts nothing.
func (s LayerSpec) Accepts() []Type {
	if s.Emits == "" {
		return nil
	}
	out := append([]Type(nil), s.Signals...)
	if s.Demand != "" {
		out = append(out, s.Demand)
	}
	return out
}

// PayloadSpec is one payload type: how to make an empty one and how to read it. Build one
// with PayloadOf.
type PayloadSpec struct {
	Type Type
	// New returns an empty payload with its required numbers NaN, so that Validate can tell an
	// absent number from a zero (JSON cannot carry NaN).
	New func() Payload
	// Quantities lists the payload's numbers with units, Primary first.
	Quantities func(Payload) []Quantity
	// Primary names the quantity whose exact zero suppresses a derived output.
	Primary string
	// PrimaryValue reads that quantity without building Quantities' slice (every derived
	// output asks); nil: Quantities' first.
	PrimaryValue func(Payload) float64
	// Label names what the payload is about: its app, model, workload or accelerator.
	Label func(Payload) string
	// Key is the row key totals sums the payload under; nil for a signal totals do not count,
	// whose demand is all in the events derived from it (a release).
	Key func(Payload) string
}

// PayloadOf declares the PayloadSpec of payload type P with typed functions.
type PayloadOf[P Payload] struct {
	New        func() P
	Primary    string
	Value      func(P) float64 // the primary quantity's value
	Quantities func(P) []Quantity
	Label      func(P) string
	Key        func(P) string
}

// Spec is the untyped PayloadSpec; its Type is P's EventType.
func (o PayloadOf[P]) Spec() PayloadSpec {
	var zero P
	s := PayloadSpec{Type: zero.EventType(), Primary: o.Primary}
	if o.New != nil {
		s.New = func() Payload { return o.New() }
	}
	if o.Quantities != nil {
		s.Quantities = func(p Payload) []Quantity { return o.Quantities(p.(P)) }
	}
	if o.Value != nil {
		s.PrimaryValue = func(p Payload) float64 { return o.Value(p.(P)) }
	}
	if o.Label != nil {
		s.Label = func(p Payload) string { return o.Label(p.(P)) }
	}
	if o.Key != nil {
		s.Key = func(p Payload) string { return o.Key(p.(P)) }
	}
	return s
}

// Topology is the shape of the pipeline: its layers top to bottom and its payload types in
// cascade order. The formulas that turn one layer's input into the next layer's demand are in
// package consumers, one per accepted type.
type Topology struct {
	Layers   []LayerSpec
	Payloads []PayloadSpec
}

var nan = math.NaN()

// Pipeline is cascade's topology. Adding a layer or a payload type is a row here (with its
// payload struct and its formula in consumers); everything else reads it.
var Pipeline = Topology{
	Layers: []LayerSpec{
		{Layer: Application, Signals: []Type{TypeAdoption}, Emits: Model},
		{Layer: Model, Signals: []Type{TypeRelease}, Demand: TypeDemandModel, Emits: Infrastructure},
		{Layer: Infrastructure, Demand: TypeDemandInfrastructure, Emits: Chips},
		{Layer: Chips, Demand: TypeDemandChips, Emits: Energy},
		{Layer: Energy, Demand: TypeDemandEnergy, Emits: Grid},
		{Layer: Grid, Demand: TypeDemandGrid},
	},
	Payloads: []PayloadSpec{
		PayloadOf[*Adoption]{
			New:        func() *Adoption { return &Adoption{UsersDelta: nan} },
			Primary:    "users_delta",
			Value:      func(p *Adoption) float64 { return p.UsersDelta },
			Quantities: func(p *Adoption) []Quantity { return []Quantity{{"users_delta", p.UsersDelta, "weekly users"}} },
			Label:      func(p *Adoption) string { return p.App + " (" + p.Category + ")" },
			Key:        func(p *Adoption) string { return p.Category },
		}.Spec(),
		PayloadOf[*Release]{
			New:     func() *Release { return &Release{ParamsTotal: nan, ParamsActive: nan} },
			Primary: "params_active",
			Value:   func(p *Release) float64 { return p.ParamsActive },
			Quantities: func(p *Release) []Quantity {
				return []Quantity{{"params_active", p.ParamsActive, "params"}, {"params_total", p.ParamsTotal, "params"}}
			},
			Label: func(p *Release) string { return p.Model },
		}.Spec(),
		PayloadOf[*DemandModel]{
			New:        func() *DemandModel { return &DemandModel{TokensPerDay: nan} },
			Primary:    "tokens_per_day",
			Value:      func(p *DemandModel) float64 { return p.TokensPerDay },
			Quantities: func(p *DemandModel) []Quantity { return []Quantity{{"tokens_per_day", p.TokensPerDay, "tokens/day"}} },
			Label:      func(p *DemandModel) string { return p.Model },
			Key:        func(p *DemandModel) string { return p.Model },
		}.Spec(),
		PayloadOf[*DemandInfrastructure]{
			New:        func() *DemandInfrastructure { return &DemandInfrastructure{FlopPerS: nan} },
			Primary:    "flop_per_s",
			Value:      func(p *DemandInfrastructure) float64 { return p.FlopPerS },
			Quantities: func(p *DemandInfrastructure) []Quantity { return []Quantity{{"flop_per_s", p.FlopPerS, "FLOP/s"}} },
			Label:      func(p *DemandInfrastructure) string { return p.Workload },
			Key:        func(p *DemandInfrastructure) string { return p.Workload },
		}.Spec(),
		PayloadOf[*DemandChips]{
			New:     func() *DemandChips { return &DemandChips{Units: nan} },
			Primary: "units",
			Value:   func(p *DemandChips) float64 { return p.Units },
			Quantities: func(p *DemandChips) []Quantity {
				q := []Quantity{{"units", p.Units, "accelerators"}}
				if p.HBMGB != nil {
					q = append(q, Quantity{"hbm_gb", *p.HBMGB, "GB HBM"})
				}
				return q
			},
			Label: func(p *DemandChips) string { return p.Accelerator + " " + p.Workload },
			Key:   func(p *DemandChips) string { return p.Accelerator },
		}.Spec(),
		PayloadOf[*DemandEnergy]{
			New:     func() *DemandEnergy { return &DemandEnergy{ITMW: nan, FacilityMW: nan} },
			Primary: "it_mw",
			Value:   func(p *DemandEnergy) float64 { return p.ITMW },
			Quantities: func(p *DemandEnergy) []Quantity {
				return []Quantity{{"it_mw", p.ITMW, "MW IT"}, {"facility_mw", p.FacilityMW, "MW facility"}}
			},
			Label: func(p *DemandEnergy) string { return p.Workload },
			Key:   func(p *DemandEnergy) string { return orUnspecified(p.Workload) },
		}.Spec(),
		PayloadOf[*DemandGrid]{
			New: func() *DemandGrid {
				return &DemandGrid{AvgMW: nan, GenerationMW: nan, TWhPerYear: nan, CO2TPerYear: nan}
			},
			Primary: "avg_mw",
			Value:   func(p *DemandGrid) float64 { return p.AvgMW },
			Quantities: func(p *DemandGrid) []Quantity {
				return []Quantity{{"avg_mw", p.AvgMW, "MW avg"}, {"generation_mw", p.GenerationMW, "MW generation"},
					{"twh_per_year", p.TWhPerYear, "TWh/yr"}, {"co2_t_per_year", p.CO2TPerYear, "tCO2/yr"}}
			},
			Label: func(p *DemandGrid) string { return p.Workload },
			Key:   func(p *DemandGrid) string { return orUnspecified(p.Workload) },
		}.Spec(),
	},
}

func orUnspecified(w string) string {
	if w == "" {
		return "unspecified"
	}
	return w
}

// ErrTopology is matched (errors.Is) by every fault Validate finds.
var ErrTopology = errors.New("topology")

// Validate checks that the topology is one pipeline: layer names unique; every type accepted
// by exactly one layer and with exactly one payload; each consumer layer emitting onto a
// layer below it that takes demand, ending in one terminal layer; every payload constructible
// with its required numbers NaN and its primary quantity first among its quantities.
func (t Topology) Validate() error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrTopology}, args...)...))
	}
	payloads := map[Type]int{}
	for _, p := range t.Payloads {
		payloads[p.Type]++
		switch {
		case p.Type == "":
			fail("a payload has no type")
		case payloads[p.Type] > 1:
			fail("payload %s declared %d times", p.Type, payloads[p.Type])
		case p.New == nil || p.Quantities == nil || p.Label == nil:
			fail("payload %s lacks New, Quantities or Label", p.Type)
		default:
			t.validatePayload(p, fail)
		}
	}
	index, accepted, emitted := map[Layer]int{}, map[Type][]Layer{}, map[Layer]int{}
	for i, l := range t.Layers {
		if _, dup := index[l.Layer]; dup || l.Layer == "" {
			fail("layer %q declared twice or unnamed", l.Layer)
		}
		index[l.Layer] = i
		for _, typ := range append(append([]Type(nil), l.Signals...), l.Demand) {
			if typ != "" {
				accepted[typ] = append(accepted[typ], l.Layer)
			}
		}
	}
	terminal := 0
	for i, l := range t.Layers {
		if l.Emits == "" {
			terminal++
			if i != len(t.Layers)-1 || len(l.Signals) > 0 {
				fail("layer %s emits nothing, so it must be the last and take no signals", l.Layer)
			}
			continue
		}
		emitted[l.Emits]++
		j, ok := index[l.Emits]
		if !ok || j <= i || t.Layers[j].Demand == "" {
			fail("layer %s emits onto %q, which is not a layer below it that takes demand", l.Layer, l.Emits)
		}
	}
	if terminal != 1 {
		fail("%d terminal layers (emitting nothing), want 1", terminal)
	}
	for _, l := range t.Layers {
		if l.Demand != "" && emitted[l.Layer] != 1 {
			fail("layer %s takes %s but %d layers emit onto it, want 1", l.Layer, l.Demand, emitted[l.Layer])
		}
	}
	for typ, ls := range accepted {
		if len(ls) > 1 {
			fail("type %s is accepted by %d layers (%v), want 1", typ, len(ls), ls)
		}
		if payloads[typ] == 0 {
			fail("type %s has no payload", typ)
		}
	}
	for _, p := range t.Payloads {
		if p.Type != "" && len(accepted[p.Type]) == 0 {
			fail("payload %s enters no layer", p.Type)
		}
	}
	return errors.Join(errs...)
}

func (t Topology) validatePayload(p PayloadSpec, fail func(string, ...any)) {
	empty := p.New()
	if empty == nil || empty.EventType() != p.Type {
		fail("payload %s: New returns another type", p.Type)
		return
	}
	qs := p.Quantities(empty)
	if len(qs) == 0 || qs[0].Name != p.Primary {
		fail("payload %s: primary %q is not its first quantity", p.Type, p.Primary)
	} else if p.PrimaryValue != nil && !math.IsNaN(p.PrimaryValue(empty)) {
		fail("payload %s: PrimaryValue does not read %s (%v on an empty payload, want NaN)", p.Type, p.Primary, p.PrimaryValue(empty))
	}
	for _, q := range qs {
		if !math.IsNaN(q.Value) {
			fail("payload %s: New leaves required %s at %v, want NaN", p.Type, q.Name, q.Value)
		}
	}
}

// topology is Pipeline indexed; start-up fails if Pipeline is not valid.
type topology struct {
	layers   map[Layer]LayerSpec
	payloads map[Type]PayloadSpec
	input    map[Type]Layer   // the consumer layer reading each type
	layerOf  map[Type]Layer   // the layer each type enters
	sources  map[Layer]string // each layer's CloudEvents source, built once
	schemas  map[Type]string  // each payload type's dataschema URL, built once
}

var pipeline = mustIndex(Pipeline)

func mustIndex(t Topology) topology {
	if err := t.Validate(); err != nil {
		panic(err)
	}
	x := topology{layers: map[Layer]LayerSpec{}, payloads: map[Type]PayloadSpec{}, input: map[Type]Layer{}, layerOf: map[Type]Layer{},
		sources: map[Layer]string{}, schemas: map[Type]string{}}
	for _, p := range t.Payloads {
		x.payloads[p.Type] = p
		x.schemas[p.Type] = dataSchema(p.Type)
	}
	for _, l := range t.Layers {
		x.layers[l.Layer] = l
		x.sources[l.Layer] = source(l.Layer)
		for _, typ := range l.Accepts() {
			x.input[typ] = l.Layer
		}
		for _, typ := range append(append([]Type(nil), l.Signals...), l.Demand) {
			x.layerOf[typ] = l.Layer
		}
	}
	return x
}

// layers lists the names of the layers for which keep holds, top to bottom.
func (t Topology) layers(keep func(LayerSpec) bool) []Layer {
	var out []Layer
	for _, l := range t.Layers {
		if keep(l) {
			out = append(out, l.Layer)
		}
	}
	return out
}

// types lists the payload types in cascade order.
func (t Topology) types() []Type {
	out := make([]Type, len(t.Payloads))
	for i, p := range t.Payloads {
		out[i] = p.Type
	}
	return out
}

// spec is the PayloadSpec of p's type, if p is one of the topology's payloads.
func spec(p Payload) (PayloadSpec, bool) {
	if p == nil {
		return PayloadSpec{}, false
	}
	s, ok := pipeline.payloads[p.EventType()]
	return s, ok
}

// Counted reports whether totals count events of type t: not a signal whose demand is all in
// the events derived from it (a release), nor an unknown type.
func Counted(t Type) bool { return pipeline.payloads[t].Key != nil }

// LayerOf is the layer events of type t enter: the layer a signal is routed to or the layer
// demand is placed on; "" for an unknown type.
func LayerOf(t Type) Layer { return pipeline.layerOf[t] }

// JoinLayers lists layer names for people: "a, b, c or d" with last "or".
func JoinLayers(ls []Layer, last string) string { return Join(ls, last) }

// Join lists names (layers, kinds) for people: "a, b, c or d" with last "or".
func Join[T ~string](xs []T, last string) string {
	names := make([]string, len(xs))
	for i, x := range xs {
		names[i] = string(x)
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " " + last + " " + names[len(names)-1]
}
