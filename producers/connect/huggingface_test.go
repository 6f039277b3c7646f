package connect_test

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/producers/connect"
)

var hfSince = time.Date(2026, 11, 15, 0, 0, 0, 0, time.UTC)

func hf(base string) *connect.HuggingFace {
	return &connect.HuggingFace{BaseURL: base, MinParams: 7e9, Since: hfSince, Client: &connect.Client{}}
}

// The Hub connector reads the recorded listing (two pages, newest first) down to --since,
// publishes one signal.release per public safetensors text-generation model above
// --min-params that is not a fine-tune of another (its base's release counts it), oldest first, with params_total from safetensors.total, params_active
// estimated from config.json's experts for the mixture of experts (and so marked in its
// answer) and equal to the total for the dense model, reasoning from the tags, a sourceurl
// and an id from the Hub's model id. Polling again reads the listing's first page, finds
// nothing new, and adds nothing.
func TestHuggingFaceOnceThenAgainAddsNothing(t *testing.T) {
	t.Parallel()
	b, _ := registered(t)
	srv, rec := serve(t, "huggingface", nil)
	r, answers := runner(b, hf(srv.URL))
	sum, err := r.Once(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Read != 2 || len(*answers) != 2 {
		t.Fatalf("%+v, answers %+v; want the dense and the MoE model", sum, *answers)
	}
	dense, moe := (*answers)[0], (*answers)[1]
	if dense.ID != "huggingface:acme/Dense-70B" || moe.ID != "huggingface:acme/MoE-Chat-30B-A3B" || !dense.OK() || !moe.OK() {
		t.Fatalf("answers %+v", *answers)
	}
	if dense.Note != "" || !strings.Contains(moe.Note, "params_active estimated") || !strings.Contains(moe.Note, "8 of 128 routed experts") {
		t.Fatalf("notes: dense %q, moe %q", dense.Note, moe.Note)
	}
	got := stored(t, b)
	if len(got) != 2 {
		t.Fatalf("%d signals stored, want 2", len(got))
	}
	release := func(id string) (*event.Event, event.Release) {
		ev := got[id]
		if ev == nil {
			t.Fatalf("%s not stored", id)
		}
		var rel event.Release
		if err := json.Unmarshal(ev.Data, &rel); err != nil {
			t.Fatal(err)
		}
		return ev, rel
	}
	ev, rel := release("huggingface:acme/MoE-Chat-30B-A3B")
	// 3 × 2048 × 768 × 128 experts × 48 layers of the 30.53e9 are experts, 8/128 of them active.
	share := 3.0 * 2048 * 768 * 128 * 48
	wantActive := 30532122624 - share*(1-8.0/128)
	if rel.ParamsTotal != 30532122624 || math.Abs(rel.ParamsActive-wantActive) > 1 || !*rel.Reasoning || !*rel.OpenWeights || rel.Region != "world" {
		t.Fatalf("MoE release %+v, want active %.0f", rel, wantActive)
	}
	if ev.SourceURL != srv.URL+"/acme/MoE-Chat-30B-A3B" || !ev.Time.Equal(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)) || ev.Type != event.TypeRelease {
		t.Fatalf("MoE envelope: sourceurl %q time %s type %s", ev.SourceURL, ev.Time, ev.Type)
	}
	ev, rel = release("huggingface:acme/Dense-70B")
	if rel.ParamsTotal != 70553706496 || rel.ParamsActive != rel.ParamsTotal || *rel.Reasoning || ev.SourceURL != srv.URL+"/acme/Dense-70B" {
		t.Fatalf("dense release %+v, sourceurl %q", rel, ev.SourceURL)
	}
	for _, u := range rec.requests() {
		if strings.Contains(u, "Before-Since") || strings.Contains(u, "tiny-1B/resolve") || strings.Contains(u, "finetuned") {
			t.Errorf("read %s: a model before --since, the config of one below --min-params, or a fine-tune", u)
		}
	}

	*answers = nil
	before := len(rec.requests())
	sum, err = r.Once(t.Context())
	if err != nil || sum.Read != 0 || len(*answers) != 0 {
		t.Fatalf("second poll: %+v %v, answers %+v; want nothing new", sum, err, *answers)
	}
	if again := rec.requests()[before:]; len(again) != 1 || !strings.HasPrefix(again[0], "/api/models?") {
		t.Fatalf("second poll requested %v; want only the listing's first page", again)
	}
	if n := len(stored(t, b)); n != 2 {
		t.Fatalf("%d signals after polling again, want still 2", n)
	}
	cp, err := b.Checkpoints().Get(t.Context(), "connect/huggingface")
	if err != nil || !strings.Contains(string(cp), `"created_at":"2026-11-30T12:00:00Z"`) || !strings.Contains(string(cp), "acme/MoE-Chat-30B-A3B") {
		t.Fatalf("checkpoint %s %v", cp, err)
	}
}

// A 429 with Retry-After and a 503 are retried: the wait is what Retry-After says, and the
// poll then reads everything.
func TestHuggingFaceBacksOffOn429And5xxHonouringRetryAfter(t *testing.T) {
	t.Parallel()
	srv, _ := serve(t, "huggingface", func(w http.ResponseWriter, r *http.Request, n int) bool {
		switch n {
		case 1:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "rate limited", http.StatusTooManyRequests)
			return true
		case 3:
			http.Error(w, "upstream", http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	var waits []time.Duration
	var errs []error
	h := hf(srv.URL)
	h.Client.OnRetry = func(err error, wait time.Duration) { errs = append(errs, err); waits = append(waits, wait) }
	batch, err := h.Poll(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(batch.Signals) != 2 {
		t.Fatalf("%d signals after the retries, want 2", len(batch.Signals))
	}
	if len(waits) != 2 || waits[0] != time.Second || waits[1] <= 0 || waits[1] > 2*time.Second {
		t.Fatalf("waits %v (%v); want 1s as Retry-After said, then an exponential back-off", waits, errs)
	}
	if !errors.Is(errs[0], connect.ErrUnavailable) || !strings.Contains(errs[0].Error(), "429") || !strings.Contains(errs[1].Error(), "503") {
		t.Fatalf("retry errors %v", errs)
	}
}

// A response that is not what the Hub documents fails the poll with an error naming the
// field; a 404 from the listing is not retried.
func TestHuggingFaceChangedResponseNamesTheField(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, path, body, field string
	}{
		{"listing without createdAt", "/api/models", `[{"id":"acme/x","pipeline_tag":"text-generation"}]`, "[0].createdAt"},
		{"listing not sorted", "/api/models", `[{"id":"a/b","createdAt":"2026-11-20T00:00:00Z"},{"id":"a/c","createdAt":"2026-11-21T00:00:00Z"}]`, "[1].createdAt"},
		{"details without safetensors.total", "/api/models/acme/Dense-70B", `{"id":"acme/Dense-70B","safetensors":{"parameters":{"BF16":1}}}`, "safetensors.total"},
		{"experts per token missing", "/acme/MoE-Chat-30B-A3B/resolve/main/config.json", `{"num_experts":128,"hidden_size":2048}`, "num_experts_per_tok"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := serve(t, "huggingface", func(w http.ResponseWriter, r *http.Request, _ int) bool {
				if r.URL.Path == c.path && r.URL.Query().Get("cursor") == "" {
					_, _ = w.Write([]byte(c.body))
					return true
				}
				return false
			})
			_, err := hf(srv.URL).Poll(t.Context(), nil)
			var ce *connect.ChangedError
			if !errors.As(err, &ce) || ce.Field != c.field || !strings.Contains(err.Error(), "field "+c.field) {
				t.Fatalf("error %v; want one naming field %s", err, c.field)
			}
		})
	}
	srv, rec := serve(t, "nowhere", nil)
	if _, err := hf(srv.URL).Poll(t.Context(), nil); !errors.Is(err, connect.ErrNotFound) || len(rec.requests()) != 1 {
		t.Fatalf("listing answered 404: %v after %d requests; want ErrNotFound at once", err, len(rec.requests()))
	}
}

// Into a scenario that is not registered nothing is published: every signal is answered
// with the reason, and the checkpoint stays where it was, so a later poll reads them again.
func TestConnectRefusesAnUnregisteredScenario(t *testing.T) {
	t.Parallel()
	b, _ := registered(t)
	srv, _ := serve(t, "huggingface", nil)
	r, answers := runner(b, hf(srv.URL))
	r.Publisher.Scenario = "nobody"
	if _, err := r.Once(t.Context()); !errors.Is(err, connect.ErrNotTaken) {
		t.Fatalf("poll into an unregistered scenario: %v", err)
	}
	if len(*answers) != 2 || (*answers)[0].OK() || !strings.Contains((*answers)[0].Error, "scenario nobody is not registered") {
		t.Fatalf("answers %+v", *answers)
	}
	if _, err := b.Checkpoints().Get(t.Context(), "connect/huggingface"); err == nil {
		t.Fatal("the checkpoint moved although nothing was published")
	}
}
