package httpapi_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/httpapi"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/view"
)

// With run's view, GET /v1/totals answers from it (the scan's rows, as of a position) and
// takes vs; GET /v1/series gives change and level per step in the documented shape, with
// vs the other scenario and the difference; a snapshot feed starts with the layer's totals
// and goes on after their position. Every exchange is held to docs/openapi.yaml.
func TestViewAnswersOverHTTP(t *testing.T) {
	t.Parallel()
	base, b := apiServer(t, httpapi.Options{}, true)
	jsonCT := map[string]string{"Content-Type": "application/json"}
	for i, at := range []string{"2025-01-30T10:00:00Z", "2025-02-01T00:00:00Z", "2025-03-03T12:00:00Z"} {
		sig := strings.Replace(signal(fmt.Sprintf("view-%d", i), []string{"us", "eu", "us"}[i], 1000*(i+1)), "2025-02-01T00:00:00Z", at, 1)
		if s, body := request(t, base, call{method: "POST", path: "/v1/signals", header: jsonCT, body: sig}); s != 200 {
			t.Fatalf("post: %d %s", s, body)
		}
	}
	gridEvents := 0 // in the whole history, counted by the scan
	for _, path := range []string{"/v1/totals?by=region", "/v1/totals?since=2025-01-30T12:00:00Z&until=2025-03-03T13:00:00Z"} {
		conformance.Eventually(t, 20*time.Second, path+" equal to the scan", func() error {
			s, body := request(t, base, call{method: "GET", path: path})
			var got query.Totals
			if err := json.Unmarshal([]byte(body), &got); s != 200 || err != nil {
				return fmt.Errorf("%d %s", s, body)
			}
			o := query.TotalsOptions{Scenario: "base", ByRegion: got.By == "region"}
			if got.Since != nil {
				o.Since, o.Until = *got.Since, *got.Until
			}
			want, err := query.SumTotals(t.Context(), b, o)
			if err != nil {
				return err
			}
			if got.Position == "" || got.Events != want.Events || got.Events < 12 {
				return fmt.Errorf("view: %d events as of %q; scan %d", got.Events, got.Position, want.Events)
			}
			got.Position = ""
			if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
				return fmt.Errorf("view %s\nscan %s", g, w)
			}
			if got.Since == nil {
				gridEvents = 0
				for _, r := range want.Rows {
					if r.Layer == "grid" {
						gridEvents += r.Events
					}
				}
			}
			return nil
		})
	}
	for _, c := range []call{
		{"series", "GET", "/v1/series?layer=grid&quantity=avg_mw&by=region&step=month", "GET /v1/series", nil, "", 200, `"series":[{"key":"eu","points":[{"t":"2025-01-01T00:00:00Z","change":0,"level":0},{"t":"2025-02-01T00:00:00Z","change":`},
		{"series by accelerator", "GET", "/v1/series?layer=chips&quantity=units&by=accelerator&step=week&since=2025-01-27&until=2025-02-03", "GET /v1/series", nil, "", 200, `"points":[{"t":"2025-01-27T00:00:00Z"`},
		{"series vs", "GET", "/v1/series?layer=grid&quantity=avg_mw&vs=base&step=year", "GET /v1/series", nil, "", 200, `"diff_level":0}`},
		{"series, bad by", "GET", "/v1/series?layer=grid&quantity=avg_mw&by=accelerator", "GET /v1/series", nil, "", 400, `by \"accelerator\": layer grid groups by region or workload`},
		{"series, unknown quantity", "GET", "/v1/series?layer=grid&quantity=mw", "GET /v1/series", nil, "", 400, `quantity \"mw\": layer grid has avg_mw`},
		{"series, bad step", "GET", "/v1/series?layer=grid&quantity=avg_mw&step=hour", "GET /v1/series", nil, "", 400, `step \"hour\"`},
		{"series, bad layer", "GET", "/v1/series?layer=moon&quantity=avg_mw", "GET /v1/series", nil, "", 400, `layer \"moon\"`},
		{"series, unknown scenario", "GET", "/v1/series?layer=grid&quantity=avg_mw&scenario=nope", "GET /v1/series", nil, "", 404, "not found"},
		{"snapshot, bad value", "GET", "/v1/feeds/grid?snapshot=2", "GET /v1/feeds/{layer}", nil, "", 400, `snapshot \"2\"`},
		{"snapshot with since", "GET", "/v1/feeds/grid?snapshot=1&since=1h", "GET /v1/feeds/{layer}", nil, "", 400, "snapshot: starts after"},
	} {
		if status, body := request(t, base, c); status != c.want || !strings.Contains(body, c.contains) {
			t.Errorf("%s: %s → %d %s; want %d containing %s", c.name, c.path, status, trim(body), c.want, c.contains)
		}
	}
	var ser view.Series
	_, body := request(t, base, call{method: "GET", path: "/v1/series?layer=chips&quantity=units&by=region&step=day&since=2025-01-30&until=2025-02-02"})
	if err := json.Unmarshal([]byte(body), &ser); err != nil || len(ser.Series) == 0 || len(ser.Series[0].Points) != 3 || ser.Position == "" || ser.Unit == "" {
		t.Fatalf("daily series %s: %v", trim(body), err)
	}
	for _, ks := range ser.Series {
		level := 0.0
		for _, p := range ks.Points {
			if level += p.Change; p.Level != level {
				t.Errorf("%s %s: level %v after changes summing to %v", ks.Key, p.T, p.Level, level)
			}
		}
	}

	// Snapshot, then the events after it: a signal sent after the snapshot comes on the feed.
	ids, data := sseNext(t, base+"/v1/feeds/grid?snapshot=1", 1, func() {
		sig := strings.Replace(signal("view-live", "us", 7), "2025-02-01T00:00:00Z", "2025-04-01T00:00:00Z", 1)
		if s, body := request(t, base, call{method: "POST", path: "/v1/signals", header: jsonCT, body: sig}); s != 200 {
			t.Errorf("post: %d %s", s, body)
		}
	}, 2)
	var snap query.Totals
	if err := json.Unmarshal([]byte(data[0]), &snap); err != nil || snap.Position != ids[0] || snap.Events != gridEvents || gridEvents == 0 {
		t.Fatalf("snapshot %s (id %s): %v; want the %d grid events as of its id", data[0], ids[0], err, gridEvents)
	}
	for _, d := range data[1:] {
		if !strings.Contains(d, `"correlationid":"view-live"`) {
			t.Errorf("after the snapshot came %s; want only view-live's grid events", d)
		}
	}
	// An EventSource reconnecting with the last id it saw gets no second snapshot: the
	// events after that id.
	rids, rdata := sse(t, base+"/v1/feeds/grid?snapshot=1", ids[1], 1)
	if len(rdata) != 1 || rids[0] != ids[2] || rdata[0] != data[2] {
		t.Fatalf("reconnect after %s gave %v, want %s", ids[1], rids, ids[2])
	}
}

// sseNext reads n events of an SSE feed, calls then, and reads m more.
func sseNext(t *testing.T, url string, n int, then func(), m int) (ids, data []string) {
	t.Helper()
	done := make(chan struct{})
	got := 0
	ids, data = sseUntil(t, url, func(string) bool {
		got++
		if got == n {
			go func() { then(); close(done) }()
		}
		return got == n+m
	})
	<-done
	return ids, data
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
