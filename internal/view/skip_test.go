package view

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/producers"
)

// trees are n generated signals each followed by what it derives (expand).
func trees(t *testing.T, prefix string, n int) [][]broker.Message {
	start := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	return expand(t, producers.NewGenerator(5, prefix, start, time.Minute), start, n)
}

// applyAll applies msgs to the view of "base" in dir, committing every perCommit messages,
// and reports its totals by row and whether it still skips lookups.
func applyAll(t *testing.T, dir string, msgs []broker.Message, perCommit int) (string, bool) {
	t.Helper()
	v := &View{Dir: dir, Log: zerolog.Nop()}
	defer func() { _ = v.Close() }()
	var answer string
	var skips bool
	err := v.with(func(db *pebble.DB) error {
		a, cur, err := newApplier(db, "base")
		if err != nil {
			return err
		}
		defer a.close()
		var seq uint64
		if cur != "" {
			if _, err := fmt.Sscan(cur, &seq); err != nil {
				return err
			}
		}
		for i := range msgs {
			seq++
			if err := a.apply(&stored{m: msgs[i], seq: seq}); err != nil {
				return err
			}
			if (i+1)%perCommit == 0 {
				if err := a.commit(); err != nil {
					return err
				}
			}
		}
		if err := a.commit(); err != nil {
			return err
		}
		rows, n, err := sumRows(db, query.TotalsOptions{Scenario: "base", ByRegion: true}, nil)
		answer, skips = fmt.Sprint(n, rows), a.skips
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return answer, skips
}

// The view skips looking up the ids of what the stages of its process derived from a parent
// it has just applied, and yet holds to what looking every id up gives, however the events
// come: trees twice, after a restart, long after, and after an event that could make a
// skipped id one held already (a signal given a derived id, demand whose parent it never
// saw), after which it looks every id up.
func TestSkippedLookupsAgreeWithLookups(t *testing.T) {
	t.Parallel()
	ts := trees(t, "skip-", 40)
	flat := func(ts [][]broker.Message) []broker.Message {
		var out []broker.Message
		for _, m := range ts {
			out = append(out, m...)
		}
		return out
	}
	all := flat(ts)
	// A signal given the id the first tree's model demand gets, stored before that tree.
	forged := read(ts[0][0])
	forged.ID = ts[0][1].ID
	fev := *ts[0][0].Event
	fev.ID = forged.ID
	data, err := fev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	forged.Data = data
	// Demand whose parent the view never saw (the log's retention removed it).
	orphan := read(ts[1][2])
	// Demand stored under an id (Nats-Msg-Id) other than its own, that of a later tree's
	// model demand: its parent is held, but its id is not the one its parent derives.
	renamed := read(ts[0][2])
	renamed.ID = ts[2][1].ID
	cases := []struct {
		name      string
		runs      [][]broker.Message // each run a process: a new applier on the same view
		perCommit int
		skips     bool // after the last run
	}{
		{"once", [][]broker.Message{all}, 50, true},
		{"twice in one run", [][]broker.Message{append(flat(ts), all...)}, 50, true},
		{"again after a restart", [][]broker.Message{all, all}, 50, true},
		{"again much later", [][]broker.Message{append(flat(ts), all...)}, 7, true},
		{"one batch", [][]broker.Message{append(flat(ts), all...)}, 1 << 20, true},
		{"a signal with a derived id first", [][]broker.Message{append([]broker.Message{forged}, all...)}, 50, false},
		{"that signal in an earlier run", [][]broker.Message{{forged}, all}, 50, false},
		{"demand without its parent first", [][]broker.Message{append([]broker.Message{orphan}, all...)}, 50, false},
		{"that demand in an earlier run", [][]broker.Message{{orphan}, all}, 50, false},
		{"demand under another id in an earlier run", [][]broker.Message{flat(ts[:1]), {renamed}, all}, 50, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			handed, looked := t.TempDir(), t.TempDir()
			var got, want string
			var skips bool
			for _, run := range c.runs {
				got, skips = applyAll(t, handed, run, c.perCommit)
				plain := make([]broker.Message, len(run))
				for i, m := range run {
					plain[i] = read(m)
				}
				want, _ = applyAll(t, looked, plain, c.perCommit)
			}
			if got != want {
				t.Errorf("handed over:\n%s\nlooked up:\n%s", got, want)
			}
			if skips != c.skips {
				t.Errorf("skips lookups after: %v, want %v", skips, c.skips)
			}
		})
	}
}

// A view of format 2, whose mark that it may skip lookups a format-2 build may have left in
// place after applying what made it untrue, opens as format 3 looking every id up, and
// answers as it did.
func TestFormat2MarkIsNotTrusted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ts := trees(t, "fmt2-", 5)
	var all []broker.Message
	for _, m := range ts {
		all = append(all, m...)
	}
	before, skips := applyAll(t, dir, all, 50)
	if !skips {
		t.Fatal("a view applied from empty does not skip lookups")
	}
	db, err := pebble.Open(filepath.Join(dir, "view"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	err = errors.Join(b.Set(formatKey, []byte(format2), nil), b.Set(skipsKey("base"), []byte{1}, nil), b.Commit(pebble.Sync), b.Close(), db.Close())
	if err != nil {
		t.Fatal(err)
	}
	after, skips := applyAll(t, dir, all, 50) // all of it again: every event held already
	if skips || after != before {
		t.Errorf("after the upgrade: skips %v (want false), totals\n%s\nwant\n%s", skips, after, before)
	}
	v := &View{Dir: dir, Log: zerolog.Nop()}
	defer func() { _ = v.Close() }()
	err = v.with(func(db *pebble.DB) error {
		got, err := get(db, formatKey)
		if err == nil && got != format {
			err = fmt.Errorf("format %q, want %q", got, format)
		}
		return err
	})
	if err != nil {
		t.Error(err)
	}
}

// A commit that failed part-way (here: a bucket row it must add to is corrupt) has merged
// some of its rows already, so it fails again when retried, whatever changed meanwhile, and
// nothing of the batch is committed: a restart applies it again from the committed cursor.
func TestCommitFailsForGood(t *testing.T) {
	t.Parallel()
	v := &View{Dir: t.TempDir(), Log: zerolog.Nop()}
	defer func() { _ = v.Close() }()
	msgs := slices.Concat(trees(t, "fail-", 3)...)
	applied := func(db *pebble.DB) (*applier, error) {
		a, _, err := newApplier(db, "base")
		if err != nil {
			return nil, err
		}
		for i := range msgs {
			if err := a.apply(&stored{m: msgs[i], seq: uint64(i + 1)}); err != nil {
				a.close()
				return nil, err
			}
		}
		return a, nil
	}
	err := v.with(func(db *pebble.DB) error {
		a, err := applied(db) // to learn the rows the batch adds to
		if err != nil {
			return err
		}
		var corrupt []byte
		for k := range a.hours { // one of them
			corrupt = []byte(bucket{year, year.floor(time.Unix(k.start, 0)).Unix(), k.row}.key("base"))
			break
		}
		rows := len(a.hours)
		a.close()
		if rows < 2 {
			return fmt.Errorf("the batch adds to %d rows, want several", rows)
		}
		if err := db.Set(corrupt, []byte{0xff}, pebble.Sync); err != nil {
			return err
		}
		if a, err = applied(db); err != nil {
			return err
		}
		defer a.close()
		if first := a.commit(); !errors.Is(first, errCorrupt) {
			return fmt.Errorf("commit over a corrupt row: %v, want errCorrupt", first)
		}
		if err := db.Delete(corrupt, pebble.Sync); err != nil {
			return err
		}
		if a.seek != nil { // a retry that reads the repaired state
			_ = a.seek.close()
			a.seek = nil
		}
		if again := a.commit(); again == nil {
			return errors.New("the commit retried after a failure succeeded: rows merged before the failure would count twice")
		}
		if _, n, err := sumRows(db, query.TotalsOptions{Scenario: "base"}, nil); err != nil || n != 0 {
			return fmt.Errorf("%d events committed after the failure (%v), want none", n, err)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
