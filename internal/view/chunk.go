package view

import (
	"encoding/binary"
	"math"
	"slices"
	"time"

	"github.com/layercake/cascade/internal/event"
)

// chunk is the events of one hour that one commit applied, kept as one record (under the
// hour and the id of its first event) rather than one per event: a table of the rows they
// add to, each with its quantities' names and units, then per event its row's index, its
// time within the hour and its quantities' values. Ranges that cut an hour read its chunks
// and keep the events inside; what a commit writes per event is a few varints and its
// values, not a key with its row spelled out.
type chunk struct {
	first string          // the id of its first event
	hour  time.Time       // the hour's start
	rows  map[rowID][]int // indexes into table of the entries of a row
	table []chunkRow      // in order of first use
	body  []byte          // the events, encoded
	n     int             // events in body
	names [][2]string     // scratch: an event's quantities' names and units
}

// chunkRow is a row with its quantities' names and units, as its events have them.
type chunkRow struct {
	id    rowID
	names [][2]string
}

func newChunk(hour time.Time, first string) *chunk {
	return &chunk{first: first, rows: map[rowID][]int{}, hour: hour}
}

// add appends an event at time t to row r with quantities qs.
func (c *chunk) add(t time.Time, r rowID, qs []event.Quantity) {
	c.names = c.names[:0]
	for _, q := range qs {
		c.names = append(c.names, [2]string{q.Name, q.Unit})
	}
	idx := -1
	for _, i := range c.rows[r] {
		if slices.Equal(c.table[i].names, c.names) {
			idx = i
			break
		}
	}
	if idx < 0 {
		idx = len(c.table)
		c.table = append(c.table, chunkRow{id: r, names: slices.Clone(c.names)})
		c.rows[r] = append(c.rows[r], idx)
	}
	c.body = binary.AppendUvarint(c.body, uint64(idx))
	c.body = binary.AppendUvarint(c.body, uint64(t.Sub(c.hour))) // within the hour: no overflow, whatever the year
	for _, q := range qs {
		c.body = binary.BigEndian.AppendUint64(c.body, math.Float64bits(q.Value))
	}
	c.n++
}

// encode is the chunk's record.
func (c *chunk) encode() []byte {
	b := binary.AppendUvarint(nil, uint64(len(c.table)))
	for _, r := range c.table {
		b = appendString(b, r.id.String())
		b = binary.AppendUvarint(b, uint64(len(r.names)))
		for _, nu := range r.names {
			b = appendString(appendString(b, nu[0]), nu[1])
		}
	}
	b = binary.AppendUvarint(b, uint64(c.n))
	return append(b, c.body...)
}

// eachInChunk calls fn with every event of the chunk record b of the hour starting at
// start (Unix seconds): its time, row and contribution.
func eachInChunk(b []byte, start int64, fn func(at time.Time, r rowID, a *acc) error) error {
	d := decoder{b: b}
	nrows := d.uvarint()
	if nrows > uint64(len(b)) {
		return errCorrupt
	}
	table := make([]chunkRow, nrows)
	for i := range table {
		r, err := parseRowID(d.string())
		if err != nil {
			return err
		}
		nq := d.uvarint()
		if d.bad || nq > uint64(len(b)) {
			return errCorrupt
		}
		table[i] = chunkRow{id: r, names: make([][2]string, nq)}
		for j := range table[i].names {
			table[i].names[j] = [2]string{d.string(), d.string()}
		}
	}
	n := d.uvarint()
	for range n {
		idx, off := d.uvarint(), d.uvarint()
		if d.bad || idx >= uint64(len(table)) || off >= uint64(time.Hour) {
			return errCorrupt
		}
		row := &table[idx]
		a := &acc{events: 1, qs: make([]qacc, len(row.names))}
		for j, nu := range row.names {
			v := d.float()
			a.qs[j] = qacc{name: nu[0], unit: nu[1], maxAbs: math.Abs(v)}
			a.qs[j].sum.Add(v)
		}
		if d.bad {
			return errCorrupt
		}
		if err := fn(time.Unix(start, int64(off)).UTC(), row.id, a); err != nil {
			return err
		}
	}
	if d.bad || len(d.b) != 0 {
		return errCorrupt
	}
	return nil
}
