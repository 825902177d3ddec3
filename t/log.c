/* t/log.c -- the partition log through its public API: appends with group commit (acks in
 * offset order, high watermark only after the fsync), reads at every offset (index and scan
 * boundaries), rolls by size/time/full index/explicit, timestamp lookups (record-exact, also
 * inside compressed batches), max timestamp, retention by time and size, DeleteRecords,
 * slices outliving deleted segments, storage errors (injected and a real RLIMIT_FSIZE one,
 * also cutting a vectored write in the middle), relaxed flushing (a roll forces a round),
 * appends coalesced into bounded vectored writes, the bound on closed segments' open fds and
 * mappings (slices keep theirs), clean close/reopen, destroy, opening an empty log at a given
 * offset (log_open_at, also on another thread) and forgetting one (log_forget). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strata/batch.h"
#include "strata/common.h"
#include "strata/compress.h"
#include "strata/kerr.h"
#include "strata/log.h"
#include "strata/uring.h"
#include "batchgen.h"
#include "logtest.h"
#include "tap.h"

static struct uring ur;
static char root[PATH_MAX];
static int dir_seq;

/* ---- hooks ------------------------------------------------------------------------------------ */

struct hookctx {
	int hw_calls;
	int closed_calls;
	struct log_segment_info closed[64];
	bool deletable;
	int deletable_asked;
};
static struct hookctx hk;

static void on_hw(void *ctx, struct log *l) { ((struct hookctx *)ctx)->hw_calls++; }
static void on_closed(void *ctx, struct log *l, const struct log_segment_info *info)
{
	struct hookctx *h = ctx;
	if (h->closed_calls < (int)ST_ARRAY_LEN(h->closed))
		h->closed[h->closed_calls] = *info;
	h->closed_calls++;
}
static bool on_deletable(void *ctx, struct log *l, int64_t base)
{
	struct hookctx *h = ctx;
	h->deletable_asked++;
	return h->deletable;
}
static const struct log_hooks hooks = { .ctx = &hk, .segment_closed = on_closed, .hw_advanced = on_hw,
					.segment_deletable = on_deletable };

/* ---- appends ---------------------------------------------------------------------------------- */

struct app {
	struct log_append a;
	uint8_t *data;
	size_t len;
	int done, kerr, order;
	int64_t hw_at_done;
	int64_t fsyncs_at_done;
	struct log *l;
};
static int done_seq;

static void app_done(struct log_append *a, int kerr)
{
	struct app *p = ST_CONTAINER_OF(a, struct app, a);
	struct log_stats st;
	p->done = 1;
	p->kerr = kerr;
	p->order = done_seq++;
	p->hw_at_done = log_high_watermark(p->l);
	log_get_stats(p->l, &st);
	p->fsyncs_at_done = st.fsync_rounds;
}

static struct app *app_new(const struct batchgen_opts *g)
{
	struct app *p = calloc(1, sizeof *p);
	size_t cap = batchgen_bound(g) + 64;
	p->data = malloc(cap);
	p->len = batchgen_build_opts(p->data, cap, g);
	if (!p->len)
		BAIL_OUT("batchgen failed");
	return p;
}

static void app_free(struct app *p)
{
	free(p->data);
	free(p);
}

static int app_submit(struct log *l, struct app *p)
{
	p->l = l;
	p->a.data = p->data;
	p->a.len = p->len;
	p->a.done = app_done;
	return log_append(l, &p->a);
}

static void wait_all(struct app **ps, int n)
{
	for (int tries = 0; tries < 100000; tries++) {
		int pending = 0;
		for (int i = 0; i < n; i++)
			pending += ps[i] && !ps[i]->done;
		if (!pending)
			return;
		if (uring_run_once(&ur, 1000) < 0)
			BAIL_OUT("uring_run_once failed");
	}
	BAIL_OUT("appends never completed");
}

/* Appends one batch and waits for it; returns its kerr (or log_append's error). */
static int append_wait(struct log *l, const struct batchgen_opts *g, int64_t *base)
{
	struct app *p = app_new(g);
	int rc = app_submit(l, p);
	if (rc == KERR_NONE) {
		wait_all(&p, 1);
		rc = p->kerr;
		if (base)
			*base = p->a.base_offset;
	}
	app_free(p);
	return rc;
}

static struct batchgen_opts gen(int n, size_t vlen, int64_t ts)
{
	struct batchgen_opts g = BATCHGEN_DEFAULTS;
	g.n_records = n;
	g.value_len = vlen;
	g.base_ts_ms = ts;
	g.with_keys = 1;
	return g;
}

/* ---- dirs -------------------------------------------------------------------------------------- */

static void join(char *buf, size_t len, const char *dir, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= len)
		BAIL_OUT("path too long");
}

static void new_dir(char *buf, size_t len)
{
	char name[32];
	snprintf(name, sizeof name, "p%d", dir_seq++);
	join(buf, len, root, name);
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

static int64_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : -1;
}

static struct log_config small_cfg(void)
{
	struct log_config c;
	log_config_defaults(&c);
	c.timestamp_after_max_ms = INT64_MAX; /* tests pick their own timestamps */
	return c;
}

static struct log *open_log(const char *dir, const struct log_config *c)
{
	struct log *l = NULL;
	int rc = log_open(&ur, dir, c, &hooks, &l);
	if (rc != 0)
		BAIL_OUT("log_open %s: %s", dir, strerror(-rc));
	return l;
}

/* ---- slices ------------------------------------------------------------------------------------ */

/* Checks that a slice is whole, CRC-valid batches with consecutive offsets. */
static int slice_ok(const struct log_slice *s, int64_t *batches)
{
	if (s->len == 0)
		return 1;
	uint8_t *b = malloc((size_t)s->len);
	if (pread(s->fd, b, (size_t)s->len, s->file_pos) != s->len) {
		free(b);
		return 0;
	}
	int64_t pos = 0, expect = s->first_offset, n = 0;
	int good = 1;
	while (pos < s->len) {
		struct batch_hdr h;
		if (batch_parse_hdr(b + pos, (size_t)(s->len - pos), &h) < 0 || pos + batch_size(&h) > s->len ||
		    !batch_crc_ok(b + pos, (size_t)batch_size(&h)) || h.base_offset != expect) {
			good = 0;
			break;
		}
		expect = batch_last_offset(&h) + 1;
		pos += batch_size(&h);
		n++;
	}
	if (good && expect != s->next_offset)
		good = 0;
	free(b);
	if (batches)
		*batches = n;
	return good;
}

/* Reads the whole log from its start and checks every slice; returns the records read. */
static int64_t read_all(struct log *l, int64_t max_bytes, int *bad)
{
	int64_t off = log_start_offset(l), hw = log_high_watermark(l);
	int guard = 0;
	while (off < hw && guard++ < 1000000) {
		struct log_slice s;
		int rc = log_read(l, off, hw, max_bytes, true, &s);
		if (rc != KERR_NONE || s.len == 0 || !slice_ok(&s, NULL) || s.first_offset > off ||
		    s.next_offset <= off) {
			(*bad)++;
			log_slice_release(&s);
			return off;
		}
		off = s.next_offset;
		log_slice_release(&s);
	}
	return off;
}

/* ---- tests ------------------------------------------------------------------------------------- */

static void test_basic(void)
{
	char dir[PATH_MAX], p[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = small_cfg();
	memset(&hk, 0, sizeof hk);
	struct log *l = open_log(dir, &c);
	is_int(log_end_offset(l), 0, "new log: end offset 0");
	is_int(log_high_watermark(l), 0, "new log: high watermark 0");
	is_int(log_start_offset(l), 0, "new log: start offset 0");
	is_int(log_segment_count(l), 1, "new log: one segment");
	join(p, sizeof p, dir, "00000000000000000000.log");
	ok(file_size(p) == 0, "00000000000000000000.log exists");
	join(p, sizeof p, dir, "00000000000000000000.index");
	ok(file_size(p) == 0, ".index exists");
	join(p, sizeof p, dir, "00000000000000000000.timeindex");
	ok(file_size(p) == 0, ".timeindex exists");

	struct batchgen_opts g = gen(5, 50, 1000);
	struct app *a = app_new(&g);
	is_int(app_submit(l, a), KERR_NONE, "append accepted");
	is_int(a->a.base_offset, 0, "base offset 0");
	is_int(a->a.last_offset, 4, "last offset 4");
	is_int(a->a.record_count, 5, "record count");
	is_int(a->a.log_append_time_ms, -1, "CreateTime: no log append time");
	is_int(log_end_offset(l), 5, "end offset moved at append");
	is_int(log_high_watermark(l), 0, "high watermark not moved before the fsync");
	struct log_slice s;
	is_int(log_read(l, 0, INT64_MAX, 1 << 20, true, &s), KERR_NONE, "read at hw: no error");
	is_int(s.len, 0, "read at hw: nothing");
	is_int(log_read(l, 1, INT64_MAX, 1 << 20, true, &s), KERR_OFFSET_OUT_OF_RANGE, "read past hw: out of range");
	wait_all(&a, 1);
	is_int(a->kerr, KERR_NONE, "append acknowledged");
	is_int(a->hw_at_done, 5, "hw covered the append when done ran");
	ok(a->fsyncs_at_done >= 1, "an fsync round completed before the ack");
	ok(hk.hw_calls >= 1, "hw_advanced hook called");
	uint8_t hdr[BATCH_HDR_SIZE];
	join(p, sizeof p, dir, "00000000000000000000.log");
	int fd = open(p, O_RDONLY);
	ok(fd >= 0 && pread(fd, hdr, sizeof hdr, 0) == (ssize_t)sizeof hdr, "read the batch back from the file");
	close(fd);
	struct batch_hdr h;
	batch_parse_hdr(hdr, sizeof hdr, &h);
	ok(h.base_offset == 0 && h.partition_leader_epoch == 0 && h.record_count == 5, "file holds the batch as written");
	is_int(file_size(p), (long long)a->len, "file size is the batch size");
	app_free(a);

	/* the producer's buffer got the base offset written in */
	g = gen(3, 10, 1000);
	a = app_new(&g);
	app_submit(l, a);
	is_int((int64_t)st_be64(a->data), 5, "base offset written into the producer's buffer");
	wait_all(&a, 1);
	app_free(a);
	is_int(log_read(l, 0, INT64_MAX, 1 << 20, true, &s), KERR_NONE, "read from 0");
	int64_t nb;
	ok(slice_ok(&s, &nb) && nb == 2 && s.first_offset == 0 && s.next_offset == 8, "slice: 2 whole batches 0..7");
	log_slice_release(&s);
	is_int(log_read(l, 6, 7, 1 << 20, true, &s), KERR_NONE, "read with upto inside a batch");
	is_int(s.len, 0, "the batch reaching upto is not served");
	log_slice_release(&s);

	/* rejected appends write nothing */
	g = gen(2, 10, 1000);
	a = app_new(&g);
	a->data[a->len - 1] ^= 1;
	is_int(app_submit(l, a), KERR_CORRUPT_MESSAGE, "corrupt batch refused");
	app_free(a);
	c.max_message_bytes = 100;
	log_set_config(l, &c);
	g = gen(5, 100, 1000);
	a = app_new(&g);
	is_int(app_submit(l, a), KERR_MESSAGE_TOO_LARGE, "too large refused");
	app_free(a);
	is_int(log_end_offset(l), 8, "refused appends assign no offsets");
	c = small_cfg();
	log_set_config(l, &c);

	/* multi-batch append */
	{
		uint8_t two[4096];
		size_t n1 = batchgen_build(two, sizeof two, 2, 10, 1000, 0);
		size_t n2 = batchgen_build(two + n1, sizeof two - n1, 3, 10, 1001, 0);
		struct app *m = calloc(1, sizeof *m);
		m->data = malloc(n1 + n2);
		memcpy(m->data, two, n1 + n2);
		m->len = n1 + n2;
		is_int(app_submit(l, m), KERR_NONE, "two batches in one append");
		ok(m->a.base_offset == 8 && m->a.last_offset == 12, "offsets 8..12");
		ok((int64_t)st_be64(m->data + n1) == 10, "second batch got base offset 10");
		wait_all(&m, 1);
		app_free(m);
	}
	is_int(log_close(l), 0, "close");
	l = open_log(dir, &c);
	struct log_stats st;
	log_get_stats(l, &st);
	is_int(st.open_batches_scanned, 0, "clean reopen scans nothing");
	is_int(log_end_offset(l), 13, "reopen: end offset");
	is_int(log_high_watermark(l), 13, "reopen: high watermark");
	int bad = 0;
	is_int(read_all(l, 1 << 20, &bad), 13, "reopen: everything readable");
	is_int(bad, 0, "reopen: slices valid");
	int64_t base;
	is_int(append_wait(l, &g, &base), KERR_NONE, "append after reopen");
	is_int(base, 13, "continues at the right offset");
	is_int(log_destroy(l), 0, "destroy");
	ok(access(dir, F_OK) != 0, "destroy removed the directory");
}

static void test_group_commit_order(void)
{
	char dir[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = small_cfg();
	struct log *l = open_log(dir, &c);
	enum { N = 64 };
	struct app *ps[N];
	for (int i = 0; i < N; i++) {
		struct batchgen_opts g = gen(1 + i % 4, 100 + (size_t)i * 7, 1000 + i);
		ps[i] = app_new(&g);
		if (app_submit(l, ps[i]) != KERR_NONE)
			BAIL_OUT("append %d refused", i);
	}
	is_int(log_high_watermark(l), 0, "nothing acknowledged before the ring ran");
	done_seq = 0;
	wait_all(ps, N);
	int in_order = 1, all_ok = 1, hw_ok = 1, synced = 1;
	for (int i = 0; i < N; i++) {
		in_order &= ps[i]->order == i;
		all_ok &= ps[i]->kerr == KERR_NONE;
		hw_ok &= ps[i]->hw_at_done == ps[i]->a.last_offset + 1;
		synced &= ps[i]->fsyncs_at_done >= 1;
	}
	ok(in_order, "%d concurrent appends acknowledged in offset order", N);
	ok(all_ok, "all acknowledged without error");
	ok(hw_ok, "at each ack the high watermark ends exactly at that append");
	ok(synced, "every ack came after an fsync round");
	struct log_stats st;
	log_get_stats(l, &st);
	ok(st.fsync_rounds >= 1 && st.fsync_rounds <= N, "fsync rounds within [1, %d]", N);
	tap_diag("group commit: %d appends, %lld fsync rounds", N, (long long)st.fsync_rounds);
	for (int i = 0; i < N; i++)
		app_free(ps[i]);
	int bad = 0;
	read_all(l, 1000, &bad);
	is_int(bad, 0, "small-max_bytes reads return whole valid batches");
	log_destroy(l);
}

/* Appends batches with a model of (base, last, first ts) per batch. */
struct model {
	int64_t base[4096], last[4096], ts0[4096];
	int n;
};

static void fill(struct log *l, struct model *m, int batches, int64_t ts0, int codec_every)
{
	for (int i = 0; i < batches; i++) {
		struct batchgen_opts g = gen(1 + i % 5, 40 + (size_t)(i * 13) % 200, ts0 + (int64_t)m->n * 10);
		if (codec_every && i % codec_every == 0)
			g.codec = COMPRESS_ZSTD;
		int64_t base;
		if (append_wait(l, &g, &base) != KERR_NONE)
			BAIL_OUT("fill append failed");
		m->base[m->n] = base;
		m->last[m->n] = base + g.n_records - 1;
		m->ts0[m->n] = g.base_ts_ms;
		m->n++;
	}
}

struct scanctx {
	int64_t n, expect;
	int ok;
};

static int scan_fn(void *ctx, const struct batch_hdr *h, int64_t pos)
{
	struct scanctx *sc = ctx;
	if (h->base_offset != sc->expect)
		sc->ok = 0;
	sc->expect = batch_last_offset(h) + 1;
	sc->n++;
	return 0;
}

static void test_reads_and_rolls(void)
{
	char dir[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = small_cfg();
	c.segment_bytes = 3000;
	c.index_interval_bytes = 300;
	memset(&hk, 0, sizeof hk);
	struct log *l = open_log(dir, &c);
	static struct model m;
	memset(&m, 0, sizeof m);
	fill(l, &m, 120, 100000, 0);
	uring_drain(&ur);
	int nsegs = log_segment_count(l);
	ok(nsegs >= 5, "rolled by size into %d segments", nsegs);
	is_int(hk.closed_calls, nsegs - 1, "segment_closed called for every rolled segment");
	int info_ok = 1;
	int in_order = 1;
	for (int i = 1; i < hk.closed_calls && i < 64; i++)
		in_order &= hk.closed[i - 1].base_offset < hk.closed[i].base_offset;
	ok(in_order, "segment_closed called in offset order");
	for (int i = 0; i < hk.closed_calls && i < 64; i++) {
		struct log_segment_info *in = &hk.closed[i];
		int64_t next_base = i + 1 < hk.closed_calls ? hk.closed[i + 1].base_offset : log_end_offset(l);
		(void)next_base;
		if (file_size(in->log_path) != in->size_bytes || in->size_bytes > c.segment_bytes ||
		    file_size(in->index_path) % 8 != 0 || file_size(in->timeindex_path) % 12 != 0 ||
		    file_size(in->timeindex_path) < 12 || in->last_offset < in->base_offset) {
			if (info_ok)
				tap_diag("segment %lld: size %lld (file %lld) index %lld timeindex %lld last %lld",
					 (long long)in->base_offset, (long long)in->size_bytes,
					 (long long)file_size(in->log_path), (long long)file_size(in->index_path),
					 (long long)file_size(in->timeindex_path), (long long)in->last_offset);
			info_ok = 0;
		}
		if (i + 1 < hk.closed_calls && hk.closed[i + 1].base_offset != in->last_offset + 1)
			info_ok = 0;
	}
	ok(info_ok, "closed segments: sizes <= segment.bytes, indexes trimmed to whole entries, contiguous");
	ok(file_size(hk.closed[0].index_path) > 0, "first segment has offset index entries");
	/* the time index's last entry is the segment's max timestamp (final entry at close) */
	{
		uint8_t e[12];
		int fd = open(hk.closed[0].timeindex_path, O_RDONLY);
		int64_t sz = file_size(hk.closed[0].timeindex_path);
		ok(fd >= 0 && pread(fd, e, 12, sz - 12) == 12 && (int64_t)st_be64(e) == hk.closed[0].max_timestamp_ms,
		   "time index ends with the max timestamp");
		close(fd);
		ok(hk.closed[0].first_timestamp_ms == m.ts0[0], "first timestamp of segment 0");
	}

	/* every offset, min_one with max_bytes 1: exactly the batch holding it */
	int exact = 1;
	for (int b = 0; b < m.n; b++) {
		for (int64_t o = m.base[b]; o <= m.last[b]; o++) {
			struct log_slice s;
			int64_t nb;
			if (log_read(l, o, INT64_MAX, 1, true, &s) != KERR_NONE || s.first_offset != m.base[b] ||
			    s.next_offset != m.last[b] + 1 || !slice_ok(&s, &nb) || nb != 1)
				exact = 0;
			log_slice_release(&s);
		}
	}
	ok(exact, "every offset (segment first/last, inside batches, between index entries) finds its batch");
	struct log_slice s;
	is_int(log_read(l, m.base[3], INT64_MAX, 1, false, &s), KERR_NONE, "max_bytes below one batch, !min_one");
	is_int(s.len, 0, "!min_one: nothing when the first batch does not fit");
	/* reads never cross a segment and respect max_bytes */
	int bounded = 1;
	for (int64_t mb = 100; mb < 4000; mb += 373) {
		int64_t off = 0;
		while (off < log_high_watermark(l)) {
			int64_t nb;
			if (log_read(l, off, INT64_MAX, mb, true, &s) != KERR_NONE || s.len == 0 || !slice_ok(&s, &nb) ||
			    (s.len > mb && nb != 1) || s.len > c.segment_bytes) {
				bounded = 0;
				log_slice_release(&s);
				break;
			}
			off = s.next_offset;
			log_slice_release(&s);
		}
	}
	ok(bounded, "slices: whole batches, <= max_bytes unless one batch, within one segment");
	is_int(log_read(l, m.base[10], INT64_MAX, 1 << 20, true, &s), KERR_NONE, "big read");
	ok(s.len <= c.segment_bytes && s.first_offset == m.base[10], "big read stops at the segment end");
	log_slice_release(&s);

	/* log_scan_batches */
	struct scanctx sc = { 0, 0, 1 };
	is_int(log_scan_batches(l, 0, scan_fn, &sc), 0, "scan batches");
	ok(sc.ok && sc.n == m.n, "scan saw all %d batches in order", m.n);

	/* roll by time (tick) */
	int before = log_segment_count(l);
	c.segment_ms = 1000;
	log_set_config(l, &c);
	log_tick(l, st_now_ms() + 2000);
	is_int(log_segment_count(l), before + 1, "segment.ms: tick rolled the active segment");
	log_tick(l, st_now_ms() + 4000);
	is_int(log_segment_count(l), before + 1, "an empty active segment does not roll");
	is_int(log_roll(l), 0, "explicit roll of an empty segment");
	is_int(log_segment_count(l), before + 1, "explicit roll of an empty segment is a no-op");
	c.segment_ms = 604800000;
	log_set_config(l, &c);
	fill(l, &m, 1, 100000, 0);
	is_int(log_roll(l), 0, "explicit roll");
	is_int(log_segment_count(l), before + 2, "explicit roll made a segment");
	uring_drain(&ur);
	is_int(hk.closed_calls, before + 1, "closed hooks for tick and explicit rolls");

	/* full index rolls: 3 entries of 8 bytes, an entry per batch */
	c.segment_index_bytes = 24;
	c.index_interval_bytes = 0;
	log_set_config(l, &c);
	before = log_segment_count(l);
	fill(l, &m, 8, 100000, 0);
	ok(log_segment_count(l) >= before + 1, "full index rolled (%d -> %d segments)", before, log_segment_count(l));
	c = small_cfg();
	c.segment_bytes = 3000;
	c.index_interval_bytes = 300;
	log_set_config(l, &c);
	uring_drain(&ur);

	/* reopen: every offset still exact (indexes loaded lazily from files) */
	log_close(l);
	l = open_log(dir, &c);
	struct log_stats st;
	log_get_stats(l, &st);
	is_int(st.open_batches_scanned, 0, "clean reopen with %d segments scans nothing", log_segment_count(l));
	exact = 1;
	for (int b = 0; b < m.n; b++) {
		for (int64_t o = m.base[b]; o <= m.last[b]; o++) {
			int64_t nb;
			if (log_read(l, o, INT64_MAX, 1, true, &s) != KERR_NONE || s.first_offset != m.base[b] ||
			    !slice_ok(&s, &nb) || nb != 1)
				exact = 0;
			log_slice_release(&s);
		}
	}
	ok(exact, "after reopen every offset finds its batch");
	log_get_stats(l, &st);
	is_int(st.index_rebuilds, 0, "no index needed rebuilding");
	log_destroy(l);
}

static void test_timestamps(void)
{
	char dir[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = small_cfg();
	c.segment_bytes = 2500;
	c.index_interval_bytes = 200;
	struct log *l = open_log(dir, &c);
	static struct model m;
	memset(&m, 0, sizeof m);
	fill(l, &m, 80, 500000, 3); /* every third batch zstd-compressed */
	/* record j of batch b has ts ts0[b] + j; ts0 grows by 10 per batch */
	int exact = 1;
	for (int64_t target = 499990; target <= m.ts0[m.n - 1] + 10; target += 3) {
		int64_t want_off = -1, want_ts = -1;
		for (int b = 0; b < m.n && want_off < 0; b++)
			for (int64_t o = m.base[b]; o <= m.last[b]; o++)
				if (m.ts0[b] + (o - m.base[b]) >= target) {
					want_off = o;
					want_ts = m.ts0[b] + (o - m.base[b]);
					break;
				}
		int64_t off, ts;
		if (log_offset_for_timestamp(l, target, &off, &ts) != KERR_NONE || off != want_off || ts != want_ts) {
			if (exact)
				tap_diag("target %lld: got %lld/%lld want %lld/%lld", (long long)target, (long long)off,
					 (long long)ts, (long long)want_off, (long long)want_ts);
			exact = 0;
		}
	}
	ok(exact, "offset_for_timestamp is record-exact across segments and compressed batches");
	int64_t off, ts;
	log_offset_for_timestamp(l, INT64_MAX, &off, &ts);
	ok(off == -1 && ts == -1, "a timestamp after every record: -1");
	log_offset_for_timestamp(l, 0, &off, &ts);
	ok(off == 0 && ts == 500000, "a timestamp before every record: offset 0");

	/* max timestamp in the middle (a batch with a far-future record) */
	struct batchgen_opts g = gen(4, 10, 9000000);
	g.ts_step_ms = -1000; /* 9000000, 8999000, ... : max is the first record */
	int64_t base;
	append_wait(l, &g, &base);
	g = gen(2, 10, 600000);
	append_wait(l, &g, NULL);
	log_max_timestamp(l, &off, &ts);
	ok(off == base && ts == 9000000, "max timestamp: the record carrying it (%lld @ %lld)", (long long)ts,
	   (long long)off);
	g = gen(3, 10, 9000000 - 5);
	g.ts_step_ms = 5; /* records 2..: 9000000 again at index 1, 9000005 at index 2 */
	g.codec = COMPRESS_LZ4;
	append_wait(l, &g, &base);
	log_max_timestamp(l, &off, &ts);
	ok(off == base + 2 && ts == 9000005, "max timestamp inside a compressed batch");
	log_offset_for_timestamp(l, 9000000, &off, &ts);
	ok(ts == 9000000 && off == m.last[m.n - 1] + 1, "first record with ts >= 9000000 is the earlier one");
	log_destroy(l);

	/* LogAppendTime */
	new_dir(dir, sizeof dir);
	c = small_cfg();
	c.log_append_time = true;
	l = open_log(dir, &c);
	g = gen(3, 10, 5);
	int64_t t0 = st_now_ms();
	struct app *a = app_new(&g);
	app_submit(l, a);
	int64_t lat = a->a.log_append_time_ms;
	ok(lat >= t0 && lat <= st_now_ms(), "LogAppendTime reported");
	struct batch_hdr h;
	batch_parse_hdr(a->data, a->len, &h);
	ok(batch_is_log_append_time(&h) && h.max_timestamp == lat && batch_crc_ok(a->data, a->len),
	   "batch rewritten for LogAppendTime with a valid CRC");
	wait_all(&a, 1);
	app_free(a);
	log_offset_for_timestamp(l, lat, &off, &ts);
	ok(off == 0 && ts == lat, "LogAppendTime: lookup finds the first record at the append time");
	log_max_timestamp(l, &off, &ts);
	ok(off == 0 && ts == lat, "LogAppendTime: max timestamp is the first record of the batch");
	log_destroy(l);
}

/* What a producer like librdkafka writes: many records per millisecond (a millisecond spans
 * batches), some NULL values, CreateTime going backwards inside a batch and single far-ahead
 * records, mostly lz4. Kafka's answer for T is the first record in offset order with
 * ts >= T, never the batch's base offset nor a later record of the same millisecond. */
#define TSQ_MAX_RECS 900
static int64_t tsq_first_at_or_after(const int64_t *ts, int n, int64_t target, int64_t *ts_out)
{
	for (int o = 0; o < n; o++)
		if (ts[o] >= target) {
			*ts_out = ts[o];
			return o;
		}
	*ts_out = -1;
	return -1;
}

static int tsq_check_all(struct log *l, const int64_t *ts, int n, int64_t lo, int64_t hi, const char *when)
{
	int exact = 1;
	for (int64_t target = lo; target <= hi; target++) {
		int64_t want_ts, want_off = tsq_first_at_or_after(ts, n, target, &want_ts), off, t;
		if (log_offset_for_timestamp(l, target, &off, &t) != KERR_NONE || off != want_off || t != want_ts) {
			if (exact)
				tap_diag("%s: target %lld: got %lld/%lld want %lld/%lld", when, (long long)target,
					 (long long)off, (long long)t, (long long)want_off, (long long)want_ts);
			exact = 0;
		}
	}
	return exact;
}

static void test_timestamps_same_ms(void)
{
	char dir[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = small_cfg();
	c.segment_bytes = 4000;
	c.index_interval_bytes = 150;
	struct log *l = open_log(dir, &c);
	static int64_t ts[TSQ_MAX_RECS];
	struct lt_rng rng = { 0x5eed7157ull };
	static const int codecs[] = { COMPRESS_LZ4, COMPRESS_LZ4, COMPRESS_LZ4, COMPRESS_ZSTD, COMPRESS_NONE };
	static bool null_value[TSQ_MAX_RECS];
	int n = 0, batches = 0;
	int64_t clock = 1700000000000, lo = clock, hi = clock;
	while (n < TSQ_MAX_RECS - 16) {
		struct lt_rec recs[16];
		int nr = (int)lt_range(&rng, 1, 16);
		for (int i = 0; i < nr; i++) {
			clock += lt_range(&rng, 0, 9) == 0;
			int64_t r = lt_range(&rng, 0, 29), t = clock;
			if (r == 0)
				t = clock + 7;                    /* one record far ahead */
			else if (r < 4)
				t = clock - lt_range(&rng, 1, 3); /* CreateTime going backwards */
			memset(&recs[i], 0, sizeof recs[i]);
			recs[i].ts = t;
			recs[i].key_len = -1;
			recs[i].value_len = lt_range(&rng, 0, 5) == 0 ? -1 : 20;
			if (recs[i].value_len > 0)
				recs[i].value = lt_bytes(&rng, recs[i].value_len, true);
			null_value[n + i] = recs[i].value_len < 0;
			ts[n + i] = t;
			lo = ST_MIN(lo, t);
			hi = ST_MAX(hi, t);
		}
		size_t len;
		uint8_t *b = lt_batch_build(recs, nr, codecs[batches % ST_ARRAY_LEN(codecs)], &len);
		for (int i = 0; i < nr; i++)
			lt_rec_free(&recs[i]);
		struct log_append done;
		int kerr = lt_append_sync(&ur, l, b, len, &done);
		free(b);
		if (kerr != KERR_NONE || done.base_offset != n)
			BAIL_OUT("append batch %d: kerr %d base %lld", batches, kerr, (long long)done.base_offset);
		n += nr;
		batches++;
	}
	int null_answers = 0; /* NULL-value records that are the answer for their own timestamp */
	for (int o = 0; o < n; o++) {
		int64_t t;
		null_answers += null_value[o] && tsq_first_at_or_after(ts, n, ts[o], &t) == o;
	}
	ok(log_segment_count(l) > 2 && null_answers > 0,
	   "%d records in %d batches, %d segments, %d NULL-value records answer their timestamp", n, batches,
	   log_segment_count(l), null_answers);
	ok(tsq_check_all(l, ts, n, lo - 2, hi + 1, "open"),
	   "offset_for_timestamp: first record in offset order with ts >= T (same ms, backwards, compressed)");
	is_int(log_close(l), 0, "close");
	l = open_log(dir, &c);
	ok(tsq_check_all(l, ts, n, lo - 2, hi + 1, "reopened"), "... the same from the indexes on disk");
	log_destroy(l);
}

static void test_retention(void)
{
	char dir[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = small_cfg();
	c.segment_bytes = 2000;
	memset(&hk, 0, sizeof hk);
	hk.deletable = false;
	struct log *l = open_log(dir, &c);
	static struct model m;
	memset(&m, 0, sizeof m);
	int64_t now = st_now_ms();
	int64_t day = 86400000;
	fill(l, &m, 40, now - 10 * day, 0); /* old */
	log_roll(l);
	int old_segs = log_segment_count(l) - 1;
	fill(l, &m, 20, now, 0);            /* fresh */
	uring_drain(&ur);
	int total = log_segment_count(l);
	c.retention_ms = day;
	log_set_config(l, &c);
	is_int(log_retention_run(l, now), 0, "segment_deletable=false keeps expired segments");
	ok(hk.deletable_asked >= 1, "the hook was asked");
	hk.deletable = true;
	int del = log_retention_run(l, now);
	is_int(del, old_segs, "retention.ms deleted the %d old segments", old_segs);
	is_int(log_segment_count(l), total - old_segs, "fresh segments kept");
	ok(log_start_offset(l) > 0, "start offset moved to the first kept segment (%lld)",
	   (long long)log_start_offset(l));
	struct log_slice s;
	is_int(log_read(l, 0, INT64_MAX, 1000, true, &s), KERR_OFFSET_OUT_OF_RANGE, "deleted offsets out of range");
	char p[PATH_MAX];
	join(p, sizeof p, dir, "00000000000000000000.log");
	uring_drain(&ur); /* the unlinks run on the ring */
	ok(access(p, F_OK) != 0, "deleted segment's file is gone");

	/* a slice outlives the deletion of its segment */
	int64_t first = log_start_offset(l);
	is_int(log_read(l, first, INT64_MAX, 500, true, &s), KERR_NONE, "slice on the oldest segment");
	/* retention.bytes: keep at most about two segments */
	int64_t size = log_size_bytes(l);
	c.retention_ms = -1;
	c.retention_bytes = 4500;
	log_set_config(l, &c);
	del = log_retention_run(l, now);
	ok(del >= 1, "retention.bytes deleted %d segments", del);
	ok(log_size_bytes(l) >= 4500 - 2000 && log_size_bytes(l) < size, "size now %lld (limit 4500)",
	   (long long)log_size_bytes(l));
	ok(log_size_bytes(l) - 4500 < 2000, "excess below one segment");
	ok(slice_ok(&s, NULL), "slice still readable after its segment was deleted");
	log_slice_release(&s);
	c.retention_bytes = 0;
	log_set_config(l, &c);
	log_retention_run(l, now);
	is_int(log_segment_count(l), 1, "retention never deletes the active segment");

	/* DeleteRecords */
	c.retention_bytes = -1;
	log_set_config(l, &c);
	fill(l, &m, 40, now, 0);
	int64_t hw = log_high_watermark(l);
	int segs = log_segment_count(l);
	is_int(log_delete_records(l, hw + 1), KERR_OFFSET_OUT_OF_RANGE, "delete past hw refused");
	int64_t cut = log_start_offset(l) + (hw - log_start_offset(l)) / 2 + 1;
	is_int(log_delete_records(l, cut), KERR_NONE, "delete records below %lld", (long long)cut);
	is_int(log_start_offset(l), cut, "start offset moved");
	ok(log_segment_count(l) < segs, "whole segments below it deleted (%d -> %d)", segs, log_segment_count(l));
	is_int(log_read(l, cut - 1, INT64_MAX, 1000, true, &s), KERR_OFFSET_OUT_OF_RANGE, "below start: out of range");
	is_int(log_read(l, cut, INT64_MAX, 1000, true, &s), KERR_NONE, "at start: readable");
	ok(s.first_offset <= cut && s.next_offset > cut, "batch holding the start offset");
	log_slice_release(&s);
	is_int(log_delete_records(l, cut - 5), KERR_NONE, "moving it back is a no-op");
	is_int(log_start_offset(l), cut, "start offset unchanged");
	uring_drain(&ur);
	/* persisted: survives a crash-like reopen (checkpoint written asynchronously) */
	log_close(l);
	l = open_log(dir, &c);
	is_int(log_start_offset(l), cut, "start offset survives a restart");
	log_destroy(l);
}

static void test_relaxed_flush(void)
{
	char dir[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = small_cfg();
	c.flush_messages = 10;
	c.flush_ms = 60000;
	struct log *l = open_log(dir, &c);
	struct batchgen_opts g = gen(3, 10, 1000);
	for (int i = 0; i < 2; i++)
		append_wait(l, &g, NULL);
	struct log_stats st;
	log_get_stats(l, &st);
	is_int(st.fsync_rounds, 0, "flush.messages=10: 6 messages acked without an fsync");
	is_int(log_high_watermark(l), 6, "hw advanced after the writes");
	append_wait(l, &g, NULL);
	append_wait(l, &g, NULL);
	uring_drain(&ur);
	log_get_stats(l, &st);
	is_int(st.fsync_rounds, 1, "12 messages >= 10: one fsync round");
	append_wait(l, &g, NULL);
	log_tick(l, st_now_ms() + 1000);
	uring_drain(&ur);
	log_get_stats(l, &st);
	is_int(st.fsync_rounds, 1, "flush.ms not reached: no fsync");
	log_tick(l, st_now_ms() + 61000);
	uring_drain(&ur);
	log_get_stats(l, &st);
	is_int(st.fsync_rounds, 2, "flush.ms passed: tick fsynced");
	log_destroy(l);
}

static void test_roll_in_flight(void)
{
	char dir[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = small_cfg();
	c.segment_bytes = 1500;
	c.index_interval_bytes = 100;
	memset(&hk, 0, sizeof hk);
	struct log *l = open_log(dir, &c);
	enum { N = 40 };
	struct app *ps[N];
	for (int i = 0; i < N; i++) {
		struct batchgen_opts g = gen(2, 150, 1000 + i);
		ps[i] = app_new(&g);
		if (app_submit(l, ps[i]) != KERR_NONE)
			BAIL_OUT("append refused");
	}
	ok(log_segment_count(l) >= 5, "rolled %d times with every write still in flight", log_segment_count(l) - 1);
	done_seq = 0;
	wait_all(ps, N);
	int good = 1;
	for (int i = 0; i < N; i++)
		good &= ps[i]->kerr == KERR_NONE && ps[i]->order == i && ps[i]->fsyncs_at_done >= 1;
	ok(good, "all acknowledged in order after fsyncs");
	uring_drain(&ur);
	is_int(hk.closed_calls, log_segment_count(l) - 1, "every rolled segment closed");
	for (int i = 0; i < N; i++)
		app_free(ps[i]);
	int bad = 0;
	is_int(read_all(l, 1 << 20, &bad), log_end_offset(l), "all readable");
	is_int(bad, 0, "valid slices");
	log_close(l);
	l = open_log(dir, &c);
	struct log_stats st;
	log_get_stats(l, &st);
	ok(st.open_batches_scanned == 0 && log_end_offset(l) == 2 * N, "clean reopen: %d records, nothing scanned", 2 * N);
	log_destroy(l);
}

static void test_storage_errors(void)
{
	char dir[PATH_MAX], p[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = small_cfg();
	c.segment_bytes = 1 << 20;
	struct log *l = open_log(dir, &c);
	struct batchgen_opts g = gen(4, 100, 1000);
	append_wait(l, &g, NULL);
	join(p, sizeof p, dir, "00000000000000000000.log");
	int64_t good_size = file_size(p);

	/* B fails (ENOSPC injected after a real write), C and D behind it fail too */
	log_test_fail_next_writes(l, 1, -ENOSPC);
	struct app *ps[3];
	for (int i = 0; i < 3; i++) {
		ps[i] = app_new(&g);
		if (app_submit(l, ps[i]) != KERR_NONE)
			BAIL_OUT("append refused");
	}
	done_seq = 0;
	wait_all(ps, 3);
	ok(ps[0]->kerr == KERR_KAFKA_STORAGE_ERROR && ps[1]->kerr == KERR_KAFKA_STORAGE_ERROR &&
	   ps[2]->kerr == KERR_KAFKA_STORAGE_ERROR, "failed write and the appends behind it: KAFKA_STORAGE_ERROR");
	ok(ps[0]->order == 0 && ps[1]->order == 1 && ps[2]->order == 2, "errors answered in offset order");
	is_int(log_high_watermark(l), 4, "hw unchanged");
	is_int(log_end_offset(l), 4, "end offset rewound");
	is_int(file_size(p), good_size, "file truncated back to the last good position");
	ok(!log_storage_failed(l), "log recovered from the failure");
	for (int i = 0; i < 3; i++)
		app_free(ps[i]);
	int64_t base;
	is_int(append_wait(l, &g, &base), KERR_NONE, "appends resume");
	is_int(base, 4, "at the rewound offset");
	int bad = 0;
	is_int(read_all(l, 1 << 20, &bad), 8, "data intact");
	is_int(bad, 0, "valid slices after the failure");

	/* a failed fsync fails everything not yet durable */
	log_test_fail_next_syncs(l, 1, -EIO);
	struct app *a = app_new(&g);
	app_submit(l, a);
	wait_all(&a, 1);
	is_int(a->kerr, KERR_KAFKA_STORAGE_ERROR, "failed fsync: KAFKA_STORAGE_ERROR");
	app_free(a);
	is_int(log_end_offset(l), 8, "fsync failure rewound the end offset");
	is_int(append_wait(l, &g, &base), KERR_NONE, "appends resume after the fsync failure");
	is_int(base, 8, "at offset 8");

	/* fail-fast while the failure is settling: A's fsync in flight keeps B's failure open */
	log_test_fail_next_writes(l, 0, 0);
	struct app *aa = app_new(&g), *bb = app_new(&g);
	app_submit(l, aa);
	/* Peek at the log's internal append state (1 = not yet written) to submit bb once aa's
	 * write is done and its fsync round is about to go out: bb's failure then lands while
	 * that fsync is in flight, and the log cannot settle until it completes. */
	for (int i = 0; i < 1000 && aa->a.state_ == 1; i++)
		uring_run_once(&ur, 10);
	log_test_fail_next_writes(l, 1, -EIO);
	app_submit(l, bb);
	int observed = 0, refused = 0;
	for (int i = 0; i < 10000 && !(aa->done && bb->done); i++) {
		if (log_storage_failed(l) && !observed) {
			observed = 1;
			struct app *x = app_new(&g);
			refused = app_submit(l, x) == KERR_KAFKA_STORAGE_ERROR;
			app_free(x);
		}
		uring_run_once(&ur, 100);
	}
	if (observed)
		ok(refused, "append during failure recovery fails fast");
	else
		ok(1, "# SKIP failure window not observed (completions raced)");
	struct app *pair[2] = { aa, bb };
	wait_all(pair, 2);
	ok(aa->kerr != KERR_NONE || bb->kerr != KERR_NONE, "one of the two failed");
	app_free(aa);
	app_free(bb);
	is_int(append_wait(l, &g, &base), KERR_NONE, "appends resume again");

	/* a real file-size limit: the write is cut short (EFBIG/short write) */
	struct rlimit old, lim;
	getrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, SIG_IGN);
	int64_t before = file_size(p), end_before = log_end_offset(l);
	lim = old;
	lim.rlim_cur = (rlim_t)(before + 100);
	if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
		struct batchgen_opts big = gen(5, 200, 1000);
		int rc = append_wait(l, &big, NULL);
		setrlimit(RLIMIT_FSIZE, &old);
		is_int(rc, KERR_KAFKA_STORAGE_ERROR, "RLIMIT_FSIZE write: KAFKA_STORAGE_ERROR");
		is_int(file_size(p), before, "partial write truncated away");
		is_int(log_end_offset(l), end_before, "end offset rewound");
		is_int(append_wait(l, &big, &base), KERR_NONE, "appends resume once space returns");
		is_int(base, end_before, "at the right offset");
	} else {
		ok(1, "# SKIP setrlimit(RLIMIT_FSIZE) failed");
	}
	bad = 0;
	is_int(read_all(l, 1 << 20, &bad), log_end_offset(l), "everything readable");
	is_int(bad, 0, "no partial batch served");
	log_close(l);
	l = open_log(dir, &c);
	struct log_stats st;
	log_get_stats(l, &st);
	is_int(st.open_batches_scanned, 0, "clean reopen after the failures");
	bad = 0;
	is_int(read_all(l, 1 << 20, &bad), log_end_offset(l), "reopened log intact");
	log_destroy(l);
}

/* A write fails while later appends already went to newer segments (rolls in flight). */
static void test_failure_across_rolls(void)
{
	char dir[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = small_cfg();
	c.segment_bytes = 1200;
	memset(&hk, 0, sizeof hk);
	struct log *l = open_log(dir, &c);
	struct batchgen_opts g = gen(2, 150, 1000);
	append_wait(l, &g, NULL);
	int segs0 = log_segment_count(l);
	enum { N = 20 };
	struct app *ps[N];
	/* the first 7 writes complete (peeking at the internal state: 1 = not yet written), then
	 * the next write fails while those wait for their fsync and segments are closing; some of
	 * the first ones may be acknowledged while the ring runs, so the order count starts here */
	done_seq = 0;
	for (int i = 0; i < N; i++) {
		if (i == 7) {
			for (int t = 0; t < 1000 && ps[6]->a.state_ == 1; t++)
				uring_run_once(&ur, 10);
			log_test_fail_next_writes(l, 1, -ENOSPC);
		}
		ps[i] = app_new(&g);
		if (app_submit(l, ps[i]) != KERR_NONE)
			BAIL_OUT("append refused");
	}
	int segs_peak = log_segment_count(l);
	wait_all(ps, N);
	int k = 0;
	while (k < N && ps[k]->kerr == KERR_NONE)
		k++;
	int shape = k < N;
	for (int i = k; i < N; i++)
		shape &= ps[i]->kerr == KERR_KAFKA_STORAGE_ERROR;
	int ordered = 1;
	for (int i = 0; i < N; i++)
		ordered &= ps[i]->order == i;
	ok(shape, "appends before the failed one succeed (%d), it and all after fail", k);
	ok(ordered, "answers in offset order");
	int64_t f_base = ps[k < N ? k : N - 1]->a.base_offset;
	is_int(log_end_offset(l), f_base, "end offset rewound to the failed append");
	is_int(log_high_watermark(l), f_base, "high watermark there too");
	ok(log_segment_count(l) <= segs_peak && log_segment_count(l) >= segs0,
	   "segments after the failed one removed (%d -> %d)", segs_peak, log_segment_count(l));
	for (int i = 0; i < N; i++)
		app_free(ps[i]);
	int64_t base;
	is_int(append_wait(l, &g, &base), KERR_NONE, "append after the failure");
	is_int(base, f_base, "reuses the failed offsets");
	uring_drain(&ur);
	int bad = 0;
	is_int(read_all(l, 1 << 20, &bad), log_end_offset(l), "all readable");
	is_int(bad, 0, "valid slices");
	int64_t end = log_end_offset(l);
	log_close(l);
	l = open_log(dir, &c);
	bad = 0;
	ok(log_end_offset(l) == end && read_all(l, 1 << 20, &bad) == end && !bad, "reopen: same log");
	log_destroy(l);
}


/* Appends queued while their segment's write is in flight leave together as one vectored
 * write; the vector is bounded in count and bytes; a short write inside a vector keeps the
 * appends it covers whole and fails the rest. */
static void test_coalesced_writes(void)
{
	char dir[PATH_MAX], p[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = small_cfg();
	struct log *l = open_log(dir, &c);
	join(p, sizeof p, dir, "00000000000000000000.log");
	struct log_stats st0, st;

	enum { N = 50 };
	struct app *ps[N];
	for (int i = 0; i < N; i++) {
		struct batchgen_opts g = gen(1 + i % 3, 50 + (size_t)i, 1000 + i);
		ps[i] = app_new(&g);
		if (app_submit(l, ps[i]) != KERR_NONE)
			BAIL_OUT("append %d refused", i);
	}
	done_seq = 0;
	wait_all(ps, N);
	int good = 1;
	for (int i = 0; i < N; i++)
		good &= ps[i]->kerr == KERR_NONE && ps[i]->order == i && ps[i]->fsyncs_at_done >= 1 &&
			ps[i]->hw_at_done == ps[i]->a.last_offset + 1;
	ok(good, "%d appends submitted at once: acknowledged in order, after fsyncs", N);
	log_get_stats(l, &st);
	ok(st.writes >= 2 && st.writes < N, "they went out in %lld writes (one at a time per file)",
	   (long long)st.writes);
	is_int(st.appends_written, N, "the writes carried every append");
	int64_t sum = 0;
	for (int i = 0; i < N; i++)
		sum += (int64_t)ps[i]->len;
	is_int(file_size(p), sum, "the file holds exactly the appends");
	for (int i = 0; i < N; i++)
		app_free(ps[i]);
	int bad = 0;
	is_int(read_all(l, 700, &bad), log_end_offset(l), "all readable");
	is_int(bad, 0, "valid slices");

	/* more appends than one vector may carry (1024 iovecs) */
	enum { M = 1100 };
	struct app **ms = calloc(M, sizeof *ms);
	if (!ms)
		BAIL_OUT("calloc");
	log_get_stats(l, &st0);
	for (int i = 0; i < M; i++) {
		struct batchgen_opts g = gen(1, 8, 2000 + i);
		ms[i] = app_new(&g);
		if (app_submit(l, ms[i]) != KERR_NONE)
			BAIL_OUT("append %d refused", i);
	}
	done_seq = 0;
	wait_all(ms, M);
	good = 1;
	for (int i = 0; i < M; i++)
		good &= ms[i]->kerr == KERR_NONE && ms[i]->order == i;
	ok(good, "%d small appends at once: all acknowledged in order", M);
	log_get_stats(l, &st);
	ok(st.writes - st0.writes >= 3, "split into %lld writes (iovec bound)", (long long)(st.writes - st0.writes));
	for (int i = 0; i < M; i++)
		app_free(ms[i]);
	free(ms);

	/* more bytes than one vector may carry (8 MiB): ~1 MB appends */
	enum { B = 12 };
	struct app *bs[B];
	log_get_stats(l, &st0);
	for (int i = 0; i < B; i++) {
		struct batchgen_opts g = gen(10, 100000, 3000 + i);
		bs[i] = app_new(&g);
		if (app_submit(l, bs[i]) != KERR_NONE)
			BAIL_OUT("big append %d refused", i);
	}
	done_seq = 0;
	wait_all(bs, B);
	good = 1;
	for (int i = 0; i < B; i++)
		good &= bs[i]->kerr == KERR_NONE && bs[i]->order == i;
	ok(good, "%d appends of ~1 MB: acknowledged in order", B);
	log_get_stats(l, &st);
	ok(st.writes - st0.writes >= 3, "split into %lld writes (byte bound)", (long long)(st.writes - st0.writes));
	for (int i = 0; i < B; i++)
		app_free(bs[i]);
	bad = 0;
	is_int(read_all(l, 1 << 20, &bad), log_end_offset(l), "all readable");
	is_int(bad, 0, "valid slices");

	/* A real short write in the middle of a vector: A goes alone, B..E queue behind it and
	 * leave as one write that RLIMIT_FSIZE cuts in the middle of C. */
	struct batchgen_opts g = gen(3, 120, 5000);
	append_wait(l, &g, NULL);
	struct app *v[5];
	for (int i = 0; i < 5; i++)
		v[i] = app_new(&g);
	int64_t size0 = file_size(p), end0 = log_end_offset(l), one = (int64_t)v[0]->len;
	struct rlimit old, lim;
	getrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = (rlim_t)(size0 + 2 * one + one / 2);
	log_get_stats(l, &st0);
	if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
		for (int i = 0; i < 5; i++)
			if (app_submit(l, v[i]) != KERR_NONE)
				BAIL_OUT("append refused");
		done_seq = 0;
		wait_all(v, 5);
		setrlimit(RLIMIT_FSIZE, &old);
		log_get_stats(l, &st);
		ok(v[0]->kerr == KERR_NONE && v[1]->kerr == KERR_NONE, "appends the short write covered whole: acknowledged");
		ok(v[2]->kerr == KERR_KAFKA_STORAGE_ERROR && v[3]->kerr == KERR_KAFKA_STORAGE_ERROR &&
		   v[4]->kerr == KERR_KAFKA_STORAGE_ERROR, "the cut one and those after it: KAFKA_STORAGE_ERROR");
		ok(v[0]->order == 0 && v[4]->order == 4, "answered in offset order");
		is_int(st.writes - st0.writes, 2, "two writes: A alone, B..E as one vector");
		is_int(file_size(p), size0 + 2 * one, "file cut back to the end of B");
		is_int(log_end_offset(l), end0 + 6, "end offset rewound to C");
		is_int(log_high_watermark(l), end0 + 6, "high watermark at the end of B");
		int64_t base;
		is_int(append_wait(l, &g, &base), KERR_NONE, "appends resume");
		is_int(base, end0 + 6, "at C's offset");
	} else {
		ok(1, "# SKIP setrlimit(RLIMIT_FSIZE) failed");
	}
	for (int i = 0; i < 5; i++)
		app_free(v[i]);
	bad = 0;
	is_int(read_all(l, 1 << 20, &bad), log_end_offset(l), "all readable after the short write");
	is_int(bad, 0, "valid slices");
	log_close(l);
	l = open_log(dir, &c);
	log_get_stats(l, &st);
	is_int(st.open_batches_scanned, 0, "clean reopen");
	log_destroy(l);
}

/* Relaxed flushing: a rolled segment is closed (and published) only once durable, so the roll
 * forces a group-commit round even below flush.messages. */
static void test_relaxed_roll(void)
{
	char dir[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = small_cfg();
	c.flush_messages = 100000;
	c.flush_ms = INT64_MAX;
	c.segment_bytes = 1000;
	memset(&hk, 0, sizeof hk);
	struct log *l = open_log(dir, &c);
	struct batchgen_opts g = gen(2, 150, 1000);
	for (int i = 0; i < 6; i++)
		append_wait(l, &g, NULL);
	uring_drain(&ur);
	struct log_stats st;
	log_get_stats(l, &st);
	ok(log_segment_count(l) >= 2, "rolled (%d segments)", log_segment_count(l));
	is_int(hk.closed_calls, log_segment_count(l) - 1, "every rolled segment closed and published");
	ok(st.fsync_rounds >= 1, "the rolls forced %lld fsync round(s)", (long long)st.fsync_rounds);
	log_destroy(l);
}

/* Rolls adopt the next segment's files, opened through the ring once the active segment is
 * half full: no file is created on the reactor, segments get their final names, the roll
 * histogram counts every roll, and a clean close leaves no temporary file behind. */
static void test_roll_spare(void)
{
	char dir[PATH_MAX], p[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = small_cfg();
	c.segment_bytes = 2000;
	memset(&hk, 0, sizeof hk);
	struct log *l = open_log(dir, &c);
	struct batchgen_opts g = gen(2, 150, 1000);
	for (int i = 0; i < 40; i++) {
		append_wait(l, &g, NULL);
		uring_drain(&ur); /* the pre-open completes before the next roll */
	}
	struct log_stats st;
	log_get_stats(l, &st);
	ok(st.rolls >= 5, "%lld rolls", (long long)st.rolls);
	is_int(st.rolls_sync, 0, "every roll adopted pre-opened files");
	int64_t hist = 0;
	for (int i = 0; i < LOG_ROLL_HIST_BUCKETS; i++)
		hist += st.roll_hist[i];
	is_int(hist, st.rolls, "the roll histogram counts every roll");
	ok(st.roll_ns_max > 0 && st.roll_ns_total >= st.roll_ns_max, "roll time recorded");
	is_int(hk.closed_calls, log_segment_count(l) - 1, "every rolled segment closed and published");
	int named = 1;
	for (int i = 0; i < hk.closed_calls && i < 64; i++) {
		named &= access(hk.closed[i].log_path, F_OK) == 0 && access(hk.closed[i].index_path, F_OK) == 0 &&
			 access(hk.closed[i].timeindex_path, F_OK) == 0;
	}
	ok(named, "published segments carry their final names");
	ok(lt_count_tmp_files(dir) <= 3, "at most one spare's files under temporary names (%d)", lt_count_tmp_files(dir));
	/* an explicit roll with no spare ready creates the files itself */
	int64_t sync0 = st.rolls_sync;
	append_wait(l, &g, NULL);
	is_int(log_roll(l), 0, "log_roll");
	log_get_stats(l, &st);
	ok(st.rolls_sync <= sync0 + 1, "explicit roll: adopted or created (%lld created)", (long long)st.rolls_sync);
	append_wait(l, &g, NULL);
	int64_t end = log_end_offset(l);
	is_int(log_close(l), 0, "close");
	is_int(lt_count_tmp_files(dir), 0, "a clean close leaves no temporary file");
	l = open_log(dir, &c);
	int bad = 0;
	is_int(read_all(l, 1 << 20, &bad), end, "reopened: everything readable");
	is_int(bad, 0, "reopened: valid slices");
	join(p, sizeof p, dir, "strata-checkpoint");
	ok(access(p, F_OK) == 0, "checkpoint present");
	log_destroy(l);
}

/* Counts this process's fds open on files under dir, and mappings of them. */
static int count_fds_in(const char *dir)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	struct dirent *de;
	size_t dl = strlen(dir);
	while ((de = readdir(d)) != NULL) {
		char p[PATH_MAX], t[PATH_MAX];
		if (de->d_name[0] == '.')
			continue;
		join(p, sizeof p, "/proc/self/fd", de->d_name);
		ssize_t k = readlink(p, t, sizeof t - 1);
		if (k <= 0)
			continue;
		t[k] = 0;
		if (strncmp(t, dir, dl) == 0 && t[dl] == '/')
			n++;
	}
	closedir(d);
	return n;
}

static int count_maps_in(const char *dir)
{
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return -1;
	char line[PATH_MAX + 256];
	int n = 0;
	while (fgets(line, sizeof line, f))
		if (strstr(line, dir))
			n++;
	fclose(f);
	return n;
}

/* Closed segments keep files open only while among the most recently used ones (or while a
 * slice holds them): reading a log of many segments does not accumulate fds or mappings. */
static void test_closed_files(void)
{
	char dir[PATH_MAX], p[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = small_cfg();
	c.segment_bytes = 1200;
	c.index_interval_bytes = 100;
	struct log *l = open_log(dir, &c);
	struct batchgen_opts g = gen(2, 150, 1000);
	for (int i = 0; i < 90; i++)
		append_wait(l, &g, NULL);
	uring_drain(&ur);
	int nsegs = log_segment_count(l);
	/* an active segment holds .log, .index, .timeindex, and so does the next one's pre-opened
	 * spare (once the active segment is half full) */
	int bound_fds = LOG_CLOSED_FILES_MAX + 3 + 3, bound_maps = 2 * LOG_CLOSED_FILES_MAX;
	ok(nsegs > 3 * LOG_CLOSED_FILES_MAX, "%d segments", nsegs);
	ok(count_fds_in(dir) <= bound_fds, "after rolling: %d fds open (bound %d)", count_fds_in(dir), bound_fds);
	int bad = 0;
	is_int(read_all(l, 300, &bad), log_end_offset(l), "everything read");
	is_int(bad, 0, "valid slices");
	ok(count_fds_in(dir) <= bound_fds, "after reading every segment: %d fds (bound %d)", count_fds_in(dir),
	   bound_fds);
	ok(count_maps_in(dir) <= bound_maps, "%d index mappings (bound %d)", count_maps_in(dir), bound_maps);

	/* slices hold their segments' files while everything else is read again */
	enum { H = 12 };
	struct log_slice held[H];
	int held_ok = 1;
	for (int i = 0; i < H; i++) {
		int64_t off = (int64_t)i * 6; /* 3 batches of 2 records per segment */
		held_ok &= log_read(l, off, log_high_watermark(l), 1 << 20, true, &held[i]) == KERR_NONE &&
			   held[i].len > 0;
	}
	ok(held_ok, "%d slices held in the first segments", H);
	bad = 0;
	is_int(read_all(l, 300, &bad), log_end_offset(l), "everything read again");
	int valid = 1;
	for (int i = 0; i < H; i++) {
		int64_t n = 0;
		valid &= slice_ok(&held[i], &n) && n >= 1 && held[i].first_offset <= (int64_t)i * 6;
		log_slice_release(&held[i]);
	}
	ok(valid, "held slices still read their own batches through their fds");
	bad = 0;
	read_all(l, 300, &bad);
	ok(count_fds_in(dir) <= bound_fds, "released and read again: %d fds (bound %d)", count_fds_in(dir),
	   bound_fds);

	/* timestamp lookups and producer-state scans touch every segment too */
	int64_t off, ts;
	is_int(log_offset_for_timestamp(l, 1000, &off, &ts), KERR_NONE, "offset for timestamp");
	is_int(log_max_timestamp(l, &off, &ts), KERR_NONE, "max timestamp");
	ok(count_fds_in(dir) <= bound_fds, "after timestamp lookups: %d fds", count_fds_in(dir));

	/* recovery without a checkpoint scans every segment; the fds do not stay open */
	int64_t end = log_end_offset(l);
	log_close(l);
	join(p, sizeof p, dir, "strata-checkpoint");
	unlink(p);
	l = open_log(dir, &c);
	struct log_stats st;
	log_get_stats(l, &st);
	ok(st.open_batches_scanned > 0 && log_end_offset(l) == end, "recovered %lld batches",
	   (long long)st.open_batches_scanned);
	ok(count_fds_in(dir) <= bound_fds, "after recovery: %d fds", count_fds_in(dir));
	bad = 0;
	is_int(read_all(l, 1 << 20, &bad), end, "everything readable after recovery");
	struct scanctx sc = { .n = 0, .expect = 0, .ok = 1 };
	is_int(log_scan_batches(l, 0, scan_fn, &sc), 0, "scan every batch");
	ok(sc.ok && sc.expect == end, "the scan saw every batch in order");
	ok(count_fds_in(dir) <= bound_fds, "after the scan: %d fds", count_fds_in(dir));
	log_destroy(l);
}

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* log_open_at: an empty directory starts at the given offset (a partition restored from a
 * bucket); log_forget: frees without writing, from the thread that opened it too. */
struct open_at_job {
	char dir[PATH_MAX];
	struct log_config c;
	struct log *l;
	int rc;
};

static void *open_at_thread(void *arg)
{
	struct open_at_job *j = arg;
	j->rc = log_open_at(&ur, j->dir, 424242, &j->c, &hooks, &j->l);
	return NULL;
}

static void test_open_at(void)
{
	char dir[PATH_MAX], p[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = small_cfg();
	memset(&hk, 0, sizeof hk);
	struct log *l = NULL;
	is_int(log_open_at(&ur, dir, -1, &c, &hooks, &l), -EINVAL, "log_open_at: negative offset refused");
	is_int(log_open_at(&ur, dir, 1000, &c, &hooks, &l), 0, "log_open_at 1000 on an empty dir");
	is_int(log_start_offset(l), 1000, "open_at: start offset 1000");
	is_int(log_end_offset(l), 1000, "open_at: end offset 1000");
	is_int(log_high_watermark(l), 1000, "open_at: high watermark 1000");
	join(p, sizeof p, dir, "00000000000000001000.log");
	ok(file_size(p) == 0, "open_at: the first segment is 00000000000000001000.log");
	struct log_slice s;
	is_int(log_read(l, 0, INT64_MAX, 1 << 20, true, &s), KERR_OFFSET_OUT_OF_RANGE,
	       "open_at: offset 0 is below the log start");
	is_int(log_read(l, 1000, INT64_MAX, 1 << 20, true, &s), KERR_NONE, "open_at: read at 1000 ok");
	is_int(s.len, 0, "open_at: nothing there yet");
	int64_t base = -1;
	struct batchgen_opts g = gen(3, 20, 5000);
	is_int(append_wait(l, &g, &base), KERR_NONE, "open_at: append");
	is_int(base, 1000, "open_at: the first append gets offset 1000");
	is_int(log_end_offset(l), 1003, "open_at: end 1003");
	is_int(log_close(l), 0, "open_at: close");
	l = open_log(dir, &c);
	is_int(log_start_offset(l), 1000, "reopened with log_open: start stays 1000");
	is_int(log_end_offset(l), 1003, "reopened: end 1003");
	int bad = 0;
	is_int(read_all(l, 1 << 20, &bad), 1003, "reopened: every record readable");
	is_int(bad, 0, "reopened: slices valid");
	is_int(log_close(l), 0, "close again");
	is_int(log_open_at(&ur, dir, 5, &c, &hooks, &l), 0, "log_open_at on a dir with segments");
	is_int(log_start_offset(l), 1000, "... ignores the initial offset (start 1000)");
	is_int(log_end_offset(l), 1003, "... and keeps the records (end 1003)");
	/* forget after appends: nothing removed, nothing written; the acknowledged records stay. */
	g = gen(2, 20, 6000);
	is_int(append_wait(l, &g, &base), KERR_NONE, "append before forget");
	is_int(log_forget(l), 0, "log_forget");
	join(p, sizeof p, dir, "00000000000000001000.log");
	ok(file_size(p) > 0, "log_forget leaves the files");
	l = open_log(dir, &c);
	is_int(log_end_offset(l), 1005, "reopened after forget: the acknowledged records are there");
	is_int(log_close(l), 0, "close after forget");

	/* Opened on another thread, used here (the broker's topic worker does this). */
	struct open_at_job j = { .c = c };
	new_dir(j.dir, sizeof j.dir);
	pthread_t th;
	ok(pthread_create(&th, NULL, open_at_thread, &j) == 0 && pthread_join(th, NULL) == 0 &&
	   j.rc == 0, "log_open_at on another thread");
	if (j.rc == 0) {
		is_int(log_end_offset(j.l), 424242, "... starts at 424242");
		is_int(append_wait(j.l, &g, &base), KERR_NONE, "... appends on the ring's thread");
		is_int(base, 424242, "... at 424242");
		is_int(log_destroy(j.l), 0, "... destroy");
	}
	/* forget of a log never appended to, then the directory is the caller's to remove */
	char d2[PATH_MAX];
	new_dir(d2, sizeof d2);
	is_int(log_open_at(&ur, d2, 7, &c, &hooks, &l), 0, "open a fresh log");
	is_int(log_forget(l), 0, "forget it untouched");
	rm_rf(d2);
	struct stat st;
	ok(stat(d2, &st) < 0 && errno == ENOENT, "its directory removed by the caller");
}

/* log_read_nb: a closed segment not in memory goes to the read_warm hook (once while it is
 * under way) instead of being read; after log_warm_done it is read as log_read reads it. */
static struct {
	int calls;
	char stem[PATH_MAX];
	int64_t base, offset, max_bytes;
	bool accept;
} warm;

static bool on_read_warm(void *ctx, struct log *l, const char *stem, int64_t base, int64_t offset,
			 int64_t max_bytes)
{
	(void)ctx;
	(void)l;
	warm.calls++;
	snprintf(warm.stem, sizeof warm.stem, "%s", stem);
	warm.base = base;
	warm.offset = offset;
	warm.max_bytes = max_bytes;
	return warm.accept;
}

/* Drops a file's pages from the page cache (clean pages: written and fsynced). */
static void drop_cache(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		size_t n = strlen(de->d_name), k = strlen(suffix);
		if (n < k || strcmp(de->d_name + n - k, suffix) != 0)
			continue;
		char p[PATH_MAX];
		join(p, sizeof p, dir, de->d_name);
		int fd = open(p, O_RDONLY);
		if (fd >= 0) {
			fdatasync(fd);
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
			close(fd);
		}
	}
	if (d)
		closedir(d);
}

static void test_read_warm(void)
{
	char dir[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = small_cfg();
	c.segment_bytes = 4000;
	c.index_interval_bytes = 200;
	struct log_hooks wh = hooks;
	wh.read_warm = on_read_warm;
	struct log *l = NULL;
	if (log_open(&ur, dir, &c, &wh, &l) != 0)
		BAIL_OUT("log_open %s", dir);
	struct batchgen_opts g = gen(2, 150, 1000);
	for (int i = 0; i < 40; i++)
		append_wait(l, &g, NULL);
	uring_drain(&ur);
	ok(log_segment_count(l) >= 4, "warm: %d segments", log_segment_count(l));
	/* A reopened log has its closed segments' files shut; their pages dropped. */
	log_close(l);
	drop_cache(dir, ".index");
	drop_cache(dir, ".timeindex");
	drop_cache(dir, ".log");
	if (log_open(&ur, dir, &c, &wh, &l) != 0)
		BAIL_OUT("log_open %s", dir);
	memset(&warm, 0, sizeof warm);
	warm.accept = true;
	int64_t hw = log_high_watermark(l);
	struct log_slice sl;
	int rc = log_read_nb(l, 5, hw, 1 << 20, true, &sl);
	is_int(rc, LOG_READ_PENDING, "warm: a closed segment not in memory is not read on the spot");
	size_t dl = strlen(dir);
	ok(warm.calls == 1 && warm.base == 0 && warm.offset == 5 && warm.max_bytes == 1 << 20 &&
	   strncmp(warm.stem, dir, dl) == 0 && strcmp(warm.stem + dl, "/00000000000000000000") == 0,
	   "warm: the hook gets the segment's path stem, base, offset and size (%s, %lld)", warm.stem,
	   (long long)warm.base);
	rc = log_read_nb(l, 5, hw, 1 << 20, true, &sl);
	ok(rc == LOG_READ_PENDING && warm.calls == 1, "warm: asked once while under way (%d calls)",
	   warm.calls);
	struct log_stats lst;
	log_get_stats(l, &lst);
	is_int(lst.read_warmups, 1, "warm: counted");
	log_warm_done(l, 0);
	rc = log_read_nb(l, 5, hw, 1 << 20, true, &sl);
	int64_t nb = 0;
	ok(rc == KERR_NONE && sl.len > 0 && sl.first_offset <= 5 && slice_ok(&sl, &nb) && warm.calls == 1,
	   "warm: once warmed the segment is read (%d, %lld bytes from %lld)", rc, (long long)sl.len,
	   (long long)sl.first_offset);
	if (rc == KERR_NONE)
		log_slice_release(&sl);
	log_warm_done(l, 777); /* no such segment: nothing happens */
	/* Segment bases from the file names: 0 = the first, then the next two closed ones. */
	int64_t bases[3] = { -1, -1, -1 };
	DIR *dd = opendir(dir);
	struct dirent *de;
	while (dd && (de = readdir(dd))) {
		long long v;
		char ext[8];
		if (sscanf(de->d_name, "%20lld.%7s", &v, ext) == 2 && strcmp(ext, "log") == 0)
			for (int k = 0; k < 3; k++)
				if (bases[k] < 0 || v < bases[k]) {
					for (int m = 2; m > k; m--)
						bases[m] = bases[m - 1];
					bases[k] = v;
					break;
				}
	}
	if (dd)
		closedir(dd);
	ok(bases[0] == 0 && bases[1] > 0 && bases[2] > bases[1], "warm: segments %lld, %lld, %lld",
	   (long long)bases[0], (long long)bases[1], (long long)bases[2]);
	/* The hook refusing (queue full): read as log_read does. */
	warm.accept = false;
	int calls = warm.calls;
	rc = log_read_nb(l, bases[1] + 1, hw, 1 << 20, true, &sl);
	ok(rc == KERR_NONE && sl.len > 0 && warm.calls == calls + 1,
	   "warm: a refused warm-up reads in place (%d, asked %d)", rc, warm.calls - calls);
	if (rc == KERR_NONE)
		log_slice_release(&sl);
	/* A segment in memory (files open, pages cached): no warm-up. */
	warm.accept = true;
	rc = log_read(l, bases[2] + 1, hw, 1 << 20, true, &sl);
	if (rc == KERR_NONE)
		log_slice_release(&sl);
	calls = warm.calls;
	rc = log_read_nb(l, bases[2] + 1, hw, 1 << 20, true, &sl);
	ok(rc == KERR_NONE && warm.calls == calls, "warm: a segment in memory is read at once (%d, %d calls)",
	   rc, warm.calls - calls);
	if (rc == KERR_NONE)
		log_slice_release(&sl);
	/* Files open, index mapped, but the .log's pages dropped: the header read would block.
	 * (Segment bases[1]: read in place above, never probed; bases[2] was just found in
	 * memory and is not probed again for LOG_WARM_FRESH_MS.) */
	drop_cache(dir, ".log");
	rc = log_read_nb(l, bases[1] + 1, hw, 1 << 20, true, &sl);
	ok(rc == LOG_READ_PENDING && warm.calls == calls + 1 && warm.base == bases[1],
	   "warm: an open segment whose header pages left the page cache is warmed first (%d)", rc);
	if (rc == KERR_NONE)
		log_slice_release(&sl);
	rc = log_read_nb(l, bases[2] + 1, hw, 1 << 20, true, &sl);
	ok(rc == KERR_NONE && warm.calls == calls + 1,
	   "warm: one found in memory a moment ago is read without a look (%d)", rc);
	if (rc == KERR_NONE)
		log_slice_release(&sl);
	log_warm_done(l, bases[1]);
	calls = warm.calls;
	/* The active segment is never sent to warm up. */
	rc = log_read_nb(l, hw - 1, hw, 1 << 20, true, &sl);
	ok(rc == KERR_NONE && warm.calls == calls, "warm: the active segment is read at once");
	if (rc == KERR_NONE)
		log_slice_release(&sl);
	log_close(l);
	/* No hook: log_read_nb is log_read. */
	drop_cache(dir, ".log");
	if (log_open(&ur, dir, &c, &hooks, &l) != 0)
		BAIL_OUT("log_open %s", dir);
	rc = log_read_nb(l, 5, log_high_watermark(l), 1 << 20, true, &sl);
	ok(rc == KERR_NONE && sl.len > 0, "warm: without a hook the read happens in place (%d)", rc);
	if (rc == KERR_NONE)
		log_slice_release(&sl);
	log_close(l);
}

int main(void)
{
	int fds0 = count_fds();
	snprintf(root, sizeof root, "%s/strata-log-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(root))
		BAIL_OUT("mkdtemp");
	if (uring_init(&ur, 256) < 0)
		BAIL_OUT("uring_init");
	test_basic();
	test_group_commit_order();
	test_reads_and_rolls();
	test_timestamps();
	test_timestamps_same_ms();
	test_retention();
	test_relaxed_flush();
	test_roll_in_flight();
	test_storage_errors();
	test_failure_across_rolls();
	test_coalesced_writes();
	test_relaxed_roll();
	test_roll_spare();
	test_closed_files();
	test_open_at();
	test_read_warm();
	uring_fini(&ur);
	is_int(count_fds(), fds0, "no file descriptor leaked");
	rm_rf(root);
	return tap_done();
}
