/* log.h -- one partition's log: segments in Apache Kafka's on-disk format, append with group
 * commit through io_uring, reads by offset and timestamp, roll, retention, crash recovery.
 * The log knows nothing of topics' names, the network or tiering: the broker hands it a
 * directory and a config, tiering listens to its hooks. All calls are made on the thread that
 * owns the struct uring given to log_open (the partition's reactor), except log_open/log_open_at
 * and log_forget of a log never appended to, which touch no ring (a worker thread opens
 * partitions of new topics and hands them over). */
#ifndef STRATA_LOG_H
#define STRATA_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <limits.h>

#include "strata/uring.h"

struct log;
struct log_seg;

/* Per-topic settings the log applies (Kafka topic property names in comments). */
struct log_config {
	int64_t segment_bytes;          /* segment.bytes (default 1 GiB) */
	int64_t segment_ms;             /* segment.ms (default 7 days) */
	int64_t segment_index_bytes;    /* segment.index.bytes (default 10 MiB): a full index rolls */
	int64_t retention_ms;           /* retention.ms, -1 unlimited (default 7 days) */
	int64_t retention_bytes;        /* retention.bytes, -1 unlimited (default) */
	int64_t flush_messages;         /* flush.messages: 1 (default) = every append is fsynced before
	                                   it is acknowledged (group commit); N > 1 = acknowledge after
	                                   the write, fsync once N messages are unflushed */
	int64_t flush_ms;               /* flush.ms: with flush_messages > 1, fsync at least this often */
	int32_t max_message_bytes;      /* max.message.bytes (default 1048588): per batch */
	int32_t index_interval_bytes;   /* index.interval.bytes (default 4096) */
	bool log_append_time;           /* message.timestamp.type=LogAppendTime */
	int64_t timestamp_before_max_ms;/* message.timestamp.before.max.ms (default INT64_MAX) */
	int64_t timestamp_after_max_ms; /* message.timestamp.after.max.ms (default 3600000) */
};
void log_config_defaults(struct log_config *cfg);

/* A closed segment, as published to the tiering thread. Paths are absolute. */
struct log_segment_info {
	int64_t base_offset;
	int64_t last_offset;            /* offset of the last record in the segment */
	int64_t size_bytes;
	int64_t first_timestamp_ms;     /* first batch's base timestamp */
	int64_t max_timestamp_ms;
	char log_path[PATH_MAX];
	char index_path[PATH_MAX];
	char timeindex_path[PATH_MAX];
};

struct log_hooks {
	void *ctx;
	/* A segment was rolled: closed, read-only, indexes trimmed and fsynced. May be NULL. */
	void (*segment_closed)(void *ctx, struct log *l, const struct log_segment_info *info);
	/* The high watermark advanced (new data readable): wakes long-polling fetches. May be NULL. */
	void (*hw_advanced)(void *ctx, struct log *l);
	/* Asked before retention deletes a closed segment; false keeps it (tiering: not yet uploaded).
	 * NULL = always deletable. */
	bool (*segment_deletable)(void *ctx, struct log *l, int64_t base_offset);
	/* log_read_nb met a closed segment whose index or header pages are not in memory: bring
	 * them in off the reactor (read the files by path: <path_stem>.index, .timeindex and the
	 * header pages of .log at the read's start and end, see rwarm.h), then call log_warm_done
	 * on the reactor and wake the reader. Returns false when it cannot take the request (the
	 * read then blocks as log_read does). May be NULL: log_read_nb is log_read. */
	bool (*read_warm)(void *ctx, struct log *l, const char *path_stem, int64_t base_offset,
			  int64_t offset, int64_t max_bytes);
};

/* Opens (creating if missing) the partition directory dir and recovers it: a clean shutdown's
 * checkpoint means nothing is scanned; otherwise batches after the recovery point are
 * CRC-checked, a torn or corrupt tail is truncated (logged with its byte position), damaged
 * or missing indexes are rebuilt. Blocking: at startup, or on a worker thread while the
 * reactor serves (topic creation; see log_open_at).
 * Returns 0 or -errno. */
int log_open(struct uring *ur, const char *dir, const struct log_config *cfg,
	     const struct log_hooks *hooks, struct log **out);
/* As log_open, but a directory with neither segments nor a checkpoint starts empty at
 * initial_offset (log start = end = initial_offset; the first append gets that offset), e.g. a
 * partition restored from a tiered-storage bucket whose remote segments end there. A directory
 * that has segments or a checkpoint opens as with log_open (initial_offset is ignored).
 * Touches no ring (only stores ur): any thread may open a log and hand it to the ring's owner.
 * Returns 0 or -errno (-EINVAL: negative initial_offset). */
int log_open_at(struct uring *ur, const char *dir, int64_t initial_offset,
		const struct log_config *cfg, const struct log_hooks *hooks, struct log **out);
/* Clean shutdown: the caller has drained the ring (no append in flight). Flushes and fsyncs
 * data and indexes, writes the recovery checkpoint, frees l. Blocking. Returns 0 or -errno. */
int log_close(struct log *l);
/* Removes the partition's directory and frees l (DeleteTopics). No append may be in flight. */
int log_destroy(struct log *l);
/* Frees l without writing or removing anything: no flush, no checkpoint. For a caller that
 * removes the directory itself (DeleteTopics on a worker thread) or gives up on a log it just
 * opened. Operations still in flight are settled first (running the ring, as log_close does);
 * when none was ever queued the ring is not touched, so the thread that opened the log may
 * forget it before handing it over. Returns 0. */
int log_forget(struct log *l);
/* Applies new settings live (AlterConfigs). */
void log_set_config(struct log *l, const struct log_config *cfg);
const char *log_dir(const struct log *l);

/* An append of one Produce partition's records: one or more RecordBatch v2. */
struct log_append {
	/* in: the batches; the log writes base offsets (and, for LogAppendTime, timestamps and
	 * CRCs) into them in place. Must stay valid and unchanged until done runs. */
	uint8_t *data;
	size_t len;
	/* Runs exactly once on the owning thread when log_append returned KERR_NONE: kerr is
	 * KERR_NONE once the records are durable (or written, when the config relaxes flushing),
	 * or KERR_KAFKA_STORAGE_ERROR when the write or fsync failed (nothing of it is served). */
	void (*done)(struct log_append *a, int kerr);
	/* out, set by log_append before it returns KERR_NONE */
	int64_t base_offset;
	int64_t last_offset;
	int64_t log_append_time_ms;     /* -1 unless LogAppendTime */
	int32_t record_count;
	/* internal to the log */
	struct log_append *next_;
	uint64_t seq_;
	struct log_seg *seg_;
	int64_t file_pos_;
	int64_t max_ts_;                /* largest timestamp in the append, and the last offset */
	int64_t max_ts_offset_;         /*   of its batch (time index / ListOffsets bookkeeping) */
	int state_;
	int kerr_;
};

/* Validates every batch (length, magic 2, CRC-32C, record count against lastOffsetDelta,
 * size against max.message.bytes, timestamps; base offset 0 as producers send it; records
 * walked, compressed ones inflated, as Kafka's LogValidator does: see src/batch.c for the
 * exact rules and the few stricter-than-Kafka answers), assigns offsets and submits the write.
 * Returns KERR_NONE (done will run later) or the Kafka error (nothing written, done never
 * runs): KERR_CORRUPT_MESSAGE, KERR_MESSAGE_TOO_LARGE, KERR_INVALID_RECORD,
 * KERR_INVALID_TIMESTAMP, KERR_UNSUPPORTED_FOR_MESSAGE_FORMAT, KERR_KAFKA_STORAGE_ERROR,
 * KERR_UNKNOWN_SERVER_ERROR (out of memory). */
int log_append(struct log *l, struct log_append *a);

/* Closed segments keep their .log fd and index mappings open only while among the log's
 * LOG_CLOSED_FILES_MAX most recently used closed segments, or while a slice references them
 * (files are reopened on demand): a broker with thousands of segments per partition does not
 * run out of descriptors or mappings. Besides those, the active segment holds its three files
 * and, once it is half way to a roll (by segment.bytes, segment.index.bytes or segment.ms),
 * the next segment's three files pre-opened under temporary names, so the roll makes no
 * blocking call on the reactor. */
#define LOG_CLOSED_FILES_MAX 8

/* A byte range of whole batches in one segment file, for sending without a copy. */
struct log_slice {
	struct log_seg *seg;            /* referenced until log_slice_release (keeps fd open: a
	                                   referenced segment's files are never closed) */
	int fd;
	int64_t file_pos;
	int64_t len;                    /* 0: nothing to read at that offset yet */
	int64_t first_offset;           /* base offset of the first batch in the range */
	int64_t next_offset;            /* offset after the last batch in the range */
};
/* Reads from the batch that contains offset: whole batches, not past upto_offset (exclusive;
 * the high watermark, or the last stable offset), at most max_bytes unless min_one and the
 * first batch alone is larger (KIP-74). A slice never spans two segments: call again from
 * next_offset. Returns KERR_NONE (len may be 0 at the end) or KERR_OFFSET_OUT_OF_RANGE
 * (offset < log start or > high watermark), KERR_KAFKA_STORAGE_ERROR when the file cannot be
 * read. */
int log_read(struct log *l, int64_t offset, int64_t upto_offset, int64_t max_bytes, bool min_one,
	     struct log_slice *out);
void log_slice_release(struct log_slice *s);
/* Returned by log_read_nb (> every Kafka error code): a warm-up was asked for (or is under
 * way); nothing was read. The reader parks and is woken through read_warm's completion. */
#define LOG_READ_PENDING 10001
/* log_read for the reactor: the same, except that a closed segment whose pages are not in
 * memory is not read (open, index load, header preads would block on the disk) but handed to
 * the read_warm hook, answering LOG_READ_PENDING. A segment warmed or found in memory within
 * the last LOG_WARM_FRESH_MS is read as log_read does without looking again: a page evicted
 * meanwhile costs one blocking read rather than a probe per fetch or a wait that never ends. */
#define LOG_WARM_FRESH_MS 2000
int log_read_nb(struct log *l, int64_t offset, int64_t upto_offset, int64_t max_bytes, bool min_one,
		struct log_slice *out);
/* The warm-up of segment base_offset ended (the segment may be gone since). */
void log_warm_done(struct log *l, int64_t base_offset);

/* The earliest record with timestamp >= ts_ms (ListOffsets): *offset_out and its *ts_out, or
 * *offset_out = -1 when every record is older. Record-exact (looks inside the batch). */
int log_offset_for_timestamp(struct log *l, int64_t ts_ms, int64_t *offset_out, int64_t *ts_out);
/* The record with the largest timestamp (ListOffsets MAX_TIMESTAMP), or -1/-1 when empty. */
int log_max_timestamp(struct log *l, int64_t *offset_out, int64_t *ts_out);

int64_t log_start_offset(const struct log *l);
int64_t log_high_watermark(const struct log *l); /* everything below is durable and readable */
int64_t log_end_offset(const struct log *l);     /* next offset to assign */
int64_t log_size_bytes(const struct log *l);
int32_t log_segment_count(const struct log *l);

/* Rolls the active segment now (no-op when it is empty). Uses the next segment's pre-opened
 * files when they are ready, else creates them (blocking; counted in rolls_sync). Returns 0 or
 * -errno. */
int log_roll(struct log *l);
/* Time-driven work: roll on segment.ms, fsync on flush.ms, the periodic recovery checkpoint
 * (every 60 s when something changed), retries after storage errors. now_ms is wall-clock
 * (st_now_ms). Call about once a second. */
void log_tick(struct log *l, int64_t now_ms);
/* cleanup.policy=delete: removes whole closed segments past retention.ms / retention.bytes
 * (asking hooks.segment_deletable first). The segments leave the log at once; their files are
 * unlinked through the ring (gone once those operations complete, e.g. after uring_drain).
 * Returns segments deleted or -errno. */
int log_retention_run(struct log *l, int64_t now_ms);
/* DeleteRecords: moves the log start offset up to new_start (<= high watermark), persisted
 * (by a checkpoint started before returning and completing asynchronously on the ring;
 * log_close writes it synchronously); whole segments below it are deleted. Returns KERR_NONE
 * or KERR_OFFSET_OUT_OF_RANGE. */
int log_delete_records(struct log *l, int64_t new_start);

/* Calls fn for every batch header from from_offset to the end, in order (startup only:
 * blocking), e.g. to rebuild idempotent-producer state. Stops early when fn returns != 0.
 * Returns 0, fn's non-zero value, or -errno. */
struct batch_hdr;
int log_scan_batches(struct log *l, int64_t from_offset,
		     int (*fn)(void *ctx, const struct batch_hdr *h, int64_t file_pos), void *ctx);

/* The partition leader epoch written into every appended batch (Kafka stamps the leader's
 * epoch; default 0). */
void log_set_leader_epoch(struct log *l, int32_t epoch);

/* True from a failed write or fsync until the log has cut its files back to the last good
 * position; appends fail fast with KAFKA_STORAGE_ERROR meanwhile. */
bool log_storage_failed(const struct log *l);

/* Counters for tests, metrics and the benchmark. */
#define LOG_ROLL_HIST_BUCKETS 20
struct log_stats {
	int64_t open_batches_scanned;   /* batches CRC-checked by log_open's recovery */
	int64_t open_bytes_truncated;   /* torn/corrupt tail bytes cut off at open */
	int64_t index_rebuilds;         /* missing or damaged indexes rebuilt (open or lazily) */
	int64_t read_warmups;           /* closed-segment reads handed to read_warm (log_read_nb) */
	int64_t fsync_rounds;           /* group-commit rounds completed */
	int64_t writes;                 /* data write operations completed (each carries the
	                                   appends queued on its segment: one or more) */
	int64_t appends_written;        /* appends those writes carried */
	int64_t rolls;
	int64_t write_errors;           /* appends failed with KAFKA_STORAGE_ERROR */
	int64_t checkpoints;            /* recovery checkpoints written */
	/* Time the reactor spent inside a roll (creating or adopting the next segment, starting
	 * the closing one's index work): roll_hist[0] counts rolls under 1 us, roll_hist[i] those in
	 * [2^(i-1), 2^i) us, the last bucket everything longer. */
	int64_t roll_ns_total, roll_ns_max;
	int64_t roll_hist[LOG_ROLL_HIST_BUCKETS];
	int64_t rolls_sync;             /* rolls that created their files on the reactor (no
	                                   pre-opened spare ready) */
};
void log_get_stats(const struct log *l, struct log_stats *out);

/* Test-only fault injection: the next n append writes (or fsync rounds' fsyncs) complete with
 * err (e.g. -ENOSPC) instead of their real result; the write itself still happens, so the
 * log's truncation back to the last good position is exercised too. */
void log_test_fail_next_writes(struct log *l, int n, int err);
void log_test_fail_next_syncs(struct log *l, int n, int err);

/* Room left for later work (not implemented yet): transactions (a .txnindex per segment with
 * aborted transactions, the last stable offset as log_read's upto_offset), compaction
 * (cleanup.policy=compact rewriting closed segments through .cleaned/.swap files, which
 * log_open already recognises) and tiered storage (segment_closed / segment_deletable hooks). */

#endif
