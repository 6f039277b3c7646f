package conformance

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
)

// near holds float results equal to the formulas up to rounding of a different order of
// operations.
func near(got, want float64) bool {
	return math.Abs(got-want) <= 1e-9*math.Max(math.Abs(want), 1e-300)
}

func testEndToEnd(t *testing.T, h Harness) {
	b, coef := basePipeline(t, h)
	raws := Signals()
	publish(t, b, "base", raws)
	want := expected(t, coef, "base", raws)
	got := waitDemand(t, b, "base", len(want))
	if len(got) != len(want) {
		t.Fatalf("demand feeds hold %d events, the transforms give %d", len(got), len(want))
	}
	byID := map[string]stored{}
	for _, m := range got {
		if m.ev == nil {
			t.Fatalf("undecodable event on %s: %s", m.subject, m.data)
		}
		byID[m.ev.ID] = m
	}
	signals := map[string]bool{}
	for _, r := range raws {
		ev, _, _ := event.Decode([]byte(r))
		signals[ev.ID] = true
	}
	// Every feed carries its layer's events, and every chain leads back to its signal.
	perLayer := map[event.Layer]int{}
	for id, m := range byID {
		if _, ok := want[id]; !ok {
			t.Errorf("unexpected event %s", id)
		}
		s, _ := event.ParseSubject(m.subject)
		if s.Layer.DemandType() != m.ev.Type || s.Region != m.ev.Subject || s.Kind != "demand" {
			t.Errorf("%s of type %s on subject %s", id, m.ev.Type, m.subject)
		}
		perLayer[s.Layer]++
		if m.ev.Scenario != "base" || m.ev.CoefVersion != coef.CoefVersion || m.ev.Source != event.InputLayer(causeType(byID, raws, m.ev)).Source() {
			t.Errorf("%s: scenario %q coefversion %q source %q", id, m.ev.Scenario, m.ev.CoefVersion, m.ev.Source)
		}
		cur, hops := m.ev, 0
		for !signals[cur.CausationID] {
			parent, ok := byID[cur.CausationID]
			if !ok {
				t.Fatalf("%s: causation %s is neither a derived event nor a signal", id, cur.CausationID)
			}
			if parent.ev.CorrelationID != m.ev.CorrelationID {
				t.Fatalf("%s: correlation %s, parent %s has %s", id, m.ev.CorrelationID, parent.ev.ID, parent.ev.CorrelationID)
			}
			cur, hops = parent.ev, hops+1
		}
		if cur.CausationID != m.ev.CorrelationID {
			t.Errorf("%s: root signal %s but correlation %s", id, cur.CausationID, m.ev.CorrelationID)
		}
	}
	for _, l := range event.FeedLayers {
		if perLayer[l] == 0 {
			t.Errorf("feed %s carries no events", l)
		}
	}
	// The grid values of the US chat adoption, worked through the formulas here with the
	// coefficients in force at its time.
	var gotAvg, gotCO2 float64
	var when time.Time
	for _, m := range byID {
		if g, ok := m.p.(*event.DemandGrid); ok && m.ev.CorrelationID == "sig-adopt-us" {
			gotAvg += g.AvgMW
			gotCO2 += g.CO2TPerYear
			when = m.ev.Time
		}
	}
	c := coef.At(when)
	cat := c.Applications.Categories["chat"]
	tokens := 1e6 * cat.RequestsPerUserDay * cat.TokensPerRequest
	m := c.Models.Catalog[cat.Model]
	mult := 1.0
	if m.Reasoning {
		mult = c.Models.ReasoningTokenMultiplier
	}
	flop := tokens * mult * c.Models.FlopPerParamToken * m.ParamsActive / 86400
	var avg, co2 float64
	for a, share := range c.Infrastructure.Fleet.For("us") {
		acc := c.Chips.Accelerators[a]
		units := flop * share / (acc.PeakFlopPerS * acc.UtilizationFor(c.Infrastructure.Utilization, event.Inference)) * (1 + c.Infrastructure.IdleCapacity[event.Inference])
		facility := units * acc.SystemKW / 1000 * c.Infrastructure.PUE.For("us")
		avg += facility * c.Energy.LoadFactorFor(event.Inference)
		co2 += facility * c.Energy.LoadFactorFor(event.Inference) * 8760 * c.Energy.GridIntensityGPerKWh.For("us") / 1000
	}
	if !near(gotAvg, avg) || !near(gotCO2, co2) {
		t.Errorf("grid for sig-adopt-us: avg %g MW, %g tCO2/yr; formulas give %g MW, %g tCO2/yr", gotAvg, gotCO2, avg, co2)
	}
}

// causeType is the type of an event's parent (a signal or a derived event).
func causeType(byID map[string]stored, raws []string, ev *event.Event) event.Type {
	if p, ok := byID[ev.CausationID]; ok {
		return p.ev.Type
	}
	for _, r := range raws {
		if s, _, _ := event.Decode([]byte(r)); s != nil && s.ID == ev.CausationID {
			return s.Type
		}
	}
	return ""
}

func testDeterminism(t *testing.T, h Harness) {
	coef := coefficients.Default()
	var runs [2][]string
	for i := range runs {
		b := h.Fresh(t)(t)
		startPipeline(t, b, "base", coef, h.Stages)
		publish(t, b, "base", Signals())
		want := expected(t, coef, "base", Signals())
		runs[i] = canonical(waitDemand(t, b, "base", len(want)))
	}
	if len(runs[0]) != len(runs[1]) {
		t.Fatalf("%d events in one store, %d in the other", len(runs[0]), len(runs[1]))
	}
	for i := range runs[0] {
		if runs[0][i] != runs[1][i] {
			t.Fatalf("event %d differs:\n%s\n%s", i, runs[0][i], runs[1][i])
		}
	}
}

func testBadInput(t *testing.T, h Harness) {
	b, _ := basePipeline(t, h)
	ts := signalTime.Format(time.RFC3339)
	env := func(typ, id, region, data string) string {
		return `{"specversion":"1.0","id":"` + id + `","source":"/test","type":"` + typ + `","subject":"` + region + `","time":"` + ts + `","data":` + data + `}`
	}
	adoption := string(event.TypeAdoption)
	cases := []struct {
		name, subject, body, kind, reason string
	}{
		{"malformed JSON", "cascade.base.signal.application.us", `{"specversion":"1.0",`, "decode", "decode"},
		{"wrong type", "cascade.base.signal.application.us", env(adoption, "bad-type", "us", `{"app":"a","category":"chat","region":"us","users_delta":"many"}`), "decode", "users_delta"},
		{"NaN", "cascade.base.signal.application.us", env(adoption, "bad-nan", "us", `{"app":"a","category":"chat","region":"us","users_delta":NaN}`), "decode", "decode"},
		{"Inf", "cascade.base.signal.application.us", env(adoption, "bad-inf", "us", `{"app":"a","category":"chat","region":"us","users_delta":1e999}`), "decode", "users_delta"},
		{"missing field", "cascade.base.signal.application.us", env(adoption, "bad-missing", "us", `{"app":"a","category":"chat","region":"us"}`), "validate", "data.users_delta: required"},
		{"unknown type", "cascade.base.signal.application.us", env("cascade.signal.hype.v1", "bad-unknown", "us", `{"region":"us"}`), "validate", "unknown event type"},
		{"unknown accelerator", "cascade.base.signal.chips.us", env(string(event.TypeDemandChips), "bad-acc", "us", `{"region":"us","accelerator":"warp9","units":10}`), "validate", "unknown accelerator"},
		{"region mismatch", "cascade.base.signal.application.eu", env(adoption, "bad-region", "us", `{"app":"a","category":"chat","region":"us","users_delta":5}`), "validate", "region"},
		{"no id", "cascade.base.signal.application.us", strings.Replace(env(adoption, "", "us", `{"app":"a","category":"chat","region":"us","users_delta":5}`), `"id":"",`, "", 1), "validate", "id: required"},
		{"grid as input", "cascade.base.signal.energy.us", env(string(event.TypeDemandGrid), "bad-grid", "us", `{"region":"us","avg_mw":1,"generation_mw":1,"twh_per_year":1,"co2_t_per_year":1}`), "validate", "not accepted"},
		{"oversized", "cascade.base.signal.application.us", env(adoption, "bad-big", "us", `{"app":"`+strings.Repeat("x", event.MaxEventBytes)+`","category":"chat","region":"us","users_delta":5}`), "validate", "oversized"},
		{"newline in id", "cascade.base.signal.application.us", env(adoption, `collide\nx`, "us", `{"app":"a","category":"chat","region":"us","users_delta":5}`), "validate", "id: must not contain control characters"},
		{"carriage return in id", "cascade.base.signal.application.us", env(adoption, `collide\rx`, "us", `{"app":"a","category":"chat","region":"us","users_delta":5}`), "validate", "id: must not contain control characters"},
		{"id over 256 bytes", "cascade.base.signal.application.us", env(adoption, strings.Repeat("i", event.MaxIDBytes+1), "us", `{"app":"a","category":"chat","region":"us","users_delta":5}`), "validate", "id: at most 256 bytes"},
		{"invalid UTF-8", "cascade.base.signal.application.us", env(adoption, "bad-utf8", "us", "{\"app\":\"caf\xe9\",\"category\":\"chat\",\"region\":\"us\",\"users_delta\":5}"), "decode", "invalid UTF-8 at byte"},
	}
	var msgs []broker.Message
	for i, c := range cases {
		msgs = append(msgs, broker.Message{Subject: c.subject, ID: "bad-" + string(rune('a'+i)), Data: []byte(c.body)})
	}
	if err := b.Publish(t.Context(), msgs); err != nil {
		t.Fatalf("publish bad input: %v", err)
	}
	publish(t, b, "base", Signals()[:1]) // a good signal after the bad ones is still processed
	var dead []stored
	Eventually(t, 20*time.Second, "dead letters", func() error {
		dead = readAll(t, b, broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindDLQ}})
		if len(dead) < len(cases) {
			return fmt.Errorf("%d of %d dead letters", len(dead), len(cases))
		}
		return nil
	})
	if len(dead) != len(cases) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(cases))
	}
	want := expected(t, coefficients.Default(), "base", Signals()[:1])
	waitDemand(t, b, "base", len(want))
	// Dead letters keep the original bytes; match each case by its body.
	for _, c := range cases {
		var found *broker.Message
		for _, d := range readDLQ(t, b) {
			if string(d.Data) == c.body {
				found = d
				break
			}
		}
		if found == nil {
			t.Errorf("%s: no dead letter with the original body", c.name)
			continue
		}
		hdr := found.Header
		if hdr[broker.HeaderErrorKind] != c.kind || !strings.Contains(hdr[broker.HeaderError], c.reason) {
			t.Errorf("%s: kind %q error %q; want kind %q mentioning %q", c.name, hdr[broker.HeaderErrorKind], hdr[broker.HeaderError], c.kind, c.reason)
		}
		if hdr[broker.HeaderOriginalSubject] != c.subject || hdr[broker.HeaderLayer] == "" || hdr[broker.HeaderDeliveries] == "" {
			t.Errorf("%s: headers %v", c.name, hdr)
		}
	}
}

func readDLQ(t *testing.T, b broker.Broker) []*broker.Message {
	var out []*broker.Message
	for _, m := range readAll(t, b, broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindDLQ}}) {
		out = append(out, &broker.Message{Subject: m.subject, Header: m.header, Data: m.data})
	}
	return out
}

// Registry: Create stores a binding once and hands back what is stored after that; Bind's
// rule on top of it makes the same set a no-op and another set a conflict; every connection
// sees the same bindings.
func testRegistry(t *testing.T, h Harness) {
	connect := h.Fresh(t)
	b, other := connect(t), connect(t)
	ctx := t.Context()
	reg := b.Registry()
	coef := coefficients.Default()
	bind := broker.Binding{Scenario: "what-if", CoefVersion: coef.CoefVersion, Document: coef.Canonical, Created: signalTime}
	if got, created, err := reg.Create(ctx, bind); err != nil || !created || got.CoefVersion != bind.CoefVersion {
		t.Fatalf("create: %+v %v %v", got.CoefVersion, created, err)
	}
	later := bind
	later.CoefVersion, later.Created = "other+00000000", signalTime.Add(time.Hour)
	if got, created, err := other.Registry().Create(ctx, later); err != nil || created || got.CoefVersion != bind.CoefVersion || !got.Created.Equal(signalTime) {
		t.Fatalf("create of a bound scenario from another connection: %+v %v %v; want the stored binding, not created", got, created, err)
	}
	again := bind
	again.Created = signalTime.Add(time.Hour)
	if got, err := broker.Bind(ctx, other.Registry(), again); err != nil || !got.Created.Equal(signalTime) {
		t.Fatalf("binding again to the same set: %v (created %s); want a no-op keeping the first binding", err, got.Created)
	}
	if _, err := broker.Bind(ctx, reg, later); !errors.Is(err, broker.ErrConflict) {
		t.Fatalf("binding to another set: %v, want ErrConflict", err)
	}
	if _, err := broker.Bind(ctx, reg, broker.Binding{Scenario: "alt", CoefVersion: "2+bbbbbbbb"}); err != nil {
		t.Fatal(err)
	}
	list, err := other.Registry().List(ctx)
	if err != nil || len(list) != 2 || list[0].Scenario != "alt" || list[1].Scenario != "what-if" || string(list[1].Document) != string(coef.Canonical) {
		t.Fatalf("list: %d bindings %v", len(list), err)
	}
	got, err := other.Registry().Get(ctx, "what-if")
	if err != nil || got.CoefVersion != coef.CoefVersion || string(got.Document) != string(coef.Canonical) {
		t.Fatalf("get: %+v %v", got.CoefVersion, err)
	}
	if err := other.Registry().Delete(ctx, "what-if"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Get(ctx, "what-if"); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := reg.Delete(ctx, "nowhere"); err != nil {
		t.Fatalf("deleting an unknown scenario: %v", err)
	}
	if _, created, err := reg.Create(ctx, later); err != nil || !created {
		t.Fatalf("create after delete: %v %v", created, err)
	}
}
