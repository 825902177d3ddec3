/* uring.h -- one io_uring per reactor thread, with a completion callback per operation and
 * timers. The log engine and the network reactor both submit through it; it owns no policy.
 * Not thread-safe: one thread owns a struct uring and everything submitted on it. */
#ifndef STRATA_URING_H
#define STRATA_URING_H

#include <liburing.h>
#include <stdint.h>

struct uring;
struct uring_op;

/* Called on the owning thread once for every completion of op (res is the CQE's res:
 * >= 0 or -errno; flags are the CQE's flags, e.g. IORING_CQE_F_MORE for multishot). */
typedef void (*uring_cb)(struct uring_op *op, int res, uint32_t flags);

/* Embedded in the caller's own struct; recover the struct with ST_CONTAINER_OF. */
struct uring_op {
	uring_cb cb;
};

/* A one-shot timer, ordered in a binary heap by deadline. Embedded in the caller's struct. */
struct uring_timer {
	int64_t deadline_ns; /* CLOCK_MONOTONIC */
	void (*fire)(struct uring_timer *t);
	uint32_t heap_idx;   /* internal: position in the heap, UINT32_MAX when not armed */
};

struct uring {
	struct io_uring ring;
	uint32_t inflight;        /* submitted ops whose final completion has not arrived */
	uint32_t pending_sqes;    /* prepared but not yet submitted */
	struct uring_timer **timers;
	uint32_t timers_len, timers_cap;
	int stopping;
};

/* entries: SQ size (rounded up by the kernel); returns 0 or -errno. */
int uring_init(struct uring *ur, unsigned entries);
void uring_fini(struct uring *ur);

/* Returns an SQE with user_data set to op, submitting queued SQEs first when the SQ is full.
 * Never returns NULL (asserts: a full ring after a submit is a broken invariant).
 * The caller preps the SQE with io_uring_prep_* and must then call uring_sqe_data(sqe, op)
 * since io_uring_prep_* clears user_data. */
struct io_uring_sqe *uring_get_sqe(struct uring *ur);
static inline void uring_sqe_data(struct io_uring_sqe *sqe, struct uring_op *op)
{
	io_uring_sqe_set_data(sqe, op);
}
/* Marks one op as finished (not expecting more completions): call from multishot ops' last
 * completion handling is automatic; the wrapper counts an op in flight from get_sqe until a
 * completion without IORING_CQE_F_MORE. */

/* Submits queued SQEs, waits up to timeout_ms (or the nearest timer, whichever is sooner; -1 =
 * until something happens) for at least one completion, then runs callbacks for every
 * available completion and every expired timer. Returns the number of callbacks run or -errno. */
int uring_run_once(struct uring *ur, int timeout_ms);
/* Runs until no op is in flight and no timer is armed, or until uring_stop(). */
int uring_drain(struct uring *ur);
/* Submits queued SQEs without waiting. */
int uring_submit(struct uring *ur);

void uring_timer_init(struct uring_timer *t, void (*fire)(struct uring_timer *t));
/* Arms (or re-arms) t to fire after delay_ms from now. */
void uring_timer_arm(struct uring *ur, struct uring_timer *t, int64_t delay_ms);
void uring_timer_cancel(struct uring *ur, struct uring_timer *t);
static inline int uring_timer_armed(const struct uring_timer *t) { return t->heap_idx != UINT32_MAX; }

#endif
