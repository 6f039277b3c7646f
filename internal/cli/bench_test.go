package cli_test

import (
	"regexp"
	"strings"
	"testing"
)

// `cascade bench` writes its rates and counts with the SI formatter, as every human-readable
// table does ("63.4 k msg/s", not "63412 msg/s").
func TestBenchPrintsSIQuantities(t *testing.T) {
	t.Parallel()
	code, out, stderr := run(t.Context(), "", nil, "bench", "--signals", "200")
	if code != 0 {
		t.Fatalf("bench: exit %d %s", code, stderr)
	}
	q := `[0-9]{1,3}(\.[0-9]{1,2})?( [kMGT])?`
	want := regexp.MustCompile(`(?m)^raw broker: +` + q + ` msg/s acknowledged publish, ` + q + ` msg/s durable consume\+ack \(` + q + ` messages\)\n` +
		`pipeline: +` + q + ` events/s consumed through 5 layers \(200 signals, ` + q + ` derived events\), ` + q + ` signals/s\n`)
	if !want.MatchString(out) {
		t.Fatalf("bench output is not in SI quantities:\n%s", out)
	}
	if raw := regexp.MustCompile(`[0-9]{4,}`).FindString(out); raw != "" {
		t.Fatalf("bench prints the raw number %s:\n%s", raw, out)
	}
	if !strings.Contains(out, "ratio:") {
		t.Fatalf("no ratio line:\n%s", out)
	}
}
