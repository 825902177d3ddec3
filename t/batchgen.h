/* batchgen.h -- builds valid Kafka RecordBatch v2 bytes (as a producer sends them: base offset 0,
 * leader epoch -1, CRC-32C filled in) for tests and benchmarks. Header-only; needs libstrata
 * (crc32c, and compress_deflate for compressed batches).
 *
 * Simple form:
 *   size_t batchgen_build(uint8_t *buf, size_t cap, int n_records, size_t value_len,
 *                         int64_t base_ts_ms, int with_keys);
 *   Record i (0-based) gets timestamp base_ts_ms + i, key "key-<i>" when with_keys (else a null
 *   key), a value of value_len bytes ('a' + (i + j) % 26 at byte j), no headers.
 *   Returns the batch size in bytes, or 0 when it does not fit in cap (or n_records < 1).
 *
 * Full form:
 *   struct batchgen_opts o = BATCHGEN_DEFAULTS;  o.n_records = 10; o.codec = COMPRESS_ZSTD; ...
 *   size_t batchgen_build_opts(uint8_t *buf, size_t cap, const struct batchgen_opts *o);
 *   Timestamps step by ts_step_ms (may be negative or 0); n_headers headers "h<k>" = "v<k>" per
 *   record; codec 0..4 (enum compress_codec); producer id/epoch/sequence and the
 *   transactional bit as given.
 *
 *   size_t batchgen_bound(const struct batchgen_opts *o);   upper bound of the uncompressed size
 *   int64_t batchgen_record_ts(const struct batchgen_opts *o, int i);  record i's timestamp
 *
 * To test validation, corrupt a built batch and (when the test wants a valid CRC over the
 * change) call batch_compute_crc() from strata/batch.h. */
#ifndef STRATA_T_BATCHGEN_H
#define STRATA_T_BATCHGEN_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata/compress.h"
#include "strata/crc32c.h"

struct batchgen_opts {
	int n_records;
	size_t value_len;
	int64_t base_ts_ms;
	int64_t ts_step_ms;
	int with_keys;
	int n_headers;
	int codec;
	int64_t producer_id;
	int16_t producer_epoch;
	int32_t base_sequence;
	int transactional;
};

#define BATCHGEN_DEFAULTS { .n_records = 1, .value_len = 16, .base_ts_ms = 0, .ts_step_ms = 1, \
	.with_keys = 0, .n_headers = 0, .codec = 0, .producer_id = -1, .producer_epoch = -1, \
	.base_sequence = -1, .transactional = 0 }

static inline size_t batchgen_varlong_(uint8_t *p, int64_t v)
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

static inline void batchgen_be_(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static inline int64_t batchgen_record_ts(const struct batchgen_opts *o, int i)
{
	return o->base_ts_ms + (int64_t)i * o->ts_step_ms;
}

static inline size_t batchgen_bound(const struct batchgen_opts *o)
{
	size_t per = 5 + 1 + 10 + 5 + 5 + 16 + 5 + o->value_len + 5 + (size_t)o->n_headers * (5 + 12 + 5 + 12);
	return 61 + (size_t)o->n_records * per;
}

/* One record's bytes (with its length prefix) at p; returns its size. */
static inline size_t batchgen_record_(uint8_t *p, const struct batchgen_opts *o, int i)
{
	uint8_t body[64];
	size_t b = 0;
	body[b++] = 0; /* attributes */
	b += batchgen_varlong_(body + b, batchgen_record_ts(o, i) - o->base_ts_ms);
	b += batchgen_varlong_(body + b, i);
	char key[24];
	int klen = o->with_keys ? snprintf(key, sizeof key, "key-%d", i) : -1;
	/* the record's length prefix needs the size of the rest: key, value, headers */
	uint8_t tmp[10];
	size_t rest = batchgen_varlong_(tmp, klen) + (klen > 0 ? (size_t)klen : 0) +
		      batchgen_varlong_(tmp, (int64_t)o->value_len) + o->value_len +
		      batchgen_varlong_(tmp, o->n_headers);
	for (int h = 0; h < o->n_headers; h++) {
		char hk[12], hv[12];
		int hkl = snprintf(hk, sizeof hk, "h%d", h), hvl = snprintf(hv, sizeof hv, "v%d", h);
		rest += batchgen_varlong_(tmp, hkl) + (size_t)hkl + batchgen_varlong_(tmp, hvl) + (size_t)hvl;
	}
	size_t len = b + rest;
	size_t n = batchgen_varlong_(p, (int64_t)len);
	memcpy(p + n, body, b);
	n += b;
	n += batchgen_varlong_(p + n, klen);
	if (klen > 0) {
		memcpy(p + n, key, (size_t)klen);
		n += (size_t)klen;
	}
	n += batchgen_varlong_(p + n, (int64_t)o->value_len);
	for (size_t j = 0; j < o->value_len; j++)
		p[n + j] = (uint8_t)('a' + (size_t)(i + (int)j) % 26);
	n += o->value_len;
	n += batchgen_varlong_(p + n, o->n_headers);
	for (int h = 0; h < o->n_headers; h++) {
		char hk[12], hv[12];
		int hkl = snprintf(hk, sizeof hk, "h%d", h), hvl = snprintf(hv, sizeof hv, "v%d", h);
		n += batchgen_varlong_(p + n, hkl);
		memcpy(p + n, hk, (size_t)hkl);
		n += (size_t)hkl;
		n += batchgen_varlong_(p + n, hvl);
		memcpy(p + n, hv, (size_t)hvl);
		n += (size_t)hvl;
	}
	return n;
}

static inline size_t batchgen_build_opts(uint8_t *buf, size_t cap, const struct batchgen_opts *o)
{
	if (o->n_records < 1)
		return 0;
	size_t bound = batchgen_bound(o);
	uint8_t *recs = malloc(bound);
	if (!recs)
		return 0;
	size_t rl = 0;
	int64_t max_ts = INT64_MIN;
	for (int i = 0; i < o->n_records; i++) {
		rl += batchgen_record_(recs + rl, o, i);
		if (batchgen_record_ts(o, i) > max_ts)
			max_ts = batchgen_record_ts(o, i);
	}
	const uint8_t *body = recs;
	uint8_t *z = NULL;
	size_t body_len = rl;
	if (o->codec) {
		if (compress_deflate(o->codec, 0, recs, rl, &z, &body_len) != 0) {
			free(recs);
			return 0;
		}
		body = z;
	}
	size_t size = 61 + body_len;
	if (size > cap) {
		free(recs);
		free(z);
		return 0;
	}
	memcpy(buf + 61, body, body_len);
	free(recs);
	free(z);
	batchgen_be_(buf + 0, 0, 8);                                   /* base offset */
	batchgen_be_(buf + 8, (uint64_t)(size - 12), 4);               /* batch length */
	batchgen_be_(buf + 12, (uint64_t)(int64_t)-1, 4);              /* leader epoch */
	buf[16] = 2;                                                   /* magic */
	int attrs = (o->codec & 7) | (o->transactional ? 0x10 : 0);
	batchgen_be_(buf + 21, (uint64_t)attrs, 2);
	batchgen_be_(buf + 23, (uint64_t)(o->n_records - 1), 4);      /* last offset delta */
	batchgen_be_(buf + 27, (uint64_t)o->base_ts_ms, 8);
	batchgen_be_(buf + 35, (uint64_t)max_ts, 8);
	batchgen_be_(buf + 43, (uint64_t)o->producer_id, 8);
	batchgen_be_(buf + 51, (uint64_t)(uint16_t)o->producer_epoch, 2);
	batchgen_be_(buf + 53, (uint64_t)(uint32_t)o->base_sequence, 4);
	batchgen_be_(buf + 57, (uint64_t)o->n_records, 4);
	batchgen_be_(buf + 17, crc32c(0, buf + 21, size - 21), 4);
	return size;
}

static inline size_t batchgen_build(uint8_t *buf, size_t cap, int n_records, size_t value_len,
				    int64_t base_ts_ms, int with_keys)
{
	struct batchgen_opts o = BATCHGEN_DEFAULTS;
	o.n_records = n_records;
	o.value_len = value_len;
	o.base_ts_ms = base_ts_ms;
	o.with_keys = with_keys;
	return batchgen_build_opts(buf, cap, &o);
}

#endif
