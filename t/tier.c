/* t/tier.c -- unit tests of tiering's pure parts: bucket keys, partition and topic manifests
 * (round trip, every kind of damage refused), and the remote read cache against a file://
 * bucket, serving chunks in place and copied into the cache directory. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "strata/batch.h"
#include "strata/common.h"
#include "strata/crc32c.h"
#include "strata/kerr.h"
#include "batchgen.h"
#include "tap.h"
#include "../tier/manifest.h"
#include "../tier/objstore.h"
#include "../tier/rcache.h"

static const uint8_t ID[16] = { 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };

static void test_keys(void)
{
	char a[MANIFEST_KEY_MAX], b[MANIFEST_KEY_MAX], c[MANIFEST_KEY_MAX];
	ok(manifest_key_stem(a, sizeof a, "orders", ID, 3, 1234) == 0, "segment key stem");
	ok(manifest_key_stem(b, sizeof b, "orders", ID, 3, 1234) == 0 && strcmp(a, b) == 0,
	   "keys are deterministic");
	ok(strstr(a, "/orders/3_deadbeef/00000000000000001234") == a + 8, "stem layout: %s", a);
	const char *rest = a + 9;
	char h[9];
	snprintf(h, sizeof h, "%08x", crc32c(0, rest, strlen(rest)));
	ok(memcmp(a, h, 8) == 0 && a[8] == '/', "prefix is the CRC-32C of the rest");
	ok(manifest_key_stem(c, sizeof c, "orders", ID, 3, 1235) == 0 && memcmp(a, c, 8) != 0,
	   "neighbouring segments get different prefixes");
	uint8_t id2[16];
	memcpy(id2, ID, 16);
	id2[0] = 0x11;
	ok(manifest_key_stem(c, sizeof c, "orders", id2, 3, 1234) == 0 && strcmp(a, c) != 0,
	   "a re-created topic (new id) never shares keys");
	ok(manifest_key_object(c, sizeof c, a, "timeindex") == 0 &&
	   strcmp(c + strlen(a), ".timeindex") == 0, "object key = stem + extension");
	ok(manifest_key_partition(c, sizeof c, "orders", ID, 3) == 0 &&
	   strstr(c, "/orders/3_deadbeef/manifest") != NULL, "partition manifest key %s", c);
	ok(manifest_key_topic(c, sizeof c, "orders") == 0 && strstr(c, "/orders/topic_manifest"),
	   "topic manifest key %s", c);
	char small[16];
	ok(manifest_key_stem(small, sizeof small, "orders", ID, 3, 1) == -ENAMETOOLONG,
	   "a key that does not fit is refused");
}

static void fill(struct manifest *m, int n)
{
	manifest_init(m, "orders", ID, 3);
	m->version = 7;
	m->updated_ms = 1700000000000;
	for (int i = 0; i < n; i++) {
		struct manifest_seg s = { 0 };
		s.base_offset = 100 + i * 10;
		s.last_offset = s.base_offset + 9;
		s.size_bytes = 1000 + i;
		s.first_ts_ms = 1600000000000 + i;
		s.max_ts_ms = 1600000000100 + i;
		s.uploaded_ms = 1700000000000 + i;
		s.log_crc = 0xabcdef00u + (uint32_t)i;
		s.index_bytes = 16;
		s.index_crc = 0x1234u;
		s.timeindex_bytes = 24;
		s.timeindex_crc = 0xffffffffu;
		manifest_key_stem(s.key, sizeof s.key, m->topic, ID, 3, s.base_offset);
		if (manifest_append(m, &s) != 0)
			BAIL_OUT("append");
	}
}

static void test_manifest(void)
{
	struct manifest m, d;
	fill(&m, 5);
	is_int(m.start_offset, 100, "start offset follows the first segment");
	is_int(manifest_end_offset(&m), 150, "end offset");
	is_int(manifest_find(&m, 99), 0, "find below the start: first segment");
	is_int(manifest_find(&m, 125), 2, "find in the middle");
	is_int(manifest_find(&m, 149), 4, "find the last offset");
	is_int(manifest_find(&m, 150), 5, "find past the end");
	struct manifest_seg bad = m.segs[4];
	ok(manifest_append(&m, &bad) == -EINVAL, "overlapping segment refused");

	char *buf;
	size_t len;
	char why[256];
	ok(manifest_encode(&m, &buf, &len) == 0, "encode");
	ok(manifest_decode(buf, len, &d, why, sizeof why) == 0, "decode: %s", why);
	ok(d.n_segs == 5 && d.version == 7 && d.partition == 3 && strcmp(d.topic, "orders") == 0 &&
	   memcmp(d.topic_id, ID, 16) == 0 && d.start_offset == 100, "header round trip");
	ok(memcmp(d.segs, m.segs, 5 * sizeof *m.segs) == 0, "segments round trip");
	manifest_free(&d);

	/* Every single-byte change is caught (checksum or structure). */
	int caught = 0, total = 0;
	for (size_t i = 0; i < len; i += 7) {
		char saved = buf[i];
		buf[i] = (char)(buf[i] ^ 0x04);
		total++;
		if (manifest_decode(buf, len, &d, why, sizeof why) < 0)
			caught++;
		else
			manifest_free(&d);
		buf[i] = saved;
	}
	is_int(caught, total, "every flipped byte refused");
	ok(manifest_decode(buf, len - 5, &d, why, sizeof why) == -EBADMSG, "truncated refused: %s", why);
	ok(manifest_decode(buf, len / 2, &d, why, sizeof why) == -EBADMSG, "half refused");

	/* Drop front moves the start; DeleteRecords-style start inside a segment survives. */
	manifest_drop_front(&m, 2);
	ok(m.n_segs == 3 && m.start_offset == 120 && m.segs[0].base_offset == 120, "drop front");
	m.start_offset = 125;
	free(buf);
	ok(manifest_encode(&m, &buf, &len) == 0 && manifest_decode(buf, len, &d, why, sizeof why) == 0 &&
	   d.start_offset == 125, "start inside the first segment round-trips");
	manifest_free(&d);
	free(buf);

	/* A manifest with a correct checksum but out-of-order segments is still refused. */
	m.segs[1].base_offset = 50;
	m.segs[1].last_offset = 60;
	ok(manifest_encode(&m, &buf, &len) == 0, "encode damaged");
	ok(manifest_decode(buf, len, &d, why, sizeof why) == -EBADMSG, "out of order refused: %s", why);
	free(buf);
	manifest_free(&m);

	/* Empty manifest round trip. */
	manifest_init(&m, "t", ID, 0);
	m.start_offset = 42;
	ok(manifest_encode(&m, &buf, &len) == 0 && manifest_decode(buf, len, &d, why, sizeof why) == 0 &&
	   d.n_segs == 0 && d.start_offset == 42 && manifest_end_offset(&d) == 42, "empty manifest");
	free(buf);
	manifest_free(&d);
	manifest_free(&m);
}

static void test_topic_manifest(void)
{
	struct topic_manifest tm = { 0 }, d;
	snprintf(tm.topic, sizeof tm.topic, "orders");
	memcpy(tm.topic_id, ID, 16);
	tm.partitions = 12;
	tm.version = 3;
	tm.config = strdup("retention.ms=1000\nlocal.retention.bytes=-2\ncleanup.policy=delete\n");
	char *buf, why[256];
	size_t len;
	ok(topic_manifest_encode(&tm, &buf, &len) == 0, "topic manifest encode");
	ok(topic_manifest_decode(buf, len, &d, why, sizeof why) == 0, "decode: %s", why);
	ok(d.partitions == 12 && strcmp(d.topic, "orders") == 0 && memcmp(d.topic_id, ID, 16) == 0 &&
	   strcmp(d.config, tm.config) == 0, "topic manifest round trip");
	topic_manifest_free(&d);
	buf[len / 2] ^= 1;
	ok(topic_manifest_decode(buf, len, &d, why, sizeof why) == -EBADMSG, "damaged topic manifest refused");
	free(buf);
	topic_manifest_free(&tm);
}

/* --- remote read cache against a file:// bucket --------------------------------------------- */

#define SEG_BASE 1000
#define SEG_BATCHES 200
#define SEG_RECS 5
#define TS0 1700000000000LL

struct seg_bytes {
	uint8_t *log, idx[8 * 4096], tidx[12 * 4096];
	size_t log_len, idx_len, tidx_len;
};

/* A segment as the log engine writes it: contiguous batches from SEG_BASE, an index entry (last
 * offset, position) every 4096 bytes, a time index entry when the max timestamp grew. */
static void build_segment(struct seg_bytes *sb, int codec)
{
	sb->log = malloc(1 << 20);
	sb->log_len = sb->idx_len = sb->tidx_len = 0;
	int64_t since = 0;
	for (int b = 0; b < SEG_BATCHES; b++) {
		struct batchgen_opts o = BATCHGEN_DEFAULTS;
		o.n_records = SEG_RECS;
		o.value_len = 90;
		o.with_keys = 1;
		o.codec = codec;
		o.base_ts_ms = TS0 + (int64_t)b * SEG_RECS * 10;
		o.ts_step_ms = 10;
		size_t n = batchgen_build_opts(sb->log + sb->log_len, (1 << 20) - sb->log_len, &o);
		if (!n)
			BAIL_OUT("batchgen");
		int64_t base = SEG_BASE + (int64_t)b * SEG_RECS;
		batch_set_base_offset(sb->log + sb->log_len, base);
		if (since > 4096) {
			st_put_be32(sb->idx + sb->idx_len, (uint32_t)(base + SEG_RECS - 1 - SEG_BASE));
			st_put_be32(sb->idx + sb->idx_len + 4, (uint32_t)sb->log_len);
			sb->idx_len += 8;
			st_put_be64(sb->tidx + sb->tidx_len, (uint64_t)(o.base_ts_ms + 40));
			st_put_be32(sb->tidx + sb->tidx_len + 8, (uint32_t)(base + SEG_RECS - 1 - SEG_BASE));
			sb->tidx_len += 12;
			since = 0;
		}
		since += (int64_t)n;
		sb->log_len += n;
	}
}

static int put_segment(struct objstore *os, const struct seg_bytes *sb, const char *topic, int64_t base,
		       struct rcache_seg *out, bool damage)
{
	memset(out, 0, sizeof *out);
	snprintf(out->topic, sizeof out->topic, "%s", topic);
	out->partition = 0;
	struct manifest_seg *m = &out->m;
	manifest_key_stem(m->key, sizeof m->key, topic, ID, 0, base);
	m->base_offset = base;
	m->last_offset = base + SEG_BATCHES * SEG_RECS - 1;
	m->size_bytes = (int64_t)sb->log_len;
	m->log_crc = crc32c(0, sb->log, sb->log_len);
	m->index_bytes = (int64_t)sb->idx_len;
	m->index_crc = crc32c(0, sb->idx, sb->idx_len);
	m->timeindex_bytes = (int64_t)sb->tidx_len;
	m->timeindex_crc = crc32c(0, sb->tidx, sb->tidx_len);
	char key[MANIFEST_KEY_MAX + 16];
	int rc = 0;
	manifest_key_object(key, sizeof key, m->key, "index");
	rc |= objstore_put(os, key, sb->idx, sb->idx_len);
	manifest_key_object(key, sizeof key, m->key, "timeindex");
	rc |= objstore_put(os, key, sb->tidx, sb->tidx_len);
	manifest_key_object(key, sizeof key, m->key, "log");
	if (damage) {
		uint8_t *copy = malloc(sb->log_len);
		memcpy(copy, sb->log, sb->log_len);
		copy[200] ^= 0x40; /* in the first chunk */
		rc |= objstore_put(os, key, copy, sb->log_len);
		free(copy);
	} else {
		rc |= objstore_put(os, key, sb->log, sb->log_len);
	}
	return rc;
}

/* Holds the first prefetch window it sees until released (test_prefetch_handover). */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool entered, released, done;
	int32_t k;
	int policy;
} gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, false, -1, -1 };

static void gate_window(void *ctx, int32_t k)
{
	(void)ctx;
	pthread_mutex_lock(&gate.mu);
	if (!gate.done) {
		gate.entered = true;
		gate.k = k;
		gate.policy = sched_getscheduler(0);
		pthread_cond_broadcast(&gate.cv);
		while (!gate.released)
			pthread_cond_wait(&gate.cv, &gate.mu);
		gate.done = true;
	}
	pthread_mutex_unlock(&gate.mu);
}

static int read_wait(struct rcache *rc, const struct rcache_seg *seg, int64_t off, int64_t max,
		     struct rcache_slice *sl)
{
	int r = RCACHE_PENDING;
	for (int i = 0; i < 500 && r == RCACHE_PENDING; i++) {
		r = rcache_read(rc, seg, NULL, off, max, true, sl);
		if (r == RCACHE_PENDING)
			usleep(10000);
	}
	return r;
}

/* Every batch of a served slice: whole, CRC-valid, contiguous from first_offset. */
static bool slice_ok(const struct rcache_slice *sl, int64_t *next)
{
	uint8_t *b = malloc((size_t)sl->len);
	bool good = pread(sl->fd, b, (size_t)sl->len, sl->file_pos) == (ssize_t)sl->len;
	int64_t p = 0, expect = sl->first_offset;
	while (good && p < sl->len) {
		struct batch_hdr h;
		good = batch_parse_hdr(b + p, (size_t)(sl->len - p), &h) == 0 && h.base_offset == expect &&
		       p + batch_size(&h) <= sl->len && batch_crc_ok(b + p, (size_t)batch_size(&h));
		expect = batch_last_offset(&h) + 1;
		p += batch_size(&h);
	}
	free(b);
	*next = expect;
	return good && expect == sl->next_offset;
}

static void test_verify_chunk(const struct seg_bytes *sb)
{
	struct manifest_seg m = { 0 };
	m.base_offset = SEG_BASE;
	m.last_offset = SEG_BASE + SEG_BATCHES * SEG_RECS - 1;
	m.size_bytes = (int64_t)sb->log_len;
	m.log_crc = crc32c(0, sb->log, sb->log_len);
	char why[256];
	ok(rcache_verify_chunk(&m, 0, sb->log, sb->log_len, -1, why, sizeof why) == 0,
	   "verify: the whole segment passes");
	m.log_crc ^= 1;
	ok(rcache_verify_chunk(&m, 0, sb->log, sb->log_len, -1, why, sizeof why) == -EBADMSG,
	   "verify: whole-object CRC mismatch refused (%s)", why);
	m.log_crc ^= 1;
	ok(rcache_verify_chunk(&m, 0, sb->log, sb->log_len - 7, -1, why, sizeof why) == -EBADMSG,
	   "verify: a cut batch refused (%s)", why);
	size_t first = (size_t)batch_size(&(struct batch_hdr){ .batch_length =
							       (int32_t)st_be32(sb->log + 8) });
	ok(rcache_verify_chunk(&m, (int64_t)first, sb->log + first, sb->log_len - first,
			       SEG_BASE + 2 * SEG_RECS - 1, why, sizeof why) == 0,
	   "verify: a chunk from the second batch with the index's last offset passes");
	ok(rcache_verify_chunk(&m, (int64_t)first, sb->log + first, sb->log_len - first,
			       SEG_BASE + 3 * SEG_RECS - 1, why, sizeof why) == -EBADMSG,
	   "verify: a chunk not starting where the index says refused (%s)", why);
	uint8_t *copy = malloc(sb->log_len);
	memcpy(copy, sb->log, sb->log_len);
	copy[first + 70] ^= 1; /* inside the second batch's records */
	ok(rcache_verify_chunk(&m, (int64_t)first, copy + first, sb->log_len - first, -1, why,
			       sizeof why) == -EBADMSG, "verify: batch CRC mismatch refused (%s)", why);
	memcpy(copy, sb->log, sb->log_len);
	batch_set_base_offset(copy + first, SEG_BASE + 7);
	ok(rcache_verify_chunk(&m, 0, copy, first * 2, -1, why, sizeof why) == -EBADMSG,
	   "verify: offsets not contiguous refused (%s)", why);

	/* Local chunks are verified as they are read, a window at a time: wherever the windows
	 * cut batches and headers, every case above must end the same way, for the same reason. */
	static const size_t windows[] = { 1, 7, 60, 61, 62, 999, 4096, 65536 };
	struct vcase {
		int64_t pos, first_last;
		size_t len;
		uint32_t crc_flip;
		int copy_kind; /* 0 original, 1 a record byte flipped, 2 base offset moved */
	} cases[] = {
		{ 0, -1, sb->log_len, 0, 0 },
		{ 0, -1, sb->log_len, 1, 0 },
		{ 0, -1, sb->log_len - 7, 0, 0 },
		{ (int64_t)first, SEG_BASE + 2 * SEG_RECS - 1, sb->log_len - first, 0, 0 },
		{ (int64_t)first, SEG_BASE + 3 * SEG_RECS - 1, sb->log_len - first, 0, 0 },
		{ (int64_t)first, -1, sb->log_len - first, 0, 1 },
		{ 0, -1, first * 2, 0, 2 },
	};
	int same = 0, total = 0;
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		memcpy(copy, sb->log, sb->log_len);
		if (cases[c].copy_kind == 1)
			copy[first + 70] ^= 1;
		else if (cases[c].copy_kind == 2)
			batch_set_base_offset(copy + first, SEG_BASE + 7);
		m.log_crc ^= cases[c].crc_flip;
		const uint8_t *b = copy + cases[c].pos;
		char why1[256] = "", why2[256] = "";
		int r1 = rcache_verify_chunk(&m, cases[c].pos, b, cases[c].len, cases[c].first_last, why1,
					     sizeof why1);
		for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
			int r2 = rcache_verify_chunk_windows(&m, cases[c].pos, b, cases[c].len, windows[w],
							     cases[c].first_last, why2, sizeof why2);
			total++;
			if (r1 == r2 && (r1 == 0 || strcmp(why1, why2) == 0))
				same++;
			else
				tap_diag("case %zu window %zu: %d (%s) vs %d (%s)", c, windows[w], r1, why1, r2,
				     why2);
		}
		m.log_crc ^= cases[c].crc_flip;
	}
	ok(same == total, "verify in windows: every case ends as on the whole buffer (%d of %d)", same,
	   total);

	/* A flipped byte anywhere fails the chunk, wherever the windows fall: the whole object by
	 * its CRC; a chunk by its batches' CRCs, framing and offsets (except a batch's partition
	 * leader epoch, which Kafka's batch CRC does not cover and a broker may rewrite). */
	int flips = 0, caught = 0, skipped = 0;
	for (size_t p = 0; p < sb->log_len; p += 31) {
		size_t bstart = 0;
		while (bstart + (size_t)batch_size(&(struct batch_hdr){ .batch_length =
				(int32_t)st_be32(sb->log + bstart + 8) }) <= p)
			bstart += (size_t)batch_size(&(struct batch_hdr){ .batch_length =
				(int32_t)st_be32(sb->log + bstart + 8) });
		memcpy(copy, sb->log, sb->log_len);
		copy[p] ^= 0x10;
		size_t w = windows[(p / 31) % (sizeof windows / sizeof windows[0])];
		flips++;
		if (rcache_verify_chunk_windows(&m, 0, copy, sb->log_len, w, -1, why, sizeof why) < 0)
			caught++;
		if (p < first)
			continue;
		if (p - bstart >= BATCH_OFF_LEADER_EPOCH && p - bstart < BATCH_OFF_MAGIC) {
			skipped++;
			continue;
		}
		flips++;
		if (rcache_verify_chunk_windows(&m, (int64_t)first, copy + first, sb->log_len - first, w,
						SEG_BASE + 2 * SEG_RECS - 1, why, sizeof why) < 0)
			caught++;
	}
	ok(flips > 3000 && caught == flips, "verify in windows: every flipped byte refused (%d of %d, "
	   "%d leader-epoch bytes not tried in chunks)", caught, flips, skipped);
	free(copy);
}

/* The bucket's file of an object (file:// store at root). */
static int object_path(char *out, size_t len, const char *root, const struct rcache_seg *seg)
{
	char key[MANIFEST_KEY_MAX + 16];
	if (manifest_key_object(key, sizeof key, seg->m.key, "log") < 0)
		return -1;
	return snprintf(out, len, "%s/%s", root, key) < (int)len ? 0 : -1;
}

/* Flips one byte of a file in place (not the object store's way of writing: an outsider's)
 * and makes sure its ctime moved, as the cache's change check needs (on kernels without
 * fine-grained timestamps a write in the same clock tick may leave it). */
static bool flip_in_place(const char *path, off_t pos)
{
	struct stat st0, st1;
	int fd = open(path, O_RDWR);
	if (fd < 0 || fstat(fd, &st0) < 0)
		return false;
	uint8_t b;
	bool good = pread(fd, &b, 1, pos) == 1;
	b ^= 0x20;
	good = good && pwrite(fd, &b, 1, pos) == 1 && fstat(fd, &st1) == 0;
	for (int i = 0; good && i < 10 && st1.st_ctim.tv_sec == st0.st_ctim.tv_sec &&
			st1.st_ctim.tv_nsec == st0.st_ctim.tv_nsec; i++) {
		usleep(10000);
		good = futimens(fd, NULL) == 0 && fstat(fd, &st1) == 0;
	}
	close(fd);
	return good;
}

/* Number of the cache's files in cdir; their bytes into *bytes (may be NULL). */
static int count_cache_files_bytes(const char *cdir, int64_t *bytes)
{
	int n = 0;
	int64_t sum = 0;
	DIR *d = opendir(cdir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		struct stat st;
		if (de->d_name[0] != 'c' || fstatat(dirfd(d), de->d_name, &st, 0) < 0)
			continue;
		n++;
		sum += (int64_t)st.st_size;
	}
	if (d)
		closedir(d);
	if (bytes)
		*bytes = sum;
	return n;
}

static int count_cache_files(const char *cdir)
{
	return count_cache_files_bytes(cdir, NULL);
}

/* The read cache on a file:// bucket: chunks verified in the bucket's own files (direct) or
 * copied into the cache directory (as for s3://). */
static void test_rcache(bool direct)
{
	const char *mode = direct ? "direct" : "copy";
	char dir[] = "/tmp/strata-tier-t.XXXXXX";
	if (!mkdtemp(dir))
		BAIL_OUT("mkdtemp");
	char url[128], cdir[128], root[128];
	snprintf(url, sizeof url, "file://%s/bucket", dir);
	snprintf(root, sizeof root, "%s/bucket", dir);
	snprintf(cdir, sizeof cdir, "%s/cache", dir);
	struct objstore_config oc;
	objstore_config_defaults(&oc);
	oc.url = url;
	struct objstore *os;
	if (objstore_open(&oc, &os) < 0)
		BAIL_OUT("objstore_open %s", url);
	struct seg_bytes sb, sbz;
	build_segment(&sb, 0);
	build_segment(&sbz, COMPRESS_LZ4);
	if (direct)
		test_verify_chunk(&sb);
	struct rcache_seg seg, bad, zseg;
	ok(put_segment(os, &sb, "rc", SEG_BASE, &seg, false) == 0 &&
	   put_segment(os, &sb, "rc", 5000, &bad, true) == 0 &&
	   put_segment(os, &sbz, "rcz", SEG_BASE, &zseg, false) == 0, "%s: segments in the bucket", mode);
	/* its key is base 5000's, its offsets the data's own */
	bad.m.base_offset = SEG_BASE;
	bad.m.last_offset = seg.m.last_offset;

	struct rcache_config cfg;
	rcache_config_defaults(&cfg);
	ok(cfg.local_direct, "serving file:// chunks in place is the default");
	cfg.local_direct = direct;
	cfg.dir = cdir;
	cfg.chunk_bytes = 8192;
	cfg.max_bytes = 24 * 1024;
	cfg.threads = 2;
	struct rcache *rc;
	ok(rcache_open(&cfg, os, NULL, NULL, &rc) == 0, "%s: rcache_open", mode);
	struct rcache_slice sl;
	ok(rcache_read(rc, &seg, NULL, SEG_BASE, 4096, true, &sl) == RCACHE_PENDING,
	   "%s: first read of a remote segment waits for a download", mode);
	int r = read_wait(rc, &seg, SEG_BASE, 4096, &sl);
	int64_t next;
	ok(r == KERR_NONE && sl.first_offset == SEG_BASE && sl.len > 0 && sl.len <= 4096 && slice_ok(&sl, &next),
	   "%s: then whole batches from the base, within max_bytes (len %" PRId64 ", next %" PRId64 ")", mode,
	   sl.len, sl.next_offset);
	rcache_slice_release(&sl);

	/* Sequential replay through every chunk: all offsets, in order, whole batches. */
	int64_t off = SEG_BASE, slices = 0, bytes = 0;
	bool all_ok = true;
	while (off <= seg.m.last_offset && slices < 10000) {
		r = read_wait(rc, &seg, off, 3000, &sl);
		if (r != KERR_NONE) {
			all_ok = false;
			break;
		}
		all_ok = all_ok && slice_ok(&sl, &next) && sl.first_offset <= off && sl.next_offset > off;
		bytes += sl.len;
		off = sl.next_offset;
		slices++;
		rcache_slice_release(&sl);
	}
	ok(all_ok && off == seg.m.last_offset + 1 && bytes == (int64_t)sb.log_len,
	   "%s: sequential replay: %" PRId64 " slices, every batch once (%" PRId64 " of %zu bytes)", mode,
	   slices, bytes, sb.log_len);
	r = read_wait(rc, &seg, SEG_BASE + 503, 100, &sl);
	ok(r == KERR_NONE && sl.first_offset <= SEG_BASE + 503 && sl.next_offset > SEG_BASE + 503 &&
	   slice_ok(&sl, &next), "%s: a read in the middle starts at the batch holding the offset (%" PRId64 ")",
	   mode, sl.first_offset);
	rcache_slice_release(&sl);
	ok(read_wait(rc, &seg, seg.m.last_offset + 1, 100, &sl) == KERR_OFFSET_OUT_OF_RANGE,
	   "%s: past the segment: out of range", mode);
	struct rcache_stats st;
	rcache_get_stats(rc, &st);
	ok(st.cached_bytes <= cfg.max_bytes && st.evictions > 0 && st.downloads > 1,
	   "%s: the cache stays within its bound: %" PRId64 " bytes cached, %" PRId64 " evictions, %" PRId64
	   " downloads, %" PRId64 " prefetches", mode, st.cached_bytes, st.evictions, st.downloads, st.prefetches);
	if (direct)
		ok(st.local_bytes == st.download_bytes && st.local_bytes > 0 && count_cache_files(cdir) == 0,
		   "direct: every chunk verified in the bucket's file (%" PRId64 " bytes), none copied",
		   st.local_bytes);
	else {
		int64_t dir_bytes;
		int files = count_cache_files_bytes(cdir, &dir_bytes);
		ok(st.local_bytes == 0 && files > 0 && dir_bytes <= cfg.max_bytes,
		   "copy: chunks are files in the cache directory, within the bound (%d files, %" PRId64
		   " bytes)", files, dir_bytes);
	}

	/* Timestamp lookups, record-exact, also inside compressed batches. */
	int64_t o, ts;
	struct rcache_seg *segs[2] = { &seg, &zseg };
	for (int k = 0; k < 2; k++) {
		int64_t want_off = SEG_BASE + 777, target = TS0 + 777 * 10 - 5;
		r = RCACHE_PENDING;
		for (int i = 0; i < 500 && r == RCACHE_PENDING; i++) {
			r = rcache_offset_for_timestamp(rc, segs[k], target, &o, &ts);
			if (r == RCACHE_PENDING)
				usleep(10000);
		}
		ok(r == KERR_NONE && o == want_off && ts == TS0 + 777 * 10,
		   "%s: %s: offset for timestamp inside the segment: %" PRId64 " @ %" PRId64, mode,
		   k ? "lz4" : "uncompressed", o, ts);
	}
	r = read_wait(rc, &zseg, SEG_BASE + 10, 1 << 20, &sl);
	ok(r == KERR_NONE && slice_ok(&sl, &next), "%s: compressed batches are served as stored", mode);
	rcache_slice_release(&sl);

	/* A damaged object is never served, and asking again keeps failing. */
	r = read_wait(rc, &bad, SEG_BASE, 1 << 20, &sl);
	ok(r == KERR_KAFKA_STORAGE_ERROR, "%s: damaged object: KAFKA_STORAGE_ERROR (%d)", mode, r);
	if (r == KERR_NONE)
		rcache_slice_release(&sl);
	r = rcache_read(rc, &bad, NULL, SEG_BASE, 1 << 20, true, &sl);
	ok(r == KERR_KAFKA_STORAGE_ERROR, "%s: ... and again while the failure is held", mode);
	if (r == KERR_NONE)
		rcache_slice_release(&sl);
	int64_t after = SEG_BASE + SEG_BATCHES * SEG_RECS - 2; /* the damage is in an early chunk */
	r = read_wait(rc, &bad, after, 1 << 20, &sl);
	ok(r == KERR_NONE && slice_ok(&sl, &next), "%s: undamaged chunks of it are still served", mode);
	if (r == KERR_NONE)
		rcache_slice_release(&sl);
	rcache_get_stats(rc, &st);
	ok(st.corrupt >= 1, "%s: corrupt downloads counted (%" PRId64 ")", mode, st.corrupt);

	rcache_close(rc);

	/* A cache with room: sequential readers find the next chunks prefetched. */
	cfg.max_bytes = 1 << 20;
	ok(rcache_open(&cfg, os, NULL, NULL, &rc) == 0, "%s: rcache_open (1 MiB)", mode);
	off = SEG_BASE;
	int waits = 0;
	all_ok = true;
	for (int i = 0; i < 10000 && off <= seg.m.last_offset; i++) {
		r = rcache_read(rc, &seg, NULL, off, 3000, true, &sl);
		if (r == RCACHE_PENDING) {
			waits++;
			usleep(20000); /* a slow consumer: downloads get ahead */
			continue;
		}
		all_ok = all_ok && r == KERR_NONE && slice_ok(&sl, &next);
		if (r != KERR_NONE)
			break;
		off = sl.next_offset;
		rcache_slice_release(&sl);
		usleep(5000);
	}
	rcache_get_stats(rc, &st);
	ok(all_ok && off == seg.m.last_offset + 1 && st.prefetches > 0,
	   "%s: prefetch: replay waited %d times, %" PRId64 " prefetches, %" PRId64 " hits", mode, waits,
	   st.prefetches, st.hits);

	/* A read that needs a chunk a prefetch thread (SCHED_IDLE: on a busy machine it may not
	 * run for a while) is still on takes it over: the prefetch thread gives it to a download
	 * thread at its next window. The gate holds the prefetch thread at its first window. */
	{
		struct rcache_config pc = cfg;
		pc.threads = 1;
		pc.prefetch_threads = 1;
		pc.prefetch_chunks = 1;
		pc.test_prefetch_window = gate_window;
		gate.entered = gate.released = gate.done = false;
		struct rcache *prc;
		ok(rcache_open(&pc, os, NULL, NULL, &prc) == 0, "%s: rcache_open (handover)", mode);
		r = read_wait(prc, &seg, SEG_BASE, 1 << 20, &sl); /* chunk 0 whole; chunk 1 prefetched */
		int64_t off1 = r == KERR_NONE ? sl.next_offset : -1;
		if (r == KERR_NONE)
			rcache_slice_release(&sl);
		bool entered = false;
		for (int i = 0; i < 500 && !entered; i++) {
			pthread_mutex_lock(&gate.mu);
			entered = gate.entered;
			pthread_mutex_unlock(&gate.mu);
			if (!entered)
				usleep(10000);
		}
		ok(entered && gate.k == 1 && off1 > SEG_BASE,
		   "%s: the next chunk is being prefetched (held at its first window; chunk %d)", mode, gate.k);
		ok(gate.policy == SCHED_IDLE, "%s: prefetch threads run at SCHED_IDLE (policy %d)", mode,
		   gate.policy);
		r = rcache_read(prc, &seg, NULL, off1, 1 << 20, true, &sl);
		ok(r == RCACHE_PENDING, "%s: a read of that chunk waits (%d)", mode, r);
		if (r == KERR_NONE)
			rcache_slice_release(&sl);
		pthread_mutex_lock(&gate.mu);
		gate.released = true;
		pthread_cond_broadcast(&gate.cv);
		pthread_mutex_unlock(&gate.mu);
		r = read_wait(prc, &seg, off1, 1 << 20, &sl);
		ok(r == KERR_NONE && sl.first_offset == off1 && slice_ok(&sl, &next),
		   "%s: ... and is served once a download thread took the chunk over (%d)", mode, r);
		if (r == KERR_NONE)
			rcache_slice_release(&sl);
		rcache_get_stats(prc, &st);
		ok(st.handovers == 1 && st.download_errors == 0,
		   "%s: one prefetch handed over, no failure (%" PRId64 ", %" PRId64 ")", mode, st.handovers,
		   st.download_errors);
		rcache_close(prc);
	}

	/* Disk pressure (copy mode: chunks take space in the cache directory): with a minimum of
	 * free space above what the file system has, rcache_trim drops every unreferenced chunk
	 * file and a new chunk is not cached (its read fails, KAFKA_STORAGE_ERROR); with the
	 * minimum back at 0 the same read is served. */
	if (!direct) {
		struct rcache_config pc = cfg;
		pc.prefetch_chunks = 0;
		pc.min_free_bytes = 0;
		struct rcache *prc;
		ok(rcache_open(&pc, os, NULL, NULL, &prc) == 0, "copy: rcache_open (pressure)");
		int served = 0;
		for (int64_t at_off = SEG_BASE; at_off <= seg.m.last_offset && served < 3; served++) {
			r = read_wait(prc, &seg, at_off, 1 << 20, &sl);
			if (r != KERR_NONE)
				break;
			at_off = sl.next_offset;
			rcache_slice_release(&sl);
		}
		int before = count_cache_files(cdir);
		ok(served == 3 && before >= 3, "copy: %d chunk files cached", before);
		rcache_close(prc);
		/* the same, under pressure from the start */
		pc.min_free_bytes = INT64_MAX / 2;
		ok(rcache_open(&pc, os, NULL, NULL, &prc) == 0, "copy: rcache_open (min free above the disk)");
		r = read_wait(prc, &seg, SEG_BASE, 1 << 20, &sl);
		ok(r == KERR_KAFKA_STORAGE_ERROR && count_cache_files(cdir) == 0,
		   "copy: under disk pressure a chunk is not cached, the read fails cleanly (%d, %d files)", r,
		   count_cache_files(cdir));
		if (r == KERR_NONE)
			rcache_slice_release(&sl);
		rcache_get_stats(prc, &st);
		ok(st.pressure_refusals >= 1, "copy: refusals counted (%" PRId64 ")", st.pressure_refusals);
		rcache_close(prc);
		/* cached first, then the disk "fills": trim gives the space back */
		pc.min_free_bytes = 0;
		ok(rcache_open(&pc, os, NULL, NULL, &prc) == 0, "copy: rcache_open (trim)");
		struct rcache_slice keep;
		r = read_wait(prc, &seg, SEG_BASE, 1 << 20, &keep);
		int64_t o2 = r == KERR_NONE ? keep.next_offset : SEG_BASE;
		for (int i = 0; i < 2; i++) {
			if (read_wait(prc, &seg, o2, 1 << 20, &sl) != KERR_NONE)
				break;
			o2 = sl.next_offset;
			rcache_slice_release(&sl);
		}
		int cached = count_cache_files(cdir);
		ok(rcache_trim(prc) == 0, "copy: no pressure, nothing trimmed");
		rcache_set_min_free_bytes(prc, INT64_MAX / 2);
		int dropped = rcache_trim(prc);
		rcache_get_stats(prc, &st);
		ok(dropped == cached - 1 && count_cache_files(cdir) == 1 && st.pressure_evictions == dropped,
		   "copy: under pressure every unreferenced chunk file is dropped, the one in use kept "
		   "(%d of %d dropped, %d left)", dropped, cached, count_cache_files(cdir));
		if (r == KERR_NONE) {
			int64_t nb;
			ok(slice_ok(&keep, &nb), "copy: the slice in use still reads its batches");
			rcache_slice_release(&keep);
		}
		rcache_close(prc);
	}

	/* A verified chunk whose bucket file is then changed in place (an outsider writing into
	 * the bucket directory): verified again before it is served again, so damage written
	 * after the first verification is refused too; a slice taken before the change stays
	 * valid until released. Copies in the cache directory do not see the change. */
	char path[512];
	bool flipped = false;
	if (object_path(path, sizeof path, root, &seg) == 0) {
		struct rcache_slice held;
		r = read_wait(rc, &seg, SEG_BASE, 1 << 20, &held);
		ok(r == KERR_NONE && slice_ok(&held, &next), "%s: first chunk served and held", mode);
		flipped = flip_in_place(path, 300); /* inside the first chunk's second batch */
		ok(flipped, "%s: flipped a byte of %s in place", mode, path);
		r = rcache_read(rc, &seg, NULL, SEG_BASE, 1 << 20, true, &sl);
		if (direct) {
			ok(r == RCACHE_PENDING, "direct: the changed file's chunk is not served as verified (%d)", r);
			if (r == KERR_NONE)
				rcache_slice_release(&sl);
			r = read_wait(rc, &seg, SEG_BASE, 1 << 20, &sl);
			ok(r == KERR_KAFKA_STORAGE_ERROR, "direct: verified again: KAFKA_STORAGE_ERROR (%d)", r);
			if (r == KERR_NONE)
				rcache_slice_release(&sl);
			rcache_get_stats(rc, &st);
			ok(st.local_changed == 1, "direct: the change is counted (%" PRId64 ")", st.local_changed);
		} else {
			ok(r == KERR_NONE && slice_ok(&sl, &next), "copy: the cached copy is still served intact");
			if (r == KERR_NONE)
				rcache_slice_release(&sl);
		}
		if (held.chunk_)
			rcache_slice_release(&held);
	}
	rcache_close(rc);
	if (flipped)
		flip_in_place(path, 300);
	ok(count_cache_files(cdir) == 0, "%s: close removes the cached files", mode);
	objstore_close(os);
	free(sb.log);
	free(sbz.log);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		tap_diag("cannot remove %s", dir);
}

int main(void)
{
	test_keys();
	test_manifest();
	test_topic_manifest();
	test_rcache(true);
	test_rcache(false);
	return tap_done();
}
