/* fsutil.h -- small blocking file-system helpers shared by modules that run them at startup or
 * on worker threads (broker topic worker, tier threads, read cache). Never call them on the
 * reactor in steady state: they are plain syscalls. */
#ifndef STRATA_FSUTIL_H
#define STRATA_FSUTIL_H

/* Makes directory path and its missing parents (mode 0755), like `mkdir -p`.
 * 0, -ENAMETOOLONG (empty or longer than PATH_MAX) or the first failing mkdir's -errno. */
int st_mkdir_p(const char *path);

#endif
