// Package tree holds provenance trees: a signal and the demand it caused through the layers,
// built either by applying the transforms (calc) or from stored events (trace), and rendered
// for people or as JSON.
package tree

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/demand"
	"github.com/layercake/cascade/internal/event"
)

// Node is one event and the events it caused.
type Node struct {
	Event    *event.Event
	Payload  event.Payload
	Children []*Node
}

// MarshalJSON writes the event, what it is about, its quantities with units and its children.
func (n *Node) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Event      *event.Event     `json:"event"`
		Label      string           `json:"label"`
		Quantities []event.Quantity `json:"quantities"`
		Children   []*Node          `json:"children,omitempty"`
	}{n.Event, event.Label(n.Payload), event.Quantities(n.Payload), n.Children})
}

// UnmarshalJSON reads what MarshalJSON wrote, decoding each event's payload.
func (n *Node) UnmarshalJSON(b []byte) error {
	var w struct {
		Event    *event.Event `json:"event"`
		Children []*Node      `json:"children"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	if w.Event == nil {
		return fmt.Errorf("%w: tree node without an event", event.ErrInvalid)
	}
	p, err := event.DecodePayload(w.Event.Type, w.Event.Data)
	if err != nil {
		return err
	}
	n.Event, n.Payload, n.Children = w.Event, p, w.Children
	return nil
}

// Expand builds the whole tree below a signal by applying the transforms, down to the grid.
func Expand(ctx context.Context, c *coefficients.Loaded, ev *event.Event, p event.Payload) (*Node, error) {
	n := &Node{Event: ev, Payload: p}
	if event.InputLayer(ev.Type) == "" {
		return n, nil
	}
	outs, err := demand.DeriveTyped(ctx, c, ev, p)
	if err != nil {
		return nil, &ExpandError{Layer: event.InputLayer(ev.Type), ID: ev.ID, Err: err}
	}
	for _, o := range outs {
		child, err := Expand(ctx, c, o.Event, o.Payload)
		if err != nil {
			return nil, err
		}
		n.Children = append(n.Children, child)
	}
	return n, nil
}

// ExpandError is a transform that failed while a tree was expanded: the layer whose transform
// it was and the event it was given.
type ExpandError struct {
	Layer event.Layer
	ID    string
	Err   error
}

func (e *ExpandError) Error() string {
	return fmt.Sprintf("%s layer, event %s: %v", e.Layer, e.ID, e.Err)
}

// Unwrap returns the transform's error.
func (e *ExpandError) Unwrap() error { return e.Err }

// Render writes the tree, one event per line, with quantities and units.
func Render(w io.Writer, n *Node) error {
	return render(w, n, "", "")
}

func render(w io.Writer, n *Node, first, rest string) error {
	if _, err := fmt.Fprintf(w, "%s%s\n", first, Line(n.Event, n.Payload)); err != nil {
		return err
	}
	for i, c := range n.Children {
		f, r := rest+"├─ ", rest+"│  "
		if i == len(n.Children)-1 {
			f, r = rest+"└─ ", rest+"   "
		}
		if err := render(w, c, f, r); err != nil {
			return err
		}
	}
	return nil
}

// Line describes one event: type, region, label, quantities, time and id.
func Line(ev *event.Event, p event.Payload) string {
	var b strings.Builder
	b.WriteString(ev.Type.Short())
	b.WriteString(" [")
	b.WriteString(ev.Subject)
	if l := strings.TrimSpace(event.Label(p)); l != "" {
		b.WriteString(" ")
		b.WriteString(l)
	}
	b.WriteString("] ")
	for i, q := range event.Quantities(p) {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(Quantity(q.Value, q.Unit))
	}
	b.WriteString("  @")
	b.WriteString(ev.Time.UTC().Format("2006-01-02T15:04:05Z"))
	b.WriteString("  ")
	b.WriteString(ev.ID)
	return b.String()
}

// prefixes are the SI prefixes Number uses, largest first.
var prefixes = []struct {
	factor float64
	symbol string
}{{1e24, "Y"}, {1e21, "Z"}, {1e18, "E"}, {1e15, "P"}, {1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}}

// Number formats a value for people as the web page does (num in web/app.js): three
// significant digits with an SI prefix (1.646e8 is "165 M", 1e21 "1.00 Z"), whole numbers
// below 1,000 as they are, a power of ten below 0.001 or from 1e27 ("3.94×10⁻⁴"), "0" for the
// rounding noise of sums that cancel (below 1e-12), and "—" for what is not a finite number.
// Negative values take a leading "-".
func Number(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	a := math.Abs(v)
	sign := ""
	if v < 0 {
		sign = "-"
	}
	switch {
	case a < 1e-12:
		return "0"
	case a >= 1e27:
		return sign + powerOfTen(a)
	}
	for _, p := range prefixes {
		if a >= p.factor*0.9995 {
			return sign + three(a/p.factor) + " " + p.symbol
		}
	}
	switch {
	case a == math.Trunc(a):
		return sign + strconv.FormatFloat(a, 'f', 0, 64)
	case a >= 1:
		return sign + three(a)
	case a >= 0.001:
		return sign + strconv.FormatFloat(a, 'g', 3, 64)
	}
	return sign + powerOfTen(a)
}

// Quantity is a value with its unit, as Number writes it: "165 M tokens/day".
func Quantity(v float64, unit string) string {
	if unit == "" {
		return Number(v)
	}
	return Number(v) + " " + unit
}

// three writes x (in [0.9995, 999.5)) with three significant digits.
func three(x float64) string {
	switch {
	case x >= 99.95:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case x >= 9.995:
		return strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

var superscript = strings.NewReplacer("-", "⁻", "+", "", "0", "⁰", "1", "¹", "2", "²", "3", "³", "4", "⁴", "5", "⁵", "6", "⁶", "7", "⁷", "8", "⁸", "9", "⁹")

// powerOfTen writes a as 3.94×10⁻⁴.
func powerOfTen(a float64) string {
	m, e, _ := strings.Cut(strconv.FormatFloat(a, 'e', 2, 64), "e")
	exp, _ := strconv.Atoi(e)
	return m + "×10" + superscript.Replace(strconv.Itoa(exp))
}
