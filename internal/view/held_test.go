package view_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/view"
	"github.com/layercake/cascade/producers"
)

// The id set answers where each id is held, in the process and over request/reply (what a
// `consume` process asks), and refuses, naming ErrStale, an answer as of a moment it has not
// caught up to.
func TestHeldAt(t *testing.T) {
	t.Parallel()
	b, _ := conformance.NATS(t)
	if err := consumers.BindScenario(t.Context(), b, "base", coefficients.Default(), broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	v := &view.View{B: b, Dir: t.TempDir(), Log: zerolog.Nop(), HeldWait: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = v.Follow(ctx, "base") })
	wg.Go(func() { _ = v.ServeQueries(ctx, b) })
	t.Cleanup(func() { cancel(); wg.Wait(); _ = v.Close() })

	g := producers.NewGenerator(3, "held-", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Hour)
	items := []producers.Item{{Line: 1, Raw: g.Next()}, {Line: 2, Raw: g.Next()}}
	res, err := (&producers.Publisher{Broker: b, Scenario: "base"}).Publish(t.Context(), items)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{res[0].ID, "held-never", res[1].ID}
	published := time.Now()
	for name, set := range map[string]consumers.IDSet{"view": v, "remote": view.Remote{B: b}} {
		var pos []string
		conformance.Eventually(t, 10*time.Second, name+" to answer as of the publish", func() (err error) {
			pos, err = set.HeldAt(t.Context(), "base", ids, published)
			return err
		})
		if pos[0] == "" || pos[1] != "" || pos[2] == "" || pos[0] == pos[2] {
			t.Errorf("%s: positions %q, want two distinct ones and none for held-never", name, pos)
		}
	}
	_, err = v.HeldAt(t.Context(), "base", ids, time.Now().Add(time.Hour))
	if !errors.Is(err, view.ErrStale) {
		t.Errorf("as of an hour ahead: %v, want ErrStale", err)
	}
	if _, err := (view.Remote{B: b}).HeldAt(t.Context(), "base", ids, time.Now().Add(time.Hour)); err == nil {
		t.Errorf("over request/reply, as of an hour ahead: no error")
	}
}
