package cli

import (
	"math"
	"runtime/debug"
	"strings"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"
)

// DefaultMemoryLimit is the soft memory limit of run and consume: enough for the embedded
// broker's block caches and de-dup ids at full speed with the default storage settings, and
// well under 512 MiB of resident memory, so the collector works harder instead of letting the
// heap double.
const DefaultMemoryLimit = "384MiB"

// gcPercent is the collector's GOGC under a memory limit, where GOGC is not set: the limit
// bounds the heap, so the collector need not also run each time a small heap doubles. In
// `cascade bench` it cut CPU per signal by a tenth and the p99 from ~7 to ~4.4 ms, for ~60 MiB
// more at 10,000 signals; a 100k replay peaked the same (docs/performance.md).
const gcPercent = 200

// parseMemoryLimit reads a --memory-limit value: a size with an optional binary unit (384MiB,
// 1g, 800000000), or 0 or off for none, which is reported as math.MaxInt64 (Go's "no limit").
func parseMemoryLimit(v string) (int64, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "0", "off", "none":
		return math.MaxInt64, nil
	}
	n, err := units.RAMInBytes(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0, usageError("--memory-limit %q: want a size such as 384MiB or 1GiB, or 0/off for none", v)
	}
	return n, nil
}

// applyMemoryLimit sets the process's soft memory limit from --memory-limit; when the flag was
// not given and GOMEMLIMIT is set, the Go runtime has already applied that and it stays.
// Under a limit, and unless GOGC is set, the collector's GOGC is gcPercent.
func (s *serveFlags) applyMemoryLimit(cmd *cobra.Command, getenv func(string) string) error {
	n, err := parseMemoryLimit(s.memLimit)
	if err != nil {
		return err
	}
	if changed(cmd, "memory-limit") || getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(n)
	}
	if getenv("GOGC") == "" && debug.SetMemoryLimit(-1) != math.MaxInt64 {
		debug.SetGCPercent(gcPercent)
	}
	return nil
}
