package event

import (
	"fmt"
	"regexp"
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

// ConsumerLayers are the five layers that run a consumer, top to bottom.
var ConsumerLayers = []Layer{Application, Model, Infrastructure, Chips, Energy}

// FeedLayers are the layers that receive derived demand, top to bottom.
var FeedLayers = []Layer{Model, Infrastructure, Chips, Energy, Grid}

// ParseLayer accepts any layer name, feed or consumer.
func ParseLayer(s string) (Layer, error) {
	for _, l := range []Layer{Application, Model, Infrastructure, Chips, Energy, Grid} {
		if string(l) == s {
			return l, nil
		}
	}
	return "", fmt.Errorf("%w: unknown layer %q (want application, model, infrastructure, chips, energy or grid)", ErrInvalid, s)
}

// Emits is the layer on which this layer's consumer places demand.
func (l Layer) Emits() Layer {
	switch l {
	case Application:
		return Model
	case Model:
		return Infrastructure
	case Infrastructure:
		return Chips
	case Chips:
		return Energy
	case Energy:
		return Grid
	}
	return ""
}

// DemandType is the event type of demand placed on l.
func (l Layer) DemandType() Type { return Type("cascade.demand." + string(l) + ".v1") }

// InputLayer is the layer whose consumer reads events of type t, or "" for demand.grid,
// which no layer accepts.
func InputLayer(t Type) Layer {
	switch t {
	case TypeAdoption:
		return Application
	case TypeRelease, TypeDemandModel:
		return Model
	case TypeDemandInfrastructure:
		return Infrastructure
	case TypeDemandChips:
		return Chips
	case TypeDemandEnergy:
		return Energy
	}
	return ""
}

// Source is the CloudEvents source of events derived by l's consumer.
func (l Layer) Source() string { return "/cascade/consumers/" + string(l) }

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// ValidName reports whether s may be a scenario or region token.
func ValidName(s string) bool { return namePattern.MatchString(s) }

// NamePattern is the pattern scenario and region tokens match.
const NamePattern = `^[a-z0-9][a-z0-9-]{0,31}$`

// DefaultScenario is the scenario every command uses unless told otherwise.
const DefaultScenario = "base"

// SignalSubject is where signals entering layer l in region r of scenario s are published.
func SignalSubject(s string, l Layer, r string) string {
	return "cascade." + s + ".signal." + string(l) + "." + r
}

// DemandSubject is where derived demand placed on l in region r of scenario s is published.
func DemandSubject(s string, l Layer, r string) string {
	return "cascade." + s + ".demand." + string(l) + "." + r
}

// DLQSubject is where layer l of scenario s parks what it cannot process.
func DLQSubject(s string, l Layer) string { return "cascade." + s + ".dlq." + string(l) }

// StreamName is the JetStream stream holding scenario s.
func StreamName(s string) string {
	return "CASCADE_" + strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
}

// ConsumerName is the durable consumer of layer l in scenario s.
func ConsumerName(s string, l Layer) string { return "cascade-" + s + "-" + string(l) }

// InputSubjects are the wildcard subjects layer l's consumer reads in scenario s.
func InputSubjects(s string, l Layer) []string {
	return []string{"cascade." + s + ".signal." + string(l) + ".*", "cascade." + s + ".demand." + string(l) + ".*"}
}

// Subject is the routing of one subject: its scenario, kind (signal, demand or dlq), layer and
// region (empty for dlq).
type Subject struct {
	Scenario string
	Kind     string
	Layer    Layer
	Region   string
}

// ParseSubject splits a cascade subject into its tokens.
func ParseSubject(subj string) (Subject, error) {
	p := strings.Split(subj, ".")
	if len(p) < 4 || p[0] != "cascade" {
		return Subject{}, fmt.Errorf("%w: %q is not a cascade subject", ErrInvalid, subj)
	}
	s := Subject{Scenario: p[1], Kind: p[2], Layer: Layer(p[3])}
	if len(p) == 5 {
		s.Region = p[4]
	}
	return s, nil
}
