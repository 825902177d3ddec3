/* strata.c -- the CLI's entry point: dispatches subcommands (so far only `strata bench log`). */
#include <stdio.h>
#include <string.h>

#include "strata/bench.h"

static void usage(void)
{
	fprintf(stderr, "usage: strata bench log [options]   (strata bench log --help)\n");
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "bench") == 0 && strcmp(argv[2], "log") == 0)
		return bench_log_main(argc - 2, argv + 2);
	usage();
	return 2;
}
