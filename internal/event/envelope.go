package event

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/segmentio/encoding/json"
)

// MaxEventBytes bounds one event on the wire.
const MaxEventBytes = 256 << 10

// MaxIDBytes bounds an event id.
const MaxIDBytes = 256

// Decode parses and validates one event as read from a broker: UTF-8 throughout, id and time
// present, the type known, the subject a region equal to the payload's region. An event
// without a subject (optional in CloudEvents, as an outside producer may write it) takes the
// payload's region, as ingest fills it in. It returns the event and its typed payload; every
// error is a *DecodeError or matches ErrInvalid.
func Decode(body []byte) (*Event, Payload, error) { return decode(body, true) }

// decode is Decode, in one pass where decodeOnePass can (onePass), else in two: the envelope
// with data raw, then data into its payload.
func decode(body []byte, onePass bool) (*Event, Payload, error) {
	if len(body) > MaxEventBytes {
		return nil, nil, invalid("event", "oversized: %d bytes, at most %d", len(body), MaxEventBytes)
	}
	if err := CheckUTF8(body); err != nil {
		return nil, nil, err
	}
	var e Event
	var p Payload
	if onePass {
		p, onePass = decodeOnePass(body, &e)
	}
	if !onePass {
		e = Event{}
		if err := json.Unmarshal(body, &e); err != nil { // segmentio/encoding: encoding/json's rules, five times faster
			return nil, nil, &DecodeError{Err: err}
		}
	}
	if err := e.validateEnvelope(); err != nil {
		return nil, nil, err
	}
	if onePass {
		if err := p.Validate(); err != nil {
			return nil, nil, err
		}
	} else {
		var err error
		if p, err = DecodePayload(e.Type, e.Data); err != nil {
			return nil, nil, err
		}
	}
	if e.Subject == "" {
		e.Subject = p.RegionName()
	}
	if p.RegionName() != e.Subject {
		return nil, nil, invalid("subject", "region %q differs from data.region %q", e.Subject, p.RegionName())
	}
	return &e, p, nil
}

func (e *Event) validateEnvelope() error {
	switch {
	case e.SpecVersion != SpecVersion:
		return invalid("specversion", "must be %q", SpecVersion)
	case e.ID == "":
		return invalid("id", "required")
	}
	if err := CheckID(e.ID); err != nil {
		return err
	}
	switch {
	case e.Source == "":
		return invalid("source", "required")
	case e.Type == "":
		return invalid("type", "required")
	case !e.Type.Known():
		return invalid("type", "unknown event type %q", e.Type)
	case e.Subject != "" && !ValidName(e.Subject):
		return invalid("subject", "must be a region matching %s", NamePattern)
	case e.Time.IsZero():
		return invalid("time", "required")
	case e.Scenario != "" && !ValidName(e.Scenario):
		return invalid("scenario", "must match %s", NamePattern)
	}
	if err := CheckDataContentType(e.DataContentType); err != nil {
		return err
	}
	e.Time = e.Time.UTC()
	return nil
}

// New builds a derived event: its id from the parent's, its time given, its provenance chained.
func New(parent *Event, emitter Layer, key string, t time.Time, coefVersion string, p Payload) (*Event, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", p.EventType().Short(), err)
	}
	corr := parent.CorrelationID
	if corr == "" {
		corr = parent.ID
	}
	return &Event{
		SpecVersion:     SpecVersion,
		ID:              DerivedID(parent.ID, emitter, key),
		Source:          emitter.Source(),
		Type:            p.EventType(),
		Subject:         p.RegionName(),
		Time:            t.UTC(),
		DataContentType: ContentType,
		DataSchema:      p.EventType().DataSchema(),
		Scenario:        parent.Scenario,
		CausationID:     parent.ID,
		CorrelationID:   corr,
		CoefVersion:     coefVersion,
		Data:            data,
	}, nil
}

// CheckID refuses an id longer than MaxIDBytes or holding a control character: NATS carries
// the id in the Nats-Msg-Id header, whose value folds CR and LF into spaces, so ids differing
// only there would collide.
func CheckID(id string) error {
	switch {
	case len(id) > MaxIDBytes:
		return invalid("id", "at most %d bytes", MaxIDBytes)
	case strings.ContainsFunc(id, unicode.IsControl):
		return invalid("id", "must not contain control characters (%q)", id)
	}
	return nil
}

// CheckUTF8 refuses a body that is not valid UTF-8, which JSON requires: decoding it would
// silently turn the bad bytes into U+FFFD. The error is a *DecodeError naming the offset.
func CheckUTF8(body []byte) error {
	if utf8.Valid(body) {
		return nil
	}
	for i := 0; i < len(body); {
		r, n := utf8.DecodeRune(body[i:])
		if r == utf8.RuneError && n == 1 {
			return &DecodeError{Err: fmt.Errorf("invalid UTF-8 at byte %d", i)}
		}
		i += n
	}
	return nil
}
