package bench_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/bench"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/kafka"
	"github.com/layercake/cascade/internal/broker/kafka/kafkatest"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
)

// A run reports as derived events exactly the demand the layers stored for its signals, its
// rates positive and consistent with each other, latencies for every paced signal whose tree
// reaches the grid, in order, and leaves the raw measurement's scenario deleted.
// Both ways of grouping the layers are measured: chained (the default, as run's) and
// per-layer.
func TestRunReportsWhatThePipelineStored(t *testing.T) {
	t.Parallel()
	for _, mode := range []consumers.Stages{"", consumers.PerLayer} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			testRunReports(t, mode, "")
		})
	}
	t.Run("with-view", func(t *testing.T) {
		t.Parallel()
		testRunReports(t, "", t.TempDir())
	})
}

func testRunReports(t *testing.T, mode consumers.Stages, viewDir string) {
	b, _ := conformance.NATS(t)
	rep, err := bench.Run(t.Context(), b, bench.Config{Signals: 50, Batch: 64, Rate: 500, Paced: 40, Stages: mode, ViewDir: viewDir, Log: zerolog.Nop(), Keep: true})
	if err != nil {
		t.Fatal(err)
	}
	want := cmp.Or(mode, consumers.Chained)
	r, p, l := rep.Raw, rep.Pipeline, rep.Latency
	if p.Signals != 50 || p.Derived <= p.Signals || p.Stages != string(want) || p.View != (viewDir != "") {
		t.Fatalf("pipeline %+v: want 50 signals deriving more than 50 events, %s stages, view %v", p, want, viewDir != "")
	}
	if r.Messages != p.Signals+p.Derived || r.MessageBytes < 200 || r.PublishPerSecond <= 0 || r.ConsumePerSecond <= 0 || r.PublishWindow <= 0 {
		t.Fatalf("raw %+v: want %d messages of a pipeline message's size, positive rates", r, p.Signals+p.Derived)
	}
	if p.Seconds <= 0 || p.SignalsPerSecond <= 0 || !near(p.SignalsPerSecond*p.Seconds, 50) || !near(p.StoredPerSecond*p.Seconds, float64(r.Messages)) || !near(p.RatioToRawPublish, p.StoredPerSecond/r.PublishPerSecond) {
		t.Fatalf("pipeline rates do not add up: %+v (raw %+v)", p, r)
	}
	if rep.CPUSecondsPer1000Signals <= 0 || rep.PeakRSSBytes < 1<<20 {
		t.Fatalf("cost: %v CPU s per 1000 signals, peak RSS %d bytes", rep.CPUSecondsPer1000Signals, rep.PeakRSSBytes)
	}
	if l == nil || l.Rate != 500 || l.AchievedRate <= 0 || l.Published != 40 || l.Signals == 0 || l.Signals > 40 || l.Derived <= 0 {
		t.Fatalf("latency %+v: want 40 paced signals at 500/s, some timed", l)
	}
	if !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) {
		t.Fatalf("latency quantiles out of order: %+v", l)
	}
	stored := 0
	err = broker.Each(t.Context(), b, broker.FeedOptions{Selector: broker.Selector{Scenario: bench.PipelineScenario, Kinds: []event.Kind{event.KindDemand}}, FromStart: true}, func(broker.Delivery) error {
		stored++
		return nil
	})
	if err != nil || stored != p.Derived+l.Derived {
		t.Fatalf("the pipeline stored %d derived events (%v), the report says %d + %d", stored, err, p.Derived, l.Derived)
	}
	if _, err := b.Lag(t.Context(), bench.RawScenario, event.Chips); err == nil {
		t.Fatalf("scenario %s is still there after the run", bench.RawScenario)
	}
	// Kept, the pipeline's scenario makes the next run refuse, by name, before it publishes.
	_, err = bench.Run(t.Context(), b, bench.Config{Signals: 5, Log: zerolog.Nop()})
	if !errors.Is(err, broker.ErrConflict) || !strings.Contains(err.Error(), "scenario "+bench.PipelineScenario+" is bound") {
		t.Fatalf("a run where %s is kept: %v, want refused naming it", bench.PipelineScenario, err)
	}
}

// Rate 0 skips the latency phase; a CPU profile of the max-rate pass is written when asked
// for; stages other than chained and per-layer are refused by name.
func TestRunWithoutPacedPhaseAndStagesRefused(t *testing.T) {
	t.Parallel()
	b, _ := conformance.NATS(t)
	if _, err := bench.Run(t.Context(), b, bench.Config{Signals: 5, Stages: "sideways", Log: zerolog.Nop()}); err == nil || !strings.Contains(err.Error(), "sideways") {
		t.Fatalf("stages sideways: %v, want refused by name", err)
	}
	var prof bytes.Buffer
	rep, err := bench.Run(t.Context(), b, bench.Config{Signals: 20, Batch: 16, Log: zerolog.Nop(), CPUProfile: &prof})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Latency != nil || rep.Pipeline.Signals != 20 {
		t.Fatalf("report %+v: want no latency phase", rep)
	}
	if b := prof.Bytes(); len(b) < 64 || b[0] != 0x1f || b[1] != 0x8b { // pprof writes gzipped protobuf
		t.Fatalf("CPU profile: %d bytes, want a gzipped pprof profile", len(b))
	}
}

// Latencies travel in JSON as fractional milliseconds and come back the same.
func TestMillisJSON(t *testing.T) {
	t.Parallel()
	in := bench.Latency{P50: bench.Millis(1500 * time.Microsecond), Max: bench.Millis(12 * time.Millisecond)}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil || raw["p50_ms"] != 1.5 || raw["max_ms"] != 12.0 {
		t.Fatalf("%s: p50_ms %v, max_ms %v", b, raw["p50_ms"], raw["max_ms"])
	}
	var out bench.Latency
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Fatalf("round trip: %+v, %v", out, err)
	}
}

func near(a, b float64) bool { return a > b*0.999 && a < b*1.001 }

// On Kafka the same run reports the same structure, paced signals timed on the grid feed, and
// it removes both its scenarios: a second run on the same cluster, which publishes the same
// signals again, times as many (a pipeline scenario left behind would hold them already, and
// its stages would drop them as duplicates).
func TestRunOnKafka(t *testing.T) {
	t.Parallel()
	b, err := kafka.Connect(t.Context(), kafka.Options{Brokers: kafkatest.Cluster(t), Logger: zerolog.Nop(), BatchTimeout: time.Millisecond, HeartbeatInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	timed := 0
	for run := range 2 {
		rep, err := bench.Run(t.Context(), b, bench.Config{Signals: 20, Batch: 16, Rate: 200, Paced: 10, ViewDir: t.TempDir(), Log: zerolog.Nop()})
		if err != nil {
			t.Fatalf("run %d: %v", run+1, err)
		}
		if rep.Raw.Messages != rep.Pipeline.Signals+rep.Pipeline.Derived || rep.Pipeline.StoredPerSecond <= 0 || rep.Latency == nil || rep.Latency.Published != 10 || rep.Latency.Signals == 0 || rep.Latency.P50 <= 0 {
			t.Fatalf("report of run %d on Kafka: %+v %+v", run+1, rep, rep.Latency)
		}
		if run == 0 {
			timed = rep.Latency.Signals
		} else if rep.Latency.Signals != timed {
			t.Fatalf("the second run timed %d paced signals, the first %d", rep.Latency.Signals, timed)
		}
		if _, err := b.Registry().Get(t.Context(), bench.PipelineScenario); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("after run %d, scenario %s: %v, want it removed", run+1, bench.PipelineScenario, err)
		}
	}
}

// noDelete is a broker that does not let the pipeline's scenario be deleted (an outside
// broker's permissions, say).
type noDelete struct{ broker.Broker }

func (b noDelete) DeleteScenario(ctx context.Context, s string) error {
	if s == bench.PipelineScenario {
		return errors.New("permission denied")
	}
	return b.Broker.DeleteScenario(ctx, s)
}

// A run whose clean-up fails still returns its whole report, with an error that says which
// scenario it left.
func TestRunReportsWhenCleanUpFails(t *testing.T) {
	t.Parallel()
	b, _ := conformance.NATS(t)
	rep, err := bench.Run(t.Context(), noDelete{b}, bench.Config{Signals: 10, Batch: 16, Log: zerolog.Nop()})
	if !errors.Is(err, bench.ErrCleanup) || !strings.Contains(err.Error(), bench.PipelineScenario+": ") || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("error %v: want ErrCleanup naming %s and the cause", err, bench.PipelineScenario)
	}
	if rep.Pipeline.Signals != 10 || rep.Pipeline.Seconds <= 0 || rep.Raw.PublishPerSecond <= 0 {
		t.Fatalf("report %+v: want the measurement whole", rep)
	}
}
