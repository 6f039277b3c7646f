package conformance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/lineage"
	"github.com/layercake/cascade/internal/tree"
	"github.com/layercake/cascade/internal/view"
)

// testIndexedTrace holds the one trace algorithm to one answer over both finders: run's
// index (Pebble lookups and a broker Get by position) and a scan of the scenario give the
// same tree for a signal, an event mid-tree and a leaf, and the same not-found class for an
// unknown id; where the broker carries request/reply, so does an index asked across it.
func testIndexedTrace(t *testing.T, h Harness) {
	b := h.Fresh(t)(t)
	lb, ok := b.(view.Broker)
	if !ok {
		t.Fatalf("%T cannot fetch a message by position (broker.Getter)", b)
	}
	coef := coefficients.Default()
	startPipeline(t, b, "base", coef, h.Stages)
	all := replayHistory(t, b, "base", coef)

	dir := t.TempDir()
	ix, stop := startIndex(t, lb, dir)

	const signal = "hist-2025-01-20-deepseek-r1"
	var mid, leaf string
	for _, m := range all {
		if m.ev == nil || m.ev.CorrelationID != signal {
			continue
		}
		switch m.ev.Type {
		case event.TypeDemandChips:
			mid = m.ev.ID
		case event.TypeDemandGrid:
			leaf = m.ev.ID
		}
	}
	if mid == "" || leaf == "" {
		t.Fatalf("the %s tree has no chips (%q) or grid (%q) event", signal, mid, leaf)
	}
	scanned, err := lineage.ScanTrace(t.Context(), b, "base", signal)
	if err != nil {
		t.Fatalf("scan trace of %s: %v", signal, err)
	}
	if scanned.Via != lineage.ViaScan {
		t.Errorf("scan trace via %q", scanned.Via)
	}
	types := map[event.Type]bool{}
	nodes := 0
	var walk func(n *tree.Node)
	walk = func(n *tree.Node) {
		types[n.Event.Type] = true
		nodes++
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(scanned.Root)
	stored := 1 // the signal, and every derived event of its tree
	for _, m := range all {
		if m.ev != nil && m.ev.CorrelationID == signal {
			stored++
		}
	}
	if len(types) != 5 || nodes != stored {
		t.Fatalf("the scanned tree of %s holds %d event types and %d events; want 5 types and the %d stored", signal, len(types), nodes, stored)
	}
	want := mustJSON(scanned.Root)

	for _, id := range []string{signal, mid, leaf} {
		s, err := lineage.ScanTrace(t.Context(), b, "base", id)
		if err != nil || mustJSON(s.Root) != want {
			t.Fatalf("scan trace of %s is not the tree of %s: %v", id, signal, err)
		}
		var got string
		Eventually(t, 20*time.Second, "the index's trace of "+id+" equal to the scan's", func() error {
			a, err := ix.Trace(t.Context(), "base", id)
			switch {
			case err != nil:
				return err
			case a.Via != lineage.ViaIndex:
				return fmt.Errorf("answered via %s", a.Via)
			}
			if got = mustJSON(a.Root); got != want {
				return fmt.Errorf("index tree %s", got)
			}
			return nil
		})
	}

	_, ierr := ix.Trace(t.Context(), "base", "no-such-event")
	_, serr := lineage.ScanTrace(t.Context(), b, "base", "no-such-event")
	if !errors.Is(ierr, broker.ErrNoEvent) || !errors.Is(serr, broker.ErrNoEvent) {
		t.Errorf("unknown id: index %v, scan %v; want both broker.ErrNoEvent", ierr, serr)
	}

	// Stopped and opened again, the index holds what it had committed, and its follower
	// resumes from the cursor committed with those ids.
	stop()
	ix, _ = startIndex(t, lb, dir)
	a, err := ix.Trace(t.Context(), "base", leaf)
	if err != nil || mustJSON(a.Root) != want {
		t.Fatalf("the reopened index's trace of %s: %v", leaf, err)
	}
	added := Signals()[0]
	publish(t, b, "base", []string{added})
	const addedID = "sig-adopt-us"
	Eventually(t, 20*time.Second, "the resumed index's trace of "+addedID+" equal to the scan's", func() error {
		a, err := ix.Trace(t.Context(), "base", addedID)
		if err != nil {
			return err
		}
		s, err := lineage.ScanTrace(t.Context(), b, "base", addedID)
		switch {
		case err != nil:
			return err
		case len(s.Root.Children) == 0:
			return fmt.Errorf("the scan finds no children of %s yet", addedID)
		case mustJSON(a.Root) != mustJSON(s.Root):
			return fmt.Errorf("index tree %s, scan tree %s", mustJSON(a.Root), mustJSON(s.Root))
		}
		return nil
	})

	r, ok := b.(broker.Responder)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		if err := ix.Serve(ctx, r); err != nil && ctx.Err() == nil {
			t.Errorf("serve: %v", err)
		}
	})
	Eventually(t, 10*time.Second, "the index's answer across request/reply", func() error {
		a, err := lineage.Ask(t.Context(), r, "base", leaf)
		switch {
		case err != nil:
			return err
		case a.Via != lineage.ViaIndex || mustJSON(a.Root) != want:
			return fmt.Errorf("answered via %s with %s", a.Via, mustJSON(a.Root))
		}
		return nil
	})
	_, err = lineage.Ask(t.Context(), r, "base", "no-such-event")
	if !errors.Is(err, broker.ErrNoEvent) || errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("unknown id across request/reply: %v (%T); want broker.ErrNoEvent", err, err)
	}
	_, err = lineage.Ask(t.Context(), r, "no-such-scenario", leaf)
	if !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("unknown scenario across request/reply: %v; want broker.ErrNotFound", err)
	}
}

// startIndex follows scenario base into an index in dir; stop (also run by t.Cleanup) ends
// the follower and closes the index.
func startIndex(t *testing.T, b view.Broker, dir string) (*view.View, func()) {
	ix := &view.View{B: b, Dir: dir, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := ix.Follow(ctx, "base"); err != nil {
			t.Errorf("index follow: %v", err)
		}
	})
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			if err := ix.Close(); err != nil {
				t.Errorf("index close: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return ix, stop
}
