/* strata.c -- the CLI's entry point: dispatches subcommands (so far only `strata bench log`). */
#include <stdio.h>
#include <string.h>

#include "strata/bench.h"
#include "strata/bench_kafka.h"

static void usage(void)
{
	fprintf(stderr, "usage: strata bench log [options]   (strata bench log --help)\n");
	fprintf(stderr, "       strata bench kafka [options] (strata bench --help)\n");
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "bench") == 0 && strcmp(argv[2], "log") == 0)
		return bench_log_main(argc - 2, argv + 2);
	if (argc >= 3 && strcmp(argv[1], "bench") == 0 && strcmp(argv[2], "kafka") == 0)
		return bench_kafka_main(argc - 2, argv + 2);
	if (argc == 3 && strcmp(argv[1], "bench") == 0 &&
	    (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
		printf("strata bench log [options]     the log engine vs the disk (strata bench log --help)\n\n");
		bench_kafka_usage(stdout);
		return 0;
	}
	usage();
	return 2;
}
