/* rwarm.h -- read warm-up: brings a closed log segment's index files and the pages of the batch
 * headers a read will look at into the page cache, on its own threads, so that the reactor's
 * lookups (open, index load and validation, header preads) never wait for the disk. Works on
 * files by path only: shares no state with the log; a segment deleted meanwhile is no error.
 * Completions come back on the reactor through an eventfd read on its ring. */
#ifndef STRATA_RWARM_H
#define STRATA_RWARM_H
#include <stdbool.h>
#include <stdint.h>

struct uring;
struct rwarm;

/* On the reactor, once per request that rwarm_submit took. */
typedef void (*rwarm_done_fn)(void *ctx, const char *topic, int32_t partition, int64_t base_offset);

#define RWARM_QUEUE_MAX 1024

int rwarm_open(struct uring *ur, int threads, rwarm_done_fn done, void *ctx, struct rwarm **out);
/* Queues a warm-up of segment <path_stem>.{index,timeindex,log} for a read at offset of up to
 * max_bytes. False when the queue is full, memory is short or the pool is stopping. */
bool rwarm_submit(struct rwarm *w, const char *topic, int32_t partition, const char *path_stem,
		  int64_t base_offset, int64_t offset, int64_t max_bytes);
/* Stops the threads (requests not started are dropped, their done still runs) and runs the
 * ring until the eventfd read is back. */
void rwarm_close(struct rwarm *w);

struct rwarm_stats {
	int64_t done;                   /* requests finished */
	int64_t bytes_read;             /* index and header bytes read */
};
void rwarm_get_stats(struct rwarm *w, struct rwarm_stats *out);

#endif
