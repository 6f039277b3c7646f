// Package consumers runs the layer consumers: for each layer of each scenario it fetches a batch, derives each event's demand with
// the layer transform, publishes every output and waits for the broker's acks, and only then
// commits the batch's inputs (broker.Consumer.Commit). Permanent failures become dead letters
// (cut to fit the broker's largest message); transient ones (broker.Transient: unavailable,
// timeouts) are retried with capped, jittered back-off for as long as they last. An input
// whose dead letter the broker refuses too is left uncommitted, for the broker to deliver
// again (on NATS after the ack wait; on Kafka when its partition is next assigned).
package consumers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v5"
	"github.com/rs/zerolog"

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
	PendingEvery time.Duration // how often consumer lag is sampled; default 5s
	Metrics      *metrics.Metrics
	// Followers run beside the layers of every served scenario, each with a context that ends
	// when the scenario stops being served (run's trace indexer and demand gauges). One that
	// stops before then is restarted: at once when it returned nil, FollowerRestart later
	// (default 1s) when it failed, with a warning naming it by its key.
	Followers       map[string]Follower
	FollowerRestart time.Duration
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

// Layer runs one layer's consumer for one scenario until ctx ends, then finishes the batch in
// hand (publishes, acks) and returns nil. Other errors are returned only when the consumer
// cannot be opened or is lost.
func (r *Router) Layer(ctx context.Context, scenario string, layer event.Layer, coef *coefficients.Loaded) error {
	log := r.log.With().Str("layer", string(layer)).Str("scenario", scenario).Logger()
	var cons broker.Consumer
	err := r.retry(ctx, log, "open consumer", func(ctx context.Context) (err error) {
		if cons, err = r.b.Consumer(ctx, scenario, layer); err != nil && r.removed(ctx, scenario) {
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
	r.opts.Metrics.Start(scenario, string(layer), kinds...)
	log.Info().Str("coefversion", coef.CoefVersion).Msg("layer consuming")
	go r.samplePending(ctx, scenario, layer)
	for {
		batch, err := cons.Fetch(ctx, r.opts.Batch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("layer %s of %s: fetch: %w", layer, scenario, err)
		}
		r.process(ctx, log, cons, scenario, layer, coef, batch)
	}
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

func (r *Router) samplePending(ctx context.Context, scenario string, layer event.Layer) {
	if r.opts.Metrics == nil {
		return
	}
	t := time.NewTicker(r.opts.PendingEvery)
	defer t.Stop()
	for {
		if n, err := r.b.Lag(ctx, scenario, layer); err == nil {
			r.opts.Metrics.SetPending(scenario, string(layer), n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// unit is one input of a batch with what it produced: its derived messages, or its dead
// letter when it failed permanently.
type unit struct {
	d    broker.Delivery
	msgs []broker.Message
	kind Kind // set when msgs is the input's dead letter
	skip bool // neither committed nor counted: left for redelivery
}

// process derives, publishes and commits one batch. It survives ctx's end for up to
// DrainTimeout so that a shutdown does not leave done work uncommitted. When the batch's
// publish fails permanently it is published again input by input, and an input whose own
// outputs cannot be published goes to the dead-letter subject, so one poison input never
// holds up the rest.
func (r *Router) process(ctx context.Context, log zerolog.Logger, cons broker.Consumer, scenario string, layer event.Layer, coef *coefficients.Loaded, batch []broker.Delivery) {
	start := time.Now()
	work, cancel := drainContext(ctx, r.opts.DrainTimeout)
	defer cancel()
	limit := r.maxPayload()
	units := make([]unit, len(batch))
	var out []broker.Message
	for i, d := range batch {
		units[i].d = d
		msgs, err := r.handle(work, scenario, layer, coef, d)
		if err != nil {
			kind := Classify(err)
			log.Warn().Err(err).Str("kind", string(kind)).Str("event_id", d.Message().ID).Uint64("seq", d.Seq()).Msg("dead letter")
			msgs = []broker.Message{deadLetter(scenario, layer, d, kind, err, limit)}
			units[i].kind = kind
		}
		units[i].msgs = msgs
		out = append(out, msgs...)
	}
	err := r.publish(work, log, out)
	if err != nil && work.Err() == nil && !errors.Is(err, broker.ErrClosed) {
		if len(units) > 1 {
			log.Warn().Err(err).Int("events", len(batch)).Msg("batch publish failed permanently; publishing input by input")
		}
		for i := range units {
			uerr := err
			if len(units) > 1 {
				uerr = r.publish(work, log, units[i].msgs)
			}
			if err = r.settle(work, log, scenario, layer, &units[i], uerr, limit); err != nil {
				break
			}
		}
	}
	if err != nil {
		log.Warn().Err(err).Int("events", len(batch)).Msg("shutdown before outputs were acknowledged; inputs left for redelivery")
		return
	}
	derived := 0
	done := make([]broker.Delivery, 0, len(units))
	for _, u := range units {
		switch {
		case u.skip:
			continue
		case u.kind != "":
			r.opts.Metrics.DeadLetter(scenario, string(layer), string(u.kind))
		default:
			derived += len(u.msgs)
		}
		done = append(done, u.d)
	}
	if err := cons.Commit(work, done); err != nil {
		log.Warn().Err(err).Int("events", len(done)).Msg("commit failed; the inputs will be redelivered and their outputs de-duplicated")
	}
	r.opts.Metrics.Batch(scenario, string(layer), len(batch), derived, time.Since(start))
}

// settle decides an input whose messages were published with result err: when that failed
// permanently, the input's dead letter is published instead, and when even that fails the
// input is left uncommitted, for the broker to deliver again later (on NATS after the ack
// wait; on Kafka when its partition is next assigned, the commits of the inputs behind it in
// its partition waiting until then). It returns an error only when ctx ends first or the
// connection was closed.
func (r *Router) settle(ctx context.Context, log zerolog.Logger, scenario string, layer event.Layer, u *unit, err error, limit int) error {
	if err == nil || ctx.Err() != nil || errors.Is(err, broker.ErrClosed) {
		return err
	}
	m := u.d.Message()
	if u.kind == "" {
		log.Warn().Err(err).Str("kind", string(KindPublish)).Str("event_id", m.ID).Uint64("seq", u.d.Seq()).Msg("dead letter")
		u.kind, u.msgs = KindPublish, []broker.Message{deadLetter(scenario, layer, u.d, KindPublish, err, limit)}
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

// handle turns one delivery into the messages of its derived events, or a permanent error.
func (r *Router) handle(ctx context.Context, scenario string, layer event.Layer, coef *coefficients.Loaded, d broker.Delivery) (msgs []broker.Message, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: panic: %v", demand.ErrTransform, p)
		}
	}()
	m := d.Message()
	ev, p, err := event.Decode(m.Data)
	if err != nil {
		return nil, err
	}
	if err := checkRoute(m.Subject, scenario, layer, ev); err != nil {
		return nil, err
	}
	ev.Scenario = scenario
	evs, err := demand.Derive(ctx, coef, ev, p)
	if err != nil {
		return nil, err
	}
	msgs = make([]broker.Message, len(evs))
	below := layer.Emits()
	for i, o := range evs {
		data, err := o.Marshal()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", demand.ErrTransform, err)
		}
		msgs[i] = broker.Message{Subject: event.DemandSubject(scenario, below, o.Subject), ID: o.ID, Key: o.CorrelationID, Data: data}
	}
	return msgs, nil
}

// checkRoute holds an event to the subject it arrived on: its layer, region and scenario.
func checkRoute(subject, scenario string, layer event.Layer, ev *event.Event) error {
	s, err := event.ParseSubject(subject)
	if err != nil {
		return err
	}
	if s.Kind != event.KindSignal && s.Kind != event.KindDemand {
		return &event.ValidationError{Field: "subject", Rule: fmt.Sprintf("%s is neither a signal nor a demand subject", subject)}
	}
	if in := event.InputLayer(ev.Type); in != layer {
		return &event.ValidationError{Field: "type", Rule: fmt.Sprintf("%s is not accepted by layer %s", ev.Type, layer)}
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

// deadLetter is the dead letter of d. Its body is the input's bytes, cut to fit limit (the
// broker's largest message, headers included) with HeaderTruncated giving the original size.
func deadLetter(scenario string, layer event.Layer, d broker.Delivery, kind Kind, cause error, limit int) broker.Message {
	m := d.Message()
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
