/* t/kmsg.c -- generated Kafka codecs: every message at every version round trips (fill, encode,
 * decode, compare, re-encode, compare bytes), every truncation fails cleanly, version rules
 * (absent non-ignorable fields, nullability, tagged fields, header versions) hold, and frames written
 * by independent implementations (librdkafka client and mock broker, @platformatic/kafka) decode to
 * the expected values and re-encode to the same bytes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "strata/common.h"
#include "strata/kmsg.h"
#include "kmsg_golden.h"
#include "kmsg_roundtrip.h"
#include "tap.h"

/* Decodes exactly the first n bytes of p from a heap copy of that size, so ASan flags any read past
 * the end. Returns decode's result. */
static int decode_exact(const struct rt_msg *m, int16_t v, const uint8_t *p, size_t n, void *out,
			struct arena *a)
{
	uint8_t *copy = malloc(n ? n : 1);
	if (!copy)
		BAIL_OUT("out of memory");
	memcpy(copy, p, n);
	struct kr r;
	kr_init(&r, copy, n);
	int rc = m->decode(&r, v, out, a);
	free(copy);
	return rc;
}

/* One message at one version, all fill variants. Returns a description of the first failure or NULL. */
static const char *roundtrip_one(const struct rt_msg *m, int16_t v, char *why, size_t why_len,
				 size_t *bytes_out)
{
	void *x = malloc(m->size), *y = malloc(m->size);
	struct kw w1, w2;
	struct arena a;
	const char *fail = NULL;
	kw_init(&w1, 256);
	kw_init(&w2, 256);
	arena_init(&a, 0, 64u << 20);
	if (!x || !y)
		BAIL_OUT("out of memory");
	*bytes_out = 0;
	for (int variant = 0; variant < RT_VARIANTS && !fail; variant++) {
		arena_reset(&a);
		kw_reset(&w1);
		kw_reset(&w2);
		m->init(x);
		m->fill(x, v, variant, &a);
		int rc = m->encode(&w1, v, x);
		if (rc != 0) {
			snprintf(why, why_len, "variant %d: encode returned %d", variant, rc);
			fail = why;
			break;
		}
		*bytes_out += w1.len;
		/* Decode from w1 itself: the decoded views point into it and must outlive the compare. */
		struct kr r;
		kr_init(&r, w1.p, w1.len);
		rc = m->decode(&r, v, y, &a);
		size_t used = r.pos;
		if (rc != 0 || used != w1.len) {
			snprintf(why, why_len, "variant %d: decode rc %d, consumed %zu of %zu", variant, rc, used,
				 w1.len);
			fail = why;
			break;
		}
		rt_mismatch = "?";
		if (!m->eq(x, y)) {
			snprintf(why, why_len, "variant %d: decoded field %s differs", variant, rt_mismatch);
			fail = why;
			break;
		}
		rc = m->encode(&w2, v, y);
		if (rc != 0 || w2.len != w1.len || (w1.len && memcmp(w1.p, w2.p, w1.len) != 0)) {
			snprintf(why, why_len, "variant %d: re-encode rc %d, %zu vs %zu bytes or content differs",
				 variant, rc, w2.len, w1.len);
			fail = why;
			break;
		}
		/* Every proper prefix must fail to decode (never crash, never read past it). Big messages
		 * are sampled: all short prefixes, then a stride, then all of the last bytes. */
		size_t stride = w1.len > 600 ? w1.len / 150 : 1;
		for (size_t n = 0; n < w1.len && !fail; n++) {
			if (n > 200 && n + 200 < w1.len && n % stride)
				continue;
			void *z = malloc(m->size);
			if (!z)
				BAIL_OUT("out of memory");
			rc = decode_exact(m, v, w1.p, n, z, &a);
			free(z);
			if (rc != -EBADMSG) {
				snprintf(why, why_len, "variant %d: truncated to %zu of %zu bytes decode returned %d",
					 variant, n, w1.len, rc);
				fail = why;
			}
		}
	}
	kw_free(&w1);
	kw_free(&w2);
	arena_destroy(&a);
	free(x);
	free(y);
	return fail;
}

static void test_roundtrips(void)
{
	char why[256];
	for (size_t i = 0; i < rt_msgs_len; i++) {
		const struct rt_msg *m = &rt_msgs[i];
		int failed = 0;
		size_t total = 0;
		for (int v = m->min_version; v <= m->max_version; v++) {
			size_t bytes = 0;
			const char *f = roundtrip_one(m, (int16_t)v, why, sizeof why, &bytes);
			total += bytes;
			if (f) {
				ok(0, "%s v%d round trip: %s", m->name, v, f);
				failed++;
			}
		}
		if (!failed)
			ok(1, "%s v%d-%d round trip, truncations fail (%zu bytes encoded)", m->name, m->min_version,
			   m->max_version, total);
	}
}

static const struct rt_msg *rt_find(int16_t key, bool request)
{
	const struct kmsg_api *api = kmsg_api_find(key);
	char name[80];
	if (!api)
		return NULL;
	snprintf(name, sizeof name, "%s%s", api->name, request ? "Request" : "Response");
	for (size_t i = 0; i < rt_msgs_len; i++)
		if (strcmp(rt_msgs[i].name, name) == 0)
			return &rt_msgs[i];
	return NULL;
}

/* Decodes a golden frame (header and body) and encodes it again; must give back the same bytes. */
static void test_golden_reencode(void)
{
	for (size_t i = 0; i < ST_ARRAY_LEN(goldens); i++) {
		const struct golden *g = &goldens[i];
		bool request = g->kind != GOLDEN_RESPONSE;
		const struct rt_msg *m = rt_find(g->key, request);
		struct arena a;
		struct kw w;
		struct kr r;
		void *body = malloc(m ? m->size : 1);
		int rc = -1, hv = -1;
		arena_init(&a, 0, 0);
		kw_init(&w, 256);
		kr_init(&r, g->p, g->len);
		if (!m || !body)
			BAIL_OUT("no codec for key %d", g->key);
		if (g->kind == GOLDEN_REQUEST) {
			struct kmsg_request_header h;
			hv = kmsg_request_header_version(g->key, g->version);
			rc = kmsg_request_header_read(&r, &h, &a);
			if (rc == 0 && (h.request_api_key != g->key || h.request_api_version != g->version))
				rc = -100;
			if (rc == 0)
				rc = kmsg_request_header_encode(&w, (int16_t)hv, &h);
		} else if (g->kind == GOLDEN_RESPONSE) {
			struct kmsg_response_header h;
			hv = kmsg_response_header_version(g->key, g->version);
			rc = kmsg_response_header_decode(&r, (int16_t)hv, &h, &a);
			if (rc == 0)
				rc = kmsg_response_header_encode(&w, (int16_t)hv, &h);
		} else {
			rc = 0;
		}
		if (rc == 0)
			rc = m->decode(&r, g->version, body, &a);
		if (rc == 0 && r.pos != r.len)
			rc = -101;
		if (rc == 0)
			rc = m->encode(&w, g->version, body);
		bool same = rc == 0 && w.len == g->len && memcmp(w.p, g->p, g->len) == 0;
		ok(same, "%s: %s v%d (header v%d, %zu bytes) decodes and re-encodes identically", g->what, m->name,
		   g->version, hv, g->len);
		if (!same)
			tap_diag("rc %d, consumed %zu, re-encoded %zu bytes", rc, r.pos, w.len);
		free(body);
		kw_free(&w);
		arena_destroy(&a);
	}
}

/* Corrupts golden frames at random (fixed seed) and decodes them: any result is fine as long as
 * nothing crashes or reads out of bounds (the ASan build checks that), and it always ends. */
static void test_golden_mutations(void)
{
	uint64_t seed = 0x9e3779b97f4a7c15u;
	int decoded = 0, rejected = 0;
	for (size_t i = 0; i < ST_ARRAY_LEN(goldens); i++) {
		const struct golden *g = &goldens[i];
		const struct rt_msg *m = rt_find(g->key, g->kind != GOLDEN_RESPONSE);
		uint8_t *buf = malloc(g->len);
		void *body = malloc(m->size);
		struct arena a;
		if (!buf || !body)
			BAIL_OUT("out of memory");
		arena_init(&a, 0, 1u << 20);
		for (int k = 0; k < 200; k++) {
			memcpy(buf, g->p, g->len);
			for (int flips = 1 + k % 3; flips > 0; flips--) {
				seed = seed * 6364136223846793005u + 1442695040888963407u;
				buf[(seed >> 33) % g->len] ^= (uint8_t)(1u << ((seed >> 20) & 7));
				if (k % 4 == 0) /* sometimes a whole byte, e.g. a length turned huge or negative */
					buf[(seed >> 40) % g->len] = (uint8_t)(seed >> 56);
			}
			struct kr r;
			kr_init(&r, buf, g->len);
			int rc = 0;
			if (g->kind == GOLDEN_REQUEST) {
				struct kmsg_request_header h;
				rc = kmsg_request_header_read(&r, &h, &a);
			} else if (g->kind == GOLDEN_RESPONSE) {
				struct kmsg_response_header h;
				rc = kmsg_response_header_decode(&r, 0, &h, &a);
			}
			if (rc == 0)
				rc = m->decode(&r, g->version, body, &a);
			if (rc == 0)
				decoded++;
			else
				rejected++;
			arena_reset(&a);
		}
		arena_destroy(&a);
		free(body);
		free(buf);
	}
	ok(decoded + rejected == (int)ST_ARRAY_LEN(goldens) * 200,
	   "%d corrupted golden frames: %d rejected, %d still decodable, no crash", decoded + rejected, rejected, decoded);
}

static const struct golden *golden_find(const char *what_prefix, int16_t key, int16_t version, enum golden_kind kind)
{
	for (size_t i = 0; i < ST_ARRAY_LEN(goldens); i++) {
		const struct golden *g = &goldens[i];
		if (g->key == key && g->version == version && g->kind == kind &&
		    strncmp(g->what, what_prefix, strlen(what_prefix)) == 0)
			return g;
	}
	BAIL_OUT("golden %s key %d v%d missing", what_prefix, key, version);
}

/* Positions r at the body of a golden frame; fills *h for requests. */
static void golden_open(const struct golden *g, struct kr *r, struct kmsg_request_header *h, struct arena *a)
{
	kr_init(r, g->p, g->len);
	if (g->kind == GOLDEN_REQUEST) {
		if (kmsg_request_header_read(r, h, a) != 0)
			BAIL_OUT("header of %s", g->what);
	} else if (g->kind == GOLDEN_RESPONSE) {
		struct kmsg_response_header rh;
		if (kmsg_response_header_decode(r, (int16_t)kmsg_response_header_version(g->key, g->version), &rh, a))
			BAIL_OUT("header of %s", g->what);
	}
}

static const uint8_t uuid1[16] = { 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11,
				   0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19 };
static const uint8_t uuid2[16] = { 0xf0, 0xe0, 0xd0, 0xc0, 0xb0, 0xa0, 0x90, 0x80,
				   0x70, 0x60, 0x50, 0x40, 0x30, 0x20, 0x10, 0x00 };

/* Field values of real frames, as the clients that wrote them meant them. */
static void test_golden_fields(void)
{
	struct arena a;
	struct kr r;
	struct kmsg_request_header h;
	arena_init(&a, 0, 0);

	const struct golden *g = golden_find("kcat -L", KMSG_API_API_VERSIONS, 3, GOLDEN_REQUEST);
	struct kmsg_api_versions_request av;
	golden_open(g, &r, &h, &a);
	ok(h.correlation_id == 1 && kstr_eq_c(h.client_id, "rdkafka"), "kcat ApiVersions v3: header v2, client_id rdkafka");
	ok(kmsg_api_versions_request_decode(&r, 3, &av, &a) == 0 && kstr_eq_c(av.client_software_name, "librdkafka") &&
	   kstr_eq_c(av.client_software_version, "2.0.2"), "kcat ApiVersions v3: client_software_name librdkafka 2.0.2");

	g = golden_find("librdkafka mock", KMSG_API_API_VERSIONS, 0, GOLDEN_RESPONSE);
	struct kmsg_api_versions_response avr;
	golden_open(g, &r, &h, &a);
	bool has_produce = false;
	int rc = kmsg_api_versions_response_decode(&r, 0, &avr, &a);
	for (int32_t i = 0; rc == 0 && i < avr.api_keys.len; i++)
		has_produce |= avr.api_keys.items[i].api_key == 0 && avr.api_keys.items[i].max_version >= 7;
	ok(rc == 0 && avr.error_code == 0 && avr.api_keys.len > 10 && has_produce,
	   "mock ApiVersions v0 response: %d APIs incl. Produce", avr.api_keys.len);

	/* kcat -L asks for all topics: a null array in v1+. */
	const struct golden *g1 = NULL;
	for (size_t i = 0; i < ST_ARRAY_LEN(goldens); i++)
		if (goldens[i].key == KMSG_API_METADATA && strncmp(goldens[i].what, "kcat -L", 7) == 0)
			g1 = &goldens[i];
	struct kmsg_metadata_request md;
	golden_open(g1, &r, &h, &a);
	ok(g1 && kmsg_metadata_request_decode(&r, 4, &md, &a) == 0 && md.topics.len == -1 && md.allow_auto_topic_creation,
	   "kcat Metadata v4: all topics (null array), auto-create true");

	g = golden_find("librdkafka 2.0.2", KMSG_API_PRODUCE, 7, GOLDEN_REQUEST);
	struct kmsg_produce_request pr;
	golden_open(g, &r, &h, &a);
	rc = kmsg_produce_request_decode(&r, 7, &pr, &a);
	ok(rc == 0 && pr.acks == -1 && pr.topic_data.len == 1 && kstr_eq_c(pr.topic_data.items[0].name, "t1") &&
	   pr.topic_data.items[0].partition_data.len == 1 &&
	   pr.topic_data.items[0].partition_data.items[0].records.len > 61 &&
	   pr.topic_data.items[0].partition_data.items[0].records.p[16] == 2 &&
	   pr.topic_data.items[0].partition_data.items[0].records.p >= g->p &&
	   pr.topic_data.items[0].partition_data.items[0].records.p < g->p + g->len &&
	   kstr_eq_c(h.client_id, "strata-golden"),
	   "idempotent Produce v7: acks -1, topic t1, one v2 record batch viewed in place");

	g = golden_find("librdkafka mock", KMSG_API_FETCH, 11, GOLDEN_RESPONSE);
	struct kmsg_fetch_response fr;
	golden_open(g, &r, &h, &a);
	rc = kmsg_fetch_response_decode(&r, 11, &fr, &a);
	const struct kmsg_fetch_response_partition_data *with_records = NULL;
	for (int32_t i = 0; rc == 0 && fr.responses.len == 1 && i < fr.responses.items[0].partitions.len; i++)
		if (fr.responses.items[0].partitions.items[i].records.len > 61)
			with_records = &fr.responses.items[0].partitions.items[i];
	ok(rc == 0 && kstr_eq_c(fr.responses.items[0].topic, "t1") && with_records && with_records->high_watermark >= 3 &&
	   with_records->records.p[16] == 2 && with_records->preferred_read_replica == -1,
	   "mock Fetch v11 response: t1 partition with a v2 record batch, high watermark %lld",
	   with_records ? (long long)with_records->high_watermark : -1LL);

	g = golden_find("kcat SASL", KMSG_API_SASL_HANDSHAKE, 1, GOLDEN_REQUEST);
	struct kmsg_sasl_handshake_request sh;
	golden_open(g, &r, &h, &a);
	ok(kmsg_sasl_handshake_request_decode(&r, 1, &sh, &a) == 0 && kstr_eq_c(sh.mechanism, "PLAIN"),
	   "SaslHandshake v1: PLAIN");
	g = golden_find("kcat SASL", KMSG_API_SASL_AUTHENTICATE, 0, GOLDEN_REQUEST);
	struct kmsg_sasl_authenticate_request sa;
	golden_open(g, &r, &h, &a);
	ok(kmsg_sasl_authenticate_request_decode(&r, 0, &sa, &a) == 0 && sa.auth_bytes.len == 13 &&
	   memcmp(sa.auth_bytes.p, "\0alice\0secret", 13) == 0, "SaslAuthenticate v0: PLAIN token");

	/* Flexible versions from an independent encoder. */
	g = golden_find("@platformatic", KMSG_API_FETCH, 17, GOLDEN_REQUEST_BODY);
	struct kmsg_fetch_request fq;
	golden_open(g, &r, &h, &a);
	rc = kmsg_fetch_request_decode(&r, 17, &fq, &a);
	ok(rc == 0 && fq.max_wait_ms == 500 && fq.max_bytes == 52428800 && fq.isolation_level == 1 && fq.session_id == 7 &&
	   fq.session_epoch == 3 && kstr_is_null(fq.cluster_id) && fq.replica_state.replica_id == -1 &&
	   fq.topics.len == 1 && memcmp(fq.topics.items[0].topic_id, uuid1, 16) == 0 &&
	   fq.topics.items[0].partitions.len == 2 &&
	   fq.topics.items[0].partitions.items[0].fetch_offset == 1234567890123LL &&
	   fq.topics.items[0].partitions.items[0].last_fetched_epoch == 4 &&
	   memcmp(fq.topics.items[0].partitions.items[0].replica_directory_id, uuid2, 16) == 0 &&
	   kmsg_uuid_is_zero(fq.topics.items[0].partitions.items[1].replica_directory_id) &&
	   fq.forgotten_topics_data.len == 1 && fq.forgotten_topics_data.items[0].partitions.len == 2 &&
	   fq.forgotten_topics_data.items[0].partitions.items[1] == 4 && kstr_eq_c(fq.rack_id, "rack-1"),
	   "Fetch v17: topic ids, tagged replica directory id, forgotten topics, rack");

	g = golden_find("@platformatic", KMSG_API_METADATA, 12, GOLDEN_REQUEST_BODY);
	golden_open(g, &r, &h, &a);
	rc = kmsg_metadata_request_decode(&r, 12, &md, &a);
	ok(rc == 0 && md.topics.len == 2 && kstr_eq_c(md.topics.items[0].name, "orders") &&
	   kmsg_uuid_is_zero(md.topics.items[0].topic_id) && kstr_eq_c(md.topics.items[1].name, "payments") &&
	   memcmp(md.topics.items[1].topic_id, uuid1, 16) == 0 && !md.allow_auto_topic_creation &&
	   md.include_topic_authorized_operations, "Metadata v12: names and topic ids, flags");

	g = golden_find("@platformatic", KMSG_API_JOIN_GROUP, 9, GOLDEN_REQUEST_BODY);
	struct kmsg_join_group_request jg;
	golden_open(g, &r, &h, &a);
	rc = kmsg_join_group_request_decode(&r, 9, &jg, &a);
	ok(rc == 0 && kstr_eq_c(jg.group_id, "group-1") && jg.session_timeout_ms == 45000 &&
	   jg.rebalance_timeout_ms == 300000 && jg.member_id.len == 0 && kstr_eq_c(jg.group_instance_id, "instance-1") &&
	   kstr_eq_c(jg.protocol_type, "consumer") && jg.protocols.len == 2 &&
	   kstr_eq_c(jg.protocols.items[1].name, "roundrobin") && jg.protocols.items[0].metadata.len == 18 &&
	   kstr_eq_c(jg.reason, "joining"), "JoinGroup v9: instance id, protocols, reason");
	struct kmsg_consumer_protocol_subscription sub;
	struct kr sr;
	kr_init(&sr, jg.protocols.items[0].metadata.p, (size_t)jg.protocols.items[0].metadata.len);
	int16_t sub_version = kr_i16(&sr);
	rc = kmsg_consumer_protocol_subscription_decode(&sr, sub_version, &sub, &a);
	ok(rc == 0 && sub_version == 0 && sub.topics.len == 1 && kstr_eq_c(sub.topics.items[0], "orders") &&
	   sub.user_data.len == -1, "embedded ConsumerProtocolSubscription v0: [orders]");

	g = golden_find("@platformatic", KMSG_API_CREATE_TOPICS, 7, GOLDEN_REQUEST_BODY);
	struct kmsg_create_topics_request ct;
	golden_open(g, &r, &h, &a);
	rc = kmsg_create_topics_request_decode(&r, 7, &ct, &a);
	ok(rc == 0 && ct.topics.len == 1 && ct.topics.items[0].num_partitions == 3 &&
	   ct.topics.items[0].replication_factor == 1 && ct.topics.items[0].configs.len == 2 &&
	   kstr_eq_c(ct.topics.items[0].configs.items[1].value, "compact") && ct.timeout_ms == 30000,
	   "CreateTopics v7: partitions, configs");

	g = golden_find("@platformatic", KMSG_API_PRODUCE, 11, GOLDEN_REQUEST_BODY);
	golden_open(g, &r, &h, &a);
	rc = kmsg_produce_request_decode(&r, 11, &pr, &a);
	ok(rc == 0 && kstr_eq_c(pr.transactional_id, "txn-a") && pr.acks == -1 && pr.timeout_ms == 30000 &&
	   pr.topic_data.len == 1 && pr.topic_data.items[0].partition_data.items[0].index == 2 &&
	   pr.topic_data.items[0].partition_data.items[0].records.len > 61, "Produce v11: transactional, compact records");
	arena_destroy(&a);
}

static void test_versions_and_rules(void)
{
	is_int(kmsg_request_header_version(KMSG_API_API_VERSIONS, 3), 2, "ApiVersions v3 request header v2");
	is_int(kmsg_request_header_version(KMSG_API_API_VERSIONS, 2), 1, "ApiVersions v2 request header v1");
	is_int(kmsg_request_header_version(KMSG_API_API_VERSIONS, 9), 2, "ApiVersions v9 (newer client) header v2");
	is_int(kmsg_request_header_version(KMSG_API_METADATA, 8), 1, "Metadata v8 header v1");
	is_int(kmsg_request_header_version(KMSG_API_METADATA, 9), 2, "Metadata v9 header v2");
	is_int(kmsg_request_header_version(KMSG_API_SASL_HANDSHAKE, 1), 1, "SaslHandshake (never flexible) header v1");
	is_int(kmsg_request_header_version(7, 0), 0, "ControlledShutdown v0 header v0");
	is_int(kmsg_request_header_version(999, 0), -1, "unknown key");
	is_int(kmsg_request_header_version(KMSG_API_PRODUCE, -1), -1, "negative version");
	is_int(kmsg_response_header_version(KMSG_API_API_VERSIONS, 3), 0, "ApiVersions v3 response header stays v0");
	is_int(kmsg_response_header_version(KMSG_API_PRODUCE, 9), 1, "Produce v9 response header v1");
	is_int(kmsg_response_header_version(KMSG_API_PRODUCE, 8), 0, "Produce v8 response header v0");

	const struct kmsg_api *p = kmsg_api_find(KMSG_API_PRODUCE);
	ok(p && strcmp(p->name, "Produce") == 0 && p->min_version == 0 && p->max_version == 11 && p->flexible_min == 9,
	   "API table: Produce 0-11, flexible from 9");
	const struct kmsg_api *sh = kmsg_api_find(KMSG_API_SASL_HANDSHAKE);
	const struct kmsg_api *et = kmsg_api_find(KMSG_API_END_TXN);
	ok(sh && sh->flexible_min == -1 && et && et->latest_unstable && !p->latest_unstable, "never-flexible and unstable flags");
	bool sorted = kmsg_apis_len == 39;
	for (size_t i = 1; i < kmsg_apis_len; i++)
		sorted &= kmsg_apis[i - 1].key < kmsg_apis[i].key;
	ok(sorted, "API table has the 39 APIs in key order");
	ok(kmsg_api_find(7) == NULL, "unknown key not found");

	struct kw w;
	struct arena a;
	kw_init(&w, 0);
	arena_init(&a, 0, 0);

	/* A non-ignorable field the version lacks must stay default (as Kafka refuses to drop it). */
	struct kmsg_produce_request pr;
	kmsg_produce_request_init(&pr);
	pr.transactional_id = KSTR_LIT("txn");
	is_int(kmsg_produce_request_encode(&w, 2, &pr), -EINVAL, "Produce v2 with transactional_id: -EINVAL");
	kw_reset(&w);
	is_int(kmsg_produce_request_encode(&w, 3, &pr), 0, "Produce v3 with transactional_id: ok");
	kw_reset(&w);
	struct kmsg_fetch_request fq;
	kmsg_fetch_request_init(&fq);
	fq.max_bytes = 1000; /* ignorable, from v3 */
	fq.isolation_level = 1;
	is_int(kmsg_fetch_request_encode(&w, 2, &fq), 0, "Fetch v2 drops ignorable max_bytes/isolation_level");
	ok(w.len == 4 + 4 + 4 + 4, "  and writes only v2 fields (%zu bytes)", w.len);
	kw_reset(&w);
	struct kmsg_metadata_request md;
	kmsg_metadata_request_init(&md);
	ok(md.allow_auto_topic_creation && md.topics.len == 0, "Metadata init: auto-create defaults to true");
	md.allow_auto_topic_creation = false;
	is_int(kmsg_metadata_request_encode(&w, 3, &md), -EINVAL, "Metadata v3 cannot say no auto-create: -EINVAL");
	kw_reset(&w);
	is_int(kmsg_metadata_request_encode(&w, 4, &md), 0, "Metadata v4 can");
	kw_reset(&w);
	md.topics.len = -1;
	is_int(kmsg_metadata_request_encode(&w, 0, &md), -EINVAL, "null topics in Metadata v0 (not nullable): -EINVAL");
	kw_reset(&w);
	is_int(kmsg_produce_request_encode(&w, 12, &pr), -EINVAL, "Produce v12 (beyond schema): -EINVAL");
	kw_reset(&w);

	/* Non-nullable string written as null. */
	struct kmsg_find_coordinator_request fc;
	kmsg_find_coordinator_request_init(&fc);
	fc.key = KSTR_NULL;
	is_int(kmsg_find_coordinator_request_encode(&w, 0, &fc), -EINVAL, "null in non-nullable string: -EINVAL");
	kw_reset(&w);
	static const uint8_t null_key[] = { 0xff, 0xff };
	struct kr r;
	kr_init(&r, null_key, sizeof null_key);
	is_int(kmsg_find_coordinator_request_decode(&r, 0, &fc, &a), -EBADMSG, "null in non-nullable string decodes as -EBADMSG");
	kr_init(&r, null_key, sizeof null_key);
	is_int(kmsg_find_coordinator_request_decode(&r, 7, &fc, &a), -EINVAL, "decode of an unknown version: -EINVAL");

	/* Tagged fields: written only when not default, unknown ones skipped. */
	struct kmsg_api_versions_response avr;
	kmsg_api_versions_response_init(&avr);
	ok(avr.finalized_features_epoch == -1, "tagged default -1 set by init");
	kmsg_api_versions_response_encode(&w, 3, &avr);
	ok(w.len == 2 + 1 + 4 + 1 && w.p[w.len - 1] == 0, "default tagged fields are not written");
	kw_reset(&w);
	avr.finalized_features_epoch = 5;
	kmsg_api_versions_response_encode(&w, 3, &avr);
	static const uint8_t want_tag[] = { 0x01, 0x01, 0x08, 0, 0, 0, 0, 0, 0, 0, 5 };
	ok(w.len == 7 + sizeof want_tag && memcmp(w.p + 7, want_tag, sizeof want_tag) == 0,
	   "non-default tagged field: count 1, tag 1, size 8, value");
	kw_reset(&w);
	/* ApiVersions v3 request + an unknown tag 9 (3 bytes) before the known section end. */
	static const uint8_t unknown_tag[] = { 0x02, 'c', 0x02, '1', 0x01, 0x09, 0x03, 0xaa, 0xbb, 0xcc };
	struct kmsg_api_versions_request avq;
	kr_init(&r, unknown_tag, sizeof unknown_tag);
	ok(kmsg_api_versions_request_decode(&r, 3, &avq, &a) == 0 && r.pos == sizeof unknown_tag &&
	   kstr_eq_c(avq.client_software_name, "c") && kstr_eq_c(avq.client_software_version, "1"),
	   "unknown tagged field is skipped");
	/* A known tag whose value is longer than its size is malformed: error 0, no api keys, throttle 0,
	 * one tag (1 = finalized_features_epoch, an int64) claiming 2 bytes. */
	struct kmsg_api_versions_response avr2;
	static const uint8_t bad_tag[] = { 0x00, 0x00, 0x01, 0, 0, 0, 0, 0x01, 0x01, 0x02, 0, 0 };
	kr_init(&r, bad_tag, sizeof bad_tag);
	is_int(kmsg_api_versions_response_decode(&r, 3, &avr2, &a), -EBADMSG,
	       "known tagged int64 with a 2-byte size: -EBADMSG");

	/* The request header's client id stays a non-compact string in v2. */
	struct kmsg_request_header h;
	kmsg_request_header_init(&h);
	h.request_api_key = 18;
	h.request_api_version = 3;
	h.correlation_id = 7;
	h.client_id = KSTR_LIT("ab");
	kmsg_request_header_encode(&w, 2, &h);
	static const uint8_t want_hdr[] = { 0, 18, 0, 3, 0, 0, 0, 7, 0, 2, 'a', 'b', 0 };
	ok(w.len == sizeof want_hdr && memcmp(w.p, want_hdr, sizeof want_hdr) == 0, "request header v2 bytes");
	kw_reset(&w);

	/* The arena limit bounds what a request can make us allocate. */
	struct kmsg_metadata_request many;
	kmsg_metadata_request_init(&many);
	many.topics.len = 1000;
	many.topics.items = arena_calloc(&a, 1000, sizeof *many.topics.items);
	for (int i = 0; i < 1000; i++) {
		kmsg_metadata_request_topic_init(&many.topics.items[i]);
		many.topics.items[i].name = KSTR_LIT("t");
	}
	ok(kmsg_metadata_request_encode(&w, 12, &many) == 0, "1000-topic Metadata v12 request encodes");
	struct arena small;
	arena_init(&small, 1024, 4096);
	kr_init(&r, w.p, w.len);
	is_int(kmsg_metadata_request_decode(&r, 12, &md, &small), -ENOMEM, "decoding it within a 4 KiB arena: -ENOMEM");
	arena_destroy(&small);
	kr_init(&r, w.p, w.len);
	ok(kmsg_metadata_request_decode(&r, 12, &md, &a) == 0 && md.topics.len == 1000, "and with room it decodes");

	kw_free(&w);
	arena_destroy(&a);
}

int main(void)
{
	test_roundtrips();
	test_golden_reencode();
	test_golden_mutations();
	test_golden_fields();
	test_versions_and_rules();
	return tap_done();
}
