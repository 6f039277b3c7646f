package conformance

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fatalRecorder stops at the first Fatalf, as testing.T does, and keeps its message.
type fatalRecorder struct {
	testing.TB
	msg string
}

type stopped struct{}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic(stopped{})
}

// A timeout says what was still wrong: the condition's last error.
func TestEventuallyFailsWithTheLastError(t *testing.T) {
	t.Parallel()
	r := &fatalRecorder{TB: t}
	n := 0
	func() {
		defer func() {
			if p := recover(); p != nil && p != (stopped{}) {
				panic(p)
			}
		}()
		Eventually(r, 100*time.Millisecond, "three demand events", func() error {
			n++
			return fmt.Errorf("%d of 3 demand events", min(n, 2))
		})
	}()
	if !strings.Contains(r.msg, "waiting for three demand events: 2 of 3 demand events") {
		t.Fatalf("timeout reads %q, want what was waited for and the last error", r.msg)
	}
	r.msg = ""
	Eventually(r, time.Second, "nothing", func() error { return nil })
	calls := 0
	Eventually(r, time.Second, "the second try", func() error {
		if calls++; calls < 2 {
			return errors.New("not yet")
		}
		return nil
	})
	if r.msg != "" || calls != 2 {
		t.Fatalf("a condition that held failed with %q after %d calls", r.msg, calls)
	}
}
