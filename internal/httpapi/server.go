// Package httpapi serves cascade over HTTP: signal ingest, Server-Sent-Event feeds, totals,
// trace and scenarios under /v1/ (optionally behind a bearer token), Prometheus metrics,
// health and readiness probes, and the embedded web page of the five-layer cake.
package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"golang.org/x/net/netutil"
	"golang.org/x/time/rate"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/lineage"
	"github.com/layercake/cascade/internal/netaddr"
	"github.com/layercake/cascade/internal/view"
)

// Options configure the server. Zero values take the documented defaults; a negative
// timeout or limit is refused with ErrInvalid.
type Options struct {
	Listen   string        // default 127.0.0.1:8080
	Token    string        // bearer token required on /v1/ when set
	MaxBody  int64         // request body limit; default 1 MiB
	Scenario string        // scenario used when a request names none; default base
	Ping     time.Duration // SSE keep-alive comment interval; default 15s
	// Gatherer serves /metrics; default prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Ready reports whether the broker is connected and every layer consuming (/readyz).
	Ready func() error
	// Pprof serves Go's profiles under /debug/pprof/ (behind the token, like /v1/).
	Pprof bool
	// Trace answers /v1/trace, saying which finder answered (the "via" of the reply);
	// default: lineage.ScanTrace, which reads the scenario.
	Trace func(ctx context.Context, scenario, id string) (*lineage.Answer, error)
	// View answers /v1/totals, /v1/series and snapshot feeds from run's materialized view;
	// without it totals are summed by a scan, and series and snapshots are unavailable (503).
	View *view.View
	// ReadOnly leaves POST /v1/signals out (`cascade view` serves only what it reads).
	ReadOnly bool
	Log      zerolog.Logger

	// ReadTimeout bounds reading a whole request, body included; default 30s. SSE feeds lift
	// it once their request is read.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response; default 60s. SSE feeds renew it before each
	// write, so a stream lives as long as its client reads it.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no next request; default 60s.
	IdleTimeout time.Duration
	// MaxConns caps concurrent connections; further ones wait to be accepted; default 512.
	MaxConns int
	// MaxFeeds caps concurrent SSE streams; beyond it a feed answers 503; default 100.
	MaxFeeds int
	// SignalRate limits POST /v1/signals per client IP, in requests per second, with bursts
	// of SignalBurst; beyond it the answer is 429 with Retry-After. Defaults 50 and 100; a
	// negative SignalRate means no limit.
	SignalRate  float64
	SignalBurst int
}

// ErrInsecure is returned for a non-loopback listen address without a token.
var ErrInsecure = errors.New("insecure listen address")

// ErrInvalid is returned for an option out of its range; the error names the option's flag.
var ErrInvalid = errors.New("invalid HTTP option")

// Server is the HTTP API.
type Server struct {
	b       broker.Broker
	opts    Options
	mux     *http.ServeMux
	feeds   chan struct{}  // one token per open SSE stream
	signals *clientLimiter // POST /v1/signals per client IP; nil: no limit
}

// New validates the options and builds the routes.
func New(b broker.Broker, o Options) (*Server, error) {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8080"
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 1 << 20
	}
	if o.Scenario == "" {
		o.Scenario = "base"
	}
	if o.Ping <= 0 {
		o.Ping = 15 * time.Second
	}
	if o.Trace == nil {
		o.Trace = func(ctx context.Context, scenario, id string) (*lineage.Answer, error) {
			return lineage.ScanTrace(ctx, b, scenario, id)
		}
	}
	if o.Gatherer == nil {
		o.Gatherer = prometheus.DefaultGatherer
	}
	for _, d := range []struct {
		flag string
		v    *time.Duration
		def  time.Duration
	}{{"--http-read-timeout", &o.ReadTimeout, 30 * time.Second}, {"--http-write-timeout", &o.WriteTimeout, 60 * time.Second}, {"--http-idle-timeout", &o.IdleTimeout, 60 * time.Second}} {
		if *d.v < 0 {
			return nil, fmt.Errorf("%w: %s %v: must be positive", ErrInvalid, d.flag, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for _, n := range []struct {
		flag string
		v    *int
		def  int
	}{{"--http-max-conns", &o.MaxConns, 512}, {"--http-max-feeds", &o.MaxFeeds, 100}, {"--http-signal-burst", &o.SignalBurst, 100}} {
		if *n.v < 0 {
			return nil, fmt.Errorf("%w: %s %d: must be positive", ErrInvalid, n.flag, *n.v)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	if o.SignalRate == 0 {
		o.SignalRate = 50
	}
	host, _, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("--http-listen %q: %w", o.Listen, err)
	}
	if !netaddr.IsLoopback(host) && o.Token == "" {
		return nil, fmt.Errorf("%w: --http-listen %s is reachable from other machines; set --api-token (or CASCADE_API_TOKEN) or listen on 127.0.0.1", ErrInsecure, o.Listen)
	}
	s := &Server{b: b, opts: o, mux: http.NewServeMux(), feeds: make(chan struct{}, o.MaxFeeds)}
	if o.SignalRate > 0 {
		s.signals = newClientLimiter(rate.Limit(o.SignalRate), o.SignalBurst)
	}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	v1 := func(pattern string, h http.HandlerFunc) { s.mux.Handle(pattern, s.auth(h)) }
	if !s.opts.ReadOnly {
		s.mux.Handle("POST /v1/signals", s.limit(s.auth(http.HandlerFunc(s.postSignals))))
	}
	v1("GET /v1/feeds/{layer}", s.getFeed)
	v1("GET /v1/feeds", s.getFeed)
	v1("GET /v1/scenarios", s.getScenarios)
	v1("GET /v1/totals", s.getTotals)
	v1("GET /v1/series", s.getSeries)
	v1("GET /v1/topology", s.getTopology)
	v1("GET /v1/trace/{id}", s.getTrace)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok") })
	s.mux.HandleFunc("GET /readyz", s.getReady)
	s.mux.Handle("GET /", pageHandler())
	if s.opts.Pprof {
		s.mux.Handle("GET /debug/pprof/", s.auth(http.HandlerFunc(pprof.Index)))
		s.mux.Handle("GET /debug/pprof/profile", s.auth(http.HandlerFunc(pprof.Profile)))
	}
}

// Handler is the whole API, for tests and embedding.
func (s *Server) Handler() http.Handler { return secure(s.mux) }

// Serve listens until ctx ends, then shuts down, letting open requests finish for a few seconds.
// ready receives the bound address once the listener is open.
func (s *Server) Serve(ctx context.Context, ready func(addr string)) error {
	l, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	l = netutil.LimitListener(l, s.opts.MaxConns)
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: min(10*time.Second, s.opts.ReadTimeout),
		ReadTimeout:       s.opts.ReadTimeout,
		WriteTimeout:      s.opts.WriteTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if ready != nil {
		ready(l.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shut)
	return nil
}

// auth requires the bearer token on /v1/ when one is configured.
func (s *Server) auth(next http.Handler) http.Handler {
	if s.opts.Token == "" {
		return next
	}
	want := []byte(s.opts.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The scheme is case-insensitive (RFC 9110, 11.1); the token is compared in constant time.
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimLeft(got, " ")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cascade"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) getReady(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
	}
	writeText(w, http.StatusOK, "ready")
}

func (s *Server) getScenarios(w http.ResponseWriter, r *http.Request) {
	if _, err := params(r); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	list, err := s.b.Registry().List(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	type scenario struct {
		Scenario    string    `json:"scenario"`
		CoefVersion string    `json:"coefversion"`
		Created     time.Time `json:"registered"`
	}
	out := make([]scenario, len(list))
	for i, b := range list {
		out[i] = scenario{b.Scenario, b.CoefVersion, b.Created}
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // the answer is JSON for programs: "|x| <= 1e21", not "\u003c="
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(strings.TrimSpace(msg) + "\n"))
}
