//go:build cgo && linux

package main

/*
#include <malloc.h>
#include <stdlib.h>

static void cascade_arena_max(int n) {
#ifdef M_ARENA_MAX
	if (getenv("MALLOC_ARENA_MAX") == NULL) {
		mallopt(M_ARENA_MAX, n);
	}
#endif
}
*/
import "C"

// mallocArenas bounds glibc's malloc arenas, unless MALLOC_ARENA_MAX says otherwise. With cgo,
// Pebble (the view) allocates its block cache and memtables with C malloc, outside the Go heap
// and its memory limit; glibc gives each thread that finds an arena busy one of its own, up to
// eight per core, and each keeps what was freed in it. Over a long replay that grew run's
// resident memory with the history: after 1M signals eight arenas held ~160 MiB for Pebble's
// ~40 MiB of cache and memtables (/proc/PID/smaps). Without cgo Pebble allocates in the Go
// heap, and this file is not built.
const mallocArenas = 2

func init() { C.cascade_arena_max(mallocArenas) }
