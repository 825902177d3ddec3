/* net.h -- the broker's TCP front on one io_uring reactor: accepts connections, cuts the Kafka
 * wire framing (int32 big-endian size + payload) into requests, hands every complete frame to a
 * handler and sends the handler's responses (struct chain) in request order per connection,
 * with backpressure. Knows nothing of Kafka API keys: decoding is the handler's job.
 * Not thread-safe: every call is made on the thread that owns the struct uring passed to
 * net_server_start (one server per reactor; see the comment at the top of net.c). */
#ifndef STRATA_NET_H
#define STRATA_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "strata/chain.h"
#include "strata/uring.h"

struct net_server;
struct net_conn;

enum net_file_mode {
	NET_FILE_SPLICE = 0,  /* file links: splice file -> pipe -> socket (default) */
	NET_FILE_COPY = 1,    /* file links: read into a bounce buffer, then send (fallback, bench) */
};

struct net_config {
	const char *host;               /* IPv4/IPv6 literal ("[::1]" ok) or name resolved at start
	                                   (blocking, startup only); NULL or "" = "0.0.0.0" */
	uint16_t port;                  /* 0 = ephemeral, see net_server_port */
	int32_t max_request_bytes;      /* socket.request.max.bytes (default 104857600): larger or
	                                   negative frame sizes close the connection */
	size_t max_outstanding_bytes;   /* per connection: request bytes held by the handler plus
	                                   unsent response bytes above which reading stops
	                                   (default 64 MiB); resumes at half */
	uint32_t max_inflight_requests; /* per connection: requests handed to the handler and not yet
	                                   queued for sending, at which reading stops (default 1000);
	                                   resumes at half */
	uint32_t max_connections;       /* more are closed on accept (default 65536) */
	int backlog;                    /* listen backlog (default 1024) */
	int send_buffer_bytes;          /* socket.send.buffer.bytes; <= 0 = OS default (autotuned) */
	int receive_buffer_bytes;       /* socket.receive.buffer.bytes; <= 0 = OS default */
	bool reuse_port;                /* SO_REUSEPORT: one server per reactor on the same port */
	bool no_buf_ring;               /* force plain recv into a per-connection buffer */
	bool no_multishot_accept;       /* force single-shot accept */
	enum net_file_mode file_mode;
	size_t file_copy_below_bytes;   /* file links shorter than this are read into memory and
	                                   sent with the memory around them (default 128 KiB;
	                                   0 off; see the measurements in net.c) */
	size_t pipe_bytes;              /* splice pipe size (default 1 MiB; the kernel's default
	                                   when it cannot be raised) */
	uint32_t max_pipes;             /* splice pipes per server, lent to connections while they
	                                   send a file range (default 32; 0: always copy) */
	uint32_t buf_ring_entries;      /* provided recv buffers, power of 2 (default 256) */
	uint32_t buf_ring_buf_bytes;    /* size of each (default 16 KiB) */
	size_t recv_direct_min_bytes;   /* a frame with at least this many bytes still to come is
	                                   received straight into its buffer, not through the
	                                   buffer ring or the staging buffer (default 64 KiB; 0 off) */
};
void net_config_defaults(struct net_config *cfg);

/* One complete frame. data/len/conn/seq are for the handler to read; the rest is internal. */
struct net_req {
	const uint8_t *data;            /* the payload after the size prefix: owned by the request,
	                                   unmoved and valid until the request is completed */
	size_t len;
	struct net_conn *conn;
	uint64_t seq;                   /* per connection, from 0, in arrival order */
	void *user;                     /* free for the handler */
	/* internal */
	struct net_req *next_;
	uint8_t *buf_;
	size_t cap_, have_;
	int state_;
	struct chain resp_;
	struct chain_link prefix_link_; /* the response's size prefix, sent from prefix_[] */
	uint8_t prefix_[4];
};

struct net_handler {
	void *ctx;
	/* A complete frame. The handler must complete it exactly once, now or later, with
	 * net_respond or net_respond_none -- also after the connection closed. */
	void (*on_request)(void *ctx, struct net_req *req);
	/* A connection was accepted (before its first request). May be NULL. */
	void (*on_open)(void *ctx, struct net_conn *c);
	/* The connection is closed (peer close, error, net_conn_close, server stop): runs once for
	 * every on_open, synchronously inside net_conn_close when the handler closes it. Requests
	 * still outstanding must still be completed; their responses are dropped. c stays valid
	 * until the last of them is completed. May be NULL. */
	void (*on_close)(void *ctx, struct net_conn *c);
};

/* Binds cfg->host:cfg->port, listens and arms accept on ur. The server keeps copies of cfg and
 * h (cfg->host is only read here). Returns 0 or -errno (-EINVAL: bad host or config). */
int net_server_start(struct uring *ur, const struct net_config *cfg, const struct net_handler *h,
		     struct net_server **out);
uint16_t net_server_port(const struct net_server *s);
/* Stops accepting and closes every connection (on_close runs for each, now). The caller then
 * keeps running the ring until net_server_idle (outstanding requests completed, every
 * operation finished) and calls net_server_free. */
void net_server_stop(struct net_server *s);
bool net_server_idle(const struct net_server *s);
/* Stops s if needed and frees it. No connection may be alive (asserted): call it once
 * net_server_idle, or when none was ever accepted (e.g. right after net_server_start on an
 * error path). A cancelled accept still in flight cleans up after itself on the ring. */
void net_server_free(struct net_server *s);

struct net_stats {
	uint32_t connections;           /* open now */
	uint32_t connections_alive;     /* not freed yet (closed ones waiting for completions) */
	uint32_t paused_connections;    /* not reading now (backpressure) */
	uint64_t accepted_total;
	uint64_t closed_total;
	uint64_t rejected_frames_total; /* oversize or negative size */
	uint64_t requests_total;
	uint64_t responses_total;       /* responses queued for sending */
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t pauses_total;
	uint64_t resumes_total;
	uint64_t peak_outstanding_bytes;/* max over connections of held request + unsent response
	                                   bytes, since start */
	uint32_t peak_inflight_requests;
	uint64_t file_splice_bytes;     /* file link bytes sent by splice */
	uint64_t file_copy_bytes;       /* ... read into the bounce buffer and sent */
	uint64_t file_inline_links;     /* small file links read into memory */
	uint64_t splice_waits;          /* pipe->socket splices that hit a full socket (-EAGAIN) */
	uint64_t recv_direct_bytes;     /* plain recv straight into a frame buffer */
	uint64_t recv_direct_frames;    /* frames completed by such a recv */
	uint64_t recv_multishot_cancels;/* multishot recvs cancelled to receive a frame directly */
	uint64_t buf_ring_empty;        /* multishot recv ended with -ENOBUFS (re-armed) */
	uint32_t pipes;                 /* splice pipes open (pooled or lent) */
	bool buf_ring;                  /* multishot recv with the provided-buffer ring is in use */
	bool multishot_accept;
};
void net_server_stats(const struct net_server *s, struct net_stats *out);

/* Completes req with a response: the chain's links (the Kafka response header and body, without
 * the size prefix: net adds it) move into the connection's send queue and are sent after every
 * earlier request's response; *resp is left empty. req and its data are invalid after.
 * On a closed connection the response is released at once. */
void net_respond(struct net_req *req, struct chain *resp);
/* Completes req without a response (acks=0 produce). */
void net_respond_none(struct net_req *req);

/* Closes c now (e.g. a protocol error): on_close runs before this returns; queued responses are
 * dropped. Outstanding requests must still be completed. Idempotent. */
void net_conn_close(struct net_conn *c);
bool net_conn_closed(const struct net_conn *c);
void net_conn_set_user(struct net_conn *c, void *user);
void *net_conn_user(const struct net_conn *c);
uint64_t net_conn_id(const struct net_conn *c);
/* "ip:port" or "[ipv6]:port". */
const char *net_conn_peer(const struct net_conn *c);
const struct sockaddr_storage *net_conn_peer_addr(const struct net_conn *c);

struct net_conn_stats {
	size_t held_request_bytes;      /* frames handed out and not completed */
	size_t unsent_response_bytes;
	uint32_t inflight_requests;
	bool paused;
};
void net_conn_stats(const struct net_conn *c, struct net_conn_stats *out);

#endif
