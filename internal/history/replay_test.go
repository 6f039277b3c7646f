package history

import (
	"slices"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/tree"
)

// chipsOf expands every bundled signal whose day is in year with the default coefficients and
// returns the accelerators its chips events name, by record.
func chipsOf(t *testing.T, year int) map[string][]string {
	t.Helper()
	evs, err := Signals()
	if err != nil {
		t.Fatal(err)
	}
	c := coefficients.Default()
	out := map[string][]string{}
	for _, ev := range evs {
		if ev.Time.Year() != year || (ev.Type != event.TypeAdoption && ev.Type != event.TypeRelease) {
			continue
		}
		p, err := event.DecodePayload(ev.Type, ev.Data)
		if err != nil {
			t.Fatal(err)
		}
		n, err := tree.Expand(t.Context(), c, ev, p)
		if err != nil {
			t.Fatalf("%s: %v", ev.ID, err)
		}
		var walk func(*tree.Node)
		walk = func(n *tree.Node) {
			if ch, ok := n.Payload.(*event.DemandChips); ok && !slices.Contains(out[ev.ID], ch.Accelerator) {
				out[ev.ID] = append(out[ev.ID], ch.Accelerator)
			}
			for _, x := range n.Children {
				walk(x)
			}
		}
		walk(n)
	}
	return out
}

// The bundled history replays with the fleet of its time: 2023's demand lands on A100-, H100-
// and H800-era accelerators, never on Blackwell, which shipped from late 2024.
func TestHistoryReplaysWithTheFleetOfItsTime(t *testing.T) {
	t.Parallel()
	era2023 := []string{"a100", "a800", "h100", "h800"}
	got := chipsOf(t, 2023)
	if len(got) == 0 {
		t.Fatal("no 2023 record derives chips")
	}
	sawH100 := false
	for id, accs := range got {
		for _, a := range accs {
			if !slices.Contains(era2023, a) {
				t.Errorf("%s (2023) lands on %s, want only %v", id, a, era2023)
			}
			sawH100 = sawH100 || a == "h100" || a == "h800"
		}
	}
	if !sawH100 {
		t.Error("no 2023 record lands on Hopper (H100/H800)")
	}
	if accs := got["hist-2023-11-06-chatgpt-100m"]; !slices.Equal(accs, []string{"a100", "h100"}) {
		t.Errorf("ChatGPT's 100M weekly users (2023-11) land on %v, want [a100 h100]", accs)
	}
	blackwell := false
	for _, accs := range chipsOf(t, 2025) {
		blackwell = blackwell || slices.Contains(accs, "b200") || slices.Contains(accs, "gb200")
	}
	if !blackwell {
		t.Error("no 2025 record lands on Blackwell")
	}
}

// No record, injected or derived, puts demand on an accelerator before its availability date:
// every chips event of the replayed history is at or after its accelerator's available_from.
func TestNoRecordUsesAnAcceleratorBeforeItShipped(t *testing.T) {
	t.Parallel()
	evs, err := Signals()
	if err != nil {
		t.Fatal(err)
	}
	c := coefficients.Default()
	checked := 0
	var walk func(id string, n *tree.Node)
	walk = func(id string, n *tree.Node) {
		if ch, ok := n.Payload.(*event.DemandChips); ok {
			checked++
			acc := c.At(n.Event.Time).Chips.Accelerators[ch.Accelerator]
			if acc.AvailableFrom != "" {
				from, err := time.Parse(coefficients.DateLayout, acc.AvailableFrom)
				if err != nil {
					t.Fatalf("%s: available_from %q: %v", ch.Accelerator, acc.AvailableFrom, err)
				}
				if n.Event.Time.Before(from) {
					t.Errorf("%s: %s on %s, before it shipped (%s)", id, ch.Accelerator, n.Event.Time.Format(time.DateOnly), acc.AvailableFrom)
				}
			}
		}
		for _, x := range n.Children {
			walk(id, x)
		}
	}
	for _, ev := range evs {
		p, err := event.DecodePayload(ev.Type, ev.Data)
		if err != nil {
			t.Fatal(err)
		}
		n, err := tree.Expand(t.Context(), c, ev, p)
		if err != nil {
			t.Fatalf("%s: %v", ev.ID, err)
		}
		walk(ev.ID, n)
	}
	if checked == 0 {
		t.Fatal("no chips event checked")
	}
}
