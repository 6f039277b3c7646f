package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

const specFile = "../../docs/openapi.yaml"

// mustSpec is loadSpec's document, or the test fails.
func mustSpec(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// loadSpec loads docs/openapi.yaml and validates it as an OpenAPI document.
func loadSpec() (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromFile(specFile)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", specFile, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("validate %s: %w", specFile, err)
	}
	return doc, nil
}

// specRouter finds a request's operation in docs/openapi.yaml, on any host (the document's
// server is the default address; tests listen on random ports).
var specRouter = sync.OnceValues(func() (routers.Router, error) {
	doc, err := loadSpec()
	if err != nil {
		return nil, err
	}
	doc.Servers = openapi3.Servers{{URL: "/"}}
	// NDJSON bodies are validated line by line: the document's schema is an array of lines.
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", ndjsonDecoder)
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	return gorillamux.NewRouter(doc)
})

// ndjsonDecoder reads NDJSON as the array of its non-blank lines, each decoded JSON or, where
// it is none (a request line the server refuses on its own), kept as a string.
func ndjsonDecoder(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	raw, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	var lines []any
	for line := range bytes.Lines(raw) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			var v any
			if json.Unmarshal(line, &v) != nil {
				v = string(line)
			}
			lines = append(lines, v)
		}
	}
	return lines, nil
}

var specOptions = &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}

// exchange sends req through specClient and returns the response with its body, read whole
// and closed. The handler tests send every request through it (request does), or through
// specClient itself for a stream (sse) or another client (the CloudEvents SDK).
func exchange(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := specClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", req.Method, req.URL.Path, err)
	}
	return resp, body
}

// specClient is an HTTP client that holds every exchange to docs/openapi.yaml: the route must
// be documented, a request the document refuses must be refused (4xx), and the answer must
// be one the document describes (status, Content-Type and, unless it is a stream of
// Server-Sent Events, the body's schema).
func specClient(t *testing.T) *http.Client {
	return &http.Client{Transport: specTransport{t}}
}

type specTransport struct{ t *testing.T }

// RoundTrip sends req and checks the exchange, reporting mismatches with t.Errorf.
func (s specTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t := s.t
	router, err := specRouter()
	if err != nil {
		return nil, err
	}
	var reqBody []byte
	if req.Body != nil {
		if reqBody, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		_ = req.Body.Close()
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Errorf("%s %s is not in docs/openapi.yaml: %v", req.Method, req.URL.Path, err)
		return nil, err
	}
	check := req.Clone(req.Context())
	check.Body = io.NopCloser(bytes.NewReader(reqBody))
	in := &openapi3filter.RequestValidationInput{Request: check, PathParams: params, Route: route, Options: specOptions}
	reqErr := openapi3filter.ValidateRequest(req.Context(), in)
	send := req.Clone(req.Context())
	send.Body = io.NopCloser(bytes.NewReader(reqBody))
	resp, err := http.DefaultTransport.RoundTrip(send)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("%s %s → %d", req.Method, req.URL.RequestURI(), resp.StatusCode)
	if reqErr != nil && (resp.StatusCode < 400 || resp.StatusCode >= 500) {
		t.Errorf("%s: docs/openapi.yaml refuses the request (%v), the server took it", what, reqErr)
	}
	opts := *specOptions
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: &opts}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	var body []byte
	if mt == "text/event-stream" {
		// The stream stays with the caller; ValidateResponse skips the Content-Type with the
		// body, so it is checked here.
		opts.ExcludeResponseBody = true
		if r := route.Operation.Responses.Status(resp.StatusCode); r == nil || r.Value.Content.Get(mt) == nil {
			t.Errorf("%s %s: not a documented answer", what, mt)
		}
	} else {
		body, err = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		out.SetBodyBytes(body)
	}
	if err := openapi3filter.ValidateResponse(req.Context(), out); err != nil {
		t.Errorf("%s %s: the answer is not as docs/openapi.yaml describes it: %v", what, trim(string(body)), err)
	}
	return resp, nil
}

// docs/openapi.yaml is a valid OpenAPI document, every operation has an operationId, and no
// description was split into stray keys by an unquoted comma.
func TestOpenAPIDocumentValid(t *testing.T) {
	t.Parallel()
	doc := mustSpec(t)
	ids := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			switch {
			case op.OperationID == "":
				t.Errorf("%s %s has no operationId", method, path)
			case ids[op.OperationID]:
				t.Errorf("%s %s: operationId %s used twice", method, path, op.OperationID)
			}
			ids[op.OperationID] = true
			for status, r := range op.Responses.Map() {
				if r.Value != nil && len(r.Value.Extensions) > 0 {
					t.Errorf("%s %s %s: stray keys %v (an unquoted comma in a flow map?)", method, path, status, r.Value.Extensions)
				}
			}
		}
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
}
