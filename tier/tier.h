/* tier.h -- tiered storage: closed segments uploaded to a bucket (objstore.h) by upload threads,
 * per-partition manifests, local vs total retention, and cold reads below the local log start
 * through the remote read cache (rcache.h).
 *
 * Threads: the reactor calls everything here (never blocking on the network: it takes the
 * tier's mutex for short lookups, hands work over through bounded queues, and learns about
 * finished downloads through an eventfd read on its ring, which calls the broker's wake
 * function). Upload threads own all object store writes; download threads (rcache) all reads.
 *
 * Safety rule: tier_part_deletable() says yes for a local segment only once a manifest listing
 * it is durable in the bucket, so local retention never deletes what the bucket lacks. */
#ifndef STRATA_TIER_H
#define STRATA_TIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strata/log.h"
#include "strata/uring.h"

struct cfg;
struct tier;
struct tier_part;

/* Returned by reads that wait for a download (greater than every Kafka error code). */
#define TIER_PENDING 10000

/* Called on the reactor when downloads for (topic, partition) finished; partition -1: every
 * partition of every topic (the completion list overflowed). */
typedef void (*tier_wake_fn)(void *ctx, const char *topic, int32_t partition);

/* Opens the tier the broker settings describe (strata.tier.*; log_dir is the broker's
 * log.dirs, for the default bucket file://<log.dirs>/../bucket and cache <log.dirs>/../tier-cache)
 * and starts its threads. *out = NULL (and 0) when strata.tier.url=none. Returns 0 or -errno
 * with why (bad URL, cannot create the cache directory). */
int tier_open(const struct cfg *broker_cfg, const char *log_dir, struct uring *ur,
	      tier_wake_fn wake, void *wake_ctx, struct tier **out, char *why, size_t why_len);
/* Stops the threads (an upload in progress finishes its current object) and frees everything.
 * Every tier_part must have been closed and every slice released. Runs the ring briefly to
 * retire the eventfd read. */
void tier_close(struct tier *t);
const char *tier_url(const struct tier *t);

/* Per-topic settings the tier applies (from the topic's config over the broker's). */
struct tier_part_config {
	bool enabled;                   /* remote.storage.enable */
	int64_t retention_ms;           /* total retention over both tiers; -1 forever */
	int64_t retention_bytes;        /* -1 no limit */
};
/* What a partition's local log should keep given the topic settings: local.retention.* with
 * -2 meaning the total. */
void tier_local_retention(const struct cfg *topic, const struct cfg *broker, int64_t *ms,
			  int64_t *bytes);
void tier_part_config_from(const struct cfg *topic, const struct cfg *broker,
			   struct tier_part_config *out);

/* Registers a partition whose log was just opened in dir (blocking: lists dir). Closed segments
 * found there (every segment but the newest) are queued for upload unless the bucket's manifest
 * (loaded by an upload thread) already has them: startup reconciliation. Thread-safe, as is
 * tier_part_close: the broker's topic worker opens (and on failure closes) the tier parts of
 * partitions it creates before the reactor sees them. */
int tier_part_open(struct tier *t, const char *topic, const uint8_t topic_id[16], int32_t partition,
		   const char *dir, const struct tier_part_config *pc, struct tier_part **out);
/* The partition goes away (broker close, or topic deleted: delete_remote removes its objects and
 * manifest from the bucket, asynchronously, when strata.tier.delete.on.topic.delete). tp may be
 * NULL; it must not be used afterwards. */
void tier_part_close(struct tier_part *tp, bool delete_remote);
void tier_part_set_config(struct tier_part *tp, const struct tier_part_config *pc);

/* log hooks (reactor) */
void tier_part_segment_closed(struct tier_part *tp, const struct log_segment_info *info);
bool tier_part_deletable(struct tier_part *tp, int64_t base_offset);
/* Reactor, about once a second: what the local log holds (total retention counts both tiers). */
void tier_part_note_local(struct tier_part *tp, int64_t local_start, int64_t local_bytes);

/* Remote log start (the partition's reported log start when below the local one), or -1 when
 * the bucket holds nothing of it. Until the manifest is loaded: the start saved in the partition
 * directory ("tier-remote-start", written atomically with each published manifest), or -1. */
int64_t tier_part_start_offset(struct tier_part *tp);
/* True while the manifest has not been read from the bucket yet and no remote start was saved
 * in the partition directory by an earlier run (reads below the local start then wait; with a
 * saved start, tier_part_start_offset answers from it and tier_read returns TIER_PENDING). */
bool tier_part_loading(struct tier_part *tp);
/* DeleteRecords below the local log start: the remote start moves up, whole remote segments
 * below it leave the manifest and then the bucket. */
void tier_part_delete_records(struct tier_part *tp, int64_t new_start);

/* A cold read: whole batches from the remote segment holding offset (or the next one).
 * Returns KERR_NONE with len > 0, TIER_PENDING (woken later through the wake function),
 * KERR_OFFSET_OUT_OF_RANGE (offset below the remote start or past the remote end: the caller
 * continues at the local log), KERR_KAFKA_STORAGE_ERROR (damaged object, failing store). */
struct tier_slice {
	int fd;
	int64_t file_pos, len;
	int64_t first_offset, next_offset;
	void *ref_;                     /* released by tier_slice_release */
};
int tier_read(struct tier_part *tp, int64_t offset, int64_t max_bytes, bool min_one,
	      struct tier_slice *out);
void tier_slice_release(struct tier_slice *s);

/* ListOffsets by timestamp over the remote segments below below_offset (the local log start):
 * KERR_NONE with *offset_out (-1 when no remote record is that new: look in the local log),
 * TIER_PENDING, or KERR_KAFKA_STORAGE_ERROR. */
int tier_offset_for_timestamp(struct tier_part *tp, int64_t ts_ms, int64_t below_offset,
			      int64_t *offset_out, int64_t *ts_out);
/* The largest timestamp among remote segments below below_offset (-1 when none). */
int64_t tier_max_timestamp(struct tier_part *tp, int64_t below_offset);

/* The topic manifest (settings as "key=value\n" lines, partition count) is (re)written by an
 * upload thread; a deleted topic's is removed (strata.tier.delete.on.topic.delete). */
void tier_topic_update(struct tier *t, const char *topic, const uint8_t topic_id[16],
		       int32_t partitions, const char *config_text);
void tier_topic_deleted(struct tier *t, const char *topic, const uint8_t topic_id[16]);

/* Restore (CreateTopics with remote recovery, man/strata-bucket.5 RESTORE): what the bucket
 * holds of a topic, read from its topic manifest and each partition's manifest. BLOCKING
 * (bucket GETs): call it on a worker thread, never on the reactor. Returns 0; -ENOENT when the
 * bucket has no topic manifest of that name; -EBADMSG when a manifest is damaged or belongs to
 * another topic; another -errno when the bucket fails. why names the bucket key. */
struct tier_topic_info {
	uint8_t topic_id[16];
	int32_t partitions;
	char *config;                   /* the topic's own settings, "key=value\n" lines (malloc'd) */
	int64_t *remote_start;          /* per partition: remote log start, -1 when no remote segment */
	int64_t *remote_end;            /* per partition: offset after the last remote record (the
	                                   restored local log starts there; 0 with no manifest) */
};
int tier_read_topic(struct tier *t, const char *topic, struct tier_topic_info *out, char *why,
		    size_t why_len);
void tier_topic_info_free(struct tier_topic_info *ti);
/* Records a restored partition's remote range in its directory, as a published manifest does,
 * so that the partition reports the remote start before its manifest is loaded. Blocking. */
int tier_save_remote_range(const char *dir, int64_t start, int64_t end);

/* Reactor, about once a second: logs the upload backlog while there is one. */
void tier_tick(struct tier *t, int64_t now_ms);

struct tier_stats {
	int64_t segments_uploaded, bytes_uploaded, upload_errors;
	int64_t manifests_written, segments_expired, objects_deleted;
	int64_t backlog_segments, backlog_bytes;
	int64_t cold_reads, cold_bytes;
	int64_t cache_hits, cache_misses, downloads, download_bytes, corrupt_objects;
};
void tier_get_stats(struct tier *t, struct tier_stats *out);

#endif
