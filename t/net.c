/* t/net.c -- the chain and the network reactor end to end. The server runs on this process's
 * main thread (uring_run_once); clients are plain sockets in other threads. The handler echoes:
 * for each frame a header (memory with a free callback), the payload (copy), a file range of a
 * temp file (splice or copy), a reserved trailer. Each suite runs with the buffer-ring recv path
 * and with the plain recv fallback. `t/net.t bench [MiB]` measures splice vs copy throughput;
 * `t/net.t bench-rx [MiB]` the receive path (buffer ring or staging copy vs direct recv). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "strata/chain.h"
#include "strata/common.h"
#include "strata/net.h"
#include "strata/slog.h"
#include "strata/uring.h"
#include "tap.h"

#define FILE_BYTES (8u << 20)
#define REQ_HDR 16            /* cmd, delay, 0, 0, foff, flen, salt */
#define RESP_HDR 16           /* seq (8), payload len, file len */
#define TRAILER_MAGIC 0x454e4421u

static int g_file_fd = -1;

static uint8_t fpat(uint64_t i) { return (uint8_t)(i * 131 + (i >> 11)); }
static uint8_t ppat(uint32_t salt, size_t i) { return (uint8_t)(salt * 31 + i * 7 + (i >> 8)); }

/* ------------------------------------------------------------------------------------------ */
/* chain unit tests                                                                            */

static int rel_log[16];
static int rel_n;
static void note_release(void *ctx)
{
	if (rel_n < (int)ST_ARRAY_LEN(rel_log))
		rel_log[rel_n] = (int)(intptr_t)ctx;
	rel_n++;
}

static void test_chain(int file_fd)
{
	struct chain c;
	chain_init(&c);
	for (int i = 0; i < 100; i++) {
		uint8_t b = (uint8_t)i;
		if (chain_append_copy(&c, &b, 1) < 0)
			BAIL_OUT("oom");
	}
	is_int(c.links, 1, "chain: 100 one-byte copies pack into one link");
	is_int(chain_len(&c), 100, "chain: length counts copies");
	uint8_t *res = chain_reserve(&c, 4);
	ok(res != NULL, "chain: reserve");
	static const char big[5000] = "x";
	chain_append_copy(&c, big, sizeof big);
	st_put_be32(res, 0xdeadbeef); /* written after more appends: the pointer did not move */
	rel_n = 0;
	chain_append_mem(&c, "hello", 5, note_release, (void *)1);
	chain_append_file(&c, file_fd, 1000, 3000, note_release, (void *)2);
	chain_append_mem(&c, "!", 1, note_release, (void *)3);
	chain_append_mem(&c, "", 0, note_release, (void *)4);
	is_int(rel_n, 1, "chain: zero-length append releases at once");
	is_int(chain_len(&c), 100 + 4 + 5000 + 5 + 3000 + 1, "chain: total length");
	size_t total = chain_len(&c);
	uint8_t *flat = malloc(total);
	ssize_t got = chain_flatten(&c, flat, total);
	int good = got == (ssize_t)total && flat[0] == 0 && flat[99] == 99 &&
		   st_be32(flat + 100) == 0xdeadbeef && flat[104] == 'x' &&
		   memcmp(flat + 5104, "hello", 5) == 0 && flat[total - 1] == '!';
	for (size_t i = 0; i < 3000 && good; i++)
		good = flat[5109 + i] == fpat(1000 + i);
	ok(good, "chain: flatten yields memory, copies, reserved bytes and the file range in order");
	ok(chain_flatten(&c, flat, total - 1) == -ENOSPC, "chain: flatten refuses a short buffer");
	chain_consume(&c, 5104 + 2);
	is_int(rel_n, 1, "chain: partial consume of a link releases nothing");
	chain_consume(&c, 3);
	is_int(rel_n, 2, "chain: consuming a memory link releases it");
	is_int(rel_log[1], 1, "chain: the right one");
	chain_consume(&c, 2999);
	is_int(rel_n, 2, "chain: file link partly consumed is kept");
	got = chain_flatten(&c, flat, total);
	ok(got == 2 && flat[0] == fpat(3999) && flat[1] == '!', "chain: flatten after consume");
	struct chain d;
	chain_init(&d);
	chain_append_mem(&d, "z", 1, note_release, (void *)5);
	chain_concat(&c, &d);
	ok(chain_empty(&d) && chain_len(&c) == 3 && c.links == 3, "chain: concat moves links");
	chain_release(&c);
	ok(rel_n == 5 && rel_log[2] == 2 && rel_log[3] == 3 && rel_log[4] == 5 && chain_empty(&c),
	   "chain: release runs the remaining releases in order");
	free(flat);
}

/* ------------------------------------------------------------------------------------------ */
/* the server side: an echo handler                                                            */

struct th {
	struct uring *ur;
	int file_fd;
	long file_acq, file_rel, mem_acq, mem_rel;
	long delayed_pending;
	long out_of_order;
	long bad_user;
	int opens, closes;
	long requests;
	char last_peer[64];
};
static struct th th;

#define CONN_MAGIC 0x636f6e6eu
struct conn_state {
	uint32_t magic;
	uint64_t max_done_seq;
	bool any_done;
};

struct delayed {
	struct uring_timer t;
	struct net_req *req;
};

static void file_released(void *ctx) { ((struct th *)ctx)->file_rel++; }
static void mem_released(void *ctx)
{
	th.mem_rel++;
	free(ctx);
}

static void echo_respond(struct net_req *r)
{
	struct chain ch;
	chain_init(&ch);
	if (r->len < REQ_HDR) { /* zero-size and short frames: an empty response */
		net_respond(r, &ch);
		return;
	}
	uint32_t foff = st_be32(r->data + 4), flen = st_be32(r->data + 8);
	uint8_t *hdr = malloc(RESP_HDR);
	ST_ASSERT(hdr);
	st_put_be64(hdr, r->seq);
	st_put_be32(hdr + 8, (uint32_t)r->len);
	st_put_be32(hdr + 12, flen);
	th.mem_acq++;
	int rc = chain_append_mem(&ch, hdr, RESP_HDR, mem_released, hdr);
	rc |= chain_append_copy(&ch, r->data, r->len);
	if (flen) {
		th.file_acq++;
		rc |= chain_append_file(&ch, th.file_fd, foff, flen, file_released, &th);
	}
	uint8_t *tr = chain_reserve(&ch, 4);
	ST_ASSERT(rc == 0 && tr);
	st_put_be32(tr, TRAILER_MAGIC);
	/* Completion order, to prove the test really completes out of order. */
	if (!net_conn_closed(r->conn)) {
		struct conn_state *cs = net_conn_user(r->conn);
		if (cs && cs->any_done && r->seq < cs->max_done_seq)
			th.out_of_order++;
		if (cs && (!cs->any_done || r->seq > cs->max_done_seq)) {
			cs->max_done_seq = r->seq;
			cs->any_done = true;
		}
	}
	net_respond(r, &ch);
}

static void delayed_fire(struct uring_timer *t)
{
	struct delayed *d = ST_CONTAINER_OF(t, struct delayed, t);
	th.delayed_pending--;
	echo_respond(d->req);
	free(d);
}

static void on_request(void *ctx, struct net_req *r)
{
	(void)ctx;
	th.requests++;
	struct conn_state *cs = net_conn_user(r->conn);
	if (!cs || cs->magic != CONN_MAGIC)
		th.bad_user++;
	char cmd = r->len >= REQ_HDR ? (char)r->data[0] : 'E';
	int delay = r->len >= REQ_HDR ? r->data[1] : 0;
	if (cmd == 'N') {
		net_respond_none(r);
	} else if (cmd == 'C') {
		net_conn_close(r->conn);
		net_respond_none(r); /* completing after the close is allowed */
	} else if (cmd == 'D' || (cmd == 'P' && (r->seq & 1))) {
		struct delayed *d = malloc(sizeof *d);
		ST_ASSERT(d);
		d->req = r;
		uring_timer_init(&d->t, delayed_fire);
		uring_timer_arm(th.ur, &d->t, delay);
		th.delayed_pending++;
	} else {
		echo_respond(r);
	}
}

static void on_open(void *ctx, struct net_conn *c)
{
	(void)ctx;
	th.opens++;
	struct conn_state *cs = calloc(1, sizeof *cs);
	ST_ASSERT(cs);
	cs->magic = CONN_MAGIC;
	net_conn_set_user(c, cs);
	snprintf(th.last_peer, sizeof th.last_peer, "%s", net_conn_peer(c));
	const struct sockaddr_storage *ss = net_conn_peer_addr(c);
	if (ss->ss_family != AF_INET && ss->ss_family != AF_INET6)
		th.bad_user++;
}

static void on_close(void *ctx, struct net_conn *c)
{
	(void)ctx;
	th.closes++;
	free(net_conn_user(c));
	net_conn_set_user(c, NULL);
}

static const struct net_handler handler = {
	.ctx = &th, .on_request = on_request, .on_open = on_open, .on_close = on_close,
};

/* ------------------------------------------------------------------------------------------ */
/* the client side                                                                             */

static uint16_t g_port;
static int g_family = AF_INET;
static atomic_int g_paused;        /* server: connections paused now */
static atomic_int g_client_done;

struct exp {
	uint64_t seq;
	uint32_t plen, foff, flen, salt;
	char cmd;
};

struct cs {
	int fd;
	uint8_t *out;
	size_t out_len, out_cap, out_off;
	struct exp *exps;
	size_t nexp, exp_cap, next_exp;
	uint64_t nreq;
	uint8_t *in;
	size_t in_start, in_len, in_cap;
	bool verify_content;
	bool eof;
	uint64_t resp_bytes;
	char why[256];
	int failed;
};

static void cs_fail(struct cs *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cs_fail(struct cs *s, const char *fmt, ...)
{
	if (s->failed++)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->why, sizeof s->why, fmt, ap);
	va_end(ap);
}

static int cl_connect(void)
{
	int fd = socket(g_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	socklen_t sl;
	if (g_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(g_port);
		a->sin6_addr = in6addr_loopback;
		sl = sizeof *a;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(g_port);
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof *a;
	}
	if (connect(fd, (struct sockaddr *)&ss, sl) < 0) {
		close(fd);
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct timeval tv = { .tv_sec = 30 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	return fd;
}

static void cs_init(struct cs *s)
{
	memset(s, 0, sizeof *s);
	s->verify_content = true;
	s->fd = cl_connect();
	if (s->fd < 0)
		cs_fail(s, "connect: %s", strerror(errno));
}

static void cs_free(struct cs *s)
{
	if (s->fd >= 0)
		close(s->fd);
	free(s->out);
	free(s->exps);
	free(s->in);
}

static uint8_t *cs_out_room(struct cs *s, size_t n)
{
	if (s->out_len + n > s->out_cap) {
		size_t cap = s->out_cap ? s->out_cap : 4096;
		while (cap < s->out_len + n)
			cap *= 2;
		s->out = realloc(s->out, cap);
		ST_ASSERT(s->out);
		s->out_cap = cap;
	}
	uint8_t *p = s->out + s->out_len;
	s->out_len += n;
	return p;
}

/* Queues one request frame and what its response must be. */
static void cs_add(struct cs *s, char cmd, uint8_t delay, uint32_t foff, uint32_t flen,
		   size_t extra, uint32_t salt)
{
	size_t plen = REQ_HDR + extra;
	uint8_t *p = cs_out_room(s, 4 + plen);
	st_put_be32(p, (uint32_t)plen);
	p += 4;
	p[0] = (uint8_t)cmd;
	p[1] = delay;
	p[2] = p[3] = 0;
	st_put_be32(p + 4, foff);
	st_put_be32(p + 8, flen);
	st_put_be32(p + 12, salt);
	for (size_t i = 0; i < extra; i++)
		p[REQ_HDR + i] = ppat(salt, i);
	if (s->nexp == s->exp_cap) {
		s->exp_cap = s->exp_cap ? s->exp_cap * 2 : 64;
		s->exps = realloc(s->exps, s->exp_cap * sizeof *s->exps);
		ST_ASSERT(s->exps);
	}
	s->exps[s->nexp++] = (struct exp){ .seq = s->nreq++, .plen = (uint32_t)plen, .foff = foff,
					   .flen = flen, .salt = salt, .cmd = cmd };
}

static void cs_add_raw_size(struct cs *s, uint32_t size_field, char expect)
{
	st_put_be32(cs_out_room(s, 4), size_field);
	if (expect == '0') { /* a valid zero-size frame: an empty response */
		if (s->nexp == s->exp_cap) {
			s->exp_cap = s->exp_cap ? s->exp_cap * 2 : 64;
			s->exps = realloc(s->exps, s->exp_cap * sizeof *s->exps);
			ST_ASSERT(s->exps);
		}
		s->exps[s->nexp++] = (struct exp){ .seq = s->nreq++, .cmd = '0' };
	}
}

static bool exp_has_response(const struct exp *e) { return e->cmd != 'N' && e->cmd != 'C'; }

static void cs_skip_silent(struct cs *s)
{
	while (s->next_exp < s->nexp && !exp_has_response(&s->exps[s->next_exp]))
		s->next_exp++;
}

static void cs_check_frame(struct cs *s, const uint8_t *b, size_t n)
{
	cs_skip_silent(s);
	if (s->next_exp >= s->nexp) {
		cs_fail(s, "unexpected response of %zu bytes", n);
		return;
	}
	const struct exp *e = &s->exps[s->next_exp++];
	if (e->cmd == '0') {
		if (n != 0)
			cs_fail(s, "zero frame: response of %zu bytes, want 0", n);
		return;
	}
	size_t want = RESP_HDR + e->plen + e->flen + 4;
	if (n != want) {
		cs_fail(s, "seq %llu: response of %zu bytes, want %zu", (unsigned long long)e->seq, n,
			want);
		return;
	}
	if (st_be64(b) != e->seq) {
		cs_fail(s, "response seq %llu, want %llu (out of order)",
			(unsigned long long)st_be64(b), (unsigned long long)e->seq);
		return;
	}
	if (st_be32(b + 8) != e->plen || st_be32(b + 12) != e->flen) {
		cs_fail(s, "seq %llu: bad lengths in header", (unsigned long long)e->seq);
		return;
	}
	const uint8_t *p = b + RESP_HDR;
	if (p[0] != (uint8_t)e->cmd || st_be32(p + 4) != e->foff || st_be32(p + 12) != e->salt) {
		cs_fail(s, "seq %llu: echoed payload header differs", (unsigned long long)e->seq);
		return;
	}
	if (s->verify_content) {
		for (size_t i = 0; i < e->plen - REQ_HDR; i++)
			if (p[REQ_HDR + i] != ppat(e->salt, i)) {
				cs_fail(s, "seq %llu: payload byte %zu differs", (unsigned long long)e->seq, i);
				return;
			}
		const uint8_t *f = p + e->plen;
		for (size_t i = 0; i < e->flen; i++)
			if (f[i] != fpat((uint64_t)e->foff + i)) {
				cs_fail(s, "seq %llu: file byte %zu differs", (unsigned long long)e->seq, i);
				return;
			}
	}
	if (st_be32(b + n - 4) != TRAILER_MAGIC)
		cs_fail(s, "seq %llu: bad trailer", (unsigned long long)e->seq);
}

/* Reads what is available (nonblocking); parses complete frames. */
static void cs_read(struct cs *s)
{
	for (int rounds = 0; rounds < 64 && !s->failed; rounds++) {
		if (s->in_cap - s->in_len < 65536) {
			if (s->in_start > 0) {
				memmove(s->in, s->in + s->in_start, s->in_len - s->in_start);
				s->in_len -= s->in_start;
				s->in_start = 0;
			}
			if (s->in_cap - s->in_len < 65536) {
				s->in_cap = s->in_cap ? s->in_cap * 2 : 1 << 20;
				s->in = realloc(s->in, s->in_cap);
				ST_ASSERT(s->in);
			}
		}
		ssize_t r = recv(s->fd, s->in + s->in_len, s->in_cap - s->in_len, MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (r <= 0) {
			s->eof = true;
			break;
		}
		s->in_len += (size_t)r;
		s->resp_bytes += (uint64_t)r;
		while (s->in_len - s->in_start >= 4 && !s->failed) {
			size_t size = st_be32(s->in + s->in_start);
			if (s->in_len - s->in_start < 4 + size)
				break;
			cs_check_frame(s, s->in + s->in_start + 4, size);
			s->in_start += 4 + size;
		}
		if (s->in_start == s->in_len)
			s->in_start = s->in_len = 0;
	}
}

static bool cs_all_answered(struct cs *s)
{
	cs_skip_silent(s);
	return s->next_exp >= s->nexp;
}

/* Sends the queued requests in pieces of at most chunk bytes while reading responses, until
 * every expected response arrived and checked out (or a failure / 30 s without progress). */
static void cs_run(struct cs *s, size_t chunk)
{
	int idle_ms = 0;
	while (!s->failed && (s->out_off < s->out_len || !cs_all_answered(s))) {
		struct pollfd p = { .fd = s->fd, .events = POLLIN };
		if (s->out_off < s->out_len)
			p.events |= POLLOUT;
		int r = poll(&p, 1, 100);
		if (r == 0) {
			if ((idle_ms += 100) > 30000)
				cs_fail(s, "no progress for 30 s (sent %zu/%zu, answered %zu/%zu)",
					s->out_off, s->out_len, s->next_exp, s->nexp);
			continue;
		}
		idle_ms = 0;
		if ((p.revents & POLLOUT) && s->out_off < s->out_len) {
			size_t n = ST_MIN(chunk, s->out_len - s->out_off);
			ssize_t w = send(s->fd, s->out + s->out_off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0)
				s->out_off += (size_t)w;
			else if (w < 0 && errno != EAGAIN && errno != EINTR)
				cs_fail(s, "send: %s", strerror(errno));
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			cs_read(s);
			if (s->eof && !cs_all_answered(s))
				cs_fail(s, "connection closed with %zu responses missing",
					s->nexp - s->next_exp);
		}
	}
}

/* Expects the server to close: EOF or reset, and no data. */
static void cs_expect_close(struct cs *s)
{
	uint8_t b[256];
	for (;;) {
		ssize_t r = recv(s->fd, b, sizeof b, 0);
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			cs_fail(s, "waiting for the close: %s", strerror(errno));
			return;
		}
		cs_fail(s, "got %zd bytes, wanted the connection closed", r);
		return;
	}
}

/* Blocking send of buf[0, len) on s's socket, whatever cs_run has queued. */
static void cs_send_all(struct cs *s, const uint8_t *buf, size_t len)
{
	for (size_t off = 0; off < len && !s->failed;) {
		ssize_t w = send(s->fd, buf + off, len - off, MSG_NOSIGNAL);
		if (w > 0)
			off += (size_t)w;
		else if (w < 0 && errno != EINTR)
			cs_fail(s, "send: %s", strerror(errno));
	}
}

/* Sends a frame size prefix the server must refuse (and body_bytes of the body), then expects
 * the server to close the connection. */
static void cs_refused_size(struct cs *s, uint32_t size, size_t body_bytes)
{
	uint8_t buf[4 + 64];
	ST_ASSERT(body_bytes <= sizeof buf - 4);
	st_put_be32(buf, size);
	memset(buf + 4, 'x', body_bytes);
	cs_send_all(s, buf, 4 + body_bytes);
	if (!s->failed)
		cs_expect_close(s);
}

/* --- client scenarios (run in a thread; the result goes back in struct cres) --------------- */

struct cres {
	int failed;
	char why[256];
	long stalled;
	size_t sent_before_stall;
};

static void cres_take(struct cres *res, struct cs *s)
{
	if (s->failed && !res->failed) {
		res->failed = 1;
		snprintf(res->why, sizeof res->why, "%s", s->why);
	}
}

/* The end of a scenario: sends what is still queued (chunk bytes per send) and checks every
 * answer, unless s failed already; the outcome goes to res (a struct cres); s is freed. */
static void *cs_finish(struct cs *s, size_t chunk, void *res)
{
	if (!s->failed)
		cs_run(s, chunk);
	cres_take(res, s);
	cs_free(s);
	return NULL;
}

static void *c_basic(void *arg)
{
	struct cs s;
	cs_init(&s);
	cs_add(&s, 'E', 0, 12345, 777, 10, 1);
	cs_add(&s, 'N', 0, 0, 0, 0, 2);
	cs_add(&s, 'E', 0, 0, 0, 0, 3);
	return cs_finish(&s, SIZE_MAX, arg);
}

/* 200 pipelined requests; the handler delays the odd ones (1..8 ms), some get no response. */
static void *c_pipelined(void *arg)
{
	struct cs s;
	cs_init(&s);
	for (uint32_t i = 0; i < 200; i++) {
		char cmd = i % 17 == 5 ? 'N' : 'P';
		cs_add(&s, cmd, (uint8_t)(1 + i % 8), (i * 4099u) % (FILE_BYTES - 8192),
		       (i * 37u) % 5000, i % 300, i);
	}
	return cs_finish(&s, SIZE_MAX, arg);
}

static void *c_bytewise(void *arg)
{
	struct cs s;
	cs_init(&s);
	cs_add(&s, 'E', 0, 100, 20000, 40, 7);
	cs_add(&s, 'D', 3, 5, 3, 0, 8);
	cs_add_raw_size(&s, 0, '0');
	cs_add(&s, 'E', 0, 9999, 100, 200, 9);
	return cs_finish(&s, 1, arg);
}

static void *c_many_frames(void *arg)
{
	struct cs s;
	cs_init(&s);
	for (uint32_t i = 0; i < 1000; i++)
		cs_add(&s, 'E', 0, i * 13, i % 7 ? 0 : 50, i % 5, i);
	return cs_finish(&s, SIZE_MAX, arg);
}

static void *c_large(void *arg)
{
	struct cs s;
	cs_init(&s);
	cs_add(&s, 'E', 0, 1, 4u << 20, 10u << 20, 77);
	cs_add(&s, 'E', 0, 3, 1u << 20, 100, 78);
	cs_add(&s, 'E', 0, 0, 0, 0, 79);
	return cs_finish(&s, SIZE_MAX, arg);
}

static int32_t g_max_request_bytes;

/* A frame over the max closes that connection; another connection keeps working. */
static void *c_oversize(void *arg)
{
	struct cs a, b;
	cs_init(&b);
	cs_init(&a);
	cs_add(&b, 'E', 0, 10, 10, 10, 1);
	if (!b.failed)
		cs_run(&b, SIZE_MAX);
	cs_add(&a, 'E', 0, 10, 10, 10, 1);
	if (!a.failed)
		cs_run(&a, SIZE_MAX);
	cs_refused_size(&a, (uint32_t)g_max_request_bytes + 1, 64);
	cs_add(&b, 'E', 0, 20, 20, 20, 2);
	if (!b.failed)
		cs_run(&b, SIZE_MAX);
	cres_take(arg, &a);
	cres_take(arg, &b);
	cs_free(&a);
	cs_free(&b);
	return NULL;
}

static void *c_negative(void *arg)
{
	struct cs s;
	cs_init(&s);
	cs_refused_size(&s, 0xfffffffeu, 0); /* -2 */
	return cs_finish(&s, SIZE_MAX, arg);
}

static void *c_handler_close(void *arg)
{
	struct cs s;
	cs_init(&s);
	cs_add(&s, 'E', 0, 0, 100, 0, 1);
	if (!s.failed)
		cs_run(&s, SIZE_MAX);
	cs_add(&s, 'C', 0, 0, 0, 0, 2);
	if (!s.failed)
		cs_run(&s, SIZE_MAX);
	if (!s.failed)
		cs_expect_close(&s);
	return cs_finish(&s, SIZE_MAX, arg);
}

/* --- frames received straight into their buffer (cfg.recv_direct_min_bytes) --------------- */

#define DIRECT_SERIES 8
#define DIRECT_SERIES_BYTES (1u << 20)

/* Small and large frames back to back in one buffer: every switch between the buffer ring (or
 * the staging buffer) and a direct recv happens with the next frame's bytes right behind. */
static void *c_direct_pipelined(void *arg)
{
	struct cs s;
	cs_init(&s);
	cs_add(&s, 'E', 0, 10, 10, 10, 1);
	cs_add(&s, 'E', 0, 20, 100, 1u << 20, 2);           /* large */
	cs_add(&s, 'N', 0, 0, 0, 3, 3);
	cs_add(&s, 'E', 0, 30, 0, 64 * 1024 - REQ_HDR, 4);  /* exactly 64 KiB */
	cs_add(&s, 'E', 0, 40, 5, 64 * 1024 - REQ_HDR - 1, 5);
	cs_add(&s, 'D', 2, 50, 7, 200 * 1024, 6);           /* large, answered late */
	cs_add(&s, 'E', 0, 60, 0, 1, 7);
	cs_add(&s, 'E', 0, 70, 0, (3u << 20) + 12345, 8);   /* past the first 1 MiB allocation */
	cs_add_raw_size(&s, 0, '0');
	cs_add(&s, 'E', 0, 80, 0, 70 * 1024, 9);
	cs_add(&s, 'E', 0, 90, 0, 70 * 1024, 10);
	cs_add(&s, 'E', 0, 99, 9, 0, 11);
	return cs_finish(&s, SIZE_MAX, arg);
}

static void *c_direct_series(void *arg)
{
	struct cs s;
	cs_init(&s);
	for (uint32_t i = 0; i < DIRECT_SERIES; i++)
		cs_add(&s, 'E', 0, i * 100, 10, DIRECT_SERIES_BYTES - REQ_HDR, 100 + i);
	cs_add(&s, 'E', 0, 0, 0, 0, 200);
	return cs_finish(&s, SIZE_MAX, arg);
}

/* Small frames one at a time (each its own recv) until the connection is back on the multishot
 * recv, then large frames with small ones between them in one send: the multishot recv that
 * sees the first large size prefix is cancelled with more data behind it. */
#define DIRECT_SMALL_FIRST 40
static void *c_direct_after_small(void *arg)
{
	struct cs s;
	cs_init(&s);
	for (uint32_t i = 0; i < DIRECT_SMALL_FIRST && !s.failed; i++) {
		cs_add(&s, 'E', 0, i, 0, i, i);
		cs_run(&s, SIZE_MAX);
	}
	cs_add(&s, 'E', 0, 1, 0, 1u << 20, 1000);
	cs_add(&s, 'E', 0, 2, 0, 10, 1001);
	cs_add(&s, 'E', 0, 3, 3, 300 * 1024, 1002);
	cs_add(&s, 'N', 0, 0, 0, 0, 1003);
	cs_add(&s, 'E', 0, 4, 4, 4, 1004);
	return cs_finish(&s, SIZE_MAX, arg);
}

/* A large frame (and its size prefix) in 11-byte sends, between small frames. */
static void *c_direct_tiny(void *arg)
{
	struct cs s;
	cs_init(&s);
	cs_add(&s, 'E', 0, 1, 1, 1, 1);
	cs_add(&s, 'E', 0, 2, 2, 96 * 1024, 2);
	cs_add(&s, 'E', 0, 3, 3, 3, 3);
	return cs_finish(&s, 11, arg);
}

/* Peers that go away in the middle of a large frame: a close (FIN) and a reset. Nothing may
 * reach the handler from them; the partial frames must be freed (ASan). */
static void *c_direct_close_mid(void *arg)
{
	for (int k = 0; k < 2; k++) {
		struct cs s;
		cs_init(&s);
		cs_add(&s, 'E', 0, 0, 0, 0, 1);
		if (!s.failed)
			cs_run(&s, SIZE_MAX); /* the connection is up and served */
		cs_add(&s, 'E', 0, 0, 0, 2u << 20, 2);
		size_t cut = s.out_off + (700u << 10);
		cs_send_all(&s, s.out + s.out_off, cut - s.out_off);
		s.out_off = cut;
		usleep(20000); /* the server is receiving the frame directly by now (usually) */
		if (k == 1) {
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };
			setsockopt(s.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		} else {
			shutdown(s.fd, SHUT_WR);
			cs_expect_close(&s); /* the server closes its side too */
		}
		cres_take(arg, &s);
		cs_free(&s);
	}
	return NULL;
}

/* After large frames (the direct recv, then a single ring buffer) an oversize size prefix is
 * still refused. */
static void *c_direct_oversize(void *arg)
{
	struct cs s;
	cs_init(&s);
	cs_add(&s, 'E', 0, 0, 0, 1u << 20, 1);
	cs_add(&s, 'E', 0, 0, 0, 1u << 20, 2);
	if (!s.failed)
		cs_run(&s, SIZE_MAX);
	cs_refused_size(&s, (uint32_t)g_max_request_bytes + 1, 64);
	return cs_finish(&s, SIZE_MAX, arg);
}

/* Never reads: the server must stop reading (its rcvbuf and our sndbuf fill, our sends stall)
 * with a bounded backlog, then resume and answer everything once we read. */
#define BP_REQS 600
static void *c_backpressure(void *arg)
{
	struct cres *res = arg;
	struct cs s;
	cs_init(&s);
	int small = 64 * 1024;
	setsockopt(s.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
	setsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	for (uint32_t i = 0; i < BP_REQS; i++)
		cs_add(&s, 'E', 0, (i * 7919u) % (FILE_BYTES - 65536), 60000, 4000, i);
	int64_t last_progress = st_mono_ms(), start = last_progress;
	while (!s.failed) {
		if (s.out_off == s.out_len) {
			cs_fail(&s, "all %d requests were accepted without reading a response", BP_REQS);
			break;
		}
		ssize_t w = send(s.fd, s.out + s.out_off, s.out_len - s.out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			s.out_off += (size_t)w;
			last_progress = st_mono_ms();
		} else if (w < 0 && errno != EAGAIN) {
			cs_fail(&s, "send: %s", strerror(errno));
			break;
		}
		int64_t now = st_mono_ms();
		if (atomic_load(&g_paused) > 0 && now - last_progress > 300) {
			res->stalled = 1;
			res->sent_before_stall = s.out_off;
			break;
		}
		if (now - start > 30000) {
			cs_fail(&s, "server never paused (sent %zu of %zu bytes)", s.out_off, s.out_len);
			break;
		}
		usleep(2000);
	}
	if (!s.failed)
		cs_run(&s, SIZE_MAX);
	cres_take(res, &s);
	cs_free(&s);
	return NULL;
}

/* Clients vanish with requests outstanding: delayed ones, big file responses queued, a half
 * frame, and one stalled by backpressure. The server must neither crash nor leak. */
static void *c_abrupt(void *arg)
{
	struct cs s[4];
	for (int k = 0; k < 4; k++)
		cs_init(&s[k]);
	for (uint32_t i = 0; i < 100; i++)
		cs_add(&s[0], i & 1 ? 'D' : 'E', (uint8_t)(20 + i % 30), i * 1000, 1u << 20, 100, i);
	for (uint32_t i = 0; i < 20; i++)
		cs_add(&s[1], 'E', 0, 0, 4u << 20, 1000, i);
	cs_add(&s[2], 'D', 50, 0, 10, 10, 1);
	cs_add(&s[2], 'E', 0, 0, 10, 100000, 2);
	s[2].out_len -= 50000; /* the second frame is cut in half */
	for (uint32_t i = 0; i < BP_REQS; i++)
		cs_add(&s[3], 'E', 0, 0, 60000, 4000, i);
	for (int k = 0; k < 4; k++) {
		/* Send what fits without blocking, then reset the connection. */
		int64_t until = st_mono_ms() + 200;
		while (s[k].fd >= 0 && s[k].out_off < s[k].out_len && st_mono_ms() < until) {
			ssize_t w = send(s[k].fd, s[k].out + s[k].out_off, s[k].out_len - s[k].out_off,
					 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0)
				s[k].out_off += (size_t)w;
			else
				usleep(1000);
		}
	}
	usleep(20000);
	for (int k = 0; k < 4; k++) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(s[k].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		cres_take(arg, &s[k]);
		cs_free(&s[k]);
	}
	return NULL;
}

struct conc_arg {
	struct cres res;
	int idx;
};

static void *c_conc_one(void *arg)
{
	struct conc_arg *a = arg;
	enum { CONNS = 25, REQS = 20 };
	struct cs *s = calloc(CONNS, sizeof *s);
	ST_ASSERT(s);
	for (int k = 0; k < CONNS; k++) {
		cs_init(&s[k]);
		for (uint32_t i = 0; i < REQS; i++)
			cs_add(&s[k], 'P', (uint8_t)(1 + (i + (uint32_t)k) % 5),
			       (uint32_t)(a->idx * 100000 + k * 1000) + i, 100 + i, i, i + (uint32_t)k);
	}
	/* All connections get their requests before any is read. */
	for (int k = 0; k < CONNS; k++)
		if (!s[k].failed && send(s[k].fd, s[k].out, s[k].out_len, MSG_NOSIGNAL) ==
					    (ssize_t)s[k].out_len)
			s[k].out_off = s[k].out_len;
	for (int k = 0; k < CONNS; k++) {
		if (!s[k].failed)
			cs_run(&s[k], SIZE_MAX);
		cres_take(&a->res, &s[k]);
		cs_free(&s[k]);
	}
	free(s);
	return NULL;
}

static void *c_concurrent(void *arg)
{
	struct cres *res = arg;
	pthread_t t[4];
	struct conc_arg a[4];
	for (int i = 0; i < 4; i++) {
		memset(&a[i], 0, sizeof a[i]);
		a[i].idx = i;
		pthread_create(&t[i], NULL, c_conc_one, &a[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		if (a[i].res.failed && !res->failed)
			*res = a[i].res;
	}
	return NULL;
}

/* Server stop with a request outstanding: both connections see the close. */
static atomic_int g_stop_ready;
static void *c_stop(void *arg)
{
	struct cs a, b;
	cs_init(&a);
	cs_init(&b);
	cs_add(&a, 'D', 200, 0, 100, 0, 1);
	if (!a.failed && send(a.fd, a.out, a.out_len, MSG_NOSIGNAL) != (ssize_t)a.out_len)
		cs_fail(&a, "send: %s", strerror(errno));
	atomic_store(&g_stop_ready, 1);
	if (!a.failed)
		cs_expect_close(&a);
	if (!b.failed)
		cs_expect_close(&b);
	cres_take(arg, &a);
	cres_take(arg, &b);
	cs_free(&a);
	cs_free(&b);
	return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* driving                                                                                     */

static struct uring ur;
static struct net_server *srv;

static void pump_once(void)
{
	int rc = uring_run_once(&ur, 5);
	if (rc < 0)
		BAIL_OUT("uring_run_once: %s", strerror(-rc));
	if (srv) {
		struct net_stats st;
		net_server_stats(srv, &st);
		atomic_store(&g_paused, (int)st.paused_connections);
	}
}

struct thread_arg {
	void *(*fn)(void *);
	void *arg;
};
static void *thread_main(void *p)
{
	struct thread_arg *ta = p;
	ta->fn(ta->arg);
	atomic_store(&g_client_done, 1);
	return NULL;
}

/* Runs fn(arg) in a client thread while this thread drives the server. */
static void run_client(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	struct thread_arg ta = { fn, arg };
	atomic_store(&g_client_done, 0);
	if (pthread_create(&t, NULL, thread_main, &ta) != 0)
		BAIL_OUT("pthread_create");
	while (!atomic_load(&g_client_done))
		pump_once();
	pthread_join(t, NULL);
}

static bool settle(bool (*done)(void), int timeout_ms)
{
	int64_t until = st_mono_ms() + timeout_ms;
	while (!done() && st_mono_ms() < until)
		pump_once();
	return done();
}

static bool server_quiet(void)
{
	struct net_stats st;
	net_server_stats(srv, &st);
	return st.connections_alive == 0 && th.delayed_pending == 0;
}

static bool server_gone(void)
{
	return net_server_idle(srv) && th.delayed_pending == 0 && atomic_load(&g_client_done);
}

/* net_config_defaults on 127.0.0.1, an ephemeral port. */
static void loopback_config(struct net_config *cfg)
{
	net_config_defaults(cfg);
	cfg->host = "127.0.0.1";
	cfg->port = 0;
}

/* Starts the echo server (srv, its port in g_port) with cfg and fresh handler counters (th).
 * 0 or net_server_start's -errno. */
static int server_start(const struct net_config *cfg)
{
	memset(&th, 0, sizeof th);
	th.ur = &ur;
	th.file_fd = g_file_fd;
	g_max_request_bytes = cfg->max_request_bytes;
	int rc = net_server_start(&ur, cfg, &handler, &srv);
	if (rc == 0)
		g_port = net_server_port(srv);
	return rc;
}

/* Stops the server, waits (bounded) until it is idle and frees it. */
static void server_stop_free(void)
{
	net_server_stop(srv);
	atomic_store(&g_client_done, 1);
	settle(server_gone, 5000);
	net_server_free(srv);
	srv = NULL;
}

static void test_backpressure(const char *name, const struct net_config *cfg)
{
	struct cres r;
	struct net_stats st;
	memset(&r, 0, sizeof r);
	run_client(c_backpressure, &r);
	net_server_stats(srv, &st);
	ok(!r.failed, "%s: backpressure: all %d responses in order after reading %s", name, BP_REQS,
	   r.why);
	ok(r.stalled, "%s: backpressure: server stopped reading (client stalled after %zu of %zu "
	   "bytes)", name, r.sent_before_stall, (size_t)BP_REQS * (4 + REQ_HDR + 4000));
	ok(st.pauses_total >= 1 && st.resumes_total >= 1, "%s: backpressure: paused %llu, resumed "
	   "%llu times", name, (unsigned long long)st.pauses_total,
	   (unsigned long long)st.resumes_total);
	size_t bound = cfg->max_outstanding_bytes + 256 * 1024;
	ok(st.peak_outstanding_bytes <= bound, "%s: backpressure: peak outstanding %llu <= %zu", name,
	   (unsigned long long)st.peak_outstanding_bytes, bound);
	ok(st.peak_inflight_requests <= cfg->max_inflight_requests,
	   "%s: backpressure: peak in flight %u <= %u", name, st.peak_inflight_requests,
	   cfg->max_inflight_requests);

}

/* The direct receive of large frames; the server runs with cfg. */
static void test_direct(const char *name, const struct net_config *cfg)
{
	struct cres r;
	struct net_stats st0, st;
	bool direct = cfg->recv_direct_min_bytes > 0;
	net_server_stats(srv, &st0);

	memset(&r, 0, sizeof r);
	run_client(c_direct_pipelined, &r);
	ok(!r.failed, "%s: direct: small and large frames pipelined in one send %s", name, r.why);
	net_server_stats(srv, &st);
	if (direct)
		ok(st.recv_direct_frames - st0.recv_direct_frames >= 1,
		   "%s: direct: ...large ones received into their frame (%llu frames, %llu B)", name,
		   (unsigned long long)(st.recv_direct_frames - st0.recv_direct_frames),
		   (unsigned long long)(st.recv_direct_bytes - st0.recv_direct_bytes));
	else
		ok(st.recv_direct_bytes == st0.recv_direct_bytes,
		   "%s: direct: off, nothing received directly", name);

	net_server_stats(srv, &st0);
	memset(&r, 0, sizeof r);
	run_client(c_direct_series, &r);
	ok(!r.failed, "%s: direct: %d pipelined frames of 1 MiB %s", name, DIRECT_SERIES, r.why);
	net_server_stats(srv, &st);
	uint64_t dbytes = st.recv_direct_bytes - st0.recv_direct_bytes;
	uint64_t dframes = st.recv_direct_frames - st0.recv_direct_frames;
	/* After one frame went direct, the next header comes in a single ring buffer and its
	 * frame goes direct too: only a race at the start (a multishot recv that took more before
	 * it was cancelled) or a header split over two segments costs a frame. */
	if (direct)
		ok(dframes >= DIRECT_SERIES / 2 &&
		   dbytes >= (uint64_t)DIRECT_SERIES / 2 * (DIRECT_SERIES_BYTES / 2),
		   "%s: direct: %llu of %d frames, %llu B received into the frame", name,
		   (unsigned long long)dframes, DIRECT_SERIES, (unsigned long long)dbytes);
	else
		ok(dbytes == 0, "%s: direct: off, nothing received directly", name);
	tap_diag("%s: direct: multishot recvs cancelled %llu", name,
		 (unsigned long long)(st.recv_multishot_cancels - st0.recv_multishot_cancels));

	net_server_stats(srv, &st0);
	memset(&r, 0, sizeof r);
	run_client(c_direct_after_small, &r);
	ok(!r.failed, "%s: direct: %d small frames one by one, then large and small ones pipelined %s",
	   name, DIRECT_SMALL_FIRST, r.why);
	net_server_stats(srv, &st);
	/* With a ring of 256 buffers the multishot recv is still armed when the first large size
	 * prefix arrives (with a tiny ring it may have ended on -ENOBUFS: no cancel needed). */
	if (direct && st.buf_ring && cfg->buf_ring_entries >= 64)
		ok(st.recv_multishot_cancels > st0.recv_multishot_cancels,
		   "%s: direct: ...the multishot recv was cancelled for the large frame", name);

	memset(&r, 0, sizeof r);
	run_client(c_direct_tiny, &r);
	ok(!r.failed, "%s: direct: a large frame arriving in 11-byte pieces %s", name, r.why);

	long req_before = th.requests;
	memset(&r, 0, sizeof r);
	run_client(c_direct_close_mid, &r);
	ok(!r.failed, "%s: direct: peers closing and resetting mid-frame %s", name, r.why);
	ok(settle(server_quiet, 20000), "%s: direct: ...their connections freed", name);
	is_int(th.requests - req_before, 2, "%s: direct: ...and no partial frame handed out", name);

	net_server_stats(srv, &st0);
	memset(&r, 0, sizeof r);
	run_client(c_direct_oversize, &r);
	ok(!r.failed, "%s: direct: an oversize frame after large ones closes the connection %s",
	   name, r.why);
	net_server_stats(srv, &st);
	is_int(st.rejected_frames_total - st0.rejected_frames_total, 1,
	       "%s: direct: ...counted as rejected", name);
}

/* A server with cfg for the direct receive tests only. */
static void run_direct_suite(const char *name, const struct net_config *cfg)
{
	tap_diag("suite: %s", name);
	int rc = server_start(cfg);
	is_int(rc, 0, "%s: server starts", name);
	if (rc)
		return;
	test_direct(name, cfg);
	struct net_stats st;
	net_server_stats(srv, &st);
	tap_diag("%s: direct recv %llu B, %llu frames, %llu multishot recvs cancelled; buffer ring "
		 "empty %llu", name, (unsigned long long)st.recv_direct_bytes,
		 (unsigned long long)st.recv_direct_frames,
		 (unsigned long long)st.recv_multishot_cancels, (unsigned long long)st.buf_ring_empty);
	net_server_stop(srv);
	atomic_store(&g_client_done, 1);
	ok(settle(server_gone, 20000), "%s: server idle after stop", name);
	ok(th.file_acq == th.file_rel && th.mem_acq == th.mem_rel && th.opens == th.closes,
	   "%s: every link released, every connection closed", name);
	net_server_free(srv);
	srv = NULL;
}

static void run_suite(const char *name, const struct net_config *cfg)
{
	tap_diag("suite: %s", name);
	int rc = server_start(cfg);
	is_int(rc, 0, "%s: server starts", name);
	if (rc)
		return;
	ok(g_port != 0, "%s: ephemeral port %u", name, g_port);
	struct net_stats st;
	net_server_stats(srv, &st);
	ok(st.buf_ring == !cfg->no_buf_ring, "%s: buffer ring %s", name,
	   st.buf_ring ? "in use" : "not used");
	ok(st.multishot_accept == !cfg->no_multishot_accept, "%s: multishot accept %s", name,
	   st.multishot_accept ? "on" : "off");

	struct cres r;
	memset(&r, 0, sizeof r);
	run_client(c_basic, &r);
	ok(!r.failed, "%s: basic echo with memory, copy, file range and no-response %s", name, r.why);
	ok(strncmp(th.last_peer, "127.0.0.1:", 10) == 0, "%s: peer address %s", name, th.last_peer);

	/* Only meaningful with small limits and buffers (the first two suites). */
	if (cfg->max_outstanding_bytes <= (1u << 20))
		test_backpressure(name, cfg);

	memset(&r, 0, sizeof r);
	run_client(c_pipelined, &r);
	ok(!r.failed, "%s: 200 pipelined requests answered in order %s", name, r.why);
	ok(th.out_of_order > 0, "%s: ...while the handler completed %ld of them out of order", name,
	   th.out_of_order);
	net_server_stats(srv, &st);
	if (cfg->max_inflight_requests <= 200)
		is_int(st.peak_inflight_requests, cfg->max_inflight_requests,
		       "%s: in-flight requests reached the limit and never passed it", name);

	memset(&r, 0, sizeof r);
	run_client(c_bytewise, &r);
	ok(!r.failed, "%s: frames sent one byte per send %s", name, r.why);

	memset(&r, 0, sizeof r);
	run_client(c_many_frames, &r);
	ok(!r.failed, "%s: 1000 frames in one send %s", name, r.why);

	memset(&r, 0, sizeof r);
	run_client(c_large, &r);
	ok(!r.failed, "%s: 10 MiB request, 14 MiB response round trip %s", name, r.why);

	net_server_stats(srv, &st);
	uint64_t rejected = st.rejected_frames_total;
	memset(&r, 0, sizeof r);
	run_client(c_oversize, &r);
	ok(!r.failed, "%s: frame over max closes its connection, another keeps working %s", name,
	   r.why);
	memset(&r, 0, sizeof r);
	run_client(c_negative, &r);
	ok(!r.failed, "%s: negative frame size closes the connection %s", name, r.why);
	net_server_stats(srv, &st);
	is_int(st.rejected_frames_total - rejected, 2, "%s: both frames counted as rejected", name);

	memset(&r, 0, sizeof r);
	run_client(c_handler_close, &r);
	ok(!r.failed, "%s: net_conn_close from the handler %s", name, r.why);

	test_direct(name, cfg);

	memset(&r, 0, sizeof r);
	run_client(c_concurrent, &r);
	ok(!r.failed, "%s: 100 concurrent connections x 20 pipelined requests %s", name, r.why);

	memset(&r, 0, sizeof r);
	run_client(c_abrupt, &r);
	ok(!r.failed, "%s: abrupt client resets %s", name, r.why);
	ok(settle(server_quiet, 20000), "%s: every connection freed, every delayed request done",
	   name);
	ok(th.file_acq == th.file_rel && th.mem_acq == th.mem_rel,
	   "%s: every link released (file %ld/%ld, memory %ld/%ld)", name, th.file_rel, th.file_acq,
	   th.mem_rel, th.mem_acq);
	is_int(th.bad_user, 0, "%s: per-connection user state seen by every request", name);

	/* Stop with a client connected and a request outstanding. */
	memset(&r, 0, sizeof r);
	atomic_store(&g_stop_ready, 0);
	atomic_store(&g_client_done, 0);
	pthread_t t;
	struct thread_arg ta = { c_stop, &r };
	pthread_create(&t, NULL, thread_main, &ta);
	long req_before = th.requests;
	int64_t until = st_mono_ms() + 20000;
	while ((!atomic_load(&g_stop_ready) || th.requests == req_before || th.opens != th.closes + 2)
	       && st_mono_ms() < until)
		pump_once();
	ok(th.delayed_pending == 1, "%s: stop: a request is outstanding", name);
	net_server_stop(srv);
	ok(settle(server_gone, 20000), "%s: stop: server idle after the outstanding request completed",
	   name);
	pthread_join(t, NULL);
	ok(!r.failed, "%s: stop: clients saw their connections closed %s", name, r.why);
	net_server_stats(srv, &st);
	tap_diag("%s: accepted %llu, requests %llu, in %llu B, out %llu B, pauses %llu", name,
		 (unsigned long long)st.accepted_total, (unsigned long long)st.requests_total,
		 (unsigned long long)st.bytes_in, (unsigned long long)st.bytes_out,
		 (unsigned long long)st.pauses_total);
	tap_diag("%s: file bytes spliced %llu (socket full %llu times), copied %llu, small links "
		 "read %llu; direct recv %llu B, %llu frames, %llu multishot recvs cancelled for it; "
		 "buffer ring empty %llu", name,
		 (unsigned long long)st.file_splice_bytes, (unsigned long long)st.splice_waits,
		 (unsigned long long)st.file_copy_bytes, (unsigned long long)st.file_inline_links,
		 (unsigned long long)st.recv_direct_bytes, (unsigned long long)st.recv_direct_frames,
		 (unsigned long long)st.recv_multishot_cancels, (unsigned long long)st.buf_ring_empty);
	if (cfg->file_mode == NET_FILE_SPLICE && cfg->max_pipes >= 32)
		ok(st.file_splice_bytes > 0 && st.file_copy_bytes == 0, "%s: file ranges were spliced",
		   name);
	else if (cfg->file_mode == NET_FILE_SPLICE)
		ok(st.file_splice_bytes > 0 && st.file_copy_bytes > 0, "%s: file ranges were spliced, "
		   "and copied while all %u pipes were lent out", name, cfg->max_pipes);
	else
		ok(st.file_copy_bytes > 0 && st.file_splice_bytes == 0, "%s: file ranges were copied",
		   name);
	ok((st.file_inline_links > 0) == (cfg->file_copy_below_bytes > 0),
	   "%s: small ranges read into memory: %llu", name, (unsigned long long)st.file_inline_links);
	ok(st.pipes <= cfg->max_pipes, "%s: %u splice pipes, at most %u", name, st.pipes,
	   cfg->max_pipes);
	if (cfg->no_buf_ring)
		ok(st.recv_direct_bytes > 0, "%s: large bodies received straight into the frame", name);
	net_server_free(srv);
	srv = NULL;
	is_int(th.opens, th.closes, "%s: on_close ran once per on_open (%d)", name, th.opens);
	ok(th.file_acq == th.file_rel && th.mem_acq == th.mem_rel,
	   "%s: every link released at the end", name);
}

static void test_ipv6(void)
{
	struct net_config cfg;
	loopback_config(&cfg);
	cfg.host = "[::1]";
	int rc = server_start(&cfg);
	if (rc < 0) {
		tap_diag("no IPv6 loopback here (%s): skipping", strerror(-rc));
		ok(1, "# SKIP ipv6 unavailable");
		return;
	}
	g_family = AF_INET6;
	struct cres r;
	memset(&r, 0, sizeof r);
	run_client(c_basic, &r);
	ok(!r.failed, "ipv6 [::1]: round trip %s", r.why);
	ok(strncmp(th.last_peer, "[::1]:", 6) == 0, "ipv6: peer address %s", th.last_peer);
	g_family = AF_INET;
	server_stop_free();
}

static void *c_max_conns(void *arg)
{
	struct cs a, b;
	cs_init(&a);
	cs_add(&a, 'E', 0, 0, 10, 0, 1);
	if (!a.failed)
		cs_run(&a, SIZE_MAX); /* a is accepted and served */
	cs_init(&b);
	if (!b.failed)
		cs_expect_close(&b); /* b is over max_connections */
	cs_add(&a, 'E', 0, 0, 10, 0, 2);
	if (!a.failed)
		cs_run(&a, SIZE_MAX);
	cres_take(arg, &a);
	cres_take(arg, &b);
	cs_free(&a);
	cs_free(&b);
	return NULL;
}

static void test_max_connections(void)
{
	struct net_config cfg;
	loopback_config(&cfg);
	cfg.max_connections = 1;
	if (server_start(&cfg) < 0)
		BAIL_OUT("server start");
	struct cres r;
	memset(&r, 0, sizeof r);
	run_client(c_max_conns, &r);
	ok(!r.failed, "max_connections=1: the second connection is refused, the first served %s",
	   r.why);
	net_server_stop(srv);
	settle(server_gone, 5000);
	struct net_stats st;
	net_server_stats(srv, &st);
	is_int(st.accepted_total, 1, "max_connections=1: one accepted");
	net_server_free(srv);
	srv = NULL;
}

static int make_file(size_t bytes)
{
	const char *dir = getenv("TMPDIR");
	char path[4096];
	snprintf(path, sizeof path, "%s/strata-net-XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = mkstemp(path);
	if (fd < 0)
		BAIL_OUT("mkstemp %s: %s", path, strerror(errno));
	unlink(path);
	uint8_t *buf = malloc(1 << 20);
	ST_ASSERT(buf);
	for (size_t off = 0; off < bytes; off += 1 << 20) {
		size_t n = ST_MIN((size_t)1 << 20, bytes - off);
		for (size_t i = 0; i < n; i++)
			buf[i] = fpat(off + i);
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
			BAIL_OUT("pwrite: %s", strerror(errno));
	}
	free(buf);
	return fd;
}

/* ------------------------------------------------------------------------------------------ */
/* bench: splice vs copy on loopback                                                           */

struct bench_arg {
	size_t range_bytes;
	size_t total_bytes;
	double secs;
	double client_cpu;
	struct cres res;
};

static double tv_secs(const struct timeval *tv) { return (double)tv->tv_sec + tv->tv_usec / 1e6; }

/* User + system CPU seconds from r0 to r1. */
static double cpu_secs(const struct rusage *r0, const struct rusage *r1)
{
	return tv_secs(&r1->ru_utime) + tv_secs(&r1->ru_stime) - tv_secs(&r0->ru_utime) -
	       tv_secs(&r0->ru_stime);
}

/* Sorts 3 samples: v[1] is the median. */
static void sort3(double *v)
{
	for (int x = 0; x < 3; x++)
		for (int y = x + 1; y < 3; y++)
			if (v[y] < v[x]) {
				double t = v[x];
				v[x] = v[y];
				v[y] = t;
			}
}

static void *c_bench(void *arg)
{
	struct bench_arg *b = arg;
	struct cs s;
	cs_init(&s);
	s.verify_content = false;
	size_t n = b->total_bytes / b->range_bytes;
	uint32_t span = (uint32_t)(FILE_BYTES - b->range_bytes);
	for (size_t i = 0; i < n; i++)
		cs_add(&s, 'E', 0, span ? (uint32_t)((i * 1048573u) % span) & ~4095u : 0,
		       (uint32_t)b->range_bytes, 0, (uint32_t)i);
	/* Streams the responses through a 1 MiB scratch buffer: only sizes are checked, so the
	 * client costs as little as a recv of the bytes. */
	size_t want = RESP_HDR + REQ_HDR + b->range_bytes + 4;
	uint8_t *scratch = malloc(1 << 20);
	ST_ASSERT(scratch);
	size_t answered = 0, frame_left = 0, hdr_have = 0;
	uint8_t hdr[4];
	struct rusage ru0, ru1;
	getrusage(RUSAGE_THREAD, &ru0);
	int64_t t0 = st_mono_ns();
	while (!s.failed && answered < n) {
		struct pollfd p = { .fd = s.fd, .events = POLLIN };
		if (s.out_off < s.out_len)
			p.events |= POLLOUT;
		if (poll(&p, 1, 30000) <= 0) {
			cs_fail(&s, "bench: no progress for 30 s");
			break;
		}
		if ((p.revents & POLLOUT) && s.out_off < s.out_len) {
			ssize_t w = send(s.fd, s.out + s.out_off, s.out_len - s.out_off,
					 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0)
				s.out_off += (size_t)w;
		}
		if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		ssize_t r = recv(s.fd, scratch, 1 << 20, MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
			cs_fail(&s, "bench: connection closed");
			break;
		}
		for (size_t at = 0; r > 0 && at < (size_t)r;) {
			if (frame_left) {
				size_t k = ST_MIN(frame_left, (size_t)r - at);
				frame_left -= k;
				at += k;
				if (!frame_left)
					answered++;
				continue;
			}
			hdr[hdr_have++] = scratch[at++];
			if (hdr_have == 4) {
				hdr_have = 0;
				frame_left = st_be32(hdr);
				if (frame_left != want)
					cs_fail(&s, "bench: response of %zu bytes, want %zu", frame_left, want);
			}
		}
	}
	b->secs = (double)(st_mono_ns() - t0) / 1e9;
	getrusage(RUSAGE_THREAD, &ru1);
	b->client_cpu = cpu_secs(&ru0, &ru1);
	free(scratch);
	cres_take(&b->res, &s);
	cs_free(&s);
	return NULL;
}

static int bench(int argc, char **argv)
{
	size_t total_mib = argc > 2 ? (size_t)atol(argv[2]) : 1024;
	slog_set_level(SLOG_WARN);
	g_file_fd = make_file(FILE_BYTES);
	if (uring_init(&ur, 256) < 0)
		BAIL_OUT("uring_init");
	struct { const char *name; enum net_file_mode mode; size_t below; size_t range; } runs[] = {
		{ "splice", NET_FILE_SPLICE, 0, 4096 },
		{ "read into memory", NET_FILE_SPLICE, SIZE_MAX, 4096 },
		{ "copy (bounce)", NET_FILE_COPY, 0, 4096 },
		{ "splice", NET_FILE_SPLICE, 0, 16384 },
		{ "read into memory", NET_FILE_SPLICE, SIZE_MAX, 16384 },
		{ "splice", NET_FILE_SPLICE, 0, 65536 },
		{ "read into memory", NET_FILE_SPLICE, SIZE_MAX, 65536 },
		{ "copy (bounce)", NET_FILE_COPY, 0, 65536 },
		{ "splice", NET_FILE_SPLICE, 0, 128u << 10 },
		{ "read into memory", NET_FILE_SPLICE, SIZE_MAX, 128u << 10 },
		{ "copy (bounce)", NET_FILE_COPY, 0, 128u << 10 },
		{ "splice", NET_FILE_SPLICE, 0, 256u << 10 },
		{ "copy (bounce)", NET_FILE_COPY, 0, 256u << 10 },
		{ "splice", NET_FILE_SPLICE, 0, 1u << 20 },
		{ "copy (bounce)", NET_FILE_COPY, 0, 1u << 20 },
		{ "splice", NET_FILE_SPLICE, 0, 4u << 20 },
		{ "copy (bounce)", NET_FILE_COPY, 0, 4u << 20 },
	};
	printf("# loopback, one connection, %zu MiB per run (1/8 of it for ranges <= 64 KiB), "
	       "median of 3\n", total_mib);
	for (size_t i = 0; i < ST_ARRAY_LEN(runs); i++) {
		double rate[3], cpu[3];
		size_t total = 0;
		const char *why = "";
		for (int k = 0; k < 3; k++) {
			struct rusage ru0, ru1;
			struct net_config cfg;
			loopback_config(&cfg);
			cfg.file_mode = runs[i].mode;
			cfg.file_copy_below_bytes = runs[i].below;
			if (server_start(&cfg) < 0)
				BAIL_OUT("server start");
			static struct bench_arg b;
			memset(&b, 0, sizeof b);
			b.range_bytes = runs[i].range;
			b.total_bytes = (runs[i].range <= (64u << 10) ? total_mib / 8 : total_mib) << 20;
			getrusage(RUSAGE_SELF, &ru0);
			run_client(c_bench, &b);
			getrusage(RUSAGE_SELF, &ru1);
			total = b.total_bytes;
			rate[k] = (double)b.total_bytes / (1 << 20) / b.secs;
			/* Server CPU (reactor + io-wq workers) per GiB: the process minus the client. */
			cpu[k] = (cpu_secs(&ru0, &ru1) - b.client_cpu) /
				 ((double)b.total_bytes / (1 << 30));
			if (b.res.failed)
				why = "FAILED";
			server_stop_free();
		}
		sort3(rate);
		sort3(cpu);
		printf("# %-18s %5zu KiB ranges: %6.0f MiB/s (min %6.0f, max %6.0f), server CPU "
		       "%5.2f s/GiB, %zu MiB %s\n", runs[i].name, runs[i].range >> 10, rate[1], rate[0],
		       rate[2], cpu[1], total >> 20, why);
		fflush(stdout);
	}
	uring_fini(&ur);
	close(g_file_fd);
	return 0;
}

/* bench-rx: the receive path alone. The client streams frames the handler completes without a
 * response ('N'), then one echoed frame to know all arrived; the server's CPU (this process
 * minus the client thread) per GiB received, by frame size and receive mode. */
struct rx_bench_arg {
	size_t frame_bytes, total_bytes;
	double secs, client_cpu;
	struct cres res;
};

static void *c_rx_bench(void *arg)
{
	struct rx_bench_arg *b = arg;
	struct cs s;
	cs_init(&s);
	s.verify_content = false;
	/* One frame image sent over and over: the client costs only its send syscalls. */
	cs_add(&s, 'N', 0, 0, 0, b->frame_bytes - REQ_HDR, 1);
	size_t n = b->total_bytes / b->frame_bytes, flen = s.out_len;
	struct rusage ru0, ru1;
	getrusage(RUSAGE_THREAD, &ru0);
	int64_t t0 = st_mono_ns();
	for (size_t i = 0; i < n && !s.failed; i++)
		cs_send_all(&s, s.out, flen);
	s.out_off = s.out_len;
	s.nreq = n; /* the echoed frame's sequence number */
	cs_add(&s, 'E', 0, 0, 0, 0, 2);
	if (!s.failed)
		cs_run(&s, SIZE_MAX);
	b->secs = (double)(st_mono_ns() - t0) / 1e9;
	getrusage(RUSAGE_THREAD, &ru1);
	b->client_cpu = cpu_secs(&ru0, &ru1);
	cres_take(&b->res, &s);
	cs_free(&s);
	return NULL;
}

static int bench_rx(int argc, char **argv)
{
	size_t total_mib = argc > 2 ? (size_t)atol(argv[2]) : 1024;
	size_t only_kib = argc > 3 ? (size_t)atol(argv[3]) : 0; /* one frame size only */
	slog_set_level(SLOG_WARN);
	/* As stratad: frames stay on the heap instead of a fresh mmap (and its page faults) each. */
	mallopt(M_MMAP_THRESHOLD, 128 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	g_file_fd = make_file(4096);
	if (uring_init(&ur, 256) < 0)
		BAIL_OUT("uring_init");
	static const size_t sizes[] = { 16u << 10, 32u << 10, 64u << 10, 128u << 10, 256u << 10,
					1u << 20, 4u << 20 };
	static const struct { const char *name; bool no_buf_ring; size_t direct_min; } modes[] = {
		{ "ring, copy", false, 0 },
		{ "ring + direct 64K", false, 64u << 10 },
		{ "ring + direct 16K", false, 16u << 10 },
		{ "plain, copy", true, 0 },
		{ "plain + direct", true, 64u << 10 },
	};
	printf("# loopback, one connection, %zu MiB of frames per run, median of 3; server CPU = "
	       "process - client thread\n", total_mib);
	for (size_t i = 0; i < ST_ARRAY_LEN(sizes); i++)
		for (size_t m = 0; m < ST_ARRAY_LEN(modes) && (!only_kib || only_kib << 10 == sizes[i]);
		     m++) {
			double rate[3], cpu[3];
			const char *why = "";
			uint64_t direct_bytes = 0;
			for (int k = 0; k < 3; k++) {
				struct net_config cfg;
				loopback_config(&cfg);
				cfg.no_buf_ring = modes[m].no_buf_ring;
				cfg.recv_direct_min_bytes = modes[m].direct_min;
				if (server_start(&cfg) < 0)
					BAIL_OUT("server start");
				static struct rx_bench_arg b;
				memset(&b, 0, sizeof b);
				b.frame_bytes = sizes[i];
				b.total_bytes = total_mib << 20;
				struct rusage ru0, ru1;
				getrusage(RUSAGE_SELF, &ru0);
				run_client(c_rx_bench, &b);
				getrusage(RUSAGE_SELF, &ru1);
				rate[k] = (double)b.total_bytes / (1 << 20) / b.secs;
				cpu[k] = (cpu_secs(&ru0, &ru1) - b.client_cpu) /
					 ((double)b.total_bytes / (1 << 30));
				if (b.res.failed)
					why = "FAILED";
				struct net_stats st;
				net_server_stats(srv, &st);
				direct_bytes += st.recv_direct_bytes;
				server_stop_free();
			}
			sort3(rate);
			sort3(cpu);
			printf("# %5zu KiB frames  %-17s %6.0f MiB/s (%6.0f..%6.0f), server CPU %5.3f s/GiB "
			       "(%5.3f..%5.3f), direct %3.0f%% %s\n", sizes[i] >> 10, modes[m].name,
			       rate[1], rate[0], rate[2], cpu[1], cpu[0], cpu[2],
			       100.0 * (double)direct_bytes / (3.0 * (double)(total_mib << 20)), why);
			fflush(stdout);
		}
	uring_fini(&ur);
	close(g_file_fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "bench") == 0)
		return bench(argc, argv);
	if (argc > 1 && strcmp(argv[1], "bench-rx") == 0)
		return bench_rx(argc, argv);
	g_file_fd = make_file(FILE_BYTES);
	test_chain(g_file_fd);
	if (uring_init(&ur, 256) < 0)
		BAIL_OUT("uring_init");

	struct net_config cfg;
	loopback_config(&cfg);
	ok(cfg.max_request_bytes == 104857600, "defaults: socket.request.max.bytes = 100 MiB");
	cfg.max_request_bytes = 16 << 20;
	cfg.max_outstanding_bytes = 1 << 20;
	cfg.max_inflight_requests = 64;
	cfg.send_buffer_bytes = 64 * 1024;
	cfg.receive_buffer_bytes = 64 * 1024;
	cfg.file_copy_below_bytes = 4096;
	run_suite("buffer ring + multishot accept + splice", &cfg);

	cfg.no_buf_ring = true;
	cfg.no_multishot_accept = true;
	cfg.file_mode = NET_FILE_COPY;
	cfg.host = "0.0.0.0";
	run_suite("plain recv + single accept + copy", &cfg);

	cfg.file_mode = NET_FILE_SPLICE;
	cfg.file_copy_below_bytes = 0;
	cfg.pipe_bytes = 0; /* the kernel's default pipe size: more partial splices */
	cfg.max_pipes = 2;  /* connections stalled in a splice exhaust the pool: copy meanwhile */
	cfg.max_inflight_requests = 1000;
	cfg.max_outstanding_bytes = 64 << 20;
	cfg.send_buffer_bytes = 0;
	cfg.receive_buffer_bytes = 0;
	cfg.no_multishot_accept = false;
	run_suite("plain recv + splice + default limits", &cfg);

	/* Direct receive off; then a small ring of small buffers that runs dry (-ENOBUFS) and a
	 * low threshold, so that many frames switch. */
	struct net_config dcfg;
	loopback_config(&dcfg);
	dcfg.max_request_bytes = 16 << 20;
	dcfg.recv_direct_min_bytes = 0;
	run_direct_suite("buffer ring, direct recv off", &dcfg);
	dcfg.recv_direct_min_bytes = 8192;
	dcfg.buf_ring_entries = 4;
	dcfg.buf_ring_buf_bytes = 4096;
	run_direct_suite("buffer ring of 4 x 4 KiB, direct recv from 8 KiB", &dcfg);

	test_ipv6();
	test_max_connections();

	/* Freed at once after start (an error path): the cancelled accept cleans up later. */
	struct net_config quick;
	loopback_config(&quick);
	struct net_server *s1 = NULL, *s3 = NULL;
	ok(net_server_start(&ur, &quick, &handler, &s1) == 0, "start, then free at once");
	net_server_stop(s1);
	net_server_free(s1);
	ok(net_server_start(&ur, &quick, &handler, &s3) == 0 && (uring_submit(&ur), 1),
	   "start, submit the accept, free without stop");
	net_server_free(s3);
	ok(uring_drain(&ur) == 0 && ur.inflight == 0, "the orphaned accepts completed");

	struct net_config bad;
	net_config_defaults(&bad);
	bad.host = "not an address";
	bad.port = 0;
	struct net_server *s2 = NULL;
	ok(net_server_start(&ur, &bad, &handler, &s2) < 0 && !s2, "bad host refused");

	uring_fini(&ur);
	close(g_file_fd);
	return tap_done();
}
