/* fsutil.h -- small blocking file-system helpers shared by modules that run them at startup or
 * on worker threads (broker topic worker, tier threads, read cache). Never call them on the
 * reactor in steady state: they are plain syscalls. */
#ifndef STRATA_FSUTIL_H
#define STRATA_FSUTIL_H
#include <stddef.h>
#include <stdint.h>

/* Makes directory path and its missing parents (mode 0755), like `mkdir -p`.
 * 0, -ENAMETOOLONG (empty or longer than PATH_MAX) or the first failing mkdir's -errno. */
int st_mkdir_p(const char *path);

/* pread until len bytes, end of file or an error (EINTR retried). Returns the bytes read (short
 * only at end of file) or -errno. */
int64_t st_pread_full(int fd, void *buf, size_t len, int64_t offset);

#endif
