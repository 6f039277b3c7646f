package schemas_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/layercake/cascade/internal/event"
)

// drop as a value given to with deletes the key.
var drop = &struct{ drop bool }{true}

// payloads are valid data of each type, every optional field present.
var payloads = map[event.Type]string{
	event.TypeAdoption:             `{"app":"chatgpt","category":"chat","region":"us","users_delta":1000000,"requests_per_user_day":3.6,"tokens_per_request":1000,"model":"frontier-moe"}`,
	event.TypeRelease:              `{"model":"deepseek-r1","region":"us","open_weights":true,"params_total":6.71e11,"params_active":3.7e10,"reasoning":true,"expected_tokens_per_day":8e11,"derivative_finetunes":100}`,
	event.TypeDemandModel:          `{"region":"us","model":"frontier-moe","tokens_per_day":1e9,"params_active":3.7e10,"reasoning":false}`,
	event.TypeDemandInfrastructure: `{"region":"us","workload":"inference","flop_per_s":1e15}`,
	event.TypeDemandChips:          `{"region":"us","accelerator":"h100","units":10,"hbm_gb":800,"workload":"inference"}`,
	event.TypeDemandEnergy:         `{"region":"us","it_mw":1.2,"facility_mw":1.44,"workload":"training"}`,
	event.TypeDemandGrid:           `{"region":"us","avg_mw":1,"generation_mw":1.15,"twh_per_year":0.00876,"co2_t_per_year":3214,"workload":"finetune"}`,
}

// valid is a valid event of type t carrying payloads[t], every optional attribute present.
func valid(t testing.TB, typ event.Type) map[string]any {
	t.Helper()
	var data map[string]any
	if err := json.Unmarshal([]byte(payloads[typ]), &data); err != nil {
		t.Fatal(err)
	}
	return map[string]any{
		"specversion":     "1.0",
		"id":              "sig-1",
		"source":          "/producers/test",
		"type":            string(typ),
		"subject":         "us",
		"time":            "2025-01-27T00:00:00Z",
		"datacontenttype": "application/json",
		"dataschema":      typ.DataSchema(),
		"scenario":        "base",
		"causationid":     "sig-0",
		"correlationid":   "sig-0",
		"coefversion":     "default-2026.11+0123abcd",
		"sourceurl":       "https://example.com/report",
		"data":            data,
	}
}

// with returns a deep copy of doc with the value at a dotted path set (or deleted by drop).
func with(t testing.TB, doc map[string]any, path string, v any) map[string]any {
	t.Helper()
	var cp map[string]any
	if err := json.Unmarshal(mustJSON(t, doc), &cp); err != nil {
		t.Fatal(err)
	}
	keys := strings.Split(path, ".")
	m := cp
	for _, k := range keys[:len(keys)-1] {
		m = m[k].(map[string]any)
	}
	if v == drop {
		delete(m, keys[len(keys)-1])
	} else {
		m[keys[len(keys)-1]] = v
	}
	return cp
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
