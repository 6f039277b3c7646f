// Package lineage keeps, for every scenario, an on-disk index from event id to its place in
// the broker, fed by following the scenario's stream, and answers trace from it: up the
// causation chain by id, and down by recomputing each event's output ids with the scenario's
// coefficients (ids are deterministic) and looking them up. Memory stays flat however many
// events there are; a trace costs a few index lookups and broker reads per event in its tree.
package lineage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/idindex"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/tree"
)

// Subject is where `run` answers trace requests for other processes.
const Subject = "cascade-api.trace"

// Request asks for the tree of an event.
type Request struct {
	Scenario string `json:"scenario"`
	ID       string `json:"id"`
}

// Broker is what lineage needs: the port, plus fetching one message by cursor.
type Broker interface {
	broker.Broker
	broker.Getter
}

// Indexer follows scenarios and keeps their id indexes in Dir.
type Indexer struct {
	B         Broker
	Dir       string
	Log       zerolog.Logger
	SyncEvery time.Duration // how often the index is flushed with its checkpoint; default 1s

	mu  sync.Mutex
	idx map[string]*idindex.Index
}

func (x *Indexer) open(scenario string) (*idindex.Index, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.idx == nil {
		x.idx = map[string]*idindex.Index{}
	}
	if ix := x.idx[scenario]; ix != nil {
		return ix, nil
	}
	if err := os.MkdirAll(x.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("index dir: %w", err)
	}
	ix, err := idindex.Open(filepath.Join(x.Dir, scenario+".idx"), idindex.Options{})
	if err != nil {
		return nil, err
	}
	x.idx[scenario] = ix
	return ix, nil
}

// Follow indexes scenario s from where its index left off until ctx ends.
func (x *Indexer) Follow(ctx context.Context, s string) error {
	ix, err := x.open(s)
	if err != nil {
		return err
	}
	every := x.SyncEvery
	if every <= 0 {
		every = time.Second
	}
	o := broker.FeedOptions{Selector: broker.Selector{Scenario: s, Kinds: []event.Kind{event.KindSignal, event.KindDemand}}, FromStart: true}
	if cp := ix.Checkpoint(); cp > 0 {
		o.Cursor = strconv.FormatUint(cp, 10)
	}
	f, err := x.B.Feed(ctx, o)
	if err != nil {
		return err
	}
	defer f.Close()
	last := time.Now()
	defer func() { _ = ix.Sync() }()
	for {
		d, err := f.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		id := d.Message().ID
		if id == "" {
			var e struct{ ID string }
			if json.Unmarshal(d.Message().Data, &e) != nil || e.ID == "" {
				continue
			}
			id = e.ID
		}
		if _, err := ix.Put(id, d.Seq()); err != nil {
			return fmt.Errorf("index %s: %w", s, err)
		}
		ix.SetCheckpoint(d.Seq())
		if time.Since(last) >= every {
			if err := ix.Sync(); err != nil {
				return fmt.Errorf("index %s: %w", s, err)
			}
			last = time.Now()
		}
	}
}

// Close flushes and closes every index.
func (x *Indexer) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	var errs []error
	for _, ix := range x.idx {
		errs = append(errs, ix.Close())
	}
	x.idx = nil
	return errors.Join(errs...)
}

// load fetches and decodes the stored event with id, or reports it absent.
func (x *Indexer) load(ctx context.Context, ix *idindex.Index, s, id string) (*tree.Node, bool, error) {
	seq, ok, err := ix.Get(id)
	if err != nil || !ok {
		return nil, false, err
	}
	m, err := x.B.Get(ctx, s, strconv.FormatUint(seq, 10))
	if err != nil {
		return nil, false, err
	}
	ev, p, err := event.Decode(m.Data)
	if err != nil {
		return nil, false, fmt.Errorf("stored event %s: %w", id, err)
	}
	if ev.ID != id {
		return nil, false, nil // a 64-bit hash collision in the index: the id is not stored
	}
	return &tree.Node{Event: ev, Payload: p}, true, nil
}

// Trace returns the tree of the event with id: up to its root signal, then down through every
// stored descendant.
func (x *Indexer) Trace(ctx context.Context, s, id string) (*tree.Node, error) {
	ix, err := x.open(s)
	if err != nil {
		return nil, err
	}
	b, err := x.B.Registry().Get(ctx, s)
	if err != nil {
		return nil, err
	}
	coef, err := coefficients.Parse(b.Document)
	if err != nil {
		return nil, err
	}
	n, ok, err := x.load(ctx, ix, s, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s in scenario %s", query.ErrNoEvent, id, s)
	}
	for n.Event.CausationID != "" {
		parent, ok, err := x.load(ctx, ix, s, n.Event.CausationID)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: %s, parent of %s, in scenario %s", query.ErrNoEvent, n.Event.CausationID, n.Event.ID, s)
		}
		n = parent
	}
	return n, x.expand(ctx, ix, s, coef, n)
}

// expand attaches the stored children of n, found by the ids its transform gives.
func (x *Indexer) expand(ctx context.Context, ix *idindex.Index, s string, coef *coefficients.Loaded, n *tree.Node) error {
	if event.InputLayer(n.Event.Type) == "" {
		return nil
	}
	outs, err := consumers.Derive(ctx, coef, n.Event, n.Payload)
	if err != nil {
		return nil // an event the layer refused has no children
	}
	for _, o := range outs {
		child, ok, err := x.load(ctx, ix, s, o.ID)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := x.expand(ctx, ix, s, coef, child); err != nil {
			return err
		}
		n.Children = append(n.Children, child)
	}
	return nil
}

// Serve answers trace requests from other processes on Subject until ctx ends.
func (x *Indexer) Serve(ctx context.Context, r broker.Responder) error {
	return r.Respond(ctx, Subject, func(ctx context.Context, raw []byte) ([]byte, error) {
		var req Request
		if err := json.Unmarshal(raw, &req); err != nil {
			return nil, fmt.Errorf("%w: trace request: %w", event.ErrInvalid, err)
		}
		n, err := x.Trace(ctx, req.Scenario, req.ID)
		if err != nil {
			return nil, err
		}
		return json.Marshal(n)
	})
}
