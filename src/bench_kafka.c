/* bench_kafka.c -- `strata bench kafka`: producer and consumer workloads through librdkafka (the
 * reference Kafka client) against a broker, with the machine's limits measured in the same run:
 * fio's sequential write bandwidth on the broker's data filesystem, its flush latency, and
 * loopback TCP bandwidth (built-in sender/receiver pairs). Besides librdkafka, a minimal raw
 * Fetch client shows what the broker serves when the client does no per-record work (printed
 * next to the consume target, never used for it). Prints throughput, latency percentiles, CPU
 * use and the targets with PASS/MISS; a missed target never fails the command.
 * Owns only the broker it starts (--start: a child stratad on a free port, temp data dir) and
 * its temp files. It must not link broker internals: everything goes over the Kafka protocol,
 * so it measures exactly what a client sees. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <dirent.h>

#include <librdkafka/rdkafka.h>

#include "strata/bench.h"
#include "strata/bench_kafka.h"
#include "strata/common.h"

/* ---- options ------------------------------------------------------------------------------ */

enum {
	BK_LATENCY = 1,    /* 1 KiB x 16 partitions at --rate, end-to-end latency */
	BK_THROUGHPUT = 2, /* 1 KiB x 16 partitions at max rate, acks=all */
	BK_SMALL = 4,      /* 100-byte records, one producer, max rate, acks=1 and acks=all */
	BK_CONSUME = 8,    /* read back the throughput topic from the page cache */
	BK_ALL = 15,
};

#define BK_MAX_SETS 32
#define BK_MAX_CONSUMERS 16

struct bk_opts {
	const char *bootstrap; /* NULL: start our own stratad */
	const char *stratad;   /* NULL: next to this binary */
	const char *dir;       /* temp broker data dir parent, and where fio runs */
	const char *broker_sets[BK_MAX_SETS];
	int n_broker_sets;
	const char *producer_sets[BK_MAX_SETS];
	int n_producer_sets;
	const char *consumer_sets[BK_MAX_SETS];
	int n_consumer_sets;
	unsigned shapes;
	double seconds;        /* per producing workload */
	double warmup_s;       /* latency workload: produced, not measured */
	double rate_mb_s;      /* latency workload's rate, MB = 10^6 bytes */
	int partitions;        /* the 1 KiB workloads */
	int record_bytes;
	int small_partitions;  /* the 100-byte workloads */
	int small_bytes;
	int linger_ms;         /* max-rate producers */
	bool round_robin;      /* fixed rate: partition per record round robin, not librdkafka's */
	bool fio;
	const char *fio_size;
	uint64_t fio_match_max;  /* cap of the fio run matched to the produced volume; 0: none */
	uint64_t consume_bytes;  /* the consume workload reads at most the newest this many */
	double loopback_s;
	int consumers;         /* librdkafka consumers of the consume workload (and raw connections) */
	int sweep[8];          /* more consumer counts to run 'consume' with (same records) */
	int n_sweep;
	bool raw_fetch;        /* consume: also the raw Fetch loop */
	bool settle;           /* let the disk go quiet after bulk writes */
	bool keep;
	bool verbose;          /* per-second series */
};

/* ---- latency histogram: log-linear, 64 sub-buckets per power of two (<1.6% error) ---------- */

#define BK_H_SUB_BITS 7
#define BK_H_SUB (1u << BK_H_SUB_BITS)
#define BK_H_HALF (BK_H_SUB / 2)
#define BK_H_MAX_MSB 47 /* ~39 hours in ns; larger values land in the last bucket */
#define BK_H_BUCKETS (BK_H_SUB + (BK_H_MAX_MSB - BK_H_SUB_BITS + 1) * BK_H_HALF)

struct bk_hist {
	uint64_t n;
	int64_t max_ns;
	uint64_t c[BK_H_BUCKETS];
};

static size_t bk_hist_index(int64_t v)
{
	uint64_t u = v < 0 ? 0 : (uint64_t)v;
	if (u < BK_H_SUB)
		return (size_t)u;
	int msb = 63 - __builtin_clzll(u);
	if (msb > BK_H_MAX_MSB)
		return BK_H_BUCKETS - 1;
	uint64_t mant = u >> (msb - (BK_H_SUB_BITS - 1)); /* in [HALF, SUB) */
	return BK_H_SUB + (size_t)(msb - BK_H_SUB_BITS) * BK_H_HALF + (size_t)(mant - BK_H_HALF);
}

/* The middle of bucket i. */
static int64_t bk_hist_value(size_t i)
{
	if (i < BK_H_SUB)
		return (int64_t)i;
	size_t k = i - BK_H_SUB;
	int msb = (int)(k / BK_H_HALF) + BK_H_SUB_BITS;
	uint64_t mant = k % BK_H_HALF + BK_H_HALF;
	int shift = msb - (BK_H_SUB_BITS - 1);
	return (int64_t)((mant << shift) + ((1ull << shift) >> 1));
}

static void bk_hist_add(struct bk_hist *h, int64_t v_ns)
{
	h->c[bk_hist_index(v_ns)]++;
	h->n++;
	if (v_ns > h->max_ns)
		h->max_ns = v_ns;
}

static double bk_hist_pct_ms(const struct bk_hist *h, double pct)
{
	if (h->n == 0)
		return 0;
	uint64_t rank = (uint64_t)(pct / 100.0 * (double)h->n + 0.999999);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (size_t i = 0; i < BK_H_BUCKETS; i++) {
		seen += h->c[i];
		if (seen >= rank)
			return (double)ST_MIN(bk_hist_value(i), h->max_ns) / 1e6;
	}
	return (double)h->max_ns / 1e6;
}

/* ---- results -------------------------------------------------------------------------------- */

struct bk_result {
	bool ran;
	bool ok;              /* ran without client errors */
	char name[200];
	uint64_t records, bytes, errors;
	double secs;
	double broker_cpu_pct, client_cpu_pct; /* of one core; broker < 0: unknown */
	double machine_cpu_pct;                /* all processes and the kernel, of one core */
	bool has_e2e, has_ack;
	struct bk_hist e2e, ack;
	double behind_max_ms;  /* fixed rate: worst lag of a send behind its schedule */
	double sec_min_mb, sec_med_mb, sec_max_mb; /* max rate: per-second MB/s over full seconds */
	int n_secs;
	double target_rate;    /* fixed rate: records/s asked for */
	/* fixed rate, per second of the measured run: worst e2e latency, and what the machine did */
	int n_lat_secs;
	double *sec_e2e_max_ms, *sec_dirty_mb, *sec_wb_mb, *sec_busy_pct;
	uint64_t slow;         /* records with e2e latency over BK_SLOW_NS */
	/* consume: per consumer, and the first batches (not in the rate) */
	int n_sub;
	struct { int parts; uint64_t records, bytes; double secs; } sub[BK_MAX_CONSUMERS];
	double startup_ms;
	uint64_t startup_records;
	char note[240];        /* printed under the figures */
};

static double bk_rec_s(const struct bk_result *r) { return r->secs > 0 ? (double)r->records / r->secs : 0; }
static double bk_mb_s(const struct bk_result *r) { return r->secs > 0 ? (double)r->bytes / 1e6 / r->secs : 0; }

/* ---- CPU accounting: the broker from /proc, ourselves (all librdkafka threads) by rusage ---- */

struct bk_cpu {
	int64_t wall_ns;
	int64_t broker_ticks; /* -1: unknown */
	int64_t self_us;
	int64_t sys_busy, sys_total; /* /proc/stat, all cores, ticks; total 0: unknown */
};

/* Busy and total ticks of all cores: others' work on a shared machine shows up here. */
static void bk_proc_stat(int64_t *busy, int64_t *total)
{
	*busy = *total = 0;
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return;
	unsigned long long v[10] = { 0 };
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
		   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) >= 8) {
		/* user nice system idle iowait irq softirq steal (guest* are inside user) */
		int64_t idle = (int64_t)(v[3] + v[4]);
		int64_t all = (int64_t)(v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7]);
		*busy = all - idle;
		*total = all;
	}
	fclose(f);
}

static int64_t bk_proc_ticks(pid_t pid)
{
	if (pid <= 0)
		return -1;
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *p = strrchr(buf, ')');
	unsigned long ut, st;
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (int64_t)(ut + st);
}

static void bk_cpu_snap(pid_t broker, struct bk_cpu *s)
{
	struct rusage ru;
	s->wall_ns = st_mono_ns();
	s->broker_ticks = bk_proc_ticks(broker);
	bk_proc_stat(&s->sys_busy, &s->sys_total);
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		s->self_us = (int64_t)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec +
			     (int64_t)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec;
	else
		s->self_us = 0;
}

static void bk_cpu_done(const struct bk_cpu *a, pid_t broker, struct bk_result *r)
{
	struct bk_cpu b;
	bk_cpu_snap(broker, &b);
	double wall_s = (double)(b.wall_ns - a->wall_ns) / 1e9;
	if (wall_s <= 0)
		return;
	long hz = sysconf(_SC_CLK_TCK);
	r->broker_cpu_pct = (a->broker_ticks >= 0 && b.broker_ticks >= 0 && hz > 0) ?
		100.0 * (double)(b.broker_ticks - a->broker_ticks) / (double)hz / wall_s : -1;
	r->client_cpu_pct = 100.0 * (double)(b.self_us - a->self_us) / 1e6 / wall_s;
	/* as % of one core, like the others: busy share of all cores x cores */
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	r->machine_cpu_pct = b.sys_total > a->sys_total ?
		100.0 * (double)(b.sys_busy - a->sys_busy) / (double)(b.sys_total - a->sys_total) *
		(double)(ncpu > 0 ? ncpu : 1) : -1;
}

/* ---- child processes ------------------------------------------------------------------------ */

/* fio sequential write (1 MiB buffered writes, fsync at the end, which fio counts in the
 * runtime): the bandwidth a log that fsyncs before it acknowledges can hope for. */
static double bk_fio_mb_s(const char *dir, const char *size)
{
	char a_dir[PATH_MAX + 16], a_size[64];
	snprintf(a_dir, sizeof a_dir, "--directory=%s", dir);
	snprintf(a_size, sizeof a_size, "--size=%s", size);
	char *argv[] = { "fio", a_dir, "--name=strata-bench-kafka-fio", "--rw=write", "--bs=1M",
			 a_size, "--ioengine=psync", "--direct=0", "--end_fsync=1",
			 "--output-format=json", NULL };
	char *out = bench_run_capture(argv);
	/* fio leaves its data file behind: <name>.<job>.<file> */
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (strncmp(de->d_name, "strata-bench-kafka-fio.", 23) == 0) {
				char path[PATH_MAX + 300];
				snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
				unlink(path);
			}
		}
		closedir(d);
	}
	if (!out)
		return -1;
	double mb_s = -1;
	const char *w = strstr(out, "\"write\" : {"); /* the job's write stats, not the rw option */
	if (w) {
		int64_t bytes = bench_json_i64(w, "io_bytes");
		int64_t ms = bench_json_i64(w, "runtime");
		if (bytes > 0 && ms > 0)
			mb_s = (double)bytes / 1e6 / ((double)ms / 1000.0);
	}
	free(out);
	return mb_s;
}

/* ---- loopback TCP bandwidth: streams in parallel, a sender and a receiver thread each -------- */

#define BK_LO_CHUNK (256 * 1024)
#define BK_LO_MAX_STREAMS 16

struct bk_lo_stream {
	int lfd;            /* listening socket (receiver side) */
	struct sockaddr_in sa;
	_Atomic int64_t *end_ns; /* shared: when the senders stop */
	pthread_t rx, tx;
	bool rx_started, tx_started;
	uint64_t bytes;     /* received */
	int err;
};

static void *bk_lo_recv(void *arg)
{
	struct bk_lo_stream *s = arg;
	int fd = accept(s->lfd, NULL, NULL);
	if (fd < 0) {
		s->err = errno;
		return NULL;
	}
	char *buf = malloc(BK_LO_CHUNK * 4);
	if (!buf) {
		s->err = ENOMEM;
		close(fd);
		return NULL;
	}
	for (;;) {
		ssize_t r = read(fd, buf, BK_LO_CHUNK * 4);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		s->bytes += (uint64_t)r;
	}
	free(buf);
	close(fd);
	return NULL;
}

static void *bk_lo_send(void *arg)
{
	struct bk_lo_stream *s = arg;
	char *buf = calloc(1, BK_LO_CHUNK);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (buf && fd >= 0 && connect(fd, (struct sockaddr *)&s->sa, sizeof s->sa) == 0) {
		while (st_mono_ns() < atomic_load(s->end_ns)) {
			ssize_t w = send(fd, buf, BK_LO_CHUNK, MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
		}
	} else {
		s->err = buf ? errno : ENOMEM;
		shutdown(s->lfd, SHUT_RDWR); /* unblocks accept */
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

/* Total bandwidth of `streams` loopback TCP connections sending at once for secs (256 KiB
 * writes, 1 MiB reads, default socket buffers: what a client reading one or a few broker
 * connections can at most receive). Received bytes over the sending time: the receivers drain
 * what is still in flight after it, so this slightly flatters the limit, never the result. */
static double bk_loopback_mb_s(double secs, int streams)
{
	struct bk_lo_stream s[BK_LO_MAX_STREAMS];
	_Atomic int64_t end_ns = INT64_MAX;
	streams = ST_MAX(1, ST_MIN(streams, BK_LO_MAX_STREAMS));
	memset(s, 0, sizeof s);
	for (int i = 0; i < BK_LO_MAX_STREAMS; i++)
		s[i].lfd = -1;
	int ok = 0;
	for (int i = 0; i < streams; i++) {
		s[i].lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		s[i].end_ns = &end_ns;
		s[i].sa = (struct sockaddr_in){ .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t sl = sizeof s[i].sa;
		if (s[i].lfd < 0)
			break;
		if (bind(s[i].lfd, (struct sockaddr *)&s[i].sa, sizeof s[i].sa) != 0 || listen(s[i].lfd, 1) != 0 ||
		    getsockname(s[i].lfd, (struct sockaddr *)&s[i].sa, &sl) != 0 ||
		    pthread_create(&s[i].rx, NULL, bk_lo_recv, &s[i]) != 0)
			break;
		s[i].rx_started = true;
		ok++;
	}
	int64_t t0 = st_mono_ns();
	if (ok == streams) {
		atomic_store(&end_ns, t0 + (int64_t)(secs * 1e9));
		for (int i = 0; i < streams; i++)
			s[i].tx_started = pthread_create(&s[i].tx, NULL, bk_lo_send, &s[i]) == 0;
	}
	uint64_t bytes = 0;
	int err = ok == streams ? 0 : EIO;
	for (int i = 0; i < streams; i++) {
		if (s[i].tx_started)
			pthread_join(s[i].tx, NULL);
		else if (s[i].lfd >= 0)
			shutdown(s[i].lfd, SHUT_RDWR);
		if (s[i].rx_started)
			pthread_join(s[i].rx, NULL);
		if (s[i].lfd >= 0)
			close(s[i].lfd);
		if (!s[i].tx_started || s[i].err)
			err = s[i].err ? s[i].err : EIO;
		bytes += s[i].bytes;
	}
	int64_t t1 = st_mono_ns();
	int64_t end = atomic_load(&end_ns);
	if (err || bytes == 0 || end == INT64_MAX)
		return -1;
	return (double)bytes / 1e6 / ((double)(ST_MIN(end, t1) - t0) / 1e9);
}

/* ---- the broker we start ---------------------------------------------------------------------- */

struct bk_broker {
	pid_t pid;     /* 0: not ours */
	int port;
	char root[PATH_MAX];   /* temp dir: log/ and stratad.log */
	char bootstrap[300];
};

static int bk_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof sa;
	int port = -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static bool bk_port_open(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	close(fd);
	return ok;
}

static void bk_sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void bk_broker_dump_log(const struct bk_broker *b)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/stratad.log", b->root);
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	fprintf(stderr, "bench: --- %s (last lines) ---\n", path);
	char line[512];
	char ring[20][512];
	int n = 0;
	while (fgets(line, sizeof line, f))
		snprintf(ring[n++ % 20], sizeof ring[0], "%s", line);
	for (int i = n > 20 ? n - 20 : 0; i < n; i++)
		fprintf(stderr, "  %s", ring[i % 20]);
	fclose(f);
}

static int bk_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* Finds stratad: --stratad, else next to this executable. */
static int bk_stratad_path(const struct bk_opts *o, char *out, size_t out_len)
{
	if (o->stratad) {
		if ((size_t)snprintf(out, out_len, "%s", o->stratad) >= out_len)
			return -ENAMETOOLONG;
	} else {
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
		if (n <= 0)
			return -errno;
		self[n] = 0;
		char *slash = strrchr(self, '/');
		if (!slash)
			return -ENOENT;
		*slash = 0;
		if ((size_t)snprintf(out, out_len, "%s/stratad", self) >= out_len)
			return -ENAMETOOLONG;
	}
	return access(out, X_OK) == 0 ? 0 : -errno;
}

static int bk_broker_start(const struct bk_opts *o, struct bk_broker *b)
{
	char exe[PATH_MAX];
	int rc = bk_stratad_path(o, exe, sizeof exe);
	if (rc < 0) {
		fprintf(stderr, "bench: no stratad (%s): %s; build it or pass --stratad PATH\n",
			o->stratad ? o->stratad : "next to strata", strerror(-rc));
		return -1;
	}
	char tmpl[PATH_MAX];
	if ((size_t)snprintf(tmpl, sizeof tmpl, "%s/strata-bench-kafka-XXXXXX", o->dir) >= sizeof tmpl ||
	    !mkdtemp(tmpl)) {
		fprintf(stderr, "bench: cannot create a directory under %s: %s\n", o->dir, strerror(errno));
		return -1;
	}
	if (!realpath(tmpl, b->root))
		snprintf(b->root, sizeof b->root, "%s", tmpl);
	b->port = bk_free_port();
	if (b->port <= 0) {
		fprintf(stderr, "bench: no free port\n");
		return -1;
	}
	snprintf(b->bootstrap, sizeof b->bootstrap, "127.0.0.1:%d", b->port);

	char a_listen[64], a_logdirs[PATH_MAX + 16], logpath[PATH_MAX + 32];
	snprintf(a_listen, sizeof a_listen, "listeners=PLAINTEXT://127.0.0.1:%d", b->port);
	snprintf(a_logdirs, sizeof a_logdirs, "log.dirs=%s/log", b->root);
	snprintf(logpath, sizeof logpath, "%s/stratad.log", b->root);
	char *argv[10 + 2 * BK_MAX_SETS];
	int n = 0;
	argv[n++] = exe;
	argv[n++] = "--set";
	argv[n++] = a_listen;
	argv[n++] = "--set";
	argv[n++] = a_logdirs;
	/* no fixed metrics port to collide with another broker on the machine (--set may still
	 * ask for one: later settings win) */
	argv[n++] = "--set";
	argv[n++] = "metrics.listener=none";
	for (int i = 0; i < o->n_broker_sets; i++) {
		argv[n++] = "--set";
		argv[n++] = (char *)o->broker_sets[i];
	}
	argv[n] = NULL;

	b->pid = fork();
	if (b->pid < 0) {
		b->pid = 0;
		fprintf(stderr, "bench: fork: %s\n", strerror(errno));
		return -1;
	}
	if (b->pid == 0) {
		int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(exe, argv);
		_exit(127);
	}
	for (int i = 0; i < 300; i++) { /* 30 s */
		int st;
		if (waitpid(b->pid, &st, WNOHANG) == b->pid) {
			fprintf(stderr, "bench: stratad exited during startup (status %d)\n",
				WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
			b->pid = 0;
			bk_broker_dump_log(b);
			return -1;
		}
		if (bk_port_open(b->port))
			return 0;
		bk_sleep_ms(100);
	}
	fprintf(stderr, "bench: stratad does not listen on %s after 30 s\n", b->bootstrap);
	bk_broker_dump_log(b);
	return -1;
}

/* SIGTERM, then SIGKILL after 60 s. Returns the exit status (128+signal when killed). */
static int bk_broker_stop(struct bk_broker *b)
{
	if (b->pid <= 0)
		return 0;
	kill(b->pid, SIGTERM);
	int st = 0;
	for (int i = 0; i < 600; i++) {
		pid_t r = waitpid(b->pid, &st, WNOHANG);
		if (r == b->pid)
			goto done;
		if (r < 0 && errno != EINTR)
			goto done;
		bk_sleep_ms(100);
	}
	fprintf(stderr, "bench: stratad did not stop in 60 s; killing it\n");
	kill(b->pid, SIGKILL);
	while (waitpid(b->pid, &st, 0) < 0 && errno == EINTR)
		;
done:
	b->pid = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* ---- the disk between workloads: writeback, flush latency ------------------------------------ */

/* Dirty and Writeback of /proc/meminfo in bytes (-1: unknown). */
static void bk_meminfo_dirty(int64_t *dirty, int64_t *writeback)
{
	*dirty = *writeback = -1;
	FILE *f = fopen("/proc/meminfo", "r");
	if (!f)
		return;
	char line[128];
	long long kb;
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "Dirty: %lld kB", &kb) == 1)
			*dirty = kb * 1024;
		else if (sscanf(line, "Writeback: %lld kB", &kb) == 1)
			*writeback = kb * 1024;
	}
	fclose(f);
}

struct bk_flush {
	int n;
	double p50_ms, p99_ms, max_ms;
};

static int bk_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

#define BK_FLUSH_MAX 1000

/* The disk's flush latency as an acks=all broker meets it: 4 KiB appends to a file in dir,
 * each followed by fdatasync (a journal commit for the size change on ext4, and a cache
 * flush), one every 5 ms for secs. Returns 0, or -errno. */
static int bk_flush_probe(const char *dir, double secs, struct bk_flush *out)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof path, "%s/strata-bench-kafka-flush-probe", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	static double lat[BK_FLUSH_MAX];
	char buf[4096];
	memset(buf, 'f', sizeof buf);
	int n = 0, rc = 0;
	int64_t end = st_mono_ns() + (int64_t)(secs * 1e9);
	while (n < BK_FLUSH_MAX && st_mono_ns() < end) {
		int64_t a = st_mono_ns();
		if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fdatasync(fd) != 0) {
			rc = errno ? -errno : -EIO;
			break;
		}
		lat[n++] = (double)(st_mono_ns() - a) / 1e6;
		bk_sleep_ms(5);
	}
	close(fd);
	unlink(path);
	if (rc < 0 || n == 0)
		return rc < 0 ? rc : -EIO;
	qsort(lat, (size_t)n, sizeof lat[0], bk_cmp_double);
	out->n = n;
	out->p50_ms = lat[n / 2];
	out->p99_ms = lat[ST_MIN(n - 1, (int)((double)n * 0.99))];
	out->max_ms = lat[n - 1];
	return 0;
}

/* After a bulk write (fio, a max-rate workload, a topic deletion): lets the disk go quiet
 * before the next workload measures anything, so that it does not pay for its predecessor's
 * writeback. syncfs() (writes back everything and commits the journal, with any discards of
 * deleted files), then Dirty + Writeback back to below max(64 MiB, what it was before + 32 MiB)
 * (others' writes on a shared machine keep some dirty), then 1 s flush probes until one has no
 * fdatasync over 20 ms (at most 5). Bounded: at most ~40 s. Prints one line. */
static void bk_settle(const char *dir, int64_t dirty_before, const char *after)
{
	int64_t t0 = st_mono_ns();
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int64_t sync_ns = 0;
	if (dfd >= 0) {
		int64_t a = st_mono_ns();
		if (syncfs(dfd) != 0)
			fprintf(stderr, "bench: syncfs %s: %s\n", dir, strerror(errno));
		sync_ns = st_mono_ns() - a;
		close(dfd);
	}
	int64_t d0, w0, d, w;
	bk_meminfo_dirty(&d0, &w0);
	int64_t limit = ST_MAX(64ll << 20, ST_MAX(dirty_before, 0) + (32ll << 20));
	d = d0;
	w = w0;
	for (int i = 0; i < 300 && d >= 0 && w >= 0 && d + w > limit; i++) { /* 30 s */
		bk_sleep_ms(100);
		bk_meminfo_dirty(&d, &w);
	}
	int64_t t1 = st_mono_ns();
	struct bk_flush fl = { 0 };
	int probes = 0;
	for (; probes < 5; probes++) {
		if (bk_flush_probe(dir, 1.0, &fl) < 0)
			break;
		if (fl.max_ms <= 20)
			break;
	}
	printf("  settle after %s: syncfs %.1f ms; Dirty+Writeback %.0f -> %.0f MB in %.1f s;",
	       after, (double)sync_ns / 1e6, (double)(d0 + w0) / 1e6, (double)(d + w) / 1e6,
	       (double)(t1 - t0) / 1e9);
	if (fl.n > 0)
		printf(" disk flush (4 KiB append + fdatasync): p50 %.2f p99 %.2f max %.2f ms"
		       " (%d probe%s of 1 s%s)\n", fl.p50_ms, fl.p99_ms, fl.max_ms, ST_MIN(probes + 1, 5),
		       probes ? "s" : "", fl.max_ms > 20 ? ", still over 20 ms" : "");
	else
		printf(" flush probe failed\n");
	fflush(stdout);
}

/* ---- librdkafka configuration ----------------------------------------------------------------- */

/* What an operator would set for throughput: big batches, a little linger, no compression
 * (the records are incompressible anyway), deep queues so the application never blocks. */
static const char *const bk_prod_common[][2] = {
	{ "compression.type", "none" },
	{ "enable.idempotence", "false" },
	{ "socket.nagle.disable", "true" },
	{ "batch.size", "1000000" },
	{ "queue.buffering.max.messages", "2000000" },
	{ "queue.buffering.max.kbytes", "262144" },
	{ "message.timeout.ms", "120000" },
};
/* Fetches of 1 MB (256 KiB a partition), not librdkafka's 50 MB: the client parses what it
 * just received while it is still in the CPU cache. With 32 MB answers (8 partitions x 4 MiB)
 * the client spent 0.7-1.3 us of CPU per 1 KiB record, with 1 MB 0.4-0.5 us (2 cores, shared
 * with the broker). Deep prefetch queues: the fetcher never waits for the application. */
static const char *const bk_cons_common[][2] = {
	{ "enable.auto.commit", "false" },
	{ "enable.auto.offset.store", "false" },
	{ "enable.partition.eof", "false" },
	{ "socket.nagle.disable", "true" },
	{ "fetch.max.bytes", "1048576" },
	{ "max.partition.fetch.bytes", "262144" },
	{ "queued.min.messages", "1000000" },
	{ "queued.max.messages.kbytes", "262144" },
	{ "fetch.wait.max.ms", "100" },
	{ "check.crcs", "false" }, /* librdkafka's default, spelled out: the bench verifies offsets */
};

static int bk_set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
	char err[256];
	if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "bench: librdkafka %s=%s: %s\n", k, v, err);
		return -1;
	}
	return 0;
}

/* Applies "k=v" overrides. */
static int bk_set_kvs(rd_kafka_conf_t *conf, const char *const *kvs, int n)
{
	for (int i = 0; i < n; i++) {
		char k[256];
		const char *eq = strchr(kvs[i], '=');
		if (!eq || (size_t)(eq - kvs[i]) >= sizeof k) {
			fprintf(stderr, "bench: expected key=value, got '%s'\n", kvs[i]);
			return -1;
		}
		memcpy(k, kvs[i], (size_t)(eq - kvs[i]));
		k[eq - kvs[i]] = 0;
		if (bk_set(conf, k, eq + 1) < 0)
			return -1;
	}
	return 0;
}

/* The consumers' value of an integer setting (ours, then --consumer-set), or dflt. */
static int64_t bk_cons_setting(const struct bk_opts *o, const char *key, int64_t dflt)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char v[64];
	size_t len = sizeof v;
	int64_t out = dflt;
	int rc = 0;
	for (size_t i = 0; i < ST_ARRAY_LEN(bk_cons_common); i++)
		rc |= bk_set(conf, bk_cons_common[i][0], bk_cons_common[i][1]);
	rc |= bk_set_kvs(conf, o->consumer_sets, o->n_consumer_sets);
	if (rc == 0 && rd_kafka_conf_get(conf, key, v, &len) == RD_KAFKA_CONF_OK) {
		char *end;
		long long n = strtoll(v, &end, 10);
		if (end != v && *end == 0)
			out = n;
	}
	rd_kafka_conf_destroy(conf);
	return out;
}

/* ---- producer --------------------------------------------------------------------------------- */

struct bk_prod {
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	uint64_t acked, acked_bytes, failed;
	rd_kafka_resp_err_t first_err;
	int64_t last_ack_ns;
	int64_t measure_from_ns; /* ack latency of records sent earlier is not recorded */
	struct bk_hist *ack;
	uint64_t *per_sec_bytes; /* acknowledged bytes per second since measure_from_ns, or NULL */
	size_t per_sec_len;
};

/* Served by rd_kafka_poll() on the producing thread: no locking. */
static void bk_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	struct bk_prod *p = opaque;
	if (m->err) {
		if (p->failed++ == 0)
			p->first_err = m->err;
		return;
	}
	int64_t now = st_mono_ns();
	p->acked++;
	p->acked_bytes += m->len;
	p->last_ack_ns = now;
	if (p->per_sec_bytes && now >= p->measure_from_ns) {
		size_t i = (size_t)((now - p->measure_from_ns) / 1000000000);
		p->per_sec_bytes[ST_MIN(i, p->per_sec_len - 1)] += m->len;
	}
	if (m->len >= 8 && p->ack) {
		int64_t sent = (int64_t)st_be64(m->payload);
		if (sent >= p->measure_from_ns)
			bk_hist_add(p->ack, now - sent);
	}
}

static int bk_producer_new(const struct bk_opts *o, const char *bootstrap, const char *acks,
			   int linger_ms, int batch_messages, struct bk_prod *p)
{
	char err[512], linger[16], bnm[16];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	snprintf(linger, sizeof linger, "%d", linger_ms);
	snprintf(bnm, sizeof bnm, "%d", batch_messages);
	int rc = bk_set(conf, "bootstrap.servers", bootstrap) | bk_set(conf, "client.id", "strata-bench") |
		 bk_set(conf, "acks", acks) | bk_set(conf, "linger.ms", linger) |
		 bk_set(conf, "batch.num.messages", bnm);
	for (size_t i = 0; i < ST_ARRAY_LEN(bk_prod_common); i++)
		rc |= bk_set(conf, bk_prod_common[i][0], bk_prod_common[i][1]);
	rc |= bk_set_kvs(conf, o->producer_sets, o->n_producer_sets);
	if (rc) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, bk_dr);
	rd_kafka_conf_set_opaque(conf, p);
	p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
	if (!p->rk) {
		rd_kafka_conf_destroy(conf);
		fprintf(stderr, "bench: producer: %s\n", err);
		return -1;
	}
	return 0;
}

static void bk_producer_free(struct bk_prod *p)
{
	if (p->rkt)
		rd_kafka_topic_destroy(p->rkt);
	if (p->rk)
		rd_kafka_destroy(p->rk);
	p->rkt = NULL;
	p->rk = NULL;
}

/* Creates topic (partitions, replication 1) through the Admin API and waits until the metadata
 * shows every partition with a leader; leaves p->rkt set for it. */
static int bk_create_topic(struct bk_prod *p, const char *topic, int partitions)
{
	char err[512];
	rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, err, sizeof err);
	if (!nt) {
		fprintf(stderr, "bench: topic %s: %s\n", topic, err);
		return -1;
	}
	rd_kafka_queue_t *q = rd_kafka_queue_new(p->rk);
	rd_kafka_CreateTopics(p->rk, &nt, 1, NULL, q);
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
	int rc = -1;
	if (!ev) {
		fprintf(stderr, "bench: CreateTopics %s: no answer in 30 s\n", topic);
	} else if (rd_kafka_event_error(ev)) {
		fprintf(stderr, "bench: CreateTopics %s: %s\n", topic, rd_kafka_event_error_string(ev));
	} else {
		const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
		size_t cnt = 0;
		const rd_kafka_topic_result_t **tr = res ? rd_kafka_CreateTopics_result_topics(res, &cnt) : NULL;
		if (cnt != 1 || !tr)
			fprintf(stderr, "bench: CreateTopics %s: bad result\n", topic);
		else if (rd_kafka_topic_result_error(tr[0]))
			fprintf(stderr, "bench: CreateTopics %s: %s\n", topic,
				rd_kafka_topic_result_error_string(tr[0]) ? rd_kafka_topic_result_error_string(tr[0])
				: rd_kafka_err2str(rd_kafka_topic_result_error(tr[0])));
		else
			rc = 0;
	}
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_NewTopic_destroy(nt);
	if (rc < 0)
		return rc;

	p->rkt = rd_kafka_topic_new(p->rk, topic, NULL);
	if (!p->rkt) {
		fprintf(stderr, "bench: topic handle %s: %s\n", topic, rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	for (int i = 0; i < 100; i++) { /* ~10-20 s */
		const struct rd_kafka_metadata *md = NULL;
		if (rd_kafka_metadata(p->rk, 0, p->rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
			bool ready = md->topic_cnt == 1 && md->topics[0].err == 0 &&
				     md->topics[0].partition_cnt == partitions;
			for (int k = 0; ready && k < md->topics[0].partition_cnt; k++)
				ready = md->topics[0].partitions[k].leader >= 0 &&
					md->topics[0].partitions[k].err == 0;
			rd_kafka_metadata_destroy(md);
			if (ready)
				return 0;
		}
		bk_sleep_ms(100);
	}
	fprintf(stderr, "bench: topic %s has no leaders for its %d partitions\n", topic, partitions);
	return -1;
}

static void bk_delete_topic(rd_kafka_t *rk, const char *topic)
{
	rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(topic);
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_DeleteTopics(rk, &dt, 1, NULL, q);
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
	if (!ev || rd_kafka_event_error(ev))
		fprintf(stderr, "bench: DeleteTopics %s: %s\n", topic,
			ev ? rd_kafka_event_error_string(ev) : "no answer");
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_DeleteTopic_destroy(dt);
}

/* Pseudo-random (incompressible) filler; bytes 0..7 carry the send time per record. */
static void bk_fill(uint8_t *buf, size_t len)
{
	uint64_t x = 0x9E3779B97F4A7C15ull ^ (uint64_t)st_mono_ns();
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
}

/* ---- consumer threads --------------------------------------------------------------------------- */

#define BK_CONS_BATCH 10000
#define BK_SLOW_NS 5000000 /* e2e latency counted as slow: the target's bound */

struct bk_cons {
	rd_kafka_t *rk;
	rd_kafka_queue_t *q;
	pthread_t th;
	bool started;
	int idx, of;                  /* reads the partitions p with p % of == idx */
	int n_assigned;
	atomic_bool stop;
	atomic_uint_fast64_t records;
	atomic_uint_fast64_t target;  /* stops by itself on reaching it (0: not yet known) */
	uint64_t bytes, errors;
	rd_kafka_resp_err_t first_err;
	/* latency: records sent before measure_from_ns are not measured */
	_Atomic int64_t measure_from_ns;
	struct bk_hist *e2e;          /* NULL: throughput (batches, no latency) */
	int64_t *sec_max_ns;          /* worst e2e per second since measure_from_ns, or NULL */
	size_t sec_len;
	uint64_t slow;                /* measured records over BK_SLOW_NS */
	/* throughput: each partition's offsets must arrive in order without gaps (a cheap check
	 * that every record came, once) */
	int64_t *next_offset;         /* by partition id; -1: not checked */
	int n_next;
	uint64_t gaps;
	/* when the first record arrived (the end of the start-up: connections, metadata, the
	 * first fetch), and the records and bytes until then: the rate is measured from there */
	int64_t first_ns, last_ns;
	uint64_t first_records, first_bytes;
};

static void *bk_cons_main(void *arg)
{
	struct bk_cons *c = arg;
	char name[16];
	snprintf(name, sizeof name, "bench-cons-%d", c->idx);
	pthread_setname_np(pthread_self(), name);
	rd_kafka_message_t **msgs = malloc(BK_CONS_BATCH * sizeof *msgs);
	if (!msgs) {
		c->errors++;
		return NULL;
	}
	uint64_t recs = 0;
	while (!atomic_load(&c->stop)) {
		/* consume_batch_queue() waits for a full batch or the timeout, which would add up
		 * to a batch's worth of time to every latency: one record at a time there. The
		 * first record alone too: its arrival starts the throughput clock. */
		ssize_t n;
		if (c->e2e || c->first_ns == 0) {
			msgs[0] = rd_kafka_consume_queue(c->q, 100);
			n = msgs[0] ? 1 : 0;
		} else {
			n = rd_kafka_consume_batch_queue(c->q, 100, msgs, BK_CONS_BATCH);
		}
		if (n < 0) {
			if (c->errors++ == 0)
				c->first_err = rd_kafka_last_error();
			bk_sleep_ms(10);
			continue;
		}
		int64_t now = st_mono_ns();
		int64_t from = c->e2e ? atomic_load_explicit(&c->measure_from_ns, memory_order_relaxed) : 0;
		for (ssize_t i = 0; i < n; i++) {
			rd_kafka_message_t *m = msgs[i];
			if (m->err) {
				if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && c->errors++ == 0)
					c->first_err = m->err;
				rd_kafka_message_destroy(m);
				continue;
			}
			recs++;
			c->bytes += m->len;
			if (c->next_offset && m->partition >= 0 && m->partition < c->n_next) {
				int64_t *next = &c->next_offset[m->partition];
				if (*next >= 0 && m->offset != *next)
					c->gaps++;
				*next = m->offset + 1;
			}
			if (c->e2e && m->len >= 8) {
				int64_t sent = (int64_t)st_be64(m->payload);
				if (sent >= from) {
					int64_t lat = now - sent;
					bk_hist_add(c->e2e, lat);
					if (lat > BK_SLOW_NS)
						c->slow++;
					if (c->sec_max_ns) {
						size_t s = (size_t)((now - from) / 1000000000);
						s = ST_MIN(s, c->sec_len - 1);
						if (lat > c->sec_max_ns[s])
							c->sec_max_ns[s] = lat;
					}
				}
			}
			rd_kafka_message_destroy(m);
		}
		if (n > 0) {
			if (c->first_ns == 0) {
				c->first_ns = now;
				c->first_records = recs;
				c->first_bytes = c->bytes;
			}
			c->last_ns = now;
			atomic_store(&c->records, recs);
		}
		uint64_t t = atomic_load(&c->target);
		if (t && recs >= t)
			break;
	}
	free(msgs);
	return NULL;
}

/* Starts a consumer (its own librdkafka handle and thread) on the partitions p of topic with
 * p % c->of == c->idx, from starts[p] (NULL: the beginning). No consumer group membership
 * (assign(), no commits): the broker needs no group coordinator for this. */
static int bk_consumer_start(const struct bk_opts *o, const char *bootstrap, const char *topic,
			     int partitions, const int64_t *starts, struct bk_cons *c)
{
	char err[512], cid[48];
	if (c->of < 1)
		c->of = 1;
	snprintf(cid, sizeof cid, "strata-bench-consumer-%d", c->idx);
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	int rc = bk_set(conf, "bootstrap.servers", bootstrap) | bk_set(conf, "client.id", cid) |
		 bk_set(conf, "group.id", "strata-bench");
	for (size_t i = 0; i < ST_ARRAY_LEN(bk_cons_common); i++)
		rc |= bk_set(conf, bk_cons_common[i][0], bk_cons_common[i][1]);
	rc |= bk_set_kvs(conf, o->consumer_sets, o->n_consumer_sets);
	if (rc) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
	if (!c->rk) {
		rd_kafka_conf_destroy(conf);
		fprintf(stderr, "bench: consumer: %s\n", err);
		return -1;
	}
	rd_kafka_poll_set_consumer(c->rk);
	if (starts) {
		c->next_offset = malloc((size_t)partitions * sizeof *c->next_offset);
		if (!c->next_offset)
			return -1;
		c->n_next = partitions;
		for (int i = 0; i < partitions; i++)
			c->next_offset[i] = starts[i];
	}
	rd_kafka_topic_partition_list_t *tps = rd_kafka_topic_partition_list_new(partitions);
	for (int i = c->idx; i < partitions; i += c->of) {
		rd_kafka_topic_partition_list_add(tps, topic, i)->offset =
			starts ? starts[i] : RD_KAFKA_OFFSET_BEGINNING;
		c->n_assigned++;
	}
	rd_kafka_resp_err_t e = rd_kafka_assign(c->rk, tps);
	rd_kafka_topic_partition_list_destroy(tps);
	if (e) {
		fprintf(stderr, "bench: assign %s: %s\n", topic, rd_kafka_err2str(e));
		return -1;
	}
	c->q = rd_kafka_queue_get_consumer(c->rk);
	if (!c->q || pthread_create(&c->th, NULL, bk_cons_main, c) != 0) {
		fprintf(stderr, "bench: consumer thread did not start\n");
		return -1;
	}
	c->started = true;
	return 0;
}

/* Lets the consumers reach their targets (set beforehand; 0: wait the whole time), giving up
 * after wait_s or when none moved for 15 s. */
static void bk_consumers_wait(struct bk_cons *cs, int n, double wait_s)
{
	int64_t deadline = st_mono_ns() + (int64_t)(wait_s * 1e9);
	uint64_t last = 0;
	int64_t last_progress = st_mono_ns();
	while (st_mono_ns() < deadline) {
		uint64_t sum = 0;
		bool done = true;
		for (int i = 0; i < n; i++) {
			uint64_t r = atomic_load(&cs[i].records), t = atomic_load(&cs[i].target);
			sum += r;
			if (cs[i].started && (t == 0 || r < t))
				done = false;
		}
		if (done)
			break;
		if (sum != last) {
			last = sum;
			last_progress = st_mono_ns();
		} else if (st_mono_ns() - last_progress > 15 * 1000000000ll) {
			break; /* stalled */
		}
		bk_sleep_ms(20);
	}
}

/* Stops its thread and closes the handle; safe on a consumer that never (fully) started. */
static void bk_consumer_close(struct bk_cons *c)
{
	if (c->started) {
		atomic_store(&c->stop, true);
		pthread_join(c->th, NULL);
		c->started = false;
	}
	if (c->q)
		rd_kafka_queue_destroy(c->q);
	c->q = NULL;
	if (c->rk) {
		rd_kafka_assign(c->rk, NULL);
		rd_kafka_consumer_close(c->rk);
		rd_kafka_destroy(c->rk);
	}
	c->rk = NULL;
	free(c->next_offset);
	c->next_offset = NULL;
}

/* ---- workloads ---------------------------------------------------------------------------------- */

struct bk_ctx {
	const struct bk_opts *o;
	const char *bootstrap;
	pid_t broker_pid;
	int topic_seq;
	char created[8][128]; /* topics not yet deleted ("" once deleted) */
	int n_created;
	char tp_topic[128];    /* the max-rate 1 KiB topic, read back by the consume workload */
	uint64_t tp_records;
};

static void bk_topic_name(struct bk_ctx *x, const char *what, char *out, size_t out_len)
{
	snprintf(out, out_len, "strata-bench-%s-%d-%d-%" PRId64, what, (int)getpid(), ++x->topic_seq,
		 st_now_ms() % 100000);
	if (x->n_created < (int)ST_ARRAY_LEN(x->created))
		snprintf(x->created[x->n_created++], sizeof x->created[0], "%s", out);
}

/* Deletes a workload's topic once nothing needs it: the max-rate workloads write tens of GB.
 * Kept with --keep. */
static void bk_drop_topic(struct bk_ctx *x, const char *topic)
{
	if (x->o->keep || !topic[0])
		return;
	struct bk_prod p = { 0 };
	if (bk_producer_new(x->o, x->bootstrap, "all", 0, 1, &p) < 0)
		return;
	for (int i = 0; i < x->n_created; i++) {
		if (strcmp(x->created[i], topic) == 0) {
			bk_delete_topic(p.rk, x->created[i]);
			x->created[i][0] = 0;
		}
	}
	bk_producer_free(&p);
}

/* Flushes, reporting delivery failures; returns the number of records never acknowledged. */
static int bk_flush(struct bk_prod *p)
{
	rd_kafka_resp_err_t e = rd_kafka_flush(p->rk, 120000);
	if (e)
		fprintf(stderr, "bench: flush: %s (%d records outstanding)\n", rd_kafka_err2str(e),
			rd_kafka_outq_len(p->rk));
	if (p->failed)
		fprintf(stderr, "bench: %" PRIu64 " records failed: %s\n", p->failed, rd_kafka_err2str(p->first_err));
	return rd_kafka_outq_len(p->rk);
}

/* 1 KiB records to 16 partitions (round robin, one record at a time, as OpenMessaging's
 * producer does) at a fixed rate, consumed in the same process; latency = consumer receive
 * time - the send time stamped into the record (one monotonic clock). */
static int bk_run_fixed_rate(struct bk_ctx *x, struct bk_result *r)
{
	const struct bk_opts *o = x->o;
	char topic[128];
	bk_topic_name(x, "1kb-rate", topic, sizeof topic);
	double rps = o->rate_mb_s * 1e6 / o->record_bytes;
	snprintf(r->name, sizeof r->name, "1-topic-%d-partitions-%s @ %.0f MB/s (%.0f records/s), acks=all",
		 o->partitions, o->record_bytes == 1024 ? "1kb" : "custom", o->rate_mb_s, rps);
	r->ran = true;
	r->target_rate = rps;
	struct bk_prod p = { .ack = &r->ack, .measure_from_ns = INT64_MAX };
	struct bk_cons c = { .e2e = &r->e2e, .measure_from_ns = INT64_MAX };
	uint8_t *buf = malloc((size_t)o->record_bytes);
	int rc = -1;
	/* per second of the measured run (+1: the records still in flight at its end) */
	size_t n_secs = (size_t)ceil(o->seconds) + 1;
	c.sec_len = n_secs;
	c.sec_max_ns = calloc(n_secs, sizeof *c.sec_max_ns);
	r->sec_e2e_max_ms = calloc(n_secs, sizeof(double));
	r->sec_dirty_mb = calloc(n_secs, sizeof(double));
	r->sec_wb_mb = calloc(n_secs, sizeof(double));
	r->sec_busy_pct = calloc(n_secs, sizeof(double));
	if (!c.sec_max_ns || !r->sec_e2e_max_ms || !r->sec_dirty_mb || !r->sec_wb_mb || !r->sec_busy_pct)
		goto out;
	if (!buf || bk_producer_new(o, x->bootstrap, "all", 1, 10000, &p) < 0 ||
	    bk_create_topic(&p, topic, o->partitions) < 0 ||
	    bk_consumer_start(o, x->bootstrap, topic, o->partitions, NULL, &c) < 0)
		goto out;
	bk_fill(buf, (size_t)o->record_bytes);
	/* One unmeasured record per partition, and wait until the consumer has them all: it is
	 * fetching from every partition before the clock starts (else its start-up is measured). */
	st_put_be64(buf, 0);
	for (int i = 0; i < o->partitions; i++)
		if (rd_kafka_produce(p.rkt, i, RD_KAFKA_MSG_F_COPY, buf, (size_t)o->record_bytes, NULL, 0, NULL)) {
			fprintf(stderr, "bench: produce: %s\n", rd_kafka_err2str(rd_kafka_last_error()));
			goto out;
		}
	if (bk_flush(&p) != 0 || p.failed)
		goto out;
	for (int i = 0; i < 3000 && atomic_load(&c.records) < (uint64_t)o->partitions; i++)
		bk_sleep_ms(10);
	if (atomic_load(&c.records) < (uint64_t)o->partitions) {
		fprintf(stderr, "bench: the consumer did not receive the first records in 30 s\n");
		goto out;
	}
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0); /* 1 us: pacing sleeps are short */

	int64_t start = st_mono_ns();
	int64_t measure_from = start + (int64_t)(o->warmup_s * 1e9);
	int64_t end = measure_from + (int64_t)(o->seconds * 1e9);
	p.measure_from_ns = measure_from;
	atomic_store(&c.measure_from_ns, measure_from);
	double interval_ns = 1e9 / rps;
	uint64_t sent = 0, sent_measured = 0, errs = 0;
	int64_t behind_max = 0;
	struct bk_cpu cpu0;
	bool cpu_started = false;
	/* what the machine does meanwhile: Dirty/Writeback every 100 ms (worst per second) and
	 * all cores' busy time per second, to tell a broker stall from a busy disk or CPU */
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int64_t next_mem_ns = measure_from, busy0 = 0, total0 = 0;
	size_t sec_done = 0; /* seconds whose machine figures are stored */
	for (;;) {
		int64_t now = st_mono_ns();
		if (now >= measure_from && (now >= next_mem_ns || now >= end)) {
			size_t sec = (size_t)((now - measure_from) / 1000000000);
			if (sec > sec_done || !cpu_started || now >= end) {
				int64_t b, t;
				bk_proc_stat(&b, &t);
				if (cpu_started && sec_done < n_secs && t > total0)
					r->sec_busy_pct[sec_done] = 100.0 * (double)(b - busy0) /
						(double)(t - total0) * (double)(ncpu > 0 ? ncpu : 1);
				if (cpu_started)
					sec_done++;
				busy0 = b;
				total0 = t;
			}
			int64_t d, w;
			bk_meminfo_dirty(&d, &w);
			if (sec_done < n_secs && d >= 0 && w >= 0) {
				r->sec_dirty_mb[sec_done] = ST_MAX(r->sec_dirty_mb[sec_done], (double)d / 1e6);
				r->sec_wb_mb[sec_done] = ST_MAX(r->sec_wb_mb[sec_done], (double)w / 1e6);
			}
			next_mem_ns = now + 100000000;
		}
		if (now >= end)
			break;
		if (!cpu_started && now >= measure_from) {
			bk_cpu_snap(x->broker_pid, &cpu0);
			cpu_started = true;
		}
		uint64_t due = (uint64_t)((double)(now - start) / interval_ns) + 1;
		for (int burst = 0; sent < due && burst < 10000; burst++) {
			int64_t ts = st_mono_ns();
			int64_t sched = start + (int64_t)((double)sent * interval_ns);
			st_put_be64(buf, (uint64_t)ts);
			int32_t part = o->round_robin ? (int32_t)(sent % (uint64_t)o->partitions) :
							RD_KAFKA_PARTITION_UA;
			if (rd_kafka_produce(p.rkt, part,
					     RD_KAFKA_MSG_F_COPY, buf, (size_t)o->record_bytes, NULL, 0,
					     NULL) != 0) {
				if (rd_kafka_last_error() != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
					if (errs++ == 0)
						fprintf(stderr, "bench: produce: %s\n",
							rd_kafka_err2str(rd_kafka_last_error()));
					if (errs > 1000)
						goto out;
				}
				rd_kafka_poll(p.rk, 1);
				continue;
			}
			if (ts >= measure_from) {
				sent_measured++;
				if (ts - sched > behind_max)
					behind_max = ts - sched;
			}
			sent++;
		}
		rd_kafka_poll(p.rk, 0);
		/* Sleep to the next record's time, but not less than 100 us: bursts of a few
		 * records cost the broker nothing, a wakeup per record costs the client a core. */
		int64_t next = start + (int64_t)((double)sent * interval_ns);
		int64_t wake = ST_MAX(next, st_mono_ns() + 100000);
		struct timespec ts = { .tv_sec = wake / 1000000000, .tv_nsec = wake % 1000000000 };
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
	if (!cpu_started)
		bk_cpu_snap(x->broker_pid, &cpu0);
	int outstanding = bk_flush(&p);
	atomic_store(&c.target, p.acked);
	bk_consumers_wait(&c, 1, 30);
	bk_consumer_close(&c);
	bk_cpu_done(&cpu0, x->broker_pid, r);
	r->n_lat_secs = (int)ST_MAX(1, ST_MIN(sec_done, n_secs));
	for (size_t i = 0; i < n_secs; i++) /* records received after the end: its last second */
		r->sec_e2e_max_ms[ST_MIN(i, (size_t)r->n_lat_secs - 1)] =
			ST_MAX(r->sec_e2e_max_ms[ST_MIN(i, (size_t)r->n_lat_secs - 1)],
			       (double)c.sec_max_ns[i] / 1e6);
	r->slow = c.slow;
	r->records = sent_measured;
	r->bytes = sent_measured * (uint64_t)o->record_bytes;
	r->secs = o->seconds;
	r->has_e2e = r->has_ack = true;
	r->behind_max_ms = (double)behind_max / 1e6;
	r->errors = p.failed + errs + c.errors + (uint64_t)outstanding;
	uint64_t got = atomic_load(&c.records);
	if (got < p.acked) {
		fprintf(stderr, "bench: consumer received %" PRIu64 " of %" PRIu64 " acknowledged records\n",
			got, p.acked);
		r->errors += p.acked - got;
	}
	if (c.errors)
		fprintf(stderr, "bench: consumer errors: %" PRIu64 " (first: %s)\n", c.errors,
			rd_kafka_err2str(c.first_err));
	rc = 0;
out:
	bk_consumer_close(&c);
	free(c.sec_max_ns);
	bk_producer_free(&p);
	bk_drop_topic(x, topic);
	free(buf);
	r->ok = rc == 0 && r->errors == 0;
	return rc;
}

/* One producer at max rate for --seconds: records go in chunks of ~64 KiB per partition,
 * partitions round robin (what a sticky partitioner does), via rd_kafka_produce_batch;
 * throughput = acknowledged bytes / (last acknowledgement - first send). */
static int bk_run_max_rate(struct bk_ctx *x, struct bk_result *r, const char *what, int partitions,
			   int record_bytes, const char *acks, char *topic_out, size_t topic_len)
{
	const struct bk_opts *o = x->o;
	char topic[128];
	bk_topic_name(x, what, topic, sizeof topic);
	r->ran = true;
	int chunk = ST_MAX(1, ST_MIN(4096, 65536 / record_bytes));
	struct bk_prod p = { .ack = &r->ack };
	uint8_t *buf = malloc((size_t)record_bytes);
	rd_kafka_message_t *msgs = calloc((size_t)chunk, sizeof *msgs);
	int rc = -1;
	uint64_t errs = 0;
	if (!buf || !msgs ||
	    bk_producer_new(o, x->bootstrap, acks, o->linger_ms, 100000, &p) < 0 ||
	    bk_create_topic(&p, topic, partitions) < 0)
		goto out;
	bk_fill(buf, (size_t)record_bytes);
	struct bk_cpu cpu0;
	bk_cpu_snap(x->broker_pid, &cpu0);
	int64_t start = st_mono_ns();
	int64_t end = start + (int64_t)(o->seconds * 1e9);
	p.measure_from_ns = start;
	p.per_sec_len = (size_t)o->seconds + 2;
	p.per_sec_bytes = calloc(p.per_sec_len, sizeof *p.per_sec_bytes);
	int32_t part = 0;
	while (st_mono_ns() < end) {
		st_put_be64(buf, (uint64_t)st_mono_ns());
		for (int i = 0; i < chunk; i++)
			msgs[i] = (rd_kafka_message_t){ .payload = buf, .len = (size_t)record_bytes };
		int left = chunk;
		while (left > 0) {
			int n = rd_kafka_produce_batch(p.rkt, part, RD_KAFKA_MSG_F_COPY, msgs, left);
			if (n == left)
				break;
			int k = 0; /* keep the failed ones for another try */
			for (int i = 0; i < left; i++) {
				if (!msgs[i].err)
					continue;
				if (msgs[i].err != RD_KAFKA_RESP_ERR__QUEUE_FULL && errs++ == 0)
					fprintf(stderr, "bench: produce: %s\n", rd_kafka_err2str(msgs[i].err));
				msgs[k] = (rd_kafka_message_t){ .payload = buf, .len = (size_t)record_bytes };
				k++;
			}
			if (errs > 1000)
				goto out;
			left = k;
			rd_kafka_poll(p.rk, 1);
		}
		rd_kafka_poll(p.rk, 0);
		part = (part + 1) % partitions;
	}
	int outstanding = bk_flush(&p);
	bk_cpu_done(&cpu0, x->broker_pid, r);
	r->records = p.acked;
	r->bytes = p.acked_bytes;
	r->secs = (double)(p.last_ack_ns - start) / 1e9;
	r->has_ack = true;
	r->errors = p.failed + errs + (uint64_t)outstanding;
	if (p.per_sec_bytes) {
		/* full seconds only: the last one is partial (flush) */
		int n = (int)ST_MIN((size_t)((p.last_ack_ns - start) / 1000000000), p.per_sec_len);
		if (n >= 1) {
			double *v = malloc((size_t)n * sizeof *v);
			if (v) {
				for (int i = 0; i < n; i++)
					v[i] = (double)p.per_sec_bytes[i] / 1e6;
				if (o->verbose) {
					printf("    (per-second MB/s:");
					for (int i = 0; i < n; i++)
						printf(" %.0f", v[i]);
					printf(")\n");
				}
				qsort(v, (size_t)n, sizeof *v, bk_cmp_double);
				r->sec_min_mb = v[0];
				r->sec_med_mb = v[n / 2];
				r->sec_max_mb = v[n - 1];
				r->n_secs = n;
				free(v);
			}
		}
		free(p.per_sec_bytes);
		p.per_sec_bytes = NULL;
	}
	if (topic_out)
		snprintf(topic_out, topic_len, "%s", topic);
	rc = 0;
out:
	bk_producer_free(&p);
	free(p.per_sec_bytes);
	if (!topic_out || rc < 0)
		bk_drop_topic(x, topic); /* else the caller reads it back first */
	free(msgs);
	free(buf);
	r->ok = rc == 0 && r->errors == 0;
	return rc;
}

/* ---- raw Fetch loop: what the broker serves, without a Kafka client's per-record work -------- */

#define BK_RAW_MAX_RESPONSE (256u << 20)

struct bk_raw {
	struct sockaddr_storage sa;
	socklen_t sa_len;
	const char *topic;
	int idx, of, partitions; /* fetches the partitions p with p % of == idx */
	const int64_t *starts, *ends;
	int64_t deadline_ns;
	int32_t max_bytes, partition_max_bytes, max_wait_ms; /* the consumers' fetch settings */
	pthread_t th;
	bool started;
	uint64_t records, batch_bytes, fetches, gaps;
	int64_t first_ns, last_ns; /* before the first request, after the last response */
	char err[160];
};

/* Fills len bytes from fd (short of them: the peer closed or an error). */
static int bk_read_full(int fd, void *buf, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = read(fd, (char *)buf + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 ? -ECONNRESET : -errno;
		off += (size_t)n;
	}
	return 0;
}

static int bk_write_full(int fd, const void *buf, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = send(fd, (const char *)buf + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 ? -EIO : -errno;
		off += (size_t)n;
	}
	return 0;
}

/* A bounds-checked cursor over a response. */
struct bk_rd {
	const uint8_t *p, *end;
	bool bad;
};

static const uint8_t *bk_rd_take(struct bk_rd *r, size_t n)
{
	if (r->bad || (size_t)(r->end - r->p) < n) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *at = r->p;
	r->p += n;
	return at;
}

static int64_t bk_rd_int(struct bk_rd *r, size_t n)
{
	const uint8_t *b = bk_rd_take(r, n);
	if (!b)
		return 0;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = v << 8 | b[i];
	if (n < 8 && (v >> (8 * n - 1)) & 1) /* sign-extend */
		v |= ~0ull << (8 * n);
	return (int64_t)v;
}

/* Counts the whole record batches (magic 2) in a partition's records: records from offset
 * *next on, advancing *next past the last whole batch; a gap before a batch counts in gaps. */
static int bk_raw_batches(const uint8_t *p, size_t len, int64_t *next, uint64_t *records, uint64_t *bytes,
			  uint64_t *gaps)
{
	while (len >= 61) { /* a v2 batch header */
		int64_t base = (int64_t)st_be64(p);
		uint32_t blen = st_be32(p + 8);
		if (blen > len - 12)
			break; /* the partial batch at the end of a response: fetched again next time */
		if (p[16] != 2)
			return -EPROTO;
		int64_t last = base + (int32_t)st_be32(p + 23);
		if (last >= *next) {
			if (base > *next)
				(*gaps)++;
			*records += (uint64_t)(last + 1 - ST_MAX(base, *next));
			*bytes += 12 + (uint64_t)blen;
			*next = last + 1;
		}
		p += 12 + (size_t)blen;
		len -= 12 + (size_t)blen;
	}
	return 0;
}

/* One connection: Fetch v4 (no sessions) of all its unfinished partitions with the consumers'
 * fetch.max.bytes, max.partition.fetch.bytes and fetch.wait.max.ms, one request in flight, like
 * a consumer's fetcher. */
static void *bk_raw_main(void *arg)
{
	struct bk_raw *w = arg;
	char name[16];
	snprintf(name, sizeof name, "bench-fetch-%d", w->idx);
	pthread_setname_np(pthread_self(), name);
	const char *client = "strata-bench-raw";
	size_t tlen = strlen(w->topic);
	size_t req_cap = 64 + tlen + 16 * (size_t)w->partitions;
	uint8_t *req = malloc(req_cap);
	int64_t *next = malloc((size_t)w->partitions * sizeof *next);
	size_t resp_cap = 64u << 20;
	uint8_t *resp = malloc(resp_cap);
	int fd = socket(w->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!req || !next || !resp || fd < 0 || connect(fd, (struct sockaddr *)&w->sa, w->sa_len) != 0) {
		snprintf(w->err, sizeof w->err, "connect: %s", strerror(errno ? errno : ENOMEM));
		goto out;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	for (int p = 0; p < w->partitions; p++)
		next[p] = w->starts[p];
	w->first_ns = st_mono_ns(); /* no start-up to leave out but the connect */
	for (int32_t corr = 1; st_mono_ns() < w->deadline_ns; corr++) {
		uint8_t *q = req + 4;
		st_put_be16(q, 1), q += 2;          /* Fetch */
		st_put_be16(q, 4), q += 2;          /* v4 */
		st_put_be32(q, (uint32_t)corr), q += 4;
		st_put_be16(q, (uint16_t)strlen(client)), q += 2;
		memcpy(q, client, strlen(client)), q += strlen(client);
		st_put_be32(q, (uint32_t)-1), q += 4;   /* replica_id */
		st_put_be32(q, (uint32_t)w->max_wait_ms), q += 4;
		st_put_be32(q, 1), q += 4;              /* min_bytes */
		st_put_be32(q, (uint32_t)w->max_bytes), q += 4;
		*q++ = 0;                               /* isolation_level */
		st_put_be32(q, 1), q += 4;              /* topics */
		st_put_be16(q, (uint16_t)tlen), q += 2;
		memcpy(q, w->topic, tlen), q += tlen;
		uint8_t *np = q;
		q += 4;
		int32_t n = 0;
		for (int p = w->idx; p < w->partitions; p += w->of) {
			if (next[p] >= w->ends[p])
				continue;
			st_put_be32(q, (uint32_t)p), q += 4;
			st_put_be64(q, (uint64_t)next[p]), q += 8;
			st_put_be32(q, (uint32_t)w->partition_max_bytes), q += 4;
			n++;
		}
		if (n == 0)
			break; /* all read */
		st_put_be32(np, (uint32_t)n);
		ST_ASSERT((size_t)(q - req) <= req_cap);
		st_put_be32(req, (uint32_t)(q - req - 4));
		int rc = bk_write_full(fd, req, (size_t)(q - req));
		uint8_t szb[4];
		if (rc == 0)
			rc = bk_read_full(fd, szb, 4);
		uint32_t sz = rc == 0 ? st_be32(szb) : 0;
		if (rc == 0 && (sz < 8 || sz > BK_RAW_MAX_RESPONSE))
			rc = -EPROTO;
		if (rc == 0 && sz > resp_cap) {
			uint8_t *nr = realloc(resp, sz);
			if (!nr)
				rc = -ENOMEM;
			else
				resp = nr, resp_cap = sz;
		}
		if (rc == 0)
			rc = bk_read_full(fd, resp, sz);
		if (rc < 0) {
			snprintf(w->err, sizeof w->err, "fetch: %s", strerror(-rc));
			goto out;
		}
		struct bk_rd r = { .p = resp, .end = resp + sz };
		if (bk_rd_int(&r, 4) != corr) {
			snprintf(w->err, sizeof w->err, "fetch: correlation id mismatch");
			goto out;
		}
		bk_rd_int(&r, 4); /* throttle_time_ms */
		for (int64_t t = bk_rd_int(&r, 4); t > 0 && !r.bad; t--) {
			int64_t tlen_resp = bk_rd_int(&r, 2);
			bk_rd_take(&r, tlen_resp > 0 ? (size_t)tlen_resp : 0); /* topic */
			for (int64_t k = bk_rd_int(&r, 4); k > 0 && !r.bad; k--) {
				int64_t part = bk_rd_int(&r, 4);
				int64_t ec = bk_rd_int(&r, 2);
				bk_rd_int(&r, 8); /* high watermark */
				bk_rd_int(&r, 8); /* last stable offset */
				int64_t aborted = bk_rd_int(&r, 4);
				bk_rd_take(&r, aborted > 0 ? (size_t)aborted * 16 : 0);
				int64_t rlen = bk_rd_int(&r, 4);
				const uint8_t *recs = bk_rd_take(&r, rlen > 0 ? (size_t)rlen : 0);
				if (r.bad)
					break;
				if (ec != 0 || part < 0 || part >= w->partitions) {
					snprintf(w->err, sizeof w->err, "fetch: partition %" PRId64 ": error %" PRId64,
						 part, ec);
					goto out;
				}
				if (rlen > 0 && bk_raw_batches(recs, (size_t)rlen, &next[part], &w->records,
							       &w->batch_bytes, &w->gaps) < 0) {
					snprintf(w->err, sizeof w->err, "fetch: partition %" PRId64
						 ": not a v2 record batch", part);
					goto out;
				}
			}
		}
		if (r.bad) {
			snprintf(w->err, sizeof w->err, "fetch: truncated response");
			goto out;
		}
		w->fetches++;
		w->last_ns = st_mono_ns();
	}
out:
	if (fd >= 0)
		close(fd);
	free(req);
	free(next);
	free(resp);
	return NULL;
}

/* host:port of the first bootstrap server. */
static int bk_resolve(const char *bootstrap, struct sockaddr_storage *sa, socklen_t *sa_len)
{
	char host[256];
	const char *comma = strchr(bootstrap, ',');
	size_t len = comma ? (size_t)(comma - bootstrap) : strlen(bootstrap);
	if (len >= sizeof host)
		return -ENAMETOOLONG;
	memcpy(host, bootstrap, len);
	host[len] = 0;
	char *colon = strrchr(host, ':');
	if (!colon)
		return -EINVAL;
	*colon = 0;
	const char *h = host;
	if (h[0] == '[' && colon > host && colon[-1] == ']') { /* [v6]:port */
		colon[-1] = 0;
		h++;
	}
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	if (getaddrinfo(h, colon + 1, &hints, &ai) != 0 || !ai)
		return -EHOSTUNREACH;
	memcpy(sa, ai->ai_addr, ai->ai_addrlen);
	*sa_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

/* The consume workload's records again, through n raw Fetch connections. */
static int bk_run_raw_fetch(struct bk_ctx *x, struct bk_result *r, const char *topic, const int64_t *starts,
			    const int64_t *ends, int n)
{
	const struct bk_opts *o = x->o;
	r->ran = true;
	snprintf(r->name, sizeof r->name, "the same records through a raw Fetch v4 loop, %d connection%s (what the "
		 "broker serves; not a Kafka client: no target)", n, n > 1 ? "s" : "");
	struct bk_raw *ws = calloc((size_t)n, sizeof *ws);
	struct sockaddr_storage sa;
	socklen_t sa_len = 0;
	int rc = bk_resolve(x->bootstrap, &sa, &sa_len);
	if (!ws || rc < 0) {
		fprintf(stderr, "bench: raw fetch: cannot resolve %s\n", x->bootstrap);
		free(ws);
		r->ok = false;
		return -1;
	}
	uint64_t want = 0;
	for (int p = 0; p < o->partitions; p++)
		want += (uint64_t)(ends[p] - starts[p]);
	int32_t max_bytes = (int32_t)ST_MIN(INT32_MAX, bk_cons_setting(o, "fetch.max.bytes", 52428800));
	int32_t part_max = (int32_t)ST_MIN(INT32_MAX, bk_cons_setting(o, "max.partition.fetch.bytes", 1048576));
	int32_t max_wait = (int32_t)ST_MIN(INT32_MAX, bk_cons_setting(o, "fetch.wait.max.ms", 500));
	struct bk_cpu cpu0;
	bk_cpu_snap(x->broker_pid, &cpu0);
	int64_t t0 = st_mono_ns();
	for (int k = 0; k < n; k++) {
		ws[k] = (struct bk_raw){ .sa = sa, .sa_len = sa_len, .topic = topic, .idx = k, .of = n,
					 .partitions = o->partitions, .starts = starts, .ends = ends,
					 .deadline_ns = t0 + (int64_t)(ST_MAX(60.0, o->seconds * 4) * 1e9),
					 .max_bytes = max_bytes, .partition_max_bytes = part_max,
					 .max_wait_ms = max_wait };
		ws[k].started = pthread_create(&ws[k].th, NULL, bk_raw_main, &ws[k]) == 0;
	}
	uint64_t recs = 0, bbytes = 0, fetches = 0;
	int64_t first = INT64_MAX, last = 0;
	for (int k = 0; k < n; k++) {
		struct bk_raw *w = &ws[k];
		if (!w->started) {
			r->errors++;
			continue;
		}
		pthread_join(w->th, NULL);
		if (w->err[0]) {
			fprintf(stderr, "bench: raw fetch connection %d: %s\n", k, w->err);
			r->errors++;
		}
		recs += w->records;
		bbytes += w->batch_bytes;
		fetches += w->fetches;
		r->errors += w->gaps;
		if (w->first_ns) {
			first = ST_MIN(first, w->first_ns);
			last = ST_MAX(last, w->last_ns);
			r->sub[r->n_sub].parts = (o->partitions - k + n - 1) / n;
			r->sub[r->n_sub].records = w->records;
			r->sub[r->n_sub].bytes = w->records * (uint64_t)o->record_bytes;
			r->sub[r->n_sub].secs = (double)(w->last_ns - w->first_ns) / 1e9;
			r->n_sub++;
		}
	}
	bk_cpu_done(&cpu0, x->broker_pid, r);
	if (recs < want) {
		fprintf(stderr, "bench: raw fetch read %" PRIu64 " of %" PRIu64 " records\n", recs, want);
		r->errors += want - recs;
	}
	if (first < last) {
		r->records = recs;
		/* record values, as the consumer line counts them: every record here has record_bytes */
		r->bytes = r->records * (uint64_t)o->record_bytes;
		r->secs = (double)(last - first) / 1e9;
		snprintf(r->note, sizeof r->note, "record batches as sent: %.1f MB/s; %" PRIu64 " responses of "
			 "%.2f MB on average (max_bytes %d, partition_max_bytes %d); MB/s above counts record "
			 "values (records x %d bytes)", (double)bbytes / 1e6 / r->secs, fetches,
			 fetches ? (double)bbytes / 1e6 / (double)fetches : 0.0, max_bytes, part_max,
			 o->record_bytes);
	}
	free(ws);
	r->ok = r->errors == 0;
	return r->ok ? 0 : -1;
}

/* Reads the max-rate topic back (the page cache holds it: it was just written) with
 * o->consumers librdkafka consumers, each on its own thread with its share of the partitions;
 * then, unless --no-raw-fetch, the same records through raw Fetch connections (into raw). */
static int bk_run_consume(struct bk_ctx *x, int consumers, struct bk_result *r, struct bk_result *raw)
{
	const struct bk_opts *o = x->o;
	r->ran = true;
	int n = ST_MAX(1, ST_MIN(consumers, o->partitions));
	struct bk_cons *cs = calloc((size_t)n, sizeof *cs);
	struct bk_prod q = { 0 }; /* a handle for the watermark queries */
	int64_t *starts = calloc((size_t)o->partitions, sizeof *starts);
	int64_t *ends = calloc((size_t)o->partitions, sizeof *ends);
	int rc = -1;
	if (!cs || !starts || !ends || bk_producer_new(o, x->bootstrap, "1", 0, 1, &q) < 0)
		goto out;
	/* Only the newest consume_bytes (the page cache surely still holds them), spread evenly. */
	uint64_t want = 0, total = 0;
	int64_t per_part = (int64_t)(o->consume_bytes / (uint64_t)o->record_bytes / (uint64_t)o->partitions);
	for (int i = 0; i < o->partitions; i++) {
		int64_t lo = 0, hi = 0;
		rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(q.rk, x->tp_topic, i, &lo, &hi, 10000);
		if (e) {
			fprintf(stderr, "bench: watermarks of %s [%d]: %s\n", x->tp_topic, i, rd_kafka_err2str(e));
			goto out;
		}
		starts[i] = ST_MAX(lo, hi - per_part);
		ends[i] = hi;
		want += (uint64_t)(hi - starts[i]);
		total += (uint64_t)(hi - lo);
		atomic_fetch_add(&cs[i % n].target, (uint64_t)(hi - starts[i]));
	}
	bk_producer_free(&q);
	if (want == 0) {
		fprintf(stderr, "bench: nothing to consume (--consume-bytes below a record per partition?)\n");
		goto out;
	}
	snprintf(r->name, sizeof r->name, "consume %" PRIu64 " of the %" PRIu64 " %d-byte records just written "
		 "(%d partitions; page cache), %d librdkafka consumer%s", want, total, o->record_bytes,
		 o->partitions, n, n > 1 ? "s" : "");
	struct bk_cpu cpu0;
	bk_cpu_snap(x->broker_pid, &cpu0);
	int64_t start = st_mono_ns();
	for (int k = 0; k < n; k++) {
		cs[k].idx = k;
		cs[k].of = n;
		if (atomic_load(&cs[k].target) > 0 &&
		    bk_consumer_start(o, x->bootstrap, x->tp_topic, o->partitions, starts, &cs[k]) < 0)
			goto out;
	}
	bk_consumers_wait(cs, n, ST_MAX(60.0, o->seconds * 4));
	bk_cpu_done(&cpu0, x->broker_pid, r);
	/* The rate runs from the first record to the last: the start-up before it (connections,
	 * metadata, the first fetch) is reported apart. */
	uint64_t got = 0;
	int64_t first = INT64_MAX, last = 0;
	for (int k = 0; k < n; k++) {
		struct bk_cons *c = &cs[k];
		uint64_t recs = atomic_load(&c->records);
		got += recs;
		r->errors += c->errors + c->gaps;
		if (c->errors)
			fprintf(stderr, "bench: consumer %d errors: %" PRIu64 " (first: %s)\n", k, c->errors,
				rd_kafka_err2str(c->first_err));
		if (c->gaps)
			fprintf(stderr, "bench: consumer %d: %" PRIu64 " offset gaps\n", k, c->gaps);
		if (c->first_ns == 0)
			continue;
		first = ST_MIN(first, c->first_ns);
		last = ST_MAX(last, c->last_ns);
		r->records += recs - c->first_records;
		r->bytes += c->bytes - c->first_bytes;
		r->startup_records += c->first_records;
		r->sub[r->n_sub].parts = c->n_assigned;
		r->sub[r->n_sub].records = recs - c->first_records;
		r->sub[r->n_sub].bytes = c->bytes - c->first_bytes;
		r->sub[r->n_sub].secs = (double)(c->last_ns - c->first_ns) / 1e9;
		r->n_sub++;
	}
	if (first < last && r->records > 0) {
		r->secs = (double)(last - first) / 1e9;
		r->startup_ms = (double)(first - start) / 1e6;
	} else if (last > start) { /* all in the first batches (a tiny run): from the start */
		r->records = got;
		r->bytes = 0;
		for (int k = 0; k < n; k++)
			r->bytes += cs[k].bytes;
		r->startup_records = 0;
		r->n_sub = 0;
		r->secs = (double)(last - start) / 1e9;
	}
	if (got < want) {
		fprintf(stderr, "bench: consumers received %" PRIu64 " of %" PRIu64 " records\n", got, want);
		r->errors += want - got;
	}
	rc = 0;
	for (int k = 0; k < n; k++)
		bk_consumer_close(&cs[k]);
	if (raw && bk_run_raw_fetch(x, raw, x->tp_topic, starts, ends, n) < 0)
		rc = -1;
out:
	for (int k = 0; cs && k < n; k++)
		bk_consumer_close(&cs[k]);
	bk_producer_free(&q);
	free(starts);
	free(ends);
	free(cs);
	r->ok = rc == 0 && r->errors == 0;
	return rc;
}

/* ---- report --------------------------------------------------------------------------------------- */

static void bk_print_lat(const char *label, const struct bk_hist *h)
{
	if (h->n == 0) {
		printf("    %-12s (no samples)\n", label);
		return;
	}
	printf("    %-12s p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms  (%" PRIu64 " records)\n",
	       label, bk_hist_pct_ms(h, 50), bk_hist_pct_ms(h, 99), bk_hist_pct_ms(h, 99.9),
	       (double)h->max_ns / 1e6, h->n);
}

static void bk_print_result(int idx, const struct bk_result *r, bool verbose)
{
	printf("[%d] %s\n", idx, r->name);
	if (!r->ok && r->records == 0) {
		printf("    did not run (see the errors above)\n\n");
		return;
	}
	printf("    throughput   %.0f records/s  %.1f MB/s  (%" PRIu64 " records in %.2f s%s)\n", bk_rec_s(r),
	       bk_mb_s(r), r->records, r->secs, r->errors ? ", WITH ERRORS" : "");
	if (r->startup_records > 0)
		printf("    start-up     first records after %.0f ms (%" PRIu64 ", not in the rate)\n",
		       r->startup_ms, r->startup_records);
	for (int i = 0; i < r->n_sub; i++) {
		const double s = r->sub[i].secs;
		printf("    #%-2d %2d part. %.0f records/s  %.1f MB/s  (%" PRIu64 " records in %.2f s)\n", i,
		       r->sub[i].parts, s > 0 ? (double)r->sub[i].records / s : 0,
		       s > 0 ? (double)r->sub[i].bytes / 1e6 / s : 0, r->sub[i].records, s);
	}
	if (r->n_secs > 0)
		printf("    per second   min %.1f  median %.1f  max %.1f MB/s (%d full seconds)\n", r->sec_min_mb,
		       r->sec_med_mb, r->sec_max_mb, r->n_secs);
	if (r->target_rate > 0)
		printf("    schedule     asked %.0f records/s; worst send %.3f ms behind schedule\n",
		       r->target_rate, r->behind_max_ms);
	if (r->has_e2e)
		bk_print_lat("end-to-end", &r->e2e);
	if (r->has_ack)
		bk_print_lat("produce ack", &r->ack);
	if (r->has_e2e && r->n_lat_secs > 0 && r->sec_e2e_max_ms) {
		int worst = 0;
		for (int i = 1; i < r->n_lat_secs; i++)
			if (r->sec_e2e_max_ms[i] > r->sec_e2e_max_ms[worst])
				worst = i;
		printf("    over 5 ms    %" PRIu64 " records (%.2f%%); worst second #%d: e2e max %.1f ms, Dirty %.0f MB,"
		       " Writeback %.0f MB, machine busy %.0f%%\n", r->slow,
		       r->e2e.n ? 100.0 * (double)r->slow / (double)r->e2e.n : 0.0, worst,
		       r->sec_e2e_max_ms[worst], r->sec_dirty_mb[worst], r->sec_wb_mb[worst],
		       r->sec_busy_pct[worst]);
		if (verbose) {
			printf("    per second   (e2e max ms / Dirty MB / Writeback MB / machine busy %%):");
			for (int i = 0; i < r->n_lat_secs; i++)
				printf(" %.1f/%.0f/%.0f/%.0f", r->sec_e2e_max_ms[i], r->sec_dirty_mb[i],
				       r->sec_wb_mb[i], r->sec_busy_pct[i]);
			printf("\n");
		}
	}
	if (r->note[0])
		printf("    note         %s\n", r->note);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (r->broker_cpu_pct >= 0)
		printf("    cpu          broker %.0f%%, bench client %.0f%%, whole machine %.0f%% of %ld00%%"
		       " (%% of one core; the rest is the kernel's and other processes')\n",
		       r->broker_cpu_pct, r->client_cpu_pct, r->machine_cpu_pct, ncpu);
	else
		printf("    cpu          bench client %.0f%%, whole machine %.0f%% of %ld00%% (%% of one core;"
		       " broker not ours)\n", r->client_cpu_pct, r->machine_cpu_pct, ncpu);
	if (r->errors)
		printf("    errors       %" PRIu64 "\n", r->errors);
	printf("\n");
	fflush(stdout);
}

/* One target line: "what: measured (detail) vs need -> PASS|MISS". */
static void bk_target(const char *what, bool have, double value, double limit, bool higher_is_better,
		      const char *measured, const char *need)
{
	if (!have) {
		printf("  %-40s n/a (not measured)\n", what);
		return;
	}
	bool pass = higher_is_better ? value >= limit : value < limit;
	printf("  %-40s %-44s need %-14s %s\n", what, measured, need, pass ? "PASS" : "MISS");
}

/* ---- main --------------------------------------------------------------------------------------- */

void bench_kafka_usage(FILE *f)
{
	fprintf(f,
		"usage: strata bench kafka [--bootstrap HOST:PORT | --start [--stratad PATH]] [options]\n"
		"Runs Kafka workloads through librdkafka %s against a broker and prints throughput\n"
		"(records/s, MB/s = 10^6 bytes/s of record values), latency percentiles (p50, p99,\n"
		"p99.9, max) and CPU use, next to the machine's limits measured in the same run.\n"
		"\n"
		"broker:\n"
		"  --start                start a stratad on a free port with a temp data dir under\n"
		"                         --dir, stop it at the end (default without --bootstrap)\n"
		"  --bootstrap HOST:PORT  use a running broker (its topics are created and deleted)\n"
		"  --stratad PATH         the stratad to start (default: next to this strata)\n"
		"  --set KEY=VALUE        extra stratad setting (repeatable), e.g. --set\n"
		"                         log.flush.interval.messages=10000\n"
		"  --dir D                temp data dir parent and fio's directory (default .)\n"
		"  --keep                 keep the temp data dir (and, with --bootstrap, the topics)\n"
		"  -v, --verbose          also print per-second series: max-rate MB/s; the latency\n"
		"                         workload's worst e2e, Dirty, Writeback and CPU busy\n"
		"workloads (--shapes latency,throughput,small,consume; default all):\n"
		"  latency     OpenMessaging 1-topic-16-partitions-1kb at --rate MB/s (default 50),\n"
		"              acks=all, linger.ms=1; a consumer in the same process (own handle and\n"
		"              thread) measures end-to-end latency from the send time in each record;\n"
		"              --warmup seconds (default 2) are produced but not measured; records\n"
		"              have no key, so librdkafka's sticky partitioner spreads them (as the\n"
		"              Java client does under OpenMessaging); --round-robin: a partition per\n"
		"              record in turn instead (every produce request touches every partition);\n"
		"              prints the records over 5 ms and the worst second with what the machine\n"
		"              did in it (Dirty/Writeback of /proc/meminfo, all cores' busy time)\n"
		"  throughput  the same topic shape at max rate, acks=all (vs fio's write bandwidth)\n"
		"  small       100-byte records, one producer, max rate, 6 partitions, acks=1 and\n"
		"              acks=all (the classic single-producer test)\n"
		"  consume     reads back what 'throughput' wrote (its newest --consume-bytes, default\n"
		"              a quarter of RAM: in the page cache), vs loopback TCP bandwidth, as\n"
		"              OpenMessaging's consumers do: --consumers N librdkafka consumers\n"
		"              (default: two per core), each its own handle and thread with every\n"
		"              N-th partition, rd_kafka_consume_batch_queue(), per record only a byte\n"
		"              count and an offset-continuity check; the rate runs from the first\n"
		"              batch to the last record (the start-up is printed apart). Then, unless\n"
		"              --no-raw-fetch, the same records through N raw Fetch v4 connections\n"
		"              that only walk the record batch headers: what the broker serves,\n"
		"              printed next to the target, which stays on the Kafka client\n"
		"  --seconds N            duration of each producing workload (default 10)\n"
		"  --rate MB/s            the latency workload's rate (default 50)\n"
		"  --partitions N         partitions of the 1 KiB topics (default 16)\n"
		"  --record-bytes N       record size of the 1 KiB workloads (default 1024)\n"
		"  --small-partitions N   (default 6)   --small-bytes N (default 100)\n"
		"  --linger-ms N          linger.ms of the max-rate producers (default 5)\n"
		"  -X, --producer-set K=V librdkafka producer setting (repeatable, applied last)\n"
		"  --consumer-set K=V     librdkafka consumer setting (repeatable, applied last)\n"
		"machine limits:\n"
		"  --no-fio               skip fio (sequential 1M buffered writes + fsync, in the data\n"
		"                         dir): --fio-size first (default 1G), then again after\n"
		"                         'throughput' with the bytes it wrote (at most\n"
		"                         --fio-match-max, default 8G; 0 skips), which the target uses\n"
		"                         After fio (and before the 100-byte workloads, after the\n"
		"                         max-rate topic's deletion) the disk is let settle: syncfs,\n"
		"                         Dirty+Writeback back down (at most 30 s), then 1 s probes of\n"
		"                         4 KiB append + fdatasync until one has none over 20 ms (at\n"
		"                         most 5; their p50/p99/max are printed: the floor of acks=all\n"
		"                         latency); --no-settle skips it\n"
		"  --consume-bytes SIZE   most bytes 'consume' reads (0: all)\n"
		"  --consumers N[,M,...]  consumers (and raw Fetch connections) of 'consume'; more\n"
		"                         counts: 'consume' again with each (same records), a sweep\n"
		"                         (the target uses the first count)\n"
		"  --loopback-seconds S   loopback TCP test length (default 3; 0 skips it), with one\n"
		"                         stream (iperf3's default), one per core, and each\n"
		"                         --consumers count of streams at once (write() of 256 KiB\n"
		"                         from a buffer, 1 MiB reads, default socket buffers, a thread\n"
		"                         per end); the consume target divides by the best of them\n"
		"                         (one stream's share is printed too). A broker that\n"
		"                         sends from the page cache without a copy (splice) can\n"
		"                         beat it: the raw Fetch line may exceed 100%%\n"
		"Targets (PASS/MISS; a miss does not fail the command): acks=all 1 KiB produce >=\n"
		"70%% of fio; 100-byte records >= 1,000,000 records/s; consume >= 60%% of loopback;\n"
		"p99 end-to-end latency < 5 ms at 50 MB/s. Exit status 1 only when a workload fails.\n",
		rd_kafka_version_str());
}

static int bk_parse_double(const char *name, const char *v, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	if (errno || end == v || *end || !(d >= lo && d <= hi)) {
		fprintf(stderr, "bench: --%s must be %g..%g\n", name, lo, hi);
		return -1;
	}
	*out = d;
	return 0;
}

static int bk_parse_int(const char *name, const char *v, int lo, int hi, int *out)
{
	double d;
	if (bk_parse_double(name, v, lo, hi, &d) < 0 || d != (int)d) {
		fprintf(stderr, "bench: --%s must be an integer %d..%d\n", name, lo, hi);
		return -1;
	}
	*out = (int)d;
	return 0;
}

/* "512M", "8G", "1048576": bytes (K, M, G, T are powers of 1024, as fio reads them). */
static int bk_parse_size(const char *name, const char *v, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: break;
	}
	if (errno || end == v || *end || v[0] == '-' || (shift && n > (UINT64_MAX >> shift))) {
		fprintf(stderr, "bench: --%s: a size like 512M or 8G\n", name);
		return -1;
	}
	*out = (uint64_t)n << shift;
	return 0;
}

/* How idle the machine is right now (all cores, over ms), in %; -1 unknown. */
static double bk_idle_pct(int ms)
{
	int64_t b0, t0, b1, t1;
	bk_proc_stat(&b0, &t0);
	bk_sleep_ms(ms);
	bk_proc_stat(&b1, &t1);
	return t1 > t0 ? 100.0 * (1.0 - (double)(b1 - b0) / (double)(t1 - t0)) : -1;
}

static int bk_parse_shapes(const char *v, unsigned *out)
{
	unsigned m = 0;
	char tmp[256];
	if ((size_t)snprintf(tmp, sizeof tmp, "%s", v) >= sizeof tmp)
		return -1;
	char *save = NULL;
	for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (strcmp(t, "latency") == 0)
			m |= BK_LATENCY;
		else if (strcmp(t, "throughput") == 0)
			m |= BK_THROUGHPUT;
		else if (strcmp(t, "small") == 0)
			m |= BK_SMALL;
		else if (strcmp(t, "consume") == 0)
			m |= BK_CONSUME;
		else if (strcmp(t, "all") == 0)
			m |= BK_ALL;
		else {
			fprintf(stderr, "bench: unknown workload '%s' (latency, throughput, small, consume)\n", t);
			return -1;
		}
	}
	*out = m;
	return m ? 0 : -1;
}

/* "N" or "N,M,...": the first is the target's count, the others a sweep. */
static int bk_parse_consumers(const char *v, struct bk_opts *o)
{
	char tmp[128];
	if ((size_t)snprintf(tmp, sizeof tmp, "%s", v) >= sizeof tmp)
		return -1;
	char *save = NULL;
	int n = 0;
	for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save), n++) {
		int c;
		if (n > (int)ST_ARRAY_LEN(o->sweep)) {
			fprintf(stderr, "bench: --consumers: at most %zu counts\n", ST_ARRAY_LEN(o->sweep) + 1);
			return -1;
		}
		if (bk_parse_int("consumers", t, 1, BK_MAX_CONSUMERS, &c) < 0)
			return -1;
		if (n == 0)
			o->consumers = c;
		else
			o->sweep[n - 1] = c;
	}
	o->n_sweep = n > 0 ? n - 1 : 0;
	return n > 0 ? 0 : -1;
}

static int bk_push(const char **arr, int *n, const char *v, const char *what)
{
	if (*n >= BK_MAX_SETS || !strchr(v, '=')) {
		fprintf(stderr, "bench: %s: expected KEY=VALUE (at most %d)\n", what, BK_MAX_SETS);
		return -1;
	}
	arr[(*n)++] = v;
	return 0;
}

int bench_kafka_main(int argc, char **argv)
{
	static struct bk_opts o; /* large: option arrays */
	o = (struct bk_opts){ .dir = ".", .shapes = BK_ALL, .seconds = 10, .warmup_s = 2,
			      .rate_mb_s = 50, .partitions = 16, .record_bytes = 1024,
			      .small_partitions = 6, .small_bytes = 100, .linger_ms = 5, .fio = true,
			      .fio_size = "1G", .fio_match_max = 8ull << 30, .loopback_s = 3,
			      .raw_fetch = true, .settle = true };
	{
		/* The newest quarter of RAM was certainly just written and is still cached. */
		long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
		o.consume_bytes = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz / 4 : 1ull << 30;
	}
	enum { O_START = 256, O_STRATAD, O_DIR, O_KEEP, O_SHAPES, O_SECONDS, O_WARMUP, O_RATE,
	       O_PARTS, O_RBYTES, O_SPARTS, O_SBYTES, O_LINGER, O_CSET, O_NOFIO, O_FIOSIZE, O_LOOP,
	       O_FIOMATCH, O_CBYTES, O_RR, O_CONSUMERS, O_NORAW, O_NOSETTLE };
	static const struct option lopts[] = {
		{ "bootstrap", required_argument, NULL, 'b' },
		{ "start", no_argument, NULL, O_START },
		{ "stratad", required_argument, NULL, O_STRATAD },
		{ "set", required_argument, NULL, 's' },
		{ "dir", required_argument, NULL, O_DIR },
		{ "keep", no_argument, NULL, O_KEEP },
		{ "shapes", required_argument, NULL, O_SHAPES },
		{ "seconds", required_argument, NULL, O_SECONDS },
		{ "warmup", required_argument, NULL, O_WARMUP },
		{ "rate", required_argument, NULL, O_RATE },
		{ "partitions", required_argument, NULL, O_PARTS },
		{ "record-bytes", required_argument, NULL, O_RBYTES },
		{ "small-partitions", required_argument, NULL, O_SPARTS },
		{ "small-bytes", required_argument, NULL, O_SBYTES },
		{ "linger-ms", required_argument, NULL, O_LINGER },
		{ "round-robin", no_argument, NULL, O_RR },
		{ "verbose", no_argument, NULL, 'v' },
		{ "producer-set", required_argument, NULL, 'X' },
		{ "consumer-set", required_argument, NULL, O_CSET },
		{ "no-fio", no_argument, NULL, O_NOFIO },
		{ "fio-size", required_argument, NULL, O_FIOSIZE },
		{ "fio-match-max", required_argument, NULL, O_FIOMATCH },
		{ "consume-bytes", required_argument, NULL, O_CBYTES },
		{ "loopback-seconds", required_argument, NULL, O_LOOP },
		{ "consumers", required_argument, NULL, O_CONSUMERS },
		{ "no-raw-fetch", no_argument, NULL, O_NORAW },
		{ "no-settle", no_argument, NULL, O_NOSETTLE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool start = false;
	optind = 1;
	int ch;
	while ((ch = getopt_long(argc, argv, "hb:s:X:v", lopts, NULL)) != -1) {
		int bad = 0;
		switch (ch) {
		case 'b': o.bootstrap = optarg; break;
		case O_START: start = true; break;
		case O_STRATAD: o.stratad = optarg; break;
		case 's': bad = bk_push(o.broker_sets, &o.n_broker_sets, optarg, "--set"); break;
		case O_DIR: o.dir = optarg; break;
		case O_KEEP: o.keep = true; break;
		case O_SHAPES: bad = bk_parse_shapes(optarg, &o.shapes); break;
		case O_SECONDS: bad = bk_parse_double("seconds", optarg, 0.1, 86400, &o.seconds); break;
		case O_WARMUP: bad = bk_parse_double("warmup", optarg, 0, 3600, &o.warmup_s); break;
		case O_RATE: bad = bk_parse_double("rate", optarg, 0.001, 100000, &o.rate_mb_s); break;
		case O_PARTS: bad = bk_parse_int("partitions", optarg, 1, 10000, &o.partitions); break;
		case O_RBYTES: bad = bk_parse_int("record-bytes", optarg, 8, 900000, &o.record_bytes); break;
		case O_SPARTS: bad = bk_parse_int("small-partitions", optarg, 1, 10000, &o.small_partitions); break;
		case O_SBYTES: bad = bk_parse_int("small-bytes", optarg, 8, 900000, &o.small_bytes); break;
		case O_LINGER: bad = bk_parse_int("linger-ms", optarg, 0, 60000, &o.linger_ms); break;
		case 'X': bad = bk_push(o.producer_sets, &o.n_producer_sets, optarg, "--producer-set"); break;
		case O_CSET: bad = bk_push(o.consumer_sets, &o.n_consumer_sets, optarg, "--consumer-set"); break;
		case O_NOFIO: o.fio = false; break;
		case O_RR: o.round_robin = true; break;
		case 'v': o.verbose = true; break;
		case O_FIOSIZE: o.fio_size = optarg; break;
		case O_FIOMATCH: bad = bk_parse_size("fio-match-max", optarg, &o.fio_match_max); break;
		case O_CBYTES:
			bad = bk_parse_size("consume-bytes", optarg, &o.consume_bytes);
			if (!bad && o.consume_bytes == 0)
				o.consume_bytes = UINT64_MAX / 2; /* 0: everything */
			break;
		case O_LOOP: bad = bk_parse_double("loopback-seconds", optarg, 0, 600, &o.loopback_s); break;
		case O_CONSUMERS: bad = bk_parse_consumers(optarg, &o); break;
		case O_NORAW: o.raw_fetch = false; break;
		case O_NOSETTLE: o.settle = false; break;
		case 'h': bench_kafka_usage(stdout); return 0;
		default: bench_kafka_usage(stderr); return 2;
		}
		if (bad)
			return 2;
	}
	if (optind != argc || (start && o.bootstrap)) {
		bench_kafka_usage(stderr);
		return 2;
	}
	if (o.n_broker_sets && o.bootstrap) {
		fprintf(stderr, "bench: --set applies to the broker we start, not to --bootstrap\n");
		return 2;
	}
	if ((o.shapes & BK_CONSUME) && !(o.shapes & BK_THROUGHPUT)) {
		fprintf(stderr, "bench: 'consume' reads what 'throughput' wrote: add it to --shapes\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	/* latency, throughput, small acks=1, small acks=all, consume, raw fetch, then the sweep's
	 * consume + raw fetch pairs */
	static struct bk_result res[6 + 2 * ST_ARRAY_LEN(o.sweep)];
	memset(res, 0, sizeof res);
	struct bk_broker broker = { 0 };
	struct bk_ctx x = { .o = &o };
	int status = 0;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	/* Two per core: a librdkafka handle has one fetch in flight and parses the answer on its
	 * broker thread before it asks again, so one per core leaves cores waiting on the round
	 * trip (measured on 2 cores: 4 consumers > 3 > 2 > 1). */
	if (o.consumers == 0)
		o.consumers = (int)ST_MAX(1, ST_MIN(2 * ncpu, BK_MAX_CONSUMERS));

	const char *fio_dir = o.dir;
	if (!o.bootstrap) {
		if (bk_broker_start(&o, &broker) < 0) {
			status = 1;
			goto out;
		}
		x.bootstrap = broker.bootstrap;
		x.broker_pid = broker.pid;
		fio_dir = broker.root;
		printf("strata bench kafka: started stratad pid %d on %s, data dir %s/log; librdkafka %s; "
		       "%ld cores\n", (int)broker.pid, broker.bootstrap, broker.root, rd_kafka_version_str(), ncpu);
	} else {
		x.bootstrap = o.bootstrap;
		printf("strata bench kafka: broker %s (not ours: fio runs in %s, which should be on its "
		       "data filesystem); librdkafka %s; %ld cores\n", o.bootstrap, o.dir,
		       rd_kafka_version_str(), ncpu);
	}
	for (int i = 0; i < o.n_broker_sets; i++)
		printf("  stratad --set %s\n", o.broker_sets[i]);

	double idle = bk_idle_pct(1000);
	double load[3] = { -1, -1, -1 };
	if (getloadavg(load, 3) < 0)
		load[0] = -1;
	if (idle >= 0)
		printf("  machine %.0f%% idle before the run, load average %.2f %.2f %.2f%s\n", idle, load[0],
		       load[1], load[2], idle < 90 ? ": something else is running, figures will be noisy" : "");

	/* Machine limits first, while the data filesystem is as fresh as it will be. */
	double fio_mb_s = -1, lo_mb_s = -1, lo1_mb_s = -1;
	printf("\nmachine limits\n");
	if (o.fio) {
		int64_t dirty0, wb0;
		bk_meminfo_dirty(&dirty0, &wb0);
		fprintf(stderr, "bench: fio ...\n");
		fio_mb_s = bk_fio_mb_s(fio_dir, o.fio_size);
		if (fio_mb_s > 0)
			printf("  fio seq write (bs 1M, %s, psync, end_fsync) in %s: %.1f MB/s\n"
			       "    (a short burst; a virtual disk's cache may flatter it: a run matched to the\n"
			       "    volume the max-rate workload writes follows that workload)\n",
			       o.fio_size, fio_dir, fio_mb_s);
		else
			printf("  fio seq write: did not run (is fio installed?)\n");
		if (o.settle) {
			fprintf(stderr, "bench: settle ...\n");
			bk_settle(fio_dir, dirty0 + wb0, "fio");
		}
	}
	if (o.loopback_s > 0) {
		/* One stream (iperf3's default), one per core, and as many as each consume run has
		 * connections: the limit is the best of them, what the machine's loopback really
		 * carries (a run with more connections must not be held to a lower bar). */
		fprintf(stderr, "bench: loopback ...\n");
		int counts[2 + ST_ARRAY_LEN(o.sweep)], n_counts = 0;
		counts[n_counts++] = 1;
		counts[n_counts++] = (int)ST_MAX(1, ST_MIN(ncpu, BK_LO_MAX_STREAMS));
		counts[n_counts++] = ST_MIN(o.consumers, o.partitions);
		for (int i = 0; i < o.n_sweep; i++)
			counts[n_counts++] = ST_MIN(o.sweep[i], o.partitions);
		printf("  loopback TCP (write() of 256 KiB from a buffer, 1 MiB reads, default buffers, %.1f s each):",
		       o.loopback_s);
		for (int i = 0; i < n_counts; i++) {
			bool seen = false;
			for (int k = 0; k < i; k++)
				seen |= counts[k] == counts[i];
			if (seen)
				continue;
			double mb = bk_loopback_mb_s(o.loopback_s, counts[i]);
			if (counts[i] == 1)
				lo1_mb_s = mb;
			lo_mb_s = ST_MAX(lo_mb_s, mb);
			if (mb > 0)
				printf("%s %d stream%s %.1f MB/s", i ? "," : "", counts[i], counts[i] > 1 ? "s" : "", mb);
			else
				printf("%s %d stream%s failed", i ? "," : "", counts[i], counts[i] > 1 ? "s" : "");
		}
		if (lo_mb_s > 0)
			printf(" -> limit %.1f MB/s\n", lo_mb_s);
		else
			printf(" -> no limit\n");
	}
	printf("\nproducer settings (all): acks per workload,");
	for (size_t i = 0; i < ST_ARRAY_LEN(bk_prod_common); i++)
		printf(" %s=%s", bk_prod_common[i][0], bk_prod_common[i][1]);
	printf("\n  fixed rate: linger.ms=1 batch.num.messages=10000, rd_kafka_produce() one record at a time,"
	       " %s\n", o.round_robin ? "partitions round robin per record (--round-robin)" :
	       "no key, librdkafka's partitioner (sticky: sticky.partitioning.linger.ms=10 by default,"
	       " as the Java client's for OpenMessaging)");
	printf(""
	       "  max rate:   linger.ms=%d batch.num.messages=100000, rd_kafka_produce_batch() of ~64 KiB"
	       " per partition, partitions round robin\n", o.linger_ms);
	for (int i = 0; i < o.n_producer_sets; i++)
		printf("  override:   %s\n", o.producer_sets[i]);
	printf("consumer settings: assign() (no group) from a given offset, a handle and a thread per consumer,"
	       " consume: rd_kafka_consume_batch_queue() of up to %d;", BK_CONS_BATCH);
	for (size_t i = 0; i < ST_ARRAY_LEN(bk_cons_common); i++)
		printf(" %s=%s", bk_cons_common[i][0], bk_cons_common[i][1]);
	printf("\n");
	for (int i = 0; i < o.n_consumer_sets; i++)
		printf("  override:   %s\n", o.consumer_sets[i]);
	printf("\n");
	fflush(stdout);

	int idx = 0;
	if (o.shapes & BK_LATENCY) {
		fprintf(stderr, "bench: latency workload (%g s + %g s warmup) ...\n", o.seconds, o.warmup_s);
		if (bk_run_fixed_rate(&x, &res[0]) < 0)
			status = 1;
		bk_print_result(++idx, &res[0], o.verbose);
	}
	if (o.shapes & BK_THROUGHPUT) {
		fprintf(stderr, "bench: throughput workload (%g s) ...\n", o.seconds);
		snprintf(res[1].name, sizeof res[1].name, "1-topic-%d-partitions-%s max rate, acks=all",
			 o.partitions, o.record_bytes == 1024 ? "1kb" : "custom");
		if (bk_run_max_rate(&x, &res[1], "1kb-max", o.partitions, o.record_bytes, "all", x.tp_topic,
				    sizeof x.tp_topic) < 0)
			status = 1;
		x.tp_records = res[1].records;
		bk_print_result(++idx, &res[1], o.verbose);
	}
	if ((o.shapes & BK_CONSUME) && x.tp_records > 0) {
		for (int i = 0; i <= o.n_sweep; i++) {
			int n = i == 0 ? o.consumers : o.sweep[i - 1];
			struct bk_result *r = i == 0 ? &res[4] : &res[4 + 2 * i];
			struct bk_result *raw = i == 0 ? &res[5] : &res[5 + 2 * i];
			fprintf(stderr, "bench: consume workload (%d consumers) ...\n", ST_MIN(n, o.partitions));
			if (bk_run_consume(&x, n, r, o.raw_fetch ? raw : NULL) < 0)
				status = 1;
			bk_print_result(++idx, r, o.verbose);
			if (raw->ran)
				bk_print_result(++idx, raw, o.verbose);
		}
		for (int i = 0; o.n_sweep > 0 && i <= o.n_sweep && lo_mb_s > 0; i++) {
			int n = ST_MIN(i == 0 ? o.consumers : o.sweep[i - 1], o.partitions);
			const struct bk_result *r = &res[4 + 2 * i], *raw = &res[5 + 2 * i];
			printf("consume sweep: %2d consumer%s %6.1f MB/s = %5.1f%% of loopback", n, n > 1 ? "s" : " ",
			       bk_mb_s(r), 100 * bk_mb_s(r) / lo_mb_s);
			if (raw->ran)
				printf("; raw Fetch %6.1f MB/s = %5.1f%%", bk_mb_s(raw), 100 * bk_mb_s(raw) / lo_mb_s);
			printf("\n");
		}
		if (o.n_sweep)
			printf("\n");
	}
	/* fio again with as many bytes as the max-rate workload wrote: the same disk state and
	 * volume (a virtual disk's write-back cache can make a short burst look much faster). */
	int64_t dirty1, wb1;
	bk_meminfo_dirty(&dirty1, &wb1);
	bk_drop_topic(&x, x.tp_topic); /* read back: its GBs can go */
	double fio_match_mb_s = -1;
	uint64_t match_bytes = ST_MIN((uint64_t)res[1].bytes, o.fio_match_max) & ~((1ull << 20) - 1);
	if (o.fio && fio_mb_s > 0 && res[1].ran && match_bytes >= (64ull << 20)) {
		struct statvfs vfs;
		if (statvfs(fio_dir, &vfs) == 0 &&
		    (uint64_t)vfs.f_bavail * vfs.f_frsize < match_bytes + (1ull << 30)) {
			printf("fio matched to the max-rate volume: skipped (%.1f GB free, need %.1f)\n\n",
			       (double)vfs.f_bavail * (double)vfs.f_frsize / 1e9, (double)match_bytes / 1e9 + 1.07);
		} else {
			char sz[32];
			snprintf(sz, sizeof sz, "%" PRIu64 "M", match_bytes >> 20);
			fprintf(stderr, "bench: fio matched to the max-rate workload (%s) ...\n", sz);
			fio_match_mb_s = bk_fio_mb_s(fio_dir, sz);
			if (fio_match_mb_s > 0)
				printf("fio seq write (bs 1M, %s = what the max-rate 1 KiB workload wrote%s, psync, end_fsync): %.1f MB/s\n",
				       sz, (uint64_t)res[1].bytes > o.fio_match_max ? ", capped by --fio-match-max" : "",
				       fio_match_mb_s);
			fflush(stdout);
		}
	}
	if ((o.shapes & BK_SMALL) && o.settle && res[1].ran) {
		fprintf(stderr, "bench: settle ...\n");
		bk_settle(fio_dir, dirty1 + wb1, fio_match_mb_s > 0 ? "the max-rate topic's deletion and fio" :
			  "the max-rate topic's deletion");
	}
	if (res[1].ran)
		printf("\n");
	double fio_ref = fio_match_mb_s > 0 ? fio_match_mb_s : fio_mb_s;

	if (o.shapes & BK_SMALL) {
		static const char *const acks[2] = { "1", "all" };
		for (int k = 0; k < 2; k++) {
			struct bk_result *r = &res[2 + k];
			fprintf(stderr, "bench: %d-byte workload, acks=%s (%g s) ...\n", o.small_bytes, acks[k],
				o.seconds);
			snprintf(r->name, sizeof r->name, "%d-byte records, 1 producer, %d partitions, max rate, acks=%s",
				 o.small_bytes, o.small_partitions, acks[k]);
			if (bk_run_max_rate(&x, r, k ? "small-all" : "small-1", o.small_partitions, o.small_bytes,
					    acks[k], NULL, 0) < 0)
				status = 1;
			bk_print_result(++idx, r, o.verbose);
		}
	}
	for (size_t i = 0; i < ST_ARRAY_LEN(res); i++)
		if (res[i].ran && !res[i].ok)
			status = 1;

	printf("targets (PASS/MISS are reported, never fatal)\n");
	char m[128], need[32];
	double f_tp = fio_ref > 0 ? bk_mb_s(&res[1]) / fio_ref : 0;
	snprintf(m, sizeof m, "%.1f%% (%.1f of %.1f MB/s%s)", 100 * f_tp, bk_mb_s(&res[1]), fio_ref,
		 fio_match_mb_s > 0 ? ", matched fio" : "");
	bk_target("acks=all 1 KiB produce / fio seq write", res[1].ran && res[1].ok && fio_ref > 0, f_tp, 0.70,
		  true, m, ">= 70%");
	for (int k = 0; k < 2; k++) {
		char what[96];
		snprintf(what, sizeof what, "%d-byte records, acks=%s", o.small_bytes, k ? "all" : "1");
		snprintf(m, sizeof m, "%.0f records/s", bk_rec_s(&res[2 + k]));
		bk_target(what, res[2 + k].ran && res[2 + k].ok, bk_rec_s(&res[2 + k]), 1e6, true, m,
			  ">= 1000000/s");
	}
	double f_lo = lo_mb_s > 0 ? bk_mb_s(&res[4]) / lo_mb_s : 0;
	snprintf(m, sizeof m, "%.1f%% (%.1f of %.1f MB/s)", 100 * f_lo, bk_mb_s(&res[4]), lo_mb_s);
	bk_target("consume (page cache) / loopback TCP", res[4].ran && res[4].ok && lo_mb_s > 0, f_lo, 0.60, true,
		  m, ">= 60%");
	if (res[4].ran && res[4].ok && lo1_mb_s > 0 && lo1_mb_s < lo_mb_s)
		printf("  %-40s %.1f%% (%.1f of %.1f MB/s; not the target's limit)\n", "  vs one loopback stream",
		       100 * bk_mb_s(&res[4]) / lo1_mb_s, bk_mb_s(&res[4]), lo1_mb_s);
	if (res[5].ran && res[5].ok && lo_mb_s > 0)
		printf("  %-40s %.1f%% (%.1f of %.1f MB/s; not a target)\n", "  the broker serves (raw Fetch loop)",
		       100 * bk_mb_s(&res[5]) / lo_mb_s, bk_mb_s(&res[5]), lo_mb_s);
	double p99 = bk_hist_pct_ms(&res[0].e2e, 99);
	char what[96];
	snprintf(what, sizeof what, "p99 end-to-end latency at %.0f MB/s", o.rate_mb_s);
	snprintf(m, sizeof m, "%.3f ms", p99);
	snprintf(need, sizeof need, "< 5 ms");
	bk_target(what, res[0].ran && res[0].ok && res[0].e2e.n > 0, p99, 5.0, false, m, need);
	if (res[0].ran && res[0].n_lat_secs > 0 && res[0].sec_dirty_mb) {
		/* At 50 MB/s with an fsync per produce the broker keeps little dirty, and it and the
		 * bench use well under a core: more is someone else's, and the p99 shows it too. */
		double dirty = 0, busy = 0;
		for (int i = 0; i < res[0].n_lat_secs; i++) {
			dirty = ST_MAX(dirty, res[0].sec_dirty_mb[i] + res[0].sec_wb_mb[i]);
			busy = ST_MAX(busy, res[0].sec_busy_pct[i]);
		}
		if (dirty > 256 || busy > 50.0 * (double)ncpu + 50)
			printf("  (during the latency workload the machine was busy with others' work: Dirty+Writeback\n"
			       "   up to %.0f MB, all cores up to %.0f%% busy of %ld00%%; run it on an idle machine\n"
			       "   for the broker's own figure; -v prints each second)\n", dirty, busy, ncpu);
	}
	if (o.rate_mb_s != 50)
		printf("  (the latency target is defined at 50 MB/s; this run used --rate %.0f)\n", o.rate_mb_s);
	fflush(stdout);
	for (size_t i = 0; i < ST_ARRAY_LEN(res); i++) {
		free(res[i].sec_e2e_max_ms);
		free(res[i].sec_dirty_mb);
		free(res[i].sec_wb_mb);
		free(res[i].sec_busy_pct);
	}

out:
	if (o.bootstrap && x.bootstrap) /* a broker not ours keeps nothing of ours */
		for (int i = 0; i < x.n_created; i++)
			bk_drop_topic(&x, x.created[i]);
	if (broker.pid > 0) {
		int st = bk_broker_stop(&broker);
		if (st != 0) {
			fprintf(stderr, "bench: stratad exited with status %d\n", st);
			bk_broker_dump_log(&broker);
			status = 1;
		}
	}
	if (broker.root[0]) {
		if (o.keep) {
			fprintf(stderr, "bench: kept %s\n", broker.root);
		} else {
			if (status != 0)
				bk_broker_dump_log(&broker); /* the data (GBs) goes, the story stays */
			nftw(broker.root, bk_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		}
	}
	return status;
}
