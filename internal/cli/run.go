package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"runtime/debug"
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
	"github.com/layercake/cascade/internal/lineage"
	"github.com/layercake/cascade/internal/metrics"
)

type serveFlags struct {
	dataDir      string
	natsListen   string
	natsConfig   string // nats-server config file with the embedded broker's authorization
	coefficients string
	batch        int
	poll         time.Duration

	httpListen string
	apiToken   string
	maxBody    int64
	indexDir   string // where run keeps its trace indexes; empty: no indexer
	pprof      bool
	memLimit   int64

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
	f.Int64Var(&s.memLimit, "memory-limit", 0, "soft memory limit in bytes for this process, embedded broker included (Go's GOMEMLIMIT; 0: none)")
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
			if err := s.checkHTTP(cmd); err != nil {
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
			return a.serve(ctx, b, event.ConsumerLayers, s)
		},
	}
	s.add(cmd, true)
	s.addHTTP(cmd)
	cmd.Flags().StringVar(&s.indexDir, "index-dir", "", "where the trace index is kept (default: <data-dir>/index)")
	cmd.Flags().StringVar(&s.coefficients, "coefficients", "", "coefficient file for scenario base (default: the embedded defaults)")
	return cmd
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

// serve runs layers for every registered scenario, and the HTTP API when it has an address,
// until ctx ends; then it drains.
func (a *app) serve(ctx context.Context, b broker.Broker, layers []event.Layer, s serveFlags) error {
	if s.memLimit > 0 {
		debug.SetMemoryLimit(s.memLimit)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	metrics.RegisterBuildInfo(reg, Version)
	ro := consumers.Options{Batch: s.batch, Metrics: m}
	var wg sync.WaitGroup
	defer wg.Wait()
	ix := a.indexer(ctx, &wg, b, s.indexDir)
	if ix != nil {
		defer ix.Close()
	}
	// Beside each served scenario's layers: the trace indexer, and the demand gauges where
	// /metrics is served.
	ro.Followers = map[string]consumers.Follower{}
	if ix != nil {
		ro.Followers["indexer"] = ix.Follow
	}
	if s.httpListen != "" {
		ro.Followers["demand gauges"] = func(ctx context.Context, scenario string) error { return m.FollowDemand(ctx, b, scenario) }
	}
	r := consumers.New(b, a.log, ro)
	if s.httpListen != "" {
		hopts := s.httpOptions(reg, func() error {
			if c, ok := b.(interface{ Connected() bool }); ok && !c.Connected() {
				return errors.New("broker disconnected")
			}
			return r.Ready()
		})
		if ix != nil {
			hopts.Trace = ix.Trace
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
	a.log.Info().Int("layers", len(layers)).Msg("serving; Ctrl-C drains and stops")
	err := r.Serve(ctx, layers, s.poll)
	a.log.Info().Msg("drained; stopped")
	return err
}

func (a *app) consumeCmd() *cobra.Command {
	var s serveFlags
	var layer string
	cmd := &cobra.Command{
		Use:   "consume --layer LAYER",
		Short: "Run one layer for every scenario; several processes of one layer share its work",
		Example: `  cascade consume --layer chips
  CASCADE_NATS_URL=nats://10.0.0.5:4222 cascade consume --layer energy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := event.ParseLayer(layer)
			if err != nil || !slices.Contains(event.ConsumerLayers, l) {
				return usageError("--layer %q: want %s", layer, event.JoinLayers(event.ConsumerLayers, "or"))
			}
			if err := s.checkHTTP(cmd); err != nil {
				return err
			}
			b, err := a.join(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			return a.serve(cmd.Context(), b, []event.Layer{l}, s)
		},
	}
	s.add(cmd, false)
	// A stage worker serves HTTP (probes, /metrics, the API) only when given an address:
	// several run on one machine.
	s.addHTTP(cmd)
	cmd.Flag("http-listen").DefValue, s.httpListen = "", ""
	cmd.Flags().StringVar(&layer, "layer", "", "layer to run: "+event.JoinLayers(event.ConsumerLayers, "or")+" (required)")
	_ = cmd.MarkFlagRequired("layer")
	return cmd
}

// indexer starts run's trace index when the broker can fetch a message by its position (both
// adapters), and answers trace requests of other processes over the broker when it carries
// request/reply (NATS).
func (a *app) indexer(ctx context.Context, wg *sync.WaitGroup, b broker.Broker, dir string) *lineage.Indexer {
	lb, ok := b.(lineage.Broker)
	if dir == "" || !ok {
		return nil
	}
	ix := &lineage.Indexer{B: lb, Dir: dir, Log: a.log}
	if resp, ok := b.(broker.Responder); ok {
		wg.Go(func() {
			if err := ix.Serve(ctx, resp); err != nil && ctx.Err() == nil {
				a.log.Warn().Err(err).Msg("trace responder stopped")
			}
		})
	}
	return ix
}
