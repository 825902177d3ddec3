/* objstore_file.c -- the file:///path backend: a directory that behaves like a bucket. A key
 * "a/b/c" is the file root/a/b/c. Puts are atomic (temp file in the target directory, fsync,
 * rename, directory fsync; new directories are made durable in their parents), so readers see
 * the old object or the whole new one and a crash leaves no partial object. Every path is
 * resolved with openat() from the root's fd, never following symlinks, so nothing outside the
 * root is reachable. Must not accept keys the dispatcher did not check; must not expose temp
 * files (".objstore-tmp-*") through list/get/head. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "strata/common.h"
#include "strata/slog.h"
#include "strata/fsutil.h"
#include "objstore_int.h"
#include "sigv4.h"

/* Temp files older than this are leftovers of a crash; list removes the ones it meets. */
#define FS_STALE_TMP_SECONDS 3600
#define FS_COPY_BYTES (1 << 20)
#define FS_PUT_TRIES 8

struct fstore {
	char *root;
	int root_fd;
};

/* The directory chain of a key: fds[0] is the root (not owned), fds[i] the i-th directory. */
struct fs_walk {
	int fds[OBJSTORE_DEPTH_MAX + 1];
	size_t seg_off[OBJSTORE_DEPTH_MAX + 1]; /* where segment i starts in the key */
	size_t seg_len[OBJSTORE_DEPTH_MAX + 1];
	int depth;                               /* number of fds (>= 1) */
	const char *name;                        /* the last segment (the object's file name) */
};

static void fs_walk_close(struct fs_walk *w)
{
	for (int i = 1; i < w->depth; i++)
		close(w->fds[i]);
	w->depth = 0;
}

static int fs_fsync_dir(int dfd, const char *what)
{
	if (fsync(dfd) < 0) {
		int err = errno;
		slog_error("objstore", "file: fsync of directory %s: %s", what, strerror(err));
		return -err;
	}
	return 0;
}

/* Opens the directories of path[0, dir_len) under the root (creating them when create).
 * -ENOENT: a directory is missing; -ENOTDIR: a component is not a directory (a file or a
 * symlink). */
static int fs_walk_dirs(struct fstore *s, const char *path, size_t dir_len, bool create,
			struct fs_walk *w)
{
	w->fds[0] = s->root_fd;
	w->depth = 1;
	size_t i = 0;
	while (i < dir_len) {
		const char *slash = memchr(path + i, '/', dir_len - i);
		size_t n = slash ? (size_t)(slash - (path + i)) : dir_len - i;
		if (n == 0 || n > 255 || w->depth > OBJSTORE_DEPTH_MAX) {
			fs_walk_close(w);
			return -EINVAL;
		}
		char seg[256];
		memcpy(seg, path + i, n);
		seg[n] = '\0';
		int cur = w->fds[w->depth - 1];
		int fd = -1;
		for (int tries = 0; tries < 4 && fd < 0; tries++) {
			fd = openat(cur, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd >= 0)
				break;
			int err = errno;
			if (err == ENOENT && create) {
				if (mkdirat(cur, seg, 0755) == 0) {
					int rc = fs_fsync_dir(cur, s->root);
					if (rc < 0) {
						fs_walk_close(w);
						return rc;
					}
				} else if (errno != EEXIST) {
					err = errno;
					fs_walk_close(w);
					return err == ENOTDIR ? -ENOTDIR : -err;
				}
				continue;
			}
			fs_walk_close(w);
			if (err == ELOOP || err == ENOTDIR)
				return -ENOTDIR;
			return -err;
		}
		if (fd < 0) {
			fs_walk_close(w);
			return -EIO;
		}
		w->fds[w->depth] = fd;
		w->seg_off[w->depth] = i;
		w->seg_len[w->depth] = n;
		w->depth++;
		i += n + 1;
	}
	return 0;
}

/* Walks to the directory holding key; w->name is the key's last segment. */
static int fs_walk_key(struct fstore *s, const char *key, bool create, struct fs_walk *w)
{
	const char *slash = strrchr(key, '/');
	size_t dir_len = slash ? (size_t)(slash - key) : 0;
	w->name = slash ? slash + 1 : key;
	return fs_walk_dirs(s, key, dir_len, create, w);
}

static void fs_tmp_name(char out[64])
{
	uint64_t r;
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		r = (uint64_t)st_mono_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)out;
	snprintf(out, 64, "%s%016llx", OBJSTORE_TMP_PREFIX, (unsigned long long)r);
}

static int fs_write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The payload of a put: memory, or a file range [0, size). */
struct fs_source {
	const uint8_t *mem;
	int fd;
	int64_t size;
};

/* Copies the source into tfd, hashing it when sha256_hex is wanted. */
static int fs_copy(const struct fs_source *src, int tfd, char *sha256_hex)
{
	EVP_MD_CTX *md = NULL;
	if (sha256_hex) {
		md = EVP_MD_CTX_new();
		if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
			EVP_MD_CTX_free(md);
			return -ENOMEM;
		}
	}
	int rc = 0;
	if (src->mem) {
		rc = fs_write_all(tfd, src->mem, (size_t)src->size);
		if (!rc && md && EVP_DigestUpdate(md, src->mem, (size_t)src->size) != 1)
			rc = -EIO;
	} else {
		uint8_t *buf = malloc(FS_COPY_BYTES);
		if (!buf)
			rc = -ENOMEM;
		int64_t off = 0;
		while (!rc && off < src->size) {
			size_t want = (size_t)ST_MIN((int64_t)FS_COPY_BYTES, src->size - off);
			ssize_t r = pread(src->fd, buf, want, off);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				rc = -errno;
				break;
			}
			if (r == 0) {
				slog_error("objstore", "file: source fd ends at %lld, size says %lld",
					   (long long)off, (long long)src->size);
				rc = -EIO;
				break;
			}
			rc = fs_write_all(tfd, buf, (size_t)r);
			if (!rc && md && EVP_DigestUpdate(md, buf, (size_t)r) != 1)
				rc = -EIO;
			off += r;
		}
		free(buf);
	}
	if (!rc && md) {
		unsigned char d[32];
		unsigned int dl = 0;
		if (EVP_DigestFinal_ex(md, d, &dl) != 1 || dl != 32)
			rc = -EIO;
		else
			sigv4_hex(d, 32, sha256_hex);
	}
	EVP_MD_CTX_free(md);
	return rc;
}

static int fs_put_source(struct fstore *s, const char *key, const struct fs_source *src,
			 char *sha256_hex)
{
	for (int attempt = 0; attempt < FS_PUT_TRIES; attempt++) {
		struct fs_walk w;
		int rc = fs_walk_key(s, key, true, &w);
		if (rc < 0) {
			slog_error("objstore", "file: put key=%s: directory: %s", key, strerror(-rc));
			return rc;
		}
		int dfd = w.fds[w.depth - 1];
		char tmp[64];
		fs_tmp_name(tmp);
		int tfd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (tfd < 0) {
			int err = errno;
			fs_walk_close(&w);
			/* ENOENT: a concurrent delete removed the (then empty) directory. */
			if (err == ENOENT || err == EEXIST)
				continue;
			slog_error("objstore", "file: put key=%s: create temp: %s", key, strerror(err));
			return -err;
		}
		rc = fs_copy(src, tfd, sha256_hex);
		if (!rc && fsync(tfd) < 0)
			rc = -errno;
		if (close(tfd) < 0 && !rc)
			rc = -errno;
		if (!rc && renameat(dfd, tmp, dfd, w.name) < 0)
			rc = -errno;
		if (rc < 0) {
			unlinkat(dfd, tmp, 0);
			fs_walk_close(&w);
			slog_error("objstore", "file: put key=%s: %s", key, strerror(-rc));
			return rc;
		}
		rc = fs_fsync_dir(dfd, key);
		fs_walk_close(&w);
		return rc;
	}
	slog_error("objstore", "file: put key=%s: directory kept vanishing", key);
	return -EIO;
}

static int fs_put_file(void *impl, const char *key, int fd, int64_t size, char sha256_hex[65])
{
	struct fs_source src = { .mem = NULL, .fd = fd, .size = size };
	return fs_put_source(impl, key, &src, sha256_hex);
}

static int fs_put(void *impl, const char *key, const void *data, size_t len)
{
	struct fs_source src = { .mem = data, .fd = -1, .size = (int64_t)len };
	return fs_put_source(impl, key, &src, NULL);
}

/* Opens key for reading: -ENOENT when there is no regular file by that name. */
static int fs_open_object(struct fstore *s, const char *key, struct stat *st)
{
	struct fs_walk w;
	int rc = fs_walk_key(s, key, false, &w);
	if (rc < 0)
		return rc == -ENOTDIR ? -ENOENT : rc;
	int fd = openat(w.fds[w.depth - 1], w.name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int err = errno;
	fs_walk_close(&w);
	if (fd < 0)
		return (err == ENOENT || err == ELOOP || err == ENOTDIR) ? -ENOENT : -err;
	if (fstat(fd, st) < 0) {
		err = errno;
		close(fd);
		return -err;
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		return -ENOENT;
	}
	return fd;
}

static int64_t fs_get_range(void *impl, const char *key, int64_t offset, int64_t len, void *buf)
{
	struct stat st;
	int fd = fs_open_object(impl, key, &st);
	if (fd < 0)
		return fd;
	int64_t got = offset >= st.st_size ? 0 : st_pread_full(fd, buf, (size_t)len, offset);
	close(fd);
	return got;
}

static int fs_open_local(void *impl, const char *key, int64_t *size_out)
{
	struct stat st;
	int fd = fs_open_object(impl, key, &st);
	if (fd >= 0)
		*size_out = (int64_t)st.st_size;
	return fd;
}

static int fs_get(void *impl, const char *key, size_t max_len, uint8_t **out, size_t *out_len)
{
	struct stat st;
	int fd = fs_open_object(impl, key, &st);
	if (fd < 0)
		return fd;
	if ((uint64_t)st.st_size > max_len) {
		close(fd);
		return -EFBIG;
	}
	uint8_t *buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	int64_t got = st_pread_full(fd, buf, (size_t)st.st_size, 0);
	close(fd);
	if (got < 0) {
		free(buf);
		return (int)got;
	}
	*out = buf;
	*out_len = (size_t)got;
	return 0;
}

static int64_t fs_head(void *impl, const char *key)
{
	struct stat st;
	int fd = fs_open_object(impl, key, &st);
	if (fd < 0)
		return fd;
	close(fd);
	return st.st_size;
}

static int fs_del(void *impl, const char *key)
{
	struct fstore *s = impl;
	struct fs_walk w;
	int rc = fs_walk_key(s, key, false, &w);
	if (rc == -ENOENT || rc == -ENOTDIR)
		return 0;
	if (rc < 0)
		return rc;
	int dfd = w.fds[w.depth - 1];
	if (unlinkat(dfd, w.name, 0) < 0) {
		int err = errno;
		fs_walk_close(&w);
		if (err == ENOENT || err == EISDIR)
			return 0;
		slog_error("objstore", "file: delete key=%s: %s", key, strerror(err));
		return -err;
	}
	rc = fs_fsync_dir(dfd, key);
	/* Empty directories left behind are removed, deepest first; a concurrent put into one of
	 * them retries its walk (see fs_put_source). */
	for (int i = w.depth - 1; rc == 0 && i >= 1; i--) {
		char seg[256];
		memcpy(seg, key + w.seg_off[i], w.seg_len[i]);
		seg[w.seg_len[i]] = '\0';
		if (unlinkat(w.fds[i - 1], seg, AT_REMOVEDIR) < 0)
			break;
		fs_fsync_dir(w.fds[i - 1], key);
	}
	fs_walk_close(&w);
	return rc;
}

struct fs_list {
	struct objstore_entry *v;
	size_t n, cap;
	time_t now;
};

static int fs_list_add(struct fs_list *l, const char *key, int64_t size)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		struct objstore_entry *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n].key = strdup(key);
	if (!l->v[l->n].key)
		return -ENOMEM;
	l->v[l->n].size = size;
	l->n++;
	return 0;
}

/* Collects the objects under dfd (whose key prefix is rel, "" at the root), taking only
 * names that start with name_prefix at this level. Consumes dfd. */
static int fs_list_dir(int dfd, const char *rel, const char *name_prefix, int depth,
		       struct fs_list *l)
{
	DIR *d = fdopendir(dfd);
	if (!d) {
		int err = errno;
		close(dfd);
		return -err;
	}
	size_t np = strlen(name_prefix);
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
		const char *name = de->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* vanished meanwhile */
		if (strncmp(name, OBJSTORE_TMP_PREFIX, strlen(OBJSTORE_TMP_PREFIX)) == 0) {
			if (S_ISREG(st.st_mode) && st.st_mtime + FS_STALE_TMP_SECONDS < l->now &&
			    unlinkat(dirfd(d), name, 0) == 0)
				slog_info("objstore", "file: removed stale temp file %s%s%s", rel,
					  *rel ? "/" : "", name);
			continue;
		}
		if (strncmp(name, name_prefix, np) != 0)
			continue;
		char key[OBJSTORE_KEY_MAX + 1];
		int n = snprintf(key, sizeof(key), "%s%s%s", rel, *rel ? "/" : "", name);
		if (n < 0 || (size_t)n >= sizeof(key))
			continue;
		if (S_ISDIR(st.st_mode)) {
			if (depth + 1 >= OBJSTORE_DEPTH_MAX)
				continue;
			int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				continue;
			rc = fs_list_dir(sub, key, "", depth + 1, l);
		} else if (S_ISREG(st.st_mode) && objstore_key_valid(key)) {
			rc = fs_list_add(l, key, st.st_size);
		}
	}
	if (rc == 0 && errno != 0)
		rc = -errno;
	closedir(d);
	return rc;
}

static int fs_entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct objstore_entry *)a)->key, ((const struct objstore_entry *)b)->key);
}

static int fs_list(void *impl, const char *prefix,
		   int (*fn)(void *ctx, const char *key, int64_t size), void *ctx)
{
	struct fstore *s = impl;
	const char *slash = strrchr(prefix, '/');
	size_t dir_len = slash ? (size_t)(slash - prefix) : 0;
	const char *name_prefix = slash ? slash + 1 : prefix;
	struct fs_walk w;
	int rc = fs_walk_dirs(s, prefix, dir_len, false, &w);
	if (rc == -ENOENT || rc == -ENOTDIR)
		return 0;
	if (rc < 0)
		return rc;
	/* A fresh open file description: a dup() of the root's fd would share its readdir
	 * offset with every other list running at the same time. */
	int dfd = openat(w.fds[w.depth - 1], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int err = errno;
	int depth = w.depth;
	fs_walk_close(&w);
	if (dfd < 0)
		return -err;
	char rel[OBJSTORE_KEY_MAX + 1];
	memcpy(rel, prefix, dir_len);
	rel[dir_len] = '\0';
	struct fs_list l = { .v = NULL, .n = 0, .cap = 0, .now = time(NULL) };
	rc = fs_list_dir(dfd, rel, name_prefix, depth, &l);
	if (rc == 0) {
		if (l.n > 1)
			qsort(l.v, l.n, sizeof(l.v[0]), fs_entry_cmp);
		for (size_t i = 0; i < l.n && rc == 0; i++)
			rc = fn(ctx, l.v[i].key, l.v[i].size);
	} else {
		slog_error("objstore", "file: list prefix=%s: %s", prefix, strerror(-rc));
	}
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i].key);
	free(l.v);
	return rc;
}

static int fs_open(const struct objstore_config *cfg, const char *rest, void **impl)
{
	if (rest[0] != '/') {
		slog_error("objstore", "url=%s: want file:///absolute/path", cfg->url);
		return -EINVAL;
	}
	struct fstore *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->root = strdup(rest);
	if (!s->root) {
		free(s);
		return -ENOMEM;
	}
	size_t n = strlen(s->root);
	while (n > 1 && s->root[n - 1] == '/')
		s->root[--n] = '\0';
	int rc = st_mkdir_p(s->root);
	if (rc == 0) {
		s->root_fd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (s->root_fd < 0)
			rc = -errno;
	}
	if (rc < 0) {
		slog_error("objstore", "url=%s: root directory: %s", cfg->url, strerror(-rc));
		free(s->root);
		free(s);
		return rc;
	}
	*impl = s;
	return 0;
}

static void fs_close(void *impl)
{
	struct fstore *s = impl;
	if (!s)
		return;
	close(s->root_fd);
	free(s->root);
	free(s);
}

const struct objstore_backend objstore_file_backend = {
	.scheme = "file",
	.open = fs_open,
	.close = fs_close,
	.put_file = fs_put_file,
	.put = fs_put,
	.get_range = fs_get_range,
	.get = fs_get,
	.open_local = fs_open_local,
	.head = fs_head,
	.del = fs_del,
	.list = fs_list,
};
