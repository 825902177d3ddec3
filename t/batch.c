/* t/batch.c -- RecordBatch v2: header parsing, varints, record iteration, validation (every
 * kind of bad batch and the Kafka error it gets), in-place rewrites keeping the CRC valid,
 * recompression into a topic's codec (every source codec x every target, records compared
 * field by field and byte for byte; the errors it shares with validation; size limits).
 * STRATA_RECOMPRESS_BENCH=1 also prints recompression throughput (no assertion on it). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "strata/batch.h"
#include "strata/common.h"
#include "strata/compress.h"
#include "strata/kerr.h"
#include "batchgen.h"
#include "tap.h"

#define NOW_MS 1700000000000LL

static uint8_t buf[1 << 16];

static struct batch_validate_opts opts(void)
{
	struct batch_validate_opts o = {
		.max_message_bytes = 1048588,
		.log_append_time = false,
		.now_ms = NOW_MS,
		.timestamp_before_max_ms = INT64_MAX,
		.timestamp_after_max_ms = 3600000,
		.inflate_compressed = true,
	};
	return o;
}

static void fix_crc(uint8_t *b, size_t size)
{
	st_put_be32(b + BATCH_OFF_CRC, batch_compute_crc(b, size));
}

static int validate(const uint8_t *b, size_t avail)
{
	struct batch_validate_opts o = opts();
	struct batch_info info;
	return batch_validate(b, avail, &o, &info);
}

static void test_varints(void)
{
	uint8_t b[16];
	int64_t l64[] = { 0, 1, -1, 63, -64, 64, 300, -300, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN };
	int ok64 = 1;
	for (size_t i = 0; i < ST_ARRAY_LEN(l64); i++) {
		size_t n = batch_write_varlong(b, l64[i]);
		int64_t v;
		if (batch_read_varlong(b, b + n, &v) != n || v != l64[i])
			ok64 = 0;
	}
	ok(ok64, "varlong round trips (0, +-1, limits)");
	int32_t l32[] = { 0, 1, -1, 127, -128, 8192, INT32_MAX, INT32_MIN };
	int ok32 = 1;
	for (size_t i = 0; i < ST_ARRAY_LEN(l32); i++) {
		size_t n = batch_write_varint(b, l32[i]);
		int32_t v;
		if (batch_read_varint(b, b + n, &v) != n || v != l32[i])
			ok32 = 0;
	}
	ok(ok32, "varint round trips");
	uint8_t over[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
	int32_t v32;
	ok(batch_read_varint(over, over + 6, &v32) == 0, "varint longer than 5 bytes is malformed");
	ok(batch_read_varint(over, over + 3, &v32) == 0, "truncated varint is malformed");
	uint8_t minus1 = 0x01;
	ok(batch_read_varint(&minus1, &minus1 + 1, &v32) == 1 && v32 == -1, "zigzag 0x01 is -1");
}

static void test_good(void)
{
	struct batchgen_opts g = BATCHGEN_DEFAULTS;
	g.n_records = 5;
	g.value_len = 20;
	g.base_ts_ms = NOW_MS - 1000;
	g.with_keys = 1;
	g.n_headers = 2;
	size_t size = batchgen_build_opts(buf, sizeof buf, &g);
	ok(size > BATCH_HDR_SIZE, "batchgen built %zu bytes", size);
	struct batch_hdr h;
	is_int(batch_parse_hdr(buf, 60, &h), -EINVAL, "parse_hdr refuses 60 bytes");
	is_int(batch_parse_hdr(buf, size, &h), 0, "parse_hdr");
	is_int(h.magic, 2, "magic 2");
	is_int(h.record_count, 5, "record count");
	is_int(h.last_offset_delta, 4, "last offset delta");
	is_int(batch_size(&h), (long long)size, "batch_size from batch_length");
	is_int(h.max_timestamp, NOW_MS - 1000 + 4, "max timestamp");
	ok(batch_crc_ok(buf, size), "crc ok");
	struct batch_validate_opts o = opts();
	struct batch_info info;
	is_int(batch_validate(buf, size, &o, &info), KERR_NONE, "good batch validates");
	ok(info.records_checked, "records were iterated");
	is_int(info.max_timestamp, NOW_MS - 1000 + 4, "computed max timestamp");
	is_int((long long)info.size, (long long)size, "info.size");

	struct batch_rec_iter it;
	struct batch_record r;
	batch_rec_iter_init(&it, buf + BATCH_HDR_SIZE, size - BATCH_HDR_SIZE);
	int n = 0, fields_ok = 1;
	while (batch_rec_next(&it, &r) == 1) {
		char key[16];
		int kl = snprintf(key, sizeof key, "key-%d", n);
		if (r.offset_delta != n || r.timestamp_delta != n || r.key_len != kl ||
		    memcmp(r.key, key, (size_t)kl) != 0 || r.value_len != 20 || r.value[0] != 'a' + n ||
		    r.header_count != 2)
			fields_ok = 0;
		n++;
	}
	is_int(n, 5, "iterated 5 records");
	ok(fields_ok, "record fields (offset delta, timestamp delta, key, value, headers)");

	size = batchgen_build(buf, sizeof buf, 1, 0, NOW_MS, 0);
	batch_rec_iter_init(&it, buf + BATCH_HDR_SIZE, size - BATCH_HDR_SIZE);
	ok(batch_rec_next(&it, &r) == 1 && r.key == NULL && r.key_len == -1 && r.value_len == 0,
	   "null key, empty value");
	is_int(validate(buf, size), KERR_NONE, "single empty record validates");
	is_int(batchgen_build(buf, 10, 3, 10, NOW_MS, 0), 0, "batchgen refuses a too-small buffer");
}

static void test_compressed(void)
{
	int codecs[] = { COMPRESS_GZIP, COMPRESS_SNAPPY, COMPRESS_LZ4, COMPRESS_ZSTD };
	for (size_t i = 0; i < ST_ARRAY_LEN(codecs); i++) {
		struct batchgen_opts g = BATCHGEN_DEFAULTS;
		g.n_records = 50;
		g.value_len = 100;
		g.base_ts_ms = NOW_MS - 5000;
		g.codec = codecs[i];
		size_t size = batchgen_build_opts(buf, sizeof buf, &g);
		struct batch_validate_opts o = opts();
		struct batch_info info;
		int rc = batch_validate(buf, size, &o, &info);
		ok(size > 0 && rc == KERR_NONE && info.records_checked && info.max_timestamp == NOW_MS - 5000 + 49,
		   "%s batch validates, records checked after inflating", compress_codec_name(codecs[i]));
	}
	/* A compressed batch whose header claims one more record than it holds. */
	struct batchgen_opts g = BATCHGEN_DEFAULTS;
	g.n_records = 3;
	g.base_ts_ms = NOW_MS;
	g.codec = COMPRESS_ZSTD;
	size_t size = batchgen_build_opts(buf, sizeof buf, &g);
	st_put_be32(buf + BATCH_OFF_RECORD_COUNT, 4);
	st_put_be32(buf + BATCH_OFF_LAST_OFFSET_DELTA, 3);
	fix_crc(buf, size);
	is_int(validate(buf, size), KERR_INVALID_RECORD, "compressed: fewer records than declared");
	/* Garbage instead of a zstd frame. */
	size = batchgen_build_opts(buf, sizeof buf, &g);
	memset(buf + BATCH_HDR_SIZE, 0x5a, size - BATCH_HDR_SIZE);
	fix_crc(buf, size);
	is_int(validate(buf, size), KERR_CORRUPT_MESSAGE, "compressed: undecodable payload");
	/* Without inflating, the header's timestamps stand in for the records'. */
	size = batchgen_build_opts(buf, sizeof buf, &g);
	struct batch_validate_opts o = opts();
	o.inflate_compressed = false;
	struct batch_info info;
	ok(batch_validate(buf, size, &o, &info) == KERR_NONE && !info.records_checked,
	   "compressed without inflating: header checks only");
	st_put_be64(buf + BATCH_OFF_MAX_TIMESTAMP, (uint64_t)(NOW_MS + 7200000));
	fix_crc(buf, size);
	is_int(batch_validate(buf, size, &o, &info), KERR_INVALID_TIMESTAMP,
	       "compressed without inflating: future max timestamp refused");
	/* Unknown codec id. */
	size = batchgen_build(buf, sizeof buf, 2, 8, NOW_MS, 0);
	st_put_be16(buf + BATCH_OFF_ATTRIBUTES, 5);
	fix_crc(buf, size);
	is_int(validate(buf, size), KERR_CORRUPT_MESSAGE, "codec 5 is corrupt");
}

static void test_bad(void)
{
	size_t size = batchgen_build(buf, sizeof buf, 3, 10, NOW_MS, 1);
	/* short */
	is_int(validate(buf, 11), KERR_CORRUPT_MESSAGE, "short: fewer than 12 bytes");
	is_int(validate(buf, 40), KERR_CORRUPT_MESSAGE, "short: cut inside the header");
	is_int(validate(buf, size - 1), KERR_CORRUPT_MESSAGE, "short: last byte missing");
	/* wrong length */
	st_put_be32(buf + BATCH_OFF_LENGTH, 48);
	is_int(validate(buf, size), KERR_CORRUPT_MESSAGE, "batch_length below the header size");
	st_put_be32(buf + BATCH_OFF_LENGTH, (uint32_t)(size - 12 + 5));
	is_int(validate(buf, size), KERR_CORRUPT_MESSAGE, "batch_length past the bytes present");
	st_put_be32(buf + BATCH_OFF_LENGTH, (uint32_t)(size - 12 - 3));
	is_int(validate(buf, size - 3), KERR_CORRUPT_MESSAGE, "batch_length shortened: CRC no longer matches");
	fix_crc(buf, size - 3);
	is_int(validate(buf, size - 3), KERR_INVALID_RECORD, "batch_length shortened, CRC fixed: last record cut");
	st_put_be32(buf + BATCH_OFF_LENGTH, 0xffffff00u);
	is_int(validate(buf, size), KERR_CORRUPT_MESSAGE, "negative batch_length");
	/* magic */
	size = batchgen_build(buf, sizeof buf, 3, 10, NOW_MS, 1);
	buf[BATCH_OFF_MAGIC] = 1;
	is_int(validate(buf, size), KERR_UNSUPPORTED_FOR_MESSAGE_FORMAT, "magic 1: unsupported format");
	buf[BATCH_OFF_MAGIC] = 0;
	is_int(validate(buf, size), KERR_UNSUPPORTED_FOR_MESSAGE_FORMAT, "magic 0: unsupported format");
	buf[BATCH_OFF_MAGIC] = 3;
	is_int(validate(buf, size), KERR_CORRUPT_MESSAGE, "magic 3: garbage");
	buf[BATCH_OFF_MAGIC] = 0xff;
	is_int(validate(buf, size), KERR_CORRUPT_MESSAGE, "magic -1: garbage");
	/* CRC */
	size = batchgen_build(buf, sizeof buf, 3, 10, NOW_MS, 1);
	buf[size - 2] ^= 0x40;
	is_int(validate(buf, size), KERR_CORRUPT_MESSAGE, "flipped value byte: bad CRC");
	buf[size - 2] ^= 0x40;
	buf[BATCH_OFF_CRC] ^= 1;
	is_int(validate(buf, size), KERR_CORRUPT_MESSAGE, "flipped CRC byte");
	buf[BATCH_OFF_CRC] ^= 1;
	is_int(validate(buf, size), KERR_NONE, "restored batch validates again");
	/* counts */
	st_put_be32(buf + BATCH_OFF_RECORD_COUNT, 4);
	fix_crc(buf, size);
	is_int(validate(buf, size), KERR_INVALID_RECORD, "record_count != lastOffsetDelta + 1");
	st_put_be32(buf + BATCH_OFF_RECORD_COUNT, 4);
	st_put_be32(buf + BATCH_OFF_LAST_OFFSET_DELTA, 3);
	fix_crc(buf, size);
	is_int(validate(buf, size), KERR_INVALID_RECORD, "header says 4 records, 3 present");
	st_put_be32(buf + BATCH_OFF_RECORD_COUNT, 2);
	st_put_be32(buf + BATCH_OFF_LAST_OFFSET_DELTA, 1);
	fix_crc(buf, size);
	is_int(validate(buf, size), KERR_INVALID_RECORD, "header says 2 records, 3 present");
	st_put_be32(buf + BATCH_OFF_RECORD_COUNT, 0);
	st_put_be32(buf + BATCH_OFF_LAST_OFFSET_DELTA, (uint32_t)-1);
	fix_crc(buf, size);
	is_int(validate(buf, size), KERR_INVALID_RECORD, "zero records");
	/* offset deltas inside the records must run 0..n-1 */
	size = batchgen_build(buf, sizeof buf, 3, 10, NOW_MS, 0);
	{
		struct batch_rec_iter it;
		struct batch_record r;
		batch_rec_iter_init(&it, buf + BATCH_HDR_SIZE, size - BATCH_HDR_SIZE);
		batch_rec_next(&it, &r);
		/* record 1: length varint (1 byte), attrs, ts delta (1 byte), then offset delta */
		uint8_t *od = (uint8_t *)it.p + 3;
		ok(*od == 2, "record 1's offset delta byte found (zigzag 1)");
		*od = 4; /* zigzag 2 */
		fix_crc(buf, size);
		is_int(validate(buf, size), KERR_INVALID_RECORD, "offset deltas not 0..n-1");
	}
	/* a record whose fields overrun its own length */
	size = batchgen_build(buf, sizeof buf, 2, 10, NOW_MS, 0);
	buf[BATCH_HDR_SIZE] = (uint8_t)(buf[BATCH_HDR_SIZE] - 2); /* length - 1 (zigzag) */
	fix_crc(buf, size);
	is_int(validate(buf, size), KERR_INVALID_RECORD, "record length smaller than its fields");
	/* extra bytes after the last record */
	size = batchgen_build(buf, sizeof buf, 2, 10, NOW_MS, 0);
	buf[size] = 0;
	st_put_be32(buf + BATCH_OFF_LENGTH, (uint32_t)(size + 1 - 12));
	fix_crc(buf, size + 1);
	is_int(validate(buf, size + 1), KERR_INVALID_RECORD, "bytes left after the declared records");
	/* too large */
	size = batchgen_build(buf, sizeof buf, 10, 1000, NOW_MS, 0);
	struct batch_validate_opts o = opts();
	struct batch_info info;
	o.max_message_bytes = (int32_t)size - 1;
	is_int(batch_validate(buf, size, &o, &info), KERR_MESSAGE_TOO_LARGE, "size > max.message.bytes");
	o.max_message_bytes = (int32_t)size;
	is_int(batch_validate(buf, size, &o, &info), KERR_NONE, "size == max.message.bytes is fine");
	/* producer-side rules */
	size = batchgen_build(buf, sizeof buf, 2, 10, NOW_MS, 0);
	st_put_be64(buf + BATCH_OFF_BASE_OFFSET, 5);
	is_int(validate(buf, size), KERR_INVALID_RECORD, "base offset != 0 (outside the CRC)");
	st_put_be64(buf + BATCH_OFF_BASE_OFFSET, 0);
	st_put_be16(buf + BATCH_OFF_ATTRIBUTES, BATCH_ATTR_CONTROL);
	fix_crc(buf, size);
	is_int(validate(buf, size), KERR_INVALID_RECORD, "control batch from a producer");
	struct batchgen_opts g = BATCHGEN_DEFAULTS;
	g.n_records = 2;
	g.base_ts_ms = NOW_MS;
	g.producer_id = 7;
	g.producer_epoch = 0;
	g.base_sequence = -1;
	size = batchgen_build_opts(buf, sizeof buf, &g);
	is_int(validate(buf, size), KERR_INVALID_RECORD, "idempotent batch without a sequence");
	g.base_sequence = 0;
	size = batchgen_build_opts(buf, sizeof buf, &g);
	is_int(validate(buf, size), KERR_NONE, "idempotent batch with sequence 0");
}

static void test_timestamps(void)
{
	struct batch_validate_opts o = opts();
	struct batch_info info;
	struct batchgen_opts g = BATCHGEN_DEFAULTS;
	g.n_records = 3;
	g.base_ts_ms = NOW_MS + 3600000 - 2; /* last record exactly at now + after.max */
	size_t size = batchgen_build_opts(buf, sizeof buf, &g);
	is_int(batch_validate(buf, size, &o, &info), KERR_NONE, "timestamp at now + after.max accepted");
	g.base_ts_ms = NOW_MS + 3600000 - 1;
	size = batchgen_build_opts(buf, sizeof buf, &g);
	is_int(batch_validate(buf, size, &o, &info), KERR_INVALID_TIMESTAMP, "one record 1 ms too far ahead");
	o.timestamp_before_max_ms = 60000;
	g.base_ts_ms = NOW_MS - 60001;
	size = batchgen_build_opts(buf, sizeof buf, &g);
	is_int(batch_validate(buf, size, &o, &info), KERR_INVALID_TIMESTAMP, "first record 1 ms too old");
	g.base_ts_ms = NOW_MS - 60000;
	size = batchgen_build_opts(buf, sizeof buf, &g);
	is_int(batch_validate(buf, size, &o, &info), KERR_NONE, "record at now - before.max accepted");
	g.base_ts_ms = -1;
	g.ts_step_ms = 0;
	size = batchgen_build_opts(buf, sizeof buf, &g);
	is_int(batch_validate(buf, size, &o, &info), KERR_NONE, "NO_TIMESTAMP (-1) records accepted");
	o.log_append_time = true;
	g.base_ts_ms = 5; /* ancient: irrelevant for LogAppendTime topics */
	size = batchgen_build_opts(buf, sizeof buf, &g);
	is_int(batch_validate(buf, size, &o, &info), KERR_NONE, "LogAppendTime topic ignores record timestamps");
	st_put_be16(buf + BATCH_OFF_ATTRIBUTES, BATCH_ATTR_LOG_APPEND_TIME);
	fix_crc(buf, size);
	is_int(batch_validate(buf, size, &o, &info), KERR_INVALID_TIMESTAMP,
	       "producer set the LogAppendTime bit (LogAppendTime topic)");
	/* a wrong maxTimestamp in the header is not an error: the computed one is reported */
	o = opts();
	g = (struct batchgen_opts)BATCHGEN_DEFAULTS;
	g.n_records = 4;
	g.base_ts_ms = NOW_MS;
	size = batchgen_build_opts(buf, sizeof buf, &g);
	st_put_be64(buf + BATCH_OFF_MAX_TIMESTAMP, (uint64_t)(NOW_MS + 100));
	fix_crc(buf, size);
	ok(batch_validate(buf, size, &o, &info) == KERR_NONE && info.max_timestamp == NOW_MS + 3 &&
	   info.h.max_timestamp == NOW_MS + 100, "wrong header maxTimestamp: computed max reported");
}

static void test_rewrites(void)
{
	size_t size = batchgen_build(buf, sizeof buf, 4, 30, NOW_MS - 500, 1);
	batch_set_base_offset(buf, 123456789012LL);
	batch_set_leader_epoch(buf, 7);
	ok(batch_crc_ok(buf, size), "base offset and leader epoch are outside the CRC");
	batch_set_log_append_time(buf, size, NOW_MS);
	struct batch_hdr h;
	batch_parse_hdr(buf, size, &h);
	ok(batch_crc_ok(buf, size), "LogAppendTime rewrite leaves a valid CRC");
	ok(batch_is_log_append_time(&h) && h.max_timestamp == NOW_MS && h.base_timestamp == NOW_MS - 500,
	   "LogAppendTime: type bit + max timestamp set, base timestamp kept (as Kafka)");
	ok(h.base_offset == 123456789012LL && h.partition_leader_epoch == 7, "offset and epoch read back");
	batch_set_max_timestamp(buf, size, NOW_MS - 10);
	batch_parse_hdr(buf, size, &h);
	ok(batch_crc_ok(buf, size) && !batch_is_log_append_time(&h) && h.max_timestamp == NOW_MS - 10,
	   "max timestamp rewrite (CreateTime) leaves a valid CRC");
	is_int(batch_codec(&h), 0, "codec none");
	ok(!batch_is_transactional(&h) && !batch_is_control(&h), "not transactional, not control");
}

/* --- recompression ----------------------------------------------------------------------- */

/* A growable byte buffer for the tests' own record encoder (independent of batchgen.h: null
 * values, binary bytes, null header values, negative timestamp deltas). */
struct tbuf {
	uint8_t *p;
	size_t len, cap;
};

static void tbuf_put(struct tbuf *b, const void *d, size_t n)
{
	if (b->len + n > b->cap) {
		size_t want = b->cap ? b->cap : 1024;
		while (want < b->len + n)
			want *= 2;
		b->p = realloc(b->p, want);
		if (!b->p)
			BAIL_OUT("out of memory");
		b->cap = want;
	}
	if (n)
		memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void tbuf_varlong(struct tbuf *b, int64_t v)
{
	uint8_t t[10];
	tbuf_put(b, t, batch_write_varlong(t, v));
}

static void tbuf_bytes(struct tbuf *b, const uint8_t *d, int32_t len)
{
	tbuf_varlong(b, len);
	if (len > 0)
		tbuf_put(b, d, (size_t)len);
}

#define TREC_MAX_HDRS 3
struct trec {
	int64_t ts_delta;
	uint8_t key[16];
	int32_t key_len;                 /* -1 = null */
	uint8_t *value;
	int32_t value_len;               /* -1 = null */
	int n_hdrs;
	char hkey[TREC_MAX_HDRS][16];
	uint8_t hval[TREC_MAX_HDRS][32];
	int32_t hval_len[TREC_MAX_HDRS]; /* -1 = null */
};

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static const char *const words[] = { "order", "user", "id", "status", "shipped", "amount", "EUR",
				     "\"sku\":", "{", "}", ",", "true", "false", "warehouse" };

/* Record i of a test set: keys null / empty / "k<i>", values null / empty / text-like /
 * random binary (of value_len when > 0), 0..3 headers with a null value among them. */
static void trec_make(struct trec *r, int i, size_t value_len)
{
	memset(r, 0, sizeof *r);
	r->ts_delta = (int64_t)(i * 13) - 50;
	if (i % 5 == 0)
		r->key_len = -1;
	else if (i % 7 == 0)
		r->key_len = 0;
	else
		r->key_len = snprintf((char *)r->key, sizeof r->key, "k%d", i);
	size_t vl = value_len ? value_len : (size_t)((i * 37) % 300);
	if (i % 6 == 1) {
		r->value_len = -1;
	} else if (i % 11 == 2) {
		r->value_len = 0;
	} else {
		r->value = malloc(vl ? vl : 1);
		if (!r->value)
			BAIL_OUT("out of memory");
		if (i % 3 == 0) {
			for (size_t j = 0; j < vl; j++)
				r->value[j] = (uint8_t)rng(); /* incompressible, zeros included */
		} else {
			size_t j = 0;
			while (j < vl) {
				const char *w = words[rng() % ST_ARRAY_LEN(words)];
				size_t n = ST_MIN(strlen(w), vl - j);
				memcpy(r->value + j, w, n);
				j += n;
				if (j < vl)
					r->value[j++] = (uint8_t)('0' + rng() % 10);
			}
		}
		r->value_len = (int32_t)vl;
	}
	r->n_hdrs = i % (TREC_MAX_HDRS + 1);
	for (int h = 0; h < r->n_hdrs; h++) {
		snprintf(r->hkey[h], sizeof r->hkey[h], "h%d", h);
		if (h == 1) {
			r->hval_len[h] = -1;
		} else {
			r->hval_len[h] = (int32_t)snprintf((char *)r->hval[h], sizeof r->hval[h], "v%d.%d", i, h);
		}
	}
}

static void trecs_free(struct trec *r, int n)
{
	for (int i = 0; i < n; i++)
		free(r[i].value);
}

/* The uncompressed records section of n records. */
static void trecs_encode(struct tbuf *out, const struct trec *r, int n)
{
	for (int i = 0; i < n; i++) {
		struct tbuf body = { 0 };
		uint8_t attrs = 0;
		tbuf_put(&body, &attrs, 1);
		tbuf_varlong(&body, r[i].ts_delta);
		tbuf_varlong(&body, i);
		tbuf_bytes(&body, r[i].key, r[i].key_len);
		tbuf_bytes(&body, r[i].value, r[i].value_len);
		tbuf_varlong(&body, r[i].n_hdrs);
		for (int h = 0; h < r[i].n_hdrs; h++) {
			tbuf_bytes(&body, (const uint8_t *)r[i].hkey[h], (int32_t)strlen(r[i].hkey[h]));
			tbuf_bytes(&body, r[i].hval[h], r[i].hval_len[h]);
		}
		tbuf_varlong(out, (int64_t)body.len);
		tbuf_put(out, body.p, body.len);
		free(body.p);
	}
}

struct thdr {
	int64_t base_ts;
	int64_t producer_id;
	int16_t producer_epoch;
	int32_t base_sequence;
	int16_t extra_attrs;             /* transactional, timestamp type */
	int32_t leader_epoch;
};

/* A producer's batch around an already encoded (and maybe compressed) records section. */
static uint8_t *tbatch(const struct thdr *th, int codec, const uint8_t *section, size_t section_len,
		       int n, int64_t max_ts, size_t *size_out)
{
	size_t size = BATCH_HDR_SIZE + section_len;
	uint8_t *b = calloc(1, size);
	if (!b)
		BAIL_OUT("out of memory");
	memcpy(b + BATCH_HDR_SIZE, section, section_len);
	st_put_be64(b + 0, 0);
	st_put_be32(b + 8, (uint32_t)(size - 12));
	st_put_be32(b + 12, (uint32_t)th->leader_epoch);
	b[16] = 2;
	st_put_be16(b + 21, (uint16_t)(codec | th->extra_attrs));
	st_put_be32(b + 23, (uint32_t)(n - 1));
	st_put_be64(b + 27, (uint64_t)th->base_ts);
	st_put_be64(b + 35, (uint64_t)max_ts);
	st_put_be64(b + 43, (uint64_t)th->producer_id);
	st_put_be16(b + 51, (uint16_t)th->producer_epoch);
	st_put_be32(b + 53, (uint32_t)th->base_sequence);
	st_put_be32(b + 57, (uint32_t)n);
	fix_crc(b, size);
	*size_out = size;
	return b;
}

static const uint8_t xerial_magic[8] = { 0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0 };

/* The records as the test encoded them, field by field. */
static bool records_match(const uint8_t *sec, size_t len, const struct trec *r, int n, int64_t base_ts,
			  int64_t base_ts_out)
{
	struct batch_rec_iter it;
	struct batch_record rec;
	batch_rec_iter_init(&it, sec, len);
	for (int i = 0; i < n; i++) {
		if (batch_rec_next(&it, &rec) != 1)
			return false;
		if (rec.offset_delta != i || base_ts_out + rec.timestamp_delta != base_ts + r[i].ts_delta ||
		    rec.attributes != 0)
			return false;
		if (rec.key_len != r[i].key_len || (rec.key_len < 0) != (rec.key == NULL) ||
		    (rec.key_len > 0 && memcmp(rec.key, r[i].key, (size_t)rec.key_len) != 0))
			return false;
		if (rec.value_len != r[i].value_len || (rec.value_len < 0) != (rec.value == NULL) ||
		    (rec.value_len > 0 && memcmp(rec.value, r[i].value, (size_t)rec.value_len) != 0))
			return false;
		if (rec.header_count != r[i].n_hdrs)
			return false;
		const uint8_t *hp = rec.headers, *he = rec.headers + rec.headers_len;
		for (int h = 0; h < r[i].n_hdrs; h++) {
			int32_t kl, vl;
			size_t m = batch_read_varint(hp, he, &kl);
			if (!m || kl != (int32_t)strlen(r[i].hkey[h]) || memcmp(hp + m, r[i].hkey[h], (size_t)kl))
				return false;
			hp += m + (size_t)kl;
			m = batch_read_varint(hp, he, &vl);
			if (!m || vl != r[i].hval_len[h] || (vl > 0 && memcmp(hp + m, r[i].hval[h], (size_t)vl)))
				return false;
			hp += m + (size_t)(vl > 0 ? vl : 0);
		}
	}
	return batch_rec_next(&it, &rec) == 0;
}

/* Checks one recompressed batch against its source. Returns the number of failed checks. */
static int check_recompressed(const char *what, const uint8_t *in, size_t in_size, const uint8_t *out,
			      size_t out_size, int target, const uint8_t *plain, size_t plain_len,
			      const struct trec *r, int n, int64_t max_ts)
{
	int bad = 0;
#define CHECK(c, fmt, ...) do { if (!(c)) { bad++; tap_diag("%s: " fmt, what, ##__VA_ARGS__); } } while (0)
	struct batch_hdr hi, ho;
	batch_parse_hdr(in, in_size, &hi);
	CHECK(batch_parse_hdr(out, out_size, &ho) == 0, "header");
	CHECK(batch_size(&ho) == (int64_t)out_size, "batch length matches the size");
	CHECK(batch_crc_ok(out, out_size), "CRC-32C valid");
	CHECK(batch_codec(&ho) == target, "codec bits %d", batch_codec(&ho));
	CHECK(ho.base_offset == 0 && ho.partition_leader_epoch == hi.partition_leader_epoch &&
	      ho.magic == 2, "base offset, leader epoch, magic kept");
	CHECK(ho.producer_id == hi.producer_id && ho.producer_epoch == hi.producer_epoch &&
	      ho.base_sequence == hi.base_sequence, "producer id/epoch/sequence kept");
	CHECK((ho.attributes & ~BATCH_ATTR_CODEC_MASK) == (hi.attributes & ~BATCH_ATTR_CODEC_MASK),
	      "attributes other than the codec kept (0x%x vs 0x%x)", ho.attributes, hi.attributes);
	CHECK(ho.record_count == n && ho.last_offset_delta == n - 1, "count and last offset delta");
	CHECK(ho.base_timestamp == hi.base_timestamp && ho.max_timestamp == max_ts, "timestamps");
	const uint8_t *sec = out + BATCH_HDR_SIZE;
	size_t sec_len = out_size - BATCH_HDR_SIZE;
	static const uint8_t gz[2] = { 0x1f, 0x8b }, lz4[4] = { 0x04, 0x22, 0x4d, 0x18 },
			     zst[4] = { 0x28, 0xb5, 0x2f, 0xfd };
	switch (target) {
	case COMPRESS_GZIP: CHECK(sec_len > 2 && !memcmp(sec, gz, 2), "gzip member"); break;
	case COMPRESS_SNAPPY: {
		/* snappy-java framing: magic, version 1, compatible 1, blocks of <= 32 KiB input */
		CHECK(sec_len > 16 && !memcmp(sec, xerial_magic, 8) && st_be32(sec + 8) == 1 &&
		      st_be32(sec + 12) == 1, "xerial header");
		size_t pos = 16, blocks = 0;
		while (pos + 4 <= sec_len && blocks < 100000) {
			pos += 4 + st_be32(sec + pos);
			blocks++;
		}
		CHECK(pos == sec_len && blocks == (plain_len + 32767) / 32768,
		      "xerial blocks: %zu for %zu bytes", blocks, plain_len);
		break;
	}
	case COMPRESS_LZ4: CHECK(sec_len > 4 && !memcmp(sec, lz4, 4), "lz4 frame"); break;
	case COMPRESS_ZSTD: CHECK(sec_len > 4 && !memcmp(sec, zst, 4), "zstd frame"); break;
	default: break;
	}
	uint8_t *dec = NULL;
	size_t dec_len = 0;
	CHECK(compress_inflate(target, sec, sec_len, (size_t)64 << 20, &dec, &dec_len) == 0, "inflates");
	CHECK(dec && dec_len == plain_len && !memcmp(dec, plain, plain_len),
	      "records byte for byte (%zu vs %zu bytes)", dec_len, plain_len);
	CHECK(dec && records_match(dec, dec_len, r, n, hi.base_timestamp, ho.base_timestamp),
	      "records field by field");
	free(dec);
	struct batch_validate_opts o = opts();
	struct batch_info info;
	CHECK(batch_validate(out, out_size, &o, &info) == KERR_NONE && info.records_checked &&
	      info.max_timestamp == max_ts, "the log's validation accepts it");
#undef CHECK
	return bad;
}

/* Source forms: every codec as clients write it, plus snappy xerial-framed (Java). */
enum { SRC_NONE, SRC_GZIP, SRC_SNAPPY_RAW, SRC_SNAPPY_XERIAL, SRC_LZ4, SRC_ZSTD, SRC__N };
static const char *const src_names[SRC__N] = { "none", "gzip", "snappy(raw)", "snappy(xerial)", "lz4", "zstd" };
static const int src_codec[SRC__N] = { COMPRESS_NONE, COMPRESS_GZIP, COMPRESS_SNAPPY, COMPRESS_SNAPPY,
				       COMPRESS_LZ4, COMPRESS_ZSTD };

/* The producer's batch of plain records in source form s (xerial snappy: our own output, which
 * the matrix checks independently as a target). */
static uint8_t *source_batch(int s, const struct thdr *th, const uint8_t *plain, size_t plain_len, int n,
			     int64_t max_ts, size_t *size)
{
	if (s == SRC_NONE)
		return tbatch(th, COMPRESS_NONE, plain, plain_len, n, max_ts, size);
	if (s == SRC_SNAPPY_XERIAL) {
		size_t nsz;
		uint8_t *none = tbatch(th, COMPRESS_NONE, plain, plain_len, n, max_ts, &nsz);
		struct batch_validate_opts o = opts();
		o.max_message_bytes = INT32_MAX;
		uint8_t *x = NULL;
		if (batch_recompress(none, nsz, &o, COMPRESS_SNAPPY, 0, &x, size) != KERR_NONE || !x)
			BAIL_OUT("xerial source");
		free(none);
		return x;
	}
	uint8_t *z = NULL;
	size_t zl = 0;
	if (compress_deflate(src_codec[s], 0, plain, plain_len, &z, &zl) != 0)
		BAIL_OUT("compress_deflate %s", src_names[s]);
	uint8_t *b = tbatch(th, src_codec[s], z, zl, n, max_ts, size);
	free(z);
	return b;
}

static void test_recompress_matrix(void)
{
	/* small: 40 records of 0..300 bytes; large: 400 records of 1 KiB (xerial: many blocks) */
	struct { int n; size_t value_len; } sets[] = { { 40, 0 }, { 400, 1024 } };
	struct thdr variants[] = {
		{ NOW_MS - 10000, -1, -1, -1, 0, -1 },
		{ NOW_MS - 10000, 4242, 7, 1000, BATCH_ATTR_TRANSACTIONAL, 3 },
	};
	for (size_t si = 0; si < ST_ARRAY_LEN(sets); si++) {
		int n = sets[si].n;
		struct trec *r = calloc((size_t)n, sizeof *r);
		if (!r)
			BAIL_OUT("out of memory");
		int64_t max_ts = INT64_MIN;
		for (int i = 0; i < n; i++) {
			trec_make(&r[i], i, sets[si].value_len);
		}
		struct tbuf plain = { 0 };
		trecs_encode(&plain, r, n);
		for (size_t vi = 0; vi < ST_ARRAY_LEN(variants); vi++) {
			const struct thdr *th = &variants[vi];
			max_ts = INT64_MIN;
			for (int i = 0; i < n; i++)
				max_ts = ST_MAX(max_ts, th->base_ts + r[i].ts_delta);
			for (int s = 0; s < SRC__N; s++) {
				size_t in_size;
				uint8_t *in = source_batch(s, th, plain.p, plain.len, n, max_ts, &in_size);
				uint8_t *copy = malloc(in_size);
				if (!copy)
					BAIL_OUT("out of memory");
				memcpy(copy, in, in_size);
				int bad = 0;
				for (int t = COMPRESS_NONE; t <= COMPRESS_ZSTD; t++) {
					char what[96];
					snprintf(what, sizeof what, "%d records, %s -> %s%s", n, src_names[s],
						 compress_codec_name(t), vi ? " (idempotent, transactional)" : "");
					struct batch_validate_opts o = opts();
					uint8_t *out = NULL;
					size_t out_size = 0;
					int rc = batch_recompress(in, in_size, &o, t, 0, &out, &out_size);
					if (rc != KERR_NONE) {
						tap_diag("%s: %s", what, kerr_name(rc));
						bad++;
					} else if (t == src_codec[s]) {
						if (out != NULL) {
							tap_diag("%s: same codec rewritten", what);
							bad++;
						}
					} else if (!out) {
						tap_diag("%s: nothing written", what);
						bad++;
					} else {
						bad += check_recompressed(what, in, in_size, out, out_size, t, plain.p,
									  plain.len, r, n, max_ts);
					}
					free(out);
				}
				ok(bad == 0 && memcmp(copy, in, in_size) == 0,
				   "recompress %d records (%s) from %s to every codec: records, header, CRC%s",
				   n, sets[si].value_len ? "1 KiB values" : "mixed", src_names[s],
				   vi ? ", producer id/epoch/seq, transactional bit" : "");
				free(copy);
				free(in);
			}
		}
		free(plain.p);
		trecs_free(r, n);
		free(r);
	}
}

/* A batch of n small text records in codec (batchgen's). */
static size_t small_batch(uint8_t *b, size_t cap, int n, size_t value_len, int codec)
{
	struct batchgen_opts g = BATCHGEN_DEFAULTS;
	g.n_records = n;
	g.value_len = value_len;
	g.base_ts_ms = NOW_MS - 100;
	g.with_keys = 1;
	g.codec = codec;
	return batchgen_build_opts(b, cap, &g);
}

static int recompress_rc(const uint8_t *b, size_t size, const struct batch_validate_opts *o, int target)
{
	uint8_t *out = NULL;
	size_t out_len = 0;
	int rc = batch_recompress(b, size, o, target, 0, &out, &out_len);
	if (rc != KERR_NONE && out)
		rc = -1000; /* an error must leave no output */
	free(out);
	return rc;
}

static void test_recompress_errors(void)
{
	struct batch_validate_opts o = opts();
	static uint8_t b[1 << 16];
	size_t size;

	/* The same answers as batch_validate for every kind of bad batch. */
	struct {
		const char *what;
		int codec;
		void (*spoil)(uint8_t *b, size_t size);
	} cases[] = {
		{ "bad CRC", COMPRESS_GZIP, NULL },
		{ "undecodable gzip", COMPRESS_GZIP, NULL },
		{ "fewer records than declared", COMPRESS_LZ4, NULL },
		{ "magic 1", COMPRESS_ZSTD, NULL },
		{ "base offset 5", COMPRESS_SNAPPY, NULL },
		{ "control batch", COMPRESS_NONE, NULL },
		{ "future timestamp", COMPRESS_ZSTD, NULL },
		{ "codec 6", COMPRESS_NONE, NULL },
		{ "producer id without sequence", COMPRESS_GZIP, NULL },
	};
	for (size_t i = 0; i < ST_ARRAY_LEN(cases); i++) {
		size = small_batch(b, sizeof b, 5, 40, cases[i].codec);
		switch (i) {
		case 0: b[BATCH_HDR_SIZE + 3] ^= 1; break;
		case 1: memset(b + BATCH_HDR_SIZE + 10, 0x33, size - BATCH_HDR_SIZE - 10); fix_crc(b, size); break;
		case 2: st_put_be32(b + BATCH_OFF_RECORD_COUNT, 6); st_put_be32(b + BATCH_OFF_LAST_OFFSET_DELTA, 5);
			fix_crc(b, size); break;
		case 3: b[BATCH_OFF_MAGIC] = 1; break;
		case 4: batch_set_base_offset(b, 5); break;
		case 5: st_put_be16(b + BATCH_OFF_ATTRIBUTES, BATCH_ATTR_CONTROL); fix_crc(b, size); break;
		case 6: {
			/* rebuild with a record 2 hours ahead */
			struct batchgen_opts g = BATCHGEN_DEFAULTS;
			g.n_records = 3;
			g.base_ts_ms = NOW_MS + 7200000;
			g.codec = COMPRESS_ZSTD;
			size = batchgen_build_opts(b, sizeof b, &g);
			break;
		}
		case 7: st_put_be16(b + BATCH_OFF_ATTRIBUTES, 6); fix_crc(b, size); break;
		case 8: st_put_be64(b + BATCH_OFF_PRODUCER_ID, 77); fix_crc(b, size); break;
		}
		struct batch_info info;
		int want = batch_validate(b, size, &o, &info);
		int target = cases[i].codec == COMPRESS_ZSTD ? COMPRESS_GZIP : COMPRESS_ZSTD;
		int got = recompress_rc(b, size, &o, target);
		ok(want != KERR_NONE && got == want, "%s: recompress answers %s as validation does (%s)",
		   cases[i].what, kerr_name(got), kerr_name(want));
	}

	/* Already in the target codec: nothing checked, nothing written (the log validates). */
	size = small_batch(b, sizeof b, 5, 40, COMPRESS_LZ4);
	b[BATCH_HDR_SIZE + 5] ^= 0xff;
	uint8_t *out = (uint8_t *)1;
	size_t out_len = 1;
	ok(batch_recompress(b, size, &o, COMPRESS_LZ4, 0, &out, &out_len) == KERR_NONE && out == NULL &&
	   out_len == 0, "same codec: KERR_NONE, no output, input untouched by checks");

	/* The input itself too large: refused before anything (as validation). */
	size = small_batch(b, sizeof b, 20, 100, COMPRESS_NONE);
	o.max_message_bytes = (int32_t)size - 1;
	is_int(recompress_rc(b, size, &o, COMPRESS_GZIP), KERR_MESSAGE_TOO_LARGE, "input over max.message.bytes");

	/* Fits compressed, too large once stored uncompressed (Kafka re-checks after recompressing). */
	size = small_batch(b, sizeof b, 200, 200, COMPRESS_ZSTD);
	o.max_message_bytes = (int32_t)size + 100;
	struct batch_info info;
	ok(batch_validate(b, size, &o, &info) == KERR_NONE, "compressible zstd batch fits max.message.bytes");
	is_int(recompress_rc(b, size, &o, COMPRESS_NONE), KERR_MESSAGE_TOO_LARGE,
	       "zstd -> uncompressed over max.message.bytes: MESSAGE_TOO_LARGE");
	o.max_message_bytes = INT32_MAX;
	is_int(recompress_rc(b, size, &o, COMPRESS_NONE), KERR_NONE, "... and fine without the limit");

	/* Incompressible records: every codec's framing makes them larger than max = input size. */
	{
		struct trec r[8];
		for (int i = 0; i < 8; i++) {
			trec_make(&r[i], 3 * i, 2000); /* i % 3 == 0: random bytes */
			r[i].key_len = -1;
		}
		struct tbuf plain = { 0 };
		trecs_encode(&plain, r, 8);
		struct thdr th = { NOW_MS - 10000, -1, -1, -1, 0, -1 };
		int64_t mx = INT64_MIN;
		for (int i = 0; i < 8; i++)
			mx = ST_MAX(mx, th.base_ts + r[i].ts_delta);
		size_t in_size;
		uint8_t *in = tbatch(&th, COMPRESS_NONE, plain.p, plain.len, 8, mx, &in_size);
		o = opts();
		o.max_message_bytes = (int32_t)in_size;
		int all = 1;
		for (int t = COMPRESS_GZIP; t <= COMPRESS_ZSTD; t++) {
			int rc = recompress_rc(in, in_size, &o, t);
			if (rc != KERR_MESSAGE_TOO_LARGE) {
				tap_diag("none -> %s: %s", compress_codec_name(t), kerr_name(rc));
				all = 0;
			}
		}
		ok(all, "incompressible records grown by every codec past max.message.bytes: MESSAGE_TOO_LARGE");
		o.max_message_bytes = (int32_t)in_size + 1000;
		all = 1;
		for (int t = COMPRESS_GZIP; t <= COMPRESS_ZSTD; t++)
			all &= recompress_rc(in, in_size, &o, t) == KERR_NONE;
		ok(all, "... and accepted with room for the codec's overhead");
		free(in);
		free(plain.p);
		trecs_free(r, 8);
	}

	/* Decompression-bomb guard: refused as validation refuses it. */
	o = opts();
	size = small_batch(b, sizeof b, 100, 500, COMPRESS_GZIP);
	o.inflate_max_bytes = 1000;
	is_int(recompress_rc(b, size, &o, COMPRESS_LZ4), KERR_CORRUPT_MESSAGE, "inflated past the guard: CORRUPT_MESSAGE");
	o = opts();

	/* A level the codec refuses is the broker's fault. */
	size = small_batch(b, sizeof b, 5, 40, COMPRESS_NONE);
	out = NULL;
	ok(batch_recompress(b, size, &o, COMPRESS_GZIP, 42, &out, &out_len) == KERR_UNKNOWN_SERVER_ERROR &&
	   out == NULL, "gzip level 42: UNKNOWN_SERVER_ERROR, no output");
	ok(batch_recompress(b, size, &o, COMPRESS_GZIP, 9, &out, &out_len) == KERR_NONE && out &&
	   batch_validate(out, out_len, &o, &info) == KERR_NONE, "gzip level 9");
	free(out);
	out = NULL;
	ok(batch_recompress(b, size, &o, 7, 0, &out, &out_len) == KERR_UNKNOWN_SERVER_ERROR && !out,
	   "unknown target codec: UNKNOWN_SERVER_ERROR");
	/* A trailing partial batch is the caller's business (the log refuses it): only the first
	 * batch is read. */
	ok(batch_recompress(b, size + 7, &o, COMPRESS_LZ4, 0, &out, &out_len) == KERR_NONE && out &&
	   out_len > BATCH_HDR_SIZE, "bytes after the batch are not read");
	free(out);
}

static void test_recompress_timestamps(void)
{
	static uint8_t b[1 << 16];
	struct batch_validate_opts o = opts();
	struct batch_info info;
	uint8_t *out = NULL;
	size_t out_len = 0;

	/* A wrong header max timestamp: the new batch carries the records' (Kafka's builder). */
	size_t size = small_batch(b, sizeof b, 6, 30, COMPRESS_SNAPPY);
	st_put_be64(b + BATCH_OFF_MAX_TIMESTAMP, (uint64_t)(NOW_MS + 999));
	fix_crc(b, size);
	struct batch_hdr h;
	ok(batch_recompress(b, size, &o, COMPRESS_ZSTD, 0, &out, &out_len) == KERR_NONE && out &&
	   batch_parse_hdr(out, out_len, &h) == 0 && h.max_timestamp == NOW_MS - 100 + 5,
	   "max timestamp recomputed from the records");
	/* The log then applies LogAppendTime to it in place: still a valid batch. */
	o.log_append_time = true;
	batch_set_log_append_time(out, out_len, NOW_MS + 1);
	batch_parse_hdr(out, out_len, &h);
	ok(batch_crc_ok(out, out_len) && batch_is_log_append_time(&h) && h.max_timestamp == NOW_MS + 1 &&
	   batch_codec(&h) == COMPRESS_ZSTD, "LogAppendTime applied to the recompressed batch keeps it valid");
	free(out);
	out = NULL;

	/* LogAppendTime topic: the records' CreateTime is not range-checked, as validation. */
	size = small_batch(b, sizeof b, 3, 10, COMPRESS_LZ4);
	st_put_be64(b + BATCH_OFF_BASE_TIMESTAMP, (uint64_t)(NOW_MS - 86400000LL * 365 * 40));
	fix_crc(b, size);
	int want = batch_validate(b, size, &o, &info);
	ok(want == KERR_NONE && recompress_rc(b, size, &o, COMPRESS_GZIP) == KERR_NONE,
	   "LogAppendTime topic: ancient CreateTime accepted (as validation)");
	/* A producer that sets the LogAppendTime bit itself. */
	size = small_batch(b, sizeof b, 3, 10, COMPRESS_LZ4);
	st_put_be16(b + BATCH_OFF_ATTRIBUTES, COMPRESS_LZ4 | BATCH_ATTR_LOG_APPEND_TIME);
	fix_crc(b, size);
	is_int(recompress_rc(b, size, &o, COMPRESS_GZIP), KERR_INVALID_TIMESTAMP,
	       "LogAppendTime topic, producer-set LogAppendTime bit: INVALID_TIMESTAMP");
	o.log_append_time = false;
	ok(batch_recompress(b, size, &o, COMPRESS_GZIP, 0, &out, &out_len) == KERR_NONE && out &&
	   batch_parse_hdr(out, out_len, &h) == 0 && !batch_is_log_append_time(&h) &&
	   h.max_timestamp == NOW_MS - 100 + 2 && batch_validate(out, out_len, &o, &info) == KERR_NONE,
	   "CreateTime topic, producer-set LogAppendTime bit: cleared, as the in-place path does");
	free(out);
}

/* Throughput of recompression for 1 KiB records (1 MiB batches), printed, not asserted. */
static void bench_recompress(void)
{
	const int n = 1000;
	struct trec *r = calloc((size_t)n, sizeof *r);
	if (!r)
		BAIL_OUT("out of memory");
	for (int i = 0; i < n; i++) {
		trec_make(&r[i], i, 1024);
		if (!r[i].value) { /* null/empty ones: text, so every record is 1 KiB */
			r[i].value = malloc(1024);
			if (!r[i].value)
				BAIL_OUT("out of memory");
			for (int j = 0; j < 1024; j++)
				r[i].value[j] = (uint8_t)words[(size_t)(i + j) % ST_ARRAY_LEN(words)][0];
			r[i].value_len = 1024;
		}
		if (i % 3 == 0) /* mostly text: 1 in 3 random is too pessimistic; make it 1 in 30 */
			for (int j = 0; j < 1024 && i % 30 != 0; j++)
				r[i].value[j] = (uint8_t)words[(size_t)(i * 7 + j / 5) % ST_ARRAY_LEN(words)][j % 3];
	}
	struct tbuf plain = { 0 };
	trecs_encode(&plain, r, n);
	struct thdr th = { NOW_MS - 10000, -1, -1, -1, 0, -1 };
	int64_t mx = INT64_MIN;
	for (int i = 0; i < n; i++)
		mx = ST_MAX(mx, th.base_ts + r[i].ts_delta);
	struct batch_validate_opts o = opts();
	o.max_message_bytes = INT32_MAX;
	tap_diag("recompression of %d x 1 KiB records (%zu bytes uncompressed), MB/s of uncompressed "
		 "records, one core:", n, plain.len);
	for (int s = 0; s < SRC__N; s++) {
		if (s == SRC_SNAPPY_RAW)
			continue;
		size_t in_size;
		uint8_t *in = source_batch(s, &th, plain.p, plain.len, n, mx, &in_size);
		char line[256];
		int len = snprintf(line, sizeof line, "  from %-14s (%7zu B):", src_names[s], in_size);
		for (int t = COMPRESS_NONE; t <= COMPRESS_ZSTD; t++) {
			if (t == src_codec[s]) {
				len += snprintf(line + len, sizeof line - (size_t)len, " %6s=  -  ", compress_codec_name(t));
				continue;
			}
			struct timespec t0, t1;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			int iters = 0;
			double secs = 0;
			size_t out_len = 0;
			do {
				uint8_t *out = NULL;
				if (batch_recompress(in, in_size, &o, t, 0, &out, &out_len) != KERR_NONE)
					BAIL_OUT("bench recompress");
				free(out);
				iters++;
				clock_gettime(CLOCK_MONOTONIC, &t1);
				secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
			} while (secs < 0.3 && iters < 10000);
			len += snprintf(line + len, sizeof line - (size_t)len, " %6s=%5.0f", compress_codec_name(t),
					(double)plain.len * iters / secs / 1e6);
		}
		tap_diag("%s", line);
		free(in);
	}
	free(plain.p);
	trecs_free(r, n);
	free(r);
}

int main(void)
{
	test_varints();
	test_good();
	test_compressed();
	test_bad();
	test_timestamps();
	test_rewrites();
	test_recompress_matrix();
	test_recompress_errors();
	test_recompress_timestamps();
	if (getenv("STRATA_RECOMPRESS_BENCH"))
		bench_recompress();
	return tap_done();
}
