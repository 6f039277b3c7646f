package schemas_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/schemas"
)

func TestFiles(t *testing.T) {
	want := []string{
		"cloudevent.json", "coefficients.json", "demand.chips.v1.json", "demand.energy.v1.json",
		"demand.grid.v1.json", "demand.infrastructure.v1.json", "demand.model.v1.json",
		"signal.adoption.v1.json", "signal.release.v1.json", "totals.json",
	}
	got := schemas.Files()
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("Files() = %v, want %v", got, want)
	}
	for _, name := range got {
		b, err := schemas.FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Schema string `json:"$schema"`
			ID     string `json:"$id"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if doc.ID != event.SchemaBase+name || doc.Schema != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $id %q, $schema %q", name, doc.ID, doc.Schema)
		}
		// Every file compiles: validating anything yields nil or a ValidationError.
		if err := schemas.Validate(name, map[string]any{}); err != nil && !errors.Is(err, event.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Every payload type's dataschema names an embedded file.
	for _, typ := range event.Types {
		if _, err := schemas.FS.ReadFile(strings.TrimPrefix(typ.DataSchema(), event.SchemaBase)); err != nil {
			t.Errorf("%s: %v", typ, err)
		}
	}
}

func TestValidateUnknownFile(t *testing.T) {
	err := schemas.Validate("nope.json", map[string]any{})
	if err == nil || errors.Is(err, event.ErrInvalid) || !strings.Contains(err.Error(), "nope.json") {
		t.Fatalf("got %v, want an error naming the file that is not ErrInvalid", err)
	}
}

// wantErr checks err against a wanted field and a substring of the rule; field "" wants nil.
func wantErr(t *testing.T, err error, field, rule string) {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Fatalf("got %v, want nil", err)
		}
		return
	}
	var v *event.ValidationError
	if !errors.As(err, &v) || !errors.Is(err, event.ErrInvalid) {
		t.Fatalf("got %v (%T), want a ValidationError matching ErrInvalid", err, err)
	}
	if v.Field != field || !strings.Contains(v.Rule, rule) {
		t.Fatalf("got %q: %q, want %q: …%s…", v.Field, v.Rule, field, rule)
	}
}

func TestValidateEventEnvelope(t *testing.T) {
	base := valid(t, event.TypeAdoption)
	minimal := map[string]any{"specversion": "1.0", "id": "a", "source": "urn:x", "type": "cascade.demand.infrastructure.v1",
		"subject": "eu", "time": "2025-01-27T10:11:12.123456789+01:00", "data": map[string]any{"region": "eu", "workload": "training", "flop_per_s": -5}}
	tests := []struct {
		name        string
		in          map[string]any
		field, rule string
	}{
		{"valid, every attribute", base, "", ""},
		{"valid, required attributes only", minimal, "", ""},
		{"valid extension attribute", with(t, base, "traceparent", "00-abc"), "", ""},
		{"valid numeric extension", with(t, base, "priority", 3), "", ""},
		{"missing specversion", with(t, base, "specversion", drop), "specversion", "required"},
		{"missing id", with(t, base, "id", drop), "id", "required"},
		{"missing source", with(t, base, "source", drop), "source", "required"},
		{"missing type", with(t, base, "type", drop), "type", "required"},
		{"missing subject", with(t, base, "subject", drop), "subject", "required"},
		{"missing time", with(t, base, "time", drop), "time", "required"},
		{"missing data", with(t, base, "data", drop), "data", "required"},
		{"specversion 0.3", with(t, base, "specversion", "0.3"), "specversion", `must be "1.0"`},
		{"empty id", with(t, base, "id", ""), "id", "must not be empty"},
		{"id too long", with(t, base, "id", strings.Repeat("x", 257)), "id", "at most 256"},
		{"id with a newline", with(t, base, "id", "collide\nx"), "id", "must match"},
		{"id with a carriage return", with(t, base, "id", "collide\rx"), "id", "must match"},
		{"id with a C1 control", with(t, base, "id", "collide\u0085x"), "id", "must match"},
		{"source not a URI reference", with(t, base, "source", "%zz"), "source", "uri-reference"},
		{"unknown type", with(t, base, "type", "cascade.signal.nope.v1"), "type", "must be one of"},
		{"type of another payload", with(t, base, "type", "cascade.demand.grid.v1"), "data.app", "unknown key"},
		{"subject upper case", with(t, base, "subject", "US"), "subject", "must match"},
		{"subject too long", with(t, base, "subject", strings.Repeat("a", 33)), "subject", "must match"},
		{"time not a time", with(t, base, "time", "yesterday"), "time", "date-time"},
		{"time month 13", with(t, base, "time", "2025-13-01T00:00:00Z"), "time", "date-time"},
		{"time lower-case t", with(t, base, "time", "2025-01-01t00:00:00Z"), "time", "must match"},
		{"time leap second", with(t, base, "time", "2016-12-31T23:59:60Z"), "time", "must match"},
		{"time without zone", with(t, base, "time", "2025-01-01T00:00:00"), "time", ""},
		{"datacontenttype text/plain", with(t, base, "datacontenttype", "text/plain"), "datacontenttype", "must match ^application/json"},
		{"datacontenttype with charset=utf-8", with(t, base, "datacontenttype", "application/json; charset=utf-8"), "", ""},
		{"datacontenttype with charset=utf-16", with(t, base, "datacontenttype", "application/json; charset=utf-16"), "datacontenttype", "must match"},
		{"dataschema relative", with(t, base, "dataschema", "signal.adoption.v1.json"), "dataschema", "uri"},
		{"scenario upper case", with(t, base, "scenario", "Base"), "scenario", "must match"},
		{"empty causationid", with(t, base, "causationid", ""), "causationid", "must not be empty"},
		{"correlationid a number", with(t, base, "correlationid", 7), "correlationid", "must be a string"},
		{"empty coefversion", with(t, base, "coefversion", ""), "coefversion", "must not be empty"},
		{"sourceurl not absolute", with(t, base, "sourceurl", "example.com"), "sourceurl", "uri"},
		{"extension name upper case", with(t, base, "traceParent", "x"), "traceParent", "key must match"},
		{"extension name too long", with(t, base, "averyveryverylongextension", "x"), "averyveryverylongextension", "key must match"},
		{"extension value an object", with(t, base, "ext", map[string]any{}), "ext", "must be a boolean or number or string"},
		{"extension value null", with(t, base, "ext", nil), "ext", "must be a boolean or number or string"},
		{"data a string", with(t, base, "data", "x"), "data", "must be an object"},
		{"data null", with(t, base, "data", nil), "data", "must be an object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, schemas.ValidateEvent(mustJSON(t, tc.in)), tc.field, tc.rule)
		})
	}
}

func TestValidateEventBody(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		field, rule string
		decodeErr   bool
	}{
		{name: "not JSON", in: `{"specversion":`, decodeErr: true},
		{name: "trailing data", in: `{} {}`, decodeErr: true},
		{name: "number out of float64 range", in: `{"data":{"users_delta":1e400}}`, decodeErr: true},
		{name: "an array", in: `[]`, field: "(root)", rule: "must be an object"},
		{name: "null", in: `null`, field: "(root)", rule: "must be an object"},
		{name: "oversized", in: `{"x":"` + strings.Repeat("a", event.MaxEventBytes) + `"}`, field: "event", rule: "oversized"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := schemas.ValidateEvent([]byte(tc.in))
			if tc.decodeErr {
				var d *event.DecodeError
				if !errors.As(err, &d) {
					t.Fatalf("got %v (%T), want a DecodeError", err, err)
				}
				return
			}
			wantErr(t, err, tc.field, tc.rule)
		})
	}
}

// payloadCase mutates one field of the valid payload of typ.
type payloadCase struct {
	typ         event.Type
	name        string
	path        string // a key of data
	value       any    // drop deletes it
	field, rule string // field relative to data; "" for valid
}

var payloadCases = []payloadCase{
	// signal.adoption.v1
	{event.TypeAdoption, "negative users", "users_delta", -5e8, "", ""},
	{event.TypeAdoption, "zero users", "users_delta", 0, "", ""},
	{event.TypeAdoption, "users at the bound", "users_delta", -1e21, "", ""},
	{event.TypeAdoption, "users past the bound", "users_delta", 2e21, "users_delta", "must be <= 1e+21"},
	{event.TypeAdoption, "users past the negative bound", "users_delta", -2e21, "users_delta", "must be >= -1e+21"},
	{event.TypeAdoption, "users missing", "users_delta", drop, "users_delta", "required"},
	{event.TypeAdoption, "users a string", "users_delta", "5", "users_delta", "must be a number"},
	{event.TypeAdoption, "app missing", "app", drop, "app", "required"},
	{event.TypeAdoption, "app empty", "app", "", "app", "must not be empty"},
	{event.TypeAdoption, "app 128 characters", "app", strings.Repeat("a", 128), "", ""},
	{event.TypeAdoption, "app 129 characters", "app", strings.Repeat("a", 129), "app", "at most 128 characters"},
	{event.TypeAdoption, "category missing", "category", drop, "category", "required"},
	{event.TypeAdoption, "region missing", "region", drop, "region", "required"},
	{event.TypeAdoption, "region with a dot", "region", "u.s", "region", "must match"},
	{event.TypeAdoption, "requests zero", "requests_per_user_day", 0, "requests_per_user_day", "must be > 0"},
	{event.TypeAdoption, "requests absent", "requests_per_user_day", drop, "", ""},
	{event.TypeAdoption, "tokens negative", "tokens_per_request", -1, "tokens_per_request", "must be > 0"},
	{event.TypeAdoption, "model absent", "model", drop, "", ""},
	{event.TypeAdoption, "model a number", "model", 3, "model", "must be a string"},
	{event.TypeAdoption, "unknown field", "users", 5, "users", "unknown key"},
	// signal.release.v1
	{event.TypeRelease, "dense model", "params_active", 6.71e11, "", ""},
	{event.TypeRelease, "open_weights missing", "open_weights", drop, "open_weights", "required"},
	{event.TypeRelease, "open_weights a string", "open_weights", "true", "open_weights", "must be a boolean"},
	{event.TypeRelease, "reasoning missing", "reasoning", drop, "reasoning", "required"},
	{event.TypeRelease, "params_total zero", "params_total", 0, "params_total", "must be > 0"},
	{event.TypeRelease, "params_active missing", "params_active", drop, "params_active", "required"},
	{event.TypeRelease, "params_active negative", "params_active", -1, "params_active", "must be > 0"},
	{event.TypeRelease, "expected tokens zero", "expected_tokens_per_day", 0, "", ""},
	{event.TypeRelease, "expected tokens negative", "expected_tokens_per_day", -1, "expected_tokens_per_day", "must be >= 0"},
	{event.TypeRelease, "finetunes negative", "derivative_finetunes", -1, "derivative_finetunes", "must be >= 0"},
	{event.TypeRelease, "model missing", "model", drop, "model", "required"},
	// demand.model.v1
	{event.TypeDemandModel, "negative tokens", "tokens_per_day", -1e9, "", ""},
	{event.TypeDemandModel, "tokens missing", "tokens_per_day", drop, "tokens_per_day", "required"},
	{event.TypeDemandModel, "params_active zero", "params_active", 0, "params_active", "must be > 0"},
	{event.TypeDemandModel, "reasoning a number", "reasoning", 1, "reasoning", "must be a boolean"},
	{event.TypeDemandModel, "model missing", "model", drop, "model", "required"},
	// demand.infrastructure.v1
	{event.TypeDemandInfrastructure, "training", "workload", "training", "", ""},
	{event.TypeDemandInfrastructure, "workload missing", "workload", drop, "workload", "required"},
	{event.TypeDemandInfrastructure, "workload unknown", "workload", "serving", "workload", "must be one of"},
	{event.TypeDemandInfrastructure, "flop huge", "flop_per_s", 1.5e21, "flop_per_s", "must be <= 1e+21"},
	{event.TypeDemandInfrastructure, "flop negative", "flop_per_s", -1e15, "", ""},
	// demand.chips.v1
	{event.TypeDemandChips, "negative units", "units", -3, "", ""},
	{event.TypeDemandChips, "units missing", "units", drop, "units", "required"},
	{event.TypeDemandChips, "accelerator missing", "accelerator", drop, "accelerator", "required"},
	{event.TypeDemandChips, "hbm absent", "hbm_gb", drop, "", ""},
	{event.TypeDemandChips, "hbm negative", "hbm_gb", -80, "", ""},
	{event.TypeDemandChips, "workload absent", "workload", drop, "", ""},
	{event.TypeDemandChips, "workload unknown", "workload", "x", "workload", "must be one of"},
	// demand.energy.v1
	{event.TypeDemandEnergy, "it_mw missing", "it_mw", drop, "it_mw", "required"},
	{event.TypeDemandEnergy, "facility_mw missing", "facility_mw", drop, "facility_mw", "required"},
	{event.TypeDemandEnergy, "facility_mw a bool", "facility_mw", true, "facility_mw", "must be a number"},
	// demand.grid.v1
	{event.TypeDemandGrid, "avg_mw missing", "avg_mw", drop, "avg_mw", "required"},
	{event.TypeDemandGrid, "generation_mw missing", "generation_mw", drop, "generation_mw", "required"},
	{event.TypeDemandGrid, "twh missing", "twh_per_year", drop, "twh_per_year", "required"},
	{event.TypeDemandGrid, "co2 missing", "co2_t_per_year", drop, "co2_t_per_year", "required"},
	{event.TypeDemandGrid, "co2 negative", "co2_t_per_year", -3214, "", ""},
	{event.TypeDemandGrid, "region in data misspelt", "regoin", "us", "regoin", "unknown key"},
}

// TestPayloadSchemas runs each case against the payload schema directly and inside an event,
// which must report the same field under data.
func TestPayloadSchemas(t *testing.T) {
	for _, typ := range event.Types {
		t.Run(typ.Short()+"/valid", func(t *testing.T) {
			ev := valid(t, typ)
			wantErr(t, schemas.Validate(typ.Short()+".json", ev["data"]), "", "")
			wantErr(t, schemas.ValidateEvent(mustJSON(t, ev)), "", "")
		})
	}
	for _, tc := range payloadCases {
		t.Run(tc.typ.Short()+"/"+tc.name, func(t *testing.T) {
			ev := with(t, valid(t, tc.typ), "data."+tc.path, tc.value)
			wantErr(t, schemas.Validate(tc.typ.Short()+".json", ev["data"]), tc.field, tc.rule)
			field := ""
			if tc.field != "" {
				field = "data." + tc.field
			}
			wantErr(t, schemas.ValidateEvent(mustJSON(t, ev)), field, tc.rule)
		})
	}
}

// TestFirstErrorIsStable: with many errors, the one reported does not depend on map order.
func TestFirstErrorIsStable(t *testing.T) {
	body := []byte(`{"specversion":"1.0","id":"a","source":"/x","type":"cascade.demand.grid.v1","subject":"us",
		"time":"2025-01-01T00:00:00Z","data":{"region":"US","avg_mw":"x","generation_mw":2e22,"zz":1,"aa":2}}`)
	first := schemas.ValidateEvent(body)
	wantErr(t, first, "data.aa", "unknown key")
	for range 50 {
		if err := schemas.ValidateEvent(body); err.Error() != first.Error() {
			t.Fatalf("got %v, then %v", first, err)
		}
	}
}

func TestValidateCoefficients(t *testing.T) {
	doc := func() map[string]any {
		var m map[string]any
		err := json.Unmarshal([]byte(`{
		  "version": "test-1",
		  "applications": {"default_category": "chat", "categories": {"chat": {"requests_per_user_day": 3.6, "tokens_per_request": 1000, "model": "m"}}},
		  "models": {"default_model": "m", "flop_per_param_token": 2, "reasoning_token_multiplier": 4,
		    "catalog": {"m": {"params_active": 1e9, "params_total": 2e9, "reasoning": false}},
		    "release": {"expected_tokens_per_day": {"open": 1, "closed": 2}, "derivative_finetunes": {"open": 1, "closed": 0},
		      "finetune_tokens": 1e9, "finetune_flop_per_param_token": 6, "finetune_window_days": 90}},
		  "infrastructure": {"utilization": {"inference": 0.15, "training": 0.4, "finetune": 0.3},
		    "fleet": {"default": {"h100": 1}, "regions": {"cn": {"h800": 1}}}, "pue": {"default": 1.2}},
		  "chips": {"accelerators": {"h100": {"peak_flop_per_s": 9.89e14, "system_kw": 1.275, "hbm_gb": 80}}},
		  "energy": {"load_factor": 0.7, "reserve_margin": 0.15, "grid_intensity_g_per_kwh": {"default": 445, "regions": {"us": 367}}},
		  "sources": {"energy.load_factor": "assumption: test"}
		}`), &m)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		name        string
		in          map[string]any
		field, rule string
	}{
		{"valid", doc(), "", ""},
		{"without sources and regions", with(t, with(t, doc(), "sources", drop), "infrastructure.fleet.regions", drop), "", ""},
		{"misspelt key", with(t, doc(), "models.catalog.m.params_activ", 1e9), "models.catalog.m.params_activ", "unknown key"},
		{"unknown top-level key", with(t, doc(), "extra", 1), "extra", "unknown key"},
		{"missing key", with(t, doc(), "infrastructure.pue.default", drop), "infrastructure.pue.default", "required"},
		{"missing section", with(t, doc(), "energy", drop), "energy", "required"},
		{"wrong type", with(t, doc(), "energy.load_factor", "0.7"), "energy.load_factor", "must be a number"},
		{"version a number", with(t, doc(), "version", 2026.11), "version", "must be a string"},
		{"version with a plus", with(t, doc(), "version", "a+b"), "version", "must match"},
		{"reasoning a string", with(t, doc(), "models.catalog.m.reasoning", "no"), "models.catalog.m.reasoning", "must be a boolean"},
		{"utilization above 1", with(t, doc(), "infrastructure.utilization.training", 1.5), "infrastructure.utilization.training", "must be <= 1"},
		{"utilization zero", with(t, doc(), "infrastructure.utilization.inference", 0), "infrastructure.utilization.inference", "must be > 0"},
		{"pue below 1", with(t, doc(), "infrastructure.pue.default", 0.9), "infrastructure.pue.default", "must be >= 1"},
		{"negative share", with(t, doc(), "infrastructure.fleet.default.h100", -1), "infrastructure.fleet.default.h100", "must be >= 0"},
		{"empty mix", with(t, doc(), "infrastructure.fleet.default", map[string]any{}), "infrastructure.fleet.default", "at least 1"},
		{"bad accelerator name", with(t, doc(), "chips.accelerators.H100", map[string]any{"peak_flop_per_s": 1, "system_kw": 1, "hbm_gb": 1}), "chips.accelerators.H100", "key must match"},
		{"bad region name", with(t, doc(), "energy.grid_intensity_g_per_kwh.regions.U S", 1), "energy.grid_intensity_g_per_kwh.regions.U S", "key must match"},
		{"source not a string", with(t, doc(), "sources", map[string]any{"energy.load_factor": 1}), "sources.energy.load_factor", "must be a string"},
		{"several errors: the first field in order", map[string]any{"version": []any{}}, "applications", "required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, schemas.Validate(schemas.Coefficients, tc.in), tc.field, tc.rule)
		})
	}
}

func TestValidateTotals(t *testing.T) {
	const ok = `{"scenario":"base","vs":"high","since":"2025-01-01T00:00:00Z","until":null,"by":"region","rows":[
	  {"layer":"chips","region":"us","key":"h100","quantities":[{"name":"units","unit":"accelerators","value":10,"vs":12,"diff":-2}]},
	  {"layer":"chips","key":"injected:h100","events":1,"quantities":[{"name":"units","unit":"accelerators","value":1}]}]}`
	doc := func() map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(ok), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	row := func(m map[string]any) map[string]any { return m["rows"].([]any)[0].(map[string]any) }
	quantity := func(m map[string]any) map[string]any { return row(m)["quantities"].([]any)[0].(map[string]any) }
	tests := []struct {
		name        string
		in          func() map[string]any
		field, rule string
	}{
		{"valid", doc, "", ""},
		{"no vs, no by", func() map[string]any { m := doc(); delete(m, "vs"); delete(m, "by"); return m }, "", ""},
		{"by unknown", func() map[string]any { m := doc(); m["by"] = "model"; return m }, "by", "must be one of"},
		{"since missing", func() map[string]any { m := doc(); delete(m, "since"); return m }, "since", "required"},
		{"since not a time", func() map[string]any { m := doc(); m["since"] = "soon"; return m }, "since", "date-time"},
		{"unknown layer", func() map[string]any { m := doc(); row(m)["layer"] = "moon"; return m }, "rows.0.layer", "must be one of"},
		{"events fractional", func() map[string]any { m := doc(); row(m)["events"] = 1.5; return m }, "rows.0.events", "must be an integer"},
		{"quantity not a number", func() map[string]any { m := doc(); quantity(m)["value"] = "10"; return m }, "rows.0.quantities.0.value", "must be a number"},
		{"quantity without unit", func() map[string]any { m := doc(); delete(quantity(m), "unit"); return m }, "rows.0.quantities.0.unit", "required"},
		{"unknown row key", func() map[string]any { m := doc(); row(m)["total"] = 1; return m }, "rows.0.total", "unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, schemas.Validate(schemas.Totals, tc.in()), tc.field, tc.rule)
		})
	}
}

// TestPropertyNamesPlacement holds the assumption schemas.go makes to locate a refused key:
// propertyNames appears only at a file's root or at the root of a $defs entry.
func TestPropertyNamesPlacement(t *testing.T) {
	var walk func(file, ptr string, v any)
	walk = func(file, ptr string, v any) {
		switch v := v.(type) {
		case map[string]any:
			defsRoot := strings.HasPrefix(ptr, "/$defs/") && strings.Count(ptr, "/") == 2
			if _, ok := v["propertyNames"]; ok && ptr != "" && !defsRoot {
				t.Errorf("%s#%s: propertyNames below a $defs root; move the object into $defs and $ref it", file, ptr)
			}
			for k, x := range v {
				walk(file, ptr+"/"+k, x)
			}
		case []any:
			for _, x := range v {
				walk(file, ptr+"/[]", x)
			}
		}
	}
	for _, name := range schemas.Files() {
		b, err := schemas.FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		walk(name, "", doc)
	}
}
