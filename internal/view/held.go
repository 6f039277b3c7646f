package view

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// ErrStale is matched by the error of HeldAt when the view has not applied, within
// View.HeldWait, everything the broker held at the moment asked about.
var ErrStale = errors.New("view not current")

// feedLag is how long a message stored while the view's feed is caught up may take to reach
// it (NATS pushes it at once; a Kafka feed's long poll returns once it is stored): a view
// found caught up at t is current as of t minus feedLag.
const feedLag = 250 * time.Millisecond

// currency is how far the view of one scenario is known to be current: it has applied every
// message the broker held at asOf.
type currency struct {
	mu   sync.Mutex
	asOf time.Time
	wake chan struct{} // closed and replaced when asOf advances
}

func (c *currency) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.asOf) {
		c.asOf = t
		close(c.wake)
		c.wake = make(chan struct{})
	}
}

// wait returns nil once asOf is at least t, or ctx's error.
func (c *currency) wait(ctx context.Context, t time.Time) error {
	for {
		c.mu.Lock()
		ok, wake := !c.asOf.Before(t), c.wake
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

func (v *View) currency(s string) *currency {
	c, _ := v.current.LoadOrStore(s, &currency{wake: make(chan struct{})})
	return c.(*currency)
}

// caughtUp records that the view of s has committed everything its feed had delivered, with
// nothing more known to remain, at time now.
func (v *View) caughtUp(s string, now time.Time) { v.currency(s).set(now.Add(-feedLag)) }

// HeldAt returns, for each of ids, the broker position at which the view of scenario s holds
// it ("" when it holds none): the id set the stages ask before they publish a possible
// redelivery (consumers.IDSet). When asOf is not zero it first waits, up to HeldWait (default
// 5s), until the view is current as of asOf: it has committed everything the broker held
// then (it was caught up with its feed, allowing feedLag for what was on the way); it fails
// with an error matching ErrStale when it is not by then.
func (v *View) HeldAt(ctx context.Context, s string, ids []string, asOf time.Time) ([]string, error) {
	if !asOf.IsZero() {
		wait := v.HeldWait
		if wait <= 0 {
			wait = 5 * time.Second
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		err := v.currency(s).wait(wctx, asOf)
		cancel()
		if err != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("view %s: %w as of %s after %s", s, ErrStale, asOf.UTC().Format(time.RFC3339Nano), wait)
		}
		if err != nil {
			return nil, err
		}
	}
	out := make([]string, len(ids))
	err := v.with(func(db *pebble.DB) error {
		k, err := newSeeker(db)
		if err != nil {
			return err
		}
		defer func() { _ = k.close() }()
		for i, id := range ids {
			if out[i], err = k.get(idKey(s, id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("view %s: %w", s, err)
	}
	return out, nil
}
