/* objstore.c -- the object store's front: config defaults, URL scheme dispatch to a backend
 * (file://, s3://), and the argument and key checks every call gets before a backend sees it.
 * Owns no I/O itself; must not know backend internals. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "strata/common.h"
#include "strata/slog.h"
#include "objstore_int.h"

struct objstore {
	const struct objstore_backend *be;
	void *impl;
	char *url;
};

void objstore_config_defaults(struct objstore_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->region = "us-east-1";
	cfg->path_style = false;
	cfg->multipart_threshold_bytes = 64ll << 20;
	cfg->multipart_part_bytes = 16ll << 20;
	cfg->max_retries = 8;
	cfg->retry_base_ms = 100;
	cfg->timeout_ms = 30000;
	cfg->max_connections = 16;
}

static bool objstore_key_char_ok(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       strchr("._~=+,@-", c) != NULL;
}

/* Checks s as a key (partial_last: a list prefix, whose last segment may be partial or
 * empty and whose whole may be ""). */
static bool objstore_path_ok(const char *s, bool partial_last)
{
	if (!s)
		return false;
	size_t len = strnlen(s, OBJSTORE_KEY_MAX + 1);
	if (len > OBJSTORE_KEY_MAX || (len == 0 && !partial_last))
		return false;
	size_t seg_start = 0, depth = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '/') {
			if (!objstore_key_char_ok(s[i]))
				return false;
			continue;
		}
		bool last = i == len;
		size_t n = i - seg_start;
		const char *seg = s + seg_start;
		if (++depth > OBJSTORE_DEPTH_MAX || n > 255)
			return false;
		if (!(last && partial_last)) {
			if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
				return false;
			if (n >= strlen(OBJSTORE_TMP_PREFIX) &&
			    memcmp(seg, OBJSTORE_TMP_PREFIX, strlen(OBJSTORE_TMP_PREFIX)) == 0)
				return false;
		}
		seg_start = i + 1;
	}
	return true;
}

bool objstore_key_valid(const char *key) { return objstore_path_ok(key, false); }

int objstore_open(const struct objstore_config *cfg, struct objstore **out)
{
	*out = NULL;
	if (!cfg || !cfg->url)
		return -EINVAL;
	static const struct objstore_backend *const backends[] = { &objstore_file_backend,
								    &objstore_s3_backend };
	const struct objstore_backend *be = NULL;
	const char *rest = NULL;
	for (size_t i = 0; i < ST_ARRAY_LEN(backends); i++) {
		size_t n = strlen(backends[i]->scheme);
		if (strncmp(cfg->url, backends[i]->scheme, n) == 0 && strncmp(cfg->url + n, "://", 3) == 0) {
			be = backends[i];
			rest = cfg->url + n + 3;
			break;
		}
	}
	if (!be) {
		slog_error("objstore", "url=%s: unknown scheme (want file:// or s3://)", cfg->url);
		return -EINVAL;
	}
	struct objstore *os = calloc(1, sizeof(*os));
	if (!os)
		return -ENOMEM;
	os->url = strdup(cfg->url);
	if (!os->url) {
		free(os);
		return -ENOMEM;
	}
	os->be = be;
	int rc = be->open(cfg, rest, &os->impl);
	if (rc < 0) {
		free(os->url);
		free(os);
		return rc;
	}
	*out = os;
	return 0;
}

void objstore_close(struct objstore *os)
{
	if (!os)
		return;
	os->be->close(os->impl);
	free(os->url);
	free(os);
}

void objstore_shutdown(struct objstore *os)
{
	if (os && os->be->shutdown)
		os->be->shutdown(os->impl);
}

const char *objstore_url(const struct objstore *os) { return os->url; }

int objstore_put_file(struct objstore *os, const char *key, int fd, int64_t size,
		      char sha256_hex[65])
{
	if (!objstore_key_valid(key) || fd < 0 || size < 0)
		return -EINVAL;
	return os->be->put_file(os->impl, key, fd, size, sha256_hex);
}

int objstore_put(struct objstore *os, const char *key, const void *data, size_t len)
{
	if (!objstore_key_valid(key) || (!data && len) || len > (size_t)INT64_MAX)
		return -EINVAL;
	return os->be->put(os->impl, key, data ? data : "", len);
}

int64_t objstore_get_range(struct objstore *os, const char *key, int64_t offset, int64_t len,
			   void *buf, size_t buf_len)
{
	if (!objstore_key_valid(key) || offset < 0 || len < 0 || (!buf && buf_len))
		return -EINVAL;
	if (buf_len > (size_t)INT64_MAX / 2)
		buf_len = (size_t)INT64_MAX / 2;
	if (len == 0)
		len = (int64_t)buf_len;
	else if ((uint64_t)len > buf_len)
		return -EINVAL;
	if (len == 0)
		return 0;
	if (offset > INT64_MAX - len)
		return -EINVAL;
	return os->be->get_range(os->impl, key, offset, len, buf);
}

int objstore_open_local(struct objstore *os, const char *key, int64_t *size_out)
{
	if (!objstore_key_valid(key) || !size_out)
		return -EINVAL;
	if (!os->be->open_local)
		return -EOPNOTSUPP;
	return os->be->open_local(os->impl, key, size_out);
}

int objstore_get(struct objstore *os, const char *key, size_t max_len, uint8_t **out, size_t *out_len)
{
	if (!out || !out_len)
		return -EINVAL;
	*out = NULL;
	*out_len = 0;
	if (!objstore_key_valid(key))
		return -EINVAL;
	return os->be->get(os->impl, key, max_len, out, out_len);
}

int64_t objstore_head(struct objstore *os, const char *key)
{
	if (!objstore_key_valid(key))
		return -EINVAL;
	return os->be->head(os->impl, key);
}

int objstore_delete(struct objstore *os, const char *key)
{
	if (!objstore_key_valid(key))
		return -EINVAL;
	return os->be->del(os->impl, key);
}

int objstore_list(struct objstore *os, const char *prefix,
		  int (*fn)(void *ctx, const char *key, int64_t size), void *ctx)
{
	if (!prefix)
		prefix = "";
	if (!fn || !objstore_path_ok(prefix, true))
		return -EINVAL;
	return os->be->list(os->impl, prefix, fn, ctx);
}
