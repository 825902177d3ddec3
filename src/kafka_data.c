/* kafka_data.c -- the data path APIs: Produce (appends answered after their covering fsync;
 * batches recompressed first when the topic's compression.type asks for another codec),
 * Fetch (long poll, responses built from header bytes plus segment file ranges, no copy of
 * record bytes) and ListOffsets. Runs on the reactor; parks requests instead of blocking. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kafka_int.h"
#include "strata/batch.h"
#include "strata/common.h"
#include "strata/compress.h"
#include "strata/config.h"
#include "strata/log.h"
#include "strata/pstate.h"
#include "strata/slog.h"
#include "../tier/tier.h"

/* --- Produce -------------------------------------------------------------------------------- */

struct produce_part {
	struct log_append a;
	struct produce_state *ps;
	struct kmsg_produce_response_partition_produce_response *resp;
	struct partition *p;
	struct pstate_append pa;         /* idempotent-producer bookkeeping (pstate.h) */
	struct pstate_waiter dup_wait;   /* a retry answered once its in-flight original is */
	uint8_t *recompressed;           /* malloc'd batch appended instead of the producer's (freed
					    once the log is done with it) */
};

struct produce_state {
	struct kreq *q;
	struct kmsg_produce_response resp;
	int16_t acks;
	uint32_t pending;
};

static void produce_finish(struct produce_state *ps)
{
	struct kreq *q = ps->q;
	if (ps->acks == 0) {
		/* As Kafka: no response, but an error closes the connection so the producer
		 * notices (and refreshes its metadata). */
		for (int32_t i = 0; i < ps->resp.responses.len; i++) {
			const struct kmsg_produce_response_topic_produce_response *tr =
				&ps->resp.responses.items[i];
			for (int32_t j = 0; j < tr->partition_responses.len; j++) {
				int16_t e = tr->partition_responses.items[j].error_code;
				if (e == KERR_NONE)
					continue;
				slog_info("kafka", "closing connection from %s: acks=0 produce failed "
					  "(topic=%.*s partition=%d: %s)", net_conn_peer(q->nreq->conn),
					  (int)ST_MIN(tr->name.len, 249), tr->name.len > 0 ? tr->name.p : "",
					  tr->partition_responses.items[j].index, kerr_name(e));
				net_conn_close(q->nreq->conn);
				kafka_resp_none(q);
				return;
			}
		}
		kafka_resp_none(q);
		return;
	}
	KAFKA_RESPOND(q, produce_response, &ps->resp);
}

static void produce_part_answer(struct produce_part *pp, int kerr)
{
	struct produce_state *ps = pp->ps;
	pp->resp->error_code = (int16_t)kerr;
	if (kerr != KERR_NONE) {
		pp->resp->base_offset = -1;
		slog_warn("kafka", "topic=%s partition=%d: append failed: %s", pp->p->topic->name,
			  pp->p->id, kerr_name(kerr));
	}
	pp->resp->log_start_offset = broker_partition_start_offset(pp->p);
	ST_ASSERT(ps->pending > 0);
	if (--ps->pending == 0)
		produce_finish(ps);
}

static void produce_part_done(struct log_append *a, int kerr)
{
	struct produce_part *pp = ST_CONTAINER_OF(a, struct produce_part, a);
	/* First: a failure rolls the producer state back before anyone retries. */
	if (pp->p->pstate)
		pstate_append_done(pp->p->pstate, &pp->pa, kerr);
	free(pp->recompressed);
	pp->recompressed = NULL;
	produce_part_answer(pp, kerr);
}

/* A retried batch whose original was in flight: answered with the original's fate. */
static void produce_dup_fire(struct pstate_waiter *w, int kerr)
{
	produce_part_answer(ST_CONTAINER_OF(w, struct produce_part, dup_wait), kerr);
}

/* Kafka's ProduceRequest.validateRecords (v3+; KafkaApis runs it per partition before the log):
 * the first batch must be complete and of magic 2. As ByteBufferLogInputStream reads it, a
 * length below the legacy minimum (14) or a magic outside 0..2 is CORRUPT_MESSAGE, while too
 * few bytes for the length (a cut or lying length: no batch at all) or magic 0/1 is
 * INVALID_RECORD. The log's batch_validate then checks everything else. */
static int produce_first_batch_check(struct kbytes records)
{
	size_t len = records.len < 0 ? 0 : (size_t)records.len;
	if (len < BATCH_LOG_OVERHEAD)
		return KERR_INVALID_RECORD;
	int32_t blen = (int32_t)st_be32(records.p + BATCH_OFF_LENGTH);
	if (blen < 14)
		return KERR_CORRUPT_MESSAGE;
	if (len < BATCH_OFF_MAGIC + 1)
		return KERR_INVALID_RECORD;
	int8_t magic = (int8_t)records.p[BATCH_OFF_MAGIC];
	if (magic < 0 || magic > BATCH_MAGIC_V2)
		return KERR_CORRUPT_MESSAGE;
	if ((size_t)blen + BATCH_LOG_OVERHEAD > len || magic != BATCH_MAGIC_V2)
		return KERR_INVALID_RECORD;
	return KERR_NONE;
}

/* Walks the batch headers of a Produce partition's records: how many batches, and whether any
 * says zstd. Lengths that do not add up are left to the log's validation, which answers them
 * precisely. */
static void records_scan(struct kbytes records, int *n_batches, bool *zstd)
{
	size_t pos = 0, len = (size_t)records.len;
	*n_batches = 0;
	*zstd = false;
	while (pos + 23 <= len && *n_batches < 1000) {
		const uint8_t *b = records.p + pos;
		if ((st_be16(b + 21) & 7) == 4)
			*zstd = true;
		(*n_batches)++;
		int32_t blen = (int32_t)st_be32(b + 8);
		if (blen <= 0)
			return;
		pos += 12 + (size_t)blen;
	}
}

/* The codec a topic stores its batches in (compression.type), or -1 for `producer`: kept as
 * produced. */
static int topic_target_codec(const struct broker *b, const struct topic *t)
{
	const char *ct = cfg_topic_str(&t->cfg, b->conf, TC_COMPRESSION_TYPE);
	if (!ct || strcasecmp(ct, "producer") == 0)
		return -1;
	if (strcasecmp(ct, "uncompressed") == 0)
		return COMPRESS_NONE;
	int codec = compress_codec_parse(ct); /* none (Strata's synonym), gzip, snappy, lz4, zstd */
	return codec < 0 ? -1 : codec;
}

/* Kafka's LogValidator: a batch whose codec is not the topic's is decompressed and rewritten in
 * the topic's codec before the log assigns its offsets (validated on the way, with the options
 * the log uses, so the answer is the one the log would give). CPU work on the reactor, as Kafka
 * does it on the request thread; only topics that ask for it pay. */
static int produce_recompress(struct kreq *q, struct topic *t, struct produce_part *pp)
{
	int target = topic_target_codec(q->srv->broker, t);
	if (target < 0)
		return KERR_NONE;
	/* produce_first_batch_check passed: one whole batch header is there */
	ST_ASSERT(pp->a.len >= BATCH_HDR_SIZE);
	if ((st_be16(pp->a.data + BATCH_OFF_ATTRIBUTES) & BATCH_ATTR_CODEC_MASK) == target)
		return KERR_NONE;
	/* Trailing bytes after the batch: the log refuses them, with or without recompression. */
	if ((size_t)st_be32(pp->a.data + BATCH_OFF_LENGTH) + BATCH_LOG_OVERHEAD != pp->a.len)
		return KERR_NONE;
	struct log_config lc;
	broker_log_config(q->srv->broker, t, &lc);
	struct batch_validate_opts vo = {
		.max_message_bytes = lc.max_message_bytes,
		.log_append_time = lc.log_append_time,
		.now_ms = st_now_ms(),
		.timestamp_before_max_ms = ST_MAX(lc.timestamp_before_max_ms, (int64_t)0),
		.timestamp_after_max_ms = ST_MAX(lc.timestamp_after_max_ms, (int64_t)0),
		.inflate_compressed = true,
	};
	uint8_t *nb = NULL;
	size_t nlen = 0;
	int err = batch_recompress(pp->a.data, pp->a.len, &vo, target, 0, &nb, &nlen);
	if (err != KERR_NONE || !nb)
		return err;
	pp->recompressed = nb;
	pp->a.data = nb;
	pp->a.len = nlen;
	return KERR_NONE;
}

void kafka_handle_produce(struct kreq *q)
{
	struct kmsg_produce_request req;
	kmsg_produce_request_init(&req);
	if (kmsg_produce_request_decode(&q->body, q->version, &req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	struct produce_state *ps = arena_calloc(&q->arena, 1, sizeof *ps);
	if (!ps) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	ps->q = q;
	ps->acks = req.acks;
	kmsg_produce_response_init(&ps->resp);
	ps->resp.throttle_time_ms = 0;
	int32_t nt = req.topic_data.len < 0 ? 0 : req.topic_data.len;
	ps->resp.responses.items = arena_calloc(&q->arena, (size_t)nt + 1,
						sizeof *ps->resp.responses.items);
	if (!ps->resp.responses.items) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	ps->resp.responses.len = nt;
	bool acks_ok = req.acks == 0 || req.acks == 1 || req.acks == -1;
	/* Hold one count ourselves so completions during the loop cannot finish the request. */
	ps->pending = 1;
	for (int32_t i = 0; i < nt; i++) {
		struct kmsg_produce_request_topic_produce_data *td = &req.topic_data.items[i];
		struct kmsg_produce_response_topic_produce_response *tr = &ps->resp.responses.items[i];
		kmsg_produce_response_topic_produce_response_init(tr);
		tr->name = td->name;
		int32_t np = td->partition_data.len < 0 ? 0 : td->partition_data.len;
		tr->partition_responses.items = arena_calloc(&q->arena, (size_t)np + 1,
							     sizeof *tr->partition_responses.items);
		if (!tr->partition_responses.items) {
			kafka_bad_request(q, "out of memory");
			return;
		}
		tr->partition_responses.len = np;
		struct topic *t = td->name.len >= 0
			? broker_find_topic(q->srv->broker, td->name.p, (size_t)td->name.len) : NULL;
		for (int32_t j = 0; j < np; j++) {
			struct kmsg_produce_request_partition_produce_data *pd = &td->partition_data.items[j];
			struct kmsg_produce_response_partition_produce_response *pr =
				&tr->partition_responses.items[j];
			kmsg_produce_response_partition_produce_response_init(pr);
			pr->index = pd->index;
			pr->base_offset = -1;
			if (!acks_ok) {
				pr->error_code = KERR_INVALID_REQUIRED_ACKS;
				continue;
			}
			if (!t || pd->index < 0 || pd->index >= t->n_partitions) {
				pr->error_code = KERR_UNKNOWN_TOPIC_OR_PARTITION;
				continue;
			}
			if (group_is_internal_topic(t->name, strlen(t->name))) {
				/* as Kafka: "Cannot append to internal topic" (the coordinator owns it) */
				pr->error_code = KERR_INVALID_TOPIC_EXCEPTION;
				continue;
			}
			struct partition *p = t->parts[pd->index];
			if (pd->records.len <= 0) {
				pr->error_code = KERR_INVALID_RECORD;
				slog_info("kafka", "topic=%s partition=%d: produce rejected: no records",
					  t->name, pd->index);
				continue;
			}
			struct produce_part *pp = arena_calloc(&q->arena, 1, sizeof *pp);
			if (!pp) {
				pr->error_code = KERR_UNKNOWN_SERVER_ERROR;
				continue;
			}
			pp->ps = ps;
			pp->resp = pr;
			pp->p = p;
			/* The frame buffer belongs to this request and is writable: the log writes
			 * base offsets into the batches in place and sends them to disk from there. */
			pp->a.data = (uint8_t *)(uintptr_t)pd->records.p;
			pp->a.len = (size_t)pd->records.len;
			pp->a.done = produce_part_done;
			/* Idempotent producers (pstate.h): a retry of a cached batch is answered with
			 * its original offsets and not written again (once the original is
			 * acknowledged, when it is still in flight); gaps and fenced epochs are
			 * refused before anything is written. */
			struct pstate *pst = p->pstate;
			int err = produce_first_batch_check(pd->records);
			int n_batches;
			bool zstd;
			records_scan(pd->records, &n_batches, &zstd);
			if (err == KERR_NONE && n_batches > 1)
				err = KERR_INVALID_RECORD; /* Produce v3+: exactly one batch, as Kafka */
			else if (err == KERR_NONE && q->version < 7 && zstd)
				err = KERR_UNSUPPORTED_COMPRESSION_TYPE; /* zstd needs Produce v7+ (KIP-110) */
			if (pst && err == KERR_NONE) {
				err = pstate_check(pst, pp->a.data, pp->a.len, st_now_ms(), &pp->pa);
				if (err == KERR_NONE && pp->pa.duplicate) {
					pr->base_offset = pp->pa.dup_base_offset;
					pr->log_append_time_ms = pp->pa.dup_log_append_time_ms;
					pr->log_start_offset = broker_partition_start_offset(p);
					pp->dup_wait.fire = produce_dup_fire;
					if (pstate_wait(pst, &pp->dup_wait, pp->pa.dup_last_offset,
							log_high_watermark(p->log)))
						ps->pending++;
					continue;
				}
			}
			if (err == KERR_NONE) {
				err = produce_recompress(q, t, pp);
				if (err == KERR_NONE)
					err = log_append(p->log, &pp->a);
				if (pst && err == KERR_NONE)
					pstate_commit(pst, &pp->pa, pp->a.data, pp->a.len, st_now_ms());
				else if (pst)
					pstate_cancel(pst, &pp->pa);
			}
			if (err != KERR_NONE) {
				free(pp->recompressed); /* the log never took it */
				pp->recompressed = NULL;
				pr->error_code = (int16_t)err;
				slog_info("kafka", "topic=%s partition=%d: produce rejected: %s", t->name,
					   pd->index, kerr_name(err));
				continue;
			}
			pr->base_offset = pp->a.base_offset;
			pr->log_append_time_ms = pp->a.log_append_time_ms;
			ps->pending++;
		}
	}
	if (--ps->pending == 0)
		produce_finish(ps);
}

/* --- Fetch ---------------------------------------------------------------------------------- */

struct fetch_waiter {
	struct partition_waiter w;
	struct fetch_state *fs;
};

struct fetch_state {
	struct kreq *q;
	struct kmsg_fetch_request req;
	struct uring_timer timer;
	int64_t deadline_ns;
	struct fetch_waiter *waiters;
	int32_t n_waiters;
	bool parked;
};

struct fetch_out {
	struct chain c;
	struct kw w;
	int err;
	bool any_error;                 /* a partition answered with an error code */
};

static void fetch_flush_kw(struct fetch_out *o)
{
	if (o->w.err) {
		o->err = o->w.err;
		return;
	}
	if (o->w.len == 0)
		return;
	size_t len;
	uint8_t *buf = kw_detach(&o->w, &len);
	if (chain_append_mem(&o->c, buf, len, free, buf) < 0)
		o->err = -ENOMEM;
	kw_init(&o->w, 256);
}

static void slice_release(void *ctx)
{
	struct log_slice *s = ctx;
	log_slice_release(s);
	free(s);
}

static void cold_slice_release(void *ctx)
{
	struct tier_slice *s = ctx;
	tier_slice_release(s);
	free(s);
}

static void fetch_arr_len(struct kw *w, bool flex, int32_t n)
{
	if (flex)
		kw_compact_array_len(w, n);
	else
		kw_array_len(w, n);
}

/* Encodes one partition's answer; appends record bytes as file ranges. Returns bytes of
 * records added. budget: bytes left in the response; *first: no records added yet. */
/* Fetch v13+ names topics by id (KIP-516), earlier versions by name. */
static struct topic *fetch_topic(struct fetch_state *fs, const struct kmsg_fetch_request_fetch_topic *ft)
{
	struct broker *b = fs->q->srv->broker;
	if (fs->q->version >= 13)
		return broker_find_topic_id(b, ft->topic_id);
	return ft->topic.len >= 0 ? broker_find_topic(b, ft->topic.p, (size_t)ft->topic.len) : NULL;
}

static int64_t fetch_partition(struct fetch_state *fs, struct fetch_out *o, struct topic *t,
			       const struct kmsg_fetch_request_fetch_partition *fp, int64_t budget,
			       bool *first)
{
	struct kreq *q = fs->q;
	bool flex = q->version >= 12;
	int16_t err = KERR_NONE;
	struct partition *p = NULL;
	int64_t hw = -1, lso = -1, lstart = -1, local_start = -1;
	if (!t && q->version >= 13) {
		err = KERR_UNKNOWN_TOPIC_ID;
	} else if (!t || fp->partition < 0 || fp->partition >= t->n_partitions) {
		err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
	} else {
		p = t->parts[fp->partition];
		hw = log_high_watermark(p->log);
		lso = hw; /* no transactions yet: the last stable offset is the high watermark */
		local_start = log_start_offset(p->log);
		lstart = broker_partition_start_offset(p);
		/* Tiered: until the bucket's manifest is loaded, older offsets wait instead of failing. */
		bool cold_wait = p->tier && fp->fetch_offset < local_start && tier_part_loading(p->tier);
		if ((fp->fetch_offset < lstart && !cold_wait) || fp->fetch_offset > hw)
			err = KERR_OFFSET_OUT_OF_RANGE;
		/* As Kafka (KafkaApis.maybeConvertFetchedData): a topic configured to store zstd
		 * is not served to consumers older than Fetch v10 (KIP-110), whatever its batches. */
		if (q->version < 10 && topic_target_codec(q->srv->broker, t) == COMPRESS_ZSTD) {
			err = KERR_UNSUPPORTED_COMPRESSION_TYPE;
			hw = lso = lstart = -1;
		}
	}
	/* Cold reads first (tier/tier.h): offsets below the local log start come from the bucket
	 * through the read cache; a pending download leaves the partition empty for now (the
	 * fetch parks and the download wakes it). Collected before the header: a damaged object
	 * turns into this partition's error code. */
	struct tier_slice cold[16];
	int nc = 0;
	int64_t total = 0, off = fp->fetch_offset;
	int64_t limit = ST_MIN((int64_t)(fp->partition_max_bytes > 0 ? fp->partition_max_bytes : 0), budget);
	bool cold_pending = false;
	if (err == KERR_NONE && budget > 0 && p->tier) {
		while (nc < (int)ST_ARRAY_LEN(cold) && off < local_start) {
			bool min_one = *first && nc == 0;
			int64_t left = limit - total;
			if (left <= 0 && !min_one)
				break;
			int rc = tier_read(p->tier, off, left > 0 ? left : 0, min_one, &cold[nc]);
			if (rc == TIER_PENDING) {
				cold_pending = true;
				break;
			}
			if (rc == KERR_OFFSET_OUT_OF_RANGE) {
				off = local_start; /* past the remote end: the local log goes on */
				break;
			}
			if (rc != KERR_NONE) {
				if (nc == 0) {
					err = (int16_t)rc;
					slog_warn("kafka", "topic=%s partition=%d: cold read at offset %" PRId64
						  " failed: %s", t->name, fp->partition, off, kerr_name(rc));
				}
				cold_pending = true; /* whatever came before is sent; no local data after */
				break;
			}
			if (cold[nc].len == 0) {
				tier_slice_release(&cold[nc]);
				break;
			}
			total += cold[nc].len;
			off = cold[nc].next_offset;
			nc++;
		}
	}
	if (err != KERR_NONE)
		o->any_error = true;
	kw_i32(&o->w, fp->partition);
	kw_i16(&o->w, err);
	kw_i64(&o->w, hw);
	kw_i64(&o->w, lso);
	if (q->version >= 5)
		kw_i64(&o->w, lstart);
	fetch_arr_len(&o->w, flex, 0); /* aborted_transactions: none */
	if (q->version >= 11)
		kw_i32(&o->w, -1); /* preferred_read_replica */

	/* Collect slices first: the records length prefix comes before them. */
	struct log_slice slices[64];
	int n = 0;
	if (err == KERR_NONE && budget > 0 && !cold_pending && off >= local_start) {
		while (n < (int)ST_ARRAY_LEN(slices) && off < hw) {
			bool min_one = *first && n == 0 && nc == 0;
			int64_t left = limit - total;
			if (left <= 0 && !min_one)
				break;
			struct log_slice s;
			/* A closed segment not in memory: read off the reactor first (rwarm.h); the
			 * fetch parks like a cold read and the warm-up wakes it. */
			int rc = log_read_nb(p->log, off, hw, left > 0 ? left : 0, min_one, &s);
			if (rc == LOG_READ_PENDING)
				break;
			if (rc != KERR_NONE || s.len == 0) {
				if (rc == KERR_NONE)
					log_slice_release(&s);
				break;
			}
			slices[n++] = s;
			total += s.len;
			off = s.next_offset;
		}
	}
	if (flex)
		kw_uvarint(&o->w, (uint32_t)total + 1);
	else
		kw_i32(&o->w, (int32_t)total);
	if (nc > 0) {
		fetch_flush_kw(o);
		for (int i = 0; i < nc; i++) {
			struct tier_slice *hs = malloc(sizeof *hs);
			if (!hs) {
				tier_slice_release(&cold[i]);
				o->err = -ENOMEM;
				continue;
			}
			*hs = cold[i];
			if (chain_append_file(&o->c, hs->fd, hs->file_pos, (size_t)hs->len,
					      cold_slice_release, hs) < 0)
				o->err = -ENOMEM;
		}
		*first = false;
	}
	if (n > 0) {
		fetch_flush_kw(o);
		for (int i = 0; i < n; i++) {
			struct log_slice *hs = malloc(sizeof *hs);
			if (!hs) {
				log_slice_release(&slices[i]);
				o->err = -ENOMEM;
				continue;
			}
			*hs = slices[i];
			if (chain_append_file(&o->c, hs->fd, hs->file_pos, (size_t)hs->len, slice_release,
					      hs) < 0)
				o->err = -ENOMEM;
		}
		*first = false;
	}
	if (flex)
		kw_tags_empty(&o->w);
	return total;
}

static void fetch_unpark(struct fetch_state *fs)
{
	for (int32_t i = 0; i < fs->n_waiters; i++)
		partition_waiter_remove(&fs->waiters[i].w);
	uring_timer_cancel(fs->q->srv->ur, &fs->timer);
	fs->parked = false;
}

static void fetch_run(struct fetch_state *fs, bool final);

static void fetch_wake(struct partition_waiter *w)
{
	struct fetch_waiter *fw = ST_CONTAINER_OF(w, struct fetch_waiter, w);
	struct fetch_state *fs = fw->fs;
	/* Defer to a zero timer: the log calls us from inside its completion handling. */
	for (int32_t i = 0; i < fs->n_waiters; i++)
		partition_waiter_remove(&fs->waiters[i].w);
	uring_timer_arm(fs->q->srv->ur, &fs->timer, 0);
}

static void fetch_timer(struct uring_timer *t)
{
	struct fetch_state *fs = ST_CONTAINER_OF(t, struct fetch_state, timer);
	fetch_unpark(fs);
	fetch_run(fs, st_mono_ns() >= fs->deadline_ns || fs->q->srv->stopping ||
			      net_conn_closed(fs->q->nreq->conn));
}

static void fetch_park(struct fetch_state *fs)
{
	struct kreq *q = fs->q;
	if (!fs->waiters) {
		int32_t n = 0;
		for (int32_t i = 0; i < fs->req.topics.len; i++)
			n += fs->req.topics.items[i].partitions.len;
		fs->waiters = arena_calloc(&q->arena, (size_t)n + 1, sizeof *fs->waiters);
		if (!fs->waiters) {
			fetch_run(fs, true);
			return;
		}
	}
	fs->n_waiters = 0;
	for (int32_t i = 0; i < fs->req.topics.len; i++) {
		struct kmsg_fetch_request_fetch_topic *ft = &fs->req.topics.items[i];
		for (int32_t j = 0; j < ft->partitions.len; j++) {
			struct topic *t = fetch_topic(fs, ft);
			int32_t pi = ft->partitions.items[j].partition;
			if (!t || pi < 0 || pi >= t->n_partitions)
				continue;
			struct partition *p = t->parts[pi];
			struct fetch_waiter *fw = &fs->waiters[fs->n_waiters++];
			fw->fs = fs;
			fw->w.wake = fetch_wake;
			partition_waiter_add(p, &fw->w);
		}
	}
	int64_t left_ms = (fs->deadline_ns - st_mono_ns()) / 1000000;
	/* Wake at least every second even under a long max_wait: fetch_timer ends the wait when
	 * the server stops or the client has gone (nothing else would, and a shutdown waits for
	 * every parked request). */
	if (left_ms > 1000)
		left_ms = 1000;
	uring_timer_arm(q->srv->ur, &fs->timer, left_ms > 0 ? left_ms : 0);
	fs->parked = true;
}

static void fetch_run(struct fetch_state *fs, bool final)
{
	struct kreq *q = fs->q;
	bool flex = q->version >= 12;
	struct fetch_out o;
	chain_init(&o.c);
	kw_init(&o.w, 512);
	o.err = 0;
	o.any_error = false;
	kw_i32(&o.w, q->hdr.correlation_id);
	if (flex)
		kw_tags_empty(&o.w);
	kw_i32(&o.w, 0); /* throttle_time_ms */
	if (q->version >= 7) {
		kw_i16(&o.w, KERR_NONE);
		kw_i32(&o.w, 0); /* session id: Strata answers every fetch in full (no sessions) */
	}
	int64_t budget = fs->req.max_bytes > 0 ? fs->req.max_bytes : 0, total = 0;
	bool first = true, any_error = false;
	fetch_arr_len(&o.w, flex, fs->req.topics.len < 0 ? 0 : fs->req.topics.len);
	for (int32_t i = 0; i < fs->req.topics.len; i++) {
		struct kmsg_fetch_request_fetch_topic *ft = &fs->req.topics.items[i];
		struct topic *t = fetch_topic(fs, ft);
		if (q->version >= 13)
			kw_uuid(&o.w, ft->topic_id);
		else if (flex)
			kw_compact_string(&o.w, ft->topic);
		else
			kw_string(&o.w, ft->topic);
		fetch_arr_len(&o.w, flex, ft->partitions.len < 0 ? 0 : ft->partitions.len);
		for (int32_t j = 0; j < ft->partitions.len; j++) {
			const struct kmsg_fetch_request_fetch_partition *fp = &ft->partitions.items[j];
			/* fetch_partition flags every partition error (o.any_error), cold reads too */
			int64_t got = fetch_partition(fs, &o, t, fp, budget - total, &first);
			total += got;
		}
		if (flex)
			kw_tags_empty(&o.w);
	}
	if (flex)
		kw_tags_empty(&o.w);
	any_error = any_error || o.any_error;
	if (!final && !any_error && total < fs->req.min_bytes && !o.err) {
		/* Not enough yet: drop what we built (releasing slices) and wait. */
		kw_free(&o.w);
		chain_release(&o.c);
		fetch_park(fs);
		return;
	}
	fetch_flush_kw(&o);
	kw_free(&o.w);
	if (o.err) {
		chain_release(&o.c);
		kafka_bad_request(q, "out of memory building the fetch response");
		return;
	}
	kafka_resp_chain(q, &o.c);
}

void kafka_handle_fetch(struct kreq *q)
{
	struct fetch_state *fs = arena_calloc(&q->arena, 1, sizeof *fs);
	if (!fs) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	fs->q = q;
	kmsg_fetch_request_init(&fs->req);
	if (kmsg_fetch_request_decode(&q->body, q->version, &fs->req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	if (fs->req.topics.len < 0)
		fs->req.topics.len = 0;
	uring_timer_init(&fs->timer, fetch_timer);
	int32_t wait_ms = fs->req.max_wait_ms < 0 ? 0 : fs->req.max_wait_ms;
	fs->deadline_ns = st_mono_ns() + (int64_t)wait_ms * 1000000;
	fetch_run(fs, wait_ms == 0 || fs->req.min_bytes <= 0);
}

/* --- ListOffsets ---------------------------------------------------------------------------- */

#define LIST_OFFSETS_LATEST (-1)
#define LIST_OFFSETS_EARLIEST (-2)
#define LIST_OFFSETS_MAX_TIMESTAMP (-3)

/* Tiered partitions may need the bucket (timestamps of remote segments, or the manifest not
 * loaded yet): the request then parks like a fetch, woken by the download, and is answered
 * REQUEST_TIMED_OUT for what is still missing after LIST_OFFSETS_REMOTE_WAIT_MS. */
#define LIST_OFFSETS_REMOTE_WAIT_MS 30000

struct lo_waiter {
	struct partition_waiter w;
	struct lo_state *st;
};

struct lo_state {
	struct kreq *q;
	struct kmsg_list_offsets_request req;
	struct kmsg_list_offsets_response resp;
	struct uring_timer timer;
	int64_t deadline_ns;
	struct lo_waiter *waiters;
	int32_t n_waiters, cap_waiters;
};

/* One partition's answer. Returns TIER_PENDING when the bucket must be asked first. */
static int list_offsets_partition(struct partition *p, int64_t timestamp, int64_t *off, int64_t *ts)
{
	int err = KERR_NONE;
	int64_t local_start = log_start_offset(p->log);
	*off = -1;
	*ts = -1;
	switch (timestamp) {
	case LIST_OFFSETS_LATEST:
		*off = log_high_watermark(p->log);
		break;
	case LIST_OFFSETS_EARLIEST:
		if (p->tier && tier_part_loading(p->tier))
			return TIER_PENDING;
		*off = broker_partition_start_offset(p);
		break;
	case LIST_OFFSETS_MAX_TIMESTAMP: {
		err = log_max_timestamp(p->log, off, ts);
		int64_t rmax = p->tier && err == KERR_NONE ? tier_max_timestamp(p->tier, local_start) : -1;
		if (rmax > *ts) {
			int64_t roff, rts;
			err = tier_offset_for_timestamp(p->tier, rmax, local_start, &roff, &rts);
			if (err == KERR_NONE && roff >= 0) {
				*off = roff;
				*ts = rts;
			}
		}
		break;
	}
	default:
		if (timestamp < 0)
			return KERR_INVALID_REQUEST;
		if (p->tier) {
			/* The oldest records are in the bucket: look there first. */
			err = tier_offset_for_timestamp(p->tier, timestamp, local_start, off, ts);
			if (err != KERR_NONE || *off >= 0)
				break;
		}
		err = log_offset_for_timestamp(p->log, timestamp, off, ts);
		break;
	}
	return err;
}

static void lo_run(struct lo_state *st, bool final);

static void lo_timer(struct uring_timer *t)
{
	struct lo_state *st = ST_CONTAINER_OF(t, struct lo_state, timer);
	for (int32_t i = 0; i < st->n_waiters; i++)
		partition_waiter_remove(&st->waiters[i].w);
	lo_run(st, st_mono_ns() >= st->deadline_ns || st->q->srv->stopping ||
		       net_conn_closed(st->q->nreq->conn));
}

static void lo_wake(struct partition_waiter *w)
{
	struct lo_state *st = ST_CONTAINER_OF(w, struct lo_waiter, w)->st;
	for (int32_t i = 0; i < st->n_waiters; i++)
		partition_waiter_remove(&st->waiters[i].w);
	uring_timer_arm(st->q->srv->ur, &st->timer, 0); /* not from inside the waker */
}

static void lo_run(struct lo_state *st, bool final)
{
	struct kreq *q = st->q;
	st->n_waiters = 0;
	int32_t nt = st->resp.topics.len;
	for (int32_t i = 0; i < nt; i++) {
		struct kmsg_list_offsets_request_list_offsets_topic *rt = &st->req.topics.items[i];
		struct kmsg_list_offsets_response_list_offsets_topic_response *tr = &st->resp.topics.items[i];
		for (int32_t j = 0; j < tr->partitions.len; j++) {
			struct kmsg_list_offsets_request_list_offsets_partition *rp = &rt->partitions.items[j];
			struct kmsg_list_offsets_response_list_offsets_partition_response *pr =
				&tr->partitions.items[j];
			pr->partition_index = rp->partition_index;
			pr->timestamp = -1;
			pr->offset = -1;
			pr->leader_epoch = q->version >= 4 ? 0 : -1; /* absent before v4 */
			struct partition *p = rt->name.len >= 0
				? broker_find_partition(q->srv->broker, rt->name.p, (size_t)rt->name.len,
							rp->partition_index) : NULL;
			if (!p) {
				pr->error_code = KERR_UNKNOWN_TOPIC_OR_PARTITION;
				continue;
			}
			int64_t off = -1, ts = -1;
			int err = list_offsets_partition(p, rp->timestamp, &off, &ts);
			if (err == TIER_PENDING) {
				if (!final && st->n_waiters < st->cap_waiters) {
					struct lo_waiter *lw = &st->waiters[st->n_waiters++];
					lw->st = st;
					lw->w.wake = lo_wake;
					partition_waiter_add(p, &lw->w);
				}
				err = KERR_REQUEST_TIMED_OUT;
				off = ts = -1;
			}
			pr->error_code = (int16_t)err;
			pr->offset = off;
			pr->timestamp = ts;
		}
	}
	if (st->n_waiters > 0) {
		/* Looks again at least every second: a shutdown or closed connection ends the wait. */
		int64_t left_ms = (st->deadline_ns - st_mono_ns()) / 1000000;
		uring_timer_arm(q->srv->ur, &st->timer, ST_MAX(ST_MIN(left_ms, 1000), 0));
		return;
	}
	KAFKA_RESPOND(q, list_offsets_response, &st->resp);
}

void kafka_handle_list_offsets(struct kreq *q)
{
	struct lo_state *st = arena_calloc(&q->arena, 1, sizeof *st);
	if (!st) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	st->q = q;
	kmsg_list_offsets_request_init(&st->req);
	if (kmsg_list_offsets_request_decode(&q->body, q->version, &st->req, &q->arena) < 0) {
		kafka_bad_request(q, "undecodable body");
		return;
	}
	struct kmsg_list_offsets_response *resp = &st->resp;
	kmsg_list_offsets_response_init(resp);
	int32_t nt = st->req.topics.len < 0 ? 0 : st->req.topics.len, n_parts = 0;
	resp->topics.items = arena_calloc(&q->arena, (size_t)nt + 1, sizeof *resp->topics.items);
	if (!resp->topics.items) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	resp->topics.len = nt;
	for (int32_t i = 0; i < nt; i++) {
		struct kmsg_list_offsets_request_list_offsets_topic *rt = &st->req.topics.items[i];
		struct kmsg_list_offsets_response_list_offsets_topic_response *tr = &resp->topics.items[i];
		kmsg_list_offsets_response_list_offsets_topic_response_init(tr);
		tr->name = rt->name;
		int32_t np = rt->partitions.len < 0 ? 0 : rt->partitions.len;
		tr->partitions.items = arena_calloc(&q->arena, (size_t)np + 1, sizeof *tr->partitions.items);
		if (!tr->partitions.items) {
			kafka_bad_request(q, "out of memory");
			return;
		}
		tr->partitions.len = np;
		for (int32_t j = 0; j < np; j++)
			kmsg_list_offsets_response_list_offsets_partition_response_init(&tr->partitions.items[j]);
		n_parts += np;
	}
	st->waiters = arena_calloc(&q->arena, (size_t)n_parts + 1, sizeof *st->waiters);
	if (!st->waiters) {
		kafka_bad_request(q, "out of memory");
		return;
	}
	st->cap_waiters = n_parts;
	uring_timer_init(&st->timer, lo_timer);
	st->deadline_ns = st_mono_ns() + (int64_t)LIST_OFFSETS_REMOTE_WAIT_MS * 1000000;
	lo_run(st, false);
}
