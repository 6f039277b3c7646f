package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
)

// readFeed opens a feed with o, trying a transient refusal again (a loaded cluster may time
// out creating its consumer), and reads it to io.EOF (o.UntilEnd should be set); a feed not
// open and ended after a minute fails the test.
func readFeed(t *testing.T, b broker.Broker, o broker.FeedOptions) []broker.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var f broker.Feed
	err := untilSettled(t, func() (err error) {
		f, err = b.Feed(ctx, o)
		return err
	})
	if err != nil {
		t.Fatalf("feed %+v: %v", o, err)
	}
	defer f.Close()
	var out []broker.Delivery
	for {
		d, err := f.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("feed %+v did not end after %d messages: %v", o, len(out), err)
		}
		out = append(out, d)
	}
}

// Features: what a broker declares is what it implements.
func testFeatures(t *testing.T, h Harness) {
	b := h.Fresh(t)(t)
	f := b.Features()
	if _, ok := b.(broker.Responder); ok != f.RequestReply {
		t.Errorf("Features.RequestReply is %v, implements broker.Responder: %v", f.RequestReply, ok)
	}
	if _, ok := b.(broker.Getter); ok != f.GetByPosition {
		t.Errorf("Features.GetByPosition is %v, implements broker.Getter: %v", f.GetByPosition, ok)
	}
	if f.Ordering != broker.OrderPerKey && f.Ordering != broker.OrderPerScenario {
		t.Errorf("Features.Ordering is %v, want per key or per scenario", f.Ordering)
	}
	if f.DedupWindow < 0 {
		t.Errorf("Features.DedupWindow is %s", f.DedupWindow)
	}
	if f.TransactionalBatches {
		t.Errorf("Features.TransactionalBatches declared, and the suite has no test of it")
	}
}

// Feed: subject filters, what a message carries, order, cursors, start times, following new
// messages, and the errors of a bad cursor and an unknown scenario.
func testFeed(t *testing.T, h Harness) {
	b := h.Fresh(t)(t)
	ctx := t.Context()
	if err := b.EnsureScenario(ctx, "base", broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	var msgs []broker.Message
	for i, r := range []string{"us", "de", "us", "cn", "us", "de"} {
		id := fmt.Sprintf("d%d", i)
		msgs = append(msgs, broker.Message{Subject: event.DemandSubject("base", event.Grid, r), ID: id, Key: "tree-" + r, Data: []byte(id), Header: map[string]string{broker.HeaderLayer: "energy"}})
	}
	msgs = append(msgs, broker.Message{Subject: event.DLQSubject("base", event.Chips), ID: "dlq:chips:0", Key: "dlq", Data: []byte("bad")})
	before := time.Now()
	if err := b.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	read := func(sel broker.Selector) []broker.Delivery {
		sel.Scenario = "base"
		return readFeed(t, b, broker.FeedOptions{Selector: sel, FromStart: true, UntilEnd: true})
	}
	demand := []event.Kind{event.KindDemand}
	grid := []event.Layer{event.Grid}
	t.Run("filters", func(t *testing.T) {
		for _, c := range []struct {
			sel  broker.Selector
			want int
		}{
			{broker.Selector{Kinds: demand}, 6},
			{broker.Selector{Kinds: demand, Layers: grid}, 6},
			{broker.Selector{Kinds: demand, Layers: grid, Regions: []string{"us"}}, 3},
			{broker.Selector{Kinds: demand, Layers: grid, Regions: []string{"us", "cn"}}, 4},
			{broker.Selector{Kinds: []event.Kind{event.KindDLQ}}, 1},
			{broker.Selector{}, 7},
			{broker.Selector{Kinds: demand, Layers: []event.Layer{event.Chips}}, 0},
		} {
			if got := read(c.sel); len(got) != c.want {
				t.Errorf("%+v: %d messages, want %d", c.sel, len(got), c.want)
			}
		}
	})
	t.Run("message", func(t *testing.T) {
		got := read(broker.Selector{Kinds: demand, Layers: grid, Regions: []string{"cn"}})
		if len(got) != 1 {
			t.Fatalf("%d messages, want 1", len(got))
		}
		m := got[0].Message()
		if m.Subject != "cascade.base.demand.grid.cn" || m.ID != "d3" || string(m.Data) != "d3" || m.Header[broker.HeaderLayer] != "energy" {
			t.Errorf("read back %+v, want subject, id, body and header as published", m)
		}
		// The key is what orders messages on a broker that orders per key, so it is stored.
		if b.Features().Ordering == broker.OrderPerKey && m.Key != "tree-cn" {
			t.Errorf("key %q, want tree-cn", m.Key)
		}
		if tm := got[0].Time(); tm.Before(before.Add(-time.Second)) || tm.After(time.Now().Add(time.Second)) {
			t.Errorf("broker time %s, published at %s", tm, before)
		}
	})
	t.Run("order within a key", func(t *testing.T) {
		if got := ids(read(broker.Selector{Kinds: demand, Layers: grid, Regions: []string{"us"}})); strings.Join(got, ",") != "d0,d2,d4" {
			t.Errorf("order %v, want d0,d2,d4 as published", got)
		}
	})
	t.Run("order across keys", func(t *testing.T) {
		if o := b.Features().Ordering; o != broker.OrderPerScenario {
			t.Skipf("ordering is %s: messages with different keys may interleave", o)
		}
		if got := ids(read(broker.Selector{})); strings.Join(got, ",") != "d0,d1,d2,d3,d4,d5,dlq:chips:0" {
			t.Errorf("order %v, want the publish order", got)
		}
	})
	t.Run("cursor", func(t *testing.T) {
		all := read(broker.Selector{Kinds: demand})
		for i := range all {
			rest := readFeed(t, b, broker.FeedOptions{Selector: broker.Selector{Scenario: "base", Kinds: demand}, Cursor: all[i].Cursor(), UntilEnd: true})
			if len(rest) != len(all)-i-1 {
				t.Fatalf("after %d of %d: %d left, want %d", i+1, len(all), len(rest), len(all)-i-1)
			}
		}
		if _, err := b.Feed(ctx, broker.FeedOptions{Selector: broker.Selector{Scenario: "base"}, Cursor: "not-a-cursor"}); !errors.Is(err, event.ErrInvalid) {
			t.Errorf("bad cursor: %v, want event.ErrInvalid", err)
		}
	})
	t.Run("since", func(t *testing.T) {
		if got := readFeed(t, b, broker.FeedOptions{Selector: broker.Selector{Scenario: "base"}, Since: before.Add(-time.Minute), UntilEnd: true}); len(got) != 7 {
			t.Errorf("since a minute before: %d messages, want 7", len(got))
		}
		if got := readFeed(t, b, broker.FeedOptions{Selector: broker.Selector{Scenario: "base"}, Since: time.Now().Add(time.Minute), UntilEnd: true}); len(got) != 0 {
			t.Errorf("since a minute ahead: %d messages, want 0", len(got))
		}
	})
	t.Run("follow", func(t *testing.T) {
		f, err := b.Feed(ctx, broker.FeedOptions{Selector: broker.Selector{Scenario: "base", Kinds: demand, Layers: grid}})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := b.Publish(ctx, []broker.Message{{Subject: event.DemandSubject("base", event.Grid, "fr"), ID: "new", Key: "k", Data: []byte("n")}}); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		d, err := f.Next(wctx)
		if err != nil || d.Message().ID != "new" {
			t.Fatalf("following feed: %v %v, want the new message", d, err)
		}
		_ = f.Close()
		if _, err := f.Next(ctx); !errors.Is(err, broker.ErrClosed) {
			t.Errorf("next after close: %v, want ErrClosed", err)
		}
	})
	if _, err := b.Feed(ctx, broker.FeedOptions{Selector: broker.Selector{Scenario: "nowhere"}, FromStart: true}); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("feed of an unknown scenario: %v, want ErrNotFound", err)
	}
}

// Republish: a message published twice is stored once on a broker with a de-dup window; on
// one without, it is stored twice (a consumer has both to work through) and a feed still
// delivers its id once.
func testRepublish(t *testing.T, h Harness) {
	b := h.Fresh(t)(t)
	ctx := t.Context()
	if err := b.EnsureScenario(ctx, "base", broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	c := openConsumer(t, b, "base", event.Application)
	defer c.Close()
	twice := portSignals("base", "twice", 1)
	for range 2 {
		if err := b.Publish(ctx, twice); err != nil {
			t.Fatal(err)
		}
	}
	once := portSignals("base", "once", 1)
	if err := b.Publish(ctx, once); err != nil {
		t.Fatal(err)
	}
	stored := uint64(2) // twice-0 and once-0, the copy de-duplicated
	if b.Features().DedupWindow == 0 {
		stored = 3
	}
	Eventually(t, 10*time.Second, "the consumer's lag to count what was stored", lagIs(ctx, b, "base", event.Application, stored))
	got := ids(readFeed(t, b, broker.FeedOptions{Selector: broker.Selector{Scenario: "base"}, FromStart: true, UntilEnd: true}))
	slices.Sort(got) // two keys: in any order on a broker that orders per key
	if strings.Join(got, ",") != "once-0,twice-0" {
		t.Errorf("a feed delivered %v, want each id once: once-0, twice-0", got)
	}
}
