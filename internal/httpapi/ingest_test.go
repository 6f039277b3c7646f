package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/layercake/cascade/internal/httpapi"
)

// POST /v1/signals answers NDJSON line by line: an over-long line, a deeply nested one, a
// control character in an id, bytes that are not UTF-8 and a signal whose tree the model
// layer cannot represent each get their own answer, and the lines around them are taken.
func TestPostSignalsAnswersBadLinesOneByOne(t *testing.T) {
	t.Parallel()
	base := apiPipeline(t, httpapi.Options{})
	adoption := func(id, app, users string) string {
		return `{"id":"` + id + `","type":"cascade.signal.adoption.v1","source":"/x","data":{"app":"` + app + `","category":"chat","region":"us","users_delta":` + users + `}}`
	}
	lines := []string{
		adoption("ingest-1", "a", "5"),
		adoption("ingest-big", strings.Repeat("x", 300<<10), "5"),
		`{"id":"ingest-deep","type":"cascade.signal.adoption.v1","source":"/x","data":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`,
		adoption(`ingest\nnewline`, "a", "5"),
		adoption("ingest-utf8", "caf\xe9", "5"),
		adoption("ingest-huge", "a", "1e12"),
		adoption("ingest-2", "a", "5"),
	}
	status, body := request(t, base, call{method: "POST", path: "/v1/signals", header: map[string]string{"Content-Type": "application/x-ndjson"}, body: strings.Join(lines, "\n")})
	if status != 207 {
		t.Fatalf("status %d, want 207: %.300s", status, body)
	}
	want := []answer{
		{"ingest-1", ""},
		{"", "event: over 256 KiB"},
		{"", "event: nesting deeper than 64"},
		{"", "id: must not contain control characters"},
		{"", "invalid UTF-8"},
		{"", "model layer: data.flop_per_s: must be finite with |x| <= 1e21"},
		{"ingest-2", ""},
	}
	wantAnswers(t, body, "line", want)
}

// A JSON array body is answered element by element as well: one element nested 20,000 deep
// gets its own answer and the elements around it are taken.
func TestPostSignalsAnswersADeepArrayElementOnItsOwn(t *testing.T) {
	t.Parallel()
	base := apiPipeline(t, httpapi.Options{})
	adoption := func(id string) string {
		return `{"id":"` + id + `","type":"cascade.signal.adoption.v1","source":"/x","data":{"app":"a","category":"chat","region":"us","users_delta":5}}`
	}
	deep := `{"id":"array-deep","type":"cascade.signal.adoption.v1","source":"/x","data":` + strings.Repeat("[", 20_000) + strings.Repeat("]", 20_000) + `}`
	body := "[" + adoption("array-1") + "," + deep + "," + adoption("array-3") + "]"
	// Sent past the spec client: kin-openapi decodes request bodies with encoding/json, whose
	// depth limit is the very thing this body goes past.
	req, err := http.NewRequestWithContext(t.Context(), "POST", base+"/v1/signals", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	status, out := resp.StatusCode, string(raw)
	if status != 207 {
		t.Fatalf("status %d, want 207: %.300s", status, out)
	}
	want := []answer{{"array-1", ""}, {"", "event: nesting deeper than 64"}, {"array-3", ""}}
	wantAnswers(t, out, "element", want)
}

// answer is what one line of a signals reply should say: the id taken, or an error holding err.
type answer struct{ id, err string }

// wantAnswers checks a signals reply line by line against want; what names an input unit
// (line, element) in the failure.
func wantAnswers(t *testing.T, body, what string, want []answer) {
	t.Helper()
	got := strings.Split(strings.TrimSpace(body), "\n")
	if len(got) != len(want) {
		t.Fatalf("%d answer lines, want %d: %.300s", len(got), len(want), body)
	}
	for i, w := range want {
		var a struct {
			Line      int
			ID, Error string
		}
		if err := json.Unmarshal([]byte(got[i]), &a); err != nil {
			t.Fatal(err)
		}
		if a.Line != i+1 || a.ID != w.id || !strings.Contains(a.Error, w.err) || (w.err == "") != (a.Error == "") {
			t.Errorf("%s %d: %s, want id %q error %q", what, i+1, got[i], w.id, w.err)
		}
	}
}
