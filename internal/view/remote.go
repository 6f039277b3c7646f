package view

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/query"
	"github.com/rs/zerolog"
)

// QuerySubject is where `run` answers totals and series requests from its view for other
// processes (`cascade totals`, `cascade series`).
const QuerySubject = "cascade-api.view"

// Request asks the view for totals, a series or a layer's snapshot (exactly one of them).
type Request struct {
	Totals   *query.TotalsOptions `json:"totals,omitempty"`
	Series   *SeriesOptions       `json:"series,omitempty"`
	Snapshot *SnapshotOptions     `json:"snapshot,omitempty"`
	Held     *HeldRequest         `json:"held,omitempty"`
}

// HeldRequest asks the view which of IDs it holds (HeldAt); the reply is their positions.
type HeldRequest struct {
	Scenario string    `json:"scenario"`
	IDs      []string  `json:"ids"`
	AsOf     time.Time `json:"as_of,omitzero"`
}

// Remote is the id set of the view a `run` serves over B (QuerySubject), for stages that
// run in processes without a view of their own (`cascade consume`).
type Remote struct{ B broker.Broker }

// HeldAt asks the serving view's HeldAt; the error matches broker.ErrNoResponders when no
// view answers.
func (r Remote) HeldAt(ctx context.Context, s string, ids []string, asOf time.Time) ([]string, error) {
	var out []string
	if err := ask(ctx, r.B, Request{Held: &HeldRequest{Scenario: s, IDs: ids, AsOf: asOf}}, &out); err != nil {
		return nil, err
	}
	if len(out) != len(ids) {
		return nil, fmt.Errorf("view reply: %d positions for %d ids", len(out), len(ids))
	}
	return out, nil
}

// SnapshotOptions select a Snapshot.
type SnapshotOptions struct {
	Scenario string
	Layer    event.Layer
	Region   string
}

// ServeQueries answers Requests on QuerySubject from the view until ctx ends; an error's
// class travels with the reply (broker.ErrorCode).
func (v *View) ServeQueries(ctx context.Context, r broker.Responder) error {
	return r.Respond(ctx, QuerySubject, func(ctx context.Context, raw []byte) ([]byte, error) {
		var req Request
		if err := json.Unmarshal(raw, &req); err != nil {
			return nil, fmt.Errorf("%w: view request: %w", event.ErrInvalid, err)
		}
		var out any
		var err error
		if req.Held != nil {
			if req.Totals != nil || req.Series != nil || req.Snapshot != nil {
				return nil, fmt.Errorf("%w: view request: give one of totals, series, snapshot and held", event.ErrInvalid)
			}
			out, err = v.HeldAt(ctx, req.Held.Scenario, req.Held.IDs, req.Held.AsOf)
			if err != nil {
				return nil, err
			}
			return json.Marshal(out)
		}
		switch {
		case req.Totals != nil && req.Series == nil && req.Snapshot == nil:
			out, err = v.Totals(ctx, *req.Totals)
		case req.Series != nil && req.Totals == nil && req.Snapshot == nil:
			out, err = v.Series(ctx, *req.Series)
		case req.Snapshot != nil && req.Totals == nil && req.Series == nil:
			o := req.Snapshot
			out, err = v.Snapshot(ctx, o.Scenario, o.Layer, o.Region)
		default:
			return nil, fmt.Errorf("%w: view request: give one of totals, series and snapshot", event.ErrInvalid)
		}
		if err != nil {
			return nil, err
		}
		return json.Marshal(out)
	})
}

// ask sends req to the view run serves over b, decoding the reply into out; the error
// matches broker.ErrNoResponders when b carries no request/reply or no run answers.
func ask(ctx context.Context, b broker.Broker, req Request, out any) error {
	r, ok := b.(broker.Responder)
	if !ok {
		return fmt.Errorf("%w: the broker carries no request/reply", broker.ErrNoResponders)
	}
	raw, err := json.Marshal(req)
	if err != nil {
		return err
	}
	reply, err := r.Request(ctx, QuerySubject, raw)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(reply, out); err != nil {
		return fmt.Errorf("view reply: %w", err)
	}
	return nil
}

// AskTotals is o's totals however they can be had: from the view of a run serving over b,
// else summed by a scan of the scenario.
func AskTotals(ctx context.Context, b broker.Broker, o query.TotalsOptions) (*query.Totals, error) {
	var t query.Totals
	err := ask(ctx, b, Request{Totals: &o}, &t)
	if errors.Is(err, broker.ErrNoResponders) {
		return query.SumTotals(ctx, b, o)
	}
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// AskSeries is o's series however it can be had: from the view of a run serving over b,
// else from a temporary view read from the log (building is called first, to say so).
func AskSeries(ctx context.Context, b Broker, o SeriesOptions, building func()) (*Series, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	var s *Series
	err := askOrBuild(ctx, b, Request{Series: &o}, &s, building, func(v *View) (err error) {
		s, err = v.Series(ctx, o)
		return err
	}, o.Scenario, o.Vs)
	return s, err
}

// AskSnapshot is layer l's snapshot in scenario s (Snapshot) however it can be had: from the
// view of a run serving over b, else from a temporary view read from the log (building is
// called first, to say so). FeedAfter its position continues it.
func AskSnapshot(ctx context.Context, b Broker, o SnapshotOptions, building func()) (*query.Totals, error) {
	var t *query.Totals
	err := askOrBuild(ctx, b, Request{Snapshot: &o}, &t, building, func(v *View) (err error) {
		t, err = v.Snapshot(ctx, o.Scenario, o.Layer, o.Region)
		return err
	}, o.Scenario)
	return t, err
}

// askOrBuild asks run's view req, decoding the reply into out; when no run answers, it
// reads scenarios into a temporary view and answers with local.
func askOrBuild(ctx context.Context, b Broker, req Request, out any, building func(), local func(*View) error, scenarios ...string) error {
	err := ask(ctx, b, req, out)
	if !errors.Is(err, broker.ErrNoResponders) {
		return err
	}
	if building != nil {
		building()
	}
	dir, err := os.MkdirTemp("", "cascade-view-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	v := &View{B: b, Dir: dir, Log: zerolog.Nop()}
	defer func() { _ = v.Close() }()
	for _, sc := range scenarios {
		if sc == "" {
			continue
		}
		if err := v.Rebuild(ctx, sc); err != nil {
			return err
		}
	}
	return local(v)
}
