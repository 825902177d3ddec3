/* common.h -- tiny shared helpers: asserts, array sizes, big-endian loads/stores, time.
 * Owns nothing stateful; every module may include it, it includes no other Strata header. */
#ifndef STRATA_COMMON_H
#define STRATA_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#define ST_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define ST_MIN(a, b) ((a) < (b) ? (a) : (b))
#define ST_MAX(a, b) ((a) > (b) ? (a) : (b))
#define ST_CONTAINER_OF(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define ST_LIKELY(x) __builtin_expect(!!(x), 1)
#define ST_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Invariant checks stay on in release builds (TIGER_STYLE): a broken invariant must stop the
 * process before it can write bad data, not be compiled away. */
void st_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define ST_ASSERT(x) do { if (ST_UNLIKELY(!(x))) st_assert_fail(#x, __FILE__, __LINE__); } while (0)

static inline uint16_t st_be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t st_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t st_be64(const uint8_t *p)
{
	return ((uint64_t)st_be32(p) << 32) | st_be32(p + 4);
}
static inline void st_put_be16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void st_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void st_put_be64(uint8_t *p, uint64_t v)
{
	st_put_be32(p, (uint32_t)(v >> 32)); st_put_be32(p + 4, (uint32_t)v);
}

/* Wall clock in milliseconds since the epoch (record timestamps, retention). */
static inline int64_t st_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
/* Monotonic clock in nanoseconds (timeouts, latency). */
static inline int64_t st_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
static inline int64_t st_mono_ms(void) { return st_mono_ns() / 1000000; }

#endif
