/* kafka_group.c -- the consumer group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
 * LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups and
 * OffsetDelete. Decodes each request, asks the coordinator (group.h) and encodes its answer for
 * the request's version. Requests the coordinator parks (JoinGroup, SyncGroup, OffsetCommit
 * until durable, DeleteGroups, OffsetDelete) keep their struct kreq until its callback answers.
 * Holds no group state and makes no group decision of its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kafka_int.h"
#include "strata/common.h"
#include "strata/slog.h"

/* Kafka's authorized operations of a group without an authorizer: READ, DELETE, DESCRIBE. */
#define GROUP_AUTHORIZED_OPS ((1 << 3) | (1 << 6) | (1 << 8))

/* A copy of s in the request's arena (coordinator strings live only during a callback). */
static struct kstr acopy(struct kreq *q, const char *s, bool *oom)
{
	if (!s)
		return KSTR_NULL;
	size_t n = strlen(s);
	if (n > KIO_STRING_MAX)
		n = KIO_STRING_MAX;
	char *p = arena_memdup(&q->arena, s, n + 1);
	if (!p) {
		*oom = true;
		return KSTR_NULL;
	}
	return (struct kstr){ p, (int32_t)n };
}

static struct kbytes acopy_bytes(struct kreq *q, struct kbytes b, bool *oom)
{
	if (b.len <= 0)
		return (struct kbytes){ (const uint8_t *)"", 0 };
	uint8_t *p = arena_memdup(&q->arena, b.p, (size_t)b.len);
	if (!p) {
		*oom = true;
		return (struct kbytes){ (const uint8_t *)"", 0 };
	}
	return (struct kbytes){ p, b.len };
}

/* Kafka's clientHost: InetAddress.toString of the peer, "/127.0.0.1". */
static struct kstr client_host(struct kreq *q)
{
	const char *peer = net_conn_peer(q->nreq->conn);
	const char *colon = strrchr(peer, ':');
	size_t n = colon ? (size_t)(colon - peer) : strlen(peer);
	if (n >= 2 && peer[0] == '[' && peer[n - 1] == ']') {
		peer++;
		n -= 2;
	}
	char *p = arena_alloc(&q->arena, n + 2);
	if (!p)
		return KSTR_LIT("");
	p[0] = '/';
	memcpy(p + 1, peer, n);
	p[n + 1] = 0;
	return (struct kstr){ p, (int32_t)n + 1 };
}

static struct group_coordinator *gc_of(struct kreq *q) { return q->srv->groups; }

/* --- FindCoordinator ---------------------------------------------------------------------- */

static void find_one(struct kreq *q, int8_t key_type, int16_t *err, int32_t *node, struct kstr *host,
		     int32_t *port)
{
	*node = -1;
	*host = KSTR_LIT("");
	*port = -1;
	if (key_type == 0) {
		*err = (int16_t)group_coordinator_ensure_topic(gc_of(q));
	} else if (key_type == 1) {
		*err = KERR_COORDINATOR_NOT_AVAILABLE; /* no transaction coordinator yet */
	} else {
		*err = KERR_INVALID_REQUEST;
	}
	if (*err == KERR_NONE) {
		*node = q->srv->broker->node_id;
		*host = kstr_c(q->srv->adv_host);
		*port = q->srv->adv_port;
	}
}

static struct kstr error_message(int16_t err)
{
	return err == KERR_NONE ? KSTR_NULL : kstr_c(kerr_name(err));
}

void kafka_handle_find_coordinator(struct kreq *q)
{
	struct kmsg_find_coordinator_request req;
	kmsg_find_coordinator_request_init(&req);
	if (kmsg_find_coordinator_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	struct kmsg_find_coordinator_response resp;
	kmsg_find_coordinator_response_init(&resp);
	resp.throttle_time_ms = 0;
	int8_t key_type = q->version >= 1 ? req.key_type : 0;
	if (q->version < 4) {
		find_one(q, key_type, &resp.error_code, &resp.node_id, &resp.host, &resp.port);
		resp.error_message = error_message(resp.error_code);
	} else {
		int32_t n = req.coordinator_keys.len < 0 ? 0 : req.coordinator_keys.len;
		resp.coordinators.items = arena_calloc(&q->arena, (size_t)n + 1, sizeof *resp.coordinators.items);
		if (!resp.coordinators.items) {
			kafka_bad_request(q, "out of memory");
			return;
		}
		resp.coordinators.len = n;
		for (int32_t i = 0; i < n; i++) {
			struct kmsg_find_coordinator_response_coordinator *c = &resp.coordinators.items[i];
			kmsg_find_coordinator_response_coordinator_init(c);
			c->key = req.coordinator_keys.items[i];
			find_one(q, key_type, &c->error_code, &c->node_id, &c->host, &c->port);
			c->error_message = error_message(c->error_code);
		}
	}
	KAFKA_RESPOND(q, find_coordinator_response, &resp);
}

/* --- JoinGroup ----------------------------------------------------------------------------- */

static void join_done(void *ctx, const struct group_join_result *r)
{
	struct kreq *q = ctx;
	struct kmsg_join_group_response resp;
	kmsg_join_group_response_init(&resp);
	resp.throttle_time_ms = 0;
	resp.error_code = r->error;
	resp.generation_id = r->generation;
	resp.protocol_type = kstr_c(r->protocol_type);
	/* nullable from v7; before, Kafka sends "" */
	resp.protocol_name = r->protocol_name ? kstr_c(r->protocol_name)
					      : (q->version >= 7 ? KSTR_NULL : KSTR_LIT(""));
	resp.leader = kstr_c(r->leader ? r->leader : "");
	resp.skip_assignment = q->version >= 9 && r->skip_assignment;
	resp.member_id = kstr_c(r->member_id ? r->member_id : "");
	if (r->n_members > 0) {
		resp.members.items = arena_calloc(&q->arena, (size_t)r->n_members, sizeof *resp.members.items);
		if (!resp.members.items) {
			kafka_bad_request(q, "out of memory");
			return;
		}
		resp.members.len = r->n_members;
		for (int32_t i = 0; i < r->n_members; i++) {
			struct kmsg_join_group_response_member *m = &resp.members.items[i];
			kmsg_join_group_response_member_init(m);
			m->member_id = kstr_c(r->members[i].member_id);
			m->group_instance_id = kstr_c(r->members[i].instance_id);
			m->metadata = r->members[i].metadata;
		}
	}
	KAFKA_RESPOND(q, join_group_response, &resp);
}

void kafka_handle_join_group(struct kreq *q)
{
	struct kmsg_join_group_request req;
	kmsg_join_group_request_init(&req);
	if (kmsg_join_group_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	int32_t n = req.protocols.len < 0 ? 0 : req.protocols.len;
	struct group_protocol *protos = arena_calloc(&q->arena, (size_t)n + 1, sizeof *protos);
	if (!protos) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	for (int32_t i = 0; i < n; i++) {
		protos[i].name = req.protocols.items[i].name;
		protos[i].metadata = req.protocols.items[i].metadata;
	}
	struct group_join_req jr = {
		.group_id = req.group_id,
		.member_id = req.member_id.len < 0 ? KSTR_LIT("") : req.member_id,
		.instance_id = q->version >= 5 ? req.group_instance_id : KSTR_NULL,
		.client_id = q->hdr.client_id,
		.client_host = client_host(q),
		.protocol_type = req.protocol_type,
		.session_timeout_ms = req.session_timeout_ms,
		/* v0 has no rebalance timeout: the session timeout serves (JoinGroupRequest) */
		.rebalance_timeout_ms = q->version == 0 ? req.session_timeout_ms : req.rebalance_timeout_ms,
		.protocols = protos,
		.n_protocols = n,
		.done = join_done,
		.ctx = q,
	};
	jr.require_known_member_id = q->version >= 4 && jr.instance_id.len < 0;
	jr.supports_skip_assignment = q->version >= 9;
	group_join(gc_of(q), &jr);
}

/* --- SyncGroup ----------------------------------------------------------------------------- */

static void sync_done(void *ctx, const struct group_sync_result *r)
{
	struct kreq *q = ctx;
	struct kmsg_sync_group_response resp;
	kmsg_sync_group_response_init(&resp);
	resp.throttle_time_ms = 0;
	resp.error_code = r->error;
	resp.protocol_type = kstr_c(r->protocol_type);
	resp.protocol_name = kstr_c(r->protocol_name);
	resp.assignment = r->assignment.len > 0 ? r->assignment : (struct kbytes){ (const uint8_t *)"", 0 };
	KAFKA_RESPOND(q, sync_group_response, &resp);
}

void kafka_handle_sync_group(struct kreq *q)
{
	struct kmsg_sync_group_request req;
	kmsg_sync_group_request_init(&req);
	if (kmsg_sync_group_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	int32_t n = req.assignments.len < 0 ? 0 : req.assignments.len;
	struct group_assignment *as = arena_calloc(&q->arena, (size_t)n + 1, sizeof *as);
	if (!as) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	for (int32_t i = 0; i < n; i++) {
		as[i].member_id = req.assignments.items[i].member_id;
		as[i].assignment = req.assignments.items[i].assignment;
	}
	struct group_sync_req sr = {
		.group_id = req.group_id,
		.member_id = req.member_id,
		.instance_id = q->version >= 3 ? req.group_instance_id : KSTR_NULL,
		.protocol_type = q->version >= 5 ? req.protocol_type : KSTR_NULL,
		.protocol_name = q->version >= 5 ? req.protocol_name : KSTR_NULL,
		.generation = req.generation_id,
		.assignments = as,
		.n_assignments = n,
		.done = sync_done,
		.ctx = q,
	};
	group_sync(gc_of(q), &sr);
}

/* --- Heartbeat, LeaveGroup ------------------------------------------------------------------ */

void kafka_handle_heartbeat(struct kreq *q)
{
	struct kmsg_heartbeat_request req;
	kmsg_heartbeat_request_init(&req);
	if (kmsg_heartbeat_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	struct kmsg_heartbeat_response resp;
	kmsg_heartbeat_response_init(&resp);
	resp.throttle_time_ms = 0;
	resp.error_code = (int16_t)group_heartbeat(gc_of(q), req.group_id, req.member_id,
						   q->version >= 3 ? req.group_instance_id : KSTR_NULL,
						   req.generation_id);
	KAFKA_RESPOND(q, heartbeat_response, &resp);
}

void kafka_handle_leave_group(struct kreq *q)
{
	struct kmsg_leave_group_request req;
	kmsg_leave_group_request_init(&req);
	if (kmsg_leave_group_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	bool batched = q->version >= 3;
	int32_t n = batched ? (req.members.len < 0 ? 0 : req.members.len) : 1;
	struct group_leave_member *lm = arena_calloc(&q->arena, (size_t)n + 1, sizeof *lm);
	if (!lm) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	for (int32_t i = 0; i < n; i++) {
		lm[i].member_id = batched ? req.members.items[i].member_id : req.member_id;
		lm[i].instance_id = batched ? req.members.items[i].group_instance_id : KSTR_NULL;
		lm[i].error = KERR_NONE;
	}
	int err = group_leave(gc_of(q), req.group_id, lm, n);
	struct kmsg_leave_group_response resp;
	kmsg_leave_group_response_init(&resp);
	resp.throttle_time_ms = 0;
	resp.error_code = (int16_t)err;
	if (!batched) {
		/* LeaveGroupResponse before v3: the single member's error at the top */
		if (err == KERR_NONE)
			resp.error_code = lm[0].error;
	} else if (err == KERR_NONE) {
		resp.members.items = arena_calloc(&q->arena, (size_t)n + 1, sizeof *resp.members.items);
		if (!resp.members.items) {
			kafka_bad_request(q, "out of memory");
			return;
		}
		resp.members.len = n;
		for (int32_t i = 0; i < n; i++) {
			struct kmsg_leave_group_response_member_response *m = &resp.members.items[i];
			kmsg_leave_group_response_member_response_init(m);
			m->member_id = lm[i].member_id;
			m->group_instance_id = lm[i].instance_id;
			m->error_code = lm[i].error;
		}
	}
	KAFKA_RESPOND(q, leave_group_response, &resp);
}

/* --- OffsetCommit ---------------------------------------------------------------------------- */

struct commit_state {
	struct kreq *q;
	struct kmsg_offset_commit_request req;
	struct group_commit_req cr;
};

static void commit_done(void *ctx)
{
	struct commit_state *cs = ctx;
	struct kreq *q = cs->q;
	struct kmsg_offset_commit_response resp;
	kmsg_offset_commit_response_init(&resp);
	resp.throttle_time_ms = 0;
	int32_t nt = cs->req.topics.len < 0 ? 0 : cs->req.topics.len;
	resp.topics.items = arena_calloc(&q->arena, (size_t)nt + 1, sizeof *resp.topics.items);
	if (!resp.topics.items) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	resp.topics.len = nt;
	int32_t k = 0;
	for (int32_t i = 0; i < nt; i++) {
		struct kmsg_offset_commit_request_topic *rt = &cs->req.topics.items[i];
		struct kmsg_offset_commit_response_topic *t = &resp.topics.items[i];
		kmsg_offset_commit_response_topic_init(t);
		t->name = rt->name;
		int32_t np = rt->partitions.len < 0 ? 0 : rt->partitions.len;
		t->partitions.items = arena_calloc(&q->arena, (size_t)np + 1, sizeof *t->partitions.items);
		if (!t->partitions.items) {
			kafka_bad_request(q, "out of memory");
			return;
		}
		t->partitions.len = np;
		for (int32_t j = 0; j < np; j++, k++) {
			kmsg_offset_commit_response_partition_init(&t->partitions.items[j]);
			t->partitions.items[j].partition_index = cs->cr.parts[k].partition;
			t->partitions.items[j].error_code = cs->cr.parts[k].error;
		}
	}
	KAFKA_RESPOND(q, offset_commit_response, &resp);
}

void kafka_handle_offset_commit(struct kreq *q)
{
	struct commit_state *cs = arena_calloc(&q->arena, 1, sizeof *cs);
	if (!cs) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	cs->q = q;
	kmsg_offset_commit_request_init(&cs->req);
	if (kmsg_offset_commit_request_decode(&q->body, q->version, &cs->req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	struct kmsg_offset_commit_request *req = &cs->req;
	int32_t nt = req->topics.len < 0 ? 0 : req->topics.len;
	int64_t n = 0;
	for (int32_t i = 0; i < nt; i++)
		n += req->topics.items[i].partitions.len < 0 ? 0 : req->topics.items[i].partitions.len;
	struct group_commit_part *parts = arena_calloc(&q->arena, (size_t)n + 1, sizeof *parts);
	if (!parts) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	int32_t k = 0;
	for (int32_t i = 0; i < nt; i++) {
		struct kmsg_offset_commit_request_topic *t = &req->topics.items[i];
		int32_t np = t->partitions.len < 0 ? 0 : t->partitions.len;
		for (int32_t j = 0; j < np; j++, k++) {
			struct kmsg_offset_commit_request_partition *p = &t->partitions.items[j];
			parts[k].topic = t->name;
			parts[k].partition = p->partition_index;
			parts[k].offset = p->committed_offset;
			parts[k].leader_epoch = q->version >= 6 ? p->committed_leader_epoch : -1;
			parts[k].metadata = p->committed_metadata;
			parts[k].commit_ts_ms = q->version == 1 ? p->commit_timestamp : -1;
		}
	}
	cs->cr = (struct group_commit_req){
		.group_id = req->group_id,
		.member_id = q->version >= 1 && req->member_id.len >= 0 ? req->member_id : KSTR_LIT(""),
		.instance_id = q->version >= 7 ? req->group_instance_id : KSTR_NULL,
		.generation = q->version >= 1 ? req->generation_id_or_member_epoch : -1,
		.retention_ms = q->version >= 2 && q->version <= 4 ? req->retention_time_ms : -1,
		.parts = parts,
		.n_parts = k,
		.done = commit_done,
		.ctx = cs,
	};
	group_commit_offsets(gc_of(q), &cs->cr);
}

/* --- OffsetFetch ------------------------------------------------------------------------------ */

struct off_list {
	struct kreq *q;
	struct group_offset *items;
	int32_t n, cap;
	bool oom;
};

static void off_collect(void *ctx, const struct group_offset *o)
{
	struct off_list *l = ctx;
	if (l->oom)
		return;
	if (l->n == l->cap) {
		int32_t cap = l->cap ? l->cap * 2 : 16;
		struct group_offset *n = arena_alloc(&l->q->arena, (size_t)cap * sizeof *n);
		if (!n) {
			l->oom = true;
			return;
		}
		if (l->n)
			memcpy(n, l->items, (size_t)l->n * sizeof *n);
		l->items = n;
		l->cap = cap;
	}
	struct group_offset *c = &l->items[l->n++];
	*c = *o;
	c->topic = acopy(l->q, o->topic, &l->oom).p;
	c->metadata = acopy(l->q, o->metadata ? o->metadata : "", &l->oom).p;
}

/* The offsets of one group, as (v0-7 or v8+) topic arrays. requested: the request's topics
 * (NULL: all committed ones). Fills exactly one of the two output shapes. */
struct fetch_topic_req {
	struct kstr name;
	const struct kmsg_i32_array *partitions;
};

struct fetch_out {
	struct kmsg_offset_fetch_response_topic *old_topics;   /* v0-7 */
	struct kmsg_offset_fetch_response_topics *new_topics;  /* v8+ */
	int32_t n_topics;
};

static void fill_partition(struct kreq *q, bool v8, void *items, int32_t j, const struct group_offset *o,
			   int32_t partition, bool *oom)
{
	struct kstr md = acopy(q, o->metadata ? o->metadata : "", oom);
	if (v8) {
		struct kmsg_offset_fetch_response_partitions *p =
			&((struct kmsg_offset_fetch_response_partitions *)items)[j];
		kmsg_offset_fetch_response_partitions_init(p);
		p->partition_index = partition;
		p->committed_offset = o->offset;
		p->committed_leader_epoch = o->leader_epoch;
		p->metadata = md;
		p->error_code = KERR_NONE;
	} else {
		struct kmsg_offset_fetch_response_partition *p =
			&((struct kmsg_offset_fetch_response_partition *)items)[j];
		kmsg_offset_fetch_response_partition_init(p);
		p->partition_index = partition;
		p->committed_offset = o->offset;
		p->committed_leader_epoch = q->version >= 5 ? o->leader_epoch : -1;
		p->metadata = md;
		p->error_code = KERR_NONE;
	}
}

/* Allocates topic i's partition array (np entries) in the chosen shape. */
static void *topic_slot(struct kreq *q, struct fetch_out *out, bool v8, int32_t i, struct kstr name,
			int32_t np)
{
	if (v8) {
		struct kmsg_offset_fetch_response_topics *t = &out->new_topics[i];
		kmsg_offset_fetch_response_topics_init(t);
		t->name = name;
		t->partitions.items = arena_calloc(&q->arena, (size_t)np + 1, sizeof *t->partitions.items);
		t->partitions.len = np;
		return t->partitions.items;
	}
	struct kmsg_offset_fetch_response_topic *t = &out->old_topics[i];
	kmsg_offset_fetch_response_topic_init(t);
	t->name = name;
	t->partitions.items = arena_calloc(&q->arena, (size_t)np + 1, sizeof *t->partitions.items);
	t->partitions.len = np;
	return t->partitions.items;
}

static int fetch_group(struct kreq *q, bool v8, struct kstr group_id, const struct fetch_topic_req *topics,
		       int32_t n_topics, struct fetch_out *out)
{
	struct group_coordinator *gc = gc_of(q);
	bool oom = false;
	size_t tsz = v8 ? sizeof *out->new_topics : sizeof *out->old_topics;
	if (!topics) {
		struct off_list l = { .q = q };
		group_foreach_offset(gc, group_id, off_collect, &l);
		if (l.oom)
			return -1;
		int32_t nt = 0;
		for (int32_t i = 0; i < l.n; i++)
			if (i == 0 || strcmp(l.items[i].topic, l.items[i - 1].topic) != 0)
				nt++;
		void *arr = arena_calloc(&q->arena, (size_t)nt + 1, tsz);
		if (!arr)
			return -1;
		if (v8)
			out->new_topics = arr;
		else
			out->old_topics = arr;
		out->n_topics = nt;
		int32_t ti = -1;
		for (int32_t i = 0; i < l.n;) {
			int32_t j = i;
			while (j < l.n && strcmp(l.items[j].topic, l.items[i].topic) == 0)
				j++;
			ti++;
			void *parts = topic_slot(q, out, v8, ti, kstr_c(l.items[i].topic), j - i);
			if (!parts)
				return -1;
			for (int32_t x = i; x < j; x++)
				fill_partition(q, v8, parts, x - i, &l.items[x], l.items[x].partition, &oom);
			i = j;
		}
		return oom ? -1 : 0;
	}
	void *arr = arena_calloc(&q->arena, (size_t)n_topics + 1, tsz);
	if (!arr)
		return -1;
	if (v8)
		out->new_topics = arr;
	else
		out->old_topics = arr;
	out->n_topics = n_topics;
	for (int32_t i = 0; i < n_topics; i++) {
		int32_t np = topics[i].partitions->len < 0 ? 0 : topics[i].partitions->len;
		void *parts = topic_slot(q, out, v8, i, topics[i].name, np);
		if (!parts)
			return -1;
		for (int32_t j = 0; j < np; j++) {
			struct group_offset o;
			int32_t partition = topics[i].partitions->items[j];
			group_fetch_offset(gc, group_id, topics[i].name, partition, &o);
			fill_partition(q, v8, parts, j, &o, partition, &oom);
		}
	}
	return oom ? -1 : 0;
}

void kafka_handle_offset_fetch(struct kreq *q)
{
	struct kmsg_offset_fetch_request req;
	kmsg_offset_fetch_request_init(&req);
	if (kmsg_offset_fetch_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	struct group_coordinator *gc = gc_of(q);
	struct kmsg_offset_fetch_response resp;
	kmsg_offset_fetch_response_init(&resp);
	resp.throttle_time_ms = 0;
	if (q->version < 8) {
		int32_t nt = req.topics.len;
		struct fetch_topic_req *tr = NULL;
		if (nt >= 0) {
			tr = arena_calloc(&q->arena, (size_t)nt + 1, sizeof *tr);
			if (!tr) {
				kafka_bad_request(q, "out of memory");
				return;
			}
			for (int32_t i = 0; i < nt; i++) {
				tr[i].name = req.topics.items[i].name;
				tr[i].partitions = &req.topics.items[i].partition_indexes;
			}
		}
		int16_t err = (int16_t)group_fetch_check(gc, req.group_id);
		struct fetch_out out = { 0 };
		if (err == KERR_NONE || q->version < 2) {
			/* before v2 there is no top-level error: each partition carries it */
			if (fetch_group(q, false, req.group_id, tr, tr ? nt : 0, &out) < 0) {
				kafka_bad_request(q, "out of memory");
				return;
			}
			for (int32_t i = 0; err != KERR_NONE && i < out.n_topics; i++) {
				for (int32_t j = 0; j < out.old_topics[i].partitions.len; j++) {
					struct kmsg_offset_fetch_response_partition *p =
						&out.old_topics[i].partitions.items[j];
					p->error_code = err;
					p->committed_offset = -1;
					p->committed_leader_epoch = -1;
					p->metadata = KSTR_LIT("");
				}
			}
			resp.topics.items = out.old_topics;
			resp.topics.len = out.n_topics;
		}
		if (q->version >= 2)
			resp.error_code = err;
		KAFKA_RESPOND(q, offset_fetch_response, &resp);
		return;
	}
	int32_t ng = req.groups.len < 0 ? 0 : req.groups.len;
	resp.groups.items = arena_calloc(&q->arena, (size_t)ng + 1, sizeof *resp.groups.items);
	if (!resp.groups.items) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	resp.groups.len = ng;
	for (int32_t g = 0; g < ng; g++) {
		struct kmsg_offset_fetch_request_group *rg = &req.groups.items[g];
		struct kmsg_offset_fetch_response_group *og = &resp.groups.items[g];
		kmsg_offset_fetch_response_group_init(og);
		og->group_id = rg->group_id;
		og->error_code = (int16_t)group_fetch_check(gc, rg->group_id);
		if (og->error_code != KERR_NONE)
			continue;
		int32_t nt = rg->topics.len;
		struct fetch_topic_req *tr = NULL;
		if (nt >= 0) {
			tr = arena_calloc(&q->arena, (size_t)nt + 1, sizeof *tr);
			if (!tr) {
				kafka_bad_request(q, "out of memory");
				return;
			}
			for (int32_t i = 0; i < nt; i++) {
				tr[i].name = rg->topics.items[i].name;
				tr[i].partitions = &rg->topics.items[i].partition_indexes;
			}
		}
		struct fetch_out out = { 0 };
		if (fetch_group(q, true, rg->group_id, tr, tr ? nt : 0, &out) < 0) {
			kafka_bad_request(q, "out of memory");
			return;
		}
		og->topics.items = out.new_topics;
		og->topics.len = out.n_topics;
	}
	KAFKA_RESPOND(q, offset_fetch_response, &resp);
}

/* --- ListGroups, DescribeGroups ------------------------------------------------------------------ */

struct list_ctx {
	struct kreq *q;
	const struct kmsg_str_array *states;
	struct kmsg_list_groups_response_listed_group *items;
	int32_t n, cap;
	bool oom;
};

static void list_collect(void *ctx, const struct group_listing *g)
{
	struct list_ctx *l = ctx;
	if (l->oom)
		return;
	if (l->states && l->states->len > 0) {
		bool hit = false;
		for (int32_t i = 0; i < l->states->len && !hit; i++) {
			struct kstr s = l->states->items[i];
			hit = s.len >= 0 && (size_t)s.len == strlen(g->state) &&
			      strncasecmp(s.p, g->state, (size_t)s.len) == 0;
		}
		if (!hit)
			return;
	}
	if (l->n == l->cap) {
		int32_t cap = l->cap ? l->cap * 2 : 16;
		void *n = arena_alloc(&l->q->arena, (size_t)cap * sizeof *l->items);
		if (!n) {
			l->oom = true;
			return;
		}
		if (l->n)
			memcpy(n, l->items, (size_t)l->n * sizeof *l->items);
		l->items = n;
		l->cap = cap;
	}
	struct kmsg_list_groups_response_listed_group *it = &l->items[l->n++];
	kmsg_list_groups_response_listed_group_init(it);
	it->group_id = acopy(l->q, g->group_id, &l->oom);
	it->protocol_type = acopy(l->q, g->protocol_type, &l->oom);
	if (l->q->version >= 4)
		it->group_state = acopy(l->q, g->state, &l->oom);
}

void kafka_handle_list_groups(struct kreq *q)
{
	struct kmsg_list_groups_request req;
	kmsg_list_groups_request_init(&req);
	if (kmsg_list_groups_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	struct kmsg_list_groups_response resp;
	kmsg_list_groups_response_init(&resp);
	resp.throttle_time_ms = 0;
	struct list_ctx l = { .q = q, .states = q->version >= 4 ? &req.states_filter : NULL };
	group_foreach(gc_of(q), list_collect, &l);
	if (l.oom) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	resp.error_code = KERR_NONE;
	resp.groups.items = l.items;
	resp.groups.len = l.n;
	KAFKA_RESPOND(q, list_groups_response, &resp);
}

struct describe_ctx {
	struct kreq *q;
	struct kmsg_describe_groups_response_described_group_member *items;
	int32_t n, cap;
	bool oom;
};

static void describe_member(void *ctx, const struct group_member_summary *m)
{
	struct describe_ctx *d = ctx;
	if (d->oom)
		return;
	if (d->n == d->cap) {
		int32_t cap = d->cap ? d->cap * 2 : 8;
		void *n = arena_alloc(&d->q->arena, (size_t)cap * sizeof *d->items);
		if (!n) {
			d->oom = true;
			return;
		}
		if (d->n)
			memcpy(n, d->items, (size_t)d->n * sizeof *d->items);
		d->items = n;
		d->cap = cap;
	}
	struct kmsg_describe_groups_response_described_group_member *it = &d->items[d->n++];
	kmsg_describe_groups_response_described_group_member_init(it);
	it->member_id = acopy(d->q, m->member_id, &d->oom);
	it->group_instance_id = acopy(d->q, m->instance_id, &d->oom);
	it->client_id = acopy(d->q, m->client_id ? m->client_id : "", &d->oom);
	it->client_host = acopy(d->q, m->client_host ? m->client_host : "", &d->oom);
	it->member_metadata = acopy_bytes(d->q, m->metadata, &d->oom);
	it->member_assignment = acopy_bytes(d->q, m->assignment, &d->oom);
}

void kafka_handle_describe_groups(struct kreq *q)
{
	struct kmsg_describe_groups_request req;
	kmsg_describe_groups_request_init(&req);
	if (kmsg_describe_groups_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	struct kmsg_describe_groups_response resp;
	kmsg_describe_groups_response_init(&resp);
	resp.throttle_time_ms = 0;
	int32_t n = req.groups.len < 0 ? 0 : req.groups.len;
	resp.groups.items = arena_calloc(&q->arena, (size_t)n + 1, sizeof *resp.groups.items);
	if (!resp.groups.items) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	resp.groups.len = n;
	bool oom = false;
	for (int32_t i = 0; i < n; i++) {
		struct kmsg_describe_groups_response_described_group *g = &resp.groups.items[i];
		kmsg_describe_groups_response_described_group_init(g);
		g->group_id = req.groups.items[i];
		struct group_summary s;
		struct describe_ctx d = { .q = q };
		int err = group_describe(gc_of(q), req.groups.items[i], &s, describe_member, &d);
		g->error_code = (int16_t)err;
		if (err != KERR_NONE) {
			/* Kafka's DescribeGroupsResponse.groupError: empty strings, no members */
			g->group_state = g->protocol_type = g->protocol_data = KSTR_LIT("");
			continue;
		}
		g->group_state = acopy(q, s.state, &oom);
		g->protocol_type = acopy(q, s.protocol_type, &oom);
		g->protocol_data = acopy(q, s.protocol_data, &oom);
		g->members.items = d.items;
		g->members.len = d.n;
		oom |= d.oom;
		if (q->version >= 3 && req.include_authorized_operations)
			g->authorized_operations = GROUP_AUTHORIZED_OPS;
	}
	if (oom) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	KAFKA_RESPOND(q, describe_groups_response, &resp);
}

/* --- DeleteGroups, OffsetDelete -------------------------------------------------------------------- */

struct delete_state {
	struct kreq *q;
	struct kmsg_delete_groups_response resp;
	int32_t pending;
};

struct delete_one {
	struct delete_state *ds;
	int32_t index;
};

static void delete_finish(struct delete_state *ds)
{
	struct kreq *q = ds->q;
	KAFKA_RESPOND(q, delete_groups_response, &ds->resp);
}

static void delete_done(void *ctx, int16_t error)
{
	struct delete_one *one = ctx;
	struct delete_state *ds = one->ds;
	ds->resp.results.items[one->index].error_code = error;
	ST_ASSERT(ds->pending > 0);
	if (--ds->pending == 0)
		delete_finish(ds);
}

void kafka_handle_delete_groups(struct kreq *q)
{
	struct kmsg_delete_groups_request req;
	kmsg_delete_groups_request_init(&req);
	if (kmsg_delete_groups_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	int32_t n = req.groups_names.len < 0 ? 0 : req.groups_names.len;
	struct delete_state *ds = arena_calloc(&q->arena, 1, sizeof *ds);
	struct delete_one *ones = arena_calloc(&q->arena, (size_t)n + 1, sizeof *ones);
	if (!ds || !ones) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	ds->q = q;
	kmsg_delete_groups_response_init(&ds->resp);
	ds->resp.throttle_time_ms = 0;
	ds->resp.results.items = arena_calloc(&q->arena, (size_t)n + 1, sizeof *ds->resp.results.items);
	if (!ds->resp.results.items) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	ds->resp.results.len = n;
	/* one count of our own so that deletions finishing during the loop cannot answer early */
	ds->pending = 1;
	for (int32_t i = 0; i < n; i++) {
		kmsg_delete_groups_response_deletable_group_result_init(&ds->resp.results.items[i]);
		ds->resp.results.items[i].group_id = req.groups_names.items[i];
		ones[i].ds = ds;
		ones[i].index = i;
		ds->pending++;
		group_delete(gc_of(q), req.groups_names.items[i], delete_done, &ones[i]);
	}
	if (--ds->pending == 0)
		delete_finish(ds);
}

struct odelete_state {
	struct kreq *q;
	struct kmsg_offset_delete_request req;
	struct group_offset_delete_part *parts;
};

static void odelete_done(void *ctx)
{
	struct odelete_state *os = ctx;
	struct kreq *q = os->q;
	struct kmsg_offset_delete_response resp;
	kmsg_offset_delete_response_init(&resp);
	resp.throttle_time_ms = 0;
	resp.error_code = KERR_NONE;
	int32_t nt = os->req.topics.len < 0 ? 0 : os->req.topics.len;
	resp.topics.items = arena_calloc(&q->arena, (size_t)nt + 1, sizeof *resp.topics.items);
	if (!resp.topics.items) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	resp.topics.len = nt;
	int32_t k = 0;
	for (int32_t i = 0; i < nt; i++) {
		struct kmsg_offset_delete_request_topic *rt = &os->req.topics.items[i];
		struct kmsg_offset_delete_response_topic *t = &resp.topics.items[i];
		kmsg_offset_delete_response_topic_init(t);
		t->name = rt->name;
		int32_t np = rt->partitions.len < 0 ? 0 : rt->partitions.len;
		t->partitions.items = arena_calloc(&q->arena, (size_t)np + 1, sizeof *t->partitions.items);
		if (!t->partitions.items) {
			kafka_bad_request(q, "out of memory");
			return;
		}
		t->partitions.len = np;
		for (int32_t j = 0; j < np; j++, k++) {
			kmsg_offset_delete_response_partition_init(&t->partitions.items[j]);
			t->partitions.items[j].partition_index = os->parts[k].partition;
			t->partitions.items[j].error_code = os->parts[k].error;
		}
	}
	KAFKA_RESPOND(q, offset_delete_response, &resp);
}

void kafka_handle_offset_delete(struct kreq *q)
{
	struct odelete_state *os = arena_calloc(&q->arena, 1, sizeof *os);
	if (!os) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	os->q = q;
	kmsg_offset_delete_request_init(&os->req);
	if (kmsg_offset_delete_request_decode(&q->body, q->version, &os->req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	int32_t nt = os->req.topics.len < 0 ? 0 : os->req.topics.len;
	int64_t n = 0;
	for (int32_t i = 0; i < nt; i++)
		n += os->req.topics.items[i].partitions.len < 0 ? 0 : os->req.topics.items[i].partitions.len;
	os->parts = arena_calloc(&q->arena, (size_t)n + 1, sizeof *os->parts);
	if (!os->parts) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	int32_t k = 0;
	for (int32_t i = 0; i < nt; i++) {
		struct kmsg_offset_delete_request_topic *t = &os->req.topics.items[i];
		int32_t np = t->partitions.len < 0 ? 0 : t->partitions.len;
		for (int32_t j = 0; j < np; j++, k++) {
			os->parts[k].topic = t->name;
			os->parts[k].partition = t->partitions.items[j].partition_index;
		}
	}
	int err = group_delete_offsets(gc_of(q), os->req.group_id, os->parts, k, odelete_done, os);
	if (err == KERR_NONE)
		return; /* odelete_done answers (possibly already has) */
	struct kmsg_offset_delete_response resp;
	kmsg_offset_delete_response_init(&resp);
	resp.throttle_time_ms = 0;
	resp.error_code = (int16_t)err;
	KAFKA_RESPOND(q, offset_delete_response, &resp);
}
