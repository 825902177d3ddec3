/* crc32c.h -- CRC-32C (Castagnoli), as Kafka's RecordBatch uses it; SSE4.2 when the CPU has it. */
#ifndef STRATA_CRC32C_H
#define STRATA_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/* Continues crc over buf; start with crc = 0. crc32c(0, "123456789", 9) == 0xe3069283. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);
/* True when the hardware instruction is used (reported at startup). */
int crc32c_hw_available(void);

#endif
