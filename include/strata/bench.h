/* bench.h -- the CLI's benchmarks (`strata bench ...`). Not part of the broker: they drive the
 * modules directly and print their own reports on stdout. */
#ifndef STRATA_BENCH_H
#define STRATA_BENCH_H

/* `strata bench log [options]`: argv[0] is "log". Returns the process exit status. */
int bench_log_main(int argc, char **argv);

#include <stdint.h>
/* Shared by the benchmarks (src/bench_log.c): runs argv (NULL-terminated, e.g. fio) and
 * returns its stdout (malloc'd, NUL-terminated) if it exits 0, else NULL. */
char *bench_run_capture(char *const argv[]);
/* The integer after `"key" :` in a JSON text s (fio's output), or -1. */
int64_t bench_json_i64(const char *s, const char *key);

#endif
