/* pstate.c -- per-partition idempotent-producer state (include/strata/pstate.h): Kafka's
 * ProducerStateManager/ProducerAppendInfo checks (epoch fencing, sequence continuity with int32
 * wrap, duplicates of the last five batches), tracking of appends in flight with rollback on
 * storage errors, duplicate answers parked behind their in-flight original, checksummed
 * snapshots and recovery by replaying the log after the newest valid one.
 * Must not write the log, allocate producer ids or block outside startup, close and the
 * (rare, small, unsynced) periodic snapshot. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strata/batch.h"
#include "strata/common.h"
#include "strata/crc32c.h"
#include "strata/kerr.h"
#include "strata/log.h"
#include "strata/pstate.h"
#include "strata/slog.h"

/* Snapshot file (big-endian), "<offset %020>.snapshot":
 *   0 magic "STRATAPS" | 8 crc32c u32 of bytes 12..end | 12 version u16 (1) | 14 entry size
 *   u16 (200) | 16 entry count u32 | 20 offset i64 (every batch below it is in the state, none
 *   above) | 28 reserved i64 | 36 entries, each:
 *   0 producer id i64 | 8 epoch i16 | 10 batch count u8 | 11 LogAppendTime mask u8 (bit i: batch
 *   i) | 12 coordinator epoch i32 | 16 ongoing txn first offset i64 | 24 last timestamp i64 |
 *   32 last seen (broker clock) i64 | 40 five batches, oldest first, each first seq i32, last seq
 *   i32, first offset i64, last offset i64, timestamp i64 (32 bytes).
 * Not Kafka's snapshot format (Kafka keeps only the last batch per producer; a Kafka broker
 * meeting this file drops it as corrupt and rebuilds from the log). */
#define SNAP_MAGIC "STRATAPS"
#define SNAP_VERSION 1
#define SNAP_HDR_SIZE 36
#define SNAP_BATCH_SIZE 32
#define SNAP_ENTRY_SIZE (40 + PSTATE_BATCHES * SNAP_BATCH_SIZE)
#define SNAP_SUFFIX ".snapshot"
#define SNAP_NAME_DIGITS 20
#define SNAP_MAX_FILES 64                 /* snapshots considered at recovery */
#define SNAP_MAX_BYTES ((size_t)1 << 30)  /* refuse to load anything larger */
#define LAZY_EXPIRE_PER_CHECK 4
#define EVICT_SEARCH 16

enum pa_state {
	PA_CHECKED = 1,       /* pstate_check passed, undo slots prepared */
	PA_UNTRACKED,         /* committed, no producer batch: nothing to roll back */
	PA_INFLIGHT,          /* committed, linked in ps->inflight */
	PA_DONE,
};

struct pstate_producer {
	struct pstate_entry e;
	struct pstate_producer *hnext;
	struct pstate_producer *lru_prev, *lru_next; /* least recently appended first */
	uint32_t inflight;    /* committed appends (and a check in progress) that pin it */
	const struct pstate_entry *snap_view; /* during pstate_snapshot: the entry as it was before
	                                         the appends in flight, NULL = e */
};

struct pstate {
	char dir[PATH_MAX];
	bool persist;
	struct pstate_config cfg;
	struct pstate_producer **buckets;
	uint32_t n_buckets;   /* power of two */
	uint32_t n_producers;
	struct pstate_producer *lru_head, *lru_tail;
	struct pstate_append *inflight_head, *inflight_tail; /* committed, in offset order */
	struct pstate_waiter *waiters;
	int64_t bytes_since_snapshot;
	int64_t snapshot_offset;          /* newest snapshot written or loaded, -1 none */
	/* Transactions (later): the last stable offset is the first offset of the oldest ongoing
	 * transaction (min txn_first_offset over producers), or the high watermark when none;
	 * completed aborted transactions go to the segment's .txnindex. */
	struct pstate_stats stats;
};

/* --- sequence arithmetic (Kafka's DefaultRecordBatch.incrementSequence) ------------------------ */

int32_t pstate_seq_add(int32_t seq, int32_t delta)
{
	if (seq > INT32_MAX - delta)
		return delta - (INT32_MAX - seq) - 1;
	return seq + delta;
}

bool pstate_in_sequence(int32_t last_seq, int32_t next_seq)
{
	return (int64_t)next_seq == (int64_t)last_seq + 1 || (next_seq == 0 && last_seq == INT32_MAX);
}

/* --- config ----------------------------------------------------------------------------------- */

void pstate_config_defaults(struct pstate_config *cfg)
{
	cfg->expiration_ms = PSTATE_DEFAULT_EXPIRATION_MS;
	cfg->max_producers = PSTATE_DEFAULT_MAX_PRODUCERS;
	cfg->snapshot_interval_bytes = PSTATE_DEFAULT_SNAPSHOT_BYTES;
}

void pstate_set_config(struct pstate *ps, const struct pstate_config *cfg)
{
	ps->cfg = *cfg;
	if (ps->cfg.max_producers < 1)
		ps->cfg.max_producers = 1;
}

/* --- entries ---------------------------------------------------------------------------------- */

static void entry_init(struct pstate_entry *e, int64_t pid)
{
	memset(e, 0, sizeof *e);
	e->producer_id = pid;
	e->epoch = -1;
	e->coordinator_epoch = -1;
	e->txn_first_offset = -1;
	e->last_timestamp_ms = -1;
	e->last_seen_ms = -1;
}

static bool entry_empty(const struct pstate_entry *e)
{
	return e->n_batches == 0 && e->epoch == -1 && e->txn_first_offset < 0;
}

static const struct pstate_batch *entry_batch(const struct pstate_entry *e, uint32_t i)
{
	return &e->batches[(e->first + i) % PSTATE_BATCHES];
}

static const struct pstate_batch *entry_last(const struct pstate_entry *e)
{
	return e->n_batches ? entry_batch(e, e->n_batches - 1u) : NULL;
}

static const struct pstate_batch *entry_find_dup(const struct pstate_entry *e, int16_t epoch,
						 int32_t first_seq, int32_t last_seq)
{
	if (epoch != e->epoch)
		return NULL;
	for (uint32_t i = 0; i < e->n_batches; i++) {
		const struct pstate_batch *b = entry_batch(e, i);
		if (b->first_seq == first_seq && b->last_seq == last_seq)
			return b;
	}
	return NULL;
}

/* ProducerStateEntry.addBatch: a new epoch forgets the old epoch's batches. */
static void entry_add_batch(struct pstate_entry *e, int16_t epoch, const struct pstate_batch *b)
{
	if (e->epoch != epoch) {
		e->n_batches = 0;
		e->first = 0;
		e->epoch = epoch;
	}
	if (e->n_batches == PSTATE_BATCHES) {
		e->first = (uint8_t)((e->first + 1) % PSTATE_BATCHES);
		e->n_batches--;
	}
	e->batches[(e->first + e->n_batches) % PSTATE_BATCHES] = *b;
	e->n_batches++;
	e->last_timestamp_ms = b->timestamp_ms;
}

/* --- the producer table ----------------------------------------------------------------------- */

static uint32_t pid_hash(const struct pstate *ps, int64_t pid)
{
	uint64_t h = (uint64_t)pid * 0x9e3779b97f4a7c15ull;
	return (uint32_t)(h >> 32) & (ps->n_buckets - 1);
}

static struct pstate_producer *find(const struct pstate *ps, int64_t pid)
{
	for (struct pstate_producer *p = ps->buckets[pid_hash(ps, pid)]; p; p = p->hnext)
		if (p->e.producer_id == pid)
			return p;
	return NULL;
}

static void lru_unlink(struct pstate *ps, struct pstate_producer *p)
{
	if (p->lru_prev)
		p->lru_prev->lru_next = p->lru_next;
	else
		ps->lru_head = p->lru_next;
	if (p->lru_next)
		p->lru_next->lru_prev = p->lru_prev;
	else
		ps->lru_tail = p->lru_prev;
	p->lru_prev = p->lru_next = NULL;
}

static void lru_append(struct pstate *ps, struct pstate_producer *p)
{
	p->lru_prev = ps->lru_tail;
	p->lru_next = NULL;
	if (ps->lru_tail)
		ps->lru_tail->lru_next = p;
	else
		ps->lru_head = p;
	ps->lru_tail = p;
}

static void lru_touch(struct pstate *ps, struct pstate_producer *p)
{
	if (ps->lru_tail == p)
		return;
	lru_unlink(ps, p);
	lru_append(ps, p);
}

static void remove_producer(struct pstate *ps, struct pstate_producer *p)
{
	ST_ASSERT(p->inflight == 0);
	for (struct pstate_producer **pp = &ps->buckets[pid_hash(ps, p->e.producer_id)]; *pp;
	     pp = &(*pp)->hnext) {
		if (*pp == p) {
			*pp = p->hnext;
			break;
		}
	}
	lru_unlink(ps, p);
	ps->n_producers--;
	free(p);
}

static void grow_buckets(struct pstate *ps)
{
	uint32_t n = ps->n_buckets * 2;
	struct pstate_producer **nb = calloc(n, sizeof *nb);
	if (!nb)
		return; /* longer chains, still correct */
	uint32_t old_n = ps->n_buckets;
	struct pstate_producer **old = ps->buckets;
	ps->buckets = nb;
	ps->n_buckets = n;
	for (uint32_t i = 0; i < old_n; i++) {
		for (struct pstate_producer *p = old[i], *next; p; p = next) {
			next = p->hnext;
			uint32_t h = pid_hash(ps, p->e.producer_id);
			p->hnext = nb[h];
			nb[h] = p;
		}
	}
	free(old);
}

/* Over max_producers: drop the least recently used producer with nothing in flight. */
static void evict_if_full(struct pstate *ps)
{
	if (ps->n_producers < ps->cfg.max_producers)
		return;
	struct pstate_producer *p = ps->lru_head;
	for (int i = 0; p && i < EVICT_SEARCH; i++, p = p->lru_next) {
		if (p->inflight == 0) {
			slog_debug("pstate", "dir=%s evicting producer %" PRId64 " (%u producers, max %u)",
				   ps->dir, p->e.producer_id, ps->n_producers, ps->cfg.max_producers);
			remove_producer(ps, p);
			ps->stats.evicted++;
			return;
		}
	}
	/* Every candidate is busy: exceed the bound for now rather than lose in-flight state. */
}

static struct pstate_producer *insert_new(struct pstate *ps, int64_t pid)
{
	evict_if_full(ps);
	struct pstate_producer *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	entry_init(&p->e, pid);
	uint32_t h = pid_hash(ps, pid);
	p->hnext = ps->buckets[h];
	ps->buckets[h] = p;
	lru_append(ps, p);
	ps->n_producers++;
	if (ps->n_producers > ps->n_buckets)
		grow_buckets(ps);
	return p;
}

static bool expired(const struct pstate *ps, const struct pstate_producer *p, int64_t now_ms)
{
	/* An ongoing transaction is never expired here (Kafka: the coordinator aborts it first). */
	return ps->cfg.expiration_ms > 0 && p->inflight == 0 && p->e.txn_first_offset < 0 &&
	       now_ms - p->e.last_seen_ms >= ps->cfg.expiration_ms;
}

int pstate_expire(struct pstate *ps, int64_t now_ms)
{
	int n = 0;
	for (struct pstate_producer *p = ps->lru_head, *next; p; p = next) {
		next = p->lru_next;
		if (expired(ps, p, now_ms)) {
			remove_producer(ps, p);
			ps->stats.expired++;
			n++;
		} else if (entry_empty(&p->e) && p->inflight == 0) {
			remove_producer(ps, p);
		}
	}
	return n;
}

/* Lazy expiry on the append path: a few from the least recently used end. */
static void expire_some(struct pstate *ps, int64_t now_ms)
{
	for (int i = 0; i < LAZY_EXPIRE_PER_CHECK && ps->lru_head; i++) {
		struct pstate_producer *p = ps->lru_head;
		if (!expired(ps, p, now_ms))
			break;
		slog_debug("pstate", "dir=%s producer %" PRId64 " expired (idle %" PRId64 " ms)", ps->dir,
			   p->e.producer_id, now_ms - p->e.last_seen_ms);
		remove_producer(ps, p);
		ps->stats.expired++;
	}
}

/* --- create / free ---------------------------------------------------------------------------- */

struct pstate *pstate_create(const char *dir, const struct pstate_config *cfg)
{
	struct pstate *ps = calloc(1, sizeof *ps);
	if (!ps)
		return NULL;
	if (dir) {
		if (snprintf(ps->dir, sizeof ps->dir, "%s", dir) >= (int)sizeof ps->dir) {
			free(ps);
			return NULL;
		}
		ps->persist = true;
	} else {
		snprintf(ps->dir, sizeof ps->dir, "(memory)");
	}
	struct pstate_config def;
	pstate_config_defaults(&def);
	pstate_set_config(ps, cfg ? cfg : &def);
	ps->n_buckets = 64;
	ps->buckets = calloc(ps->n_buckets, sizeof *ps->buckets);
	if (!ps->buckets) {
		free(ps);
		return NULL;
	}
	ps->snapshot_offset = -1;
	ps->stats.snapshot_loaded_offset = -1;
	return ps;
}

void pstate_free(struct pstate *ps)
{
	if (!ps)
		return;
	if (ps->waiters)
		slog_warn("pstate", "dir=%s freed with duplicate answers still waiting", ps->dir);
	for (struct pstate_append *a = ps->inflight_head; a; a = a->next_) {
		if (a->undo_ != a->undo_inline_)
			free(a->undo_);
		a->undo_ = NULL;
		a->state_ = PA_DONE;
	}
	for (struct pstate_producer *p = ps->lru_head, *next; p; p = next) {
		next = p->lru_next;
		free(p);
	}
	free(ps->buckets);
	free(ps);
}

const struct pstate_entry *pstate_find(const struct pstate *ps, int64_t producer_id)
{
	const struct pstate_producer *p = find(ps, producer_id);
	return p && !entry_empty(&p->e) ? &p->e : NULL;
}

void pstate_get_stats(const struct pstate *ps, struct pstate_stats *out)
{
	*out = ps->stats;
	out->producers = ps->n_producers;
}

/* --- the append path -------------------------------------------------------------------------- */

/* Framing only: the log validates everything else. false when the records are not a clean
 * sequence of v2 batches (the log will refuse them; nothing is tracked). */
static bool next_batch(const uint8_t *data, size_t len, size_t *pos, struct batch_hdr *h)
{
	if (len - *pos < BATCH_HDR_SIZE || batch_parse_hdr(data + *pos, len - *pos, h) < 0)
		return false;
	if (h->magic != BATCH_MAGIC_V2 || h->batch_length < BATCH_HDR_SIZE - BATCH_LOG_OVERHEAD ||
	    batch_size(h) > (int64_t)(len - *pos) || h->last_offset_delta < 0)
		return false;
	*pos += (size_t)batch_size(h);
	return true;
}

static bool is_producer_batch(const struct batch_hdr *h)
{
	return h->producer_id >= 0 && !batch_is_control(h);
}

static struct pstate_undo *slot_for(struct pstate_append *pa, int64_t pid)
{
	for (uint32_t i = 0; i < pa->n_undo_; i++)
		if (pa->undo_[i].producer_id == pid)
			return &pa->undo_[i];
	return NULL;
}

static void release_slots(struct pstate_append *pa)
{
	if (pa->undo_ && pa->undo_ != pa->undo_inline_)
		free(pa->undo_);
	pa->undo_ = NULL;
	pa->n_undo_ = 0;
}

/* Kafka's precedence: a corrupt batch is CORRUPT_MESSAGE before any producer-state verdict. */
static bool all_crcs_ok(const uint8_t *data, size_t len)
{
	size_t pos = 0;
	struct batch_hdr h;
	while (pos < len) {
		size_t at = pos;
		if (!next_batch(data, len, &pos, &h))
			return false;
		if (!batch_crc_ok(data + at, (size_t)batch_size(&h)))
			return false;
	}
	return true;
}

static int check_fail(struct pstate *ps, struct pstate_append *pa, const uint8_t *data, size_t len,
		      int kerr)
{
	release_slots(pa);
	pa->state_ = PA_DONE;
	if (!all_crcs_ok(data, len))
		return KERR_CORRUPT_MESSAGE;
	if (kerr == KERR_OUT_OF_ORDER_SEQUENCE_NUMBER)
		ps->stats.out_of_order++;
	else if (kerr == KERR_INVALID_PRODUCER_EPOCH)
		ps->stats.fenced++;
	return kerr;
}

int pstate_check(struct pstate *ps, const uint8_t *data, size_t len, int64_t now_ms,
		 struct pstate_append *pa)
{
	pa->duplicate = false;
	pa->dup_base_offset = pa->dup_last_offset = -1;
	pa->dup_log_append_time_ms = -1;
	pa->next_ = pa->prev_ = NULL;
	pa->undo_ = NULL;
	pa->n_undo_ = 0;
	pa->base_offset_ = pa->last_offset_ = -1;
	pa->rolled_back_ = false;
	pa->state_ = PA_CHECKED;

	expire_some(ps, now_ms);

	/* Pass 1: framing, and how many batches carry a producer id. */
	size_t pos = 0;
	uint32_t n_batches = 0, n_prod = 0;
	struct batch_hdr h;
	while (pos < len) {
		if (!next_batch(data, len, &pos, &h))
			return KERR_NONE; /* malformed: log_append answers it, nothing to track */
		n_batches++;
		if (is_producer_batch(&h))
			n_prod++;
		/* Kafka's LogValidator refuses these (INVALID_RECORD) before any producer check. */
		if (is_producer_batch(&h) && (h.base_sequence < 0 ||
					      h.record_count != h.last_offset_delta + 1))
			return KERR_NONE;
	}
	if (n_prod == 0)
		return KERR_NONE;
	if (n_prod <= ST_ARRAY_LEN(pa->undo_inline_)) {
		pa->undo_ = pa->undo_inline_;
	} else {
		pa->undo_ = calloc(n_prod, sizeof *pa->undo_);
		if (!pa->undo_) {
			pa->state_ = PA_DONE;
			return KERR_UNKNOWN_SERVER_ERROR;
		}
	}

	/* Pass 2: every producer batch in order (ProducerAppendInfo.checkProducerEpoch and
	 * checkSequence), each against the state as the earlier batches would leave it. */
	uint32_t n_dup = 0;
	pos = 0;
	while (pos < len) {
		bool framed = next_batch(data, len, &pos, &h);
		ST_ASSERT(framed); /* pass 1 walked the same bytes */
		if (!is_producer_batch(&h))
			continue;
		int32_t first_seq = h.base_sequence;
		int32_t last_seq = pstate_seq_add(first_seq, h.last_offset_delta);
		struct pstate_undo *u = slot_for(pa, h.producer_id);
		if (!u) {
			u = &pa->undo_[pa->n_undo_++];
			memset(u, 0, sizeof *u);
			u->producer_id = h.producer_id;
		}
		struct pstate_producer *p = find(ps, h.producer_id);
		const struct pstate_entry *e = p ? &p->e : NULL;
		int16_t cur_epoch = u->upd_ ? u->upd_epoch_ : (e ? e->epoch : -1);

		/* A retry of one of the cached batches: answered with its original offsets. Like
		 * Kafka, against the state before these records (findDuplicateBatch on lastEntry). */
		const struct pstate_batch *dup = e ? entry_find_dup(e, h.producer_epoch, first_seq, last_seq)
						   : NULL;
		if (dup) {
			if (n_dup++ == 0) {
				pa->dup_base_offset = dup->first_offset;
				pa->dup_log_append_time_ms = dup->log_append_time ? dup->timestamp_ms : -1;
			}
			if (dup->last_offset > pa->dup_last_offset)
				pa->dup_last_offset = dup->last_offset;
			continue;
		}
		if (h.producer_epoch < cur_epoch) {
			slog_debug("pstate", "dir=%s producer %" PRId64 ": epoch %d is older than %d",
				   ps->dir, h.producer_id, h.producer_epoch, cur_epoch);
			return check_fail(ps, pa, data, len, KERR_INVALID_PRODUCER_EPOCH);
		}
		if (h.producer_epoch != cur_epoch) {
			/* A new epoch starts at 0; an unknown producer (no epoch yet) may start
			 * anywhere (KIP-360: its state may have expired or been deleted). */
			if (first_seq != 0 && cur_epoch != -1) {
				slog_debug("pstate", "dir=%s producer %" PRId64 ": new epoch %d starts at "
					   "sequence %d, not 0", ps->dir, h.producer_id, h.producer_epoch,
					   first_seq);
				return check_fail(ps, pa, data, len, KERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
			}
		} else {
			int32_t cur_last = -1;
			if (u->upd_)
				cur_last = u->upd_last_seq_;
			else if (e && e->n_batches)
				cur_last = entry_last(e)->last_seq;
			bool no_epoch = !e || e->epoch == -1;
			if (!no_epoch && !pstate_in_sequence(cur_last, first_seq)) {
				slog_debug("pstate", "dir=%s producer %" PRId64 " epoch %d: sequence %d after "
					   "%d", ps->dir, h.producer_id, h.producer_epoch, first_seq, cur_last);
				return check_fail(ps, pa, data, len, KERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
			}
		}
		u->upd_ = true;
		u->upd_epoch_ = h.producer_epoch;
		u->upd_last_seq_ = last_seq;
	}

	if (n_dup > 0) {
		if (n_dup != n_batches) {
			/* Kafka would answer the first retried batch's offset and silently drop the
			 * others; no client sends this, and losing data quietly is worse. */
			slog_warn("pstate", "dir=%s a produce request mixes %u retried batches with %u "
				  "others: refused", ps->dir, n_dup, n_batches - n_dup);
			return check_fail(ps, pa, data, len, KERR_INVALID_RECORD);
		}
		release_slots(pa);
		pa->state_ = PA_DONE;
		if (!all_crcs_ok(data, len)) {
			pa->dup_base_offset = pa->dup_last_offset = -1;
			return KERR_CORRUPT_MESSAGE;
		}
		pa->duplicate = true;
		ps->stats.duplicates += n_dup;
		return KERR_NONE;
	}

	/* Create the unknown producers now so that pstate_commit cannot fail: the records will
	 * be on disk by then. Pin the known ones so creating the others cannot evict them. */
	for (uint32_t i = 0; i < pa->n_undo_; i++) {
		struct pstate_producer *p = find(ps, pa->undo_[i].producer_id);
		if (p)
			p->inflight++;
	}
	bool oom = false;
	for (uint32_t i = 0; i < pa->n_undo_; i++) {
		struct pstate_undo *u = &pa->undo_[i];
		if (find(ps, u->producer_id))
			continue;
		struct pstate_producer *p = insert_new(ps, u->producer_id);
		if (!p) {
			oom = true;
			break;
		}
		p->inflight++;
		u->created = true;
	}
	for (uint32_t i = 0; i < pa->n_undo_; i++) {
		struct pstate_producer *p = find(ps, pa->undo_[i].producer_id);
		if (p)
			p->inflight--;
	}
	if (oom) {
		pstate_cancel(ps, pa);
		return KERR_UNKNOWN_SERVER_ERROR;
	}
	return KERR_NONE;
}

void pstate_cancel(struct pstate *ps, struct pstate_append *pa)
{
	if (pa->state_ != PA_CHECKED)
		return;
	for (uint32_t i = 0; i < pa->n_undo_; i++) {
		if (!pa->undo_[i].created)
			continue;
		struct pstate_producer *p = find(ps, pa->undo_[i].producer_id);
		if (p && p->inflight == 0 && entry_empty(&p->e))
			remove_producer(ps, p);
	}
	release_slots(pa);
	pa->state_ = PA_DONE;
}

void pstate_commit(struct pstate *ps, struct pstate_append *pa, const uint8_t *data, size_t len,
		   int64_t now_ms)
{
	ST_ASSERT(pa->state_ == PA_CHECKED);
	ps->bytes_since_snapshot += (int64_t)len;
	for (uint32_t i = 0; i < pa->n_undo_; i++) {
		struct pstate_producer *p = find(ps, pa->undo_[i].producer_id);
		ST_ASSERT(p); /* found or created by pstate_check, nothing ran in between */
		pa->undo_[i].saved = p->e;
		p->inflight++;
	}
	size_t pos = 0;
	struct batch_hdr h;
	while (pos < len && next_batch(data, len, &pos, &h)) {
		if (pa->base_offset_ < 0)
			pa->base_offset_ = h.base_offset;
		pa->last_offset_ = batch_last_offset(&h);
		if (!is_producer_batch(&h))
			continue;
		struct pstate_producer *p = slot_for(pa, h.producer_id) ? find(ps, h.producer_id) : NULL;
		if (!p) {
			slog_error("pstate", "dir=%s producer %" PRId64 " batch at offset %" PRId64
				   " was not checked; its state is not tracked", ps->dir, h.producer_id,
				   h.base_offset);
			continue;
		}
		struct pstate_batch b = {
			.first_seq = h.base_sequence,
			.last_seq = pstate_seq_add(h.base_sequence, h.last_offset_delta),
			.first_offset = h.base_offset,
			.last_offset = batch_last_offset(&h),
			.timestamp_ms = h.max_timestamp,
			.log_append_time = batch_is_log_append_time(&h),
		};
		entry_add_batch(&p->e, h.producer_epoch, &b);
		p->e.last_seen_ms = now_ms;
		lru_touch(ps, p);
		/* Transactions (later): a transactional batch with no ongoing transaction sets
		 * txn_first_offset (ProducerAppendInfo.appendDataBatch); a non-transactional one
		 * during a transaction is INVALID_TXN_STATE. */
	}
	if (pa->n_undo_ == 0) {
		release_slots(pa);
		pa->state_ = PA_UNTRACKED;
		return;
	}
	pa->state_ = PA_INFLIGHT;
	pa->next_ = NULL;
	pa->prev_ = ps->inflight_tail;
	if (ps->inflight_tail)
		ps->inflight_tail->next_ = pa;
	else
		ps->inflight_head = pa;
	ps->inflight_tail = pa;
}

/* The log failed pa and will fail everything after it: undo, newest first. */
static void rollback_from(struct pstate *ps, struct pstate_append *pa)
{
	for (struct pstate_append *a = ps->inflight_tail; a; a = a->prev_) {
		if (!a->rolled_back_) {
			for (uint32_t i = a->n_undo_; i-- > 0;) {
				struct pstate_producer *p = find(ps, a->undo_[i].producer_id);
				ST_ASSERT(p); /* pinned by inflight */
				p->e = a->undo_[i].saved;
			}
			a->rolled_back_ = true;
			ps->stats.rollbacks++;
			slog_info("pstate", "dir=%s append at offsets %" PRId64 "..%" PRId64
				  " failed: producer state rolled back", ps->dir, a->base_offset_,
				  a->last_offset_);
		}
		if (a == pa)
			break;
	}
}

static void fire_waiters(struct pstate *ps, int64_t upto_offset, int kerr)
{
	struct pstate_waiter *ready = NULL, **tail = &ready;
	for (struct pstate_waiter **wp = &ps->waiters; *wp;) {
		struct pstate_waiter *w = *wp;
		if (w->offset_ <= upto_offset) {
			*wp = w->next_;
			w->next_ = NULL;
			*tail = w;
			tail = &w->next_;
		} else {
			wp = &w->next_;
		}
	}
	/* Detached first: a waiter's answer may run arbitrary request code. */
	while (ready) {
		struct pstate_waiter *w = ready;
		ready = w->next_;
		w->next_ = NULL;
		w->fire(w, kerr);
	}
}

void pstate_append_done(struct pstate *ps, struct pstate_append *pa, int kerr)
{
	if (pa->state_ == PA_INFLIGHT) {
		if (kerr != KERR_NONE && !pa->rolled_back_)
			rollback_from(ps, pa);
		/* The log answers appends in offset order: pa is the oldest tracked one. */
		if (pa != ps->inflight_head)
			slog_error("pstate", "dir=%s append %" PRId64 " finished out of order", ps->dir,
				   pa->base_offset_);
		if (pa->prev_)
			pa->prev_->next_ = pa->next_;
		else
			ps->inflight_head = pa->next_;
		if (pa->next_)
			pa->next_->prev_ = pa->prev_;
		else
			ps->inflight_tail = pa->prev_;
		pa->next_ = pa->prev_ = NULL;
		for (uint32_t i = 0; i < pa->n_undo_; i++) {
			struct pstate_producer *p = find(ps, pa->undo_[i].producer_id);
			ST_ASSERT(p && p->inflight > 0);
			p->inflight--;
			if (p->inflight == 0 && entry_empty(&p->e))
				remove_producer(ps, p);
		}
		release_slots(pa);
	} else if (pa->state_ != PA_UNTRACKED) {
		return;
	}
	pa->state_ = PA_DONE;
	if (pa->last_offset_ >= 0)
		fire_waiters(ps, pa->last_offset_, kerr);
	/* Periodic snapshot at last_offset + 1, or at the first append still in flight (left
	 * out). Not fsynced: a torn or lost file fails its checksum or is missing, and recovery
	 * falls back to the previous one or a longer scan; one beyond what survived a crash is
	 * beyond the recovered log end and discarded. */
	if (kerr == KERR_NONE && ps->persist && ps->cfg.snapshot_interval_bytes > 0 &&
	    ps->bytes_since_snapshot >= ps->cfg.snapshot_interval_bytes && pa->last_offset_ >= 0)
		pstate_snapshot(ps, pa->last_offset_ + 1, false);
}

bool pstate_wait(struct pstate *ps, struct pstate_waiter *w, int64_t dup_last_offset, int64_t hw)
{
	if (dup_last_offset < hw)
		return false;
	if (!ps->inflight_tail || ps->inflight_tail->last_offset_ < dup_last_offset) {
		/* Cached but neither acknowledged nor in flight: cannot happen (a failed append's
		 * batches are rolled back). Answer rather than park forever. */
		slog_error("pstate", "dir=%s duplicate of offset %" PRId64 " is neither below the high "
			   "watermark %" PRId64 " nor in flight", ps->dir, dup_last_offset, hw);
		return false;
	}
	w->offset_ = dup_last_offset;
	w->next_ = NULL;
	struct pstate_waiter **wp = &ps->waiters;
	while (*wp)
		wp = &(*wp)->next_;
	*wp = w;
	return true;
}

/* --- replay ------------------------------------------------------------------------------------ */

void pstate_replay_batch(struct pstate *ps, const struct batch_hdr *h, bool log_append_time)
{
	if (h->magic != BATCH_MAGIC_V2 || !is_producer_batch(h))
		return; /* control batches: transaction markers, later */
	struct pstate_producer *p = find(ps, h->producer_id);
	if (!p && !(p = insert_new(ps, h->producer_id))) {
		slog_warn("pstate", "dir=%s out of memory rebuilding producer %" PRId64, ps->dir,
			  h->producer_id);
		return;
	}
	struct pstate_batch b = {
		.first_seq = h->base_sequence,
		.last_seq = pstate_seq_add(h->base_sequence, h->last_offset_delta),
		.first_offset = h->base_offset,
		.last_offset = batch_last_offset(h),
		.timestamp_ms = h->max_timestamp,
		.log_append_time = log_append_time,
	};
	entry_add_batch(&p->e, h->producer_epoch, &b);
	if (h->max_timestamp > p->e.last_seen_ms)
		p->e.last_seen_ms = h->max_timestamp;
	lru_touch(ps, p);
	ps->stats.batches_replayed++;
}

/* --- snapshots --------------------------------------------------------------------------------- */

static int snap_name(char *buf, size_t n, int64_t offset, const char *suffix)
{
	int r = snprintf(buf, n, "%0*" PRId64 "%s%s", SNAP_NAME_DIGITS, offset, SNAP_SUFFIX, suffix);
	return r < 0 || (size_t)r >= n ? -ENAMETOOLONG : 0;
}

/* "<20 digits>.snapshot" -> offset; -1 when the name is something else. */
static int64_t snap_parse_name(const char *name)
{
	size_t n = strlen(name);
	if (n != SNAP_NAME_DIGITS + strlen(SNAP_SUFFIX) ||
	    strcmp(name + SNAP_NAME_DIGITS, SNAP_SUFFIX) != 0)
		return -1;
	int64_t v = 0;
	for (int i = 0; i < SNAP_NAME_DIGITS; i++) {
		if (name[i] < '0' || name[i] > '9')
			return -1;
		if (v > (INT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (name[i] - '0');
	}
	return v;
}

static int cmp_i64_desc(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* Snapshot offsets in the directory, newest first (at most max; more are never kept). */
static int list_snapshots(const char *dir, int64_t *out, int max)
{
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL && n < max) {
		int64_t off = snap_parse_name(de->d_name);
		if (off >= 0)
			out[n++] = off;
	}
	closedir(d);
	qsort(out, (size_t)n, sizeof *out, cmp_i64_desc);
	return n;
}

static void unlink_snapshot(struct pstate *ps, int64_t offset, const char *why)
{
	char name[64], path[PATH_MAX];
	if (snap_name(name, sizeof name, offset, "") < 0 ||
	    snprintf(path, sizeof path, "%s/%s", ps->dir, name) >= (int)sizeof path)
		return;
	if (unlink(path) == 0) {
		if (strcmp(why, "superseded") == 0)
			slog_debug("pstate", "dir=%s removed producer snapshot %s (%s)", ps->dir, name, why);
		else
			slog_info("pstate", "dir=%s removed producer snapshot %s (%s)", ps->dir, name, why);
	}
}

static int fsync_path(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

static void put_entry(uint8_t *p, const struct pstate_entry *e)
{
	memset(p, 0, SNAP_ENTRY_SIZE);
	st_put_be64(p + 0, (uint64_t)e->producer_id);
	st_put_be16(p + 8, (uint16_t)e->epoch);
	p[10] = e->n_batches;
	uint8_t mask = 0;
	for (uint32_t i = 0; i < e->n_batches; i++) {
		const struct pstate_batch *b = entry_batch(e, i);
		uint8_t *q = p + 40 + i * SNAP_BATCH_SIZE;
		st_put_be32(q + 0, (uint32_t)b->first_seq);
		st_put_be32(q + 4, (uint32_t)b->last_seq);
		st_put_be64(q + 8, (uint64_t)b->first_offset);
		st_put_be64(q + 16, (uint64_t)b->last_offset);
		st_put_be64(q + 24, (uint64_t)b->timestamp_ms);
		if (b->log_append_time)
			mask |= (uint8_t)(1u << i);
	}
	p[11] = mask;
	st_put_be32(p + 12, (uint32_t)e->coordinator_epoch);
	st_put_be64(p + 16, (uint64_t)e->txn_first_offset);
	st_put_be64(p + 24, (uint64_t)e->last_timestamp_ms);
	st_put_be64(p + 32, (uint64_t)e->last_seen_ms);
}

static bool get_entry(const uint8_t *p, struct pstate_entry *e)
{
	entry_init(e, (int64_t)st_be64(p));
	e->epoch = (int16_t)st_be16(p + 8);
	uint8_t n = p[10], mask = p[11];
	if (n > PSTATE_BATCHES || e->producer_id < 0)
		return false;
	e->coordinator_epoch = (int32_t)st_be32(p + 12);
	e->txn_first_offset = (int64_t)st_be64(p + 16);
	e->last_timestamp_ms = (int64_t)st_be64(p + 24);
	e->last_seen_ms = (int64_t)st_be64(p + 32);
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *q = p + 40 + i * SNAP_BATCH_SIZE;
		struct pstate_batch *b = &e->batches[i];
		b->first_seq = (int32_t)st_be32(q + 0);
		b->last_seq = (int32_t)st_be32(q + 4);
		b->first_offset = (int64_t)st_be64(q + 8);
		b->last_offset = (int64_t)st_be64(q + 16);
		b->timestamp_ms = (int64_t)st_be64(q + 24);
		b->log_append_time = (mask >> i) & 1;
		if (b->last_offset < b->first_offset)
			return false;
	}
	e->n_batches = n;
	e->first = 0;
	return true;
}

int pstate_snapshot(struct pstate *ps, int64_t offset, bool sync)
{
	if (!ps->persist)
		return 0;
	ST_ASSERT(offset >= 0);
	pstate_expire(ps, st_now_ms());
	/* Appends in flight are left out: the snapshot is the state at the first one's offset,
	 * each producer they touched as the oldest of them found it. */
	if (ps->inflight_head && ps->inflight_head->base_offset_ < offset)
		offset = ps->inflight_head->base_offset_;
	for (struct pstate_append *a = ps->inflight_head; a; a = a->next_) {
		for (uint32_t i = 0; i < a->n_undo_; i++) {
			struct pstate_producer *p = find(ps, a->undo_[i].producer_id);
			if (p && !p->snap_view)
				p->snap_view = &a->undo_[i].saved;
		}
	}
	uint32_t n = 0;
	for (struct pstate_producer *p = ps->lru_head; p; p = p->lru_next)
		if (!entry_empty(p->snap_view ? p->snap_view : &p->e))
			n++;
	size_t size = SNAP_HDR_SIZE + (size_t)n * SNAP_ENTRY_SIZE;
	uint8_t *buf = malloc(size);
	if (!buf) {
		for (struct pstate_producer *p = ps->lru_head; p; p = p->lru_next)
			p->snap_view = NULL;
		return -ENOMEM;
	}
	memcpy(buf, SNAP_MAGIC, 8);
	st_put_be16(buf + 12, SNAP_VERSION);
	st_put_be16(buf + 14, SNAP_ENTRY_SIZE);
	st_put_be32(buf + 16, n);
	st_put_be64(buf + 20, (uint64_t)offset);
	st_put_be64(buf + 28, 0);
	uint8_t *q = buf + SNAP_HDR_SIZE;
	for (struct pstate_producer *p = ps->lru_head; p; p = p->lru_next) {
		const struct pstate_entry *e = p->snap_view ? p->snap_view : &p->e;
		p->snap_view = NULL;
		if (entry_empty(e))
			continue;
		put_entry(q, e);
		q += SNAP_ENTRY_SIZE;
	}
	st_put_be32(buf + 8, crc32c(0, buf + 12, size - 12));

	char name[64], tmpname[64], path[PATH_MAX], tmp[PATH_MAX];
	int rc = snap_name(name, sizeof name, offset, "");
	if (rc == 0)
		rc = snap_name(tmpname, sizeof tmpname, offset, ".tmp");
	if (rc == 0 && (snprintf(path, sizeof path, "%s/%s", ps->dir, name) >= (int)sizeof path ||
			snprintf(tmp, sizeof tmp, "%s/%s", ps->dir, tmpname) >= (int)sizeof tmp))
		rc = -ENAMETOOLONG;
	int fd = -1;
	if (rc == 0 && (fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
		rc = -errno;
	for (size_t off = 0; rc == 0 && off < size;) {
		ssize_t w = write(fd, buf + off, size - off);
		if (w < 0) {
			if (errno != EINTR)
				rc = -errno;
			continue;
		}
		off += (size_t)w;
	}
	if (rc == 0 && sync && fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0 && close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0 && fd >= 0)
		unlink(tmp);
	if (rc == 0 && sync)
		rc = fsync_path(ps->dir, O_RDONLY | O_DIRECTORY);
	free(buf);
	if (rc < 0) {
		slog_warn("pstate", "dir=%s writing producer snapshot at offset %" PRId64 ": %s", ps->dir,
			  offset, strerror(-rc));
		return rc;
	}
	int64_t prev = ps->snapshot_offset;
	ps->snapshot_offset = offset;
	ps->bytes_since_snapshot = 0;
	ps->stats.snapshots_written++;
	/* Keep this one and the newest older one (the fallback if this one was not yet on disk
	 * when the machine stopped); any other is older or stale. */
	int64_t offs[SNAP_MAX_FILES];
	int k = list_snapshots(ps->dir, offs, (int)ST_ARRAY_LEN(offs));
	bool kept_prev = false;
	for (int i = 0; i < k; i++) {
		if (offs[i] == offset)
			continue;
		if (offs[i] < offset && !kept_prev) {
			kept_prev = true;
			continue;
		}
		unlink_snapshot(ps, offs[i], offs[i] > offset ? "stale" : "superseded");
	}
	slog_debug("pstate", "dir=%s producer snapshot at offset %" PRId64 " (%u producers, previous %"
		   PRId64 ")", ps->dir, offset, n, prev);
	return 0;
}

/* Loads one snapshot file into the (empty) state. Returns 0, or -EBADMSG when damaged. */
static int load_snapshot(struct pstate *ps, int64_t offset)
{
	char name[64], path[PATH_MAX];
	if (snap_name(name, sizeof name, offset, "") < 0 ||
	    snprintf(path, sizeof path, "%s/%s", ps->dir, name) >= (int)sizeof path)
		return -ENAMETOOLONG;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	if (st.st_size < SNAP_HDR_SIZE || (size_t)st.st_size > SNAP_MAX_BYTES) {
		close(fd);
		return -EBADMSG;
	}
	size_t size = (size_t)st.st_size;
	uint8_t *buf = malloc(size);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	size_t got = 0;
	while (got < size) {
		ssize_t r = pread(fd, buf + got, size - got, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	int rc = 0;
	uint32_t n = got == size ? st_be32(buf + 16) : 0;
	if (got != size || memcmp(buf, SNAP_MAGIC, 8) != 0 || st_be16(buf + 12) != SNAP_VERSION ||
	    st_be16(buf + 14) != SNAP_ENTRY_SIZE ||
	    (uint64_t)SNAP_HDR_SIZE + (uint64_t)n * SNAP_ENTRY_SIZE != size ||
	    (int64_t)st_be64(buf + 20) != offset || st_be32(buf + 8) != crc32c(0, buf + 12, size - 12))
		rc = -EBADMSG;
	for (uint32_t i = 0; rc == 0 && i < n; i++) {
		struct pstate_entry e;
		if (!get_entry(buf + SNAP_HDR_SIZE + (size_t)i * SNAP_ENTRY_SIZE, &e)) {
			rc = -EBADMSG;
			break;
		}
		struct pstate_producer *p = find(ps, e.producer_id);
		if (!p && !(p = insert_new(ps, e.producer_id))) {
			rc = -ENOMEM;
			break;
		}
		p->e = e;
	}
	free(buf);
	if (rc < 0) {
		/* Leave nothing half-loaded. */
		for (struct pstate_producer *p = ps->lru_head, *next; p; p = next) {
			next = p->lru_next;
			remove_producer(ps, p);
		}
	}
	return rc;
}

struct replay_ctx {
	struct pstate *ps;
	int64_t from;
};

static int replay_cb(void *ctx, const struct batch_hdr *h, int64_t file_pos)
{
	(void)file_pos;
	struct replay_ctx *rc = ctx;
	if (batch_last_offset(h) < rc->from)
		return 0;
	pstate_replay_batch(rc->ps, h, batch_is_log_append_time(h));
	return 0;
}

int pstate_recover(struct pstate *ps, struct log *l, int64_t now_ms)
{
	int64_t leo = log_end_offset(l);
	int64_t from = -1;
	if (ps->persist) {
		/* Leftover temp files of an interrupted snapshot. */
		DIR *d = opendir(ps->dir);
		if (d) {
			struct dirent *de;
			while ((de = readdir(d)) != NULL) {
				size_t n = strlen(de->d_name);
				if (n > 4 && strcmp(de->d_name + n - 4, ".tmp") == 0 &&
				    strstr(de->d_name, SNAP_SUFFIX))
					unlinkat(dirfd(d), de->d_name, 0);
			}
			closedir(d);
		}
		int64_t offs[SNAP_MAX_FILES];
		int k = list_snapshots(ps->dir, offs, (int)ST_ARRAY_LEN(offs));
		if (k < 0)
			slog_warn("pstate", "dir=%s cannot list snapshots: %s", ps->dir, strerror(-k));
		for (int i = 0; i < k; i++) {
			if (offs[i] > leo) {
				/* The log lost its tail after this snapshot was taken (or was
				 * truncated): the snapshot may describe batches no longer there. */
				unlink_snapshot(ps, offs[i], "beyond the log end");
				continue;
			}
			if (from >= 0)
				continue; /* older ones stay as fallbacks until the next snapshot */
			int rc = load_snapshot(ps, offs[i]);
			if (rc == 0) {
				from = offs[i];
			} else {
				slog_warn("pstate", "dir=%s producer snapshot at offset %" PRId64 " unusable "
					  "(%s): ignored", ps->dir, offs[i], strerror(-rc));
				if (rc == -EBADMSG)
					unlink_snapshot(ps, offs[i], "damaged");
			}
		}
	}
	ps->snapshot_offset = from;
	ps->stats.snapshot_loaded_offset = from;
	struct replay_ctx ctx = { ps, from < 0 ? log_start_offset(l) : from };
	int rc = 0;
	if (ctx.from < leo)
		rc = log_scan_batches(l, ctx.from, replay_cb, &ctx);
	if (rc < 0)
		slog_error("pstate", "dir=%s rebuilding producer state from offset %" PRId64 ": %s",
			   ps->dir, ctx.from, strerror(-rc));
	pstate_expire(ps, now_ms);
	slog_info("pstate", "dir=%s producer state: %u producers (snapshot at %" PRId64 ", %" PRId64
		  " batches replayed up to %" PRId64 ")", ps->dir, ps->n_producers, from,
		  ps->stats.batches_replayed, leo);
	return rc < 0 ? rc : 0;
}
