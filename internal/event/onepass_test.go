package event

import (
	"reflect"
	"strings"
	"testing"
)

// onePassBodies are pipeline events as cascade writes them: the one-pass path takes them all.
var onePassBodies = []string{
	`{"specversion":"1.0","id":"sig-0001","source":"/producers/appstore","type":"cascade.signal.adoption.v1","subject":"eu-west","time":"2025-01-20T12:00:00Z","datacontenttype":"application/json","dataschema":"https://github.com/layercake/cascade/schemas/signal.adoption.v1.json","scenario":"base","data":{"app":"chatapp","category":"chat","region":"eu-west","users_delta":125000,"requests_per_user_day":4.5}}`,
	`{"specversion":"1.0","id":"demand.chips-0123456789abcdef0123456789abcdef","source":"/cascade/consumers/infrastructure","type":"cascade.demand.chips.v1","subject":"eu-west","time":"2025-01-20T12:00:00.123456789Z","datacontenttype":"application/json","dataschema":"https://github.com/layercake/cascade/schemas/demand.chips.v1.json","scenario":"base","causationid":"demand.infrastructure-0123456789abcdef0123456789abcdef","correlationid":"sig-0001","coefversion":"2025.1+0000abcd","data":{"region":"eu-west","accelerator":"h100","units":0.0032552083333333335,"hbm_gb":0.2604166666666667,"workload":"inference"}}`,
	" {\n \"specversion\" : \"1.0\", \"id\":\"s\\u0031\",\"source\":\"/me\",\"type\":\"cascade.demand.grid.v1\",\"time\":\"2025-01-20T12:00:00+02:00\",\"data\" : {\"region\":\"us\",\"avg_mw\":1,\"generation_mw\":2,\"twh_per_year\":3,\"co2_t_per_year\":4} } \n",
}

// The one-pass decoder gives exactly what the two-pass one gives, event, payload and error,
// whatever the body; where it cannot (extensions, other key cases, repeated keys, data
// before type, bad data) it steps aside and the two-pass path answers.
func TestOnePassDecodesAsTwoPass(t *testing.T) {
	t.Parallel()
	chips := onePassBodies[1]
	variants := []string{
		strings.Replace(chips, `"scenario":"base"`, `"scenario":"base","ext":{"type":"x"}`, 1),                                                                              // an extension
		strings.Replace(chips, `"id":`, `"ID":`, 1),                                                                                                                         // another case
		strings.Replace(chips, `"subject":"eu-west"`, `"subject":"eu-west","subject":"us"`, 1),                                                                              // repeated key
		strings.Replace(chips, `"scenario":"base"`, `"scenario":"base","data":{"region":"x"}`, 1),                                                                           // repeated data
		`{"data":{"region":"us","model":"m","tokens_per_day":1},"specversion":"1.0","id":"a","source":"/s","type":"cascade.demand.model.v1","time":"2025-01-20T12:00:00Z"}`, // data first
		strings.Replace(chips, `"units":`, `"unit":`, 1),                                                                                                                    // unknown data field
		strings.Replace(chips, `"units":0.0032552083333333335`, `"units":"x"`, 1),                                                                                           // wrong data type
		strings.Replace(chips, `,"hbm_gb":0.2604166666666667`, ``, 1),                                                                                                       // optional field absent
		strings.Replace(chips, `"units":0.0032552083333333335,`, ``, 1),                                                                                                     // required number absent
		strings.Replace(chips, `"data":{`, `"data":null,"x":{`, 1),                                                                                                          // null data
		strings.Replace(chips, `"scenario":"base"`, `"scenario":null`, 1),                                                                                                   // null attribute
		strings.Replace(chips, `"subject":"eu-west"`, `"subject":"us"`, 1),                                                                                                  // subject differs from region
		strings.Replace(chips, `,"subject":"eu-west"`, ``, 1),                                                                                                               // no subject
		strings.Replace(chips, `"time":"2025-01-20T12:00:00.123456789Z"`, `"time":"2025-01-20T12:00:00,5Z"`, 1),                                                             // comma fraction
		strings.Replace(chips, `"time":"2025-01-20T12:00:00.123456789Z"`, `"time":12`, 1),
		strings.Replace(chips, `"type":"cascade.demand.chips.v1"`, `"type":"cascade.demand.nope.v1"`, 1),
		strings.Replace(chips, `"specversion":"1.0"`, `"specversion":"0.3"`, 1),
		strings.Replace(chips, `"id":"demand.chips-`, `"id":"a\u0001`, 1),
		strings.Replace(chips, `"source":"/cascade/consumers/infrastructure"`, `"source":"/cascade/consumers/infrastructure\"x"`, 1),
		strings.Replace(chips, `,"data":{`, `,"data":{,`, 1),
		chips[:len(chips)-1], // unterminated
		chips + `x`,          // trailing garbage
		strings.Replace(chips, `"coefversion":"2025.1+0000abcd",`, `"coefversion":"2025.1+0000abcd",,`, 1),
		strings.TrimSuffix(chips, `}`) + `,}`, // trailing comma
		`{}`, `[]`, `null`, ``, `{"type":"cascade.demand.chips.v1"}`,
	}
	for i, body := range append(append([]string(nil), onePassBodies...), variants...) {
		e1, p1, err1 := decode([]byte(body), true)
		e2, p2, err2 := decode([]byte(body), false)
		if !reflect.DeepEqual(e1, e2) || !reflect.DeepEqual(p1, p2) || (err1 == nil) != (err2 == nil) || err1 != nil && err1.Error() != err2.Error() {
			t.Errorf("body %d decodes differently:\none pass: %+v %+v %v\ntwo pass: %+v %+v %v\n%s", i, e1, p1, err1, e2, p2, err2, body)
		}
		if i < len(onePassBodies) {
			var e Event
			if _, ok := decodeOnePass([]byte(body), &e); !ok || err1 != nil {
				t.Errorf("body %d: the one-pass path did not take it (%v)", i, err1)
			}
		}
	}
}

// BenchmarkDecodePaths compares the one-pass decoder with the two-pass one on a signal and a
// derived event.
func BenchmarkDecodePaths(b *testing.B) {
	for _, c := range []struct {
		name string
		body []byte
	}{{"adoption", []byte(onePassBodies[0])}, {"chips", []byte(onePassBodies[1])}} {
		for _, path := range []struct {
			name    string
			onePass bool
		}{{"two-pass", false}, {"one-pass", true}} {
			b.Run(c.name+"/"+path.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(c.body)))
				for b.Loop() {
					if _, _, err := decode(c.body, path.onePass); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
