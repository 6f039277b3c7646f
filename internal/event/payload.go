package event

import (
	"fmt"
	"math"
	"time"

	"github.com/segmentio/encoding/json"
)

// MaxAbs bounds every number on the wire.
const MaxAbs = 1e21

// Workloads a demand.infrastructure event may carry.
const (
	Inference = "inference"
	Training  = "training"
	Finetune  = "finetune"
)

// Workloads lists the valid workload names.
var Workloads = []string{Inference, Training, Finetune}

// Adoption is the data of signal.adoption.v1: a change in weekly active users of an app.
type Adoption struct {
	App                string   `json:"app"`
	Category           string   `json:"category"`
	Region             string   `json:"region"`
	UsersDelta         float64  `json:"users_delta"`
	RequestsPerUserDay *float64 `json:"requests_per_user_day,omitempty"`
	TokensPerRequest   *float64 `json:"tokens_per_request,omitempty"`
	Model              string   `json:"model,omitempty"`
}

// Release is the data of signal.release.v1: a model becoming available.
type Release struct {
	Model                string   `json:"model"`
	Region               string   `json:"region"`
	OpenWeights          *bool    `json:"open_weights"`
	ParamsTotal          float64  `json:"params_total"`
	ParamsActive         float64  `json:"params_active"`
	Reasoning            *bool    `json:"reasoning"`
	ExpectedTokensPerDay *float64 `json:"expected_tokens_per_day,omitempty"`
	DerivativeFinetunes  *float64 `json:"derivative_finetunes,omitempty"`
}

// DemandModel is the data of demand.model.v1: tokens per day asked of a model.
type DemandModel struct {
	Region       string   `json:"region"`
	Model        string   `json:"model"`
	TokensPerDay float64  `json:"tokens_per_day"`
	ParamsActive *float64 `json:"params_active,omitempty"`
	Reasoning    *bool    `json:"reasoning,omitempty"`
}

// DemandInfrastructure is the data of demand.infrastructure.v1: compute asked of AI factories.
type DemandInfrastructure struct {
	Region   string  `json:"region"`
	Workload string  `json:"workload"`
	FlopPerS float64 `json:"flop_per_s"`
	// PricedAt is the time whose coefficients price this demand when it is not the event's own
	// time: a retraction is priced as the demand it retracts was, so that both net to zero
	// below (absent: the event's time).
	PricedAt *time.Time `json:"priced_at,omitempty"`
}

// DemandChips is the data of demand.chips.v1: accelerators needed.
type DemandChips struct {
	Region      string   `json:"region"`
	Accelerator string   `json:"accelerator"`
	Units       float64  `json:"units"`
	HBMGB       *float64 `json:"hbm_gb,omitempty"`
	Workload    string   `json:"workload,omitempty"`
	// PricedAt is the time whose coefficients price this demand when it is not the event's own
	// time: a retraction is priced as the demand it retracts was, so that both net to zero
	// below (absent: the event's time).
	PricedAt *time.Time `json:"priced_at,omitempty"`
}

// DemandEnergy is the data of demand.energy.v1: power drawn by those accelerators.
type DemandEnergy struct {
	Region     string  `json:"region"`
	ITMW       float64 `json:"it_mw"`
	FacilityMW float64 `json:"facility_mw"`
	Workload   string  `json:"workload,omitempty"`
	// PricedAt is the time whose coefficients price this demand when it is not the event's own
	// time: a retraction is priced as the demand it retracts was, so that both net to zero
	// below (absent: the event's time).
	PricedAt *time.Time `json:"priced_at,omitempty"`
}

// DemandGrid is the data of demand.grid.v1: what the grid must supply.
type DemandGrid struct {
	Region       string  `json:"region"`
	AvgMW        float64 `json:"avg_mw"`
	GenerationMW float64 `json:"generation_mw"`
	TWhPerYear   float64 `json:"twh_per_year"`
	CO2TPerYear  float64 `json:"co2_t_per_year"`
	Workload     string  `json:"workload,omitempty"`
	// PricedAt is the time whose coefficients price this demand when it is not the event's own
	// time: a retraction is priced as the demand it retracts was, so that both net to zero
	// below (absent: the event's time).
	PricedAt *time.Time `json:"priced_at,omitempty"`
}

// Payload is implemented by the seven data types.
type Payload interface {
	// EventType is the CloudEvents type carrying this payload.
	EventType() Type
	// RegionName is the payload's region, which must equal the envelope subject.
	RegionName() string
	// Validate checks the rules a schema cannot see as well as those it can; a required number
	// still NaN after decoding was absent.
	Validate() error
}

func (*Adoption) EventType() Type             { return TypeAdoption }
func (*Release) EventType() Type              { return TypeRelease }
func (*DemandModel) EventType() Type          { return TypeDemandModel }
func (*DemandInfrastructure) EventType() Type { return TypeDemandInfrastructure }
func (*DemandChips) EventType() Type          { return TypeDemandChips }
func (*DemandEnergy) EventType() Type         { return TypeDemandEnergy }
func (*DemandGrid) EventType() Type           { return TypeDemandGrid }

func (p *Adoption) RegionName() string             { return p.Region }
func (p *Release) RegionName() string              { return p.Region }
func (p *DemandModel) RegionName() string          { return p.Region }
func (p *DemandInfrastructure) RegionName() string { return p.Region }
func (p *DemandChips) RegionName() string          { return p.Region }
func (p *DemandEnergy) RegionName() string         { return p.Region }
func (p *DemandGrid) RegionName() string           { return p.Region }

// Priced is implemented by the payloads that may be priced at a time other than their event's
// (PricedAt): the demand below the model layer.
type Priced interface {
	Payload
	// PricingTime is the payload's PricedAt, nil when it is its event's time.
	PricingTime() *time.Time
	// SetPricingTime sets PricedAt.
	SetPricingTime(t *time.Time)
}

func (p *DemandInfrastructure) PricingTime() *time.Time { return p.PricedAt }
func (p *DemandChips) PricingTime() *time.Time          { return p.PricedAt }
func (p *DemandEnergy) PricingTime() *time.Time         { return p.PricedAt }
func (p *DemandGrid) PricingTime() *time.Time           { return p.PricedAt }

func (p *DemandInfrastructure) SetPricingTime(t *time.Time) { p.PricedAt = t }
func (p *DemandChips) SetPricingTime(t *time.Time)          { p.PricedAt = t }
func (p *DemandEnergy) SetPricingTime(t *time.Time)         { p.PricedAt = t }
func (p *DemandGrid) SetPricingTime(t *time.Time)           { p.PricedAt = t }

// newPayload returns an empty payload of type t with its required numbers set to NaN, so that
// Validate can tell an absent number from a zero (JSON cannot carry NaN).
func newPayload(t Type) Payload {
	if s, ok := pipeline.payloads[t]; ok {
		return s.New()
	}
	return nil
}

// DecodePayload decodes and validates the data of an event of type t. Unknown fields are
// refused so that a misspelt optional field is not silently ignored.
func DecodePayload(t Type, data []byte) (Payload, error) {
	p := newPayload(t)
	if p == nil {
		return nil, invalid("type", "unknown event type %q", t)
	}
	if len(data) == 0 {
		return nil, invalid("data", "required")
	}
	rest, err := json.Parse(data, p, json.DisallowUnknownFields)
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("invalid character %q after the data object", rest[0])
	}
	if err != nil {
		return nil, &DecodeError{Err: fmt.Errorf("data of %s: %w", t.Short(), err)}
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// DecodeError is a body that is not the JSON it should be.
type DecodeError struct{ Err error }

func (e *DecodeError) Error() string { return "decode: " + e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

type check struct {
	errs error
}

func (c *check) fail(field, rule string, args ...any) {
	if c.errs == nil {
		c.errs = invalid("data."+field, rule, args...)
	}
}

func (c *check) name(field, v string) {
	if v == "" {
		c.fail(field, "required")
	} else if !ValidName(v) {
		c.fail(field, "must match %s", NamePattern)
	}
}

func (c *check) text(field, v string) {
	if v == "" {
		c.fail(field, "required")
	} else if len(v) > 128 {
		c.fail(field, "at most 128 characters")
	}
}

// num checks a required number: present, finite, within ±MaxAbs.
func (c *check) num(field string, v float64) {
	if math.IsNaN(v) {
		c.fail(field, "required")
	} else if math.IsInf(v, 0) || math.Abs(v) > MaxAbs {
		c.fail(field, "must be finite with |x| <= 1e21")
	}
}

func (c *check) positive(field string, v float64) {
	c.num(field, v)
	if c.errs == nil && v <= 0 {
		c.fail(field, "must be > 0")
	}
}

func (c *check) nonNegative(field string, v float64) {
	c.num(field, v)
	if c.errs == nil && v < 0 {
		c.fail(field, "must be >= 0")
	}
}

func (c *check) optPositive(field string, v *float64) {
	if v != nil {
		c.positive(field, *v)
	}
}

func (c *check) optNonNegative(field string, v *float64) {
	if v != nil {
		c.nonNegative(field, *v)
	}
}

func (c *check) workload(field, v string, required bool) {
	if v == "" && !required {
		return
	}
	for _, w := range Workloads {
		if v == w {
			return
		}
	}
	if v == "" {
		c.fail(field, "required")
		return
	}
	c.fail(field, "must be one of inference, training, finetune")
}

func (p *Adoption) Validate() error {
	var c check
	c.text("app", p.App)
	c.text("category", p.Category)
	c.name("region", p.Region)
	c.num("users_delta", p.UsersDelta)
	c.optPositive("requests_per_user_day", p.RequestsPerUserDay)
	c.optPositive("tokens_per_request", p.TokensPerRequest)
	if p.Model != "" {
		c.text("model", p.Model)
	}
	return c.errs
}

func (p *Release) Validate() error {
	var c check
	c.text("model", p.Model)
	c.name("region", p.Region)
	if p.OpenWeights == nil {
		c.fail("open_weights", "required")
	}
	c.positive("params_total", p.ParamsTotal)
	c.positive("params_active", p.ParamsActive)
	if c.errs == nil && p.ParamsActive > p.ParamsTotal {
		c.fail("params_active", "must be <= params_total")
	}
	if p.Reasoning == nil {
		c.fail("reasoning", "required")
	}
	c.optNonNegative("expected_tokens_per_day", p.ExpectedTokensPerDay)
	c.optNonNegative("derivative_finetunes", p.DerivativeFinetunes)
	return c.errs
}

func (p *DemandModel) Validate() error {
	var c check
	c.name("region", p.Region)
	c.text("model", p.Model)
	c.num("tokens_per_day", p.TokensPerDay)
	c.optPositive("params_active", p.ParamsActive)
	return c.errs
}

func (p *DemandInfrastructure) Validate() error {
	var c check
	c.name("region", p.Region)
	c.workload("workload", p.Workload, true)
	c.num("flop_per_s", p.FlopPerS)
	return c.errs
}

func (p *DemandChips) Validate() error {
	var c check
	c.name("region", p.Region)
	c.text("accelerator", p.Accelerator)
	c.num("units", p.Units)
	if p.HBMGB != nil {
		c.num("hbm_gb", *p.HBMGB)
	}
	c.workload("workload", p.Workload, false)
	return c.errs
}

func (p *DemandEnergy) Validate() error {
	var c check
	c.name("region", p.Region)
	c.num("it_mw", p.ITMW)
	c.num("facility_mw", p.FacilityMW)
	c.workload("workload", p.Workload, false)
	return c.errs
}

func (p *DemandGrid) Validate() error {
	var c check
	c.name("region", p.Region)
	c.num("avg_mw", p.AvgMW)
	c.num("generation_mw", p.GenerationMW)
	c.num("twh_per_year", p.TWhPerYear)
	c.num("co2_t_per_year", p.CO2TPerYear)
	c.workload("workload", p.Workload, false)
	return c.errs
}
