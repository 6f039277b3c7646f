package view

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/layercake/cascade/internal/event"
)

// format names how the database's keys and values are laid out; formatKey holds it. Format 1
// (no formatKey) kept one record per event under e\x00<time ns><id>; format 2 keeps them in
// chunks (c\x00); format 3 adds the mark that the view may skip looking up ids (skipsKey),
// which a format-2 build would leave in place when it applied what makes it untrue: it
// refuses format 3. A database of format 1 is rewritten in place when opened, so that
// history a log's retention has removed since stays in the view; one of format 2 only has
// its format set (its scenarios look every id up until rebuilt).
const (
	format  = "cascade-view-3"
	format2 = "cascade-view-2"
)

// formatKey sorts before every scenario's keys: no scenario name is empty.
var formatKey = []byte("\x00format")

// upgradeBatch bounds the format-1 records one upgrade batch rewrites.
const upgradeBatch = 50_000

// upgrade brings db to format: a database without formatKey (empty, or of format 1) has its
// event records rewritten into chunks (upgradeEvents) and the format set; one of a format it
// does not know is refused.
func (v *View) upgrade(db *pebble.DB) error {
	had, err := get(db, formatKey)
	switch {
	case err != nil || had == format:
		return err
	case had == "": // empty, or format 1
		n, err := upgradeEvents(db, upgradeBatch)
		if err != nil {
			return fmt.Errorf("upgrading to %s: %w", format, err)
		}
		if n > 0 {
			v.Log.Info().Int("events", n).Str("format", format).Msg("view: per-event records rewritten into chunks")
		}
	case had != format2: // format 2 differs only in what it leaves out
		return fmt.Errorf("%w: the view is of format %q, this cascade reads %q: remove the directory (or run `cascade view rebuild`) to build it again from the log", event.ErrInvalid, had, format)
	}
	return db.Set(formatKey, []byte(format), pebble.Sync)
}

// upgradeEvents rewrites every format-1 event record into chunks, scenario by scenario and
// hour by hour, committing every batch records (each batch deletes the records it
// rewrote, so an upgrade interrupted goes on where it stopped when opened again), and says how
// many it rewrote.
func upgradeEvents(db *pebble.DB, batch int) (n int, err error) {
	it, err := db.NewIter(nil)
	if err != nil {
		return 0, err
	}
	b := db.NewBatch()
	defer func() { err = errors.Join(err, it.Close(), b.Close()) }()
	var c *chunk
	var cs string // c's scenario
	flush := func() error {
		if c == nil {
			return nil
		}
		err := b.Set(chunkKey(cs, c.hour.Unix(), c.first), c.encode(), nil)
		c = nil
		return err
	}
	commit := func() error {
		if err := flush(); err != nil || b.Empty() {
			return err
		}
		if err := b.Commit(pebble.Sync); err != nil {
			return err
		}
		b.Reset()
		return nil
	}
	for it.First(); it.Valid(); {
		k := it.Key()
		s, _, ok := bytes.Cut(k, []byte{0})
		if !ok {
			it.Next()
			continue
		}
		ep := []byte(prefix(string(s)) + "e\x00")
		if bytes.HasPrefix(k, ep) && len(k) < len(ep)+8+1 {
			return n, fmt.Errorf("%w: event key %q", errCorrupt, k)
		}
		if !bytes.HasPrefix(k, ep) {
			if bytes.Compare(k, ep) < 0 {
				it.SeekGE(ep)
			} else {
				it.SeekGE(scenarioEnd(string(s))) // past this scenario's event records
			}
			continue
		}
		rest := k[len(ep):]
		at := time.Unix(0, unbe(rest[:8])).UTC()
		id := string(rest[8:])
		r, qs, err := decodeEventV1(it.Value())
		if err != nil {
			return n, fmt.Errorf("event %s of %s: %w", id, s, err)
		}
		if h := hour.floor(at); c == nil || cs != string(s) || !c.hour.Equal(h) || c.n >= flushBatch {
			if err := flush(); err != nil {
				return n, err
			}
			c, cs = newChunk(h, id), string(s)
		}
		c.add(at, r, qs)
		if err := b.Delete(k, nil); err != nil {
			return n, err
		}
		if n++; n%batch == 0 {
			if err := commit(); err != nil {
				return n, err
			}
		}
		it.Next()
	}
	return n, errors.Join(it.Error(), commit())
}

// decodeEventV1 reads a format-1 event record: its row, then its contribution as an acc of
// one event.
func decodeEventV1(b []byte) (rowID, []event.Quantity, error) {
	d := decoder{b: b}
	row := d.string()
	if d.bad {
		return rowID{}, nil, errCorrupt
	}
	r, err := parseRowID(row)
	if err != nil {
		return r, nil, err
	}
	a, err := decodeAcc(d.b)
	if err != nil {
		return r, nil, err
	}
	qs := make([]event.Quantity, len(a.qs))
	for i, q := range a.qs {
		v := q.sum.Value()
		if math.IsNaN(v) {
			return r, nil, errCorrupt
		}
		qs[i] = event.Quantity{Name: q.name, Unit: q.unit, Value: v}
	}
	return r, qs, nil
}
