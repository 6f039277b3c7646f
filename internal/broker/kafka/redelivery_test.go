package kafka_test

import (
	"strings"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
)

// A record stored before its partition came to a consumer may have been read by a member
// before it, however far past the committed offset that one got: it stays a possible
// redelivery after the consumer's first commits, with the time by which an earlier read's
// outputs were stored. What is stored after that follows as new.
func TestPossibleRedeliveries(t *testing.T) {
	t.Parallel()
	_, b := withBase(t, broker.ScenarioConfig{})
	ctx := t.Context()
	if err := b.Publish(ctx, signals("base", event.Application, "us", "old", 40)); err != nil {
		t.Fatal(err)
	}
	opened := time.Now()
	c, err := b.Consumer(ctx, "base", event.Application)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// partition of a delivery: its position without the offset.
	partition := func(d broker.Delivery) string {
		p := d.(broker.Positioned).Position()
		return p[:strings.LastIndexByte(p, ':')]
	}
	seen := map[string]bool{}
	read := func(n int, check func(d broker.Delivery)) {
		t.Helper()
		for got := 0; got < n; {
			batch, err := c.Fetch(ctx, 4) // small batches, each committed before the next
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range batch {
				check(d)
			}
			if err := c.Commit(ctx, batch); err != nil {
				t.Fatal(err)
			}
			got += len(batch)
		}
	}
	read(40, func(d broker.Delivery) {
		again, by := d.(broker.Redelivery).PossiblyRedelivered()
		if !again || by.Before(opened) || by.After(time.Now().Add(10*time.Second)) {
			t.Errorf("%s, stored before the consumer opened: possibly redelivered %v by %s; want true, by a moment after it opened at %s",
				d.Message().ID, again, by.Format(time.StampMilli), opened.Format(time.StampMilli))
		}
		seen[partition(d)] = true
	})
	if err := b.Publish(ctx, signals("base", event.Application, "us", "new", 40)); err != nil {
		t.Fatal(err)
	}
	fresh := 0
	read(40, func(d broker.Delivery) {
		if !seen[partition(d)] {
			return // a partition's first record here may always have been read before
		}
		fresh++
		if again, _ := d.(broker.Redelivery).PossiblyRedelivered(); again {
			t.Errorf("%s, stored after its partition came: possibly redelivered", d.Message().ID)
		}
	})
	if fresh == 0 {
		t.Error("no record stored later on a partition read before")
	}
}
