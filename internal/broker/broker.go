// Package broker is the port between cascade and a message broker: publishing with broker
// acknowledgement, durable per-layer consumption with explicit acks, ordered feeds from a
// point in time, and the scenario registry. Adapters named for their technology implement it
// (natsjs, kafka); one conformance suite holds them to the same contract.
package broker

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/layercake/cascade/internal/event"
)

// Header names set on dead letters (contract, "Dead letters").
const (
	HeaderError           = "Cascade-Error"
	HeaderErrorKind       = "Cascade-Error-Kind"
	HeaderLayer           = "Cascade-Layer"
	HeaderOriginalSubject = "Cascade-Original-Subject"
	HeaderOriginalMsgID   = "Cascade-Original-Msg-Id"
	HeaderDeliveries      = "Cascade-Deliveries"
	// HeaderTruncated, on a dead letter whose body was cut to fit the broker's largest
	// message, gives the original body's size in bytes.
	HeaderTruncated = "Cascade-Truncated"
)

// DefaultMaxPayload is the largest message NATS and Kafka take by default (1 MiB), assumed
// of a broker that is not a PayloadLimiter.
const DefaultMaxPayload = 1 << 20

// PayloadLimiter is implemented by brokers that know the largest message they accept,
// headers included.
type PayloadLimiter interface {
	MaxPayload() int
}

// Sentinel errors, matched with errors.Is through any wrapping.
var (
	// ErrUnavailable means the broker did not answer; the operation may succeed later.
	ErrUnavailable = errors.New("broker unavailable")
	// ErrNotFound means a scenario, stream or key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a scenario is already bound to another coefficient set.
	ErrConflict = errors.New("conflict")
	// ErrClosed means the consumer or feed was closed.
	ErrClosed = errors.New("closed")
)

// Message is one broker message. ID is the de-duplication id (the event id; on NATS the
// Nats-Msg-Id header); Key is the partition key (the correlation id).
type Message struct {
	Subject string
	ID      string
	Key     string
	Header  map[string]string
	Data    []byte
}

// Delivery is a message handed to a consumer. It stays unacknowledged, and so will be
// delivered again, until Ack succeeds.
type Delivery interface {
	Message() *Message
	// Seq is the message's position: the stream sequence on NATS, the offset on Kafka.
	Seq() uint64
	// Cursor is an opaque resume position for feeds (SSE Last-Event-ID).
	Cursor() string
	// Time is when the broker stored the message.
	Time() time.Time
	// Deliveries counts how often the message was delivered, this time included.
	Deliveries() int
	// Ack acknowledges the message; after it returns nil the message is not redelivered.
	Ack(ctx context.Context) error
	// Nak asks for redelivery after delay, where the broker supports it.
	Nak(ctx context.Context, delay time.Duration) error
}

// Consumer is the durable consumer of one layer in one scenario; consumers of the same layer
// and scenario share its messages.
type Consumer interface {
	// Fetch blocks until at least one message is available (or ctx ends) and returns up to max.
	Fetch(ctx context.Context, max int) ([]Delivery, error)
	// Close stops delivery; deliveries not acknowledged are redelivered later.
	Close() error
}

// FeedOptions selects what an ordered feed reads.
type FeedOptions struct {
	Scenario  string
	Subjects  []string  // subject filters (NATS wildcards)
	Since     time.Time // start at broker time; zero with FromStart false means new messages only
	FromStart bool      // start at the beginning of the stream
	Cursor    string    // resume after this cursor (wins over Since and FromStart)
	// UntilEnd ends the feed (Next returns io.EOF) once it has delivered what the broker held
	// when it was opened; otherwise the feed follows new messages.
	UntilEnd bool
}

// Feed reads messages in order, without joining any consumer group and without acks.
type Feed interface {
	// Next blocks for the next message or until ctx ends.
	Next(ctx context.Context) (Delivery, error)
	// Pending counts messages known to remain (0 when caught up).
	Pending() uint64
	Close() error
}

// Binding ties a scenario to its coefficient set.
type Binding struct {
	Scenario    string    `json:"scenario"`
	CoefVersion string    `json:"coefversion"`
	Document    []byte    `json:"document"` // canonical coefficient document (JSON)
	Created     time.Time `json:"created"`
}

// Registry is the broker-side scenario registry.
type Registry interface {
	// Bind registers scenario with its coefficient set; binding it again to the same set is a
	// no-op, to another set an error matching ErrConflict.
	Bind(ctx context.Context, b Binding) (Binding, error)
	// Get returns a scenario's binding or an error matching ErrNotFound.
	Get(ctx context.Context, scenario string) (Binding, error)
	// List returns every binding, sorted by scenario.
	List(ctx context.Context) ([]Binding, error)
	// Delete removes the binding.
	Delete(ctx context.Context, scenario string) error
}

// Broker is what every cascade component needs of a broker.
type Broker interface {
	// EnsureScenario creates the storage of scenario s (stream or topics) when missing.
	EnsureScenario(ctx context.Context, s string) error
	// DeleteScenario removes the storage of scenario s and its consumers.
	DeleteScenario(ctx context.Context, s string) error
	// Publish sends msgs and returns once the broker has acknowledged each one; a message whose
	// ID the broker has already stored is acknowledged without being stored twice.
	Publish(ctx context.Context, msgs []Message) error
	// Consumer opens the durable consumer of layer l in scenario s, creating it if needed.
	Consumer(ctx context.Context, s string, l event.Layer) (Consumer, error)
	// Lag counts the messages layer l of scenario s has not yet acknowledged (pending plus
	// delivered but unacknowledged); it never joins or disturbs the consumer.
	Lag(ctx context.Context, s string, l event.Layer) (uint64, error)
	// Feed opens an ordered read of a scenario's subjects.
	Feed(ctx context.Context, o FeedOptions) (Feed, error)
	// Registry is the scenario registry kept on this broker.
	Registry() Registry
	Close() error
}

// Getter is implemented by brokers that can fetch one stored message by its cursor.
type Getter interface {
	Get(ctx context.Context, scenario, cursor string) (*Message, error)
}

// Responder is implemented by brokers that carry request/reply: `run` answers queries on it
// that need its local indexes, so other commands need only the broker flags.
type Responder interface {
	// Respond serves requests on subject until ctx ends.
	Respond(ctx context.Context, subject string, handle func(ctx context.Context, req []byte) ([]byte, error)) error
	// Request sends req and waits for one reply; ErrUnavailable when nobody serves subject.
	Request(ctx context.Context, subject string, req []byte) ([]byte, error)
}

// Each calls fn for every message the subjects of o hold now (o.UntilEnd is implied), in
// order, and returns fn's first error.
func Each(ctx context.Context, b Broker, o FeedOptions, fn func(Delivery) error) error {
	o.UntilEnd = true
	f, err := b.Feed(ctx, o)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		d, err := f.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(d); err != nil {
			return err
		}
	}
}
