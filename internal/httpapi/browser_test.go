package httpapi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	"github.com/layercake/cascade/internal/history"
	"github.com/layercake/cascade/internal/httpapi"
	"github.com/layercake/cascade/internal/query"
	"github.com/layercake/cascade/internal/view"
)

// chromiumPath is Debian's Chromium; CI installs it (apt-get install -y chromium).
const chromiumPath = "/usr/bin/chromium"

// screenshotDir is where the test saves screenshot.png and screenshot-390.png: CASCADE_SCREENSHOT_DIR, or a
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
// regions, workloads and accelerator kinds, a region whose chips take a long line, and a
// region (za) whose users fall: a net reduction.
const moreSignals = `{"specversion":"1.0","type":"cascade.signal.adoption.v1","source":"/cascade/test","data":{"app":"code-copilot","category":"coding","region":"eu","users_delta":400000}}
{"specversion":"1.0","type":"cascade.signal.adoption.v1","source":"/cascade/test","data":{"app":"office-helper","category":"chat","region":"cn","users_delta":1800000}}
{"specversion":"1.0","type":"cascade.signal.adoption.v1","source":"/cascade/test","data":{"app":"search-answers","category":"chat","region":"jp","users_delta":900000}}
{"specversion":"1.0","type":"cascade.signal.adoption.v1","source":"/cascade/test","data":{"app":"assistant","category":"reasoning","region":"us","users_delta":40000000}}
{"specversion":"1.0","type":"cascade.signal.release.v1","source":"/cascade/test","data":{"model":"open-moe-120b","region":"us","open_weights":true,"params_total":1.168e11,"params_active":5.1e9,"reasoning":true}}
{"specversion":"1.0","type":"cascade.signal.adoption.v1","source":"/cascade/test","data":{"app":"old-chat","category":"chat","region":"za","users_delta":-300000}}
`

// TestBrowserPage drives headless Chromium against the whole pipeline in-process, with the
// view, after the bundled history was replayed into scenario base and into what-if (half the
// utilization). It loads the page under its Content-Security-Policy and, at 1280 and at 390 px,
// sees the chart draw the history month by month, the date range change every number, and
// the what-if shown side by side with base, the difference and the percentage, in the cards,
// the table and the chart, and the CSV of what is shown. At desktop width it also posts a
// signal through the page's form, sees the totals and the ticker move live, and draws the
// signal's trace down to the grid. It takes the screenshots, checks that no text overflows
// its card, and gives the page a token when the API asks for one. A CSP violation, an
// exception or a console error fails it, and so does a change to the tracked README
// screenshots (unless asked for).
func TestBrowserPage(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no browser at %s (apt-get install -y chromium) and CI is unset", chromiumPath)
		}
		t.Fatalf("no browser at %s; CI must install it (apt-get install -y chromium): %v", chromiumPath, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	shotDir := screenshotDir(t)
	if os.Getenv("CASCADE_SCREENSHOT_DIR") == "" {
		for _, shot := range readmeScreenshots {
			tracked, trackedErr := os.ReadFile(shot)
			defer func() {
				now, err := os.ReadFile(shot)
				if (err == nil) != (trackedErr == nil) || !bytes.Equal(now, tracked) {
					t.Errorf("the test changed %s; it writes screenshots only into CASCADE_SCREENSHOT_DIR", shot)
				}
			}()
		}
	}

	b, v := startPipeline(ctx, t)
	base := startAPI(t, b, v, "")
	history := historySignals(t)
	for _, sc := range []string{"base", "what-if"} {
		postSignals(ctx, t, base+"/v1/signals?scenario="+sc, history)
	}
	settle(ctx, t, b, v, "base", "what-if")
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
	// The bands are the declared topology's (GET /v1/topology): the cake, then the terminal layer.
	var layers []string
	for _, l := range event.AllLayers {
		layers = append(layers, string(l))
	}
	do(t, page, "see a band per layer",
		poll(fmt.Sprintf(`document.querySelectorAll("#bands .band").length === %d && document.querySelectorAll("#below .band").length === %d &&
			[...document.querySelectorAll(".band")].map((b) => b.dataset.layer).join() === %q`,
			len(event.ConsumerLayers), len(event.AllLayers)-len(event.ConsumerLayers), strings.Join(layers, ","))))
	analyst(t, page, 1280)

	// Back to base alone over the whole history; post the example signal through the form.
	do(t, page, "base alone", setField("#baseline", ""), setField("#scenario", "base"), chromedp.Click(chromedp.CSS("#range-all")),
		poll(`document.body.dataset.ready === "true" && document.body.dataset.feed === "live" && !document.querySelector("#band-grid .cmp").textContent`))
	gridBefore := text(t, page, "#band-grid .sub") // the events counted: the history dwarfs one signal's demand
	modelBefore := text(t, page, "#band-model .sub")
	t.Logf("before: grid %q, model %q", gridBefore, modelBefore)
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
			return t("#band-grid .sub") !== `+jsString(gridBefore)+` &&
				t("#band-model .sub") !== `+jsString(modelBefore)+` &&
				document.querySelectorAll("#ticker li").length > 0;
		})()`))

	// A few more signals in new regions, posted past the page: their demand reaches the table
	// over the live feed alone, the totals as of the view plus the events after them.
	postSignals(ctx, t, base+"/v1/signals", moreSignals)
	do(t, page, "see the new regions reach the grid live, za as a net reduction",
		poll(`(() => {
			const rows = [...document.querySelectorAll("#regions tbody tr")];
			const za = rows.find((row) => row.dataset.region === "za");
			return ["cn", "jp"].every((r) => rows.some((row) => row.dataset.region === r &&
				row.querySelector('[data-label="Grid, TWh/yr"]').textContent !== "0")) &&
				!!za && za.querySelector('[data-label="Grid, TWh/yr"] .part.neg .net').textContent === "net reduction" &&
				!!document.querySelector('#ticker li[data-layer="grid"] .pair.neg');
		})()`))
	t.Logf("after: grid %q, model %q", text(t, page, "#band-grid .sub"), text(t, page, "#band-model .sub"))

	// Trace the form's signal down to the grid.
	do(t, page, "draw the trace tree",
		chromedp.SetValue(chromedp.CSS("#trace-id"), id),
		chromedp.Click(chromedp.CSS("#trace-go")),
		poll(`!!document.querySelector('#trace-tree li[data-layer="grid"]') &&
			!!document.querySelector('#trace-tree li[data-layer="application"][data-id=`+jsString(id)+`]')`))

	// The screenshot: what-if against base over the whole history.
	do(t, page, "what-if against base", setField("#scenario", "what-if"), setField("#baseline", "base"),
		poll(`document.body.dataset.ready === "true" && document.querySelector("#band-chips .cmp").textContent.includes("%") && document.querySelector("#chart").dataset.series > 0`))
	// Live what-if demand fills the ticker, and the baseline's own feed keeps base current.
	postSignals(ctx, t, base+"/v1/signals?scenario=what-if", moreSignals)
	do(t, page, "see what-if's events live", poll(`document.querySelectorAll('#ticker li[data-layer="grid"]').length > 0`))
	noOverflow(t, page, 1280)
	screenshot(t, page, filepath.Join(shotDir, "screenshot.png"), chromedp.FullScreenshot(100))

	// Phone width: nothing overflows sideways, and no text sticks out of its card.
	do(t, page, "resize to phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	if _, err := chromedp.Run(page, chromedp.Poll[bool](`document.documentElement.clientWidth === 390 && document.documentElement.scrollWidth <= 390 &&
		document.querySelector("#chart canvas").getBoundingClientRect().right <= 390`,
		chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		wide, _ := chromedp.Run(page, chromedp.Evaluate[string](`document.documentElement.scrollWidth + "px wide; widest: " +
			[...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > 390)
				.slice(0, 5).map((e) => e.tagName + (e.id ? "#" + e.id : "") + "." + e.className).join(", ")`))
		t.Fatalf("the page overflows a 390 px screen: %v; %s", err, wide)
	}
	analyst(t, page, 390)
	do(t, page, "what-if against base", chromedp.Click(chromedp.CSS("#range-all")),
		poll(`document.body.dataset.ready === "true" && !document.querySelector("#since").value && document.querySelector("#band-chips .cmp").textContent.includes("%")`))
	noOverflow(t, page, 390)
	// The phone's screenshot: its first 2000 px (the cake, the ticker and the chart).
	do(t, page, "a taller phone", chromedp.EmulateViewport(390, 2000, chromedp.EmulateMobile))
	screenshot(t, page, filepath.Join(shotDir, "screenshot-390.png"), chromedp.CaptureScreenshot())

	// Behind a token the page asks for it, keeps it for the tab and then reads the API.
	secured := startAPI(t, b, v, "s3cret")
	do(t, page, "give the page a token",
		chromedp.Navigate(secured+"/"),
		poll(`!document.querySelector("#auth").hidden`),
		chromedp.SetValue(chromedp.CSS("#token"), "s3cret"),
		chromedp.Click(chromedp.CSS("#auth button")),
		poll(`document.querySelector("#auth").hidden && document.body.dataset.feed === "live" &&
			!!document.body.dataset.totals && sessionStorage.getItem("cascade.token") === "s3cret" &&
			document.querySelector("#chart").dataset.points > 0`))
	if got := text(t, page, "#band-grid .total"); got == "—" {
		t.Errorf("grid total behind a token = %q", got)
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

// readmeScreenshots are the screenshots the README shows, relative to this package. The test
// writes them only when CASCADE_SCREENSHOT_DIR names their directory (relative to the
// repository's root): CASCADE_SCREENSHOT_DIR=docs go test ./internal/httpapi/ -run TestBrowserPage -count=1
var readmeScreenshots = []string{"../../docs/screenshot.png", "../../docs/screenshot-390.png"}

// analyst checks what an analyst does, at the page's current width, starting from base over
// the whole history: the chart draws the history month by month; a date range changes every
// number (cards, table and chart) and the chart's steps; the what-if against base shows both,
// the difference and the percentage in the cards, the table and the chart; the CSV holds
// what is shown.
func analyst(t *testing.T, page context.Context, width int) {
	t.Helper()
	at := fmt.Sprintf(" at %d px", width)
	do(t, page, "base over the whole history"+at, setField("#baseline", ""), setField("#scenario", "base"), chromedp.Click(chromedp.CSS("#range-all")))
	do(t, page, "see the chart draw the history month by month"+at,
		poll(`(() => {
			const c = document.querySelector("#chart");
			const canvas = c.querySelector("canvas");
			return document.body.dataset.ready === "true" && canvas && canvas.width > 0 && canvas.getBoundingClientRect().right <= innerWidth &&
				c.dataset.points >= 37 && c.dataset.series > 0 && c.dataset.last > 0 &&
				document.querySelector("#range-text").textContent.includes("2022-12-01") &&
				document.querySelector("#band-chips").textContent.includes("injected at this layer") &&
				!document.querySelector("#band-grid .cmp").textContent;
		})()`))
	t.Logf("chart%s: %s, %s steps", at, text(t, page, "#range-text"), attr(t, page, "#chart", "data-points"))
	whole := text(t, page, "#band-grid .total")
	wholeRow := text(t, page, `#regions tbody tr[data-region="us"] [data-label="Grid, TWh/yr"]`)
	wholeLast := attr(t, page, "#chart", "data-last")

	// 2023 only: other numbers, a 12-step chart.
	do(t, page, "pick 2023"+at, setField("#since", "2023-01-01"), setField("#until", "2023-12-31"),
		poll(`(() => {
			const t = (s) => document.querySelector(s).textContent;
			const c = document.querySelector("#chart");
			return document.body.dataset.ready === "true" && t("#band-grid .total") !== `+jsString(whole)+` &&
				t('#regions tbody tr[data-region="us"] [data-label="Grid, TWh/yr"]') !== `+jsString(wholeRow)+` &&
				c.dataset.points === "12" && c.dataset.last !== `+jsString(wholeLast)+` &&
				t("#range-text").includes("2023-01-01 to 2023-12-31");
		})()`))
	t.Logf("grid%s: whole history %q, 2023 %q", at, whole, text(t, page, "#band-grid .total"))

	// What-if (half the utilization) against base: twice the accelerators, side by side.
	do(t, page, "what-if against base"+at, setField("#scenario", "what-if"), setField("#baseline", "base"),
		poll(`(() => {
			const t = (s) => document.querySelector(s).textContent;
			const diff = document.querySelector("#band-chips .cmp .diff");
			return document.body.dataset.ready === "true" && diff && /\+.*\(\+\d+(\.\d)?%\)/.test(diff.textContent) && t("#band-chips .cmp").includes("base") &&
				!!document.querySelector('#regions tbody tr[data-region="us"] .cmp-q .diff') &&
				t("#chart-summary").includes("%") && t(".u-legend").includes("difference what-if − base") &&
				document.querySelector("#chart").dataset.points === "12";
		})()`))
	t.Logf("chips%s: %q %q", at, text(t, page, "#band-chips .total"), text(t, page, "#band-chips .cmp"))
	do(t, page, "download the CSVs"+at, chromedp.Click(chromedp.CSS("#chart-csv")), chromedp.Click(chromedp.CSS("#regions-csv")),
		poll(`(() => {
			const c = document.querySelector("#chart-csv").dataset, r = document.querySelector("#regions-csv").dataset;
			return c.head === "step_start,region,change,level,unit,base_level,difference,percent" && c.rows > 0 && c.first.startsWith("2023-01-01") &&
				r.head === "region,layer,quantity,key,unit,what-if,base,difference,percent" && r.rows > 0;
		})()`))
}

// setField sets a form field's value as a user would, with its change event.
func setField(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](`(() => {
		const e = document.querySelector(` + jsString(sel) + `);
		e.value = ` + jsString(value) + `;
		e.dispatchEvent(new Event("change", {bubbles: true}));
	})()`)
}

func attr(t *testing.T, page context.Context, sel, name string) string {
	t.Helper()
	v, err := chromedp.Run(page, chromedp.Evaluate[string](`document.querySelector(`+jsString(sel)+`).getAttribute(`+jsString(name)+`) || ""`))
	if err != nil {
		t.Fatalf("%s of %s: %v", name, sel, err)
	}
	return v
}

// screenshot saves what capture takes, once the page's animations have settled.
func screenshot(t *testing.T, page context.Context, file string, capture chromedp.Action[[]byte]) {
	t.Helper()
	do(t, page, "settle", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`),
		poll(`document.getAnimations().length === 0`))
	png, err := chromedp.Run(page, capture)
	if err != nil {
		t.Fatalf("screenshot %s: %v", file, err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// historySignals is the bundled history as NDJSON, what `cascade replay --history` sends.
func historySignals(t *testing.T) string {
	t.Helper()
	evs, err := history.Signals()
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, ev := range evs {
		b, err := ev.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		sb.Write(b)
		sb.WriteByte('\n')
	}
	return sb.String()
}

// settle waits until every layer of the scenarios has consumed all it was given and the view
// holds what a scan of the log sums.
func settle(ctx context.Context, t *testing.T, b broker.Broker, v *view.View, scenarios ...string) {
	t.Helper()
	conformance.Eventually(t, 60*time.Second, "the pipeline and the view caught up", func() error {
		for _, sc := range scenarios {
			for _, l := range event.ConsumerLayers {
				if lag, err := b.Lag(ctx, sc, l); err != nil || lag > 0 {
					return fmt.Errorf("%s %s: lag %d (%v)", sc, l, lag, err)
				}
			}
			got, err := v.Totals(ctx, query.TotalsOptions{Scenario: sc})
			if err != nil {
				return err
			}
			want, err := query.SumTotals(ctx, b, query.TotalsOptions{Scenario: sc})
			if err != nil {
				return err
			}
			if got.Events != want.Events || want.Events == 0 {
				return fmt.Errorf("%s: view %d events, log %d", sc, got.Events, want.Events)
			}
		}
		return nil
	})
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

// wideFleetDoc is the default coefficients with four accelerator kinds in region us, so that
// the page has long chip lines to lay out: a period after the default's last, so that signals
// stamped now (no time of their own) see it.
func wideFleetDoc() string {
	return strings.Replace(string(coefficients.DefaultYAML()), "\nsources:\n",
		"  - from: 2026-02-01\n    infrastructure: {fleet: {regions: {us: {h100: 0.4, h200: 0.25, b200: 0.2, mi300x: 0.15}}}}\n\nsources:\n", 1)
}

// wideFleet is wideFleetDoc, loaded.
func wideFleet(t *testing.T) *coefficients.Loaded {
	t.Helper()
	c, err := coefficients.Parse([]byte(wideFleetDoc()))
	if err != nil || len(c.At(time.Now()).Infrastructure.Fleet.For("us")) != 4 {
		t.Fatalf("coefficients with a wide us fleet: %v", err)
	}
	return c
}

// halfUtilization is the what-if: the wide fleet at half the utilization of every workload.
func halfUtilization(t *testing.T) *coefficients.Loaded {
	t.Helper()
	doc := strings.Replace(wideFleetDoc(), "utilization: {inference: 0.15, training: 0.40, finetune: 0.30}",
		"utilization: {inference: 0.075, training: 0.20, finetune: 0.15}", 1)
	h, err := coefficients.Parse([]byte(doc))
	if err != nil || doc == wideFleetDoc() {
		t.Fatalf("coefficients at half the utilization: %v", err)
	}
	return h
}

// startPipeline runs an embedded NATS JetStream, every layer's consumer for scenarios base
// and what-if (half the utilization), and the view of both, as run does.
func startPipeline(ctx context.Context, t *testing.T) (broker.Broker, *view.View) {
	t.Helper()
	b, _ := conformance.NATS(t)
	for sc, c := range map[string]*coefficients.Loaded{"base": wideFleet(t), "what-if": halfUtilization(t)} {
		if err := consumers.BindScenario(ctx, b, sc, c, broker.ScenarioConfig{AckWait: time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	rctx, stopRouter := context.WithCancel(ctx)
	var wg sync.WaitGroup
	routerDone := make(chan error, 1)
	go func() {
		routerDone <- consumers.New(b, zerolog.Nop(), consumers.Options{}).Serve(rctx, event.ConsumerLayers, 200*time.Millisecond)
	}()
	v := &view.View{B: b, Dir: t.TempDir(), Log: zerolog.Nop()}
	for _, sc := range []string{"base", "what-if"} {
		wg.Go(func() { _ = v.Follow(rctx, sc) })
	}
	t.Cleanup(func() {
		stopRouter()
		wg.Wait()
		_ = v.Close()
		if err := <-routerDone; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("router: %v", err)
		}
	})
	return b, v
}

// startAPI serves the HTTP API over b and its view, behind token when it is set; it returns
// the base URL.
func startAPI(t *testing.T, b broker.Broker, v *view.View, token string) string {
	t.Helper()
	srv, err := httpapi.New(b, httpapi.Options{Listen: "127.0.0.1:0", Token: token, View: v, Trace: v.Trace})
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

// postSignals posts NDJSON signals to url (…/v1/signals).
func postSignals(ctx context.Context, t *testing.T, url, ndjson string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(ndjson))
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
