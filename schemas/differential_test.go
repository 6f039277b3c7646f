package schemas_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/schemas"
)

// The contract keeps the schemas (source of truth) and the typed Go validators (event.Decode)
// equal. These are the disagreements allowed: two rules a JSON Schema cannot state, and the
// known gaps of the Go decoders, which TestDifferentialGaps pins so that a fix shows.
const (
	// Only Go refuses.
	gapParams   = "params_active > params_total: a schema cannot compare two fields"
	gapSubject  = "subject != data.region: a schema cannot compare two fields"
	gapZeroTime = "Go takes 0001-01-01T00:00:00Z for an absent time"
	gapBytes    = "Go counts a string's length in bytes, the schema in characters"
	// Only the schema refuses.
	gapNull     = "Go takes null for an absent member"
	gapEmpty    = "Go takes an empty string for an absent optional member"
	gapEnvelope = "Go does not check this envelope member (dataschema, causationid, correlationid, coefversion, sourceurl, extensions, source format)"
	gapCase     = "Go matches member names case-insensitively"
	gapLaxTime  = "Go's RFC 3339 parser is lenient (golang/go#54580)"
	// By design: CloudEvents' subject is optional, and an outside producer (kcat, an SDK) may
	// leave it out; the broker path takes data.region for it, as ingest fills it in before the
	// schema sees the event. The schema describes events as cascade stores them, subject set.
	gapNoSubject = "Go takes data.region for an absent subject"
)

// checkedByGo are the envelope members event.Decode reads and checks.
var checkedByGo = map[string]bool{"specversion": true, "id": true, "source": true, "type": true, "subject": true, "time": true, "datacontenttype": true, "scenario": true, "data": true}

var strictTime = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9](\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$`)

// judge runs body through both validators, checking the error types each promises.
func judge(t testing.TB, body []byte) (schemaErr, goErr error) {
	t.Helper()
	schemaErr = schemas.ValidateEvent(body)
	_, _, goErr = event.Decode(body)
	for _, err := range []error{schemaErr, goErr} {
		var d *event.DecodeError
		if err != nil && !errors.As(err, &d) && !errors.Is(err, event.ErrInvalid) {
			t.Fatalf("%s: error %v (%T) is neither a DecodeError nor ErrInvalid", body, err, err)
		}
	}
	return schemaErr, goErr
}

// explain names the allowed reason why exactly one of the validators refused body, or "".
func explain(body []byte, schemaErr, goErr error) string {
	var doc map[string]any
	if json.Unmarshal(body, &doc) != nil {
		var ute *json.UnmarshalTypeError
		if goErr == nil && errors.As(schemaErr, &ute) && strings.HasPrefix(ute.Value, "number") {
			return gapEnvelope // a number out of range in a member Go skips unread
		}
		return ""
	}
	var sv, gv *event.ValidationError
	errors.As(schemaErr, &sv)
	errors.As(goErr, &gv)
	switch {
	case schemaErr == nil && gv != nil:
		v, _ := lookup(doc, gv.Field)
		s, isString := v.(string)
		switch {
		case gv.Field == "data.params_active" && strings.HasPrefix(gv.Rule, "must be <= params_total"):
			return gapParams
		case gv.Field == "subject" && strings.Contains(gv.Rule, "differs from data.region"):
			return gapSubject
		case gv.Field == "time" && gv.Rule == "required" && isString:
			return gapZeroTime
		case isString && strings.HasPrefix(gv.Rule, "at most "):
			limit, _ := strconv.Atoi(strings.Fields(gv.Rule)[2])
			if utf8.RuneCountInString(s) <= limit {
				return gapBytes
			}
		}
	case goErr == nil && sv != nil:
		v, present := lookup(doc, sv.Field)
		path := strings.Split(sv.Field, ".")
		switch top := topKey(doc, sv.Field); {
		case present && v == nil:
			return gapNull
		case present && v == "":
			return gapEmpty
		case sv.Field == "subject" && sv.Rule == "required" && !present:
			return gapNoSubject
		case !checkedByGo[top]:
			return gapEnvelope
		case sv.Field == "source":
			return gapEnvelope // Go checks only that it is not empty
		case sv.Rule == "unknown key" && len(path) == 2 && path[0] == "data" && foldsToField(doc, path[1]):
			return gapCase
		case sv.Rule == "required" && hasFoldedTwin(doc, path):
			return gapCase
		case sv.Field == "time":
			if s, ok := v.(string); ok && !strictTime.MatchString(s) {
				return gapLaxTime
			}
		}
	}
	return ""
}

// lookup finds the value a dotted field names; keys may hold dots themselves.
func lookup(v any, field string) (any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	if x, ok := m[field]; ok {
		return x, true
	}
	for k, x := range m {
		if rest, ok := strings.CutPrefix(field, k+"."); ok {
			if y, ok := lookup(x, rest); ok {
				return y, true
			}
		}
	}
	return nil, false
}

// topKey is the envelope member a dotted field starts with.
func topKey(doc map[string]any, field string) string {
	top := strings.Split(field, ".")[0]
	for k := range doc {
		if (field == k || strings.HasPrefix(field, k+".")) && len(k) > len(top) {
			top = k
		}
	}
	return top
}

// foldsToField reports whether key equals, but for case, a field of the event's payload.
func foldsToField(doc map[string]any, key string) bool {
	typ, _ := doc["type"].(string)
	var fields map[string]any
	if json.Unmarshal([]byte(payloads[event.Type(typ)]), &fields) != nil {
		return false
	}
	for f := range fields {
		if f != key && strings.EqualFold(f, key) {
			return true
		}
	}
	return false
}

// hasFoldedTwin reports whether the object holding the missing key at path has a member
// equal to it but for case.
func hasFoldedTwin(doc map[string]any, path []string) bool {
	parent := map[string]any(doc)
	if len(path) > 1 {
		v, _ := lookup(doc, strings.Join(path[:len(path)-1], "."))
		parent, _ = v.(map[string]any)
	}
	for k := range parent {
		if strings.EqualFold(k, path[len(path)-1]) {
			return true
		}
	}
	return false
}

// agreement fails t unless both validators agree on body or explain allows the difference;
// it returns the allowance used ("" when they agree).
func agreement(t testing.TB, body []byte) string {
	t.Helper()
	schemaErr, goErr := judge(t, body)
	if (schemaErr == nil) == (goErr == nil) {
		return ""
	}
	gap := explain(body, schemaErr, goErr)
	if gap == "" {
		t.Fatalf("validators disagree on %s\nschema: %v\nGo:     %v", body, schemaErr, goErr)
	}
	return gap
}

// TestDifferentialTable: the schema cases of schemas_test.go, judged by both validators.
func TestDifferentialTable(t *testing.T) {
	for _, typ := range event.Types {
		if gap := agreement(t, mustJSON(t, valid(t, typ))); gap != "" {
			t.Errorf("%s: %s", typ, gap)
		}
	}
	for _, tc := range payloadCases {
		t.Run(tc.typ.Short()+"/"+tc.name, func(t *testing.T) {
			body := mustJSON(t, with(t, valid(t, tc.typ), "data."+tc.path, tc.value))
			schemaErr, goErr := judge(t, body)
			if (schemaErr == nil) != (goErr == nil) {
				t.Fatalf("schema: %v, Go: %v", schemaErr, goErr)
			}
			sameField(t, schemaErr, goErr)
		})
	}
}

// sameField: when both refuse with a ValidationError, they name the same field.
func sameField(t *testing.T, schemaErr, goErr error) {
	t.Helper()
	var sv, gv *event.ValidationError
	if errors.As(schemaErr, &sv) && errors.As(goErr, &gv) && sv.Field != gv.Field {
		t.Errorf("schema names %q (%v), Go names %q (%v)", sv.Field, sv, gv.Field, gv)
	}
}

// TestDifferentialGaps pins every allowed disagreement to an example, the first two by the
// contract's design, the others known gaps of event.Decode.
func TestDifferentialGaps(t *testing.T) {
	adoption, chips := valid(t, event.TypeAdoption), valid(t, event.TypeDemandChips)
	tests := []struct {
		name string
		in   map[string]any
		want string
	}{
		{"params_active > params_total", with(t, valid(t, event.TypeRelease), "data.params_active", 7e11), gapParams},
		{"subject differs from data.region", with(t, adoption, "subject", "eu"), gapSubject},
		{"no subject", with(t, adoption, "subject", drop), gapNoSubject},
		{"zero time", with(t, adoption, "time", "0001-01-01T00:00:00Z"), gapZeroTime},
		{"128 characters, 256 bytes", with(t, adoption, "data.app", strings.Repeat("é", 128)), gapBytes},
		{"id of 256 characters, 512 bytes", with(t, adoption, "id", strings.Repeat("é", 256)), gapBytes},
		{"null optional payload member", with(t, adoption, "data.model", nil), gapNull},
		{"null optional attribute", with(t, adoption, "scenario", nil), gapNull},
		{"empty optional workload", with(t, chips, "data.workload", ""), gapEmpty},
		{"empty datacontenttype", with(t, adoption, "datacontenttype", ""), gapEmpty},
		{"dataschema not a URI", with(t, adoption, "dataschema", "signal.adoption.v1.json"), gapEnvelope},
		{"sourceurl not a URI", with(t, adoption, "sourceurl", "example.com"), gapEnvelope},
		{"source not a URI reference", with(t, adoption, "source", "%zz"), gapEnvelope},
		{"causationid too long", with(t, adoption, "causationid", strings.Repeat("x", 257)), gapEnvelope},
		{"extension with an upper-case name", with(t, adoption, "traceParent", "x"), gapEnvelope},
		{"extension holding an object", with(t, adoption, "ext", map[string]any{}), gapEnvelope},
		{"attribute name in upper case", with(t, with(t, adoption, "id", drop), "ID", "x"), gapEnvelope},
		{"payload member in mixed case", with(t, with(t, adoption, "data.users_delta", drop), "data.Users_Delta", 5), gapCase},
		{"payload member twice, once in upper case", with(t, adoption, "data.APP", "x"), gapCase},
		{"one-digit hour", with(t, adoption, "time", "2025-01-01T1:00:00Z"), gapLaxTime},
		// encoding/json took the comma; segmentio/encoding's time parser refuses it, as RFC 3339 does.
		{"comma before the fraction", with(t, adoption, "time", "2025-01-01T10:00:00,5Z"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := agreement(t, mustJSON(t, tc.in)); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	body := `{"specversion":"1.0","id":"a","source":"/x","type":"cascade.demand.grid.v1","subject":"us","time":"2025-01-01T00:00:00Z",` +
		`"ext":1e400,"data":{"region":"us","avg_mw":1,"generation_mw":1,"twh_per_year":1,"co2_t_per_year":1}}`
	if got := agreement(t, []byte(body)); got != gapEnvelope {
		t.Fatalf("number out of range in an extension: got %q, want %q", got, gapEnvelope)
	}
}

// mutation changes one thing of an event document.
type mutation func(r *rand.Rand, doc map[string]any) string

var badRegions = []any{"US", "u_s", "-us", "u.s", strings.Repeat("a", 33), "", 7}

// optionalStrings are payload strings Go reads "" as absent (see gapEmpty).
var optionalStrings = map[string]bool{"model": true, "workload": true}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var dataMutations = []mutation{
	func(r *rand.Rand, d map[string]any) string { // drop a field
		k := pick(r, sortedKeys(d))
		delete(d, k)
		return "drop " + k
	},
	func(r *rand.Rand, d map[string]any) string { // wrong type
		k := pick(r, sortedKeys(d))
		switch d[k].(type) {
		case string:
			d[k] = pick(r, []any{7.0, true, []any{}, map[string]any{}})
		case float64:
			d[k] = pick(r, []any{"7", false, []any{1.0}, map[string]any{}})
		case bool:
			d[k] = pick(r, []any{"true", 1.0, []any{}})
		}
		return "retype " + k
	},
	func(r *rand.Rand, d map[string]any) string { // a number: negative, zero, huge, bound, tiny
		var nums []string
		for _, k := range sortedKeys(d) {
			if _, ok := d[k].(float64); ok {
				nums = append(nums, k)
			}
		}
		if len(nums) == 0 {
			return "no number"
		}
		k := pick(r, nums)
		d[k] = pick(r, []any{-1.0, -d[k].(float64), 0.0, 2e21, -2e21, 1e21, -1e21, 1e-300, -1e-300, 1.0000000000000002e21})
		return fmt.Sprintf("number %s=%v", k, d[k])
	},
	func(r *rand.Rand, d map[string]any) string { // a string: long, empty, bad region, bad workload
		var strs []string
		for _, k := range sortedKeys(d) {
			if _, ok := d[k].(string); ok {
				strs = append(strs, k)
			}
		}
		k := pick(r, strs)
		switch {
		case k == "region":
			d[k] = pick(r, badRegions)
		case k == "workload":
			d[k] = pick(r, []string{"serving", "Inference", "inference", "training", "finetune"})
		default:
			choices := []string{strings.Repeat("x", 128), strings.Repeat("x", 129), "a b/c?", "x"}
			if !optionalStrings[k] {
				choices = append(choices, "")
			}
			d[k] = pick(r, choices)
		}
		return fmt.Sprintf("string %s=%q", k, d[k])
	},
	func(r *rand.Rand, d map[string]any) string { // flip a boolean
		for _, k := range sortedKeys(d) {
			if b, ok := d[k].(bool); ok {
				d[k] = !b
				return "flip " + k
			}
		}
		return "no bool"
	},
	func(r *rand.Rand, d map[string]any) string { // an extra field
		d[pick(r, []string{"extra", "tokens", "region2"})] = 1.0
		return "extra field"
	},
	func(r *rand.Rand, d map[string]any) string { // params_active above params_total
		if total, ok := d["params_total"].(float64); ok {
			d["params_active"] = total * pick(r, []float64{1, 1.5, 2})
			return "params_active vs params_total"
		}
		return "no params"
	},
}

var envelopeMutations = []mutation{
	func(r *rand.Rand, e map[string]any) string {
		// subject stays: without one, Go takes data.region (gapNoSubject).
		k := pick(r, slices.DeleteFunc(sortedKeys(e), func(k string) bool { return k == "subject" }))
		delete(e, k)
		return "drop " + k
	},
	func(r *rand.Rand, e map[string]any) string {
		k := pick(r, []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "scenario", "data"})
		e[k] = pick(r, []any{7.0, true, []any{}, map[string]any{}})
		return "retype " + k
	},
	func(r *rand.Rand, e map[string]any) string {
		switch r.IntN(7) {
		case 0:
			e["specversion"] = pick(r, []string{"0.3", "1", "1.0 "})
		case 1:
			e["type"] = pick(r, append([]string{"cascade.signal.nope.v1", "signal.adoption.v1", ""}, typeNames()...))
		case 2:
			// "" aside: Go reads it as absent, taking data.region (gapEmpty).
			e["subject"] = pick(r, slices.DeleteFunc(slices.Clone(badRegions), func(v any) bool { return v == "" }))
		case 3:
			e["time"] = pick(r, []string{"yesterday", "2025-02-30T00:00:00Z", "2025-01-01T00:00:00", "2025-01-01 00:00:00Z", "2025-01-01T24:00:00Z", "2025-01-01T00:00:00+01:00", "2025-01-01T00:00:00.5Z"})
		case 4:
			e["datacontenttype"] = pick(r, []string{"text/plain", "application/json", "application/cloudevents+json", "application/json; charset=utf-8", "application/json;charset=UTF-8", "application/json; charset=utf-16"})
		case 5:
			e["scenario"] = pick(r, []string{"Base", "a_b", "high", strings.Repeat("s", 33)})
		default:
			values := []string{"", "x", strings.Repeat("i", 256), strings.Repeat("i", 257)}
			key := pick(r, []string{"id", "source"})
			if key == "id" {
				values = append(values, "collide\nx", "collide\rx", "collide\x7fx")
			}
			e[key] = pick(r, values)
		}
		return "envelope value"
	},
}

func typeNames() []string {
	var names []string
	for _, t := range event.Types {
		names = append(names, string(t))
	}
	return names
}

// variant is a valid event of a random type with one to three random mutations.
func variant(t testing.TB, r *rand.Rand) (body []byte, steps []string) {
	typ := pick(r, event.Types)
	var doc map[string]any
	if err := json.Unmarshal(mustJSON(t, valid(t, typ)), &doc); err != nil {
		t.Fatal(err)
	}
	for range 1 + r.IntN(3) {
		data, isObject := doc["data"].(map[string]any)
		if isObject && len(data) > 0 && r.IntN(10) < 7 {
			steps = append(steps, pick(r, dataMutations)(r, data))
		} else {
			steps = append(steps, pick(r, envelopeMutations)(r, doc))
		}
	}
	return mustJSON(t, doc), steps
}

// TestDifferentialRandom: seeded random variants of valid events. The mutator avoids the
// known gaps, so the one disagreement allowed is params_active > params_total, only Go
// refusing; with a single mutation, both name the same field.
func TestDifferentialRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(2026, 11))
	var accepted, refused, params int
	for i := range 4000 {
		body, steps := variant(t, r)
		schemaErr, goErr := judge(t, body)
		switch {
		case (schemaErr == nil) == (goErr == nil):
			if schemaErr == nil {
				accepted++
			} else {
				refused++
			}
			if len(steps) == 1 {
				sameField(t, schemaErr, goErr)
			}
		case explain(body, schemaErr, goErr) == gapParams:
			params++
		default:
			t.Fatalf("variant %d %v: schema: %v, Go: %v\n%s", i, steps, schemaErr, goErr, body)
		}
	}
	t.Logf("accepted by both %d, refused by both %d, refused by Go alone (params) %d", accepted, refused, params)
	if accepted < 200 || refused < 2000 || params < 10 {
		t.Errorf("mutator coverage too thin: accepted %d, refused %d, params %d", accepted, refused, params)
	}
}

func FuzzValidateEvent(f *testing.F) {
	for _, typ := range event.Types {
		f.Add(mustJSON(f, valid(f, typ)))
	}
	for _, tc := range payloadCases {
		f.Add(mustJSON(f, with(f, valid(f, tc.typ), "data."+tc.path, tc.value)))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		body, _ := variant(f, r)
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		agreement(t, body)
	})
}
