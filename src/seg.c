/* seg.c -- a log segment's files and indexes: creation (or adoption of files log.c pre-opened
 * through the ring), lazy opening and index mapping, Kafka's sparse-index bookkeeping, lookups,
 * recovery scans and blocking index rewrites. It never submits ring operations and has no
 * notion of appends in flight (log.c owns both). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "strata/common.h"
#include "strata/crc32c.h"
#include "strata/slog.h"
#include "seg.h"

#define SEG_SCAN_BUF (1u << 20)

int seg_file_path(const struct log_seg *s, const char *ext, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s.%s", s->path, ext);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int seg_parse_name(const char *name, const char *ext, int64_t *base)
{
	size_t ext_len = strlen(ext);
	if (strlen(name) != SEG_NAME_DIGITS + 1 + ext_len || name[SEG_NAME_DIGITS] != '.' ||
	    memcmp(name + SEG_NAME_DIGITS + 1, ext, ext_len) != 0)
		return -EINVAL;
	uint64_t v = 0;
	for (int i = 0; i < SEG_NAME_DIGITS; i++) {
		if (name[i] < '0' || name[i] > '9')
			return -EINVAL;
		if (v > (uint64_t)INT64_MAX / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(name[i] - '0');
		if (v > (uint64_t)INT64_MAX)
			return -EINVAL;
	}
	*base = (int64_t)v;
	return 0;
}

static struct log_seg *seg_alloc(const char *dir, int64_t base)
{
	struct log_seg *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	size_t len = strlen(dir) + 1 + SEG_NAME_DIGITS + 1;
	s->path = malloc(len);
	if (!s->path) {
		free(s);
		return NULL;
	}
	int n = snprintf(s->path, len, "%s/%020" PRId64, dir, base);
	ST_ASSERT(n > 0 && (size_t)n < len);
	s->base_offset = base;
	s->fd = s->oidx_fd = s->tidx_fd = -1;
	s->refs = 1;
	s->end_offset = base;
	s->hw_offset = base;
	s->hw_max_ts = s->max_ts = BATCH_NO_TIMESTAMP;
	s->hw_max_ts_offset = s->max_ts_offset = base;
	s->written_offset = base;
	s->written_max_ts = BATCH_NO_TIMESTAMP;
	s->written_max_ts_offset = base;
	s->first_ts = BATCH_NO_TIMESTAMP;
	return s;
}

static int open_ext(const struct log_seg *s, const char *ext, int flags)
{
	char p[PATH_MAX];
	int rc = seg_file_path(s, ext, p, sizeof p);
	if (rc < 0)
		return rc;
	int fd = open(p, flags | O_CLOEXEC, 0644);
	return fd < 0 ? -errno : fd;
}

static void seg_init_active(struct log_seg *s, int64_t now_ms)
{
	s->state = SEG_ACTIVE;
	s->idx_loaded = true;
	s->max_ts_known = true;
	s->first_ts_known = true;
	s->roll_start_ms = now_ms;
	s->mtime_ms = now_ms;
}

int seg_create(const char *dir, int64_t base, int64_t now_ms, struct log_seg **out)
{
	struct log_seg *s = seg_alloc(dir, base);
	if (!s)
		return -ENOMEM;
	int rc = open_ext(s, "log", O_RDWR | O_CREAT | O_EXCL);
	if (rc == -EEXIST) {
		/* Left empty by an earlier roll that was rolled back: reuse it, never clobber data. */
		rc = open_ext(s, "log", O_RDWR);
		if (rc >= 0) {
			struct stat st;
			if (fstat(rc, &st) < 0 || st.st_size != 0) {
				close(rc);
				rc = -EEXIST;
			}
		}
	}
	if (rc < 0)
		goto fail;
	s->fd = rc;
	if ((rc = open_ext(s, "index", O_RDWR | O_CREAT | O_TRUNC)) < 0)
		goto fail;
	s->oidx_fd = rc;
	if ((rc = open_ext(s, "timeindex", O_RDWR | O_CREAT | O_TRUNC)) < 0)
		goto fail;
	s->tidx_fd = rc;
	seg_init_active(s, now_ms);
	*out = s;
	return 0;
fail:
	seg_unref(s);
	return rc;
}

int seg_adopt(const char *dir, int64_t base, int64_t now_ms, const int fds[3], struct log_seg **out)
{
	struct log_seg *s = seg_alloc(dir, base);
	if (!s)
		return -ENOMEM;
	s->fd = fds[0];
	s->oidx_fd = fds[1];
	s->tidx_fd = fds[2];
	seg_init_active(s, now_ms);
	*out = s;
	return 0;
}

int seg_open_existing(int dirfd, const char *dir, int64_t base, struct log_seg **out)
{
	struct log_seg *s = seg_alloc(dir, base);
	if (!s)
		return -ENOMEM;
	const char *name = strrchr(s->path, '/') + 1;
	char fname[SEG_NAME_DIGITS + 8];
	int n = snprintf(fname, sizeof fname, "%s.log", name);
	ST_ASSERT(n > 0 && (size_t)n < sizeof fname);
	struct stat st;
	if (fstatat(dirfd, fname, &st, 0) < 0) {
		int rc = -errno;
		seg_unref(s);
		return rc;
	}
	s->size = st.st_size;
	s->hw_pos = st.st_size;
	s->written_pos = st.st_size;
	s->mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
	s->state = SEG_CLOSED;
	*out = s;
	return 0;
}

void seg_ref(struct log_seg *s)
{
	ST_ASSERT(s->refs > 0);
	s->refs++;
}

void seg_index_release(struct log_seg *s)
{
	struct seg_index *ix[2] = { &s->oidx, &s->tidx };
	for (int i = 0; i < 2; i++) {
		if (ix[i]->map_len)
			munmap(ix[i]->data, ix[i]->map_len);
		else
			free(ix[i]->data);
		memset(ix[i], 0, sizeof *ix[i]);
	}
	s->idx_loaded = false;
}

void seg_unref(struct log_seg *s)
{
	ST_ASSERT(s->refs > 0);
	if (--s->refs > 0)
		return;
	if (s->fd >= 0)
		close(s->fd);
	if (s->oidx_fd >= 0)
		close(s->oidx_fd);
	if (s->tidx_fd >= 0)
		close(s->tidx_fd);
	seg_index_release(s);
	free(s->wr);
	free(s->path);
	free(s);
}

int seg_ensure_fd(struct log_seg *s)
{
	if (s->fd >= 0)
		return 0;
	if (s->deleted)
		return -ENOENT;
	int fd = open_ext(s, "log", O_RDWR);
	if (fd < 0)
		return fd;
	s->fd = fd;
	return 0;
}

bool seg_has_files(const struct log_seg *s)
{
	return s->fd >= 0 || s->oidx_fd >= 0 || s->tidx_fd >= 0 || s->oidx.data || s->tidx.data;
}

void seg_close_files(struct log_seg *s)
{
	ST_ASSERT(s->state == SEG_CLOSED);
	int *fds[3] = { &s->fd, &s->oidx_fd, &s->tidx_fd };
	for (int i = 0; i < 3; i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
	seg_index_release(s);
}

void seg_unlink(struct log_seg *s)
{
	static const char *const exts[] = { "log", "index", "timeindex", "txnindex" };
	char p[PATH_MAX];
	for (size_t i = 0; i < ST_ARRAY_LEN(exts); i++) {
		if (seg_file_path(s, exts[i], p, sizeof p) == 0 && unlink(p) < 0 && errno != ENOENT)
			slog_warn("log", "unlink %s: %s", p, strerror(errno));
	}
	s->deleted = true;
}

/* --- in-memory index arrays ------------------------------------------------------------------ */

static int idx_reserve(struct seg_index *ix, size_t add)
{
	ST_ASSERT(ix->map_len == 0);
	if (ix->len + add <= ix->cap)
		return 0;
	size_t cap = ix->cap ? ix->cap : 4096;
	while (cap < ix->len + add)
		cap *= 2;
	uint8_t *d = realloc(ix->data, cap);
	if (!d)
		return -ENOMEM;
	ix->data = d;
	ix->cap = cap;
	return 0;
}

static inline int64_t oidx_off(const struct log_seg *s, size_t i)
{
	return s->base_offset + (int32_t)st_be32(s->oidx.data + i * SEG_OIDX_ENTRY);
}
static inline int64_t oidx_pos(const struct log_seg *s, size_t i)
{
	return (int32_t)st_be32(s->oidx.data + i * SEG_OIDX_ENTRY + 4);
}
static inline int64_t tidx_ts(const struct log_seg *s, size_t i)
{
	return (int64_t)st_be64(s->tidx.data + i * SEG_TIDX_ENTRY);
}
static inline int64_t tidx_off(const struct log_seg *s, size_t i)
{
	return s->base_offset + (int32_t)st_be32(s->tidx.data + i * SEG_TIDX_ENTRY + 8);
}

static int tidx_maybe_append(struct log_seg *s, int64_t ts, int64_t offset)
{
	size_t n = s->tidx.len / SEG_TIDX_ENTRY;
	int64_t last_ts = n ? tidx_ts(s, n - 1) : BATCH_NO_TIMESTAMP;
	int64_t last_off = n ? tidx_off(s, n - 1) : s->base_offset;
	if (ts <= last_ts || offset < last_off)
		return 0;
	if (idx_reserve(&s->tidx, SEG_TIDX_ENTRY) < 0)
		return -ENOMEM;
	uint8_t *e = s->tidx.data + s->tidx.len;
	st_put_be64(e, (uint64_t)ts);
	st_put_be32(e + 8, (uint32_t)(offset - s->base_offset));
	s->tidx.len += SEG_TIDX_ENTRY;
	return 0;
}

int seg_note_batch(struct log_seg *s, int64_t pos, const struct batch_hdr *h, int64_t max_ts,
		   int32_t index_interval_bytes)
{
	int64_t last = batch_last_offset(h);
	int rc = 0;
	if (pos == 0) {
		s->first_ts = h->base_timestamp;
		s->first_ts_known = true;
	}
	if (max_ts > s->max_ts) {
		s->max_ts = max_ts;
		s->max_ts_offset = last;
	}
	if (s->bytes_since_index > index_interval_bytes) {
		size_t n = s->oidx.len / SEG_OIDX_ENTRY;
		if (n == 0 || last > oidx_off(s, n - 1)) {
			if (idx_reserve(&s->oidx, SEG_OIDX_ENTRY) < 0) {
				rc = -ENOMEM;
			} else {
				uint8_t *e = s->oidx.data + s->oidx.len;
				st_put_be32(e, (uint32_t)(last - s->base_offset));
				st_put_be32(e + 4, (uint32_t)pos);
				s->oidx.len += SEG_OIDX_ENTRY;
			}
		}
		if (tidx_maybe_append(s, s->max_ts, s->max_ts_offset) < 0)
			rc = -ENOMEM;
		s->bytes_since_index = 0;
	}
	s->bytes_since_index += batch_size(h);
	s->end_offset = last + 1;
	return rc;
}

bool seg_index_full(const struct log_seg *s, int64_t max_index_bytes)
{
	int64_t max_o = max_index_bytes / SEG_OIDX_ENTRY, max_t = max_index_bytes / SEG_TIDX_ENTRY;
	return (int64_t)(s->oidx.len / SEG_OIDX_ENTRY) >= max_o ||
	       (int64_t)(s->tidx.len / SEG_TIDX_ENTRY) >= max_t;
}

int seg_finish_time_index(struct log_seg *s)
{
	return tidx_maybe_append(s, s->max_ts, s->max_ts_offset);
}

void seg_index_trim(struct log_seg *s, int64_t pos, int64_t end_offset)
{
	while (s->oidx.len) {
		size_t i = s->oidx.len / SEG_OIDX_ENTRY - 1;
		if (oidx_pos(s, i) < pos && oidx_off(s, i) < end_offset)
			break;
		s->oidx.len -= SEG_OIDX_ENTRY;
	}
	while (s->tidx.len) {
		size_t i = s->tidx.len / SEG_TIDX_ENTRY - 1;
		if (tidx_off(s, i) < end_offset)
			break;
		s->tidx.len -= SEG_TIDX_ENTRY;
	}
	ST_ASSERT(s->oidx.flushed <= s->oidx.len && s->tidx.flushed <= s->tidx.len);
}

/* --- validation of index contents ----------------------------------------------------------- */

static bool oidx_sane(const struct log_seg *s, int64_t log_size)
{
	if (s->oidx.len % SEG_OIDX_ENTRY)
		return false;
	int64_t prev_off = -1, prev_pos = -1;
	for (size_t i = 0; i < s->oidx.len / SEG_OIDX_ENTRY; i++) {
		int64_t rel = (int32_t)st_be32(s->oidx.data + i * SEG_OIDX_ENTRY);
		int64_t pos = oidx_pos(s, i);
		if (rel <= prev_off || pos <= prev_pos || pos >= log_size)
			return false;
		prev_off = rel;
		prev_pos = pos;
	}
	return true;
}

static bool tidx_sane(const struct log_seg *s)
{
	if (s->tidx.len % SEG_TIDX_ENTRY)
		return false;
	int64_t prev_ts = INT64_MIN, prev_off = -1;
	for (size_t i = 0; i < s->tidx.len / SEG_TIDX_ENTRY; i++) {
		int64_t ts = tidx_ts(s, i);
		int64_t rel = (int32_t)st_be32(s->tidx.data + i * SEG_TIDX_ENTRY + 8);
		/* Kafka appends only when the timestamp grows; a zero entry after real ones is the
		 * preallocated tail of an index Kafka did not trim (unclean shutdown). */
		if (ts <= prev_ts || rel < prev_off || rel < 0)
			return false;
		prev_ts = ts;
		prev_off = rel;
	}
	return true;
}

static int map_index(const struct log_seg *s, const char *ext, struct seg_index *ix)
{
	int fd = open_ext(s, ext, O_RDONLY);
	if (fd < 0)
		return fd;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	memset(ix, 0, sizeof *ix);
	if (st.st_size > 0) {
		void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED) {
			int rc = -errno;
			close(fd);
			return rc;
		}
		ix->data = m;
		ix->map_len = (size_t)st.st_size;
		ix->len = (size_t)st.st_size;
		ix->flushed = ix->len;
	}
	close(fd);
	return 0;
}

/* Header-only scan (no CRC) of [from, to): index entries and tail state. */
static int scan_headers(struct log_seg *s, int64_t from, int64_t to, int32_t interval, int64_t *batches)
{
	int64_t pos = from;
	while (pos < to) {
		struct batch_hdr h;
		int rc = seg_read_hdr(s, pos, &h);
		if (rc < 0)
			return rc;
		if (h.batch_length < BATCH_HDR_SIZE - BATCH_LOG_OVERHEAD || pos + batch_size(&h) > to)
			return -EBADMSG;
		seg_note_batch(s, pos, &h, h.max_timestamp, interval);
		if (batches)
			(*batches)++;
		pos += batch_size(&h);
	}
	return 0;
}

void seg_reset_state(struct log_seg *s)
{
	seg_index_release(s);
	s->idx_loaded = true;
	s->end_offset = s->base_offset;
	s->bytes_since_index = 0;
	s->max_ts = BATCH_NO_TIMESTAMP;
	s->max_ts_offset = s->base_offset;
	s->max_ts_known = true;
	s->first_ts_known = false;
	s->first_ts = BATCH_NO_TIMESTAMP;
}

static int write_all(int fd, const uint8_t *p, size_t len, off_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

int seg_write_indexes_sync(struct log_seg *s, bool sync)
{
	static const char *const exts[2] = { "index", "timeindex" };
	struct seg_index *ix[2] = { &s->oidx, &s->tidx };
	int *fds[2] = { &s->oidx_fd, &s->tidx_fd };
	int rc = 0;
	for (int i = 0; i < 2 && rc == 0; i++) {
		int fd = *fds[i];
		bool own = fd < 0;
		if (own && (fd = open_ext(s, exts[i], O_RDWR | O_CREAT)) < 0)
			return fd;
		if (ftruncate(fd, 0) < 0)
			rc = -errno;
		if (rc == 0 && ix[i]->len)
			rc = write_all(fd, ix[i]->data, ix[i]->len, 0);
		if (rc == 0 && sync && fdatasync(fd) < 0)
			rc = -errno;
		if (rc == 0)
			ix[i]->flushed = ix[i]->len;
		if (own && s->state != SEG_CLOSED)
			*fds[i] = fd;
		else if (own)
			close(fd);
	}
	return rc;
}

int seg_flush_index_tails_sync(struct log_seg *s)
{
	struct seg_index *ix[2] = { &s->oidx, &s->tidx };
	int fds[2] = { s->oidx_fd, s->tidx_fd };
	for (int i = 0; i < 2; i++) {
		if (ix[i]->len <= ix[i]->flushed)
			continue;
		if (fds[i] < 0)
			return -EBADF;
		int rc = write_all(fds[i], ix[i]->data + ix[i]->flushed, ix[i]->len - ix[i]->flushed,
				   (off_t)ix[i]->flushed);
		if (rc == 0 && fdatasync(fds[i]) < 0)
			rc = -errno;
		if (rc < 0)
			return rc;
		ix[i]->flushed = ix[i]->len;
	}
	return 0;
}

int seg_load_index(struct log_seg *s, int32_t index_interval_bytes, int64_t *rebuilds)
{
	if (s->idx_loaded)
		return 0;
	int rc = map_index(s, "index", &s->oidx);
	if (rc == 0)
		rc = map_index(s, "timeindex", &s->tidx);
	if (rc == 0 && oidx_sane(s, s->size) && tidx_sane(s)) {
		s->idx_loaded = true;
		return 0;
	}
	if (rc != 0 && rc != -ENOENT)
		slog_warn("log", "segment %s: cannot map index: %s; rebuilding", s->path, strerror(-rc));
	else if (rc == 0)
		slog_warn("log", "segment %s: damaged index (size or order); rebuilding", s->path);
	else
		slog_info("log", "segment %s: no index; rebuilding", s->path);
	/* Synchronous on purpose, on whichever thread looks the segment up (the reactor, for a
	 * closed segment read after a crash damaged its index): a rare repair that happens once per
	 * damaged index, since the rewrite is fsynced; doing it through the ring would make every
	 * lookup path (log_read, ListOffsets) asynchronous for a case that normal operation never
	 * produces (close jobs fsync indexes before a segment is published). */
	/* Keep what the log already knows of the tail (end offset, hw): rebuild only indexes. */
	int64_t end = s->end_offset, hw_pos = s->hw_pos, hw_off = s->hw_offset;
	seg_reset_state(s);
	rc = scan_headers(s, 0, s->size, index_interval_bytes, NULL);
	if (rc < 0 && rc != -EBADMSG) {
		seg_index_release(s);
		return rc;
	}
	if (rc == -EBADMSG)
		slog_warn("log", "segment %s: unreadable batch header while rebuilding its index", s->path);
	if (rebuilds)
		(*rebuilds)++;
	if (s->state == SEG_CLOSED)
		seg_finish_time_index(s);
	s->end_offset = end > s->end_offset ? end : s->end_offset;
	s->hw_pos = hw_pos;
	s->hw_offset = hw_off;
	rc = seg_write_indexes_sync(s, true);
	if (rc < 0)
		slog_warn("log", "segment %s: rewriting rebuilt index: %s", s->path, strerror(-rc));
	s->idx_loaded = true;
	return 0;
}

static int read_file_prefix(int fd, struct seg_index *ix, size_t entry)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	size_t len = (size_t)st.st_size;
	len -= len % entry; /* a torn tail entry: drop it */
	memset(ix, 0, sizeof *ix);
	if (!len)
		return 0;
	if (idx_reserve(ix, len) < 0)
		return -ENOMEM;
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, ix->data + got, len - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	ix->len = got - got % entry;
	return 0;
}

int seg_load_index_mem(struct log_seg *s, int64_t valid_pos, int64_t valid_offset)
{
	seg_index_release(s);
	int rc;
	/* A missing index of a segment with data is damage (rebuilt by the caller's scan). */
	int flags = valid_pos > 0 ? O_RDWR : O_RDWR | O_CREAT;
	if (s->oidx_fd < 0) {
		if ((rc = open_ext(s, "index", flags)) < 0)
			return rc == -ENOENT ? -EBADMSG : rc;
		s->oidx_fd = rc;
	}
	if (s->tidx_fd < 0) {
		if ((rc = open_ext(s, "timeindex", flags)) < 0)
			return rc == -ENOENT ? -EBADMSG : rc;
		s->tidx_fd = rc;
	}
	if ((rc = read_file_prefix(s->oidx_fd, &s->oidx, SEG_OIDX_ENTRY)) < 0 ||
	    (rc = read_file_prefix(s->tidx_fd, &s->tidx, SEG_TIDX_ENTRY)) < 0) {
		seg_index_release(s);
		return rc;
	}
	/* Entries past the recovery point may describe bytes that never became durable. */
	while (s->oidx.len) {
		size_t i = s->oidx.len / SEG_OIDX_ENTRY - 1;
		if (oidx_pos(s, i) < valid_pos && oidx_off(s, i) < valid_offset)
			break;
		s->oidx.len -= SEG_OIDX_ENTRY;
	}
	while (s->tidx.len) {
		size_t i = s->tidx.len / SEG_TIDX_ENTRY - 1;
		if (tidx_off(s, i) < valid_offset)
			break;
		s->tidx.len -= SEG_TIDX_ENTRY;
	}
	if (!oidx_sane(s, valid_pos) || !tidx_sane(s)) {
		seg_index_release(s);
		return -EBADMSG;
	}
	/* The files must hold exactly what memory says: later tail writes append at `flushed`. */
	if (ftruncate(s->oidx_fd, (off_t)s->oidx.len) < 0 || ftruncate(s->tidx_fd, (off_t)s->tidx.len) < 0) {
		rc = -errno;
		seg_index_release(s);
		return rc;
	}
	s->oidx.flushed = s->oidx.len;
	s->tidx.flushed = s->tidx.len;
	s->idx_loaded = true;
	size_t n = s->oidx.len / SEG_OIDX_ENTRY;
	s->bytes_since_index = n ? valid_pos - oidx_pos(s, n - 1) : valid_pos;
	return 0;
}

/* --- lookups ---------------------------------------------------------------------------------- */

int64_t seg_index_lookup(const struct log_seg *s, int64_t offset)
{
	size_t n = s->idx_loaded ? s->oidx.len / SEG_OIDX_ENTRY : 0;
	if (!n || offset < oidx_off(s, 0))
		return 0;
	size_t lo = 0, hi = n; /* invariant: entry lo <= offset, answer in [lo, hi) */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (oidx_off(s, mid) <= offset)
			lo = mid;
		else
			hi = mid;
	}
	return oidx_pos(s, lo);
}

int64_t seg_index_lookup_pos(const struct log_seg *s, int64_t pos)
{
	size_t n = s->idx_loaded ? s->oidx.len / SEG_OIDX_ENTRY : 0;
	if (!n || pos < oidx_pos(s, 0))
		return 0;
	size_t lo = 0, hi = n;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (oidx_pos(s, mid) <= pos)
			lo = mid;
		else
			hi = mid;
	}
	return oidx_pos(s, lo);
}

int64_t seg_time_lookup(const struct log_seg *s, int64_t ts)
{
	size_t n = s->idx_loaded ? s->tidx.len / SEG_TIDX_ENTRY : 0;
	if (!n || ts < tidx_ts(s, 0))
		return s->base_offset;
	size_t lo = 0, hi = n;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (tidx_ts(s, mid) <= ts)
			lo = mid;
		else
			hi = mid;
	}
	return tidx_off(s, lo);
}

int seg_read_hdr(struct log_seg *s, int64_t pos, struct batch_hdr *h)
{
	int rc = seg_ensure_fd(s);
	if (rc < 0)
		return rc;
	uint8_t buf[BATCH_HDR_SIZE];
	size_t got = 0;
	while (got < sizeof buf) {
		ssize_t n = pread(s->fd, buf + got, sizeof buf - got, (off_t)(pos + (int64_t)got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA;
		got += (size_t)n;
	}
	return batch_parse_hdr(buf, sizeof buf, h);
}

/* mincore over a mapped index: every page resident. */
static bool index_resident(const struct seg_index *ix)
{
	if (!ix->data || !ix->map_len)
		return true;
	long page = sysconf(_SC_PAGESIZE);
	if (page <= 0)
		return false;
	size_t pages = (ix->map_len + (size_t)page - 1) / (size_t)page;
	unsigned char vec[256];
	/* In pieces of 256 pages (1 MiB): bounded stack, bounded loop. */
	for (size_t at = 0; at < pages; at += sizeof vec) {
		size_t n = pages - at < sizeof vec ? pages - at : sizeof vec;
		if (mincore(ix->data + at * (size_t)page, n * (size_t)page, vec) < 0)
			return false;
		for (size_t i = 0; i < n; i++)
			if (!(vec[i] & 1))
				return false;
	}
	return true;
}

/* The header page at pos is in the page cache (RWF_NOWAIT: -EAGAIN when it is not). */
static bool hdr_cached(const struct log_seg *s, int64_t pos)
{
	uint8_t buf[BATCH_HDR_SIZE];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof buf };
	ssize_t n = preadv2(s->fd, &iov, 1, (off_t)pos, RWF_NOWAIT);
	if (n >= 0)
		return true;
	/* A kernel or file system without RWF_NOWAIT for buffered reads: cannot tell, so read
	 * as before (blocking) rather than never. */
	return errno == EOPNOTSUPP || errno == EINVAL;
}

bool seg_read_cached(struct log_seg *s, int64_t offset, int64_t max_bytes)
{
	ST_ASSERT(s->state == SEG_CLOSED);
	if (s->fd < 0 || !s->idx_loaded || s->deleted)
		return false;
	/* Loaded, the time index is not touched by a read (ListOffsets reads it, on the reactor). */
	if (!index_resident(&s->oidx))
		return false;
	int64_t pos = seg_index_lookup(s, offset);
	if (pos < s->size && !hdr_cached(s, pos))
		return false;
	int64_t bound = max_bytes > INT64_MAX - pos ? INT64_MAX : pos + max_bytes;
	if (bound < s->size) {
		int64_t p2 = seg_index_lookup_pos(s, bound);
		if (p2 > pos && !hdr_cached(s, p2))
			return false;
	}
	return true;
}

int seg_find(struct log_seg *s, int64_t offset, int64_t limit_pos, int32_t index_interval_bytes,
	     int64_t *rebuilds, int64_t *pos_out, struct batch_hdr *h)
{
	if (!s->idx_loaded)
		seg_load_index(s, index_interval_bytes, rebuilds); /* failure: scan from 0 */
	int64_t pos = seg_index_lookup(s, offset);
	/* Bounded: every step moves pos forward by at least one batch header. */
	while (pos < limit_pos) {
		int rc = seg_read_hdr(s, pos, h);
		if (rc < 0)
			return rc;
		if (h->batch_length < BATCH_HDR_SIZE - BATCH_LOG_OVERHEAD)
			return -EBADMSG;
		if (batch_last_offset(h) >= offset) {
			*pos_out = pos;
			return 1;
		}
		pos += batch_size(h);
	}
	return 0;
}

int seg_max_timestamp(struct log_seg *s, int64_t *ts, int64_t *offset)
{
	if (!s->max_ts_known) {
		if (s->idx_loaded) {
			size_t n = s->tidx.len / SEG_TIDX_ENTRY;
			s->max_ts = n ? tidx_ts(s, n - 1) : BATCH_NO_TIMESTAMP;
			s->max_ts_offset = n ? tidx_off(s, n - 1) : s->base_offset;
		} else {
			/* Kafka's closed segments end with a time entry for their max timestamp:
			 * read just that one (12 bytes) rather than the whole index. */
			int fd = open_ext(s, "timeindex", O_RDONLY);
			struct stat st;
			uint8_t e[SEG_TIDX_ENTRY];
			s->max_ts = BATCH_NO_TIMESTAMP;
			s->max_ts_offset = s->base_offset;
			if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size >= SEG_TIDX_ENTRY &&
			    st.st_size % SEG_TIDX_ENTRY == 0 &&
			    pread(fd, e, sizeof e, st.st_size - SEG_TIDX_ENTRY) == (ssize_t)sizeof e) {
				s->max_ts = (int64_t)st_be64(e);
				s->max_ts_offset = s->base_offset + (int32_t)st_be32(e + 8);
			} else if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size % SEG_TIDX_ENTRY != 0) {
				close(fd);
				fd = -1;
				seg_load_index(s, 4096, NULL);
				size_t n = s->tidx.len / SEG_TIDX_ENTRY;
				s->max_ts = n ? tidx_ts(s, n - 1) : BATCH_NO_TIMESTAMP;
				s->max_ts_offset = n ? tidx_off(s, n - 1) : s->base_offset;
			}
			if (fd >= 0)
				close(fd);
		}
		s->max_ts_known = true;
	}
	*ts = s->max_ts;
	*offset = s->max_ts_offset;
	return 0;
}

int seg_first_timestamp(struct log_seg *s, int64_t *ts)
{
	if (!s->first_ts_known) {
		struct batch_hdr h;
		if (s->size == 0) {
			s->first_ts = BATCH_NO_TIMESTAMP;
		} else {
			int rc = seg_read_hdr(s, 0, &h);
			if (rc < 0)
				return rc;
			s->first_ts = h.base_timestamp;
		}
		s->first_ts_known = true;
	}
	*ts = s->first_ts;
	return 0;
}

/* --- recovery -------------------------------------------------------------------------------- */

int seg_recover(struct log_seg *s, int64_t from_pos, int32_t index_interval_bytes, bool contiguous,
		struct seg_recover_result *res)
{
	memset(res, 0, sizeof *res);
	int rc = seg_ensure_fd(s);
	if (rc < 0)
		return rc;
	struct stat st;
	if (fstat(s->fd, &st) < 0)
		return -errno;
	int64_t file_size = st.st_size;
	size_t cap = SEG_SCAN_BUF;
	uint8_t *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	int64_t buf_pos = from_pos, buf_len = 0; /* buf holds file bytes [buf_pos, buf_pos+buf_len) */
	int64_t pos = from_pos;
	const char *why = NULL;
	while (pos < file_size) {
		if (file_size - pos < BATCH_LOG_OVERHEAD) {
			why = "torn batch prefix";
			break;
		}
		/* Make sure [pos, pos+need) is in the buffer: first the prefix, then the batch. */
		int64_t need = BATCH_LOG_OVERHEAD;
		for (int pass = 0; pass < 2; pass++) {
			if (pos < buf_pos || pos + need > buf_pos + buf_len) {
				if ((size_t)need > cap) {
					uint8_t *nb = realloc(buf, (size_t)need);
					if (!nb) {
						free(buf);
						return -ENOMEM;
					}
					buf = nb;
					cap = (size_t)need;
				}
				int64_t want = ST_MIN((int64_t)cap, file_size - pos);
				int64_t got = 0;
				while (got < want) {
					ssize_t n = pread(s->fd, buf + got, (size_t)(want - got), (off_t)(pos + got));
					if (n < 0 && errno == EINTR)
						continue;
					if (n < 0) {
						rc = -errno;
						free(buf);
						return rc;
					}
					if (n == 0)
						break;
					got += n;
				}
				buf_pos = pos;
				buf_len = got;
			}
			if (pass == 0) {
				int32_t blen = (int32_t)st_be32(buf + (pos - buf_pos) + BATCH_OFF_LENGTH);
				if (blen < BATCH_HDR_SIZE - BATCH_LOG_OVERHEAD) {
					why = "bad batch length";
					break;
				}
				need = (int64_t)blen + BATCH_LOG_OVERHEAD;
				if (pos + need > file_size) {
					why = "torn batch";
					break;
				}
			}
		}
		if (why)
			break;
		const uint8_t *b = buf + (pos - buf_pos);
		struct batch_hdr h;
		batch_parse_hdr(b, (size_t)need, &h);
		if (h.magic == 0 || h.magic == 1) {
			res->unsupported = true;
			why = "message format v0/v1 (unsupported)";
			break;
		}
		if (h.magic != BATCH_MAGIC_V2) {
			why = "bad magic";
			break;
		}
		if (!batch_crc_ok(b, (size_t)need)) {
			why = "CRC mismatch";
			break;
		}
		if (h.last_offset_delta < 0 || h.base_offset < s->end_offset ||
		    (contiguous && h.base_offset != s->end_offset) ||
		    batch_last_offset(&h) - s->base_offset > INT32_MAX) {
			why = "offsets out of order or out of the segment's range";
			break;
		}
		seg_note_batch(s, pos, &h, h.max_timestamp, index_interval_bytes);
		res->batches++;
		pos += need;
	}
	free(buf);
	res->valid_end = pos;
	res->truncated = file_size - pos;
	if (pos < file_size && !res->unsupported) {
		slog_warn("log", "segment %s.log: %s at byte %" PRId64 " of %" PRId64 "; truncating %" PRId64
			  " bytes", s->path, why ? why : "invalid data", pos, file_size, file_size - pos);
		if (ftruncate(s->fd, (off_t)pos) < 0)
			return -errno;
	}
	s->size = pos;
	return 0;
}

int seg_recompute_tail(struct log_seg *s, int64_t end_pos, int64_t *batches)
{
	size_t n = s->oidx.len / SEG_OIDX_ENTRY;
	int64_t from = n ? oidx_pos(s, n - 1) : 0;
	size_t tn = s->tidx.len / SEG_TIDX_ENTRY;
	/* At an index point the time index caught up with the max so far; batches since then
	 * may have raised it. */
	s->max_ts = tn ? tidx_ts(s, tn - 1) : BATCH_NO_TIMESTAMP;
	s->max_ts_offset = tn ? tidx_off(s, tn - 1) : s->base_offset;
	s->max_ts_known = true;
	s->end_offset = n ? oidx_off(s, n - 1) + 1 : s->base_offset;
	int64_t pos = from;
	while (pos < end_pos) {
		struct batch_hdr h;
		int rc = seg_read_hdr(s, pos, &h);
		if (rc < 0)
			return rc;
		if (h.batch_length < BATCH_HDR_SIZE - BATCH_LOG_OVERHEAD)
			return -EBADMSG;
		if (h.max_timestamp > s->max_ts) {
			s->max_ts = h.max_timestamp;
			s->max_ts_offset = batch_last_offset(&h);
		}
		s->end_offset = batch_last_offset(&h) + 1;
		if (batches)
			(*batches)++;
		pos += batch_size(&h);
	}
	s->bytes_since_index = n ? end_pos - from : end_pos;
	return 0;
}
