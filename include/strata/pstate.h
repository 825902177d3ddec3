/* pstate.h -- one partition's idempotent-producer state, as Kafka's ProducerStateManager keeps
 * it: per producer id the epoch and the last five batches (first/last sequence, first/last
 * offset, timestamp), used to answer a retried batch with its original offset instead of
 * writing it twice, and to reject sequence gaps and fenced (older) epochs. Persisted as
 * checksummed snapshots "<20-digit offset>.snapshot" beside the segments, rebuilt after a
 * crash from the newest valid snapshot plus a scan of the batches after it.
 *
 * It does not allocate producer ids (InitProducerId does), does not write the log and does not
 * talk to clients; the Produce handler calls it around log_append:
 *
 *   kerr = pstate_check(ps, data, len, now_ms, &pa);
 *   if (kerr)                 -> answer kerr, nothing written
 *   else if (pa.duplicate)    -> answer pa.dup_base_offset, no write; if pstate_wait()
 *                                returns true, only once the waiter fires (the original is
 *                                still in flight and may yet fail)
 *   else if (log_append(...)) -> pstate_cancel(ps, &pa)
 *   else                      -> pstate_commit(ps, &pa, data, len, now_ms); and from the
 *                                append's done callback: pstate_append_done(ps, &pa, kerr)
 *
 * In-flight appends: the state is updated at commit (before the write is durable) so that the
 * next batch of the same producer, pipelined behind it (max.in.flight up to 5), is checked
 * against it. A retry of a batch that is still in flight is a duplicate whose answer waits for
 * the original's acknowledgement: the log acknowledges appends in offset order, so the first
 * tracked append to finish whose last offset reaches the waiter's offset is the original, and
 * the waiter gets its result. When an append fails (KAFKA_STORAGE_ERROR) the log fails it and
 * every append after it and rewinds its end offset; at the first such failure the state those
 * appends added is rolled back, newest first, so the producer's retries are in sequence again.
 *
 * Not implemented yet, room left for transactions: the ongoing transaction's first offset and
 * the coordinator epoch per producer (kept in snapshots already), the last stable offset
 * (first offset of the oldest ongoing transaction) and the aborted-transactions index
 * (.txnindex, written by the log when a marker aborts a transaction). Control batches are
 * skipped when rebuilding.
 *
 * Single-threaded: every call on the partition's reactor thread. */
#ifndef STRATA_PSTATE_H
#define STRATA_PSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PSTATE_BATCHES 5                        /* ProducerStateEntry.NUM_BATCHES_TO_RETAIN */
#define PSTATE_DEFAULT_EXPIRATION_MS 86400000LL /* producer.id.expiration.ms (1 day) */
#define PSTATE_DEFAULT_MAX_PRODUCERS 10000      /* per partition; least recently used evicted */
#define PSTATE_DEFAULT_SNAPSHOT_BYTES (64LL << 20) /* periodic snapshot every this many bytes */

struct log;
struct batch_hdr;

struct pstate_config {
	int64_t expiration_ms;          /* producer.id.expiration.ms: idle producers are forgotten */
	uint32_t max_producers;         /* memory bound; over it the least recently used idle
	                                   producer is dropped (its next batch is accepted as from
	                                   an unknown producer, dedup lost for it) */
	int64_t snapshot_interval_bytes;/* a snapshot once this many bytes were appended since the
	                                   last one (0 = only at close) */
};
void pstate_config_defaults(struct pstate_config *cfg);

/* One cached batch of a producer. */
struct pstate_batch {
	int32_t first_seq, last_seq;
	int64_t first_offset, last_offset;
	int64_t timestamp_ms;           /* the batch's max timestamp as written */
	bool log_append_time;           /* timestamp_ms is the broker's LogAppendTime */
};

/* A producer's state (what snapshots hold). */
struct pstate_entry {
	int64_t producer_id;
	int16_t epoch;                  /* -1: none yet (the entry is empty) */
	uint8_t n_batches;              /* cached batches, oldest at batches[first] */
	uint8_t first;
	int32_t coordinator_epoch;      /* transactions (later): last marker's coordinator epoch, -1 */
	int64_t txn_first_offset;       /* transactions (later): first offset of the ongoing one, -1 */
	int64_t last_timestamp_ms;      /* last batch's max timestamp (Kafka's lastTimestamp) */
	int64_t last_seen_ms;           /* broker clock at the last append (batch time when rebuilt):
	                                   expiry */
	struct pstate_batch batches[PSTATE_BATCHES];
};

/* Per-append bookkeeping, owned by the caller (embed it in the request's per-partition state)
 * from pstate_check until pstate_append_done (or pstate_cancel). Zeroing is not required. */
struct pstate_undo {
	int64_t producer_id;
	bool created;                   /* the entry was created (empty) by pstate_check */
	struct pstate_entry saved;      /* the entry before this append (rollback) */
	/* pstate_check's view of the producer after the earlier batches of the same records */
	bool upd_;
	int16_t upd_epoch_;
	int32_t upd_last_seq_;
};
struct pstate_append {
	/* out of pstate_check */
	bool duplicate;                 /* every producer batch is a retry of a cached batch */
	int64_t dup_base_offset;        /* the original's first offset */
	int64_t dup_last_offset;        /* the original's last offset (what to wait for) */
	int64_t dup_log_append_time_ms; /* the original's LogAppendTime, -1 when CreateTime */
	/* internal */
	struct pstate_append *next_, *prev_;
	struct pstate_undo *undo_;      /* one per distinct producer id in the records */
	uint32_t n_undo_;
	int64_t base_offset_, last_offset_;
	int state_;
	bool rolled_back_;
	struct pstate_undo undo_inline_[1];
};

/* A duplicate's answer waiting for its in-flight original. */
struct pstate_waiter {
	struct pstate_waiter *next_;
	int64_t offset_;
	/* Runs once, on the owning thread: kerr NONE (the original is acknowledged) or
	 * KAFKA_STORAGE_ERROR (it failed and was rolled back: the client will retry). */
	void (*fire)(struct pstate_waiter *w, int kerr);
};

struct pstate_stats {
	int64_t producers;
	int64_t duplicates;             /* batches answered as retries */
	int64_t out_of_order;           /* OUT_OF_ORDER_SEQUENCE_NUMBER answers */
	int64_t fenced;                 /* INVALID_PRODUCER_EPOCH answers */
	int64_t rollbacks;              /* appends whose state was rolled back after a failure */
	int64_t expired;                /* producers dropped after producer.id.expiration.ms */
	int64_t evicted;                /* producers dropped over max_producers */
	int64_t snapshots_written;
	int64_t snapshot_loaded_offset; /* offset of the snapshot recovery started from, -1 none */
	int64_t batches_replayed;       /* producer batches applied by recovery's scan */
};

struct pstate;

/* A new, empty state. dir: the partition directory for snapshots (NULL: not persisted).
 * cfg NULL: defaults. Returns NULL when out of memory. No I/O. */
struct pstate *pstate_create(const char *dir, const struct pstate_config *cfg);
/* Frees ps (no snapshot: call pstate_snapshot first for a clean close). Waiters still queued
 * are dropped, which only happens when the log was destroyed with appends in flight. */
void pstate_free(struct pstate *ps);
void pstate_set_config(struct pstate *ps, const struct pstate_config *cfg);

/* Startup (blocking): loads the newest valid snapshot at or below the log end offset (newer
 * ones are stale after a crash lost the tail and are deleted, as are damaged ones), then
 * replays every producer batch after it with log_scan_batches, then expires idle producers.
 * Returns 0 or -errno (a scan error; the state is then whatever was rebuilt). */
int pstate_recover(struct pstate *ps, struct log *l, int64_t now_ms);

/* Applies one batch as written in the log, without checks (recovery's replay; tests). */
void pstate_replay_batch(struct pstate *ps, const struct batch_hdr *h, bool log_append_time);

/* Checks the producer batches of one Produce partition's records (one or more RecordBatch v2;
 * batches without a producer id pass) in order, against the state and against the earlier
 * batches of the same records. Returns KERR_NONE (pa->duplicate says whether it is a retry), or
 * KERR_OUT_OF_ORDER_SEQUENCE_NUMBER, KERR_INVALID_PRODUCER_EPOCH, KERR_CORRUPT_MESSAGE
 * (malformed framing, or a bad CRC on a batch that would be answered from the state),
 * KERR_INVALID_RECORD (retried and new batches mixed in one request), or
 * KERR_UNKNOWN_SERVER_ERROR (out of memory). On KERR_NONE and not duplicate the caller must
 * follow with pstate_commit or pstate_cancel; otherwise nothing is to be undone. */
int pstate_check(struct pstate *ps, const uint8_t *data, size_t len, int64_t now_ms,
		 struct pstate_append *pa);
/* log_append refused the records: forgets what pstate_check prepared. */
void pstate_cancel(struct pstate *ps, struct pstate_append *pa);
/* log_append accepted them: data now holds the offsets (and timestamps) the log wrote.
 * Updates the producers and tracks the append until pstate_append_done. */
void pstate_commit(struct pstate *ps, struct pstate_append *pa, const uint8_t *data, size_t len,
		   int64_t now_ms);
/* The log's done callback for a committed append: KERR_NONE, or KAFKA_STORAGE_ERROR (then
 * this append's and every later tracked append's state is rolled back). Fires the waiters the
 * append covers; may write a periodic snapshot (a small blocking write, no fsync). */
void pstate_append_done(struct pstate *ps, struct pstate_append *pa, int kerr);

/* A duplicate whose original (last offset pa->dup_last_offset) is not yet below the high
 * watermark hw: queues w and returns true (w->fire runs later); false means the original is
 * already acknowledged: answer now. */
bool pstate_wait(struct pstate *ps, struct pstate_waiter *w, int64_t dup_last_offset, int64_t hw);

/* Writes "<dir>/<offset 20 digits>.snapshot" (temp file + rename; fsync of file and directory
 * when sync), removing all but the previous snapshot. offset: every producer batch below it
 * has been committed (at close: log_end_offset). Appends still in flight are left out: the
 * snapshot is then taken at the first one's base offset instead. Returns 0 or -errno. */
int pstate_snapshot(struct pstate *ps, int64_t offset, bool sync);

/* Drops producers idle for expiration_ms (none with an append in flight). Returns how many. */
int pstate_expire(struct pstate *ps, int64_t now_ms);

/* Lookups for tests and tools. NULL when unknown. */
const struct pstate_entry *pstate_find(const struct pstate *ps, int64_t producer_id);
void pstate_get_stats(const struct pstate *ps, struct pstate_stats *out);
/* Kafka's sequence arithmetic: the last sequence of a batch (base + lastOffsetDelta, wrapping
 * past INT32_MAX to 0) and whether next follows last. */
int32_t pstate_seq_add(int32_t seq, int32_t delta);
bool pstate_in_sequence(int32_t last_seq, int32_t next_seq);

#endif
