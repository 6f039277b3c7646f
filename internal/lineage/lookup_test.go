package lineage_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/lineage"
	"github.com/layercake/cascade/internal/view"
	"github.com/layercake/cascade/producers"
)

// narrowed is a real broker seen only through the port, without request/reply.
type narrowed struct{ broker.Broker }

// Lookup asks run's index when a run answers, and otherwise scans and says why: the broker
// carries no request/reply, or no run answers. An error of run's answer keeps its class and
// is not followed by a scan.
func TestLookupAsksRunElseScansAndSaysWhy(t *testing.T) {
	t.Parallel()
	nb, _ := conformance.NATS(t)
	ctx := t.Context()
	const s = "base"
	if err := consumers.BindScenario(ctx, nb, s, coefficients.Default(), broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	ev, err := producers.Prepare(producers.NewGenerator(1, "lk-", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Second).Next(), s, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m, err := producers.Message(ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := nb.Publish(ctx, []broker.Message{m}); err != nil {
		t.Fatal(err)
	}

	lookup := func(b broker.Broker, id string) (*lineage.Answer, []lineage.Fallback, error) {
		var whys []lineage.Fallback
		a, err := lineage.Lookup(ctx, b, s, id, func(why lineage.Fallback) { whys = append(whys, why) })
		return a, whys, err
	}
	for _, c := range []struct {
		name string
		b    broker.Broker
		want lineage.Fallback
	}{{"no run", nb, lineage.NoRun}, {"no request/reply", narrowed{nb}, lineage.NoRequestReply}} {
		a, whys, err := lookup(c.b, ev.ID)
		if err != nil || a.Via != lineage.ViaScan || a.Root.Event.ID != ev.ID {
			t.Fatalf("%s: %+v %v, want the signal scanned", c.name, a, err)
		}
		if len(whys) != 1 || whys[0] != c.want {
			t.Fatalf("%s: told %q before scanning, want %q", c.name, whys, c.want)
		}
	}

	ix := &view.View{B: nb, Dir: t.TempDir(), Log: zerolog.Nop()}
	t.Cleanup(func() { _ = ix.Close() })
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Go(func() { _ = ix.Follow(ctx, s) })
	wg.Go(func() { _ = ix.Serve(ctx, nb) })
	conformance.Eventually(t, 10*time.Second, "run's index answers", func() error {
		a, whys, err := lookup(nb, ev.ID)
		switch {
		case err != nil:
			return err
		case len(whys) > 0 || a.Via != lineage.ViaIndex:
			return fmt.Errorf("answered via %s after %q", a.Via, whys)
		case a.Root.Event.ID != ev.ID:
			return fmt.Errorf("root %s, want %s", a.Root.Event.ID, ev.ID)
		}
		return nil
	})
	if _, whys, err := lookup(nb, "no-such-event"); !errors.Is(err, broker.ErrNoEvent) || len(whys) > 0 {
		t.Fatalf("an id run's index does not hold: %v after %q, want ErrNoEvent and no scan", err, whys)
	}
}
