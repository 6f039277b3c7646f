package history

import (
	"errors"
	"math"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
)

func records(t *testing.T) []Record {
	t.Helper()
	recs, err := Records()
	if err != nil {
		t.Fatalf("Records: %v", err)
	}
	return recs
}

func TestCounts(t *testing.T) {
	recs := records(t)
	if len(recs) < 60 {
		t.Errorf("%d records, want at least 60", len(recs))
	}
	var releases, adoption, sovereign int
	for _, r := range recs {
		switch {
		case r.Type == event.TypeRelease:
			releases++
		case r.Type == event.TypeAdoption:
			adoption++
		case strings.HasPrefix(string(r.Type), "cascade.demand."):
			sovereign++
		}
	}
	t.Logf("%d records: %d releases, %d adoption, %d sovereign demand", len(recs), releases, adoption, sovereign)
	if releases < 15 {
		t.Errorf("%d releases, want at least 15", releases)
	}
	if adoption < 15 {
		t.Errorf("%d adoption records, want at least 15", adoption)
	}
	if sovereign < 4 {
		t.Errorf("%d sovereign (demand.*) records, want at least 4", sovereign)
	}
}

func TestEveryRecordHasAnHTTPSource(t *testing.T) {
	for _, r := range records(t) {
		for _, s := range append([]string{r.SourceURL}, r.MoreURLs...) {
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				t.Errorf("%s: source %q is not an http(s) URL", r.ID, s)
			}
		}
	}
}

// validRecord is one well-formed record, to be broken by the tests below.
const validRecord = `
- id: hist-2025-01-20-example
  time: 2025-01-20T00:00:00Z
  type: cascade.signal.release.v1
  sourceurl: https://example.org/model-card
  note: "example, dense 7B"
  data: {model: example-7b, region: us, open_weights: true, params_total: 7.0e9, params_active: 7.0e9, reasoning: false}
`

func TestValidRecordParses(t *testing.T) {
	recs, err := Parse([]byte(validRecord))
	if err != nil || len(recs) != 1 {
		t.Fatalf("Parse(valid) = %d records, %v", len(recs), err)
	}
}

func TestRecordWithoutSourceFails(t *testing.T) {
	for name, doc := range map[string]string{
		"missing": strings.Replace(validRecord, "  sourceurl: https://example.org/model-card\n", "", 1),
		"empty":   strings.Replace(validRecord, "https://example.org/model-card", `""`, 1),
		"ftp":     strings.Replace(validRecord, "https://example.org/model-card", "ftp://example.org/card", 1),
		"no host": strings.Replace(validRecord, "https://example.org/model-card", "https:///card", 1),
		"moreurl": strings.Replace(validRecord, "  note:", "  moreurls: [example.org/page]\n  note:", 1),
	} {
		if _, err := Parse([]byte(doc)); err == nil || !strings.Contains(err.Error(), "url") {
			t.Errorf("%s: Parse = %v, want a sourceurl error", name, err)
		}
	}
}

func TestBrokenRecordsFail(t *testing.T) {
	for name, doc := range map[string]string{
		"bad id":           strings.Replace(validRecord, "hist-2025-01-20-example", "2025-01-20-example", 1),
		"id/time differ":   strings.Replace(validRecord, "time: 2025-01-20T00:00:00Z", "time: 2025-01-21T00:00:00Z", 1),
		"not midnight":     strings.Replace(validRecord, "T00:00:00Z", "T12:00:00Z", 1),
		"before launch":    strings.ReplaceAll(validRecord, "2025-01-20", "2022-11-29"),
		"after 2026":       strings.ReplaceAll(validRecord, "2025-01-20", "2027-01-01"),
		"unknown type":     strings.Replace(validRecord, "signal.release.v1", "signal.rumour.v1", 1),
		"grid type":        strings.Replace(validRecord, "signal.release.v1", "demand.grid.v1", 1),
		"no note":          strings.Replace(validRecord, `note: "example, dense 7B"`, `note: ""`, 1),
		"estimate unsaid":  strings.Replace(validRecord, "  note:", "  estimate: true\n  note:", 1),
		"unsaid estimate":  strings.Replace(validRecord, `note: "example`, `note: "estimate: example`, 1),
		"bad payload":      strings.Replace(validRecord, "params_active: 7.0e9", "params_active: 8.0e9", 1),
		"typo in data":     strings.Replace(validRecord, "reasoning: false", "reasoning: false, expected_token_per_day: 1", 1),
		"typo in record":   strings.Replace(validRecord, "  note:", "  sourceURLs: [https://x.org]\n  note:", 1),
		"level on release": strings.Replace(validRecord, "  data:", "  level: 5\n  data:", 1),
		"duplicate id":     validRecord + validRecord,
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("%s: Parse succeeded, want an error", name)
		}
	}
}

func TestIDsUniqueAndPatterned(t *testing.T) {
	re := regexp.MustCompile(`^hist-\d{4}-\d{2}-\d{2}-[a-z0-9]+(-[a-z0-9]+)*$`)
	seen := map[string]bool{}
	for _, r := range records(t) {
		if !re.MatchString(r.ID) {
			t.Errorf("id %q does not match hist-YYYY-MM-DD-<slug>", r.ID)
		}
		if seen[r.ID] {
			t.Errorf("duplicate id %q", r.ID)
		}
		seen[r.ID] = true
	}
}

func TestTimesInRangeAndEqualToTheIDsDay(t *testing.T) {
	first := time.Date(2022, 11, 30, 0, 0, 0, 0, time.UTC)
	last := time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)
	for _, r := range records(t) {
		if r.Time.Before(first) || r.Time.After(last) {
			t.Errorf("%s: time %s outside 2022-11-30 .. 2026-12-31", r.ID, r.Time)
		}
		if r.Time.Location() != time.UTC || r.Time.Hour()+r.Time.Minute()+r.Time.Second()+r.Time.Nanosecond() != 0 {
			t.Errorf("%s: time %s is not midnight UTC", r.ID, r.Time)
		}
		if day := r.Time.Format(time.DateOnly); !strings.HasPrefix(r.ID, "hist-"+day+"-") {
			t.Errorf("%s: time's day %s differs from the id's", r.ID, day)
		}
	}
}

func TestSignalsDecodeAndCarryTheEnvelope(t *testing.T) {
	evs, err := Signals()
	if err != nil {
		t.Fatalf("Signals: %v", err)
	}
	recs := records(t)
	if len(evs) != len(recs) {
		t.Fatalf("%d events for %d records", len(evs), len(recs))
	}
	for i, ev := range evs {
		r := recs[i]
		body, err := ev.Marshal()
		if err != nil {
			t.Fatalf("%s: Marshal: %v", r.ID, err)
		}
		got, p, err := event.Decode(body)
		if err != nil {
			t.Errorf("%s: event.Decode: %v\n%s", r.ID, err, body)
			continue
		}
		switch {
		case got.ID != r.ID, got.CorrelationID != r.ID:
			t.Errorf("%s: id %q / correlationid %q", r.ID, got.ID, got.CorrelationID)
		case got.SpecVersion != "1.0", got.Source != "/cascade/history":
			t.Errorf("%s: specversion %q, source %q", r.ID, got.SpecVersion, got.Source)
		case got.Type != r.Type, got.DataSchema != r.Type.DataSchema():
			t.Errorf("%s: type %q, dataschema %q", r.ID, got.Type, got.DataSchema)
		case got.Subject != p.RegionName():
			t.Errorf("%s: subject %q, data.region %q", r.ID, got.Subject, p.RegionName())
		case got.DataContentType != "application/json":
			t.Errorf("%s: datacontenttype %q", r.ID, got.DataContentType)
		case !got.Time.Equal(r.Time):
			t.Errorf("%s: time %s, want %s", r.ID, got.Time, r.Time)
		case got.SourceURL != r.SourceURL || got.SourceURL == "":
			t.Errorf("%s: sourceurl %q", r.ID, got.SourceURL)
		case got.Scenario != "", got.CausationID != "", got.CoefVersion != "":
			t.Errorf("%s: scenario %q, causationid %q, coefversion %q must be unset on a history signal",
				r.ID, got.Scenario, got.CausationID, got.CoefVersion)
		}
	}
}

func TestSignalsAreInTimeOrderAndStable(t *testing.T) {
	a, err := Signals()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Signals()
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if i > 0 {
			prev, cur := a[i-1], a[i]
			if cur.Time.Before(prev.Time) || (cur.Time.Equal(prev.Time) && cur.ID <= prev.ID) {
				t.Errorf("event %d (%s) is out of order after %s", i, cur.ID, prev.ID)
			}
		}
		x, _ := a[i].Marshal()
		y, _ := b[i].Marshal()
		if string(x) != string(y) {
			t.Errorf("%s: two builds differ:\n%s\n%s", a[i].ID, x, y)
		}
	}
}

func TestAdoptionDeltasSumToTheLastLevel(t *testing.T) {
	series, err := AdoptionSeries(records(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(series) < 5 {
		t.Errorf("%d adoption series, want several apps", len(series))
	}
	for _, s := range series {
		sum, prev := 0.0, 0.0
		for _, r := range s.Records {
			p, err := r.Payload()
			if err != nil {
				t.Fatal(err)
			}
			d := p.(*event.Adoption).UsersDelta
			if d != *r.Level-prev {
				t.Errorf("%s: users_delta %v, want level %v - previous %v", r.ID, d, *r.Level, prev)
			}
			sum += d
			prev = *r.Level
		}
		if sum != prev {
			t.Errorf("%s/%s: deltas sum to %v, last published level is %v", s.App, s.Region, sum, prev)
		}
	}
}

func TestAdoptionDeltaMismatchFails(t *testing.T) {
	doc := `
- id: hist-2024-01-01-app-a
  time: 2024-01-01T00:00:00Z
  type: cascade.signal.adoption.v1
  sourceurl: https://example.org/a
  note: "10 weekly users"
  level: 10
  data: {app: app, category: chat, region: world, users_delta: 10}
- id: hist-2024-02-01-app-b
  time: 2024-02-01T00:00:00Z
  type: cascade.signal.adoption.v1
  sourceurl: https://example.org/b
  note: "25 weekly users"
  level: 25
  data: {app: app, category: chat, region: world, users_delta: 25}
`
	if _, err := Parse([]byte(doc)); err == nil || !strings.Contains(err.Error(), "users_delta") {
		t.Errorf("Parse = %v, want a users_delta error (the second delta should be 15)", err)
	}
	if _, err := Parse([]byte(strings.Replace(doc, "users_delta: 25", "users_delta: 15", 1))); err != nil {
		t.Errorf("Parse with the right delta: %v", err)
	}
	noLevel := strings.Replace(doc, "  level: 10\n", "", 1)
	if _, err := Parse([]byte(noLevel)); err == nil {
		t.Error("an adoption record without level parsed")
	}
}

func TestChatGPTWeeklyLevels(t *testing.T) {
	want := map[string]float64{
		"hist-2023-11-06-chatgpt-100m": 100e6,
		"hist-2024-08-29-chatgpt-200m": 200e6,
		"hist-2024-12-04-chatgpt-300m": 300e6,
		"hist-2025-02-20-chatgpt-400m": 400e6,
		"hist-2025-03-31-chatgpt-500m": 500e6,
		"hist-2025-08-04-chatgpt-700m": 700e6,
		"hist-2025-10-06-chatgpt-800m": 800e6,
	}
	for _, r := range records(t) {
		if w, ok := want[r.ID]; ok {
			if r.Level == nil || *r.Level != w {
				t.Errorf("%s: level %v, want %v", r.ID, r.Level, w)
			}
			if r.Estimate {
				t.Errorf("%s: a published weekly level is not an estimate", r.ID)
			}
			delete(want, r.ID)
		}
	}
	for id := range want {
		t.Errorf("%s missing", id)
	}
}

func find(t *testing.T, id string) Record {
	t.Helper()
	for _, r := range records(t) {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("record %s missing", id)
	return Record{}
}

func TestDeepSeekR1Release(t *testing.T) {
	r := find(t, "hist-2025-01-20-deepseek-r1")
	p, err := r.Payload()
	if err != nil {
		t.Fatal(err)
	}
	rel, ok := p.(*event.Release)
	if !ok {
		t.Fatalf("payload is %T, want a release", p)
	}
	if rel.Model != "deepseek-r1" || !*rel.OpenWeights || !*rel.Reasoning ||
		rel.ParamsTotal != 6.71e11 || rel.ParamsActive != 3.7e10 {
		t.Errorf("deepseek-r1 release = %+v", rel)
	}
	if rel.ExpectedTokensPerDay == nil || *rel.ExpectedTokensPerDay <= 0 {
		t.Fatal("deepseek-r1 must carry DeepSeek's published serving figure")
	}
	if !r.Estimate {
		t.Error("the attribution of DeepSeek's combined serving day is an estimate")
	}
}

// TestDeepSeekServingAttribution holds the arithmetic the R1 and V3 notes state: DeepSeek's one
// published day (608e9 input + 168e9 output tokens for V3 and R1 over web, app and API) is
// split between the deepseek app records, at the default chat coefficients (3.6 requests of
// 1,000 tokens per weekly user per day), and the R1 release before the default reasoning
// multiplier, so the default chain reproduces the measured day and counts nothing twice.
func TestDeepSeekServingAttribution(t *testing.T) {
	const measured = 608e9 + 168e9
	c := coefficients.Default().Set
	chat := c.Applications.Categories["chat"]
	requests, tokensPerRq, multiplier := chat.RequestsPerUserDay, chat.TokensPerRequest, c.Models.ReasoningTokenMultiplier
	app := find(t, "hist-2025-02-03-deepseek-dau-30m")
	r1rec, v3rec := find(t, "hist-2025-01-20-deepseek-r1"), find(t, "hist-2024-12-26-deepseek-v3")
	p, _ := r1rec.Payload()
	r1 := p.(*event.Release)
	p, _ = v3rec.Payload()
	v3 := p.(*event.Release)
	if v3.ExpectedTokensPerDay == nil || *v3.ExpectedTokensPerDay != 0 {
		t.Errorf("deepseek-v3 expected_tokens_per_day = %v, want 0 (its serving is inside R1's figure)", v3.ExpectedTokensPerDay)
	}
	chain := *app.Level*requests*tokensPerRq + *r1.ExpectedTokensPerDay*multiplier
	if math.Abs(chain-measured)/measured > 0.001 {
		t.Errorf("app %.4g + R1 %.4g x %g = %.4g tokens/day, DeepSeek measured %.4g",
			*app.Level*requests*tokensPerRq, *r1.ExpectedTokensPerDay, multiplier, chain, measured)
	}
}

func TestReleasesCoverTheBrief(t *testing.T) {
	want := []string{
		"llama-2-7b", "llama-2-13b", "llama-2-70b", "mistral-7b", "mixtral-8x7b",
		"llama-3-8b", "llama-3-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b",
		"qwen2.5-72b", "deepseek-v3", "deepseek-r1", "llama-4-scout", "llama-4-maverick",
		"qwen3-235b-a22b", "qwen3-30b-a3b", "gpt-oss-120b", "gpt-oss-20b", "kimi-k2",
	}
	name := regexp.MustCompile(`^[a-z0-9][a-z0-9.]*(-[a-z0-9.]+)*$`)
	have := map[string]bool{}
	for _, r := range records(t) {
		if r.Type != event.TypeRelease {
			continue
		}
		p, _ := r.Payload()
		rel := p.(*event.Release)
		if !name.MatchString(rel.Model) {
			t.Errorf("%s: model %q is not lower-case-with-dashes", r.ID, rel.Model)
		}
		if have[rel.Model] {
			t.Errorf("%s: model %q released twice", r.ID, rel.Model)
		}
		have[rel.Model] = true
	}
	for _, m := range want {
		if !have[m] {
			t.Errorf("release of %s missing", m)
		}
	}
}

// TestConvertedFiguresAreEstimates: every figure converted from another measure (MAU, DAU,
// sign-ups, paid seats), derived (Grok-1's active parameters), attributed (DeepSeek's serving
// day) or mapped to another accelerator kind is marked, and its note starts "estimate".
func TestConvertedFiguresAreEstimates(t *testing.T) {
	converted := regexp.MustCompile(`(?i)\b(MAU|DAU|monthly|daily|paid|sign-?ups?|counted as|attribut|x 0\.|/ 0\.45)`)
	for _, r := range records(t) {
		if r.Estimate != strings.HasPrefix(r.Note, "estimate") {
			t.Errorf("%s: estimate %v but note %q", r.ID, r.Estimate, r.Note)
		}
		if converted.MatchString(r.Note) && !r.Estimate {
			t.Errorf("%s: the note describes a converted figure but the record is not an estimate: %q", r.ID, r.Note)
		}
	}
	for _, id := range []string{
		"hist-2022-12-05-chatgpt-1m", "hist-2022-12-31-chatgpt-mau-57m", "hist-2023-01-31-chatgpt-mau-100m",
		"hist-2025-01-31-deepseek-dau-22m", "hist-2025-02-03-deepseek-dau-30m", "hist-2025-01-20-deepseek-r1",
		"hist-2024-03-17-grok-1", "hist-2025-07-17-uk-isambard-ai", "hist-2026-06-30-sa-humain-nvidia",
	} {
		if r := find(t, id); !r.Estimate {
			t.Errorf("%s is a converted figure and must be an estimate", id)
		}
	}
}

func TestParseReportsEveryBrokenRecord(t *testing.T) {
	doc := strings.Replace(validRecord, "https://example.org/model-card", `""`, 1) +
		strings.ReplaceAll(strings.Replace(validRecord, "https://example.org/model-card", `""`, 1), "example", "other")
	_, err := Parse([]byte(doc))
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	var n int
	for e := err; e != nil; e = errors.Unwrap(e) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			n = len(j.Unwrap())
			break
		}
	}
	if n != 2 {
		t.Errorf("Parse reported %d errors, want both broken records: %v", n, err)
	}
}
