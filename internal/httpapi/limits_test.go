package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/httpapi"
)

// serve runs the API with Server.Serve, as run does, on a free loopback port; it returns
// host:port.
func serve(t *testing.T, b broker.Broker, o httpapi.Options) string {
	t.Helper()
	o.Listen = "127.0.0.1:0"
	srv, err := httpapi.New(b, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := make(chan string, 1), make(chan error, 1)
	go func() { done <- srv.Serve(ctx, func(a string) { addr <- a }) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-addr:
		return a
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	return ""
}

// feedBroker is an embedded NATS JetStream with scenario base's stream, and the server's
// client URL.
func feedBroker(t *testing.T) (broker.Broker, string) {
	t.Helper()
	b, url := conformance.NATS(t)
	if err := b.EnsureScenario(t.Context(), "base", broker.ScenarioConfig{AckWait: time.Second}); err != nil {
		t.Fatal(err)
	}
	return b, url
}

// rawRequest writes one HTTP/1.1 request on c and reads its answer.
func rawRequest(t *testing.T, c net.Conn, br *bufio.Reader, path string) *http.Response {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: cascade\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// closedWithin reads c until the server closes it, failing if that takes longer than d.
func closedWithin(t *testing.T, c net.Conn, br io.Reader, d time.Duration, what string) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(d))
	_, err := io.Copy(io.Discard, br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the connection was still open after %v", what, d)
	}
	t.Logf("%s: closed by the server after %v", what, time.Since(start).Round(time.Millisecond))
}

// An idle keep-alive connection and a request whose body trickles in are closed by the
// server within the configured timeouts.
func TestServerClosesIdleAndSlowConnections(t *testing.T) {
	t.Parallel()
	addr := serve(t, nil, httpapi.Options{IdleTimeout: 200 * time.Millisecond, ReadTimeout: 300 * time.Millisecond})

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	br := bufio.NewReader(idle)
	if resp := rawRequest(t, idle, br, "/healthz"); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("healthz: %d, close %v; want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
	}
	closedWithin(t, idle, br, 3*time.Second, "idle keep-alive connection")

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "POST /v1/signals HTTP/1.1\r\nHost: cascade\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	closedWithin(t, slow, slow, 3*time.Second, "slow-body POST")
}

// Beyond MaxConns a new connection is not served until another one closes.
func TestServerCapsConnections(t *testing.T) {
	t.Parallel()
	addr := serve(t, nil, httpapi.Options{MaxConns: 2, IdleTimeout: time.Minute})
	var open []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if resp := rawRequest(t, c, bufio.NewReader(c), "/healthz"); resp.StatusCode != 200 {
			t.Fatalf("healthz: %d", resp.StatusCode)
		}
		open = append(open, c)
	}
	third, err := net.Dial("tcp", addr) // the kernel's backlog takes it; the server does not
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if _, err := io.WriteString(third, "GET /healthz HTTP/1.1\r\nHost: cascade\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(third)
	_ = third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := br.Peek(1); err == nil {
		t.Fatal("a third connection was served with MaxConns 2")
	}
	open[0].Close()
	_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the waiting connection once another closed: %v", err)
	}
	resp.Body.Close()
}

// POST /v1/signals beyond the per-client rate answers 429 with Retry-After; another client
// IP has its own allowance.
func TestSignalRateLimit(t *testing.T) {
	t.Parallel()
	addr := serve(t, nil, httpapi.Options{SignalRate: 1, SignalBurst: 2})
	post := func(client *http.Client) *http.Response {
		t.Helper()
		// A wrong Content-Type is answered without a broker; the limit comes first.
		resp, err := client.Post("http://"+addr+"/v1/signals", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode == http.StatusTooManyRequests && !strings.Contains(body.Error, "too many POST /v1/signals") {
			t.Errorf("429 body %q", body.Error)
		}
		return resp
	}
	for i := range 2 {
		if resp := post(http.DefaultClient); resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Fatalf("request %d within the burst: %d", i+1, resp.StatusCode)
		}
	}
	resp := post(http.DefaultClient)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("third request: %d, Retry-After %q; want 429 and 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	other := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	if resp := post(other); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("another client IP: %d, want its own allowance", resp.StatusCode)
	}
}

// openFeed starts an SSE request and reads its first line; cancel ends it.
func openFeed(t *testing.T, client *http.Client, url string) (*http.Response, *bufio.Scanner, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	end := func() { cancel(); resp.Body.Close() }
	if resp.StatusCode != 200 {
		return resp, nil, end
	}
	lines := bufio.NewScanner(resp.Body)
	if !lines.Scan() || lines.Text() != ": cascade feed" {
		t.Fatalf("first line %q: %v", lines.Text(), lines.Err())
	}
	return resp, lines, end
}

// An SSE stream outlives the read and write timeouts as long as it pings.
func TestFeedOutlivesWriteTimeout(t *testing.T) {
	t.Parallel()
	b, _ := feedBroker(t)
	const timeout = 200 * time.Millisecond
	addr := serve(t, b, httpapi.Options{ReadTimeout: timeout, WriteTimeout: timeout, Ping: 50 * time.Millisecond})
	_, lines, cancel := openFeed(t, http.DefaultClient, "http://"+addr+"/v1/feeds/grid")
	defer cancel()
	start, pings := time.Now(), 0
	for time.Since(start) < 5*timeout {
		if !lines.Scan() {
			t.Fatalf("the stream ended after %v and %d pings: %v", time.Since(start), pings, lines.Err())
		}
		if lines.Text() == ": ping" {
			pings++
		}
	}
	if pings < 5 {
		t.Fatalf("%d pings in %v", pings, time.Since(start))
	}
}

// Beyond MaxFeeds a feed answers 503 with Retry-After; a closed stream frees its slot.
func TestFeedCap(t *testing.T) {
	t.Parallel()
	b, _ := feedBroker(t)
	addr := serve(t, b, httpapi.Options{MaxFeeds: 1})
	url := "http://" + addr + "/v1/feeds?layers=chips,grid"
	_, _, cancel := openFeed(t, http.DefaultClient, url)
	resp, _, cancel2 := openFeed(t, http.DefaultClient, url)
	var body struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	cancel2()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body.Error, "too many open feeds (limit 1)") {
		t.Fatalf("second feed: %d, Retry-After %q, %q; want 503 naming the limit", resp.StatusCode, resp.Header.Get("Retry-After"), body.Error)
	}
	cancel()
	conformance.Eventually(t, 5*time.Second, "a feed once the first closed", func() error {
		resp, _, cancel := openFeed(t, http.DefaultClient, url)
		defer cancel()
		if resp.StatusCode != 200 {
			return fmt.Errorf("a new feed: %s", resp.Status)
		}
		return nil
	})
}

// The page and the API carry the security headers.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	addr := serve(t, nil, httpapi.Options{})
	for _, path := range []string{"/", "/app.js", "/healthz", "/v1/totals?by=bogus"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for name, want := range map[string]string{
			"X-Content-Type-Options": "nosniff",
			"X-Frame-Options":        "DENY",
			"Referrer-Policy":        "no-referrer",
		} {
			if got := resp.Header.Get(name); got != want {
				t.Errorf("%s: %s = %q, want %q", path, name, got, want)
			}
		}
		csp := resp.Header.Get("Content-Security-Policy")
		for _, d := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, d) {
				t.Errorf("%s: Content-Security-Policy %q lacks %s", path, csp, d)
			}
		}
	}
}

// Clients that open a feed and go leave no goroutine and no JetStream consumer behind.
// Not parallel: it counts the process's goroutines.
func TestFeedReleasesConsumersAndGoroutines(t *testing.T) {
	b, natsURL := feedBroker(t)
	addr := serve(t, b, httpapi.Options{})
	js := conformance.JetStream(t, natsURL)
	consumers := func() int {
		st, err := js.Stream(t.Context(), event.StreamName("base"))
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().State.Consumers
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	url := "http://" + addr + "/v1/feeds?layers=chips,grid"
	cycle := func() {
		_, _, cancel := openFeed(t, client, url)
		cancel()
	}
	cycle()
	var goroutines, cons int
	settled := func(maxGoroutines, maxConsumers int) func() error {
		return func() error {
			goroutines, cons = runtime.NumGoroutine(), consumers()
			if goroutines > maxGoroutines || cons > maxConsumers {
				return fmt.Errorf("%d goroutines (at most %d), %d consumers (at most %d)", goroutines, maxGoroutines, cons, maxConsumers)
			}
			return nil
		}
	}
	conformance.Eventually(t, 10*time.Second, "no consumer after the first client", settled(math.MaxInt, 0))
	base := runtime.NumGoroutine()
	defer func() {
		if t.Failed() {
			t.Logf("after 200 clients came and went: %d goroutines (started at %d), %d consumers on the stream", goroutines, base, cons)
			if os.Getenv("CASCADE_DUMP_GOROUTINES") != "" {
				buf := make([]byte, 1<<20)
				t.Logf("%s", buf[:runtime.Stack(buf, true)])
			}
		}
	}()
	for range 200 {
		cycle()
	}
	conformance.Eventually(t, 10*time.Second, "goroutines and consumers back where they started", settled(base, 0))
}
