package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
)

// An error a responder returns reaches the requester, in another connection, with its text
// and its class; nobody serving a subject is ErrNoResponders.
func TestRequestKeepsTheErrorClass(t *testing.T) {
	t.Parallel()
	url := startServer(t)
	server, client := connect(t, url), connect(t, url)
	classes := map[string]error{"no_event": broker.ErrNoEvent, "not_found": broker.ErrNotFound, "invalid": event.ErrInvalid, "conflict": broker.ErrConflict, "unavailable": broker.ErrUnavailable}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		_ = server.Respond(ctx, "test.classes", func(_ context.Context, req []byte) ([]byte, error) {
			if c, ok := classes[string(req)]; ok {
				return nil, fmt.Errorf("asked for %s: %w", req, c)
			}
			return nil, errors.New("plain")
		})
	}()
	conformance.Eventually(t, 5*time.Second, "the responder", func() error {
		_, err := client.Request(t.Context(), "test.classes", []byte("plain"))
		if err == nil || errors.Is(err, broker.ErrNoResponders) {
			return fmt.Errorf("the plain request answered %v", err)
		}
		return nil
	})
	for code, want := range classes {
		_, err := client.Request(t.Context(), "test.classes", []byte(code))
		if !errors.Is(err, want) || err.Error() != "asked for "+code+": "+want.Error() {
			t.Errorf("%s: got %v, want an error matching %v", code, err, want)
		}
		for other, c := range classes {
			if other != code && errors.Is(err, c) && !errors.Is(want, c) {
				t.Errorf("%s: %v also matches %v", code, err, c)
			}
		}
	}
	if _, err := client.Request(t.Context(), "test.classes", []byte("plain")); err == nil || errors.Is(err, broker.ErrUnavailable) || err.Error() != "plain" {
		t.Errorf("plain error: %v", err)
	}
	if _, err := client.Request(t.Context(), "test.nobody", nil); !errors.Is(err, broker.ErrNoResponders) {
		t.Errorf("nobody serving: %v, want ErrNoResponders", err)
	}
}
