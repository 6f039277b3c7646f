// Package idindex is a persistent, file-backed map from a string id (an
// event id) to a uint64 location (a stream sequence). Its memory use is
// fixed by [Options.CacheBytes] and does not grow with the number of keys:
// the table lives in a file that is accessed only with pread/pwrite
// (os.File.ReadAt/WriteAt), never mmap.
//
// # File format
//
// A 4 KiB header page (magic, version, hash seed, slot count, entry count,
// checkpoint, clean/dirty state, CRC-32C) is followed by a power-of-two
// number of 16-byte slots forming an open-addressing hash table with linear
// probing. A slot holds the 64-bit fingerprint of an id (0 = empty) and the
// value, both little endian. Ids themselves are not stored.
//
// # Hashing and collisions
//
// The fingerprint is FNV-1a 64 started from the FNV offset basis XOR a
// per-file random seed (kept in the header, so it is stable across
// processes), followed by the murmur3 fmix64 finalizer; 0 is remapped to 1.
// The low bits pick the home slot, the full 64 bits identify the key. Two
// different ids with the same fingerprint are treated as the same key: the
// second Put returns false and Get of either returns the first value. The
// chance that any two of n ids collide is about n²/2⁶⁵ (≈3e-6 at 10 million
// ids); the chance that Get of an absent id reports a false hit is about
// n/2⁶⁴ per lookup. Callers that can check the id of the event at the
// returned location should do so.
//
// # Writes
//
// Put looks the id up on disk (one small pread, usually) to implement
// first-writer-wins, then records the new slot in a bounded in-memory
// overlay that keeps its entries in slot-position order. When the overlay
// is full, or on Sync, it is written back in position order, coalescing
// nearby slots into read-modify-write runs; this turns random 16-byte
// writes (each of which dirties a page, ~8 µs on ext4) into mostly
// sequential I/O.
//
// When an insert would push the load factor above 1/2 the table is rebuilt
// into path+".rebuild" with twice the slots and renamed over the original.
// The rebuild streams the old table once: with linear probing and doubling,
// a cluster occupying old slots [s,e] maps exactly onto new slots [s,e] and
// [s+N,e+N], so each cluster is re-laid out in memory and both halves are
// written sequentially. Only the cluster that wraps around the end of the
// table and clusters longer than the scratch buffer are re-inserted one by
// one. The new file is fsynced before the rename.
//
// # Crash safety
//
// Slots are written only by the overlay flush and the rebuild. Before the
// first flush after a Sync the header is rewritten as "dirty" and fsynced.
// Sync flushes, fsyncs, then writes the header as "clean" with the entry
// count and the checkpoint, and fsyncs again. Open trusts the count of a
// clean header and recounts the slots (one sequential scan) of a dirty one.
// After a crash the file therefore holds every entry present at the last
// Sync plus possibly some later ones; the checkpoint is the one of the last
// Sync. Re-putting entries after the checkpoint converges, because Put is
// idempotent. Slots never straddle a 512-byte sector, and the header fields
// live in the first sector. A header with a wrong magic, version, checksum,
// geometry or file size is refused with an error wrapping [ErrCorrupt].
//
// # Concurrency
//
// Put, SetCheckpoint, Sync and Close are serialised (one writer at a time);
// Get, Len and Checkpoint may run concurrently with them and with each
// other. Readers wait while the overlay is flushed; they keep running while
// a rebuild streams the old table. Only one process may open a file at a
// time; idindex does not lock the file.
//
// After a write error the Index is unusable and every method returns that
// error; reopen the file to recover to the last durable state.
package idindex

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
)

// Options configures Open. The zero value selects the defaults.
type Options struct {
	// InitialSlots is the slot count of a newly created file (rounded up
	// to a power of two, at least 64); default 1<<16. It is ignored when
	// the file exists.
	InitialSlots int
	// CacheBytes bounds the in-memory buffers (write overlay and scratch
	// buffer); default 4 MiB, minimum 4 KiB. The Index's heap use is
	// about CacheBytes plus a few KiB, independent of the number of keys.
	CacheBytes int
}

// DefaultCacheBytes is the default Options.CacheBytes.
const DefaultCacheBytes = 4 << 20

// DefaultInitialSlots is the default Options.InitialSlots.
const DefaultInitialSlots = 1 << 16

const (
	minSlots      = 64
	minCacheBytes = 4 << 10
	maxSlotsLog   = 48

	hdrSize  = 4096
	slotSize = 16

	magic   = "cscIDX\x00\x01"
	version = 1

	stateClean = 0
	stateDirty = 1

	// firstWindow and probeWindow are the slot counts read by a lookup:
	// the first read is small (most probes end within a few slots), later
	// reads of a long cluster are larger.
	firstWindow = 16
	probeWindow = 64
)

var (
	// ErrCorrupt is wrapped by errors for files that are not index files
	// or whose header or geometry is inconsistent.
	ErrCorrupt = errors.New("not a valid id index file")
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("idindex: index is closed")
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// header is the decoded header page.
type header struct {
	seed       uint64
	slots      uint64
	count      uint64
	checkpoint uint64
	state      uint32
}

func (h *header) encode() []byte {
	b := make([]byte, 64)
	copy(b, magic)
	binary.LittleEndian.PutUint32(b[8:], version)
	binary.LittleEndian.PutUint32(b[12:], slotSize)
	binary.LittleEndian.PutUint64(b[16:], h.seed)
	binary.LittleEndian.PutUint64(b[24:], h.slots)
	binary.LittleEndian.PutUint64(b[32:], h.count)
	binary.LittleEndian.PutUint64(b[40:], h.checkpoint)
	binary.LittleEndian.PutUint32(b[48:], h.state)
	binary.LittleEndian.PutUint32(b[56:], crc32.Checksum(b[:56], crcTable))
	return b
}

func decodeHeader(b []byte) (header, error) {
	var h header
	if string(b[:8]) != magic {
		return h, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != version {
		return h, fmt.Errorf("%w: unsupported version %d (want %d)", ErrCorrupt, v, version)
	}
	if crc := binary.LittleEndian.Uint32(b[56:]); crc != crc32.Checksum(b[:56], crcTable) {
		return h, fmt.Errorf("%w: header checksum mismatch", ErrCorrupt)
	}
	if s := binary.LittleEndian.Uint32(b[12:]); s != slotSize {
		return h, fmt.Errorf("%w: slot size %d (want %d)", ErrCorrupt, s, slotSize)
	}
	h.seed = binary.LittleEndian.Uint64(b[16:])
	h.slots = binary.LittleEndian.Uint64(b[24:])
	h.count = binary.LittleEndian.Uint64(b[32:])
	h.checkpoint = binary.LittleEndian.Uint64(b[40:])
	h.state = binary.LittleEndian.Uint32(b[48:])
	switch {
	case h.slots < minSlots || h.slots > 1<<maxSlotsLog || h.slots&(h.slots-1) != 0:
		return h, fmt.Errorf("%w: bad slot count %d", ErrCorrupt, h.slots)
	case h.state != stateClean && h.state != stateDirty:
		return h, fmt.Errorf("%w: bad state %d", ErrCorrupt, h.state)
	case h.state == stateClean && h.count > h.slots/2:
		return h, fmt.Errorf("%w: entry count %d exceeds half of %d slots", ErrCorrupt, h.count, h.slots)
	}
	return h, nil
}

func writeHeader(f *os.File, h *header) error {
	_, err := f.WriteAt(h.encode(), 0)
	return err
}

// Index is an open index file. See the package documentation.
type Index struct {
	path string
	seed uint64 // immutable after Open

	wmu sync.Mutex   // serialises writers: Put, SetCheckpoint, Sync, Close
	mu  sync.RWMutex // guards the fields below against readers; writers hold wmu and take mu to modify them

	f      *os.File
	slots  uint64
	mask   uint64
	count  uint64
	ckpt   uint64
	ov     overlay
	err    error // sticky write error
	closed bool

	// Written only with wmu held.
	syncedCkpt  uint64 // checkpoint in the durable header
	syncedCount uint64 // count in the durable header
	diskDirty   bool   // the header on disk says dirty
	scratch     []byte // writer-only scratch buffer (flush runs, rebuild, recount)
	probeBuf    []byte // writer-only lookup buffer

	readBufs sync.Pool // *[]byte lookup buffers for readers
}

// Open opens the index file at path, creating it if it does not exist. The
// header of an existing file is validated; errors name the path.
func Open(path string, o Options) (*Index, error) {
	slots := uint64(DefaultInitialSlots)
	if o.InitialSlots > 0 {
		if o.InitialSlots > 1<<maxSlotsLog {
			return nil, fmt.Errorf("idindex: open %s: InitialSlots %d too large", path, o.InitialSlots)
		}
		slots = max(minSlots, uint64(1)<<bits.Len64(uint64(o.InitialSlots)-1))
	}
	cache := o.CacheBytes
	if cache <= 0 {
		cache = DefaultCacheBytes
	}
	cache = max(cache, minCacheBytes)

	// A leftover from a rebuild interrupted by a crash; the original file
	// is intact because the rebuild renames only a complete, synced file.
	if err := os.Remove(rebuildPath(path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("idindex: open %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if err := create(path, slots); err != nil {
			return nil, fmt.Errorf("idindex: create %s: %w", path, err)
		}
		f, err = os.OpenFile(path, os.O_RDWR, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("idindex: open %s: %w", path, err)
	}
	x, err := load(f, path, cache)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("idindex: open %s: %w", path, err)
	}
	return x, nil
}

func rebuildPath(path string) string { return path + ".rebuild" }

// create atomically creates an empty index file with the given slot count.
func create(path string, slots uint64) error {
	tmp := rebuildPath(path)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
	if err != nil {
		return err
	}
	h := header{seed: rand.Uint64(), slots: slots, state: stateClean}
	err = writeHeader(f, &h)
	if err == nil {
		err = f.Truncate(hdrSize + int64(slots)*slotSize)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func syncDir(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func load(f *os.File, path string, cache int) (*Index, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() < hdrSize {
		return nil, fmt.Errorf("%w: file is %d bytes, shorter than the %d-byte header", ErrCorrupt, st.Size(), hdrSize)
	}
	hb := make([]byte, 64)
	if _, err := f.ReadAt(hb, 0); err != nil {
		return nil, err
	}
	h, err := decodeHeader(hb)
	if err != nil {
		return nil, err
	}
	if want := hdrSize + int64(h.slots)*slotSize; st.Size() != want {
		return nil, fmt.Errorf("%w: file is %d bytes, header implies %d", ErrCorrupt, st.Size(), want)
	}

	// Split the budget: a quarter for the scratch buffer (a multiple of
	// three slots, so a rebuild can cut it into three equal buffers), the
	// rest for the overlay.
	scratchSlots := cache / 4 / slotSize / 3 * 3
	ovEntries := (cache - scratchSlots*slotSize) / ovEntrySize
	x := &Index{
		path:        path,
		seed:        h.seed,
		f:           f,
		slots:       h.slots,
		mask:        h.slots - 1,
		count:       h.count,
		ckpt:        h.checkpoint,
		syncedCkpt:  h.checkpoint,
		syncedCount: h.count,
		diskDirty:   h.state == stateDirty,
		scratch:     make([]byte, scratchSlots*slotSize),
		probeBuf:    make([]byte, probeWindow*slotSize),
		ov:          newOverlay(ovEntries, h.slots),
	}
	x.readBufs.New = func() any {
		b := make([]byte, probeWindow*slotSize)
		return &b
	}
	if x.diskDirty {
		// Not closed cleanly: the count in the header may be stale.
		n, err := x.recount()
		if err != nil {
			return nil, err
		}
		x.count = n
		if n > x.slots/2 {
			return nil, fmt.Errorf("%w: %d entries in %d slots", ErrCorrupt, n, x.slots)
		}
	}
	return x, nil
}

// recount counts the occupied slots with one sequential scan.
func (x *Index) recount() (uint64, error) {
	var n uint64
	buf := x.scratch
	for pos := uint64(0); pos < x.slots; {
		w := min(uint64(len(buf)/slotSize), x.slots-pos)
		b := buf[:w*slotSize]
		if _, err := x.f.ReadAt(b, slotOff(pos)); err != nil {
			return 0, err
		}
		for i := 0; i < len(b); i += slotSize {
			if binary.LittleEndian.Uint64(b[i:]) != 0 {
				n++
			}
		}
		pos += w
	}
	return n, nil
}

func slotOff(pos uint64) int64 { return hdrSize + int64(pos)*slotSize }

// hashID returns the nonzero 64-bit fingerprint of id.
func hashID(seed uint64, id string) uint64 {
	h := uint64(14695981039346656037) ^ seed
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	if h == 0 {
		h = 1
	}
	return h
}

// usable reports the error that makes x unusable, if any. Callers hold wmu
// or mu.
func (x *Index) usable() error {
	if x.closed {
		return ErrClosed
	}
	return x.err
}

// fail records a write error as sticky and returns it.
func (x *Index) fail(err error) error {
	err = fmt.Errorf("idindex: %s: %w", x.path, err)
	x.mu.Lock()
	x.err = err
	x.mu.Unlock()
	return err
}

// Put inserts id with value v. If id is already present (or another id with
// the same 64-bit fingerprint is), the stored value is kept and Put returns
// false.
func (x *Index) Put(id string, v uint64) (inserted bool, err error) {
	h := hashID(x.seed, id)
	x.wmu.Lock()
	defer x.wmu.Unlock()
	if err := x.usable(); err != nil {
		return false, err
	}
	// Only this goroutine modifies the table, so it may read it without mu.
	_, found, pos, err := x.probe(h, x.probeBuf)
	if err != nil {
		return false, x.fail(err)
	}
	if found {
		return false, nil
	}
	if (x.count+1)*2 > x.slots {
		if err := x.grow(); err != nil {
			return false, x.fail(err)
		}
		if _, _, pos, err = x.probe(h, x.probeBuf); err != nil {
			return false, x.fail(err)
		}
	}
	x.mu.Lock()
	if !x.ov.put(pos, h, v) {
		// Only possible after spill-over at the end of the overlay.
		if err = x.flushLocked(); err == nil {
			x.ov.put(pos, h, v)
		}
	}
	if err == nil {
		x.count++
		if x.ov.n >= x.ov.limit {
			err = x.flushLocked()
		}
	}
	x.mu.Unlock()
	if err != nil {
		return false, x.fail(err)
	}
	return true, nil
}

// Get returns the value stored for id.
func (x *Index) Get(id string) (v uint64, ok bool, err error) {
	h := hashID(x.seed, id)
	x.mu.RLock()
	defer x.mu.RUnlock()
	if err := x.usable(); err != nil {
		return 0, false, err
	}
	bp := x.readBufs.Get().(*[]byte)
	v, ok, _, err = x.probe(h, *bp)
	x.readBufs.Put(bp)
	if err != nil {
		return 0, false, fmt.Errorf("idindex: %s: %w", x.path, err)
	}
	return v, ok, nil
}

// Len returns the number of entries.
func (x *Index) Len() uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.count
}

// SetCheckpoint sets the checkpoint that the next Sync stores in the header,
// typically the last stream sequence whose entries have all been Put.
func (x *Index) SetCheckpoint(v uint64) {
	x.wmu.Lock()
	x.mu.Lock()
	x.ckpt = v
	x.mu.Unlock()
	x.wmu.Unlock()
}

// Checkpoint returns the value last passed to SetCheckpoint, or the
// checkpoint stored by the last Sync if SetCheckpoint has not been called
// since Open.
func (x *Index) Checkpoint() uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.ckpt
}

// Sync writes all buffered entries to the file, fsyncs it, and then
// durably records the entry count and the checkpoint in the header.
func (x *Index) Sync() error {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	if err := x.usable(); err != nil {
		return err
	}
	if err := x.syncLocked(); err != nil {
		return x.fail(err)
	}
	return nil
}

func (x *Index) syncLocked() error {
	if x.ov.n > 0 {
		x.mu.Lock()
		err := x.flushLocked()
		x.mu.Unlock()
		if err != nil {
			return err
		}
	}
	if !x.diskDirty && x.count == x.syncedCount && x.ckpt == x.syncedCkpt {
		return nil
	}
	if x.diskDirty {
		// The slots must be durable before the header calls them clean.
		if err := x.f.Sync(); err != nil {
			return err
		}
	}
	h := header{seed: x.seed, slots: x.slots, count: x.count, checkpoint: x.ckpt, state: stateClean}
	if err := writeHeader(x.f, &h); err != nil {
		return err
	}
	if err := x.f.Sync(); err != nil {
		return err
	}
	x.diskDirty = false
	x.syncedCount = x.count
	x.syncedCkpt = x.ckpt
	return nil
}

// markDirty durably marks the header dirty before slots are modified in
// place, so that Open recounts after a crash. Callers hold wmu.
func (x *Index) markDirty() error {
	if x.diskDirty {
		return nil
	}
	h := header{seed: x.seed, slots: x.slots, count: x.syncedCount, checkpoint: x.syncedCkpt, state: stateDirty}
	if err := writeHeader(x.f, &h); err != nil {
		return err
	}
	if err := x.f.Sync(); err != nil {
		return err
	}
	x.diskDirty = true
	return nil
}

// Close syncs (see Sync) and closes the file. Further calls return
// ErrClosed, except Close, which returns nil.
func (x *Index) Close() error {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	if x.closed {
		return nil
	}
	err := x.err
	if err == nil {
		if err = x.syncLocked(); err != nil {
			err = fmt.Errorf("idindex: %s: %w", x.path, err)
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if cerr := x.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("idindex: %s: %w", x.path, cerr)
	}
	x.closed = true
	x.ov = overlay{}
	x.scratch, x.probeBuf = nil, nil
	return err
}
