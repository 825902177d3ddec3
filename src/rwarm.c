/* rwarm.c -- read warm-up threads (rwarm.h): read a closed segment's .index and .timeindex whole
 * and the .log pages holding the batch headers a read starts and ends at, so the page cache has
 * them when the reactor looks the segment up again. Knows files and Kafka's index format only;
 * never touches a struct log. The eventfd read that brings completions back is armed on the
 * reactor's ring only while requests are outstanding. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strata/common.h"
#include "strata/fsutil.h"
#include "strata/metrics.h"
#include "strata/rwarm.h"
#include "strata/slog.h"
#include "strata/uring.h"

#define RWARM_INDEX_MAX_BYTES (64u << 20) /* far above segment.index.bytes' 10 MiB default */
#define RWARM_HDR_SPAN_BYTES (64u << 10)  /* read around each header position: the walk from
					     the index entry to the batch stays within it */
#define RWARM_SCRATCH_BYTES (256u << 10)

struct rwarm_req {
	struct rwarm_req *next;
	char topic[256];
	int32_t partition;
	int64_t base_offset, offset, max_bytes;
	char stem[PATH_MAX];
};

struct rwarm {
	struct uring *ur;
	rwarm_done_fn done;
	void *ctx;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct rwarm_req *q_head, *q_tail;   /* to do */
	struct rwarm_req *d_head;            /* done, for the reactor */
	uint32_t outstanding;                /* taken by submit, done not yet delivered (reactor) */
	bool stop;
	pthread_t *threads;
	int n_threads;
	int efd;
	uint64_t efd_val;
	struct uring_op efd_op;
	bool efd_armed;
	struct rwarm_stats st;
	struct metrics_series *m_done, *m_bytes; /* NULL-safe (metrics.h) */
};

/* Reads [pos, pos + len) through buf (cap bytes at a time); returns bytes read or -errno. */
static int64_t read_range(int fd, uint8_t *buf, size_t cap, int64_t pos, int64_t len)
{
	int64_t got = 0;
	while (got < len) { /* bounded: every turn reads a full window or ends */
		size_t n = (size_t)ST_MIN((int64_t)cap, len - got);
		int64_t r = st_pread_full(fd, buf, n, pos + got);
		if (r < 0)
			return r;
		got += r;
		if ((size_t)r < n)
			break; /* end of file */
	}
	return got;
}

/* The whole file into a malloc'd buffer (at most RWARM_INDEX_MAX_BYTES). */
static int read_whole(const char *path, uint8_t **out, size_t *len_out)
{
	*out = NULL;
	*len_out = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
	} else if (st.st_size > 0) {
		size_t want = (size_t)ST_MIN((int64_t)st.st_size, (int64_t)RWARM_INDEX_MAX_BYTES);
		uint8_t *b = malloc(want);
		int64_t got = b ? read_range(fd, b, want, 0, (int64_t)want) : -ENOMEM;
		if (got < 0) {
			free(b);
			rc = (int)got;
		} else {
			*out = b;
			*len_out = (size_t)got;
		}
	}
	close(fd);
	return rc;
}

/* Kafka's offset index (8-byte entries: offset - base, position; big-endian): the valid,
 * increasing prefix (a preallocated tail of zeros ends it). */
static size_t index_entries(const uint8_t *ix, size_t len)
{
	size_t n = len / 8;
	for (size_t i = 1; i < n; i++)
		if (st_be32(ix + i * 8) <= st_be32(ix + (i - 1) * 8) ||
		    st_be32(ix + i * 8 + 4) <= st_be32(ix + (i - 1) * 8 + 4))
			return i;
	return n;
}

/* Position of the last entry whose key (field 0: relative offset, 1: position) <= key. */
static int64_t index_lookup(const uint8_t *ix, size_t n, int field, int64_t key)
{
	if (!n || (int64_t)st_be32(ix + (size_t)field * 4) > key)
		return 0;
	size_t lo = 0, hi = n;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if ((int64_t)st_be32(ix + mid * 8 + (size_t)field * 4) <= key)
			lo = mid;
		else
			hi = mid;
	}
	return (int64_t)st_be32(ix + lo * 8 + 4);
}

static void warm_one(struct rwarm *w, const struct rwarm_req *r, uint8_t *scratch)
{
	char path[PATH_MAX + 16];
	int64_t bytes = 0;
	uint8_t *ix = NULL;
	size_t ix_len = 0;
	/* Whole .index (kept for the lookups below) and .timeindex: log_read's index load
	 * validates every entry of both. */
	snprintf(path, sizeof path, "%s.index", r->stem);
	if (read_whole(path, &ix, &ix_len) == 0)
		bytes += (int64_t)ix_len;
	snprintf(path, sizeof path, "%s.timeindex", r->stem);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		int64_t got = read_range(fd, scratch, RWARM_SCRATCH_BYTES, 0, RWARM_INDEX_MAX_BYTES);
		bytes += got > 0 ? got : 0;
		close(fd);
	}
	snprintf(path, sizeof path, "%s.log", r->stem);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		size_t n = index_entries(ix, ix_len);
		int64_t rel = r->offset - r->base_offset;
		int64_t p1 = index_lookup(ix, n, 0, rel < 0 ? 0 : ST_MIN(rel, (int64_t)INT32_MAX));
		int64_t got = read_range(fd, scratch, RWARM_SCRATCH_BYTES, p1, RWARM_HDR_SPAN_BYTES);
		bytes += got > 0 ? got : 0;
		int64_t bound = r->max_bytes > INT64_MAX - p1 ? INT64_MAX : p1 + r->max_bytes;
		int64_t p2 = index_lookup(ix, n, 1, ST_MIN(bound, (int64_t)INT32_MAX));
		if (p2 > p1 + (int64_t)RWARM_HDR_SPAN_BYTES) {
			got = read_range(fd, scratch, RWARM_SCRATCH_BYTES, p2, RWARM_HDR_SPAN_BYTES);
			bytes += got > 0 ? got : 0;
		}
		close(fd);
	}
	free(ix);
	pthread_mutex_lock(&w->lock);
	w->st.bytes_read += bytes;
	pthread_mutex_unlock(&w->lock);
	metrics_add(w->m_bytes, bytes);
}

static void kick(int efd)
{
	uint64_t one = 1;
	ssize_t n = write(efd, &one, sizeof one);
	(void)n; /* EAGAIN: the counter is already non-zero, the reactor will look */
}

static void *warm_thread(void *arg)
{
	struct rwarm *w = arg;
	uint8_t *scratch = malloc(RWARM_SCRATCH_BYTES);
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->stop && !w->q_head)
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->stop)
			break;
		struct rwarm_req *r = w->q_head;
		w->q_head = r->next;
		if (!w->q_head)
			w->q_tail = NULL;
		pthread_mutex_unlock(&w->lock);
		if (scratch)
			warm_one(w, r, scratch);
		pthread_mutex_lock(&w->lock);
		r->next = w->d_head;
		w->d_head = r;
		kick(w->efd);
	}
	pthread_mutex_unlock(&w->lock);
	free(scratch);
	return NULL;
}

static void arm(struct rwarm *w);

/* Reactor: hands every finished request to done. */
static void deliver(struct rwarm *w)
{
	pthread_mutex_lock(&w->lock);
	struct rwarm_req *r = w->d_head;
	w->d_head = NULL;
	pthread_mutex_unlock(&w->lock);
	while (r) { /* bounded: at most RWARM_QUEUE_MAX outstanding */
		struct rwarm_req *next = r->next;
		ST_ASSERT(w->outstanding > 0);
		w->outstanding--;
		w->st.done++;
		metrics_inc(w->m_done);
		w->done(w->ctx, r->topic, r->partition, r->base_offset);
		free(r);
		r = next;
	}
}

static void on_efd(struct uring_op *op, int res, uint32_t flags)
{
	(void)flags;
	struct rwarm *w = ST_CONTAINER_OF(op, struct rwarm, efd_op);
	w->efd_armed = false;
	if (res < 0 && res != -EAGAIN && res != -EINTR)
		slog_error("rwarm", "eventfd read failed: %s", strerror(-res));
	deliver(w);
	if (w->outstanding > 0)
		arm(w);
}

static void arm(struct rwarm *w)
{
	if (w->efd_armed)
		return;
	struct io_uring_sqe *sqe = uring_get_sqe(w->ur);
	io_uring_prep_read(sqe, w->efd, &w->efd_val, sizeof w->efd_val, 0);
	w->efd_op.cb = on_efd;
	uring_sqe_data(sqe, &w->efd_op);
	w->efd_armed = true;
}

bool rwarm_submit(struct rwarm *w, const char *topic, int32_t partition, const char *path_stem,
		  int64_t base_offset, int64_t offset, int64_t max_bytes)
{
	if (!w || w->stop || w->outstanding >= RWARM_QUEUE_MAX)
		return false;
	struct rwarm_req *r = calloc(1, sizeof *r);
	if (!r)
		return false;
	if (snprintf(r->topic, sizeof r->topic, "%s", topic) >= (int)sizeof r->topic ||
	    snprintf(r->stem, sizeof r->stem, "%s", path_stem) >= (int)sizeof r->stem) {
		free(r);
		return false;
	}
	r->partition = partition;
	r->base_offset = base_offset;
	r->offset = offset;
	r->max_bytes = max_bytes;
	pthread_mutex_lock(&w->lock);
	if (w->q_tail)
		w->q_tail->next = r;
	else
		w->q_head = r;
	w->q_tail = r;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	w->outstanding++;
	arm(w);
	return true;
}

int rwarm_open(struct uring *ur, int threads, rwarm_done_fn done, void *ctx, struct rwarm **out)
{
	*out = NULL;
	if (threads < 1 || threads > 64 || !done)
		return -EINVAL;
	struct rwarm *w = calloc(1, sizeof *w);
	if (!w)
		return -ENOMEM;
	w->ur = ur;
	w->done = done;
	w->ctx = ctx;
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	w->threads = calloc((size_t)threads, sizeof *w->threads);
	if (w->efd < 0 || !w->threads) {
		int rc = w->efd < 0 ? -errno : -ENOMEM;
		if (w->efd >= 0)
			close(w->efd);
		free(w->threads);
		free(w);
		return rc;
	}
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->m_done = metrics_counter(metrics_global(), "strata_log_read_warmups_total",
				    "Reads of closed segments not in memory, warmed up off the reactor "
				    "before they were served", NULL, 0);
	w->m_bytes = metrics_counter(metrics_global(), "strata_log_read_warmup_bytes_total",
				     "Index and batch header bytes read by those warm-ups", NULL, 0);
	for (int i = 0; i < threads; i++) {
		int rc = pthread_create(&w->threads[i], NULL, warm_thread, w);
		if (rc != 0) {
			rwarm_close(w);
			return -rc;
		}
		w->n_threads++;
	}
	*out = w;
	return 0;
}

void rwarm_close(struct rwarm *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	for (int i = 0; i < w->n_threads; i++)
		pthread_join(w->threads[i], NULL);
	/* Not started: done all the same (the readers' segments stop waiting). */
	while (w->q_head) {
		struct rwarm_req *r = w->q_head;
		w->q_head = r->next;
		r->next = w->d_head;
		w->d_head = r;
	}
	w->q_tail = NULL;
	/* The eventfd read may sit on the ring with our buffer: let it complete. */
	if (w->efd_armed) {
		kick(w->efd);
		for (int i = 0; i < 100 && w->efd_armed; i++)
			uring_run_once(w->ur, 100);
	}
	deliver(w);
	if (w->efd_armed) {
		slog_error("rwarm", "eventfd read did not complete at close: leaving it allocated");
		return;
	}
	close(w->efd);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w->threads);
	free(w);
}

void rwarm_get_stats(struct rwarm *w, struct rwarm_stats *out)
{
	pthread_mutex_lock(&w->lock);
	*out = w->st;
	pthread_mutex_unlock(&w->lock);
}
