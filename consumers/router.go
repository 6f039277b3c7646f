// Package consumers runs the stages: a stage is a contiguous range of layers (one layer, or
// all five chained) run by one durable consumer of one scenario. It fetches a batch, derives
// each input's tree through its layers in memory with the layer transforms, publishes every
// output without waiting, goes on fetching while at most Options.MaxInflight messages await
// their acks, and commits each input only once all its outputs are acknowledged
// (broker.Consumer.Commit). An input's tree is published all or none: when any layer of it
// fails permanently the input itself becomes the dead letter. Permanent failures become dead letters
// (cut to fit the broker's largest message); transient ones (broker.Transient: unavailable,
// timeouts) are retried with capped, jittered back-off for as long as they last. An input
// whose dead letter the broker refuses too is left uncommitted, for the broker to deliver
// again (on NATS after the ack wait; on Kafka when its partition is next assigned). With an
// id set (Options.IDs, the view) a stage publishes nothing that is stored already: not the
// outputs of a redelivery, however long after a crash, nor anything for an input sent again.
package consumers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v5"
	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/demand"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/metrics"
)

// Options tune a router. Zero values take the documented defaults.
type Options struct {
	Batch        int           // events per batch; default 256
	RetryMin     time.Duration // first back-off on a transient error; default 100ms
	RetryMax     time.Duration // back-off cap; default 5s
	DrainTimeout time.Duration // how long shutdown waits for a batch's acks; default 10s
	// MaxInflight bounds each stage's published messages awaiting their acknowledgement,
	// and so its uncommitted inputs (a batch counts as its outputs or its inputs, whichever
	// are more, at most MaxInflight); default 4096. Keep it below the broker's cap on a
	// consumer's unacknowledged deliveries (natsjs.Options.MaxAckPending, 8192).
	MaxInflight int
	// Stages is how Serve groups the layers it is given into stages: PerLayer (the zero
	// value) runs each as a one-layer stage, Chained each contiguous run as one stage.
	Stages Stages
	// TakeOver lets a stage that overlaps consumers of other stages take their inputs over
	// where they stand (broker.Broker.TakeOver) instead of refusing: once their processes
	// have stopped with nothing left uncommitted, as when switching from per-layer to
	// chained.
	TakeOver     bool
	PendingEvery time.Duration // how often consumer lag is sampled; default 5s
	Metrics      *metrics.Metrics
	// Followers run beside the layers of every served scenario, each with a context that ends
	// when the scenario stops being served (run's trace indexer and demand gauges). One that
	// stops before then is restarted: at once when it returned nil, FollowerRestart later
	// (default 1s) when it failed, with a warning naming it by its key.
	Followers       map[string]Follower
	FollowerRestart time.Duration
	// IDs, when set, is the id set (the view) each stage asks, once per fetched batch, before
	// it publishes: a possible redelivery (the broker counts it delivered before, or, on a
	// broker that counts no deliveries, it was read before the stage's first commit) publishes
	// only the outputs not stored yet, asked as of its fetch (the view waits to be current);
	// an input whose own id is held at another position (a producer's retry, stored again
	// after the de-dup window) is committed without publishing anything. The broker's de-dup
	// window stays the fast path; when IDs cannot answer, the stage publishes as without it.
	IDs IDSet
	// EveryInput asks IDs about the own id of every input, not only of possible redeliveries:
	// for an IDSet in the same process, where a lookup costs about two microseconds.
	EveryInput bool
	// Tap, when set, is handed what each stage read, as it is fetched, and what it
	// published, once acknowledged, each message with the sequence the broker stored it at,
	// where the broker tells (broker.Sequencer): the view follows the log from these instead
	// of reading it a second time. Stages call it concurrently; it must not block.
	Tap func(scenario string, msgs []broker.Message, seqs []uint64)
}

// IDSet says where the ids of a scenario are stored (view.View.HeldAt).
type IDSet interface {
	// HeldAt returns, for each of ids, the broker position holding it in scenario ("" for
	// none); with asOf not zero, as of everything the broker held then.
	HeldAt(ctx context.Context, scenario string, ids []string, asOf time.Time) ([]string, error)
}

// Follower follows one scenario until ctx ends.
type Follower func(ctx context.Context, scenario string) error

func (o *Options) defaults() {
	if o.Batch <= 0 {
		o.Batch = 256
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 100 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 5 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 10 * time.Second
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = 4096
	}
	if o.PendingEvery <= 0 {
		o.PendingEvery = 5 * time.Second
	}
	if o.FollowerRestart <= 0 {
		o.FollowerRestart = time.Second
	}
}

// Router runs layers against one broker.
type Router struct {
	b    broker.Broker
	log  zerolog.Logger
	opts Options

	mu        sync.Mutex
	consuming map[string]int // scenario -> layers with an open consumer
	serving   map[string]int // scenario -> layers asked to run
}

// New returns a router; log is the parent of every layer's logger.
func New(b broker.Broker, log zerolog.Logger, o Options) *Router {
	o.defaults()
	return &Router{b: b, log: log, opts: o, consuming: map[string]int{}, serving: map[string]int{}}
}

// Kind classifies a permanent failure for the dead-letter headers.
type Kind string

// The dead-letter kinds of the contract.
const (
	KindDecode    Kind = "decode"
	KindValidate  Kind = "validate"
	KindTransform Kind = "transform"
	// KindPublish: the input's outputs were refused by the broker for good (too large, say).
	KindPublish Kind = "publish"
)

// Kinds lists every dead-letter kind, for series that start at zero.
var Kinds = []Kind{KindDecode, KindValidate, KindTransform, KindPublish}

// Classify returns the dead-letter kind of a permanent error.
func Classify(err error) Kind {
	var de *event.DecodeError
	switch {
	case errors.Is(err, demand.ErrTransform):
		return KindTransform
	case errors.As(err, &de):
		return KindDecode
	case errors.Is(err, event.ErrInvalid):
		return KindValidate
	}
	return KindTransform
}

// errRemoved ends the layers of a scenario whose registration was deleted while they ran.
var errRemoved = errors.New("scenario removed")

// removed reports whether scenario is no longer registered: its layers stop quietly rather
// than retry a stream that `cascade scenario rm` deleted.
func (r *Router) removed(ctx context.Context, scenario string) bool {
	_, err := r.b.Registry().Get(ctx, scenario)
	return errors.Is(err, broker.ErrNotFound)
}

// Layer runs the one-layer stage of layer (Stage).
func (r *Router) Layer(ctx context.Context, scenario string, layer event.Layer, coef *coefficients.Loaded) error {
	return r.Stage(ctx, scenario, event.LayerStage(layer), coef)
}

// ErrOverlap is matched by the error of a stage that refuses to start because the broker
// holds the consumer of another stage sharing one of its layers.
var ErrOverlap = errors.New("stages overlap")

// Stage runs stage st's consumer for one scenario until ctx ends, then settles what it has
// in flight (publishes, acks, commits, for up to DrainTimeout) and returns nil. It returns an
// error matching ErrOverlap, before opening its consumer, when the broker holds the consumer
// of another stage sharing a layer with st; other errors only when the consumer cannot be
// opened or is lost.
//
// It fetches, derives every input's tree through the stage's layers and publishes the
// outputs without waiting for their acknowledgements, up to MaxInflight unacknowledged
// messages; a second goroutine waits for them in fetch order and commits each input once
// all its outputs (or its dead letter) are acknowledged, in one Commit for what is ready.
func (r *Router) Stage(ctx context.Context, scenario string, st event.Stage, coef *coefficients.Loaded) error {
	log := r.log.With().Str("stage", st.String()).Str("scenario", scenario).Logger()
	if err := r.tiles(ctx, scenario, st); err != nil {
		return err
	}
	var cons broker.Consumer
	err := r.retry(ctx, log, "open consumer", func(ctx context.Context) (err error) {
		if cons, err = r.b.StageConsumer(ctx, scenario, st); err != nil && r.removed(ctx, scenario) {
			return backoff.Permanent(errRemoved)
		}
		return err
	})
	if err != nil {
		return nil // ctx ended before the broker answered, or the scenario is gone
	}
	defer cons.Close()
	r.count(r.consuming, scenario, 1)
	defer r.count(r.consuming, scenario, -1)
	kinds := make([]string, len(Kinds))
	for i, k := range Kinds {
		kinds[i] = string(k)
	}
	label := st.String()
	r.opts.Metrics.Start(scenario, label, kinds...)
	log.Info().Str("coefversion", coef.CoefVersion).Strs("filter", st.FilterSubjects(scenario)).Msg("stage consuming")
	go r.samplePending(ctx, scenario, st)

	work, cancel := drainContext(ctx, r.opts.DrainTimeout)
	defer cancel()
	win := semaphore.NewWeighted(int64(r.opts.MaxInflight))
	flights := make(chan *flight, r.opts.MaxInflight)
	window, ackWait := r.windows(ctx, scenario)
	var committed atomic.Bool // the stage's first commit since it started is done
	var wg sync.WaitGroup
	wg.Go(func() { r.land(work, log, cons, scenario, st, flights, win, &committed) })
	defer wg.Wait()
	defer close(flights)
	for {
		batch, err := cons.Fetch(ctx, r.opts.Batch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("stage %s of %s: fetch: %w", st, scenario, err)
		}
		f := r.derive(work, log, scenario, st, coef, batch)
		r.tapInputs(scenario, f)
		r.dedup(work, log, scenario, st, f, !committed.Load(), window, ackWait)
		f.weight = int64(min(max(len(f.out), len(batch)), r.opts.MaxInflight))
		if err := win.Acquire(ctx, f.weight); err != nil {
			return nil // shutdown: the batch is left uncommitted, for redelivery
		}
		f.pub = r.b.PublishAsync(work, f.out)
		flights <- f
	}
}

// tapInputs hands a fetched batch to Options.Tap, each input with what it decoded to, on a
// broker whose deliveries' Seq is their place in the scenario's log; before anything the
// batch derived is published.
func (r *Router) tapInputs(scenario string, f *flight) {
	if _, ok := r.b.(broker.Sequencer); !ok || r.opts.Tap == nil || len(f.units) == 0 {
		return
	}
	msgs, seqs := make([]broker.Message, len(f.units)), make([]uint64, len(f.units))
	for i, u := range f.units {
		msgs[i], seqs[i] = *u.d.Message(), u.d.Seq()
		msgs[i].Event, msgs[i].Payload = u.ev, u.p
	}
	r.opts.Tap(scenario, msgs, seqs)
}

// tiles refuses to start st beside the consumer of a stage that shares a layer with it: the
// broker's consumers of scenario are listed (broker.Broker.Consumers), so one left by an
// earlier run in another mode counts as much as a running one. A stage whose own consumer
// exists runs on (it was there first, or a take-over is retiring it).
func (r *Router) tiles(ctx context.Context, scenario string, st event.Stage) error {
	var names []string
	err := r.retry(ctx, r.log, "list consumers", func(ctx context.Context) (err error) {
		names, err = r.b.Consumers(ctx, scenario)
		return err
	})
	if err != nil {
		return nil // ctx ended; Stage returns at once too
	}
	if slices.Contains(names, st.ConsumerName(scenario)) {
		return nil // st was there first, or is being taken over: it may run to the end
	}
	var clash []string
	for _, n := range names {
		if o, ok := event.StageOfConsumer(scenario, n); ok && o != st && o.Overlaps(st) {
			clash = append(clash, n)
		}
	}
	top := func(n string) int {
		o, _ := event.StageOfConsumer(scenario, n)
		return slices.Index(event.ConsumerLayers, o.First)
	}
	slices.SortStableFunc(clash, func(a, b string) int { return top(a) - top(b) }) // top to bottom, for TakeOver
	if len(clash) == 0 {
		return nil
	}
	if r.opts.TakeOver {
		return r.takeOver(ctx, scenario, st, clash)
	}
	return fmt.Errorf("%w: stage %s of scenario %s shares layers with the consumer(s) %s on the broker; "+
		"run the stages they are for (`--stages per-layer` for one-layer ones), or start this stage with "+
		"--take-over while they run: it starts where the broker stands, waits until they have committed "+
		"everything up to there, and removes them (then stop their processes)",
		ErrOverlap, st, scenario, strings.Join(clash, ", "))
}

// takeOver starts broker.Broker.TakeOver of clash by st and returns once st's consumer
// exists, positioned where the broker stood, for st to consume beside the consumers it
// replaces until the take-over has retired them.
func (r *Router) takeOver(ctx context.Context, scenario string, st event.Stage, clash []string) error {
	log := r.log.With().Str("stage", st.String()).Str("scenario", scenario).Strs("replacing", clash).Logger()
	log.Info().Msg("taking over: starting where the broker stands; the consumers replaced are removed once they have committed everything up to there (on Kafka, once their processes have stopped)")
	failed := make(chan error, 1)
	go func() {
		err := r.b.TakeOver(ctx, scenario, st, clash)
		switch {
		case err == nil:
			log.Info().Msg("take-over done: the consumers replaced are removed")
		case ctx.Err() == nil:
			log.Error().Err(err).Msg("take-over failed")
		}
		failed <- err
	}()
	err := broker.Until(ctx, func() (bool, error) {
		select {
		case err := <-failed:
			failed <- err
			if err != nil {
				return false, err
			}
		default:
		}
		names, err := r.b.Consumers(ctx, scenario)
		return slices.Contains(names, st.ConsumerName(scenario)), err
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%w: stage %s of scenario %s cannot take over %s: %w", ErrOverlap, st, scenario, strings.Join(clash, ", "), err)
	}
	return nil
}

// flight is one fetched batch on its way: every input's outputs (or dead letter), published
// together as pub, weight of the in-flight window held until it has landed.
type flight struct {
	start  time.Time
	units  []unit
	out    []broker.Message
	pub    broker.Publication
	weight int64
}

// unit is one input of a batch with what it produced: its derived messages, or its dead
// letter when it failed permanently.
type unit struct {
	d      broker.Delivery
	ev     *event.Event  // d decoded, when it could be
	p      event.Payload // with ev
	msgs   []broker.Message
	kind   Kind        // set when msgs is the input's dead letter
	failed event.Layer // the layer that failed, with kind
	entry  event.Layer // the layer the input entered at (the stage's first when unknown)
	skip   bool        // neither committed nor counted: left for redelivery
	dupIn  bool        // the input's own id is held at another position: nothing published
	dupOut int         // outputs of a redelivery left out, stored already
}

// derive turns a batch into its flight: each input's tree of outputs, or its dead letter.
// Once ctx has ended (the drain timeout at shutdown) the input that saw it and those after
// it are skipped, left for redelivery: the end of ctx is no failure of theirs.
func (r *Router) derive(ctx context.Context, log zerolog.Logger, scenario string, st event.Stage, coef *coefficients.Loaded, batch []broker.Delivery) *flight {
	limit := r.maxPayload()
	f := &flight{start: time.Now(), units: make([]unit, len(batch))}
	for i, d := range batch {
		u := &f.units[i]
		u.d = d
		msgs, at, err := r.handle(ctx, scenario, st, coef, u)
		u.entry = entry(d.Message().Subject, st)
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			for j := i; j < len(batch); j++ {
				f.units[j].d, f.units[j].skip = batch[j], true
			}
			log.Debug().Int("inputs", len(batch)-i).Msg("shutdown: inputs left underived, for redelivery")
			break
		}
		if err != nil {
			kind := Classify(err)
			log.Warn().Err(err).Str("kind", string(kind)).Str("layer", string(at.layer)).Str("event_id", d.Message().ID).Str("output_id", at.id).Uint64("seq", d.Seq()).Msg("dead letter")
			msgs = []broker.Message{deadLetter(scenario, at, d, kind, err, limit)}
			u.kind, u.failed = kind, at.layer
		}
		u.msgs = msgs
		f.out = append(f.out, msgs...)
	}
	return f
}

// dedup asks the id set (Options.IDs), in one question for the batch, about the own ids of
// its inputs (all of them with EveryInput, else the possible redeliveries) and the outputs
// of its possible redeliveries, as of when what their earlier reads published was stored:
// an input whose own id is held at another position publishes nothing, a possible
// redelivery only its outputs not yet held. early says the stage has not committed yet
// since it started: on a broker that counts no deliveries and cannot tell a possible
// redelivery (broker.Redelivery) every input read before that may have been read before.
func (r *Router) dedup(ctx context.Context, log zerolog.Logger, scenario string, st event.Stage, f *flight, early bool, window, ackWait time.Duration) {
	if r.opts.IDs == nil {
		return
	}
	feat := r.b.Features()
	var ids []string
	again := make([]bool, len(f.units))
	asOf := time.Time{}
	for i, u := range f.units {
		if u.kind != "" {
			continue
		}
		// What was stored within half a de-dup window before the fetch, the broker
		// de-duplicates when it comes again: the view need be current only before that, and
		// only up to when an earlier read's outputs were stored where the broker knows that.
		by := f.start.Add(-window / 2)
		if rd, ok := u.d.(broker.Redelivery); ok {
			var at time.Time
			if again[i], at = rd.PossiblyRedelivered(); again[i] && at.Before(by) {
				by = at
			}
		} else {
			again[i] = u.d.Deliveries() > 1 || (early && !feat.CountsDeliveries)
		}
		if again[i] {
			if by.After(asOf) {
				asOf = by
			}
			for _, m := range u.msgs {
				ids = append(ids, m.ID)
			}
		}
		if again[i] || r.opts.EveryInput {
			ids = append(ids, u.d.Message().ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	// Each question waits at most half the ack wait. A view that answers but is not current
	// yet (it lags behind a burst, or is catching up after a restart) is asked again until it
	// is: publishing without its answer could store outputs a second time. Only where no view
	// answers at all (no responders, closed) does the broker's de-dup window stay the guard.
	var pos []string
	for attempt := 0; ; attempt++ {
		hctx, cancel := context.WithTimeout(ctx, ackWait/2)
		var err error
		pos, err = r.opts.IDs.HeldAt(hctx, scenario, ids, asOf)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, broker.ErrNoResponders) || errors.Is(err, broker.ErrClosed) {
			log.Warn().Err(err).Int("ids", len(ids)).Msg("no id set answers; publishing this batch with the broker's de-dup window as the only guard against duplicates")
			return
		}
		log.Warn().Err(err).Int("ids", len(ids)).Int("attempt", attempt+1).Msg("id set not current yet; asking again before publishing possible redeliveries")
	}
	f.out = f.out[:0]
	k := 0
	for i := range f.units {
		u := &f.units[i]
		if u.kind != "" {
			f.out = append(f.out, u.msgs...)
			continue
		}
		var outs []string
		if again[i] {
			outs, k = pos[k:k+len(u.msgs)], k+len(u.msgs)
		}
		if again[i] || r.opts.EveryInput {
			if own := pos[k]; own != "" && own != broker.PositionOf(u.d) {
				u.dupIn = true
				log.Debug().Str("event_id", u.d.Message().ID).Str("held_at", own).Uint64("seq", u.d.Seq()).Msg("input already held at another position: a duplicate; nothing published")
				u.msgs = nil
			}
			k++
		}
		if u.msgs != nil && outs != nil {
			kept := u.msgs[:0:0]
			for j, m := range u.msgs {
				if outs[j] == "" {
					kept = append(kept, m)
				}
			}
			u.dupOut, u.msgs = len(u.msgs)-len(kept), kept
		}
		f.out = append(f.out, u.msgs...)
	}
}

// windows are scenario's de-dup window and ack wait as its owner set them: the window the
// broker's default when unset, 0 when the broker has none or the binding cannot be read.
func (r *Router) windows(ctx context.Context, scenario string) (window, ackWait time.Duration) {
	window, ackWait = r.b.Features().DedupWindow, broker.DefaultAckWait
	if r.opts.IDs == nil {
		return 0, ackWait
	}
	b, err := r.b.Registry().Get(ctx, scenario)
	if err != nil {
		return 0, ackWait
	}
	if c := b.Config.AckWait; c > 0 {
		ackWait = c
	}
	if c := b.Config.DedupWindow; c > 0 && window > 0 {
		window = c
	}
	return window, ackWait
}

// land waits for each flight in turn, settles what failed, commits each input once its
// outputs are acknowledged (what is ready at once in one Commit) and frees the window.
func (r *Router) land(ctx context.Context, log zerolog.Logger, cons broker.Consumer, scenario string, st event.Stage, flights <-chan *flight, win *semaphore.Weighted, committed *atomic.Bool) {
	label := st.String()
	var ready []broker.Delivery
	commit := func() {
		if len(ready) == 0 {
			return
		}
		if err := cons.Commit(ctx, ready); err != nil {
			log.Warn().Err(err).Int("events", len(ready)).Msg("commit failed; the inputs will be redelivered and their outputs de-duplicated")
		} else {
			committed.Store(true)
		}
		ready = ready[:0]
	}
	for f := range flights {
		select {
		case <-f.pub.Done():
		default:
			commit() // what is acknowledged is committed before waiting for more
		}
		err := broker.Wait(ctx, f.pub)
		if err != nil {
			err = r.rescue(ctx, log, scenario, f, err)
		}
		win.Release(f.weight)
		if err != nil {
			log.Warn().Err(err).Int("events", len(f.units)).Msg("shutdown before outputs were acknowledged; inputs left for redelivery")
			continue
		}
		if sq, ok := f.pub.(broker.Sequenced); ok && r.opts.Tap != nil && f.pub.Err() == nil && len(f.out) > 0 {
			r.opts.Tap(scenario, f.out, sq.Seqs()) // not after a rescue: what it published again the view reads
		}
		derived := 0
		for _, u := range f.units {
			switch {
			case u.skip:
				continue
			case u.kind != "":
				r.opts.Metrics.DeadLetter(scenario, label, string(u.kind))
			default:
				derived += len(u.msgs)
				if u.dupIn {
					r.opts.Metrics.Duplicate(scenario, label, "input", 1)
				}
				r.opts.Metrics.Duplicate(scenario, label, "output", u.dupOut)
			}
			ready = append(ready, u.d)
		}
		r.opts.Metrics.Batch(scenario, label, len(f.units), derived, time.Since(f.start))
		if len(flights) == 0 || len(ready) >= r.opts.Batch {
			commit() // nothing more in hand, or enough for one commit
		}
	}
	commit()
}

// rescue handles a flight whose publication failed with err: a transient failure is
// retried with back-off, and when the batch fails permanently it is published again input
// by input, an input whose own outputs cannot be published going to the dead-letter subject,
// so one poison input never holds up the rest. It returns an error only when ctx ends first
// or the connection was closed.
func (r *Router) rescue(ctx context.Context, log zerolog.Logger, scenario string, f *flight, err error) error {
	if broker.Transient(err) && ctx.Err() == nil {
		err = r.publish(ctx, log, f.out)
	}
	if err == nil || ctx.Err() != nil || errors.Is(err, broker.ErrClosed) {
		return err
	}
	if len(f.units) > 1 {
		log.Warn().Err(err).Int("events", len(f.units)).Msg("batch publish failed permanently; publishing input by input")
	}
	limit := r.maxPayload()
	for i := range f.units {
		uerr := err
		if len(f.units) > 1 {
			uerr = r.publish(ctx, log, f.units[i].msgs)
		}
		if err := r.settle(ctx, log, scenario, &f.units[i], uerr, limit); err != nil {
			return err
		}
	}
	return nil
}

func (r *Router) count(m map[string]int, scenario string, d int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m[scenario] += d
	if m[scenario] == 0 {
		delete(m, scenario)
	}
}

// Ready reports an error unless every layer asked to run has an open consumer.
func (r *Router) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.serving) == 0 {
		return errors.New("no scenario served yet")
	}
	for s, want := range r.serving {
		if got := r.consuming[s]; got < want {
			return fmt.Errorf("scenario %s: %d of %d layers consuming", s, got, want)
		}
	}
	return nil
}

func (r *Router) samplePending(ctx context.Context, scenario string, st event.Stage) {
	if r.opts.Metrics == nil {
		return
	}
	t := time.NewTicker(r.opts.PendingEvery)
	defer t.Stop()
	for {
		if n, err := r.b.StageLag(ctx, scenario, st); err == nil {
			r.opts.Metrics.SetPending(scenario, st.String(), n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// settle decides an input whose messages were published with result err: when that failed
// permanently, the input's dead letter is published instead, and when even that fails the
// input is left uncommitted, for the broker to deliver again later (on NATS after the ack
// wait; on Kafka when its partition is next assigned, the commits of the inputs behind it in
// its partition waiting until then). It returns an error only when ctx ends first or the
// connection was closed.
func (r *Router) settle(ctx context.Context, log zerolog.Logger, scenario string, u *unit, err error, limit int) error {
	if err == nil || ctx.Err() != nil || errors.Is(err, broker.ErrClosed) {
		return err
	}
	m := u.d.Message()
	if u.kind == "" {
		log.Warn().Err(err).Str("kind", string(KindPublish)).Str("event_id", m.ID).Uint64("seq", u.d.Seq()).Msg("dead letter")
		u.kind, u.failed = KindPublish, u.entry
		u.msgs = []broker.Message{deadLetter(scenario, point{layer: u.entry, id: m.ID}, u.d, KindPublish, err, limit)}
		if err = r.publish(ctx, log, u.msgs); err == nil || ctx.Err() != nil || errors.Is(err, broker.ErrClosed) {
			return err
		}
	}
	log.Error().Err(err).Str("event_id", m.ID).Uint64("seq", u.d.Seq()).Msg("dead letter cannot be published; the input is left uncommitted for redelivery")
	u.skip = true
	return nil
}

// maxPayload is the largest message the broker takes, headers included.
func (r *Router) maxPayload() int {
	if l, ok := r.b.(broker.PayloadLimiter); ok {
		if n := l.MaxPayload(); n > 0 {
			return n
		}
	}
	return broker.DefaultMaxPayload
}

// drainContext is ctx without its cancellation, cancelled instead timeout after ctx ends.
func drainContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(timeout, cancel)
		context.AfterFunc(work, func() { t.Stop() })
	})
	return work, func() { stop(); cancel() }
}

// publish publishes msgs, retrying transient failures (broker.Transient); it returns a
// permanent failure at once, or ctx's error when ctx ends first.
func (r *Router) publish(ctx context.Context, log zerolog.Logger, msgs []broker.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	return r.retry(ctx, log, "publish", func(ctx context.Context) error {
		err := r.b.Publish(ctx, msgs)
		if err != nil && ctx.Err() == nil && !broker.Transient(err) {
			return backoff.Permanent(err)
		}
		return err
	})
}

// retry runs op until it succeeds or fails permanently (backoff.Permanent), backing off with
// jitter between other failures, from RetryMin up to RetryMax; it gives up when ctx ends.
func (r *Router) retry(ctx context.Context, log zerolog.Logger, what string, op func(context.Context) error) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = r.opts.RetryMin, r.opts.RetryMax
	attempt := 0
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempt++
		return struct{}{}, op(ctx)
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, wait time.Duration) {
		log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", wait).Msg(what + " failed; retrying")
	}))
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// point is where a tree failed: the layer whose transform failed and the id of the event it
// was deriving from (the input's own for a failure at the layer it entered).
type point struct {
	layer event.Layer
	id    string
}

// entry is the layer of st an input on subject entered at: the subject's, or st's first.
func entry(subject string, st event.Stage) event.Layer {
	if s, err := event.ParseSubject(subject); err == nil && st.Contains(s.Layer) {
		return s.Layer
	}
	return st.First
}

// handle turns one delivery into the messages of its whole tree through the stage: each
// event the input derives at the layer it entered, each event those derive at the next layer
// while it is in the stage, and so on, all in memory with the pure transforms. An error is
// permanent; at says where it happened, and none of the tree is returned.
func (r *Router) handle(ctx context.Context, scenario string, st event.Stage, coef *coefficients.Loaded, u *unit) (msgs []broker.Message, at point, err error) {
	m := u.d.Message()
	at = point{layer: entry(m.Subject, st), id: m.ID}
	defer func() {
		if p := recover(); p != nil {
			msgs, err = nil, fmt.Errorf("%w: panic: %v", demand.ErrTransform, p)
		}
	}()
	ev, p, err := event.Decode(m.Data)
	if err != nil {
		return nil, at, err
	}
	u.ev, u.p = ev, p
	if err := checkRoute(m.Subject, scenario, st, ev); err != nil {
		return nil, at, err
	}
	ev.Scenario = scenario
	msgs, err = r.tree(ctx, scenario, st, coef, ev, p, msgs, &at)
	return msgs, at, err
}

// tree appends to msgs the messages of what ev (with payload p) derives at its layer and,
// while the layer below is in st, what those derive in turn; on an error *at is the layer
// and event that failed.
func (r *Router) tree(ctx context.Context, scenario string, st event.Stage, coef *coefficients.Loaded, ev *event.Event, p event.Payload, msgs []broker.Message, at *point) ([]broker.Message, error) {
	layer := event.InputLayer(ev.Type)
	*at = point{layer: layer, id: ev.ID}
	ds, err := demand.DeriveTyped(ctx, coef, ev, p)
	if err != nil {
		return nil, err
	}
	below := layer.Emits()
	for _, o := range ds {
		data, err := o.Event.Marshal()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", demand.ErrTransform, err)
		}
		// The message keeps the event for the view in this process (Options.Tap) until it
		// has landed; its payload's JSON is in data now, and o.Payload holds it decoded.
		o.Event.Data = nil
		msgs = append(msgs, broker.Message{Subject: event.DemandSubject(scenario, below, o.Event.Subject), ID: o.Event.ID, Key: o.Event.CorrelationID, Data: data, Event: o.Event, Payload: o.Payload, Derived: true})
		if st.Contains(below) {
			if msgs, err = r.tree(ctx, scenario, st, coef, o.Event, o.Payload, msgs, at); err != nil {
				return nil, err
			}
		}
	}
	return msgs, nil
}

// checkRoute holds an event to the subject it arrived on: a signal or demand subject of one
// of the stage's layers (demand only on its first), the layer that accepts the event's type,
// its region and scenario.
func checkRoute(subject, scenario string, st event.Stage, ev *event.Event) error {
	s, err := event.ParseSubject(subject)
	if err != nil {
		return err
	}
	if s.Kind != event.KindSignal && s.Kind != event.KindDemand {
		return &event.ValidationError{Field: "subject", Rule: fmt.Sprintf("%s is neither a signal nor a demand subject", subject)}
	}
	switch in := event.InputLayer(ev.Type); {
	case !st.Contains(in):
		where := "layer " + st.String()
		if st.First != st.Last {
			where = "stage " + st.String()
		}
		return &event.ValidationError{Field: "type", Rule: fmt.Sprintf("%s is not accepted by %s", ev.Type, where)}
	case in != s.Layer:
		return &event.ValidationError{Field: "type", Rule: fmt.Sprintf("%s is not accepted by layer %s", ev.Type, s.Layer)}
	}
	if s.Region != ev.Subject {
		return &event.ValidationError{Field: "subject", Rule: fmt.Sprintf("subject region %q differs from event region %q", s.Region, ev.Subject)}
	}
	if ev.Scenario != "" && ev.Scenario != scenario {
		return &event.ValidationError{Field: "scenario", Rule: fmt.Sprintf("event says scenario %q but arrived on %q", ev.Scenario, scenario)}
	}
	return nil
}

// maxErrorHeader bounds the Cascade-Error header of a dead letter.
const maxErrorHeader = 1 << 10

// deadLetter is the dead letter of d, which failed at: on the failing layer's dead-letter
// subject, with that layer and the failing event's id (HeaderFailedID) in its headers. Its
// body is the input's bytes, cut to fit limit (the broker's largest message, headers
// included) with HeaderTruncated giving the original size.
func deadLetter(scenario string, at point, d broker.Delivery, kind Kind, cause error, limit int) broker.Message {
	m := d.Message()
	layer := at.layer
	msg := broker.Message{
		Subject: event.DLQSubject(scenario, layer),
		ID:      "dlq:" + string(layer) + ":" + strconv.FormatUint(d.Seq(), 10),
		Key:     m.Key,
		Data:    m.Data,
		Header: map[string]string{
			broker.HeaderError:           cut(cause.Error(), maxErrorHeader),
			broker.HeaderErrorKind:       string(kind),
			broker.HeaderLayer:           string(layer),
			broker.HeaderOriginalSubject: m.Subject,
			broker.HeaderOriginalMsgID:   m.ID,
			broker.HeaderDeliveries:      strconv.Itoa(d.Deliveries()),
			broker.HeaderFailedID:        at.id,
		},
	}
	msg.Header[broker.HeaderTruncated] = strconv.Itoa(len(m.Data))
	room := limit - headerBytes(msg)
	if len(m.Data) <= room {
		delete(msg.Header, broker.HeaderTruncated)
		return msg
	}
	msg.Data = m.Data[:max(room, 0)]
	return msg
}

// headerBytes bounds what msg's id, key and headers take of a message on either broker, with
// room for the framing.
func headerBytes(msg broker.Message) int {
	const framing = 1 << 10
	n := framing + len("Nats-Msg-Id") + len(msg.ID) + len(msg.Key) + len(msg.Subject)
	for k, v := range msg.Header {
		n += len(k) + len(v) + 4
	}
	return n
}

// cut shortens s to at most n bytes, on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
