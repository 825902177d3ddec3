/* t/pstate.c -- idempotent-producer state (strata/pstate.h): Kafka's sequence and epoch rules
 * (in order, duplicates of each of the last five batches, the sixth-oldest out of the cache,
 * gaps, epoch bump and fencing, unknown producers, int32 wrap), several batches in one request,
 * duplicates of in-flight appends answered after the original, rollback after a storage error,
 * and persistence through a real log: snapshot round trip, rebuild by scanning the log
 * (no snapshot, and snapshot plus tail), stale and damaged snapshots, expiry, the producer
 * bound. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strata/batch.h"
#include "strata/common.h"
#include "strata/kerr.h"
#include "strata/log.h"
#include "strata/pstate.h"
#include "strata/uring.h"
#include "batchgen.h"
#include "tap.h"

static struct uring ur;
static char root[PATH_MAX];
static int dir_seq;

/* ---- batches ------------------------------------------------------------------------------- */

struct buf {
	uint8_t *p;
	size_t len;
};

static struct buf mk(int64_t pid, int16_t epoch, int32_t seq, int n)
{
	struct batchgen_opts g = BATCHGEN_DEFAULTS;
	g.n_records = n;
	g.value_len = 8;
	g.base_ts_ms = st_now_ms();
	g.producer_id = pid;
	g.producer_epoch = epoch;
	g.base_sequence = seq;
	struct buf b;
	size_t cap = batchgen_bound(&g) + 16;
	b.p = malloc(cap);
	b.len = batchgen_build_opts(b.p, cap, &g);
	if (!b.len)
		BAIL_OUT("batchgen");
	return b;
}

/* Two batches back to back in one records field. */
static struct buf cat(struct buf a, struct buf b)
{
	struct buf r = { malloc(a.len + b.len), a.len + b.len };
	memcpy(r.p, a.p, a.len);
	memcpy(r.p + a.len, b.p, b.len);
	free(a.p);
	free(b.p);
	return r;
}

/* ---- the append path without a log: offsets assigned here ------------------------------------ */

static int64_t next_off;

/* Assigns offsets as the log would (in place), returns the base. */
static int64_t assign(struct buf *b)
{
	int64_t base = next_off;
	size_t pos = 0;
	while (pos < b->len) {
		struct batch_hdr h;
		batch_parse_hdr(b->p + pos, b->len - pos, &h);
		batch_set_base_offset(b->p + pos, next_off);
		next_off += h.last_offset_delta + 1;
		pos += (size_t)batch_size(&h);
	}
	return base;
}

struct res {
	int kerr;
	bool dup;
	int64_t base;
};

/* check -> (assign offsets) -> commit -> done(NONE). Frees b. */
static struct res put(struct pstate *ps, struct buf b)
{
	struct pstate_append pa;
	struct res r = { 0 };
	r.kerr = pstate_check(ps, b.p, b.len, st_now_ms(), &pa);
	r.dup = pa.duplicate;
	r.base = -1;
	if (r.kerr == KERR_NONE && pa.duplicate) {
		r.base = pa.dup_base_offset;
	} else if (r.kerr == KERR_NONE) {
		r.base = assign(&b);
		pstate_commit(ps, &pa, b.p, b.len, st_now_ms());
		pstate_append_done(ps, &pa, KERR_NONE);
	}
	free(b.p);
	return r;
}

static int32_t last_seq(struct pstate *ps, int64_t pid)
{
	const struct pstate_entry *e = pstate_find(ps, pid);
	if (!e || !e->n_batches)
		return -2;
	return e->batches[(e->first + e->n_batches - 1) % PSTATE_BATCHES].last_seq;
}

static void test_sequences(void)
{
	struct pstate *ps = pstate_create(NULL, NULL);
	next_off = 100;
	struct res r;

	/* seven batches of 3 records, in order */
	int64_t base[7];
	for (int i = 0; i < 7; i++) {
		r = put(ps, mk(1, 0, i * 3, 3));
		base[i] = r.base;
		if (r.kerr != KERR_NONE || r.dup)
			break;
	}
	is_int(r.kerr, KERR_NONE, "in order: seven batches accepted");
	is_int(base[6], 100 + 18, "in order: offsets as assigned");
	is_int(last_seq(ps, 1), 20, "in order: last sequence 20");

	/* every one of the last five (batches 2..6) is a duplicate answered with its offset */
	int good = 0;
	for (int i = 2; i < 7; i++) {
		r = put(ps, mk(1, 0, i * 3, 3));
		good += r.kerr == KERR_NONE && r.dup && r.base == base[i];
	}
	is_int(good, 5, "duplicate of each of the last five batches -> original base offset");
	is_int(next_off, 121, "duplicates are not written again");
	is_int(last_seq(ps, 1), 20, "duplicates do not move the state");

	/* the sixth-oldest (batch 1) is out of the cache: OUT_OF_ORDER_SEQUENCE_NUMBER as Kafka */
	r = put(ps, mk(1, 0, 3, 3));
	is_int(r.kerr, KERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "sixth-oldest retry -> OUT_OF_ORDER_SEQUENCE_NUMBER");
	/* same first sequence, different length: not a duplicate either */
	r = put(ps, mk(1, 0, 18, 2));
	is_int(r.kerr, KERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "same first seq, other last seq -> out of order");

	/* a gap */
	r = put(ps, mk(1, 0, 22, 1));
	is_int(r.kerr, KERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "gap (21 missing) -> OUT_OF_ORDER_SEQUENCE_NUMBER");
	r = put(ps, mk(1, 0, 21, 1));
	ok(r.kerr == KERR_NONE && !r.dup, "next in sequence after the refusals is accepted");

	/* epoch bump: must restart at 0 */
	r = put(ps, mk(1, 1, 5, 1));
	is_int(r.kerr, KERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "new epoch not starting at 0 -> out of order");
	r = put(ps, mk(1, 1, 0, 2));
	ok(r.kerr == KERR_NONE && !r.dup, "new epoch at sequence 0 accepted");
	const struct pstate_entry *e = pstate_find(ps, 1);
	ok(e && e->epoch == 1 && e->n_batches == 1, "epoch bump forgets the old epoch's batches");
	r = put(ps, mk(1, 0, 22, 1));
	is_int(r.kerr, KERR_INVALID_PRODUCER_EPOCH, "older epoch -> INVALID_PRODUCER_EPOCH");
	r = put(ps, mk(1, 0, 18, 3));
	is_int(r.kerr, KERR_INVALID_PRODUCER_EPOCH, "old epoch's cached batch is no duplicate any more");
	r = put(ps, mk(1, 1, 0, 2));
	ok(r.kerr == KERR_NONE && r.dup, "retry in the new epoch is a duplicate");

	/* unknown producer: any sequence (KIP-360) */
	r = put(ps, mk(2, 7, 42, 1));
	ok(r.kerr == KERR_NONE && !r.dup, "unknown producer starting at sequence 42 accepted");
	r = put(ps, mk(2, 7, 43, 1));
	ok(r.kerr == KERR_NONE && !r.dup, "and continues at 43");

	/* int32 wrap */
	ok(pstate_seq_add(INT32_MAX - 1, 3) == 1 && pstate_seq_add(5, 3) == 8, "sequence add wraps past INT32_MAX");
	ok(pstate_in_sequence(INT32_MAX, 0) && !pstate_in_sequence(INT32_MAX, 1) &&
	   pstate_in_sequence(4, 5) && !pstate_in_sequence(-1, 1), "in_sequence wraps to 0");
	r = put(ps, mk(3, 0, INT32_MAX - 2, 3));
	ok(r.kerr == KERR_NONE && last_seq(ps, 3) == INT32_MAX, "batch ending at INT32_MAX");
	r = put(ps, mk(3, 0, 0, 2));
	ok(r.kerr == KERR_NONE && !r.dup, "next batch wraps to sequence 0");
	r = put(ps, mk(3, 0, 2, 4));
	ok(r.kerr == KERR_NONE, "and continues");
	r = put(ps, mk(3, 0, INT32_MAX - 2, 3));
	ok(r.kerr == KERR_NONE && r.dup, "retry of the batch before the wrap is still a duplicate");
	r = put(ps, mk(4, 0, INT32_MAX - 1, 3));
	ok(r.kerr == KERR_NONE && last_seq(ps, 4) == 0, "a batch spanning the wrap (MAX-1, MAX, 0) ends at 0");
	r = put(ps, mk(4, 0, 1, 1));
	ok(r.kerr == KERR_NONE && !r.dup, "and the next starts at 1");

	/* several batches in one request, each checked in order */
	r = put(ps, cat(mk(5, 0, 0, 2), mk(5, 0, 2, 2)));
	ok(r.kerr == KERR_NONE && last_seq(ps, 5) == 3, "two in-order batches in one request");
	r = put(ps, cat(mk(5, 0, 4, 2), mk(5, 0, 7, 2)));
	ok(r.kerr == KERR_OUT_OF_ORDER_SEQUENCE_NUMBER && last_seq(ps, 5) == 3,
	   "a gap between batches of one request refuses the request, state unchanged");
	r = put(ps, cat(mk(5, 0, 0, 2), mk(5, 0, 2, 2)));
	ok(r.kerr == KERR_NONE && r.dup, "both batches retried together: duplicate");
	r = put(ps, cat(mk(5, 0, 2, 2), mk(5, 0, 4, 2)));
	is_int(r.kerr, KERR_INVALID_RECORD, "retried and new batches mixed -> INVALID_RECORD");
	r = put(ps, cat(mk(6, 0, 0, 1), mk(7, 0, 0, 1)));
	ok(r.kerr == KERR_NONE && pstate_find(ps, 6) && pstate_find(ps, 7), "two producers in one request");

	/* non-idempotent batches pass untouched */
	struct batchgen_opts g = BATCHGEN_DEFAULTS;
	uint8_t plain[512];
	size_t pl = batchgen_build_opts(plain, sizeof plain, &g);
	struct buf pb = { malloc(pl), pl };
	memcpy(pb.p, plain, pl);
	r = put(ps, pb);
	ok(r.kerr == KERR_NONE && !r.dup, "batch without a producer id passes");

	/* a producer batch without a sequence is the log's to refuse (INVALID_RECORD), untracked */
	struct buf ns = mk(12, 0, -1, 1);
	struct pstate_append pa0;
	ok(pstate_check(ps, ns.p, ns.len, st_now_ms(), &pa0) == KERR_NONE && !pa0.duplicate &&
	   pstate_find(ps, 12) == NULL, "batch with a producer id but no sequence: left to the log");
	pstate_cancel(ps, &pa0);
	free(ns.p);

	/* a corrupt duplicate is CORRUPT_MESSAGE first, as Kafka validates before dedup */
	struct buf c = mk(1, 1, 0, 2);
	c.p[c.len - 1] ^= 0x55;
	r = put(ps, c);
	is_int(r.kerr, KERR_CORRUPT_MESSAGE, "duplicate with a bad CRC -> CORRUPT_MESSAGE");

	struct pstate_stats st;
	pstate_get_stats(ps, &st);
	ok(st.duplicates >= 8 && st.out_of_order >= 5 && st.fenced == 2, "stats count verdicts");
	pstate_free(ps);
}

/* ---- in-flight appends, waiters, rollback (no log: the test plays the log) ------------------- */

struct pending {
	struct pstate_append pa;
	struct pstate_waiter w;
	struct buf b;
	int fired, fired_kerr;
};

static void on_fire(struct pstate_waiter *w, int kerr)
{
	struct pending *p = ST_CONTAINER_OF(w, struct pending, w);
	p->fired++;
	p->fired_kerr = kerr;
}

static int start(struct pstate *ps, struct pending *p, struct buf b)
{
	memset(p, 0, sizeof *p);
	p->b = b;
	int k = pstate_check(ps, b.p, b.len, st_now_ms(), &p->pa);
	if (k == KERR_NONE && !p->pa.duplicate) {
		assign(&p->b);
		pstate_commit(ps, &p->pa, p->b.p, p->b.len, st_now_ms());
	}
	return k;
}

static void test_inflight(void)
{
	struct pstate *ps = pstate_create(NULL, NULL);
	next_off = 0;
	struct pending a1, a2, d1, d2, a3;
	int64_t hw = 0;

	/* an established producer: seq 0..1 acknowledged */
	struct res r = put(ps, mk(9, 0, 0, 2));
	hw = next_off;
	ok(r.kerr == KERR_NONE, "setup");

	/* two pipelined appends in flight */
	is_int(start(ps, &a1, mk(9, 0, 2, 3)), KERR_NONE, "in flight: first append");
	is_int(start(ps, &a2, mk(9, 0, 5, 3)), KERR_NONE, "in flight: second, checked against the first");
	/* retry of the first while it is in flight: duplicate that has to wait */
	is_int(start(ps, &d1, mk(9, 0, 2, 3)), KERR_NONE, "retry of the in-flight append");
	ok(d1.pa.duplicate && d1.pa.dup_base_offset == 2, "is a duplicate with the original offset");
	ok(pstate_wait(ps, &d1.w, d1.pa.dup_last_offset, hw), "its answer waits for the original");
	d1.w.fire = on_fire;
	start(ps, &d2, mk(9, 0, 5, 3));
	d2.w.fire = on_fire;
	ok(d2.pa.duplicate && pstate_wait(ps, &d2.w, d2.pa.dup_last_offset, hw), "retry of the second waits too");
	/* the original is acknowledged: the first waiter fires, not the second */
	hw = a1.pa.last_offset_ + 1;
	pstate_append_done(ps, &a1.pa, KERR_NONE);
	ok(d1.fired == 1 && d1.fired_kerr == KERR_NONE && d2.fired == 0,
	   "original acknowledged -> its duplicate answered NONE, the other still waits");
	hw = a2.pa.last_offset_ + 1;
	pstate_append_done(ps, &a2.pa, KERR_NONE);
	ok(d2.fired == 1 && d2.fired_kerr == KERR_NONE, "second original acknowledged -> answered");
	struct pending d3;
	start(ps, &d3, mk(9, 0, 5, 3));
	ok(d3.pa.duplicate && !pstate_wait(ps, &d3.w, d3.pa.dup_last_offset, hw),
	   "a retry of an acknowledged batch is answered at once");
	free(a1.b.p); free(a2.b.p); free(d1.b.p); free(d2.b.p); free(d3.b.p);

	/* storage error: the log fails a1 and everything after it, and rewinds its offsets */
	int64_t rewind = next_off;
	is_int(start(ps, &a1, mk(9, 0, 8, 2)), KERR_NONE, "rollback: first append in flight");
	is_int(start(ps, &a2, mk(9, 0, 10, 2)), KERR_NONE, "rollback: second append in flight");
	is_int(start(ps, &a3, mk(10, 0, 0, 1)), KERR_NONE, "rollback: a new producer in flight");
	start(ps, &d1, mk(9, 0, 10, 2));
	d1.w.fire = on_fire;
	ok(d1.pa.duplicate && pstate_wait(ps, &d1.w, d1.pa.dup_last_offset, hw), "a retry of the second waits");
	pstate_append_done(ps, &a1.pa, KERR_KAFKA_STORAGE_ERROR);
	is_int(last_seq(ps, 9), 7, "first failure rolls back every later append (last seq 7 again)");
	ok(pstate_find(ps, 10) == NULL, "the new producer is gone again");
	ok(d1.fired == 0, "the waiter for the second is not answered yet");
	pstate_append_done(ps, &a2.pa, KERR_KAFKA_STORAGE_ERROR);
	ok(d1.fired == 1 && d1.fired_kerr == KERR_KAFKA_STORAGE_ERROR, "its duplicate gets KAFKA_STORAGE_ERROR");
	pstate_append_done(ps, &a3.pa, KERR_KAFKA_STORAGE_ERROR);
	free(a1.b.p); free(a2.b.p); free(a3.b.p); free(d1.b.p);
	next_off = rewind;
	r = put(ps, mk(9, 0, 8, 2));
	ok(r.kerr == KERR_NONE && !r.dup && r.base == rewind, "the client's retry after the failure is written");
	r = put(ps, mk(10, 0, 0, 1));
	ok(r.kerr == KERR_NONE && !r.dup, "and so is the other producer's");

	/* cancel: log_append refused after the check */
	struct pstate_append pa;
	struct buf b = mk(11, 0, 0, 1);
	is_int(pstate_check(ps, b.p, b.len, st_now_ms(), &pa), KERR_NONE, "cancel: check passes");
	pstate_cancel(ps, &pa);
	ok(pstate_find(ps, 11) == NULL, "cancel leaves no trace of the producer");
	free(b.p);
	pstate_free(ps);
}

/* ---- expiry and the bound ---------------------------------------------------------------------- */

static void test_expiry_bound(void)
{
	struct pstate_config cfg;
	pstate_config_defaults(&cfg);
	cfg.max_producers = 3;
	struct pstate *ps = pstate_create(NULL, &cfg);
	for (int64_t pid = 1; pid <= 5; pid++)
		put(ps, mk(pid, 0, 0, 1));
	struct pstate_stats st;
	pstate_get_stats(ps, &st);
	ok(st.producers == 3 && st.evicted == 2, "max_producers: least recently used evicted");
	ok(!pstate_find(ps, 1) && !pstate_find(ps, 2) && pstate_find(ps, 5), "the oldest two went");
	struct res r = put(ps, mk(1, 0, 1, 1));
	ok(r.kerr == KERR_NONE, "an evicted producer is accepted as unknown");

	is_int(pstate_expire(ps, st_now_ms()), 0, "nothing idle yet");
	is_int(pstate_expire(ps, st_now_ms() + PSTATE_DEFAULT_EXPIRATION_MS + 1000), 3,
	       "idle longer than producer.id.expiration.ms -> expired");
	pstate_free(ps);

	/* lazily, on the append path */
	cfg.max_producers = 100;
	cfg.expiration_ms = 1;
	ps = pstate_create(NULL, &cfg);
	put(ps, mk(1, 0, 0, 1));
	usleep(5000);
	struct pstate_append pa;
	struct buf b = mk(2, 0, 0, 1);
	pstate_check(ps, b.p, b.len, st_now_ms(), &pa);
	pstate_cancel(ps, &pa);
	ok(!pstate_find(ps, 1), "expiry runs lazily on the append path");
	free(b.p);
	pstate_free(ps);
}

/* ---- with a real log: produce path, snapshots, rebuild ------------------------------------------ */

static void join(char *buf, size_t len, const char *dir, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= len)
		BAIL_OUT("path too long");
}

static void rm_rf(const char *path)
{
	DIR *d = opendir(path);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			char p[PATH_MAX];
			join(p, sizeof p, path, de->d_name);
			struct stat st;
			if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
				rm_rf(p);
			else
				unlink(p);
		}
		closedir(d);
	}
	rmdir(path);
}

static int count_snapshots(const char *dir, int64_t *newest)
{
	DIR *d = opendir(dir);
	int n = 0;
	*newest = -1;
	if (!d)
		return -1;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l == 29 && strcmp(de->d_name + 20, ".snapshot") == 0) {
			n++;
			int64_t off = strtoll(de->d_name, NULL, 10);
			if (off > *newest)
				*newest = off;
		}
	}
	closedir(d);
	return n;
}

struct lp {                          /* one produce through pstate + log, like kafka_data.c */
	struct log_append a;
	struct pstate_append pa;
	struct pstate *ps;
	struct buf b;
	int done, kerr;
};

static void lp_done(struct log_append *a, int kerr)
{
	struct lp *p = ST_CONTAINER_OF(a, struct lp, a);
	pstate_append_done(p->ps, &p->pa, kerr);
	p->done = 1;
	p->kerr = kerr;
}

static void run_until(struct lp **ps, int n)
{
	for (int tries = 0; tries < 100000; tries++) {
		int pending = 0;
		for (int i = 0; i < n; i++)
			pending += !ps[i]->done;
		if (!pending)
			return;
		if (uring_run_once(&ur, 1000) < 0)
			BAIL_OUT("uring_run_once");
	}
	BAIL_OUT("appends never completed");
}

/* Returns the kerr; *base the answered offset. Frees b. */
static int lput(struct log *l, struct pstate *ps, struct buf b, int64_t *base, bool *dup)
{
	struct lp *p = calloc(1, sizeof *p);
	p->ps = ps;
	p->b = b;
	int k = pstate_check(ps, b.p, b.len, st_now_ms(), &p->pa);
	*dup = k == KERR_NONE && p->pa.duplicate;
	*base = -1;
	if (k == KERR_NONE && p->pa.duplicate) {
		*base = p->pa.dup_base_offset;
	} else if (k == KERR_NONE) {
		p->a.data = b.p;
		p->a.len = b.len;
		p->a.done = lp_done;
		k = log_append(l, &p->a);
		if (k != KERR_NONE) {
			pstate_cancel(ps, &p->pa);
		} else {
			pstate_commit(ps, &p->pa, b.p, b.len, st_now_ms());
			run_until(&p, 1);
			k = p->kerr;
			*base = p->a.base_offset;
		}
	}
	free(b.p);
	free(p);
	return k;
}

static struct log_config lcfg(void)
{
	struct log_config c;
	log_config_defaults(&c);
	c.timestamp_after_max_ms = INT64_MAX;
	return c;
}

static void test_with_log(void)
{
	char dir[PATH_MAX], name0[32];
	snprintf(name0, sizeof name0, "p%d", dir_seq++);
	join(dir, sizeof dir, root, name0);
	struct log_config lc = lcfg();
	struct log *l;
	if (log_open(&ur, dir, &lc, NULL, &l) < 0)
		BAIL_OUT("log_open");
	struct pstate_config cfg;
	pstate_config_defaults(&cfg);
	cfg.snapshot_interval_bytes = 0;
	struct pstate *ps = pstate_create(dir, &cfg);
	ok(ps && pstate_recover(ps, l, st_now_ms()) == 0, "empty partition: recover");

	int64_t base, b0 = -1;
	bool dup;
	int bad = 0;
	for (int i = 0; i < 10; i++) {
		int k = lput(l, ps, mk(100, 0, i * 2, 2), &base, &dup);
		bad += k != KERR_NONE || dup;
		if (i == 8)
			b0 = base;
	}
	lput(l, ps, mk(200, 3, 50, 1), &base, &dup);
	is_int(bad, 0, "log: ten idempotent batches appended");
	ok(lput(l, ps, mk(100, 0, 16, 2), &base, &dup) == KERR_NONE && dup && base == b0,
	   "log: a retry is answered with its original offset");
	int64_t leo = log_end_offset(l);
	is_int(leo, 21, "log: the retry was not written");

	/* storage error through the real log: state rolled back, the retry then succeeds */
	log_test_fail_next_writes(l, 1, -EIO);
	int k = lput(l, ps, mk(100, 0, 20, 2), &base, &dup);
	is_int(k, KERR_KAFKA_STORAGE_ERROR, "log: injected write error -> KAFKA_STORAGE_ERROR");
	is_int(last_seq(ps, 100), 19, "log: producer state rolled back");
	k = lput(l, ps, mk(100, 0, 20, 2), &base, &dup);
	ok(k == KERR_NONE && !dup && base == leo, "log: the client's retry is written at the rewound offset");

	/* snapshot at close, reload */
	leo = log_end_offset(l);
	is_int(pstate_snapshot(ps, leo, true), 0, "snapshot written");
	int64_t newest;
	ok(count_snapshots(dir, &newest) == 1 && newest == leo, "one <offset>.snapshot at the log end");
	pstate_free(ps);
	log_close(l);

	if (log_open(&ur, dir, &lc, NULL, &l) < 0)
		BAIL_OUT("log_open");
	ps = pstate_create(dir, &cfg);
	pstate_recover(ps, l, st_now_ms());
	struct pstate_stats st;
	pstate_get_stats(ps, &st);
	ok(st.snapshot_loaded_offset == leo && st.batches_replayed == 0, "snapshot loaded, nothing replayed");
	ok(last_seq(ps, 100) == 21 && last_seq(ps, 200) == 50, "snapshot round trip: sequences");
	const struct pstate_entry *e = pstate_find(ps, 100);
	ok(e && e->n_batches == 5 && e->epoch == 0 && pstate_find(ps, 200)->epoch == 3,
	   "snapshot round trip: all five batches and the epochs");
	ok(lput(l, ps, mk(100, 0, 16, 2), &base, &dup) == KERR_NONE && dup && base == b0,
	   "after restart: a retry of the fourth-newest batch is still a duplicate");

	/* more appends, then a "crash": no snapshot at close -> snapshot + scan of the tail */
	lput(l, ps, mk(100, 0, 22, 2), &base, &dup);
	int64_t tail_base = base;
	lput(l, ps, mk(300, 0, 0, 4), &base, &dup);
	pstate_free(ps);
	log_close(l);
	if (log_open(&ur, dir, &lc, NULL, &l) < 0)
		BAIL_OUT("log_open");
	ps = pstate_create(dir, &cfg);
	pstate_recover(ps, l, st_now_ms());
	pstate_get_stats(ps, &st);
	ok(st.snapshot_loaded_offset == leo && st.batches_replayed == 2, "rebuild: snapshot plus the two batches after it");
	ok(lput(l, ps, mk(100, 0, 22, 2), &base, &dup) == KERR_NONE && dup && base == tail_base,
	   "rebuild: retry of a batch after the snapshot is a duplicate");
	ok(lput(l, ps, mk(300, 0, 0, 4), &base, &dup) == KERR_NONE && dup, "rebuild: new producer from the tail known");
	ok(lput(l, ps, mk(300, 0, 5, 1), &base, &dup) == KERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
	   "rebuild: and its gaps refused");

	/* damaged snapshot -> ignored, full scan */
	char sp[PATH_MAX], name[64];
	snprintf(name, sizeof name, "%020lld.snapshot", (long long)leo);
	join(sp, sizeof sp, dir, name);
	int fd = open(sp, O_WRONLY);
	ok(fd >= 0 && pwrite(fd, "X", 1, 40) == 1, "damage the snapshot");
	close(fd);
	pstate_free(ps);
	log_close(l);
	if (log_open(&ur, dir, &lc, NULL, &l) < 0)
		BAIL_OUT("log_open");
	ps = pstate_create(dir, &cfg);
	pstate_recover(ps, l, st_now_ms());
	pstate_get_stats(ps, &st);
	ok(st.snapshot_loaded_offset == -1 && st.batches_replayed == 14, "damaged snapshot ignored: whole log replayed");
	ok(access(sp, F_OK) != 0, "and removed");
	ok(lput(l, ps, mk(100, 0, 16, 2), &base, &dup) == KERR_NONE && dup && base == b0,
	   "rebuilt from the log alone: retry is a duplicate");
	ok(last_seq(ps, 100) == 23 && last_seq(ps, 300) == 3 && last_seq(ps, 200) == 50, "rebuilt: every producer");

	/* a snapshot beyond the log end (the log lost its tail) is stale and removed */
	leo = log_end_offset(l);
	pstate_snapshot(ps, leo + 1000, true);
	pstate_free(ps);
	log_close(l);
	if (log_open(&ur, dir, &lc, NULL, &l) < 0)
		BAIL_OUT("log_open");
	ps = pstate_create(dir, &cfg);
	pstate_recover(ps, l, st_now_ms());
	pstate_get_stats(ps, &st);
	ok(st.snapshot_loaded_offset == -1 && count_snapshots(dir, &newest) == 0,
	   "snapshot beyond the log end: not used, removed");

	/* periodic snapshots keep two files */
	cfg.snapshot_interval_bytes = 1;
	pstate_set_config(ps, &cfg);
	for (int i = 0; i < 4; i++)
		lput(l, ps, mk(400, 0, i, 1), &base, &dup);
	int n = count_snapshots(dir, &newest);
	ok(n == 2 && newest == log_end_offset(l), "periodic snapshots: the newest two kept");
	pstate_free(ps);
	log_close(l);
	if (log_open(&ur, dir, &lc, NULL, &l) < 0)
		BAIL_OUT("log_open");
	ps = pstate_create(dir, &cfg);
	pstate_recover(ps, l, st_now_ms());
	ok(lput(l, ps, mk(400, 0, 3, 1), &base, &dup) == KERR_NONE && dup, "periodic snapshot usable");

	/* a snapshot taken while an append is in flight leaves it out */
	struct lp *f = calloc(1, sizeof *f);
	f->ps = ps;
	f->b = mk(500, 0, 0, 2);
	int64_t before = log_end_offset(l);
	ok(pstate_check(ps, f->b.p, f->b.len, st_now_ms(), &f->pa) == KERR_NONE, "in flight: check");
	f->a.data = f->b.p;
	f->a.len = f->b.len;
	f->a.done = lp_done;
	ok(log_append(l, &f->a) == KERR_NONE, "in flight: appended");
	pstate_commit(ps, &f->pa, f->b.p, f->b.len, st_now_ms());
	ok(pstate_snapshot(ps, log_end_offset(l), true) == 0 && count_snapshots(dir, &newest) >= 1 &&
	   newest == before, "snapshot during an append: taken at the append's base offset");
	run_until(&f, 1);
	free(f->b.p);
	free(f);
	pstate_free(ps);
	log_close(l);
	if (log_open(&ur, dir, &lc, NULL, &l) < 0)
		BAIL_OUT("log_open");
	ps = pstate_create(dir, &cfg);
	pstate_recover(ps, l, st_now_ms());
	pstate_get_stats(ps, &st);
	e = pstate_find(ps, 500);
	ok(st.snapshot_loaded_offset == before && st.batches_replayed == 1 && e && e->n_batches == 1,
	   "the in-flight append came back from the log, once");
	pstate_free(ps);
	log_close(l);
}

int main(void)
{
	snprintf(root, sizeof root, "%s/strata-pstate-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(root))
		BAIL_OUT("mkdtemp");
	if (uring_init(&ur, 256) < 0)
		BAIL_OUT("uring_init");
	test_sequences();
	test_inflight();
	test_expiry_bound();
	test_with_log();
	uring_fini(&ur);
	rm_rf(root);
	return tap_done();
}
