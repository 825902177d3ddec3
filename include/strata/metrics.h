/* metrics.h -- the broker's metrics: a bounded registry of named counters and gauges (each series
 * with a few fixed labels), updated lock-free from any thread (reactor, tier upload and download
 * threads), rendered in the Prometheus text exposition format 0.0.4; and the HTTP endpoint that
 * serves them (GET /metrics, /health/ready, /health/live) on its own thread with blocking
 * sockets, never on the reactor.
 *
 * Series live until their registry is freed (the process registry: until exit), so a pointer
 * from metrics_counter()/metrics_gauge() stays valid for good. Registration takes a mutex; the
 * update functions are single atomic operations. Every update function accepts NULL (a series
 * that could not be registered) and then does nothing. */
#ifndef STRATA_METRICS_H
#define STRATA_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_LABELS_MAX 4          /* labels per series */
#define METRICS_SERIES_MAX 4096       /* series in the process registry */
#define METRICS_NAME_MAX 128          /* metric and label names */
#define METRICS_LABEL_VALUE_MAX 256   /* label values, bytes */
#define METRICS_HELP_MAX 512

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE };

struct metrics_label {
	const char *key;                /* [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" */
	const char *value;              /* any text (escaped when rendered) */
};

struct metrics;                         /* a registry */
struct metrics_series;                  /* one metric name + label values */

/* The process registry (what stratad serves). Never freed. */
struct metrics *metrics_global(void);
/* A separate registry holding at most max_series series (tests). Returns NULL on ENOMEM. */
struct metrics *metrics_new(int max_series);
/* Frees r and every series in it: no thread may still update them. */
void metrics_free(struct metrics *r);

/* Finds or creates the series name{labels}. name: Prometheus style, unit last, counters ending
 * in _total (strata_tier_uploaded_bytes_total). The same name and labels give the same series
 * (labels compared in the order given); a name registered before with the other type, a bad
 * name or label, or a full registry give NULL and a log line (never a crash). help: one line
 * shown as # HELP (the first registration's is kept). */
struct metrics_series *metrics_counter(struct metrics *r, const char *name, const char *help,
				       const struct metrics_label *labels, int n_labels);
struct metrics_series *metrics_gauge(struct metrics *r, const char *name, const char *help,
				     const struct metrics_label *labels, int n_labels);

/* Counters: delta < 0 is ignored (a counter never goes down). Gauges: any delta. */
void metrics_add(struct metrics_series *m, int64_t delta);
static inline void metrics_inc(struct metrics_series *m) { metrics_add(m, 1); }
/* Gauges only (a counter given here is an invariant violation). */
void metrics_set(struct metrics_series *m, int64_t value);
int64_t metrics_get(const struct metrics_series *m);   /* 0 for NULL */

/* Every series of r as Prometheus text 0.0.4 (# HELP and # TYPE once per name, in registration
 * order). *out is malloc'd (NUL-terminated, *len without the NUL); the caller frees it.
 * Returns 0 or -ENOMEM. */
int metrics_render(struct metrics *r, char **out, size_t *len);

/* --- HTTP endpoint ---------------------------------------------------------------------------- */

/* What the health checks answer. /health/ready: 200 only while SERVING. /health/live: 200 while
 * STARTING or SERVING (a long log recovery at start must not get the process killed by a
 * liveness probe), 503 once STOPPING. */
enum metrics_health { METRICS_STARTING, METRICS_SERVING, METRICS_STOPPING };

struct metrics_http;

/* Listens on listener ("host:port", "[v6addr]:port"; port 0 = any free port; "none" or NULL:
 * *out = NULL and 0) and starts the serving thread, in state STARTING. Returns 0 or -errno with
 * why naming the setting (bad address, port in use). */
/* Checks a metrics.listener value without binding it ("none" and NULL are fine): 0, or
 * -EINVAL with the reason in why. stratad --check uses it. */
int metrics_listener_check(const char *listener, char *why, size_t why_len);
int metrics_http_start(struct metrics *r, const char *listener, struct metrics_http **out,
		       char *why, size_t why_len);
/* Any thread; NULL does nothing. */
void metrics_http_set_health(struct metrics_http *h, enum metrics_health state);
/* The port actually bound (for port 0), or -1 for NULL. */
int metrics_http_port(const struct metrics_http *h);
/* Stops the thread (a request in progress is cut short) and closes the listener. NULL: nothing. */
void metrics_http_stop(struct metrics_http *h);

#endif
