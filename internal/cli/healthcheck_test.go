package cli_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/conformance"
)

// `cascade healthcheck` exits 0 on a live process's 200 and 1 otherwise: /readyz of a
// consumer with no scenario yet, then ready once one is registered, then nobody listening.
func TestHealthcheck(t *testing.T) {
	t.Parallel()
	_, env := startBroker(t)
	port := freePort(t)
	addr := "127.0.0.1:" + port
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if code, o, e := run(ctx, "", env, "consume", "--layer", "chips", "--http-listen", addr, "--scenario-poll", "100ms"); code != 0 {
			t.Errorf("consume: exit %d\n%s%s", code, o, e)
		}
	}()
	check := func(want int, path, says string) func() error {
		return func() error {
			code, out, stderr := run(t.Context(), "", nil, "healthcheck", "--http-listen", addr, "--path", path, "--timeout", "1s")
			if code != want || !strings.Contains(out+stderr, says) {
				return fmt.Errorf("healthcheck %s: exit %d, want %d saying %q:\n%s%s", path, code, want, says, out, stderr)
			}
			return nil
		}
	}
	conformance.Eventually(t, 10*time.Second, "/healthz answering", check(0, "/healthz", "/healthz: ok"))
	if err := check(1, "/readyz", "503 Service Unavailable: not ready: no scenario served yet")(); err != nil {
		t.Fatal(err)
	}
	if code, o, e := run(t.Context(), "", env, "scenario", "create", "base"); code != 0 {
		t.Fatalf("scenario create: %d\n%s%s", code, o, e)
	}
	conformance.Eventually(t, 10*time.Second, "/readyz once the scenario is served", check(0, "/readyz", "/readyz: ready"))
	stop()
	<-done
	if err := check(1, "/healthz", "connection refused")(); err != nil {
		t.Fatal(err)
	}
	if err := check(2, "healthz", "--path \"healthz\": want a path starting with /")(); err != nil {
		t.Fatal(err)
	}
	// An unspecified host, as a container's --http-listen 0.0.0.0:8080, is asked on loopback.
	if code, _, stderr := run(t.Context(), "", map[string]string{"CASCADE_HTTP_LISTEN": "0.0.0.0:" + port}, "healthcheck"); code != 1 || !strings.Contains(stderr, "http://"+addr+"/healthz") {
		t.Fatalf("healthcheck from CASCADE_HTTP_LISTEN=0.0.0.0:…: exit %d\n%s", code, stderr)
	}
}
