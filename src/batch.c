/* batch.c -- RecordBatch v2 parsing, validation of producer batches and in-place rewrites.
 * Owns no state and does no I/O. Validation mirrors Kafka's UnifiedLog.analyzeAndValidateRecords
 * + LogValidator (client origin) in what it checks, in which order, and which error it answers:
 *   base offset != 0 -> INVALID_RECORD; size > max.message.bytes -> MESSAGE_TOO_LARGE; size
 *   below the 61-byte overhead or CRC-32C mismatch -> CORRUPT_MESSAGE; lastOffsetDelta + 1 vs
 *   recordCount, count <= 0, control batch, producer id without a sequence -> INVALID_RECORD;
 *   malformed records or a record count that does not match the records -> INVALID_RECORD;
 *   CreateTime outside [now - before.max, now + after.max], or a producer-set LogAppendTime
 *   bit the way Kafka's validateTimestamp catches it -> INVALID_TIMESTAMP (after the record
 *   walk, as Kafka collects record errors).
 * Differences from Kafka, all stricter, none reachable by a well-behaved client:
 *   - a trailing partial batch is CORRUPT_MESSAGE (Kafka silently drops it);
 *   - magic 0/1 is UNSUPPORTED_FOR_MESSAGE_FORMAT (Kafka's log converts it; its Produce v3+
 *     request check answers INVALID_RECORD), other magics CORRUPT_MESSAGE (as Kafka);
 *   - inner offset deltas must be 0..n-1 (Kafka re-encodes the batch instead), INVALID_RECORD;
 *   - an unknown codec id (5..7) is CORRUPT_MESSAGE (Kafka fails with an unknown server error);
 *   - a compressed batch that cannot be inflated is CORRUPT_MESSAGE.
 * Like Kafka, the leader epoch and base offset fields are outside the CRC. */
#include <errno.h>
#include <stdlib.h>

#include "strata/batch.h"
#include "strata/common.h"
#include "strata/compress.h"
#include "strata/crc32c.h"
#include "strata/kerr.h"

int batch_parse_hdr(const uint8_t *p, size_t len, struct batch_hdr *h)
{
	if (len < BATCH_HDR_SIZE)
		return -EINVAL;
	h->base_offset = (int64_t)st_be64(p + 0);
	h->batch_length = (int32_t)st_be32(p + 8);
	h->partition_leader_epoch = (int32_t)st_be32(p + 12);
	h->magic = (int8_t)p[16];
	h->crc = st_be32(p + 17);
	h->attributes = (int16_t)st_be16(p + 21);
	h->last_offset_delta = (int32_t)st_be32(p + 23);
	h->base_timestamp = (int64_t)st_be64(p + 27);
	h->max_timestamp = (int64_t)st_be64(p + 35);
	h->producer_id = (int64_t)st_be64(p + 43);
	h->producer_epoch = (int16_t)st_be16(p + 51);
	h->base_sequence = (int32_t)st_be32(p + 53);
	h->record_count = (int32_t)st_be32(p + 57);
	return 0;
}

uint32_t batch_compute_crc(const uint8_t *batch, size_t size)
{
	ST_ASSERT(size >= BATCH_HDR_SIZE);
	return crc32c(0, batch + BATCH_OFF_ATTRIBUTES, size - BATCH_OFF_ATTRIBUTES);
}

bool batch_crc_ok(const uint8_t *batch, size_t size)
{
	if (size < BATCH_HDR_SIZE)
		return false;
	return batch_compute_crc(batch, size) == st_be32(batch + BATCH_OFF_CRC);
}

void batch_set_base_offset(uint8_t *batch, int64_t base_offset)
{
	st_put_be64(batch + BATCH_OFF_BASE_OFFSET, (uint64_t)base_offset);
}

void batch_set_leader_epoch(uint8_t *batch, int32_t epoch)
{
	st_put_be32(batch + BATCH_OFF_LEADER_EPOCH, (uint32_t)epoch);
}

void batch_set_log_append_time(uint8_t *batch, size_t size, int64_t now_ms)
{
	uint16_t attrs = st_be16(batch + BATCH_OFF_ATTRIBUTES);
	st_put_be16(batch + BATCH_OFF_ATTRIBUTES, (uint16_t)(attrs | BATCH_ATTR_LOG_APPEND_TIME));
	st_put_be64(batch + BATCH_OFF_MAX_TIMESTAMP, (uint64_t)now_ms);
	st_put_be32(batch + BATCH_OFF_CRC, batch_compute_crc(batch, size));
}

void batch_set_max_timestamp(uint8_t *batch, size_t size, int64_t max_ts)
{
	/* Kafka's setMaxTimestamp(CREATE_TIME, ts): the type becomes CreateTime too. */
	uint16_t attrs = st_be16(batch + BATCH_OFF_ATTRIBUTES);
	st_put_be16(batch + BATCH_OFF_ATTRIBUTES, (uint16_t)(attrs & ~BATCH_ATTR_LOG_APPEND_TIME));
	st_put_be64(batch + BATCH_OFF_MAX_TIMESTAMP, (uint64_t)max_ts);
	st_put_be32(batch + BATCH_OFF_CRC, batch_compute_crc(batch, size));
}

/* --- varints -------------------------------------------------------------------------------- */

size_t batch_read_varlong(const uint8_t *p, const uint8_t *end, int64_t *out)
{
	uint64_t v = 0;
	for (size_t i = 0; i < 10; i++) {
		if (p + i >= end)
			return 0;
		uint8_t b = p[i];
		if (i == 9 && (b & 0xfe))
			return 0; /* more than 64 bits */
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*out = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
			return i + 1;
		}
	}
	return 0;
}

size_t batch_read_varint(const uint8_t *p, const uint8_t *end, int32_t *out)
{
	uint32_t v = 0;
	for (size_t i = 0; i < 5; i++) {
		if (p + i >= end)
			return 0;
		uint8_t b = p[i];
		if (i == 4 && (b & 0xf0))
			return 0; /* more than 32 bits */
		v |= (uint32_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*out = (int32_t)((v >> 1) ^ (~(v & 1) + 1));
			return i + 1;
		}
	}
	return 0;
}

size_t batch_write_varlong(uint8_t *buf, int64_t v)
{
	uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	size_t n = 0;
	while (z >= 0x80) {
		buf[n++] = (uint8_t)(z | 0x80);
		z >>= 7;
	}
	buf[n++] = (uint8_t)z;
	return n;
}

size_t batch_write_varint(uint8_t *buf, int32_t v)
{
	uint32_t z = ((uint32_t)v << 1) ^ (uint32_t)(v >> 31);
	size_t n = 0;
	while (z >= 0x80) {
		buf[n++] = (uint8_t)(z | 0x80);
		z >>= 7;
	}
	buf[n++] = (uint8_t)z;
	return n;
}

/* --- records -------------------------------------------------------------------------------- */

void batch_rec_iter_init(struct batch_rec_iter *it, const uint8_t *records, size_t len)
{
	it->p = records;
	it->end = records + len;
	it->index = 0;
}

/* A length-prefixed byte field: -1 = null (when allowed), else that many bytes must follow. */
static int read_bytes_field(const uint8_t **pp, const uint8_t *end, bool null_ok,
			    const uint8_t **data, int32_t *len)
{
	size_t n = batch_read_varint(*pp, end, len);
	if (!n)
		return -EINVAL;
	*pp += n;
	if (*len < 0) {
		if (*len != -1 || !null_ok)
			return -EINVAL;
		*data = NULL;
		return 0;
	}
	if ((size_t)(end - *pp) < (size_t)*len)
		return -EINVAL;
	*data = *pp;
	*pp += *len;
	return 0;
}

int batch_rec_next(struct batch_rec_iter *it, struct batch_record *r)
{
	if (it->p >= it->end)
		return 0;
	const uint8_t *start = it->p, *p = it->p;
	int32_t body_len;
	size_t n = batch_read_varint(p, it->end, &body_len);
	if (!n || body_len < 0)
		return -EINVAL;
	p += n;
	if ((size_t)(it->end - p) < (size_t)body_len)
		return -EINVAL;
	/* Fields are parsed within the record's own bytes: a field running past them is a
	 * malformed record even when the section has more bytes (Kafka: "Invalid record size"). */
	const uint8_t *rend = p + body_len;
	if (p >= rend)
		return -EINVAL;
	r->attributes = (int8_t)*p++;
	if (!(n = batch_read_varlong(p, rend, &r->timestamp_delta)))
		return -EINVAL;
	p += n;
	if (!(n = batch_read_varint(p, rend, &r->offset_delta)))
		return -EINVAL;
	p += n;
	if (read_bytes_field(&p, rend, true, &r->key, &r->key_len) < 0)
		return -EINVAL;
	if (read_bytes_field(&p, rend, true, &r->value, &r->value_len) < 0)
		return -EINVAL;
	if (!(n = batch_read_varint(p, rend, &r->header_count)) || r->header_count < 0)
		return -EINVAL;
	p += n;
	r->headers = p;
	/* Bounded: every header takes at least 2 bytes of the record. */
	for (int32_t i = 0; i < r->header_count; i++) {
		const uint8_t *d;
		int32_t l;
		if (read_bytes_field(&p, rend, false, &d, &l) < 0) /* header key: never null */
			return -EINVAL;
		if (read_bytes_field(&p, rend, true, &d, &l) < 0)
			return -EINVAL;
	}
	r->headers_len = (size_t)(p - r->headers);
	if (p != rend)
		return -EINVAL;
	r->size = (int32_t)(rend - start);
	it->p = rend;
	it->index++;
	return 1;
}

/* --- validation ----------------------------------------------------------------------------- */

/* Kafka's LogValidator.validateTimestamp for one record (ts is the record's timestamp as Kafka's
 * Record.timestamp() reports it: the batch max timestamp for LogAppendTime batches). */
static int check_record_ts(const struct batch_validate_opts *o, bool batch_lat, int64_t ts)
{
	if (!o->log_append_time && ts != BATCH_NO_TIMESTAMP) {
		/* before: now - ts > before_max; after: ts - now > after_max (saturating) */
		if (ts < o->now_ms) {
			uint64_t behind = (uint64_t)o->now_ms - (uint64_t)ts;
			if (behind > (uint64_t)o->timestamp_before_max_ms)
				return KERR_INVALID_TIMESTAMP;
		} else {
			uint64_t ahead = (uint64_t)ts - (uint64_t)o->now_ms;
			if (ahead > (uint64_t)o->timestamp_after_max_ms)
				return KERR_INVALID_TIMESTAMP;
		}
		return KERR_NONE;
	}
	/* "Producer should not set timestamp type to LogAppendTime." */
	if (batch_lat)
		return KERR_INVALID_TIMESTAMP;
	return KERR_NONE;
}

/* Iterates the records: count and offset deltas 0..n-1 must match the header, the records must
 * fill the section exactly. Kafka rebuilds (rather than rejects) batches whose inner offsets are
 * not 0..n-1; we reject them with INVALID_RECORD since we never re-encode. */
static int check_records(const uint8_t *recs, size_t len, const struct batch_hdr *h,
			 const struct batch_validate_opts *o, int64_t *max_ts_out)
{
	struct batch_rec_iter it;
	struct batch_record r;
	bool lat = batch_is_log_append_time(h);
	bool bad_ts = false;
	int64_t max_ts = BATCH_NO_TIMESTAMP;
	batch_rec_iter_init(&it, recs, len);
	for (int32_t i = 0; i < h->record_count; i++) {
		int rc = batch_rec_next(&it, &r);
		if (rc <= 0)
			return KERR_INVALID_RECORD; /* malformed, or fewer records than declared */
		if (r.offset_delta != i)
			return KERR_INVALID_RECORD;
		int64_t ts = lat ? h->max_timestamp : (int64_t)((uint64_t)h->base_timestamp + (uint64_t)r.timestamp_delta);
		if (check_record_ts(o, lat, ts) != KERR_NONE)
			bad_ts = true;
		if (ts > max_ts)
			max_ts = ts;
	}
	if (it.p != it.end)
		return KERR_INVALID_RECORD; /* "records still remaining" */
	if (bad_ts)
		return KERR_INVALID_TIMESTAMP;
	*max_ts_out = max_ts;
	return KERR_NONE;
}

int batch_validate(const uint8_t *p, size_t avail, const struct batch_validate_opts *o,
		   struct batch_info *out)
{
	/* Kafka silently drops a trailing partial batch (and appends nothing when that is all
	 * there is); we reject it: a producer never sends one, so it is corruption. */
	if (avail < BATCH_LOG_OVERHEAD)
		return KERR_CORRUPT_MESSAGE;
	int32_t blen = (int32_t)st_be32(p + BATCH_OFF_LENGTH);
	if (blen < BATCH_HDR_SIZE - BATCH_LOG_OVERHEAD)
		return KERR_CORRUPT_MESSAGE;
	size_t size = (size_t)blen + BATCH_LOG_OVERHEAD;
	if (size > avail)
		return KERR_CORRUPT_MESSAGE;
	struct batch_hdr h;
	batch_parse_hdr(p, size, &h);
	/* Kafka reads magic 0/1 and converts it; Produce v3+ requests carrying them are refused
	 * with INVALID_RECORD by ProduceRequest.validateRecords. We never convert formats. */
	if (h.magic == 0 || h.magic == 1)
		return KERR_UNSUPPORTED_FOR_MESSAGE_FORMAT;
	if (h.magic != BATCH_MAGIC_V2)
		return KERR_CORRUPT_MESSAGE; /* "Invalid magic found in record" */
	if (h.base_offset != 0)
		return KERR_INVALID_RECORD; /* "The baseOffset of the record batch ... should be 0" */
	if (size > (size_t)(o->max_message_bytes < 0 ? 0 : o->max_message_bytes))
		return KERR_MESSAGE_TOO_LARGE;
	if (!batch_crc_ok(p, size))
		return KERR_CORRUPT_MESSAGE;
	int64_t count_from_offsets = (int64_t)h.last_offset_delta + 1;
	if (count_from_offsets <= 0 || h.record_count <= 0 || count_from_offsets != h.record_count)
		return KERR_INVALID_RECORD;
	if (batch_is_control(&h))
		return KERR_INVALID_RECORD; /* clients may not write control records */
	if (h.producer_id >= 0 && h.base_sequence < 0)
		return KERR_INVALID_RECORD;

	out->h = h;
	out->size = size;
	out->max_timestamp = h.max_timestamp;
	out->records_checked = false;

	const uint8_t *recs = p + BATCH_HDR_SIZE;
	size_t recs_len = size - BATCH_HDR_SIZE;
	int codec = batch_codec(&h);
	if (codec > COMPRESS_ZSTD)
		return KERR_CORRUPT_MESSAGE; /* Kafka: unknown compression type id */
	if (codec == COMPRESS_NONE) {
		int rc = check_records(recs, recs_len, &h, o, &out->max_timestamp);
		if (rc != KERR_NONE)
			return rc;
		out->records_checked = true;
		return KERR_NONE;
	}
	if (o->inflate_compressed) {
		uint8_t *buf = NULL;
		size_t buf_len = 0;
		size_t max_out = o->inflate_max_bytes ? o->inflate_max_bytes : (size_t)256 << 20;
		int rc = compress_inflate(codec, recs, recs_len, max_out, &buf, &buf_len);
		if (rc == 0) {
			rc = check_records(buf, buf_len, &h, o, &out->max_timestamp);
			free(buf);
			if (rc != KERR_NONE)
				return rc;
			out->records_checked = true;
			return KERR_NONE;
		}
		free(buf);
		if (rc != -ENOMEM)
			return KERR_CORRUPT_MESSAGE;
		/* Out of memory is not the producer's fault: fall back to header checks. */
	}
	/* Header-level only: the base and max timestamps stand for the records' (Kafka checks
	 * every record; a compressed batch whose inner timestamps lie outside [base, max] can
	 * slip through here). */
	bool lat = batch_is_log_append_time(&h);
	if (check_record_ts(o, lat, lat ? h.max_timestamp : h.base_timestamp) != KERR_NONE ||
	    check_record_ts(o, lat, h.max_timestamp) != KERR_NONE)
		return KERR_INVALID_TIMESTAMP;
	return KERR_NONE;
}
