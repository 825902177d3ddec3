/* group.c -- the consumer group coordinator (group.h): Apache Kafka's classic group state
 * machine (GroupCoordinator + GroupMetadata, followed decision by decision: the comments name
 * the Kafka function a piece mirrors), the committed offsets, and their persistence in
 * __consumer_offsets as Kafka's own records (OffsetCommitKey/Value, GroupMetadataKey/Value), in
 * RecordBatch v2 built here and appended with log_append; replayed at open.
 *
 * Owns every group, member, pending member and committed offset in memory, their timers, and
 * every write to __consumer_offsets. Knows nothing of the wire: src/kafka_group.c decodes
 * requests and encodes what the done callbacks report. Runs on the reactor thread and never
 * blocks, except group_coordinator_open (replay) and the one-time creation of the topic.
 *
 * Durability: state changes that Kafka makes only after its append (committed offsets, a
 * group's stored metadata) are applied here only once log_append reports them durable; the
 * in-memory state Kafka changes before writing (offset deletion, expiry, group deletion) is
 * changed first here too.
 *
 * Bounding __consumer_offsets without compaction ("snapshots"): every partition counts the
 * records from its log start and its live keys (committed offsets + stored group records).
 * Once records > 2 * live + offsets.topic.snapshot.records, new writes to that partition queue
 * up until its writes in flight are done (memory then equals the log), the log is rolled, the
 * whole live state is appended as one write, queued writes follow it, and once the snapshot is
 * durable the log start moves to its first offset (log_delete_records), which deletes every
 * older segment. A replay from the new log start sees exactly the live state, then later
 * writes in order. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "strata/batch.h"
#include "strata/common.h"
#include "strata/compress.h"
#include "strata/group.h"
#include "strata/kerr.h"
#include "strata/slog.h"

#define GROUP_NEW_MEMBER_JOIN_TIMEOUT_MS (5 * 60 * 1000) /* Kafka's NewMemberJoinTimeoutMs */
#define GROUP_BATCH_MAX_BYTES (512 * 1024)  /* snapshot batches (commits are one batch) */
#define GROUP_REPLAY_CHUNK_BYTES (1 << 20)
#define GROUP_REPLAY_INFLATE_MAX_BYTES (256u << 20)
#define GROUP_CLIENT_ID_PREFIX_MAX 200      /* of a generated member id */
#define GROUP_BUCKETS_MIN 64u
#define GROUP_CONSUMER_PROTOCOL "consumer"

enum gstate { GS_EMPTY, GS_PREPARING, GS_COMPLETING, GS_STABLE, GS_DEAD };
static const char *const gstate_names[] = { "Empty", "PreparingRebalance", "CompletingRebalance",
					    "Stable", "Dead" };

/* An owned string with its length (wire strings may hold any byte); p is NUL-terminated too,
 * NULL for the null string. */
struct gstr {
	char *p;
	int32_t len;
};

struct gproto {
	struct gstr name;
	uint8_t *meta;
	int32_t meta_len;
};

struct ggroup;

struct gmember {
	struct ggroup *g;
	struct gstr id, instance_id, client_id, client_host, protocol_type;
	int32_t session_timeout_ms, rebalance_timeout_ms;
	struct gproto *protos;
	int32_t n_protos;
	uint8_t *assignment;
	int32_t assignment_len;
	bool is_new;
	bool pending_sync;              /* joined this generation, SyncGroup not seen yet */
	bool join_skip_ok;              /* the parked JoinGroup understands skip_assignment (v9+) */
	/* Parked requests: awaiting join / sync iff set. */
	void (*join_done)(void *ctx, const struct group_join_result *r);
	void *join_ctx;
	void (*sync_done)(void *ctx, const struct group_sync_result *r);
	void *sync_ctx;
	struct uring_timer hb_timer;    /* session (or new-member) expiration */
};

struct gpending {                       /* a member id handed out with MEMBER_ID_REQUIRED */
	struct ggroup *g;
	struct gstr id;
	struct uring_timer timer;
};

struct goffset {
	struct gstr topic;
	int32_t partition;
	int32_t leader_epoch;
	int64_t offset;
	int64_t commit_ts_ms;
	int64_t expire_ts_ms;           /* -1: none (written as OffsetCommitValue v3) */
	struct gstr metadata;
};

struct ggroup {
	struct group_coordinator *gc;
	struct ggroup *hash_next;
	struct gstr id;
	uint32_t hash;
	int32_t part;                   /* its __consumer_offsets partition */
	enum gstate state;
	int64_t state_ts_ms;            /* -1 unknown */
	int32_t generation;
	struct gstr protocol_type;      /* null: none */
	struct gstr protocol_name;      /* null: none */
	struct gmember *leader;
	struct gmember **members;       /* in join order */
	int32_t n_members, cap_members;
	int32_t n_awaiting_join;
	struct gpending **pending;
	int32_t n_pending, cap_pending;
	bool new_member_added;
	bool join_initial;              /* the join timer is an InitialDelayedJoin */
	int32_t join_delay_ms, join_remaining_ms;
	struct uring_timer join_timer;
	struct uring_timer sync_timer;
	int32_t sync_generation;
	struct goffset *offsets;        /* sorted by (topic, partition) */
	int32_t n_offsets, cap_offsets;
	uint8_t *stored;                /* the last durable GroupMetadataValue, NULL: none */
	int32_t stored_len;
	int32_t refs;                   /* writes in flight + temporary holds */
	bool in_hash;
};

enum gw_kind { GW_COMMIT, GW_STORE, GW_TOMBSTONES, GW_SNAPSHOT };
enum gw_store_why { STORE_SYNC, STORE_STATIC_JOIN, STORE_EMPTY };

struct gw_assign {
	struct gstr member_id;
	uint8_t *p;
	int32_t len;
};

struct gwrite {
	struct log_append a;
	struct group_coordinator *gc;
	struct ggroup *g;               /* referenced; NULL for snapshots */
	int32_t part;
	enum gw_kind kind;
	uint8_t *buf;
	size_t len;
	int32_t n_records;
	struct gwrite *next;            /* partition queue while a snapshot waits */
	int64_t now_ms;
	/* GW_COMMIT */
	struct group_commit_req *commit;
	/* GW_STORE */
	enum gw_store_why why;
	int32_t generation;
	uint8_t *value;
	int32_t value_len;
	struct gw_assign *assign;
	int32_t n_assign;
	struct gstr member_id, old_leader;
	bool skip_ok;
	/* GW_TOMBSTONES */
	bool drops_stored;
	void (*del_done)(void *ctx, int16_t error);
	void *del_ctx;
	void (*odel_done)(void *ctx);
	void *odel_ctx;
	struct group_offset_delete_part *oparts;
	int32_t n_oparts;
};

struct gpart {
	int64_t records;                /* records from the log start */
	int64_t live;                   /* live keys */
	int32_t inflight;               /* writes appended, not done */
	bool snap_waiting, snap_inflight;
	int64_t delete_below;           /* a durable snapshot's first offset, or -1 */
	struct gwrite *q_head, *q_tail; /* writes held while a snapshot waits */
};

struct group_coordinator {
	struct uring *ur;
	struct broker *b;
	const struct cfg *conf;
	struct topic *topic;            /* __consumer_offsets once it exists */
	int32_t n_parts;                /* fixed when the topic is adopted or created */
	struct gpart *parts;
	struct ggroup **buckets;
	uint32_t n_buckets, n_groups;
	struct uring_timer expire_timer, maint_timer;
	bool stopped;
	int64_t n_members, n_offsets;
	struct group_stats stats;
};

/* --- small helpers ---------------------------------------------------------------------- */

static int gstr_set(struct gstr *s, const char *p, int32_t len)
{
	s->p = NULL;
	s->len = -1;
	if (len < 0)
		return 0;
	char *c = malloc((size_t)len + 1);
	if (!c)
		return -ENOMEM;
	if (len)
		memcpy(c, p, (size_t)len);
	c[len] = 0;
	s->p = c;
	s->len = len;
	return 0;
}

static int gstr_setk(struct gstr *s, struct kstr k) { return gstr_set(s, k.p, k.len); }

static void gstr_free(struct gstr *s)
{
	free(s->p);
	s->p = NULL;
	s->len = -1;
}

static bool gstr_eqk(const struct gstr *s, struct kstr k)
{
	if (s->len != k.len)
		return false;
	return s->len <= 0 || memcmp(s->p, k.p, (size_t)s->len) == 0;
}

static bool gstr_eq(const struct gstr *a, const struct gstr *b)
{
	return a->len == b->len && (a->len <= 0 || memcmp(a->p, b->p, (size_t)a->len) == 0);
}

static struct kstr gstr_k(const struct gstr *s) { return (struct kstr){ s->p, s->len }; }

static bool kstr_null_or_empty(struct kstr k) { return k.len <= 0; }

static int64_t cfg_ms(const struct group_coordinator *gc, int id) { return cfg_int(gc->conf, id); }

static void gtimer_arm(struct group_coordinator *gc, struct uring_timer *t, int64_t ms)
{
	if (!gc->stopped)
		uring_timer_arm(gc->ur, t, ms);
}

static uint32_t fnv1a(const char *p, int32_t len)
{
	uint32_t h = 2166136261u;
	for (int32_t i = 0; i < len; i++) {
		h ^= (uint8_t)p[i];
		h *= 16777619u;
	}
	return h;
}

/* Java's String.hashCode over the UTF-16 code units of the UTF-8 bytes (malformed bytes
 * count as U+FFFD, as Java's decoder replaces them). */
static int32_t java_string_hash(const char *s, size_t len)
{
	uint32_t h = 0;
	const uint8_t *p = (const uint8_t *)s, *end = p + len;
	while (p < end) {
		uint32_t cp;
		size_t n;
		if (p[0] < 0x80) {
			cp = p[0];
			n = 1;
		} else if ((p[0] & 0xe0) == 0xc0 && p + 1 < end && (p[1] & 0xc0) == 0x80 && p[0] >= 0xc2) {
			cp = ((uint32_t)(p[0] & 0x1f) << 6) | (p[1] & 0x3f);
			n = 2;
		} else if ((p[0] & 0xf0) == 0xe0 && p + 2 < end && (p[1] & 0xc0) == 0x80 &&
			   (p[2] & 0xc0) == 0x80) {
			cp = ((uint32_t)(p[0] & 0x0f) << 12) | ((uint32_t)(p[1] & 0x3f) << 6) | (p[2] & 0x3f);
			n = 3;
			if (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)) {
				cp = 0xfffd;
				n = 1;
			}
		} else if ((p[0] & 0xf8) == 0xf0 && p + 3 < end && (p[1] & 0xc0) == 0x80 &&
			   (p[2] & 0xc0) == 0x80 && (p[3] & 0xc0) == 0x80) {
			cp = ((uint32_t)(p[0] & 0x07) << 18) | ((uint32_t)(p[1] & 0x3f) << 12) |
			     ((uint32_t)(p[2] & 0x3f) << 6) | (p[3] & 0x3f);
			n = 4;
			if (cp < 0x10000 || cp > 0x10ffff) {
				cp = 0xfffd;
				n = 1;
			}
		} else {
			cp = 0xfffd;
			n = 1;
		}
		if (cp >= 0x10000) {
			cp -= 0x10000;
			h = 31 * h + (0xd800 + (cp >> 10));
			h = 31 * h + (0xdc00 + (cp & 0x3ff));
		} else {
			h = 31 * h + cp;
		}
		p += n;
	}
	return (int32_t)h;
}

int32_t group_partition_for(const char *group_id, size_t len, int32_t n_partitions)
{
	if (n_partitions <= 0)
		return 0;
	int32_t h = java_string_hash(group_id, len);
	int32_t a = h == INT32_MIN ? 0 : (h < 0 ? -h : h); /* Kafka's Utils.abs */
	return a % n_partitions;
}

bool group_is_internal_topic(const char *name, size_t len)
{
	static const char txn[] = "__transaction_state";
	return (len == sizeof GROUP_OFFSETS_TOPIC - 1 && memcmp(name, GROUP_OFFSETS_TOPIC, len) == 0) ||
	       (len == sizeof txn - 1 && memcmp(name, txn, len) == 0);
}

/* Kafka's mappings of append errors (GroupMetadataManager). */
static int16_t commit_error(int kerr)
{
	switch (kerr) {
	case KERR_NONE: return KERR_NONE;
	case KERR_UNKNOWN_TOPIC_OR_PARTITION:
	case KERR_NOT_ENOUGH_REPLICAS: return KERR_COORDINATOR_NOT_AVAILABLE;
	case KERR_NOT_LEADER_OR_FOLLOWER:
	case KERR_KAFKA_STORAGE_ERROR: return KERR_NOT_COORDINATOR;
	case KERR_MESSAGE_TOO_LARGE:
	case KERR_RECORD_LIST_TOO_LARGE:
	case KERR_INVALID_FETCH_SIZE: return KERR_INVALID_COMMIT_OFFSET_SIZE;
	default: return (int16_t)kerr;
	}
}

static int16_t store_error(int kerr)
{
	switch (kerr) {
	case KERR_NONE: return KERR_NONE;
	case KERR_UNKNOWN_TOPIC_OR_PARTITION:
	case KERR_NOT_ENOUGH_REPLICAS: return KERR_COORDINATOR_NOT_AVAILABLE;
	case KERR_NOT_LEADER_OR_FOLLOWER:
	case KERR_KAFKA_STORAGE_ERROR: return KERR_NOT_COORDINATOR;
	case KERR_REQUEST_TIMED_OUT: return KERR_REBALANCE_IN_PROGRESS;
	case KERR_MESSAGE_TOO_LARGE:
	case KERR_RECORD_LIST_TOO_LARGE:
	case KERR_INVALID_FETCH_SIZE: return KERR_UNKNOWN_SERVER_ERROR;
	default: return (int16_t)kerr;
	}
}

/* --- record batches ------------------------------------------------------------------------ */

/* Builds one or more RecordBatch v2 (uncompressed, CreateTime, no producer) of keyed records. */
struct gbuild {
	struct kw w;
	struct kw rec;
	size_t batch_at;                /* offset of the open batch in w, SIZE_MAX: none */
	int32_t batch_count;
	int32_t total;
	int64_t ts_ms;
	size_t max_batch_bytes;
};

static void gb_init(struct gbuild *b, int64_t ts_ms, size_t max_batch_bytes)
{
	kw_init(&b->w, 1024);
	kw_init(&b->rec, 256);
	b->batch_at = SIZE_MAX;
	b->batch_count = 0;
	b->total = 0;
	b->ts_ms = ts_ms;
	b->max_batch_bytes = max_batch_bytes;
}

static void gb_close_batch(struct gbuild *b)
{
	if (b->batch_at == SIZE_MAX || b->w.err)
		return;
	uint8_t *p = b->w.p + b->batch_at;
	size_t size = b->w.len - b->batch_at;
	st_put_be64(p + BATCH_OFF_BASE_OFFSET, 0);
	st_put_be32(p + BATCH_OFF_LENGTH, (uint32_t)(size - BATCH_LOG_OVERHEAD));
	st_put_be32(p + BATCH_OFF_LEADER_EPOCH, 0);
	p[BATCH_OFF_MAGIC] = BATCH_MAGIC_V2;
	st_put_be16(p + BATCH_OFF_ATTRIBUTES, 0);
	st_put_be32(p + BATCH_OFF_LAST_OFFSET_DELTA, (uint32_t)(b->batch_count - 1));
	st_put_be64(p + BATCH_OFF_BASE_TIMESTAMP, (uint64_t)b->ts_ms);
	st_put_be64(p + BATCH_OFF_MAX_TIMESTAMP, (uint64_t)b->ts_ms);
	st_put_be64(p + BATCH_OFF_PRODUCER_ID, UINT64_MAX);          /* -1 */
	st_put_be16(p + BATCH_OFF_PRODUCER_ID + 8, UINT16_MAX);      /* producer epoch -1 */
	st_put_be32(p + BATCH_OFF_PRODUCER_ID + 10, UINT32_MAX);     /* base sequence -1 */
	st_put_be32(p + BATCH_OFF_RECORD_COUNT, (uint32_t)b->batch_count);
	st_put_be32(p + BATCH_OFF_CRC, batch_compute_crc(p, size));
	b->batch_at = SIZE_MAX;
	b->batch_count = 0;
}

/* val == NULL: a tombstone. */
static void gb_add(struct gbuild *b, const struct kw *key, const struct kw *val)
{
	if (key->err || (val && val->err)) {
		kw_fail(&b->w, -EINVAL);
		return;
	}
	size_t est = key->len + (val ? val->len : 0) + 32;
	if (b->batch_at != SIZE_MAX && b->w.len - b->batch_at + est > b->max_batch_bytes)
		gb_close_batch(b);
	if (b->batch_at == SIZE_MAX)
		b->batch_at = kw_reserve(&b->w, BATCH_HDR_SIZE);
	kw_reset(&b->rec);
	kw_i8(&b->rec, 0);                              /* attributes */
	kw_varlong(&b->rec, 0);                         /* timestamp delta */
	kw_varint(&b->rec, b->batch_count);             /* offset delta */
	kw_varint(&b->rec, (int32_t)key->len);
	kw_raw(&b->rec, key->p, key->len);
	if (val) {
		kw_varint(&b->rec, (int32_t)val->len);
		kw_raw(&b->rec, val->p, val->len);
	} else {
		kw_varint(&b->rec, -1);
	}
	kw_varint(&b->rec, 0);                          /* headers */
	if (b->rec.err) {
		kw_fail(&b->w, b->rec.err);
		return;
	}
	kw_varint(&b->w, (int32_t)b->rec.len);
	kw_raw(&b->w, b->rec.p, b->rec.len);
	b->batch_count++;
	b->total++;
}

/* Returns 0 with the batches (malloc'd) or -errno; nothing when no record was added. */
static int gb_finish(struct gbuild *b, uint8_t **out, size_t *len, int32_t *count)
{
	gb_close_batch(b);
	kw_free(&b->rec);
	*out = NULL;
	*len = 0;
	*count = b->total;
	if (b->w.err) {
		int err = b->w.err;
		kw_free(&b->w);
		return err;
	}
	if (b->total == 0) {
		kw_free(&b->w);
		return 0;
	}
	*out = kw_detach(&b->w, len);
	return *out ? 0 : -ENOMEM;
}

static void enc_offset_key(struct kw *w, struct kstr group, struct kstr topic, int32_t partition)
{
	kw_reset(w);
	kw_i16(w, 1);
	kw_string(w, group);
	kw_string(w, topic);
	kw_i32(w, partition);
}

static void enc_group_key(struct kw *w, struct kstr group)
{
	kw_reset(w);
	kw_i16(w, 2);
	kw_string(w, group);
}

/* OffsetCommitValue: v1 when an explicit expiry is set (OffsetCommit v2-4 retention), else v3,
 * as Kafka (IBP >= 2.1) writes them. */
static void enc_offset_value(struct kw *w, int64_t offset, int32_t leader_epoch, struct kstr metadata,
			     int64_t commit_ts_ms, int64_t expire_ts_ms)
{
	kw_reset(w);
	if (metadata.len < 0)
		metadata = KSTR_LIT("");
	if (expire_ts_ms >= 0) {
		kw_i16(w, 1);
		kw_i64(w, offset);
		kw_string(w, metadata);
		kw_i64(w, commit_ts_ms);
		kw_i64(w, expire_ts_ms);
	} else {
		kw_i16(w, 3);
		kw_i64(w, offset);
		kw_i32(w, leader_epoch);
		kw_string(w, metadata);
		kw_i64(w, commit_ts_ms);
	}
}

/* --- members ------------------------------------------------------------------------------- */

static struct kbytes member_meta(const struct gmember *m, const struct gstr *protocol)
{
	if (protocol->len >= 0)
		for (int32_t i = 0; i < m->n_protos; i++)
			if (gstr_eq(&m->protos[i].name, protocol))
				return (struct kbytes){ m->protos[i].meta, m->protos[i].meta_len };
	return (struct kbytes){ (const uint8_t *)"", 0 };
}

static void protos_free(struct gproto *p, int32_t n)
{
	for (int32_t i = 0; i < n; i++) {
		gstr_free(&p[i].name);
		free(p[i].meta);
	}
	free(p);
}

static int protos_copy(const struct group_protocol *in, int32_t n, struct gproto **out)
{
	*out = NULL;
	struct gproto *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
	if (!p)
		return -ENOMEM;
	for (int32_t i = 0; i < n; i++) {
		int32_t ml = in[i].metadata.len < 0 ? 0 : in[i].metadata.len;
		p[i].meta = malloc((size_t)ml + 1);
		if (!p[i].meta || gstr_setk(&p[i].name, in[i].name.len < 0 ? KSTR_LIT("") : in[i].name) < 0) {
			protos_free(p, i + 1);
			return -ENOMEM;
		}
		if (ml)
			memcpy(p[i].meta, in[i].metadata.p, (size_t)ml);
		p[i].meta_len = ml;
	}
	*out = p;
	return 0;
}

/* MemberMetadata.matches: same protocols, in order, with the same metadata. */
static bool member_matches(const struct gmember *m, const struct group_protocol *p, int32_t n)
{
	if (n != m->n_protos)
		return false;
	for (int32_t i = 0; i < n; i++) {
		struct kbytes mb = { m->protos[i].meta, m->protos[i].meta_len };
		struct kbytes pb = p[i].metadata.len < 0 ? (struct kbytes){ NULL, 0 } : p[i].metadata;
		if (!gstr_eqk(&m->protos[i].name, p[i].name) || !kbytes_eq(mb, pb))
			return false;
	}
	return true;
}

static void member_free(struct gmember *m)
{
	gstr_free(&m->id);
	gstr_free(&m->instance_id);
	gstr_free(&m->client_id);
	gstr_free(&m->client_host);
	gstr_free(&m->protocol_type);
	protos_free(m->protos, m->n_protos);
	free(m->assignment);
	free(m);
}

static int member_set_assignment(struct gmember *m, const uint8_t *p, int32_t len)
{
	uint8_t *a = malloc((size_t)(len > 0 ? len : 0) + 1);
	if (!a)
		return -ENOMEM;
	if (len > 0)
		memcpy(a, p, (size_t)len);
	free(m->assignment);
	m->assignment = a;
	m->assignment_len = len > 0 ? len : 0;
	return 0;
}

static void on_member_hb_expired(struct uring_timer *t);

/* "clientId-uuid" (or "instanceId-uuid"), as Kafka's generateMemberId. */
static int member_id_new(struct kstr prefix, struct gstr *out)
{
	uint8_t u[16];
	if (getrandom(u, sizeof u, 0) != (ssize_t)sizeof u)
		return -EIO;
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
	int32_t pl = prefix.len < 0 ? 0 : ST_MIN(prefix.len, GROUP_CLIENT_ID_PREFIX_MAX);
	char buf[GROUP_CLIENT_ID_PREFIX_MAX + 48];
	int n = snprintf(buf, sizeof buf, "%.*s-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
			 "%02x%02x%02x%02x%02x%02x", (int)pl, pl ? prefix.p : "", u[0], u[1], u[2], u[3],
			 u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
	if (n < 0 || (size_t)n >= sizeof buf)
		return -EINVAL;
	return gstr_set(out, buf, n);
}

static struct gmember *member_new(struct ggroup *g, struct gstr *id, const struct group_join_req *req)
{
	struct gmember *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	m->g = g;
	m->id = *id;
	*id = (struct gstr){ NULL, -1 };
	m->instance_id.len = m->client_id.len = m->client_host.len = m->protocol_type.len = -1;
	uring_timer_init(&m->hb_timer, on_member_hb_expired);
	if (gstr_setk(&m->instance_id, req->instance_id) < 0 ||
	    gstr_setk(&m->client_id, req->client_id.len < 0 ? KSTR_LIT("") : req->client_id) < 0 ||
	    gstr_setk(&m->client_host, req->client_host.len < 0 ? KSTR_LIT("") : req->client_host) < 0 ||
	    gstr_setk(&m->protocol_type, req->protocol_type.len < 0 ? KSTR_LIT("") : req->protocol_type) < 0 ||
	    protos_copy(req->protocols, req->n_protocols, &m->protos) < 0) {
		member_free(m);
		return NULL;
	}
	m->n_protos = req->n_protocols;
	if (member_set_assignment(m, NULL, 0) < 0) {
		member_free(m);
		return NULL;
	}
	m->session_timeout_ms = req->session_timeout_ms;
	m->rebalance_timeout_ms = req->rebalance_timeout_ms;
	return m;
}

static struct gmember *member_find(const struct ggroup *g, struct kstr id)
{
	for (int32_t i = 0; i < g->n_members; i++)
		if (gstr_eqk(&g->members[i]->id, id))
			return g->members[i];
	return NULL;
}

static struct gmember *member_find_static(const struct ggroup *g, struct kstr instance_id)
{
	if (instance_id.len < 0)
		return NULL;
	for (int32_t i = 0; i < g->n_members; i++)
		if (g->members[i]->instance_id.len >= 0 && gstr_eqk(&g->members[i]->instance_id, instance_id))
			return g->members[i];
	return NULL;
}

static void member_hb_schedule(struct gmember *m, int64_t ms)
{
	gtimer_arm(m->g->gc, &m->hb_timer, ms);
}

/* Answers the member's parked JoinGroup, if any. */
static void member_answer_join(struct gmember *m, const struct group_join_result *r)
{
	if (!m->join_done)
		return;
	void (*fn)(void *, const struct group_join_result *) = m->join_done;
	void *ctx = m->join_ctx;
	m->join_done = NULL;
	m->join_ctx = NULL;
	ST_ASSERT(m->g->n_awaiting_join > 0);
	m->g->n_awaiting_join--;
	fn(ctx, r);
}

static void member_answer_join_error(struct gmember *m, const char *member_id, int16_t err)
{
	struct group_join_result r = { .error = err, .generation = -1, .leader = "",
				       .member_id = member_id };
	member_answer_join(m, &r);
}

static void member_answer_sync(struct gmember *m, const struct group_sync_result *r)
{
	if (!m->sync_done)
		return;
	void (*fn)(void *, const struct group_sync_result *) = m->sync_done;
	void *ctx = m->sync_ctx;
	m->sync_done = NULL;
	m->sync_ctx = NULL;
	fn(ctx, r);
}

static void member_answer_sync_error(struct gmember *m, int16_t err)
{
	struct group_sync_result r = { .error = err, .assignment = { (const uint8_t *)"", 0 } };
	member_answer_sync(m, &r);
}

/* Parks a JoinGroup on m (GroupMetadata.updateMember's callback part). A JoinGroup already
 * parked there is superseded: it is answered REBALANCE_IN_PROGRESS (Kafka drops it unanswered),
 * so its client simply joins again. */
static void member_park_join(struct gmember *m, const struct group_join_req *req)
{
	if (m->join_done) {
		member_answer_join_error(m, m->id.p, KERR_REBALANCE_IN_PROGRESS);
	}
	m->join_done = req->done;
	m->join_ctx = req->ctx;
	m->join_skip_ok = req->supports_skip_assignment;
	m->g->n_awaiting_join++;
}

/* --- groups -------------------------------------------------------------------------------- */

static void on_join_timer(struct uring_timer *t);
static void on_sync_timer(struct uring_timer *t);
static void on_pending_expired(struct uring_timer *t);

static int offsets_cmp(const struct goffset *o, struct kstr topic, int32_t partition)
{
	int32_t n = ST_MIN(o->topic.len, topic.len);
	int c = n > 0 ? memcmp(o->topic.p, topic.p, (size_t)n) : 0;
	if (c)
		return c;
	if (o->topic.len != topic.len)
		return o->topic.len < topic.len ? -1 : 1;
	return o->partition < partition ? -1 : o->partition > partition;
}

/* Index of (topic, partition) or where it would go; *found says which. */
static int32_t offsets_find(const struct ggroup *g, struct kstr topic, int32_t partition, bool *found)
{
	int32_t lo = 0, hi = g->n_offsets;
	while (lo < hi) {
		int32_t mid = lo + (hi - lo) / 2;
		int c = offsets_cmp(&g->offsets[mid], topic, partition);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static void offset_free(struct goffset *o)
{
	gstr_free(&o->topic);
	gstr_free(&o->metadata);
}

static void offset_remove_at(struct ggroup *g, int32_t i)
{
	offset_free(&g->offsets[i]);
	memmove(&g->offsets[i], &g->offsets[i + 1], (size_t)(g->n_offsets - i - 1) * sizeof *g->offsets);
	g->n_offsets--;
	g->gc->n_offsets--;
	g->gc->parts[g->part].live--;
}

static int offset_put(struct ggroup *g, struct kstr topic, int32_t partition, int64_t offset,
		      int32_t leader_epoch, struct kstr metadata, int64_t commit_ts_ms, int64_t expire_ts_ms)
{
	bool found;
	int32_t i = offsets_find(g, topic, partition, &found);
	struct gstr md;
	if (gstr_setk(&md, metadata.len < 0 ? KSTR_LIT("") : metadata) < 0)
		return -ENOMEM;
	if (!found) {
		if (g->n_offsets == g->cap_offsets) {
			int32_t cap = g->cap_offsets ? g->cap_offsets * 2 : 8;
			struct goffset *n = realloc(g->offsets, (size_t)cap * sizeof *n);
			if (!n) {
				gstr_free(&md);
				return -ENOMEM;
			}
			g->offsets = n;
			g->cap_offsets = cap;
		}
		struct gstr t;
		if (gstr_setk(&t, topic) < 0) {
			gstr_free(&md);
			return -ENOMEM;
		}
		memmove(&g->offsets[i + 1], &g->offsets[i], (size_t)(g->n_offsets - i) * sizeof *g->offsets);
		g->n_offsets++;
		g->gc->n_offsets++;
		g->gc->parts[g->part].live++;
		g->offsets[i] = (struct goffset){ .topic = t, .partition = partition, .metadata = { NULL, -1 } };
	}
	struct goffset *o = &g->offsets[i];
	gstr_free(&o->metadata);
	o->metadata = md;
	o->offset = offset;
	o->leader_epoch = leader_epoch;
	o->commit_ts_ms = commit_ts_ms;
	o->expire_ts_ms = expire_ts_ms;
	return 0;
}

static void group_set_stored(struct ggroup *g, uint8_t *value, int32_t len)
{
	struct gpart *p = &g->gc->parts[g->part];
	if (!g->stored && value)
		p->live++;
	else if (g->stored && !value)
		p->live--;
	free(g->stored);
	g->stored = value;
	g->stored_len = value ? len : 0;
}

static void transition(struct ggroup *g, enum gstate s)
{
	g->state = s;
	g->state_ts_ms = st_now_ms();
}

static struct ggroup *group_find(struct group_coordinator *gc, struct kstr id)
{
	if (id.len < 0 || !gc->n_buckets)
		return NULL;
	uint32_t h = fnv1a(id.p, id.len);
	for (struct ggroup *g = gc->buckets[h & (gc->n_buckets - 1)]; g; g = g->hash_next)
		if (g->hash == h && gstr_eqk(&g->id, id))
			return g;
	return NULL;
}

static void hash_grow(struct group_coordinator *gc)
{
	uint32_t nb = gc->n_buckets * 2;
	struct ggroup **b = calloc(nb, sizeof *b);
	if (!b)
		return; /* longer chains, still correct */
	for (uint32_t i = 0; i < gc->n_buckets; i++) {
		struct ggroup *g = gc->buckets[i];
		while (g) {
			struct ggroup *next = g->hash_next;
			g->hash_next = b[g->hash & (nb - 1)];
			b[g->hash & (nb - 1)] = g;
			g = next;
		}
	}
	free(gc->buckets);
	gc->buckets = b;
	gc->n_buckets = nb;
}

static struct ggroup *group_create(struct group_coordinator *gc, struct kstr id)
{
	struct ggroup *g = calloc(1, sizeof *g);
	if (!g || gstr_setk(&g->id, id) < 0) {
		free(g);
		return NULL;
	}
	g->gc = gc;
	g->hash = fnv1a(id.p, id.len);
	g->part = group_partition_for(id.p, (size_t)id.len, gc->n_parts);
	g->state = GS_EMPTY;
	g->state_ts_ms = st_now_ms();
	g->protocol_type = g->protocol_name = (struct gstr){ NULL, -1 };
	uring_timer_init(&g->join_timer, on_join_timer);
	uring_timer_init(&g->sync_timer, on_sync_timer);
	if (gc->n_groups >= gc->n_buckets)
		hash_grow(gc);
	uint32_t b = g->hash & (gc->n_buckets - 1);
	g->hash_next = gc->buckets[b];
	gc->buckets[b] = g;
	g->in_hash = true;
	gc->n_groups++;
	return g;
}

static void pending_remove_at(struct ggroup *g, int32_t i)
{
	struct gpending *p = g->pending[i];
	uring_timer_cancel(g->gc->ur, &p->timer);
	gstr_free(&p->id);
	free(p);
	memmove(&g->pending[i], &g->pending[i + 1], (size_t)(g->n_pending - i - 1) * sizeof *g->pending);
	g->n_pending--;
}

static int32_t pending_find(const struct ggroup *g, struct kstr id)
{
	for (int32_t i = 0; i < g->n_pending; i++)
		if (gstr_eqk(&g->pending[i]->id, id))
			return i;
	return -1;
}

static void group_free(struct ggroup *g)
{
	struct group_coordinator *gc = g->gc;
	uring_timer_cancel(gc->ur, &g->join_timer);
	uring_timer_cancel(gc->ur, &g->sync_timer);
	for (int32_t i = 0; i < g->n_members; i++) {
		struct gmember *m = g->members[i];
		ST_ASSERT(!m->join_done && !m->sync_done);
		uring_timer_cancel(gc->ur, &m->hb_timer);
		member_free(m);
		gc->n_members--;
	}
	free(g->members);
	while (g->n_pending)
		pending_remove_at(g, g->n_pending - 1);
	free(g->pending);
	for (int32_t i = 0; i < g->n_offsets; i++)
		offset_free(&g->offsets[i]);
	gc->n_offsets -= g->n_offsets;
	free(g->offsets);
	free(g->stored);
	gstr_free(&g->id);
	gstr_free(&g->protocol_type);
	gstr_free(&g->protocol_name);
	free(g);
}

static void group_unhash(struct ggroup *g)
{
	struct group_coordinator *gc = g->gc;
	if (!g->in_hash)
		return;
	struct ggroup **pp = &gc->buckets[g->hash & (gc->n_buckets - 1)];
	while (*pp != g)
		pp = &(*pp)->hash_next;
	*pp = g->hash_next;
	g->hash_next = NULL;
	g->in_hash = false;
	gc->n_groups--;
}

static void group_hold(struct ggroup *g) { g->refs++; }

static void group_release(struct ggroup *g)
{
	ST_ASSERT(g->refs > 0);
	if (--g->refs == 0 && !g->in_hash)
		group_free(g);
}

/* Empty group without offsets (or a deleted one) -> Dead: out of the lookup table, freed once
 * no write references it. The caller holds g. */
static void group_kill(struct ggroup *g)
{
	ST_ASSERT(g->n_members == 0);
	transition(g, GS_DEAD);
	uring_timer_cancel(g->gc->ur, &g->join_timer);
	uring_timer_cancel(g->gc->ur, &g->sync_timer);
	while (g->n_pending)
		pending_remove_at(g, g->n_pending - 1);
	/* the stored record's live count goes with it (its tombstone is written by the caller) */
	if (g->stored)
		group_set_stored(g, NULL, 0);
	g->gc->parts[g->part].live -= g->n_offsets;
	for (int32_t i = 0; i < g->n_offsets; i++)
		offset_free(&g->offsets[i]);
	g->gc->n_offsets -= g->n_offsets;
	g->n_offsets = 0;
	group_unhash(g);
}

static int32_t group_rebalance_timeout(const struct ggroup *g)
{
	int32_t t = 0;
	for (int32_t i = 0; i < g->n_members; i++)
		t = ST_MAX(t, g->members[i]->rebalance_timeout_ms);
	return t;
}

/* GroupMetadata.add */
static int group_add_member(struct ggroup *g, struct gmember *m)
{
	if (g->n_members == g->cap_members) {
		int32_t cap = g->cap_members ? g->cap_members * 2 : 8;
		struct gmember **n = realloc(g->members, (size_t)cap * sizeof *n);
		if (!n)
			return -ENOMEM;
		g->members = n;
		g->cap_members = cap;
	}
	if (g->n_members == 0) {
		struct gstr pt;
		if (gstr_set(&pt, m->protocol_type.p, m->protocol_type.len) < 0)
			return -ENOMEM;
		gstr_free(&g->protocol_type);
		g->protocol_type = pt;
	}
	if (!g->leader)
		g->leader = m;
	g->members[g->n_members++] = m;
	g->gc->n_members++;
	int32_t pi = pending_find(g, gstr_k(&m->id));
	if (pi >= 0)
		pending_remove_at(g, pi);
	return 0;
}

/* GroupMetadata.remove. A parked request of the member is answered UNKNOWN_MEMBER_ID (Kafka
 * lets it time out). */
static void group_remove_member(struct ggroup *g, struct gmember *m)
{
	member_answer_join_error(m, "", KERR_UNKNOWN_MEMBER_ID);
	member_answer_sync_error(m, KERR_UNKNOWN_MEMBER_ID);
	int32_t i = 0;
	while (i < g->n_members && g->members[i] != m)
		i++;
	ST_ASSERT(i < g->n_members);
	memmove(&g->members[i], &g->members[i + 1], (size_t)(g->n_members - i - 1) * sizeof *g->members);
	g->n_members--;
	g->gc->n_members--;
	if (g->leader == m)
		g->leader = g->n_members ? g->members[0] : NULL;
	uring_timer_cancel(g->gc->ur, &m->hb_timer);
	member_free(m);
}

/* GroupMetadata.supportsProtocols */
static bool group_supports(const struct ggroup *g, struct kstr type, const struct group_protocol *p,
			   int32_t n)
{
	if (g->state == GS_EMPTY)
		return type.len > 0 && n > 0;
	if (g->protocol_type.len < 0 || !gstr_eqk(&g->protocol_type, type))
		return false;
	for (int32_t i = 0; i < n; i++) {
		int32_t count = 0;
		for (int32_t j = 0; j < g->n_members; j++) {
			const struct gmember *m = g->members[j];
			for (int32_t k = 0; k < m->n_protos; k++)
				if (gstr_eqk(&m->protos[k].name, p[i].name)) {
					count++;
					break;
				}
		}
		if (count == g->n_members)
			return true;
	}
	return false;
}

static bool member_supports(const struct gmember *m, const struct gstr *name)
{
	for (int32_t k = 0; k < m->n_protos; k++)
		if (gstr_eq(&m->protos[k].name, name))
			return true;
	return false;
}

/* GroupMetadata.selectProtocol: the protocol every member supports that most members prefer
 * (ties: the first member's preference order). NULL when there is none. */
static const struct gstr *group_select_protocol(const struct ggroup *g)
{
	if (g->n_members == 0)
		return NULL;
	const struct gmember *first = g->members[0];
	const struct gstr *best = NULL;
	int32_t best_votes = -1;
	for (int32_t c = 0; c < first->n_protos; c++) {
		const struct gstr *cand = &first->protos[c].name;
		bool common = true;
		for (int32_t j = 1; j < g->n_members && common; j++)
			common = member_supports(g->members[j], cand);
		if (!common)
			continue;
		int32_t votes = 0;
		for (int32_t j = 0; j < g->n_members; j++) {
			const struct gmember *m = g->members[j];
			/* the member's vote: its first protocol every member supports */
			for (int32_t k = 0; k < m->n_protos; k++) {
				bool all = true;
				for (int32_t x = 0; x < g->n_members && all; x++)
					all = member_supports(g->members[x], &m->protos[k].name);
				if (all) {
					if (gstr_eq(&m->protos[k].name, cand))
						votes++;
					break;
				}
			}
		}
		if (votes > best_votes) {
			best = cand;
			best_votes = votes;
		}
	}
	return best;
}

/* The topics the consumer group's members subscribe to (ConsumerProtocolSubscription), for
 * offset expiry and OffsetDelete. Returns false when unknown (not a consumer group, no
 * protocol, undecodable metadata): then every topic counts as subscribed. */
static bool group_subscribes(const struct ggroup *g, struct kstr topic, bool *known)
{
	*known = false;
	if (!gstr_eqk(&g->protocol_type, KSTR_LIT(GROUP_CONSUMER_PROTOCOL)) || g->protocol_name.len < 0 ||
	    g->n_members == 0)
		return true;
	bool hit = false;
	for (int32_t i = 0; i < g->n_members; i++) {
		struct kbytes md = member_meta(g->members[i], &g->protocol_name);
		struct kr r;
		kr_init(&r, md.p, (size_t)md.len);
		(void)kr_i16(&r);
		int32_t n = kr_array_len(&r);
		for (int32_t j = 0; j < n && !r.err; j++) {
			struct kstr t = kr_string(&r);
			if (!r.err && kstr_eq(t, topic))
				hit = true;
		}
		if (r.err || n < 0)
			return true;
	}
	*known = true;
	return hit;
}

/* --- writes to __consumer_offsets ------------------------------------------------------------ */

static void gw_done(struct log_append *a, int kerr);
static void gw_finish(struct gwrite *w, int kerr);
static void snap_check(struct group_coordinator *gc, int32_t pi);

static struct gwrite *gw_new(struct group_coordinator *gc, struct ggroup *g, int32_t part,
			     enum gw_kind kind)
{
	struct gwrite *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	w->gc = gc;
	w->g = g;
	w->part = part;
	w->kind = kind;
	w->now_ms = st_now_ms();
	w->member_id = w->old_leader = (struct gstr){ NULL, -1 };
	if (g)
		group_hold(g);
	gc->stats.writes_inflight++;
	return w;
}

static void gw_free(struct gwrite *w)
{
	struct group_coordinator *gc = w->gc;
	free(w->buf);
	free(w->value);
	for (int32_t i = 0; i < w->n_assign; i++) {
		gstr_free(&w->assign[i].member_id);
		free(w->assign[i].p);
	}
	free(w->assign);
	gstr_free(&w->member_id);
	gstr_free(&w->old_leader);
	ST_ASSERT(gc->stats.writes_inflight > 0);
	gc->stats.writes_inflight--;
	struct ggroup *g = w->g;
	free(w);
	if (g)
		group_release(g);
}

static void gw_append(struct gwrite *w)
{
	struct group_coordinator *gc = w->gc;
	struct gpart *p = &gc->parts[w->part];
	w->a.data = w->buf;
	w->a.len = w->len;
	w->a.done = gw_done;
	int err = gc->topic ? log_append(gc->topic->parts[w->part]->log, &w->a) : KERR_COORDINATOR_NOT_AVAILABLE;
	if (err != KERR_NONE) {
		slog_warn("group", "%s-%d: append refused: %s", GROUP_OFFSETS_TOPIC, w->part, kerr_name(err));
		gw_finish(w, err);
		return;
	}
	p->inflight++;
	p->records += w->n_records;
}

/* Appends w now, or queues it behind a snapshot waiting for this partition to go quiet. */
static void gw_submit(struct gwrite *w)
{
	struct gpart *p = &w->gc->parts[w->part];
	if (p->snap_waiting) {
		if (p->q_tail)
			p->q_tail->next = w;
		else
			p->q_head = w;
		p->q_tail = w;
		return;
	}
	gw_append(w);
}

static void gw_flush_queue(struct group_coordinator *gc, int32_t pi)
{
	struct gpart *p = &gc->parts[pi];
	struct gwrite *w = p->q_head;
	p->q_head = p->q_tail = NULL;
	while (w) {
		struct gwrite *next = w->next;
		w->next = NULL;
		gw_append(w);
		w = next;
	}
}

static void gw_done(struct log_append *a, int kerr)
{
	struct gwrite *w = ST_CONTAINER_OF(a, struct gwrite, a);
	struct group_coordinator *gc = w->gc;
	int32_t pi = w->part;
	struct gpart *p = &gc->parts[pi];
	ST_ASSERT(p->inflight > 0);
	p->inflight--;
	gw_finish(w, kerr);
	snap_check(gc, pi);
	/* log calls are not made from inside the log's completion: the maintenance timer runs
	 * the snapshot once this partition is quiet */
	if (p->snap_waiting && p->inflight == 0)
		gtimer_arm(gc, &gc->maint_timer, 0);
}

/* --- state machine: rebalance ------------------------------------------------------------- */

static void prepare_rebalance(struct ggroup *g);
static void try_complete_join(struct ggroup *g);
static void store_group(struct ggroup *g, enum gw_store_why why, const struct gw_assign *as,
			int32_t n_as, struct gmember *joiner, const struct gstr *old_leader);

static void maybe_prepare_rebalance(struct ggroup *g)
{
	if (g->state == GS_STABLE || g->state == GS_COMPLETING || g->state == GS_EMPTY)
		prepare_rebalance(g);
}

/* propagateAssignment */
static void propagate_assignment(struct ggroup *g, int16_t err)
{
	for (int32_t i = 0; i < g->n_members; i++) {
		struct gmember *m = g->members[i];
		if (!m->sync_done)
			continue;
		struct group_sync_result r = {
			.error = err,
			.protocol_type = err == KERR_NONE ? g->protocol_type.p : NULL,
			.protocol_name = err == KERR_NONE ? g->protocol_name.p : NULL,
			.assignment = { m->assignment, m->assignment_len },
		};
		member_answer_sync(m, &r);
		/* the session restarts once the member has its assignment */
		member_hb_schedule(m, m->session_timeout_ms);
	}
}

static void reset_and_propagate_error(struct ggroup *g, int16_t err)
{
	ST_ASSERT(g->state == GS_COMPLETING);
	for (int32_t i = 0; i < g->n_members; i++)
		member_set_assignment(g->members[i], NULL, 0); /* failure keeps the old one: harmless */
	propagate_assignment(g, err);
}

static void clear_pending_sync(struct ggroup *g)
{
	for (int32_t i = 0; i < g->n_members; i++)
		g->members[i]->pending_sync = false;
	uring_timer_cancel(g->gc->ur, &g->sync_timer);
}

/* GroupCoordinator.prepareRebalance */
static void prepare_rebalance(struct ggroup *g)
{
	struct group_coordinator *gc = g->gc;
	if (g->state == GS_COMPLETING)
		reset_and_propagate_error(g, KERR_REBALANCE_IN_PROGRESS);
	clear_pending_sync(g);
	int32_t rt = group_rebalance_timeout(g);
	int32_t delay;
	if (g->state == GS_EMPTY) {
		int32_t initial = (int32_t)cfg_ms(gc, BC_GROUP_INITIAL_REBALANCE_DELAY_MS);
		g->join_initial = true;
		g->join_delay_ms = initial;
		g->join_remaining_ms = ST_MAX(rt - initial, 0);
		delay = initial;
	} else {
		g->join_initial = false;
		delay = rt;
	}
	transition(g, GS_PREPARING);
	slog_info("group", "group=%s: preparing to rebalance (old generation %d, %d members, %s-%d)",
		  g->id.p, g->generation, g->n_members, GROUP_OFFSETS_TOPIC, g->part);
	gtimer_arm(gc, &g->join_timer, delay);
	if (!g->join_initial)
		try_complete_join(g);
}

/* GroupMetadata.maybeElectNewJoinedLeader */
static bool elect_joined_leader(struct ggroup *g)
{
	if (!g->leader)
		return false;
	if (g->leader->join_done)
		return true;
	for (int32_t i = 0; i < g->n_members; i++)
		if (g->members[i]->join_done) {
			g->leader = g->members[i];
			return true;
		}
	return false;
}

/* The join result of a member of the current generation; with_members gives the leader's
 * view. Returns false when out of memory (nothing answered). */
static bool answer_join_ok(struct ggroup *g, struct gmember *m, bool with_members, bool skip,
			   const char *leader)
{
	struct group_join_result r = {
		.error = KERR_NONE,
		.generation = g->generation,
		.protocol_type = g->protocol_type.p,
		.protocol_name = g->protocol_name.p,
		.leader = leader ? leader : "",
		.member_id = m->id.p,
		.skip_assignment = skip,
	};
	struct group_join_member *jm = NULL;
	if (with_members) {
		jm = calloc((size_t)g->n_members + 1, sizeof *jm);
		if (!jm)
			return false;
		for (int32_t i = 0; i < g->n_members; i++) {
			jm[i].member_id = g->members[i]->id.p;
			jm[i].instance_id = g->members[i]->instance_id.p;
			jm[i].metadata = member_meta(g->members[i], &g->protocol_name);
		}
		r.members = jm;
		r.n_members = g->n_members;
	}
	member_answer_join(m, &r);
	free(jm);
	return true;
}

/* GroupMetadata.initNextGeneration */
static void init_next_generation(struct ggroup *g)
{
	g->generation++;
	gstr_free(&g->protocol_name);
	if (g->n_members > 0) {
		const struct gstr *sel = group_select_protocol(g);
		if (!sel)
			sel = &g->members[0]->protos[0].name;
		if (gstr_set(&g->protocol_name, sel->p, sel->len) < 0)
			slog_error("group", "group=%s: out of memory selecting the protocol", g->id.p);
		transition(g, GS_COMPLETING);
	} else {
		transition(g, GS_EMPTY);
	}
	clear_pending_sync(g);
}

/* GroupCoordinator.onCompleteJoin */
static void on_complete_join(struct ggroup *g)
{
	struct group_coordinator *gc = g->gc;
	uring_timer_cancel(gc->ur, &g->join_timer);
	/* dynamic members that did not rejoin in time are out; static ones stay */
	for (int32_t i = 0; i < g->n_members;) {
		struct gmember *m = g->members[i];
		if (!m->join_done && m->instance_id.len < 0) {
			slog_info("group", "group=%s: member %s did not rejoin in time: removed", g->id.p, m->id.p);
			group_remove_member(g, m);
			continue;
		}
		i++;
	}
	if (g->state == GS_DEAD)
		return;
	if (!elect_joined_leader(g) && g->n_members > 0) {
		/* nobody rejoined: wait again until session timeouts remove the silent ones */
		slog_warn("group", "group=%s: no member rejoined; waiting another rebalance timeout", g->id.p);
		g->join_initial = false;
		gtimer_arm(gc, &g->join_timer, group_rebalance_timeout(g));
		return;
	}
	init_next_generation(g);
	if (g->state == GS_EMPTY) {
		slog_info("group", "group=%s: generation %d is empty", g->id.p, g->generation);
		store_group(g, STORE_EMPTY, NULL, 0, NULL, NULL);
		return;
	}
	gc->stats.rebalances++;
	slog_info("group", "group=%s: generation %d with %d members (protocol %s, leader %s)", g->id.p,
		  g->generation, g->n_members, g->protocol_name.p ? g->protocol_name.p : "-",
		  g->leader ? g->leader->id.p : "-");
	for (int32_t i = 0; i < g->n_members; i++) {
		struct gmember *m = g->members[i];
		bool is_leader = g->leader == m;
		if (!answer_join_ok(g, m, is_leader, false, g->leader ? g->leader->id.p : ""))
			member_answer_join_error(m, m->id.p, KERR_UNKNOWN_SERVER_ERROR);
		member_hb_schedule(m, m->session_timeout_ms);
		m->is_new = false;
		m->pending_sync = true;
	}
	g->sync_generation = g->generation;
	gtimer_arm(gc, &g->sync_timer, group_rebalance_timeout(g));
}

static void try_complete_join(struct ggroup *g)
{
	if (g->state == GS_PREPARING && !g->join_initial && g->n_members == g->n_awaiting_join &&
	    g->n_pending == 0)
		on_complete_join(g);
}

static void on_join_timer(struct uring_timer *t)
{
	struct ggroup *g = ST_CONTAINER_OF(t, struct ggroup, join_timer);
	if (g->state != GS_PREPARING)
		return;
	if (g->join_initial && g->new_member_added && g->join_remaining_ms != 0) {
		/* InitialDelayedJoin: more members came; wait a little more, within the budget */
		int32_t configured = (int32_t)cfg_ms(g->gc, BC_GROUP_INITIAL_REBALANCE_DELAY_MS);
		int32_t delay = ST_MIN(configured, g->join_remaining_ms);
		int32_t remaining = ST_MAX(g->join_remaining_ms - g->join_delay_ms, 0);
		g->new_member_added = false;
		g->join_delay_ms = delay;
		g->join_remaining_ms = remaining;
		gtimer_arm(g->gc, &g->join_timer, delay);
		return;
	}
	on_complete_join(g);
}

/* GroupCoordinator.onExpirePendingSync */
static void on_sync_timer(struct uring_timer *t)
{
	struct ggroup *g = ST_CONTAINER_OF(t, struct ggroup, sync_timer);
	if (g->sync_generation != g->generation || (g->state != GS_COMPLETING && g->state != GS_STABLE))
		return;
	bool removed = false;
	for (int32_t i = 0; i < g->n_members;) {
		struct gmember *m = g->members[i];
		if (m->pending_sync) {
			slog_info("group", "group=%s: member %s did not sync in time: removed", g->id.p, m->id.p);
			group_remove_member(g, m);
			removed = true;
			continue;
		}
		i++;
	}
	if (removed)
		prepare_rebalance(g);
}

/* GroupCoordinator.removeMemberAndUpdateGroup */
static void remove_member_and_update(struct ggroup *g, struct gmember *m)
{
	member_answer_join_error(m, "", KERR_UNKNOWN_MEMBER_ID);
	group_remove_member(g, m);
	switch (g->state) {
	case GS_STABLE:
	case GS_COMPLETING:
		maybe_prepare_rebalance(g);
		break;
	case GS_PREPARING:
		try_complete_join(g);
		break;
	default:
		break;
	}
}

/* GroupCoordinator.onExpireHeartbeat: a member awaiting a join or sync response is alive
 * (unless it is new: new members must complete their first join in time). */
static void on_member_hb_expired(struct uring_timer *t)
{
	struct gmember *m = ST_CONTAINER_OF(t, struct gmember, hb_timer);
	struct ggroup *g = m->g;
	if (g->state == GS_DEAD)
		return;
	if (!m->is_new && (m->join_done || m->sync_done))
		return;
	slog_info("group", "group=%s: member %s failed (session timeout %d ms): removed", g->id.p,
		  m->id.p, m->session_timeout_ms);
	remove_member_and_update(g, m);
}

static void on_pending_expired(struct uring_timer *t)
{
	struct gpending *p = ST_CONTAINER_OF(t, struct gpending, timer);
	struct ggroup *g = p->g;
	int32_t i = 0;
	while (g->pending[i] != p)
		i++;
	slog_debug("group", "group=%s: pending member %s expired", g->id.p, p->id.p);
	pending_remove_at(g, i);
	if (g->state == GS_PREPARING)
		try_complete_join(g);
}

static int pending_add(struct ggroup *g, struct gstr *id, int32_t timeout_ms)
{
	if (g->n_pending == g->cap_pending) {
		int32_t cap = g->cap_pending ? g->cap_pending * 2 : 8;
		struct gpending **n = realloc(g->pending, (size_t)cap * sizeof *n);
		if (!n)
			return -ENOMEM;
		g->pending = n;
		g->cap_pending = cap;
	}
	struct gpending *p = calloc(1, sizeof *p);
	if (!p)
		return -ENOMEM;
	p->g = g;
	p->id = *id;
	*id = (struct gstr){ NULL, -1 };
	uring_timer_init(&p->timer, on_pending_expired);
	g->pending[g->n_pending++] = p;
	gtimer_arm(g->gc, &p->timer, timeout_ms);
	return 0;
}

/* --- group metadata records ------------------------------------------------------------------ */

static const struct gw_assign *assign_find(const struct gw_assign *as, int32_t n, const struct gstr *id)
{
	for (int32_t i = n - 1; i >= 0; i--) /* the last entry for a member wins, as in a map */
		if (gstr_eq(&as[i].member_id, id))
			return &as[i];
	return NULL;
}

/* GroupMetadataValue v3 of the group with the given assignments (as == NULL: the members'
 * current ones). */
static void enc_group_value(struct kw *w, const struct ggroup *g, const struct gw_assign *as, int32_t n_as)
{
	kw_reset(w);
	kw_i16(w, 3);
	kw_string(w, g->protocol_type.len >= 0 ? gstr_k(&g->protocol_type) : KSTR_LIT(""));
	kw_i32(w, g->generation);
	kw_string(w, gstr_k(&g->protocol_name));
	kw_string(w, g->leader ? gstr_k(&g->leader->id) : KSTR_NULL);
	kw_i64(w, g->state_ts_ms);
	kw_array_len(w, g->n_members);
	for (int32_t i = 0; i < g->n_members; i++) {
		const struct gmember *m = g->members[i];
		kw_string(w, gstr_k(&m->id));
		kw_string(w, gstr_k(&m->instance_id));
		kw_string(w, gstr_k(&m->client_id));
		kw_string(w, gstr_k(&m->client_host));
		kw_i32(w, m->rebalance_timeout_ms);
		kw_i32(w, m->session_timeout_ms);
		kw_bytes(w, member_meta(m, &g->protocol_name));
		if (as) {
			const struct gw_assign *a = assign_find(as, n_as, &m->id);
			kw_bytes(w, a ? (struct kbytes){ a->p, a->len } : (struct kbytes){ (const uint8_t *)"", 0 });
		} else {
			kw_bytes(w, (struct kbytes){ m->assignment, m->assignment_len });
		}
	}
}

static void store_finish(struct gwrite *w, int kerr);

/* GroupMetadataManager.storeGroup: writes the group's metadata record; what follows happens in
 * store_finish once it is durable (or failed). joiner/old_leader: STORE_STATIC_JOIN only. */
static void store_group(struct ggroup *g, enum gw_store_why why, const struct gw_assign *as,
			int32_t n_as, struct gmember *joiner, const struct gstr *old_leader)
{
	struct group_coordinator *gc = g->gc;
	struct gwrite *w = gw_new(gc, g, g->part, GW_STORE);
	struct kw key, val;
	kw_init(&key, 64);
	kw_init(&val, 256);
	int err = w ? 0 : -ENOMEM;
	if (w) {
		w->why = why;
		w->generation = g->generation;
		enc_group_key(&key, gstr_k(&g->id));
		enc_group_value(&val, g, as, n_as);
		struct gbuild b;
		gb_init(&b, w->now_ms, SIZE_MAX);
		gb_add(&b, &key, &val);
		err = gb_finish(&b, &w->buf, &w->len, &w->n_records);
		if (!err && !val.err) {
			size_t vl;
			w->value = kw_detach(&val, &vl);
			w->value_len = (int32_t)vl;
			if (!w->value)
				err = -ENOMEM;
		} else if (!err) {
			err = val.err;
		}
		if (!err && as && n_as > 0) {
			w->assign = calloc((size_t)n_as, sizeof *w->assign);
			if (!w->assign)
				err = -ENOMEM;
			for (int32_t i = 0; !err && i < n_as; i++) {
				w->assign[i].member_id = (struct gstr){ NULL, -1 };
				w->n_assign = i + 1;
				w->assign[i].p = malloc((size_t)as[i].len + 1);
				if (!w->assign[i].p || gstr_set(&w->assign[i].member_id, as[i].member_id.p,
								 as[i].member_id.len) < 0)
					err = -ENOMEM;
				else if (as[i].len)
					memcpy(w->assign[i].p, as[i].p, (size_t)as[i].len);
				w->assign[i].len = as[i].len;
			}
		}
		if (!err && joiner) {
			w->skip_ok = joiner->join_skip_ok;
			if (gstr_set(&w->member_id, joiner->id.p, joiner->id.len) < 0 ||
			    (old_leader && gstr_set(&w->old_leader, old_leader->p, old_leader->len) < 0))
				err = -ENOMEM;
		}
	}
	kw_free(&key);
	kw_free(&val);
	if (err) {
		slog_error("group", "group=%s: cannot build its metadata record: %s", g->id.p, strerror(-err));
		if (w)
			gw_finish(w, KERR_UNKNOWN_SERVER_ERROR);
		else if (why == STORE_SYNC && g->state == GS_COMPLETING) {
			reset_and_propagate_error(g, KERR_UNKNOWN_SERVER_ERROR);
			maybe_prepare_rebalance(g);
		} else if (joiner) {
			member_answer_join_error(joiner, "", KERR_UNKNOWN_SERVER_ERROR);
		}
		return;
	}
	gw_submit(w);
}

static void store_finish(struct gwrite *w, int kerr)
{
	struct ggroup *g = w->g;
	int16_t err = store_error(kerr);
	if (err == KERR_NONE && w->value && g->state != GS_DEAD) {
		group_set_stored(g, w->value, w->value_len);
		w->value = NULL;
	}
	switch (w->why) {
	case STORE_SYNC:
		/* another member may have joined meanwhile: only this generation's assignment */
		if (g->state != GS_COMPLETING || g->generation != w->generation)
			break;
		if (err != KERR_NONE) {
			reset_and_propagate_error(g, err);
			maybe_prepare_rebalance(g);
			break;
		}
		for (int32_t i = 0; i < g->n_members; i++) {
			struct gmember *m = g->members[i];
			const struct gw_assign *a = assign_find(w->assign, w->n_assign, &m->id);
			if (member_set_assignment(m, a ? a->p : NULL, a ? a->len : 0) < 0)
				slog_error("group", "group=%s: out of memory keeping an assignment", g->id.p);
		}
		propagate_assignment(g, KERR_NONE);
		transition(g, GS_STABLE);
		break;
	case STORE_STATIC_JOIN: {
		struct gmember *m = member_find(g, gstr_k(&w->member_id));
		if (!m)
			break;
		if (err != KERR_NONE) {
			/* Kafka reverts the replacement; here the member keeps its new id and its
			 * client, told to rejoin, simply replaces it again */
			member_answer_join_error(m, "", err);
			break;
		}
		if (w->skip_ok) {
			bool is_leader = g->leader == m;
			if (!answer_join_ok(g, m, is_leader, is_leader, g->leader ? g->leader->id.p : ""))
				member_answer_join_error(m, m->id.p, KERR_UNKNOWN_SERVER_ERROR);
		} else {
			/* the old leader id: the member does not assign (its new id is not it) */
			if (!answer_join_ok(g, m, false, false, w->old_leader.p ? w->old_leader.p : ""))
				member_answer_join_error(m, m->id.p, KERR_UNKNOWN_SERVER_ERROR);
		}
		break;
	}
	case STORE_EMPTY:
		if (err != KERR_NONE)
			slog_warn("group", "group=%s: cannot write its empty metadata: %s", g->id.p,
				  kerr_name(err));
		break;
	}
}

/* --- open, replay, topic ---------------------------------------------------------------------- */

static int offsets_topic_cfg(struct group_coordinator *gc, const struct cfg *base, struct cfg *out)
{
	int rc = base ? cfg_copy(out, base) : cfg_init(out, &cfg_topic_schema);
	if (rc < 0)
		return rc;
	char why[256], seg[32];
	snprintf(seg, sizeof seg, "%" PRId64, cfg_int(gc->conf, BC_OFFSETS_TOPIC_SEGMENT_BYTES));
	/* Offsets live until superseded (snapshots bound the log), never by age or size, and every
	 * commit is fsynced before it is acknowledged whatever the broker's flush policy. */
	if ((rc = cfg_set(out, "retention.ms", "-1", why, sizeof why)) < 0 ||
	    (rc = cfg_set(out, "retention.bytes", "-1", why, sizeof why)) < 0 ||
	    (rc = cfg_set(out, "flush.messages", "1", why, sizeof why)) < 0 ||
	    (!base && (rc = cfg_set(out, "segment.bytes", seg, why, sizeof why)) < 0)) {
		slog_error("group", "offsets topic settings: %s", why);
		cfg_free(out);
		return rc;
	}
	return 0;
}

static int adopt_topic(struct group_coordinator *gc, struct topic *t)
{
	struct gpart *parts = calloc((size_t)t->n_partitions, sizeof *parts);
	if (!parts)
		return -ENOMEM;
	for (int32_t i = 0; i < t->n_partitions; i++)
		parts[i].delete_below = -1;
	/* A topic made by someone else (auto-creation) may carry retention: offsets must not age out. */
	if (cfg_topic_int(&t->cfg, gc->b->conf, TC_RETENTION_MS) != -1 ||
	    cfg_topic_int(&t->cfg, gc->b->conf, TC_RETENTION_BYTES) != -1 ||
	    cfg_topic_int(&t->cfg, gc->b->conf, TC_FLUSH_MESSAGES) != 1) {
		struct cfg tc;
		if (offsets_topic_cfg(gc, &t->cfg, &tc) == 0) {
			if (broker_set_topic_config(gc->b, t, &tc) < 0)
				slog_warn("group", "cannot fix the settings of %s", GROUP_OFFSETS_TOPIC);
			else
				slog_info("group", "%s: retention off, flush.messages=1", GROUP_OFFSETS_TOPIC);
			cfg_free(&tc);
		}
	}
	gc->topic = t;
	gc->n_parts = t->n_partitions;
	gc->parts = parts;
	return 0;
}

/* The topic is created at startup, before anything is served (blocking there is fine). Should
 * that have failed, a later call asks the broker's topic worker for it and says "not
 * available" until it is there (clients retry, as with Kafka's lazy creation). */
static int ensure_topic(struct group_coordinator *gc, bool startup)
{
	if (gc->topic)
		return KERR_NONE;
	if (gc->stopped)
		return KERR_COORDINATOR_NOT_AVAILABLE;
	struct topic *t = broker_find_topic(gc->b, GROUP_OFFSETS_TOPIC, sizeof GROUP_OFFSETS_TOPIC - 1);
	if (!t) {
		struct cfg tc;
		if (offsets_topic_cfg(gc, NULL, &tc) < 0)
			return KERR_COORDINATOR_NOT_AVAILABLE;
		char why[512];
		int32_t n = (int32_t)cfg_int(gc->conf, BC_OFFSETS_TOPIC_NUM_PARTITIONS);
		struct broker_topic_spec spec = { .partitions = n, .cfg = &tc };
		const size_t len = sizeof GROUP_OFFSETS_TOPIC - 1;
		int err = KERR_NONE;
		if (startup)
			err = broker_create_topic(gc->b, GROUP_OFFSETS_TOPIC, len, n, &tc, false, &t, why,
						  sizeof why);
		else if (!broker_wait_topic(gc->b, GROUP_OFFSETS_TOPIC, len, NULL))
			err = broker_create_topic_async(gc->b, GROUP_OFFSETS_TOPIC, len, &spec, NULL, why,
							sizeof why);
		cfg_free(&tc);
		if (err != KERR_NONE)
			slog_error("group", "cannot create %s: %s", GROUP_OFFSETS_TOPIC, why);
		if (!t)
			return KERR_COORDINATOR_NOT_AVAILABLE;
	}
	if (adopt_topic(gc, t) < 0)
		return KERR_COORDINATOR_NOT_AVAILABLE;
	return KERR_NONE;
}

int group_coordinator_ensure_topic(struct group_coordinator *gc)
{
	return ensure_topic(gc, false);
}

/* Readers of the record formats, every version Kafka has written (0-4; 4 is flexible). */
static struct kstr rd_str(struct kr *r, bool flex) { return flex ? kr_compact_string(r) : kr_string(r); }
static struct kbytes rd_bytes(struct kr *r, bool flex) { return flex ? kr_compact_bytes(r) : kr_bytes(r); }

static struct ggroup *replay_group(struct group_coordinator *gc, struct kstr id)
{
	struct ggroup *g = group_find(gc, id);
	return g ? g : group_create(gc, id);
}

static void replay_offset(struct group_coordinator *gc, struct kr *k, const struct batch_record *rec,
			  int64_t ts)
{
	struct kstr group = kr_string(k), topic = kr_string(k);
	int32_t partition = kr_i32(k);
	if (k->err || group.len < 0 || topic.len < 0)
		return;
	if (rec->value_len < 0) {
		struct ggroup *g = group_find(gc, group);
		bool found;
		int32_t i = g ? offsets_find(g, topic, partition, &found) : 0;
		if (g && found)
			offset_remove_at(g, i);
		return;
	}
	struct kr v;
	kr_init(&v, rec->value, (size_t)rec->value_len);
	int16_t ver = kr_i16(&v);
	int64_t offset = kr_i64(&v), commit_ts = ts, expire_ts = -1;
	int32_t epoch = -1;
	if (ver >= 3)
		epoch = kr_i32(&v);
	struct kstr md = rd_str(&v, ver >= 4);
	commit_ts = kr_i64(&v);
	if (ver == 1)
		expire_ts = kr_i64(&v);
	if (v.err || ver < 0 || ver > 4)
		return;
	struct ggroup *g = replay_group(gc, group);
	if (!g || offset_put(g, topic, partition, offset, epoch, md, commit_ts, expire_ts) < 0)
		slog_error("group", "replay: out of memory");
}

static void replay_group_record(struct group_coordinator *gc, struct kr *k, const struct batch_record *rec)
{
	struct kstr group = kr_string(k);
	if (k->err || group.len < 0)
		return;
	if (rec->value_len < 0) {
		struct ggroup *g = group_find(gc, group);
		if (g)
			group_set_stored(g, NULL, 0);
		return;
	}
	struct ggroup *g = replay_group(gc, group);
	uint8_t *copy = g ? malloc((size_t)rec->value_len + 1) : NULL;
	if (!copy) {
		slog_error("group", "replay: out of memory");
		return;
	}
	memcpy(copy, rec->value, (size_t)rec->value_len);
	group_set_stored(g, copy, rec->value_len);
}

static void replay_record(struct group_coordinator *gc, const struct batch_record *rec, int64_t ts)
{
	if (rec->key_len < 2)
		return;
	struct kr k;
	kr_init(&k, rec->key, (size_t)rec->key_len);
	int16_t kv = kr_i16(&k);
	if (kv == 0 || kv == 1)
		replay_offset(gc, &k, rec, ts);
	else if (kv == 2)
		replay_group_record(gc, &k, rec);
	/* newer record types (KIP-848 and later) are not ours: skipped */
	gc->stats.replayed_records++;
}

static int replay_batches(struct group_coordinator *gc, int32_t pi, const uint8_t *buf, size_t len,
			  int64_t from_offset)
{
	size_t pos = 0;
	while (pos + BATCH_HDR_SIZE <= len) {
		struct batch_hdr h;
		batch_parse_hdr(buf + pos, len - pos, &h);
		int64_t size = batch_size(&h);
		if (size < BATCH_HDR_SIZE || (size_t)size > len - pos)
			return -EBADMSG;
		const uint8_t *bp = buf + pos;
		pos += (size_t)size;
		if (h.magic != BATCH_MAGIC_V2 || !batch_crc_ok(bp, (size_t)size)) {
			slog_warn("group", "%s-%d: skipping a bad batch at offset %" PRId64, GROUP_OFFSETS_TOPIC,
				  pi, h.base_offset);
			continue;
		}
		if (batch_is_control(&h))
			continue;
		const uint8_t *recs = bp + BATCH_HDR_SIZE;
		size_t recs_len = (size_t)size - BATCH_HDR_SIZE;
		uint8_t *inflated = NULL;
		if (batch_codec(&h) != COMPRESS_NONE) {
			size_t il;
			int rc = compress_inflate(batch_codec(&h), recs, recs_len, GROUP_REPLAY_INFLATE_MAX_BYTES,
						  &inflated, &il);
			if (rc < 0) {
				slog_warn("group", "%s-%d: cannot inflate the batch at offset %" PRId64 ": %s",
					  GROUP_OFFSETS_TOPIC, pi, h.base_offset, strerror(-rc));
				continue;
			}
			recs = inflated;
			recs_len = il;
		}
		struct batch_rec_iter it;
		struct batch_record rec;
		batch_rec_iter_init(&it, recs, recs_len);
		int rc;
		while ((rc = batch_rec_next(&it, &rec)) == 1) {
			if (h.base_offset + rec.offset_delta < from_offset)
				continue;
			replay_record(gc, &rec, h.base_timestamp + rec.timestamp_delta);
			gc->parts[pi].records++;
		}
		free(inflated);
		if (rc < 0)
			slog_warn("group", "%s-%d: malformed record in the batch at offset %" PRId64,
				  GROUP_OFFSETS_TOPIC, pi, h.base_offset);
	}
	return 0;
}

static int replay_partition(struct group_coordinator *gc, int32_t pi, char *why, size_t why_len)
{
	struct log *l = gc->topic->parts[pi]->log;
	int64_t start = log_start_offset(l), off = start, hw = log_high_watermark(l);
	size_t cap = 0;
	uint8_t *buf = NULL;
	int rc = 0;
	while (off < hw) {
		struct log_slice s;
		int err = log_read(l, off, hw, GROUP_REPLAY_CHUNK_BYTES, true, &s);
		if (err != KERR_NONE) {
			snprintf(why, why_len, "%s-%d: cannot read at offset %" PRId64 ": %s", GROUP_OFFSETS_TOPIC,
				 pi, off, kerr_name(err));
			rc = -EIO;
			break;
		}
		if (s.len == 0 || s.next_offset <= off) {
			log_slice_release(&s);
			break;
		}
		if ((size_t)s.len > cap) {
			uint8_t *nb = realloc(buf, (size_t)s.len);
			if (!nb) {
				log_slice_release(&s);
				rc = -ENOMEM;
				snprintf(why, why_len, "out of memory replaying %s", GROUP_OFFSETS_TOPIC);
				break;
			}
			buf = nb;
			cap = (size_t)s.len;
		}
		size_t got = 0;
		while (got < (size_t)s.len) {
			ssize_t n = pread(s.fd, buf + got, (size_t)s.len - got, s.file_pos + (off_t)got);
			if (n <= 0) {
				if (n < 0 && errno == EINTR)
					continue;
				rc = n < 0 ? -errno : -EIO;
				break;
			}
			got += (size_t)n;
		}
		int64_t next = s.next_offset;
		log_slice_release(&s);
		if (rc < 0) {
			snprintf(why, why_len, "%s-%d: read failed: %s", GROUP_OFFSETS_TOPIC, pi, strerror(-rc));
			break;
		}
		replay_batches(gc, pi, buf, got, start);
		off = next;
	}
	free(buf);
	return rc;
}

/* The group's state from its stored metadata record (GroupMetadataManager.readGroupMessageValue
 * + GroupMetadata.loadGroup): members -> Stable with heartbeats expected, none -> Empty. */
static int load_group_state(struct ggroup *g)
{
	struct kr r;
	kr_init(&r, g->stored, (size_t)g->stored_len);
	int16_t ver = kr_i16(&r);
	bool flex = ver >= 4;
	if (ver < 0 || ver > 4)
		return -EINVAL;
	struct kstr ptype = rd_str(&r, flex);
	int32_t generation = kr_i32(&r);
	struct kstr protocol = rd_str(&r, flex), leader = rd_str(&r, flex);
	int64_t state_ts = ver >= 2 ? kr_i64(&r) : -1;
	int32_t n = flex ? kr_compact_array_len(&r) : kr_array_len(&r);
	if (r.err || n < 0)
		return -EINVAL;
	gstr_free(&g->protocol_type);
	gstr_free(&g->protocol_name);
	if ((ptype.len > 0 && gstr_setk(&g->protocol_type, ptype) < 0) ||
	    gstr_setk(&g->protocol_name, protocol) < 0)
		return -ENOMEM;
	g->generation = generation;
	for (int32_t i = 0; i < n && !r.err; i++) {
		struct group_protocol proto;
		struct group_join_req jr = { 0 };
		jr.member_id = rd_str(&r, flex);
		jr.instance_id = ver >= 3 ? rd_str(&r, flex) : KSTR_NULL;
		jr.client_id = rd_str(&r, flex);
		jr.client_host = rd_str(&r, flex);
		int32_t rebalance = ver >= 1 ? kr_i32(&r) : -1;
		jr.session_timeout_ms = kr_i32(&r);
		jr.rebalance_timeout_ms = ver >= 1 ? rebalance : jr.session_timeout_ms;
		proto.name = protocol.len < 0 ? KSTR_LIT("") : protocol;
		proto.metadata = rd_bytes(&r, flex);
		struct kbytes assignment = rd_bytes(&r, flex);
		if (flex)
			kr_skip_tags(&r);
		if (r.err || jr.member_id.len < 0)
			return -EINVAL;
		jr.protocol_type = ptype;
		jr.protocols = &proto;
		jr.n_protocols = 1;
		struct gstr id;
		if (gstr_setk(&id, jr.member_id) < 0)
			return -ENOMEM;
		struct gmember *m = member_new(g, &id, &jr);
		gstr_free(&id);
		if (!m)
			return -ENOMEM;
		if (member_set_assignment(m, assignment.p, assignment.len) < 0 || group_add_member(g, m) < 0) {
			member_free(m);
			return -ENOMEM;
		}
	}
	if (r.err)
		return -EINVAL;
	g->leader = g->n_members ? member_find(g, leader) : NULL;
	if (!g->leader && g->n_members)
		g->leader = g->members[0];
	g->state = g->n_members ? GS_STABLE : GS_EMPTY;
	g->state_ts_ms = state_ts;
	return 0;
}

static void on_expire_timer(struct uring_timer *t);
static void on_maint_timer(struct uring_timer *t);

int group_coordinator_open(struct group_coordinator **out, struct uring *ur, struct broker *b,
			   const struct cfg *conf, char *why, size_t why_len)
{
	struct group_coordinator *gc = calloc(1, sizeof *gc);
	if (!gc)
		return -ENOMEM;
	gc->ur = ur;
	gc->b = b;
	gc->conf = conf;
	gc->n_buckets = GROUP_BUCKETS_MIN;
	gc->buckets = calloc(gc->n_buckets, sizeof *gc->buckets);
	if (!gc->buckets) {
		free(gc);
		return -ENOMEM;
	}
	uring_timer_init(&gc->expire_timer, on_expire_timer);
	uring_timer_init(&gc->maint_timer, on_maint_timer);
	struct topic *t = broker_find_topic(b, GROUP_OFFSETS_TOPIC, sizeof GROUP_OFFSETS_TOPIC - 1);
	if (t) {
		int64_t t0 = st_mono_ms();
		int rc = adopt_topic(gc, t);
		for (int32_t i = 0; rc == 0 && i < gc->n_parts; i++)
			rc = replay_partition(gc, i, why, why_len);
		if (rc < 0) {
			if (rc == -ENOMEM)
				snprintf(why, why_len, "out of memory loading %s", GROUP_OFFSETS_TOPIC);
			gc->stopped = true;
			group_coordinator_free(gc);
			return rc;
		}
		/* groups whose records are all gone, then the loaded groups' states */
		struct ggroup **all = calloc((size_t)gc->n_groups + 1, sizeof *all);
		uint32_t n = 0;
		for (uint32_t bi = 0; all && bi < gc->n_buckets; bi++)
			for (struct ggroup *g = gc->buckets[bi]; g; g = g->hash_next)
				all[n++] = g;
		for (uint32_t i = 0; i < n; i++) {
			struct ggroup *g = all[i];
			if (!g->stored && g->n_offsets == 0) {
				group_unhash(g);
				group_free(g);
				continue;
			}
			if (g->stored) {
				int lrc = load_group_state(g);
				if (lrc < 0) {
					slog_warn("group", "group=%s: unreadable metadata record (%s): loaded as empty",
						  g->id.p, strerror(-lrc));
					while (g->n_members)
						group_remove_member(g, g->members[0]);
					g->state = GS_EMPTY;
				}
			}
			for (int32_t j = 0; j < g->n_members; j++)
				member_hb_schedule(g->members[j], g->members[j]->session_timeout_ms);
		}
		free(all);
		slog_info("group", "loaded %u groups, %" PRId64 " offsets from %" PRId64 " records of %s "
			  "in %" PRId64 " ms", gc->n_groups, gc->n_offsets, gc->stats.replayed_records,
			  GROUP_OFFSETS_TOPIC, st_mono_ms() - t0);
	} else {
		ensure_topic(gc, true); /* before serving: the one blocking creation allowed */
	}
	gtimer_arm(gc, &gc->expire_timer, cfg_ms(gc, BC_OFFSETS_RETENTION_CHECK_MS));
	*out = gc;
	return 0;
}

/* --- shutdown -------------------------------------------------------------------------------- */

void group_coordinator_stop(struct group_coordinator *gc)
{
	if (gc->stopped)
		return;
	gc->stopped = true;
	uring_timer_cancel(gc->ur, &gc->expire_timer);
	uring_timer_cancel(gc->ur, &gc->maint_timer);
	for (uint32_t bi = 0; bi < gc->n_buckets; bi++) {
		for (struct ggroup *g = gc->buckets[bi]; g; g = g->hash_next) {
			uring_timer_cancel(gc->ur, &g->join_timer);
			uring_timer_cancel(gc->ur, &g->sync_timer);
			for (int32_t i = 0; i < g->n_pending; i++)
				uring_timer_cancel(gc->ur, &g->pending[i]->timer);
			for (int32_t i = 0; i < g->n_members; i++) {
				struct gmember *m = g->members[i];
				uring_timer_cancel(gc->ur, &m->hb_timer);
				member_answer_join_error(m, m->id.p, KERR_NOT_COORDINATOR);
				member_answer_sync_error(m, KERR_NOT_COORDINATOR);
			}
		}
	}
	for (int32_t i = 0; i < gc->n_parts; i++) {
		if (gc->parts[i].snap_waiting) {
			gc->parts[i].snap_waiting = false;
			gw_flush_queue(gc, i);
		}
	}
}

bool group_coordinator_idle(const struct group_coordinator *gc)
{
	return gc->stats.writes_inflight == 0;
}

void group_coordinator_free(struct group_coordinator *gc)
{
	if (!gc)
		return;
	group_coordinator_stop(gc);
	for (uint32_t bi = 0; bi < gc->n_buckets; bi++) {
		struct ggroup *g = gc->buckets[bi];
		while (g) {
			struct ggroup *next = g->hash_next;
			g->in_hash = false;
			if (g->refs == 0)
				group_free(g);
			g = next;
		}
	}
	free(gc->buckets);
	free(gc->parts);
	free(gc);
}

/* --- JoinGroup ------------------------------------------------------------------------------- */

static void join_reply(const struct group_join_req *req, int16_t err, const char *member_id)
{
	struct group_join_result r = { .error = err, .generation = -1, .leader = "",
				       .member_id = member_id ? member_id : "" };
	req->done(req->ctx, &r);
}

/* join_reply with the request's own member id (NUL-terminated copy for the callback). */
static void join_reply_own(const struct group_join_req *req, int16_t err)
{
	struct gstr id;
	if (gstr_setk(&id, req->member_id.len < 0 ? KSTR_LIT("") : req->member_id) < 0) {
		join_reply(req, err, "");
		return;
	}
	join_reply(req, err, id.p);
	gstr_free(&id);
}

static bool accept_joining_member(const struct ggroup *g, struct kstr member_id)
{
	int64_t max = cfg_int(g->gc->conf, BC_GROUP_MAX_SIZE);
	const struct gmember *m = member_id.len > 0 ? member_find(g, member_id) : NULL;
	switch (g->state) {
	case GS_PREPARING:
		return (m && m->join_done) || g->n_awaiting_join < max;
	case GS_COMPLETING:
	case GS_STABLE:
		return m || g->n_members < max;
	default:
		return true;
	}
}

/* GroupMetadata.updateMember */
static int update_member(struct gmember *m, const struct group_join_req *req)
{
	struct gproto *np;
	if (protos_copy(req->protocols, req->n_protocols, &np) < 0)
		return -ENOMEM;
	protos_free(m->protos, m->n_protos);
	m->protos = np;
	m->n_protos = req->n_protocols;
	m->rebalance_timeout_ms = req->rebalance_timeout_ms;
	m->session_timeout_ms = req->session_timeout_ms;
	member_park_join(m, req);
	return 0;
}

static void add_member_and_rebalance(struct ggroup *g, const struct group_join_req *req, struct gstr *id)
{
	struct gmember *m = member_new(g, id, req);
	if (!m || group_add_member(g, m) < 0) {
		if (m)
			member_free(m);
		join_reply(req, KERR_UNKNOWN_SERVER_ERROR, "");
		return;
	}
	m->is_new = true;
	if (g->state == GS_PREPARING && g->generation == 0)
		g->new_member_added = true;
	member_park_join(m, req);
	/* New members have no id to heartbeat with and cannot be seen disconnecting while
	 * parked; a bounded wait keeps defunct ones from piling up (Kafka: 5 minutes). */
	member_hb_schedule(m, GROUP_NEW_MEMBER_JOIN_TIMEOUT_MS);
	maybe_prepare_rebalance(g);
}

static void update_member_and_rebalance(struct ggroup *g, struct gmember *m, const struct group_join_req *req)
{
	if (update_member(m, req) < 0) {
		join_reply_own(req, KERR_UNKNOWN_SERVER_ERROR);
		return;
	}
	maybe_prepare_rebalance(g);
}

/* GroupCoordinator.updateStaticMemberAndRebalance: a known static member joins with an unknown
 * member id (its restart): it takes over the member, fencing the old id. */
static void update_static_member(struct ggroup *g, struct gmember *m, struct gstr *new_id,
				 const struct group_join_req *req)
{
	struct gstr old_leader = { NULL, -1 };
	if (g->leader && gstr_set(&old_leader, g->leader->id.p, g->leader->id.len) < 0) {
		join_reply(req, KERR_UNKNOWN_SERVER_ERROR, "");
		return;
	}
	/* GroupMetadata.replaceStaticMember: requests parked under the old id are fenced */
	member_answer_join_error(m, m->id.p, KERR_FENCED_INSTANCE_ID);
	member_answer_sync_error(m, KERR_FENCED_INSTANCE_ID);
	slog_info("group", "group=%s: static member %s rejoins as %s (was %s, state %s)", g->id.p,
		  m->instance_id.p, new_id->p, m->id.p, gstate_names[g->state]);
	gstr_free(&m->id);
	m->id = *new_id;
	*new_id = (struct gstr){ NULL, -1 };
	member_hb_schedule(m, m->session_timeout_ms);
	if (update_member(m, req) < 0) {
		gstr_free(&old_leader);
		join_reply(req, KERR_UNKNOWN_SERVER_ERROR, "");
		return;
	}
	switch (g->state) {
	case GS_STABLE: {
		const struct gstr *sel = group_select_protocol(g);
		if (sel && gstr_eq(&g->protocol_name, sel)) {
			/* no rebalance: persist the new member id, then answer (store_finish) */
			store_group(g, STORE_STATIC_JOIN, NULL, 0, m, &old_leader);
		} else {
			maybe_prepare_rebalance(g);
		}
		break;
	}
	case GS_COMPLETING:
		/* the leader may be assigning with the old id: start over */
		prepare_rebalance(g);
		break;
	default:
		break; /* PreparingRebalance: joins with the others */
	}
	gstr_free(&old_leader);
}

static void do_new_member_join(struct ggroup *g, const struct group_join_req *req)
{
	if (g->state == GS_DEAD) {
		join_reply(req, KERR_COORDINATOR_NOT_AVAILABLE, "");
		return;
	}
	if (!group_supports(g, req->protocol_type, req->protocols, req->n_protocols)) {
		join_reply(req, KERR_INCONSISTENT_GROUP_PROTOCOL, "");
		return;
	}
	struct gstr id;
	struct kstr prefix = req->instance_id.len >= 0 ? req->instance_id : req->client_id;
	if (member_id_new(prefix, &id) < 0) {
		join_reply(req, KERR_UNKNOWN_SERVER_ERROR, "");
		return;
	}
	if (req->instance_id.len >= 0) {
		struct gmember *old = member_find_static(g, req->instance_id);
		if (old)
			update_static_member(g, old, &id, req);
		else
			add_member_and_rebalance(g, req, &id);
	} else if (req->require_known_member_id) {
		/* MEMBER_ID_REQUIRED: the id is reserved for one session timeout */
		struct gstr reply;
		if (gstr_set(&reply, id.p, id.len) < 0 || pending_add(g, &id, req->session_timeout_ms) < 0) {
			gstr_free(&reply);
			join_reply(req, KERR_UNKNOWN_SERVER_ERROR, "");
		} else {
			join_reply(req, KERR_MEMBER_ID_REQUIRED, reply.p);
			gstr_free(&reply);
		}
	} else {
		add_member_and_rebalance(g, req, &id);
	}
	gstr_free(&id);
}

/* GroupCoordinator.validateCurrentMember */
static int16_t validate_current_member(const struct ggroup *g, struct kstr member_id, struct kstr instance_id)
{
	if (instance_id.len >= 0) {
		const struct gmember *m = member_find_static(g, instance_id);
		if (!m)
			return KERR_UNKNOWN_MEMBER_ID;
		if (!gstr_eqk(&m->id, member_id))
			return KERR_FENCED_INSTANCE_ID;
		return KERR_NONE;
	}
	return member_find(g, member_id) ? KERR_NONE : KERR_UNKNOWN_MEMBER_ID;
}

static void do_current_member_join(struct ggroup *g, const struct group_join_req *req)
{
	if (g->state == GS_DEAD) {
		join_reply_own(req, KERR_COORDINATOR_NOT_AVAILABLE);
		return;
	}
	if (!group_supports(g, req->protocol_type, req->protocols, req->n_protocols)) {
		join_reply_own(req, KERR_INCONSISTENT_GROUP_PROTOCOL);
		return;
	}
	if (pending_find(g, req->member_id) >= 0) {
		if (req->instance_id.len >= 0) {
			/* Kafka: IllegalStateException (a pending id is never a static member's) */
			join_reply_own(req, KERR_UNKNOWN_SERVER_ERROR);
			return;
		}
		struct gstr id;
		if (gstr_setk(&id, req->member_id) < 0) {
			join_reply(req, KERR_UNKNOWN_SERVER_ERROR, "");
			return;
		}
		add_member_and_rebalance(g, req, &id);
		gstr_free(&id);
		return;
	}
	int16_t err = validate_current_member(g, req->member_id, req->instance_id);
	if (err != KERR_NONE) {
		join_reply_own(req, err);
		return;
	}
	struct gmember *m = member_find(g, req->member_id);
	switch (g->state) {
	case GS_PREPARING:
		update_member_and_rebalance(g, m, req);
		break;
	case GS_COMPLETING:
		if (member_matches(m, req->protocols, req->n_protocols)) {
			/* it missed its JoinGroup response: the same answer again */
			member_park_join(m, req);
			if (!answer_join_ok(g, m, g->leader == m, false, g->leader ? g->leader->id.p : ""))
				member_answer_join_error(m, m->id.p, KERR_UNKNOWN_SERVER_ERROR);
		} else {
			update_member_and_rebalance(g, m, req);
		}
		break;
	case GS_STABLE:
		if (g->leader == m || !member_matches(m, req->protocols, req->n_protocols)) {
			/* the leader rejoining asks for a rebalance (e.g. topic metadata changed) */
			update_member_and_rebalance(g, m, req);
		} else {
			member_park_join(m, req);
			if (!answer_join_ok(g, m, false, false, g->leader ? g->leader->id.p : ""))
				member_answer_join_error(m, m->id.p, KERR_UNKNOWN_SERVER_ERROR);
		}
		break;
	default:
		join_reply_own(req, KERR_UNKNOWN_MEMBER_ID);
		break;
	}
}

void group_join(struct group_coordinator *gc, const struct group_join_req *req)
{
	if (kstr_null_or_empty(req->group_id)) {
		join_reply_own(req, KERR_INVALID_GROUP_ID);
		return;
	}
	if (gc->stopped) {
		join_reply_own(req, KERR_NOT_COORDINATOR);
		return;
	}
	if (group_coordinator_ensure_topic(gc) != KERR_NONE) {
		join_reply_own(req, KERR_COORDINATOR_NOT_AVAILABLE);
		return;
	}
	if (req->session_timeout_ms < cfg_int(gc->conf, BC_GROUP_MIN_SESSION_TIMEOUT_MS) ||
	    req->session_timeout_ms > cfg_int(gc->conf, BC_GROUP_MAX_SESSION_TIMEOUT_MS)) {
		join_reply_own(req, KERR_INVALID_SESSION_TIMEOUT);
		return;
	}
	bool unknown = req->member_id.len <= 0;
	struct ggroup *g = group_find(gc, req->group_id);
	if (!g) {
		if (!unknown) {
			join_reply_own(req, KERR_UNKNOWN_MEMBER_ID);
			return;
		}
		g = group_create(gc, req->group_id);
		if (!g) {
			join_reply(req, KERR_UNKNOWN_SERVER_ERROR, "");
			return;
		}
	}
	group_hold(g);
	if (!accept_joining_member(g, req->member_id)) {
		struct gmember *m = member_find(g, req->member_id);
		if (m)
			group_remove_member(g, m);
		join_reply(req, KERR_GROUP_MAX_SIZE_REACHED, "");
	} else if (unknown) {
		do_new_member_join(g, req);
	} else {
		do_current_member_join(g, req);
	}
	if (g->state == GS_PREPARING)
		try_complete_join(g);
	group_release(g);
}

/* --- SyncGroup, Heartbeat, LeaveGroup --------------------------------------------------------- */

static void sync_reply(const struct group_sync_req *req, int16_t err)
{
	struct group_sync_result r = { .error = err, .assignment = { (const uint8_t *)"", 0 } };
	req->done(req->ctx, &r);
}

void group_sync(struct group_coordinator *gc, const struct group_sync_req *req)
{
	if (kstr_null_or_empty(req->group_id)) {
		sync_reply(req, KERR_INVALID_GROUP_ID);
		return;
	}
	if (gc->stopped) {
		sync_reply(req, KERR_NOT_COORDINATOR);
		return;
	}
	struct ggroup *g = group_find(gc, req->group_id);
	if (!g) {
		sync_reply(req, KERR_UNKNOWN_MEMBER_ID);
		return;
	}
	int16_t err = g->state == GS_DEAD ? KERR_COORDINATOR_NOT_AVAILABLE
					  : validate_current_member(g, req->member_id, req->instance_id);
	if (err == KERR_NONE && req->generation != g->generation)
		err = KERR_ILLEGAL_GENERATION;
	if (err == KERR_NONE && req->protocol_type.len >= 0 && !gstr_eqk(&g->protocol_type, req->protocol_type))
		err = KERR_INCONSISTENT_GROUP_PROTOCOL;
	if (err == KERR_NONE && req->protocol_name.len >= 0 && !gstr_eqk(&g->protocol_name, req->protocol_name))
		err = KERR_INCONSISTENT_GROUP_PROTOCOL;
	if (err != KERR_NONE) {
		sync_reply(req, err);
		return;
	}
	struct gmember *m = member_find(g, req->member_id);
	switch (g->state) {
	case GS_EMPTY:
		sync_reply(req, KERR_UNKNOWN_MEMBER_ID);
		break;
	case GS_PREPARING:
		sync_reply(req, KERR_REBALANCE_IN_PROGRESS);
		break;
	case GS_COMPLETING: {
		member_answer_sync_error(m, KERR_REBALANCE_IN_PROGRESS); /* a superseded one */
		m->sync_done = req->done;
		m->sync_ctx = req->ctx;
		m->pending_sync = false;
		if (g->leader != m)
			break;
		slog_info("group", "group=%s: assignment from leader %s for generation %d (%d members)",
			  g->id.p, m->id.p, g->generation, g->n_members);
		struct gw_assign *as = calloc((size_t)req->n_assignments + 1, sizeof *as);
		if (!as) {
			reset_and_propagate_error(g, KERR_UNKNOWN_SERVER_ERROR);
			maybe_prepare_rebalance(g);
			break;
		}
		for (int32_t i = 0; i < req->n_assignments; i++) {
			as[i].member_id = (struct gstr){ (char *)(uintptr_t)req->assignments[i].member_id.p,
							 req->assignments[i].member_id.len };
			as[i].p = (uint8_t *)(uintptr_t)req->assignments[i].assignment.p;
			as[i].len = req->assignments[i].assignment.len < 0 ? 0 : req->assignments[i].assignment.len;
		}
		/* members the leader left out get an empty assignment (assign_find misses) */
		store_group(g, STORE_SYNC, as, req->n_assignments, NULL, NULL);
		free(as);
		break;
	}
	case GS_STABLE: {
		m->pending_sync = false;
		struct group_sync_result r = {
			.error = KERR_NONE,
			.protocol_type = g->protocol_type.p,
			.protocol_name = g->protocol_name.p,
			.assignment = { m->assignment, m->assignment_len },
		};
		req->done(req->ctx, &r);
		member_hb_schedule(m, m->session_timeout_ms);
		break;
	}
	default:
		sync_reply(req, KERR_COORDINATOR_NOT_AVAILABLE);
		break;
	}
}

int group_heartbeat(struct group_coordinator *gc, struct kstr group_id, struct kstr member_id,
		    struct kstr instance_id, int32_t generation)
{
	if (kstr_null_or_empty(group_id))
		return KERR_INVALID_GROUP_ID;
	if (gc->stopped)
		return KERR_NOT_COORDINATOR;
	struct ggroup *g = group_find(gc, group_id);
	if (!g)
		return KERR_UNKNOWN_MEMBER_ID;
	if (g->state == GS_DEAD)
		return KERR_COORDINATOR_NOT_AVAILABLE;
	int16_t err = validate_current_member(g, member_id, instance_id);
	if (err != KERR_NONE)
		return err;
	if (generation != g->generation)
		return KERR_ILLEGAL_GENERATION;
	struct gmember *m = member_find(g, member_id);
	switch (g->state) {
	case GS_EMPTY:
		return KERR_UNKNOWN_MEMBER_ID;
	case GS_PREPARING:
		member_hb_schedule(m, m->session_timeout_ms);
		return KERR_REBALANCE_IN_PROGRESS;
	default:
		member_hb_schedule(m, m->session_timeout_ms);
		return KERR_NONE;
	}
}

int group_leave(struct group_coordinator *gc, struct kstr group_id, struct group_leave_member *members,
		int32_t n_members)
{
	if (kstr_null_or_empty(group_id))
		return KERR_INVALID_GROUP_ID;
	if (gc->stopped)
		return KERR_NOT_COORDINATOR;
	struct ggroup *g = group_find(gc, group_id);
	if (!g) {
		for (int32_t i = 0; i < n_members; i++)
			members[i].error = KERR_UNKNOWN_MEMBER_ID;
		return KERR_NONE;
	}
	if (g->state == GS_DEAD)
		return KERR_COORDINATOR_NOT_AVAILABLE;
	group_hold(g);
	for (int32_t i = 0; i < n_members; i++) {
		struct group_leave_member *lm = &members[i];
		struct gmember *m = NULL;
		int32_t pi;
		if (lm->member_id.len <= 0) {
			/* administrative removal by group.instance.id */
			m = member_find_static(g, lm->instance_id);
			lm->error = m ? KERR_NONE : KERR_UNKNOWN_MEMBER_ID;
		} else if ((pi = pending_find(g, lm->member_id)) >= 0) {
			pending_remove_at(g, pi);
			lm->error = KERR_NONE;
			if (g->state == GS_PREPARING)
				try_complete_join(g);
			continue;
		} else {
			lm->error = validate_current_member(g, lm->member_id, lm->instance_id);
			if (lm->error == KERR_NONE)
				m = member_find(g, lm->member_id);
		}
		if (m) {
			slog_info("group", "group=%s: member %s left", g->id.p, m->id.p);
			remove_member_and_update(g, m);
		}
	}
	group_release(g);
	return KERR_NONE;
}

/* --- offsets ----------------------------------------------------------------------------------- */

/* OffsetCommit v2-4's retention: an explicit expiry (-1: none, the broker's retention). */
static int64_t expire_at(int64_t now_ms, int64_t retention_ms)
{
	if (retention_ms < 0)
		return -1;
	return retention_ms > INT64_MAX - now_ms ? INT64_MAX : now_ms + retention_ms;
}

static void commit_finish(struct gwrite *w, int kerr)
{
	struct group_commit_req *req = w->commit;
	struct ggroup *g = w->g;
	int16_t err = commit_error(kerr);
	int32_t applied = 0;
	for (int32_t i = 0; i < req->n_parts; i++) {
		struct group_commit_part *p = &req->parts[i];
		if (p->error != KERR_NONE)
			continue; /* not in this write */
		p->error = err;
		if (err != KERR_NONE || g->state == GS_DEAD)
			continue;
		int64_t ts = p->commit_ts_ms >= 0 ? p->commit_ts_ms : w->now_ms;
		int64_t expire = expire_at(w->now_ms, req->retention_ms);
		if (offset_put(g, p->topic, p->partition, p->offset, p->leader_epoch, p->metadata, ts, expire) < 0)
			slog_error("group", "group=%s: out of memory keeping a committed offset", g->id.p);
		applied++;
	}
	w->gc->stats.commits += applied;
	req->done(req->ctx);
}

static void commit_all(struct group_commit_req *req, int16_t err)
{
	for (int32_t i = 0; i < req->n_parts; i++)
		if (req->parts[i].error == KERR_NONE)
			req->parts[i].error = err;
	req->done(req->ctx);
}

void group_commit_offsets(struct group_coordinator *gc, struct group_commit_req *req)
{
	/* topics Kafka refuses before the coordinator sees them */
	struct topic *t = NULL;
	for (int32_t i = 0; i < req->n_parts; i++) {
		struct group_commit_part *p = &req->parts[i];
		p->error = KERR_NONE;
		if (!t || !kstr_eq_c(p->topic, t->name))
			t = p->topic.len > 0 ? broker_find_topic(gc->b, p->topic.p, (size_t)p->topic.len) : NULL;
		if (!t || p->partition < 0 || p->partition >= t->n_partitions)
			p->error = KERR_UNKNOWN_TOPIC_OR_PARTITION;
	}
	if (kstr_is_null(req->group_id)) {
		commit_all(req, KERR_INVALID_GROUP_ID);
		return;
	}
	if (gc->stopped) {
		commit_all(req, KERR_NOT_COORDINATOR);
		return;
	}
	if (group_coordinator_ensure_topic(gc) != KERR_NONE) {
		commit_all(req, KERR_COORDINATOR_NOT_AVAILABLE);
		return;
	}
	struct ggroup *g = group_find(gc, req->group_id);
	if (!g) {
		if (req->generation >= 0) {
			/* a commit from an older generation of a group that is gone */
			commit_all(req, KERR_ILLEGAL_GENERATION);
			return;
		}
		g = group_create(gc, req->group_id);
		if (!g) {
			commit_all(req, KERR_UNKNOWN_SERVER_ERROR);
			return;
		}
		slog_info("group", "group=%s: created by an offset commit (simple consumer)", g->id.p);
	}
	/* GroupCoordinator.validateOffsetCommit */
	int16_t err = KERR_NONE;
	if (g->state == GS_DEAD) {
		err = KERR_COORDINATOR_NOT_AVAILABLE;
	} else if (req->generation < 0 && g->state == GS_EMPTY) {
		err = KERR_NONE; /* admin clients and consumers without group management */
	} else if (req->generation >= 0 || req->member_id.len > 0 || req->instance_id.len >= 0) {
		err = validate_current_member(g, req->member_id, req->instance_id);
		if (err == KERR_NONE && req->generation != g->generation)
			err = KERR_ILLEGAL_GENERATION;
	} else if (g->state != GS_EMPTY) {
		err = KERR_UNKNOWN_MEMBER_ID; /* only members commit for a non-empty group */
	}
	if (err == KERR_NONE && g->state == GS_COMPLETING)
		err = KERR_REBALANCE_IN_PROGRESS;
	if (err != KERR_NONE) {
		commit_all(req, err);
		return;
	}
	if (g->state == GS_STABLE || g->state == GS_PREPARING) {
		struct gmember *m = member_find(g, req->member_id);
		if (m)
			member_hb_schedule(m, m->session_timeout_ms);
	}
	/* GroupMetadataManager.storeOffsets */
	int64_t max_md = cfg_int(gc->conf, BC_OFFSET_METADATA_MAX_BYTES);
	struct gwrite *w = gw_new(gc, g, g->part, GW_COMMIT);
	if (!w) {
		commit_all(req, KERR_UNKNOWN_SERVER_ERROR);
		return;
	}
	w->commit = req;
	struct gbuild b;
	struct kw key, val;
	gb_init(&b, w->now_ms, SIZE_MAX);
	kw_init(&key, 128);
	kw_init(&val, 128);
	for (int32_t i = 0; i < req->n_parts; i++) {
		struct group_commit_part *p = &req->parts[i];
		if (p->error != KERR_NONE)
			continue;
		if (p->metadata.len > max_md) {
			p->error = KERR_OFFSET_METADATA_TOO_LARGE;
			continue;
		}
		int64_t ts = p->commit_ts_ms >= 0 ? p->commit_ts_ms : w->now_ms;
		int64_t expire = expire_at(w->now_ms, req->retention_ms);
		enc_offset_key(&key, req->group_id, p->topic, p->partition);
		enc_offset_value(&val, p->offset, p->leader_epoch, p->metadata, ts, expire);
		gb_add(&b, &key, &val);
	}
	kw_free(&key);
	kw_free(&val);
	int rc = gb_finish(&b, &w->buf, &w->len, &w->n_records);
	if (rc < 0 || w->n_records == 0) {
		if (rc < 0)
			slog_error("group", "group=%s: cannot build the commit: %s", g->id.p, strerror(-rc));
		gw_finish(w, rc < 0 ? KERR_UNKNOWN_SERVER_ERROR : KERR_NONE);
		return;
	}
	gw_submit(w);
}

int group_fetch_check(struct group_coordinator *gc, struct kstr group_id)
{
	if (kstr_is_null(group_id))
		return KERR_INVALID_GROUP_ID;
	if (gc->stopped)
		return KERR_NOT_COORDINATOR;
	return KERR_NONE;
}

static void fill_offset(const struct goffset *o, struct group_offset *out)
{
	out->topic = o->topic.p;
	out->partition = o->partition;
	out->offset = o->offset;
	out->leader_epoch = o->leader_epoch;
	out->metadata = o->metadata.p ? o->metadata.p : "";
}

void group_fetch_offset(struct group_coordinator *gc, struct kstr group_id, struct kstr topic,
			int32_t partition, struct group_offset *out)
{
	out->topic = NULL;
	out->partition = partition;
	out->offset = -1;
	out->leader_epoch = -1;
	out->metadata = "";
	struct ggroup *g = group_find(gc, group_id);
	if (!g || g->state == GS_DEAD)
		return;
	bool found;
	int32_t i = offsets_find(g, topic, partition, &found);
	if (found)
		fill_offset(&g->offsets[i], out);
}

void group_foreach_offset(struct group_coordinator *gc, struct kstr group_id,
			  void (*fn)(void *ctx, const struct group_offset *o), void *ctx)
{
	struct ggroup *g = group_find(gc, group_id);
	if (!g || g->state == GS_DEAD)
		return;
	for (int32_t i = 0; i < g->n_offsets; i++) {
		struct group_offset o;
		fill_offset(&g->offsets[i], &o);
		fn(ctx, &o);
	}
}

/* Tombstone writes: offsets (and a dead group's record) are removed from memory first, as
 * Kafka's cleanupGroupMetadata does, then their tombstones are appended. */
static struct gwrite *tombstones_begin(struct ggroup *g, struct gbuild *b)
{
	struct gwrite *w = gw_new(g->gc, g, g->part, GW_TOMBSTONES);
	if (w)
		gb_init(b, w->now_ms, GROUP_BATCH_MAX_BYTES);
	return w;
}

static void tomb_offset(struct gbuild *b, const struct ggroup *g, const struct goffset *o)
{
	struct kw key;
	kw_init(&key, 128);
	enc_offset_key(&key, gstr_k(&g->id), gstr_k(&o->topic), o->partition);
	gb_add(b, &key, NULL);
	kw_free(&key);
}

static void tomb_group(struct gbuild *b, const struct ggroup *g)
{
	struct kw key;
	kw_init(&key, 64);
	enc_group_key(&key, gstr_k(&g->id));
	gb_add(b, &key, NULL);
	kw_free(&key);
}

/* Finishes and submits (or completes at once when empty or failed). */
static void tombstones_submit(struct gwrite *w, struct gbuild *b)
{
	int rc = gb_finish(b, &w->buf, &w->len, &w->n_records);
	if (rc < 0 || w->n_records == 0) {
		if (rc < 0)
			slog_error("group", "group=%s: cannot build tombstones: %s", w->g->id.p, strerror(-rc));
		gw_finish(w, rc < 0 ? KERR_UNKNOWN_SERVER_ERROR : KERR_NONE);
		return;
	}
	gw_submit(w);
}

static void tombstones_finish(struct gwrite *w, int kerr)
{
	int16_t err = store_error(kerr);
	if (kerr != KERR_NONE)
		slog_warn("group", "group=%s: tombstones not written: %s", w->g->id.p, kerr_name(kerr));
	if (w->oparts) {
		for (int32_t i = 0; i < w->n_oparts; i++)
			if (w->oparts[i].error == KERR_NONE)
				w->oparts[i].error = err;
	}
	if (w->odel_done)
		w->odel_done(w->odel_ctx);
	if (w->del_done)
		w->del_done(w->del_ctx, err);
}

void group_delete(struct group_coordinator *gc, struct kstr group_id,
		  void (*done)(void *ctx, int16_t error), void *ctx)
{
	if (kstr_is_null(group_id)) {
		done(ctx, KERR_INVALID_GROUP_ID);
		return;
	}
	if (gc->stopped) {
		done(ctx, KERR_NOT_COORDINATOR);
		return;
	}
	struct ggroup *g = group_find(gc, group_id);
	if (!g || g->state == GS_DEAD) {
		done(ctx, KERR_GROUP_ID_NOT_FOUND);
		return;
	}
	if (g->state != GS_EMPTY) {
		done(ctx, KERR_NON_EMPTY_GROUP);
		return;
	}
	group_hold(g);
	struct gbuild b;
	struct gwrite *w = tombstones_begin(g, &b);
	if (!w) {
		group_release(g);
		done(ctx, KERR_UNKNOWN_SERVER_ERROR);
		return;
	}
	for (int32_t i = 0; i < g->n_offsets; i++)
		tomb_offset(&b, g, &g->offsets[i]);
	if (g->stored)
		tomb_group(&b, g);
	slog_info("group", "group=%s: deleted (%d offsets)", g->id.p, g->n_offsets);
	group_kill(g);
	w->del_done = done;
	w->del_ctx = ctx;
	tombstones_submit(w, &b);
	group_release(g);
}

int group_delete_offsets(struct group_coordinator *gc, struct kstr group_id,
			 struct group_offset_delete_part *parts, int32_t n_parts,
			 void (*done)(void *ctx), void *ctx)
{
	if (kstr_null_or_empty(group_id))
		return KERR_INVALID_GROUP_ID;
	if (gc->stopped)
		return KERR_NOT_COORDINATOR;
	struct ggroup *g = group_find(gc, group_id);
	if (!g || g->state == GS_DEAD)
		return KERR_GROUP_ID_NOT_FOUND;
	bool consumer = gstr_eqk(&g->protocol_type, KSTR_LIT(GROUP_CONSUMER_PROTOCOL));
	if (g->state != GS_EMPTY && !consumer)
		return KERR_NON_EMPTY_GROUP;
	group_hold(g);
	struct gbuild b;
	struct gwrite *w = tombstones_begin(g, &b);
	if (!w) {
		group_release(g);
		return KERR_UNKNOWN_SERVER_ERROR;
	}
	int32_t removed = 0;
	for (int32_t i = 0; i < n_parts; i++) {
		struct group_offset_delete_part *p = &parts[i];
		struct topic *t = p->topic.len > 0 ? broker_find_topic(gc->b, p->topic.p, (size_t)p->topic.len) : NULL;
		p->error = KERR_NONE;
		if (!t || p->partition < 0 || p->partition >= t->n_partitions) {
			p->error = KERR_UNKNOWN_TOPIC_OR_PARTITION;
			continue;
		}
		bool known;
		if (g->state != GS_EMPTY && group_subscribes(g, p->topic, &known)) {
			p->error = KERR_GROUP_SUBSCRIBED_TO_TOPIC;
			continue;
		}
		bool found;
		int32_t oi = offsets_find(g, p->topic, p->partition, &found);
		if (found) {
			tomb_offset(&b, g, &g->offsets[oi]);
			offset_remove_at(g, oi);
			removed++;
		}
	}
	if (g->state == GS_EMPTY && g->n_offsets == 0) {
		if (g->stored)
			tomb_group(&b, g);
		group_kill(g);
	}
	slog_info("group", "group=%s: %d offsets deleted", g->id.p, removed);
	w->odel_done = done;
	w->odel_ctx = ctx;
	w->oparts = parts;
	w->n_oparts = n_parts;
	tombstones_submit(w, &b);
	group_release(g);
	return KERR_NONE;
}

/* --- expiry ------------------------------------------------------------------------------------ */

/* GroupMetadata.removeExpiredOffsets + GroupMetadataManager.cleanupGroupMetadata */
static int32_t expire_group(struct ggroup *g, int64_t now_ms, int64_t retention_ms)
{
	if (g->refs > 0)
		return 0; /* writes in flight (commits pending): next round */
	enum { NONE, ALL_SINCE_EMPTY, BY_COMMIT_UNSUBSCRIBED, BY_COMMIT } mode = NONE;
	if (g->protocol_type.len >= 0 && g->state == GS_EMPTY)
		mode = ALL_SINCE_EMPTY;
	else if (g->protocol_type.len >= 0 && g->state == GS_STABLE &&
		 gstr_eqk(&g->protocol_type, KSTR_LIT(GROUP_CONSUMER_PROTOCOL)))
		mode = BY_COMMIT_UNSUBSCRIBED;
	else if (g->protocol_type.len < 0)
		mode = BY_COMMIT;
	bool empty_no_offsets = g->state == GS_EMPTY && g->n_offsets == 0;
	if (mode == NONE && !empty_no_offsets)
		return 0;
	group_hold(g);
	struct gbuild b;
	struct gwrite *w = tombstones_begin(g, &b);
	if (!w) {
		group_release(g);
		return 0;
	}
	int32_t expired = 0;
	for (int32_t i = 0; mode != NONE && i < g->n_offsets;) {
		const struct goffset *o = &g->offsets[i];
		bool known, subscribed = false;
		if (mode == BY_COMMIT_UNSUBSCRIBED) {
			subscribed = group_subscribes(g, gstr_k(&o->topic), &known);
			if (!known)
				break; /* Kafka: only with known subscriptions */
		}
		int64_t base = mode == ALL_SINCE_EMPTY && g->state_ts_ms >= 0 ? g->state_ts_ms : o->commit_ts_ms;
		bool gone = !subscribed && (o->expire_ts_ms >= 0 ? now_ms >= o->expire_ts_ms
							       : now_ms - base >= retention_ms);
		if (!gone) {
			i++;
			continue;
		}
		tomb_offset(&b, g, o);
		offset_remove_at(g, i);
		expired++;
	}
	if (g->state == GS_EMPTY && g->n_offsets == 0) {
		slog_info("group", "group=%s: empty without offsets: removed", g->id.p);
		if (g->stored)
			tomb_group(&b, g);
		group_kill(g);
	}
	if (expired)
		slog_info("group", "group=%s: %d offsets expired", g->id.p, expired);
	tombstones_submit(w, &b);
	group_release(g);
	return expired;
}

int group_expire_offsets(struct group_coordinator *gc, int64_t now_ms)
{
	if (gc->stopped)
		return 0;
	int64_t retention_ms = cfg_int(gc->conf, BC_OFFSETS_RETENTION_MINUTES) * 60000;
	struct ggroup **all = calloc((size_t)gc->n_groups + 1, sizeof *all);
	if (!all)
		return 0;
	uint32_t n = 0;
	for (uint32_t bi = 0; bi < gc->n_buckets; bi++)
		for (struct ggroup *g = gc->buckets[bi]; g; g = g->hash_next)
			all[n++] = g;
	int total = 0;
	for (uint32_t i = 0; i < n; i++)
		total += expire_group(all[i], now_ms, retention_ms);
	free(all);
	gc->stats.expired_offsets += total;
	return total;
}

static void on_expire_timer(struct uring_timer *t)
{
	struct group_coordinator *gc = ST_CONTAINER_OF(t, struct group_coordinator, expire_timer);
	group_expire_offsets(gc, st_now_ms());
	gtimer_arm(gc, &gc->expire_timer, cfg_ms(gc, BC_OFFSETS_RETENTION_CHECK_MS));
}

/* --- snapshots ----------------------------------------------------------------------------------- */

static bool snap_due(const struct group_coordinator *gc, const struct gpart *p)
{
	return p->records > 2 * p->live + cfg_int(gc->conf, BC_OFFSETS_TOPIC_SNAPSHOT_RECORDS);
}

static void snap_check(struct group_coordinator *gc, int32_t pi)
{
	struct gpart *p = &gc->parts[pi];
	if (gc->stopped || p->snap_waiting || p->snap_inflight || !snap_due(gc, p))
		return;
	p->snap_waiting = true;
	if (p->inflight == 0)
		gtimer_arm(gc, &gc->maint_timer, 0);
}

/* The live state of partition pi as one write. Quiet partition: memory equals the log. */
static void snapshot_run(struct group_coordinator *gc, int32_t pi)
{
	struct gpart *p = &gc->parts[pi];
	struct log *l = gc->topic->parts[pi]->log;
	p->snap_waiting = false;
	struct gwrite *w = gw_new(gc, NULL, pi, GW_SNAPSHOT);
	struct gbuild b;
	struct kw key, val;
	gb_init(&b, st_now_ms(), GROUP_BATCH_MAX_BYTES);
	kw_init(&key, 128);
	kw_init(&val, 128);
	for (uint32_t bi = 0; w && bi < gc->n_buckets; bi++) {
		for (struct ggroup *g = gc->buckets[bi]; g; g = g->hash_next) {
			if (g->part != pi)
				continue;
			for (int32_t i = 0; i < g->n_offsets; i++) {
				const struct goffset *o = &g->offsets[i];
				enc_offset_key(&key, gstr_k(&g->id), gstr_k(&o->topic), o->partition);
				enc_offset_value(&val, o->offset, o->leader_epoch, gstr_k(&o->metadata),
						 o->commit_ts_ms, o->expire_ts_ms);
				gb_add(&b, &key, &val);
			}
			if (g->stored) {
				enc_group_key(&key, gstr_k(&g->id));
				kw_reset(&val);
				kw_raw(&val, g->stored, (size_t)g->stored_len);
				gb_add(&b, &key, &val);
			}
		}
	}
	kw_free(&key);
	kw_free(&val);
	uint8_t *buf = NULL;
	size_t len = 0;
	int32_t n = 0;
	int rc = gb_finish(&b, &buf, &len, &n);
	if (!w || rc < 0) {
		slog_error("group", "%s-%d: cannot build a snapshot: %s", GROUP_OFFSETS_TOPIC, pi,
			   strerror(rc < 0 ? -rc : ENOMEM));
		free(buf);
		if (w)
			gw_free(w);
		gw_flush_queue(gc, pi);
		return;
	}
	int64_t before = p->records;
	if (log_roll(l) < 0)
		slog_warn("group", "%s-%d: cannot roll before a snapshot", GROUP_OFFSETS_TOPIC, pi);
	if (n == 0) {
		/* nothing is live: everything written so far is superseded */
		gw_free(w);
		p->records = 0;
		p->delete_below = log_end_offset(l);
		gtimer_arm(gc, &gc->maint_timer, 0);
	} else {
		w->buf = buf;
		w->len = len;
		w->n_records = n;
		p->records = 0;
		p->snap_inflight = true;
		slog_info("group", "%s-%d: snapshot of %d live records (%" PRId64 " records in the log)",
			  GROUP_OFFSETS_TOPIC, pi, n, before);
		gw_append(w);
	}
	gw_flush_queue(gc, pi);
}

static void snapshot_finish(struct gwrite *w, int kerr)
{
	struct group_coordinator *gc = w->gc;
	struct gpart *p = &gc->parts[w->part];
	p->snap_inflight = false;
	if (kerr != KERR_NONE) {
		slog_warn("group", "%s-%d: snapshot not written: %s", GROUP_OFFSETS_TOPIC, w->part,
			  kerr_name(kerr));
		return;
	}
	gc->stats.snapshots++;
	p->delete_below = w->a.base_offset;
	gtimer_arm(gc, &gc->maint_timer, 0);
}

static void on_maint_timer(struct uring_timer *t)
{
	struct group_coordinator *gc = ST_CONTAINER_OF(t, struct group_coordinator, maint_timer);
	for (int32_t i = 0; i < gc->n_parts; i++) {
		struct gpart *p = &gc->parts[i];
		if (p->delete_below >= 0) {
			struct log *l = gc->topic->parts[i]->log;
			int err = log_delete_records(l, p->delete_below);
			if (err != KERR_NONE)
				slog_warn("group", "%s-%d: cannot move the log start to %" PRId64 ": %s",
					  GROUP_OFFSETS_TOPIC, i, p->delete_below, kerr_name(err));
			else
				slog_info("group", "%s-%d: log start now %" PRId64, GROUP_OFFSETS_TOPIC, i,
					  p->delete_below);
			p->delete_below = -1;
		}
		if (p->snap_waiting && p->inflight == 0 && !gc->stopped)
			snapshot_run(gc, i);
	}
}

int group_snapshot(struct group_coordinator *gc, bool force)
{
	int started = 0;
	if (gc->stopped)
		return 0;
	for (int32_t i = 0; i < gc->n_parts; i++) {
		struct gpart *p = &gc->parts[i];
		if (p->snap_waiting || p->snap_inflight || p->records == 0 || (!force && !snap_due(gc, p)))
			continue;
		p->snap_waiting = true;
		started++;
	}
	if (started)
		gtimer_arm(gc, &gc->maint_timer, 0);
	return started;
}

static void gw_finish(struct gwrite *w, int kerr)
{
	switch (w->kind) {
	case GW_COMMIT: commit_finish(w, kerr); break;
	case GW_STORE: store_finish(w, kerr); break;
	case GW_TOMBSTONES: tombstones_finish(w, kerr); break;
	case GW_SNAPSHOT: snapshot_finish(w, kerr); break;
	}
	gw_free(w);
}

/* --- listing, describing, lag, observation ----------------------------------------------------- */

void group_foreach(struct group_coordinator *gc, void (*fn)(void *ctx, const struct group_listing *g),
		   void *ctx)
{
	for (uint32_t bi = 0; bi < gc->n_buckets; bi++)
		for (struct ggroup *g = gc->buckets[bi]; g; g = g->hash_next) {
			if (g->state == GS_DEAD)
				continue;
			struct group_listing l = {
				.group_id = g->id.p,
				.protocol_type = g->protocol_type.p ? g->protocol_type.p : "",
				.state = gstate_names[g->state],
			};
			fn(ctx, &l);
		}
}

int group_describe(struct group_coordinator *gc, struct kstr group_id, struct group_summary *s,
		   void (*member_fn)(void *ctx, const struct group_member_summary *m), void *ctx)
{
	*s = (struct group_summary){ .state = "Dead", .protocol_type = "", .protocol_data = "",
				     .generation = -1, .leader = "" };
	if (kstr_is_null(group_id))
		return KERR_INVALID_GROUP_ID;
	if (gc->stopped)
		return KERR_NOT_COORDINATOR;
	struct ggroup *g = group_find(gc, group_id);
	if (!g || g->state == GS_DEAD)
		return KERR_NONE;
	bool stable = g->state == GS_STABLE;
	s->state = gstate_names[g->state];
	s->protocol_type = g->protocol_type.p ? g->protocol_type.p : "";
	s->protocol_data = stable && g->protocol_name.p ? g->protocol_name.p : "";
	s->generation = g->generation;
	s->leader = g->leader ? g->leader->id.p : "";
	s->n_members = g->n_members;
	for (int32_t i = 0; i < g->n_members; i++) {
		const struct gmember *m = g->members[i];
		struct group_member_summary ms = {
			.member_id = m->id.p,
			.instance_id = m->instance_id.p,
			.client_id = m->client_id.p,
			.client_host = m->client_host.p,
			.metadata = stable ? member_meta(m, &g->protocol_name) : (struct kbytes){ (const uint8_t *)"", 0 },
			.assignment = stable ? (struct kbytes){ m->assignment, m->assignment_len }
					     : (struct kbytes){ (const uint8_t *)"", 0 },
		};
		member_fn(ctx, &ms);
	}
	return KERR_NONE;
}

int group_lag(struct group_coordinator *gc, const char *group_id,
	      void (*fn)(void *ctx, const struct group_lag_row *row), void *ctx)
{
	struct ggroup *g = group_find(gc, kstr_c(group_id));
	if (!g || g->state == GS_DEAD)
		return KERR_GROUP_ID_NOT_FOUND;
	for (int32_t i = 0; i < g->n_offsets; i++) {
		const struct goffset *o = &g->offsets[i];
		struct partition *p = broker_find_partition(gc->b, o->topic.p, (size_t)o->topic.len, o->partition);
		struct group_lag_row row = { .topic = o->topic.p, .partition = o->partition,
					     .committed = o->offset, .log_end = -1, .lag = -1 };
		if (p) {
			row.log_end = log_high_watermark(p->log);
			row.lag = o->offset >= 0 ? ST_MAX(row.log_end - o->offset, 0) : -1;
		}
		fn(ctx, &row);
	}
	return KERR_NONE;
}

void group_get_stats(const struct group_coordinator *gc, struct group_stats *out)
{
	*out = gc->stats;
	out->groups = gc->n_groups;
	out->members = gc->n_members;
	out->offsets = gc->n_offsets;
}

const char *group_state_of(struct group_coordinator *gc, const char *group_id, int32_t *generation)
{
	struct ggroup *g = group_find(gc, kstr_c(group_id));
	if (!g) {
		if (generation)
			*generation = -1;
		return "Dead";
	}
	if (generation)
		*generation = g->generation;
	return gstate_names[g->state];
}
