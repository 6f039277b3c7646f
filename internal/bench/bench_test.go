package bench_test

import (
	"testing"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/internal/bench"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
)

// A run reports as derived events exactly the demand the layers stored for its signals, with
// positive rates, and leaves the raw measurement's scenario deleted.
func TestRunReportsWhatThePipelineStored(t *testing.T) {
	t.Parallel()
	b, _ := conformance.NATS(t)
	rep, err := bench.Run(t.Context(), b, bench.Config{Signals: 50, Batch: 64, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Signals != 50 || rep.Derived <= rep.Signals {
		t.Fatalf("report counts %d signals and %d derived events, want 50 and more than 50", rep.Signals, rep.Derived)
	}
	if rep.RawPublish <= 0 || rep.RawConsume <= 0 || rep.Pipeline <= 0 || rep.SignalsPerSecond() <= 0 || rep.SignalsPerSecond() >= rep.Pipeline {
		t.Fatalf("rates: %+v, signals/s %v", rep, rep.SignalsPerSecond())
	}
	stored := 0
	err = broker.Each(t.Context(), b, broker.FeedOptions{Selector: broker.Selector{Scenario: bench.PipelineScenario, Kinds: []event.Kind{event.KindDemand}}, FromStart: true}, func(broker.Delivery) error {
		stored++
		return nil
	})
	if err != nil || stored != rep.Derived {
		t.Fatalf("the pipeline stored %d derived events (%v), the report says %d", stored, err, rep.Derived)
	}
	if _, err := b.Lag(t.Context(), bench.RawScenario, event.Chips); err == nil {
		t.Fatalf("scenario %s is still there after the run", bench.RawScenario)
	}
}
