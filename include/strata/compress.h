/* compress.h -- Kafka's record-batch compression codecs (the attributes' low 3 bits): gzip,
 * snappy (raw and xerial-framed), lz4 (frame format) and zstd, over whole buffers.
 * Stateless and thread-safe; knows nothing of batches (the caller passes the records part). */
#ifndef STRATA_COMPRESS_H
#define STRATA_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

/* Values are Kafka's: attributes & 0x7 of a RecordBatch. */
enum compress_codec {
	COMPRESS_NONE = 0,
	COMPRESS_GZIP = 1,
	COMPRESS_SNAPPY = 2,
	COMPRESS_LZ4 = 3,
	COMPRESS_ZSTD = 4,
};

/* Decompresses in into a new malloc'd buffer (*out, *out_len; free() it; non-NULL even when
 * empty). Accepts what Kafka clients send: gzip members (possibly concatenated), raw snappy
 * (librdkafka) or xerial-framed snappy (Java, kafka-python), LZ4 frames, zstd frames with or
 * without content size. Never allocates more than max_out bytes of output.
 * Returns 0, -EINVAL (corrupt or truncated input), -EMSGSIZE (the output would exceed max_out:
 * the decompression-bomb guard), -ENOTSUP (unknown codec) or -ENOMEM. */
int compress_inflate(int codec, const uint8_t *in, size_t in_len, size_t max_out, uint8_t **out,
		     size_t *out_len);

/* Compresses in into a new malloc'd buffer, in the form every Kafka client reads: gzip
 * (one member), raw snappy (as librdkafka writes it; Java and kafka-python read it too), an
 * LZ4 frame as Kafka's Java client writes it (independent 64 KiB blocks, no content size or
 * checksums), one zstd frame with its content size. level 0 = the codec's default; otherwise
 * gzip 1..9, lz4 1..17 (Kafka's range; >= 3 is LZ4-HC, > 12 acts as 12), zstd its own range
 * (ZSTD_minCLevel()..22; Kafka allows -131072..22), snappy and none
 * ignore it. Returns 0, -EINVAL (level out of range), -ENOTSUP or -ENOMEM. */
int compress_deflate(int codec, int level, const uint8_t *in, size_t in_len, uint8_t **out,
		     size_t *out_len);

/* "none", "gzip", "snappy", "lz4", "zstd"; "unknown" for any other value. */
const char *compress_codec_name(int codec);
/* The codec named (case-insensitive, as compression.type spells it), or -EINVAL. */
int compress_codec_parse(const char *name);

#endif
