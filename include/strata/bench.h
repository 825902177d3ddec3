/* bench.h -- the CLI's benchmarks (`strata bench ...`). Not part of the broker: they drive the
 * modules directly and print their own reports on stdout. */
#ifndef STRATA_BENCH_H
#define STRATA_BENCH_H

/* `strata bench log [options]`: argv[0] is "log". Returns the process exit status. */
int bench_log_main(int argc, char **argv);

#endif
