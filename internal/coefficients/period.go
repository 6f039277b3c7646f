package coefficients

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/schemas"
)

// DateLayout is the form of a period's from and until and of an accelerator's available_from.
const DateLayout = "2006-01-02"

// Period is a change of values at a date: in force from `from` (midnight UTC) until the next
// period's date, or until its own until (exclusive), after which the undated values apply
// again. Its other keys (applications, models, infrastructure, energy) have the shape of the
// document's and are laid over the values in force just before it (the previous period's, or
// the undated ones): maps merge key by key, except that a fleet mix
// (infrastructure.fleet.default or .regions.<r>) is replaced whole. Periods are sorted by from
// and do not overlap.
type Period struct {
	From  string `yaml:"from" json:"from"`
	Until string `yaml:"until,omitempty" json:"until,omitempty"`
	// Values are the overriding keys, as decoded.
	Values map[string]any `yaml:",inline" json:"-"`
}

// MarshalJSON writes the period flat, from and until beside the overriding keys.
func (p Period) MarshalJSON() ([]byte, error) {
	m := maps.Clone(p.Values)
	if m == nil {
		m = map[string]any{}
	}
	m["from"] = p.From
	if p.Until != "" {
		m["until"] = p.Until
	}
	return json.Marshal(m)
}

// segment is a span of time from its start, with the set in force in it.
type segment struct {
	from time.Time
	set  *Set
	// values are the keys the period itself sets (nil for the undated values).
	values map[string]any
}

// At returns the set in force at t: the undated values, or a period's values merged over them.
// It allocates nothing; the sets are resolved and validated at load.
func (l *Loaded) At(t time.Time) *Set {
	i := sort.Search(len(l.segments), func(i int) bool { return l.segments[i].from.After(t) })
	if i == 0 {
		return l.Set
	}
	return l.segments[i-1].set
}

// Dated reports whether the set has periods, i.e. whether At depends on the time.
func (l *Loaded) Dated() bool { return len(l.segments) > 0 }

// resolve builds the segments of a parsed set: each period merged over the values in force
// before it (at first base, the document's JSON value without periods and sources), checked against the schema and Validate, and every
// fleet's accelerators checked against their availability from the segment's start. Errors
// name the period as periods.<from>.
func resolve(s *Set, doc map[string]any) ([]segment, error) {
	if len(s.Periods) == 0 {
		return nil, nil
	}
	base := maps.Clone(doc)
	delete(base, "periods")
	delete(base, "sources")
	raw, _ := doc["periods"].([]any)
	var segs []segment
	var errs []error
	var prevFrom, prevUntil time.Time
	prev := base
	for i, p := range s.Periods {
		at := fmt.Sprintf("periods.%d", i)
		from, err := time.Parse(DateLayout, p.From)
		if err != nil {
			errs = append(errs, &event.ValidationError{Field: at + ".from", Rule: fmt.Sprintf("must be a date YYYY-MM-DD (got %q)", p.From)})
			continue
		}
		at = "periods." + p.From
		var until time.Time
		if p.Until != "" {
			if until, err = time.Parse(DateLayout, p.Until); err != nil || !until.After(from) {
				errs = append(errs, &event.ValidationError{Field: at + ".until", Rule: fmt.Sprintf("must be a date YYYY-MM-DD after from (got %q)", p.Until)})
				continue
			}
		}
		if i > 0 {
			switch {
			case !from.After(prevFrom):
				errs = append(errs, &event.ValidationError{Field: at + ".from", Rule: fmt.Sprintf("periods must be sorted by from, each after the one before (%s follows %s)", p.From, prevFrom.Format(DateLayout))})
				continue
			case !prevUntil.IsZero() && from.Before(prevUntil):
				errs = append(errs, &event.ValidationError{Field: at + ".from", Rule: fmt.Sprintf("overlaps the period before, which runs until %s", prevUntil.Format(DateLayout))})
				continue
			}
		}
		prevFrom, prevUntil = from, until
		values, _ := raw[i].(map[string]any)
		values = maps.Clone(values)
		delete(values, "from")
		delete(values, "until")
		s.Periods[i].Values = values
		merged := merge(prev, values, nil)
		prev = merged
		set, err := decodeMerged(merged)
		if err != nil {
			errs = append(errs, prefixed(err, at))
			continue
		}
		segs = append(segs, segment{from: from, set: set, values: values})
		if !until.IsZero() {
			segs = append(segs, segment{from: until, set: s})
			prev = base
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// A period ending where the next begins leaves no span for the base values.
	out := segs[:0]
	for _, sg := range segs {
		if n := len(out); n > 0 && out[n-1].from.Equal(sg.from) {
			out[n-1] = sg
			continue
		}
		out = append(out, sg)
	}
	return out, availability(s, out)
}

// decodeMerged checks a period's merged document as a whole document and decodes it.
func decodeMerged(doc map[string]any) (*Set, error) {
	if err := schemas.Validate(schemas.Coefficients, doc); err != nil {
		return nil, err
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var set Set
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&set); err != nil {
		return nil, err
	}
	set.fillRegions()
	if err := set.Validate(); err != nil {
		return nil, err
	}
	return &set, nil
}

// prefixed puts at before the field of every validation error in err (a period's merged
// document reports its own paths); other errors are wrapped with at.
func prefixed(err error, at string) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, prefixed(e, at))
		}
		return errors.Join(out...)
	}
	var ve *event.ValidationError
	if errors.As(err, &ve) {
		c := *ve
		c.Field = at + "." + ve.Field
		return &c
	}
	return fmt.Errorf("%s: %w", at, err)
}

// merge returns base with over laid on it: maps merge key by key, other values are replaced,
// and a fleet mix is replaced whole. at is the path of base.
func merge(base, over map[string]any, at []string) map[string]any {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]any{}
	}
	for k, v := range over {
		path := append(at[:len(at):len(at)], k)
		bm, bok := out[k].(map[string]any)
		vm, vok := v.(map[string]any)
		if bok && vok && !isMix(path) {
			out[k] = merge(bm, vm, path)
			continue
		}
		out[k] = v
	}
	return out
}

// setsKey reports whether values holds the dotted path.
func setsKey(values map[string]any, path []string) bool {
	var v any = values
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if v, ok = m[k]; !ok {
			return false
		}
	}
	return true
}

// isMix reports whether path is a fleet mix.
func isMix(path []string) bool {
	if len(path) < 3 || path[0] != "infrastructure" || path[1] != "fleet" {
		return false
	}
	return (len(path) == 3 && path[2] == "default") || (len(path) == 4 && path[2] == "regions")
}

// availability checks that no fleet in force in a segment names, with a share above zero, an
// accelerator before its available_from. The undated values before the first period are
// timeless and not checked.
func availability(s *Set, segs []segment) error {
	var errs []error
	for _, sg := range segs {
		at, when := "periods."+sg.from.Format(DateLayout)+".", "comes into force on"
		if sg.set == s {
			at, when = "", "is in force again from"
		}
		f := sg.set.Infrastructure.Fleet
		check := func(key string, m Mix) {
			inherited := ""
			if sg.set != s && !setsKey(sg.values, strings.Split(key, ".")) {
				inherited = " (a mix inherited from the values before this period: give the period its own)"
			}
			for _, name := range sortedKeys(m) {
				acc := sg.set.Chips.Accelerators[name]
				if m[name] <= 0 || acc.AvailableFrom == "" {
					continue
				}
				avail, err := time.Parse(DateLayout, acc.AvailableFrom)
				if err == nil && sg.from.Before(avail) {
					errs = append(errs, &event.ValidationError{Field: at + key + "." + name,
						Rule: fmt.Sprintf("accelerator %s is available from %s, after the fleet %s %s%s", name, acc.AvailableFrom, when, sg.from.Format(DateLayout), inherited)})
				}
			}
		}
		check("infrastructure.fleet.default", f.Default)
		for _, r := range sortedKeys(f.Regions) {
			check("infrastructure.fleet.regions."+r, f.Regions[r])
		}
	}
	return errors.Join(errs...)
}
