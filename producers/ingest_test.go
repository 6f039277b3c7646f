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
