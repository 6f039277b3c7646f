package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/producers"
)

// postSignals takes one CloudEvent, a batch (JSON array) or NDJSON and answers each line.
// The body is read whole before anything is published; 200 means every event was taken and
// acknowledged by the broker, 207 some, 400 none.
func (s *Server) postSignals(w http.ResponseWriter, r *http.Request) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		ct = ""
	}
	switch ct {
	case "application/json", "application/cloudevents+json", "application/cloudevents-batch+json", "application/x-ndjson":
	default:
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json, application/cloudevents+json, application/cloudevents-batch+json or application/x-ndjson")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "body over the limit of "+itoa(s.opts.MaxBody)+" bytes; nothing was published")
			return
		}
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	if ct == "application/cloudevents-batch+json" && !bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
		writeError(w, http.StatusBadRequest, "a cloudevents batch is a JSON array")
		return
	}
	items, err := producers.Split(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	p := &producers.Publisher{Broker: s.b, Scenario: s.scenarioOf(r)}
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
	for _, res := range results {
		_ = enc.Encode(res)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
