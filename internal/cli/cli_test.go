package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/layercake/cascade/internal/cli"
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

// eventually polls cond until it holds or total elapses.
func eventually(t *testing.T, total time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(total)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
		code, _, stderr = run(ctx, "", nil, "run", "--data-dir", t.TempDir(), "--nats-listen", "127.0.0.1:"+port, "--ack-wait", "1s", "--log-format", "json")
	})
	var nc *nats.Conn
	eventually(t, 20*time.Second, "the embedded broker", func() bool {
		var err error
		nc, err = nats.Connect("nats://127.0.0.1:" + port)
		return err == nil
	})
	defer nc.Close()
	grid, err := nc.SubscribeSync("cascade.base.demand.grid.>")
	if err != nil {
		t.Fatal(err)
	}
	// A request to a stream subject is answered with JetStream's publish ack once base exists.
	eventually(t, 20*time.Second, "scenario base", func() bool {
		m := nats.NewMsg("cascade.base.signal.application.us")
		m.Data = []byte(adoptionUS)
		m.Header.Set("Nats-Msg-Id", "plain-client-1")
		resp, err := nc.RequestMsg(m, time.Second)
		return err == nil && strings.Contains(string(resp.Data), `"stream":"CASCADE_BASE"`)
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

func TestCalcPrintsTheTreeDownToTheGrid(t *testing.T) {
	t.Parallel()
	code, out, stderr := run(t.Context(), adoptionUS, nil, "calc")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"signal.adoption.v1 [us deepseek (chat)]", "demand.model.v1", "FLOP/s", "accelerators", "MW facility", "TWh/yr", "tCO2/yr"} {
		if !strings.Contains(out, want) {
			t.Errorf("calc output lacks %q:\n%s", want, out)
		}
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
