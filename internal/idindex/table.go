package idindex

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// flushGap is the largest gap, in slots, between two overlay entries that
// are still written back by one read-modify-write run. Rewriting a few
// unchanged slots is much cheaper than a separate small write, each of which
// dirties a page on its own.
const flushGap = 256

// maxProbe bounds the linear probe of a lookup; a longer cluster means the
// file is corrupt (the load factor is at most 1/2).
const maxProbe = 1 << 24

const ovEntrySize = 24 // unsafe.Sizeof(ovEntry{})

// ovEntry is a slot inserted since the last flush.
type ovEntry struct {
	pos1 uint64 // slot position + 1; 0 means the entry is unused
	hash uint64
	val  uint64
}

// overlay holds the slots filled since the last flush (those slots are
// empty in the file). It is a fixed-capacity linear-probing table keyed by
// slot position whose home function is monotone in the position and whose
// clusters are kept sorted, so the entries are always in position order:
// flushing needs no sort and lookups stop early. It does not wrap around;
// a little slack at the end absorbs spill-over from the last homes.
type overlay struct {
	e      []ovEntry
	homes  uint64 // homes are [0, homes); len(e) > homes
	fshift uint   // 64 - log2(table slots)
	n      int
	limit  int // flush when n reaches limit
}

func newOverlay(entries int, slots uint64) overlay {
	slack := max(16, entries/64)
	o := overlay{e: make([]ovEntry, entries), homes: uint64(entries - slack)}
	o.limit = int(o.homes) * 3 / 4
	o.setSlots(slots)
	return o
}

// setSlots adapts the home function to a table of the given size; the
// overlay must be empty.
func (o *overlay) setSlots(slots uint64) { o.fshift = uint(64 - bits.TrailingZeros64(slots)) }

// home maps pos to [0, homes), monotonically: pos/slots*homes.
func (o *overlay) home(pos uint64) uint64 {
	hi, _ := bits.Mul64(pos<<o.fshift, o.homes)
	return hi
}

func (o *overlay) get(pos uint64) *ovEntry {
	if o.n == 0 {
		return nil
	}
	k := pos + 1
	for i := o.home(pos); i < uint64(len(o.e)); i++ {
		e := &o.e[i]
		if e.pos1 >= k || e.pos1 == 0 {
			if e.pos1 == k {
				return e
			}
			return nil
		}
	}
	return nil
}

// put adds a slot, which must not be present. It reports false if the
// overlay has no room left for it.
func (o *overlay) put(pos, hash, val uint64) bool {
	k := pos + 1
	i := o.home(pos)
	for i < uint64(len(o.e)) && o.e[i].pos1 != 0 && o.e[i].pos1 < k {
		i++
	}
	j := i
	for j < uint64(len(o.e)) && o.e[j].pos1 != 0 {
		j++
	}
	if j == uint64(len(o.e)) {
		return false
	}
	copy(o.e[i+1:j+1], o.e[i:j])
	o.e[i] = ovEntry{pos1: k, hash: hash, val: val}
	o.n++
	return true
}

// compact moves the entries, in position order, to the front and returns
// them. The overlay must be reset afterwards.
func (o *overlay) compact() []ovEntry {
	w := 0
	for _, e := range o.e {
		if e.pos1 != 0 {
			o.e[w] = e
			w++
		}
	}
	return o.e[:w]
}

func (o *overlay) reset() {
	clear(o.e)
	o.n = 0
}

// probe looks up fingerprint h, consulting the overlay before the file. It
// returns the stored value if h is present, otherwise the position of the
// first empty slot of its probe sequence. buf holds at least probeWindow
// slots. The caller holds mu (read or write) or is the writer.
func (x *Index) probe(h uint64, buf []byte) (val uint64, found bool, pos uint64, err error) {
	pos = h & x.mask
	want := uint64(firstWindow)
	for n := uint64(0); n < min(x.slots, maxProbe); {
		w := min(want, x.slots-pos)
		want = uint64(len(buf) / slotSize)
		b := buf[:w*slotSize]
		if _, err := x.f.ReadAt(b, slotOff(pos)); err != nil {
			return 0, false, 0, err
		}
		for i := uint64(0); i < w; i++ {
			var sh, sv uint64
			if e := x.ov.get(pos + i); e != nil {
				sh, sv = e.hash, e.val
			} else {
				sh = binary.LittleEndian.Uint64(b[i*slotSize:])
				sv = binary.LittleEndian.Uint64(b[i*slotSize+8:])
			}
			if sh == h {
				return sv, true, pos + i, nil
			}
			if sh == 0 {
				return 0, false, pos + i, nil
			}
		}
		n += w
		pos = (pos + w) & x.mask
	}
	return 0, false, 0, fmt.Errorf("%w: no empty slot within %d slots of home", ErrCorrupt, min(x.slots, maxProbe))
}

// flushLocked writes the overlay to the file in position order and empties
// it. The caller holds wmu and mu.
func (x *Index) flushLocked() error {
	if x.ov.n == 0 {
		return nil
	}
	if err := x.markDirty(); err != nil {
		return err
	}
	es := x.ov.compact()
	buf := x.scratch
	maxRun := uint64(len(buf) / slotSize)
	for i := 0; i < len(es); {
		start := es[i].pos1 - 1
		end := start
		j := i + 1
		for ; j < len(es); j++ {
			p := es[j].pos1 - 1
			if p-end > flushGap || p-start >= maxRun {
				break
			}
			end = p
		}
		b := buf[:(end-start+1)*slotSize]
		if j > i+1 {
			if _, err := x.f.ReadAt(b, slotOff(start)); err != nil {
				return err
			}
		}
		for _, e := range es[i:j] {
			o := (e.pos1 - 1 - start) * slotSize
			binary.LittleEndian.PutUint64(b[o:], e.hash)
			binary.LittleEndian.PutUint64(b[o+8:], e.val)
		}
		if _, err := x.f.WriteAt(b, slotOff(start)); err != nil {
			return err
		}
		i = j
	}
	x.ov.reset()
	return nil
}
