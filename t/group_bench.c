/* group_bench.c -- benchmark of the consumer group coordinator (not a test): a real broker in a
 * temp dir (TMPDIR, fsync on), driven through group.h on one reactor, no network.
 *
 *   rebalance: a Stable group of 9 members; a 10th joins; the 9 rejoin at once (as if their
 *     next heartbeat had told them), the leader assigns, everyone syncs. Time from the 10th
 *     JoinGroup to the last SyncGroup answer (the group metadata record fsynced), then the
 *     member leaves and the group settles at 9 again; repeated.
 *   commits: OffsetCommit throughput with fsync (every commit acknowledged only once durable),
 *     with N commits outstanding (group commit of the log batches their fsyncs), of 1 and of
 *     100 partitions per request.
 *
 *   t/group-bench [rounds]     prints one line per measurement */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strata/broker.h"
#include "strata/common.h"
#include "strata/config.h"
#include "strata/group.h"
#include "strata/kerr.h"
#include "strata/slog.h"

#define MEMBERS 10

static struct uring ur;
static struct cfg conf;
static struct broker *b;
static struct group_coordinator *gc;

static void die(const char *what)
{
	fprintf(stderr, "group-bench: %s\n", what);
	exit(1);
}

struct jr {
	bool done;
	int16_t err;
	int32_t gen;
	bool leader_view;
	char id[128];
	char leader[128];
};

static void join_cb(void *ctx, const struct group_join_result *r)
{
	struct jr *j = ctx;
	j->done = true;
	j->err = r->error;
	j->gen = r->generation;
	j->leader_view = r->n_members > 0;
	snprintf(j->id, sizeof j->id, "%s", r->member_id ? r->member_id : "");
	snprintf(j->leader, sizeof j->leader, "%s", r->leader ? r->leader : "");
}

static int syncs_done;
static void sync_cb(void *ctx, const struct group_sync_result *r)
{
	(void)ctx;
	if (r->error != KERR_NONE) {
		fprintf(stderr, "group-bench: sync error %d\n", r->error);
		exit(1);
	}
	syncs_done++;
}

static uint8_t meta[64];
static int32_t meta_len;

static void join(struct jr *j, const char *member)
{
	memset(j, 0, sizeof *j);
	struct group_protocol p = { KSTR_LIT("range"), { meta, meta_len } };
	struct group_join_req r = {
		.group_id = KSTR_LIT("bench"), .member_id = kstr_c(member), .instance_id = KSTR_NULL,
		.client_id = KSTR_LIT("bench"), .client_host = KSTR_LIT("/127.0.0.1"),
		.protocol_type = KSTR_LIT("consumer"), .session_timeout_ms = 30000,
		.rebalance_timeout_ms = 30000, .protocols = &p, .n_protocols = 1, .done = join_cb, .ctx = j,
	};
	group_join(gc, &r);
}

static void run_until_count(int *n, int want)
{
	int64_t end = st_mono_ms() + 30000;
	while (*n < want && st_mono_ms() < end)
		uring_run_once(&ur, 1);
	if (*n < want)
		die("timed out");
}

static void run_until(const bool *f)
{
	int64_t end = st_mono_ms() + 30000;
	while (!*f && st_mono_ms() < end)
		uring_run_once(&ur, 1);
	if (!*f)
		die("timed out");
}

static char ids[MEMBERS][128];

/* Everyone in ids[0..n) joins (a new one has an empty id), then all sync. */
static void rebalance(int n, struct jr *js)
{
	/* the newcomer (last, empty id) first: its join starts the rebalance the others follow */
	for (int i = n - 1; i >= 0; i--)
		join(&js[i], ids[i]);
	for (int i = 0; i < n; i++)
		run_until(&js[i].done);
	int leader = -1;
	for (int i = 0; i < n; i++) {
		if (js[i].err != KERR_NONE) {
			fprintf(stderr, "group-bench: join error %d (member %d)\n", js[i].err, i);
			exit(1);
		}
		snprintf(ids[i], sizeof ids[i], "%s", js[i].id);
		if (js[i].leader_view)
			leader = i;
	}
	struct group_assignment as[MEMBERS];
	for (int i = 0; i < n; i++) {
		as[i].member_id = kstr_c(ids[i]);
		as[i].assignment = (struct kbytes){ (const uint8_t *)"assignment", 10 };
	}
	syncs_done = 0;
	for (int i = 0; i <= n; i++) {
		int m = i < n ? i : leader;   /* followers first, the leader last */
		if (i < n && i == leader)
			continue;
		struct group_sync_req r = {
			.group_id = KSTR_LIT("bench"), .member_id = kstr_c(ids[m]), .instance_id = KSTR_NULL,
			.protocol_type = KSTR_NULL, .protocol_name = KSTR_NULL, .generation = js[m].gen,
			.assignments = m == leader ? as : NULL, .n_assignments = m == leader ? n : 0,
			.done = sync_cb, .ctx = NULL,
		};
		group_sync(gc, &r);
	}
	run_until_count(&syncs_done, n);
}

static int cmp_i64(const void *pa, const void *pb)
{
	int64_t x = *(const int64_t *)pa, y = *(const int64_t *)pb;
	return x < y ? -1 : x > y;
}

static void bench_rebalance(int rounds)
{
	struct jr js[MEMBERS];
	for (int i = 0; i < MEMBERS - 1; i++)
		ids[i][0] = 0;
	rebalance(MEMBERS - 1, js);
	int64_t *lat = calloc((size_t)rounds, sizeof *lat);
	if (!lat)
		die("oom");
	for (int r = 0; r < rounds; r++) {
		ids[MEMBERS - 1][0] = 0;
		int64_t t0 = st_mono_ns();
		rebalance(MEMBERS, js);
		lat[r] = st_mono_ns() - t0;
		int32_t gen;
		if (strcmp(group_state_of(gc, "bench", &gen), "Stable") != 0)
			die("not stable");
		struct group_leave_member lm = { .member_id = kstr_c(ids[MEMBERS - 1]), .instance_id = KSTR_NULL };
		group_leave(gc, KSTR_LIT("bench"), &lm, 1);
		rebalance(MEMBERS - 1, js);
	}
	qsort(lat, (size_t)rounds, sizeof *lat, cmp_i64);
	printf("rebalance: %d members reach Stable after one joins: median %.3f ms, p99 %.3f ms, "
	       "min %.3f ms (%d rounds; includes the fsync of the group record)\n", MEMBERS,
	       lat[rounds / 2] / 1e6, lat[(rounds * 99) / 100] / 1e6, lat[0] / 1e6, rounds);
	free(lat);
}

struct committer {
	struct group_commit_req req;
	struct group_commit_part *parts;
	int64_t next;
	int64_t *done_total;
	bool stop;
};

static void commit_done(void *ctx);

static void commit_send(struct committer *c)
{
	for (int32_t i = 0; i < c->req.n_parts; i++) {
		c->parts[i].offset = c->next;
		c->parts[i].error = KERR_NONE;
	}
	c->next++;
	group_commit_offsets(gc, &c->req);
}

static void commit_done(void *ctx)
{
	struct committer *c = ctx;
	for (int32_t i = 0; i < c->req.n_parts; i++)
		if (c->parts[i].error != KERR_NONE)
			die("commit failed");
	(*c->done_total)++;
	if (!c->stop)
		commit_send(c);
}

static void bench_commits(int outstanding, int partitions, int seconds)
{
	char gname[32];
	static int run;
	snprintf(gname, sizeof gname, "commits-%d", run++);
	struct committer *cs = calloc((size_t)outstanding, sizeof *cs);
	int64_t total = 0;
	for (int i = 0; i < outstanding; i++) {
		cs[i].parts = calloc((size_t)partitions, sizeof *cs[i].parts);
		for (int p = 0; p < partitions; p++) {
			cs[i].parts[p].topic = KSTR_LIT("bench-t");
			cs[i].parts[p].partition = (i * partitions + p) % 100;
			cs[i].parts[p].leader_epoch = -1;
			cs[i].parts[p].metadata = KSTR_LIT("");
			cs[i].parts[p].commit_ts_ms = -1;
		}
		cs[i].req = (struct group_commit_req){ .group_id = kstr_c(gname), .member_id = KSTR_LIT(""),
						       .instance_id = KSTR_NULL, .generation = -1,
						       .retention_ms = -1, .parts = cs[i].parts,
						       .n_parts = partitions, .done = commit_done, .ctx = &cs[i] };
		cs[i].done_total = &total;
	}
	int64_t t0 = st_mono_ns(), end = t0 + (int64_t)seconds * 1000000000;
	for (int i = 0; i < outstanding; i++)
		commit_send(&cs[i]);
	while (st_mono_ns() < end)
		uring_run_once(&ur, 1);
	for (int i = 0; i < outstanding; i++)
		cs[i].stop = true;
	int64_t counted = total, t1 = st_mono_ns();
	int64_t drain_end = st_mono_ms() + 30000;
	while (!group_coordinator_idle(gc) && st_mono_ms() < drain_end)
		uring_run_once(&ur, 1);
	double secs = (double)(t1 - t0) / 1e9;
	struct group_stats st;
	group_get_stats(gc, &st);
	printf("commits: %4d outstanding x %3d partitions: %8.0f commits/s (%9.0f partition offsets/s), "
	       "fsync on; snapshots so far %" PRId64 "\n", outstanding, partitions, counted / secs,
	       counted * partitions / secs, st.snapshots);
	for (int i = 0; i < outstanding; i++)
		free(cs[i].parts);
	free(cs);
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 200;
	if (rounds < 1)
		rounds = 1;
	slog_set_level(getenv("BENCH_DEBUG") ? SLOG_DEBUG : SLOG_WARN);
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/strata-group-bench-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir) || uring_init(&ur, 512) < 0 || cfg_init(&conf, &cfg_broker_schema) < 0)
		die("setup");
	char why[512];
	if (cfg_set(&conf, "log.dirs", dir, why, sizeof why) < 0 ||
	    cfg_set(&conf, "group.initial.rebalance.delay.ms", "0", why, sizeof why) < 0)
		die(why);
	if (broker_open(&b, &ur, &conf, why, sizeof why) < 0 ||
	    broker_create_topic(b, "bench-t", 7, 100, NULL, false, NULL, why, sizeof why) != KERR_NONE ||
	    group_coordinator_open(&gc, &ur, b, &conf, why, sizeof why) < 0)
		die(why);
	struct kw w;
	kw_init(&w, 64);
	kw_i16(&w, 0);
	kw_array_len(&w, 1);
	kw_string(&w, KSTR_LIT("bench-t"));
	kw_bytes(&w, KBYTES_NULL);
	memcpy(meta, w.p, w.len);
	meta_len = (int32_t)w.len;
	kw_free(&w);
	printf("storage: %s\n", dir);
	bench_rebalance(rounds);
	bench_commits(1, 1, 3);
	bench_commits(16, 1, 3);
	bench_commits(256, 1, 3);
	bench_commits(16, 100, 3);
	group_coordinator_stop(gc);
	while (!group_coordinator_idle(gc))
		uring_run_once(&ur, 1);
	group_coordinator_free(gc);
	broker_close(b);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	cfg_free(&conf);
	uring_fini(&ur);
	return 0;
}
