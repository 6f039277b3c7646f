package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/query"
)

// getTotals answers what `cascade totals` prints, as JSON.
func (s *Server) getTotals(w http.ResponseWriter, r *http.Request) {
	o, err := s.totalsOptions(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	t, err := query.SumTotals(r.Context(), s.b, o)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// totalsOptions reads a totals request's parameters; the error names the one at fault.
func (s *Server) totalsOptions(r *http.Request) (query.TotalsOptions, error) {
	var o query.TotalsOptions
	q, err := params(r, "scenario", "by", "since", "until")
	if err != nil {
		return o, err
	}
	if o.Scenario, err = s.scenarioParam(q); err != nil {
		return o, err
	}
	switch by := q.Get("by"); by {
	case "":
	case "region":
		o.ByRegion = true
	default:
		return o, fmt.Errorf("by %q: the only grouping is region", by)
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &o.Since}, {"until", &o.Until}} {
		if v := q.Get(p.name); v != "" {
			t, err := event.ParseTime(v)
			if err != nil {
				return o, fmt.Errorf("%s: %w", p.name, err)
			}
			*p.dst = t
		}
	}
	if !o.Since.IsZero() && !o.Until.IsZero() && !o.Until.After(o.Since) {
		return o, fmt.Errorf("until %s: not after since %s", q.Get("until"), q.Get("since"))
	}
	return o, nil
}

// getTrace answers what `cascade trace ID` prints, as JSON.
func (s *Server) getTrace(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	scenario, err := s.scenarioOnly(r)
	if err == nil {
		err = event.CheckID(id)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a, err := s.opts.Trace(r.Context(), scenario, id)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"focus": id, "via": a.Via, "root": a.Root})
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, broker.ErrNoEvent), errors.Is(err, broker.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, event.ErrInvalid):
		return http.StatusBadRequest
	}
	return http.StatusServiceUnavailable
}
