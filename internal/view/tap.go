package view

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/RoaringBitmap/roaring/v2/roaring64"
	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/sync/semaphore"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/totals"
)

// On a broker whose log of a scenario is one sequence (broker.Sequencer: NATS), the view of
// a scenario whose stages run in the same process is fed by them (Tap) rather than by a
// second read of the log: they hand it what they read and what they published, with the
// sequence of each. The view applies each message as it is handed, in whatever order, and
// keeps the set of sequences it applied after the first one it has not (ahead); its cursor
// is the sequence before that one. The cursor is committed with what was applied, the ids
// of the events ahead of it included, so after a restart the view reads the log from the
// cursor and its id set makes what it had applied ahead of it count once.
//
// What nobody hands over (messages other processes stored, a batch a stage published again
// after a failure, what was stored while the view was not following) it reads from the log:
// when its cursor has not moved for GapWait while the log holds more, it reads the log from
// the cursor to the end the log had then, passing over what it applied already. It does not
// read a gap the stages are still to fill (the inputs of a stage behind, in a replay or a
// burst): they hand those over when they read them, so a replay reads the log's newest
// blocks once, not again for the view. The stages may run at most maxHanded messages ahead
// of what the view has taken. Every tick it asks the log's last sequence: once its cursor
// has passed that, it is current (HeldAt) as of the moment it asked.
const maxHanded = 1 << 12 // messages handed over and not yet taken at most

// errFilled ends a read of the log at the end the log had when the read began.
var errFilled = errors.New("gap filled")

// mark is the log's last sequence as of a moment.
type mark struct {
	at   time.Time
	last uint64
}

// maxMarks bounds the marks a view behind the log keeps (a tick's worth each).
const maxMarks = 64

// thin keeps every other mark, the oldest (the next to be passed) and the newest included: a
// view steadily more than maxMarks ticks behind still becomes current as of something.
func thin(marks []mark) []mark {
	out := marks[:0]
	for i, m := range marks {
		if i%2 == 0 || i == len(marks)-1 {
			out = append(out, m)
		}
	}
	return out
}

// tapped is one batch a stage handed over.
type tapped struct {
	msgs   []broker.Message
	seqs   []uint64
	weight int64 // of tap.handed
}

// Tap hands the view of scenario s messages a stage of this process read or published, each
// with its sequence in the scenario's log (consumers.Options.Tap). When the view is behind
// by maxHanded messages it waits for it to take some (a view that reads the log instead
// would cost more, and would have to catch up anyway); when it is not following s by its
// tap, or stops, it returns at once and the view reads those messages from the log.
func (v *View) Tap(s string, msgs []broker.Message, seqs []uint64) {
	t, ok := v.taps.Load(s)
	if !ok || len(msgs) == 0 {
		return
	}
	tp := t.(*tap)
	n := int64(min(len(msgs), maxHanded))
	if tp.handed.Acquire(tp.life, n) != nil {
		return
	}
	select {
	case tp.ch <- tapped{msgs, seqs, n}:
	case <-tp.life.Done():
		tp.handed.Release(n)
	}
}

// tap is where the stages hand a scenario's messages to its follower: handed bounds what
// waits there (and so the memory it holds) in messages, whatever the batches' sizes; life
// ends when the follower stops.
type tap struct {
	ch     chan tapped
	handed *semaphore.Weighted
	life   context.Context
}

// message is a message handed over, as the applier takes deliveries.
type message struct {
	m   *broker.Message
	seq uint64
}

func (d message) Message() *broker.Message { return d.m }
func (d message) Seq() uint64              { return d.seq }
func (d message) Cursor() string           { return strconv.FormatUint(d.seq, 10) }
func (d message) Position() string         { return d.Cursor() }
func (d message) Time() time.Time          { return time.Time{} }
func (d message) Deliveries() int          { return 1 }

// followTapped is follow for a broker whose log is one sequence, fed by Tap.
func (v *View) followTapped(ctx context.Context, s string, sq broker.Sequencer) error {
	life, stop := context.WithCancel(ctx)
	defer stop() // before the tap is dropped: a stage waiting in Tap returns
	tp := &tap{ch: make(chan tapped, 1024), handed: semaphore.NewWeighted(maxHanded), life: life}
	ch := tp.ch
	if _, loaded := v.taps.LoadOrStore(s, tp); loaded {
		return fmt.Errorf("view %s: %w: followed twice", s, broker.ErrConflict)
	}
	defer v.taps.Delete(s)
	sel := broker.Selector{Scenario: s, Kinds: totals.Kinds}
	var a *applier
	var next uint64 = 1 // the sequence to apply next
	err := v.with(func(db *pebble.DB) error {
		var cur string
		var err error
		a, cur, err = newApplier(db, s)
		if cur != "" && err == nil {
			var n uint64
			if n, err = strconv.ParseUint(cur, 10, 64); err == nil {
				next = n + 1
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("view %s: %w", s, err)
	}
	defer a.close()

	var ahead roaring64.Bitmap // sequences after next applied already, as they were handed over
	var lastGauge time.Time
	if v.Committed != nil { // what a restart resumes from is right at once
		v.Committed(ctx, s)
		lastGauge = time.Now()
	}
	// commit commits what was applied, with next-1 for the cursor; current says the view has
	// applied the whole log.
	commit := func(current bool) error {
		wrote := a.events > 0
		a.last = message{seq: next - 1}
		ahead.RemoveRange(0, next)
		a.ahead = ""
		if !ahead.IsEmpty() {
			a.ahead = strconv.FormatUint(ahead.Maximum(), 10)
		}
		err := v.with(func(*pebble.DB) error { return a.commit() })
		if err == nil && wrote && v.Committed != nil && (current || time.Since(lastGauge) >= gaugeInterval) {
			v.Committed(ctx, s)
			lastGauge = time.Now()
		}
		return err
	}
	// pass moves next past the sequences applied ahead of it.
	pass := func() {
		for ahead.Contains(next) {
			next++
		}
	}
	// take applies the message at seq, unless it did before, and moves next past what it
	// applied.
	take := func(m *broker.Message, seq uint64) (bool, error) {
		if seq < next || ahead.Contains(seq) {
			return false, nil
		}
		if sub, err := event.ParseSubject(m.Subject); err == nil && sel.Selects(sub) {
			if err := v.with(func(*pebble.DB) error { return a.apply(message{m, seq}) }); err != nil {
				return false, fmt.Errorf("view %s: %w", s, err)
			}
		}
		if seq == next {
			next++
			pass()
		} else {
			ahead.Add(seq)
		}
		if a.events >= flushBatch {
			return true, commit(false)
		}
		return true, nil
	}
	// fill reads the log from next to its last message as of now, and applies what the view
	// has not.
	fill := func() error {
		last, err := sq.LastSeq(ctx, s)
		if err != nil || last < next {
			return err
		}
		o := broker.FeedOptions{Selector: sel, FromStart: true, UntilEnd: true}
		if next > 1 {
			o.Cursor = strconv.FormatUint(next-1, 10)
		}
		err = broker.Each(ctx, v.B, o, func(d broker.Delivery) error {
			if d.Seq() > last {
				return errFilled
			}
			v.fromLog.Add(1)
			_, err := take(d.Message(), d.Seq())
			return err
		})
		if err != nil && !errors.Is(err, errFilled) {
			return err
		}
		next = max(next, last+1) // what the feed passed over is not selected
		pass()
		return nil
	}
	if err := fill(); err != nil { // what was stored while the view was not following
		return errors.Join(err, commit(false))
	}
	if err := commit(true); err != nil {
		return err
	}
	delay := v.FlushDelay
	if delay <= 0 {
		delay = 50 * time.Millisecond
	}
	gapWait := v.GapWait
	if gapWait <= 0 {
		gapWait = time.Second
	}
	tick := time.NewTicker(delay)
	defer tick.Stop()
	moved := time.Now() // when next last advanced, or the view last found itself current
	var marks []mark    // the log's last sequence as asked at each tick, not yet applied
	for {
		select {
		case <-ctx.Done():
			return commit(false)
		case t := <-ch:
			tp.handed.Release(t.weight)
			before := next
			for i, seq := range t.seqs {
				took, err := take(&t.msgs[i], seq)
				if err != nil {
					return errors.Join(err, commit(false))
				}
				if took {
					v.fromTap.Add(1)
				}
			}
			if next != before {
				moved = time.Now()
			}
		case <-tick.C:
			asked := time.Now()
			last, err := sq.LastSeq(ctx, s)
			if err != nil {
				if ctx.Err() != nil {
					return commit(false)
				}
				return errors.Join(err, commit(false))
			}
			if err := commit(last < next); err != nil {
				return err
			}
			// Once everything up to a last sequence is committed, the view is current as of
			// when that was asked: at most a tick or two behind under a steady load.
			marks = append(marks, mark{asked, last})
			for len(marks) > 0 && marks[0].last < next {
				v.currency(s).set(marks[0].at)
				marks = marks[1:]
			}
			if len(marks) > maxMarks {
				marks = thin(marks)
			}
			if last < next {
				moved = asked
				continue
			}
			if time.Since(moved) >= gapWait {
				if err := fill(); err != nil {
					return errors.Join(err, commit(false))
				}
				moved = time.Now()
			}
		}
	}
}

// Attach makes v the view of the stages o configures, as run has it: v follows every
// scenario they serve (o.Followers["view"]), its id set answers them about every input
// (o.IDs, o.EveryInput) and they hand it what they read and publish (o.Tap, v.Tapped).
func (v *View) Attach(o *consumers.Options) {
	if o.Followers == nil {
		o.Followers = map[string]consumers.Follower{}
	}
	o.Followers["view"] = v.Follow
	o.IDs, o.EveryInput, o.Tap = v, true, v.Tap
	v.Tapped = true
}
