package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/natsjs"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
)

const testAckWait = time.Second

// startServer runs an in-process nats-server with JetStream on a free loopback port.
func startServer(t *testing.T) string {
	t.Helper()
	return start(t).ClientURL()
}

func start(t *testing.T) *server.Server {
	t.Helper()
	return conformance.NATSServer(t)
}

func connect(t *testing.T, url string) *natsjs.Broker {
	t.Helper()
	b, err := natsjs.Connect(context.Background(), natsjs.Options{URL: url, ConnectWait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	t.Parallel()
	conformance.Run(t, conformance.Harness{
		Fresh: func(t *testing.T) func(t *testing.T) broker.Broker {
			url := startServer(t)
			return func(t *testing.T) broker.Broker { return connect(t, url) }
		},
		Kill: func(b broker.Broker) { b.(*natsjs.Broker).Conn().Close() },
		Stopped: func(t *testing.T) broker.Broker {
			ns := start(t)
			b := connect(t, ns.ClientURL())
			ns.Shutdown()
			ns.WaitForShutdown()
			return b
		},
		AckWait: testAckWait,
	})
}

func TestNonLoopbackNeedsAuth(t *testing.T) {
	t.Parallel()
	_, err := natsjs.StartServer(natsjs.ServerOptions{DataDir: t.TempDir(), Listen: "0.0.0.0:-1"})
	if err == nil {
		t.Fatal("a server on 0.0.0.0 without auth started")
	}
}

func TestConnectNobodyThere(t *testing.T) {
	t.Parallel()
	_, err := natsjs.Connect(t.Context(), natsjs.Options{URL: "nats://127.0.0.1:1", ConnectWait: 300 * time.Millisecond})
	if err == nil {
		t.Fatal("connected to nothing")
	}
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("error %v does not match ErrUnavailable", err)
	}
}

// The owner's config wins: EnsureScenario updates an existing stream to the owner's de-dup
// window, and a client, which has no config to pass, opening a consumer changes nothing and
// goes by the ack wait the owner recorded in the binding.
func TestEnsureScenarioOwnersConfigWins(t *testing.T) {
	t.Parallel()
	url := startServer(t)
	first := connect(t, url)
	if err := first.EnsureScenario(t.Context(), "base", broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	owner := connect(t, url)
	cfg := broker.ScenarioConfig{DedupWindow: 45 * time.Second, AckWait: 3 * time.Second} // not the defaults
	if err := owner.EnsureScenario(t.Context(), "base", cfg); err != nil {
		t.Fatal(err)
	}
	if err := owner.Registry().Put(t.Context(), broker.Binding{Scenario: "base", CoefVersion: "v", Config: cfg}); err != nil {
		t.Fatal(err)
	}
	client := connect(t, url)
	c, err := client.Consumer(t.Context(), "base", event.Chips)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	js := conformance.JetStream(t, url)
	st, err := js.Stream(t.Context(), "CASCADE_BASE")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.Duplicates; got != 45*time.Second {
		t.Fatalf("de-dup window %s after a client opened a consumer, want the owner's 45s", got)
	}
	ci, err := st.Consumer(t.Context(), event.ConsumerName("base", event.Chips))
	if err != nil {
		t.Fatal(err)
	}
	if got := ci.CachedInfo().Config.AckWait; got != 3*time.Second {
		t.Fatalf("client's consumer has ack wait %s, want the binding's 3s", got)
	}
	if err := owner.EnsureScenario(t.Context(), "base", broker.ScenarioConfig{DedupWindow: -time.Second}); !errors.Is(err, broker.ErrInvalidConfig) {
		t.Fatalf("negative de-dup window: %v, want ErrInvalidConfig", err)
	}
}

// A URL nats.go cannot parse is an option error naming the flag, with the password hidden, not
// "no NATS server answers".
func TestConnectRefusesAnUnparsableURL(t *testing.T) {
	t.Parallel()
	_, err := natsjs.Connect(t.Context(), natsjs.Options{URL: "nats://u:secret%pw@127.0.0.1:1", ConnectWait: 300 * time.Millisecond})
	if !errors.Is(err, natsjs.ErrInvalidOption) || errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("%v: want an invalid option, not unavailable", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "--nats-url") || !strings.Contains(msg, "u:xxxxx@") || strings.Contains(msg, "secret") {
		t.Fatalf("%q: want the flag named and the password hidden", msg)
	}
}

// A layer's durable consumer reads its signals and its demand through one filter subject,
// which keeps JetStream on its single-filter delivery path.
func TestLayerConsumerHasOneFilterSubject(t *testing.T) {
	t.Parallel()
	b, url := conformance.NATS(t)
	if err := b.EnsureScenario(t.Context(), "base", broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	c, err := b.Consumer(t.Context(), "base", event.Model)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := conformance.JetStream(t, url).Stream(t.Context(), event.StreamName("base"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Consumer(t.Context(), event.ConsumerName("base", event.Model))
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.CachedInfo().Config
	if filters := append([]string{cfg.FilterSubject}, cfg.FilterSubjects...); len(cfg.FilterSubjects) > 1 || (cfg.FilterSubject == "") == (len(cfg.FilterSubjects) == 0) {
		t.Fatalf("filters %q, want exactly one", filters)
	}
	msgs := []broker.Message{
		{Subject: event.SignalSubject("base", event.Model, "us"), ID: "s"},
		{Subject: event.DemandSubject("base", event.Model, "us"), ID: "d"},
		{Subject: event.DemandSubject("base", event.Infrastructure, "us"), ID: "other-layer"},
		{Subject: event.DLQSubject("base", event.Model), ID: "dead"},
	}
	for i := range msgs {
		msgs[i].Data = []byte(msgs[i].ID)
	}
	if err := b.Publish(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
	got := conformance.FetchN(t, c, 2, 10*time.Second)
	ids := []string{got[0].Message().ID, got[1].Message().ID}
	if !slices.Equal(ids, []string{"s", "d"}) {
		t.Fatalf("the model layer read %v, want its signal and its demand", ids)
	}
	if n, err := b.Lag(t.Context(), "base", event.Model); err != nil || n != 2 {
		t.Fatalf("lag %d (%v): the model layer holds more than its two messages", n, err)
	}
}

// A delivery carries the de-duplication id as its ID, never as a header: an event published
// with only its id arrives with no header map, and one with a header of its own keeps just
// that.
func TestDeliveryHeadersLeaveOutTheMsgID(t *testing.T) {
	t.Parallel()
	b := connect(t, startServer(t))
	if err := b.EnsureScenario(t.Context(), "base", broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	c, err := b.Consumer(t.Context(), "base", event.Chips)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	subj := event.DemandSubject("base", event.Chips, "eu")
	msgs := []broker.Message{
		{Subject: subj, ID: "plain", Data: []byte(`{}`)},
		{Subject: subj, ID: "with-header", Header: map[string]string{"Cascade-Layer": "chips"}, Data: []byte(`{}`)},
	}
	if err := b.Publish(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
	var got []broker.Delivery
	conformance.Eventually(t, 2*time.Second, "both messages delivered", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		ds, err := c.Fetch(ctx, 2)
		got = append(got, ds...)
		if len(got) < 2 {
			return fmt.Errorf("%d of 2 delivered (%v)", len(got), err)
		}
		return nil
	})
	plain, with := got[0].Message(), got[1].Message()
	if plain.ID != "plain" || plain.Header != nil {
		t.Errorf("plain event: ID %q, header %v; want ID plain and no header map", plain.ID, plain.Header)
	}
	if with.ID != "with-header" || len(with.Header) != 1 || with.Header["Cascade-Layer"] != "chips" {
		t.Errorf("event with a header: ID %q, header %v; want ID with-header and only Cascade-Layer", with.ID, with.Header)
	}
}
