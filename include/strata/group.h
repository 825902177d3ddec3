/* group.h -- the consumer group coordinator: Kafka's classic rebalance protocol (the
 * ClassicGroup state machine: Empty, PreparingRebalance, CompletingRebalance, Stable, Dead;
 * static membership; session, rebalance and pending-sync timeouts on uring timers) and the
 * committed offsets store, persisted in the internal topic __consumer_offsets with Kafka's own
 * record formats and replayed at start.
 *
 * Knows nothing of the wire protocol: the Kafka API handlers (src/kafka_group.c) decode
 * requests, call these functions and encode what the callbacks report. Requests that wait
 * (JoinGroup, SyncGroup, OffsetCommit until its fsync, DeleteGroups, OffsetDelete) take a
 * done callback that runs exactly once, possibly before the call returns, on the reactor
 * thread. Callbacks must not call back into the coordinator. Strings in result structs are
 * valid only during the callback. Not thread-safe: one reactor owns the coordinator.
 *
 * Until the log engine compacts, __consumer_offsets is bounded by snapshots: a partition whose
 * records outnumber twice its live keys by offsets.topic.snapshot.records gets its live state
 * rewritten (after its writes in flight are done; new ones wait behind it) and, once that is
 * durable, its log start moved past everything older (log_delete_records). Clients may read
 * the topic; Produce refuses to write it (group_is_internal_topic). */
#ifndef STRATA_GROUP_H
#define STRATA_GROUP_H

#include <stdbool.h>
#include <stdint.h>

#include "strata/broker.h"
#include "strata/config.h"
#include "strata/kio.h"
#include "strata/uring.h"

#define GROUP_OFFSETS_TOPIC "__consumer_offsets"

struct group_coordinator;

/* Opens the coordinator and replays __consumer_offsets when it exists (blocking: startup).
 * conf is read live (dynamic settings). Returns 0 or -errno, why says what. */
int group_coordinator_open(struct group_coordinator **out, struct uring *ur, struct broker *b,
			   const struct cfg *conf, char *why, size_t why_len);
/* Shutdown: parked JoinGroup/SyncGroup requests are answered NOT_COORDINATOR, timers stop;
 * later requests are refused with NOT_COORDINATOR. Writes in flight still complete. */
void group_coordinator_stop(struct group_coordinator *gc);
/* True when no write of the coordinator is in flight (the logs may then be closed). */
bool group_coordinator_idle(const struct group_coordinator *gc);
void group_coordinator_free(struct group_coordinator *gc);

/* Creates __consumer_offsets when missing (FindCoordinator does, as Kafka). Kafka error. */
int group_coordinator_ensure_topic(struct group_coordinator *gc);
/* The __consumer_offsets partition of a group: Kafka's abs(String.hashCode) % partitions. */
int32_t group_partition_for(const char *group_id, size_t len, int32_t n_partitions);
/* Kafka's internal topics, to which clients may not produce. */
bool group_is_internal_topic(const char *name, size_t len);

/* --- membership ------------------------------------------------------------------------- */

struct group_protocol {
	struct kstr name;
	struct kbytes metadata;
};

struct group_join_member {
	const char *member_id;
	const char *instance_id;        /* NULL for dynamic members */
	struct kbytes metadata;         /* for the selected protocol */
};

struct group_join_result {
	int16_t error;
	int32_t generation;             /* -1 with an error */
	const char *protocol_type;      /* NULL when none */
	const char *protocol_name;      /* NULL when none */
	const char *leader;             /* "" when none */
	const char *member_id;          /* the member's (possibly new) id, "" when unknown */
	bool skip_assignment;
	const struct group_join_member *members; /* the leader's view; n_members 0 for followers */
	int32_t n_members;
};

struct group_join_req {
	struct kstr group_id, member_id, instance_id; /* instance_id null: dynamic member */
	struct kstr client_id, client_host, protocol_type;
	int32_t session_timeout_ms, rebalance_timeout_ms;
	const struct group_protocol *protocols;
	int32_t n_protocols;
	bool require_known_member_id;   /* JoinGroup v4+: MEMBER_ID_REQUIRED on first join */
	bool supports_skip_assignment;  /* JoinGroup v9+ */
	void (*done)(void *ctx, const struct group_join_result *r);
	void *ctx;
};
void group_join(struct group_coordinator *gc, const struct group_join_req *req);

struct group_assignment {
	struct kstr member_id;
	struct kbytes assignment;
};

struct group_sync_result {
	int16_t error;
	const char *protocol_type, *protocol_name; /* NULL unless NONE */
	struct kbytes assignment;
};

struct group_sync_req {
	struct kstr group_id, member_id, instance_id;
	struct kstr protocol_type, protocol_name; /* null: not checked (SyncGroup < v5) */
	int32_t generation;
	const struct group_assignment *assignments;
	int32_t n_assignments;
	void (*done)(void *ctx, const struct group_sync_result *r);
	void *ctx;
};
void group_sync(struct group_coordinator *gc, const struct group_sync_req *req);

/* Returns the Heartbeat error. */
int group_heartbeat(struct group_coordinator *gc, struct kstr group_id, struct kstr member_id,
		    struct kstr instance_id, int32_t generation);

struct group_leave_member {
	struct kstr member_id, instance_id;
	int16_t error;                  /* out */
};
/* Removes the members (an empty member id with an instance id removes that static member).
 * Returns the top-level error; per-member errors go into members[i].error. */
int group_leave(struct group_coordinator *gc, struct kstr group_id, struct group_leave_member *members,
		int32_t n_members);

/* --- offsets ---------------------------------------------------------------------------- */

struct group_commit_part {
	struct kstr topic;
	int32_t partition;
	int64_t offset;
	int32_t leader_epoch;           /* -1 when unknown */
	struct kstr metadata;           /* null is stored as "" */
	int64_t commit_ts_ms;           /* -1: now (only OffsetCommit v1 sends one) */
	int16_t error;                  /* out */
};

struct group_commit_req {
	struct kstr group_id, member_id, instance_id;
	int32_t generation;             /* -1: simple consumer / admin commit */
	int64_t retention_ms;           /* OffsetCommit v2-4; -1: the broker's offsets.retention */
	struct group_commit_part *parts;
	int32_t n_parts;
	/* Runs once when every part has its error set: after the records are durable. */
	void (*done)(void *ctx);
	void *ctx;
};
void group_commit_offsets(struct group_coordinator *gc, struct group_commit_req *req);

struct group_offset {
	const char *topic;
	int32_t partition;
	int64_t offset;                 /* -1 when none */
	int32_t leader_epoch;
	const char *metadata;
};
/* Group-level check for OffsetFetch: KERR_NONE, INVALID_GROUP_ID, NOT_COORDINATOR. Unknown
 * groups are fine (no offsets). */
int group_fetch_check(struct group_coordinator *gc, struct kstr group_id);
/* The committed offset of one partition (offset -1 and metadata "" when none). */
void group_fetch_offset(struct group_coordinator *gc, struct kstr group_id, struct kstr topic,
			int32_t partition, struct group_offset *out);
/* Calls fn for every committed offset of the group, grouped by topic (all partitions of a
 * topic consecutively). */
void group_foreach_offset(struct group_coordinator *gc, struct kstr group_id,
			  void (*fn)(void *ctx, const struct group_offset *o), void *ctx);

struct group_offset_delete_part {
	struct kstr topic;
	int32_t partition;
	int16_t error;                  /* out */
};
/* OffsetDelete: returns the top-level error now; when KERR_NONE, done runs once the
 * tombstones are durable (parts' errors set). When not KERR_NONE, done never runs. */
int group_delete_offsets(struct group_coordinator *gc, struct kstr group_id,
			 struct group_offset_delete_part *parts, int32_t n_parts,
			 void (*done)(void *ctx), void *ctx);

/* DeleteGroups of one group: done(ctx, error) runs once (after the tombstones are durable). */
void group_delete(struct group_coordinator *gc, struct kstr group_id,
		  void (*done)(void *ctx, int16_t error), void *ctx);

/* --- listing, describing, lag ----------------------------------------------------------- */

struct group_listing {
	const char *group_id;
	const char *protocol_type;      /* "" when none */
	const char *state;              /* "Empty", "Stable", ... */
};
/* Calls fn for every live group (not Dead). */
void group_foreach(struct group_coordinator *gc, void (*fn)(void *ctx, const struct group_listing *g),
		   void *ctx);

struct group_member_summary {
	const char *member_id, *instance_id, *client_id, *client_host;
	struct kbytes metadata;         /* empty unless Stable */
	struct kbytes assignment;       /* empty unless Stable */
};
struct group_summary {
	const char *state;              /* "Dead" for unknown groups */
	const char *protocol_type;      /* "" when none */
	const char *protocol_data;      /* the protocol name when Stable, else "" */
	int32_t generation;
	const char *leader;
	int32_t n_members;
};
/* DescribeGroups: fills s (KERR_NONE; an unknown group is "Dead") and calls member_fn for each
 * member. Returns a Kafka error (INVALID_GROUP_ID, NOT_COORDINATOR). */
int group_describe(struct group_coordinator *gc, struct kstr group_id, struct group_summary *s,
		   void (*member_fn)(void *ctx, const struct group_member_summary *m), void *ctx);

struct group_lag_row {
	const char *topic;
	int32_t partition;
	int64_t committed;
	int64_t log_end;                /* the partition's high watermark; -1 if it is gone */
	int64_t lag;                    /* log_end - committed (>= 0); -1 if unknown */
};
/* Consumer lag of every committed partition of a group (for the CLI and metrics). Returns
 * KERR_NONE or KERR_GROUP_ID_NOT_FOUND. */
int group_lag(struct group_coordinator *gc, const char *group_id,
	      void (*fn)(void *ctx, const struct group_lag_row *row), void *ctx);

/* --- maintenance and observation -------------------------------------------------------- */

/* Expires committed offsets as Kafka does (offsets.retention.minutes after an empty group
 * became empty, or after the commit for simple groups), writes their tombstones and removes
 * empty groups without offsets. Runs from the coordinator's own timer; exposed for tests.
 * Returns the number of offsets expired. */
int group_expire_offsets(struct group_coordinator *gc, int64_t now_ms);
/* Rewrites the live state of every __consumer_offsets partition that needs it (see
 * offsets.topic.snapshot.records; force: all partitions) and, once durable, moves each log
 * start past the records the rewrite supersedes. Returns the snapshots started. */
int group_snapshot(struct group_coordinator *gc, bool force);

struct group_stats {
	int64_t groups;
	int64_t members;
	int64_t offsets;                /* committed offsets held */
	int64_t rebalances;             /* join phases completed */
	int64_t commits;                /* partitions committed durably */
	int64_t snapshots;              /* partition snapshots made durable */
	int64_t expired_offsets;
	int64_t writes_inflight;
	int64_t replayed_records;       /* records applied at open */
};
void group_get_stats(const struct group_coordinator *gc, struct group_stats *out);
/* The group's state name and generation ("Dead", -1 when unknown), for tests. */
const char *group_state_of(struct group_coordinator *gc, const char *group_id, int32_t *generation);

#endif
