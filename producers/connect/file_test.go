package connect_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/producers/connect"
)

const usersMap = `type: cascade.signal.adoption.v1
source: /analyst/app-users
sourceurl: https://example.com/app-users
id: "users:{app}:{month}"
time: {column: month, layout: "2006-01"}
key: [app]
data:
  app: {column: app}
  category: {value: chat}
  region: {column: region}
  users_delta: {column: wau, delta: true}
`

func writeFiles(t *testing.T, data, name string) (string, *connect.Map) {
	t.Helper()
	dir := t.TempDir()
	mp := filepath.Join(dir, "map.yaml")
	if err := os.WriteFile(mp, []byte(usersMap), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := connect.LoadMap(mp)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, m
}

func deltas(t *testing.T, got map[string]*event.Event) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for id, ev := range got {
		var a event.Adoption
		if err := json.Unmarshal(ev.Data, &a); err != nil {
			t.Fatal(err)
		}
		out[id] = a.UsersDelta
	}
	return out
}

// Rows become adoption deltas per app (each row less the app's previous one; the first
// from zero); a bad row is answered on its own line naming its row and column and the
// series goes on from its last good row; polling the same file again adds nothing, and rows
// appended later are differenced against the checkpoint.
func TestFileMapsRowsToDeltasAndAnswersBadRows(t *testing.T) {
	t.Parallel()
	b, _ := registered(t)
	csv := "month,app,region,wau\n2025-01,chat,us,100\n2025-02,chat,us,160\n2025-03,chat,us,lots\n2025-01,code,eu,10\n2025-04,chat,us,150\n"
	path, m := writeFiles(t, csv, "users.csv")
	r, answers := runner(b, &connect.File{Path: path, Map: m})
	if _, err := r.Once(t.Context()); !errors.Is(err, connect.ErrNotTaken) {
		t.Fatalf("first poll: %v; want the bad row refused", err)
	}
	if len(*answers) != 5 {
		t.Fatalf("answers %+v; want one per row", *answers)
	}
	bad := (*answers)[2]
	if bad.Line != 4 || bad.OK() || bad.Field != "wau" || !strings.Contains(bad.Error, "row 4") || !strings.Contains(bad.Error, `"lots"`) {
		t.Fatalf("bad row answered %+v; want line 4 naming row 4 and column wau", bad)
	}
	want := map[string]float64{"users:chat:2025-01": 100, "users:chat:2025-02": 60, "users:code:2025-01": 10, "users:chat:2025-04": -10}
	got := stored(t, b)
	if d := deltas(t, got); len(d) != len(want) {
		t.Fatalf("deltas %v, want %v", d, want)
	} else {
		for id, w := range want {
			if d[id] != w {
				t.Errorf("%s: users_delta %g, want %g", id, d[id], w)
			}
		}
	}
	if ev := got["users:chat:2025-02"]; ev.SourceURL != "https://example.com/app-users" || ev.Subject != "us" || ev.Source != "/analyst/app-users" {
		t.Fatalf("envelope %+v", ev)
	}

	*answers = nil
	if _, err := r.Once(t.Context()); err != nil || len(*answers) != 0 {
		t.Fatalf("polling the same file again: %v, answers %+v; want nothing", err, *answers)
	}
	if err := os.WriteFile(path, []byte(csv+"2025-05,chat,us,200\n2025-02,code,eu,15\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Once(t.Context()); err != nil || len(*answers) != 2 {
		t.Fatalf("after appending two rows: %v, answers %+v", err, *answers)
	}
	d := deltas(t, stored(t, b))
	if d["users:chat:2025-05"] != 50 || d["users:code:2025-02"] != 5 || len(d) != 6 {
		t.Fatalf("deltas after the append %v; want chat +50 (after 150) and code +5 (after 10)", d)
	}
}

// JSON rows (an array) map the same way; a row out of time order in its series is answered
// naming the time column; a map missing what it needs is refused naming its field.
func TestFileJSONRowsAndBadMaps(t *testing.T) {
	t.Parallel()
	body := `[{"month":"2025-01","app":"chat","region":"us","wau":100},{"month":"2025-03","app":"chat","region":"us","wau":130},{"month":"2025-02","app":"chat","region":"us","wau":120}]`
	path, m := writeFiles(t, body, "users.json")
	batch, err := (&connect.File{Path: path, Map: m}).Poll(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(batch.Signals) != 3 || batch.Signals[0].Err != nil || batch.Signals[1].Err != nil {
		t.Fatalf("signals %+v", batch.Signals)
	}
	var ve *event.ValidationError
	if !errors.As(batch.Signals[2].Err, &ve) || ve.Field != "month" || batch.Signals[2].Line != 3 {
		t.Fatalf("row out of order: %+v; want line 3 naming month", batch.Signals[2])
	}
	if !strings.Contains(string(batch.Signals[1].Raw), `"users_delta":30`) {
		t.Fatalf("second row %s; want users_delta 30", batch.Signals[1].Raw)
	}
	for field, mapText := range map[string]string{
		"sourceurl":             strings.Replace(usersMap, "sourceurl: https://example.com/app-users\n", "", 1),
		"type":                  strings.Replace(usersMap, "cascade.signal.adoption.v1", "cascade.demand.grid.v1", 1),
		"data.category":         strings.Replace(usersMap, "{value: chat}", "{}", 1),
		"data.users_delta.type": strings.Replace(usersMap, "delta: true}", "delta: true, type: bool}", 1),
	} {
		p := filepath.Join(t.TempDir(), "map.yaml")
		if err := os.WriteFile(p, []byte(mapText), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := connect.LoadMap(p)
		if !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("map without a good %s: %v", field, err)
		}
	}
}

// Polling (Every) reads the file again at each tick: a row appended while it runs is
// published once, and nothing else is; Every returns when its context ends.
func TestEveryPicksUpAppendedRows(t *testing.T) {
	t.Parallel()
	b, _ := registered(t)
	path, m := writeFiles(t, "month,app,region,wau\n2025-01,chat,us,100\n", "users.csv")
	r, _ := runner(b, &connect.File{Path: path, Map: m})
	var mu sync.Mutex
	var ids []string
	r.Answer = func(a connect.Answer) error {
		mu.Lock()
		defer mu.Unlock()
		ids = append(ids, a.ID)
		return nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Every(ctx, 20*time.Millisecond) }()
	seen := func(n int) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(ids) != n {
				return fmt.Errorf("answers %v, want %d", ids, n)
			}
			return nil
		}
	}
	conformance.Eventually(t, 5*time.Second, "the first row", seen(1))
	if err := os.WriteFile(path, []byte("month,app,region,wau\n2025-01,chat,us,100\n2025-02,chat,us,130\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conformance.Eventually(t, 5*time.Second, "the appended row", seen(2))
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if ids[1] != "users:chat:2025-02" || len(stored(t, b)) != 2 {
		t.Fatalf("answers %v", ids)
	}
}
