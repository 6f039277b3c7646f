package view

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"

	"github.com/layercake/cascade/internal/event"
)

// A chunk gives back each event it was given, in order: its time to the nanosecond, its row
// and its quantities; rows and their names are kept once, and a row whose events name their
// quantities differently keeps both.
func TestChunkRoundTrip(t *testing.T) {
	h := time.Date(2025, 1, 20, 13, 0, 0, 0, time.UTC)
	grid := rowID{layer: event.Grid, region: "us-east", key: "grid"}
	chips := rowID{layer: event.Chips, region: "eu-west", key: "h100"}
	type in struct {
		at  time.Time
		row rowID
		qs  []event.Quantity
	}
	ins := []in{
		{h.Add(30*time.Minute + 5), grid, []event.Quantity{{Name: "avg_mw", Unit: "MW avg", Value: 12.5}, {Name: "twh", Unit: "TWh", Value: -0.25}}},
		{h, chips, []event.Quantity{{Name: "units", Unit: "accelerators", Value: 1e6}}},
		{h.Add(time.Hour - 1), grid, []event.Quantity{{Name: "avg_mw", Unit: "MW avg", Value: 0}, {Name: "twh", Unit: "TWh", Value: 3}}},
		{h.Add(time.Minute), grid, []event.Quantity{{Name: "avg_mw", Unit: "MW", Value: 7}}},
	}
	c := newChunk(h, "first-id")
	for _, e := range ins {
		c.add(e.at, e.row, e.qs)
	}
	if len(c.table) != 3 {
		t.Errorf("%d table entries, want 3 (grid twice: its names differ)", len(c.table))
	}
	raw := c.encode()
	i := 0
	err := eachInChunk(raw, h.Unix(), func(at time.Time, r rowID, a *acc) error {
		want := ins[i]
		i++
		if !at.Equal(want.at) || r != want.row || a.events != 1 || len(a.qs) != len(want.qs) {
			t.Errorf("event %d: %v %v %d events %d quantities, want %v %v %d", i, at, r, a.events, len(a.qs), want.at, want.row, len(want.qs))
			return nil
		}
		for j, q := range want.qs {
			if g := a.qs[j]; g.name != q.Name || g.unit != q.Unit || g.sum.Value() != q.Value {
				t.Errorf("event %d quantity %d: %s %s %v, want %v", i, j, g.name, g.unit, g.sum.Value(), q)
			}
		}
		return nil
	})
	if err != nil || i != len(ins) {
		t.Fatalf("%d of %d events: %v", i, len(ins), err)
	}
	for _, cut := range []int{1, len(raw) / 2, len(raw) - 1} {
		if err := eachInChunk(raw[:cut], h.Unix(), func(time.Time, rowID, *acc) error { return nil }); !errors.Is(err, errCorrupt) {
			t.Errorf("cut at %d of %d bytes: %v, want errCorrupt", cut, len(raw), err)
		}
	}
}

// A view database of format 1 (one record per event, no format key) is rewritten into chunks
// when opened: what it held stays (retention may have removed it from the log), ranges that
// cut its hours answer the same, no format-1 record is left, and the rewrite, committed in
// batches, goes on where it stopped. One of a format this version does not know is refused.
func TestFormat1IsUpgraded(t *testing.T) {
	dir := t.TempDir()
	db, err := pebble.Open(filepath.Join(dir, "view"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time { tt, _ := time.Parse(time.RFC3339Nano, s); return tt }
	grid := rowID{layer: event.Grid, region: "us", key: "grid"}
	old := []struct {
		s, at string
		v     float64
	}{{"base", "2025-01-20T13:10:00Z", 1}, {"base", "2025-01-20T13:50:00.5Z", 2}, {"base", "2025-01-20T14:05:00Z", 4}, {"what-if", "2025-01-20T13:20:00Z", 8}, {"what-if", "2025-01-20T13:40:00Z", 16}}
	for i, o := range old {
		var a acc
		a.add([]event.Quantity{{Name: "avg_mw", Unit: "MW avg", Value: o.v}})
		key := prefix(o.s) + "e\x00" + string(be(at(o.at).UnixNano())) + fmt.Sprintf("id-%d", i)
		if err := db.Set([]byte(key), append(appendString(nil, grid.String()), a.encode()...), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"base", "what-if"} {
		if err := db.Set(posKey(s), []byte("7"), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	// Interrupted after its first batch of two: opened again, it goes on.
	if n, err := upgradeEvents(db, 2); err != nil || n != len(old) {
		t.Fatalf("upgrade rewrote %d of %d: %v", n, len(old), err)
	}
	if err := db.Set([]byte(prefix("what-if")+"e\x00"+string(be(at("2025-01-20T13:30:00Z").UnixNano()))+"late"), append(appendString(nil, grid.String()), func() []byte {
		var a acc
		a.add([]event.Quantity{{Name: "avg_mw", Unit: "MW avg", Value: 32}})
		return a.encode()
	}()...), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	v := &View{Dir: dir, Log: zerolog.Nop()}
	defer func() { _ = v.Close() }()
	if pos, err := v.Position("base"); err != nil || pos != "7" {
		t.Fatalf("upgraded view at %q (%v), want 7 kept", pos, err)
	}
	for _, r := range []struct {
		s, since, until string
		want            float64
	}{
		{"base", "2025-01-20T13:00:00Z", "2025-01-20T13:30:00Z", 1},
		{"base", "2025-01-20T13:50:00.5Z", "2025-01-20T14:05:00.000000001Z", 6},
		{"what-if", "2025-01-20T13:00:00Z", "2025-01-20T14:00:00Z", 56},
	} {
		var sum float64
		err := v.with(func(db *pebble.DB) error {
			return each(db, r.s, at(r.since), at(r.until), events, func(_ time.Time, _ rowID, a *acc) error {
				sum += a.qs[0].sum.Value()
				return nil
			})
		})
		if err != nil || sum != r.want {
			t.Errorf("%s [%s, %s): %v (%v), want %v", r.s, r.since, r.until, sum, err, r.want)
		}
	}
	err = v.with(func(db *pebble.DB) error {
		it, err := db.NewIter(nil)
		if err != nil {
			return err
		}
		for it.First(); it.Valid(); it.Next() {
			if bytes.Contains(it.Key(), []byte("\x00e\x00")) {
				t.Errorf("format-1 record %q left", it.Key())
			}
		}
		return errors.Join(it.Error(), it.Close())
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = v.Close()

	other := t.TempDir()
	db, err = pebble.Open(filepath.Join(other, "view"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(db.Set(formatKey, []byte("cascade-view-9"), pebble.Sync), db.Close()); err != nil {
		t.Fatal(err)
	}
	w := &View{Dir: other, Log: zerolog.Nop()}
	defer func() { _ = w.Close() }()
	if _, err := w.Position("base"); err == nil || !strings.Contains(err.Error(), "cascade-view-9") {
		t.Errorf("a view of an unknown format opened: %v", err)
	}
}

// A range that cuts an hour reads that hour's chunks and keeps exactly the events inside it:
// one that ends a moment after the hour starts, and hours long before 1678 or after 2262
// (beyond what Unix nanoseconds hold) included.
func TestCutHoursReadTheirChunks(t *testing.T) {
	db, err := pebble.Open(filepath.Join(t.TempDir(), "view"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	at := func(s string) time.Time { tt, _ := time.Parse(time.RFC3339Nano, s); return tt }
	grid := rowID{layer: event.Grid, region: "us", key: "grid"}
	for i, e := range []string{"2025-01-20T13:00:00.0000001Z", "2025-01-20T13:59:59.999999999Z", "1500-03-01T10:20:00Z", "2300-01-01T00:30:00Z"} {
		h := hour.floor(at(e))
		c := newChunk(h, fmt.Sprintf("id-%d", i))
		c.add(at(e), grid, []event.Quantity{{Name: "avg_mw", Unit: "MW avg", Value: float64(i + 1)}})
		if err := db.Set(chunkKey("base", h.Unix(), c.first), c.encode(), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []struct {
		since, until string
		want         float64 // the sum of the values inside
	}{
		{"2025-01-20T12:59:00Z", "2025-01-20T13:00:00.5Z", 1},
		{"2025-01-20T13:00:00.0000002Z", "2025-01-20T14:00:00Z", 2},
		{"2025-01-20T13:00:00Z", "2025-01-20T13:59:59.999999999Z", 1},
		{"2025-01-20T13:00:00.5Z", "2025-01-20T13:59:00Z", 0},
		{"1500-03-01T10:10:00Z", "1500-03-01T10:30:00Z", 3},
		{"2300-01-01T00:10:00Z", "2300-01-01T00:40:00Z", 4},
	} {
		var sum float64
		err := each(db, "base", at(r.since), at(r.until), events, func(_ time.Time, _ rowID, a *acc) error {
			sum += a.qs[0].sum.Value()
			return nil
		})
		if err != nil || sum != r.want {
			t.Errorf("[%s, %s): sum %v (%v), want %v", r.since, r.until, sum, err, r.want)
		}
	}
}
