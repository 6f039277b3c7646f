package conformance

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/kafka"
	"github.com/layercake/cascade/internal/broker/kafka/kafkatest"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/producers"
)

// kafkaFaultRun is scenario base on a 3-broker kfake cluster that keeps its messages and
// committed offsets in a DataDir (so it can be restarted), with the signals the test
// publishes and what the formulas derive from them.
type kafkaFaultRun struct {
	dir   string
	ports []int
	c     *kfake.Cluster
	b     broker.Broker
	raws  []string
	want  map[string]*event.Event
}

func startKafkaFaultRun(t *testing.T, seed uint64) *kafkaFaultRun {
	t.Helper()
	r := &kafkaFaultRun{dir: t.TempDir()}
	for range kafkatest.Brokers {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r.ports = append(r.ports, l.Addr().(*net.TCPAddr).Port)
		_ = l.Close()
	}
	r.start(t)
	r.b = r.connect(t)
	coef := coefficients.Default()
	if err := routerBind(t, r.b, "base", coef, broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	n := 240
	if *faultsLong {
		n *= 10
	}
	g := producers.NewGenerator(seed, fmt.Sprintf("kfault%d-", seed), signalTime, time.Minute)
	for range n {
		r.raws = append(r.raws, string(g.Next()))
	}
	r.want = expected(t, coef, "base", r.raws)
	return r
}

// start (re)starts the cluster on its ports and DataDir.
func (r *kafkaFaultRun) start(t *testing.T) {
	t.Helper()
	r.c = kafkatest.Start(t, kfake.DataDir(r.dir), kfake.Ports(r.ports...), kfake.DefaultNumPartitions(6))
}

// connect is a connection with the short group timings of the kafka package's tests.
func (r *kafkaFaultRun) connect(t *testing.T) *kafka.Broker {
	t.Helper()
	b, err := kafka.Connect(t.Context(), kafka.Options{
		Logger:            zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel),
		Brokers:           r.c.ListenAddrs(),
		SessionTimeout:    1500 * time.Millisecond,
		RebalanceTimeout:  5 * time.Second,
		HeartbeatInterval: 200 * time.Millisecond,
		JoinDelay:         time.Second,
		BatchTimeout:      time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// publish sends raws in chunks, each again until the cluster takes it (it may be down).
func (r *kafkaFaultRun) publish(t *testing.T, raws []string) {
	t.Helper()
	for start := 0; start < len(raws); start += 40 {
		chunk := raws[start:min(start+40, len(raws))]
		items := make([]producers.Item, len(chunk))
		for i, raw := range chunk {
			items[i] = producers.Item{Line: start + i + 1, Raw: []byte(raw)}
		}
		Eventually(t, 60*time.Second, "the cluster to take a chunk of signals", func() error {
			res, err := (&producers.Publisher{Broker: r.b, Scenario: "base", AckTimeout: 5 * time.Second}).Publish(t.Context(), items)
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

// A consumer process is killed after its derived events were written and before it
// committed its inputs, twice; the next member reads them again and writes them again:
// each derived id is read once from every feed and the sums are the formulas'.
func TestFaultKafkaConsumerKilledBetweenWriteAndCommit(t *testing.T) {
	t.Parallel()
	r := startKafkaFaultRun(t, 201)
	third := len(r.raws) / 3
	for kill := range 2 {
		r.publish(t, r.raws[kill*third:(kill+1)*third])
		victim := r.connect(t)
		dying := &dyingBroker{Broker: victim, n: 2, kill: victim.Abort}
		stop := serve(t, dying, event.ConsumerLayers, consumers.Chained)
		Eventually(t, 30*time.Second, fmt.Sprintf("consumer %d to die between write and commit", kill+1), func() error {
			if !dying.dead.Load() {
				return fmt.Errorf("%d more publications before it dies", atomic.LoadInt32(&dying.n))
			}
			return nil
		})
		stop()
	}
	r.publish(t, r.raws[2*third:])
	serve(t, r.connect(t), event.ConsumerLayers, consumers.Chained)
	exactlyOnce(t, r.b, "base", r.want)
}

// A second member joins the chain's group while signals come in, and leaves again
// (stopped) mid-stream: two rebalances under load, nothing lost, nothing read twice.
func TestFaultKafkaRebalanceUnderLoad(t *testing.T) {
	t.Parallel()
	r := startKafkaFaultRun(t, 202)
	third := len(r.raws) / 3
	serve(t, r.connect(t), event.ConsumerLayers, consumers.Chained)
	r.publish(t, r.raws[:third])
	second := serve(t, r.connect(t), event.ConsumerLayers, consumers.Chained) // joins: rebalance
	r.publish(t, r.raws[third:2*third])
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := r.c.WaitGroupStable(ctx, event.Chain.ConsumerName("base"), 2); err != nil {
		t.Fatalf("the second member in the chain's group: %v", err)
	}
	second() // leaves: rebalance
	r.publish(t, r.raws[2*third:])
	exactlyOnce(t, r.b, "base", r.want)
}

// The cluster (kfake's three brokers, one process) is stopped mid-stream and started again
// on its DataDir and ports; the chain and the publisher reconnect and go on.
func TestFaultKafkaBrokerRestart(t *testing.T) {
	t.Parallel()
	r := startKafkaFaultRun(t, 203)
	half := len(r.raws) / 2
	serve(t, r.connect(t), event.ConsumerLayers, consumers.Chained)
	r.publish(t, r.raws[:half])
	r.c.Close()
	r.start(t)
	r.publish(t, r.raws[half:])
	// A feed opened at once may be told its partition leaders moved (the restarted cluster
	// places them anew) until the connection's metadata is refreshed: a transient error.
	Eventually(t, 30*time.Second, "a feed of the restarted cluster", func() error {
		return broker.Each(t.Context(), r.b, broker.FeedOptions{Selector: broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindDemand}}, FromStart: true},
			func(broker.Delivery) error { return nil })
	})
	exactlyOnce(t, r.b, "base", r.want)
}
