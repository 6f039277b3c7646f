package calibrate_test

import (
	"math"
	"net/url"
	"strings"
	"testing"

	"github.com/layercake/cascade/internal/calibrate"
	"github.com/layercake/cascade/internal/coefficients"
)

// The default coefficients land every reference inside its band, and every reference says
// where its figure is published.
func TestDefaultsInsideBands(t *testing.T) {
	t.Parallel()
	res, err := calibrate.Run(t.Context(), coefficients.Default())
	if err != nil {
		t.Fatal(err)
	}
	if len(res) < 6 {
		t.Fatalf("%d references, want at least 6", len(res))
	}
	seen := map[string]bool{}
	for _, r := range res {
		t.Logf("%-24s model %-10.4g published %-8.4g %-14s ratio %.3g (band %g–%g)", r.Name, r.Model, r.Published, r.Unit, r.Ratio, r.Low, r.High)
		if seen[r.Name] {
			t.Errorf("reference %s twice", r.Name)
		}
		seen[r.Name] = true
		first, _, _ := strings.Cut(r.Source, " ")
		if u, err := url.Parse(first); err != nil || u.Scheme != "https" || u.Host == "" {
			t.Errorf("%s: source %q is not an https URL", r.Name, r.Source)
		}
		if !(r.Low > 0 && r.Low < r.High) || r.Tests == "" || r.Unit == "" {
			t.Errorf("%s: band %g–%g, tests %q, unit %q", r.Name, r.Low, r.High, r.Tests, r.Unit)
		}
		if !r.InBand {
			t.Errorf("%s: ratio %.3g outside its band %g–%g", r.Name, r.Ratio, r.Low, r.High)
		}
	}
	for _, want := range []string{"google-gemini-prompt", "epoch-gpt4o-query", "deepseek-serving-fleet", "llama-3.1-405b-hours", "iea-datacentres-2024"} {
		if !seen[want] {
			t.Errorf("reference %s missing", want)
		}
	}
}

// The figures come from the coefficients: doubling inference utilization halves the DeepSeek
// fleet and Epoch's H100 query, leaves training alone, and pushes Epoch's query out of its band.
func TestReferencesFollowTheCoefficients(t *testing.T) {
	t.Parallel()
	doc := strings.Replace(string(coefficients.DefaultYAML()), "utilization: {inference: 0.15,", "utilization: {inference: 0.30,", 1)
	what, err := coefficients.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	base, err := calibrate.Run(t.Context(), coefficients.Default())
	if err != nil {
		t.Fatal(err)
	}
	got, err := calibrate.Run(t.Context(), what)
	if err != nil {
		t.Fatal(err)
	}
	by := func(rs []calibrate.Result, name string) calibrate.Result {
		for _, r := range rs {
			if r.Name == name {
				return r
			}
		}
		t.Fatalf("no reference %s", name)
		return calibrate.Result{}
	}
	for name, want := range map[string]float64{"deepseek-serving-fleet": 0.5, "epoch-gpt4o-query": 0.5, "llama-3.1-405b-hours": 1} {
		if r := by(got, name).Model / by(base, name).Model; math.Abs(r-want) > 1e-9 {
			t.Errorf("%s: model x%.4g with inference utilization doubled, want x%g", name, r, want)
		}
	}
	if g := by(got, "epoch-gpt4o-query"); g.InBand {
		t.Errorf("epoch-gpt4o-query at doubled utilization: ratio %.3g still inside %g–%g", g.Ratio, g.Low, g.High)
	}
}
