/* broker.h -- the broker's state: topics, their partitions' logs, their settings, the cluster
 * identity, all persisted under log.dirs. Knows nothing of the wire protocol; the Kafka API
 * handlers call it. Owned by the reactor thread. */
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
struct pstate;
struct tier;
struct tier_part;

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
 * INVALID_CONFIG, KAFKA_STORAGE_ERROR; why explains. Blocking (creates directories). */
int broker_create_topic(struct broker *b, const char *name, size_t name_len, int32_t partitions,
			const struct cfg *topic_cfg, bool validate_only, struct topic **out,
			char *why, size_t why_len);
int broker_delete_topic(struct broker *b, struct topic *t);
int broker_add_partitions(struct broker *b, struct topic *t, int32_t new_total, bool validate_only,
			  char *why, size_t why_len);
/* Replaces the topic's settings (already validated) and applies them to its logs. */
int broker_set_topic_config(struct broker *b, struct topic *t, const struct cfg *topic_cfg);
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
