// Package schemas holds cascade's JSON Schemas (draft 2020-12), the source of truth for the
// CloudEvents envelope, the seven payloads, the coefficient file and the totals output, and
// validates documents against them. The schemas are embedded and compiled once, offline: a
// $ref resolves only to another embedded file, never to the network.
package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/layercake/cascade/internal/event"
)

// FS holds the schema files, named as Files lists them.
//
//go:embed *.json
var FS embed.FS

// Event is the file name of the CloudEvent schema, which checks the envelope and, by type,
// its data.
const Event = "cloudevent.json"

// Coefficients is the file name of the coefficient document's schema.
const Coefficients = "coefficients.json"

// Totals is the file name of the schema of `cascade totals --json`.
const Totals = "totals.json"

// Files lists the embedded schema file names, sorted.
func Files() []string {
	entries, _ := FS.ReadDir(".") // the root of an embed.FS always exists; its entries are sorted
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}

var compiled struct {
	once    sync.Once
	schemas map[string]*jsonschema.Schema
	err     error
}

// offline refuses every URL the embedded files do not provide.
type offline struct{}

func (offline) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s is not an embedded schema (schemas are never fetched)", url)
}

// compile compiles every embedded schema once, each registered under its $id.
func compile() (map[string]*jsonschema.Schema, error) {
	compiled.once.Do(func() {
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		c.AssertFormat()
		c.UseLoader(offline{})
		for _, name := range Files() {
			b, err := FS.ReadFile(name)
			if err != nil {
				compiled.err = fmt.Errorf("schemas: read %s: %w", name, err)
				return
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err != nil {
				compiled.err = fmt.Errorf("schemas: parse %s: %w", name, err)
				return
			}
			if err := c.AddResource(event.SchemaBase+name, doc); err != nil {
				compiled.err = fmt.Errorf("schemas: register %s: %w", name, err)
				return
			}
		}
		m := map[string]*jsonschema.Schema{}
		for _, name := range Files() {
			s, err := c.Compile(event.SchemaBase + name)
			if err != nil {
				compiled.err = fmt.Errorf("schemas: compile %s: %w", name, err)
				return
			}
			m[name] = s
		}
		compiled.schemas = m
	})
	return compiled.schemas, compiled.err
}

// ValidateEvent validates one CloudEvent in structured JSON mode: the envelope and, chosen by
// its type, the data. A body that is not JSON is a *event.DecodeError; every other failure is
// a *event.ValidationError (errors.Is(err, event.ErrInvalid)) naming the first offending
// field, e.g. "data.users_delta". Rules the schema cannot state (subject equals data.region,
// params_active <= params_total) are left to event.Decode.
func ValidateEvent(body []byte) error {
	if len(body) > event.MaxEventBytes {
		return &event.ValidationError{Field: "event", Rule: fmt.Sprintf("oversized: %d bytes, at most %d", len(body), event.MaxEventBytes)}
	}
	if err := event.CheckUTF8(body); err != nil {
		return err
	}
	// Numbers decode to float64, as the typed decoders read them, so that both judge the
	// same values (1e400 is refused, 1e-400 is 0).
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return &event.DecodeError{Err: err}
	}
	return Validate(Event, doc)
}

// Validate validates an already decoded JSON value against the named schema file (one of
// Files). doc must hold JSON types only: map[string]any, []any, string, bool, nil and numbers
// (float64, json.Number or Go integers). A failure is a *event.ValidationError naming the
// first offending location as a dotted path (for a missing or unknown key, the key itself);
// an unknown file name is an error that does not match event.ErrInvalid.
func Validate(file string, doc any) error {
	m, err := compile()
	if err != nil {
		return err
	}
	s, ok := m[file]
	if !ok {
		return fmt.Errorf("schemas: no schema file %q", file)
	}
	err = s.Validate(doc)
	if err == nil {
		return nil
	}
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return fmt.Errorf("schemas: validate against %s: %w", file, err)
	}
	return first(verr)
}

// first reduces a tree of schema errors to one ValidationError, the same whatever the map
// order: of its leaves, the one in the object whose path sorts first; within an object an
// unknown or malformed key before other errors (a misspelt key is also a missing one), then
// by field and rule.
//
// A propertyNames error takes its parent's location: the library records it with a location
// slice that later validation overwrites. The parent is at the same location because every
// propertyNames in these schemas sits at a file's root or at the root of a $defs entry reached
// by $ref (TestPropertyNamesPlacement holds that).
func first(root *jsonschema.ValidationError) *event.ValidationError {
	type found struct {
		object  string // the object holding the offending key
		badKey  bool
		invalid *event.ValidationError
	}
	var leaves []found
	var walk func(e *jsonschema.ValidationError, parent []string)
	walk = func(e *jsonschema.ValidationError, parent []string) {
		switch k := e.ErrorKind.(type) {
		case *kind.PropertyNames:
			leaves = append(leaves, found{dotted(parent), true, badName(k.Property, parent, e.Causes)})
			return
		case *kind.AdditionalProperties:
			leaves = append(leaves, found{dotted(e.InstanceLocation), true, leaf(e)})
			return
		case *kind.Required:
			leaves = append(leaves, found{dotted(e.InstanceLocation), false, leaf(e)})
			return
		}
		if len(e.Causes) == 0 {
			at := e.InstanceLocation
			leaves = append(leaves, found{dotted(at[:max(len(at)-1, 0)]), false, leaf(e)})
			return
		}
		for _, c := range e.Causes {
			walk(c, e.InstanceLocation)
		}
	}
	walk(root, nil)
	sort.Slice(leaves, func(i, j int) bool {
		a, b := leaves[i], leaves[j]
		switch {
		case a.object != b.object:
			return a.object < b.object
		case a.badKey != b.badKey:
			return a.badKey
		case a.invalid.Field != b.invalid.Field:
			return a.invalid.Field < b.invalid.Field
		}
		return a.invalid.Rule < b.invalid.Rule
	})
	return leaves[0].invalid
}

// badName words a key refused by propertyNames.
func badName(name string, at []string, causes []*jsonschema.ValidationError) *event.ValidationError {
	v := &event.ValidationError{Field: dotted(at, name), Rule: "invalid key"}
	for len(causes) > 0 {
		if p, ok := causes[0].ErrorKind.(*kind.Pattern); ok {
			v.Rule = "key must match " + p.Want
		}
		causes = causes[0].Causes
	}
	return v
}

// dotted joins a location and keys into a field name; the empty location is "(root)".
func dotted(at []string, keys ...string) string {
	path := append(append([]string(nil), at...), keys...)
	if len(path) == 0 {
		return "(root)"
	}
	return strings.Join(path, ".")
}

var printer = message.NewPrinter(language.English)

// leaf words one schema error as a field and a short rule.
func leaf(e *jsonschema.ValidationError) *event.ValidationError {
	at := e.InstanceLocation
	v := &event.ValidationError{Field: dotted(at)}
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		v.Field, v.Rule = dotted(at, k.Missing[0]), "required"
	case *kind.AdditionalProperties:
		ps := append([]string(nil), k.Properties...)
		sort.Strings(ps)
		v.Field, v.Rule = dotted(at, ps[0]), "unknown key"
	case *kind.Type:
		v.Rule = "must be " + article(strings.Join(k.Want, " or "))
	case *kind.Const:
		v.Rule = "must be " + display(k.Want)
	case *kind.Enum:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = display(w)
		}
		v.Rule = "must be one of " + strings.Join(want, ", ")
	case *kind.MinLength:
		v.Rule = fmt.Sprintf("at least %d characters", k.Want)
		if k.Want == 1 {
			v.Rule = "must not be empty"
		}
	case *kind.MaxLength:
		v.Rule = fmt.Sprintf("at most %d characters", k.Want)
	case *kind.Pattern:
		v.Rule = "must match " + k.Want
	case *kind.Format:
		v.Rule = "must be a valid " + k.Want
	case *kind.Minimum:
		v.Rule = "must be >= " + num(k.Want)
	case *kind.Maximum:
		v.Rule = "must be <= " + num(k.Want)
	case *kind.ExclusiveMinimum:
		v.Rule = "must be > " + num(k.Want)
	case *kind.MinProperties:
		v.Rule = fmt.Sprintf("must have at least %d entries", k.Want)
	default:
		v.Rule = e.ErrorKind.LocalizedString(printer)
	}
	return v
}

func article(t string) string {
	if strings.IndexAny(t[:1], "aeiou") == 0 {
		return "an " + t
	}
	return "a " + t
}

func display(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case nil:
		return "null"
	}
	return fmt.Sprint(v)
}

func num(r *big.Rat) string {
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
}
