package view

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// BenchmarkHeldAt is a stage's question about one batch: the own ids of its inputs (half
// held, half not) in a view of 20,000 signals and what they derive, in the process; 256 at
// the maximum rate, 2 at a moderate one (a batch holds what came since the last fetch).
func BenchmarkHeldAt(b *testing.B) {
	dir := b.TempDir()
	n := synthetic(b, dir, 20_000)
	v := &View{Dir: dir, Log: zerolog.Nop()}
	defer func() { _ = v.Close() }()
	for _, size := range []int{256, 2} {
		ids := make([]string, size)
		for i := range ids {
			ids[i] = "syn-" + strconv.Itoa(i*37)
			if i%2 == 1 {
				ids[i] = "absent-" + strconv.Itoa(i)
			}
		}
		b.Run("ids="+strconv.Itoa(size), func(b *testing.B) {
			b.ReportMetric(float64(n), "events")
			for b.Loop() {
				if _, err := v.HeldAt(context.Background(), "base", ids, time.Time{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
