// Package lineage answers trace: the tree of any stored event, from its root signal down
// through every event derived from it. One algorithm (Trace) climbs the causation chain by id
// and finds children by recomputing their deterministic ids with the scenario's coefficients;
// it looks events up through a Finder, of which there are two: the materialized view
// (internal/view), which keeps an on-disk index from event id to broker position (Pebble),
// and Scan, which reads the scenario's stored events. Both give the same tree.
package lineage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/demand"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/tree"
)

// Subject is where `run` answers trace requests for other processes.
const Subject = "cascade-api.trace"

// Request asks for the tree of an event.
type Request struct {
	Scenario string `json:"scenario"`
	ID       string `json:"id"`
}

// Via names the Finder that answered a trace.
type Via string

// The two finders.
const (
	ViaIndex Via = "index" // run's id index
	ViaScan  Via = "scan"  // a read of the whole scenario
)

// Answer is a trace and the finder that answered it; the reply of a trace request.
type Answer struct {
	Via  Via        `json:"via"`
	Root *tree.Node `json:"root"`
}

// Finder looks up the stored events of one scenario by id.
type Finder interface {
	// Find returns the stored event with id, or false when none is stored. corr, when not
	// empty, is the correlation id the event has if it is stored (its tree's root signal);
	// a finder may use it to narrow its search. The node returned has no children.
	Find(ctx context.Context, id, corr string) (*tree.Node, bool, error)
}

// Trace returns the tree of the event with id in scenario s, looked up through f: up to its
// root signal, then down through every stored descendant, children in event-time order. An
// id not stored gives an error matching broker.ErrNoEvent; a scenario not registered one
// matching broker.ErrNotFound.
func Trace(ctx context.Context, b broker.Broker, f Finder, s, id string) (*tree.Node, error) {
	bind, err := b.Registry().Get(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("trace in %s: %w", s, err)
	}
	coef, err := coefficients.Parse(bind.Document)
	if err != nil {
		return nil, fmt.Errorf("coefficients of %s: %w", s, err)
	}
	n, ok, err := f.Find(ctx, id, "")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s in scenario %s", broker.ErrNoEvent, id, s)
	}
	corr := correlation(n.Event)
	for n.Event.CausationID != "" {
		parent, ok, err := f.Find(ctx, n.Event.CausationID, corr)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: %s, parent of %s, in scenario %s", broker.ErrNoEvent, n.Event.CausationID, n.Event.ID, s)
		}
		n = parent
	}
	return n, expand(ctx, f, coef, corr, n)
}

// correlation is the id of the root signal of ev's tree.
func correlation(ev *event.Event) string {
	if ev.CorrelationID != "" {
		return ev.CorrelationID
	}
	return ev.ID
}

// expand attaches the stored children of n, found by the ids its transform gives.
func expand(ctx context.Context, f Finder, coef *coefficients.Loaded, corr string, n *tree.Node) error {
	if event.InputLayer(n.Event.Type) == "" {
		return nil
	}
	outs, err := demand.Derive(ctx, coef, n.Event, n.Payload)
	if err != nil {
		return nil // an event the layer refused has no children
	}
	for _, o := range outs {
		child, ok, err := f.Find(ctx, o.ID, corr)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := expand(ctx, f, coef, corr, child); err != nil {
			return err
		}
		n.Children = append(n.Children, child)
	}
	sort.SliceStable(n.Children, func(i, j int) bool {
		a, b := n.Children[i].Event, n.Children[j].Event
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		return event.Label(n.Children[i].Payload) < event.Label(n.Children[j].Payload)
	})
	return nil
}

// selector is what a trace reads of scenario s: its signals and all its demand.
func selector(s string) broker.Selector {
	return broker.Selector{Scenario: s, Kinds: []event.Kind{event.KindSignal, event.KindDemand}}
}

// Scan is the Finder that reads scenario s from the broker: the first lookup reads until it
// meets the id, then each tree it is asked about is read once (the events sharing its
// correlation id) and kept. It needs no index; each trace costs two reads of the scenario.
func Scan(b broker.Broker, s string) Finder {
	return &scan{b: b, s: s, trees: map[string]map[string]*tree.Node{}}
}

type scan struct {
	b     broker.Broker
	s     string
	trees map[string]map[string]*tree.Node // correlation id → event id → event
}

func (sc *scan) each(ctx context.Context, fn func(ev *event.Event, p event.Payload) error) error {
	return broker.Each(ctx, sc.b, broker.FeedOptions{Selector: selector(sc.s), FromStart: true}, func(d broker.Delivery) error {
		ev, p, err := event.Decode(d.Message().Data)
		if err != nil {
			return nil // only dead letters are undecodable, and they are not on these subjects
		}
		return fn(ev, p)
	})
}

// errFound stops a read once the id is met.
var errFound = errors.New("found")

func (sc *scan) Find(ctx context.Context, id, corr string) (*tree.Node, bool, error) {
	if corr == "" {
		err := sc.each(ctx, func(ev *event.Event, _ event.Payload) error {
			if ev.ID == id {
				corr = correlation(ev)
				return errFound
			}
			return nil
		})
		if err != nil && !errors.Is(err, errFound) {
			return nil, false, err
		}
		if corr == "" {
			return nil, false, nil
		}
	}
	t, ok := sc.trees[corr]
	if !ok {
		t = map[string]*tree.Node{}
		err := sc.each(ctx, func(ev *event.Event, p event.Payload) error {
			if _, dup := t[ev.ID]; !dup && correlation(ev) == corr {
				t[ev.ID] = &tree.Node{Event: ev, Payload: p}
			}
			return nil
		})
		if err != nil {
			return nil, false, err
		}
		sc.trees[corr] = t
	}
	n, ok := t[id]
	if !ok {
		return nil, false, nil
	}
	return &tree.Node{Event: n.Event, Payload: n.Payload}, true, nil
}

// ScanTrace is Trace over Scan, for when no index is at hand.
func ScanTrace(ctx context.Context, b broker.Broker, s, id string) (*Answer, error) {
	root, err := Trace(ctx, b, Scan(b, s), s, id)
	if err != nil {
		return nil, err
	}
	return &Answer{Via: ViaScan, Root: root}, nil
}

// Ask asks the `run` serving trace requests on r for the tree of id in scenario s. An error
// run returned keeps its class (errors.Is on broker.ErrNoEvent, ErrNotFound, ...); when no
// run serves them the error matches broker.ErrNoResponders.
func Ask(ctx context.Context, r broker.Responder, s, id string) (*Answer, error) {
	req, err := json.Marshal(Request{Scenario: s, ID: id})
	if err != nil {
		return nil, err
	}
	reply, err := r.Request(ctx, Subject, req)
	if err != nil {
		return nil, err
	}
	var a Answer
	if err := json.Unmarshal(reply, &a); err != nil {
		return nil, fmt.Errorf("trace reply: %w", err)
	}
	return &a, nil
}

// Fallback says why a trace was answered by a scan rather than by run's index.
type Fallback string

// Why Lookup scans.
const (
	NoRequestReply Fallback = "the broker carries no request/reply"
	NoRun          Fallback = "no cascade run answers trace requests"
)

// askTimeout bounds how long Lookup waits for run's answer.
const askTimeout = 30 * time.Second

// Lookup returns the tree of id in scenario s however it can be had: asked of the run serving
// trace requests over b (Ask; the answer's Via is run's finder), else, when b carries no
// request/reply or no run answers, by scanning the scenario (Via is ViaScan). Before it scans
// it calls scanning, when not nil, with why. Errors of run's answer are returned as Ask's.
func Lookup(ctx context.Context, b broker.Broker, s, id string, scanning func(why Fallback)) (*Answer, error) {
	why := NoRequestReply
	if r, ok := b.(broker.Responder); ok {
		rctx, cancel := context.WithTimeout(ctx, askTimeout)
		defer cancel()
		ans, err := Ask(rctx, r, s, id)
		if !errors.Is(err, broker.ErrNoResponders) {
			return ans, err
		}
		why = NoRun
	}
	if scanning != nil {
		scanning(why)
	}
	return ScanTrace(ctx, b, s, id)
}
