/* seg.h -- one log segment: `<base>.log` (RecordBatch v2 as written), the sparse offset index
 * `<base>.index` (int32 relative offset + int32 position, big-endian) and `<base>.timeindex`
 * (int64 max timestamp so far + int32 relative offset), byte-compatible with Apache Kafka.
 * Internal to the log engine (src/log.c): owns file handles, index memory/mappings, lookups,
 * recovery scans and blocking index writes; knows nothing of appends in flight, group commit
 * or retention policy (log.c decides those and drives the state fields below).
 *
 * Index rules follow Kafka's LogSegment: before appending a batch, when more than
 * index.interval.bytes have been appended since the last entry, the batch gets an offset
 * entry (its LAST offset, its position) and the time index gets (max timestamp so far, the
 * last offset of the batch that carried it) when that timestamp grew. A closing segment gets
 * one final time entry for its max timestamp (Kafka's onBecomeInactiveSegment). */
#ifndef STRATA_SEG_H
#define STRATA_SEG_H

#include <stdbool.h>
#include <stdint.h>

#include "strata/batch.h"
#include "strata/uring.h"

struct log_append;
struct log_write;

#define SEG_OIDX_ENTRY 8
#define SEG_TIDX_ENTRY 12
#define SEG_NAME_DIGITS 20

struct seg_index {
	uint8_t *data;          /* entries as on disk (big-endian) */
	size_t len;             /* bytes of valid entries */
	size_t cap;             /* malloc'd capacity (0 when mapped or empty) */
	size_t map_len;         /* mmap'd length, 0 when not mapped */
	size_t flushed;         /* bytes of data[] known to be in the file (in-memory indexes) */
};

enum seg_state {
	SEG_ACTIVE,             /* takes appends; indexes in memory, written on checkpoint/close */
	SEG_CLOSING,            /* rolled: waiting for its writes, then index write + fsync */
	SEG_CLOSED,             /* read-only; indexes on disk, mapped on first lookup */
};

/* An operation on a segment's files submitted through the ring (close job, fsync round). */
struct seg_op {
	struct uring_op op;
	struct log_seg *seg;
	void *owner;            /* the struct log */
	int kind;
	int64_t expect;         /* writes: bytes that must be written */
};

struct log_seg {
	int64_t base_offset;
	char *path;             /* "<dir>/<20-digit base>" without extension (malloc'd) */
	int fd;                 /* .log (O_RDWR); -1 until first needed for closed segments */
	int oidx_fd, tidx_fd;   /* open while ACTIVE/CLOSING */
	int refs;               /* the log's own + slices + ops in flight */
	enum seg_state state;
	bool deleted;           /* files unlinked; fd kept until the last ref */
	bool idx_loaded;        /* oidx/tidx hold all entries for [0, size) */
	struct seg_index oidx, tidx;

	int64_t size;           /* bytes appended: written, or reserved by writes in flight */
	int64_t end_offset;     /* offset after the last batch in [0, size) */
	int64_t hw_pos;         /* bytes below the high watermark (readable) */
	int64_t hw_offset;      /* offset at hw_pos */
	int64_t hw_max_ts, hw_max_ts_offset;   /* max timestamp among batches below hw_pos */
	int64_t bytes_since_index;
	int64_t max_ts, max_ts_offset;         /* over [0, size); valid when max_ts_known */
	bool max_ts_known;
	int64_t first_ts;       /* first batch's base timestamp; valid when first_ts_known */
	bool first_ts_known;
	int64_t roll_start_ms;  /* segment.ms clock: first append (or open) */
	int64_t mtime_ms;       /* file mtime at open: retention fallback without timestamps */

	/* driven by log.c */
	void *owner;            /* the struct log (completion callbacks) */
	int writes_inflight;    /* 0 or 1: one write at a time per file, so the file is always a
	                           prefix of what was submitted (no holes after a crash) */
	struct log_append *wq_head; /* first append of this segment not yet submitted (they follow
	                               each other in the log's queue), NULL when none */
	int32_t wq_n;           /* appends queued from wq_head */
	struct log_write *wr;   /* log.c's vectored write op (iovecs), malloc'd on first use;
	                           seg_unref frees it */
	struct log_seg *lru_prev, *lru_next; /* log.c's list of closed segments holding files */
	bool in_lru;
	int64_t written_pos;    /* end of the written (completed, in order) prefix in this file */
	int64_t written_offset;
	int64_t written_max_ts, written_max_ts_offset;
	bool sync_needed;       /* a completed write since the last fsync round took it */
	int close_stage;        /* 1: index tail writes, 2: index fsyncs (data: group commit) */
	int close_pending;      /* close-job ops in flight */
	int close_err;
	bool close_started;
	struct seg_op close_ops[5];
	/* A segment adopted from the log's pre-opened spare files: bit i (0 .log, 1 .index,
	 * 2 .timeindex) is set while file i still carries its temporary name
	 * "strata-spare-<tmp_gen>.<ext>.tmp" (log.c's rename through the ring is in flight or
	 * failed). Nothing in such a file is made durable, hence acknowledged, before the renames
	 * completed and a directory fsync followed; recovery deletes *.tmp files. */
	uint8_t tmp_mask;
	uint32_t tmp_gen;
	/* Reads of a closed segment whose pages are not in memory: log.c asks for a warm-up off
	 * the reactor (log_hooks.read_warm) instead of blocking on the disk. */
	bool warm_inflight;
	int64_t warm_done_ms;   /* when the last warm-up finished (0: never) */
};

/* Formats "<path>.<ext>" into buf. Returns 0 or -ENAMETOOLONG. */
int seg_file_path(const struct log_seg *s, const char *ext, char *buf, size_t len);
/* Parses "<20 digits>.log" (or another ext); returns 0 and *base, or -EINVAL. */
int seg_parse_name(const char *name, const char *ext, int64_t *base);

/* A new, empty active segment: creates .log, .index and .timeindex (the directory needs an
 * fsync before anything in them is acknowledged). Returns 0 or -errno. */
int seg_create(const char *dir, int64_t base, int64_t now_ms, struct log_seg **out);
/* A new, empty active segment on files the caller already created and opened (fds[0] .log,
 * [1] .index, [2] .timeindex, all empty, e.g. pre-opened under temporary names that the caller
 * renames): no syscall. On success s owns the fds; on failure (-ENOMEM) the caller keeps them. */
int seg_adopt(const char *dir, int64_t base, int64_t now_ms, const int fds[3], struct log_seg **out);
/* An existing segment found at open: stats .log (size, mtime); opens nothing. Its state is
 * CLOSED and indexes unloaded until used. */
int seg_open_existing(int dirfd, const char *dir, int64_t base, struct log_seg **out);
void seg_ref(struct log_seg *s);
/* Drops a ref; the last one closes fds, unmaps/frees indexes and frees s. */
void seg_unref(struct log_seg *s);
/* Opens the .log fd if not open. Returns 0 or -errno. */
int seg_ensure_fd(struct log_seg *s);
/* Unlinks the segment's files (fd stays open for existing refs). */
void seg_unlink(struct log_seg *s);
/* A closed segment's open .log fd or index memory/mappings (reopened/remapped on demand). */
bool seg_has_files(const struct log_seg *s);
/* Closes a CLOSED segment's fds and unmaps/frees its indexes. Only when nothing else holds
 * the fd (no slice: the caller checks refs). */
void seg_close_files(struct log_seg *s);

/* --- indexes -------------------------------------------------------------------------------- */

/* Index bookkeeping for a batch placed at pos (header h with its final base offset, max_ts as
 * stored). Returns 0 or -ENOMEM (the entry is then skipped: a sparser index, still correct). */
int seg_note_batch(struct log_seg *s, int64_t pos, const struct batch_hdr *h, int64_t max_ts,
		   int32_t index_interval_bytes);
/* Kafka's isFull for either index at max_index_bytes (segment.index.bytes). */
bool seg_index_full(const struct log_seg *s, int64_t max_index_bytes);
/* Appends the final time index entry (max timestamp so far) if it grew. */
int seg_finish_time_index(struct log_seg *s);
/* Drops in-memory entries at or past pos / end_offset (after a failed append's truncation). */
void seg_index_trim(struct log_seg *s, int64_t pos, int64_t end_offset);
/* Makes oidx/tidx usable for lookups on a closed segment: maps the files and validates them;
 * a missing or damaged index (wrong size, not monotonic, past the log end) is rebuilt from the
 * log and rewritten. Returns 0 or -errno (lookups then fall back to scanning from 0). */
int seg_load_index(struct log_seg *s, int32_t index_interval_bytes, int64_t *rebuilds);
/* Loads the index files into memory keeping the entries below (valid_pos, valid_offset) (the
 * segment holding the recovery point). Returns 0, -EBADMSG (damaged: caller rebuilds) or -errno. */
int seg_load_index_mem(struct log_seg *s, int64_t valid_pos, int64_t valid_offset);
/* Frees/unmaps the indexes (a closed segment reloads them lazily). */
void seg_index_release(struct log_seg *s);
/* Appends the unwritten tails of both in-memory indexes to their files and fdatasyncs the
 * files that grew (an active segment's files always hold exactly data[0, flushed)). */
int seg_flush_index_tails_sync(struct log_seg *s);
/* Rewrites both index files from memory (truncate + write, + fdatasync when sync). Blocking. */
int seg_write_indexes_sync(struct log_seg *s, bool sync);

/* Position from the offset index: of the entry with the largest offset <= offset, else 0. */
int64_t seg_index_lookup(const struct log_seg *s, int64_t offset);
/* Largest indexed position <= pos (0 when none). */
int64_t seg_index_lookup_pos(const struct log_seg *s, int64_t pos);
/* Time index: offset of the entry with the largest timestamp <= ts, else the base offset. */
int64_t seg_time_lookup(const struct log_seg *s, int64_t ts);

/* Reads the 61-byte header at pos. Returns 0, -ENODATA (short: end of file) or -errno. The
 * page cache answers these: the 61 bytes sit in the same page as the data about to be sent. */
int seg_read_hdr(struct log_seg *s, int64_t pos, struct batch_hdr *h);
/* First batch (from the index's hint) whose last offset >= offset, below limit_pos. Returns 1
 * with *pos and *h, 0 when none below limit_pos, or -errno. */
int seg_find(struct log_seg *s, int64_t offset, int64_t limit_pos, int32_t index_interval_bytes,
	     int64_t *rebuilds, int64_t *pos, struct batch_hdr *h);
/* Whether a read of up to max_bytes from offset would find in memory what log_read looks at
 * before the send: files open, indexes loaded and the offset index's pages resident (mincore),
 * and the pages of the batch headers at the index's position for offset and for the read's end
 * (preadv2 RWF_NOWAIT). Never blocks on the disk; false when unsure. A closed segment only. */
bool seg_read_cached(struct log_seg *s, int64_t offset, int64_t max_bytes);
/* Max timestamp and the last offset of its batch; loads it from the time index's last entry
 * for an unloaded closed segment (ts -1 when there are no timestamps). Returns 0 or -errno. */
int seg_max_timestamp(struct log_seg *s, int64_t *ts, int64_t *offset);
/* First batch's base timestamp (-1 for an empty segment). */
int seg_first_timestamp(struct log_seg *s, int64_t *ts);

/* --- recovery ------------------------------------------------------------------------------- */

struct seg_recover_result {
	int64_t batches;        /* batches CRC-checked */
	int64_t valid_end;      /* bytes kept */
	int64_t truncated;      /* bytes cut off the end */
	bool unsupported;       /* stopped at a magic 0/1 batch (not truncated) */
};
/* Scans batches from from_pos (CRC-32C, length, magic, monotonic offsets), rebuilding index
 * entries and end/max-timestamp state as it goes (the caller has set the state for
 * [0, from_pos)), and truncates a torn or corrupt tail (slog_warn with its byte position).
 * contiguous: every batch must start exactly where the previous ended (logs this engine wrote:
 * it catches a damaged base offset, which the CRC does not cover); otherwise offsets need only
 * grow (compacted segments written by Kafka have gaps). Blocking. Returns 0 or -errno. */
int seg_recover(struct log_seg *s, int64_t from_pos, int32_t index_interval_bytes, bool contiguous,
		struct seg_recover_result *res);
/* Resets the in-memory state so seg_recover(s, 0, ...) rebuilds everything. */
void seg_reset_state(struct log_seg *s);
/* Recomputes end offset, max timestamp and index spacing for [0, end_pos) from the loaded
 * indexes plus a header scan from the last indexed position (no CRC). Returns 0 or -errno. */
int seg_recompute_tail(struct log_seg *s, int64_t end_pos, int64_t *batches);

#endif
