/* kafka_admin.c -- the Kafka admin APIs: CreateTopics, DeleteTopics, CreatePartitions,
 * DeleteRecords, DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, OffsetForLeaderEpoch
 * and InitProducerId (producer id allocation, persisted in blocks under log.dirs).
 * Decides what a request means in Kafka's terms and answers it; the broker (broker.h) does the
 * work on topics and config.c validates settings. Runs on the reactor thread. CreateTopics,
 * DeleteTopics, CreatePartitions, AlterConfigs and IncrementalAlterConfigs park their request
 * while the broker's topic worker does the file work (broker.h, *_async) and answer when every
 * resource's operation ended (validate_only never reaches the worker); the rest blocks only for
 * the rare producer-id block reservation (one small fsynced file write per 1000 ids). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kafka_int.h"
#include "strata/common.h"
#include "strata/slog.h"

/* Kafka's ConfigResource.Type ids. */
enum { RES_TOPIC = 2, RES_BROKER = 4 };
/* Kafka's DescribeConfigsResponse.ConfigSource ids. */
enum { SRC_DYNAMIC_TOPIC = 1, SRC_STATIC_BROKER = 4, SRC_DEFAULT = 5 };
/* IncrementalAlterConfigs operations. */
enum { OP_SET = 0, OP_DELETE = 1, OP_APPEND = 2, OP_SUBTRACT = 3 };

#define ADMIN_MSG_MAX 1024
#define ADMIN_SYNONYMS_MAX 8

/* --- arena strings ----------------------------------------------------------------------- */

/* Response strings must outlive the topic (DeleteTopics frees it) and any local buffer: every
 * one is copied into the request's arena. Allocation failures are collected in *oom and the
 * handler gives up once, at the end, instead of checking at every call site. */
static struct kstr astr(struct kreq *q, const char *s, bool *oom)
{
	if (!s)
		return KSTR_NULL;
	size_t n = strlen(s);
	if (n > KIO_STRING_MAX)
		n = KIO_STRING_MAX;
	char *p = arena_alloc(&q->arena, n + 1);
	if (!p) {
		*oom = true;
		return KSTR_NULL;
	}
	memcpy(p, s, n);
	p[n] = 0;
	return (struct kstr){ p, (int32_t)n };
}

static struct kstr afmt(struct kreq *q, bool *oom, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static struct kstr afmt(struct kreq *q, bool *oom, const char *fmt, ...)
{
	char buf[ADMIN_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	return astr(q, buf, oom);
}

/* A NUL-terminated copy of a wire string (NULL for the null string or out of memory). */
static char *acstr(struct kreq *q, struct kstr s, bool *oom)
{
	if (s.len < 0)
		return NULL;
	char *p = arena_alloc(&q->arena, (size_t)s.len + 1);
	if (!p) {
		*oom = true;
		return NULL;
	}
	memcpy(p, s.p, (size_t)s.len);
	p[s.len] = 0;
	return p;
}

/* Wire strings may hold NULs; Kafka names never do, and such a name must not match. */
static bool kstr_has_nul(struct kstr s)
{
	return s.len > 0 && memchr(s.p, 0, (size_t)s.len) != NULL;
}

static int shown_len(struct kstr s) { return s.len < 0 ? 0 : (int)ST_MIN(s.len, 249); }

struct dup_ent {
	struct kstr key;
	int32_t idx;
};

static int dup_cmp(const void *a, const void *b)
{
	const struct dup_ent *x = a, *y = b;
	if (x->key.len != y->key.len)
		return x->key.len < y->key.len ? -1 : 1;
	int c = x->key.len > 0 ? memcmp(x->key.p, y->key.p, (size_t)x->key.len) : 0;
	if (c)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Which of n keys occur more than once (null keys never do). Sorts instead of comparing pairs:
 * a request may list millions of entries and the reactor must not stall on it. Returns n flags
 * in the arena, or NULL when out of memory. */
static bool *dup_flags(struct kreq *q, const struct kstr *keys, int32_t n)
{
	bool *dup = arena_calloc(&q->arena, (size_t)n + 1, sizeof *dup);
	struct dup_ent *e = arena_calloc(&q->arena, (size_t)n + 1, sizeof *e);
	if (!dup || !e)
		return NULL;
	for (int32_t i = 0; i < n; i++)
		e[i] = (struct dup_ent){ keys[i], i };
	qsort(e, (size_t)n, sizeof *e, dup_cmp);
	for (int32_t i = 1; i < n; i++)
		if (e[i].key.len >= 0 && kstr_eq(e[i].key, e[i - 1].key))
			dup[e[i].idx] = dup[e[i - 1].idx] = true;
	return dup;
}

static struct kstr *kstr_array(struct kreq *q, int32_t n)
{
	return arena_calloc(&q->arena, (size_t)n + 1, sizeof(struct kstr));
}

/* dup_flags of the struct kstr at name_off in each of n items of size bytes. */
static bool *dup_names(struct kreq *q, const void *items, int32_t n, size_t size, size_t name_off)
{
	struct kstr *names = kstr_array(q, n);
	if (!names)
		return NULL;
	for (int32_t i = 0; i < n; i++)
		memcpy(&names[i], (const char *)items + (size_t)i * size + name_off, sizeof names[i]);
	return dup_flags(q, names, n);
}
/* Which of the first n entries of a decoded array repeat another's field (a struct kstr). */
#define DUP_NAMES(q, arr, n, field) \
	dup_names((q), (arr).items, (n), sizeof *(arr).items, offsetof(__typeof__(*(arr).items), field))

static struct topic *find_topic(struct kreq *q, struct kstr name)
{
	if (name.len < 0 || kstr_has_nul(name))
		return NULL;
	return broker_find_topic(q->srv->broker, name.p, (size_t)name.len);
}

struct find_id_ctx {
	const uint8_t *id;
	struct topic *found;
};

static void find_id_cb(void *ctx, struct topic *t)
{
	struct find_id_ctx *f = ctx;
	if (!f->found && memcmp(t->id, f->id, 16) == 0)
		f->found = t;
}

static struct topic *find_topic_by_id(struct kreq *q, const uint8_t id[16])
{
	struct find_id_ctx f = { id, NULL };
	if (!kmsg_uuid_is_zero(id))
		broker_foreach_topic(q->srv->broker, find_id_cb, &f);
	return f.found;
}

/* --- describing settings ------------------------------------------------------------------ */

/* Kafka's DescribeConfigsResponse.ConfigType ids. */
static int8_t config_type_id(enum cfg_type t)
{
	switch (t) {
	case CFG_BOOL: return 1;
	case CFG_STRING: return 2;
	case CFG_INT: return 3;
	case CFG_LONG: return 5;
	case CFG_DOUBLE: return 6;
	case CFG_LIST: return 7;
	case CFG_PASSWORD: return 9;
	}
	return 0;
}

static bool def_sensitive(const struct cfg_def *d)
{
	return d->type == CFG_PASSWORD || (d->flags & CFG_SENSITIVE);
}

struct desc_synonym {
	struct kstr name, value;
	int8_t source;
};

/* One described setting, before it is put into a DescribeConfigs or CreateTopics answer. */
struct desc_entry {
	struct kstr name, value, doc;
	int8_t source, type;
	bool read_only, sensitive, is_set;
	struct desc_synonym syn[ADMIN_SYNONYMS_MAX];
	int n_syn;
};

static void add_synonym(struct desc_entry *e, struct kstr name, struct kstr value, int8_t source)
{
	if (e->n_syn < ADMIN_SYNONYMS_MAX)
		e->syn[e->n_syn++] = (struct desc_synonym){ name, value, source };
}

/* The broker keys a topic key takes its default from, most specific first (Kafka's
 * LogConfig.TopicConfigSynonyms: retention and roll have several). */
static int topic_broker_synonyms(int id, const char **out, int max)
{
	const struct cfg_def *d = &cfg_topic_schema.defs[id];
	int n = 0;
	if (id == TC_RETENTION_MS) {
		out[n++] = "log.retention.ms";
		out[n++] = "log.retention.minutes";
		out[n++] = "log.retention.hours";
	} else if (id == TC_SEGMENT_MS) {
		out[n++] = "log.segment.ms";
		out[n++] = "log.roll.hours";
	} else if (d->synonym) {
		out[n++] = d->synonym;
	}
	ST_ASSERT(n <= max);
	return n;
}

/* The effective value of topic key id as text: the topic's own, else the broker synonym's,
 * else the default (what the topic's logs use). */
static const char *topic_value_text(const struct cfg *tc, const struct cfg *bc, int id, char *buf,
				    size_t buf_len)
{
	const struct cfg_def *d = &cfg_topic_schema.defs[id];
	switch (d->type) {
	case CFG_INT:
	case CFG_LONG:
		snprintf(buf, buf_len, "%" PRId64, cfg_topic_int(tc, bc, id));
		return buf;
	case CFG_BOOL:
		return cfg_topic_int(tc, bc, id) ? "true" : "false";
	case CFG_DOUBLE:
		return cfg_text(tc, id, buf, buf_len);
	case CFG_STRING:
	case CFG_LIST:
	case CFG_PASSWORD:
		return cfg_topic_str(tc, bc, id);
	}
	return NULL;
}

/* Describes topic key id of topic settings tc as Kafka does (ConfigHelper): the synonym list
 * is the topic's own value, then for each broker synonym its configured value and its
 * default; the source is the first synonym's. */
static void describe_topic_key(struct kreq *q, const struct cfg *tc, int id, bool want_doc,
			       struct desc_entry *e, bool *oom)
{
	const struct cfg *bc = q->srv->conf;
	const struct cfg_def *d = &cfg_topic_schema.defs[id];
	char buf[64];
	memset(e, 0, sizeof *e);
	e->name = astr(q, d->name, oom);
	e->sensitive = def_sensitive(d);
	e->type = config_type_id(d->type);
	e->read_only = false;
	e->is_set = cfg_is_set(tc, id);
	e->value = e->sensitive ? KSTR_NULL : astr(q, topic_value_text(tc, bc, id, buf, sizeof buf), oom);
	e->doc = want_doc ? astr(q, d->doc, oom) : KSTR_NULL;
	if (e->is_set)
		add_synonym(e, e->name, e->value, SRC_DYNAMIC_TOPIC);
	const char *syn[4];
	int ns = topic_broker_synonyms(id, syn, (int)ST_ARRAY_LEN(syn));
	for (int i = 0; i < ns; i++) {
		int bid = cfg_find(bc->schema, syn[i]);
		if (bid < 0)
			continue;
		const struct cfg_def *bd = &bc->schema->defs[bid];
		struct kstr bname = astr(q, bd->name, oom);
		bool hide = e->sensitive || def_sensitive(bd);
		if (cfg_is_set(bc, bid))
			add_synonym(e, bname, hide ? KSTR_NULL : astr(q, cfg_text(bc, bid, buf, sizeof buf), oom),
				    SRC_STATIC_BROKER);
		if (bd->def)
			add_synonym(e, bname, hide ? KSTR_NULL : astr(q, bd->def, oom), SRC_DEFAULT);
	}
	e->source = e->n_syn ? e->syn[0].source : SRC_DEFAULT;
}

/* A broker key: set in strata.conf or --set (static), or its default. */
static void describe_broker_key(struct kreq *q, int id, bool want_doc, struct desc_entry *e, bool *oom)
{
	const struct cfg *bc = q->srv->conf;
	const struct cfg_def *d = &bc->schema->defs[id];
	char buf[64];
	memset(e, 0, sizeof *e);
	e->name = astr(q, d->name, oom);
	e->sensitive = def_sensitive(d);
	e->type = config_type_id(d->type);
	e->read_only = !(d->flags & CFG_DYNAMIC) || (d->flags & CFG_READONLY);
	e->is_set = cfg_is_set(bc, id);
	/* A key with no default that is not set has no value (cfg_text would say 0). */
	bool has_value = e->is_set || d->def;
	e->value = e->sensitive || !has_value ? KSTR_NULL
					      : astr(q, cfg_text(bc, id, buf, sizeof buf), oom);
	e->doc = want_doc ? astr(q, d->doc, oom) : KSTR_NULL;
	if (e->is_set)
		add_synonym(e, e->name, e->value, SRC_STATIC_BROKER);
	if (d->def)
		add_synonym(e, e->name, e->sensitive ? KSTR_NULL : astr(q, d->def, oom), SRC_DEFAULT);
	e->source = e->is_set ? SRC_STATIC_BROKER : SRC_DEFAULT;
}

/* --- CreateTopics ---------------------------------------------------------------------------- */

/* Fills a successful CreateTopics v5+ answer: partition count, replication factor and the
 * topic's settings, as Kafka returns them. */
static void create_topics_describe(struct kreq *q, const struct cfg *tc,
				   struct kmsg_create_topics_response_creatable_topic_result *r,
				   bool *oom)
{
	size_t n = cfg_topic_schema.n_defs;
	r->configs.items = arena_calloc(&q->arena, n + 1, sizeof *r->configs.items);
	if (!r->configs.items) {
		*oom = true;
		return;
	}
	r->configs.len = 0;
	for (size_t i = 0; i < n; i++) {
		if (cfg_topic_schema.defs[i].flags & CFG_ALIAS)
			continue;
		struct desc_entry e;
		describe_topic_key(q, tc, (int)i, false, &e, oom);
		struct kmsg_create_topics_response_creatable_topic_configs *c =
			&r->configs.items[r->configs.len++];
		kmsg_create_topics_response_creatable_topic_configs_init(c);
		c->name = e.name;
		c->value = e.value;
		c->read_only = e.read_only;
		c->config_source = e.source;
		c->is_sensitive = e.sensitive;
	}
}

/* Validates one topic's request and builds its settings into tc (initialised here, freed by
 * the caller). Returns a Kafka error with the message in why. *partitions gets the count to
 * create (-1: num.partitions). */
/* The create-time flag that restores a topic from the bucket (Redpanda's name, and ours). */
static bool is_recovery_key(const char *key)
{
	return strcmp(key, "redpanda.remote.recovery") == 0 || strcmp(key, "remote.recovery") == 0;
}

static int create_topic_check(struct kreq *q, const struct kmsg_create_topics_request_creatable_topic *ct,
			      struct cfg *tc, int32_t *partitions, bool *recovery, char *why,
			      size_t why_len, bool *oom)
{
	struct broker *b = q->srv->broker;
	if (kstr_has_nul(ct->name) ||
	    broker_validate_topic_name(ct->name.p, (size_t)ct->name.len, why, why_len) < 0) {
		if (kstr_has_nul(ct->name))
			snprintf(why, why_len, "topic name contains a NUL character");
		return KERR_INVALID_TOPIC_EXCEPTION;
	}
	if (find_topic(q, ct->name)) {
		snprintf(why, why_len, "Topic '%.*s' already exists.", shown_len(ct->name), ct->name.p);
		return KERR_TOPIC_ALREADY_EXISTS;
	}
	int32_t n_assign = ct->assignments.len < 0 ? 0 : ct->assignments.len;
	if (n_assign > 0) {
		if (ct->num_partitions != -1 || ct->replication_factor != -1) {
			snprintf(why, why_len, "Both numPartitions or replicationFactor and "
				 "replicasAssignments were set. Both cannot be used at the same time.");
			return KERR_INVALID_REQUEST;
		}
		/* Manual assignment: partitions 0..n-1, each on exactly this node. */
		for (int32_t i = 0; i < n_assign; i++) {
			const struct kmsg_create_topics_request_creatable_replica_assignment *a =
				&ct->assignments.items[i];
			bool seen = false;
			for (int32_t j = 0; j < i; j++)
				seen = seen || ct->assignments.items[j].partition_index == a->partition_index;
			if (a->partition_index < 0 || a->partition_index >= n_assign || seen) {
				snprintf(why, why_len, "Partitions should be a consecutive 0-based integer "
					 "sequence, got partition %d among %d assignments.", a->partition_index,
					 n_assign);
				return KERR_INVALID_REPLICA_ASSIGNMENT;
			}
			if (a->broker_ids.len != 1 || a->broker_ids.items[0] != b->node_id) {
				snprintf(why, why_len, "Partition %d: replicas must be exactly [%d]: Strata is a "
					 "single node (node.id=%d) and keeps one replica.", a->partition_index,
					 b->node_id, b->node_id);
				return KERR_INVALID_REPLICA_ASSIGNMENT;
			}
		}
		*partitions = n_assign;
	} else {
		if (ct->num_partitions == 0 || ct->num_partitions < -1) {
			snprintf(why, why_len, "Number of partitions was set to an invalid non-positive "
				 "value.");
			return KERR_INVALID_PARTITIONS;
		}
		if (ct->replication_factor == 0 || ct->replication_factor < -1) {
			snprintf(why, why_len, "Replication factor must be larger than 0, or -1 to use the "
				 "default value.");
			return KERR_INVALID_REPLICATION_FACTOR;
		}
		if (ct->replication_factor > 1) {
			snprintf(why, why_len, "Unable to replicate the partition %d time(s): Strata is a "
				 "single node and keeps one replica; use replication factor 1 or -1.",
				 ct->replication_factor);
			return KERR_INVALID_REPLICATION_FACTOR;
		}
		*partitions = ct->num_partitions;
	}
	for (int32_t i = 0; i < ct->configs.len; i++) {
		const struct kmsg_create_topics_request_creatable_topic_config *c = &ct->configs.items[i];
		char *key = acstr(q, c->name, oom), *val = acstr(q, c->value, oom);
		if (*oom) {
			snprintf(why, why_len, "out of memory");
			return KERR_UNKNOWN_SERVER_ERROR;
		}
		if (!key || kstr_has_nul(c->name)) {
			snprintf(why, why_len, "a config name is null or has a NUL character");
			return KERR_INVALID_CONFIG;
		}
		if (!val) {
			snprintf(why, why_len, "Null value not supported for topic config %s", key);
			return KERR_INVALID_CONFIG;
		}
		if (is_recovery_key(key)) {
			/* Not a setting of the topic: it says how to create it, and is not kept. */
			if (strcasecmp(val, "true") != 0 && strcasecmp(val, "false") != 0) {
				snprintf(why, why_len, "Invalid value %s for configuration %s: expected "
					 "true or false", val, key);
				return KERR_INVALID_CONFIG;
			}
			*recovery = strcasecmp(val, "true") == 0;
			continue;
		}
		if (cfg_set(tc, key, val, why, why_len) < 0)
			return KERR_INVALID_CONFIG;
	}
	if (cfg_check_topic(tc, q->srv->conf, why, why_len) < 0) /* cross-key (tiering) */
		return KERR_INVALID_CONFIG;
	return KERR_NONE;
}

/* --- parked requests ---------------------------------------------------------------------- */

/* A request parked while the broker's topic worker does its operations (broker.h, *_async):
 * answered when the last one ended. pending counts them, plus one for the handler's own loop,
 * so that no answer goes out from inside it (the kreq stays counted in flight meanwhile). */
struct op_state {
	struct kreq *q;
	void *resp;                     /* the response, in the arena, sent by answer() */
	void (*answer)(struct op_state *st);
	int32_t pending;
	bool oom;
};

/* The state of a request that may park: its response (resp_size bytes, zeroed, for answer to
 * send) and n_waits waiters of wait_size bytes (zeroed) in *waits. NULL when out of memory (the
 * request is then answered as bad). */
static struct op_state *op_begin(struct kreq *q, size_t resp_size, void (*answer)(struct op_state *st),
				 int32_t n_waits, size_t wait_size, void **waits)
{
	struct op_state *st = arena_calloc(&q->arena, 1, sizeof *st);
	void *resp = arena_calloc(&q->arena, 1, resp_size);
	*waits = arena_calloc(&q->arena, (size_t)n_waits + 1, wait_size);
	if (!st || !resp || !*waits) {
		kafka_bad_request(q, "out of memory");
		return NULL;
	}
	st->q = q;
	st->resp = resp;
	st->answer = answer;
	st->pending = 1; /* the handler's loop */
	return st;
}

/* One operation, or the handler's loop, ended: the last one answers. */
static void op_release(struct op_state *st)
{
	if (--st->pending > 0)
		return;
	if (st->oom) {
		kafka_bad_request(st->q, "out of memory");
		return;
	}
	st->answer(st);
}

/* One operation of a parked request whose answer is an error code and message. */
struct op_wait {
	struct broker_waiter w;
	struct op_state *st;
	int16_t *error_code;
	struct kstr *error_message;
	const char *what;               /* for the log: "delete topic", "create partitions on" */
	char name[BROKER_TOPIC_NAME_MAX + 1];
};

static void op_done(struct broker_waiter *w, int kerr, struct topic *t, const char *why)
{
	(void)t;
	struct op_wait *ow = ST_CONTAINER_OF(w, struct op_wait, w);
	struct op_state *st = ow->st;
	*ow->error_code = (int16_t)kerr;
	*ow->error_message = kerr == KERR_NONE ? KSTR_NULL : astr(st->q, why, &st->oom);
	if (kerr != KERR_NONE)
		slog_info("kafka", "%s %s failed (%s): %s", ow->what, ow->name, kerr_name(kerr), why);
	op_release(st);
}

/* Ready to hand ow to the broker for topic name; the answer goes into *error_code/_message. */
static struct broker_waiter *op_wait_init(struct op_wait *ow, struct op_state *st, int16_t *error_code,
					  struct kstr *error_message, const char *what, const char *name)
{
	ow->st = st;
	ow->error_code = error_code;
	ow->error_message = error_message;
	ow->what = what;
	ow->w.done = op_done;
	snprintf(ow->name, sizeof ow->name, "%s", name);
	return &ow->w;
}

/* A CreateTopics waiter: a created topic's answer describes it. */
struct ct_wait {
	struct broker_waiter w;
	struct op_state *st;
	struct kmsg_create_topics_response_creatable_topic_result *r;
};

static void create_topics_answer(struct op_state *st)
{
	KAFKA_RESPOND(st->q, create_topics_response, (struct kmsg_create_topics_response *)st->resp);
}

/* A created topic's answer (t: the topic, or NULL with validate_only and tc its settings). */
static void create_topic_result(struct kreq *q, struct topic *t, const struct cfg *tc,
				int32_t partitions,
				struct kmsg_create_topics_response_creatable_topic_result *r, bool *oom)
{
	r->error_code = KERR_NONE;
	r->error_message = KSTR_NULL;
	r->replication_factor = 1;
	if (t) {
		r->num_partitions = t->n_partitions;
		memcpy(r->topic_id, t->id, 16);
	} else {
		r->num_partitions = partitions > 0 ? partitions
						  : (int32_t)cfg_int(q->srv->conf, BC_NUM_PARTITIONS);
	}
	if (q->version >= 5)
		create_topics_describe(q, t ? &t->cfg : tc, r, oom);
}

static void create_topic_done(struct broker_waiter *w, int kerr, struct topic *t, const char *why)
{
	struct ct_wait *cw = ST_CONTAINER_OF(w, struct ct_wait, w);
	struct op_state *st = cw->st;
	struct kreq *q = st->q;
	if (kerr == KERR_NONE) {
		create_topic_result(q, t, NULL, 0, cw->r, &st->oom);
	} else {
		cw->r->error_code = (int16_t)kerr;
		cw->r->error_message = astr(q, why, &st->oom);
		slog_info("kafka", "create topic '%.*s' failed (%s): %s", shown_len(cw->r->name),
			  cw->r->name.p, kerr_name(kerr), why);
	}
	op_release(st);
}

void kafka_handle_create_topics(struct kreq *q)
{
	struct broker *b = q->srv->broker;
	struct kmsg_create_topics_request req;
	kmsg_create_topics_request_init(&req);
	if (kmsg_create_topics_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	int32_t nt = req.topics.len < 0 ? 0 : req.topics.len;
	struct ct_wait *waits;
	struct op_state *st = op_begin(q, sizeof(struct kmsg_create_topics_response),
				       create_topics_answer, nt, sizeof *waits, (void **)&waits);
	if (!st)
		return;
	struct kmsg_create_topics_response *resp = st->resp;
	kmsg_create_topics_response_init(resp);
	resp->topics.items = arena_calloc(&q->arena, (size_t)nt + 1, sizeof *resp->topics.items);
	if (!resp->topics.items) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	resp->topics.len = nt;
	bool *dups = DUP_NAMES(q, req.topics, nt, name);
	if (!dups) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	bool oom = false;
	bool validate_only = q->version >= 1 && req.validate_only;
	for (int32_t i = 0; i < nt && !oom; i++) {
		const struct kmsg_create_topics_request_creatable_topic *ct = &req.topics.items[i];
		struct kmsg_create_topics_response_creatable_topic_result *r = &resp->topics.items[i];
		kmsg_create_topics_response_creatable_topic_result_init(r);
		r->name = ct->name;
		r->error_message = KSTR_NULL;
		/* A name twice in one request: Kafka refuses every entry of it. */
		if (dups[i]) {
			r->error_code = KERR_INVALID_REQUEST;
			r->error_message = afmt(q, &oom, "Create topics request contains multiple entries "
						"for the topic '%.*s'.", shown_len(ct->name), ct->name.p);
			continue;
		}
		char why[ADMIN_MSG_MAX] = "";
		struct cfg tc;
		if (cfg_init(&tc, &cfg_topic_schema) < 0) {
			oom = true;
			break;
		}
		int32_t partitions = -1;
		bool recovery = false;
		int err = create_topic_check(q, ct, &tc, &partitions, &recovery, why, sizeof why, &oom);
		struct broker_topic_spec spec = { .partitions = partitions, .cfg = &tc,
						  .remote_recovery = recovery };
		if (err == KERR_NONE && validate_only) {
			err = broker_check_new_topic(b, ct->name.p, (size_t)ct->name.len, &spec, why,
						     sizeof why);
		} else if (err == KERR_NONE) {
			waits[i].st = st;
			waits[i].r = r;
			waits[i].w.done = create_topic_done;
			err = broker_create_topic_async(b, ct->name.p, (size_t)ct->name.len, &spec,
							&waits[i].w, why, sizeof why);
			if (err == KERR_NONE) {
				st->pending++;
				cfg_free(&tc);
				continue;
			}
		}
		if (err != KERR_NONE) {
			r->error_code = (int16_t)err;
			r->error_message = astr(q, why, &oom);
			slog_info("kafka", "create topic '%.*s' refused (%s): %s", shown_len(ct->name),
				  ct->name.p, kerr_name(err), why);
			cfg_free(&tc);
			continue;
		}
		/* validate_only: what the topic would be (a restore's count and settings would come
		 * from the bucket, which is not read for a validation) */
		create_topic_result(q, NULL, &tc, partitions, r, &oom);
		if (recovery && partitions < 1)
			r->num_partitions = -1; /* the bucket's, unknown here */
		cfg_free(&tc);
	}
	st->oom = st->oom || oom;
	op_release(st);
}

/* --- DeleteTopics ------------------------------------------------------------------------------ */

static void delete_topics_answer(struct op_state *st)
{
	KAFKA_RESPOND(st->q, delete_topics_response, (struct kmsg_delete_topics_response *)st->resp);
}

void kafka_handle_delete_topics(struct kreq *q)
{
	struct broker *b = q->srv->broker;
	struct kmsg_delete_topics_request req;
	kmsg_delete_topics_request_init(&req);
	if (kmsg_delete_topics_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	/* v0-5 name the topics; v6 names them or gives their ids. One list of (name, id). */
	int32_t nt;
	if (q->version >= 6) {
		nt = req.topics.len < 0 ? 0 : req.topics.len;
	} else {
		nt = req.topic_names.len < 0 ? 0 : req.topic_names.len;
	}
	struct op_wait *waits;
	struct op_state *st = op_begin(q, sizeof(struct kmsg_delete_topics_response),
				       delete_topics_answer, nt, sizeof *waits, (void **)&waits);
	if (!st)
		return;
	struct kmsg_delete_topics_response *resp = st->resp;
	kmsg_delete_topics_response_init(resp);
	resp->responses.items = arena_calloc(&q->arena, (size_t)nt + 1, sizeof *resp->responses.items);
	if (!resp->responses.items) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	resp->responses.len = nt;
	static const uint8_t zero_id[16];
	/* Duplicates: names among names, ids among the entries given by id only. */
	struct kstr *names = kstr_array(q, nt), *ids = kstr_array(q, nt);
	for (int32_t i = 0; names && ids && i < nt; i++) {
		names[i] = q->version >= 6 ? req.topics.items[i].name : req.topic_names.items[i];
		bool by_id = q->version >= 6 && names[i].len < 0;
		ids[i] = by_id ? (struct kstr){ (const char *)req.topics.items[i].topic_id, 16 } : KSTR_NULL;
	}
	bool *dup_names = names ? dup_flags(q, names, nt) : NULL;
	bool *dup_ids = ids ? dup_flags(q, ids, nt) : NULL;
	if (!dup_names || !dup_ids) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	bool oom = false;
	bool enabled = cfg_bool(q->srv->conf, BC_DELETE_TOPIC_ENABLE);
	for (int32_t i = 0; i < nt && !oom; i++) {
		struct kstr name = q->version >= 6 ? req.topics.items[i].name : req.topic_names.items[i];
		const uint8_t *id = q->version >= 6 ? req.topics.items[i].topic_id : zero_id;
		struct kmsg_delete_topics_response_deletable_topic_result *r = &resp->responses.items[i];
		kmsg_delete_topics_response_deletable_topic_result_init(r);
		r->name = name;
		memcpy(r->topic_id, id, 16);
		bool by_id = name.len < 0;
		bool dup = dup_names[i] || dup_ids[i];
		if (q->version >= 6 && name.len >= 0 && !kmsg_uuid_is_zero(id)) {
			r->error_code = KERR_INVALID_REQUEST;
			r->error_message = astr(q, "You may not specify both topic name and topic id.", &oom);
			continue;
		}
		if (dup) {
			r->error_code = KERR_INVALID_REQUEST;
			r->error_message = astr(q, "Duplicate topic in the request.", &oom);
			continue;
		}
		if (!enabled) {
			r->error_code = KERR_TOPIC_DELETION_DISABLED;
			r->error_message = astr(q, "Topic deletion is disabled (delete.topic.enable=false).",
						&oom);
			continue;
		}
		/* Looked up now, not before the loop: an earlier delete may have run the ring. */
		struct topic *t = by_id ? find_topic_by_id(q, id) : find_topic(q, name);
		if (!t) {
			r->error_code = by_id ? KERR_UNKNOWN_TOPIC_ID : KERR_UNKNOWN_TOPIC_OR_PARTITION;
			r->error_message = by_id ? astr(q, "This server does not host this topic ID.", &oom)
						 : astr(q, "This server does not host this topic-partition.",
							&oom);
			continue;
		}
		/* Internal topics hold the broker's own state (group offsets): other modules keep
		 * pointers into their partitions, so they are not deletable. */
		if (t->internal) {
			r->error_code = KERR_INVALID_REQUEST;
			r->error_message = afmt(q, &oom, "Internal topic %s cannot be deleted.", t->name);
			continue;
		}
		r->name = astr(q, t->name, &oom);
		memcpy(r->topic_id, t->id, 16);
		struct op_wait *ow = &waits[i];
		struct broker_waiter *w = op_wait_init(ow, st, &r->error_code, &r->error_message,
						       "delete topic", t->name);
		char why[ADMIN_MSG_MAX] = "";
		/* t is gone from the table when this returns (its files go on the worker) */
		int err = broker_delete_topic_async(b, t, w, why, sizeof why);
		if (err != KERR_NONE) {
			r->error_code = (int16_t)err;
			r->error_message = astr(q, why, &oom);
			slog_info("kafka", "delete topic %s refused (%s): %s", ow->name, kerr_name(err), why);
			continue;
		}
		st->pending++;
	}
	st->oom = st->oom || oom;
	op_release(st);
}

/* --- CreatePartitions -------------------------------------------------------------------------- */

static void create_partitions_answer(struct op_state *st)
{
	KAFKA_RESPOND(st->q, create_partitions_response,
		      (struct kmsg_create_partitions_response *)st->resp);
}

void kafka_handle_create_partitions(struct kreq *q)
{
	struct broker *b = q->srv->broker;
	struct kmsg_create_partitions_request req;
	kmsg_create_partitions_request_init(&req);
	if (kmsg_create_partitions_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	int32_t nt = req.topics.len < 0 ? 0 : req.topics.len;
	struct op_wait *waits;
	struct op_state *st = op_begin(q, sizeof(struct kmsg_create_partitions_response),
				       create_partitions_answer, nt, sizeof *waits, (void **)&waits);
	if (!st)
		return;
	struct kmsg_create_partitions_response *resp = st->resp;
	kmsg_create_partitions_response_init(resp);
	resp->results.items = arena_calloc(&q->arena, (size_t)nt + 1, sizeof *resp->results.items);
	if (!resp->results.items) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	resp->results.len = nt;
	bool *dups = DUP_NAMES(q, req.topics, nt, name);
	if (!dups) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	bool oom = false;
	for (int32_t i = 0; i < nt && !oom; i++) {
		const struct kmsg_create_partitions_request_create_partitions_topic *ct = &req.topics.items[i];
		struct kmsg_create_partitions_response_create_partitions_topic_result *r =
			&resp->results.items[i];
		kmsg_create_partitions_response_create_partitions_topic_result_init(r);
		r->name = ct->name;
		r->error_message = KSTR_NULL;
		if (dups[i]) {
			r->error_code = KERR_INVALID_REQUEST;
			r->error_message = astr(q, "Duplicate topic in request.", &oom);
			continue;
		}
		struct topic *t = find_topic(q, ct->name);
		if (!t) {
			r->error_code = KERR_UNKNOWN_TOPIC_OR_PARTITION;
			r->error_message = afmt(q, &oom, "The topic '%.*s' does not exist.",
						shown_len(ct->name), ct->name.p);
			continue;
		}
		char why[ADMIN_MSG_MAX] = "";
		int err = KERR_NONE;
		if (t->internal) {
			/* Groups hash onto __consumer_offsets' partitions: more would move them. */
			snprintf(why, sizeof why, "Cannot add partitions to internal topic %s.", t->name);
			err = KERR_INVALID_REQUEST;
		} else if (ct->count <= t->n_partitions) {
			/* broker_add_partitions says the same; checked here first so that the
			 * assignment count below is meaningful. */
			err = broker_add_partitions(b, t, ct->count, true, why, sizeof why);
		} else if (ct->assignments.len >= 0) {
			int32_t want = ct->count - t->n_partitions;
			if (ct->assignments.len != want) {
				snprintf(why, sizeof why, "Increasing the number of partitions by %d but %d "
					 "assignments provided.", want, ct->assignments.len);
				err = KERR_INVALID_REPLICA_ASSIGNMENT;
			}
			for (int32_t j = 0; j < ct->assignments.len && err == KERR_NONE; j++) {
				const struct kmsg_i32_array *ids = &ct->assignments.items[j].broker_ids;
				if (ids->len != 1 || ids->items[0] != b->node_id) {
					snprintf(why, sizeof why, "Assignment %d: replicas must be exactly [%d]: "
						 "Strata is a single node (node.id=%d) and keeps one replica.",
						 j, b->node_id, b->node_id);
					err = KERR_INVALID_REPLICA_ASSIGNMENT;
				}
			}
		}
		if (err == KERR_NONE && req.validate_only) {
			err = broker_add_partitions(b, t, ct->count, true, why, sizeof why);
		} else if (err == KERR_NONE) {
			struct broker_waiter *w = op_wait_init(&waits[i], st, &r->error_code,
							       &r->error_message, "create partitions on",
							       t->name);
			err = broker_add_partitions_async(b, t, ct->count, w, why, sizeof why);
			if (err == KERR_NONE) {
				st->pending++;
				continue;
			}
		}
		r->error_code = (int16_t)err;
		if (err != KERR_NONE) {
			r->error_message = astr(q, why, &oom);
			slog_info("kafka", "create partitions on %s refused (%s): %s", t->name,
				  kerr_name(err), why);
		}
	}
	st->oom = st->oom || oom;
	op_release(st);
}

/* --- DeleteRecords ----------------------------------------------------------------------------- */

#define DELETE_RECORDS_HIGH_WATERMARK (-1)

void kafka_handle_delete_records(struct kreq *q)
{
	struct kmsg_delete_records_request req;
	kmsg_delete_records_request_init(&req);
	if (kmsg_delete_records_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	int32_t nt = req.topics.len < 0 ? 0 : req.topics.len;
	struct kmsg_delete_records_response resp;
	kmsg_delete_records_response_init(&resp);
	resp.topics.items = arena_calloc(&q->arena, (size_t)nt + 1, sizeof *resp.topics.items);
	if (!resp.topics.items) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	resp.topics.len = nt;
	for (int32_t i = 0; i < nt; i++) {
		const struct kmsg_delete_records_request_delete_records_topic *rt = &req.topics.items[i];
		struct kmsg_delete_records_response_delete_records_topic_result *tr = &resp.topics.items[i];
		kmsg_delete_records_response_delete_records_topic_result_init(tr);
		tr->name = rt->name;
		int32_t np = rt->partitions.len < 0 ? 0 : rt->partitions.len;
		tr->partitions.items = arena_calloc(&q->arena, (size_t)np + 1, sizeof *tr->partitions.items);
		if (!tr->partitions.items) {
			kafka_bad_request(q, "out of memory");
			return;
		}
		tr->partitions.len = np;
		struct topic *t = find_topic(q, rt->name);
		for (int32_t j = 0; j < np; j++) {
			const struct kmsg_delete_records_request_delete_records_partition *rp =
				&rt->partitions.items[j];
			struct kmsg_delete_records_response_delete_records_partition_result *pr =
				&tr->partitions.items[j];
			kmsg_delete_records_response_delete_records_partition_result_init(pr);
			pr->partition_index = rp->partition_index;
			pr->low_watermark = -1;
			if (!t || rp->partition_index < 0 || rp->partition_index >= t->n_partitions) {
				pr->error_code = KERR_UNKNOWN_TOPIC_OR_PARTITION;
				continue;
			}
			struct log *l = t->parts[rp->partition_index]->log;
			int64_t hw = log_high_watermark(l);
			int64_t off = rp->offset == DELETE_RECORDS_HIGH_WATERMARK ? hw : rp->offset;
			struct partition *part = t->parts[rp->partition_index];
			if (t->internal) {
				/* Moving __consumer_offsets' start would lose committed offsets. */
				pr->error_code = KERR_INVALID_REQUEST;
				continue;
			}
			/* Both tiers: the remote start moves too, so deleted records are gone from the
			 * bucket's view as well as from the local log. */
			int err = off < 0 || off > hw ? KERR_OFFSET_OUT_OF_RANGE
						      : broker_delete_records(part, off);
			pr->error_code = (int16_t)err;
			if (err == KERR_NONE) {
				pr->low_watermark = broker_partition_start_offset(part);
				slog_info("kafka", "topic=%s partition=%d: records before %" PRId64
					  " deleted, log start now %" PRId64, t->name, rp->partition_index,
					  off, pr->low_watermark);
			}
		}
	}
	KAFKA_RESPOND(q, delete_records_response, &resp);
}

/* --- DescribeConfigs --------------------------------------------------------------------------- */

static bool key_requested(const struct kmsg_str_array *keys, const char *name)
{
	if (keys->len < 0)
		return true;
	for (int32_t i = 0; i < keys->len; i++)
		if (kstr_eq_c(keys->items[i], name))
			return true;
	return false;
}

static void put_described(struct kreq *q, const struct desc_entry *e, bool want_syn,
			  struct kmsg_describe_configs_response_describe_configs_resource_result *c,
			  bool *oom)
{
	kmsg_describe_configs_response_describe_configs_resource_result_init(c);
	c->name = e->name;
	c->value = e->value;
	c->read_only = e->read_only;
	c->is_default = q->version == 0 && !e->is_set; /* v0 only: must stay false later */
	c->config_source = e->source;
	c->is_sensitive = e->sensitive;
	c->config_type = e->type;
	c->documentation = e->doc;
	c->synonyms.len = 0;
	if (!want_syn || e->n_syn == 0)
		return;
	c->synonyms.items = arena_calloc(&q->arena, (size_t)e->n_syn, sizeof *c->synonyms.items);
	if (!c->synonyms.items) {
		*oom = true;
		return;
	}
	for (int i = 0; i < e->n_syn; i++) {
		struct kmsg_describe_configs_response_describe_configs_synonym *s = &c->synonyms.items[i];
		kmsg_describe_configs_response_describe_configs_synonym_init(s);
		s->name = e->syn[i].name;
		s->value = e->syn[i].value;
		s->source = e->syn[i].source;
	}
	c->synonyms.len = e->n_syn;
}

void kafka_handle_describe_configs(struct kreq *q)
{
	struct kmsg_describe_configs_request req;
	kmsg_describe_configs_request_init(&req);
	if (kmsg_describe_configs_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	bool want_syn = q->version >= 1 && req.include_synonyms;
	bool want_doc = q->version >= 3 && req.include_documentation;
	int32_t nr = req.resources.len < 0 ? 0 : req.resources.len;
	struct kmsg_describe_configs_response resp;
	kmsg_describe_configs_response_init(&resp);
	resp.results.items = arena_calloc(&q->arena, (size_t)nr + 1, sizeof *resp.results.items);
	if (!resp.results.items) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	resp.results.len = nr;
	bool oom = false;
	for (int32_t i = 0; i < nr && !oom; i++) {
		const struct kmsg_describe_configs_request_describe_configs_resource *rr =
			&req.resources.items[i];
		struct kmsg_describe_configs_response_describe_configs_result *res = &resp.results.items[i];
		kmsg_describe_configs_response_describe_configs_result_init(res);
		res->resource_type = rr->resource_type;
		res->resource_name = rr->resource_name;
		res->error_message = KSTR_NULL;
		const struct cfg_schema *schema;
		const struct cfg *tc = NULL;
		if (rr->resource_type == RES_TOPIC) {
			struct topic *t = find_topic(q, rr->resource_name);
			if (!t) {
				char why[256];
				bool bad = rr->resource_name.len < 0 || kstr_has_nul(rr->resource_name) ||
					   broker_validate_topic_name(rr->resource_name.p,
								      (size_t)rr->resource_name.len, why,
								      sizeof why) < 0;
				res->error_code = bad ? KERR_INVALID_TOPIC_EXCEPTION
						      : KERR_UNKNOWN_TOPIC_OR_PARTITION;
				res->error_message = bad ? astr(q, why, &oom)
							 : afmt(q, &oom, "Topic '%.*s' does not exist.",
								shown_len(rr->resource_name),
								rr->resource_name.p);
				continue;
			}
			schema = &cfg_topic_schema;
			tc = &t->cfg;
		} else if (rr->resource_type == RES_BROKER) {
			char want[16];
			snprintf(want, sizeof want, "%d", q->srv->broker->node_id);
			/* "" is the cluster-wide dynamic default, which Strata does not have: empty. */
			if (rr->resource_name.len == 0) {
				res->error_code = KERR_NONE;
				continue;
			}
			if (!kstr_eq_c(rr->resource_name, want)) {
				res->error_code = KERR_INVALID_REQUEST;
				res->error_message = afmt(q, &oom, "Unexpected broker id, expected %s, but "
							  "received %.*s", want,
							  shown_len(rr->resource_name),
							  rr->resource_name.p);
				continue;
			}
			schema = &cfg_broker_schema;
		} else {
			res->error_code = KERR_INVALID_REQUEST;
			res->error_message = afmt(q, &oom, "Strata describes topic (2) and broker (4) "
						  "resources, not type %d.", rr->resource_type);
			continue;
		}
		res->configs.items = arena_calloc(&q->arena, schema->n_defs + 1,
						  sizeof *res->configs.items);
		if (!res->configs.items) {
			oom = true;
			break;
		}
		res->configs.len = 0;
		for (size_t k = 0; k < schema->n_defs; k++) {
			const struct cfg_def *d = &schema->defs[k];
			if ((d->flags & CFG_ALIAS) || !key_requested(&rr->configuration_keys, d->name))
				continue;
			struct desc_entry e;
			if (tc)
				describe_topic_key(q, tc, (int)k, want_doc, &e, &oom);
			else
				describe_broker_key(q, (int)k, want_doc, &e, &oom);
			put_described(q, &e, want_syn, &res->configs.items[res->configs.len++], &oom);
		}
		res->error_code = KERR_NONE;
	}
	if (oom) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	KAFKA_RESPOND(q, describe_configs_response, &resp);
}

/* --- AlterConfigs and IncrementalAlterConfigs ------------------------------------------------ */

static const char broker_alter_msg[] =
	"broker configs are changed in strata.conf and reloaded with SIGHUP";

/* What both alter APIs do with a resource before touching settings: the topic, or an error. */
static int alter_target(struct kreq *q, int8_t type, struct kstr name, struct topic **out,
			char *why, size_t why_len)
{
	if (type == RES_BROKER) {
		snprintf(why, why_len, "%s", broker_alter_msg);
		return KERR_INVALID_REQUEST;
	}
	if (type != RES_TOPIC) {
		snprintf(why, why_len, "Strata alters topic (2) resources only, not type %d.", type);
		return KERR_INVALID_REQUEST;
	}
	*out = find_topic(q, name);
	if (!*out) {
		snprintf(why, why_len, "Topic '%.*s' does not exist.", shown_len(name),
			 name.len < 0 ? "" : name.p);
		return KERR_UNKNOWN_TOPIC_OR_PARTITION;
	}
	return KERR_NONE;
}

/* Builds the settings one resource of an alter API asks for topic t into nc (zeroed; set up
 * here). A Kafka error with why; *oom when out of memory. res: the API's resource. */
typedef int alter_build_fn(struct kreq *q, const void *res, const struct topic *t, struct cfg *nc,
			   char *why, size_t why_len, bool *oom);

/* One resource of AlterConfigs or IncrementalAlterConfigs: its topic, the new settings (build),
 * their cross-key checks; then, unless validate_only, the change goes to the broker's worker and
 * ow waits for it (st->pending counts it). The answer goes into *error_code and *error_message,
 * now or when ow is done. what names the API in the log ("alter configs of"). */
static void alter_resource(struct op_state *st, struct op_wait *ow, const char *what,
			   alter_build_fn *build, const void *res, int8_t type, struct kstr name,
			   bool validate_only, int16_t *error_code, struct kstr *error_message, bool *oom)
{
	struct kreq *q = st->q;
	char why[ADMIN_MSG_MAX] = "";
	struct topic *t = NULL;
	struct cfg nc = { 0 };
	*error_message = KSTR_NULL;
	int err = alter_target(q, type, name, &t, why, sizeof why);
	if (err == KERR_NONE)
		err = build(q, res, t, &nc, why, sizeof why, oom);
	if (err == KERR_NONE && !*oom && cfg_check_topic(&nc, q->srv->conf, why, sizeof why) < 0)
		err = KERR_INVALID_CONFIG; /* cross-key (tiering) */
	bool parked = false;
	if (err == KERR_NONE && !*oom && !validate_only) {
		struct broker_waiter *w = op_wait_init(ow, st, error_code, error_message, what, t->name);
		err = broker_set_topic_config_async(q->srv->broker, t, &nc, w, why, sizeof why);
		parked = err == KERR_NONE;
	}
	if (nc.vals)
		cfg_free(&nc);
	if (parked) {
		st->pending++;
		return;
	}
	*error_code = (int16_t)err;
	if (err != KERR_NONE) {
		*error_message = astr(q, why, oom);
		slog_info("kafka", "%s '%.*s' refused (%s): %s", what, shown_len(name), name.p,
			  kerr_name(err), why);
	}
}

/* AlterConfigs replaces the whole set: keys not listed go back to their defaults. Everything is
 * validated before anything changes. */
static int alter_configs_build(struct kreq *q, const void *res, const struct topic *t,
			       struct cfg *nc, char *why, size_t why_len, bool *oom)
{
	(void)t;
	const struct kmsg_alter_configs_request_alter_configs_resource *rr = res;
	if (cfg_init(nc, &cfg_topic_schema) < 0) {
		*oom = true;
		return KERR_UNKNOWN_SERVER_ERROR;
	}
	for (int32_t k = 0; k < rr->configs.len; k++) {
		const struct kmsg_alter_configs_request_alterable_config *c = &rr->configs.items[k];
		char *key = acstr(q, c->name, oom), *val = acstr(q, c->value, oom);
		if (*oom)
			return KERR_UNKNOWN_SERVER_ERROR;
		if (!key || kstr_has_nul(c->name)) {
			snprintf(why, why_len, "a config name is null or has a NUL character");
			return KERR_INVALID_CONFIG;
		}
		if (!val) {
			/* null: not set (back to the default), like a key not listed */
			if (cfg_find(&cfg_topic_schema, key) < 0) {
				snprintf(why, why_len, "unknown topic config %s", key);
				return KERR_INVALID_CONFIG;
			}
		} else if (cfg_set(nc, key, val, why, why_len) < 0) {
			return KERR_INVALID_CONFIG;
		}
	}
	return KERR_NONE;
}

static void alter_configs_answer(struct op_state *st)
{
	KAFKA_RESPOND(st->q, alter_configs_response, (struct kmsg_alter_configs_response *)st->resp);
}

void kafka_handle_alter_configs(struct kreq *q)
{
	struct kmsg_alter_configs_request req;
	kmsg_alter_configs_request_init(&req);
	if (kmsg_alter_configs_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	int32_t nr = req.resources.len < 0 ? 0 : req.resources.len;
	struct op_wait *waits;
	struct op_state *st = op_begin(q, sizeof(struct kmsg_alter_configs_response),
				       alter_configs_answer, nr, sizeof *waits, (void **)&waits);
	if (!st)
		return;
	struct kmsg_alter_configs_response *resp = st->resp;
	kmsg_alter_configs_response_init(resp);
	resp->responses.items = arena_calloc(&q->arena, (size_t)nr + 1, sizeof *resp->responses.items);
	if (!resp->responses.items) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	resp->responses.len = nr;
	bool oom = false;
	for (int32_t i = 0; i < nr && !oom; i++) {
		const struct kmsg_alter_configs_request_alter_configs_resource *rr = &req.resources.items[i];
		struct kmsg_alter_configs_response_alter_configs_resource_response *r =
			&resp->responses.items[i];
		kmsg_alter_configs_response_alter_configs_resource_response_init(r);
		r->resource_type = rr->resource_type;
		r->resource_name = rr->resource_name;
		alter_resource(st, &waits[i], "alter configs of", alter_configs_build, rr,
			       rr->resource_type, rr->resource_name, req.validate_only, &r->error_code,
			       &r->error_message, &oom);
	}
	st->oom = st->oom || oom;
	op_release(st);
}

/* APPEND / SUBTRACT on a list value: returns the new comma-separated list in the arena. */
static char *list_edit(struct kreq *q, const char *cur, const char *items, bool append, bool *oom)
{
	size_t cap = (cur ? strlen(cur) : 0) + strlen(items) + 2;
	char *out = arena_alloc(&q->arena, cap);
	char *cur_copy = acstr(q, kstr_c(cur ? cur : ""), oom);
	char *items_copy = acstr(q, kstr_c(items), oom);
	if (!out || !cur_copy || !items_copy) {
		*oom = true;
		return NULL;
	}
	size_t n = 0;
	out[0] = 0;
	char *save = NULL;
	/* The current items, minus the subtracted ones... */
	for (char *tok = strtok_r(cur_copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (!*tok)
			continue;
		bool drop = false;
		if (!append) {
			char *save2 = NULL;
			char *ic = acstr(q, kstr_c(items), oom);
			if (!ic)
				return NULL;
			for (char *s = strtok_r(ic, ",", &save2); s && !drop; s = strtok_r(NULL, ",", &save2)) {
				while (*s == ' ')
					s++;
				drop = strcmp(s, tok) == 0;
			}
		}
		if (!drop)
			n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? "," : "", tok);
	}
	/* ...plus the appended ones not already there. */
	if (append) {
		for (char *tok = strtok_r(items_copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			while (*tok == ' ')
				tok++;
			if (!*tok)
				continue;
			bool have = false;
			char *have_copy = acstr(q, kstr_c(out), oom);
			if (!have_copy)
				return NULL;
			char *save2 = NULL;
			for (char *s = strtok_r(have_copy, ",", &save2); s && !have; s = strtok_r(NULL, ",", &save2))
				have = strcmp(s, tok) == 0;
			if (!have)
				n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? "," : "", tok);
		}
	}
	return out;
}

/* IncrementalAlterConfigs: the operations on top of the topic's newest settings (those of a
 * change still under way included, so that changes queued one after the other add up), on a
 * copy, so a bad operation changes nothing. */
static int incremental_alter_build(struct kreq *q, const void *res, const struct topic *t,
				   struct cfg *nc, char *why, size_t why_len, bool *oom)
{
	const struct kmsg_incremental_alter_configs_request_alter_configs_resource *rr = res;
	const struct cfg *bc = q->srv->conf;
	int32_t nk = rr->configs.len < 0 ? 0 : rr->configs.len;
	bool *dups = DUP_NAMES(q, rr->configs, nk, name);
	if (!dups) {
		*oom = true;
		return KERR_UNKNOWN_SERVER_ERROR;
	}
	for (int32_t k = 0; k < nk; k++)
		if (dups[k]) {
			snprintf(why, why_len, "Error due to duplicate config keys");
			return KERR_INVALID_REQUEST;
		}
	if (cfg_copy(nc, broker_topic_config_next(t)) < 0) {
		*oom = true;
		return KERR_UNKNOWN_SERVER_ERROR;
	}
	for (int32_t k = 0; k < nk; k++) {
		const struct kmsg_incremental_alter_configs_request_alterable_config *c =
			&rr->configs.items[k];
		char *key = acstr(q, c->name, oom), *val = acstr(q, c->value, oom);
		if (*oom)
			return KERR_UNKNOWN_SERVER_ERROR;
		int id = key && !kstr_has_nul(c->name) ? cfg_find(&cfg_topic_schema, key) : -1;
		switch (c->config_operation) {
		case OP_SET:
			if (!key || !val) {
				snprintf(why, why_len, "Null value not supported for: %s",
					 key ? key : "(null)");
				return KERR_INVALID_CONFIG;
			}
			if (cfg_set(nc, key, val, why, why_len) < 0)
				return KERR_INVALID_CONFIG;
			break;
		case OP_DELETE:
			/* As Kafka: deleting a key that is not there (or unknown) is a no-op. */
			if (id >= 0)
				cfg_unset(nc, key);
			break;
		case OP_APPEND:
		case OP_SUBTRACT: {
			if (id < 0) {
				snprintf(why, why_len, "unknown topic config %s", key ? key : "(null)");
				return KERR_INVALID_CONFIG;
			}
			if (cfg_topic_schema.defs[id].type != CFG_LIST) {
				snprintf(why, why_len, "Config value %s is not allowed for config key: %s "
					 "(not a list)", c->config_operation == OP_APPEND ? "append" : "subtract",
					 key);
				return KERR_INVALID_CONFIG;
			}
			if (!val) {
				snprintf(why, why_len, "Null value not supported for: %s", key);
				return KERR_INVALID_CONFIG;
			}
			char *nv = list_edit(q, cfg_topic_str(nc, bc, id), val,
					     c->config_operation == OP_APPEND, oom);
			if (*oom)
				return KERR_UNKNOWN_SERVER_ERROR;
			if (cfg_set(nc, key, nv, why, why_len) < 0)
				return KERR_INVALID_CONFIG;
			break;
		}
		default:
			snprintf(why, why_len, "unknown config operation %d for %s", c->config_operation,
				 key ? key : "(null)");
			return KERR_INVALID_REQUEST;
		}
	}
	return KERR_NONE;
}

static void incremental_alter_configs_answer(struct op_state *st)
{
	KAFKA_RESPOND(st->q, incremental_alter_configs_response,
		      (struct kmsg_incremental_alter_configs_response *)st->resp);
}

void kafka_handle_incremental_alter_configs(struct kreq *q)
{
	struct kmsg_incremental_alter_configs_request req;
	kmsg_incremental_alter_configs_request_init(&req);
	if (kmsg_incremental_alter_configs_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	int32_t nr = req.resources.len < 0 ? 0 : req.resources.len;
	struct op_wait *waits;
	struct op_state *st = op_begin(q, sizeof(struct kmsg_incremental_alter_configs_response),
				       incremental_alter_configs_answer, nr, sizeof *waits,
				       (void **)&waits);
	if (!st)
		return;
	struct kmsg_incremental_alter_configs_response *resp = st->resp;
	kmsg_incremental_alter_configs_response_init(resp);
	resp->responses.items = arena_calloc(&q->arena, (size_t)nr + 1, sizeof *resp->responses.items);
	if (!resp->responses.items) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	resp->responses.len = nr;
	bool oom = false;
	for (int32_t i = 0; i < nr && !oom; i++) {
		const struct kmsg_incremental_alter_configs_request_alter_configs_resource *rr =
			&req.resources.items[i];
		struct kmsg_incremental_alter_configs_response_alter_configs_resource_response *r =
			&resp->responses.items[i];
		kmsg_incremental_alter_configs_response_alter_configs_resource_response_init(r);
		r->resource_type = rr->resource_type;
		r->resource_name = rr->resource_name;
		alter_resource(st, &waits[i], "incremental alter configs of", incremental_alter_build,
			       rr, rr->resource_type, rr->resource_name, req.validate_only,
			       &r->error_code, &r->error_message, &oom);
	}
	st->oom = st->oom || oom;
	op_release(st);
}

/* --- OffsetForLeaderEpoch ---------------------------------------------------------------------- */

/* Strata's leader epoch is always 0 and starts at offset 0: the answers are what Kafka's
 * LeaderEpochFileCache.endOffsetFor gives with the single entry (epoch 0, log start). */
#define STRATA_LEADER_EPOCH 0

void kafka_handle_offset_for_leader_epoch(struct kreq *q)
{
	struct kmsg_offset_for_leader_epoch_request req;
	kmsg_offset_for_leader_epoch_request_init(&req);
	if (kmsg_offset_for_leader_epoch_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	int32_t nt = req.topics.len < 0 ? 0 : req.topics.len;
	struct kmsg_offset_for_leader_epoch_response resp;
	kmsg_offset_for_leader_epoch_response_init(&resp);
	resp.topics.items = arena_calloc(&q->arena, (size_t)nt + 1, sizeof *resp.topics.items);
	if (!resp.topics.items) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	resp.topics.len = nt;
	for (int32_t i = 0; i < nt; i++) {
		const struct kmsg_offset_for_leader_epoch_request_offset_for_leader_topic *rt =
			&req.topics.items[i];
		struct kmsg_offset_for_leader_epoch_response_offset_for_leader_topic_result *tr =
			&resp.topics.items[i];
		kmsg_offset_for_leader_epoch_response_offset_for_leader_topic_result_init(tr);
		tr->topic = rt->topic;
		int32_t np = rt->partitions.len < 0 ? 0 : rt->partitions.len;
		tr->partitions.items = arena_calloc(&q->arena, (size_t)np + 1, sizeof *tr->partitions.items);
		if (!tr->partitions.items) {
			kafka_bad_request(q, "out of memory");
			return;
		}
		tr->partitions.len = np;
		struct topic *t = find_topic(q, rt->topic);
		for (int32_t j = 0; j < np; j++) {
			const struct kmsg_offset_for_leader_epoch_request_offset_for_leader_partition *rp =
				&rt->partitions.items[j];
			struct kmsg_offset_for_leader_epoch_response_epoch_end_offset *pr =
				&tr->partitions.items[j];
			kmsg_offset_for_leader_epoch_response_epoch_end_offset_init(pr);
			pr->partition = rp->partition;
			pr->leader_epoch = -1;
			pr->end_offset = -1;
			if (!t || rp->partition < 0 || rp->partition >= t->n_partitions) {
				pr->error_code = KERR_UNKNOWN_TOPIC_OR_PARTITION;
				continue;
			}
			/* The client's view of the current epoch (v2+): -1 means "not known". */
			int32_t cur = q->version >= 2 ? rp->current_leader_epoch : -1;
			if (cur != -1 && cur < STRATA_LEADER_EPOCH) {
				pr->error_code = KERR_FENCED_LEADER_EPOCH;
				continue;
			}
			if (cur > STRATA_LEADER_EPOCH) {
				pr->error_code = KERR_UNKNOWN_LEADER_EPOCH;
				continue;
			}
			struct log *l = t->parts[rp->partition]->log;
			pr->error_code = KERR_NONE;
			if (rp->leader_epoch == STRATA_LEADER_EPOCH) {
				/* the current epoch: it ends at the log end */
				pr->leader_epoch = STRATA_LEADER_EPOCH;
				pr->end_offset = log_end_offset(l);
			} else if (rp->leader_epoch < -1) {
				/* older than every known epoch: the start of the first one we know */
				pr->leader_epoch = rp->leader_epoch;
				pr->end_offset = log_start_offset(l);
			}
			/* -1 (undefined) or newer than ours: UNDEFINED epoch and offset, no error */
		}
	}
	KAFKA_RESPOND(q, offset_for_leader_epoch_response, &resp);
}

/* --- InitProducerId ---------------------------------------------------------------------------- */

/* Producer ids are handed out from blocks of PRODUCER_ID_BLOCK reserved in a file under the
 * metadata directory before any id of the block is used, so an id is never given twice, even
 * across a crash (at most a block is skipped). The file holds the first id not reserved.
 * s->next_producer_id == 0 means "not loaded yet". A metadata directory without the file
 * starts at the wall clock in ms times PRODUCER_ID_BLOCK, not at a constant: a broker whose
 * log.dirs were lost and whose topics were restored from the bucket (or a new broker at the
 * same address) must not hand out again the ids that producers still running since before the
 * loss hold -- it would take their batches for the new producer's (OUT_OF_ORDER_SEQUENCE_NUMBER
 * or worse). An earlier broker would have needed 1000 ids per ms of its uptime to reach them. */
#define PRODUCER_ID_BLOCK 1000
#define PRODUCER_ID_FILE "producer-id"

static int producer_ids_load(struct kafka_server *s)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s/" PRODUCER_ID_FILE, s->broker->meta_dir) >= (int)sizeof path)
		return -ENAMETOOLONG;
	int64_t now_ms = st_now_ms();
	int64_t next = now_ms > 0 && now_ms < INT64_MAX / (2 * PRODUCER_ID_BLOCK)
			       ? now_ms * PRODUCER_ID_BLOCK : PRODUCER_ID_BLOCK;
	FILE *f = fopen(path, "r");
	if (!f && errno != ENOENT)
		return -errno;
	if (f) {
		char line[128];
		bool found = false;
		while (fgets(line, sizeof line, f)) {
			if (line[0] == '#' || line[0] == '\n')
				continue;
			char *end;
			long long v = strtoll(line, &end, 10);
			if (end == line || (*end && *end != '\n') || v < PRODUCER_ID_BLOCK ||
			    v % PRODUCER_ID_BLOCK || v > INT64_MAX - PRODUCER_ID_BLOCK) {
				fclose(f);
				slog_error("kafka", "%s: bad content", path);
				return -EINVAL;
			}
			next = v;
			found = true;
			break;
		}
		fclose(f);
		if (!found) {
			slog_error("kafka", "%s: no value", path);
			return -EINVAL;
		}
	}
	s->next_producer_id = next;
	slog_info("kafka", "producer ids continue from %" PRId64, next);
	return 0;
}

/* The next producer id, reserving a new block when this is the first id of one. Returns the id
 * or -errno. Blocking (file write + fsync) once per PRODUCER_ID_BLOCK ids. */
static int64_t producer_id_next(struct kafka_server *s)
{
	int rc;
	if (s->next_producer_id == 0 && (rc = producer_ids_load(s)) < 0)
		return rc;
	int64_t id = s->next_producer_id;
	if (id % PRODUCER_ID_BLOCK == 0) {
		char buf[128];
		int n = snprintf(buf, sizeof buf, "# strata: producer ids below this one may have been "
				 "used\n%" PRId64 "\n", id + PRODUCER_ID_BLOCK);
		rc = broker_write_meta_file(s->broker, PRODUCER_ID_FILE, buf, (size_t)n);
		if (rc < 0) {
			slog_error("kafka", "cannot reserve producer ids in %s/" PRODUCER_ID_FILE ": %s",
				   s->broker->meta_dir, strerror(-rc));
			return rc;
		}
	}
	s->next_producer_id = id + 1;
	return id;
}

void kafka_handle_init_producer_id(struct kreq *q)
{
	struct kmsg_init_producer_id_request req;
	kmsg_init_producer_id_request_init(&req);
	if (kmsg_init_producer_id_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	struct kmsg_init_producer_id_response resp;
	kmsg_init_producer_id_response_init(&resp);
	resp.producer_id = -1;
	resp.producer_epoch = -1;
	if (req.transactional_id.len == 0) {
		/* As Kafka: an empty transactional id is a client bug. */
		resp.error_code = KERR_INVALID_REQUEST;
	} else if (req.transactional_id.len > 0) {
		/* Transactions are not implemented yet. This error is fatal in the Java client and
		 * librdkafka (a retriable one would make them spin until their timeout). */
		slog_warn("kafka", "%s: InitProducerId for transactional id '%.*s' refused: "
			  "transactions are not supported", net_conn_peer(q->nreq->conn),
			  shown_len(req.transactional_id), req.transactional_id.p);
		resp.error_code = KERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
	} else {
		/* Idempotent producer: as Kafka, always a fresh id with epoch 0, also when the
		 * client sends its current id and epoch (KIP-360 bump after an error): a new id
		 * resets its sequences just as well. */
		int64_t id = producer_id_next(q->srv);
		if (id < 0) {
			resp.error_code = KERR_COORDINATOR_NOT_AVAILABLE; /* retriable */
		} else {
			resp.error_code = KERR_NONE;
			resp.producer_id = id;
			resp.producer_epoch = 0;
		}
	}
	KAFKA_RESPOND(q, init_producer_id_response, &resp);
}
