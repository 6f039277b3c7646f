package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// ErrInvalidOption is matched by every option error.
var ErrInvalidOption = errors.New("invalid option")

// The SASL mechanisms Options.SASLMechanism accepts.
const (
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

// Options configure a connection. Zero values take the documented defaults.
type Options struct {
	// Brokers are the bootstrap addresses, host:port; at least one is required.
	Brokers []string
	// ClientID is the client id the brokers see; default "cascade".
	ClientID string

	// Partitions, replication and retention are the scenario's, not the connection's: see
	// broker.ScenarioConfig and EnsureScenario.

	// BatchTimeout is how long the writer waits to fill a batch before sending it; default
	// 2ms. kafka-go's own default of 1s would be paid on every hop of the five-layer pipeline
	// (5s from a signal to its grid demand), so it is kept small on purpose: a publish is one
	// synchronous call that already hands the writer everything it has.
	BatchTimeout time.Duration
	// BatchSize is the largest number of messages sent to one partition in one request;
	// default 1000.
	BatchSize int

	// SessionTimeout is how long the group coordinator waits for a consumer's heartbeat before
	// it hands the consumer's partitions to others; default 10s.
	SessionTimeout time.Duration
	// RebalanceTimeout is how long the coordinator waits for every member to rejoin during a
	// rebalance; default 30s.
	RebalanceTimeout time.Duration
	// HeartbeatInterval is how often a consumer tells the coordinator it is alive and learns
	// of rebalances; default min(3s, SessionTimeout/3).
	HeartbeatInterval time.Duration
	// MaxWait bounds one long-poll fetch; default 1.25s. kafka-go keeps min(1s, MaxWait/4)
	// of it as a margin for the round trip and has the broker hold an empty fetch for the rest
	// (250ms by default), which is also how long a consumer may take to let go of its
	// partitions in a rebalance. A fetch answered later than MaxWait costs a reconnection, so
	// a MaxWait much below 1s reconnects all the time on a loaded cluster.
	MaxWait time.Duration
	// JoinDelay is how long a new consumer waits after it starts joining its group before it
	// hands out messages; default 0. Members started together then split the partitions
	// before any work is done, instead of the first one taking everything until a rebalance.
	// Kafka brokers do this for a new group (group.initial.rebalance.delay.ms, 3s by
	// default); kfake does not, so tests against it set JoinDelay.
	JoinDelay time.Duration
	// Prefetch is how many messages a consumer buffers ahead of Fetch; default 256.
	Prefetch int
	// FeedDedup is how many recent (id, body) pairs a feed remembers to drop the duplicates
	// at-least-once delivery leaves in a topic; default 65536 (a few MiB at most); negative
	// disables it.
	FeedDedup int
	// ConnectWait is how long Connect waits for a broker to answer; default 5s.
	ConnectWait time.Duration

	// TLSCA is a PEM CA bundle to verify the brokers with; setting any TLS field enables TLS
	// (with the system roots when TLSCA is empty).
	TLSCA string
	// TLSCert and TLSKey are a PEM client certificate and key for mutual TLS; both or neither.
	TLSCert string
	TLSKey  string

	// SASLMechanism is "", "plain", "scram-sha-256" or "scram-sha-512".
	SASLMechanism string
	// SASLUser is the SASL user name.
	SASLUser string
	// SASLPassword is the SASL password (the CLI takes it from the environment). It is never
	// logged or put in an error.
	SASLPassword string
	// SASLPasswordFile, when set, is read for the password (trailing newlines are dropped);
	// it wins over SASLPassword.
	SASLPasswordFile string

	// Logger receives warnings (topic layout, consumer trouble); default: discards.
	Logger zerolog.Logger
}

func (o *Options) defaults() error {
	if len(o.Brokers) == 0 {
		return fmt.Errorf("%w: no Kafka broker address given", ErrInvalidOption)
	}
	for _, b := range o.Brokers {
		if strings.TrimSpace(b) == "" || !strings.Contains(b, ":") {
			return fmt.Errorf("%w: broker address %q is not host:port", ErrInvalidOption, b)
		}
	}
	if o.ClientID == "" {
		o.ClientID = "cascade"
	}
	if o.BatchTimeout == 0 {
		o.BatchTimeout = 2 * time.Millisecond
	}
	if o.BatchSize == 0 {
		o.BatchSize = 1000
	}
	if o.SessionTimeout == 0 {
		o.SessionTimeout = 10 * time.Second
	}
	if o.RebalanceTimeout == 0 {
		o.RebalanceTimeout = 30 * time.Second
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = min(3*time.Second, o.SessionTimeout/3)
	}
	if o.MaxWait == 0 {
		o.MaxWait = 1250 * time.Millisecond
	}
	if o.Prefetch == 0 {
		o.Prefetch = 256
	}
	if o.FeedDedup == 0 {
		o.FeedDedup = 1 << 16
	}
	if o.ConnectWait == 0 {
		o.ConnectWait = 5 * time.Second
	}
	o.SASLMechanism = strings.ToLower(o.SASLMechanism)
	switch {
	case o.BatchTimeout < 0 || o.BatchSize < 1:
		return fmt.Errorf("%w: batch timeout and size must be positive", ErrInvalidOption)
	case o.SessionTimeout < 100*time.Millisecond || o.RebalanceTimeout < 100*time.Millisecond:
		return fmt.Errorf("%w: session and rebalance timeouts must be at least 100ms", ErrInvalidOption)
	case o.HeartbeatInterval <= 0 || o.HeartbeatInterval >= o.SessionTimeout:
		return fmt.Errorf("%w: heartbeat interval %s must be positive and below the session timeout %s", ErrInvalidOption, o.HeartbeatInterval, o.SessionTimeout)
	case o.MaxWait <= 0 || o.Prefetch < 1 || o.ConnectWait <= 0:
		return fmt.Errorf("%w: max wait, prefetch and connect wait must be positive", ErrInvalidOption)
	case o.JoinDelay < 0:
		return fmt.Errorf("%w: join delay must not be negative", ErrInvalidOption)
	case (o.TLSCert == "") != (o.TLSKey == ""):
		return fmt.Errorf("%w: TLS client certificate and key go together", ErrInvalidOption)
	}
	switch o.SASLMechanism {
	case "":
		if o.SASLUser != "" || o.SASLPassword != "" || o.SASLPasswordFile != "" {
			return fmt.Errorf("%w: SASL user or password given without a SASL mechanism", ErrInvalidOption)
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if o.SASLUser == "" {
			return fmt.Errorf("%w: SASL %s needs a user", ErrInvalidOption, o.SASLMechanism)
		}
		if o.SASLPasswordFile != "" {
			pw, err := os.ReadFile(o.SASLPasswordFile)
			if err != nil {
				// The path is not a secret; the error names only the path.
				return fmt.Errorf("%w: SASL password file: %w", ErrInvalidOption, err)
			}
			o.SASLPassword = strings.TrimRight(string(pw), "\r\n")
			o.SASLPasswordFile = ""
		}
		if o.SASLPassword == "" {
			return fmt.Errorf("%w: SASL %s needs a password (a password file or the environment)", ErrInvalidOption, o.SASLMechanism)
		}
	default:
		return fmt.Errorf("%w: SASL mechanism %q (want plain, scram-sha-256 or scram-sha-512)", ErrInvalidOption, o.SASLMechanism)
	}
	return nil
}

// tlsConfig builds the client TLS configuration, or nil when TLS is off.
func (o *Options) tlsConfig() (*tls.Config, error) {
	if o.TLSCA == "" && o.TLSCert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.TLSCA != "" {
		pem, err := os.ReadFile(o.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("%w: TLS CA: %w", ErrInvalidOption, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: TLS CA %s holds no PEM certificate", ErrInvalidOption, o.TLSCA)
		}
		cfg.RootCAs = pool
	}
	if o.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("%w: TLS client certificate: %w", ErrInvalidOption, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// mechanism builds the SASL mechanism, or nil when SASL is off.
func (o *Options) mechanism() (sasl.Mechanism, error) {
	switch o.SASLMechanism {
	case SASLPlain:
		return plain.Mechanism{Username: o.SASLUser, Password: o.SASLPassword}, nil
	case SASLScramSHA256, SASLScramSHA512:
		algo := scram.SHA256
		if o.SASLMechanism == SASLScramSHA512 {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, o.SASLUser, o.SASLPassword)
		if err != nil {
			// The scram package's errors never carry the password.
			return nil, fmt.Errorf("%w: SASL %s: %w", ErrInvalidOption, o.SASLMechanism, err)
		}
		return m, nil
	}
	return nil, nil
}

// MarshalZerologObject logs the options without any secret: the password shows only
// whether one is set.
func (o Options) MarshalZerologObject(e *zerolog.Event) {
	e.Strs("brokers", o.Brokers).Str("client_id", o.ClientID).
		Dur("batch_timeout", o.BatchTimeout).Dur("session_timeout", o.SessionTimeout).
		Bool("tls", o.TLSCA != "" || o.TLSCert != "").Str("sasl", o.SASLMechanism).
		Str("sasl_user", o.SASLUser).Bool("sasl_password_set", o.SASLPassword != "" || o.SASLPasswordFile != "")
}

// String describes the options without any secret, so that printing them with %v or %+v
// never shows the password.
func (o Options) String() string {
	pw := ""
	if o.SASLPassword != "" || o.SASLPasswordFile != "" {
		pw = " sasl_password=<redacted>"
	}
	return fmt.Sprintf("kafka.Options{brokers=%s tls=%t sasl=%q sasl_user=%q%s}",
		strings.Join(o.Brokers, ","), o.TLSCA != "" || o.TLSCert != "", o.SASLMechanism, o.SASLUser, pw)
}

// GoString is String, for %#v.
func (o Options) GoString() string { return o.String() }
