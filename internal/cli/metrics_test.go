package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/layercake/cascade/internal/cli"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/query"
)

// scrape reads the metric families of base's /metrics, or nil while nothing answers.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		return nil
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	return mf
}

// series finds the value of the family's series with exactly these labels.
func series(mf map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := mf[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			if labels[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// startRunOn runs `cascade run` on the given store and ports until the returned stop is called.
func startRunOn(t *testing.T, dir, natsPort, httpPort string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		run(ctx, "", nil, "run", "--data-dir", dir, "--nats-listen", "127.0.0.1:"+natsPort, "--http-listen", "127.0.0.1:"+httpPort, "--ack-wait", "1s", "--log-format", "json")
	})
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			wg.Wait()
		}
	}
	t.Cleanup(stop)
	return stop
}

// demandEqualsTotals reports whether every quantity of `totals --by region` has its
// cascade_demand gauge with that value, and no gauge is left over.
func demandEqualsTotals(t *testing.T, mf map[string]*dto.MetricFamily, tot *query.Totals) (bool, string) {
	n := 0
	for _, r := range tot.Rows {
		for _, q := range r.Quantities {
			n++
			labels := map[string]string{"scenario": "base", "layer": string(r.Layer), "region": r.Region, "key": r.Key, "quantity": q.Name, "unit": q.Unit}
			v, ok := series(mf, "cascade_demand", labels)
			if !ok || v != q.Value {
				return false, fmt.Sprintf("%v: gauge %v (present %v), totals %v", labels, v, ok, q.Value)
			}
		}
	}
	if got := len(mf["cascade_demand"].GetMetric()); got != n {
		return false, fmt.Sprintf("%d demand gauges, %d totals quantities", got, n)
	}
	return true, ""
}

// /metrics of `cascade run` has every stage's series at zero (the chain's, labelled layer
// "application-energy"), dead letters of each kind
// included, before anything happened; cascade_build_info; and demand gauges equal to `cascade
// totals --by region`, after signals and again after a restart.
func TestMetricsFromTheStart(t *testing.T) {
	t.Parallel()
	dir, natsPort, httpPort := t.TempDir(), freePort(t), freePort(t)
	base, natsURL := "http://127.0.0.1:"+httpPort, "nats://127.0.0.1:"+natsPort
	stop := startRunOn(t, dir, natsPort, httpPort)
	var mf map[string]*dto.MetricFamily
	conformance.Eventually(t, 20*time.Second, "every stage's series at zero", func() error {
		mf = scrape(t, base)
		for _, l := range []string{"application-energy"} {
			for _, name := range []string{"cascade_events_in_total", "cascade_events_out_total", "cascade_processing_seconds", "cascade_consumer_pending"} {
				if v, ok := series(mf, name, map[string]string{"scenario": "base", "layer": l}); !ok || v != 0 {
					return fmt.Errorf("%s{layer=%q}: %v (present %v), want 0", name, l, v, ok)
				}
			}
			for _, kind := range []string{"decode", "validate", "transform"} {
				if v, ok := series(mf, "cascade_dlq_total", map[string]string{"scenario": "base", "layer": l, "kind": kind}); !ok || v != 0 {
					return fmt.Errorf("cascade_dlq_total{layer=%q,kind=%q}: %v (present %v), want 0", l, kind, v, ok)
				}
			}
		}
		return nil
	})
	if v, ok := series(mf, "cascade_build_info", map[string]string{"version": cli.Version, "goversion": runtime.Version()}); !ok || v != 1 {
		t.Errorf("cascade_build_info{version=%q,goversion=%q}: %v %v", cli.Version, runtime.Version(), v, ok)
	}

	signals := strings.Join([]string{
		`{"id":"m-1","source":"/t","type":"cascade.signal.adoption.v1","time":"2025-02-01T00:00:00Z","data":{"app":"a","category":"chat","region":"us","users_delta":2600000}}`,
		`{"id":"m-2","source":"/t","type":"cascade.signal.adoption.v1","time":"2025-02-02T00:00:00Z","data":{"app":"b","category":"code","region":"eu","users_delta":400000}}`,
		`{"id":"m-3","source":"/t","type":"cascade.demand.chips.v1","time":"2025-02-03T00:00:00Z","data":{"region":"jp","accelerator":"h100","units":5000}}`,
	}, "\n")
	env := map[string]string{"CASCADE_NATS_URL": natsURL}
	if code, out, errs := run(t.Context(), signals, env, "publish", "-"); code != 0 {
		t.Fatalf("publish: %d %s %s", code, out, errs)
	}
	totalsNow := func() *query.Totals {
		code, out, errs := run(t.Context(), "", env, "totals", "--by", "region", "--json")
		if code != 0 {
			t.Fatalf("totals: %d %s", code, errs)
		}
		var tot query.Totals
		if err := json.Unmarshal([]byte(out), &tot); err != nil {
			t.Fatal(err)
		}
		return &tot
	}
	check := func() error {
		tot := totalsNow()
		if len(tot.Rows) == 0 {
			return errors.New("totals has no rows")
		}
		if ok, why := demandEqualsTotals(t, scrape(t, base), tot); !ok {
			return errors.New(why)
		}
		return nil
	}
	// Both adoptions' trees reach the grid, one grid event per accelerator of the fleet in force
	// at each one's time, and the injected chips one.
	want := gridEventsPerSignal("us", time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)) + gridEventsPerSignal("eu", time.Date(2025, 2, 2, 0, 0, 0, 0, time.UTC)) + 1
	conformance.Eventually(t, 30*time.Second, "every tree in totals", func() error {
		grid := 0
		for _, r := range totalsNow().Rows {
			if r.Layer == "grid" {
				grid += r.Events
			}
		}
		if grid < want {
			return fmt.Errorf("%d of %d grid events in totals", grid, want)
		}
		return nil
	})
	// The HTTP trace is answered by run's index, and says so.
	conformance.Eventually(t, 20*time.Second, "m-1's tree from run's index over HTTP", func() error {
		resp, err := http.Get(base + "/v1/trace/m-1")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"via":"index"`) || !strings.Contains(string(body), "cascade.demand.grid.v1") {
			return fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		return nil
	})
	conformance.Eventually(t, 20*time.Second, "demand gauges equal to totals", check)
	mf = scrape(t, base)
	for _, want := range []map[string]string{
		{"layer": "grid", "region": "us", "quantity": "avg_mw"},
		{"layer": "chips", "region": "jp", "key": "injected:h100", "quantity": "units"},
		{"layer": "model", "region": "us", "quantity": "tokens_per_day"},
	} {
		found := false
		for _, m := range mf["cascade_demand"].GetMetric() {
			match := 0
			for _, l := range m.GetLabel() {
				if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
					match++
				}
			}
			found = found || (match == len(want) && m.GetGauge().GetValue() > 0)
		}
		if !found {
			t.Errorf("no positive cascade_demand gauge %v", want)
		}
	}

	// After a restart the gauges are rebuilt from the log, with no new signal.
	stop()
	startRunOn(t, dir, natsPort, httpPort)
	conformance.Eventually(t, 30*time.Second, "demand gauges equal to totals after a restart", func() error {
		if scrape(t, base) == nil {
			return errors.New("no metrics page yet")
		}
		return check()
	})
}
