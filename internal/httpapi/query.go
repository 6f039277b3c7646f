package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/view"
)

// getTotals answers what `cascade totals` prints, as JSON: from the view when the server has
// one (with the position it is as of), else by a scan; with vs, both scenarios side by side.
func (s *Server) getTotals(w http.ResponseWriter, r *http.Request) {
	o, vs, err := s.totalsOptions(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	sum := func(o query.TotalsOptions) (*query.Totals, error) {
		if s.opts.View != nil {
			return s.opts.View.Totals(r.Context(), o)
		}
		return query.SumTotals(r.Context(), s.b, o)
	}
	t, err := sum(o)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	if vs == "" {
		writeJSON(w, http.StatusOK, t)
		return
	}
	o.Scenario = vs
	other, err := sum(o)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, query.Compare(t, other))
}

// totalsOptions reads a totals request's parameters; the error names the one at fault.
func (s *Server) totalsOptions(r *http.Request) (o query.TotalsOptions, vs string, err error) {
	q, err := params(r, "scenario", "by", "since", "until", "vs")
	if err != nil {
		return o, "", err
	}
	if o.Scenario, err = s.scenarioParam(q); err != nil {
		return o, "", err
	}
	if vs, err = vsParam(q); err != nil {
		return o, "", err
	}
	switch by := q.Get("by"); by {
	case "":
	case "region":
		o.ByRegion = true
	default:
		return o, "", fmt.Errorf("by %q: the only grouping is region", by)
	}
	o.Since, o.Until, err = rangeParams(q)
	return o, vs, err
}

// vsParam is the scenario to compare with, checked ("" when none).
func vsParam(q url.Values) (string, error) {
	vs := q.Get("vs")
	if vs != "" && !event.ValidName(vs) {
		return "", fmt.Errorf("vs %q: must match %s", vs, event.NamePattern)
	}
	return vs, nil
}

// rangeParams reads the half-open event-time range [since, until).
func rangeParams(q url.Values) (since, until time.Time, err error) {
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &since}, {"until", &until}} {
		if v := q.Get(p.name); v != "" {
			t, err := event.ParseTime(v)
			if err != nil {
				return since, until, fmt.Errorf("%s: %w", p.name, err)
			}
			*p.dst = t
		}
	}
	if !since.IsZero() && !until.IsZero() && !until.After(since) {
		return since, until, fmt.Errorf("until %s: not after since %s", q.Get("until"), q.Get("since"))
	}
	return since, until, nil
}

// getSeries answers what `cascade series` prints, as JSON, from the view.
func (s *Server) getSeries(w http.ResponseWriter, r *http.Request) {
	q, err := params(r, "scenario", "vs", "layer", "quantity", "by", "step", "since", "until")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	o := view.SeriesOptions{Layer: event.Layer(q.Get("layer")), Quantity: q.Get("quantity"), By: q.Get("by"), Step: q.Get("step")}
	if o.By == "" {
		o.By = "region"
	}
	if o.Step == "" {
		o.Step = "month"
	}
	if o.Scenario, err = s.scenarioParam(q); err == nil {
		if o.Vs, err = vsParam(q); err == nil {
			if o.Since, o.Until, err = rangeParams(q); err == nil {
				err = o.Check()
			}
		}
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if s.opts.View == nil {
		writeError(w, http.StatusServiceUnavailable, "series need the view, which this process does not keep (cascade run or cascade view do)")
		return
	}
	ser, err := s.opts.View.Series(r.Context(), o)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, ser)
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
