/* net.c -- the TCP reactor: accept, Kafka size-prefixed framing, in-order responses per
 * connection, backpressure. Owns sockets, frame buffers, send queues and the provided-buffer
 * ring; must not decode Kafka requests, block the reactor thread (sockets are O_NONBLOCK and
 * only touched through io_uring; setup/teardown syscalls like setsockopt/shutdown/close never
 * block) or keep any per-connection state the handler could not reach through on_close.
 *
 * Receive. Multishot recv with a provided-buffer ring shared by all connections of the server
 * (one CQE per chunk, no per-connection buffer sitting idle); each chunk is copied out at once
 * into the request's own frame buffer (malloc'd by the size prefix: the first 1 MiB, the rest
 * once that much arrived, so a 4-byte lie does not cost 100 MiB) and the ring buffer is
 * recycled. Fallback (no buffer ring, no multishot recv, or cfg.no_buf_ring): single-shot recv
 * into a 64 KiB per-connection buffer.
 * Large frames skip the staging copy (it was ~9% of the broker's CPU at 540 MB/s of produce):
 * once a frame's size is known and at least cfg.recv_direct_min_bytes of it are still to come,
 * a plain single recv goes straight into the frame's remaining bytes, re-issued after every
 * partial receive until the frame is complete (also when less than the minimum is left).
 * Around that, a connection takes single-buffer recvs (one ring buffer per recv, no multishot)
 * while it is new and for NET_SINGLE_RECVS recvs after a large frame's size prefix, and the
 * multishot recv otherwise. The reason: a multishot recv is greedy. While the socket has data
 * its task work keeps taking buffers each time this thread enters the kernel (seen in t/net.t
 * on loopback: the whole ring, 256 CQEs, before the reactor got to the first), so a cancel
 * arrives after most of a large frame went through the ring. After a single-buffer recv the choice is
 * made again with the size prefix in hand. When a large frame still meets an armed multishot
 * recv, that is cancelled (submitted at once) and its remaining CQEs -- data it already took
 * off the socket -- are cut into frames as usual; the direct recv is only issued after its
 * final CQE, so no byte is reordered. Bytes of a chunk past the current frame always go into
 * the next frames at once (rx_bytes), nothing stays behind in a ring buffer.
 *
 * Files. A file link (a log segment slice) goes file -> pipe -> socket with two
 * sequential IORING_OP_SPLICEs: the page-cache pages are referenced by the pipe, never copied
 * into user space, and io_uring has no sendfile. Sequential rather than IOSQE_IO_LINKed because
 * a short splice breaks a link chain anyway (the second would be cancelled) and the pipe must be
 * drained exactly. The socket is O_NONBLOCK so the pipe->socket splice (run by an io-wq worker)
 * returns -EAGAIN instead of parking a worker on a full send buffer; we then poll for POLLOUT.
 * Pipes come from a per-server pool (see struct net_pipe), lent while a range is spliced.
 * Fallbacks: when no pipe is available (pool of cfg.max_pipes exhausted, fd limit) or
 * cfg.file_mode = NET_FILE_COPY, ranges are read into a 256 KiB bounce buffer and sent.
 * Ranges shorter than cfg.file_copy_below_bytes (default 128 KiB) are read into memory (the
 * reads of one send window run concurrently, at most 1 MiB per connection) and sent with the
 * memory links around them in one sendmsg: a splice pair costs two io-wq punts plus a TCP
 * segment of its own per range, a read is a page-cache hit completed inline.
 * Measured with `t/net.t bench` (loopback, one connection, 2-core VM shared with other builds,
 * kernel 6.18, page cache warm; medians of 3, noisy by +-30%; server CPU = reactor + io-wq):
 *   range     splice MiB/s, CPU s/GiB   read into memory       copy (bounce)
 *   4 KiB     50-120,    7-15           760-970,   1.0          300-520,   2.0
 *   16 KiB    200-340,   2.1-3.7        800-1800,  0.5-0.6      -
 *   64 KiB    600-1200,  0.6-1.2        900-2800,  0.3-0.4      740-1800,  0.3-0.6
 *   128 KiB   1000-1900, 0.4-0.7        1500-3500, 0.24-0.28    960-2200,  0.3-0.5
 *   256 KiB   1700-4200, 0.23-0.31      -                       1200-2400, 0.26-0.42
 *   1 MiB     1900-2800, 0.33-0.34      -                       2000-2700, 0.30-0.37
 *   4 MiB     1950-2350, 0.38           -                       2150-2700, 0.37-0.42
 * So: small ranges are much cheaper read into memory; from 256 KiB up splice is as fast as the
 * copy on loopback, where the receiver's copy and the loopback stack dominate and the saved
 * server-side copy hardly shows. Splice stays the default for large ranges because on a real
 * NIC it saves the copy and the memory bandwidth, and keeps user memory flat (the pipe only
 * references page-cache pages).
 *
 * Order and lifetime. Requests of a connection sit in a FIFO in arrival order; a completed one is
 * moved to the send queue only when everything before it was, so a late request never lets a
 * later response overtake it. A connection is freed when it is closed, no operation is in flight
 * and the handler completed every request it was handed (closed connections drop responses).
 *
 * Scaling. One net_server per reactor thread: start N servers on N rings with cfg.reuse_port and
 * the kernel spreads connections over them (SO_REUSEPORT); or one acceptor hands fds to reactors
 * (IORING_OP_MSG_RING). Nothing here is shared between servers except the buffer group id
 * counter, so either works without locks. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "strata/common.h"
#include "strata/net.h"
#include "strata/slog.h"

#define NET_IOV_MAX 64
#define NET_RXBUF_BYTES (64 * 1024)
/* Single-buffer recvs on a new connection and after a large frame, before multishot again. */
#define NET_SINGLE_RECVS 32
#define NET_FRAME_FIRST_ALLOC_BYTES (1024 * 1024)
#define NET_BOUNCE_BYTES (256 * 1024)
#define NET_INLINE_WINDOW_BYTES (1024 * 1024)
#define NET_ACCEPT_RETRY_MS 100
#define NET_MAX_BUF_RING_ENTRIES 32768

enum req_state { REQ_ASSEMBLING = 1, REQ_HELD, REQ_HANDLER, REQ_DONE, REQ_DONE_NONE };
enum rx_state { RX_IDLE = 0, RX_ARMED, RX_CANCELING };
/* What the armed (or last) recv is. */
enum rx_kind {
	RXK_MULTISHOT = 0, /* multishot, buffer ring */
	RXK_BUF_ONE,       /* single shot, one ring buffer: right after a frame received directly */
	RXK_DIRECT,        /* single shot into the current frame's remaining bytes */
	RXK_STAGING,       /* single shot into rxbuf (no buffer ring) */
};
enum tx_state {
	TX_IDLE = 0, TX_SEND, TX_SPLICE_IN, TX_SPLICE_OUT, TX_POLL, TX_READ, TX_SEND_BOUNCE,
	TX_READ_SMALL,
};

/* A splice pipe. Pooled per server: a pipe's buffer counts against the per-user pipe quota
 * (fs.pipe-user-pages-soft) whether used or not, so connections borrow one only while a file
 * link is being spliced, and at most cfg.max_pipes exist; without one, the copy path is used. */
struct net_pipe {
	int r, w;
	size_t cap;
};

struct net_conn {
	struct net_server *srv;
	struct net_conn *prev, *next;   /* the server's list of live connections */
	int fd;
	uint64_t id;
	void *user;
	struct sockaddr_storage peer;
	char peer_str[64];
	bool closed;
	bool paused;
	uint32_t ops;                   /* our SQEs whose final CQE has not arrived */
	uint32_t busy;                  /* callbacks on the stack: do not free */
	struct uring_timer resume_timer;

	/* receive */
	struct uring_op recv_op;
	uint8_t rx_state;
	bool rx_multishot;              /* the buffer ring is used (multishot recv works) */
	uint8_t rx_kind;                /* enum rx_kind of the armed recv */
	uint8_t rx_single_left;         /* recvs still to take a single ring buffer (RXK_BUF_ONE)
	                                   before the multishot recv is armed again */
	bool cur_direct;                /* cur is being received directly, to its end */
	uint8_t hdr_have;
	uint8_t hdr[4];
	struct net_req *cur;            /* frame being assembled */
	struct net_req *held_head, *held_tail; /* complete, not handed out (paused) */
	uint8_t *rxbuf;

	/* requests handed out, in arrival order, until their response is queued */
	struct net_req *fifo_head, *fifo_tail;
	uint32_t fifo_len;
	uint32_t handler_held;          /* handed out, not completed (also after close) */
	uint64_t next_seq;
	size_t req_bytes;               /* frame bytes of handler_held requests */
	size_t resp_bytes;              /* completed, unsent response bytes */

	/* send */
	struct uring_op tx_op;
	uint8_t tx_state;
	uint32_t reads_pending;         /* TX_READ_SMALL */
	int reads_err;
	struct chain txq;
	struct msghdr msg;
	struct iovec iov[NET_IOV_MAX];
	struct net_pipe pipe;           /* borrowed from the server's pool while splicing */
	size_t pipe_fill;               /* bytes of the head file link sitting in the pipe */
	uint8_t *bounce;
	size_t bounce_len, bounce_sent; /* bytes of the head file link in the bounce buffer */
};

/* The accept op lives apart from the server so net_server_free need not wait for the cancelled
 * accept's last completion: an orphaned acceptor frees itself then. */
struct net_acceptor {
	struct uring_op op;
	struct net_server *s;           /* NULL once the server was freed */
	int lfd;
};

struct net_server {
	struct uring *ur;
	struct net_config cfg;
	struct net_handler h;
	int lfd;
	uint16_t port;
	bool stopping;
	bool accept_armed;
	bool accept_multishot;
	struct net_acceptor *acceptor;
	struct uring_timer accept_retry;
	struct io_uring_buf_ring *br;
	uint8_t *br_bufs;
	uint16_t bgid;
	bool br_registered;
	bool br_active;
	struct net_conn *conns;
	uint64_t next_conn_id;
	struct net_pipe *pipes_free;    /* max_pipes slots */
	uint32_t pipes_free_len;
	bool pipe_create_failed_logged;
	struct net_stats st;
};

/* Buffer group ids must be unique per ring; a process-wide counter keeps servers apart. */
static atomic_uint net_next_bgid = 0x4e00;

static void conn_close(struct net_conn *c, enum slog_level lvl, const char *why);
static void conn_maybe_free(struct net_conn *c);
static void rx_arm(struct net_conn *c);
static void tx_kick(struct net_conn *c);

void net_config_defaults(struct net_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->host = NULL;
	cfg->port = 9092;
	cfg->max_request_bytes = 104857600;
	cfg->max_outstanding_bytes = (size_t)64 << 20;
	cfg->max_inflight_requests = 1000;
	cfg->max_connections = 65536;
	cfg->backlog = 1024;
	cfg->file_mode = NET_FILE_SPLICE;
	cfg->file_copy_below_bytes = 128 * 1024;
	cfg->pipe_bytes = (size_t)1 << 20;
	cfg->max_pipes = 32;
	cfg->buf_ring_entries = 256;
	cfg->buf_ring_buf_bytes = 16 * 1024;
	cfg->recv_direct_min_bytes = 64 * 1024;
}

/* --- requests ------------------------------------------------------------------------------ */

static struct net_req *req_new(struct net_conn *c, size_t len)
{
	struct net_req *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	size_t cap = ST_MIN(len, (size_t)NET_FRAME_FIRST_ALLOC_BYTES);
	r->buf_ = malloc(cap ? cap : 1);
	if (!r->buf_) {
		free(r);
		return NULL;
	}
	r->cap_ = cap;
	r->len = len;
	r->conn = c;
	r->state_ = REQ_ASSEMBLING;
	chain_init(&r->resp_);
	return r;
}

/* The whole frame once more than the first allocation is needed (one realloc at most). */
static int req_grow(struct net_req *r, size_t need)
{
	if (need <= r->cap_)
		return 0;
	uint8_t *b = realloc(r->buf_, r->len);
	if (!b)
		return -ENOMEM;
	r->buf_ = b;
	r->cap_ = r->len;
	return 0;
}

static void req_free(struct net_req *r)
{
	free(r->buf_);
	chain_release(&r->resp_);
	free(r);
}

static void req_free_cb(void *ctx)
{
	req_free(ctx);
}

static void conn_note_peaks(struct net_conn *c)
{
	struct net_stats *st = &c->srv->st;
	uint64_t o = (uint64_t)c->req_bytes + c->resp_bytes;
	if (o > st->peak_outstanding_bytes)
		st->peak_outstanding_bytes = o;
	if (c->fifo_len > st->peak_inflight_requests)
		st->peak_inflight_requests = c->fifo_len;
}

/* --- backpressure -------------------------------------------------------------------------- */

static bool conn_over_limits(const struct net_conn *c)
{
	const struct net_config *cfg = &c->srv->cfg;
	/* Something must be in progress to ever resume: with nothing outstanding, never stop. */
	if (!c->fifo_len && !c->resp_bytes && !c->req_bytes)
		return false;
	return c->fifo_len >= cfg->max_inflight_requests ||
	       c->req_bytes + c->resp_bytes >= cfg->max_outstanding_bytes;
}

static bool conn_can_resume(const struct net_conn *c)
{
	const struct net_config *cfg = &c->srv->cfg;
	return c->fifo_len <= cfg->max_inflight_requests / 2 &&
	       c->req_bytes + c->resp_bytes <= cfg->max_outstanding_bytes / 2;
}

/* Stops an armed multishot recv. It still delivers the CQEs of data it took off the socket, then
 * a final CQE (-ECANCELED, or whatever ended it first); rx_state is RX_IDLE after that one.
 * Submitted at once: queued, the cancel would wait until the completion queue is drained, and
 * while the socket has data the multishot recv keeps filling it (its task work runs whenever
 * this thread enters the kernel), so it could take a whole large frame through the ring. */
static void rx_cancel_multishot(struct net_conn *c)
{
	ST_ASSERT(c->rx_state == RX_ARMED && c->rx_kind == RXK_MULTISHOT);
	struct uring *ur = c->srv->ur;
	struct io_uring_sqe *sqe = uring_get_sqe(ur);
	io_uring_prep_cancel(sqe, &c->recv_op, 0);
	uring_sqe_data(sqe, NULL);
	c->rx_state = RX_CANCELING;
	(void)uring_submit(ur); /* on failure it goes with the next submit */
}

static void rx_pause(struct net_conn *c)
{
	struct net_server *s = c->srv;
	if (c->paused)
		return;
	c->paused = true;
	s->st.pauses_total++;
	s->st.paused_connections++;
	/* A multishot recv runs until cancelled; a single recv in flight just is not re-armed.
	 * Data that still arrives is assembled but held, not handed out, until resumed. */
	if (c->rx_state == RX_ARMED && c->rx_kind == RXK_MULTISHOT)
		rx_cancel_multishot(c);
}

/* Stops reading as soon as the limits are passed, not only when the next frame is complete:
 * a large frame in progress is not buffered on top of an over-limit backlog. */
static void conn_check_pause(struct net_conn *c)
{
	if (!c->paused && !c->closed && conn_over_limits(c))
		rx_pause(c);
}

/* Resuming runs from a zero-delay timer, never inside net_respond: the handler must not see
 * on_request re-entered from its own net_respond call. */
static void conn_check_resume(struct net_conn *c)
{
	struct net_server *s = c->srv;
	if (!c->paused || c->closed || !conn_can_resume(c))
		return;
	c->paused = false;
	s->st.resumes_total++;
	s->st.paused_connections--;
	uring_timer_arm(s->ur, &c->resume_timer, 0);
}

static void req_dispatch(struct net_conn *c, struct net_req *r)
{
	struct net_server *s = c->srv;
	r->seq = c->next_seq++;
	r->state_ = REQ_HANDLER;
	r->next_ = NULL;
	if (c->fifo_tail)
		c->fifo_tail->next_ = r;
	else
		c->fifo_head = r;
	c->fifo_tail = r;
	c->fifo_len++;
	c->handler_held++;
	c->req_bytes += r->len;
	s->st.requests_total++;
	conn_note_peaks(c);
	s->h.on_request(s->h.ctx, r);
}

/* Hands held frames to the handler while the limits allow. */
static void rx_dispatch(struct net_conn *c)
{
	/* Bounded by the held queue, which only shrinks here. */
	while (c->held_head && !c->closed && !c->paused) {
		if (conn_over_limits(c)) {
			rx_pause(c);
			return;
		}
		struct net_req *r = c->held_head;
		c->held_head = r->next_;
		if (!c->held_head)
			c->held_tail = NULL;
		req_dispatch(c, r);
	}
	conn_check_pause(c);
}

static void resume_fire(struct uring_timer *t)
{
	struct net_conn *c = ST_CONTAINER_OF(t, struct net_conn, resume_timer);
	c->busy++;
	rx_dispatch(c);
	if (!c->closed && !c->paused && c->rx_state == RX_IDLE)
		rx_arm(c);
	c->busy--;
	conn_maybe_free(c);
}

/* --- receive ------------------------------------------------------------------------------- */

static void frame_complete(struct net_conn *c)
{
	struct net_req *r = c->cur;
	c->cur = NULL;
	c->cur_direct = false;
	r->data = r->buf_;
	r->state_ = REQ_HELD;
	r->next_ = NULL;
	if (c->held_tail)
		c->held_tail->next_ = r;
	else
		c->held_head = r;
	c->held_tail = r;
	rx_dispatch(c);
}

/* Cuts n received bytes into frames: many frames per chunk, frames over many chunks. */
static void rx_bytes(struct net_conn *c, const uint8_t *p, size_t n)
{
	struct net_server *s = c->srv;
	/* Bounded: every iteration consumes input or completes a (zero-length) frame. */
	while (n > 0 && !c->closed) {
		struct net_req *r = c->cur;
		if (!r) {
			size_t take = ST_MIN((size_t)(4 - c->hdr_have), n);
			memcpy(c->hdr + c->hdr_have, p, take);
			c->hdr_have = (uint8_t)(c->hdr_have + take);
			p += take;
			n -= take;
			if (c->hdr_have < 4)
				return;
			c->hdr_have = 0;
			int32_t size = (int32_t)st_be32(c->hdr);
			if (size < 0 || size > s->cfg.max_request_bytes) {
				s->st.rejected_frames_total++;
				slog_warn("net", "peer=%s frame size=%" PRId32 " outside 0..%" PRId32
					  " (socket.request.max.bytes): closing the connection",
					  c->peer_str, size, s->cfg.max_request_bytes);
				conn_close(c, SLOG_DEBUG, "invalid frame size");
				return;
			}
			r = req_new(c, (size_t)size);
			if (!r) {
				slog_error("net", "peer=%s no memory for a frame of %" PRId32
					   " bytes: closing the connection", c->peer_str, size);
				conn_close(c, SLOG_DEBUG, "out of memory");
				return;
			}
			c->cur = r;
			if (s->cfg.recv_direct_min_bytes && r->len >= s->cfg.recv_direct_min_bytes)
				c->rx_single_left = NET_SINGLE_RECVS;
		} else {
			size_t take = ST_MIN(r->len - r->have_, n);
			if (req_grow(r, r->have_ + take) < 0) {
				slog_error("net", "peer=%s no memory for a frame of %zu bytes: closing "
					   "the connection", c->peer_str, r->len);
				conn_close(c, SLOG_DEBUG, "out of memory");
				return;
			}
			memcpy(r->buf_ + r->have_, p, take);
			r->have_ += take;
			p += take;
			n -= take;
		}
		if (r->have_ == r->len)
			frame_complete(c);
	}
}

static void br_recycle(struct net_server *s, uint16_t bid)
{
	io_uring_buf_ring_add(s->br, s->br_bufs + (size_t)bid * s->cfg.buf_ring_buf_bytes,
			      s->cfg.buf_ring_buf_bytes, bid,
			      io_uring_buf_ring_mask(s->cfg.buf_ring_entries), 0);
	io_uring_buf_ring_advance(s->br, 1);
}

static void rx_error(struct net_conn *c, enum rx_kind kind, int res)
{
	struct net_server *s = c->srv;
	switch (res) {
	case -ENOBUFS:   /* the shared ring ran dry for a moment: buffers are back, re-arm */
		s->st.buf_ring_empty++;
		return;
	case -ECANCELED: /* our pause, or the switch to a direct recv */
	case -EINTR:
	case -EAGAIN:
		return;
	case -EINVAL:
		if (kind == RXK_MULTISHOT) {
			if (s->br_active)
				slog_info("net", "multishot recv unsupported by the kernel: using plain recv");
			s->br_active = false;
			s->st.buf_ring = false;
			c->rx_multishot = false;
			return;
		}
		break;
	default:
		break;
	}
	char why[96];
	snprintf(why, sizeof why, "recv: %s", strerror(-res));
	conn_close(c, res == -ECONNRESET ? SLOG_DEBUG : SLOG_INFO, why);
}

/* Whether the rest of the current frame should be received straight into its buffer: once
 * started, to the frame's end (its tail would otherwise be copied after a short recv). */
static bool rx_wants_direct(const struct net_conn *c)
{
	const struct net_req *r = c->cur;
	size_t min = c->srv->cfg.recv_direct_min_bytes;
	return r && (c->cur_direct || (min && r->len - r->have_ >= min));
}

static void recv_cb(struct uring_op *op, int res, uint32_t flags)
{
	struct net_conn *c = ST_CONTAINER_OF(op, struct net_conn, recv_op);
	struct net_server *s = c->srv;
	enum rx_kind kind = (enum rx_kind)c->rx_kind;
	c->busy++;
	if (!(flags & IORING_CQE_F_MORE)) {
		ST_ASSERT(c->rx_state != RX_IDLE && c->ops > 0);
		c->rx_state = RX_IDLE;
		c->ops--;
	}
	if (flags & IORING_CQE_F_BUFFER) {
		uint32_t bid = flags >> IORING_CQE_BUFFER_SHIFT;
		ST_ASSERT(kind == RXK_MULTISHOT || kind == RXK_BUF_ONE);
		ST_ASSERT(bid < s->cfg.buf_ring_entries);
		ST_ASSERT(res <= (int)s->cfg.buf_ring_buf_bytes);
		if (res > 0 && !c->closed) {
			s->st.bytes_in += (uint64_t)res;
			rx_bytes(c, s->br_bufs + (size_t)bid * s->cfg.buf_ring_buf_bytes, (size_t)res);
		}
		br_recycle(s, (uint16_t)bid);
	} else if (res > 0 && !c->closed) {
		s->st.bytes_in += (uint64_t)res;
		if (kind == RXK_DIRECT) {
			struct net_req *r = c->cur;
			ST_ASSERT(r && r->have_ + (size_t)res <= ST_MIN(r->cap_, r->len));
			s->st.recv_direct_bytes += (uint64_t)res;
			r->have_ += (size_t)res;
			if (r->have_ == r->len) {
				s->st.recv_direct_frames++;
				frame_complete(c);
			}
		} else {
			ST_ASSERT(kind == RXK_STAGING);
			rx_bytes(c, c->rxbuf, (size_t)res);
		}
	}
	if (kind == RXK_BUF_ONE && c->rx_single_left)
		c->rx_single_left--;
	if (!c->closed) {
		if (res == 0)
			conn_close(c, SLOG_DEBUG, "peer closed");
		else if (res < 0)
			rx_error(c, kind, res);
	}
	if (!c->closed && !c->paused) {
		if (c->rx_state == RX_IDLE) {
			rx_arm(c);
		} else if (c->rx_state == RX_ARMED && kind == RXK_MULTISHOT && rx_wants_direct(c)) {
			/* The rest of a large frame: stop the multishot, then recv directly. */
			s->st.recv_multishot_cancels++;
			rx_cancel_multishot(c);
		}
	}
	c->busy--;
	conn_maybe_free(c);
}

static void rx_arm(struct net_conn *c)
{
	struct net_server *s = c->srv;
	ST_ASSERT(c->rx_state == RX_IDLE && !c->closed);
	struct io_uring_sqe *sqe;
	if (rx_wants_direct(c)) {
		struct net_req *r = c->cur;
		if (r->cap_ == r->have_ && req_grow(r, r->have_ + 1) < 0) {
			slog_error("net", "peer=%s no memory for a frame of %zu bytes: closing "
				   "the connection", c->peer_str, r->len);
			conn_close(c, SLOG_DEBUG, "out of memory");
			return;
		}
		/* No MSG_WAITALL: a partial receive comes back here, so a pause stops reading
		 * mid-frame (measured: no CPU difference on loopback). */
		size_t len = ST_MIN(r->cap_, r->len) - r->have_;
		sqe = uring_get_sqe(s->ur);
		io_uring_prep_recv(sqe, c->fd, r->buf_ + r->have_, ST_MIN(len, (size_t)INT32_MAX), 0);
		c->rx_kind = RXK_DIRECT;
		c->cur_direct = true;
	} else if (c->rx_multishot && c->rx_single_left) {
		sqe = uring_get_sqe(s->ur);
		io_uring_prep_recv(sqe, c->fd, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = s->bgid;
		c->rx_kind = RXK_BUF_ONE;
	} else if (c->rx_multishot) {
		sqe = uring_get_sqe(s->ur);
		io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = s->bgid;
		c->rx_kind = RXK_MULTISHOT;
	} else {
		if (!c->rxbuf && !(c->rxbuf = malloc(NET_RXBUF_BYTES))) {
			conn_close(c, SLOG_ERROR, "out of memory for a receive buffer");
			return;
		}
		sqe = uring_get_sqe(s->ur);
		io_uring_prep_recv(sqe, c->fd, c->rxbuf, NET_RXBUF_BYTES, 0);
		c->rx_kind = RXK_STAGING;
	}
	uring_sqe_data(sqe, &c->recv_op);
	c->rx_state = RX_ARMED;
	c->ops++;
}

/* --- send ---------------------------------------------------------------------------------- */

static void tx_consumed(struct net_conn *c, size_t n)
{
	ST_ASSERT(n <= c->resp_bytes && n <= chain_len(&c->txq));
	c->resp_bytes -= n;
	c->srv->st.bytes_out += n;
	chain_consume(&c->txq, n);
}

static void tx_fail(struct net_conn *c, int err, const char *what)
{
	char why[128];
	snprintf(why, sizeof why, "%s: %s", what, strerror(-err));
	bool routine = err == -EPIPE || err == -ECONNRESET || err == -ECANCELED;
	conn_close(c, routine ? SLOG_DEBUG : SLOG_WARN, why);
}

static void tx_submit(struct net_conn *c, struct io_uring_sqe *sqe, enum tx_state st)
{
	uring_sqe_data(sqe, &c->tx_op);
	c->tx_state = (uint8_t)st;
	c->ops++;
}

static void tx_send_mem(struct net_conn *c)
{
	unsigned n = 0;
	struct chain_link *l = c->txq.head;
	for (; l && l->kind == CHAIN_MEM && n < NET_IOV_MAX; l = l->next) {
		size_t left = l->len - l->done;
		if (!left)
			continue;
		c->iov[n].iov_base = (void *)(uintptr_t)(l->ptr + l->done);
		c->iov[n].iov_len = left;
		n++;
	}
	ST_ASSERT(n > 0);
	memset(&c->msg, 0, sizeof c->msg);
	c->msg.msg_iov = c->iov;
	c->msg.msg_iovlen = n;
	/* MSG_MORE only when the rest is already queued: it will be pushed right after. */
	struct io_uring_sqe *sqe = uring_get_sqe(c->srv->ur);
	io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL | (l ? MSG_MORE : 0));
	tx_submit(c, sqe, TX_SEND);
}

/* Borrows a pipe for c: 0, or -EBUSY / -errno when the copy path must be used this time. */
static int conn_pipe(struct net_conn *c)
{
	struct net_server *s = c->srv;
	if (c->pipe.r >= 0)
		return 0;
	if (s->pipes_free_len) {
		c->pipe = s->pipes_free[--s->pipes_free_len];
		return 0;
	}
	if (s->st.pipes >= s->cfg.max_pipes)
		return -EBUSY;
	int fds[2];
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
		int err = errno;
		if (!s->pipe_create_failed_logged)
			slog_warn("net", "no splice pipe (%s): copying file ranges meanwhile",
				  strerror(err));
		s->pipe_create_failed_logged = true;
		return -err;
	}
	/* May fail past fs.pipe-max-size or the per-user pipe quota: the default size still works. */
	if (s->cfg.pipe_bytes)
		(void)fcntl(fds[1], F_SETPIPE_SZ, (int)ST_MIN(s->cfg.pipe_bytes, (size_t)INT32_MAX));
	int cap = fcntl(fds[1], F_GETPIPE_SZ);
	c->pipe = (struct net_pipe){ .r = fds[0], .w = fds[1], .cap = cap > 0 ? (size_t)cap : 4096 };
	s->st.pipes++;
	return 0;
}

/* Returns c's pipe to the pool when it is known empty, else closes it. */
static void conn_pipe_put(struct net_conn *c, bool known_empty)
{
	struct net_server *s = c->srv;
	if (c->pipe.r < 0)
		return;
	if (known_empty && c->pipe_fill == 0 && s->pipes_free_len < s->cfg.max_pipes) {
		s->pipes_free[s->pipes_free_len++] = c->pipe;
	} else {
		close(c->pipe.r);
		close(c->pipe.w);
		s->st.pipes--;
	}
	c->pipe = (struct net_pipe){ .r = -1, .w = -1, .cap = 0 };
	c->pipe_fill = 0;
}

static void tx_splice_in(struct net_conn *c)
{
	struct chain_link *l = c->txq.head;
	ST_ASSERT(l && l->kind == CHAIN_FILE && c->pipe_fill == 0);
	size_t n = ST_MIN(l->len - l->done, c->pipe.cap);
	struct io_uring_sqe *sqe = uring_get_sqe(c->srv->ur);
	io_uring_prep_splice(sqe, l->fd, l->file_pos + (int64_t)l->done, c->pipe.w, -1,
			     (unsigned)n, 0);
	tx_submit(c, sqe, TX_SPLICE_IN);
}

static void tx_splice_out(struct net_conn *c)
{
	struct chain_link *l = c->txq.head;
	ST_ASSERT(l && l->kind == CHAIN_FILE && c->pipe_fill > 0);
	bool more = l->len - l->done > c->pipe_fill || l->next;
	struct io_uring_sqe *sqe = uring_get_sqe(c->srv->ur);
	io_uring_prep_splice(sqe, c->pipe.r, -1, c->fd, -1, (unsigned)c->pipe_fill,
			     SPLICE_F_MOVE | SPLICE_F_NONBLOCK | (more ? SPLICE_F_MORE : 0));
	tx_submit(c, sqe, TX_SPLICE_OUT);
}

static void tx_poll_out(struct net_conn *c)
{
	struct io_uring_sqe *sqe = uring_get_sqe(c->srv->ur);
	io_uring_prep_poll_add(sqe, c->fd, POLLOUT);
	tx_submit(c, sqe, TX_POLL);
}

static void tx_copy_read(struct net_conn *c)
{
	struct chain_link *l = c->txq.head;
	ST_ASSERT(l && l->kind == CHAIN_FILE);
	if (!c->bounce && !(c->bounce = malloc(NET_BOUNCE_BYTES))) {
		conn_close(c, SLOG_ERROR, "out of memory for a bounce buffer");
		return;
	}
	size_t n = ST_MIN(l->len - l->done, (size_t)NET_BOUNCE_BYTES);
	struct io_uring_sqe *sqe = uring_get_sqe(c->srv->ur);
	io_uring_prep_read(sqe, l->fd, c->bounce, (unsigned)n, (uint64_t)(l->file_pos + (int64_t)l->done));
	tx_submit(c, sqe, TX_READ);
}

static void tx_send_bounce(struct net_conn *c)
{
	struct chain_link *l = c->txq.head;
	ST_ASSERT(l && c->bounce_sent < c->bounce_len);
	size_t left = c->bounce_len - c->bounce_sent;
	bool more = l->len - l->done > left || l->next;
	struct io_uring_sqe *sqe = uring_get_sqe(c->srv->ur);
	io_uring_prep_send(sqe, c->fd, c->bounce + c->bounce_sent, left,
			   MSG_NOSIGNAL | (more ? MSG_MORE : 0));
	tx_submit(c, sqe, TX_SEND_BOUNCE);
}

/* A small file range read into memory for a gathered send. */
struct net_fileread {
	struct uring_op op;
	struct net_conn *c;
	struct chain_link *l;
	uint8_t *buf;
	size_t len, have;
};

static void fileread_submit(struct net_fileread *fr)
{
	struct io_uring_sqe *sqe = uring_get_sqe(fr->c->srv->ur);
	io_uring_prep_read(sqe, fr->l->fd, fr->buf + fr->have, (unsigned)(fr->len - fr->have),
			   (uint64_t)(fr->l->file_pos + (int64_t)fr->have));
	uring_sqe_data(sqe, &fr->op);
	fr->c->ops++;
}

static void fileread_cb(struct uring_op *op, int res, uint32_t flags)
{
	struct net_fileread *fr = ST_CONTAINER_OF(op, struct net_fileread, op);
	struct net_conn *c = fr->c;
	ST_ASSERT(c->ops > 0 && c->reads_pending > 0 && c->tx_state == TX_READ_SMALL);
	c->ops--;
	c->busy++;
	if (!c->closed) {
		if (res > 0) {
			fr->have += (size_t)res;
			if (fr->have < fr->len) {
				fileread_submit(fr);
				goto out;
			}
		} else if (res == -EAGAIN || res == -EINTR) {
			fileread_submit(fr);
			goto out;
		} else if (!c->reads_err) {
			c->reads_err = res == 0 ? -EIO : res;
		}
	}
	if (!c->closed && fr->have == fr->len) {
		/* The link becomes memory: the file range is done with, release it now. */
		struct chain_link *l = fr->l;
		chain_release_fn fn = l->release;
		void *ctx = l->ctx;
		l->kind = CHAIN_MEM;
		l->ptr = fr->buf;
		l->fd = -1;
		l->release = free;
		l->ctx = fr->buf;
		fr->buf = NULL;
		c->srv->st.file_inline_links++;
		if (fn)
			fn(ctx);
	}
	free(fr->buf);
	free(fr);
	if (--c->reads_pending == 0) {
		c->tx_state = TX_IDLE;
		if (!c->closed && c->reads_err) {
			int err = c->reads_err;
			c->reads_err = 0;
			tx_fail(c, err == -EIO ? -EIO : err, "read of a file range (short or failed)");
		} else if (!c->closed) {
			tx_kick(c);
		}
	}
out:
	c->busy--;
	conn_maybe_free(c);
}

static bool link_is_small_file(const struct net_conn *c, const struct chain_link *l)
{
	return l->kind == CHAIN_FILE && l->done == 0 && !(l->flags & CHAIN_LINK_EXTERNAL) &&
	       l->len < c->srv->cfg.file_copy_below_bytes;
}

/* Starts reads for the small file links in the next send window; returns whether any. */
static bool tx_read_small_links(struct net_conn *c)
{
	unsigned n = 0, seen = 0;
	size_t bytes = 0;
	for (struct chain_link *l = c->txq.head; l && seen < NET_IOV_MAX; l = l->next, seen++) {
		if (l->kind != CHAIN_FILE)
			continue;
		/* Memory for the window's reads stays under NET_INLINE_WINDOW_BYTES per connection. */
		if (!link_is_small_file(c, l) || bytes + l->len > NET_INLINE_WINDOW_BYTES)
			break;
		bytes += l->len;
		struct net_fileread *fr = calloc(1, sizeof *fr);
		uint8_t *buf = fr ? malloc(l->len) : NULL;
		if (!buf) {
			free(fr);
			break; /* sent by splice or bounce instead */
		}
		fr->op.cb = fileread_cb;
		fr->c = c;
		fr->l = l;
		fr->buf = buf;
		fr->len = l->len;
		fileread_submit(fr);
		n++;
	}
	if (!n)
		return false;
	c->tx_state = TX_READ_SMALL;
	c->reads_pending = n;
	c->reads_err = 0;
	return true;
}

static void tx_kick(struct net_conn *c)
{
	if (c->closed || c->tx_state != TX_IDLE)
		return;
	/* Empty links (chain_reserve(0)) are dropped without I/O. */
	while (c->txq.head && c->txq.head->done == c->txq.head->len)
		chain_consume(&c->txq, 0);
	struct chain_link *l = c->txq.head;
	if (c->pipe_fill) {
		tx_splice_out(c);
		return;
	}
	if (c->pipe.r >= 0 && (!l || l->kind != CHAIN_FILE || link_is_small_file(c, l)))
		conn_pipe_put(c, true);
	if (!l) {
		/* Idle: the bounce buffer (copy path only) is not kept around. */
		free(c->bounce);
		c->bounce = NULL;
		return;
	}
	if (c->bounce_sent < c->bounce_len) {
		tx_send_bounce(c);
		return;
	}
	if (tx_read_small_links(c))
		return;
	if (l->kind == CHAIN_MEM)
		tx_send_mem(c);
	else if (c->srv->cfg.file_mode == NET_FILE_SPLICE && conn_pipe(c) == 0)
		tx_splice_in(c);
	else
		tx_copy_read(c);
}

static void tx_step(struct net_conn *c, enum tx_state st, int res)
{
	switch (st) {
	case TX_SEND:
		if (res > 0)
			tx_consumed(c, (size_t)res);
		else if (res != -EAGAIN && res != -EINTR) /* those: tx_kick resends */
			tx_fail(c, res == 0 ? -EPIPE : res, "send");
		return;
	case TX_SPLICE_IN:
		if (res > 0) {
			c->pipe_fill = (size_t)res;
			tx_splice_out(c);
		} else if (res == 0) {
			tx_fail(c, -EIO, "splice of a file range (file shorter than the range)");
		} else if (res != -EAGAIN && res != -EINTR) {
			tx_fail(c, res, "splice from file");
		}
		return;
	case TX_SPLICE_OUT:
		if (res > 0) {
			ST_ASSERT((size_t)res <= c->pipe_fill);
			c->pipe_fill -= (size_t)res;
			c->srv->st.file_splice_bytes += (size_t)res;
			tx_consumed(c, (size_t)res);
			if (c->pipe_fill)
				tx_splice_out(c);
		} else if (res == -EAGAIN) {
			c->srv->st.splice_waits++;
			tx_poll_out(c);
		} else if (res != -EINTR) {
			tx_fail(c, res == 0 ? -EPIPE : res, "splice to socket");
		}
		return;
	case TX_POLL:
		/* Readiness or error: the next splice reports which. */
		if (res < 0 && res != -EINTR)
			tx_fail(c, res, "poll for writability");
		return;
	case TX_READ:
		if (res > 0) {
			c->bounce_len = (size_t)res;
			c->bounce_sent = 0;
			tx_send_bounce(c);
		} else if (res == 0) {
			tx_fail(c, -EIO, "read of a file range (file shorter than the range)");
		} else if (res != -EAGAIN && res != -EINTR) {
			tx_fail(c, res, "read of a file range");
		}
		return;
	case TX_SEND_BOUNCE:
		if (res > 0) {
			c->bounce_sent += (size_t)res;
			c->srv->st.file_copy_bytes += (size_t)res;
			tx_consumed(c, (size_t)res);
			if (c->bounce_sent == c->bounce_len)
				c->bounce_sent = c->bounce_len = 0;
			else
				tx_send_bounce(c);
		} else if (res != -EAGAIN && res != -EINTR) {
			tx_fail(c, res == 0 ? -EPIPE : res, "send");
		}
		return;
	case TX_IDLE:
	case TX_READ_SMALL:
		break;
	}
	ST_ASSERT(!"unexpected send state");
}

static void tx_cb(struct uring_op *op, int res, uint32_t flags)
{
	struct net_conn *c = ST_CONTAINER_OF(op, struct net_conn, tx_op);
	enum tx_state st = (enum tx_state)c->tx_state;
	ST_ASSERT(c->ops > 0 && st != TX_IDLE && st != TX_READ_SMALL);
	c->tx_state = TX_IDLE;
	c->ops--;
	c->busy++;
	if (!c->closed)
		tx_step(c, st, res);
	if (!c->closed) {
		tx_kick(c);
		conn_check_resume(c);
	}
	c->busy--;
	conn_maybe_free(c);
}

/* Moves completed responses at the head of the FIFO to the send queue, in order. */
static void conn_flush_fifo(struct net_conn *c)
{
	struct net_server *s = c->srv;
	/* Bounded by the FIFO length. */
	while (c->fifo_head && c->fifo_head->state_ >= REQ_DONE) {
		struct net_req *r = c->fifo_head;
		c->fifo_head = r->next_;
		if (!c->fifo_head)
			c->fifo_tail = NULL;
		c->fifo_len--;
		if (r->state_ == REQ_DONE_NONE) {
			req_free(r);
			continue;
		}
		/* The prefix link lives in the request; sending it frees the request. */
		struct chain_link *l = &r->prefix_link_;
		memset(l, 0, sizeof *l);
		l->kind = CHAIN_MEM;
		l->ptr = r->prefix_;
		l->len = sizeof r->prefix_;
		l->fd = -1;
		l->release = req_free_cb;
		l->ctx = r;
		struct chain body = r->resp_;
		chain_init(&r->resp_);
		chain_append_link(&c->txq, l);
		chain_concat(&c->txq, &body);
		s->st.responses_total++;
	}
}

/* Common part of completing a request: the frame buffer is no longer needed. */
static void req_complete(struct net_req *r)
{
	struct net_conn *c = r->conn;
	ST_ASSERT(r->state_ == REQ_HANDLER && c->handler_held > 0 && c->req_bytes >= r->len);
	free(r->buf_);
	r->buf_ = NULL;
	r->data = NULL;
	c->handler_held--;
	c->req_bytes -= r->len;
}

void net_respond(struct net_req *r, struct chain *resp)
{
	struct net_conn *c = r->conn;
	req_complete(r);
	if (c->closed) {
		chain_release(resp);
		req_free(r);
		conn_maybe_free(c);
		return;
	}
	size_t n = chain_len(resp);
	if (n > (size_t)INT32_MAX) {
		slog_error("net", "peer=%s response of %zu bytes does not fit a frame: closing",
			   c->peer_str, n);
		chain_release(resp);
		r->state_ = REQ_DONE_NONE;
		conn_close(c, SLOG_DEBUG, "response too large");
		conn_maybe_free(c);
		return;
	}
	chain_concat(&r->resp_, resp);
	st_put_be32(r->prefix_, (uint32_t)n);
	r->state_ = REQ_DONE;
	c->resp_bytes += sizeof r->prefix_ + n;
	conn_note_peaks(c);
	conn_flush_fifo(c);
	tx_kick(c);
	conn_check_pause(c);
	conn_check_resume(c);
}

void net_respond_none(struct net_req *r)
{
	struct net_conn *c = r->conn;
	req_complete(r);
	if (c->closed) {
		req_free(r);
		conn_maybe_free(c);
		return;
	}
	r->state_ = REQ_DONE_NONE;
	conn_flush_fifo(c);
	tx_kick(c);
	conn_check_resume(c);
}

/* --- connections --------------------------------------------------------------------------- */

static void conn_close(struct net_conn *c, enum slog_level lvl, const char *why)
{
	if (c->closed)
		return;
	struct net_server *s = c->srv;
	slog_write(lvl, "net", "peer=%s conn=%" PRIu64 " closed: %s", c->peer_str, c->id, why);
	c->closed = true;
	s->st.connections--;
	s->st.closed_total++;
	if (c->paused) {
		c->paused = false;
		s->st.paused_connections--;
	}
	uring_timer_cancel(s->ur, &c->resume_timer);
	/* Wakes every socket op (recv returns 0, send/poll fail); the cancel covers the rest. The fd
	 * itself is closed only when no op refers to it, so its number cannot be reused early. */
	(void)shutdown(c->fd, SHUT_RDWR);
	if (c->ops) {
		struct io_uring_sqe *sqe = uring_get_sqe(s->ur);
		io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
		uring_sqe_data(sqe, NULL);
	}
	while (c->held_head) {
		struct net_req *r = c->held_head;
		c->held_head = r->next_;
		req_free(r);
	}
	c->held_tail = NULL;
	/* Completed responses are dropped; requests the handler still holds are left to it. */
	while (c->fifo_head) {
		struct net_req *r = c->fifo_head;
		c->fifo_head = r->next_;
		r->next_ = NULL;
		if (r->state_ != REQ_HANDLER)
			req_free(r);
	}
	c->fifo_tail = NULL;
	c->fifo_len = 0;
	/* A send in flight may still read the queue's memory: then it goes at free time. */
	if (c->tx_state == TX_IDLE)
		chain_release(&c->txq);
	c->resp_bytes = 0;
	if (s->h.on_close) {
		c->busy++;
		s->h.on_close(s->h.ctx, c);
		c->busy--;
	}
}

static void conn_maybe_free(struct net_conn *c)
{
	if (!c->closed || c->busy || c->ops || c->handler_held)
		return;
	struct net_server *s = c->srv;
	ST_ASSERT(c->tx_state == TX_IDLE && c->rx_state == RX_IDLE && c->reads_pending == 0);
	uring_timer_cancel(s->ur, &c->resume_timer);
	chain_release(&c->txq);
	if (c->cur)
		req_free(c->cur);
	free(c->rxbuf);
	free(c->bounce);
	/* After a close, a splice into the pipe may have completed unaccounted: never reuse it. */
	conn_pipe_put(c, false);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->st.connections_alive--;
	free(c);
}

static void format_peer(const struct sockaddr_storage *ss, char *out, size_t cap)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)ss;
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
		snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
		snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
	} else {
		snprintf(out, cap, "unknown");
	}
}

static void conn_new(struct net_server *s, int fd)
{
	if (s->st.connections >= s->cfg.max_connections) {
		slog_warn("net", "connection refused: %" PRIu32 " open (max_connections)",
			  s->st.connections);
		close(fd);
		return;
	}
	struct net_conn *c = calloc(1, sizeof *c);
	if (!c) {
		slog_error("net", "no memory for a connection: refused");
		close(fd);
		return;
	}
	c->srv = s;
	c->fd = fd;
	c->id = s->next_conn_id++;
	c->pipe = (struct net_pipe){ .r = -1, .w = -1, .cap = 0 };
	c->recv_op.cb = recv_cb;
	c->tx_op.cb = tx_cb;
	c->rx_multishot = s->br_active;
	c->rx_single_left = s->cfg.recv_direct_min_bytes ? NET_SINGLE_RECVS : 0;
	chain_init(&c->txq);
	uring_timer_init(&c->resume_timer, resume_fire);
	socklen_t alen = sizeof c->peer;
	if (getpeername(fd, (struct sockaddr *)&c->peer, &alen) < 0)
		memset(&c->peer, 0, sizeof c->peer);
	format_peer(&c->peer, c->peer_str, sizeof c->peer_str);
	int one = 1;
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
		slog_debug("net", "peer=%s TCP_NODELAY: %s", c->peer_str, strerror(errno));
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->st.connections++;
	s->st.connections_alive++;
	s->st.accepted_total++;
	slog_debug("net", "peer=%s conn=%" PRIu64 " accepted", c->peer_str, c->id);
	c->busy++;
	if (s->h.on_open)
		s->h.on_open(s->h.ctx, c);
	if (!c->closed)
		rx_arm(c);
	c->busy--;
	conn_maybe_free(c);
}

void net_conn_close(struct net_conn *c)
{
	c->busy++;
	conn_close(c, SLOG_DEBUG, "closed by the handler");
	c->busy--;
	conn_maybe_free(c);
}

bool net_conn_closed(const struct net_conn *c) { return c->closed; }
void net_conn_set_user(struct net_conn *c, void *user) { c->user = user; }
void *net_conn_user(const struct net_conn *c) { return c->user; }
uint64_t net_conn_id(const struct net_conn *c) { return c->id; }
const char *net_conn_peer(const struct net_conn *c) { return c->peer_str; }
const struct sockaddr_storage *net_conn_peer_addr(const struct net_conn *c) { return &c->peer; }

void net_conn_stats(const struct net_conn *c, struct net_conn_stats *out)
{
	out->held_request_bytes = c->req_bytes;
	out->unsent_response_bytes = c->resp_bytes;
	out->inflight_requests = c->fifo_len;
	out->paused = c->paused;
}

/* --- accept -------------------------------------------------------------------------------- */

static void accept_arm(struct net_server *s)
{
	ST_ASSERT(!s->accept_armed && s->lfd >= 0);
	struct io_uring_sqe *sqe = uring_get_sqe(s->ur);
	if (s->accept_multishot)
		io_uring_prep_multishot_accept(sqe, s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	else
		io_uring_prep_accept(sqe, s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	uring_sqe_data(sqe, &s->acceptor->op);
	s->accept_armed = true;
}

static void accept_retry_fire(struct uring_timer *t)
{
	struct net_server *s = ST_CONTAINER_OF(t, struct net_server, accept_retry);
	if (!s->stopping && !s->accept_armed)
		accept_arm(s);
}

static void accept_cb(struct uring_op *op, int res, uint32_t flags)
{
	struct net_acceptor *a = ST_CONTAINER_OF(op, struct net_acceptor, op);
	struct net_server *s = a->s;
	bool final = !(flags & IORING_CQE_F_MORE);
	if (!s) { /* orphan: the server is gone */
		if (res >= 0)
			close(res);
		if (final) {
			if (a->lfd >= 0)
				close(a->lfd);
			free(a);
		}
		return;
	}
	bool retry_later = false;
	if (final)
		s->accept_armed = false;
	if (res >= 0) {
		if (s->stopping)
			close(res);
		else
			conn_new(s, res);
	} else if (!s->stopping) {
		if (res == -EINVAL && s->accept_multishot) {
			slog_info("net", "multishot accept unsupported by the kernel: single-shot accept");
			s->accept_multishot = false;
			s->st.multishot_accept = false;
		} else if (res != -ECONNABORTED && res != -EINTR && res != -EAGAIN &&
			   res != -ECANCELED) {
			/* EMFILE and friends: retrying at once would spin. */
			slog_warn("net", "accept: %s; retrying in %d ms", strerror(-res),
				  NET_ACCEPT_RETRY_MS);
			retry_later = true;
		}
	}
	if (!final)
		return;
	if (s->stopping) {
		if (s->lfd >= 0) {
			close(s->lfd);
			s->lfd = -1;
		}
	} else if (retry_later) {
		uring_timer_arm(s->ur, &s->accept_retry, NET_ACCEPT_RETRY_MS);
	} else {
		accept_arm(s);
	}
}

/* --- server -------------------------------------------------------------------------------- */

static int listen_open(struct net_server *s, const char *host_in)
{
	const char *h = host_in && *host_in ? host_in : "0.0.0.0";
	char host[256];
	size_t hl = strlen(h);
	if (hl >= sizeof host)
		return -EINVAL;
	if (h[0] == '[') {
		if (hl < 3 || h[hl - 1] != ']')
			return -EINVAL;
		memcpy(host, h + 1, hl - 2);
		host[hl - 2] = '\0';
	} else {
		memcpy(host, h, hl + 1);
	}
	char port[8];
	snprintf(port, sizeof port, "%u", (unsigned)s->cfg.port);
	struct addrinfo hints, *ai = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int g = getaddrinfo(host, port, &hints, &ai);
	if (g != 0 || !ai) {
		slog_error("net", "listen host=%s: %s", host, gai_strerror(g));
		return -EINVAL;
	}
	/* The listening socket stays blocking: io_uring polls it; accepted sockets are O_NONBLOCK. */
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int rc = 0;
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    (s->cfg.reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)) {
		rc = -errno;
		goto out;
	}
	/* Set on the listener so accepted sockets inherit them before the handshake (window scale). */
	if (s->cfg.send_buffer_bytes > 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &s->cfg.send_buffer_bytes, sizeof(int)) < 0) {
		rc = -errno;
		goto out;
	}
	if (s->cfg.receive_buffer_bytes > 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &s->cfg.receive_buffer_bytes, sizeof(int)) < 0) {
		rc = -errno;
		goto out;
	}
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, s->cfg.backlog) < 0) {
		rc = -errno;
		goto out;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		rc = -errno;
		goto out;
	}
	s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)(void *)&ss)->sin6_port
						 : ((struct sockaddr_in *)(void *)&ss)->sin_port);
	s->lfd = fd;
	fd = -1;
out:
	if (rc < 0)
		slog_error("net", "listen on %s port %u: %s", host, (unsigned)s->cfg.port,
			   strerror(-rc));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return rc;
}

static int bufring_setup(struct net_server *s)
{
	uint32_t n = s->cfg.buf_ring_entries;
	size_t ring_bytes = (size_t)n * sizeof(struct io_uring_buf);
	long page = sysconf(_SC_PAGESIZE);
	void *ring = NULL;
	if (posix_memalign(&ring, page > 0 ? (size_t)page : 4096, ring_bytes) != 0)
		return -ENOMEM;
	memset(ring, 0, ring_bytes);
	uint8_t *bufs = malloc((size_t)n * s->cfg.buf_ring_buf_bytes);
	if (!bufs) {
		free(ring);
		return -ENOMEM;
	}
	struct io_uring_buf_reg reg;
	memset(&reg, 0, sizeof reg);
	reg.ring_addr = (uint64_t)(uintptr_t)ring;
	reg.ring_entries = n;
	reg.bgid = (uint16_t)atomic_fetch_add(&net_next_bgid, 1);
	int rc = io_uring_register_buf_ring(&s->ur->ring, &reg, 0);
	if (rc < 0) {
		free(ring);
		free(bufs);
		return rc;
	}
	s->br = ring;
	s->br_bufs = bufs;
	s->bgid = reg.bgid;
	s->br_registered = true;
	s->br_active = true;
	io_uring_buf_ring_init(s->br);
	for (uint32_t i = 0; i < n; i++)
		io_uring_buf_ring_add(s->br, bufs + (size_t)i * s->cfg.buf_ring_buf_bytes,
				      s->cfg.buf_ring_buf_bytes, (uint16_t)i,
				      io_uring_buf_ring_mask(n), (int)i);
	io_uring_buf_ring_advance(s->br, (int)n);
	return 0;
}

int net_server_start(struct uring *ur, const struct net_config *cfg, const struct net_handler *h,
		     struct net_server **out)
{
	*out = NULL;
	uint32_t n = cfg->buf_ring_entries;
	if (!h || !h->on_request || cfg->max_request_bytes < 0 || !cfg->max_outstanding_bytes ||
	    !cfg->max_inflight_requests || !cfg->max_connections || n == 0 ||
	    n > NET_MAX_BUF_RING_ENTRIES || (n & (n - 1)) || cfg->buf_ring_buf_bytes == 0 ||
	    cfg->buf_ring_buf_bytes > (1u << 24) ||
	    (cfg->file_mode != NET_FILE_SPLICE && cfg->file_mode != NET_FILE_COPY))
		return -EINVAL;
	struct net_server *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->pipes_free = calloc(cfg->max_pipes ? cfg->max_pipes : 1, sizeof *s->pipes_free);
	if (!s->pipes_free) {
		free(s);
		return -ENOMEM;
	}
	s->ur = ur;
	s->cfg = *cfg;
	s->cfg.host = NULL; /* not kept: the caller's string may go away */
	if (s->cfg.backlog <= 0)
		s->cfg.backlog = 1024;
	s->h = *h;
	s->lfd = -1;
	s->acceptor = calloc(1, sizeof *s->acceptor);
	if (!s->acceptor) {
		free(s->pipes_free);
		free(s);
		return -ENOMEM;
	}
	s->acceptor->op.cb = accept_cb;
	s->acceptor->s = s;
	s->acceptor->lfd = -1;
	uring_timer_init(&s->accept_retry, accept_retry_fire);
	int rc = listen_open(s, cfg->host);
	if (rc < 0) {
		free(s->acceptor);
		free(s->pipes_free);
		free(s);
		return rc;
	}
	if (!cfg->no_buf_ring) {
		rc = bufring_setup(s);
		if (rc < 0)
			slog_info("net", "provided-buffer ring unavailable (%s): plain recv",
				  strerror(-rc));
	}
	s->st.buf_ring = s->br_active;
	s->accept_multishot = !cfg->no_multishot_accept;
	s->st.multishot_accept = s->accept_multishot;
	accept_arm(s);
	slog_info("net", "listening on %s port %u (recv: %s, accept: %s, files: %s)",
		  cfg->host && *cfg->host ? cfg->host : "0.0.0.0", (unsigned)s->port,
		  s->br_active ? "multishot+buffer ring" : "single", s->accept_multishot ?
		  "multishot" : "single", cfg->file_mode == NET_FILE_SPLICE ? "splice" : "copy");
	*out = s;
	return 0;
}

uint16_t net_server_port(const struct net_server *s) { return s->port; }

void net_server_stop(struct net_server *s)
{
	if (s->stopping)
		return;
	s->stopping = true;
	uring_timer_cancel(s->ur, &s->accept_retry);
	if (s->accept_armed) {
		struct io_uring_sqe *sqe = uring_get_sqe(s->ur);
		io_uring_prep_cancel(sqe, &s->acceptor->op, 0);
		uring_sqe_data(sqe, NULL);
	} else if (s->lfd >= 0) {
		close(s->lfd);
		s->lfd = -1;
	}
	/* Pin the next connection while closing the current: on_close may close others. */
	struct net_conn *c = s->conns;
	if (c)
		c->busy++;
	while (c) {
		struct net_conn *next = c->next;
		if (next)
			next->busy++;
		conn_close(c, SLOG_DEBUG, "server stopping");
		c->busy--;
		conn_maybe_free(c);
		c = next;
	}
}

bool net_server_idle(const struct net_server *s)
{
	return s->stopping && !s->accept_armed && !s->conns;
}

void net_server_free(struct net_server *s)
{
	if (!s)
		return;
	net_server_stop(s);
	/* Connections live until the handler completed their requests: freeing before is a bug. */
	ST_ASSERT(!s->conns);
	uring_timer_cancel(s->ur, &s->accept_retry);
	if (s->accept_armed) {
		/* The cancelled accept still has to complete: it closes the listener and frees itself. */
		s->acceptor->s = NULL;
		s->acceptor->lfd = s->lfd;
		s->lfd = -1;
	} else {
		free(s->acceptor);
	}
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->br_registered)
		(void)io_uring_unregister_buf_ring(&s->ur->ring, s->bgid);
	free(s->br);
	free(s->br_bufs);
	ST_ASSERT(s->pipes_free_len == s->st.pipes);
	for (uint32_t i = 0; i < s->pipes_free_len; i++) {
		close(s->pipes_free[i].r);
		close(s->pipes_free[i].w);
	}
	free(s->pipes_free);
	free(s);
}

void net_server_stats(const struct net_server *s, struct net_stats *out)
{
	*out = s->st;
}
