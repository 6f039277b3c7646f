package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/broker/natsjs"
	"github.com/layercake/cascade/internal/cli"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/history"
	"github.com/layercake/cascade/schemas"
)

// run invokes the cascade command in-process, as cmd/cascade does.
func run(ctx context.Context, stdin string, env map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = cli.Main{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Args: args, Getenv: func(k string) string { return env[k] }}.Run(ctx)
	return code, out.String(), errb.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

const adoptionUS = `{"specversion":"1.0","id":"plain-client-1","source":"/plain","type":"cascade.signal.adoption.v1","subject":"us","time":"2025-01-27T00:00:00Z","datacontenttype":"application/json","data":{"app":"deepseek","category":"chat","region":"us","users_delta":2600000}}`

// A plain nats.go client, standing in for any NATS client, publishes a signal onto the
// embedded broker of `cascade run` and receives the derived grid demand.
func TestRunServesAPlainNATSClient(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var code int
	var stderr string
	wg.Go(func() {
		code, _, stderr = run(ctx, "", nil, "run", "--data-dir", t.TempDir(), "--nats-listen", "127.0.0.1:"+port, "--ack-wait", "1s", "--log-format", "json", "--http-listen", "127.0.0.1:0")
	})
	var nc *nats.Conn
	conformance.Eventually(t, 20*time.Second, "the embedded broker", func() error {
		var err error
		nc, err = nats.Connect("nats://127.0.0.1:" + port)
		return err
	})
	defer nc.Close()
	grid, err := nc.SubscribeSync("cascade.base.demand.grid.>")
	if err != nil {
		t.Fatal(err)
	}
	// A request to a stream subject is answered with JetStream's publish ack once base exists.
	conformance.Eventually(t, 20*time.Second, "scenario base", func() error {
		m := nats.NewMsg("cascade.base.signal.application.us")
		m.Data = []byte(adoptionUS)
		m.Header.Set("Nats-Msg-Id", "plain-client-1")
		resp, err := nc.RequestMsg(m, time.Second)
		if err != nil {
			return err
		}
		if !strings.Contains(string(resp.Data), `"stream":"CASCADE_BASE"`) {
			return fmt.Errorf("answered %s, not a publish ack of CASCADE_BASE", resp.Data)
		}
		return nil
	})
	msg, err := grid.NextMsg(20 * time.Second)
	if err != nil {
		t.Fatalf("no grid demand arrived: %v", err)
	}
	var ev struct {
		Type, Subject, CorrelationID string
		Data                         struct {
			AvgMW float64 `json:"avg_mw"`
		}
	}
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "cascade.demand.grid.v1" || ev.Subject != "us" || ev.CorrelationID != "plain-client-1" || ev.Data.AvgMW <= 0 {
		t.Fatalf("grid event %s", msg.Data)
	}
	if !strings.HasPrefix(msg.Subject, "cascade.base.demand.grid.us") {
		t.Fatalf("subject %s", msg.Subject)
	}
	cancel()
	wg.Wait()
	if code != 0 {
		t.Fatalf("run exited %d on interrupt: %s", code, stderr)
	}
}

func TestPublishAnswersEachLine(t *testing.T) {
	t.Parallel()
	in := adoptionUS + "\n" + `{"type":"cascade.signal.adoption.v1","source":"/x","data":{"app":"a","category":"chat","region":"us"}}` + "\n" +
		`{"type":"cascade.signal.release.v1","source":"/x","data":{"model":"m","region":"world","open_weights":true,"params_total":10,"params_active":20,"reasoning":false}}` + "\n"
	code, out, _ := run(t.Context(), in, nil, "publish", "--dry-run")
	if code != 1 {
		t.Fatalf("exit %d, want 1 when a line fails", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d answer lines: %s", len(lines), out)
	}
	want := []string{`{"line":1,"id":"plain-client-1"}`, `"field":"data.users_delta"`, `"field":"data.params_active"`}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d: %s, want %s", i+1, lines[i], w)
		}
	}
	if code, _, stderr := run(t.Context(), "", nil, "publish", "--dry-run", "no-such-file.ndjson"); code != 2 {
		t.Errorf("missing file: exit %d (%s), want 2", code, stderr)
	}
}

func TestPublishSaysWhenNoBrokerAnswers(t *testing.T) {
	t.Parallel()
	code, _, stderr := run(t.Context(), adoptionUS, map[string]string{"CASCADE_NATS_URL": "nats://127.0.0.1:" + freePort(t)}, "publish")
	if code == 0 || !strings.Contains(stderr, "no NATS server answers") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	t.Parallel()
	env := map[string]string{"CASCADE_SCENARIO": "Not Valid"}
	if code, _, stderr := run(t.Context(), "", env, "calc"); code != 2 || !strings.Contains(stderr, "--scenario") {
		t.Fatalf("env scenario not read: exit %d %s", code, stderr)
	}
	// The flag wins over the environment.
	if code, out, stderr := run(t.Context(), adoptionUS, env, "calc", "--scenario", "ok"); code != 0 || !strings.Contains(out, "demand.grid.v1") {
		t.Fatalf("flag did not win: exit %d %s %s", code, out, stderr)
	}
}

// exponent matches Go's exponent notation (1.646e+08), which tables and trees must not print.
var exponent = regexp.MustCompile(`\de[+-]\d`)

func TestCalcPrintsTheTreeDownToTheGrid(t *testing.T) {
	t.Parallel()
	code, out, stderr := run(t.Context(), adoptionUS, nil, "calc")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"signal.adoption.v1 [us deepseek (chat)] 2.60 M weekly users", "demand.model.v1", "FLOP/s", "accelerators", "MW facility", "TWh/yr", "tCO2/yr"} {
		if !strings.Contains(out, want) {
			t.Errorf("calc output lacks %q:\n%s", want, out)
		}
	}
	if exponent.MatchString(out) {
		t.Errorf("calc prints exponent notation, not SI prefixes:\n%s", out)
	}
}

func TestCoefficientsValidate(t *testing.T) {
	t.Parallel()
	code, out, _ := run(t.Context(), "", nil, "coefficients", "show")
	if code != 0 || !strings.Contains(out, "sources:") {
		t.Fatalf("show: exit %d", code)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := run(t.Context(), "", nil, "coefficients", "validate", good); code != 0 || !strings.Contains(out, "coefversion default-") {
		t.Fatalf("validate default: exit %d %s", code, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(out, "load_factor: 0.7", "load_factor: 1.7", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(t.Context(), "", nil, "coefficients", "validate", bad); code != 1 || !strings.Contains(stderr, "energy.load_factor") {
		t.Fatalf("validate bad: exit %d %s", code, stderr)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	if code, out, _ := run(t.Context(), "", nil, "--version"); code != 0 || !strings.Contains(out, cli.Version) {
		t.Fatalf("--version: %d %s", code, out)
	}
}

// startRun runs `cascade run` on free ports until the test ends and returns its NATS URL.
func startRun(t *testing.T) string {
	t.Helper()
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir() // before the cleanup that stops run, so removed after it
	var wg sync.WaitGroup
	wg.Go(func() {
		run(ctx, "", nil, "run", "--data-dir", dir, "--nats-listen", "127.0.0.1:"+port, "--ack-wait", "1s", "--log-format", "json", "--http-listen", "127.0.0.1:0")
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	url := "nats://127.0.0.1:" + port
	conformance.Eventually(t, 20*time.Second, "cascade run", func() error {
		code, out, stderr := run(t.Context(), "", map[string]string{"CASCADE_NATS_URL": url}, "scenario", "ls")
		if code != 0 || !strings.Contains(out, "base") {
			return fmt.Errorf("scenario ls: exit %d, %q %s", code, out, stderr)
		}
		return nil
	})
	return url
}

// The README's history walk-through: replay the history, totals per layer, a what-if against
// base, and the trace of the DeepSeek-R1 release (answered by run's index over the broker).
func TestHistoryWalkThrough(t *testing.T) {
	t.Parallel()
	env := map[string]string{"CASCADE_NATS_URL": startRun(t)}
	sigs, err := history.Signals()
	if err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := run(t.Context(), "", env, "replay", "--history"); code != 0 || !strings.Contains(out, fmt.Sprintf("replayed %d signals into base", len(sigs))) {
		t.Fatalf("replay: %d %s %s", code, out, stderr)
	}
	half := filepath.Join(t.TempDir(), "half.yaml")
	_, doc, _ := run(t.Context(), "", nil, "coefficients", "show")
	doc = strings.Replace(doc, "version: default-2026.12", "version: half-inference", 1)
	doc = regexp.MustCompile(`(?m)^(\s+utilization:\s*\{?\s*inference:\s*)0\.15`).ReplaceAllString(doc, "${1}0.075")
	if err := os.WriteFile(half, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := run(t.Context(), "", env, "replay", "--history", "--into", "half-util", "--coefficients", half); code != 0 || !strings.Contains(out, "into half-util") {
		t.Fatalf("what-if replay: %d %s %s", code, out, stderr)
	}
	var tree string
	conformance.Eventually(t, 30*time.Second, "the DeepSeek-R1 tree down to the grid", func() error {
		code, out, stderr := run(t.Context(), "", env, "trace", "hist-2025-01-20-deepseek-r1")
		tree = out
		if n := strings.Count(out, "demand.grid.v1"); code != 0 || n != 3 {
			return fmt.Errorf("trace: exit %d, %d of 3 grid events %s", code, n, stderr)
		}
		return nil
	})
	for _, want := range []string{"signal.release.v1 [cn-deepseek deepseek-r1]", "demand.infrastructure.v1 [cn-deepseek finetune] -", "@2025-04-20"} {
		if !strings.Contains(tree, want) {
			t.Errorf("trace lacks %q:\n%s", want, tree)
		}
	}
	// run's index answered, not a scan, and an error keeps its class across request/reply.
	if code, out, stderr := run(t.Context(), "", env, "trace", "hist-2025-01-20-deepseek-r1", "--json"); code != 0 || !strings.Contains(out, `"via": "index"`) || strings.Contains(stderr, "scanning") {
		t.Errorf("trace --json was not answered by run's index: exit %d\n%s\n%s", code, stderr, out)
	}
	if code, _, stderr := run(t.Context(), "", env, "trace", "--scenario", "nosuch", "hist-2025-01-20-deepseek-r1"); code != 1 || !strings.Contains(stderr, "see `cascade scenario ls`") || strings.Contains(stderr, "scanning") {
		t.Errorf("trace in an unknown scenario: exit %d, want 1 with the not-found hint from run's index:\n%s", code, stderr)
	}
	code, out, stderr := run(t.Context(), "", env, "totals", "--scenario", "half-util", "--vs", "base", "--json")
	if code != 0 || !strings.Contains(out, `"vs": "base"`) {
		t.Fatalf("totals --vs: %d %s %s", code, out, stderr)
	}
	_, plain, _ := run(t.Context(), "", env, "totals", "--json", "--by", "region", "--since", "2025-01-01")
	for _, doc := range []string{out, plain} {
		var v any
		if err := json.Unmarshal([]byte(doc), &v); err != nil {
			t.Fatal(err)
		}
		if err := schemas.Validate(schemas.Totals, v); err != nil {
			t.Errorf("totals --json does not follow schemas/totals.json: %v\n%s", err, doc)
		}
	}
	if code, out, _ := run(t.Context(), "", env, "totals", "--by", "region"); code != 0 || !strings.Contains(out, "tCO2/yr") || !strings.Contains(out, "h800") || exponent.MatchString(out) {
		t.Fatalf("totals (SI prefixes, no exponents): %d %s", code, out)
	}
	if code, out, _ := run(t.Context(), "", env, "totals", "--scenario", "half-util", "--vs", "base"); code != 0 || !regexp.MustCompile(`\d [kMGTPEZ] `).MatchString(out) || exponent.MatchString(out) {
		t.Fatalf("totals --vs (SI prefixes, no exponents): %d %s", code, out)
	}
	if code, _, _ := run(t.Context(), "", env, "replay", "--history", "--into", "half-util", "--coefficients", "/nonexistent.yaml"); code != 2 {
		t.Fatalf("replay with a missing coefficients file: exit %d, want 2", code)
	}
}

func TestSubscribeFollowsAFeed(t *testing.T) {
	t.Parallel()
	env := map[string]string{"CASCADE_NATS_URL": startRun(t)}
	if code, out, stderr := run(t.Context(), adoptionUS, env, "publish"); code != 0 || !strings.Contains(out, "plain-client-1") {
		t.Fatalf("publish: %d %s %s", code, out, stderr)
	}
	// The US adoption gives one grid event per accelerator of the fleet in force; two are read.
	var out string
	conformance.Eventually(t, 20*time.Second, "two grid events", func() error {
		var stderr string
		_, out, stderr = run(t.Context(), "", env, "subscribe", "grid", "--region", "us", "--from-start", "--count", "2")
		if n := strings.Count(out, "\n"); n != 2 {
			return fmt.Errorf("subscribe printed %d of 2 lines %s", n, stderr)
		}
		return nil
	})
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev struct{ Type, Subject, CorrelationID string }
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Type != "cascade.demand.grid.v1" || ev.Subject != "us" || ev.CorrelationID != "plain-client-1" {
			t.Fatalf("subscribe printed %s (%v)", line, err)
		}
	}
	// --since a time in the future: nothing yet, so a short-lived subscribe ends empty.
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if code, out, _ := run(ctx, "", env, "subscribe", "grid", "--since", "2100-01-01"); code != 0 || out != "" {
		t.Fatalf("subscribe --since future: %d %q", code, out)
	}
	if code, _, stderr := run(t.Context(), "", env, "subscribe", "application"); code != 2 || !strings.Contains(stderr, "feeds are") {
		t.Fatalf("subscribe application: %d %s", code, stderr)
	}
}

// Removing a scenario that run serves leaves nothing behind that outlives run's context:
// after `scenario rm`, an interrupt still ends run within seconds.
func TestRunStopsAfterItsScenarioIsRemoved(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	url := "nats://127.0.0.1:" + port
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan int, 1)
	var stderr string
	dir := t.TempDir()
	go func() {
		var code int
		code, _, stderr = run(ctx, "", nil, "run", "--data-dir", dir, "--nats-listen", "127.0.0.1:"+port, "--http-listen", "", "--scenario-poll", "100ms", "--log-format", "json")
		done <- code
	}()
	var b *natsjs.Broker
	conformance.Eventually(t, 20*time.Second, "the embedded broker", func() error {
		var err error
		b, err = natsjs.Connect(t.Context(), natsjs.Options{URL: url, ConnectWait: time.Second})
		return err
	})
	defer b.Close()
	if err := consumers.BindScenario(t.Context(), b, "doomed", coefficients.Default(), broker.ScenarioConfig{AckWait: time.Second}); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	// Served: the chain's consumer is open (the view reads no log of its own on NATS: the
	// chain hands it what it reads and publishes).
	conformance.Eventually(t, 20*time.Second, "run serving scenario doomed", func() error {
		st, err := js.Stream(t.Context(), event.StreamName("doomed"))
		if err != nil {
			return err
		}
		info, err := st.Info(t.Context())
		if err != nil {
			return err
		}
		if want := 1; info.State.Consumers < want {
			return fmt.Errorf("%d of %d consumers open", info.State.Consumers, want)
		}
		return nil
	})
	if code, out, errs := run(t.Context(), "", nil, "scenario", "rm", "doomed", "--nats-url", url); code != 0 {
		t.Fatalf("scenario rm: exit %d: %s %s", code, out, errs)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("run exited %d: %s", code, stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop within 10s of its interrupt after scenario rm")
	}
}

// Without a run to ask, trace scans the scenario and says so, on stderr and in --json.
func TestTraceWithoutRunSaysItScans(t *testing.T) {
	t.Parallel()
	_, env := startBroker(t)
	if code, out, stderr := run(t.Context(), "", env, "scenario", "create", "base"); code != 0 {
		t.Fatalf("scenario create: exit %d %s %s", code, out, stderr)
	}
	var id struct{ ID string }
	_, out, _ := run(t.Context(), adoptionUS+"\n", env, "publish")
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &id); err != nil || id.ID == "" {
		t.Fatalf("publish answer %q: %v", out, err)
	}
	code, out, stderr := run(t.Context(), "", env, "trace", id.ID, "--json")
	if code != 0 || !strings.Contains(out, `"via": "scan"`) || !strings.Contains(stderr, "no cascade run answers trace requests; scanning scenario base") {
		t.Fatalf("trace without run: exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}
	if code, _, stderr := run(t.Context(), "", env, "trace", "no-such-event"); code != 1 || !strings.Contains(stderr, "no such event") {
		t.Fatalf("trace of an unknown id by scan: exit %d %s", code, stderr)
	}
}

// gridEventsPerSignal is how many grid events a signal in region at when derives with the
// default coefficients: one per accelerator of the fleet in force.
func gridEventsPerSignal(region string, when time.Time) int {
	n := 0
	for _, share := range coefficients.Default().At(when).Infrastructure.Fleet.For(region) {
		if share > 0 {
			n++
		}
	}
	return n
}
