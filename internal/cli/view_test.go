package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/conformance"
)

// run's view answers totals (with its position) and series (table, JSON, CSV) over the
// broker; totals --csv; subscribe --snapshot prints the layer's totals first, then events.
func TestSeriesAndTotalsFromRunsView(t *testing.T) {
	t.Parallel()
	env := map[string]string{"CASCADE_NATS_URL": startRun(t)}
	if code, out, stderr := run(t.Context(), adoptionUS, env, "publish"); code != 0 {
		t.Fatalf("publish: %d %s %s", code, out, stderr)
	}
	conformance.Eventually(t, 20*time.Second, "the view's grid totals", func() error {
		code, out, stderr := run(t.Context(), "", env, "totals", "--json")
		if code != 0 || !strings.Contains(out, `"position"`) || !strings.Contains(out, `"layer": "grid"`) {
			return fmt.Errorf("totals: %d %s %s", code, out, stderr)
		}
		return nil
	})
	code, out, stderr := run(t.Context(), "", env, "series", "--layer", "grid", "--quantity", "avg_mw", "--step", "week", "--json")
	var ser struct {
		Unit, Step, Position string
		Series               []struct {
			Key    string
			Points []struct {
				T             time.Time
				Change, Level float64
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &ser); code != 0 || err != nil || len(ser.Series) != 1 || ser.Series[0].Key != "us" || ser.Position == "" {
		t.Fatalf("series --json: %d %v %s %s", code, err, out, stderr)
	}
	if p := ser.Series[0].Points; len(p) != 1 || !p[0].T.Equal(time.Date(2025, 1, 27, 0, 0, 0, 0, time.UTC)) || p[0].Change <= 0 || p[0].Level != p[0].Change {
		t.Fatalf("the week of 2025-01-27: %+v", p)
	}
	if strings.Contains(stderr, "temporary view") {
		t.Errorf("series was not answered by run's view: %s", stderr)
	}
	if code, out, _ := run(t.Context(), "", env, "series", "--layer", "grid", "--quantity", "avg_mw", "--step", "week", "--csv"); code != 0 || !strings.HasPrefix(out, "scenario,layer,quantity,unit,by,key,step,t,change,level\nbase,grid,avg_mw,MW avg,region,us,week,2025-01-27T00:00:00Z,") {
		t.Fatalf("series --csv: %d %s", code, out)
	}
	if code, out, _ := run(t.Context(), "", env, "series", "--layer", "grid", "--quantity", "avg_mw", "--vs", "base"); code != 0 || !strings.Contains(out, "base LEVEL") || !strings.Contains(out, "2025-01-01") {
		t.Fatalf("series --vs: %d %s", code, out)
	}
	if code, _, stderr := run(t.Context(), "", env, "series", "--layer", "grid", "--quantity", "avg_mw", "--by", "accelerator"); code != 2 || !strings.Contains(stderr, "by \"accelerator\"") {
		t.Fatalf("series --by accelerator on grid: %d %s", code, stderr)
	}
	if code, out, _ := run(t.Context(), "", env, "totals", "--csv"); code != 0 || !strings.HasPrefix(out, "scenario,layer,region,key,quantity,unit,value,events\nbase,application,,chat,") {
		t.Fatalf("totals --csv: %d %s", code, out)
	}

	// subscribe --snapshot: the grid totals as of a position, then the events after it.
	var wg sync.WaitGroup
	var sub string
	wg.Go(func() { _, sub, _ = run(t.Context(), "", env, "subscribe", "grid", "--snapshot", "--count", "2") })
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for i := 0; ; i++ { // publish until the subscriber, once subscribed, has two events
		sig := strings.Replace(adoptionUS, "plain-client-1", fmt.Sprintf("snap-%d", i), 1)
		if code, out, stderr := run(t.Context(), sig, env, "publish"); code != 0 {
			t.Fatalf("publish: %d %s %s", code, out, stderr)
		}
		select {
		case <-done:
		case <-time.After(200 * time.Millisecond):
			continue
		}
		break
	}
	lines := strings.Split(strings.TrimSpace(sub), "\n")
	var snap struct {
		Position string
		Events   int
		Rows     []struct{ Layer string }
	}
	if err := json.Unmarshal([]byte(lines[0]), &snap); err != nil || snap.Position == "" || snap.Events < 2 || len(lines) != 3 {
		t.Fatalf("subscribe --snapshot printed %s (%v)", sub, err)
	}
	for _, l := range lines[1:] {
		if !strings.Contains(l, `"type":"cascade.demand.grid.v1"`) || strings.Contains(l, "plain-client-1") {
			t.Errorf("after the snapshot: %s", l)
		}
	}
}

// cascade view serves the view of a broker's scenarios over HTTP without publishing;
// cascade view rebuild reads it again from the log; series without a run builds a
// temporary view and says so.
func TestViewProcessAndRebuild(t *testing.T) {
	t.Parallel()
	env := map[string]string{"CASCADE_NATS_URL": startRun(t)}
	if code, out, stderr := run(t.Context(), adoptionUS, env, "publish"); code != 0 {
		t.Fatalf("publish: %d %s %s", code, out, stderr)
	}
	dir, port := t.TempDir(), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { run(ctx, "", env, "view", "--index-dir", dir, "--http-listen", "127.0.0.1:"+port) })
	get := func(path string) (int, string) {
		resp, err := http.Get("http://127.0.0.1:" + port + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// What cascade view serves once the stages have derived the whole tree and both views
	// have applied it: a view may answer while a tree is still being stored, part of it.
	var served string
	conformance.Eventually(t, 20*time.Second, "cascade view's totals equal to run's, the stages drained", func() error {
		code, out, stderr := run(t.Context(), "", env, "scenario", "show", "base")
		var show struct {
			Lag map[string]int `json:"lag"`
		}
		if err := json.Unmarshal([]byte(out), &show); code != 0 || err != nil || len(show.Lag) == 0 {
			return fmt.Errorf("scenario show: %d %s %v", code, stderr, err)
		}
		for stage, n := range show.Lag {
			if n != 0 {
				return fmt.Errorf("stage %s lags by %d", stage, n)
			}
		}
		code, body := get("/v1/totals")
		var mine, runs struct{ Rows any }
		if served = body; code != 200 || json.Unmarshal([]byte(body), &mine) != nil || !strings.Contains(body, `"layer":"grid"`) {
			return fmt.Errorf("%d %s", code, body)
		}
		code, out, stderr = run(t.Context(), "", env, "totals", "--json")
		if code != 0 || json.Unmarshal([]byte(out), &runs) != nil {
			return fmt.Errorf("totals: %d %s %s", code, out, stderr)
		}
		if a, b := fmt.Sprint(mine.Rows), fmt.Sprint(runs.Rows); a != b {
			return fmt.Errorf("cascade view %s, run %s", a, b)
		}
		return nil
	})
	if code, body := get("/v1/series?layer=chips&quantity=units&by=accelerator"); code != 200 || !strings.Contains(body, `"key":"h100"`) {
		t.Errorf("view series: %d %s", code, body)
	}
	resp, err := http.Post("http://127.0.0.1:"+port+"/v1/signals", "application/json", strings.NewReader(adoptionUS))
	if err != nil || resp.StatusCode == 200 {
		t.Errorf("cascade view took a signal: %v %v", resp, err)
	}
	if resp != nil {
		_ = resp.Body.Close()
	}
	cancel()
	wg.Wait()
	code, out, stderr := run(t.Context(), "", env, "view", "rebuild", "--index-dir", dir)
	if code != 0 || !strings.Contains(out, "rebuilt base up to ") {
		t.Fatalf("view rebuild: %d %s %s", code, out, stderr)
	}
	var before, after struct{ Rows any }
	_ = json.Unmarshal([]byte(served), &before)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	wg.Go(func() { run(ctx, "", env, "view", "--index-dir", dir, "--http-listen", "127.0.0.1:"+port) })
	conformance.Eventually(t, 20*time.Second, "the rebuilt view's totals", func() error {
		code, body := get("/v1/totals")
		if err := json.Unmarshal([]byte(body), &after); code != 200 || err != nil {
			return fmt.Errorf("%d %s", code, body)
		}
		if a, b := fmt.Sprint(after.Rows), fmt.Sprint(before.Rows); a != b {
			return fmt.Errorf("rebuilt rows %s, before %s", a, b)
		}
		return nil
	})
	cancel()
	wg.Wait()

	// No run answering view requests: a temporary view, said so.
	_, benv := startBroker(t)
	if code, out, stderr := run(t.Context(), "", benv, "scenario", "create", "base"); code != 0 {
		t.Fatalf("scenario create: exit %d %s %s", code, out, stderr)
	}
	if code, out, stderr := run(t.Context(), adoptionUS+"\n", benv, "publish"); code != 0 {
		t.Fatalf("publish: exit %d %s %s", code, out, stderr)
	}
	code, out, stderr = run(t.Context(), "", benv, "series", "--layer", "application", "--quantity", "users_delta", "--by", "category", "--step", "year")
	if code != 0 || !strings.Contains(stderr, "temporary view") || !strings.Contains(out, "chat") {
		t.Fatalf("series without run: %d\n%s\n%s", code, out, stderr)
	}
}
