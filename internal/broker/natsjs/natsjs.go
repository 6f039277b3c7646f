// Package natsjs implements the broker port on NATS JetStream: one file-backed stream per
// scenario, a durable pull consumer per scenario and layer, Nats-Msg-Id de-duplication,
// ordered consumers for feeds and a KV bucket for the scenario registry. It also embeds a
// nats-server for the one-command setup.
package natsjs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/netaddr"
)

// ErrInvalidOption is matched by every option error.
var ErrInvalidOption = errors.New("invalid option")

// Options configure a connection. Zero values take the documented defaults.
type Options struct {
	URL       string // default nats://127.0.0.1:4222
	Name      string // client name shown by the server; default "cascade"
	CredsFile string // NATS credentials file (JWT + seed)
	User      string
	Password  string
	Token     string
	TLSCA     string // CA bundle to verify the server
	TLSCert   string // client certificate (with TLSKey) for mutual TLS
	TLSKey    string
	// InProcess, if set, connects to this embedded server without a socket.
	InProcess nats.InProcessConnProvider

	// MaxAckPending caps the unacknowledged messages per consumer; default 8192, above a
	// stage's default window (consumers.Options.MaxInflight 4096) plus a batch: a consumer
	// at its cap stalls pull delivery (until the pull request expires, ~30s), so the stage's
	// window must bind first.
	MaxAckPending int
	Prefetch      int           // messages buffered per consumer; default 256
	ConnectWait   time.Duration // how long to wait for the server at start; default 5s
	// APITimeout bounds a JetStream API request (creating a stream or consumer, a registry
	// read) whose context has no deadline, and the wait for each publish's acknowledgement;
	// default 5s. A loaded cluster may need more.
	APITimeout time.Duration
}

// The stream settings (de-dup window, retention, replicas) and the ack wait are the
// scenario's, not the connection's: see broker.ScenarioConfig and EnsureScenario.

func (o *Options) defaults() error {
	if o.URL == "" {
		o.URL = "nats://127.0.0.1:4222"
	}
	if o.Name == "" {
		o.Name = "cascade"
	}
	if o.MaxAckPending == 0 {
		o.MaxAckPending = 8192
	}
	if o.Prefetch == 0 {
		o.Prefetch = 256
	}
	if o.ConnectWait == 0 {
		o.ConnectWait = 5 * time.Second
	}
	if o.APITimeout == 0 {
		o.APITimeout = 5 * time.Second
	}
	switch {
	case o.APITimeout < 0:
		return fmt.Errorf("%w: API timeout %s is negative", ErrInvalidOption, o.APITimeout)
	case o.MaxAckPending < 1 || o.Prefetch < 1:
		return fmt.Errorf("%w: max ack pending and prefetch must be positive", ErrInvalidOption)
	case (o.TLSCert == "") != (o.TLSKey == ""):
		return fmt.Errorf("%w: TLS client certificate and key go together", ErrInvalidOption)
	}
	// nats.go reports a URL it cannot parse as "no servers available"; say what is wrong.
	for _, u := range strings.Split(o.URL, ",") {
		if _, err := url.Parse(strings.TrimSpace(u)); err != nil {
			return fmt.Errorf("%w: --nats-url %s is not a URL (%s)", ErrInvalidOption, netaddr.Redact(u), badURL(err))
		}
	}
	return nil
}

// badURL says why a URL does not parse without repeating the URL, which may hold a password.
func badURL(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return "unparsable"
}

// Broker is the JetStream adapter.
type Broker struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	opts Options

	mu      sync.Mutex
	streams map[string]bool                  // scenarios whose stream is known to exist
	owned   map[string]broker.ScenarioConfig // configs EnsureScenario applied on this connection
	kv      jetstream.KeyValue               // the registry bucket
	ckv     jetstream.KeyValue               // the checkpoints bucket
}

// Connect dials the server and waits up to ConnectWait for it.
func Connect(ctx context.Context, o Options) (*Broker, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	// A server cut off from the network (no FIN, no RST) is noticed by missed pings: within
	// ~15s rather than the client's default 2m x 2, and the connection moves to another node.
	nopts := []nats.Option{nats.Name(o.Name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.PingInterval(5 * time.Second), nats.MaxPingsOutstanding(2)}
	if o.CredsFile != "" {
		nopts = append(nopts, nats.UserCredentials(o.CredsFile))
	}
	if o.User != "" {
		nopts = append(nopts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		nopts = append(nopts, nats.Token(o.Token))
	}
	if o.TLSCA != "" {
		nopts = append(nopts, nats.RootCAs(o.TLSCA))
	}
	if o.TLSCert != "" {
		nopts = append(nopts, nats.ClientCert(o.TLSCert, o.TLSKey))
	}
	if o.TLSCA != "" || o.TLSCert != "" {
		nopts = append(nopts, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	if o.InProcess != nil {
		nopts = append(nopts, nats.InProcessServer(o.InProcess))
	}
	var nc *nats.Conn
	var err error
	deadline := time.Now().Add(o.ConnectWait)
	for {
		nc, err = nats.Connect(o.URL, nopts...)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil || !errors.Is(err, nats.ErrNoServers) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err != nil {
		url := netaddr.Redact(o.URL)
		err = &redacted{err: err, url: o.URL}
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
			return nil, fmt.Errorf("NATS server at %s: authorization failed (%w); check --nats-user/--nats-password, --nats-token or --nats-creds", url, err)
		}
		return nil, fmt.Errorf("%w: no NATS server answers at %s (%w); start one with `cascade run` or pass --nats-url", broker.ErrUnavailable, url, err)
	}
	// A publish's acknowledgement lost with the stream leader that was to send it, or dropped
	// by a server that could not take the publish in, would otherwise be waited for forever;
	// timed out (jetstream.ErrAsyncPublishTimeout, transient), the publish is retried and the
	// stream's de-duplication stores it once.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(publishAsyncMaxPending), jetstream.WithDefaultTimeout(o.APITimeout), jetstream.WithPublishAsyncTimeout(o.APITimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Broker{nc: nc, js: js, opts: o, streams: map[string]bool{}, owned: map[string]broker.ScenarioConfig{}}, nil
}

// redacted is an error of nats.go with the credentials of the URL it was given taken out of
// its message.
type redacted struct {
	err error
	url string
}

func (e *redacted) Error() string { return netaddr.RedactIn(e.err.Error(), e.url) }
func (e *redacted) Unwrap() error { return e.err }

// Conn exposes the underlying connection (for health checks).
func (b *Broker) Conn() *nats.Conn { return b.nc }

// Close closes the connection after flushing what it buffered.
func (b *Broker) Close() error {
	if err := b.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		b.nc.Close()
		return fmt.Errorf("drain: %w", err)
	}
	return nil
}

// withDefaults fills cfg's zero fields with the defaults that apply on NATS.
func withDefaults(cfg broker.ScenarioConfig) broker.ScenarioConfig {
	if cfg.DedupWindow == 0 {
		cfg.DedupWindow = broker.DefaultDedupWindow
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = broker.DefaultAckWait
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	return cfg
}

func streamConfig(s string, cfg broker.ScenarioConfig) jetstream.StreamConfig {
	cfg = withDefaults(cfg)
	return jetstream.StreamConfig{
		Name:        event.StreamName(s),
		Description: "cascade scenario " + s,
		Subjects:    []string{event.Subject{Scenario: s}.String()},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    orUnlimited(cfg.MaxBytes),
		Duplicates:  cfg.DedupWindow,
		Replicas:    cfg.Replicas,
	}
}

func orUnlimited(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

// EnsureScenario creates the scenario's stream with cfg, or updates an existing stream's
// de-dup window and retention to cfg's: the owner's settings win. Consumers opened on this
// connection afterwards use cfg.AckWait. Partitions do not apply and are ignored.
func (b *Broker) EnsureScenario(ctx context.Context, s string, cfg broker.ScenarioConfig) error {
	if err := broker.CheckScenario(s, cfg); err != nil {
		return err
	}
	b.mu.Lock()
	have, done := b.owned[s]
	b.mu.Unlock()
	if done && have == cfg {
		return nil
	}
	if err := b.checkReplicas(cfg.Replicas); err != nil {
		return err
	}
	if _, err := b.js.CreateOrUpdateStream(ctx, streamConfig(s, cfg)); err != nil {
		return b.replicasError(cfg.Replicas, wrap(fmt.Errorf("configure stream %s: %w", event.StreamName(s), err)))
	}
	if err := b.registryReplicas(ctx, max(cfg.Replicas, 1)); err != nil {
		return err
	}
	b.mu.Lock()
	b.streams[s], b.owned[s] = true, cfg
	b.mu.Unlock()
	return nil
}

// checkReplicas refuses more than one replica on a server that is not part of a cluster
// (the server would refuse it too, less clearly).
func (b *Broker) checkReplicas(n int) error {
	if n > 1 && b.nc.ConnectedClusterName() == "" {
		return fmt.Errorf("%w: replicas %d: the NATS server at %s is a single server, not a cluster; use 1 replica or connect to a cluster",
			broker.ErrInvalidConfig, n, netaddr.Redact(b.nc.ConnectedUrlRedacted()))
	}
	return nil
}

// replicasError names the replica count when the server found too few peers to place it:
// a config error when the cluster has too few nodes, the broker unavailable (transient) when
// it has enough but some are offline (down, restarting, or too slow to report on a starved
// machine), to be tried again once they are back.
func (b *Broker) replicasError(n int, err error) error {
	var api *jetstream.APIError
	if n > 1 && peerOffline(err) { // wrap made it ErrUnavailable
		return fmt.Errorf("replicas %d: a JetStream node of NATS cluster %s is offline: %w", n, b.nc.ConnectedClusterName(), err)
	}
	if n > 1 && errors.As(err, &api) && (api.ErrorCode == errCodeInsufficientResources || api.ErrorCode == errCodeNoPeers || api.ErrorCode == errCodeReplicasNotClustered) {
		return fmt.Errorf("%w: replicas %d exceed the JetStream nodes of NATS cluster %s: %w", broker.ErrInvalidConfig, n, b.nc.ConnectedClusterName(), err)
	}
	return err
}

// peerOffline says whether err is the server's refusal to place a stream because a peer it
// needs is offline (not because the cluster has too few).
func peerOffline(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == errCodeNoPeers && strings.Contains(api.Description, "peer offline")
}

// errCodeDuplicateInProcess is a publish whose id another publish in flight carries (a
// retry racing the first try, seen when a stream changes leader): try again, when the
// first has settled it is a duplicate.
const errCodeDuplicateInProcess = 10158

// The JetStream API error codes the server answers a replica count it cannot place with.
const (
	errCodeNoPeers               = 10005 // no suitable peers for placement
	errCodeInsufficientResources = 10023 // insufficient resources
	errCodeReplicasNotClustered  = 10074 // replicas > 1 not supported in non-clustered mode
)

// scenarioConfig is what a consumer of s goes by: the config EnsureScenario applied on this
// connection, else the one recorded in s's binding, else the defaults. When the stream is
// not known to exist it creates it with that config, leaving an existing one as it is.
func (b *Broker) scenarioConfig(ctx context.Context, s string) (broker.ScenarioConfig, error) {
	if !event.ValidName(s) {
		return broker.ScenarioConfig{}, fmt.Errorf("%w: scenario %q must match %s", event.ErrInvalid, s, event.NamePattern)
	}
	b.mu.Lock()
	cfg, owned := b.owned[s]
	exists := b.streams[s]
	b.mu.Unlock()
	if !owned {
		bd, err := b.Registry().Get(ctx, s)
		switch {
		case err == nil:
			cfg = bd.Config
		case !errors.Is(err, broker.ErrNotFound):
			return cfg, err
		}
	}
	if !exists {
		if _, err := b.js.CreateStream(ctx, streamConfig(s, cfg)); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return cfg, b.replicasError(cfg.Replicas, wrap(fmt.Errorf("create stream %s: %w", event.StreamName(s), err)))
		}
		b.mu.Lock()
		b.streams[s] = true
		b.mu.Unlock()
	}
	return withDefaults(cfg), nil
}

// DeleteScenario deletes the scenario's stream and with it its consumers.
func (b *Broker) DeleteScenario(ctx context.Context, s string) error {
	b.mu.Lock()
	delete(b.streams, s)
	delete(b.owned, s)
	b.mu.Unlock()
	if err := b.js.DeleteStream(ctx, event.StreamName(s)); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("scenario %s: %w", s, broker.ErrNotFound)
		}
		return wrap(fmt.Errorf("delete stream %s: %w", event.StreamName(s), err))
	}
	return nil
}

// Publish sends every message asynchronously, then waits for each acknowledgement.
func (b *Broker) Publish(ctx context.Context, msgs []broker.Message) error {
	return broker.Wait(ctx, b.PublishAsync(ctx, msgs))
}

// PublishAsync hands every message to the connection (PublishMsgAsync) and settles once the
// stream has acknowledged each one, or at the first refusal.
func (b *Broker) PublishAsync(ctx context.Context, msgs []broker.Message) broker.Publication {
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	// One allocation for the batch's messages, and the id header set here rather than by
	// jetstream.WithMsgID, whose options nats.go allocates per message; the futures keep
	// their message (nats.go publishes it again on no responders), so nothing is reused.
	nms := make([]nats.Msg, len(msgs))
	for i := range msgs {
		m, nm := &msgs[i], &nms[i]
		nm.Subject, nm.Data = m.Subject, m.Data
		nm.Header = make(nats.Header, len(m.Header)+1)
		for k, v := range m.Header {
			nm.Header.Set(k, v)
		}
		if m.ID != "" {
			nm.Header.Set(jetstream.MsgIDHeader, m.ID)
		}
		f, err := b.js.PublishMsgAsync(nm)
		if err != nil {
			if b.nc.IsClosed() { // nats.go reports it without wrapping nats.ErrConnectionClosed
				return broker.Settled(fmt.Errorf("publish %s: %w: %w", m.Subject, broker.ErrClosed, err))
			}
			return broker.Settled(wrap(fmt.Errorf("publish %s: %w", m.Subject, err)))
		}
		futures = append(futures, f)
	}
	p := &sequenced{Pending: broker.NewPending(), seqs: make([]uint64, len(futures))}
	if len(futures) == 0 {
		p.Settle(nil)
		return p
	}
	go func() {
		for i, f := range futures {
			select {
			case ack := <-f.Ok():
				if !ack.Duplicate { // the stream holds the first copy, not necessarily this one
					p.seqs[i] = ack.Sequence
				}
			case err := <-f.Err():
				p.Settle(wrap(fmt.Errorf("publish %s: %w", f.Msg().Subject, err)))
				return
			case <-ctx.Done():
				p.Settle(ctx.Err())
				return
			}
		}
		p.Settle(nil)
	}()
	return p
}

// sequenced is a publication that knows, once settled, where each message was stored
// (broker.Sequenced).
type sequenced struct {
	*broker.Pending
	seqs []uint64
}

// Seqs are the stream sequences of the messages, once Done.
func (p *sequenced) Seqs() []uint64 { return p.seqs }

// LastSeq is the last sequence of the scenario's stream (broker.Sequencer).
func (b *Broker) LastSeq(ctx context.Context, s string) (uint64, error) {
	st, err := b.js.Stream(ctx, event.StreamName(s))
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return 0, fmt.Errorf("scenario %s: %w", s, broker.ErrNotFound)
		}
		return 0, wrap(fmt.Errorf("stream %s: %w", event.StreamName(s), err))
	}
	return st.CachedInfo().State.LastSeq, nil
}

// wrap classifies an error of nats.go for the port: what may pass (no responders,
// timeouts, disconnection, JetStream not ready, a duplicate id still in process) matches
// broker.ErrUnavailable, a closed connection broker.ErrClosed, and what the client or the
// server refused for what it is (a message over the size limit, a bad subject or header, a
// denied permission, any other JetStream API error) broker.ErrPermanent. A stream the
// cluster cannot place because a node is offline is unavailable: it can be placed once the
// node is back.
func wrap(err error) error {
	var api *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrConnectionClosed):
		return fmt.Errorf("%w: %w", broker.ErrClosed, err)
	case errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, nats.ErrNoServers):
		return fmt.Errorf("%w: %w", broker.ErrUnavailable, err)
	case errors.As(err, &api) && (api.Code == 503 || api.ErrorCode == errCodeDuplicateInProcess), peerOffline(err):
		return fmt.Errorf("%w: %w", broker.ErrUnavailable, err)
	case errors.As(err, &api), errors.Is(err, nats.ErrMaxPayload), errors.Is(err, nats.ErrBadSubject),
		errors.Is(err, nats.ErrBadHeaderMsg), errors.Is(err, nats.ErrPermissionViolation):
		return fmt.Errorf("%w: %w", broker.ErrPermanent, err)
	}
	return err
}

// delivery adapts a JetStream message.
type delivery struct {
	msg  jetstream.Msg
	m    broker.Message
	meta *jetstream.MsgMetadata
}

func newDelivery(msg jetstream.Msg) *delivery {
	d := &delivery{msg: msg, m: broker.Message{Subject: msg.Subject(), Data: msg.Data()}}
	// The de-duplication id is the message's ID, not one of its headers (as on Kafka), so a
	// message carrying only that id, as every event does, gets no header map at all.
	for k, v := range msg.Headers() {
		switch {
		case len(v) == 0:
		case k == jetstream.MsgIDHeader:
			d.m.ID = v[0]
		default:
			if d.m.Header == nil {
				d.m.Header = make(map[string]string, len(msg.Headers()))
			}
			d.m.Header[k] = v[0]
		}
	}
	d.meta, _ = msg.Metadata()
	return d
}

func (d *delivery) Message() *broker.Message { return &d.m }
func (d *delivery) Seq() uint64 {
	if d.meta == nil {
		return 0
	}
	return d.meta.Sequence.Stream
}
func (d *delivery) Cursor() string { return strconv.FormatUint(d.Seq(), 10) }
func (d *delivery) Time() time.Time {
	if d.meta == nil {
		return time.Time{}
	}
	return d.meta.Timestamp
}
func (d *delivery) Deliveries() int {
	if d.meta == nil {
		return 1
	}
	return int(d.meta.NumDelivered)
}

// MaxPayload is the largest message the server accepts, headers included.
func (b *Broker) MaxPayload() int { return int(b.nc.MaxPayload()) }

// Connected reports whether the connection to the server is up.
func (b *Broker) Connected() bool { return b.nc.IsConnected() }

// Features reports JetStream's capabilities: de-duplication by id (within each scenario's
// ScenarioConfig.DedupWindow; the default is reported), core NATS
// request/reply, reads by stream sequence, one total order per scenario stream, and the
// server's delivery count; no transactions.
func (b *Broker) Features() broker.Features {
	return broker.Features{
		DedupWindow:      broker.DefaultDedupWindow,
		RequestReply:     true,
		GetByPosition:    true,
		Ordering:         broker.OrderPerScenario,
		CountsDeliveries: true,
	}
}
