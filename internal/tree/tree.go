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

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/coefficients"
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
	outs, err := consumers.Derive(ctx, c, ev, p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ev.ID, err)
	}
	for _, o := range outs {
		op, err := event.DecodePayload(o.Type, o.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.ID, err)
		}
		child, err := Expand(ctx, c, o, op)
		if err != nil {
			return nil, err
		}
		n.Children = append(n.Children, child)
	}
	return n, nil
}

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
		b.WriteString(Number(q.Value))
		b.WriteString(" ")
		b.WriteString(q.Unit)
	}
	b.WriteString("  @")
	b.WriteString(ev.Time.UTC().Format("2006-01-02T15:04:05Z"))
	b.WriteString("  ")
	b.WriteString(ev.ID)
	return b.String()
}

// Number formats a quantity with 4 significant digits, in exponent form when very large or small.
func Number(v float64) string {
	a := math.Abs(v)
	if a != 0 && (a >= 1e6 || a < 1e-3) {
		return strconv.FormatFloat(v, 'e', 3, 64)
	}
	decimals := 0
	if a != 0 {
		decimals = max(0, 3-int(math.Floor(math.Log10(a))))
	}
	return strconv.FormatFloat(v, 'f', decimals, 64)
}
