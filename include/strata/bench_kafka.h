/* bench_kafka.h -- `strata bench kafka`: Kafka-level workloads (librdkafka) against a broker,
 * with the machine's limits (fio, loopback TCP) measured in the same run. CLI only. */
#ifndef STRATA_BENCH_KAFKA_H
#define STRATA_BENCH_KAFKA_H

#include <stdio.h>

/* `strata bench kafka [options]`: argv[0] is "kafka". Returns the process exit status
 * (0 whether or not the targets are met; 1 when a workload could not run; 2 usage). */
int bench_kafka_main(int argc, char **argv);

/* Prints the options and the workloads of `strata bench kafka` to f. */
void bench_kafka_usage(FILE *f);

#endif
