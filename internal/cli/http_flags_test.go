package cli_test

import (
	"strings"
	"testing"
)

// An HTTP limit out of range (negative, or zero where zero means nothing sensible) is refused
// before anything starts, naming its flag; --http-signal-rate 0 alone means no limit.
func TestRunRefusesNegativeHTTPLimits(t *testing.T) {
	t.Parallel()
	for _, flag := range []string{"--http-read-timeout=-1s", "--http-write-timeout=-1s", "--http-idle-timeout=-1s", "--http-max-conns=-1", "--http-max-feeds=-1", "--http-signal-burst=-1",
		"--http-read-timeout=0s", "--http-write-timeout=0s", "--http-idle-timeout=0s", "--http-max-conns=0", "--http-max-feeds=0", "--http-signal-burst=0", "--http-max-body=0", "--http-max-body=-5", "--http-signal-rate=-1"} {
		code, _, stderr := run(t.Context(), "", nil, "run", "--data-dir", t.TempDir(), "--nats-listen", "127.0.0.1:-1", flag)
		name := strings.SplitN(flag, "=", 2)[0]
		if code != 2 || !strings.Contains(stderr, name) {
			t.Errorf("run %s: exit %d, stderr %q; want 2 naming %s", flag, code, stderr, name)
		}
	}
}
