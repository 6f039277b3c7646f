package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/layercake/cascade/internal/conformance"
)

// startBroker runs a bare in-process nats-server with JetStream: no scenario is registered.
func startBroker(t *testing.T) (*server.Server, map[string]string) {
	t.Helper()
	ns := conformance.NATSServer(t)
	return ns, map[string]string{"CASCADE_NATS_URL": ns.ClientURL()}
}

// streamMessages counts the messages of a scenario's stream; -1 when there is no stream.
func streamMessages(t *testing.T, url, stream string) int {
	t.Helper()
	js := conformance.JetStream(t, url)
	st, err := js.Stream(t.Context(), stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return -1
	}
	if err != nil {
		t.Fatal(err)
	}
	return int(st.CachedInfo().State.Msgs)
}

type answer struct {
	Line  int    `json:"line"`
	ID    string `json:"id"`
	Error string `json:"error"`
	Field string `json:"field"`
}

func answers(t *testing.T, out string) []answer {
	t.Helper()
	var as []answer
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var a answer
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("answer line %q: %v", l, err)
		}
		as = append(as, a)
	}
	return as
}

// Item 5: publishing into a scenario nobody registered is refused line by line and creates
// no stream; `scenario create` registers it, after which the same input is taken, and a
// second create with other coefficients is refused.
func TestPublishRefusesAnUnregisteredScenario(t *testing.T) {
	t.Parallel()
	ns, env := startBroker(t)
	in := adoptionUS + "\n" + `{"type":"cascade.signal.adoption.v1","source":"/x","data":{"app":"a","category":"chat","region":"us","users_delta":5}}` + "\n"
	code, out, stderr := run(t.Context(), in, env, "publish", "--scenario", "nosuch")
	if code != 1 {
		t.Fatalf("publish into an unregistered scenario: exit %d, want 1 (%s)", code, stderr)
	}
	as := answers(t, out)
	if len(as) != 2 {
		t.Fatalf("%d answer lines, want one per event: %s", len(as), out)
	}
	for i, a := range as {
		if a.Line != i+1 || !strings.Contains(a.Error, "scenario nosuch is not registered") {
			t.Errorf("answer %d: %+v, want an error naming scenario nosuch", i+1, a)
		}
	}
	if n := streamMessages(t, ns.ClientURL(), "CASCADE_NOSUCH"); n != -1 {
		t.Fatalf("publish created stream CASCADE_NOSUCH (%d messages)", n)
	}

	if code, out, stderr := run(t.Context(), "", env, "scenario", "create", "nosuch"); code != 0 || !strings.Contains(out, "scenario nosuch registered with coefficients default-") {
		t.Fatalf("scenario create: exit %d %s %s", code, out, stderr)
	}
	if code, out, stderr := run(t.Context(), in, env, "publish", "--scenario", "nosuch"); code != 0 || strings.Count(out, `"id"`) != 2 {
		t.Fatalf("publish after create: exit %d %s %s", code, out, stderr)
	}
	if n := streamMessages(t, ns.ClientURL(), "CASCADE_NOSUCH"); n != 2 {
		t.Fatalf("stream holds %d messages, want the 2 signals", n)
	}
	if code, out, _ := run(t.Context(), "", env, "scenario", "ls"); code != 0 || !strings.Contains(out, "nosuch") {
		t.Fatalf("scenario ls: %d %s", code, out)
	}

	// The same set again is a no-op; another set is a conflict, said as replay says it.
	if code, _, stderr := run(t.Context(), "", env, "scenario", "create", "nosuch"); code != 0 {
		t.Fatalf("create again with the same set: exit %d %s", code, stderr)
	}
	_, doc, _ := run(t.Context(), "", nil, "coefficients", "show")
	other := filepath.Join(t.TempDir(), "other.yaml")
	if err := os.WriteFile(other, []byte(strings.Replace(doc, "version: default-2026.12", "version: other", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run(t.Context(), "", env, "scenario", "create", "nosuch", "--coefficients", other)
	if code != 1 || !strings.Contains(stderr, "conflict") || !strings.Contains(stderr, "keeps the coefficients it was registered with") {
		t.Fatalf("create with other coefficients: exit %d %s", code, stderr)
	}
	if code, _, stderr := run(t.Context(), "", env, "scenario", "create", "No Such"); code != 2 || !strings.Contains(stderr, "must match") {
		t.Fatalf("create with a bad name: exit %d %s", code, stderr)
	}
	if code, _, _ := run(t.Context(), "", env, "scenario", "create", "x", "--coefficients", "/nonexistent.yaml"); code != 2 {
		t.Fatalf("create with a missing coefficients file: exit %d, want 2", code)
	}
}

// Item 8: a signal whose tree a layer below cannot represent is refused at ingest, naming the
// layer and the field, and nothing of it is published; the check uses the target scenario's
// own coefficients.
func TestPublishRefusesAnUnrepresentableTree(t *testing.T) {
	t.Parallel()
	ns, env := startBroker(t)
	if code, _, stderr := run(t.Context(), "", env, "scenario", "create", "base"); code != 0 {
		t.Fatalf("scenario create: %d %s", code, stderr)
	}
	huge := `{"id":"huge-1","type":"cascade.signal.adoption.v1","source":"/x","data":{"app":"a","category":"chat","region":"us","users_delta":1e12}}`
	fine := `{"id":"fine-1","type":"cascade.signal.adoption.v1","source":"/x","data":{"app":"a","category":"chat","region":"us","users_delta":1e9}}`
	code, out, _ := run(t.Context(), huge+"\n"+fine+"\n", env, "publish")
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, out)
	}
	as := answers(t, out)
	if len(as) != 2 || as[1].ID != "fine-1" || as[1].Error != "" {
		t.Fatalf("answers %+v", as)
	}
	if a := as[0]; a.Error != "model layer: data.flop_per_s: must be finite with |x| <= 1e21" || a.Field != "data.flop_per_s" {
		t.Fatalf("line 1: %+v, want the model layer's data.flop_per_s named", a)
	}
	if n := streamMessages(t, ns.ClientURL(), "CASCADE_BASE"); n != 1 {
		t.Fatalf("stream holds %d messages, want only the representable signal", n)
	}
	// --dry-run, without a broker, checks against the embedded defaults.
	if code, out, _ := run(t.Context(), huge, nil, "publish", "--dry-run"); code != 1 || !strings.Contains(out, "model layer: data.flop_per_s") {
		t.Fatalf("dry run: exit %d %s", code, out)
	}

	// In a scenario whose chat requests are a million times longer, 1e9 users are too many.
	_, doc, _ := run(t.Context(), "", nil, "coefficients", "show")
	long := strings.Replace(doc, "version: default-2026.12", "version: long-requests", 1)
	long = strings.Replace(long, "tokens_per_request: 1000", "tokens_per_request: 1000000000", 1)
	if long == doc {
		t.Fatal("could not edit the default coefficients")
	}
	path := filepath.Join(t.TempDir(), "long.yaml")
	if err := os.WriteFile(path, []byte(long), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(t.Context(), "", env, "scenario", "create", "long", "--coefficients", path); code != 0 {
		t.Fatalf("create long: %d %s", code, stderr)
	}
	if code, out, _ := run(t.Context(), fine, env, "publish", "--scenario", "long"); code != 1 || !strings.Contains(out, "layer: data.") {
		t.Fatalf("publish into long: exit %d %s, want the tree refused under its coefficients", code, out)
	}
}

// Items 6 and 7: ids that differ only by a control character, ids over 256 bytes and lines
// that are not UTF-8 are refused at ingest, each naming its line and field.
func TestPublishRefusesControlCharactersAndInvalidUTF8(t *testing.T) {
	t.Parallel()
	sig := func(id, app string) string {
		return `{"id":"` + id + `","type":"cascade.signal.adoption.v1","source":"/x","data":{"app":"` + app + `","category":"chat","region":"us","users_delta":5}}`
	}
	in := strings.Join([]string{
		sig("collide x", "a"),
		sig(`collide\nx`, "a"),
		sig(`collide\rx`, "a"),
		sig(`collide\u0000x`, "a"),
		sig(strings.Repeat("i", 257), "a"),
		sig("utf8-1", "caf\xe9"),
		sig("utf8-2", "café"),
	}, "\n")
	code, out, _ := run(t.Context(), in, nil, "publish", "--dry-run")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	as := answers(t, out)
	if len(as) != 7 {
		t.Fatalf("%d answers: %s", len(as), out)
	}
	if as[0].ID != "collide x" || as[6].ID != "utf8-2" {
		t.Errorf("valid lines refused: %+v %+v", as[0], as[6])
	}
	for _, i := range []int{1, 2, 3} {
		if as[i].Field != "id" || !strings.Contains(as[i].Error, "control characters") {
			t.Errorf("line %d: %+v, want field id refused for a control character", i+1, as[i])
		}
	}
	if as[4].Field != "id" || !strings.Contains(as[4].Error, "at most 256 bytes") {
		t.Errorf("line 5: %+v, want an id over 256 bytes refused", as[4])
	}
	if as[5].Line != 6 || !strings.Contains(as[5].Error, "invalid UTF-8") {
		t.Errorf("line 6: %+v, want invalid UTF-8 refused", as[5])
	}
}

// Item 10: an over-long line and a deeply nested one are answered on their own lines, and the
// lines around them are taken.
func TestPublishAnswersOverlongAndDeepLinesOneByOne(t *testing.T) {
	t.Parallel()
	ok := func(id string) string {
		return `{"id":"` + id + `","type":"cascade.signal.adoption.v1","source":"/x","data":{"app":"a","category":"chat","region":"us","users_delta":5}}`
	}
	big := `{"id":"big","type":"cascade.signal.adoption.v1","source":"/x","data":{"app":"` + strings.Repeat("x", 300<<10) + `","category":"chat","region":"us","users_delta":5}}`
	deep := `{"id":"deep","type":"cascade.signal.adoption.v1","source":"/x","data":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`
	nested := `{"id":"nested","type":"cascade.signal.adoption.v1","source":"/x","data":` + strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70) + `}`
	in := strings.Join([]string{ok("a"), big, ok("b"), deep, "", nested, ok("c")}, "\n")
	code, out, _ := run(t.Context(), in, nil, "publish", "--dry-run")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	as := answers(t, out)
	want := []answer{{Line: 1, ID: "a"}, {Line: 2, Error: "event: over 256 KiB"}, {Line: 3, ID: "b"}, {Line: 4, Error: "event: nesting deeper than 64"}, {Line: 6, Error: "event: nesting deeper than 64"}, {Line: 7, ID: "c"}}
	if len(as) != len(want) {
		t.Fatalf("%d answers, want %d: %.500s", len(as), len(want), out)
	}
	for i, w := range want {
		if as[i].Line != w.Line || as[i].ID != w.ID || !strings.Contains(as[i].Error, w.Error) || (w.Error == "") != (as[i].Error == "") {
			t.Errorf("answer %d: %+v, want %+v", i+1, as[i], w)
		}
	}
}

// Item 9: when the broker dies mid-file, every input line still gets exactly one answer line,
// the lines not published say why, and publish exits 1.
func TestPublishAnswersEveryLineWhenTheBrokerDies(t *testing.T) {
	t.Parallel()
	ns, env := startBroker(t)
	if code, _, stderr := run(t.Context(), "", env, "scenario", "create", "base"); code != 0 {
		t.Fatalf("scenario create: %d %s", code, stderr)
	}
	// Shut the server down while the second batch of 1,000 lines is being stored: publish sends
	// it only once the broker acknowledged all of the first.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		defer nc.Close()
		poll := time.NewTicker(5 * time.Millisecond)
		defer poll.Stop()
		for {
			if st, err := js.Stream(ctx, "CASCADE_BASE"); err == nil && st.CachedInfo().State.Msgs > 1000 {
				ns.Shutdown()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-poll.C:
			}
		}
	})
	const lines = 20_000
	code, out, stderr := run(t.Context(), "", env, "publish", "--generate", "20000", "--ack-timeout", "1s")
	cancel()
	wg.Wait()
	if code != 1 {
		t.Fatalf("exit %d, want 1 (%s)", code, stderr)
	}
	as := answers(t, out)
	if len(as) != lines {
		t.Fatalf("%d answer lines for %d input lines", len(as), lines)
	}
	published, refused := 0, 0
	for i, a := range as {
		if a.Line != i+1 {
			t.Fatalf("answer %d is for line %d", i+1, a.Line)
		}
		switch {
		case a.Error == "":
			published++
		case strings.HasPrefix(a.Error, "not published: "):
			refused++
		default:
			t.Fatalf("line %d: %q does not say the broker failed", a.Line, a.Error)
		}
	}
	if published == 0 || refused == 0 {
		t.Fatalf("%d published and %d not: the broker did not die mid-file (line 1: %q)", published, refused, as[0].Error)
	}
	t.Logf("%d lines published, %d not: %s", published, refused, as[len(as)-1].Error)
	if !strings.Contains(stderr, "not taken") {
		t.Errorf("stderr %q does not sum up", stderr)
	}
}
