package event_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/event"
)

// reference is what encoding/json writes for e with HTML escaping off: the bytes the hand
// encoder must keep.
func reference(t *testing.T, e *event.Event) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// TestMarshalIsEncodingJSON holds Event.Marshal byte for byte to encoding/json's encoding of
// the same envelope: escapes of every kind, optional attributes absent and present, times
// with and without fractions, data spaced out or holding escapes, and no data at all.
func TestMarshalIsEncodingJSON(t *testing.T) {
	t.Parallel()
	strs := []string{"", "plain", `quo"te\back`, "ctl\x00\x01\b\f\n\r\t\x1f\x7f", "<html>&", "é ü 漢字 🚀", "line\u2028para\u2029", "bad\xffutf8\xc3", "\xe2\x80"}
	times := []time.Time{
		time.Date(2025, 1, 20, 12, 0, 0, 0, time.UTC),
		time.Date(2025, 1, 20, 12, 0, 0, 123456789, time.FixedZone("x", 3600)),
		time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC),
	}
	datas := []json.RawMessage{nil, json.RawMessage(`{"region":"eu","units":1e-7}`), json.RawMessage(" {\n \"a\" : [1, 2 ,\"<\\u003c\u2028\"] }\n"), json.RawMessage(`null`)}
	for _, s := range strs {
		for _, tm := range times {
			for _, d := range datas {
				e := &event.Event{SpecVersion: "1.0", ID: s, Source: "/s" + s, Type: event.Type(s), Subject: s, Time: tm,
					DataContentType: event.ContentType, DataSchema: s, Scenario: s, CausationID: s, CorrelationID: s, CoefVersion: s, SourceURL: s, Data: d}
				got, err := e.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				if want := reference(t, e); !bytes.Equal(got, want) {
					t.Fatalf("Marshal\n got %s\nwant %s", got, want)
				}
			}
		}
	}
	for _, bad := range []*event.Event{
		{ID: "y", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Data: json.RawMessage(`{}`)},
		{ID: "d", Time: time.Now(), Data: json.RawMessage(`{"a":`)},
		{ID: "e", Time: time.Now(), Data: json.RawMessage{}},
	} {
		if _, err := bad.Marshal(); err == nil {
			t.Errorf("event %s: Marshal succeeded, want an error as encoding/json gives", bad.ID)
		}
	}
}

// TestMarshalAllocatesOnlyItsOutput holds the encoder to one allocation: the bytes it returns.
func TestMarshalAllocatesOnlyItsOutput(t *testing.T) {
	parent := &event.Event{ID: "demand.infrastructure-0123456789abcdef0123456789abcdef", Scenario: "base", CorrelationID: "sig-0001"}
	p := &event.DemandChips{Region: "eu-west", Accelerator: "h100", Units: 0.0032552083333333335, HBMGB: fp(0.2604166666666667), Workload: event.Inference}
	ev, err := event.New(parent, event.Infrastructure, "h100", time.Date(2025, 1, 20, 12, 0, 0, 0, time.UTC), "2025.1+0000abcd", p)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = ev.Marshal() }); n > 1 {
		t.Fatalf("Marshal allocates %v times, want 1 (its output)", n)
	}
}

// TestDecodeAllocatesItsOutputs holds Decode near what it returns: the envelope, its strings,
// its data and the payload with its strings, with a little room for pools the collector emptied
// (encoding/json took 27 to 30 allocations for these bodies, the two-pass path 15 to 18, the
// one-pass path 11 to 13: the envelope values every pipeline event repeats are not copied).
func TestDecodeAllocatesItsOutputs(t *testing.T) {
	for _, bb := range benchBodies {
		body := []byte(bb.body)
		if n := testing.AllocsPerRun(100, func() { _, _, _ = event.Decode(body) }); n > 16 {
			t.Errorf("%s: Decode allocates %v times, want at most 16", bb.name, n)
		}
	}
}

// TestDerivedIDAllocatesOnlyTheID holds DerivedID to the one string it returns.
func TestDerivedIDAllocatesOnlyTheID(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = event.DerivedID("sig-0001", event.Infrastructure, "h100") }); n > 1 {
		t.Fatalf("DerivedID allocates %v times, want 1", n)
	}
}

// TestNewAllocatesOnlyItsOutput holds New to the derived event, its id and its encoded data:
// the source and dataschema strings are the layer's and the type's, built once.
func TestNewAllocatesOnlyItsOutput(t *testing.T) {
	parent := &event.Event{ID: "demand.infrastructure-0123456789abcdef0123456789abcdef", Scenario: "base", CorrelationID: "sig-0001"}
	p := &event.DemandChips{Region: "eu-west", Accelerator: "h100", Units: 0.0032552083333333335, HBMGB: fp(0.2604166666666667), Workload: event.Inference}
	at := time.Date(2025, 1, 20, 12, 0, 0, 0, time.UTC)
	ev, err := event.New(parent, event.Infrastructure, "h100", at, "2025.1+0000abcd", p)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Source != "/cascade/consumers/infrastructure" || ev.DataSchema != event.SchemaBase+"demand.chips.v1.json" {
		t.Fatalf("source %q, dataschema %q", ev.Source, ev.DataSchema)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = event.New(parent, event.Infrastructure, "h100", at, "2025.1+0000abcd", p) }); n > 3 {
		t.Fatalf("New allocates %v times, want at most 3 (event, id, data)", n)
	}
}

// MayBeDerivedID knows every id DerivedID makes, and only ids of that form.
func TestMayBeDerivedID(t *testing.T) {
	t.Parallel()
	for _, l := range event.ConsumerLayers {
		if id := event.DerivedID("sig-0001", l, "h100"); !event.MayBeDerivedID(id) {
			t.Errorf("%s: DerivedID %q not recognised", l, id)
		}
	}
	hex := "0123456789abcdef0123456789abcdef"
	for _, id := range []string{
		"sig-0001", "", "-" + hex, "model" + hex, "model-" + hex[:31], "model-" + hex + "0",
		"model-0123456789ABCDEF0123456789abcdef", "application-" + hex, "nolayer-" + hex, "model-" + hex[:31] + "g",
	} {
		if event.MayBeDerivedID(id) {
			t.Errorf("%q taken for a derived id", id)
		}
	}
}
