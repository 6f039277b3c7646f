package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/query"
)

// getFeed streams one or more layers' demand as Server-Sent Events: `id:` is the broker
// cursor, `event:` the type, one `data:` line the CloudEvent. Last-Event-ID resumes after a
// cursor; `since` starts at a broker time; otherwise the feed starts with new events. With
// snapshot=1 (one layer) the first event is `event: snapshot`, the layer's totals from the
// view (`id:` the position they are as of), and the feed follows from right after it; with
// Last-Event-ID too it resumes after that id instead, as a reconnecting EventSource needs.
func (s *Server) getFeed(w http.ResponseWriter, r *http.Request) {
	opts, snapshot, err := s.feedOptions(r)
	if err == nil && snapshot && s.opts.View == nil {
		writeError(w, http.StatusServiceUnavailable, "snapshot: needs the view, which this process does not keep (cascade run or cascade view do)")
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	release, ok := s.openFeed(w)
	if !ok {
		return
	}
	defer release()
	var f broker.Feed
	var snap *query.Totals
	if snapshot {
		region := ""
		if len(opts.Regions) > 0 {
			region = opts.Regions[0]
		}
		snap, f, err = s.opts.View.Subscribe(r.Context(), opts.Scenario, opts.Layers[0], region)
	} else {
		f, err = s.b.Feed(r.Context(), opts)
	}
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	defer f.Close()
	// The request is read: lift the read deadline, which would otherwise end the stream, and
	// renew the write deadline before each write, so that the stream lives while the client
	// reads it and a client that stops reading is dropped within WriteTimeout.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	send := func(format string, args ...any) error {
		if err := rc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return err
		}
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return nil
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK) // buffered: send writes it with the first comment
	if send(": cascade feed\n\n") != nil {
		return
	}
	if snap != nil {
		data, err := json.Marshal(snap)
		if err != nil || send("id: %s\nevent: snapshot\ndata: %s\n\n", snap.Position, data) != nil {
			return
		}
	}
	ctx, cancel := context.WithCancel(r.Context())
	ch, pumped := broker.Pump(ctx, f, 0)
	defer func() { cancel(); <-pumped }() // the reader is gone before the feed closes
	ping := time.NewTicker(s.opts.Ping)
	defer ping.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-ping.C:
			err = send(": ping\n\n")
		case n := <-ch:
			if n.Err != nil {
				return
			}
			m := n.Delivery.Message()
			typ := ""
			if sub, err := event.ParseSubject(m.Subject); err == nil {
				typ = string(sub.Layer.DemandType())
			}
			err = send("id: %s\nevent: %s\ndata: %s\n\n", n.Delivery.Cursor(), typ, m.Data)
		}
		if err != nil {
			return
		}
	}
}

// feedOptions reads a feed request's path and parameters; the error names the one at fault.
func (s *Server) feedOptions(r *http.Request) (opts broker.FeedOptions, snapshot bool, err error) {
	names, param := []string{r.PathValue("layer")}, "layer"
	takes := []string{"scenario", "region", "since"}
	if names[0] == "" {
		takes = append(takes, "layers")
	} else {
		takes = append(takes, "snapshot")
	}
	q, err := params(r, takes...)
	if err != nil {
		return opts, false, err
	}
	switch v := q.Get("snapshot"); v {
	case "", "0", "false":
	case "1", "true":
		// A client reconnecting with Last-Event-ID has had the snapshot: it resumes after
		// the last event it saw (the snapshot's own id is its position).
		snapshot = r.Header.Get("Last-Event-ID") == ""
		if q.Get("since") != "" {
			return opts, false, errors.New("snapshot: starts after the snapshot's position; give it without since")
		}
	default:
		return opts, false, fmt.Errorf("snapshot %q: want 1 or 0", v)
	}
	if names[0] == "" {
		names, param = strings.Split(q.Get("layers"), ","), "layers"
	}
	scenario, err := s.scenarioParam(q)
	if err != nil {
		return opts, false, err
	}
	sel := broker.Selector{Scenario: scenario, Kinds: []event.Kind{event.KindDemand}}
	if region := q.Get("region"); region != "" {
		if !event.ValidName(region) {
			return opts, false, fmt.Errorf("region %q: must match %s", region, event.NamePattern)
		}
		sel.Regions = []string{region}
	}
	for _, n := range names {
		l, err := event.ParseLayer(strings.TrimSpace(n))
		if err != nil || !slices.Contains(event.FeedLayers, l) {
			return opts, false, fmt.Errorf("%s: layer %q: feeds are %s", param, n, event.JoinLayers(event.FeedLayers, "and"))
		}
		sel.Layers = append(sel.Layers, l)
	}
	opts = broker.FeedOptions{Selector: sel, Cursor: r.Header.Get("Last-Event-ID")}
	if since := q.Get("since"); since != "" && opts.Cursor == "" {
		t, err := event.ParseSince(since, time.Now())
		if err != nil {
			return opts, false, fmt.Errorf("since: %w", err)
		}
		opts.Since = t
	}
	return opts, snapshot, nil
}
