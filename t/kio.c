/* t/kio.c -- Kafka primitives: round trips at boundary values, exact wire bytes of varints and
 * strings, sticky errors, every truncation of a mixed buffer fails without reading out of bounds
 * (run under ASan), absurd lengths rejected, slices, tagged fields, writer patching; and the arena. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "strata/arena.h"
#include "strata/common.h"
#include "strata/kio.h"
#include "tap.h"

static bool bytes_are(const struct kw *w, const char *hex)
{
	size_t n = strlen(hex) / 2;
	if (w->err || w->len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned b;
		if (sscanf(hex + 2 * i, "%2x", &b) != 1 || w->p[i] != b)
			return false;
	}
	return true;
}

static void test_ints(void)
{
	struct kw w;
	kw_init(&w, 0);
	kw_i8(&w, INT8_MIN); kw_i8(&w, INT8_MAX); kw_i8(&w, -1);
	kw_i16(&w, INT16_MIN); kw_i16(&w, INT16_MAX);
	kw_u16(&w, UINT16_MAX);
	kw_i32(&w, INT32_MIN); kw_i32(&w, INT32_MAX); kw_i32(&w, -1);
	kw_u32(&w, UINT32_MAX);
	kw_i64(&w, INT64_MIN); kw_i64(&w, INT64_MAX);
	kw_bool(&w, true); kw_bool(&w, false);
	kw_f64(&w, -0.0); kw_f64(&w, INFINITY); kw_f64(&w, 1.5e300);
	uint8_t uuid[16], got[16];
	for (int i = 0; i < 16; i++)
		uuid[i] = (uint8_t)(0xf0 + i);
	kw_uuid(&w, uuid);
	ok(w.err == 0 && w.len == 3 + 4 + 2 + 12 + 4 + 16 + 2 + 24 + 16, "ints written: %zu bytes", w.len);
	ok(w.p[3] == 0x80 && w.p[4] == 0x00, "int16 is big-endian");

	struct kr r;
	kr_init(&r, w.p, w.len);
	int all = 1;
	all &= kr_i8(&r) == INT8_MIN; all &= kr_i8(&r) == INT8_MAX; all &= kr_i8(&r) == -1;
	all &= kr_i16(&r) == INT16_MIN; all &= kr_i16(&r) == INT16_MAX;
	all &= kr_u16(&r) == UINT16_MAX;
	all &= kr_i32(&r) == INT32_MIN; all &= kr_i32(&r) == INT32_MAX; all &= kr_i32(&r) == -1;
	all &= kr_u32(&r) == UINT32_MAX;
	all &= kr_i64(&r) == INT64_MIN; all &= kr_i64(&r) == INT64_MAX;
	all &= kr_bool(&r) == true; all &= kr_bool(&r) == false;
	double z = kr_f64(&r);
	all &= z == 0.0 && signbit(z);
	all &= isinf(kr_f64(&r));
	all &= kr_f64(&r) == 1.5e300;
	kr_uuid(&r, got);
	all &= memcmp(got, uuid, 16) == 0;
	ok(all && r.err == 0 && r.pos == w.len, "ints, bool, f64, uuid round trip at their limits");

	/* Kafka reads any non-zero byte as true. */
	uint8_t two = 2;
	kr_init(&r, &two, 1);
	ok(kr_bool(&r) == true && !r.err, "bool byte 2 reads as true");
	kw_free(&w);
}

static void test_varints(void)
{
	static const struct {
		uint32_t v;
		const char *hex;
	} uv[] = {
		{ 0, "00" }, { 1, "01" }, { 127, "7f" }, { 128, "8001" }, { 300, "ac02" },
		{ 16383, "ff7f" }, { 16384, "808001" }, { UINT32_MAX, "ffffffff0f" },
	};
	for (size_t i = 0; i < ST_ARRAY_LEN(uv); i++) {
		struct kw w;
		kw_init(&w, 0);
		kw_uvarint(&w, uv[i].v);
		int enc = bytes_are(&w, uv[i].hex) && kio_uvarint_size(uv[i].v) == w.len;
		struct kr r;
		kr_init(&r, w.p, w.len);
		uint32_t back = kr_uvarint(&r);
		ok(enc && back == uv[i].v && !r.err && r.pos == w.len, "uvarint %u is %s", uv[i].v, uv[i].hex);
		kw_free(&w);
	}
	static const struct {
		int32_t v;
		const char *hex;
	} sv[] = {
		{ 0, "00" }, { -1, "01" }, { 1, "02" }, { -64, "7f" }, { 64, "8001" },
		{ INT32_MAX, "feffffff0f" }, { INT32_MIN, "ffffffff0f" },
	};
	for (size_t i = 0; i < ST_ARRAY_LEN(sv); i++) {
		struct kw w;
		kw_init(&w, 0);
		kw_varint(&w, sv[i].v);
		int enc = bytes_are(&w, sv[i].hex);
		struct kr r;
		kr_init(&r, w.p, w.len);
		ok(enc && kr_varint(&r) == sv[i].v && !r.err, "varint %d is %s", sv[i].v, sv[i].hex);
		kw_free(&w);
	}
	static const struct {
		int64_t v;
		const char *hex;
	} lv[] = {
		{ 0, "00" }, { -1, "01" }, { INT64_MAX, "feffffffffffffffff01" },
		{ INT64_MIN, "ffffffffffffffffff01" }, { (int64_t)1 << 40, "808080808040" },
	};
	for (size_t i = 0; i < ST_ARRAY_LEN(lv); i++) {
		struct kw w;
		kw_init(&w, 0);
		kw_varlong(&w, lv[i].v);
		int enc = bytes_are(&w, lv[i].hex);
		struct kr r;
		kr_init(&r, w.p, w.len);
		ok(enc && kr_varlong(&r) == lv[i].v && !r.err, "varlong %lld is %s", (long long)lv[i].v, lv[i].hex);
		kw_free(&w);
	}
	/* Every 32-bit boundary of 7-bit groups round trips, signed and unsigned. */
	int all = 1;
	for (int bit = 0; bit < 32; bit++) {
		uint32_t vals[3] = { (uint32_t)1 << bit, ((uint32_t)1 << bit) - 1, ~((uint32_t)1 << bit) };
		for (int k = 0; k < 3; k++) {
			struct kw w;
			kw_init(&w, 0);
			kw_uvarint(&w, vals[k]);
			kw_varint(&w, (int32_t)vals[k]);
			kw_varlong(&w, (int64_t)vals[k] << 31);
			struct kr r;
			kr_init(&r, w.p, w.len);
			all &= kr_uvarint(&r) == vals[k];
			all &= kr_varint(&r) == (int32_t)vals[k];
			all &= kr_varlong(&r) == (int64_t)vals[k] << 31;
			all &= !r.err && r.pos == w.len;
			kw_free(&w);
		}
	}
	ok(all, "varint/varlong round trip at every bit boundary");

	/* Malformed: too long, or bits beyond 32/64. */
	static const uint8_t too_long[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x01 };
	static const uint8_t overflow5[] = { 0xff, 0xff, 0xff, 0xff, 0x1f };
	static const uint8_t long11[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01 };
	static const uint8_t long_overflow[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02 };
	struct kr r;
	kr_init(&r, too_long, sizeof too_long);
	ok(kr_uvarint(&r) == 0 && r.err == -EBADMSG, "6-byte uvarint rejected");
	kr_init(&r, overflow5, sizeof overflow5);
	ok(kr_uvarint(&r) == 0 && r.err == -EBADMSG, "uvarint above 32 bits rejected");
	kr_init(&r, long11, sizeof long11);
	ok(kr_varlong(&r) == 0 && r.err == -EBADMSG, "11-byte varlong rejected");
	kr_init(&r, long_overflow, sizeof long_overflow);
	ok(kr_uvarlong(&r) == 0 && r.err == -EBADMSG, "uvarlong above 64 bits rejected");
	static const uint8_t cont[] = { 0x80 };
	kr_init(&r, cont, sizeof cont);
	ok(kr_uvarint(&r) == 0 && r.err == -EBADMSG, "uvarint cut after a continuation byte fails");
}

static void test_strings(void)
{
	struct kw w;
	kw_init(&w, 0);
	kw_string(&w, KSTR_NULL);
	kw_string(&w, KSTR_LIT(""));
	kw_string(&w, KSTR_LIT("abc"));
	ok(bytes_are(&w, "ffff" "0000" "0003616263"), "string: null, empty, abc wire bytes");
	kw_reset(&w);
	kw_compact_string(&w, KSTR_NULL);
	kw_compact_string(&w, KSTR_LIT(""));
	kw_compact_string(&w, KSTR_LIT("abc"));
	ok(bytes_are(&w, "00" "01" "04616263"), "compact string: null, empty, abc wire bytes");
	kw_reset(&w);
	kw_bytes(&w, KBYTES_NULL);
	kw_bytes(&w, (struct kbytes){ (const uint8_t *)"", 0 });
	kw_bytes(&w, (struct kbytes){ (const uint8_t *)"\x01\x02", 2 });
	kw_compact_bytes(&w, KBYTES_NULL);
	kw_compact_bytes(&w, (struct kbytes){ (const uint8_t *)"\x01\x02", 2 });
	ok(bytes_are(&w, "ffffffff" "00000000" "000000020102" "00" "030102"), "bytes and compact bytes wire bytes");

	struct kr r;
	kr_init(&r, w.p, w.len);
	struct kbytes b1 = kr_bytes(&r), b2 = kr_bytes(&r), b3 = kr_bytes(&r);
	struct kbytes b4 = kr_compact_bytes(&r), b5 = kr_compact_bytes(&r);
	ok(b1.len == -1 && !b1.p && b2.len == 0 && b3.len == 2 && b3.p == w.p + 12 && b4.len == -1 && b5.len == 2 &&
	   b5.p[1] == 2 && !r.err && r.pos == w.len, "bytes read back as zero-copy views, nulls as -1");

	/* Longest legal string, then one byte more. */
	static char big[KIO_STRING_MAX + 1];
	memset(big, 'x', sizeof big);
	kw_reset(&w);
	kw_string(&w, (struct kstr){ big, KIO_STRING_MAX });
	kw_compact_string(&w, (struct kstr){ big, KIO_STRING_MAX });
	ok(!w.err && w.len == 2 + KIO_STRING_MAX + 3 + KIO_STRING_MAX, "32767-byte strings encode");
	kr_init(&r, w.p, w.len);
	struct kstr s1 = kr_string(&r), s2 = kr_compact_string(&r);
	ok(s1.len == KIO_STRING_MAX && s2.len == KIO_STRING_MAX && !r.err && r.pos == w.len, "and decode");
	size_t len_before = w.len;
	kw_string(&w, (struct kstr){ big, KIO_STRING_MAX + 1 });
	ok(w.err == -EINVAL && w.len == len_before, "32768-byte string is -EINVAL, nothing written");
	kw_i32(&w, 7);
	ok(w.len == len_before, "writer error is sticky");
	kw_reset(&w);
	kw_compact_string(&w, (struct kstr){ big, KIO_STRING_MAX + 1 });
	ok(w.err == -EINVAL, "32768-byte compact string is -EINVAL");
	kw_reset(&w);
	kw_string(&w, (struct kstr){ NULL, 3 });
	ok(w.err == -EINVAL, "string with length but no pointer is -EINVAL");

	/* Malformed lengths. */
	static const uint8_t neg2[] = { 0xff, 0xfe };
	kr_init(&r, neg2, sizeof neg2);
	ok(kr_string(&r).len == -1 && r.err == -EBADMSG, "string length -2 rejected");
	static const uint8_t neg2b[] = { 0xff, 0xff, 0xff, 0xfe };
	kr_init(&r, neg2b, sizeof neg2b);
	ok(kr_bytes(&r).len == -1 && r.err == -EBADMSG, "bytes length -2 rejected");
	static const uint8_t long_compact[] = { 0x81, 0x80, 0x02 }; /* 32769 - 1 = 32768 */
	kr_init(&r, long_compact, sizeof long_compact);
	ok(kr_compact_string(&r).len == -1 && r.err == -EBADMSG, "compact string of 32768 rejected before reading");
	static const uint8_t short_str[] = { 0x00, 0x05, 'a', 'b' };
	kr_init(&r, short_str, sizeof short_str);
	ok(kr_string(&r).len == -1 && r.err == -EBADMSG && kr_i8(&r) == 0, "string longer than input fails, sticky");

	ok(kstr_eq_c(KSTR_LIT("abc"), "abc") && !kstr_eq_c(KSTR_NULL, "") && kstr_eq(KSTR_NULL, KSTR_NULL) &&
	   !kstr_eq(KSTR_NULL, KSTR_LIT("")) && kstr_is_null(kstr_c(NULL)), "kstr helpers");
	kw_free(&w);
}

/* Writes one of everything; read_all reads it back the same way. */
static void write_all(struct kw *w)
{
	static const uint8_t u[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
	kw_i8(w, -5);
	kw_i16(w, -300);
	kw_i32(w, 70000);
	kw_i64(w, -5000000000LL);
	kw_uvarint(w, 1000000);
	kw_varint(w, -77);
	kw_varlong(w, -((int64_t)1 << 40));
	kw_uuid(w, u);
	kw_f64(w, 2.25);
	kw_bool(w, true);
	kw_string(w, KSTR_LIT("hello"));
	kw_compact_string(w, KSTR_LIT("world"));
	kw_string(w, KSTR_NULL);
	kw_bytes(w, (struct kbytes){ u, 5 });
	kw_compact_bytes(w, (struct kbytes){ u, 3 });
	kw_array_len(w, 2);
	kw_i32(w, 1);
	kw_i32(w, 2);
	kw_compact_array_len(w, 1);
	kw_i16(w, 9);
	kw_uvarint(w, 1); /* tagged section with one field */
	size_t at = kw_tag_begin(w, 3);
	kw_i32(w, 42);
	kw_tag_end(w, at);
}

static int read_all(struct kr *r)
{
	int good = 1;
	uint8_t u[16];
	good &= kr_i8(r) == -5;
	good &= kr_i16(r) == -300;
	good &= kr_i32(r) == 70000;
	good &= kr_i64(r) == -5000000000LL;
	good &= kr_uvarint(r) == 1000000;
	good &= kr_varint(r) == -77;
	good &= kr_varlong(r) == -((int64_t)1 << 40);
	kr_uuid(r, u);
	good &= u[15] == 16;
	good &= kr_f64(r) == 2.25;
	good &= kr_bool(r);
	good &= kstr_eq_c(kr_string(r), "hello");
	good &= kstr_eq_c(kr_compact_string(r), "world");
	good &= kr_string(r).len == -1;
	good &= kr_bytes(r).len == 5;
	good &= kr_compact_bytes(r).len == 3;
	int32_t n = kr_array_len(r);
	good &= n == 2;
	for (int32_t i = 0; i < n; i++)
		good &= kr_i32(r) == i + 1;
	n = kr_compact_array_len(r);
	good &= n == 1;
	for (int32_t i = 0; i < n; i++)
		good &= kr_i16(r) == 9;
	uint32_t nt = kr_tags_count(r);
	good &= nt == 1;
	for (uint32_t i = 0; i < nt && !r->err; i++) {
		uint32_t tag;
		struct kr f;
		kr_tag_next(r, &tag, &f);
		good &= tag == 3 && kr_i32(&f) == 42 && !f.err && kr_remaining(&f) == 0;
	}
	return good;
}

static void test_truncation(void)
{
	struct kw w;
	kw_init(&w, 0);
	write_all(&w);
	struct kr r;
	kr_init(&r, w.p, w.len);
	ok(read_all(&r) && !r.err && r.pos == w.len, "mixed buffer of %zu bytes reads back", w.len);
	int all_fail = 1;
	for (size_t n = 0; n < w.len; n++) {
		/* An exact-size heap copy: ASan reports any read past n. */
		uint8_t *copy = malloc(n ? n : 1);
		if (!copy)
			BAIL_OUT("oom");
		memcpy(copy, w.p, n);
		kr_init(&r, copy, n);
		(void)read_all(&r);
		if (r.err != -EBADMSG || r.pos > n) {
			all_fail = 0;
			tap_diag("prefix %zu: err %d pos %zu", n, r.err, r.pos);
		}
		free(copy);
	}
	ok(all_fail, "every truncation (0..%zu bytes) sets err and stays in bounds", w.len - 1);
	kw_free(&w);
}

static void test_arrays_slices(void)
{
	struct kr r;
	/* 1000 elements claimed, 8 bytes present. */
	static const uint8_t absurd[] = { 0x00, 0x00, 0x03, 0xe8, 1, 2, 3, 4, 5, 6, 7, 8 };
	kr_init(&r, absurd, sizeof absurd);
	ok(kr_array_len(&r) == 0 && r.err == -EBADMSG, "array length beyond remaining bytes rejected");
	static const uint8_t huge[] = { 0x7f, 0xff, 0xff, 0xff };
	kr_init(&r, huge, sizeof huge);
	ok(kr_array_len(&r) == 0 && r.err == -EBADMSG, "array length INT32_MAX rejected");
	static const uint8_t chuge[] = { 0xff, 0xff, 0xff, 0xff, 0x0f };
	kr_init(&r, chuge, sizeof chuge);
	ok(kr_compact_array_len(&r) == 0 && r.err == -EBADMSG, "compact array length 2^32-2 rejected");
	static const uint8_t neg[] = { 0xff, 0xff, 0xff, 0xfe };
	kr_init(&r, neg, sizeof neg);
	ok(kr_array_len(&r) == 0 && r.err == -EBADMSG, "array length -2 rejected");
	static const uint8_t null_arr[] = { 0xff, 0xff, 0xff, 0xff, 0x00 };
	kr_init(&r, null_arr, sizeof null_arr);
	ok(kr_array_len(&r) == -1 && kr_compact_array_len(&r) == -1 && !r.err, "null arrays read as -1");
	static const uint8_t eight[] = { 0x00, 0x00, 0x00, 0x02, 1, 2, 3, 4, 5, 6, 7, 8 };
	kr_init(&r, eight, sizeof eight);
	ok(kr_array_len_min(&r, false, 4) == 2 && !r.err, "2 elements of >= 4 bytes fit in 8");
	kr_init(&r, eight, sizeof eight);
	ok(kr_array_len_min(&r, false, 5) == 0 && r.err, "2 elements of >= 5 bytes do not");

	static const uint8_t nested[] = { 0x00, 0x00, 0x00, 0x03, 0xaa, 0xbb, 0xcc, 0xdd };
	kr_init(&r, nested, sizeof nested);
	struct kr sub;
	int32_t n = kr_i32(&r);
	ok(kr_slice(&r, (size_t)n, &sub) == 0 && sub.len == 3 && kr_remaining(&r) == 1, "slice narrows, parent skips");
	ok(kr_i16(&sub) == (int16_t)0xaabb && kr_i16(&sub) == 0 && sub.err == -EBADMSG && !r.err,
	   "reading past a slice fails the slice only");
	ok(kr_i8(&r) == (int8_t)0xdd && !r.err && kr_remaining(&r) == 0, "parent continues after the slice");
	kr_init(&r, nested, sizeof nested);
	kr_skip(&r, 4);
	ok(kr_slice(&r, 5, &sub) == -EBADMSG && sub.err && r.err && kr_i8(&sub) == 0, "slice beyond input fails both");
	kr_init(&r, nested, sizeof nested);
	kr_skip(&r, 9);
	ok(r.err == -EBADMSG, "skip beyond input fails");
	kr_init(&r, nested, sizeof nested);
	ok(kr_raw(&r, 8) == nested && kr_raw(&r, 1) == NULL && r.err, "raw views");
}

static void test_tags(void)
{
	struct kw w;
	kw_init(&w, 0);
	kw_tags_empty(&w);
	ok(bytes_are(&w, "00"), "empty tagged section is one 0 byte");
	kw_reset(&w);
	static uint8_t blob[300];
	for (size_t i = 0; i < sizeof blob; i++)
		blob[i] = (uint8_t)i;
	kw_uvarint(&w, 3);
	size_t at = kw_tag_begin(&w, 0);
	kw_i16(&w, 7);
	kw_tag_end(&w, at);
	at = kw_tag_begin(&w, 5);
	kw_raw(&w, blob, 200); /* size needs two varint bytes: the value moves */
	kw_tag_end(&w, at);
	at = kw_tag_begin(&w, 300);
	kw_raw(&w, blob, 127);
	kw_tag_end(&w, at);
	ok(!w.err && w.len == 1 + (1 + 1 + 2) + (1 + 2 + 200) + (2 + 1 + 127), "three tagged fields, %zu bytes", w.len);
	ok(w.p[5] == 5 && w.p[6] == 0xc8 && w.p[7] == 0x01 && w.p[8] == 0 && w.p[207] == 199, "200-byte size is c8 01, value intact");
	kw_i8(&w, 0x55); /* what follows the section */

	struct kr r;
	kr_init(&r, w.p, w.len);
	uint32_t n = kr_tags_count(&r);
	int good = n == 3;
	for (uint32_t i = 0; i < n && !r.err; i++) {
		uint32_t tag;
		struct kr f;
		kr_tag_next(&r, &tag, &f);
		if (tag == 0)
			good &= kr_i16(&f) == 7 && f.len == 2;
		else if (tag == 5)
			good &= f.len == 200 && memcmp(f.p, blob, 200) == 0;
		else if (tag == 300)
			good &= f.len == 127;
		else
			good = 0;
	}
	ok(good && kr_i8(&r) == 0x55 && !r.err, "tagged fields read back by tag, section ends where it should");
	kr_init(&r, w.p, w.len);
	kr_skip_tags(&r);
	ok(!r.err && kr_i8(&r) == 0x55, "kr_skip_tags skips unknown fields");
	static const uint8_t absurd[] = { 0x10, 0x00, 0x00 };
	kr_init(&r, absurd, sizeof absurd);
	kr_skip_tags(&r);
	ok(r.err == -EBADMSG, "tag count beyond remaining bytes rejected");
	static const uint8_t cut[] = { 0x01, 0x00, 0x05, 0x01 };
	kr_init(&r, cut, sizeof cut);
	kr_skip_tags(&r);
	ok(r.err == -EBADMSG, "tagged field longer than input rejected");
	kw_free(&w);
}

static void test_writer(void)
{
	struct kw w;
	kw_init(&w, 4);
	size_t at = kw_reserve(&w, 4);
	kw_i32(&w, 99);
	for (int i = 0; i < 1000; i++)
		kw_i64(&w, i);
	kw_patch_i32(&w, at, (int32_t)(w.len - at - 4));
	struct kr r;
	kr_init(&r, w.p, w.len);
	ok(kr_i32(&r) == 8004 && kr_i32(&r) == 99 && !w.err, "reserve + patch fills a length prefix after growth");
	kw_reset(&w);
	kw_array_len(&w, -1);
	kw_compact_array_len(&w, -1);
	kw_compact_array_len(&w, 0);
	ok(bytes_are(&w, "ffffffff" "00" "01"), "array lengths: null, compact null, compact empty");
	kw_array_len(&w, -2);
	ok(w.err == -EINVAL, "array length -2 is -EINVAL");
	kw_reset(&w);
	kw_i16(&w, 0x0102);
	size_t len = 0;
	uint8_t *p = kw_detach(&w, &len);
	ok(p && len == 2 && p[0] == 1 && w.p == NULL && w.len == 0, "detach hands the buffer over");
	free(p);
	ok(kw_fail(&w, -EINVAL) == -EINVAL && kw_fail(&w, -ENOMEM) == -EINVAL, "kw_fail keeps the first error");
	kw_free(&w);
}

static void test_arena(void)
{
	struct arena a;
	arena_init(&a, 1024, 1 << 20);
	int aligned = 1;
	for (int i = 1; i < 200; i++) {
		void *p = arena_alloc(&a, (size_t)i);
		aligned &= p && ((uintptr_t)p % ARENA_ALIGN) == 0;
		if (p)
			memset(p, 0xab, (size_t)i);
	}
	ok(aligned, "small allocations are aligned and writable");
	uint8_t *big = arena_alloc(&a, 100000);
	ok(big && ((uintptr_t)big % ARENA_ALIGN) == 0, "allocation larger than a chunk");
	memset(big, 1, 100000);
	void *z0 = arena_alloc(&a, 0), *z1 = arena_alloc(&a, 0);
	ok(z0 && z1 && z0 != z1, "zero-size allocations are distinct");
	ok(arena_alloc(&a, 2u << 20) == NULL, "allocation over the limit fails");
	ok(arena_calloc(&a, SIZE_MAX / 2, 4) == NULL, "calloc overflow fails");
	uint32_t *c = arena_calloc(&a, 10, sizeof *c);
	ok(c && c[9] == 0, "calloc zeroes");
	const char *dup = arena_memdup(&a, "strata", 7);
	ok(dup && strcmp(dup, "strata") == 0, "memdup copies");
	arena_reset(&a);
	ok(a.used_bytes == 0 && arena_alloc(&a, 900000) != NULL, "reset frees the budget");
	arena_reset(&a);
	arena_destroy(&a);
	ok(a.head == NULL, "destroy frees all chunks");
}

int main(void)
{
	test_ints();
	test_varints();
	test_strings();
	test_truncation();
	test_arrays_slices();
	test_tags();
	test_writer();
	test_arena();
	return tap_done();
}
