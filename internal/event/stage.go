package event

import (
	"fmt"
	"slices"
	"strings"
)

// Stage is a contiguous range of consumer layers, First to Last top to bottom, run by one
// consumer: it reads what enters the range (the signals of its layers and the demand placed on
// First) and derives through every layer of the range in memory. A one-layer stage (First ==
// Last) is one layer's consumer as it always was.
type Stage struct {
	First, Last Layer
}

// LayerStage is the one-layer stage of l.
func LayerStage(l Layer) Stage { return Stage{First: l, Last: l} }

// Chain is the stage of every consumer layer: what `run` runs by default.
var Chain = Stage{First: ConsumerLayers[0], Last: ConsumerLayers[len(ConsumerLayers)-1]}

// PerLayer is one one-layer stage per consumer layer, top to bottom.
var PerLayer = func() []Stage {
	out := make([]Stage, len(ConsumerLayers))
	for i, l := range ConsumerLayers {
		out[i] = LayerStage(l)
	}
	return out
}()

// consumerIndex is l's position among ConsumerLayers, -1 for another.
func consumerIndex(l Layer) int { return slices.Index(ConsumerLayers, l) }

// ParseStage reads "layer" or "first-last" (consumer layers, first above last).
func ParseStage(s string) (Stage, error) {
	first, last, ranged := strings.Cut(s, "-")
	if !ranged {
		last = first
	}
	st := Stage{First: Layer(first), Last: Layer(last)}
	if err := st.Validate(); err != nil {
		return Stage{}, err
	}
	return st, nil
}

// Validate refuses a stage whose ends are not consumer layers or whose First is below Last.
func (s Stage) Validate() error {
	i, j := consumerIndex(s.First), consumerIndex(s.Last)
	switch {
	case i < 0 || j < 0:
		return fmt.Errorf("%w: stage %q: its layers must be consumer layers (%s)", ErrInvalid, s.String(), JoinLayers(ConsumerLayers, "or"))
	case i > j:
		return fmt.Errorf("%w: stage %q: %s is below %s; name the upper layer first", ErrInvalid, s.String(), s.First, s.Last)
	}
	return nil
}

// String is "layer" for a one-layer stage, "first-last" for a range.
func (s Stage) String() string {
	if s.First == s.Last {
		return string(s.First)
	}
	return string(s.First) + "-" + string(s.Last)
}

// Layers are the stage's layers, top to bottom.
func (s Stage) Layers() []Layer {
	i, j := consumerIndex(s.First), consumerIndex(s.Last)
	if i < 0 || j < i {
		return nil
	}
	return slices.Clone(ConsumerLayers[i : j+1])
}

// Contains reports whether l is one of the stage's layers.
func (s Stage) Contains(l Layer) bool {
	k := consumerIndex(l)
	return k >= 0 && consumerIndex(s.First) <= k && k <= consumerIndex(s.Last)
}

// Overlaps reports whether s and o share a layer.
func (s Stage) Overlaps(o Stage) bool {
	return consumerIndex(s.First) <= consumerIndex(o.Last) && consumerIndex(o.First) <= consumerIndex(s.Last)
}

// ConsumerName is the durable consumer (NATS) or consumer group (Kafka) of the stage in
// scenario sc: "cascade-<s>-<first>" for a one-layer stage (ConsumerName's), else
// "cascade-<s>-<first>-<last>".
func (s Stage) ConsumerName(sc string) string { return ConsumerName(sc, s.First) + rangeSuffix(s) }

func rangeSuffix(s Stage) string {
	if s.First == s.Last {
		return ""
	}
	return "-" + string(s.Last)
}

// StageOfConsumer reads back the stage of a consumer name of scenario sc (ConsumerName's
// inverse); false for a name that is not one.
func StageOfConsumer(sc, name string) (Stage, bool) {
	rest, ok := strings.CutPrefix(name, "cascade-"+sc+"-")
	if !ok {
		return Stage{}, false
	}
	st, err := ParseStage(rest)
	return st, err == nil
}

// Inputs are the subjects that enter the stage in scenario sc, region any: the demand placed
// on First (unless First is the top layer) and the signal subject of each of its layers
// (where signals of their own and demand injected from outside enter).
func (s Stage) Inputs(sc string) []Subject {
	var out []Subject
	if s.First.DemandType() != "" {
		out = append(out, Subject{Scenario: sc, Kind: KindDemand, Layer: s.First})
	}
	for _, l := range s.Layers() {
		out = append(out, Subject{Scenario: sc, Kind: KindSignal, Layer: l})
	}
	return out
}

// FilterSubjects are the fewest subject filters that select the stage's Inputs in scenario
// sc: one whenever the inputs allow it. A one-layer stage's are "cascade.<s>.*.<l>.*" (as
// InputSubjects); a stage of every consumer layer reads the signal subjects of all of them
// and nothing else, "cascade.<s>.signal.*.*" (which matches the terminal layer's signal
// subject too, where nothing is published: no layer accepts a signal there); any other
// stage has one filter per input. One filter keeps JetStream on its single-filter delivery
// path.
func (s Stage) FilterSubjects(sc string) []string {
	in := s.Inputs(sc)
	switch {
	case s.First == s.Last:
		return InputSubjects(sc, s.First)
	case s == Chain:
		return []string{Subject{Scenario: sc, Kind: KindSignal}.String()}
	}
	out := make([]string, len(in))
	for i, x := range in {
		out[i] = x.String()
	}
	return out
}

// Topics are the Kafka topics of the stage's Inputs in scenario sc.
func (s Stage) Topics(sc string) []string {
	in := s.Inputs(sc)
	out := make([]string, len(in))
	for i, x := range in {
		out[i] = x.Topic()
	}
	return out
}

// Tiling checks that stages share no layer, naming the first two that do.
func Tiling(stages []Stage) error {
	for i, a := range stages {
		for _, b := range stages[i+1:] {
			if a.Overlaps(b) {
				return fmt.Errorf("%w: stages %s and %s share a layer", ErrInvalid, a, b)
			}
		}
	}
	return nil
}
