package kafka_test

import (
	"encoding/json"
	"strings"
	"testing"

	kgo "github.com/segmentio/kafka-go"

	"github.com/layercake/cascade/internal/event"
)

// CloudEvents' subject is optional: a signal produced to a Kafka signal topic without one,
// structured or binary without ce_subject, takes data.region as publish and HTTP do, and its
// tree is derived; a subject that differs from data.region still goes to the dlq.
func TestKafkaSignalWithoutSubjectTakesDataRegion(t *testing.T) {
	t.Parallel()
	addrs := kafkaPipeline(t)
	structured := func(id string, subject any) kgo.Message {
		doc := map[string]any{"specversion": "1.0", "id": id, "source": "/kcat", "type": string(event.TypeAdoption), "time": "2025-02-01T00:00:00Z", "data": adoptionData("de")}
		if subject != nil {
			doc["subject"] = subject
		}
		raw, _ := json.Marshal(doc)
		return kgo.Message{Key: []byte(id), Value: raw}
	}
	data, _ := json.Marshal(adoptionData("de"))
	binary := kgo.Message{Key: []byte("nosub-binary"), Value: data, Headers: []kgo.Header{
		{Key: "ce_specversion", Value: []byte("1.0")},
		{Key: "ce_id", Value: []byte("nosub-binary")},
		{Key: "ce_source", Value: []byte("/kcat")},
		{Key: "ce_type", Value: []byte(event.TypeAdoption)},
		{Key: "ce_time", Value: []byte("2025-02-01T00:00:00Z")},
		{Key: "content-type", Value: []byte("application/json")},
	}}
	writeSignals(t, addrs, structured("nosub-structured", nil), binary, structured("nosub-differs", "eu"))
	per := gridPerAdoption()
	roots := map[string]int{}
	for _, e := range gridEvents(t, addrs, 2*per) {
		if e.Subject != "de" {
			t.Errorf("grid event %s: subject %q, want de", e.ID, e.Subject)
		}
		roots[e.CorrelationID]++
	}
	if roots["nosub-structured"] != per || roots["nosub-binary"] != per || len(roots) != 2 {
		t.Errorf("grid events by root: %v, want %d of each signal without a subject", roots, per)
	}
	n, cause := deadLetterCause(t, addrs)
	if n != 1 || !strings.Contains(cause, `subject: region "eu" differs from data.region "de"`) {
		t.Errorf("dead letters %d, the first saying %q", n, cause)
	}
}
