package cli_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/natsjs"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
)

// withDeadLetters runs a bare broker with scenario base holding dead letters dls; it returns
// the broker's URL and the environment that points the CLI at it.
func withDeadLetters(t *testing.T, dls ...broker.Message) (string, map[string]string) {
	t.Helper()
	ns, env := startBroker(t)
	b, err := natsjs.Connect(t.Context(), natsjs.Options{URL: ns.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.EnsureScenario(t.Context(), "base", broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(t.Context(), dls); err != nil {
		t.Fatal(err)
	}
	return ns.ClientURL(), env
}

// `dlq ls --layer L` lists that layer's dead letters only; a layer that has none (unknown, or
// the terminal one, which runs no consumer) is a usage error naming --layer, not an empty list.
func TestDLQLayer(t *testing.T) {
	t.Parallel()
	_, env := withDeadLetters(t,
		broker.Message{Subject: event.DLQSubject("base", event.Chips), ID: "dead-chips", Data: []byte("x"), Header: map[string]string{broker.HeaderLayer: "chips"}},
		broker.Message{Subject: event.DLQSubject("base", event.Energy), ID: "dead-energy", Data: []byte("y"), Header: map[string]string{broker.HeaderLayer: "energy"}},
	)
	if code, out, stderr := run(t.Context(), "", env, "dlq", "ls", "--layer", "chips"); code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"layer":"chips"`) {
		t.Errorf("dlq ls --layer chips: %d %q %s", code, out, stderr)
	}
	if code, out, stderr := run(t.Context(), "", env, "dlq", "ls"); code != 0 || strings.Count(out, "\n") != 2 {
		t.Errorf("dlq ls: %d %q %s", code, out, stderr)
	}
	for _, layer := range []string{"gpu", "grid"} {
		if code, _, stderr := run(t.Context(), "", env, "dlq", "ls", "--layer", layer); code != 2 || !strings.Contains(stderr, "--layer") {
			t.Errorf("dlq ls --layer %s: exit %d, %s; want 2 naming --layer", layer, code, stderr)
		}
	}
}

// `dlq redrive` re-publishes each dead letter's body to its original subject, skips one whose
// body was cut (saying so), and publishes it once when run twice.
func TestDLQRedrive(t *testing.T) {
	t.Parallel()
	orig := event.SignalSubject("base", event.Chips, "us")
	url, env := withDeadLetters(t,
		broker.Message{Subject: event.DLQSubject("base", event.Chips), ID: "dead-1", Data: []byte("whole"), Header: map[string]string{broker.HeaderLayer: "chips", broker.HeaderOriginalSubject: orig}},
		broker.Message{Subject: event.DLQSubject("base", event.Chips), ID: "dead-2", Data: []byte("cu"), Header: map[string]string{broker.HeaderLayer: "chips", broker.HeaderOriginalSubject: orig, broker.HeaderTruncated: "9"}},
	)
	for range 2 {
		code, out, stderr := run(t.Context(), "", env, "dlq", "redrive", "--layer", "chips")
		if code != 0 || !strings.Contains(out, "re-drove 1 dead letters") || !strings.Contains(out, "skipped 1 dead letters") {
			t.Fatalf("dlq redrive: %d %q %s", code, out, stderr)
		}
	}
	st, err := conformance.JetStream(t, url).Stream(t.Context(), event.StreamName("base"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context(), jetstream.WithSubjectFilter(orig))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[orig]; n != 1 {
		t.Fatalf("%d messages on %s after two redrives, want 1", n, orig)
	}
	m, err := st.GetLastMsgForSubject(t.Context(), orig)
	if err != nil || string(m.Data) != "whole" {
		t.Fatalf("last message on %s: %v %v, want the dead letter's body", orig, m, err)
	}
}
