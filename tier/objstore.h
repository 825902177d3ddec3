/* objstore.h -- one interface to a bucket: put, get (whole or a byte range), head, delete,
 * list. Backends: file:///path (a directory that behaves like a bucket) and s3://bucket/prefix
 * (libcurl, AWS Signature V4). Calls are BLOCKING and thread-safe: they run on the tiering and
 * download threads, never on a reactor (a call may use ~64 KiB of stack; SIGPIPE must be ignored
 * by the process, as stratad does). Keys are relative ("t/<hash>/topic/0/000...0.log").
 * objstore_close only after every call on the store has returned. */
#ifndef STRATA_OBJSTORE_H
#define STRATA_OBJSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct objstore;

struct objstore_config {
	const char *url;                /* "file:///var/lib/strata/bucket" or "s3://bucket/prefix" */
	/* s3 only */
	const char *endpoint;           /* "http://127.0.0.1:4569", "https://s3.eu-west-1.amazonaws.com";
	                                   NULL = https://s3.<region>.amazonaws.com */
	const char *region;             /* default "us-east-1" */
	bool path_style;                /* true: endpoint/bucket/key; false: bucket.endpoint/key */
	const char *access_key_id;      /* NULL: AWS_ACCESS_KEY_ID from the environment */
	const char *secret_access_key;  /* NULL: AWS_SECRET_ACCESS_KEY */
	const char *session_token;      /* NULL: AWS_SESSION_TOKEN (optional) */
	bool unsigned_payload;          /* UNSIGNED-PAYLOAD instead of the payload hash (https only) */
	int64_t multipart_threshold_bytes; /* puts larger than this use multipart (default 64 MiB) */
	int64_t multipart_part_bytes;   /* default 16 MiB (S3 minimum 5 MiB) */
	int max_retries;                /* on 5xx, 503 SlowDown, timeouts (default 8) */
	int64_t retry_base_ms;          /* exponential backoff base with full jitter (default 100) */
	int64_t timeout_ms;             /* per request (default 30000) */
	int max_connections;            /* bounded concurrency / connection reuse (default 16) */
	const char *ca_file;            /* PEM CA bundle for https (NULL: the system's) */
};
void objstore_config_defaults(struct objstore_config *cfg);

/* Keys: 1..OBJSTORE_KEY_MAX bytes of [A-Za-z0-9._~=+,@-] and '/', at most OBJSTORE_DEPTH_MAX
 * '/'-separated segments, none empty, "." or ".." (so no leading or trailing '/'), none longer
 * than 255 bytes or starting with ".objstore-tmp-" (the file backend's temp files). Every call
 * checks its key: -EINVAL when it is not valid. */
#define OBJSTORE_KEY_MAX 1024
#define OBJSTORE_DEPTH_MAX 32
bool objstore_key_valid(const char *key);

/* Errors: negative errno. -ENOENT: no such key. -EIO: the store answered an error after
 * retries (the message is logged with key and status). -EINVAL: bad config/URL. */
int objstore_open(const struct objstore_config *cfg, struct objstore **out);
void objstore_close(struct objstore *os);
/* From any thread, before joining the threads that use the store: calls in progress and later
 * ones stop retrying and cut their transfers, returning -ECANCELED soon (within ~1 s) instead
 * of retrying a bucket that does not answer. Nothing is left half-written (puts are atomic). */
void objstore_shutdown(struct objstore *os);
const char *objstore_url(const struct objstore *os);

/* Uploads a whole local file (fd, [0, size)) as key, atomically: readers see the old object
 * or the whole new one. sha256_hex (65 bytes, may be NULL) receives the payload's SHA-256. */
int objstore_put_file(struct objstore *os, const char *key, int fd, int64_t size,
		      char sha256_hex[65]);
/* Uploads a memory buffer as key, atomically. */
int objstore_put(struct objstore *os, const char *key, const void *data, size_t len);
/* Reads [offset, offset+len) of key into buf (len 0 = to the end, up to buf_len).
 * Returns bytes read (fewer at the object's end, 0 when offset >= its size) or -errno;
 * -EINVAL when len > buf_len. */
int64_t objstore_get_range(struct objstore *os, const char *key, int64_t offset, int64_t len,
			   void *buf, size_t buf_len);
/* Stores that keep objects as local files (file://): opens key read-only and returns the fd
 * (the caller closes it), *size_out its size. A put never changes an object's file in place
 * (it renames a new file over it), so the fd reads the object as it was when opened, for as
 * long as it is open. -EOPNOTSUPP for other backends (s3://): use objstore_get_range. */
int objstore_open_local(struct objstore *os, const char *key, int64_t *size_out);
/* Reads a whole object into a malloc'd buffer (bounded by max_len: -EFBIG beyond). */
int objstore_get(struct objstore *os, const char *key, size_t max_len, uint8_t **out, size_t *out_len);
/* Size of key, or -ENOENT. */
int64_t objstore_head(struct objstore *os, const char *key);
/* Deletes key (missing is success). */
int objstore_delete(struct objstore *os, const char *key);
/* Calls fn for every key that starts with prefix ("" = all; not necessarily at a '/'),
 * in ascending byte order of key, keys relative to the store's URL (paged LIST for s3).
 * fn returns non-zero to stop: objstore_list then returns that value. key is valid only
 * during the call. */
int objstore_list(struct objstore *os, const char *prefix,
		  int (*fn)(void *ctx, const char *key, int64_t size), void *ctx);

#endif
