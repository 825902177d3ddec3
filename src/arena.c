/* arena.c -- per-request bump allocator (see arena.h). Owns its chunk list; must not be used to hold
 * anything that outlives a request, and never frees single allocations. */
#include "strata/arena.h"

#include <stdlib.h>
#include <string.h>

#include "strata/common.h"

struct arena_chunk {
	struct arena_chunk *next;
	size_t cap;  /* usable bytes in data[] */
	size_t used;
	_Alignas(ARENA_ALIGN) unsigned char data[];
};

#define ARENA_DEFAULT_CHUNK_BYTES (16 * 1024)

void arena_init(struct arena *a, size_t chunk_bytes, size_t limit_bytes)
{
	a->head = NULL;
	a->chunk_bytes = chunk_bytes ? chunk_bytes : ARENA_DEFAULT_CHUNK_BYTES;
	a->limit_bytes = limit_bytes;
	a->used_bytes = 0;
}

static struct arena_chunk *arena_new_chunk(size_t cap)
{
	if (cap > SIZE_MAX - sizeof(struct arena_chunk))
		return NULL;
	struct arena_chunk *c = malloc(sizeof *c + cap);
	if (!c)
		return NULL;
	c->next = NULL;
	c->cap = cap;
	c->used = 0;
	return c;
}

void *arena_alloc(struct arena *a, size_t n)
{
	if (n > SIZE_MAX - 2 * ARENA_ALIGN)
		return NULL;
	size_t need = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	if (need == 0)
		need = ARENA_ALIGN; /* distinct pointers even for empty allocations */
	if (a->limit_bytes && need > a->limit_bytes - ST_MIN(a->used_bytes, a->limit_bytes))
		return NULL;
	struct arena_chunk *c = a->head;
	if (!c || c->cap - c->used < need) {
		if (need > a->chunk_bytes / 4) {
			/* A big block gets a chunk of its own behind the current one, so the space left in the
			 * current chunk stays usable for the small allocations that follow. */
			struct arena_chunk *big = arena_new_chunk(need);
			if (!big)
				return NULL;
			if (c) {
				big->next = c->next;
				c->next = big;
			} else {
				a->head = big;
			}
			big->used = need;
			a->used_bytes += need;
			return big->data;
		}
		c = arena_new_chunk(a->chunk_bytes);
		if (!c)
			return NULL;
		c->next = a->head;
		a->head = c;
	}
	void *p = c->data + c->used;
	c->used += need;
	a->used_bytes += need;
	return p;
}

void *arena_calloc(struct arena *a, size_t count, size_t size)
{
	if (size && count > SIZE_MAX / size)
		return NULL;
	void *p = arena_alloc(a, count * size);
	if (p)
		memset(p, 0, count * size);
	return p;
}

void *arena_memdup(struct arena *a, const void *p, size_t n)
{
	void *q = arena_alloc(a, n);
	if (q && n)
		memcpy(q, p, n);
	return q;
}

void arena_reset(struct arena *a)
{
	struct arena_chunk *keep = NULL, *c = a->head;
	while (c) {
		struct arena_chunk *next = c->next;
		if (!keep && c->cap == a->chunk_bytes) {
			keep = c;
		} else {
			free(c);
		}
		c = next;
	}
	if (keep) {
		keep->next = NULL;
		keep->used = 0;
	}
	a->head = keep;
	a->used_bytes = 0;
}

void arena_destroy(struct arena *a)
{
	struct arena_chunk *c = a->head;
	while (c) {
		struct arena_chunk *next = c->next;
		free(c);
		c = next;
	}
	a->head = NULL;
	a->used_bytes = 0;
}
