/* fuzz_requests.c -- libFuzzer target for the Kafka request decoders (kmsg.h over kio.h).
 * Input: one request frame payload as the broker receives it (no size prefix): request header,
 * then body. Decodes the header like the server, then the body with the generated decoder of that
 * API (every key in the codec table; a version outside the schema's range is folded into it so
 * every input reaches some decoder), and checks the round trip: what decoded re-encodes, the
 * re-encoding decodes to an equal struct with no bytes left over, and encodes to the same bytes.
 * Owns no state between inputs; must not print on the success path (libFuzzer runs it millions
 * of times). Also linked into t/fuzz-replay-requests, which runs it over the corpus without
 * libFuzzer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../t/kmsg_roundtrip.h"
#include "strata/arena.h"
#include "strata/kio.h"
#include "strata/kmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bounds what one input may make the decoder allocate (the broker's limit is 256 MiB; a fuzz
 * input is a few KiB, and kr_array_len caps arrays by the bytes left). */
#define FUZZ_ARENA_LIMIT_BYTES (64u << 20)
/* Large enough for any struct in the table: decode targets live on the stack. */
#define FUZZ_MSG_MAX_BYTES 512

static void fuzz_fail(const char *what, const char *msg, int16_t version, const char *detail)
{
	fprintf(stderr, "fuzz_requests: %s v%d: %s%s%s\n", msg, version, what,
		detail ? ": " : "", detail ? detail : "");
	abort();
}

/* The generated table lists RequestHeader, ResponseHeader, then Request/Response per API in
 * kmsg_apis order; look each request up by name once (not per input: the fuzzer would chase the
 * string compares) so a reordering cannot pair the wrong codec. */
static const struct rt_msg *codec_by_name(const char *name)
{
	for (size_t i = 0; i < rt_msgs_len; i++)
		if (strcmp(rt_msgs[i].name, name) == 0)
			return &rt_msgs[i];
	return NULL;
}

static const struct rt_msg *request_codecs[KMSG_API_LIST_TRANSACTIONS + 1];
static const struct rt_msg *header_rt;

static void codecs_init(void)
{
	if (header_rt)
		return;
	for (size_t i = 0; i < kmsg_apis_len; i++) {
		char name[96];
		int n = snprintf(name, sizeof name, "%sRequest", kmsg_apis[i].name);
		int16_t key = kmsg_apis[i].key;
		if (n < 0 || (size_t)n >= sizeof name || key < 0 ||
		    key > KMSG_API_LIST_TRANSACTIONS)
			fuzz_fail("API table entry out of the expected range", kmsg_apis[i].name, 0, NULL);
		request_codecs[key] = codec_by_name(name);
		if (!request_codecs[key])
			fuzz_fail("no request codec for an API in kmsg_apis", kmsg_apis[i].name, 0, NULL);
	}
	header_rt = codec_by_name("RequestHeader");
	if (!header_rt)
		fuzz_fail("no RequestHeader codec", "table", 0, NULL);
}

/* Decode in, then the round-trip invariants. Returns the decoder's result; *consumed = bytes the
 * first decode used (to find the body after a header). Aborts when an invariant breaks. */
static int roundtrip(const struct rt_msg *m, int16_t v, const uint8_t *in, size_t in_len,
		     size_t *consumed)
{
	_Alignas(16) unsigned char m1[FUZZ_MSG_MAX_BYTES], m2[FUZZ_MSG_MAX_BYTES];
	if (m->size > sizeof m1)
		fuzz_fail("struct larger than FUZZ_MSG_MAX_BYTES", m->name, v, NULL);
	struct arena a1, a2;
	arena_init(&a1, 0, FUZZ_ARENA_LIMIT_BYTES);
	arena_init(&a2, 0, FUZZ_ARENA_LIMIT_BYTES);
	struct kw w1, w2;
	kw_init(&w1, 256);
	kw_init(&w2, 256);

	struct kr r;
	kr_init(&r, in, in_len);
	m->init(m1);
	int rc = m->decode(&r, v, m1, &a1);
	if (rc == 0 && r.err)
		fuzz_fail("decode returned 0 with the reader failed", m->name, v, NULL);
	if (rc < 0 && rc != -EBADMSG && rc != -ENOMEM)
		fuzz_fail("decode of an in-range version returned neither -EBADMSG nor -ENOMEM",
			  m->name, v, NULL);
	if (rc < 0)
		goto out;
	*consumed = r.pos;

	int erc = m->encode(&w1, v, m1);
	if (erc == -ENOMEM)
		goto out;
	if (erc < 0 || w1.err)
		fuzz_fail("what decoded does not encode", m->name, v, NULL);

	struct kr r2;
	kr_init(&r2, w1.p, w1.len);
	m->init(m2);
	int rc2 = m->decode(&r2, v, m2, &a2);
	if (rc2 == -ENOMEM)
		goto out;
	if (rc2 < 0)
		fuzz_fail("the re-encoding does not decode", m->name, v, NULL);
	if (kr_remaining(&r2) != 0)
		fuzz_fail("the re-encoding decodes with bytes left over", m->name, v, NULL);
	if (!m->eq(m1, m2))
		fuzz_fail("re-decoded struct differs", m->name, v, rt_mismatch);
	if (m->encode(&w2, v, m2) < 0 || w2.err)
		fuzz_fail("re-decoded struct does not encode", m->name, v, NULL);
	if (w1.len != w2.len || (w1.len > 0 && memcmp(w1.p, w2.p, w1.len) != 0))
		fuzz_fail("re-encoding is not stable", m->name, v, NULL);
out:
	kw_free(&w1);
	kw_free(&w2);
	arena_destroy(&a1);
	arena_destroy(&a2);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	codecs_init();
	const struct rt_msg *hdr = header_rt;

	struct kr r;
	kr_init(&r, data, size);
	int16_t key = kr_i16(&r);
	int16_t version = kr_i16(&r);
	if (r.err)
		return 0;

	/* The header at every version (the server picks one; the others are cheap coverage). */
	size_t hdr_len = 0, unused;
	int hv = kmsg_request_header_version(key, version);
	for (int16_t v = hdr->min_version; v <= hdr->max_version; v++)
		(void)roundtrip(hdr, v, data, size, v == hv ? &hdr_len : &unused);

	const struct kmsg_api *api = kmsg_api_find(key);
	if (hv < 0 || !api)
		return 0; /* the server closes such connections before reading further */
	struct kr hr;
	struct kmsg_request_header h;
	struct arena ha;
	arena_init(&ha, 0, FUZZ_ARENA_LIMIT_BYTES);
	kr_init(&hr, data, size);
	kmsg_request_header_init(&h);
	int hrc = kmsg_request_header_decode(&hr, (int16_t)hv, &h, &ha);
	arena_destroy(&ha);
	if (hrc < 0)
		return 0;
	if (hr.pos != hdr_len)
		fuzz_fail("header decode consumed a different length than in the round trip",
			  "RequestHeader", (int16_t)hv, NULL);

	const struct rt_msg *body = request_codecs[api->key];
	if (body->min_version != api->min_version || body->max_version != api->max_version)
		fuzz_fail("codec table and kmsg_apis disagree on versions", api->name, version, NULL);
	int16_t v = version;
	if (v < api->min_version || v > api->max_version) {
		/* The decoder must refuse it; then fold it into range for coverage. */
		struct kr br;
		_Alignas(16) unsigned char m[FUZZ_MSG_MAX_BYTES];
		struct arena a;
		arena_init(&a, 0, FUZZ_ARENA_LIMIT_BYTES);
		kr_init(&br, data + hdr_len, size - hdr_len);
		body->init(m);
		if (body->decode(&br, v, m, &a) != -EINVAL)
			fuzz_fail("decode of a version outside validVersions is not -EINVAL", api->name,
				  v, NULL);
		arena_destroy(&a);
		int span = api->max_version - api->min_version + 1;
		v = (int16_t)(api->min_version + (int)((uint16_t)version % (unsigned)span));
	}
	(void)roundtrip(body, v, data + hdr_len, size - hdr_len, &unused);
	return 0;
}
