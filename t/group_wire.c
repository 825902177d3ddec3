/* group_wire.c -- wire-level checks of the consumer group APIs (src/kafka_group.c) against a
 * running stratad: every advertised version of FindCoordinator, JoinGroup, SyncGroup,
 * Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups
 * and OffsetDelete, with the generated codecs as the client (so flexible versions no installed
 * client speaks are covered), plus the errors Kafka answers for bad requests, after which the
 * coordinator must still serve other groups. Run by t/groups.sh; prints TAP.
 *
 *   t/group-wire PORT
 *
 * The broker must run with group.initial.rebalance.delay.ms=0 and num.partitions >= 10. */
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

#define WIRE_TIMEOUT_MS 30000
#define TOPIC "wire-t"

#define WIRE_CLIENT_ID "group-wire"
#include "wire.h"

/* Sends a request; returns its correlation id or -errno. */
#define SEND(fd, name, key, ver, req) ({ \
	struct kw w_; \
	kw_init(&w_, 256); \
	int32_t rc_ = kmsg_##name##_request_encode(&w_, (int16_t)(ver), (req)); \
	if (rc_ == 0) \
		rc_ = wire_send((fd), (key), (int16_t)(ver), &w_); \
	kw_free(&w_); \
	if (rc_ < 0) \
		tap_diag("%s v%d: send failed: %s", #name, (int)(ver), strerror(-rc_)); \
	rc_; \
})

/* Receives and decodes the response of correlation id corr: 0 or -errno. */
#define RECV(fd, name, key, ver, corr, resp) ({ \
	struct kr r_; \
	int rc_ = (corr) < 0 ? (corr) : wire_recv((fd), (key), (int16_t)(ver), (corr), &r_); \
	kmsg_##name##_response_init(resp); \
	if (rc_ == 0) \
		rc_ = kmsg_##name##_response_decode(&r_, (int16_t)(ver), (resp), &A); \
	if (rc_ == 0 && kr_remaining(&r_) != 0) \
		rc_ = -EBADMSG; \
	if (rc_ != 0) \
		tap_diag("%s v%d: receive failed: %s", #name, (int)(ver), strerror(-rc_)); \
	rc_; \
})

#define CALL(fd, name, key, ver, req, resp) ({ \
	int32_t c_ = SEND(fd, name, key, ver, req); \
	RECV(fd, name, key, ver, c_, resp); \
})

/* --- helpers ------------------------------------------------------------------------------------- */

static struct kbytes subscription(void)
{
	static uint8_t buf[128];
	static size_t len;
	if (!len) {
		struct kw w;
		kw_init(&w, 64);
		kw_i16(&w, 0);
		struct kmsg_consumer_protocol_subscription s;
		kmsg_consumer_protocol_subscription_init(&s);
		struct kstr t = KSTR_LIT(TOPIC);
		s.topics.items = &t;
		s.topics.len = 1;
		kmsg_consumer_protocol_subscription_encode(&w, 0, &s);
		ST_ASSERT(!w.err && w.len <= sizeof buf);
		memcpy(buf, w.p, w.len);
		len = w.len;
		kw_free(&w);
	}
	return (struct kbytes){ buf, (int32_t)len };
}

struct member {
	char id[256];
	int32_t generation;
	bool leader;
	int32_t n_members;
	char leader_id[256];
};

static int32_t join_send(int fd, int16_t v, const char *group, const char *member, const char *instance,
			 const char *ptype, int32_t session_ms)
{
	struct kmsg_join_group_request_protocol p;
	kmsg_join_group_request_protocol_init(&p);
	p.name = KSTR_LIT("range");
	p.metadata = subscription();
	struct kmsg_join_group_request req;
	kmsg_join_group_request_init(&req);
	req.group_id = kstr_c(group);
	req.session_timeout_ms = session_ms;
	req.rebalance_timeout_ms = v >= 1 ? 10000 : -1;
	req.member_id = kstr_c(member);
	req.group_instance_id = v >= 5 ? kstr_c(instance) : KSTR_NULL;
	req.protocol_type = kstr_c(ptype);
	req.protocols.items = &p;
	req.protocols.len = 1;
	return SEND(fd, join_group, 11, v, &req);
}

/* Joins (handling MEMBER_ID_REQUIRED). Returns the final error; fills m. */
static int join_full(int fd, int16_t v, const char *group, const char *instance, struct member *m,
		     struct kmsg_join_group_response *out)
{
	struct kmsg_join_group_response resp;
	const char *id = m->id[0] ? m->id : "";
	for (int round = 0; round < 2; round++) {
		int32_t c = join_send(fd, v, group, id, instance, "consumer", 10000);
		if (RECV(fd, join_group, 11, v, c, &resp) != 0)
			return -1;
		if (resp.error_code != 79)
			break;
		snprintf(m->id, sizeof m->id, "%.*s", resp.member_id.len, resp.member_id.p);
		id = m->id;
	}
	if (resp.error_code == 0) {
		snprintf(m->id, sizeof m->id, "%.*s", resp.member_id.len, resp.member_id.p);
		snprintf(m->leader_id, sizeof m->leader_id, "%.*s", resp.leader.len, resp.leader.p);
		m->generation = resp.generation_id;
		m->leader = kstr_eq_c(resp.leader, m->id);
		m->n_members = resp.members.len;
	}
	if (out)
		*out = resp;
	return resp.error_code;
}

static int sync_call(int fd, int16_t v, const char *group, const struct member *m, const char *instance,
		     const char *assignment, struct kmsg_sync_group_response *out)
{
	struct kmsg_sync_group_request_assignment as;
	kmsg_sync_group_request_assignment_init(&as);
	as.member_id = kstr_c(m->id);
	as.assignment = (struct kbytes){ (const uint8_t *)(assignment ? assignment : ""),
					 assignment ? (int32_t)strlen(assignment) : 0 };
	struct kmsg_sync_group_request req;
	kmsg_sync_group_request_init(&req);
	req.group_id = kstr_c(group);
	req.generation_id = m->generation;
	req.member_id = kstr_c(m->id);
	req.group_instance_id = v >= 3 ? kstr_c(instance) : KSTR_NULL;
	if (v >= 5) {
		req.protocol_type = KSTR_LIT("consumer");
		req.protocol_name = KSTR_LIT("range");
	}
	if (m->leader && assignment) {
		req.assignments.items = &as;
		req.assignments.len = 1;
	}
	if (CALL(fd, sync_group, 14, v, &req, out) != 0)
		return -1;
	return out->error_code;
}

static int heartbeat(int fd, int16_t v, const char *group, const char *member, const char *instance, int32_t gen)
{
	struct kmsg_heartbeat_request req;
	kmsg_heartbeat_request_init(&req);
	req.group_id = kstr_c(group);
	req.generation_id = gen;
	req.member_id = kstr_c(member);
	req.group_instance_id = v >= 3 ? kstr_c(instance) : KSTR_NULL;
	struct kmsg_heartbeat_response resp;
	if (CALL(fd, heartbeat, 12, v, &req, &resp) != 0)
		return -1;
	return resp.error_code;
}

static int leave(int fd, int16_t v, const char *group, const char *member, const char *extra,
		 struct kmsg_leave_group_response *out)
{
	struct kmsg_leave_group_request_member_identity ids[2];
	struct kmsg_leave_group_request req;
	kmsg_leave_group_request_init(&req);
	req.group_id = kstr_c(group);
	if (v < 3) {
		req.member_id = kstr_c(member);
	} else {
		kmsg_leave_group_request_member_identity_init(&ids[0]);
		kmsg_leave_group_request_member_identity_init(&ids[1]);
		ids[0].member_id = kstr_c(member);
		ids[1].member_id = kstr_c(extra);
		req.members.items = ids;
		req.members.len = extra ? 2 : 1;
	}
	if (CALL(fd, leave_group, 13, v, &req, out) != 0)
		return -1;
	return out->error_code;
}

static const char *describe_state(int fd, int16_t v, const char *group, struct kmsg_describe_groups_response *out)
{
	struct kstr g = kstr_c(group);
	struct kmsg_describe_groups_request req;
	kmsg_describe_groups_request_init(&req);
	req.groups.items = &g;
	req.groups.len = 1;
	req.include_authorized_operations = v >= 3;
	static char st[64];
	if (CALL(fd, describe_groups, 15, v, &req, out) != 0 || out->groups.len != 1)
		return "?";
	snprintf(st, sizeof st, "%.*s", out->groups.items[0].group_state.len, out->groups.items[0].group_state.p);
	return st;
}

/* --- checks --------------------------------------------------------------------------------------- */

static void check_find_coordinator(int fd)
{
	for (int16_t v = 0; v <= 4; v++) {
		struct kmsg_find_coordinator_request req;
		kmsg_find_coordinator_request_init(&req);
		struct kstr keys[2] = { KSTR_LIT("wire-fc"), KSTR_LIT("other") };
		if (v < 4) {
			req.key = keys[0];
		} else {
			req.coordinator_keys.items = keys;
			req.coordinator_keys.len = 2;
		}
		struct kmsg_find_coordinator_response resp;
		int rc = CALL(fd, find_coordinator, 10, v, &req, &resp);
		if (v < 4)
			ok(rc == 0 && resp.error_code == 0 && resp.node_id == 1 && resp.port == g_port &&
			   resp.host.len > 0, "FindCoordinator v%d: this broker (%d)", v, resp.error_code);
		else
			ok(rc == 0 && resp.coordinators.len == 2 && resp.coordinators.items[0].error_code == 0 &&
			   resp.coordinators.items[1].node_id == 1 && resp.coordinators.items[1].port == g_port &&
			   kstr_eq_c(resp.coordinators.items[1].key, "other"),
			   "FindCoordinator v%d: batched keys", v);
		if (v >= 1) {
			req.key_type = 1;
			rc = CALL(fd, find_coordinator, 10, v, &req, &resp);
			int16_t e = v < 4 ? resp.error_code : (resp.coordinators.len ? resp.coordinators.items[0].error_code : -1);
			ok(rc == 0 && e == 15, "FindCoordinator v%d: transaction coordinator not available (%d)", v, e);
		}
	}
	struct kmsg_find_coordinator_request req;
	kmsg_find_coordinator_request_init(&req);
	req.key = KSTR_LIT("x");
	req.key_type = 9;
	struct kmsg_find_coordinator_response resp;
	ok(CALL(fd, find_coordinator, 10, 3, &req, &resp) == 0 && resp.error_code == 42,
	   "FindCoordinator: unknown key type INVALID_REQUEST");
}

/* Every JoinGroup version; SyncGroup, Heartbeat and LeaveGroup versions ride along. */
static void check_join_sync_heartbeat_leave(int fd)
{
	for (int16_t jv = 0; jv <= 9; jv++) {
		char group[32];
		snprintf(group, sizeof group, "wire-j%d", jv);
		int16_t sv = jv % 6, hv = jv % 5, lv = jv % 6;
		struct member m = { 0 };
		struct kmsg_join_group_response jr;
		int err = join_full(fd, jv, group, NULL, &m, &jr);
		bool proto_ok = kstr_eq_c(jr.protocol_name, "range") &&
				(jv < 7 || kstr_eq_c(jr.protocol_type, "consumer"));
		bool members_ok = jr.members.len == 1 && kstr_eq_c(jr.members.items[0].member_id, m.id) &&
				  kbytes_eq(jr.members.items[0].metadata, subscription()) &&
				  jr.members.items[0].group_instance_id.len < 0;
		ok(err == 0 && m.generation == 1 && m.leader && proto_ok && members_ok && !jr.skip_assignment,
		   "JoinGroup v%d: generation 1, leader, protocol and member list (%d)", jv, err);
		struct kmsg_sync_group_response sr;
		err = sync_call(fd, sv, group, &m, NULL, "assign-1", &sr);
		ok(err == 0 && kbytes_eq(sr.assignment, (struct kbytes){ (const uint8_t *)"assign-1", 8 }) &&
		   (sv < 5 || (kstr_eq_c(sr.protocol_type, "consumer") && kstr_eq_c(sr.protocol_name, "range"))),
		   "SyncGroup v%d: the leader's assignment comes back (%d)", sv, err);
		ok(heartbeat(fd, hv, group, m.id, NULL, 1) == 0, "Heartbeat v%d", hv);
		ok(heartbeat(fd, hv, group, m.id, NULL, 2) == 22, "Heartbeat v%d: wrong generation ILLEGAL_GENERATION", hv);
		ok(heartbeat(fd, hv, group, "nobody", NULL, 1) == 25, "Heartbeat v%d: unknown member UNKNOWN_MEMBER_ID", hv);
		struct kmsg_join_group_response again;
		err = join_full(fd, jv, group, NULL, &m, &again);
		ok(err == 0 && m.generation == 2, "JoinGroup v%d: the leader rejoining starts generation 2", jv);
		struct kmsg_sync_group_response sr2;
		err = sync_call(fd, sv, group, &m, NULL, "assign-2", &sr2);
		ok(err == 0 && sr2.assignment.len == 8, "SyncGroup v%d: generation 2", sv);
		struct kmsg_leave_group_response lr;
		err = leave(fd, lv, group, m.id, lv >= 3 ? "nobody" : NULL, &lr);
		bool members_err = lv < 3 || (lr.members.len == 2 && lr.members.items[0].error_code == 0 &&
					       lr.members.items[1].error_code == 25 &&
					       kstr_eq_c(lr.members.items[0].member_id, m.id));
		ok(err == 0 && members_err, "LeaveGroup v%d: the member leaves%s", lv,
		   lv >= 3 ? ", the unknown one is reported" : "");
		struct kmsg_describe_groups_response dr;
		ok(strcmp(describe_state(fd, 0, group, &dr), "Empty") == 0, "the group is Empty after LeaveGroup v%d", lv);
		if (lv < 3) {
			err = leave(fd, lv, group, "nobody", NULL, &lr);
			ok(err == 25, "LeaveGroup v%d: unknown member at the top level (%d)", lv, err);
		}
	}
	struct kmsg_sync_group_response sr;
	struct member m = { .generation = 1 };
	snprintf(m.id, sizeof m.id, "x");
	ok(sync_call(fd, 5, "wire-j9", &m, NULL, "", &sr) == 25, "SyncGroup: unknown member UNKNOWN_MEMBER_ID");
}

static struct member wc;       /* the member of group wire-c */

static int commit_call(int fd, int16_t v, const char *group, const struct member *m, int32_t partition,
		       int64_t offset, int32_t epoch, struct kstr metadata, const char *topic)
{
	struct kmsg_offset_commit_request_partition p;
	kmsg_offset_commit_request_partition_init(&p);
	p.partition_index = partition;
	p.committed_offset = offset;
	p.committed_leader_epoch = v >= 6 ? epoch : -1;
	p.commit_timestamp = v == 1 ? 1700000000000LL : -1;
	p.committed_metadata = metadata;
	struct kmsg_offset_commit_request_topic t;
	kmsg_offset_commit_request_topic_init(&t);
	t.name = kstr_c(topic);
	t.partitions.items = &p;
	t.partitions.len = 1;
	struct kmsg_offset_commit_request req;
	kmsg_offset_commit_request_init(&req);
	req.group_id = kstr_c(group);
	if (v >= 1 && m) {
		req.generation_id_or_member_epoch = m->generation;
		req.member_id = kstr_c(m->id);
	}
	if (v >= 2 && v <= 4)
		req.retention_time_ms = -1;
	req.topics.items = &t;
	req.topics.len = 1;
	struct kmsg_offset_commit_response resp;
	if (CALL(fd, offset_commit, 8, v, &req, &resp) != 0 || resp.topics.len != 1 ||
	    resp.topics.items[0].partitions.len != 1 || resp.topics.items[0].partitions.items[0].partition_index != partition)
		return -1;
	return resp.topics.items[0].partitions.items[0].error_code;
}

static void check_commit_fetch(int fd)
{
	/* the topic (auto-created by Metadata) */
	struct kmsg_metadata_request_topic mt;
	kmsg_metadata_request_topic_init(&mt);
	mt.name = KSTR_LIT(TOPIC);
	struct kmsg_metadata_request mreq;
	kmsg_metadata_request_init(&mreq);
	mreq.topics.items = &mt;
	mreq.topics.len = 1;
	struct kmsg_metadata_response mresp;
	ok(CALL(fd, metadata, 3, 4, &mreq, &mresp) == 0 && mresp.topics.len == 1 &&
	   mresp.topics.items[0].partitions.len >= 10, "topic %s with 10+ partitions", TOPIC);
	ok(join_full(fd, 5, "wire-c", NULL, &wc, NULL) == 0, "a member for the commits");
	struct kmsg_sync_group_response sr;
	ok(sync_call(fd, 5, "wire-c", &wc, NULL, "a", &sr) == 0, "synced");
	char md[16];
	for (int16_t v = 0; v <= 8; v++) {
		snprintf(md, sizeof md, "m%d", v);
		/* v0 has no member fields: a standalone commit to an empty group */
		int err = v == 0 ? commit_call(fd, v, "wire-c0", NULL, 0, 1000, -1, kstr_c(md), TOPIC)
				 : commit_call(fd, v, "wire-c", &wc, v, 100 + v, 7, kstr_c(md), TOPIC);
		ok(err == 0, "OffsetCommit v%d (%d)", v, err);
	}
	for (int16_t v = 0; v <= 7; v++) {
		int32_t parts[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
		struct kmsg_offset_fetch_request_topic t;
		kmsg_offset_fetch_request_topic_init(&t);
		t.name = KSTR_LIT(TOPIC);
		t.partition_indexes.items = parts;
		t.partition_indexes.len = 9;
		struct kmsg_offset_fetch_request req;
		kmsg_offset_fetch_request_init(&req);
		req.group_id = KSTR_LIT("wire-c");
		req.topics.items = &t;
		req.topics.len = 1;
		struct kmsg_offset_fetch_response resp;
		int rc = CALL(fd, offset_fetch, 9, v, &req, &resp);
		int bad = rc != 0 || resp.topics.len != 1 || resp.topics.items[0].partitions.len != 9 || resp.error_code != 0;
		for (int i = 0; !bad && i < 9; i++) {
			struct kmsg_offset_fetch_response_partition *p = &resp.topics.items[0].partitions.items[i];
			char want[16];
			snprintf(want, sizeof want, "m%d", i + 1);
			if (p->partition_index != i + 1 || p->error_code != 0 ||
			    p->committed_offset != (i + 1 <= 8 ? 101 + i : -1) ||
			    (i + 1 <= 8 && !kstr_eq_c(p->metadata, want)) ||
			    (v >= 5 && p->committed_leader_epoch != (i + 1 >= 6 && i + 1 <= 8 ? 7 : -1)))
				bad = 1;
		}
		ok(!bad, "OffsetFetch v%d: offsets, metadata%s of the commits of every version", v,
		   v >= 5 ? " and leader epochs" : "");
		if (v >= 2) {
			req.topics.len = -1;
			req.topics.items = NULL;
			rc = CALL(fd, offset_fetch, 9, v, &req, &resp);
			ok(rc == 0 && resp.topics.len == 1 && resp.topics.items[0].partitions.len == 8,
			   "OffsetFetch v%d: all committed offsets (null topics)", v);
		}
	}
	/* v8: several groups in one request */
	struct kmsg_offset_fetch_request_group gs[3];
	const char *names[3] = { "wire-c", "wire-c0", "wire-none" };
	for (int i = 0; i < 3; i++) {
		kmsg_offset_fetch_request_group_init(&gs[i]);
		gs[i].group_id = kstr_c(names[i]);
		gs[i].topics.len = -1;
	}
	struct kmsg_offset_fetch_request req;
	kmsg_offset_fetch_request_init(&req);
	req.groups.items = gs;
	req.groups.len = 3;
	struct kmsg_offset_fetch_response resp;
	int rc = CALL(fd, offset_fetch, 9, 8, &req, &resp);
	ok(rc == 0 && resp.groups.len == 3 && resp.groups.items[0].topics.len == 1 &&
	   resp.groups.items[0].topics.items[0].partitions.len == 8 && resp.groups.items[1].topics.len == 1 &&
	   resp.groups.items[1].topics.items[0].partitions.items[0].committed_offset == 1000 &&
	   resp.groups.items[2].topics.len == 0 && resp.groups.items[2].error_code == 0,
	   "OffsetFetch v8: several groups");

	/* errors */
	static char big[5000];
	memset(big, 'x', sizeof big);
	ok(commit_call(fd, 8, "wire-c", &wc, 1, 5, -1, (struct kstr){ big, (int32_t)sizeof big }, TOPIC) == 12,
	   "OffsetCommit: oversize metadata OFFSET_METADATA_TOO_LARGE");
	ok(commit_call(fd, 8, "wire-c", &wc, 1, 5, -1, KSTR_NULL, "wire-nope") == 3,
	   "OffsetCommit: unknown topic UNKNOWN_TOPIC_OR_PARTITION");
	struct member wrong = wc;
	wrong.generation = 9;
	ok(commit_call(fd, 8, "wire-c", &wrong, 1, 5, -1, KSTR_NULL, TOPIC) == 22,
	   "OffsetCommit: wrong generation ILLEGAL_GENERATION");
	struct member none = { .generation = -1 };
	ok(commit_call(fd, 8, "wire-c", &none, 1, 5, -1, KSTR_NULL, TOPIC) == 25,
	   "OffsetCommit: non-member on an active group UNKNOWN_MEMBER_ID");
	ok(commit_call(fd, 2, "", &none, 1, 5, -1, KSTR_NULL, TOPIC) == 0,
	   "OffsetCommit: the empty group id is a group (as Kafka)");
}

static void check_list_describe(int fd)
{
	for (int16_t v = 0; v <= 4; v++) {
		struct kmsg_list_groups_request req;
		kmsg_list_groups_request_init(&req);
		struct kstr states[1] = { KSTR_LIT("stable") };
		if (v >= 4) {
			req.states_filter.items = states;
			req.states_filter.len = 1;
		}
		struct kmsg_list_groups_response resp;
		int rc = CALL(fd, list_groups, 16, v, &req, &resp);
		bool has_c = false, has_c0 = false;
		for (int32_t i = 0; rc == 0 && i < resp.groups.len; i++) {
			if (kstr_eq_c(resp.groups.items[i].group_id, "wire-c"))
				has_c = kstr_eq_c(resp.groups.items[i].protocol_type, "consumer") &&
					(v < 4 || kstr_eq_c(resp.groups.items[i].group_state, "Stable"));
			if (kstr_eq_c(resp.groups.items[i].group_id, "wire-c0"))
				has_c0 = resp.groups.items[i].protocol_type.len == 0;
		}
		ok(rc == 0 && resp.error_code == 0 && has_c && (v >= 4 ? !has_c0 : has_c0),
		   "ListGroups v%d%s", v, v >= 4 ? ": the states filter (case-insensitive)" : "");
	}
	for (int16_t v = 0; v <= 5; v++) {
		struct kstr g[2] = { KSTR_LIT("wire-c"), KSTR_LIT("wire-unknown") };
		struct kmsg_describe_groups_request req;
		kmsg_describe_groups_request_init(&req);
		req.groups.items = g;
		req.groups.len = 2;
		req.include_authorized_operations = v >= 3;
		struct kmsg_describe_groups_response resp;
		int rc = CALL(fd, describe_groups, 15, v, &req, &resp);
		bool good = rc == 0 && resp.groups.len == 2;
		if (good) {
			struct kmsg_describe_groups_response_described_group *d = &resp.groups.items[0];
			good = d->error_code == 0 && kstr_eq_c(d->group_state, "Stable") &&
			       kstr_eq_c(d->protocol_type, "consumer") && kstr_eq_c(d->protocol_data, "range") &&
			       d->members.len == 1 && kstr_eq_c(d->members.items[0].member_id, wc.id) &&
			       kstr_eq_c(d->members.items[0].client_id, "group-wire") &&
			       kstr_eq_c(d->members.items[0].client_host, "/127.0.0.1") &&
			       kbytes_eq(d->members.items[0].member_assignment, (struct kbytes){ (const uint8_t *)"a", 1 }) &&
			       kbytes_eq(d->members.items[0].member_metadata, subscription()) &&
			       (v < 3 || d->authorized_operations == 328);
			struct kmsg_describe_groups_response_described_group *u = &resp.groups.items[1];
			good = good && u->error_code == 0 && kstr_eq_c(u->group_state, "Dead") && u->members.len == 0;
		}
		ok(good, "DescribeGroups v%d: a stable group with its member; an unknown one is Dead", v);
	}
}

static void check_delete(int fd)
{
	for (int16_t v = 0; v <= 2; v++) {
		char g[32];
		snprintf(g, sizeof g, "wire-d%d", v);
		ok(commit_call(fd, 2, g, NULL, 0, 5, -1, KSTR_NULL, TOPIC) == 0, "a group to delete (v%d)", v);
		struct kstr names[3] = { kstr_c(g), KSTR_LIT("wire-c"), KSTR_LIT("wire-unknown") };
		struct kmsg_delete_groups_request req;
		kmsg_delete_groups_request_init(&req);
		req.groups_names.items = names;
		req.groups_names.len = 3;
		struct kmsg_delete_groups_response resp;
		int rc = CALL(fd, delete_groups, 42, v, &req, &resp);
		ok(rc == 0 && resp.results.len == 3 && resp.results.items[0].error_code == 0 &&
		   resp.results.items[1].error_code == 68 && resp.results.items[2].error_code == 69 &&
		   kstr_eq_c(resp.results.items[0].group_id, g),
		   "DeleteGroups v%d: deleted / NON_EMPTY_GROUP / GROUP_ID_NOT_FOUND", v);
		struct kmsg_describe_groups_response dr;
		ok(strcmp(describe_state(fd, 0, g, &dr), "Dead") == 0, "the deleted group is Dead");
	}
	/* OffsetDelete: the active group subscribes to TOPIC; the simple group wire-c0 is empty */
	struct kmsg_offset_delete_request_partition p[2];
	kmsg_offset_delete_request_partition_init(&p[0]);
	kmsg_offset_delete_request_partition_init(&p[1]);
	p[0].partition_index = 1;
	p[1].partition_index = 0;
	struct kmsg_offset_delete_request_topic t;
	kmsg_offset_delete_request_topic_init(&t);
	t.name = KSTR_LIT(TOPIC);
	t.partitions.items = p;
	t.partitions.len = 2;
	struct kmsg_offset_delete_request req;
	kmsg_offset_delete_request_init(&req);
	req.group_id = KSTR_LIT("wire-c");
	req.topics.items = &t;
	req.topics.len = 1;
	struct kmsg_offset_delete_response resp;
	int rc = CALL(fd, offset_delete, 47, 0, &req, &resp);
	ok(rc == 0 && resp.error_code == 0 && resp.topics.len == 1 &&
	   resp.topics.items[0].partitions.items[0].error_code == 86,
	   "OffsetDelete: a subscribed topic GROUP_SUBSCRIBED_TO_TOPIC");
	req.group_id = KSTR_LIT("wire-c0");
	rc = CALL(fd, offset_delete, 47, 0, &req, &resp);
	ok(rc == 0 && resp.error_code == 0 && resp.topics.items[0].partitions.items[1].error_code == 0,
	   "OffsetDelete: an empty group's offset");
	struct kmsg_describe_groups_response dr;
	ok(strcmp(describe_state(fd, 0, "wire-c0", &dr), "Dead") == 0, "its last offset gone, the group is gone");
	req.group_id = KSTR_LIT("wire-unknown");
	rc = CALL(fd, offset_delete, 47, 0, &req, &resp);
	ok(rc == 0 && resp.error_code == 69 && resp.topics.len == 0, "OffsetDelete: unknown group GROUP_ID_NOT_FOUND");
}

static void check_static_and_multi(void)
{
	int fa = conn_open(), fb = conn_open(), fc = conn_open();
	if (fa < 0 || fb < 0 || fc < 0)
		BAIL_OUT("connect");
	struct member a = { 0 }, b = { 0 };
	ok(join_full(fa, 9, "wire-s", "ia", &a, NULL) == 0 && a.generation == 1, "static member a joins (v9)");
	struct kmsg_sync_group_response sr;
	ok(sync_call(fa, 5, "wire-s", &a, "ia", "SA", &sr) == 0, "a synced");
	/* b joins: parked until a rejoins */
	int32_t cb = join_send(fb, 7, "wire-s", "", "ib", "consumer", 10000);
	ok(heartbeat(fa, 4, "wire-s", a.id, "ia", 1) == 27, "a hears REBALANCE_IN_PROGRESS");
	struct kmsg_join_group_response jb;
	struct member a2 = a;
	int32_t ca = join_send(fa, 9, "wire-s", a.id, "ia", "consumer", 10000);
	struct kmsg_join_group_response ja;
	int rca = RECV(fa, join_group, 11, 9, ca, &ja), rcb = RECV(fb, join_group, 11, 7, cb, &jb);
	ok(rca == 0 && rcb == 0 && ja.error_code == 0 && jb.error_code == 0 && ja.generation_id == 2 &&
	   jb.generation_id == 2 && ja.members.len + jb.members.len == 2,
	   "parked joins of two connections complete together (generation 2)");
	snprintf(a2.id, sizeof a2.id, "%.*s", ja.member_id.len, ja.member_id.p);
	snprintf(b.id, sizeof b.id, "%.*s", jb.member_id.len, jb.member_id.p);
	a2.generation = b.generation = 2;
	a2.leader = kstr_eq_c(ja.leader, a2.id);
	b.leader = !a2.leader;
	bool instances = true;
	struct kmsg_join_group_response *lj = a2.leader ? &ja : &jb;
	for (int32_t i = 0; i < lj->members.len; i++)
		instances = instances && lj->members.items[i].group_instance_id.len == 2;
	ok(instances, "the leader sees both instance ids");
	/* the follower's sync parks until the leader's */
	struct member *fol = a2.leader ? &b : &a2, *ldr = a2.leader ? &a2 : &b;
	int fol_fd = a2.leader ? fb : fa, ldr_fd = a2.leader ? fa : fb;
	struct kmsg_sync_group_request_assignment as[2];
	kmsg_sync_group_request_assignment_init(&as[0]);
	kmsg_sync_group_request_assignment_init(&as[1]);
	as[0].member_id = kstr_c(a2.id);
	as[0].assignment = (struct kbytes){ (const uint8_t *)"XA", 2 };
	as[1].member_id = kstr_c(b.id);
	as[1].assignment = (struct kbytes){ (const uint8_t *)"XB", 2 };
	struct kmsg_sync_group_request fr;
	kmsg_sync_group_request_init(&fr);
	fr.group_id = KSTR_LIT("wire-s");
	fr.generation_id = 2;
	fr.member_id = kstr_c(fol->id);
	fr.group_instance_id = kstr_c(fol == &a2 ? "ia" : "ib");
	int32_t cf = SEND(fol_fd, sync_group, 14, 4, &fr);
	struct kmsg_sync_group_request lr = fr;
	lr.member_id = kstr_c(ldr->id);
	lr.group_instance_id = kstr_c(ldr == &a2 ? "ia" : "ib");
	lr.assignments.items = as;
	lr.assignments.len = 2;
	struct kmsg_sync_group_response fresp, lresp;
	int32_t cl = SEND(ldr_fd, sync_group, 14, 4, &lr);
	int rl = RECV(ldr_fd, sync_group, 14, 4, cl, &lresp), rf = RECV(fol_fd, sync_group, 14, 4, cf, &fresp);
	struct kbytes want_f = { (const uint8_t *)(fol == &a2 ? "XA" : "XB"), 2 };
	ok(rl == 0 && rf == 0 && fresp.error_code == 0 && kbytes_eq(fresp.assignment, want_f),
	   "the follower's parked sync gets its assignment");

	/* a restarts (new connection, no member id): no rebalance */
	struct member a3 = { 0 };
	struct kmsg_join_group_response j3;
	ok(join_full(fc, 5, "wire-s", "ia", &a3, &j3) == 0 && a3.generation == 2 && strcmp(a3.id, a2.id) != 0,
	   "static member a restarts: same generation, new member id");
	ok(heartbeat(fb, 4, "wire-s", b.id, "ib", 2) == 0, "b carries on without a rebalance");
	ok(heartbeat(fa, 4, "wire-s", a2.id, "ia", 2) == 82, "a's old member id is FENCED_INSTANCE_ID");
	struct kmsg_sync_group_response s3;
	ok(sync_call(fc, 4, "wire-s", &a3, "ia", NULL, &s3) == 0 &&
	   kbytes_eq(s3.assignment, (struct kbytes){ (const uint8_t *)"XA", 2 }), "and a gets its assignment back");
	struct kmsg_leave_group_response lv;
	struct kmsg_leave_group_request_member_identity id;
	kmsg_leave_group_request_member_identity_init(&id);
	id.member_id = KSTR_LIT("");
	id.group_instance_id = KSTR_LIT("ib");
	struct kmsg_leave_group_request lq;
	kmsg_leave_group_request_init(&lq);
	lq.group_id = KSTR_LIT("wire-s");
	lq.members.items = &id;
	lq.members.len = 1;
	ok(CALL(fc, leave_group, 13, 5, &lq, &lv) == 0 && lv.error_code == 0 && lv.members.len == 1 &&
	   lv.members.items[0].error_code == 0, "LeaveGroup v5: an admin removes a static member by instance id");
	ok(heartbeat(fc, 4, "wire-s", a3.id, "ia", 2) == 27, "the remaining member is told to rejoin");
	close(fa);
	close(fb);
	close(fc);
}

static void check_bad_requests(int fd)
{
	struct member m = { 0 };
	int32_t c = join_send(fd, 5, "", "", NULL, "consumer", 10000);
	struct kmsg_join_group_response jr;
	ok(RECV(fd, join_group, 11, 5, c, &jr) == 0 && jr.error_code == 24, "JoinGroup without a group id: INVALID_GROUP_ID");
	c = join_send(fd, 5, "wire-bad", "", NULL, "consumer", 1);
	ok(RECV(fd, join_group, 11, 5, c, &jr) == 0 && jr.error_code == 26, "session timeout out of range: INVALID_SESSION_TIMEOUT");
	c = join_send(fd, 5, "wire-bad", "not-a-member", NULL, "consumer", 10000);
	ok(RECV(fd, join_group, 11, 5, c, &jr) == 0 && jr.error_code == 25 &&
	   kstr_eq_c(jr.member_id, "not-a-member"), "join with an unknown member id: UNKNOWN_MEMBER_ID");
	c = join_send(fd, 5, "wire-c", "", NULL, "other", 10000);
	ok(RECV(fd, join_group, 11, 5, c, &jr) == 0 && jr.error_code == 23,
	   "join with another protocol type: INCONSISTENT_GROUP_PROTOCOL");
	ok(heartbeat(fd, 4, "", "x", NULL, 1) == 24, "Heartbeat without a group id: INVALID_GROUP_ID");
	struct kmsg_sync_group_response sr;
	struct member w = wc;
	snprintf(w.id, sizeof w.id, "%s", wc.id);
	struct kmsg_sync_group_request sq;
	kmsg_sync_group_request_init(&sq);
	sq.group_id = KSTR_LIT("wire-c");
	sq.generation_id = wc.generation;
	sq.member_id = kstr_c(wc.id);
	sq.protocol_type = KSTR_LIT("consumer");
	sq.protocol_name = KSTR_LIT("roundrobin");
	ok(CALL(fd, sync_group, 14, 5, &sq, &sr) == 0 && sr.error_code == 23,
	   "SyncGroup v5 with another protocol name: INCONSISTENT_GROUP_PROTOCOL");
	/* clients may not write the coordinator's topic */
	uint8_t batch[256];
	size_t blen = batchgen_build(batch, sizeof batch, 1, 4, 0, 1);
	struct kmsg_produce_request_partition_produce_data pd;
	kmsg_produce_request_partition_produce_data_init(&pd);
	pd.index = 0;
	pd.records = (struct kbytes){ batch, (int32_t)blen };
	struct kmsg_produce_request_topic_produce_data td;
	kmsg_produce_request_topic_produce_data_init(&td);
	td.name = KSTR_LIT("__consumer_offsets");
	td.partition_data.items = &pd;
	td.partition_data.len = 1;
	struct kmsg_produce_request pq;
	kmsg_produce_request_init(&pq);
	pq.acks = -1;
	pq.timeout_ms = 1000;
	pq.topic_data.items = &td;
	pq.topic_data.len = 1;
	struct kmsg_produce_response pr;
	ok(CALL(fd, produce, 0, 7, &pq, &pr) == 0 && pr.responses.len == 1 &&
	   pr.responses.items[0].partition_responses.items[0].error_code == 17,
	   "Produce to __consumer_offsets: INVALID_TOPIC_EXCEPTION");
	/* the coordinator still serves */
	ok(heartbeat(fd, 4, "wire-c", wc.id, NULL, wc.generation) == 0, "the coordinator still serves other groups");
	memset(&m, 0, sizeof m);
	ok(join_full(fd, 6, "wire-after", NULL, &m, NULL) == 0 && m.generation == 1, "and new ones");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s PORT\n", argv[0]);
		return 2;
	}
	g_port = atoi(argv[1]);
	arena_init(&A, 0, 0);
	int fd = conn_open();
	if (fd < 0)
		BAIL_OUT("cannot connect to 127.0.0.1:%d: %s", g_port, strerror(-fd));
	check_find_coordinator(fd);
	check_join_sync_heartbeat_leave(fd);
	check_commit_fetch(fd);
	check_list_describe(fd);
	check_delete(fd);
	check_static_and_multi();
	check_bad_requests(fd);
	close(fd);
	arena_destroy(&A);
	return tap_done();
}
