package idindex

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// key returns a realistic, distinct event id for i.
func key(i int) string { return "evt-01JH8Z3K5Q-" + strconv.Itoa(i) }

func val(i int) uint64 { return uint64(i)*7919 + 1 }

func mustOpen(t testing.TB, path string, o Options) *Index {
	t.Helper()
	x, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func mustPut(t testing.TB, x *Index, id string, v uint64, want bool) {
	t.Helper()
	ok, err := x.Put(id, v)
	if err != nil {
		t.Fatalf("Put(%q): %v", id, err)
	}
	if ok != want {
		t.Fatalf("Put(%q) inserted = %v, want %v", id, ok, want)
	}
}

func mustGet(t testing.TB, x *Index, id string, want uint64, wantOK bool) {
	t.Helper()
	v, ok, err := x.Get(id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	if ok != wantOK || (ok && v != want) {
		t.Fatalf("Get(%q) = %d, %v; want %d, %v", id, v, ok, want, wantOK)
	}
}

// crash abandons x without syncing, as a killed process would.
func crash(x *Index) {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	x.f.Close()
	x.closed = true
}

func TestPutGetReopen(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		n    int
	}{
		{"default", Options{}, 2000},
		{"tiny cache", Options{InitialSlots: 64, CacheBytes: 4096}, 5000},
		{"odd sizes", Options{InitialSlots: 1000, CacheBytes: 100_000}, 20_000},
		{"growth 200k", Options{InitialSlots: 1024}, 200_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if testing.Short() && tt.n > 20_000 {
				tt.n = 20_000
			}
			path := filepath.Join(t.TempDir(), "ids.idx")
			x := mustOpen(t, path, tt.opts)
			for i := range tt.n {
				mustPut(t, x, key(i), val(i), true)
			}
			mustPut(t, x, "zero", 0, true)
			mustPut(t, x, "max", math.MaxUint64, true)
			mustPut(t, x, "", 5, true)
			check := func(x *Index) {
				t.Helper()
				if got, want := x.Len(), uint64(tt.n+3); got != want {
					t.Fatalf("Len = %d, want %d", got, want)
				}
				for i := range tt.n {
					mustGet(t, x, key(i), val(i), true)
				}
				for i := tt.n; i < tt.n+1000; i++ {
					mustGet(t, x, key(i), 0, false)
				}
				mustGet(t, x, "zero", 0, true)
				mustGet(t, x, "max", math.MaxUint64, true)
				mustGet(t, x, "", 5, true)
			}
			check(x)
			if x.slots < 2*x.count {
				t.Fatalf("load factor above 1/2: %d entries in %d slots", x.count, x.slots)
			}
			x.SetCheckpoint(12345)
			if err := x.Close(); err != nil {
				t.Fatal(err)
			}
			// Options other than the file's own are ignored on reopen.
			x = mustOpen(t, path, Options{InitialSlots: 64, CacheBytes: 8192})
			defer x.Close()
			if got := x.Checkpoint(); got != 12345 {
				t.Fatalf("Checkpoint after reopen = %d, want 12345", got)
			}
			check(x)
			for i := 0; i < tt.n; i += 7 {
				mustPut(t, x, key(i), 1, false)
			}
			check(x)
		})
	}
}

func TestFirstWriterWins(t *testing.T) {
	type op struct {
		id   string
		v    uint64
		want bool
	}
	tests := []struct {
		name string
		ops  []op
		gets map[string]uint64
	}{
		{"same value", []op{{"a", 1, true}, {"a", 1, false}}, map[string]uint64{"a": 1}},
		{"different value", []op{{"a", 1, true}, {"a", 2, false}, {"a", 3, false}}, map[string]uint64{"a": 1}},
		{"zero first", []op{{"a", 0, true}, {"a", 9, false}}, map[string]uint64{"a": 0}},
		{"interleaved", []op{{"a", 1, true}, {"b", 2, true}, {"a", 3, false}, {"b", 4, false}, {"c", 5, true}},
			map[string]uint64{"a": 1, "b": 2, "c": 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ids.idx")
			x := mustOpen(t, path, Options{})
			for _, o := range tt.ops {
				mustPut(t, x, o.id, o.v, o.want)
			}
			// Also after the entries have been flushed to the file.
			if err := x.Sync(); err != nil {
				t.Fatal(err)
			}
			for _, o := range tt.ops {
				mustPut(t, x, o.id, o.v+100, false)
			}
			for id, v := range tt.gets {
				mustGet(t, x, id, v, true)
			}
			if x.Len() != uint64(len(tt.gets)) {
				t.Fatalf("Len = %d, want %d", x.Len(), len(tt.gets))
			}
			if err := x.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ids.idx")
	x := mustOpen(t, path, Options{})
	if x.Checkpoint() != 0 {
		t.Fatalf("new index checkpoint = %d", x.Checkpoint())
	}
	x.SetCheckpoint(7)
	if x.Checkpoint() != 7 {
		t.Fatalf("Checkpoint = %d, want 7", x.Checkpoint())
	}
	if err := x.Sync(); err != nil {
		t.Fatal(err)
	}
	x.SetCheckpoint(9) // not synced
	crash(x)
	x = mustOpen(t, path, Options{})
	if x.Checkpoint() != 7 {
		t.Fatalf("checkpoint after crash = %d, want the synced 7", x.Checkpoint())
	}
	x.SetCheckpoint(11)
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	x = mustOpen(t, path, Options{})
	defer x.Close()
	if x.Checkpoint() != 11 {
		t.Fatalf("checkpoint after Close = %d, want 11", x.Checkpoint())
	}
}

// TestCrashRecovery abandons an index with unsynced entries (some of them
// already written to the file by overlay flushes and rebuilds) and checks
// that reopening finds every synced entry, a consistent Len, and that
// re-putting from the checkpoint converges.
func TestCrashRecovery(t *testing.T) {
	tests := []struct {
		name           string
		opts           Options
		synced, extra  int
		syncBeforeMore bool
	}{
		{"flushed entries after sync", Options{CacheBytes: 4096}, 1000, 1000, true},
		{"growth after sync", Options{InitialSlots: 64, CacheBytes: 4096}, 1000, 5000, true},
		{"never synced", Options{InitialSlots: 64, CacheBytes: 4096}, 0, 3000, false},
		{"only overlay lost", Options{}, 1000, 500, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ids.idx")
			x := mustOpen(t, path, tt.opts)
			for i := range tt.synced {
				mustPut(t, x, key(i), val(i), true)
			}
			x.SetCheckpoint(uint64(tt.synced))
			if tt.syncBeforeMore {
				if err := x.Sync(); err != nil {
					t.Fatal(err)
				}
			}
			total := tt.synced + tt.extra
			for i := tt.synced; i < total; i++ {
				mustPut(t, x, key(i), val(i), true)
			}
			crash(x)
			if _, _, err := x.Get(key(0)); !errors.Is(err, ErrClosed) {
				t.Fatalf("Get after close: %v, want ErrClosed", err)
			}

			x = mustOpen(t, path, tt.opts)
			ck := int(x.Checkpoint())
			if tt.syncBeforeMore && ck != tt.synced {
				t.Fatalf("checkpoint = %d, want %d", ck, tt.synced)
			}
			found := 0
			for i := range total {
				v, ok, err := x.Get(key(i))
				if err != nil {
					t.Fatal(err)
				}
				if i < ck && !ok {
					t.Fatalf("synced key %d lost", i)
				}
				if ok {
					if v != val(i) {
						t.Fatalf("key %d = %d, want %d", i, v, val(i))
					}
					found++
				}
			}
			if x.Len() != uint64(found) {
				t.Fatalf("Len after crash = %d, but %d keys are present", x.Len(), found)
			}
			t.Logf("checkpoint %d, %d of %d keys survived", ck, found, total)
			// The re-indexer resumes after the checkpoint.
			for i := ck; i < total; i++ {
				if _, err := x.Put(key(i), val(i)); err != nil {
					t.Fatal(err)
				}
			}
			if x.Len() != uint64(total) {
				t.Fatalf("Len after re-indexing = %d, want %d", x.Len(), total)
			}
			for i := range total {
				mustGet(t, x, key(i), val(i), true)
			}
			if err := x.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStaleRebuildFileRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ids.idx")
	x := mustOpen(t, path, Options{})
	mustPut(t, x, "a", 1, true)
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rebuildPath(path), []byte("half-written rebuild"), 0o644); err != nil {
		t.Fatal(err)
	}
	x = mustOpen(t, path, Options{})
	defer x.Close()
	mustGet(t, x, "a", 1, true)
	if _, err := os.Stat(rebuildPath(path)); !os.IsNotExist(err) {
		t.Fatalf("stale rebuild file not removed: %v", err)
	}
}

func TestCorruptFileRefused(t *testing.T) {
	valid := func(t *testing.T, path string) {
		x := mustOpen(t, path, Options{InitialSlots: 64})
		for i := range 10 {
			mustPut(t, x, key(i), val(i), true)
		}
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
	}
	patch := func(off int64, b []byte) func(*testing.T, string) {
		return func(t *testing.T, path string) {
			valid(t, path)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
		}
	}
	// rewrite edits the header fields and recomputes the checksum, as a
	// buggy or malicious writer would.
	rewrite := func(edit func(h []byte)) func(*testing.T, string) {
		return func(t *testing.T, path string) {
			valid(t, path)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			edit(b)
			binary.LittleEndian.PutUint32(b[56:], crc32.Checksum(b[:56], crcTable))
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name    string
		make    func(*testing.T, string)
		wantMsg string
	}{
		{"empty file", func(t *testing.T, p string) { os.WriteFile(p, nil, 0o644) }, "shorter than"},
		{"short file", func(t *testing.T, p string) { os.WriteFile(p, []byte("cscIDX"), 0o644) }, "shorter than"},
		{"foreign file", func(t *testing.T, p string) {
			os.WriteFile(p, []byte(strings.Repeat(`{"event":"not an index"}`+"\n", 1000)), 0o644)
		}, "bad magic"},
		{"bad magic", patch(0, []byte("X")), "bad magic"},
		{"future version", patch(8, []byte{2}), "unsupported version 2"},
		{"flipped count byte", patch(32, []byte{0xff}), "checksum mismatch"},
		{"truncated", func(t *testing.T, p string) {
			valid(t, p)
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-slotSize)
		}, "header implies"},
		{"extended", func(t *testing.T, p string) {
			valid(t, p)
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()+4096)
		}, "header implies"},
		{"slot count not a power of two", rewrite(func(h []byte) { binary.LittleEndian.PutUint64(h[24:], 100) }), "bad slot count"},
		{"count above load limit", rewrite(func(h []byte) { binary.LittleEndian.PutUint64(h[32:], 1000) }), "exceeds half"},
		{"bad state", rewrite(func(h []byte) { binary.LittleEndian.PutUint32(h[48:], 7) }), "bad state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ids.idx")
			tt.make(t, path)
			x, err := Open(path, Options{})
			if err == nil {
				x.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("error %q does not wrap ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q should name %s and say %q", err, path, tt.wantMsg)
			}
		})
	}
}

func TestConcurrentGetDuringPut(t *testing.T) {
	n := 30_000
	if testing.Short() {
		n = 5000
	}
	path := filepath.Join(t.TempDir(), "ids.idx")
	// Small slots and cache: flushes and several rebuilds happen while
	// the readers run.
	x := mustOpen(t, path, Options{InitialSlots: 256, CacheBytes: 16 << 10})
	defer x.Close()
	var published atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for r := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			for published.Load() < int64(n) {
				p := published.Load()
				if p > 0 {
					i := int(rng.Int64N(p))
					v, ok, err := x.Get(key(i))
					if err != nil || !ok || v != val(i) {
						errc <- errors.Join(err, errors.New("published key "+strconv.Itoa(i)+" not found"))
						return
					}
				}
				if _, ok, err := x.Get(key(n + rng.IntN(n))); err != nil || ok {
					errc <- errors.Join(err, errors.New("absent key found"))
					return
				}
				_ = x.Len()
				_ = x.Checkpoint()
			}
		})
	}
	for i := range n {
		if _, err := x.Put(key(i), val(i)); err != nil {
			t.Fatal(err)
		}
		published.Store(int64(i + 1))
		if i%5000 == 0 {
			x.SetCheckpoint(uint64(i))
			if err := x.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

// TestHeapBounded checks that the Go heap does not grow with the number of
// keys: after inserting a million keys it is within the configured cache
// plus a small constant.
func TestHeapBounded(t *testing.T) {
	n := 1_000_000
	if testing.Short() || raceEnabled {
		n = 200_000
	}
	const cache = DefaultCacheBytes
	path := filepath.Join(t.TempDir(), "ids.idx")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	x := mustOpen(t, path, Options{CacheBytes: cache})
	defer x.Close()
	for i := range n {
		if _, err := x.Put(key(i), val(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i += 1000 {
		mustGet(t, x, key(i), val(i), true)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	grown := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%d keys, file %.1f MiB, CacheBytes %d KiB: HeapInuse %.2f MiB (%.2f MiB before Open, +%.2f MiB)",
		n, float64(st.Size())/(1<<20), cache>>10, float64(after.HeapInuse)/(1<<20),
		float64(before.HeapInuse)/(1<<20), float64(grown)/(1<<20))
	if grown > cache+512<<10 {
		t.Errorf("heap grew by %d bytes with %d keys, more than CacheBytes (%d) + 512 KiB", grown, n, cache)
	}
	if limit := 2*cache + 2<<20; after.HeapInuse > uint64(limit) {
		t.Errorf("HeapInuse %d above 2*CacheBytes + 2 MiB = %d", after.HeapInuse, limit)
	}
}

// FuzzIndex runs a random sequence of operations against the index and a Go
// map. Each op is three bytes: op, key, value.
func FuzzIndex(f *testing.F) {
	f.Add([]byte{0, 1, 2, 0, 1, 3, 4, 1, 0})
	f.Add([]byte{7, 1, 2, 7, 2, 3, 7, 3, 4, 6, 0, 0, 4, 2, 0, 5, 9, 9, 7, 4, 4, 4, 1, 0})
	f.Add([]byte{7, 0, 0, 7, 0, 1, 7, 0, 2, 7, 0, 3, 7, 0, 4, 6, 0, 0, 7, 0, 5, 5, 1, 1, 6, 0, 0, 7, 9, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "ids.idx")
		opts := Options{InitialSlots: 64, CacheBytes: 4096}
		x := mustOpen(t, path, opts)
		defer func() { x.Close() }()
		ref := map[string]uint64{}
		put := func(id string, v uint64) {
			_, exists := ref[id]
			mustPut(t, x, id, v, !exists)
			if !exists {
				ref[id] = v
			}
		}
		fkey := func(k byte) string { return strings.Repeat("x", int(k%5)*13) + strconv.Itoa(int(k)) }
		var ckpt uint64
		for i := 0; i+2 < len(data); i += 3 {
			op, k, v := data[i], data[i+1], uint64(data[i+2])
			switch op % 8 {
			case 0, 1, 2:
				put(fkey(k), v)
			case 3:
				ref, ok := ref[fkey(k)]
				mustGet(t, x, fkey(k), ref, ok)
			case 4:
				ckpt = v
				x.SetCheckpoint(v)
				if err := x.Sync(); err != nil {
					t.Fatal(err)
				}
			case 5, 6:
				if err := x.Close(); err != nil {
					t.Fatal(err)
				}
				x = mustOpen(t, path, opts)
				if x.Checkpoint() != ckpt {
					t.Fatalf("checkpoint %d after reopen, want %d", x.Checkpoint(), ckpt)
				}
			case 7:
				for j := range 40 {
					put("b"+strconv.Itoa(int(k))+"-"+strconv.Itoa(j), v<<8|uint64(j))
				}
			}
			if x.Len() != uint64(len(ref)) {
				t.Fatalf("Len = %d, want %d", x.Len(), len(ref))
			}
		}
		for id, v := range ref {
			mustGet(t, x, id, v, true)
		}
	})
}

func BenchmarkPut(b *testing.B) {
	path := filepath.Join(b.TempDir(), "ids.idx")
	x := mustOpen(b, path, Options{})
	defer x.Close()
	i := 0
	for b.Loop() {
		if _, err := x.Put(key(i), val(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "puts/s")
}

func BenchmarkGet(b *testing.B) {
	const n = 1_000_000
	path := filepath.Join(b.TempDir(), "ids.idx")
	x := mustOpen(b, path, Options{})
	defer x.Close()
	for i := range n {
		if _, err := x.Put(key(i), val(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := x.Sync(); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name    string
		present bool
	}{{"hit", true}, {"miss", false}} {
		b.Run(bc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				k := i % n
				if !bc.present {
					k += n
				}
				if _, ok, err := x.Get(key(k)); err != nil || ok != bc.present {
					b.Fatal(k, ok, err)
				}
				i++
			}
			b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "gets/s")
		})
	}
}

func TestOverlay(t *testing.T) {
	tests := []struct {
		name     string
		entries  int
		slots    uint64
		pos      func(r *rand.Rand, slots uint64) uint64
		wantFull bool
	}{
		{"uniform, big table", 300, 1 << 30, func(r *rand.Rand, s uint64) uint64 { return r.Uint64N(s) }, false},
		{"uniform, small table", 300, 64, func(r *rand.Rand, s uint64) uint64 { return r.Uint64N(s) }, false},
		{"clustered", 300, 1 << 20, func(r *rand.Rand, s uint64) uint64 { return 5000 + r.Uint64N(400) }, false},
		{"spill at the end", 300, 1 << 20, func(r *rand.Rand, s uint64) uint64 { return s - 1 - r.Uint64N(2000) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			o := newOverlay(tt.entries, tt.slots)
			ref := map[uint64]uint64{}
			full := false
			for len(ref) < o.limit && len(ref) < int(tt.slots) {
				p := tt.pos(r, tt.slots)
				if _, dup := ref[p]; dup {
					continue
				}
				if !o.put(p, p^0xabc, p*3) {
					full = true
					break // no room left after spill-over; state must be intact
				}
				ref[p] = p * 3
			}
			if o.n != len(ref) {
				t.Fatalf("n = %d, want %d", o.n, len(ref))
			}
			if full != tt.wantFull {
				t.Fatalf("overlay ran out of room: %v, want %v", full, tt.wantFull)
			}
			for p, v := range ref {
				if e := o.get(p); e == nil || e.val != v || e.hash != p^0xabc {
					t.Fatalf("get(%d) = %+v, want val %d", p, e, v)
				}
			}
			for range 1000 {
				p := tt.pos(r, tt.slots)
				if _, in := ref[p]; !in && o.get(p) != nil {
					t.Fatalf("get(%d) found an absent position", p)
				}
			}
			es := o.compact()
			if len(es) != len(ref) {
				t.Fatalf("compact returned %d entries, want %d", len(es), len(ref))
			}
			for i := 1; i < len(es); i++ {
				if es[i-1].pos1 >= es[i].pos1 {
					t.Fatalf("compacted entries not in position order at %d", i)
				}
			}
			o.reset()
			if o.n != 0 || o.get(es[0].pos1-1) != nil {
				t.Fatal("reset left entries behind")
			}
		})
	}
}

// TestWriteErrorIsSticky checks that after a failed write the index refuses
// further use instead of running on in an unknown state.
func TestWriteErrorIsSticky(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ids.idx")
	x := mustOpen(t, path, Options{CacheBytes: 4096})
	mustPut(t, x, "a", 1, true)
	if err := x.Sync(); err != nil {
		t.Fatal(err)
	}
	x.f.Close() // every later read and write fails
	var err error
	for i := 0; err == nil && i < 1000; i++ {
		_, err = x.Put(key(i), 1)
	}
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Put error = %v, want one naming %s", err, path)
	}
	if _, err2 := x.Put("b", 2); err2 == nil {
		t.Fatal("Put after a write error succeeded")
	}
	if _, _, err2 := x.Get("a"); err2 == nil {
		t.Fatal("Get after a write error succeeded")
	}
	if err2 := x.Sync(); err2 == nil {
		t.Fatal("Sync after a write error succeeded")
	}
	if err2 := x.Close(); err2 == nil {
		t.Fatal("Close after a write error reported success")
	}
	x = mustOpen(t, path, Options{})
	defer x.Close()
	mustGet(t, x, "a", 1, true)
}
