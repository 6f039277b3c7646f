package httpapi_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/httpapi"
)

// sdkSignal is an adoption signal built with the CloudEvents SDK, its data declared as
// application/json with charset=utf-8.
func sdkSignal(t *testing.T, id string) cloudevents.Event {
	t.Helper()
	e := cloudevents.NewEvent()
	e.SetID(id)
	e.SetSource("/sdk-test")
	e.SetType(string(event.TypeAdoption))
	e.SetSubject("us")
	e.SetTime(time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC))
	e.SetExtension("sourceurl", "https://example.com/news")
	if err := e.SetData("application/json; charset=utf-8", map[string]any{"app": "a", "category": "chat", "region": "us", "users_delta": 1000}); err != nil {
		t.Fatal(err)
	}
	return e
}

// The CloudEvents SDK posts signals in binary mode (its default: ce-* headers, the body the
// data) and in structured mode; both are taken and processed, and the feeds' events decode
// with the SDK. A charset other than UTF-8 is refused by name, in the Content-Type and in
// datacontenttype.
func TestSignalsFromCloudEventsSDK(t *testing.T) {
	t.Parallel()
	base := apiPipeline(t, httpapi.Options{})
	client, err := cloudevents.NewClientHTTP(cehttp.WithTarget(base+"/v1/signals"), cehttp.WithClient(*specClient(t)))
	if err != nil {
		t.Fatal(err)
	}
	send := func(name, id string, structured bool) {
		ctx := t.Context()
		if structured {
			ctx = binding.WithForceStructured(ctx)
		}
		res := client.Send(ctx, sdkSignal(t, id))
		var hr *cehttp.Result
		if !cloudevents.ResultAs(res, &hr) || hr.StatusCode != 200 {
			t.Fatalf("%s: SDK send answered %v, want 200", name, res)
		}
	}
	send("binary mode", "sdk-binary", false)
	send("structured mode", "sdk-structured", true)
	for _, id := range []string{"sdk-binary", "sdk-structured"} {
		conformance.Eventually(t, 20*time.Second, id+"'s tree", func() error {
			s, body := request(t, base, call{method: "GET", path: "/v1/trace/" + id})
			if s != 200 || !strings.Contains(body, "cascade.demand.grid.v1") || !strings.Contains(body, `"sourceurl":"https://example.com/news"`) {
				return fmt.Errorf("GET /v1/trace/%s: %d %.300s; want 200 with a grid event and the sourceurl", id, s, body)
			}
			return nil
		})
	}
	// What the feeds carry decodes with the SDK as valid CloudEvents.
	_, data := sse(t, base+"/v1/feeds/grid?since=2000-01-01", "", 4)
	for _, d := range data {
		var e cloudevents.Event
		if err := json.Unmarshal([]byte(d), &e); err != nil {
			t.Fatalf("SDK decode of %s: %v", d, err)
		}
		if err := e.Validate(); err != nil || e.Type() != string(event.TypeDemandGrid) || e.DataContentType() != "application/json" {
			t.Errorf("feed event %s: %v", d, err)
		}
	}
	for _, c := range []call{
		{name: "utf-16 body", method: "POST", path: "/v1/signals", header: map[string]string{"Content-Type": "application/json; charset=utf-16"}, body: signal("u16", "us", 1), want: 415, contains: `charset \"utf-16\"`},
		{name: "utf-16 binary data", method: "POST", path: "/v1/signals", header: map[string]string{"Content-Type": "application/json; charset=UTF-16", "Ce-Specversion": "1.0", "Ce-Id": "u16b", "Ce-Source": "/t", "Ce-Type": string(event.TypeAdoption)}, body: `{"app":"a","category":"chat","region":"us","users_delta":1}`, want: 415, contains: `charset \"UTF-16\"`},
		{name: "utf-16 datacontenttype", method: "POST", path: "/v1/signals", header: map[string]string{"Content-Type": "application/cloudevents+json"}, body: strings.Replace(signal("u16c", "us", 1), `"time"`, `"datacontenttype":"application/json; charset=utf-16","time"`, 1), want: 400, contains: `datacontenttype: charset \"utf-16\" is not supported`},
		{name: "binary mode, body not JSON", method: "POST", path: "/v1/signals", header: map[string]string{"Content-Type": "application/json", "Ce-Specversion": "1.0", "Ce-Id": "nj", "Ce-Source": "/t", "Ce-Type": string(event.TypeAdoption)}, body: `users=1`, want: 400, contains: "not JSON"},
		{name: "binary mode, missing ce-source", method: "POST", path: "/v1/signals", header: map[string]string{"Content-Type": "application/json", "Ce-Specversion": "1.0", "Ce-Id": "ns", "Ce-Type": string(event.TypeAdoption)}, body: `{"app":"a","category":"chat","region":"us","users_delta":1}`, want: 400, contains: `"field":"source"`},
	} {
		if status, body := request(t, base, c); status != c.want || !strings.Contains(body, c.contains) {
			t.Errorf("%s: %d %q, want %d containing %q", c.name, status, trim(body), c.want, c.contains)
		}
	}
}
