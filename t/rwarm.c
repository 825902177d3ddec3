/* t/rwarm.c -- the read warm-up pool (src/rwarm.c): requests come back on the ring, once each;
 * a segment's index files and header pages are in the page cache afterwards; missing files are
 * no error; close delivers what was queued. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "strata/common.h"
#include "strata/rwarm.h"
#include "strata/uring.h"
#include "tap.h"

static struct uring ur;
static struct {
	int n;
	char topic[64];
	int32_t partition;
	int64_t base;
} got;

static void on_done(void *ctx, const char *topic, int32_t partition, int64_t base_offset)
{
	(void)ctx;
	got.n++;
	snprintf(got.topic, sizeof got.topic, "%s", topic);
	got.partition = partition;
	got.base = base_offset;
}

static void write_file(const char *path, const void *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, p, len) != (ssize_t)len || fdatasync(fd) < 0)
		BAIL_OUT("write %s: %s", path, strerror(errno));
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
}

/* Pages of path resident in the page cache, of those asked for ([off, off + len)). */
static int resident(const char *path, size_t off, size_t len, int *total)
{
	int fd = open(path, O_RDONLY);
	long page = sysconf(_SC_PAGESIZE);
	*total = 0;
	if (fd < 0)
		return -1;
	void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)off);
	close(fd);
	if (m == MAP_FAILED)
		return -1;
	size_t pages = (len + (size_t)page - 1) / (size_t)page;
	unsigned char *vec = malloc(pages);
	int n = 0;
	if (vec && mincore(m, len, vec) == 0)
		for (size_t i = 0; i < pages; i++)
			n += vec[i] & 1;
	*total = (int)pages;
	free(vec);
	munmap(m, len);
	return n;
}

static bool wait_done(int want)
{
	for (int i = 0; i < 500 && got.n < want; i++)
		uring_run_once(&ur, 10);
	return got.n == want;
}

int main(void)
{
	char dir[] = "/tmp/strata-rwarm-XXXXXX";
	if (!mkdtemp(dir) || uring_init(&ur, 64) < 0)
		BAIL_OUT("setup");
	char stem[PATH_MAX], p[PATH_MAX + 16];
	snprintf(stem, sizeof stem, "%s/00000000000000001000", dir);
	/* A 4 MiB .log, an offset index every 4 KiB (offset 1000 + 4i at position 4096i) with a
	 * preallocated zero tail, a time index. */
	enum { LOG_BYTES = 4 << 20, ENTRIES = LOG_BYTES / 4096, TAIL = 500 };
	uint8_t *log = calloc(1, LOG_BYTES), *ix = calloc(ENTRIES + TAIL, 8), *tx = calloc(ENTRIES, 12);
	if (!log || !ix || !tx)
		BAIL_OUT("calloc");
	for (int i = 0; i < ENTRIES; i++) {
		st_put_be32(ix + i * 8, (uint32_t)(4 * i));
		st_put_be32(ix + i * 8 + 4, (uint32_t)(4096 * i));
		st_put_be64(tx + i * 12, (uint64_t)(1700000000000ll + i));
		st_put_be32(tx + i * 12 + 8, (uint32_t)(4 * i));
	}
	snprintf(p, sizeof p, "%s.log", stem);
	write_file(p, log, LOG_BYTES);
	snprintf(p, sizeof p, "%s.index", stem);
	write_file(p, ix, (ENTRIES + TAIL) * 8);
	snprintf(p, sizeof p, "%s.timeindex", stem);
	write_file(p, tx, ENTRIES * 12);

	struct rwarm *w;
	ok(rwarm_open(&ur, 2, on_done, NULL, &w) == 0, "rwarm_open");
	/* A read at offset 1000 + 400 (position 409600) of 1 MiB: header pages at its start and
	 * around its end (position ~1458176). */
	ok(rwarm_submit(w, "orders", 3, stem, 1000, 1400, 1 << 20), "submit");
	bool one = wait_done(1);
	ok(one && strcmp(got.topic, "orders") == 0 && got.partition == 3 && got.base == 1000,
	   "done on the ring once, with topic, partition and base (%d: %s %d %lld)", got.n, got.topic,
	   got.partition, (long long)got.base);
	int total, n;
	snprintf(p, sizeof p, "%s.index", stem);
	n = resident(p, 0, (ENTRIES + TAIL) * 8, &total);
	ok(n == total, "the offset index is in the page cache (%d of %d pages)", n, total);
	snprintf(p, sizeof p, "%s.timeindex", stem);
	n = resident(p, 0, ENTRIES * 12, &total);
	ok(n == total, "the time index is in the page cache (%d of %d pages)", n, total);
	snprintf(p, sizeof p, "%s.log", stem);
	n = resident(p, 409600, 4096, &total);
	ok(n == 1, "the header page where the read starts is in (%d)", n);
	int end_n = resident(p, 409600 + (1 << 20), 4096, &total);
	ok(end_n == 1, "the header page where the read ends is in (%d)", end_n);
	/* (readahead may bring neighbours in; far away pages it does not) */
	n = resident(p, 3 << 20, 4096, &total);
	ok(n == 0, "a page far from both is not read (%d)", n);
	struct rwarm_stats st;
	rwarm_get_stats(w, &st);
	ok(st.done == 1 && st.bytes_read >= (ENTRIES + TAIL) * 8 + ENTRIES * 12 + 2 * 4096,
	   "stats: %lld done, %lld bytes read", (long long)st.done, (long long)st.bytes_read);

	/* Files that are gone (a segment deleted meanwhile): done all the same. */
	char gone[PATH_MAX];
	snprintf(gone, sizeof gone, "%s/00000000000000009999", dir);
	one = rwarm_submit(w, "orders", 3, gone, 9999, 9999, 1 << 20) && wait_done(2);
	ok(one && got.base == 9999, "a segment whose files are gone: done, no error");

	/* Close with requests queued: each one is delivered. */
	for (int i = 0; i < 20; i++)
		rwarm_submit(w, "orders", 3, stem, 1000, 1000 + i, 4096);
	rwarm_close(w);
	ok(got.n == 22, "close delivers every request taken (%d of 22)", got.n);

	uring_fini(&ur);
	free(log);
	free(ix);
	free(tx);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		tap_diag("cannot remove %s", dir);
	return tap_done();
}
