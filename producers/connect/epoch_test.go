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

// The Epoch connector reads the recorded CSV: a release for each language or multimodal
// model with a parameter count (Llama 3.1-405B, DeepSeek-V3; GPT-4 has none, AlphaGo Zero
// plays Go), a training signal of compute / time FLOP/s from the publication date less the
// training time and its retraction at the publication date, priced at the start, for each model with both
// (AlphaGo Zero's in gb), and an answer naming the column of each bad row. Polling again
// publishes nothing: only the bad rows are answered again.
func TestEpochReleasesAndTrainingWithItsRetraction(t *testing.T) {
	t.Parallel()
	b, _ := registered(t)
	srv, _ := serve(t, "epoch", nil)
	r, answers := runner(b, &connect.Epoch{BaseURL: srv.URL, Client: &connect.Client{}})
	if _, err := r.Once(t.Context()); !errors.Is(err, connect.ErrNotTaken) {
		t.Fatalf("first poll: %v; want the two bad rows refused", err)
	}
	byID := map[string]connect.Answer{}
	var bad []connect.Answer
	for _, a := range *answers {
		if a.OK() {
			byID[a.ID] = a
		} else {
			bad = append(bad, a)
		}
	}
	want := []string{
		"epoch:Llama 3.1-405B:release", "epoch:Llama 3.1-405B:training", "epoch:Llama 3.1-405B:training-end",
		"epoch:GPT-4:training", "epoch:GPT-4:training-end",
		"epoch:DeepSeek-V3:release", "epoch:DeepSeek-V3:training", "epoch:DeepSeek-V3:training-end",
		"epoch:AlphaGo Zero:training", "epoch:AlphaGo Zero:training-end",
	}
	for _, id := range want {
		if _, ok := byID[id]; !ok {
			t.Errorf("no answer for %s", id)
		}
	}
	if len(byID) != len(want) || len(bad) != 2 {
		t.Fatalf("%d taken, %d refused; answers %+v", len(byID), len(bad), *answers)
	}
	if bad[0].Line != 6 || bad[0].Field != "Publication date" || bad[1].Line != 7 || bad[1].Field != "Parameters" {
		t.Fatalf("bad rows answered %+v; want line 6 Publication date and line 7 Parameters", bad)
	}
	got := stored(t, b)
	if len(got) != len(want) {
		t.Fatalf("%d signals stored, want %d", len(got), len(want))
	}
	var rel event.Release
	ev := got["epoch:Llama 3.1-405B:release"]
	if err := json.Unmarshal(ev.Data, &rel); err != nil {
		t.Fatal(err)
	}
	if rel.ParamsTotal != 405e9 || rel.ParamsActive != 405e9 || !*rel.OpenWeights || *rel.Reasoning ||
		!ev.Time.Equal(time.Date(2024, 7, 23, 0, 0, 0, 0, time.UTC)) || ev.SourceURL != srv.URL+connect.EpochPath {
		t.Fatalf("Llama release %+v at %s from %q", rel, ev.Time, ev.SourceURL)
	}
	infra := func(id string) (*event.Event, event.DemandInfrastructure) {
		ev := got[id]
		var d event.DemandInfrastructure
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		return ev, d
	}
	on, d := infra("epoch:Llama 3.1-405B:training")
	off, end := infra("epoch:Llama 3.1-405B:training-end")
	flops := 3.8e25 / (1928 * 3600)
	pub := time.Date(2024, 7, 23, 0, 0, 0, 0, time.UTC)
	if d.Workload != event.Training || d.Region != "us" || math.Abs(d.FlopPerS-flops) > 1e-9*flops || end.FlopPerS != -d.FlopPerS ||
		!on.Time.Equal(pub.Add(-1928*time.Hour)) || !off.Time.Equal(pub) || d.PricedAt != nil || end.PricedAt == nil || !end.PricedAt.Equal(on.Time) {
		t.Fatalf("training %+v at %s, end %+v at %s; want %.4g FLOP/s from %s to %s", d, on.Time, end, off.Time, flops, pub.Add(-1928*time.Hour), pub)
	}
	if _, d := infra("epoch:AlphaGo Zero:training"); d.Region != "gb" {
		t.Fatalf("AlphaGo Zero trained in %s, want gb", d.Region)
	}
	if _, d := infra("epoch:DeepSeek-V3:training"); d.Region != "cn" {
		t.Fatalf("DeepSeek-V3 trained in %s, want cn", d.Region)
	}

	*answers = nil
	if _, err := r.Once(t.Context()); !errors.Is(err, connect.ErrNotTaken) {
		t.Fatalf("second poll: %v", err)
	}
	if len(*answers) != 2 || (*answers)[0].OK() || (*answers)[1].OK() {
		t.Fatalf("second poll answered %+v; want only the two bad rows again", *answers)
	}
	if n := len(stored(t, b)); n != len(want) {
		t.Fatalf("%d signals after polling again, want still %d", n, len(want))
	}
}

// A CSV whose header lacks a column the connector reads fails the poll naming the column.
func TestEpochChangedHeaderNamesTheColumn(t *testing.T) {
	t.Parallel()
	srv, _ := serve(t, "epoch", func(w http.ResponseWriter, _ *http.Request, _ int) bool {
		_, _ = w.Write([]byte("Model,Publication date,Parameters,Training compute (FLOP)\nX,2025-01-01,1,1\n"))
		return true
	})
	_, err := (&connect.Epoch{BaseURL: srv.URL, Client: &connect.Client{}}).Poll(t.Context(), nil)
	var ce *connect.ChangedError
	if !errors.As(err, &ce) || ce.Field != "Training time (hours)" || !strings.Contains(err.Error(), `"Training time (hours)"`) {
		t.Fatalf("error %v; want one naming the column Training time (hours)", err)
	}
}
