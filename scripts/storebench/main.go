// storebench measures an id index (event id -> broker position) on Pebble and bbolt: the
// shape of cascade's trace index and the view's id set.
package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	bolt "go.etcd.io/bbolt"
)

func id(i int) []byte {
	h := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
	return []byte("chips-" + hex.EncodeToString(h[:16]))
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}

func maxRSS() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss / 1024
}

func lookups(n int, get func(k []byte) bool) (p50, p99 time.Duration) {
	r := rand.New(rand.NewPCG(1, 2))
	ds := make([]time.Duration, 100000)
	for i := range ds {
		k := id(r.IntN(n))
		t := time.Now()
		if !get(k) {
			panic("missing")
		}
		ds[i] = time.Since(t)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2], ds[len(ds)*99/100]
}

const batch = 1000

func main() {
	which := flag.String("store", "pebble", "pebble or bbolt")
	n := flag.Int("n", 1000000, "ids")
	flag.Parse()
	dir, _ := os.MkdirTemp("", "storebench-")
	defer os.RemoveAll(dir)
	val := make([]byte, 8)
	var put time.Duration
	var p50, p99 time.Duration
	switch *which {
	case "pebble":
		db, err := pebble.Open(dir, &pebble.Options{})
		if err != nil {
			panic(err)
		}
		start := time.Now()
		for i := 0; i < *n; i += batch {
			b := db.NewBatch()
			for j := i; j < min(i+batch, *n); j++ {
				binary.BigEndian.PutUint64(val, uint64(j))
				b.Set(id(j), val, nil)
			}
			b.Set([]byte("\x00checkpoint"), val, nil)
			if err := b.Commit(pebble.NoSync); err != nil {
				panic(err)
			}
		}
		db.Flush()
		put = time.Since(start)
		p50, p99 = lookups(*n, func(k []byte) bool {
			v, c, err := db.Get(k)
			if err != nil {
				return false
			}
			_ = v
			c.Close()
			return true
		})
		db.Close()
	case "bbolt":
		db, err := bolt.Open(filepath.Join(dir, "ids.db"), 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true})
		if err != nil {
			panic(err)
		}
		start := time.Now()
		for i := 0; i < *n; i += batch {
			err := db.Update(func(tx *bolt.Tx) error {
				bk, err := tx.CreateBucketIfNotExists([]byte("ids"))
				if err != nil {
					return err
				}
				for j := i; j < min(i+batch, *n); j++ {
					binary.BigEndian.PutUint64(val, uint64(j))
					if err := bk.Put(id(j), append([]byte(nil), val...)); err != nil {
						return err
					}
				}
				return tx.Bucket([]byte("ids")).Put([]byte("\x00checkpoint"), val)
			})
			if err != nil {
				panic(err)
			}
		}
		db.Sync()
		put = time.Since(start)
		p50, p99 = lookups(*n, func(k []byte) bool {
			ok := false
			db.View(func(tx *bolt.Tx) error { ok = tx.Bucket([]byte("ids")).Get(k) != nil; return nil })
			return ok
		})
		db.Close()
	}
	runtime.GC()
	fmt.Printf("%s n=%d puts/s=%.0f lookup_p50=%s lookup_p99=%s disk=%.1fMiB maxrss=%dMiB\n", strings.ToUpper(*which), *n,
		float64(*n)/put.Seconds(), p50, p99, float64(dirSize(dir))/(1<<20), maxRSS())
}
