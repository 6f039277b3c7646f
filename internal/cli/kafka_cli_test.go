package cli_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/cli"
	"github.com/layercake/cascade/internal/conformance"
)

// The README's Kafka try-out: `cascade dev kafka`, `cascade run --kafka-brokers …`, a signal,
// and Debian's kcat (a real outside Kafka client) reading the grid topic.
func TestKcatReadsDemandFromAKfakeBackedRun(t *testing.T) {
	t.Parallel()
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("kcat is not installed (apt-get install kcat); CI installs it")
		}
		t.Fatal("kcat is missing under CI: .ci/run must install it")
	}
	dir := t.TempDir() // run's data (its trace index too), removed after the cleanup that stops run
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	devOut := &conformance.SyncBuffer{}
	wg.Go(func() { runWith(ctx, devOut, "dev", "kafka", "--port", "0") })
	var brokers string
	conformance.Eventually(t, 20*time.Second, "the dev cluster", func() error {
		m := regexp.MustCompile(`--kafka-brokers (\S+)`).FindStringSubmatch(devOut.String())
		if m == nil {
			return fmt.Errorf("no --kafka-brokers in %q", devOut.String())
		}
		brokers = m[1]
		return nil
	})
	env := map[string]string{"CASCADE_KAFKA_BROKERS": brokers}
	wg.Go(func() {
		run(ctx, "", env, "run", "--data-dir", dir, "--http-listen", "127.0.0.1:0", "--log-format", "json")
	})
	conformance.Eventually(t, 30*time.Second, "run on Kafka", func() error {
		code, out, stderr := run(t.Context(), "", env, "scenario", "ls")
		if code != 0 || !strings.Contains(out, "base") {
			return fmt.Errorf("scenario ls: exit %d, %q %s", code, out, stderr)
		}
		return nil
	})
	if code, out, stderr := run(t.Context(), adoptionUS, env, "publish"); code != 0 {
		t.Fatalf("publish: %s %s", out, stderr)
	}
	first := strings.Split(brokers, ",")[0]
	var got string
	conformance.Eventually(t, 30*time.Second, "kcat to read the grid topic", func() error {
		out, err := exec.CommandContext(t.Context(), kcat, "-b", first, "-C", "-t", "cascade.base.demand.grid", "-o", "beginning", "-e", "-q").Output()
		got = string(out)
		want := gridEventsPerSignal("us", time.Date(2025, 1, 27, 0, 0, 0, 0, time.UTC)) // adoptionUS's time
		if n := strings.Count(got, `"type":"cascade.demand.grid.v1"`); n != want {
			return fmt.Errorf("kcat read %d of %d grid events (%v)", n, want, err)
		}
		return nil
	})
	if !strings.Contains(got, `"correlationid":"plain-client-1"`) {
		t.Fatalf("kcat read %s", got)
	}
}

// runWith runs a command whose standard output is read while it runs.
func runWith(ctx context.Context, stdout *conformance.SyncBuffer, args ...string) int {
	return cli.Main{Stdin: strings.NewReader(""), Stdout: stdout, Stderr: io.Discard, Args: args}.Run(ctx)
}
