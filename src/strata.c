/* strata.c -- the CLI's entry point (placeholder). */
#include <stdio.h>
int main(void) { fprintf(stderr, "strata: not yet implemented\n"); return 1; }
