/* t/crash.c -- crash safety of the partition log. Each round a child process opens the log
 * (fsync before ack, small segments so rolls happen) and appends as fast as it can with a
 * random window of appends in flight, reporting every acknowledged batch (offsets, size,
 * CRC-32C of its bytes) through a pipe; the parent SIGKILLs it at a random moment, sometimes
 * also tears the unacknowledged tail of the active segment (cut, zeros, garbage) or its
 * indexes, as a power loss could, then reopens the log and checks: every acknowledged batch
 * is there byte-exact, a scan of the whole log serves only whole CRC-valid batches with
 * contiguous offsets up to the log end, and appends continue at the log end offset.
 * STRATA_CRASH_ROUNDS overrides the number of rounds (default 60). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "strata/common.h"
#include "strata/compress.h"
#include "strata/crc32c.h"
#include "strata/kerr.h"
#include "strata/log.h"
#include "strata/slog.h"
#include "strata/uring.h"
#include "tap.h"
#include "batchgen.h"
#include "logtest.h"

#define SEGMENT_BYTES (192 * 1024)

/* One acknowledged batch, as the child reports it. */
struct ack {
	int64_t base, last;
	uint32_t len, crc;
};

/* ---- child ---------------------------------------------------------------------------------- */

struct cslot {
	struct log_append a;
	uint8_t *buf;
	bool busy;
};

static int child_pipe = -1;
static int child_inflight;

static void child_done(struct log_append *a, int kerr)
{
	struct cslot *s = ST_CONTAINER_OF(a, struct cslot, a);
	s->busy = false;
	child_inflight--;
	if (kerr != KERR_NONE)
		_exit(3);
	struct ack m = { a->base_offset, a->last_offset, (uint32_t)a->len, crc32c(0, a->data, a->len) };
	/* one write of sizeof(m) < PIPE_BUF: atomic */
	if (write(child_pipe, &m, sizeof(m)) != (ssize_t)sizeof(m))
		_exit(4);
	free(s->buf);
	s->buf = NULL;
}

static void child_main(const char *dir, uint64_t seed, int fd)
{
	child_pipe = fd;
	slog_set_level(SLOG_ERROR);
	struct uring ur;
	if (uring_init(&ur, 256) != 0)
		_exit(5);
	struct log_config cfg;
	log_config_defaults(&cfg);
	cfg.segment_bytes = SEGMENT_BYTES;
	struct log *l;
	if (log_open(&ur, dir, &cfg, NULL, &l) != 0)
		_exit(6);
	struct lt_rng rng = { seed };
	int window = (int)lt_range(&rng, 1, 32);
	struct cslot *slots = calloc((size_t)window, sizeof(*slots));
	if (!slots)
		_exit(7);
	int64_t ts = st_now_ms();
	for (;;) { /* until SIGKILL */
		for (int i = 0; i < window; i++) {
			if (slots[i].busy)
				continue;
			struct batchgen_opts o = BATCHGEN_DEFAULTS;
			o.n_records = (int)lt_range(&rng, 1, 16);
			o.value_len = (size_t)(lt_range(&rng, 0, 3) == 0 ? lt_range(&rng, 0, 100) : lt_range(&rng, 100, 4000));
			o.base_ts_ms = ts;
			o.with_keys = (int)lt_range(&rng, 0, 1);
			o.n_headers = (int)lt_range(&rng, 0, 2);
			int64_t c = lt_range(&rng, 0, 9);
			o.codec = c == 0 ? COMPRESS_LZ4 : c == 1 ? COMPRESS_ZSTD : COMPRESS_NONE;
			size_t cap = batchgen_bound(&o) + 256;
			slots[i].buf = malloc(cap);
			size_t len = slots[i].buf ? batchgen_build_opts(slots[i].buf, cap, &o) : 0;
			if (len == 0)
				_exit(10);
			memset(&slots[i].a, 0, sizeof(slots[i].a));
			slots[i].a.data = slots[i].buf;
			slots[i].a.len = len;
			slots[i].a.done = child_done;
			if (log_append(l, &slots[i].a) != KERR_NONE)
				_exit(8);
			slots[i].busy = true;
			child_inflight++;
			ts += 1;
		}
		int rc = uring_run_once(&ur, 50);
		if (rc < 0 && rc != -ETIME && rc != -EINTR)
			_exit(9);
	}
}

/* ---- damage a power loss may cause past the last acknowledged batch ---------------------------- */

static int64_t last_segment_base(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int64_t best = -1;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t nl = strlen(de->d_name);
		if (nl == 24 && strcmp(de->d_name + 20, ".log") == 0) {
			int64_t b = strtoll(de->d_name, NULL, 10);
			best = ST_MAX(best, b);
		}
	}
	closedir(d);
	return best;
}

/* Cuts the active segment somewhere after the last acknowledged batch, then maybe appends
 * zeros or garbage (a torn write), and maybe tears its indexes. Returns a description. */
static const char *tear_tail(const char *dir, int64_t max_acked_last, struct lt_rng *rng)
{
	int64_t base = last_segment_base(dir);
	if (base < 0)
		return "no segment";
	char path[4096];
	snprintf(path, sizeof(path), "%s/%020lld.log", dir, (long long)base);
	int fd = open(path, O_RDWR);
	if (fd < 0)
		return "cannot open";
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return "fstat failed";
	}
	/* walk the batches: the cut may start at the first batch past the acknowledged ones */
	int64_t pos = 0, cut_from = st.st_size;
	uint8_t hdr[61];
	while (pos + 61 <= st.st_size) {
		if (pread(fd, hdr, sizeof(hdr), pos) != (ssize_t)sizeof(hdr))
			break;
		int64_t b = (int64_t)st_be64(hdr);
		int64_t size = 12 + (int64_t)st_be32(hdr + 8);
		int64_t last = b + (int32_t)st_be32(hdr + 23);
		if (size < 61 || pos + size > st.st_size) {
			cut_from = pos;
			break;
		}
		if (last > max_acked_last) {
			cut_from = pos;
			break;
		}
		pos += size;
	}
	static char desc[160];
	int64_t cut = cut_from + (int64_t)(lt_next(rng) % (uint64_t)(st.st_size - cut_from + 1));
	const char *what = "none";
	if (cut < st.st_size && ftruncate(fd, cut) == 0)
		what = "cut";
	else
		cut = st.st_size;
	int64_t g = lt_range(rng, 0, 3);
	int64_t glen = lt_range(rng, 1, 5000);
	if (g == 1 || g == 2) {
		uint8_t *junk = calloc(1, (size_t)glen);
		ST_ASSERT(junk);
		if (g == 2) /* a plausible header: a length that runs past the end, or a bad CRC */
			for (int64_t i = 0; i < glen; i++)
				junk[i] = (uint8_t)lt_next(rng);
		if (g == 2 && glen >= 61) {
			st_put_be64(junk, (uint64_t)max_acked_last + 1);
			st_put_be32(junk + 8, (uint32_t)(glen - 12));
			junk[16] = 2;
		}
		if (pwrite(fd, junk, (size_t)glen, cut) != glen)
			what = "append failed";
		free(junk);
	}
	close(fd);
	/* the active segment's indexes are not trusted after a crash: tear them too sometimes */
	int64_t ix = lt_range(rng, 0, 3);
	const char *ixwhat = "";
	if (ix == 1 || ix == 2) {
		static const char *const ext[] = { "index", "timeindex" };
		for (int e = 0; e < 2; e++) {
			snprintf(path, sizeof(path), "%s/%020lld.%s", dir, (long long)base, ext[e]);
			if (ix == 1) {
				unlink(path);
				ixwhat = ", indexes deleted";
			} else {
				struct stat is;
				if (stat(path, &is) == 0 && is.st_size > 0 &&
				    truncate(path, (off_t)(lt_next(rng) % (uint64_t)is.st_size)) == 0)
					ixwhat = ", indexes cut";
			}
		}
	}
	snprintf(desc, sizeof(desc), "segment %lld: %s at %lld of %lld%s%s", (long long)base, what,
		 (long long)cut, (long long)st.st_size,
		 g == 1 ? ", zeros appended" : g == 2 ? ", garbage appended" : "", ixwhat);
	return desc;
}

/* ---- parent checks ------------------------------------------------------------------------------ */

static struct ack *acks;
static size_t nacks, cap_acks;

static void ack_push(const struct ack *a)
{
	if (nacks == cap_acks) {
		cap_acks = cap_acks ? cap_acks * 2 : 4096;
		acks = realloc(acks, cap_acks * sizeof(*acks));
		ST_ASSERT(acks);
	}
	acks[nacks++] = *a;
}

/* Reads the batch with base offset a->base alone and compares size and CRC of the bytes. */
static bool ack_present(struct log *l, const struct ack *a)
{
	struct log_slice s;
	int kerr = log_read(l, a->base, log_high_watermark(l), 1, true, &s);
	if (kerr != KERR_NONE)
		return false;
	bool good = false;
	if (s.len == (int64_t)a->len && s.first_offset == a->base && s.next_offset == a->last + 1) {
		uint8_t *b = lt_slice_bytes(&s);
		good = b && crc32c(0, b, a->len) == a->crc && lt_batch_crc_ok(b, a->len);
		free(b);
	}
	log_slice_release(&s);
	return good;
}

/* The whole log from its start. Returns SCAN_BAD when a slice holds anything but whole
 * CRC-valid batches in offset order (torn or garbage bytes served), SCAN_GAP when offsets
 * jump (a hole, or a slice's next_offset past its last batch, or the scan not ending at the
 * log end offset), 0 when clean. */
enum { SCAN_BAD = 1, SCAN_GAP = 2 };
/* the same damage is seen again every round until the next wipe: bounded diagnostics */
static int scan_diags, bad_diags;

static int scan_all(struct log *l)
{
	int64_t off = log_start_offset(l), hw = log_high_watermark(l);
	int res = 0;
	for (int guard = 0; off < hw && guard < 10000000; guard++) {
		struct log_slice s;
		int kerr = log_read(l, off, hw, 256 * 1024, true, &s);
		if (kerr == KERR_NONE && s.len == 0) {
			/* below the high watermark yet nothing to read: offsets missing there */
			if (scan_diags++ < 3)
				tap_diag("scan: nothing at %lld below the high watermark %lld", (long long)off, (long long)hw);
			log_slice_release(&s);
			return res | SCAN_GAP;
		}
		if (kerr != KERR_NONE) {
			if (bad_diags++ < 5)
				tap_diag("scan at %lld (hw %lld): %s", (long long)off, (long long)hw, kerr_name(kerr));
			return res | SCAN_BAD;
		}
		uint8_t *b = lt_slice_bytes(&s);
		if (!b) {
			log_slice_release(&s);
			return res | SCAN_BAD;
		}
		if (s.first_offset != off) {
			if (scan_diags++ < 3)
				tap_diag("scan: read at %lld returned a slice from %lld", (long long)off, (long long)s.first_offset);
			res |= s.first_offset > off ? SCAN_GAP : SCAN_BAD;
		}
		int64_t pos = 0, expect = s.first_offset;
		while (pos < s.len) {
			int64_t size = s.len - pos >= 61 ? 12 + (int64_t)st_be32(b + pos + 8) : 0;
			int64_t base = s.len - pos >= 61 ? (int64_t)st_be64(b + pos) : -1;
			if (size < 61 || pos + size > s.len || !lt_batch_crc_ok(b + pos, (size_t)size)) {
				if (bad_diags++ < 5)
					tap_diag("scan: bad batch at slice position %lld (base %lld, size %lld of %lld)",
						 (long long)pos, (long long)base, (long long)size, (long long)s.len);
				res |= SCAN_BAD;
				break;
			}
			if (base != expect) {
				if (scan_diags++ < 3)
					tap_diag("scan: batch base %lld, expected %lld", (long long)base, (long long)expect);
				res |= base > expect ? SCAN_GAP : SCAN_BAD;
			}
			expect = base + (int32_t)st_be32(b + pos + 23) + 1;
			pos += size;
		}
		if (!(res & SCAN_BAD) && expect != s.next_offset) {
			if (scan_diags++ < 3)
				tap_diag("scan: slice [%lld, +%lld) from offset %lld: next_offset %lld, batches end at %lld",
					 (long long)s.file_pos, (long long)s.len, (long long)s.first_offset,
					 (long long)s.next_offset, (long long)expect);
			res |= SCAN_GAP;
		}
		free(b);
		bool stuck = s.next_offset <= off;
		off = s.next_offset;
		log_slice_release(&s);
		if ((res & SCAN_BAD) || stuck)
			return res | (stuck ? SCAN_BAD : 0);
	}
	if (off != log_end_offset(l)) {
		if (scan_diags++ < 3)
			tap_diag("scan ended at %lld, log end offset %lld", (long long)off, (long long)log_end_offset(l));
		res |= SCAN_GAP;
	}
	return res;
}

static char tmp_root[64];

/* Also on BAIL_OUT (exit): the children leave with _exit and never run it. */
static void remove_tmp_root(void)
{
	if (!tmp_root[0])
		return;
	char cmd[sizeof(tmp_root) + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp_root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmp_root);
	tmp_root[0] = 0;
}

int main(void)
{
	int rounds = 60;
	const char *env = getenv("STRATA_CRASH_ROUNDS");
	if (env && atoi(env) > 0)
		rounds = atoi(env);
	slog_set_level(SLOG_ERROR);
	char dir[] = "/tmp/strata-crash-XXXXXX";
	if (!mkdtemp(dir))
		BAIL_OUT("mkdtemp");
	snprintf(tmp_root, sizeof(tmp_root), "%s", dir);
	atexit(remove_tmp_root);
	char logdir[sizeof(dir) + 8];
	snprintf(logdir, sizeof(logdir), "%s/p0", dir);
	uint64_t seed0 = (uint64_t)st_mono_ns();
	if (getenv("STRATA_CRASH_SEED"))
		seed0 = strtoull(getenv("STRATA_CRASH_SEED"), NULL, 10);
	tap_diag("seed %llu (rounds %d)", (unsigned long long)seed0, rounds);
	struct lt_rng rng = { seed0 | 1 };

	int64_t total_acked = 0, rounds_with_acks = 0, torn_rounds = 0, tmp_rounds = 0;
	int fail_tmp = 0;
	int fail_present = 0, fail_scan = 0, fail_gap = 0, fail_bad = 0, fail_continue = 0, fail_open = 0, fail_child = 0, fail_end = 0;
	int64_t max_acked_last = -1;
	for (int r = 0; r < rounds; r++) {
		/* keep the directory small: start over now and then */
		if (r % 15 == 0 && r > 0) {
			char cmd[sizeof(logdir) + 16];
			snprintf(cmd, sizeof(cmd), "rm -rf %s", logdir);
			if (system(cmd) != 0)
				BAIL_OUT("rm");
			nacks = 0;
			max_acked_last = -1;
		}
		int pfd[2];
		if (pipe(pfd) != 0)
			BAIL_OUT("pipe");
		uint64_t cseed = lt_next(&rng) | 1;
		fflush(stdout);
		pid_t pid = fork();
		if (pid < 0)
			BAIL_OUT("fork");
		if (pid == 0) {
			close(pfd[0]);
			child_main(logdir, cseed, pfd[1]);
			_exit(0);
		}
		close(pfd[1]);
		/* kill at a random moment: sometimes during recovery, mostly while appending */
		int64_t delay_ms = lt_range(&rng, 0, 9) == 0 ? lt_range(&rng, 0, 5) : lt_range(&rng, 5, 150);
		int64_t deadline = st_mono_ms() + delay_ms;
		uint8_t buf[sizeof(struct ack) * 256];
		size_t have = 0;
		bool eof = false;
		size_t round_acks = 0;
		for (;;) {
			int64_t left = deadline - st_mono_ms();
			if (left <= 0)
				break;
			struct pollfd p = { pfd[0], POLLIN, 0 };
			if (poll(&p, 1, (int)left) > 0) {
				ssize_t got = read(pfd[0], buf + have, sizeof(buf) - have);
				if (got <= 0) {
					eof = true;
					break;
				}
				have += (size_t)got;
				size_t whole = have / sizeof(struct ack) * sizeof(struct ack);
				for (size_t i = 0; i < whole; i += sizeof(struct ack)) {
					struct ack a;
					memcpy(&a, buf + i, sizeof(a));
					ack_push(&a);
					round_acks++;
					max_acked_last = ST_MAX(max_acked_last, a.last);
				}
				memmove(buf, buf + whole, have - whole);
				have -= whole;
			}
		}
		kill(pid, SIGKILL);
		int st;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)) {
			if (fail_child++ < 5)
				tap_diag("round %d: child ended by itself (status 0x%x) before the kill", r, st);
		}
		/* the acknowledgements written before the kill */
		while (!eof) {
			ssize_t got = read(pfd[0], buf + have, sizeof(buf) - have);
			if (got <= 0)
				break;
			have += (size_t)got;
			size_t whole = have / sizeof(struct ack) * sizeof(struct ack);
			for (size_t i = 0; i < whole; i += sizeof(struct ack)) {
				struct ack a;
				memcpy(&a, buf + i, sizeof(a));
				ack_push(&a);
				round_acks++;
				max_acked_last = ST_MAX(max_acked_last, a.last);
			}
			memmove(buf, buf + whole, have - whole);
			have -= whole;
		}
		close(pfd[0]);
		total_acked += (int64_t)round_acks;
		rounds_with_acks += round_acks > 0;

		const char *tear = "";
		if (lt_range(&rng, 0, 1) == 0) {
			tear = tear_tail(logdir, max_acked_last, &rng);
			torn_rounds++;
		}

		/* reopen in the parent and check */
		struct uring ur;
		if (uring_init(&ur, 64) != 0)
			BAIL_OUT("uring_init");
		struct log_config cfg;
		log_config_defaults(&cfg);
		cfg.segment_bytes = SEGMENT_BYTES;
		struct log *l;
		tmp_rounds += lt_count_tmp_files(logdir) > 0;
		int rc = log_open(&ur, logdir, &cfg, NULL, &l);
		if (rc == 0 && lt_count_tmp_files(logdir) != 0 && fail_tmp++ < 5)
			tap_diag("round %d: temporary files left after log_open", r);
		if (rc != 0) {
			if (fail_open++ < 5)
				tap_diag("round %d: log_open after the kill: %s (%s)", r, strerror(-rc), tear);
			uring_fini(&ur);
			continue;
		}
		if (log_end_offset(l) < max_acked_last + 1) {
			fail_end++;
			tap_diag("round %d: log end %lld but offset %lld was acknowledged (%s)", r,
				 (long long)log_end_offset(l), (long long)max_acked_last, tear);
		}
		/* every acknowledgement of this round, and a sample of older ones */
		size_t first_this = nacks - round_acks;
		for (size_t i = 0; i < nacks; i++) {
			if (i < first_this && i != 0 && lt_range(&rng, 0, 19) != 0)
				continue;
			if (!ack_present(l, &acks[i])) {
				if (fail_present++ < 5)
					tap_diag("round %d: acknowledged batch %lld..%lld (%u bytes) missing or changed (%s)", r,
						 (long long)acks[i].base, (long long)acks[i].last, acks[i].len, tear);
			}
		}
		int sr = scan_all(l);
		fail_gap += (sr & SCAN_GAP) != 0;
		fail_bad += (sr & SCAN_BAD) != 0;
		if (sr) {
			if (fail_scan++ < 3 || (sr & SCAN_BAD))
				tap_diag("round %d: scan found %s (%s)", r, sr & SCAN_BAD ? "bad bytes" : "an offset gap", tear);
			if (fail_scan == 1) {
				tap_diag("segments after round %d:", r);
				char cmd[sizeof(logdir) + 64];
				snprintf(cmd, sizeof(cmd), "ls -l %s | sed 's/^/# /'", logdir);
				fflush(stdout);
				if (system(cmd) != 0)
					tap_diag("ls failed");
				if (getenv("STRATA_CRASH_KEEP")) {
					snprintf(cmd, sizeof(cmd), "cp -r %s /tmp/strata-crash-kept", logdir);
					if (system(cmd) != 0)
						tap_diag("cp failed");
				}
			}
		}
		/* appends continue at the log end offset, and are readable */
		uint8_t *b = malloc(2048);
		ST_ASSERT(b);
		size_t len = batchgen_build(b, 2048, 3, (size_t)lt_range(&rng, 0, 500), st_now_ms(), 1);
		ST_ASSERT(len > 0);
		int64_t end = log_end_offset(l);
		struct log_append a;
		int kerr = lt_append_sync(&ur, l, b, len, &a);
		if (kerr != KERR_NONE || a.base_offset != end) {
			fail_continue++;
			tap_diag("round %d: append after recovery: %s, base %lld, log end was %lld", r, kerr_name(kerr),
				 (long long)a.base_offset, (long long)end);
		} else {
			struct ack x = { a.base_offset, a.last_offset, (uint32_t)len, crc32c(0, b, len) };
			if (!ack_present(l, &x))
				fail_continue++;
			ack_push(&x);
			max_acked_last = ST_MAX(max_acked_last, x.last);
		}
		free(b);
		if (log_close(l) != 0)
			fail_continue++;
		uring_fini(&ur);
	}
	tap_diag("%lld acknowledged batches over %d rounds (%lld rounds with acks, %lld with a torn tail)",
		 (long long)total_acked, rounds, (long long)rounds_with_acks, (long long)torn_rounds);
	tap_diag("%lld rounds killed with files under temporary names (pre-opened segment files, a "
		 "checkpoint being written)", (long long)tmp_rounds);
	is_int(fail_tmp, 0, "log_open removes every temporary file (pre-opened segment files, checkpoint)");
	ok(rounds >= 50 || getenv("STRATA_CRASH_ROUNDS"), "%d kill rounds", rounds);
	ok(rounds_with_acks >= rounds / 2, "the child got appends acknowledged in most rounds (%lld)",
	   (long long)rounds_with_acks);
	is_int(fail_child, 0, "every child was still appending when killed");
	is_int(fail_open, 0, "log_open recovers after every kill");
	is_int(fail_end, 0, "log end offset never below an acknowledged offset");
	is_int(fail_present, 0, "every acknowledged batch is present, byte-exact");
	is_int(fail_bad, 0, "scans serve only whole CRC-valid batches (no torn or garbage bytes)");
	is_int(fail_gap, 0, "no offset gaps after recovery: contiguous batches, next_offset = end of the "
	       "last batch, scan ends at the log end offset");
	is_int(fail_continue, 0, "appends continue at the log end offset after recovery");

	remove_tmp_root();
	free(acks);
	return tap_done();
}
