package httpapi_test

import (
	"bufio"
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

func ndjsonDecoder(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	var lines []any
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			var v any
			if err := json.Unmarshal(line, &v); err != nil {
				return nil, fmt.Errorf("NDJSON line %d: %w", len(lines)+1, err)
			}
			lines = append(lines, v)
		}
	}
	return lines, sc.Err()
}

var specOptions = &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}

// exchange sends req and holds the exchange to docs/openapi.yaml: the route must be documented, a
// request the document refuses must be refused (4xx), and the answer must be one the document
// describes (status, Content-Type, body schema). It returns the response, its body read whole
// and closed. Every handler test goes through it (request and sse call it).
func exchange(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, in := send(t, req)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", req.Method, req.URL.Path, err)
	}
	checkResponse(t, in, resp, body)
	return resp, body
}

// exchangeStream is exchange for a streaming answer (Server-Sent Events): it checks the request, the
// status and the Content-Type, and leaves the body to the caller to read and close.
func exchangeStream(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	resp, in := send(t, req)
	checkResponse(t, in, resp, nil)
	return resp
}

// send checks req against the document and sends it.
func send(t *testing.T, req *http.Request) (*http.Response, *openapi3filter.RequestValidationInput) {
	t.Helper()
	router, err := specRouter()
	if err != nil {
		t.Fatal(err)
	}
	var reqBody []byte
	if req.Body != nil {
		if reqBody, err = io.ReadAll(req.Body); err != nil {
			t.Fatal(err)
		}
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s is not in docs/openapi.yaml: %v", req.Method, req.URL.Path, err)
	}
	check := req.Clone(req.Context())
	check.Body = io.NopCloser(bytes.NewReader(reqBody))
	in := &openapi3filter.RequestValidationInput{Request: check, PathParams: params, Route: route, Options: specOptions}
	reqErr := openapi3filter.ValidateRequest(req.Context(), in)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if reqErr != nil && (resp.StatusCode < 400 || resp.StatusCode >= 500) {
		t.Errorf("%s %s: docs/openapi.yaml refuses the request (%v) but the server answered %d", req.Method, req.URL.RequestURI(), reqErr, resp.StatusCode)
	}
	return resp, in
}

// checkResponse holds an answer to the document; a nil body checks status and headers only.
func checkResponse(t *testing.T, in *openapi3filter.RequestValidationInput, resp *http.Response, body []byte) {
	t.Helper()
	opts := *specOptions
	opts.ExcludeResponseBody = body == nil
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: &opts}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(in.Request.Context(), out); err != nil {
		t.Errorf("%s %s → %d %s: the answer is not as docs/openapi.yaml describes it: %v", in.Request.Method, in.Request.URL.RequestURI(), resp.StatusCode, trim(string(body)), err)
	}
	if body == nil {
		// ValidateResponse skips the Content-Type with the body; hold it to the document here.
		mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if r := in.Route.Operation.Responses.Status(resp.StatusCode); r == nil || r.Value.Content.Get(mt) == nil {
			t.Errorf("%s %s → %d %s: not a documented answer", in.Request.Method, in.Request.URL.RequestURI(), resp.StatusCode, mt)
		}
	}
}

// docs/openapi.yaml is a valid OpenAPI document, every operation has an operationId, and no
// description was split into stray keys by an unquoted comma.
func TestOpenAPIDocumentValid(t *testing.T) {
	t.Parallel()
	doc, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
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
