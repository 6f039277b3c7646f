package event

import (
	"bytes"

	"github.com/segmentio/encoding/json"
)

// interned are the envelope values every pipeline event repeats (spec version, content type,
// each layer's source, each type and its dataschema): decodeOnePass hands out these strings
// instead of allocating a copy per event.
var interned = func() map[string]string {
	m := map[string]string{SpecVersion: SpecVersion, ContentType: ContentType}
	for _, s := range pipeline.sources {
		m[s] = s
	}
	for t, s := range pipeline.schemas {
		m[string(t)], m[s] = string(t), s
	}
	return m
}()

// envelope field bits, to refuse a repeated key on the one-pass path.
const (
	fSpecVersion = 1 << iota
	fID
	fSource
	fType
	fSubject
	fTime
	fDataContentType
	fDataSchema
	fScenario
	fCausationID
	fCorrelationID
	fCoefVersion
	fSourceURL
	fData
)

// decodeOnePass decodes body into e and its payload in one pass: the object's keys are walked
// here, each value decoded in place by segmentio/encoding (the rules Decode's two-pass path
// applies), data straight into the payload of the type already read. It handles the shape
// cascade itself writes and most producers do: lower-case keys each once, no extension
// attributes, type before data. For anything else (or any error) it reports false and Decode
// takes its two-pass path, which gives the same result and the same error; so this path
// never decides what is refused.
func decodeOnePass(body []byte, e *Event) (Payload, bool) {
	rest := skipSpace(body)
	if len(rest) == 0 || rest[0] != '{' {
		return nil, false
	}
	rest = skipSpace(rest[1:])
	var seen int
	var p Payload
	for len(rest) > 0 && rest[0] != '}' {
		if seen != 0 {
			if rest[0] != ',' {
				return nil, false
			}
			rest = skipSpace(rest[1:])
		}
		key, r, ok := simpleString(rest)
		if !ok {
			return nil, false
		}
		r = skipSpace(r)
		if len(r) == 0 || r[0] != ':' {
			return nil, false
		}
		rest = skipSpace(r[1:])
		var bit int
		var dst *string
		switch string(key) {
		case "specversion":
			bit, dst = fSpecVersion, &e.SpecVersion
		case "id":
			bit, dst = fID, &e.ID
		case "source":
			bit, dst = fSource, &e.Source
		case "type":
			bit, dst = fType, (*string)(&e.Type)
		case "subject":
			bit, dst = fSubject, &e.Subject
		case "datacontenttype":
			bit, dst = fDataContentType, &e.DataContentType
		case "dataschema":
			bit, dst = fDataSchema, &e.DataSchema
		case "scenario":
			bit, dst = fScenario, &e.Scenario
		case "causationid":
			bit, dst = fCausationID, &e.CausationID
		case "correlationid":
			bit, dst = fCorrelationID, &e.CorrelationID
		case "coefversion":
			bit, dst = fCoefVersion, &e.CoefVersion
		case "sourceurl":
			bit, dst = fSourceURL, &e.SourceURL
		case "time":
			bit = fTime
		case "data":
			bit = fData
		default: // an extension, or a key in another case that the two-pass path matches
			return nil, false
		}
		if seen&bit != 0 {
			return nil, false
		}
		seen |= bit
		var err error
		switch {
		case dst != nil:
			if v, r, ok := simpleString(rest); ok { // its bytes are its value (the body is valid UTF-8)
				if s, ok := interned[string(v)]; ok {
					*dst = s
				} else {
					*dst = string(v)
				}
				rest = r
				break
			}
			rest, err = json.Parse(rest, dst, 0)
		case bit == fTime:
			rest, err = json.Parse(rest, &e.Time, 0)
		default: // data, after type
			if p = newPayload(e.Type); p == nil {
				return nil, false
			}
			start := rest
			if rest, err = json.Parse(rest, p, json.DisallowUnknownFields); err == nil {
				e.Data = bytes.Clone(bytes.TrimRight(start[:len(start)-len(rest)], " \t\r\n"))
			}
		}
		if err != nil {
			return nil, false
		}
		rest = skipSpace(rest)
	}
	if len(rest) == 0 || len(skipSpace(rest[1:])) != 0 || p == nil {
		return nil, false
	}
	return p, true
}

// simpleString reads a JSON string without escapes at the start of b: its bytes, unquoted,
// and what follows.
func simpleString(b []byte) (s, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, nil, false
	}
	end := bytes.IndexByte(b[1:], '"')
	if end < 0 || bytes.IndexByte(b[1:1+end], '\\') >= 0 {
		return nil, nil, false
	}
	s = b[1 : 1+end]
	for _, c := range s {
		if c < 0x20 { // JSON refuses control characters in strings
			return nil, nil, false
		}
	}
	return s, b[2+end:], true
}

func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}
