// Package cli wires cascade's commands: flags (each also read from CASCADE_<FLAG>), logging,
// broker selection and the command implementations. cmd/cascade only calls Main.Run, so
// end-to-end tests drive exactly what users run.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/layercake/cascade/internal/event"
)

// Version is set at build time with -ldflags "-X github.com/layercake/cascade/internal/cli.Version=…".
var Version = "0.1.0-dev"

// Main is one invocation of the cascade command.
type Main struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Args   []string
	Getenv func(string) string // nil: no environment
}

// ExitError carries a process exit code.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}
func (e *ExitError) Unwrap() error { return e.Err }

func usageError(format string, args ...any) error {
	return &ExitError{Code: 2, Err: fmt.Errorf(format, args...)}
}

// globals are the flags every command has.
type globals struct {
	natsURL      string
	kafkaBrokers string
	scenario     string
	logLevel     string
	logFormat    string

	natsCreds, natsUser, natsPassword, natsToken string
	natsTLSCA, natsTLSCert, natsTLSKey           string

	ackWait     time.Duration
	dedupWindow time.Duration
	maxAge      time.Duration
	maxBytes    int64
}

type app struct {
	Main
	g     globals
	kafka *kafkaOptions
	log   zerolog.Logger
}

// Run executes the command line and returns the process exit code.
func (m Main) Run(ctx context.Context) int {
	if m.Getenv == nil {
		m.Getenv = func(string) string { return "" }
	}
	a := &app{Main: m}
	root := a.root()
	root.SetArgs(m.Args)
	root.SetIn(m.Stdin)
	root.SetOut(m.Stdout)
	root.SetErr(m.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintln(m.Stderr, "cascade:", ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintln(m.Stderr, "cascade:", err)
	if strings.HasPrefix(err.Error(), "unknown command") || strings.Contains(err.Error(), "flag") {
		return 2
	}
	return 1
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "cascade",
		Short: "Event-driven demand propagation through the five-layer AI stack",
		Long: `cascade turns market signals (adoption spikes, model releases, sovereign AI programmes) into
the demand they place on every layer below: tokens/day -> FLOP/s -> accelerators -> MW ->
generation, TWh and CO2. Every flag can also be set as CASCADE_<FLAG> (e.g. CASCADE_NATS_URL).`,
		Version:       Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.applyEnv(cmd); err != nil {
				return err
			}
			if !event.ValidName(a.g.scenario) {
				return usageError("--scenario %q must match %s", a.g.scenario, event.NamePattern)
			}
			return a.setupLog()
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&a.g.natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URL (run/demo embed one unless this is given)")
	f.StringVar(&a.g.kafkaBrokers, "kafka-brokers", "", "comma-separated Kafka bootstrap brokers; selects Kafka")
	f.StringVar(&a.g.scenario, "scenario", event.DefaultScenario, "scenario to work in")
	f.StringVar(&a.g.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&a.g.logFormat, "log-format", "auto", "json, console, or auto (console on a terminal)")
	f.StringVar(&a.g.natsCreds, "nats-creds", "", "NATS credentials file")
	f.StringVar(&a.g.natsUser, "nats-user", "", "NATS user (also required of clients by an embedded server)")
	f.StringVar(&a.g.natsPassword, "nats-password", "", "NATS password")
	f.StringVar(&a.g.natsToken, "nats-token", "", "NATS token (also required of clients by an embedded server)")
	f.StringVar(&a.g.natsTLSCA, "nats-tls-ca", "", "CA bundle to verify the NATS server")
	f.StringVar(&a.g.natsTLSCert, "nats-tls-cert", "", "client certificate for NATS mutual TLS")
	f.StringVar(&a.g.natsTLSKey, "nats-tls-key", "", "client key for NATS mutual TLS")
	f.DurationVar(&a.g.ackWait, "ack-wait", 30*time.Second, "redeliver an event not acknowledged within this time")
	f.DurationVar(&a.g.dedupWindow, "dedup-window", 2*time.Minute, "broker de-duplication window (NATS keeps ~130 bytes per message inside it)")
	f.DurationVar(&a.g.maxAge, "retention-max-age", 0, "drop stream messages older than this (0: keep)")
	f.Int64Var(&a.g.maxBytes, "retention-max-bytes", 0, "cap each scenario stream at this many bytes (0: unlimited)")
	a.kafka = kafkaFlags(f)
	a.kafka.getenv = a.Getenv

	root.AddCommand(a.runCmd(), a.demoCmd(), a.consumeCmd(), a.publishCmd(), a.subscribeCmd(),
		a.calcCmd(), a.coefficientsCmd(), a.schemasCmd(), a.scenarioCmd(), a.dlqCmd(),
		a.replayCmd(), a.totalsCmd(), a.traceCmd(), a.benchCmd(), a.devCmd())
	return root
}

// applyEnv sets every flag not given on the command line from CASCADE_<FLAG>, so the order of
// precedence is flag, then environment, then default.
func (a *app) applyEnv(cmd *cobra.Command) error {
	var errs []error
	apply := func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		name := "CASCADE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := a.Getenv(name); v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
				return
			}
			f.Changed = true
		}
	}
	cmd.Flags().VisitAll(apply)
	cmd.InheritedFlags().VisitAll(apply)
	if len(errs) > 0 {
		return &ExitError{Code: 2, Err: errors.Join(errs...)}
	}
	return nil
}

func (a *app) setupLog() error {
	lvl, err := zerolog.ParseLevel(a.g.logLevel)
	if err != nil || a.g.logLevel == "" {
		return usageError("--log-level %q: want debug, info, warn or error", a.g.logLevel)
	}
	// Layers log from many goroutines; SyncWriter keeps lines whole on any writer.
	var w io.Writer = zerolog.SyncWriter(a.Stderr)
	switch a.g.logFormat {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	case "auto":
		if isTerminal(a.Stderr) {
			w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
		}
	default:
		return usageError("--log-format %q: want json, console or auto", a.g.logFormat)
	}
	a.log = zerolog.New(w).Level(lvl).With().Timestamp().Logger()
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// changed reports whether the flag was given on the command line or in the environment.
func changed(cmd *cobra.Command, name string) bool {
	f := cmd.Flag(name)
	return f != nil && f.Changed
}
