package broker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/layercake/cascade/internal/broker"
)

// One rule decides what is retried: the broker not answering, or not in time, unless the
// adapter marked the error a refusal of the request itself.
func TestTransient(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{fmt.Errorf("publish: %w: no responders", broker.ErrUnavailable), true},
		{fmt.Errorf("fetch: %w", context.DeadlineExceeded), true},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), true},
		{fmt.Errorf("%w: %w", broker.ErrPermanent, context.DeadlineExceeded), false},
		{fmt.Errorf("publish: %w: message too large", broker.ErrPermanent), false},
		{fmt.Errorf("publish: %w", broker.ErrClosed), false},
		{fmt.Errorf("get: %w", broker.ErrNotFound), false},
		{errors.New("something else"), false},
	} {
		if got := broker.Transient(c.err); got != c.want {
			t.Errorf("Transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
