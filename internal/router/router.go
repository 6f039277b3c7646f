// Package router runs layer consumers: it fetches a batch, derives each event's demand with
// the layer transform, publishes every output and waits for the broker's acks, and only then
// acknowledges the inputs. Permanent failures become dead letters; transient ones are retried
// with capped back-off for as long as they last.
package router

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
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
	// Prepare, when set, runs once for every scenario before its layers start (run applies its
	// stream settings there: updating a stream while its consumers are created races inside
	// nats-server). An error is logged and the layers start anyway.
	Prepare func(ctx context.Context, scenario string) error
	// PerScenario, when set, runs beside the layers of every served scenario, with a context
	// that ends when the scenario stops being served (run's indexer uses it).
	PerScenario func(ctx context.Context, scenario string)
}

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
)

// Classify returns the dead-letter kind of a permanent error.
func Classify(err error) Kind {
	var de *event.DecodeError
	switch {
	case errors.Is(err, consumers.ErrTransform):
		return KindTransform
	case errors.As(err, &de):
		return KindDecode
	case errors.Is(err, event.ErrInvalid):
		return KindValidate
	}
	return KindTransform
}

// Layer runs one layer's consumer for one scenario until ctx ends, then finishes the batch in
// hand (publishes, acks) and returns nil. Other errors are returned only when the consumer
// cannot be opened or is lost.
func (r *Router) Layer(ctx context.Context, scenario string, layer event.Layer, coef *coefficients.Loaded) error {
	log := r.log.With().Str("layer", string(layer)).Str("scenario", scenario).Logger()
	var cons broker.Consumer
	err := r.retry(ctx, log, "open consumer", func(ctx context.Context) (err error) {
		cons, err = r.b.Consumer(ctx, scenario, layer)
		return err
	})
	if err != nil {
		return nil // ctx ended before the broker answered
	}
	defer cons.Close()
	r.count(r.consuming, scenario, 1)
	defer r.count(r.consuming, scenario, -1)
	r.opts.Metrics.Start(scenario, string(layer), string(KindDecode), string(KindValidate), string(KindTransform))
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
		r.process(ctx, log, scenario, layer, coef, batch)
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

// process derives, publishes and acknowledges one batch. It survives ctx's end for up to
// DrainTimeout so that a shutdown does not leave done work unacknowledged.
func (r *Router) process(ctx context.Context, log zerolog.Logger, scenario string, layer event.Layer, coef *coefficients.Loaded, batch []broker.Delivery) {
	start := time.Now()
	work, cancel := drainContext(ctx, r.opts.DrainTimeout)
	defer cancel()
	var out []broker.Message
	derived := 0
	for _, d := range batch {
		msgs, err := r.handle(work, scenario, layer, coef, d)
		if err != nil {
			kind := Classify(err)
			m := d.Message()
			log.Warn().Err(err).Str("kind", string(kind)).Str("event_id", m.ID).Uint64("seq", d.Seq()).Msg("dead letter")
			r.opts.Metrics.DeadLetter(scenario, string(layer), string(kind))
			out = append(out, deadLetter(scenario, layer, d, kind, err))
			continue
		}
		derived += len(msgs)
		out = append(out, msgs...)
	}
	if err := r.retry(work, log, "publish", func(ctx context.Context) error { return r.b.Publish(ctx, out) }); err != nil {
		log.Warn().Err(err).Int("events", len(batch)).Msg("shutdown before outputs were acknowledged; inputs left for redelivery")
		return
	}
	for _, d := range batch {
		if err := d.Ack(work); err != nil {
			log.Warn().Err(err).Uint64("seq", d.Seq()).Msg("ack failed; the input will be redelivered and its outputs de-duplicated")
		}
	}
	r.opts.Metrics.Batch(scenario, string(layer), len(batch), derived, time.Since(start))
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

// retry runs op until it succeeds, backing off between transient failures; it gives up only
// when ctx ends.
func (r *Router) retry(ctx context.Context, log zerolog.Logger, what string, op func(context.Context) error) error {
	wait := r.opts.RetryMin
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", wait).Msg(what + " failed; retrying")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, r.opts.RetryMax)
	}
}

// handle turns one delivery into the messages of its derived events, or a permanent error.
func (r *Router) handle(ctx context.Context, scenario string, layer event.Layer, coef *coefficients.Loaded, d broker.Delivery) (msgs []broker.Message, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: panic: %v", consumers.ErrTransform, p)
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
	evs, err := consumers.Derive(ctx, coef, ev, p)
	if err != nil {
		return nil, err
	}
	msgs = make([]broker.Message, len(evs))
	below := layer.Emits()
	for i, o := range evs {
		data, err := o.Marshal()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", consumers.ErrTransform, err)
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

func deadLetter(scenario string, layer event.Layer, d broker.Delivery, kind Kind, cause error) broker.Message {
	m := d.Message()
	return broker.Message{
		Subject: event.DLQSubject(scenario, layer),
		ID:      "dlq:" + string(layer) + ":" + strconv.FormatUint(d.Seq(), 10),
		Key:     m.Key,
		Data:    m.Data,
		Header: map[string]string{
			broker.HeaderError:           cause.Error(),
			broker.HeaderErrorKind:       string(kind),
			broker.HeaderLayer:           string(layer),
			broker.HeaderOriginalSubject: m.Subject,
			broker.HeaderOriginalMsgID:   m.ID,
			broker.HeaderDeliveries:      strconv.Itoa(d.Deliveries()),
		},
	}
}
