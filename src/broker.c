/* broker.c -- topics and their partitions' logs, topic metadata files, cluster identity.
 * Persists under log.dirs: meta.properties (cluster id), __strata/<topic>.topic (id, partition
 * count, settings), and <topic>-<n>/ partition directories owned by the log engine.
 * Does not speak the wire protocol and does not decide anything about clients. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strata/broker.h"
#include "strata/common.h"
#include "strata/kerr.h"
#include "strata/pstate.h"
#include "strata/slog.h"
#include "../tier/tier.h"

#define META_SUBDIR "__strata"

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

void broker_log_config(const struct broker *b, const struct topic *t, struct log_config *out)
{
	const struct cfg *tc = t ? &t->cfg : NULL, *bc = b->conf;
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
	if (b->tier && t && !t->internal && cfg_bool(tc, TC_REMOTE_STORAGE_ENABLE))
		tier_local_retention(tc, bc, &out->retention_ms, &out->retention_bytes);
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

static void tier_part_cfg(const struct broker *b, const struct topic *t, struct tier_part_config *pc)
{
	tier_part_config_from(&t->cfg, b->conf, pc);
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

static int partition_open(struct broker *b, struct topic *t, int32_t id, struct partition **out)
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
	struct log_config lc;
	broker_log_config(b, t, &lc);
	struct log_hooks hooks = { .ctx = p, .hw_advanced = hook_hw_advanced,
				   .segment_closed = hook_segment_closed,
				   .segment_deletable = hook_segment_deletable };
	int rc = log_open(b->ur, dir, &lc, &hooks, &p->log);
	if (rc < 0) {
		slog_error("broker", "topic=%s partition=%d: cannot open log %s: %s", t->name, id, dir,
			   strerror(-rc));
		free(p);
		return rc;
	}
	/* Idempotent producers' state: newest snapshot plus a scan of the log after it. */
	struct pstate_config pc;
	pstate_config_defaults(&pc);
	pc.expiration_ms = cfg_int(b->conf, BC_PRODUCER_ID_EXPIRATION_MS);
	p->pstate = pstate_create(dir, &pc);
	if (!p->pstate) {
		log_close(p->log);
		free(p);
		return -ENOMEM;
	}
	if (b->tier && !t->internal) {
		struct tier_part_config tpc;
		tier_part_cfg(b, t, &tpc);
		rc = tier_part_open(b->tier, t->name, t->id, id, dir, &tpc, &p->tier);
		if (rc < 0) {
			slog_error("broker", "topic=%s partition=%d: cannot set up tiering: %s", t->name,
				   id, strerror(-rc));
			pstate_free(p->pstate);
			log_close(p->log);
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
	struct stat st;
	char mpath[PATH_MAX + 32];
	snprintf(mpath, sizeof mpath, "%s/partition.metadata", dir);
	if (stat(mpath, &st) < 0)
		write_file_atomic(dir, "partition.metadata", meta, (size_t)n);
	*out = p;
	return 0;
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
		int rc = destroy ? log_destroy(p->log) : log_close(p->log);
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

static int topic_save(struct broker *b, const struct topic *t, int32_t n_partitions)
{
	char buf[16384], idtxt[40], fname[BROKER_TOPIC_NAME_MAX + 8], num[32];
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
	int rc = write_file_atomic(b->meta_dir, fname, buf, n);
	if (rc == 0)
		tier_topic_sync(b, t, n_partitions);
	return rc;
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

static int topic_open_partitions(struct broker *b, struct topic *t, int32_t from, int32_t to)
{
	struct partition **np = realloc(t->parts, (size_t)to * sizeof *np);
	if (!np)
		return -ENOMEM;
	t->parts = np;
	for (int32_t i = from; i < to; i++) {
		int rc = partition_open(b, t, i, &t->parts[i]);
		if (rc < 0) {
			for (int32_t j = from; j < i; j++)
				partition_free(t->parts[j], false);
			return rc;
		}
	}
	t->n_partitions = to;
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
	if (rc == 0)
		rc = topic_open_partitions(b, t, 0, parts);
	if (rc < 0) {
		cfg_free(&t->cfg);
		free(t->parts);
		free(t);
		return rc;
	}
	t->internal = t->name[0] == '_' && t->name[1] == '_';
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

static int mkdir_p(const char *path)
{
	char tmp[PATH_MAX];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof tmp)
		return -ENAMETOOLONG;
	memcpy(tmp, path, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
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
		rc = mkdir_p(dir);
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
	if ((rc = mkdir_p(b->meta_dir)) < 0) {
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
	if (b->buckets)
		broker_foreach_topic(b, close_topic_cb, b);
	tier_close(b->tier); /* after every partition let go of its tier state */
	free(b->buckets);
	if (b->lock_fd >= 0)
		close(b->lock_fd);
	free(b);
	return 0;
}

int broker_create_topic(struct broker *b, const char *name, size_t len, int32_t partitions,
			const struct cfg *topic_cfg, bool validate_only, struct topic **out,
			char *why, size_t why_len)
{
	if (broker_validate_topic_name(name, len, why, why_len) < 0)
		return KERR_INVALID_TOPIC_EXCEPTION;
	if (broker_find_topic(b, name, len)) {
		snprintf(why, why_len, "Topic '%.*s' already exists.", (int)len, name);
		return KERR_TOPIC_ALREADY_EXISTS;
	}
	if (partitions < 0)
		partitions = (int32_t)cfg_int(b->conf, BC_NUM_PARTITIONS);
	if (partitions < 1 || partitions > 100000) {
		snprintf(why, why_len, "Number of partitions must be between 1 and 100000, got %d.",
			 partitions);
		return KERR_INVALID_PARTITIONS;
	}
	if (validate_only)
		return KERR_NONE;
	struct topic *t = calloc(1, sizeof *t);
	if (!t)
		return KERR_KAFKA_STORAGE_ERROR;
	memcpy(t->name, name, len);
	t->name[len] = 0;
	int rc = topic_cfg ? cfg_copy(&t->cfg, topic_cfg) : cfg_init(&t->cfg, &cfg_topic_schema);
	if (rc < 0 || getrandom(t->id, sizeof t->id, 0) != (ssize_t)sizeof t->id) {
		if (rc == 0)
			cfg_free(&t->cfg);
		free(t);
		snprintf(why, why_len, "out of memory or entropy");
		return KERR_KAFKA_STORAGE_ERROR;
	}
	t->id[6] = (t->id[6] & 0x0f) | 0x40;
	t->id[8] = (t->id[8] & 0x3f) | 0x80;
	t->internal = len > 2 && name[0] == '_' && name[1] == '_';
	/* Metadata first: a crash after it leaves a topic whose empty partition dirs are created
	 * at the next start; the reverse would leave orphan directories nobody owns. */
	if ((rc = topic_save(b, t, partitions)) < 0 ||
	    (rc = topic_open_partitions(b, t, 0, partitions)) < 0) {
		snprintf(why, why_len, "cannot create topic %s: %s", t->name, strerror(-rc));
		char mpath[PATH_MAX + BROKER_TOPIC_NAME_MAX + 16];
		snprintf(mpath, sizeof mpath, "%s/%s.topic", b->meta_dir, t->name);
		unlink(mpath);
		cfg_free(&t->cfg);
		free(t->parts);
		free(t);
		return KERR_KAFKA_STORAGE_ERROR;
	}
	topic_insert(b, t);
	slog_info("broker", "topic=%s partitions=%d created", t->name, t->n_partitions);
	if (out)
		*out = t;
	return KERR_NONE;
}

int broker_delete_topic(struct broker *b, struct topic *t)
{
	char mpath[PATH_MAX + BROKER_TOPIC_NAME_MAX + 16];
	snprintf(mpath, sizeof mpath, "%s/%s.topic", b->meta_dir, t->name);
	/* Metadata goes first: after a crash mid-delete the topic is gone, never half there. */
	if (unlink(mpath) < 0 && errno != ENOENT)
		return -errno;
	fsync_dir(b->meta_dir);
	topic_unlink(b, t);
	if (b->tier && !t->internal)
		tier_topic_deleted(b->tier, t->name, t->id);
	slog_info("broker", "topic=%s deleted", t->name);
	topic_free(t, true);
	return 0;
}

int broker_add_partitions(struct broker *b, struct topic *t, int32_t new_total, bool validate_only,
			  char *why, size_t why_len)
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
	if (validate_only)
		return KERR_NONE;
	int32_t old = t->n_partitions;
	int rc = topic_open_partitions(b, t, old, new_total);
	if (rc < 0) {
		snprintf(why, why_len, "cannot create partitions: %s", strerror(-rc));
		return KERR_KAFKA_STORAGE_ERROR;
	}
	if ((rc = topic_save(b, t, new_total)) < 0) {
		snprintf(why, why_len, "cannot save topic metadata: %s", strerror(-rc));
		return KERR_KAFKA_STORAGE_ERROR;
	}
	slog_info("broker", "topic=%s partitions %d -> %d", t->name, old, new_total);
	return KERR_NONE;
}

int broker_set_topic_config(struct broker *b, struct topic *t, const struct cfg *topic_cfg)
{
	struct cfg nc;
	int rc = cfg_copy(&nc, topic_cfg);
	if (rc < 0)
		return rc;
	/* Persist first: a failed save must leave the old settings in force, on disk and here. */
	struct cfg old = t->cfg;
	t->cfg = nc;
	if ((rc = topic_save(b, t, t->n_partitions)) < 0) {
		t->cfg = old;
		cfg_free(&nc);
		return rc;
	}
	cfg_free(&old);
	struct log_config lc;
	broker_log_config(b, t, &lc);
	struct tier_part_config tpc;
	tier_part_cfg(b, t, &tpc);
	for (int32_t i = 0; i < t->n_partitions; i++) {
		log_set_config(t->parts[i]->log, &lc);
		if (t->parts[i]->tier)
			tier_part_set_config(t->parts[i]->tier, &tpc);
	}
	return 0;
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
	struct broker *b = ctx;
	struct log_config lc;
	broker_log_config(b, t, &lc);
	struct tier_part_config tpc;
	tier_part_cfg(b, t, &tpc);
	for (int32_t i = 0; i < t->n_partitions; i++) {
		log_set_config(t->parts[i]->log, &lc);
		if (t->parts[i]->tier)
			tier_part_set_config(t->parts[i]->tier, &tpc);
	}
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
