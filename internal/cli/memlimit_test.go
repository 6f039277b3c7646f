package cli_test

import (
	"context"
	"fmt"
	"math"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/conformance"
)

// --memory-limit sets the process's soft memory limit when consume (or run) starts: 384MiB
// by default, GOMEMLIMIT instead when that is set and the flag is not given, 0 or off for
// none; a bad size exits 2 naming the flag. Under a limit GOGC is 200 unless GOGC is set;
// without one it stays. Not parallel: the limit and GOGC are the whole process's.
func TestMemoryLimitFlag(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	origGC := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetMemoryLimit(orig); debug.SetGCPercent(origGC) })
	gc := func() int { p := debug.SetGCPercent(100); debug.SetGCPercent(p); return p }
	url := conformance.NATSServer(t).ClientURL()
	const sentinel = 123 << 20
	for _, c := range []struct {
		args   []string
		env    string
		gogc   string
		want   int64
		wantGC int
	}{
		{nil, "", "", 384 << 20, 200},
		{nil, "", "150", 384 << 20, 100}, // the runtime applied GOGC at start; it stays
		{[]string{"--memory-limit", "300MiB"}, "", "", 300 << 20, 200},
		{[]string{"--memory-limit", "1g"}, "", "", 1 << 30, 200},
		{[]string{"--memory-limit", "off"}, "", "", math.MaxInt64, 100},
		{[]string{"--memory-limit", "0"}, "700MiB", "", math.MaxInt64, 100},
		{nil, "700MiB", "", sentinel, 200}, // the runtime applied GOMEMLIMIT at start; it stays
	} {
		debug.SetMemoryLimit(sentinel)
		debug.SetGCPercent(100)
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() {
			run(ctx, "", map[string]string{"CASCADE_NATS_URL": url, "GOMEMLIMIT": c.env, "GOGC": c.gogc}, append([]string{"consume", "--layer", "chips"}, c.args...)...)
		})
		if c.want != sentinel {
			conformance.Eventually(t, 5*time.Second, "memory limit", func() error {
				if got := debug.SetMemoryLimit(-1); got != c.want {
					return fmt.Errorf("limit %d, want %d", got, c.want)
				}
				return nil
			})
		}
		cancel()
		wg.Wait() // the command has run its start, limit included
		if got := debug.SetMemoryLimit(-1); got != c.want {
			t.Errorf("consume %v with GOMEMLIMIT=%q: limit %d, want %d", c.args, c.env, got, c.want)
		}
		if got := gc(); got != c.wantGC {
			t.Errorf("consume %v with GOMEMLIMIT=%q GOGC=%q: GOGC %d, want %d", c.args, c.env, c.gogc, got, c.wantGC)
		}
	}
	for _, bad := range []string{"12parsecs", "-5MiB", ""} {
		code, _, stderr := run(t.Context(), "", map[string]string{"CASCADE_NATS_URL": url}, "consume", "--layer", "chips", "--memory-limit", bad)
		if code != 2 || !strings.Contains(stderr, "--memory-limit") {
			t.Errorf("--memory-limit %q: exit %d, %q; want 2 naming the flag", bad, code, stderr)
		}
	}
}
