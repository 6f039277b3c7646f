package connect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/layercake/cascade/internal/event"
)

// HuggingFaceURL is the public Hugging Face Hub.
const HuggingFaceURL = "https://huggingface.co"

// HuggingFace reads new open-weight text-generation models from the Hugging Face Hub: the
// listing GET /api/models?pipeline_tag=text-generation&sort=createdAt&direction=-1, newest
// first and paged by its Link header, then GET /api/models/{id} for each new model
// (safetensors.total, tags, cardData) and its config.json (experts). A model above MinParams
// that does not derive from another (see Derivatives) becomes a signal.release with id "huggingface:<model id>"; its checkpoint is the newest
// creation time read and the ids created at that instant.
type HuggingFace struct {
	BaseURL   string    // default HuggingFaceURL
	MinParams float64   // models with fewer parameters (safetensors.total) are passed over
	Since     time.Time // on the first poll, models created before it are not read
	Client    *Client
	// PageSize is the listing's limit parameter; default 100.
	PageSize int
	// MaxPages bounds the pages one poll reads; default 50.
	MaxPages int
	// Derivatives also reads models whose tags name a base model they were fine-tuned,
	// quantized, merged or adapted from; by default they are passed over, as the release
	// of their base model already counts its derivative fine-tunes.
	Derivatives bool
}

// Name is the checkpoint name.
func (h *HuggingFace) Name() string { return "connect/huggingface" }

type hfCheckpoint struct {
	CreatedAt time.Time `json:"created_at"`
	IDs       []string  `json:"ids"` // the models created at CreatedAt, already read
}

// hfListed is one model of the listing.
type hfListed struct {
	ID          string    `json:"id"`
	CreatedAt   time.Time `json:"createdAt"`
	PipelineTag string    `json:"pipeline_tag"`
	Private     bool      `json:"private"`
	Tags        []string  `json:"tags"`
}

// derivative reports whether the model's tags name a base model it derives from.
func (m hfListed) derivative() bool {
	return slices.ContainsFunc(m.Tags, func(t string) bool {
		for _, k := range []string{"finetune", "quantized", "merge", "adapter"} {
			if strings.HasPrefix(t, "base_model:"+k+":") {
				return true
			}
		}
		return false
	})
}

// hfModel is what GET /api/models/{id} says of a model.
type hfModel struct {
	ID          string   `json:"id"`
	Tags        []string `json:"tags"`
	PipelineTag string   `json:"pipeline_tag"`
	Private     bool     `json:"private"`
	Disabled    bool     `json:"disabled"`
	CardData    struct {
		Tags []string `json:"tags"`
	} `json:"cardData"`
	Safetensors *struct {
		Total *float64 `json:"total"`
	} `json:"safetensors"`
}

// Poll reads the models created after the checkpoint (or after Since), newest first.
func (h *HuggingFace) Poll(ctx context.Context, checkpoint []byte) (Batch, error) {
	cp := hfCheckpoint{CreatedAt: h.Since}
	if checkpoint != nil {
		if err := json.Unmarshal(checkpoint, &cp); err != nil {
			return Batch{}, fmt.Errorf("checkpoint: %w", err)
		}
	}
	listed, err := h.newModels(ctx, cp)
	if err != nil {
		return Batch{}, err
	}
	next := cp
	var sigs []Signal
	for i, m := range listed {
		if m.CreatedAt.After(next.CreatedAt) {
			next = hfCheckpoint{CreatedAt: m.CreatedAt}
		}
		if m.CreatedAt.Equal(next.CreatedAt) {
			next.IDs = append(next.IDs, m.ID)
		}
		s, ok, err := h.release(ctx, i+1, m)
		if err != nil {
			return Batch{}, err
		}
		if ok {
			sigs = append(sigs, s)
		}
	}
	// Publish oldest first, as they were created.
	slices.Reverse(sigs)
	slices.Sort(next.IDs)
	b, err := json.Marshal(next)
	if err != nil {
		return Batch{}, err
	}
	return Batch{Signals: sigs, Checkpoint: b}, nil
}

// newModels pages through the listing until it reaches the checkpoint.
func (h *HuggingFace) newModels(ctx context.Context, cp hfCheckpoint) ([]hfListed, error) {
	q := url.Values{"pipeline_tag": {"text-generation"}, "sort": {"createdAt"}, "direction": {"-1"}, "limit": {fmt.Sprint(h.pageSize())}}
	page := h.base() + "/api/models?" + q.Encode()
	var out []hfListed
	for n := 1; page != ""; n++ {
		if n > h.maxPages() {
			return nil, fmt.Errorf("more than %d pages of models newer than %s: give a later --since", h.maxPages(), cp.CreatedAt.Format(time.RFC3339))
		}
		body, hdr, err := h.Client.Get(ctx, page)
		if err != nil {
			return nil, err
		}
		var models []hfListed
		if err := json.Unmarshal(body, &models); err != nil {
			return nil, changed(page, "", "a JSON array of models", err)
		}
		for i, m := range models {
			if m.ID == "" {
				return nil, changed(page, fmt.Sprintf("[%d].id", i), "a model id", nil)
			}
			if m.CreatedAt.IsZero() {
				return nil, changed(page, fmt.Sprintf("[%d].createdAt", i), "an RFC 3339 time", nil)
			}
			if i > 0 && m.CreatedAt.After(models[i-1].CreatedAt) {
				return nil, changed(page, fmt.Sprintf("[%d].createdAt", i), "models sorted newest first", nil)
			}
			if m.CreatedAt.Before(cp.CreatedAt) {
				return out, nil
			}
			if m.CreatedAt.Equal(cp.CreatedAt) && slices.Contains(cp.IDs, m.ID) {
				continue
			}
			out = append(out, m)
		}
		page = nextLink(hdr.Get("Link"))
	}
	return out, nil
}

// release reads one model's details and makes its signal; ok is false for a model that is
// not a public text-generation model above MinParams with safetensors metadata.
func (h *HuggingFace) release(ctx context.Context, line int, m hfListed) (Signal, bool, error) {
	if m.Private || (m.PipelineTag != "" && m.PipelineTag != "text-generation") || (!h.Derivatives && m.derivative()) {
		return Signal{}, false, nil
	}
	u := h.base() + "/api/models/" + m.ID
	body, _, err := h.Client.Get(ctx, u)
	if err != nil {
		return Signal{}, false, err
	}
	var d hfModel
	if err := json.Unmarshal(body, &d); err != nil {
		return Signal{}, false, changed(u, "", "a model object", err)
	}
	if d.ID != m.ID {
		return Signal{}, false, changed(u, "id", fmt.Sprintf("%q", m.ID), nil)
	}
	if d.Private || d.Disabled || d.Safetensors == nil {
		return Signal{}, false, nil // no weights to count
	}
	if d.Safetensors.Total == nil || *d.Safetensors.Total <= 0 {
		return Signal{}, false, changed(u, "safetensors.total", "a positive parameter count", nil)
	}
	total := *d.Safetensors.Total
	if total < h.MinParams {
		return Signal{}, false, nil
	}
	active, note, err := h.active(ctx, m.ID, total)
	if err != nil {
		return Signal{}, false, err
	}
	open, reasoning := true, isReasoning(d)
	rel := event.Release{Model: modelName(m.ID), Region: "world", OpenWeights: &open, ParamsTotal: total, ParamsActive: active, Reasoning: &reasoning}
	e := envelope{ID: "huggingface:" + m.ID, Source: "/cascade/connect/huggingface", Type: string(event.TypeRelease),
		Time: m.CreatedAt.UTC(), SourceURL: h.base() + "/" + m.ID, Data: rel}
	return e.signal(line, note), true, nil
}

// active is the parameters active per token: from config.json where it declares routed
// experts, else the total. The note says how an estimate was made.
func (h *HuggingFace) active(ctx context.Context, id string, total float64) (float64, string, error) {
	u := h.base() + "/" + id + "/resolve/main/config.json"
	body, _, err := h.Client.Get(ctx, u)
	if errors.Is(err, ErrNotFound) {
		return total, "", nil
	}
	var se *statusError
	if errors.As(err, &se) && (se.status == 401 || se.status == 403) {
		return total, "", nil // a gated model: its config is not public
	}
	if err != nil {
		return 0, "", err
	}
	var cfg map[string]any
	if err := json.Unmarshal(body, &cfg); err != nil {
		return 0, "", changed(u, "", "a JSON object", err)
	}
	return activeParams(cfg, total, u)
}

// activeParams estimates the parameters active per token of a mixture of experts: the
// routed experts' share of the weights, 3 × hidden_size × expert FFN size × experts × MoE
// layers (gate, up and down projections), is active in the fraction experts per token /
// experts; the rest (attention, embeddings, dense and shared layers) always is. A config
// without routed experts is dense: active = total.
func activeParams(cfg map[string]any, total float64, src string) (float64, string, error) {
	if tc, ok := cfg["text_config"].(map[string]any); ok {
		cfg = tc // multimodal configs keep the language model's settings apart
	}
	experts, ek := first(cfg, "num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
	if ek == "" || experts <= 1 {
		return total, "", nil
	}
	perTok, pk := first(cfg, "num_experts_per_tok", "num_experts_per_token", "moe_top_k")
	if pk == "" || perTok <= 0 || perTok > experts {
		return 0, "", changed(src, "num_experts_per_tok", fmt.Sprintf("experts per token in 1..%s=%g", ek, experts), nil)
	}
	hidden, hk := first(cfg, "hidden_size")
	ffn, fk := first(cfg, "moe_intermediate_size", "intermediate_size")
	layers, lk := first(cfg, "num_hidden_layers")
	if hk == "" || fk == "" || lk == "" || hidden <= 0 || ffn <= 0 || layers <= 0 {
		return total, fmt.Sprintf("params_active = params_total: %s declares %g experts but not their size (hidden_size, moe_intermediate_size, num_hidden_layers)", src, experts), nil
	}
	dense, _ := first(cfg, "first_k_dense_replace")
	share := min(total, 3*hidden*ffn*experts*max(layers-dense, 1))
	active := total - share*(1-perTok/experts)
	note := fmt.Sprintf("params_active estimated from %s: %g of %g routed experts per token (%s/%s) applied to the expert share 3×%s×%s×experts×%g MoE layers = %.4g of %.4g parameters",
		src, perTok, experts, pk, ek, hk, fk, max(layers-dense, 1), share, total)
	return active, note, nil
}

// first returns the first of keys that cfg holds as a number, and that key ("" for none).
func first(cfg map[string]any, keys ...string) (float64, string) {
	for _, k := range keys {
		if v, ok := cfg[k].(float64); ok {
			return v, k
		}
	}
	return 0, ""
}

var reasoningTag = regexp.MustCompile(`(?i)\b(reasoning|thinking|chain-of-thought)\b`)

// isReasoning reports whether the model's tags or card tags say it reasons.
func isReasoning(d hfModel) bool {
	for _, t := range append(slices.Clone(d.Tags), d.CardData.Tags...) {
		if reasoningTag.MatchString(t) {
			return true
		}
	}
	return false
}

// modelName fits a model id into the release's 128-character model field.
func modelName(id string) string {
	if len(id) <= 128 {
		return id
	}
	return id[:128]
}

var linkNext = regexp.MustCompile(`<([^>]+)>\s*;\s*rel="?next"?`)

// nextLink is the rel="next" target of a Link header, or "".
func nextLink(h string) string {
	for _, part := range strings.Split(h, ",") {
		if m := linkNext.FindStringSubmatch(part); m != nil {
			return m[1]
		}
	}
	return ""
}

// ChangedError is a response that is not what the source documents: it names the document
// and the field.
type ChangedError struct {
	URL   string
	Field string // JSON path or CSV column; "" for the whole document
	Want  string
	Err   error
}

func (e *ChangedError) Error() string {
	s := "unexpected response from " + e.URL
	if e.Field != "" {
		s += ": field " + e.Field
	}
	s += ": want " + e.Want
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ChangedError) Unwrap() error { return e.Err }

func changed(url, field, want string, err error) error {
	return &ChangedError{URL: url, Field: field, Want: want, Err: err}
}

func (h *HuggingFace) base() string {
	if h.BaseURL == "" {
		return HuggingFaceURL
	}
	return strings.TrimRight(h.BaseURL, "/")
}

func (h *HuggingFace) pageSize() int {
	if h.PageSize > 0 {
		return h.PageSize
	}
	return 100
}

func (h *HuggingFace) maxPages() int {
	if h.MaxPages > 0 {
		return h.MaxPages
	}
	return 50
}
