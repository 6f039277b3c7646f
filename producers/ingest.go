// Package producers turns outside input into signals on the broker: it splits JSON, NDJSON or
// JSON arrays into events, completes and validates each against the schemas, routes it to its
// layer's signal subject and publishes it with broker acknowledgement; it also generates
// realistic synthetic signals.
package producers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/schemas"
)

// Item is one event of an input document with its 1-based line (or array position).
type Item struct {
	Line int
	Raw  []byte
}

// Split reads a JSON object, a JSON array of objects, or NDJSON (blank lines skipped).
func Split(body []byte) ([]Item, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: no events in input", event.ErrInvalid)
	}
	if trimmed[0] == '[' {
		var arr []json.RawMessage
		if err := json.Unmarshal(trimmed, &arr); err != nil {
			return nil, &event.DecodeError{Err: fmt.Errorf("JSON array: %w", err)}
		}
		items := make([]Item, len(arr))
		for i, r := range arr {
			items[i] = Item{Line: i + 1, Raw: r}
		}
		return items, nil
	}
	if json.Valid(trimmed) {
		return []Item{{Line: 1, Raw: trimmed}}, nil
	}
	var items []Item
	sc := newLineScanner(bytes.NewReader(body))
	for {
		line, n, err := sc.next()
		if errors.Is(err, io.EOF) {
			return items, nil
		}
		if err != nil {
			return nil, err
		}
		items = append(items, Item{Line: n, Raw: line})
	}
}

// lineScanner yields the non-blank lines of NDJSON with their 1-based numbers.
type lineScanner struct {
	sc *bufio.Scanner
	n  int
}

func newLineScanner(r io.Reader) *lineScanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), event.MaxEventBytes+1024)
	return &lineScanner{sc: sc}
}

func (l *lineScanner) next() ([]byte, int, error) {
	for l.sc.Scan() {
		l.n++
		if line := bytes.TrimSpace(l.sc.Bytes()); len(line) > 0 {
			return append([]byte(nil), line...), l.n, nil
		}
	}
	if err := l.sc.Err(); err != nil {
		return nil, l.n, fmt.Errorf("%w: reading NDJSON after line %d: %w", event.ErrInvalid, l.n, err)
	}
	return nil, l.n, io.EOF
}

// Prepare completes a signal as it enters cascade: a missing id gets a ULID, a missing time
// now, a missing subject the payload's region; specversion, datacontenttype and dataschema
// are filled in; the scenario is set. Then it must pass the JSON Schemas and the typed
// validators, and be a type that some layer accepts.
func Prepare(raw []byte, scenario string, now time.Time) (*event.Event, error) {
	if len(raw) > event.MaxEventBytes {
		return nil, &event.ValidationError{Field: "event", Rule: fmt.Sprintf("oversized: %d bytes, at most %d", len(raw), event.MaxEventBytes)}
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, &event.DecodeError{Err: err}
	}
	if doc == nil {
		return nil, &event.DecodeError{Err: errors.New("not a JSON object")}
	}
	setDefault(doc, "specversion", event.SpecVersion)
	setDefault(doc, "id", ulid.Make().String())
	setDefault(doc, "time", now.UTC().Format(time.RFC3339Nano))
	setDefault(doc, "datacontenttype", event.ContentType)
	if ct, ok := doc["datacontenttype"].(string); ok {
		if err := event.CheckDataContentType(ct); err != nil {
			return nil, err
		}
	}
	if t, ok := doc["type"].(string); ok {
		setDefault(doc, "dataschema", event.Type(t).DataSchema())
	}
	if data, ok := doc["data"].(map[string]any); ok {
		if r, ok := data["region"].(string); ok {
			setDefault(doc, "subject", r)
		}
	}
	doc["scenario"] = scenario
	full, err := json.Marshal(doc)
	if err != nil {
		return nil, &event.DecodeError{Err: err}
	}
	if err := schemas.ValidateEvent(full); err != nil {
		return nil, err
	}
	ev, _, err := event.Decode(full)
	if err != nil {
		return nil, err
	}
	if event.InputLayer(ev.Type) == "" {
		return nil, &event.ValidationError{Field: "type", Rule: fmt.Sprintf("%s is never accepted as input", ev.Type)}
	}
	ev.CorrelationID = ev.ID
	return ev, nil
}

func setDefault(doc map[string]any, key string, v any) {
	if cur, ok := doc[key]; !ok || cur == nil || cur == "" {
		doc[key] = v
	}
}

// Message is the broker message carrying signal ev in its scenario.
func Message(ev *event.Event) (broker.Message, error) {
	data, err := ev.Marshal()
	if err != nil {
		return broker.Message{}, err
	}
	return broker.Message{
		Subject: event.SignalSubject(ev.Scenario, event.InputLayer(ev.Type), ev.Subject),
		ID:      ev.ID,
		Key:     ev.ID,
		Data:    data,
	}, nil
}

// Result answers one input line: the id taken, or why not.
type Result struct {
	Line  int    `json:"line"`
	ID    string `json:"id,omitempty"`
	Error string `json:"error,omitempty"`
	Field string `json:"field,omitempty"`
}

// OK reports whether the line was taken.
func (r Result) OK() bool { return r.Error == "" }

func failed(line int, err error) Result {
	r := Result{Line: line, Error: err.Error()}
	var ve *event.ValidationError
	if errors.As(err, &ve) {
		r.Field = ve.Field
	}
	return r
}

// Publisher publishes signals into one scenario.
type Publisher struct {
	Broker   broker.Broker
	Scenario string
	DryRun   bool             // validate only
	Now      func() time.Time // default time.Now
}

// Publish prepares every item, publishes the valid ones in one acknowledged batch and answers
// each line. The error is the broker's, when the batch could not be published at all.
func (p *Publisher) Publish(ctx context.Context, items []Item) ([]Result, error) {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	results := make([]Result, len(items))
	msgs := make([]broker.Message, 0, len(items))
	for i, it := range items {
		ev, err := Prepare(it.Raw, p.Scenario, now())
		if err != nil {
			results[i] = failed(it.Line, err)
			continue
		}
		m, err := Message(ev)
		if err != nil {
			results[i] = failed(it.Line, err)
			continue
		}
		msgs = append(msgs, m)
		results[i] = Result{Line: it.Line, ID: ev.ID}
	}
	if p.DryRun || len(msgs) == 0 {
		return results, nil
	}
	if err := p.Broker.EnsureScenario(ctx, p.Scenario); err != nil {
		return nil, err
	}
	if err := p.Broker.Publish(ctx, msgs); err != nil {
		return nil, fmt.Errorf("publish %d signals: %w", len(msgs), err)
	}
	return results, nil
}
