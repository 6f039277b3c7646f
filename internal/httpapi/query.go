package httpapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/query"
)

// getTotals answers what `cascade totals` prints, as JSON.
func (s *Server) getTotals(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	o := query.TotalsOptions{Scenario: s.scenarioOf(r), ByRegion: q.Get("by") == "region"}
	for name, dst := range map[string]*time.Time{"since": &o.Since, "until": &o.Until} {
		if v := q.Get(name); v != "" {
			t, err := event.ParseTime(v)
			if err != nil {
				writeError(w, http.StatusBadRequest, name+": "+err.Error())
				return
			}
			*dst = t
		}
	}
	t, err := query.SumTotals(r.Context(), s.b, o)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// getTrace answers what `cascade trace ID` prints, as JSON.
func (s *Server) getTrace(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	root, err := s.opts.Trace(r.Context(), s.scenarioOf(r), id)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"focus": id, "root": root})
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, query.ErrNoEvent), errors.Is(err, broker.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, event.ErrInvalid):
		return http.StatusBadRequest
	}
	return http.StatusServiceUnavailable
}
