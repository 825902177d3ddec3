/* rcache.h -- the remote read cache: cold reads of remote segments in chunks (ranged GETs aligned
 * to record batches with the segment's offset index object), kept in a bounded on-disk LRU and
 * served as file ranges. Downloads run on the cache's own threads; the reactor only looks
 * entries up, takes references and reads a few batch headers from a cache file (page cache).
 * A chunk is verified before it is ever served: batch framing, magic, every batch's CRC-32C,
 * offsets contiguous and inside the segment, the index entry at its start, and the whole
 * object's CRC-32C from the manifest when the chunk is the whole object. What fails is never
 * served: reads of it get KAFKA_STORAGE_ERROR until it is retried (after RCACHE_FAIL_HOLD_MS).
 * A store with local files (file://) is not copied: a chunk is verified in the bucket's own
 * file and served from it (a file changed after that is verified again before it is served).
 * Owns its directory (emptied at open). Knows nothing of partitions' local logs. */
#ifndef STRATA_TIER_RCACHE_H
#define STRATA_TIER_RCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "manifest.h"

struct objstore;
struct rcache;
struct rcache_chunk;

/* Returned (> every Kafka error code) when a download was queued or is in flight: the caller
 * parks and is woken through the done callback. */
#define RCACHE_PENDING 10000
#define RCACHE_FAIL_HOLD_MS 5000

struct rcache_config {
	const char *dir;
	int64_t max_bytes;              /* LRU bound (referenced chunks may exceed it) */
	int64_t min_free_bytes;         /* disk pressure: the cache directory's file system keeps
	                                   this much free; the cache gives back space (LRU) below it
	                                   and writes no chunk file that would cross it */
	int32_t max_chunks;             /* bound on cached chunks (one open file each) */
	int64_t chunk_bytes;
	int threads;                    /* download threads (reads waiting for a chunk) */
	int prefetch_threads;           /* prefetch threads, at SCHED_IDLE (0: the download threads
	                                   prefetch too, at normal priority) */
	int prefetch_chunks;            /* chunks after the one read, fetched ahead */
	bool local_direct;              /* file:// stores: verify and serve the bucket's own files
	                                   (no copy in dir; default true) */
	/* Tests only (NULL otherwise): called on a prefetch thread before each window of chunk k. */
	void (*test_prefetch_window)(void *ctx, int32_t k);
	void *test_ctx;
};
void rcache_config_defaults(struct rcache_config *cfg);

/* A remote segment as a read needs it: its manifest entry and who to wake. */
struct rcache_seg {
	char topic[MANIFEST_TOPIC_MAX + 1];
	int32_t partition;
	struct manifest_seg m;
};

/* Called on a download thread when a job for (topic, partition) finished (ok or not). */
typedef void (*rcache_done_fn)(void *ctx, const char *topic, int32_t partition);

int rcache_open(const struct rcache_config *cfg, struct objstore *os, rcache_done_fn done,
		void *done_ctx, struct rcache **out);
/* Stops the threads (waiting for downloads in progress), removes the cached files. Every slice
 * must have been released. */
void rcache_close(struct rcache *rc);

/* Whole batches of one cached chunk. */
struct rcache_slice {
	int fd;
	int64_t file_pos;
	int64_t len;
	int64_t first_offset;           /* base offset of the first batch */
	int64_t next_offset;            /* offset after the last batch */
	bool segment_end;               /* the slice ends at the end of the segment */
	struct rcache *rc_;
	struct rcache_chunk *chunk_;    /* referenced until rcache_slice_release */
};

/* Reactor: reads from the batch holding offset (or the next one), whole batches up to max_bytes
 * (the first one even if larger when min_one). Returns KERR_NONE (slice filled, len > 0),
 * RCACHE_PENDING, KERR_KAFKA_STORAGE_ERROR (damaged object or failing store) or
 * KERR_OFFSET_OUT_OF_RANGE (offset past the segment). Queues prefetch of the next chunks, into
 * next (the following remote segment, may be NULL) near the end of seg. */
int rcache_read(struct rcache *rc, const struct rcache_seg *seg, const struct rcache_seg *next,
		int64_t offset, int64_t max_bytes, bool min_one, struct rcache_slice *out);
void rcache_slice_release(struct rcache_slice *s);
/* Queues (at low priority) the download of the segment's first chunk. */
void rcache_prefetch(struct rcache *rc, const struct rcache_seg *seg);

/* ListOffsets inside one remote segment: the first record with timestamp >= ts_ms (its offset
 * and timestamp; -1/-1 when none). Runs on a download thread (time index object, then the
 * chunk it points at); results are kept for a few seconds. Returns KERR_NONE, RCACHE_PENDING or
 * KERR_KAFKA_STORAGE_ERROR. */
int rcache_offset_for_timestamp(struct rcache *rc, const struct rcache_seg *seg, int64_t ts_ms,
				int64_t *offset_out, int64_t *ts_out);

struct rcache_stats {
	int64_t hits, misses;           /* reads answered from the cache / that had to wait */
	int64_t downloads, download_bytes, download_errors, corrupt;
	int64_t prefetches, evictions;
	int64_t handovers;              /* prefetches a waiting read took over (see rcache.c) */
	int64_t pressure_evictions;     /* chunks dropped because the disk ran short (min_free_bytes) */
	int64_t pressure_refusals;      /* chunk files not written for lack of disk space */
	int64_t local_bytes;            /* of download_bytes: verified in place in a local bucket */
	int64_t local_changed;          /* local chunks whose file changed after verification */
	int64_t job_cpu_ns;             /* CPU time of the download threads' jobs */
	int64_t cached_bytes;
	int32_t cached_chunks;
};
void rcache_get_stats(struct rcache *rc, struct rcache_stats *out);
/* Gives space back when the cache directory's file system has less than min_free_bytes free:
 * drops unreferenced chunk files, least recently used first. The download threads run it
 * every RCACHE_TRIM_INTERVAL_MS and before writing a chunk; exposed for tests. Returns the
 * chunks dropped. Blocking (statvfs, unlink): never on the reactor. */
#define RCACHE_TRIM_INTERVAL_MS 5000
int rcache_trim(struct rcache *rc);
/* Changes min_free_bytes of a running cache (the next trim or chunk write uses it). */
void rcache_set_min_free_bytes(struct rcache *rc, int64_t min_free_bytes);

/* Verifies a downloaded chunk of seg's .log object that starts at byte pos (pure; exposed for
 * tests). first_last_offset: the last offset of the chunk's first batch per the offset index
 * (-1 unknown). Returns 0 or -EBADMSG with why. */
int rcache_verify_chunk(const struct manifest_seg *seg, int64_t pos, const uint8_t *buf,
			size_t len, int64_t first_last_offset, char *why, size_t why_len);
/* The same, with the bytes handed to the verifier window bytes at a time (0: all at once), as
 * local chunks are read: the result must not depend on where the windows fall. */
int rcache_verify_chunk_windows(const struct manifest_seg *seg, int64_t pos, const uint8_t *buf,
				size_t len, size_t window, int64_t first_last_offset, char *why,
				size_t why_len);

#endif
