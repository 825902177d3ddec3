/* sigv4.h -- AWS Signature Version 4 (header authorization) for S3 requests, on OpenSSL.
 * Pure functions over strings: builds the canonical request, the string to sign and the
 * Authorization header value. It does no I/O and knows nothing of HTTP clients; the S3 backend
 * (objstore_s3.c) feeds it exactly what it sends. Checked against AWS's published vectors in
 * t/objstore.c. Path encoding is S3's: every byte but A-Z a-z 0-9 - . _ ~ and '/' is
 * percent-encoded once; paths are never normalized (no dot-segment removal). */
#ifndef STRATA_SIGV4_H
#define STRATA_SIGV4_H

#include <stdbool.h>
#include <stddef.h>

#define SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct sigv4_kv {
	const char *name;
	const char *value;
};

struct sigv4_request {
	const char *method;             /* "GET", "PUT", ... */
	const char *path;               /* raw (not encoded), starts with '/' */
	const struct sigv4_kv *query;   /* raw (not encoded) names and values; any order */
	size_t n_query;
	const struct sigv4_kv *headers; /* every header to sign, names unique in any case */
	size_t n_headers;
	const char *payload_hash;       /* 64 lowercase hex, or SIGV4_UNSIGNED_PAYLOAD */
	const char *amz_date;           /* "20150830T123600Z" (also sent as x-amz-date) */
	const char *region;
	const char *service;            /* "s3" */
	const char *access_key_id;
	const char *secret_access_key;
};

/* Percent-encodes in[0, len) into out (NUL-terminated). keep_slash leaves '/' alone (paths).
 * Returns the encoded length, or -ENOSPC when out_len is too small. */
int sigv4_uri_encode(const char *in, size_t len, bool keep_slash, char *out, size_t out_len);
/* The canonical query string ("a=1&b=") of the request's query, sorted by encoded name then
 * value. The same string serves as the URL's query, so what is sent is what is signed.
 * Returns its length or -ENOSPC / -EINVAL. */
int sigv4_canonical_query(const struct sigv4_request *r, char *out, size_t out_len);
/* Each returns the length written (NUL-terminated) or -ENOSPC / -EINVAL. */
int sigv4_canonical_request(const struct sigv4_request *r, char *out, size_t out_len);
int sigv4_string_to_sign(const struct sigv4_request *r, char *out, size_t out_len);
/* "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date,
 * Signature=<64 hex>". */
int sigv4_authorization(const struct sigv4_request *r, char *out, size_t out_len);

/* Lowercase hex SHA-256 of data[0, len). */
void sigv4_sha256_hex(const void *data, size_t len, char out[65]);
void sigv4_hex(const unsigned char *bytes, size_t n, char *out); /* out: 2n+1 bytes */
/* "20150830T123600Z" for a UNIX time (UTC). */
void sigv4_amz_date(long long unix_seconds, char out[17]);

#endif
