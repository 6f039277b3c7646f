package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Item 8 on the replay path: `replay FILE --into S` runs publish's checks on every line, its
// whole tree under S's own coefficients included; a bad line is answered on stderr with its
// number and reason, the good lines are replayed, and replay exits 1.
func TestReplayChecksEveryLineUnderTheTargetsCoefficients(t *testing.T) {
	t.Parallel()
	ns, env := startBroker(t)
	dir := t.TempDir()
	// In scenario "long", a chat request is a thousand times longer: 1e9 users are too many there.
	_, doc, _ := run(t.Context(), "", nil, "coefficients", "show")
	long := strings.Replace(doc, "version: default-2026.12", "version: long-chat", 1)
	long = strings.Replace(long, "chat: {requests_per_user_day: 3.6, tokens_per_request: 1000,", "chat: {requests_per_user_day: 3.6, tokens_per_request: 1000000,", 1)
	coef := filepath.Join(dir, "long.yaml")
	if err := os.WriteFile(coef, []byte(long), 0o644); err != nil {
		t.Fatal(err)
	}
	signal := func(id string, users string) string {
		return `{"id":"` + id + `","type":"cascade.signal.adoption.v1","source":"/x","time":"2025-01-27T00:00:00Z","data":{"app":"a","category":"chat","region":"us","users_delta":` + users + `}}`
	}
	file := filepath.Join(dir, "signals.ndjson")
	in := strings.Join([]string{
		signal("fine-1", "5"),
		signal("huge-1", "1e12"),
		`{"id":"bad\u0001id","type":"cascade.signal.adoption.v1","source":"/x","data":{"app":"a","category":"chat","region":"us","users_delta":5}}`,
		"",
		signal("big-1", "1e9"),
		signal("fine-2", "7"),
	}, "\n") + "\n"
	if err := os.WriteFile(file, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}

	code, out, stderr := run(t.Context(), "", env, "replay", file, "--into", "base")
	if code != 1 {
		t.Fatalf("replay into base: exit %d, want 1 (%s %s)", code, out, stderr)
	}
	for _, want := range []string{
		"line 2: model layer: data.flop_per_s: must be finite with |x| <= 1e21",
		"line 3: id: must not contain control characters",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "line 5") || !strings.Contains(out, "replayed 3 signals into base") || !strings.Contains(stderr, "2 of 5 signals refused") {
		t.Errorf("under base's coefficients lines 1, 5 and 6 replay: %s %s", out, stderr)
	}
	if n := streamMessages(t, ns.ClientURL(), "CASCADE_BASE"); n != 3 {
		t.Fatalf("CASCADE_BASE holds %d messages, want the 3 representable signals and nothing of the others", n)
	}

	code, out, stderr = run(t.Context(), "", env, "replay", file, "--into", "long", "--coefficients", coef)
	if code != 1 || !strings.Contains(stderr, "line 5: model layer: data.flop_per_s") || !strings.Contains(out, "replayed 2 signals into long") {
		t.Fatalf("replay into long: exit %d, want line 5 refused under its coefficients: %s %s", code, out, stderr)
	}
	if n := streamMessages(t, ns.ClientURL(), "CASCADE_LONG"); n != 2 {
		t.Fatalf("CASCADE_LONG holds %d messages, want 2", n)
	}
}
