/* kafka_int.h -- internals shared by the Kafka API handlers (kafka*.c): the server, the
 * per-request context and the response helpers. Not a public interface. */
#ifndef STRATA_KAFKA_INT_H
#define STRATA_KAFKA_INT_H

#include "strata/arena.h"
#include "strata/broker.h"
#include "strata/chain.h"
#include "strata/group.h"
#include "strata/kafka.h"
#include "strata/kerr.h"
#include "strata/kio.h"
#include "strata/kmsg.h"
#include "strata/net.h"
#include "strata/uring.h"

struct kafka_server {
	struct uring *ur;
	struct broker *broker;
	struct cfg *conf;
	struct net_server *net;
	char adv_host[256];
	int32_t adv_port;
	uint64_t requests_inflight;   /* requests received and not yet answered */
	int producer_id_fd;           /* not used yet: producer ids come from a persisted counter */
	int64_t next_producer_id;
	int stopping;
	struct group_coordinator *groups; /* consumer groups (group.h) */
};

/* One request being served. Lives in its own arena until answered. */
struct kreq {
	struct kafka_server *srv;
	struct net_req *nreq;
	struct kmsg_request_header hdr;
	int16_t api_key;
	int16_t version;
	struct kr body;               /* the request body, after the header */
	struct arena arena;
	void *state;                  /* handler's async state */
};

/* Response: header + body encoded by the generated encoder for `name`. Frees q. */
#define KAFKA_RESPOND(q, name, msg) do { \
	struct kw w_; \
	kafka_resp_begin((q), &w_); \
	kmsg_##name##_encode(&w_, (q)->version, (msg)); \
	kafka_resp_end((q), &w_); \
} while (0)

void kafka_resp_begin(struct kreq *q, struct kw *w);
/* Sends w's bytes as the response and frees q (w's buffer moves into the chain). */
void kafka_resp_end(struct kreq *q, struct kw *w);
/* Sends an already built chain (header included) and frees q. */
void kafka_resp_chain(struct kreq *q, struct chain *c);
/* Finishes q without a response (acks=0). */
void kafka_resp_none(struct kreq *q);
/* A malformed request: log it, close the connection, free q. */
void kafka_bad_request(struct kreq *q, const char *what);

/* Copies a wire string into a NUL-terminated buffer; returns false when it does not fit. */
bool kafka_kstr_to_buf(struct kstr s, char *buf, size_t buf_len);

void kafka_handle_produce(struct kreq *q);
void kafka_handle_fetch(struct kreq *q);
void kafka_handle_list_offsets(struct kreq *q);
void kafka_handle_create_topics(struct kreq *q);
void kafka_handle_delete_topics(struct kreq *q);
void kafka_handle_create_partitions(struct kreq *q);
void kafka_handle_delete_records(struct kreq *q);
void kafka_handle_describe_configs(struct kreq *q);
void kafka_handle_alter_configs(struct kreq *q);
void kafka_handle_incremental_alter_configs(struct kreq *q);
void kafka_handle_offset_for_leader_epoch(struct kreq *q);
void kafka_handle_init_producer_id(struct kreq *q);
void kafka_handle_describe_cluster(struct kreq *q);
/* consumer groups: src/kafka_group.c */
void kafka_handle_find_coordinator(struct kreq *q);
void kafka_handle_join_group(struct kreq *q);
void kafka_handle_sync_group(struct kreq *q);
void kafka_handle_heartbeat(struct kreq *q);
void kafka_handle_leave_group(struct kreq *q);
void kafka_handle_offset_commit(struct kreq *q);
void kafka_handle_offset_fetch(struct kreq *q);
void kafka_handle_list_groups(struct kreq *q);
void kafka_handle_describe_groups(struct kreq *q);
void kafka_handle_delete_groups(struct kreq *q);
void kafka_handle_offset_delete(struct kreq *q);

#endif
