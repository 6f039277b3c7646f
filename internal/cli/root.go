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
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/kafka"
	"github.com/layercake/cascade/internal/broker/natsjs"
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
}

// storage are the flags of a scenario's owner (run, demo, bench, replay, scenario create):
// its broker.ScenarioConfig.
type storage struct {
	ackWait     time.Duration
	dedupWindow time.Duration
	maxAge      time.Duration
	maxBytes    int64
	partitions  int
	replication int
	replicas    int
}

type app struct {
	Main
	g     globals
	st    storage
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
	if !errors.As(err, &ee) || ee.Err != nil {
		fmt.Fprintln(m.Stderr, "cascade:", err)
	}
	return exitCode(err)
}

// exitCode is the one rule from an error to the process exit code, for every command and
// both brokers: usage errors (bad flag values, flags that do not apply, bad arguments, bad
// broker options or storage settings) exit 2, everything else 1; an ExitError says its own.
func exitCode(err error) int {
	var ee *ExitError
	switch {
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, natsjs.ErrInvalidOption), errors.Is(err, kafka.ErrInvalidOption), errors.Is(err, broker.ErrInvalidConfig),
		strings.HasPrefix(err.Error(), "unknown command"), strings.HasPrefix(err.Error(), "required flag"):
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
			if err := a.refuseForeign(cmd); err != nil {
				return err
			}
			if !event.ValidName(a.g.scenario) {
				return usageError("--scenario %q must match %s", a.g.scenario, event.NamePattern)
			}
			return a.setupLog()
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &ExitError{Code: 2, Err: err} })
	f := root.PersistentFlags()
	f.StringVar(&a.g.scenario, "scenario", event.DefaultScenario, "scenario to work in")
	f.StringVar(&a.g.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&a.g.logFormat, "log-format", "auto", "json, console, or auto (console on a terminal)")
	a.kafka = &kafkaOptions{getenv: a.Getenv}

	run, demo, bench, replay, scenario := a.runCmd(), a.demoCmd(), a.benchCmd(), a.replayCmd(), a.scenarioCmd()
	for _, c := range []*cobra.Command{run, demo, bench, replay, a.consumeCmd(), a.publishCmd(), a.subscribeCmd(),
		scenario, a.dlqCmd(), a.totalsCmd(), a.traceCmd(), a.seriesCmd(), a.viewCmd(), a.connectCmd()} {
		a.brokerFlags(c.PersistentFlags())
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{run, demo, bench, replay, scenarioCreate(scenario)} {
		a.storageFlags(c.Flags())
	}
	root.AddCommand(a.calcCmd(), a.calibrateCmd(), a.coefficientsCmd(), a.schemasCmd(), a.devCmd(), a.healthcheckCmd(), a.soakCmd())
	usageArgs(root)
	return root
}

// usageArgs makes the argument errors of cmd and its subcommands usage errors (exit 2).
func usageArgs(cmd *cobra.Command) {
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			return nil
		}
	}
	for _, c := range cmd.Commands() {
		usageArgs(c)
	}
}

// scenarioCreate is the create subcommand of the scenario command.
func scenarioCreate(scenario *cobra.Command) *cobra.Command {
	for _, c := range scenario.Commands() {
		if c.Name() == "create" {
			return c
		}
	}
	panic("scenario has no create command")
}

// brokerFlags registers the flags that select and reach a broker on f: those of the commands
// that connect.
func (a *app) brokerFlags(f *pflag.FlagSet) {
	f.StringVar(&a.g.natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URL (run/demo embed one unless this is given)")
	f.StringVar(&a.g.kafkaBrokers, "kafka-brokers", "", "comma-separated Kafka bootstrap brokers; selects Kafka")
	f.StringVar(&a.g.natsCreds, "nats-creds", "", "NATS credentials file")
	f.StringVar(&a.g.natsUser, "nats-user", "", "NATS user (also required of clients by an embedded server)")
	f.StringVar(&a.g.natsPassword, "nats-password", "", "NATS password")
	f.StringVar(&a.g.natsToken, "nats-token", "", "NATS token (also required of clients by an embedded server)")
	f.StringVar(&a.g.natsTLSCA, "nats-tls-ca", "", "CA bundle to verify the NATS server")
	f.StringVar(&a.g.natsTLSCert, "nats-tls-cert", "", "client certificate for NATS mutual TLS")
	f.StringVar(&a.g.natsTLSKey, "nats-tls-key", "", "client key for NATS mutual TLS")
	a.kafka.flags(f)
}

// storageFlags registers the scenario owner's storage settings on f.
func (a *app) storageFlags(f *pflag.FlagSet) {
	f.DurationVar(&a.st.ackWait, "ack-wait", broker.DefaultAckWait, "NATS: redeliver an event not acknowledged within this time (recorded in the scenario; its consumers use it)")
	f.DurationVar(&a.st.dedupWindow, "dedup-window", broker.DefaultDedupWindow, "NATS: de-duplication window of the scenario's stream (~130 bytes per message inside it)")
	f.DurationVar(&a.st.maxAge, "retention-max-age", 0, "drop stored messages older than this (NATS stream max age, Kafka retention.ms; 0: keep on NATS, the cluster's default on Kafka)")
	f.Int64Var(&a.st.maxBytes, "retention-max-bytes", 0, "cap the scenario's storage at this many bytes (NATS stream, Kafka retention.bytes per partition; 0: unlimited on NATS, the cluster's default on Kafka)")
	f.IntVar(&a.st.partitions, "kafka-partitions", broker.DefaultPartitions, "Kafka: partitions of the topics the scenario is created with (existing topics keep theirs)")
	f.IntVar(&a.st.replication, "kafka-replication", 0, "Kafka: replication factor of the topics the scenario is created with (0: min(3, brokers)); the same as --replicas")
	f.IntVar(&a.st.replicas, "replicas", 0, "copies of the scenario's storage, at most the cluster's size: NATS stream and registry bucket replicas (0: 1), Kafka topics' replication factor (0: min(3, brokers))")
}

// natsOnly are the flags that apply only on NATS; every other "kafka-" flag but
// --kafka-brokers applies only on Kafka.
var natsOnly = []string{"nats-url", "nats-creds", "nats-user", "nats-password", "nats-token", "nats-tls-ca", "nats-tls-cert", "nats-tls-key",
	"nats-listen", "nats-server-config", "dedup-window", "ack-wait"}

// refuseForeign refuses, as a usage error naming it, a flag given (on the command line or in
// the environment) that does not apply to the broker chosen: NATS flags with --kafka-brokers,
// Kafka flags without.
func (a *app) refuseForeign(cmd *cobra.Command) error {
	if cmd.Flags().Lookup("kafka-brokers") == nil {
		return nil
	}
	onKafka := a.g.kafkaBrokers != ""
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		switch {
		case !f.Changed:
		case onKafka && slices.Contains(natsOnly, f.Name):
			errs = append(errs, fmt.Errorf("--%s does not apply to Kafka (--kafka-brokers is given); leave it out", f.Name))
		case !onKafka && strings.HasPrefix(f.Name, "kafka-") && f.Name != "kafka-brokers":
			errs = append(errs, fmt.Errorf("--%s applies only to Kafka; give --kafka-brokers or leave it out", f.Name))
		}
	})
	if len(errs) > 0 {
		return &ExitError{Code: 2, Err: errors.Join(errs...)}
	}
	return nil
}

// scenarioConfig is the owner's storage settings for the broker chosen, from its flags; a bad
// value is a usage error.
func (a *app) scenarioConfig() (broker.ScenarioConfig, error) {
	cfg := broker.ScenarioConfig{MaxAge: a.st.maxAge, MaxBytes: a.st.maxBytes, Replicas: a.st.replicas}
	if a.st.replicas < 0 {
		return cfg, usageError("--replicas %d: want 0 or a positive count", a.st.replicas)
	}
	if a.g.kafkaBrokers != "" {
		if a.st.partitions < 1 {
			return cfg, usageError("--kafka-partitions %d: want a positive count", a.st.partitions)
		}
		if a.st.replication < 0 {
			return cfg, usageError("--kafka-replication %d: want 0 or a positive count", a.st.replication)
		}
		if a.st.replicas != 0 && a.st.replication != 0 && a.st.replicas != a.st.replication {
			return cfg, usageError("--replicas %d and --kafka-replication %d disagree; give one", a.st.replicas, a.st.replication)
		}
		cfg.Partitions, cfg.Replicas = a.st.partitions, max(a.st.replicas, a.st.replication)
	} else {
		cfg.DedupWindow, cfg.AckWait = a.st.dedupWindow, a.st.ackWait
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageError("storage flags (--dedup-window, --ack-wait, --retention-max-age, --retention-max-bytes): %w", err)
	}
	return cfg, nil
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
