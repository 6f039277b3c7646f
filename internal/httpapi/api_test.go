package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/httpapi"
	"github.com/layercake/cascade/internal/metrics"
	"github.com/layercake/cascade/internal/view"
)

// apiPipeline runs an embedded broker, all five layers and the API; it returns the API's URL.
func apiPipeline(t *testing.T, o httpapi.Options) string {
	t.Helper()
	url, _ := apiServer(t, o, false)
	return url
}

// apiServer is apiPipeline on a broker of its own, with run's view of scenario base when
// withView is set; it returns the server's URL and the broker.
func apiServer(t *testing.T, o httpapi.Options, withView bool) (string, broker.Broker) {
	t.Helper()
	b, _ := conformance.NATS(t)
	if err := consumers.BindScenario(t.Context(), b, "base", coefficients.Default(), broker.ScenarioConfig{AckWait: time.Second}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	r := consumers.New(b, zerolog.Nop(), consumers.Options{Metrics: metrics.New(reg), PendingEvery: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.Serve(ctx, event.ConsumerLayers, 100*time.Millisecond) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	if withView {
		v := &view.View{B: b, Dir: t.TempDir(), Log: zerolog.Nop()}
		t.Cleanup(func() { _ = v.Close() })
		wg.Go(func() { _ = v.Follow(ctx, "base") })
		o.View, o.Trace = v, v.Trace
	}
	o.Listen, o.Gatherer, o.Ready = "127.0.0.1:0", reg, r.Ready
	srv, err := httpapi.New(b, o)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL, b
}

func signal(id, region string, users int) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/api-test","type":"cascade.signal.adoption.v1","time":"2025-02-01T00:00:00Z","data":{"app":"a","category":"chat","region":%q,"users_delta":%d}}`, id, region, users)
}

type call struct {
	name, method, path, route string
	header                    map[string]string
	body                      string
	want                      int
	contains                  string
}

func request(t *testing.T, base string, c call) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), c.method, base+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, b := exchange(t, req)
	return resp.StatusCode, string(b)
}

// openAPI reads the routes of docs/openapi.yaml ("GET /v1/totals").
func openAPI(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for path, item := range mustSpec(t).Paths.Map() {
		for method := range item.Operations() {
			out[method+" "+path] = true
		}
	}
	return out
}

// Every status the handlers give is exercised here, each exchange is held to docs/openapi.yaml
// (request, status, Content-Type and body; see exchange), and every documented route is served.
func TestHandlersAgainstOpenAPI(t *testing.T) {
	t.Parallel()
	open := apiPipeline(t, httpapi.Options{MaxBody: 4096})
	locked := apiPipeline(t, httpapi.Options{Token: "s3cret"})
	json := map[string]string{"Content-Type": "application/json"}
	ndjson := map[string]string{"Content-Type": "application/x-ndjson"}
	bearer := map[string]string{"Authorization": "Bearer s3cret", "Content-Type": "application/json"}
	calls := []call{
		{"one event", "POST", "/v1/signals", "POST /v1/signals", json, signal("api-1", "us", 1000), 200, `{"line":1,"id":"api-1"}`},
		{"cloudevents batch", "POST", "/v1/signals", "POST /v1/signals", map[string]string{"Content-Type": "application/cloudevents-batch+json"}, "[" + signal("api-2", "eu", 5) + "," + signal("api-3", "eu", 6) + "]", 200, `"id":"api-3"`},
		{"mixed batch", "POST", "/v1/signals", "POST /v1/signals", ndjson, signal("api-4", "us", 7) + "\n{\"type\":\"cascade.signal.adoption.v1\"}\n", 207, `"line":2,"error"`},
		{"nothing valid", "POST", "/v1/signals", "POST /v1/signals", ndjson, "{\"type\":\"nope\"}\n", 400, `"line":1,"error"`},
		{"oversized", "POST", "/v1/signals", "POST /v1/signals", ndjson, strings.Repeat(signal("big", "us", 1)+"\n", 40), 413, "nothing was published"},
		{"wrong content type", "POST", "/v1/signals", "POST /v1/signals", map[string]string{"Content-Type": "text/plain"}, "x", 415, "Content-Type"},
		{"signals, unregistered scenario", "POST", "/v1/signals?scenario=nosuch", "POST /v1/signals", json, signal("api-5", "us", 1), 404, "scenario nosuch is not registered"},
		{"signals, wildcard scenario", "POST", "/v1/signals?scenario=*", "POST /v1/signals", json, signal("api-6", "us", 1), 400, `"scenario \"*\": must match`},
		{"signals, unknown parameter", "POST", "/v1/signals?foo=1", "POST /v1/signals", json, signal("api-7", "us", 1), 400, `query parameter \"foo\": unknown`},
		{"signals, scenario twice", "POST", "/v1/signals?scenario=base&scenario=what-if", "POST /v1/signals", json, signal("api-8", "us", 1), 400, `query parameter \"scenario\": given 2 times`},
		{"signals, unrepresentable tree", "POST", "/v1/signals", "POST /v1/signals", json, signal("api-9", "us", 1000000000000), 400, "|x| <= 1e21"},
		{"trace, control character in the id", "GET", "/v1/trace/%0A", "GET /v1/trace/{id}", nil, "", 400, "id: "},
		{"feed, bad layer", "GET", "/v1/feeds/application", "GET /v1/feeds/{layer}", nil, "", 400, "feeds are"},
		{"feed, unknown scenario", "GET", "/v1/feeds/grid?scenario=nope", "GET /v1/feeds/{layer}", nil, "", 404, "not found"},
		{"feeds, bad region", "GET", "/v1/feeds?layers=grid&region=NO", "GET /v1/feeds", nil, "", 400, "region"},
		{"feeds, unknown scenario", "GET", "/v1/feeds?layers=chips,grid&scenario=nope", "GET /v1/feeds", nil, "", 404, "not found"},
		{"totals", "GET", "/v1/totals?by=region", "GET /v1/totals", nil, "", 200, `"scenario":"base"`},
		{"topology", "GET", "/v1/topology", "GET /v1/topology", nil, "", 200, `{"layer":"chips","signals":[],"demand":"cascade.demand.chips.v1","emits":"energy","feed":true,"key":"accelerator","quantities":[{"name":"units","unit":"accelerators"}]}`},
		{"topology, application users", "GET", "/v1/topology", "GET /v1/topology", nil, "", 200, `"feed":false,"key":"category","quantities":[{"name":"users_delta","unit":"weekly users"}]}`},
		{"topology, unknown parameter", "GET", "/v1/topology?layer=grid", "GET /v1/topology", nil, "", 400, `query parameter \"layer\": unknown`},
		{"totals, bad time", "GET", "/v1/totals?since=yesterday-ish", "GET /v1/totals", nil, "", 400, "since"},
		{"totals, unknown scenario", "GET", "/v1/totals?scenario=nope", "GET /v1/totals", nil, "", 404, "not found"},
		{"feed, wildcard scenario", "GET", "/v1/feeds/grid?scenario=*", "GET /v1/feeds/{layer}", nil, "", 400, `"scenario \"*\": must match`},
		{"feed, unknown parameter", "GET", "/v1/feeds/grid?layers=chips", "GET /v1/feeds/{layer}", nil, "", 400, `query parameter \"layers\": unknown`},
		{"feed, bad since", "GET", "/v1/feeds/grid?since=soon", "GET /v1/feeds/{layer}", nil, "", 400, "since: "},
		{"feeds, no layers", "GET", "/v1/feeds", "GET /v1/feeds", nil, "", 400, "layers: "},
		{"feeds, bad layer", "GET", "/v1/feeds?layers=chips,nope", "GET /v1/feeds", nil, "", 400, `layers: layer \"nope\"`},
		{"feeds, scenario twice", "GET", "/v1/feeds?layers=grid&scenario=base&scenario=x", "GET /v1/feeds", nil, "", 400, `query parameter \"scenario\": given 2 times`},
		{"totals, wildcard scenario", "GET", "/v1/totals?scenario=%3E", "GET /v1/totals", nil, "", 400, `"scenario \">\": must match`},
		{"totals, bogus by", "GET", "/v1/totals?by=bogus", "GET /v1/totals", nil, "", 400, `by \"bogus\"`},
		{"totals, bad until", "GET", "/v1/totals?until=later", "GET /v1/totals", nil, "", 400, "until: "},
		{"totals, until before since", "GET", "/v1/totals?since=2025-02-02T00:00:00Z&until=2025-02-01T00:00:00Z", "GET /v1/totals", nil, "", 400, "not after since"},
		{"totals, unknown parameter", "GET", "/v1/totals?region=us", "GET /v1/totals", nil, "", 400, `query parameter \"region\": unknown`},
		{"totals, malformed query", "GET", "/v1/totals?by=%zz", "GET /v1/totals", nil, "", 400, "query: "},
		{"trace, wildcard scenario", "GET", "/v1/trace/api-1?scenario=*", "GET /v1/trace/{id}", nil, "", 400, "scenario"},
		{"scenarios, unknown parameter", "GET", "/v1/scenarios?all=1", "GET /v1/scenarios", nil, "", 400, `query parameter \"all\": unknown`},
		{"trace", "GET", "/v1/trace/api-1", "GET /v1/trace/{id}", nil, "", 200, `"focus":"api-1"`},
		{"trace, answered by a scan", "GET", "/v1/trace/api-1", "GET /v1/trace/{id}", nil, "", 200, `"via":"scan"`},
		{"trace, unknown id", "GET", "/v1/trace/nothing-here", "GET /v1/trace/{id}", nil, "", 404, "no such event"},
		{"scenarios", "GET", "/v1/scenarios", "GET /v1/scenarios", nil, "", 200, `"scenario":"base"`},
		{"metrics", "GET", "/metrics", "GET /metrics", nil, "", 200, "cascade_events_in_total"},
		{"healthz", "GET", "/healthz", "GET /healthz", nil, "", 200, "ok"},
		{"readyz", "GET", "/readyz", "GET /readyz", nil, "", 200, "ready"},
		{"page", "GET", "/", "GET /", nil, "", 200, "<html"},
		{"series without a view", "GET", "/v1/series?layer=grid&quantity=avg_mw", "GET /v1/series", nil, "", 503, "series need the view"},
		{"snapshot without a view", "GET", "/v1/feeds/grid?snapshot=1", "GET /v1/feeds/{layer}", nil, "", 503, "snapshot: needs the view"},
		{"totals vs another", "GET", "/v1/totals?vs=base", "GET /v1/totals", nil, "", 200, `"vs":"base"`},
	}
	conformance.Eventually(t, 20*time.Second, "the pipeline to be ready", func() error {
		if s, body := request(t, open, call{method: "GET", path: "/readyz"}); s != 200 {
			return fmt.Errorf("GET /readyz: %d %q", s, body)
		}
		return nil
	})
	conformance.Eventually(t, 20*time.Second, "api-1's tree", func() error {
		if s, body := request(t, open, calls[0]); s != 200 {
			return fmt.Errorf("%s %s: %d %q", calls[0].method, calls[0].path, s, body)
		}
		s, body := request(t, open, call{method: "GET", path: "/v1/trace/api-1"})
		if s != 200 || !strings.Contains(body, "cascade.demand.grid.v1") {
			return fmt.Errorf("GET /v1/trace/api-1: %d %.300s; want 200 with a grid event", s, body)
		}
		return nil
	})
	spec := openAPI(t)
	seen := map[string]bool{}
	for _, c := range calls {
		status, body := request(t, open, c)
		if status != c.want || !strings.Contains(body, c.contains) {
			t.Errorf("%s: %s %s → %d %q; want %d containing %q", c.name, c.method, c.path, status, trim(body), c.want, c.contains)
		}
		seen[c.route] = true
	}
	// With a token: /v1/ needs it, the probes, metrics and page stay open.
	for _, c := range []call{
		{"no token", "GET", "/v1/scenarios", "GET /v1/scenarios", nil, "", 401, "bearer"},
		{"wrong token", "POST", "/v1/signals", "POST /v1/signals", map[string]string{"Authorization": "Bearer nope", "Content-Type": "application/json"}, signal("x", "us", 1), 401, "bearer"},
		{"right token", "POST", "/v1/signals", "POST /v1/signals", bearer, signal("tok-1", "us", 1), 200, "tok-1"},
		{"right token, scheme in lower case", "POST", "/v1/signals", "POST /v1/signals", map[string]string{"Authorization": "bearer s3cret", "Content-Type": "application/json"}, signal("tok-2", "us", 1), 200, "tok-2"},
		{"token without a scheme", "POST", "/v1/signals", "POST /v1/signals", map[string]string{"Authorization": "s3cret", "Content-Type": "application/json"}, signal("x", "us", 1), 401, "bearer"},
		{"open probe", "GET", "/healthz", "GET /healthz", nil, "", 200, "ok"},
		{"open metrics", "GET", "/metrics", "GET /metrics", nil, "", 200, "# HELP"},
		{"open page", "GET", "/", "GET /", nil, "", 200, "<html"},
	} {
		status, body := request(t, locked, c)
		if status != c.want || !strings.Contains(body, c.contains) {
			t.Errorf("token %s: %d %q, want %d", c.name, status, trim(body), c.want)
		}
	}
	for route := range spec {
		if !seen[route] {
			t.Errorf("documented route %s is not exercised", route)
		}
	}
	// Events flowed, so the counters moved.
	conformance.Eventually(t, 20*time.Second, "metrics to count events", func() error {
		_, body := request(t, open, call{method: "GET", path: "/metrics"})
		for _, want := range []string{`cascade_events_out_total\{layer="energy",scenario="base"\} [1-9]`, `cascade_processing_seconds_count\{layer="application",scenario="base"\} [1-9]`} {
			if !regexp.MustCompile(want).MatchString(body) {
				return fmt.Errorf("no series matching %s", want)
			}
		}
		return nil
	})
}

func trim(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

func TestNonLoopbackWithoutTokenRefused(t *testing.T) {
	t.Parallel()
	_, err := httpapi.New(nil, httpapi.Options{Listen: "0.0.0.0:8080"})
	if err == nil || !strings.Contains(err.Error(), "--api-token") {
		t.Fatalf("err %v, want a refusal naming --api-token", err)
	}
	if _, err := httpapi.New(nil, httpapi.Options{Listen: "0.0.0.0:8080", Token: "t"}); err != nil {
		t.Fatalf("with a token: %v", err)
	}
}

// sse reads events from an SSE response until n arrived.
func sse(t *testing.T, url, lastID string, n int) (ids, data []string) {
	t.Helper()
	return sseRead(t, url, lastID, nil, n)
}

// sseUntil reads events from an SSE response until done, told each event's data, says so.
func sseUntil(t *testing.T, url string, done func(data string) bool) (ids, data []string) {
	t.Helper()
	return sseRead(t, url, "", done, -1)
}

func sseRead(t *testing.T, url, lastID string, done func(string) bool, n int) (ids, data []string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := specClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("feed: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for (n < 0 || len(data) < n) && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			ids = append(ids, strings.TrimPrefix(line, "id: "))
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
			if n < 0 && done(data[len(data)-1]) {
				return ids, data
			}
		}
	}
	return ids, data
}

func TestFeedResumesWithLastEventID(t *testing.T) {
	t.Parallel()
	base := apiPipeline(t, httpapi.Options{})
	for i := range 3 {
		if s, body := request(t, base, call{method: "POST", path: "/v1/signals", header: map[string]string{"Content-Type": "application/json"}, body: signal(fmt.Sprintf("feed-%d", i), "us", 1000*(i+1))}); s != 200 {
			t.Fatalf("post: %d %s", s, body)
		}
	}
	// Each adoption gives one grid event per accelerator of the fleet in force (five in February
	// 2025); the first six are read.
	ids, data := sse(t, base+"/v1/feeds/grid?since=2000-01-01", "", 6)
	if len(data) != 6 || len(ids) != 6 || !strings.Contains(data[0], `"type":"cascade.demand.grid.v1"`) {
		t.Fatalf("first read: %d events", len(data))
	}
	// Resuming after the second event delivers the third next, and nothing before it.
	rids, rdata := sse(t, base+"/v1/feeds/grid", ids[1], 4)
	if len(rdata) != 4 || rids[0] != ids[2] || rdata[0] != data[2] || rdata[3] != data[5] {
		t.Fatalf("resume after %s gave %v, want %v", ids[1], rids, ids[2:])
	}
	// The region filter.
	_, us := sse(t, base+"/v1/feeds?layers=chips,grid&region=us&since=2000-01-01", "", 4)
	for _, d := range us {
		if !strings.Contains(d, `"subject":"us"`) {
			t.Fatalf("region filter let through %s", d)
		}
	}
}
