/* t/batch.c -- RecordBatch v2: header parsing, varints, record iteration, validation (every
 * kind of bad batch and the Kafka error it gets), in-place rewrites keeping the CRC valid. */
#include <errno.h>
#include <string.h>

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

int main(void)
{
	test_varints();
	test_good();
	test_compressed();
	test_bad();
	test_timestamps();
	test_rewrites();
	return tap_done();
}
