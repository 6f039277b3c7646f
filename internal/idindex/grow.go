package idindex

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// grow rebuilds the table into a new file with twice the slots and renames
// it over the current one. The caller holds wmu (not mu).
func (x *Index) grow() error {
	if x.ov.n > 0 {
		x.mu.Lock()
		err := x.flushLocked()
		x.mu.Unlock()
		if err != nil {
			return err
		}
	}
	// From here until the swap the current file is complete and not
	// modified, so readers keep using it while the new one is built.
	n := x.slots
	if n >= 1<<maxSlotsLog {
		return fmt.Errorf("table cannot grow beyond %d slots", n)
	}
	m := 2 * n
	st, err := x.f.Stat()
	if err != nil {
		return err
	}
	tmp := rebuildPath(x.path)
	nf, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		if !renamed {
			nf.Close()
			os.Remove(tmp)
		}
	}()
	if err := nf.Truncate(hdrSize + int64(m)*slotSize); err != nil {
		return err
	}
	moved, err := x.rebuildInto(nf, n)
	if err != nil {
		return err
	}
	h := header{seed: x.seed, slots: m, count: moved, checkpoint: x.syncedCkpt, state: stateClean}
	if err := writeHeader(nf, &h); err != nil {
		return err
	}
	if err := nf.Sync(); err != nil {
		return err
	}
	if err := os.Rename(tmp, x.path); err != nil {
		return err
	}
	renamed = true
	x.mu.Lock()
	old := x.f
	x.f, x.slots, x.mask, x.count = nf, m, m-1, moved
	x.ov.setSlots(m)
	x.mu.Unlock()
	x.diskDirty = false
	x.syncedCount = moved
	return errors.Join(old.Close(), syncDir(x.path))
}

// rebuildInto writes the entries of the current table (n slots, overlay
// empty) into nf, a zeroed table of 2n slots, and returns their number.
//
// With linear probing, a cluster (maximal run of occupied slots) at
// positions [s,e] holds exactly the entries whose home is in [s,e]. After
// doubling, an entry with old home a has new home a or a+n, and the entries
// of the cluster going to each half fit in [s,e] and [s+n,e+n] respectively
// (a subset of a set of homes that fits in [s,e] still fits). So the table
// is streamed once, cluster by cluster, and each cluster is re-laid out in
// memory into a low and a high image that are written at the same offsets
// in the two halves of the new table. The cluster that wraps around the
// end of the table, and clusters too long for the scratch buffer, are
// instead re-inserted one by one at the end.
func (x *Index) rebuildInto(nf *os.File, n uint64) (moved uint64, err error) {
	old := x.f
	bs := uint64(len(x.scratch) / slotSize / 3)
	in := x.scratch[:bs*slotSize]
	lo := x.scratch[bs*slotSize : 2*bs*slotSize]
	hi := x.scratch[2*bs*slotSize : 3*bs*slotSize]

	// The streamed region [begin, end) starts and ends on a cluster
	// boundary; the wrap-around cluster, if any, is outside it.
	begin, end := uint64(0), n
	var deferred [][2]uint64 // [from, to) ranges of old slots re-inserted one by one
	if err := readSlots(old, in[:slotSize], 0); err != nil {
		return 0, err
	}
	first := binary.LittleEndian.Uint64(in)
	if err := readSlots(old, in[:slotSize], n-1); err != nil {
		return 0, err
	}
	last := binary.LittleEndian.Uint64(in)
	if first != 0 && last != 0 {
		if begin, err = firstEmpty(old, 0, n, in); err != nil {
			return 0, err
		}
		if begin == n {
			return 0, fmt.Errorf("%w: table has no empty slot", ErrCorrupt)
		}
		if end, err = lastEmpty(old, n, in); err != nil {
			return 0, err
		}
		end++
		deferred = append(deferred, [2]uint64{0, begin}, [2]uint64{end, n})
	}

	base, next, fill := begin, begin, uint64(0) // in holds old slots [base, base+fill); next = base+fill
	for base < end {
		if want := min(bs-fill, end-next); want > 0 {
			if err := readSlots(old, in[fill*slotSize:(fill+want)*slotSize], next); err != nil {
				return 0, err
			}
			fill += want
			next += want
		}
		limit := fill
		if next < end {
			// Cut after the last empty slot so that no cluster is split.
			limit = 0
			for k := fill; k > 0; k-- {
				if binary.LittleEndian.Uint64(in[(k-1)*slotSize:]) == 0 {
					limit = k
					break
				}
			}
			if limit == 0 {
				// A cluster longer than the buffer.
				q, err := firstEmpty(old, next, end, in)
				if err != nil {
					return 0, err
				}
				deferred = append(deferred, [2]uint64{base, q})
				base, next, fill = q, q, 0
				continue
			}
		}
		k, err := relayout(in[:limit*slotSize], lo, hi, base, n)
		if err != nil {
			return 0, err
		}
		moved += k
		if _, err := nf.WriteAt(lo[:limit*slotSize], slotOff(base)); err != nil {
			return 0, err
		}
		if _, err := nf.WriteAt(hi[:limit*slotSize], slotOff(base+n)); err != nil {
			return 0, err
		}
		copy(in, in[limit*slotSize:fill*slotSize])
		fill -= limit
		base += limit
	}

	for _, r := range deferred {
		for pos := r[0]; pos < r[1]; {
			w := min(bs, r[1]-pos)
			b := in[:w*slotSize]
			if err := readSlots(old, b, pos); err != nil {
				return 0, err
			}
			for i := 0; i < len(b); i += slotSize {
				h := binary.LittleEndian.Uint64(b[i:])
				if h == 0 {
					continue
				}
				ok, err := insertDirect(nf, 2*n, h, binary.LittleEndian.Uint64(b[i+8:]), lo)
				if err != nil {
					return 0, err
				}
				if ok {
					moved++
				}
			}
			pos += w
		}
	}
	return moved, nil
}

// relayout places the entries of src, the old slots [base, base+len) of a
// table of n slots, which form whole clusters, into the images lo and hi of
// the new slots [base, ...) and [base+n, ...). It returns the number of
// entries placed.
func relayout(src, lo, hi []byte, base, n uint64) (uint64, error) {
	clear(lo[:len(src)])
	clear(hi[:len(src)])
	limit := uint64(len(src) / slotSize)
	var moved uint64
	for k := uint64(0); k < limit; k++ {
		h := binary.LittleEndian.Uint64(src[k*slotSize:])
		if h == 0 {
			continue
		}
		a := h & (n - 1)
		if a < base || a > base+k {
			return 0, fmt.Errorf("%w: slot %d holds an entry whose home slot is %d", ErrCorrupt, base+k, a)
		}
		img := lo
		if h&n != 0 {
			img = hi
		}
		q := a - base
		for binary.LittleEndian.Uint64(img[q*slotSize:]) != 0 {
			if q++; q >= limit {
				return 0, fmt.Errorf("%w: cluster at slot %d does not fit after rebuild", ErrCorrupt, base)
			}
		}
		copy(img[q*slotSize:(q+1)*slotSize], src[k*slotSize:])
		moved++
	}
	return moved, nil
}

// insertDirect inserts (h, v) into the table of the given size in f with
// reads and a write of the file, using buf for the probe. It reports false
// if h is already present.
func insertDirect(f *os.File, slots, h, v uint64, buf []byte) (bool, error) {
	mask := slots - 1
	pos := h & mask
	for n := uint64(0); n < slots; {
		w := min(uint64(len(buf)/slotSize), slots-pos)
		b := buf[:w*slotSize]
		if err := readSlots(f, b, pos); err != nil {
			return false, err
		}
		for i := uint64(0); i < w; i++ {
			switch binary.LittleEndian.Uint64(b[i*slotSize:]) {
			case h:
				return false, nil
			case 0:
				var s [slotSize]byte
				binary.LittleEndian.PutUint64(s[:], h)
				binary.LittleEndian.PutUint64(s[8:], v)
				_, err := f.WriteAt(s[:], slotOff(pos+i))
				return err == nil, err
			}
		}
		n += w
		pos = (pos + w) & mask
	}
	return false, fmt.Errorf("%w: table has no empty slot", ErrCorrupt)
}

// readSlots reads len(b)/slotSize slots starting at pos.
func readSlots(f *os.File, b []byte, pos uint64) error {
	_, err := f.ReadAt(b, slotOff(pos))
	return err
}

// firstEmpty returns the first empty slot in [from, to), or to.
func firstEmpty(f *os.File, from, to uint64, buf []byte) (uint64, error) {
	for pos := from; pos < to; {
		w := min(uint64(len(buf)/slotSize), to-pos)
		b := buf[:w*slotSize]
		if err := readSlots(f, b, pos); err != nil {
			return 0, err
		}
		for i := uint64(0); i < w; i++ {
			if binary.LittleEndian.Uint64(b[i*slotSize:]) == 0 {
				return pos + i, nil
			}
		}
		pos += w
	}
	return to, nil
}

// lastEmpty returns the last empty slot of a table of n slots.
func lastEmpty(f *os.File, n uint64, buf []byte) (uint64, error) {
	for end := n; end > 0; {
		w := min(uint64(len(buf)/slotSize), end)
		b := buf[:w*slotSize]
		if err := readSlots(f, b, end-w); err != nil {
			return 0, err
		}
		for i := w; i > 0; i-- {
			if binary.LittleEndian.Uint64(b[(i-1)*slotSize:]) == 0 {
				return end - w + i - 1, nil
			}
		}
		end -= w
	}
	return 0, fmt.Errorf("%w: table has no empty slot", ErrCorrupt)
}
