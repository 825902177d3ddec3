/* objstore_s3.c -- the s3://bucket/prefix backend: S3's REST API over libcurl, signed with
 * AWS Signature V4 (sigv4.c). Owns a bounded pool of curl easy handles (each keeps its
 * connection alive; max_connections bounds concurrency), retries with exponential backoff and
 * full jitter, multipart uploads for large objects, paged ListObjectsV2 and a bounded XML
 * reader for S3's answers. Uses only the standard S3 API (AWS, MinIO, Ceph RGW). Calls block;
 * it must never run on a reactor thread. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "strata/common.h"
#include "strata/slog.h"
#include "objstore_int.h"
#include "sigv4.h"

#define S3_MIN_PART_BYTES (5ll << 20)
#define S3_MAX_PARTS 10000
#define S3_XML_MAX_BYTES (8u << 20)   /* a ListObjectsV2 page of 1000 keys is ~300 KiB */
#define S3_ERR_BODY_BYTES 4096
#define S3_BACKOFF_CAP_MS 20000
#define S3_HASH_CHUNK (1 << 20)
#define S3_MAX_LIST_PAGES 10000000
#define S3_RECV_BUFFER_BYTES (512L << 10) /* curl 7.88 allows up to 10 MiB (512 KiB before) */
#define S3_SEND_BUFFER_BYTES (2L << 20)   /* curl's largest upload buffer */

struct s3store {
	char *url;
	char *bucket;
	char *prefix;          /* "" or "some/prefix/" */
	bool tls;
	char *scheme;          /* "http" / "https" */
	char *host;            /* Host header: "endpoint[:port]" or "bucket.endpoint[:port]" */
	bool path_style;
	char *region;
	char *access_key_id;
	char *secret_access_key;
	char *session_token;   /* NULL: none */
	char *ca_file;
	bool unsigned_payload; /* effective only over TLS */
	int64_t mp_threshold_bytes;
	int64_t mp_part_bytes;
	int max_retries;
	int64_t retry_base_ms;
	int64_t timeout_ms;
	int max_connections;

	pthread_mutex_t pool_mu;
	pthread_cond_t pool_cv;
	CURL **idle;
	int n_idle;
	int n_handles;

	CURLSH *share;
	pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
	_Atomic uint64_t rng;
	atomic_bool stopping;  /* objstore_shutdown: abort transfers, no more retries */
	bool sync_ready;       /* the mutexes above exist */
};

/* ---------------------------------------------------------------- XML ------------------ */

int objstore_xml_find(const char *xml, size_t len, size_t from, const char *tag,
		      size_t *inner_start, size_t *inner_end)
{
	char open_tag[64], close_tag[64];
	int on = snprintf(open_tag, sizeof(open_tag), "<%s>", tag);
	int cn = snprintf(close_tag, sizeof(close_tag), "</%s>", tag);
	if (on < 0 || cn < 0 || (size_t)on >= sizeof(open_tag) || (size_t)cn >= sizeof(close_tag))
		return 0;
	if (from > len)
		return 0;
	const char *p = memmem(xml + from, len - from, open_tag, (size_t)on);
	if (!p)
		return 0;
	size_t start = (size_t)(p - xml) + (size_t)on;
	const char *q = memmem(xml + start, len - start, close_tag, (size_t)cn);
	if (!q)
		return 0;
	*inner_start = start;
	*inner_end = (size_t)(q - xml);
	return 1;
}

static int xml_put_utf8(unsigned long cp, char *out, size_t out_len, size_t *o)
{
	unsigned char b[4];
	size_t n;
	if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return -EINVAL;
	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xC0 | (cp >> 6));
		b[1] = (unsigned char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xE0 | (cp >> 12));
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		b[2] = (unsigned char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		b[0] = (unsigned char)(0xF0 | (cp >> 18));
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		b[3] = (unsigned char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	if (*o + n >= out_len)
		return -ENOSPC;
	memcpy(out + *o, b, n);
	*o += n;
	return 0;
}

int objstore_xml_text(const char *xml, size_t len, size_t from, const char *tag, char *out,
		      size_t out_len)
{
	size_t s, e;
	if (out_len == 0)
		return -ENOSPC;
	out[0] = '\0';
	if (!objstore_xml_find(xml, len, from, tag, &s, &e))
		return 0;
	static const struct {
		const char *name;
		char c;
	} ents[] = { { "amp;", '&' }, { "lt;", '<' }, { "gt;", '>' }, { "quot;", '"' }, { "apos;", '\'' } };
	size_t o = 0;
	for (size_t i = s; i < e;) {
		if (xml[i] != '&') {
			if (o + 1 >= out_len)
				return -ENOSPC;
			out[o++] = xml[i++];
			continue;
		}
		i++;
		const char *semi = memchr(xml + i, ';', e - i);
		if (!semi || semi - (xml + i) > 10)
			return -EINVAL;
		size_t n = (size_t)(semi - (xml + i)) + 1; /* with ';' */
		bool done = false;
		for (size_t k = 0; k < ST_ARRAY_LEN(ents) && !done; k++) {
			if (strlen(ents[k].name) == n && memcmp(xml + i, ents[k].name, n) == 0) {
				if (o + 1 >= out_len)
					return -ENOSPC;
				out[o++] = ents[k].c;
				done = true;
			}
		}
		if (!done) {
			if (xml[i] != '#' || n < 3)
				return -EINVAL;
			bool hex = xml[i + 1] == 'x' || xml[i + 1] == 'X';
			size_t d = i + (hex ? 2 : 1);
			if (d >= i + n - 1)
				return -EINVAL;
			unsigned long cp = 0;
			for (; d < i + n - 1; d++) {
				char c = xml[d];
				int v;
				if (c >= '0' && c <= '9')
					v = c - '0';
				else if (hex && c >= 'a' && c <= 'f')
					v = c - 'a' + 10;
				else if (hex && c >= 'A' && c <= 'F')
					v = c - 'A' + 10;
				else
					return -EINVAL;
				cp = cp * (hex ? 16 : 10) + (unsigned long)v;
				if (cp > 0x10FFFF)
					return -EINVAL;
			}
			int rc = xml_put_utf8(cp, out, out_len, &o);
			if (rc < 0)
				return rc;
		}
		i += n;
	}
	out[o] = '\0';
	return 1;
}

/* ---------------------------------------------------------------- requests ------------- */

/* A request body: memory, or the file range [off, off+len) of fd. pos is the read cursor. */
struct s3_body {
	const uint8_t *mem;
	int fd;
	int64_t off;
	int64_t len;
	int64_t pos;
	int read_errno;
};

enum s3_sink { S3_SINK_NONE, S3_SINK_FIXED, S3_SINK_GROW };

struct s3_req {
	const char *op;                 /* for logs: "put", "get", ... */
	const char *method;
	const char *key;                /* relative to the store's prefix; NULL: the bucket */
	struct sigv4_kv query[4];
	size_t n_query;
	bool has_body;
	struct s3_body body;
	char payload_hash[65];
	char range[64];                 /* "bytes=a-b" or "" */
	bool error_in_200;              /* CompleteMultipartUpload may answer 200 + <Error> */
	bool range_fallback_ok;         /* a 200 to a ranged GET: skip to the offset ourselves */

	enum s3_sink sink;
	uint8_t *buf;                   /* FIXED: caller's; GROW: malloc'd here */
	size_t cap;
	size_t max_len;                 /* GROW bound */
	int64_t skip;                   /* FIXED: the range's offset, dropped from a 200 answer */

	/* response, reset per attempt */
	CURL *curl;
	long status;
	long hdr_status;
	size_t len;
	int64_t skipped;
	bool enough;                    /* FIXED buffer filled on a 200 fallback: stop early */
	bool overflow;                  /* more than asked for */
	bool efbig;                     /* GROW beyond max_len */
	int64_t content_length;
	char etag[128];
	char request_id[96];
	char err_body[S3_ERR_BODY_BYTES];
	size_t err_len;
};

static void s3_req_init(struct s3_req *r, const char *op, const char *method, const char *key)
{
	memset(r, 0, sizeof(*r));
	r->op = op;
	r->method = method;
	r->key = key;
	r->body.fd = -1;
	memcpy(r->payload_hash, SIGV4_EMPTY_SHA256, sizeof(r->payload_hash));
}

static void s3_req_add_query(struct s3_req *r, const char *name, const char *value)
{
	ST_ASSERT(r->n_query < ST_ARRAY_LEN(r->query));
	r->query[r->n_query].name = name;
	r->query[r->n_query].value = value;
	r->n_query++;
}

static bool s3_status_ok(long status) { return status >= 200 && status < 300; }

static size_t s3_write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
	struct s3_req *r = ud;
	size_t n = size * nmemb;
	if (r->status == 0)
		curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &r->status);
	if (!s3_status_ok(r->status)) {
		size_t room = sizeof(r->err_body) - 1 - r->err_len;
		size_t take = ST_MIN(room, n);
		memcpy(r->err_body + r->err_len, data, take);
		r->err_len += take;
		r->err_body[r->err_len] = '\0';
		return n;
	}
	switch (r->sink) {
	case S3_SINK_NONE:
		return n;
	case S3_SINK_FIXED: {
		size_t off = 0;
		/* A 200 to a ranged GET is the whole object: skip to the range ourselves. */
		if (r->range_fallback_ok && r->status == 200 && r->skipped < r->skip) {
			size_t drop = (size_t)ST_MIN((int64_t)n, r->skip - r->skipped);
			r->skipped += (int64_t)drop;
			off = drop;
		}
		size_t room = r->cap - r->len;
		size_t take = ST_MIN(room, n - off);
		memcpy(r->buf + r->len, data + off, take);
		r->len += take;
		if (take < n - off) {
			if (r->range_fallback_ok && r->status == 200)
				r->enough = true;
			else
				r->overflow = true;
			return 0; /* stops the transfer (CURLE_WRITE_ERROR) */
		}
		return n;
	}
	case S3_SINK_GROW:
		if (n > r->max_len - r->len) {
			r->efbig = true;
			return 0;
		}
		if (r->len + n > r->cap) {
			size_t cap = r->cap ? r->cap : 4096;
			while (cap < r->len + n)
				cap *= 2;
			cap = ST_MIN(cap, r->max_len);
			uint8_t *nb = realloc(r->buf, cap ? cap : 1);
			if (!nb) {
				r->overflow = true;
				return 0;
			}
			r->buf = nb;
			r->cap = cap;
		}
		memcpy(r->buf + r->len, data, n);
		r->len += n;
		return n;
	}
	return 0;
}

static void s3_header_value(const char *line, size_t n, size_t name_len, char *out, size_t out_len)
{
	size_t i = name_len;
	while (i < n && (line[i] == ' ' || line[i] == '\t'))
		i++;
	size_t e = n;
	while (e > i && (line[e - 1] == '\r' || line[e - 1] == '\n' || line[e - 1] == ' '))
		e--;
	size_t k = ST_MIN(e - i, out_len - 1);
	memcpy(out, line + i, k);
	out[k] = '\0';
}

static size_t s3_header_cb(char *line, size_t size, size_t nmemb, void *ud)
{
	struct s3_req *r = ud;
	size_t n = size * nmemb;
	if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
		/* A new response (after a 100 Continue or a redirect): forget the last one. */
		const char *sp = memchr(line, ' ', n);
		r->hdr_status = sp ? strtol(sp + 1, NULL, 10) : 0;
		r->content_length = -1;
		r->etag[0] = '\0';
		return n;
	}
	char v[128];
	if (n > 5 && strncasecmp(line, "ETag:", 5) == 0) {
		s3_header_value(line, n, 5, r->etag, sizeof(r->etag));
	} else if (n > 17 && strncasecmp(line, "x-amz-request-id:", 17) == 0) {
		s3_header_value(line, n, 17, r->request_id, sizeof(r->request_id));
	} else if (n > 15 && strncasecmp(line, "Content-Length:", 15) == 0) {
		s3_header_value(line, n, 15, v, sizeof(v));
		char *end = NULL;
		long long cl = strtoll(v, &end, 10);
		r->content_length = (end && end != v && cl >= 0) ? cl : -1;
		/* Refuse an object larger than the caller's bound before reading any of it. */
		if (r->sink == S3_SINK_GROW && s3_status_ok(r->hdr_status) && r->content_length > 0 &&
		    (uint64_t)r->content_length > r->max_len) {
			r->efbig = true;
			return 0;
		}
	}
	return n;
}

static size_t s3_read_cb(char *dst, size_t size, size_t nmemb, void *ud)
{
	struct s3_body *b = ud;
	size_t want = (size_t)ST_MIN((int64_t)(size * nmemb), b->len - b->pos);
	if (want == 0)
		return 0;
	if (b->mem) {
		memcpy(dst, b->mem + b->off + b->pos, want);
		b->pos += (int64_t)want;
		return want;
	}
	for (;;) {
		ssize_t got = pread(b->fd, dst, want, b->off + b->pos);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			b->read_errno = got < 0 ? errno : EIO;
			return CURL_READFUNC_ABORT;
		}
		b->pos += got;
		return (size_t)got;
	}
}

static int s3_seek_cb(void *ud, curl_off_t offset, int origin)
{
	struct s3_body *b = ud;
	if (origin != SEEK_SET || offset < 0 || offset > b->len)
		return CURL_SEEKFUNC_CANTSEEK;
	b->pos = offset;
	return CURL_SEEKFUNC_OK;
}

/* ---------------------------------------------------------------- pool ----------------- */

static void s3_share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
	struct s3store *s = ud;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&s->share_mu[data]);
}

static void s3_share_unlock(CURL *h, curl_lock_data data, void *ud)
{
	struct s3store *s = ud;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&s->share_mu[data]);
}

static CURL *s3_acquire(struct s3store *s)
{
	pthread_mutex_lock(&s->pool_mu);
	while (s->n_idle == 0 && s->n_handles >= s->max_connections)
		pthread_cond_wait(&s->pool_cv, &s->pool_mu);
	CURL *h = NULL;
	if (s->n_idle > 0) {
		h = s->idle[--s->n_idle];
	} else {
		h = curl_easy_init();
		if (h)
			s->n_handles++;
	}
	pthread_mutex_unlock(&s->pool_mu);
	return h;
}

static void s3_release(struct s3store *s, CURL *h)
{
	pthread_mutex_lock(&s->pool_mu);
	ST_ASSERT(s->n_idle < s->max_connections);
	s->idle[s->n_idle++] = h;
	pthread_cond_signal(&s->pool_cv);
	pthread_mutex_unlock(&s->pool_mu);
}

/* ---------------------------------------------------------------- one attempt ---------- */

static uint64_t s3_random(struct s3store *s)
{
	/* splitmix64 over a shared counter: cheap, thread-safe, good enough for jitter. */
	uint64_t z = atomic_fetch_add(&s->rng, 0x9E3779B97F4A7C15ull) + 0x9E3779B97F4A7C15ull;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* The raw (unencoded) request path: "/bucket/prefix/key" (path style) or "/prefix/key". */
static int s3_path(const struct s3store *s, const char *key, char *out, size_t out_len)
{
	int n;
	if (key)
		n = snprintf(out, out_len, "%s%s/%s%s", s->path_style ? "/" : "",
			     s->path_style ? s->bucket : "", s->prefix, key);
	else
		n = snprintf(out, out_len, "/%s", s->path_style ? s->bucket : "");
	return (n < 0 || (size_t)n >= out_len) ? -ENAMETOOLONG : 0;
}

static struct curl_slist *s3_add_header(struct curl_slist *l, bool *failed, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static struct curl_slist *s3_add_header(struct curl_slist *l, bool *failed, const char *fmt, ...)
{
	char line[8192];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line)) {
		*failed = true;
		return l;
	}
	struct curl_slist *nl = curl_slist_append(l, line);
	if (!nl) {
		*failed = true;
		return l;
	}
	return nl;
}

/* Sets up h for one attempt of r: URL, method, body, signed headers. */
static int s3_xferinfo_cb(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
			  curl_off_t ulnow)
{
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	const struct s3store *s = ctx;
	return atomic_load_explicit(&s->stopping, memory_order_relaxed) ? 1 : 0;
}

static int s3_prepare(struct s3store *s, CURL *h, struct s3_req *r, struct curl_slist **hdrs)
{
	char path[2 * OBJSTORE_KEY_MAX + 512];
	int rc = s3_path(s, r->key, path, sizeof(path));
	if (rc < 0)
		return rc;
	char amz_date[17];
	sigv4_amz_date((long long)time(NULL), amz_date);

	struct sigv4_kv sh[4];
	size_t nsh = 0;
	sh[nsh++] = (struct sigv4_kv){ "host", s->host };
	sh[nsh++] = (struct sigv4_kv){ "x-amz-content-sha256", r->payload_hash };
	sh[nsh++] = (struct sigv4_kv){ "x-amz-date", amz_date };
	if (s->session_token)
		sh[nsh++] = (struct sigv4_kv){ "x-amz-security-token", s->session_token };
	struct sigv4_request sr = {
		.method = r->method, .path = path, .query = r->query, .n_query = r->n_query,
		.headers = sh, .n_headers = nsh, .payload_hash = r->payload_hash,
		.amz_date = amz_date, .region = s->region, .service = "s3",
		.access_key_id = s->access_key_id, .secret_access_key = s->secret_access_key,
	};
	char auth[1024];
	rc = sigv4_authorization(&sr, auth, sizeof(auth));
	if (rc < 0)
		return rc;

	/* The URL carries exactly the encoded path and query that were signed. */
	char url[4 * OBJSTORE_KEY_MAX + 8192];
	int n = snprintf(url, sizeof(url), "%s://%s", s->scheme, s->host);
	if (n < 0 || (size_t)n >= sizeof(url))
		return -ENAMETOOLONG;
	size_t used = (size_t)n;
	rc = sigv4_uri_encode(path, strlen(path), true, url + used, sizeof(url) - used);
	if (rc < 0)
		return rc;
	used += (size_t)rc;
	if (r->n_query) {
		if (used + 2 >= sizeof(url))
			return -ENAMETOOLONG;
		url[used++] = '?';
		rc = sigv4_canonical_query(&sr, url + used, sizeof(url) - used);
		if (rc < 0)
			return rc;
	}

	bool failed = false;
	struct curl_slist *l = NULL;
	l = s3_add_header(l, &failed, "Host: %s", s->host);
	l = s3_add_header(l, &failed, "x-amz-date: %s", amz_date);
	l = s3_add_header(l, &failed, "x-amz-content-sha256: %s", r->payload_hash);
	if (s->session_token)
		l = s3_add_header(l, &failed, "x-amz-security-token: %s", s->session_token);
	l = s3_add_header(l, &failed, "Authorization: %s", auth);
	if (r->range[0])
		l = s3_add_header(l, &failed, "Range: %s", r->range);
	l = s3_add_header(l, &failed, "Expect:");
	if (r->has_body)
		l = s3_add_header(l, &failed, "Content-Type: %s",
				  r->error_in_200 ? "application/xml" : "application/octet-stream");
	*hdrs = l;
	if (failed)
		return -ENOMEM;

	curl_easy_reset(h);
	CURLcode cc = CURLE_OK;
#define S3_SETOPT(opt, val) do { if (cc == CURLE_OK) cc = curl_easy_setopt(h, opt, val); } while (0)
	S3_SETOPT(CURLOPT_URL, url);
	S3_SETOPT(CURLOPT_SHARE, s->share);
	S3_SETOPT(CURLOPT_NOSIGNAL, 1L);
	S3_SETOPT(CURLOPT_PATH_AS_IS, 1L);
	S3_SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
	S3_SETOPT(CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
	S3_SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)ST_MIN(s->timeout_ms, 10000));
	S3_SETOPT(CURLOPT_USERAGENT, "strata-objstore/1");
	S3_SETOPT(CURLOPT_HTTPHEADER, l);
	S3_SETOPT(CURLOPT_WRITEFUNCTION, s3_write_cb);
	S3_SETOPT(CURLOPT_WRITEDATA, r);
	S3_SETOPT(CURLOPT_HEADERFUNCTION, s3_header_cb);
	S3_SETOPT(CURLOPT_HEADERDATA, r);
	S3_SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	/* Polled about once a second and on every transfer step: lets shutdown cut a request to
	 * a bucket that does not answer instead of waiting out its timeout. */
	S3_SETOPT(CURLOPT_NOPROGRESS, 0L);
	S3_SETOPT(CURLOPT_XFERINFOFUNCTION, s3_xferinfo_cb);
	S3_SETOPT(CURLOPT_XFERINFODATA, s);
	/* S3 speaks HTTP/1.1; one request per connection at a time is what the pool assumes. */
	S3_SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	/* Chunks and segments are megabytes: curl's default 16 KiB receive and 64 KiB send
	 * buffers cost a recv/send and a callback per 16/64 KiB. */
	S3_SETOPT(CURLOPT_BUFFERSIZE, S3_RECV_BUFFER_BYTES);
	if (r->has_body)
		S3_SETOPT(CURLOPT_UPLOAD_BUFFERSIZE, S3_SEND_BUFFER_BYTES);
	if (s->ca_file)
		S3_SETOPT(CURLOPT_CAINFO, s->ca_file);
	if (r->has_body) {
		S3_SETOPT(CURLOPT_UPLOAD, 1L);
		S3_SETOPT(CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body.len);
		S3_SETOPT(CURLOPT_READFUNCTION, s3_read_cb);
		S3_SETOPT(CURLOPT_READDATA, &r->body);
		S3_SETOPT(CURLOPT_SEEKFUNCTION, s3_seek_cb);
		S3_SETOPT(CURLOPT_SEEKDATA, &r->body);
		if (strcmp(r->method, "PUT") != 0)
			S3_SETOPT(CURLOPT_CUSTOMREQUEST, r->method);
	} else if (strcmp(r->method, "HEAD") == 0) {
		S3_SETOPT(CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "GET") != 0) {
		S3_SETOPT(CURLOPT_CUSTOMREQUEST, r->method);
	}
#undef S3_SETOPT
	return cc == CURLE_OK ? 0 : -EINVAL;
}

static void s3_req_reset_response(struct s3_req *r)
{
	r->status = 0;
	r->hdr_status = 0;
	r->len = 0;
	r->skipped = 0;
	r->enough = false;
	r->overflow = false;
	r->efbig = false;
	r->content_length = -1;
	r->etag[0] = '\0';
	r->request_id[0] = '\0';
	r->err_body[0] = '\0';
	r->err_len = 0;
	r->body.pos = 0;
	r->body.read_errno = 0;
}

static bool s3_curl_retryable(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_WEIRD_SERVER_REPLY:
		return true;
	default:
		return false;
	}
}

static void s3_err_code(const struct s3_req *r, char *code, size_t code_len, char *msg, size_t msg_len)
{
	code[0] = msg[0] = '\0';
	if (r->err_len == 0)
		return;
	if (objstore_xml_text(r->err_body, r->err_len, 0, "Code", code, code_len) < 0)
		code[0] = '\0';
	if (objstore_xml_text(r->err_body, r->err_len, 0, "Message", msg, msg_len) < 0)
		msg[0] = '\0';
}

static void s3_log_failure(const struct s3store *s, const struct s3_req *r, const char *why)
{
	char code[96], msg[512];
	s3_err_code(r, code, sizeof(code), msg, sizeof(msg));
	slog_error("objstore", "s3 %s %s bucket=%s key=%s%s status=%ld code=%s message=\"%s\" "
		   "request_id=%s: %s", r->op, r->method, s->bucket, s->prefix, r->key ? r->key : "",
		   r->status, code[0] ? code : "-", msg, r->request_id[0] ? r->request_id : "-", why);
}

/* Whether a final (non-transport-error) answer is worth another attempt. */
static bool s3_status_retryable(const struct s3_req *r, const char *code)
{
	if (r->status >= 500 || r->status == 429)
		return true;
	if (r->status == 400 && strcmp(code, "RequestTimeout") == 0)
		return true;
	return false;
}

/* Runs r with retries. Returns 0 with r->status set to the final answer (which may be a 4xx
 * the caller maps), or -EIO (transport errors or 5xx after all retries), -EFBIG, -errno of
 * a body read. */
/* Sleeps delay_ms in short slices, returning early (false) once the store is shutting down. */
static bool s3_backoff_sleep(const struct s3store *s, int64_t delay_ms)
{
	while (delay_ms > 0) {
		if (atomic_load_explicit(&s->stopping, memory_order_relaxed))
			return false;
		int64_t slice_ms = ST_MIN(delay_ms, (int64_t)50);
		struct timespec ts = { .tv_sec = 0, .tv_nsec = slice_ms * 1000000 };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		delay_ms -= slice_ms;
	}
	return !atomic_load_explicit(&s->stopping, memory_order_relaxed);
}

static int s3_call(struct s3store *s, struct s3_req *r)
{
	CURL *h = s3_acquire(s);
	if (!h)
		return -ENOMEM;
	int result = -EIO;
	for (int attempt = 0;; attempt++) {
		s3_req_reset_response(r);
		r->curl = h;
		struct curl_slist *hdrs = NULL;
		int rc = s3_prepare(s, h, r, &hdrs);
		if (rc < 0) {
			curl_slist_free_all(hdrs);
			slog_error("objstore", "s3 %s key=%s: cannot build request: %s", r->op,
				   r->key ? r->key : "", strerror(-rc));
			result = rc;
			break;
		}
		CURLcode cc = curl_easy_perform(h);
		curl_slist_free_all(hdrs);
		if (cc == CURLE_ABORTED_BY_CALLBACK) {
			slog_info("objstore", "s3 %s key=%s: cut by shutdown", r->op, r->key ? r->key : "");
			result = -ECANCELED;
			break;
		}
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
		if (cc == CURLE_WRITE_ERROR && r->enough)
			cc = CURLE_OK;
		char why[256] = "";
		bool retry = false;
		if (r->efbig) {
			result = -EFBIG;
			break;
		}
		if (r->body.read_errno) {
			slog_error("objstore", "s3 %s key=%s: reading the local file: %s", r->op,
				   r->key ? r->key : "", strerror(r->body.read_errno));
			result = -r->body.read_errno;
			break;
		}
		if (r->overflow) {
			s3_log_failure(s, r, "the answer is longer than asked for");
			result = -EIO;
			break;
		}
		if (cc != CURLE_OK) {
			snprintf(why, sizeof(why), "curl: %s", curl_easy_strerror(cc));
			retry = s3_curl_retryable(cc);
			if (!retry) {
				s3_log_failure(s, r, why);
				result = -EIO;
				break;
			}
		} else {
			char code[96] = "", msg[512];
			bool err200 = false;
			if (r->error_in_200 && s3_status_ok(r->status) && r->buf &&
			    memmem(r->buf, r->len, "<Error>", 7) != NULL) {
				err200 = true;
				r->err_len = ST_MIN(r->len, sizeof(r->err_body) - 1);
				memcpy(r->err_body, r->buf, r->err_len);
				r->err_body[r->err_len] = '\0';
			}
			if (!s3_status_ok(r->status) || err200)
				s3_err_code(r, code, sizeof(code), msg, sizeof(msg));
			if (err200) {
				snprintf(why, sizeof(why), "error inside a 200 answer");
				retry = true;
			} else if (s3_status_retryable(r, code)) {
				snprintf(why, sizeof(why), "HTTP %ld %s", r->status, code);
				retry = true;
			} else {
				result = 0;
				break;
			}
		}
		if (attempt >= s->max_retries) {
			s3_log_failure(s, r, why);
			slog_error("objstore", "s3 %s key=%s: giving up after %d attempts", r->op,
				   r->key ? r->key : "", attempt + 1);
			result = -EIO;
			break;
		}
		/* Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^attempt)]. */
		int64_t ceiling = s->retry_base_ms << ST_MIN(attempt, 20);
		ceiling = ST_MIN(ceiling, (int64_t)S3_BACKOFF_CAP_MS);
		int64_t delay_ms = (int64_t)(s3_random(s) % (uint64_t)(ceiling + 1));
		slog_warn("objstore", "s3 %s key=%s attempt=%d: %s; retrying in %lld ms", r->op,
			  r->key ? r->key : "", attempt + 1, why, (long long)delay_ms);
		if (!s3_backoff_sleep(s, delay_ms)) {
			slog_info("objstore", "s3 %s key=%s: retry dropped by shutdown", r->op,
				  r->key ? r->key : "");
			result = -ECANCELED;
			break;
		}
	}
	s3_release(s, h);
	return result;
}

/* 404s: a missing key is -ENOENT, a missing bucket (or anything else) is an error. */
static int s3_not_found(const struct s3store *s, const struct s3_req *r)
{
	char code[96], msg[512];
	s3_err_code(r, code, sizeof(code), msg, sizeof(msg));
	if (code[0] == '\0' || strcmp(code, "NoSuchKey") == 0)
		return -ENOENT;
	s3_log_failure(s, r, "not found");
	return -EIO;
}

/* ---------------------------------------------------------------- payload hashing ------ */

/* Hashes the body range; also feeds `total` (the whole object's hash) when given. */
static int s3_hash_body(const struct s3_body *b, EVP_MD_CTX *total, char out[65])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		return -ENOMEM;
	}
	int rc = 0;
	if (b->mem) {
		if (EVP_DigestUpdate(md, b->mem + b->off, (size_t)b->len) != 1 ||
		    (total && EVP_DigestUpdate(total, b->mem + b->off, (size_t)b->len) != 1))
			rc = -EIO;
	} else {
		uint8_t *buf = malloc(S3_HASH_CHUNK);
		if (!buf)
			rc = -ENOMEM;
		for (int64_t done = 0; rc == 0 && done < b->len;) {
			size_t want = (size_t)ST_MIN((int64_t)S3_HASH_CHUNK, b->len - done);
			ssize_t got = pread(b->fd, buf, want, b->off + done);
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0) {
				rc = got < 0 ? -errno : -EIO;
				slog_error("objstore", "s3: reading the local file at %lld: %s",
					   (long long)(b->off + done), got < 0 ? strerror(errno) : "short file");
				break;
			}
			if (EVP_DigestUpdate(md, buf, (size_t)got) != 1 ||
			    (total && EVP_DigestUpdate(total, buf, (size_t)got) != 1))
				rc = -EIO;
			done += got;
		}
		free(buf);
	}
	if (rc == 0 && out) {
		unsigned char d[32];
		unsigned int dl = 0;
		if (EVP_DigestFinal_ex(md, d, &dl) != 1 || dl != 32)
			rc = -EIO;
		else
			sigv4_hex(d, 32, out);
	}
	EVP_MD_CTX_free(md);
	return rc;
}

static bool s3_sign_payload(const struct s3store *s) { return !(s->unsigned_payload && s->tls); }

/* ---------------------------------------------------------------- operations ----------- */

static int s3_put_single(struct s3store *s, const char *key, const struct s3_body *body,
			 char *sha256_hex)
{
	struct s3_req r;
	s3_req_init(&r, "put", "PUT", key);
	r.has_body = true;
	r.body = *body;
	if (s3_sign_payload(s) || sha256_hex) {
		int rc = s3_hash_body(body, NULL, r.payload_hash);
		if (rc < 0)
			return rc;
		if (sha256_hex)
			memcpy(sha256_hex, r.payload_hash, 65);
	}
	if (!s3_sign_payload(s))
		memcpy(r.payload_hash, SIGV4_UNSIGNED_PAYLOAD, sizeof(SIGV4_UNSIGNED_PAYLOAD));
	int rc = s3_call(s, &r);
	if (rc < 0)
		return rc;
	if (r.status != 200) {
		s3_log_failure(s, &r, "put refused");
		return -EIO;
	}
	return 0;
}

static void s3_abort_upload(struct s3store *s, const char *key, const char *upload_id)
{
	struct s3_req r;
	s3_req_init(&r, "abort-multipart", "DELETE", key);
	s3_req_add_query(&r, "uploadId", upload_id);
	int rc = s3_call(s, &r);
	if (rc < 0 || !s3_status_ok(r.status)) {
		if (rc == 0)
			s3_log_failure(s, &r, "abort refused (a lifecycle rule must clean up)");
	} else {
		slog_info("objstore", "s3 aborted multipart upload key=%s%s upload_id=%s", s->prefix,
			  key, upload_id);
	}
}

static int s3_put_multipart(struct s3store *s, const char *key, const struct s3_body *whole,
			    char *sha256_hex)
{
	int64_t part_bytes = s->mp_part_bytes;
	if (whole->len > part_bytes * S3_MAX_PARTS)
		part_bytes = (whole->len + S3_MAX_PARTS - 1) / S3_MAX_PARTS;
	int64_t n_parts = whole->len == 0 ? 1 : (whole->len + part_bytes - 1) / part_bytes;
	ST_ASSERT(n_parts >= 1 && n_parts <= S3_MAX_PARTS);

	/* CreateMultipartUpload */
	struct s3_req r;
	s3_req_init(&r, "create-multipart", "POST", key);
	s3_req_add_query(&r, "uploads", "");
	r.has_body = true; /* empty, but sent with Content-Length: 0 */
	r.body.mem = (const uint8_t *)"";
	r.sink = S3_SINK_GROW;
	r.max_len = 1 << 16;
	int rc = s3_call(s, &r);
	char upload_id[512];
	if (rc == 0 && r.status != 200) {
		s3_log_failure(s, &r, "create multipart refused");
		rc = -EIO;
	}
	if (rc == 0 && objstore_xml_text((const char *)r.buf, r.len, 0, "UploadId", upload_id,
					 sizeof(upload_id)) != 1) {
		s3_log_failure(s, &r, "no UploadId in the answer");
		rc = -EIO;
	}
	free(r.buf);
	if (rc < 0)
		return rc;

	char (*etags)[128] = calloc((size_t)n_parts, sizeof(*etags));
	EVP_MD_CTX *total = NULL;
	if (sha256_hex) {
		total = EVP_MD_CTX_new();
		if (!total || EVP_DigestInit_ex(total, EVP_sha256(), NULL) != 1)
			rc = -ENOMEM;
	}
	if (!etags)
		rc = -ENOMEM;

	/* UploadPart, in order (the whole object's hash is computed on the way). */
	char part_no[16];
	for (int64_t i = 0; rc == 0 && i < n_parts; i++) {
		s3_req_init(&r, "upload-part", "PUT", key);
		snprintf(part_no, sizeof(part_no), "%lld", (long long)(i + 1));
		s3_req_add_query(&r, "partNumber", part_no);
		s3_req_add_query(&r, "uploadId", upload_id);
		r.has_body = true;
		r.body = *whole;
		r.body.off = whole->off + i * part_bytes;
		r.body.len = ST_MIN(part_bytes, whole->len - i * part_bytes);
		if (s3_sign_payload(s) || total)
			rc = s3_hash_body(&r.body, total, r.payload_hash);
		if (rc < 0)
			break;
		if (!s3_sign_payload(s))
			memcpy(r.payload_hash, SIGV4_UNSIGNED_PAYLOAD, sizeof(SIGV4_UNSIGNED_PAYLOAD));
		rc = s3_call(s, &r);
		if (rc == 0 && (r.status != 200 || r.etag[0] == '\0')) {
			s3_log_failure(s, &r, r.status == 200 ? "part answer without ETag" : "part refused");
			rc = -EIO;
		}
		if (rc == 0)
			memcpy(etags[i], r.etag, sizeof(etags[i]));
	}

	/* CompleteMultipartUpload */
	char *xml = NULL;
	size_t xml_len = 0;
	if (rc == 0) {
		size_t cap = 128 + (size_t)n_parts * (64 + 2 * sizeof(etags[0]));
		xml = malloc(cap);
		if (!xml)
			rc = -ENOMEM;
		int n = xml ? snprintf(xml, cap, "<CompleteMultipartUpload>") : -1;
		xml_len = n > 0 ? (size_t)n : 0;
		for (int64_t i = 0; rc == 0 && i < n_parts; i++) {
			/* ETags are quoted hex; an ETag needing more XML escaping than that is refused. */
			if (strpbrk(etags[i], "<>&")) {
				slog_error("objstore", "s3 key=%s%s: odd ETag %s", s->prefix, key, etags[i]);
				rc = -EIO;
				break;
			}
			n = snprintf(xml + xml_len, cap - xml_len,
				     "<Part><PartNumber>%lld</PartNumber><ETag>%s</ETag></Part>",
				     (long long)(i + 1), etags[i]);
			if (n < 0 || (size_t)n >= cap - xml_len) {
				rc = -ENOSPC;
				break;
			}
			xml_len += (size_t)n;
		}
		if (rc == 0) {
			n = snprintf(xml + xml_len, cap - xml_len, "</CompleteMultipartUpload>");
			if (n < 0 || (size_t)n >= cap - xml_len)
				rc = -ENOSPC;
			else
				xml_len += (size_t)n;
		}
	}
	if (rc == 0) {
		s3_req_init(&r, "complete-multipart", "POST", key);
		s3_req_add_query(&r, "uploadId", upload_id);
		r.has_body = true;
		r.body.mem = (const uint8_t *)xml;
		r.body.len = (int64_t)xml_len;
		r.error_in_200 = true;
		r.sink = S3_SINK_GROW;
		r.max_len = 1 << 16;
		sigv4_sha256_hex(xml, xml_len, r.payload_hash);
		rc = s3_call(s, &r);
		if (rc == 0 && r.status != 200) {
			char code[96], msg[512];
			s3_err_code(&r, code, sizeof(code), msg, sizeof(msg));
			/* A retried Complete whose first try went through finds the upload gone: the
			 * object is there when its size says so. */
			bool done = false;
			if (r.status == 404 && strcmp(code, "NoSuchUpload") == 0) {
				struct s3_req hr;
				s3_req_init(&hr, "head", "HEAD", key);
				done = s3_call(s, &hr) == 0 && hr.status == 200 &&
				       hr.content_length == whole->len;
			}
			if (!done) {
				s3_log_failure(s, &r, "complete multipart refused");
				rc = -EIO;
			}
		}
		free(r.buf);
	}
	free(xml);
	free(etags);
	if (rc == 0 && total) {
		unsigned char d[32];
		unsigned int dl = 0;
		if (EVP_DigestFinal_ex(total, d, &dl) != 1 || dl != 32)
			rc = -EIO;
		else
			sigv4_hex(d, 32, sha256_hex);
	}
	EVP_MD_CTX_free(total);
	if (rc < 0)
		s3_abort_upload(s, key, upload_id);
	return rc;
}

static int s3_put_body(struct s3store *s, const char *key, const struct s3_body *b, char *sha256_hex)
{
	if (b->len > s->mp_threshold_bytes)
		return s3_put_multipart(s, key, b, sha256_hex);
	return s3_put_single(s, key, b, sha256_hex);
}

static int s3_put_file(void *impl, const char *key, int fd, int64_t size, char sha256_hex[65])
{
	struct s3_body b = { .mem = NULL, .fd = fd, .off = 0, .len = size };
	return s3_put_body(impl, key, &b, sha256_hex);
}

static int s3_put(void *impl, const char *key, const void *data, size_t len)
{
	struct s3_body b = { .mem = data, .fd = -1, .off = 0, .len = (int64_t)len };
	return s3_put_body(impl, key, &b, NULL);
}

static int64_t s3_get_range(void *impl, const char *key, int64_t offset, int64_t len, void *buf)
{
	struct s3store *s = impl;
	struct s3_req r;
	s3_req_init(&r, "get-range", "GET", key);
	snprintf(r.range, sizeof(r.range), "bytes=%lld-%lld", (long long)offset,
		 (long long)(offset + len - 1));
	r.sink = S3_SINK_FIXED;
	r.buf = buf;
	r.cap = (size_t)len;
	r.skip = offset;
	r.range_fallback_ok = true;
	int rc = s3_call(s, &r);
	if (rc < 0)
		return rc;
	if (r.status == 206 || r.status == 200)
		return (int64_t)r.len;
	if (r.status == 416)
		return 0;
	if (r.status == 404)
		return s3_not_found(s, &r);
	s3_log_failure(s, &r, "get refused");
	return -EIO;
}

static int s3_get(void *impl, const char *key, size_t max_len, uint8_t **out, size_t *out_len)
{
	struct s3store *s = impl;
	struct s3_req r;
	s3_req_init(&r, "get", "GET", key);
	r.sink = S3_SINK_GROW;
	r.max_len = max_len;
	int rc = s3_call(s, &r);
	if (rc == 0 && r.status == 200) {
		if (!r.buf)
			r.buf = malloc(1);
		if (!r.buf)
			return -ENOMEM;
		*out = r.buf;
		*out_len = r.len;
		return 0;
	}
	free(r.buf);
	if (rc < 0)
		return rc;
	if (r.status == 404)
		return s3_not_found(s, &r);
	s3_log_failure(s, &r, "get refused");
	return -EIO;
}

static int64_t s3_head(void *impl, const char *key)
{
	struct s3store *s = impl;
	struct s3_req r;
	s3_req_init(&r, "head", "HEAD", key);
	int rc = s3_call(s, &r);
	if (rc < 0)
		return rc;
	if (r.status == 200 && r.content_length >= 0)
		return r.content_length;
	if (r.status == 404)
		return -ENOENT; /* HEAD answers carry no body to tell key from bucket */
	s3_log_failure(s, &r, "head refused");
	return -EIO;
}

static int s3_del(void *impl, const char *key)
{
	struct s3store *s = impl;
	struct s3_req r;
	s3_req_init(&r, "delete", "DELETE", key);
	int rc = s3_call(s, &r);
	if (rc < 0)
		return rc;
	if (s3_status_ok(r.status))
		return 0;
	if (r.status == 404 && s3_not_found(s, &r) == -ENOENT)
		return 0;
	s3_log_failure(s, &r, "delete refused");
	return -EIO;
}

/* Calls fn for the <Contents> of one ListObjectsV2 page; returns fn's non-zero or 0. */
static int s3_list_page(struct s3store *s, const char *xml, size_t len,
			int (*fn)(void *ctx, const char *key, int64_t size), void *ctx)
{
	size_t pos = 0, plen = strlen(s->prefix);
	size_t cs, ce;
	for (int guard = 0; guard < 100000 && objstore_xml_find(xml, len, pos, "Contents", &cs, &ce); guard++) {
		char key[3 * OBJSTORE_KEY_MAX], size_txt[32];
		pos = ce;
		int k = objstore_xml_text(xml, ce, cs, "Key", key, sizeof(key));
		int z = objstore_xml_text(xml, ce, cs, "Size", size_txt, sizeof(size_txt));
		if (k != 1 || z != 1) {
			slog_warn("objstore", "s3 list bucket=%s: a <Contents> without Key/Size", s->bucket);
			continue;
		}
		char *end = NULL;
		long long size = strtoll(size_txt, &end, 10);
		if (!end || *end || size < 0)
			continue;
		if (strncmp(key, s->prefix, plen) != 0 || !objstore_key_valid(key + plen)) {
			slog_debug("objstore", "s3 list: skipping foreign key %s", key);
			continue;
		}
		int rc = fn(ctx, key + plen, size);
		if (rc)
			return rc;
	}
	return 0;
}

static int s3_list(void *impl, const char *prefix,
		   int (*fn)(void *ctx, const char *key, int64_t size), void *ctx)
{
	struct s3store *s = impl;
	char full[OBJSTORE_KEY_MAX * 2 + 2];
	int n = snprintf(full, sizeof(full), "%s%s", s->prefix, prefix);
	if (n < 0 || (size_t)n >= sizeof(full))
		return -EINVAL;
	char token[2048] = "";
	for (int page = 0; page < S3_MAX_LIST_PAGES; page++) {
		struct s3_req r;
		s3_req_init(&r, "list", "GET", NULL);
		s3_req_add_query(&r, "list-type", "2");
		s3_req_add_query(&r, "prefix", full);
		if (token[0])
			s3_req_add_query(&r, "continuation-token", token);
		r.sink = S3_SINK_GROW;
		r.max_len = S3_XML_MAX_BYTES;
		int rc = s3_call(s, &r);
		if (rc == 0 && r.status != 200) {
			s3_log_failure(s, &r, "list refused");
			rc = -EIO;
		}
		if (rc < 0) {
			free(r.buf);
			return rc;
		}
		const char *xml = r.buf ? (const char *)r.buf : "";
		rc = s3_list_page(s, xml, r.len, fn, ctx);
		char truncated[16];
		int t = rc ? 0 : objstore_xml_text(xml, r.len, 0, "IsTruncated", truncated, sizeof(truncated));
		bool more = t == 1 && strcmp(truncated, "true") == 0;
		if (more && objstore_xml_text(xml, r.len, 0, "NextContinuationToken", token,
					      sizeof(token)) != 1) {
			s3_log_failure(s, &r, "truncated list without NextContinuationToken");
			rc = -EIO;
		}
		free(r.buf);
		if (rc || !more)
			return rc;
	}
	slog_error("objstore", "s3 list prefix=%s: too many pages", full);
	return -EIO;
}

/* ---------------------------------------------------------------- open/close ----------- */

static pthread_once_t s3_global_once = PTHREAD_ONCE_INIT;
static CURLcode s3_global_rc;

static void s3_global_init(void) { s3_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static char *s3_strdup_or(const char *v, const char *env)
{
	if (!v && env)
		v = getenv(env);
	return (v && *v) ? strdup(v) : NULL;
}

static void s3_free(struct s3store *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->n_idle; i++)
		curl_easy_cleanup(s->idle[i]);
	if (s->share)
		curl_share_cleanup(s->share);
	if (s->sync_ready) {
		pthread_mutex_destroy(&s->pool_mu);
		pthread_cond_destroy(&s->pool_cv);
		for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
			pthread_mutex_destroy(&s->share_mu[i]);
	}
	free(s->idle);
	free(s->url);
	free(s->bucket);
	free(s->prefix);
	free(s->scheme);
	free(s->host);
	free(s->region);
	free(s->access_key_id);
	if (s->secret_access_key)
		OPENSSL_cleanse(s->secret_access_key, strlen(s->secret_access_key));
	free(s->secret_access_key);
	free(s->session_token);
	free(s->ca_file);
	free(s);
}

static bool s3_bucket_ok(const char *b, size_t n)
{
	if (n < 3 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = b[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_'))
			return false;
	}
	return true;
}

/* Splits the endpoint URL into scheme and host[:port] (no path but "/"). */
static int s3_parse_endpoint(struct s3store *s, const char *endpoint, char **host_port)
{
	const char *rest;
	if (strncmp(endpoint, "https://", 8) == 0) {
		s->tls = true;
		rest = endpoint + 8;
	} else if (strncmp(endpoint, "http://", 7) == 0) {
		s->tls = false;
		rest = endpoint + 7;
	} else {
		return -EINVAL;
	}
	size_t n = strcspn(rest, "/?#");
	if (n == 0 || (rest[n] && strcmp(rest + n, "/") != 0))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (rest[i] <= ' ' || rest[i] == '@' || rest[i] == '\\')
			return -EINVAL;
	s->scheme = strdup(s->tls ? "https" : "http");
	*host_port = strndup(rest, n);
	return (s->scheme && *host_port) ? 0 : -ENOMEM;
}

static int s3_open(const struct objstore_config *cfg, const char *rest, void **impl)
{
	pthread_once(&s3_global_once, s3_global_init);
	if (s3_global_rc != CURLE_OK) {
		slog_error("objstore", "curl_global_init: %s", curl_easy_strerror(s3_global_rc));
		return -EIO;
	}
	struct s3store *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	int rc = -EINVAL;
	char *endpoint_host = NULL;
	char default_endpoint[256];
	const char *why = "bad url (want s3://bucket[/prefix])";

	size_t bn = strcspn(rest, "/");
	if (!s3_bucket_ok(rest, bn))
		goto fail;
	s->bucket = strndup(rest, bn);
	const char *p = rest + bn;
	while (*p == '/')
		p++;
	size_t pn = strlen(p);
	while (pn > 0 && p[pn - 1] == '/')
		pn--;
	char prefix[OBJSTORE_KEY_MAX + 2];
	if (pn > OBJSTORE_KEY_MAX)
		goto fail;
	memcpy(prefix, p, pn);
	prefix[pn] = '\0';
	if (pn > 0 && !objstore_key_valid(prefix)) {
		why = "bad prefix";
		goto fail;
	}
	if (pn > 0) {
		prefix[pn] = '/';
		prefix[pn + 1] = '\0';
	}
	s->prefix = strdup(prefix);
	s->region = strdup(cfg->region && *cfg->region ? cfg->region : "us-east-1");
	s->url = strdup(cfg->url);
	if (!s->bucket || !s->prefix || !s->region || !s->url) {
		rc = -ENOMEM;
		goto fail;
	}

	const char *endpoint = cfg->endpoint;
	if (!endpoint || !*endpoint) {
		int n = snprintf(default_endpoint, sizeof(default_endpoint), "https://s3.%s.amazonaws.com",
				 s->region);
		if (n < 0 || (size_t)n >= sizeof(default_endpoint))
			goto fail;
		endpoint = default_endpoint;
	}
	rc = s3_parse_endpoint(s, endpoint, &endpoint_host);
	if (rc < 0) {
		why = "bad endpoint (want http[s]://host[:port])";
		goto fail;
	}
	s->path_style = cfg->path_style;
	size_t hn = strlen(endpoint_host) + strlen(s->bucket) + 2;
	s->host = malloc(hn);
	if (!s->host) {
		rc = -ENOMEM;
		goto fail;
	}
	if (s->path_style)
		snprintf(s->host, hn, "%s", endpoint_host);
	else
		snprintf(s->host, hn, "%s.%s", s->bucket, endpoint_host);

	s->access_key_id = s3_strdup_or(cfg->access_key_id, "AWS_ACCESS_KEY_ID");
	s->secret_access_key = s3_strdup_or(cfg->secret_access_key, "AWS_SECRET_ACCESS_KEY");
	s->session_token = s3_strdup_or(cfg->session_token, "AWS_SESSION_TOKEN");
	rc = -EINVAL;
	if (!s->access_key_id || !s->secret_access_key) {
		why = "no credentials (config or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)";
		goto fail;
	}
	if (strlen(s->secret_access_key) > 256 || strlen(s->access_key_id) > 128 ||
	    (s->session_token && strlen(s->session_token) > 4096)) {
		why = "credentials too long";
		goto fail;
	}
	if (cfg->ca_file && !(s->ca_file = strdup(cfg->ca_file))) {
		rc = -ENOMEM;
		goto fail;
	}

	s->unsigned_payload = cfg->unsigned_payload;
	if (s->unsigned_payload && !s->tls)
		slog_info("objstore", "url=%s: unsigned_payload ignored over plain http", cfg->url);
	s->mp_threshold_bytes = cfg->multipart_threshold_bytes ? cfg->multipart_threshold_bytes : 64ll << 20;
	s->mp_part_bytes = cfg->multipart_part_bytes ? cfg->multipart_part_bytes : 16ll << 20;
	s->max_retries = cfg->max_retries;
	s->retry_base_ms = cfg->retry_base_ms ? cfg->retry_base_ms : 100;
	s->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 30000;
	s->max_connections = cfg->max_connections ? cfg->max_connections : 16;
	if (s->mp_threshold_bytes < 0 || s->mp_part_bytes < S3_MIN_PART_BYTES ||
	    s->mp_part_bytes > (5ll << 30) || s->max_retries < 0 || s->max_retries > 100 ||
	    s->retry_base_ms < 0 || s->retry_base_ms > 60000 || s->timeout_ms < 0 ||
	    s->max_connections < 0 || s->max_connections > 1024) {
		why = "bad limits (multipart_part_bytes >= 5 MiB, max_retries <= 100, "
		      "max_connections <= 1024, none negative)";
		goto fail;
	}

	s->idle = calloc((size_t)s->max_connections, sizeof(*s->idle));
	s->share = curl_share_init();
	if (!s->idle || !s->share) {
		rc = -ENOMEM;
		goto fail;
	}
	pthread_mutex_init(&s->pool_mu, NULL);
	pthread_cond_init(&s->pool_cv, NULL);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&s->share_mu[i], NULL);
	s->sync_ready = true;
	if (curl_share_setopt(s->share, CURLSHOPT_LOCKFUNC, s3_share_lock) != CURLSHE_OK ||
	    curl_share_setopt(s->share, CURLSHOPT_UNLOCKFUNC, s3_share_unlock) != CURLSHE_OK ||
	    curl_share_setopt(s->share, CURLSHOPT_USERDATA, s) != CURLSHE_OK ||
	    curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
	    curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
		why = "curl share setup";
		rc = -EIO;
		goto fail;
	}
	atomic_store(&s->rng, (uint64_t)st_mono_ns() ^ (uint64_t)(uintptr_t)s);
	free(endpoint_host);
	slog_info("objstore", "url=%s endpoint=%s://%s region=%s %s-style%s", cfg->url, s->scheme,
		  s->host, s->region, s->path_style ? "path" : "virtual-host",
		  s->session_token ? " session-token" : "");
	*impl = s;
	return 0;
fail:
	slog_error("objstore", "url=%s: %s", cfg->url, why);
	free(endpoint_host);
	s3_free(s);
	return rc;
}

static void s3_shutdown(void *impl)
{
	struct s3store *s = impl;
	atomic_store(&s->stopping, true);
}

static void s3_close(void *impl)
{
	struct s3store *s = impl;
	if (!s)
		return;
	ST_ASSERT(s->n_idle == s->n_handles); /* no call may still be running */
	s3_free(s);
}

const struct objstore_backend objstore_s3_backend = {
	.scheme = "s3",
	.open = s3_open,
	.close = s3_close,
	.shutdown = s3_shutdown,
	.put_file = s3_put_file,
	.put = s3_put,
	.get_range = s3_get_range,
	.get = s3_get,
	.head = s3_head,
	.del = s3_del,
	.list = s3_list,
};
