/* admin_wire.c -- wire-level checks of the admin APIs (src/kafka_admin.c) against a running
 * stratad, every advertised version of each, with the generated codecs as the client (so the
 * flexible versions that the installed client libraries do not speak are covered too).
 * Run by t/admin.sh; prints TAP.
 *
 *   t/admin-wire PORT run STATE   the main checks; writes the last producer id to STATE
 *   t/admin-wire PORT after STATE after a restart: producer ids continue past STATE's
 *   t/admin-wire PORT nodelete    broker runs with delete.topic.enable=false
 *   t/admin-wire PORT async GATE  topic operations off the reactor: concurrent creations of one
 *                                 name, Metadata auto-creation, other requests served meanwhile,
 *                                 deletion, growth and settings changes held (pipelined
 *                                 AlterConfigs in order, validate_only at once)
 *                                 (broker started with STRATA_TEST_TOPIC_GATE=GATE)
 *   t/admin-wire PORT hold GATE   holds a creation until the broker is stopped; afterhold: it
 *                                 was not created, and async's settings changes survived
 *
 * The broker must have been started with --set log.segment.bytes=536870912 (a static broker
 * setting the topic descriptions must report). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "batchgen.h"
#include "strata/arena.h"
#include "strata/common.h"
#include "strata/kio.h"
#include "strata/kmsg.h"
#include "tap.h"

#define NODE_ID 1
#define STATIC_SEGMENT_BYTES "536870912"
#define WIRE_TIMEOUT_MS 30000

#define WIRE_CLIENT_ID "admin-wire"
#include "wire.h"

static int wire_call(int fd, int16_t key, int16_t ver, const struct kw *body, struct kr *r)
{
	int32_t corr = wire_send(fd, key, ver, body);
	if (corr < 0)
		return corr;
	return wire_recv(fd, key, ver, corr, r);
}

/* One request/response with the generated codecs: 0 or a negative errno. */
#define CALL(fd, name, key, ver, req, resp) ({ \
	struct kw w_; \
	kw_init(&w_, 256); \
	int rc_ = kmsg_##name##_request_encode(&w_, (int16_t)(ver), (req)); \
	struct kr r_; \
	if (rc_ == 0) \
		rc_ = wire_call((fd), (key), (int16_t)(ver), &w_, &r_); \
	kw_free(&w_); \
	kmsg_##name##_response_init(resp); \
	if (rc_ == 0) \
		rc_ = kmsg_##name##_response_decode(&r_, (int16_t)(ver), (resp), &A); \
	if (rc_ != 0) \
		tap_diag("%s v%d: call failed: %s", #name, (int)(ver), strerror(-rc_)); \
	rc_; \
})

/* Sends one request without waiting: the correlation id, or a negative errno. */
#define SEND(fd, name, key, ver, req) ({ \
	struct kw w_; \
	kw_init(&w_, 256); \
	int32_t c_ = kmsg_##name##_request_encode(&w_, (int16_t)(ver), (req)); \
	if (c_ == 0) \
		c_ = wire_send((fd), (key), (int16_t)(ver), &w_); \
	kw_free(&w_); \
	c_; \
})
#define RECV(fd, name, key, ver, corr, resp) ({ \
	struct kr r_; \
	int32_t k_ = (corr); \
	int rc_ = k_ < 0 ? (int)k_ : wire_recv((fd), (key), (int16_t)(ver), k_, &r_); \
	kmsg_##name##_response_init(resp); \
	if (rc_ == 0) \
		rc_ = kmsg_##name##_response_decode(&r_, (int16_t)(ver), (resp), &A); \
	rc_; \
})

static bool kstr_has(struct kstr s, const char *needle)
{
	if (s.len <= 0)
		return false;
	return memmem(s.p, (size_t)s.len, needle, strlen(needle)) != NULL;
}

static void show_msg(struct kstr m)
{
	if (m.len >= 0)
		tap_diag("message: %.*s", m.len, m.p);
}

/* --- small requests used by several checks ----------------------------------------------- */

/* Partition count of a topic from Metadata v4, -1 if it does not exist. */
static int32_t topic_partitions(int fd, const char *name)
{
	struct kmsg_metadata_request_topic t;
	kmsg_metadata_request_topic_init(&t);
	t.name = kstr_c(name);
	struct kmsg_metadata_request req;
	kmsg_metadata_request_init(&req);
	req.topics.items = &t;
	req.topics.len = 1;
	req.allow_auto_topic_creation = false; /* the broker auto-creates by default */
	struct kmsg_metadata_response resp;
	if (CALL(fd, metadata, 3, 4, &req, &resp) != 0 || resp.topics.len != 1)
		return -2;
	if (resp.topics.items[0].error_code != 0)
		return -1;
	return resp.topics.items[0].partitions.len;
}

struct ct_opts {
	const char *name;
	int32_t partitions;
	int16_t rf;
	const char *const *configs;     /* key, value, key, value, ..., NULL */
	const int32_t *assign_nodes;    /* one node per partition, or NULL */
	int32_t n_assign;
	bool validate_only;
};

static int create_topic(int fd, int16_t ver, const struct ct_opts *o,
			struct kmsg_create_topics_response_creatable_topic_result *out)
{
	struct kmsg_create_topics_request_creatable_topic_config cfgs[16];
	struct kmsg_create_topics_request_creatable_replica_assignment asg[16];
	struct kmsg_create_topics_request_creatable_topic t;
	kmsg_create_topics_request_creatable_topic_init(&t);
	t.name = kstr_c(o->name);
	t.num_partitions = o->partitions;
	t.replication_factor = o->rf;
	int n = 0;
	for (; o->configs && o->configs[2 * n]; n++) {
		kmsg_create_topics_request_creatable_topic_config_init(&cfgs[n]);
		cfgs[n].name = kstr_c(o->configs[2 * n]);
		cfgs[n].value = kstr_c(o->configs[2 * n + 1]);
	}
	t.configs.items = cfgs;
	t.configs.len = n;
	for (int32_t i = 0; i < o->n_assign; i++) {
		kmsg_create_topics_request_creatable_replica_assignment_init(&asg[i]);
		asg[i].partition_index = i;
		asg[i].broker_ids.items = (int32_t *)&o->assign_nodes[i];
		asg[i].broker_ids.len = 1;
	}
	t.assignments.items = asg;
	t.assignments.len = o->n_assign;
	struct kmsg_create_topics_request req;
	kmsg_create_topics_request_init(&req);
	req.topics.items = &t;
	req.topics.len = 1;
	req.timeout_ms = 10000;
	req.validate_only = o->validate_only;
	struct kmsg_create_topics_response resp;
	int rc = CALL(fd, create_topics, 19, ver, &req, &resp);
	if (rc != 0)
		return rc;
	if (resp.topics.len != 1)
		return -EPROTO;
	*out = resp.topics.items[0];
	return 0;
}

static const struct kmsg_create_topics_response_creatable_topic_configs *
ct_config(const struct kmsg_create_topics_response_creatable_topic_result *r, const char *name)
{
	for (int32_t i = 0; i < r->configs.len; i++)
		if (kstr_eq_c(r->configs.items[i].name, name))
			return &r->configs.items[i];
	return NULL;
}

/* DescribeConfigs of one resource; keys NULL = all. */
static int describe(int fd, int16_t ver, int8_t type, const char *name, const char *const *keys,
		    bool syn, bool doc, struct kmsg_describe_configs_response_describe_configs_result *out)
{
	struct kstr k[16];
	int nk = 0;
	for (; keys && keys[nk]; nk++)
		k[nk] = kstr_c(keys[nk]);
	struct kmsg_describe_configs_request_describe_configs_resource r;
	kmsg_describe_configs_request_describe_configs_resource_init(&r);
	r.resource_type = type;
	r.resource_name = kstr_c(name);
	r.configuration_keys.items = keys ? k : NULL;
	r.configuration_keys.len = keys ? nk : -1;
	struct kmsg_describe_configs_request req;
	kmsg_describe_configs_request_init(&req);
	req.resources.items = &r;
	req.resources.len = 1;
	req.include_synonyms = ver >= 1 && syn;     /* not encodable before */
	req.include_documentation = ver >= 3 && doc;
	struct kmsg_describe_configs_response resp;
	int rc = CALL(fd, describe_configs, 32, ver, &req, &resp);
	if (rc != 0)
		return rc;
	if (resp.results.len != 1)
		return -EPROTO;
	*out = resp.results.items[0];
	return 0;
}

static const struct kmsg_describe_configs_response_describe_configs_resource_result *
dc_config(const struct kmsg_describe_configs_response_describe_configs_result *r, const char *name)
{
	for (int32_t i = 0; i < r->configs.len; i++)
		if (kstr_eq_c(r->configs.items[i].name, name))
			return &r->configs.items[i];
	return NULL;
}

static bool dc_is(const struct kmsg_describe_configs_response_describe_configs_result *r,
		  const char *name, const char *value, int source)
{
	const struct kmsg_describe_configs_response_describe_configs_resource_result *c = dc_config(r, name);
	if (!c) {
		tap_diag("%s: not described", name);
		return false;
	}
	bool ok_v = value ? kstr_eq_c(c->value, value) : c->value.len < 0;
	bool ok_s = source < 0 || c->config_source == source;
	if (!ok_v || !ok_s)
		tap_diag("%s: value '%.*s' source %d, want '%s' source %d", name,
			 c->value.len < 0 ? 4 : c->value.len, c->value.len < 0 ? "null" : c->value.p,
			 c->config_source, value ? value : "null", source);
	return ok_v && ok_s;
}

/* AlterConfigs of n resources of one type, each with the settings kv (key, value, ..., NULL),
 * not waiting: the correlation id or a negative errno. */
static int32_t send_alter(int fd, int16_t ver, int8_t type, const char *const *names, int n,
			  const char *const *kv, bool validate_only)
{
	struct kmsg_alter_configs_request_alterable_config c[16];
	struct kmsg_alter_configs_request_alter_configs_resource r[4];
	int nc = 0;
	for (; kv && kv[2 * nc] && nc < 16; nc++) {
		kmsg_alter_configs_request_alterable_config_init(&c[nc]);
		c[nc].name = kstr_c(kv[2 * nc]);
		c[nc].value = kstr_c(kv[2 * nc + 1]);
	}
	for (int i = 0; i < n && i < 4; i++) {
		kmsg_alter_configs_request_alter_configs_resource_init(&r[i]);
		r[i].resource_type = type;
		r[i].resource_name = kstr_c(names[i]);
		r[i].configs.items = c;
		r[i].configs.len = nc;
	}
	struct kmsg_alter_configs_request req;
	kmsg_alter_configs_request_init(&req);
	req.resources.items = r;
	req.resources.len = ST_MIN(n, 4);
	req.validate_only = validate_only;
	return SEND(fd, alter_configs, 33, ver, &req);
}

/* The answer to send_alter of one resource: its error code (or -1000 - errno), msg its message. */
static int alter_answer(int fd, int16_t ver, int32_t corr, struct kstr *msg)
{
	struct kmsg_alter_configs_response resp;
	int rc = RECV(fd, alter_configs, 33, ver, corr, &resp);
	if (rc != 0)
		tap_diag("alter_configs v%d: call failed: %s", ver, strerror(-rc));
	if (rc != 0 || resp.responses.len != 1)
		return -1000 + (rc ? rc : -EPROTO);
	if (msg)
		*msg = resp.responses.items[0].error_message;
	return resp.responses.items[0].error_code;
}

/* AlterConfigs of one topic: key, value, ..., NULL. Returns the error code (or -1000 - errno). */
static int alter(int fd, int16_t ver, int8_t type, const char *name, const char *const *kv,
		 bool validate_only, struct kstr *msg)
{
	return alter_answer(fd, ver, send_alter(fd, ver, type, &name, 1, kv, validate_only), msg);
}

struct iop {
	const char *key;
	int8_t op;
	const char *value;
};

/* IncrementalAlterConfigs of one resource, not waiting: the correlation id or a negative errno. */
static int32_t send_ialter(int fd, int16_t ver, int8_t type, const char *name, const struct iop *ops,
			   int n, bool validate_only)
{
	struct kmsg_incremental_alter_configs_request_alterable_config c[16];
	for (int i = 0; i < n; i++) {
		kmsg_incremental_alter_configs_request_alterable_config_init(&c[i]);
		c[i].name = kstr_c(ops[i].key);
		c[i].config_operation = ops[i].op;
		c[i].value = kstr_c(ops[i].value);
	}
	struct kmsg_incremental_alter_configs_request_alter_configs_resource r;
	kmsg_incremental_alter_configs_request_alter_configs_resource_init(&r);
	r.resource_type = type;
	r.resource_name = kstr_c(name);
	r.configs.items = c;
	r.configs.len = n;
	struct kmsg_incremental_alter_configs_request req;
	kmsg_incremental_alter_configs_request_init(&req);
	req.resources.items = &r;
	req.resources.len = 1;
	req.validate_only = validate_only;
	return SEND(fd, incremental_alter_configs, 44, ver, &req);
}

/* The answer to send_ialter: the error code (or -1000 - errno), msg its message. */
static int ialter_answer(int fd, int16_t ver, int32_t corr, struct kstr *msg)
{
	struct kmsg_incremental_alter_configs_response resp;
	int rc = RECV(fd, incremental_alter_configs, 44, ver, corr, &resp);
	if (rc != 0)
		tap_diag("incremental_alter_configs v%d: call failed: %s", ver, strerror(-rc));
	if (rc != 0 || resp.responses.len != 1)
		return -1000 + (rc ? rc : -EPROTO);
	if (msg)
		*msg = resp.responses.items[0].error_message;
	return resp.responses.items[0].error_code;
}

static int ialter(int fd, int16_t ver, int8_t type, const char *name, const struct iop *ops, int n,
		  bool validate_only, struct kstr *msg)
{
	return ialter_answer(fd, ver, send_ialter(fd, ver, type, name, ops, n, validate_only), msg);
}

static int create_partitions(int fd, int16_t ver, const char *name, int32_t count,
			     const int32_t *nodes, int32_t n_assign, bool validate_only, struct kstr *msg)
{
	struct kmsg_create_partitions_request_create_partitions_assignment a[16];
	for (int32_t i = 0; i < n_assign; i++) {
		kmsg_create_partitions_request_create_partitions_assignment_init(&a[i]);
		a[i].broker_ids.items = (int32_t *)&nodes[i];
		a[i].broker_ids.len = 1;
	}
	struct kmsg_create_partitions_request_create_partitions_topic t;
	kmsg_create_partitions_request_create_partitions_topic_init(&t);
	t.name = kstr_c(name);
	t.count = count;
	t.assignments.items = nodes ? a : NULL;
	t.assignments.len = nodes ? n_assign : -1;
	struct kmsg_create_partitions_request req;
	kmsg_create_partitions_request_init(&req);
	req.topics.items = &t;
	req.topics.len = 1;
	req.timeout_ms = 10000;
	req.validate_only = validate_only;
	struct kmsg_create_partitions_response resp;
	int rc = CALL(fd, create_partitions, 37, ver, &req, &resp);
	if (rc != 0 || resp.results.len != 1)
		return -1000 + (rc ? rc : -EPROTO);
	if (msg)
		*msg = resp.results.items[0].error_message;
	return resp.results.items[0].error_code;
}

/* Produces n records to partition 0; returns the base offset or a negative value. */
static int64_t produce(int fd, const char *topic, int n)
{
	static uint8_t buf[1 << 16];
	size_t len = batchgen_build(buf, sizeof buf, n, 8, 1700000000000, 0);
	if (!len)
		return -1;
	struct kmsg_produce_request_partition_produce_data pd;
	kmsg_produce_request_partition_produce_data_init(&pd);
	pd.index = 0;
	pd.records = (struct kbytes){ buf, (int32_t)len };
	struct kmsg_produce_request_topic_produce_data td;
	kmsg_produce_request_topic_produce_data_init(&td);
	td.name = kstr_c(topic);
	td.partition_data.items = &pd;
	td.partition_data.len = 1;
	struct kmsg_produce_request req;
	kmsg_produce_request_init(&req);
	req.acks = -1;
	req.timeout_ms = 10000;
	req.topic_data.items = &td;
	req.topic_data.len = 1;
	struct kmsg_produce_response resp;
	if (CALL(fd, produce, 0, 7, &req, &resp) != 0 || resp.responses.len != 1 ||
	    resp.responses.items[0].partition_responses.len != 1)
		return -2;
	struct kmsg_produce_response_partition_produce_response *p =
		&resp.responses.items[0].partition_responses.items[0];
	if (p->error_code) {
		tap_diag("produce to %s: error %d", topic, p->error_code);
		return -3;
	}
	return p->base_offset;
}

static int delete_records(int fd, int16_t ver, const char *topic, int32_t part, int64_t offset,
			  int64_t *low)
{
	struct kmsg_delete_records_request_delete_records_partition p;
	kmsg_delete_records_request_delete_records_partition_init(&p);
	p.partition_index = part;
	p.offset = offset;
	struct kmsg_delete_records_request_delete_records_topic t;
	kmsg_delete_records_request_delete_records_topic_init(&t);
	t.name = kstr_c(topic);
	t.partitions.items = &p;
	t.partitions.len = 1;
	struct kmsg_delete_records_request req;
	kmsg_delete_records_request_init(&req);
	req.topics.items = &t;
	req.topics.len = 1;
	req.timeout_ms = 10000;
	struct kmsg_delete_records_response resp;
	if (CALL(fd, delete_records, 21, ver, &req, &resp) != 0 || resp.topics.len != 1 ||
	    resp.topics.items[0].partitions.len != 1)
		return -1000;
	*low = resp.topics.items[0].partitions.items[0].low_watermark;
	return resp.topics.items[0].partitions.items[0].error_code;
}

/* ListOffsets v1 EARLIEST (-2) or LATEST (-1). */
static int64_t list_offset(int fd, const char *topic, int64_t which)
{
	struct kmsg_list_offsets_request_list_offsets_partition p;
	kmsg_list_offsets_request_list_offsets_partition_init(&p);
	p.partition_index = 0;
	p.timestamp = which;
	struct kmsg_list_offsets_request_list_offsets_topic t;
	kmsg_list_offsets_request_list_offsets_topic_init(&t);
	t.name = kstr_c(topic);
	t.partitions.items = &p;
	t.partitions.len = 1;
	struct kmsg_list_offsets_request req;
	kmsg_list_offsets_request_init(&req);
	req.replica_id = -1;
	req.topics.items = &t;
	req.topics.len = 1;
	struct kmsg_list_offsets_response resp;
	if (CALL(fd, list_offsets, 2, 1, &req, &resp) != 0 || resp.topics.len != 1 ||
	    resp.topics.items[0].partitions.len != 1 || resp.topics.items[0].partitions.items[0].error_code)
		return -100;
	return resp.topics.items[0].partitions.items[0].offset;
}

static int ofle(int fd, int16_t ver, const char *topic, int32_t part, int32_t current, int32_t epoch,
		int32_t *epoch_out, int64_t *end_out)
{
	struct kmsg_offset_for_leader_epoch_request_offset_for_leader_partition p;
	kmsg_offset_for_leader_epoch_request_offset_for_leader_partition_init(&p);
	p.partition = part;
	p.current_leader_epoch = current;
	p.leader_epoch = epoch;
	struct kmsg_offset_for_leader_epoch_request_offset_for_leader_topic t;
	kmsg_offset_for_leader_epoch_request_offset_for_leader_topic_init(&t);
	t.topic = kstr_c(topic);
	t.partitions.items = &p;
	t.partitions.len = 1;
	struct kmsg_offset_for_leader_epoch_request req;
	kmsg_offset_for_leader_epoch_request_init(&req);
	req.replica_id = -1;
	req.topics.items = &t;
	req.topics.len = 1;
	struct kmsg_offset_for_leader_epoch_response resp;
	if (CALL(fd, offset_for_leader_epoch, 23, ver, &req, &resp) != 0 || resp.topics.len != 1 ||
	    resp.topics.items[0].partitions.len != 1)
		return -1000;
	*epoch_out = resp.topics.items[0].partitions.items[0].leader_epoch;
	*end_out = resp.topics.items[0].partitions.items[0].end_offset;
	return resp.topics.items[0].partitions.items[0].error_code;
}

static int init_pid(int fd, int16_t ver, struct kstr txn, int64_t pid, int16_t epoch, int64_t *pid_out,
		    int16_t *epoch_out)
{
	struct kmsg_init_producer_id_request req;
	kmsg_init_producer_id_request_init(&req);
	req.transactional_id = txn;
	req.transaction_timeout_ms = 60000;
	req.producer_id = pid;
	req.producer_epoch = epoch;
	struct kmsg_init_producer_id_response resp;
	if (CALL(fd, init_producer_id, 22, ver, &req, &resp) != 0)
		return -1000;
	*pid_out = resp.producer_id;
	*epoch_out = resp.producer_epoch;
	return resp.error_code;
}

/* DeleteTopics of one topic by name (id NULL) or id (v6). */
static int delete_topic(int fd, int16_t ver, const char *name, const uint8_t *id, struct kstr *msg)
{
	struct kstr n = kstr_c(name);
	struct kmsg_delete_topics_request_delete_topic_state s;
	kmsg_delete_topics_request_delete_topic_state_init(&s);
	s.name = name ? n : KSTR_NULL;
	if (id)
		memcpy(s.topic_id, id, 16);
	struct kmsg_delete_topics_request req;
	kmsg_delete_topics_request_init(&req);
	if (ver >= 6) {
		req.topics.items = &s;
		req.topics.len = 1;
	} else {
		req.topic_names.items = &n;
		req.topic_names.len = 1;
	}
	req.timeout_ms = 10000;
	struct kmsg_delete_topics_response resp;
	if (CALL(fd, delete_topics, 20, ver, &req, &resp) != 0 || resp.responses.len != 1)
		return -1000;
	if (msg)
		*msg = resp.responses.items[0].error_message;
	return resp.responses.items[0].error_code;
}

/* --- the checks ------------------------------------------------------------------------------ */

static uint8_t topic_id_v7[16];

static void check_create_topics(int fd)
{
	static const char *const cfg[] = { "retention.bytes", "12345", NULL };
	for (int16_t v = 0; v <= 7; v++) {
		arena_reset(&A);
		char name[32];
		snprintf(name, sizeof name, "wire-v%d", v);
		struct ct_opts o = { .name = name, .partitions = 2, .rf = v >= 4 ? -1 : 1, .configs = cfg };
		struct kmsg_create_topics_response_creatable_topic_result r;
		int rc = create_topic(fd, v, &o, &r);
		ok(rc == 0 && r.error_code == 0 && topic_partitions(fd, name) == 2,
		   "CreateTopics v%d creates %s with 2 partitions", v, name);
		if (rc == 0 && r.error_code)
			show_msg(r.error_message);
		if (v >= 5) {
			const struct kmsg_create_topics_response_creatable_topic_configs *rb =
				ct_config(&r, "retention.bytes"), *sb = ct_config(&r, "segment.bytes"),
				*rm = ct_config(&r, "retention.ms");
			ok(r.num_partitions == 2 && r.replication_factor == 1 && rb && sb && rm &&
			   kstr_eq_c(rb->value, "12345") && rb->config_source == 1 &&
			   kstr_eq_c(sb->value, STATIC_SEGMENT_BYTES) && sb->config_source == 4 &&
			   kstr_eq_c(rm->value, "604800000") && rm->config_source == 5 && !rb->read_only,
			   "CreateTopics v%d answers partitions, replication factor and configs with sources", v);
		}
		if (v >= 7) {
			ok(!kmsg_uuid_is_zero(r.topic_id), "CreateTopics v7 answers the topic id");
			memcpy(topic_id_v7, r.topic_id, 16);
		}
	}
	arena_reset(&A);
	struct kmsg_create_topics_response_creatable_topic_result r;
	struct ct_opts o = { .name = "wire-v3", .partitions = 1, .rf = 1 };
	ok(create_topic(fd, 3, &o, &r) == 0 && r.error_code == 36 && kstr_has(r.error_message, "already exists"),
	   "an existing topic: TOPIC_ALREADY_EXISTS");
	o = (struct ct_opts){ .name = "bad name!", .partitions = 1, .rf = 1 };
	ok(create_topic(fd, 4, &o, &r) == 0 && r.error_code == 17, "an illegal name: INVALID_TOPIC_EXCEPTION");
	o = (struct ct_opts){ .name = "wire-rf", .partitions = 1, .rf = 3 };
	ok(create_topic(fd, 4, &o, &r) == 0 && r.error_code == 38 && kstr_has(r.error_message, "single node"),
	   "replication factor 3: INVALID_REPLICATION_FACTOR saying why");
	show_msg(r.error_message);
	o = (struct ct_opts){ .name = "wire-p0", .partitions = 0, .rf = 1 };
	ok(create_topic(fd, 4, &o, &r) == 0 && r.error_code == 37, "0 partitions: INVALID_PARTITIONS");
	static const char *const badkey[] = { "retention.bytes", "5", "no.such.key", "1", NULL };
	o = (struct ct_opts){ .name = "wire-bad", .partitions = 1, .rf = 1, .configs = badkey };
	ok(create_topic(fd, 4, &o, &r) == 0 && r.error_code == 40 && kstr_has(r.error_message, "no.such.key"),
	   "an unknown config key: INVALID_CONFIG naming it");
	show_msg(r.error_message);
	static const char *const badval[] = { "segment.bytes", "tiny", NULL };
	o.configs = badval;
	ok(create_topic(fd, 4, &o, &r) == 0 && r.error_code == 40 &&
	   kstr_has(r.error_message, "segment.bytes") && kstr_has(r.error_message, "tiny"),
	   "a bad config value: INVALID_CONFIG naming key and value");
	show_msg(r.error_message);
	ok(topic_partitions(fd, "wire-bad") == -1, "refused topics are not created");
	o = (struct ct_opts){ .name = "wire-vo", .partitions = 3, .rf = 1, .validate_only = true };
	ok(create_topic(fd, 4, &o, &r) == 0 && r.error_code == 0 && topic_partitions(fd, "wire-vo") == -1,
	   "validate_only checks but creates nothing");
	o.validate_only = false;
	o.partitions = -1;
	ok(create_topic(fd, 4, &o, &r) == 0 && r.error_code == 0 && topic_partitions(fd, "wire-vo") == 2,
	   "partitions -1 takes num.partitions (2)");
	static const int32_t good[] = { NODE_ID, NODE_ID, NODE_ID }, bad[] = { NODE_ID, 7 };
	o = (struct ct_opts){ .name = "wire-asg", .partitions = -1, .rf = -1, .assign_nodes = good, .n_assign = 3 };
	ok(create_topic(fd, 4, &o, &r) == 0 && r.error_code == 0 && topic_partitions(fd, "wire-asg") == 3,
	   "a manual assignment on this node creates its partitions");
	o = (struct ct_opts){ .name = "wire-asg2", .partitions = -1, .rf = -1, .assign_nodes = bad, .n_assign = 2 };
	ok(create_topic(fd, 4, &o, &r) == 0 && r.error_code == 39, "an assignment to another node: "
	   "INVALID_REPLICA_ASSIGNMENT");
	show_msg(r.error_message);

	/* the same name twice in one request */
	arena_reset(&A);
	struct kmsg_create_topics_request_creatable_topic t[2];
	for (int i = 0; i < 2; i++) {
		kmsg_create_topics_request_creatable_topic_init(&t[i]);
		t[i].name = KSTR_LIT("wire-dup");
		t[i].num_partitions = 1;
		t[i].replication_factor = 1;
	}
	struct kmsg_create_topics_request req;
	kmsg_create_topics_request_init(&req);
	req.topics.items = t;
	req.topics.len = 2;
	struct kmsg_create_topics_response resp;
	ok(CALL(fd, create_topics, 19, 5, &req, &resp) == 0 && resp.topics.len == 2 &&
	   resp.topics.items[0].error_code == 42 && resp.topics.items[1].error_code == 42 &&
	   topic_partitions(fd, "wire-dup") == -1, "a name twice in one request: INVALID_REQUEST for both");
}

static void check_describe_configs(int fd)
{
	for (int16_t v = 0; v <= 4; v++) {
		arena_reset(&A);
		struct kmsg_describe_configs_response_describe_configs_result r;
		int rc = describe(fd, v, 2, "wire-v7", NULL, true, true, &r);
		bool good = rc == 0 && r.error_code == 0 && r.configs.len >= 10 &&
			    dc_is(&r, "retention.bytes", "12345", v >= 1 ? 1 : -1) &&
			    dc_is(&r, "segment.bytes", STATIC_SEGMENT_BYTES, v >= 1 ? 4 : -1) &&
			    dc_is(&r, "retention.ms", "604800000", v >= 1 ? 5 : -1) &&
			    dc_is(&r, "cleanup.policy", "delete", v >= 1 ? 5 : -1);
		ok(good, "DescribeConfigs v%d: topic values and sources", v);
		if (rc != 0 || r.error_code != 0)
			continue;
		const struct kmsg_describe_configs_response_describe_configs_resource_result
			*rb = dc_config(&r, "retention.bytes"), *sb = dc_config(&r, "segment.bytes"),
			*rm = dc_config(&r, "retention.ms");
		if (v == 0)
			ok(rb && sb && !rb->is_default && sb->is_default, "v0: is_default is false only for "
			   "the topic's own setting");
		if (v >= 1) {
			ok(rb && rb->synonyms.len == 2 && kstr_eq_c(rb->synonyms.items[0].name, "retention.bytes") &&
			   rb->synonyms.items[0].source == 1 &&
			   kstr_eq_c(rb->synonyms.items[1].name, "log.retention.bytes") &&
			   kstr_eq_c(rb->synonyms.items[1].value, "-1") && rb->synonyms.items[1].source == 5,
			   "v%d synonyms: topic value, then the broker default", v);
			ok(sb && sb->synonyms.len == 2 && kstr_eq_c(sb->synonyms.items[0].name, "log.segment.bytes") &&
			   sb->synonyms.items[0].source == 4 &&
			   kstr_eq_c(sb->synonyms.items[0].value, STATIC_SEGMENT_BYTES) &&
			   sb->synonyms.items[1].source == 5,
			   "v%d synonyms: static broker setting, then its default", v);
			ok(rm && rm->synonyms.len >= 1 &&
			   kstr_eq_c(rm->synonyms.items[rm->synonyms.len - 1].name, "log.retention.hours") &&
			   kstr_eq_c(rm->synonyms.items[rm->synonyms.len - 1].value, "168"),
			   "v%d: retention.ms falls back to log.retention.hours=168", v);
		}
		if (v >= 3)
			ok(rb && rb->config_type == 5 && rb->documentation.len > 0 &&
			   dc_config(&r, "cleanup.policy")->config_type == 7,
			   "v%d: config types and documentation", v);
	}
	arena_reset(&A);
	struct kmsg_describe_configs_response_describe_configs_result r;
	static const char *const keys[] = { "retention.bytes", "no.such.key", NULL };
	ok(describe(fd, 1, 2, "wire-v7", keys, false, false, &r) == 0 && r.error_code == 0 &&
	   r.configs.len == 1 && dc_is(&r, "retention.bytes", "12345", 1) && r.configs.items[0].synonyms.len == 0,
	   "configuration_keys limits the answer (unknown keys left out), no synonyms unless asked");
	ok(describe(fd, 2, 2, "wire-nope", NULL, false, false, &r) == 0 && r.error_code == 3 &&
	   kstr_has(r.error_message, "wire-nope"), "unknown topic: UNKNOWN_TOPIC_OR_PARTITION with a message");
	ok(describe(fd, 2, 4, "1", NULL, true, false, &r) == 0 && r.error_code == 0 &&
	   dc_is(&r, "log.segment.bytes", STATIC_SEGMENT_BYTES, 4) && dc_is(&r, "num.partitions", "2", 4) &&
	   dc_is(&r, "delete.topic.enable", "true", 5) && dc_is(&r, "log.retention.ms", NULL, 5) &&
	   dc_config(&r, "node.id")->read_only && !dc_config(&r, "num.partitions")->read_only &&
	   !dc_config(&r, "broker.id"),
	   "broker resource: static and default sources, read-only flags, no aliases");
	ok(describe(fd, 2, 4, "7", NULL, false, false, &r) == 0 && r.error_code == 42,
	   "another broker id: INVALID_REQUEST");
	ok(describe(fd, 2, 3, "g", NULL, false, false, &r) == 0 && r.error_code == 42,
	   "a group resource: INVALID_REQUEST");
}

static void check_alter_configs(int fd)
{
	for (int16_t v = 0; v <= 2; v++) {
		arena_reset(&A);
		char name[32], ms[32];
		snprintf(name, sizeof name, "wire-v%d", v + 5);
		snprintf(ms, sizeof ms, "%d", 1000000 + v);
		const char *kv[] = { "segment.ms", ms, "cleanup.policy", "delete", NULL };
		struct kstr msg;
		int err = alter(fd, v, 2, name, kv, false, &msg);
		struct kmsg_describe_configs_response_describe_configs_result r;
		ok(err == 0 && describe(fd, 1, 2, name, NULL, false, false, &r) == 0 &&
		   dc_is(&r, "segment.ms", ms, 1) && dc_is(&r, "cleanup.policy", "delete", 1) &&
		   dc_is(&r, "retention.bytes", "-1", 5),
		   "AlterConfigs v%d replaces the set (retention.bytes back to default)", v);
		const char *bad[] = { "segment.ms", "2000", "retention.ms", "soon", NULL };
		err = alter(fd, v, 2, name, bad, false, &msg);
		ok(err == 40 && kstr_has(msg, "retention.ms") && kstr_has(msg, "soon") &&
		   describe(fd, 1, 2, name, NULL, false, false, &r) == 0 && dc_is(&r, "segment.ms", ms, 1),
		   "AlterConfigs v%d: a bad value is INVALID_CONFIG naming it; nothing changes", v);
		const char *vo[] = { "segment.ms", "3000", NULL };
		err = alter(fd, v, 2, name, vo, true, &msg);
		ok(err == 0 && describe(fd, 1, 2, name, NULL, false, false, &r) == 0 && dc_is(&r, "segment.ms", ms, 1),
		   "AlterConfigs v%d validate_only changes nothing", v);
	}
	arena_reset(&A);
	struct kstr msg;
	const char *kv[] = { "num.partitions", "3", NULL };
	ok(alter(fd, 0, 4, "1", kv, false, &msg) == 42 && kstr_has(msg, "SIGHUP"),
	   "broker resource: INVALID_REQUEST pointing at strata.conf");
	ok(alter(fd, 1, 2, "wire-nope", kv, false, &msg) == 3, "unknown topic: UNKNOWN_TOPIC_OR_PARTITION");
}

static void check_incremental_alter(int fd)
{
	for (int16_t v = 0; v <= 1; v++) {
		arena_reset(&A);
		const char *name = v ? "wire-v1" : "wire-v0";
		struct kstr msg;
		struct kmsg_describe_configs_response_describe_configs_result r;
		struct iop set[] = { { "retention.ms", 0, "7200000" }, { "retention.bytes", 1, NULL },
				     { "cleanup.policy", 2, "delete" } };
		int err = ialter(fd, v, 2, name, set, 3, false, &msg);
		ok(err == 0 && describe(fd, 1, 2, name, NULL, false, false, &r) == 0 &&
		   dc_is(&r, "retention.ms", "7200000", 1) && dc_is(&r, "retention.bytes", "-1", 5) &&
		   dc_is(&r, "cleanup.policy", "delete", 1),
		   "IncrementalAlterConfigs v%d: SET, DELETE, APPEND (no duplicate item)", v);
		struct iop keep[] = { { "segment.bytes", 0, "1048576" } };
		ok(ialter(fd, v, 2, name, keep, 1, false, &msg) == 0 &&
		   describe(fd, 1, 2, name, NULL, false, false, &r) == 0 &&
		   dc_is(&r, "retention.ms", "7200000", 1) && dc_is(&r, "segment.bytes", "1048576", 1),
		   "v%d: keys not named keep their values", v);
		struct iop sub[] = { { "cleanup.policy", 3, "delete" } };
		ok(ialter(fd, v, 2, name, sub, 1, false, &msg) == 40, "v%d: SUBTRACT to an empty policy: "
		   "INVALID_CONFIG", v);
		show_msg(msg);
		struct iop app[] = { { "retention.ms", 0, "1" }, { "segment.ms", 2, "5" } };
		ok(ialter(fd, v, 2, name, app, 2, false, &msg) == 40 && kstr_has(msg, "segment.ms") &&
		   describe(fd, 1, 2, name, NULL, false, false, &r) == 0 &&
		   dc_is(&r, "retention.ms", "7200000", 1),
		   "v%d: APPEND to a non-list key: INVALID_CONFIG, and the earlier SET is not applied", v);
		struct iop dup[] = { { "retention.ms", 0, "1" }, { "retention.ms", 0, "2" } };
		ok(ialter(fd, v, 2, name, dup, 2, false, &msg) == 42, "v%d: a key twice: INVALID_REQUEST", v);
		struct iop badop[] = { { "retention.ms", 9, "1" } };
		ok(ialter(fd, v, 2, name, badop, 1, false, &msg) == 42, "v%d: unknown operation: INVALID_REQUEST", v);
		struct iop vo[] = { { "retention.ms", 0, "99" } };
		ok(ialter(fd, v, 2, name, vo, 1, true, &msg) == 0 &&
		   describe(fd, 1, 2, name, NULL, false, false, &r) == 0 &&
		   dc_is(&r, "retention.ms", "7200000", 1), "v%d: validate_only changes nothing", v);
		struct iop unk[] = { { "no.such.key", 0, "1" } };
		ok(ialter(fd, v, 2, name, unk, 1, false, &msg) == 40 && kstr_has(msg, "no.such.key"),
		   "v%d: unknown key: INVALID_CONFIG naming it", v);
		ok(ialter(fd, v, 4, "1", vo, 1, false, &msg) == 42, "v%d: broker resource: INVALID_REQUEST", v);
	}
}

static void check_create_partitions(int fd)
{
	for (int16_t v = 0; v <= 3; v++) {
		arena_reset(&A);
		char name[32];
		snprintf(name, sizeof name, "wire-v%d", v);
		struct kstr msg;
		ok(create_partitions(fd, v, name, 3, NULL, 0, false, &msg) == 0 && topic_partitions(fd, name) == 3,
		   "CreatePartitions v%d: 2 -> 3", v);
		ok(create_partitions(fd, v, name, 3, NULL, 0, false, &msg) == 37 && msg.len > 0,
		   "v%d: the same count again: INVALID_PARTITIONS", v);
		ok(create_partitions(fd, v, name, 6, NULL, 0, true, &msg) == 0 && topic_partitions(fd, name) == 3,
		   "v%d: validate_only changes nothing", v);
		static const int32_t here[] = { NODE_ID, NODE_ID }, other[] = { 7 };
		ok(create_partitions(fd, v, name, 5, here, 2, false, &msg) == 0 && topic_partitions(fd, name) == 5,
		   "v%d: assignments on this node: 3 -> 5", v);
		ok(create_partitions(fd, v, name, 6, other, 1, false, &msg) == 39 && topic_partitions(fd, name) == 5,
		   "v%d: an assignment to another node: INVALID_REPLICA_ASSIGNMENT", v);
		ok(create_partitions(fd, v, name, 8, here, 2, false, &msg) == 39,
		   "v%d: too few assignments: INVALID_REPLICA_ASSIGNMENT", v);
		ok(create_partitions(fd, v, "wire-nope", 8, NULL, 0, false, &msg) == 3,
		   "v%d: unknown topic: UNKNOWN_TOPIC_OR_PARTITION", v);
	}
}

static void check_delete_records(int fd)
{
	arena_reset(&A);
	int64_t base = produce(fd, "wire-v4", 10);
	ok(base == 0, "10 records produced to wire-v4/0");
	for (int16_t v = 0; v <= 2; v++) {
		arena_reset(&A);
		int64_t low = -9;
		int err = delete_records(fd, v, "wire-v4", 0, 2 + v, &low);
		ok(err == 0 && low == 2 + v && list_offset(fd, "wire-v4", -2) == 2 + v,
		   "DeleteRecords v%d: log start moves to %d (ListOffsets agrees)", v, 2 + v);
	}
	int64_t low = -9;
	ok(delete_records(fd, 2, "wire-v4", 0, 1, &low) == 0 && low == 4,
	   "deleting below the log start is a no-op answering the current low watermark");
	ok(delete_records(fd, 1, "wire-v4", 0, 11, &low) == 1 && low == -1,
	   "beyond the high watermark: OFFSET_OUT_OF_RANGE");
	ok(delete_records(fd, 1, "wire-v4", 0, -1, &low) == 0 && low == 10 &&
	   list_offset(fd, "wire-v4", -2) == 10 && list_offset(fd, "wire-v4", -1) == 10,
	   "offset -1 deletes up to the high watermark");
	ok(delete_records(fd, 1, "wire-v4", 9, 0, &low) == 3 && delete_records(fd, 1, "wire-nope", 0, 0, &low) == 3,
	   "unknown partition or topic: UNKNOWN_TOPIC_OR_PARTITION");
}

static void check_offset_for_leader_epoch(int fd)
{
	/* wire-v4/0 holds offsets 0..9 (log start 10 after DeleteRecords) */
	for (int16_t v = 0; v <= 4; v++) {
		arena_reset(&A);
		int32_t ep = -9;
		int64_t end = -9;
		int err = ofle(fd, v, "wire-v4", 0, -1, 0, &ep, &end);
		ok(err == 0 && end == 10 && (v == 0 || ep == 0),
		   "OffsetForLeaderEpoch v%d: epoch 0 ends at the log end offset", v);
		err = ofle(fd, v, "wire-v4", 0, -1, 5, &ep, &end);
		ok(err == 0 && end == -1 && ep == -1, "v%d: an epoch newer than ours: undefined (-1, -1)", v);
		err = ofle(fd, v, "wire-v4", 0, -1, -1, &ep, &end);
		ok(err == 0 && end == -1 && ep == -1, "v%d: epoch -1: undefined (-1, -1)", v);
		ok(ofle(fd, v, "wire-v4", 7, -1, 0, &ep, &end) == 3, "v%d: unknown partition", v);
		if (v >= 2) {
			ok(ofle(fd, v, "wire-v4", 0, 3, 0, &ep, &end) == 75,
			   "v%d: a current epoch newer than ours: UNKNOWN_LEADER_EPOCH", v);
			ok(ofle(fd, v, "wire-v4", 0, 0, 0, &ep, &end) == 0 && end == 10,
			   "v%d: current epoch 0 is accepted", v);
		}
	}
	arena_reset(&A);
	int32_t ep = 0;
	int64_t end = 0;
	ok(ofle(fd, 2, "wire-v4", 0, -5, 0, &ep, &end) == 74, "a current epoch older than ours: FENCED_LEADER_EPOCH");
}

static int64_t check_init_producer_id(int fd, int64_t after)
{
	int64_t last = after;
	bool increasing = true, all_ok = true;
	for (int16_t v = 0; v <= 4; v++) {
		arena_reset(&A);
		for (int i = 0; i < 3; i++) {
			int64_t pid = -9;
			int16_t epoch = -9;
			int err = init_pid(fd, v, KSTR_NULL, v >= 3 && i == 2 ? last : -1, v >= 3 && i == 2 ? 0 : -1,
					   &pid, &epoch);
			all_ok = all_ok && err == 0 && epoch == 0 && pid >= 0;
			increasing = increasing && pid > last;
			last = pid;
		}
	}
	ok(all_ok && increasing, "InitProducerId v0-v4: new ids, epoch 0, strictly increasing (from %" PRId64
	   " to %" PRId64 ")", after, last);
	arena_reset(&A);
	int64_t pid = -1;
	int16_t epoch = -1;
	ok(init_pid(fd, 4, KSTR_LIT("txn-1"), -1, -1, &pid, &epoch) == 53 && pid == -1,
	   "a transactional id: TRANSACTIONAL_ID_AUTHORIZATION_FAILED (no transactions yet)");
	ok(init_pid(fd, 1, KSTR_LIT(""), -1, -1, &pid, &epoch) == 42, "an empty transactional id: INVALID_REQUEST");
	/* cross a reservation block boundary: ids stay unique and increasing */
	bool good = true;
	for (int i = 0; i < 1100 && good; i++) {
		arena_reset(&A);
		good = init_pid(fd, 2, KSTR_NULL, -1, -1, &pid, &epoch) == 0 && pid == last + 1;
		last = pid;
	}
	ok(good, "1100 more ids are consecutive across a block reservation (last %" PRId64 ")", last);
	return last;
}

static void check_delete_topics(int fd)
{
	for (int16_t v = 0; v <= 6; v++) {
		arena_reset(&A);
		char name[32];
		snprintf(name, sizeof name, "wire-v%d", v);
		struct kstr msg;
		int err = delete_topic(fd, v, name, NULL, &msg);
		ok(err == 0 && topic_partitions(fd, name) == -1, "DeleteTopics v%d deletes %s", v, name);
		ok(delete_topic(fd, v, name, NULL, &msg) == 3, "v%d: again: UNKNOWN_TOPIC_OR_PARTITION", v);
	}
	arena_reset(&A);
	struct kstr msg;
	ok(delete_topic(fd, 6, NULL, topic_id_v7, &msg) == 0 && topic_partitions(fd, "wire-v7") == -1,
	   "DeleteTopics v6 by topic id");
	ok(delete_topic(fd, 6, NULL, topic_id_v7, &msg) == 100, "v6: unknown id: UNKNOWN_TOPIC_ID");
	uint8_t id[16] = { 1 };
	ok(delete_topic(fd, 6, "wire-vo", id, &msg) == 42 && topic_partitions(fd, "wire-vo") == 2,
	   "v6: name and id together: INVALID_REQUEST");
}

/* A fetch parked (long poll) on a partition of a topic that gets deleted must be answered,
 * not left dangling on freed partitions. */
static void check_delete_with_parked_fetch(int fd)
{
	arena_reset(&A);
	struct ct_opts o = { .name = "wire-park", .partitions = 2, .rf = 1 };
	struct kmsg_create_topics_response_creatable_topic_result cr;
	int fd2 = conn_open();
	if (fd2 < 0 || create_topic(fd, 4, &o, &cr) != 0 || cr.error_code || produce(fd, "wire-park", 3) != 0) {
		ok(0, "set up a parked fetch");
		if (fd2 >= 0)
			close(fd2);
		return;
	}
	struct kmsg_fetch_request_fetch_partition fp[2];
	for (int i = 0; i < 2; i++) {
		kmsg_fetch_request_fetch_partition_init(&fp[i]);
		fp[i].partition = i;
		fp[i].fetch_offset = i == 0 ? 3 : 0;
		fp[i].partition_max_bytes = 1 << 20;
	}
	struct kmsg_fetch_request_fetch_topic ft;
	kmsg_fetch_request_fetch_topic_init(&ft);
	ft.topic = KSTR_LIT("wire-park");
	ft.partitions.items = fp;
	ft.partitions.len = 2;
	struct kmsg_fetch_request req;
	kmsg_fetch_request_init(&req);
	req.replica_id = -1;
	req.max_wait_ms = 20000;
	req.min_bytes = 1;
	req.max_bytes = 1 << 20;
	req.topics.items = &ft;
	req.topics.len = 1;
	struct kw w;
	kw_init(&w, 256);
	int rc = kmsg_fetch_request_encode(&w, 4, &req);
	int32_t corr = rc == 0 ? wire_send(fd2, 1, 4, &w) : rc;
	kw_free(&w);
	/* Give the broker a moment to park it (either order must work; this one is the risky). */
	usleep(300 * 1000);
	struct kstr msg;
	ok(delete_topic(fd, 4, "wire-park", NULL, &msg) == 0, "the topic under a parked fetch is deleted");
	struct kr r;
	struct kmsg_fetch_response resp;
	kmsg_fetch_response_init(&resp);
	int64_t t0 = st_mono_ms();
	rc = corr < 0 ? corr : wire_recv(fd2, 1, 4, corr, &r);
	if (rc == 0)
		rc = kmsg_fetch_response_decode(&r, 4, &resp, &A);
	int64_t waited = st_mono_ms() - t0;
	ok(rc == 0 && resp.responses.len == 1 && resp.responses.items[0].partitions.len == 2 &&
	   resp.responses.items[0].partitions.items[0].error_code == 3 &&
	   resp.responses.items[0].partitions.items[1].error_code == 3,
	   "the parked fetch is answered UNKNOWN_TOPIC_OR_PARTITION (after %" PRId64 " ms)", waited);
	close(fd2);
	ok(topic_partitions(fd, "wire-v0") == -1 && topic_partitions(fd, "wire-vo") == 2,
	   "the broker still serves after it");
}

/* --- topic operations off the reactor (mode async; broker started with the gate hook) ------ */

static const char *g_gate;

static void gate_close(void)
{
	FILE *f = fopen(g_gate, "w");
	if (!f || fclose(f) != 0)
		BAIL_OUT("cannot create the gate file %s", g_gate);
}

static void gate_open(void)
{
	if (unlink(g_gate) < 0)
		BAIL_OUT("cannot remove the gate file %s", g_gate);
}

/* True when a response is waiting on fd within timeout_ms. */
static bool readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, timeout_ms) == 1;
}

/* CreateTopics v5 of n topics, each with the given partitions, not waiting for the answer. */
static int32_t send_create(int fd, const char *const *names, int n, int32_t partitions,
			   const char *const *configs)
{
	struct kmsg_create_topics_request_creatable_topic *t = arena_calloc(&A, (size_t)n, sizeof *t);
	struct kmsg_create_topics_request_creatable_topic_config *c = arena_calloc(&A, 16, sizeof *c);
	if (!t || !c)
		return -ENOMEM;
	int nc = 0;
	for (; configs && configs[2 * nc] && nc < 16; nc++) {
		kmsg_create_topics_request_creatable_topic_config_init(&c[nc]);
		c[nc].name = kstr_c(configs[2 * nc]);
		c[nc].value = kstr_c(configs[2 * nc + 1]);
	}
	for (int i = 0; i < n; i++) {
		kmsg_create_topics_request_creatable_topic_init(&t[i]);
		t[i].name = kstr_c(names[i]);
		t[i].num_partitions = partitions;
		t[i].replication_factor = -1;
		t[i].configs.items = c;
		t[i].configs.len = nc;
	}
	struct kmsg_create_topics_request req;
	kmsg_create_topics_request_init(&req);
	req.topics.items = t;
	req.topics.len = n;
	req.timeout_ms = 30000;
	return SEND(fd, create_topics, 19, 5, &req);
}

/* Metadata v12 of n names, not waiting. */
static int32_t send_metadata(int fd, const char *const *names, int n, bool auto_create)
{
	struct kmsg_metadata_request_topic *t = arena_calloc(&A, (size_t)n + 1, sizeof *t);
	if (!t)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		kmsg_metadata_request_topic_init(&t[i]);
		t[i].name = kstr_c(names[i]);
	}
	struct kmsg_metadata_request req;
	kmsg_metadata_request_init(&req);
	req.topics.items = t;
	req.topics.len = n;
	req.allow_auto_topic_creation = auto_create;
	return SEND(fd, metadata, 3, 12, &req);
}

static const struct kmsg_metadata_response_topic *md_topic(const struct kmsg_metadata_response *r,
							    const char *name)
{
	for (int32_t i = 0; i < r->topics.len; i++)
		if (kstr_eq_c(r->topics.items[i].name, name))
			return &r->topics.items[i];
	return NULL;
}

#define RACERS 16

/* Many connections create the same name at once: exactly one creates it, the others hear that
 * it exists (while the creation is held at the gate, so they were truly concurrent). */
static void check_concurrent_create(void)
{
	arena_reset(&A);
	int fds[RACERS];
	int32_t corr[RACERS];
	bool answered[RACERS] = { false };
	int16_t err[RACERS];
	const char *name[] = { "race-a" };
	gate_close();
	for (int i = 0; i < RACERS; i++) {
		fds[i] = conn_open();
		if (fds[i] < 0)
			BAIL_OUT("connect: %s", strerror(-fds[i]));
	}
	for (int i = 0; i < RACERS; i++)
		corr[i] = send_create(fds[i], name, 1, 3, NULL);
	/* All but the one holding the name answer now; the holder waits behind the gate. */
	int n_answered = 0, exists = 0;
	for (int round = 0; round < 3000 && n_answered < RACERS - 1; round++) {
		for (int i = 0; i < RACERS; i++) {
			if (answered[i] || !readable(fds[i], 0))
				continue;
			struct kmsg_create_topics_response resp;
			int rc = RECV(fds[i], create_topics, 19, 5, corr[i], &resp);
			answered[i] = true;
			n_answered++;
			err[i] = rc == 0 && resp.topics.len == 1 ? resp.topics.items[0].error_code : -1;
			if (err[i] == 36 && kstr_has(resp.topics.items[0].error_message, "being created"))
				exists++;
		}
		if (n_answered < RACERS - 1)
			usleep(10000);
	}
	ok(n_answered == RACERS - 1 && exists == RACERS - 1,
	   "%d concurrent CreateTopics of one name: %d answered TOPIC_ALREADY_EXISTS (being created) "
	   "while the first is held", RACERS, exists);
	int holder = -1;
	for (int i = 0; i < RACERS; i++)
		if (!answered[i])
			holder = i;
	/* Metadata of that name waits for the creation too (here without auto-creation). */
	int mfd = conn_open();
	int32_t mc = send_metadata(mfd, name, 1, false);
	ok(holder >= 0 && !readable(fds[holder], 300) && !readable(mfd, 0),
	   "the creation and a Metadata of its name are parked while it is held");
	gate_open();
	struct kmsg_create_topics_response resp;
	int rc = holder >= 0 ? RECV(fds[holder], create_topics, 19, 5, corr[holder], &resp) : -1;
	ok(rc == 0 && resp.topics.len == 1 && resp.topics.items[0].error_code == 0 &&
	   resp.topics.items[0].num_partitions == 3, "exactly one CreateTopics created it (3 partitions)");
	struct kmsg_metadata_response md;
	rc = RECV(mfd, metadata, 3, 12, mc, &md);
	const struct kmsg_metadata_response_topic *mt = rc == 0 ? md_topic(&md, "race-a") : NULL;
	ok(mt && mt->error_code == 0 && mt->partitions.len == 3,
	   "the parked Metadata answers with the new topic");
	for (int i = 0; i < RACERS; i++)
		close(fds[i]);
	close(mfd);
}

/* Metadata auto-creating many new topics in one request, and the same new topic from several
 * connections at once (held at the gate first): every request answered with the topics. */
static void check_metadata_autocreate(void)
{
	arena_reset(&A);
	enum { N = 20 };
	const char *names[N + 4];
	char buf[N][32];
	for (int i = 0; i < N; i++) {
		snprintf(buf[i], sizeof buf[i], "auto-md-%02d", i);
		names[i] = buf[i];
	}
	names[N] = "auto-md-03";       /* twice in the request */
	names[N + 1] = "wire-vo";      /* exists */
	names[N + 2] = "bad name!";    /* illegal */
	int fd = conn_open();
	struct kmsg_metadata_response md;
	int rc = RECV(fd, metadata, 3, 12, send_metadata(fd, names, N + 3, true), &md);
	int good = 0;
	for (int i = 0; rc == 0 && i < md.topics.len; i++) {
		const struct kmsg_metadata_response_topic *t = &md.topics.items[i];
		if (i < N + 1 && t->error_code == 0 && t->partitions.len == 2 && !kmsg_uuid_is_zero(t->topic_id))
			good++;
	}
	ok(rc == 0 && md.topics.len == N + 3 && good == N + 1 && md.topics.items[N + 1].error_code == 0 &&
	   md.topics.items[N + 2].error_code == 17,
	   "one Metadata auto-creates %d new topics (one named twice): all answered with 2 partitions, "
	   "the existing one too, the illegal name INVALID_TOPIC_EXCEPTION", N);
	for (int i = 0; rc == 0 && i < md.topics.len; i++)
		if (md.topics.items[i].error_code || md.topics.items[i].partitions.len != 2)
			tap_diag("%.*s: error %d, %d partitions", md.topics.items[i].name.len,
				 md.topics.items[i].name.p, md.topics.items[i].error_code,
				 md.topics.items[i].partitions.len);
	ok(topic_partitions(fd, "auto-md-19") == 2, "the auto-created topics are there");

	/* the same new topic from RACERS connections, held */
	arena_reset(&A);
	gate_close();
	int fds[RACERS];
	int32_t corr[RACERS];
	const char *one[] = { "auto-race" };
	for (int i = 0; i < RACERS; i++) {
		fds[i] = conn_open();
		corr[i] = fds[i] < 0 ? fds[i] : send_metadata(fds[i], one, 1, true);
	}
	int parked = 0;
	for (int i = 0; i < RACERS; i++)
		parked += !readable(fds[i], i == 0 ? 300 : 0);
	ok(parked == RACERS, "%d Metadata auto-creating one topic all wait while it is held", parked);
	gate_open();
	int same = 0;
	uint8_t id[16] = { 0 };
	for (int i = 0; i < RACERS; i++) {
		struct kmsg_metadata_response r;
		const struct kmsg_metadata_response_topic *t = NULL;
		if (RECV(fds[i], metadata, 3, 12, corr[i], &r) == 0)
			t = md_topic(&r, "auto-race");
		if (t && t->error_code == 0 && t->partitions.len == 2) {
			if (i == 0)
				memcpy(id, t->topic_id, 16);
			same += memcmp(id, t->topic_id, 16) == 0;
		}
		close(fds[i]);
	}
	ok(same == RACERS, "all %d answered with the one topic created (same id, 2 partitions)", same);
	close(fd);
}

/* While topics are being created (50 x 8 partitions, held, then for real), other connections
 * are served: a Produce to an existing topic is answered meanwhile. */
static void check_served_meanwhile(void)
{
	arena_reset(&A);
	enum { N = 50 };
	static char buf[N][32];
	const char *names[N];
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < N; i++) {
			snprintf(buf[i], sizeof buf[i], "bulk%d-%02d", pass, i);
			names[i] = buf[i];
		}
		int a = conn_open(), b = conn_open();
		if (pass == 0)
			gate_close();
		int32_t ca = send_create(a, names, N, 8, NULL);
		int64_t base = produce(b, "wire-vo", 5);
		bool a_pending = !readable(a, 0);
		if (pass == 0) {
			ok(base >= 0 && a_pending, "held: a Produce on another connection is answered "
			   "(offset %" PRId64 ") while CreateTopics of %d topics x 8 partitions waits", base, N);
			ok(topic_partitions(b, "wire-vo") == 2 && !readable(a, 0),
			   "... and a Metadata too");
			gate_open();
		} else {
			ok(base >= 0, "running: a Produce on another connection is answered (offset %" PRId64
			   ")", base);
			tap_diag("the creation of %d x 8 partitions was %s when the Produce was answered", N,
				 a_pending ? "still running" : "already done");
		}
		struct kmsg_create_topics_response resp;
		int rc = RECV(a, create_topics, 19, 5, ca, &resp);
		int created = 0;
		for (int i = 0; rc == 0 && i < resp.topics.len; i++)
			created += resp.topics.items[i].error_code == 0 && resp.topics.items[i].num_partitions == 8;
		ok(rc == 0 && created == N && topic_partitions(b, names[N - 1]) == 8,
		   "pass %d: all %d topics created with 8 partitions", pass, created);
		close(a);
		close(b);
		arena_reset(&A);
	}
}

/* DeleteTopics v4 of one topic, not waiting. */
static int32_t send_delete(int fd, const char *name)
{
	struct kstr n = kstr_c(name);
	struct kmsg_delete_topics_request req;
	kmsg_delete_topics_request_init(&req);
	req.topic_names.items = &n;
	req.topic_names.len = 1;
	req.timeout_ms = 30000;
	return SEND(fd, delete_topics, 20, 4, &req);
}

/* Creates topic name with 2 partitions (the gate open), or bails out. */
static void create_or_bail(int fd, const char *name)
{
	struct kmsg_create_topics_response cr;
	if (RECV(fd, create_topics, 19, 5, send_create(fd, &name, 1, 2, NULL), &cr) != 0 ||
	    cr.topics.len != 1 || cr.topics.items[0].error_code != 0)
		BAIL_OUT("cannot create %s", name);
}

/* DeleteTopics and CreatePartitions wait for the worker too; the name or topic stays reserved. */
static void check_delete_and_grow_held(void)
{
	arena_reset(&A);
	int fd = conn_open(), d = conn_open();
	const char *name[] = { "held-del" };
	struct kmsg_create_topics_response cr;
	create_or_bail(fd, name[0]);
	gate_close();
	int32_t dc = send_delete(d, "held-del");
	bool parked = !readable(d, 300);
	int32_t cc = send_create(fd, name, 1, 2, NULL);
	int rc = RECV(fd, create_topics, 19, 5, cc, &cr);
	ok(parked && rc == 0 && cr.topics.items[0].error_code == 36 &&
	   kstr_has(cr.topics.items[0].error_message, "being deleted"),
	   "a held DeleteTopics waits; creating the name meanwhile: TOPIC_ALREADY_EXISTS (being deleted)");
	gate_open();
	struct kmsg_delete_topics_response dr;
	rc = RECV(d, delete_topics, 20, 4, dc, &dr);
	ok(rc == 0 && dr.responses.len == 1 && dr.responses.items[0].error_code == 0 &&
	   topic_partitions(fd, "held-del") == -1, "then it is answered and the topic is gone");

	/* CreatePartitions held: a second one and AlterConfigs on that topic are refused meanwhile */
	arena_reset(&A);
	create_or_bail(fd, "held-grow");
	gate_close();
	struct kmsg_create_partitions_request_create_partitions_topic pt;
	kmsg_create_partitions_request_create_partitions_topic_init(&pt);
	pt.name = KSTR_LIT("held-grow");
	pt.count = 5;
	pt.assignments.len = -1;
	struct kmsg_create_partitions_request preq;
	kmsg_create_partitions_request_init(&preq);
	preq.topics.items = &pt;
	preq.topics.len = 1;
	preq.timeout_ms = 30000;
	int32_t pc = SEND(d, create_partitions, 37, 3, &preq);
	parked = !readable(d, 300);
	struct kstr msg;
	int e2 = create_partitions(fd, 3, "held-grow", 6, NULL, 0, false, &msg);
	const char *kv[] = { "retention.ms", "1000", NULL };
	int e3 = alter(fd, 1, 2, "held-grow", kv, false, &msg);
	ok(parked && e2 == 60 && e3 == 60 && topic_partitions(fd, "held-grow") == 2,
	   "a held CreatePartitions waits; another one and AlterConfigs: REASSIGNMENT_IN_PROGRESS (%d, %d)",
	   e2, e3);
	gate_open();
	struct kmsg_create_partitions_response pr;
	rc = RECV(d, create_partitions, 37, 3, pc, &pr);
	ok(rc == 0 && pr.results.len == 1 && pr.results.items[0].error_code == 0 &&
	   topic_partitions(fd, "held-grow") == 5 && produce(fd, "held-grow", 2) == 0,
	   "then it is answered: 5 partitions, writable");
	close(d);
	close(fd);
}

/* The settings pipelined on one connection by check_alter_held, in force when it is done and
 * after a restart (mode afterhold). */
static bool held_cfg_is_final(int fd)
{
	struct kmsg_describe_configs_response_describe_configs_result r;
	return describe(fd, 1, 2, "held-cfg", NULL, false, false, &r) == 0 && r.error_code == 0 &&
	       dc_is(&r, "retention.ms", "1000002", 1) && dc_is(&r, "segment.ms", "604800000", 5) &&
	       dc_is(&r, "max.message.bytes", "100000", 1) && dc_is(&r, "segment.bytes", "1048576", 1);
}

/* Waits until a change of name's settings sent on another connection is queued (held at the
 * gate): CreatePartitions, validate_only so that it changes nothing, is refused then. Returns
 * its last error code (60 once queued), msg its message. */
static int wait_cfg_queued(int fd, const char *name, struct kstr *msg)
{
	int err = -1;
	for (int i = 0; i < 3000; i++) {
		err = create_partitions(fd, 3, name, 3, NULL, 0, true, msg);
		if (err == 60)
			break;
		usleep(10000);
	}
	return err;
}

/* AlterConfigs and IncrementalAlterConfigs wait for the worker (the topic's metadata file
 * written) too: other connections are served meanwhile, the settings are in force only once
 * written and before the answer, changes of one topic queued one behind the other take effect
 * in order and add up, validate_only never waits. */
static void check_alter_held(void)
{
	arena_reset(&A);
	int fd = conn_open(), d = conn_open();
	create_or_bail(fd, "held-cfg");
	gate_close();
	/* pipelined on d: two AlterConfigs (the second also names an unknown topic), then two
	 * IncrementalAlterConfigs that build on them */
	const char *t1[] = { "held-cfg" }, *t2[] = { "held-cfg", "held-cfg-nope" };
	const char *kv1[] = { "retention.ms", "1000001", "segment.ms", "2000001", NULL };
	const char *kv2[] = { "retention.ms", "1000002", NULL };
	struct iop i1[] = { { "max.message.bytes", 0, "100000" } };
	struct iop i2[] = { { "segment.bytes", 0, "1048576" } };
	int32_t c1 = send_alter(d, 1, 2, t1, 1, kv1, false);
	int32_t c2 = send_alter(d, 2, 2, t2, 2, kv2, false);
	int32_t c3 = send_ialter(d, 1, 2, "held-cfg", i1, 1, false);
	int32_t c4 = send_ialter(d, 0, 2, "held-cfg", i2, 1, false);
	struct kstr msg = KSTR_NULL;
	int busy = wait_cfg_queued(fd, "held-cfg", &msg);
	ok(busy == 60 && kstr_has(msg, "settings"), "held AlterConfigs: CreatePartitions of its topic is "
	   "REASSIGNMENT_IN_PROGRESS (settings being changed) (%d)", busy);
	show_msg(msg);
	int64_t base = produce(fd, "wire-vo", 3);
	ok(base >= 0 && topic_partitions(fd, "wire-vo") == 2 && !readable(d, 0),
	   "held AlterConfigs: a Produce (offset %" PRId64 ") and a Metadata on another connection are "
	   "answered meanwhile", base);
	struct kmsg_describe_configs_response_describe_configs_result r;
	ok(describe(fd, 1, 2, "held-cfg", NULL, false, false, &r) == 0 && r.error_code == 0 &&
	   dc_is(&r, "retention.ms", "604800000", 5) && dc_is(&r, "max.message.bytes", "1048588", 5),
	   "held: the new settings are not in force before they are written");
	const char *vo[] = { "retention.ms", "5", NULL };
	struct iop ivo[] = { { "retention.ms", 0, "6" } };
	int e1 = alter(fd, 2, 2, "held-cfg", vo, true, &msg);
	int e2 = ialter(fd, 1, 2, "held-cfg", ivo, 1, true, &msg);
	const char *bad[] = { "retention.ms", "soon", NULL };
	int e3 = alter(fd, 1, 2, "held-cfg", bad, false, &msg);
	ok(e1 == 0 && e2 == 0 && e3 == 40 && !readable(d, 0),
	   "held: validate_only AlterConfigs and IncrementalAlterConfigs, and an invalid change, are "
	   "answered at once (%d, %d, %d)", e1, e2, e3);
	gate_open();
	int a1 = alter_answer(d, 1, c1, NULL);
	struct kmsg_alter_configs_response ar;
	int rc = RECV(d, alter_configs, 33, 2, c2, &ar);
	bool two = rc == 0 && ar.responses.len == 2 && ar.responses.items[0].error_code == 0 &&
		   ar.responses.items[1].error_code == 3 &&
		   kstr_has(ar.responses.items[1].error_message, "held-cfg-nope");
	int a3 = ialter_answer(d, 1, c3, NULL);
	int a4 = ialter_answer(d, 0, c4, NULL);
	ok(a1 == 0 && two && a3 == 0 && a4 == 0, "released: the four changes are answered in order, "
	   "the unknown topic of the second with its own error (%d, %s, %d, %d)", a1,
	   two ? "0+3" : "bad", a3, a4);
	ok(held_cfg_is_final(fd), "the second AlterConfigs replaced the first (retention.ms 1000002, "
	   "segment.ms back to its default), the incremental changes queued behind it added up");

	/* a topic deleted while a change of its settings waits: the change says so */
	arena_reset(&A);
	create_or_bail(fd, "held-cfg-del");
	gate_close();
	struct iop i3[] = { { "retention.ms", 0, "123456" } };
	c1 = send_ialter(d, 1, 2, "held-cfg-del", i3, 1, false);
	busy = wait_cfg_queued(fd, "held-cfg-del", &msg);
	struct kmsg_delete_topics_response dr;
	int32_t dc = send_delete(fd, "held-cfg-del");
	gate_open();
	a1 = ialter_answer(d, 1, c1, &msg);
	ok(busy == 60 && a1 == 3 && kstr_has(msg, "deleted"),
	   "a topic deleted while a change of its settings waits: UNKNOWN_TOPIC_OR_PARTITION (%d)", a1);
	show_msg(msg);
	rc = RECV(fd, delete_topics, 20, 4, dc, &dr);
	ok(rc == 0 && dr.responses.len == 1 && dr.responses.items[0].error_code == 0 &&
	   topic_partitions(fd, "held-cfg-del") == -1, "and the deletion went through");
	close(d);
	close(fd);
}

/* Mode hold: a creation held at the gate while the broker is told to stop (by t/admin.sh, once
 * this prints "parked"). The connection closes without an answer, or answers an error. */
static void hold_for_shutdown(void)
{
	arena_reset(&A);
	const char *name[] = { "held-at-stop" };
	int a = conn_open(), b = conn_open();
	gate_close();
	int32_t ca = send_create(a, name, 1, 4, NULL);
	struct kmsg_create_topics_response r;
	int rc = RECV(b, create_topics, 19, 5, send_create(b, name, 1, 4, NULL), &r);
	ok(rc == 0 && r.topics.items[0].error_code == 36, "a creation is held (the name is reserved)");
	printf("# parked\n");
	fflush(stdout);
	rc = RECV(a, create_topics, 19, 5, ca, &r);
	ok(rc == -ECONNRESET || (rc == 0 && r.topics.items[0].error_code != 0),
	   "at shutdown the held CreateTopics is dropped with its connection (%s)",
	   rc ? strerror(-rc) : "an error answer");
	close(a);
	close(b);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s PORT run|after|nodelete|async|hold|afterhold [STATE|GATE]\n", argv[0]);
		return 2;
	}
	g_port = atoi(argv[1]);
	const char *mode = argv[2], *state = argc > 3 ? argv[3] : NULL;
	arena_init(&A, 0, 0);
	int fd = conn_open();
	if (fd < 0)
		BAIL_OUT("cannot connect to 127.0.0.1:%d: %s", g_port, strerror(-fd));
	if (strcmp(mode, "run") == 0) {
		check_create_topics(fd);
		check_describe_configs(fd);
		check_alter_configs(fd);
		check_incremental_alter(fd);
		check_create_partitions(fd);
		check_delete_records(fd);
		check_offset_for_leader_epoch(fd);
		int64_t last = check_init_producer_id(fd, -1);
		check_delete_topics(fd);
		check_delete_with_parked_fetch(fd);
		FILE *f = state ? fopen(state, "w") : NULL;
		ok(f && fprintf(f, "%" PRId64 "\n", last) > 0 && fclose(f) == 0, "state saved");
	} else if (strcmp(mode, "after") == 0) {
		FILE *f = state ? fopen(state, "r") : NULL;
		long long before = -1;
		if (!f || fscanf(f, "%lld", &before) != 1)
			BAIL_OUT("cannot read the state file");
		fclose(f);
		int64_t pid = -1;
		int16_t epoch = -1;
		int err = init_pid(fd, 4, KSTR_NULL, -1, -1, &pid, &epoch);
		ok(err == 0 && pid > before && epoch == 0,
		   "after a restart producer ids continue past the last one handed out (%lld -> %" PRId64 ")",
		   before, pid);
		struct kmsg_describe_configs_response_describe_configs_result r;
		ok(describe(fd, 2, 2, "wire-v1", NULL, false, false, &r) == 0 && r.error_code == 3 &&
		   topic_partitions(fd, "wire-asg") == 3 && topic_partitions(fd, "wire-park") == -1,
		   "deleted topics stay deleted, others stay");
	} else if (strcmp(mode, "async") == 0 && state) {
		g_gate = state;
		check_concurrent_create();
		check_metadata_autocreate();
		check_served_meanwhile();
		check_delete_and_grow_held();
		check_alter_held();
	} else if (strcmp(mode, "hold") == 0 && state) {
		g_gate = state;
		hold_for_shutdown();
	} else if (strcmp(mode, "afterhold") == 0) {
		ok(topic_partitions(fd, "held-at-stop") == -1, "after the restart the held topic is not there");
		struct ct_opts o = { .name = "held-at-stop", .partitions = 4, .rf = 1 };
		struct kmsg_create_topics_response_creatable_topic_result r;
		ok(create_topic(fd, 5, &o, &r) == 0 && r.error_code == 0 &&
		   topic_partitions(fd, "held-at-stop") == 4, "and can be created now");
		ok(held_cfg_is_final(fd), "the settings changed while the worker was held survived the "
		   "restart");
	} else if (strcmp(mode, "nodelete") == 0) {
		struct kstr msg;
		ok(delete_topic(fd, 5, "wire-asg", NULL, &msg) == 73 && kstr_has(msg, "delete.topic.enable") &&
		   topic_partitions(fd, "wire-asg") == 3,
		   "delete.topic.enable=false: TOPIC_DELETION_DISABLED, the topic stays");
	} else {
		BAIL_OUT("unknown mode %s", mode);
	}
	close(fd);
	arena_destroy(&A);
	return tap_done();
}
