package cli_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/broker/natsjs"
	"github.com/layercake/cascade/internal/cli"
	"github.com/layercake/cascade/internal/conformance"
)

// An embedded broker with an incomplete credential, or an HTTP API with a blank token, is
// refused before anything starts, naming the flag, with exit 2.
func TestRunRefusesIncompleteCredentials(t *testing.T) {
	t.Parallel()
	noAuth := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(noAuth, []byte("max_payload: 1MB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"user without password off loopback", nil, []string{"--nats-listen", "0.0.0.0:-1", "--nats-user", "u"}, "--nats-password"},
		{"user without password on loopback", nil, []string{"--nats-listen", "127.0.0.1:-1", "--nats-user", "u"}, "--nats-password"},
		{"password without user", nil, []string{"--nats-listen", "127.0.0.1:-1", "--nats-password", "p"}, "--nats-user"},
		{"no credential off loopback", nil, []string{"--nats-listen", "0.0.0.0:-1"}, "--nats-listen"},
		{"blank token off loopback", nil, []string{"--nats-listen", "0.0.0.0:-1", "--nats-token", "  "}, "--nats-token"},
		{"config file without authorization", nil, []string{"--nats-listen", "0.0.0.0:-1", "--nats-server-config", noAuth}, "--nats-server-config"},
		{"empty api token", nil, []string{"--api-token", ""}, "--api-token"},
		{"blank api token", nil, []string{"--api-token", " \t "}, "--api-token"},
		{"blank api token in the environment", map[string]string{"CASCADE_API_TOKEN": "   "}, nil, "--api-token"},
		{"demo with a blank api token", nil, []string{"--api-token", " "}, "--api-token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			args := append([]string{"run", "--data-dir", t.TempDir(), "--http-listen", "127.0.0.1:0"}, c.args...)
			if strings.HasPrefix(c.name, "demo") {
				args = append([]string{"demo", "--http-listen", "127.0.0.1:0"}, c.args...)
			}
			code, _, stderr := run(ctx, "", c.env, args...)
			if code != 2 || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, want 2 naming %s: %s", code, c.want, stderr)
			}
		})
	}
}

// A secured server: the password never shows in an error or a log, a wrong one says
// "authorization failed", and run names the outside broker it joined.
func TestBrokerURLCredentialsAreRedacted(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-pw"
	ns, err := natsjs.StartServer(natsjs.ServerOptions{DataDir: t.TempDir(), Listen: "127.0.0.1:-1", User: "svc", Password: secret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	addr := strings.TrimPrefix(ns.ClientURL(), "nats://")

	t.Run("nothing answers", func(t *testing.T) {
		t.Parallel()
		code, _, stderr := run(t.Context(), "", nil, "consume", "--layer", "chips", "--nats-url", "nats://svc:"+secret+"@127.0.0.1:"+freePort(t))
		if code == 0 || strings.Contains(stderr, secret) || !strings.Contains(stderr, "svc:xxxxx@") {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		code, _, stderr := run(t.Context(), "", nil, "consume", "--layer", "chips", "--nats-url", "nats://svc:wrong-"+secret+"@"+addr)
		if code == 0 || strings.Contains(stderr, secret) || !strings.Contains(stderr, "authorization failed") || strings.Contains(stderr, "no NATS server answers") {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	})
	t.Run("run with CASCADE_NATS_URL", func(t *testing.T) {
		t.Parallel()
		code, _, stderr := run(t.Context(), "", map[string]string{"CASCADE_NATS_URL": "nats://svc:" + secret + "@127.0.0.1:" + freePort(t)}, "run", "--data-dir", t.TempDir(), "--http-listen", "")
		if code == 0 || strings.Contains(stderr, secret) {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	})
	t.Run("run says which broker it joined", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		logs := &conformance.SyncBuffer{}
		done := make(chan int, 1)
		dir := t.TempDir()
		go func() {
			done <- cli.Main{Stdin: strings.NewReader(""), Stdout: &conformance.SyncBuffer{}, Stderr: logs, Args: []string{"run", "--data-dir", dir, "--http-listen", "", "--log-format", "json"},
				Getenv: func(k string) string {
					if k == "CASCADE_NATS_URL" {
						return "nats://svc:" + secret + "@" + addr
					}
					return ""
				}}.Run(ctx)
		}()
		want := `"message":"broker: external NATS at nats://svc:xxxxx@` + addr + ` (credentials redacted)"`
		conformance.Eventually(t, 10*time.Second, "the broker line", logs.Holds(want))
		conformance.Eventually(t, 10*time.Second, "run serving", logs.Holds("serving; Ctrl-C"))
		cancel()
		if code := <-done; code != 0 || strings.Contains(logs.String(), secret) {
			t.Fatalf("exit %d: %s", code, logs.String())
		}
	})
}

// run logs which embedded broker it started: its store and its client address.
func TestRunLogsItsEmbeddedBroker(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	dir, port := t.TempDir(), freePort(t)
	logs := &conformance.SyncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- cli.Main{Stdin: strings.NewReader(""), Stdout: &conformance.SyncBuffer{}, Stderr: logs, Args: []string{"run", "--data-dir", dir, "--nats-listen", "127.0.0.1:" + port, "--http-listen", "", "--log-format", "json"}}.Run(ctx)
	}()
	want := `"message":"broker: embedded NATS JetStream, store ` + dir + `, clients on nats://127.0.0.1:` + port + `"`
	conformance.Eventually(t, 10*time.Second, "the broker line", logs.Holds(want))
	conformance.Eventually(t, 10*time.Second, "run serving", logs.Holds("serving; Ctrl-C"))
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, logs.String())
	}
}

// A busy --nats-listen or --http-listen fails at once, naming the flag and the address.
func TestRunBusyPortFailsAtOnce(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	addr := busy.Addr().String()
	for _, flag := range []string{"--nats-listen", "--http-listen"} {
		t.Run(flag, func(t *testing.T) {
			t.Parallel()
			args := []string{"run", "--data-dir", t.TempDir(), "--nats-listen", "127.0.0.1:" + freePort(t), "--http-listen", "127.0.0.1:0"}
			args = append(args, flag, addr)
			start := time.Now()
			code, _, stderr := run(t.Context(), "", nil, args...)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %s to report a busy port", took)
			}
			if code == 0 || !strings.Contains(stderr, flag+" "+addr) {
				t.Fatalf("exit %d, want an error naming %s %s: %s", code, flag, addr, stderr)
			}
		})
	}
}

// demo on busy default ports takes free ones at once and prints the page's address among the
// first lines of its output.
func TestDemoPrintsThePageOnBusyDefaultPorts(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"127.0.0.1:4222", "127.0.0.1:8080"} {
		if l, err := net.Listen("tcp", addr); err == nil { // else it is busy already
			defer l.Close()
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &conformance.SyncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- cli.Main{Stdin: strings.NewReader(""), Stdout: out, Stderr: &conformance.SyncBuffer{}, Args: []string{"demo", "--log-format", "json", "--interval", "1s"}}.Run(ctx)
	}()
	var page string
	conformance.Eventually(t, 5*time.Second, "the page's address on stdout", func() error {
		lines := strings.SplitN(out.String(), "\n", 4)
		for _, l := range lines[:min(3, len(lines))] {
			if u, ok := strings.CutPrefix(l, "web page: "); ok {
				page = u
				return nil
			}
		}
		return fmt.Errorf("no \"web page: \" line in the first lines %q", lines[:min(3, len(lines))])
	})
	if !strings.HasPrefix(page, "http://127.0.0.1:") || strings.HasSuffix(page, ":8080") {
		t.Fatalf("page %q", page)
	}
	conformance.Eventually(t, 10*time.Second, "the page answering", func() error {
		resp, err := http.Get(page + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /healthz: %s", resp.Status)
		}
		return nil
	})
	cancel()
	<-done
}

// A busy --http-listen that the user named is an error at once: demo neither prints another
// process's page as its own nor runs without one.
func TestDemoRefusesABusyNamedHTTPPort(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, errs := &conformance.SyncBuffer{}, &conformance.SyncBuffer{}
	start := time.Now()
	code := cli.Main{Stdin: strings.NewReader(""), Stdout: out, Stderr: errs, Args: []string{"demo", "--log-format", "json", "--nats-listen", "127.0.0.1:-1", "--http-listen", l.Addr().String()}}.Run(ctx)
	if code == 0 || ctx.Err() != nil {
		t.Fatalf("demo on a busy --http-listen: exit %d after %s", code, time.Since(start))
	}
	if !strings.Contains(errs.String(), "--http-listen "+l.Addr().String()) {
		t.Errorf("the error does not name the flag and address: %s", errs.String())
	}
	if strings.Contains(out.String(), "web page:") {
		t.Errorf("demo printed a page it does not serve: %s", out.String())
	}
}
