/* t/objstore.c -- tests of the object store (tier/objstore*.c, tier/sigv4.c): SigV4 against
 * AWS's published vectors, the XML reader, key checks, the file:// backend (atomic puts under
 * concurrent readers, no temp files visible, no way out of the root), and the same
 * conformance suite against S3 when t/objstore_s3.sh provides one (s3rver behind a proxy that
 * checks every signature with botocore and injects faults):
 *   STRATA_TEST_S3_ENDPOINT   http://127.0.0.1:PORT (path style; proxy control under /__proxy/)
 *   STRATA_TEST_S3_BUCKET     the bucket
 *   STRATA_TEST_S3_VHOST_ENDPOINT  http://s3.localhost:PORT (virtual-host style), optional
 *   STRATA_TEST_S3_TLS_ENDPOINT + STRATA_TEST_S3_CA  https proxy and its CA, optional
 *   STRATA_TEST_S3_ONLY=1     skip the file backend tests
 * Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (the environment path). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "strata/common.h"
#include "objstore.h"
#include "objstore_int.h"
#include "sigv4.h"
#include "tap.h"

static void skip(const char *why)
{
	tap_n++;
	printf("ok %d # skip %s\n", tap_n, why);
	fflush(stdout);
}

static void sha256_hex_ref(const void *p, size_t n, char out[65])
{
	unsigned char d[32];
	unsigned int dl = 0;
	EVP_Digest(p, n, d, &dl, EVP_sha256(), NULL);
	static const char hx[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hx[d[i] >> 4];
		out[2 * i + 1] = hx[d[i] & 15];
	}
	out[64] = '\0';
}

static void fill_pattern(uint8_t *p, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

/* ------------------------------------------------------------------ SigV4 vectors ------ */

#define SUITE_AK "AKIDEXAMPLE"
#define SUITE_SK "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_DATE "20150830T123600Z"
#define S3DOC_AK "AKIAIOSFODNN7EXAMPLE"
#define S3DOC_SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define S3DOC_DATE "20130524T000000Z"
#define STS_TOKEN "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMic" \
	"RXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0K" \
	"PkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz" \
	"+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="

struct vec {
	const char *name;
	const char *method, *path, *ak, *sk, *date, *service;
	struct sigv4_kv query[3];
	size_t n_query;
	struct sigv4_kv headers[6];
	size_t n_headers;
	const char *body;
	const char *payload_hash; /* NULL: SHA-256 of body */
	const char *authorization;
};

/* From AWS's aws-sig-v4-test-suite (service "service", us-east-1) and the Amazon S3 API
 * reference's "Signature Calculations for the Authorization Header" examples. */
static const struct vec vectors[] = {
	{ "suite get-vanilla", "GET", "/", SUITE_AK, SUITE_SK, SUITE_DATE, "service", {}, 0,
	  { { "Host", "example.amazonaws.com" }, { "X-Amz-Date", SUITE_DATE } }, 2, "", NULL,
	  "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
	  "SignedHeaders=host;x-amz-date, "
	  "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31" },
	{ "suite get-vanilla-query-order-key-case", "GET", "/", SUITE_AK, SUITE_SK, SUITE_DATE,
	  "service", { { "Param2", "value2" }, { "Param1", "value1" } }, 2,
	  { { "Host", "example.amazonaws.com" }, { "X-Amz-Date", SUITE_DATE } }, 2, "", NULL,
	  "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
	  "SignedHeaders=host;x-amz-date, "
	  "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500" },
	{ "suite get-vanilla-query-unreserved", "GET", "/", SUITE_AK, SUITE_SK, SUITE_DATE, "service",
	  { { "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
	      "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" } }, 1,
	  { { "Host", "example.amazonaws.com" }, { "X-Amz-Date", SUITE_DATE } }, 2, "", NULL,
	  "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
	  "SignedHeaders=host;x-amz-date, "
	  "Signature=9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197" },
	{ "suite post-vanilla-query-nonunreserved", "POST", "/", SUITE_AK, SUITE_SK, SUITE_DATE,
	  "service", { { "@#$%^", "" }, { "+", "/,?><`\";:\\|][{}" } }, 2,
	  { { "Host", "example.amazonaws.com" }, { "X-Amz-Date", SUITE_DATE } }, 2, "", NULL,
	  "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
	  "SignedHeaders=host;x-amz-date, "
	  "Signature=66c82657c86e26fb25238d0e69f011edc4c6df5ae71119d7cb98ed9b87393c1e" },
	{ "suite get-unreserved", "GET",
	  "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", SUITE_AK, SUITE_SK,
	  SUITE_DATE, "service", {}, 0,
	  { { "Host", "example.amazonaws.com" }, { "X-Amz-Date", SUITE_DATE } }, 2, "", NULL,
	  "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
	  "SignedHeaders=host;x-amz-date, "
	  "Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f" },
	{ "suite get-utf8", "GET", "/\xe1\x88\xb4", SUITE_AK, SUITE_SK, SUITE_DATE, "service", {}, 0,
	  { { "Host", "example.amazonaws.com" }, { "X-Amz-Date", SUITE_DATE } }, 2, "", NULL,
	  "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
	  "SignedHeaders=host;x-amz-date, "
	  "Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85" },
	{ "suite get-header-value-trim", "GET", "/", SUITE_AK, SUITE_SK, SUITE_DATE, "service", {}, 0,
	  { { "Host", "example.amazonaws.com" }, { "My-Header1", " value1" },
	    { "My-Header2", " \"a   b   c\"" }, { "X-Amz-Date", SUITE_DATE } }, 4, "", NULL,
	  "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
	  "SignedHeaders=host;my-header1;my-header2;x-amz-date, "
	  "Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736" },
	{ "suite post-sts-header-before", "POST", "/", SUITE_AK, SUITE_SK, SUITE_DATE, "service", {}, 0,
	  { { "Host", "example.amazonaws.com" }, { "X-Amz-Date", SUITE_DATE },
	    { "X-Amz-Security-Token", STS_TOKEN } }, 3, "", NULL,
	  "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
	  "SignedHeaders=host;x-amz-date;x-amz-security-token, "
	  "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead" },
	{ "suite post-x-www-form-urlencoded", "POST", "/", SUITE_AK, SUITE_SK, SUITE_DATE, "service",
	  {}, 0, { { "Content-Type", "application/x-www-form-urlencoded" },
		   { "Host", "example.amazonaws.com" }, { "X-Amz-Date", SUITE_DATE } }, 3,
	  "Param1=value1", NULL,
	  "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
	  "SignedHeaders=content-type;host;x-amz-date, "
	  "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a" },
	{ "s3 doc GET object (range)", "GET", "/test.txt", S3DOC_AK, S3DOC_SK, S3DOC_DATE, "s3", {}, 0,
	  { { "Host", "examplebucket.s3.amazonaws.com" }, { "Range", "bytes=0-9" },
	    { "x-amz-content-sha256", SIGV4_EMPTY_SHA256 }, { "x-amz-date", S3DOC_DATE } }, 4, "",
	  SIGV4_EMPTY_SHA256,
	  "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
	  "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
	  "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41" },
	{ "s3 doc PUT object (test$file.text)", "PUT", "/test$file.text", S3DOC_AK, S3DOC_SK,
	  S3DOC_DATE, "s3", {}, 0,
	  { { "Date", "Fri, 24 May 2013 00:00:00 GMT" }, { "Host", "examplebucket.s3.amazonaws.com" },
	    { "x-amz-content-sha256", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072" },
	    { "x-amz-date", S3DOC_DATE }, { "x-amz-storage-class", "REDUCED_REDUNDANCY" } }, 5,
	  "Welcome to Amazon S3.", NULL,
	  "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
	  "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
	  "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd" },
	{ "s3 doc GET bucket lifecycle", "GET", "/", S3DOC_AK, S3DOC_SK, S3DOC_DATE, "s3",
	  { { "lifecycle", "" } }, 1,
	  { { "Host", "examplebucket.s3.amazonaws.com" },
	    { "x-amz-content-sha256", SIGV4_EMPTY_SHA256 }, { "x-amz-date", S3DOC_DATE } }, 3, "",
	  SIGV4_EMPTY_SHA256,
	  "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
	  "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
	  "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543" },
	{ "s3 doc GET bucket (list objects)", "GET", "/", S3DOC_AK, S3DOC_SK, S3DOC_DATE, "s3",
	  { { "prefix", "J" }, { "max-keys", "2" } }, 2,
	  { { "Host", "examplebucket.s3.amazonaws.com" },
	    { "x-amz-content-sha256", SIGV4_EMPTY_SHA256 }, { "x-amz-date", S3DOC_DATE } }, 3, "",
	  SIGV4_EMPTY_SHA256,
	  "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
	  "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
	  "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7" },
};

static void make_sr(const struct vec *v, struct sigv4_request *sr, char hash[65])
{
	if (v->payload_hash)
		snprintf(hash, 65, "%s", v->payload_hash);
	else
		sigv4_sha256_hex(v->body, strlen(v->body), hash);
	*sr = (struct sigv4_request){
		.method = v->method, .path = v->path, .query = v->query, .n_query = v->n_query,
		.headers = v->headers, .n_headers = v->n_headers, .payload_hash = hash,
		.amz_date = v->date, .region = "us-east-1", .service = v->service,
		.access_key_id = v->ak, .secret_access_key = v->sk,
	};
}

static void test_sigv4(void)
{
	for (size_t i = 0; i < ST_ARRAY_LEN(vectors); i++) {
		const struct vec *v = &vectors[i];
		struct sigv4_request sr;
		char hash[65], auth[1024];
		make_sr(v, &sr, hash);
		int n = sigv4_authorization(&sr, auth, sizeof(auth));
		ok(n > 0 && strcmp(auth, v->authorization) == 0, "sigv4 %s", v->name);
		if (n <= 0 || strcmp(auth, v->authorization) != 0)
			tap_diag("got  %s\nwant %s", n > 0 ? auth : "(error)", v->authorization);
	}

	/* Intermediate steps, from the same sources. */
	struct sigv4_request sr;
	char hash[65], buf[2048];
	make_sr(&vectors[0], &sr, hash);
	int n = sigv4_canonical_request(&sr, buf, sizeof(buf));
	ok(n > 0 && strcmp(buf, "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
			   "host;x-amz-date\n" SIGV4_EMPTY_SHA256) == 0,
	   "get-vanilla canonical request");
	n = sigv4_string_to_sign(&sr, buf, sizeof(buf));
	ok(n > 0 && strcmp(buf, "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
			   "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63") == 0,
	   "get-vanilla string to sign");
	make_sr(&vectors[10], &sr, hash); /* PUT test$file.text */
	n = sigv4_canonical_request(&sr, buf, sizeof(buf));
	ok(n > 0 && strstr(buf, "PUT\n/test%24file.text\n\n") == buf, "s3 canonical path encodes '$' once");
	make_sr(&vectors[9], &sr, hash);
	n = sigv4_string_to_sign(&sr, buf, sizeof(buf));
	ok(n > 0 && strstr(buf, "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"),
	   "s3 GET object string to sign");
	n = sigv4_canonical_request(&sr, buf, 40);
	is_int(n, -ENOSPC, "a short buffer is -ENOSPC, not a truncated request");

	char enc[256];
	n = sigv4_uri_encode("a b/c+d=e~f%", 12, true, enc, sizeof(enc));
	ok(n > 0 && strcmp(enc, "a%20b/c%2Bd%3De~f%25") == 0, "uri encode keeps '/' in paths (%s)", enc);
	n = sigv4_uri_encode("a/b", 3, false, enc, sizeof(enc));
	ok(n > 0 && strcmp(enc, "a%2Fb") == 0, "uri encode encodes '/' in query values");
	char ad[17];
	sigv4_amz_date(1440938160, ad);
	ok(strcmp(ad, SUITE_DATE) == 0, "amz date of 2015-08-30T12:36:00Z");
	char h[65];
	sigv4_sha256_hex("abc", 3, h);
	ok(strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0, "sha256(abc)");
}

static void test_xml(void)
{
	const char *x = "<?xml version=\"1.0\"?><ListBucketResult><KeyCount>2</KeyCount>"
			"<Contents><Key>a&amp;b&lt;&gt;&quot;&apos;&#65;&#x42;&#xe9;</Key><Size>10</Size></Contents>"
			"<Contents><Key>second</Key><Size>7</Size></Contents>"
			"<IsTruncated>true</IsTruncated><NextContinuationToken>tok/+=</NextContinuationToken>"
			"</ListBucketResult>";
	size_t len = strlen(x);
	char out[64];
	is_int(objstore_xml_text(x, len, 0, "Key", out, sizeof(out)), 1, "xml: first Key found");
	ok(strcmp(out, "a&b<>\"'AB\xc3\xa9") == 0, "xml: entities decoded (%s)", out);
	is_int(objstore_xml_text(x, len, 0, "KeyCount", out, sizeof(out)), 1, "xml: KeyCount is not Key");
	ok(strcmp(out, "2") == 0, "xml: KeyCount text");
	size_t s, e;
	ok(objstore_xml_find(x, len, 0, "Contents", &s, &e) == 1, "xml: first Contents");
	ok(objstore_xml_find(x, len, e, "Contents", &s, &e) == 1, "xml: second Contents");
	is_int(objstore_xml_text(x, e, s, "Key", out, sizeof(out)), 1, "xml: Key inside the second");
	ok(strcmp(out, "second") == 0, "xml: second key text");
	ok(objstore_xml_find(x, len, e, "Contents", &s, &e) == 0, "xml: no third Contents");
	is_int(objstore_xml_text(x, len, 0, "NextContinuationToken", out, 4), -ENOSPC,
	       "xml: text longer than the buffer is -ENOSPC");
	is_int(objstore_xml_text(x, len, 0, "Missing", out, sizeof(out)), 0, "xml: missing tag");
	const char *bad = "<Key>x&bogus;</Key>";
	is_int(objstore_xml_text(bad, strlen(bad), 0, "Key", out, sizeof(out)), -EINVAL, "xml: bad entity");
	const char *cut = "<Key>unterminated";
	is_int(objstore_xml_text(cut, strlen(cut), 0, "Key", out, sizeof(out)), 0, "xml: no closing tag");
}

static void test_keys(void)
{
	static const char *const good[] = { "a", "t/abc/topic-1/0/00000000000000000000.log",
					    "a.b/c_d/e~f=g+h,i@j", "..x/y", ".hidden/x" };
	static const char *const bad[] = { "", "/abs", "a//b", "a/", "./a", "a/./b", "a/../b", "..",
					   "a b", "a\\b", "a\nb", "x/.objstore-tmp-1234", "\xc3\xa9" };
	for (size_t i = 0; i < ST_ARRAY_LEN(good); i++)
		ok(objstore_key_valid(good[i]), "key valid: %s", good[i]);
	for (size_t i = 0; i < ST_ARRAY_LEN(bad); i++) {
		char shown[64];
		size_t n = 0;
		for (const char *c = bad[i]; *c && n + 1 < sizeof(shown); c++)
			shown[n++] = (*c > ' ' && *c < 127) ? *c : '?';
		shown[n] = '\0';
		ok(!objstore_key_valid(bad[i]), "key invalid: [%s]", shown);
	}
	char longkey[OBJSTORE_KEY_MAX + 2];
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	ok(!objstore_key_valid(longkey), "key longer than OBJSTORE_KEY_MAX is invalid");
	char deep[200] = "";
	for (int i = 0; i < OBJSTORE_DEPTH_MAX + 1; i++)
		strncat(deep, i ? "/d" : "d", sizeof(deep) - strlen(deep) - 1);
	ok(!objstore_key_valid(deep), "key deeper than OBJSTORE_DEPTH_MAX is invalid");
}

/* ------------------------------------------------------------------ conformance -------- */

struct collected {
	char keys[64][256];
	int64_t sizes[64];
	int n;
	int stop_after;
};

static int collect_fn(void *ctx, const char *key, int64_t size)
{
	struct collected *c = ctx;
	if (c->n < 64) {
		snprintf(c->keys[c->n], sizeof(c->keys[c->n]), "%s", key);
		c->sizes[c->n] = size;
	}
	c->n++;
	if (c->stop_after && c->n >= c->stop_after)
		return 7;
	return 0;
}

static bool list_is(struct objstore *os, const char *prefix, const char *const *want, int n_want)
{
	struct collected c = { .n = 0 };
	int rc = objstore_list(os, prefix, collect_fn, &c);
	bool same = rc == 0 && c.n == n_want;
	for (int i = 0; same && i < n_want; i++)
		same = strcmp(c.keys[i], want[i]) == 0;
	if (!same) {
		tap_diag("list(%s) rc=%d n=%d, want %d:", prefix, rc, c.n, n_want);
		for (int i = 0; i < c.n && i < 64; i++)
			tap_diag("  got %s", c.keys[i]);
	}
	return same;
}

static int tmpfile_with(const void *p, size_t n)
{
	char path[] = "/tmp/objstore-src.XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		BAIL_OUT("mkstemp: %s", strerror(errno));
	unlink(path);
	const uint8_t *b = p;
	size_t done = 0;
	while (done < n) {
		ssize_t w = write(fd, b + done, n - done);
		if (w <= 0)
			BAIL_OUT("write: %s", strerror(errno));
		done += (size_t)w;
	}
	return fd;
}

/* The behaviour every backend must share. ns: a fresh namespace for this run's keys.
 * s3rver: skip what s3rver (not S3) gets wrong: it answers a range of an empty object with
 * 206 and a byte it never sends (S3: 416), and lists in its directory walk's order (S3: byte
 * order). */
static void conformance(struct objstore *os, const char *label, const char *ns, bool s3rver)
{
	char k1[256], k[256], buf[64];
	snprintf(k1, sizeof(k1), "%s/a/b/obj1", ns);
	is_int(objstore_put(os, k1, "hello world", 11), 0, "%s: put", label);
	is_int(objstore_head(os, k1), 11, "%s: head is the size", label);
	uint8_t *data = NULL;
	size_t len = 0;
	is_int(objstore_get(os, k1, 1 << 20, &data, &len), 0, "%s: get", label);
	ok(len == 11 && data && memcmp(data, "hello world", 11) == 0, "%s: get returns the object", label);
	free(data);
	is_int(objstore_get(os, k1, 10, &data, &len), -EFBIG, "%s: get beyond max_len is -EFBIG", label);
	ok(data == NULL, "%s: nothing returned on -EFBIG", label);

	memset(buf, 0, sizeof(buf));
	is_int(objstore_get_range(os, k1, 6, 5, buf, sizeof(buf)), 5, "%s: range read", label);
	ok(memcmp(buf, "world", 5) == 0, "%s: range bytes", label);
	is_int(objstore_get_range(os, k1, 0, 3, buf, sizeof(buf)), 3, "%s: range at 0", label);
	ok(memcmp(buf, "hel", 3) == 0, "%s: range at 0 bytes", label);
	is_int(objstore_get_range(os, k1, 6, 0, buf, sizeof(buf)), 5, "%s: len 0 reads to the end", label);
	is_int(objstore_get_range(os, k1, 4, 0, buf, 3), 3, "%s: len 0 stops at buf_len", label);
	ok(memcmp(buf, "o w", 3) == 0, "%s: len 0 bytes", label);
	is_int(objstore_get_range(os, k1, 8, 10, buf, sizeof(buf)), 3, "%s: short read at the end", label);
	is_int(objstore_get_range(os, k1, 11, 4, buf, sizeof(buf)), 0, "%s: offset == size reads 0", label);
	is_int(objstore_get_range(os, k1, 500, 4, buf, sizeof(buf)), 0, "%s: offset past the end reads 0", label);
	is_int(objstore_get_range(os, k1, 0, 100, buf, 10), -EINVAL, "%s: len > buf_len is -EINVAL", label);

	is_int(objstore_put(os, k1, "replaced!", 9), 0, "%s: overwrite", label);
	is_int(objstore_get(os, k1, 100, &data, &len), 0, "%s: get after overwrite", label);
	ok(len == 9 && memcmp(data, "replaced!", 9) == 0, "%s: the new content", label);
	free(data);

	snprintf(k, sizeof(k), "%s/missing/key", ns);
	is_int(objstore_head(os, k), -ENOENT, "%s: head of a missing key", label);
	is_int(objstore_get(os, k, 100, &data, &len), -ENOENT, "%s: get of a missing key", label);
	is_int(objstore_get_range(os, k, 0, 4, buf, sizeof(buf)), -ENOENT, "%s: range of a missing key", label);
	is_int(objstore_delete(os, k), 0, "%s: delete of a missing key succeeds", label);

	is_int(objstore_delete(os, k1), 0, "%s: delete", label);
	is_int(objstore_head(os, k1), -ENOENT, "%s: gone after delete", label);
	is_int(objstore_delete(os, k1), 0, "%s: delete again", label);

	snprintf(k, sizeof(k), "%s/empty", ns);
	is_int(objstore_put(os, k, NULL, 0), 0, "%s: put of an empty object", label);
	is_int(objstore_head(os, k), 0, "%s: empty object's size", label);
	is_int(objstore_get(os, k, 100, &data, &len), 0, "%s: get of an empty object", label);
	ok(len == 0 && data != NULL, "%s: empty object, non-NULL buffer", label);
	free(data);
	if (s3rver)
		skip("s3rver hangs on a range of an empty object");
	else
		is_int(objstore_get_range(os, k, 0, 4, buf, sizeof(buf)), 0, "%s: range of an empty object",
		       label);

	snprintf(k, sizeof(k), "%s/sp/a=b+c,d@e~f", ns);
	is_int(objstore_put(os, k, "odd", 3), 0, "%s: put of a key with = + , @ ~", label);
	is_int(objstore_head(os, k), 3, "%s: head of that key", label);

	/* Listing: byte order ('-' < '/' < 'b'), prefixes that end inside a segment. */
	static const char *const names[] = { "l/a", "l/b/c", "l/b-d", "l/bb", "m" };
	for (size_t i = 0; i < ST_ARRAY_LEN(names); i++) {
		snprintf(k, sizeof(k), "%s/%s", ns, names[i]);
		if (objstore_put(os, k, names[i], strlen(names[i])) != 0)
			tap_diag("put %s failed", k);
	}
	char w[4][256], p[256];
	const char *want[4] = { w[0], w[1], w[2], w[3] };
	snprintf(w[0], 256, "%s/l/a", ns);
	snprintf(w[1], 256, "%s/l/b-d", ns);
	snprintf(w[2], 256, "%s/l/b/c", ns);
	snprintf(w[3], 256, "%s/l/bb", ns);
	if (s3rver) {
		/* s3rver's order: "b/c" before "b-d". */
		snprintf(w[1], 256, "%s/l/b/c", ns);
		snprintf(w[2], 256, "%s/l/b-d", ns);
	}
	snprintf(p, sizeof(p), "%s/l/", ns);
	ok(list_is(os, p, want, 4), "%s: list of a directory-like prefix, in byte order", label);
	snprintf(p, sizeof(p), "%s/l/b", ns);
	ok(list_is(os, p, want + 1, 3), "%s: list of a prefix inside a segment", label);
	snprintf(p, sizeof(p), "%s/l/zzz", ns);
	ok(list_is(os, p, NULL, 0), "%s: list of a prefix with no keys", label);
	snprintf(p, sizeof(p), "%s/nothing/here/", ns);
	ok(list_is(os, p, NULL, 0), "%s: list of a missing directory", label);
	struct collected c = { .n = 0, .stop_after = 2 };
	snprintf(p, sizeof(p), "%s/l/", ns);
	is_int(objstore_list(os, p, collect_fn, &c), 7, "%s: list returns what stopped it", label);
	is_int(c.n, 2, "%s: list stopped after two keys", label);
	c = (struct collected){ .n = 0 };
	snprintf(p, sizeof(p), "%s/", ns);
	is_int(objstore_list(os, p, collect_fn, &c), 0, "%s: list of the namespace", label);
	bool sizes_ok = c.n == 7;
	for (int i = 0; i < c.n && i < 64; i++) {
		const char *tail = c.keys[i] + strlen(ns) + 1;
		if (strcmp(tail, "empty") == 0)
			sizes_ok = sizes_ok && c.sizes[i] == 0;
		else if (strncmp(tail, "sp/", 3) != 0)
			sizes_ok = sizes_ok && c.sizes[i] == (int64_t)strlen(tail);
	}
	ok(sizes_ok, "%s: list reports every key with its size (%d keys)", label, c.n);

	/* Files: the hash out, the bytes back. */
	snprintf(k, sizeof(k), "%s/file/abc", ns);
	int fd = tmpfile_with("abc", 3);
	char sha[65] = "";
	is_int(objstore_put_file(os, k, fd, 3, sha), 0, "%s: put_file", label);
	ok(strcmp(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0,
	   "%s: put_file reports the payload's SHA-256", label);
	close(fd);
	size_t big_len = (3u << 20) + 4321;
	uint8_t *big = malloc(big_len);
	fill_pattern(big, big_len, 42);
	fd = tmpfile_with(big, big_len + 0);
	snprintf(k, sizeof(k), "%s/file/big", ns);
	is_int(objstore_put_file(os, k, fd, (int64_t)big_len - 1000, sha), 0,
	       "%s: put_file of the first size bytes of a file", label);
	char ref[65];
	sha256_hex_ref(big, big_len - 1000, ref);
	ok(strcmp(sha, ref) == 0, "%s: its SHA-256", label);
	is_int(objstore_get(os, k, big_len, &data, &len), 0, "%s: get it back", label);
	ok(len == big_len - 1000 && memcmp(data, big, len) == 0, "%s: same bytes", label);
	free(data);
	uint8_t *slice = malloc(1 << 20);
	is_int(objstore_get_range(os, k, 1000000, 1 << 20, slice, 1 << 20), 1 << 20, "%s: 1 MiB range", label);
	ok(memcmp(slice, big + 1000000, 1 << 20) == 0, "%s: range bytes of a big object", label);
	free(slice);
	close(fd);
	free(big);

	for (size_t i = 0; i < 3; i++) {
		static const char *const bad[] = { "../etc/passwd", "/abs", "a//b" };
		is_int(objstore_put(os, bad[i], "x", 1), -EINVAL, "%s: put refuses key %s", label, bad[i]);
	}
	is_int(objstore_get_range(os, "../x", 0, 1, buf, 1), -EINVAL, "%s: get refuses '..'", label);
	is_int(objstore_list(os, "/abs", collect_fn, &c), -EINVAL, "%s: list refuses '/abs'", label);
}

/* Readers must see either the old or the new object, whole, while a writer replaces it. */
struct race {
	struct objstore *os;
	const char *key;
	int rounds;
	int bad;
	int errors;
	int tmp_seen;
	volatile int done;
};

static void race_content(uint8_t *p, size_t n, uint8_t fill)
{
	memset(p, fill, n);
	st_put_be64(p, n);
}

static void *race_writer(void *arg)
{
	struct race *r = arg;
	uint8_t *a = malloc(300000), *b = malloc(70000);
	race_content(a, 300000, 'A');
	race_content(b, 70000, 'B');
	for (int i = 0; i < r->rounds; i++) {
		int rc = (i & 1) ? objstore_put(r->os, r->key, b, 70000) : objstore_put(r->os, r->key, a, 300000);
		if (rc != 0)
			r->errors++;
	}
	free(a);
	free(b);
	r->done = 1;
	return NULL;
}

static int race_list_fn(void *ctx, const char *key, int64_t size)
{
	struct race *r = ctx;
	if (strstr(key, "objstore-tmp"))
		r->tmp_seen++;
	return 0;
}

static void *race_reader(void *arg)
{
	struct race *r = arg;
	for (int i = 0; i < 100000 && !r->done; i++) {
		uint8_t *d = NULL;
		size_t n = 0;
		int rc = objstore_get(r->os, r->key, 1 << 20, &d, &n);
		if (rc == 0) {
			bool whole = n >= 8 && st_be64(d) == n && (d[n - 1] == 'A' || d[n - 1] == 'B');
			for (size_t k = 8; whole && k < n; k++)
				whole = d[k] == d[n - 1];
			if (!whole)
				r->bad++;
		} else if (rc != -ENOENT) {
			r->errors++;
		}
		free(d);
		if (objstore_list(r->os, "", race_list_fn, r) != 0)
			r->errors++;
	}
	return NULL;
}

static void atomicity(struct objstore *os, const char *label, const char *key, int rounds)
{
	struct race r = { .os = os, .key = key, .rounds = rounds };
	pthread_t w, rd;
	pthread_create(&w, NULL, race_writer, &r);
	pthread_create(&rd, NULL, race_reader, &r);
	pthread_join(w, NULL);
	pthread_join(rd, NULL);
	is_int(r.errors, 0, "%s: no errors while replacing an object under readers", label);
	is_int(r.bad, 0, "%s: readers saw only whole objects", label);
	is_int(r.tmp_seen, 0, "%s: list never showed a temp file", label);
}

/* ------------------------------------------------------------------ file backend ------- */

static int count_tmp_files(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strncmp(de->d_name, OBJSTORE_TMP_PREFIX, strlen(OBJSTORE_TMP_PREFIX)) == 0)
			n++;
	closedir(d);
	return n;
}

struct churn {
	struct objstore *os;
	int put_errors;
	volatile int stop;
};

static void *churn_put(void *arg)
{
	struct churn *c = arg;
	for (int i = 0; i < 400; i++)
		if (objstore_put(c->os, "race/dir/k", "v", 1) != 0)
			c->put_errors++;
	c->stop = 1;
	return NULL;
}

static void *churn_del(void *arg)
{
	struct churn *c = arg;
	for (int i = 0; i < 100000 && !c->stop; i++)
		objstore_delete(c->os, "race/dir/k");
	return NULL;
}

static char cleanup_root[64];

static void remove_root(void)
{
	if (!cleanup_root[0])
		return;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cleanup_root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", cleanup_root);
	cleanup_root[0] = '\0';
}

static void test_file_backend(void)
{
	char root[] = "/tmp/objstore-test.XXXXXX";
	if (!mkdtemp(root))
		BAIL_OUT("mkdtemp: %s", strerror(errno));
	snprintf(cleanup_root, sizeof(cleanup_root), "%s", root);
	atexit(remove_root); /* also after a BAIL_OUT */
	char url[1024], path[1024];
	struct objstore_config cfg;
	objstore_config_defaults(&cfg);
	struct objstore *os = NULL;

	cfg.url = "file://relative/path";
	is_int(objstore_open(&cfg, &os), -EINVAL, "file: a relative path is refused");
	cfg.url = "ftp://x/y";
	is_int(objstore_open(&cfg, &os), -EINVAL, "an unknown scheme is refused");
	snprintf(url, sizeof(url), "file://%s/bucket/", root);
	cfg.url = url;
	is_int(objstore_open(&cfg, &os), 0, "file: open creates the root");
	if (!os)
		BAIL_OUT("cannot open %s", url);
	ok(strcmp(objstore_url(os), url) == 0, "file: objstore_url");

	conformance(os, "file", "conf", false);
	atomicity(os, "file", "race/obj", 300);

	char bucket[600];
	snprintf(bucket, sizeof(bucket), "%s/bucket", root);
	/* A crash leftover: a temp file is not an object and never listed. */
	snprintf(path, sizeof(path), "%s/conf/l/" OBJSTORE_TMP_PREFIX "0123456789abcdef", bucket);
	int fd = open(path, O_CREAT | O_WRONLY, 0644);
	ok(fd >= 0 && write(fd, "junk", 4) == 4, "file: plant a temp file");
	close(fd);
	struct collected c = { .n = 0 };
	objstore_list(os, "conf/l/", collect_fn, &c);
	is_int(c.n, 4, "file: the temp file is not listed");
	ok(access(path, F_OK) == 0, "file: a fresh temp file is left alone (a put may own it)");
	struct timespec old[2] = { { .tv_sec = 1000000000 }, { .tv_sec = 1000000000 } };
	utimensat(AT_FDCWD, path, old, 0);
	objstore_list(os, "conf/", collect_fn, &c);
	ok(access(path, F_OK) != 0, "file: list removes a stale temp file");

	/* Directories: made on put, removed when a delete leaves them empty. */
	is_int(objstore_put(os, "deep/x/y/z", "1", 1), 0, "file: put deep");
	snprintf(path, sizeof(path), "%s/deep/x/y", bucket);
	ok(access(path, F_OK) == 0, "file: directories made");
	is_int(objstore_delete(os, "deep/x/y/z"), 0, "file: delete deep");
	snprintf(path, sizeof(path), "%s/deep", bucket);
	ok(access(path, F_OK) != 0, "file: empty directories removed");
	ok(access(bucket, F_OK) == 0, "file: the root stays");

	/* A key cannot be both an object and a "directory". */
	is_int(objstore_put(os, "fd", "f", 1), 0, "file: put fd");
	ok(objstore_put(os, "fd/x", "x", 1) < 0, "file: put under an object fails");
	is_int(objstore_put(os, "dd/x", "x", 1), 0, "file: put dd/x");
	ok(objstore_put(os, "dd", "d", 1) < 0, "file: put over a directory fails");
	is_int(objstore_head(os, "dd"), -ENOENT, "file: a directory is not an object");
	is_int(objstore_head(os, "fd"), 1, "file: fd intact");
	is_int(objstore_head(os, "dd/x"), 1, "file: dd/x intact");
	is_int(count_tmp_files(bucket), 0, "file: failed puts leave no temp file");

	/* Symlinks lead nowhere: nothing outside the root is reachable. */
	char outside[600];
	snprintf(outside, sizeof(outside), "%s/outside", root);
	mkdir(outside, 0755);
	snprintf(path, sizeof(path), "%s/secret", outside);
	fd = open(path, O_CREAT | O_WRONLY, 0644);
	ok(fd >= 0 && write(fd, "secret", 6) == 6, "file: a file outside the root");
	close(fd);
	mkdir(bucket, 0755);
	snprintf(path, sizeof(path), "%s/link", bucket);
	ok(symlink(outside, path) == 0, "file: a symlink to it inside the root");
	uint8_t *data = NULL;
	size_t len = 0;
	ok(objstore_get(os, "link/secret", 100, &data, &len) < 0, "file: get through a symlink fails");
	free(data);
	ok(objstore_head(os, "link/secret") < 0, "file: head through a symlink fails");
	ok(objstore_put(os, "link/new", "x", 1) < 0, "file: put through a symlink fails");
	snprintf(path, sizeof(path), "%s/new", outside);
	ok(access(path, F_OK) != 0, "file: nothing written outside the root");
	snprintf(path, sizeof(path), "%s/filelink", bucket);
	snprintf(url, sizeof(url), "%s/secret", outside);
	ok(symlink(url, path) == 0, "file: a symlinked file inside the root");
	ok(objstore_get(os, "filelink", 100, &data, &len) < 0, "file: a symlinked file is not an object");
	free(data);
	c = (struct collected){ .n = 0 };
	objstore_list(os, "", collect_fn, &c);
	bool leaked = false;
	for (int i = 0; i < c.n && i < 64; i++)
		leaked = leaked || strstr(c.keys[i], "link");
	ok(!leaked, "file: list does not follow symlinks");

	/* A source file shorter than the size asked for: an error and no object. */
	fd = tmpfile_with("short", 5);
	is_int(objstore_put_file(os, "short", fd, 100, NULL), -EIO, "file: put_file of a short file");
	close(fd);
	is_int(objstore_head(os, "short"), -ENOENT, "file: no object from a failed put");
	is_int(count_tmp_files(bucket), 0, "file: and no temp file");

	/* Put and delete racing in one directory: delete prunes the directory, put retries. */
	struct churn ch = { .os = os };
	pthread_t t1, t2;
	pthread_create(&t1, NULL, churn_put, &ch);
	pthread_create(&t2, NULL, churn_del, &ch);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	is_int(ch.put_errors, 0, "file: puts never fail while deletes prune their directory");

	objstore_close(os);

	/* A second store on the same root sees the same objects (it is just a directory). */
	snprintf(url, sizeof(url), "file://%s/bucket", root);
	cfg.url = url;
	is_int(objstore_open(&cfg, &os), 0, "file: reopen");
	is_int(objstore_head(os, "fd"), 1, "file: objects persist");
	objstore_close(os);

	remove_root();
}

/* ------------------------------------------------------------------ S3 ----------------- */

static const char *s3_endpoint, *s3_bucket;

struct proxy_buf {
	char text[4096];
	size_t len;
};

static size_t proxy_write(char *p, size_t size, size_t n, void *ud)
{
	struct proxy_buf *b = ud;
	size_t take = ST_MIN(size * n, sizeof(b->text) - 1 - b->len);
	memcpy(b->text + b->len, p, take);
	b->len += take;
	b->text[b->len] = '\0';
	return size * n;
}

/* Sends a control request to the proxy (not through objstore). */
static int proxy_cmd(const char *endpoint, const char *method, const char *path_query,
		     struct proxy_buf *out)
{
	char url[1024];
	snprintf(url, sizeof(url), "%s%s", endpoint, path_query);
	CURL *h = curl_easy_init();
	if (!h)
		return -1;
	out->len = 0;
	out->text[0] = '\0';
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, proxy_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	if (getenv("STRATA_TEST_S3_CA"))
		curl_easy_setopt(h, CURLOPT_CAINFO, getenv("STRATA_TEST_S3_CA"));
	CURLcode cc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	return cc == CURLE_OK && status == 200 ? 0 : -1;
}

static long long stat_of(const char *endpoint, const char *name)
{
	struct proxy_buf b;
	if (proxy_cmd(endpoint, "GET", "/__proxy/stats", &b) != 0)
		return -1;
	size_t n = strlen(name);
	for (const char *p = b.text; p && *p;) {
		if (strncmp(p, name, n) == 0 && p[n] == ' ')
			return strtoll(p + n + 1, NULL, 10);
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -1;
}

static void fault(const char *query)
{
	struct proxy_buf b;
	char pq[512];
	snprintf(pq, sizeof(pq), "/__proxy/fault?%s", query);
	if (proxy_cmd(s3_endpoint, "POST", pq, &b) != 0)
		tap_diag("fault injection %s failed", query);
}

static void faults_clear(void)
{
	struct proxy_buf b;
	proxy_cmd(s3_endpoint, "POST", "/__proxy/clear", &b);
}

static struct objstore *s3_open_with(const char *endpoint, const char *prefix, bool path_style,
				     void (*tweak)(struct objstore_config *))
{
	static char url[512];
	snprintf(url, sizeof(url), "s3://%s/%s", s3_bucket, prefix);
	struct objstore_config cfg;
	objstore_config_defaults(&cfg);
	cfg.url = url;
	cfg.endpoint = endpoint;
	cfg.path_style = path_style;
	cfg.retry_base_ms = 5; /* quick backoff: the test waits for every retry */
	cfg.max_retries = 4;
	if (tweak)
		tweak(&cfg);
	struct objstore *os = NULL;
	int rc = objstore_open(&cfg, &os);
	if (rc != 0)
		tap_diag("objstore_open(%s at %s): %d", url, endpoint, rc);
	return os;
}

static void tweak_multipart(struct objstore_config *cfg)
{
	cfg->multipart_threshold_bytes = 5 << 20;
	cfg->multipart_part_bytes = 5 << 20;
}
static void tweak_mp_fragile(struct objstore_config *cfg)
{
	tweak_multipart(cfg);
	cfg->max_retries = 1;
}
static void tweak_short_timeout(struct objstore_config *cfg) { cfg->timeout_ms = 2000; }
static void tweak_two_retries(struct objstore_config *cfg) { cfg->max_retries = 2; }
static void tweak_wrong_secret(struct objstore_config *cfg) { cfg->secret_access_key = "WRONG-SECRET"; }
static void tweak_token(struct objstore_config *cfg) { cfg->session_token = "FQoGZXIvYXdz/token+with=odd/chars"; }
static void tweak_one_conn(struct objstore_config *cfg) { cfg->max_connections = 1; }
static void tweak_two_conns(struct objstore_config *cfg) { cfg->max_connections = 2; }
static void tweak_tls(struct objstore_config *cfg)
{
	cfg->ca_file = getenv("STRATA_TEST_S3_CA");
	cfg->unsigned_payload = true;
	tweak_multipart(cfg);
}

struct par {
	struct objstore *os;
	int id;
	int errors;
};

static void *par_worker(void *arg)
{
	struct par *p = arg;
	char key[64], val[64];
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "par/%d/%d", p->id, i);
		int n = snprintf(val, sizeof(val), "value-%d-%d", p->id, i);
		uint8_t *d = NULL;
		size_t len = 0;
		if (objstore_put(p->os, key, val, (size_t)n) != 0 ||
		    objstore_get(p->os, key, 100, &d, &len) != 0 || len != (size_t)n ||
		    memcmp(d, val, (size_t)n) != 0)
			p->errors++;
		free(d);
	}
	return NULL;
}

static void test_s3(void)
{
	s3_endpoint = getenv("STRATA_TEST_S3_ENDPOINT");
	s3_bucket = getenv("STRATA_TEST_S3_BUCKET");
	if (!s3_endpoint || !s3_bucket) {
		skip("s3: no STRATA_TEST_S3_ENDPOINT (t/objstore_s3.sh runs these against s3rver)");
		return;
	}
	char ns[64];
	snprintf(ns, sizeof(ns), "run-%d", (int)getpid());
	faults_clear();
	is_int(stat_of(s3_endpoint, "mismatch"), 0, "s3: the proxy has rejected nothing yet");

	struct objstore *os = s3_open_with(s3_endpoint, "pfx/strata", true, NULL);
	ok(os != NULL, "s3: open (path style, credentials from the environment)");
	if (!os)
		return;
	/* (No atomicity test here: s3rver writes objects in place, S3 does not.) */
	conformance(os, "s3 path-style", ns, true);

	/* Keys are relative to the URL's prefix: a store without it sees them under pfx/strata/. */
	struct objstore *root = s3_open_with(s3_endpoint, "", true, NULL);
	char k[256];
	snprintf(k, sizeof(k), "pfx/strata/%s/empty", ns);
	is_int(objstore_head(root, k), 0, "s3: the URL's prefix is part of the object's name");
	objstore_close(root);

	const char *vhost = getenv("STRATA_TEST_S3_VHOST_ENDPOINT");
	if (vhost) {
		struct objstore *vs = s3_open_with(vhost, "vh", false, NULL);
		ok(vs != NULL, "s3: open (virtual-host style)");
		if (vs) {
			conformance(vs, "s3 virtual-host", ns, true);
			objstore_close(vs);
		}
	} else {
		skip("s3: no STRATA_TEST_S3_VHOST_ENDPOINT");
	}

	/* Multipart: 5 MiB parts, an object of three parts (the last one short). */
	struct objstore *mp = s3_open_with(s3_endpoint, "mp", true, tweak_multipart);
	size_t big_len = (12u << 20) + 12345;
	uint8_t *big = malloc(big_len);
	fill_pattern(big, big_len, 7);
	int fd = tmpfile_with(big, big_len);
	long long parts0 = stat_of(s3_endpoint, "parts"), completes0 = stat_of(s3_endpoint, "completes");
	char sha[65] = "", ref[65];
	snprintf(k, sizeof(k), "%s/big", ns);
	is_int(objstore_put_file(mp, k, fd, (int64_t)big_len, sha), 0, "s3: multipart put_file");
	sha256_hex_ref(big, big_len, ref);
	ok(strcmp(sha, ref) == 0, "s3: multipart put_file reports the whole object's SHA-256");
	is_int(stat_of(s3_endpoint, "parts") - parts0, 3, "s3: three parts uploaded");
	is_int(stat_of(s3_endpoint, "completes") - completes0, 1, "s3: one CompleteMultipartUpload");
	is_int(objstore_head(mp, k), (long long)big_len, "s3: multipart object's size");
	uint8_t *data = NULL;
	size_t len = 0;
	is_int(objstore_get(mp, k, 16 << 20, &data, &len), 0, "s3: get the multipart object");
	ok(len == big_len && memcmp(data, big, len) == 0, "s3: multipart object's bytes");
	free(data);
	uint8_t *slice = malloc(1 << 20);
	int64_t off = (5 << 20) - 300000;
	is_int(objstore_get_range(mp, k, off, 1 << 20, slice, 1 << 20), 1 << 20,
	       "s3: a range across a part boundary");
	ok(memcmp(slice, big + off, 1 << 20) == 0, "s3: its bytes");
	snprintf(k, sizeof(k), "%s/bigmem", ns);
	is_int(objstore_put(mp, k, big, 11u << 20), 0, "s3: multipart put from memory");
	is_int(objstore_head(mp, k), 11 << 20, "s3: its size");

	/* Multipart failure: part 2 keeps failing, the upload is aborted, no object appears. */
	struct objstore *fragile = s3_open_with(s3_endpoint, "mp", true, tweak_mp_fragile);
	long long aborts0 = stat_of(s3_endpoint, "aborts");
	fault("action=status&status=500&code=InternalError&count=100&method=PUT&match=partNumber%3D2");
	snprintf(k, sizeof(k), "%s/aborted", ns);
	is_int(objstore_put_file(fragile, k, fd, (int64_t)big_len, NULL), -EIO,
	       "s3: multipart put fails when a part keeps failing");
	faults_clear();
	is_int(stat_of(s3_endpoint, "aborts") - aborts0, 1, "s3: the upload was aborted");
	is_int(objstore_head(mp, k), -ENOENT, "s3: no object from the failed upload");

	/* CompleteMultipartUpload answering 200 with an <Error> inside: retried. */
	fault("action=err200&count=1&method=POST&match=uploadId");
	snprintf(k, sizeof(k), "%s/err200", ns);
	long long faults0 = stat_of(s3_endpoint, "faults");
	is_int(objstore_put_file(mp, k, fd, (int64_t)big_len, NULL), 0,
	       "s3: a 200 with <Error> from Complete is retried");
	is_int(stat_of(s3_endpoint, "faults") - faults0, 1, "s3: (the error was served)");
	is_int(objstore_head(mp, k), (long long)big_len, "s3: and the object is whole");
	objstore_close(fragile);
	objstore_close(mp);
	close(fd);
	free(slice);
	free(big);

	/* Paged listing: the proxy shortens s3rver's pages to 2 keys, the client follows the
	 * continuation tokens. */
	struct proxy_buf pb;
	proxy_cmd(s3_endpoint, "POST", "/__proxy/set?list_max_keys=2", &pb);
	char pw[7][256], pp[256];
	const char *pwant[7];
	for (int i = 0; i < 7; i++) {
		snprintf(pw[i], sizeof(pw[i]), "%s/pg/k%02d", ns, i);
		pwant[i] = pw[i];
		objstore_put(os, pw[i], "p", 1);
	}
	long long lists0 = stat_of(s3_endpoint, "lists");
	snprintf(pp, sizeof(pp), "%s/pg/", ns);
	ok(list_is(os, pp, pwant, 7), "s3: a list of 7 keys in pages of 2");
	is_int(stat_of(s3_endpoint, "lists") - lists0, 4, "s3: took 4 pages");
	proxy_cmd(s3_endpoint, "POST", "/__proxy/set?list_max_keys=0", &pb);


	/* Connection reuse and bounded concurrency. */
	snprintf(k, sizeof(k), "%s/empty", ns);
	struct objstore *one = s3_open_with(s3_endpoint, "pfx/strata", true, tweak_one_conn);
	long long conns0 = stat_of(s3_endpoint, "connections");
	int errs = 0;
	for (int i = 0; i < 30; i++)
		errs += objstore_head(one, k) != 0;
	is_int(errs, 0, "s3: 30 heads");
	long long conns = stat_of(s3_endpoint, "connections") - conns0 - 1; /* -1: stat's own */
	ok(conns <= 1, "s3: 30 requests on %lld new connection(s)", conns);
	objstore_close(one);
	struct objstore *par = s3_open_with(s3_endpoint, "pfx/strata", true, tweak_two_conns);
	for (int i = 0; i < 100 && stat_of(s3_endpoint, "inflight") != 0; i++)
		usleep(100 * 1000); /* a request from an earlier phase may still be in the proxy */
	proxy_cmd(s3_endpoint, "POST", "/__proxy/reset_hwm", &pb);
	conns0 = stat_of(s3_endpoint, "connections");
	struct par ps[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		ps[i] = (struct par){ .os = par, .id = i };
		pthread_create(&th[i], NULL, par_worker, &ps[i]);
	}
	errs = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		errs += ps[i].errors;
	}
	is_int(errs, 0, "s3: 4 threads x 10 put+get on max_connections=2");
	long long hwm = stat_of(s3_endpoint, "inflight_max");
	ok(hwm >= 1 && hwm <= 2, "s3: at most 2 requests in flight (saw %lld)", hwm);
	conns = stat_of(s3_endpoint, "connections") - conns0 - 2;
	ok(conns <= 2, "s3: on at most 2 connections (%lld)", conns);
	objstore_close(par);

	/* Retries. */
	snprintf(k, sizeof(k), "%s/retry", ns);
	faults0 = stat_of(s3_endpoint, "faults");
	fault("action=status&status=503&code=SlowDown&count=2&method=PUT");
	is_int(objstore_put(os, k, "retried", 7), 0, "s3: put succeeds after two 503 SlowDown");
	is_int(stat_of(s3_endpoint, "faults") - faults0, 2, "s3: (both were served)");
	fault("action=status&status=500&code=InternalError&count=2&method=GET");
	is_int(objstore_get(os, k, 100, &data, &len), 0, "s3: get succeeds after two 500s");
	ok(len == 7 && memcmp(data, "retried", 7) == 0, "s3: with the right bytes");
	free(data);
	faults0 = stat_of(s3_endpoint, "faults");
	fault("action=drop&count=2&method=HEAD");
	is_int(objstore_head(os, k), 7, "s3: head succeeds after two dropped connections");
	is_int(stat_of(s3_endpoint, "faults") - faults0, 2, "s3: (both drops were served)");
	fault("action=status&status=400&code=RequestTimeout&count=1&method=GET");
	char three[3];
	is_int(objstore_get_range(os, k, 0, 3, three, sizeof(three)), 3, "s3: 400 RequestTimeout is retried");
	fault("action=status&status=429&code=TooManyRequests&count=1&method=DELETE");
	snprintf(k, sizeof(k), "%s/retry", ns);
	is_int(objstore_delete(os, k), 0, "s3: 429 is retried");
	faults0 = stat_of(s3_endpoint, "faults");
	struct objstore *quick = s3_open_with(s3_endpoint, "pfx/strata", true, tweak_short_timeout);
	snprintf(k, sizeof(k), "%s/empty", ns);
	fault("action=delay&delay_ms=4000&count=1&method=GET");
	is_int(objstore_get(quick, k, 100, &data, &len), 0, "s3: a timed-out request is retried");
	free(data);
	is_int(stat_of(s3_endpoint, "faults") - faults0, 1, "s3: (the delay was served)");
	objstore_close(quick);

	long long req0 = stat_of(s3_endpoint, "requests");
	fault("action=status&status=403&code=AccessDenied&count=1&method=HEAD");
	is_int(objstore_head(os, k), -EIO, "s3: 403 is an error");
	is_int(stat_of(s3_endpoint, "requests") - req0, 1, "s3: 4xx is not retried");
	req0 = stat_of(s3_endpoint, "requests");
	fault("action=status&status=404&code=NoSuchBucket&count=1&method=GET");
	is_int(objstore_get(os, k, 100, &data, &len), -EIO, "s3: NoSuchBucket is an error, not -ENOENT");
	is_int(stat_of(s3_endpoint, "requests") - req0, 1, "s3: and not retried");
	struct objstore *two = s3_open_with(s3_endpoint, "pfx/strata", true, tweak_two_retries);
	req0 = stat_of(s3_endpoint, "requests");
	fault("action=status&status=503&code=SlowDown&count=100&method=HEAD");
	is_int(objstore_head(two, k), -EIO, "s3: gives up after max_retries");
	is_int(stat_of(s3_endpoint, "requests") - req0, 3, "s3: 1 + max_retries attempts");
	faults_clear();
	objstore_close(two);

	/* Session token: sent, signed, checked by the proxy. */
	long long tok0 = stat_of(s3_endpoint, "token");
	struct objstore *ts = s3_open_with(s3_endpoint, "pfx/strata", true, tweak_token);
	is_int(objstore_head(ts, k), 0, "s3: a request with a session token");
	ok(stat_of(s3_endpoint, "token") - tok0 >= 1, "s3: the token was signed");
	objstore_close(ts);

	/* The signature check can fail: a wrong secret is refused, once (403 is final). */
	is_int(stat_of(s3_endpoint, "mismatch"), 0, "s3: every request so far had a valid signature");
	struct objstore *wrong = s3_open_with(s3_endpoint, "pfx/strata", true, tweak_wrong_secret);
	is_int(objstore_head(wrong, k), -EIO, "s3: a wrong secret key is refused");
	is_int(stat_of(s3_endpoint, "mismatch"), 1, "s3: by the proxy's signature check");
	objstore_close(wrong);

	/* https with UNSIGNED-PAYLOAD (and multipart). */
	const char *tls = getenv("STRATA_TEST_S3_TLS_ENDPOINT");
	if (tls && getenv("STRATA_TEST_S3_CA")) {
		struct objstore *tos = s3_open_with(tls, "tls", true, tweak_tls);
		long long uns0 = stat_of(tls, "unsigned");
		size_t n = (6u << 20) + 1;
		uint8_t *blob = malloc(n);
		fill_pattern(blob, n, 99);
		snprintf(k, sizeof(k), "%s/tls", ns);
		is_int(objstore_put(tos, k, blob, n), 0, "s3 tls: multipart put with UNSIGNED-PAYLOAD");
		is_int(objstore_get(tos, k, n, &data, &len), 0, "s3 tls: get");
		ok(len == n && memcmp(data, blob, n) == 0, "s3 tls: bytes");
		free(data);
		free(blob);
		ok(stat_of(tls, "unsigned") - uns0 >= 2, "s3 tls: the parts went unsigned");
		is_int(stat_of(tls, "mismatch"), 0, "s3 tls: and every signature matched");
		objstore_close(tos);
	} else {
		skip("s3: no STRATA_TEST_S3_TLS_ENDPOINT");
	}

	/* http never sends UNSIGNED-PAYLOAD, even when asked. */
	is_int(stat_of(s3_endpoint, "unsigned"), 0, "s3: no UNSIGNED-PAYLOAD over plain http");
	long long verified = stat_of(s3_endpoint, "verified");
	ok(verified > 100, "s3: the proxy verified %lld signatures", verified);
	is_int(stat_of(s3_endpoint, "mismatch"), 1, "s3: and rejected only the wrong-secret one");
	objstore_close(os);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	bool s3_only = getenv("STRATA_TEST_S3_ONLY") != NULL;
	if (!s3_only) {
		test_sigv4();
		test_xml();
		test_keys();
		test_file_backend();
	}
	test_s3();
	return tap_done();
}
