/* rcache.c -- remote read cache (rcache.h): chunk boundaries from each remote segment's offset
 * index object, chunks downloaded by ranged GETs on download threads, verified, written to
 * files in the cache directory and served as file ranges; an LRU bounded by bytes and count.
 * A store whose objects are local files (file://) is not copied: the chunk is read from the
 * bucket's own file, verified, and that file is served (see "local chunks" below).
 * Locking: one mutex over the tables, queues and counters, never held across I/O. The reactor
 * takes it for lookups and reference counts only. Must not block the reactor on the network. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <sched.h>
#include <unistd.h>

#include "strata/batch.h"
#include "strata/common.h"
#include "strata/compress.h"
#include "strata/crc32c.h"
#include "strata/kerr.h"
#include "strata/slog.h"
#include "strata/fsutil.h"
#include "objstore.h"
#include "rcache.h"

#define RC_BUCKETS 4096
#define RC_QUEUE_CAP 512
#define RC_SPARSE_BYTES 4096        /* a sparse entry at least every this many bytes of a chunk */
#define RC_MAX_METAS 4096
#define RC_TS_SLOTS 32
#define RC_TS_FRESH_MS 10000
#define RC_INFLATE_MAX (256u << 20)
#define RC_INDEX_MAX_BYTES (64u << 20)
#define RC_LOCAL_WINDOW_BYTES (256u << 10) /* a local chunk is read and verified this much at a
                                              time: small enough to stay in the CPU's L2 */

enum { ST_LOADING, ST_READY, ST_FAILED };

/* Chunk boundaries of one remote segment, from its offset index object. Immutable once READY. */
struct seg_meta {
	struct seg_meta *hnext, *lru_prev, *lru_next;
	char key[MANIFEST_KEY_MAX];
	uint32_t hash;
	int state, err;
	int64_t fail_until_ms;
	int32_t n_chunks;
	int64_t *pos;                   /* n_chunks + 1: chunk k is [pos[k], pos[k+1]) */
	int64_t *first_last;            /* last offset of chunk k's first batch (k = 0: base - 1) */
};

struct sparse {
	int64_t pos;                    /* a batch start in the chunk file */
	int64_t offset;                 /* that batch's base offset */
};

struct rcache_chunk {
	struct rcache_chunk *hnext, *lru_prev, *lru_next;
	char key[MANIFEST_KEY_MAX];
	int32_t idx;
	uint32_t hash;
	int state, err;
	int64_t fail_until_ms;
	int refs;
	int fd;
	char path[20];                  /* file name in the cache directory ("" for a local chunk) */
	int64_t base;                   /* where the chunk starts in fd (0 in a cache file) */
	bool local;                     /* fd is the bucket's own file (file://), not a copy */
	bool detached;                  /* out of the tables; freed by the last slice release */
	off_t size;                     /* local: the file as it was verified (see local_changed) */
	struct timespec ctime;
	int64_t len;
	int64_t first_offset, next_offset;
	bool last_chunk;
	bool demand;                    /* downloaded for a waiting read ... */
	bool read;                      /* ... which has not come back for it yet */
	bool wanted;                    /* LOADING, and a read waits for it (see prefetch threads) */
	int64_t ready_ms;
	struct sparse *sp;
	int32_t n_sp;
};

enum { JOB_CHUNK, JOB_TS };

struct job {
	int kind;
	struct rcache_seg seg;
	int32_t chunk_idx;              /* -1: the meta first, then the chunk holding want_offset */
	int64_t want_offset;
	int64_t ts;                     /* JOB_TS */
	bool prefetch;
};

struct ts_slot {
	char key[MANIFEST_KEY_MAX];
	int64_t ts;
	int state, err;
	int64_t off, ts_out, done_ms, used_ms;
	bool used;
};

struct job_ring {
	struct job *v[RC_QUEUE_CAP];
	uint32_t head, n;
};

struct rcache {
	struct rcache_config cfg;
	char dir[4096];
	int dirfd;
	struct objstore *os;
	rcache_done_fn done;
	void *done_ctx;
	pthread_mutex_t lock;
	pthread_cond_t cond;            /* demand threads wait here */
	pthread_cond_t cond_prefetch;   /* prefetch threads wait here */
	pthread_t *threads;
	int n_threads;
	int n_prefetch_threads;         /* of n_threads, the prefetch class (cfg.prefetch_threads) */
	bool stop;
	struct job_ring demand, prefetch;
	struct rcache_chunk *chunks[RC_BUCKETS];
	struct seg_meta *metas[RC_BUCKETS];
	struct rcache_chunk lru;        /* sentinel: lru.lru_next = most recent */
	struct seg_meta meta_lru;
	int32_t n_metas;
	struct ts_slot ts[RC_TS_SLOTS];
	uint64_t file_seq;
	bool no_local;                  /* the store has no local files: download and copy */
	uint64_t wanted_gen;            /* atomic: +1 whenever a read marks a LOADING chunk wanted */
	int64_t last_trim_ms;           /* rcache_trim's last periodic run (download threads) */
	struct rcache_stats st;
};

void rcache_config_defaults(struct rcache_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->max_bytes = 1ll << 30;
	cfg->min_free_bytes = 128ll << 20;
	cfg->max_chunks = 1024;
	cfg->chunk_bytes = 4 << 20;
	cfg->threads = 2;
	cfg->prefetch_threads = 2;
	cfg->prefetch_chunks = 4;
	cfg->local_direct = true;
}

static uint32_t key_hash(const char *key, int32_t idx)
{
	uint32_t h = crc32c(0, key, strlen(key));
	return (h ^ ((uint32_t)idx * 0x9e3779b9u)) % RC_BUCKETS;
}

/* --- LRU lists ------------------------------------------------------------------------------- */

static void lru_unlink(struct rcache_chunk *c)
{
	c->lru_prev->lru_next = c->lru_next;
	c->lru_next->lru_prev = c->lru_prev;
	c->lru_prev = c->lru_next = NULL;
}

static void lru_front(struct rcache *rc, struct rcache_chunk *c)
{
	if (c->lru_next)
		lru_unlink(c);
	c->lru_next = rc->lru.lru_next;
	c->lru_prev = &rc->lru;
	rc->lru.lru_next->lru_prev = c;
	rc->lru.lru_next = c;
}

static void meta_lru_unlink(struct seg_meta *m)
{
	m->lru_prev->lru_next = m->lru_next;
	m->lru_next->lru_prev = m->lru_prev;
	m->lru_prev = m->lru_next = NULL;
}

static void meta_lru_front(struct rcache *rc, struct seg_meta *m)
{
	if (m->lru_next)
		meta_lru_unlink(m);
	m->lru_next = rc->meta_lru.lru_next;
	m->lru_prev = &rc->meta_lru;
	rc->meta_lru.lru_next->lru_prev = m;
	rc->meta_lru.lru_next = m;
}

/* --- tables (lock held) ---------------------------------------------------------------------- */

static struct rcache_chunk *chunk_find(struct rcache *rc, const char *key, int32_t idx)
{
	for (struct rcache_chunk *c = rc->chunks[key_hash(key, idx)]; c; c = c->hnext)
		if (c->idx == idx && strcmp(c->key, key) == 0)
			return c;
	return NULL;
}

/* A cache file is never reused for another chunk, even though writing into its existing pages
 * would be cheaper than into new ones: a send of the old chunk spliced those pages into socket
 * buffers, which may still hold them (zero copy) after the slice was released. */
static void chunk_free(struct rcache *rc, struct rcache_chunk *c)
{
	if (c->fd >= 0) {
		close(c->fd);
		if (c->path[0])
			unlinkat(rc->dirfd, c->path, 0);
	}
	free(c->sp);
	free(c);
}

/* Takes c out of the table, the LRU and the counters (a new chunk may take its place). */
static void chunk_detach(struct rcache *rc, struct rcache_chunk *c)
{
	if (c->detached)
		return;
	for (struct rcache_chunk **pp = &rc->chunks[c->hash]; *pp; pp = &(*pp)->hnext)
		if (*pp == c) {
			*pp = c->hnext;
			break;
		}
	if (c->lru_next)
		lru_unlink(c);
	if (c->state == ST_READY) {
		rc->st.cached_bytes -= c->len;
		rc->st.cached_chunks--;
	}
	c->detached = true;
}

static void chunk_remove(struct rcache *rc, struct rcache_chunk *c)
{
	chunk_detach(rc, c);
	chunk_free(rc, c);
}

static struct rcache_chunk *chunk_new(struct rcache *rc, const char *key, int32_t idx)
{
	struct rcache_chunk *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	snprintf(c->key, sizeof c->key, "%s", key);
	c->idx = idx;
	c->hash = key_hash(key, idx);
	c->fd = -1;
	c->state = ST_LOADING;
	c->hnext = rc->chunks[c->hash];
	rc->chunks[c->hash] = c;
	return c;
}

/* A chunk fetched for a parked read is kept until that read came back for it (or a while):
 * evicting it first would make the read download it again, forever, in a small cache. */
#define RC_FRESH_HOLD_MS 10000

/* Drops least recently used unreferenced chunks until the bounds hold (bounded by the list).
 * Returns them detached, linked through hnext, for free_evicted after the lock is released:
 * closing and unlinking files under the lock would hold up the reactor. */
static struct rcache_chunk *evict_locked(struct rcache *rc)
{
	struct rcache_chunk *out = NULL;
	struct rcache_chunk *c = rc->lru.lru_prev;
	int64_t now = st_now_ms();
	while (c != &rc->lru && (rc->st.cached_bytes > rc->cfg.max_bytes ||
				 rc->st.cached_chunks > rc->cfg.max_chunks)) {
		struct rcache_chunk *prev = c->lru_prev;
		bool fresh = c->state == ST_READY && c->demand && !c->read &&
			     now - c->ready_ms < RC_FRESH_HOLD_MS;
		/* a failure is remembered for its hold time (it holds no bytes) */
		bool held = c->state == ST_FAILED && now < c->fail_until_ms;
		if (c->refs == 0 && c->state != ST_LOADING && !fresh && !held) {
			if (c->state == ST_READY)
				rc->st.evictions++;
			chunk_detach(rc, c);
			c->hnext = out;
			out = c;
		}
		c = prev;
	}
	return out;
}

static void free_evicted(struct rcache *rc, struct rcache_chunk *list)
{
	while (list) {
		struct rcache_chunk *next = list->hnext;
		chunk_free(rc, list);
		list = next;
	}
}

/* --- disk pressure ----------------------------------------------------------------------------- */

/* Bytes an unprivileged writer may still use on the cache directory's file system; -1 unknown. */
static int64_t fs_free_bytes(const struct rcache *rc)
{
	struct statvfs sv;
	if (statvfs(rc->dir, &sv) < 0)
		return -1;
	return (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
}

/* Detaches unreferenced chunk files (not bucket files: they take no cache space), least
 * recently used first, until want bytes are freed (lock held; bounded by the list). */
static struct rcache_chunk *pressure_evict_locked(struct rcache *rc, int64_t want, int *n)
{
	struct rcache_chunk *out = NULL;
	int64_t freed = 0;
	*n = 0;
	for (struct rcache_chunk *c = rc->lru.lru_prev; c != &rc->lru && freed < want;) {
		struct rcache_chunk *prev = c->lru_prev;
		if (c->refs == 0 && c->state == ST_READY && !c->local && c->path[0]) {
			freed += c->len;
			chunk_detach(rc, c);
			c->hnext = out;
			out = c;
			(*n)++;
			rc->st.pressure_evictions++;
		}
		c = prev;
	}
	return out;
}

/* Makes room for a chunk file of len bytes above min_free_bytes. Returns 0, or -ENOSPC with
 * why when even an empty cache would cross it. */
static int pressure_room(struct rcache *rc, int64_t len, char *why, size_t why_len)
{
	int64_t min_free = __atomic_load_n(&rc->cfg.min_free_bytes, __ATOMIC_RELAXED);
	if (min_free <= 0)
		return 0;
	int64_t fr = fs_free_bytes(rc);
	if (fr < 0 || fr - len >= min_free)
		return 0;
	int n;
	pthread_mutex_lock(&rc->lock);
	struct rcache_chunk *list = pressure_evict_locked(rc, min_free - (fr - len), &n);
	pthread_mutex_unlock(&rc->lock);
	free_evicted(rc, list);
	fr = fs_free_bytes(rc);
	if (fr < 0 || fr - len >= min_free)
		return 0;
	pthread_mutex_lock(&rc->lock);
	rc->st.pressure_refusals++;
	pthread_mutex_unlock(&rc->lock);
	snprintf(why, why_len, "disk pressure in %.300s: %" PRId64 " bytes free, a chunk of %" PRId64
		 " would leave less than strata.tier.cache.min.free.bytes=%" PRId64 " (%d cached chunks "
		 "dropped)", rc->dir, fr, len, min_free, n);
	return -ENOSPC;
}

void rcache_set_min_free_bytes(struct rcache *rc, int64_t min_free_bytes)
{
	__atomic_store_n(&rc->cfg.min_free_bytes, min_free_bytes, __ATOMIC_RELAXED);
}

int rcache_trim(struct rcache *rc)
{
	int64_t min_free = __atomic_load_n(&rc->cfg.min_free_bytes, __ATOMIC_RELAXED);
	if (min_free <= 0)
		return 0;
	int64_t fr = fs_free_bytes(rc);
	if (fr < 0 || fr >= min_free)
		return 0;
	int n;
	pthread_mutex_lock(&rc->lock);
	struct rcache_chunk *list = pressure_evict_locked(rc, min_free - fr, &n);
	pthread_mutex_unlock(&rc->lock);
	free_evicted(rc, list);
	if (n > 0)
		slog_warn("tier", "read cache %s: %" PRId64 " bytes free, under strata.tier.cache.min.free."
			  "bytes=%" PRId64 ": dropped %d cached chunks", rc->dir, fr, min_free, n);
	return n;
}

static struct seg_meta *meta_find(struct rcache *rc, const char *key)
{
	for (struct seg_meta *m = rc->metas[key_hash(key, -1)]; m; m = m->hnext)
		if (strcmp(m->key, key) == 0)
			return m;
	return NULL;
}

static void meta_remove(struct rcache *rc, struct seg_meta *m)
{
	for (struct seg_meta **pp = &rc->metas[m->hash]; *pp; pp = &(*pp)->hnext)
		if (*pp == m) {
			*pp = m->hnext;
			break;
		}
	if (m->lru_next)
		meta_lru_unlink(m);
	rc->n_metas--;
	free(m->pos);
	free(m->first_last);
	free(m);
}

static struct seg_meta *meta_new(struct rcache *rc, const char *key)
{
	/* Bounded: drop the oldest finished ones (a LOADING one is in a job's hands). */
	struct seg_meta *o = rc->meta_lru.lru_prev;
	while (rc->n_metas >= RC_MAX_METAS && o != &rc->meta_lru) {
		struct seg_meta *prev = o->lru_prev;
		if (o->state != ST_LOADING)
			meta_remove(rc, o);
		o = prev;
	}
	struct seg_meta *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	snprintf(m->key, sizeof m->key, "%s", key);
	m->hash = key_hash(key, -1);
	m->state = ST_LOADING;
	m->hnext = rc->metas[m->hash];
	rc->metas[m->hash] = m;
	rc->n_metas++;
	meta_lru_front(rc, m);
	return m;
}

/* Largest k with first_last[k] < offset: the chunk holding offset, or whose successor's first
 * batch holds it. */
static int32_t meta_chunk_for(const struct seg_meta *m, int64_t offset)
{
	int32_t lo = 0, hi = m->n_chunks - 1;
	while (lo < hi) {
		int32_t mid = lo + (hi - lo + 1) / 2;
		if (m->first_last[mid] < offset)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* --- jobs ------------------------------------------------------------------------------------ */

static bool ring_push(struct job_ring *r, struct job *j)
{
	if (r->n == RC_QUEUE_CAP)
		return false;
	r->v[(r->head + r->n) % RC_QUEUE_CAP] = j;
	r->n++;
	return true;
}

static struct job *ring_pop(struct job_ring *r)
{
	if (!r->n)
		return NULL;
	struct job *j = r->v[r->head];
	r->head = (r->head + 1) % RC_QUEUE_CAP;
	r->n--;
	return j;
}

/* Queues a job (lock held). Returns false when the queue is full or memory is short. */
static bool job_queue(struct rcache *rc, int kind, const struct rcache_seg *seg, int32_t idx,
		      int64_t want_offset, int64_t ts, bool prefetch)
{
	struct job *j = malloc(sizeof *j);
	if (!j)
		return false;
	j->kind = kind;
	j->seg = *seg;
	j->chunk_idx = idx;
	j->want_offset = want_offset;
	j->ts = ts;
	j->prefetch = prefetch;
	if (!ring_push(prefetch ? &rc->prefetch : &rc->demand, j)) {
		free(j);
		return false;
	}
	pthread_cond_signal(prefetch && rc->cfg.prefetch_threads > 0 ? &rc->cond_prefetch : &rc->cond);
	return true;
}

/* --- verification ---------------------------------------------------------------------------- */

/* The chunk verifier takes the chunk's bytes in order, in pieces of any size, so a local chunk
 * is read in small windows that stay in the CPU cache while they are checked: each byte comes
 * from the page cache once and is CRC'd while hot (a whole 4 MiB buffer would be written and
 * read back from further away). A batch may span pieces: its header is gathered in hdr and its
 * CRC-32C continued across them. Every check runs on the batch's own bytes exactly as on a
 * whole buffer, in the same order (framing at the header, then magic, CRC, offsets at its end). */
struct chunk_vfy {
	const struct manifest_seg *seg;
	int64_t pos, len;               /* the chunk: [pos, pos + len) of the object */
	int64_t first_last;
	bool whole;                     /* the whole object: its CRC covers every byte */
	bool failed;
	uint32_t obj_crc;
	int64_t at;                     /* bytes taken so far */
	int64_t batch_at, batch_end;    /* the current batch (batch_end valid once its header is) */
	uint32_t batch_crc;             /* of the current batch, from its attributes to at */
	struct batch_hdr h;
	uint8_t hdr[BATCH_HDR_SIZE];
	int64_t expect_base, last;
	int32_t n;
	/* What a chunk needs to be served, gathered on the way (sp may be NULL: not wanted). */
	struct sparse *sp;
	size_t sp_cap, n_sp;
	int64_t sp_last, first, next;
	char *why;
	size_t why_len;
};

static void vfy_init(struct chunk_vfy *v, const struct manifest_seg *seg, int64_t pos, int64_t len,
		     int64_t first_last_offset, struct sparse *sp, size_t sp_cap, char *why,
		     size_t why_len)
{
	*v = (struct chunk_vfy){ .seg = seg, .pos = pos, .len = len, .first_last = first_last_offset,
				 .whole = pos == 0 && len == seg->size_bytes,
				 .expect_base = pos == 0 ? seg->base_offset : -1, .last = -1,
				 .sp = sp, .sp_cap = sp ? sp_cap : 0, .sp_last = -RC_SPARSE_BYTES,
				 .first = -1, .next = -1, .why = why, .why_len = why_len };
}

static int vfy_fail(struct chunk_vfy *v)
{
	v->failed = true;
	return -EBADMSG;
}

/* The header of the batch at batch_at is complete in hdr: framing, then where the batch ends. */
static int vfy_batch_start(struct chunk_vfy *v)
{
	struct batch_hdr *h = &v->h;
	batch_parse_hdr(v->hdr, sizeof v->hdr, h); /* cannot fail: a whole header */
	int64_t size = batch_size(h);
	if (h->batch_length < BATCH_HDR_SIZE - BATCH_LOG_OVERHEAD || size > v->len - v->batch_at) {
		snprintf(v->why, v->why_len, "bad batch length %d at byte %" PRId64, h->batch_length,
			 v->pos + v->batch_at);
		return vfy_fail(v);
	}
	v->batch_end = v->batch_at + size;
	if (!v->whole)
		v->batch_crc = crc32c(0, v->hdr + BATCH_OFF_ATTRIBUTES,
				      BATCH_HDR_SIZE - BATCH_OFF_ATTRIBUTES);
	if (v->batch_at - v->sp_last >= RC_SPARSE_BYTES && v->n_sp < v->sp_cap) {
		v->sp[v->n_sp++] = (struct sparse){ v->batch_at, h->base_offset };
		v->sp_last = v->batch_at;
	}
	return 0;
}

/* Every byte of the current batch was taken. */
static int vfy_batch_end(struct chunk_vfy *v)
{
	const struct batch_hdr *h = &v->h;
	const struct manifest_seg *seg = v->seg;
	int64_t at = v->pos + v->batch_at;
	/* The whole object's CRC covers every byte of a whole-object chunk (checked at the end). */
	if (h->magic != BATCH_MAGIC_V2 || (!v->whole && v->batch_crc != h->crc)) {
		snprintf(v->why, v->why_len, "batch at byte %" PRId64 " (offset %" PRId64 "): %s", at,
			 h->base_offset, h->magic != BATCH_MAGIC_V2 ? "bad magic" : "CRC mismatch");
		return vfy_fail(v);
	}
	if (h->last_offset_delta < 0 || h->base_offset < seg->base_offset ||
	    batch_last_offset(h) > seg->last_offset ||
	    (v->expect_base >= 0 && h->base_offset != v->expect_base) ||
	    (v->n == 0 && v->first_last >= 0 && batch_last_offset(h) != v->first_last)) {
		snprintf(v->why, v->why_len, "batch at byte %" PRId64 " has offsets %" PRId64 "..%" PRId64
			 " where the segment [%" PRId64 ", %" PRId64 "] expects %" PRId64, at,
			 h->base_offset, batch_last_offset(h), seg->base_offset, seg->last_offset,
			 v->expect_base);
		return vfy_fail(v);
	}
	v->last = batch_last_offset(h);
	v->expect_base = v->last + 1;
	if (v->n == 0)
		v->first = h->base_offset;
	v->next = v->last + 1;
	v->n++;
	v->batch_at = v->batch_end;
	return 0;
}

/* Takes the next len bytes of the chunk. */
static int vfy_feed(struct chunk_vfy *v, const uint8_t *p, size_t len)
{
	if (v->failed)
		return -EBADMSG;
	ST_ASSERT((int64_t)len <= v->len - v->at);
	if (v->whole)
		v->obj_crc = crc32c(v->obj_crc, p, len);
	while (len > 0) {
		int64_t in_batch = v->at - v->batch_at;
		if (in_batch < BATCH_HDR_SIZE) {
			if (in_batch == 0 && v->len - v->batch_at < BATCH_HDR_SIZE) {
				snprintf(v->why, v->why_len, "truncated batch header at byte %" PRId64,
					 v->pos + v->batch_at);
				return vfy_fail(v);
			}
			size_t take = (size_t)(BATCH_HDR_SIZE - in_batch);
			if (take > len)
				take = len;
			memcpy(v->hdr + in_batch, p, take);
			p += take;
			len -= take;
			v->at += (int64_t)take;
			if (v->at - v->batch_at < BATCH_HDR_SIZE)
				break;
			if (vfy_batch_start(v) < 0)
				return -EBADMSG;
		} else {
			size_t take = (size_t)(v->batch_end - v->at);
			if (take > len)
				take = len;
			if (!v->whole)
				v->batch_crc = crc32c(v->batch_crc, p, take);
			p += take;
			len -= take;
			v->at += (int64_t)take;
		}
		if (v->at == v->batch_end && vfy_batch_end(v) < 0)
			return -EBADMSG;
	}
	return 0;
}

/* After the last byte: what only the whole chunk tells. */
static int vfy_finish(struct chunk_vfy *v)
{
	if (v->failed)
		return -EBADMSG;
	ST_ASSERT(v->at == v->len);
	if (v->whole && v->obj_crc != v->seg->log_crc) {
		snprintf(v->why, v->why_len, "object CRC-32C %08x, manifest says %08x", v->obj_crc,
			 v->seg->log_crc);
		return vfy_fail(v);
	}
	if (v->n == 0) {
		snprintf(v->why, v->why_len, "empty chunk");
		return vfy_fail(v);
	}
	if (v->pos + v->len == v->seg->size_bytes && v->last != v->seg->last_offset) {
		snprintf(v->why, v->why_len, "segment ends at offset %" PRId64 ", manifest says %" PRId64,
			 v->last, v->seg->last_offset);
		return vfy_fail(v);
	}
	return 0;
}

int rcache_verify_chunk_windows(const struct manifest_seg *seg, int64_t pos, const uint8_t *buf,
				size_t len, size_t window, int64_t first_last_offset, char *why,
				size_t why_len)
{
	struct chunk_vfy v;
	if (window == 0)
		window = len ? len : 1;
	vfy_init(&v, seg, pos, (int64_t)len, first_last_offset, NULL, 0, why, why_len);
	for (size_t p = 0; p < len; p += window)
		if (vfy_feed(&v, buf + p, len - p < window ? len - p : window) < 0)
			return -EBADMSG;
	return vfy_finish(&v);
}

int rcache_verify_chunk(const struct manifest_seg *seg, int64_t pos, const uint8_t *buf,
			size_t len, int64_t first_last_offset, char *why, size_t why_len)
{
	return rcache_verify_chunk_windows(seg, pos, buf, len, len, first_last_offset, why, why_len);
}

/* --- downloads (download threads, lock not held unless said) --------------------------------- */

static int fetch_object(struct rcache *rc, const struct rcache_seg *seg, const char *ext,
			int64_t size, uint32_t crc, uint8_t **out, char *why, size_t why_len)
{
	char key[MANIFEST_KEY_MAX + 16];
	*out = NULL;
	if (manifest_key_object(key, sizeof key, seg->m.key, ext) < 0)
		return -ENAMETOOLONG;
	if (size == 0)
		return 0;
	if (size > RC_INDEX_MAX_BYTES) {
		snprintf(why, why_len, "%.300s is %" PRId64 " bytes", key, size);
		return -EBADMSG;
	}
	uint8_t *buf = malloc((size_t)size);
	if (!buf)
		return -ENOMEM;
	int64_t got = objstore_get_range(rc->os, key, 0, size, buf, (size_t)size);
	if (got < 0) {
		snprintf(why, why_len, "GET %.300s: %s", key, strerror((int)-got));
		free(buf);
		return (int)got;
	}
	if (got != size || crc32c(0, buf, (size_t)size) != crc) {
		snprintf(why, why_len, "%.300s: %s (manifest: %" PRId64 " bytes, CRC-32C %08x)", key,
			 got != size ? "short object" : "CRC-32C mismatch", size, crc);
		free(buf);
		return -EBADMSG;
	}
	*out = buf;
	return 0;
}

/* Builds chunk boundaries from the offset index object. */
static int meta_load(struct rcache *rc, const struct rcache_seg *seg, int64_t **pos_out,
		     int64_t **fl_out, int32_t *n_out, char *why, size_t why_len)
{
	uint8_t *idx;
	int rc_ = fetch_object(rc, seg, "index", seg->m.index_bytes, seg->m.index_crc, &idx, why, why_len);
	if (rc_ < 0)
		return rc_;
	size_t n_ent = (size_t)seg->m.index_bytes / 8;
	size_t cap = (size_t)(seg->m.size_bytes / rc->cfg.chunk_bytes) + 2;
	if (cap > n_ent + 2)
		cap = n_ent + 2;
	int64_t *pos = malloc(cap * sizeof *pos), *fl = malloc(cap * sizeof *fl);
	if (!pos || !fl) {
		free(idx);
		free(pos);
		free(fl);
		return -ENOMEM;
	}
	int32_t n = 1;
	pos[0] = 0;
	fl[0] = seg->m.base_offset - 1;
	int64_t prev_pos = -1, prev_off = -1;
	for (size_t i = 0; i < n_ent; i++) {
		int64_t off = seg->m.base_offset + st_be32(idx + 8 * i);
		int64_t p = st_be32(idx + 8 * i + 4);
		if (p <= prev_pos || off <= prev_off || p >= seg->m.size_bytes || off > seg->m.last_offset) {
			snprintf(why, why_len, "offset index entry %zu (%" PRId64 " at %" PRId64
				 ") out of order or past the segment", i, off, p);
			free(idx);
			free(pos);
			free(fl);
			return -EBADMSG;
		}
		prev_pos = p;
		prev_off = off;
		if (p >= pos[n - 1] + rc->cfg.chunk_bytes && (size_t)n + 1 < cap) {
			pos[n] = p;
			fl[n] = off;
			n++;
		}
	}
	pos[n] = seg->m.size_bytes;
	free(idx);
	*pos_out = pos;
	*fl_out = fl;
	*n_out = n;
	return 0;
}

/* A download thread's buffer, kept between chunks (no page faults on a fresh 4 MiB each time). */
struct dl_buf {
	uint8_t *p;
	size_t cap;
};

/* Local chunks. A file:// store's objects are files on this machine: copying a chunk into the
 * cache directory would only duplicate it (and on a page cache the copy into freshly allocated
 * pages costs more than sending it). So the chunk is read from the object's own file, verified
 * exactly as a download, and that file's range is served. The object store never changes an
 * object's file in place (a put renames a new file over it; the fd keeps the old one), but
 * the bucket is a directory anyone with access can write: the file's size and ctime are taken
 * before it is read and checked before every read of the chunk; a file changed since it was
 * verified is verified again (and refused when damaged) before it is served again. */
struct local_file {
	int fd;                         /* -1: the chunk was downloaded */
	struct stat st;                 /* taken before the bytes were read */
};

static bool local_changed(const struct rcache_chunk *c)
{
	struct stat st;
	if (fstat(c->fd, &st) < 0)
		return true;
	return st.st_size != c->size || st.st_ctim.tv_sec != c->ctime.tv_sec ||
	       st.st_ctim.tv_nsec != c->ctime.tv_nsec;
}

/* What a verified chunk needs to be served, from its verification. */
struct chunk_index {
	struct sparse *sp;              /* malloc'd; whoever holds it frees it */
	size_t n_sp;
	int64_t first, next;            /* first offset, offset after the last batch */
};

/* Prefetch threads run at the lowest CPU priority (SCHED_IDLE): verifying ahead of a reader
 * only uses CPU time nothing else wants, so on a busy machine it never slows the sends, the
 * reactor or the client it works for (measured with t/tier_bench.py on 2 cores: cold replay
 * from an empty cache 63-73% of hot with prefetch at normal priority, 70-85% at SCHED_IDLE;
 * nice 19 was in between). The price: under full load a prefetch can stall. So a read that
 * finds its chunk still LOADING marks it wanted, and a prefetch thread checks the mark between
 * windows of RC_LOCAL_WINDOW_BYTES and hands the chunk over to a demand thread (normal
 * priority), which starts it again: at most one chunk's work is lost per hand-over. */
static bool chunk_wanted(struct rcache *rc, const char *key, int32_t k, uint64_t *seen_gen)
{
	if (rc->cfg.test_prefetch_window)
		rc->cfg.test_prefetch_window(rc->cfg.test_ctx, k);
	/* The lock only when some chunk became wanted since the last look: a thread at SCHED_IDLE
	 * preempted while holding it would hold up the reactor on a busy machine. */
	uint64_t gen = __atomic_load_n(&rc->wanted_gen, __ATOMIC_ACQUIRE);
	if (gen == *seen_gen)
		return false;
	*seen_gen = gen;
	pthread_mutex_lock(&rc->lock);
	const struct rcache_chunk *c = chunk_find(rc, key, k);
	bool w = c && c->state == ST_LOADING && c->wanted;
	pthread_mutex_unlock(&rc->lock);
	return w;
}

/* Reads chunk [p0, p1) of seg's .log object and verifies it. With lf (not NULL) from the
 * object's local file when the store has them (lf->fd >= 0 on success: the caller owns it),
 * read in windows of RC_LOCAL_WINDOW_BYTES through b and verified as they come (*out stays
 * NULL: the bytes are served from the file); else by a ranged GET into b (*out points into b).
 * With ci (not NULL), the chunk's sparse index on success. handover_k >= 0 (a prefetch
 * thread's job for chunk handover_k): returns -EAGAIN when a read wants that chunk (see
 * chunk_wanted) before the GET or, for a local file, before any window. */
static int chunk_download(struct rcache *rc, const struct rcache_seg *seg, int64_t p0, int64_t p1,
			  int64_t first_last, struct dl_buf *b, uint8_t **out, struct local_file *lf,
			  struct chunk_index *ci, int32_t handover_k, char *why, size_t why_len)
{
	char key[MANIFEST_KEY_MAX + 16];
	*out = NULL;
	if (lf)
		lf->fd = -1;
	if (ci)
		*ci = (struct chunk_index){ NULL, 0, -1, -1 };
	if (manifest_key_object(key, sizeof key, seg->m.key, "log") < 0)
		return -ENAMETOOLONG;
	size_t len = (size_t)(p1 - p0);
	int64_t got = -EOPNOTSUPP;
	bool local = false;
	if (lf && rc->cfg.local_direct && !__atomic_load_n(&rc->no_local, __ATOMIC_RELAXED)) {
		int64_t size;
		int fd = objstore_open_local(rc->os, key, &size);
		if (fd == -EOPNOTSUPP) {
			__atomic_store_n(&rc->no_local, true, __ATOMIC_RELAXED);
		} else if (fd < 0) {
			got = fd;
		} else if (fstat(fd, &lf->st) < 0) {
			got = -errno;
			close(fd);
		} else {
			lf->fd = fd;
			local = true;
		}
	}
	size_t want = local && len > RC_LOCAL_WINDOW_BYTES ? RC_LOCAL_WINDOW_BYTES : len;
	if (want > b->cap || !b->p) {
		uint8_t *np = realloc(b->p, want ? want : 1);
		if (!np) {
			if (lf && lf->fd >= 0) {
				close(lf->fd);
				lf->fd = -1;
			}
			return -ENOMEM;
		}
		b->p = np;
		b->cap = want ? want : 1;
	}
	struct sparse *sp = NULL;
	size_t sp_cap = 0;
	if (ci) {
		sp_cap = len / RC_SPARSE_BYTES + 2;
		if (!(sp = malloc(sp_cap * sizeof *sp))) {
			if (lf && lf->fd >= 0) {
				close(lf->fd);
				lf->fd = -1;
			}
			return -ENOMEM;
		}
	}
	char vwhy[256] = "";
	uint64_t seen_gen = 0; /* the first look takes the lock: the read may have come already */
	struct chunk_vfy v;
	vfy_init(&v, &seg->m, p0, (int64_t)len, first_last, sp, sp_cap, vwhy, sizeof vwhy);
	int verr = 0;
	if (local) {
		got = 0;
		while ((size_t)got < len && verr == 0) {
			if (handover_k >= 0 && chunk_wanted(rc, seg->m.key, handover_k, &seen_gen)) {
				got = -EAGAIN;
				break;
			}
			size_t n = len - (size_t)got < want ? len - (size_t)got : want;
			int64_t r = st_pread_full(lf->fd, b->p, n, p0 + got);
			if (r < 0) {
				got = r;
				break;
			}
			verr = vfy_feed(&v, b->p, (size_t)r);
			got += r;
			if ((size_t)r < n)
				break; /* end of file */
		}
	} else {
		/* Handed over only before the GET: once the bytes are here, verifying them (a
		 * fraction of a millisecond per MiB) costs less than downloading them again. */
		if (handover_k >= 0 && chunk_wanted(rc, seg->m.key, handover_k, &seen_gen))
			got = -EAGAIN;
		if (got == -EOPNOTSUPP)
			got = objstore_get_range(rc->os, key, p0, (int64_t)len, b->p, len);
		if (got >= 0 && (size_t)got == len)
			verr = vfy_feed(&v, b->p, len);
	}
	int err = 0;
	if (got < 0) {
		snprintf(why, why_len, "GET %.300s [%" PRId64 ", %" PRId64 "): %s", key, p0, p1,
			 strerror((int)-got));
		err = (int)got;
	} else if (verr == 0 && (size_t)got != len) {
		snprintf(why, why_len, "GET %.300s [%" PRId64 ", %" PRId64 "): %" PRId64 " bytes (object "
			 "shorter than the manifest says)", key, p0, p1, got);
		err = -EBADMSG;
	} else if (verr < 0 || vfy_finish(&v) < 0) {
		snprintf(why, why_len, "%.300s [%" PRId64 ", %" PRId64 "): %.150s", key, p0, p1, vwhy);
		err = -EBADMSG;
	}
	if (err < 0) {
		free(sp);
		if (lf && lf->fd >= 0) {
			close(lf->fd);
			lf->fd = -1;
		}
		return err;
	}
	if (ci)
		*ci = (struct chunk_index){ sp, v.n_sp, v.first, v.next };
	if (!local)
		*out = b->p;
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Fills c (LOADING, owned by this job) from a verified chunk: the local file (lf->fd, taken
 * over) or a file in the cache directory written from buf, and ci's sparse index (taken over:
 * ci->sp is NULL after success). */
static int chunk_fill(struct rcache *rc, struct rcache_chunk *c, const uint8_t *buf, size_t len,
		      int64_t pos, bool last_chunk, struct local_file *lf, struct chunk_index *ci,
		      char *why, size_t why_len)
{
	char path[sizeof c->path] = "";
	int fd = lf->fd, err = 0;
	if (fd < 0) {
		ST_ASSERT(buf != NULL);
		if ((err = pressure_room(rc, (int64_t)len, why, why_len)) < 0)
			return err;
		uint64_t seq;
		pthread_mutex_lock(&rc->lock);
		seq = ++rc->file_seq;
		pthread_mutex_unlock(&rc->lock);
		snprintf(path, sizeof path, "c%016" PRIx64, seq);
		fd = openat(rc->dirfd, path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		err = fd < 0 ? -errno : 0;
		if (fd >= 0 && (err = write_all(fd, buf, len)) < 0) {
			close(fd);
			unlinkat(rc->dirfd, path, 0);
			fd = -1;
		}
		if (fd < 0)
			return err;
	}
	memcpy(c->path, path, sizeof c->path);
	c->fd = fd;
	if (lf->fd >= 0) {
		c->local = true;
		c->base = pos;
		c->size = lf->st.st_size;
		c->ctime = lf->st.st_ctim;
		lf->fd = -1; /* c's now */
	}
	c->len = (int64_t)len;
	c->sp = ci->sp;
	c->n_sp = (int32_t)ci->n_sp;
	ci->sp = NULL;
	c->first_offset = ci->first;
	c->next_offset = ci->next;
	c->last_chunk = last_chunk;
	return 0;
}

static void run_chunk_job(struct rcache *rc, struct job *j, struct dl_buf *dl)
{
	char why[512] = "";
	int err = 0;
	int32_t k = j->chunk_idx;
	int64_t p0 = 0, p1 = 0, fl = -1;
	int32_t n_chunks = 0;
	/* 1. Chunk boundaries (loaded here when this job created the meta entry). */
	if (k < 0) {
		int64_t *pos = NULL, *first_last = NULL;
		int32_t n = 0;
		err = meta_load(rc, &j->seg, &pos, &first_last, &n, why, sizeof why);
		pthread_mutex_lock(&rc->lock);
		struct seg_meta *m = meta_find(rc, j->seg.m.key);
		if (m && m->state == ST_LOADING) {
			if (err < 0) {
				m->state = ST_FAILED;
				m->err = KERR_KAFKA_STORAGE_ERROR;
				m->fail_until_ms = st_now_ms() + RCACHE_FAIL_HOLD_MS;
			} else {
				m->state = ST_READY;
				m->pos = pos;
				m->first_last = first_last;
				m->n_chunks = n;
				pos = first_last = NULL;
			}
		}
		if (err == 0 && m && m->state == ST_READY) {
			k = meta_chunk_for(m, j->want_offset);
			p0 = m->pos[k];
			p1 = m->pos[k + 1];
			fl = k > 0 ? m->first_last[k] : -1;
			n_chunks = m->n_chunks;
		}
		struct rcache_chunk *c = NULL;
		if (k >= 0) {
			c = chunk_find(rc, j->seg.m.key, k);
			if (c)
				k = -1; /* someone else has it (or is fetching it) */
			else if (!(c = chunk_new(rc, j->seg.m.key, k)))
				k = -1;
		}
		if (err < 0) {
			rc->st.download_errors++;
			if (err == -EBADMSG)
				rc->st.corrupt++;
		}
		pthread_mutex_unlock(&rc->lock);
		free(pos);
		free(first_last);
		if (err < 0) {
			slog_error("tier", "topic=%s partition=%d: segment %" PRId64 " index not usable "
				   "(reads of it fail until retried): %s", j->seg.topic, j->seg.partition,
				   j->seg.m.base_offset, why);
			return;
		}
		if (k < 0)
			return;
	} else {
		pthread_mutex_lock(&rc->lock);
		struct seg_meta *m = meta_find(rc, j->seg.m.key);
		if (m && m->state == ST_READY && k < m->n_chunks) {
			p0 = m->pos[k];
			p1 = m->pos[k + 1];
			fl = k > 0 ? m->first_last[k] : -1;
			n_chunks = m->n_chunks;
		} else {
			/* The boundaries were evicted meanwhile: forget the chunk, a read retries. */
			struct rcache_chunk *c = chunk_find(rc, j->seg.m.key, k);
			if (c && c->state == ST_LOADING)
				chunk_remove(rc, c);
			pthread_mutex_unlock(&rc->lock);
			return;
		}
		pthread_mutex_unlock(&rc->lock);
	}
	/* 2. The chunk. */
	uint8_t *buf = NULL;
	struct local_file lf;
	struct chunk_index ci;
	err = chunk_download(rc, &j->seg, p0, p1, fl, dl, &buf, &lf, &ci,
			     j->prefetch && rc->n_prefetch_threads > 0 ? k : -1, why, sizeof why);
	pthread_mutex_lock(&rc->lock);
	struct rcache_chunk *c = chunk_find(rc, j->seg.m.key, k);
	if (err == -EAGAIN) {
		/* A read waits for this prefetch: a demand thread takes the chunk (still LOADING)
		 * over; when the queue is full the chunk is dropped and the read asks again. */
		if (c && c->state == ST_LOADING) {
			c->wanted = false;
			if (!job_queue(rc, JOB_CHUNK, &j->seg, k, -1, 0, false))
				chunk_remove(rc, c);
		}
		rc->st.handovers++;
		pthread_mutex_unlock(&rc->lock);
		return;
	}
	pthread_mutex_unlock(&rc->lock);
	if (err == 0 && c && c->state == ST_LOADING) {
		why[0] = 0;
		err = chunk_fill(rc, c, buf, (size_t)(p1 - p0), p0, k + 1 == n_chunks, &lf, &ci, why,
				 sizeof why);
		if (err < 0 && !why[0])
			snprintf(why, sizeof why, "cannot write the cache file in %.300s: %s", rc->dir,
				 strerror(-err));
	}
	if (lf.fd >= 0) /* not taken by the chunk */
		close(lf.fd);
	free(ci.sp);
	pthread_mutex_lock(&rc->lock);
	struct rcache_chunk *evicted = NULL;
	c = chunk_find(rc, j->seg.m.key, k);
	if (c && c->state == ST_LOADING) {
		if (err < 0) {
			c->state = ST_FAILED;
			c->err = KERR_KAFKA_STORAGE_ERROR;
			c->fail_until_ms = st_now_ms() + RCACHE_FAIL_HOLD_MS;
			rc->st.download_errors++;
			if (err == -EBADMSG)
				rc->st.corrupt++;
		} else {
			c->state = ST_READY;
			c->demand = !j->prefetch;
			c->ready_ms = st_now_ms();
			rc->st.cached_bytes += c->len;
			rc->st.cached_chunks++;
			rc->st.downloads++;
			rc->st.download_bytes += c->len;
			if (c->local)
				rc->st.local_bytes += c->len;
		}
		lru_front(rc, c);
		evicted = evict_locked(rc);
	}
	pthread_mutex_unlock(&rc->lock);
	free_evicted(rc, evicted);
	if (err < 0)
		slog_error("tier", "topic=%s partition=%d: cold read of segment %" PRId64 " chunk %d "
			   "failed (not served): %s", j->seg.topic, j->seg.partition, j->seg.m.base_offset,
			   k, why);
}

/* The first record of the batch at b (whole batch in memory) with timestamp >= ts. */
static int batch_find_ts(const uint8_t *b, const struct batch_hdr *h, int64_t ts, int64_t *off,
			 int64_t *ts_out)
{
	if (batch_is_log_append_time(h)) {
		*off = h->base_offset;
		*ts_out = h->max_timestamp;
		return 1;
	}
	const uint8_t *recs = b + BATCH_HDR_SIZE;
	size_t recs_len = (size_t)batch_size(h) - BATCH_HDR_SIZE;
	uint8_t *inflated = NULL;
	if (batch_codec(h) != COMPRESS_NONE) {
		size_t ilen;
		int rc = compress_inflate(batch_codec(h), recs, recs_len, RC_INFLATE_MAX, &inflated, &ilen);
		if (rc < 0) {
			free(inflated);
			return rc;
		}
		recs = inflated;
		recs_len = ilen;
	}
	struct batch_rec_iter it;
	struct batch_record r;
	int rc = 0, found = 0;
	batch_rec_iter_init(&it, recs, recs_len);
	for (int32_t i = 0; i < h->record_count && (rc = batch_rec_next(&it, &r)) == 1; i++) {
		int64_t rts = (int64_t)((uint64_t)h->base_timestamp + (uint64_t)r.timestamp_delta);
		if (rts >= ts) {
			*off = h->base_offset + r.offset_delta;
			*ts_out = rts;
			found = 1;
			break;
		}
	}
	free(inflated);
	return rc < 0 ? rc : found;
}

static void run_ts_job(struct rcache *rc, struct job *j, struct dl_buf *dl)
{
	char why[512] = "";
	int64_t off = -1, ts_out = -1;
	uint8_t *tidx = NULL;
	int64_t *pos = NULL, *fl = NULL;
	int32_t n = 0;
	/* Time index: the largest entry <= ts names where to start (else the segment's base). */
	int err = fetch_object(rc, &j->seg, "timeindex", j->seg.m.timeindex_bytes,
			       j->seg.m.timeindex_crc, &tidx, why, sizeof why);
	int64_t start = j->seg.m.base_offset;
	for (int64_t i = 0; err == 0 && i < j->seg.m.timeindex_bytes / 12; i++) {
		int64_t ets = (int64_t)st_be64(tidx + 12 * i);
		if (ets > j->ts)
			break;
		start = j->seg.m.base_offset + st_be32(tidx + 12 * i + 8);
	}
	free(tidx);
	if (err == 0)
		err = meta_load(rc, &j->seg, &pos, &fl, &n, why, sizeof why);
	if (err == 0) {
		int32_t lo = 0;
		while (lo + 1 < n && fl[lo + 1] < start)
			lo++;
		for (int32_t k = lo; k < n && off < 0 && err == 0; k++) {
			uint8_t *buf;
			err = chunk_download(rc, &j->seg, pos[k], pos[k + 1], k > 0 ? fl[k] : -1, dl, &buf,
					     NULL, NULL, -1, why, sizeof why);
			if (err < 0)
				break;
			size_t p = 0, len = (size_t)(pos[k + 1] - pos[k]);
			while (p < len) {
				struct batch_hdr h;
				batch_parse_hdr(buf + p, len - p, &h); /* verified by chunk_download */
				if (h.max_timestamp >= j->ts) {
					int r = batch_find_ts(buf + p, &h, j->ts, &off, &ts_out);
					if (r < 0) {
						snprintf(why, sizeof why, "batch at offset %" PRId64 ": cannot "
							 "read its records: %s", h.base_offset, strerror(-r));
						err = -EBADMSG;
					}
					if (r != 0)
						break;
				}
				p += (size_t)batch_size(&h);
			}
		}
	}
	free(pos);
	free(fl);
	pthread_mutex_lock(&rc->lock);
	for (int i = 0; i < RC_TS_SLOTS; i++) {
		struct ts_slot *s = &rc->ts[i];
		if (s->used && s->state == ST_LOADING && s->ts == j->ts && strcmp(s->key, j->seg.m.key) == 0) {
			s->state = err < 0 ? ST_FAILED : ST_READY;
			s->err = KERR_KAFKA_STORAGE_ERROR;
			s->off = off;
			s->ts_out = ts_out;
			s->done_ms = st_now_ms();
		}
	}
	if (err < 0)
		rc->st.download_errors++;
	pthread_mutex_unlock(&rc->lock);
	if (err < 0)
		slog_error("tier", "topic=%s partition=%d: timestamp lookup in segment %" PRId64
			   " failed: %s", j->seg.topic, j->seg.partition, j->seg.m.base_offset, why);
}

/* CPU time of the calling thread: what downloads and verification cost, for the stats. */
static int64_t thread_cpu_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
		return 0;
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A download thread: demand jobs first, then prefetch jobs when no prefetch threads exist. */
static void worker_loop(struct rcache *rc, bool prefetch_class)
{
	struct dl_buf dl = { NULL, 0 };
	bool both = !prefetch_class && rc->cfg.prefetch_threads == 0;
	pthread_mutex_lock(&rc->lock);
	for (;;) {
		while (!rc->stop && !(prefetch_class ? rc->prefetch.n : rc->demand.n || (both && rc->prefetch.n))) {
			if (prefetch_class) {
				pthread_cond_wait(&rc->cond_prefetch, &rc->lock);
				continue;
			}
			/* Demand threads wake now and then to give space back under disk pressure. */
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += RCACHE_TRIM_INTERVAL_MS / 1000;
			pthread_cond_timedwait(&rc->cond, &rc->lock, &until);
			int64_t now = st_now_ms();
			if (!rc->stop && now - rc->last_trim_ms >= RCACHE_TRIM_INTERVAL_MS) {
				rc->last_trim_ms = now;
				pthread_mutex_unlock(&rc->lock);
				rcache_trim(rc);
				pthread_mutex_lock(&rc->lock);
			}
		}
		if (rc->stop)
			break;
		struct job *j = prefetch_class ? NULL : ring_pop(&rc->demand);
		if (!j)
			j = ring_pop(&rc->prefetch);
		pthread_mutex_unlock(&rc->lock);
		int64_t cpu0 = thread_cpu_ns();
		if (j->kind == JOB_CHUNK)
			run_chunk_job(rc, j, &dl);
		else
			run_ts_job(rc, j, &dl);
		if (rc->done)
			rc->done(rc->done_ctx, j->seg.topic, j->seg.partition);
		free(j);
		int64_t cpu = thread_cpu_ns() - cpu0;
		pthread_mutex_lock(&rc->lock);
		rc->st.job_cpu_ns += cpu;
	}
	pthread_mutex_unlock(&rc->lock);
	free(dl.p);
}

static void *worker_demand(void *arg)
{
	worker_loop(arg, false);
	return NULL;
}

static void *worker_prefetch(void *arg)
{
	struct sched_param sp = { .sched_priority = 0 };
	int e = pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
	if (e != 0)
		slog_warn("tier", "prefetch thread: SCHED_IDLE refused (%s): prefetching at normal "
			  "priority", strerror(e));
	worker_loop(arg, true);
	return NULL;
}

/* --- open / close ---------------------------------------------------------------------------- */

/* Removes our own files only ("c" + 16 hex digits): a misconfigured directory loses nothing. */
static void wipe_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *s = de->d_name;
		if (s[0] != 'c' || strlen(s) != 17 || strspn(s + 1, "0123456789abcdef") != 16)
			continue;
		unlinkat(dirfd(d), s, 0);
	}
	closedir(d);
}

int rcache_open(const struct rcache_config *cfg, struct objstore *os, rcache_done_fn done,
		void *done_ctx, struct rcache **out)
{
	if (!cfg->dir || cfg->chunk_bytes <= 0 || cfg->threads < 1 || cfg->prefetch_threads < 0 ||
	    cfg->max_chunks < 1)
		return -EINVAL;
	struct rcache *rc = calloc(1, sizeof *rc);
	if (!rc)
		return -ENOMEM;
	rc->cfg = *cfg;
	if (snprintf(rc->dir, sizeof rc->dir, "%s", cfg->dir) >= (int)sizeof rc->dir) {
		free(rc);
		return -ENAMETOOLONG;
	}
	rc->cfg.dir = rc->dir;
	rc->os = os;
	rc->done = done;
	rc->done_ctx = done_ctx;
	rc->lru.lru_next = rc->lru.lru_prev = &rc->lru;
	rc->meta_lru.lru_next = rc->meta_lru.lru_prev = &rc->meta_lru;
	int err = st_mkdir_p(rc->dir);
	if (err < 0) {
		slog_error("tier", "cannot create the read cache directory %s: %s", rc->dir, strerror(-err));
		free(rc);
		return err;
	}
	wipe_dir(rc->dir);
	rc->dirfd = open(rc->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rc->dirfd < 0) {
		err = -errno;
		free(rc);
		return err;
	}
	pthread_mutex_init(&rc->lock, NULL);
	pthread_cond_init(&rc->cond, NULL);
	pthread_cond_init(&rc->cond_prefetch, NULL);
	int total = cfg->threads + cfg->prefetch_threads;
	rc->threads = calloc((size_t)total, sizeof *rc->threads);
	if (!rc->threads) {
		rcache_close(rc);
		return -ENOMEM;
	}
	for (int i = 0; i < total; i++) {
		bool pf = i >= cfg->threads;
		if ((err = pthread_create(&rc->threads[i], NULL, pf ? worker_prefetch : worker_demand, rc)) != 0) {
			rcache_close(rc);
			return -err;
		}
		rc->n_threads++;
		rc->n_prefetch_threads += pf;
	}
	*out = rc;
	return 0;
}

void rcache_close(struct rcache *rc)
{
	if (!rc)
		return;
	pthread_mutex_lock(&rc->lock);
	rc->stop = true;
	pthread_cond_broadcast(&rc->cond);
	pthread_cond_broadcast(&rc->cond_prefetch);
	pthread_mutex_unlock(&rc->lock);
	for (int i = 0; i < rc->n_threads; i++)
		pthread_join(rc->threads[i], NULL);
	free(rc->threads);
	if (rc->st.hits || rc->st.misses)
		slog_info("tier", "read cache: %" PRId64 " reads served, %" PRId64 " waited for a download; "
			  "%" PRId64 " chunks verified (%" PRId64 " bytes, %" PRId64 " of them in place in "
			  "the bucket's files), %" PRId64 " prefetched (%" PRId64 " handed over to a "
			  "waiting read), %" PRId64 " evicted, %" PRId64
			  " failed (%" PRId64 " damaged); download threads' CPU %" PRId64 " ms",
			  rc->st.hits, rc->st.misses, rc->st.downloads, rc->st.download_bytes,
			  rc->st.local_bytes, rc->st.prefetches, rc->st.handovers, rc->st.evictions, rc->st.download_errors,
			  rc->st.corrupt, rc->st.job_cpu_ns / 1000000);
	struct job *j;
	while ((j = ring_pop(&rc->demand)) || (j = ring_pop(&rc->prefetch)))
		free(j);
	for (int b = 0; b < RC_BUCKETS; b++) {
		while (rc->chunks[b]) {
			struct rcache_chunk *c = rc->chunks[b];
			ST_ASSERT(c->refs == 0); /* every slice released before close */
			chunk_remove(rc, c);
		}
		while (rc->metas[b])
			meta_remove(rc, rc->metas[b]);
	}
	pthread_mutex_destroy(&rc->lock);
	pthread_cond_destroy(&rc->cond);
	pthread_cond_destroy(&rc->cond_prefetch);
	close(rc->dirfd);
	free(rc);
}

/* --- reads (reactor) ------------------------------------------------------------------------- */

/* Base offset, last offset and size of the batch at pos of a cached chunk file. */
static int hdr_at(const struct rcache_chunk *c, int64_t pos, int64_t *base, int64_t *last,
		  int64_t *size)
{
	uint8_t h[BATCH_OFF_LAST_OFFSET_DELTA + 4];
	ssize_t n = pread(c->fd, h, sizeof h, c->base + pos);
	if (n != (ssize_t)sizeof h)
		return n < 0 ? -errno : -EIO;
	*base = (int64_t)st_be64(h);
	*size = (int64_t)st_be32(h + BATCH_OFF_LENGTH) + BATCH_LOG_OVERHEAD;
	*last = *base + (int32_t)st_be32(h + BATCH_OFF_LAST_OFFSET_DELTA);
	return 0;
}

/* The slice of c from the batch holding offset (or the next one). */
static int chunk_slice(const struct rcache_chunk *c, int64_t offset, int64_t max_bytes, bool min_one,
		       struct rcache_slice *out)
{
	int32_t lo = 0, hi = c->n_sp - 1;
	while (lo < hi) {
		int32_t mid = lo + (hi - lo + 1) / 2;
		if (c->sp[mid].offset <= offset)
			lo = mid;
		else
			hi = mid - 1;
	}
	int64_t pos = c->sp[lo].pos, base, last, size;
	for (;;) { /* bounded: at most RC_SPARSE_BYTES of batches before the next sparse entry */
		if (pos >= c->len)
			return KERR_OFFSET_OUT_OF_RANGE;
		if (hdr_at(c, pos, &base, &last, &size) < 0)
			return KERR_KAFKA_STORAGE_ERROR;
		if (last >= offset)
			break;
		pos += size;
	}
	int64_t start = pos, end;
	if (c->len - start <= max_bytes) {
		end = c->len;
	} else {
		/* The furthest sparse entry within the limit, then whole batches after it. */
		int32_t a = lo;
		while (a + 1 < c->n_sp && c->sp[a + 1].pos - start <= max_bytes)
			a++;
		end = c->sp[a].pos > start ? c->sp[a].pos : start;
		for (int i = 0; i < 4096 && end < c->len; i++) {
			if (hdr_at(c, end, &base, &last, &size) < 0)
				return KERR_KAFKA_STORAGE_ERROR;
			if (end + size - start > max_bytes)
				break;
			end += size;
		}
		if (end == start && min_one) {
			if (hdr_at(c, start, &base, &last, &size) < 0)
				return KERR_KAFKA_STORAGE_ERROR;
			end = start + size;
		}
	}
	int64_t next = c->next_offset;
	if (end < c->len && hdr_at(c, end, &next, &last, &size) < 0)
		return KERR_KAFKA_STORAGE_ERROR;
	int64_t first;
	if (hdr_at(c, start, &first, &last, &size) < 0)
		return KERR_KAFKA_STORAGE_ERROR;
	out->fd = c->fd;
	out->file_pos = c->base + start;
	out->len = end - start;
	out->first_offset = first;
	out->next_offset = end > start ? next : first;
	out->segment_end = c->last_chunk && end == c->len;
	return KERR_NONE;
}

/* Makes sure chunk k of seg is cached or on its way (lock held). Returns the chunk or NULL. */
static struct rcache_chunk *chunk_want(struct rcache *rc, const struct rcache_seg *seg, int32_t k,
				       bool prefetch, int *status)
{
	struct rcache_chunk *c = chunk_find(rc, seg->m.key, k);
	if (c && c->state == ST_FAILED && st_now_ms() >= c->fail_until_ms) {
		chunk_remove(rc, c);
		c = NULL;
	}
	if (!c) {
		c = chunk_new(rc, seg->m.key, k);
		if (!c || !job_queue(rc, JOB_CHUNK, seg, k, -1, 0, prefetch)) {
			if (c)
				chunk_remove(rc, c);
			*status = RCACHE_PENDING; /* queue full: the fetch waits and asks again */
			return NULL;
		}
		if (prefetch)
			rc->st.prefetches++;
		*status = RCACHE_PENDING;
		return c;
	}
	*status = c->state == ST_READY ? KERR_NONE : c->state == ST_LOADING ? RCACHE_PENDING : c->err;
	if (!prefetch && c->state == ST_LOADING && !c->wanted) {
		c->wanted = true;
		__atomic_add_fetch(&rc->wanted_gen, 1, __ATOMIC_RELEASE);
	}
	return c;
}

/* Chunk idx of seg, at low priority: its boundaries (and first chunk) first when unknown. */
static void prefetch_locked(struct rcache *rc, const struct rcache_seg *seg, int32_t idx)
{
	struct seg_meta *m = meta_find(rc, seg->m.key);
	if (!m) {
		m = meta_new(rc, seg->m.key);
		if (m && !job_queue(rc, JOB_CHUNK, seg, -1, seg->m.base_offset, 0, true))
			meta_remove(rc, m);
		else if (m)
			rc->st.prefetches++;
	} else if (m->state == ST_READY && idx < m->n_chunks) {
		int st;
		chunk_want(rc, seg, idx, true, &st);
	}
}

int rcache_read(struct rcache *rc, const struct rcache_seg *seg, const struct rcache_seg *next,
		int64_t offset, int64_t max_bytes, bool min_one, struct rcache_slice *out)
{
	memset(out, 0, sizeof *out);
	out->fd = -1;
	if (offset > seg->m.last_offset)
		return KERR_OFFSET_OUT_OF_RANGE;
	pthread_mutex_lock(&rc->lock);
	struct seg_meta *m = meta_find(rc, seg->m.key);
	if (m && m->state == ST_FAILED && st_now_ms() >= m->fail_until_ms) {
		meta_remove(rc, m);
		m = NULL;
	}
	if (!m) {
		m = meta_new(rc, seg->m.key);
		if (m && !job_queue(rc, JOB_CHUNK, seg, -1, offset, 0, false))
			meta_remove(rc, m);
		rc->st.misses++;
		pthread_mutex_unlock(&rc->lock);
		return RCACHE_PENDING;
	}
	if (m->state != ST_READY) {
		int r = m->state == ST_LOADING ? RCACHE_PENDING : m->err;
		pthread_mutex_unlock(&rc->lock);
		return r;
	}
	meta_lru_front(rc, m);
	int32_t k = meta_chunk_for(m, offset);
	struct rcache_chunk *c = NULL;
	int status = RCACHE_PENDING;
	for (int hop = 0; hop < 2; hop++) {
		c = chunk_want(rc, seg, k, false, &status);
		if (status != KERR_NONE)
			break;
		/* offset may be the first batch of the next chunk (see meta_chunk_for) */
		if (offset >= c->next_offset && k + 1 < m->n_chunks) {
			k++;
			continue;
		}
		break;
	}
	if (status == KERR_NONE && offset >= c->next_offset)
		status = KERR_OFFSET_OUT_OF_RANGE;
	if (status == KERR_NONE) {
		c->refs++;
		c->read = true;
		lru_front(rc, c);
		rc->st.hits++;
	} else if (status == RCACHE_PENDING) {
		rc->st.misses++;
	}
	/* Sequential readers: the next chunks are fetched while this one is sent (when the cache
	 * is large enough that prefetched chunks do not push out the ones being read). */
	bool room = 4 * (int64_t)rc->cfg.prefetch_chunks * rc->cfg.chunk_bytes <= rc->cfg.max_bytes;
	for (int32_t p = 1; room && status != KERR_OFFSET_OUT_OF_RANGE && p <= rc->cfg.prefetch_chunks; p++) {
		int st;
		if (k + p < m->n_chunks)
			chunk_want(rc, seg, k + p, true, &st);
		else if (next) /* across the segment boundary: no stall between segments */
			prefetch_locked(rc, next, k + p - m->n_chunks);
	}
	pthread_mutex_unlock(&rc->lock);
	if (status != KERR_NONE)
		return status;
	if (c->local && local_changed(c)) {
		slog_warn("tier", "topic=%s partition=%d: the bucket's file of segment %" PRId64 " changed "
			  "since chunk %d was verified: verifying it again", seg->topic, seg->partition,
			  seg->m.base_offset, k);
		pthread_mutex_lock(&rc->lock);
		c->refs--;
		chunk_detach(rc, c);
		if (c->refs == 0)
			chunk_free(rc, c);
		rc->st.hits--;
		rc->st.misses++;
		rc->st.local_changed++;
		chunk_want(rc, seg, k, false, &status);
		pthread_mutex_unlock(&rc->lock);
		return status == KERR_NONE ? RCACHE_PENDING : status;
	}
	int r = chunk_slice(c, offset, max_bytes, min_one, out);
	if (r != KERR_NONE || out->len == 0) {
		pthread_mutex_lock(&rc->lock);
		c->refs--;
		if (c->detached && c->refs == 0)
			chunk_free(rc, c);
		pthread_mutex_unlock(&rc->lock);
		out->fd = -1;
		return r;
	}
	out->rc_ = rc;
	out->chunk_ = c;
	return KERR_NONE;
}

void rcache_slice_release(struct rcache_slice *s)
{
	if (!s->chunk_)
		return;
	struct rcache *rc = s->rc_;
	pthread_mutex_lock(&rc->lock);
	ST_ASSERT(s->chunk_->refs > 0);
	if (--s->chunk_->refs == 0 && s->chunk_->detached)
		chunk_free(rc, s->chunk_);
	pthread_mutex_unlock(&rc->lock);
	s->chunk_ = NULL;
}

void rcache_prefetch(struct rcache *rc, const struct rcache_seg *seg)
{
	if (4 * (int64_t)rc->cfg.prefetch_chunks * rc->cfg.chunk_bytes > rc->cfg.max_bytes)
		return;
	pthread_mutex_lock(&rc->lock);
	prefetch_locked(rc, seg, 0);
	pthread_mutex_unlock(&rc->lock);
}

int rcache_offset_for_timestamp(struct rcache *rc, const struct rcache_seg *seg, int64_t ts_ms,
				int64_t *offset_out, int64_t *ts_out)
{
	*offset_out = -1;
	*ts_out = -1;
	int64_t now = st_now_ms();
	pthread_mutex_lock(&rc->lock);
	struct ts_slot *free_slot = NULL, *oldest = NULL;
	for (int i = 0; i < RC_TS_SLOTS; i++) {
		struct ts_slot *s = &rc->ts[i];
		if (!s->used) {
			free_slot = free_slot ? free_slot : s;
			continue;
		}
		if (s->ts == ts_ms && strcmp(s->key, seg->m.key) == 0) {
			if (s->state == ST_LOADING) {
				pthread_mutex_unlock(&rc->lock);
				return RCACHE_PENDING;
			}
			if (now - s->done_ms < RC_TS_FRESH_MS) {
				int r = s->state == ST_READY ? KERR_NONE : s->err;
				*offset_out = s->off;
				*ts_out = s->ts_out;
				s->used_ms = now;
				pthread_mutex_unlock(&rc->lock);
				return r;
			}
			s->used = false; /* stale: look again */
			free_slot = s;
			continue;
		}
		if (s->state != ST_LOADING && (!oldest || s->used_ms < oldest->used_ms))
			oldest = s;
	}
	struct ts_slot *s = free_slot ? free_slot : oldest;
	if (s && job_queue(rc, JOB_TS, seg, -1, -1, ts_ms, false)) {
		memset(s, 0, sizeof *s);
		snprintf(s->key, sizeof s->key, "%s", seg->m.key);
		s->ts = ts_ms;
		s->used = true;
		s->state = ST_LOADING;
		s->used_ms = now;
	}
	pthread_mutex_unlock(&rc->lock);
	return RCACHE_PENDING;
}

void rcache_get_stats(struct rcache *rc, struct rcache_stats *out)
{
	pthread_mutex_lock(&rc->lock);
	*out = rc->st;
	pthread_mutex_unlock(&rc->lock);
}
