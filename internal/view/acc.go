package view

import (
	"encoding/binary"
	"errors"
	"math"
	"strings"

	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/totals"
)

// rowID names a totals row: layer, region (the event's subject) and key.
type rowID struct {
	layer  event.Layer
	region string
	key    string
}

func (r rowID) String() string { return string(r.layer) + "\x00" + r.region + "\x00" + r.key }

func parseRowID(s string) (rowID, error) {
	l, rest, ok1 := strings.Cut(s, "\x00")
	reg, key, ok2 := strings.Cut(rest, "\x00")
	if !ok1 || !ok2 {
		return rowID{}, errCorrupt
	}
	return rowID{layer: event.Layer(l), region: reg, key: key}, nil
}

var errCorrupt = errors.New("corrupt view record")

// acc is a row's exact sums: its event count, and per quantity its name, unit, exact sum
// (stored as partials) and largest term.
type acc struct {
	events int
	qs     []qacc
}

type qacc struct {
	name, unit string
	sum        totals.Exact
	maxAbs     float64
}

// add adds one event with quantities qs into a.
func (a *acc) add(qs []event.Quantity) {
	if a.events == 0 && len(a.qs) == 0 {
		for _, q := range qs {
			a.qs = append(a.qs, qacc{name: q.Name, unit: q.Unit})
		}
	}
	a.events++
	for i := range min(len(a.qs), len(qs)) {
		a.qs[i].sum.Add(qs[i].Value)
		a.qs[i].maxAbs = max(a.qs[i].maxAbs, math.Abs(qs[i].Value))
	}
}

// merge adds o into a exactly; a row takes its quantities from its first event, as
// totals.Sum does.
func (a *acc) merge(o *acc) {
	if a.events == 0 && len(a.qs) == 0 {
		for _, q := range o.qs {
			a.qs = append(a.qs, qacc{name: q.name, unit: q.unit})
		}
	}
	a.events += o.events
	for i := range min(len(a.qs), len(o.qs)) {
		a.qs[i].sum.Merge(o.qs[i].sum.Partials())
		a.qs[i].maxAbs = max(a.qs[i].maxAbs, o.qs[i].maxAbs)
	}
}

// row is the settled totals row of a.
func (a *acc) row(r rowID) totals.Row {
	out := totals.Row{Layer: r.layer, Region: r.region, Key: r.key, Events: a.events, Quantities: make([]event.Quantity, len(a.qs))}
	for i, q := range a.qs {
		out.Quantities[i] = event.Quantity{Name: q.name, Unit: q.unit, Value: totals.Settle(q.sum.Value(), q.maxAbs)}
	}
	return out
}

func (a *acc) encode() []byte {
	b := binary.AppendUvarint(nil, uint64(a.events))
	b = binary.AppendUvarint(b, uint64(len(a.qs)))
	for _, q := range a.qs {
		b = appendString(b, q.name)
		b = appendString(b, q.unit)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(q.maxAbs))
		ps := q.sum.Partials()
		b = binary.AppendUvarint(b, uint64(len(ps)))
		for _, p := range ps {
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(p))
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// decodeAcc reads what encode wrote; empty input is an empty row.
func decodeAcc(b []byte) (*acc, error) {
	a := &acc{}
	if len(b) == 0 {
		return a, nil
	}
	d := decoder{b: b}
	a.events = int(d.uvarint())
	n := d.uvarint()
	if n > uint64(len(b)) {
		return nil, errCorrupt
	}
	a.qs = make([]qacc, n)
	for i := range a.qs {
		q := &a.qs[i]
		q.name, q.unit = d.string(), d.string()
		q.maxAbs = d.float()
		np := d.uvarint()
		if np > uint64(len(b)) {
			return nil, errCorrupt
		}
		for range np {
			q.sum.Merge([]float64{d.float()})
		}
	}
	if d.bad {
		return nil, errCorrupt
	}
	return a, nil
}

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) float() float64 {
	if len(d.b) < 8 {
		d.bad = true
		return 0
	}
	v := math.Float64frombits(binary.BigEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}
