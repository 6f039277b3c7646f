package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	kafkasarama "github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/rs/zerolog"
	kgo "github.com/segmentio/kafka-go"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/kafka"
	"github.com/layercake/cascade/internal/broker/kafka/kafkatest"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
)

// kafkaPipeline runs every layer of base on a fresh kfake cluster and returns its addresses.
func kafkaPipeline(t *testing.T) []string {
	t.Helper()
	addrs := kafkatest.Cluster(t)
	b := connect(t, addrs)
	if err := consumers.BindScenario(t.Context(), b, "base", coefficients.Default(), broker.ScenarioConfig{AckWait: time.Second}); err != nil {
		t.Fatal(err)
	}
	r := consumers.New(b, zerolog.Nop(), consumers.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.Serve(ctx, event.ConsumerLayers, 100*time.Millisecond) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return addrs
}

// adoptionData is the data of an adoption signal in region.
func adoptionData(region string) map[string]any {
	return map[string]any{"app": "a", "category": "chat", "region": region, "users_delta": 1000}
}

// sdkEvent is an adoption signal built with the CloudEvents SDK.
func sdkEvent(t *testing.T, id, region string) cloudevents.Event {
	t.Helper()
	e := cloudevents.NewEvent()
	e.SetID(id)
	e.SetSource("/sdk-test")
	e.SetType(string(event.TypeAdoption))
	e.SetSubject(region)
	e.SetTime(time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC))
	if err := e.SetData("application/json; charset=utf-8", adoptionData(region)); err != nil {
		t.Fatal(err)
	}
	return e
}

// writeSignals writes records straight onto scenario base's application signal topic, as
// any Kafka client would.
func writeSignals(t *testing.T, addrs []string, ms ...kgo.Message) {
	t.Helper()
	w := &kgo.Writer{Addr: kgo.TCP(addrs...), Topic: "cascade.base.signal.application", RequiredAcks: kgo.RequireAll}
	defer w.Close()
	if err := w.WriteMessages(t.Context(), ms...); err != nil {
		t.Fatal(err)
	}
}

// gridEvents reads scenario base's grid topic until want records arrived and decodes them.
func gridEvents(t *testing.T, addrs []string, want int) []event.Event {
	t.Helper()
	var out []event.Event
	for _, m := range readRecords(t, addrs, "cascade.base.demand.grid", want) {
		var e event.Event
		if err := json.Unmarshal(m.Value, &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// deadLetterCause reads scenario base's application dead-letter topic until a record arrived
// and returns how many there are and the first one's Cascade-Error header.
func deadLetterCause(t *testing.T, addrs []string) (n int, cause string) {
	t.Helper()
	dlq := readRecords(t, addrs, "cascade.base.dlq.application", 1)
	for _, h := range dlq[0].Headers {
		if h.Key == "Cascade-Error" {
			cause = string(h.Value)
		}
	}
	return len(dlq), cause
}

// readRecords reads topic from the start until want records arrived, or fails.
func readRecords(t *testing.T, addrs []string, topic string, want int) []kgo.Message {
	t.Helper()
	var out []kgo.Message
	conformance.Eventually(t, 30*time.Second, topic+" to hold the derived records", func() error {
		out = out[:0]
		for p := range 6 {
			r := kgo.NewReader(kgo.ReaderConfig{Brokers: addrs, Topic: topic, Partition: p, MaxWait: 50 * time.Millisecond})
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					break
				}
				out = append(out, m)
			}
			cancel()
			_ = r.Close()
		}
		if len(out) < want {
			return fmt.Errorf("%d of %d records", len(out), want)
		}
		return nil
	})
	return out
}

// Signals reach cascade on Kafka as the CloudEvents SDK sends them (binary mode, its default,
// and structured mode), and every record cascade writes carries content-type
// application/cloudevents+json and decodes with the SDK as a structured-mode event.
func TestKafkaCloudEventsBindings(t *testing.T) {
	t.Parallel()
	addrs := kafkaPipeline(t)
	topic := "cascade.base.signal.application"

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_1_0_0
	sender, err := kafkasarama.NewSender(addrs, cfg, topic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sender.Close(context.Background()) })
	client, err := cloudevents.NewClient(sender)
	if err != nil {
		t.Fatal(err)
	}
	if res := client.Send(t.Context(), sdkEvent(t, "sdk-binary", "us")); cloudevents.IsUndelivered(res) {
		t.Fatalf("binary send: %v", res)
	}
	if res := client.Send(binding.WithForceStructured(t.Context()), sdkEvent(t, "sdk-structured", "eu")); cloudevents.IsUndelivered(res) {
		t.Fatalf("structured send: %v", res)
	}

	// Each adoption gives one grid event per accelerator of the fleet in force.
	per := gridPerAdoption()
	roots := map[string]int{}
	for _, m := range readRecords(t, addrs, "cascade.base.demand.grid", 2*per) {
		headers := map[string][]byte{}
		ct := ""
		for _, h := range m.Headers {
			headers[h.Key] = h.Value
			if h.Key == kafka.HeaderContentType {
				ct = string(h.Value)
			}
		}
		if ct != "application/cloudevents+json" {
			t.Errorf("record %s: content-type %q, want application/cloudevents+json", m.Key, ct)
		}
		msg := kafkasarama.NewMessage(m.Value, ct, headers)
		if enc := msg.ReadEncoding(); enc != binding.EncodingStructured {
			t.Errorf("record %s: the SDK reads it as %v, want structured", m.Key, enc)
		}
		e, err := binding.ToEvent(t.Context(), msg)
		if err != nil {
			t.Fatalf("SDK decode of %s: %v", m.Value, err)
		}
		var corr string
		if err := e.ExtensionAs("correlationid", &corr); err != nil {
			t.Fatalf("%s: %v", e, err)
		}
		if e.Type() != string(event.TypeDemandGrid) {
			t.Errorf("record %s: type %s", m.Key, e.Type())
		}
		roots[corr]++
	}
	for _, id := range []string{"sdk-binary", "sdk-structured"} {
		if roots[id] != per {
			t.Errorf("signal %s: %d grid events, want %d (roots seen %v)", id, roots[id], per, roots)
		}
	}
}

// A CloudEvent produced as kcat does (the JSON as the value, no headers at all) is routed by
// its type and data.region, as cascade publish routes it; one whose type another layer takes
// is dead-lettered, the error naming its type.
func TestKafkaRecordsWithoutCascadeHeaders(t *testing.T) {
	t.Parallel()
	addrs := kafkaPipeline(t)
	record := func(id, typ string, data map[string]any) kgo.Message {
		raw, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": id, "source": "/kcat", "type": typ, "subject": data["region"], "time": "2025-02-01T00:00:00Z", "data": data})
		return kgo.Message{Key: []byte(id), Value: raw}
	}
	writeSignals(t, addrs,
		record("kcat-1", string(event.TypeAdoption), adoptionData("de")),
		record("kcat-chips", string(event.TypeDemandChips), map[string]any{"region": "de", "accelerator": "h100", "units": 10}),
	)
	per := gridPerAdoption()
	roots := map[string]int{}
	for _, e := range gridEvents(t, addrs, per) {
		roots[e.CorrelationID]++
	}
	if roots["kcat-1"] != per || len(roots) != 1 {
		t.Errorf("grid events by root: %v, want %d of kcat-1", roots, per)
	}
	n, cause := deadLetterCause(t, addrs)
	if n != 1 || !strings.Contains(cause, "cascade.demand.chips.v1 is not accepted by layer application") {
		t.Errorf("dead letters %d, the first saying %q", n, cause)
	}
}

// gridPerAdoption is how many grid events an adoption of 2025-02-01 (the time of every signal
// here) derives with the default coefficients: one per accelerator of the fleet then in force.
func gridPerAdoption() int {
	return len(coefficients.Default().At(time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)).Infrastructure.Fleet.Default)
}
