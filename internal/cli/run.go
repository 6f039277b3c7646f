package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/natsjs"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/httpapi"
	"github.com/layercake/cascade/internal/metrics"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/view"
)

type serveFlags struct {
	dataDir      string
	natsListen   string
	natsConfig   string // nats-server config file with the embedded broker's authorization
	coefficients string
	batch        int
	poll         time.Duration
	stages       string // run: chained or per-layer
	maxInflight  int
	takeOver     bool

	httpListen string
	apiToken   string
	maxBody    int64
	indexDir   string // where run keeps its view and trace index; empty: none
	pprof      bool
	memLimit   string // --memory-limit: a size, or 0/off

	httpLimits httpapi.Options // timeouts, connection and feed caps, signal rate (addHTTP)
}

// addHTTP registers the flags of the commands that serve the HTTP API.
func (s *serveFlags) addHTTP(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.httpListen, "http-listen", "127.0.0.1:8080", "HTTP API, metrics and web page address (empty: none)")
	f.StringVar(&s.apiToken, "api-token", "", "bearer token required on /v1/ (required off loopback)")
	f.Int64Var(&s.maxBody, "http-max-body", 1<<20, "largest POST /v1/signals body in bytes")
	f.BoolVar(&s.pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on the HTTP address")
	l := &s.httpLimits
	f.DurationVar(&l.ReadTimeout, "http-read-timeout", 30*time.Second, "longest time to read a request, body included")
	f.DurationVar(&l.WriteTimeout, "http-write-timeout", 60*time.Second, "longest time to write an answer (an SSE feed renews it on each write)")
	f.DurationVar(&l.IdleTimeout, "http-idle-timeout", 60*time.Second, "how long an idle keep-alive connection stays open")
	f.IntVar(&l.MaxConns, "http-max-conns", 512, "concurrent HTTP connections; more wait to be accepted")
	f.IntVar(&l.MaxFeeds, "http-max-feeds", 100, "concurrent SSE feeds; more are answered 503")
	f.Float64Var(&l.SignalRate, "http-signal-rate", 50, "POST /v1/signals per second per client IP, beyond which 429 (0: no limit)")
	f.IntVar(&l.SignalBurst, "http-signal-burst", 100, "POST /v1/signals a client IP may send at once above the rate")
}

func (s *serveFlags) add(cmd *cobra.Command, embeds bool) {
	f := cmd.Flags()
	if embeds {
		f.StringVar(&s.dataDir, "data-dir", "cascade-data", "embedded broker's store (locked while running)")
		f.StringVar(&s.natsListen, "nats-listen", "127.0.0.1:4222", "embedded broker's client address")
		f.StringVar(&s.natsConfig, "nats-server-config", "", "nats-server config file whose authorization and accounts the embedded broker uses (then --nats-user/--nats-password/--nats-token/--nats-creds are this process's own login)")
	}
	f.IntVar(&s.batch, "batch", 256, "events per consumer batch")
	f.StringVar(&s.memLimit, "memory-limit", DefaultMemoryLimit, "soft memory limit of this process, embedded broker included, e.g. 384MiB or 1GiB (Go's GOMEMLIMIT, which is used instead when set and this flag is not given; 0 or off: none)")
	f.BoolVar(&s.takeOver, "take-over", false, "start a stage that overlaps other stages' consumers (switching between chained and per-layer) where the broker stands, while their processes still run, and remove them once they have committed everything up to there")
	f.IntVar(&s.maxInflight, "max-inflight", 4096, "published messages per stage awaiting the broker's ack while the stage goes on fetching and deriving")
	f.DurationVar(&s.poll, "scenario-poll", 2*time.Second, "how often new scenarios are looked for")
}

func (a *app) runCmd() *cobra.Command {
	var s serveFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the embedded broker (unless a broker is named) and all five layers for every scenario",
		Example: `  cascade run
  cascade run --data-dir /var/lib/cascade --coefficients my-coefficients.yaml
  cascade run --nats-url nats://nats.internal:4222 --nats-creds cascade.creds`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			coef, err := loadCoefficients(s.coefficients)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if _, err := consumers.ParseStages(s.stages); err != nil {
				return usageError("%v", err)
			}
			if err := s.check(); err != nil {
				return err
			}
			if err := s.checkHTTP(cmd); err != nil {
				return err
			}
			if err := s.applyMemoryLimit(cmd, a.Getenv); err != nil {
				return err
			}
			cfg, err := a.scenarioConfig()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			b, err := a.brokerFor(ctx, cmd, natsjs.ServerOptions{DataDir: s.dataDir, Listen: s.natsListen, ConfigFile: s.natsConfig})
			if err != nil {
				return err
			}
			defer b.Close()
			if err := consumers.BindScenario(ctx, b, event.DefaultScenario, coef, cfg); err != nil {
				if errors.Is(err, broker.ErrConflict) {
					return fmt.Errorf("%w\nthe store already holds scenario base with other coefficients: pass the same --coefficients as before, use a fresh --data-dir, or put the new set in a what-if scenario (cascade replay --into NAME --coefficients FILE)", err)
				}
				return err
			}
			a.log.Info().Str("scenario", event.DefaultScenario).Str("coefversion", coef.CoefVersion).Msg("scenario registered")
			if s.indexDir == "" {
				s.indexDir = filepath.Join(s.dataDir, "index")
			}
			mode, _ := consumers.ParseStages(s.stages) // checked before the broker started
			return a.serve(ctx, b, consumers.Group(event.ConsumerLayers, mode), s)
		},
	}
	s.add(cmd, true)
	s.addHTTP(cmd)
	cmd.Flags().StringVar(&s.indexDir, "index-dir", "", "where the view (totals, series, trace index) is kept (default: <data-dir>/index)")
	cmd.Flags().StringVar(&s.stages, "stages", string(consumers.Chained), "chained: all five layers in one stage (consumer cascade-<s>-application-energy); per-layer: one stage per layer (cascade-<s>-<layer>)")
	cmd.Flags().StringVar(&s.coefficients, "coefficients", "", "coefficient file for scenario base (default: the embedded defaults)")
	return cmd
}

// check refuses a window that is not positive.
func (s *serveFlags) check() error {
	if s.maxInflight <= 0 {
		return usageError("--max-inflight %d: must be positive", s.maxInflight)
	}
	return nil
}

// checkHTTP refuses, before anything starts, a blank --api-token, an HTTP address reachable
// from other machines without a token, and an address already in use.
func (s *serveFlags) checkHTTP(cmd *cobra.Command) error {
	if err := s.checkToken(cmd); err != nil {
		return err
	}
	if s.httpListen == "" {
		return nil
	}
	lim := s.httpLimits
	for _, d := range []struct {
		flag string
		bad  bool
	}{
		{"--http-read-timeout", lim.ReadTimeout <= 0}, {"--http-write-timeout", lim.WriteTimeout <= 0}, {"--http-idle-timeout", lim.IdleTimeout <= 0},
		{"--http-max-conns", lim.MaxConns <= 0}, {"--http-max-feeds", lim.MaxFeeds <= 0}, {"--http-signal-burst", lim.SignalBurst <= 0},
		{"--http-max-body", s.maxBody <= 0}, {"--http-signal-rate", lim.SignalRate < 0},
	} {
		if d.bad {
			return usageError("%s %s: must be positive (--http-signal-rate 0 alone means no limit)", d.flag, cmd.Flag(strings.TrimPrefix(d.flag, "--")).Value)
		}
	}
	if _, err := httpapi.New(nil, s.httpOptions(nil, nil)); err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	l, err := net.Listen("tcp", s.httpListen)
	if err != nil {
		return fmt.Errorf("--http-listen %s: %w", s.httpListen, err)
	}
	return l.Close()
}

// checkToken refuses an --api-token that was given empty or blank.
func (s *serveFlags) checkToken(cmd *cobra.Command) error {
	if changed(cmd, "api-token") && strings.TrimSpace(s.apiToken) == "" {
		return usageError("--api-token is empty or blank; give a token or leave the flag out")
	}
	return nil
}

func (s *serveFlags) httpOptions(reg prometheus.Gatherer, ready func() error) httpapi.Options {
	o := s.httpLimits
	if o.SignalRate == 0 {
		o.SignalRate = -1 // the flag's 0 is no limit; the option's is the default
	}
	o.Listen, o.Token, o.MaxBody, o.Gatherer, o.Ready, o.Pprof = s.httpListen, s.apiToken, s.maxBody, reg, ready, s.pprof
	return o
}

// serve runs stages for every registered scenario, and the HTTP API when it has an address,
// until ctx ends; then it drains.
func (a *app) serve(ctx context.Context, b broker.Broker, stages []event.Stage, s serveFlags) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	metrics.RegisterBuildInfo(reg, Version)
	ro := consumers.Options{Batch: s.batch, MaxInflight: s.maxInflight, TakeOver: s.takeOver, Metrics: m}
	var wg sync.WaitGroup
	defer wg.Wait()
	// One view per served scenario (totals, series and snapshots, the trace index, and the
	// demand gauges where /metrics is served), fed by the stages on NATS, by a reader of the
	// log on Kafka.
	v := a.view(ctx, &wg, b, s.indexDir)
	if v != nil {
		// The stages ask the view's id set before publishing what may be stored already,
		// and hand it what they read and publish.
		v.Attach(&ro)
		defer v.Close()
		if s.httpListen != "" {
			v.Committed = func(ctx context.Context, scenario string) {
				if t, err := v.Totals(ctx, query.TotalsOptions{Scenario: scenario, ByRegion: true}); err == nil {
					m.SetDemand(scenario, t.Rows)
				}
			}
		}
		ro.Followers["view"] = func(ctx context.Context, scenario string) error {
			defer m.ForgetDemand(scenario)
			return v.Follow(ctx, scenario)
		}
	} else if b.Features().RequestReply {
		ro.IDs = view.Remote{B: b} // the id set of a run's view, over request/reply
	}
	r := consumers.New(b, a.log, ro)
	if s.httpListen != "" {
		hopts := s.httpOptions(reg, func() error {
			if c, ok := b.(interface{ Connected() bool }); ok && !c.Connected() {
				return errors.New("broker disconnected")
			}
			return r.Ready()
		})
		if v != nil {
			hopts.Trace, hopts.View = v.Trace, v
		}
		srv, err := httpapi.New(b, hopts)
		if err != nil {
			return &ExitError{Code: 2, Err: err}
		}
		errc := make(chan error, 1)
		wg.Go(func() {
			errc <- srv.Serve(ctx, func(addr string) {
				a.log.Info().Str("url", "http://"+addr).Msg("HTTP API and web page ready")
			})
		})
		select {
		case err := <-errc:
			if err != nil {
				return err
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
	names := make([]string, len(stages))
	for i, st := range stages {
		names[i] = st.String()
	}
	a.log.Info().Strs("stages", names).Msg("serving; Ctrl-C drains and stops")
	err := r.ServeStages(ctx, stages, s.poll)
	a.log.Info().Msg("drained; stopped")
	return err
}

func (a *app) consumeCmd() *cobra.Command {
	var s serveFlags
	var layer, layers string
	var remove []string
	cmd := &cobra.Command{
		Use:   "consume --layer LAYER | --layers FIRST-LAST | --remove CONSUMER",
		Short: "Run one layer, or a range of layers as one stage, for every scenario; several processes of one stage share its work",
		Long: `Runs one stage for every scenario: --layer L the one-layer stage (consumer cascade-<s>-L),
--layers FIRST-LAST the layers FIRST to LAST chained in one consumer (cascade-<s>-FIRST-LAST),
which reads the signals of its layers and the demand placed on FIRST and derives the rest in
memory. Stages must tile the layers: one that shares a layer with a consumer the broker holds
(running or left by an earlier run) refuses to start and names it. --remove deletes such a
consumer of --scenario (stop its processes first; what it had not committed is lost to it).`,
		Example: `  cascade consume --layer chips
  cascade consume --layers model-chips
  CASCADE_NATS_URL=nats://10.0.0.5:4222 cascade consume --layer energy
  cascade consume --remove cascade-base-chips --remove cascade-base-energy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			given := 0
			for _, f := range []string{"layer", "layers", "remove"} {
				if changed(cmd, f) {
					given++
				}
			}
			if given != 1 {
				return usageError("give one of --layer, --layers and --remove")
			}
			var st event.Stage
			switch {
			case layer != "":
				l, err := event.ParseLayer(layer)
				if err != nil || !slices.Contains(event.ConsumerLayers, l) {
					return usageError("--layer %q: want %s", layer, event.JoinLayers(event.ConsumerLayers, "or"))
				}
				st = event.LayerStage(l)
			case layers != "":
				var err error
				if st, err = event.ParseStage(layers); err != nil {
					return usageError("--layers: %v", err)
				}
			}
			if err := s.check(); err != nil {
				return err
			}
			if err := s.applyMemoryLimit(cmd, a.Getenv); err != nil {
				return err
			}
			if err := s.checkHTTP(cmd); err != nil {
				return err
			}
			b, err := a.join(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			if len(remove) > 0 {
				return a.removeConsumers(cmd.Context(), b, remove)
			}
			return a.serve(cmd.Context(), b, []event.Stage{st}, s)
		},
	}
	s.add(cmd, false)
	// A stage worker serves HTTP (probes, /metrics, the API) only when given an address:
	// several run on one machine.
	s.addHTTP(cmd)
	cmd.Flag("http-listen").DefValue, s.httpListen = "", ""
	cmd.Flags().StringVar(&layer, "layer", "", "layer to run: "+event.JoinLayers(event.ConsumerLayers, "or"))
	cmd.Flags().StringVar(&layers, "layers", "", "range of layers to run as one stage, FIRST-LAST top to bottom (model-chips)")
	cmd.Flags().StringArrayVar(&remove, "remove", nil, "delete this consumer of --scenario (repeatable) and exit")
	return cmd
}

// removeConsumers deletes the named stage consumers of the --scenario.
func (a *app) removeConsumers(ctx context.Context, b broker.Broker, names []string) error {
	for _, n := range names {
		if _, ok := event.StageOfConsumer(a.g.scenario, n); !ok {
			return usageError("--remove %q is not a stage consumer of scenario %s (cascade-%s-<layer> or cascade-%s-<first>-<last>)", n, a.g.scenario, a.g.scenario, a.g.scenario)
		}
		if err := b.RemoveConsumer(ctx, a.g.scenario, n); err != nil {
			return err
		}
		fmt.Fprintf(a.Stdout, "removed %s\n", n)
	}
	return nil
}

// view opens run's view in dir when the broker can fetch a message by its position (both
// adapters), and answers trace, totals, series and snapshot requests of other processes over
// the broker when it carries request/reply (NATS).
func (a *app) view(ctx context.Context, wg *sync.WaitGroup, b broker.Broker, dir string) *view.View {
	vb, ok := b.(view.Broker)
	if dir == "" || !ok {
		return nil
	}
	v := &view.View{B: vb, Dir: dir, Log: a.log}
	if resp, ok := b.(broker.Responder); ok {
		wg.Go(func() {
			if err := v.Serve(ctx, resp); err != nil && ctx.Err() == nil {
				a.log.Warn().Err(err).Msg("trace responder stopped")
			}
		})
		wg.Go(func() {
			if err := v.ServeQueries(ctx, resp); err != nil && ctx.Err() == nil {
				a.log.Warn().Err(err).Msg("view responder stopped")
			}
		})
	}
	return v
}
