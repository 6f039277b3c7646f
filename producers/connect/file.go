package connect

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/producers"
)

// Map is the declarative column mapping of `cascade connect file`: how each row of an
// analyst's CSV or JSON file becomes one signal.
//
//	type: cascade.signal.adoption.v1          # the signal type
//	source: /analyst/app-mau                  # CloudEvents source
//	sourceurl: https://example.com/app-mau    # or sourceurl_column: link
//	id: "mau:{app}:{region}:{month}"          # the id, from the row's columns
//	time: {column: month, layout: "2006-01"}  # Go layout; default RFC 3339 or YYYY-MM-DD
//	key: [app, region]                        # the columns naming one series
//	data:
//	  app: {column: app}
//	  category: {value: chat}
//	  region: {column: region}
//	  users_delta: {column: mau, delta: true} # this row's value less the series' previous one
//
// A field is a column (type string, number or bool; number by default for a delta) or a
// constant value. Rows of one series must come in time order; a delta's first row is its
// value (the series starts from zero).
type Map struct {
	Type            string           `yaml:"type"`
	Source          string           `yaml:"source"`
	SourceURL       string           `yaml:"sourceurl"`
	SourceURLColumn string           `yaml:"sourceurl_column"`
	ID              string           `yaml:"id"`
	Time            MapTime          `yaml:"time"`
	Key             []string         `yaml:"key"`
	Data            map[string]Field `yaml:"data"`
}

// MapTime says which column holds a row's time and how it is written.
type MapTime struct {
	Column string `yaml:"column"`
	Layout string `yaml:"layout"`
}

// Field is one field of the signal's data.
type Field struct {
	Column string `yaml:"column"`
	Value  any    `yaml:"value"`
	Type   string `yaml:"type"` // string, number or bool
	Delta  bool   `yaml:"delta"`
}

var placeholder = regexp.MustCompile(`\{([^{}]+)\}`)

// LoadMap reads and checks a mapping; an error names the file and the field at fault.
func LoadMap(path string) (*Map, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m Map
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &m, nil
}

func (m *Map) check() error {
	bad := func(field, rule string, args ...any) error {
		return &event.ValidationError{Field: field, Rule: fmt.Sprintf(rule, args...)}
	}
	switch {
	case event.InputLayer(event.Type(m.Type)) == "":
		return bad("type", "%q is not a signal type cascade takes", m.Type)
	case m.Source == "":
		return bad("source", "required")
	case (m.SourceURL == "") == (m.SourceURLColumn == ""):
		return bad("sourceurl", "give sourceurl or sourceurl_column (every signal carries one)")
	case m.ID == "" || !placeholder.MatchString(m.ID):
		return bad("id", "required, a template naming the row's columns such as \"mau:{app}:{month}\"")
	case m.Time.Column == "":
		return bad("time.column", "required")
	case len(m.Data) == 0:
		return bad("data", "required")
	}
	for _, name := range slices.Sorted(maps.Keys(m.Data)) {
		f := m.Data[name]
		switch {
		case (f.Column == "") == (f.Value == nil):
			return bad("data."+name, "give column or value")
		case f.Delta && f.Column == "":
			return bad("data."+name+".delta", "a delta needs a column")
		case f.Delta && f.Type != "" && f.Type != "number":
			return bad("data."+name+".type", "a delta is a number")
		case !slices.Contains([]string{"", "string", "number", "bool"}, f.Type):
			return bad("data."+name+".type", "%q is not string, number or bool", f.Type)
		}
	}
	return nil
}

// File reads an analyst's CSV (with a header) or JSON (an array of objects, or NDJSON) file
// and maps each row to one signal. The checkpoint holds, for each series (Map.Key), the time
// of its last row read and its last values of the delta fields: a file read again, or with
// rows appended, yields only the rows after them.
type File struct {
	Path string
	Map  *Map
	// Checkpoint names the checkpoint; default "connect/file/<file name>".
	Checkpoint string
}

// Name is the checkpoint name.
func (f *File) Name() string {
	if f.Checkpoint != "" {
		return f.Checkpoint
	}
	return "connect/file/" + checkpointSafe.ReplaceAllString(filepath.Base(f.Path), "-")
}

var checkpointSafe = regexp.MustCompile(`[^A-Za-z0-9_=-]+`)

type fileCheckpoint struct {
	Series map[string]*series `json:"series"`
}

type series struct {
	Time time.Time          `json:"time"`
	Last map[string]float64 `json:"last,omitempty"` // delta fields' last values
}

// row is one record of the file: its line and its cells by column.
type row struct {
	line  int
	cells map[string]any // string, json.Number or bool
}

// Poll reads the file and maps the rows after the checkpoint.
func (f *File) Poll(_ context.Context, checkpoint []byte) (Batch, error) {
	cp := fileCheckpoint{Series: map[string]*series{}}
	if checkpoint != nil {
		if err := json.Unmarshal(checkpoint, &cp); err != nil {
			return Batch{}, fmt.Errorf("checkpoint: %w", err)
		}
		if cp.Series == nil {
			cp.Series = map[string]*series{}
		}
	}
	body, err := os.ReadFile(f.Path)
	if err != nil {
		return Batch{}, err
	}
	rows, bad, err := readRows(f.Path, body)
	if err != nil {
		return Batch{}, err
	}
	read := make(map[string]time.Time, len(cp.Series))
	for k, s := range cp.Series {
		read[k] = s.Time
	}
	sigs := bad
	for _, r := range rows {
		s, skip := f.signal(r, read, cp.Series)
		if !skip {
			sigs = append(sigs, s)
		}
	}
	slices.SortStableFunc(sigs, func(a, b Signal) int { return a.Line - b.Line })
	out, err := json.Marshal(cp)
	if err != nil {
		return Batch{}, err
	}
	return Batch{Signals: sigs, Checkpoint: out}, nil
}

// signal maps one row, advancing its series in state; skip is true for a row the checkpoint
// says was read.
func (f *File) signal(r row, read map[string]time.Time, state map[string]*series) (Signal, bool) {
	m := f.Map
	badRow := func(field, rule string, args ...any) (Signal, bool) {
		return Signal{Line: r.line, Err: &event.ValidationError{Field: field, Rule: fmt.Sprintf("row %d: ", r.line) + fmt.Sprintf(rule, args...)}}, false
	}
	text := func(col string) (string, bool) {
		v, ok := r.cells[col]
		if !ok || v == nil {
			return "", false
		}
		return strings.TrimSpace(fmt.Sprint(v)), true
	}
	ts, ok := text(m.Time.Column)
	if !ok || ts == "" {
		return badRow(m.Time.Column, "no time")
	}
	at, err := parseTime(ts, m.Time.Layout)
	if err != nil {
		return badRow(m.Time.Column, "%q is not a time (layout %q)", ts, m.layout())
	}
	keyParts := make([]string, len(m.Key))
	for i, k := range m.Key {
		if keyParts[i], ok = text(k); !ok {
			return badRow(k, "required: a key column")
		}
	}
	key := strings.Join(keyParts, "\x1f")
	if t, ok := read[key]; ok && !at.After(t) {
		return Signal{}, true // read by an earlier poll
	}
	st := state[key]
	if st != nil && !at.After(st.Time) {
		return badRow(m.Time.Column, "%s is not after the previous row of its series (%s): rows of a series must come in time order", ts, st.Time.Format(time.RFC3339))
	}
	data := map[string]any{}
	last := map[string]float64{}
	for _, name := range slices.Sorted(maps.Keys(m.Data)) { // the first bad field, always the same
		fd := m.Data[name]
		if fd.Column == "" {
			data[name] = fd.Value
			continue
		}
		s, ok := text(fd.Column)
		if !ok || s == "" {
			return badRow(fd.Column, "empty, but data.%s reads it", name)
		}
		typ := fd.Type
		if typ == "" && fd.Delta {
			typ = "number"
		}
		switch typ {
		case "number":
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
				return badRow(fd.Column, "%q is not a finite number", s)
			}
			if fd.Delta {
				last[name] = v
				if st != nil {
					if prev, ok := st.Last[name]; ok {
						v -= prev
					}
				}
			}
			data[name] = v
		case "bool":
			v, err := strconv.ParseBool(s)
			if err != nil {
				return badRow(fd.Column, "%q is not true or false", s)
			}
			data[name] = v
		default:
			data[name] = s
		}
	}
	var missing string
	id := placeholder.ReplaceAllStringFunc(m.ID, func(p string) string {
		v, ok := text(p[1 : len(p)-1])
		if !ok || v == "" {
			missing = p[1 : len(p)-1]
		}
		return v
	})
	if missing != "" {
		return badRow(missing, "empty, but the id template %q reads it", m.ID)
	}
	src := m.SourceURL
	if m.SourceURLColumn != "" {
		if src, ok = text(m.SourceURLColumn); !ok || src == "" {
			return badRow(m.SourceURLColumn, "no source URL")
		}
	}
	state[key] = &series{Time: at, Last: last}
	e := envelope{ID: id, Source: m.Source, Type: m.Type, Time: at, SourceURL: src, Data: data}
	return e.signal(r.line, ""), false
}

func (m *Map) layout() string {
	if m.Time.Layout != "" {
		return m.Time.Layout
	}
	return "RFC 3339 or YYYY-MM-DD"
}

// parseTime reads a time in layout, or, without one, in RFC 3339 or as a date; a time
// without a zone is UTC.
func parseTime(s, layout string) (time.Time, error) {
	if layout != "" {
		t, err := time.Parse(layout, s)
		return t.UTC(), err
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	return time.Parse(time.DateOnly, s)
}

// readRows splits a CSV (by its extension .csv) or JSON file into rows. A record that cannot
// be read is returned as a bad Signal of its line; only a file that is neither fails whole.
func readRows(path string, body []byte) ([]row, []Signal, error) {
	if strings.EqualFold(filepath.Ext(path), ".csv") {
		return csvRows(body)
	}
	return jsonRows(body)
}

func csvRows(body []byte) ([]row, []Signal, error) {
	r := csv.NewReader(bytes.NewReader(body))
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("CSV header: %w", err)
	}
	for i := range header {
		header[i] = strings.TrimSpace(strings.TrimPrefix(header[i], "\ufeff"))
	}
	var rows []row
	var bad []Signal
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return rows, bad, nil
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			bad = append(bad, Signal{Line: pe.StartLine, Err: &event.ValidationError{Field: "row", Rule: err.Error()}})
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		line, _ := r.FieldPos(0)
		cells := make(map[string]any, len(header))
		for i, h := range header {
			if i < len(rec) {
				cells[h] = rec[i]
			}
		}
		rows = append(rows, row{line: line, cells: cells})
	}
}

// jsonRows reads a JSON array of objects or NDJSON through producers' splitting rules: each
// element or line is a row, numbered as Split numbers it.
func jsonRows(body []byte) ([]row, []Signal, error) {
	items, err := producers.Split(body)
	if err != nil {
		return nil, nil, err
	}
	var rows []row
	var bad []Signal
	for _, it := range items {
		if it.Err != nil {
			bad = append(bad, Signal{Line: it.Line, Err: it.Err})
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(it.Raw))
		dec.UseNumber()
		var cells map[string]any
		if err := dec.Decode(&cells); err != nil || cells == nil {
			bad = append(bad, Signal{Line: it.Line, Err: &event.ValidationError{Field: "row", Rule: fmt.Sprintf("row %d is not a JSON object", it.Line)}})
			continue
		}
		rows = append(rows, row{line: it.Line, cells: cells})
	}
	return rows, bad, nil
}
