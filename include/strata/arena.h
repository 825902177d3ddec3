/* arena.h -- per-request bump allocator: decoded messages (arrays of structs) live here and are freed
 * all at once when the request is done. Owns only its chunks; it never frees single allocations and
 * never touches the buffers that decoded views point into.
 *
 * A limit bounds the total bytes one request may make the broker allocate: a hostile request cannot
 * turn a small frame into a huge decode. Allocation past the limit fails like malloc failure (NULL). */
#ifndef STRATA_ARENA_H
#define STRATA_ARENA_H

#include <stddef.h>
#include <stdint.h>

struct arena_chunk;

struct arena {
	struct arena_chunk *head; /* current chunk; older chunks follow via ->next */
	size_t chunk_bytes;       /* size of ordinary chunks */
	size_t limit_bytes;       /* max bytes handed out between resets; 0 = unlimited */
	size_t used_bytes;        /* bytes handed out since init/reset, incl. alignment padding */
};

/* Alignment of every allocation. */
#define ARENA_ALIGN 16

/* chunk_bytes 0 picks a default (16 KiB). No memory is allocated until the first arena_alloc. */
void arena_init(struct arena *a, size_t chunk_bytes, size_t limit_bytes);
/* Returns ARENA_ALIGN-aligned, uninitialised memory, or NULL (out of memory or over the limit).
 * n == 0 returns a valid unique pointer. */
void *arena_alloc(struct arena *a, size_t n);
/* Zeroed count*size bytes; NULL on overflow too. */
void *arena_calloc(struct arena *a, size_t count, size_t size);
/* Copies n bytes into the arena (e.g. to keep a string view past its input buffer). */
void *arena_memdup(struct arena *a, const void *p, size_t n);
/* Forgets every allocation; keeps one ordinary chunk for the next request, frees the rest. */
void arena_reset(struct arena *a);
/* Frees everything; the arena may be arena_init'ed again. */
void arena_destroy(struct arena *a);

#endif
