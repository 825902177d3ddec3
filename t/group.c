/* group.c -- unit tests of the consumer group coordinator (src/group.c) on a real broker in a
 * temp dir, driven through group.h without the network: the classic rebalance protocol step by
 * step (MEMBER_ID_REQUIRED, join/sync, heartbeat errors, session timeout, leave, static
 * membership and fencing, group.max.size), offset commits and their errors, deletion, offset
 * expiry with a clock moved forward, snapshots bounding __consumer_offsets, and replay of all of
 * it into a fresh coordinator. TAP. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batchgen.h"
#include "strata/broker.h"
#include "strata/common.h"
#include "strata/config.h"
#include "strata/group.h"
#include "strata/kerr.h"
#include "strata/slog.h"
#include "tap.h"

static struct uring ur;
static struct cfg conf;
static struct broker *b;
static struct group_coordinator *gc;
static char dir[PATH_MAX];

#define BAIL(...) do { printf("Bail out! " __VA_ARGS__); printf("\n"); exit(1); } while (0)

static void set(const char *k, const char *v)
{
	char why[256];
	if (cfg_set(&conf, k, v, why, sizeof why) < 0)
		BAIL("cfg_set %s: %s", k, why);
}

static void run_ms(int ms)
{
	int64_t end = st_mono_ms() + ms;
	while (st_mono_ms() < end)
		uring_run_once(&ur, 5);
}

static bool run_until(const bool *flag, int max_ms)
{
	int64_t end = st_mono_ms() + max_ms;
	while (!*flag && st_mono_ms() < end)
		uring_run_once(&ur, 5);
	return *flag;
}

static void run_idle(void)
{
	int64_t end = st_mono_ms() + 10000;
	while (!group_coordinator_idle(gc) && st_mono_ms() < end)
		uring_run_once(&ur, 5);
}

/* --- requests --------------------------------------------------------------------------------- */

struct jres {
	bool done;
	int16_t error;
	int32_t generation;
	int32_t n_members;
	bool skip;
	char member_id[256], leader[256], protocol[64];
};

static void join_cb(void *ctx, const struct group_join_result *r)
{
	struct jres *j = ctx;
	ST_ASSERT(!j->done);
	j->done = true;
	j->error = r->error;
	j->generation = r->generation;
	j->n_members = r->n_members;
	j->skip = r->skip_assignment;
	snprintf(j->member_id, sizeof j->member_id, "%s", r->member_id ? r->member_id : "");
	snprintf(j->leader, sizeof j->leader, "%s", r->leader ? r->leader : "");
	snprintf(j->protocol, sizeof j->protocol, "%s", r->protocol_name ? r->protocol_name : "");
}

/* ConsumerProtocolSubscription v0 of one topic. */
static uint8_t sub_meta[64];
static int32_t sub_meta_len;

static void make_sub(const char *topic)
{
	struct kw w;
	kw_init(&w, 64);
	kw_i16(&w, 0);
	kw_array_len(&w, 1);
	kw_string(&w, kstr_c(topic));
	kw_bytes(&w, KBYTES_NULL);
	ST_ASSERT(!w.err && w.len <= sizeof sub_meta);
	memcpy(sub_meta, w.p, w.len);
	sub_meta_len = (int32_t)w.len;
	kw_free(&w);
}

static void join_full(struct jres *j, const char *group, const char *member, const char *instance,
		      int32_t session_ms, const char *type, bool require_known, bool skip_ok)
{
	memset(j, 0, sizeof *j);
	struct group_protocol p = { KSTR_LIT("range"), { sub_meta, sub_meta_len } };
	struct group_join_req r = {
		.group_id = kstr_c(group), .member_id = kstr_c(member), .instance_id = kstr_c(instance),
		.client_id = KSTR_LIT("unit"), .client_host = KSTR_LIT("/127.0.0.1"),
		.protocol_type = kstr_c(type), .session_timeout_ms = session_ms,
		.rebalance_timeout_ms = 2000, .protocols = &p, .n_protocols = 1,
		.require_known_member_id = require_known, .supports_skip_assignment = skip_ok,
		.done = join_cb, .ctx = j,
	};
	group_join(gc, &r);
}

static void join(struct jres *j, const char *group, const char *member, const char *instance)
{
	join_full(j, group, member, instance, 10000, "consumer", false, false);
}

struct sres {
	bool done;
	int16_t error;
	char assignment[64];
};

static void sync_cb(void *ctx, const struct group_sync_result *r)
{
	struct sres *s = ctx;
	ST_ASSERT(!s->done);
	s->done = true;
	s->error = r->error;
	snprintf(s->assignment, sizeof s->assignment, "%.*s", (int)r->assignment.len,
		 r->assignment.len > 0 ? (const char *)r->assignment.p : "");
}

/* assignments: NULL-terminated pairs member, assignment */
static void sync_req(struct sres *s, const char *group, const char *member, const char *instance,
		     int32_t gen, const char **pairs)
{
	memset(s, 0, sizeof *s);
	struct group_assignment as[8];
	int32_t n = 0;
	for (; pairs && pairs[2 * n]; n++) {
		as[n].member_id = kstr_c(pairs[2 * n]);
		as[n].assignment = (struct kbytes){ (const uint8_t *)pairs[2 * n + 1],
						    (int32_t)strlen(pairs[2 * n + 1]) };
	}
	struct group_sync_req r = {
		.group_id = kstr_c(group), .member_id = kstr_c(member), .instance_id = kstr_c(instance),
		.protocol_type = KSTR_NULL, .protocol_name = KSTR_NULL, .generation = gen,
		.assignments = as, .n_assignments = n, .done = sync_cb, .ctx = s,
	};
	group_sync(gc, &r);
}

static int hb(const char *group, const char *member, const char *instance, int32_t gen)
{
	return group_heartbeat(gc, kstr_c(group), kstr_c(member), kstr_c(instance), gen);
}

static bool commit_done_flag;
static void commit_cb(void *ctx) { (void)ctx; commit_done_flag = true; }

/* One partition commit; returns its error after durability. */
static int16_t commit1(const char *group, const char *member, int32_t gen, const char *topic,
		       int32_t partition, int64_t offset, const char *metadata)
{
	struct group_commit_part p = { .topic = kstr_c(topic), .partition = partition, .offset = offset,
				       .leader_epoch = 3, .metadata = kstr_c(metadata), .commit_ts_ms = -1 };
	struct group_commit_req r = { .group_id = kstr_c(group), .member_id = kstr_c(member),
				      .instance_id = KSTR_NULL, .generation = gen, .retention_ms = -1,
				      .parts = &p, .n_parts = 1, .done = commit_cb };
	commit_done_flag = false;
	group_commit_offsets(gc, &r);
	if (!run_until(&commit_done_flag, 5000))
		return -999;
	return p.error;
}

static int64_t fetch1(const char *group, const char *topic, int32_t partition)
{
	struct group_offset o;
	group_fetch_offset(gc, kstr_c(group), kstr_c(topic), partition, &o);
	return o.offset;
}

static bool del_flag;
static int16_t del_err;
static void del_cb(void *ctx, int16_t e) { (void)ctx; del_err = e; del_flag = true; }

static int16_t delete_group(const char *group)
{
	del_flag = false;
	group_delete(gc, kstr_c(group), del_cb, NULL);
	if (!run_until(&del_flag, 5000))
		return -999;
	return del_err;
}

static const char *state(const char *group, int32_t *gen)
{
	return group_state_of(gc, group, gen);
}

/* --- setup ------------------------------------------------------------------------------------- */

static void open_coordinator(void)
{
	char why[512];
	if (group_coordinator_open(&gc, &ur, b, &conf, why, sizeof why) < 0)
		BAIL("group_coordinator_open: %s", why);
}

static void close_coordinator(void)
{
	group_coordinator_stop(gc);
	run_idle();
	group_coordinator_free(gc);
	gc = NULL;
}

static void setup(void)
{
	snprintf(dir, sizeof dir, "%s/strata-group-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir))
		BAIL("mkdtemp");
	if (uring_init(&ur, 256) < 0)
		BAIL("uring_init");
	if (cfg_init(&conf, &cfg_broker_schema) < 0)
		BAIL("cfg_init");
	set("log.dirs", dir);
	set("group.initial.rebalance.delay.ms", "50");
	set("group.min.session.timeout.ms", "10");
	set("offsets.topic.num.partitions", "4");
	set("offsets.topic.snapshot.records", "50");
	char why[512];
	if (broker_open(&b, &ur, &conf, why, sizeof why) < 0)
		BAIL("broker_open: %s", why);
	if (broker_create_topic(b, "t", 1, 4, NULL, false, NULL, why, sizeof why) != KERR_NONE ||
	    broker_create_topic(b, "u", 1, 2, NULL, false, NULL, why, sizeof why) != KERR_NONE)
		BAIL("create topics: %s", why);
	open_coordinator();
	make_sub("t");
}

static void teardown(void)
{
	close_coordinator();
	broker_close(b);
	cfg_free(&conf);
	uring_fini(&ur);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		tap_diag("could not remove %s", dir);
}

/* --- tests -------------------------------------------------------------------------------------- */

static void test_partition_hash(void)
{
	/* Kafka: Utils.abs(groupId.hashCode) % partitions (values computed with Java semantics) */
	ok(group_partition_for("console-consumer-12345", 22, 50) == 6, "partition of a group id (ASCII)");
	ok(group_partition_for("my-group", 8, 50) == 12, "partition of a group id with a negative hash");
	const char *u = "gr\xc3\xbc\xc3\x9f" "e-\xf0\x9f\x98\x80";
	ok(group_partition_for(u, strlen(u), 50) == 27, "partition of a non-ASCII group id (UTF-16 hash)");
	ok(group_is_internal_topic("__consumer_offsets", 18) && !group_is_internal_topic("__other", 7),
	   "internal topics");
}

static char m1[256], m2[256];

static void test_join_sync(void)
{
	struct jres j, j2;
	join_full(&j, "ga", "", NULL, 10000, "consumer", true, false);
	ok(j.done && j.error == KERR_MEMBER_ID_REQUIRED && strncmp(j.member_id, "unit-", 5) == 0,
	   "first join (v4+): MEMBER_ID_REQUIRED with a member id (%d %s)", j.error, j.member_id);
	snprintf(m1, sizeof m1, "%s", j.member_id);
	join(&j, "ga", m1, NULL);
	ok(!j.done, "the join waits for the initial rebalance delay");
	run_until(&j.done, 2000);
	ok(j.done && j.error == KERR_NONE && j.generation == 1 && strcmp(j.leader, m1) == 0 &&
	   j.n_members == 1 && strcmp(j.protocol, "range") == 0,
	   "join completes: generation 1, leader with the member list (%d gen %d)", j.error, j.generation);
	int32_t gen;
	ok(strcmp(state("ga", &gen), "CompletingRebalance") == 0 && gen == 1, "state CompletingRebalance");
	struct sres s;
	sync_req(&s, "ga", m1, NULL, 1, (const char *[]){ m1, "A1", NULL });
	run_until(&s.done, 2000);
	ok(s.done && s.error == KERR_NONE && strcmp(s.assignment, "A1") == 0, "leader's sync: its assignment");
	ok(strcmp(state("ga", NULL), "Stable") == 0, "state Stable");
	ok(hb("ga", m1, NULL, 1) == KERR_NONE, "heartbeat");
	ok(hb("ga", "nobody", NULL, 1) == KERR_UNKNOWN_MEMBER_ID, "heartbeat of an unknown member");
	ok(hb("ga", m1, NULL, 2) == KERR_ILLEGAL_GENERATION, "heartbeat with a wrong generation");
	ok(hb("", m1, NULL, 1) == KERR_INVALID_GROUP_ID, "heartbeat without a group id");
	ok(hb("nogroup", m1, NULL, 1) == KERR_UNKNOWN_MEMBER_ID, "heartbeat to an unknown group");
	sync_req(&s, "ga", m1, NULL, 0, NULL);
	ok(s.done && s.error == KERR_ILLEGAL_GENERATION, "sync with a wrong generation");
	sync_req(&s, "ga", "nobody", NULL, 1, NULL);
	ok(s.done && s.error == KERR_UNKNOWN_MEMBER_ID, "sync of an unknown member");

	/* a second member: everyone rejoins */
	join_full(&j2, "ga", "", NULL, 200, "consumer", false, false);
	ok(!j2.done && strcmp(state("ga", NULL), "PreparingRebalance") == 0, "a new member starts a rebalance");
	ok(hb("ga", m1, NULL, 1) == KERR_REBALANCE_IN_PROGRESS, "heartbeat says REBALANCE_IN_PROGRESS");
	struct jres bad;
	join_full(&bad, "ga", "", NULL, 10000, "connect", false, false);
	ok(bad.done && bad.error == KERR_INCONSISTENT_GROUP_PROTOCOL, "other protocol type: INCONSISTENT_GROUP_PROTOCOL");
	join_full(&bad, "ga", "", NULL, 5, "consumer", false, false);
	ok(bad.done && bad.error == KERR_INVALID_SESSION_TIMEOUT, "session timeout below the minimum");
	join(&j, "ga", m1, NULL);
	run_until(&j2.done, 3000);
	ok(j.done && j2.done && j.error == 0 && j2.error == 0 && j.generation == 2 && j2.generation == 2,
	   "both joined generation 2");
	ok(j.n_members == 2 && j2.n_members == 0 && strcmp(j2.leader, m1) == 0,
	   "the leader alone gets the member list");
	snprintf(m2, sizeof m2, "%s", j2.member_id);
	struct sres s1, s2;
	sync_req(&s2, "ga", m2, NULL, 2, NULL);
	ok(!s2.done, "a follower's sync waits for the leader's");
	struct sres early;
	sync_req(&early, "ga", m1, NULL, 1, NULL);
	ok(early.done && early.error == KERR_ILLEGAL_GENERATION, "old generation refused during the sync");
	sync_req(&s1, "ga", m1, NULL, 2, (const char *[]){ m1, "P0,P1", m2, "P2,P3", NULL });
	run_until(&s2.done, 2000);
	ok(s1.done && s2.done && strcmp(s1.assignment, "P0,P1") == 0 && strcmp(s2.assignment, "P2,P3") == 0,
	   "each member gets its own assignment (%s / %s)", s1.assignment, s2.assignment);
}

static void test_commits(void)
{
	ok(commit1("ga", m1, 2, "t", 0, 10, "meta") == KERR_NONE, "a member's commit is durable");
	ok(fetch1("ga", "t", 0) == 10, "and fetched back");
	struct group_offset o;
	group_fetch_offset(gc, KSTR_LIT("ga"), KSTR_LIT("t"), 0, &o);
	ok(o.leader_epoch == 3 && strcmp(o.metadata, "meta") == 0, "leader epoch and metadata kept");
	char big[5000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = 0;
	ok(commit1("ga", m1, 2, "t", 1, 5, big) == KERR_OFFSET_METADATA_TOO_LARGE, "oversize metadata refused");
	ok(commit1("ga", m1, 2, "nope", 0, 5, "") == KERR_UNKNOWN_TOPIC_OR_PARTITION, "unknown topic refused");
	ok(commit1("ga", m1, 2, "t", 9, 5, "") == KERR_UNKNOWN_TOPIC_OR_PARTITION, "unknown partition refused");
	ok(commit1("ga", "", -1, "t", 1, 5, "") == KERR_UNKNOWN_MEMBER_ID, "non-member commit to an active group");
	ok(commit1("ga", m1, 7, "t", 1, 5, "") == KERR_ILLEGAL_GENERATION, "commit with a wrong generation");
	ok(commit1("gone", "x", 3, "t", 1, 5, "") == KERR_ILLEGAL_GENERATION, "commit of a generation of an unknown group");
	ok(commit1("simple", "", -1, "t", 2, 42, "") == KERR_NONE && fetch1("simple", "t", 2) == 42,
	   "a standalone consumer commits for a new group");
	ok(strcmp(state("simple", NULL), "Empty") == 0, "which is an Empty group");
	ok(fetch1("ga", "t", 3) == -1, "no offset: -1");
}

static void test_session_timeout_and_leave(void)
{
	/* m2 (200 ms session) goes silent; m1 keeps heartbeating */
	int rc = KERR_NONE;
	int64_t end = st_mono_ms() + 3000;
	while (rc == KERR_NONE && st_mono_ms() < end) {
		rc = hb("ga", m1, NULL, 2);
		run_ms(40);
	}
	ok(rc == KERR_REBALANCE_IN_PROGRESS, "the silent member's session expires: rebalance");
	struct jres j;
	join(&j, "ga", m1, NULL);
	run_until(&j.done, 3000);
	ok(j.done && j.error == 0 && j.generation == 3 && j.n_members == 1, "generation 3 without it");
	ok(hb("ga", m2, NULL, 3) == KERR_UNKNOWN_MEMBER_ID, "the expired member is unknown");
	struct sres s;
	sync_req(&s, "ga", m1, NULL, 3, (const char *[]){ m1, "ALL", NULL });
	run_until(&s.done, 2000);
	ok(commit1("ga", m1, 3, "t", 1, 11, "") == KERR_NONE, "commit in generation 3");
	struct group_leave_member lm[2] = { { .member_id = kstr_c(m1), .instance_id = KSTR_NULL },
					    { .member_id = KSTR_LIT("nobody"), .instance_id = KSTR_NULL } };
	ok(group_leave(gc, KSTR_LIT("ga"), lm, 2) == KERR_NONE && lm[0].error == KERR_NONE &&
	   lm[1].error == KERR_UNKNOWN_MEMBER_ID, "leave: the member goes, the unknown one is reported");
	int32_t gen;
	ok(strcmp(state("ga", &gen), "Empty") == 0 && gen == 4, "the group is Empty (generation 4)");
	ok(fetch1("ga", "t", 1) == 11, "its offsets stay");
}

static char s1id[256], s2id[256];

static void test_static(void)
{
	struct jres a, c;
	join(&a, "gs", "", "i1");
	join(&c, "gs", "", "i2");
	run_until(&c.done, 3000);
	ok(a.done && c.done && a.error == 0 && c.error == 0 && a.generation == 1 && c.generation == 1,
	   "two static members join");
	ok(strncmp(a.member_id, "i1-", 3) == 0, "a static member id starts with its instance id");
	snprintf(s1id, sizeof s1id, "%s", a.member_id);
	snprintf(s2id, sizeof s2id, "%s", c.member_id);
	struct sres x, y;
	const char *pairs[] = { s1id, "S1", s2id, "S2", NULL };
	if (a.n_members) { /* i1 leads: the follower syncs first */
		sync_req(&y, "gs", s2id, "i2", 1, NULL);
		sync_req(&x, "gs", s1id, "i1", 1, pairs);
	} else {
		sync_req(&x, "gs", s1id, "i1", 1, NULL);
		sync_req(&y, "gs", s2id, "i2", 1, pairs);
	}
	run_until(&x.done, 2000);
	run_until(&y.done, 2000);
	ok(x.done && y.done && strcmp(x.assignment, "S1") == 0 && strcmp(y.assignment, "S2") == 0, "static assignments");
	ok(commit1("gs", s1id, 1, "t", 0, 100, "") == KERR_NONE, "static member commits");

	/* i1 restarts: joins with no member id */
	join(&a, "gs", "", "i1");
	run_until(&a.done, 2000);
	int32_t gen;
	ok(a.done && a.error == KERR_NONE && a.generation == 1 && strcmp(a.member_id, s1id) != 0,
	   "restarted static member: same generation, new member id, no rebalance (%d)", a.error);
	ok(strcmp(state("gs", &gen), "Stable") == 0 && gen == 1, "the group stayed Stable");
	ok(a.n_members == 0 && strcmp(a.leader, a.member_id) != 0, "it is not told to assign (old leader id)");
	sync_req(&x, "gs", a.member_id, "i1", 1, NULL);
	ok(x.done && x.error == 0 && strcmp(x.assignment, "S1") == 0, "and gets its assignment back");
	ok(hb("gs", s1id, "i1", 1) == KERR_FENCED_INSTANCE_ID, "the old member id is fenced");
	ok(hb("gs", s2id, "i2", 1) == KERR_NONE, "the other member carries on");
	join(&c, "gs", s1id, "i2");
	ok(c.done && c.error == KERR_FENCED_INSTANCE_ID, "a join claiming another instance: FENCED_INSTANCE_ID");
	snprintf(s1id, sizeof s1id, "%s", a.member_id);

	/* v9 leader restart: it learns it leads but skips the assignment */
	bool s1_leads = strcmp(a.leader, s2id) != 0;
	join_full(&c, "gs", "", s1_leads ? "i1" : "i2", 10000, "consumer", false, true);
	run_until(&c.done, 2000);
	ok(c.done && c.error == 0 && c.generation == 1 && c.skip && c.n_members == 2 &&
	   strcmp(c.leader, c.member_id) == 0, "a restarted static leader (v9) leads with skip_assignment");
	if (s1_leads)
		snprintf(s1id, sizeof s1id, "%s", c.member_id);
	else
		snprintf(s2id, sizeof s2id, "%s", c.member_id);

	set("group.max.size", "2");
	join(&c, "gs", "", NULL);
	ok(c.done && c.error == KERR_GROUP_MAX_SIZE_REACHED, "group.max.size: GROUP_MAX_SIZE_REACHED");
	set("group.max.size", "2147483647");
	ok(strcmp(state("gs", NULL), "Stable") == 0, "the full group is undisturbed");
}

static bool od_flag;
static void od_cb(void *ctx) { (void)ctx; od_flag = true; }

static void test_delete(void)
{
	ok(delete_group("gs") == KERR_NON_EMPTY_GROUP, "delete of an active group: NON_EMPTY_GROUP");
	ok(delete_group("zzz") == KERR_GROUP_ID_NOT_FOUND, "delete of an unknown group: GROUP_ID_NOT_FOUND");
	ok(commit1("gd", "", -1, "t", 0, 5, "") == KERR_NONE, "a group to delete");
	ok(delete_group("gd") == KERR_NONE && fetch1("gd", "t", 0) == -1 &&
	   strcmp(state("gd", NULL), "Dead") == 0, "deleted with its offsets");

	/* OffsetDelete on an active consumer group: only topics it does not subscribe to */
	ok(commit1("gs", s2id, 1, "u", 1, 7, "") == KERR_NONE, "offset of an unsubscribed topic");
	struct group_offset_delete_part parts[3] = {
		{ .topic = KSTR_LIT("t"), .partition = 0 }, { .topic = KSTR_LIT("u"), .partition = 1 },
		{ .topic = KSTR_LIT("nope"), .partition = 0 } };
	od_flag = false;
	int err = group_delete_offsets(gc, KSTR_LIT("gs"), parts, 3, od_cb, NULL);
	run_until(&od_flag, 2000);
	ok(err == KERR_NONE && od_flag && parts[0].error == KERR_GROUP_SUBSCRIBED_TO_TOPIC &&
	   parts[1].error == KERR_NONE && parts[2].error == KERR_UNKNOWN_TOPIC_OR_PARTITION,
	   "OffsetDelete: subscribed / deleted / unknown (%d %d %d)", parts[0].error, parts[1].error,
	   parts[2].error);
	ok(fetch1("gs", "u", 1) == -1 && fetch1("gs", "t", 0) == 100, "only the unsubscribed offset went");
	ok(group_delete_offsets(gc, KSTR_LIT("zzz"), parts, 1, od_cb, NULL) == KERR_GROUP_ID_NOT_FOUND,
	   "OffsetDelete of an unknown group");
}

static void test_expiry(void)
{
	int64_t now = st_now_ms();
	ok(group_expire_offsets(gc, now + 6LL * 86400000) == 0, "nothing expires before offsets.retention.minutes");
	int n = group_expire_offsets(gc, now + 8LL * 86400000);
	run_idle();
	/* simple (t-2) and the Empty consumer group ga (t-0, t-1) */
	ok(n == 3, "offsets of empty and simple groups expire (%d)", n);
	ok(fetch1("simple", "t", 2) == -1 && strcmp(state("simple", NULL), "Dead") == 0, "the simple group is gone");
	ok(strcmp(state("ga", NULL), "Dead") == 0, "the empty consumer group is gone");
	ok(fetch1("gs", "t", 0) == 100, "a stable group's subscribed offsets stay");
}

static bool append_done;
static void append_cb(struct log_append *a, int kerr)
{
	(void)a;
	(void)kerr;
	append_done = true;
}

static void count_member(void *ctx, const struct group_member_summary *m)
{
	int *n = ctx;
	if (m->assignment.len == 2)
		(*n)++;
}

static void test_snapshot_and_replay(void)
{
	for (int i = 0; i < 300; i++)
		if (commit1("snap", "", -1, "t", 3, i, "") != KERR_NONE)
			break;
	run_ms(100);
	run_idle();
	struct group_stats st;
	group_get_stats(gc, &st);
	ok(st.snapshots >= 1, "repeated commits trigger snapshots (%" PRId64 ")", st.snapshots);
	int32_t pi = group_partition_for("snap", 4, 4);
	struct partition *p = broker_find_partition(b, "__consumer_offsets", 18, pi);
	ok(p && log_start_offset(p->log) > 0, "the log start moved past superseded records (%" PRId64 ")",
	   p ? log_start_offset(p->log) : -1);
	ok(fetch1("snap", "t", 3) == 299, "the latest commit is current");
	ok(group_snapshot(gc, true) >= 1, "a forced snapshot starts");
	run_ms(50);
	run_idle();

	/* lag: 5 records in u-0, committed 2 -> 3; t-3 is empty, committed 299 -> 0 */
	struct partition *u0 = broker_find_partition(b, "u", 1, 0);
	static uint8_t buf[4096];
	static struct log_append a;
	size_t len = batchgen_build(buf, sizeof buf, 5, 8, st_now_ms(), 0);
	memset(&a, 0, sizeof a);
	a.data = buf;
	a.len = len;
	a.done = append_cb;
	append_done = false;
	ok(u0 && len && log_append(u0->log, &a) == KERR_NONE && run_until(&append_done, 5000),
	   "5 records in u-0");
	ok(commit1("snap", "", -1, "u", 0, 2, "") == KERR_NONE, "a commit on u-0");

	close_coordinator();
	open_coordinator();
	group_get_stats(gc, &st);
	ok(st.replayed_records < 300, "replay reads a bounded log (%" PRId64 " records)", st.replayed_records);
	ok(fetch1("snap", "t", 3) == 299 && fetch1("snap", "u", 0) == 2, "offsets replayed");
	ok(fetch1("gs", "t", 0) == 100 && fetch1("gs", "u", 1) == -1, "deleted offsets stay deleted");
	ok(fetch1("ga", "t", 0) == -1 && strcmp(state("ga", NULL), "Dead") == 0, "expired groups stay gone");
	int32_t gen;
	ok(strcmp(state("gs", &gen), "Stable") == 0 && gen == 1, "the static group is back Stable, generation 1");
	struct group_summary sum;
	int members = 0;
	ok(group_describe(gc, KSTR_LIT("gs"), &sum, count_member, &members) == KERR_NONE &&
	   sum.n_members == 2 && members == 2 && strcmp(sum.protocol_data, "range") == 0 &&
	   strcmp(sum.state, "Stable") == 0, "described with its two members and protocol");
	struct sres s;
	sync_req(&s, "gs", s2id, "i2", 1, NULL);
	ok(s.done && s.error == 0 && strcmp(s.assignment, "S2") == 0, "a loaded member syncs its assignment");
	ok(hb("gs", s2id, "i2", 1) == KERR_NONE, "and heartbeats on");
}

static int lag_rows;
static int64_t lag_sum;
static void lag_cb(void *ctx, const struct group_lag_row *r)
{
	(void)ctx;
	lag_rows++;
	lag_sum += r->lag;
}

static void test_lag_and_stop(void)
{
	lag_rows = 0;
	lag_sum = 0;
	int err = group_lag(gc, "snap", lag_cb, NULL);
	ok(err == KERR_NONE && lag_rows == 2 && lag_sum == 3, "lag rows of a group (%d rows, lag %" PRId64 ")",
	   lag_rows, lag_sum);
	ok(group_lag(gc, "nope", lag_cb, NULL) == KERR_GROUP_ID_NOT_FOUND, "lag of an unknown group");
	/* a parked join is answered at shutdown */
	struct jres j;
	join(&j, "gs", "", NULL);
	ok(!j.done, "a new member's join waits for the others");
	group_coordinator_stop(gc);
	ok(j.done && j.error == KERR_NOT_COORDINATOR, "shutdown answers it NOT_COORDINATOR");
	ok(hb("gs", s2id, "i2", 1) == KERR_NOT_COORDINATOR, "requests after shutdown: NOT_COORDINATOR");
}

int main(void)
{
	slog_set_level(SLOG_WARN);
	setup();
	test_partition_hash();
	test_join_sync();
	test_commits();
	test_session_timeout_and_leave();
	test_static();
	test_delete();
	test_expiry();
	test_snapshot_and_replay();
	test_lag_and_stop();
	teardown();
	return tap_done();
}
