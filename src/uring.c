/* uring.c -- the io_uring loop: SQE handout, completion dispatch to per-op callbacks, and a
 * binary-heap of timers whose nearest deadline bounds each wait. No I/O policy lives here. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "strata/common.h"
#include "strata/uring.h"

int uring_init(struct uring *ur, unsigned entries)
{
	memset(ur, 0, sizeof *ur);
	struct io_uring_params p;
	memset(&p, 0, sizeof p);
	/* Completions may outnumber SQ entries (multishot recv/accept): a large CQ avoids overflow. */
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = entries * 8;
	int rc = io_uring_queue_init_params(entries, &ur->ring, &p);
	if (rc < 0) {
		memset(&p, 0, sizeof p);
		rc = io_uring_queue_init_params(entries, &ur->ring, &p);
	}
	return rc;
}

void uring_fini(struct uring *ur)
{
	io_uring_queue_exit(&ur->ring);
	free(ur->timers);
	ur->timers = NULL;
}

struct io_uring_sqe *uring_get_sqe(struct uring *ur)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ur->ring);
	if (!sqe) {
		io_uring_submit(&ur->ring);
		ur->pending_sqes = 0;
		sqe = io_uring_get_sqe(&ur->ring);
	}
	ST_ASSERT(sqe != NULL);
	ur->pending_sqes++;
	ur->inflight++;
	return sqe;
}

int uring_submit(struct uring *ur)
{
	if (!ur->pending_sqes)
		return 0;
	int rc = io_uring_submit(&ur->ring);
	if (rc >= 0)
		ur->pending_sqes = 0;
	return rc < 0 ? rc : 0;
}

/* --- timers: min-heap on deadline_ns ------------------------------------------------------ */

static void timer_swap(struct uring *ur, uint32_t a, uint32_t b)
{
	struct uring_timer *t = ur->timers[a];
	ur->timers[a] = ur->timers[b];
	ur->timers[b] = t;
	ur->timers[a]->heap_idx = a;
	ur->timers[b]->heap_idx = b;
}

static void timer_up(struct uring *ur, uint32_t i)
{
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (ur->timers[parent]->deadline_ns <= ur->timers[i]->deadline_ns)
			break;
		timer_swap(ur, i, parent);
		i = parent;
	}
}

static void timer_down(struct uring *ur, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < ur->timers_len && ur->timers[l]->deadline_ns < ur->timers[m]->deadline_ns)
			m = l;
		if (r < ur->timers_len && ur->timers[r]->deadline_ns < ur->timers[m]->deadline_ns)
			m = r;
		if (m == i)
			return;
		timer_swap(ur, i, m);
		i = m;
	}
}

void uring_timer_init(struct uring_timer *t, void (*fire)(struct uring_timer *t))
{
	t->deadline_ns = 0;
	t->fire = fire;
	t->heap_idx = UINT32_MAX;
}

void uring_timer_cancel(struct uring *ur, struct uring_timer *t)
{
	uint32_t i = t->heap_idx;
	if (i == UINT32_MAX)
		return;
	ST_ASSERT(i < ur->timers_len && ur->timers[i] == t);
	uint32_t last = --ur->timers_len;
	if (i != last) {
		ur->timers[i] = ur->timers[last];
		ur->timers[i]->heap_idx = i;
		timer_up(ur, i);
		timer_down(ur, ur->timers[i]->heap_idx);
	}
	t->heap_idx = UINT32_MAX;
}

void uring_timer_arm(struct uring *ur, struct uring_timer *t, int64_t delay_ms)
{
	uring_timer_cancel(ur, t);
	if (ur->timers_len == ur->timers_cap) {
		uint32_t cap = ur->timers_cap ? ur->timers_cap * 2 : 64;
		struct uring_timer **n = realloc(ur->timers, cap * sizeof *n);
		ST_ASSERT(n != NULL);
		ur->timers = n;
		ur->timers_cap = cap;
	}
	t->deadline_ns = st_mono_ns() + (delay_ms < 0 ? 0 : delay_ms) * 1000000;
	t->heap_idx = ur->timers_len;
	ur->timers[ur->timers_len++] = t;
	timer_up(ur, t->heap_idx);
}

static int timers_fire(struct uring *ur)
{
	int n = 0;
	int64_t now = st_mono_ns();
	/* Bounded: only timers due now; a timer re-armed by its callback lands in the future. */
	while (ur->timers_len && ur->timers[0]->deadline_ns <= now) {
		struct uring_timer *t = ur->timers[0];
		uring_timer_cancel(ur, t);
		t->fire(t);
		n++;
	}
	return n;
}

/* --- the loop ------------------------------------------------------------------------------- */

static int reap(struct uring *ur)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	int n = 0;
	/* Callbacks may submit more ops; they go in after this batch. Copy out before dispatch so
	 * the CQ slot can be released first (a callback may run a nested wait). */
	for (;;) {
		seen = 0;
		struct { struct uring_op *op; int res; uint32_t flags; } batch[64];
		unsigned cnt = 0;
		io_uring_for_each_cqe(&ur->ring, head, cqe) {
			if (cnt == ST_ARRAY_LEN(batch))
				break;
			batch[cnt].op = io_uring_cqe_get_data(cqe);
			batch[cnt].res = cqe->res;
			batch[cnt].flags = cqe->flags;
			cnt++;
			seen++;
		}
		if (!seen)
			break;
		io_uring_cq_advance(&ur->ring, seen);
		for (unsigned i = 0; i < cnt; i++) {
			if (!(batch[i].flags & IORING_CQE_F_MORE)) {
				ST_ASSERT(ur->inflight > 0);
				ur->inflight--;
			}
			if (batch[i].op && batch[i].op->cb)
				batch[i].op->cb(batch[i].op, batch[i].res, batch[i].flags);
			n++;
		}
	}
	return n;
}

int uring_run_once(struct uring *ur, int timeout_ms)
{
	int64_t wait_ns = timeout_ms < 0 ? -1 : (int64_t)timeout_ms * 1000000;
	if (ur->timers_len) {
		int64_t until = ur->timers[0]->deadline_ns - st_mono_ns();
		if (until < 0)
			until = 0;
		if (wait_ns < 0 || until < wait_ns)
			wait_ns = until;
	}
	int n = reap(ur);
	if (n == 0) {
		struct io_uring_cqe *cqe = NULL;
		int rc;
		ur->pending_sqes = 0;
		if (wait_ns < 0) {
			rc = io_uring_submit_and_wait(&ur->ring, 1);
		} else if (wait_ns == 0) {
			rc = io_uring_submit(&ur->ring);
		} else {
			struct __kernel_timespec ts = { .tv_sec = wait_ns / 1000000000,
							.tv_nsec = wait_ns % 1000000000 };
			rc = io_uring_submit_and_wait_timeout(&ur->ring, &cqe, 1, &ts, NULL);
		}
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			return rc;
		n = reap(ur);
	} else {
		uring_submit(ur);
	}
	n += timers_fire(ur);
	return n;
}

int uring_drain(struct uring *ur)
{
	ur->stopping = 0;
	while ((ur->inflight || ur->timers_len) && !ur->stopping) {
		int rc = uring_run_once(ur, -1);
		if (rc < 0)
			return rc;
	}
	return 0;
}
