/* log.c -- one partition's log (include/strata/log.h): validation and offset assignment at
 * append, writes and group-commit fsyncs through the partition's io_uring (one vectored write
 * in flight per segment file carrying every append queued behind the previous one; one fsync
 * round in flight per log), acknowledgement in offset order, the high watermark, rolling and
 * closing segments, reads by offset and by timestamp, a bounded set of closed segments with
 * open files, retention, DeleteRecords, the recovery checkpoint, crash recovery at open, and
 * storage-error handling (truncate back, resume). Segment files and indexes live in seg.c.
 * Everything runs on the thread that owns the ring. In steady state (append, roll, closing a
 * rolled segment, group commit, checkpoint, retention, DeleteRecords) the reactor makes no
 * blocking file-system call: the next segment's files are pre-opened under temporary names
 * through the ring (IORING_OP_OPENAT) before the active segment fills, so a roll only swaps
 * pointers and renames them through the ring; index finalization, closes, unlinks, the
 * checkpoint's open/write/fsync/rename and the truncation after a failed write are ring
 * operations too. Reads of closed segments through log_read_nb (Fetch) first check, without
 * blocking, that what the lookup touches is in memory (files open, index pages by mincore,
 * header pages by preadv2 RWF_NOWAIT) and otherwise hand the segment to the read_warm hook
 * (rwarm.c reads it into the page cache on its threads) and answer LOG_READ_PENDING. What
 * still blocks: log_open/log_close (documented as blocking), log_read (group replay at
 * start), timestamp lookups (ListOffsets) and max-timestamp reads of closed segments not in
 * memory, a page evicted again within LOG_WARM_FRESH_MS of its warm-up, the rebuild of a
 * damaged index on first lookup (rare: seg_load_index), and fallbacks when memory or a
 * pre-opened spare is missing (counted in log_stats.rolls_sync). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "strata/batch.h"
#include "strata/common.h"
#include "strata/compress.h"
#include "strata/crc32c.h"
#include "strata/kerr.h"
#include "strata/log.h"
#include "strata/slog.h"
#include "seg.h"

/* The per-partition checkpoint (written at clean close, periodically, after DeleteRecords and
 * retention; temp file + fsync + rename + directory fsync), text:
 *   strata-log-checkpoint 1
 *   log_start_offset <n>
 *   recovery_offset <offset below which everything is durable and CRC-checked>
 *   recovery_segment <base offset of the segment holding it>
 *   recovery_position <its byte position there>
 *   recovery_max_timestamp <max timestamp of that segment up to there> <its batch's last offset>
 *   crc <CRC-32C of everything above, decimal>
 * Segments before recovery_segment are closed and trusted (not scanned at open); the index
 * files of recovery_segment hold every entry below recovery_position. */
#define LOG_CKPT_NAME "strata-checkpoint"
#define LOG_CKPT_TMP "strata-checkpoint.tmp"
#define LOG_CKPT_MAGIC "strata-log-checkpoint 1\n"
#define LOG_CKPT_INTERVAL_MS 60000
#define LOG_INFLATE_MAX_BYTES ((size_t)256 << 20)
#define LOG_KICK_ROUNDS 64
/* Bounds of one vectored write (IOV_MAX iovecs; bytes: large enough that a busy partition's
 * queue goes out in one write, small enough that the appends behind it are not held up by a
 * single long copy). One append alone may exceed the byte bound. */
#define LOG_WRITE_MAX_IOV 1024
#define LOG_WRITE_MAX_BYTES ((int64_t)8 << 20)

enum ap_state {
	AP_WRITING = 1,         /* queued on its segment or in a write in flight */
	AP_WRITTEN,             /* write completed, an earlier append still writing */
	AP_PREFIX,              /* in the written prefix: everything before it is written too */
	AP_FAILED,              /* failed; waiting for writes in flight to settle and the cut */
	AP_FAILED_SETTLED,      /* will be answered KAFKA_STORAGE_ERROR in its turn */
};

enum op_kind {
	OP_SYNC_SEG = 1,
	OP_SYNC_DIR,
	OP_CLOSE_WRITE,
	OP_CLOSE_SYNC,
	OP_CK_WRITE,
	OP_CK_SYNC,
	OP_CK_OPEN,
	OP_CK_CLOSE,
	OP_CK_RENAME,
};

/* Metadata operations through the ring (open, rename, unlink, close, ftruncate), each in its
 * own allocation carrying the names the kernel reads when the SQE is submitted. */
enum meta_kind {
	META_SPARE_OPEN = 1,
	META_RENAME,
	META_UNLINK,
	META_CLOSE,
	META_TRUNC,
};

#define LOG_META_NAME 48
#define LOG_SPARE_FMT "strata-spare-%" PRIu32 ".%s.tmp"
/* Not before this many ms after a failed pre-open (then the roll creates files itself). */
#define LOG_SPARE_RETRY_MS 1000
/* IORING_OP_FTRUNCATE (Linux 6.9); liburing 2.3's headers predate it. */
#define LOG_IORING_OP_FTRUNCATE 55

static const char *const seg_exts[3] = { "log", "index", "timeindex" };

struct meta_op {
	struct uring_op op;
	struct log *l;
	struct log_seg *seg;    /* referenced while in flight (rename, truncate), else NULL */
	int kind, idx;
	char name[LOG_META_NAME], name2[LOG_META_NAME];
};

/* The next segment's files, opened ahead of the roll under "strata-spare-<gen>.<ext>.tmp". */
struct log_spare {
	int fds[3];
	int pending;            /* opens in flight */
	int err;
	uint32_t gen;
	bool ready;
	int64_t retry_ms;       /* wall clock: no new attempt before this after a failure */
};

/* A point in the log: an offset and where it lies in which segment (plus the segment's max
 * timestamp up to there, so a checkpoint can restore it without a scan). */
struct log_point {
	int64_t end;            /* offset after the prefix */
	int64_t seg_base;
	int64_t pos;
	int64_t max_ts, max_ts_offset;
};

struct ckpt_snap {
	int64_t lso;
	struct log_point rp;
};

/* A segment's one write in flight: the appends first..(n of them), contiguous in the file from
 * pos, as one vectored write. */
struct log_write {
	struct uring_op op;
	struct log_seg *seg;
	struct log_append *first;
	int32_t n;
	int64_t pos, len;
	struct iovec iov[LOG_WRITE_MAX_IOV];
};

struct log_ckpt {
	bool inflight;
	bool requested;
	bool failed;            /* the last attempt failed: retried at the next tick */
	int stage, pending, err;
	struct seg_op ops[3];
	struct log_seg *seg;    /* whose index tails this checkpoint writes (ref), or NULL */
	uint8_t *otail, *ttail;
	size_t otail_len, ttail_len, o_from, t_from;
	int tmp_fd;
	char text[512];
	size_t text_len;
	struct ckpt_snap snap;
	struct ckpt_snap last;  /* the last checkpoint written (skip identical rewrites) */
	bool have_last;
};

struct log {
	struct uring *ur;
	char dir[PATH_MAX];
	int dirfd;
	struct log_config cfg;
	struct log_hooks hooks;
	int32_t leader_epoch;

	struct log_seg **segs;  /* by base offset; the last one is active */
	int32_t nsegs, segs_cap;
	int32_t closing_count;
	int64_t publish_from;   /* base of the oldest rolled segment not yet given to segment_closed */
	struct log_seg *lru_head, *lru_tail;   /* closed segments recently used, most recent first */
	int32_t lru_n;

	int64_t start_offset, next_offset, hw;

	/* appends not yet answered, in offset order; q_unwritten = first not in the prefix */
	struct log_append *q_head, *q_tail, *q_unwritten;
	uint64_t seq;
	int writes_inflight;
	struct log_point written, durable, round;

	/* group commit */
	bool sync_inflight, sync_forced, sync_retry, round_had_dir, dir_sync_needed;
	int sync_pending, sync_err;
	struct seg_op *sync_ops;
	int sync_ops_cap;
	int64_t submitted_end;  /* offset after the last append handed to a write */
	int64_t sync_hold_end;  /* a round waits until the prefix reaches this (-1: not waiting) */
	int64_t unflushed_msgs;
	int64_t last_flush_ms;

	/* storage failure: no appends until the tail is truncated back */
	bool failed, fail_sync, trunc_pending, close_retry;
	struct log_seg *trunc_seg;
	int64_t trunc_pos;
	int close_ops_inflight;

	int inject_write_n, inject_write_err, inject_sync_n, inject_sync_err;

	struct log_ckpt ckpt;
	int64_t last_ckpt_ms;

	struct log_spare spare;
	int meta_inflight;      /* metadata ops in flight (struct meta_op) */
	int renames_inflight;   /* of which renames of adopted spare files */
	int32_t segs_tmp_named; /* segments with a file still under its temporary name */
	bool trunc_inflight, trunc_done, trunc_wait;

	bool in_kick, kick_again;
	struct log_stats stats;
};

static void log_kick(struct log *l);
static void ckpt_start(struct log *l);

void log_config_defaults(struct log_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->segment_bytes = 1073741824;
	cfg->segment_ms = 604800000;
	cfg->segment_index_bytes = 10485760;
	cfg->retention_ms = 604800000;
	cfg->retention_bytes = -1;
	cfg->flush_messages = 1;
	cfg->flush_ms = INT64_MAX;
	cfg->max_message_bytes = 1048588;
	cfg->index_interval_bytes = 4096;
	cfg->log_append_time = false;
	cfg->timestamp_before_max_ms = INT64_MAX;
	cfg->timestamp_after_max_ms = 3600000;
}

static void config_sanitize(struct log_config *c)
{
	/* Positions are int32 in the index: a segment can never pass 2 GiB. */
	if (c->segment_bytes > INT32_MAX)
		c->segment_bytes = INT32_MAX;
	if (c->segment_bytes < BATCH_HDR_SIZE)
		c->segment_bytes = BATCH_HDR_SIZE;
	if (c->segment_index_bytes < SEG_TIDX_ENTRY)
		c->segment_index_bytes = SEG_TIDX_ENTRY;
	if (c->flush_messages < 1)
		c->flush_messages = 1;
	if (c->flush_ms < 0)
		c->flush_ms = 0;
	if (c->index_interval_bytes < 0)
		c->index_interval_bytes = 0;
	if (c->timestamp_before_max_ms < 0)
		c->timestamp_before_max_ms = 0;
	if (c->timestamp_after_max_ms < 0)
		c->timestamp_after_max_ms = 0;
}

static inline bool strict_flush(const struct log *l) { return l->cfg.flush_messages <= 1; }
static inline struct log_seg *active_seg(const struct log *l) { return l->segs[l->nsegs - 1]; }

/* Index of the segment holding offset: the last with base <= offset (0 when before all). */
static int32_t find_seg_idx(const struct log *l, int64_t offset)
{
	int32_t lo = 0, hi = l->nsegs;
	if (offset < l->segs[0]->base_offset)
		return 0;
	while (hi - lo > 1) {
		int32_t mid = lo + (hi - lo) / 2;
		if (l->segs[mid]->base_offset <= offset)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static int32_t seg_idx_of(const struct log *l, const struct log_seg *s)
{
	for (int32_t i = l->nsegs - 1; i >= 0; i--)
		if (l->segs[i] == s)
			return i;
	return -1;
}

static int segs_push(struct log *l, struct log_seg *s)
{
	if (l->nsegs == l->segs_cap) {
		int32_t cap = l->segs_cap ? l->segs_cap * 2 : 16;
		struct log_seg **n = realloc(l->segs, (size_t)cap * sizeof *n);
		if (!n)
			return -ENOMEM;
		l->segs = n;
		l->segs_cap = cap;
	}
	s->owner = l;
	l->segs[l->nsegs++] = s;
	return 0;
}

/* --- closed segments' open files ------------------------------------------------------------ */

/* A closed segment keeps its .log fd (from when it was active, or opened by a read) and its
 * index mappings only while among the LOG_CLOSED_FILES_MAX most recently used closed segments;
 * the least recently used beyond that lose them (reopened on demand by seg.c). One referenced by
 * anything but the log (a slice being sent carries the fd number, an op in flight) is skipped:
 * its files stay until it is used again after the reference is gone. */
static void lru_unlink(struct log *l, struct log_seg *s)
{
	if (!s->in_lru)
		return;
	if (s->lru_prev)
		s->lru_prev->lru_next = s->lru_next;
	else
		l->lru_head = s->lru_next;
	if (s->lru_next)
		s->lru_next->lru_prev = s->lru_prev;
	else
		l->lru_tail = s->lru_prev;
	s->lru_prev = s->lru_next = NULL;
	s->in_lru = false;
	l->lru_n--;
}

/* Call before using a closed segment's files (use = true), or after something that may have
 * opened them (use = false: only tracks a segment not yet in the list). Never closes s itself,
 * so s's files stay valid until the next call for another segment. */
static void closed_used(struct log *l, struct log_seg *s, bool use)
{
	if (s->state != SEG_CLOSED)
		return;
	if (!use && (s->in_lru || !seg_has_files(s)))
		return;
	lru_unlink(l, s);
	s->lru_prev = NULL;
	s->lru_next = l->lru_head;
	if (l->lru_head)
		l->lru_head->lru_prev = s;
	else
		l->lru_tail = s;
	l->lru_head = s;
	s->in_lru = true;
	l->lru_n++;
	/* Bounded: each segment in the list is looked at once. */
	for (struct log_seg *v = l->lru_tail; v && l->lru_n > LOG_CLOSED_FILES_MAX;) {
		struct log_seg *prev = v->lru_prev;
		if (v != s && v->refs == 1) {
			lru_unlink(l, v);
			/* Synchronous: the bound must hold even when many lookups run between two
			 * turns of the ring (a close queued on it would not run until then). The
			 * file is linked, so its close frees nothing on disk. */
			if (seg_has_files(v))
				seg_close_files(v);
		}
		v = prev;
	}
}

static void unlink_async(struct log *l, const char *name);

/* Deletes segs[0..n): fds closed first when nothing else holds them, then the files unlinked
 * through the ring, so the blocks are freed in io-wq (a slice still holding a segment keeps its
 * inode: its last close, on the reactor, frees them). A crash before the unlinks leaves
 * segments below the checkpoint's log start offset: log_open keeps that start, retention
 * removes them again. */
static void segs_delete_front(struct log *l, int32_t n)
{
	static const char *const exts[] = { "log", "index", "timeindex", "txnindex" };
	for (int32_t i = 0; i < n; i++) {
		struct log_seg *s = l->segs[i];
		lru_unlink(l, s);
		if (s->refs == 1 && s->state == SEG_CLOSED)
			seg_close_files(s);
		for (size_t k = 0; k < ST_ARRAY_LEN(exts); k++) {
			char name[LOG_META_NAME];
			int len = snprintf(name, sizeof name, "%020" PRId64 ".%s", s->base_offset, exts[k]);
			ST_ASSERT(len > 0 && (size_t)len < sizeof name);
			unlink_async(l, name);
		}
		s->deleted = true;
		seg_unref(s);
	}
	memmove(l->segs, l->segs + n, (size_t)(l->nsegs - n) * sizeof *l->segs);
	l->nsegs -= n;
}

/* Max timestamp of the records of s below the high watermark. */
static void seg_visible_max_ts(struct log_seg *s, int64_t *ts, int64_t *off)
{
	if (s->state == SEG_CLOSED && s->hw_pos >= s->size) {
		seg_max_timestamp(s, ts, off);
		return;
	}
	*ts = s->hw_max_ts;
	*off = s->hw_max_ts_offset;
}

/* --- metadata operations through the ring --------------------------------------------------- */

static void meta_cb(struct uring_op *op, int res, uint32_t flags);

static struct meta_op *meta_new(struct log *l, int kind)
{
	struct meta_op *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	m->op.cb = meta_cb;
	m->l = l;
	m->kind = kind;
	return m;
}

static void meta_submit(struct log *l, struct meta_op *m, struct io_uring_sqe *sqe)
{
	uring_sqe_data(sqe, &m->op);
	l->meta_inflight++;
}

/* "<20-digit base>.<ext>", relative to the log's directory. */
static void seg_rel_name(const struct log_seg *s, const char *ext, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%020" PRId64 ".%s", s->base_offset, ext);
	ST_ASSERT(n > 0 && (size_t)n < len);
}

static void spare_rel_name(uint32_t gen, const char *ext, char *buf, size_t len)
{
	int n = snprintf(buf, len, LOG_SPARE_FMT, gen, ext);
	ST_ASSERT(n > 0 && (size_t)n < len);
}

/* Unlinks run in io-wq: removing a large file frees its blocks there, not on the reactor
 * (given that no fd keeps the inode alive: the last close would free them instead). */
static void unlink_async(struct log *l, const char *name)
{
	struct meta_op *m = meta_new(l, META_UNLINK);
	if (!m) {
		if (unlinkat(l->dirfd, name, 0) < 0 && errno != ENOENT)
			slog_warn("log", "dir=%s unlink %s: %s", l->dir, name, strerror(errno));
		return;
	}
	snprintf(m->name, sizeof m->name, "%s", name);
	struct io_uring_sqe *sqe = uring_get_sqe(l->ur);
	io_uring_prep_unlinkat(sqe, l->dirfd, m->name, 0);
	meta_submit(l, m, sqe);
}

/* The caller forgets fd at once; the number stays ours until the close has run. IOSQE_ASYNC:
 * io_uring runs a close inline (on the reactor, the file's release in its task work) unless
 * forced to io-wq. */
static void close_async(struct log *l, int fd)
{
	if (fd < 0)
		return;
	struct meta_op *m = meta_new(l, META_CLOSE);
	if (!m) {
		close(fd);
		return;
	}
	struct io_uring_sqe *sqe = uring_get_sqe(l->ur);
	io_uring_prep_close(sqe, fd);
	sqe->flags |= IOSQE_ASYNC;
	meta_submit(l, m, sqe);
}

static void spare_opened(struct log *l, struct meta_op *m, int res);
static void spare_renamed(struct log *l, struct meta_op *m, int res);
static void trunc_completed(struct log *l, struct meta_op *m, int res);

static void meta_cb(struct uring_op *op, int res, uint32_t flags)
{
	(void)flags;
	struct meta_op *m = ST_CONTAINER_OF(op, struct meta_op, op);
	struct log *l = m->l;
	l->meta_inflight--;
	switch (m->kind) {
	case META_SPARE_OPEN:
		spare_opened(l, m, res);
		break;
	case META_RENAME:
		spare_renamed(l, m, res);
		break;
	case META_UNLINK:
		if (res < 0 && res != -ENOENT)
			slog_warn("log", "dir=%s unlink %s: %s", l->dir, m->name, strerror(-res));
		break;
	case META_CLOSE:
		if (res < 0)
			slog_warn("log", "dir=%s close: %s", l->dir, strerror(-res));
		break;
	case META_TRUNC:
		trunc_completed(l, m, res);
		break;
	default:
		ST_ASSERT(0);
	}
	if (m->seg)
		seg_unref(m->seg);
	free(m);
	log_kick(l);
}

/* --- the next segment's files, opened ahead of the roll ---------------------------------------- */

/* Closes (and forgets) the spare's fds and removes its files: a failed or abandoned spare. */
static void spare_discard(struct log *l)
{
	struct log_spare *sp = &l->spare;
	for (int i = 0; i < 3; i++) {
		if (sp->fds[i] < 0)
			continue;
		close_async(l, sp->fds[i]);
		sp->fds[i] = -1;
		char name[LOG_META_NAME];
		spare_rel_name(sp->gen, seg_exts[i], name, sizeof name);
		unlink_async(l, name);
	}
	sp->ready = false;
}

/* Starts opening the next segment's files once the active segment is half way to a roll by
 * size, index size or age: a roll then needs no file-system call on the reactor. Partitions
 * far from a roll hold no spare (descriptors are counted). */
static void spare_maybe_start(struct log *l, int64_t now_ms)
{
	struct log_spare *sp = &l->spare;
	if (sp->ready || sp->pending || l->failed || now_ms < sp->retry_ms)
		return;
	struct log_seg *s = active_seg(l);
	if (s->size == 0)
		return;
	if (s->size < l->cfg.segment_bytes / 2 && !seg_index_full(s, l->cfg.segment_index_bytes / 2) &&
	    !(l->cfg.segment_ms > 0 && now_ms - s->roll_start_ms >= l->cfg.segment_ms / 2))
		return;
	sp->gen++;
	sp->err = 0;
	for (int i = 0; i < 3; i++) {
		struct meta_op *m = meta_new(l, META_SPARE_OPEN);
		if (!m) {
			sp->err = -ENOMEM;
			continue;
		}
		m->idx = i;
		spare_rel_name(sp->gen, seg_exts[i], m->name, sizeof m->name);
		struct io_uring_sqe *sqe = uring_get_sqe(l->ur);
		/* O_TRUNC: a leftover of the same name (an earlier run) is reused empty. */
		io_uring_prep_openat(sqe, l->dirfd, m->name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		meta_submit(l, m, sqe);
		sp->pending++;
	}
	if (sp->pending == 0)
		sp->retry_ms = now_ms + LOG_SPARE_RETRY_MS;
}

static void spare_opened(struct log *l, struct meta_op *m, int res)
{
	struct log_spare *sp = &l->spare;
	ST_ASSERT(sp->pending > 0 && sp->fds[m->idx] < 0);
	if (res >= 0)
		sp->fds[m->idx] = res;
	else if (!sp->err)
		sp->err = res;
	if (--sp->pending > 0)
		return;
	if (sp->err) {
		slog_warn("log", "dir=%s pre-opening the next segment's files: %s (the roll creates them)",
			  l->dir, strerror(-sp->err));
		spare_discard(l);
		sp->retry_ms = st_now_ms() + LOG_SPARE_RETRY_MS;
		return;
	}
	sp->ready = true;
}

/* Renames an adopted spare's files still under their temporary names to the segment's. */
static void spare_renames_submit(struct log *l, struct log_seg *s)
{
	for (int i = 0; i < 3; i++) {
		if (!(s->tmp_mask & (1u << i)))
			continue;
		struct meta_op *m = meta_new(l, META_RENAME);
		if (!m)
			continue; /* retried at the next tick */
		m->idx = i;
		m->seg = s;
		seg_ref(s);
		spare_rel_name(s->tmp_gen, seg_exts[i], m->name, sizeof m->name);
		seg_rel_name(s, seg_exts[i], m->name2, sizeof m->name2);
		struct io_uring_sqe *sqe = uring_get_sqe(l->ur);
		io_uring_prep_renameat(sqe, l->dirfd, m->name, l->dirfd, m->name2, 0);
		meta_submit(l, m, sqe);
		l->renames_inflight++;
	}
}

static void spare_renamed(struct log *l, struct meta_op *m, int res)
{
	struct log_seg *s = m->seg;
	l->renames_inflight--;
	if (res < 0) {
		/* Group-commit rounds wait (nothing in the segment is acknowledged) until a retry
		 * from log_tick succeeds. */
		slog_error("log", "dir=%s renaming %s to %s: %s (retrying)", l->dir, m->name, m->name2,
			   strerror(-res));
		return;
	}
	if (s->tmp_mask & (1u << m->idx)) {
		s->tmp_mask &= (uint8_t)~(1u << m->idx);
		if (!s->tmp_mask)
			l->segs_tmp_named--;
	}
}

/* Blocking: a segment still under temporary names that is being dropped (rolled back after a
 * failed append, rare) or a rename that kept failing until log_close. */
static void seg_tmp_names_unlink_sync(struct log *l, struct log_seg *s)
{
	for (int i = 0; i < 3 && s->tmp_mask; i++) {
		if (!(s->tmp_mask & (1u << i)))
			continue;
		char name[LOG_META_NAME];
		spare_rel_name(s->tmp_gen, seg_exts[i], name, sizeof name);
		unlinkat(l->dirfd, name, 0);
	}
	if (s->tmp_mask)
		l->segs_tmp_named--;
	s->tmp_mask = 0;
}

/* --- checkpoint file ------------------------------------------------------------------------ */

static size_t ckpt_format(const struct ckpt_snap *sn, char *buf, size_t cap)
{
	int n = snprintf(buf, cap,
			 LOG_CKPT_MAGIC "log_start_offset %" PRId64 "\nrecovery_offset %" PRId64
			 "\nrecovery_segment %" PRId64 "\nrecovery_position %" PRId64
			 "\nrecovery_max_timestamp %" PRId64 " %" PRId64 "\n",
			 sn->lso, sn->rp.end, sn->rp.seg_base, sn->rp.pos, sn->rp.max_ts, sn->rp.max_ts_offset);
	ST_ASSERT(n > 0 && (size_t)n < cap);
	uint32_t crc = crc32c(0, buf, (size_t)n);
	int m = snprintf(buf + n, cap - (size_t)n, "crc %" PRIu32 "\n", crc);
	ST_ASSERT(m > 0 && (size_t)(n + m) < cap);
	return (size_t)(n + m);
}

static int ckpt_read(struct log *l, struct ckpt_snap *sn)
{
	int fd = openat(l->dirfd, LOG_CKPT_NAME, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char buf[1024];
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -EBADMSG;
	buf[n] = 0;
	char *crc_line = strstr(buf, "crc ");
	if (!crc_line)
		return -EBADMSG;
	uint32_t want = (uint32_t)strtoul(crc_line + 4, NULL, 10);
	if (crc32c(0, buf, (size_t)(crc_line - buf)) != want)
		return -EBADMSG;
	int got = sscanf(buf, LOG_CKPT_MAGIC "log_start_offset %" SCNd64 "\nrecovery_offset %" SCNd64
			 "\nrecovery_segment %" SCNd64 "\nrecovery_position %" SCNd64
			 "\nrecovery_max_timestamp %" SCNd64 " %" SCNd64,
			 &sn->lso, &sn->rp.end, &sn->rp.seg_base, &sn->rp.pos, &sn->rp.max_ts,
			 &sn->rp.max_ts_offset);
	if (got != 6 || sn->lso < 0 || sn->rp.end < sn->rp.seg_base || sn->rp.pos < 0)
		return -EBADMSG;
	return 0;
}

/* Temp file + fsync + rename + directory fsync. Blocking (open, close and error paths). */
static int ckpt_write_sync(struct log *l, const struct ckpt_snap *sn)
{
	char text[512];
	size_t len = ckpt_format(sn, text, sizeof text);
	int fd = openat(l->dirfd, LOG_CKPT_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int rc = 0;
	ssize_t n = write(fd, text, len);
	if (n != (ssize_t)len)
		rc = n < 0 ? -errno : -EIO;
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && renameat(l->dirfd, LOG_CKPT_TMP, l->dirfd, LOG_CKPT_NAME) < 0)
		rc = -errno;
	if (rc == 0 && fsync(l->dirfd) < 0)
		rc = -errno;
	if (rc < 0) {
		unlinkat(l->dirfd, LOG_CKPT_TMP, 0);
		slog_warn("log", "dir=%s writing checkpoint: %s", l->dir, strerror(-rc));
		return rc;
	}
	l->ckpt.last = *sn;
	l->ckpt.have_last = true;
	l->stats.checkpoints++;
	return 0;
}

/* The recovery point to record: the durable prefix, moved past fully durable closed segments. */
static struct log_seg *ckpt_snapshot(struct log *l, struct ckpt_snap *sn)
{
	sn->lso = l->start_offset;
	sn->rp = l->durable;
	int32_t i = find_seg_idx(l, sn->rp.seg_base);
	if (l->segs[i]->base_offset != sn->rp.seg_base) {
		/* That segment is gone (retention): recover from the start of the next one. */
		if (l->segs[i]->base_offset < sn->rp.seg_base && i + 1 < l->nsegs)
			i++;
		struct log_seg *s = l->segs[i];
		sn->rp = (struct log_point){ .end = s->base_offset, .seg_base = s->base_offset, .pos = 0,
					     .max_ts = BATCH_NO_TIMESTAMP, .max_ts_offset = s->base_offset };
	}
	while (i + 1 < l->nsegs && l->segs[i]->state == SEG_CLOSED && sn->rp.pos >= l->segs[i]->size) {
		struct log_seg *n = l->segs[++i];
		if (n->base_offset > l->durable.end)
			break;
		sn->rp = (struct log_point){ .end = n->base_offset, .seg_base = n->base_offset, .pos = 0,
					     .max_ts = BATCH_NO_TIMESTAMP, .max_ts_offset = n->base_offset };
	}
	if (sn->rp.seg_base != l->segs[i]->base_offset)
		i = find_seg_idx(l, sn->rp.seg_base);
	return l->segs[i];
}

static void ckpt_cb(struct uring_op *op, int res, uint32_t flags);

static void ckpt_submit(struct log *l, struct seg_op *o, int kind, int fd, const void *buf, size_t len,
			int64_t off)
{
	struct io_uring_sqe *sqe = uring_get_sqe(l->ur);
	switch (kind) {
	case OP_CK_WRITE:
		io_uring_prep_write(sqe, fd, buf, (unsigned)len, (uint64_t)off);
		break;
	case OP_CK_OPEN:
		io_uring_prep_openat(sqe, l->dirfd, LOG_CKPT_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		break;
	case OP_CK_CLOSE:
		io_uring_prep_close(sqe, fd);
		sqe->flags |= IOSQE_ASYNC; /* see close_async */
		break;
	case OP_CK_RENAME:
		io_uring_prep_renameat(sqe, l->dirfd, LOG_CKPT_TMP, l->dirfd, LOG_CKPT_NAME, 0);
		break;
	default:
		io_uring_prep_fsync(sqe, fd, 0);
		break;
	}
	/* The final close -> rename -> directory fsync run as one linked chain, in order. */
	if (kind == OP_CK_CLOSE || kind == OP_CK_RENAME)
		sqe->flags |= IOSQE_IO_LINK;
	o->op.cb = ckpt_cb;
	o->owner = l;
	o->kind = kind;
	o->expect = (int64_t)len;
	o->seg = NULL;
	uring_sqe_data(sqe, &o->op);
	l->ckpt.pending++;
}

static void ckpt_finish(struct log *l, int err)
{
	struct log_ckpt *c = &l->ckpt;
	close_async(l, c->tmp_fd);
	c->tmp_fd = -1;
	if (err) {
		/* The temp file stays: the next attempt truncates it, log_open removes leftovers
		 * (an unlink in flight could otherwise remove the next attempt's file). */
		slog_warn("log", "dir=%s checkpoint failed: %s (retrying later)", l->dir, strerror(-err));
		c->failed = true;
	} else {
		c->last = c->snap;
		c->have_last = true;
		l->stats.checkpoints++;
	}
	free(c->otail);
	free(c->ttail);
	c->otail = c->ttail = NULL;
	if (c->seg)
		seg_unref(c->seg);
	c->seg = NULL;
	c->inflight = false;
	l->last_ckpt_ms = st_now_ms();
	log_kick(l);
}

static void ckpt_cb(struct uring_op *op, int res, uint32_t flags)
{
	struct seg_op *o = ST_CONTAINER_OF(op, struct seg_op, op);
	struct log *l = o->owner;
	struct log_ckpt *c = &l->ckpt;
	/* In a linked chain the ops after a failed one complete with -ECANCELED: keep the cause. */
	if (res < 0 && (!c->err || c->err == -ECANCELED))
		c->err = res;
	else if (o->kind == OP_CK_WRITE && res != o->expect && !c->err)
		c->err = -EIO;
	else if (o->kind == OP_CK_OPEN && res >= 0)
		c->tmp_fd = res;
	if (--c->pending > 0)
		return;
	if (c->err) {
		ckpt_finish(l, c->err);
		return;
	}
	if (c->stage == 0) {
		c->stage = 1;
		int k = 0;
		struct log_seg *s = c->seg;
		if (c->otail_len)
			ckpt_submit(l, &c->ops[k++], OP_CK_WRITE, s->oidx_fd, c->otail, c->otail_len,
				    (int64_t)c->o_from);
		if (c->ttail_len)
			ckpt_submit(l, &c->ops[k++], OP_CK_WRITE, s->tidx_fd, c->ttail, c->ttail_len,
				    (int64_t)c->t_from);
		ckpt_submit(l, &c->ops[k++], OP_CK_WRITE, c->tmp_fd, c->text, c->text_len, 0);
		return;
	}
	if (c->stage == 1) {
		c->stage = 2;
		int k = 0;
		if (c->otail_len)
			ckpt_submit(l, &c->ops[k++], OP_CK_SYNC, c->seg->oidx_fd, NULL, 0, 0);
		if (c->ttail_len)
			ckpt_submit(l, &c->ops[k++], OP_CK_SYNC, c->seg->tidx_fd, NULL, 0, 0);
		ckpt_submit(l, &c->ops[k++], OP_CK_SYNC, c->tmp_fd, NULL, 0, 0);
		return;
	}
	if (c->stage == 2) {
		/* The index tails are durable whatever happens to the rename. */
		if (c->otail_len && c->o_from + c->otail_len > c->seg->oidx.flushed)
			c->seg->oidx.flushed = c->o_from + c->otail_len;
		if (c->ttail_len && c->t_from + c->ttail_len > c->seg->tidx.flushed)
			c->seg->tidx.flushed = c->t_from + c->ttail_len;
		c->stage = 3;
		/* A chain must go out in one submission: a full SQ flushed between its SQEs
		 * would end the link early (the directory fsync could overtake the rename). */
		if (io_uring_sq_space_left(&l->ur->ring) < 3)
			uring_submit(l->ur);
		ckpt_submit(l, &c->ops[0], OP_CK_CLOSE, c->tmp_fd, NULL, 0, 0);
		c->tmp_fd = -1;
		ckpt_submit(l, &c->ops[1], OP_CK_RENAME, -1, NULL, 0, 0);
		ckpt_submit(l, &c->ops[2], OP_CK_SYNC, l->dirfd, NULL, 0, 0);
		return;
	}
	ckpt_finish(l, 0);
}

/* Index entries of an active segment describing data below the recovery point. */
static size_t oidx_upto(const struct log_seg *s, const struct log_point *rp)
{
	size_t n = s->oidx.len / SEG_OIDX_ENTRY;
	while (n > 0) {
		const uint8_t *e = s->oidx.data + (n - 1) * SEG_OIDX_ENTRY;
		if ((int32_t)st_be32(e + 4) < rp->pos && s->base_offset + (int32_t)st_be32(e) < rp->end)
			break;
		n--;
	}
	return n * SEG_OIDX_ENTRY;
}

static size_t tidx_upto(const struct log_seg *s, const struct log_point *rp)
{
	size_t n = s->tidx.len / SEG_TIDX_ENTRY;
	while (n > 0 && s->base_offset + (int32_t)st_be32(s->tidx.data + (n - 1) * SEG_TIDX_ENTRY + 8) >= rp->end)
		n--;
	return n * SEG_TIDX_ENTRY;
}

/* Asynchronous checkpoint: index tails of the recovery point's active segment + the
 * checkpoint's temp file are written and fsynced, then renamed and the directory fsynced. */
static void ckpt_start(struct log *l)
{
	struct log_ckpt *c = &l->ckpt;
	if (c->inflight || l->failed || l->closing_count > 0 || l->segs_tmp_named > 0) {
		c->requested = true;
		return;
	}
	c->requested = false;
	struct log_seg *s = ckpt_snapshot(l, &c->snap);
	if (c->have_last && memcmp(&c->snap, &c->last, sizeof c->snap) == 0) {
		l->last_ckpt_ms = st_now_ms();
		return;
	}
	c->pending = 0;
	c->err = 0;
	c->otail_len = c->ttail_len = 0;
	c->seg = NULL;
	if (s->state == SEG_ACTIVE && s->base_offset == c->snap.rp.seg_base) {
		size_t ou = oidx_upto(s, &c->snap.rp), tu = tidx_upto(s, &c->snap.rp);
		/* Copies: the live arrays may be reallocated by appends while the writes fly. */
		if (ou > s->oidx.flushed) {
			c->o_from = s->oidx.flushed;
			c->otail_len = ou - c->o_from;
			c->otail = malloc(c->otail_len);
		}
		if (tu > s->tidx.flushed) {
			c->t_from = s->tidx.flushed;
			c->ttail_len = tu - c->t_from;
			c->ttail = malloc(c->ttail_len);
		}
		if ((c->otail_len && !c->otail) || (c->ttail_len && !c->ttail)) {
			free(c->otail);
			free(c->ttail);
			c->otail = c->ttail = NULL;
			c->requested = true;
			return;
		}
		if (c->otail_len)
			memcpy(c->otail, s->oidx.data + c->o_from, c->otail_len);
		if (c->ttail_len)
			memcpy(c->ttail, s->tidx.data + c->t_from, c->ttail_len);
		if (c->otail_len || c->ttail_len) {
			c->seg = s;
			seg_ref(s);
		}
	}
	c->text_len = ckpt_format(&c->snap, c->text, sizeof c->text);
	c->tmp_fd = -1;
	c->stage = 0;
	c->inflight = true;
	ckpt_submit(l, &c->ops[0], OP_CK_OPEN, -1, NULL, 0, 0);
}

/* --- closing a rolled segment ----------------------------------------------------------------- */

static void fill_segment_info(struct log_seg *s, struct log_segment_info *info)
{
	memset(info, 0, sizeof *info);
	info->base_offset = s->base_offset;
	info->last_offset = s->end_offset - 1;
	info->size_bytes = s->size;
	seg_first_timestamp(s, &info->first_timestamp_ms);
	int64_t off;
	seg_max_timestamp(s, &info->max_timestamp_ms, &off);
	seg_file_path(s, "log", info->log_path, sizeof info->log_path);
	seg_file_path(s, "index", info->index_path, sizeof info->index_path);
	seg_file_path(s, "timeindex", info->timeindex_path, sizeof info->timeindex_path);
}

static void close_cb(struct uring_op *op, int res, uint32_t flags);

static void close_submit(struct log *l, struct log_seg *s, int k, int kind, int fd, const void *buf,
			 size_t len, int64_t off)
{
	struct seg_op *o = &s->close_ops[k];
	struct io_uring_sqe *sqe = uring_get_sqe(l->ur);
	if (kind == OP_CLOSE_WRITE)
		io_uring_prep_write(sqe, fd, buf, (unsigned)len, (uint64_t)off);
	else
		io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
	o->op.cb = close_cb;
	o->owner = l;
	o->seg = s;
	o->kind = kind;
	o->expect = (int64_t)len;
	uring_sqe_data(sqe, &o->op);
	s->close_pending++;
	l->close_ops_inflight++;
}

static void close_job_start(struct log *l, struct log_seg *s)
{
	/* Only once every append into it has been written (the written prefix covers it): a
	 * failure before its end could otherwise still cut it off after it was published. */
	if (s->state != SEG_CLOSING || s->close_started || s->writes_inflight || s->wq_n || l->failed ||
	    l->close_retry || l->ckpt.inflight || l->written.end < s->end_offset)
		return;
	/* And only once it is durable: its data is fsynced by the group-commit rounds, never by a
	 * second fdatasync of its own running alongside a round's. Two concurrent fdatasyncs on
	 * one fd share a writeback error between them (errseq: reported once per open file), so
	 * the one returning 0 would vouch for data that was lost. Relaxed flushing forces a round
	 * (Kafka flushes a segment when it rolls, too). */
	if (l->durable.end < s->end_offset) {
		if (!strict_flush(l) && !l->sync_forced) {
			l->sync_forced = true;
			l->kick_again = true;
		}
		return;
	}
	s->close_started = true;
	s->close_err = 0;
	s->close_stage = 1;
	seg_finish_time_index(s);
	seg_ref(s);
	int k = 0;
	if (s->oidx.len > s->oidx.flushed)
		close_submit(l, s, k++, OP_CLOSE_WRITE, s->oidx_fd, s->oidx.data + s->oidx.flushed,
			     s->oidx.len - s->oidx.flushed, (int64_t)s->oidx.flushed);
	if (s->tidx.len > s->tidx.flushed)
		close_submit(l, s, k++, OP_CLOSE_WRITE, s->tidx_fd, s->tidx.data + s->tidx.flushed,
			     s->tidx.len - s->tidx.flushed, (int64_t)s->tidx.flushed);
	if (k == 0) {
		s->close_stage = 2;
		close_submit(l, s, 0, OP_CLOSE_SYNC, s->oidx_fd, NULL, 0, 0);
		close_submit(l, s, 1, OP_CLOSE_SYNC, s->tidx_fd, NULL, 0, 0);
	}
}

/* Hands closed segments to segment_closed in offset order (close jobs may finish out of
 * order; tiering uploads them in order). */
static void publish_closed(struct log *l)
{
	for (int32_t i = find_seg_idx(l, l->publish_from); i + 1 < l->nsegs; i++) {
		struct log_seg *s = l->segs[i];
		if (s->base_offset < l->publish_from)
			continue;
		if (s->state != SEG_CLOSED)
			break;
		l->publish_from = l->segs[i + 1]->base_offset;
		if (l->hooks.segment_closed) {
			struct log_segment_info info;
			closed_used(l, s, true);
			fill_segment_info(s, &info);
			l->hooks.segment_closed(l->hooks.ctx, l, &info);
		}
	}
}

static void close_job_done(struct log *l, struct log_seg *s)
{
	s->close_started = false;
	if (s->close_err) {
		slog_error("log", "segment %s: closing (index write/fsync) failed: %s; retrying", s->path,
			   strerror(-s->close_err));
		l->close_retry = true;
		seg_unref(s);
		log_kick(l);
		return;
	}
	s->oidx.flushed = s->oidx.len;
	s->tidx.flushed = s->tidx.len;
	s->state = SEG_CLOSED;
	l->closing_count--;
	free(s->wr); /* no more writes into it */
	s->wr = NULL;
	/* A round made all of it durable before the close job started, and no write into it came
	 * after: no later round fsyncs it (its fd may be closed by then). */
	s->sync_needed = false;
	close_async(l, s->oidx_fd);
	close_async(l, s->tidx_fd);
	s->oidx_fd = s->tidx_fd = -1;
	/* Closed segments map their index files on first lookup instead of holding memory. */
	seg_index_release(s);
	seg_unref(s);
	closed_used(l, s, true);
	publish_closed(l);
	log_kick(l);
}

static void close_cb(struct uring_op *op, int res, uint32_t flags)
{
	struct seg_op *o = ST_CONTAINER_OF(op, struct seg_op, op);
	struct log *l = o->owner;
	struct log_seg *s = o->seg;
	if (res < 0 && !s->close_err)
		s->close_err = res;
	else if (o->kind == OP_CLOSE_WRITE && res != o->expect && !s->close_err)
		s->close_err = -EIO;
	l->close_ops_inflight--;
	if (--s->close_pending > 0)
		return;
	if (s->close_stage == 1 && !s->close_err) {
		s->close_stage = 2;
		close_submit(l, s, 0, OP_CLOSE_SYNC, s->oidx_fd, NULL, 0, 0);
		close_submit(l, s, 1, OP_CLOSE_SYNC, s->tidx_fd, NULL, 0, 0);
		return;
	}
	close_job_done(l, s);
}

static void close_jobs_kick(struct log *l)
{
	int32_t seen = 0;
	for (int32_t i = l->nsegs - 1; i >= 0 && seen < l->closing_count; i--) {
		struct log_seg *s = l->segs[i];
		if (s->state != SEG_CLOSING)
			continue;
		seen++;
		close_job_start(l, s);
	}
}

static void roll_account(struct log *l, int64_t t0_ns)
{
	int64_t ns = st_mono_ns() - t0_ns;
	l->stats.roll_ns_total += ns;
	if (ns > l->stats.roll_ns_max)
		l->stats.roll_ns_max = ns;
	int b = 0;
	for (int64_t us = ns / 1000; us > 0 && b < LOG_ROLL_HIST_BUCKETS - 1; us >>= 1)
		b++;
	l->stats.roll_hist[b]++;
}

static int roll_do(struct log *l, int64_t now_ms);

static int roll_internal(struct log *l, int64_t now_ms)
{
	int64_t t0 = st_mono_ns(), rolls = l->stats.rolls;
	int rc = roll_do(l, now_ms);
	if (l->stats.rolls != rolls)
		roll_account(l, t0);
	return rc;
}

/* With a spare ready the roll makes no syscall: the new segment adopts the pre-opened files
 * and their renames to the segment's names go through the ring. Until those renames are done
 * (and a directory fsync after them) no group-commit round starts, so nothing written into the
 * new segment is acknowledged while a crash could still lose its name (recovery deletes
 * *.tmp). A name at or past the log end can only hold never-acknowledged bytes (a segment
 * rolled back after a failed append), so renaming over it loses nothing. */
static int roll_do(struct log *l, int64_t now_ms)
{
	struct log_seg *old = active_seg(l);
	if (old->size == 0)
		return 0;
	struct log_seg *s = NULL;
	int rc = -EAGAIN;
	struct log_spare *sp = &l->spare;
	bool adopted = false;
	if (sp->ready && seg_adopt(l->dir, l->next_offset, now_ms, sp->fds, &s) == 0) {
		adopted = true;
		sp->ready = false;
		sp->fds[0] = sp->fds[1] = sp->fds[2] = -1;
		s->tmp_gen = sp->gen;
		s->tmp_mask = 7;
		l->segs_tmp_named++;
	} else {
		/* No spare yet (rolls faster than io-wq opens files, an explicit or first roll):
		 * create the files here, blocking. */
		l->stats.rolls_sync++;
		rc = seg_create(l->dir, l->next_offset, now_ms, &s);
		if (rc < 0) {
			slog_error("log", "dir=%s cannot create segment at offset %" PRId64 ": %s", l->dir,
				   l->next_offset, strerror(-rc));
			return rc;
		}
	}
	if ((rc = segs_push(l, s)) < 0) {
		if (adopted) {
			seg_tmp_names_unlink_sync(l, s);
		} else {
			seg_unlink(s);
		}
		seg_unref(s);
		return rc;
	}
	if (adopted)
		spare_renames_submit(l, s);
	old->state = SEG_CLOSING;
	l->closing_count++;
	/* The new files' directory entries must be durable before anything in them is acked:
	 * the next group-commit round fsyncs the directory too. */
	l->dir_sync_needed = true;
	l->stats.rolls++;
	close_job_start(l, old);
	return 0;
}

/* --- group commit ---------------------------------------------------------------------------- */

static void sync_cb(struct uring_op *op, int res, uint32_t flags);

static void sync_start(struct log *l)
{
	if (l->sync_inflight || l->written.end <= l->durable.end)
		return;
	if (!strict_flush(l) && l->unflushed_msgs < l->cfg.flush_messages && !l->sync_forced)
		return;
	/* A rolled segment's files still under temporary names: its data must not become
	 * "durable" before the renames are, which the round's directory fsync does once they ran. */
	if (l->segs_tmp_named > 0)
		return;
	/* A round's cost is mostly fixed (the flush, the inode write), so it should cover as much as
	 * it can: when it becomes due while writes are in flight, it waits for those writes (not
	 * for any submitted later: bounded by one write per file). Under load that is the data of
	 * the appends that arrived while the previous round ran, which would otherwise wait a whole
	 * extra round; with nothing in flight it starts at once. */
	if (l->writes_inflight) {
		if (l->sync_hold_end < 0)
			l->sync_hold_end = l->submitted_end;
		if (l->written.end < l->sync_hold_end)
			return;
	}
	l->sync_hold_end = -1;
	int n = 0;
	for (int32_t i = l->nsegs - 1; i >= 0; i--) {
		if (l->segs[i]->sync_needed)
			n++;
		if (l->segs[i]->base_offset <= l->durable.seg_base)
			break;
	}
	if (n + 1 > l->sync_ops_cap) {
		struct seg_op *ops = realloc(l->sync_ops, (size_t)(n + 1) * sizeof *ops);
		if (!ops)
			return; /* retried at the next completion or tick */
		l->sync_ops = ops;
		l->sync_ops_cap = n + 1;
	}
	int k = 0;
	for (int32_t i = l->nsegs - 1; i >= 0 && k < n; i--) {
		struct log_seg *s = l->segs[i];
		if (!s->sync_needed)
			continue;
		s->sync_needed = false;
		seg_ref(s);
		struct seg_op *o = &l->sync_ops[k++];
		struct io_uring_sqe *sqe = uring_get_sqe(l->ur);
		io_uring_prep_fsync(sqe, s->fd, IORING_FSYNC_DATASYNC);
		o->op.cb = sync_cb;
		o->owner = l;
		o->seg = s;
		o->kind = OP_SYNC_SEG;
		uring_sqe_data(sqe, &o->op);
	}
	l->round_had_dir = l->dir_sync_needed;
	if (l->dir_sync_needed) {
		l->dir_sync_needed = false;
		struct seg_op *o = &l->sync_ops[k++];
		struct io_uring_sqe *sqe = uring_get_sqe(l->ur);
		io_uring_prep_fsync(sqe, l->dirfd, 0);
		o->op.cb = sync_cb;
		o->owner = l;
		o->seg = NULL;
		o->kind = OP_SYNC_DIR;
		uring_sqe_data(sqe, &o->op);
	}
	l->round = l->written;
	l->unflushed_msgs = 0;
	l->sync_forced = false;
	if (k == 0) {
		/* Every completed write was already covered by a round that has completed (writes
		 * that finished out of order before an earlier round was submitted). */
		l->durable = l->round;
		return;
	}
	l->sync_inflight = true;
	l->sync_pending = k;
	l->sync_err = 0;
}

static void sync_cb(struct uring_op *op, int res, uint32_t flags)
{
	struct seg_op *o = ST_CONTAINER_OF(op, struct seg_op, op);
	struct log *l = o->owner;
	if (o->kind == OP_SYNC_SEG && l->inject_sync_n > 0) {
		l->inject_sync_n--;
		res = l->inject_sync_err;
	}
	if (res < 0 && !l->sync_err)
		l->sync_err = res;
	if (o->seg) {
		if (res < 0)
			o->seg->sync_needed = true;
		seg_unref(o->seg);
		o->seg = NULL;
	}
	if (--l->sync_pending > 0)
		return;
	l->sync_inflight = false;
	if (l->sync_err) {
		slog_error("log", "dir=%s fsync failed: %s", l->dir, strerror(-l->sync_err));
		if (l->round_had_dir)
			l->dir_sync_needed = true;
		if (strict_flush(l)) {
			/* Nothing past the durable point can be trusted: fail it and cut it off. */
			l->failed = true;
			l->fail_sync = true;
		} else {
			/* Relaxed flushing already acknowledged these writes; keep them and retry. */
			l->sync_retry = true;
		}
	} else {
		l->durable = l->round;
		l->stats.fsync_rounds++;
		l->last_flush_ms = st_now_ms();
	}
	log_kick(l);
}

/* --- appends: completion, prefix, acknowledgement, failure ------------------------------------- */

static void advance_prefix(struct log *l)
{
	struct log_append *a = l->q_unwritten;
	while (a && a->state_ == AP_WRITTEN) {
		struct log_seg *s = a->seg_;
		a->state_ = AP_PREFIX;
		s->written_pos = a->file_pos_ + (int64_t)a->len;
		s->written_offset = a->last_offset + 1;
		if (a->max_ts_ > s->written_max_ts) {
			s->written_max_ts = a->max_ts_;
			s->written_max_ts_offset = a->max_ts_offset_;
		}
		l->written = (struct log_point){ .end = a->last_offset + 1, .seg_base = s->base_offset,
						 .pos = s->written_pos, .max_ts = s->written_max_ts,
						 .max_ts_offset = s->written_max_ts_offset };
		l->unflushed_msgs += a->record_count;
		a = a->next_;
	}
	l->q_unwritten = a;
}

static void ack_ready(struct log *l)
{
	bool moved = false;
	for (;;) {
		struct log_append *a = l->q_head;
		if (!a)
			break;
		int kerr;
		if (a->state_ == AP_PREFIX && (!strict_flush(l) || a->last_offset < l->durable.end))
			kerr = KERR_NONE;
		else if (a->state_ == AP_FAILED_SETTLED)
			kerr = KERR_KAFKA_STORAGE_ERROR;
		else
			break;
		l->q_head = a->next_;
		if (!l->q_head)
			l->q_tail = NULL;
		if (l->q_unwritten == a)
			l->q_unwritten = a->next_;
		struct log_seg *s = a->seg_;
		if (kerr == KERR_NONE) {
			l->hw = a->last_offset + 1;
			s->hw_pos = a->file_pos_ + (int64_t)a->len;
			s->hw_offset = l->hw;
			if (a->max_ts_ > s->hw_max_ts) {
				s->hw_max_ts = a->max_ts_;
				s->hw_max_ts_offset = a->max_ts_offset_;
			}
			moved = true;
		} else {
			l->stats.write_errors++;
		}
		a->seg_ = NULL;
		a->next_ = NULL;
		a->kerr_ = kerr;
		seg_unref(s);
		a->done(a, kerr);
	}
	if (moved && l->hooks.hw_advanced)
		l->hooks.hw_advanced(l->hooks.ctx, l);
}

/* Whether the ring runs IORING_OP_FTRUNCATE (probed once per process: 0 unknown, 1 yes, 2 no). */
static int ftruncate_op_supported(struct log *l)
{
	static int known;
	int v = __atomic_load_n(&known, __ATOMIC_RELAXED);
	if (v == 0) {
		struct io_uring_probe *p = io_uring_get_probe_ring(&l->ur->ring);
		v = p && io_uring_opcode_supported(p, LOG_IORING_OP_FTRUNCATE) ? 1 : 2;
		if (p)
			io_uring_free_probe(p);
		__atomic_store_n(&known, v, __ATOMIC_RELAXED);
	}
	return v == 1;
}

/* Cuts the failed tail off through the ring. Returns false when it cannot (the caller then
 * truncates synchronously). */
static bool trunc_submit(struct log *l, struct log_seg *s)
{
	if (!ftruncate_op_supported(l))
		return false;
	struct meta_op *m = meta_new(l, META_TRUNC);
	if (!m)
		return false;
	m->seg = s;
	seg_ref(s);
	struct io_uring_sqe *sqe = uring_get_sqe(l->ur);
	io_uring_prep_rw(LOG_IORING_OP_FTRUNCATE, sqe, s->fd, NULL, 0, (uint64_t)l->trunc_pos);
	meta_submit(l, m, sqe);
	l->trunc_inflight = true;
	return true;
}

static void trunc_completed(struct log *l, struct meta_op *m, int res)
{
	l->trunc_inflight = false;
	if (res < 0) {
		slog_error("log", "segment %s: truncating back to byte %" PRId64 ": %s (retrying)", m->seg->path,
			   l->trunc_pos, strerror(-res));
		l->trunc_wait = true;
		return;
	}
	l->trunc_done = true;
}

/* Once nothing is in flight: the first failed append and everything after it are answered
 * KAFKA_STORAGE_ERROR, and the files are cut back to where it began. */
static void fail_settle(struct log *l)
{
	if (!l->failed || l->writes_inflight || l->sync_inflight || l->close_ops_inflight ||
	    l->renames_inflight || l->trunc_inflight)
		return;
	if (!l->trunc_pending) {
		/* With no write in flight, an append still AP_WRITING is queued on its segment and
		 * was never submitted: it fails too (submissions stop at the failure; it is never
		 * before the failed one in its own segment, and one in an earlier segment is simply
		 * answered with an error instead of being written). */
		struct log_append *f = NULL;
		for (struct log_append *a = l->q_head; a; a = a->next_) {
			if (a->state_ == AP_FAILED || a->state_ == AP_FAILED_SETTLED || a->state_ == AP_WRITING ||
			    (l->fail_sync && a->last_offset >= l->durable.end)) {
				f = a;
				break;
			}
		}
		l->fail_sync = false;
		if (!f) {
			l->failed = false;
			return;
		}
		for (int32_t i = 0; i < l->nsegs; i++) {
			l->segs[i]->wq_head = NULL;
			l->segs[i]->wq_n = 0;
		}
		/* Answered once the files are cut back (below): a producer retrying at once then
		 * finds the log writable again. */
		for (struct log_append *a = f; a; a = a->next_)
			a->state_ = AP_FAILED;
		l->q_unwritten = NULL;
		for (struct log_append *a = l->q_head; a; a = a->next_) {
			if (a->state_ != AP_PREFIX) {
				l->q_unwritten = a;
				break;
			}
		}
		struct log_seg *fs = f->seg_;
		int32_t idx = seg_idx_of(l, fs);
		ST_ASSERT(idx >= 0);
		/* Those files held only failed appends; their removal must be durable before the
		 * offsets they covered are reused and acknowledged (the next round fsyncs the dir). */
		if (l->nsegs > idx + 1)
			l->dir_sync_needed = true;
		while (l->nsegs > idx + 1) {
			struct log_seg *s = l->segs[--l->nsegs];
			if (s->state == SEG_CLOSING)
				l->closing_count--;
			lru_unlink(l, s);
			/* Blocking, but rare (a failed append); keeps a later roll at the same base
			 * from racing an unlink in flight. */
			seg_tmp_names_unlink_sync(l, s);
			seg_unlink(s);
			seg_unref(s);
		}
		if (fs->state == SEG_CLOSING) {
			fs->state = SEG_ACTIVE;
			l->closing_count--;
		}
		fs->size = f->file_pos_;
		seg_index_trim(fs, f->file_pos_, f->base_offset);
		l->next_offset = f->base_offset;
		l->submitted_end = ST_MIN(l->submitted_end, f->base_offset);
		l->sync_hold_end = -1;
		if (fs->written_pos > f->file_pos_) {
			fs->written_pos = f->file_pos_;
			fs->written_offset = f->base_offset;
		}
		/* After a failed fsync the prefix may have run past F: only the durable part stays. */
		if (l->written.end > f->base_offset)
			l->written = l->durable;
		l->trunc_seg = fs;
		seg_ref(fs);
		l->trunc_pos = f->file_pos_;
		l->trunc_pending = true;
		l->trunc_done = false;
	}
	struct log_seg *s = l->trunc_seg;
	if (!l->trunc_done) {
		if (l->trunc_wait)
			return; /* the last attempt failed: log_tick retries */
		if (trunc_submit(l, s))
			return; /* trunc_completed() kicks */
		if (ftruncate(s->fd, (off_t)l->trunc_pos) < 0) {
			slog_error("log", "segment %s: truncating back to byte %" PRId64 ": %s (retrying)",
				   s->path, l->trunc_pos, strerror(errno));
			l->trunc_wait = true;
			return;
		}
		l->trunc_done = true;
	}
	/* Reads back the headers since the last index entry: page-cache reads, rare path. */
	int rc = seg_recompute_tail(s, l->trunc_pos, NULL);
	if (rc < 0) {
		slog_error("log", "segment %s: re-reading the tail after truncation: %s (retrying)", s->path,
			   strerror(-rc));
		return;
	}
	if (s->end_offset != l->next_offset)
		slog_error("log", "segment %s: after truncation the tail ends at offset %" PRId64
			   ", expected %" PRId64, s->path, s->end_offset, l->next_offset);
	s->sync_needed = true;
	slog_warn("log", "segment %s.log: append failed; truncated back to byte %" PRId64
		  " (log end offset %" PRId64 ")", s->path, l->trunc_pos, l->next_offset);
	l->trunc_pending = false;
	l->trunc_done = false;
	l->trunc_seg = NULL;
	seg_unref(s);
	l->failed = false;
	for (struct log_append *a = l->q_head; a; a = a->next_)
		if (a->state_ == AP_FAILED)
			a->state_ = AP_FAILED_SETTLED;
}

static void log_kick(struct log *l)
{
	if (l->in_kick) {
		l->kick_again = true;
		return;
	}
	l->in_kick = true;
	for (int round = 0; round < LOG_KICK_ROUNDS; round++) {
		l->kick_again = false;
		advance_prefix(l);
		if (l->failed)
			fail_settle(l);
		sync_start(l);
		ack_ready(l);
		if (l->closing_count)
			close_jobs_kick(l);
		if (l->ckpt.requested && !l->ckpt.failed && !l->ckpt.inflight && !l->failed &&
		    l->closing_count == 0 && l->segs_tmp_named == 0)
			ckpt_start(l);
		if (!l->kick_again)
			break;
	}
	l->in_kick = false;
}

static void log_write_cb(struct uring_op *op, int res, uint32_t flags);

/* One write in flight per segment file: appends arriving meanwhile queue on the segment and
 * leave together, as one vectored write, when it completes. Buffered writes to ext4 are punted
 * to io-wq, which runs writes to one inode one after the other anyway: one large write instead
 * of many 16 KiB ones saves the per-write punt, wakeups and completions, and lets the page
 * cache take the data in one pass. The file is then always a prefix of what was submitted, so
 * a killed process cannot leave a hole inside a segment (after a power loss unsynced pages may
 * still reach the disk in any order: recovery's CRC scan, and its gap check, stay). */
static void seg_write_start(struct log *l, struct log_seg *s)
{
	if (s->writes_inflight || !s->wq_n || l->failed)
		return;
	struct log_write *w = s->wr;
	ST_ASSERT(w != NULL);
	struct log_append *a = s->wq_head;
	w->seg = s;
	w->first = a;
	w->pos = a->file_pos_;
	w->len = 0;
	w->n = 0;
	int64_t last_offset = a->last_offset;
	while (w->n < s->wq_n && w->n < LOG_WRITE_MAX_IOV &&
	       (w->n == 0 || w->len + (int64_t)a->len <= LOG_WRITE_MAX_BYTES)) {
		ST_ASSERT(a->seg_ == s && a->state_ == AP_WRITING && a->file_pos_ == w->pos + w->len);
		w->iov[w->n].iov_base = a->data;
		w->iov[w->n].iov_len = a->len;
		w->len += (int64_t)a->len;
		w->n++;
		last_offset = a->last_offset;
		a = a->next_;
	}
	s->wq_n -= w->n;
	s->wq_head = s->wq_n ? a : NULL;
	if (last_offset + 1 > l->submitted_end)
		l->submitted_end = last_offset + 1;
	struct io_uring_sqe *sqe = uring_get_sqe(l->ur);
	if (w->n == 1)
		io_uring_prep_write(sqe, s->fd, w->first->data, (unsigned)w->len, (uint64_t)w->pos);
	else
		io_uring_prep_writev(sqe, s->fd, w->iov, (unsigned)w->n, (uint64_t)w->pos);
	w->op.cb = log_write_cb;
	uring_sqe_data(sqe, &w->op);
	s->writes_inflight++;
	l->writes_inflight++;
}

static void log_write_cb(struct uring_op *op, int res, uint32_t flags)
{
	(void)flags;
	struct log_write *w = ST_CONTAINER_OF(op, struct log_write, op);
	struct log_seg *s = w->seg;
	struct log *l = s->owner;
	if (l->inject_write_n > 0) {
		l->inject_write_n--;
		res = l->inject_write_err;
	}
	s->writes_inflight--;
	l->writes_inflight--;
	l->stats.writes++;
	l->stats.appends_written += w->n;
	if (res != w->len)
		slog_error("log", "segment %s.log: write of %" PRId64 " bytes (%d appends) at %" PRId64 " failed: %s",
			   s->path, w->len, (int)w->n, w->pos, res < 0 ? strerror(-res) : "short write");
	/* A short write still wrote the appends it covers whole; the rest fail (and everything
	 * after them: fail_settle cuts the file back to the first failed one). */
	int64_t written_to = w->pos + (res > 0 ? res : 0);
	struct log_append *a = w->first;
	for (int32_t i = 0; i < w->n; i++, a = a->next_) {
		ST_ASSERT(a && a->seg_ == s && a->state_ == AP_WRITING);
		if (a->file_pos_ + (int64_t)a->len <= written_to) {
			a->state_ = AP_WRITTEN;
			s->sync_needed = true;
		} else {
			a->state_ = AP_FAILED;
			l->failed = true;
		}
	}
	seg_write_start(l, s);
	log_kick(l);
}

/* --- append ------------------------------------------------------------------------------------- */

int log_append(struct log *l, struct log_append *a)
{
	if (l->failed)
		return KERR_KAFKA_STORAGE_ERROR;
	if (a->len == 0)
		return KERR_INVALID_RECORD; /* "must have at least one record batch" */
	int64_t now = st_now_ms();
	struct batch_validate_opts vo = {
		.max_message_bytes = l->cfg.max_message_bytes,
		.log_append_time = l->cfg.log_append_time,
		.now_ms = now,
		.timestamp_before_max_ms = l->cfg.timestamp_before_max_ms,
		.timestamp_after_max_ms = l->cfg.timestamp_after_max_ms,
		.inflate_compressed = true,
		.inflate_max_bytes = LOG_INFLATE_MAX_BYTES,
	};
	/* Kafka's Produce v3+ carries exactly one batch; more are accepted here (replay, tests). */
	struct batch_info small[4], *infos = small;
	size_t n = 0, cap = ST_ARRAY_LEN(small);
	int64_t records = 0;
	int kerr = KERR_NONE;
	for (size_t pos = 0; pos < a->len;) {
		if (n == cap) {
			size_t ncap = cap * 2;
			struct batch_info *ni = malloc(ncap * sizeof *ni);
			if (!ni) {
				kerr = KERR_UNKNOWN_SERVER_ERROR;
				break;
			}
			memcpy(ni, infos, n * sizeof *ni);
			if (infos != small)
				free(infos);
			infos = ni;
			cap = ncap;
		}
		kerr = batch_validate(a->data + pos, a->len - pos, &vo, &infos[n]);
		if (kerr != KERR_NONE)
			break;
		records += infos[n].h.record_count;
		pos += infos[n].size;
		n++;
	}
	if (kerr != KERR_NONE) {
		if (infos != small)
			free(infos);
		return kerr;
	}

	struct log_seg *s = active_seg(l);
	int64_t last = l->next_offset + records - 1;
	if (s->size > 0 &&
	    (s->size + (int64_t)a->len > l->cfg.segment_bytes || seg_index_full(s, l->cfg.segment_index_bytes) ||
	     last - s->base_offset > INT32_MAX ||
	     (l->cfg.segment_ms > 0 && now - s->roll_start_ms >= l->cfg.segment_ms))) {
		if (roll_internal(l, now) < 0) {
			if (infos != small)
				free(infos);
			return KERR_KAFKA_STORAGE_ERROR;
		}
		s = active_seg(l);
	}
	if (!s->wr && !(s->wr = malloc(sizeof *s->wr))) {
		if (infos != small)
			free(infos);
		return KERR_UNKNOWN_SERVER_ERROR;
	}
	if (s->size == 0)
		s->roll_start_ms = now;

	int64_t off = l->next_offset, pos = s->size;
	a->max_ts_ = BATCH_NO_TIMESTAMP;
	a->max_ts_offset_ = off;
	for (size_t i = 0; i < n; i++) {
		uint8_t *b = a->data + (pos - s->size);
		struct batch_info *bi = &infos[i];
		int64_t max_ts;
		batch_set_base_offset(b, off);
		batch_set_leader_epoch(b, l->leader_epoch);
		if (l->cfg.log_append_time) {
			batch_set_log_append_time(b, bi->size, now);
			max_ts = now;
		} else if (bi->records_checked &&
			   (bi->max_timestamp != bi->h.max_timestamp || batch_is_log_append_time(&bi->h))) {
			/* Kafka corrects a wrong maxTimestamp of a batch it iterated (setMaxTimestamp). */
			batch_set_max_timestamp(b, bi->size, bi->max_timestamp);
			max_ts = bi->max_timestamp;
		} else {
			max_ts = bi->h.max_timestamp;
		}
		bi->h.base_offset = off;
		seg_note_batch(s, pos, &bi->h, max_ts, l->cfg.index_interval_bytes);
		if (max_ts > a->max_ts_) {
			a->max_ts_ = max_ts;
			a->max_ts_offset_ = batch_last_offset(&bi->h);
		}
		off += bi->h.record_count;
		pos += (int64_t)bi->size;
	}
	if (infos != small)
		free(infos);

	a->base_offset = l->next_offset;
	a->last_offset = off - 1;
	a->record_count = (int32_t)records;
	a->log_append_time_ms = l->cfg.log_append_time ? now : -1;
	a->next_ = NULL;
	a->seq_ = ++l->seq;
	a->seg_ = s;
	seg_ref(s);
	a->file_pos_ = s->size;
	a->state_ = AP_WRITING;
	a->kerr_ = KERR_NONE;
	s->size += (int64_t)a->len;
	s->mtime_ms = now;
	l->next_offset = off;
	if (l->q_tail)
		l->q_tail->next_ = a;
	else
		l->q_head = a;
	l->q_tail = a;
	if (!l->q_unwritten)
		l->q_unwritten = a;
	/* The segment's queued appends run from wq_head to the end of the log's queue. */
	if (!s->wq_head)
		s->wq_head = a;
	s->wq_n++;
	seg_write_start(l, s);
	spare_maybe_start(l, now);
	return KERR_NONE;
}

/* --- reads -------------------------------------------------------------------------------------- */

/* log_read_nb's test before a closed segment is touched: true when the read must wait for a
 * warm-up (asked for here when none is under way). */
static bool read_needs_warm(struct log *l, struct log_seg *s, int64_t offset, int64_t max_bytes)
{
	if (s->state != SEG_CLOSED || !l->hooks.read_warm)
		return false;
	if (s->warm_inflight)
		return true;
	int64_t now = st_now_ms();
	if (s->warm_done_ms && now - s->warm_done_ms < LOG_WARM_FRESH_MS)
		return false;
	if (seg_read_cached(s, offset, max_bytes)) {
		/* In memory: the next reads of it skip the probe (mincore, two preadv2) for a while,
		 * as after a warm-up. */
		s->warm_done_ms = now;
		return false;
	}
	if (!l->hooks.read_warm(l->hooks.ctx, l, s->path, s->base_offset, offset, max_bytes))
		return false; /* not taken: read as log_read does */
	s->warm_inflight = true;
	l->stats.read_warmups++;
	return true;
}

void log_warm_done(struct log *l, int64_t base_offset)
{
	int32_t i = find_seg_idx(l, base_offset);
	if (i < 0 || i >= l->nsegs || l->segs[i]->base_offset != base_offset)
		return;
	l->segs[i]->warm_inflight = false;
	l->segs[i]->warm_done_ms = st_now_ms();
}

static int read_impl(struct log *l, int64_t offset, int64_t upto_offset, int64_t max_bytes,
		     bool min_one, bool nb, struct log_slice *out);

int log_read(struct log *l, int64_t offset, int64_t upto_offset, int64_t max_bytes, bool min_one,
	     struct log_slice *out)
{
	return read_impl(l, offset, upto_offset, max_bytes, min_one, false, out);
}

int log_read_nb(struct log *l, int64_t offset, int64_t upto_offset, int64_t max_bytes, bool min_one,
		struct log_slice *out)
{
	return read_impl(l, offset, upto_offset, max_bytes, min_one, true, out);
}

static int read_impl(struct log *l, int64_t offset, int64_t upto_offset, int64_t max_bytes,
		     bool min_one, bool nb, struct log_slice *out)
{
	memset(out, 0, sizeof *out);
	out->fd = -1;
	out->first_offset = out->next_offset = offset;
	if (offset < l->start_offset || offset > l->hw)
		return KERR_OFFSET_OUT_OF_RANGE;
	int64_t upto = ST_MIN(upto_offset, l->hw);
	if (offset >= upto)
		return KERR_NONE;
	if (max_bytes < 0)
		max_bytes = 0;
	int64_t *rebuilds = &l->stats.index_rebuilds;
	int32_t interval = l->cfg.index_interval_bytes;
	for (int32_t i = find_seg_idx(l, offset); i < l->nsegs; i++) {
		struct log_seg *s = l->segs[i];
		if (nb && read_needs_warm(l, s, offset, max_bytes))
			return LOG_READ_PENDING;
		closed_used(l, s, true);
		int64_t lim_pos = s->hw_pos, lim_off = s->hw_offset;
		int64_t start;
		struct batch_hdr h;
		int rc = seg_find(s, offset, lim_pos, interval, rebuilds, &start, &h);
		if (rc < 0)
			return KERR_KAFKA_STORAGE_ERROR;
		if (rc == 0) {
			if (lim_pos < s->size)
				return KERR_NONE; /* the rest is not below the high watermark yet */
			continue;
		}
		if (h.base_offset >= upto)
			return KERR_NONE;
		if (upto < l->hw) {
			/* Stop before the batch that reaches upto (the last stable offset). */
			struct batch_hdr hu;
			int64_t pu;
			rc = seg_find(s, upto, lim_pos, interval, rebuilds, &pu, &hu);
			if (rc < 0)
				return KERR_KAFKA_STORAGE_ERROR;
			if (rc == 1) {
				lim_pos = pu;
				lim_off = hu.base_offset;
			}
		}
		if (start >= lim_pos)
			return KERR_NONE;
		int64_t first_size = batch_size(&h);
		int64_t bound = max_bytes > INT64_MAX - start ? INT64_MAX : start + max_bytes;
		int64_t end, next;
		if (bound >= lim_pos) {
			end = lim_pos;
			next = lim_off;
		} else {
			/* Jump with the index to the last indexed batch starting before the bound, then
			 * walk headers (pread of 61 bytes: served by the page cache, the same pages
			 * sendfile is about to read). */
			int64_t p = ST_MAX(start, seg_index_lookup_pos(s, bound));
			end = p;
			next = h.base_offset;
			for (;;) {
				if (end >= lim_pos) {
					next = lim_off;
					break;
				}
				struct batch_hdr hb;
				if (end == start)
					hb = h;
				else if (seg_read_hdr(s, end, &hb) < 0)
					return KERR_KAFKA_STORAGE_ERROR;
				if (end + batch_size(&hb) > bound) {
					next = hb.base_offset;
					break;
				}
				end += batch_size(&hb);
				next = batch_last_offset(&hb) + 1;
			}
			if (end == start) {
				if (!min_one)
					return KERR_NONE; /* the first batch alone exceeds max_bytes */
				end = start + first_size;
				next = batch_last_offset(&h) + 1;
			}
		}
		seg_ref(s);
		out->seg = s;
		out->fd = s->fd;
		out->file_pos = start;
		out->len = end - start;
		out->first_offset = h.base_offset;
		out->next_offset = next;
		return KERR_NONE;
	}
	return KERR_NONE;
}

void log_slice_release(struct log_slice *s)
{
	if (s->seg)
		seg_unref(s->seg);
	s->seg = NULL;
	s->fd = -1;
}

/* Reads a whole batch into a malloc'd buffer. */
static int read_batch(struct log_seg *s, int64_t pos, const struct batch_hdr *h, uint8_t **out)
{
	size_t size = (size_t)batch_size(h);
	uint8_t *b = malloc(size);
	if (!b)
		return -ENOMEM;
	size_t got = 0;
	while (got < size) {
		ssize_t n = pread(s->fd, b + got, size - got, (off_t)(pos + (int64_t)got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(b);
			return n < 0 ? -errno : -ENODATA;
		}
		got += (size_t)n;
	}
	*out = b;
	return 0;
}

/* The first record of batch (at pos) with timestamp >= target and offset >= min_offset, as
 * Kafka's searchForTimestamp looks inside the batch (inflating a compressed one). Returns 1
 * with the offset and timestamp, 0 when none, or -errno. */
static int batch_search_ts(struct log_seg *s, int64_t pos, const struct batch_hdr *h, int64_t target,
			   int64_t min_offset, int64_t *off, int64_t *ts)
{
	if (batch_is_log_append_time(h)) {
		if (h->max_timestamp < target || batch_last_offset(h) < min_offset)
			return 0;
		*off = ST_MAX(h->base_offset, min_offset);
		*ts = h->max_timestamp;
		return 1;
	}
	uint8_t *b = NULL;
	int rc = read_batch(s, pos, h, &b);
	if (rc < 0)
		return rc;
	const uint8_t *recs = b + BATCH_HDR_SIZE;
	size_t recs_len = (size_t)batch_size(h) - BATCH_HDR_SIZE;
	uint8_t *inflated = NULL;
	if (batch_codec(h) != COMPRESS_NONE) {
		size_t ilen;
		rc = compress_inflate(batch_codec(h), recs, recs_len, LOG_INFLATE_MAX_BYTES, &inflated, &ilen);
		if (rc < 0) {
			free(inflated);
			free(b);
			return rc;
		}
		recs = inflated;
		recs_len = ilen;
	}
	struct batch_rec_iter it;
	struct batch_record r;
	batch_rec_iter_init(&it, recs, recs_len);
	int found = 0;
	for (int32_t i = 0; i < h->record_count && (rc = batch_rec_next(&it, &r)) == 1; i++) {
		int64_t rts = (int64_t)((uint64_t)h->base_timestamp + (uint64_t)r.timestamp_delta);
		int64_t roff = h->base_offset + r.offset_delta;
		if (rts >= target && roff >= min_offset) {
			*off = roff;
			*ts = rts;
			found = 1;
			break;
		}
	}
	free(inflated);
	free(b);
	return rc < 0 ? rc : found;
}

/* Scans batches of s from pos (below lim_pos) for the first record with ts >= target. */
static int seg_search_ts(struct log_seg *s, int64_t pos, int64_t lim_pos, int64_t target,
			 int64_t min_offset, int64_t *off, int64_t *ts)
{
	while (pos < lim_pos) {
		struct batch_hdr h;
		int rc = seg_read_hdr(s, pos, &h);
		if (rc < 0)
			return rc;
		if (h.batch_length < BATCH_HDR_SIZE - BATCH_LOG_OVERHEAD)
			return -EBADMSG;
		if (h.max_timestamp >= target && batch_last_offset(&h) >= min_offset) {
			rc = batch_search_ts(s, pos, &h, target, min_offset, off, ts);
			if (rc != 0)
				return rc;
		}
		pos += batch_size(&h);
	}
	return 0;
}

int log_offset_for_timestamp(struct log *l, int64_t ts_ms, int64_t *offset_out, int64_t *ts_out)
{
	*offset_out = -1;
	*ts_out = -1;
	for (int32_t i = find_seg_idx(l, l->start_offset); i < l->nsegs; i++) {
		struct log_seg *s = l->segs[i];
		int64_t mts, moff;
		seg_visible_max_ts(s, &mts, &moff);
		if (mts < ts_ms) {
			closed_used(l, s, false); /* a damaged time index may have been loaded */
			continue;
		}
		closed_used(l, s, true);
		if (!s->idx_loaded)
			seg_load_index(s, l->cfg.index_interval_bytes, &l->stats.index_rebuilds);
		/* Time index: the largest entry <= target names a batch before the answer; the
		 * offset index turns that into a position. */
		int64_t from_off = seg_time_lookup(s, ts_ms);
		int64_t pos = seg_index_lookup(s, ST_MAX(from_off, l->start_offset));
		int64_t off, ts;
		int rc = seg_search_ts(s, pos, s->hw_pos, ts_ms, l->start_offset, &off, &ts);
		if (rc < 0)
			return KERR_KAFKA_STORAGE_ERROR;
		if (rc == 1) {
			*offset_out = off;
			*ts_out = ts;
			return KERR_NONE;
		}
	}
	return KERR_NONE;
}

int log_max_timestamp(struct log *l, int64_t *offset_out, int64_t *ts_out)
{
	*offset_out = -1;
	*ts_out = -1;
	int32_t best = -1;
	int64_t best_ts = BATCH_NO_TIMESTAMP, best_off = -1;
	for (int32_t i = find_seg_idx(l, l->start_offset); i < l->nsegs; i++) {
		int64_t ts, off;
		seg_visible_max_ts(l->segs[i], &ts, &off);
		closed_used(l, l->segs[i], false);
		if (ts > best_ts) {
			best = i;
			best_ts = ts;
			best_off = off;
		}
	}
	if (best < 0)
		return KERR_NONE;
	struct log_seg *s = l->segs[best];
	closed_used(l, s, true);
	/* The offset kept is the last one of the batch carrying the max: find the record. */
	if (!s->idx_loaded)
		seg_load_index(s, l->cfg.index_interval_bytes, &l->stats.index_rebuilds);
	int64_t pos = seg_index_lookup(s, best_off), off, ts;
	int rc = seg_search_ts(s, pos, s->hw_pos, best_ts, 0, &off, &ts);
	if (rc < 0)
		return KERR_KAFKA_STORAGE_ERROR;
	if (rc == 1) {
		*offset_out = off;
		*ts_out = ts;
	} else {
		*offset_out = best_off;
		*ts_out = best_ts;
	}
	return KERR_NONE;
}

int64_t log_start_offset(const struct log *l) { return l->start_offset; }
int64_t log_high_watermark(const struct log *l) { return l->hw; }
int64_t log_end_offset(const struct log *l) { return l->next_offset; }
int32_t log_segment_count(const struct log *l) { return l->nsegs; }
const char *log_dir(const struct log *l) { return l->dir; }
void log_set_leader_epoch(struct log *l, int32_t epoch) { l->leader_epoch = epoch; }
void log_get_stats(const struct log *l, struct log_stats *out) { *out = l->stats; }
bool log_storage_failed(const struct log *l) { return l->failed; }

int64_t log_size_bytes(const struct log *l)
{
	int64_t sum = 0;
	for (int32_t i = 0; i < l->nsegs; i++)
		sum += l->segs[i]->size;
	return sum;
}

void log_test_fail_next_writes(struct log *l, int n, int err)
{
	l->inject_write_n = n;
	l->inject_write_err = err;
}

void log_test_fail_next_syncs(struct log *l, int n, int err)
{
	l->inject_sync_n = n;
	l->inject_sync_err = err;
}

void log_set_config(struct log *l, const struct log_config *cfg)
{
	l->cfg = *cfg;
	config_sanitize(&l->cfg);
	log_kick(l); /* e.g. flush.messages back to 1: pending acks now wait for an fsync round */
}

int log_roll(struct log *l)
{
	if (l->failed)
		return -EIO;
	int rc = roll_internal(l, st_now_ms());
	log_kick(l);
	return rc;
}

void log_tick(struct log *l, int64_t now_ms)
{
	struct log_seg *s = active_seg(l);
	if (!l->failed && s->size > 0 && l->cfg.segment_ms > 0 && now_ms - s->roll_start_ms >= l->cfg.segment_ms)
		roll_internal(l, now_ms);
	if (!strict_flush(l) && l->unflushed_msgs > 0 && now_ms - l->last_flush_ms >= l->cfg.flush_ms)
		l->sync_forced = true;
	if (l->sync_retry) {
		l->sync_retry = false;
		l->sync_forced = true;
	}
	l->close_retry = false; /* close jobs whose writes failed restart from the kick */
	l->trunc_wait = false;  /* a failed truncation after a failed append: retried */
	if (l->segs_tmp_named > 0 && l->renames_inflight == 0) {
		/* Renames of adopted spare files that failed: bounded by the segments rolled since. */
		int32_t left = l->segs_tmp_named;
		for (int32_t i = l->nsegs - 1; i >= 0 && left > 0; i--) {
			if (l->segs[i]->tmp_mask) {
				spare_renames_submit(l, l->segs[i]);
				left--;
			}
		}
	}
	spare_maybe_start(l, now_ms);
	if (now_ms - l->last_ckpt_ms >= LOG_CKPT_INTERVAL_MS || l->ckpt.failed) {
		l->ckpt.failed = false;
		l->ckpt.requested = true;
	}
	log_kick(l);
}

/* --- retention and DeleteRecords ------------------------------------------------------------------ */

static bool seg_removable(const struct log *l, const struct log_seg *s)
{
	/* Never the active one; only fully closed, fully below the high watermark. */
	return s->state == SEG_CLOSED && s->end_offset <= l->hw && s != active_seg(l);
}

int log_retention_run(struct log *l, int64_t now_ms)
{
	int32_t deleted = 0;
	int64_t diff = l->cfg.retention_bytes >= 0 ? log_size_bytes(l) - l->cfg.retention_bytes : -1;
	while (deleted + 1 < l->nsegs) {
		struct log_seg *s = l->segs[deleted];
		if (!seg_removable(l, s))
			break;
		bool expired = false;
		if (l->cfg.retention_ms >= 0) {
			int64_t ts, off;
			seg_max_timestamp(s, &ts, &off);
			closed_used(l, s, false);
			if (ts < 0)
				ts = s->mtime_ms; /* Kafka: no timestamps -> the file's last modification */
			expired = now_ms - ts > l->cfg.retention_ms;
		}
		/* retention.bytes: delete while the excess still covers this whole segment. */
		if (!expired && diff >= 0 && diff - s->size >= 0)
			expired = true;
		if (!expired)
			break;
		if (l->hooks.segment_deletable && !l->hooks.segment_deletable(l->hooks.ctx, l, s->base_offset))
			break;
		slog_debug("log", "dir=%s retention deletes segment %" PRId64 " (%" PRId64 " bytes)", l->dir,
			   s->base_offset, s->size);
		if (diff >= 0)
			diff -= s->size;
		deleted++;
	}
	if (deleted) {
		slog_info("log", "dir=%s retention deletes %d segment(s) below offset %" PRId64, l->dir,
			  (int)deleted, l->segs[deleted]->base_offset);
		segs_delete_front(l, deleted);
	}
	if (deleted && l->segs[0]->base_offset > l->start_offset) {
		l->start_offset = l->segs[0]->base_offset;
		ckpt_start(l);
	}
	return deleted;
}

int log_delete_records(struct log *l, int64_t new_start)
{
	if (new_start < 0 || new_start > l->hw)
		return KERR_OFFSET_OUT_OF_RANGE;
	if (new_start <= l->start_offset)
		return KERR_NONE;
	l->start_offset = new_start;
	/* Whole segments entirely below the new start go now (Kafka's LogStartOffsetBreach). */
	int32_t n = 0;
	while (n + 1 < l->nsegs && l->segs[n + 1]->base_offset <= new_start && seg_removable(l, l->segs[n]))
		n++;
	segs_delete_front(l, n);
	/* Persisted by an asynchronous checkpoint started now (and at close). */
	ckpt_start(l);
	return KERR_NONE;
}

/* --- scanning for producer state ---------------------------------------------------------------- */

int log_scan_batches(struct log *l, int64_t from_offset,
		     int (*fn)(void *ctx, const struct batch_hdr *h, int64_t file_pos), void *ctx)
{
	if (from_offset < l->start_offset)
		from_offset = l->start_offset;
	for (int32_t i = find_seg_idx(l, from_offset); i < l->nsegs; i++) {
		struct log_seg *s = l->segs[i];
		closed_used(l, s, true);
		int64_t pos;
		struct batch_hdr h;
		int rc = seg_find(s, from_offset, s->hw_pos, l->cfg.index_interval_bytes,
				  &l->stats.index_rebuilds, &pos, &h);
		if (rc < 0)
			return rc;
		if (rc == 0)
			continue;
		while (pos < s->hw_pos) {
			if ((rc = seg_read_hdr(s, pos, &h)) < 0)
				return rc;
			if (h.batch_length < BATCH_HDR_SIZE - BATCH_LOG_OVERHEAD)
				return -EBADMSG;
			if ((rc = fn(ctx, &h, pos)) != 0)
				return rc;
			pos += batch_size(&h);
		}
	}
	return 0;
}

/* --- open and recovery ---------------------------------------------------------------------------- */

static bool has_suffix(const char *name, const char *suffix)
{
	size_t n = strlen(name), m = strlen(suffix);
	return n >= m && memcmp(name + n - m, suffix, m) == 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

struct i64_vec {
	int64_t *v;
	size_t n, cap;
};

static int vec_push(struct i64_vec *v, int64_t x)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		int64_t *n = realloc(v->v, cap * sizeof *n);
		if (!n)
			return -ENOMEM;
		v->v = n;
		v->cap = cap;
	}
	v->v[v->n++] = x;
	return 0;
}

/* Lists the segments; deletes leftovers of interrupted operations: our checkpoint temp file,
 * Kafka's .deleted/.cleaned files, and index files without a .log. A "<base>.log.swap"
 * (a compaction result Kafka had not yet renamed) becomes the segment when its .log is
 * missing, otherwise it is stale and removed. */
static int scan_dir(struct log *l, struct i64_vec *bases)
{
	DIR *d = fdopendir(dup(l->dirfd));
	if (!d)
		return -errno;
	rewinddir(d); /* the dup shares its position with dirfd */
	struct i64_vec idx = { 0 };
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *name = de->d_name;
		int64_t base;
		if (name[0] == '.')
			continue;
		if (seg_parse_name(name, "log", &base) == 0) {
			if ((rc = vec_push(bases, base)) < 0)
				break;
		} else if (has_suffix(name, ".tmp") || has_suffix(name, ".deleted") || has_suffix(name, ".cleaned")) {
			slog_info("log", "dir=%s removing leftover %s", l->dir, name);
			unlinkat(l->dirfd, name, 0);
		} else if (seg_parse_name(name, "log.swap", &base) == 0) {
			char logname[SEG_NAME_DIGITS + 8];
			snprintf(logname, sizeof logname, "%020" PRId64 ".log", base);
			if (faccessat(l->dirfd, logname, F_OK, 0) < 0 && errno == ENOENT &&
			    renameat(l->dirfd, name, l->dirfd, logname) == 0) {
				slog_warn("log", "dir=%s completing interrupted swap of %s", l->dir, logname);
				static const char *const ix[] = { "index", "timeindex", "txnindex" };
				for (size_t i = 0; i < ST_ARRAY_LEN(ix); i++) {
					char p[SEG_NAME_DIGITS + 16];
					snprintf(p, sizeof p, "%020" PRId64 ".%s", base, ix[i]);
					unlinkat(l->dirfd, p, 0); /* rebuilt from the new .log */
				}
				if ((rc = vec_push(bases, base)) < 0)
					break;
			} else {
				unlinkat(l->dirfd, name, 0);
			}
		} else if (has_suffix(name, ".swap")) {
			unlinkat(l->dirfd, name, 0);
		} else if (seg_parse_name(name, "index", &base) == 0 ||
			   seg_parse_name(name, "timeindex", &base) == 0 ||
			   seg_parse_name(name, "txnindex", &base) == 0) {
			if ((rc = vec_push(&idx, base)) < 0)
				break;
		}
	}
	closedir(d);
	if (rc == 0) {
		if (bases->n)
			qsort(bases->v, bases->n, sizeof *bases->v, cmp_i64);
		for (size_t i = 0; i < idx.n; i++) {
			if (bases->n && bsearch(&idx.v[i], bases->v, bases->n, sizeof *bases->v, cmp_i64))
				continue;
			static const char *const ix[] = { "index", "timeindex", "txnindex" };
			for (size_t k = 0; k < ST_ARRAY_LEN(ix); k++) {
				char p[SEG_NAME_DIGITS + 16];
				snprintf(p, sizeof p, "%020" PRId64 ".%s", idx.v[i], ix[k]);
				unlinkat(l->dirfd, p, 0);
			}
		}
	}
	free(idx.v);
	return rc;
}

/* Makes a segment a closed one: final time entry, indexes rewritten, data fsynced (or left to
 * one syncfs at the end of recovery, which may close thousands of segments). */
static int finish_closed(struct log_seg *s, bool sync)
{
	s->state = SEG_CLOSED;
	seg_finish_time_index(s);
	int rc = seg_write_indexes_sync(s, sync);
	if (rc == 0 && sync && fdatasync(s->fd) < 0)
		rc = -errno;
	if (s->oidx_fd >= 0)
		close(s->oidx_fd);
	if (s->tidx_fd >= 0)
		close(s->tidx_fd);
	s->oidx_fd = s->tidx_fd = -1;
	seg_index_release(s);
	return rc;
}

static int recover(struct log *l, const struct ckpt_snap *ck, bool *recovered, bool *bulk)
{
	int32_t k = 0;
	int64_t from = 0;
	bool ck_loaded = false;
	*recovered = false;
	*bulk = false;
	if (ck) {
		k = find_seg_idx(l, ck->rp.seg_base);
		struct log_seg *s = l->segs[k];
		if (s->base_offset == ck->rp.seg_base && s->size >= ck->rp.pos) {
			int rc = seg_ensure_fd(s);
			if (rc == 0)
				rc = seg_load_index_mem(s, ck->rp.pos, ck->rp.end);
			if (rc == 0) {
				ck_loaded = true;
				from = ck->rp.pos;
				s->end_offset = ck->rp.end;
				s->max_ts = ck->rp.max_ts;
				s->max_ts_offset = ck->rp.max_ts_offset;
				s->max_ts_known = true;
				s->first_ts_known = false;
			} else if (rc == -EBADMSG) {
				slog_warn("log", "segment %s: damaged index; rebuilding", s->path);
				l->stats.index_rebuilds++;
			} else {
				return rc;
			}
		} else if (s->base_offset == ck->rp.seg_base) {
			slog_warn("log", "segment %s.log: shorter (%" PRId64 ") than its recovery point (%" PRId64
				  "); recovering it whole", s->path, s->size, ck->rp.pos);
		} else if (s->base_offset < ck->rp.seg_base && k + 1 < l->nsegs) {
			k++;
		}
	}
	/* A few segments to close: fsync each. Thousands (no checkpoint): one syncfs at the end. */
	*bulk = l->nsegs - 1 - k > 8;
	for (int32_t i = k; i < l->nsegs; i++) {
		struct log_seg *s = l->segs[i];
		int rc = seg_ensure_fd(s);
		if (rc < 0)
			return rc;
		bool clean = i == k && ck_loaded && from == s->size && i == l->nsegs - 1;
		if (clean)
			break;
		if (!(i == k && ck_loaded)) {
			seg_reset_state(s);
			from = 0;
		}
		struct seg_recover_result res;
		/* Our own logs (they have our checkpoint) never have offset gaps. */
		if ((rc = seg_recover(s, from, l->cfg.index_interval_bytes, ck != NULL, &res)) < 0)
			return rc;
		*recovered = true;
		l->stats.open_batches_scanned += res.batches;
		l->stats.open_bytes_truncated += res.truncated;
		if (res.unsupported) {
			slog_error("log", "segment %s.log holds message format v0/v1 batches at byte %" PRId64
				   ": not supported", s->path, res.valid_end);
			return -ENOTSUP;
		}
		from = 0;
		int64_t next_base = i + 1 < l->nsegs ? l->segs[i + 1]->base_offset : INT64_MAX;
		if (res.truncated == 0 && i + 1 < l->nsegs &&
		    (next_base < s->end_offset || (ck && next_base != s->end_offset))) {
			/* The next segment does not start where this one ends. Overlap: left over from
			 * appends that failed and were rolled back before a crash. A gap (our own logs
			 * have none): this segment's last writes never reached the disk while the roll
			 * did, so nothing from the next segment on was ever acknowledged (acks are in
			 * offset order). Kafka's compacted segments may have gaps: only without our
			 * checkpoint are gaps accepted. Either way everything from it on goes. */
			slog_warn("log", "segment %s.log ends at offset %" PRId64 " but the next starts at %" PRId64
				  "; dropping the later segments", s->path, s->end_offset, next_base);
			res.truncated = 1; /* same handling as a cut */
		}
		if (res.truncated > 0 && i + 1 < l->nsegs) {
			slog_warn("log", "dir=%s deleting %d segment(s) after the corrupt one", l->dir,
				  (int)(l->nsegs - i - 1));
			while (l->nsegs > i + 1) {
				struct log_seg *t = l->segs[--l->nsegs];
				lru_unlink(l, t);
				seg_unlink(t);
				seg_unref(t);
			}
		}
		if (i + 1 < l->nsegs) {
			if ((rc = finish_closed(s, !*bulk)) < 0)
				return rc;
			seg_close_files(s); /* thousands may be recovered: reopened on demand */
		}
	}
	return 0;
}

int log_open(struct uring *ur, const char *dir, const struct log_config *cfg,
	     const struct log_hooks *hooks, struct log **out)
{
	return log_open_at(ur, dir, 0, cfg, hooks, out);
}

int log_open_at(struct uring *ur, const char *dir, int64_t initial_offset,
		const struct log_config *cfg, const struct log_hooks *hooks, struct log **out)
{
	if (initial_offset < 0)
		return -EINVAL;
	if (strlen(dir) + SEG_NAME_DIGITS + 16 >= PATH_MAX)
		return -ENAMETOOLONG;
	struct log *l = calloc(1, sizeof *l);
	if (!l)
		return -ENOMEM;
	l->ur = ur;
	snprintf(l->dir, sizeof l->dir, "%s", dir);
	l->cfg = *cfg;
	config_sanitize(&l->cfg);
	if (hooks)
		l->hooks = *hooks;
	l->ckpt.tmp_fd = -1;
	l->dirfd = -1;
	l->spare.fds[0] = l->spare.fds[1] = l->spare.fds[2] = -1;
	int rc = 0;
	struct i64_vec bases = { 0 };
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		rc = -errno;
		goto fail;
	}
	l->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (l->dirfd < 0) {
		rc = -errno;
		goto fail;
	}
	struct ckpt_snap ck;
	int ckrc = ckpt_read(l, &ck);
	if (ckrc < 0 && ckrc != -ENOENT)
		slog_warn("log", "dir=%s unreadable checkpoint (%s): recovering every segment", l->dir,
			  strerror(-ckrc));
	if ((rc = scan_dir(l, &bases)) < 0)
		goto fail;
	for (size_t i = 0; i < bases.n; i++) {
		struct log_seg *s;
		if ((rc = seg_open_existing(l->dirfd, l->dir, bases.v[i], &s)) < 0)
			goto fail;
		if ((rc = segs_push(l, s)) < 0) {
			seg_unref(s);
			goto fail;
		}
	}
	free(bases.v);
	bases.v = NULL;
	int64_t now = st_now_ms();
	bool recovered = false, bulk = false;
	if (l->nsegs == 0) {
		struct log_seg *s;
		int64_t base = ckrc == 0 ? ck.lso : initial_offset;
		if ((rc = seg_create(l->dir, base, now, &s)) < 0)
			goto fail;
		if ((rc = segs_push(l, s)) < 0) {
			seg_unlink(s);
			seg_unref(s);
			goto fail;
		}
		recovered = true;
	} else {
		if ((rc = recover(l, ckrc == 0 ? &ck : NULL, &recovered, &bulk)) < 0)
			goto fail;
	}
	/* Closed segments end where the next begins (contiguous: we never leave gaps). */
	for (int32_t i = 0; i + 1 < l->nsegs; i++) {
		struct log_seg *s = l->segs[i];
		s->end_offset = l->segs[i + 1]->base_offset;
		s->hw_pos = s->written_pos = s->size;
		s->hw_offset = s->written_offset = s->end_offset;
	}
	struct log_seg *a = active_seg(l);
	if ((rc = seg_ensure_fd(a)) < 0)
		goto fail;
	if (a->state != SEG_ACTIVE) {
		a->state = SEG_ACTIVE;
		if (recovered && (rc = seg_write_indexes_sync(a, !bulk)) < 0)
			goto fail;
		if (recovered && !bulk && fdatasync(a->fd) < 0) {
			rc = -errno;
			goto fail;
		}
	}
	a->roll_start_ms = now;
	a->hw_pos = a->written_pos = a->size;
	a->hw_offset = a->written_offset = a->end_offset;
	a->hw_max_ts = a->written_max_ts = a->max_ts;
	a->hw_max_ts_offset = a->written_max_ts_offset = a->max_ts_offset;
	l->next_offset = l->hw = a->end_offset;
	l->submitted_end = l->next_offset;
	l->sync_hold_end = -1;
	l->written = (struct log_point){ .end = l->next_offset, .seg_base = a->base_offset, .pos = a->size,
					 .max_ts = a->max_ts, .max_ts_offset = a->max_ts_offset };
	l->durable = l->written;
	l->start_offset = l->segs[0]->base_offset;
	if (ckrc == 0 && ck.lso > l->start_offset)
		l->start_offset = ST_MIN(ck.lso, l->next_offset);
	l->last_flush_ms = now;
	l->last_ckpt_ms = now;
	l->publish_from = a->base_offset;
	if (ckrc == 0) {
		l->ckpt.last = ck;
		l->ckpt.have_last = true;
	}
	if (recovered || ckrc != 0) {
		/* Everything recovery kept or rewrote (data, indexes, directory) becomes durable
		 * before the checkpoint claims it. */
		if (bulk ? syncfs(l->dirfd) < 0 : fsync(l->dirfd) < 0) {
			rc = -errno;
			goto fail;
		}
		struct ckpt_snap sn;
		ckpt_snapshot(l, &sn);
		if ((rc = ckpt_write_sync(l, &sn)) < 0)
			goto fail;
	}
	slog_debug("log", "dir=%s opened: %d segments, offsets [%" PRId64 ", %" PRId64 "), %" PRId64
		   " batches scanned", l->dir, (int)l->nsegs, l->start_offset, l->next_offset,
		   l->stats.open_batches_scanned);
	*out = l;
	return 0;
fail:
	free(bases.v);
	for (int32_t i = 0; i < l->nsegs; i++)
		seg_unref(l->segs[i]);
	free(l->segs);
	if (l->dirfd >= 0)
		close(l->dirfd);
	slog_error("log", "dir=%s open failed: %s", dir, strerror(-rc));
	free(l);
	return rc;
}

/* --- close and destroy ---------------------------------------------------------------------------- */

/* Runs the ring until nothing of ours is in flight (the caller should have drained it). */
static void settle_inflight(struct log *l)
{
	for (int i = 0; i < 100000; i++) {
		log_kick(l);
		if (!l->q_head && !l->writes_inflight && !l->sync_inflight && !l->close_ops_inflight &&
		    !l->ckpt.inflight && !l->meta_inflight)
			return;
		if (uring_run_once(l->ur, 100) < 0)
			return;
	}
	slog_error("log", "dir=%s closing with operations still in flight", l->dir);
}

static void free_log(struct log *l)
{
	for (int32_t i = 0; i < l->nsegs; i++)
		seg_unref(l->segs[i]);
	free(l->segs);
	free(l->sync_ops);
	for (int i = 0; i < 3; i++)
		if (l->spare.fds[i] >= 0)
			close(l->spare.fds[i]);
	if (l->trunc_seg)
		seg_unref(l->trunc_seg);
	if (l->dirfd >= 0)
		close(l->dirfd);
	free(l);
}

/* Blocking (log_close): renames of adopted spare files that kept failing get a last try, and an
 * unused spare's files go (log_open would remove them anyway). */
static int tmp_names_settle_sync(struct log *l)
{
	int rc = 0;
	for (int32_t i = l->nsegs - 1; i >= 0 && l->segs_tmp_named > 0; i--) {
		struct log_seg *s = l->segs[i];
		for (int k = 0; k < 3 && s->tmp_mask; k++) {
			if (!(s->tmp_mask & (1u << k)))
				continue;
			char from[LOG_META_NAME], to[LOG_META_NAME];
			spare_rel_name(s->tmp_gen, seg_exts[k], from, sizeof from);
			seg_rel_name(s, seg_exts[k], to, sizeof to);
			if (renameat(l->dirfd, from, l->dirfd, to) < 0) {
				if (rc == 0)
					rc = -errno;
				continue;
			}
			s->tmp_mask &= (uint8_t)~(1u << k);
			if (!s->tmp_mask)
				l->segs_tmp_named--;
		}
	}
	struct log_spare *sp = &l->spare;
	for (int k = 0; k < 3; k++) {
		if (sp->fds[k] < 0)
			continue;
		close(sp->fds[k]);
		sp->fds[k] = -1;
		char name[LOG_META_NAME];
		spare_rel_name(sp->gen, seg_exts[k], name, sizeof name);
		unlinkat(l->dirfd, name, 0);
	}
	sp->ready = false;
	return rc;
}

int log_close(struct log *l)
{
	settle_inflight(l);
	int rc = tmp_names_settle_sync(l);
	if (rc < 0)
		slog_error("log", "dir=%s renaming the last segment's files: %s", l->dir, strerror(-rc));
	for (int32_t i = 0; i < l->nsegs; i++) {
		struct log_seg *s = l->segs[i];
		if (s->state == SEG_CLOSING && !s->close_started) {
			int r = finish_closed(s, true);
			if (r < 0 && rc == 0)
				rc = r;
			l->closing_count--;
		}
	}
	struct log_seg *a = active_seg(l);
	int r;
	if (!l->failed) {
		/* A final time entry, like Kafka's segment close, so reopening needs no scan. Only
		 * what changed is written and synced: closing an idle log costs no fsync. */
		seg_finish_time_index(a);
		if ((r = seg_flush_index_tails_sync(a)) < 0 && rc == 0)
			rc = r;
		if ((l->durable.end < l->next_offset || a->sync_needed) && fdatasync(a->fd) < 0 && rc == 0)
			rc = -errno;
		if (l->dir_sync_needed && fsync(l->dirfd) < 0 && rc == 0)
			rc = -errno;
		if (rc == 0) {
			l->durable = (struct log_point){ .end = l->next_offset, .seg_base = a->base_offset,
							 .pos = a->size, .max_ts = a->max_ts,
							 .max_ts_offset = a->max_ts_offset };
			struct ckpt_snap sn;
			ckpt_snapshot(l, &sn);
			if (!l->ckpt.have_last || memcmp(&sn, &l->ckpt.last, sizeof sn) != 0)
				rc = ckpt_write_sync(l, &sn);
		}
	} else {
		rc = -EIO;
	}
	free_log(l);
	return rc;
}

int log_forget(struct log *l)
{
	/* A log nothing was ever queued on has nothing on the ring: no settling, so a thread
	 * other than the ring's owner may forget a log it just opened. */
	if (l->q_head || l->writes_inflight || l->sync_inflight || l->close_ops_inflight ||
	    l->ckpt.inflight || l->meta_inflight)
		settle_inflight(l);
	free_log(l);
	return 0;
}

int log_destroy(struct log *l)
{
	settle_inflight(l);
	for (int32_t i = 0; i < l->nsegs; i++)
		seg_unlink(l->segs[i]);
	int rc = 0;
	DIR *d = fdopendir(dup(l->dirfd));
	if (d) {
		rewinddir(d);
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (unlinkat(l->dirfd, de->d_name, 0) < 0 && errno != ENOENT && rc == 0)
				rc = -errno;
		}
		closedir(d);
	}
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", l->dir);
	free_log(l);
	if (rmdir(dir) < 0 && rc == 0)
		rc = -errno;
	return rc;
}
