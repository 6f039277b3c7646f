package kafka_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	kgo "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/kafka"
	"github.com/layercake/cascade/internal/broker/kafka/kafkatest"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
)

// Group timings for tests: a short session timeout, and still one the race detector on two
// cores does not trip. A rebalance ends as soon as every member has rejoined, so the
// rebalance timeout only bounds how long a member that fails to rejoin is waited for.
const (
	testSession   = 1500 * time.Millisecond
	testRebalance = 5 * time.Second
)

func init() { zerolog.TimeFieldFormat = "15:04:05.000" }

func testLogLevel() zerolog.Level {
	if l, err := zerolog.ParseLevel(os.Getenv("CASCADE_TEST_LOG")); err == nil && l != zerolog.NoLevel {
		return l
	}
	return zerolog.WarnLevel
}

func testOptions(t *testing.T, addrs []string) kafka.Options {
	return kafka.Options{
		Logger:            zerolog.New(zerolog.NewTestWriter(t)).Level(testLogLevel()).With().Timestamp().Logger(),
		Brokers:           addrs,
		SessionTimeout:    testSession,
		RebalanceTimeout:  testRebalance,
		HeartbeatInterval: 200 * time.Millisecond,
		// kfake forms a group at the first join; members started together split the
		// partitions before working, as on a Kafka broker (see Options.JoinDelay).
		JoinDelay:    time.Second,
		BatchTimeout: time.Millisecond,
	}
}

func connectWith(t *testing.T, o kafka.Options) *kafka.Broker {
	t.Helper()
	b, err := kafka.Connect(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func connect(t *testing.T, addrs []string) *kafka.Broker {
	t.Helper()
	return connectWith(t, testOptions(t, addrs))
}

// withBase starts a kfake cluster, connects to it and creates scenario base with cfg; it
// returns the cluster's addresses and the connection.
func withBase(t *testing.T, cfg broker.ScenarioConfig) ([]string, *kafka.Broker) {
	t.Helper()
	addrs := kafkatest.Cluster(t)
	b := connect(t, addrs)
	if err := b.EnsureScenario(t.Context(), "base", cfg); err != nil {
		t.Fatal(err)
	}
	return addrs, b
}

// admin is a client of its own (kafka-go's default transport caches metadata for 6s),
// closed by t.Cleanup.
func admin(t *testing.T, addrs []string) *kgo.Client {
	tr := &kgo.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &kgo.Client{Addr: kgo.TCP(addrs...), Transport: tr}
}

func partitionCounts(t *testing.T, addrs []string, topics ...string) map[string]int {
	t.Helper()
	md, err := admin(t, addrs).Metadata(t.Context(), &kgo.MetadataRequest{Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, tp := range md.Topics {
		if tp.Error == nil {
			out[tp.Name] = len(tp.Partitions)
		}
	}
	return out
}

// signals builds n messages on layer l's signal subject in region r, with distinct keys.
func signals(s string, l event.Layer, r, prefix string, n int) []broker.Message {
	out := make([]broker.Message, n)
	for i := range out {
		id := fmt.Sprintf("%s-%04d", prefix, i)
		out[i] = broker.Message{Subject: event.SignalSubject(s, l, r), ID: id, Key: id, Data: []byte(`{"id":"` + id + `"}`), Header: map[string]string{"X-Test": "yes"}}
	}
	return out
}

// TestConformance runs the suite every adapter passes, each Fresh broker a new in-process
// Kafka-protocol cluster of three brokers, with six partitions per topic.
func TestConformance(t *testing.T) {
	t.Parallel()
	conformance.Run(t, conformance.Harness{
		Fresh: func(t *testing.T) func(t *testing.T) broker.Broker {
			addrs := kafkatest.Cluster(t)
			return func(t *testing.T) broker.Broker { return connect(t, addrs) }
		},
		Kill: func(b broker.Broker) { b.(*kafka.Broker).Abort() },
		Stopped: func(t *testing.T) broker.Broker {
			c := kafkatest.Start(t)
			b := connect(t, c.ListenAddrs())
			c.Close()
			return b
		},
		// A killed member's partitions are read again once it has left the group: at once
		// after Abort, at the latest after the session timeout.
		AckWait: testSession,
	})
}

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		in   kafka.Options
	}{
		{"no brokers", kafka.Options{}},
		{"not host:port", kafka.Options{Brokers: []string{"localhost"}}},
		{"heartbeat above session", kafka.Options{Brokers: []string{"h:1"}, SessionTimeout: time.Second, HeartbeatInterval: 2 * time.Second}},
		{"cert without key", kafka.Options{Brokers: []string{"h:1"}, TLSCert: "c.pem"}},
		{"unknown mechanism", kafka.Options{Brokers: []string{"h:1"}, SASLMechanism: "gssapi", SASLUser: "u", SASLPassword: "p"}},
		{"user without mechanism", kafka.Options{Brokers: []string{"h:1"}, SASLUser: "u"}},
		{"mechanism without user", kafka.Options{Brokers: []string{"h:1"}, SASLMechanism: "plain", SASLPassword: "p"}},
		{"mechanism without password", kafka.Options{Brokers: []string{"h:1"}, SASLMechanism: "scram-sha-256", SASLUser: "u"}},
		{"missing password file", kafka.Options{Brokers: []string{"h:1"}, SASLMechanism: "plain", SASLUser: "u", SASLPasswordFile: pw + ".missing"}},
		{"missing CA", kafka.Options{Brokers: []string{"h:1"}, TLSCA: pw + ".missing"}},
		{"CA without certificate", kafka.Options{Brokers: []string{"h:1"}, TLSCA: pw}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := kafka.Connect(t.Context(), c.in)
			if !errors.Is(err, kafka.ErrInvalidOption) {
				t.Fatalf("error %v, want ErrInvalidOption", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
}

func TestConnectNobodyThere(t *testing.T) {
	t.Parallel()
	_, err := kafka.Connect(t.Context(), kafka.Options{Brokers: []string{"127.0.0.1:1"}, ConnectWait: 300 * time.Millisecond})
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("error %v does not match ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("error %q does not name the address", err)
	}
}

func TestTopicsCreatedWithPartitions(t *testing.T) {
	t.Parallel()
	addrs := kafkatest.Cluster(t)
	b := connect(t, addrs)
	if err := b.EnsureScenario(t.Context(), "what-if", broker.ScenarioConfig{Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, l := range event.ConsumerLayers {
		want = append(want, "cascade.what-if.signal."+string(l), event.DLQSubject("what-if", l))
	}
	for _, l := range event.FeedLayers {
		want = append(want, "cascade.what-if.demand."+string(l))
	}
	got := partitionCounts(t, addrs, want...)
	for _, topic := range want {
		if got[topic] != 4 {
			t.Errorf("%s: %d partitions, want 4", topic, got[topic])
		}
	}
	if len(got) != 15 {
		t.Errorf("%d topics, want 15", len(got))
	}
	if _, err := b.Registry().List(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := partitionCounts(t, addrs, kafka.RegistryTopic)[kafka.RegistryTopic]; n != 1 {
		t.Errorf("registry topic has %d partitions, want 1", n)
	}
	// Deleting the scenario deletes its topics.
	if err := b.DeleteScenario(t.Context(), "what-if"); err != nil {
		t.Fatal(err)
	}
	if got := partitionCounts(t, addrs, want...); len(got) != 0 {
		t.Errorf("topics left after delete: %v", got)
	}
	if err := b.DeleteScenario(t.Context(), "what-if"); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
}

func TestExistingTopicWithOtherPartitionCount(t *testing.T) {
	t.Parallel()
	addrs := kafkatest.Cluster(t, kfake.SeedTopics(2, "cascade.base.demand.chips"))
	var logs conformance.SyncBuffer
	o := testOptions(t, addrs)
	o.Logger = zerolog.New(&logs)
	b := connectWith(t, o)
	if err := b.EnsureScenario(t.Context(), "base", broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"topic":"cascade.base.demand.chips"`) || !strings.Contains(logs.String(), `"level":"warn"`) {
		t.Fatalf("no warning about the partition count in %s", logs.String())
	}
	if n := partitionCounts(t, addrs, "cascade.base.demand.chips")["cascade.base.demand.chips"]; n != 2 {
		t.Fatalf("existing topic changed to %d partitions", n)
	}
	// It is used as it is.
	msgs := []broker.Message{
		{Subject: event.DemandSubject("base", event.Chips, "us"), ID: "a", Key: "a", Data: []byte("1")},
		{Subject: event.DemandSubject("base", event.Chips, "de"), ID: "b", Key: "b", Data: []byte("2")},
	}
	if err := b.Publish(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
	got := readFeed(t, b, broker.FeedOptions{Selector: broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindDemand}, Layers: []event.Layer{event.Chips}}, FromStart: true, UntilEnd: true})
	if len(got) != 2 {
		t.Fatalf("read %d messages back, want 2", len(got))
	}
}

func readFeed(t *testing.T, b broker.Broker, o broker.FeedOptions) []broker.Delivery {
	t.Helper()
	f, err := b.Feed(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []broker.Delivery
	for {
		d, err := f.Next(t.Context())
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
}

// A subject with no topic in the layout (a demand or dead-letter subject of a layer that has
// none, a signal of a layer that consumes none, a subject without layer and region, another
// namespace) is refused as invalid.
func TestPublishOutsideTheTopicLayout(t *testing.T) {
	t.Parallel()
	b := connect(t, kafkatest.Cluster(t))
	if err := b.EnsureScenario(t.Context(), "base", broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"cascade.base.demand.application.us", "cascade.base.dlq.chips.us", "cascade.base.signal.grid.us", "cascade.base.signal", "other.base.signal.model.us"} {
		if err := b.Publish(t.Context(), []broker.Message{{Subject: subj, Data: []byte("x")}}); !errors.Is(err, event.ErrInvalid) {
			t.Errorf("publish on %s: %v, want event.ErrInvalid", subj, err)
		}
	}
}

// groupMembers describes the group's members and how many partitions each holds.
func groupMembers(t *testing.T, addrs []string, group string) (state string, parts []int) {
	t.Helper()
	resp, err := admin(t, addrs).DescribeGroups(t.Context(), &kgo.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil || len(resp.Groups) != 1 {
		return "", nil
	}
	g := resp.Groups[0]
	for _, m := range g.Members {
		n := 0
		for _, a := range m.MemberAssignments.Topics {
			n += len(a.Partitions)
		}
		parts = append(parts, n)
	}
	return g.GroupState, parts
}

// lagIs is a condition for Eventually: layer l of scenario base has want messages uncommitted.
func lagIs(b broker.Broker, l event.Layer, want uint64) func() error {
	return func() error {
		n, err := b.Lag(context.Background(), "base", l)
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("lag of %s is %d, want %d", l, n, want)
		}
		return nil
	}
}

// drain fetches and commits from c until ctx ends, recording every id it sees.
func drain(ctx context.Context, c broker.Consumer, seen func(id string)) error {
	for {
		batch, err := c.Fetch(ctx, 16)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, d := range batch {
			seen(d.Message().ID)
		}
		if err := c.Commit(ctx, batch); err != nil && ctx.Err() == nil {
			return err
		}
	}
}

func TestTwoConsumersShareALayer(t *testing.T) {
	t.Parallel()
	addrs, pub := withBase(t, broker.ScenarioConfig{})
	ctx := t.Context()
	group := event.ConsumerName("base", event.Model)
	var mu sync.Mutex
	count := map[string]int{}
	per := [2]int{}
	var wg sync.WaitGroup
	cctx, cancel := context.WithCancel(ctx)
	for i := range 2 {
		c, err := connect(t, addrs).Consumer(ctx, "base", event.Model)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer c.Close()
			if err := drain(cctx, c, func(id string) { mu.Lock(); count[id]++; per[i]++; mu.Unlock() }); err != nil {
				t.Error(err)
			}
		})
	}
	// Both members hold partitions before anything is published: no rebalance mid-stream.
	conformance.Eventually(t, 20*time.Second, "two members sharing 12 partitions", func() error {
		state, parts := groupMembers(t, addrs, group)
		if state != "Stable" || len(parts) != 2 || parts[0] == 0 || parts[1] == 0 || parts[0]+parts[1] != 12 {
			return fmt.Errorf("group %q, partitions per member %v", state, parts)
		}
		return nil
	})
	msgs := append(signals("base", event.Model, "us", "rel", 150), signals("base", event.Model, "de", "rel-de", 50)...)
	if err := pub.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	conformance.Eventually(t, 20*time.Second, "every message processed", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(count) != len(msgs) {
			return fmt.Errorf("%d of %d messages processed", len(count), len(msgs))
		}
		return nil
	})
	conformance.Eventually(t, 10*time.Second, "lag 0", lagIs(pub, event.Model, 0))
	cancel()
	wg.Wait()
	for id, n := range count {
		if n != 1 {
			t.Errorf("%s processed %d times", id, n)
		}
	}
	if per[0] == 0 || per[1] == 0 {
		t.Errorf("one consumer did all the work: %v", per)
	}
}

func TestRebalanceMidStreamLosesNothing(t *testing.T) {
	t.Parallel()
	addrs, pub := withBase(t, broker.ScenarioConfig{})
	ctx := t.Context()
	var mu sync.Mutex
	count := map[string]int{}
	seen := func(id string) { mu.Lock(); count[id]++; mu.Unlock() }
	distinct := func() int { mu.Lock(); defer mu.Unlock(); return len(count) }
	start := func() (stop func()) {
		c, err := connect(t, addrs).Consumer(ctx, "base", event.Chips)
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := drain(cctx, c, seen); err != nil {
				t.Error(err)
			}
		}()
		return func() { cancel(); <-done; _ = c.Close() }
	}
	// A steady stream in batches of 10 until the membership changes are done.
	var sent atomic.Int64
	stopStream := make(chan struct{})
	streamed := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stopStream:
				streamed <- nil
				return
			case <-time.After(10 * time.Millisecond):
			}
			if err := pub.Publish(ctx, signals("base", event.Chips, "us", fmt.Sprintf("chip-%03d", i), 10)); err != nil {
				streamed <- err
				return
			}
			sent.Add(10)
		}
	}()
	progress := func(what string) {
		t.Helper()
		n := distinct()
		conformance.Eventually(t, 20*time.Second, what, func() error {
			if got := distinct(); got <= n+20 {
				return fmt.Errorf("%d distinct messages processed, want more than %d", got, n+20)
			}
			return nil
		})
	}
	stopA := start()
	progress("the first consumer to make progress")
	stopB := start() // joins mid-stream: a rebalance
	conformance.Eventually(t, 20*time.Second, "the group to rebalance onto two members", func() error {
		if state, parts := groupMembers(t, addrs, event.ConsumerName("base", event.Chips)); state != "Stable" || len(parts) != 2 {
			return fmt.Errorf("group %q, partitions per member %v", state, parts)
		}
		return nil
	})
	progress("progress with two members")
	stopA() // leaves mid-stream: another rebalance
	progress("progress after the first consumer left")
	close(stopStream)
	if err := <-streamed; err != nil {
		t.Fatal(err)
	}
	total := int(sent.Load())
	conformance.Eventually(t, 30*time.Second, "every message processed", func() error {
		if got := distinct(); got != total {
			return fmt.Errorf("%d of %d messages processed", got, total)
		}
		return nil
	})
	conformance.Eventually(t, 10*time.Second, "lag 0", lagIs(pub, event.Chips, 0))
	stopB()
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for _, n := range count {
		dups += n - 1
	}
	t.Logf("%d messages, %d redelivered across the rebalances", total, dups)
}

func TestLagDoesNotJoinTheGroup(t *testing.T) {
	t.Parallel()
	addrs, b := withBase(t, broker.ScenarioConfig{})
	ctx := t.Context()
	if err := b.Publish(ctx, signals("base", event.Energy, "us", "e", 10)); err != nil {
		t.Fatal(err)
	}
	group := event.ConsumerName("base", event.Energy)
	lag, err := b.Lag(ctx, "base", event.Energy)
	if err != nil || lag != 10 {
		t.Fatalf("lag before any consumer: %d %v, want 10", lag, err)
	}
	if _, parts := groupMembers(t, addrs, group); len(parts) != 0 {
		t.Fatalf("Lag created group members: %v", parts)
	}
	c, err := b.Consumer(ctx, "base", event.Energy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Fetch(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if lag, err := b.Lag(ctx, "base", event.Energy); err != nil || lag != 10 {
		t.Fatalf("lag with nothing committed: %d %v, want 10", lag, err)
	}
	if _, parts := groupMembers(t, addrs, group); len(parts) != 1 {
		t.Fatalf("group has %d members while one consumer runs and Lag was asked", len(parts))
	}
}

// Commit sends, per partition, only the contiguous committed prefix, in one request whose
// outcome it returns; a delivery behind a gap is recorded and sent when the gap closes.
func TestCommitSendsOnlyTheContiguousPrefix(t *testing.T) {
	t.Parallel()
	_, b := withBase(t, broker.ScenarioConfig{Partitions: 1})
	ctx := t.Context()
	if err := b.Publish(ctx, signals("base", event.Application, "us", "a", 6)); err != nil {
		t.Fatal(err)
	}
	lag := func() uint64 {
		n, err := b.Lag(ctx, "base", event.Application)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	commit := func(c broker.Consumer, ds ...broker.Delivery) {
		if err := c.Commit(ctx, ds); err != nil {
			t.Fatal(err)
		}
	}
	c, err := b.Consumer(ctx, "base", event.Application)
	if err != nil {
		t.Fatal(err)
	}
	got := conformance.FetchN(t, c, 3, 10*time.Second)
	// Committing the last one alone sends nothing: the first two would be lost on a crash.
	commit(c, got[2])
	if n := lag(); n != 6 {
		t.Fatalf("lag %d with offsets 0 and 1 uncommitted, want 6", n)
	}
	// Closing the gap commits all three, before Commit returns.
	commit(c, got[0], got[1])
	if n := lag(); n != 3 {
		t.Fatalf("lag %d after committing the batch, want 3", n)
	}
	// Closing commits the committed prefix, and nothing past a gap.
	got = conformance.FetchN(t, c, 3, 10*time.Second)
	commit(c, got[0], got[2])
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := lag(); n != 2 {
		t.Fatalf("lag %d after closing with offset 4 uncommitted, want 2", n)
	}
}

// An input left uncommitted (the router's answer to a dead letter the broker refused) holds
// back the commits of its own partition only: the rest of the batch is committed at once.
func TestAGapHoldsBackOnlyItsPartition(t *testing.T) {
	t.Parallel()
	_, b := withBase(t, broker.ScenarioConfig{Partitions: 2})
	ctx := t.Context()
	msgs := signals("base", event.Application, "us", "g", 40)
	if err := b.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	c, err := b.Consumer(ctx, "base", event.Application)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := conformance.FetchN(t, c, len(msgs), 10*time.Second)
	// The gap is the first delivery of the partition it is in; everything else is committed.
	partition := func(d broker.Delivery) string { p, _, _ := strings.Cut(d.Cursor(), ":"); return p }
	gap := got[0]
	held, parts := 0, map[string]bool{}
	for _, d := range got {
		parts[partition(d)] = true
		if partition(d) == partition(gap) {
			held++
		}
	}
	if len(parts) != 2 {
		t.Fatalf("40 keys landed in %d partitions, want 2", len(parts))
	}
	if err := c.Commit(ctx, got[1:]); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Lag(ctx, "base", event.Application); err != nil || n != uint64(held) {
		t.Fatalf("lag %d %v with the first delivery of %s uncommitted, want its partition's %d", n, err, partition(gap), held)
	}
}

// TestSecretsNeverLogged connects with each SASL mechanism, right and wrong passwords, from
// a file and from the options, with debug logs, and looks for the password everywhere.
func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	const secret = "pa55-w0rd-never-shown"
	addrs := kafkatest.Cluster(t,
		kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "plain-user", secret),
		kfake.Superuser("SCRAM-SHA-256", "scram256", secret),
		kfake.Superuser("SCRAM-SHA-512", "scram512", secret),
	)
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs conformance.SyncBuffer
	for _, c := range []struct{ mech, user string }{{"plain", "plain-user"}, {"scram-sha-256", "scram256"}, {"scram-sha-512", "scram512"}} {
		t.Run(c.mech, func(t *testing.T) {
			o := testOptions(t, addrs)
			o.Logger = zerolog.New(&logs).Level(zerolog.DebugLevel)
			o.SASLMechanism, o.SASLUser, o.SASLPasswordFile = c.mech, c.user, pwFile
			b, err := kafka.Connect(t.Context(), o)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if err := b.EnsureScenario(t.Context(), "base", broker.ScenarioConfig{}); err != nil {
				t.Fatal(err)
			}
			if err := b.Publish(t.Context(), signals("base", event.Application, "us", c.user, 3)); err != nil {
				t.Fatal(err)
			}
			cons, err := b.Consumer(t.Context(), "base", event.Application)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cons.Fetch(t.Context(), 3); err != nil {
				t.Fatal(err)
			}
			_ = cons.Close()
			for _, s := range []string{fmt.Sprint(o), fmt.Sprintf("%+v", o), fmt.Sprintf("%#v", o)} {
				if strings.Contains(s, secret) {
					t.Fatalf("printed options show the password: %s", s)
				}
			}
			o.SASLPasswordFile, o.SASLPassword = "", secret+"-wrong"
			o.ConnectWait = time.Second
			_, err = kafka.Connect(t.Context(), o)
			if err == nil {
				t.Fatal("connected with a wrong password")
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error shows the password: %v", err)
			}
			if errors.Is(err, broker.ErrUnavailable) || !strings.Contains(err.Error(), c.user) {
				t.Errorf("a refused login reads %q", err)
			}
			t.Logf("wrong password: %v", err)
		})
	}
	if !strings.Contains(logs.String(), "sasl_password_set") {
		t.Fatalf("debug log did not describe the connection: %q", logs.String())
	}
	if strings.Contains(logs.String(), secret) {
		t.Fatal("the log shows the password")
	}
}

// writeCerts writes a certificate for 127.0.0.1 signed by ca (good for a server or a client)
// and its key as PEM files in dir, and returns their paths and the loaded pair.
func writeCerts(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (certFile, keyFile string, cert tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

func newCA(t *testing.T, dir, name string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, name+".pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca, key, file
}

// TestMutualTLS runs a cluster that requires client certificates from its CA.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, caKey, caFile := newCA(t, dir, "ca")
	_, _, serverCert := writeCerts(t, dir, "server", ca, caKey)
	clientCert, clientKey, _ := writeCerts(t, dir, "client", ca, caKey)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	addrs := kafkatest.Cluster(t, kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}))
	o := testOptions(t, addrs)
	o.TLSCA, o.TLSCert, o.TLSKey = caFile, clientCert, clientKey
	b := connectWith(t, o)
	if err := b.EnsureScenario(t.Context(), "base", broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(t.Context(), signals("base", event.Model, "us", "tls", 5)); err != nil {
		t.Fatal(err)
	}
	c, err := b.Consumer(t.Context(), "base", event.Model)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Fetch(t.Context(), 5); err != nil {
		t.Fatal(err)
	}
	// A CA that did not sign the brokers' certificate is refused at once, and not as an
	// unavailable broker.
	_, _, otherCA := newCA(t, t.TempDir(), "other")
	o.TLSCA, o.ConnectWait = otherCA, 5*time.Second
	start := time.Now()
	_, err = kafka.Connect(t.Context(), o)
	if err == nil || errors.Is(err, broker.ErrUnavailable) || time.Since(start) > 2*time.Second {
		t.Fatalf("untrusted brokers: %v after %s", err, time.Since(start))
	}
}

// TestFollowAcrossIdlePolls keeps a following feed open over many empty long polls (which
// some brokers answer with "request timed out") and still gets the next message.
func TestFollowAcrossIdlePolls(t *testing.T) {
	t.Parallel()
	addrs := kafkatest.Cluster(t)
	o := testOptions(t, addrs)
	o.MaxWait = 20 * time.Millisecond
	b := connectWith(t, o)
	ctx := t.Context()
	if err := b.EnsureScenario(ctx, "base", broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	f, err := b.Feed(ctx, broker.FeedOptions{Selector: broker.Selector{Scenario: "base", Kinds: []event.Kind{event.KindDemand}}})
	if err != nil {
		t.Fatal(err)
	}
	next := make(chan error, 1)
	go func() {
		_, err := f.Next(ctx)
		next <- err
	}()
	idle, cancel := context.WithTimeout(ctx, 600*time.Millisecond)
	defer cancel()
	select {
	case err := <-next:
		t.Fatalf("Next returned on an idle feed: %v", err)
	case <-idle.Done():
	}
	if err := b.Publish(ctx, []broker.Message{{Subject: event.DemandSubject("base", event.Chips, "us"), ID: "late", Key: "k", Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-next:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the message published after the idle polls never came")
	}
	_ = f.Close()
}
