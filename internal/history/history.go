// Package history is cascade's bundled history: real signals from ChatGPT's launch
// (2022-11-30) to the end of 2025 (with deliveries announced by then dated to their phase, up to the end of 2026), embedded in the binary. It holds open-model releases with
// their published total and active parameter counts, application adoption milestones as deltas
// of weekly active users, and sovereign AI programmes as demand signals, each with the URL
// where its figure is published and a note saying what the figure is (and, where it is
// converted or attributed, that it is an estimate). Records reads the dataset; Signals turns it
// into CloudEvents, in time order, ready to be published or replayed.
package history

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/layercake/cascade/internal/event"
)

//go:embed history.yaml
var dataset []byte

// Source is the CloudEvents source of every bundled history signal.
const Source = "/cascade/history"

// Start and End are the first and last days a record may fall on.
var (
	Start = time.Date(2022, 11, 30, 0, 0, 0, 0, time.UTC)
	End   = time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)
)

// EstimatePrefix starts the note of every record whose figure is converted or attributed.
const EstimatePrefix = "estimate"

// IDPattern is the form of a record id: hist-YYYY-MM-DD-<slug>, the date being the record's day.
const IDPattern = `^hist-(\d{4}-\d{2}-\d{2})-[a-z0-9]+(?:-[a-z0-9]+)*$`

var idRE = regexp.MustCompile(IDPattern)

// Record is one entry of the bundled history.
type Record struct {
	// ID is fixed forever; it becomes the event id and correlationid.
	ID string `yaml:"id"`
	// Time is the day it happened, midnight UTC.
	Time time.Time `yaml:"time"`
	// Type is the full CloudEvents type, a signal type or an injectable demand type.
	Type event.Type `yaml:"type"`
	// SourceURL is where the record's figure is published; it travels as the event's sourceurl.
	SourceURL string `yaml:"sourceurl"`
	// MoreURLs are where the record's other figures, its date or its conversion ratio are published.
	MoreURLs []string `yaml:"moreurls,omitempty"`
	// Estimate marks a converted or attributed figure; the note then starts with EstimatePrefix.
	Estimate bool `yaml:"estimate,omitempty"`
	// Note says what the figure is, and how it was converted where it was.
	Note string `yaml:"note"`
	// Level is, for adoption records, the app's published user level converted to weekly
	// active users; data.users_delta is the change from the app's previous level.
	Level *float64 `yaml:"level,omitempty"`
	// Data is the payload exactly as the contract defines it for Type.
	Data map[string]any `yaml:"data"`
}

// Records reads the embedded dataset, checks every record and the rules between them, and
// returns the records in time order (by id for equal times).
func Records() ([]Record, error) {
	return Parse(dataset)
}

// Signals builds the CloudEvent of every record, in time order (by id for equal times):
// specversion 1.0, source /cascade/history, subject = data.region, the record's day as time,
// its sourceurl, and correlationid = id. No scenario is set: the publisher sets it.
func Signals() ([]*event.Event, error) {
	recs, err := Records()
	if err != nil {
		return nil, err
	}
	out := make([]*event.Event, 0, len(recs))
	for i := range recs {
		ev, err := recs[i].Event()
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

// Parse reads a history document (a YAML list of records), checks each record and the rules
// between them, and returns the records sorted by time, then id.
func Parse(doc []byte) ([]Record, error) {
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	var recs []Record
	if err := dec.Decode(&recs); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	var errs []error
	for i := range recs {
		if err := recs[i].Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	sortRecords(recs)
	if err := Check(recs); err != nil {
		return nil, err
	}
	return recs, nil
}

func sortRecords(recs []Record) {
	sort.SliceStable(recs, func(i, j int) bool {
		if !recs[i].Time.Equal(recs[j].Time) {
			return recs[i].Time.Before(recs[j].Time)
		}
		return recs[i].ID < recs[j].ID
	})
}

// Validate checks one record on its own: its id, day, type, sources, note and payload.
func (r *Record) Validate() error {
	fail := func(field, format string, args ...any) error {
		return fmt.Errorf("history record %q: %s: %s", r.ID, field, fmt.Sprintf(format, args...))
	}
	m := idRE.FindStringSubmatch(r.ID)
	if m == nil {
		return fail("id", "must match %s", IDPattern)
	}
	if r.Time.IsZero() {
		return fail("time", "required")
	}
	t := r.Time.UTC()
	if !t.Equal(t.Truncate(24 * time.Hour)) {
		return fail("time", "%s is not midnight UTC", r.Time.Format(time.RFC3339))
	}
	if day := t.Format(time.DateOnly); day != m[1] {
		return fail("time", "day %s differs from the id's %s", day, m[1])
	}
	if t.Before(Start) || t.After(End) {
		return fail("time", "%s is outside %s .. %s", t.Format(time.DateOnly), Start.Format(time.DateOnly), End.Format(time.DateOnly))
	}
	if event.InputLayer(r.Type) == "" {
		return fail("type", "%q is not a type a signal may carry", r.Type)
	}
	if err := checkURL(r.SourceURL); err != nil {
		return fail("sourceurl", "%v", err)
	}
	for _, u := range r.MoreURLs {
		if err := checkURL(u); err != nil {
			return fail("moreurls", "%v", err)
		}
	}
	if strings.TrimSpace(r.Note) == "" {
		return fail("note", "required: say what the figure is")
	}
	if r.Estimate != strings.HasPrefix(r.Note, EstimatePrefix) {
		return fail("note", "estimate is %v but the note does not agree (a converted figure's note starts %q, only it)", r.Estimate, EstimatePrefix)
	}
	p, err := r.Payload()
	if err != nil {
		return fail("data", "%v", err)
	}
	if _, ok := p.(*event.Adoption); ok {
		if r.Level == nil {
			return fail("level", "required on adoption records (the published level, weekly active users)")
		}
		if math.IsNaN(*r.Level) || math.IsInf(*r.Level, 0) || *r.Level < 0 {
			return fail("level", "must be a finite number >= 0")
		}
	} else if r.Level != nil {
		return fail("level", "only adoption records carry a level")
	}
	return nil
}

func checkURL(s string) error {
	if s == "" {
		return errors.New("required: every record names where its figure is published")
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

// Payload decodes and validates the record's data as the typed payload of its type.
func (r *Record) Payload() (event.Payload, error) {
	if r.Data == nil {
		return nil, errors.New("required")
	}
	raw, err := json.Marshal(r.Data)
	if err != nil {
		return nil, err
	}
	return event.DecodePayload(r.Type, raw)
}

// Event builds the record's CloudEvent. Its data is the typed payload re-encoded, so the bytes
// follow the Go type's field order and are the same on every build.
func (r *Record) Event() (*event.Event, error) {
	p, err := r.Payload()
	if err != nil {
		return nil, fmt.Errorf("history record %q: %w", r.ID, err)
	}
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("history record %q: %w", r.ID, err)
	}
	return &event.Event{
		SpecVersion:     event.SpecVersion,
		ID:              r.ID,
		Source:          Source,
		Type:            r.Type,
		Subject:         p.RegionName(),
		Time:            r.Time.UTC(),
		DataContentType: event.ContentType,
		DataSchema:      r.Type.DataSchema(),
		CorrelationID:   r.ID,
		SourceURL:       r.SourceURL,
		Data:            data,
	}, nil
}

// Series is one app's adoption records in one region, in time order.
type Series struct {
	App, Region string
	Records     []Record
}

// AdoptionSeries groups sorted records into per-app (and region) adoption series.
func AdoptionSeries(recs []Record) ([]Series, error) {
	idx := map[string]int{}
	var out []Series
	for _, r := range recs {
		if r.Type != event.TypeAdoption {
			continue
		}
		p, err := r.Payload()
		if err != nil {
			return nil, fmt.Errorf("history record %q: %w", r.ID, err)
		}
		a := p.(*event.Adoption)
		key := a.App + "\x00" + a.Region
		i, ok := idx[key]
		if !ok {
			i = len(out)
			idx[key] = i
			out = append(out, Series{App: a.App, Region: a.Region})
		}
		out[i].Records = append(out[i].Records, r)
	}
	return out, nil
}

// Check enforces the rules between records (given sorted by time, then id): ids are unique,
// and each adoption record's users_delta is its level minus the previous level of the same app
// in the same region (the first record carries its level), so an app's deltas sum to its last
// published level.
func Check(recs []Record) error {
	seen := map[string]bool{}
	for _, r := range recs {
		if seen[r.ID] {
			return fmt.Errorf("history record %q: id: duplicate", r.ID)
		}
		seen[r.ID] = true
	}
	series, err := AdoptionSeries(recs)
	if err != nil {
		return err
	}
	for _, s := range series {
		prev := 0.0
		for _, r := range s.Records {
			p, _ := r.Payload()
			delta := p.(*event.Adoption).UsersDelta
			if want := *r.Level - prev; !near(delta, want) {
				return fmt.Errorf("history record %q: data.users_delta: %v, want level %v - previous level %v = %v",
					r.ID, delta, *r.Level, prev, want)
			}
			prev = *r.Level
		}
	}
	return nil
}

func near(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}
