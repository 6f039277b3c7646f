package httpapi_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/httpapi"
	"github.com/layercake/cascade/producers"
)

// TestSignalSentAgainIsADuplicate: a signal posted again with an id the scenario holds (a
// producer retrying after a crash) is answered as a duplicate, per event, and is not stored
// again, while a new one beside it in the same batch is taken.
func TestSignalSentAgainIsADuplicate(t *testing.T) {
	t.Parallel()
	base, b := apiServer(t, httpapi.Options{}, true)
	ndjson := map[string]string{"Content-Type": "application/x-ndjson"}
	post := func(body string) []producers.Result {
		t.Helper()
		s, out := request(t, base, call{method: "POST", path: "/v1/signals", header: ndjson, body: body})
		if s != 200 {
			t.Fatalf("post: %d %s", s, out)
		}
		var rs []producers.Result
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var r producers.Result
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("answer %q: %v", line, err)
			}
			rs = append(rs, r)
		}
		return rs
	}
	if rs := post(signal("retry-1", "us", 1000)); len(rs) != 1 || rs[0].Duplicate {
		t.Fatalf("first post answered %+v", rs)
	}
	signals := func() (n map[string]int) {
		n = map[string]int{}
		err := broker.Each(t.Context(), b, broker.FeedOptions{Selector: broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindSignal}}, FromStart: true}, func(d broker.Delivery) error {
			n[d.Message().ID]++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Once the view holds it, the same id is a duplicate (retries before that are inside
	// the broker's de-dup window: stored once too).
	conformance.Eventually(t, 10*time.Second, "the retry to be answered as a duplicate", func() error {
		if rs := post(signal("retry-1", "us", 1000)); !rs[0].Duplicate {
			return fmt.Errorf("answered %+v", rs[0])
		}
		return nil
	})
	rs := post(signal("retry-1", "us", 1000) + "\n" + signal("retry-2", "eu", 10))
	if len(rs) != 2 || rs[0].ID != "retry-1" || rs[0].Error != "" || rs[1].Duplicate || rs[1].ID != "retry-2" {
		t.Errorf("answers %+v, want retry-1 a duplicate and retry-2 taken", rs)
	}
	if n := signals(); n["retry-1"] != 1 || n["retry-2"] != 1 {
		t.Errorf("stored %v, want each once", n)
	}
}
