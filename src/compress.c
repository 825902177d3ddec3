/* compress.c -- Kafka's compression codecs over whole buffers (zlib, snappy, lz4frame, zstd).
 * Owns only the translation between Kafka's wire forms and the libraries; it must not know
 * batch layout, and must never let a small input allocate unbounded output (max_out). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lz4frame.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "strata/common.h"
#include "strata/compress.h"

/* A growable output buffer that refuses to grow past limit (max_out + 1: the extra byte lets
 * a streaming decoder prove that the output really is longer than max_out). */
struct outbuf {
	uint8_t *p;
	size_t len, cap, limit;
};

static int outbuf_init(struct outbuf *ob, size_t max_out, size_t first_cap)
{
	ob->limit = max_out == SIZE_MAX ? SIZE_MAX : max_out + 1;
	ob->len = 0;
	ob->cap = ST_MAX(ST_MIN(first_cap, ob->limit), (size_t)1);
	ob->p = malloc(ob->cap);
	return ob->p ? 0 : -ENOMEM;
}

static int outbuf_grow(struct outbuf *ob)
{
	if (ob->cap >= ob->limit)
		return -EMSGSIZE;
	size_t want = ob->cap > ob->limit / 2 ? ob->limit : ob->cap * 2;
	uint8_t *np = realloc(ob->p, want);
	if (!np)
		return -ENOMEM;
	ob->p = np;
	ob->cap = want;
	return 0;
}

/* Hands the buffer to the caller, or frees it on error. */
static int outbuf_finish(struct outbuf *ob, int rc, size_t max_out, uint8_t **out, size_t *out_len)
{
	if (rc == 0 && ob->len > max_out)
		rc = -EMSGSIZE;
	if (rc != 0) {
		free(ob->p);
		ob->p = NULL;
		return rc;
	}
	*out = ob->p;
	*out_len = ob->len;
	return 0;
}

/* A first guess for streaming decoders: compressed record data rarely expands more than 4x;
 * the buffer grows by doubling when it does. */
static size_t guess_cap(size_t in_len)
{
	if (in_len > SIZE_MAX / 4)
		return SIZE_MAX;
	return ST_MAX(in_len * 4, (size_t)4096);
}

/* ---- none ---------------------------------------------------------------------------- */

static int copy_bytes(const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len)
{
	uint8_t *p = malloc(in_len ? in_len : 1);
	if (!p)
		return -ENOMEM;
	if (in_len)
		memcpy(p, in, in_len);
	*out = p;
	*out_len = in_len;
	return 0;
}

/* ---- gzip ---------------------------------------------------------------------------- */

/* zlib counts in uInt: feed at most this much per call. */
static uInt zlib_chunk(size_t n) { return n > UINT_MAX ? UINT_MAX : (uInt)n; }

static int gzip_inflate(const uint8_t *in, size_t in_len, size_t max_out, uint8_t **out,
			size_t *out_len)
{
	struct outbuf ob;
	int rc = outbuf_init(&ob, max_out, guess_cap(in_len));
	if (rc)
		return rc;
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	/* 16 + MAX_WBITS: gzip wrapper only, as Kafka's GZIPOutputStream and librdkafka write */
	if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
		free(ob.p);
		return -ENOMEM;
	}
	size_t in_pos = 0;
	bool ended = false;
	for (;;) {
		if (ob.len == ob.cap && (rc = outbuf_grow(&ob)) != 0)
			break;
		zs.next_in = (Bytef *)(uintptr_t)(in + in_pos);
		zs.avail_in = zlib_chunk(in_len - in_pos);
		zs.next_out = ob.p + ob.len;
		zs.avail_out = zlib_chunk(ob.cap - ob.len);
		uInt avail_in0 = zs.avail_in, avail_out0 = zs.avail_out;
		int zr = inflate(&zs, Z_NO_FLUSH);
		size_t used_in = avail_in0 - zs.avail_in, made = avail_out0 - zs.avail_out;
		in_pos += used_in;
		ob.len += made;
		if (zr == Z_STREAM_END) {
			if (in_pos == in_len) {
				ended = true;
				break;
			}
			/* concatenated members (a valid gzip file, and GZIPInputStream reads them) */
			if (inflateReset(&zs) != Z_OK) {
				rc = -EINVAL;
				break;
			}
			continue;
		}
		if (zr == Z_MEM_ERROR) {
			rc = -ENOMEM;
			break;
		}
		if (zr != Z_OK && zr != Z_BUF_ERROR) {
			rc = -EINVAL; /* Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR */
			break;
		}
		if (used_in == 0 && made == 0 && ob.len < ob.cap) {
			rc = -EINVAL; /* no progress with room to write: the input is truncated */
			break;
		}
	}
	inflateEnd(&zs);
	if (rc == 0 && !ended)
		rc = -EINVAL;
	return outbuf_finish(&ob, rc, max_out, out, out_len);
}

static int gzip_deflate(int level, const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len)
{
	if (level == 0)
		level = Z_DEFAULT_COMPRESSION;
	else if (level < 1 || level > 9)
		return -EINVAL;
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	if (deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	struct outbuf ob;
	int rc = outbuf_init(&ob, SIZE_MAX - 1, in_len <= UINT_MAX ? deflateBound(&zs, (uLong)in_len)
								  : in_len / 2);
	if (rc) {
		deflateEnd(&zs);
		return rc;
	}
	size_t in_pos = 0;
	for (;;) {
		if (ob.len == ob.cap && (rc = outbuf_grow(&ob)) != 0)
			break;
		zs.next_in = (Bytef *)(uintptr_t)(in + in_pos);
		zs.avail_in = zlib_chunk(in_len - in_pos);
		zs.next_out = ob.p + ob.len;
		zs.avail_out = zlib_chunk(ob.cap - ob.len);
		uInt avail_in0 = zs.avail_in, avail_out0 = zs.avail_out;
		bool last = in_len - in_pos <= UINT_MAX;
		int zr = deflate(&zs, last ? Z_FINISH : Z_NO_FLUSH);
		in_pos += avail_in0 - zs.avail_in;
		ob.len += avail_out0 - zs.avail_out;
		if (zr == Z_STREAM_END)
			break;
		if (zr != Z_OK && zr != Z_BUF_ERROR) {
			rc = -EINVAL;
			break;
		}
	}
	deflateEnd(&zs);
	return outbuf_finish(&ob, rc, SIZE_MAX - 1, out, out_len);
}

/* ---- snappy -------------------------------------------------------------------------- */

/* snappy-java's stream header (SnappyOutputStream), used by Kafka's Java producer and by
 * kafka-python: magic, then version and min-compatible version as int32 BE, then blocks of
 * [int32 BE compressed length][raw snappy block]. */
static const uint8_t xerial_magic[8] = { 0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0 };
#define XERIAL_HEADER_BYTES 16

static int snappy_raw_inflate(const uint8_t *in, size_t in_len, size_t max_out, uint8_t **out,
			      size_t *out_len)
{
	size_t n;
	if (in_len == 0 || snappy_uncompressed_length((const char *)in, in_len, &n) != SNAPPY_OK)
		return -EINVAL;
	if (n > max_out)
		return -EMSGSIZE;
	char *p = malloc(n ? n : 1);
	if (!p)
		return -ENOMEM;
	size_t got = n;
	if (snappy_uncompress((const char *)in, in_len, p, &got) != SNAPPY_OK || got != n) {
		free(p);
		return -EINVAL;
	}
	*out = (uint8_t *)p;
	*out_len = n;
	return 0;
}

static int snappy_xerial_inflate(const uint8_t *in, size_t in_len, size_t max_out, uint8_t **out,
				 size_t *out_len)
{
	/* pass 1: walk the blocks, validate framing and sum the declared sizes (bomb guard
	 * before any allocation) */
	size_t total = 0, pos = XERIAL_HEADER_BYTES;
	while (pos < in_len) {
		if (in_len - pos < 4)
			return -EINVAL;
		size_t blen = st_be32(in + pos);
		pos += 4;
		if (blen == 0 || blen > in_len - pos)
			return -EINVAL;
		size_t n;
		if (snappy_uncompressed_length((const char *)in + pos, blen, &n) != SNAPPY_OK)
			return -EINVAL;
		if (n > max_out - total)
			return -EMSGSIZE;
		total += n;
		pos += blen;
	}
	uint8_t *p = malloc(total ? total : 1);
	if (!p)
		return -ENOMEM;
	size_t done = 0;
	pos = XERIAL_HEADER_BYTES;
	while (pos < in_len) {
		size_t blen = st_be32(in + pos);
		pos += 4;
		size_t got = total - done;
		if (snappy_uncompress((const char *)in + pos, blen, (char *)p + done, &got) != SNAPPY_OK) {
			free(p);
			return -EINVAL;
		}
		done += got;
		pos += blen;
	}
	if (done != total) {
		free(p);
		return -EINVAL;
	}
	*out = p;
	*out_len = total;
	return 0;
}

static int snappy_inflate(const uint8_t *in, size_t in_len, size_t max_out, uint8_t **out,
			  size_t *out_len)
{
	if (in_len >= XERIAL_HEADER_BYTES && memcmp(in, xerial_magic, sizeof(xerial_magic)) == 0) {
		int rc = snappy_xerial_inflate(in, in_len, max_out, out, out_len);
		if (rc != -EINVAL)
			return rc;
		/* A raw block can begin with these bytes too (a length varint of 0x82 0x53...):
		 * librdkafka also falls back to raw when the framing does not parse. */
	}
	return snappy_raw_inflate(in, in_len, max_out, out, out_len);
}

static int snappy_deflate(const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len)
{
	size_t cap = snappy_max_compressed_length(in_len);
	char *p = malloc(cap ? cap : 1);
	if (!p)
		return -ENOMEM;
	size_t n = cap;
	if (snappy_compress((const char *)in, in_len, p, &n) != SNAPPY_OK) {
		free(p);
		return -EINVAL;
	}
	*out = (uint8_t *)p;
	*out_len = n;
	return 0;
}

/* ---- lz4 ----------------------------------------------------------------------------- */

static int lz4_inflate(const uint8_t *in, size_t in_len, size_t max_out, uint8_t **out,
		       size_t *out_len)
{
	LZ4F_dctx *dctx;
	if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)))
		return -ENOMEM;
	struct outbuf ob;
	int rc = outbuf_init(&ob, max_out, guess_cap(in_len));
	if (rc) {
		LZ4F_freeDecompressionContext(dctx);
		return rc;
	}
	size_t in_pos = 0;
	for (;;) {
		if (ob.len == ob.cap && (rc = outbuf_grow(&ob)) != 0)
			break;
		size_t dst = ob.cap - ob.len, src = in_len - in_pos;
		size_t hint = LZ4F_decompress(dctx, ob.p + ob.len, &dst, in + in_pos, &src, NULL);
		if (LZ4F_isError(hint)) {
			rc = -EINVAL;
			break;
		}
		in_pos += src;
		ob.len += dst;
		if (hint == 0 && in_pos == in_len)
			break; /* the last frame ended exactly at the end of the input */
		/* hint == 0 with input left: another frame follows (the context is reset) */
		if (src == 0 && dst == 0) {
			rc = -EINVAL; /* no progress with room to write: truncated frame */
			break;
		}
	}
	LZ4F_freeDecompressionContext(dctx);
	return outbuf_finish(&ob, rc, max_out, out, out_len);
}

static int lz4_deflate(int level, const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len)
{
	if (level < 0 || level > 17)
		return -EINVAL;
	/* Kafka's Java client (KafkaLZ4BlockOutputStream) writes exactly this frame shape and its
	 * reader rejects dependent blocks; content size and checksums are left out for it. */
	LZ4F_preferences_t prefs;
	memset(&prefs, 0, sizeof(prefs));
	prefs.frameInfo.blockSizeID = LZ4F_max64KB;
	prefs.frameInfo.blockMode = LZ4F_blockIndependent;
	prefs.frameInfo.contentChecksumFlag = LZ4F_noContentChecksum;
	prefs.frameInfo.blockChecksumFlag = LZ4F_noBlockChecksum;
	prefs.compressionLevel = level;
	size_t cap = LZ4F_compressFrameBound(in_len, &prefs);
	if (LZ4F_isError(cap))
		return -EINVAL;
	uint8_t *p = malloc(cap);
	if (!p)
		return -ENOMEM;
	size_t n = LZ4F_compressFrame(p, cap, in, in_len, &prefs);
	if (LZ4F_isError(n)) {
		free(p);
		return -EINVAL;
	}
	*out = p;
	*out_len = n;
	return 0;
}

/* ---- zstd ---------------------------------------------------------------------------- */

static int zstd_inflate(const uint8_t *in, size_t in_len, size_t max_out, uint8_t **out,
			size_t *out_len)
{
	size_t first = guess_cap(in_len);
	unsigned long long csize = ZSTD_getFrameContentSize(in, in_len);
	if (csize == ZSTD_CONTENTSIZE_ERROR)
		return -EINVAL;
	if (csize != ZSTD_CONTENTSIZE_UNKNOWN) {
		if (csize > max_out)
			return -EMSGSIZE;
		first = (size_t)csize; /* exact unless more frames follow: then it grows */
	}
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	if (!dctx)
		return -ENOMEM;
	struct outbuf ob;
	int rc = outbuf_init(&ob, max_out, first);
	if (rc) {
		ZSTD_freeDCtx(dctx);
		return rc;
	}
	size_t in_pos = 0;
	for (;;) {
		if (ob.len == ob.cap && (rc = outbuf_grow(&ob)) != 0)
			break;
		ZSTD_outBuffer zo = { ob.p, ob.cap, ob.len };
		ZSTD_inBuffer zi = { in, in_len, in_pos };
		size_t r = ZSTD_decompressStream(dctx, &zo, &zi);
		if (ZSTD_isError(r)) {
			rc = ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? -ENOMEM : -EINVAL;
			break;
		}
		bool progress = zo.pos != ob.len || zi.pos != in_pos;
		ob.len = zo.pos;
		in_pos = zi.pos;
		if (r == 0 && in_pos == in_len)
			break; /* last frame decoded and flushed */
		if (!progress) {
			rc = -EINVAL; /* truncated */
			break;
		}
	}
	ZSTD_freeDCtx(dctx);
	return outbuf_finish(&ob, rc, max_out, out, out_len);
}

static int zstd_deflate(int level, const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len)
{
	if (level != 0 && (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()))
		return -EINVAL;
	size_t cap = ZSTD_compressBound(in_len);
	if (ZSTD_isError(cap))
		return -EINVAL;
	uint8_t *p = malloc(cap);
	if (!p)
		return -ENOMEM;
	/* level 0 is zstd's own "default" (3) */
	size_t n = ZSTD_compress(p, cap, in, in_len, level);
	if (ZSTD_isError(n)) {
		free(p);
		return ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation ? -ENOMEM : -EINVAL;
	}
	*out = p;
	*out_len = n;
	return 0;
}

/* ---- public -------------------------------------------------------------------------- */

int compress_inflate(int codec, const uint8_t *in, size_t in_len, size_t max_out, uint8_t **out,
		     size_t *out_len)
{
	if (!out || !out_len || (!in && in_len))
		return -EINVAL;
	*out = NULL;
	*out_len = 0;
	switch (codec) {
	case COMPRESS_NONE:
		if (in_len > max_out)
			return -EMSGSIZE;
		return copy_bytes(in, in_len, out, out_len);
	case COMPRESS_GZIP:
		return gzip_inflate(in, in_len, max_out, out, out_len);
	case COMPRESS_SNAPPY:
		return snappy_inflate(in, in_len, max_out, out, out_len);
	case COMPRESS_LZ4:
		return lz4_inflate(in, in_len, max_out, out, out_len);
	case COMPRESS_ZSTD:
		return zstd_inflate(in, in_len, max_out, out, out_len);
	default:
		return -ENOTSUP;
	}
}

int compress_deflate(int codec, int level, const uint8_t *in, size_t in_len, uint8_t **out,
		     size_t *out_len)
{
	if (!out || !out_len || (!in && in_len))
		return -EINVAL;
	*out = NULL;
	*out_len = 0;
	static const uint8_t empty[1];
	if (!in)
		in = empty; /* zlib and lz4 want a pointer even for 0 bytes */
	switch (codec) {
	case COMPRESS_NONE:
		return copy_bytes(in, in_len, out, out_len);
	case COMPRESS_GZIP:
		return gzip_deflate(level, in, in_len, out, out_len);
	case COMPRESS_SNAPPY:
		return snappy_deflate(in, in_len, out, out_len);
	case COMPRESS_LZ4:
		return lz4_deflate(level, in, in_len, out, out_len);
	case COMPRESS_ZSTD:
		return zstd_deflate(level, in, in_len, out, out_len);
	default:
		return -ENOTSUP;
	}
}

static const char *const codec_names[] = { "none", "gzip", "snappy", "lz4", "zstd" };

const char *compress_codec_name(int codec)
{
	if (codec < 0 || (size_t)codec >= ST_ARRAY_LEN(codec_names))
		return "unknown";
	return codec_names[codec];
}

int compress_codec_parse(const char *name)
{
	if (!name)
		return -EINVAL;
	for (size_t i = 0; i < ST_ARRAY_LEN(codec_names); i++)
		if (strcasecmp(name, codec_names[i]) == 0)
			return (int)i;
	return -EINVAL;
}
