/* slog.c -- diagnostic log lines to stderr: "<utc time> <LEVEL> <module>: <message>".
 * Each line is written with one write(2) so lines from several threads never interleave. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "strata/common.h"
#include "strata/slog.h"

static enum slog_level slog_level_min = SLOG_INFO;
static const char *const slog_names[] = { "DEBUG", "INFO", "WARN", "ERROR" };

void slog_set_level(enum slog_level level) { slog_level_min = level; }
enum slog_level slog_get_level(void) { return slog_level_min; }

int slog_parse_level(const char *s, enum slog_level *out)
{
	static const char *const lower[] = { "debug", "info", "warn", "error" };
	for (size_t i = 0; i < ST_ARRAY_LEN(lower); i++) {
		if (strcasecmp(s, lower[i]) == 0) {
			*out = (enum slog_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void slog_write(enum slog_level level, const char *module, const char *fmt, ...)
{
	if (level < slog_level_min)
		return;
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, slog_names[level], module);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + len, sizeof line - len, fmt, ap);
	va_end(ap);
	if (m > 0)
		len += ((size_t)m < sizeof line - len) ? (size_t)m : sizeof line - len - 1;
	if (len >= sizeof line - 1)
		len = sizeof line - 2;
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

void st_assert_fail(const char *expr, const char *file, int line)
{
	slog_write(SLOG_ERROR, "assert", "invariant failed: %s at %s:%d", expr, file, line);
	abort();
}
