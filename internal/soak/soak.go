// Package soak runs cascade's chained pipeline on a 3-node NATS JetStream cluster of child
// processes for a while, publishing generated signals at a steady rate and injecting faults on
// a timer (the stream leader killed and restarted, a stage worker SIGKILLed, a random node
// killed and restarted later), and then checks that every event the formulas derive from the
// signals is stored exactly once and that the totals are the formulas'.
package soak

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/natsjs"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/tree"
	"github.com/layercake/cascade/producers"
)

// Fault is one kind of fault the soak injects.
type Fault string

// The faults a soak can inject.
const (
	FaultLeader Fault = "leader" // SIGKILL the node leading the scenario's stream; restart it once another leads
	FaultWorker Fault = "worker" // SIGKILL a stage worker mid-batch; it is started again
	FaultNode   Fault = "node"   // SIGKILL a random node; restart it half a fault interval later
)

// ParseFaults reads a comma-separated list of faults (leader, worker, node).
func ParseFaults(s string) ([]Fault, error) {
	var out []Fault
	for f := range strings.SplitSeq(s, ",") {
		switch ft := Fault(strings.TrimSpace(f)); ft {
		case FaultLeader, FaultWorker, FaultNode:
			if !slices.Contains(out, ft) {
				out = append(out, ft)
			}
		case "":
		default:
			return nil, fmt.Errorf("fault %q: want leader, worker or node", f)
		}
	}
	return out, nil
}

// Options configure a soak.
type Options struct {
	Exe        string        // the cascade binary, re-executed as `dev nats-node` and `consume`
	Dir        string        // the nodes' stores
	Duration   time.Duration // how long signals are published and faults injected
	Faults     []Fault       // injected in turn, one every FaultEvery
	FaultEvery time.Duration // default Duration/20, between 5s and 30s
	Rate       int           // signals per second; default 50
	Workers    int           // worker processes of the chained stage; default 2
	Seed       uint64        // of the signal generator
	Settle     time.Duration // longest wait for the pipeline to catch up at the end; default 5m
	Logs       io.Writer     // the children's logs (stderr); default discarded
	Progress   io.Writer     // one line per fault and phase; default discarded
}

// Report is what a soak found.
type Report struct {
	Duration   time.Duration
	Faults     map[Fault]int
	Exits      int // worker exits the soak did not cause (each restarted)
	Signals    int // signals published (acknowledged by the cluster)
	Checked    int // derived events expected from the signals, each looked for
	Lost       int // expected events not stored
	Duplicated int // extra copies of stored events
	Unexpected int // stored events the signals do not derive
	Totals     []string
	CaughtUp   bool // the pipeline had no lag left when checked
}

// OK is whether nothing was lost, duplicated or unexpected and the totals are the formulas'.
func (r *Report) OK() bool {
	return r.Lost == 0 && r.Duplicated == 0 && r.Unexpected == 0 && len(r.Totals) == 0
}

// Print writes the report, one figure a line.
func (r *Report) Print(w io.Writer) {
	n := 0
	var parts []string
	for _, f := range []Fault{FaultLeader, FaultWorker, FaultNode} {
		if c, ok := r.Faults[f]; ok {
			n += c
			parts = append(parts, fmt.Sprintf("%s %d", f, c))
		}
	}
	fmt.Fprintf(w, "duration: %s (%.1f signals/s published)\n", r.Duration.Round(time.Second), float64(r.Signals)/r.Duration.Seconds())
	fmt.Fprintf(w, "faults injected: %d (%s)\n", n, strings.Join(parts, ", "))
	fmt.Fprintf(w, "unplanned worker exits: %d\n", r.Exits)
	fmt.Fprintf(w, "signals: %d\n", r.Signals)
	fmt.Fprintf(w, "events checked: %d\n", r.Checked)
	fmt.Fprintf(w, "lost: %d\n", r.Lost)
	fmt.Fprintf(w, "duplicated: %d\n", r.Duplicated)
	fmt.Fprintf(w, "unexpected: %d\n", r.Unexpected)
	if len(r.Totals) == 0 {
		fmt.Fprintln(w, "totals: equal to the formulas")
	} else {
		fmt.Fprintf(w, "totals: %s\n", strings.Join(r.Totals, "; "))
	}
}

const scenario = event.DefaultScenario

func (o *Options) defaults() error {
	if o.Exe == "" || o.Dir == "" {
		return errors.New("soak: Exe and Dir are required")
	}
	if o.Duration <= 0 {
		return fmt.Errorf("duration %s: want more than 0", o.Duration)
	}
	if o.FaultEvery == 0 {
		o.FaultEvery = min(max(o.Duration/20, 5*time.Second), 30*time.Second)
	}
	if o.Rate == 0 {
		o.Rate = 50
	}
	if o.Workers == 0 {
		o.Workers = 2
	}
	if o.Settle == 0 {
		o.Settle = 5 * time.Minute
	}
	if o.Logs == nil {
		o.Logs = io.Discard
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	switch {
	case o.Rate < 0:
		return fmt.Errorf("rate %d: want signals per second, more than 0", o.Rate)
	case o.Workers < 1:
		return fmt.Errorf("workers %d: want 1 or more", o.Workers)
	case o.FaultEvery < time.Second:
		return fmt.Errorf("fault interval %s: want 1s or more", o.FaultEvery)
	}
	return nil
}

// soak is one run's state.
type soak struct {
	o       Options
	nodes   []*proc
	workers []*proc
	urls    string
	js      jetstream.JetStream
	rng     *rand.Rand

	supervisors sync.WaitGroup // of the workers

	mu     sync.Mutex
	report Report
}

// Run soaks the pipeline as o says and reports what it found; the error is for a soak that
// could not be run (a cluster that would not start), not for lost or duplicated events.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	s := &soak{o: o, rng: rand.New(rand.NewPCG(o.Seed, 7))}
	s.report.Faults = map[Fault]int{}
	for _, f := range o.Faults {
		s.report.Faults[f] = 0
	}
	// The workers' supervisors end first, then every child is stopped.
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		s.supervisors.Wait()
		s.stopAll()
	}()
	if err := s.startCluster(ctx); err != nil {
		return nil, err
	}
	nc, err := nats.Connect(s.urls, nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connect to the cluster: %w", err)
	}
	defer nc.Close()
	if s.js, err = jetstream.New(nc); err != nil {
		return nil, err
	}
	b, err := natsjs.Connect(ctx, natsjs.Options{URL: s.urls, Name: "cascade-soak", ConnectWait: 30 * time.Second, APITimeout: 15 * time.Second})
	if err != nil {
		return nil, err
	}
	defer func() { _ = b.Close() }()
	coef := coefficients.Default()
	// The workers are `cascade consume` with no view to ask, so the stream's window is what
	// keeps a killed worker's redeliveries from being stored twice: well above the ack wait,
	// as the README asks of such a deployment (the 10 s default is not).
	if err := consumers.BindScenario(ctx, b, scenario, coef, broker.ScenarioConfig{Replicas: 3, AckWait: 5 * time.Second, DedupWindow: 2 * time.Minute}); err != nil {
		return nil, err
	}
	for i := range o.Workers {
		w := &proc{name: "w" + strconv.Itoa(i+1), args: []string{"consume", "--layers", event.Chain.String(),
			"--nats-url", s.urls, "--http-listen", "", "--log-format", "json", "--log-level", "warn"}}
		s.workers = append(s.workers, w)
		s.supervisors.Go(func() { s.supervise(ctx, w) })
	}
	fmt.Fprintf(o.Progress, "soak: %s on a 3-node JetStream cluster (R3), %d workers of stage %s, %d signals/s, faults %v every %s\n",
		o.Duration, o.Workers, event.Chain, o.Rate, o.Faults, o.FaultEvery)

	start := time.Now()
	want := newExpected()
	pubDone := make(chan error, 1)
	pctx, stopPub := context.WithTimeout(ctx, o.Duration)
	defer stopPub()
	go func() { pubDone <- s.publish(ctx, pctx, b, coef, want) }()
	s.injectFaults(pctx)
	if err := <-pubDone; err != nil {
		return nil, err
	}
	s.report.Duration = time.Since(start)
	fmt.Fprintf(o.Progress, "soak: published %d signals; waiting for the pipeline to catch up\n", s.report.Signals)
	for i := range s.nodes {
		if err := s.ensureNode(ctx, i); err != nil {
			return nil, err
		}
	}
	s.report.CaughtUp = s.settle(ctx, b, want.n)
	if err := s.check(ctx, b, want); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.report
	return &r, nil
}

// proc is one child process, started again by start after it exited.
type proc struct {
	name string
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	killed bool // by the soak: its exit is a fault, not a finding
}

// start runs p; with ready set it waits until p prints a line starting with it on stdout.
func (p *proc) start(exe string, logs io.Writer, ready string) error {
	c := exec.Command(exe, p.args...)
	c.Stderr = logs
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // no child outlives the soak
	out, err := c.StdoutPipe()
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	exited, said := make(chan struct{}), make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited, p.killed = c, exited, false
	p.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(out)
		once := false
		for sc.Scan() {
			if ready != "" && !once && strings.HasPrefix(sc.Text(), ready) {
				once = true
				close(said)
			}
		}
		_ = c.Wait()
		close(exited)
	}()
	if ready == "" {
		return nil
	}
	select {
	case <-said:
		return nil
	case <-exited:
		return fmt.Errorf("%s exited before it was ready: %v", p.name, c.ProcessState)
	case <-time.After(60 * time.Second):
		p.kill()
		return fmt.Errorf("%s was not ready within 60s", p.name)
	}
}

// kill SIGKILLs p and waits for it to exit.
func (p *proc) kill() {
	p.mu.Lock()
	c, exited := p.cmd, p.exited
	p.killed = true
	p.mu.Unlock()
	if c == nil {
		return
	}
	_ = c.Process.Kill()
	<-exited
}

// stop asks p to exit (SIGTERM) and kills it after 10s.
func (p *proc) stop() {
	p.mu.Lock()
	c, exited := p.cmd, p.exited
	p.killed = true
	p.mu.Unlock()
	if c == nil {
		return
	}
	_ = c.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = c.Process.Kill()
		<-exited
	}
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (s *soak) stopAll() {
	for _, w := range s.workers {
		w.stop()
	}
	for _, n := range s.nodes {
		n.stop()
	}
}

// startCluster starts three clustered nodes on free loopback ports, together (a clustered
// node accepts clients only once it sees its routes), and waits for JetStream.
func (s *soak) startCluster(ctx context.Context) error {
	ports, err := freePorts(6)
	if err != nil {
		return err
	}
	var routes, clients []string
	for i := range 3 {
		clients = append(clients, "nats://127.0.0.1:"+strconv.Itoa(ports[i]))
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(ports[3+i]))
	}
	s.urls = strings.Join(clients, ",")
	errs := make(chan error, 3)
	for i := range 3 {
		name := "n" + strconv.Itoa(i+1)
		n := &proc{name: name, args: []string{"dev", "nats-node", "--name", name, "--listen", strings.TrimPrefix(clients[i], "nats://"),
			"--data-dir", filepath.Join(s.o.Dir, name), "--cluster-name", "cascade-soak",
			"--cluster-listen", strings.TrimPrefix(routes[i], "nats://"), "--routes", strings.Join(routes, ","),
			"--log-format", "json", "--log-level", "warn"}}
		s.nodes = append(s.nodes, n)
		go func() { errs <- n.start(s.o.Exe, s.o.Logs, "ready ") }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			return err
		}
	}
	return waitFor(ctx, 60*time.Second, func(ctx context.Context) error {
		nc, err := nats.Connect(s.urls)
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		_, err = js.AccountInfo(ctx)
		return err
	})
}

func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// supervise keeps worker w running until ctx ends: it is started again a second after it
// exits, and an exit the soak did not cause is counted.
func (s *soak) supervise(ctx context.Context, w *proc) {
	for ctx.Err() == nil {
		if err := w.start(s.o.Exe, s.o.Logs, ""); err != nil {
			fmt.Fprintf(s.o.Progress, "soak: %v\n", err)
		} else {
			w.mu.Lock()
			exited := w.exited
			w.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-exited:
			}
			w.mu.Lock()
			killed, state := w.killed, w.cmd.ProcessState
			w.mu.Unlock()
			if !killed && ctx.Err() == nil {
				s.mu.Lock()
				s.report.Exits++
				s.mu.Unlock()
				fmt.Fprintf(s.o.Progress, "soak: worker %s exited on its own (%v); restarting it\n", w.name, state)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// publish sends generated signals until pctx ends, as many as the rate asks for by now in
// each chunk (at most a second's worth: a chunk held up by a fault is followed by bigger ones),
// each chunk again until the cluster takes it (the ids are the signals', so a chunk sent twice
// is stored once), and adds what the formulas derive from each signal to want.
func (s *soak) publish(ctx, pctx context.Context, b broker.Broker, coef *coefficients.Loaded, want *expected) error {
	g := producers.NewGenerator(s.o.Seed, fmt.Sprintf("soak%d-", s.o.Seed), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Second)
	p := &producers.Publisher{Broker: b, Scenario: scenario, AckTimeout: 15 * time.Second}
	start, line := time.Now(), 0
	for {
		select {
		case <-pctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
		due := int(time.Since(start).Seconds()*float64(s.o.Rate)) - line
		items := make([]producers.Item, min(due, s.o.Rate))
		for i := range items {
			line++
			raw := g.Next()
			if err := want.add(ctx, coef, raw); err != nil {
				return err
			}
			items[i] = producers.Item{Line: line, Raw: raw}
		}
		if len(items) == 0 {
			continue
		}
		// The chunk is retried on the soak's context, not pctx: signals generated are published.
		err := waitFor(ctx, 5*time.Minute, func(ctx context.Context) error {
			res, err := p.Publish(ctx, items)
			if err != nil {
				return err
			}
			for _, r := range res {
				if !r.OK() {
					return fmt.Errorf("line %d: %s", r.Line, r.Error)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("publish signals: %w", err)
		}
		s.mu.Lock()
		s.report.Signals += len(items)
		s.mu.Unlock()
	}
}

// injectFaults injects the faults in turn, one every FaultEvery, until ctx ends; each one is
// over (its node back, the cluster whole) before the next.
func (s *soak) injectFaults(ctx context.Context) {
	if len(s.o.Faults) == 0 {
		<-ctx.Done()
		return
	}
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.o.FaultEvery):
		}
		f := s.o.Faults[k%len(s.o.Faults)]
		if err := s.inject(ctx, f); err != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(s.o.Progress, "soak: fault %s: %v\n", f, err)
			}
			continue
		}
		s.mu.Lock()
		s.report.Faults[f]++
		s.mu.Unlock()
	}
}

func (s *soak) inject(ctx context.Context, f Fault) error {
	switch f {
	case FaultWorker:
		w := s.workers[s.rng.IntN(len(s.workers))]
		w.kill() // its supervisor starts it again
		fmt.Fprintf(s.o.Progress, "soak: %s: SIGKILLed worker %s\n", f, w.name)
		return nil
	case FaultLeader:
		leader, err := s.leader(ctx)
		if err != nil {
			return err
		}
		s.nodes[leader].kill()
		fmt.Fprintf(s.o.Progress, "soak: %s: SIGKILLed node %s, the stream's leader\n", f, s.nodes[leader].name)
		// Back once another node leads (or after 30s).
		_ = waitFor(ctx, 30*time.Second, func(ctx context.Context) error {
			if i, err := s.leader(ctx); err != nil || i == leader {
				return fmt.Errorf("no new leader (%v)", err)
			}
			return nil
		})
		return s.ensureNode(ctx, leader)
	case FaultNode:
		i := s.rng.IntN(len(s.nodes))
		s.nodes[i].kill()
		fmt.Fprintf(s.o.Progress, "soak: %s: SIGKILLed node %s\n", f, s.nodes[i].name)
		select {
		case <-ctx.Done():
		case <-time.After(s.o.FaultEvery / 2):
		}
		return s.ensureNode(ctx, i)
	}
	return fmt.Errorf("unknown fault %q", f)
}

// leader is the index of the node leading the scenario's stream.
func (s *soak) leader(ctx context.Context) (int, error) {
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.js.Stream(actx, event.StreamName(scenario))
	if err != nil {
		return -1, err
	}
	info, err := st.Info(actx)
	if err != nil {
		return -1, err
	}
	if info.Cluster == nil {
		return -1, errors.New("the stream has no cluster")
	}
	for i, n := range s.nodes {
		if n.name == info.Cluster.Leader {
			return i, nil
		}
	}
	return -1, fmt.Errorf("leader %q is none of the nodes", info.Cluster.Leader)
}

// ensureNode starts node i again if it is down and waits until the stream has a leader and
// every replica is current (at most a minute: the soak goes on regardless).
func (s *soak) ensureNode(ctx context.Context, i int) error {
	n := s.nodes[i]
	if !n.running() {
		// A node restarted during a context's end still has to come back for the check.
		if err := n.start(s.o.Exe, s.o.Logs, "ready "); err != nil {
			return err
		}
		fmt.Fprintf(s.o.Progress, "soak: node %s restarted\n", n.name)
	}
	err := waitFor(context.WithoutCancel(ctx), time.Minute, func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		st, err := s.js.Stream(actx, event.StreamName(scenario))
		if err != nil {
			return err
		}
		info, err := st.Info(actx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return errors.New("no leader")
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				return fmt.Errorf("replica %s not current", r.Name)
			}
		}
		return nil
	})
	if err != nil {
		fmt.Fprintf(s.o.Progress, "soak: the stream is not whole a minute after node %s came back: %v\n", n.name, err)
	}
	return nil
}

// settle waits (up to Settle) for the chained stage to have no lag and for n derived events
// to be stored; it says whether they were.
func (s *soak) settle(ctx context.Context, b broker.Broker, n int) bool {
	err := waitFor(ctx, s.o.Settle, func(ctx context.Context) error {
		lag, err := b.StageLag(ctx, scenario, event.Chain)
		if err != nil || lag > 0 {
			return fmt.Errorf("lag %d (%v)", lag, err)
		}
		got := 0
		err = broker.Each(ctx, b, broker.FeedOptions{Selector: broker.Selector{Scenario: scenario, Kinds: []event.Kind{event.KindDemand}}, FromStart: true},
			func(broker.Delivery) error { got++; return nil })
		if err != nil {
			return err
		}
		if got < n {
			return fmt.Errorf("%d of %d derived events stored", got, n)
		}
		return nil
	})
	if err != nil {
		fmt.Fprintf(s.o.Progress, "soak: not caught up after %s: %v\n", s.o.Settle, err)
	}
	return err == nil
}

// check reads every stored derived event back and counts what is lost, twice or unexpected,
// and compares each type's total with the formulas'.
func (s *soak) check(ctx context.Context, b broker.Broker, want *expected) error {
	seen := map[string]int{}
	sums := map[event.Type]float64{}
	err := broker.Each(ctx, b, broker.FeedOptions{Selector: broker.Selector{Scenario: scenario, Kinds: []event.Kind{event.KindDemand}}, FromStart: true},
		func(d broker.Delivery) error {
			ev, p, err := event.Decode(d.Message().Data)
			if err != nil {
				return fmt.Errorf("stored event at %d: %w", d.Seq(), err)
			}
			if seen[ev.ID]++; seen[ev.ID] == 1 {
				sums[ev.Type] += primary(p)
			}
			return nil
		})
	if err != nil {
		return fmt.Errorf("read the derived events back: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &s.report
	r.Checked = want.n
	for id, n := range seen {
		if _, ok := want.ids[id]; !ok {
			r.Unexpected++
		}
		r.Duplicated += n - 1
	}
	for id := range want.ids {
		if seen[id] == 0 {
			r.Lost++
		}
	}
	for _, typ := range slices.Sorted(maps.Keys(want.sums)) {
		if w, got := want.sums[typ], sums[typ]; math.Abs(got-w) > 1e-9*math.Abs(w) {
			r.Totals = append(r.Totals, fmt.Sprintf("%s stored %g, formulas %g", typ, got, w))
		}
	}
	return nil
}

// expected is what the formulas (`cascade calc`) derive from the signals published so far.
type expected struct {
	ids  map[string]struct{}
	sums map[event.Type]float64
	n    int
}

func newExpected() *expected {
	return &expected{ids: map[string]struct{}{}, sums: map[event.Type]float64{}}
}

func (e *expected) add(ctx context.Context, coef *coefficients.Loaded, raw []byte) error {
	ev, err := producers.Prepare(raw, scenario, time.Now())
	if err != nil {
		return err
	}
	p, err := event.DecodePayload(ev.Type, ev.Data)
	if err != nil {
		return err
	}
	root, err := tree.Expand(ctx, coef, ev, p)
	if err != nil {
		return err
	}
	var walk func(n *tree.Node)
	walk = func(n *tree.Node) {
		for _, c := range n.Children {
			if _, ok := e.ids[c.Event.ID]; !ok {
				e.ids[c.Event.ID] = struct{}{}
				e.sums[c.Event.Type] += primary(c.Payload)
				e.n++
			}
			walk(c)
		}
	}
	walk(root)
	return nil
}

func primary(p event.Payload) float64 {
	if q := event.Quantities(p); len(q) > 0 {
		return q[0].Value
	}
	return 0
}

// waitFor calls fn every half second until it returns nil, ctx ends or limit passes, and
// returns fn's last error then.
func waitFor(ctx context.Context, limit time.Duration, fn func(context.Context) error) error {
	deadline := time.Now().Add(limit)
	for {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}
