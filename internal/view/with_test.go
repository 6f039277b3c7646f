package view

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"
)

// A stage's question (HeldAt) is answered while the follower is inside a use of the
// database, as it is for the whole of a commit's sync: uses share the lock, only opening and
// closing take it alone.
func TestHeldAtDuringACommit(t *testing.T) {
	t.Parallel()
	v := &View{Dir: t.TempDir(), Log: zerolog.Nop()}
	t.Cleanup(func() { _ = v.Close() })
	inside, release := make(chan struct{}), make(chan struct{})
	go func() {
		_ = v.with(func(*pebble.DB) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	defer close(release)
	answered := make(chan error, 1)
	go func() {
		_, err := v.HeldAt(t.Context(), "base", []string{"sig-1"}, time.Time{})
		answered <- err
	}()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("HeldAt waited for another use of the view to end")
	}
}
