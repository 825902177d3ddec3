/* broker.c -- topics and their partitions' logs, topic metadata files, cluster identity.
 * Persists under log.dirs: meta.properties (cluster id), __strata/<topic>.topic (id, partition
 * count, settings), and <topic>-<n>/ partition directories owned by the log engine.
 * Does not speak the wire protocol and does not decide anything about clients.
 *
 * Threads: everything runs on the reactor except the topic worker (one thread), which does the
 * blocking part of creating, growing, reconfiguring and deleting topics (and reading the bucket
 * for a restore). A job is built on the reactor (name reserved, settings and the broker config
 * copied), touched only by the worker while queued or running, and finished on the reactor
 * after the worker posts it to the done list and kicks an eventfd read on the ring. The worker
 * touches no reactor state: it opens logs (log_open touches no ring), pstate and tier parts
 * (tier.c locks) for partitions nobody else sees yet, and writes or removes files of names
 * the reactor reserved for it.
 *
 * Test hook: with STRATA_TEST_TOPIC_GATE=<path> in the environment, the worker waits before
 * each job while <path> exists (so tests can hold an operation in flight). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strata/broker.h"
#include "strata/common.h"
#include "strata/kerr.h"
#include "strata/pstate.h"
#include "strata/slog.h"
#include "strata/rwarm.h"
#include "strata/fsutil.h"
#include "../tier/tier.h"

#define META_SUBDIR "__strata"
#define JOBS_BUCKETS 256
#define TOPIC_META_MAX_BYTES 16384
#define BROKER_RWARM_THREADS 2 /* closed-segment warm-ups: disk reads, hardly any CPU */

enum job_kind { JOB_CREATE = 1, JOB_ADD_PARTITIONS, JOB_DELETE, JOB_CONFIG };

/* One topic operation. Reactor-only fields: hash_next, waiters, target. While queued or running
 * the worker owns the rest; the reactor reads them again only once the job is done. */
struct topic_job {
	struct topic_job *next;         /* queue, then done list (under jobs->lock) */
	struct topic_job *hash_next;    /* reserved names (create, delete) */
	struct broker_waiter *waiters;
	struct topic *target;           /* add partitions: the topic that grows */
	enum job_kind kind;
	bool cancelled;                 /* under jobs->lock */
	bool ran;                       /* under jobs->lock: the worker is done with it */
	/* under jobs->lock, config: an earlier change of the topic's settings, which this one
	 * builds on, failed (kerr and why say so; set while queued) */
	bool dep_failed;
	char name[BROKER_TOPIC_NAME_MAX + 1];
	/* create: the topic being built (inserted when done); add: a scratch copy of the target's
	 * name, id and settings; config: the same with the new settings; delete: NULL */
	struct topic *t;
	struct cfg bconf;               /* the broker settings when queued (a reload may change them) */
	bool have_bconf;
	int32_t from, to;               /* partitions to open (delete: directories to remove: [0, to)) */
	bool recovery;
	/* results */
	int kerr;
	char why[1024];
	struct partition **parts;       /* [from, to), opened by the worker */
};

struct broker_jobs {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool thread_started, stop, refuse;
	struct topic_job *q_head, *q_tail;       /* queued (lock) */
	struct topic_job *running;               /* taken by the worker (lock) */
	struct topic_job *done_head, *done_tail; /* finished by the worker (lock) */
	char gate[PATH_MAX];                     /* test hook */
	/* reactor side */
	struct topic_job *names[JOBS_BUCKETS];   /* reserved names */
	uint32_t n_jobs;                         /* accepted and not finished */
	int efd;
	uint64_t efd_val;
	struct uring_op efd_op;
	bool efd_armed, finishing;
	bool orphaned;                           /* b is gone, the read never completed: leaked */
	struct broker *owner;
};

static int jobs_open(struct broker *b, char *why, size_t why_len);
static void jobs_close(struct broker *b);

static uint32_t name_hash(const char *s, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h;
}

static void b64url(const uint8_t *in, size_t n, char *out, size_t out_len)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0;
	for (size_t i = 0; i < n && o + 4 < out_len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n) v |= in[i + 2];
		out[o++] = tab[(v >> 18) & 63];
		out[o++] = tab[(v >> 12) & 63];
		if (i + 1 < n) out[o++] = tab[(v >> 6) & 63];
		if (i + 2 < n) out[o++] = tab[v & 63];
	}
	out[o] = 0;
}

static int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/* Writes path atomically: temp file, fsync, rename, fsync of the directory. */
static int write_file_atomic(const char *dir, const char *name, const char *data, size_t len)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path ||
	    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name) >= (int)sizeof tmp)
		return -ENAMETOOLONG;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			int e = -errno;
			close(fd);
			unlink(tmp);
			return e;
		}
		off += (size_t)w;
	}
	if (fsync(fd) < 0) {
		int e = -errno;
		close(fd);
		unlink(tmp);
		return e;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		int e = -errno;
		unlink(tmp);
		return e;
	}
	return fsync_dir(dir);
}

/* Removes a partition directory: its files, then itself (the log engine keeps no
 * subdirectories). Returns 0 or the first -errno. */
static int remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT && rc == 0)
			rc = -errno;
	}
	closedir(d);
	if (rmdir(dir) < 0 && errno != ENOENT && rc == 0)
		rc = -errno;
	return rc;
}

int broker_validate_topic_name(const char *name, size_t len, char *why, size_t why_len)
{
	if (len == 0) {
		snprintf(why, why_len, "topic name is empty");
		return -EINVAL;
	}
	if (len > BROKER_TOPIC_NAME_MAX) {
		snprintf(why, why_len, "topic name is %zu characters, the limit is %d", len,
			 BROKER_TOPIC_NAME_MAX);
		return -EINVAL;
	}
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.')) {
		snprintf(why, why_len, "topic name cannot be '.' or '..'");
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-')) {
			snprintf(why, why_len,
				 "topic name '%.*s' has an illegal character at %zu: only ASCII "
				 "alphanumerics, '.', '_' and '-' are allowed",
				 (int)ST_MIN(len, 64), name, i);
			return -EINVAL;
		}
	}
	return 0;
}

/* The log settings of a topic with settings tc (NULL: none) over broker settings bc. Pure:
 * the worker calls it with its copy of the broker settings. */
static void log_config_for(const struct cfg *bc, bool tiered, const struct cfg *tc, bool internal,
			   struct log_config *out)
{
	log_config_defaults(out);
	out->segment_bytes = cfg_topic_int(tc, bc, TC_SEGMENT_BYTES);
	out->segment_ms = cfg_topic_int(tc, bc, TC_SEGMENT_MS);
	out->segment_index_bytes = cfg_topic_int(tc, bc, TC_SEGMENT_INDEX_BYTES);
	out->retention_ms = cfg_topic_int(tc, bc, TC_RETENTION_MS);
	out->retention_bytes = cfg_topic_int(tc, bc, TC_RETENTION_BYTES);
	out->flush_messages = cfg_topic_int(tc, bc, TC_FLUSH_MESSAGES);
	out->flush_ms = cfg_topic_int(tc, bc, TC_FLUSH_MS);
	out->max_message_bytes = (int32_t)cfg_topic_int(tc, bc, TC_MAX_MESSAGE_BYTES);
	out->index_interval_bytes = (int32_t)cfg_topic_int(tc, bc, TC_INDEX_INTERVAL_BYTES);
	out->timestamp_before_max_ms = cfg_topic_int(tc, bc, TC_TIMESTAMP_BEFORE_MAX_MS);
	out->timestamp_after_max_ms = cfg_topic_int(tc, bc, TC_TIMESTAMP_AFTER_MAX_MS);
	const char *ts = cfg_topic_str(tc, bc, TC_MESSAGE_TIMESTAMP_TYPE);
	out->log_append_time = ts && strcmp(ts, "LogAppendTime") == 0;
	/* Tiered: the local log keeps local.retention.*; the bucket keeps the total (tier.c). */
	if (tiered && tc && !internal && cfg_bool(tc, TC_REMOTE_STORAGE_ENABLE))
		tier_local_retention(tc, bc, &out->retention_ms, &out->retention_bytes);
}

void broker_log_config(const struct broker *b, const struct topic *t, struct log_config *out)
{
	log_config_for(b->conf, b->tier != NULL, t ? &t->cfg : NULL, t && t->internal, out);
}

/* What a partition of a topic is opened with. */
struct part_params {
	struct log_config lc;
	struct tier_part_config tpc;
	int64_t pid_expiration_ms;
};

static void part_params_for(const struct cfg *bc, bool tiered, const struct topic *t,
			    struct part_params *pp)
{
	log_config_for(bc, tiered, &t->cfg, t->internal, &pp->lc);
	tier_part_config_from(&t->cfg, bc, &pp->tpc);
	pp->pid_expiration_ms = cfg_int(bc, BC_PRODUCER_ID_EXPIRATION_MS);
}

/* --- tiering glue (tier/tier.h) --- */
static void hook_segment_closed(void *ctx, struct log *l, const struct log_segment_info *info)
{
	struct partition *p = ctx;
	(void)l;
	if (p->tier)
		tier_part_segment_closed(p->tier, info);
}

static bool hook_segment_deletable(void *ctx, struct log *l, int64_t base_offset)
{
	struct partition *p = ctx;
	(void)l;
	return !p->tier || tier_part_deletable(p->tier, base_offset);
}

/* The topic's settings (and the broker's) in force on its partitions' logs and tier parts. */
static void topic_apply_config(struct broker *b, struct topic *t)
{
	struct log_config lc;
	broker_log_config(b, t, &lc);
	struct tier_part_config tpc;
	tier_part_config_from(&t->cfg, b->conf, &tpc);
	for (int32_t i = 0; i < t->n_partitions; i++) {
		log_set_config(t->parts[i]->log, &lc);
		if (t->parts[i]->tier)
			tier_part_set_config(t->parts[i]->tier, &tpc);
	}
}

/* The topic manifest in the bucket follows the topic's settings and partition count. */
static void tier_topic_sync(struct broker *b, const struct topic *t, int32_t n_partitions)
{
	if (!b->tier || t->internal)
		return;
	char text[8192], num[32];
	size_t n = 0;
	text[0] = 0;
	for (size_t i = 0; i < t->cfg.schema->n_defs && n < sizeof text; i++) {
		if (!t->cfg.vals[i].set)
			continue;
		const char *v = cfg_text(&t->cfg, (int)i, num, sizeof num);
		n += (size_t)snprintf(text + n, sizeof text - n, "%s=%s\n", t->cfg.schema->defs[i].name,
				      v ? v : "");
	}
	if (n < sizeof text)
		tier_topic_update(b->tier, t->name, t->id, n_partitions, text);
}

static void tier_wake(void *ctx, const char *topic, int32_t partition);

int64_t broker_partition_start_offset(struct partition *p)
{
	int64_t ls = log_start_offset(p->log);
	if (p->tier) {
		int64_t rs = tier_part_start_offset(p->tier);
		if (rs >= 0 && rs < ls)
			return rs;
	}
	return ls;
}

int broker_delete_records(struct partition *p, int64_t new_start)
{
	int err = log_delete_records(p->log, new_start);
	if (err == KERR_NONE && p->tier)
		tier_part_delete_records(p->tier, new_start);
	return err;
}

static void hook_hw_advanced(void *ctx, struct log *l)
{
	(void)l;
	broker_wake_partition(ctx);
}

/* --- closed-segment reads off the reactor (rwarm.h) --- */
static bool hook_read_warm(void *ctx, struct log *l, const char *path_stem, int64_t base_offset,
			   int64_t offset, int64_t max_bytes)
{
	struct partition *p = ctx;
	(void)l;
	return p->rwarm && rwarm_submit(p->rwarm, p->topic->name, p->id, path_stem, base_offset,
					offset, max_bytes);
}

/* On the reactor: the segment's pages are in; the fetches parked on it look again. Found by
 * name: the topic may have been deleted (or re-created) meanwhile. */
static void rwarm_done(void *ctx, const char *topic, int32_t partition, int64_t base_offset)
{
	struct broker *b = ctx;
	struct partition *p = broker_find_partition(b, topic, strlen(topic), partition);
	if (!p)
		return;
	log_warm_done(p->log, base_offset);
	broker_wake_partition(p);
}

void partition_waiter_add(struct partition *p, struct partition_waiter *w)
{
	w->next = &p->waiters;
	w->prev = p->waiters.prev;
	p->waiters.prev->next = w;
	p->waiters.prev = w;
}

void partition_waiter_remove(struct partition_waiter *w)
{
	if (!w->next)
		return;
	w->prev->next = w->next;
	w->next->prev = w->prev;
	w->next = w->prev = NULL;
}

void broker_wake_partition(struct partition *p)
{
	/* Wakers remove themselves (and may remove others of the same fetch): restart from the
	 * head after each wake. Bounded by the number of waiters, each removed when woken. */
	while (p->waiters.next != &p->waiters) {
		struct partition_waiter *w = p->waiters.next;
		partition_waiter_remove(w);
		w->wake(w);
	}
}

/* Opens partition id of t with pp. fresh: a new partition (create, add, restore): a directory
 * left by a topic of that name deleted before a crash is removed first, and the log starts
 * at initial_offset; remote_start >= 0 (restore) is recorded as the partition's remote start.
 * Reads of t: name, id, internal only (the worker calls this for topics nobody else sees). */
static int partition_open(struct broker *b, struct topic *t, int32_t id, const struct part_params *pp,
			  bool fresh, int64_t initial_offset, int64_t remote_start,
			  struct partition **out)
{
	struct partition *p = calloc(1, sizeof *p);
	if (!p)
		return -ENOMEM;
	p->topic = t;
	p->id = id;
	p->waiters.next = p->waiters.prev = &p->waiters;
	char dir[PATH_MAX];
	if (snprintf(dir, sizeof dir, "%s/%s-%d", b->log_dir, t->name, id) >= (int)sizeof dir) {
		free(p);
		return -ENAMETOOLONG;
	}
	struct stat st;
	if (fresh && stat(dir, &st) == 0) {
		slog_warn("broker", "topic=%s partition=%d: removing the leftover directory %s (a topic "
			  "of that name deleted before a crash)", t->name, id, dir);
		int rrc = remove_dir(dir);
		if (rrc < 0) {
			slog_error("broker", "topic=%s partition=%d: cannot remove %s: %s", t->name, id, dir,
				   strerror(-rrc));
			free(p);
			return rrc;
		}
	}
	p->rwarm = b->rwarm;
	struct log_hooks hooks = { .ctx = p, .hw_advanced = hook_hw_advanced,
				   .segment_closed = hook_segment_closed,
				   .segment_deletable = hook_segment_deletable,
				   .read_warm = hook_read_warm };
	int rc = log_open_at(b->ur, dir, fresh ? initial_offset : 0, &pp->lc, &hooks, &p->log);
	if (rc < 0) {
		slog_error("broker", "topic=%s partition=%d: cannot open log %s: %s", t->name, id, dir,
			   strerror(-rc));
		free(p);
		return rc;
	}
	/* Idempotent producers' state: newest snapshot plus a scan of the log after it. */
	struct pstate_config pc;
	pstate_config_defaults(&pc);
	pc.expiration_ms = pp->pid_expiration_ms;
	p->pstate = pstate_create(dir, &pc);
	if (!p->pstate) {
		log_forget(p->log);
		free(p);
		return -ENOMEM;
	}
	if (b->tier && !t->internal) {
		if (fresh && remote_start >= 0 &&
		    (rc = tier_save_remote_range(dir, remote_start, initial_offset)) < 0)
			slog_warn("broker", "topic=%s partition=%d: cannot record the remote start: %s "
				  "(reported once the manifest is loaded)", t->name, id, strerror(-rc));
		rc = tier_part_open(b->tier, t->name, t->id, id, dir, &pp->tpc, &p->tier);
		if (rc < 0) {
			slog_error("broker", "topic=%s partition=%d: cannot set up tiering: %s", t->name,
				   id, strerror(-rc));
			pstate_free(p->pstate);
			log_forget(p->log);
			free(p);
			return rc;
		}
	}
	rc = pstate_recover(p->pstate, p->log, st_now_ms());
	if (rc < 0)
		slog_warn("broker", "topic=%s partition=%d: producer state only partly rebuilt: %s "
			  "(retries of older batches may be written twice)", t->name, id, strerror(-rc));
	/* Kafka's partition.metadata, so Kafka's tools see the topic id. */
	char idtxt[32], meta[96];
	b64url(t->id, 16, idtxt, sizeof idtxt);
	int n = snprintf(meta, sizeof meta, "version: 0\ntopic_id: %s\n", idtxt);
	char mpath[PATH_MAX + 32];
	snprintf(mpath, sizeof mpath, "%s/partition.metadata", dir);
	if (stat(mpath, &st) < 0)
		write_file_atomic(dir, "partition.metadata", meta, (size_t)n);
	*out = p;
	return 0;
}

/* Undoes partition_open of a partition nobody used (a creation that failed): its directory
 * goes too. Touches no ring: the worker calls it. */
static void partition_discard(struct partition *p)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", log_dir(p->log));
	tier_part_close(p->tier, false);
	pstate_free(p->pstate);
	log_forget(p->log);
	free(p);
	int rc = remove_dir(dir);
	if (rc < 0)
		slog_warn("broker", "cannot remove %s: %s", dir, strerror(-rc));
}

static void partition_free(struct partition *p, bool destroy)
{
	if (!p)
		return;
	while (p->waiters.next != &p->waiters) {
		struct partition_waiter *w = p->waiters.next;
		partition_waiter_remove(w);
		w->wake(w);
	}
	tier_part_close(p->tier, destroy); /* destroy: remote data too (per broker setting) */
	p->tier = NULL;
	if (p->log) {
		int64_t leo = log_end_offset(p->log);
		/* destroy: the topic worker removes the files (job_delete) */
		int rc = destroy ? log_forget(p->log) : log_close(p->log);
		if (rc < 0)
			slog_error("broker", "topic=%s partition=%d: %s failed: %s", p->topic->name, p->id,
				   destroy ? "delete" : "close", strerror(-rc));
		/* After the log's own fsyncs: the snapshot never claims more than is on disk. */
		if (p->pstate && !destroy && rc == 0)
			pstate_snapshot(p->pstate, leo, true);
	}
	pstate_free(p->pstate); /* after the log: destroying it may still finish appends */
	free(p);
}

static void topic_free(struct topic *t, bool destroy)
{
	for (int32_t i = 0; i < t->n_partitions; i++)
		partition_free(t->parts[i], destroy);
	free(t->parts);
	cfg_free(&t->cfg);
	free(t);
}

/* Writes t's metadata file with n_partitions. Touches only that file: the worker calls it for
 * names the reactor reserved for it. */
static int topic_meta_write(struct broker *b, const struct topic *t, int32_t n_partitions)
{
	char buf[TOPIC_META_MAX_BYTES], idtxt[40], fname[BROKER_TOPIC_NAME_MAX + 8], num[32];
	size_t n = 0;
	for (int i = 0; i < 16; i++)
		snprintf(idtxt + 2 * i, 3, "%02x", t->id[i]);
	n += (size_t)snprintf(buf + n, sizeof buf - n,
			      "# strata topic metadata, written atomically; do not edit while stratad runs\n"
			      "topic.id=%s\npartitions=%d\n", idtxt, n_partitions);
	for (size_t i = 0; i < t->cfg.schema->n_defs && n < sizeof buf; i++) {
		if (!t->cfg.vals[i].set)
			continue;
		const char *v = cfg_text(&t->cfg, (int)i, num, sizeof num);
		n += (size_t)snprintf(buf + n, sizeof buf - n, "config.%s=%s\n",
				      t->cfg.schema->defs[i].name, v ? v : "");
	}
	if (n >= sizeof buf)
		return -E2BIG;
	snprintf(fname, sizeof fname, "%s.topic", t->name);
	return write_file_atomic(b->meta_dir, fname, buf, n);
}

static void topic_meta_remove(struct broker *b, const char *name)
{
	char mpath[PATH_MAX + BROKER_TOPIC_NAME_MAX + 16];
	snprintf(mpath, sizeof mpath, "%s/%s.topic", b->meta_dir, name);
	unlink(mpath);
}

int broker_write_meta_file(struct broker *b, const char *name, const char *data, size_t len)
{
	return write_file_atomic(b->meta_dir, name, data, len);
}

static void topic_insert(struct broker *b, struct topic *t)
{
	uint32_t h = name_hash(t->name, strlen(t->name)) % b->n_buckets;
	t->hash_next = b->buckets[h];
	b->buckets[h] = t;
	b->n_topics++;
}

static void topic_unlink(struct broker *b, struct topic *t)
{
	uint32_t h = name_hash(t->name, strlen(t->name)) % b->n_buckets;
	for (struct topic **pp = &b->buckets[h]; *pp; pp = &(*pp)->hash_next) {
		if (*pp == t) {
			*pp = t->hash_next;
			b->n_topics--;
			return;
		}
	}
}

struct topic *broker_find_topic(struct broker *b, const char *name, size_t len)
{
	uint32_t h = name_hash(name, len) % b->n_buckets;
	for (struct topic *t = b->buckets[h]; t; t = t->hash_next)
		if (strlen(t->name) == len && memcmp(t->name, name, len) == 0)
			return t;
	return NULL;
}

struct topic *broker_find_topic_id(struct broker *b, const uint8_t id[16])
{
	/* Linear: topic-id lookups are rare (Metadata v10+ by id, DeleteTopics v6). */
	for (uint32_t i = 0; i < b->n_buckets; i++)
		for (struct topic *t = b->buckets[i]; t; t = t->hash_next)
			if (memcmp(t->id, id, 16) == 0)
				return t;
	return NULL;
}

struct partition *broker_find_partition(struct broker *b, const char *name, size_t len, int32_t id)
{
	struct topic *t = broker_find_topic(b, name, len);
	if (!t || id < 0 || id >= t->n_partitions)
		return NULL;
	return t->parts[id];
}

void broker_foreach_topic(struct broker *b, void (*fn)(void *ctx, struct topic *t), void *ctx)
{
	for (uint32_t i = 0; i < b->n_buckets; i++)
		for (struct topic *t = b->buckets[i], *next; t; t = next) {
			next = t->hash_next;
			fn(ctx, t);
		}
}

/* Startup: opens a loaded topic's partitions (existing directories, recovered). */
static int topic_open_partitions(struct broker *b, struct topic *t, int32_t n)
{
	struct partition **np = calloc((size_t)n, sizeof *np);
	if (!np)
		return -ENOMEM;
	t->parts = np;
	struct part_params pp;
	part_params_for(b->conf, b->tier != NULL, t, &pp);
	for (int32_t i = 0; i < n; i++) {
		int rc = partition_open(b, t, i, &pp, false, 0, -1, &t->parts[i]);
		if (rc < 0) {
			for (int32_t j = 0; j < i; j++)
				partition_free(t->parts[j], false);
			return rc;
		}
	}
	t->n_partitions = n;
	return 0;
}

static int topic_load(struct broker *b, const char *file)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s/%s", b->meta_dir, file) >= (int)sizeof path)
		return -ENAMETOOLONG;
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	struct topic *t = calloc(1, sizeof *t);
	if (!t || cfg_init(&t->cfg, &cfg_topic_schema) < 0) {
		fclose(f);
		free(t);
		return -ENOMEM;
	}
	size_t nlen = strlen(file) - strlen(".topic");
	if (nlen > BROKER_TOPIC_NAME_MAX)
		nlen = BROKER_TOPIC_NAME_MAX;
	memcpy(t->name, file, nlen);
	t->name[nlen] = 0;
	char line[4096], why[512];
	int32_t parts = 0;
	int rc = 0, lineno = 0;
	while (fgets(line, sizeof line, f)) {
		lineno++;
		line[strcspn(line, "\n")] = 0;
		if (!line[0] || line[0] == '#')
			continue;
		if (strncmp(line, "topic.id=", 9) == 0 && strlen(line + 9) == 32) {
			for (int i = 0; i < 16; i++) {
				unsigned v;
				if (sscanf(line + 9 + 2 * i, "%2x", &v) != 1)
					rc = -EINVAL;
				t->id[i] = (uint8_t)v;
			}
		} else if (strncmp(line, "partitions=", 11) == 0) {
			parts = (int32_t)strtol(line + 11, NULL, 10);
		} else if (strncmp(line, "config.", 7) == 0) {
			if (cfg_set_kv(&t->cfg, line + 7, why, sizeof why) < 0) {
				slog_error("broker", "%s:%d: %s", path, lineno, why);
				rc = -EINVAL;
			}
		} else {
			slog_error("broker", "%s:%d: unknown line", path, lineno);
			rc = -EINVAL;
		}
	}
	fclose(f);
	if (rc == 0 && (parts < 1 || parts > 1000000)) {
		slog_error("broker", "%s: bad partition count %d", path, parts);
		rc = -EINVAL;
	}
	t->internal = t->name[0] == '_' && t->name[1] == '_';
	if (rc == 0)
		rc = topic_open_partitions(b, t, parts);
	if (rc < 0) {
		cfg_free(&t->cfg);
		free(t->parts);
		free(t);
		return rc;
	}
	topic_insert(b, t);
	tier_topic_sync(b, t, t->n_partitions);
	slog_info("broker", "topic=%s partitions=%d loaded", t->name, t->n_partitions);
	return 0;
}

static int load_cluster_id(struct broker *b)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/meta.properties", b->log_dir);
	FILE *f = fopen(path, "r");
	if (f) {
		char line[256];
		while (fgets(line, sizeof line, f)) {
			line[strcspn(line, "\r\n")] = 0;
			size_t idl = strlen(line + 11);
			if (strncmp(line, "cluster.id=", 11) == 0 && idl < sizeof b->cluster_id)
				memcpy(b->cluster_id, line + 11, idl + 1);
		}
		fclose(f);
		if (b->cluster_id[0])
			return 0;
	}
	uint8_t raw[16];
	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		return -EIO;
	raw[6] = (raw[6] & 0x0f) | 0x40; /* UUID v4, as Kafka's Uuid.randomUuid */
	raw[8] = (raw[8] & 0x3f) | 0x80;
	b64url(raw, sizeof raw, b->cluster_id, sizeof b->cluster_id);
	char buf[256];
	int n = snprintf(buf, sizeof buf, "#\nversion=1\ncluster.id=%s\nnode.id=%d\n", b->cluster_id,
			 b->node_id);
	return write_file_atomic(b->log_dir, "meta.properties", buf, (size_t)n);
}

int broker_open(struct broker **out, struct uring *ur, struct cfg *conf, char *why, size_t why_len)
{
	struct broker *b = calloc(1, sizeof *b);
	if (!b)
		return -ENOMEM;
	b->ur = ur;
	b->conf = conf;
	b->lock_fd = -1;
	b->node_id = (int32_t)cfg_int(conf, BC_NODE_ID);
	b->n_buckets = 1024;
	b->buckets = calloc(b->n_buckets, sizeof *b->buckets);
	const char *dir = cfg_str(conf, BC_LOG_DIRS);
	int rc = -ENOMEM;
	if (!b->buckets)
		goto fail;
	if (!realpath(dir, b->log_dir)) {
		rc = st_mkdir_p(dir);
		if (rc < 0 || !realpath(dir, b->log_dir)) {
			rc = rc < 0 ? rc : -errno;
			snprintf(why, why_len, "log.dirs=%s: cannot create: %s", dir, strerror(-rc));
			goto fail;
		}
	}
	if (snprintf(b->meta_dir, sizeof b->meta_dir, "%s/" META_SUBDIR, b->log_dir) >=
	    (int)sizeof b->meta_dir) {
		rc = -ENAMETOOLONG;
		snprintf(why, why_len, "log.dirs=%s: path too long", dir);
		goto fail;
	}
	if ((rc = st_mkdir_p(b->meta_dir)) < 0) {
		snprintf(why, why_len, "cannot create %s: %s", b->meta_dir, strerror(-rc));
		goto fail;
	}
	char lock[PATH_MAX + 16];
	snprintf(lock, sizeof lock, "%s/.lock", b->log_dir);
	b->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (b->lock_fd < 0 || flock(b->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rc = -errno;
		snprintf(why, why_len, "log.dirs=%s is in use by another stratad (lock %s: %s)", dir,
			 lock, strerror(-rc));
		goto fail;
	}
	if ((rc = load_cluster_id(b)) < 0) {
		snprintf(why, why_len, "cannot read or write %s/meta.properties: %s", b->log_dir,
			 strerror(-rc));
		goto fail;
	}
	if ((rc = tier_open(conf, b->log_dir, ur, tier_wake, b, &b->tier, why, why_len)) < 0)
		goto fail;
	if ((rc = jobs_open(b, why, why_len)) < 0)
		goto fail;
	if ((rc = rwarm_open(ur, BROKER_RWARM_THREADS, rwarm_done, b, &b->rwarm)) < 0) {
		snprintf(why, why_len, "cannot start the read warm-up threads: %s", strerror(-rc));
		goto fail;
	}
	DIR *d = opendir(b->meta_dir);
	if (!d) {
		rc = -errno;
		snprintf(why, why_len, "cannot list %s: %s", b->meta_dir, strerror(-rc));
		goto fail;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		if (de->d_name[0] == '.') {
			/* a temp file left by a crash during an atomic write */
			if (n > 4 && strcmp(de->d_name + n - 4, ".tmp") == 0)
				unlinkat(dirfd(d), de->d_name, 0);
			continue;
		}
		if (n <= 6 || strcmp(de->d_name + n - 6, ".topic") != 0)
			continue;
		rc = topic_load(b, de->d_name);
		if (rc < 0) {
			snprintf(why, why_len, "cannot load topic metadata %s/%s: %s", b->meta_dir,
				 de->d_name, strerror(-rc));
			closedir(d);
			goto fail;
		}
	}
	closedir(d);
	slog_info("broker", "log.dirs=%s cluster.id=%s node.id=%d topics=%u", b->log_dir,
		  b->cluster_id, b->node_id, b->n_topics);
	*out = b;
	return 0;
fail:
	broker_close(b);
	return rc;
}

/* Partitions stop asking the warm-up pool before it goes: a read after this reads in place. */
static void unhook_rwarm_cb(void *ctx, struct topic *t)
{
	(void)ctx;
	for (int32_t i = 0; i < t->n_partitions; i++)
		if (t->parts[i])
			t->parts[i]->rwarm = NULL;
}

static void close_topic_cb(void *ctx, struct topic *t)
{
	struct broker *b = ctx;
	topic_unlink(b, t);
	topic_free(t, false);
}

int broker_close(struct broker *b)
{
	if (!b)
		return 0;
	/* First: operations under way end (a finished creation is inserted, then closed below). */
	jobs_close(b);
	if (b->buckets)
		broker_foreach_topic(b, unhook_rwarm_cb, NULL);
	rwarm_close(b->rwarm); /* its completions find the partitions still open */
	b->rwarm = NULL;
	if (b->buckets)
		broker_foreach_topic(b, close_topic_cb, b);
	tier_close(b->tier); /* after every partition let go of its tier state */
	free(b->buckets);
	if (b->lock_fd >= 0)
		close(b->lock_fd);
	free(b);
	return 0;
}

/* --- topic jobs: the blocking part of topic lifecycle, on the topic worker ----------------------- */

static struct topic *topic_new(const char *name, size_t len, const struct cfg *tc)
{
	struct topic *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	memcpy(t->name, name, len);
	t->name[len] = 0;
	if ((tc ? cfg_copy(&t->cfg, tc) : cfg_init(&t->cfg, &cfg_topic_schema)) < 0) {
		free(t);
		return NULL;
	}
	t->internal = len >= 2 && name[0] == '_' && name[1] == '_';
	return t;
}

/* A topic that never got (or no longer has) partitions of its own. */
static void topic_shell_free(struct topic *t)
{
	if (!t)
		return;
	cfg_free(&t->cfg);
	free(t->parts);
	free(t);
}

static void job_free(struct topic_job *j)
{
	topic_shell_free(j->t);
	if (j->have_bconf)
		cfg_free(&j->bconf);
	free(j->parts);
	free(j);
}

static void kick_efd(int efd)
{
	uint64_t one = 1;
	ssize_t w = write(efd, &one, sizeof one);
	(void)w; /* EAGAIN: the counter is already non-zero, the reactor will look */
}

/* Worker: opens partitions [j->from, j->to) of t; restore offsets from ti (or NULL). On an
 * error every partition opened here is discarded again. */
static int job_open_parts(struct broker *b, struct topic_job *j, struct topic *t,
			  const struct part_params *pp, const struct tier_topic_info *ti)
{
	int32_t n = j->to - j->from;
	j->parts = calloc((size_t)n, sizeof *j->parts);
	if (!j->parts)
		return -ENOMEM;
	for (int32_t i = 0; i < n; i++) {
		int32_t id = j->from + i;
		int64_t init = ti ? ti->remote_end[id] : 0, rstart = ti ? ti->remote_start[id] : -1;
		int rc = partition_open(b, t, id, pp, true, init, rstart, &j->parts[i]);
		if (rc < 0) {
			for (int32_t k = 0; k < i; k++)
				partition_discard(j->parts[k]);
			free(j->parts);
			j->parts = NULL;
			return rc;
		}
	}
	return 0;
}

/* Worker, restore: the bucket's settings, then the request's on top; checked over the broker's. */
static int restore_settings(struct topic *t, const char *text, const struct cfg *bc, char *why,
			    size_t why_len)
{
	struct cfg nc;
	if (cfg_init(&nc, &cfg_topic_schema) < 0) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	const char *p = text ? text : "";
	char line[4096], w[512], num[32];
	for (int guard = 0; *p && guard < 100000; guard++) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		if (n > 0 && n < sizeof line) {
			memcpy(line, p, n);
			line[n] = 0;
			/* A key this version does not know (a newer broker wrote it) is left out. */
			if (cfg_set_kv(&nc, line, w, sizeof w) < 0)
				slog_warn("broker", "topic=%s: bucket setting '%.200s' not restored: %s",
					  t->name, line, w);
		}
		p += n + (nl ? 1 : 0);
	}
	for (size_t i = 0; i < cfg_topic_schema.n_defs; i++) {
		if (!t->cfg.vals[i].set)
			continue;
		const char *v = cfg_text(&t->cfg, (int)i, num, sizeof num);
		if (cfg_set(&nc, cfg_topic_schema.defs[i].name, v ? v : "", why, why_len) < 0) {
			cfg_free(&nc);
			return -EINVAL;
		}
	}
	if (cfg_check_topic(&nc, bc, why, why_len) < 0) {
		cfg_free(&nc);
		return -EINVAL;
	}
	cfg_free(&t->cfg);
	t->cfg = nc;
	return 0;
}

static void job_create(struct broker *b, struct topic_job *j)
{
	struct topic *t = j->t;
	struct tier_topic_info ti;
	memset(&ti, 0, sizeof ti);
	int rc;
	if (j->recovery) {
		rc = tier_read_topic(b->tier, t->name, &ti, j->why, sizeof j->why);
		if (rc < 0) {
			j->kerr = rc == -ENOENT ? KERR_UNKNOWN_TOPIC_OR_PARTITION : KERR_KAFKA_STORAGE_ERROR;
			return;
		}
		if (j->to > 0 && j->to != ti.partitions) {
			snprintf(j->why, sizeof j->why, "The bucket's topic manifest of '%s' has %d "
				 "partitions; a restore takes -1 or that count, not %d.", t->name,
				 ti.partitions, j->to);
			j->kerr = KERR_INVALID_PARTITIONS;
			goto out;
		}
		j->to = ti.partitions;
		memcpy(t->id, ti.topic_id, 16);
		if (restore_settings(t, ti.config, &j->bconf, j->why, sizeof j->why) < 0) {
			j->kerr = KERR_INVALID_CONFIG;
			goto out;
		}
	}
	struct part_params pp;
	part_params_for(&j->bconf, b->tier != NULL, t, &pp);
	/* A new topic: metadata first; a crash after it leaves a topic whose empty partition dirs
	 * are created at the next start. A restore: partitions first, since only this run knows
	 * where each local log starts; a crash before the metadata leaves directories that the
	 * next creation of that name removes. */
	if (!j->recovery && (rc = topic_meta_write(b, t, j->to)) < 0)
		goto fail;
	if ((rc = job_open_parts(b, j, t, &pp, j->recovery ? &ti : NULL)) < 0) {
		if (!j->recovery)
			topic_meta_remove(b, t->name);
		goto fail;
	}
	if (j->recovery && (rc = topic_meta_write(b, t, j->to)) < 0) {
		for (int32_t i = 0; i < j->to; i++)
			partition_discard(j->parts[i]);
		free(j->parts);
		j->parts = NULL;
		goto fail;
	}
	j->kerr = KERR_NONE;
	goto out;
fail:
	snprintf(j->why, sizeof j->why, "cannot create topic %s: %s", t->name, strerror(-rc));
	j->kerr = KERR_KAFKA_STORAGE_ERROR;
out:
	tier_topic_info_free(&ti);
}

static void job_add(struct broker *b, struct topic_job *j)
{
	struct part_params pp;
	part_params_for(&j->bconf, b->tier != NULL, j->t, &pp);
	int rc = job_open_parts(b, j, j->t, &pp, NULL);
	if (rc < 0) {
		snprintf(j->why, sizeof j->why, "cannot create partitions: %s", strerror(-rc));
		j->kerr = KERR_KAFKA_STORAGE_ERROR;
		return;
	}
	if ((rc = topic_meta_write(b, j->t, j->to)) < 0) {
		snprintf(j->why, sizeof j->why, "cannot save topic metadata: %s", strerror(-rc));
		for (int32_t i = 0; i < j->to - j->from; i++)
			partition_discard(j->parts[i]);
		free(j->parts);
		j->parts = NULL;
		j->kerr = KERR_KAFKA_STORAGE_ERROR;
		return;
	}
	j->kerr = KERR_NONE;
}

static void job_delete(struct broker *b, struct topic_job *j)
{
	char mpath[PATH_MAX + BROKER_TOPIC_NAME_MAX + 16], dir[PATH_MAX];
	snprintf(mpath, sizeof mpath, "%s/%s.topic", b->meta_dir, j->name);
	/* Metadata goes first: after a crash mid-delete the topic is gone, never half there. */
	if (unlink(mpath) < 0 && errno != ENOENT) {
		snprintf(j->why, sizeof j->why, "cannot delete topic %s: %.500s: %s", j->name, mpath,
			 strerror(errno));
		j->kerr = KERR_KAFKA_STORAGE_ERROR;
		return;
	}
	fsync_dir(b->meta_dir);
	for (int32_t i = 0; i < j->to; i++) {
		if (snprintf(dir, sizeof dir, "%s/%s-%d", b->log_dir, j->name, i) >= (int)sizeof dir)
			continue;
		int rc = remove_dir(dir);
		if (rc < 0)
			slog_warn("broker", "topic=%s: cannot remove %s: %s (removed at the next "
				  "creation of that name)", j->name, dir, strerror(-rc));
	}
	j->kerr = KERR_NONE;
}

/* Worker: the new settings reach the metadata file (the old file stays when this fails, so the
 * old settings stay in force, on disk and on the reactor). */
static void job_config(struct broker *b, struct topic_job *j)
{
	int rc = topic_meta_write(b, j->t, j->to);
	if (rc < 0) {
		snprintf(j->why, sizeof j->why, "cannot save the settings of topic %s: %s", j->name,
			 strerror(-rc));
		slog_error("broker", "topic=%s: %s", j->name, j->why);
		j->kerr = KERR_UNKNOWN_SERVER_ERROR;
		return;
	}
	j->kerr = KERR_NONE;
}

static void job_run(struct broker *b, struct topic_job *j)
{
	switch (j->kind) {
	case JOB_CREATE: job_create(b, j); break;
	case JOB_ADD_PARTITIONS: job_add(b, j); break;
	case JOB_DELETE: job_delete(b, j); break;
	case JOB_CONFIG: job_config(b, j); break;
	}
}

/* Under J->lock: j, a change of settings that builds on failed (failed itself, or was built on
 * one that did), fails too instead of running. */
static void config_dep_fail(struct topic_job *j, const struct topic_job *failed)
{
	j->dep_failed = true;
	j->kerr = failed->kerr;
	snprintf(j->why, sizeof j->why, "not applied: an earlier change of the settings of topic %s, "
		 "which this one builds on, failed: %.400s", j->name, failed->why);
}

/* Under J->lock, worker: a change of settings failed: those of the same topic queued behind it
 * were built on it and fail too (same topic: same id; a name may be deleted and made again). */
static void config_fail_followers(struct broker_jobs *J, const struct topic_job *failed)
{
	for (struct topic_job *q = J->q_head; q; q = q->next)
		if (q->kind == JOB_CONFIG && !q->dep_failed && memcmp(q->t->id, failed->t->id, 16) == 0)
			config_dep_fail(q, failed);
}

/* Test hook: holds the job while the gate file exists. True when the job was cancelled. */
static bool gate_hold(struct broker_jobs *J, struct topic_job *j)
{
	struct stat st;
	for (;;) {
		if (!J->gate[0] || stat(J->gate, &st) < 0)
			return false;
		pthread_mutex_lock(&J->lock);
		bool cancelled = j->cancelled, stop = J->stop;
		pthread_mutex_unlock(&J->lock);
		if (cancelled || stop)
			return cancelled;
		usleep(10000);
	}
}

static void *topic_worker(void *arg)
{
	struct broker *b = arg;
	struct broker_jobs *J = b->jobs;
	pthread_mutex_lock(&J->lock);
	for (;;) {
		while (!J->q_head && !J->stop)
			pthread_cond_wait(&J->cond, &J->lock);
		struct topic_job *j = J->q_head;
		if (!j)
			break; /* stopping, nothing queued */
		J->q_head = j->next;
		if (!J->q_head)
			J->q_tail = NULL;
		j->next = NULL;
		J->running = j;
		bool cancelled = j->cancelled, dep_failed = j->dep_failed;
		pthread_mutex_unlock(&J->lock);
		if (!cancelled && !dep_failed)
			cancelled = gate_hold(J, j);
		if (dep_failed) {
			/* kerr and why were set with dep_failed */
		} else if (cancelled) {
			j->kerr = KERR_REQUEST_TIMED_OUT;
			snprintf(j->why, sizeof j->why, "not done: the broker is shutting down");
		} else {
			job_run(b, j);
		}
		pthread_mutex_lock(&J->lock);
		if (j->kind == JOB_CONFIG && j->kerr != KERR_NONE)
			config_fail_followers(J, j);
		j->ran = true;
		J->running = NULL;
		if (J->done_tail)
			J->done_tail->next = j;
		else
			J->done_head = j;
		J->done_tail = j;
		kick_efd(J->efd);
	}
	pthread_mutex_unlock(&J->lock);
	return NULL;
}

/* --- reactor side ---------------------------------------------------------------------------- */

static struct topic_job **job_slot(struct broker_jobs *J, const char *name, size_t len)
{
	return &J->names[name_hash(name, len) % JOBS_BUCKETS];
}

static struct topic_job *job_find(struct broker *b, const char *name, size_t len)
{
	for (struct topic_job *j = *job_slot(b->jobs, name, len); j; j = j->hash_next)
		if (strlen(j->name) == len && memcmp(j->name, name, len) == 0)
			return j;
	return NULL;
}

static void job_unhash(struct broker *b, struct topic_job *j)
{
	for (struct topic_job **pp = job_slot(b->jobs, j->name, strlen(j->name)); *pp;
	     pp = &(*pp)->hash_next)
		if (*pp == j) {
			*pp = j->hash_next;
			return;
		}
}

static void job_add_waiter(struct topic_job *j, struct broker_waiter *w)
{
	if (!w)
		return;
	w->next_ = j->waiters;
	j->waiters = w;
}

/* Admission: a Kafka error when no job can be taken now. */
static int job_admit(struct broker *b, char *why, size_t why_len)
{
	struct broker_jobs *J = b->jobs;
	if (J->refuse) {
		snprintf(why, why_len, "The broker is shutting down.");
		return KERR_REQUEST_TIMED_OUT;
	}
	if (J->n_jobs >= BROKER_JOBS_MAX) {
		snprintf(why, why_len, "%d topic operations are under way (the limit); retry later.",
			 BROKER_JOBS_MAX);
		return KERR_THROTTLING_QUOTA_EXCEEDED;
	}
	return KERR_NONE;
}

/* Admission of a job on existing topic t: none while partitions are being added to it (the
 * worker rewrites its metadata file then), else job_admit. */
static int job_admit_on(struct broker *b, const struct topic *t, char *why, size_t why_len)
{
	if (t->job) {
		snprintf(why, why_len, "Partitions are being added to topic %s; retry when done.",
			 t->name);
		return KERR_REASSIGNMENT_IN_PROGRESS;
	}
	return job_admit(b, why, why_len);
}

static void arm_efd(struct broker *b);

/* Reactor: the topic a change of settings was for, if it is still there (by name and id: it may
 * have been deleted, and even made again, meanwhile); it no longer waits for j. */
static struct topic *config_target_done(struct broker *b, struct topic_job *j)
{
	struct topic *t = broker_find_topic(b, j->name, strlen(j->name));
	if (!t || memcmp(t->id, j->t->id, 16) != 0)
		return NULL;
	if (t->cfg_job == j)
		t->cfg_job = NULL;
	return t;
}

/* Finishes j on the reactor: the topic goes in (or its partitions), waiters are told, j freed. */
static void job_finish(struct broker *b, struct topic_job *j)
{
	struct broker_jobs *J = b->jobs;
	ST_ASSERT(J->n_jobs > 0);
	J->n_jobs--;
	struct topic *res = NULL, *cfg_target = NULL;
	if (j->kind == JOB_ADD_PARTITIONS)
		j->target->job = NULL;
	else if (j->kind == JOB_CONFIG)
		cfg_target = config_target_done(b, j);
	else
		job_unhash(b, j);
	if (j->kerr == KERR_NONE) {
		switch (j->kind) {
		case JOB_CREATE: {
			struct topic *t = j->t;
			j->t = NULL;
			t->parts = j->parts;
			j->parts = NULL;
			t->n_partitions = j->to;
			topic_insert(b, t);
			tier_topic_sync(b, t, t->n_partitions);
			slog_info("broker", "topic=%s partitions=%d %s", t->name, t->n_partitions,
				  j->recovery ? "restored from the bucket" : "created");
			res = t;
			break;
		}
		case JOB_ADD_PARTITIONS: {
			struct topic *t = j->target;
			for (int32_t i = 0; i < j->to - j->from; i++) {
				j->parts[i]->topic = t;
				t->parts[j->from + i] = j->parts[i]; /* room reserved when queued */
			}
			t->n_partitions = j->to;
			tier_topic_sync(b, t, t->n_partitions);
			slog_info("broker", "topic=%s partitions %d -> %d", t->name, j->from, j->to);
			res = t;
			break;
		}
		case JOB_DELETE:
			slog_info("broker", "topic=%s deleted", j->name);
			break;
		case JOB_CONFIG: {
			struct topic *t = cfg_target;
			if (!t) {
				j->kerr = KERR_UNKNOWN_TOPIC_OR_PARTITION;
				snprintf(j->why, sizeof j->why, "Topic '%s' was deleted before its new "
					 "settings took effect.", j->name);
				break;
			}
			/* durable now: in force (the old settings go with j) */
			struct cfg old = t->cfg;
			t->cfg = j->t->cfg;
			j->t->cfg = old;
			topic_apply_config(b, t);
			tier_topic_sync(b, t, t->n_partitions);
			slog_info("broker", "topic=%s settings changed", t->name);
			res = t;
			break;
		}
		}
	} else if (j->kind == JOB_DELETE) {
		slog_error("broker", "topic=%s: %s", j->name, j->why);
	}
	/* A waiter may free the memory holding it (and the next one is someone else's). */
	for (struct broker_waiter *w = j->waiters, *next; w; w = next) {
		next = w->next_;
		w->done(w, j->kerr, res, j->kerr == KERR_NONE ? "" : j->why);
	}
	job_free(j);
}

static void jobs_finish_done(struct broker *b)
{
	struct broker_jobs *J = b->jobs;
	if (J->finishing)
		return; /* a waiter ran the ring: the outer loop takes what arrived meanwhile */
	J->finishing = true;
	for (;;) {
		pthread_mutex_lock(&J->lock);
		struct topic_job *j = J->done_head;
		J->done_head = J->done_tail = NULL;
		pthread_mutex_unlock(&J->lock);
		if (!j)
			break;
		while (j) {
			struct topic_job *next = j->next;
			job_finish(b, j);
			j = next;
		}
	}
	J->finishing = false;
}

static void on_jobs_efd(struct uring_op *op, int res, uint32_t flags)
{
	(void)flags;
	struct broker_jobs *J = ST_CONTAINER_OF(op, struct broker_jobs, efd_op);
	J->efd_armed = false;
	if (J->orphaned)
		return;
	struct broker *b = J->owner;
	if (res < 0 && res != -EAGAIN && res != -EINTR)
		slog_error("broker", "topic worker eventfd read failed: %s", strerror(-res));
	jobs_finish_done(b);
	if (J->n_jobs > 0 && !J->stop)
		arm_efd(b);
}

static void arm_efd(struct broker *b)
{
	struct broker_jobs *J = b->jobs;
	if (J->efd_armed)
		return;
	struct io_uring_sqe *sqe = uring_get_sqe(b->ur);
	io_uring_prep_read(sqe, J->efd, &J->efd_val, sizeof J->efd_val, 0);
	J->efd_op.cb = on_jobs_efd;
	uring_sqe_data(sqe, &J->efd_op);
	J->efd_armed = true;
	uring_submit(b->ur);
}

/* Queues j for the worker. base: the change of settings j builds on, or NULL. */
static void job_enqueue(struct broker *b, struct topic_job *j, const struct topic_job *base)
{
	struct broker_jobs *J = b->jobs;
	pthread_mutex_lock(&J->lock);
	/* A base still queued or running: the worker fails j if base fails (config_fail_followers). */
	if (base && base->ran && base->kerr != KERR_NONE)
		config_dep_fail(j, base);
	if (J->q_tail)
		J->q_tail->next = j;
	else
		J->q_head = j;
	J->q_tail = j;
	pthread_cond_signal(&J->cond);
	pthread_mutex_unlock(&J->lock);
	arm_efd(b);
}

/* The end of an *_async call: j, built and reserved when err is KERR_NONE, goes to the worker
 * with w; else err (j was not built). base: as job_enqueue. */
static int job_submit(struct broker *b, int err, struct topic_job *j, const struct topic_job *base,
		      struct broker_waiter *w)
{
	if (err != KERR_NONE)
		return err;
	job_add_waiter(j, w);
	job_enqueue(b, j, base);
	return KERR_NONE;
}

/* The synchronous path (startup, tests): the job runs here. */
struct sync_wait {
	struct broker_waiter w;
	struct topic *t;
	int kerr;
	bool done;
	char why[1024];
};

static void sync_done(struct broker_waiter *w, int kerr, struct topic *t, const char *why)
{
	struct sync_wait *s = ST_CONTAINER_OF(w, struct sync_wait, w);
	s->t = t;
	s->kerr = kerr;
	snprintf(s->why, sizeof s->why, "%s", why);
	s->done = true;
}

/* Runs j (built and reserved) here and finishes it: its Kafka error, with why when not
 * KERR_NONE, else the topic in *out (may be NULL). */
static int job_run_here(struct broker *b, struct topic_job *j, struct topic **out, char *why,
			size_t why_len)
{
	struct sync_wait sw = { .w.done = sync_done };
	job_add_waiter(j, &sw.w);
	job_run(b, j);
	job_finish(b, j);
	ST_ASSERT(sw.done);
	if (sw.kerr != KERR_NONE)
		snprintf(why, why_len, "%s", sw.why);
	else if (out)
		*out = sw.t;
	return sw.kerr;
}

static int jobs_open(struct broker *b, char *why, size_t why_len)
{
	struct broker_jobs *J = calloc(1, sizeof *J);
	if (!J)
		return -ENOMEM;
	b->jobs = J;
	J->owner = b;
	J->efd = -1;
	pthread_mutex_init(&J->lock, NULL);
	pthread_cond_init(&J->cond, NULL);
	const char *gate = getenv("STRATA_TEST_TOPIC_GATE");
	if (gate)
		snprintf(J->gate, sizeof J->gate, "%s", gate);
	J->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (J->efd < 0) {
		int rc = -errno;
		snprintf(why, why_len, "eventfd: %s", strerror(-rc));
		return rc;
	}
	int rc = pthread_create(&J->thread, NULL, topic_worker, b);
	if (rc != 0) {
		snprintf(why, why_len, "cannot start the topic worker: %s", strerror(rc));
		return -rc;
	}
	J->thread_started = true;
	return 0;
}

void broker_cancel_jobs(struct broker *b)
{
	struct broker_jobs *J = b->jobs;
	if (!J)
		return;
	J->refuse = true;
	pthread_mutex_lock(&J->lock);
	for (struct topic_job *j = J->q_head; j; j = j->next)
		if (j->kind != JOB_DELETE)
			j->cancelled = true;
	/* The running one notices only while it has not started (held by the test gate). */
	if (J->running && J->running->kind != JOB_DELETE)
		J->running->cancelled = true;
	pthread_mutex_unlock(&J->lock);
}

/* Stops the worker (queued creations cancelled, deletions done), then finishes every job here. */
static void jobs_close(struct broker *b)
{
	struct broker_jobs *J = b->jobs;
	if (!J)
		return;
	if (J->thread_started) {
		broker_cancel_jobs(b);
		pthread_mutex_lock(&J->lock);
		J->stop = true;
		pthread_cond_signal(&J->cond);
		pthread_mutex_unlock(&J->lock);
		pthread_join(J->thread, NULL);
		J->thread_started = false;
	}
	/* The eventfd read may sit on the ring: let it complete (it finishes the jobs). */
	if (J->efd_armed) {
		kick_efd(J->efd);
		for (int i = 0; i < 100 && J->efd_armed; i++)
			uring_run_once(b->ur, 100);
	}
	jobs_finish_done(b);
	if (J->n_jobs)
		slog_error("broker", "%u topic operations unfinished at close", J->n_jobs);
	b->jobs = NULL;
	if (J->efd_armed) {
		/* The ring still owns J's read buffer: J stays allocated (a leak, logged). */
		slog_error("broker", "topic worker eventfd read did not complete at close");
		J->orphaned = true;
		return;
	}
	if (J->efd >= 0)
		close(J->efd);
	pthread_mutex_destroy(&J->lock);
	pthread_cond_destroy(&J->cond);
	free(J);
}

/* --- the operations ------------------------------------------------------------------------- */

static int check_new_topic(struct broker *b, const char *name, size_t len,
			   const struct broker_topic_spec *spec, int32_t *partitions, char *why,
			   size_t why_len)
{
	if (broker_validate_topic_name(name, len, why, why_len) < 0)
		return KERR_INVALID_TOPIC_EXCEPTION;
	if (broker_find_topic(b, name, len)) {
		snprintf(why, why_len, "Topic '%.*s' already exists.", (int)len, name);
		return KERR_TOPIC_ALREADY_EXISTS;
	}
	struct topic_job *j = job_find(b, name, len);
	if (j) {
		snprintf(why, why_len, "Topic '%.*s' is being %s.", (int)len, name,
			 j->kind == JOB_DELETE ? "deleted" : "created");
		return KERR_TOPIC_ALREADY_EXISTS;
	}
	int32_t n = spec->partitions;
	if (spec->remote_recovery) {
		if (!b->tier) {
			snprintf(why, why_len, "Remote recovery of topic '%.*s' needs tiered storage, and "
				 "this broker has none (strata.tier.url=none).", (int)len, name);
			return KERR_INVALID_CONFIG;
		}
		if (len >= 2 && name[0] == '_' && name[1] == '_') {
			snprintf(why, why_len, "Internal topics are never tiered: '%.*s' cannot be "
				 "recovered from the bucket.", (int)len, name);
			return KERR_INVALID_CONFIG;
		}
		if (n < 1)
			n = -1; /* the bucket's count */
	} else if (n < 1) {
		n = (int32_t)cfg_int(b->conf, BC_NUM_PARTITIONS);
	}
	if (n != -1 && (n < 1 || n > 100000)) {
		snprintf(why, why_len, "Number of partitions must be between 1 and 100000, got %d.", n);
		return KERR_INVALID_PARTITIONS;
	}
	*partitions = n;
	return KERR_NONE;
}

int broker_check_new_topic(struct broker *b, const char *name, size_t len,
			   const struct broker_topic_spec *spec, char *why, size_t why_len)
{
	int32_t n;
	return check_new_topic(b, name, len, spec, &n, why, why_len);
}

/* Builds and reserves a creation job (not queued yet). */
static int create_job(struct broker *b, const char *name, size_t len,
		      const struct broker_topic_spec *spec, struct topic_job **out, char *why,
		      size_t why_len)
{
	int32_t n;
	int err = check_new_topic(b, name, len, spec, &n, why, why_len);
	if (err == KERR_NONE)
		err = job_admit(b, why, why_len);
	if (err != KERR_NONE)
		return err;
	struct topic_job *j = calloc(1, sizeof *j);
	struct topic *t = j ? topic_new(name, len, spec->cfg) : NULL;
	if (!t || cfg_copy(&j->bconf, b->conf) < 0 ||
	    getrandom(t->id, sizeof t->id, 0) != (ssize_t)sizeof t->id) {
		topic_shell_free(t);
		free(j);
		snprintf(why, why_len, "out of memory or entropy");
		return KERR_KAFKA_STORAGE_ERROR;
	}
	j->have_bconf = true;
	t->id[6] = (t->id[6] & 0x0f) | 0x40; /* UUID v4, as Kafka's Uuid.randomUuid */
	t->id[8] = (t->id[8] & 0x3f) | 0x80;
	j->kind = JOB_CREATE;
	j->t = t;
	snprintf(j->name, sizeof j->name, "%s", t->name);
	j->from = 0;
	j->to = n;
	j->recovery = spec->remote_recovery;
	struct topic_job **slot = job_slot(b->jobs, name, len);
	j->hash_next = *slot;
	*slot = j;
	b->jobs->n_jobs++;
	*out = j;
	return KERR_NONE;
}

int broker_create_topic_async(struct broker *b, const char *name, size_t len,
			      const struct broker_topic_spec *spec, struct broker_waiter *w,
			      char *why, size_t why_len)
{
	struct topic_job *j = NULL;
	int err = create_job(b, name, len, spec, &j, why, why_len);
	return job_submit(b, err, j, NULL, w);
}

int broker_create_topic(struct broker *b, const char *name, size_t len, int32_t partitions,
			const struct cfg *topic_cfg, bool validate_only, struct topic **out,
			char *why, size_t why_len)
{
	struct broker_topic_spec spec = { .partitions = partitions, .cfg = topic_cfg };
	if (validate_only)
		return broker_check_new_topic(b, name, len, &spec, why, why_len);
	struct topic_job *j;
	int err = create_job(b, name, len, &spec, &j, why, why_len);
	if (err != KERR_NONE)
		return err;
	return job_run_here(b, j, out, why, why_len);
}

bool broker_wait_topic(struct broker *b, const char *name, size_t len, struct broker_waiter *w)
{
	struct topic_job *j = job_find(b, name, len);
	if (!j)
		return false;
	job_add_waiter(j, w);
	return true;
}

/* Takes t out of the table, lets go of its partitions (files stay), returns the job that removes
 * its files (reserved, not queued). */
static int delete_job(struct broker *b, struct topic *t, struct topic_job **out, char *why,
		      size_t why_len)
{
	int err = job_admit_on(b, t, why, why_len);
	if (err != KERR_NONE)
		return err;
	struct topic_job *j = calloc(1, sizeof *j);
	if (!j) {
		snprintf(why, why_len, "out of memory");
		return KERR_UNKNOWN_SERVER_ERROR;
	}
	j->kind = JOB_DELETE;
	snprintf(j->name, sizeof j->name, "%s", t->name);
	j->to = t->n_partitions;
	/* Reserved and out of the table before anything can run the ring (settling the logs). */
	struct topic_job **slot = job_slot(b->jobs, j->name, strlen(j->name));
	j->hash_next = *slot;
	*slot = j;
	b->jobs->n_jobs++;
	topic_unlink(b, t);
	if (b->tier && !t->internal)
		tier_topic_deleted(b->tier, t->name, t->id);
	topic_free(t, true);
	*out = j;
	return KERR_NONE;
}

int broker_delete_topic_async(struct broker *b, struct topic *t, struct broker_waiter *w,
			      char *why, size_t why_len)
{
	struct topic_job *j = NULL;
	int err = delete_job(b, t, &j, why, why_len);
	return job_submit(b, err, j, NULL, w);
}

int broker_delete_topic(struct broker *b, struct topic *t)
{
	char why[256];
	struct topic_job *j;
	if (delete_job(b, t, &j, why, sizeof why) != KERR_NONE) {
		slog_error("broker", "topic=%s: %s", t->name, why);
		return -EBUSY;
	}
	return job_run_here(b, j, NULL, why, sizeof why) == KERR_NONE ? 0 : -EIO;
}

static int add_partitions_check(struct topic *t, int32_t new_total, char *why, size_t why_len)
{
	if (new_total <= t->n_partitions) {
		snprintf(why, why_len, "Topic currently has %d partitions, which is higher than or "
			 "equal to the requested %d.", t->n_partitions, new_total);
		return KERR_INVALID_PARTITIONS;
	}
	if (new_total > 100000) {
		snprintf(why, why_len, "Number of partitions %d is over the limit of 100000.", new_total);
		return KERR_INVALID_PARTITIONS;
	}
	if (t->job) {
		snprintf(why, why_len, "Partitions are already being added to topic %s; retry when "
			 "done.", t->name);
		return KERR_REASSIGNMENT_IN_PROGRESS;
	}
	/* The growth rewrites the metadata file with the settings of now: not while a change of
	 * them is queued (it would undo it, or keep it when it fails). */
	if (t->cfg_job) {
		snprintf(why, why_len, "The settings of topic %s are being changed; retry when done.",
			 t->name);
		return KERR_REASSIGNMENT_IN_PROGRESS;
	}
	return KERR_NONE;
}

/* A job on t's topic with t's name, id and kind; its topic is a scratch copy of t with settings
 * tc (those of t when NULL). NULL when out of memory. */
static struct topic_job *job_on_topic(const struct topic *t, enum job_kind kind, const struct cfg *tc)
{
	struct topic_job *j = calloc(1, sizeof *j);
	struct topic *scratch = j ? topic_new(t->name, strlen(t->name), tc ? tc : &t->cfg) : NULL;
	if (!scratch) {
		free(j);
		return NULL;
	}
	memcpy(scratch->id, t->id, 16);
	scratch->internal = t->internal;
	j->kind = kind;
	j->t = scratch;
	snprintf(j->name, sizeof j->name, "%s", t->name);
	return j;
}

static int add_job(struct broker *b, struct topic *t, int32_t new_total, struct topic_job **out,
		   char *why, size_t why_len)
{
	int err = add_partitions_check(t, new_total, why, why_len);
	if (err == KERR_NONE)
		err = job_admit(b, why, why_len);
	if (err != KERR_NONE)
		return err;
	/* Room for the new partitions now: finishing cannot fail. */
	struct partition **np = realloc(t->parts, (size_t)new_total * sizeof *np);
	struct topic_job *j = np ? job_on_topic(t, JOB_ADD_PARTITIONS, NULL) : NULL;
	if (np)
		t->parts = np;
	if (!j || cfg_copy(&j->bconf, b->conf) < 0) {
		if (j)
			job_free(j);
		snprintf(why, why_len, "out of memory");
		return KERR_UNKNOWN_SERVER_ERROR;
	}
	j->have_bconf = true;
	j->target = t;
	j->from = t->n_partitions;
	j->to = new_total;
	t->job = j;
	b->jobs->n_jobs++;
	*out = j;
	return KERR_NONE;
}

int broker_add_partitions_async(struct broker *b, struct topic *t, int32_t new_total,
				struct broker_waiter *w, char *why, size_t why_len)
{
	struct topic_job *j = NULL;
	int err = add_job(b, t, new_total, &j, why, why_len);
	return job_submit(b, err, j, NULL, w);
}

int broker_add_partitions(struct broker *b, struct topic *t, int32_t new_total, bool validate_only,
			  char *why, size_t why_len)
{
	if (validate_only)
		return add_partitions_check(t, new_total, why, why_len);
	struct topic_job *j;
	int err = add_job(b, t, new_total, &j, why, why_len);
	if (err != KERR_NONE)
		return err;
	return job_run_here(b, j, NULL, why, why_len);
}

/* Builds a change of t's settings to tc (not queued); it is t's newest now. */
static int config_job(struct broker *b, struct topic *t, const struct cfg *tc,
		      struct topic_job **out, char *why, size_t why_len)
{
	int err = job_admit_on(b, t, why, why_len);
	if (err != KERR_NONE)
		return err;
	struct topic_job *j = job_on_topic(t, JOB_CONFIG, tc);
	if (!j) {
		snprintf(why, why_len, "out of memory");
		return KERR_UNKNOWN_SERVER_ERROR;
	}
	j->to = t->n_partitions;
	t->cfg_job = j;
	b->jobs->n_jobs++;
	*out = j;
	return KERR_NONE;
}

int broker_set_topic_config_async(struct broker *b, struct topic *t, const struct cfg *topic_cfg,
				  struct broker_waiter *w, char *why, size_t why_len)
{
	const struct topic_job *base = t->cfg_job;
	struct topic_job *j = NULL;
	int err = config_job(b, t, topic_cfg, &j, why, why_len);
	return job_submit(b, err, j, base, w);
}

const struct cfg *broker_topic_config_next(const struct topic *t)
{
	/* The worker only reads the queued job's settings: reading them here too is safe. */
	return t->cfg_job ? &t->cfg_job->t->cfg : &t->cfg;
}

int broker_set_topic_config(struct broker *b, struct topic *t, const struct cfg *topic_cfg)
{
	/* Queued changes would land after this one: it would not be the newest. */
	if (t->cfg_job)
		return -EBUSY;
	char why[512];
	struct topic_job *j;
	int err = config_job(b, t, topic_cfg, &j, why, sizeof why);
	if (err == KERR_REASSIGNMENT_IN_PROGRESS || err == KERR_THROTTLING_QUOTA_EXCEEDED)
		return -EBUSY;
	if (err != KERR_NONE)
		return err == KERR_REQUEST_TIMED_OUT ? -ESHUTDOWN : -ENOMEM;
	return job_run_here(b, j, NULL, why, sizeof why) == KERR_NONE ? 0 : -EIO;
}

struct tick_ctx {
	struct broker *b;
	int64_t now_ms;
	bool retention;
};

static void tick_topic(void *ctx, struct topic *t)
{
	struct tick_ctx *tc = ctx;
	for (int32_t i = 0; i < t->n_partitions; i++) {
		log_tick(t->parts[i]->log, tc->now_ms);
		if (t->parts[i]->tier)
			tier_part_note_local(t->parts[i]->tier, log_start_offset(t->parts[i]->log),
					     log_size_bytes(t->parts[i]->log));
		if (tc->retention) {
			int rc = log_retention_run(t->parts[i]->log, tc->now_ms);
			if (rc < 0)
				slog_warn("broker", "topic=%s partition=%d: retention failed: %s", t->name,
					  i, strerror(-rc));
		}
	}
}

void broker_tick(struct broker *b, int64_t now_ms)
{
	struct tick_ctx tc = { b, now_ms, false };
	if (now_ms - b->last_retention_ms >= cfg_int(b->conf, BC_LOG_RETENTION_CHECK_MS)) {
		tc.retention = true;
		b->last_retention_ms = now_ms;
	}
	b->last_tick_ms = now_ms;
	broker_foreach_topic(b, tick_topic, &tc);
	if (b->tier)
		tier_tick(b->tier, now_ms);
}

static void reapply_topic(void *ctx, struct topic *t)
{
	topic_apply_config(ctx, t);
}

static void wake_all_cb(void *ctx, struct topic *t)
{
	(void)ctx;
	for (int32_t i = 0; i < t->n_partitions; i++)
		broker_wake_partition(t->parts[i]);
}

/* Downloads finished (tier's eventfd, on the reactor): parked fetches look again. */
static void tier_wake(void *ctx, const char *topic, int32_t partition)
{
	struct broker *b = ctx;
	if (partition < 0) {
		broker_foreach_topic(b, wake_all_cb, NULL);
		return;
	}
	struct partition *p = broker_find_partition(b, topic, strlen(topic), partition);
	if (p)
		broker_wake_partition(p);
}

void broker_reapply_config(struct broker *b)
{
	broker_foreach_topic(b, reapply_topic, b);
}
