package coefficients

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/schemas"
)

//go:embed default.yaml
var defaultYAML []byte

// Loaded is a validated coefficient set with its identity.
type Loaded struct {
	Set *Set
	// CoefVersion is Set.Version + "+" + the first 8 hex digits of the sha256 of Canonical.
	CoefVersion string
	// Canonical is json.Marshal(Set): maps in sorted key order, so equal sets give equal
	// bytes. It is itself a valid document: Parse(Canonical) yields the same CoefVersion.
	Canonical []byte
	// segments are the resolved periods, by start (see At).
	segments []segment
}

// Parse reads one coefficient document (YAML, or JSON, which is YAML too): it checks it
// against schemas/coefficients.json, decodes it strictly into a Set and runs Set.Validate.
// A misspelt key, a wrong type, a missing key or a broken rule is an error naming the key,
// matching event.ErrInvalid; a document that is not YAML is a plain error.
func Parse(doc []byte) (*Loaded, error) {
	var raw any
	if err := yaml.Unmarshal(doc, &raw); err != nil {
		return nil, fmt.Errorf("coefficients: YAML: %w", err)
	}
	v, err := jsonValue(raw, nil)
	if err != nil {
		return nil, fmt.Errorf("coefficients: %w", err)
	}
	if err := schemas.Validate(schemas.Coefficients, v); err != nil {
		return nil, fmt.Errorf("coefficients: %w", err)
	}
	var s Set
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("coefficients: %w", err)
	}
	s.fillRegions()
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("coefficients: %w", err)
	}
	tree, _ := v.(map[string]any)
	segs, err := resolve(&s, tree)
	if err != nil {
		return nil, fmt.Errorf("coefficients: %w", err)
	}
	canonical, err := json.Marshal(&s)
	if err != nil {
		return nil, fmt.Errorf("coefficients: canonical JSON: %w", err)
	}
	sum := sha256.Sum256(canonical)
	return &Loaded{Set: &s, CoefVersion: s.Version + "+" + hex.EncodeToString(sum[:4]), Canonical: canonical, segments: segs}, nil
}

// Load reads and parses the coefficient file at path; errors name the path.
func Load(path string) (*Loaded, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("coefficients: %w", err)
	}
	l, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

var parseDefault = sync.OnceValues(func() (*Loaded, error) { return Parse(defaultYAML) })

// Default is the embedded default set (default.yaml), parsed once. The result is shared:
// callers must not modify it. It panics only if the embedded file is invalid, which the
// package's tests rule out.
func Default() *Loaded {
	l, err := parseDefault()
	if err != nil {
		panic("coefficients: embedded default.yaml: " + err.Error())
	}
	return l
}

// DefaultYAML is the embedded default document as shipped, comments and sources included.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// fillRegions makes absent region maps empty, so that omitting `regions:` and writing
// `regions: {}` give the same canonical document (and Canonical never holds null).
func (s *Set) fillRegions() {
	if s.Infrastructure.Fleet.Regions == nil {
		s.Infrastructure.Fleet.Regions = map[string]Mix{}
	}
	if s.Infrastructure.PUE.Regions == nil {
		s.Infrastructure.PUE.Regions = map[string]float64{}
	}
	if s.Energy.GridIntensityGPerKWh.Regions == nil {
		s.Energy.GridIntensityGPerKWh.Regions = map[string]float64{}
	}
}

// jsonValue converts a decoded YAML value to the JSON types the schema validator reads,
// refusing what JSON cannot hold (NaN, infinities) with an error naming the key.
func jsonValue(v any, at []string) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for _, k := range sortedKeys(v) {
			x, err := jsonValue(v[k], append(at[:len(at):len(at)], k))
			if err != nil {
				return nil, err
			}
			out[k] = x
		}
		return out, nil
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[fmt.Sprint(k)] = x
		}
		return jsonValue(m, at)
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			y, err := jsonValue(x, append(at[:len(at):len(at)], fmt.Sprint(i)))
			if err != nil {
				return nil, err
			}
			out[i] = y
		}
		return out, nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, &event.ValidationError{Field: path(at), Rule: "must be a finite number"}
		}
		return v, nil
	case time.Time:
		if v.Equal(v.Truncate(24 * time.Hour)) {
			return v.UTC().Format(DateLayout), nil
		}
		return v.UTC().Format(time.RFC3339Nano), nil
	case nil, bool, string, int, uint64:
		return v, nil
	}
	return nil, &event.ValidationError{Field: path(at), Rule: fmt.Sprintf("unsupported YAML value of type %T", v)}
}

func path(at []string) string {
	if len(at) == 0 {
		return "(root)"
	}
	return strings.Join(at, ".")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
