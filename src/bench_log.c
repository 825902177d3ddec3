/* bench_log.c -- `strata bench log`: how close the partition log's durable append comes to
 * the disk's sequential write bandwidth (fio as the reference, run in the same directory),
 * the append-to-durable latency, and cold and warm read throughput by offset.
 * Owns only its scratch directory; it drives log.h directly on one io_uring in one thread, the
 * way a broker reactor would, and must not depend on anything beyond log.h and uring.h. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirent.h>

#include "strata/bench.h"
#include "strata/common.h"
#include "strata/crc32c.h"
#include "strata/kerr.h"
#include "strata/log.h"
#include "strata/slog.h"
#include "strata/uring.h"

struct bench_opts {
	int partitions;
	int seconds;
	int record_bytes;
	int batch_bytes;
	int window;             /* appends in flight per partition */
	const char *parent_dir;
	bool keep;
	bool fio;
	const char *fio_size;
	int settle_s;           /* idle time between phases: this kind of disk drifts */
};

struct bench_part;

struct bench_slot {
	struct log_append a;
	struct bench_part *part;
	int64_t submit_ns;
	uint8_t *buf;
	bool busy;
};

struct bench_run;

struct bench_part {
	struct bench_run *run;
	struct log *log;
	char dir[PATH_MAX];
	struct bench_slot *slots;
	int inflight;
};

struct bench_run {
	const struct bench_opts *o;
	struct uring ur;
	struct bench_part *parts;
	uint8_t *tmpl;                  /* one valid batch, base offset 0 */
	size_t tmpl_len;
	int records_per_batch;
	int64_t start_ns;
	int64_t acked_bytes;
	int64_t acked_batches;
	int64_t *per_sec_bytes;         /* acked bytes by second since start */
	int per_sec_len;
	int64_t *lat_ns;
	size_t lat_len, lat_cap;
	int errors;
	int total_inflight;
};

/* ---- batch template ------------------------------------------------------------------- */

static size_t put_varint(uint8_t *p, int64_t v)
{
	uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	size_t n = 0;
	while (z >= 0x80) {
		p[n++] = (uint8_t)(z | 0x80);
		z >>= 7;
	}
	p[n++] = (uint8_t)z;
	return n;
}

/* records_per_batch records of value_bytes incompressible bytes each, key null, no headers. */
static uint8_t *build_template(int records, int value_bytes, int64_t ts_ms, size_t *len_out)
{
	size_t cap = 61 + (size_t)records * ((size_t)value_bytes + 32);
	uint8_t *b = calloc(1, cap);
	if (!b)
		return NULL;
	uint64_t x = 0x2545F4914F6CDD1Dull;
	size_t pos = 61;
	for (int i = 0; i < records; i++) {
		uint8_t body[32];
		size_t bl = 0;
		body[bl++] = 0;                          /* attributes */
		bl += put_varint(body + bl, 0);          /* timestamp delta */
		bl += put_varint(body + bl, i);          /* offset delta */
		bl += put_varint(body + bl, -1);         /* null key */
		bl += put_varint(body + bl, value_bytes);
		size_t rec_len = bl + (size_t)value_bytes + 1; /* + header count */
		pos += put_varint(b + pos, (int64_t)rec_len);
		memcpy(b + pos, body, bl);
		pos += bl;
		for (int k = 0; k < value_bytes; k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			b[pos++] = (uint8_t)x;
		}
		pos += put_varint(b + pos, 0);           /* no headers */
	}
	st_put_be64(b + 0, 0);
	st_put_be32(b + 8, (uint32_t)(pos - 12));
	st_put_be32(b + 12, 0);                          /* leader epoch */
	b[16] = 2;                                       /* magic */
	st_put_be16(b + 21, 0);                          /* attributes: none, CreateTime */
	st_put_be32(b + 23, (uint32_t)(records - 1));
	st_put_be64(b + 27, (uint64_t)ts_ms);
	st_put_be64(b + 35, (uint64_t)ts_ms);
	st_put_be64(b + 43, (uint64_t)-1);               /* producer id */
	st_put_be16(b + 51, (uint16_t)-1);
	st_put_be32(b + 53, (uint32_t)-1);
	st_put_be32(b + 57, (uint32_t)records);
	st_put_be32(b + 17, crc32c(0, b + 21, pos - 21));
	*len_out = pos;
	return b;
}

/* ---- helpers ---------------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	if (remove(path) != 0)
		fprintf(stderr, "bench: remove %s: %s\n", path, strerror(errno));
	return 0;
}

static void rm_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *fs_name(const char *dir)
{
	struct statfs sf;
	if (statfs(dir, &sf) != 0)
		return "?";
	switch ((unsigned long)sf.f_type) {
	case 0xEF53: return "ext4";
	case 0x58465342: return "xfs";
	case 0x9123683E: return "btrfs";
	case 0x01021994: return "tmpfs (not a disk!)";
	case 0x794c7630: return "overlayfs";
	default: return "other";
	}
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(const int64_t *sorted, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return (double)sorted[ST_MIN(i, n - 1)];
}

/* ---- fio -------------------------------------------------------------------------------- */

struct fio_result {
	bool ok;
	double mb_s;
	double runtime_s;
	char what[96];
};

char *bench_run_capture(char *const argv[])
{
	int pfd[2];
	if (pipe(pfd) != 0)
		return NULL;
	pid_t pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return NULL;
	}
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	size_t len = 0, cap = 1 << 16;
	char *out = malloc(cap);
	while (out) {
		if (len + 1 == cap) {
			char *n = realloc(out, cap * 2);
			if (!n) {
				free(out);
				out = NULL;
				break;
			}
			out = n;
			cap *= 2;
		}
		ssize_t r = read(pfd[0], out + len, cap - len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(pfd[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!out)
		return NULL;
	out[len] = 0;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

int64_t bench_json_i64(const char *s, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\"", key);
	const char *p = strstr(s, pat);
	if (!p)
		return -1;
	p = strchr(p + strlen(pat), ':');
	if (!p)
		return -1;
	return strtoll(p + 1, NULL, 10);
}

static struct fio_result fio_run(const char *dir, const char *what, const char *name,
				 const char *bs, const char *size, const char *numjobs, const char *engine,
				 const char *fdatasync_every)
{
	struct fio_result r = { .ok = false };
	snprintf(r.what, sizeof(r.what), "%s", what);
	char a_dir[PATH_MAX + 16], a_name[64], a_bs[32], a_size[32], a_jobs[32], a_eng[48], a_sync[48];
	snprintf(a_dir, sizeof(a_dir), "--directory=%s", dir);
	snprintf(a_name, sizeof(a_name), "--name=%s", name);
	snprintf(a_bs, sizeof(a_bs), "--bs=%s", bs);
	snprintf(a_size, sizeof(a_size), "--size=%s", size);
	snprintf(a_jobs, sizeof(a_jobs), "--numjobs=%s", numjobs);
	snprintf(a_eng, sizeof(a_eng), "--ioengine=%s", engine);
	snprintf(a_sync, sizeof(a_sync), "--fdatasync=%s", fdatasync_every ? fdatasync_every : "0");
	char *argv[] = { "fio", a_dir, a_name, "--rw=write", a_bs, a_size, a_jobs, a_eng,
			 "--direct=0", "--end_fsync=1", a_sync, "--group_reporting",
			 "--output-format=json", NULL };
	char *out = bench_run_capture(argv);
	/* fio leaves its data files: <name>.<job>.<file> */
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *de;
		size_t nl = strlen(name);
		while ((de = readdir(d)) != NULL) {
			if (strncmp(de->d_name, name, nl) == 0 && de->d_name[nl] == '.') {
				char path[PATH_MAX + 256];
				snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
				unlink(path);
			}
		}
		closedir(d);
	}
	if (!out)
		return r;
	const char *w = strstr(out, "\"write\" : {"); /* not the "rw" : "write" option */
	if (w) {
		int64_t bytes = bench_json_i64(w, "io_bytes");
		int64_t ms = bench_json_i64(w, "runtime"); /* includes end_fsync */
		if (bytes > 0 && ms > 0) {
			r.ok = true;
			r.runtime_s = (double)ms / 1000.0;
			r.mb_s = (double)bytes / 1e6 / r.runtime_s;
		}
	}
	free(out);
	return r;
}

/* ---- append phase ------------------------------------------------------------------------- */

static void lat_push(struct bench_run *run, int64_t ns)
{
	if (run->lat_len == run->lat_cap) {
		size_t nc = run->lat_cap ? run->lat_cap * 2 : 65536;
		int64_t *n = realloc(run->lat_ns, nc * sizeof(*n));
		if (!n) {
			run->errors++;
			return;
		}
		run->lat_ns = n;
		run->lat_cap = nc;
	}
	run->lat_ns[run->lat_len++] = ns;
}

static void append_done(struct log_append *a, int kerr)
{
	struct bench_slot *s = ST_CONTAINER_OF(a, struct bench_slot, a);
	struct bench_run *run = s->part->run;
	int64_t now = st_mono_ns();
	s->busy = false;
	s->part->inflight--;
	run->total_inflight--;
	if (kerr != KERR_NONE) {
		if (run->errors++ < 5)
			fprintf(stderr, "bench: append failed: %s\n", kerr_name(kerr));
		return;
	}
	run->acked_bytes += (int64_t)a->len;
	run->acked_batches++;
	int sec = (int)((now - run->start_ns) / 1000000000);
	if (sec >= 0 && sec < run->per_sec_len)
		run->per_sec_bytes[sec] += (int64_t)a->len;
	lat_push(run, now - s->submit_ns);
}

static int submit_one(struct bench_run *run, struct bench_part *p, struct bench_slot *s)
{
	memcpy(s->buf, run->tmpl, run->tmpl_len); /* the log rewrote the base offset in place */
	memset(&s->a, 0, sizeof(s->a));
	s->a.data = s->buf;
	s->a.len = run->tmpl_len;
	s->a.done = append_done;
	s->submit_ns = st_mono_ns();
	int kerr = log_append(p->log, &s->a);
	if (kerr != KERR_NONE) {
		if (run->errors++ < 5)
			fprintf(stderr, "bench: log_append: %s\n", kerr_name(kerr));
		return -1;
	}
	s->busy = true;
	p->inflight++;
	run->total_inflight++;
	return 0;
}

static int open_logs(struct bench_run *run)
{
	struct log_config cfg;
	log_config_defaults(&cfg);
	for (int i = 0; i < run->o->partitions; i++) {
		struct bench_part *p = &run->parts[i];
		int rc = log_open(&run->ur, p->dir, &cfg, NULL, &p->log);
		if (rc != 0) {
			fprintf(stderr, "bench: log_open %s: %s\n", p->dir, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

static void close_logs(struct bench_run *run)
{
	for (int i = 0; i < run->o->partitions; i++) {
		struct bench_part *p = &run->parts[i];
		if (p->log) {
			int rc = log_close(p->log);
			if (rc != 0)
				fprintf(stderr, "bench: log_close %s: %s\n", p->dir, strerror(-rc));
			p->log = NULL;
		}
	}
}

static int append_phase(struct bench_run *run, double *secs_out)
{
	const struct bench_opts *o = run->o;
	run->start_ns = st_mono_ns();
	int64_t end_ns = run->start_ns + (int64_t)o->seconds * 1000000000;
	bool stop = false;
	while (!stop) {
		for (int i = 0; i < o->partitions && !stop; i++) {
			struct bench_part *p = &run->parts[i];
			for (int k = 0; k < o->window && p->inflight < o->window; k++) {
				if (p->slots[k].busy)
					continue;
				if (submit_one(run, p, &p->slots[k]) != 0) {
					stop = true;
					break;
				}
			}
		}
		int rc = uring_run_once(&run->ur, 100);
		if (rc < 0 && rc != -EINTR && rc != -ETIME) {
			fprintf(stderr, "bench: uring_run_once: %s\n", strerror(-rc));
			run->errors++;
			break;
		}
		if (st_mono_ns() >= end_ns || run->errors)
			stop = true;
	}
	int64_t stop_ns = st_mono_ns();
	/* in flight appends still count: they were submitted within the window */
	for (int guard = 0; run->total_inflight > 0 && guard < 100000; guard++) {
		int rc = uring_run_once(&run->ur, 100);
		if (rc < 0 && rc != -EINTR && rc != -ETIME)
			break;
	}
	*secs_out = (double)(st_mono_ns() - run->start_ns) / 1e9;
	(void)stop_ns;
	return run->total_inflight == 0 && run->errors == 0 ? 0 : -1;
}

/* ---- read phase ----------------------------------------------------------------------------- */

/* Evicts the partition files from the page cache: drop_caches when allowed (root, writable
 * /proc/sys), else POSIX_FADV_DONTNEED on every file (clean after log_close's fsync).
 * Returns the method used and, in *resident_pct, what mincore() still finds cached. */
static const char *evict_cache(struct bench_run *run, double *resident_pct)
{
	const char *method = "none";
	sync();
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd >= 0) {
		if (write(fd, "3\n", 2) == 2)
			method = "drop_caches";
		close(fd);
	}
	int64_t pages = 0, resident = 0;
	long pg = sysconf(_SC_PAGESIZE);
	for (int i = 0; i < run->o->partitions; i++) {
		DIR *d = opendir(run->parts[i].dir);
		if (!d)
			continue;
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			char path[PATH_MAX + 256];
			snprintf(path, sizeof(path), "%s/%s", run->parts[i].dir, de->d_name);
			int f = open(path, O_RDONLY);
			if (f < 0)
				continue;
			struct stat st;
			if (fstat(f, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
				if (strcmp(method, "drop_caches") != 0) {
					fdatasync(f);
					if (posix_fadvise(f, 0, 0, POSIX_FADV_DONTNEED) == 0)
						method = "fadvise(DONTNEED)";
				}
				void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, f, 0);
				if (m != MAP_FAILED) {
					size_t np = ((size_t)st.st_size + (size_t)pg - 1) / (size_t)pg;
					unsigned char *vec = malloc(np);
					if (vec && mincore(m, (size_t)st.st_size, vec) == 0) {
						for (size_t k = 0; k < np; k++)
							resident += vec[k] & 1;
						pages += (int64_t)np;
					}
					free(vec);
					munmap(m, (size_t)st.st_size);
				}
			}
			close(f);
		}
		closedir(d);
	}
	*resident_pct = pages ? 100.0 * (double)resident / (double)pages : 0;
	return method;
}

/* Reads every partition from its start by offset, round-robin, 1 MiB per log_read, with
 * pread of each slice. Returns bytes read, or -1. */
static int64_t read_all(struct bench_run *run, double *secs_out, int64_t *batches_out)
{
	int n = run->o->partitions;
	int64_t *next = calloc((size_t)n, sizeof(*next));
	size_t cap = 4u << 20;
	uint8_t *buf = malloc(cap);
	if (!next || !buf) {
		free(next);
		free(buf);
		return -1;
	}
	for (int i = 0; i < n; i++)
		next[i] = log_start_offset(run->parts[i].log);
	int64_t bytes = 0, batches = 0;
	int64_t t0 = st_mono_ns();
	int live = n;
	for (int64_t guard = 0; live > 0 && guard < (1ll << 40); guard++) {
		live = 0;
		for (int i = 0; i < n; i++) {
			struct log *l = run->parts[i].log;
			int64_t hw = log_high_watermark(l);
			if (next[i] >= hw)
				continue;
			live++;
			struct log_slice s;
			int kerr = log_read(l, next[i], hw, 1 << 20, true, &s);
			if (kerr != KERR_NONE) {
				fprintf(stderr, "bench: log_read p%d offset %" PRId64 ": %s\n", i, next[i], kerr_name(kerr));
				goto fail;
			}
			if (s.len == 0) {
				log_slice_release(&s);
				next[i] = hw;
				continue;
			}
			if ((size_t)s.len > cap) {
				uint8_t *nb = realloc(buf, (size_t)s.len);
				if (!nb) {
					log_slice_release(&s);
					goto fail;
				}
				buf = nb;
				cap = (size_t)s.len;
			}
			int64_t got = 0;
			while (got < s.len) {
				ssize_t r = pread(s.fd, buf + got, (size_t)(s.len - got), s.file_pos + got);
				if (r < 0 && errno == EINTR)
					continue;
				if (r <= 0) {
					fprintf(stderr, "bench: pread: %s\n", r < 0 ? strerror(errno) : "short file");
					log_slice_release(&s);
					goto fail;
				}
				got += r;
			}
			/* count whole batches (and prove the slice holds them) */
			for (int64_t pos = 0; pos + 12 <= s.len;) {
				int64_t sz = 12 + (int64_t)st_be32(buf + pos + 8);
				if (sz < 61 || pos + sz > s.len) {
					fprintf(stderr, "bench: slice of p%d holds a partial batch\n", i);
					log_slice_release(&s);
					goto fail;
				}
				pos += sz;
				batches++;
			}
			bytes += s.len;
			next[i] = s.next_offset;
			log_slice_release(&s);
		}
	}
	*secs_out = (double)(st_mono_ns() - t0) / 1e9;
	*batches_out = batches;
	free(next);
	free(buf);
	return bytes;
fail:
	free(next);
	free(buf);
	return -1;
}

/* ---- main ----------------------------------------------------------------------------------- */

static double tv_s(const struct timeval *tv) { return (double)tv->tv_sec + (double)tv->tv_usec / 1e6; }

static void settle(const struct bench_opts *o)
{
	sync();
	if (o->settle_s > 0)
		sleep((unsigned)o->settle_s);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: strata bench log [--partitions 8] [--seconds 10] [--record-bytes 1024]\n"
		"                        [--batch-bytes 16384] [--window 32] [--dir D] [--keep]\n"
		"                        [--no-fio] [--fio-size 1G] [--settle 10]\n"
		"Appends to N partition logs on one io_uring (fsync before ack, group commit) in a\n"
		"scratch directory under D (default .), compares with fio's sequential write there\n"
		"(1M writes + end_fsync: --fio-size first, then as many bytes as the log wrote, so\n"
		"both meet the disk in the same state; --settle seconds idle between phases), then\n"
		"reads everything back by offset from a cold page cache.\n");
}

static int parse_int_opt(const char *name, const char *v, int lo, int hi, int *out)
{
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (errno || *end || x < lo || x > hi) {
		fprintf(stderr, "bench: --%s must be %d..%d\n", name, lo, hi);
		return -1;
	}
	*out = (int)x;
	return 0;
}

int bench_log_main(int argc, char **argv)
{
	struct bench_opts o = { .partitions = 8, .seconds = 10, .record_bytes = 1024,
				.batch_bytes = 16384, .window = 32, .parent_dir = ".", .fio = true,
				.fio_size = "1G", .settle_s = 10 };
	static const struct option lopts[] = {
		{ "partitions", required_argument, NULL, 'p' },
		{ "seconds", required_argument, NULL, 's' },
		{ "record-bytes", required_argument, NULL, 'r' },
		{ "batch-bytes", required_argument, NULL, 'b' },
		{ "window", required_argument, NULL, 'w' },
		{ "dir", required_argument, NULL, 'd' },
		{ "keep", no_argument, NULL, 'k' },
		{ "no-fio", no_argument, NULL, 'F' },
		{ "fio-size", required_argument, NULL, 'S' },
		{ "settle", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case 'p': bad = parse_int_opt("partitions", optarg, 1, 1024, &o.partitions); break;
		case 's': bad = parse_int_opt("seconds", optarg, 1, 3600, &o.seconds); break;
		case 'r': bad = parse_int_opt("record-bytes", optarg, 1, 1 << 20, &o.record_bytes); break;
		case 'b': bad = parse_int_opt("batch-bytes", optarg, 1, 1 << 20, &o.batch_bytes); break;
		case 'w': bad = parse_int_opt("window", optarg, 1, 4096, &o.window); break;
		case 'd': o.parent_dir = optarg; break;
		case 'k': o.keep = true; break;
		case 'F': o.fio = false; break;
		case 'S': o.fio_size = optarg; break;
		case 'T': bad = parse_int_opt("settle", optarg, 0, 600, &o.settle_s); break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
		if (bad)
			return 2;
	}
	if (optind != argc) {
		usage();
		return 2;
	}
	slog_set_level(SLOG_WARN);

	char root[PATH_MAX];
	if (snprintf(root, sizeof(root), "%s/strata-bench-XXXXXX", o.parent_dir) >= (int)sizeof(root) ||
	    !mkdtemp(root)) {
		fprintf(stderr, "bench: cannot create a directory under %s: %s\n", o.parent_dir, strerror(errno));
		return 1;
	}
	char rootabs[PATH_MAX];
	if (!realpath(root, rootabs))
		snprintf(rootabs, sizeof(rootabs), "%s", root);

	struct bench_run run;
	memset(&run, 0, sizeof(run));
	run.o = &o;
	int status = 1;
	run.records_per_batch = ST_MAX(1, o.batch_bytes / o.record_bytes);
	run.tmpl = build_template(run.records_per_batch, o.record_bytes, st_now_ms(), &run.tmpl_len);
	run.parts = calloc((size_t)o.partitions, sizeof(*run.parts));
	run.per_sec_len = o.seconds + 2;
	run.per_sec_bytes = calloc((size_t)run.per_sec_len, sizeof(*run.per_sec_bytes));
	if (!run.tmpl || !run.parts || !run.per_sec_bytes)
		goto out;
	for (int i = 0; i < o.partitions; i++) {
		struct bench_part *p = &run.parts[i];
		p->run = &run;
		if (snprintf(p->dir, sizeof(p->dir), "%.*s/bench-%d", PATH_MAX - 32, rootabs, i) >=
		    (int)sizeof(p->dir))
			goto out;
		p->slots = calloc((size_t)o.window, sizeof(*p->slots));
		if (!p->slots)
			goto out;
		for (int k = 0; k < o.window; k++) {
			p->slots[k].part = p;
			p->slots[k].buf = malloc(run.tmpl_len);
			if (!p->slots[k].buf)
				goto out;
		}
	}

	printf("strata bench log: %d partitions, %d records of %d bytes per batch (%zu bytes on disk),\n"
	       "  window %d appends in flight per partition, fsync before ack, %d s, one io_uring\n"
	       "  dir %s (%s)\n\n",
	       o.partitions, run.records_per_batch, o.record_bytes, run.tmpl_len, o.window, o.seconds,
	       rootabs, fs_name(rootabs));
	fflush(stdout);

	/* Virtual disks drift (host write-back caches, burst credits): fio writes --fio-size first,
	 * then, after the log, exactly the log's volume, with idle time between phases; the ratio
	 * is taken against the equal-volume run. */
	struct fio_result fio_seq[2], fio_pat;
	memset(fio_seq, 0, sizeof(fio_seq));
	memset(&fio_pat, 0, sizeof(fio_pat));
	char grp[16];
	snprintf(grp, sizeof(grp), "%d", o.window);
	char jobs[16];
	snprintf(jobs, sizeof(jobs), "%d", o.partitions);
	char per_job[32];
	{
		/* the pattern run writes the same total as the plain one, split over the jobs */
		char *end;
		double sz = strtod(o.fio_size, &end);
		double mul = *end == 'G' || *end == 'g' ? 1024 : *end == 'M' || *end == 'm' ? 1 : 1.0 / 1024 / 1024;
		snprintf(per_job, sizeof(per_job), "%dM", ST_MAX(1, (int)(sz * mul / o.partitions)));
	}
	if (o.fio) {
		char what[96];
		snprintf(what, sizeof(what), "fio seq write, bs 1M, end_fsync, %s", o.fio_size);
		fio_seq[0] = fio_run(rootabs, what, "seq", "1M", o.fio_size, "1", "io_uring", NULL);
		if (!fio_seq[0].ok)
			fprintf(stderr, "bench: fio did not run (is it installed?); continuing without it\n");
	}

	settle(&o);
	if (uring_init(&run.ur, 1024) != 0) {
		fprintf(stderr, "bench: uring_init failed\n");
		goto out;
	}
	if (open_logs(&run) != 0)
		goto out_ring;
	double append_s = 0;
	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	int arc = append_phase(&run, &append_s);
	getrusage(RUSAGE_SELF, &ru1);
	double cpu_user = tv_s(&ru1.ru_utime) - tv_s(&ru0.ru_utime);
	double cpu_sys = tv_s(&ru1.ru_stime) - tv_s(&ru0.ru_stime);
	long ctx_sw = (ru1.ru_nvcsw - ru0.ru_nvcsw) + (ru1.ru_nivcsw - ru0.ru_nivcsw);
	struct log_stats wst = { 0 };
	for (int i = 0; i < o.partitions; i++) {
		struct log_stats st;
		log_get_stats(run.parts[i].log, &st);
		wst.writes += st.writes;
		wst.appends_written += st.appends_written;
		wst.fsync_rounds += st.fsync_rounds;
	}
	close_logs(&run);
	if (arc != 0)
		fprintf(stderr, "bench: the append phase had errors (%d)\n", run.errors);

	if (o.fio && fio_seq[0].ok) {
		settle(&o);
		char vol[32], what[96];
		snprintf(vol, sizeof(vol), "%lldM", (long long)ST_MAX(1, run.acked_bytes >> 20));
		snprintf(what, sizeof(what), "fio seq write, bs 1M, end_fsync, %s (log's volume)", vol);
		fio_seq[1] = fio_run(rootabs, what, "seq", "1M", vol, "1", "io_uring", NULL);
		settle(&o);
		snprintf(what, sizeof(what), "fio %s jobs x 16k writes, fdatasync every %s, %s", jobs, grp,
			 o.fio_size);
		fio_pat = fio_run(rootabs, what, "pat", "16k", per_job, jobs, "psync", grp);
	}

	/* cold read by offset */
	double resident = 0;
	const char *method = evict_cache(&run, &resident);
	int64_t t_open = st_mono_ns();
	if (open_logs(&run) != 0)
		goto out_ring;
	double open_ms = (double)(st_mono_ns() - t_open) / 1e6;
	double cold_s = 0, warm_s = 0;
	int64_t cold_batches = 0, warm_batches = 0;
	int64_t cold = read_all(&run, &cold_s, &cold_batches);
	int64_t warm = read_all(&run, &warm_s, &warm_batches);
	int64_t size_total = 0;
	for (int i = 0; i < o.partitions; i++)
		size_total += log_size_bytes(run.parts[i].log);
	close_logs(&run);

	/* report */
	double log_mb_s = (double)run.acked_bytes / 1e6 / append_s;
	printf("%-58s %10s\n", "write", "MB/s");
	for (int k = 0; k < 2; k++)
		if (fio_seq[k].ok)
			printf("  %-56s %10.1f\n", fio_seq[k].what, fio_seq[k].mb_s);
	if (fio_pat.ok)
		printf("  %-56s %10.1f\n", fio_pat.what, fio_pat.mb_s);
	printf("  %-56s %10.1f\n", "strata log append, durable (acked bytes / time)", log_mb_s);
	if (fio_seq[1].ok) {
		double ratio = 100.0 * log_mb_s / fio_seq[1].mb_s;
		printf("  %-56s %9.0f%%  (target >= 80%%: %s)\n", "log / fio seq write of the same volume",
		       ratio, ratio >= 80 ? "met" : "BELOW");
	}
	if (fio_seq[0].ok)
		printf("  %-56s %9.0f%%\n", "log / fio seq write of --fio-size", 100.0 * log_mb_s / fio_seq[0].mb_s);
	printf("\n  appends acknowledged: %" PRId64 " batches, %" PRId64 " records, %.1f MB in %.2f s\n",
	       run.acked_batches, run.acked_batches * run.records_per_batch, (double)run.acked_bytes / 1e6, append_s);
	printf("  CPU in the append phase (this process, io-wq workers included): user %.2f s, sys %.2f s"
	       " = %.0f%% of one core\n", cpu_user, cpu_sys, 100.0 * (cpu_user + cpu_sys) / append_s);
	printf("  context switches (all threads): %ld; %" PRId64 " writes (%.1f appends, %.0f KiB each),"
	       " %" PRId64 " fsync rounds\n", ctx_sw, wst.writes,
	       wst.writes ? (double)wst.appends_written / (double)wst.writes : 0.0,
	       wst.writes ? (double)wst.appends_written * (double)run.tmpl_len / 1024.0 / (double)wst.writes : 0.0,
	       wst.fsync_rounds);
	printf("  per second (MB/s):");
	for (int s = 0; s < o.seconds && s < run.per_sec_len; s++)
		printf(" %.0f", (double)run.per_sec_bytes[s] / 1e6);
	printf("\n");
	if (run.lat_len) {
		qsort(run.lat_ns, run.lat_len, sizeof(*run.lat_ns), cmp_i64);
		printf("  append-to-durable latency (ms): p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n",
		       pct(run.lat_ns, run.lat_len, 50) / 1e6, pct(run.lat_ns, run.lat_len, 90) / 1e6,
		       pct(run.lat_ns, run.lat_len, 99) / 1e6, pct(run.lat_ns, run.lat_len, 99.9) / 1e6,
		       (double)run.lat_ns[run.lat_len - 1] / 1e6);
	}
	printf("\n%-58s %10s\n", "read by offset (log_read + pread, 1 MiB slices, round-robin)", "MB/s");
	if (cold >= 0)
		printf("  %-56s %10.1f\n", "cold page cache", (double)cold / 1e6 / cold_s);
	if (warm >= 0)
		printf("  %-56s %10.1f\n", "warm page cache (second pass)", (double)warm / 1e6 / warm_s);
	printf("  eviction: %s; %.1f%% of the files' pages still cached before the cold read\n",
	       method, resident);
	printf("  reopen after clean close: %.1f ms for %d logs; %" PRId64 " batches, %.1f MB read of %.1f MB\n",
	       open_ms, o.partitions, cold_batches, (double)cold / 1e6, (double)size_total / 1e6);
	bool complete = cold == size_total && warm == size_total &&
			cold_batches == run.acked_batches && warm_batches == run.acked_batches;
	if (!complete)
		printf("  ERROR: reads did not return exactly what was acknowledged\n");
	status = arc == 0 && complete ? 0 : 1;
out_ring:
	close_logs(&run);
	uring_fini(&run.ur);
out:
	if (run.parts)
		for (int i = 0; i < o.partitions; i++) {
			if (run.parts[i].slots)
				for (int k = 0; k < o.window; k++)
					free(run.parts[i].slots[k].buf);
			free(run.parts[i].slots);
		}
	free(run.parts);
	free(run.tmpl);
	free(run.per_sec_bytes);
	free(run.lat_ns);
	if (o.keep)
		printf("  kept %s\n", rootabs);
	else
		rm_tree(rootabs);
	return status;
}
