/* t/compress.c -- compress.h: round trips per codec and level, the Kafka wire forms (xerial
 * snappy framing, concatenated gzip members / zstd and lz4 frames, zstd without content size),
 * cross-checks against kafka-python's codecs both ways when /usr/bin/python3 has them,
 * corrupt and truncated input (an error, never a crash), and the decompression-bomb guard. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>
#include <snappy-c.h>
#include <lz4frame.h>
#include <zstd.h>

#include "strata/common.h"
#include "strata/compress.h"
#include "tap.h"

static const int codecs[] = { COMPRESS_NONE, COMPRESS_GZIP, COMPRESS_SNAPPY, COMPRESS_LZ4,
			      COMPRESS_ZSTD };

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* The payload the python cross-check builds too: b"record-%05d;" % (i % 1000), i < n. */
static uint8_t *pattern_payload(int n, size_t *len)
{
	uint8_t *p = malloc((size_t)n * 13 + 1);
	ST_ASSERT(p);
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		int w = snprintf((char *)p + off, 14, "record-%05d;", i % 1000);
		ST_ASSERT(w == 13);
		off += 13;
	}
	*len = off;
	return p;
}

/* Mixed input: runs of text, random bytes, zeros. */
static uint8_t *mixed_payload(size_t len)
{
	uint8_t *p = malloc(len ? len : 1);
	ST_ASSERT(p);
	size_t i = 0;
	while (i < len) {
		size_t want = 1 + rng() % 3000; /* ST_MIN evaluates twice */
		size_t run = ST_MIN(len - i, want);
		int kind = (int)(rng() % 3);
		for (size_t j = 0; j < run; j++)
			p[i + j] = kind == 0 ? (uint8_t)rng() : kind == 1 ? 0 : (uint8_t)('a' + (i + j) % 26);
		i += run;
	}
	return p;
}

static int round_trip(int codec, int level, const uint8_t *in, size_t len)
{
	uint8_t *c = NULL, *d = NULL;
	size_t clen = 0, dlen = 0;
	int rc = compress_deflate(codec, level, in, len, &c, &clen);
	if (rc != 0) {
		tap_diag("deflate %s level %d len %zu: %d", compress_codec_name(codec), level, len, rc);
		return 0;
	}
	rc = compress_inflate(codec, c, clen, len, &d, &dlen);
	int good = rc == 0 && d && dlen == len && (len == 0 || memcmp(d, in, len) == 0);
	if (!good)
		tap_diag("inflate %s level %d len %zu: rc %d dlen %zu", compress_codec_name(codec), level,
			 len, rc, dlen);
	/* exactly max_out is enough; one less must trip the guard */
	if (good && len > 0) {
		free(d);
		d = NULL;
		rc = compress_inflate(codec, c, clen, len - 1, &d, &dlen);
		if (rc != -EMSGSIZE || d != NULL) {
			tap_diag("%s len %zu with max_out len-1: rc %d", compress_codec_name(codec), len, rc);
			good = 0;
		}
	}
	free(c);
	free(d);
	return good;
}

static void test_round_trips(void)
{
	static const size_t sizes[] = { 0, 1, 13, 4096, 65535, 65536, 65537, 200000, 1 << 20 };
	for (size_t ci = 0; ci < ST_ARRAY_LEN(codecs); ci++) {
		int codec = codecs[ci];
		int all = 1;
		for (size_t si = 0; si < ST_ARRAY_LEN(sizes); si++) {
			uint8_t *p = mixed_payload(sizes[si]);
			all &= round_trip(codec, 0, p, sizes[si]);
			free(p);
		}
		ok(all, "%s: round trips at default level, sizes 0..1 MiB, max_out exact/-1",
		   compress_codec_name(codec));
	}
	/* every level each codec takes */
	size_t plen;
	uint8_t *p = pattern_payload(6000, &plen);
	int all = 1;
	for (int lv = 1; lv <= 9; lv++)
		all &= round_trip(COMPRESS_GZIP, lv, p, plen);
	ok(all, "gzip levels 1..9");
	all = 1;
	for (int lv = 1; lv <= 17; lv++)
		all &= round_trip(COMPRESS_LZ4, lv, p, plen);
	ok(all, "lz4 levels 1..17");
	all = 1;
	for (int lv = -5; lv <= 19; lv++)
		all &= round_trip(COMPRESS_ZSTD, lv, p, plen);
	ok(all, "zstd levels -5..19");
	free(p);

	uint8_t *c = NULL;
	size_t clen;
	is_int(compress_deflate(COMPRESS_GZIP, 10, (const uint8_t *)"x", 1, &c, &clen), -EINVAL,
	       "gzip level 10 rejected");
	is_int(compress_deflate(COMPRESS_LZ4, 18, (const uint8_t *)"x", 1, &c, &clen), -EINVAL,
	       "lz4 level 18 rejected");
	is_int(compress_deflate(COMPRESS_ZSTD, 23, (const uint8_t *)"x", 1, &c, &clen), -EINVAL,
	       "zstd level 23 rejected");
	ok(c == NULL, "no buffer handed out on error");
	is_int(compress_deflate(5, 0, (const uint8_t *)"x", 1, &c, &clen), -ENOTSUP, "deflate codec 5: ENOTSUP");
	is_int(compress_inflate(5, (const uint8_t *)"x", 1, 10, &c, &clen), -ENOTSUP, "inflate codec 5: ENOTSUP");
	is_int(compress_inflate(-1, (const uint8_t *)"x", 1, 10, &c, &clen), -ENOTSUP, "inflate codec -1: ENOTSUP");
}

static void test_names(void)
{
	int all = 1;
	for (size_t ci = 0; ci < ST_ARRAY_LEN(codecs); ci++)
		all &= compress_codec_parse(compress_codec_name(codecs[ci])) == codecs[ci];
	ok(all, "name/parse round trip for every codec");
	is_int(compress_codec_parse("ZSTD"), COMPRESS_ZSTD, "parse is case-insensitive");
	is_int(compress_codec_parse("producer"), -EINVAL, "parse rejects 'producer'");
	is_int(compress_codec_parse(""), -EINVAL, "parse rejects empty");
	ok(strcmp(compress_codec_name(7), "unknown") == 0, "name of 7 is unknown");
	ok(strcmp(compress_codec_name(COMPRESS_SNAPPY), "snappy") == 0, "name of 2 is snappy");
}

/* Builds a snappy-java stream (header + [len][block]...) by hand from raw snappy blocks. */
static uint8_t *xerial_frame(const uint8_t *in, size_t len, size_t block, size_t *out_len)
{
	size_t cap = 16 + (len / block + 1) * (4 + snappy_max_compressed_length(block));
	uint8_t *f = malloc(cap);
	ST_ASSERT(f);
	static const uint8_t hdr[16] = { 0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1 };
	memcpy(f, hdr, 16);
	size_t off = 16;
	for (size_t pos = 0; pos < len; pos += block) {
		size_t n = ST_MIN(block, len - pos);
		size_t clen = cap - off - 4;
		ST_ASSERT(snappy_compress((const char *)in + pos, n, (char *)f + off + 4, &clen) == SNAPPY_OK);
		st_put_be32(f + off, (uint32_t)clen);
		off += 4 + clen;
	}
	*out_len = off;
	return f;
}

static int inflate_equals(int codec, const uint8_t *c, size_t clen, const uint8_t *want, size_t wlen)
{
	uint8_t *d = NULL;
	size_t dlen = 0;
	int rc = compress_inflate(codec, c, clen, wlen + 100, &d, &dlen);
	int good = rc == 0 && dlen == wlen && (wlen == 0 || memcmp(d, want, wlen) == 0);
	if (!good)
		tap_diag("%s: rc %d dlen %zu want %zu", compress_codec_name(codec), rc, dlen, wlen);
	free(d);
	return good;
}

static void test_wire_forms(void)
{
	size_t plen;
	uint8_t *p = pattern_payload(6000, &plen);

	/* xerial: 32 KiB blocks (snappy-java's default), then odd block sizes */
	size_t flen;
	uint8_t *f = xerial_frame(p, plen, 32768, &flen);
	ok(inflate_equals(COMPRESS_SNAPPY, f, flen, p, plen), "snappy: hand-made xerial frame, 3 blocks");
	uint8_t *d = NULL;
	size_t dlen;
	is_int(compress_inflate(COMPRESS_SNAPPY, f, flen, plen - 1, &d, &dlen), -EMSGSIZE,
	       "snappy xerial: bomb guard on the summed block sizes");
	is_int(compress_inflate(COMPRESS_SNAPPY, f, flen - 1, plen, &d, &dlen), -EINVAL,
	       "snappy xerial: truncated last block");
	is_int(compress_inflate(COMPRESS_SNAPPY, f, 16, plen, &d, &dlen), 0,
	       "snappy xerial: header alone is an empty stream");
	is_int(dlen, 0, "... of length 0");
	free(d);
	d = NULL;
	free(f);
	f = xerial_frame(p, plen, 1000, &flen);
	ok(inflate_equals(COMPRESS_SNAPPY, f, flen, p, plen), "snappy: xerial frame, 78 small blocks");
	free(f);

	/* concatenated gzip members */
	uint8_t *c1, *c2;
	size_t c1len, c2len;
	ST_ASSERT(compress_deflate(COMPRESS_GZIP, 0, p, 5000, &c1, &c1len) == 0);
	ST_ASSERT(compress_deflate(COMPRESS_GZIP, 0, p + 5000, plen - 5000, &c2, &c2len) == 0);
	uint8_t *cat = malloc(c1len + c2len);
	ST_ASSERT(cat);
	memcpy(cat, c1, c1len);
	memcpy(cat + c1len, c2, c2len);
	ok(inflate_equals(COMPRESS_GZIP, cat, c1len + c2len, p, plen), "gzip: two concatenated members");
	is_int(compress_inflate(COMPRESS_GZIP, cat, c1len + 5, plen, &d, &dlen), -EINVAL,
	       "gzip: a member followed by a truncated one");
	free(cat);
	free(c1);
	free(c2);

	/* zstd: streaming frames lack the content size; two frames back to back */
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	ST_ASSERT(cc);
	size_t zcap = ZSTD_compressBound(plen) * 2 + 64;
	uint8_t *z = malloc(zcap);
	ST_ASSERT(z);
	ZSTD_outBuffer zo = { z, zcap, 0 };
	ZSTD_inBuffer zi = { p, plen / 2, 0 };
	while (zi.pos < zi.size)
		ST_ASSERT(!ZSTD_isError(ZSTD_compressStream2(cc, &zo, &zi, ZSTD_e_continue)));
	while (ZSTD_compressStream2(cc, &zo, &zi, ZSTD_e_end) != 0)
		;
	ok(ZSTD_getFrameContentSize(z, zo.pos) == ZSTD_CONTENTSIZE_UNKNOWN, "zstd: streamed frame has no content size");
	ZSTD_inBuffer zi2 = { p + plen / 2, plen - plen / 2, 0 };
	while (ZSTD_compressStream2(cc, &zo, &zi2, ZSTD_e_end) != 0)
		;
	ok(inflate_equals(COMPRESS_ZSTD, z, zo.pos, p, plen), "zstd: two frames without content size");
	is_int(compress_inflate(COMPRESS_ZSTD, z, zo.pos, plen - 1, &d, &dlen), -EMSGSIZE,
	       "zstd: bomb guard while streaming");
	ZSTD_freeCCtx(cc);
	free(z);

	/* lz4: two frames; a frame with content size, checksums and linked blocks */
	LZ4F_preferences_t pr;
	memset(&pr, 0, sizeof(pr));
	pr.frameInfo.blockMode = LZ4F_blockLinked;
	pr.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
	pr.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled;
	pr.frameInfo.contentSize = plen;
	size_t lcap = LZ4F_compressFrameBound(plen, &pr) * 2;
	uint8_t *l = malloc(lcap);
	ST_ASSERT(l);
	size_t l1 = LZ4F_compressFrame(l, lcap, p, plen, &pr);
	ST_ASSERT(!LZ4F_isError(l1));
	ok(inflate_equals(COMPRESS_LZ4, l, l1, p, plen), "lz4: frame with content size, checksums, linked blocks");
	l[l1 - 2] ^= 0x40; /* inside the content checksum */
	is_int(compress_inflate(COMPRESS_LZ4, l, l1, plen, &d, &dlen), -EINVAL, "lz4: bad content checksum");
	l[l1 - 2] ^= 0x40;
	pr.frameInfo.contentSize = 0;
	size_t l2 = LZ4F_compressFrame(l + l1, lcap - l1, p, 100, &pr);
	ST_ASSERT(!LZ4F_isError(l2));
	uint8_t *want = malloc(plen + 100);
	ST_ASSERT(want);
	memcpy(want, p, plen);
	memcpy(want + plen, p, 100);
	ok(inflate_equals(COMPRESS_LZ4, l, l1 + l2, want, plen + 100), "lz4: two concatenated frames");
	free(want);
	free(l);

	/* our lz4 frame is the Java client's shape: FLG version 01, independent blocks, no
	 * checksums or size; BD 64 KiB */
	ST_ASSERT(compress_deflate(COMPRESS_LZ4, 0, p, plen, &c1, &c1len) == 0);
	ok(c1len > 7 && st_be32(c1) == 0x04224d18 && c1[4] == 0x60 && c1[5] == 0x40,
	   "lz4: frame magic, FLG 0x60 and BD 0x40 as KafkaLZ4BlockOutputStream writes");
	free(c1);
	/* raw snappy as librdkafka sends it: first bytes are the length varint */
	ST_ASSERT(compress_deflate(COMPRESS_SNAPPY, 0, p, plen, &c1, &c1len) == 0);
	ok(c1len > 3 && c1[0] == (0x80 | (plen & 0x7f)), "snappy: deflate writes raw snappy (librdkafka's form)");
	free(c1);
	free(p);
}

static void test_bombs(void)
{
	size_t n = 64u << 20;
	uint8_t *zeros = calloc(1, n);
	ST_ASSERT(zeros);
	for (size_t ci = 1; ci < ST_ARRAY_LEN(codecs); ci++) {
		uint8_t *c, *d = NULL;
		size_t clen, dlen = 0;
		ST_ASSERT(compress_deflate(codecs[ci], 0, zeros, n, &c, &clen) == 0);
		int rc = compress_inflate(codecs[ci], c, clen, 1 << 20, &d, &dlen);
		ok(rc == -EMSGSIZE && d == NULL, "%s: 64 MiB of zeros in %zu bytes, max_out 1 MiB -> EMSGSIZE (%d)",
		   compress_codec_name(codecs[ci]), clen, rc);
		free(c);
	}
	free(zeros);
	uint8_t *d = NULL;
	size_t dlen;
	is_int(compress_inflate(COMPRESS_NONE, (const uint8_t *)"abc", 3, 2, &d, &dlen), -EMSGSIZE,
	       "none: 3 bytes with max_out 2");
}

/* Every truncation and many bit flips: an error or (for checksum-less forms) other bytes,
 * never a crash or an over-long result; truncations of self-terminating forms must fail. */
static void test_corrupt(void)
{
	size_t plen = 20000;
	uint8_t *p = mixed_payload(plen);
	for (size_t ci = 1; ci < ST_ARRAY_LEN(codecs); ci++) {
		int codec = codecs[ci];
		uint8_t *c;
		size_t clen;
		ST_ASSERT(compress_deflate(codec, 0, p, plen, &c, &clen) == 0);
		int trunc_ok = 1, flip_ok = 1;
		for (size_t cut = 0; cut < clen; cut += 1 + cut / 16) {
			uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan sees any over-read */
			ST_ASSERT(copy);
			memcpy(copy, c, cut);
			uint8_t *d = NULL;
			size_t dlen;
			int rc = compress_inflate(codec, copy, cut, plen, &d, &dlen);
			if (rc != -EINVAL) {
				tap_diag("%s cut at %zu/%zu: rc %d", compress_codec_name(codec), cut, clen, rc);
				trunc_ok = 0;
			}
			free(d);
			free(copy);
		}
		for (int i = 0; i < 2000; i++) {
			uint8_t *copy = malloc(clen);
			ST_ASSERT(copy);
			memcpy(copy, c, clen);
			int flips = 1 + (int)(rng() % 4);
			for (int k = 0; k < flips; k++)
				copy[rng() % clen] ^= (uint8_t)(1u << (rng() % 8));
			uint8_t *d = NULL;
			size_t dlen = 0;
			int rc = compress_inflate(codec, copy, clen, plen, &d, &dlen);
			if (!(rc == 0 || rc == -EINVAL || rc == -EMSGSIZE) || (rc == 0 && dlen > plen) ||
			    (rc != 0 && d != NULL))
				flip_ok = 0;
			free(d);
			free(copy);
		}
		ok(trunc_ok, "%s: every truncation of a %zu-byte stream is EINVAL", compress_codec_name(codec), clen);
		ok(flip_ok, "%s: 2000 random bit flips: 0/EINVAL/EMSGSIZE, never a crash", compress_codec_name(codec));
		free(c);
	}
	/* garbage */
	int all = 1;
	for (int i = 0; i < 500; i++) {
		size_t n = rng() % 300;
		uint8_t *g = malloc(n ? n : 1);
		ST_ASSERT(g);
		for (size_t k = 0; k < n; k++)
			g[k] = (uint8_t)rng();
		if (i % 5 == 0 && n >= 16) /* a xerial header over garbage blocks */
			memcpy(g, "\x82SNAPPY\0\0\0\0\1\0\0\0\1", 16);
		for (size_t ci = 1; ci < ST_ARRAY_LEN(codecs); ci++) {
			uint8_t *d = NULL;
			size_t dlen;
			int rc = compress_inflate(codecs[ci], g, n, 1 << 16, &d, &dlen);
			if (!(rc == 0 || rc == -EINVAL || rc == -EMSGSIZE))
				all = 0;
			free(d);
		}
		free(g);
	}
	ok(all, "random garbage into every codec: errors, no crash");
	free(p);
}

/* ---- cross-check with kafka-python (kafka.codec) ------------------------------------ */

static const char py_encode[] =
	"import sys, kafka.codec as c\n"
	"p = b''.join(b'record-%05d;' % (i % 1000) for i in range(6000))\n"
	"import zstandard, io\n"
	"b = io.BytesIO(); w = zstandard.ZstdCompressor().stream_writer(b, closefd=False)\n"
	"w.write(p); w.flush(zstandard.FLUSH_FRAME)\n"
	"out = [('gzip', c.gzip_encode(p)), ('snappy', c.snappy_encode(p)),\n"
	"       ('snappy', c.snappy_encode(p, xerial_compatible=False)),\n"
	"       ('lz4', c.lz4_encode(p)), ('zstd', c.zstd_encode(p)), ('zstd', b.getvalue())]\n"
	"for name, blob in out: print(name, blob.hex())\n";

static const char py_decode[] =
	"import sys, zlib, kafka.codec as c\n"
	"dec = {'gzip': c.gzip_decode, 'snappy': c.snappy_decode, 'lz4': c.lz4_decode,\n"
	"       'zstd': c.zstd_decode}\n"
	"for path in sys.argv[1:]:\n"
	"    name = path.rsplit('.', 1)[1]\n"
	"    d = dec[name](open(path, 'rb').read())\n"
	"    print(name, len(d), zlib.crc32(d))\n";

static int have_python_codecs(void)
{
	if (access("/usr/bin/python3", X_OK) != 0)
		return 0;
	int rc = system("/usr/bin/python3 -c 'import kafka.codec as c, zstandard, sys; "
			"sys.exit(0 if c.has_snappy() and c.has_lz4() and c.has_zstd() else 1)' 2>/dev/null");
	return rc == 0;
}

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;
	while (s[0] && s[1] && s[0] != '\n' && n < cap) {
		unsigned v;
		if (sscanf(s, "%2x", &v) != 1)
			break;
		out[n++] = (uint8_t)v;
		s += 2;
	}
	return n;
}

static void test_python(void)
{
	if (!have_python_codecs()) {
		for (int i = 0; i < 7; i++)
			ok(1, "# SKIP /usr/bin/python3 with kafka-python, snappy, lz4, zstandard not available");
		return;
	}
	size_t plen;
	uint8_t *p = pattern_payload(6000, &plen);
	char dir[] = "/tmp/strata-compress-XXXXXX";
	ST_ASSERT(mkdtemp(dir));
	char script[256];
	snprintf(script, sizeof(script), "%s/enc.py", dir);
	FILE *f = fopen(script, "w");
	ST_ASSERT(f);
	fputs(py_encode, f);
	fclose(f);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s", script);
	FILE *pp = popen(cmd, "r");
	ST_ASSERT(pp);
	size_t linecap = 1 << 20;
	char *line = malloc(linecap);
	uint8_t *blob = malloc(linecap / 2);
	ST_ASSERT(line && blob);
	int n = 0;
	while (fgets(line, (int)linecap, pp)) {
		char *sp = strchr(line, ' ');
		if (!sp)
			continue;
		*sp = 0;
		int codec = compress_codec_parse(line);
		size_t blen = unhex(sp + 1, blob, linecap / 2);
		ok(codec > 0 && inflate_equals(codec, blob, blen, p, plen),
		   "kafka-python %s blob #%d (%zu bytes) inflates to the payload", line, n, blen);
		n++;
	}
	pclose(pp);
	if (n != 6)
		ok(0, "kafka-python produced %d blobs, want 6", n);

	/* the other way: what we write, kafka-python (as a consumer would) reads */
	snprintf(script, sizeof(script), "%s/dec.py", dir);
	f = fopen(script, "w");
	ST_ASSERT(f);
	fputs(py_decode, f);
	fclose(f);
	int off = snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s", script);
	for (size_t ci = 1; ci < ST_ARRAY_LEN(codecs); ci++) {
		uint8_t *c;
		size_t clen;
		ST_ASSERT(compress_deflate(codecs[ci], 0, p, plen, &c, &clen) == 0);
		char path[128];
		snprintf(path, sizeof(path), "%s/out.%s", dir, compress_codec_name(codecs[ci]));
		FILE *o = fopen(path, "wb");
		ST_ASSERT(o && fwrite(c, 1, clen, o) == clen);
		fclose(o);
		free(c);
		off += snprintf(cmd + off, sizeof(cmd) - (size_t)off, " %s", path);
	}
	pp = popen(cmd, "r");
	ST_ASSERT(pp);
	unsigned long want_crc = crc32(0, p, (uInt)plen);
	int good = 0;
	while (fgets(line, (int)linecap, pp)) {
		char name[16];
		size_t len;
		unsigned long crc;
		if (sscanf(line, "%15s %zu %lu", name, &len, &crc) == 3 && len == plen && crc == want_crc)
			good++;
		else
			tap_diag("python decode: %s", line);
	}
	int st = pclose(pp);
	ok(good == 4 && st == 0, "kafka-python decodes our gzip, snappy, lz4, zstd (%d/4)", good);
	free(line);
	free(blob);
	free(p);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		tap_diag("could not remove %s", dir);
}

int main(void)
{
	test_names();
	test_round_trips();
	test_wire_forms();
	test_bombs();
	test_corrupt();
	test_python();
	return tap_done();
}
