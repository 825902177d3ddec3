/* fuzz_batch.c -- libFuzzer target for record batches (batch.h) and the codecs (compress.h).
 * Input: the records bytes of one Produce partition (one or more RecordBatch v2), as the broker
 * hands them to log_append. Runs batch_validate over them like the log does, then again on a
 * copy whose CRCs are fixed up (a mutated batch almost never has a valid CRC, and without this
 * the fuzzer would never get past the check into the record parser and the decompressors),
 * iterates records directly, inflates compressed sections with a small max_out, and checks the
 * in-place rewrites keep the CRC valid. Owns no state between inputs; silent on success.
 * Also linked into t/fuzz-replay-batch (corpus replay without libFuzzer). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata/batch.h"
#include "strata/common.h"
#include "strata/compress.h"
#include "strata/kerr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A small decompression budget keeps each input fast; the guard path (-EMSGSIZE) gets exercised. */
#define FUZZ_INFLATE_MAX_BYTES (64u << 10)
/* log_append's loop is unbounded in batches; bound ours (inputs are small anyway). */
#define FUZZ_MAX_BATCHES 64
/* A fixed "now" so timestamps judged valid or not do not depend on when the fuzzer runs. */
#define FUZZ_NOW_MS 1700000000000LL

static void fuzz_fail(const char *what, size_t at)
{
	fprintf(stderr, "fuzz_batch: batch at %zu: %s\n", at, what);
	abort();
}

static bool is_kerr(int rc)
{
	switch (rc) {
	case KERR_NONE:
	case KERR_CORRUPT_MESSAGE:
	case KERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
	case KERR_MESSAGE_TOO_LARGE:
	case KERR_INVALID_RECORD:
	case KERR_INVALID_TIMESTAMP:
		return true;
	default:
		return false;
	}
}

/* Walks a records section; every record must lie inside it and the sizes must add up. */
static int walk_records(const uint8_t *recs, size_t len)
{
	struct batch_rec_iter it;
	struct batch_record r;
	size_t sum = 0;
	int n = 0, rc;
	batch_rec_iter_init(&it, recs, len);
	/* Every record takes at least 7 bytes, so len bounds the loop. */
	while ((rc = batch_rec_next(&it, &r)) == 1) {
		if (r.size <= 0 || (size_t)r.size > len - sum)
			fuzz_fail("record size outside the section", 0);
		const uint8_t *rs = recs + sum, *re = rs + r.size;
		if (r.key_len >= 0 && (r.key < rs || r.key + r.key_len > re))
			fuzz_fail("record key outside the record", 0);
		if (r.value_len >= 0 && (r.value < rs || r.value + r.value_len > re))
			fuzz_fail("record value outside the record", 0);
		if (r.headers < rs || r.headers + r.headers_len > re)
			fuzz_fail("record headers outside the record", 0);
		sum += (size_t)r.size;
		n++;
	}
	if (rc == 0 && sum != len)
		fuzz_fail("iteration ended before the section did", 0);
	if (rc != 0 && rc != -EINVAL)
		fuzz_fail("batch_rec_next returned neither 0, 1 nor -EINVAL", 0);
	return n;
}

static void check_records_of(const uint8_t *b, size_t bsize)
{
	struct batch_hdr h;
	if (batch_parse_hdr(b, bsize, &h) < 0)
		return;
	const uint8_t *recs = b + BATCH_HDR_SIZE;
	size_t recs_len = bsize - BATCH_HDR_SIZE;
	int codec = batch_codec(&h);
	if (codec == COMPRESS_NONE) {
		walk_records(recs, recs_len);
		return;
	}
	uint8_t *out = NULL;
	size_t out_len = 0;
	int rc = compress_inflate(codec, recs, recs_len, FUZZ_INFLATE_MAX_BYTES, &out, &out_len);
	if (rc == 0) {
		if (!out)
			fuzz_fail("compress_inflate succeeded with a NULL buffer", 0);
		if (out_len > FUZZ_INFLATE_MAX_BYTES)
			fuzz_fail("compress_inflate produced more than max_out", 0);
		walk_records(out, out_len);
	} else if (rc != -EINVAL && rc != -EMSGSIZE && rc != -ENOTSUP && rc != -ENOMEM) {
		fuzz_fail("compress_inflate returned an undocumented error", 0);
	}
	free(out);
}

/* batch_validate over every batch, as log_append does. fix_crc: recompute each batch's CRC
 * first (the buffer is the caller's writable copy). Returns the number of valid batches. */
static int validate_all(uint8_t *p, size_t len, bool fix_crc, bool log_append_time)
{
	struct batch_validate_opts o = {
		.max_message_bytes = 1048588,
		.log_append_time = log_append_time,
		.now_ms = FUZZ_NOW_MS,
		.timestamp_before_max_ms = INT64_MAX,
		.timestamp_after_max_ms = 3600 * 1000,
		.inflate_compressed = true,
		.inflate_max_bytes = FUZZ_INFLATE_MAX_BYTES,
	};
	int valid = 0;
	size_t pos = 0;
	for (int i = 0; i < FUZZ_MAX_BATCHES && pos < len; i++) {
		size_t avail = len - pos;
		uint8_t *b = p + pos;
		if (fix_crc && avail >= BATCH_HDR_SIZE) {
			int32_t blen = (int32_t)st_be32(b + BATCH_OFF_LENGTH);
			if (blen >= BATCH_HDR_SIZE - BATCH_LOG_OVERHEAD &&
			    (size_t)blen + BATCH_LOG_OVERHEAD <= avail) {
				size_t bsize = (size_t)blen + BATCH_LOG_OVERHEAD;
				st_put_be32(b + BATCH_OFF_CRC, batch_compute_crc(b, bsize));
				if (!batch_crc_ok(b, bsize))
					fuzz_fail("CRC just computed does not check", pos);
			}
		}
		struct batch_info info;
		memset(&info, 0, sizeof info);
		int rc = batch_validate(b, avail, &o, &info);
		if (!is_kerr(rc))
			fuzz_fail("batch_validate returned an undocumented error", pos);
		if (rc != KERR_NONE)
			break;
		if (info.size < BATCH_HDR_SIZE || info.size > avail)
			fuzz_fail("valid batch with a size outside the input", pos);
		if (info.h.record_count <= 0)
			fuzz_fail("valid batch without records", pos);
		check_records_of(b, info.size);
		/* The rewrites the log makes must leave a batch whose CRC checks. */
		batch_set_base_offset(b, 1000);
		batch_set_leader_epoch(b, 7);
		if (log_append_time)
			batch_set_log_append_time(b, info.size, FUZZ_NOW_MS);
		else
			batch_set_max_timestamp(b, info.size, info.max_timestamp);
		if (!batch_crc_ok(b, info.size))
			fuzz_fail("CRC broken by an in-place rewrite", pos);
		pos += info.size;
		valid++;
	}
	return valid;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	uint8_t *copy = malloc(size);
	if (!copy)
		return 0;

	/* As received: usually stops at the CRC, which is what a corrupted producer gets. */
	memcpy(copy, data, size);
	validate_all(copy, size, false, false);

	/* CRCs fixed: reaches the record parser and the decompressors. */
	memcpy(copy, data, size);
	validate_all(copy, size, true, false);
	memcpy(copy, data, size);
	validate_all(copy, size, true, true);

	/* The header parser and the record iterator on the raw bytes, whatever they hold. */
	check_records_of(data, size);
	if (size > BATCH_HDR_SIZE)
		walk_records(data + BATCH_HDR_SIZE, size - BATCH_HDR_SIZE);

	free(copy);
	return 0;
}
