package view_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/natsjs"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/view"
	"github.com/layercake/cascade/producers"
)

// The child process of TestKill9: it follows scenario base of the broker at
// CASCADE_VIEW_CHILD_URL into the view in CASCADE_VIEW_CHILD_DIR, committing every
// millisecond, and says "following" once it has committed, until it is killed.
func TestKill9Child(t *testing.T) {
	url, dir := os.Getenv("CASCADE_VIEW_CHILD_URL"), os.Getenv("CASCADE_VIEW_CHILD_DIR")
	if url == "" {
		t.Skip("the child of TestKill9")
	}
	b, err := natsjs.Connect(context.Background(), natsjs.Options{URL: url, ConnectWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	v := &view.View{B: b, Dir: dir, Log: zerolog.Nop(), FlushDelay: time.Millisecond, Committed: func(context.Context, string) {
		once.Do(func() { fmt.Println("following") })
	}}
	t.Fatal(v.Follow(context.Background(), "base"))
}

// kill -9 of the process keeping a view, at random moments while the log grows, never counts
// an event twice nor drops one: after three kills and a last restart the view's totals are
// the scan's, every event counted once.
func TestKill9(t *testing.T) {
	t.Parallel()
	b, url := conformance.NATS(t)
	coef := coefficients.Default()
	if err := consumers.BindScenario(t.Context(), b, "base", coef, broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := consumers.New(b, zerolog.Nop(), consumers.Options{Batch: 256})
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.Serve(ctx, event.ConsumerLayers, 100*time.Millisecond) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	g := producers.NewGenerator(7, "kill-", time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC), 37*time.Minute)
	publish := func(n int) {
		items := make([]producers.Item, n)
		for i := range items {
			items[i] = producers.Item{Line: i + 1, Raw: g.Next()}
		}
		if _, err := (&producers.Publisher{Broker: b, Scenario: "base"}).Publish(t.Context(), items); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Now()
	behind := 0
	for round := range 3 {
		publish(150)
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Child$", "-test.count=1")
		cmd.Env = append(os.Environ(), "CASCADE_VIEW_CHILD_URL="+url, "CASCADE_VIEW_CHILD_DIR="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() && sc.Text() != "following" {
		}
		publish(75) // the log grows while the child applies it
		// A random moment: mid-apply, mid-commit or between batches.
		<-time.After(time.Duration(rng.IntN(30)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err == nil {
			t.Fatalf("round %d: the child ended by itself", round)
		}
		// What the killed child left: committed up to a position, never past what it counted.
		v := &view.View{B: b, Dir: dir, Log: zerolog.Nop()}
		held, err := v.Totals(t.Context(), query.TotalsOptions{Scenario: "base"})
		if err != nil {
			t.Fatal(err)
		}
		all, err := query.SumTotals(t.Context(), b, query.TotalsOptions{Scenario: "base"})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d at %s: view %d of %d events", round, time.Since(t0), held.Events, all.Events)
		if held.Events < all.Events {
			behind++
		}
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if behind == 0 {
		t.Errorf("no kill caught the child behind the log; the test shows nothing")
	}
	v := &view.View{B: b, Dir: dir, Log: zerolog.Nop()}
	t.Cleanup(func() { _ = v.Close() })
	wg.Go(func() { _ = v.Follow(ctx, "base") })
	conformance.Eventually(t, 60*time.Second, "the restarted view's totals equal to the scan's", func() error {
		for _, l := range event.ConsumerLayers {
			if lag, err := b.Lag(t.Context(), "base", l); err != nil || lag > 0 {
				return fmt.Errorf("layer %s lag %d %v", l, lag, err)
			}
		}
		return conformance.SameTotals(v, b, query.TotalsOptions{Scenario: "base", ByRegion: true})
	})
}
