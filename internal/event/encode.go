package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// Marshal encodes e with its time in UTC, as the contract requires. The envelope is written
// by hand, in its wire order (the order of Event's fields), byte for byte what encoding/json
// writes for it with HTML escaping off; data is compacted as encoding/json would.
func (e *Event) Marshal() ([]byte, error) {
	e.Time = e.Time.UTC()
	if y := e.Time.Year(); y < 0 || y > 9999 {
		_, err := e.Time.MarshalJSON()
		return nil, fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	b := make([]byte, 0, envelopeSize(e)+len(e.Data))
	b = appendField(b, `{"specversion":`, e.SpecVersion)
	b = appendField(b, `,"id":`, e.ID)
	b = appendField(b, `,"source":`, e.Source)
	b = appendField(b, `,"type":`, string(e.Type))
	b = appendField(b, `,"subject":`, e.Subject)
	b = append(b, `,"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, `,"datacontenttype":`, e.DataContentType)
	b = appendField(b, `,"dataschema":`, e.DataSchema)
	b = appendOptional(b, `,"scenario":`, e.Scenario)
	b = appendOptional(b, `,"causationid":`, e.CausationID)
	b = appendOptional(b, `,"correlationid":`, e.CorrelationID)
	b = appendOptional(b, `,"coefversion":`, e.CoefVersion)
	b = appendOptional(b, `,"sourceurl":`, e.SourceURL)
	b = append(b, `,"data":`...)
	if e.Data == nil {
		b = append(b, "null"...)
	} else {
		buf := bytes.NewBuffer(b)
		if err := json.Compact(buf, e.Data); err != nil {
			return nil, fmt.Errorf("encode event %s: data: %w", e.ID, err)
		}
		b = buf.Bytes()
	}
	return append(b, '}'), nil
}

// envelopeSize is room for the envelope's names and values, escapes aside.
func envelopeSize(e *Event) int {
	const names = len(`{"specversion":"","id":"","source":"","type":"","subject":"","time":"2006-01-02T15:04:05.999999999Z","datacontenttype":"","dataschema":"","scenario":"","causationid":"","correlationid":"","coefversion":"","sourceurl":"","data":}`)
	return names + len(e.SpecVersion) + len(e.ID) + len(e.Source) + len(e.Type) + len(e.Subject) + len(e.DataContentType) +
		len(e.DataSchema) + len(e.Scenario) + len(e.CausationID) + len(e.CorrelationID) + len(e.CoefVersion) + len(e.SourceURL)
}

func appendField(b []byte, name, v string) []byte {
	return appendString(append(b, name...), v)
}

// appendOptional is appendField for an omitempty attribute.
func appendOptional(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	return appendField(b, name, v)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string the way encoding/json does with HTML escaping off:
// quote and backslash escaped, control characters as \b \f \n \r \t or \u00XX, U+2028 and
// U+2029 as \u2028 and \u2029, invalid UTF-8 as \ufffd.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(append(b, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(append(b, s[start:]...), '"')
}
