package connect_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/producers"
	"github.com/layercake/cascade/producers/connect"
)

// recorded serves the files under testdata/<dir> as a provider would: a request for /a/b is
// answered with a/b.json or a/b, one with ?cursor=X with a/b.cursor-X.json; a page whose
// next page exists gets a Link header to it, as the Hugging Face Hub pages its listings. The
// hook, when set, may answer a request itself (return true), to inject failures.
type recorded struct {
	dir string
	mu  sync.Mutex
	log []string
	// hook may answer a request itself (return true), to inject failures.
	hook func(w http.ResponseWriter, r *http.Request, n int) bool
}

func serve(t *testing.T, dir string, hook func(w http.ResponseWriter, r *http.Request, n int) bool) (*httptest.Server, *recorded) {
	t.Helper()
	rec := &recorded{dir: filepath.Join("testdata", dir), hook: hook}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return srv, rec
}

func (s *recorded) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.log = append(s.log, r.URL.RequestURI())
	n := len(s.log)
	s.mu.Unlock()
	if s.hook != nil && s.hook(w, r, n) {
		return
	}
	base := filepath.Join(s.dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/")))
	name := base + ".json"
	if c := r.URL.Query().Get("cursor"); c != "" {
		name = base + ".cursor-" + c + ".json"
	}
	if _, err := os.Stat(name); err != nil {
		name = base
	}
	body, err := os.ReadFile(name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	next := "p2"
	if c := r.URL.Query().Get("cursor"); c != "" {
		next = c + "x"
	}
	if _, err := os.Stat(base + ".cursor-" + next + ".json"); err == nil {
		q := r.URL.Query()
		q.Set("cursor", next)
		w.Header().Set("Link", `<http://`+r.Host+r.URL.Path+"?"+q.Encode()+`>; rel="next"`)
	}
	if strings.HasSuffix(name, ".csv") {
		w.Header().Set("Content-Type", "text/csv")
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	_, _ = w.Write(body)
}

func (s *recorded) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

// registered starts a NATS broker with scenario base registered under the default
// coefficients and returns it with its client URL.
func registered(t *testing.T) (broker.Broker, string) {
	t.Helper()
	b, url := conformance.NATS(t)
	if err := consumers.BindScenario(t.Context(), b, event.DefaultScenario, coefficients.Default(), broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	return b, url
}

// runner publishes src into scenario base of b and collects the answer lines.
func runner(b broker.Broker, src connect.Source) (*connect.Runner, *[]connect.Answer) {
	var answers []connect.Answer
	r := &connect.Runner{
		Source:      src,
		Publisher:   &producers.Publisher{Broker: b, Scenario: event.DefaultScenario, AckTimeout: 2 * time.Second},
		Checkpoints: b.Checkpoints(),
		Answer:      func(a connect.Answer) error { answers = append(answers, a); return nil },
	}
	return r, &answers
}

// stored reads every signal scenario base holds, by id.
func stored(t *testing.T, b broker.Broker) map[string]*event.Event {
	t.Helper()
	out := map[string]*event.Event{}
	err := broker.Each(t.Context(), b, broker.FeedOptions{Selector: broker.Selector{Scenario: event.DefaultScenario, Kinds: []event.Kind{event.KindSignal}}, FromStart: true},
		func(d broker.Delivery) error {
			ev, _, err := event.Decode(d.Message().Data)
			if err != nil {
				return err
			}
			if _, dup := out[ev.ID]; dup {
				t.Errorf("signal %s stored twice", ev.ID)
			}
			out[ev.ID] = ev
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
