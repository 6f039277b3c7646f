// Package event holds cascade's wire vocabulary: the CloudEvents envelope, the seven payloads,
// the layers and the subject names that route them. It imports no broker and no logger.
package event

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"
)

// SpecVersion is the CloudEvents version every envelope carries.
const SpecVersion = "1.0"

// ContentType is the datacontenttype of every envelope.
const ContentType = "application/json"

// SchemaBase prefixes a payload's dataschema URL.
const SchemaBase = "https://github.com/layercake/cascade/schemas/"

// Short is the type without its "cascade." prefix, as used in schema file names.
func (t Type) Short() string { return strings.TrimPrefix(string(t), "cascade.") }

// DataSchema is the dataschema URL of the type's payload (built once for the pipeline's
// types, which every derived event carries).
func (t Type) DataSchema() string {
	if s, ok := pipeline.schemas[t]; ok {
		return s
	}
	return dataSchema(t)
}

func dataSchema(t Type) string { return SchemaBase + t.Short() + ".json" }

// Known reports whether t is one of Types.
func (t Type) Known() bool {
	for _, k := range Types {
		if k == t {
			return true
		}
	}
	return false
}

// Event is one CloudEvent in structured JSON mode. Field order is the wire order, so
// marshalling the same Event always yields the same bytes.
type Event struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            Type            `json:"type"`
	Subject         string          `json:"subject"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	DataSchema      string          `json:"dataschema"`
	Scenario        string          `json:"scenario,omitempty"`
	CausationID     string          `json:"causationid,omitempty"`
	CorrelationID   string          `json:"correlationid,omitempty"`
	CoefVersion     string          `json:"coefversion,omitempty"`
	SourceURL       string          `json:"sourceurl,omitempty"`
	Data            json.RawMessage `json:"data"`
}

// Region is the region named by the event's subject attribute.
func (e *Event) Region() string { return e.Subject }

// DerivedID is the deterministic id of an output: a function of its parent's id, the layer
// that emits it and the output's key (workload, accelerator or finetune-end), never of a
// position, so re-processing a parent re-creates the same ids and the broker de-duplicates them.
func DerivedID(parentID string, emitter Layer, key string) string {
	var stack [2 * MaxIDBytes]byte // an id, a layer and a key fit here, so hashing allocates nothing
	in := append(stack[:0], parentID...)
	in = append(append(in, 0), emitter...)
	in = append(append(in, 0), key...)
	sum := sha256.Sum256(in)
	var hx [32]byte
	hex.Encode(hx[:], sum[:16])
	return string(emitter.Emits()) + "-" + string(hx[:])
}

// MayBeDerivedID says whether id has the form DerivedID gives: a layer that some layer emits
// to, a dash and 32 lowercase hex digits. An id without it is never a derived event's.
func MayBeDerivedID(id string) bool {
	const hexLen = 32
	dash := len(id) - hexLen - 1
	if dash < 1 || id[dash] != '-' {
		return false
	}
	for _, c := range []byte(id[dash+1:]) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	for _, l := range ConsumerLayers {
		if string(l.Emits()) == id[:dash] {
			return true
		}
	}
	return false
}
