package examples

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/cli"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
)

// The connect command examples/README.md documents runs from the repository root against a
// broker with base registered: one answer line per row, every row taken, the deltas of each
// series; run again, it answers nothing.
func TestDocumentedConnectFileCommand(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^cascade (connect file .*)$`).FindStringSubmatch(string(readme))
	if line == nil {
		t.Fatal("examples/README.md documents no `cascade connect file` command")
	}
	b, url := conformance.NATS(t)
	if err := consumers.BindScenario(t.Context(), b, event.DefaultScenario, coefficients.Default(), broker.ScenarioConfig{}); err != nil {
		t.Fatal(err)
	}
	t.Chdir("..")
	cascade := func() (int, string, string) {
		var out, errs bytes.Buffer
		code := cli.Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errs, Args: strings.Fields(line[1]),
			Getenv: func(k string) string {
				if k == "CASCADE_NATS_URL" {
					return url
				}
				return ""
			}}.Run(t.Context())
		return code, out.String(), errs.String()
	}
	code, out, stderr := cascade()
	if code != 0 {
		t.Fatalf("%s: exit %d\n%s%s", line[0], code, out, stderr)
	}
	got := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var a struct{ ID, Error string }
		if err := json.Unmarshal([]byte(l), &a); err != nil || a.Error != "" {
			t.Fatalf("answer %q: %v", l, err)
		}
		got[a.ID] = true
	}
	if len(got) != 8 || !got["app-users:chatgpt:world:2025-03"] || !got["app-users:team-coder:eu:2025-07"] {
		t.Fatalf("answers %s", out)
	}
	deltas := map[string]float64{}
	err = broker.Each(t.Context(), b, broker.FeedOptions{Selector: broker.Selector{Scenario: event.DefaultScenario, Kinds: []event.Kind{event.KindSignal}}, FromStart: true},
		func(d broker.Delivery) error {
			ev, p, err := event.Decode(d.Message().Data)
			if err != nil {
				return err
			}
			deltas[ev.ID] = p.(*event.Adoption).UsersDelta
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if deltas["app-users:chatgpt:world:2024-12"] != 300e6 || deltas["app-users:chatgpt:world:2025-03"] != 100e6 || deltas["app-users:team-coder:eu:2025-07"] != -50000 {
		t.Fatalf("deltas %v", deltas)
	}
	if code, out, stderr := cascade(); code != 0 || strings.TrimSpace(out) != "" {
		t.Fatalf("run again: exit %d, %q %s; want nothing new", code, out, stderr)
	}
}
