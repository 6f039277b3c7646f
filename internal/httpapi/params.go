package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/layercake/cascade/internal/event"
)

// params parses the request's query and checks it against the parameters its route takes:
// a malformed query, an unknown parameter or one given twice is refused, naming it.
func params(r *http.Request, takes ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	for name, vs := range q {
		switch {
		case !slices.Contains(takes, name):
			if len(takes) == 0 {
				return nil, fmt.Errorf("query parameter %q: unknown; %s takes none", name, r.URL.Path)
			}
			return nil, fmt.Errorf("query parameter %q: unknown; %s takes %s", name, r.URL.Path, strings.Join(takes, ", "))
		case len(vs) > 1:
			return nil, fmt.Errorf("query parameter %q: given %d times", name, len(vs))
		}
	}
	return q, nil
}

// scenarioParam is the scenario parameter, checked, or the server's default.
func (s *Server) scenarioParam(q url.Values) (string, error) {
	sc := q.Get("scenario")
	if sc == "" {
		return s.opts.Scenario, nil
	}
	if !event.ValidName(sc) {
		return "", fmt.Errorf("scenario %q: must match %s", sc, event.NamePattern)
	}
	return sc, nil
}

// scenarioOnly reads the query of a route whose one parameter is scenario: the scenario,
// checked, or the server's default.
func (s *Server) scenarioOnly(r *http.Request) (string, error) {
	q, err := params(r, "scenario")
	if err != nil {
		return "", err
	}
	return s.scenarioParam(q)
}
