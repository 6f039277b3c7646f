// Package broker is the port between cascade and a message broker: publishing with broker
// acknowledgement, durable per-layer consumption with batch commits, ordered feeds from a
// point in time, and the scenario registry. Adapters named for their technology implement it
// (natsjs, kafka); one conformance suite holds them to the same contract.
package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
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
	// HeaderFailedID is the id of the event whose derivation failed: the input's own, or,
	// in a stage of several layers, the output of an earlier layer of the input's tree that
	// the failing layer (HeaderLayer) was deriving from.
	HeaderFailedID = "Cascade-Failed-Id"
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

// Sentinel errors, matched with errors.Is through any wrapping. Every error an adapter
// returns is of one of two classes (see Transient): transient errors may pass when the same
// operation is tried again later; all others are permanent and recur however often it is.
var (
	// ErrUnavailable means the broker did not answer (not reachable, not ready, reconnecting);
	// the operation may succeed later. It is transient.
	ErrUnavailable = errors.New("broker unavailable")
	// ErrPermanent means the broker refused the request for what it is (a message over its
	// size limit, a subject it does not take, a permission the client lacks): sending it
	// again fails the same way.
	ErrPermanent = errors.New("refused by the broker")
	// ErrNotFound means a scenario, stream or key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a scenario is already bound to another coefficient set.
	ErrConflict = errors.New("conflict")
	// ErrClosed means the broker connection, consumer or feed was closed (by its Close, or
	// as a killed process's would be); nothing done with it again succeeds.
	ErrClosed = errors.New("closed")
)

// Transient reports whether err may pass when the same operation is tried again later: the
// broker did not answer (ErrUnavailable) or not in time (context.DeadlineExceeded,
// os.ErrDeadlineExceeded), and the adapter did not mark the refusal ErrPermanent. Every
// other error is permanent: ErrPermanent, ErrClosed, ErrNotFound, ErrConflict, invalid
// input. It is the one rule of what may be retried: the router retries a publish that
// fails so, and dead-letters an input whose outputs fail otherwise.
func Transient(err error) bool {
	if err == nil || errors.Is(err, ErrPermanent) {
		return false
	}
	return errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
}

// Message is one broker message. ID is the de-duplication id (the event id; on NATS the
// Nats-Msg-Id header); Key is the partition key (the correlation id).
//
// Event and Payload, when set, are Data decoded: what a stage encoded Data from, or decoded
// it to. They stay in the process that set them (brokers neither send nor store them), so
// that what it hands on in-process (consumers.Options.Tap) is not decoded twice. Derived, as
// they do, says a stage of this process made Event from its parent (Event.CausationID) with
// event.New, so that ID is event.DerivedID of the parent's.
type Message struct {
	Subject string
	ID      string
	Key     string
	Header  map[string]string
	Data    []byte
	Event   *event.Event
	Payload event.Payload
	Derived bool
}

// Delivery is a message handed out by a Consumer or a Feed. A consumer's delivery stays
// uncommitted, and so will be delivered again, until Consumer.Commit succeeds for it.
type Delivery interface {
	Message() *Message
	// Seq is the message's position: the stream sequence on NATS, the offset in its partition
	// on Kafka.
	Seq() uint64
	// Cursor is an opaque resume position for feeds (SSE Last-Event-ID).
	Cursor() string
	// Time is when the broker stored the message.
	Time() time.Time
	// Deliveries counts how often the message was delivered, this time included. On NATS it
	// is the server's count; Kafka does not count redeliveries, so it is always 1 there.
	Deliveries() int
}

// Redelivery is implemented by the deliveries of a broker that counts no deliveries
// (Features.CountsDeliveries false) but can tell a record that may have been read before:
// a stage asks the id set about those before it publishes their outputs again.
type Redelivery interface {
	// PossiblyRedelivered says whether the record may have been read before and, when so,
	// the time by which whatever an earlier read published was stored: the id set need be
	// current only as of then.
	PossiblyRedelivered() (bool, time.Time)
}

// Consumer is the durable consumer of one layer in one scenario; consumers of the same layer
// and scenario share its messages, each message going to one of them at a time.
//
// Delivery is at least once: a delivery that is not committed comes again, to this consumer
// or another of its layer. On NATS an uncommitted delivery comes again once the ack wait
// (ScenarioConfig.AckWait) has passed since it was handed out. On Kafka it comes again when
// its partition is next assigned (the member restarts, or the group rebalances), together
// with whatever follows it in that partition.
type Consumer interface {
	// Fetch blocks until at least one message is available (or ctx ends) and returns it with
	// what else is already buffered, up to max, in the broker's order: stream order on NATS,
	// partition order within each partition on Kafka. It returns an error matching ErrClosed
	// once the consumer or its connection is closed.
	Fetch(ctx context.Context, max int) ([]Delivery, error)
	// Commit records that deliveries, handed out by this consumer's Fetch, are done with:
	// after it returns nil they are not delivered again, except as said below. Committing a
	// delivery twice, or none, is a no-op.
	//
	// On NATS it acknowledges each delivery without waiting for the server to confirm it
	// (one message each, no round trip): an ack lost on the way (the connection drops, the
	// server restarts) makes its message come again after the ack wait, so nil means the
	// acks were handed to the connection.
	//
	// On Kafka it commits, in one request and synchronously, the offset after the contiguous
	// run of committed deliveries at the head of each partition; nil means the group
	// coordinator stored those offsets. A delivery behind one still uncommitted in the same
	// partition is recorded and committed with the gap's closing; until then a new member
	// of the partition reads it again.
	Commit(ctx context.Context, deliveries []Delivery) error
	// Close stops delivery; what was not committed is delivered again later (on NATS what
	// was buffered but not yet fetched is handed back at once; on Kafka Close first commits
	// what Commit recorded and then leaves the group).
	Close() error
}

// FeedOptions selects what an ordered feed reads and where it starts.
type FeedOptions struct {
	Selector            // the subjects read; an invalid one fails Feed with its Validate error
	Since     time.Time // start at broker time (a Since still ahead passes over what is stored before it); zero with FromStart false means new messages only
	FromStart bool      // start at the beginning of the stream
	Cursor    string    // resume after this cursor (wins over Since and FromStart)
	// UntilEnd ends the feed (Next returns io.EOF) once it has delivered what the broker held
	// when it was opened; otherwise the feed follows new messages.
	UntilEnd bool
}

// Feed reads messages in order, without joining any consumer group and without commits;
// it changes nothing on the broker that another reader sees.
type Feed interface {
	// Next blocks for the next message or until ctx ends; with FeedOptions.UntilEnd it
	// returns io.EOF once it has delivered what the broker held when the feed was opened,
	// and after Close an error matching ErrClosed. On NATS (an ordered consumer) messages
	// come in stream order, each once. On Kafka a following feed merges partitions as
	// records arrive and a snapshot (UntilEnd) reads partition after partition; a record
	// stored twice (a republish) is dropped on its repeat within the feed's id window
	// (kafka.Options.FeedDedup).
	Next(ctx context.Context) (Delivery, error)
	// Pending counts messages known to remain (0 when caught up): on NATS the server's count
	// of messages after the last one delivered; on Kafka what the partitions held beyond the
	// feed's position at their last fetch.
	Pending() uint64
	// Close stops the feed (on NATS it deletes its ordered consumer on the server).
	Close() error
}

// Defaults of ScenarioConfig's zero fields.
const (
	// DefaultDedupWindow is short because the window's ids live in the server's heap (the
	// embedded server's is run's): ~130 B each, rate × window of them. It has only to cover a
	// publish tried again; the view's id set covers redeliveries however late.
	DefaultDedupWindow = 10 * time.Second
	// DefaultAckWait is no longer than DefaultDedupWindow, and half of it is the 5 s a stage
	// waits for the view's id set to be current before it publishes possible redeliveries.
	DefaultAckWait = 10 * time.Second

	DefaultPartitions = 6
)

// ErrInvalidConfig is matched by every error of ScenarioConfig.Validate.
var ErrInvalidConfig = errors.New("invalid scenario config")

// ScenarioConfig is how a scenario's storage is kept. The owner of a scenario (the command
// that creates or serves it) passes it to Broker.EnsureScenario, which records nothing; the
// owner records it in the scenario's Binding, so that consumers of the scenario use its
// AckWait and anyone can show it. Clients never carry one. Zero fields take the defaults
// given; a field a broker does not have is ignored by its adapter (the CLI refuses its flag).
type ScenarioConfig struct {
	// DedupWindow is how long the broker remembers a message id to store it once (NATS:
	// the stream's duplicate window, ~130 B per message in it); default 10s: the fast path
	// only, the stages asking the view's id set for what may be stored already (consumers.
	// Options.IDs). Kafka has none.
	DedupWindow time.Duration `json:"dedup_window,omitempty"`
	// MaxAge drops stored messages older than it; 0: NATS keeps everything, Kafka the
	// cluster's default (topic config retention.ms).
	MaxAge time.Duration `json:"max_age,omitempty"`
	// MaxBytes caps the storage at this many bytes (NATS: the stream; Kafka: each partition,
	// retention.bytes); 0: unlimited on NATS, the cluster's default on Kafka.
	MaxBytes int64 `json:"max_bytes,omitempty"`
	// Replicas is the stream's replica count on NATS (default 1) and the topics' replication
	// factor on Kafka (default min(3, brokers)), applied when the storage is created.
	Replicas int `json:"replicas,omitempty"`
	// Partitions is the partition count of the Kafka topics, applied when they are created
	// (an existing topic keeps its count, with a warning); default 6. NATS has none.
	Partitions int `json:"partitions,omitempty"`
	// AckWait is how long a consumer's uncommitted delivery waits before it is delivered
	// again (NATS); default 10s, at least 100ms. Kafka redelivers on reassignment instead.
	AckWait time.Duration `json:"ack_wait,omitempty"`
}

// Validate refuses negative settings and an ack wait below 100ms, naming the field.
func (c ScenarioConfig) Validate() error {
	switch {
	case c.DedupWindow < 0:
		return fmt.Errorf("%w: dedup window %s is negative", ErrInvalidConfig, c.DedupWindow)
	case c.MaxAge < 0:
		return fmt.Errorf("%w: retention max age %s is negative", ErrInvalidConfig, c.MaxAge)
	case c.MaxBytes < 0:
		return fmt.Errorf("%w: retention max bytes %d is negative", ErrInvalidConfig, c.MaxBytes)
	case c.Replicas < 0:
		return fmt.Errorf("%w: replicas %d is negative", ErrInvalidConfig, c.Replicas)
	case c.Partitions < 0:
		return fmt.Errorf("%w: partitions %d is negative", ErrInvalidConfig, c.Partitions)
	case c.AckWait < 0 || (c.AckWait > 0 && c.AckWait < 100*time.Millisecond):
		return fmt.Errorf("%w: ack wait %s below 100ms", ErrInvalidConfig, c.AckWait)
	}
	return nil
}

// CheckScenario refuses, before an adapter touches its broker, a scenario name that does not
// match event.NamePattern (event.ErrInvalid) and a config that Validate refuses
// (ErrInvalidConfig).
func CheckScenario(s string, cfg ScenarioConfig) error {
	if !event.ValidName(s) {
		return fmt.Errorf("%w: scenario %q must match %s", event.ErrInvalid, s, event.NamePattern)
	}
	return cfg.Validate()
}

// Binding ties a scenario to its coefficient set and records its owner's storage settings.
type Binding struct {
	Scenario    string         `json:"scenario"`
	CoefVersion string         `json:"coefversion"`
	Document    []byte         `json:"document"` // canonical coefficient document (JSON)
	Created     time.Time      `json:"created"`
	Config      ScenarioConfig `json:"config"`
}

// Registry is the broker-side scenario registry: storage only. The binding rule (same
// coefficient set: no-op; another: conflict) is Bind's, above every adapter.
type Registry interface {
	// Create stores b unless a binding of b.Scenario exists. It returns b and true when it
	// stored it, else the stored binding and false, changing nothing.
	//
	// On NATS it is the KV bucket's create-if-absent (a compare-and-set on the server): of
	// two concurrent creates exactly one stores its binding. On Kafka it reads the compacted
	// registry topic, writes b when the scenario is absent and reads again: of two concurrent
	// creates the later record wins, and the other one learns it (false, the winner's
	// binding); there is no compare-and-set.
	Create(ctx context.Context, b Binding) (existing Binding, created bool, err error)
	// Get returns a scenario's binding or an error matching ErrNotFound. It sees every
	// Create and Delete that returned before it was called, from any connection.
	Get(ctx context.Context, scenario string) (Binding, error)
	// List returns every binding, sorted by scenario.
	List(ctx context.Context) ([]Binding, error)
	// Put stores b, replacing the binding of b.Scenario if there is one (the owner updates
	// the recorded Config with it; the binding rule is Bind's).
	Put(ctx context.Context, b Binding) error
	// Delete removes the binding; deleting one that does not exist is not an error.
	Delete(ctx context.Context, scenario string) error
}

// Bind registers scenario b.Scenario with b's coefficient set: a scenario not bound yet is
// bound to it; one bound to the same set (the same CoefVersion) is left as it is and its
// binding returned; one bound to another set is an error matching ErrConflict. It is the
// one place that rule lives.
func Bind(ctx context.Context, r Registry, b Binding) (Binding, error) {
	have, created, err := r.Create(ctx, b)
	if err != nil {
		return Binding{}, fmt.Errorf("bind scenario %s: %w", b.Scenario, err)
	}
	if !created && have.CoefVersion != b.CoefVersion {
		return have, fmt.Errorf("%w: scenario %s is bound to coefficients %s, not %s", ErrConflict, b.Scenario, have.CoefVersion, b.CoefVersion)
	}
	return have, nil
}

// Checkpoints keeps small named values on the broker, the resume positions of connectors
// (`cascade connect`), so that a connector restarted anywhere goes on where it stopped. On
// NATS it is the KV bucket cascade_checkpoints; on Kafka the compacted topic
// cascade.checkpoints (key = name). A value is at most MaxCheckpointBytes.
type Checkpoints interface {
	// Get returns the value stored under name, or an error matching ErrNotFound. It sees
	// every Put that returned before it was called, from any connection.
	Get(ctx context.Context, name string) ([]byte, error)
	// Put stores value under name, replacing what was there.
	Put(ctx context.Context, name string, value []byte) error
}

// MaxCheckpointBytes bounds one checkpoint value, well inside either broker's message limit.
const MaxCheckpointBytes = 512 << 10

// CheckCheckpoint refuses, before an adapter touches its broker, a checkpoint name that is
// not a KV key (letters, digits, '-', '_', '.', '=' and '/', 1 to 256 bytes, not starting or
// ending with '.'), matching event.ErrInvalid.
func CheckCheckpoint(name string) error {
	bad := func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && !strings.ContainsRune("-_./=", r)
	}
	if name == "" || len(name) > 256 || strings.ContainsFunc(name, bad) || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") {
		return fmt.Errorf("%w: checkpoint name %q must be 1 to 256 of [A-Za-z0-9-_./=], not starting or ending with '.'", event.ErrInvalid, name)
	}
	return nil
}

// CheckCheckpointPut refuses what CheckCheckpoint refuses and a value that is empty or over
// MaxCheckpointBytes (ErrPermanent).
func CheckCheckpointPut(name string, value []byte) error {
	if err := CheckCheckpoint(name); err != nil {
		return err
	}
	if len(value) == 0 || len(value) > MaxCheckpointBytes {
		return fmt.Errorf("%w: checkpoint %s is %d bytes; want 1 to %d", ErrPermanent, name, len(value), MaxCheckpointBytes)
	}
	return nil
}

// Ordering says which messages a broker keeps in publish order for every reader.
type Ordering int

const (
	// OrderPerKey keeps messages with the same Message.Key (one partition) in order; messages
	// with different keys may be read in any interleaving (Kafka).
	OrderPerKey Ordering = iota + 1
	// OrderPerScenario keeps every message of a scenario in one total order, the same for
	// every consumer and feed (NATS: one stream per scenario).
	OrderPerScenario
)

func (o Ordering) String() string {
	switch o {
	case OrderPerKey:
		return "per key"
	case OrderPerScenario:
		return "per scenario"
	}
	return fmt.Sprintf("Ordering(%d)", int(o))
}

// Features is what a broker can and cannot do beyond what every Broker guarantees: the
// machine-readable form of the per-broker differences the method docs describe. Code that
// needs a capability asks for it here rather than for an adapter's type; the conformance
// suite runs a test that needs one only on brokers that declare it, and tests what a broker
// must do instead on the others.
type Features struct {
	// DedupWindow is how long after storing a message the broker recognises a publish of the
	// same Message.ID and acknowledges it without storing it again, by default (NATS: the
	// stream's Duplicates window; each scenario's owner sets its own as
	// ScenarioConfig.DedupWindow). Zero means the broker never
	// de-duplicates (Kafka): a message published again is stored again, and every reader
	// (feeds, totals, trace) counts an id once.
	DedupWindow time.Duration
	// RequestReply says the broker implements Responder (NATS core request/reply): `run` can
	// answer queries for other processes.
	RequestReply bool
	// GetByPosition says the broker implements Getter: one stored message can be read by its
	// Delivery.Cursor without a feed.
	GetByPosition bool
	// Ordering says which messages every consumer and feed reads in publish order.
	Ordering Ordering
	// CountsDeliveries says Delivery.Deliveries is the broker's count of deliveries (NATS);
	// without it (Kafka) it is always 1.
	CountsDeliveries bool
	// TransactionalBatches says Publish stores a batch all or nothing, and a consumer's
	// outputs and its commit atomically. No adapter has it: on an error part of a batch may
	// be stored, and a consumer killed between publishing and committing publishes again.
	TransactionalBatches bool
}

// Broker is what every cascade component needs of a broker. Errors are transient or
// permanent as Transient says; an operation on a closed Broker fails with ErrClosed.
type Broker interface {
	// EnsureScenario creates the storage of scenario s with cfg when missing (on NATS the
	// stream CASCADE_<S>; on Kafka its topics) and updates existing storage to cfg: on NATS
	// the stream's de-dup window and retention, on Kafka the topics' retention.ms and
	// retention.bytes (partitions and replicas only at creation). Only the scenario's owner
	// calls it; an invalid cfg is an error matching ErrInvalidConfig.
	EnsureScenario(ctx context.Context, s string, cfg ScenarioConfig) error
	// DeleteScenario removes the storage of scenario s and its consumers (an error matching
	// ErrNotFound when there is none).
	DeleteScenario(ctx context.Context, s string) error
	// Publish sends msgs and returns nil once the broker has stored and acknowledged each
	// one; on an error some of them may have been stored.
	//
	// On NATS a message whose ID the stream already holds within its de-duplication window
	// is acknowledged without being stored twice. Kafka has no de-duplication: a message
	// published again is stored again, and its readers (feeds, totals, trace) count an id
	// once. A message larger than the broker takes fails with an error matching
	// ErrPermanent.
	Publish(ctx context.Context, msgs []Message) error
	// PublishAsync sends msgs as Publish does without waiting for the acknowledgements: the
	// Publication it returns tells when the broker has answered for every one of them and
	// how (Err is then what Publish would have returned). Callers go on publishing while
	// earlier publications are outstanding; ctx bounds the sending and the wait.
	PublishAsync(ctx context.Context, msgs []Message) Publication
	// Consumer opens the durable consumer of layer l in scenario s, creating it (and the
	// scenario's storage, with the binding's Config, if missing) if needed: on NATS a durable
	// pull consumer whose ack wait is the Config's given to EnsureScenario on this connection,
	// else the binding's; on Kafka a member of the consumer group cascade-<s>-<layer>. A new
	// consumer starts at the first message.
	Consumer(ctx context.Context, s string, l event.Layer) (Consumer, error)
	// Lag counts the messages layer l of scenario s has not yet committed (pending plus
	// delivered but uncommitted), or an error matching ErrNotFound when the layer has no
	// consumer storage; it never joins or disturbs the consumer. On NATS it is the consumer's
	// pending plus ack-pending count; on Kafka the end offsets minus the group's committed
	// offsets.
	Lag(ctx context.Context, s string, l event.Layer) (uint64, error)
	// StageConsumer opens the durable consumer of stage st in scenario s (Consumer is the
	// one-layer stage's): named st.ConsumerName(s) (the NATS durable, the Kafka group),
	// reading st.Inputs(s) (NATS: filtered on st.FilterSubjects(s); Kafka: st.Topics(s)),
	// as Consumer says otherwise.
	StageConsumer(ctx context.Context, s string, st event.Stage) (Consumer, error)
	// StageLag is Lag of stage st's consumer (Lag is the one-layer stage's).
	StageLag(ctx context.Context, s string, st event.Stage) (uint64, error)
	// Consumers names the durable consumers (NATS) or consumer groups (Kafka) of scenario s
	// whose names are stage consumer names (event.StageOfConsumer), sorted, whether or not a
	// process runs them now: a stage asks it to refuse to overlap another. On Kafka a group
	// of another scenario whose name reads as one of s's ("cascade-a-model-chips" is stage
	// model-chips of a and stage chips of a-model) is listed too.
	Consumers(ctx context.Context, s string) ([]string, error)
	// TakeOver hands the inputs of the stage consumers old of scenario s to stage st, whose
	// consumer it creates positioned at P, the end of what the broker held when it was
	// called (NATS: the stream's last sequence; Kafka: the end offsets of st's topics,
	// committed for st's group); then, one by one in the order given (top to bottom), it
	// waits until each of old has committed all it reads up to its bound (P for the first;
	// for each next one the end of what the broker holds once the one before it got to its
	// bound, so the demand derived from inputs up to P is done too), and then deletes them
	// (Kafka deletes a group only once its members have left: it waits for their processes
	// to stop, and logs when they may). Their processes may run meanwhile (they must, for
	// old to get past P, unless old have no lag), and whatever they did beyond P st's
	// consumer does again with the same ids (de-duplicated on NATS; on Kafka read once by
	// every reader). A process of old still running then finds its consumer gone and cannot
	// open it again beside st's. It returns ctx's error when ctx ends while it waits (st's
	// consumer then exists and old are left: calling it again finishes the take-over); on
	// NATS a consumer of st that no take-over created is an error matching ErrConflict.
	TakeOver(ctx context.Context, s string, st event.Stage, old []string) error
	// RemoveConsumer deletes scenario s's durable consumer (NATS) or consumer group (Kafka)
	// name and what it committed; removing one that does not exist is not an error.
	RemoveConsumer(ctx context.Context, s, name string) error
	// Feed opens an ordered read of the subjects o.Selector selects, without a consumer group
	// and without commits; an invalid selection is an error matching event.ErrInvalid. On
	// NATS order is the stream's; on Kafka it holds within a partition.
	Feed(ctx context.Context, o FeedOptions) (Feed, error)
	// Registry is the scenario registry kept on this broker.
	Registry() Registry
	// Checkpoints is the store of connectors' resume positions kept on this broker.
	Checkpoints() Checkpoints
	// Features says what this broker can do beyond this interface (see Features).
	Features() Features
	// Close releases the connection (on Kafka after committing what consumers recorded).
	Close() error
}

// Publication is one PublishAsync on its way.
type Publication interface {
	// Done is closed once the broker has answered for every message (or the publish failed
	// or its ctx ended).
	Done() <-chan struct{}
	// Err, once Done is closed, is nil when every message was stored and acknowledged, else
	// the failure as Publish reports it (some messages may have been stored).
	Err() error
}

// Sequenced is implemented by the Publications of a Sequencer: once Done with a nil Err,
// Seqs holds the sequence each message was stored at, in publish order (0 for a message the
// broker de-duplicated: what it holds is the first copy, which may differ).
type Sequenced interface {
	Seqs() []uint64
}

// Sequencer is implemented by a broker whose log of a scenario is one sequence of messages
// (NATS: the scenario's stream), the Seq of its deliveries, and also their Cursor and
// Position in decimal. LastSeq is the sequence of the last message the log of scenario s
// holds (0 when none); its PublishAsync returns Sequenced publications.
type Sequencer interface {
	LastSeq(ctx context.Context, s string) (uint64, error)
}

// Wait waits for p and returns its Err, or ctx's error when ctx ends first.
func Wait(ctx context.Context, p Publication) error {
	select {
	case <-p.Done():
		return p.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Settled is a Publication already answered with err: what a PublishAsync that failed
// before sending anything returns.
func Settled(err error) Publication {
	p := NewPending()
	p.Settle(err)
	return p
}

// Pending is a Publication an adapter settles once: NewPending, then Settle.
type Pending struct {
	once sync.Once
	done chan struct{}
	err  error
}

// NewPending returns an unsettled Publication.
func NewPending() *Pending { return &Pending{done: make(chan struct{})} }

// Settle records err and closes Done; only the first call counts.
func (p *Pending) Settle(err error) {
	p.once.Do(func() {
		p.err = err
		close(p.done)
	})
}

// Done is closed by Settle.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Err is what Settle recorded.
func (p *Pending) Err() error { return p.err }

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

// Each calls fn for every message the subjects o selects hold now (o.UntilEnd is implied), in
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

// Next is what one call of Feed.Next returned.
type Next struct {
	Delivery Delivery
	Err      error
	// Pending is the feed's Pending right after this Next, read on the goroutine calling
	// Next (Feed is not safe for concurrent use).
	Pending uint64
}

// Pump calls f.Next on a goroutine of its own and sends each result on the returned channel
// (of capacity buf), for a reader that waits on other things too. It stops when ctx ends or
// after sending a result with an error; done is closed once the goroutine has returned.
func Pump(ctx context.Context, f Feed, buf int) (next <-chan Next, done <-chan struct{}) {
	ch, fin := make(chan Next, buf), make(chan struct{})
	go func() {
		defer close(fin)
		for {
			d, err := f.Next(ctx)
			select {
			case ch <- Next{Delivery: d, Err: err, Pending: f.Pending()}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch, fin
}

// Until polls done every 50ms until it reports true or fails, or ctx ends (ctx's error): an
// adapter's wait for the broker to reach a state it cannot be told of.
func Until(ctx context.Context, done func() (bool, error)) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := done()
		if ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
