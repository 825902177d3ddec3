/* fuzz_replay.c -- runs a libFuzzer target's LLVMFuzzerTestOneInput over files without libFuzzer,
 * so a build with the ordinary compiler (and the sanitizer build) replays the fuzz corpus.
 *   fuzz-replay-X FILE|DIR...   each file is one input; a directory means every regular file in it
 * Prints one line per argument with the count of inputs run; exits 0, or 1 when a file cannot be
 * read (a crash in the target aborts the process, which is the failure the caller sees). */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* libFuzzer's default -max_len is far below this; a corpus file past it is a mistake. */
#define REPLAY_MAX_FILE_BYTES (16u << 20)
#define REPLAY_MAX_FILES 100000

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "fuzz-replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	uint8_t *buf = malloc(REPLAY_MAX_FILE_BYTES);
	if (!buf) {
		fclose(f);
		fprintf(stderr, "fuzz-replay: out of memory\n");
		return -1;
	}
	size_t n = fread(buf, 1, REPLAY_MAX_FILE_BYTES, f);
	int bad = ferror(f) || (n == REPLAY_MAX_FILE_BYTES && fgetc(f) != EOF);
	fclose(f);
	if (bad) {
		fprintf(stderr, "fuzz-replay: %s: read error or larger than %u bytes\n", path,
			REPLAY_MAX_FILE_BYTES);
		free(buf);
		return -1;
	}
	/* An exact-size copy, so ASan sees reads past the input as overflows. */
	uint8_t *in = malloc(n ? n : 1);
	if (!in) {
		free(buf);
		return -1;
	}
	memcpy(in, buf, n);
	free(buf);
	LLVMFuzzerTestOneInput(in, n);
	free(in);
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Returns the number of inputs run, or -1. */
static long replay_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "fuzz-replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	int err = 0;
	while ((e = readdir(d)) != NULL && n < REPLAY_MAX_FILES) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **nn = realloc(names, cap * sizeof *nn);
			if (!nn) {
				err = 1;
				break;
			}
			names = nn;
		}
		size_t l = strlen(dir) + 1 + strlen(e->d_name) + 1;
		names[n] = malloc(l);
		if (!names[n]) {
			err = 1;
			break;
		}
		snprintf(names[n], l, "%s/%s", dir, e->d_name);
		n++;
	}
	closedir(d);
	long ran = 0;
	if (!err) {
		/* Sorted: a failure reproduces in the same order. */
		qsort(names, n, sizeof *names, cmp_names);
		for (size_t i = 0; i < n; i++) {
			struct stat st;
			if (stat(names[i], &st) < 0 || !S_ISREG(st.st_mode))
				continue;
			if (replay_file(names[i]) < 0) {
				err = 1;
				break;
			}
			ran++;
		}
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return err ? -1 : ran;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 2;
	}
	int status = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "fuzz-replay: %s: %s\n", argv[i], strerror(errno));
			status = 1;
			continue;
		}
		long ran;
		if (S_ISDIR(st.st_mode))
			ran = replay_dir(argv[i]);
		else
			ran = replay_file(argv[i]) < 0 ? -1 : 1;
		if (ran < 0) {
			status = 1;
			continue;
		}
		printf("replayed %ld input(s) from %s\n", ran, argv[i]);
	}
	return status;
}
