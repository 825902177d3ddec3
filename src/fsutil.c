/* fsutil.c -- small blocking file-system helpers (see include/strata/fsutil.h). Owns nothing
 * but these functions; must not be used on the reactor in steady state. */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strata/fsutil.h"

int st_mkdir_p(const char *path)
{
	char tmp[PATH_MAX];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof tmp)
		return -ENAMETOOLONG;
	memcpy(tmp, path, n + 1);
	/* Every prefix ending before a '/' (skipping a leading one), then the whole path. */
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

int64_t st_pread_full(int fd, void *buf, size_t len, int64_t offset)
{
	uint8_t *p = buf;
	size_t got = 0;
	while (got < len) { /* bounded: every turn reads at least one byte or ends */
		ssize_t r = pread(fd, p + got, len - got, (off_t)(offset + (int64_t)got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (int64_t)got;
}
