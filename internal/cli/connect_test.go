package cli_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/layercake/cascade/internal/broker/kafka/kafkatest"
)

// `cascade connect epoch --once` against the recorded dataset, on NATS and on Kafka (which
// has no de-duplication, so only the checkpoint keeps a second poll from adding anything):
// one answer line per signal, exit 1 for the two bad rows; the second run publishes
// nothing new and answers only the bad rows again.
func TestConnectEpochOnceTwiceOnBothBrokers(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.FileServer(http.Dir("../../producers/connect/testdata/epoch")))
	t.Cleanup(srv.Close)
	for name, env := range map[string]func(t *testing.T) map[string]string{
		"nats": func(t *testing.T) map[string]string {
			_, env := startBroker(t)
			return env
		},
		"kafka": func(t *testing.T) map[string]string {
			return map[string]string{"CASCADE_KAFKA_BROKERS": strings.Join(kafkatest.Cluster(t), ",")}
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := env(t)
			if code, out, stderr := run(t.Context(), "", env, "connect", "epoch", "--once", "--base-url", srv.URL); code != 1 || !strings.Contains(out, "scenario base is not registered") {
				t.Fatalf("into an unregistered scenario: exit %d, %s %s", code, out, stderr)
			}
			if code, out, stderr := run(t.Context(), "", env, "scenario", "create", "base"); code != 0 {
				t.Fatalf("scenario create: %d %s %s", code, out, stderr)
			}
			code, out, stderr := run(t.Context(), "", env, "connect", "epoch", "--once", "--base-url", srv.URL)
			as := answers(t, out)
			taken := 0
			for _, a := range as {
				if a.Error == "" {
					taken++
				}
			}
			if code != 1 || len(as) != 12 || taken != 10 || !strings.Contains(out, `"id":"epoch:Llama 3.1-405B:training-end"`) || !strings.Contains(out, `"field":"Publication date"`) {
				t.Fatalf("first run: exit %d, %d answers (%d taken): %s %s", code, len(as), taken, out, stderr)
			}
			code, out, stderr = run(t.Context(), "", env, "connect", "epoch", "--once", "--base-url", srv.URL)
			if as := answers(t, out); code != 1 || len(as) != 2 || as[0].Error == "" || as[1].Error == "" {
				t.Fatalf("second run: exit %d: %s %s; want only the two bad rows again", code, out, stderr)
			}
		})
	}
}

// Neither or both of --once and --every, or a file without --map, is a usage error.
func TestConnectFlagsAreChecked(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"connect", "epoch", "--dry-run"},
		{"connect", "epoch", "--dry-run", "--once", "--every", "1h"},
		{"connect", "file", "x.csv", "--once", "--dry-run"},
	} {
		if code, _, stderr := run(t.Context(), "", nil, args...); code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", args, code, stderr)
		}
	}
}

// --dry-run needs no broker: the example file's rows are answered, each with its id, and
// nothing is published or checkpointed (a second dry run answers them all again).
func TestConnectFileDryRun(t *testing.T) {
	t.Parallel()
	args := []string{"connect", "file", "../../examples/connect/app-users.csv", "--map", "../../examples/connect/app-users.map.yaml", "--once", "--dry-run"}
	for range 2 {
		code, out, stderr := run(t.Context(), "", nil, args...)
		as := answers(t, out)
		if code != 0 || len(as) != 8 || as[0].ID != "app-users:chatgpt:world:2024-12" || as[0].Line != 2 {
			t.Fatalf("dry run: exit %d, %s %s", code, out, stderr)
		}
	}
}
