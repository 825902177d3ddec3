/* tier.c -- tiered storage (tier.h): per-partition remote state (manifest in memory, durable
 * watermark, upload queue), the upload threads (segments in offset order, verified, then a new
 * manifest; total retention; deletes), topic manifests, and the reactor side (cold reads through
 * rcache, wake-ups through an eventfd read on the ring).
 * Locking: one mutex (t->lock) over every tier_part and queue; never held across I/O. Upload
 * threads mark a partition busy while they work on it: one thread per partition at a time,
 * which keeps its uploads in offset order. Must never block the reactor on the bucket. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strata/batch.h"
#include "strata/common.h"
#include "strata/config.h"
#include "strata/crc32c.h"
#include "strata/kerr.h"
#include "strata/metrics.h"
#include "strata/slog.h"
#include "manifest.h"
#include "objstore.h"
#include "rcache.h"
#include "tier.h"

#define TIER_READ_BLOCK_BYTES (1 << 20)
#define TIER_INDEX_INTERVAL_BYTES 4096    /* regenerated indexes: Kafka's default interval */
#define TIER_LOCAL_INDEX_MAX_BYTES (256u << 20)
#define TIER_PUBLISH_EVERY_SEGS 16        /* a backlog publishes a manifest at least this often */
#define TIER_PUBLISH_DELAY_MS 2000        /* ... or this often */
#define TIER_RETENTION_EVERY_MS 2000
#define TIER_BACKLOG_LOG_MS 10000
#define TIER_WAKES_MAX 256
#define TIER_DELETE_BATCH 64
#define TIER_RETRY_BASE_MS 200
/* Scrub: unreferenced objects of a partition leave the bucket (once after the manifest is loaded,
 * then this often). Objects at or past the manifest end may be an upload's work in progress
 * (a crashed one is redone over the same keys): they go only after staying unreferenced for the
 * grace period, seen by two scrubs at least that far apart (LIST gives no object times). */
#define TIER_SCRUB_INTERVAL_MS (3600 * 1000)
#define TIER_SCRUB_GRACE_MS (3600 * 1000)
#define TIER_SCRUB_RETRY_MS (60 * 1000)
#define TIER_SCRUB_MAX_KEYS 1000000       /* keys of one partition looked at per scrub */
#define TIER_SCRUB_SUSPECTS_MAX 4096

/* Metrics tier_tick publishes (totals over all partitions; names and help in tier_metric_defs). */
enum tier_metric {
	TM_BACKLOG_SEGMENTS, TM_BACKLOG_BYTES, TM_BACKLOG_PARTITIONS, TM_REMOTE_SEGMENTS,
	TM_UPLOADED_SEGMENTS, TM_UPLOADED_BYTES, TM_UPLOAD_ERRORS, TM_MANIFESTS_WRITTEN,
	TM_SEGMENTS_EXPIRED, TM_OBJECTS_DELETED, TM_COLD_READS, TM_COLD_READ_BYTES, TM_CACHE_HITS,
	TM_CACHE_MISSES, TM_DOWNLOADS, TM_DOWNLOADED_BYTES, TM_DOWNLOAD_ERRORS, TM_CORRUPT_OBJECTS,
	TM_CACHE_BYTES, TM_PREFETCH_HANDOVERS, TM_PRESSURE_EVICTIONS, TM_PRESSURE_REFUSALS,
	TM__COUNT
};

enum work_kind {
	W_NONE, W_LOAD, W_UPLOAD, W_PUBLISH, W_DELETE_OBJS, W_DELETE_ALL, W_TOPIC, W_SCRUB,
};

struct del_key {
	char key[MANIFEST_KEY_MAX + 16];
	int64_t after_version;          /* deletable once this manifest version is durable */
};

/* An unreferenced object at or past the manifest end, first seen by a scrub at first_seen_ms. */
struct scrub_suspect {
	char key[MANIFEST_KEY_MAX + 16];
	int64_t first_seen_ms;
};

struct topic_job {
	struct topic_job *next;
	char topic[MANIFEST_TOPIC_MAX + 1];
	uint8_t id[16];
	int32_t partitions;
	char *config;
	bool deleted;
	bool busy;
	int failures;
	int64_t retry_at_ms;
};

struct tier_part {
	struct tier *t;
	struct tier_part *next;
	char topic[MANIFEST_TOPIC_MAX + 1];
	uint8_t id[16];
	int32_t partition;
	char dir[PATH_MAX];
	char mkey[MANIFEST_KEY_MAX];    /* partition manifest key */
	bool closing, delete_remote, busy;
	struct tier_part_config pc;
	int64_t local_start, local_bytes;

	bool loaded;
	struct manifest m;              /* in memory: may hold segments not yet in a durable one */
	int64_t durable_version;
	int64_t durable_end;            /* every offset below is in a durable manifest */
	bool dirty;
	int dirty_segs;
	int64_t dirty_since_ms;
	uint64_t mseq;                  /* +1 for every change to m (a publish covers up to one) */

	int64_t *pend;                  /* closed local segments to upload, by base offset */
	int64_t *pend_bytes;
	int32_t n_pend, cap_pend;

	struct del_key *dels;
	int32_t n_dels, cap_dels;

	int64_t retry_at_ms;
	int failures;
	int64_t next_retention_ms;

	int64_t saved_start;            /* remote start kept in dir (-1: none): answers while loading */
	int64_t next_scrub_ms;          /* 0: due as soon as the manifest is loaded */
	struct scrub_suspect *suspects; /* only the thread working on the partition (busy) */
	int32_t n_suspects;
};

struct tier {
	char url[4096];
	char fault_path[4096];
	struct objstore *os;
	struct rcache *rc;
	int64_t retry_max_ms;
	bool delete_on_topic_delete;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t *threads;
	int n_threads;
	bool stop;
	struct tier_part *parts;
	struct topic_job *topic_jobs;
	struct tier_stats st;
	char last_err[512];
	int64_t last_backlog_log_ms;
	bool backlog_reported;
	/* metrics (reactor only): series, and the totals already added to the counters */
	bool metrics_registered;
	struct metrics_series *metrics[TM__COUNT];
	struct tier_stats published;
	struct rcache_stats published_rc;

	/* reactor side */
	struct uring *ur;
	tier_wake_fn wake;
	void *wake_ctx;
	int efd;
	uint64_t efd_val;
	struct uring_op efd_op;
	bool efd_armed, closing;
	struct { char topic[MANIFEST_TOPIC_MAX + 1]; int32_t partition; } wakes[TIER_WAKES_MAX];
	int n_wakes;
	bool wake_all;
};

/* --- settings -------------------------------------------------------------------------------- */

void tier_local_retention(const struct cfg *topic, const struct cfg *broker, int64_t *ms,
			  int64_t *bytes)
{
	int64_t lms = cfg_topic_int(topic, broker, TC_LOCAL_RETENTION_MS);
	int64_t lbytes = cfg_topic_int(topic, broker, TC_LOCAL_RETENTION_BYTES);
	*ms = lms == -2 ? cfg_topic_int(topic, broker, TC_RETENTION_MS) : lms;
	*bytes = lbytes == -2 ? cfg_topic_int(topic, broker, TC_RETENTION_BYTES) : lbytes;
}

void tier_part_config_from(const struct cfg *topic, const struct cfg *broker,
			   struct tier_part_config *out)
{
	out->enabled = topic ? cfg_bool(topic, TC_REMOTE_STORAGE_ENABLE) : true;
	out->retention_ms = cfg_topic_int(topic, broker, TC_RETENTION_MS);
	out->retention_bytes = cfg_topic_int(topic, broker, TC_RETENTION_BYTES);
}

/* --- wake-ups to the reactor ----------------------------------------------------------------- */

static void post_wake_locked(struct tier *t, const char *topic, int32_t partition)
{
	for (int i = 0; i < t->n_wakes; i++)
		if (t->wakes[i].partition == partition && strcmp(t->wakes[i].topic, topic) == 0)
			return;
	if (t->n_wakes == TIER_WAKES_MAX) {
		t->wake_all = true;
		return;
	}
	snprintf(t->wakes[t->n_wakes].topic, sizeof t->wakes[0].topic, "%s", topic);
	t->wakes[t->n_wakes].partition = partition;
	t->n_wakes++;
}

static void kick_efd(struct tier *t)
{
	uint64_t one = 1;
	ssize_t w = write(t->efd, &one, sizeof one);
	(void)w; /* EAGAIN: the counter is already non-zero, the reactor will look */
}

static void post_wake(struct tier *t, const char *topic, int32_t partition)
{
	pthread_mutex_lock(&t->lock);
	post_wake_locked(t, topic, partition);
	pthread_mutex_unlock(&t->lock);
	kick_efd(t);
}

static void rcache_done(void *ctx, const char *topic, int32_t partition)
{
	post_wake(ctx, topic, partition);
}

static void arm_efd(struct tier *t);

static void on_efd(struct uring_op *op, int res, uint32_t flags)
{
	(void)flags;
	struct tier *t = ST_CONTAINER_OF(op, struct tier, efd_op);
	t->efd_armed = false;
	if (t->closing)
		return;
	if (res < 0 && res != -EAGAIN && res != -EINTR)
		slog_error("tier", "eventfd read failed: %s (cold reads will wait for timeouts)",
			   strerror(-res));
	/* Copy under the lock, wake outside it: wakers run fetches that take the lock again. */
	struct { char topic[MANIFEST_TOPIC_MAX + 1]; int32_t partition; } *w = NULL;
	int n = 0;
	bool all;
	pthread_mutex_lock(&t->lock);
	all = t->wake_all;
	if (t->n_wakes && (w = malloc((size_t)t->n_wakes * sizeof *w))) {
		memcpy(w, t->wakes, (size_t)t->n_wakes * sizeof *w);
		n = t->n_wakes;
	} else if (t->n_wakes) {
		all = true;
	}
	t->n_wakes = 0;
	t->wake_all = false;
	pthread_mutex_unlock(&t->lock);
	if (all)
		t->wake(t->wake_ctx, "", -1);
	else
		for (int i = 0; i < n; i++)
			t->wake(t->wake_ctx, w[i].topic, w[i].partition);
	free(w);
	if (res >= 0 || res == -EAGAIN || res == -EINTR)
		arm_efd(t);
}

static void arm_efd(struct tier *t)
{
	struct io_uring_sqe *sqe = uring_get_sqe(t->ur);
	io_uring_prep_read(sqe, t->efd, &t->efd_val, sizeof t->efd_val, 0);
	t->efd_op.cb = on_efd;
	uring_sqe_data(sqe, &t->efd_op);
	t->efd_armed = true;
}

/* --- object store calls (upload threads) ------------------------------------------------------ */

/* Test hook (strata.tier.test.fault.file): while that file exists the bucket "is down". */
static int fault(struct tier *t)
{
	struct stat st;
	return t->fault_path[0] && stat(t->fault_path, &st) == 0 ? -EIO : 0;
}

static int os_put(struct tier *t, const char *key, const void *data, size_t len)
{
	int rc = fault(t);
	if (rc == 0)
		rc = objstore_put(t->os, key, data, len);
	if (rc == 0) {
		int64_t got = objstore_head(t->os, key);
		if (got != (int64_t)len)
			rc = got < 0 ? (int)got : -EIO;
	}
	return rc;
}

static int os_delete(struct tier *t, const char *key)
{
	int rc = fault(t);
	return rc ? rc : objstore_delete(t->os, key);
}

/* --- per-partition queues (lock held) -------------------------------------------------------- */

static void pend_add(struct tier_part *tp, int64_t base, int64_t bytes)
{
	int32_t i = tp->n_pend;
	while (i > 0 && tp->pend[i - 1] >= base) {
		if (tp->pend[i - 1] == base)
			return;
		i--;
	}
	if (tp->n_pend == tp->cap_pend) {
		/* On failure reconciliation at the next start picks the segment up. */
		int32_t nc = tp->cap_pend ? tp->cap_pend * 2 : 16;
		int64_t *np = realloc(tp->pend, (size_t)nc * sizeof *np);
		if (!np)
			return;
		tp->pend = np;
		int64_t *nb = realloc(tp->pend_bytes, (size_t)nc * sizeof *nb);
		if (!nb)
			return; /* pend grew, cap_pend did not: still consistent */
		tp->pend_bytes = nb;
		tp->cap_pend = nc;
	}
	memmove(tp->pend + i + 1, tp->pend + i, (size_t)(tp->n_pend - i) * sizeof *tp->pend);
	memmove(tp->pend_bytes + i + 1, tp->pend_bytes + i, (size_t)(tp->n_pend - i) * sizeof *tp->pend_bytes);
	tp->pend[i] = base;
	tp->pend_bytes[i] = bytes;
	tp->n_pend++;
}

static void pend_pop(struct tier_part *tp)
{
	if (!tp->n_pend)
		return;
	tp->n_pend--;
	memmove(tp->pend, tp->pend + 1, (size_t)tp->n_pend * sizeof *tp->pend);
	memmove(tp->pend_bytes, tp->pend_bytes + 1, (size_t)tp->n_pend * sizeof *tp->pend_bytes);
}

static void del_add(struct tier_part *tp, const char *stem, const char *ext, int64_t after_version)
{
	if (tp->n_dels == tp->cap_dels) {
		int32_t nc = tp->cap_dels ? tp->cap_dels * 2 : 16;
		struct del_key *nd = realloc(tp->dels, (size_t)nc * sizeof *nd);
		if (!nd)
			return; /* an orphan object: a bucket scrub removes it */
		tp->dels = nd;
		tp->cap_dels = nc;
	}
	struct del_key *d = &tp->dels[tp->n_dels++];
	manifest_key_object(d->key, sizeof d->key, stem, ext);
	d->after_version = after_version;
}

/* Removes the first n manifest segments; their objects go once the next manifest is durable. */
static void drop_segments(struct tier *t, struct tier_part *tp, int32_t n)
{
	for (int32_t i = 0; i < n; i++) {
		del_add(tp, tp->m.segs[i].key, "log", tp->m.version + 1);
		del_add(tp, tp->m.segs[i].key, "index", tp->m.version + 1);
		del_add(tp, tp->m.segs[i].key, "timeindex", tp->m.version + 1);
	}
	manifest_drop_front(&tp->m, n);
	t->st.segments_expired += n;
	if (!tp->dirty)
		tp->dirty_since_ms = st_now_ms();
	tp->dirty = true;
	tp->mseq++;
}

/* Total retention over the manifest (lock held): by time, then by size of both tiers. */
static void retention_locked(struct tier *t, struct tier_part *tp, int64_t now)
{
	int64_t remote_only = 0;
	for (int32_t i = 0; i < tp->m.n_segs; i++)
		if (tp->m.segs[i].last_offset < tp->local_start)
			remote_only += tp->m.segs[i].size_bytes;
	int64_t total = remote_only + tp->local_bytes;
	int32_t drop = 0;
	while (drop < tp->m.n_segs) {
		const struct manifest_seg *s = &tp->m.segs[drop];
		bool expired = false;
		if (tp->pc.retention_ms >= 0) {
			int64_t ts = s->max_ts_ms >= 0 ? s->max_ts_ms : s->uploaded_ms;
			expired = now - ts > tp->pc.retention_ms;
		}
		if (!expired && tp->pc.retention_bytes >= 0 && s->last_offset < tp->local_start &&
		    total - s->size_bytes >= tp->pc.retention_bytes)
			expired = true;
		if (!expired)
			break;
		if (s->last_offset < tp->local_start)
			total -= s->size_bytes;
		drop++;
	}
	if (drop) {
		slog_info("tier", "topic=%s partition=%d: total retention removes %d remote segment(s) "
			  "below offset %" PRId64, tp->topic, tp->partition, (int)drop,
			  tp->m.segs[drop - 1].last_offset + 1);
		drop_segments(t, tp, drop);
	}
}

/* --- segment upload (upload thread, no lock) ------------------------------------------------- */

struct gbuf {
	uint8_t *p;
	size_t len, cap;
};

static int gbuf_add(struct gbuf *g, const void *d, size_t n)
{
	if (g->len + n > g->cap) {
		size_t nc = g->cap ? g->cap * 2 : 4096;
		while (nc < g->len + n)
			nc *= 2;
		uint8_t *np = realloc(g->p, nc);
		if (!np)
			return -ENOMEM;
		g->p = np;
		g->cap = nc;
	}
	memcpy(g->p + g->len, d, n);
	g->len += n;
	return 0;
}

/* Reads a whole small file (an index) into memory; *out NULL and 0 when missing. */
static int read_small_file(const char *path, uint8_t **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size < 0 || st.st_size > (off_t)TIER_LOCAL_INDEX_MAX_BYTES) {
		close(fd);
		return -EFBIG;
	}
	uint8_t *b = malloc((size_t)st.st_size + 1);
	if (!b) {
		close(fd);
		return -ENOMEM;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = pread(fd, b + got, (size_t)st.st_size - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	*out = b;
	*len = got;
	return 0;
}

struct scan {
	int64_t valid_end;
	int64_t last_offset, first_ts, max_ts;
	uint32_t crc;
	int64_t batches;
	bool torn;
	struct gbuf gidx, gtidx;        /* indexes rebuilt from the data */
	bool idx_ok, tidx_ok;           /* the local files agree with the data */
};

/* One pass over the .log: checksum, batch framing, offsets, timestamps, a rebuilt offset and
 * time index, and the local offset index checked entry by entry in the same pass. */
static int scan_segment(int fd, int64_t base, const uint8_t *lidx, size_t lidx_len, struct scan *sc,
			char *why, size_t why_len)
{
	memset(sc, 0, sizeof *sc);
	sc->last_offset = -1;
	sc->first_ts = sc->max_ts = -1;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	int64_t file_size = st.st_size;
	uint8_t *buf = malloc(TIER_READ_BLOCK_BYTES);
	if (!buf)
		return -ENOMEM;
	size_t n_li = lidx_len / 8, li = 0;
	bool idx_ok = lidx != NULL && lidx_len % 8 == 0;
	int64_t pos = 0, next = 0, crc_pos = 0, since_index = 0, so_far_ts = -1, so_far_off = -1;
	int64_t last_tidx_ts = -1;
	uint32_t crc = 0;
	int rc = 0;
	while (pos < file_size && !sc->torn) {
		size_t want = (size_t)ST_MIN((int64_t)TIER_READ_BLOCK_BYTES, file_size - pos);
		ssize_t n = pread(fd, buf, want, pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			snprintf(why, why_len, "read at %" PRId64 ": %.120s", pos, strerror(-rc));
			break;
		}
		int64_t end = pos + n;
		while (next < end) {
			uint8_t hb[BATCH_HDR_SIZE];
			const uint8_t *hp;
			if (next + BATCH_HDR_SIZE <= end) {
				hp = buf + (next - pos);
			} else if (next + BATCH_HDR_SIZE <= file_size &&
				   pread(fd, hb, sizeof hb, next) == (ssize_t)sizeof hb) {
				hp = hb;
			} else {
				sc->torn = true;
				break;
			}
			struct batch_hdr h;
			batch_parse_hdr(hp, BATCH_HDR_SIZE, &h);
			int64_t size = batch_size(&h);
			if (h.batch_length < BATCH_HDR_SIZE - BATCH_LOG_OVERHEAD || h.magic != BATCH_MAGIC_V2 ||
			    next + size > file_size || h.base_offset < base || h.last_offset_delta < 0 ||
			    (sc->batches && h.base_offset <= sc->last_offset)) {
				sc->torn = true;
				break;
			}
			int64_t last = batch_last_offset(&h);
			if (sc->batches == 0)
				sc->first_ts = h.base_timestamp;
			if (h.max_timestamp > sc->max_ts)
				sc->max_ts = h.max_timestamp;
			/* Kafka's LogSegment.append rule for the rebuilt indexes. */
			if (h.max_timestamp > so_far_ts) {
				so_far_ts = h.max_timestamp;
				so_far_off = last;
			}
			if (since_index > TIER_INDEX_INTERVAL_BYTES) {
				uint8_t e[12];
				st_put_be32(e, (uint32_t)(last - base));
				st_put_be32(e + 4, (uint32_t)next);
				if (gbuf_add(&sc->gidx, e, 8) < 0)
					rc = -ENOMEM;
				if (so_far_ts > last_tidx_ts) {
					st_put_be64(e, (uint64_t)so_far_ts);
					st_put_be32(e + 8, (uint32_t)(so_far_off - base));
					if (gbuf_add(&sc->gtidx, e, 12) < 0)
						rc = -ENOMEM;
					last_tidx_ts = so_far_ts;
				}
				since_index = 0;
			}
			since_index += size;
			/* The local index, in the same pass: each entry names a batch start and
			 * that batch's last offset. */
			while (idx_ok && li < n_li && (int64_t)st_be32(lidx + 8 * li + 4) < next)
				idx_ok = false;
			if (idx_ok && li < n_li && (int64_t)st_be32(lidx + 8 * li + 4) == next) {
				if (base + (int64_t)st_be32(lidx + 8 * li) != last)
					idx_ok = false;
				li++;
			}
			sc->batches++;
			sc->last_offset = last;
			next += size;
		}
		int64_t crc_end = sc->torn ? ST_MIN(next, end) : end;
		if (crc_end > crc_pos) {
			crc = crc32c(crc, buf + (crc_pos - pos), (size_t)(crc_end - crc_pos));
			crc_pos = crc_end;
		}
		pos = end;
		if (rc < 0)
			break;
	}
	free(buf);
	if (rc < 0)
		return rc;
	if (so_far_ts > last_tidx_ts) {
		uint8_t e[12];
		st_put_be64(e, (uint64_t)so_far_ts);
		st_put_be32(e + 8, (uint32_t)(so_far_off - base));
		if (gbuf_add(&sc->gtidx, e, 12) < 0)
			return -ENOMEM;
	}
	sc->valid_end = next; /* the end of the last whole batch; the CRC covers exactly that */
	sc->crc = crc;
	sc->idx_ok = idx_ok && li == n_li;
	return 0;
}

/* The local time index agrees with the data: whole entries, timestamps and offsets never going
 * back, offsets inside the segment, timestamps not past its max. */
static bool tidx_valid(const uint8_t *p, size_t len, int64_t base, const struct scan *sc)
{
	if (!p || len % 12)
		return false;
	int64_t prev_ts = INT64_MIN, prev_off = -1;
	for (size_t i = 0; i < len / 12; i++) {
		int64_t ts = (int64_t)st_be64(p + 12 * i), off = base + st_be32(p + 12 * i + 8);
		if (ts < prev_ts || off < prev_off || off > sc->last_offset || ts > sc->max_ts)
			return false;
		prev_ts = ts;
		prev_off = off;
	}
	return true;
}

enum { UP_OK, UP_DROP, UP_FAIL };

/* Uploads segment base of tp (dir, names) and fills *ms. */
static int upload_segment(struct tier *t, const char *dir, const char *topic, const uint8_t id[16],
			  int32_t partition, int64_t base, struct manifest_seg *ms, char *why,
			  size_t why_len)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof path, "%s/%020" PRId64 ".log", dir, base);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) {
			snprintf(why, why_len, "%.300s is gone (deleted locally before upload)", path);
			return UP_DROP;
		}
		snprintf(why, why_len, "open %.300s: %.120s", path, strerror(errno));
		return UP_FAIL;
	}
	uint8_t *lidx = NULL, *ltidx = NULL;
	size_t lidx_len = 0, ltidx_len = 0;
	snprintf(path, sizeof path, "%s/%020" PRId64 ".index", dir, base);
	read_small_file(path, &lidx, &lidx_len);
	snprintf(path, sizeof path, "%s/%020" PRId64 ".timeindex", dir, base);
	read_small_file(path, &ltidx, &ltidx_len);
	struct scan sc;
	char swhy[512] = "";
	int rc = scan_segment(fd, base, lidx, lidx_len, &sc, swhy, sizeof swhy);
	int result = UP_FAIL;
	if (rc < 0) {
		snprintf(why, why_len, "%.300s: cannot read: %.120s", path, swhy[0] ? swhy : strerror(-rc));
		goto out;
	}
	if (sc.batches == 0) {
		snprintf(why, why_len, "segment %" PRId64 " is empty", base);
		result = UP_DROP;
		goto out;
	}
	if (sc.torn)
		slog_warn("tier", "topic=%s partition=%d: segment %" PRId64 " has bytes after its last "
			  "whole batch (at %" PRId64 "); uploading the whole batches only", topic,
			  partition, base, sc.valid_end);
	bool tidx_ok = tidx_valid(ltidx, ltidx_len, base, &sc);
	if (!sc.idx_ok || !tidx_ok)
		slog_info("tier", "topic=%s partition=%d: segment %" PRId64 ": local %s%s%s does not match "
			  "the data; uploading one rebuilt from it", topic, partition, base,
			  sc.idx_ok ? "" : ".index", !sc.idx_ok && !tidx_ok ? " and " : "",
			  tidx_ok ? "" : ".timeindex");
	const uint8_t *ib = sc.idx_ok ? lidx : sc.gidx.p, *tb = tidx_ok ? ltidx : sc.gtidx.p;
	size_t il = sc.idx_ok ? lidx_len : sc.gidx.len, tl = tidx_ok ? ltidx_len : sc.gtidx.len;
	memset(ms, 0, sizeof *ms);
	if (manifest_key_stem(ms->key, sizeof ms->key, topic, id, partition, base) < 0) {
		snprintf(why, why_len, "key too long");
		goto out;
	}
	char key[MANIFEST_KEY_MAX + 16];
	/* Indexes first, data last, then a manifest: nothing lists an object before it is whole. */
	manifest_key_object(key, sizeof key, ms->key, "index");
	if ((rc = os_put(t, key, ib ? ib : (const uint8_t *)"", il)) < 0) {
		snprintf(why, why_len, "PUT %.300s: %.120s", key, strerror(-rc));
		goto out;
	}
	manifest_key_object(key, sizeof key, ms->key, "timeindex");
	if ((rc = os_put(t, key, tb ? tb : (const uint8_t *)"", tl)) < 0) {
		snprintf(why, why_len, "PUT %.300s: %.120s", key, strerror(-rc));
		goto out;
	}
	manifest_key_object(key, sizeof key, ms->key, "log");
	rc = fault(t);
	if (rc == 0)
		rc = objstore_put_file(t->os, key, fd, sc.valid_end, NULL);
	if (rc == 0) {
		int64_t got = objstore_head(t->os, key);
		if (got != sc.valid_end)
			rc = got < 0 ? (int)got : -EIO;
	}
	if (rc < 0) {
		snprintf(why, why_len, "PUT %.300s (%" PRId64 " bytes): %.120s", key, sc.valid_end, strerror(-rc));
		goto out;
	}
	ms->base_offset = base;
	ms->last_offset = sc.last_offset;
	ms->size_bytes = sc.valid_end;
	ms->first_ts_ms = sc.first_ts;
	ms->max_ts_ms = sc.max_ts;
	ms->uploaded_ms = st_now_ms();
	ms->log_crc = sc.crc;
	ms->index_bytes = (int64_t)il;
	ms->index_crc = crc32c(0, ib ? ib : (const uint8_t *)"", il);
	ms->timeindex_bytes = (int64_t)tl;
	ms->timeindex_crc = crc32c(0, tb ? tb : (const uint8_t *)"", tl);
	result = UP_OK;
out:
	close(fd);
	free(lidx);
	free(ltidx);
	free(sc.gidx.p);
	free(sc.gtidx.p);
	return result;
}

/* --- the upload threads ---------------------------------------------------------------------- */

struct work {
	int kind;
	struct tier_part *tp;
	struct topic_job *tj;
	int64_t base;                   /* W_UPLOAD */
	char dir[PATH_MAX];
	char topic[MANIFEST_TOPIC_MAX + 1];
	uint8_t id[16];
	int32_t partition;
	char mkey[MANIFEST_KEY_MAX];
	char *buf;                      /* W_PUBLISH: encoded manifest; W_TOPIC: encoded */
	size_t len;
	int64_t version;
	uint64_t mseq;                  /* W_PUBLISH: the change count it covers */
	int64_t end;                    /* W_PUBLISH: manifest end offset */
	int64_t start;                  /* W_PUBLISH: remote start (-1: no segments) */
	struct manifest mcopy;          /* W_DELETE_ALL */
	char (*keys)[MANIFEST_KEY_MAX + 16];
	int n_keys;
	int64_t *pend;                  /* W_SCRUB: bases queued for upload */
	int32_t n_pend;
	/* results */
	int rc;
	int up;
	struct manifest_seg ms;
	struct manifest loaded;
	bool found;
	char why[1024];
};

static void part_free(struct tier_part *tp)
{
	manifest_free(&tp->m);
	free(tp->pend);
	free(tp->pend_bytes);
	free(tp->dels);
	free(tp->suspects);
	free(tp);
}

static void part_unlink(struct tier *t, struct tier_part *tp)
{
	for (struct tier_part **pp = &t->parts; *pp; pp = &(*pp)->next)
		if (*pp == tp) {
			*pp = tp->next;
			return;
		}
}

static void fill_ids(struct work *w, const struct tier_part *tp)
{
	w->tp = (struct tier_part *)tp;
	snprintf(w->dir, sizeof w->dir, "%s", tp->dir);
	snprintf(w->topic, sizeof w->topic, "%s", tp->topic);
	memcpy(w->id, tp->id, 16);
	w->partition = tp->partition;
	snprintf(w->mkey, sizeof w->mkey, "%s", tp->mkey);
}

/* Picks the next work for tp (lock held). Returns false when tp has nothing to do now. */
static bool pick_part_work(struct tier *t, struct tier_part *tp, int64_t now, struct work *w)
{
	if (tp->busy || now < tp->retry_at_ms)
		return false;
	fill_ids(w, tp);
	if (!tp->loaded) {
		w->kind = W_LOAD;
		return true;
	}
	if (tp->closing && tp->delete_remote) {
		if (manifest_copy(&w->mcopy, &tp->m) < 0)
			return false;
		w->kind = W_DELETE_ALL;
		return true;
	}
	int n = 0;
	for (int32_t i = 0; i < tp->n_dels && n < TIER_DELETE_BATCH; i++)
		if (tp->dels[i].after_version <= tp->durable_version)
			n++;
	if (n) {
		w->keys = malloc((size_t)n * sizeof *w->keys);
		if (w->keys) {
			int k = 0;
			for (int32_t i = 0; i < tp->n_dels && k < n; i++)
				if (tp->dels[i].after_version <= tp->durable_version)
					memcpy(w->keys[k++], tp->dels[i].key, sizeof w->keys[0]);
			w->n_keys = k;
			w->kind = W_DELETE_OBJS;
			return true;
		}
	}
	/* Scrub only while the manifest in memory is the durable one with nothing queued for
	 * deletion: objects a newer (unpublished) manifest dropped are still referenced by the
	 * durable one, and would be missing after a crash. */
	if (!tp->closing && !tp->dirty && tp->n_dels == 0 && now >= tp->next_scrub_ms) {
		if (manifest_copy(&w->mcopy, &tp->m) < 0)
			return false;
		if (tp->n_pend) {
			w->pend = malloc((size_t)tp->n_pend * sizeof *w->pend);
			if (!w->pend) {
				manifest_free(&w->mcopy);
				return false;
			}
			memcpy(w->pend, tp->pend, (size_t)tp->n_pend * sizeof *w->pend);
			w->n_pend = tp->n_pend;
		}
		tp->next_scrub_ms = now + TIER_SCRUB_INTERVAL_MS;
		w->kind = W_SCRUB;
		return true;
	}
	/* Pending segments the manifest already covers were uploaded before (reconciliation). */
	int64_t end = manifest_end_offset(&tp->m);
	while (tp->n_pend && tp->m.n_segs && tp->pend[0] < end)
		pend_pop(tp);
	bool upload = tp->pc.enabled && tp->n_pend && !tp->closing;
	/* A backlog publishes every few segments (or seconds) so local retention can follow. */
	bool publish = tp->dirty && !tp->closing &&
		       (!upload || tp->dirty_segs >= TIER_PUBLISH_EVERY_SEGS ||
			now - tp->dirty_since_ms >= TIER_PUBLISH_DELAY_MS);
	if (publish) {
		tp->m.version++;
		tp->m.updated_ms = st_now_ms();
		if (manifest_encode(&tp->m, &w->buf, &w->len) < 0) {
			tp->m.version--;
			return false;
		}
		w->version = tp->m.version;
		w->mseq = tp->mseq;
		w->end = manifest_end_offset(&tp->m);
		w->start = tp->m.n_segs ? tp->m.start_offset : -1;
		w->kind = W_PUBLISH;
		return true;
	}
	if (upload) {
		w->kind = W_UPLOAD;
		w->base = tp->pend[0];
		return true;
	}
	if (!tp->closing && now >= tp->next_retention_ms) {
		tp->next_retention_ms = now + TIER_RETENTION_EVERY_MS;
		retention_locked(t, tp, now);
		if (tp->dirty)
			return pick_part_work(t, tp, now, w);
	}
	return false;
}

static bool pick_work(struct tier *t, struct work *w)
{
	memset(w, 0, sizeof *w);
	int64_t now = st_now_ms();
	for (struct topic_job *tj = t->topic_jobs; tj; tj = tj->next) {
		if (tj->busy || now < tj->retry_at_ms)
			continue;
		tj->busy = true;
		w->kind = W_TOPIC;
		w->tj = tj;
		return true;
	}
	/* Closed partitions nobody works on and that keep nothing for the bucket go now. */
	for (struct tier_part **pp = &t->parts; *pp;) {
		struct tier_part *tp = *pp;
		if (tp->closing && !tp->busy && !tp->delete_remote) {
			*pp = tp->next;
			part_free(tp);
			continue;
		}
		pp = &tp->next;
	}
	for (struct tier_part *tp = t->parts; tp; tp = tp->next) {
		if (pick_part_work(t, tp, now, w)) {
			tp->busy = true;
			/* Round robin: the partition goes to the back of the list. */
			part_unlink(t, tp);
			struct tier_part **pp = &t->parts;
			while (*pp)
				pp = &(*pp)->next;
			tp->next = NULL;
			*pp = tp;
			return true;
		}
		if (w->kind == W_NONE)
			memset(w, 0, sizeof *w);
	}
	return false;
}

static void do_topic_work(struct tier *t, struct work *w)
{
	struct topic_job *tj = w->tj;
	char key[MANIFEST_KEY_MAX];
	if ((w->rc = manifest_key_topic(key, sizeof key, tj->topic)) < 0)
		return;
	if (tj->deleted) {
		/* Only the same topic's manifest: a re-created topic of that name may own it now. */
		uint8_t *buf = NULL;
		size_t len = 0;
		w->rc = fault(t);
		if (w->rc == 0)
			w->rc = objstore_get(t->os, key, MANIFEST_MAX_BYTES, &buf, &len);
		if (w->rc == -ENOENT) {
			w->rc = 0;
			return;
		}
		if (w->rc < 0)
			return;
		struct topic_manifest tm;
		char why[256];
		if (topic_manifest_decode((char *)buf, len, &tm, why, sizeof why) < 0 ||
		    memcmp(tm.topic_id, tj->id, 16) == 0)
			w->rc = os_delete(t, key);
		else
			w->rc = 0;
		topic_manifest_free(&tm);
		free(buf);
		return;
	}
	struct topic_manifest tm = { 0 };
	snprintf(tm.topic, sizeof tm.topic, "%s", tj->topic);
	memcpy(tm.topic_id, tj->id, 16);
	tm.partitions = tj->partitions;
	tm.updated_ms = st_now_ms();
	tm.version = tm.updated_ms;
	tm.config = tj->config;
	char *buf;
	size_t len;
	if ((w->rc = topic_manifest_encode(&tm, &buf, &len)) < 0)
		return;
	w->rc = os_put(t, key, buf, len);
	free(buf);
}

/* --- scrub (upload thread; the partition is busy, so no upload of it is under way) ------------ */

struct scrub_list {
	const char *rest_prefix;        /* "<topic>/<partition>_<id8>/" */
	size_t rest_len;
	char (*keys)[MANIFEST_KEY_MAX + 16];
	int32_t n, cap;
	int rc;
};

static int scrub_collect(void *ctx, const char *key, int64_t size)
{
	(void)size;
	struct scrub_list *sl = ctx;
	/* "<h8>/<rest>": the hash spreads one partition's keys over the whole bucket. */
	if (strlen(key) < 9 || key[8] != '/' || strspn(key, "0123456789abcdef") != 8 ||
	    strncmp(key + 9, sl->rest_prefix, sl->rest_len) != 0)
		return 0;
	if (strlen(key) >= sizeof sl->keys[0])
		return 0; /* never one of ours */
	if (sl->n == TIER_SCRUB_MAX_KEYS) {
		sl->rc = -E2BIG;
		return 1;
	}
	if (sl->n == sl->cap) {
		int32_t nc = sl->cap ? sl->cap * 2 : 64;
		void *nk = realloc(sl->keys, (size_t)nc * sizeof sl->keys[0]);
		if (!nk) {
			sl->rc = -ENOMEM;
			return 1;
		}
		sl->keys = nk;
		sl->cap = nc;
	}
	snprintf(sl->keys[sl->n++], sizeof sl->keys[0], "%s", key);
	return 0;
}

/* Parses "<20 digits>.log|.index|.timeindex"; *ext_out points into name. */
static bool scrub_parse_name(const char *name, int64_t *base, const char **ext_out)
{
	if (strspn(name, "0123456789") != 20 || name[20] != '.')
		return false;
	const char *ext = name + 21;
	if (strcmp(ext, "log") != 0 && strcmp(ext, "index") != 0 && strcmp(ext, "timeindex") != 0)
		return false;
	char digits[21];
	memcpy(digits, name, 20);
	digits[20] = 0;
	errno = 0;
	unsigned long long v = strtoull(digits, NULL, 10);
	if (errno || v > (unsigned long long)INT64_MAX)
		return false;
	*base = (int64_t)v;
	*ext_out = ext;
	return true;
}

static bool scrub_pending(const struct work *w, int64_t base)
{
	for (int32_t i = 0; i < w->n_pend; i++)
		if (w->pend[i] == base)
			return true;
	return false;
}

static bool scrub_referenced(const struct manifest *m, int64_t base, const char *stem)
{
	int32_t i = manifest_find(m, base);
	return i < m->n_segs && m->segs[i].base_offset == base && strcmp(m->segs[i].key, stem) == 0;
}

/* Lists the partition's keys and deletes what no manifest refers to: segment objects below the
 * remote start or inside the manifest's range but not listed (no upload writes there), names
 * strata never writes, and objects past the end that stayed unreferenced for the grace period.
 * w->n_keys counts the deletions. */
static void do_scrub(struct tier *t, struct work *w)
{
	struct tier_part *tp = w->tp;
	const struct manifest *m = &w->mcopy;
	char rest[MANIFEST_KEY_MAX];
	ST_ASSERT(strlen(w->mkey) > 9 && strlen(w->mkey) < sizeof rest);
	snprintf(rest, sizeof rest, "%s", w->mkey + 9);
	char *slash = strrchr(rest, '/');
	ST_ASSERT(slash && strcmp(slash, "/manifest") == 0);
	slash[1] = 0;
	struct scrub_list sl = { .rest_prefix = rest, .rest_len = strlen(rest) };
	w->rc = fault(t);
	if (w->rc == 0) {
		int rc = objstore_list(t->os, "", scrub_collect, &sl);
		w->rc = sl.rc ? sl.rc : rc < 0 ? rc : 0;
	}
	if (w->rc < 0) {
		snprintf(w->why, sizeof w->why, "LIST: %.120s", strerror(-w->rc));
		free(sl.keys);
		return;
	}
	int64_t now = st_now_ms(), end = manifest_end_offset(m);
	struct scrub_suspect *seen = NULL;
	int32_t n_seen = 0;
	int kept = 0;
	for (int32_t k = 0; k < sl.n; k++) {
		const char *key = sl.keys[k], *name = key + 9 + sl.rest_len, *ext = NULL;
		const char *reason = NULL;
		int64_t base = -1;
		char stem[MANIFEST_KEY_MAX], want[MANIFEST_KEY_MAX + 16];
		if (strcmp(key, w->mkey) == 0)
			continue;
		if (!scrub_parse_name(name, &base, &ext) ||
		    manifest_key_stem(stem, sizeof stem, w->topic, w->id, w->partition, base) < 0 ||
		    manifest_key_object(want, sizeof want, stem, ext) < 0 || strcmp(want, key) != 0) {
			reason = "not an object name strata writes";
		} else if (scrub_referenced(m, base, stem)) {
			kept++;
			continue;
		} else if (base < m->start_offset) {
			reason = "segment below the remote log start";
		} else if (base < end) {
			reason = "segment inside the manifest's range but not listed";
		} else if (scrub_pending(w, base)) {
			continue; /* queued for upload: it is rewritten then */
		} else {
			int64_t first = now;
			for (int32_t i = 0; i < tp->n_suspects; i++)
				if (strcmp(tp->suspects[i].key, key) == 0) {
					first = tp->suspects[i].first_seen_ms;
					break;
				}
			if (now - first >= TIER_SCRUB_GRACE_MS) {
				reason = "unreferenced past the manifest end for longer than the grace period";
			} else {
				if (!seen)
					seen = calloc(TIER_SCRUB_SUSPECTS_MAX, sizeof *seen);
				if (seen && n_seen < TIER_SCRUB_SUSPECTS_MAX) {
					snprintf(seen[n_seen].key, sizeof seen[n_seen].key, "%s", key);
					seen[n_seen++].first_seen_ms = first;
				}
				continue;
			}
		}
		int rc = os_delete(t, key);
		if (rc < 0) {
			if (w->rc == 0) {
				w->rc = rc;
				snprintf(w->why, sizeof w->why, "DELETE %.300s: %.120s", key, strerror(-rc));
			}
			continue;
		}
		w->n_keys++;
		slog_info("tier", "topic=%s partition=%d: scrub deleted %s: %s", w->topic, w->partition,
			  key, reason);
	}
	/* Only suspects still there carry their first sighting forward. */
	free(tp->suspects);
	tp->suspects = seen;
	tp->n_suspects = n_seen;
	slog_debug("tier", "topic=%s partition=%d: scrub: %d object(s) referenced, %d deleted, %d "
		   "watched", w->topic, w->partition, kept, w->n_keys, (int)n_seen);
	free(sl.keys);
}

/* --- the remote start kept in the partition directory -------------------------------------- */

#define TIER_SAVED_NAME "tier-remote-start"

/* Writes "<start> <end>\n" atomically (temp, fsync, rename, fsync of the directory) so that a
 * start with the bucket down still reports the remote log start. Upload thread. */
static int save_remote_start(const char *dir, int64_t start, int64_t end)
{
	char path[PATH_MAX], tmp[PATH_MAX], line[64];
	int n = snprintf(line, sizeof line, "%" PRId64 " %" PRId64 "\n", start, end);
	if (snprintf(path, sizeof path, "%s/" TIER_SAVED_NAME, dir) >= (int)sizeof path ||
	    snprintf(tmp, sizeof tmp, "%s/." TIER_SAVED_NAME ".tmp", dir) >= (int)sizeof tmp)
		return -ENAMETOOLONG;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int rc = 0;
	if (write(fd, line, (size_t)n) != n || fsync(fd) < 0)
		rc = errno ? -errno : -EIO;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		if (fsync(dfd) < 0)
			rc = -errno;
		close(dfd);
	}
	return rc;
}

/* The saved remote start, or -1 (none, or not a well-formed file). */
static int64_t load_remote_start(const char *dir)
{
	char path[PATH_MAX], buf[64];
	if (snprintf(path, sizeof path, "%s/" TIER_SAVED_NAME, dir) >= (int)sizeof path)
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	long long start, end;
	char nl;
	if (sscanf(buf, "%lld %lld%c", &start, &end, &nl) != 3 || nl != '\n' || start < -1 ||
	    end < start)
		return -1;
	return (int64_t)start;
}

static void do_work(struct tier *t, struct work *w)
{
	switch (w->kind) {
	case W_TOPIC:
		do_topic_work(t, w);
		if (w->rc < 0)
			snprintf(w->why, sizeof w->why, "topic manifest of %.300s: %.120s", w->tj->topic,
				 strerror(-w->rc));
		break;
	case W_LOAD: {
		uint8_t *buf = NULL;
		size_t len = 0;
		w->rc = fault(t);
		if (w->rc == 0)
			w->rc = objstore_get(t->os, w->mkey, MANIFEST_MAX_BYTES, &buf, &len);
		if (w->rc == -ENOENT) {
			w->rc = 0;
			w->found = false;
			manifest_init(&w->loaded, w->topic, w->id, w->partition);
		} else if (w->rc == 0) {
			char why[256];
			w->found = true;
			w->rc = manifest_decode((char *)buf, len, &w->loaded, why, sizeof why);
			if (w->rc < 0)
				snprintf(w->why, sizeof w->why, "manifest %.300s is damaged: %.120s", w->mkey, why);
			else if (memcmp(w->loaded.topic_id, w->id, 16) != 0 ||
				 w->loaded.partition != w->partition || strcmp(w->loaded.topic, w->topic) != 0) {
				snprintf(w->why, sizeof w->why, "manifest %.300s belongs to another topic", w->mkey);
				manifest_free(&w->loaded);
				w->rc = -EBADMSG;
			}
		} else {
			snprintf(w->why, sizeof w->why, "GET %.300s: %.120s", w->mkey, strerror(-w->rc));
		}
		free(buf);
		break;
	}
	case W_UPLOAD:
		w->up = upload_segment(t, w->dir, w->topic, w->id, w->partition, w->base, &w->ms, w->why,
				       sizeof w->why);
		break;
	case W_PUBLISH:
		w->rc = os_put(t, w->mkey, w->buf, w->len);
		if (w->rc < 0) {
			snprintf(w->why, sizeof w->why, "PUT %.300s: %.120s", w->mkey, strerror(-w->rc));
		} else {
			int src = save_remote_start(w->dir, w->start, w->end);
			if (src < 0)
				slog_warn("tier", "topic=%s partition=%d: cannot save the remote start in %s: %s",
					  w->topic, w->partition, w->dir, strerror(-src));
		}
		break;
	case W_DELETE_OBJS:
		for (int i = 0; i < w->n_keys && w->rc == 0; i++) {
			w->rc = os_delete(t, w->keys[i]);
			if (w->rc < 0)
				snprintf(w->why, sizeof w->why, "DELETE %.300s: %.120s", w->keys[i], strerror(-w->rc));
		}
		break;
	case W_SCRUB:
		do_scrub(t, w);
		break;
	case W_DELETE_ALL: {
		/* The manifest first: from then on nothing refers to the objects. */
		w->rc = os_delete(t, w->mkey);
		for (int32_t i = 0; i < w->mcopy.n_segs && w->rc == 0; i++) {
			static const char *const exts[] = { "log", "index", "timeindex" };
			for (int e = 0; e < 3 && w->rc == 0; e++) {
				char key[MANIFEST_KEY_MAX + 16];
				manifest_key_object(key, sizeof key, w->mcopy.segs[i].key, exts[e]);
				w->rc = os_delete(t, key);
			}
		}
		if (w->rc < 0)
			snprintf(w->why, sizeof w->why, "deleting the objects of %.300s-%d: %.120s", w->topic,
				 w->partition, strerror(-w->rc));
		break;
	}
	default:
		break;
	}
}

static void backoff(struct tier *t, struct tier_part *tp, const char *why)
{
	tp->failures++;
	int shift = tp->failures > 12 ? 12 : tp->failures;
	int64_t d = ST_MIN((int64_t)TIER_RETRY_BASE_MS << shift, t->retry_max_ms);
	uint32_t r = 0;
	if (getrandom(&r, sizeof r, GRND_NONBLOCK) < 0)
		r = (uint32_t)st_mono_ns();
	d = d / 2 + (int64_t)(r % (uint32_t)(d / 2 + 1)); /* jitter: [d/2, d] */
	tp->retry_at_ms = st_now_ms() + d;
	snprintf(t->last_err, sizeof t->last_err, "%.300s", why);
	if (tp->failures == 1 || tp->failures % 10 == 0)
		slog_warn("tier", "topic=%s partition=%d: %s (attempt %d, retrying in %" PRId64 " ms)",
			  tp->topic, tp->partition, why, tp->failures, d);
}

static void finish_work(struct tier *t, struct work *w)
{
	struct tier_part *tp = w->tp;
	switch (w->kind) {
	case W_TOPIC: {
		struct topic_job *tj = w->tj;
		tj->busy = false;
		if (w->rc < 0) {
			snprintf(t->last_err, sizeof t->last_err, "%.300s", w->why);
			t->st.upload_errors++;
			/* stays queued, retried after a backoff like the partitions' */
			tj->failures++;
			tj->retry_at_ms = st_now_ms() + ST_MIN((int64_t)TIER_RETRY_BASE_MS <<
							       (tj->failures > 12 ? 12 : tj->failures),
							       t->retry_max_ms);
			break;
		}
		for (struct topic_job **pp = &t->topic_jobs; *pp; pp = &(*pp)->next)
			if (*pp == tj) {
				*pp = tj->next;
				break;
			}
		free(tj->config);
		free(tj);
		break;
	}
	case W_LOAD:
		if (w->rc < 0) {
			t->st.upload_errors++;
			backoff(t, tp, w->why);
			break;
		}
		tp->failures = 0;
		manifest_free(&tp->m);
		tp->m = w->loaded;
		tp->loaded = true;
		tp->durable_version = tp->m.version;
		tp->durable_end = manifest_end_offset(&tp->m);
		if (w->found)
			slog_info("tier", "topic=%s partition=%d: manifest v%" PRId64 " loaded: %d remote "
				  "segment(s), offsets [%" PRId64 ", %" PRId64 ")", tp->topic, tp->partition,
				  tp->m.version, tp->m.n_segs, tp->m.start_offset, tp->durable_end);
		post_wake_locked(t, tp->topic, tp->partition);
		kick_efd(t); /* fetches parked on the load (else they wait for their 1 s timer) */
		break;
	case W_UPLOAD:
		if (w->up == UP_FAIL) {
			t->st.upload_errors++;
			backoff(t, tp, w->why);
			break;
		}
		tp->failures = 0;
		if (tp->n_pend && tp->pend[0] == w->base)
			pend_pop(tp);
		if (w->up == UP_DROP) {
			slog_info("tier", "topic=%s partition=%d: not uploading segment %" PRId64 ": %s",
				  tp->topic, tp->partition, w->base, w->why);
			break;
		}
		if (w->ms.last_offset < tp->m.start_offset ||
		    (tp->m.n_segs && w->ms.base_offset <= tp->m.segs[tp->m.n_segs - 1].last_offset))
			break; /* DeleteRecords moved past it, or a duplicate */
		if (manifest_append(&tp->m, &w->ms) < 0) {
			backoff(t, tp, "out of memory");
			pend_add(tp, w->base, w->ms.size_bytes);
			break;
		}
		t->st.segments_uploaded++;
		t->st.bytes_uploaded += w->ms.size_bytes;
		if (!tp->dirty)
			tp->dirty_since_ms = st_now_ms();
		tp->dirty = true;
		tp->dirty_segs++;
		tp->mseq++;
		slog_debug("tier", "topic=%s partition=%d: segment %" PRId64 "..%" PRId64 " uploaded (%"
			   PRId64 " bytes)", tp->topic, tp->partition, w->ms.base_offset,
			   w->ms.last_offset, w->ms.size_bytes);
		break;
	case W_PUBLISH:
		if (w->rc < 0) {
			t->st.upload_errors++;
			backoff(t, tp, w->why);
			break;
		}
		tp->failures = 0;
		t->st.manifests_written++;
		if (w->version > tp->durable_version)
			tp->durable_version = w->version;
		if (w->end > tp->durable_end)
			tp->durable_end = w->end;
		if (tp->mseq == w->mseq) { /* nothing changed meanwhile (DeleteRecords) */
			tp->dirty = false;
			tp->dirty_segs = 0;
		}
		break;
	case W_DELETE_OBJS:
		if (w->rc < 0) {
			t->st.upload_errors++;
			backoff(t, tp, w->why);
			break;
		}
		tp->failures = 0;
		for (int i = 0; i < w->n_keys; i++)
			for (int32_t j = 0; j < tp->n_dels; j++)
				if (strcmp(tp->dels[j].key, w->keys[i]) == 0) {
					tp->dels[j] = tp->dels[--tp->n_dels];
					break;
				}
		t->st.objects_deleted += w->n_keys;
		break;
	case W_SCRUB:
		t->st.objects_deleted += w->n_keys; /* n_keys: objects the scrub deleted */
		if (w->rc < 0) {
			/* Not a backoff: uploads go on; the scrub is tried again later. */
			t->st.upload_errors++;
			snprintf(t->last_err, sizeof t->last_err, "%.300s", w->why);
			slog_warn("tier", "topic=%s partition=%d: scrub: %s", tp->topic, tp->partition, w->why);
			tp->next_scrub_ms = st_now_ms() + TIER_SCRUB_RETRY_MS;
		}
		break;
	case W_DELETE_ALL:
		if (w->rc < 0) {
			t->st.upload_errors++;
			backoff(t, tp, w->why);
			break;
		}
		slog_info("tier", "topic=%s partition=%d: remote data deleted (%d segments)", tp->topic,
			  tp->partition, w->mcopy.n_segs);
		tp->delete_remote = false; /* done: freed as a plain closed partition */
		break;
	default:
		break;
	}
	if (tp)
		tp->busy = false;
	free(w->buf);
	free(w->keys);
	free(w->pend);
	manifest_free(&w->mcopy);
}

static void *upload_worker(void *arg)
{
	struct tier *t = arg;
	struct work *w = malloc(sizeof *w);
	if (!w) {
		slog_error("tier", "upload thread: out of memory");
		return NULL;
	}
	pthread_mutex_lock(&t->lock);
	while (!t->stop) {
		if (pick_work(t, w)) {
			pthread_mutex_unlock(&t->lock);
			do_work(t, w);
			pthread_mutex_lock(&t->lock);
			finish_work(t, w);
			/* Other threads may find work that this result made possible. */
			pthread_cond_broadcast(&t->cond);
			continue;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&t->cond, &t->lock, &ts);
	}
	pthread_mutex_unlock(&t->lock);
	free(w);
	return NULL;
}

/* --- open / close ---------------------------------------------------------------------------- */

/* "<parent of dir>/<name>" */
static int sibling_path(const char *dir, const char *name, char *out, size_t len)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s", dir);
	size_t n = strlen(tmp);
	while (n > 1 && tmp[n - 1] == '/')
		tmp[--n] = 0;
	char *slash = strrchr(tmp, '/');
	if (!slash)
		snprintf(tmp, sizeof tmp, ".");
	else if (slash == tmp)
		tmp[1] = 0;
	else
		*slash = 0;
	int r = snprintf(out, len, "%s%s%s", tmp, strcmp(tmp, "/") == 0 ? "" : "/", name);
	return r < 0 || (size_t)r >= len ? -ENAMETOOLONG : 0;
}

int tier_open(const struct cfg *bc, const char *log_dir, struct uring *ur, tier_wake_fn wake,
	      void *wake_ctx, struct tier **out, char *why, size_t why_len)
{
	*out = NULL;
	const char *url = cfg_str(bc, BC_TIER_URL);
	if (url && strcmp(url, "none") == 0)
		return 0;
	struct tier *t = calloc(1, sizeof *t);
	if (!t)
		return -ENOMEM;
	t->efd = -1;
	int rc;
	if (url) {
		snprintf(t->url, sizeof t->url, "%s", url);
	} else {
		char p[PATH_MAX];
		if ((rc = sibling_path(log_dir, "bucket", p, sizeof p)) < 0 ||
		    snprintf(t->url, sizeof t->url, "file://%s", p) >= (int)sizeof t->url) {
			snprintf(why, why_len, "log.dirs=%.300s: path too long for the default bucket", log_dir);
			free(t);
			return -ENAMETOOLONG;
		}
	}
	const char *fp = cfg_str(bc, BC_TIER_TEST_FAULT_FILE);
	if (fp)
		snprintf(t->fault_path, sizeof t->fault_path, "%s", fp);
	t->retry_max_ms = cfg_int(bc, BC_TIER_RETRY_MAX_MS);
	t->delete_on_topic_delete = cfg_bool(bc, BC_TIER_DELETE_ON_TOPIC_DELETE);
	struct objstore_config oc;
	objstore_config_defaults(&oc);
	oc.url = t->url;
	oc.endpoint = cfg_str(bc, BC_TIER_S3_ENDPOINT);
	oc.region = cfg_str(bc, BC_TIER_S3_REGION);
	oc.path_style = cfg_bool(bc, BC_TIER_S3_PATH_STYLE);
	oc.access_key_id = cfg_str(bc, BC_TIER_S3_ACCESS_KEY_ID);
	oc.secret_access_key = cfg_str(bc, BC_TIER_S3_SECRET_ACCESS_KEY);
	oc.session_token = cfg_str(bc, BC_TIER_S3_SESSION_TOKEN);
	if ((rc = objstore_open(&oc, &t->os)) < 0) {
		snprintf(why, why_len, "strata.tier.url=%.300s: cannot open the bucket: %.120s", t->url,
			 strerror(-rc));
		free(t);
		return rc;
	}
	char cdir[PATH_MAX];
	const char *cd = cfg_str(bc, BC_TIER_CACHE_DIR);
	if (cd)
		snprintf(cdir, sizeof cdir, "%s", cd);
	else if (sibling_path(log_dir, "tier-cache", cdir, sizeof cdir) < 0)
		cdir[0] = 0;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	t->ur = ur;
	t->wake = wake;
	t->wake_ctx = wake_ctx;
	struct rcache_config rcfg;
	rcache_config_defaults(&rcfg);
	rcfg.dir = cdir;
	rcfg.max_bytes = cfg_int(bc, BC_TIER_CACHE_BYTES);
	rcfg.min_free_bytes = cfg_int(bc, BC_TIER_CACHE_MIN_FREE);
	rcfg.chunk_bytes = cfg_int(bc, BC_TIER_CHUNK_BYTES);
	rcfg.threads = (int)cfg_int(bc, BC_TIER_DOWNLOAD_THREADS);
	rcfg.prefetch_threads = (int)cfg_int(bc, BC_TIER_PREFETCH_THREADS);
	rcfg.prefetch_chunks = (int)cfg_int(bc, BC_TIER_PREFETCH_CHUNKS);
	rcfg.local_direct = cfg_bool(bc, BC_TIER_CACHE_LOCAL_DIRECT);
	if ((rc = rcache_open(&rcfg, t->os, rcache_done, t, &t->rc)) < 0) {
		snprintf(why, why_len, "strata.tier.cache.dir=%.300s: %.120s", cdir, strerror(-rc));
		goto fail;
	}
	t->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->efd < 0) {
		rc = -errno;
		snprintf(why, why_len, "eventfd: %.300s", strerror(-rc));
		goto fail;
	}
	if (ur)
		arm_efd(t);
	int n = (int)cfg_int(bc, BC_TIER_UPLOAD_THREADS);
	t->threads = calloc((size_t)n, sizeof *t->threads);
	if (!t->threads) {
		rc = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < n; i++) {
		if ((rc = pthread_create(&t->threads[i], NULL, upload_worker, t)) != 0) {
			rc = -rc;
			snprintf(why, why_len, "cannot start upload threads: %.300s", strerror(-rc));
			goto fail;
		}
		t->n_threads++;
	}
	slog_info("tier", "bucket %s, read cache %s (%" PRId64 " bytes, %" PRId64 "-byte chunks), "
		  "%d upload / %d download threads", t->url, cdir, rcfg.max_bytes, rcfg.chunk_bytes,
		  n, rcfg.threads);
	*out = t;
	return 0;
fail:
	tier_close(t);
	return rc;
}

void tier_close(struct tier *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	/* An upload retrying a bucket that is down would hold the join for up to its whole
	 * backoff schedule; what it did not finish is redone after the next start. */
	objstore_shutdown(t->os);
	for (int i = 0; i < t->n_threads; i++)
		pthread_join(t->threads[i], NULL);
	free(t->threads);
	if (t->rc) {
		struct tier_stats st;
		tier_get_stats(t, &st);
		slog_info("tier", "stats: %" PRId64 " segments (%" PRId64 " bytes) uploaded, %" PRId64
			  " manifests, %" PRId64 " upload errors, %" PRId64 " segments expired; cold reads %"
			  PRId64 " (%" PRId64 " bytes), cache hits %" PRId64 " misses %" PRId64 ", %" PRId64
			  " downloads (%" PRId64 " bytes), %" PRId64 " corrupt", st.segments_uploaded,
			  st.bytes_uploaded, st.manifests_written, st.upload_errors, st.segments_expired,
			  st.cold_reads, st.cold_bytes, st.cache_hits, st.cache_misses, st.downloads,
			  st.download_bytes, st.corrupt_objects);
	}
	rcache_close(t->rc);
	/* The eventfd read still sits on the ring: complete it, then let the ring retire it. */
	t->closing = true;
	if (t->efd_armed && t->efd >= 0) {
		kick_efd(t);
		for (int i = 0; i < 100 && t->efd_armed; i++)
			uring_run_once(t->ur, 100);
	}
	if (t->efd_armed)
		slog_error("tier", "eventfd read did not complete at close");
	while (t->parts) {
		struct tier_part *tp = t->parts;
		t->parts = tp->next;
		if (tp->closing && tp->delete_remote)
			slog_warn("tier", "topic=%s partition=%d: remote data not deleted before shutdown "
				  "(orphan objects stay in the bucket)", tp->topic, tp->partition);
		else if (tp->n_pend)
			slog_info("tier", "topic=%s partition=%d: %d segment(s) not uploaded yet (uploaded "
				  "after the next start)", tp->topic, tp->partition, (int)tp->n_pend);
		part_free(tp);
	}
	while (t->topic_jobs) {
		struct topic_job *tj = t->topic_jobs;
		t->topic_jobs = tj->next;
		free(tj->config);
		free(tj);
	}
	if (t->efd >= 0 && !t->efd_armed)
		close(t->efd);
	objstore_close(t->os);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cond);
	if (!t->efd_armed)
		free(t);
}

const char *tier_url(const struct tier *t) { return t->url; }

/* --- partitions (reactor) -------------------------------------------------------------------- */

/* Closed segments in dir: every "<20 digits>.log" but the newest (the active one). */
static void scan_closed(struct tier_part *tp)
{
	DIR *d = opendir(tp->dir);
	if (!d)
		return;
	int64_t *bases = NULL, *sizes = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *s = de->d_name;
		if (strlen(s) != 24 || strcmp(s + 20, ".log") != 0 || strspn(s, "0123456789") != 20)
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			int64_t *nb = realloc(bases, nc * sizeof *nb), *ns;
			if (!nb)
				break;
			bases = nb;
			if (!(ns = realloc(sizes, nc * sizeof *ns)))
				break;
			sizes = ns;
			cap = nc;
		}
		struct stat st;
		bases[n] = strtoll(s, NULL, 10);
		sizes[n] = fstatat(dirfd(d), s, &st, 0) == 0 ? st.st_size : 0;
		n++;
	}
	closedir(d);
	int64_t newest = -1;
	for (size_t i = 0; i < n; i++)
		if (bases[i] > newest)
			newest = bases[i];
	for (size_t i = 0; i < n; i++)
		if (bases[i] != newest)
			pend_add(tp, bases[i], sizes[i]);
	free(bases);
	free(sizes);
}

int tier_part_open(struct tier *t, const char *topic, const uint8_t topic_id[16], int32_t partition,
		   const char *dir, const struct tier_part_config *pc, struct tier_part **out)
{
	struct tier_part *tp = calloc(1, sizeof *tp);
	if (!tp)
		return -ENOMEM;
	tp->t = t;
	snprintf(tp->topic, sizeof tp->topic, "%s", topic);
	memcpy(tp->id, topic_id, 16);
	tp->partition = partition;
	if (snprintf(tp->dir, sizeof tp->dir, "%s", dir) >= (int)sizeof tp->dir ||
	    manifest_key_partition(tp->mkey, sizeof tp->mkey, topic, topic_id, partition) < 0) {
		free(tp);
		return -ENAMETOOLONG;
	}
	tp->pc = *pc;
	manifest_init(&tp->m, topic, topic_id, partition);
	tp->local_start = -1;
	tp->saved_start = load_remote_start(dir);
	scan_closed(tp); /* tp is not shared yet: no lock while listing the directory */
	pthread_mutex_lock(&t->lock);
	tp->next = t->parts;
	t->parts = tp;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
	*out = tp;
	return 0;
}

void tier_part_close(struct tier_part *tp, bool delete_remote)
{
	if (!tp)
		return;
	struct tier *t = tp->t;
	pthread_mutex_lock(&t->lock);
	tp->closing = true;
	tp->delete_remote = delete_remote && t->delete_on_topic_delete;
	tp->n_pend = 0;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

void tier_part_set_config(struct tier_part *tp, const struct tier_part_config *pc)
{
	struct tier *t = tp->t;
	pthread_mutex_lock(&t->lock);
	tp->pc = *pc;
	tp->next_retention_ms = 0;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

void tier_part_segment_closed(struct tier_part *tp, const struct log_segment_info *info)
{
	struct tier *t = tp->t;
	pthread_mutex_lock(&t->lock);
	pend_add(tp, info->base_offset, info->size_bytes);
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

bool tier_part_deletable(struct tier_part *tp, int64_t base_offset)
{
	struct tier *t = tp->t;
	pthread_mutex_lock(&t->lock);
	/* Uploads go in offset order and durable_end is a segment boundary: a base below it
	 * belongs to a segment wholly inside a durable manifest. */
	bool ok = !tp->pc.enabled || (tp->loaded && base_offset < tp->durable_end);
	pthread_mutex_unlock(&t->lock);
	return ok;
}

void tier_part_note_local(struct tier_part *tp, int64_t local_start, int64_t local_bytes)
{
	struct tier *t = tp->t;
	pthread_mutex_lock(&t->lock);
	tp->local_start = local_start;
	tp->local_bytes = local_bytes;
	/* Not tiered now: segments closed meanwhile and already gone locally are forgotten (a
	 * partition whose tiering is enabled keeps them until uploaded or found missing). */
	while (!tp->pc.enabled && tp->n_pend > 1 && tp->pend[1] <= local_start)
		pend_pop(tp);
	pthread_mutex_unlock(&t->lock);
}

int64_t tier_part_start_offset(struct tier_part *tp)
{
	struct tier *t = tp->t;
	pthread_mutex_lock(&t->lock);
	/* Until the bucket's manifest is read (the bucket may be down), the start saved with the
	 * last published manifest answers: ListOffsets EARLIEST need not wait. */
	int64_t r = !tp->loaded ? tp->saved_start : tp->m.n_segs ? tp->m.start_offset : -1;
	pthread_mutex_unlock(&t->lock);
	return r;
}

bool tier_part_loading(struct tier_part *tp)
{
	struct tier *t = tp->t;
	pthread_mutex_lock(&t->lock);
	/* A saved remote start bounds what the bucket holds: the start is answered from it, and
	 * reads above it still wait in tier_read (TIER_PENDING) until the manifest is loaded. */
	bool r = !tp->loaded && tp->saved_start < 0;
	pthread_mutex_unlock(&t->lock);
	return r;
}

void tier_part_delete_records(struct tier_part *tp, int64_t new_start)
{
	struct tier *t = tp->t;
	pthread_mutex_lock(&t->lock);
	if (tp->loaded && new_start > tp->m.start_offset) {
		int32_t n = 0;
		while (n < tp->m.n_segs && tp->m.segs[n].last_offset < new_start)
			n++;
		if (n)
			drop_segments(t, tp, n);
		if (new_start > tp->m.start_offset) {
			tp->m.start_offset = tp->m.n_segs ? ST_MIN(new_start, manifest_end_offset(&tp->m))
							  : new_start;
			if (!tp->dirty)
				tp->dirty_since_ms = st_now_ms();
			tp->dirty = true;
			tp->mseq++;
		}
		pthread_cond_signal(&t->cond);
	}
	pthread_mutex_unlock(&t->lock);
}

/* --- cold reads (reactor) -------------------------------------------------------------------- */

int tier_read(struct tier_part *tp, int64_t offset, int64_t max_bytes, bool min_one,
	      struct tier_slice *out)
{
	struct tier *t = tp->t;
	memset(out, 0, sizeof *out);
	out->fd = -1;
	struct rcache_seg seg, next;
	bool have_next = false;
	pthread_mutex_lock(&t->lock);
	if (!tp->loaded) {
		pthread_mutex_unlock(&t->lock);
		return TIER_PENDING;
	}
	int32_t i = manifest_find(&tp->m, offset);
	if (offset < tp->m.start_offset || i >= tp->m.n_segs) {
		pthread_mutex_unlock(&t->lock);
		return KERR_OFFSET_OUT_OF_RANGE;
	}
	snprintf(seg.topic, sizeof seg.topic, "%s", tp->topic);
	seg.partition = tp->partition;
	seg.m = tp->m.segs[i];
	if (i + 1 < tp->m.n_segs) {
		next = seg;
		next.m = tp->m.segs[i + 1];
		have_next = true;
	}
	pthread_mutex_unlock(&t->lock);
	struct rcache_slice *rs = malloc(sizeof *rs);
	if (!rs)
		return KERR_KAFKA_STORAGE_ERROR;
	int r = rcache_read(t->rc, &seg, have_next ? &next : NULL, offset, max_bytes, min_one, rs);
	if (r != KERR_NONE) {
		free(rs);
		return r == RCACHE_PENDING ? TIER_PENDING : r;
	}
	out->fd = rs->fd;
	out->file_pos = rs->file_pos;
	out->len = rs->len;
	out->first_offset = rs->first_offset;
	out->next_offset = rs->next_offset;
	out->ref_ = rs;
	pthread_mutex_lock(&t->lock);
	t->st.cold_reads++;
	t->st.cold_bytes += rs->len;
	pthread_mutex_unlock(&t->lock);
	return KERR_NONE;
}

void tier_slice_release(struct tier_slice *s)
{
	if (!s->ref_)
		return;
	rcache_slice_release(s->ref_);
	free(s->ref_);
	s->ref_ = NULL;
}

int tier_offset_for_timestamp(struct tier_part *tp, int64_t ts_ms, int64_t below_offset,
			      int64_t *offset_out, int64_t *ts_out)
{
	struct tier *t = tp->t;
	*offset_out = -1;
	*ts_out = -1;
	struct rcache_seg seg;
	bool found = false;
	int64_t start;
	pthread_mutex_lock(&t->lock);
	if (!tp->loaded) {
		pthread_mutex_unlock(&t->lock);
		return TIER_PENDING;
	}
	start = tp->m.start_offset;
	for (int32_t i = 0; i < tp->m.n_segs && tp->m.segs[i].base_offset < below_offset; i++) {
		if (tp->m.segs[i].max_ts_ms >= ts_ms && tp->m.segs[i].last_offset >= start) {
			snprintf(seg.topic, sizeof seg.topic, "%s", tp->topic);
			seg.partition = tp->partition;
			seg.m = tp->m.segs[i];
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
	if (!found)
		return KERR_NONE;
	int r = rcache_offset_for_timestamp(t->rc, &seg, ts_ms, offset_out, ts_out);
	if (r == RCACHE_PENDING)
		return TIER_PENDING;
	if (r == KERR_NONE && *offset_out >= 0 && *offset_out < start)
		*offset_out = start;
	return r;
}

int64_t tier_max_timestamp(struct tier_part *tp, int64_t below_offset)
{
	struct tier *t = tp->t;
	int64_t best = -1;
	pthread_mutex_lock(&t->lock);
	for (int32_t i = 0; tp->loaded && i < tp->m.n_segs && tp->m.segs[i].base_offset < below_offset; i++)
		if (tp->m.segs[i].max_ts_ms > best && tp->m.segs[i].last_offset >= tp->m.start_offset)
			best = tp->m.segs[i].max_ts_ms;
	pthread_mutex_unlock(&t->lock);
	return best;
}

/* --- topics ---------------------------------------------------------------------------------- */

static void topic_job_add(struct tier *t, const char *topic, const uint8_t id[16], int32_t partitions,
			  const char *config, bool deleted)
{
	struct topic_job *tj = calloc(1, sizeof *tj);
	if (!tj)
		return;
	snprintf(tj->topic, sizeof tj->topic, "%s", topic);
	memcpy(tj->id, id, 16);
	tj->partitions = partitions;
	tj->config = strdup(config ? config : "");
	tj->deleted = deleted;
	if (!tj->config) {
		free(tj);
		return;
	}
	pthread_mutex_lock(&t->lock);
	/* A newer state of the same topic replaces a queued one nobody works on yet. */
	for (struct topic_job **pp = &t->topic_jobs; *pp;) {
		struct topic_job *o = *pp;
		if (!o->busy && strcmp(o->topic, topic) == 0) {
			*pp = o->next;
			free(o->config);
			free(o);
			continue;
		}
		pp = &o->next;
	}
	struct topic_job **pp = &t->topic_jobs;
	while (*pp)
		pp = &(*pp)->next;
	*pp = tj;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

void tier_topic_update(struct tier *t, const char *topic, const uint8_t topic_id[16],
		       int32_t partitions, const char *config_text)
{
	topic_job_add(t, topic, topic_id, partitions, config_text, false);
}

void tier_topic_deleted(struct tier *t, const char *topic, const uint8_t topic_id[16])
{
	if (t->delete_on_topic_delete)
		topic_job_add(t, topic, topic_id, 0, NULL, true);
}

/* --- restore: a topic recreated from the bucket (caller's worker thread) --------------------- */

void tier_topic_info_free(struct tier_topic_info *ti)
{
	free(ti->config);
	free(ti->remote_start);
	free(ti->remote_end);
	memset(ti, 0, sizeof *ti);
}

int tier_read_topic(struct tier *t, const char *topic, struct tier_topic_info *out, char *why,
		    size_t why_len)
{
	memset(out, 0, sizeof *out);
	char key[MANIFEST_KEY_MAX], dwhy[256];
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = manifest_key_topic(key, sizeof key, topic);
	if (rc < 0) {
		snprintf(why, why_len, "topic name too long for a bucket key");
		return rc;
	}
	if ((rc = fault(t)) == 0)
		rc = objstore_get(t->os, key, MANIFEST_MAX_BYTES, &buf, &len);
	if (rc == -ENOENT) {
		snprintf(why, why_len, "bucket %.300s has no topic manifest %.300s", t->url, key);
		return rc;
	}
	if (rc < 0) {
		snprintf(why, why_len, "GET %.300s from %.300s: %.120s", key, t->url, strerror(-rc));
		return rc;
	}
	struct topic_manifest tm;
	rc = topic_manifest_decode((char *)buf, len, &tm, dwhy, sizeof dwhy);
	free(buf);
	if (rc < 0) {
		snprintf(why, why_len, "topic manifest %.300s is damaged: %.200s", key, dwhy);
		return -EBADMSG;
	}
	if (strcmp(tm.topic, topic) != 0 || tm.partitions < 1) {
		snprintf(why, why_len, "topic manifest %.300s is for topic '%.250s' with %d partitions",
			 key, tm.topic, tm.partitions);
		topic_manifest_free(&tm);
		return -EBADMSG;
	}
	memcpy(out->topic_id, tm.topic_id, 16);
	out->partitions = tm.partitions;
	out->config = tm.config;
	tm.config = NULL;
	topic_manifest_free(&tm);
	out->remote_start = calloc((size_t)out->partitions, sizeof *out->remote_start);
	out->remote_end = calloc((size_t)out->partitions, sizeof *out->remote_end);
	if (!out->remote_start || !out->remote_end) {
		tier_topic_info_free(out);
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	for (int32_t p = 0; p < out->partitions; p++) {
		out->remote_start[p] = -1;
		if ((rc = manifest_key_partition(key, sizeof key, topic, out->topic_id, p)) < 0)
			break;
		buf = NULL;
		if ((rc = fault(t)) == 0)
			rc = objstore_get(t->os, key, MANIFEST_MAX_BYTES, &buf, &len);
		if (rc == -ENOENT) { /* nothing of that partition was ever published */
			rc = 0;
			continue;
		}
		if (rc < 0) {
			snprintf(why, why_len, "GET %.300s from %.300s: %.120s", key, t->url, strerror(-rc));
			break;
		}
		struct manifest m;
		rc = manifest_decode((char *)buf, len, &m, dwhy, sizeof dwhy);
		free(buf);
		if (rc < 0) {
			snprintf(why, why_len, "manifest %.300s is damaged: %.200s", key, dwhy);
			rc = -EBADMSG;
			break;
		}
		if (memcmp(m.topic_id, out->topic_id, 16) != 0 || m.partition != p ||
		    strcmp(m.topic, topic) != 0) {
			snprintf(why, why_len, "manifest %.300s belongs to another topic", key);
			manifest_free(&m);
			rc = -EBADMSG;
			break;
		}
		out->remote_start[p] = m.n_segs ? m.start_offset : -1;
		out->remote_end[p] = manifest_end_offset(&m);
		manifest_free(&m);
	}
	if (rc < 0)
		tier_topic_info_free(out);
	return rc;
}

int tier_save_remote_range(const char *dir, int64_t start, int64_t end)
{
	return save_remote_start(dir, start, end);
}

/* --- backlog and stats ----------------------------------------------------------------------- */

static const struct {
	const char *name, *help;
	bool gauge;
} tier_metric_defs[TM__COUNT] = {
	[TM_BACKLOG_SEGMENTS] = { "strata_tier_upload_backlog_segments",
				  "Closed local segments waiting to be uploaded to the bucket.", true },
	[TM_BACKLOG_BYTES] = { "strata_tier_upload_backlog_bytes",
			       "Bytes of the closed local segments waiting to be uploaded.", true },
	[TM_BACKLOG_PARTITIONS] = { "strata_tier_upload_backlog_partitions",
				    "Partitions with segments waiting to be uploaded.", true },
	[TM_REMOTE_SEGMENTS] = { "strata_tier_remote_segments",
				 "Uploaded segments the partitions' manifests list.", true },
	[TM_UPLOADED_SEGMENTS] = { "strata_tier_uploaded_segments_total",
				   "Segments uploaded to the bucket.", false },
	[TM_UPLOADED_BYTES] = { "strata_tier_uploaded_bytes_total",
				"Bytes of segments uploaded to the bucket.", false },
	[TM_UPLOAD_ERRORS] = { "strata_tier_upload_errors_total",
			       "Failed bucket operations of the upload threads (segments, manifests, "
			       "deletes); each is retried after a backoff.", false },
	[TM_MANIFESTS_WRITTEN] = { "strata_tier_manifests_written_total",
				   "Partition manifests published to the bucket.", false },
	[TM_SEGMENTS_EXPIRED] = { "strata_tier_segments_expired_total",
				  "Remote segments removed by total retention or DeleteRecords.", false },
	[TM_OBJECTS_DELETED] = { "strata_tier_objects_deleted_total",
				 "Objects deleted from the bucket.", false },
	[TM_COLD_READS] = { "strata_tier_cold_reads_total",
			    "Reads served from remote segments (below the local log start).", false },
	[TM_COLD_READ_BYTES] = { "strata_tier_cold_read_bytes_total",
				 "Bytes served from remote segments.", false },
	[TM_CACHE_HITS] = { "strata_tier_cache_hits_total",
			    "Cold reads answered from the read cache.", false },
	[TM_CACHE_MISSES] = { "strata_tier_cache_misses_total",
			      "Cold reads that had to wait for a download.", false },
	[TM_DOWNLOADS] = { "strata_tier_downloads_total", "Chunks downloaded from the bucket.", false },
	[TM_DOWNLOADED_BYTES] = { "strata_tier_downloaded_bytes_total",
				  "Bytes downloaded from the bucket.", false },
	[TM_DOWNLOAD_ERRORS] = { "strata_tier_download_errors_total",
				 "Failed chunk downloads.", false },
	[TM_CORRUPT_OBJECTS] = { "strata_tier_corrupt_objects_total",
				 "Downloaded objects that failed verification (not served).", false },
	[TM_CACHE_BYTES] = { "strata_tier_cache_bytes",
			     "Bytes of verified chunks in the read cache (file:// chunks included).", true },
	[TM_PREFETCH_HANDOVERS] = { "strata_tier_prefetch_handovers_total",
				    "Prefetches a waiting read took over (prefetch threads behind).", false },
	[TM_PRESSURE_EVICTIONS] = { "strata_tier_cache_pressure_evictions_total",
				    "Cached chunks dropped because the disk ran short "
				    "(strata.tier.cache.min.free.bytes).", false },
	[TM_PRESSURE_REFUSALS] = { "strata_tier_cache_pressure_refusals_total",
				   "Chunks not cached for lack of disk space (their reads failed).", false },
};

/* Reactor (tier_tick): gauges set, counters advanced by what the stats grew since last time. */
static void publish_metrics(struct tier *t, const struct tier_stats *st, int64_t parts,
			    int64_t remote_segs)
{
	struct metrics_series **m = t->metrics;
	if (!t->metrics_registered) {
		for (int i = 0; i < TM__COUNT; i++)
			m[i] = tier_metric_defs[i].gauge
				? metrics_gauge(metrics_global(), tier_metric_defs[i].name,
						tier_metric_defs[i].help, NULL, 0)
				: metrics_counter(metrics_global(), tier_metric_defs[i].name,
						  tier_metric_defs[i].help, NULL, 0);
		t->metrics_registered = true;
	}
	struct rcache_stats rs;
	rcache_get_stats(t->rc, &rs);
	const struct tier_stats *p = &t->published;
	const struct rcache_stats *prc = &t->published_rc;
	metrics_set(m[TM_BACKLOG_SEGMENTS], st->backlog_segments);
	metrics_set(m[TM_BACKLOG_BYTES], st->backlog_bytes);
	metrics_set(m[TM_BACKLOG_PARTITIONS], parts);
	metrics_set(m[TM_REMOTE_SEGMENTS], remote_segs);
	metrics_add(m[TM_UPLOADED_SEGMENTS], st->segments_uploaded - p->segments_uploaded);
	metrics_add(m[TM_UPLOADED_BYTES], st->bytes_uploaded - p->bytes_uploaded);
	metrics_add(m[TM_UPLOAD_ERRORS], st->upload_errors - p->upload_errors);
	metrics_add(m[TM_MANIFESTS_WRITTEN], st->manifests_written - p->manifests_written);
	metrics_add(m[TM_SEGMENTS_EXPIRED], st->segments_expired - p->segments_expired);
	metrics_add(m[TM_OBJECTS_DELETED], st->objects_deleted - p->objects_deleted);
	metrics_add(m[TM_COLD_READS], st->cold_reads - p->cold_reads);
	metrics_add(m[TM_COLD_READ_BYTES], st->cold_bytes - p->cold_bytes);
	metrics_add(m[TM_CACHE_HITS], rs.hits - prc->hits);
	metrics_add(m[TM_CACHE_MISSES], rs.misses - prc->misses);
	metrics_add(m[TM_DOWNLOADS], rs.downloads - prc->downloads);
	metrics_add(m[TM_DOWNLOADED_BYTES], rs.download_bytes - prc->download_bytes);
	metrics_add(m[TM_DOWNLOAD_ERRORS], rs.download_errors - prc->download_errors);
	metrics_add(m[TM_CORRUPT_OBJECTS], rs.corrupt - prc->corrupt);
	metrics_set(m[TM_CACHE_BYTES], rs.cached_bytes);
	metrics_add(m[TM_PREFETCH_HANDOVERS], rs.handovers - prc->handovers);
	metrics_add(m[TM_PRESSURE_EVICTIONS], rs.pressure_evictions - prc->pressure_evictions);
	metrics_add(m[TM_PRESSURE_REFUSALS], rs.pressure_refusals - prc->pressure_refusals);
	t->published = *st;
	t->published_rc = rs;
}

void tier_tick(struct tier *t, int64_t now_ms)
{
	int64_t segs = 0, bytes = 0, remote_segs = 0;
	int parts = 0;
	pthread_mutex_lock(&t->lock);
	for (struct tier_part *tp = t->parts; tp; tp = tp->next) {
		if (!tp->closing)
			remote_segs += tp->m.n_segs;
		if (tp->closing || !tp->pc.enabled || !tp->n_pend)
			continue;
		parts++;
		segs += tp->n_pend;
		for (int32_t i = 0; i < tp->n_pend; i++)
			bytes += tp->pend_bytes[i];
	}
	t->st.backlog_segments = segs;
	t->st.backlog_bytes = bytes;
	struct tier_stats st = t->st;
	char err[sizeof t->last_err];
	snprintf(err, sizeof err, "%s", t->last_err);
	bool report = false, cleared = false;
	if (segs > 1 && now_ms - t->last_backlog_log_ms >= TIER_BACKLOG_LOG_MS) {
		report = true;
		t->last_backlog_log_ms = now_ms;
		t->backlog_reported = true;
	} else if (segs == 0 && t->backlog_reported) {
		cleared = true;
		t->backlog_reported = false;
		t->last_err[0] = 0;
	}
	pthread_mutex_unlock(&t->lock);
	publish_metrics(t, &st, parts, remote_segs);
	if (report)
		slog_warn("tier", "upload backlog: %" PRId64 " segment(s), %" PRId64 " bytes in %d "
			  "partition(s)%s%s", segs, bytes, parts, err[0] ? "; last error: " : "", err);
	if (cleared)
		slog_info("tier", "upload backlog cleared");
}

void tier_get_stats(struct tier *t, struct tier_stats *out)
{
	pthread_mutex_lock(&t->lock);
	*out = t->st;
	pthread_mutex_unlock(&t->lock);
	struct rcache_stats rs;
	rcache_get_stats(t->rc, &rs);
	out->cache_hits = rs.hits;
	out->cache_misses = rs.misses;
	out->downloads = rs.downloads;
	out->download_bytes = rs.download_bytes;
	out->corrupt_objects = rs.corrupt;
}
