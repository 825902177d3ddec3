/* kafka.h -- the Kafka protocol server: takes request frames from the network layer, decodes
 * them with the generated codecs, runs each API against the broker, encodes the responses.
 * Owns per-connection protocol state and parked requests (fetch long polls, produce waiting
 * for fsync); does not own sockets (net.h) nor storage (broker.h, log.h). */
#ifndef STRATA_KAFKA_H
#define STRATA_KAFKA_H

#include "strata/broker.h"
#include "strata/config.h"
#include "strata/uring.h"

struct kafka_server;

/* Listens on the config's listeners. Returns 0 or -errno (why says what). */
int kafka_server_start(struct kafka_server **out, struct uring *ur, struct broker *b,
		       struct cfg *conf, char *why, size_t why_len);
/* The bound port of the first listener (for tests with port 0). */
int kafka_server_port(const struct kafka_server *s);
/* Stops accepting, answers or drops parked requests, closes connections. */
void kafka_server_stop(struct kafka_server *s);
/* True once every connection and request is gone (shutdown may then close the logs). */
int kafka_server_idle(const struct kafka_server *s);
void kafka_server_free(struct kafka_server *s);

#endif
