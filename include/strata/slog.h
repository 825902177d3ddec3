/* slog.h -- the broker's diagnostic log: one line per event on stderr, with level and module.
 * Not the Kafka log (that is log.h); this module never touches partition data. */
#ifndef STRATA_SLOG_H
#define STRATA_SLOG_H

enum slog_level { SLOG_DEBUG = 0, SLOG_INFO, SLOG_WARN, SLOG_ERROR };

void slog_set_level(enum slog_level level);
enum slog_level slog_get_level(void);
/* Parses "debug", "info", "warn", "error"; returns 0 or -EINVAL. */
int slog_parse_level(const char *s, enum slog_level *out);
void slog_write(enum slog_level level, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Usage: slog_info("log", "topic=%s partition=%d rolled at offset=%lld", ...) */
#define slog_debug(mod, ...) slog_write(SLOG_DEBUG, mod, __VA_ARGS__)
#define slog_info(mod, ...) slog_write(SLOG_INFO, mod, __VA_ARGS__)
#define slog_warn(mod, ...) slog_write(SLOG_WARN, mod, __VA_ARGS__)
#define slog_error(mod, ...) slog_write(SLOG_ERROR, mod, __VA_ARGS__)

#endif
