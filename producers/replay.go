package producers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
)

// Source yields signals in order; Next returns io.EOF at the end.
type Source interface {
	Next(ctx context.Context) (*event.Event, error)
}

// Replay re-drives signals into a scenario, whose storage its owner created.
type Replay struct {
	Broker broker.Broker
	Into   string
	Since  time.Time // event time, inclusive; zero: no lower bound
	Until  time.Time // event time, exclusive; zero: no upper bound
	// Speed paces signals by their original event times: 0 as fast as possible, otherwise
	// event-time seconds per wall second (86400: a day a second).
	Speed float64
	Batch int // signals per acknowledged publish; default 500
	// MaxLag is back-pressure: while the target's layers hold more than this many
	// unacknowledged events, replay waits (default 20,000), so a replay never runs far ahead
	// of the pipeline and the broker's working set stays the same size however long the
	// replay. A pipeline that makes no progress for StallAfter (default 5s) is not waited for.
	MaxLag     uint64
	StallAfter time.Duration
	// Progress, when set, is called after every batch with the signals published so far.
	Progress func(done int)
	// Refuse, when set, is told of every signal that is not re-driven because it fails the
	// checks of ingest; Run goes on with the next one.
	Refuse func(*Refusal)
}

// Refusal is a signal that Replay does not re-drive, and why: a line of its source that is
// not a valid signal, or a signal that fails ingest's checks in the target scenario (its
// whole tree under the target's coefficients included).
type Refusal struct {
	Line int    // the line in the source, 0 when the source has no lines
	ID   string // the signal's id, when it has one
	Err  error
}

// Error names the line (or, without one, the signal) and why it was refused.
func (r *Refusal) Error() string {
	if r.Line > 0 {
		return fmt.Sprintf("line %d: %v", r.Line, r.Err)
	}
	return fmt.Sprintf("signal %s: %v", r.ID, r.Err)
}

// Unwrap returns why the signal was refused.
func (r *Refusal) Unwrap() error { return r.Err }

// Report says what a replay did.
type Report struct {
	Read      int // signals read from the source
	InRange   int // of those, inside [Since, Until)
	Skipped   int // already in the target scenario
	Refused   int // failed ingest's checks, each told to Refuse
	Published int
	Elapsed   time.Duration
}

// Run replays src into the registered scenario Into. Every signal it re-drives first passes
// the checks of ingest under the target's coefficients, as Publisher's do; one that fails is
// refused (see Refuse) and the others go on. Signals already present in the target scenario
// (same id, inside the range) are skipped, so replaying a range twice adds nothing even after
// the broker's de-duplication window; memory grows only with the signals that are already there.
func (r *Replay) Run(ctx context.Context, src Source) (Report, error) {
	start := time.Now()
	var rep Report
	if r.Batch <= 0 {
		r.Batch = 500
	}
	if r.MaxLag == 0 {
		r.MaxLag = 20000
	}
	if r.StallAfter <= 0 {
		r.StallAfter = 5 * time.Second
	}
	coef, err := registered(ctx, r.Broker, r.Into, DefaultAckTimeout)
	if err != nil {
		return rep, fmt.Errorf("replay into %s: %w", r.Into, err)
	}
	have, err := r.present(ctx)
	if err != nil {
		return rep, err
	}
	refuse := func(rf *Refusal) {
		rep.Refused++
		if r.Refuse != nil {
			r.Refuse(rf)
		}
	}
	var batch []broker.Message
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := r.Broker.Publish(ctx, batch); err != nil {
			return fmt.Errorf("replay into %s: %w", r.Into, err)
		}
		rep.Published += len(batch)
		batch = batch[:0]
		if r.Progress != nil {
			r.Progress(rep.Published)
		}
		return r.backPressure(ctx)
	}
	var first time.Time
	for {
		ev, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		var rf *Refusal
		if errors.As(err, &rf) {
			rep.Read++
			refuse(rf)
			continue
		}
		if err != nil {
			return rep, err
		}
		rep.Read++
		if !event.InRange(ev.Time, r.Since, r.Until) {
			continue
		}
		rep.InRange++
		if _, ok := have[ev.ID]; ok {
			rep.Skipped++
			continue
		}
		if r.Speed > 0 {
			if first.IsZero() {
				first = ev.Time
			}
			due := start.Add(time.Duration(float64(ev.Time.Sub(first)) / r.Speed))
			if wait := time.Until(due); wait > 0 {
				if err := flush(); err != nil {
					return rep, err
				}
				select {
				case <-ctx.Done():
					return rep, ctx.Err()
				case <-time.After(wait):
				}
			}
		}
		ev.Scenario = r.Into
		if err := admit(ctx, coef, ev); err != nil {
			refuse(&Refusal{Line: lineOf(src), ID: ev.ID, Err: err})
			continue
		}
		if ev.CorrelationID == "" {
			ev.CorrelationID = ev.ID
		}
		m, err := Message(ev)
		if err != nil {
			return rep, err
		}
		batch = append(batch, m)
		if len(batch) >= r.Batch {
			if err := flush(); err != nil {
				return rep, err
			}
		}
	}
	err = flush()
	rep.Elapsed = time.Since(start)
	return rep, err
}

// admit runs ingest's checks on signal ev: those of Prepare, then its whole tree under coef.
func admit(ctx context.Context, coef *coefficients.Loaded, ev *event.Event) error {
	raw, err := ev.Marshal()
	if err != nil {
		return err
	}
	checked, p, err := prepare(raw, ev.Scenario, ev.Time)
	if err != nil {
		return err
	}
	return representable(ctx, coef, checked, p)
}

// lineOf is the line of the signal src returned last, 0 when src has no lines.
func lineOf(src Source) int {
	if l, ok := src.(*LineSource); ok {
		return l.line
	}
	return 0
}

// backPressure waits while the target's pipeline lags by more than MaxLag events, unless it
// stalls (no consumer running) or has no consumers yet.
func (r *Replay) backPressure(ctx context.Context) error {
	best, since := uint64(math.MaxUint64), time.Now()
	for {
		var lag uint64
		for _, l := range event.ConsumerLayers {
			n, err := r.Broker.Lag(ctx, r.Into, l)
			if err != nil {
				return nil // no consumer yet, or the broker cannot say: nothing to wait for
			}
			lag += n
		}
		if lag <= r.MaxLag {
			return nil
		}
		if lag < best {
			best, since = lag, time.Now()
		} else if time.Since(since) > r.StallAfter {
			return nil // nobody is consuming; replay on and let the pipeline catch up later
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// present collects the ids of the target's signals inside the range.
func (r *Replay) present(ctx context.Context) (map[string]struct{}, error) {
	have := map[string]struct{}{}
	err := Signals(ctx, r.Broker, r.Into, func(ev *event.Event) error {
		if event.InRange(ev.Time, r.Since, r.Until) {
			have[ev.ID] = struct{}{}
		}
		return nil
	})
	return have, err
}

// Signals calls fn for every signal stored in scenario s, in stream order.
func Signals(ctx context.Context, b broker.Broker, s string, fn func(*event.Event) error) error {
	o := broker.FeedOptions{Selector: broker.Selector{Scenario: s, Kinds: []event.Kind{event.KindSignal}}, FromStart: true}
	return broker.Each(ctx, b, o, func(d broker.Delivery) error {
		ev, _, err := event.Decode(d.Message().Data)
		if err != nil {
			return nil // invalid signals stay in the dlq's care
		}
		return fn(ev)
	})
}

// SliceSource yields the given events.
type SliceSource struct {
	Events []*event.Event
	i      int
}

// Next returns the next event or io.EOF.
func (s *SliceSource) Next(context.Context) (*event.Event, error) {
	if s.i >= len(s.Events) {
		return nil, io.EOF
	}
	s.i++
	return s.Events[s.i-1], nil
}

// ScenarioSource streams a scenario's recorded signals.
type ScenarioSource struct {
	Feed broker.Feed
}

// Next returns the next decodable signal or io.EOF.
func (s *ScenarioSource) Next(ctx context.Context) (*event.Event, error) {
	for {
		d, err := s.Feed.Next(ctx)
		if err != nil {
			return nil, err
		}
		if ev, _, err := event.Decode(d.Message().Data); err == nil {
			return ev, nil
		}
	}
}

// LineSource streams NDJSON signals from r, preparing each as ingest does; a bad line is a
// *Refusal naming its line number, and the lines after it are read on.
type LineSource struct {
	R        io.Reader
	Scenario string
	scanner  *lineScanner
	line     int // of the signal returned last
}

// Next returns the next signal or io.EOF.
func (s *LineSource) Next(context.Context) (*event.Event, error) {
	if s.scanner == nil {
		s.scanner = newLineScanner(s.R)
	}
	it, err := s.scanner.next()
	if err != nil {
		return nil, err
	}
	s.line = it.Line
	if it.Err != nil {
		return nil, &Refusal{Line: it.Line, Err: it.Err}
	}
	ev, err := Prepare(it.Raw, s.Scenario, time.Now())
	if err != nil {
		return nil, &Refusal{Line: it.Line, Err: err}
	}
	return ev, nil
}
