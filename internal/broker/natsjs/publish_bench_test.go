package natsjs_test

import (
	"strconv"
	"testing"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
)

// BenchmarkPublishAsync publishes one signal's worth of derived events (22 messages of the
// pipeline's mean size, 575 B, each with its id) per op and waits for their PubAcks, on an
// embedded server with the file store: allocs/op is what the adapter and nats.go allocate
// on the stages' publish path.
func BenchmarkPublishAsync(b *testing.B) {
	br, _ := conformance.NATS(b)
	if err := br.EnsureScenario(b.Context(), "bench", broker.ScenarioConfig{}); err != nil {
		b.Fatal(err)
	}
	subj := event.DemandSubject("bench", event.Chips, "eu")
	data := make([]byte, 575)
	const perOp = 22
	msgs := make([]broker.Message, perOp)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for j := range msgs {
			msgs[j] = broker.Message{Subject: subj, ID: strconv.Itoa(i*perOp + j), Data: data}
		}
		p := br.PublishAsync(b.Context(), msgs)
		<-p.Done()
		if err := p.Err(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perOp), "ns/msg")
}
