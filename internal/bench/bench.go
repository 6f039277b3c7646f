// Package bench measures the pipeline against the raw broker it runs on, in one run: the raw
// ceiling (acknowledged publishes with ids at the pipeline's mean message size, then a durable
// consumer fetching and committing them), the pipeline at its maximum rate (generated signals
// through all five layers until every layer has acknowledged everything), and, after that
// pass, the latency from a signal's publish to the last grid event of its tree at a paced
// rate. It also reports the process's CPU time per signal and its peak resident memory.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/tree"
	"github.com/layercake/cascade/internal/view"
	"github.com/layercake/cascade/producers"
)

// The scenarios a run uses: the raw measurement's, deleted at its end, and the pipeline's.
const (
	RawScenario      = "bench-raw"
	PipelineScenario = "pipe"
)

// Config says what to measure.
type Config struct {
	Signals int                   // generated signals pushed through the pipeline at its maximum rate
	Batch   int                   // consumer batch size (consumers.Options.Batch)
	Stages  consumers.Stages      // how the layers are grouped into consumers; "" is consumers.Chained, as run does
	Rate    float64               // signals/s offered in the paced latency phase; 0: no paced phase
	Paced   int                   // signals of the paced phase; 0: five seconds' worth at Rate
	Storage broker.ScenarioConfig // storage settings of both scenarios
	Log     zerolog.Logger        // the layers' log
	// ViewDir, when set, runs the stages as run runs them, with their materialized view in
	// this directory: fed by them (on NATS), asking its id set about every input, and waited
	// for in the max-rate pass until it has applied everything.
	ViewDir string
	// CPUProfile, when set, receives a CPU profile (pprof) of the max-rate pass.
	CPUProfile io.Writer
	// Keep leaves PipelineScenario on the broker, to look at what the run stored; a later
	// run there refuses to start until it is removed.
	Keep bool
}

// Report is what a run measured.
type Report struct {
	Raw      Raw      `json:"raw"`
	Pipeline Pipeline `json:"pipeline"`
	Latency  *Latency `json:"latency,omitempty"` // nil without a paced phase
	// CPUSecondsPer1000Signals is this process's user and system CPU time during the
	// max-rate pass per 1,000 signals; an embedded broker's work is included.
	CPUSecondsPer1000Signals float64 `json:"cpu_seconds_per_1000_signals"`
	PeakRSSBytes             int64   `json:"peak_rss_bytes"` // this process's peak resident memory at the end of the run
}

// Raw is the raw broker's ceiling, measured on messages the size of the pipeline's.
type Raw struct {
	Messages         int     `json:"messages"`       // as many as the pipeline stores
	MessageBytes     int     `json:"message_bytes"`  // the mean size of the pipeline's messages
	PublishPerSecond float64 `json:"publish_per_s"`  // acknowledged publishes with ids per second
	ConsumePerSecond float64 `json:"consume_per_s"`  // durable fetch + commit per second
	PublishSeconds   float64 `json:"publish_s"`      // how long the publishes took
	ConsumeSeconds   float64 `json:"consume_s"`      // how long consuming them took
	PublishWindow    int     `json:"publish_window"` // publishes outstanding at once
}

// Pipeline is the max-rate pass: every signal published at once, timed until every layer
// has acknowledged everything.
type Pipeline struct {
	Stages string `json:"stages"`
	View   bool   `json:"view"` // the stages ran with their view, as run has them
	// With a view: the messages it took in from the stages and those it read from the log.
	ViewFromStages    int64   `json:"view_from_stages,omitempty"`
	ViewFromLog       int64   `json:"view_from_log,omitempty"`
	Signals           int     `json:"signals"`
	Derived           int     `json:"derived"` // events the signals derive, all stored
	Seconds           float64 `json:"seconds"`
	SignalsPerSecond  float64 `json:"signals_per_s"`
	StoredPerSecond   float64 `json:"stored_per_s"`         // signals and derived events stored per second
	RatioToRawPublish float64 `json:"ratio_to_raw_publish"` // StoredPerSecond / Raw.PublishPerSecond
}

// Latency is the paced phase: signals offered at Rate after the max-rate pass, each timed from
// just before its publish to the arrival of the last grid event of its tree on a feed, matched
// by correlationid.
type Latency struct {
	Rate         float64 `json:"rate"`          // signals/s offered
	AchievedRate float64 `json:"achieved_rate"` // signals/s actually published
	Published    int     `json:"published"`     // signals published
	Derived      int     `json:"derived"`       // events they derive, all stored
	Signals      int     `json:"signals"`       // signals timed (those whose tree reaches the grid)
	P50          Millis  `json:"p50_ms"`
	P90          Millis  `json:"p90_ms"`
	P99          Millis  `json:"p99_ms"`
	Max          Millis  `json:"max_ms"`
}

// Millis is a duration that JSON carries as fractional milliseconds.
type Millis time.Duration

// MarshalJSON writes the duration in milliseconds.
func (m Millis) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, "%.3f", float64(m)/float64(time.Millisecond)), nil
}

// UnmarshalJSON reads fractional milliseconds.
func (m *Millis) UnmarshalJSON(b []byte) error {
	var ms float64
	if _, err := fmt.Sscan(string(b), &ms); err != nil {
		return fmt.Errorf("milliseconds: %w", err)
	}
	*m = Millis(ms * float64(time.Millisecond))
	return nil
}

// String is the duration as time.Duration writes it.
func (m Millis) String() string { return time.Duration(m).String() }

// signal is one generated signal with what its tree holds.
type signal struct {
	msg     broker.Message // as producers publish it
	id      string         // its correlationid, which its derived events carry
	grids   int            // grid events its tree ends in
	derived int            // events its tree holds below it
	counted int            // events of its tree, itself included, that totals count
}

// Run measures on b: it uses the scenarios RawScenario and PipelineScenario and removes both
// when it returns (PipelineScenario not with c.Keep). It refuses to run where
// PipelineScenario is bound already (a bench interrupted before it could remove it, or a
// user's scenario of that name): its log would hold the signals this run publishes again,
// which the stages would take for duplicates.
func Run(ctx context.Context, b broker.Broker, c Config) (_ Report, err error) {
	if c.Stages == "" {
		c.Stages = consumers.Chained
	}
	if _, err := consumers.ParseStages(string(c.Stages)); err != nil {
		return Report{}, err
	}
	if c.Signals <= 0 || c.Rate < 0 || c.Paced < 0 {
		return Report{}, fmt.Errorf("bench: signals must be positive, rate and paced signals not negative (got %d, %v, %d)", c.Signals, c.Rate, c.Paced)
	}
	if c.Rate > 0 && c.Paced == 0 {
		c.Paced = max(1, int(5*c.Rate))
	}
	if c.Rate == 0 {
		c.Paced = 0
	}
	if _, err := b.Registry().Get(ctx, PipelineScenario); err == nil {
		return Report{}, fmt.Errorf("bench: %w: scenario %s is bound on this broker already (a bench interrupted before it removed it, or one of yours): remove it (cascade scenario rm %s) or bench another broker", broker.ErrConflict, PipelineScenario, PipelineScenario)
	} else if !errors.Is(err, broker.ErrNotFound) {
		return Report{}, err
	}
	coef := coefficients.Default()
	g := producers.NewGenerator(1, "bench-", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Second)
	sigs := make([]signal, c.Signals+c.Paced)
	rep := Report{Pipeline: Pipeline{Stages: string(c.Stages), View: c.ViewDir != "", Signals: c.Signals}}
	bytes := 0
	for i := range sigs {
		s, n, size, err := generate(ctx, coef, g.Next())
		if err != nil {
			return rep, err
		}
		sigs[i] = s
		if i < c.Signals {
			rep.Pipeline.Derived += n
			bytes += size
		}
	}
	rep.Raw.Messages = rep.Pipeline.Derived + c.Signals
	rep.Raw.MessageBytes = bytes / rep.Raw.Messages
	if err := raw(ctx, b, c.Storage, &rep.Raw); err != nil {
		return rep, err
	}
	stop, v, err := start(ctx, b, coef, c)
	if err != nil {
		return rep, err
	}
	defer func() { err = errors.Join(err, stop()) }()
	var want int64 // the events the view counts once it has applied the max-rate pass
	for _, sg := range sigs[:c.Signals] {
		want += int64(sg.counted)
	}
	if c.CPUProfile != nil {
		if err := pprof.StartCPUProfile(c.CPUProfile); err != nil {
			return rep, fmt.Errorf("cpu profile: %w", err)
		}
	}
	cpu0 := cpuTime()
	secs, err := maxRate(ctx, b, sigs[:c.Signals], c.Stages, v, want)
	cpu := cpuTime() - cpu0
	if c.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return rep, err
	}
	p := &rep.Pipeline
	if v != nil {
		p.ViewFromStages, p.ViewFromLog = v.Sources()
	}
	p.Seconds = secs
	p.SignalsPerSecond = float64(p.Signals) / secs
	p.StoredPerSecond = float64(p.Signals+p.Derived) / secs
	p.RatioToRawPublish = p.StoredPerSecond / rep.Raw.PublishPerSecond
	rep.CPUSecondsPer1000Signals = cpu.Seconds() / float64(p.Signals) * 1000
	if c.Paced > 0 {
		lat, err := paced(ctx, b, c.Rate, sigs[c.Signals:])
		if err != nil {
			return rep, err
		}
		rep.Latency = lat
	}
	rep.PeakRSSBytes = peakRSS()
	return rep, nil
}

// generate prepares a generated signal and expands its tree: the signal, the number of events
// it derives and the bytes it and they take on the wire.
func generate(ctx context.Context, c *coefficients.Loaded, raw []byte) (signal, int, int, error) {
	ev, err := producers.Prepare(raw, PipelineScenario, time.Now())
	if err != nil {
		return signal{}, 0, 0, err
	}
	p, err := event.DecodePayload(ev.Type, ev.Data)
	if err != nil {
		return signal{}, 0, 0, err
	}
	root, err := tree.Expand(ctx, c, ev, p)
	if err != nil {
		return signal{}, 0, 0, err
	}
	m, err := producers.Message(ev)
	if err != nil {
		return signal{}, 0, 0, err
	}
	s := signal{msg: m, id: ev.ID}
	if ev.CorrelationID != "" {
		s.id = ev.CorrelationID
	}
	derived, size := -1, 0
	var walk func(*tree.Node) error
	walk = func(n *tree.Node) error {
		body, err := n.Event.Marshal()
		if err != nil {
			return err
		}
		derived, size = derived+1, size+len(body)
		if event.Counted(n.Event.Type) {
			s.counted++
		}
		if n.Event.Type == event.TypeDemandGrid {
			s.grids++
		}
		for _, c := range n.Children {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(root); err != nil {
		return s, 0, 0, err
	}
	s.derived = derived
	return s, derived, size, nil
}

// publishWindow is how many raw publishes are outstanding at once: the port's Publish
// waits for a batch's acknowledgements, so batches of this size go out back to back.
const publishWindow = 1000

// raw measures acknowledged publishes and durable consume+commit of r.Messages messages of
// r.MessageBytes bytes on a scenario of its own, which it deletes before (what an interrupted
// bench left there would be counted, or taken for duplicates) and after.
func raw(ctx context.Context, b broker.Broker, cfg broker.ScenarioConfig, r *Raw) (err error) {
	const s = RawScenario
	if err := remove(ctx, b, s); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, remove(ctx, b, s)) }()
	if err := b.EnsureScenario(ctx, s, cfg); err != nil {
		return err
	}
	body := make([]byte, r.MessageBytes)
	for i := range body {
		body[i] = 'x'
	}
	r.PublishWindow = publishWindow
	start := time.Now()
	msgs := make([]broker.Message, 0, publishWindow)
	for i := 0; i < r.Messages; i++ {
		msgs = append(msgs, broker.Message{Subject: event.SignalSubject(s, event.Chips, "us"), ID: fmt.Sprintf("raw-%d", i), Data: body})
		if len(msgs) == publishWindow || i == r.Messages-1 {
			if err := b.Publish(ctx, msgs); err != nil {
				return err
			}
			msgs = msgs[:0]
		}
	}
	r.PublishSeconds = time.Since(start).Seconds()
	r.PublishPerSecond = float64(r.Messages) / r.PublishSeconds
	c, err := b.Consumer(ctx, s, event.Chips)
	if err != nil {
		return err
	}
	defer c.Close()
	start = time.Now()
	for got := 0; got < r.Messages; {
		ds, err := c.Fetch(ctx, 256)
		if err != nil {
			return err
		}
		if err := c.Commit(ctx, ds); err != nil {
			return err
		}
		got += len(ds)
	}
	r.ConsumeSeconds = time.Since(start).Seconds()
	r.ConsumePerSecond = float64(r.Messages) / r.ConsumeSeconds
	return nil
}

// start binds the pipeline's scenario and runs its layers (with their view when c.ViewDir
// is set) until stop, which waits for them and removes the scenario (unless c.Keep).
func start(ctx context.Context, b broker.Broker, coef *coefficients.Loaded, c Config) (func() error, *view.View, error) {
	const s = PipelineScenario
	if err := consumers.BindScenario(ctx, b, s, coef, c.Storage); err != nil {
		return nil, nil, err
	}
	o := consumers.Options{Batch: c.Batch, Stages: c.Stages}
	var v *view.View
	if c.ViewDir != "" {
		vb, ok := b.(view.Broker)
		if !ok {
			return nil, nil, fmt.Errorf("bench: a view needs a broker that fetches by position")
		}
		v = &view.View{B: vb, Dir: c.ViewDir, Log: c.Log}
		v.Attach(&o)
	}
	run, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop := func() error {
		cancel()
		wg.Wait()
		if v != nil {
			_ = v.Close()
		}
		if c.Keep {
			return nil
		}
		return remove(ctx, b, s)
	}
	r := consumers.New(b, c.Log, o)
	wg.Go(func() { _ = r.Serve(run, event.ConsumerLayers, 100*time.Millisecond) })
	for r.Ready() != nil {
		select {
		case <-ctx.Done():
			return nil, nil, errors.Join(ctx.Err(), stop())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return stop, v, nil
}

// ErrCleanup is matched by Run's error when only removing a scenario failed: the report,
// measured in full, is still returned with it.
var ErrCleanup = errors.New("bench: a scenario was not removed")

// remove deletes scenario s's storage and binding, even once ctx has ended (a bench stopped
// by Ctrl-C cleans up after itself too); its error matches ErrCleanup.
func remove(ctx context.Context, b broker.Broker, s string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := b.DeleteScenario(ctx, s)
	if errors.Is(err, broker.ErrNotFound) {
		err = nil
	}
	if err = errors.Join(err, b.Registry().Delete(ctx, s)); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrCleanup, s, err)
	}
	return nil
}

// maxRate publishes the signals, prepared and checked beforehand as producers publish them,
// in acknowledged batches of 1,000 and returns the seconds until every stage has
// acknowledged everything.
func maxRate(ctx context.Context, b broker.Broker, sigs []signal, mode consumers.Stages, v *view.View, events int64) (float64, error) {
	msgs := make([]broker.Message, len(sigs))
	for i, s := range sigs {
		msgs[i] = s.msg
	}
	start := time.Now()
	for i := 0; i < len(msgs); i += 1000 {
		if err := b.Publish(ctx, msgs[i:min(i+1000, len(msgs))]); err != nil {
			return 0, err
		}
	}
	if err := drained(ctx, b, mode); err != nil {
		return 0, err
	}
	if err := applied(ctx, v, events); err != nil {
		return 0, err
	}
	return time.Since(start).Seconds(), nil
}

// applied waits until view v (when there is one) counts events events of the pipeline's
// scenario.
func applied(ctx context.Context, v *view.View, events int64) error {
	for v != nil {
		t, err := v.Totals(ctx, query.TotalsOptions{Scenario: PipelineScenario})
		if err != nil {
			return err
		}
		if int64(t.Events) >= events {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// drained waits until no stage of the pipeline's scenario lags, twice in a row: a batch may
// move between stages while they are read.
func drained(ctx context.Context, b broker.Broker, mode consumers.Stages) error {
	for quiet := 0; quiet < 2; {
		var lag uint64
		for _, st := range consumers.Group(event.ConsumerLayers, mode) {
			n, err := b.StageLag(ctx, PipelineScenario, st)
			if err != nil {
				return err
			}
			lag += n
		}
		if lag == 0 {
			quiet++
		} else {
			quiet = 0
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// pacedWait bounds how long the paced phase waits for the grid events of its last signals.
const pacedWait = 30 * time.Second

// paced offers the signals at rate, each published on its own as its turn comes (up to 256
// at once, so a slow acknowledgement does not hold back the next), and times each from just
// before its publish to the last grid event of its tree on a grid feed opened beforehand.
func paced(ctx context.Context, b broker.Broker, perSecond float64, sigs []signal) (*Latency, error) {
	f, err := b.Feed(ctx, broker.FeedOptions{Selector: broker.Selector{Scenario: PipelineScenario, Kinds: []event.Kind{event.KindDemand}, Layers: []event.Layer{event.Grid}}})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	type pending struct {
		sent   time.Time
		remain int
	}
	var mu sync.Mutex
	open := make(map[string]*pending, len(sigs))
	var lats []time.Duration
	want := 0
	for _, s := range sigs {
		if s.grids > 0 {
			want++
		}
	}
	all := make(chan struct{})
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var readErr error
	go func() { // reads the grid feed until every timed signal has its last grid event
		defer close(all)
		for len(lats) < want {
			d, err := f.Next(fctx)
			if err != nil {
				readErr = err
				return
			}
			now := time.Now()
			ev, _, err := event.Decode(d.Message().Data)
			if err != nil {
				continue
			}
			mu.Lock()
			if p := open[ev.CorrelationID]; p != nil {
				if p.remain--; p.remain == 0 {
					lats = append(lats, now.Sub(p.sent))
					delete(open, ev.CorrelationID)
				}
			}
			mu.Unlock()
		}
	}()
	lim := rate.NewLimiter(rate.Limit(perSecond), 1)
	var eg errgroup.Group
	eg.SetLimit(256)
	start := time.Now()
	for _, s := range sigs {
		if err := lim.Wait(ctx); err != nil {
			return nil, err
		}
		eg.Go(func() error {
			mu.Lock()
			if s.grids > 0 {
				open[s.id] = &pending{sent: time.Now(), remain: s.grids}
			}
			mu.Unlock()
			return b.Publish(ctx, []broker.Message{s.msg})
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	lat := &Latency{Rate: perSecond, AchievedRate: float64(len(sigs)) / time.Since(start).Seconds(), Published: len(sigs)}
	for _, s := range sigs {
		lat.Derived += s.derived
	}
	select {
	case <-all:
	case <-time.After(pacedWait):
		cancel()
		<-all
	}
	if readErr != nil && !errors.Is(readErr, context.Canceled) {
		return nil, fmt.Errorf("grid feed: %w", readErr)
	}
	if len(lats) < want {
		return nil, fmt.Errorf("paced phase: %d of %d signals' trees did not reach the grid within %s of the last publish", want-len(lats), want, pacedWait)
	}
	slices.Sort(lats)
	lat.Signals = len(lats)
	if len(lats) > 0 {
		lat.P50, lat.P90, lat.P99, lat.Max = quantile(lats, 0.50), quantile(lats, 0.90), quantile(lats, 0.99), Millis(lats[len(lats)-1])
	}
	return lat, nil
}

// quantile is the q-quantile of sorted durations (nearest rank).
func quantile(sorted []time.Duration, q float64) Millis {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return Millis(sorted[min(max(i, 0), len(sorted)-1)])
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS is this process's peak resident set size in bytes (Linux reports it in KiB).
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024
}
