package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
)

// fetched is one record read by a partition reader, or the error that ended it.
type fetched struct {
	slot int
	km   kafka.Message // Topic, Partition, Offset, Time only
	m    broker.Message
	err  error
}

// feed reads partitions without a group, with the broker's shared client: a following feed
// has one goroutine per partition, a snapshot (UntilEnd) one goroutine reading partition
// after partition; either way they hand records to Next through one channel.
type feed struct {
	b      *Broker
	prefix string // "cascade.<s>." - the topic prefix dropped from cursors
	parts  []tp
	sel    broker.Selector
	// since is FeedOptions.Since, for the partitions (ahead, by slot) that held nothing that
	// new when the feed opened and so start at their end: what comes there stored before since
	// is passed over, until the first record that is not.
	since  time.Time
	ahead  []bool
	ch     chan fetched
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
	once   sync.Once

	mu    sync.Mutex
	pos   []int64 // per slot: the offset after the last record Next consumed
	hwm   []atomic.Int64
	dedup *dedup
}

// Feed reads the topics o.Selector selects (a topic is a subject without its region), keeping
// the records whose subject (the cascade-subject header) is in a selected region. It starts after o.Cursor, else at the first offsets (FromStart), else at the
// offsets of o.Since (broker time), else at the end. It never joins a consumer group.
// A following feed reads all partitions at once, so records from different partitions
// interleave as they come; within a partition they keep their order. With o.UntilEnd the
// feed reads partition after partition (signal topics, then demand from the top layer down,
// then dead letters), so one store always reads back in the same order. Duplicates left by
// at-least-once delivery (same id, same body) are dropped within the last
// Options.FeedDedup records.
func (b *Broker) Feed(ctx context.Context, o broker.FeedOptions) (broker.Feed, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("feed: %w", err)
	}
	if b.isClosed() {
		return nil, broker.ErrClosed
	}
	all := scenarioTopics(o.Scenario)
	existing, err := b.partitions(ctx, all)
	if err != nil {
		return nil, err
	}
	if len(existing) == 0 {
		return nil, fmt.Errorf("scenario %s: %w", o.Scenario, broker.ErrNotFound)
	}
	var parts []tp
	for _, p := range existing {
		if sub, err := event.ParseSubject(p.topic); err == nil && o.Selects(sub) {
			parts = append(parts, p)
		}
	}
	f := &feed{b: b, prefix: strings.TrimSuffix(event.Subject{Scenario: o.Scenario}.String(), ">"), parts: parts, sel: o.Selector,
		ch: make(chan fetched, 256), pos: make([]int64, len(parts)), hwm: make([]atomic.Int64, len(parts))}
	if b.opts.FeedDedup > 0 {
		f.dedup = newDedup(b.opts.FeedDedup)
	}
	var first, end map[tp]int64
	if len(parts) > 0 {
		if first, end, err = b.bounds(ctx, parts); err != nil {
			return nil, err
		}
	}
	switch {
	case o.Cursor != "":
		at, err := f.parseCursor(o.Cursor)
		if err != nil {
			return nil, err
		}
		for i, p := range parts {
			f.pos[i] = first[p]
			if offs, ok := at[strings.TrimPrefix(p.topic, f.prefix)]; ok && p.partition < len(offs) {
				f.pos[i] = min(max(offs[p.partition], first[p]), end[p])
			}
		}
	case o.FromStart:
		for i, p := range parts {
			f.pos[i] = first[p]
		}
	case !o.Since.IsZero():
		at, err := b.offsetsAt(ctx, parts, o.Since, end)
		if err != nil {
			return nil, err
		}
		f.since, f.ahead = o.Since, make([]bool, len(parts))
		for i, p := range parts {
			f.pos[i], f.ahead[i] = at[p], at[p] == end[p]
		}
	default:
		for i, p := range parts {
			f.pos[i] = end[p]
		}
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		f.cancel()
		return nil, broker.ErrClosed
	}
	b.feeds[f] = struct{}{}
	b.mu.Unlock()
	for i, p := range parts {
		f.hwm[i].Store(end[p])
	}
	f.wg.Add(1)
	if o.UntilEnd {
		// A snapshot is read partition after partition, in topic order (signals, then demand
		// from the top layer down, then dead letters) and offset order: the same store always
		// reads back in the same order.
		go func() {
			defer f.wg.Done()
			for i, p := range parts {
				if f.pos[i] < end[p] && !f.read(i, f.pos[i], end[p]) {
					return
				}
			}
		}()
	} else {
		// A following feed reads every partition at once, and ends only when closed (even
		// with no partition to read).
		go func() { <-f.ctx.Done(); f.wg.Done() }()
		for i := range parts {
			f.wg.Add(1)
			go func() { defer f.wg.Done(); f.read(i, f.pos[i], -1) }()
		}
	}
	go func() { f.wg.Wait(); close(f.ch) }()
	return f, nil
}

// offsetsAt returns, per partition, the first offset whose time stamp is at or after t (the
// end when there is none).
func (b *Broker) offsetsAt(ctx context.Context, parts []tp, t time.Time, end map[tp]int64) (map[tp]int64, error) {
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range parts {
		req.Topics[p.topic] = append(req.Topics[p.topic], kafka.TimeOffsetOf(p.partition, t))
	}
	resp, err := b.client.ListOffsets(ctx, req)
	if err != nil {
		return nil, wrap(fmt.Errorf("offsets at %s: %w", t.Format(time.RFC3339), err))
	}
	out := make(map[tp]int64, len(parts))
	for _, p := range parts {
		out[p] = end[p]
	}
	for topic, ps := range resp.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return nil, wrap(fmt.Errorf("offsets of %s/%d at %s: %w", topic, p.Partition, t.Format(time.RFC3339), p.Error))
			}
			for off := range p.Offsets {
				if off >= 0 {
					out[tp{topic, p.Partition}] = off
				}
			}
		}
	}
	return out, nil
}

// read fetches one partition from next until stop (-1: until the feed is closed). It
// reports whether it got there; when not, the feed was closed or Next was handed the error.
func (f *feed) read(slot int, next, stop int64) bool {
	p := f.parts[slot]
	fails := 0
	for stop < 0 || next < stop {
		resp, err := f.b.client.Fetch(f.ctx, &kafka.FetchRequest{
			Topic: p.topic, Partition: p.partition, Offset: next,
			MinBytes: 1, MaxBytes: 4 << 20, MaxWait: f.b.opts.MaxWait,
		})
		if err == nil && resp.Error != nil {
			err = resp.Error
		}
		if errors.Is(err, kafka.RequestTimedOut) {
			// Some brokers answer a long poll that found nothing with this code.
			continue
		}
		if err != nil {
			if f.ctx.Err() != nil {
				return false
			}
			if errors.Is(err, kafka.OffsetOutOfRange) {
				// Retention removed what we were about to read: go on from the first offset.
				if first, _, berr := f.b.bounds(f.ctx, []tp{p}); berr == nil && first[p] > next {
					next = first[p]
					continue
				}
			}
			fails++
			if fails >= 20 || !temporary(err) {
				f.send(fetched{slot: slot, err: wrap(fmt.Errorf("feed %s/%d at %d: %w", p.topic, p.partition, next, err))})
				return false
			}
			select {
			case <-f.ctx.Done():
				return false
			case <-time.After(time.Duration(min(fails, 10)) * 100 * time.Millisecond):
			}
			continue
		}
		fails = 0
		f.hwm[slot].Store(resp.HighWatermark)
		got := 0
		for {
			rec, err := resp.Records.ReadRecord()
			if err != nil {
				break
			}
			if rec.Offset < next {
				continue
			}
			if stop >= 0 && rec.Offset >= stop {
				break
			}
			key, _ := kafka.ReadAll(rec.Key)
			val, err := kafka.ReadAll(rec.Value)
			if err != nil {
				break
			}
			km := kafka.Message{Topic: p.topic, Partition: p.partition, Offset: rec.Offset, Time: rec.Time}
			if !f.send(fetched{slot: slot, km: km, m: toMessage(p.topic, key, val, rec.Headers)}) {
				return false
			}
			next = rec.Offset + 1
			got++
		}
		if got == 0 {
			switch {
			case resp.LogStartOffset > next:
				next = resp.LogStartOffset
			case stop >= 0 && resp.HighWatermark >= stop:
				// Nothing readable is left below stop (compacted away or control records).
				return true
			}
		}
	}
	return true
}

func (f *feed) send(x fetched) bool {
	select {
	case f.ch <- x:
		return true
	case <-f.ctx.Done():
		return false
	}
}

// Next returns the next matching record; with UntilEnd, io.EOF once every partition was
// read up to the end offsets captured when the feed was opened.
func (f *feed) Next(ctx context.Context) (broker.Delivery, error) {
	for {
		select {
		case x, ok := <-f.ch:
			if !ok {
				if f.closed.Load() {
					return nil, broker.ErrClosed
				}
				return nil, io.EOF
			}
			if x.err != nil {
				return nil, x.err
			}
			f.mu.Lock()
			f.pos[x.slot] = x.km.Offset + 1
			f.mu.Unlock()
			if sub, _ := event.ParseSubject(x.m.Subject); sub.Region != "" && !f.sel.SelectsRegion(sub.Region) {
				continue
			}
			if f.ahead != nil && f.ahead[x.slot] {
				if x.km.Time.Before(f.since) {
					continue
				}
				f.ahead[x.slot] = false
			}
			if f.dedup != nil && x.m.ID != "" && f.dedup.seen(x.m.ID, x.m.Data) {
				continue
			}
			f.mu.Lock()
			snap := slices.Clone(f.pos)
			f.mu.Unlock()
			return &delivery{km: x.km, m: x.m, cursor: func() string { return f.encodeCursor(snap) }}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Pending is what the partitions held beyond the feed's position at their last fetch.
func (f *feed) Pending() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n uint64
	for i := range f.parts {
		if h := f.hwm[i].Load(); h > f.pos[i] {
			n += uint64(h - f.pos[i])
		}
	}
	return n
}

// Close stops the partition readers; a blocked Next returns broker.ErrClosed.
func (f *feed) Close() error {
	f.once.Do(func() {
		f.closed.Store(true)
		f.cancel()
		f.b.mu.Lock()
		delete(f.b.feeds, f)
		f.b.mu.Unlock()
	})
	return nil
}

// Cursors read "k1;<kind>.<layer>:<offset of partition 0>,<of partition 1>,…;…": for every
// partition of the feed, the offset after what was delivered, so a resumed feed neither
// repeats nor skips a record on any partition.
const cursorVersion = "k1"

func (f *feed) encodeCursor(pos []int64) string {
	var sb strings.Builder
	sb.WriteString(cursorVersion)
	last := ""
	for i, p := range f.parts {
		if p.topic != last {
			sb.WriteByte(';')
			sb.WriteString(strings.TrimPrefix(p.topic, f.prefix))
			sb.WriteByte(':')
			last = p.topic
		} else {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.FormatInt(pos[i], 10))
	}
	return sb.String()
}

func (f *feed) parseCursor(c string) (map[string][]int64, error) {
	bad := fmt.Errorf("%w: cursor %q is not a Kafka feed cursor", event.ErrInvalid, c)
	segs := strings.Split(c, ";")
	if segs[0] != cursorVersion {
		return nil, bad
	}
	out := map[string][]int64{}
	for _, s := range segs[1:] {
		name, offs, ok := strings.Cut(s, ":")
		if !ok || name == "" {
			return nil, bad
		}
		for _, o := range strings.Split(offs, ",") {
			n, err := strconv.ParseInt(o, 10, 64)
			if err != nil || n < 0 {
				return nil, bad
			}
			out[name] = append(out[name], n)
		}
	}
	return out, nil
}

// dedup remembers the last n (id, body hash) keys.
type dedup struct {
	n    int
	set  map[string]struct{}
	ring []string // grows to n, then is overwritten oldest first
	next int
}

func newDedup(n int) *dedup { return &dedup{n: n, set: map[string]struct{}{}} }

// seen reports whether (id, data) was seen, remembering it if not.
func (d *dedup) seen(id string, data []byte) bool {
	h := fnv.New64a()
	_, _ = h.Write(data)
	k := binary.BigEndian.AppendUint64([]byte(id+"\x00"), h.Sum64())
	key := string(k)
	if _, ok := d.set[key]; ok {
		return true
	}
	if len(d.ring) < d.n {
		d.ring = append(d.ring, key)
	} else {
		delete(d.set, d.ring[d.next])
		d.ring[d.next] = key
		d.next = (d.next + 1) % d.n
	}
	d.set[key] = struct{}{}
	return false
}
