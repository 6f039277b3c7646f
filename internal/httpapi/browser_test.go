package httpapi_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/httpapi"
)

// chromiumPath is Debian's Chromium; CI installs it (apt-get install -y chromium).
const chromiumPath = "/usr/bin/chromium"

// readmeScreenshot is the screenshot the README shows, relative to this package. The test
// writes it only when CASCADE_SCREENSHOT_DIR names its directory (relative to the repository's
// root): CASCADE_SCREENSHOT_DIR=docs go test ./internal/httpapi/ -run TestBrowserPage -count=1
const readmeScreenshot = "../../docs/screenshot.png"

// screenshotDir is where the test saves screenshot.png: CASCADE_SCREENSHOT_DIR, or a
// temporary directory.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("CASCADE_SCREENSHOT_DIR")
	switch {
	case dir == "":
		return t.TempDir()
	case filepath.IsAbs(dir):
		return dir
	}
	return filepath.Join("../..", dir)
}

// moreSignals are posted after the page's own example so that the screenshot shows several
// regions, workloads and accelerator kinds, and a region whose chips take a long line.
const moreSignals = `{"specversion":"1.0","type":"cascade.signal.adoption.v1","source":"/cascade/test","data":{"app":"code-copilot","category":"coding","region":"eu","users_delta":400000}}
{"specversion":"1.0","type":"cascade.signal.adoption.v1","source":"/cascade/test","data":{"app":"office-helper","category":"chat","region":"cn","users_delta":1800000}}
{"specversion":"1.0","type":"cascade.signal.adoption.v1","source":"/cascade/test","data":{"app":"search-answers","category":"chat","region":"jp","users_delta":900000}}
{"specversion":"1.0","type":"cascade.signal.adoption.v1","source":"/cascade/test","data":{"app":"assistant","category":"reasoning","region":"us","users_delta":40000000}}
{"specversion":"1.0","type":"cascade.signal.release.v1","source":"/cascade/test","data":{"model":"open-moe-120b","region":"us","open_weights":true,"params_total":1.168e11,"params_active":5.1e9,"reasoning":true}}
`

// TestBrowserPage drives headless Chromium against the whole pipeline in-process: it loads the
// page under its Content-Security-Policy, posts a signal through the page's form, sees the
// layer totals and the ticker move, draws the signal's trace down to the grid, takes the
// screenshot, checks at desktop and phone width that no text overflows its card, and gives
// the page a token when the API asks for one. A CSP violation, an exception or a console error
// fails it, and so does a change to the tracked README screenshot (unless asked for).
func TestBrowserPage(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no browser at %s (apt-get install -y chromium) and CI is unset", chromiumPath)
		}
		t.Fatalf("no browser at %s; CI must install it (apt-get install -y chromium): %v", chromiumPath, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()
	shotDir := screenshotDir(t)
	tracked, trackedErr := os.ReadFile(readmeScreenshot)
	if os.Getenv("CASCADE_SCREENSHOT_DIR") == "" {
		defer func() {
			now, err := os.ReadFile(readmeScreenshot)
			if (err == nil) != (trackedErr == nil) || !bytes.Equal(now, tracked) {
				t.Errorf("the test changed %s; it writes screenshots only into CASCADE_SCREENSHOT_DIR", readmeScreenshot)
			}
		}()
	}

	b := startPipeline(ctx, t)
	base := startAPI(t, b, "")
	page, closeBrowser := startBrowser(ctx, t)
	defer closeBrowser()

	// Uncaught exceptions and console errors of the page fail the test.
	var (
		consoleMu sync.Mutex
		problems  []string
		csp       []string // Content-Security-Policy violations
	)
	consoleCtx, stopConsole := context.WithCancel(page)
	messages := chromedp.Console(consoleCtx)
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Source == "network" && strings.Contains(m.Text, "401") {
				continue // the page's first requests behind a token
			}
			switch {
			case strings.Contains(m.Text, "Content Security Policy"):
				consoleMu.Lock()
				csp = append(csp, m.String())
				consoleMu.Unlock()
			case m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleError:
				consoleMu.Lock()
				problems = append(problems, m.String())
				consoleMu.Unlock()
			}
		}
	}()

	// Load the page at desktop size and wait for the live feed and the first totals.
	do(t, page, "desktop size", chromedp.EmulateViewport(1280, 800))
	res, err := chromedp.Run(page, chromedp.NavigateResponse(base+"/"))
	if err != nil {
		t.Fatalf("load the page: %v", err)
	}
	if policy, _ := res.Headers["Content-Security-Policy"].(string); !strings.Contains(policy, "script-src 'self'") {
		t.Fatalf("the page came without its Content-Security-Policy: %v", res.Headers)
	}
	do(t, page, "see the feed live and the first totals",
		poll(`document.body.dataset.feed === "live" && !!document.body.dataset.totals`))
	gridBefore := text(t, page, "#band-grid .total")
	modelBefore := text(t, page, "#band-model .total")
	t.Logf("before: grid %q, model %q", gridBefore, modelBefore)

	// Post the example adoption signal through the page's form.
	do(t, page, "post the example signal", chromedp.Click(chromedp.CSS("#signal-send")))
	id, err := chromedp.Run(page, chromedp.Poll[string](`document.querySelector("#signal-answer").dataset.id`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil {
		answer, _ := chromedp.Run(page, chromedp.TextContent(chromedp.CSS("#signal-answer")))
		t.Fatalf("the form's signal was not taken: %v; answer %q", err, answer)
	}
	t.Logf("signal id %s", id)

	// The demand flows down: the grid and model totals change and the ticker shows events.
	do(t, page, "see the totals change and the ticker fill",
		poll(`(() => {
			const t = (s) => document.querySelector(s).textContent;
			return t("#band-grid .total") !== `+jsString(gridBefore)+` &&
				t("#band-model .total") !== `+jsString(modelBefore)+` &&
				document.querySelectorAll("#ticker li").length > 0;
		})()`))

	// A few more signals, so that the screenshot shows several regions.
	postSignals(ctx, t, base, moreSignals)
	do(t, page, "see every region reach the grid",
		poll(`(() => {
			const rows = [...document.querySelectorAll("#regions tbody tr")];
			return rows.length >= 4 && rows.every((r) => r.querySelector('[data-label="Grid, TWh/yr"]').textContent !== "0");
		})()`))
	t.Logf("after: grid %q, model %q", text(t, page, "#band-grid .total"), text(t, page, "#band-model .total"))

	// Trace the form's signal down to the grid.
	do(t, page, "draw the trace tree",
		chromedp.SetValue(chromedp.CSS("#trace-id"), id),
		chromedp.Click(chromedp.CSS("#trace-go")),
		poll(`!!document.querySelector('#trace-tree li[data-layer="grid"]') &&
			!!document.querySelector('#trace-tree li[data-layer="application"][data-id=`+jsString(id)+`]')`))

	// No text sticks out of its card at desktop width.
	noOverflow(t, page, 1280)

	// The screenshot: the whole page, once its animations have settled.
	do(t, page, "settle", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`),
		poll(`document.getAnimations().length === 0`))
	png, err := chromedp.Run(page, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.MkdirAll(shotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shotDir, "screenshot.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}

	// Phone width: nothing overflows sideways, and no text sticks out of its card.
	do(t, page, "resize to phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	if _, err := chromedp.Run(page, chromedp.Poll[bool](`document.documentElement.clientWidth === 390 && document.documentElement.scrollWidth <= 390`,
		chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		wide, _ := chromedp.Run(page, chromedp.Evaluate[string](`document.documentElement.scrollWidth + "px wide; widest: " +
			[...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > 390)
				.slice(0, 5).map((e) => e.tagName + (e.id ? "#" + e.id : "") + "." + e.className).join(", ")`))
		t.Fatalf("the page overflows a 390 px screen: %v; %s", err, wide)
	}
	noOverflow(t, page, 390)

	// Behind a token the page asks for it, keeps it for the tab and then reads the API.
	secured := startAPI(t, b, "s3cret")
	do(t, page, "give the page a token",
		chromedp.Navigate(secured+"/"),
		poll(`!document.querySelector("#auth").hidden`),
		chromedp.SetValue(chromedp.CSS("#token"), "s3cret"),
		chromedp.Click(chromedp.CSS("#auth button")),
		poll(`document.querySelector("#auth").hidden && document.body.dataset.feed === "live" &&
			!!document.body.dataset.totals && sessionStorage.getItem("cascade.token") === "s3cret"`))
	if got := text(t, page, "#band-grid .total"); got == gridBefore {
		t.Errorf("grid total behind a token = %q, the total before any signal", got)
	}

	stopConsole()
	<-consoleDone
	consoleMu.Lock()
	defer consoleMu.Unlock()
	for _, p := range csp {
		t.Errorf("Content-Security-Policy violation: %s", p)
	}
	for _, p := range problems {
		t.Errorf("browser console: %s", p)
	}
}

// overflowingText lists each visible text that reaches outside its card (or the header,
// token form or footer), with both boxes. Text truncated on purpose with an ellipsis, and text
// only for screen readers, are left out.
const overflowingText = `(() => {
	const out = [];
	const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
	for (let n = walk.nextNode(); n; n = walk.nextNode()) {
		const text = n.textContent.trim(), el = n.parentElement;
		if (!text || !el.checkVisibility({visibilityProperty: true})) continue;
		const card = el.closest(".card, .top, .auth, .foot");
		if (!card) continue;
		let meant = false;
		for (let a = el; a && a !== card; a = a.parentElement) {
			const s = getComputedStyle(a);
			if (s.textOverflow === "ellipsis" || (s.position === "absolute" && s.clip !== "auto")) meant = true;
		}
		if (meant) continue;
		const range = document.createRange();
		range.selectNodeContents(n);
		const c = card.getBoundingClientRect();
		for (const b of range.getClientRects()) {
			if (b.width > 0 && (b.left < c.left - 0.5 || b.right > c.right + 0.5)) {
				out.push(JSON.stringify(text) + " at " + Math.round(b.left) + "–" + Math.round(b.right) + " px, outside " +
					(card.id ? "#" + card.id : "." + card.className.split(" ").join(".")) + " at " + Math.round(c.left) + "–" + Math.round(c.right) + " px");
				break;
			}
		}
	}
	return out.join("\n");
})()`

// noOverflow fails the test with every text that sticks out of its card at this width.
func noOverflow(t *testing.T, page context.Context, width int) {
	t.Helper()
	if _, err := chromedp.Run(page, chromedp.Poll[bool](overflowingText+` === ""`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(3*time.Second))); err != nil {
		list, _ := chromedp.Run(page, chromedp.Evaluate[string](overflowingText))
		t.Errorf("at %d px, text overflows its card:\n%s", width, list)
	}
}

// wideFleet is the default coefficients with four accelerator kinds in region us, so that the
// page has long chip lines to lay out.
func wideFleet(t *testing.T) *coefficients.Loaded {
	t.Helper()
	// A period after the default's last, so that signals stamped now (no time of their own) see it.
	doc := strings.Replace(string(coefficients.DefaultYAML()), "\nsources:\n",
		"  - from: 2026-02-01\n    infrastructure: {fleet: {regions: {us: {h100: 0.4, h200: 0.25, b200: 0.2, mi300x: 0.15}}}}\n\nsources:\n", 1)
	c, err := coefficients.Parse([]byte(doc))
	if err != nil || len(c.At(time.Now()).Infrastructure.Fleet.For("us")) != 4 {
		t.Fatalf("coefficients with a wide us fleet: %v", err)
	}
	return c
}

// startPipeline runs an embedded NATS JetStream and every layer's consumer for scenario base.
func startPipeline(ctx context.Context, t *testing.T) broker.Broker {
	t.Helper()
	b, _ := conformance.NATS(t)
	if err := consumers.BindScenario(ctx, b, "base", wideFleet(t), broker.ScenarioConfig{AckWait: time.Second}); err != nil {
		t.Fatal(err)
	}
	rctx, stopRouter := context.WithCancel(ctx)
	routerDone := make(chan error, 1)
	go func() {
		routerDone <- consumers.New(b, zerolog.Nop(), consumers.Options{}).Serve(rctx, event.ConsumerLayers, 200*time.Millisecond)
	}()
	t.Cleanup(func() {
		stopRouter()
		if err := <-routerDone; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("router: %v", err)
		}
	})
	return b
}

// startAPI serves the HTTP API over b, behind token when it is set; it returns the base URL.
func startAPI(t *testing.T, b broker.Broker, token string) string {
	t.Helper()
	srv, err := httpapi.New(b, httpapi.Options{Listen: "127.0.0.1:0", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

// startBrowser starts headless Chromium with a fresh profile and returns a tab's context and
// a func that closes the browser.
func startBrowser(ctx context.Context, t *testing.T) (context.Context, func()) {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("lang", "en-US"),
		chromedp.WindowSize(1280, 800),
	)
	page, cancelPage := chromedp.NewContext(alloc, chromedp.WithErrorf(t.Logf))
	// Start the browser now, on a context without a deadline of its own.
	if err := chromedp.Do(page); err != nil {
		cancelPage()
		cancelAlloc()
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return page, func() { cancelPage(); cancelAlloc() }
}

// do runs the steps, failing the test with what was being done.
func do(t *testing.T, page context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(page, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// poll waits until the JavaScript expression is truthy.
func poll(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))
}

func text(t *testing.T, page context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(page, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\u2028", `\u2028`, "\u2029", `\u2029`)
	return `"` + r.Replace(s) + `"`
}

func postSignals(ctx context.Context, t *testing.T, base, ndjson string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/signals", strings.NewReader(ndjson))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	res, err := specClient(t).Do(req)
	if err != nil {
		t.Fatalf("post signals: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("post signals: %s", res.Status)
	}
}
