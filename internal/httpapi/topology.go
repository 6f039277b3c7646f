package httpapi

import (
	"net/http"

	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/view"
)

// topologyLayer is one layer of GET /v1/topology: what enters it, what its rows sum and
// under which key, so that clients (the page) read the one declared topology.
type topologyLayer struct {
	Layer      event.Layer      `json:"layer"`
	Signals    []event.Type     `json:"signals"`
	Demand     event.Type       `json:"demand,omitempty"`
	Emits      event.Layer      `json:"emits,omitempty"`
	Feed       bool             `json:"feed"`
	Key        string           `json:"key"`
	Quantities []topologyAmount `json:"quantities"`
}

type topologyAmount struct {
	Name string `json:"name"`
	Unit string `json:"unit"`
}

// topology is event.Pipeline as GET /v1/topology answers it: a layer's quantities are those
// of its demand payload, or of its signals that totals count (the application layer's users).
func topology() []topologyLayer {
	payloads := map[event.Type]event.PayloadSpec{}
	for _, p := range event.Pipeline.Payloads {
		payloads[p.Type] = p
	}
	amounts := func(t event.Type) []topologyAmount {
		p, ok := payloads[t]
		if !ok || p.Key == nil || p.New == nil || p.Quantities == nil {
			return nil
		}
		var out []topologyAmount
		for _, q := range p.Quantities(p.New()) {
			out = append(out, topologyAmount{q.Name, q.Unit})
		}
		return out
	}
	out := make([]topologyLayer, 0, len(event.Pipeline.Layers))
	for _, l := range event.Pipeline.Layers {
		tl := topologyLayer{Layer: l.Layer, Signals: l.Signals, Demand: l.Demand, Emits: l.Emits, Feed: l.Demand != "", Key: view.KeyKind(l.Layer)}
		if tl.Signals == nil {
			tl.Signals = []event.Type{}
		}
		if l.Demand != "" {
			tl.Quantities = amounts(l.Demand)
		} else {
			for _, s := range l.Signals {
				tl.Quantities = append(tl.Quantities, amounts(s)...)
			}
		}
		if tl.Quantities == nil {
			tl.Quantities = []topologyAmount{}
		}
		out = append(out, tl)
	}
	return out
}

// getTopology answers the pipeline's layers top to bottom and the steps a series takes.
func (s *Server) getTopology(w http.ResponseWriter, r *http.Request) {
	if _, err := params(r); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"layers": topology(), "steps": view.Steps})
}
