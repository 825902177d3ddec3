/* sigv4.c -- AWS Signature Version 4 over OpenSSL (SHA-256, HMAC-SHA256). Owns only string
 * building: no I/O, no allocation (fixed stack scratch, every write bounded). Must not
 * normalize paths (S3 signs the path as sent). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "strata/common.h"
#include "sigv4.h"

#define SIGV4_MAX_ITEMS 32

/* A bounded string builder: writes past the end set overflow instead of writing. */
struct sb {
	char *p;
	size_t cap;
	size_t len;
	bool overflow;
};

static void sb_init(struct sb *b, char *p, size_t cap)
{
	b->p = p;
	b->cap = cap;
	b->len = 0;
	b->overflow = cap == 0;
	if (cap)
		p[0] = '\0';
}

static void sb_addn(struct sb *b, const char *s, size_t n)
{
	if (b->overflow || n >= b->cap - b->len) {
		b->overflow = true;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_add(struct sb *b, const char *s) { sb_addn(b, s, strlen(s)); }
static void sb_addc(struct sb *b, char c) { sb_addn(b, &c, 1); }

static int sb_result(const struct sb *b) { return b->overflow ? -ENOSPC : (int)b->len; }

static bool sigv4_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

int sigv4_uri_encode(const char *in, size_t len, bool keep_slash, char *out, size_t out_len)
{
	static const char hex[] = "0123456789ABCDEF";
	struct sb b;
	sb_init(&b, out, out_len);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (sigv4_unreserved(c) || (keep_slash && c == '/')) {
			sb_addc(&b, (char)c);
		} else {
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };
			sb_addn(&b, e, 3);
		}
	}
	return sb_result(&b);
}

void sigv4_hex(const unsigned char *bytes, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[bytes[i] >> 4];
		out[2 * i + 1] = hex[bytes[i] & 15];
	}
	out[2 * n] = '\0';
}

void sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	SHA256(data, len, md);
	sigv4_hex(md, sizeof(md), out);
}

void sigv4_amz_date(long long unix_seconds, char out[17])
{
	time_t t = (time_t)unix_seconds;
	struct tm tm;
	gmtime_r(&t, &tm);
	if (strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
		out[0] = '\0';
}

/* Encoded query items, kept in one scratch buffer, sorted by (name, value). */
struct qitem {
	const char *name;
	const char *value;
};

static int qitem_cmp(const void *a, const void *b)
{
	const struct qitem *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->value, y->value);
}

int sigv4_canonical_query(const struct sigv4_request *r, char *out, size_t out_len)
{
	if (r->n_query > SIGV4_MAX_ITEMS)
		return -EINVAL;
	char scratch[8192];
	struct qitem items[SIGV4_MAX_ITEMS];
	size_t used = 0;
	for (size_t i = 0; i < r->n_query; i++) {
		const char *parts[2] = { r->query[i].name, r->query[i].value ? r->query[i].value : "" };
		const char *enc[2];
		for (int k = 0; k < 2; k++) {
			int n = sigv4_uri_encode(parts[k], strlen(parts[k]), false, scratch + used,
						 sizeof(scratch) - used);
			if (n < 0)
				return n;
			enc[k] = scratch + used;
			used += (size_t)n + 1;
		}
		items[i].name = enc[0];
		items[i].value = enc[1];
	}
	qsort(items, r->n_query, sizeof(items[0]), qitem_cmp);
	struct sb b;
	sb_init(&b, out, out_len);
	for (size_t i = 0; i < r->n_query; i++) {
		if (i)
			sb_addc(&b, '&');
		sb_add(&b, items[i].name);
		sb_addc(&b, '=');
		sb_add(&b, items[i].value);
	}
	return sb_result(&b);
}

/* Lowercased header names with trimmed values (runs of spaces collapsed), sorted by name. */
struct hitem {
	char name[64];
	const char *value;
};

static int hitem_cmp(const void *a, const void *b)
{
	return strcmp(((const struct hitem *)a)->name, ((const struct hitem *)b)->name);
}

static int sigv4_sorted_headers(const struct sigv4_request *r, struct hitem *items)
{
	if (r->n_headers == 0 || r->n_headers > SIGV4_MAX_ITEMS)
		return -EINVAL;
	for (size_t i = 0; i < r->n_headers; i++) {
		size_t n = strlen(r->headers[i].name);
		if (n == 0 || n >= sizeof(items[i].name))
			return -EINVAL;
		for (size_t k = 0; k <= n; k++) {
			char c = r->headers[i].name[k];
			items[i].name[k] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
		}
		items[i].value = r->headers[i].value ? r->headers[i].value : "";
	}
	qsort(items, r->n_headers, sizeof(items[0]), hitem_cmp);
	for (size_t i = 1; i < r->n_headers; i++)
		if (strcmp(items[i - 1].name, items[i].name) == 0)
			return -EINVAL;
	return 0;
}

static void sb_add_trimmed(struct sb *b, const char *v)
{
	while (*v == ' ' || *v == '\t')
		v++;
	bool space = false;
	for (; *v; v++) {
		if (*v == ' ' || *v == '\t') {
			space = true;
			continue;
		}
		if (space)
			sb_addc(b, ' ');
		space = false;
		sb_addc(b, *v);
	}
}

static void sb_add_signed_headers(struct sb *b, const struct hitem *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			sb_addc(b, ';');
		sb_add(b, items[i].name);
	}
}

int sigv4_canonical_request(const struct sigv4_request *r, char *out, size_t out_len)
{
	if (!r->method || !r->path || r->path[0] != '/' || !r->payload_hash)
		return -EINVAL;
	struct hitem items[SIGV4_MAX_ITEMS];
	int rc = sigv4_sorted_headers(r, items);
	if (rc < 0)
		return rc;
	struct sb b;
	sb_init(&b, out, out_len);
	sb_add(&b, r->method);
	sb_addc(&b, '\n');
	if (!b.overflow) {
		int n = sigv4_uri_encode(r->path, strlen(r->path), true, b.p + b.len, b.cap - b.len);
		if (n < 0)
			return n;
		b.len += (size_t)n;
	}
	sb_addc(&b, '\n');
	if (!b.overflow) {
		int n = sigv4_canonical_query(r, b.p + b.len, b.cap - b.len);
		if (n < 0)
			return n;
		b.len += (size_t)n;
	}
	sb_addc(&b, '\n');
	for (size_t i = 0; i < r->n_headers; i++) {
		sb_add(&b, items[i].name);
		sb_addc(&b, ':');
		sb_add_trimmed(&b, items[i].value);
		sb_addc(&b, '\n');
	}
	sb_addc(&b, '\n');
	sb_add_signed_headers(&b, items, r->n_headers);
	sb_addc(&b, '\n');
	sb_add(&b, r->payload_hash);
	return sb_result(&b);
}

static bool sigv4_date_ok(const char *amz_date)
{
	if (!amz_date || strlen(amz_date) != 16 || amz_date[8] != 'T' || amz_date[15] != 'Z')
		return false;
	for (int i = 0; i < 15; i++)
		if (i != 8 && (amz_date[i] < '0' || amz_date[i] > '9'))
			return false;
	return true;
}

static void sb_add_scope(struct sb *b, const struct sigv4_request *r)
{
	sb_addn(b, r->amz_date, 8);
	sb_addc(b, '/');
	sb_add(b, r->region);
	sb_addc(b, '/');
	sb_add(b, r->service);
	sb_add(b, "/aws4_request");
}

int sigv4_string_to_sign(const struct sigv4_request *r, char *out, size_t out_len)
{
	if (!sigv4_date_ok(r->amz_date) || !r->region || !r->service)
		return -EINVAL;
	char creq[16384];
	int n = sigv4_canonical_request(r, creq, sizeof(creq));
	if (n < 0)
		return n;
	char hash[65];
	sigv4_sha256_hex(creq, (size_t)n, hash);
	struct sb b;
	sb_init(&b, out, out_len);
	sb_add(&b, "AWS4-HMAC-SHA256\n");
	sb_add(&b, r->amz_date);
	sb_addc(&b, '\n');
	sb_add_scope(&b, r);
	sb_addc(&b, '\n');
	sb_add(&b, hash);
	return sb_result(&b);
}

static int sigv4_hmac(const unsigned char *key, size_t key_len, const char *msg, size_t msg_len,
		      unsigned char out[32])
{
	unsigned int out_len = 0;
	if (key_len > 1024 || !HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg,
				   msg_len, out, &out_len) || out_len != 32)
		return -EIO;
	return 0;
}

int sigv4_authorization(const struct sigv4_request *r, char *out, size_t out_len)
{
	if (!r->access_key_id || !r->secret_access_key)
		return -EINVAL;
	char sts[1024];
	int n = sigv4_string_to_sign(r, sts, sizeof(sts));
	if (n < 0)
		return n;
	/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request") */
	char k0[512];
	int k0_len = snprintf(k0, sizeof(k0), "AWS4%s", r->secret_access_key);
	if (k0_len < 0 || (size_t)k0_len >= sizeof(k0))
		return -EINVAL;
	unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
	int rc = sigv4_hmac((const unsigned char *)k0, (size_t)k0_len, r->amz_date, 8, k1);
	if (!rc)
		rc = sigv4_hmac(k1, 32, r->region, strlen(r->region), k2);
	if (!rc)
		rc = sigv4_hmac(k2, 32, r->service, strlen(r->service), k3);
	if (!rc)
		rc = sigv4_hmac(k3, 32, "aws4_request", 12, k4);
	if (!rc)
		rc = sigv4_hmac(k4, 32, sts, (size_t)n, sig);
	OPENSSL_cleanse(k0, sizeof(k0));
	if (rc)
		return rc;
	char sig_hex[65];
	sigv4_hex(sig, sizeof(sig), sig_hex);

	struct hitem items[SIGV4_MAX_ITEMS];
	rc = sigv4_sorted_headers(r, items);
	if (rc < 0)
		return rc;
	struct sb b;
	sb_init(&b, out, out_len);
	sb_add(&b, "AWS4-HMAC-SHA256 Credential=");
	sb_add(&b, r->access_key_id);
	sb_addc(&b, '/');
	sb_add_scope(&b, r);
	sb_add(&b, ", SignedHeaders=");
	sb_add_signed_headers(&b, items, r->n_headers);
	sb_add(&b, ", Signature=");
	sb_add(&b, sig_hex);
	return sb_result(&b);
}
