package cli_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// `cascade bench` writes its rates and counts with the SI formatter, as every human-readable
// table does ("63.4 k msg/s", not "63412 msg/s"), a line for each part of the report.
func TestBenchPrintsSIQuantities(t *testing.T) {
	t.Parallel()
	code, out, stderr := run(t.Context(), "", nil, "bench", "--signals", "200", "--paced", "20")
	if code != 0 {
		t.Fatalf("bench: exit %d %s", code, stderr)
	}
	q := `[0-9]{1,3}(\.[0-9]{1,3})?( [kMGT])?`
	want := regexp.MustCompile(`(?m)^raw broker: +` + q + ` msg/s acknowledged publish with ids, ` + q + ` msg/s durable consume\+ack \(` + q + ` messages of ` + q + ` B\)\n` +
		`pipeline: +` + q + ` signals/s, ` + q + ` msg/s stored through 5 layers, chained stages with their view \(` + q + ` msgs from the stages, ` + q + ` msgs read from the log\) \(200 signals, ` + q + ` derived events\)\n` +
		`ratio: +pipeline stored msg/s = [0-9.]+ x raw publish, [0-9.]+ x raw consume\+ack\n` +
		`latency: +signal to last grid event at ` + q + ` signals/s \(` + q + ` signals/s offered, ` + q + ` signals timed\): p50 [0-9.]+ ms, p90 [0-9.]+ ms, p99 [0-9.]+ ms, max [0-9.]+ ms\n` +
		`cost: +` + q + ` s CPU per 1 k signals, peak RSS ` + q + ` MiB\n`)
	if !want.MatchString(out) {
		t.Fatalf("bench output is not the report in SI quantities:\n%s", out)
	}
	if raw := regexp.MustCompile(`[0-9]{4,}`).FindString(out); raw != "" {
		t.Fatalf("bench prints the raw number %s:\n%s", raw, out)
	}
}

// `cascade bench --json` writes one JSON object whose figures are positive and agree with
// each other; the flags are checked before anything runs.
func TestBenchJSON(t *testing.T) {
	t.Parallel()
	code, out, stderr := run(t.Context(), "", nil, "bench", "--signals", "100", "--rate", "400", "--paced", "30", "--json")
	if code != 0 {
		t.Fatalf("bench --json: exit %d %s", code, stderr)
	}
	var rep struct {
		Raw struct {
			Messages     int     `json:"messages"`
			MessageBytes int     `json:"message_bytes"`
			Publish      float64 `json:"publish_per_s"`
			Consume      float64 `json:"consume_per_s"`
			PublishS     float64 `json:"publish_s"`
			ConsumeS     float64 `json:"consume_s"`
			Window       int     `json:"publish_window"`
		} `json:"raw"`
		Pipeline struct {
			Stages  string  `json:"stages"`
			View    bool    `json:"view"`
			Tapped  int64   `json:"view_from_stages"`
			Read    int64   `json:"view_from_log"`
			Signals int     `json:"signals"`
			Derived int     `json:"derived"`
			Seconds float64 `json:"seconds"`
			Sig     float64 `json:"signals_per_s"`
			Stored  float64 `json:"stored_per_s"`
			Ratio   float64 `json:"ratio_to_raw_publish"`
		} `json:"pipeline"`
		Latency struct {
			Rate      float64 `json:"rate"`
			Achieved  float64 `json:"achieved_rate"`
			Published int     `json:"published"`
			Derived   int     `json:"derived"`
			Signals   int     `json:"signals"`
			P50       float64 `json:"p50_ms"`
			P90       float64 `json:"p90_ms"`
			P99       float64 `json:"p99_ms"`
			Max       float64 `json:"max_ms"`
		} `json:"latency"`
		CPU float64 `json:"cpu_seconds_per_1000_signals"`
		RSS int64   `json:"peak_rss_bytes"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, out)
	}
	r, p, l := rep.Raw, rep.Pipeline, rep.Latency
	if r.Messages != p.Signals+p.Derived || p.Signals != 100 || p.Stages != "chained" || !p.View || p.Tapped+p.Read < int64(r.Messages) || r.MessageBytes <= 0 || r.Publish <= 0 || r.Consume <= 0 || r.PublishS <= 0 || r.ConsumeS <= 0 || r.Window <= 0 {
		t.Fatalf("raw or pipeline counts do not agree:\n%s", out)
	}
	if p.Sig <= 0 || p.Stored <= p.Sig || p.Ratio <= 0 || p.Ratio < 0.99*p.Stored/r.Publish || p.Ratio > 1.01*p.Stored/r.Publish {
		t.Fatalf("pipeline rates do not agree:\n%s", out)
	}
	if l.Rate != 400 || l.Achieved <= 0 || l.Published != 30 || l.Derived <= 0 || l.Signals <= 0 || !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) {
		t.Fatalf("latency part is wrong:\n%s", out)
	}
	if rep.CPU <= 0 || rep.RSS <= 0 {
		t.Fatalf("cost part is wrong:\n%s", out)
	}
}

// Bad bench flags exit 2 and name the flag.
func TestBenchRefusesBadFlags(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--stages", "sideways"}, "--stages"},
		{[]string{"--signals", "0"}, "--signals"},
		{[]string{"--rate", "-1"}, "--rate"},
		{[]string{"--paced", "-3"}, "--paced"},
		{[]string{"--memory-limit", "lots"}, "--memory-limit"},
	} {
		code, _, stderr := run(t.Context(), "", nil, append([]string{"bench"}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("bench %v: exit %d, %q; want 2 naming %s", c.args, code, stderr, c.want)
		}
	}
}
