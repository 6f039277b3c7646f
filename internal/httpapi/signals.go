package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/producers"
)

// structuredTypes are the Content-Types of a structured-mode body.
var structuredTypes = []string{"application/json", "application/cloudevents+json", "application/cloudevents-batch+json", "application/x-ndjson"}

// postSignals takes one CloudEvent, a batch (JSON array) or NDJSON in structured mode, or one
// event in the CloudEvents HTTP binary mode (ce-* headers, the body its data), and answers each
// line. The body is read whole before anything is published; 200 means every event was taken
// and acknowledged by the broker, 207 some, 400 none.
func (s *Server) postSignals(w http.ResponseWriter, r *http.Request) {
	scenario, err := s.scenarioOnly(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = ""
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type charset %q is not supported: send UTF-8", cs))
		return
	}
	// As in the binding: an application/cloudevents type means structured mode, whatever the
	// ce- headers say.
	binary := r.Header.Get("Ce-Specversion") != "" && !strings.HasPrefix(mt, "application/cloudevents")
	if !binary && !slices.Contains(structuredTypes, mt) {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be "+strings.Join(structuredTypes, ", ")+", or the data's type with ce-* headers (CloudEvents binary mode)")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "body over the limit of "+itoa(s.opts.MaxBody)+" bytes; nothing was published")
			return
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			writeError(w, http.StatusBadRequest, "the body did not arrive within --http-read-timeout; nothing was published")
			return
		}
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	var items []producers.Item
	switch {
	case binary:
		raw, err := event.FromBinary(ceAttributes(r.Header), ct, body)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		items = []producers.Item{{Line: 1, Raw: raw}}
	case mt == "application/cloudevents-batch+json" && !bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")):
		writeError(w, http.StatusBadRequest, "a cloudevents batch is a JSON array")
		return
	default:
		if items, err = producers.Split(body); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	p := &producers.Publisher{Broker: s.b, Scenario: scenario}
	if s.opts.View != nil {
		p.IDs = s.opts.View // a signal the scenario holds already is answered as a duplicate
	}
	results, err := p.Publish(r.Context(), items)
	if errors.Is(err, broker.ErrNotFound) {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	ok := 0
	for _, res := range results {
		if res.OK() {
			ok++
		}
	}
	status := http.StatusOK
	switch {
	case ok == 0:
		status = http.StatusBadRequest
	case ok < len(results):
		status = http.StatusMultiStatus
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, res := range results {
		_ = enc.Encode(res)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// ceAttributes are the context attributes of a binary-mode request: its ce-* headers, named
// without the prefix, their values percent-decoded as the HTTP binding asks.
func ceAttributes(h http.Header) map[string]string {
	attrs := map[string]string{}
	for k, vs := range h {
		name, ok := strings.CutPrefix(strings.ToLower(k), "ce-")
		if !ok || name == "" || len(vs) == 0 {
			continue
		}
		v := vs[0]
		if dec, err := url.PathUnescape(v); err == nil {
			v = dec
		}
		attrs[name] = v
	}
	return attrs
}
