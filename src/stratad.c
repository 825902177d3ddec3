/* stratad.c -- the broker daemon's entry point (placeholder until the broker lands). */
#include <stdio.h>
#include "strata/slog.h"

int main(int argc, char **argv)
{
	(void)argc; (void)argv;
	slog_info("stratad", "not yet implemented");
	return 1;
}
