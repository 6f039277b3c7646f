package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime"
	"regexp"
	"strings"
)

// ContentTypePattern is what a datacontenttype may be: application/json, optionally with the
// parameter charset=utf-8 (schemas/cloudevent.json holds the same pattern).
const ContentTypePattern = `^application/json( *; *charset=(utf-8|UTF-8|"utf-8"|"UTF-8"))?$`

var contentTypePattern = regexp.MustCompile(ContentTypePattern)

// CheckDataContentType accepts an empty datacontenttype or one matching ContentTypePattern; a
// charset other than UTF-8 is refused by name.
func CheckDataContentType(ct string) error {
	if ct == "" || contentTypePattern.MatchString(ct) {
		return nil
	}
	if mt, params, err := mime.ParseMediaType(ct); err == nil && mt == ContentType {
		if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
			return invalid("datacontenttype", "charset %q is not supported: data must be UTF-8 JSON", cs)
		}
	}
	return invalid("datacontenttype", "must be %q, optionally with charset=utf-8", ContentType)
}

// FromBinary builds the structured JSON of a CloudEvent received in binary mode (the
// CloudEvents HTTP and Kafka bindings): attrs are its context attributes and extensions, named
// without their ce- or ce_ prefix; contentType, the message's content type, is its
// datacontenttype; data, the message body, must be JSON.
func FromBinary(attrs map[string]string, contentType string, data []byte) ([]byte, error) {
	doc := make(map[string]any, len(attrs)+2)
	for k, v := range attrs {
		doc[strings.ToLower(k)] = v
	}
	if contentType != "" {
		doc["datacontenttype"] = contentType
	}
	if data = bytes.TrimSpace(data); len(data) > 0 {
		if !json.Valid(data) {
			return nil, &DecodeError{Err: errors.New("binary-mode data (the body) is not JSON")}
		}
		doc["data"] = json.RawMessage(data)
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, &DecodeError{Err: err}
	}
	return out, nil
}
