// Package view keeps, per scenario, a materialized view of its log in one Pebble database:
// the exact sums of every layer's quantities by (layer, region, key — injected or derived)
// in year, month, day and hour buckets of event time, the applied events themselves in one
// record per commit and hour (so ranges that cut through an hour are still exact), the set of
// applied ids with each one's broker position (the trace index, and the answer to "is this id
// held"), and the feed cursor applied up to. All of it is committed in one Pebble batch per
// feed batch, so a restart resumes exactly where the committed state ends: an event is never
// counted twice nor dropped, whenever the process dies.
//
// One follower per scenario (Follow) feeds the view, the trace index and, through Committed,
// the demand gauges; totals, series and snapshots are answered from a Pebble snapshot, at a
// cost that grows with the buckets a range touches, not with the events.
package view

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/rs/zerolog"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/lineage"
	"github.com/layercake/cascade/internal/totals"
	"github.com/layercake/cascade/internal/tree"
)

// Memory: Pebble's block cache (32 MiB: the id lookups and bucket reads of every applied
// event stay in it) and memtables are fixed here, and at most keptBuckets rows are kept
// between commits; the view itself lives on disk.
const (
	cacheSize     = 32 << 20
	memTable      = 4 << 20
	memTables     = 2
	flushBatch    = 10_000  // events per commit at most
	recentIDs     = 1 << 15 // ids the applier keeps in each of its two generations (applied asks both)
	keptBuckets   = 16_384  // bucket rows kept in memory between commits at most
	gaugeInterval = time.Second
)

// Broker is what the view needs: the port, plus fetching one message by its position (the
// trace index's lookups).
type Broker interface {
	broker.Broker
	broker.Getter
}

// View is the materialized view of every scenario it follows, in one Pebble database under
// Dir. It is a lineage Finder per scenario (Finder).
type View struct {
	B   Broker
	Dir string
	Log zerolog.Logger
	// FlushDelay bounds how long an applied event waits before it is committed and so
	// visible to queries; default 50ms.
	FlushDelay time.Duration
	// Committed, when set, is called when Follow starts (for what is committed already),
	// after a commit once the feed is caught up, and at least every second while it is not
	// (run sets the demand gauges from it).
	Committed func(ctx context.Context, scenario string)
	// HeldWait bounds how long HeldAt waits for the view to be current; default 5s.
	HeldWait time.Duration
	// Tapped says the stages of this process hand the view what they read and publish
	// (Tap, consumers.Options.Tap): on a broker whose log is one sequence
	// (broker.Sequencer) Follow applies those, reading the log only for what it was not
	// handed, instead of reading all of it a second time.
	Tapped bool
	// GapWait is how long the view of a tapped scenario waits for a sequence nobody has
	// handed over before it reads the log for it (while its cursor does not move); default 1s.
	GapWait time.Duration

	taps    sync.Map     // scenario -> *tap, while Follow takes them
	fromTap atomic.Int64 // messages Follow applied as the stages handed them over
	fromLog atomic.Int64 // messages Follow read from the log

	current sync.Map     // scenario -> *currency
	mu      sync.RWMutex // held for reading by every use of db, for writing to open or close it
	db      *pebble.DB
	closed  bool
}

// Keys, all under "<scenario>\x00" (scenario names hold no NUL, event.ValidName):
//
//	i\x00<id>                                 → broker position of the event (trace; the id set)
//	p                                         → the feed cursor applied up to
//	a                                         → the highest sequence applied past the cursor,
//	                                            while there is one (a tapped view: followTapped)
//	s                                         → the format, while the view may skip looking
//	                                            up the ids of events derived in the process
//	                                            (applier.skips)
//	b\x00<g><start>\x00<layer>\x00<region>\x00<key> → exact sums of the row in the calendar
//	                                            bucket of grain g (y year, m month, d day, h hour)
//	c\x00<hour><id>                           → the events of that hour one commit applied (a
//	                                            chunk: their rows, times and quantities), <id>
//	                                            the first's (format 1 kept e\x00<time><id>
//	                                            per event instead; upgrade rewrites those)
//
// <start> and <hour> are 8-byte big-endian, sign-flipped Unix seconds of the bucket's UTC
// start, so keys sort by time. Years, months and days roll the hours up, so a range costs its
// whole years, the months, days and hours at its edges, and the chunks of at most two cut
// hours.
func prefix(s string) string    { return s + "\x00" }
func idKey(s, id string) []byte { return appendIDKey(nil, s, id) }
func appendIDKey(b []byte, s, id string) []byte {
	return append(append(append(b, s...), "\x00i\x00"...), id...)
}
func posKey(s string) []byte   { return []byte(prefix(s) + "p") }
func skipsKey(s string) []byte { return []byte(prefix(s) + "s") }
func aheadKey(s string) []byte { return []byte(prefix(s) + "a") }
func bucketPrefix(s string, g grain) string {
	return prefix(s) + "b\x00" + string(grainCodes[g])
}
func chunkPrefix(s string) string { return prefix(s) + "c\x00" }
func chunkKey(s string, hour int64, first string) []byte {
	return []byte(chunkPrefix(s) + string(be(hour)) + first)
}
func scenarioEnd(s string) []byte   { return []byte(s + "\x01") }
func scenarioStart(s string) []byte { return []byte(prefix(s)) }
func bucketKey(s string, g grain, start int64, r rowID) string {
	return bucketPrefix(s, g) + string(be(start)) + "\x00" + r.String()
}

// grain is a bucket size, coarsest first.
type grain int

const (
	year grain = iota
	month
	dayGrain
	hour
	events // no bucket: the events' own records
)

var grainCodes = [...]byte{'y', 'm', 'd', 'h'}

// floor is the start of the grain-g bucket holding t.
func (g grain) floor(t time.Time) time.Time {
	t = t.UTC()
	y, m, d := t.Date()
	switch g {
	case year:
		return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
	case month:
		return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	case hour:
		return time.Date(y, m, d, t.Hour(), 0, 0, 0, time.UTC)
	}
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// next is the start of the bucket after the one starting at t.
func (g grain) next(t time.Time) time.Time {
	switch g {
	case year:
		return t.AddDate(1, 0, 0)
	case month:
		return t.AddDate(0, 1, 0)
	case hour:
		return t.Add(time.Hour)
	}
	return t.AddDate(0, 0, 1)
}

// ceil is the first bucket start at or after t.
func (g grain) ceil(t time.Time) time.Time {
	if f := g.floor(t); f.Equal(t) {
		return f
	} else {
		return g.next(f)
	}
}

func be(v int64) []byte {
	u := uint64(v) ^ 1<<63
	return []byte{byte(u >> 56), byte(u >> 48), byte(u >> 40), byte(u >> 32), byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)}
}

func unbe(b []byte) int64 {
	var u uint64
	for _, c := range b[:8] {
		u = u<<8 | uint64(c)
	}
	return int64(u ^ 1<<63)
}

// with runs fn on the database, opened on first use; after Close it fails with
// broker.ErrClosed. fn must not call with: behind a Close waiting for the lock it would wait
// for itself.
func (v *View) with(fn func(db *pebble.DB) error) error {
	v.mu.RLock()
	if v.db == nil { // only then the write lock: it would wait for every use, a commit's sync included
		v.mu.RUnlock()
		if err := v.open(); err != nil {
			return err
		}
		v.mu.RLock()
	}
	defer v.mu.RUnlock()
	if v.db == nil {
		return fmt.Errorf("view: %w", broker.ErrClosed)
	}
	return fn(v.db)
}

func (v *View) open() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return fmt.Errorf("view: %w", broker.ErrClosed)
	}
	if v.db != nil {
		return nil
	}
	dir := filepath.Join(v.Dir, "view")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("view dir: %w", err)
	}
	o := &pebble.Options{
		CacheSize:                   cacheSize,
		MemTableSize:                memTable,
		MemTableStopWritesThreshold: memTables,
		Logger:                      pebbleLog{v.Log},
	}
	// Every applied event asks whether its id is held: Bloom filters answer the (usual) no
	// without reading a block. The ids are hashes, spread over the whole key space, so each
	// flushed memtable overlaps all of the base level and compacting it in rewrites that:
	// compactions were 11% of the CPU at 1,000 signals/s. Letting L0 hold more files before
	// they are compacted, into a larger base level, rewrites less (the filters keep the
	// lookups over the extra L0 files cheap), and the blocks are left uncompressed (hex ids
	// and float sums barely compress; Snappy cost CPU in every flush and compaction). Both
	// cut the CPU per signal: by ~7% in a 10,000-signal bench, ~12% in a 50,000 one
	// (docs/performance.md).
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		o.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	o.L0CompactionThreshold, o.L0StopWritesThreshold, o.LBaseMaxBytes = 16, 64, 256<<20
	db, err := pebble.Open(dir, o)
	if err != nil {
		return fmt.Errorf("view %s: %w", dir, err)
	}
	if err := v.upgrade(db); err != nil {
		return errors.Join(fmt.Errorf("view %s: %w", dir, err), db.Close())
	}
	v.db = db
	return nil
}

// pebbleLog sends Pebble's log to ours: its info at debug level.
type pebbleLog struct{ l zerolog.Logger }

func (p pebbleLog) Infof(f string, args ...any)  { p.l.Debug().Msgf("view: "+f, args...) }
func (p pebbleLog) Errorf(f string, args ...any) { p.l.Error().Msgf("view: "+f, args...) }
func (p pebbleLog) Fatalf(f string, args ...any) { p.l.Fatal().Msgf("view: "+f, args...) }

// Close closes the database; the View is not used after.
func (v *View) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.closed = true
	if v.db == nil {
		return nil
	}
	err := v.db.Close()
	v.db = nil
	return err
}

// Follow applies scenario s from where its view left off until ctx ends.
func (v *View) Follow(ctx context.Context, s string) error {
	if sq, ok := v.B.(broker.Sequencer); ok && v.Tapped {
		return v.followTapped(ctx, s, sq)
	}
	return v.follow(ctx, s, false)
}

// Sources counts the messages Follow took in since v was made, as the stages handed them
// over (Tapped) and as it read them from the log.
func (v *View) Sources() (tapped, read int64) { return v.fromTap.Load(), v.fromLog.Load() }

// Rebuild drops what the view holds of scenario s and applies its log again from the start
// up to what the broker holds now.
func (v *View) Rebuild(ctx context.Context, s string) error {
	err := v.with(func(db *pebble.DB) error {
		return db.DeleteRange(scenarioStart(s), scenarioEnd(s), pebble.Sync)
	})
	if err != nil {
		return fmt.Errorf("view %s: %w", s, err)
	}
	return v.follow(ctx, s, true)
}

// Held reports whether the view of scenario s has applied an event with this id (as of its
// last commit).
func (v *View) Held(s, id string) (bool, error) {
	var held bool
	err := v.with(func(db *pebble.DB) error {
		_, closer, err := db.Get(idKey(s, id))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		held = true
		return closer.Close()
	})
	if err != nil {
		return false, fmt.Errorf("view %s: %w", s, err)
	}
	return held, nil
}

// Position is the feed cursor the view of scenario s has applied up to ("" before any).
func (v *View) Position(s string) (string, error) {
	var pos string
	err := v.with(func(db *pebble.DB) error {
		var err error
		pos, err = get(db, posKey(s))
		return err
	})
	return pos, err
}

// get reads key from r ("" when absent).
func get(r pebble.Reader, key []byte) (string, error) {
	val, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	out := string(val)
	return out, closer.Close()
}

// seeker looks keys up through one iterator that reads the Bloom filters of every level: a
// point Get (pebble.DB.Get) skips those of the last level, where most of a view's keys end
// up, and so reads an index and a data block for every id it does not hold.
type seeker struct{ it *pebble.Iterator }

func newSeeker(r pebble.Reader) (*seeker, error) {
	it, err := r.NewIter(&pebble.IterOptions{UseL6Filters: true})
	if err != nil {
		return nil, err
	}
	return &seeker{it}, nil
}

// get reads key ("" when absent), as of when the seeker was made.
func (k *seeker) get(key []byte) (string, error) {
	if !k.it.SeekPrefixGE(key) || !bytes.Equal(k.it.Key(), key) {
		return "", k.it.Error()
	}
	v, err := k.it.ValueAndErr()
	return string(v), err
}

func (k *seeker) close() error { return k.it.Close() }

// applier is one feed batch being applied: the ids and bucket sums it changed, kept in memory
// until they are written with the cursor in one Pebble batch.
//
// Every event's id is looked up before it is applied, unless a stage of this process
// derived it (broker.Message.Derived) from a parent the applier has just applied, not held
// before: its id, DerivedID of that parent's, cannot be held either. That is so only while
// no event whose id has DerivedID's form was applied without its parent being held (a
// signal given such an id, or demand whose parent the log's retention removed before the
// view read it): skips records that none was, since the view was empty, in the database.
// An event that makes it false is applied (its id was looked up), and from then on every id
// of the scenario is looked up, until Rebuild. The stages' broker stores what one stage
// publishes in order, so a parent comes before what it derives: nearly all of the lookups
// are of the inputs alone.
type applier struct {
	db      *pebble.DB
	s       string
	b       *pebble.Batch
	ids     map[string]struct{} // ids applied, not held before: this batch's and the last ones'
	older   map[string]struct{} // the generation of ids before those
	skips   bool
	skipsDB bool                // skips as committed
	buckets map[bucket]*acc     // rows read or changed, as they stand in this batch
	dirty   map[bucket]struct{} // rows changed in this batch
	hours   map[bucket]*acc     // this batch's events summed by row and hour, rolled up at commit
	chunks  map[int64]*chunk    // the events applied in this batch, by their hour's start
	last    broker.Delivery     // the batch's last: its cursor is committed with it
	ahead   string              // the highest sequence applied past the cursor, "" for none; committed with it
	aheadDB string              // ahead as committed
	key     []byte              // scratch for the id keys apply looks up and writes (Pebble copies them)
	events  int
	seek    *seeker // the committed state, made at the batch's first lookup
	failed  error   // the commit that failed: the follower stops, and a restart applies the batch again
}

// bucket is a row in the bucket of grain g starting at start (Unix seconds).
type bucket struct {
	g     grain
	start int64
	row   rowID
}

func (k bucket) key(s string) string { return bucketKey(s, k.g, k.start, k.row) }

// reset starts the next batch. The bucket rows stay, as they were committed, for the next
// batch to add to without reading them back (events mostly come in time order, so the same
// hours, days, months and years come again), up to keptBuckets of them.
func (a *applier) reset() {
	if a.seek != nil {
		_ = a.seek.close() // a read-only iterator: nothing to lose
		a.seek = nil
	}
	a.b.Reset()
	if len(a.ids) >= recentIDs { // a new generation, in the map of the oldest
		a.ids, a.older = a.older, a.ids
		clear(a.ids)
	}
	if len(a.buckets) > keptBuckets {
		clear(a.buckets)
	}
	clear(a.dirty)
	clear(a.hours)
	clear(a.chunks)
	a.events = 0
}

// apply adds delivery d: nothing when its id is held already, else its id and position, and
// when it is counted the event to its hour's chunk and its quantities to its row's sums of
// the hour (rollUp adds those to the day, month and year at commit). When it fails it has
// changed nothing, and the cursor commit writes stays before d.
func (a *applier) apply(d broker.Delivery) error {
	if err := a.add(d); err != nil {
		return err
	}
	a.last = d
	a.events++
	return nil
}

func (a *applier) add(d broker.Delivery) error {
	m := d.Message()
	id, ev, p := decoded(m)
	if id == "" {
		return nil
	}
	if a.applied(id) {
		return nil
	}
	if !a.skips || !m.Derived || ev == nil || !a.applied(ev.CausationID) {
		held, err := a.get(a.idKey(id))
		if err != nil || held != "" {
			return err
		}
		if a.skips {
			safe, err := a.safe(m.Subject, ev, id)
			if err != nil {
				return err
			}
			a.skips = safe
		}
	}
	if err := a.b.Set(a.idKey(id), []byte(broker.PositionOf(d)), nil); err != nil {
		return err
	}
	a.ids[id] = struct{}{}
	if ev == nil {
		return nil
	}
	r, ok := counted(m.Subject, ev, p)
	if !ok {
		return nil
	}
	qs := event.Quantities(p)
	h := hour.floor(ev.Time)
	c := a.chunks[h.Unix()]
	if c == nil {
		c = newChunk(h, id)
		a.chunks[h.Unix()] = c
	}
	c.add(ev.Time, r, qs)
	k := bucket{hour, h.Unix(), r}
	sum := a.hours[k]
	if sum == nil {
		sum = &acc{}
		a.hours[k] = sum
	}
	sum.add(qs)
	return nil
}

// decoded is message m's id (its event's when it has none), event and payload: as a stage
// handed them over decoded already, else decoded here (nil when they do not decode).
func decoded(m *broker.Message) (string, *event.Event, event.Payload) {
	ev, p := m.Event, m.Payload
	if ev == nil {
		if evd, pd, err := event.Decode(m.Data); err == nil {
			ev, p = evd, pd
		}
	}
	id := m.ID
	if ev != nil && id == "" {
		id = ev.ID
	}
	return id, ev, p
}

// counted is the row event ev (stored on subject, with payload p) adds to, unless the totals
// do not count it.
func counted(subject string, ev *event.Event, p event.Payload) (rowID, bool) {
	injected, ok := totals.Stored(subject, ev)
	if !ok {
		return rowID{}, false
	}
	return rowID{layer: event.LayerOf(ev.Type), region: ev.Subject, key: totals.RowKey(p, injected)}, true
}

// applied says whether this batch or one of the recent ones applied id (with between
// recentIDs and twice that many kept).
func (a *applier) applied(id string) bool {
	if _, ok := a.ids[id]; ok {
		return true
	}
	_, ok := a.older[id]
	return ok
}

// safe says whether applying the event id (ev, stored on subject) keeps skips true: its id
// cannot be DerivedID's, or it is demand whose parent is held. The view takes a demand
// event's id for DerivedID of its causationid's, as the stages make every one; demand
// published straight onto the broker with an id forged to be that of a future parent's
// child could be counted twice (as demand forged otherwise is counted wrongly anyway).
func (a *applier) safe(subject string, ev *event.Event, id string) (bool, error) {
	if !event.MayBeDerivedID(id) {
		return true, nil
	}
	if ev == nil || ev.CausationID == "" || ev.ID != id {
		return false, nil
	}
	if sub, err := event.ParseSubject(subject); err != nil || sub.Kind != event.KindDemand {
		return false, nil
	}
	if a.applied(ev.CausationID) {
		return true, nil
	}
	held, err := a.get(a.idKey(ev.CausationID))
	return held != "", err
}

// idKey is idKey(a.s, id) in a.key, valid until the next call.
func (a *applier) idKey(id string) []byte {
	a.key = appendIDKey(a.key[:0], a.s, id)
	return a.key
}

// get reads key from the committed state ("" when absent).
func (a *applier) get(key []byte) (string, error) {
	seek, err := a.seeker()
	if err != nil {
		return "", err
	}
	return seek.get(key)
}

// rollUp adds the batch's hours to their rows in every grain, read from the committed state
// where the batch has not read them yet.
func (a *applier) rollUp() error {
	for k, d := range a.hours {
		at := time.Unix(k.start, 0)
		for g := range events {
			b := bucket{g, g.floor(at).Unix(), k.row}
			sum := a.buckets[b]
			if sum == nil {
				raw, err := a.get([]byte(b.key(a.s)))
				if err != nil {
					return err
				}
				if sum, err = decodeAcc([]byte(raw)); err != nil {
					return fmt.Errorf("view %s: bucket %q: %w", a.s, b.key(a.s), err)
				}
				a.buckets[b] = sum
			}
			sum.merge(d)
			a.dirty[b] = struct{}{}
		}
	}
	return nil
}

// seeker is the batch's view of the committed state, made at its first lookup.
func (a *applier) seeker() (*seeker, error) {
	if a.seek == nil {
		var err error
		if a.seek, err = newSeeker(a.db); err != nil {
			return nil, err
		}
	}
	return a.seek, nil
}

// close releases the batch and the seeker.
func (a *applier) close() {
	if a.seek != nil {
		_ = a.seek.close()
		a.seek = nil
	}
	_ = a.b.Close()
}

// newApplier starts applying scenario s, and reports where its view left off.
func newApplier(db *pebble.DB, s string) (a *applier, cursor string, err error) {
	a = &applier{db: db, s: s, b: db.NewBatch(), ids: map[string]struct{}{}, older: map[string]struct{}{}, buckets: map[bucket]*acc{}, dirty: map[bucket]struct{}{}, hours: map[bucket]*acc{}, chunks: map[int64]*chunk{}}
	if cursor, err = get(db, posKey(s)); err != nil {
		return nil, "", err
	}
	marker, err := get(db, skipsKey(s))
	if err != nil {
		return nil, "", err
	}
	a.skipsDB = marker == format // not one a format-2 build left, which nothing kept true

	a.skips = cursor == "" || a.skipsDB
	if a.aheadDB, err = get(db, aheadKey(s)); err != nil {
		return nil, "", err
	}
	a.ahead = a.aheadDB
	return a, cursor, nil
}

// commit writes the changed bucket rows, the events' chunks and the cursor with the ids,
// atomically. Once it has failed it fails again: its rows were merged in memory already.
func (a *applier) commit() error {
	if a.failed != nil { // its rows are merged already: committing again would count them twice
		return a.failed
	}
	if a.events == 0 {
		return nil
	}
	if err := a.write(); err != nil {
		a.failed = err
		return err
	}
	a.skipsDB, a.aheadDB = a.skips, a.ahead
	a.reset()
	return nil
}

// write rolls the batch up into its rows and commits them with the rest.
func (a *applier) write() error {
	if err := a.rollUp(); err != nil {
		return err
	}
	for k := range a.dirty {
		if err := a.b.Set([]byte(k.key(a.s)), a.buckets[k].encode(), nil); err != nil {
			return err
		}
	}
	for h, c := range a.chunks {
		if err := a.b.Set(chunkKey(a.s, h, c.first), c.encode(), nil); err != nil {
			return err
		}
	}
	if err := a.b.Set(posKey(a.s), []byte(a.last.Cursor()), nil); err != nil {
		return err
	}
	if a.ahead != a.aheadDB {
		if err := setOrDelete(a.b, aheadKey(a.s), a.ahead); err != nil {
			return err
		}
	}
	if a.skips != a.skipsDB {
		mark := ""
		if a.skips {
			mark = format
		}
		if err := setOrDelete(a.b, skipsKey(a.s), mark); err != nil {
			return err
		}
	}
	if err := a.b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("view %s: %w", a.s, err)
	}
	return nil
}

func (v *View) follow(ctx context.Context, s string, untilEnd bool) error {
	o := broker.FeedOptions{Selector: broker.Selector{Scenario: s, Kinds: totals.Kinds}, FromStart: true, UntilEnd: untilEnd}
	var a *applier
	err := v.with(func(db *pebble.DB) (err error) {
		a, o.Cursor, err = newApplier(db, s)
		return err
	})
	if err != nil {
		return fmt.Errorf("view %s: %w", s, err)
	}
	defer a.close()
	fctx, cancel := context.WithCancel(ctx)
	f, err := v.B.Feed(fctx, o)
	if err != nil {
		cancel()
		return err
	}
	ch, done := broker.Pump(fctx, f, 1024)
	defer func() { cancel(); _ = f.Close(); <-done }()

	delay := v.FlushDelay
	if delay <= 0 {
		delay = 50 * time.Millisecond
	}
	// The view counts as current (HeldAt) once its feed has delivered something: before that
	// its Pending says nothing of the log.
	seen := false
	var pending uint64 // the feed's Pending after the last delivery received
	var lastGauge time.Time
	if v.Committed != nil { // what a restart resumes from is right at once
		v.Committed(ctx, s)
		lastGauge = time.Now()
	}
	commit := func() error {
		err := v.with(func(*pebble.DB) error { return a.commit() })
		if err == nil && seen && pending == 0 && len(ch) == 0 {
			v.caughtUp(s, time.Now())
		}
		if err == nil && v.Committed != nil && (pending == 0 || time.Since(lastGauge) >= gaugeInterval) {
			v.Committed(ctx, s)
			lastGauge = time.Now()
		}
		return err
	}
	var flush <-chan time.Time    // set while applied events wait to be committed
	idle := time.NewTicker(delay) // an idle feed, caught up, keeps the view current
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return commit()
		case now := <-idle.C:
			if seen && flush == nil && pending == 0 && len(ch) == 0 {
				v.caughtUp(s, now)
			}
		case <-flush:
			if err := commit(); err != nil {
				return err
			}
			flush = nil
		case n := <-ch:
			if n.Err != nil {
				if ctx.Err() != nil || (untilEnd && errors.Is(n.Err, io.EOF)) {
					return commit()
				}
				return errors.Join(n.Err, commit())
			}
			seen, pending = true, n.Pending
			v.fromLog.Add(1)
			if err := v.with(func(*pebble.DB) error { return a.apply(n.Delivery) }); err != nil { // not past Close
				return fmt.Errorf("view %s: %w", s, err)
			}
			switch {
			case a.events >= flushBatch:
				if err := commit(); err != nil {
					return err
				}
				flush = nil
			case flush == nil:
				flush = time.After(delay)
			}
		}
	}
}

// Finder is the trace index of scenario s: a Pebble lookup and a broker Get per event.
func (v *View) Finder(s string) lineage.Finder { return &finder{v: v, s: s} }

type finder struct {
	v *View
	s string
}

func (f *finder) Find(ctx context.Context, id, _ string) (*tree.Node, bool, error) {
	var pos string
	err := f.v.with(func(db *pebble.DB) error {
		var err error
		pos, err = get(db, idKey(f.s, id))
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("view %s: %w", f.s, err)
	}
	if pos == "" {
		return nil, false, nil
	}
	m, err := f.v.B.Get(ctx, f.s, pos)
	if errors.Is(err, broker.ErrNotFound) {
		return nil, false, nil // retention removed it
	}
	if err != nil {
		return nil, false, err
	}
	ev, p, err := event.Decode(m.Data)
	if err != nil {
		return nil, false, fmt.Errorf("stored event %s: %w", id, err)
	}
	if ev.ID != id {
		return nil, false, nil // the scenario was removed and made anew: the position is reused
	}
	return &tree.Node{Event: ev, Payload: p}, true, nil
}

// Trace is lineage.Trace over the index of scenario s.
func (v *View) Trace(ctx context.Context, s, id string) (*lineage.Answer, error) {
	root, err := lineage.Trace(ctx, v.B, v.Finder(s), s, id)
	if err != nil {
		return nil, err
	}
	return &lineage.Answer{Via: lineage.ViaIndex, Root: root}, nil
}

// Serve answers trace requests from other processes on lineage.Subject until ctx ends; an
// error's class travels with the reply (broker.ErrorCode).
func (v *View) Serve(ctx context.Context, r broker.Responder) error {
	return r.Respond(ctx, lineage.Subject, func(ctx context.Context, raw []byte) ([]byte, error) {
		var req lineage.Request
		if err := json.Unmarshal(raw, &req); err != nil {
			return nil, fmt.Errorf("%w: trace request: %w", event.ErrInvalid, err)
		}
		a, err := v.Trace(ctx, req.Scenario, req.ID)
		if err != nil {
			return nil, err
		}
		return json.Marshal(a)
	})
}

// setOrDelete sets key to v in batch b, or deletes it when v is "".
func setOrDelete(b *pebble.Batch, key []byte, v string) error {
	if v == "" {
		return b.Delete(key, nil)
	}
	return b.Set(key, []byte(v), nil)
}
