package demand_test

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/layercake/cascade/internal/demand"
	"github.com/layercake/cascade/internal/event"
)

// TestREADMEShowsTopology keeps the README's subjects diagram and formula table equal to what
// the topology value renders.
func TestREADMEShowsTopology(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := strings.Split(string(raw), "\n")
	start := func(marker string) int {
		for i, l := range readme {
			if l == marker {
				return i
			}
		}
		t.Fatalf("README has no line %q", marker)
		return 0
	}
	// The diagram is the code block after the section heading.
	diagram := start("## The five layers and their subjects") + 1
	for readme[diagram] != "```" {
		diagram++
	}
	compare(t, readme, diagram+1, demand.SubjectsDiagram(event.Pipeline, demand.Stages))
	compare(t, readme, start("| layer | derives | formula |"), demand.FormulaTable(demand.Stages))
	// The commands' sections list the layers they take.
	for _, phrase := range []string{
		"One layer (" + event.JoinLayers(event.ConsumerLayers, "or") + ") for every scenario.",
		"demand feed (" + event.JoinLayers(event.FeedLayers, "or") + ")",
	} {
		if !strings.Contains(string(raw), phrase) {
			t.Errorf("README.md does not say %q", phrase)
		}
	}
}

// compare fails naming the first README line, from line from (0-based), that differs from want.
func compare(t *testing.T, readme []string, from int, want string) {
	t.Helper()
	for i, w := range strings.Split(strings.TrimSuffix(want, "\n"), "\n") {
		got := ""
		if from+i < len(readme) {
			got = readme[from+i]
		}
		if got != w {
			t.Errorf("README.md:%d differs from the topology:\n got: %q\nwant: %q", from+i+1, got, w)
			return
		}
	}
}

// clone copies t deeply enough to break it without touching event.Pipeline.
func clone(t event.Topology) event.Topology {
	c := event.Topology{Layers: make([]event.LayerSpec, len(t.Layers)), Payloads: append([]event.PayloadSpec(nil), t.Payloads...)}
	for i, l := range t.Layers {
		l.Signals = append([]event.Type(nil), l.Signals...)
		c.Layers[i] = l
	}
	return c
}

func layer(t event.Topology, l event.Layer) *event.LayerSpec {
	for i := range t.Layers {
		if t.Layers[i].Layer == l {
			return &t.Layers[i]
		}
	}
	panic("no layer " + l)
}

func payload(t event.Topology, typ event.Type) *event.PayloadSpec {
	for i := range t.Payloads {
		if t.Payloads[i].Type == typ {
			return &t.Payloads[i]
		}
	}
	panic("no payload " + typ)
}

// TestValidateCatchesBrokenTopology breaks copies of the pipeline one way each and expects
// Validate to name the fault.
func TestValidateCatchesBrokenTopology(t *testing.T) {
	t.Parallel()
	if err := demand.Validate(event.Pipeline, demand.Stages); err != nil {
		t.Fatalf("the pipeline itself: %v", err)
	}
	cases := []struct {
		name   string
		break_ func(t *event.Topology, s *[]demand.Stage)
		want   string
	}{
		{"type accepted by two layers", func(t *event.Topology, _ *[]demand.Stage) {
			l := layer(*t, event.Chips)
			l.Signals = append(l.Signals, event.TypeRelease)
		}, "cascade.signal.release.v1 is accepted by 2 layers"},
		{"payload entering no layer", func(t *event.Topology, s *[]demand.Stage) {
			layer(*t, event.Model).Signals = nil
		}, "payload cascade.signal.release.v1 enters no layer"},
		{"emits onto an unknown layer", func(t *event.Topology, _ *[]demand.Stage) {
			layer(*t, event.Energy).Emits = "moon"
		}, `layer energy emits onto "moon"`},
		{"emits upwards", func(t *event.Topology, _ *[]demand.Stage) {
			layer(*t, event.Chips).Emits = event.Model
		}, `layer chips emits onto "model", which is not a layer below it`},
		{"two terminal layers", func(t *event.Topology, _ *[]demand.Stage) {
			layer(*t, event.Energy).Emits = ""
		}, "2 terminal layers"},
		{"accepted type without payload", func(t *event.Topology, _ *[]demand.Stage) {
			t.Payloads = t.Payloads[:len(t.Payloads)-1]
		}, "type cascade.demand.grid.v1 has no payload"},
		{"payload declared twice", func(t *event.Topology, _ *[]demand.Stage) {
			t.Payloads = append(t.Payloads, t.Payloads[0])
		}, "payload cascade.signal.adoption.v1 declared 2 times"},
		{"payload without quantities", func(t *event.Topology, _ *[]demand.Stage) {
			payload(*t, event.TypeDemandEnergy).Quantities = nil
		}, "payload cascade.demand.energy.v1 lacks New, Quantities or Label"},
		{"primary not a quantity", func(t *event.Topology, _ *[]demand.Stage) {
			payload(*t, event.TypeDemandChips).Primary = "watts"
		}, `primary "watts" is not its first quantity`},
		{"required number not NaN", func(t *event.Topology, _ *[]demand.Stage) {
			payload(*t, event.TypeDemandGrid).New = func() event.Payload { return &event.DemandGrid{} }
		}, "New leaves required avg_mw at 0, want NaN"},
		{"constructor of another type", func(t *event.Topology, _ *[]demand.Stage) {
			payload(*t, event.TypeDemandGrid).New = func() event.Payload { return &event.DemandEnergy{} }
		}, "payload cascade.demand.grid.v1: New returns another type"},
		{"accepted type without formula", func(_ *event.Topology, s *[]demand.Stage) {
			(*s)[1].Formulas = (*s)[1].Formulas[:1]
		}, "stage model: 0 formulas for cascade.demand.model.v1, want 1"},
		{"formula for a type the layer does not accept", func(_ *event.Topology, s *[]demand.Stage) {
			(*s)[0].Formulas = append((*s)[0].Formulas, (*s)[2].Formulas...)
		}, "stage application: formula for cascade.demand.infrastructure.v1, which the layer does not accept"},
		{"stage missing", func(_ *event.Topology, s *[]demand.Stage) {
			*s = (*s)[:4]
		}, "4 stages for 5 consumer layers"},
		{"stages out of order", func(_ *event.Topology, s *[]demand.Stage) {
			(*s)[3], (*s)[4] = (*s)[4], (*s)[3]
		}, "stage 4 is energy, want chips"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			top := clone(event.Pipeline)
			stages := append([]demand.Stage(nil), demand.Stages...)
			for i := range stages {
				stages[i].Formulas = append([]demand.Formula(nil), stages[i].Formulas...)
			}
			c.break_(&top, &stages)
			err := demand.Validate(top, stages)
			if !errors.Is(err, event.ErrTopology) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate = %v, want an ErrTopology containing %q", err, c.want)
			}
		})
	}
}

// TestContractFilesListTopology keeps the layer and type lists of the published schemas and
// the OpenAPI document equal to the topology's.
func TestContractFilesListTopology(t *testing.T) {
	t.Parallel()
	read := func(path string, v any) {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	var ce struct {
		Properties struct {
			Type struct{ Enum []event.Type } `json:"type"`
		} `json:"properties"`
	}
	read("../../schemas/cloudevent.json", &ce)
	if !slices.Equal(ce.Properties.Type.Enum, event.Types) {
		t.Errorf("schemas/cloudevent.json type enum %v, the topology's types %v", ce.Properties.Type.Enum, event.Types)
	}
	for _, typ := range event.Types {
		if _, err := os.Stat("../../schemas/" + typ.Short() + ".json"); err != nil {
			t.Errorf("type %s has no schema: %v", typ, err)
		}
	}
	var tot struct {
		Defs struct {
			Row struct {
				Properties struct {
					Layer struct{ Enum []event.Layer } `json:"layer"`
				} `json:"properties"`
			} `json:"row"`
		} `json:"$defs"`
	}
	read("../../schemas/totals.json", &tot)
	if !slices.Equal(tot.Defs.Row.Properties.Layer.Enum, event.AllLayers) {
		t.Errorf("schemas/totals.json row layer enum %v, the topology's layers %v", tot.Defs.Row.Properties.Layer.Enum, event.AllLayers)
	}
	api, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(event.AllLayers))
	for i, l := range event.AllLayers {
		names[i] = string(l)
	}
	if want := "layer: {type: string, enum: [" + strings.Join(names, ", ") + "]}"; !strings.Contains(string(api), want) {
		t.Errorf("docs/openapi.yaml does not say %q", want)
	}
}
