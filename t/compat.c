/* t/compat.c -- the C half of t/compat.sh (not a test by itself): drives log.h to write a
 * partition directory for t/kafka_segment_reader.py to referee, and reads a directory that
 * the python writer laid out the way Kafka does. Prints TAP lines (plan at the end).
 *
 *   compat-driver write DIR MANIFEST [--lat] [--seed N] [--batches N] [--segment-bytes N]
 *   compat-driver read  DIR MANIFEST OUT_MANIFEST [--lat]
 *
 * MANIFEST lines (shared with the python side):
 *   B <base_offset> <batch hex>
 *   R <offset> <timestamp> <key> <value> <n_headers> [<hkey> <hvalue>]...  ('-' null, '=' empty) */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata/common.h"
#include "strata/compress.h"
#include "strata/crc32c.h"
#include "strata/kerr.h"
#include "strata/log.h"
#include "strata/slog.h"
#include "strata/uring.h"
#include "tap.h"
#include "logtest.h"

/* ---- manifest ------------------------------------------------------------------------------- */

struct mf_batch {
	int64_t base, last;
	uint8_t *bytes;
	size_t len;
};
struct mf_rec {
	int64_t offset, ts;
};
struct manifest {
	struct mf_batch *b;
	size_t nb, cap_b;
	struct mf_rec *r;
	size_t nr, cap_r;
};

static void mf_add_batch(struct manifest *m, const uint8_t *bytes, size_t len)
{
	if (m->nb == m->cap_b) {
		m->cap_b = m->cap_b ? m->cap_b * 2 : 256;
		m->b = realloc(m->b, m->cap_b * sizeof(*m->b));
		ST_ASSERT(m->b);
	}
	struct mf_batch *b = &m->b[m->nb++];
	b->base = (int64_t)st_be64(bytes);
	b->last = b->base + (int32_t)st_be32(bytes + 23);
	b->bytes = malloc(len);
	ST_ASSERT(b->bytes);
	memcpy(b->bytes, bytes, len);
	b->len = len;
}

static void mf_add_rec(struct manifest *m, int64_t offset, int64_t ts)
{
	if (m->nr == m->cap_r) {
		m->cap_r = m->cap_r ? m->cap_r * 2 : 1024;
		m->r = realloc(m->r, m->cap_r * sizeof(*m->r));
		ST_ASSERT(m->r);
	}
	m->r[m->nr++] = (struct mf_rec){ offset, ts };
}

static void mf_free(struct manifest *m)
{
	for (size_t i = 0; i < m->nb; i++)
		free(m->b[i].bytes);
	free(m->b);
	free(m->r);
	memset(m, 0, sizeof(*m));
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int mf_load(struct manifest *m, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = 0;
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[0] == 'B') {
			char *sp = strchr(line + 2, ' ');
			if (!sp) {
				rc = -EINVAL;
				break;
			}
			char *hex = sp + 1;
			size_t hl = strcspn(hex, "\n");
			uint8_t *bytes = malloc(hl / 2 + 1);
			ST_ASSERT(bytes);
			for (size_t i = 0; i + 1 < hl; i += 2) {
				int a = hexval(hex[i]), b = hexval(hex[i + 1]);
				if (a < 0 || b < 0) {
					rc = -EINVAL;
					break;
				}
				bytes[i / 2] = (uint8_t)(a << 4 | b);
			}
			if (rc == 0 && hl >= 122)
				mf_add_batch(m, bytes, hl / 2);
			else
				rc = -EINVAL;
			free(bytes);
		} else if (line[0] == 'R') {
			long long off, ts;
			if (sscanf(line, "R %lld %lld", &off, &ts) != 2) {
				rc = -EINVAL;
				break;
			}
			mf_add_rec(m, off, ts);
		}
		if (rc)
			break;
	}
	free(line);
	fclose(f);
	return rc;
}

static void put_hex(FILE *f, const uint8_t *p, int32_t len)
{
	if (len < 0) {
		fputc('-', f);
		return;
	}
	if (len == 0) {
		fputc('=', f);
		return;
	}
	for (int32_t i = 0; i < len; i++)
		fprintf(f, "%02x", p[i]);
}

static void mf_write_batch(FILE *f, const uint8_t *bytes, size_t len, const struct lt_rec *recs,
			   int n, int64_t lat_ms)
{
	int64_t base = (int64_t)st_be64(bytes);
	fprintf(f, "B %lld ", (long long)base);
	put_hex(f, bytes, (int32_t)len);
	fputc('\n', f);
	for (int i = 0; i < n; i++) {
		const struct lt_rec *r = &recs[i];
		fprintf(f, "R %lld %lld ", (long long)(base + i), (long long)(lat_ms >= 0 ? lat_ms : r->ts));
		put_hex(f, r->key, r->key_len);
		fputc(' ', f);
		put_hex(f, r->value, r->value_len);
		fprintf(f, " %d", r->n_headers);
		for (int h = 0; h < r->n_headers; h++) {
			fputc(' ', f);
			put_hex(f, r->hkey[h], r->hkey_len[h]);
			fputc(' ', f);
			put_hex(f, r->hval[h], r->hval_len[h]);
		}
		fputc('\n', f);
	}
}

/* ---- verification of a log against a manifest ----------------------------------------------- */

static void verify_log(struct log *l, const struct manifest *m, const char *tag)
{
	ST_ASSERT(m->nb > 0);
	int64_t first = m->b[0].base, end = m->b[m->nb - 1].last + 1;
	is_int(log_start_offset(l), first, "%s: log start offset", tag);
	is_int(log_end_offset(l), end, "%s: log end offset = last manifest offset + 1", tag);
	is_int(log_high_watermark(l), end, "%s: high watermark = log end offset", tag);
	int64_t hw = log_high_watermark(l);

	/* every batch alone, from its base and from an offset inside it */
	int bad = 0;
	for (size_t i = 0; i < m->nb; i++) {
		const struct mf_batch *b = &m->b[i];
		for (int k = 0; k < 2; k++) {
			int64_t at = k == 0 ? b->base : b->base + (b->last - b->base) / 2 + (b->last > b->base);
			struct log_slice s;
			int kerr = log_read(l, at, hw, 1, true, &s);
			uint8_t *got = kerr == KERR_NONE && s.len > 0 ? lt_slice_bytes(&s) : NULL;
			bool good = kerr == KERR_NONE && s.len == (int64_t)b->len && s.first_offset == b->base &&
				    s.next_offset == b->last + 1 && got && memcmp(got, b->bytes, b->len) == 0;
			if (!good && bad++ < 5)
				tap_diag("%s: read at %lld (batch %lld..%lld, %zu bytes): kerr %d len %lld first %lld next %lld%s",
					 tag, (long long)at, (long long)b->base, (long long)b->last, b->len, kerr,
					 (long long)s.len, (long long)s.first_offset, (long long)s.next_offset,
					 got ? (memcmp(got, b->bytes, ST_MIN((size_t)s.len, b->len)) ? " bytes differ" : "") : " no bytes");
			free(got);
			if (kerr == KERR_NONE)
				log_slice_release(&s);
		}
	}
	ok(bad == 0, "%s: each of %zu batches reads back byte-exact from its base and from inside it", tag, m->nb);

	/* sequential scan, 32 KiB at a time: whole batches, in order, nothing else */
	size_t bi = 0;
	int64_t off = first, slices = 0;
	bad = 0;
	for (int guard = 0; off < hw && guard < 1000000; guard++) {
		struct log_slice s;
		int kerr = log_read(l, off, hw, 32768, true, &s);
		if (kerr != KERR_NONE || s.len == 0) {
			tap_diag("%s: scan at %lld: kerr %d len %lld", tag, (long long)off, kerr,
				 kerr == KERR_NONE ? (long long)s.len : -1LL);
			if (kerr == KERR_NONE)
				log_slice_release(&s);
			bad++;
			break;
		}
		slices++;
		uint8_t *got = lt_slice_bytes(&s);
		int64_t pos = 0;
		if (s.first_offset != m->b[bi].base)
			bad++;
		while (got && pos < s.len && bi < m->nb) {
			const struct mf_batch *b = &m->b[bi];
			if (pos + (int64_t)b->len > s.len || memcmp(got + pos, b->bytes, b->len) != 0) {
				if (bad++ < 3)
					tap_diag("%s: scan: batch %lld not at slice position %lld", tag, (long long)b->base, (long long)pos);
				break;
			}
			pos += (int64_t)b->len;
			bi++;
		}
		if (pos != s.len || (s.len > 32768 && pos != (int64_t)m->b[bi - 1].len) ||
		    s.next_offset != m->b[bi - 1].last + 1)
			bad++;
		off = s.next_offset;
		free(got);
		log_slice_release(&s);
		if (bad)
			break;
	}
	ok(bad == 0 && bi == m->nb, "%s: scan by 32 KiB slices returns exactly the %zu batches in order (%lld slices)",
	   tag, m->nb, (long long)slices);

	/* KIP-74: without min_one a too-small max_bytes gives nothing; upto_offset is exclusive */
	struct log_slice s;
	int kerr = log_read(l, first, hw, 10, false, &s);
	ok(kerr == KERR_NONE && s.len == 0, "%s: max_bytes 10 without min_one: empty slice", tag);
	if (kerr == KERR_NONE)
		log_slice_release(&s);
	if (m->nb >= 3) {
		int64_t upto = m->b[1].base;
		kerr = log_read(l, first, upto, 1 << 30, false, &s);
		ok(kerr == KERR_NONE && s.len == (int64_t)m->b[0].len && s.next_offset == upto,
		   "%s: upto_offset = second batch's base: only the first batch", tag);
		if (kerr == KERR_NONE)
			log_slice_release(&s);
	}
	kerr = log_read(l, end, hw, 1 << 20, true, &s);
	ok(kerr == KERR_NONE && s.len == 0, "%s: read at the log end: empty", tag);
	if (kerr == KERR_NONE)
		log_slice_release(&s);
	is_int(log_read(l, end + 1, hw, 1 << 20, true, &s), KERR_OFFSET_OUT_OF_RANGE,
	       "%s: read past the log end: OFFSET_OUT_OF_RANGE", tag);
	if (first > 0)
		is_int(log_read(l, first - 1, hw, 1 << 20, true, &s), KERR_OFFSET_OUT_OF_RANGE,
		       "%s: read below the log start: OFFSET_OUT_OF_RANGE", tag);

	/* timestamps: record-exact earliest offset with ts >= target, against brute force */
	int64_t max_ts = INT64_MIN, min_ts = INT64_MAX;
	for (size_t i = 0; i < m->nr; i++) {
		max_ts = ST_MAX(max_ts, m->r[i].ts);
		min_ts = ST_MIN(min_ts, m->r[i].ts);
	}
	struct lt_rng rng = { 0x1234567 };
	int tried = 0;
	bad = 0;
	for (int t = 0; t < 700; t++) {
		int64_t target;
		if (t == 0)
			target = min_ts - 1;
		else if (t == 1)
			target = max_ts + 1;
		else if (t == 2)
			target = max_ts;
		else {
			const struct mf_rec *r = &m->r[lt_next(&rng) % m->nr];
			target = r->ts + lt_range(&rng, -1, 1);
		}
		int64_t want_off = -1, want_ts = -1;
		for (size_t i = 0; i < m->nr; i++)
			if (m->r[i].ts >= target && (want_off < 0 || m->r[i].offset < want_off)) {
				want_off = m->r[i].offset;
				want_ts = m->r[i].ts;
			}
		int64_t got_off = -2, got_ts = -2;
		int rc = log_offset_for_timestamp(l, target, &got_off, &got_ts);
		tried++;
		if (rc != 0 || got_off != want_off || (want_off >= 0 && got_ts != want_ts)) {
			if (bad++ < 5)
				tap_diag("%s: offset for timestamp %lld: rc %d got %lld/%lld want %lld/%lld", tag,
					 (long long)target, rc, (long long)got_off, (long long)got_ts,
					 (long long)want_off, (long long)want_ts);
		}
	}
	ok(bad == 0, "%s: %d offset-for-timestamp lookups match brute force over the records", tag, tried);

	int64_t mo = -2, mt = -2;
	int rc = log_max_timestamp(l, &mo, &mt);
	int64_t rec_ts = INT64_MIN, first_max = -1;
	for (size_t i = 0; i < m->nr; i++) {
		if (m->r[i].offset == mo)
			rec_ts = m->r[i].ts;
		if (m->r[i].ts == max_ts && (first_max < 0 || m->r[i].offset < first_max))
			first_max = m->r[i].offset;
	}
	ok(rc == 0 && mt == max_ts && rec_ts == max_ts,
	   "%s: max timestamp %lld at offset %lld (a record with it; earliest such is %lld)", tag,
	   (long long)mt, (long long)mo, (long long)first_max);
}

/* ---- write mode ------------------------------------------------------------------------------- */

struct wslot {
	struct log_append a;
	struct lt_rec *recs;
	int n;
	bool busy;
	size_t seq;
};

static struct {
	size_t acked;
	int64_t last_done_base;
	int order_bad;
	int kerr_bad;
} wstate = { 0, -1, 0, 0 };

static void wdone(struct log_append *a, int kerr)
{
	struct wslot *s = ST_CONTAINER_OF(a, struct wslot, a);
	s->busy = false;
	if (kerr != KERR_NONE) {
		if (wstate.kerr_bad++ < 5)
			tap_diag("append done with %s", kerr_name(kerr));
	}
	if (a->base_offset <= wstate.last_done_base)
		wstate.order_bad++;
	wstate.last_done_base = a->base_offset;
	wstate.acked++;
}

static int cmd_write(const char *dir, const char *mpath, bool lat, uint64_t seed, int nbatches,
		     int64_t segment_bytes)
{
	struct uring ur;
	if (uring_init(&ur, 256) != 0)
		BAIL_OUT("uring_init");
	struct log_config cfg;
	log_config_defaults(&cfg);
	cfg.segment_bytes = segment_bytes;
	cfg.log_append_time = lat;
	struct log *l;
	int rc = log_open(&ur, dir, &cfg, NULL, &l);
	if (rc != 0)
		BAIL_OUT("log_open %s: %s", dir, strerror(-rc));
	FILE *mf = fopen(mpath, "w");
	if (!mf)
		BAIL_OUT("open %s", mpath);

	struct lt_rng rng = { seed * 0x9E3779B97F4A7C15ull + 1 };
	static const int codecs[] = { COMPRESS_NONE, COMPRESS_NONE, COMPRESS_GZIP, COMPRESS_SNAPPY,
				      COMPRESS_LZ4, COMPRESS_ZSTD, COMPRESS_NONE };
	enum { WINDOW = 8 };
	struct wslot *all = calloc((size_t)nbatches, sizeof(*all));
	ST_ASSERT(all);
	int64_t ts = st_now_ms() - 3600 * 1000; /* within timestamp_before/after bounds */
	int64_t next_off = 0;
	int submitted = 0, inflight = 0, assign_bad = 0, lat_bad = 0;
	int64_t t_start = st_now_ms();
	for (int guard = 0; (submitted < nbatches || inflight > 0) && guard < 10000000; guard++) {
		while (submitted < nbatches && inflight < WINDOW) {
			struct wslot *s = &all[submitted];
			bool big = submitted == nbatches / 3 || submitted == 2 * nbatches / 3;
			static const int counts[] = { 1, 1, 2, 5, 10, 20, 40 };
			s->n = big ? 2 : counts[lt_next(&rng) % ST_ARRAY_LEN(counts)];
			s->recs = calloc((size_t)s->n, sizeof(*s->recs));
			ST_ASSERT(s->recs);
			for (int i = 0; i < s->n; i++) {
				/* mostly rising, now and then older than its neighbours (CreateTime allows it) */
				int64_t rts = ts + lt_range(&rng, 0, 3) - (lt_range(&rng, 0, 9) == 0 ? lt_range(&rng, 1, 5000) : 0);
				lt_rec_random(&rng, &s->recs[i], rts, big ? 60000 : 3000);
				if (big) {
					free(s->recs[i].value);
					s->recs[i].value_len = 60000;
					s->recs[i].value = lt_bytes(&rng, 60000, false);
				}
			}
			ts += lt_range(&rng, 1, 40);
			size_t len;
			int codec = codecs[submitted % ST_ARRAY_LEN(codecs)];
			s->a.data = lt_batch_build(s->recs, s->n, codec, &len);
			s->a.len = len;
			s->a.done = wdone;
			s->seq = (size_t)submitted;
			int kerr = log_append(l, &s->a);
			if (kerr != KERR_NONE)
				BAIL_OUT("log_append batch %d: %s", submitted, kerr_name(kerr));
			if (s->a.base_offset != next_off || s->a.last_offset != next_off + s->n - 1 ||
			    s->a.record_count != s->n || (lat ? s->a.log_append_time_ms < t_start : s->a.log_append_time_ms != -1))
				assign_bad++;
			next_off += s->n;
			s->busy = true;
			submitted++;
			inflight++;
		}
		size_t before = wstate.acked;
		rc = uring_run_once(&ur, 100);
		if (rc < 0 && rc != -ETIME && rc != -EINTR)
			BAIL_OUT("uring_run_once: %s", strerror(-rc));
		inflight -= (int)(wstate.acked - before);
	}
	ok(wstate.acked == (size_t)nbatches && wstate.kerr_bad == 0,
	   "write: %d appends (window %d) all acknowledged without error", nbatches, WINDOW);
	ok(assign_bad == 0, "write: log_append assigned contiguous offsets, counts%s", lat ? ", LogAppendTime" : "");
	ok(wstate.order_bad == 0, "write: acknowledgements came in offset order");

	struct manifest m;
	memset(&m, 0, sizeof(m));
	for (int i = 0; i < nbatches; i++) {
		struct wslot *s = &all[i];
		const uint8_t *b = s->a.data;
		if ((int64_t)st_be64(b) != s->a.base_offset || !lt_batch_crc_ok(b, s->a.len))
			lat_bad++;
		if (lat && (!(st_be16(b + 21) & 8) || (int64_t)st_be64(b + 35) != s->a.log_append_time_ms))
			lat_bad++;
		mf_write_batch(mf, b, s->a.len, s->recs, s->n, lat ? s->a.log_append_time_ms : -1);
		mf_add_batch(&m, b, s->a.len);
		for (int k = 0; k < s->n; k++)
			mf_add_rec(&m, s->a.base_offset + k, lat ? s->a.log_append_time_ms : s->recs[k].ts);
	}
	ok(lat_bad == 0, "write: the log rewrote base offsets%s in place, CRCs valid",
	   lat ? ", timestamp type and max timestamp" : "");
	if (fclose(mf) != 0)
		BAIL_OUT("write %s", mpath);

	ok(log_segment_count(l) > 3, "write: segments rolled (%d segments)", log_segment_count(l));
	verify_log(l, &m, "live");
	is_int(log_close(l), 0, "log_close");
	rc = log_open(&ur, dir, &cfg, NULL, &l);
	if (rc != 0)
		BAIL_OUT("log_open again: %s", strerror(-rc));
	verify_log(l, &m, "reopened");
	is_int(log_close(l), 0, "log_close after reopen");
	uring_fini(&ur);
	for (int i = 0; i < nbatches; i++) {
		for (int k = 0; k < all[i].n; k++)
			lt_rec_free(&all[i].recs[k]);
		free(all[i].recs);
		free(all[i].a.data);
	}
	free(all);
	mf_free(&m);
	return tap_done();
}

/* ---- read mode -------------------------------------------------------------------------------- */

static int cmd_read(const char *dir, const char *mpath, const char *outpath, bool lat)
{
	struct manifest m;
	memset(&m, 0, sizeof(m));
	int rc = mf_load(&m, mpath);
	if (rc != 0 || m.nb == 0)
		BAIL_OUT("manifest %s: %s", mpath, strerror(-rc));
	struct uring ur;
	if (uring_init(&ur, 256) != 0)
		BAIL_OUT("uring_init");
	struct log_config cfg;
	log_config_defaults(&cfg);
	cfg.segment_bytes = 64 * 1024;
	cfg.log_append_time = lat;
	struct log *l;
	rc = log_open(&ur, dir, &cfg, NULL, &l);
	if (rc != 0)
		BAIL_OUT("log_open %s: %s", dir, strerror(-rc));
	verify_log(l, &m, "kafka-written");

	/* then append on top: offsets continue, and the mixed directory reads back */
	FILE *out = fopen(outpath, "w");
	if (!out)
		BAIL_OUT("open %s", outpath);
	struct lt_rng rng = { 77 };
	int bad = 0;
	int64_t ts = st_now_ms() - 1000;
	for (int i = 0; i < 30; i++) {
		struct lt_rec recs[8];
		int n = (int)lt_range(&rng, 1, 8);
		for (int k = 0; k < n; k++)
			lt_rec_random(&rng, &recs[k], ts + k, 2000);
		size_t len;
		uint8_t *b = lt_batch_build(recs, n, i % 3 == 0 ? COMPRESS_ZSTD : COMPRESS_NONE, &len);
		int64_t want = log_end_offset(l);
		struct log_append a;
		int kerr = lt_append_sync(&ur, l, b, len, &a);
		if (kerr != KERR_NONE || a.base_offset != want)
			bad++;
		mf_write_batch(out, b, len, recs, n, lat ? a.log_append_time_ms : -1);
		mf_add_batch(&m, b, len);
		for (int k = 0; k < n; k++) {
			mf_add_rec(&m, a.base_offset + k, lat ? a.log_append_time_ms : recs[k].ts);
			lt_rec_free(&recs[k]);
		}
		free(b);
		ts += 10;
	}
	ok(bad == 0, "30 appends after the kafka-written data continue at the log end offset");
	if (fclose(out) != 0)
		BAIL_OUT("write %s", outpath);
	verify_log(l, &m, "kafka-written + appended");
	is_int(log_close(l), 0, "log_close");
	rc = log_open(&ur, dir, &cfg, NULL, &l);
	if (rc != 0)
		BAIL_OUT("log_open again: %s", strerror(-rc));
	verify_log(l, &m, "kafka-written + appended, reopened");
	is_int(log_close(l), 0, "log_close after reopen");
	uring_fini(&ur);
	mf_free(&m);
	return tap_done();
}

int main(int argc, char **argv)
{
	bool lat = false;
	uint64_t seed = 1;
	int nbatches = 400;
	int64_t segment_bytes = 48 * 1024;
	static const struct option lo[] = {
		{ "lat", no_argument, NULL, 'l' },
		{ "seed", required_argument, NULL, 's' },
		{ "batches", required_argument, NULL, 'b' },
		{ "segment-bytes", required_argument, NULL, 'g' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'l': lat = true; break;
		case 's': seed = strtoull(optarg, NULL, 10); break;
		case 'b': nbatches = atoi(optarg); break;
		case 'g': segment_bytes = atoll(optarg); break;
		default: return 2;
		}
	}
	slog_set_level(SLOG_WARN);
	if (argc - optind == 3 && strcmp(argv[optind], "write") == 0 && nbatches > 0)
		return cmd_write(argv[optind + 1], argv[optind + 2], lat, seed, nbatches, segment_bytes);
	if (argc - optind == 4 && strcmp(argv[optind], "read") == 0)
		return cmd_read(argv[optind + 1], argv[optind + 2], argv[optind + 3], lat);
	fprintf(stderr, "usage: compat-driver write DIR MANIFEST [--lat] [--seed N] [--batches N] [--segment-bytes N]\n"
			"       compat-driver read DIR MANIFEST OUT_MANIFEST [--lat]\n");
	return 2;
}
