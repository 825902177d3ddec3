/* t/logtest.h -- helpers shared by the log's whole-system tests (t/compat.c, t/crash.c):
 * a deterministic RNG, RecordBatch v2 building with chosen records (keys, null values,
 * headers, compression), whole-slice reads, and a tiny synchronous
 * append through the ring. Header-only. t/batchgen.h is the project's batch generator (the
 * crash test uses it); the compat test needs records it cannot express (null values and
 * header values, empty keys, random bytes, out-of-order timestamps), built here. */
#ifndef STRATA_T_LOGTEST_H
#define STRATA_T_LOGTEST_H

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strata/common.h"
#include "strata/compress.h"
#include "strata/crc32c.h"
#include "strata/kerr.h"
#include "strata/log.h"
#include "strata/uring.h"

/* ---- rng (xorshift64*) --------------------------------------------------------------------- */

struct lt_rng { uint64_t s; };
static inline uint64_t lt_next(struct lt_rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545F4914F6CDD1Dull;
}
static inline int64_t lt_range(struct lt_rng *r, int64_t lo, int64_t hi) /* inclusive */
{
	return lo + (int64_t)(lt_next(r) % (uint64_t)(hi - lo + 1));
}

/* ---- records and batches -------------------------------------------------------------------- */

#define LT_MAX_HEADERS 4

struct lt_rec {
	int64_t ts;
	int32_t key_len;                /* -1 = null */
	int32_t value_len;              /* -1 = null */
	uint8_t *key, *value;           /* owned */
	int n_headers;
	int32_t hkey_len[LT_MAX_HEADERS];
	int32_t hval_len[LT_MAX_HEADERS];       /* -1 = null */
	uint8_t *hkey[LT_MAX_HEADERS], *hval[LT_MAX_HEADERS];
};

static inline void lt_rec_free(struct lt_rec *r)
{
	free(r->key);
	free(r->value);
	for (int i = 0; i < r->n_headers; i++) {
		free(r->hkey[i]);
		free(r->hval[i]);
	}
	memset(r, 0, sizeof(*r));
}

static inline uint8_t *lt_bytes(struct lt_rng *rng, int32_t len, bool text)
{
	uint8_t *p = malloc(len > 0 ? (size_t)len : 1);
	ST_ASSERT(p);
	for (int32_t i = 0; i < len; i++)
		p[i] = text ? (uint8_t)('a' + (i * 7 + len) % 26) : (uint8_t)lt_next(rng);
	return p;
}

/* A random record: null or empty keys and values, 0..3 headers (some null values). */
static inline void lt_rec_random(struct lt_rng *rng, struct lt_rec *r, int64_t ts, int32_t max_value)
{
	memset(r, 0, sizeof(*r));
	r->ts = ts;
	int64_t k = lt_range(rng, 0, 9);
	r->key_len = k < 3 ? -1 : k == 3 ? 0 : (int32_t)lt_range(rng, 1, 40);
	if (r->key_len >= 0)
		r->key = lt_bytes(rng, r->key_len, false);
	int64_t v = lt_range(rng, 0, 19);
	r->value_len = v == 0 ? -1 : v == 1 ? 0 : (int32_t)lt_range(rng, 1, v < 12 ? 200 : max_value);
	if (r->value_len >= 0)
		r->value = lt_bytes(rng, r->value_len, lt_range(rng, 0, 1) == 0);
	r->n_headers = (int)lt_range(rng, 0, 5);
	if (r->n_headers > 3)
		r->n_headers = 0;
	for (int i = 0; i < r->n_headers; i++) {
		r->hkey_len[i] = (int32_t)lt_range(rng, 0, 12);
		r->hkey[i] = lt_bytes(rng, r->hkey_len[i], true);
		r->hval_len[i] = lt_range(rng, 0, 4) == 0 ? -1 : (int32_t)lt_range(rng, 0, 30);
		r->hval[i] = r->hval_len[i] >= 0 ? lt_bytes(rng, r->hval_len[i], false) : NULL;
	}
}

static inline size_t lt_put_varint(uint8_t *p, int64_t v)
{
	uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	size_t n = 0;
	while (z >= 0x80) {
		p[n++] = (uint8_t)(z | 0x80);
		z >>= 7;
	}
	p[n++] = (uint8_t)z;
	return n;
}

static inline size_t lt_rec_max_bytes(const struct lt_rec *r)
{
	size_t n = 64 + (size_t)ST_MAX(r->key_len, 0) + (size_t)ST_MAX(r->value_len, 0);
	for (int i = 0; i < r->n_headers; i++)
		n += 20 + (size_t)r->hkey_len[i] + (size_t)ST_MAX(r->hval_len[i], 0);
	return n;
}

/* Serializes one record (offset delta i) at p; returns bytes written. */
static inline size_t lt_rec_put(uint8_t *p, const struct lt_rec *r, int i, int64_t base_ts)
{
	uint8_t *body = malloc(lt_rec_max_bytes(r));
	ST_ASSERT(body);
	size_t n = 0;
	body[n++] = 0;
	n += lt_put_varint(body + n, r->ts - base_ts);
	n += lt_put_varint(body + n, i);
	n += lt_put_varint(body + n, r->key_len);
	if (r->key_len > 0)
		memcpy(body + n, r->key, (size_t)r->key_len), n += (size_t)r->key_len;
	n += lt_put_varint(body + n, r->value_len);
	if (r->value_len > 0)
		memcpy(body + n, r->value, (size_t)r->value_len), n += (size_t)r->value_len;
	n += lt_put_varint(body + n, r->n_headers);
	for (int h = 0; h < r->n_headers; h++) {
		n += lt_put_varint(body + n, r->hkey_len[h]);
		if (r->hkey_len[h] > 0)
			memcpy(body + n, r->hkey[h], (size_t)r->hkey_len[h]), n += (size_t)r->hkey_len[h];
		n += lt_put_varint(body + n, r->hval_len[h]);
		if (r->hval_len[h] > 0)
			memcpy(body + n, r->hval[h], (size_t)r->hval_len[h]), n += (size_t)r->hval_len[h];
	}
	size_t hl = lt_put_varint(p, (int64_t)n);
	memcpy(p + hl, body, n);
	free(body);
	return hl + n;
}

/* A producer's batch (base offset 0, CreateTime, no producer id) holding recs, its records
 * section compressed with codec. Returns a malloc'd batch and its size. */
static inline uint8_t *lt_batch_build(const struct lt_rec *recs, int n, int codec, size_t *len_out)
{
	ST_ASSERT(n >= 1);
	int64_t base_ts = recs[0].ts, max_ts = recs[0].ts;
	size_t cap = 0;
	for (int i = 0; i < n; i++) {
		cap += lt_rec_max_bytes(&recs[i]);
		max_ts = ST_MAX(max_ts, recs[i].ts);
	}
	uint8_t *raw = malloc(cap);
	ST_ASSERT(raw);
	size_t raw_len = 0;
	for (int i = 0; i < n; i++)
		raw_len += lt_rec_put(raw + raw_len, &recs[i], i, base_ts);
	uint8_t *payload = raw;
	size_t payload_len = raw_len;
	if (codec != COMPRESS_NONE) {
		ST_ASSERT(compress_deflate(codec, 0, raw, raw_len, &payload, &payload_len) == 0);
		free(raw);
	}
	size_t len = 61 + payload_len;
	uint8_t *b = malloc(len);
	ST_ASSERT(b);
	st_put_be64(b + 0, 0);
	st_put_be32(b + 8, (uint32_t)(len - 12));
	st_put_be32(b + 12, 0);
	b[16] = 2;
	st_put_be16(b + 21, (uint16_t)codec);
	st_put_be32(b + 23, (uint32_t)(n - 1));
	st_put_be64(b + 27, (uint64_t)base_ts);
	st_put_be64(b + 35, (uint64_t)max_ts);
	st_put_be64(b + 43, (uint64_t)-1);
	st_put_be16(b + 51, (uint16_t)-1);
	st_put_be32(b + 53, (uint32_t)-1);
	st_put_be32(b + 57, (uint32_t)n);
	memcpy(b + 61, payload, payload_len);
	free(payload);
	st_put_be32(b + 17, crc32c(0, b + 21, len - 21));
	*len_out = len;
	return b;
}

static inline bool lt_batch_crc_ok(const uint8_t *b, size_t len)
{
	return len >= 61 && st_be32(b + 17) == crc32c(0, b + 21, len - 21);
}

/* ---- reading slices ----------------------------------------------------------------------- */

/* Reads a slice's bytes (malloc'd). */
static inline uint8_t *lt_slice_bytes(const struct log_slice *s)
{
	uint8_t *p = malloc(s->len > 0 ? (size_t)s->len : 1);
	ST_ASSERT(p);
	int64_t got = 0;
	while (got < s->len) {
		ssize_t r = pread(s->fd, p + got, (size_t)(s->len - got), s->file_pos + got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(p);
			return NULL;
		}
		got += r;
	}
	return p;
}

/* ---- synchronous append through the ring ---------------------------------------------------- */

struct lt_append {
	struct log_append a;
	bool done;
	int kerr;
	void *ctx;
};

static inline void lt_append_done(struct log_append *a, int kerr)
{
	struct lt_append *x = ST_CONTAINER_OF(a, struct lt_append, a);
	x->done = true;
	x->kerr = kerr;
}

/* Appends one buffer and waits for it; returns the log_append result or done's kerr. */
static inline int lt_append_sync(struct uring *ur, struct log *l, uint8_t *data, size_t len,
				 struct log_append *out)
{
	struct lt_append x;
	memset(&x, 0, sizeof(x));
	if (out)
		memset(out, 0, sizeof(*out));
	x.a.data = data;
	x.a.len = len;
	x.a.done = lt_append_done;
	int kerr = log_append(l, &x.a);
	if (kerr != KERR_NONE)
		return kerr;
	for (int i = 0; !x.done && i < 100000; i++)
		if (uring_run_once(ur, 100) < 0)
			break;
	if (out)
		*out = x.a;
	return x.done ? x.kerr : KERR_KAFKA_STORAGE_ERROR;
}

/* Files under temporary names in dir ("*.tmp": the next segment's pre-opened spare files,
 * a checkpoint being written); -1 when dir cannot be read. */
static inline int lt_count_tmp_files(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t k = strlen(de->d_name);
		if (k > 4 && strcmp(de->d_name + k - 4, ".tmp") == 0)
			n++;
	}
	closedir(d);
	return n;
}

#endif
