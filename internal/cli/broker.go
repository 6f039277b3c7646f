package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/spf13/cobra"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/natsjs"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/netaddr"
)

func (a *app) natsOptions() natsjs.Options {
	return natsjs.Options{
		URL: a.g.natsURL, CredsFile: a.g.natsCreds, User: a.g.natsUser, Password: a.g.natsPassword, Token: a.g.natsToken,
		TLSCA: a.g.natsTLSCA, TLSCert: a.g.natsTLSCert, TLSKey: a.g.natsTLSKey,
	}
}

// connect opens the broker named by the global flags.
func (a *app) connect(ctx context.Context) (broker.Broker, error) {
	if a.g.kafkaBrokers != "" {
		return a.kafka.connect(ctx, a.g.kafkaBrokers, a.log)
	}
	return natsjs.Connect(ctx, a.natsOptions())
}

// join connects to the outside broker named by the global flags, after logging on one line
// which one it is (credentials redacted).
func (a *app) join(ctx context.Context) (broker.Broker, error) {
	if a.g.kafkaBrokers != "" {
		brokers := netaddr.Redact(a.g.kafkaBrokers)
		a.log.Info().Str("broker", "kafka").Str("brokers", brokers).Msg("broker: external Kafka at " + brokers)
		return a.connect(ctx)
	}
	url := netaddr.Redact(a.g.natsURL)
	msg := "broker: external NATS at " + url
	if url != a.g.natsURL {
		msg += " (credentials redacted)"
	}
	a.log.Info().Str("broker", "nats").Str("url", url).Msg(msg)
	return a.connect(ctx)
}

// embedded is a broker started by this process, with what it takes to stop it. It embeds the
// adapter itself, so its optional abilities (Get, Respond, Connected) stay visible.
type embedded struct {
	*natsjs.Broker
	server *server.Server
	unlock func()
}

func (e *embedded) Close() error {
	err := e.Broker.Close()
	e.server.Shutdown()
	e.server.WaitForShutdown()
	if e.unlock != nil {
		e.unlock()
	}
	return err
}

// brokerFor returns the broker of a command that may embed one (run, demo, bench): an
// outside broker when --nats-url or --kafka-brokers was given, else an embedded nats-server
// as so says (the credentials come from the global flags) with its store in so.DataDir, which
// is locked against a second process. It logs on one line which broker it uses.
func (a *app) brokerFor(ctx context.Context, cmd *cobra.Command, so natsjs.ServerOptions) (broker.Broker, error) {
	if a.g.kafkaBrokers != "" || changed(cmd, "nats-url") {
		return a.join(ctx)
	}
	if err := os.MkdirAll(so.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	unlock, err := lockDir(so.DataDir)
	if err != nil {
		return nil, err
	}
	so.User, so.Password, so.Token = a.g.natsUser, a.g.natsPassword, a.g.natsToken
	ns, err := natsjs.StartServer(so)
	if err != nil {
		unlock()
		return nil, err
	}
	o := a.natsOptions()
	o.URL = ns.ClientURL()
	b, err := natsjs.Connect(ctx, o)
	if err != nil {
		ns.Shutdown()
		unlock()
		return nil, err
	}
	a.log.Info().Str("broker", "nats-embedded").Str("url", ns.ClientURL()).Str("data_dir", so.DataDir).
		Msgf("broker: embedded NATS JetStream, store %s, clients on %s", so.DataDir, ns.ClientURL())
	return &embedded{Broker: b, server: ns, unlock: unlock}, nil
}

// lockDir takes an exclusive lock on dir so that two processes never share a store.
func lockDir(dir string) (func(), error) {
	path := filepath.Join(dir, "cascade.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir %s is in use by another cascade process (%w); stop it or pass another --data-dir", dir, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// loadCoefficients reads --coefficients, or the embedded defaults when it is empty.
func loadCoefficients(path string) (*coefficients.Loaded, error) {
	if path == "" {
		return coefficients.Default(), nil
	}
	return coefficients.Load(path)
}
