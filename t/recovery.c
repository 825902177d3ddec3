/* t/recovery.c -- log_open's recovery: a tail cut at every byte of the last batch and random
 * corruption inside it (a "crash" is a copy of the directory taken while the log is open, so
 * the checkpoint is the one of the earlier clean close), corruption in a middle segment,
 * damaged/missing indexes rebuilt (lookups stay right, rebuilt files equal the originals),
 * leftovers removed, and startup with 10,000 segments (open time printed, not asserted). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strata/batch.h"
#include "strata/common.h"
#include "strata/crc32c.h"
#include "strata/kerr.h"
#include "strata/log.h"
#include "strata/slog.h"
#include "strata/uring.h"
#include "batchgen.h"
#include "tap.h"

static struct uring ur;
static char root[256];
static int dir_seq;

/* ---- helpers ------------------------------------------------------------------------------------ */

static void join(char *buf, size_t len, const char *dir, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= len)
		BAIL_OUT("path too long");
}

static void new_dir(char *buf, size_t len)
{
	char name[32];
	snprintf(name, sizeof name, "d%d", dir_seq++);
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

static uint8_t *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	struct stat st;
	fstat(fd, &st);
	uint8_t *b = malloc((size_t)st.st_size + 1);
	*len = (size_t)pread(fd, b, (size_t)st.st_size, 0);
	close(fd);
	return b;
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || (len && write(fd, data, len) != (ssize_t)len))
		BAIL_OUT("write %s: %s", path, strerror(errno));
	close(fd);
}

/* The "crash": every file of src as it is on disk right now, copied to dst. */
static void copy_dir(const char *src, const char *dst)
{
	mkdir(dst, 0755);
	DIR *d = opendir(src);
	if (!d)
		BAIL_OUT("opendir %s", src);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char a[PATH_MAX], b[PATH_MAX];
		join(a, sizeof a, src, de->d_name);
		join(b, sizeof b, dst, de->d_name);
		size_t len;
		uint8_t *data = read_file(a, &len);
		if (!data)
			BAIL_OUT("read %s", a);
		write_file(b, data, len);
		free(data);
	}
	closedir(d);
}

static void seg_path(char *buf, size_t len, const char *dir, int64_t base, const char *ext)
{
	char name[64];
	snprintf(name, sizeof name, "%020" PRId64 ".%s", base, ext);
	join(buf, len, dir, name);
}

struct app {
	struct log_append a;
	uint8_t *data;
	size_t len;
	int done, kerr;
};

static void app_done(struct log_append *a, int kerr)
{
	struct app *p = ST_CONTAINER_OF(a, struct app, a);
	p->done = 1;
	p->kerr = kerr;
}

/* Appends one batch and waits; returns kerr, *base and the batch size. */
static int append_wait(struct log *l, const struct batchgen_opts *g, int64_t *base, size_t *size)
{
	struct app p = { 0 };
	size_t cap = batchgen_bound(g) + 64;
	p.data = malloc(cap);
	p.len = batchgen_build_opts(p.data, cap, g);
	p.a.data = p.data;
	p.a.len = p.len;
	p.a.done = app_done;
	int rc = log_append(l, &p.a);
	if (rc == KERR_NONE) {
		for (int i = 0; i < 100000 && !p.done; i++)
			uring_run_once(&ur, 1000);
		rc = p.kerr;
		if (base)
			*base = p.a.base_offset;
	}
	if (size)
		*size = p.len;
	free(p.data);
	return rc;
}

static struct batchgen_opts gen(int n, size_t vlen, int64_t ts)
{
	struct batchgen_opts g = BATCHGEN_DEFAULTS;
	g.n_records = n;
	g.value_len = vlen;
	g.base_ts_ms = ts;
	g.with_keys = 1;
	g.n_headers = 1;
	return g;
}

static struct log_config cfg(void)
{
	struct log_config c;
	log_config_defaults(&c);
	c.timestamp_after_max_ms = INT64_MAX;
	c.index_interval_bytes = 200;
	return c;
}

static struct log *open_log(const char *dir, const struct log_config *c)
{
	struct log *l = NULL;
	int rc = log_open(&ur, dir, c, NULL, &l);
	if (rc != 0)
		BAIL_OUT("log_open %s: %s", dir, strerror(-rc));
	return l;
}

/* Reads everything from the start; every slice whole batches with valid CRCs and consecutive
 * offsets. Returns the offset reached (the high watermark when all is well). */
static int64_t read_all(struct log *l, int *bad)
{
	int64_t off = log_start_offset(l), hw = log_high_watermark(l);
	for (int guard = 0; off < hw && guard < 1000000; guard++) {
		struct log_slice s;
		if (log_read(l, off, hw, 1 << 20, true, &s) != KERR_NONE || s.len == 0) {
			(*bad)++;
			return off;
		}
		uint8_t *b = malloc((size_t)s.len);
		int good = pread(s.fd, b, (size_t)s.len, s.file_pos) == s.len;
		int64_t pos = 0, expect = s.first_offset;
		while (good && pos < s.len) {
			struct batch_hdr h;
			good = batch_parse_hdr(b + pos, (size_t)(s.len - pos), &h) == 0 && pos + batch_size(&h) <= s.len &&
			       batch_crc_ok(b + pos, (size_t)batch_size(&h)) && h.base_offset == expect;
			if (good) {
				expect = batch_last_offset(&h) + 1;
				pos += batch_size(&h);
			}
		}
		free(b);
		if (!good || expect != s.next_offset || s.first_offset > off) {
			(*bad)++;
			log_slice_release(&s);
			return off;
		}
		off = s.next_offset;
		log_slice_release(&s);
	}
	return off;
}

/* ---- tail cut / corruption ---------------------------------------------------------------------- */

struct tail_fixture {
	char snap[PATH_MAX];    /* the crash copy */
	int64_t seg_base;       /* segment holding the last batch */
	int64_t pos, size;      /* its position and size */
	int64_t base, end;      /* its offsets [base, end) */
	uint8_t bytes[4096];    /* its bytes */
};

/* Ten batches, clean close, reopen, one more batch acknowledged, crash copy. */
static void make_tail_fixture(struct tail_fixture *f, bool roll_after_checkpoint)
{
	char dir[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = cfg();
	if (roll_after_checkpoint)
		c.segment_bytes = 1200;
	struct log *l = open_log(dir, &c);
	for (int i = 0; i < 10; i++) {
		struct batchgen_opts g = gen(1 + i % 3, 60, 1000 + i * 10);
		append_wait(l, &g, NULL, NULL);
	}
	log_close(l);
	l = open_log(dir, &c);
	if (roll_after_checkpoint) {
		for (int i = 0; i < 12; i++) {
			struct batchgen_opts g = gen(2, 80, 2000 + i * 10);
			append_wait(l, &g, NULL, NULL);
		}
	}
	struct batchgen_opts g = gen(3, 70, 5000);
	size_t size;
	append_wait(l, &g, &f->base, &size);
	uring_drain(&ur);
	f->end = f->base + 3;
	f->size = (int64_t)size;
	/* the last segment is the one with the largest base <= f->base */
	DIR *d = opendir(dir);
	struct dirent *de;
	f->seg_base = -1;
	while ((de = readdir(d)) != NULL) {
		int64_t b;
		char ext[16];
		if (sscanf(de->d_name, "%20" SCNd64 ".%15s", &b, ext) == 2 && !strcmp(ext, "log") && b <= f->base &&
		    b > f->seg_base)
			f->seg_base = b;
	}
	closedir(d);
	char p[PATH_MAX];
	seg_path(p, sizeof p, dir, f->seg_base, "log");
	f->pos = file_size(p) - f->size;
	int fd = open(p, O_RDONLY);
	if (pread(fd, f->bytes, (size_t)f->size, f->pos) != f->size)
		BAIL_OUT("reading the last batch");
	close(fd);
	new_dir(f->snap, sizeof f->snap);
	copy_dir(dir, f->snap);
	log_close(l);
	rm_rf(dir);
}

static void test_tail_cuts(bool roll_after_checkpoint)
{
	struct tail_fixture f;
	make_tail_fixture(&f, roll_after_checkpoint);
	const char *what = roll_after_checkpoint ? "segments after the checkpoint" : "checkpoint in the active segment";
	int all_ok = 1, scanned_ok = 1, appended_ok = 1, nocp_ok = 1;
	slog_set_level(SLOG_ERROR); /* one truncation warning per cut otherwise */
	for (int64_t cut = f.pos; cut <= f.pos + f.size; cut++) {
		char dir[PATH_MAX], p[PATH_MAX];
		new_dir(dir, sizeof dir);
		copy_dir(f.snap, dir);
		bool nocp = (cut - f.pos) % 37 == 5; /* now and then: no checkpoint, recover everything */
		if (nocp) {
			join(p, sizeof p, dir, "strata-checkpoint");
			unlink(p);
		}
		seg_path(p, sizeof p, dir, f.seg_base, "log");
		if (truncate(p, cut) < 0)
			BAIL_OUT("truncate");
		struct log_config c = cfg();
		struct log *l = open_log(dir, &c);
		bool whole = cut == f.pos + f.size;
		int64_t want = whole ? f.end : f.base;
		int bad = 0;
		struct log_stats st;
		log_get_stats(l, &st);
		if (log_end_offset(l) != want || log_high_watermark(l) != want || read_all(l, &bad) != want || bad ||
		    file_size(p) != (whole ? cut : f.pos)) {
			if (all_ok)
				tap_diag("cut at %lld: end %lld want %lld, bad %d, file %lld", (long long)cut,
					 (long long)log_end_offset(l), (long long)want, bad, (long long)file_size(p));
			all_ok = 0;
		}
		if (nocp)
			nocp_ok &= st.open_batches_scanned >= 10;
		else if (!roll_after_checkpoint)
			scanned_ok &= st.open_batches_scanned == (whole ? 1 : 0) &&
				      st.open_bytes_truncated == (whole ? 0 : cut - f.pos);
		struct batchgen_opts g = gen(1, 10, 9000);
		int64_t base;
		if (append_wait(l, &g, &base, NULL) != KERR_NONE || base != want)
			appended_ok = 0;
		log_close(l);
		/* now and then: the appended batch survives a clean restart */
		if ((cut - f.pos) % 8 == 0) {
			l = open_log(dir, &c);
			if (log_end_offset(l) != want + 1)
				appended_ok = 0;
			log_close(l);
		}
		rm_rf(dir);
	}
	slog_set_level(SLOG_INFO);
	ok(all_ok, "%s: cut at every byte of the last batch (%lld bytes): earlier batches intact, nothing partial",
	   what, (long long)f.size);
	if (!roll_after_checkpoint)
		ok(scanned_ok, "only the bytes after the checkpoint were scanned, the torn tail counted");
	ok(nocp_ok, "without a checkpoint every batch is scanned");
	ok(appended_ok, "appends continue at the right offset after every cut");

	/* random corruption inside the last batch */
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	int corrupt_ok = 1, dropped = 0, kept = 0;
	slog_set_level(SLOG_ERROR);
	for (int k = 0; k < 100; k++) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		int64_t at = f.pos + (int64_t)(rng % (uint64_t)f.size);
		uint8_t mask = (uint8_t)(1u << ((rng >> 32) % 8));
		char dir[PATH_MAX], p[PATH_MAX];
		new_dir(dir, sizeof dir);
		copy_dir(f.snap, dir);
		seg_path(p, sizeof p, dir, f.seg_base, "log");
		int fd = open(p, O_RDWR);
		uint8_t b;
		if (pread(fd, &b, 1, at) != 1)
			BAIL_OUT("pread");
		b ^= mask;
		if (pwrite(fd, &b, 1, at) != 1)
			BAIL_OUT("pwrite");
		close(fd);
		struct log_config c = cfg();
		struct log *l = open_log(dir, &c);
		int bad = 0;
		int64_t reached = read_all(l, &bad);
		int64_t rel = at - f.pos;
		/* The leader epoch (bytes 12..15) is outside the CRC, as in Kafka: such a flip is
		 * undetectable and harmless; anything else must drop the batch. */
		bool epoch = rel >= 12 && rel < 16;
		int64_t want = epoch ? f.end : f.base;
		if (log_end_offset(l) != want || reached != want || bad) {
			if (corrupt_ok)
				tap_diag("flip at +%lld (mask %02x): end %lld want %lld", (long long)rel, mask,
					 (long long)log_end_offset(l), (long long)want);
			corrupt_ok = 0;
		}
		if (want == f.base)
			dropped++;
		else
			kept++;
		int64_t base;
		struct batchgen_opts g = gen(1, 10, 9000);
		if (append_wait(l, &g, &base, NULL) != KERR_NONE || base != want)
			corrupt_ok = 0;
		log_close(l);
		rm_rf(dir);
	}
	slog_set_level(SLOG_INFO);
	ok(corrupt_ok, "%s: random byte flips in the last batch: it is dropped (%d) or, for the "
	   "leader epoch, kept intact (%d); appends continue", what, dropped, kept);
	rm_rf(f.snap);
}

/* A corrupt batch in a middle segment after the checkpoint: cut there, later segments gone. */
static void test_middle_corruption(void)
{
	char dir[PATH_MAX], snap[PATH_MAX], p[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = cfg();
	c.segment_bytes = 1000;
	struct log *l = open_log(dir, &c);
	struct batchgen_opts g = gen(2, 50, 1000);
	append_wait(l, &g, NULL, NULL);
	log_close(l);
	l = open_log(dir, &c);
	int64_t bases[40];
	size_t sizes[40];
	for (int i = 0; i < 40; i++) {
		g = gen(2, 100, 2000 + i);
		append_wait(l, &g, &bases[i], &sizes[i]);
	}
	uring_drain(&ur);
	int segs = log_segment_count(l);
	new_dir(snap, sizeof snap);
	copy_dir(dir, snap);
	log_close(l);
	/* find a segment in the middle and flip a byte inside its second batch */
	DIR *d = opendir(snap);
	int64_t list[256];
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		int64_t b;
		char ext[16];
		if (sscanf(de->d_name, "%20" SCNd64 ".%15s", &b, ext) == 2 && !strcmp(ext, "log") && n < 256)
			list[n++] = b;
	}
	closedir(d);
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && list[j - 1] > list[j]; j--) {
			int64_t t = list[j];
			list[j] = list[j - 1];
			list[j - 1] = t;
		}
	int mid = n / 2;
	int64_t victim = list[mid];
	int k = 0;
	while (k < 40 && bases[k] != victim)
		k++;
	ok(n == segs && n >= 5 && k < 39 && bases[k + 1] < list[mid + 1], "fixture: %d segments, victim %lld", n,
	   (long long)victim);
	seg_path(p, sizeof p, snap, victim, "log");
	int fd = open(p, O_RDWR);
	uint8_t b;
	int64_t at = (int64_t)sizes[k] + 40; /* inside the segment's second batch */
	pread(fd, &b, 1, at);
	b ^= 0x10;
	pwrite(fd, &b, 1, at);
	close(fd);
	slog_set_level(SLOG_ERROR);
	l = open_log(snap, &c);
	slog_set_level(SLOG_INFO);
	is_int(log_end_offset(l), bases[k + 1], "log ends before the corrupt batch");
	is_int(log_segment_count(l), mid + 1, "segments after the corrupt one deleted");
	seg_path(p, sizeof p, snap, list[mid + 1], "log");
	ok(access(p, F_OK) != 0, "their files are gone");
	int bad = 0;
	is_int(read_all(l, &bad), bases[k + 1], "everything before it readable");
	is_int(bad, 0, "valid slices");
	int64_t base;
	append_wait(l, &g, &base, NULL);
	is_int(base, bases[k + 1], "appends continue there");
	log_close(l);
	rm_rf(snap);
	rm_rf(dir);
}

/* The periodic (asynchronous) checkpoint moves the recovery point: a crash after it scans
 * only what came later, and the active segment's index written with it stays usable. */
static void test_periodic_checkpoint(void)
{
	char dir[PATH_MAX], snap[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = cfg();
	c.index_interval_bytes = 100;
	struct log *l = open_log(dir, &c);
	int64_t base[64], last[64];
	for (int i = 0; i < 40; i++) {
		struct batchgen_opts g = gen(1 + i % 3, 50, 1000 + i * 10);
		append_wait(l, &g, &base[i], NULL);
		last[i] = base[i] + g.n_records - 1;
	}
	log_tick(l, st_now_ms() + 61000);
	uring_drain(&ur);
	struct log_stats st;
	log_get_stats(l, &st);
	ok(st.checkpoints >= 2, "tick wrote a checkpoint (%lld so far)", (long long)st.checkpoints);
	struct batchgen_opts g = gen(2, 50, 5000);
	append_wait(l, &g, &base[40], NULL);
	last[40] = base[40] + 1;
	new_dir(snap, sizeof snap);
	copy_dir(dir, snap);
	log_close(l);
	char p[PATH_MAX];
	seg_path(p, sizeof p, snap, 0, "index");
	ok(file_size(p) >= 5 * 8, "the checkpoint wrote the active segment's index (%lld bytes)",
	   (long long)file_size(p));
	struct log *r = open_log(snap, &c);
	log_get_stats(r, &st);
	is_int(st.open_batches_scanned, 1, "crash after the periodic checkpoint: only the later batch scanned");
	is_int(log_end_offset(r), last[40] + 1, "and kept");
	int exact = 1;
	for (int b = 0; b <= 40; b++)
		for (int64_t o = base[b]; o <= last[b]; o++) {
			struct log_slice s;
			if (log_read(r, o, INT64_MAX, 1, true, &s) != KERR_NONE || s.first_offset != base[b] ||
			    s.next_offset != last[b] + 1)
				exact = 0;
			log_slice_release(&s);
		}
	ok(exact, "every offset found through the index written by the checkpoint");
	log_get_stats(r, &st);
	is_int(st.index_rebuilds, 0, "that index needed no rebuild");
	log_close(r);
	rm_rf(snap);
	rm_rf(dir);
}

/* ---- indexes -------------------------------------------------------------------------------------- */

static void test_index_damage(void)
{
	char dir[PATH_MAX], p[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = cfg();
	c.segment_bytes = 3000;
	c.index_interval_bytes = 150;
	struct log *l = open_log(dir, &c);
	static int64_t base[400], last[400], ts0[400];
	int nb = 0;
	for (int i = 0; i < 150; i++) {
		struct batchgen_opts g = gen(1 + i % 4, 40, 10000 + i * 10);
		append_wait(l, &g, &base[nb], NULL);
		last[nb] = base[nb] + g.n_records - 1;
		ts0[nb] = g.base_ts_ms;
		nb++;
	}
	uring_drain(&ur);
	int segs = log_segment_count(l);
	log_close(l);
	/* the segment bases, in order */
	int64_t sb[64];
	int ns = 0;
	for (int i = 0; i < nb && ns < 64; i++) {
		seg_path(p, sizeof p, dir, base[i], "log");
		if (access(p, F_OK) == 0)
			sb[ns++] = base[i];
	}
	ok(ns == segs && ns >= 6, "fixture: %d segments", ns);
	/* originals, to compare the rebuilt files with */
	static const char *const ext[2] = { "index", "timeindex" };
	uint8_t *orig[6][2];
	size_t olen[6][2];
	int victims[6] = { 0, 1, 2, 3, 4, ns - 1 };
	for (int v = 0; v < 6; v++)
		for (int e = 0; e < 2; e++) {
			seg_path(p, sizeof p, dir, sb[victims[v]], ext[e]);
			orig[v][e] = read_file(p, &olen[v][e]);
		}
	ok(olen[0][0] >= 16 && olen[1][1] >= 24, "the fixture's indexes have several entries");
	/* damage */
	seg_path(p, sizeof p, dir, sb[0], "index");
	unlink(p);                                                  /* missing */
	seg_path(p, sizeof p, dir, sb[1], "timeindex");
	{
		uint8_t *t = malloc(olen[1][1]);
		memcpy(t, orig[1][1], olen[1][1]);
		memcpy(t, orig[1][1] + 12, 12);                     /* not monotonic */
		memcpy(t + 12, orig[1][1], 12);
		write_file(p, t, olen[1][1]);
		free(t);
	}
	seg_path(p, sizeof p, dir, sb[2], "index");
	write_file(p, orig[2][0], olen[2][0] - 3);                  /* wrong size */
	seg_path(p, sizeof p, dir, sb[3], "index");
	unlink(p);
	seg_path(p, sizeof p, dir, sb[3], "timeindex");
	unlink(p);                                                  /* .log without any index */
	seg_path(p, sizeof p, dir, sb[4], "index");
	{
		uint8_t *t = calloc(1, olen[4][0] + 800);                /* Kafka-style preallocated tail */
		memcpy(t, orig[4][0], olen[4][0]);
		write_file(p, t, olen[4][0] + 800);
		free(t);
	}
	seg_path(p, sizeof p, dir, sb[ns - 1], "index");
	{
		uint8_t *t = malloc(olen[5][0] + 8);
		memcpy(t, orig[5][0], olen[5][0]);
		memset(t + olen[5][0], 0, 8);                       /* active segment: zero entry */
		write_file(p, t, olen[5][0] + 8);
		free(t);
	}
	slog_set_level(SLOG_ERROR);
	l = open_log(dir, &c);
	/* every offset finds its batch, timestamps are exact */
	int exact = 1;
	for (int b = 0; b < nb; b++) {
		for (int64_t o = base[b]; o <= last[b]; o++) {
			struct log_slice s;
			if (log_read(l, o, INT64_MAX, 1, true, &s) != KERR_NONE || s.first_offset != base[b] ||
			    s.next_offset != last[b] + 1)
				exact = 0;
			log_slice_release(&s);
		}
		int64_t off, ts;
		if (log_offset_for_timestamp(l, ts0[b], &off, &ts) != KERR_NONE || off != base[b] || ts != ts0[b])
			exact = 0;
	}
	slog_set_level(SLOG_INFO);
	ok(exact, "lookups by offset and timestamp right after index damage");
	struct log_stats st;
	log_get_stats(l, &st);
	ok(st.index_rebuilds >= 6, "%lld indexes rebuilt", (long long)st.index_rebuilds);
	log_close(l);
	int same = 1;
	for (int v = 0; v < 6; v++)
		for (int e = 0; e < 2; e++) {
			seg_path(p, sizeof p, dir, sb[victims[v]], ext[e]);
			size_t len;
			uint8_t *now = read_file(p, &len);
			if (!now || len != olen[v][e] || memcmp(now, orig[v][e], len) != 0) {
				if (same)
					tap_diag("segment %lld .%s: %zu bytes, originally %zu", (long long)sb[victims[v]],
						 ext[e], now ? len : 0, olen[v][e]);
				same = 0;
			}
			free(now);
			free(orig[v][e]);
		}
	ok(same, "rebuilt index files are byte-identical to the originals");
	rm_rf(dir);
}

static void test_leftovers(void)
{
	char dir[PATH_MAX], p[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = cfg();
	struct log *l = open_log(dir, &c);
	struct batchgen_opts g = gen(2, 10, 1000);
	append_wait(l, &g, NULL, NULL);
	log_close(l);
	static const char *const junk[] = { "strata-checkpoint.tmp", "00000000000000000002.log.deleted",
					    "00000000000000000004.log.cleaned", "00000000000000099999.index",
					    "00000000000000099999.timeindex", "00000000000000000007.index.swap" };
	for (size_t i = 0; i < ST_ARRAY_LEN(junk); i++) {
		join(p, sizeof p, dir, junk[i]);
		write_file(p, "x", 1);
	}
	slog_set_level(SLOG_WARN);
	l = open_log(dir, &c);
	slog_set_level(SLOG_INFO);
	int gone = 1;
	for (size_t i = 0; i < ST_ARRAY_LEN(junk); i++) {
		join(p, sizeof p, dir, junk[i]);
		gone &= access(p, F_OK) != 0;
	}
	ok(gone, "temp, .deleted, .cleaned, .swap and orphan index files removed at open");
	is_int(log_end_offset(l), 2, "log intact");
	log_close(l);
	/* a segment file without index files */
	seg_path(p, sizeof p, dir, 0, "index");
	unlink(p);
	seg_path(p, sizeof p, dir, 0, "timeindex");
	unlink(p);
	l = open_log(dir, &c);
	is_int(log_end_offset(l), 2, "active segment without index files opens");
	log_close(l);
	seg_path(p, sizeof p, dir, 0, "index");
	ok(file_size(p) == 0, "its (empty: one small batch) offset index was recreated");
	seg_path(p, sizeof p, dir, 0, "timeindex");
	ok(file_size(p) == 12, "its time index was recreated with the final entry");
	rm_rf(dir);
}

/* ---- 10,000 segments -------------------------------------------------------------------------------- */

static void write_checkpoint(const char *dir, int64_t lso, int64_t rp, int64_t seg, int64_t pos, int64_t max_ts,
			     int64_t max_off)
{
	char text[512], p[PATH_MAX];
	int n = snprintf(text, sizeof text,
			 "strata-log-checkpoint 1\nlog_start_offset %" PRId64 "\nrecovery_offset %" PRId64
			 "\nrecovery_segment %" PRId64 "\nrecovery_position %" PRId64
			 "\nrecovery_max_timestamp %" PRId64 " %" PRId64 "\n",
			 lso, rp, seg, pos, max_ts, max_off);
	n += snprintf(text + n, sizeof text - (size_t)n, "crc %" PRIu32 "\n", crc32c(0, text, (size_t)n));
	join(p, sizeof p, dir, "strata-checkpoint");
	write_file(p, text, (size_t)n);
}

static void test_many_segments(void)
{
	enum { NSEG = 10000, PER = 2 };
	char dir[PATH_MAX], p[PATH_MAX];
	new_dir(dir, sizeof dir);
	mkdir(dir, 0755);
	uint8_t b[512];
	int64_t t0 = st_mono_ns();
	size_t size = 0;
	for (int i = 0; i < NSEG; i++) {
		int64_t base = (int64_t)i * PER;
		struct batchgen_opts g = gen(PER, 20, 100000 + base);
		size = batchgen_build_opts(b, sizeof b, &g);
		st_put_be64(b, (uint64_t)base);
		seg_path(p, sizeof p, dir, base, "log");
		write_file(p, b, size);
		seg_path(p, sizeof p, dir, base, "index");
		write_file(p, "", 0);
		/* Kafka's closed segment: a final time entry (max timestamp, its batch's last offset) */
		uint8_t e[12];
		st_put_be64(e, (uint64_t)(100000 + base + PER - 1));
		st_put_be32(e + 8, PER - 1);
		seg_path(p, sizeof p, dir, base, "timeindex");
		write_file(p, e, sizeof e);
	}
	int64_t last_base = (int64_t)(NSEG - 1) * PER;
	write_checkpoint(dir, 0, (int64_t)NSEG * PER, last_base, (int64_t)size, 100000 + last_base + PER - 1,
			 last_base + PER - 1);
	tap_diag("created %d segments in %.2f s", NSEG, (double)(st_mono_ns() - t0) / 1e9);
	struct log_config c = cfg();
	t0 = st_mono_ns();
	struct log *l = open_log(dir, &c);
	double open_s = (double)(st_mono_ns() - t0) / 1e9;
	tap_diag("open with %d segments (clean checkpoint): %.3f s", NSEG, open_s);
	struct log_stats st;
	log_get_stats(l, &st);
	is_int(log_segment_count(l), NSEG, "%d segments", NSEG);
	is_int(st.open_batches_scanned, 0, "clean open scanned nothing");
	is_int(log_end_offset(l), (int64_t)NSEG * PER, "end offset");
	is_int(log_high_watermark(l), (int64_t)NSEG * PER, "high watermark");
	int exact = 1;
	uint64_t rng = 12345;
	for (int k = 0; k < 500; k++) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		int64_t o = (int64_t)((rng >> 33) % (uint64_t)(NSEG * PER));
		struct log_slice s;
		if (log_read(l, o, INT64_MAX, 1 << 20, true, &s) != KERR_NONE || s.first_offset != o - o % PER ||
		    s.next_offset != s.first_offset + PER)
			exact = 0;
		log_slice_release(&s);
		int64_t off, ts;
		if (log_offset_for_timestamp(l, 100000 + o, &off, &ts) != KERR_NONE || off != o || ts != 100000 + o)
			exact = 0;
	}
	ok(exact, "random reads and timestamp lookups across the segments");
	int64_t off, ts;
	log_max_timestamp(l, &off, &ts);
	ok(off == NSEG * PER - 1 && ts == 100000 + NSEG * PER - 1, "max timestamp");
	int64_t base;
	struct batchgen_opts g = gen(1, 10, 200000 + NSEG * PER);
	append_wait(l, &g, &base, NULL);
	is_int(base, (int64_t)NSEG * PER, "append after the last segment");
	log_get_stats(l, &st);
	is_int(st.index_rebuilds, 0, "no index rebuilt");
	t0 = st_mono_ns();
	log_close(l);
	tap_diag("close: %.3f s", (double)(st_mono_ns() - t0) / 1e9);
	t0 = st_mono_ns();
	l = open_log(dir, &c);
	tap_diag("reopen after a clean close: %.3f s", (double)(st_mono_ns() - t0) / 1e9);
	log_get_stats(l, &st);
	is_int(st.open_batches_scanned, 0, "reopen scanned nothing");
	c.retention_bytes = (int64_t)size * 100;
	c.retention_ms = -1;
	log_set_config(l, &c);
	int del = log_retention_run(l, st_now_ms());
	ok(del >= NSEG - 102 && del <= NSEG - 99, "retention.bytes deleted %d segments", del);
	log_close(l);
	/* no checkpoint: everything is recovered (one syncfs, no fsync per segment) */
	join(p, sizeof p, dir, "strata-checkpoint");
	unlink(p);
	t0 = st_mono_ns();
	l = open_log(dir, &c);
	tap_diag("open of %d segments without a checkpoint (full recovery): %.3f s", log_segment_count(l),
		 (double)(st_mono_ns() - t0) / 1e9);
	log_get_stats(l, &st);
	ok(st.open_batches_scanned > log_segment_count(l), "without a checkpoint every batch is scanned (%lld)",
	   (long long)st.open_batches_scanned);
	log_close(l);
	rm_rf(dir);
}

/* ---- rolls through pre-opened files: every intermediate state a crash can leave ---------------- */

static int count_suffix(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	size_t m = strlen(suffix);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t k = strlen(de->d_name);
		if (k >= m && strcmp(de->d_name + k - m, suffix) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* The largest segment base in dir (the active segment's). */
static int64_t last_base(const char *dir)
{
	DIR *d = opendir(dir);
	int64_t best = -1;
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		size_t k = strlen(de->d_name);
		if (k == 24 && strcmp(de->d_name + 20, ".log") == 0) {
			int64_t b = strtoll(de->d_name, NULL, 10);
			if (b > best)
				best = b;
		}
	}
	if (d)
		closedir(d);
	return best;
}

static void seg_to_tmp(const char *dir, int64_t base, const char *ext)
{
	char a[PATH_MAX], b[PATH_MAX], name[64];
	seg_path(a, sizeof a, dir, base, ext);
	snprintf(name, sizeof name, "strata-spare-77.%s.tmp", ext);
	join(b, sizeof b, dir, name);
	if (rename(a, b) < 0)
		BAIL_OUT("rename %s: %s", a, strerror(errno));
}

/* Opens a crash copy, checks it serves exactly [0, want_end) once, appends one batch at
 * want_end, and checks a reopen keeps it. */
static void check_crash_copy(const char *snap, const struct log_config *c, int64_t want_end, const char *what)
{
	slog_set_level(SLOG_ERROR);
	struct log *l = open_log(snap, c);
	slog_set_level(SLOG_INFO);
	is_int(count_suffix(snap, ".tmp"), 0, "%s: temporary files removed at open", what);
	is_int(log_end_offset(l), want_end, "%s: log end offset", what);
	int bad = 0;
	is_int(read_all(l, &bad), want_end, "%s: every record below it readable", what);
	is_int(bad, 0, "%s: whole, CRC-valid batches with contiguous offsets", what);
	struct batchgen_opts g = gen(2, 100, 9000);
	int64_t base = -1;
	is_int(append_wait(l, &g, &base, NULL), KERR_NONE, "%s: appends continue", what);
	is_int(base, want_end, "%s: at the log end (no offset served twice)", what);
	is_int(log_close(l), 0, "%s: clean close", what);
	l = open_log(snap, c);
	bad = 0;
	is_int(read_all(l, &bad), want_end + 2, "%s: reopened: everything readable", what);
	is_int(bad, 0, "%s: reopened: slices valid", what);
	log_close(l);
}

static void test_spare_states(void)
{
	char dir[PATH_MAX], snap[PATH_MAX], p[PATH_MAX];
	new_dir(dir, sizeof dir);
	struct log_config c = cfg();
	c.segment_bytes = 3000;
	struct log *l = open_log(dir, &c);
	struct batchgen_opts g = gen(2, 100, 1000);
	/* Draining after each append lets the pre-opens finish before the next roll. */
	for (int i = 0; i < 500 && log_segment_count(l) < 3; i++) {
		append_wait(l, &g, NULL, NULL);
		uring_drain(&ur);
	}
	struct log_stats st;
	log_get_stats(l, &st);
	ok(st.rolls >= 2 && st.rolls_sync == 0, "rolls adopt pre-opened files (%lld rolls, %lld created on the reactor)",
	   (long long)st.rolls, (long long)st.rolls_sync);
	for (int i = 0; i < 500 && count_suffix(dir, ".tmp") < 3 && log_segment_count(l) == 3; i++) {
		append_wait(l, &g, NULL, NULL);
		uring_drain(&ur);
	}
	ok(count_suffix(dir, ".log.tmp") == 1 && count_suffix(dir, ".index.tmp") == 1 &&
	   count_suffix(dir, ".timeindex.tmp") == 1 && log_segment_count(l) == 3,
	   "half way to the next roll its files are open under temporary names");
	is_int(count_suffix(dir, ".log"), 3, "the rolled segments carry their final names");
	int64_t end = log_end_offset(l), lb = last_base(dir);
	ok(lb > 0 && lb < end, "the active segment starts at %lld (log end %lld)", (long long)lb, (long long)end);

	/* A: killed with the spare open (nothing in it yet) */
	new_dir(snap, sizeof snap);
	copy_dir(dir, snap);
	check_crash_copy(snap, &c, end, "spare open");
	rm_rf(snap);

	/* B: killed after a roll adopted the spare, before any rename: the newest segment still
	 * under temporary names. Rounds wait for the renames, so nothing in it was acknowledged. */
	new_dir(snap, sizeof snap);
	copy_dir(dir, snap);
	seg_to_tmp(snap, lb, "log");
	seg_to_tmp(snap, lb, "index");
	seg_to_tmp(snap, lb, "timeindex");
	check_crash_copy(snap, &c, lb, "no rename done");
	rm_rf(snap);

	/* C: only the .log renamed: its indexes are rebuilt */
	new_dir(snap, sizeof snap);
	copy_dir(dir, snap);
	seg_to_tmp(snap, lb, "index");
	seg_to_tmp(snap, lb, "timeindex");
	check_crash_copy(snap, &c, end, ".log renamed, indexes not");
	seg_path(p, sizeof p, snap, lb, "timeindex");
	ok(file_size(p) > 0, ".log renamed, indexes not: the time index was recreated");
	rm_rf(snap);

	/* D: only the indexes renamed: without their .log they are orphans */
	new_dir(snap, sizeof snap);
	copy_dir(dir, snap);
	seg_to_tmp(snap, lb, "log");
	check_crash_copy(snap, &c, lb, "indexes renamed, .log not");
	rm_rf(snap);

	/* E: a half-written checkpoint temp file next to a good checkpoint */
	is_int(log_close(l), 0, "clean close");
	is_int(count_suffix(dir, ".tmp"), 0, "a clean close leaves no temporary file");
	join(p, sizeof p, dir, "strata-checkpoint.tmp");
	write_file(p, "strata-log-checkpoint 1\nlog_start_offs", 38);
	slog_set_level(SLOG_WARN);
	l = open_log(dir, &c);
	slog_set_level(SLOG_INFO);
	log_get_stats(l, &st);
	ok(access(p, F_OK) != 0, "half-written checkpoint temp file removed at open");
	is_int(st.open_batches_scanned, 0, "the good checkpoint is used (nothing scanned)");
	is_int(log_end_offset(l), end, "log intact");
	log_close(l);
	rm_rf(dir);
}

int main(void)
{
	snprintf(root, sizeof root, "%s/strata-rec-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(root))
		BAIL_OUT("mkdtemp");
	if (uring_init(&ur, 256) < 0)
		BAIL_OUT("uring_init");
	test_tail_cuts(false);
	test_tail_cuts(true);
	test_middle_corruption();
	test_periodic_checkpoint();
	test_index_damage();
	test_leftovers();
	test_many_segments();
	test_spare_states();
	uring_fini(&ur);
	rm_rf(root);
	return tap_done();
}
