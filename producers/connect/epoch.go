package connect

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/layercake/cascade/internal/event"
)

// EpochURL is where Epoch AI publishes its datasets.
const EpochURL = "https://epoch.ai"

// EpochPath is the daily CSV of Epoch AI's notable AI models under EpochURL.
const EpochPath = "/data/notable_ai_models.csv"

// The columns of the notable-models CSV the connector reads. Those of epochRequired must be
// in the header; the others are used when present.
const (
	colModel         = "Model"
	colDate          = "Publication date"
	colParams        = "Parameters"
	colCompute       = "Training compute (FLOP)"
	colHours         = "Training time (hours)"
	colDomain        = "Domain"
	colAccessibility = "Model accessibility"
	colCountry       = "Country (of organization)"
)

var epochRequired = []string{colModel, colDate, colParams, colCompute, colHours}

// Epoch reads Epoch AI's notable-models dataset. Each language or multimodal model with a
// publication date and a parameter count becomes a signal.release (id "epoch:<Model>:release",
// at the publication date, in region world; open_weights from "Model accessibility";
// params_active = params_total, as the dataset gives no active parameters; reasoning false).
// Each model whose training compute and training time are known becomes a
// demand.infrastructure training signal of compute / time FLOP/s in its organisation's
// country, from the publication date less the training time ("epoch:<Model>:training"),
// retracted at the publication date ("epoch:<Model>:training-end", priced_at the start, so
// that it nets the training demand to zero at every layer): the dataset has no
// training dates, so training is taken to end when the model is published. The checkpoint is
// the set of models read; a model whose row was bad is read again on the next poll.
type Epoch struct {
	BaseURL string // default EpochURL
	Client  *Client
}

// Name is the checkpoint name.
func (e *Epoch) Name() string { return "connect/epoch" }

type epochCheckpoint struct {
	Done []string `json:"done"` // models read, sorted
}

// Poll fetches the CSV and makes the signals of the models not read before.
func (e *Epoch) Poll(ctx context.Context, checkpoint []byte) (Batch, error) {
	var cp epochCheckpoint
	if checkpoint != nil {
		if err := json.Unmarshal(checkpoint, &cp); err != nil {
			return Batch{}, fmt.Errorf("checkpoint: %w", err)
		}
	}
	u := strings.TrimRight(e.base(), "/") + EpochPath
	body, _, err := e.Client.Get(ctx, u)
	if err != nil {
		return Batch{}, err
	}
	r := csv.NewReader(bytes.NewReader(body))
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return Batch{}, changed(u, "", "a CSV header", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))] = i
	}
	for _, c := range epochRequired {
		if _, ok := col[c]; !ok {
			return Batch{}, changed(u, c, "the column "+strconv.Quote(c)+" in the header", nil)
		}
	}
	done := map[string]bool{}
	for _, m := range cp.Done {
		done[m] = true
	}
	var sigs []Signal
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				sigs = append(sigs, Signal{Line: pe.StartLine, Err: &event.ValidationError{Field: "row", Rule: err.Error()}})
				continue
			}
			return Batch{}, changed(u, "", "CSV", err)
		}
		line, _ := r.FieldPos(0)
		get := func(c string) string {
			if i, ok := col[c]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		model := get(colModel)
		if model == "" || done[model] {
			continue
		}
		row, err := e.row(u, model, get)
		if err != nil {
			sigs = append(sigs, Signal{Line: line, Err: err})
			continue
		}
		for _, s := range row {
			s.Line = line
			sigs = append(sigs, s)
		}
		done[model] = true
	}
	next := epochCheckpoint{Done: make([]string, 0, len(done))}
	for m := range done {
		next.Done = append(next.Done, m)
	}
	slices.Sort(next.Done)
	b, err := json.Marshal(next)
	if err != nil {
		return Batch{}, err
	}
	return Batch{Signals: sigs, Checkpoint: b}, nil
}

// row makes one model's signals; a bad value is a *event.ValidationError naming its column.
func (e *Epoch) row(src, model string, get func(string) string) ([]Signal, error) {
	date, err := time.Parse(time.DateOnly, get(colDate))
	if err != nil {
		return nil, &event.ValidationError{Field: colDate, Rule: fmt.Sprintf("%q is not a date (YYYY-MM-DD)", get(colDate))}
	}
	params, err := optionalNumber(get, colParams)
	if err != nil {
		return nil, err
	}
	compute, err := optionalNumber(get, colCompute)
	if err != nil {
		return nil, err
	}
	hours, err := optionalNumber(get, colHours)
	if err != nil {
		return nil, err
	}
	var out []Signal
	if params > 0 && languageModel(get(colDomain)) {
		open, reasoning := strings.HasPrefix(strings.ToLower(get(colAccessibility)), "open weights"), false
		rel := event.Release{Model: modelName(model), Region: "world", OpenWeights: &open, ParamsTotal: params, ParamsActive: params, Reasoning: &reasoning}
		env := envelope{ID: "epoch:" + model + ":release", Source: "/cascade/connect/epoch", Type: string(event.TypeRelease), Time: date, SourceURL: src, Data: rel}
		out = append(out, env.signal(0, "params_active = params_total: the dataset gives no active parameters"))
	}
	if compute > 0 && hours > 0 {
		flops := compute / (hours * 3600)
		region := country(get(colCountry))
		start := date.Add(-time.Duration(hours * float64(time.Hour)))
		note := fmt.Sprintf("%.4g FLOP over %g hours; training taken to end at the publication date", compute, hours)
		on := envelope{ID: "epoch:" + model + ":training", Source: "/cascade/connect/epoch", Type: string(event.TypeDemandInfrastructure), Time: start, SourceURL: src,
			Data: event.DemandInfrastructure{Region: region, Workload: event.Training, FlopPerS: flops}}
		off := on
		off.ID, off.Time = "epoch:"+model+":training-end", date
		// Priced at the start, as the compute it retracts, so that both net to zero below
		// even when a fleet period begins during training.
		off.Data = event.DemandInfrastructure{Region: region, Workload: event.Training, FlopPerS: -flops, PricedAt: &start}
		out = append(out, on.signal(0, note), off.signal(0, "retraction of the training compute at the publication date"))
	}
	return out, nil
}

// optionalNumber reads a column that may be empty (0); anything else must be a finite
// number >= 0.
func optionalNumber(get func(string) string, c string) (float64, error) {
	s := get(c)
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, &event.ValidationError{Field: c, Rule: fmt.Sprintf("%q is not a finite number >= 0", s)}
	}
	return v, nil
}

// languageModel reports whether a Domain cell (comma-separated) names a model that serves
// tokens: Language or Multimodal; a dataset without the column counts every model.
func languageModel(domain string) bool {
	if domain == "" {
		return true
	}
	for _, d := range strings.Split(domain, ",") {
		if d = strings.TrimSpace(d); d == "Language" || d == "Multimodal" {
			return true
		}
	}
	return false
}

// countries maps the dataset's country names to region tokens; several countries, or one
// not listed, are "world".
var countries = map[string]string{
	"United States of America": "us", "China": "cn", "United Kingdom of Great Britain and Northern Ireland": "gb",
	"United Kingdom": "gb", "France": "fr", "Germany": "de", "Canada": "ca", "Japan": "jp", "Korea (Republic of)": "kr",
	"Israel": "il", "United Arab Emirates": "ae", "India": "in", "Singapore": "sg", "Switzerland": "ch",
}

func country(c string) string {
	if r, ok := countries[strings.TrimSpace(c)]; ok {
		return r
	}
	return "world"
}

func (e *Epoch) base() string {
	if e.BaseURL == "" {
		return EpochURL
	}
	return e.BaseURL
}
