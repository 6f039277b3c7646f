package producers_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/producers"
)

// Split answers NDJSON line by line: a line too long to be an event is an item of its own with
// its error, and the lines after it are still read, with their physical line numbers.
func TestSplitKeepsGoingPastAnOverlongLine(t *testing.T) {
	t.Parallel()
	body := `{"a":1}` + "\r\n\n" + strings.Repeat("x", 300<<10) + "\n" + `{"b":2}` + "\n   \n" + `{"c":3}`
	items, err := producers.Split([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		line int
		raw  string
		bad  bool
	}{{1, `{"a":1}`, false}, {3, "", true}, {4, `{"b":2}`, false}, {6, `{"c":3}`, false}}
	if len(items) != len(want) {
		t.Fatalf("%d items, want %d", len(items), len(want))
	}
	for i, w := range want {
		it := items[i]
		if it.Line != w.line || string(it.Raw) != w.raw || (it.Err != nil) != w.bad {
			t.Errorf("item %d: line %d raw %.20q err %v; want line %d raw %q bad %v", i, it.Line, it.Raw, it.Err, w.line, w.raw, w.bad)
		}
	}
	var ve *event.ValidationError
	if !errors.As(items[1].Err, &ve) || ve.Field != "event" || !strings.Contains(ve.Rule, "over 256 KiB") {
		t.Fatalf("overlong line: %v", items[1].Err)
	}
	// A JSON array that does not parse is still one error for the whole input.
	if _, err := producers.Split([]byte(`[{"a":1},`)); err == nil {
		t.Fatal("a broken JSON array was split")
	}
}

// An element nested deeper than encoding/json reads does not fail the whole array: Split
// cuts the array into its elements without decoding them, the deep one is answered on its own
// and the others are taken.
func TestSplitAnswersADeepArrayElementOnItsOwn(t *testing.T) {
	t.Parallel()
	signal := func(id string) string {
		return `{"id":"` + id + `","type":"cascade.signal.adoption.v1","source":"/x","data":{"app":"a","category":"chat","region":"us","users_delta":5}}`
	}
	deep := `{"id":"deep","data":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`
	body := "[" + signal("a-1") + ",\n " + deep + " , " + signal("a-3") + `, {"x":"],[\"}"}` + "]\n"
	items, err := producers.Split([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 4 {
		t.Fatalf("%d items, want 4", len(items))
	}
	results, err := (&producers.Publisher{Scenario: "base", DryRun: true}).Publish(t.Context(), items)
	if err != nil {
		t.Fatal(err)
	}
	if r := results[0]; r.Line != 1 || r.ID != "a-1" || !r.OK() {
		t.Errorf("element 1: %+v", r)
	}
	if r := results[1]; r.Line != 2 || r.Error != "event: nesting deeper than 64" || r.Field != "event" {
		t.Errorf("element 2: %+v, want nesting deeper than 64", r)
	}
	if r := results[2]; r.Line != 3 || r.ID != "a-3" || !r.OK() {
		t.Errorf("element 3: %+v", r)
	}
	if r := results[3]; r.Line != 4 || r.OK() {
		t.Errorf("element 4 (brackets inside a string, no type): %+v, want refused as an event", r)
	}

	// An element that is not one JSON value is answered on its own too.
	items, err = producers.Split([]byte(`[{"a":1} {"b":2}, {"c":3}]`))
	if err != nil || len(items) != 2 || items[0].Err == nil || items[1].Err != nil || string(items[1].Raw) != `{"c":3}` {
		t.Fatalf("two values in one element: %+v %v", items, err)
	}
	if items, err := producers.Split([]byte(` [ ] `)); err != nil || len(items) != 0 {
		t.Fatalf("empty array: %+v %v", items, err)
	}
	// A top level that does not parse is one error for the whole input.
	for _, bad := range []string{`[{"a":1},`, `[{"a":1}] x`, `[{"a":1},]`, `[,{"a":1}]`, `["]`} {
		if items, err := producers.Split([]byte(bad)); err == nil {
			t.Errorf("%s was split into %+v", bad, items)
		}
	}
}
