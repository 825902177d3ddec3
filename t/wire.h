/* t/wire.h -- a blocking Kafka wire client for the raw-protocol tests (t/admin_wire.c,
 * t/group_wire.c): connect to 127.0.0.1:g_port, send a request with the generated header codec,
 * read one response frame into the arena A. Header-only; define WIRE_CLIENT_ID first. */
#ifndef STRATA_T_WIRE_H
#define STRATA_T_WIRE_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

#include "strata/arena.h"
#include "strata/kio.h"
#include "strata/kmsg.h"

#ifndef WIRE_TIMEOUT_MS
#define WIRE_TIMEOUT_MS 30000
#endif

static struct arena A;   /* every decoded response of the current check; reset between checks */
static int32_t next_corr = 1;
static int g_port;

/* --- transport ----------------------------------------------------------------------------- */

static inline int conn_open(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)g_port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static inline int io_full(int fd, void *buf, size_t len, bool writing)
{
	size_t off = 0;
	while (off < len) {
		struct pollfd p = { .fd = fd, .events = writing ? POLLOUT : POLLIN };
		int pr = poll(&p, 1, WIRE_TIMEOUT_MS);
		if (pr == 0)
			return -ETIMEDOUT;
		if (pr < 0 && errno != EINTR)
			return -errno;
		if (pr < 0)
			continue;
		ssize_t n = writing ? write(fd, (char *)buf + off, len - off)
				    : read(fd, (char *)buf + off, len - off);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			return -errno;
		if (n > 0)
			off += (size_t)n;
	}
	return 0;
}

/* Sends header + body; returns the correlation id used, or -errno. */
static inline int32_t wire_send(int fd, int16_t key, int16_t ver, const struct kw *body)
{
	struct kw w;
	kw_init(&w, 256);
	size_t at = kw_reserve(&w, 4);
	struct kmsg_request_header h;
	kmsg_request_header_init(&h);
	h.request_api_key = key;
	h.request_api_version = ver;
	h.correlation_id = next_corr++;
	h.client_id = KSTR_LIT(WIRE_CLIENT_ID);
	int rc = kmsg_request_header_encode(&w, (int16_t)kmsg_request_header_version(key, ver), &h);
	kw_raw(&w, body->p, body->len);
	kw_patch_i32(&w, at, (int32_t)(w.len - 4));
	if (rc == 0 && w.err)
		rc = w.err;
	if (rc == 0)
		rc = io_full(fd, w.p, w.len, true);
	kw_free(&w);
	return rc < 0 ? rc : h.correlation_id;
}

/* Reads one response frame into the arena; r is positioned at the body. */
static inline int wire_recv(int fd, int16_t key, int16_t ver, int32_t corr, struct kr *r)
{
	uint8_t lenb[4];
	int rc = io_full(fd, lenb, 4, false);
	if (rc < 0)
		return rc;
	uint32_t len = ((uint32_t)lenb[0] << 24) | ((uint32_t)lenb[1] << 16) | ((uint32_t)lenb[2] << 8) |
		       lenb[3];
	if (len > (64u << 20))
		return -EMSGSIZE;
	uint8_t *buf = arena_alloc(&A, len);
	if (!buf)
		return -ENOMEM;
	if ((rc = io_full(fd, buf, len, false)) < 0)
		return rc;
	kr_init(r, buf, len);
	struct kmsg_response_header h;
	kmsg_response_header_init(&h);
	if (kmsg_response_header_decode(r, (int16_t)kmsg_response_header_version(key, ver), &h, &A) < 0)
		return -EBADMSG;
	if (h.correlation_id != corr)
		return -EPROTO;
	return 0;
}

#endif
