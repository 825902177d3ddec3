/* chain.c -- response link chains: memory (borrowed or owned copies) and file ranges, each
 * released exactly once. Owns only link storage; never reads file data (except chain_flatten,
 * a blocking helper for tests) and never touches sockets. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strata/chain.h"
#include "strata/common.h"

void chain_init(struct chain *c)
{
	c->head = NULL;
	c->tail = NULL;
	c->len_bytes = 0;
	c->links = 0;
}

static void link_push(struct chain *c, struct chain_link *l)
{
	l->next = NULL;
	if (c->tail)
		c->tail->next = l;
	else
		c->head = l;
	c->tail = l;
	ST_ASSERT(c->len_bytes + l->len >= c->len_bytes);
	c->len_bytes += l->len;
	c->links++;
}

/* Runs l's release and frees storage the chain owns. l must be unlinked already. */
static void link_release(struct chain_link *l)
{
	chain_release_fn fn = l->release;
	void *ctx = l->ctx;
	if (!(l->flags & CHAIN_LINK_EXTERNAL))
		free(l);
	/* Last: for external links the callback may free the storage l lives in. */
	if (fn)
		fn(ctx);
}

/* Owned copies live right after the link struct (its size keeps them 8-byte aligned). */
static inline uint8_t *link_data(struct chain_link *l) { return (uint8_t *)(l + 1); }

static struct chain_link *link_alloc(size_t data_cap)
{
	if (data_cap > SIZE_MAX - sizeof(struct chain_link))
		return NULL;
	struct chain_link *l = malloc(sizeof *l + data_cap);
	if (!l)
		return NULL;
	memset(l, 0, sizeof *l);
	l->fd = -1;
	return l;
}

int chain_append_mem(struct chain *c, const void *ptr, size_t len, chain_release_fn free_fn,
		     void *ctx)
{
	if (len == 0) {
		if (free_fn)
			free_fn(ctx);
		return 0;
	}
	struct chain_link *l = link_alloc(0);
	if (!l) {
		if (free_fn)
			free_fn(ctx);
		return -ENOMEM;
	}
	l->kind = CHAIN_MEM;
	l->ptr = ptr;
	l->len = len;
	l->release = free_fn;
	l->ctx = ctx;
	link_push(c, l);
	return 0;
}

/* Room at the end of the tail's owned copy buffer, or NULL. Only a tail nobody started
 * consuming is extended: a sender may hold a pointer/length pair into a link in flight. */
static uint8_t *tail_room(struct chain *c, size_t len)
{
	struct chain_link *t = c->tail;
	if (!t || !(t->flags & CHAIN_LINK_OWNED_COPY) || t->done != 0 || t->cap - t->len < len)
		return NULL;
	uint8_t *p = link_data(t) + t->len;
	t->len += len;
	c->len_bytes += len;
	return p;
}

void *chain_reserve(struct chain *c, size_t len)
{
	uint8_t *p = tail_room(c, len);
	if (p)
		return p;
	size_t cap = ST_MAX(len, (size_t)CHAIN_COPY_CHUNK_BYTES - sizeof(struct chain_link));
	struct chain_link *l = link_alloc(cap);
	if (!l)
		return NULL;
	l->kind = CHAIN_MEM;
	l->flags = CHAIN_LINK_OWNED_COPY;
	l->cap = cap;
	l->ptr = link_data(l);
	l->len = len;
	link_push(c, l);
	return link_data(l);
}

int chain_append_copy(struct chain *c, const void *ptr, size_t len)
{
	if (len == 0)
		return 0;
	void *p = chain_reserve(c, len);
	if (!p)
		return -ENOMEM;
	memcpy(p, ptr, len);
	return 0;
}

int chain_append_file(struct chain *c, int fd, int64_t file_pos, size_t len,
		      chain_release_fn release_fn, void *ctx)
{
	if (len == 0) {
		if (release_fn)
			release_fn(ctx);
		return 0;
	}
	ST_ASSERT(fd >= 0 && file_pos >= 0);
	struct chain_link *l = link_alloc(0);
	if (!l) {
		if (release_fn)
			release_fn(ctx);
		return -ENOMEM;
	}
	l->kind = CHAIN_FILE;
	l->fd = fd;
	l->file_pos = file_pos;
	l->len = len;
	l->release = release_fn;
	l->ctx = ctx;
	link_push(c, l);
	return 0;
}

void chain_append_link(struct chain *c, struct chain_link *l)
{
	ST_ASSERT(l->kind == CHAIN_MEM || l->kind == CHAIN_FILE);
	l->flags = CHAIN_LINK_EXTERNAL;
	l->done = 0;
	l->cap = 0;
	link_push(c, l);
}

void chain_concat(struct chain *dst, struct chain *src)
{
	if (!src->head)
		return;
	if (dst->tail)
		dst->tail->next = src->head;
	else
		dst->head = src->head;
	dst->tail = src->tail;
	ST_ASSERT(dst->len_bytes + src->len_bytes >= dst->len_bytes);
	dst->len_bytes += src->len_bytes;
	dst->links += src->links;
	chain_init(src);
}

void chain_consume(struct chain *c, size_t n)
{
	ST_ASSERT(n <= c->len_bytes);
	/* Bounded by the number of links: each iteration consumes a link or ends. */
	while (c->head) {
		struct chain_link *l = c->head;
		size_t left = l->len - l->done;
		if (n < left) {
			l->done += n;
			c->len_bytes -= n;
			return;
		}
		n -= left;
		c->len_bytes -= left;
		c->head = l->next;
		if (!c->head)
			c->tail = NULL;
		c->links--;
		link_release(l);
		if (n == 0 && (!c->head || c->head->len - c->head->done > 0))
			return;
	}
	ST_ASSERT(n == 0);
}

void chain_release(struct chain *c)
{
	struct chain_link *l = c->head;
	chain_init(c);
	while (l) {
		struct chain_link *next = l->next;
		link_release(l);
		l = next;
	}
}

ssize_t chain_flatten(const struct chain *c, void *dst, size_t cap)
{
	if (c->len_bytes > cap)
		return -ENOSPC;
	uint8_t *out = dst;
	size_t at = 0;
	for (const struct chain_link *l = c->head; l; l = l->next) {
		size_t n = l->len - l->done;
		if (l->kind == CHAIN_MEM) {
			memcpy(out + at, l->ptr + l->done, n);
		} else {
			size_t got = 0;
			while (got < n) {
				ssize_t r = pread(l->fd, out + at + got, n - got,
						  (off_t)(l->file_pos + (int64_t)(l->done + got)));
				if (r < 0 && errno == EINTR)
					continue;
				if (r < 0)
					return -errno;
				if (r == 0)
					return -EIO;
				got += (size_t)r;
			}
		}
		at += n;
	}
	return (ssize_t)at;
}
