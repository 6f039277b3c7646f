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
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/tree"
	"github.com/layercake/cascade/schemas"
)

// Item is one event of an input document with its 1-based line (or array position), or, in
// Err, why that line cannot be one event (it is too long to be read).
type Item struct {
	Line int
	Raw  []byte
	Err  error
}

// MaxDepth bounds how deeply objects and arrays may nest in one event.
const MaxDepth = 64

// Split reads a JSON object, a JSON array of objects, or NDJSON (blank lines skipped). NDJSON
// is answered line by line: a line too long to be an event is an Item with Err, and the lines
// after it are read on; so is an array, element by element. Only an empty input or an array
// whose top level does not parse fail whole.
func Split(body []byte) ([]Item, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: no events in input", event.ErrInvalid)
	}
	if trimmed[0] == '[' {
		return splitArray(trimmed)
	}
	if json.Valid(trimmed) {
		return []Item{{Line: 1, Raw: trimmed}}, nil
	}
	var items []Item
	sc := newLineScanner(bytes.NewReader(body))
	for {
		it, err := sc.next()
		if errors.Is(err, io.EOF) {
			return items, nil
		}
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
}

// splitArray splits a JSON array into its elements. It tracks only strings and depth, so an
// element nested too deeply for encoding/json is answered on its own (by Prepare) rather than
// failing the whole array; an element that is not one JSON value is an Item with Err.
func splitArray(body []byte) ([]Item, error) {
	var items []Item
	var str jsonStrings
	depth, start := 0, 1
	for i := 1; i < len(body); i++ {
		c := body[i]
		if !str.outside(c) {
			continue
		}
		switch {
		case c == '{' || c == '[':
			depth++
		case depth > 0 && (c == '}' || c == ']'):
			depth--
		case depth == 0 && (c == ',' || c == ']'):
			raw := bytes.TrimSpace(body[start:i])
			if len(raw) == 0 && (c == ',' || len(items) > 0) {
				return nil, &event.DecodeError{Err: fmt.Errorf("JSON array: element %d is empty", len(items)+1)}
			}
			if len(raw) > 0 {
				it := Item{Line: len(items) + 1, Raw: raw}
				if !tooDeep(raw) && !json.Valid(raw) {
					it = Item{Line: it.Line, Err: &event.DecodeError{Err: fmt.Errorf("array element %d is not one JSON value", it.Line)}}
				}
				items = append(items, it)
			}
			start = i + 1
			if c == ']' {
				if len(bytes.TrimSpace(body[start:])) > 0 {
					return nil, &event.DecodeError{Err: errors.New("JSON array: data after its closing ]")}
				}
				return items, nil
			}
		}
	}
	return nil, &event.DecodeError{Err: errors.New("JSON array: unexpected end of input")}
}

// maxLineBytes is the longest NDJSON line read: an event with room for whitespace around it.
const maxLineBytes = event.MaxEventBytes + 1024

// lineScanner yields the non-blank lines of NDJSON with their 1-based numbers.
type lineScanner struct {
	r *bufio.Reader
	n int
}

func newLineScanner(r io.Reader) *lineScanner {
	return &lineScanner{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next non-blank line; one longer than maxLineBytes comes back as an Item
// with Err, read to its end and dropped. It returns io.EOF at the end of the input.
func (l *lineScanner) next() (Item, error) {
	for {
		line, size, err := l.readLine()
		if err != nil && !errors.Is(err, io.EOF) {
			return Item{}, fmt.Errorf("%w: reading NDJSON after line %d: %w", event.ErrInvalid, l.n, err)
		}
		if err != nil && size == 0 {
			return Item{}, io.EOF
		}
		l.n++
		if line == nil && size > 0 {
			return Item{Line: l.n, Err: oversized(size)}, nil
		}
		if t := bytes.TrimSpace(line); len(t) > 0 {
			return Item{Line: l.n, Raw: t}, nil
		}
	}
}

// readLine reads through the next newline or to the end of the input and returns the line
// and its size; a line over maxLineBytes is read to its end but not kept (nil).
func (l *lineScanner) readLine() (line []byte, size int, err error) {
	for {
		frag, err := l.r.ReadSlice('\n')
		size += len(frag)
		if size <= maxLineBytes {
			line = append(line, frag...)
		} else {
			line = nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, size, err
		}
	}
}

func oversized(n int) error {
	return &event.ValidationError{Field: "event", Rule: fmt.Sprintf("over %d KiB (%d bytes)", event.MaxEventBytes>>10, n)}
}

// jsonStrings follows JSON text byte by byte to tell the bytes of strings from the rest.
type jsonStrings struct{ in, escaped bool }

// outside reads the next byte c and reports whether it stands outside every string (a
// string's quotes count as inside).
func (s *jsonStrings) outside(c byte) bool {
	switch {
	case s.escaped:
		s.escaped = false
	case s.in:
		s.escaped = c == '\\'
		s.in = c != '"'
	case c == '"':
		s.in = true
	default:
		return true
	}
	return false
}

// tooDeep reports whether objects and arrays nest deeper than MaxDepth in raw, strings aside.
func tooDeep(raw []byte) bool {
	var str jsonStrings
	depth := 0
	for _, c := range raw {
		if !str.outside(c) {
			continue
		}
		switch {
		case c == '{' || c == '[':
			if depth++; depth > MaxDepth {
				return true
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return false
}

// Prepare completes a signal as it enters cascade: a missing id gets a ULID, a missing time
// now, a missing subject the payload's region; specversion, datacontenttype and dataschema
// are filled in; the scenario is set. Then it must be UTF-8, at most MaxEventBytes and
// MaxDepth deep, pass the JSON Schemas and the typed validators, and be a type that some
// layer accepts.
func Prepare(raw []byte, scenario string, now time.Time) (*event.Event, error) {
	ev, _, err := prepare(raw, scenario, now)
	return ev, err
}

func prepare(raw []byte, scenario string, now time.Time) (*event.Event, event.Payload, error) {
	if len(raw) > event.MaxEventBytes {
		return nil, nil, oversized(len(raw))
	}
	if err := event.CheckUTF8(raw); err != nil {
		return nil, nil, err
	}
	if tooDeep(raw) {
		return nil, nil, &event.ValidationError{Field: "event", Rule: fmt.Sprintf("nesting deeper than %d", MaxDepth)}
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, &event.DecodeError{Err: err}
	}
	if doc == nil {
		return nil, nil, &event.DecodeError{Err: errors.New("not a JSON object")}
	}
	setDefault(doc, "specversion", event.SpecVersion)
	setDefault(doc, "id", ulid.Make().String())
	if id, ok := doc["id"].(string); ok {
		if err := event.CheckID(id); err != nil {
			return nil, nil, err
		}
	}
	setDefault(doc, "time", now.UTC().Format(time.RFC3339Nano))
	setDefault(doc, "datacontenttype", event.ContentType)
	if ct, ok := doc["datacontenttype"].(string); ok {
		if err := event.CheckDataContentType(ct); err != nil {
			return nil, nil, err
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
		return nil, nil, &event.DecodeError{Err: err}
	}
	if err := schemas.ValidateEvent(full); err != nil {
		return nil, nil, err
	}
	ev, p, err := event.Decode(full)
	if err != nil {
		return nil, nil, err
	}
	if event.InputLayer(ev.Type) == "" {
		return nil, nil, &event.ValidationError{Field: "type", Rule: fmt.Sprintf("%s is never accepted as input", ev.Type)}
	}
	ev.CorrelationID = ev.ID
	return ev, p, nil
}

// representable expands the signal's whole tree with the transforms: a signal is refused at
// ingest when some layer below it would make an event it cannot represent, rather than
// leaving a partial tree and a dead letter behind. The error names that layer and field.
func representable(ctx context.Context, c *coefficients.Loaded, ev *event.Event, p event.Payload) error {
	_, err := tree.Expand(ctx, c, ev, p)
	var xe *tree.ExpandError
	var ve *event.ValidationError
	if errors.As(err, &xe) && errors.As(err, &ve) {
		return fmt.Errorf("%s layer: %w", xe.Layer, ve)
	}
	return err
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

// Result answers one input line: the id taken, or why not. Duplicate says the scenario held
// the id already (Publisher.IDs): the line is taken and adds nothing.
type Result struct {
	Line      int    `json:"line"`
	ID        string `json:"id,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Error     string `json:"error,omitempty"`
	Field     string `json:"field,omitempty"`
}

// IDSet says where the ids of a scenario are stored (view.View.HeldAt; view.Remote asks a
// run's view over the broker).
type IDSet interface {
	// HeldAt returns, for each of ids, the broker position holding it in scenario ("" for
	// none).
	HeldAt(ctx context.Context, scenario string, ids []string, asOf time.Time) ([]string, error)
}

// OK reports whether the line was taken.
func (r Result) OK() bool { return r.Error == "" }

// Refused answers every item with err: why none of them was published.
func Refused(items []Item, err error) []Result {
	results := make([]Result, len(items))
	for i, it := range items {
		results[i] = failed(it.Line, err)
	}
	return results
}

func failed(line int, err error) Result {
	r := Result{Line: line, Error: err.Error()}
	var ve *event.ValidationError
	if errors.As(err, &ve) {
		r.Field = ve.Field
	}
	return r
}

// DefaultAckTimeout is how long a Publisher waits for the broker's acknowledgements.
const DefaultAckTimeout = 10 * time.Second

// Publisher publishes signals into one registered scenario.
type Publisher struct {
	Broker   broker.Broker
	Scenario string
	// DryRun validates only; without a Broker, against the embedded default coefficients.
	DryRun bool
	Now    func() time.Time // default time.Now
	// AckTimeout bounds the wait for the broker: the scenario's binding, then the acks of one
	// Publish; default DefaultAckTimeout.
	AckTimeout time.Duration
	// IDs, when set, is asked once per batch which ids the scenario holds already: those
	// signals (an at-least-once producer's retries) are answered as duplicates and not
	// published. When it cannot answer, everything is published, the broker's de-dup window
	// and the stages' own check of held ids guarding against a second count.
	IDs IDSet
}

// Publish prepares every item, expands its tree under the scenario's coefficients, publishes
// the valid ones in one acknowledged batch and answers each line. When the valid lines could
// not be published, the error says why and so does each of their answers: the scenario is not
// registered (matching broker.ErrNotFound; then every line answers so), or the broker failed or
// did not acknowledge in time (matching broker.ErrUnavailable when that may pass).
func (p *Publisher) Publish(ctx context.Context, items []Item) ([]Result, error) {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	coef, err := p.coefficients(ctx)
	if err != nil {
		return Refused(items, err), err
	}
	results := make([]Result, len(items))
	msgs := make([]broker.Message, 0, len(items))
	for i, it := range items {
		m, err := p.message(ctx, coef, it, now())
		if err != nil {
			results[i] = failed(it.Line, err)
			continue
		}
		msgs = append(msgs, m)
		results[i] = Result{Line: it.Line, ID: m.ID}
	}
	if p.DryRun || len(msgs) == 0 {
		return results, nil
	}
	msgs = p.held(ctx, msgs, results)
	if len(msgs) == 0 {
		return results, nil
	}
	actx, cancel := context.WithTimeout(ctx, p.ackTimeout())
	defer cancel()
	if err := p.Broker.Publish(actx, msgs); err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: no acknowledgement within %s", broker.ErrUnavailable, p.ackTimeout())
		}
		err = fmt.Errorf("not published: the broker did not acknowledge: %w", err)
		for i := range results {
			if results[i].OK() {
				results[i].Error = err.Error()
			}
		}
		return results, err
	}
	return results, nil
}

// held marks as duplicates the results of msgs whose ids the scenario holds (IDs) and
// returns the others; it returns msgs as they are when IDs is unset or cannot answer.
func (p *Publisher) held(ctx context.Context, msgs []broker.Message, results []Result) []broker.Message {
	if p.IDs == nil {
		return msgs
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	actx, cancel := context.WithTimeout(ctx, p.ackTimeout())
	pos, err := p.IDs.HeldAt(actx, p.Scenario, ids, time.Time{})
	cancel()
	if err != nil {
		return msgs
	}
	dup := map[string]bool{}
	kept := msgs[:0]
	for i, m := range msgs {
		if pos[i] != "" {
			dup[m.ID] = true
			continue
		}
		kept = append(kept, m)
	}
	for i := range results {
		if results[i].OK() && dup[results[i].ID] {
			results[i].Duplicate = true
		}
	}
	return kept
}

func (p *Publisher) ackTimeout() time.Duration {
	if p.AckTimeout > 0 {
		return p.AckTimeout
	}
	return DefaultAckTimeout
}

// message prepares one item and checks its tree; it returns the signal's broker message.
func (p *Publisher) message(ctx context.Context, coef *coefficients.Loaded, it Item, now time.Time) (broker.Message, error) {
	if it.Err != nil {
		return broker.Message{}, it.Err
	}
	ev, pl, err := prepare(it.Raw, p.Scenario, now)
	if err != nil {
		return broker.Message{}, err
	}
	if err := representable(ctx, coef, ev, pl); err != nil {
		return broker.Message{}, err
	}
	return Message(ev)
}

// coefficients returns the set signals are checked against: the scenario's registry binding,
// or, in a dry run without a broker, the embedded defaults.
func (p *Publisher) coefficients(ctx context.Context) (*coefficients.Loaded, error) {
	if p.Broker == nil {
		if !p.DryRun {
			return nil, errors.New("producers: a Publisher needs a Broker unless it is a dry run")
		}
		return coefficients.Default(), nil
	}
	return registered(ctx, p.Broker, p.Scenario, p.ackTimeout())
}

// registered returns the coefficients scenario s is registered with, waiting at most timeout
// for the registry; an unregistered scenario matches broker.ErrNotFound.
func registered(ctx context.Context, b broker.Broker, s string, timeout time.Duration) (*coefficients.Loaded, error) {
	if !event.ValidName(s) {
		return nil, &event.ValidationError{Field: "scenario", Rule: "must match " + event.NamePattern}
	}
	gctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	bd, err := b.Registry().Get(gctx, s)
	if errors.Is(err, broker.ErrNotFound) {
		return nil, fmt.Errorf("%w: scenario %s is not registered; register it with `cascade scenario create %s --coefficients FILE` (`cascade scenario ls` lists them)", broker.ErrNotFound, s, s)
	}
	if err != nil {
		return nil, fmt.Errorf("not published: reading the binding of scenario %s: %w", s, err)
	}
	return bindingCoefficients(bd)
}

// parsed caches coefficient sets by coefversion, which names one document: parsing and
// validating a set costs far more than checking a signal.
var parsed sync.Map

func bindingCoefficients(b broker.Binding) (*coefficients.Loaded, error) {
	if c, ok := parsed.Load(b.CoefVersion); ok {
		return c.(*coefficients.Loaded), nil
	}
	c, err := coefficients.Parse(b.Document)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", b.Scenario, err)
	}
	parsed.Store(b.CoefVersion, c)
	return c, nil
}

// BatchSize is how many items PublishAll hands the broker in one acknowledged batch.
const BatchSize = 1000

// PublishAll publishes items in batches of BatchSize and calls answer with each item's
// Result, in order. Once a batch could not be published, the items after it are not tried:
// each is answered with that reason instead, and that reason is returned. It also returns
// answer's first error, and how many items were not taken.
func (p *Publisher) PublishAll(ctx context.Context, items []Item, answer func(i int, r Result) error) (failed int, err error) {
	var stopped error
	for start := 0; start < len(items); start += BatchSize {
		part := items[start:min(start+BatchSize, len(items))]
		var results []Result
		if stopped != nil {
			results = Refused(part, stopped)
		} else {
			results, stopped = p.Publish(ctx, part)
		}
		for i, r := range results {
			if !r.OK() {
				failed++
			}
			if err := answer(start+i, r); err != nil {
				return failed, fmt.Errorf("writing the answers: %w", err)
			}
		}
	}
	return failed, stopped
}
