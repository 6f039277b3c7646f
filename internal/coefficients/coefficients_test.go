package coefficients_test

import (
	"bytes"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/layercake/cascade/internal/coefficients"
)

var coefVersion = regexp.MustCompile(`^default-2026\.12\+[0-9a-f]{8}$`)

func TestDefault(t *testing.T) {
	d := coefficients.Default()
	if d != coefficients.Default() {
		t.Error("Default parses more than once")
	}
	if !coefVersion.MatchString(d.CoefVersion) {
		t.Errorf("coefversion %q, want default-2026.12+<8 hex>", d.CoefVersion)
	}
	if err := d.Set.Validate(); err != nil {
		t.Fatal(err)
	}
	s := d.Set
	for _, c := range []string{"chat", "coding", "agents", "search", "reasoning", "image"} {
		if _, ok := s.Applications.Categories[c]; !ok {
			t.Errorf("category %s missing", c)
		}
	}
	for _, m := range []string{"frontier-moe", "deepseek-v3", "deepseek-r1", "llama-3.1-405b", "llama-3.1-70b", "llama-3.1-8b",
		"gpt-oss-120b", "gpt-oss-20b", "kimi-k2", "qwen3-235b-a22b", "mixtral-8x7b", "llama-4-maverick", "llama-4-scout"} {
		if _, ok := s.Models.Catalog[m]; !ok {
			t.Errorf("catalog model %s missing", m)
		}
	}
	if !s.Models.Catalog["deepseek-r1"].Reasoning || s.Models.Catalog["frontier-moe"].Reasoning {
		t.Error("deepseek-r1 reasons, frontier-moe does not")
	}
	for _, a := range []string{"h100", "h200", "h800", "b200", "gb200", "mi300x"} {
		if _, ok := s.Chips.Accelerators[a]; !ok {
			t.Errorf("accelerator %s missing", a)
		}
	}
	for _, a := range []string{"a100", "a800", "h20", "b300", "gb300", "ascend-910b", "ascend-910c", "tpu-v5e", "tpu-v6e"} {
		if _, ok := s.Chips.Accelerators[a]; !ok {
			t.Errorf("accelerator %s missing", a)
		}
	}
	if got := d.At(time.Date(2025, 2, 27, 0, 0, 0, 0, time.UTC)).Infrastructure.Fleet.For("cn-deepseek"); len(got) != 1 || got["h800"] != 1 {
		t.Errorf("DeepSeek's fleet in 2025 = %v, want h800 only", got)
	}
	if got, want := s.Energy.GridIntensityGPerKWh.For("zz"), s.Energy.GridIntensityGPerKWh.Default; got != want {
		t.Errorf("grid intensity of an unknown region = %v, want the default %v", got, want)
	}
}

// unsourced lists the dotted paths of the numbers in doc (a decoded YAML value) that lack a
// sources entry holding an http(s) URL or "assumption: <reason>", and the sources entries
// naming no value of doc.
func unsourced(doc any) (missing, stale []string) {
	top, _ := doc.(map[string]any)
	sources, _ := top["sources"].(map[string]any)
	leaves := map[string]bool{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if path == "" && k == "sources" {
					continue
				}
				walk(strings.TrimPrefix(path+"."+k, "."), x)
			}
		case []any:
			for i, x := range v {
				key := strconv.Itoa(i)
				if m, ok := x.(map[string]any); ok && path == "periods" {
					// A period is named by its from date; from and until are its name, not values.
					key = fmt.Sprint(m["from"])
					if t, ok := m["from"].(time.Time); ok {
						key = t.Format(coefficients.DateLayout)
					}
					m = maps.Clone(m)
					delete(m, "from")
					delete(m, "until")
					x = m
				}
				walk(path+"."+key, x)
			}
		case int, float64, uint64:
			leaves[path] = true
			src, _ := sources[path].(string)
			if !sourced(src) {
				missing = append(missing, path)
			}
		case time.Time, string:
			// A date (available_from) needs a source like a number; other strings are names.
			if strings.HasSuffix(path, ".available_from") {
				leaves[path] = true
				if src, _ := sources[path].(string); !sourced(src) {
					missing = append(missing, path)
				}
			}
		case bool:
			leaves[path] = true
		}
	}
	walk("", doc)
	for k := range sources {
		if !leaves[k] {
			stale = append(stale, k)
		}
	}
	slices.Sort(missing)
	slices.Sort(stale)
	return missing, stale
}

func sourced(src string) bool {
	if reason, ok := strings.CutPrefix(src, "assumption: "); ok {
		return strings.TrimSpace(reason) != ""
	}
	first, _, _ := strings.Cut(src, " ")
	u, err := url.Parse(first)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

func TestDefaultSourcesEveryNumber(t *testing.T) {
	var doc any
	if err := yaml.Unmarshal(coefficients.DefaultYAML(), &doc); err != nil {
		t.Fatal(err)
	}
	missing, stale := unsourced(doc)
	if len(missing) > 0 {
		t.Errorf("numbers without a source (a URL or \"assumption: <reason>\"):\n%s", strings.Join(missing, "\n"))
	}
	if len(stale) > 0 {
		t.Errorf("sources naming no value:\n%s", strings.Join(stale, "\n"))
	}
}

// TestUnsourcedFindsGaps proves the check above can fail.
func TestUnsourcedFindsGaps(t *testing.T) {
	tests := []struct {
		name               string
		in                 string
		wantMissing, stale []string
	}{
		{"covered", "a: {b: 1}\nsources: {a.b: https://example.com/x note}", nil, nil},
		{"assumption", "a: 1.5\nsources: {a: 'assumption: a guess'}", nil, nil},
		{"no sources", "a: {b: 1, c: true}", []string{"a.b"}, nil},
		{"new number", "a: 1\nz: {y: 2e3}\nsources: {a: 'assumption: x'}", []string{"z.y"}, nil},
		{"not a URL", "a: 1\nsources: {a: example.com}", []string{"a"}, nil},
		{"empty assumption", "a: 1\nsources: {a: 'assumption: '}", []string{"a"}, nil},
		{"stale entry", "a: 1\nsources: {a: 'assumption: x', b: 'assumption: y'}", nil, []string{"b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var doc any
			if err := yaml.Unmarshal([]byte(tc.in), &doc); err != nil {
				t.Fatal(err)
			}
			missing, stale := unsourced(doc)
			if !slices.Equal(missing, tc.wantMissing) || !slices.Equal(stale, tc.stale) {
				t.Fatalf("got missing %v stale %v, want %v %v", missing, stale, tc.wantMissing, tc.stale)
			}
		})
	}
}

// edit returns the default document with old replaced by new, which must occur exactly once.
func edit(t *testing.T, old, new string) []byte {
	t.Helper()
	doc := coefficients.DefaultYAML()
	if n := bytes.Count(doc, []byte(old)); n != 1 {
		t.Fatalf("%q occurs %d times in default.yaml", old, n)
	}
	return bytes.Replace(doc, []byte(old), []byte(new), 1)
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"misspelt key", edit(t, "frontier-moe: {params_active:", "frontier-moe: {params_activ:"),
			"models.catalog.frontier-moe.params_activ: unknown key"},
		{"misspelt section", edit(t, "\nenergy:\n", "\nenergie:\n"), "energie: unknown key"},
		{"wrong type", edit(t, "load_factor: 0.7", "load_factor: high"), "energy.load_factor: must be a number"},
		{"number as a string", edit(t, "reserve_margin: 0.15", `reserve_margin: "0.15"`), "energy.reserve_margin: must be a number"},
		{"boolean as a string", edit(t, "params_total: 6.71e11, reasoning: true}", `params_total: 6.71e11, reasoning: "yes"}`),
			"models.catalog.deepseek-r1.reasoning: must be a boolean"},
		{"version a number", edit(t, "version: default-2026.12", "version: 2026.12"), "version: must be a string"},
		{"missing key", edit(t, "  reserve_margin: 0.15\n", ""), "energy.reserve_margin: required"},
		{"missing category field", edit(t, "chat: {requests_per_user_day: 3.6, ", "chat: {"), "applications.categories.chat.requests_per_user_day: required"},
		{"not a finite number", edit(t, "load_factor: 0.7", "load_factor: .nan"), "energy.load_factor: must be a finite number"},
		{"infinite", edit(t, "grid_intensity_g_per_kwh:\n    default: ", "grid_intensity_g_per_kwh:\n    default: .inf #"), "energy.grid_intensity_g_per_kwh.default: must be a finite number"},
		{"range the schema knows", edit(t, "load_factor: 0.7", "load_factor: 1.7"), "energy.load_factor: must be <= 1"},
		{"bad accelerator name", edit(t, "    h100: {peak", "    H100: {peak"), "chips.accelerators.H100: key must match"},
		{"rule beyond the schema", edit(t, "cn: {a100: 1.0}", "cn: {a100: 0.9}"), "infrastructure.fleet.regions.cn: shares must sum to 1 (got 0.9)"},
		{"reference beyond the schema", edit(t, "default_model: frontier-moe", "default_model: gpt-9"), `models.default_model: must name a model of models.catalog (got "gpt-9")`},
		{"empty document", []byte(""), "(root): must be an object"},
		{"numeric region key", edit(t, "cn: {a100: 1.0}", "42: {a100: 1.0}\n      cn: {a100: 1.0}"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := coefficients.Parse(tc.in)
			wantInvalid(t, err, tc.wantErr)
		})
	}
}

func TestParseNotYAML(t *testing.T) {
	_, err := coefficients.Parse([]byte("version: [unclosed"))
	if err == nil || !strings.Contains(err.Error(), "coefficients: YAML") {
		t.Fatalf("got %v, want a YAML error", err)
	}
}

func TestCoefVersion(t *testing.T) {
	base := coefficients.Default()
	tests := []struct {
		name string
		in   []byte
		same bool
	}{
		{"same document", coefficients.DefaultYAML(), true},
		{"comment and layout only", append([]byte("# a comment\n\n"), coefficients.DefaultYAML()...), true},
		{"flow style instead of block", edit(t, "regions:\n      cn: {a100: 1.0}\n      cn-deepseek: {a100: 1.0}", "regions: {cn: {a100: 1}, cn-deepseek: {a100: 1}}"), true},
		{"the canonical JSON", base.Canonical, true},
		{"a number changed", edit(t, "load_factor: 0.7", "load_factor: 0.71"), false},
		{"a boolean changed", edit(t, "params_total: 6.71e11, reasoning: true}", "params_total: 6.71e11, reasoning: false}"), false},
		{"a model added", edit(t, "  catalog:\n", "  catalog:\n    tiny: {params_active: 1e9, params_total: 1e9, reasoning: false}\n"), false},
		{"a source changed", edit(t, "assumption: closed weights cannot be fine-tuned by others", "assumption: none"), false},
		{"version changed", edit(t, "version: default-2026.12", "version: default-2026.13"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := coefficients.Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if same := l.CoefVersion == base.CoefVersion; same != tc.same {
				t.Fatalf("coefversion %s vs default %s: same = %v, want %v", l.CoefVersion, base.CoefVersion, same, tc.same)
			}
			if tc.same && !bytes.Equal(l.Canonical, base.Canonical) {
				t.Fatal("same coefversion, different canonical bytes")
			}
		})
	}
}

func TestCanonicalRoundTrip(t *testing.T) {
	d := coefficients.Default()
	again, err := coefficients.Parse(d.Canonical)
	if err != nil {
		t.Fatal(err)
	}
	if again.CoefVersion != d.CoefVersion || !bytes.Equal(again.Canonical, d.Canonical) {
		t.Fatalf("round trip changed the set: %s -> %s", d.CoefVersion, again.CoefVersion)
	}
	if bytes.Contains(d.Canonical, []byte("null")) {
		t.Error("canonical JSON holds a null")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, coefficients.DefaultYAML(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, edit(t, "load_factor: 0.7", "load_factr: 0.7"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := coefficients.Load(good)
	if err != nil || l.CoefVersion != coefficients.Default().CoefVersion {
		t.Fatalf("Load(default file) = %v, %v", l, err)
	}
	_, err = coefficients.Load(bad)
	wantInvalid(t, err, bad+": coefficients: energy.load_factr: unknown key")
	missing := filepath.Join(dir, "missing.yaml")
	if _, err := coefficients.Load(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("got %v, want an error naming %s", err, missing)
	}
}
