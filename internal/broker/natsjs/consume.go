package natsjs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
)

// consumer buffers what a JetStream pull subscription delivers so that Fetch can hand the
// runner everything already available as one batch.
type consumer struct {
	c    jetstream.Consumer
	cc   jetstream.ConsumeContext
	msgs chan jetstream.Msg

	once sync.Once
}

// publishAsyncMaxPending bounds the connection's unacknowledged async publishes; the
// callers' own windows (consumers.Options.MaxInflight) keep well below it.
const publishAsyncMaxPending = 1 << 16

// Consumer creates or updates the durable pull consumer of layer l in scenario s.
func (b *Broker) Consumer(ctx context.Context, s string, l event.Layer) (broker.Consumer, error) {
	return b.StageConsumer(ctx, s, event.LayerStage(l))
}

// stageConfig is the durable pull consumer of stage st in scenario s, delivering from the
// stream's start.
func (b *Broker) stageConfig(s string, st event.Stage, cfg broker.ScenarioConfig) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        st.ConsumerName(s),
		Description:    "cascade " + stageDescription(st) + " of scenario " + s,
		FilterSubjects: st.FilterSubjects(s),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cfg.AckWait,
		MaxAckPending:  b.opts.MaxAckPending,
		MaxDeliver:     -1,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
}

// StageConsumer creates or updates the durable pull consumer of stage st in scenario s.
func (b *Broker) StageConsumer(ctx context.Context, s string, st event.Stage) (broker.Consumer, error) {
	if err := st.Validate(); err != nil {
		return nil, err
	}
	cfg, err := b.scenarioConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	name := st.ConsumerName(s)
	ccfg := b.stageConfig(s, st, cfg)
	// A consumer made by TakeOver keeps the start it was given (the server refuses to change it).
	if have, err := b.js.Consumer(ctx, event.StreamName(s), name); err == nil {
		ccfg.DeliverPolicy, ccfg.OptStartSeq = have.CachedInfo().Config.DeliverPolicy, have.CachedInfo().Config.OptStartSeq
	}
	c, err := b.js.CreateOrUpdateConsumer(ctx, event.StreamName(s), ccfg)
	if err != nil {
		return nil, wrap(fmt.Errorf("consumer %s: %w", name, err))
	}
	cs := &consumer{c: c, msgs: make(chan jetstream.Msg, b.opts.Prefetch)}
	cs.cc, err = c.Consume(func(m jetstream.Msg) { cs.msgs <- m }, jetstream.PullMaxMessages(b.opts.Prefetch), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return nil, wrap(fmt.Errorf("consume %s: %w", name, err))
	}
	return cs, nil
}

func (c *consumer) Fetch(ctx context.Context, max int) ([]broker.Delivery, error) {
	var out []broker.Delivery
	select {
	case m := <-c.msgs:
		out = append(out, newDelivery(m))
	case <-c.cc.Closed():
		return nil, broker.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for len(out) < max {
		select {
		case m := <-c.msgs:
			out = append(out, newDelivery(m))
		default:
			return out, nil
		}
	}
	return out, nil
}

// Commit acknowledges each delivery without waiting for the server's confirmation: a lost
// ack only causes a redelivery after the ack wait, whose outputs the stream de-duplicates by
// id, and a round trip per message would cost more than the batch's work.
func (c *consumer) Commit(_ context.Context, ds []broker.Delivery) error {
	for _, bd := range ds {
		d, ok := bd.(*delivery)
		if !ok {
			return fmt.Errorf("%w: commit of a delivery this consumer did not hand out", broker.ErrPermanent)
		}
		if err := d.msg.Ack(); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
			return wrap(fmt.Errorf("ack %d: %w", d.Seq(), err))
		}
	}
	return nil
}

func stageDescription(st event.Stage) string {
	if st.First == st.Last {
		return "layer " + string(st.First)
	}
	return "stage " + st.String()
}

// Lag reads the durable consumer's info.
func (b *Broker) Lag(ctx context.Context, s string, l event.Layer) (uint64, error) {
	return b.StageLag(ctx, s, event.LayerStage(l))
}

// StageLag reads the stage's durable consumer's info.
func (b *Broker) StageLag(ctx context.Context, s string, st event.Stage) (uint64, error) {
	name := st.ConsumerName(s)
	c, err := b.js.Consumer(ctx, event.StreamName(s), name)
	if err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return 0, fmt.Errorf("stage %s of %s: %w", st, s, broker.ErrNotFound)
		}
		return 0, wrap(fmt.Errorf("consumer %s: %w", name, err))
	}
	info := c.CachedInfo()
	return info.NumPending + uint64(info.NumAckPending), nil
}

// Consumers lists the stream's durable consumers named as stages of s.
func (b *Broker) Consumers(ctx context.Context, s string) ([]string, error) {
	st, err := b.js.Stream(ctx, event.StreamName(s))
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, nil
		}
		return nil, wrap(fmt.Errorf("stream %s: %w", event.StreamName(s), err))
	}
	names := st.ConsumerNames(ctx)
	var out []string
	for n := range names.Name() {
		if _, ok := event.StageOfConsumer(s, n); ok {
			out = append(out, n)
		}
	}
	if err := names.Err(); err != nil {
		return nil, wrap(fmt.Errorf("consumers of %s: %w", event.StreamName(s), err))
	}
	sort.Strings(out)
	return out, nil
}

// RemoveConsumer deletes the durable consumer name of s's stream.
func (b *Broker) RemoveConsumer(ctx context.Context, s, name string) error {
	err := b.js.DeleteConsumer(ctx, event.StreamName(s), name)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return wrap(fmt.Errorf("delete consumer %s: %w", name, err))
	}
	return nil
}

// Close stops the subscription and hands back, for prompt redelivery, whatever was buffered
// but not fetched.
func (c *consumer) Close() error {
	c.once.Do(func() {
		c.cc.Stop()
		for {
			select {
			case m := <-c.msgs:
				_ = m.Nak()
			default:
				return
			}
		}
	})
	return nil
}

// feedResetAttempts bounds how often a feed's ordered consumer is recreated after it was lost
// (1s, 2s apart) before Next fails.
const feedResetAttempts = 3

// feed is an ordered consumer read one message at a time.
type feed struct {
	js       jetstream.JetStream
	stream   string
	c        jetstream.Consumer
	it       jetstream.MessagesContext
	pending  uint64
	untilEnd bool
	last     uint64 // with untilEnd: the last matching stream sequence when the feed was opened
	ended    bool
	since    time.Time // FeedOptions.Since until a message stored at or after it has come
}

// Feed opens an ordered consumer on the scenario's stream, filtered by the fewest subjects
// that match the selection (filters).
func (b *Broker) Feed(ctx context.Context, o broker.FeedOptions) (broker.Feed, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("feed: %w", err)
	}
	// A bounded number of resets: nats.go's default is unlimited, and a reset holds the lock
	// Stop needs, so a feed on a deleted stream would never stop (or let its process stop).
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters(o.Selector), DeliverPolicy: jetstream.DeliverNewPolicy, MaxResetAttempts: feedResetAttempts}
	switch {
	case o.Cursor != "":
		seq, err := strconv.ParseUint(o.Cursor, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: cursor %q is not a stream sequence", event.ErrInvalid, o.Cursor)
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
	case o.FromStart:
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	case !o.Since.IsZero():
		since := o.Since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	c, err := b.js.OrderedConsumer(ctx, event.StreamName(o.Scenario), cfg)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("scenario %s: %w", o.Scenario, broker.ErrNotFound)
		}
		return nil, wrap(fmt.Errorf("feed on %s: %w", o.Scenario, err))
	}
	it, err := c.Messages()
	if err != nil {
		return nil, wrap(fmt.Errorf("feed on %s: %w", o.Scenario, err))
	}
	f := &feed{js: b.js, stream: event.StreamName(o.Scenario), c: c, it: it, untilEnd: o.UntilEnd}
	if cfg.DeliverPolicy == jetstream.DeliverByStartTimePolicy {
		// The server starts at the first message stored at or after since, or when there is
		// none yet at the next one to come, whenever it is stored: a since still ahead holds
		// back what comes before it here.
		f.since = o.Since
	}
	if o.UntilEnd {
		// The end is what the stream held at open: a stream that keeps growing (a live
		// pipeline) must not keep a read-to-the-end going for ever. It is taken from the
		// stream leader, not from the NumPending the messages carry: the ordered consumer
		// (R1) may sit on a replica still catching up after a restart, which counts 0
		// pending before the end.
		last, err := b.lastMatching(ctx, o.Scenario, cfg.FilterSubjects)
		if err != nil {
			_ = f.Close()
			return nil, err
		}
		f.last = last
		info, err := c.Info(ctx)
		if err != nil {
			_ = f.Close()
			return nil, wrap(fmt.Errorf("feed on %s: %w", o.Scenario, err))
		}
		// Nothing delivered yet and the consumer starts after the bound (or nothing
		// matches): nothing to read.
		f.ended = last == 0 || (info.Delivered.Consumer == 0 && info.Delivered.Stream >= last)
	}
	return f, nil
}

// lastMatching is the highest sequence of s's stream among the messages on subjects (0 when
// none), as the stream leader reports it: message gets go to the leader (the stream allows no
// direct gets, which any replica would answer).
func (b *Broker) lastMatching(ctx context.Context, s string, subjects []string) (uint64, error) {
	st, err := b.js.Stream(ctx, event.StreamName(s))
	if err != nil {
		return 0, wrap(fmt.Errorf("feed on %s: %w", s, err))
	}
	var last uint64
	for _, subj := range subjects {
		m, err := st.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, wrap(fmt.Errorf("feed on %s: last message on %s: %w", s, subj, err))
		}
		last = max(last, m.Sequence)
	}
	return last, nil
}

// untilEndStep is a read to the end's rule for the message at stream sequence seq, the end
// being the stream sequence last: it is delivered when seq <= last, and the feed ends after
// it when seq >= last. The NumPending a message carries plays no part: a replica still
// catching up counts 0 before the end.
func untilEndStep(seq, last uint64) (deliver, end bool) {
	return seq <= last, seq >= last
}

func (f *feed) Next(ctx context.Context) (broker.Delivery, error) {
	for {
		d, err := f.next(ctx)
		if err != nil || f.since.IsZero() {
			return d, err
		}
		if !d.Time().Before(f.since) {
			f.since = time.Time{} // from here on the stream's order
			return d, nil
		}
	}
}

func (f *feed) next(ctx context.Context) (broker.Delivery, error) {
	if f.ended {
		return nil, io.EOF
	}
	m, err := f.it.Next(jetstream.NextContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return nil, broker.ErrClosed
		}
		return nil, wrap(err)
	}
	d := newDelivery(m)
	if d.meta != nil {
		f.pending = d.meta.NumPending
		if f.untilEnd {
			deliver, end := untilEndStep(d.Seq(), f.last)
			f.ended = end
			if !deliver {
				return nil, io.EOF
			}
		}
	}
	return d, nil
}

func (f *feed) Pending() uint64 { return f.pending }

// Close stops the feed and deletes its ordered consumer on the server, which would
// otherwise stay until its inactivity threshold (5 minutes) passed.
func (f *feed) Close() error {
	f.it.Stop()
	info := f.c.CachedInfo()
	if info == nil {
		return nil // no consumer was created
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := f.js.DeleteConsumer(ctx, f.stream, info.Name)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return wrap(fmt.Errorf("feed on %s: deleting its consumer: %w", f.stream, err))
	}
	return nil
}

// TakeOver creates st's durable consumer delivering from after the stream's last sequence,
// waits until each old consumer's ack floor has reached it (or it has nothing pending), then
// deletes them.
func (b *Broker) TakeOver(ctx context.Context, s string, st event.Stage, old []string) error {
	if err := st.Validate(); err != nil {
		return err
	}
	cfg, err := b.scenarioConfig(ctx, s)
	if err != nil {
		return err
	}
	name := st.ConsumerName(s)
	last, resumed, err := b.takenOverAt(ctx, s, name)
	if err != nil || resumed {
		if err == nil {
			err = b.retire(ctx, s, old, last)
		}
		return err
	}
	ccfg := b.stageConfig(s, st, cfg)
	ccfg.DeliverPolicy, ccfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, last+1
	_, err = b.js.CreateConsumer(ctx, event.StreamName(s), ccfg)
	if err != nil {
		return wrap(fmt.Errorf("consumer %s: %w", name, err))
	}
	return b.retire(ctx, s, old, last)
}

// takenOverAt is the position P of a take-over by consumer name: the stream's last sequence
// when name does not exist yet, the one a take-over started it after when it does (resumed);
// an error matching broker.ErrConflict for a consumer that no take-over created.
func (b *Broker) takenOverAt(ctx context.Context, s, name string) (last uint64, resumed bool, err error) {
	if c, err := b.js.Consumer(ctx, event.StreamName(s), name); err == nil {
		if cfg := c.CachedInfo().Config; cfg.DeliverPolicy == jetstream.DeliverByStartSequencePolicy && cfg.OptStartSeq > 0 {
			return cfg.OptStartSeq - 1, true, nil
		}
		return 0, false, fmt.Errorf("%w: consumer %s of %s exists already; nothing to take over", broker.ErrConflict, name, s)
	}
	info, err := b.streamInfo(ctx, s)
	if err != nil {
		return 0, false, err
	}
	return info.State.LastSeq, false, nil
}

// streamInfo is the current state of s's stream.
func (b *Broker) streamInfo(ctx context.Context, s string) (*jetstream.StreamInfo, error) {
	stream, err := b.js.Stream(ctx, event.StreamName(s))
	if err != nil {
		return nil, wrap(fmt.Errorf("stream %s: %w", event.StreamName(s), err))
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, wrap(fmt.Errorf("stream %s: %w", event.StreamName(s), err))
	}
	return info, nil
}

// retire waits until each of the consumers old in turn has acknowledged everything up to its
// bound (the stream sequence last for the first; for each next one the stream's last
// sequence once the one before it got there) or has nothing pending, then deletes them.
func (b *Broker) retire(ctx context.Context, s string, old []string, last uint64) error {
	for _, n := range old {
		err := broker.Until(ctx, func() (bool, error) {
			c, err := b.js.Consumer(ctx, event.StreamName(s), n)
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				return true, nil
			}
			if err != nil {
				return false, wrap(fmt.Errorf("consumer %s: %w", n, err))
			}
			ci := c.CachedInfo()
			return ci.AckFloor.Stream >= last || (ci.NumPending == 0 && ci.NumAckPending == 0), nil
		})
		if err != nil {
			return err
		}
		// The next one's bound: what the stream holds now, the demand derived from what
		// this one committed included.
		info, err := b.streamInfo(ctx, s)
		if err != nil {
			return err
		}
		last = info.State.LastSeq
	}
	for _, n := range old {
		if err := b.RemoveConsumer(ctx, s, n); err != nil {
			return err
		}
	}
	return nil
}
