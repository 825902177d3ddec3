/* objstore_int.h -- what the object store's dispatcher (objstore.c) and its backends
 * (objstore_file.c, objstore_s3.c) share: the backend operations table and small helpers.
 * Not for other modules: they use objstore.h. Backends get arguments already checked by the
 * dispatcher (keys valid, lengths sane) and must not check them again differently. */
#ifndef STRATA_OBJSTORE_INT_H
#define STRATA_OBJSTORE_INT_H

#include "objstore.h"

struct objstore_backend {
	const char *scheme; /* "file", "s3" */
	/* rest: the URL after "scheme://". */
	int (*open)(const struct objstore_config *cfg, const char *rest, void **impl);
	void (*close)(void *impl);
	/* NULL: calls are short anyway (file). Otherwise: running and later calls give up soon. */
	void (*shutdown)(void *impl);
	int (*put_file)(void *impl, const char *key, int fd, int64_t size, char sha256_hex[65]);
	int (*put)(void *impl, const char *key, const void *data, size_t len);
	/* len > 0 and len <= buf_len (the dispatcher resolved "len 0 = up to buf_len"). */
	int64_t (*get_range)(void *impl, const char *key, int64_t offset, int64_t len, void *buf);
	int (*get)(void *impl, const char *key, size_t max_len, uint8_t **out, size_t *out_len);
	/* NULL: objects are not local files (objstore_open_local answers -EOPNOTSUPP). */
	int (*open_local)(void *impl, const char *key, int64_t *size_out);
	int64_t (*head)(void *impl, const char *key);
	int (*del)(void *impl, const char *key);
	int (*list)(void *impl, const char *prefix,
		    int (*fn)(void *ctx, const char *key, int64_t size), void *ctx);
};

extern const struct objstore_backend objstore_file_backend;
extern const struct objstore_backend objstore_s3_backend;

/* Keys: 1..OBJSTORE_KEY_MAX bytes of [A-Za-z0-9._~=+,@-] and '/', at most OBJSTORE_DEPTH_MAX
 * segments, none empty, ".", "..", longer than 255 bytes or starting with the file backend's
 * temp prefix. */
#define OBJSTORE_TMP_PREFIX ".objstore-tmp-"

/* A list entry collected before sorting (file backend) or paging (s3). */
struct objstore_entry {
	char *key;
	int64_t size;
};

/* A tiny bounded XML reader for S3's responses (no DTDs, no attributes on the elements we
 * read, no CDATA). Finds the first <tag>...</tag> whose opening tag starts in [from, len):
 * returns 1 and the inner text range, 0 when there is none. */
int objstore_xml_find(const char *xml, size_t len, size_t from, const char *tag,
		      size_t *inner_start, size_t *inner_end);
/* Copies the first <tag> text in [from, len) with entities decoded (&amp; &lt; &gt; &quot;
 * &apos; &#N; &#xH;) into out (NUL-terminated). Returns 1, 0 (no such element), or -ENOSPC /
 * -EINVAL (text too long for out, bad entity). */
int objstore_xml_text(const char *xml, size_t len, size_t from, const char *tag, char *out,
		      size_t out_len);

#endif
