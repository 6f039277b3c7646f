package consumers_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/conformance"
)

// A follower that fails is restarted FollowerRestart later with a warning naming it, and
// runs with a context that ends with Serve's: Serve returns only after its followers did, and
// a follower waiting to be restarted is not restarted once the context has ended.
func TestServeRestartsFollowersUntilItsContextEnds(t *testing.T) {
	t.Parallel()
	b, _ := start(t)
	if err := consumers.BindScenario(t.Context(), b, "t", coefficients.Default(), broker.ScenarioConfig{AckWait: time.Second}); err != nil {
		t.Fatal(err)
	}
	var flakyStarts, flakyEnded, waitingStarts atomic.Int32
	flaky := func(ctx context.Context, scenario string) error {
		if scenario != "t" {
			t.Errorf("follower given scenario %q", scenario)
		}
		if flakyStarts.Add(1) <= 2 {
			return errors.New("lost the broker")
		}
		<-ctx.Done()
		flakyEnded.Add(1)
		return ctx.Err()
	}
	waiting := func(context.Context, string) error {
		waitingStarts.Add(1)
		return errors.New("always fails")
	}
	logs := &conformance.SyncBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	restart := 20 * time.Millisecond
	r := consumers.New(b, zerolog.New(logs), consumers.Options{FollowerRestart: restart, Followers: map[string]consumers.Follower{"flaky": flaky}})
	slow := consumers.New(b, zerolog.New(logs), consumers.Options{FollowerRestart: time.Hour, Followers: map[string]consumers.Follower{"waiting": waiting}})
	served := make(chan error, 2)
	go func() { served <- r.Serve(ctx, nil, 50*time.Millisecond) }()
	go func() { served <- slow.Serve(ctx, nil, 50*time.Millisecond) }()
	conformance.Eventually(t, 5*time.Second, "flaky restarted twice", func() error {
		if n := flakyStarts.Load(); n < 3 {
			return fmt.Errorf("flaky started %d times", n)
		}
		if n := strings.Count(logs.String(), "flaky stopped; restarting"); n != 2 {
			return fmt.Errorf("%d warnings, want 2: %s", n, logs.String())
		}
		return nil
	})
	conformance.Eventually(t, 5*time.Second, "waiting started", func() error {
		if waitingStarts.Load() == 0 {
			return errors.New("not started")
		}
		return nil
	})
	cancel()
	for range 2 {
		select {
		case err := <-served:
			if err != nil {
				t.Fatalf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Serve did not return when its context ended (a follower waiting to restart held it)")
		}
	}
	if flakyEnded.Load() != 1 || flakyStarts.Load() != 3 {
		t.Fatalf("flaky started %d times and saw its context end %d times; want 3 and 1", flakyStarts.Load(), flakyEnded.Load())
	}
	if n := waitingStarts.Load(); n != 1 {
		t.Fatalf("waiting started %d times, want 1: restarted after the context ended", n)
	}
}
