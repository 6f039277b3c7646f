package conformance

import (
	"errors"
	"strings"
	"testing"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
)

// Checkpoints: a name never written is not found; a Put is seen by Get from every connection
// and by a connection opened after it (a restarted connector); a later Put replaces it; names
// are kept apart; a bad name or an empty or oversized value is refused before the broker is
// asked, with its class.
func testCheckpoints(t *testing.T, h Harness) {
	connect := h.Fresh(t)
	b, other := connect(t), connect(t)
	ctx := t.Context()
	if _, err := b.Checkpoints().Get(ctx, "connect/huggingface"); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("get of a checkpoint never written: %v, want ErrNotFound", err)
	}
	if err := b.Checkpoints().Put(ctx, "connect/huggingface", []byte(`{"created_at":"2026-01-01T00:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	if err := b.Checkpoints().Put(ctx, "connect/epoch", []byte(`{"done":1}`)); err != nil {
		t.Fatal(err)
	}
	if got, err := other.Checkpoints().Get(ctx, "connect/huggingface"); err != nil || string(got) != `{"created_at":"2026-01-01T00:00:00Z"}` {
		t.Fatalf("get from another connection: %q %v", got, err)
	}
	if err := other.Checkpoints().Put(ctx, "connect/huggingface", []byte(`{"created_at":"2026-02-01T00:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Checkpoints().Get(ctx, "connect/huggingface"); err != nil || string(got) != `{"created_at":"2026-02-01T00:00:00Z"}` {
		t.Fatalf("get after another connection replaced it: %q %v", got, err)
	}
	restarted := connect(t)
	if got, err := restarted.Checkpoints().Get(ctx, "connect/epoch"); err != nil || string(got) != `{"done":1}` {
		t.Fatalf("get from a new connection: %q %v", got, err)
	}
	if err := b.Checkpoints().Put(ctx, "bad name", []byte("x")); !errors.Is(err, event.ErrInvalid) {
		t.Fatalf("put under a name with a space: %v, want event.ErrInvalid", err)
	}
	if err := b.Checkpoints().Put(ctx, "connect/empty", nil); !errors.Is(err, broker.ErrPermanent) {
		t.Fatalf("put of an empty value: %v, want ErrPermanent", err)
	}
	big := []byte(strings.Repeat("x", broker.MaxCheckpointBytes+1))
	if err := b.Checkpoints().Put(ctx, "connect/big", big); !errors.Is(err, broker.ErrPermanent) {
		t.Fatalf("put of an oversized value: %v, want ErrPermanent", err)
	}
}
