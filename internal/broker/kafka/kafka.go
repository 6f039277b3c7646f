// Package kafka implements the broker port on Apache Kafka with github.com/segmentio/kafka-go.
//
// Layout: a topic per subject without its region token (cascade.<s>.signal.<layer>,
// cascade.<s>.demand.<layer>, cascade.<s>.dlq.<layer>), created with the owner's
// broker.ScenarioConfig (EnsureScenario); the full subject travels in the cascade-subject header and the event id
// in cascade-id, the key is Message.Key (the correlation id, so one tree stays in one
// partition and load spreads evenly), the value the message body, marked content-type
// application/cloudevents+json (the CloudEvents Kafka binding's structured mode). Records
// from other producers may be in binary mode (ce_* headers) and may lack cascade's headers:
// see toMessage. The scenario registry is the compacted topic cascade.scenarios.
//
// Guarantees: kafka-go has no transactions, so delivery is at least once. A consumer killed
// after writing derived events and before committing its inputs writes them again when its
// partitions are read anew, and unlike JetStream the topic then holds both copies. Ids are
// deterministic, so the copies are byte-identical; feeds drop them (Options.FeedDedup) and
// everything that sums or traces counts an id once. Order holds within a partition only:
// a following feed merges partitions as records come, so messages from different partitions
// interleave; a snapshot (UntilEnd) reads partition after partition, the same way each time.
package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/netaddr"
)

// Header names cascade sets on every Kafka record.
const (
	// HeaderSubject carries the full subject, region included (the topic drops the region).
	HeaderSubject = "cascade-subject"
	// HeaderID carries the message id (the event id).
	HeaderID = "cascade-id"
	// HeaderContentType says the value is a structured-mode CloudEvent (CloudEvents Kafka
	// binding), so that SDK receivers decode it as one.
	HeaderContentType = "content-type"
)

// StructuredContentType is the content-type header of every record cascade writes.
const StructuredContentType = "application/cloudevents+json"

// RegistryTopic is the compacted topic holding scenario bindings.
const RegistryTopic = "cascade.scenarios"

// CheckpointTopic is the compacted topic holding connectors' checkpoints.
const CheckpointTopic = "cascade.checkpoints"

var _ broker.Broker = (*Broker)(nil)

// Broker is the Kafka adapter. It is safe for concurrent use.
type Broker struct {
	opts   Options
	log    zerolog.Logger
	tr     *kafka.Transport
	client *kafka.Client
	w      *kafka.Writer
	dialer *kafka.Dialer
	reg    *registry
	ckp    *checkpoints

	mu        sync.Mutex
	closed    bool
	scenarios map[string]broker.ScenarioConfig // scenarios whose topics exist, with the config applied
	consumers map[*consumer]struct{}
	feeds     map[*feed]struct{}
}

// Connect checks the options, dials the cluster and waits up to Options.ConnectWait for a
// broker to answer. When none does, the error matches broker.ErrUnavailable.
func Connect(ctx context.Context, o Options) (*Broker, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	tlsCfg, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	mech, err := o.mechanism()
	if err != nil {
		return nil, err
	}
	addr := kafka.TCP(o.Brokers...)
	dialer := &kafka.Dialer{ClientID: o.ClientID, Timeout: 10 * time.Second, DualStack: true, TLS: tlsCfg, SASLMechanism: mech}
	deadline := time.Now().Add(o.ConnectWait)
	var tr *kafka.Transport
	for {
		// A plain dial first: it fails fast, and says why (refused credentials, a bad
		// certificate), where the transport would only time out.
		actx, cancel := context.WithDeadline(ctx, deadline)
		err = probe(actx, dialer, o.Brokers)
		if err == nil {
			tr = newTransport(o, tlsCfg, mech)
			client := &kafka.Client{Addr: addr, Transport: tr}
			if _, err = client.Metadata(actx, &kafka.MetadataRequest{}); err != nil {
				tr.CloseIdleConnections()
			}
		}
		cancel()
		if err == nil || !temporary(err) || ctx.Err() != nil || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err != nil {
		var ke kafka.Error
		switch {
		case errors.Is(err, kafka.SASLAuthenticationFailed) || errors.Is(err, kafka.UnsupportedSASLMechanism) || errors.Is(err, kafka.IllegalSASLState):
			return nil, fmt.Errorf("kafka at %s refused the SASL %s login of user %q: %w", netaddr.Redact(strings.Join(o.Brokers, ",")), o.SASLMechanism, o.SASLUser, err)
		case !temporary(err) && (errors.As(err, &ke) || isTLSError(err)):
			return nil, fmt.Errorf("kafka at %s: %w", netaddr.Redact(strings.Join(o.Brokers, ",")), err)
		}
		return nil, fmt.Errorf("%w: no Kafka broker answers at %s (%w); check --kafka-brokers", broker.ErrUnavailable, netaddr.Redact(strings.Join(o.Brokers, ",")), err)
	}
	b := &Broker{
		opts:   o,
		log:    o.Logger,
		tr:     tr,
		client: &kafka.Client{Addr: addr, Transport: tr},
		dialer: dialer,
		w: &kafka.Writer{
			Addr:         addr,
			Transport:    tr,
			Balancer:     &kafka.Hash{},
			RequiredAcks: kafka.RequireAll,
			Async:        false,
			BatchTimeout: o.BatchTimeout,
			BatchSize:    o.BatchSize,
			// The writer retries temporary errors itself (10 attempts, 100ms to 1s apart);
			// past that the caller (the router) retries with its own capped back-off.
			AllowAutoTopicCreation: false,
		},
		scenarios: map[string]broker.ScenarioConfig{},
		consumers: map[*consumer]struct{}{},
		feeds:     map[*feed]struct{}{},
	}
	b.reg = newRegistry(b)
	b.ckp = newCheckpoints(b)
	b.log.Debug().Object("options", o).Msg("connected to kafka")
	return b, nil
}

// probe dials the brokers in turn until one accepts a connection (TLS and SASL included).
func probe(ctx context.Context, d *kafka.Dialer, brokers []string) error {
	var err error
	for _, a := range brokers {
		var c *kafka.Conn
		if c, err = d.DialContext(ctx, "tcp", a); err == nil {
			_ = c.Close()
			return nil
		}
		if !temporary(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// isTLSError reports a failed TLS handshake: a certificate the client does not trust or a
// server that does not speak TLS. Retrying does not help.
func isTLSError(err error) bool {
	var (
		ua x509.UnknownAuthorityError
		hn x509.HostnameError
		ci x509.CertificateInvalidError
		rh tls.RecordHeaderError
		ve *tls.CertificateVerificationError
		ae tls.AlertError
	)
	return errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) || errors.As(err, &rh) || errors.As(err, &ve) || errors.As(err, &ae)
}

func newTransport(o Options, tlsCfg *tls.Config, mech sasl.Mechanism) *kafka.Transport {
	return &kafka.Transport{
		ClientID:    o.ClientID,
		DialTimeout: 5 * time.Second,
		IdleTimeout: 30 * time.Second,
		// Topics created by other processes show up within this delay.
		MetadataTTL: 2 * time.Second,
		TLS:         tlsCfg,
		SASL:        mech,
	}
}

// Close stops every consumer (sending what Commit recorded) and feed opened on b, and
// closes the writer and the connections. Uncommitted deliveries are read again by the
// group.
func (b *Broker) Close() error {
	b.shutdown(false)
	err := b.w.Close()
	b.tr.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("close writer: %w", err)
	}
	return nil
}

// Abort closes b as a killed process would: consumers leave without committing anything
// more (recorded but unsent commits are lost and their messages read again, commits in
// flight fail), feeds
// stop, later calls fail with broker.ErrClosed. The conformance suite's crash test uses it.
func (b *Broker) Abort() {
	b.shutdown(true)
	go func() { _ = b.w.Close(); b.tr.CloseIdleConnections() }()
}

func (b *Broker) shutdown(abort bool) {
	b.mu.Lock()
	b.closed = true
	cs := make([]*consumer, 0, len(b.consumers))
	for c := range b.consumers {
		cs = append(cs, c)
	}
	fs := make([]*feed, 0, len(b.feeds))
	for f := range b.feeds {
		fs = append(fs, f)
	}
	b.mu.Unlock()
	for _, c := range cs {
		c.close(!abort)
	}
	for _, f := range fs {
		_ = f.Close()
	}
}

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// topicOf is the topic of a subject: the subject without its region token. Subjects that
// have no topic (a kind or layer outside the contract) are refused rather than retried.
func topicOf(subject string) (string, error) {
	p := strings.Split(subject, ".")
	if len(p) < 4 || len(p) > 5 || p[0] != "cascade" || !event.ValidName(p[1]) {
		return "", fmt.Errorf("%w: %q is not a cascade subject", event.ErrInvalid, subject)
	}
	topic := strings.Join(p[:4], ".")
	if !slices.Contains(scenarioTopics(p[1]), topic) || (p[2] == "dlq") != (len(p) == 4) {
		return "", fmt.Errorf("%w: subject %q has no Kafka topic", event.ErrInvalid, subject)
	}
	return topic, nil
}

// scenarioTopics are every topic of scenario s, kind after kind (signals, demand, dead letters)
// and each kind's layers top to bottom (event.Kind.Layers).
func scenarioTopics(s string) []string {
	var out []string
	for _, k := range event.Kinds {
		for _, l := range k.Layers() {
			out = append(out, event.Subject{Scenario: s, Kind: k, Layer: l}.Topic())
		}
	}
	return out
}

// replication is want, or min(3, brokers in the cluster) when want is 0; more than the
// cluster's brokers is refused.
func replication(md *kafka.MetadataResponse, want int) (int, error) {
	if want > len(md.Brokers) {
		return 0, fmt.Errorf("%w: replicas %d exceed the Kafka cluster's %d brokers", broker.ErrInvalidConfig, want, len(md.Brokers))
	}
	if want > 0 {
		return want, nil
	}
	return max(1, min(3, len(md.Brokers))), nil
}

// ensureTopics creates the topics that are missing, with replicas (0: min(3, brokers)), and
// warns about existing ones with another partition count than want. It returns the topics
// that existed.
func (b *Broker) ensureTopics(ctx context.Context, topics []string, partitions, replicas int, configs []kafka.ConfigEntry) ([]string, error) {
	md, err := b.client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, wrap(fmt.Errorf("metadata: %w", err))
	}
	have := map[string]int{}
	for _, t := range md.Topics {
		if t.Error == nil {
			have[t.Name] = len(t.Partitions)
		}
	}
	var create []kafka.TopicConfig
	var existing []string
	for _, t := range topics {
		n, ok := have[t]
		if ok {
			existing = append(existing, t)
		}
		switch {
		case !ok:
			rf, err := replication(md, replicas)
			if err != nil {
				return nil, err
			}
			create = append(create, kafka.TopicConfig{Topic: t, NumPartitions: partitions, ReplicationFactor: rf, ConfigEntries: configs})
		case n != partitions:
			b.log.Warn().Str("topic", t).Int("partitions", n).Int("want", partitions).
				Msg("topic exists with another partition count; using it as it is")
		}
	}
	if len(create) == 0 {
		return existing, nil
	}
	resp, err := b.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: create})
	if err != nil {
		return nil, wrap(fmt.Errorf("create topics: %w", err))
	}
	names := make([]string, 0, len(resp.Errors))
	for t := range resp.Errors {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		if err := resp.Errors[t]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return nil, wrap(fmt.Errorf("create topic %s: %w", t, err))
		}
	}
	return existing, nil
}

// retentionConfigs are the topic configs of cfg's retention: retention.ms and
// retention.bytes, or the cluster's defaults (Delete) where cfg has 0.
func retentionConfigs(cfg broker.ScenarioConfig) []kafka.IncrementalAlterConfigsRequestConfig {
	set := func(name string, v int64) kafka.IncrementalAlterConfigsRequestConfig {
		if v == 0 {
			return kafka.IncrementalAlterConfigsRequestConfig{Name: name, ConfigOperation: kafka.ConfigOperationDelete}
		}
		return kafka.IncrementalAlterConfigsRequestConfig{Name: name, Value: strconv.FormatInt(v, 10), ConfigOperation: kafka.ConfigOperationSet}
	}
	return []kafka.IncrementalAlterConfigsRequestConfig{set("retention.ms", cfg.MaxAge.Milliseconds()), set("retention.bytes", cfg.MaxBytes)}
}

// EnsureScenario creates the scenario's topics that are missing (signal, demand and dlq of
// every layer) with cfg's partitions (default 6), replicas (default min(3, brokers)) and
// retention, and broker (log append) time stamps; existing topics get cfg's retention
// (retention.ms, retention.bytes) and keep their partitions. DedupWindow and AckWait do not
// apply on Kafka and are ignored.
func (b *Broker) EnsureScenario(ctx context.Context, s string, cfg broker.ScenarioConfig) error {
	return b.ensureScenario(ctx, s, cfg, true)
}

// ensureScenario creates s's missing topics with cfg and, when update is set, applies cfg's
// retention to the existing ones.
func (b *Broker) ensureScenario(ctx context.Context, s string, cfg broker.ScenarioConfig, update bool) error {
	if err := broker.CheckScenario(s, cfg); err != nil {
		return err
	}
	b.mu.Lock()
	have, done := b.scenarios[s]
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return broker.ErrClosed
	}
	if done && (!update || have == cfg) {
		return nil
	}
	partitions := cfg.Partitions
	if partitions == 0 {
		partitions = broker.DefaultPartitions
	}
	entries := []kafka.ConfigEntry{{ConfigName: "message.timestamp.type", ConfigValue: "LogAppendTime"}}
	retention := retentionConfigs(cfg)
	for _, r := range retention {
		if r.ConfigOperation == kafka.ConfigOperationSet {
			entries = append(entries, kafka.ConfigEntry{ConfigName: r.Name, ConfigValue: r.Value})
		}
	}
	existing, err := b.ensureTopics(ctx, scenarioTopics(s), partitions, cfg.Replicas, entries)
	if err != nil {
		return fmt.Errorf("scenario %s: %w", s, err)
	}
	if update && len(existing) > 0 {
		req := &kafka.IncrementalAlterConfigsRequest{}
		for _, t := range existing {
			req.Resources = append(req.Resources, kafka.IncrementalAlterConfigsRequestResource{ResourceType: kafka.ResourceTypeTopic, ResourceName: t, Configs: retention})
		}
		resp, err := b.client.IncrementalAlterConfigs(ctx, req)
		if err != nil {
			return wrap(fmt.Errorf("scenario %s: retention: %w", s, err))
		}
		for _, r := range resp.Resources {
			if r.Error != nil {
				return wrap(fmt.Errorf("scenario %s: retention of %s: %w", s, r.ResourceName, r.Error))
			}
		}
	}
	b.mu.Lock()
	if update || !done {
		b.scenarios[s] = cfg
	}
	b.mu.Unlock()
	return nil
}

// DeleteScenario deletes the scenario's topics (and with them what its groups committed).
func (b *Broker) DeleteScenario(ctx context.Context, s string) error {
	b.mu.Lock()
	delete(b.scenarios, s)
	b.mu.Unlock()
	resp, err := b.client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: scenarioTopics(s)})
	if err != nil {
		return wrap(fmt.Errorf("delete scenario %s: %w", s, err))
	}
	deleted := 0
	for t, err := range resp.Errors {
		switch {
		case err == nil:
			deleted++
		case errors.Is(err, kafka.UnknownTopicOrPartition):
		default:
			return wrap(fmt.Errorf("delete topic %s: %w", t, err))
		}
	}
	if deleted == 0 {
		return fmt.Errorf("scenario %s: %w", s, broker.ErrNotFound)
	}
	return nil
}

// Publish writes msgs with acks from every in-sync replica and returns once all are
// acknowledged. Kafka keeps no de-duplication window: a message published twice is stored
// twice (see the package comment).
func (b *Broker) Publish(ctx context.Context, msgs []broker.Message) error {
	kms, err := b.records(msgs)
	if err != nil || len(kms) == 0 {
		return err
	}
	return b.write(ctx, kms)
}

// PublishAsync writes msgs as Publish does on a goroutine of its own; the writer batches
// what concurrent publications hand it (Options.BatchSize, BatchTimeout).
func (b *Broker) PublishAsync(ctx context.Context, msgs []broker.Message) broker.Publication {
	kms, err := b.records(msgs)
	if err != nil || len(kms) == 0 {
		return broker.Settled(err)
	}
	p := broker.NewPending()
	go func() { p.Settle(b.write(ctx, kms)) }()
	return p
}

// records are msgs as Kafka records; an unroutable subject is an error.
func (b *Broker) records(msgs []broker.Message) ([]kafka.Message, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	if b.isClosed() {
		return nil, broker.ErrClosed
	}
	kms := make([]kafka.Message, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		topic, err := topicOf(m.Subject)
		if err != nil {
			return nil, err
		}
		km := kafka.Message{Topic: topic, Value: m.Data}
		if m.Key != "" {
			km.Key = []byte(m.Key)
		}
		km.Headers = make([]kafka.Header, 0, len(m.Header)+3)
		km.Headers = append(km.Headers, kafka.Header{Key: HeaderContentType, Value: []byte(StructuredContentType)}, kafka.Header{Key: HeaderSubject, Value: []byte(m.Subject)})
		if m.ID != "" {
			km.Headers = append(km.Headers, kafka.Header{Key: HeaderID, Value: []byte(m.ID)})
		}
		keys := make([]string, 0, len(m.Header))
		for k := range m.Header {
			if !strings.EqualFold(k, HeaderContentType) {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			km.Headers = append(km.Headers, kafka.Header{Key: k, Value: []byte(m.Header[k])})
		}
		kms[i] = km
	}
	return kms, nil
}

// write writes records and returns once all are acknowledged.
func (b *Broker) write(ctx context.Context, kms []kafka.Message) error {
	if err := b.w.WriteMessages(ctx, kms...); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return wrap(fmt.Errorf("publish %d messages: %w", len(kms), err))
	}
	return nil
}

// toMessage turns a Kafka record's parts into a broker message; the binding's headers
// (content-type, ce_*) are not kept in its Header. A binary-mode record (ce_* headers, the
// value its data; CloudEvents Kafka binding) becomes the structured event it stands for. A
// record without the cascade-subject header, as an outside producer writes it, is routed as
// cascade publish routes a signal: by its type and data.region.
func toMessage(topic string, key, value []byte, headers []kafka.Header) broker.Message {
	m := broker.Message{Subject: topic, Key: string(key), Data: value}
	var ce map[string]string
	contentType, hasSubject := "", false
	for _, h := range headers {
		name, isCE := strings.CutPrefix(strings.ToLower(h.Key), "ce_")
		switch {
		case h.Key == HeaderSubject:
			m.Subject, hasSubject = string(h.Value), true
		case h.Key == HeaderID:
			m.ID = string(h.Value)
		case strings.EqualFold(h.Key, HeaderContentType):
			contentType = string(h.Value)
		case isCE && name != "":
			if ce == nil {
				ce = map[string]string{}
			}
			ce[name] = string(h.Value)
		default:
			if m.Header == nil {
				m.Header = map[string]string{}
			}
			m.Header[h.Key] = string(h.Value)
		}
	}
	if ce["specversion"] != "" && !strings.HasPrefix(contentType, "application/cloudevents") {
		// Undecodable data stays as it came, for the consumer to dead-letter.
		if structured, err := event.FromBinary(ce, contentType, value); err == nil {
			m.Data = structured
		}
	}
	if !hasSubject {
		var id string
		m.Subject, id = routeSignal(topic, m.Data)
		if m.ID == "" {
			m.ID = id
		}
	}
	return m
}

// routeSignal is the subject and event id of a record that came without cascade's headers.
// On a signal topic the subject is the signal subject of its type's layer and its data.region
// in the topic's scenario; elsewhere, or when the body names no input type or valid region,
// it is the topic, which the consumer refuses by name.
func routeSignal(topic string, body []byte) (subject, id string) {
	var ev struct {
		ID   string     `json:"id"`
		Type event.Type `json:"type"`
		Data struct {
			Region string `json:"region"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &ev) != nil {
		return topic, ""
	}
	p := strings.Split(topic, ".")
	if len(p) != 4 || p[2] != "signal" || event.InputLayer(ev.Type) == "" || !event.ValidName(ev.Data.Region) {
		return topic, ev.ID
	}
	return event.SignalSubject(p[1], event.InputLayer(ev.Type), ev.Data.Region), ev.ID
}

// wrap classifies an error of kafka-go for the port: what may pass (network trouble, leader
// elections, timeouts, a topic not yet known) matches broker.ErrUnavailable, so that callers
// retry it; what the cluster or the client refused for what it is (a Kafka error code that
// is not retriable, such as a record over the size limit or a denied authorization, a
// message larger than the writer's batch, a failed TLS handshake) broker.ErrPermanent.
func wrap(err error) error {
	if err == nil || errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrPermanent) {
		return err
	}
	if temporary(err) {
		return fmt.Errorf("%w: %w", broker.ErrUnavailable, err)
	}
	var (
		ke kafka.Error
		we kafka.WriteErrors
		tl kafka.MessageTooLargeError
	)
	if errors.As(err, &ke) || errors.As(err, &we) || errors.As(err, &tl) || isTLSError(err) {
		return fmt.Errorf("%w: %w", broker.ErrPermanent, err)
	}
	return err
}

// temporary reports whether err may succeed when retried.
func temporary(err error) bool {
	if isTLSError(err) {
		return false
	}
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil && temporary(e) {
				return true
			}
		}
		return false
	}
	var ke kafka.Error
	if errors.As(err, &ke) {
		return ke.Temporary() || ke.Timeout()
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, net.ErrClosed), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}

// Features reports Kafka's capabilities through kafka-go: no de-duplication (readers count an
// id once), no request/reply, reads by position (topic/partition:offset, see Get), order per
// key (partition), no delivery count and no transactions.
func (b *Broker) Features() broker.Features {
	return broker.Features{Ordering: broker.OrderPerKey, GetByPosition: true}
}
