/* t/crc32c.c -- CRC-32C against known vectors, hardware path against the table path. */
#include <string.h>
#include "strata/crc32c.h"
#include "tap.h"

int main(void)
{
	ok(crc32c(0, "123456789", 9) == 0xe3069283u, "check value of \"123456789\"");
	uint8_t zeros[32] = { 0 }, ones[32];
	memset(ones, 0xff, sizeof ones);
	ok(crc32c(0, zeros, 32) == 0x8a9136aau, "32 zero bytes (RFC 3720 B.4)");
	ok(crc32c(0, ones, 32) == 0x62a8ab43u, "32 0xff bytes (RFC 3720 B.4)");
	/* Long buffers take the three-stream path; incremental crc over pieces must agree. */
	static uint8_t big[3 * 4096 * 3 + 77];
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (uint8_t)(i * 2654435761u >> 13);
	uint32_t whole = crc32c(0, big, sizeof big), parts = 0;
	for (size_t off = 0; off < sizeof big; off += 1000)
		parts = crc32c(parts, big + off, sizeof big - off < 1000 ? sizeof big - off : 1000);
	ok(whole == parts, "one call equals incremental calls over %zu bytes", sizeof big);
	uint32_t bytewise = 0;
	for (size_t i = 0; i < sizeof big; i++)
		bytewise = crc32c(bytewise, big + i, 1);
	ok(whole == bytewise, "one call equals byte-at-a-time");
	tap_diag("hardware crc32c: %s", crc32c_hw_available() ? "yes" : "no");
	return tap_done();
}
