/* t/metrics.c -- the metrics registry (get-or-create, types, validation, the series bound,
 * updates from several threads at once), the Prometheus text it renders (HELP/TYPE, label
 * escaping), and the HTTP endpoint over a real socket (paths, health states, bad requests). */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "strata/metrics.h"
#include "strata/slog.h"
#include "tap.h"

#define THREADS 4
#define INCS_PER_THREAD 200000

static void test_registry(void)
{
	struct metrics *r = metrics_new(100);
	ok(r != NULL, "metrics_new");
	struct metrics_label l1[] = { { "topic", "a" }, { "partition", "0" } };
	struct metrics_label l2[] = { { "topic", "a" }, { "partition", "1" } };
	struct metrics_series *c1 = metrics_counter(r, "t_bytes_total", "Bytes.", l1, 2);
	struct metrics_series *c1b = metrics_counter(r, "t_bytes_total", "Other help.", l1, 2);
	struct metrics_series *c2 = metrics_counter(r, "t_bytes_total", "Bytes.", l2, 2);
	ok(c1 && c1 == c1b, "same name and labels: the same series");
	ok(c2 && c2 != c1, "other label values: another series");
	metrics_add(c1, 5);
	metrics_inc(c1);
	metrics_add(c1, -3);
	is_int(metrics_get(c1), 6, "counter adds; a negative delta is ignored");
	is_int(metrics_get(c2), 0, "series start at 0");
	struct metrics_series *g = metrics_gauge(r, "t_backlog_segments", "Backlog.", NULL, 0);
	metrics_set(g, 42);
	metrics_add(g, -2);
	is_int(metrics_get(g), 40, "gauge set and add (down too)");
	ok(metrics_gauge(r, "t_bytes_total", "x", l1, 2) == NULL, "a counter name as a gauge: refused");
	ok(metrics_counter(r, "9bad", "x", NULL, 0) == NULL, "name starting with a digit: refused");
	ok(metrics_counter(r, "bad-name", "x", NULL, 0) == NULL, "name with '-': refused");
	ok(metrics_counter(r, "", "x", NULL, 0) == NULL, "empty name: refused");
	ok(metrics_counter(r, "ns:sub_total", "x", NULL, 0) != NULL, "':' allowed in metric names");
	struct metrics_label bad_key[] = { { "a:b", "v" } };
	ok(metrics_counter(r, "t_x_total", "x", bad_key, 1) == NULL, "':' refused in a label name");
	struct metrics_label reserved[] = { { "__name__", "v" } };
	ok(metrics_counter(r, "t_x_total", "x", reserved, 1) == NULL, "label names with __ refused");
	struct metrics_label dup[] = { { "a", "1" }, { "a", "2" } };
	ok(metrics_counter(r, "t_x_total", "x", dup, 2) == NULL, "a label given twice: refused");
	struct metrics_label five[] = { { "a", "1" }, { "b", "1" }, { "c", "1" }, { "d", "1" },
					{ "e", "1" } };
	ok(metrics_counter(r, "t_x_total", "x", five, 5) == NULL, "more than METRICS_LABELS_MAX labels");
	ok(metrics_counter(r, "t_x_total", "x", five, 4) != NULL, "METRICS_LABELS_MAX labels");
	char longv[METRICS_LABEL_VALUE_MAX + 2];
	memset(longv, 'v', sizeof longv - 1);
	longv[sizeof longv - 1] = 0;
	struct metrics_label lv[] = { { "k", longv } };
	ok(metrics_counter(r, "t_y_total", "x", lv, 1) == NULL, "over-long label value refused");
	metrics_add(NULL, 1);
	metrics_set(NULL, 1);
	is_int(metrics_get(NULL), 0, "NULL series: updates do nothing");
	metrics_free(r);
}

static void test_bound(void)
{
	struct metrics *r = metrics_new(3);
	struct metrics_series *s[3];
	char v[8];
	int got = 0;
	for (int i = 0; i < 3; i++) {
		snprintf(v, sizeof v, "%d", i);
		struct metrics_label l[] = { { "partition", v } };
		s[i] = metrics_gauge(r, "t_g", "g", l, 1);
		got += s[i] != NULL;
	}
	is_int(got, 3, "3 series fit in a registry of 3");
	struct metrics_label l4[] = { { "partition", "3" } };
	ok(metrics_gauge(r, "t_g", "g", l4, 1) == NULL, "the 4th series is refused (no crash)");
	ok(metrics_counter(r, "t_other_total", "o", NULL, 0) == NULL, "so is a new name");
	struct metrics_label l0[] = { { "partition", "0" } };
	ok(metrics_gauge(r, "t_g", "g", l0, 1) == s[0], "an existing series is still found when full");
	for (int i = 0; i < 200; i++) /* logging is bounded too; must not crash */
		metrics_counter(r, "t_more_total", "o", NULL, 0);
	char *text;
	size_t len;
	ok(metrics_render(r, &text, &len) == 0 && strstr(text, "t_g{partition=\"2\"} 0\n") &&
	   !strstr(text, "partition=\"3\""), "rendering a full registry: the 3 series only");
	free(text);
	metrics_free(r);
}

static void test_render(void)
{
	struct metrics *r = metrics_new(10);
	struct metrics_label l[] = { { "topic", "a\\b\"c\nd" }, { "partition", "7" } };
	metrics_add(metrics_counter(r, "s_uploaded_bytes_total", "Bytes up\\loaded.\nSecond line.", l, 2),
		    1234);
	metrics_set(metrics_gauge(r, "s_backlog_segments", "Segments waiting.", NULL, 0), -5);
	struct metrics_label l2[] = { { "topic", "b" }, { "partition", "0" } };
	metrics_inc(metrics_counter(r, "s_uploaded_bytes_total", "ignored", l2, 2));
	char *text = NULL;
	size_t len = 0;
	ok(metrics_render(r, &text, &len) == 0, "render");
	const char *want =
		"# HELP s_uploaded_bytes_total Bytes up\\\\loaded.\\nSecond line.\n"
		"# TYPE s_uploaded_bytes_total counter\n"
		"s_uploaded_bytes_total{topic=\"a\\\\b\\\"c\\nd\",partition=\"7\"} 1234\n"
		"s_uploaded_bytes_total{topic=\"b\",partition=\"0\"} 1\n"
		"# HELP s_backlog_segments Segments waiting.\n"
		"# TYPE s_backlog_segments gauge\n"
		"s_backlog_segments -5\n";
	ok(text && strcmp(text, want) == 0 && len == strlen(want),
	   "exposition: HELP/TYPE once per name, escaped label values and help, values");
	if (text && strcmp(text, want) != 0)
		tap_diag("got:\n%s", text);
	free(text);
	metrics_free(r);

	r = metrics_new(1);
	ok(metrics_render(r, &text, &len) == 0 && len == 0 && text && text[0] == 0,
	   "an empty registry renders as empty text");
	free(text);
	metrics_free(r);
}

struct worker {
	struct metrics *r;
	int id;
	struct metrics_series *shared;
	int failed;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char v[8];
	snprintf(v, sizeof v, "%d", w->id);
	struct metrics_label l[] = { { "thread", v } };
	/* Everyone registers the shared series too: get-or-create must give one series. */
	w->shared = metrics_counter(w->r, "c_ops_total", "Ops.", NULL, 0);
	struct metrics_series *own = metrics_counter(w->r, "c_own_total", "Own ops.", l, 1);
	struct metrics_series *g = metrics_gauge(w->r, "c_inflight", "In flight.", NULL, 0);
	if (!w->shared || !own || !g) {
		w->failed = 1;
		return NULL;
	}
	for (int i = 0; i < INCS_PER_THREAD; i++) {
		metrics_inc(w->shared);
		metrics_add(own, 2);
		metrics_add(g, 1);
		metrics_add(g, -1);
		if (i % 50000 == 0) {
			char *text;
			size_t len;
			if (metrics_render(w->r, &text, &len) < 0)
				w->failed = 1;
			else
				free(text);
		}
	}
	return NULL;
}

static void test_threads(void)
{
	struct metrics *r = metrics_new(100);
	struct worker w[THREADS];
	pthread_t th[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .r = r, .id = i };
		if (pthread_create(&th[i], NULL, worker_main, &w[i]) != 0)
			BAIL_OUT("pthread_create");
	}
	int failed = 0, same = 1;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		failed |= w[i].failed;
		same &= w[i].shared == w[0].shared;
	}
	ok(!failed && same, "%d threads registering the same name get one series", THREADS);
	is_int(metrics_get(w[0].shared), (long long)THREADS * INCS_PER_THREAD,
	       "no increment lost from %d threads", THREADS);
	is_int(metrics_get(metrics_gauge(r, "c_inflight", "", NULL, 0)), 0, "gauge +1/-1 balanced");
	int64_t own_sum = 0;
	for (int i = 0; i < THREADS; i++) {
		char v[8];
		snprintf(v, sizeof v, "%d", i);
		struct metrics_label l[] = { { "thread", v } };
		own_sum += metrics_get(metrics_counter(r, "c_own_total", "", l, 1));
	}
	is_int(own_sum, 2LL * THREADS * INCS_PER_THREAD, "per-thread series add up");
	metrics_free(r);
}

/* --- HTTP ------------------------------------------------------------------------------------ */

/* Sends req to 127.0.0.1:port (then closes its sending side when half_close), reads the answer
 * to EOF into out. Returns the status or -1. */
static int http(int port, const char *req, size_t req_len, bool half_close, char *out,
		size_t out_len)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		close(fd);
		return -1;
	}
	size_t off = 0;
	while (off < req_len) {
		ssize_t w = send(fd, req + off, req_len - off, MSG_NOSIGNAL);
		if (w <= 0)
			break; /* the server may answer and close before taking it all */
		off += (size_t)w;
	}
	if (half_close)
		shutdown(fd, SHUT_WR);
	size_t n = 0;
	for (;;) {
		ssize_t r = recv(fd, out + n, out_len - 1 - n, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
		if (n == out_len - 1)
			break;
	}
	out[n] = 0;
	close(fd);
	int status = -1;
	if (sscanf(out, "HTTP/1.1 %d ", &status) != 1)
		return -1;
	return status;
}

static int get(int port, const char *req, char *out, size_t out_len)
{
	return http(port, req, strlen(req), false, out, out_len);
}

/* One request whose answer must have status want. */
static void get_is(int port, const char *req, int want, const char *desc)
{
	static char resp[1 << 16];
	is_int(get(port, req, resp, sizeof resp), want, "%s", desc);
}

static const char *body_of(const char *resp)
{
	const char *b = strstr(resp, "\r\n\r\n");
	return b ? b + 4 : "";
}

static void test_http(void)
{
	static char resp[1 << 16];
	char why[512];
	struct metrics *r = metrics_new(10);
	struct metrics_label l[] = { { "topic", "q\"x" } };
	metrics_add(metrics_counter(r, "h_bytes_total", "Bytes.", l, 1), 99);
	struct metrics_http *h = (struct metrics_http *)1;
	is_int(metrics_http_start(r, "none", &h, why, sizeof why), 0, "listener none: no error");
	ok(h == NULL, "listener none: nothing started");
	metrics_http_set_health(NULL, METRICS_SERVING); /* NULL is fine */
	metrics_http_stop(NULL);
	ok(metrics_http_start(r, "localhost", &h, why, sizeof why) == -EINVAL &&
	   strstr(why, "metrics.listener"),
	   "a listener without a port: -EINVAL naming the key (%s)", why);
	ok(metrics_http_start(r, "127.0.0.1:70000", &h, why, sizeof why) == -EINVAL, "port out of range");
	ok(metrics_http_start(r, "::1:80", &h, why, sizeof why) == -EINVAL, "bare IPv6 needs brackets");

	if (metrics_http_start(r, "127.0.0.1:0", &h, why, sizeof why) < 0 || !h)
		BAIL_OUT("cannot start the metrics endpoint: %s", why);
	int port = metrics_http_port(h);
	ok(port > 0, "listening on port %d", port);
	char l2[64];
	snprintf(l2, sizeof l2, "127.0.0.1:%d", port);
	struct metrics_http *h2 = NULL;
	int rc = metrics_http_start(r, l2, &h2, why, sizeof why);
	ok(rc == -EADDRINUSE && h2 == NULL && strstr(why, "metrics.listener"),
	   "the same port again: -EADDRINUSE with a clear error (%s)", why);

	int st = get(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", resp, sizeof resp);
	is_int(st, 200, "GET /metrics: 200");
	ok(strstr(resp, "\r\nContent-Type: text/plain; version=0.0.4"), "Prometheus content type");
	ok(strstr(body_of(resp), "# TYPE h_bytes_total counter\n") &&
	   strstr(body_of(resp), "h_bytes_total{topic=\"q\\\"x\"} 99\n"), "body: the registry's text");
	char cl[64];
	snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", strlen(body_of(resp)));
	ok(strstr(resp, cl) != NULL, "Content-Length matches the body");
	get_is(port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n", 200, "HTTP/1.0 with a query string: 200");
	st = get(port, "HEAD /metrics HTTP/1.1\r\n\r\n", resp, sizeof resp);
	ok(st == 200 && body_of(resp)[0] == 0, "HEAD: 200 without a body");

	get_is(port, "GET /health/ready HTTP/1.1\r\n\r\n", 503, "ready while starting: 503");
	get_is(port, "GET /health/live HTTP/1.1\r\n\r\n", 200, "live while starting: 200");
	metrics_http_set_health(h, METRICS_SERVING);
	st = get(port, "GET /health/ready HTTP/1.1\r\n\r\n", resp, sizeof resp);
	ok(st == 200 && strcmp(body_of(resp), "ok\n") == 0, "ready while serving: 200 ok");
	get_is(port, "GET /health/live HTTP/1.1\r\n\r\n", 200, "live while serving: 200");
	get_is(port, "GET /nope HTTP/1.1\r\n\r\n", 404, "unknown path: 404");
	get_is(port, "GET /metricsx HTTP/1.1\r\n\r\n", 404, "a longer path: 404");
	st = get(port, "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", resp, sizeof resp);
	ok(st == 405 && strstr(resp, "Allow: GET, HEAD\r\n"), "POST: 405 with Allow");
	get_is(port, "GARBAGE\r\n\r\n", 400, "no method/target/version: 400");
	get_is(port, "GET /metrics SPDY/3\r\n\r\n", 400, "not HTTP/1.x: 400");
	get_is(port, "GET metrics HTTP/1.1\r\n\r\n", 400, "target without /: 400");
	get_is(port, "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", 400, "malformed header: 400");
	st = http(port, "GET /metr", 9, true, resp, sizeof resp);
	is_int(st, 400, "a request that ends before its headers do: 400");
	st = http(port, "GET /m\0x HTTP/1.1\r\n\r\n", 21, false, resp, sizeof resp);
	is_int(st, 400, "NUL byte: 400");
	size_t big_len = 20000;
	char *big = malloc(big_len);
	memset(big, 'a', big_len);
	memcpy(big, "GET /", 5);
	st = http(port, big, big_len, false, resp, sizeof resp);
	is_int(st, 431, "request larger than the bound: 431");
	free(big);
	get_is(port, "GET /metrics HTTP/1.1\n\n", 200, "bare LF line ends: served");

	metrics_http_set_health(h, METRICS_STOPPING);
	get_is(port, "GET /health/ready HTTP/1.1\r\n\r\n", 503, "ready while stopping: 503");
	get_is(port, "GET /health/live HTTP/1.1\r\n\r\n", 503, "live while stopping: 503");

	/* A client that connects and sends nothing must not keep stop from returning. */
	int idle = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok(connect(idle, (struct sockaddr *)&a, sizeof a) == 0, "an idle client connects");
	usleep(50 * 1000); /* let the server thread take it (the test passes either way) */
	metrics_http_stop(h);
	ok(1, "stop returns with an idle client connected");
	close(idle);
	ok(get(port, "GET /metrics HTTP/1.1\r\n\r\n", resp, sizeof resp) == -1,
	   "stopped: nothing listens");
	metrics_free(r);
}

int main(void)
{
	slog_set_level(SLOG_ERROR); /* the refusals' warnings are expected here */
	test_registry();
	test_bound();
	test_render();
	test_threads();
	test_http();
	/* The process registry exists from the start and is usable. */
	struct metrics_series *g = metrics_gauge(metrics_global(), "strata_test_gauge", "t", NULL, 0);
	metrics_set(g, 3);
	is_int(metrics_get(g), 3, "the process registry works");
	return tap_done();
}
