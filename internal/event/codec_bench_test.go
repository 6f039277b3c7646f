package event_test

import (
	"testing"
	"time"

	"github.com/layercake/cascade/internal/event"
)

func fp(v float64) *float64 { return &v }

// benchBodies are typical wire bodies, one per event type the pipeline decodes.
var benchBodies = []struct {
	name string
	body string
}{
	{"adoption", `{"specversion":"1.0","id":"sig-0001","source":"/producers/appstore","type":"cascade.signal.adoption.v1","subject":"eu-west","time":"2025-01-20T12:00:00Z","datacontenttype":"application/json","dataschema":"https://github.com/layercake/cascade/schemas/signal.adoption.v1.json","scenario":"base","data":{"app":"chatapp","category":"chat","region":"eu-west","users_delta":125000,"requests_per_user_day":4.5}}`},
	{"model", `{"specversion":"1.0","id":"demand.model-0123456789abcdef0123456789abcdef","source":"/cascade/consumers/application","type":"cascade.demand.model.v1","subject":"eu-west","time":"2025-01-20T12:00:00Z","datacontenttype":"application/json","dataschema":"https://github.com/layercake/cascade/schemas/demand.model.v1.json","scenario":"base","causationid":"sig-0001","correlationid":"sig-0001","coefversion":"2025.1+0000abcd","data":{"region":"eu-west","model":"m1","tokens_per_day":281250000}}`},
	{"infrastructure", `{"specversion":"1.0","id":"demand.infrastructure-0123456789abcdef0123456789abcdef","source":"/cascade/consumers/model","type":"cascade.demand.infrastructure.v1","subject":"eu-west","time":"2025-01-20T12:00:00Z","datacontenttype":"application/json","dataschema":"https://github.com/layercake/cascade/schemas/demand.infrastructure.v1.json","scenario":"base","causationid":"demand.model-0123456789abcdef0123456789abcdef","correlationid":"sig-0001","coefversion":"2025.1+0000abcd","data":{"region":"eu-west","workload":"inference","flop_per_s":6510416666.666667}}`},
	{"chips", `{"specversion":"1.0","id":"demand.chips-0123456789abcdef0123456789abcdef","source":"/cascade/consumers/infrastructure","type":"cascade.demand.chips.v1","subject":"eu-west","time":"2025-01-20T12:00:00Z","datacontenttype":"application/json","dataschema":"https://github.com/layercake/cascade/schemas/demand.chips.v1.json","scenario":"base","causationid":"demand.infrastructure-0123456789abcdef0123456789abcdef","correlationid":"sig-0001","coefversion":"2025.1+0000abcd","data":{"region":"eu-west","accelerator":"h100","units":0.0032552083333333335,"hbm_gb":0.2604166666666667,"workload":"inference"}}`},
	{"energy", `{"specversion":"1.0","id":"demand.energy-0123456789abcdef0123456789abcdef","source":"/cascade/consumers/chips","type":"cascade.demand.energy.v1","subject":"eu-west","time":"2025-01-20T12:00:00Z","datacontenttype":"application/json","dataschema":"https://github.com/layercake/cascade/schemas/demand.energy.v1.json","scenario":"base","causationid":"demand.chips-0123456789abcdef0123456789abcdef","correlationid":"sig-0001","coefversion":"2025.1+0000abcd","data":{"region":"eu-west","it_mw":0.000032552083333333335,"facility_mw":0.000039062500000000004,"workload":"inference"}}`},
	{"grid", `{"specversion":"1.0","id":"demand.grid-0123456789abcdef0123456789abcdef","source":"/cascade/consumers/energy","type":"cascade.demand.grid.v1","subject":"eu-west","time":"2025-01-20T12:00:00Z","datacontenttype":"application/json","dataschema":"https://github.com/layercake/cascade/schemas/demand.grid.v1.json","scenario":"base","causationid":"demand.energy-0123456789abcdef0123456789abcdef","correlationid":"sig-0001","coefversion":"2025.1+0000abcd","data":{"region":"eu-west","avg_mw":0.000019531250000000002,"generation_mw":0.000046875000000000004,"twh_per_year":1.7109375e-7,"co2_t_per_year":0.06843750000000001,"workload":"inference"}}`},
}

// BenchmarkDecode decodes and validates a typical event of each type as read from a broker.
func BenchmarkDecode(b *testing.B) {
	for _, bb := range benchBodies {
		body := []byte(bb.body)
		if _, _, err := event.Decode(body); err != nil {
			b.Fatalf("%s: %v", bb.name, err)
		}
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, _, err := event.Decode(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMarshal encodes a derived event (the chips output of an infrastructure event).
func BenchmarkMarshal(b *testing.B) {
	parent := &event.Event{ID: "demand.infrastructure-0123456789abcdef0123456789abcdef", Scenario: "base", CorrelationID: "sig-0001"}
	p := &event.DemandChips{Region: "eu-west", Accelerator: "h100", Units: 0.0032552083333333335, HBMGB: fp(0.2604166666666667), Workload: event.Inference}
	ev, err := event.New(parent, event.Infrastructure, "h100", time.Date(2025, 1, 20, 12, 0, 0, 0, time.UTC), "2025.1+0000abcd", p)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("chips", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ev.Marshal(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("new+marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ev, err := event.New(parent, event.Infrastructure, "h100", time.Date(2025, 1, 20, 12, 0, 0, 0, time.UTC), "2025.1+0000abcd", p)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ev.Marshal(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
