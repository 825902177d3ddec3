/* batch.h -- Kafka RecordBatch v2: header parsing, validation of a producer's batches (what
 * Kafka's UnifiedLog.analyzeAndValidateRecords + LogValidator check), in-place rewrites the
 * broker makes (base offset, leader epoch, LogAppendTime, max timestamp; CRC-32C kept valid),
 * iteration over the records of an uncompressed (or already inflated) records section, and
 * recompression into the topic's compression.type. Pure functions over caller buffers: no I/O,
 * no allocation except inflating a compressed batch and the recompressed copy.
 *
 * Layout (all big-endian), offsets from the batch start:
 *   0 baseOffset int64 | 8 batchLength int32 (bytes after this field) | 12 partitionLeaderEpoch
 *   int32 | 16 magic int8 | 17 crc uint32 (CRC-32C of bytes 21..end) | 21 attributes int16 |
 *   23 lastOffsetDelta int32 | 27 baseTimestamp int64 | 35 maxTimestamp int64 | 43 producerId
 *   int64 | 51 producerEpoch int16 | 53 baseSequence int32 | 57 recordCount int32 | 61 records */
#ifndef STRATA_BATCH_H
#define STRATA_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BATCH_HDR_SIZE 61           /* RECORD_BATCH_OVERHEAD */
#define BATCH_LOG_OVERHEAD 12       /* baseOffset + batchLength: the prefix before the length */
#define BATCH_MAGIC_V2 2
#define BATCH_NO_TIMESTAMP (-1LL)

#define BATCH_OFF_BASE_OFFSET 0
#define BATCH_OFF_LENGTH 8
#define BATCH_OFF_LEADER_EPOCH 12
#define BATCH_OFF_MAGIC 16
#define BATCH_OFF_CRC 17
#define BATCH_OFF_ATTRIBUTES 21
#define BATCH_OFF_LAST_OFFSET_DELTA 23
#define BATCH_OFF_BASE_TIMESTAMP 27
#define BATCH_OFF_MAX_TIMESTAMP 35
#define BATCH_OFF_PRODUCER_ID 43
#define BATCH_OFF_RECORD_COUNT 57

enum batch_attr {
	BATCH_ATTR_CODEC_MASK = 0x07,
	BATCH_ATTR_LOG_APPEND_TIME = 0x08,  /* timestamp type bit */
	BATCH_ATTR_TRANSACTIONAL = 0x10,
	BATCH_ATTR_CONTROL = 0x20,
	BATCH_ATTR_DELETE_HORIZON = 0x40,   /* set by compaction (KIP-534) */
};

struct batch_hdr {
	int64_t base_offset;
	int32_t batch_length;
	int32_t partition_leader_epoch;
	int8_t magic;
	uint32_t crc;
	int16_t attributes;
	int32_t last_offset_delta;
	int64_t base_timestamp;
	int64_t max_timestamp;
	int64_t producer_id;
	int16_t producer_epoch;
	int32_t base_sequence;
	int32_t record_count;
};

/* Parses the 61-byte header at p (len bytes available). Returns 0, or -EINVAL when len < 61.
 * Checks nothing else (see batch_validate). */
int batch_parse_hdr(const uint8_t *p, size_t len, struct batch_hdr *h);

static inline int batch_codec(const struct batch_hdr *h) { return h->attributes & BATCH_ATTR_CODEC_MASK; }
static inline bool batch_is_log_append_time(const struct batch_hdr *h)
{
	return (h->attributes & BATCH_ATTR_LOG_APPEND_TIME) != 0;
}
static inline bool batch_is_transactional(const struct batch_hdr *h)
{
	return (h->attributes & BATCH_ATTR_TRANSACTIONAL) != 0;
}
static inline bool batch_is_control(const struct batch_hdr *h) { return (h->attributes & BATCH_ATTR_CONTROL) != 0; }
/* Whole batch size on disk / on the wire. */
static inline int64_t batch_size(const struct batch_hdr *h) { return (int64_t)h->batch_length + BATCH_LOG_OVERHEAD; }
static inline int64_t batch_last_offset(const struct batch_hdr *h) { return h->base_offset + h->last_offset_delta; }

/* CRC-32C of attributes..end of a whole batch of size bytes (size >= 61). */
uint32_t batch_compute_crc(const uint8_t *batch, size_t size);
/* The stored CRC matches. size = whole batch. */
bool batch_crc_ok(const uint8_t *batch, size_t size);

/* In-place rewrites. Base offset and leader epoch are outside the CRC; the others recompute it. */
void batch_set_base_offset(uint8_t *batch, int64_t base_offset);
void batch_set_leader_epoch(uint8_t *batch, int32_t epoch);
/* message.timestamp.type=LogAppendTime: sets the timestamp-type bit and the max timestamp to
 * now_ms, CRC recomputed. Like Kafka's setMaxTimestamp(LOG_APPEND_TIME, now), the base
 * timestamp is left as the producer wrote it: readers take every record's timestamp from the
 * max timestamp of a LogAppendTime batch, so the output is byte-identical to Kafka's. */
void batch_set_log_append_time(uint8_t *batch, size_t size, int64_t now_ms);
/* Sets maxTimestamp (CreateTime) and recomputes the CRC. */
void batch_set_max_timestamp(uint8_t *batch, size_t size, int64_t max_ts);

/* --- records ------------------------------------------------------------------------------ */

struct batch_record {
	int32_t size;                /* bytes of the record, including its length varint */
	int8_t attributes;
	int64_t timestamp_delta;
	int32_t offset_delta;
	const uint8_t *key;          /* NULL when null */
	int32_t key_len;             /* -1 when null */
	const uint8_t *value;
	int32_t value_len;           /* -1 when null */
	int32_t header_count;
	const uint8_t *headers;      /* raw header bytes (header_count entries) */
	size_t headers_len;
};

/* Iterates records of a records section (the bytes after the 61-byte header, or an inflated
 * compressed section). */
struct batch_rec_iter {
	const uint8_t *p;
	const uint8_t *end;
	int32_t index;
};
void batch_rec_iter_init(struct batch_rec_iter *it, const uint8_t *records, size_t len);
/* Returns 1 with *r filled, 0 at the end of the bytes, -EINVAL for a malformed record
 * (bad varint, lengths past the end, size not matching the fields, negative header count,
 * null header key). */
int batch_rec_next(struct batch_rec_iter *it, struct batch_record *r);

/* Zigzag varints as Kafka writes them. Return bytes consumed, or 0 when malformed/short. */
size_t batch_read_varint(const uint8_t *p, const uint8_t *end, int32_t *out);
size_t batch_read_varlong(const uint8_t *p, const uint8_t *end, int64_t *out);
/* Writes v; returns bytes written (<= 5 / 10). buf must have room. */
size_t batch_write_varint(uint8_t *buf, int32_t v);
size_t batch_write_varlong(uint8_t *buf, int64_t v);

/* --- validation (producer appends) ---------------------------------------------------------- */

struct batch_validate_opts {
	int32_t max_message_bytes;      /* max.message.bytes: per batch, header included */
	bool log_append_time;           /* topic's message.timestamp.type=LogAppendTime */
	int64_t now_ms;
	int64_t timestamp_before_max_ms;
	int64_t timestamp_after_max_ms;
	/* Inflate compressed batches to check their records (what Kafka's LogValidator does);
	 * false = header-level checks only for compressed batches. */
	bool inflate_compressed;
	size_t inflate_max_bytes;       /* decompression-bomb guard (0 = 256 MiB) */
};

struct batch_info {
	struct batch_hdr h;
	size_t size;                    /* whole batch bytes */
	int64_t max_timestamp;          /* computed from the records (header's when not iterated) */
	bool records_checked;           /* records were iterated (uncompressed, or inflated) */
};

/* Validates the batch at p (avail bytes from p to the end of the producer's data). Returns a
 * Kafka error (enum kerr): KERR_NONE with *out filled, or CORRUPT_MESSAGE (short, bad length,
 * garbage magic, CRC), UNSUPPORTED_FOR_MESSAGE_FORMAT (magic 0/1), MESSAGE_TOO_LARGE,
 * INVALID_RECORD (base offset != 0, count vs lastOffsetDelta, control batch, bad sequence,
 * malformed records), INVALID_TIMESTAMP. Does not modify the batch. */
int batch_validate(const uint8_t *p, size_t avail, const struct batch_validate_opts *o,
		   struct batch_info *out);

/* --- recompression (topic compression.type other than producer) ---------------------------- */

/* Kafka's LogValidator with a target codec that differs from the batch's: validates the batch at
 * p exactly as batch_validate does (o->inflate_compressed is ignored: the records are always
 * inflated), then writes a new batch of the same records in target_codec (enum compress_codec;
 * COMPRESS_NONE = compression.type=uncompressed) into *out (malloc'd; free() it), *out_len its
 * size. The records section keeps every record byte for byte (attributes, timestamp and offset
 * deltas, keys, values incl. null, headers); the header keeps base offset 0, leader epoch,
 * lastOffsetDelta, base timestamp, producer id/epoch, base sequence, record count and the
 * transactional bit; maxTimestamp becomes the records' largest (the log then applies
 * LogAppendTime), a producer-set LogAppendTime bit is cleared (as the log's in-place path
 * clears it), the CRC is recomputed. gzip is one member, snappy is xerial-framed
 * (snappy-java's stream format, as Kafka's broker writes it), lz4 one frame, zstd one frame.
 * level: 0 = the codec's default, else as compress_deflate takes it.
 * When the batch already uses target_codec: KERR_NONE with *out = NULL and nothing checked
 * (the caller appends the original; the log validates it).
 * Returns KERR_NONE or the error batch_validate would give, MESSAGE_TOO_LARGE when the new
 * batch exceeds o->max_message_bytes (Kafka checks the size again after recompression), or
 * UNKNOWN_SERVER_ERROR (out of memory, or a level the codec refuses). Never touches p. */
int batch_recompress(const uint8_t *p, size_t avail, const struct batch_validate_opts *o,
		     int target_codec, int level, uint8_t **out, size_t *out_len);

#endif
