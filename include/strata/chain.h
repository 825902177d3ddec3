/* chain.h -- a response as a chain of links (the nginx ngx_chain_t idiom): each link is either
 * memory (borrowed with an optional free callback, or an owned copy) or a byte range of a file
 * that the network layer sends without copying it through user space. The chain owns its links
 * and runs every link's release exactly once: when the bytes were consumed (sent) or when the
 * chain is released (connection died). It does no I/O itself (except chain_flatten, for tests).
 * Not thread-safe; a chain belongs to whoever holds it. */
#ifndef STRATA_CHAIN_H
#define STRATA_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef void (*chain_release_fn)(void *ctx);

enum chain_kind {
	CHAIN_MEM = 1,   /* ptr/len in memory */
	CHAIN_FILE = 2,  /* fd/file_pos/len on disk */
};

/* Link flags. */
#define CHAIN_LINK_OWNED_COPY 0x1u  /* the link owns a copy (chain_append_copy/reserve) */
#define CHAIN_LINK_EXTERNAL   0x2u  /* storage is the caller's (chain_append_link): never freed
                                       by the chain; its release callback may free it */

/* Public so the network layer can walk a chain while sending; other code should use the
 * functions below. A link's bytes are [done, len) once consumption started. */
struct chain_link {
	struct chain_link *next;
	uint8_t kind;                   /* enum chain_kind */
	uint8_t flags;                  /* CHAIN_LINK_* */
	size_t len;                     /* bytes in the link */
	size_t done;                    /* bytes already consumed from the front */
	chain_release_fn release;       /* NULL: nothing to run */
	void *ctx;
	const uint8_t *ptr;             /* CHAIN_MEM */
	size_t cap;                     /* owned copies: capacity */
	int fd;                         /* CHAIN_FILE */
	int64_t file_pos;               /* CHAIN_FILE: offset of byte 0 of the link */
	/* owned copies: cap bytes of data follow the struct in the same allocation */
};

struct chain {
	struct chain_link *head;
	struct chain_link *tail;
	size_t len_bytes;               /* unconsumed bytes over all links */
	uint32_t links;
};

void chain_init(struct chain *c);

/* Appends len bytes at ptr, borrowed: they must stay valid and unchanged until free_fn(ctx) runs
 * (after they were sent, or at chain_release). free_fn may be NULL (static data). The chain takes
 * ownership in every case: on failure (-ENOMEM) free_fn has already run. len 0 runs free_fn now. */
int chain_append_mem(struct chain *c, const void *ptr, size_t len, chain_release_fn free_fn,
		     void *ctx);

/* Appends a copy of len bytes; small copies are packed into the tail's owned buffer (chunks of
 * CHAIN_COPY_CHUNK_BYTES) so building a response of many small fields costs few allocations.
 * Returns 0 or -ENOMEM (the chain is unchanged). */
int chain_append_copy(struct chain *c, const void *ptr, size_t len);
#define CHAIN_COPY_CHUNK_BYTES 4096

/* Reserves len bytes at the end of the chain in an owned buffer and returns where to write them
 * (e.g. a size or count to fill in once known). The pointer stays valid until the link is
 * consumed or released; appending more does not move it. NULL on -ENOMEM. */
void *chain_reserve(struct chain *c, size_t len);

/* Appends the file range [file_pos, file_pos + len) of fd, sent without a user-space copy where
 * possible. fd must stay open and the range readable until release_fn(ctx) runs (when the range
 * was sent or the chain released): e.g. ctx = a heap copy of a struct log_slice, release_fn =
 * a function calling log_slice_release and free. Takes ownership in every case: on failure
 * (-ENOMEM) release_fn has already run. len 0 runs release_fn now. */
int chain_append_file(struct chain *c, int fd, int64_t file_pos, size_t len,
		      chain_release_fn release_fn, void *ctx);

/* Appends a link whose storage the caller owns (embedded in another struct, no allocation):
 * l->kind, ptr or fd/file_pos, len, release and ctx set by the caller; next, done and flags are
 * set here. The chain never frees l; l->release may (it runs after the chain's last use of l). */
void chain_append_link(struct chain *c, struct chain_link *l);

/* Moves every link of src to the end of dst; src is left empty. */
void chain_concat(struct chain *dst, struct chain *src);

static inline size_t chain_len(const struct chain *c) { return c->len_bytes; }
static inline bool chain_empty(const struct chain *c) { return c->head == NULL; }

/* Consumes n bytes from the front (n <= chain_len): links fully consumed are unlinked and
 * released in order. */
void chain_consume(struct chain *c, size_t n);

/* Releases every link (runs every release callback, frees owned storage); c is empty after. */
void chain_release(struct chain *c);

/* Copies the chain's unconsumed bytes into dst (reading file links with pread: BLOCKING, for
 * tests and tools, never on a reactor). Returns the bytes copied or -errno; -ENOSPC when cap is
 * too small, -EIO when a file range is short. The chain is unchanged. */
ssize_t chain_flatten(const struct chain *c, void *dst, size_t cap);

#endif
