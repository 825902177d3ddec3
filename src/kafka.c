/* kafka.c -- the Kafka protocol server's front: request header decoding, version checks,
 * dispatch to the API handlers, response framing; ApiVersions, Metadata, DescribeCluster.
 * Handlers of other APIs live in kafka_*.c. Runs on the reactor thread; never blocks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka_int.h"
#include "strata/common.h"
#include "strata/slog.h"

#define KAFKA_ARENA_CHUNK_BYTES 16384
#define KAFKA_ARENA_LIMIT_BYTES (256u << 20)

static void handle_api_versions(struct kreq *q);
static void handle_metadata(struct kreq *q);

/* What Strata serves: every version in [min, max] is fully implemented. */
static const struct kafka_api {
	int16_t key, min, max;
	void (*fn)(struct kreq *q);
} kafka_apis[] = {
	{ 0, 3, 9, kafka_handle_produce },
	{ 1, 4, 17, kafka_handle_fetch },
	{ 2, 1, 7, kafka_handle_list_offsets },
	{ 3, 0, 12, handle_metadata },
	{ 8, 0, 8, kafka_handle_offset_commit },
	{ 9, 0, 8, kafka_handle_offset_fetch },
	{ 10, 0, 4, kafka_handle_find_coordinator },
	{ 11, 0, 9, kafka_handle_join_group },
	{ 12, 0, 4, kafka_handle_heartbeat },
	{ 13, 0, 5, kafka_handle_leave_group },
	{ 14, 0, 5, kafka_handle_sync_group },
	{ 15, 0, 5, kafka_handle_describe_groups },
	{ 16, 0, 4, kafka_handle_list_groups },
	{ 18, 0, 3, handle_api_versions },
	{ 19, 0, 7, kafka_handle_create_topics },
	{ 20, 0, 6, kafka_handle_delete_topics },
	{ 21, 0, 2, kafka_handle_delete_records },
	{ 22, 0, 4, kafka_handle_init_producer_id },
	{ 23, 0, 4, kafka_handle_offset_for_leader_epoch },
	{ 32, 0, 4, kafka_handle_describe_configs },
	{ 33, 0, 2, kafka_handle_alter_configs },
	{ 37, 0, 3, kafka_handle_create_partitions },
	{ 42, 0, 2, kafka_handle_delete_groups },
	{ 44, 0, 1, kafka_handle_incremental_alter_configs },
	{ 47, 0, 0, kafka_handle_offset_delete },
	{ 60, 0, 1, kafka_handle_describe_cluster },
};

static const struct kafka_api *api_find(int16_t key)
{
	for (size_t i = 0; i < ST_ARRAY_LEN(kafka_apis); i++)
		if (kafka_apis[i].key == key)
			return &kafka_apis[i];
	return NULL;
}

bool kafka_kstr_to_buf(struct kstr s, char *buf, size_t buf_len)
{
	if (s.len < 0 || (size_t)s.len >= buf_len)
		return false;
	memcpy(buf, s.p, (size_t)s.len);
	buf[s.len] = 0;
	return true;
}

static void kreq_free(struct kreq *q)
{
	ST_ASSERT(q->srv->requests_inflight > 0);
	q->srv->requests_inflight--;
	arena_destroy(&q->arena);
	free(q);
}

void kafka_resp_begin(struct kreq *q, struct kw *w)
{
	kw_init(w, 256);
	kw_i32(w, q->hdr.correlation_id);
	if (kmsg_response_header_version(q->api_key, q->version) >= 1)
		kw_tags_empty(w);
}

static void free_buf(void *p) { free(p); }

void kafka_resp_end(struct kreq *q, struct kw *w)
{
	struct chain c;
	chain_init(&c);
	if (w->err) {
		slog_error("kafka", "api=%d v%d from %s: cannot encode the response: %s", q->api_key,
			   q->version, net_conn_peer(q->nreq->conn), strerror(-w->err));
		kw_free(w);
		net_conn_close(q->nreq->conn);
		net_respond_none(q->nreq);
		kreq_free(q);
		return;
	}
	size_t len;
	uint8_t *buf = kw_detach(w, &len);
	chain_append_mem(&c, buf, len, free_buf, buf);
	net_respond(q->nreq, &c);
	kreq_free(q);
}

void kafka_resp_chain(struct kreq *q, struct chain *c)
{
	net_respond(q->nreq, c);
	kreq_free(q);
}

void kafka_resp_none(struct kreq *q)
{
	net_respond_none(q->nreq);
	kreq_free(q);
}

void kafka_bad_request(struct kreq *q, const char *what)
{
	slog_warn("kafka", "closing connection from %s: malformed %s request (api=%d v%d): %s",
		  net_conn_peer(q->nreq->conn), kmsg_api_find(q->api_key) ?
		  kmsg_api_find(q->api_key)->name : "unknown", q->api_key, q->version, what);
	net_conn_close(q->nreq->conn);
	kafka_resp_none(q);
}

/* --- ApiVersions ------------------------------------------------------------------------- */

static void handle_api_versions(struct kreq *q)
{
	struct kmsg_api_versions_response resp;
	kmsg_api_versions_response_init(&resp);
	const struct kafka_api *self = api_find(18);
	if (q->version > self->max) {
		/* As Kafka: UNSUPPORTED_VERSION with our range, in a v0 body, so the client can
		 * retry with a version we speak (the header is v0 for ApiVersions anyway). */
		resp.error_code = KERR_UNSUPPORTED_VERSION;
		q->version = 0;
	} else {
		struct kmsg_api_versions_request req;
		kmsg_api_versions_request_init(&req);
		if (kmsg_api_versions_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
			/* Kafka answers INVALID_REQUEST here rather than closing. */
			resp.error_code = KERR_INVALID_REQUEST;
		}
	}
	resp.api_keys.items = arena_calloc(&q->arena, ST_ARRAY_LEN(kafka_apis),
					   sizeof *resp.api_keys.items);
	if (!resp.api_keys.items) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	resp.api_keys.len = (int32_t)ST_ARRAY_LEN(kafka_apis);
	for (size_t i = 0; i < ST_ARRAY_LEN(kafka_apis); i++) {
		resp.api_keys.items[i].api_key = kafka_apis[i].key;
		/* Produce is advertised from v0 but served from v3 (v0-2 requests close the
		 * connection below), as Kafka 4 does (KAFKA-18659): librdkafka before 2.10 enables
		 * gzip/snappy/lz4 only when the broker's Produce range contains v0, and otherwise
		 * silently sends uncompressed batches (librdkafka issue 4956). Clients pick the
		 * highest common version, so nobody picks v0-2 without asking for message sets. */
		resp.api_keys.items[i].min_version = kafka_apis[i].key == 0 ? 0 : kafka_apis[i].min;
		resp.api_keys.items[i].max_version = kafka_apis[i].max;
	}
	resp.throttle_time_ms = 0;
	KAFKA_RESPOND(q, api_versions_response, &resp);
}

/* --- Metadata ------------------------------------------------------------------------------ */

static int fill_topic(struct kreq *q, struct topic *t, struct kmsg_metadata_response_topic *mt)
{
	kmsg_metadata_response_topic_init(mt);
	mt->error_code = KERR_NONE;
	mt->name = kstr_c(t->name);
	memcpy(mt->topic_id, t->id, 16);
	mt->is_internal = t->internal;
	mt->partitions.items = arena_calloc(&q->arena, (size_t)t->n_partitions,
					    sizeof *mt->partitions.items);
	if (!mt->partitions.items)
		return -ENOMEM;
	mt->partitions.len = t->n_partitions;
	int32_t *node = arena_alloc(&q->arena, sizeof *node);
	if (!node)
		return -ENOMEM;
	*node = q->srv->broker->node_id;
	for (int32_t i = 0; i < t->n_partitions; i++) {
		struct kmsg_metadata_response_partition *p = &mt->partitions.items[i];
		kmsg_metadata_response_partition_init(p);
		p->error_code = KERR_NONE;
		p->partition_index = i;
		p->leader_id = q->srv->broker->node_id;
		p->leader_epoch = 0;
		p->replica_nodes.items = node;
		p->replica_nodes.len = 1;
		p->isr_nodes.items = node;
		p->isr_nodes.len = 1;
		p->offline_replicas.len = 0;
	}
	return 0;
}

struct all_topics_ctx {
	struct kreq *q;
	struct kmsg_metadata_response *resp;
	int rc;
};

static void add_topic_cb(void *ctx, struct topic *t)
{
	struct all_topics_ctx *a = ctx;
	if (a->rc == 0)
		a->rc = fill_topic(a->q, t, &a->resp->topics.items[a->resp->topics.len++]);
}

/* A Metadata request waiting for topics being created (auto-creation, or someone else's
 * CreateTopics or DeleteTopics of that name): answered once every one ended. Topics are looked
 * up only when answering, so that nothing points into a topic deleted meanwhile. */
struct md_state {
	struct kreq *q;
	struct kmsg_metadata_request req;
	struct kmsg_metadata_response resp;
	int16_t *create_err;            /* per requested topic: a refused auto-creation's error */
	int32_t pending;
};

struct md_wait {
	struct broker_waiter w;
	struct md_state *st;
	int32_t idx;
};

static void metadata_answer(struct md_state *st)
{
	struct kreq *q = st->q;
	struct kafka_server *s = q->srv;
	struct kmsg_metadata_response *resp = &st->resp;
	int rc = 0;
	for (int32_t i = 0; i < st->req.topics.len && rc == 0; i++) {
		struct kstr name = st->req.topics.items[i].name;
		struct kmsg_metadata_response_topic *mt = &resp->topics.items[i];
		kmsg_metadata_response_topic_init(mt);
		mt->name = name;
		if (name.len < 0) {
			/* by topic id (v10+) */
			struct topic *byid = broker_find_topic_id(s->broker, st->req.topics.items[i].topic_id);
			if (!byid) {
				mt->error_code = KERR_UNKNOWN_TOPIC_ID;
				memcpy(mt->topic_id, st->req.topics.items[i].topic_id, 16);
				continue;
			}
			rc = fill_topic(q, byid, mt);
			continue;
		}
		struct topic *t = broker_find_topic(s->broker, name.p, (size_t)name.len);
		if (t) {
			rc = fill_topic(q, t, mt);
			continue;
		}
		if (st->create_err[i]) {
			mt->error_code = st->create_err[i];
			continue;
		}
		char why[256];
		mt->error_code = broker_validate_topic_name(name.p, (size_t)name.len, why, sizeof why) < 0
					 ? KERR_INVALID_TOPIC_EXCEPTION
					 : KERR_UNKNOWN_TOPIC_OR_PARTITION;
	}
	if (rc < 0) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	resp->topics.len = st->req.topics.len;
	KAFKA_RESPOND(q, metadata_response, resp);
}

static void metadata_topic_done(struct broker_waiter *w, int kerr, struct topic *t, const char *why)
{
	(void)t;
	struct md_wait *mw = ST_CONTAINER_OF(w, struct md_wait, w);
	struct md_state *st = mw->st;
	if (kerr != KERR_NONE) {
		struct kstr name = st->req.topics.items[mw->idx].name;
		slog_info("kafka", "auto-create of topic '%.*s' failed: %s", (int)ST_MIN(name.len, 249),
			  name.p, why);
		st->create_err[mw->idx] = (int16_t)kerr;
	}
	if (--st->pending == 0)
		metadata_answer(st);
}

static void handle_metadata(struct kreq *q)
{
	struct kafka_server *s = q->srv;
	struct md_state *st = arena_calloc(&q->arena, 1, sizeof *st);
	if (!st) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	st->q = q;
	struct kmsg_metadata_request *req = &st->req;
	kmsg_metadata_request_init(req);
	if (kmsg_metadata_request_decode(&q->body, q->version, req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	struct kmsg_metadata_response *resp = &st->resp;
	kmsg_metadata_response_init(resp);
	resp->throttle_time_ms = 0;
	struct kmsg_metadata_response_broker *br = arena_calloc(&q->arena, 1, sizeof *br);
	if (!br) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	kmsg_metadata_response_broker_init(br);
	br->node_id = s->broker->node_id;
	br->host = kstr_c(s->adv_host);
	br->port = s->adv_port;
	resp->brokers.items = br;
	resp->brokers.len = 1;
	resp->cluster_id = kstr_c(s->broker->cluster_id);
	resp->controller_id = s->broker->node_id;

	/* v0: an empty array means all topics; v1+: null means all, empty means none. */
	bool all = req->topics.len < 0 || (q->version == 0 && req->topics.len == 0);
	if (all) {
		resp->topics.items = arena_calloc(&q->arena, s->broker->n_topics + 1,
						  sizeof *resp->topics.items);
		if (!resp->topics.items) {
			kafka_bad_request(q, "out of memory");
			return;
		}
		struct all_topics_ctx a = { q, resp, 0 };
		broker_foreach_topic(s->broker, add_topic_cb, &a);
		if (a.rc < 0) {
			kafka_bad_request(q, "out of memory");
			return;
		}
		KAFKA_RESPOND(q, metadata_response, resp);
		return;
	}
	int32_t nt = req->topics.len;
	resp->topics.items = arena_calloc(&q->arena, (size_t)nt + 1, sizeof *resp->topics.items);
	st->create_err = arena_calloc(&q->arena, (size_t)nt + 1, sizeof *st->create_err);
	struct md_wait *waits = arena_calloc(&q->arena, (size_t)nt + 1, sizeof *waits);
	if (!resp->topics.items || !st->create_err || !waits) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	bool auto_create = cfg_bool(s->conf, BC_AUTO_CREATE_TOPICS) &&
			   (q->version < 4 || req->allow_auto_topic_creation);
	/* Topics missing now: wait for one being created or deleted, auto-create the others
	 * (on the topic worker). The request counts itself until the loop is over. */
	st->pending = 1;
	for (int32_t i = 0; i < nt; i++) {
		struct kstr name = req->topics.items[i].name;
		if (name.len < 0 || broker_find_topic(s->broker, name.p, (size_t)name.len))
			continue;
		struct md_wait *mw = &waits[i];
		mw->st = st;
		mw->idx = i;
		mw->w.done = metadata_topic_done;
		if (broker_wait_topic(s->broker, name.p, (size_t)name.len, &mw->w)) {
			st->pending++;
			continue;
		}
		/* Internal topics (__consumer_offsets, ...) are created by their owners only. */
		bool internal = name.len >= 2 && name.p[0] == '_' && name.p[1] == '_';
		if (!auto_create || internal)
			continue;
		char why[256];
		struct broker_topic_spec spec = { .partitions = -1 };
		int err = broker_create_topic_async(s->broker, name.p, (size_t)name.len, &spec, &mw->w,
						    why, sizeof why);
		if (err == KERR_NONE) {
			st->pending++;
			continue;
		}
		/* A full queue or a shutdown: retriable; a bad name: as Kafka says it. */
		st->create_err[i] = err == KERR_THROTTLING_QUOTA_EXCEEDED || err == KERR_REQUEST_TIMED_OUT
					    ? KERR_LEADER_NOT_AVAILABLE
					    : (int16_t)err;
		slog_info("kafka", "auto-create of topic '%.*s' refused: %s", (int)ST_MIN(name.len, 249),
			  name.p, why);
	}
	if (--st->pending == 0)
		metadata_answer(st);
	/* else parked: the last metadata_topic_done answers */
}

/* --- DescribeCluster ------------------------------------------------------------------------ */

void kafka_handle_describe_cluster(struct kreq *q)
{
	struct kafka_server *s = q->srv;
	struct kmsg_describe_cluster_request req;
	kmsg_describe_cluster_request_init(&req);
	if (kmsg_describe_cluster_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	struct kmsg_describe_cluster_response resp;
	kmsg_describe_cluster_response_init(&resp);
	struct kmsg_describe_cluster_response_describe_cluster_broker *br =
		arena_calloc(&q->arena, 1, sizeof *br);
	if (!br) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	kmsg_describe_cluster_response_describe_cluster_broker_init(br);
	br->broker_id = s->broker->node_id;
	br->host = kstr_c(s->adv_host);
	br->port = s->adv_port;
	resp.error_code = KERR_NONE;
	resp.cluster_id = kstr_c(s->broker->cluster_id);
	resp.controller_id = s->broker->node_id;
	resp.brokers.items = br;
	resp.brokers.len = 1;
	resp.endpoint_type = 1; /* brokers */
	resp.cluster_authorized_operations = INT32_MIN;
	KAFKA_RESPOND(q, describe_cluster_response, &resp);
}

/* --- dispatch ------------------------------------------------------------------------------- */

static void on_request(void *ctx, struct net_req *nreq)
{
	struct kafka_server *s = ctx;
	struct kreq *q = calloc(1, sizeof *q);
	if (!q) {
		slog_error("kafka", "out of memory: closing %s", net_conn_peer(nreq->conn));
		net_conn_close(nreq->conn);
		net_respond_none(nreq);
		return;
	}
	s->requests_inflight++;
	q->srv = s;
	q->nreq = nreq;
	arena_init(&q->arena, KAFKA_ARENA_CHUNK_BYTES, KAFKA_ARENA_LIMIT_BYTES);
	struct kr r;
	kr_init(&r, nreq->data, nreq->len);
	q->api_key = kr_i16(&r);
	q->version = kr_i16(&r);
	if (r.err) {
		kafka_bad_request(q, "frame shorter than a request header");
		return;
	}
	int hv = kmsg_request_header_version(q->api_key, q->version);
	const struct kafka_api *api = api_find(q->api_key);
	if (hv < 0 || !api) {
		slog_warn("kafka", "closing connection from %s: unsupported api key %d (v%d)",
			  net_conn_peer(nreq->conn), q->api_key, q->version);
		net_conn_close(nreq->conn);
		kafka_resp_none(q);
		return;
	}
	kr_init(&r, nreq->data, nreq->len);
	kmsg_request_header_init(&q->hdr);
	if (kmsg_request_header_decode(&r, (int16_t)hv, &q->hdr, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable request header");
		return;
	}
	q->body = r;
	if (q->api_key != 18 && (q->version < api->min || q->version > api->max)) {
		slog_warn("kafka", "closing connection from %s: %s v%d is not supported (%d-%d)",
			  net_conn_peer(nreq->conn), kmsg_api_find(q->api_key)->name, q->version,
			  api->min, api->max);
		net_conn_close(nreq->conn);
		kafka_resp_none(q);
		return;
	}
	api->fn(q);
}

static int parse_listener(const char *l, char *host, size_t host_len, int *port)
{
	/* PLAINTEXT://host:port (first of a comma-separated list) */
	const char *p = strstr(l, "://");
	p = p ? p + 3 : l;
	const char *end = strchr(p, ',');
	size_t n = end ? (size_t)(end - p) : strlen(p);
	const char *colon = memrchr(p, ':', n);
	if (!colon)
		return -EINVAL;
	size_t hl = (size_t)(colon - p);
	if (hl >= host_len)
		return -EINVAL;
	memcpy(host, p, hl);
	host[hl] = 0;
	char num[16];
	size_t pl = n - hl - 1;
	if (pl == 0 || pl >= sizeof num)
		return -EINVAL;
	memcpy(num, colon + 1, pl);
	num[pl] = 0;
	char *e;
	long v = strtol(num, &e, 10);
	if (*e || v < 0 || v > 65535)
		return -EINVAL;
	*port = (int)v;
	return 0;
}

int kafka_server_start(struct kafka_server **out, struct uring *ur, struct broker *b,
		       struct cfg *conf, char *why, size_t why_len)
{
	struct kafka_server *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->ur = ur;
	s->broker = b;
	s->conf = conf;
	char host[256];
	int port;
	const char *l = cfg_str(conf, BC_LISTENERS);
	if (parse_listener(l, host, sizeof host, &port) < 0) {
		snprintf(why, why_len, "listeners=%s: expected PLAINTEXT://host:port", l);
		free(s);
		return -EINVAL;
	}
	struct net_config nc;
	net_config_defaults(&nc);
	nc.host = host;
	nc.port = (uint16_t)port;
	nc.max_request_bytes = (int32_t)cfg_int(conf, BC_SOCKET_REQUEST_MAX_BYTES);
	struct net_handler h = { .ctx = s, .on_request = on_request };
	int rc = net_server_start(ur, &nc, &h, &s->net);
	if (rc < 0) {
		snprintf(why, why_len, "listeners=%s: cannot listen: %s", l, strerror(-rc));
		free(s);
		return rc;
	}
	const char *adv = cfg_str(conf, BC_ADVERTISED_LISTENERS);
	if (adv && parse_listener(adv, s->adv_host, sizeof s->adv_host, &s->adv_port) < 0) {
		snprintf(why, why_len, "advertised.listeners=%s: expected PLAINTEXT://host:port", adv);
		net_server_stop(s->net);
		net_server_free(s->net);
		free(s);
		return -EINVAL;
	}
	if (!adv) {
		snprintf(s->adv_host, sizeof s->adv_host, "%s", host);
		if (!host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0)
			gethostname(s->adv_host, sizeof s->adv_host - 1);
		s->adv_port = net_server_port(s->net);
	}
	/* Last: replays __consumer_offsets; nothing is served before the ring runs. */
	if ((rc = group_coordinator_open(&s->groups, ur, b, conf, why, why_len)) < 0) {
		net_server_stop(s->net);
		net_server_free(s->net);
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int kafka_server_port(const struct kafka_server *s) { return net_server_port(s->net); }

void kafka_server_stop(struct kafka_server *s)
{
	s->stopping = 1;
	/* Topic creations not started yet end now: their parked requests are answered (the
	 * answers dropped) instead of holding the shutdown. */
	broker_cancel_jobs(s->broker);
	group_coordinator_stop(s->groups); /* answers parked JoinGroup/SyncGroup */
	net_server_stop(s->net);
}

int kafka_server_idle(const struct kafka_server *s)
{
	return s->requests_inflight == 0 && net_server_idle(s->net) && group_coordinator_idle(s->groups);
}

void kafka_server_free(struct kafka_server *s)
{
	if (!s)
		return;
	net_server_free(s->net);
	group_coordinator_free(s->groups);
	free(s);
}
