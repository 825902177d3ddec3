/* crc32c.c -- CRC-32C with the SSE4.2 crc32 instruction (three interleaved streams for long
 * buffers, so the 3-cycle latency is hidden) and a table fallback for other CPUs. */
#include <pthread.h>
#include "strata/common.h"
#include "strata/crc32c.h"

#define CRC32C_POLY 0x82f63b78u

static uint32_t crc32c_table[8][256];
static int crc32c_hw;
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		crc32c_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = crc32c_table[0][i];
		for (int t = 1; t < 8; t++) {
			c = crc32c_table[0][c & 0xff] ^ (c >> 8);
			crc32c_table[t][i] = c;
		}
	}
#if defined(__x86_64__)
	__builtin_cpu_init();
	crc32c_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8); /* little-endian hosts only, as everything Strata targets */
		v ^= crc;
		crc = crc32c_table[7][v & 0xff] ^ crc32c_table[6][(v >> 8) & 0xff] ^
		      crc32c_table[5][(v >> 16) & 0xff] ^ crc32c_table[4][(v >> 24) & 0xff] ^
		      crc32c_table[3][(v >> 32) & 0xff] ^ crc32c_table[2][(v >> 40) & 0xff] ^
		      crc32c_table[1][(v >> 48) & 0xff] ^ crc32c_table[0][v >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#if defined(__x86_64__)
/* Shifts a crc over len zero bytes: multiply by x^(8*len) mod P, done bit by bit on the
 * table-free GF(2) representation. Used only to combine the three streams, once per block. */
static uint32_t crc32c_gf2_mul(uint32_t a, uint32_t b)
{
	uint32_t r = 0;
	for (int i = 0; i < 32; i++) {
		if (b & 0x80000000u)
			r ^= a;
		b <<= 1;
		a = (a & 1) ? (a >> 1) ^ CRC32C_POLY : a >> 1;
	}
	return r;
}
static uint32_t crc32c_xpow8n(size_t n)
{
	/* x^(8n) mod P in reflected form; x^0 is 0x80000000. */
	uint32_t result = 0x80000000u, base = 0x00800000u; /* x^8 */
	while (n) {
		if (n & 1)
			result = crc32c_gf2_mul(result, base);
		base = crc32c_gf2_mul(base, base);
		n >>= 1;
	}
	return result;
}

#define CRC32C_BLOCK 4096u
static uint32_t crc32c_block_shift;

__attribute__((target("sse4.2")))
static uint32_t crc32c_hw_run(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c0 = crc;
	while (len >= 3 * CRC32C_BLOCK) {
		uint64_t c1 = 0, c2 = 0;
		const uint8_t *p1 = p + CRC32C_BLOCK, *p2 = p + 2 * CRC32C_BLOCK;
		for (size_t i = 0; i < CRC32C_BLOCK; i += 8) {
			uint64_t v0, v1, v2;
			memcpy(&v0, p + i, 8);
			memcpy(&v1, p1 + i, 8);
			memcpy(&v2, p2 + i, 8);
			c0 = __builtin_ia32_crc32di(c0, v0);
			c1 = __builtin_ia32_crc32di(c1, v1);
			c2 = __builtin_ia32_crc32di(c2, v2);
		}
		c0 = crc32c_gf2_mul((uint32_t)c0, crc32c_block_shift) ^ c1;
		c0 = crc32c_gf2_mul((uint32_t)c0, crc32c_block_shift) ^ c2;
		p += 3 * CRC32C_BLOCK;
		len -= 3 * CRC32C_BLOCK;
	}
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c0 = __builtin_ia32_crc32di(c0, v);
		p += 8;
		len -= 8;
	}
	uint32_t c = (uint32_t)c0;
	while (len--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}
#endif

static void crc32c_init_all(void)
{
	crc32c_init();
#if defined(__x86_64__)
	crc32c_block_shift = crc32c_xpow8n(CRC32C_BLOCK);
#endif
}

int crc32c_hw_available(void)
{
	pthread_once(&crc32c_once, crc32c_init_all);
	return crc32c_hw;
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc32c_once, crc32c_init_all);
	crc = ~crc;
#if defined(__x86_64__)
	if (crc32c_hw)
		return ~crc32c_hw_run(crc, buf, len);
#endif
	return ~crc32c_sw(crc, buf, len);
}
