/* kio.h -- Kafka wire primitives: a bounds-checked reader (struct kr) and a growable writer (struct kw).
 * Owns every bounds check of protocol input: handlers and generated codecs read only through kr_*,
 * never by pointer arithmetic on request bytes. Knows nothing about messages, versions or sockets.
 *
 * Reader errors are sticky: a read past the end (or a malformed length/varint) sets r->err = -EBADMSG
 * and that read and every later one return zero values (null strings/bytes, length 0). Check r->err once
 * after a group of reads. Strings and bytes are zero-copy views into the input buffer, which must
 * outlive them. Writer errors are sticky too: w->err = -ENOMEM (allocation) or -EINVAL (a value that
 * has no wire encoding, e.g. a 40000-byte string); later writes are ignored. */
#ifndef STRATA_KIO_H
#define STRATA_KIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A string view; len -1 is the null string (p is then NULL). Not NUL-terminated. */
struct kstr {
	const char *p;
	int32_t len;
};
/* A bytes view; len -1 is null. */
struct kbytes {
	const uint8_t *p;
	int32_t len;
};

#define KSTR_NULL ((struct kstr){ NULL, -1 })
#define KBYTES_NULL ((struct kbytes){ NULL, -1 })
/* A view of a string literal: KSTR_LIT("librdkafka"). */
#define KSTR_LIT(s) ((struct kstr){ "" s, (int32_t)(sizeof(s) - 1) })

/* A view of a NUL-terminated C string; NULL gives the null string. */
static inline struct kstr kstr_c(const char *s)
{
	if (!s)
		return KSTR_NULL;
	size_t n = strlen(s);
	return (struct kstr){ s, n > INT32_MAX ? INT32_MAX : (int32_t)n };
}
static inline bool kstr_is_null(struct kstr s) { return s.len < 0; }
/* Equal content; two nulls are equal, null never equals a non-null. */
static inline bool kstr_eq(struct kstr a, struct kstr b)
{
	if (a.len != b.len)
		return false;
	return a.len <= 0 || memcmp(a.p, b.p, (size_t)a.len) == 0;
}
/* Equal to a NUL-terminated C string (false for a null view). */
static inline bool kstr_eq_c(struct kstr a, const char *s) { return a.len >= 0 && kstr_eq(a, kstr_c(s)); }
static inline bool kbytes_eq(struct kbytes a, struct kbytes b)
{
	if (a.len != b.len)
		return false;
	return a.len <= 0 || memcmp(a.p, b.p, (size_t)a.len) == 0;
}

/* Kafka strings (both encodings) may not exceed this many bytes. */
#define KIO_STRING_MAX 0x7fff

/* ---- reader ---------------------------------------------------------------------------------- */

struct kr {
	const uint8_t *p;
	size_t len;
	size_t pos;
	int err; /* 0 or -EBADMSG, sticky */
};

void kr_init(struct kr *r, const void *p, size_t len);
static inline size_t kr_remaining(const struct kr *r) { return r->err ? 0 : r->len - r->pos; }
/* Marks the reader failed (e.g. a semantic check by the caller); keeps the first error. */
void kr_fail(struct kr *r);

int8_t kr_i8(struct kr *r);
int16_t kr_i16(struct kr *r);
int32_t kr_i32(struct kr *r);
int64_t kr_i64(struct kr *r);
uint16_t kr_u16(struct kr *r);
uint32_t kr_u32(struct kr *r);
double kr_f64(struct kr *r);
/* Any non-zero byte is true (as Kafka reads it). */
bool kr_bool(struct kr *r);
/* Unsigned LEB128, at most 5 bytes and 32 bits. */
uint32_t kr_uvarint(struct kr *r);
/* Zigzag int32 / int64 (at most 10 bytes). */
int32_t kr_varint(struct kr *r);
int64_t kr_varlong(struct kr *r);
uint64_t kr_uvarlong(struct kr *r);
void kr_uuid(struct kr *r, uint8_t out[16]);

/* int16 length, -1 = null; lengths < -1 are errors. */
struct kstr kr_string(struct kr *r);
/* uvarint length+1, 0 = null; longer than KIO_STRING_MAX is an error (as in Kafka). */
struct kstr kr_compact_string(struct kr *r);
/* int32 length, -1 = null. */
struct kbytes kr_bytes(struct kr *r);
/* uvarint length+1, 0 = null. */
struct kbytes kr_compact_bytes(struct kr *r);
/* n raw bytes as a view, NULL (and err) if fewer remain. */
const uint8_t *kr_raw(struct kr *r, size_t n);

/* Array lengths: -1 = null. A length larger than the remaining bytes is an error (no message can hold
 * it), so a caller may allocate len * elem_size without trusting the peer. */
int32_t kr_array_len(struct kr *r);
int32_t kr_compact_array_len(struct kr *r);
/* Same, with a tighter bound: every element needs at least min_elem_bytes (>= 1) on the wire. */
int32_t kr_array_len_min(struct kr *r, bool compact, size_t min_elem_bytes);

/* Narrows to the next n bytes: *sub reads exactly them, r skips past them. On a short input both fail
 * (sub is empty with err set). Returns 0 or -EBADMSG. */
int kr_slice(struct kr *r, size_t n, struct kr *sub);
void kr_skip(struct kr *r, size_t n);

/* Tagged fields: a section is uvarint count, then per field uvarint tag, uvarint size, size bytes.
 *   uint32_t n = kr_tags_count(r);
 *   for (uint32_t i = 0; i < n && !r->err; i++) { uint32_t tag; struct kr f; kr_tag_next(r, &tag, &f); ... }
 * Unknown tags need no action: kr_tag_next already moved r past the field. */
uint32_t kr_tags_count(struct kr *r);
void kr_tag_next(struct kr *r, uint32_t *tag, struct kr *field);
/* Reads and discards a whole tagged-fields section. */
void kr_skip_tags(struct kr *r);

/* ---- writer ---------------------------------------------------------------------------------- */

struct kw {
	uint8_t *p;
	size_t len;
	size_t cap;
	int err; /* 0, -ENOMEM or -EINVAL, sticky */
};

/* Starts empty; the first write allocates max(initial_cap, what is needed). */
void kw_init(struct kw *w, size_t initial_cap);
void kw_free(struct kw *w);
/* Empties the buffer and clears the error, keeping the allocation. */
void kw_reset(struct kw *w);
/* Hands the buffer to the caller (free() it); w is left empty. NULL if empty or failed. */
uint8_t *kw_detach(struct kw *w, size_t *len);
/* Records an error (keeps the first one) and returns it, for `return kw_fail(w, -EINVAL);`. */
int kw_fail(struct kw *w, int err);

void kw_raw(struct kw *w, const void *p, size_t n);
void kw_i8(struct kw *w, int8_t v);
void kw_i16(struct kw *w, int16_t v);
void kw_i32(struct kw *w, int32_t v);
void kw_i64(struct kw *w, int64_t v);
void kw_u16(struct kw *w, uint16_t v);
void kw_u32(struct kw *w, uint32_t v);
void kw_f64(struct kw *w, double v);
void kw_bool(struct kw *w, bool v);
void kw_uvarint(struct kw *w, uint32_t v);
void kw_varint(struct kw *w, int32_t v);
void kw_uvarlong(struct kw *w, uint64_t v);
void kw_varlong(struct kw *w, int64_t v);
void kw_uuid(struct kw *w, const uint8_t v[16]);
/* Strings: len -1 writes null. Longer than KIO_STRING_MAX sets -EINVAL. */
void kw_string(struct kw *w, struct kstr s);
void kw_compact_string(struct kw *w, struct kstr s);
void kw_bytes(struct kw *w, struct kbytes b);
void kw_compact_bytes(struct kw *w, struct kbytes b);
/* n = -1 writes a null array. */
void kw_array_len(struct kw *w, int32_t n);
void kw_compact_array_len(struct kw *w, int32_t n);

/* Reserves n zero bytes and returns their offset (to patch later, e.g. a frame length). */
size_t kw_reserve(struct kw *w, size_t n);
/* Overwrites 4 bytes at offset at (from kw_reserve) with big-endian v; no-op after an error. */
void kw_patch_i32(struct kw *w, size_t at, int32_t v);

/* Tagged fields: an empty section is one 0 byte. For a non-empty one write kw_uvarint(count), then per
 * field (ascending tags): at = kw_tag_begin(w, tag); ...write the value...; kw_tag_end(w, at);
 * which fills in the uvarint size afterwards (moving the value if the size needs more than a byte). */
static inline void kw_tags_empty(struct kw *w) { kw_uvarint(w, 0); }
size_t kw_tag_begin(struct kw *w, uint32_t tag);
void kw_tag_end(struct kw *w, size_t at);

/* Encoded sizes, for callers that precompute lengths. */
size_t kio_uvarint_size(uint32_t v);
size_t kio_uvarlong_size(uint64_t v);

#endif
