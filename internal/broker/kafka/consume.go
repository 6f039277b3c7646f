package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
)

// tp names one partition of one topic.
type tp struct {
	topic     string
	partition int
}

// partState tracks, for one partition, the offsets handed out in fetch order and what may be
// committed: Kafka keeps one committed offset per partition, so committing a later offset
// while an earlier one is uncommitted would lose the earlier one on a crash. Only the
// contiguous committed prefix is sent.
type partState struct {
	queue     []*delivery // handed out, not yet part of the committed prefix
	want      int64       // offset after the committed prefix (-1: nothing yet)
	committed int64       // offset after what was committed (-1: nothing yet)
	fetched   int64       // the highest offset handed out by this consumer (-1: none)
	horizon   int64       // offsets below were stored before the partition came (back) to this consumer
	came      time.Time   // when it came
	last      kafka.Message
}

// handoverGrace is how long after a partition came to a consumer what an earlier reader
// had fetched of it may still be landing: the outputs of a member that lost the partition
// in a rebalance and goes on publishing what it held (its writes retry for a few seconds).
const handoverGrace = 5 * time.Second

// consumer is one member of the group cascade-<s>-<layer>. A goroutine fetches ahead into a
// buffer so that Fetch can hand over everything already available as one batch.
type consumer struct {
	b      *Broker
	r      *kafka.Reader
	msgs   chan kafka.Message
	done   chan struct{}
	life   context.Context // ends with Close
	cancel context.CancelFunc

	group string

	mu    sync.Mutex
	parts map[tp]*partState

	commitMu sync.Mutex
	once     sync.Once
}

// Consumer joins the consumer group of layer l in scenario s (event.ConsumerName) on the
// layer's signal and demand topics, creating the topics when missing. Members of one group
// share the partitions; a new group starts at the first offset.
func (b *Broker) Consumer(ctx context.Context, s string, l event.Layer) (broker.Consumer, error) {
	return b.StageConsumer(ctx, s, event.LayerStage(l))
}

// StageConsumer joins the consumer group of stage st in scenario s (Stage.ConsumerName) on
// the stage's input topics (Stage.Topics), as Consumer does for one layer.
func (b *Broker) StageConsumer(ctx context.Context, s string, st event.Stage) (broker.Consumer, error) {
	if err := st.Validate(); err != nil {
		return nil, err
	}
	group := st.ConsumerName(s)
	var cfg broker.ScenarioConfig
	switch bd, err := b.reg.Get(ctx, s); {
	case err == nil:
		cfg = bd.Config
	case !errors.Is(err, broker.ErrNotFound):
		return nil, err
	}
	if err := b.ensureScenario(ctx, s, cfg, false); err != nil {
		return nil, err
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           b.opts.Brokers,
		GroupID:           group,
		GroupTopics:       st.Topics(s),
		Dialer:            b.dialer,
		QueueCapacity:     b.opts.Prefetch,
		MinBytes:          1,
		MaxBytes:          4 << 20,
		MaxWait:           b.opts.MaxWait,
		ReadBatchTimeout:  b.opts.MaxWait + 5*time.Second,
		HeartbeatInterval: b.opts.HeartbeatInterval,
		SessionTimeout:    b.opts.SessionTimeout,
		RebalanceTimeout:  b.opts.RebalanceTimeout,
		JoinGroupBackoff:  min(time.Second, b.opts.SessionTimeout/2),
		CommitInterval:    0, // synchronous: Commit returns the commit's outcome
		StartOffset:       kafka.FirstOffset,
		ReadBackoffMin:    10 * time.Millisecond,
		ReadBackoffMax:    500 * time.Millisecond,
		ReadLagInterval:   -1,
		Logger:            kafka.LoggerFunc(func(f string, a ...any) { b.log.Trace().Str("group", group).Msgf(f, a...) }),
		ErrorLogger:       kafka.LoggerFunc(func(f string, a ...any) { b.log.Debug().Str("group", group).Msgf(f, a...) }),
	})
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{b: b, r: r, msgs: make(chan kafka.Message, b.opts.Prefetch), done: make(chan struct{}), life: ctx, cancel: cancel, group: group, parts: map[tp]*partState{}}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		cancel()
		_ = r.Close()
		return nil, broker.ErrClosed
	}
	b.consumers[c] = struct{}{}
	b.mu.Unlock()
	go c.fetchLoop(ctx, s, st)
	return c, nil
}

func (c *consumer) fetchLoop(ctx context.Context, s string, st event.Stage) {
	defer close(c.done)
	if d := c.b.opts.JoinDelay; d > 0 {
		// kafka-go drops what it fetched for a generation that ended meanwhile.
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
	wait := 50 * time.Millisecond
	for {
		m, err := c.r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return
			}
			c.b.log.Warn().Err(err).Str("scenario", s).Str("stage", st.String()).Msg("kafka consumer fetch failed; retrying")
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 2*time.Second)
			continue
		}
		wait = 50 * time.Millisecond
		select {
		case c.msgs <- m:
		case <-ctx.Done():
			return
		}
	}
}

// Fetch blocks for one message and returns it with whatever else is already buffered, up
// to max.
func (c *consumer) Fetch(ctx context.Context, max int) ([]broker.Delivery, error) {
	var ms []kafka.Message
	select {
	case m := <-c.msgs:
		ms = append(ms, m)
	case <-c.done:
		return nil, broker.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
drain:
	for len(ms) < max {
		select {
		case m := <-c.msgs:
			ms = append(ms, m)
		default:
			break drain
		}
	}
	out := make([]broker.Delivery, len(ms))
	rebalanced := c.r.Stats().Rebalances > 0 // since the last Fetch (Stats counts since its last call)
	c.mu.Lock()
	defer c.mu.Unlock()
	if rebalanced {
		// A partition may have come back at the very offset after the last one handed out
		// here, with another member having read past it meanwhile: every partition's next
		// record counts as a handover.
		for _, ps := range c.parts {
			ps.fetched = -1
		}
	}
	for i, m := range ms {
		d := &delivery{c: c, km: m, m: toMessage(m.Topic, m.Key, m.Value, m.Headers)}
		k := tp{m.Topic, m.Partition}
		ps := c.parts[k]
		if ps == nil {
			ps = &partState{want: -1, committed: -1, fetched: -1, horizon: -1}
			c.parts[k] = ps
		}
		// Kafka counts no deliveries. A partition's first record here, or one that does not
		// follow the last handed out (it went away and came back, from its committed offset
		// or from where another member committed), means the partition came to this consumer:
		// what it held then (its high-water mark at this fetch) may have been read before, by
		// this process or one before it, however far past the committed offset that went.
		if ps.fetched < 0 || m.Offset != ps.fetched+1 {
			ps.horizon, ps.came = m.HighWaterMark, time.Now()
		}
		d.again, d.by = m.Offset < ps.horizon || m.Offset <= ps.fetched, ps.came.Add(handoverGrace)
		if m.Offset > ps.fetched {
			ps.fetched = m.Offset
		}
		ps.queue = append(ps.queue, d)
		out[i] = d
	}
	return out, nil
}

// Commit marks ds committed and advances their partitions' committed prefixes, then
// commits every partition's prefix not committed yet in one request and returns its
// outcome. A crash before that request leaves the messages to be read again, which
// at-least-once delivery allows (deterministic ids make the repeat harmless).
func (c *consumer) Commit(ctx context.Context, ds []broker.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	if c.life.Err() != nil {
		return fmt.Errorf("commit %d deliveries of %s: %w", len(ds), c.group, broker.ErrClosed)
	}
	c.mu.Lock()
	touched := map[*partState]bool{}
	for _, bd := range ds {
		d, ok := bd.(*delivery)
		if !ok || d.c != c {
			c.mu.Unlock()
			return fmt.Errorf("%w: commit of a delivery %s did not hand out", broker.ErrPermanent, c.group)
		}
		if d.committed {
			continue
		}
		d.committed = true
		touched[c.parts[tp{d.km.Topic, d.km.Partition}]] = true
	}
	for ps := range touched {
		for len(ps.queue) > 0 && ps.queue[0].committed {
			head := ps.queue[0]
			ps.queue[0] = nil
			ps.queue = ps.queue[1:]
			if head.km.Offset+1 > ps.want {
				ps.want, ps.last = head.km.Offset+1, head.km
			}
		}
	}
	c.mu.Unlock()
	return c.commit(ctx)
}

// commit commits the committed prefix of every partition not sent yet.
func (c *consumer) commit(ctx context.Context) error {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	type pending struct {
		ps   *partState
		want int64
	}
	var msgs []kafka.Message
	var done []pending
	c.mu.Lock()
	for _, ps := range c.parts {
		if ps.want > ps.committed {
			msgs = append(msgs, ps.last)
			done = append(done, pending{ps, ps.want})
		}
	}
	c.mu.Unlock()
	if len(msgs) == 0 {
		return nil
	}
	// kafka-go may take a commit request after the reader closed and then never answer it:
	// tie the call to the consumer's life as well.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.life, cancel)()
	if c.life.Err() != nil {
		return fmt.Errorf("commit %d partitions of %s: %w", len(msgs), c.group, broker.ErrClosed)
	}
	if err := c.r.CommitMessages(cctx, msgs...); err != nil {
		if errors.Is(err, io.ErrClosedPipe) || (c.life.Err() != nil && ctx.Err() == nil) {
			return fmt.Errorf("commit %d partitions of %s: %w", len(msgs), c.group, broker.ErrClosed)
		}
		return wrap(fmt.Errorf("commit %d partitions of %s: %w", len(msgs), c.group, err))
	}
	c.mu.Lock()
	for _, p := range done {
		p.ps.committed = max(p.ps.committed, p.want)
	}
	c.mu.Unlock()
	return nil
}

// Close commits what Commit recorded, then leaves the group; what was fetched but not
// committed is read again by the member that gets its partition.
func (c *consumer) Close() error {
	c.close(true)
	return nil
}

// close stops the consumer, committing first when flush is set (not when Abort kills it).
func (c *consumer) close(flush bool) {
	c.once.Do(func() {
		if flush {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := c.commit(ctx); err != nil {
				c.b.log.Warn().Err(err).Str("group", c.group).Msg("final commit failed; processed messages will be read again")
			}
			cancel()
		}
		c.cancel()
		_ = c.r.Close()
		<-c.done
		c.b.mu.Lock()
		delete(c.b.consumers, c)
		c.b.mu.Unlock()
	})
}

// delivery is a record handed out by a consumer or a feed.
type delivery struct {
	c         *consumer // nil for feed deliveries
	km        kafka.Message
	m         broker.Message
	committed bool
	again     bool      // possibly read before (broker.Redelivery)
	by        time.Time // what an earlier read published was stored by then
	cursor    func() string
}

func (d *delivery) Message() *broker.Message { return &d.m }

// Seq is the record's offset in its partition.
func (d *delivery) Seq() uint64 { return uint64(max(d.km.Offset, 0)) }

// Cursor is "<topic>/<partition>:<offset>" for a consumer delivery, and a resume position
// over every partition for a feed delivery.
func (d *delivery) Cursor() string {
	if d.cursor != nil {
		return d.cursor()
	}
	return d.km.Topic + "/" + strconv.Itoa(d.km.Partition) + ":" + strconv.FormatInt(d.km.Offset, 10)
}

// Time is the record's time stamp (the broker's append time on topics cascade creates).
func (d *delivery) Time() time.Time { return d.km.Time }

// Deliveries is always 1: Kafka does not count redeliveries.
func (d *delivery) Deliveries() int { return 1 }

// PossiblyRedelivered says d's record may have been read before, by this process or another
// member of its group, and when so by when what that read published was stored: a moment
// after its partition came to this consumer (broker.Redelivery).
func (d *delivery) PossiblyRedelivered() (bool, time.Time) { return d.again, d.by }

// Lag sums, over the layer's topics and partitions, the end offset minus the offset the
// group committed (the first offset where it committed nothing). It reads offsets only and
// never joins the group.
func (b *Broker) Lag(ctx context.Context, s string, l event.Layer) (uint64, error) {
	return b.StageLag(ctx, s, event.LayerStage(l))
}

// StageLag is Lag over the stage's input topics and its group's offsets.
func (b *Broker) StageLag(ctx context.Context, s string, st event.Stage) (uint64, error) {
	parts, err := b.partitions(ctx, st.Topics(s))
	if err != nil {
		return 0, err
	}
	if len(parts) == 0 {
		return 0, fmt.Errorf("stage %s of %s: %w", st, s, broker.ErrNotFound)
	}
	first, end, err := b.bounds(ctx, parts)
	if err != nil {
		return 0, err
	}
	committed, err := b.committed(ctx, st.ConsumerName(s), parts)
	if err != nil {
		return 0, err
	}
	var lag uint64
	for _, p := range parts {
		from := first[p]
		if c, ok := committed[p]; ok && c >= 0 {
			from = max(c, from)
		}
		if e := end[p]; e > from {
			lag += uint64(e - from)
		}
	}
	return lag, nil
}

// partitions lists the partitions of those of topics that exist, in topic then partition
// order.
func (b *Broker) partitions(ctx context.Context, topics []string) ([]tp, error) {
	md, err := b.client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, wrap(fmt.Errorf("metadata: %w", err))
	}
	byName := map[string]kafka.Topic{}
	for _, t := range md.Topics {
		byName[t.Name] = t
	}
	var out []tp
	for _, name := range topics {
		t, ok := byName[name]
		if !ok || t.Error != nil {
			if ok && !errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
				return nil, wrap(fmt.Errorf("metadata of %s: %w", name, t.Error))
			}
			continue
		}
		ids := make([]int, len(t.Partitions))
		for i, p := range t.Partitions {
			ids[i] = p.ID
		}
		sort.Ints(ids)
		for _, id := range ids {
			out = append(out, tp{name, id})
		}
	}
	return out, nil
}

// bounds returns the first and the end (next to be written) offsets of parts.
func (b *Broker) bounds(ctx context.Context, parts []tp) (first, end map[tp]int64, err error) {
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range parts {
		req.Topics[p.topic] = append(req.Topics[p.topic], kafka.FirstOffsetOf(p.partition), kafka.LastOffsetOf(p.partition))
	}
	resp, err := b.client.ListOffsets(ctx, req)
	if err != nil {
		return nil, nil, wrap(fmt.Errorf("list offsets: %w", err))
	}
	first, end = map[tp]int64{}, map[tp]int64{}
	for t, ps := range resp.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return nil, nil, wrap(fmt.Errorf("offsets of %s/%d: %w", t, p.Partition, p.Error))
			}
			first[tp{t, p.Partition}] = p.FirstOffset
			end[tp{t, p.Partition}] = p.LastOffset
		}
	}
	return first, end, nil
}

// Consumers lists the cluster's consumer groups named as stages of s.
func (b *Broker) Consumers(ctx context.Context, s string) ([]string, error) {
	resp, err := b.client.ListGroups(ctx, &kafka.ListGroupsRequest{})
	if err == nil {
		err = resp.Error
	}
	if err != nil {
		return nil, wrap(fmt.Errorf("list consumer groups: %w", err))
	}
	var out []string
	for _, g := range resp.Groups {
		if _, ok := event.StageOfConsumer(s, g.GroupID); ok {
			out = append(out, g.GroupID)
		}
	}
	sort.Strings(out)
	return out, nil
}

// RemoveConsumer deletes the consumer group name (it must have no members).
func (b *Broker) RemoveConsumer(ctx context.Context, _ string, name string) error {
	resp, err := b.client.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: []string{name}})
	if err == nil {
		err = resp.Errors[name]
	}
	if err != nil && !errors.Is(err, kafka.GroupIdNotFound) {
		return wrap(fmt.Errorf("delete consumer group %s: %w", name, err))
	}
	return nil
}

// TakeOver commits, for st's new group, the end offsets of st's topics; waits until each old
// group has committed up to the end offsets its own topics had then, and deletes it.
func (b *Broker) TakeOver(ctx context.Context, s string, st event.Stage, old []string) error {
	if err := st.Validate(); err != nil {
		return err
	}
	group := st.ConsumerName(s)
	names, err := b.Consumers(ctx, s)
	if err != nil {
		return err
	}
	resumed := slices.Contains(names, group) // an earlier take-over committed its start already
	parts, err := b.partitions(ctx, st.Topics(s))
	if err != nil {
		return err
	}
	_, end, err := b.bounds(ctx, parts)
	if err != nil {
		return err
	}
	if !resumed {
		if err := b.commitStart(ctx, group, parts, end); err != nil {
			return err
		}
	}
	for _, n := range old {
		o, ok := event.StageOfConsumer(s, n)
		if !ok {
			return fmt.Errorf("%w: %q is not a stage consumer of %s", event.ErrInvalid, n, s)
		}
		// Its bound: the end of its topics now, after those above it were retired.
		ops, err := b.partitions(ctx, o.Topics(s))
		if err != nil {
			return err
		}
		_, oend, err := b.bounds(ctx, ops)
		if err != nil {
			return err
		}
		err = broker.Until(ctx, func() (bool, error) {
			first, _, err := b.bounds(ctx, ops)
			if err != nil {
				return false, err
			}
			committed, err := b.committed(ctx, n, ops)
			if err != nil {
				return false, err
			}
			for _, p := range ops {
				at := first[p]
				if c, ok := committed[p]; ok && c >= 0 {
					at = max(c, at)
				}
				if at < oend[p] {
					return false, nil
				}
			}
			return true, nil
		})
		if err != nil {
			return err
		}
	}
	b.log.Info().Str("scenario", s).Strs("groups", old).Msg("take-over: the groups replaced have committed their part; stop their processes for them to be deleted")
	for _, n := range old {
		// Kafka deletes a group only once its members have left: their processes stop.
		err := broker.Until(ctx, func() (bool, error) {
			err := b.RemoveConsumer(ctx, s, n)
			return err == nil, ignoreNonEmpty(err)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// ignoreNonEmpty is err unless it is Kafka's refusal to delete a group with members.
func ignoreNonEmpty(err error) error {
	if errors.Is(err, kafka.NonEmptyGroup) {
		return nil
	}
	return err
}

// commitStart commits offsets at for a group that has no member (an admin commit: no
// generation), where it starts when it first joins.
func (b *Broker) commitStart(ctx context.Context, group string, parts []tp, at map[tp]int64) error {
	req := &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{}}
	for _, p := range parts {
		req.Topics[p.topic] = append(req.Topics[p.topic], kafka.OffsetCommit{Partition: p.partition, Offset: at[p]})
	}
	resp, err := b.client.OffsetCommit(ctx, req)
	if err != nil {
		return wrap(fmt.Errorf("commit the start of %s: %w", group, err))
	}
	for t, ps := range resp.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return wrap(fmt.Errorf("commit the start of %s on %s/%d: %w", group, t, p.Partition, p.Error))
			}
		}
	}
	return nil
}

// committed reads the offsets group committed on parts; a partition it never committed on is
// absent.
func (b *Broker) committed(ctx context.Context, group string, parts []tp) (map[tp]int64, error) {
	req := &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{}}
	for _, p := range parts {
		req.Topics[p.topic] = append(req.Topics[p.topic], p.partition)
	}
	resp, err := b.client.OffsetFetch(ctx, req)
	if err != nil {
		return nil, wrap(fmt.Errorf("offsets of %s: %w", req.GroupID, err))
	}
	committed := map[tp]int64{}
	// A group that never committed (some brokers answer "group id not found") has read
	// nothing yet.
	if resp.Error != nil && !errors.Is(resp.Error, kafka.GroupIdNotFound) {
		return nil, wrap(fmt.Errorf("offsets of %s: %w", req.GroupID, resp.Error))
	}
	for t, ps := range resp.Topics {
		for _, p := range ps {
			if p.Error != nil {
				if errors.Is(p.Error, kafka.GroupIdNotFound) {
					continue
				}
				return nil, wrap(fmt.Errorf("offset of %s %s/%d: %w", req.GroupID, t, p.Partition, p.Error))
			}
			committed[tp{t, p.Partition}] = p.CommittedOffset
		}
	}
	return committed, nil
}
