/* metrics.c -- the metrics registry (metrics.h) and its HTTP endpoint. Owns the series (never
 * freed while the registry lives, so updates need no lock) and one serving thread with its
 * listening socket. Must not run on or call into the reactor: the HTTP side uses blocking
 * sockets with deadlines, one connection at a time, and reads nothing of the broker but the
 * registry and the health state. */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <netinet/in.h>

#include "strata/common.h"
#include "strata/metrics.h"
#include "strata/slog.h"

#define METRICS_REFUSED_LOGGED 10        /* registration failures logged, then silence */
#define METRICS_HTTP_BACKLOG 16
#define METRICS_HTTP_REQUEST_MAX 8192    /* request line + headers */
#define METRICS_HTTP_DEADLINE_MS 5000    /* whole request read, and each send */
#define METRICS_HTTP_DRAIN_MS 200        /* reading what a refused client still sends */
#define METRICS_HTTP_DRAIN_BYTES 65536

struct metrics_family {
	struct metrics_family *next;
	enum metrics_type type;
	char *help;                     /* escaped for # HELP */
	struct metrics_series *first, *last;
	char name[];
};

struct metrics_series {
	_Atomic int64_t value;
	enum metrics_type type;
	struct metrics_family *fam;
	struct metrics_series *next;    /* of the family, in registration order */
	char labels[];                  /* rendered: "" or {k="v",...} with values escaped */
};

struct metrics {
	pthread_mutex_t lock;
	int max_series, n_series;
	unsigned refused;
	struct metrics_family *families, *last_family;
};

static struct metrics metrics_process = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.max_series = METRICS_SERIES_MAX,
};

struct metrics *metrics_global(void) { return &metrics_process; }

struct metrics *metrics_new(int max_series)
{
	struct metrics *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	pthread_mutex_init(&r->lock, NULL);
	r->max_series = max_series < 0 ? 0 : max_series;
	return r;
}

void metrics_free(struct metrics *r)
{
	if (!r)
		return;
	ST_ASSERT(r != &metrics_process);
	while (r->families) {
		struct metrics_family *f = r->families;
		r->families = f->next;
		while (f->first) {
			struct metrics_series *s = f->first;
			f->first = s->next;
			free(s);
		}
		free(f->help);
		free(f);
	}
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* --- growable text buffer ------------------------------------------------------------------- */

struct mbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void mbuf_put(struct mbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void mbuf_str(struct mbuf *b, const char *s) { mbuf_put(b, s, strlen(s)); }

/* Prometheus escaping: label values escape \ " and newline; HELP text only \ and newline. */
static void mbuf_escaped(struct mbuf *b, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			mbuf_put(b, "\\\\", 2);
		else if (*s == '\n')
			mbuf_put(b, "\\n", 2);
		else if (*s == '"' && quote)
			mbuf_put(b, "\\\"", 2);
		else
			mbuf_put(b, s, 1);
	}
}

/* --- registration ----------------------------------------------------------------------------- */

static bool valid_name(const char *s, bool label)
{
	size_t n = strlen(s);
	if (n == 0 || n > METRICS_NAME_MAX)
		return false;
	if (label && n >= 2 && s[0] == '_' && s[1] == '_')
		return false; /* reserved for Prometheus itself */
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
			     (!label && c == ':');
		if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
			return false;
	}
	return true;
}

/* Renders labels as they will appear in the exposition (also the series' identity). Returns 0
 * or -EINVAL with why / -ENOMEM. */
static int render_labels(const struct metrics_label *labels, int n, struct mbuf *b, char *why,
			 size_t why_len)
{
	if (n < 0 || n > METRICS_LABELS_MAX || (n > 0 && !labels)) {
		snprintf(why, why_len, "%d labels (at most %d)", n, METRICS_LABELS_MAX);
		return -EINVAL;
	}
	mbuf_str(b, "");
	for (int i = 0; i < n; i++) {
		const char *k = labels[i].key, *v = labels[i].value;
		if (!k || !valid_name(k, true)) {
			snprintf(why, why_len, "bad label name '%.64s'", k ? k : "(null)");
			return -EINVAL;
		}
		if (!v || strlen(v) > METRICS_LABEL_VALUE_MAX) {
			snprintf(why, why_len, "label %s: value missing or longer than %d bytes", k,
				 METRICS_LABEL_VALUE_MAX);
			return -EINVAL;
		}
		for (int j = 0; j < i; j++)
			if (strcmp(labels[j].key, k) == 0) {
				snprintf(why, why_len, "label %s given twice", k);
				return -EINVAL;
			}
		mbuf_str(b, i == 0 ? "{" : ",");
		mbuf_str(b, k);
		mbuf_str(b, "=\"");
		mbuf_escaped(b, v, true);
		mbuf_str(b, "\"");
	}
	if (n > 0)
		mbuf_str(b, "}");
	return b->oom ? -ENOMEM : 0;
}

static struct metrics_family *family_find(struct metrics *r, const char *name)
{
	for (struct metrics_family *f = r->families; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static struct metrics_series *series_register(struct metrics *r, enum metrics_type type,
					      const char *name, const char *help,
					      const struct metrics_label *labels, int n_labels)
{
	static const char *const type_names[] = { "counter", "gauge" };
	char why[256] = "";
	struct mbuf lb = { 0 };
	struct metrics_series *s = NULL;
	if (!name || !valid_name(name, false)) {
		snprintf(why, sizeof why, "bad metric name");
		goto refused;
	}
	if (help && strlen(help) > METRICS_HELP_MAX) {
		snprintf(why, sizeof why, "help text longer than %d bytes", METRICS_HELP_MAX);
		goto refused;
	}
	if (render_labels(labels, n_labels, &lb, why, sizeof why) < 0)
		goto refused;

	pthread_mutex_lock(&r->lock);
	struct metrics_family *f = family_find(r, name);
	if (f && f->type != type) {
		pthread_mutex_unlock(&r->lock);
		snprintf(why, sizeof why, "already registered as a %s", type_names[f->type]);
		goto refused;
	}
	if (f)
		for (s = f->first; s; s = s->next)
			if (strcmp(s->labels, lb.p) == 0) {
				pthread_mutex_unlock(&r->lock);
				free(lb.p);
				return s;
			}
	if (r->n_series >= r->max_series) {
		pthread_mutex_unlock(&r->lock);
		snprintf(why, sizeof why, "the registry is full (%d series)", r->max_series);
		goto refused;
	}
	bool new_family = !f;
	if (new_family) {
		size_t nl = strlen(name);
		struct mbuf hb = { 0 };
		mbuf_escaped(&hb, help ? help : "", false);
		mbuf_str(&hb, "");
		f = calloc(1, sizeof *f + nl + 1);
		if (!f || hb.oom) {
			pthread_mutex_unlock(&r->lock);
			free(f);
			free(hb.p);
			snprintf(why, sizeof why, "out of memory");
			goto refused;
		}
		memcpy(f->name, name, nl + 1);
		f->type = type;
		f->help = hb.p;
	}
	s = calloc(1, sizeof *s + lb.len + 1);
	if (!s) {
		pthread_mutex_unlock(&r->lock);
		if (new_family) {
			free(f->help);
			free(f);
		}
		snprintf(why, sizeof why, "out of memory");
		goto refused;
	}
	memcpy(s->labels, lb.p, lb.len + 1);
	atomic_init(&s->value, 0);
	s->type = type;
	s->fam = f;
	if (new_family) {
		if (r->last_family)
			r->last_family->next = f;
		else
			r->families = f;
		r->last_family = f;
	}
	if (f->last)
		f->last->next = s;
	else
		f->first = s;
	f->last = s;
	r->n_series++;
	pthread_mutex_unlock(&r->lock);
	free(lb.p);
	return s;

refused:
	pthread_mutex_lock(&r->lock);
	bool log = r->refused++ < METRICS_REFUSED_LOGGED;
	pthread_mutex_unlock(&r->lock);
	if (log)
		slog_warn("metrics", "metric %.128s%.200s not registered: %s", name ? name : "(null)",
			  lb.p && !lb.oom ? lb.p : "", why);
	free(lb.p);
	return NULL;
}

struct metrics_series *metrics_counter(struct metrics *r, const char *name, const char *help,
				       const struct metrics_label *labels, int n_labels)
{
	return series_register(r, METRICS_COUNTER, name, help, labels, n_labels);
}

struct metrics_series *metrics_gauge(struct metrics *r, const char *name, const char *help,
				     const struct metrics_label *labels, int n_labels)
{
	return series_register(r, METRICS_GAUGE, name, help, labels, n_labels);
}

/* --- updates (any thread, lock-free) ---------------------------------------------------------- */

void metrics_add(struct metrics_series *m, int64_t delta)
{
	if (!m || (m->type == METRICS_COUNTER && delta < 0))
		return;
	atomic_fetch_add_explicit(&m->value, delta, memory_order_relaxed);
}

void metrics_set(struct metrics_series *m, int64_t value)
{
	if (!m)
		return;
	ST_ASSERT(m->type == METRICS_GAUGE);
	atomic_store_explicit(&m->value, value, memory_order_relaxed);
}

int64_t metrics_get(const struct metrics_series *m)
{
	return m ? atomic_load_explicit(&m->value, memory_order_relaxed) : 0;
}

/* --- exposition ------------------------------------------------------------------------------- */

int metrics_render(struct metrics *r, char **out, size_t *len)
{
	static const char *const type_names[] = { "counter", "gauge" };
	struct mbuf b = { 0 };
	mbuf_str(&b, "");
	pthread_mutex_lock(&r->lock);
	for (struct metrics_family *f = r->families; f; f = f->next) {
		mbuf_str(&b, "# HELP ");
		mbuf_str(&b, f->name);
		mbuf_str(&b, " ");
		mbuf_str(&b, f->help);
		mbuf_str(&b, "\n# TYPE ");
		mbuf_str(&b, f->name);
		mbuf_str(&b, " ");
		mbuf_str(&b, type_names[f->type]);
		mbuf_str(&b, "\n");
		for (struct metrics_series *s = f->first; s; s = s->next) {
			char v[32];
			snprintf(v, sizeof v, " %" PRId64 "\n", metrics_get(s));
			mbuf_str(&b, f->name);
			mbuf_str(&b, s->labels);
			mbuf_str(&b, v);
		}
	}
	pthread_mutex_unlock(&r->lock);
	if (b.oom) {
		free(b.p);
		return -ENOMEM;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

/* --- HTTP endpoint ---------------------------------------------------------------------------- */

struct metrics_http {
	struct metrics *reg;
	int lfd, stop_fd, port;
	_Atomic int health;
	pthread_t thread;
	char listener[300];
};

/* "host:port" or "[v6]:port" into host and port text. */
static int parse_listener(const char *l, char *host, size_t host_len, char *port, size_t port_len)
{
	const char *colon = strrchr(l, ':');
	if (!colon || colon == l)
		return -EINVAL;
	const char *h = l;
	size_t hl = (size_t)(colon - l);
	if (h[0] == '[') {
		if (hl < 3 || h[hl - 1] != ']')
			return -EINVAL;
		h++;
		hl -= 2;
	} else if (memchr(h, ':', hl)) {
		return -EINVAL; /* a bare IPv6 address needs brackets */
	}
	const char *p = colon + 1;
	size_t pl = strlen(p);
	if (hl >= host_len || pl == 0 || pl > 5 || pl >= port_len || strspn(p, "0123456789") != pl ||
	    atoi(p) > 65535)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = 0;
	memcpy(port, p, pl + 1);
	return 0;
}

int metrics_listener_check(const char *listener, char *why, size_t why_len)
{
	char host[256], port[8];
	if (!listener || strcmp(listener, "none") == 0)
		return 0;
	if (parse_listener(listener, host, sizeof host, port, sizeof port) < 0) {
		snprintf(why, why_len, "metrics.listener=%.200s: expected host:port, [ipv6]:port or none",
			 listener);
		return -EINVAL;
	}
	return 0;
}

static int open_listener(const char *l, int *port_out, char *why, size_t why_len)
{
	char host[256], port[8];
	if (parse_listener(l, host, sizeof host, port, sizeof port) < 0) {
		snprintf(why, why_len, "metrics.listener=%.200s: expected host:port, [ipv6]:port or none",
			 l);
		return -EINVAL;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *ai = NULL;
	int g = getaddrinfo(host, port, &hints, &ai);
	if (g != 0) {
		snprintf(why, why_len, "metrics.listener=%.200s: %s", l, gai_strerror(g));
		return -EINVAL;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, rc = 0;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, METRICS_HTTP_BACKLOG) < 0) {
		rc = -errno;
		snprintf(why, why_len, "metrics.listener=%.200s: cannot listen: %s", l, strerror(-rc));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return rc;
	}
	freeaddrinfo(ai);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	*port_out = -1;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			*port_out = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			*port_out = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	return fd;
}

/* Waits for fd to get events, the stop eventfd, or the deadline. 1: ready, 0: timed out or
 * stopping, -errno. */
static int wait_fd(struct metrics_http *h, int fd, short events, int64_t deadline_ms)
{
	for (;;) {
		int64_t left = deadline_ms - st_mono_ms();
		if (left <= 0)
			return 0;
		struct pollfd p[2] = { { .fd = fd, .events = events },
				       { .fd = h->stop_fd, .events = POLLIN } };
		int n = poll(p, 2, (int)ST_MIN(left, 1000));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (p[1].revents)
			return 0;
		if (p[0].revents)
			return 1;
	}
}

static void send_all(struct metrics_http *h, int fd, const char *p, size_t n)
{
	int64_t deadline = st_mono_ms() + METRICS_HTTP_DEADLINE_MS;
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wait_fd(h, fd, POLLOUT, deadline) == 1)
				continue;
			slog_debug("metrics", "http: client too slow to read the answer, dropped");
			return;
		}
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void respond(struct metrics_http *h, int fd, int status, const char *reason,
		    const char *content_type, const char *extra_headers, const char *body,
		    size_t body_len, bool head_only)
{
	char hdr[512];
	int n = snprintf(hdr, sizeof hdr,
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
			 "Connection: close\r\n\r\n",
			 status, reason, content_type, body_len, extra_headers ? extra_headers : "");
	ST_ASSERT(n > 0 && (size_t)n < sizeof hdr);
	send_all(h, fd, hdr, (size_t)n);
	if (!head_only)
		send_all(h, fd, body, body_len);
}

static void respond_text(struct metrics_http *h, int fd, int status, const char *reason,
			 const char *body, bool head_only)
{
	respond(h, fd, status, reason, "text/plain; charset=utf-8", NULL, body, strlen(body),
		head_only);
}

/* The request line and headers in req (NUL-terminated, headers complete): answers it. */
static void serve_request(struct metrics_http *h, int fd, char *req)
{
	char *eol = strpbrk(req, "\r\n");
	ST_ASSERT(eol);
	*eol = 0;
	/* Header lines: "name: value", no obsolete line folding, no control characters. */
	for (char *line = eol + 1; *line;) {
		if (*line == '\r' || *line == '\n') {
			line++;
			continue;
		}
		size_t ll = strcspn(line, "\r\n");
		char *colon = memchr(line, ':', ll);
		if (!colon || colon == line || *line == ' ' || *line == '\t') {
			respond_text(h, fd, 400, "Bad Request", "bad request: malformed header\n", false);
			return;
		}
		line += ll;
	}
	char method[16], target[2048], version[16];
	const char *sp1 = strchr(req, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	size_t ml = sp1 ? (size_t)(sp1 - req) : 0, tl = sp2 ? (size_t)(sp2 - sp1 - 1) : 0;
	if (!sp2 || ml == 0 || ml >= sizeof method || tl == 0 || tl >= sizeof target ||
	    strlen(sp2 + 1) >= sizeof version || strchr(sp2 + 1, ' ')) {
		respond_text(h, fd, 400, "Bad Request", "bad request: malformed request line\n", false);
		return;
	}
	memcpy(method, req, ml);
	method[ml] = 0;
	memcpy(target, sp1 + 1, tl);
	target[tl] = 0;
	snprintf(version, sizeof version, "%s", sp2 + 1);
	bool bad = strncmp(version, "HTTP/1.", 7) != 0 || strlen(version) != 8 ||
		   version[7] < '0' || version[7] > '9' || target[0] != '/';
	for (const char *c = method; *c && !bad; c++)
		bad = *c < 'A' || *c > 'Z';
	for (const unsigned char *c = (const unsigned char *)target; *c && !bad; c++)
		bad = *c <= ' ' || *c == 0x7f;
	if (bad) {
		respond_text(h, fd, 400, "Bad Request", "bad request: malformed request line\n", false);
		return;
	}
	bool head = strcmp(method, "HEAD") == 0;
	if (!head && strcmp(method, "GET") != 0) {
		respond(h, fd, 405, "Method Not Allowed", "text/plain; charset=utf-8",
			"Allow: GET, HEAD\r\n", "method not allowed\n", strlen("method not allowed\n"),
			false);
		return;
	}
	target[strcspn(target, "?#")] = 0; /* the query string changes nothing here */
	int health = atomic_load(&h->health);
	if (strcmp(target, "/metrics") == 0) {
		char *text = NULL;
		size_t len = 0;
		if (metrics_render(h->reg, &text, &len) < 0) {
			respond_text(h, fd, 500, "Internal Server Error", "out of memory\n", head);
			return;
		}
		respond(h, fd, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", NULL, text, len,
			head);
		free(text);
	} else if (strcmp(target, "/health/ready") == 0) {
		if (health == METRICS_SERVING)
			respond_text(h, fd, 200, "OK", "ok\n", head);
		else
			respond_text(h, fd, 503, "Service Unavailable",
				     health == METRICS_STARTING ? "starting\n" : "stopping\n", head);
	} else if (strcmp(target, "/health/live") == 0) {
		if (health != METRICS_STOPPING)
			respond_text(h, fd, 200, "OK", "ok\n", head);
		else
			respond_text(h, fd, 503, "Service Unavailable", "stopping\n", head);
	} else {
		respond_text(h, fd, 404, "Not Found", "not found\n", head);
	}
}

/* After an answer to a request we did not read to its end: read what the client still sends
 * (bounded) so closing does not reset the connection before it has read the answer. */
static void drain(struct metrics_http *h, int fd)
{
	shutdown(fd, SHUT_WR);
	int64_t deadline = st_mono_ms() + METRICS_HTTP_DRAIN_MS;
	char buf[4096];
	size_t total = 0;
	while (total < METRICS_HTTP_DRAIN_BYTES && wait_fd(h, fd, POLLIN, deadline) == 1) {
		ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0)
			return;
		total += (size_t)r;
	}
}

static void serve_conn(struct metrics_http *h, int fd)
{
	/* Belt and braces: a blocking call that slips past poll still ends. */
	struct timeval tv = { .tv_sec = METRICS_HTTP_DEADLINE_MS / 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	char req[METRICS_HTTP_REQUEST_MAX + 1];
	size_t len = 0;
	int64_t deadline = st_mono_ms() + METRICS_HTTP_DEADLINE_MS;
	for (;;) {
		char *end = NULL;
		req[len] = 0;
		if (len && (end = strstr(req, "\r\n\r\n"))) {
			end[2] = 0;
			serve_request(h, fd, req);
			drain(h, fd);
			return;
		}
		if (len && (end = strstr(req, "\n\n"))) { /* bare-LF clients (printf | nc) */
			end[1] = 0;
			serve_request(h, fd, req);
			drain(h, fd);
			return;
		}
		if (memchr(req, 0, len)) {
			respond_text(h, fd, 400, "Bad Request", "bad request: NUL byte\n", false);
			drain(h, fd);
			return;
		}
		if (len == METRICS_HTTP_REQUEST_MAX) {
			respond_text(h, fd, 431, "Request Header Fields Too Large",
				     "request too large\n", false);
			drain(h, fd);
			return;
		}
		int w = wait_fd(h, fd, POLLIN, deadline);
		if (w <= 0)
			return; /* too slow, or shutting down: just close */
		ssize_t r = recv(fd, req + len, METRICS_HTTP_REQUEST_MAX - len, MSG_DONTWAIT);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r < 0)
			return;
		if (r == 0) {
			if (len) /* a request that ended before its headers did */
				respond_text(h, fd, 400, "Bad Request", "bad request: incomplete\n", false);
			return;
		}
		len += (size_t)r;
	}
}

static void *http_thread(void *arg)
{
	struct metrics_http *h = arg;
	for (;;) {
		struct pollfd p[2] = { { .fd = h->lfd, .events = POLLIN },
				       { .fd = h->stop_fd, .events = POLLIN } };
		int n = poll(p, 2, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			slog_error("metrics", "http: poll failed: %s; %s no longer served", strerror(errno),
				   h->listener);
			return NULL;
		}
		if (p[1].revents)
			return NULL;
		int fd = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				slog_warn("metrics", "http: accept: %s", strerror(errno));
				usleep(100 * 1000); /* the listener stays readable: do not spin */
			}
			continue;
		}
		serve_conn(h, fd);
		close(fd);
	}
}

int metrics_http_start(struct metrics *r, const char *listener, struct metrics_http **out,
		       char *why, size_t why_len)
{
	*out = NULL;
	if (!listener || strcmp(listener, "none") == 0)
		return 0;
	struct metrics_http *h = calloc(1, sizeof *h);
	if (!h) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	h->reg = r;
	h->stop_fd = -1;
	atomic_init(&h->health, METRICS_STARTING);
	snprintf(h->listener, sizeof h->listener, "%s", listener);
	int rc;
	h->lfd = open_listener(listener, &h->port, why, why_len);
	if (h->lfd < 0) {
		rc = h->lfd;
		free(h);
		return rc;
	}
	h->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (h->stop_fd < 0) {
		rc = -errno;
		snprintf(why, why_len, "metrics: eventfd: %s", strerror(-rc));
		goto fail;
	}
	if ((rc = pthread_create(&h->thread, NULL, http_thread, h)) != 0) {
		rc = -rc;
		snprintf(why, why_len, "metrics: cannot start the http thread: %s", strerror(-rc));
		goto fail;
	}
	*out = h;
	return 0;
fail:
	close(h->lfd);
	if (h->stop_fd >= 0)
		close(h->stop_fd);
	free(h);
	return rc;
}

void metrics_http_set_health(struct metrics_http *h, enum metrics_health state)
{
	if (h)
		atomic_store(&h->health, (int)state);
}

int metrics_http_port(const struct metrics_http *h) { return h ? h->port : -1; }

void metrics_http_stop(struct metrics_http *h)
{
	if (!h)
		return;
	uint64_t one = 1;
	ssize_t w = write(h->stop_fd, &one, sizeof one);
	ST_ASSERT(w == (ssize_t)sizeof one);
	pthread_join(h->thread, NULL);
	close(h->lfd);
	close(h->stop_fd);
	free(h);
}
