package lineage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/tree"
)

// Broker is what the index needs: the port, plus fetching one message by its position.
type Broker interface {
	broker.Broker
	broker.Getter
}

// Index memory: Pebble's block cache and its memtables are the memory that grows with
// use, so both are fixed here, explicitly (they equal Pebble's defaults, which
// scripts/storebench measured: 34 MiB peak RSS for a whole process putting and looking up 1M
// ids). The cache holds 8 MiB of blocks; writes go to 4 MiB memtables, of which at most 2 are
// queued for flushing before writes wait. The index therefore stays near 16 MiB plus open
// table handles however many ids it holds; the ids themselves live on disk.
const (
	indexCache     = 8 << 20
	indexMemTable  = 4 << 20
	indexMemTables = 2
	// flushBatch ids are committed together at most; a smaller batch is committed once it
	// has waited FlushDelay.
	flushBatch = 10_000
)

// Indexer follows scenarios and keeps, in one Pebble database in Dir, each event id's
// broker position and, per scenario, the feed cursor up to which it is indexed. The ids
// and the cursor that covers them are committed in one batch, so a restart resumes
// exactly where the committed ids end. It is a Finder per scenario (Finder).
type Indexer struct {
	B   Broker
	Dir string
	Log zerolog.Logger
	// FlushDelay bounds how long an indexed id waits before it is committed and so visible
	// to Trace; default 50ms.
	FlushDelay time.Duration

	mu     sync.RWMutex // held for reading by every use of db, for writing to open or close it
	db     *pebble.DB
	closed bool
}

// Keys: "<scenario>\x00i\x00<event id>" → position, "<scenario>\x00c" → feed cursor.
// Scenario names hold no NUL (event.ValidName), so no scenario's keys overlap another's.
func idKey(s, id string) []byte { return []byte(s + "\x00i\x00" + id) }
func cursorKey(s string) []byte { return []byte(s + "\x00c") }

// with runs fn on the database, opened on first use; after Close it fails with
// broker.ErrClosed, so a trace answered during shutdown never meets a closed database.
func (x *Indexer) with(fn func(db *pebble.DB) error) error {
	if err := x.open(); err != nil {
		return err
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.db == nil {
		return fmt.Errorf("index: %w", broker.ErrClosed)
	}
	return fn(x.db)
}

func (x *Indexer) open() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return fmt.Errorf("index: %w", broker.ErrClosed)
	}
	if x.db != nil {
		return nil
	}
	dir := filepath.Join(x.Dir, "pebble")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("index dir: %w", err)
	}
	db, err := pebble.Open(dir, &pebble.Options{
		CacheSize:                   indexCache,
		MemTableSize:                indexMemTable,
		MemTableStopWritesThreshold: indexMemTables,
		Logger:                      pebbleLog{x.Log},
	})
	if err != nil {
		return fmt.Errorf("index %s: %w", dir, err)
	}
	x.db = db
	return nil
}

// pebbleLog sends Pebble's log to ours: its info at debug level.
type pebbleLog struct{ l zerolog.Logger }

func (p pebbleLog) Infof(f string, args ...any)  { p.l.Debug().Msgf("index: "+f, args...) }
func (p pebbleLog) Errorf(f string, args ...any) { p.l.Error().Msgf("index: "+f, args...) }
func (p pebbleLog) Fatalf(f string, args ...any) { p.l.Fatal().Msgf("index: "+f, args...) }

// Follow indexes scenario s from where its index left off until ctx ends.
func (x *Indexer) Follow(ctx context.Context, s string) error {
	o := broker.FeedOptions{Selector: selector(s), FromStart: true}
	var b *pebble.Batch
	err := x.with(func(db *pebble.DB) error {
		b = db.NewBatch()
		cur, closer, err := db.Get(cursorKey(s))
		if err == nil {
			o.Cursor = string(cur)
			return closer.Close()
		}
		if errors.Is(err, pebble.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("index %s: %w", s, err)
	})
	if err != nil {
		return err
	}
	defer func() { _ = b.Close() }()
	fctx, cancel := context.WithCancel(ctx)
	f, err := x.B.Feed(fctx, o)
	if err != nil {
		cancel()
		return err
	}
	ch, done := broker.Pump(fctx, f, 1024)
	defer func() { cancel(); _ = f.Close(); <-done }()

	delay := x.FlushDelay
	if delay <= 0 {
		delay = 50 * time.Millisecond
	}
	var cursor string
	commit := func() error {
		if b.Empty() {
			return nil
		}
		if err := b.Set(cursorKey(s), []byte(cursor), nil); err != nil {
			return err
		}
		if err := x.with(func(*pebble.DB) error { return b.Commit(pebble.Sync) }); err != nil {
			return fmt.Errorf("index %s: %w", s, err)
		}
		b.Reset()
		return nil
	}
	var flush <-chan time.Time // set while the batch holds ids not yet committed
	for {
		select {
		case <-ctx.Done():
			return commit()
		case <-flush:
			if err := commit(); err != nil {
				return err
			}
			flush = nil
		case n := <-ch:
			if n.Err != nil {
				if ctx.Err() != nil {
					return commit()
				}
				return errors.Join(n.Err, commit())
			}
			pos, ok := n.Delivery.(broker.Positioned)
			if !ok {
				return fmt.Errorf("index %s: the broker's deliveries have no position", s)
			}
			cursor = n.Delivery.Cursor()
			if id := eventID(n.Delivery.Message()); id != "" {
				if err := b.Set(idKey(s, id), []byte(pos.Position()), nil); err != nil {
					return err
				}
			}
			switch {
			case int(b.Count()) >= flushBatch:
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

// eventID is a stored message's event id: its de-duplication id, else the id in its body.
func eventID(m *broker.Message) string {
	if m.ID != "" {
		return m.ID
	}
	var e struct{ ID string }
	if json.Unmarshal(m.Data, &e) != nil {
		return ""
	}
	return e.ID
}

// Close closes the database; the Indexer is not used after.
func (x *Indexer) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.closed = true
	if x.db == nil {
		return nil
	}
	err := x.db.Close()
	x.db = nil
	return err
}

// Finder is the index of scenario s as a Finder: a Pebble lookup and a broker Get per event.
func (x *Indexer) Finder(s string) Finder { return &indexFinder{x: x, s: s} }

type indexFinder struct {
	x *Indexer
	s string
}

func (f *indexFinder) Find(ctx context.Context, id, _ string) (*tree.Node, bool, error) {
	var pos string
	err := f.x.with(func(db *pebble.DB) error {
		v, closer, err := db.Get(idKey(f.s, id))
		if err != nil {
			return err
		}
		pos = string(v)
		return closer.Close()
	})
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("index %s: %w", f.s, err)
	}
	m, err := f.x.B.Get(ctx, f.s, pos)
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

// Trace is Trace over the index of scenario s.
func (x *Indexer) Trace(ctx context.Context, s, id string) (*Answer, error) {
	root, err := Trace(ctx, x.B, x.Finder(s), s, id)
	if err != nil {
		return nil, err
	}
	return &Answer{Via: ViaIndex, Root: root}, nil
}

// Serve answers trace requests from other processes on Subject from the index until ctx
// ends; an error's class travels with the reply (broker.ErrorCode).
func (x *Indexer) Serve(ctx context.Context, r broker.Responder) error {
	return r.Respond(ctx, Subject, func(ctx context.Context, raw []byte) ([]byte, error) {
		var req Request
		if err := json.Unmarshal(raw, &req); err != nil {
			return nil, fmt.Errorf("%w: trace request: %w", event.ErrInvalid, err)
		}
		a, err := x.Trace(ctx, req.Scenario, req.ID)
		if err != nil {
			return nil, err
		}
		return json.Marshal(a)
	})
}
