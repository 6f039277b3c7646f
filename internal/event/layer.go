package event

import (
	"fmt"
	"regexp"
	"strings"
)

// AllLayers are every layer of Pipeline, top to bottom.
var AllLayers = Pipeline.layers(func(LayerSpec) bool { return true })

// ConsumerLayers are the layers that run a consumer, top to bottom.
var ConsumerLayers = Pipeline.layers(func(l LayerSpec) bool { return l.Emits != "" })

// FeedLayers are the layers that receive derived demand, top to bottom.
var FeedLayers = Pipeline.layers(func(l LayerSpec) bool { return l.Demand != "" })

// ParseLayer accepts any layer name, feed or consumer.
func ParseLayer(s string) (Layer, error) {
	if _, ok := pipeline.layers[Layer(s)]; ok {
		return Layer(s), nil
	}
	return "", fmt.Errorf("%w: unknown layer %q (want %s)", ErrInvalid, s, JoinLayers(AllLayers, "or"))
}

// Emits is the layer on which this layer's consumer places demand; "" for the terminal layer.
func (l Layer) Emits() Layer { return pipeline.layers[l].Emits }

// DemandType is the event type of demand placed on l; "" for the top layer, on which no
// demand is placed.
func (l Layer) DemandType() Type { return pipeline.layers[l].Demand }

// InputLayer is the layer whose consumer reads events of type t, or "" for the terminal
// layer's demand, which no layer accepts.
func InputLayer(t Type) Layer { return pipeline.input[t] }

// Source is the CloudEvents source of events derived by l's consumer (built once for the
// pipeline's layers).
func (l Layer) Source() string {
	if s, ok := pipeline.sources[l]; ok {
		return s
	}
	return source(l)
}

func source(l Layer) string { return "/cascade/consumers/" + string(l) }

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// ValidName reports whether s may be a scenario or region token.
func ValidName(s string) bool { return namePattern.MatchString(s) }

// NamePattern is the pattern scenario and region tokens match.
const NamePattern = `^[a-z0-9][a-z0-9-]{0,31}$`

// DefaultScenario is the scenario every command uses unless told otherwise.
const DefaultScenario = "base"

// SignalSubject is where signals entering layer l in region r of scenario s are published.
func SignalSubject(s string, l Layer, r string) string {
	return Subject{Scenario: s, Kind: KindSignal, Layer: l, Region: r}.String()
}

// DemandSubject is where derived demand placed on l in region r of scenario s is published.
func DemandSubject(s string, l Layer, r string) string {
	return Subject{Scenario: s, Kind: KindDemand, Layer: l, Region: r}.String()
}

// DLQSubject is where layer l of scenario s parks what it cannot process.
func DLQSubject(s string, l Layer) string {
	return Subject{Scenario: s, Kind: KindDLQ, Layer: l}.String()
}

// StreamName is the JetStream stream holding scenario s.
func StreamName(s string) string {
	return "CASCADE_" + strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
}

// ConsumerName is the durable consumer of layer l in scenario s.
func ConsumerName(s string, l Layer) string { return "cascade-" + s + "-" + string(l) }

// InputSubjects are the filter subjects layer l's consumer reads in scenario s: one,
// "cascade.<s>.*.<l>.*", which takes the signals entering l and the demand placed on it (a
// dead-letter subject has no region token, so it never matches). One filter keeps JetStream
// on its single-filter delivery path, which measured faster than two.
func InputSubjects(s string, l Layer) []string {
	return []string{Subject{Scenario: s, Kind: Kind(Any), Layer: l}.String()}
}

// Kind is what a subject carries: signals entering a layer, demand placed on it, or its dead
// letters.
type Kind string

// The kinds of subject.
const (
	KindSignal Kind = "signal"
	KindDemand Kind = "demand"
	KindDLQ    Kind = "dlq"
)

// Kinds are every kind of subject, in the order their subjects are listed.
var Kinds = []Kind{KindSignal, KindDemand, KindDLQ}

// Layers are the layers that have subjects of kind k, top to bottom: signals enter and dead
// letters leave every consumer layer, demand is placed on every feed layer; nil for an unknown
// kind.
func (k Kind) Layers() []Layer {
	switch k {
	case KindSignal, KindDLQ:
		return ConsumerLayers
	case KindDemand:
		return FeedLayers
	}
	return nil
}

// Any matches any one token when given as a Subject's layer or region.
const Any = "*"

// Subject is the routing of one subject: its scenario, kind (signal, demand or dlq), layer and
// region (empty for dlq). It is also the one builder of subject names and filters: String
// renders it, an empty Kind, Layer or Region matching anything.
type Subject struct {
	Scenario string
	Kind     Kind
	Layer    Layer
	Region   string
}

// String is the subject "cascade.<scenario>.<kind>.<layer>.<region>" ("cascade.<s>.dlq.<layer>"
// for dead letters). An empty Kind renders the filter of the whole scenario
// ("cascade.<s>.>"); an empty Layer or Region matches any one token ("*").
func (s Subject) String() string {
	if s.Kind == "" {
		return "cascade." + s.Scenario + ".>"
	}
	if s.Kind == KindDLQ {
		return s.Topic()
	}
	return s.Topic() + "." + orAny(s.Region)
}

// Topic is the subject without its region, "cascade.<scenario>.<kind>.<layer>": the Kafka
// topic holding it, and the whole subject of a dead letter.
func (s Subject) Topic() string {
	return "cascade." + s.Scenario + "." + string(s.Kind) + "." + orAny(string(s.Layer))
}

func orAny(token string) string {
	if token == "" {
		return Any
	}
	return token
}

// ParseSubject splits a cascade subject into its tokens.
// It allocates nothing for a cascade subject: the stages and the view parse every message's.
func ParseSubject(subj string) (Subject, error) {
	var p [5]string
	n := 0
	for rest, more := subj, true; more; n++ {
		var tok string
		tok, rest, more = strings.Cut(rest, ".")
		if n < len(p) {
			p[n] = tok
		}
	}
	if n < 4 || p[0] != "cascade" {
		return Subject{}, fmt.Errorf("%w: %q is not a cascade subject", ErrInvalid, subj)
	}
	s := Subject{Scenario: p[1], Kind: Kind(p[2]), Layer: Layer(p[3])}
	if n == 5 {
		s.Region = p[4]
	}
	return s, nil
}
