/* broker.h -- the broker's state: topics, their partitions' logs, their settings, the cluster
 * identity, all persisted under log.dirs. Knows nothing of the wire protocol; the Kafka API
 * handlers call it. Owned by the reactor thread.
 *
 * Topic lifecycle off the reactor: creating, growing, reconfiguring and deleting a topic does
 * blocking file work (metadata written and fsynced, partition directories, logs opened, files
 * removed) and a restore reads the bucket. While serving, the *_async calls validate and reserve on the
 * reactor, hand that work to one topic worker thread (a bounded queue), and finish on the
 * reactor (the topic inserted or removed, waiters called) when the worker's result comes back
 * through an eventfd read on the ring. The blocking calls without _async are for startup and
 * tests. */
#ifndef STRATA_BROKER_H
#define STRATA_BROKER_H

#include <stdbool.h>
#include <stdint.h>
#include <limits.h>

#include "strata/config.h"
#include "strata/log.h"
#include "strata/uring.h"

#define BROKER_TOPIC_NAME_MAX 249

struct topic;
struct topic_job;
struct broker_jobs;
struct pstate;
struct tier;
struct tier_part;
struct rwarm;

struct partition_waiter {           /* a parked fetch, woken when the partition's hw moves */
	struct partition_waiter *next, *prev;
	void (*wake)(struct partition_waiter *w);
};

struct partition {
	struct topic *topic;
	int32_t id;
	struct log *log;
	struct pstate *pstate;          /* idempotent producers' state (pstate.h) */
	struct tier_part *tier;         /* remote (bucket) state, NULL when not tiered (tier/tier.h) */
	struct rwarm *rwarm;            /* the broker's read warm-up pool (rwarm.h), or NULL */
	struct partition_waiter waiters; /* circular list head */
};

struct topic {
	char name[BROKER_TOPIC_NAME_MAX + 1];
	uint8_t id[16];                 /* topic id (UUID) */
	int32_t n_partitions;
	struct partition **parts;
	struct cfg cfg;                 /* the topic's own settings (set = overrides) */
	struct topic *hash_next;
	bool internal;                  /* __consumer_offsets and friends */
	struct topic_job *job;          /* partitions being added (broker.c), else NULL */
	struct topic_job *cfg_job;      /* the newest change of settings under way (broker.c) */
};

struct broker {
	struct uring *ur;
	struct cfg *conf;               /* the broker config (owned by the caller) */
	char log_dir[PATH_MAX];
	char meta_dir[PATH_MAX];        /* <log.dirs>/__strata: topic metadata */
	char cluster_id[32];            /* 22-char base64 UUID, as Kafka's */
	int32_t node_id;
	struct topic **buckets;
	uint32_t n_buckets, n_topics;
	int lock_fd;
	int64_t last_retention_ms, last_tick_ms;
	struct tier *tier;              /* tiered storage, NULL with strata.tier.url=none */
	struct broker_jobs *jobs;       /* the topic worker and its jobs (broker.c) */
	struct rwarm *rwarm;            /* closed-segment read warm-ups off the reactor (rwarm.h) */
};

/* Opens log.dirs (creating it), takes its lock, loads the cluster id and every topic,
 * recovering each partition's log. Blocking (startup). Returns 0 or -errno, why says what. */
int broker_open(struct broker **out, struct uring *ur, struct cfg *conf, char *why, size_t why_len);
/* Clean shutdown of every log (no append may be in flight). */
int broker_close(struct broker *b);

struct topic *broker_find_topic(struct broker *b, const char *name, size_t name_len);
struct topic *broker_find_topic_id(struct broker *b, const uint8_t id[16]);
struct partition *broker_find_partition(struct broker *b, const char *name, size_t name_len,
					int32_t partition);
/* Kafka's rules: 1..249 chars of [a-zA-Z0-9._-], not "." or "..". Returns 0 or -EINVAL. */
int broker_validate_topic_name(const char *name, size_t len, char *why, size_t why_len);

/* Creates a topic (partitions < 1 means num.partitions). topic_cfg may be NULL. Returns a
 * Kafka error: NONE, TOPIC_ALREADY_EXISTS, INVALID_TOPIC_EXCEPTION, INVALID_PARTITIONS,
 * INVALID_CONFIG, KAFKA_STORAGE_ERROR; why explains. BLOCKING (creates directories, fsyncs):
 * startup and tests only; validate_only does no I/O (any time). */
int broker_create_topic(struct broker *b, const char *name, size_t name_len, int32_t partitions,
			const struct cfg *topic_cfg, bool validate_only, struct topic **out,
			char *why, size_t why_len);
/* BLOCKING delete (tests); 0 or -errno. */
int broker_delete_topic(struct broker *b, struct topic *t);
/* BLOCKING unless validate_only (which does no I/O): a Kafka error with why. */
int broker_add_partitions(struct broker *b, struct topic *t, int32_t new_total, bool validate_only,
			  char *why, size_t why_len);
/* Replaces the topic's settings (already validated) and applies them to its logs. Blocking
 * (one small fsynced file). -EBUSY while partitions are being added to t or another change of
 * its settings is under way; -EIO when the file cannot be written (the old settings stay). */
int broker_set_topic_config(struct broker *b, struct topic *t, const struct cfg *topic_cfg);
/* Writes <log.dirs>/__strata/<name> atomically (temp file, fsync, rename, directory fsync):
 * small state of other modules next to the topic metadata. Blocking. 0 or -errno. */
int broker_write_meta_file(struct broker *b, const char *name, const char *data, size_t len);

/* --- the same, off the reactor ---------------------------------------------------------------- */

/* Given to an async call that accepted the operation (returned KERR_NONE): done runs exactly
 * once on the reactor, never inside the call that accepted it, at the latest inside
 * broker_close. kerr is KERR_NONE or the error, why its message ("" on success; both valid
 * during the call only). t is the topic created or grown (NULL after a delete or an error),
 * valid during the call: look it up again by name later, it may be deleted meanwhile. done
 * may free the memory holding w. */
struct broker_waiter {
	void (*done)(struct broker_waiter *w, int kerr, struct topic *t, const char *why);
	struct broker_waiter *next_;    /* internal */
};

/* What a topic to create looks like. */
struct broker_topic_spec {
	int32_t partitions;             /* < 1: num.partitions, or with remote_recovery the bucket's
	                                   count (a count given must equal the bucket's) */
	const struct cfg *cfg;          /* the topic's own settings (validated), copied; may be NULL */
	bool remote_recovery;           /* recreate from the tier bucket (man/strata-bucket.5,
	                                   RESTORE): topic id, partition count and settings from its
	                                   topic manifest (cfg's set keys override), each partition's
	                                   local log starting at its remote end */
};

/* The checks of a creation, without I/O: name, existing or reserved name, partition count,
 * remote recovery possible (tiering on, not an internal topic). A Kafka error with why. */
int broker_check_new_topic(struct broker *b, const char *name, size_t name_len,
			   const struct broker_topic_spec *spec, char *why, size_t why_len);
/* Checks, reserves the name (a concurrent creation of it gets TOPIC_ALREADY_EXISTS), queues
 * the creation. KERR_NONE: w->done runs when the topic is there (inserted and visible) or the
 * creation failed (KAFKA_STORAGE_ERROR; with remote recovery also UNKNOWN_TOPIC_OR_PARTITION
 * when the bucket has no topic manifest, INVALID_PARTITIONS, INVALID_CONFIG). Any other
 * return: refused now (w never runs): the checks' errors, THROTTLING_QUOTA_EXCEEDED when
 * BROKER_JOBS_MAX operations are under way, REQUEST_TIMED_OUT while shutting down. w may be
 * NULL (nobody waits). */
#define BROKER_JOBS_MAX 1024
int broker_create_topic_async(struct broker *b, const char *name, size_t name_len,
			      const struct broker_topic_spec *spec, struct broker_waiter *w,
			      char *why, size_t why_len);
/* True when name is being created or deleted: w->done then runs when that ends (the topic is
 * then visible, or not). False: nothing under way, w untouched. */
bool broker_wait_topic(struct broker *b, const char *name, size_t name_len, struct broker_waiter *w);
/* Deletes t: it leaves the topic table now (lookups miss it, parked fetches are woken, its
 * logs are let go), its metadata and directories are removed by the worker, then w->done
 * runs. KERR_NONE, or REASSIGNMENT_IN_PROGRESS (partitions being added), THROTTLING_QUOTA_-
 * EXCEEDED; t stays then. */
int broker_delete_topic_async(struct broker *b, struct topic *t, struct broker_waiter *w,
			      char *why, size_t why_len);
/* Grows t to new_total partitions (the checks of broker_add_partitions first). The new
 * partitions appear when w->done runs. REASSIGNMENT_IN_PROGRESS while partitions are being
 * added to t or its settings are being changed. */
int broker_add_partitions_async(struct broker *b, struct topic *t, int32_t new_total,
				struct broker_waiter *w, char *why, size_t why_len);
/* Replaces t's settings (already validated, copied): the worker writes the metadata file; once
 * it is durable the settings take effect on the reactor (logs, tiering, the bucket's topic
 * manifest), then w->done runs with t (kerr KERR_NONE). Changes of one topic are queued and take
 * effect in the order accepted; a later one builds on the earlier ones (see
 * broker_topic_config_next), so when a change fails (UNKNOWN_SERVER_ERROR: not written) the ones
 * queued behind it fail too and the settings stay as before. w->done may also report
 * UNKNOWN_TOPIC_OR_PARTITION (t deleted meanwhile) or REQUEST_TIMED_OUT (shutdown). Refused now
 * (w never runs): REASSIGNMENT_IN_PROGRESS while partitions are being added to t,
 * THROTTLING_QUOTA_EXCEEDED, REQUEST_TIMED_OUT. */
int broker_set_topic_config_async(struct broker *b, struct topic *t, const struct cfg *topic_cfg,
				  struct broker_waiter *w, char *why, size_t why_len);
/* The settings the next change of t starts from: those of the newest change accepted and not
 * finished, else t->cfg (in force). Valid until the ring runs. */
const struct cfg *broker_topic_config_next(const struct topic *t);
/* Shutdown: operations queued and not started yet end now with REQUEST_TIMED_OUT (their
 * waiters run from the ring soon after), new ones are refused; one already running finishes.
 * Deletions still run (they are short, and their topic already left the table). */
void broker_cancel_jobs(struct broker *b);
/* The log settings a topic's partitions use: topic overrides over broker defaults. */
void broker_log_config(const struct broker *b, const struct topic *t, struct log_config *out);

/* Applies changed broker defaults to every topic's logs (SIGHUP reload). */
void broker_reapply_config(struct broker *b);
/* Calls fn for each topic (order unspecified). */
void broker_foreach_topic(struct broker *b, void (*fn)(void *ctx, struct topic *t), void *ctx);
/* Periodic work (about once a second): segment.ms rolls, flush.ms, retention. */
void broker_tick(struct broker *b, int64_t now_ms);
/* Wakes every parked fetch on p (called from the log's hw_advanced hook). */
void broker_wake_partition(struct partition *p);
void partition_waiter_add(struct partition *p, struct partition_waiter *w);
/* The partition's log start as clients see it: the remote (bucket) start when the bucket holds
 * older records than the local log, else the local log start. */
int64_t broker_partition_start_offset(struct partition *p);
/* DeleteRecords over both tiers: the local log start and the remote start move up to new_start
 * (<= high watermark). Returns KERR_NONE or KERR_OFFSET_OUT_OF_RANGE. */
int broker_delete_records(struct partition *p, int64_t new_start);
void partition_waiter_remove(struct partition_waiter *w);

#endif
