package conformance

import (
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/natsjs"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/producers"
)

var faultsLong = flag.Bool("cascade.faults.long", false, "run the NATS cluster fault tests on ten times the signals, and the rolling restart three times over")

// faultRun is the pipeline of scenario base on 3 replicas of a 3-node cluster, serving all
// five layers, with the signals the test publishes and what the formulas derive from them.
type faultRun struct {
	c    *Cluster
	js   jetstream.JetStream // for what the servers say of the stage's consumer
	b    broker.Broker
	raws []string
	want map[string]*event.Event
}

func startFaultRun(t *testing.T, seed uint64) *faultRun {
	t.Helper()
	r := newFaultRun(t, seed)
	serve(t, r.b, event.ConsumerLayers, consumers.Chained) // as run does
	return r
}

// newFaultRun is startFaultRun with no stage served: the test runs the stage's workers.
func newFaultRun(t *testing.T, seed uint64) *faultRun {
	t.Helper()
	c := NATSCluster(t, 3)
	r := faultRunOn(t, c.URL(), seed)
	r.c = c
	return r
}

// faultRunOn binds scenario base on 3 replicas of the cluster at url and generates the
// signals; the test runs the stages.
func faultRunOn(t *testing.T, url string, seed uint64) *faultRun {
	t.Helper()
	b, err := natsjs.Connect(t.Context(), natsjs.Options{URL: url, ConnectWait: 2 * time.Second, APITimeout: 15 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	coef := coefficients.Default()
	// A cluster just formed may not answer the first stream creation on a loaded machine.
	Eventually(t, 30*time.Second, "the scenario bound on the cluster", func() error {
		return routerBind(t, b, "base", coef, broker.ScenarioConfig{Replicas: 3, AckWait: time.Second, DedupWindow: coveringWindow})
	})
	n := 240
	if *faultsLong {
		n *= 10
	}
	g := producers.NewGenerator(seed, fmt.Sprintf("fault%d-", seed), signalTime, time.Minute)
	r := &faultRun{b: b, js: JetStream(t, url)}
	for range n {
		r.raws = append(r.raws, string(g.Next()))
	}
	r.want = expected(t, coef, "base", r.raws)
	return r
}

// publish sends raws in chunks, each again until the broker takes it (a node or leader may
// be gone meanwhile): the ids are the signals', so a chunk sent twice is stored once.
func (r *faultRun) publish(t *testing.T, raws []string) {
	t.Helper()
	for start := 0; start < len(raws); start += 40 {
		chunk := raws[start:min(start+40, len(raws))]
		items := make([]producers.Item, len(chunk))
		for i, raw := range chunk {
			items[i] = producers.Item{Line: start + i + 1, Raw: []byte(raw)}
		}
		Eventually(t, 60*time.Second, "the broker to take a chunk of signals", func() error {
			res, err := (&producers.Publisher{Broker: r.b, Scenario: "base"}).Publish(t.Context(), items)
			if err != nil {
				return err
			}
			for _, x := range res {
				if !x.OK() {
					return fmt.Errorf("line %d: %s", x.Line, x.Error)
				}
			}
			return nil
		})
	}
}

// leader waits for the stream of base to have a leader and returns its node.
func (r *faultRun) leader(t *testing.T) int {
	t.Helper()
	i := -1
	Eventually(t, 30*time.Second, "a leader of the scenario's stream", func() error {
		if i = r.c.StreamLeader(event.StreamName("base")); i < 0 {
			return fmt.Errorf("no leader")
		}
		return nil
	})
	return i
}

// settle waits for the chain to have consumed everything and every derived event to be
// stored, then checks each is stored exactly once and the sums are the formulas'.
func (r *faultRun) settle(t *testing.T) {
	t.Helper()
	r.settleOn(t, r.want)
}

// settleOn is settle for the derived events of want, those of the signals published so far.
func (r *faultRun) settleOn(t *testing.T, want map[string]*event.Event) {
	t.Helper()
	Eventually(t, 120*time.Second, "the pipeline to catch up", func() error {
		if n, err := r.b.StageLag(t.Context(), "base", event.Chain); err != nil || n > 0 {
			return fmt.Errorf("chain lag %d (%v)", n, err)
		}
		n := 0
		err := broker.Each(t.Context(), r.b, broker.FeedOptions{Selector: broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindDemand}}, FromStart: true},
			func(broker.Delivery) error { n++; return nil })
		if err != nil {
			return err
		}
		if n < len(want) {
			return fmt.Errorf("%d of %d derived events stored", n, len(want))
		}
		return nil
	})
	checkDerivedOnce(t, r.b, "base", want, "stored")
}

// The node leading the scenario's stream is killed mid-stream, signals keep coming while the
// others elect a new leader, and it comes back: nothing lost, nothing twice.
func TestFaultStreamLeaderKilledAndBack(t *testing.T) {
	t.Parallel()
	r := startFaultRun(t, 101)
	half := len(r.raws) / 2
	r.publish(t, r.raws[:half])
	i := r.leader(t)
	r.c.Kill(i)
	r.publish(t, r.raws[half:])
	if j := r.leader(t); j == i {
		t.Fatalf("node %d leads the stream after it was killed", i+1)
	}
	r.c.Restart(i)
	r.c.WaitReady(3)
	r.settle(t)
}

// The stream's leader is killed mid-stream and never comes back: the two left carry on.
func TestFaultNodeLostForGood(t *testing.T) {
	t.Parallel()
	r := startFaultRun(t, 102)
	half := len(r.raws) / 2
	r.publish(t, r.raws[:half])
	r.c.Kill(r.leader(t))
	r.publish(t, r.raws[half:])
	r.settle(t)
}

// Every node is restarted in turn (a rolling upgrade) while signals come in, the next one
// only once the cluster is whole again.
func TestFaultRollingRestart(t *testing.T) {
	t.Parallel()
	r := startFaultRun(t, 103)
	rounds := 1
	if *faultsLong {
		rounds = 3
	}
	steps := rounds * r.c.Size()
	per := len(r.raws) / (2 * steps)
	next := 0
	send := func() {
		r.publish(t, r.raws[next:next+per])
		next += per
	}
	for step := range steps {
		i := step % r.c.Size()
		send()
		r.c.Kill(i)
		send()
		r.c.Restart(i)
		r.c.WaitReady(3)
	}
	r.publish(t, r.raws[next:])
	r.settle(t)
}
