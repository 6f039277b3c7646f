package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
)

// getFeed streams one or more layers' demand as Server-Sent Events: `id:` is the broker
// cursor, `event:` the type, one `data:` line the CloudEvent. Last-Event-ID resumes after a
// cursor; `since` starts at a broker time; otherwise the feed starts with new events.
func (s *Server) getFeed(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	names := []string{r.PathValue("layer")}
	if names[0] == "" {
		names = strings.Split(q.Get("layers"), ",")
	}
	scenario := s.scenarioOf(r)
	region := q.Get("region")
	if region == "" {
		region = "*"
	} else if !event.ValidName(region) {
		writeError(w, http.StatusBadRequest, "region must match "+event.NamePattern)
		return
	}
	var subjects []string
	for _, n := range names {
		l, err := event.ParseLayer(strings.TrimSpace(n))
		if err != nil || l == event.Application {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("layer %q: feeds are model, infrastructure, chips, energy and grid", n))
			return
		}
		subjects = append(subjects, event.DemandSubject(scenario, l, region))
	}
	opts := broker.FeedOptions{Scenario: scenario, Subjects: subjects, Cursor: r.Header.Get("Last-Event-ID")}
	if since := q.Get("since"); since != "" && opts.Cursor == "" {
		t, err := event.ParseSince(since, time.Now())
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		opts.Since = t
	}
	f, err := s.b.Feed(r.Context(), opts)
	if err != nil {
		status := http.StatusServiceUnavailable
		if errors.Is(err, broker.ErrNotFound) {
			status = http.StatusNotFound
		} else if errors.Is(err, event.ErrInvalid) {
			status = http.StatusBadRequest
		}
		writeError(w, status, err.Error())
		return
	}
	defer f.Close()
	flusher, _ := w.(http.Flusher)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": cascade feed\n\n")
	if flusher != nil {
		flusher.Flush()
	}
	type next struct {
		d   broker.Delivery
		err error
	}
	ch := make(chan next)
	go func() {
		for {
			d, err := f.Next(r.Context())
			select {
			case ch <- next{d, err}:
			case <-r.Context().Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	ping := time.NewTicker(s.opts.Ping)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ping.C:
			fmt.Fprint(w, ": ping\n\n")
		case n := <-ch:
			if n.err != nil {
				return
			}
			m := n.d.Message()
			typ := ""
			if sub, err := event.ParseSubject(m.Subject); err == nil {
				typ = string(sub.Layer.DemandType())
			}
			fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", n.d.Cursor(), typ, m.Data)
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}
