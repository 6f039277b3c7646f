package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layercake/cascade/internal/coefficients"
)

// `cascade calibrate` prints model, reference, ratio, band and source side by side; with
// --strict it exits 0 when every reference is inside its band and 1 when one is not.
func TestCalibrate(t *testing.T) {
	t.Parallel()
	code, out, stderr := run(t.Context(), "", nil, "calibrate", "--strict")
	if code != 0 {
		t.Fatalf("calibrate --strict on the defaults: exit %d\n%s%s", code, out, stderr)
	}
	for _, want := range []string{"reference", "ratio", "band", "source", "google-gemini-prompt", "deepseek-serving-fleet",
		"https://github.com/meta-llama/llama-models/blob/main/models/llama3_1/MODEL_CARD.md", "10 of 10 references inside their band"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	what := filepath.Join(t.TempDir(), "what-if.yaml")
	doc := strings.Replace(string(coefficients.DefaultYAML()), "utilization: {inference: 0.15,", "utilization: {inference: 0.30,", 1)
	if err := os.WriteFile(what, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := run(t.Context(), "", nil, "calibrate", "--coefficients", what); code != 0 || !strings.Contains(out, "OUT") {
		t.Errorf("calibrate without --strict: exit %d, want 0 and an OUT mark:\n%s", code, out)
	}
	code, out, stderr = run(t.Context(), "", nil, "calibrate", "--coefficients", what, "--strict", "--json")
	if code != 1 || !strings.Contains(stderr, "outside their band") {
		t.Errorf("calibrate --strict on a what-if outside a band: exit %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var outside int
	for _, l := range lines {
		var r struct {
			Name   string  `json:"name"`
			Model  float64 `json:"model"`
			Ratio  float64 `json:"ratio"`
			InBand bool    `json:"in_band"`
			Source string  `json:"source"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Name == "" || r.Model <= 0 || r.Source == "" {
			t.Fatalf("--json line %q: %v", l, err)
		}
		if !r.InBand {
			outside++
		}
	}
	if len(lines) < 6 || outside == 0 {
		t.Errorf("--json: %d references, %d outside; want at least 6 and one outside", len(lines), outside)
	}
	if code, _, stderr := run(t.Context(), "", nil, "calibrate", "--coefficients", filepath.Join(t.TempDir(), "none.yaml")); code != 2 || !strings.Contains(stderr, "none.yaml") {
		t.Errorf("missing coefficient file: exit %d, stderr %q", code, stderr)
	}
}
