package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
)

// The stage flags: a bad mode, a bad range, and none or several of --layer, --layers and
// --remove are usage errors naming what is wrong.
func TestStageFlagsRefused(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--stages", "pairs", "--http-listen", ""}, `--stages "pairs": want chained or per-layer`},
		{[]string{"consume", "--layers", "chips-model"}, "chips is below model"},
		{[]string{"consume", "--layers", "model-grid"}, "must be consumer layers"},
		{[]string{"consume"}, "give one of --layer, --layers and --remove"},
		{[]string{"consume", "--layer", "chips", "--layers", "model-chips"}, "give one of --layer, --layers and --remove"},
		{[]string{"consume", "--layer", "chips", "--max-inflight", "0"}, "--max-inflight 0: must be positive"},
	} {
		code, stdout, stderr := run(t.Context(), "", nil, c.args...)
		if code != 2 || !strings.Contains(stdout+stderr, c.want) {
			t.Errorf("cascade %s: exit %d, want 2 and %q:\n%s%s", strings.Join(c.args, " "), code, c.want, stdout, stderr)
		}
	}
}

// A store run per layer, then by plain `run`: the chain refuses to start and names the
// per-layer consumers and the way out; `run --take-over` switches, after which only the
// chain's consumer is left and every signal's tree is there.
func TestRunSwitchesToChainedOnlyWithTakeOver(t *testing.T) {
	t.Parallel()
	dir, port := t.TempDir(), freePort(t)
	url := "nats://127.0.0.1:" + port
	env := map[string]string{"CASCADE_NATS_URL": url}
	args := []string{"run", "--data-dir", dir, "--nats-listen", "127.0.0.1:" + port, "--http-listen", "", "--scenario-poll", "100ms", "--log-format", "json"}
	start := func(extra ...string) (stop func() (int, string)) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		var code int
		var stderr string
		go func() {
			defer close(done)
			code, _, stderr = run(ctx, "", nil, append(append([]string(nil), args...), extra...)...)
		}()
		return func() (int, string) { cancel(); <-done; return code, stderr }
	}
	// lag is what `scenario show` says of the stages' lag.
	lag := func() (map[string]any, error) {
		code, out, stderr := run(t.Context(), "", env, "scenario", "show", "base")
		var show struct {
			Lag map[string]any `json:"lag"`
		}
		if code != 0 {
			return nil, fmt.Errorf("scenario show: exit %d %s", code, stderr)
		}
		return show.Lag, json.Unmarshal([]byte(out), &show)
	}
	stop := start("--stages", "per-layer")
	conformance.Eventually(t, 20*time.Second, "per-layer run to serve base", func() error {
		l, err := lag()
		if _, ok := l["energy"]; err != nil || !ok {
			return fmt.Errorf("lag %v, %v", l, err)
		}
		return nil
	})
	if code, out, stderr := run(t.Context(), adoptionUS, env, "publish"); code != 0 {
		t.Fatalf("publish: exit %d %s %s", code, out, stderr)
	}
	gridEvents := func() error {
		code, out, stderr := run(t.Context(), "", env, "totals", "--json")
		if code != 0 || !strings.Contains(out, `"grid"`) {
			return fmt.Errorf("totals: exit %d %s %s", code, out, stderr)
		}
		return nil
	}
	conformance.Eventually(t, 20*time.Second, "the tree through the per-layer stages", gridEvents)
	first := 0
	if code, out, _ := run(t.Context(), "", env, "totals", "--json"); code == 0 {
		var tot struct {
			Events int `json:"events"`
		}
		_ = json.Unmarshal([]byte(out), &tot)
		first = tot.Events
	}
	if first == 0 {
		t.Fatal("totals count no events after the first signal")
	}
	stop()

	// Plain run: refused, naming the consumers and --take-over.
	code, stderr := func() (int, string) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		code, _, stderr := run(ctx, "", nil, args...)
		return code, stderr
	}()
	if code == 0 || !strings.Contains(stderr, "cascade-base-application") || !strings.Contains(stderr, "--take-over") {
		t.Fatalf("chained run beside per-layer consumers: exit %d, want a refusal naming them and --take-over:\n%s", code, stderr)
	}
	stop = start("--take-over")
	defer stop()
	conformance.Eventually(t, 30*time.Second, "the chain to take over", func() error {
		l, err := lag()
		if _, ok := l[event.Chain.String()]; err != nil || !ok || len(l) != 1 {
			return fmt.Errorf("lag %v, %v", l, err)
		}
		return nil
	})
	if code, out, stderr := run(t.Context(), strings.Replace(adoptionUS, `"id":"`, `"id":"after-`, 1), env, "publish"); code != 0 {
		t.Fatalf("publish: exit %d %s %s", code, out, stderr)
	}
	conformance.Eventually(t, 20*time.Second, "the chain to derive the new signal", func() error {
		code, out, _ := run(t.Context(), "", env, "totals", "--json")
		var tot struct {
			Events int `json:"events"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &tot) != nil || tot.Events < 2*first {
			return fmt.Errorf("totals: %s", out)
		}
		return nil
	})
}
