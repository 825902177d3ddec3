/* batch.c -- RecordBatch v2 parsing, validation of producer batches, in-place rewrites and
 * recompression into a topic's codec. Owns no state and does no I/O. Validation mirrors Kafka's
 * UnifiedLog.analyzeAndValidateRecords + LogValidator (client origin) in what it checks, in
 * which order, and which error it answers:
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
 * Recompression (batch_recompress) keeps the producer's records byte for byte where Kafka's
 * MemoryRecordsBuilder re-encodes them: the same bytes for every client we know (they write
 * baseTimestamp = the first record's, record attributes 0).
 * Like Kafka, the leader epoch and base offset fields are outside the CRC. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

/* The checks of batch_validate up to the records: lengths, magic, base offset, size, CRC, count,
 * control bit, sequence, codec id. Fills *out (records not yet walked). */
static int validate_header(const uint8_t *p, size_t avail, const struct batch_validate_opts *o,
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
	if (batch_codec(&h) > COMPRESS_ZSTD)
		return KERR_CORRUPT_MESSAGE; /* Kafka: unknown compression type id */

	out->h = h;
	out->size = size;
	out->max_timestamp = h.max_timestamp;
	out->records_checked = false;
	return KERR_NONE;
}

/* Inflates a compressed batch's records section: KERR_NONE (*buf malloc'd), CORRUPT_MESSAGE
 * (undecodable, or past the decompression-bomb guard), or -ENOMEM (not a Kafka error: the
 * callers decide). */
static int inflate_records(const uint8_t *p, const struct batch_info *bi,
			   const struct batch_validate_opts *o, uint8_t **buf, size_t *buf_len)
{
	size_t max_out = o->inflate_max_bytes ? o->inflate_max_bytes : (size_t)256 << 20;
	int rc = compress_inflate(batch_codec(&bi->h), p + BATCH_HDR_SIZE, bi->size - BATCH_HDR_SIZE,
				  max_out, buf, buf_len);
	if (rc == 0)
		return KERR_NONE;
	free(*buf);
	*buf = NULL;
	return rc == -ENOMEM ? -ENOMEM : KERR_CORRUPT_MESSAGE;
}

int batch_validate(const uint8_t *p, size_t avail, const struct batch_validate_opts *o,
		   struct batch_info *out)
{
	int rc = validate_header(p, avail, o, out);
	if (rc != KERR_NONE)
		return rc;
	const struct batch_hdr *h = &out->h;
	if (batch_codec(h) == COMPRESS_NONE) {
		rc = check_records(p + BATCH_HDR_SIZE, out->size - BATCH_HDR_SIZE, h, o, &out->max_timestamp);
		if (rc != KERR_NONE)
			return rc;
		out->records_checked = true;
		return KERR_NONE;
	}
	if (o->inflate_compressed) {
		uint8_t *buf = NULL;
		size_t buf_len = 0;
		rc = inflate_records(p, out, o, &buf, &buf_len);
		if (rc == KERR_NONE) {
			rc = check_records(buf, buf_len, h, o, &out->max_timestamp);
			free(buf);
			if (rc != KERR_NONE)
				return rc;
			out->records_checked = true;
			return KERR_NONE;
		}
		if (rc != -ENOMEM)
			return rc;
		/* Out of memory is not the producer's fault: fall back to header checks. */
	}
	/* Header-level only: the base and max timestamps stand for the records' (Kafka checks
	 * every record; a compressed batch whose inner timestamps lie outside [base, max] can
	 * slip through here). */
	bool lat = batch_is_log_append_time(h);
	if (check_record_ts(o, lat, lat ? h->max_timestamp : h->base_timestamp) != KERR_NONE ||
	    check_record_ts(o, lat, h->max_timestamp) != KERR_NONE)
		return KERR_INVALID_TIMESTAMP;
	return KERR_NONE;
}

/* --- recompression (topic compression.type) ------------------------------------------------- */

/* snappy-java's stream format (SnappyOutputStream), what Kafka's Java broker and producer write:
 * the 8-byte magic, version 1 and min-compatible version 1 as int32 BE, then blocks of at most
 * 32 KiB input, each [int32 BE compressed length][raw snappy block]. Every Kafka client reads it
 * (librdkafka, kafka-python, franz-go, Sarama, KafkaJS, Java). Only the framing lives here:
 * each block is compress.c's raw snappy. (It belongs in compress.c once that module offers a
 * framed form; compress_deflate writes raw snappy, as librdkafka does.) */
#define XERIAL_BLOCK_BYTES 32768

static int append_bytes(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *p, size_t n)
{
	if (n > *cap - *len) {
		size_t want = *cap ? *cap : 4096;
		while (want - *len < n) {
			if (want > SIZE_MAX / 2)
				return -ENOMEM;
			want *= 2;
		}
		uint8_t *nb = realloc(*buf, want);
		if (!nb)
			return -ENOMEM;
		*buf = nb;
		*cap = want;
	}
	memcpy(*buf + *len, p, n);
	*len += n;
	return 0;
}

static int snappy_xerial_deflate(const uint8_t *in, size_t in_len, size_t reserve, uint8_t **out,
				 size_t *out_len)
{
	static const uint8_t header[16] = { 0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0,
					    0, 0, 0, 1, 0, 0, 0, 1 };
	/* A first guess (snappy halves record data about) that realloc corrects when wrong. */
	size_t cap = reserve + sizeof header + in_len / 2 + 4096, len = 0;
	uint8_t *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	/* reserve: room left in front for the caller's batch header */
	int rc = 0;
	if (reserve > 0) {
		static const uint8_t zeros[BATCH_HDR_SIZE];
		ST_ASSERT(reserve <= sizeof zeros);
		rc = append_bytes(&buf, &len, &cap, zeros, reserve);
	}
	if (rc == 0)
		rc = append_bytes(&buf, &len, &cap, header, sizeof header);
	/* Bounded: in_len / 32 KiB blocks. */
	for (size_t pos = 0; rc == 0 && pos < in_len;) {
		size_t n = ST_MIN(in_len - pos, (size_t)XERIAL_BLOCK_BYTES);
		uint8_t *blk = NULL, be[4];
		size_t blk_len = 0;
		rc = compress_deflate(COMPRESS_SNAPPY, 0, in + pos, n, &blk, &blk_len);
		if (rc == 0 && blk_len > INT32_MAX)
			rc = -EINVAL;
		if (rc == 0) {
			st_put_be32(be, (uint32_t)blk_len);
			rc = append_bytes(&buf, &len, &cap, be, sizeof be);
		}
		if (rc == 0)
			rc = append_bytes(&buf, &len, &cap, blk, blk_len);
		free(blk);
		pos += n;
	}
	if (rc != 0) {
		free(buf);
		return rc;
	}
	*out = buf;
	*out_len = len;
	return 0;
}

/* A new batch's buffer: room for the 61-byte header (the caller writes it), then body. */
static uint8_t *prefix_header(const uint8_t *body, size_t body_len)
{
	if (body_len > SIZE_MAX - BATCH_HDR_SIZE)
		return NULL;
	uint8_t *b = malloc(BATCH_HDR_SIZE + body_len);
	if (b && body_len)
		memcpy(b + BATCH_HDR_SIZE, body, body_len);
	return b;
}

int batch_recompress(const uint8_t *p, size_t avail, const struct batch_validate_opts *o,
		     int target_codec, int level, uint8_t **out, size_t *out_len)
{
	ST_ASSERT(out && out_len);
	*out = NULL;
	*out_len = 0;
	if (target_codec < COMPRESS_NONE || target_codec > COMPRESS_ZSTD)
		return KERR_UNKNOWN_SERVER_ERROR; /* a broker bug, not the producer's */
	if (avail >= BATCH_OFF_ATTRIBUTES + 2 &&
	    (st_be16(p + BATCH_OFF_ATTRIBUTES) & BATCH_ATTR_CODEC_MASK) == target_codec)
		return KERR_NONE; /* already stored as the topic wants: the log validates it */

	struct batch_info bi;
	int rc = validate_header(p, avail, o, &bi);
	if (rc != KERR_NONE)
		return rc;
	const uint8_t *recs = p + BATCH_HDR_SIZE;
	size_t recs_len = bi.size - BATCH_HDR_SIZE;
	uint8_t *inflated = NULL;
	if (batch_codec(&bi.h) != COMPRESS_NONE) {
		rc = inflate_records(p, &bi, o, &inflated, &recs_len);
		if (rc == -ENOMEM)
			return KERR_UNKNOWN_SERVER_ERROR;
		if (rc != KERR_NONE)
			return rc;
		recs = inflated;
	}
	/* The same record walk as batch_validate: a batch gets the same answer whatever the
	 * topic's compression.type, and nothing malformed is re-encoded. */
	rc = check_records(recs, recs_len, &bi.h, o, &bi.max_timestamp);
	if (rc != KERR_NONE) {
		free(inflated);
		return rc;
	}

	/* The records are kept byte for byte (attributes, timestamp and offset deltas, keys,
	 * values, headers): only the codec of the section around them changes. */
	uint8_t *b = NULL;
	size_t body_len = 0;
	size_t max_size = (size_t)(o->max_message_bytes < 0 ? 0 : o->max_message_bytes);
	if (target_codec == COMPRESS_NONE) {
		if (recs_len > max_size || max_size - recs_len < BATCH_HDR_SIZE) {
			free(inflated);
			return KERR_MESSAGE_TOO_LARGE;
		}
		b = prefix_header(recs, recs_len);
		body_len = recs_len;
	} else if (target_codec == COMPRESS_SNAPPY) {
		size_t n;
		rc = snappy_xerial_deflate(recs, recs_len, BATCH_HDR_SIZE, &b, &n);
		b = rc == 0 ? b : NULL;
		body_len = rc == 0 ? n - BATCH_HDR_SIZE : 0;
	} else {
		uint8_t *c = NULL;
		rc = compress_deflate(target_codec, level, recs, recs_len, &c, &body_len);
		if (rc == -EINVAL) {
			free(inflated);
			return KERR_UNKNOWN_SERVER_ERROR; /* bad level: the broker's config, not the batch */
		}
		b = rc == 0 ? prefix_header(c, body_len) : NULL;
		free(c);
	}
	free(inflated);
	if (!b)
		return KERR_UNKNOWN_SERVER_ERROR; /* out of memory */
	size_t size = BATCH_HDR_SIZE + body_len;
	/* Kafka re-checks the size after recompression (RecordTooLargeException). */
	if (size > max_size || size - BATCH_LOG_OVERHEAD > INT32_MAX) {
		free(b);
		return KERR_MESSAGE_TOO_LARGE;
	}

	memcpy(b, p, BATCH_HDR_SIZE);
	st_put_be32(b + BATCH_OFF_LENGTH, (uint32_t)(size - BATCH_LOG_OVERHEAD));
	/* Kafka's rebuilt batch has the topic's timestamp type (the log sets LogAppendTime) and the
	 * max timestamp of the records; a producer's LogAppendTime bit that validation let through
	 * (CreateTime topic) is cleared as the in-place path clears it. */
	uint16_t attrs = (uint16_t)bi.h.attributes;
	attrs &= (uint16_t)~(BATCH_ATTR_CODEC_MASK | BATCH_ATTR_LOG_APPEND_TIME);
	attrs |= (uint16_t)target_codec;
	st_put_be16(b + BATCH_OFF_ATTRIBUTES, attrs);
	st_put_be64(b + BATCH_OFF_MAX_TIMESTAMP, (uint64_t)bi.max_timestamp);
	st_put_be32(b + BATCH_OFF_CRC, batch_compute_crc(b, size));
	*out = b;
	*out_len = size;
	return KERR_NONE;
}
