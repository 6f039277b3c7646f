package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/kafka"
)

// kafkaPasswordEnv holds the SASL password when no --kafka-sasl-password-file is given. There
// is deliberately no password flag: a flag shows in ps and in shell history.
const kafkaPasswordEnv = "CASCADE_KAFKA_SASL_PASSWORD"

// kafkaOptions are the Kafka flags; the broker list is the global --kafka-brokers.
type kafkaOptions struct {
	partitions       int
	replication      int
	tlsCA            string
	tlsCert          string
	tlsKey           string
	saslMechanism    string
	saslUser         string
	saslPasswordFile string
	// getenv reads kafkaPasswordEnv; nil means os.Getenv.
	getenv func(string) string
}

// kafkaFlags registers the Kafka flags on f (the root command's persistent flags).
func kafkaFlags(f *pflag.FlagSet) *kafkaOptions {
	o := &kafkaOptions{}
	f.IntVar(&o.partitions, "kafka-partitions", 6, "partitions of the Kafka topics cascade creates (existing topics are used as they are)")
	f.IntVar(&o.replication, "kafka-replication", 0, "replication factor of the Kafka topics cascade creates (0: min(3, brokers))")
	f.StringVar(&o.tlsCA, "kafka-tls-ca", "", "CA bundle to verify the Kafka brokers (enables TLS)")
	f.StringVar(&o.tlsCert, "kafka-tls-cert", "", "client certificate for Kafka mutual TLS (enables TLS)")
	f.StringVar(&o.tlsKey, "kafka-tls-key", "", "client key for Kafka mutual TLS")
	f.StringVar(&o.saslMechanism, "kafka-sasl-mechanism", "", "Kafka SASL mechanism: plain, scram-sha-256 or scram-sha-512")
	f.StringVar(&o.saslUser, "kafka-sasl-user", "", "Kafka SASL user")
	f.StringVar(&o.saslPasswordFile, "kafka-sasl-password-file", "", "file holding the Kafka SASL password (else $"+kafkaPasswordEnv+")")
	return o
}

// connect opens the Kafka cluster at brokers (comma-separated host:port). Bad flags are usage
// errors (exit 2); a cluster that does not answer is an error matching broker.ErrUnavailable.
func (o *kafkaOptions) connect(ctx context.Context, brokers string, log zerolog.Logger) (broker.Broker, error) {
	var addrs []string
	for _, a := range strings.Split(brokers, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	getenv := o.getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	opts := kafka.Options{
		Brokers:          addrs,
		Partitions:       o.partitions,
		Replication:      o.replication,
		TLSCA:            o.tlsCA,
		TLSCert:          o.tlsCert,
		TLSKey:           o.tlsKey,
		SASLMechanism:    o.saslMechanism,
		SASLUser:         o.saslUser,
		SASLPasswordFile: o.saslPasswordFile,
		Logger:           log,
	}
	if opts.SASLMechanism != "" && opts.SASLPasswordFile == "" {
		opts.SASLPassword = getenv(kafkaPasswordEnv)
	}
	if o.partitions < 1 {
		return nil, usageError("--kafka-partitions %d: want a positive count", o.partitions)
	}
	b, err := kafka.Connect(ctx, opts)
	if err != nil {
		if errors.Is(err, kafka.ErrInvalidOption) {
			return nil, &ExitError{Code: 2, Err: fmt.Errorf("kafka flags: %w", err)}
		}
		return nil, err
	}
	return b, nil
}
