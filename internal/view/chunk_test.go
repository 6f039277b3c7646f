package view

import (
	"errors"
	"path/filepath"
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
	err := eachInChunk(raw, h.UnixNano(), func(at time.Time, r rowID, a *acc) error {
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
		if err := eachInChunk(raw[:cut], h.UnixNano(), func(time.Time, rowID, *acc) error { return nil }); !errors.Is(err, errCorrupt) {
			t.Errorf("cut at %d of %d bytes: %v, want errCorrupt", cut, len(raw), err)
		}
	}
}

// A view database of another format (here one without the format key, as before chunks) is
// emptied when opened, so that its scenarios are applied again from the log; one of this
// format keeps what it holds.
func TestOtherFormatIsEmptied(t *testing.T) {
	dir := t.TempDir()
	db, err := pebble.Open(filepath.Join(dir, "view"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set(posKey("base"), []byte("7"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	position := func() string {
		t.Helper()
		v := &View{Dir: dir, Log: zerolog.Nop()}
		defer func() { _ = v.Close() }()
		pos, err := v.Position("base")
		if err != nil {
			t.Fatal(err)
		}
		if err := v.with(func(db *pebble.DB) error { return db.Set(posKey("base"), []byte("9"), pebble.Sync) }); err != nil {
			t.Fatal(err)
		}
		return pos
	}
	if pos := position(); pos != "" {
		t.Errorf("a view of the old format opened at %q, want emptied", pos)
	}
	if pos := position(); pos != "9" {
		t.Errorf("a view of this format opened at %q, want 9 kept", pos)
	}
}
