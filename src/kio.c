/* kio.c -- Kafka wire primitives: bounds-checked reads (struct kr) and a growable writer (struct kw).
 * Every read of peer-controlled bytes goes through kr_need(); nothing here trusts a length before it
 * has been compared with what remains. Must not know about messages or allocate on the read side. */
#include "strata/kio.h"

#include <errno.h>
#include <stdlib.h>

#include "strata/common.h"

/* ---- reader ---------------------------------------------------------------------------------- */

void kr_init(struct kr *r, const void *p, size_t len)
{
	r->p = p;
	r->len = p ? len : 0;
	r->pos = 0;
	r->err = 0;
}

void kr_fail(struct kr *r)
{
	if (!r->err)
		r->err = -EBADMSG;
}

/* The only gate to the input: returns a pointer to n readable bytes and advances, or fails the reader. */
static const uint8_t *kr_need(struct kr *r, size_t n)
{
	if (r->err)
		return NULL;
	if (n > r->len - r->pos) {
		r->err = -EBADMSG;
		return NULL;
	}
	const uint8_t *q = r->p + r->pos;
	r->pos += n;
	return q;
}

int8_t kr_i8(struct kr *r)
{
	const uint8_t *q = kr_need(r, 1);
	return q ? (int8_t)q[0] : 0;
}

int16_t kr_i16(struct kr *r)
{
	const uint8_t *q = kr_need(r, 2);
	return q ? (int16_t)st_be16(q) : 0;
}

uint16_t kr_u16(struct kr *r)
{
	const uint8_t *q = kr_need(r, 2);
	return q ? st_be16(q) : 0;
}

int32_t kr_i32(struct kr *r)
{
	const uint8_t *q = kr_need(r, 4);
	return q ? (int32_t)st_be32(q) : 0;
}

uint32_t kr_u32(struct kr *r)
{
	const uint8_t *q = kr_need(r, 4);
	return q ? st_be32(q) : 0;
}

int64_t kr_i64(struct kr *r)
{
	const uint8_t *q = kr_need(r, 8);
	return q ? (int64_t)st_be64(q) : 0;
}

double kr_f64(struct kr *r)
{
	const uint8_t *q = kr_need(r, 8);
	if (!q)
		return 0;
	uint64_t bits = st_be64(q);
	double d;
	memcpy(&d, &bits, sizeof d);
	return d;
}

bool kr_bool(struct kr *r)
{
	const uint8_t *q = kr_need(r, 1);
	return q && q[0] != 0;
}

uint64_t kr_uvarlong(struct kr *r)
{
	uint64_t v = 0;
	for (unsigned shift = 0; shift < 70; shift += 7) {
		const uint8_t *q = kr_need(r, 1);
		if (!q)
			return 0;
		/* The tenth byte may only carry the top bit of a 64-bit value. */
		if (shift == 63 && q[0] > 1) {
			kr_fail(r);
			return 0;
		}
		v |= (uint64_t)(q[0] & 0x7f) << shift;
		if (!(q[0] & 0x80))
			return v;
	}
	kr_fail(r);
	return 0;
}

uint32_t kr_uvarint(struct kr *r)
{
	uint32_t v = 0;
	for (unsigned shift = 0; shift < 35; shift += 7) {
		const uint8_t *q = kr_need(r, 1);
		if (!q)
			return 0;
		/* The fifth byte may only carry the top 4 bits; more is a varint no encoder writes. */
		if (shift == 28 && q[0] > 0x0f) {
			kr_fail(r);
			return 0;
		}
		v |= (uint32_t)(q[0] & 0x7f) << shift;
		if (!(q[0] & 0x80))
			return v;
	}
	kr_fail(r);
	return 0;
}

int32_t kr_varint(struct kr *r)
{
	uint32_t u = kr_uvarint(r);
	return (int32_t)((u >> 1) ^ (~(u & 1) + 1));
}

int64_t kr_varlong(struct kr *r)
{
	uint64_t u = kr_uvarlong(r);
	return (int64_t)((u >> 1) ^ (~(u & 1) + 1));
}

void kr_uuid(struct kr *r, uint8_t out[16])
{
	const uint8_t *q = kr_need(r, 16);
	if (q)
		memcpy(out, q, 16);
	else
		memset(out, 0, 16);
}

const uint8_t *kr_raw(struct kr *r, size_t n)
{
	return kr_need(r, n);
}

/* len is the decoded length (-1 null, else >= 0); anything else is malformed. */
static struct kstr kr_str_body(struct kr *r, int64_t len)
{
	if (r->err)
		return KSTR_NULL;
	if (len == -1)
		return KSTR_NULL;
	if (len < -1 || len > KIO_STRING_MAX) {
		kr_fail(r);
		return KSTR_NULL;
	}
	const uint8_t *q = kr_need(r, (size_t)len);
	if (!q)
		return KSTR_NULL;
	return (struct kstr){ (const char *)q, (int32_t)len };
}

struct kstr kr_string(struct kr *r)
{
	int16_t n = kr_i16(r);
	return kr_str_body(r, n);
}

struct kstr kr_compact_string(struct kr *r)
{
	uint32_t n = kr_uvarint(r);
	return kr_str_body(r, (int64_t)n - 1);
}

static struct kbytes kr_bytes_body(struct kr *r, int64_t len)
{
	if (r->err || len == -1)
		return KBYTES_NULL;
	if (len < -1 || len > INT32_MAX) {
		kr_fail(r);
		return KBYTES_NULL;
	}
	const uint8_t *q = kr_need(r, (size_t)len);
	if (!q)
		return KBYTES_NULL;
	return (struct kbytes){ q, (int32_t)len };
}

struct kbytes kr_bytes(struct kr *r)
{
	int32_t n = kr_i32(r);
	return kr_bytes_body(r, n);
}

struct kbytes kr_compact_bytes(struct kr *r)
{
	uint32_t n = kr_uvarint(r);
	return kr_bytes_body(r, (int64_t)n - 1);
}

int32_t kr_array_len_min(struct kr *r, bool compact, size_t min_elem_bytes)
{
	int64_t n = compact ? (int64_t)kr_uvarint(r) - 1 : (int64_t)kr_i32(r);
	if (r->err)
		return 0;
	if (n == -1)
		return -1;
	if (min_elem_bytes == 0)
		min_elem_bytes = 1;
	if (n < -1 || (uint64_t)n > kr_remaining(r) / min_elem_bytes) {
		kr_fail(r);
		return 0;
	}
	return (int32_t)n;
}

int32_t kr_array_len(struct kr *r)
{
	return kr_array_len_min(r, false, 1);
}

int32_t kr_compact_array_len(struct kr *r)
{
	return kr_array_len_min(r, true, 1);
}

int kr_slice(struct kr *r, size_t n, struct kr *sub)
{
	const uint8_t *q = kr_need(r, n);
	if (!q) {
		kr_init(sub, NULL, 0);
		sub->err = -EBADMSG;
		return -EBADMSG;
	}
	kr_init(sub, q, n);
	return 0;
}

void kr_skip(struct kr *r, size_t n)
{
	(void)kr_need(r, n);
}

uint32_t kr_tags_count(struct kr *r)
{
	uint32_t n = kr_uvarint(r);
	/* Each tagged field takes at least two bytes (tag and size). */
	if (!r->err && n > kr_remaining(r) / 2) {
		kr_fail(r);
		return 0;
	}
	return r->err ? 0 : n;
}

void kr_tag_next(struct kr *r, uint32_t *tag, struct kr *field)
{
	*tag = kr_uvarint(r);
	uint32_t size = kr_uvarint(r);
	if (kr_slice(r, size, field) < 0)
		*tag = UINT32_MAX;
}

void kr_skip_tags(struct kr *r)
{
	uint32_t n = kr_tags_count(r);
	for (uint32_t i = 0; i < n && !r->err; i++) {
		uint32_t tag;
		struct kr f;
		kr_tag_next(r, &tag, &f);
	}
}

/* ---- writer ---------------------------------------------------------------------------------- */

/* Frames are int32-sized; refusing to grow past that keeps every offset representable. */
#define KW_MAX ((size_t)INT32_MAX)

void kw_init(struct kw *w, size_t initial_cap)
{
	w->p = NULL;
	w->len = 0;
	w->cap = initial_cap; /* a hint until the first allocation */
	w->err = 0;
}

void kw_free(struct kw *w)
{
	if (w->p)
		free(w->p);
	w->p = NULL;
	w->len = w->cap = 0;
	w->err = 0;
}

void kw_reset(struct kw *w)
{
	w->len = 0;
	w->err = 0;
}

uint8_t *kw_detach(struct kw *w, size_t *len)
{
	uint8_t *p = NULL;
	*len = 0;
	if (!w->err && w->p && w->len) {
		p = w->p;
		*len = w->len;
		w->p = NULL;
	}
	kw_free(w);
	return p;
}

int kw_fail(struct kw *w, int err)
{
	if (!w->err)
		w->err = err;
	return w->err;
}

/* Makes room for n more bytes; returns where they go, or NULL after an error. */
static uint8_t *kw_room(struct kw *w, size_t n)
{
	if (w->err)
		return NULL;
	if (n > KW_MAX - w->len) {
		kw_fail(w, -ENOMEM);
		return NULL;
	}
	if (!w->p || w->len + n > w->cap) {
		size_t cap = w->p ? w->cap : ST_MAX(w->cap, (size_t)64);
		while (cap < w->len + n)
			cap = cap > KW_MAX / 2 ? KW_MAX : cap * 2;
		uint8_t *np = realloc(w->p, cap);
		if (!np) {
			kw_fail(w, -ENOMEM);
			return NULL;
		}
		w->p = np;
		w->cap = cap;
	}
	uint8_t *q = w->p + w->len;
	w->len += n;
	return q;
}

void kw_raw(struct kw *w, const void *p, size_t n)
{
	if (n == 0)
		return;
	uint8_t *q = kw_room(w, n);
	if (q)
		memcpy(q, p, n);
}

void kw_i8(struct kw *w, int8_t v)
{
	uint8_t *q = kw_room(w, 1);
	if (q)
		q[0] = (uint8_t)v;
}

void kw_bool(struct kw *w, bool v) { kw_i8(w, v ? 1 : 0); }

void kw_i16(struct kw *w, int16_t v) { kw_u16(w, (uint16_t)v); }

void kw_u16(struct kw *w, uint16_t v)
{
	uint8_t *q = kw_room(w, 2);
	if (q)
		st_put_be16(q, v);
}

void kw_i32(struct kw *w, int32_t v) { kw_u32(w, (uint32_t)v); }

void kw_u32(struct kw *w, uint32_t v)
{
	uint8_t *q = kw_room(w, 4);
	if (q)
		st_put_be32(q, v);
}

void kw_i64(struct kw *w, int64_t v)
{
	uint8_t *q = kw_room(w, 8);
	if (q)
		st_put_be64(q, (uint64_t)v);
}

void kw_f64(struct kw *w, double v)
{
	uint64_t bits;
	memcpy(&bits, &v, sizeof bits);
	kw_i64(w, (int64_t)bits);
}

size_t kio_uvarlong_size(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

size_t kio_uvarint_size(uint32_t v) { return kio_uvarlong_size(v); }

static void kio_put_uvarlong(uint8_t *q, uint64_t v)
{
	while (v >= 0x80) {
		*q++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*q = (uint8_t)v;
}

void kw_uvarlong(struct kw *w, uint64_t v)
{
	uint8_t *q = kw_room(w, kio_uvarlong_size(v));
	if (q)
		kio_put_uvarlong(q, v);
}

void kw_uvarint(struct kw *w, uint32_t v) { kw_uvarlong(w, v); }

void kw_varint(struct kw *w, int32_t v)
{
	kw_uvarint(w, ((uint32_t)v << 1) ^ (uint32_t)(v >> 31));
}

void kw_varlong(struct kw *w, int64_t v)
{
	kw_uvarlong(w, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

void kw_uuid(struct kw *w, const uint8_t v[16]) { kw_raw(w, v, 16); }

/* A string must be null (-1) or 0..KIO_STRING_MAX bytes with a pointer. */
static bool kw_str_ok(struct kw *w, struct kstr s)
{
	if (s.len < -1 || s.len > KIO_STRING_MAX || (s.len > 0 && !s.p)) {
		kw_fail(w, -EINVAL);
		return false;
	}
	return true;
}

void kw_string(struct kw *w, struct kstr s)
{
	if (!kw_str_ok(w, s))
		return;
	kw_i16(w, (int16_t)s.len);
	if (s.len > 0)
		kw_raw(w, s.p, (size_t)s.len);
}

void kw_compact_string(struct kw *w, struct kstr s)
{
	if (!kw_str_ok(w, s))
		return;
	kw_uvarint(w, (uint32_t)(s.len + 1));
	if (s.len > 0)
		kw_raw(w, s.p, (size_t)s.len);
}

static bool kw_bytes_ok(struct kw *w, struct kbytes b)
{
	if (b.len < -1 || (b.len > 0 && !b.p)) {
		kw_fail(w, -EINVAL);
		return false;
	}
	return true;
}

void kw_bytes(struct kw *w, struct kbytes b)
{
	if (!kw_bytes_ok(w, b))
		return;
	kw_i32(w, b.len);
	if (b.len > 0)
		kw_raw(w, b.p, (size_t)b.len);
}

void kw_compact_bytes(struct kw *w, struct kbytes b)
{
	if (!kw_bytes_ok(w, b))
		return;
	kw_uvarint(w, (uint32_t)b.len + 1);
	if (b.len > 0)
		kw_raw(w, b.p, (size_t)b.len);
}

void kw_array_len(struct kw *w, int32_t n)
{
	if (n < -1) {
		kw_fail(w, -EINVAL);
		return;
	}
	kw_i32(w, n);
}

void kw_compact_array_len(struct kw *w, int32_t n)
{
	if (n < -1) {
		kw_fail(w, -EINVAL);
		return;
	}
	kw_uvarint(w, (uint32_t)n + 1);
}

size_t kw_reserve(struct kw *w, size_t n)
{
	size_t at = w->len;
	uint8_t *q = kw_room(w, n);
	if (q)
		memset(q, 0, n);
	return at;
}

void kw_patch_i32(struct kw *w, size_t at, int32_t v)
{
	if (w->err)
		return;
	ST_ASSERT(at <= w->len && w->len - at >= 4);
	st_put_be32(w->p + at, (uint32_t)v);
}

size_t kw_tag_begin(struct kw *w, uint32_t tag)
{
	kw_uvarint(w, tag);
	/* One size byte covers values under 128 bytes, the common case; kw_tag_end widens it if not. */
	return kw_reserve(w, 1);
}

void kw_tag_end(struct kw *w, size_t at)
{
	if (w->err)
		return;
	ST_ASSERT(at < w->len);
	size_t size = w->len - at - 1;
	if (size > UINT32_MAX) {
		kw_fail(w, -EINVAL);
		return;
	}
	size_t extra = kio_uvarint_size((uint32_t)size) - 1;
	if (extra && !kw_room(w, extra))
		return;
	memmove(w->p + at + 1 + extra, w->p + at + 1, size);
	kio_put_uvarlong(w->p + at, size);
}
