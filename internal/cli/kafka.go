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
	tlsCA            string
	tlsCert          string
	tlsKey           string
	saslMechanism    string
	saslUser         string
	saslPasswordFile string
	// getenv reads kafkaPasswordEnv; nil means os.Getenv.
	getenv func(string) string
}

// flags registers the Kafka connection flags on f (of a command that connects).
func (o *kafkaOptions) flags(f *pflag.FlagSet) {
	f.StringVar(&o.tlsCA, "kafka-tls-ca", "", "CA bundle to verify the Kafka brokers (enables TLS)")
	f.StringVar(&o.tlsCert, "kafka-tls-cert", "", "client certificate for Kafka mutual TLS (enables TLS)")
	f.StringVar(&o.tlsKey, "kafka-tls-key", "", "client key for Kafka mutual TLS")
	f.StringVar(&o.saslMechanism, "kafka-sasl-mechanism", "", "Kafka SASL mechanism: plain, scram-sha-256 or scram-sha-512")
	f.StringVar(&o.saslUser, "kafka-sasl-user", "", "Kafka SASL user")
	f.StringVar(&o.saslPasswordFile, "kafka-sasl-password-file", "", "file holding the Kafka SASL password (else $"+kafkaPasswordEnv+")")
}

// connect opens the Kafka cluster at brokers (comma-separated host:port). Bad flags are
// errors matching kafka.ErrInvalidOption; a cluster that does not answer is an error
// matching broker.ErrUnavailable.
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
	b, err := kafka.Connect(ctx, opts)
	switch {
	case errors.Is(err, kafka.ErrInvalidOption):
		return nil, fmt.Errorf("kafka flags: %w", err)
	case err != nil:
		return nil, err
	}
	return b, nil
}
