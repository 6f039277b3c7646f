package broker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

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

// A scenario config with a negative setting or an ack wait below 100ms is refused, naming
// the field; the zero config (every default) is valid.
func TestScenarioConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (broker.ScenarioConfig{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	for want, c := range map[string]broker.ScenarioConfig{
		"dedup window": {DedupWindow: -time.Second},
		"max age":      {MaxAge: -time.Second},
		"max bytes":    {MaxBytes: -1},
		"replicas":     {Replicas: -1},
		"partitions":   {Partitions: -1},
		"ack wait":     {AckWait: 50 * time.Millisecond},
	} {
		if err := c.Validate(); !errors.Is(err, broker.ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want ErrInvalidConfig naming %s", c, err, want)
		}
	}
}
